//! State shared by the writer, the indexer and the readers: counters for `/metrics`, and the
//! hand-off of "these tenants have new records" from the writer to the indexer.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the commit latency histogram.
pub(crate) const LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) events_appended: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) queue_depth: AtomicU64,
    latency_counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
    /// Events in all ledgers (committed), and how many of them are indexed.
    pub(crate) committed_total: AtomicU64,
    pub(crate) indexed_total: AtomicU64,
    pub(crate) rebuilding: AtomicBool,
    pub(crate) writer_stopped: AtomicBool,
    pub(crate) stopping: AtomicBool,
    dirty: Mutex<BTreeSet<i64>>,
    wake: Condvar,
}

impl Shared {
    /// Called by the writer after a durable commit.
    pub(crate) fn record_commit(&self, took: Duration, new_events: u64, touched: &[i64]) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.events_appended.fetch_add(new_events, Ordering::Relaxed);
        self.committed_total.fetch_add(new_events, Ordering::SeqCst);
        let seconds = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS.iter().position(|&bound| seconds <= bound).unwrap_or(LATENCY_BUCKETS.len());
        self.latency_counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        if !touched.is_empty() {
            self.mark_dirty(touched);
        }
    }

    /// Tells the indexer that these tenants have records to index.
    pub(crate) fn mark_dirty(&self, tenants: &[i64]) {
        let mut dirty = self.dirty.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        dirty.extend(tenants.iter().copied());
        self.wake.notify_all();
    }

    /// Wakes the indexer without new work (shutdown).
    pub(crate) fn wake_indexer(&self) {
        let _guard = self.dirty.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.wake.notify_all();
    }

    /// Indexer side: waits up to `timeout` for dirty tenants and takes them.
    pub(crate) fn take_dirty(&self, timeout: Duration) -> BTreeSet<i64> {
        let mut dirty = self.dirty.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if dirty.is_empty() && !self.stopping.load(Ordering::SeqCst) {
            dirty = match self.wake.wait_timeout(dirty, timeout) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        std::mem::take(&mut *dirty)
    }

    /// Cumulative histogram `(upper bound, count)` and the sum of latencies in seconds.
    pub(crate) fn latency(&self) -> (Vec<(f64, u64)>, f64) {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        for (i, count) in self.latency_counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let bound = LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, cumulative));
        }
        (buckets, self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6)
    }
}
