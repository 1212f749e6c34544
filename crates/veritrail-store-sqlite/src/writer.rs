//! The single writer thread of `ledger.sqlite`: every write goes through it. Appends are
//! group-committed: whatever queued up while the previous commit was in fsync goes into the next
//! transaction, and no caller hears back before that transaction is durable.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::oneshot;
use veritrail_ledger::hash::leaf_hash;
use veritrail_ledger::tree::Frontier;
use veritrail_model::PreparedEvent;
use veritrail_store::privacy::{Privacy, SealedBatch};
use veritrail_store::{Appended, Erasure, StoreError, StoreResult, TreeHead};

use crate::schema::{MAX_SEQ, NODE_LEVEL_STEP, record_key};
use crate::shared::{RecentRecord, Shared};
use crate::{keys, sql_error, tree};

/// Most events put into one group commit.
const MAX_GROUP_EVENTS: usize = 20_000;

/// Work for the writer thread.
pub(crate) enum Job {
    /// Append events to a tenant's ledger, with their encrypted sidecars and new data keys.
    Append {
        tenant: String,
        events: Arc<Vec<PreparedEvent>>,
        sealed: SealedBatch,
        reply: oneshot::Sender<StoreResult<Vec<Appended>>>,
    },
    /// Destroy a data subject's keys and blind-index tokens (`actor_keys`: the record keys of
    /// the subject's events as actor, from the index).
    Erase {
        tenant: String,
        tenant_no: i64,
        subject: String,
        actor_keys: Vec<i64>,
        reply: oneshot::Sender<StoreResult<Erasure>>,
    },
    /// Any other write; the closure answers its caller itself.
    Exec(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Stop after everything queued before it.
    Shutdown(oneshot::Sender<()>),
}

/// What the writer keeps in memory of a tenant's ledger between commits.
#[derive(Clone)]
struct TenantLedger {
    no: i64,
    id: String,
    next_seq: u64,
    frontier: Frontier,
    last_received_at: Timestamp,
}

pub(crate) struct Writer {
    conn: Connection,
    /// False only in the ledger-cost benchmark (see `OpenOptions::merkle_tree`).
    merkle_tree: bool,
    /// Read-only view of `index.sqlite`, for ids older than the recent ones.
    ids: Connection,
    tenants: HashMap<String, TenantLedger>,
    shared: Arc<Shared>,
    privacy: Arc<Privacy>,
    /// Data keys destroyed by erasures since start: an append sealed under one of them (it
    /// was sealed before the erasure and queued behind it) is refused with `Retry`, so the
    /// caller seals it again under a new key instead of writing data nobody can read.
    destroyed: HashSet<u64>,
}

struct PendingAppend {
    tenant: String,
    events: Arc<Vec<PreparedEvent>>,
    sealed: SealedBatch,
    reply: oneshot::Sender<StoreResult<Vec<Appended>>>,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        ids: Connection,
        shared: Arc<Shared>,
        privacy: Arc<Privacy>,
        merkle_tree: bool,
    ) -> Writer {
        Writer { conn, merkle_tree, ids, tenants: HashMap::new(), shared, privacy, destroyed: HashSet::new() }
    }

    fn erase(&mut self, tenant: &str, tenant_no: i64, subject: &str, actor_keys: &[i64]) -> StoreResult<Erasure> {
        // No clear value of the tenant's recent records is served from memory from now on.
        self.shared.records.forget_tenant(tenant_no);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql_error)?;
        let (ids, unlinked) = keys::erase(&tx, tenant_no, subject, actor_keys)?;
        tx.commit().map_err(sql_error)?;
        self.destroyed.extend(ids.iter().copied());
        self.privacy.forget(tenant, subject, &ids);
        // Best effort: drop the WAL frames that still hold the deleted rows' old pages.
        if let Err(error) = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::warn!(%error, "wal checkpoint after erasure failed; the ledger WAL is rewritten later");
        }
        Ok(Erasure { keys_destroyed: ids.len() as u64, events_unlinked: unlinked })
    }

    pub(crate) fn run(mut self, jobs: Receiver<Job>) {
        let mut shutdown_reply = None;
        while shutdown_reply.is_none() {
            let Ok(first) = jobs.recv() else { break };
            let mut appends = Vec::new();
            let mut event_count = 0;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                self.shared.queue_depth.fetch_sub(1, Ordering::Relaxed);
                match job {
                    Job::Append { tenant, events, sealed, reply } => {
                        event_count += events.len();
                        appends.push(PendingAppend { tenant, events, sealed, reply });
                    }
                    Job::Erase { tenant, tenant_no, subject, actor_keys, reply } => {
                        // Appends queued before the erasure commit first.
                        if !appends.is_empty() {
                            self.commit_group(std::mem::take(&mut appends));
                            event_count = 0;
                        }
                        let _ = reply.send(self.erase(&tenant, tenant_no, &subject, &actor_keys));
                    }
                    Job::Exec(write) => write(&mut self.conn),
                    Job::Shutdown(reply) => {
                        shutdown_reply = Some(reply);
                        break;
                    }
                }
                if event_count >= MAX_GROUP_EVENTS {
                    break;
                }
                next = jobs.try_recv().ok();
            }
            if !appends.is_empty() {
                self.commit_group(appends);
            }
        }
        // Whatever is still queued after a shutdown request is refused, never half-written.
        while let Ok(job) = jobs.try_recv() {
            match job {
                Job::Append { reply, .. } => {
                    let _ = reply.send(Err(StoreError::Unavailable("store is shutting down".into())));
                }
                Job::Erase { reply, .. } => {
                    let _ = reply.send(Err(StoreError::Unavailable("store is shutting down".into())));
                }
                Job::Exec(_) | Job::Shutdown(_) => {}
            }
        }
        self.shared.writer_stopped.store(true, Ordering::SeqCst);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    /// For each event id of the group's loaded tenants that [`RecentIds`] does not hold: its
    /// seq in the index, or `None` — read in one snapshot. Call it pinned (see `RecentIds`).
    /// A read that fails leaves the id out (looked up again later).
    fn indexed_ids(&self, appends: &[PendingAppend]) -> HashMap<(i64, String), Option<u64>> {
        let mut indexed = HashMap::new();
        let _snapshot = ReadTransaction::begin(&self.ids);
        let Ok(mut stmt) = self.ids.prepare_cached(ID_IN_INDEX) else { return indexed };
        for append in appends {
            let Some(tenant_no) = self.tenants.get(&append.tenant).map(|ledger| ledger.no) else { continue };
            for event in append.events.iter() {
                if self.shared.recent.get(tenant_no, &event.id).is_some() {
                    continue;
                }
                if let Ok(seq) = stmt.query_row(params![tenant_no, event.id], |row| row.get::<_, i64>(0)).optional() {
                    indexed.insert((tenant_no, event.id.clone()), seq.map(|seq| seq as u64));
                }
            }
        }
        indexed
    }

    fn commit_group(&mut self, appends: Vec<PendingAppend>) {
        let started = Instant::now();
        let now = Timestamp::now();
        let before: HashMap<String, TenantLedger> =
            appends.iter().filter_map(|a| self.tenants.get(&a.tenant).map(|t| (a.tenant.clone(), t.clone()))).collect();
        let mut results = Vec::with_capacity(appends.len());
        let mut touched = Vec::new();
        let mut batch_ids: HashMap<(i64, String), u64> = HashMap::new();
        let mut recent = Vec::new();
        // The group's ids not held in memory are looked up in the index first, in one snapshot
        // taken after the pin (see `RecentIds`): one short read transaction, not one per event.
        let _pin = self.shared.recent.pin();
        let indexed = self.indexed_ids(&appends);
        let outcome = (|| -> StoreResult<()> {
            let mut tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql_error)?;
            for append in &appends {
                if append.sealed.used_keys.iter().any(|id| self.destroyed.contains(id)) {
                    results.push(Err(StoreError::Retry("a data key it was sealed under was destroyed".into())));
                    continue;
                }
                let lookup = IdLookup {
                    batch: &mut batch_ids,
                    recent: &self.shared.recent,
                    indexed: &indexed,
                    index: &self.ids,
                };
                let result =
                    append_request(&mut tx, &mut self.tenants, append, now, lookup, self.merkle_tree, &mut recent);
                if let Ok(appended) = &result
                    && let Some(ledger) = self.tenants.get(&append.tenant)
                    && appended.iter().any(|a| !a.duplicate)
                {
                    touched.push(ledger.no);
                }
                results.push(result);
            }
            tx.commit().map_err(sql_error)
        })();
        if let Err(error) = outcome {
            tracing::error!(%error, "group commit failed");
            // Nothing of the group is durable: forget the in-memory progress of every tenant in it.
            for append in &appends {
                match before.get(&append.tenant) {
                    Some(state) => {
                        self.tenants.insert(append.tenant.clone(), state.clone());
                    }
                    None => {
                        self.tenants.remove(&append.tenant);
                    }
                }
            }
            for append in appends {
                let _ = append.reply.send(Err(StoreError::Backend(format!("commit failed: {error}"))));
            }
            return;
        }
        let mut new_events = 0u64;
        for result in results.iter().flatten() {
            new_events += result.iter().filter(|a| !a.duplicate).count() as u64;
        }
        // Findable by id before anyone hears of them (see RecentIds).
        let mut committed: Vec<(i64, String, u64)> =
            batch_ids.into_iter().map(|((no, id), seq)| (no, id, seq)).collect();
        committed.sort_unstable_by_key(|(no, _, seq)| (*no, *seq));
        self.shared.recent.insert(committed);
        self.shared.records.add(recent);
        if self.merkle_tree {
            let mut heads = self.shared.heads.lock().unwrap_or_else(|p| p.into_inner());
            for ledger in self.tenants.values().filter(|ledger| touched.contains(&ledger.no)) {
                heads.insert(ledger.no, TreeHead { size: ledger.next_seq, root: ledger.frontier.root().0 });
            }
        }
        self.shared.record_commit(started.elapsed(), new_events, &touched);
        for (append, result) in appends.iter().zip(&results) {
            if result.is_ok()
                && !append.sealed.new_keys.is_empty()
                && let Err(error) = self.privacy.committed(&append.tenant, &append.sealed.new_keys)
            {
                tracing::error!(%error, "cannot cache new data keys");
            }
        }
        for (append, result) in appends.into_iter().zip(results) {
            let _ = append.reply.send(result);
        }
    }
}

/// A read transaction on `conn` until dropped: its first read fixes the snapshot every read in
/// it sees. One that cannot begin leaves each read its own snapshot, which is as correct.
struct ReadTransaction<'a> {
    conn: Option<&'a Connection>,
}

impl<'a> ReadTransaction<'a> {
    fn begin(conn: &'a Connection) -> ReadTransaction<'a> {
        match conn.execute_batch("BEGIN") {
            Ok(()) => ReadTransaction { conn: Some(conn) },
            Err(error) => {
                tracing::warn!(%error, "cannot begin a read of the index for the group's ids");
                ReadTransaction { conn: None }
            }
        }
    }
}

impl Drop for ReadTransaction<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn
            && let Err(error) = conn.execute_batch("COMMIT")
        {
            tracing::warn!(%error, "cannot end the read of the index for the group's ids");
        }
    }
}

/// Seq of an event id in the index.
const ID_IN_INDEX: &str = "SELECT seq FROM event_ids WHERE tenant_no = ?1 AND event_id = ?2";

/// Where an event id may already be: earlier in this group, committed recently, or indexed.
struct IdLookup<'a> {
    batch: &'a mut HashMap<(i64, String), u64>,
    recent: &'a crate::shared::RecentIds,
    /// What [`Writer::indexed_ids`] read for the group.
    indexed: &'a HashMap<(i64, String), Option<u64>>,
    index: &'a Connection,
}

impl IdLookup<'_> {
    /// The seq of an existing event with this id. Checks the recent ids before the index, the
    /// index read in a snapshot taken after that check or, for ids read before the group, after
    /// the group's pin of the recent ids (see the RecentIds invariant).
    fn find(&self, tenant_no: i64, id: &str) -> StoreResult<Option<u64>> {
        let key = (tenant_no, id.to_string());
        if let Some(&seq) = self.batch.get(&key) {
            return Ok(Some(seq));
        }
        // Read before the group, when the recent ids did not hold it (nor can they since).
        if let Some(&indexed) = self.indexed.get(&key) {
            return Ok(indexed);
        }
        if let Some(seq) = self.recent.get(tenant_no, id) {
            return Ok(Some(seq));
        }
        let mut stmt = self.index.prepare_cached(ID_IN_INDEX).map_err(sql_error)?;
        let seq: Option<i64> =
            stmt.query_row(params![tenant_no, id], |row| row.get(0)).optional().map_err(sql_error)?;
        Ok(seq.map(|seq| seq as u64))
    }
}

/// Appends one request inside the group transaction, under a savepoint so that a failing request
/// leaves neither rows nor in-memory progress behind.
fn append_request(
    tx: &mut Transaction<'_>,
    tenants: &mut HashMap<String, TenantLedger>,
    append: &PendingAppend,
    now: Timestamp,
    mut ids: IdLookup<'_>,
    merkle_tree: bool,
    recent: &mut Vec<(i64, RecentRecord)>,
) -> StoreResult<Vec<Appended>> {
    if !tenants.contains_key(&append.tenant) {
        let ledger = load_tenant(tx, &append.tenant)?;
        tenants.insert(append.tenant.clone(), ledger);
    }
    let Some(ledger) = tenants.get_mut(&append.tenant) else {
        return Err(StoreError::TenantNotFound(append.tenant.clone()));
    };
    let saved = ledger.clone();
    let mut added_ids = Vec::new();
    let mut records = Vec::new();
    let sp = tx.savepoint().map_err(sql_error)?;
    let result = keys::insert_keys(&sp, ledger.no, &append.sealed.new_keys, now.as_microsecond()).and_then(|()| {
        let mut added = Added { ids: &mut added_ids, records: &mut records };
        append_events(&sp, ledger, &append.events, &append.sealed, now, &mut ids, &mut added, merkle_tree)
    });
    match result {
        Ok(appended) => {
            sp.commit().map_err(sql_error)?;
            recent.extend(records);
            Ok(appended)
        }
        Err(error) => {
            drop(sp); // rolls the savepoint back
            *ledger = saved;
            for id in added_ids {
                ids.batch.remove(&id);
            }
            Err(error)
        }
    }
}

/// What one request added, undone when its savepoint rolls back: ids in the group's id map, and
/// the records for [`crate::shared::RecentRecords`].
struct Added<'a> {
    ids: &'a mut Vec<(i64, String)>,
    records: &'a mut Vec<(i64, RecentRecord)>,
}

#[allow(clippy::too_many_arguments)]
fn append_events(
    conn: &Connection,
    ledger: &mut TenantLedger,
    events: &Arc<Vec<PreparedEvent>>,
    sealed_batch: &SealedBatch,
    now: Timestamp,
    ids: &mut IdLookup<'_>,
    added: &mut Added<'_>,
    merkle_tree: bool,
) -> StoreResult<Vec<Appended>> {
    let mut insert_record = conn
        .prepare_cached("INSERT INTO records (key, tenant_no, event_id, leaf_hash, sealed) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(sql_error)?;
    let mut insert_personal = conn
        .prepare_cached("INSERT INTO personal (key, data, email_bidx, ip_bidx) VALUES (?1, ?2, ?3, ?4)")
        .map_err(sql_error)?;
    let mut insert_node = conn
        .prepare_cached("INSERT INTO merkle_nodes (tenant_no, level, idx, hash) VALUES (?1, ?2, ?3, ?4)")
        .map_err(sql_error)?;
    let received_at = now.max(ledger.last_received_at);
    let mut appended = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        if let Some(seq) = ids.find(ledger.no, &event.id)? {
            appended.push(Appended { id: event.id.clone(), seq, duplicate: true });
            continue;
        }
        let seq = ledger.next_seq;
        if seq > MAX_SEQ {
            return Err(StoreError::Backend(format!("tenant {} reached the maximum ledger size", ledger.id)));
        }
        let (sealed, layout) = veritrail_model::seal_with_layout(event, &ledger.id, seq, received_at)
            .map_err(|e| StoreError::Backend(format!("cannot seal event {}: {e}", event.id)))?;
        let leaf = if merkle_tree { leaf_hash(&sealed) } else { veritrail_ledger::hash::Hash([0; 32]) };
        let key = record_key(ledger.no, seq);
        insert_record.execute(params![key, ledger.no, event.id, leaf.0.as_slice(), sealed]).map_err(sql_error)?;
        if let Some(Some(sidecar)) = sealed_batch.sidecars.get(index) {
            let email = sidecar.email.as_ref().map(|t| t.as_slice());
            let ip = sidecar.ip.as_ref().map(|t| t.as_slice());
            insert_personal.execute(params![key, sidecar.data, email, ip]).map_err(sql_error)?;
        }
        let completed = match merkle_tree {
            true => ledger
                .frontier
                .push(leaf)
                .map_err(|e| StoreError::Backend(format!("merkle tree of tenant {} is full: {e}", ledger.id)))?,
            false => Vec::new(),
        };
        for node in completed {
            if node.level % NODE_LEVEL_STEP == 0 {
                insert_node
                    .execute(params![ledger.no, node.level, node.index as i64, node.hash.0.as_slice()])
                    .map_err(sql_error)?;
            }
        }
        ledger.next_seq += 1;
        debug_assert!(!merkle_tree || ledger.frontier.size() == ledger.next_seq);
        let batch_key = (ledger.no, event.id.clone());
        ids.batch.insert(batch_key.clone(), seq);
        added.ids.push(batch_key);
        let record =
            RecentRecord { seq, sealed: sealed.into(), layout, leaf_hash: leaf.0, events: Arc::clone(events), index };
        added.records.push((ledger.no, record));
        appended.push(Appended { id: event.id.clone(), seq, duplicate: false });
    }
    ledger.last_received_at = received_at;
    Ok(appended)
}

fn load_tenant(conn: &Connection, tenant: &str) -> StoreResult<TenantLedger> {
    let no: Option<i64> = conn
        .query_row("SELECT no FROM tenants WHERE id = ?1", [tenant], |row| row.get(0))
        .optional()
        .map_err(sql_error)?;
    let Some(no) = no else {
        return Err(StoreError::TenantNotFound(tenant.to_string()));
    };
    let size = tree::tree_size(conn, no)?;
    let frontier = tree::load_frontier(conn, no, size)?;
    let mut last_received_at = Timestamp::UNIX_EPOCH;
    if size > 0 {
        let sealed: Vec<u8> = conn
            .query_row("SELECT sealed FROM records WHERE key = ?1", [record_key(no, size - 1)], |row| row.get(0))
            .map_err(sql_error)?;
        last_received_at = received_at_of(&sealed)?;
    }
    Ok(TenantLedger { no, id: tenant.to_string(), next_seq: size, frontier, last_received_at })
}

fn received_at_of(sealed: &[u8]) -> StoreResult<Timestamp> {
    let value: serde_json::Value =
        serde_json::from_slice(sealed).map_err(|e| StoreError::Corrupt(format!("sealed record is not json: {e}")))?;
    value
        .get("received_at")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<Timestamp>().ok())
        .ok_or_else(|| StoreError::Corrupt("sealed record has no valid received_at".into()))
}
