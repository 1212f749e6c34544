//! The indexer thread: follows every tenant's ledger and derives the query tables of
//! `index.sqlite` from the sealed records, in seq order, a batch per transaction. Its progress
//! per tenant is stored in the same transaction as the rows, so after a crash it resumes exactly.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;
use veritrail_store::index_row::IndexRow;
use veritrail_store::{StoreError, StoreResult};

use crate::schema::{self, MAX_SEQ, key_seq, record_key};
use crate::shared::Shared;
use crate::{CachedSql, sql_error};

/// Records indexed per transaction: large, because every B-tree page an index batch touches is
/// written once per transaction, however many rows it gained.
const BATCH: usize = 16_384;

/// After a pass of less than a whole [`BATCH`] the indexer gathers: it waits until a whole
/// batch is pending, or [`GATHER`] has passed. A transaction's cost is mostly the index pages it
/// rewrites, and rows with random keys (event ids, actors, resources) each land on their own
/// page unless a batch holds many: at low rates every group commit holds a handful of events,
/// and indexing each on its own cost a whole transaction per commit (~170 µs of CPU for one
/// event at 1,000 single-event commits per second, against ~10 µs per event in large batches);
/// under full load, passes that followed each group commit held ~4,000 rows (p50; 16,384 never)
/// and paid for that. New events still reach the queries well within the 1 s promised (SPEC §5):
/// at most [`GATHER`] plus one pass; ids and records not yet indexed are served from memory
/// meanwhile ([`crate::shared::RecentIds`], [`crate::shared::RecentRecords`]).
const GATHER: Duration = Duration::from_millis(250);

pub(crate) struct Indexer {
    conn: Connection,
    /// Removed after a clean stop (see `unclean_marker`).
    unclean_marker: std::path::PathBuf,
    shared: Arc<Shared>,
    progress: HashMap<i64, u64>,
    rebuilds: Receiver<oneshot::Sender<StoreResult<()>>>,
    waiting_rebuilds: Vec<oneshot::Sender<StoreResult<()>>>,
    /// The rows of the batch being indexed, kept between batches: megabytes allocated afresh
    /// per batch cost more in page faults than the inserts they feed.
    batch: BatchRows,
}

/// Record key, indexed fields, blind-index tokens of e-mail and IP.
type IndexedEvent = (i64, IndexRow, [Option<Vec<u8>>; 2]);

#[derive(Default)]
struct BatchRows {
    events: Vec<IndexedEvent>,
    ids: Vec<(String, u64)>,
    resources: Vec<(String, String, i64)>,
}

impl Indexer {
    pub(crate) fn new(
        conn: Connection,
        shared: Arc<Shared>,
        rebuilds: Receiver<oneshot::Sender<StoreResult<()>>>,
        unclean_marker: std::path::PathBuf,
    ) -> StoreResult<Indexer> {
        let progress = load_progress(&conn)?;
        Ok(Indexer {
            conn,
            unclean_marker,
            shared,
            progress,
            rebuilds,
            waiting_rebuilds: Vec::new(),
            batch: BatchRows::default(),
        })
    }

    pub(crate) fn run(mut self) {
        self.mark_all_dirty();
        while !self.shared.stopping.load(Ordering::SeqCst) {
            while let Ok(reply) = self.rebuilds.try_recv() {
                self.waiting_rebuilds.push(reply);
                if let Err(error) = self.reset() {
                    tracing::error!(%error, "cannot reset the index");
                }
            }
            let dirty = self.shared.take_dirty(Duration::from_millis(100));
            let before = self.shared.indexed_total.load(Ordering::SeqCst);
            let passed = !dirty.is_empty();
            for tenant_no in dirty {
                if let Err(error) = self.catch_up(tenant_no) {
                    tracing::error!(%error, tenant_no, "indexing failed; rebuilding the index from the ledger");
                    if let Err(error) = self.reset() {
                        tracing::error!(%error, "cannot reset the index");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    break;
                }
            }
            if self.shared.committed_total.load(Ordering::SeqCst) <= self.shared.indexed_total.load(Ordering::SeqCst) {
                self.shared.rebuilding.store(false, Ordering::SeqCst);
                for reply in self.waiting_rebuilds.drain(..) {
                    let _ = reply.send(Ok(()));
                }
            }
            let indexed = self.shared.indexed_total.load(Ordering::SeqCst).saturating_sub(before);
            if passed && indexed < BATCH as u64 && self.waiting_rebuilds.is_empty() {
                self.gather();
            }
        }
        self.close_cleanly();
    }

    /// Waits until a whole [`BATCH`] is pending (all tenants together), for at most
    /// [`GATHER`]; less if the store is stopping or someone waits for the index
    /// (`Store::wait_indexed`).
    fn gather(&self) {
        let deadline = std::time::Instant::now() + GATHER;
        while !self.shared.stopping.load(Ordering::SeqCst) {
            let committed = self.shared.committed_total.load(Ordering::SeqCst);
            let pending = committed.saturating_sub(self.shared.indexed_total.load(Ordering::SeqCst));
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let hurried = self.shared.index_waiters.load(Ordering::SeqCst) > 0;
            if pending >= BATCH as u64 || left.is_zero() || hurried {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(10)));
        }
    }

    /// Makes every index write durable, then removes the unclean-stop marker.
    fn close_cleanly(&self) {
        let flushed = self
            .conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA wal_checkpoint(TRUNCATE);")
            .and_then(|()| self.conn.execute_batch("BEGIN IMMEDIATE; COMMIT;"));
        match flushed {
            Ok(()) => {
                if let Err(error) = std::fs::remove_file(&self.unclean_marker) {
                    tracing::warn!(%error, "cannot remove the index marker; the index is recounted at next start");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot flush the index; it is recounted at next start"),
        }
    }

    fn mark_all_dirty(&self) {
        match tenant_numbers(&self.conn) {
            Ok(all) => self.shared.mark_dirty(&all),
            Err(error) => tracing::error!(%error, "cannot list tenants to index"),
        }
    }

    /// Drops every derived row and starts over from seq 0 of every tenant.
    fn reset(&mut self) -> StoreResult<()> {
        self.shared.rebuilding.store(true, Ordering::SeqCst);
        // The ids the index is about to forget go back to the recent ids first, so idempotent
        // ingest and reads by id keep working during the rebuild.
        for (&tenant_no, &next) in &self.progress {
            let older = crate::ids_in_range(&self.conn, "ledger.", tenant_no, 0, next)?;
            self.shared.recent.restore_older(tenant_no, older);
        }
        // One transaction: the writer's id lookups never see the tables missing.
        self.conn
            .execute_batch(
                "BEGIN IMMEDIATE; DROP TABLE IF EXISTS events; DROP TABLE IF EXISTS event_resources;
                 DROP TABLE IF EXISTS event_ids; DROP TABLE IF EXISTS progress;",
            )
            .map_err(sql_error)?;
        if let Err(error) = schema::migrate_index(&self.conn) {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(StoreError::Backend(error));
        }
        self.conn.execute_batch("COMMIT").map_err(sql_error)?;
        self.progress.clear();
        self.shared.indexed_total.store(0, Ordering::SeqCst);
        self.mark_all_dirty();
        Ok(())
    }

    fn catch_up(&mut self, tenant_no: i64) -> StoreResult<()> {
        while !self.shared.stopping.load(Ordering::SeqCst) {
            if self.index_batch(tenant_no)? < BATCH {
                break;
            }
        }
        Ok(())
    }

    fn index_batch(&mut self, tenant_no: i64) -> StoreResult<usize> {
        let next = self.progress.get(&tenant_no).copied().unwrap_or(0);
        let tx = self.conn.transaction().map_err(sql_error)?;
        // Read and parse the whole batch first, then fill each table in its own key order: rows
        // inserted in key order walk each B-tree once instead of jumping between its pages.
        let BatchRows { events, ids, resources } = &mut self.batch;
        events.clear();
        ids.clear();
        resources.clear();
        {
            let mut select = tx
                .prepare_cached(
                    "SELECT r.key, r.sealed, p.email_bidx, r.event_id, p.ip_bidx FROM ledger.records r LEFT JOIN ledger.personal p ON p.key = r.key
                     WHERE r.key BETWEEN ?1 AND ?2 ORDER BY r.key LIMIT ?3",
                )
                .map_err(sql_error)?;
            let mut rows = select
                .query(params![record_key(tenant_no, next), record_key(tenant_no, MAX_SEQ), BATCH as i64])
                .map_err(sql_error)?;
            while let Some(row) = rows.next().map_err(sql_error)? {
                let key: i64 = row.get(0).map_err(sql_error)?;
                let expected = next + events.len() as u64;
                if key_seq(key) != expected {
                    return Err(StoreError::Corrupt(format!(
                        "ledger of tenant {tenant_no} has a gap: expected seq {expected}, found {}",
                        key_seq(key)
                    )));
                }
                let sealed = row.get_ref(1).map_err(sql_error)?.as_blob().map_err(column_type)?;
                let fields = IndexRow::of(sealed)?;
                let email: Option<Vec<u8>> = row.get(2).map_err(sql_error)?;
                let ip: Option<Vec<u8>> = row.get(4).map_err(sql_error)?;
                let event_id: String = row.get(3).map_err(sql_error)?;
                ids.push((event_id, key_seq(key)));
                for (rtype, rid) in &fields.resources {
                    resources.push((rid.clone(), rtype.clone(), key));
                }
                events.push((key, fields, [email, ip]));
            }
        }
        ids.sort_unstable();
        resources.sort_unstable();
        let count = events.len();
        {
            // A plain INSERT: the rows of seqs from the stored progress on cannot exist (rows and
            // progress commit together), so a conflict means a damaged index, which fails the
            // batch and has the index rebuilt. `OR REPLACE` made SQLite keep a statement journal
            // for every row (a REPLACE deletes before it inserts, across four B-trees): a copy of
            // each page a row touched, ~3.5 µs per row, a quarter of the indexer's work.
            let mut insert_event = tx
                .prepare_cached(
                    "INSERT INTO events (key, occurred_at, action, actor_id, actor_type, actor_email, outcome, ip, channel, data_subject)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(sql_error)?;
            for (key, fields, [email, ip]) in events.iter() {
                insert_event
                    .execute(params![
                        key,
                        fields.occurred_at,
                        fields.action,
                        fields.actor_id,
                        fields.actor_type,
                        email,
                        fields.outcome,
                        ip,
                        fields.channel,
                        fields.data_subject
                    ])
                    .map_err(sql_error)?;
            }
            let mut insert_id = tx
                .prepare_cached("INSERT OR REPLACE INTO event_ids (tenant_no, event_id, seq) VALUES (?1, ?2, ?3)")
                .map_err(sql_error)?;
            for (event_id, seq) in ids.iter() {
                insert_id.execute(params![tenant_no, event_id, *seq as i64]).map_err(sql_error)?;
            }
            let mut insert_resource = tx
                .prepare_cached("INSERT OR IGNORE INTO event_resources (rtype, rid, key) VALUES (?1, ?2, ?3)")
                .map_err(sql_error)?;
            for (rid, rtype, key) in resources.iter() {
                insert_resource.execute(params![rtype, rid, key]).map_err(sql_error)?;
            }
        }
        if count > 0 {
            let new_next = next + count as u64;
            tx.execute_cached(
                "INSERT INTO progress (tenant_no, next_seq) VALUES (?1, ?2)
                 ON CONFLICT (tenant_no) DO UPDATE SET next_seq = excluded.next_seq",
                params![tenant_no, new_next as i64],
            )
            .map_err(sql_error)?;
            tx.commit().map_err(sql_error)?;
            self.progress.insert(tenant_no, new_next);
            self.shared.recent.evict_below(tenant_no, new_next);
            self.shared.indexed_total.fetch_add(count as u64, Ordering::SeqCst);
        }
        Ok(count)
    }
}

fn column_type(error: rusqlite::types::FromSqlError) -> StoreError {
    StoreError::Corrupt(format!("ledger record has a column of the wrong type: {error}"))
}

fn load_progress(conn: &Connection) -> StoreResult<HashMap<i64, u64>> {
    let mut stmt = conn.prepare("SELECT tenant_no, next_seq FROM progress").map_err(sql_error)?;
    let rows = stmt.query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))).map_err(sql_error)?;
    let mut progress = HashMap::new();
    for row in rows {
        let (tenant_no, next) = row.map_err(sql_error)?;
        progress.insert(tenant_no, next.max(0) as u64);
    }
    Ok(progress)
}

fn tenant_numbers(conn: &Connection) -> StoreResult<Vec<i64>> {
    let mut stmt = conn.prepare("SELECT no FROM ledger.tenants ORDER BY no").map_err(sql_error)?;
    let rows = stmt.query_map([], |row| row.get::<_, i64>(0)).map_err(sql_error)?;
    let mut all = Vec::new();
    for row in rows {
        all.push(row.map_err(sql_error)?);
    }
    Ok(all)
}
