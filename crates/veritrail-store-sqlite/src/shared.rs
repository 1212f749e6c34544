//! State shared by the writer, the indexer and the readers: counters for `/metrics`, and the
//! hand-off of "these tenants have new records" from the writer to the indexer.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use veritrail_store::TreeHead;

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
    /// Ids of committed records not yet in `index.event_ids` (see [`RecentIds`]).
    pub(crate) recent: RecentIds,
    /// Tree head of each tenant (by number) after the writer's last commit that grew it; tenants
    /// not appended to since the store opened are absent.
    pub(crate) heads: Mutex<HashMap<i64, TreeHead>>,
}

/// Event ids of committed records that the index does not hold yet.
///
/// **Invariant:** every committed record is findable by id either here or in
/// `index.event_ids`. The writer adds ids after its commit and before answering; the indexer
/// removes them only after committing them to `index.event_ids`. A lookup therefore checks here
/// first and then the index in a snapshot taken after that check.
#[derive(Default)]
pub(crate) struct RecentIds {
    inner: Mutex<RecentInner>,
}

#[derive(Default)]
struct RecentInner {
    by_id: HashMap<(i64, String), u64>,
    by_tenant: HashMap<i64, VecDeque<(u64, String)>>,
}

impl RecentIds {
    /// The seq of `id` in the tenant's ledger, if recently committed.
    pub(crate) fn get(&self, tenant_no: i64, id: &str) -> Option<u64> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.by_id.get(&(tenant_no, id.to_string())).copied()
    }

    /// Records committed ids (in seq order per tenant).
    pub(crate) fn insert(&self, entries: impl IntoIterator<Item = (i64, String, u64)>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for (tenant_no, id, seq) in entries {
            inner.by_tenant.entry(tenant_no).or_default().push_back((seq, id.clone()));
            inner.by_id.insert((tenant_no, id), seq);
        }
    }

    /// Forgets the tenant's ids below `seq` (they are in the index now).
    pub(crate) fn evict_below(&self, tenant_no: i64, seq: u64) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        let Some(queue) = inner.by_tenant.get_mut(&tenant_no) else { return };
        while let Some((first, _)) = queue.front() {
            if *first >= seq {
                break;
            }
            if let Some((_, id)) = queue.pop_front() {
                inner.by_id.remove(&(tenant_no, id));
            }
        }
    }

    /// Puts back ids older than any held for the tenant (ascending `entries`), before an index
    /// rebuild drops them from the index.
    pub(crate) fn restore_older(&self, tenant_no: i64, entries: Vec<(u64, String)>) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        let queue = inner.by_tenant.entry(tenant_no).or_default();
        debug_assert!(entries.last().zip(queue.front()).is_none_or(|(last, first)| last.0 < first.0));
        for (seq, id) in entries.into_iter().rev() {
            inner.by_id.insert((tenant_no, id.clone()), seq);
            queue.push_front((seq, id));
        }
    }
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
