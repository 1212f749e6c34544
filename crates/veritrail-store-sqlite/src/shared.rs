//! State shared by the writer, the indexer and the readers: counters for `/metrics`, and the
//! hand-off of "these tenants have new records" from the writer to the indexer.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use veritrail_model::PreparedEvent;
use veritrail_store::{StoredEvent, TreeHead};

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
    /// Callers of `Store::wait_indexed` waiting now: the indexer does not gather while any does.
    pub(crate) index_waiters: AtomicU64,
    pub(crate) rebuilding: AtomicBool,
    /// Records `Store::records` answered from [`RecentRecords`], and from SQLite.
    pub(crate) records_from_memory: AtomicU64,
    pub(crate) records_from_storage: AtomicU64,
    pub(crate) writer_stopped: AtomicBool,
    pub(crate) stopping: AtomicBool,
    dirty: Mutex<BTreeSet<i64>>,
    wake: Condvar,
    /// Ids of committed records not yet in `index.event_ids` (see [`RecentIds`]).
    pub(crate) recent: RecentIds,
    /// Tree head of each tenant (by number) after the writer's last commit that grew it; tenants
    /// not appended to since the store opened are absent.
    pub(crate) heads: Mutex<HashMap<i64, TreeHead>>,
    /// The records of the last commits, served to `Store::records` without a read (see
    /// [`RecentRecords`]).
    pub(crate) records: RecentRecords,
    /// The data directory's lock ([`crate::dir_lock`]), released with the last reference.
    pub(crate) dir_lock: std::sync::OnceLock<crate::dir_lock::DirLock>,
}

/// Event ids of committed records that the index does not hold yet.
///
/// **Invariant:** every committed record is findable by id either here or in
/// `index.event_ids`. The writer adds ids after its commit and before answering; the indexer
/// removes them only after committing them to `index.event_ids`. A lookup therefore checks here
/// first and then the index in a snapshot taken after that check — or, under a [`RecentPin`]
/// (nothing is removed while one is held), in one snapshot taken after the pin, which is how
/// the writer reads the index once per group commit instead of once per new event.
#[derive(Default)]
pub(crate) struct RecentIds {
    inner: Mutex<RecentInner>,
}

#[derive(Default)]
struct RecentInner {
    by_id: HashMap<(i64, String), u64>,
    by_tenant: HashMap<i64, VecDeque<(u64, String)>>,
    /// Pins held ([`RecentIds::pin`]).
    pins: usize,
    /// Evictions asked for while pinned, per tenant: the highest `seq` of `evict_below`.
    deferred: HashMap<i64, u64>,
}

/// While held, no id leaves [`RecentIds`]: evictions wait for the last pin to go.
pub(crate) struct RecentPin<'a> {
    ids: &'a RecentIds,
}

impl Drop for RecentPin<'_> {
    fn drop(&mut self) {
        let mut guard = self.ids.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        inner.pins -= 1;
        if inner.pins == 0 {
            for (tenant_no, seq) in std::mem::take(&mut inner.deferred) {
                inner.evict(tenant_no, seq);
            }
        }
    }
}

impl RecentInner {
    fn evict(&mut self, tenant_no: i64, seq: u64) {
        let Some(queue) = self.by_tenant.get_mut(&tenant_no) else { return };
        while let Some((first, _)) = queue.front() {
            if *first >= seq {
                break;
            }
            if let Some((_, id)) = queue.pop_front() {
                self.by_id.remove(&(tenant_no, id));
            }
        }
    }
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

    /// Keeps every id here until the pin is dropped.
    pub(crate) fn pin(&self) -> RecentPin<'_> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).pins += 1;
        RecentPin { ids: self }
    }

    /// Forgets the tenant's ids below `seq` (they are in the index now); while pinned, when
    /// the last pin goes.
    pub(crate) fn evict_below(&self, tenant_no: i64, seq: u64) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        if inner.pins > 0 {
            let deferred = inner.deferred.entry(tenant_no).or_default();
            *deferred = (*deferred).max(seq);
            return;
        }
        inner.evict(tenant_no, seq);
    }

    /// Puts back ids older than any held for the tenant (ascending `entries`), before an index
    /// rebuild drops them from the index.
    pub(crate) fn restore_older(&self, tenant_no: i64, entries: Vec<(u64, String)>) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        // An eviction waiting for a pin named ids the rebuild is about to drop from the index.
        inner.deferred.remove(&tenant_no);
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

    /// Counts the caller among [`Shared::index_waiters`] until dropped, and wakes the indexer.
    pub(crate) fn index_waiter(&self) -> IndexWaiter<'_> {
        self.index_waiters.fetch_add(1, Ordering::SeqCst);
        self.wake_indexer();
        IndexWaiter(&self.index_waiters)
    }

    /// Wakes the indexer without new work (shutdown, a caller waiting for the index).
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

/// One caller of `Store::wait_indexed`, counted while it lives ([`Shared::index_waiter`]).
pub(crate) struct IndexWaiter<'a>(&'a AtomicU64);

impl Drop for IndexWaiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What [`RecentRecords`] holds by default: the last ~0.5–1 s of a full ingest load, which is
/// where the rule engine reads (it follows the ledger ~0.1 s behind).
pub(crate) const RECENT_RECORDS_BYTES: usize = 48 << 20;

/// The records of the last commits of every tenant, as `Store::records` answers them: the
/// writer adds each commit's new records after its commit and before answering, and a read of
/// a range that starts inside a tenant's held records is served from here, without SQLite and
/// without decrypting the personal-data sidecars (their clear values are the appends' own).
/// That is what the rule engine reads on the live stream (BENCHMARKS.md, issue 7).
///
/// **Invariant:** a tenant's held records are contiguous and end at its last committed seq
/// (every commit that grows a ledger adds to its end; eviction takes from the front, oldest
/// commit first across tenants; an erasure drops the tenant's records altogether, so that no
/// clear value of an erased subject is served from memory after `erase_subject` returned).
/// A read that starts before a tenant's first held record goes to SQLite.
#[derive(Default)]
pub(crate) struct RecentRecords {
    inner: Mutex<RecentRecordsInner>,
}

#[derive(Default)]
struct RecentRecordsInner {
    /// Byte budget; 0 means [`RECENT_RECORDS_BYTES`].
    budget: usize,
    bytes: usize,
    by_tenant: HashMap<i64, VecDeque<RecentRecord>>,
    /// `(tenant, seq, bytes)` in commit order, for eviction; entries of records dropped by an
    /// erasure are skipped when they come up.
    order: VecDeque<(i64, u64, usize)>,
}

/// One committed record: its sealed bytes, and the append it came from for the id and the
/// clear personal data (shared, not copied, by the records of one append).
pub(crate) struct RecentRecord {
    pub(crate) seq: u64,
    pub(crate) sealed: bytes::Bytes,
    pub(crate) layout: veritrail_model::MemberLayout,
    pub(crate) leaf_hash: [u8; 32],
    pub(crate) events: std::sync::Arc<Vec<PreparedEvent>>,
    pub(crate) index: usize,
}

impl RecentRecord {
    /// The record as `Store::records` gives it; its `id` left empty unless `with_id`.
    fn stored(&self, with_id: bool) -> Option<StoredEvent> {
        let event = self.events.get(self.index)?;
        Some(StoredEvent {
            seq: self.seq,
            id: if with_id { event.id.clone() } else { String::new() },
            sealed: self.sealed.clone(),
            leaf_hash: self.leaf_hash,
            personal: (!event.personal.is_empty()).then(|| event.personal.clone()),
            layout: Some(self.layout.clone()),
        })
    }

    /// What it is charged against the budget: its bytes, plus a share of its append's.
    fn size(&self) -> usize {
        2 * self.sealed.len() + self.layout.heap_bytes() + 64
    }
}

impl RecentRecords {
    /// Sets the byte budget (0: [`RECENT_RECORDS_BYTES`]).
    pub(crate) fn set_budget(&self, bytes: usize) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).budget = bytes;
    }

    /// Adds one commit's new records (in seq order per tenant, following the tenant's held
    /// ones), then evicts the oldest beyond the budget. The evicted records are freed after the
    /// lock is released: freeing an append's events (~1 µs per event, most of it their personal
    /// data) under it held up the rule engine's reads.
    pub(crate) fn add(&self, records: Vec<(i64, RecentRecord)>) {
        if records.is_empty() {
            return;
        }
        let mut evicted = Vec::new();
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        for (tenant_no, record) in records {
            let queue = inner.by_tenant.entry(tenant_no).or_default();
            if queue.back().is_some_and(|last| last.seq + 1 != record.seq) {
                // Not contiguous (cannot happen while the writer adds every commit): start over
                // rather than serve a gap.
                let dropped: usize = queue.iter().map(RecentRecord::size).sum();
                inner.bytes -= dropped;
                evicted.extend(queue.drain(..));
            }
            let size = record.size();
            inner.order.push_back((tenant_no, record.seq, size));
            inner.bytes += size;
            queue.push_back(record);
        }
        let budget = if inner.budget == 0 { RECENT_RECORDS_BYTES } else { inner.budget };
        while inner.bytes > budget {
            let Some((tenant_no, seq, _)) = inner.order.pop_front() else { break };
            let Some(queue) = inner.by_tenant.get_mut(&tenant_no) else { continue };
            if queue.front().is_some_and(|first| first.seq == seq)
                && let Some(first) = queue.pop_front()
            {
                inner.bytes -= first.size();
                evicted.push(first);
            }
            if queue.is_empty() {
                inner.by_tenant.remove(&tenant_no);
            }
        }
        drop(guard);
        drop(evicted);
    }

    /// Up to `limit` records of the tenant from `from` on, when `from` is at or after its first
    /// held record (an empty answer when `from` is past its last: nothing newer is committed);
    /// `None` when the range must be read from storage.
    pub(crate) fn get(&self, tenant_no: i64, from: u64, limit: u32, with_ids: bool) -> Option<Vec<StoredEvent>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let queue = inner.by_tenant.get(&tenant_no)?;
        let first = queue.front()?.seq;
        if from < first {
            return None;
        }
        let start = usize::try_from(from - first).ok()?;
        let records = queue.range(start.min(queue.len())..).take(limit as usize);
        records.map(|record| record.stored(with_ids)).collect()
    }

    /// Drops every held record of the tenant (an erasure: its clear values may be the
    /// subject's).
    pub(crate) fn forget_tenant(&self, tenant_no: i64) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        if let Some(queue) = inner.by_tenant.remove(&tenant_no) {
            inner.bytes -= queue.iter().map(RecentRecord::size).sum::<usize>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(tenant_no: i64, seqs: std::ops::Range<u64>) -> Vec<(i64, String, u64)> {
        seqs.map(|seq| (tenant_no, format!("e{seq}"), seq)).collect()
    }

    #[test]
    fn evictions_wait_for_the_last_pin() {
        let recent = RecentIds::default();
        recent.insert(ids(1, 0..10));
        recent.insert(ids(2, 0..10));
        let first = recent.pin();
        let second = recent.pin();
        recent.evict_below(1, 4);
        recent.evict_below(1, 6);
        recent.evict_below(2, 3);
        assert_eq!((recent.get(1, "e0"), recent.get(2, "e0")), (Some(0), Some(0)), "nothing leaves while pinned");
        drop(first);
        assert_eq!(recent.get(1, "e5"), Some(5), "one pin still held");
        drop(second);
        assert_eq!((recent.get(1, "e5"), recent.get(1, "e6")), (None, Some(6)), "the highest eviction asked for");
        assert_eq!((recent.get(2, "e2"), recent.get(2, "e3")), (None, Some(3)));
        recent.evict_below(2, 8);
        assert_eq!((recent.get(2, "e7"), recent.get(2, "e8")), (None, Some(8)), "unpinned: at once");
    }

    #[test]
    fn a_rebuild_cancels_the_evictions_waiting_for_a_pin() {
        let recent = RecentIds::default();
        recent.insert(ids(1, 5..10));
        let pin = recent.pin();
        recent.evict_below(1, 8);
        // The index is rebuilt: the ids it held come back, and none may leave until re-indexed.
        recent.restore_older(1, (0..5).map(|seq| (seq, format!("e{seq}"))).collect());
        drop(pin);
        assert!((0..10).all(|seq| recent.get(1, &format!("e{seq}")) == Some(seq)));
    }
}
