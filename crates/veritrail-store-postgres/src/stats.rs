//! Counters of one node's store for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use veritrail_store::{IndexStatus, StoreStats};

/// Upper bounds (seconds) of the commit latency histogram (as in the embedded backend).
const LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
pub(crate) struct Stats {
    events_appended: AtomicU64,
    commits: AtomicU64,
    /// Append requests queued for a group committer of this node.
    pub(crate) queue_depth: AtomicU64,
    latency_counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
    /// Records `Store::records` answered (always from the database).
    pub(crate) records_read: AtomicU64,
}

impl Stats {
    /// Called after a committed group.
    pub(crate) fn record_commit(&self, took: Duration, new_events: u64) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.events_appended.fetch_add(new_events, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS.iter().position(|&bound| seconds <= bound).unwrap_or(LATENCY_BUCKETS.len());
        self.latency_counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StoreStats {
        let mut cumulative = 0;
        let mut commit_latency_buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        for (i, count) in self.latency_counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            commit_latency_buckets.push((LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), cumulative));
        }
        StoreStats {
            events_appended: self.events_appended.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            commit_latency_buckets,
            commit_latency_sum: self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            // Indexed in the appending transaction: queries never lag.
            index: IndexStatus::default(),
            records_from_memory: 0,
            records_from_storage: self.records_read.load(Ordering::Relaxed),
        }
    }
}
