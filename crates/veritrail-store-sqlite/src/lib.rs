//! The embedded storage backend: two SQLite files (WAL, `synchronous=FULL` for the ledger) in one
//! data directory, no server to install.
//!
//! - `ledger.sqlite` — the source of truth. One writer thread owns all writes and group-commits
//!   appends (records, personal sidecars, Merkle nodes) with fsync before anyone is answered.
//! - `index.sqlite` — derived query tables, filled by an indexer thread a few milliseconds behind
//!   the writer; deleted or damaged, it is rebuilt from the ledger and never stops a start.
//!
//! - `alerts.sqlite` — monitoring (rules, alerts, webhook deliveries, the rule engine's cursors):
//!   [`SqliteAlertStore`], the [`veritrail_store::AlertStore`] implementation, neither ledger
//!   nor derived.
//! - `access.sqlite` — access control (users, sessions, custom roles, identity providers):
//!   [`SqliteAccessStore`], the [`veritrail_store::AccessStore`] implementation, likewise.
//!
//! Reads run on a small pool of connections (both files attached) via `spawn_blocking`.

#![forbid(unsafe_code)]

mod access;
mod alerts;
mod dir_lock;
pub mod dump;
mod indexer;
mod keys;
mod reader;
mod schema;
mod shared;
mod side;
mod timestamps;
mod tree;
pub mod verify;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;
use veritrail_crypto::MasterKeys;
use veritrail_model::PreparedEvent;
use veritrail_query::{EventQuery, PageRequest};
use veritrail_store::privacy::{Privacy, SealedBatch};
use veritrail_store::{
    ApiKeyRecord, Appended, BoxFuture, CheckpointTimestamp, Erasure, EventPage, IndexStatus, Store, StoreError,
    StoreResult, StoreStats, StoredCheckpoint, StoredEvent, Tenant, TreeHead,
};

pub use crate::access::{ACCESS_FILE, SqliteAccessStore};
pub use crate::alerts::{ALERTS_FILE, SqliteAlertStore};
pub use crate::dir_lock::LOCK_FILE;
pub use crate::keys::{MASTER_KEY_FILE, PREVIOUS_MASTER_KEY_FILE, write_key_file};
use crate::shared::Shared;
use crate::writer::{Job, Writer};

/// File name of the ledger database inside the data directory.
pub const LEDGER_FILE: &str = "ledger.sqlite";
/// File name of the derived index database inside the data directory.
pub const INDEX_FILE: &str = "index.sqlite";
/// Append requests that may wait for the writer before callers are pushed back.
const QUEUE_CAPACITY: usize = 4096;
/// Read connections kept open.
const READERS: usize = 4;

pub(crate) fn sql_error(error: rusqlite::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

/// `execute` and `query_row` through the connection's statement cache. For statements a
/// connection runs over and over: compiling one costs more than running it (the side
/// databases spent ~1 µs of CPU per ingested event in SQLite's parser before their statements
/// were cached).
pub(crate) trait CachedSql {
    fn execute_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn query_row_cached<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        read: F,
    ) -> rusqlite::Result<T>;
}

impl CachedSql for Connection {
    fn execute_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        read: F,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, read)
    }
}

struct Inner {
    dir: PathBuf,
    jobs: SyncSender<Job>,
    rebuilds: Mutex<mpsc::Sender<oneshot::Sender<StoreResult<()>>>>,
    shared: Arc<Shared>,
    readers: Mutex<Vec<Connection>>,
    tenant_nos: RwLock<HashMap<String, i64>>,
    /// API keys as last read, by id (see [`KeyCache`]).
    api_keys: RwLock<KeyCache>,
    indexer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// `alerts.sqlite`: the [`veritrail_store::AlertStore`] half.
    alerts: SqliteAlertStore,
    /// `access.sqlite`: the [`veritrail_store::AccessStore`] half.
    access: SqliteAccessStore,
    /// Master keys and the cache of unwrapped data keys.
    privacy: Arc<Privacy>,
    /// See [`OpenOptions::encrypt_personal`].
    encrypt_personal: bool,
    /// The master key lives in `master.key` (not configured): online rotation is possible.
    key_file: bool,
    /// One rotation at a time.
    rotating: tokio::sync::Mutex<()>,
}

/// API keys as last read from the ledger, by id. Every authenticated request reads its key; on
/// the embedded store every change of a key goes through this process (a key is only ever
/// created, then perhaps revoked), so the cache is exact: [`Store::revoke_api_key`] drops the
/// entry and moves `generation` on, and a read that started before a revocation does not put
/// what it read back (it compares the generation it started with). Unknown ids are not cached.
#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, ApiKeyRecord>,
    generation: u64,
}

/// Most keys the cache holds; it starts over when full.
const KEY_CACHE_LIMIT: usize = 10_000;

impl Drop for Inner {
    /// The last handle is gone: the writer ends when its queue closes (right after this), the
    /// indexer and the WAL checkpointer when they see `stopping`, and the data directory's lock
    /// goes with the last of them.
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake_indexer();
    }
}

/// The embedded store. Cheap to clone; all clones share the same threads.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("dir", &self.inner.dir).finish()
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Maintain the RFC 6962 tree (leaf hashes, Merkle nodes). Always true in Veritrail; false
    /// exists only so the ledger-cost benchmark can measure what tamper evidence costs. A store
    /// written with it false is not verifiable.
    #[doc(hidden)]
    pub merkle_tree: bool,
    /// Encrypt personal-data sidecars. Always true in Veritrail; false exists only so the
    /// encryption benchmark can measure what it costs (sidecars are then stored in clear, as
    /// before encryption at rest, and encrypted at the next normal open).
    #[doc(hidden)]
    pub encrypt_personal: bool,
    /// The master keys (e.g. from `VERITRAIL_MASTER_KEY`). `None`: `master.key` in the data
    /// directory, generated (mode 0600) on first start, plus `master.key.previous` while a
    /// rotation completes.
    pub master_keys: Option<MasterKeys>,
    /// Bytes of recently committed records kept in memory for `Store::records`; 0 (the
    /// default) means about 48 MiB. Tests set it small to exercise eviction.
    #[doc(hidden)]
    pub recent_records_bytes: usize,
    /// Size of the ledger's WAL past which it is restarted; 0 (the default) means
    /// [`WAL_RESTART_BYTES`]. Tests set it small.
    #[doc(hidden)]
    pub wal_restart_bytes: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            merkle_tree: true,
            encrypt_personal: true,
            master_keys: None,
            recent_records_bytes: 0,
            wal_restart_bytes: 0,
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir` and starts its writer and indexer threads.
    /// A damaged `index.sqlite` is moved aside and rebuilt in the background.
    pub fn open(dir: &Path) -> StoreResult<SqliteStore> {
        SqliteStore::open_with(dir, OpenOptions::default())
    }

    /// [`SqliteStore::open`] with options.
    pub fn open_with(dir: &Path, options: OpenOptions) -> StoreResult<SqliteStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let ledger_path = dir.join(LEDGER_FILE);
        let index_path = dir.join(INDEX_FILE);
        restrict_permissions(dir, 0o700)?;
        let dir_lock = dir_lock::DirLock::acquire(dir)?;
        let writer_conn = Connection::open(&ledger_path).map_err(sql_error)?;
        restrict_permissions(&ledger_path, 0o600)?;
        schema::configure(&writer_conn, true, schema::Checkpointing::Background).map_err(sql_error)?;
        schema::fixed_plans(&writer_conn).map_err(sql_error)?;
        // Erasure deletes key rows: overwrite their bytes rather than leave them in free pages.
        writer_conn.pragma_update(None, "secure_delete", "ON").map_err(sql_error)?;
        schema::migrate_ledger(&writer_conn).map_err(StoreError::Corrupt)?;
        let privacy = Arc::new(Privacy::new(keys::resolve_master_keys(dir, options.master_keys.clone())?));
        let mut writer_conn = writer_conn;
        keys::load_tenant_keys(&writer_conn, &privacy)?;
        // Nothing can be under another master key unless a previous one is configured: no scan
        // of every key row at each start.
        if privacy.master_keys().has_previous() {
            let rewrapped = keys::rewrap_all(&mut writer_conn, &privacy)?;
            tracing::info!(rewrapped, key_id = %privacy.master_keys().current().id(), "re-wrapped data keys under the current master key");
        }
        let encrypted = match options.encrypt_personal {
            true => keys::encrypt_clear_sidecars(&mut writer_conn, &privacy, to_micros(Timestamp::now()))?,
            false => keys::expect_clear_sidecars(&writer_conn)?,
        };
        if encrypted > 0 {
            tracing::info!(encrypted, "encrypted personal data stored before encryption at rest");
            let _ = writer_conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }

        let shared = Arc::new(Shared::default());
        // Held until the last of the store's threads (each holds `shared`) has finished.
        let _ = shared.dir_lock.set(dir_lock);
        shared.records.set_budget(options.recent_records_bytes);
        let committed = total_records(&writer_conn)?;
        shared.committed_total.store(committed, Ordering::SeqCst);

        let index_conn = match open_index(&index_path, &ledger_path, &writer_conn) {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "index is damaged; moving it aside and rebuilding from the ledger");
                set_aside(&index_path)?;
                open_index(&index_path, &ledger_path, &writer_conn)
                    .map_err(|e| StoreError::Backend(format!("cannot create a fresh index: {e}")))?
            }
        };
        let indexed = index_conn
            .query_row("SELECT coalesce(sum(next_seq), 0) FROM progress", [], |row| row.get::<_, i64>(0))
            .map_err(sql_error)?;
        load_unindexed_ids(&writer_conn, &index_conn, &shared)?;
        shared.indexed_total.store(indexed.max(0) as u64, Ordering::SeqCst);
        if (indexed as u64) < committed {
            shared.rebuilding.store(indexed == 0 && committed > 0, Ordering::SeqCst);
        }

        let alerts = SqliteAlertStore::open(dir)?;
        let access = SqliteAccessStore::open(dir)?;
        let (jobs, job_rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let (rebuilds, rebuild_rx) = mpsc::channel();
        let indexer = indexer::Indexer::new(index_conn, shared.clone(), rebuild_rx, unclean_marker(&index_path))?;
        let ids_conn = Connection::open_with_flags(&index_path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql_error)?;
        ids_conn.pragma_update(None, "busy_timeout", 5000).map_err(sql_error)?;
        ids_conn.pragma_update(None, "mmap_size", 1i64 << 34).map_err(sql_error)?;
        ids_conn.pragma_update(None, "cache_size", -65536).map_err(sql_error)?;
        schema::fixed_plans(&ids_conn).map_err(sql_error)?;
        let writer = Writer::new(writer_conn, ids_conn, shared.clone(), privacy.clone(), options.merkle_tree);
        std::thread::Builder::new()
            .name("veritrail-writer".into())
            .spawn(move || writer.run(job_rx))
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        let checkpoint_conn = Connection::open(&ledger_path).map_err(sql_error)?;
        schema::configure(&checkpoint_conn, true, schema::Checkpointing::Background).map_err(sql_error)?;
        let checkpoint_shared = shared.clone();
        let restart_bytes = match options.wal_restart_bytes {
            0 => WAL_RESTART_BYTES,
            bytes => i64::try_from(bytes).unwrap_or(i64::MAX),
        };
        std::thread::Builder::new()
            .name("veritrail-checkpoint".into())
            .spawn(move || run_wal_checkpoints(checkpoint_conn, checkpoint_shared, restart_bytes))
            .map_err(|e| StoreError::Backend(format!("cannot start checkpoint thread: {e}")))?;
        let indexer_thread = std::thread::Builder::new()
            .name("veritrail-indexer".into())
            .spawn(move || indexer.run())
            .map_err(|e| StoreError::Backend(format!("cannot start indexer thread: {e}")))?;

        let inner = Inner {
            dir: dir.to_path_buf(),
            jobs,
            rebuilds: Mutex::new(rebuilds),
            shared,
            readers: Mutex::new(Vec::new()),
            tenant_nos: RwLock::new(HashMap::new()),
            api_keys: RwLock::new(KeyCache::default()),
            indexer_thread: Mutex::new(Some(indexer_thread)),
            alerts,
            access,
            privacy,
            encrypt_personal: options.encrypt_personal,
            key_file: options.master_keys.is_none(),
            rotating: tokio::sync::Mutex::new(()),
        };
        Ok(SqliteStore { inner: Arc::new(inner) })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn submit(&self, job: Job) -> StoreResult<()> {
        if self.inner.shared.writer_stopped.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("store is shut down".into()));
        }
        self.inner.shared.queue_depth.fetch_add(1, Ordering::Relaxed);
        self.inner.jobs.send(job).map_err(|_| {
            self.inner.shared.queue_depth.fetch_sub(1, Ordering::Relaxed);
            StoreError::Unavailable("store writer has stopped".into())
        })
    }

    /// Runs a write on the writer thread and waits for its answer.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Exec(Box::new(move |conn| {
            let _ = reply.send(work(conn));
        }));
        // Sending may block when the queue is full: do it off the async runtime.
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.submit(job))
            .await
            .map_err(|e| StoreError::Unavailable(format!("writer hand-off failed: {e}")))??;
        answer.await.map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?
    }

    /// Runs a read on a pooled connection off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = this.take_reader()?;
            let result = (|| {
                conn.execute_batch("BEGIN").map_err(sql_error)?;
                let result = work(&conn);
                conn.execute_batch("COMMIT").map_err(sql_error)?;
                result
            })();
            if result.is_err() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            this.return_reader(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }

    fn take_reader(&self) -> StoreResult<Connection> {
        let pooled = self.inner.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(conn) = pooled {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            self.inner.dir.join(LEDGER_FILE),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_error)?;
        schema::configure(&conn, true, schema::Checkpointing::Background).map_err(sql_error)?;
        let index = self.inner.dir.join(INDEX_FILE);
        conn.execute("ATTACH DATABASE ?1 AS idx", [index.to_string_lossy()]).map_err(sql_error)?;
        Ok(conn)
    }

    fn return_reader(&self, conn: Connection) {
        let mut readers = self.inner.readers.lock().unwrap_or_else(|p| p.into_inner());
        if readers.len() < READERS {
            readers.push(conn);
        }
    }

    /// Seals a batch's sidecars (blocking: may load keys on a pooled connection).
    fn seal(&self, tenant: &str, tenant_no: i64, events: &[PreparedEvent]) -> StoreResult<SealedBatch> {
        let privacy = &self.inner.privacy;
        if events.iter().all(|e| e.personal.is_empty()) {
            return privacy.seal(tenant, events);
        }
        if !self.inner.encrypt_personal {
            return Ok(Privacy::clear_batch(events));
        }
        let missing = privacy.missing_subjects(tenant, events);
        if !missing.is_empty() || !privacy.has_blind_key(tenant) {
            let conn = self.take_reader()?;
            let loaded = (|| {
                if !privacy.has_blind_key(tenant) {
                    let wrapped = keys::tenant_key(&conn, tenant_no)?
                        .ok_or_else(|| StoreError::Corrupt(format!("tenant {tenant} has no blind-index key")))?;
                    privacy.remember_blind_key(tenant, &wrapped)?;
                }
                privacy.remember(tenant, &keys::keys_by_subject(&conn, tenant_no, &missing)?)
            })();
            self.return_reader(conn);
            loaded?;
        }
        privacy.seal(tenant, events)
    }

    /// A read for one tenant, with what it needs to decrypt personal data.
    async fn read_tenant<T: Send + 'static>(
        &self,
        tenant: &str,
        work: impl FnOnce(&Connection, &reader::ReadCtx<'_>) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let tenant_no = self.tenant_no(tenant).await?;
        let (tenant, privacy) = (tenant.to_string(), self.inner.privacy.clone());
        self.read(move |conn| work(conn, &reader::ReadCtx { privacy: &privacy, tenant: &tenant, tenant_no })).await
    }

    /// `Store::records`: the live tail (what the rule engine follows) from the last commits in
    /// memory, ids copied only `with_ids`; older records from the ledger.
    async fn records_from(&self, tenant: &str, from: u64, limit: u32, with_ids: bool) -> StoreResult<Vec<StoredEvent>> {
        let no = self.tenant_no(tenant).await?;
        let shared = &self.inner.shared;
        if let Some(records) = shared.records.get(no, from, limit, with_ids) {
            shared.records_from_memory.fetch_add(records.len() as u64, Ordering::Relaxed);
            return Ok(records);
        }
        let records = self.read_tenant(tenant, move |conn, ctx| reader::records(conn, ctx, from, limit)).await?;
        shared.records_from_storage.fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(records)
    }

    /// The internal number of a tenant, cached (tenants are never renumbered or deleted).
    async fn tenant_no(&self, tenant: &str) -> StoreResult<i64> {
        if let Some(&no) = self.inner.tenant_nos.read().unwrap_or_else(|p| p.into_inner()).get(tenant) {
            return Ok(no);
        }
        let id = tenant.to_string();
        let no = self
            .read(move |conn| {
                conn.query_row("SELECT no FROM tenants WHERE id = ?1", [&id], |row| row.get::<_, i64>(0))
                    .optional()
                    .map_err(sql_error)?
                    .ok_or(StoreError::TenantNotFound(id))
            })
            .await?;
        self.inner.tenant_nos.write().unwrap_or_else(|p| p.into_inner()).insert(tenant.to_string(), no);
        Ok(no)
    }
}

/// How often the checkpoint thread copies the ledger's WAL into the database file. Each pass
/// ends with an `fsync` of `ledger.sqlite`, which the writer's next commit `fdatasync` queues
/// behind on the disk; a page rewritten by many commits (the tail of `records`, the frontier's
/// nodes) is copied once per pass. At 250 ms the single-event ack p99 at 1,000 events/s was
/// 4–7 ms, at 2 s 2.4–3.1 ms (same runs, BENCHMARKS.md), and bulk ingest wrote 20 % fewer
/// bytes per event. The database file is then at most ~2 s behind the WAL.
const WAL_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);

/// Past this size a pass ends the WAL's growth. A PASSIVE checkpoint never catches up with a
/// writer that commits every few tens of ms, so under sustained ingest SQLite never restarts
/// the log and the WAL grew for as long as the load lasted (~1.9 kB per event: 16 GB in a
/// 10-million-event load), every frame written into fresh file space. Past the limit the pass
/// that has just copied the WAL catches up ([`WAL_RESTART_CATCH_UPS`]) and runs a `RESTART`
/// checkpoint: it copies only the frames committed since, with the writer waiting, and the next
/// commit writes the WAL from its start again. (The eleventh session's attempt, a `RESTART`
/// once the WAL passed 256 MB, stalled the writer and showed no gain in `bench ingest`, whose
/// rounds of ~130,000 events never reach this size; `bench alerts`' million-event rounds do,
/// BENCHMARKS.md.)
const WAL_RESTART_BYTES: i64 = 512 << 20;

/// How long the `RESTART` checkpoint waits for the writer and for readers still in the WAL
/// before it gives up until the next pass.
const WAL_RESTART_WAIT: Duration = Duration::from_millis(100);

/// Before a `RESTART`, PASSIVE passes follow one another (at most this many) until one had at
/// most [`WAL_RESTART_TAIL_BYTES`] to copy: the `RESTART` then copies about as little while the
/// writer waits. With one PASSIVE pass before it, the `RESTART` copied and synced what the
/// writer committed during that pass's `fsync` (~0.5 s of ingest), and an alert's webhook under
/// full load arrived ~200 ms later at p99.
const WAL_RESTART_CATCH_UPS: usize = 4;
const WAL_RESTART_TAIL_BYTES: i64 = 16 << 20;

/// Copies the ledger's WAL into the database file every [`WAL_CHECKPOINT_INTERVAL`], off the
/// writer's commit path (PASSIVE: never waits for the writer or readers); restarts the WAL
/// once it is past `restart_bytes` ([`WAL_RESTART_BYTES`] by default).
fn run_wal_checkpoints(conn: Connection, shared: Arc<Shared>, restart_bytes: i64) {
    let frame_bytes = conn.query_row("PRAGMA page_size", [], |row| row.get::<_, i64>(0)).unwrap_or(4096) + 24;
    if let Err(error) = conn.busy_timeout(WAL_RESTART_WAIT) {
        tracing::warn!(%error, "cannot set the checkpoint connection's busy timeout");
    }
    let mut last = std::time::Instant::now();
    while !shared.stopping.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(250));
        if last.elapsed() < WAL_CHECKPOINT_INTERVAL {
            continue;
        }
        last = std::time::Instant::now();
        let passive = || {
            // Columns: busy, frames in the WAL, frames copied (up to the WAL's end at the start).
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
            })
        };
        let (frames, mut copied) = match passive() {
            Ok(counts) => counts,
            Err(error) => {
                tracing::warn!(%error, "ledger wal checkpoint failed");
                continue;
            }
        };
        if frames.saturating_mul(frame_bytes) <= restart_bytes {
            continue;
        }
        // The writer waits while RESTART copies what is left: first catch up with PASSIVE passes
        // (each copies what was committed during the one before, the last of them little).
        for _ in 0..WAL_RESTART_CATCH_UPS {
            match passive() {
                Ok((frames, now_copied)) => {
                    let fresh = frames.saturating_sub(copied);
                    copied = now_copied;
                    if fresh.saturating_mul(frame_bytes) <= WAL_RESTART_TAIL_BYTES {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "ledger wal checkpoint failed");
                    break;
                }
            }
        }
        // A busy answer (the writer or a reader stayed past the wait) leaves it to the next pass.
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
            tracing::warn!(%error, "ledger wal restart failed");
        }
    }
}

/// Keeps the data directory and the ledger (keys, settings, personal data) private to the owner.
fn restrict_permissions(path: &Path, mode: u32) -> StoreResult<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| StoreError::Backend(format!("cannot restrict permissions of {}: {e}", path.display())))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Ids of a tenant's records with `from <= seq < to`, ascending; `prefix` is the schema name of
/// the ledger on `conn` (`""` or `"ledger."`).
pub(crate) fn ids_in_range(
    conn: &Connection,
    prefix: &str,
    tenant_no: i64,
    from: u64,
    to: u64,
) -> StoreResult<Vec<(u64, String)>> {
    if from >= to {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare(&format!("SELECT key, event_id FROM {prefix}records WHERE key BETWEEN ?1 AND ?2 ORDER BY key"))
        .map_err(sql_error)?;
    let rows = stmt
        .query_map(params![schema::record_key(tenant_no, from), schema::record_key(tenant_no, to - 1)], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(sql_error)?;
    let mut ids = Vec::new();
    for row in rows {
        let (key, id) = row.map_err(sql_error)?;
        ids.push((schema::key_seq(key), id));
    }
    Ok(ids)
}

/// At start: the ids of records the index does not cover yet go to the recent ids.
fn load_unindexed_ids(ledger: &Connection, index: &Connection, shared: &Shared) -> StoreResult<()> {
    let mut stmt = ledger.prepare("SELECT no FROM tenants").map_err(sql_error)?;
    let tenants: Vec<i64> =
        stmt.query_map([], |row| row.get(0)).map_err(sql_error)?.collect::<Result<_, _>>().map_err(sql_error)?;
    for tenant_no in tenants {
        let next: Option<i64> = index
            .query_row("SELECT next_seq FROM progress WHERE tenant_no = ?1", [tenant_no], |row| row.get(0))
            .optional()
            .map_err(sql_error)?;
        let size = tree::tree_size(ledger, tenant_no)?;
        let ids = ids_in_range(ledger, "", tenant_no, next.unwrap_or(0).max(0) as u64, size)?;
        shared.recent.insert(ids.into_iter().map(|(seq, id)| (tenant_no, id, seq)));
    }
    Ok(())
}

fn total_records(conn: &Connection) -> StoreResult<u64> {
    let mut stmt = conn.prepare("SELECT no FROM tenants").map_err(sql_error)?;
    let nos: Vec<i64> =
        stmt.query_map([], |row| row.get(0)).map_err(sql_error)?.collect::<Result<_, _>>().map_err(sql_error)?;
    let mut total = 0;
    for no in nos {
        total += tree::tree_size(conn, no)?;
    }
    Ok(total)
}

/// Opens the index file and checks it is usable and not ahead of the ledger.
/// Present while a store has `index.sqlite` open. The index is written with `synchronous=OFF`
/// (it is derived data, and its fsyncs were what delayed ledger acknowledgements), so after an
/// unclean stop its rows are recounted before it is trusted.
/// Inserts an `api_keys` row of the tenant numbered `tenant_no` (the create path and
/// `migrate-store`'s import).
pub(crate) fn insert_api_key(conn: &Connection, tenant_no: i64, key: &ApiKeyRecord) -> StoreResult<()> {
    let scopes = serde_json::to_string(&key.scopes).map_err(|e| StoreError::Backend(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO api_keys (id, tenant_no, name, secret_hash, scopes, created_at, expires_at, revoked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            key.id,
            tenant_no,
            key.name,
            key.secret_hash.as_slice(),
            scopes,
            to_micros(key.created_at),
            key.expires_at.map(to_micros),
            key.revoked_at.map(to_micros)
        ])
    })
    .map_err(sql_error)?;
    Ok(())
}

pub(crate) fn unclean_marker(index_path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.unclean", index_path.display()))
}

fn open_index(index_path: &Path, ledger_path: &Path, ledger: &Connection) -> Result<Connection, String> {
    let unclean = unclean_marker(index_path).exists();
    let conn = Connection::open(index_path).map_err(|e| e.to_string())?;
    schema::configure(&conn, false, schema::Checkpointing::OnCommit(1000)).map_err(|e| e.to_string())?;
    schema::fixed_plans(&conn).map_err(|e| e.to_string())?;
    schema::migrate_index(&conn)?;
    let check: String = conn.query_row("PRAGMA quick_check(1)", [], |row| row.get(0)).map_err(|e| e.to_string())?;
    if check != "ok" {
        return Err(format!("quick_check: {check}"));
    }
    let mut stmt = conn.prepare("SELECT tenant_no, next_seq FROM progress").map_err(|e| e.to_string())?;
    let rows: Vec<(i64, i64)> = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    drop(stmt);
    for (tenant_no, next_seq) in rows {
        let size = tree::tree_size(ledger, tenant_no).map_err(|e| e.to_string())?;
        if next_seq < 0 || next_seq as u64 > size {
            return Err(format!("index of tenant {tenant_no} is ahead of its ledger ({next_seq} > {size})"));
        }
        if unclean {
            let ids: i64 = conn
                .query_row("SELECT count(*) FROM event_ids WHERE tenant_no = ?1", [tenant_no], |row| row.get(0))
                .map_err(|e| e.to_string())?;
            let events: i64 = conn
                .query_row(
                    "SELECT count(*) FROM events WHERE key BETWEEN ?1 AND ?2",
                    params![schema::record_key(tenant_no, 0), schema::record_key(tenant_no, schema::MAX_SEQ)],
                    |row| row.get(0),
                )
                .map_err(|e| e.to_string())?;
            if ids != next_seq || events != next_seq {
                return Err(format!(
                    "after an unclean stop, index of tenant {tenant_no} holds {events} rows, not {next_seq}"
                ));
            }
        }
    }
    std::fs::write(unclean_marker(index_path), b"index.sqlite is open\n").map_err(|e| e.to_string())?;
    conn.execute("ATTACH DATABASE ?1 AS ledger", [ledger_path.to_string_lossy()]).map_err(|e| e.to_string())?;
    Ok(conn)
}

fn set_aside(index_path: &Path) -> StoreResult<()> {
    let stamp = Timestamp::now().as_second();
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", index_path.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}.damaged-{stamp}{suffix}", index_path.display()));
            std::fs::rename(&from, &to)
                .map_err(|e| StoreError::Backend(format!("cannot move damaged index {}: {e}", from.display())))?;
        }
    }
    Ok(())
}

fn to_micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

fn from_micros(micros: i64) -> StoreResult<Timestamp> {
    Timestamp::from_microsecond(micros).map_err(|e| StoreError::Corrupt(format!("bad stored timestamp: {e}")))
}

/// An `api_keys` row as read: id, tenant, name, hash, scopes json, created, expires, revoked.
type ApiKeyRow = (String, String, String, Vec<u8>, String, i64, Option<i64>, Option<i64>);

fn api_key_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?, row.get(7)?))
}

fn to_api_key((id, tenant, name, hash, scopes, created, expires, revoked): ApiKeyRow) -> StoreResult<ApiKeyRecord> {
    let secret_hash: [u8; 32] =
        hash.as_slice().try_into().map_err(|_| StoreError::Corrupt(format!("hash of key {id} is not 32 bytes")))?;
    let scopes: Vec<String> =
        serde_json::from_str(&scopes).map_err(|e| StoreError::Corrupt(format!("scopes of key {id}: {e}")))?;
    Ok(ApiKeyRecord {
        id,
        tenant,
        name,
        secret_hash,
        scopes,
        created_at: from_micros(created)?,
        expires_at: expires.map(from_micros).transpose()?,
        revoked_at: revoked.map(from_micros).transpose()?,
    })
}

fn read_checkpoint(
    conn: &Connection,
    condition: &str,
    args: impl rusqlite::Params,
) -> StoreResult<Option<StoredCheckpoint>> {
    let row: Option<(i64, Vec<u8>, String, i64)> = conn
        .query_row(&format!("SELECT tree_size, root, note, created_at FROM checkpoints {condition}"), args, |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()
        .map_err(sql_error)?;
    let Some((size, root, note, created)) = row else { return Ok(None) };
    Ok(Some(StoredCheckpoint {
        size: size.max(0) as u64,
        root: tree::to_hash(&root)?.0,
        note,
        created_at: from_micros(created)?,
    }))
}

const API_KEY_COLUMNS: &str =
    "SELECT k.id, t.id, k.name, k.secret_hash, k.scopes, k.created_at, k.expires_at, k.revoked_at
     FROM api_keys k JOIN tenants t ON t.no = k.tenant_no";

impl Store for SqliteStore {
    fn create_tenant(&self, tenant: Tenant) -> BoxFuture<'_, StoreResult<()>> {
        let privacy = self.inner.privacy.clone();
        Box::pin(self.write(move |conn| {
            let exists: Option<i64> = conn
                .query_row("SELECT no FROM tenants WHERE id = ?1", [&tenant.id], |row| row.get(0))
                .optional()
                .map_err(sql_error)?;
            if exists.is_some() {
                return Err(StoreError::AlreadyExists(format!("tenant {:?}", tenant.id)));
            }
            let next: i64 = conn
                .query_row("SELECT coalesce(max(no), 0) + 1 FROM tenants", [], |row| row.get(0))
                .map_err(sql_error)?;
            if next > schema::MAX_TENANT_NO {
                return Err(StoreError::Backend("the maximum number of tenants is reached".into()));
            }
            let tx = conn.transaction().map_err(sql_error)?;
            tx.execute(
                "INSERT INTO tenants (no, id, name, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![next, tenant.id, tenant.name, to_micros(tenant.created_at)],
            )
            .map_err(sql_error)?;
            let wrapped = keys::create_tenant_key(&tx, &privacy, next, &tenant.id)?;
            tx.commit().map_err(sql_error)?;
            privacy.remember_blind_key(&tenant.id, &wrapped)
        }))
    }

    fn tenant(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<Tenant>>> {
        let id = id.to_string();
        Box::pin(self.read(move |conn| {
            let row: Option<(String, String, i64)> = conn
                .query_row("SELECT id, name, created_at FROM tenants WHERE id = ?1", [&id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()
                .map_err(sql_error)?;
            row.map(|(id, name, created)| Ok(Tenant { id, name, created_at: from_micros(created)? })).transpose()
        }))
    }

    fn tenants(&self) -> BoxFuture<'_, StoreResult<Vec<Tenant>>> {
        Box::pin(self.read(|conn| {
            let mut stmt = conn.prepare("SELECT id, name, created_at FROM tenants ORDER BY no").map_err(sql_error)?;
            let rows = stmt
                .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?)))
                .map_err(sql_error)?;
            let mut tenants = Vec::new();
            for row in rows {
                let (id, name, created) = row.map_err(sql_error)?;
                tenants.push(Tenant { id, name, created_at: from_micros(created)? });
            }
            Ok(tenants)
        }))
    }

    fn create_api_key(&self, key: ApiKeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.write(move |conn| {
            let tenant_no: Option<i64> = conn
                .query_row("SELECT no FROM tenants WHERE id = ?1", [&key.tenant], |row| row.get(0))
                .optional()
                .map_err(sql_error)?;
            let Some(tenant_no) = tenant_no else {
                return Err(StoreError::TenantNotFound(key.tenant.clone()));
            };
            let exists: Option<String> = conn
                .query_row("SELECT id FROM api_keys WHERE id = ?1", [&key.id], |row| row.get(0))
                .optional()
                .map_err(sql_error)?;
            if exists.is_some() {
                return Err(StoreError::AlreadyExists(format!("api key {:?}", key.id)));
            }
            insert_api_key(conn, tenant_no, &key)
        }))
    }

    fn api_key(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<ApiKeyRecord>>> {
        let id = id.to_string();
        Box::pin(async move {
            let generation = {
                let cache = self.inner.api_keys.read().unwrap_or_else(|p| p.into_inner());
                if let Some(key) = cache.keys.get(&id) {
                    return Ok(Some(key.clone()));
                }
                cache.generation
            };
            let read_id = id.clone();
            let found = self
                .read(move |conn| {
                    let row = conn
                        .query_row_cached(&format!("{API_KEY_COLUMNS} WHERE k.id = ?1"), [&read_id], api_key_row)
                        .optional()
                        .map_err(sql_error)?;
                    row.map(to_api_key).transpose()
                })
                .await?;
            if let Some(key) = &found {
                let mut cache = self.inner.api_keys.write().unwrap_or_else(|p| p.into_inner());
                if cache.generation == generation {
                    if cache.keys.len() >= KEY_CACHE_LIMIT {
                        cache.keys.clear();
                    }
                    cache.keys.insert(id, key.clone());
                }
            }
            Ok(found)
        })
    }

    fn api_keys(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<ApiKeyRecord>>> {
        let tenant = tenant.to_string();
        Box::pin(self.read(move |conn| {
            let mut stmt = conn
                .prepare(&format!("{API_KEY_COLUMNS} WHERE t.id = ?1 ORDER BY k.created_at, k.id"))
                .map_err(sql_error)?;
            let rows = stmt.query_map([&tenant], api_key_row).map_err(sql_error)?;
            let mut keys = Vec::new();
            for row in rows {
                keys.push(to_api_key(row.map_err(sql_error)?)?);
            }
            Ok(keys)
        }))
    }

    fn revoke_api_key(&self, tenant: &str, id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let write_id = id.clone();
            let revoked = self
                .write(move |conn| {
                    let changed = conn
                        .execute(
                            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?3)
                             WHERE id = ?1 AND tenant_no = (SELECT no FROM tenants WHERE id = ?2)",
                            params![write_id, tenant, to_micros(at)],
                        )
                        .map_err(sql_error)?;
                    Ok(changed == 1)
                })
                .await;
            // Whatever the outcome (a failed write may still have committed): the next read
            // of this key goes to the ledger.
            let mut cache = self.inner.api_keys.write().unwrap_or_else(|p| p.into_inner());
            cache.generation += 1;
            cache.keys.remove(&id);
            revoked
        })
    }

    fn setting(&self, name: &str) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>> {
        let name = name.to_string();
        Box::pin(self.read(move |conn| {
            conn.query_row("SELECT value FROM settings WHERE name = ?1", [&name], |row| row.get(0))
                .optional()
                .map_err(sql_error)
        }))
    }

    fn init_setting(&self, name: &str, value: Vec<u8>) -> BoxFuture<'_, StoreResult<Vec<u8>>> {
        let name = name.to_string();
        Box::pin(self.write(move |conn| {
            conn.execute("INSERT OR IGNORE INTO settings (name, value) VALUES (?1, ?2)", params![name, value])
                .map_err(sql_error)?;
            conn.query_row("SELECT value FROM settings WHERE name = ?1", [&name], |row| row.get(0)).map_err(sql_error)
        }))
    }

    fn swap_setting(&self, name: &str, expected: Vec<u8>, new: Vec<u8>) -> BoxFuture<'_, StoreResult<bool>> {
        let name = name.to_string();
        Box::pin(self.write(move |conn| {
            let changed = conn
                .execute("UPDATE settings SET value = ?3 WHERE name = ?1 AND value = ?2", params![name, expected, new])
                .map_err(sql_error)?;
            Ok(changed == 1)
        }))
    }

    fn append(&self, tenant: &str, events: Vec<PreparedEvent>) -> BoxFuture<'_, StoreResult<Vec<Appended>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            if events.is_empty() {
                return Ok(Vec::new());
            }
            let tenant_no = self.tenant_no(&tenant).await?;
            let events = Arc::new(events);
            // Sealed before an erasure and queued behind it: seal again under a fresh key.
            let mut attempts = 0;
            loop {
                let (reply, answer) = oneshot::channel();
                let this = self.clone();
                let (tenant, batch) = (tenant.clone(), events.clone());
                tokio::task::spawn_blocking(move || {
                    // Sealing (AES-GCM per owner, blind-index HMACs) runs here, off the writer.
                    let sealed = this.seal(&tenant, tenant_no, &batch)?;
                    this.submit(Job::Append { tenant, events: batch, sealed, reply })
                })
                .await
                .map_err(|e| StoreError::Unavailable(format!("writer hand-off failed: {e}")))??;
                match answer.await.map_err(|_| StoreError::Unavailable("store writer has stopped".into()))? {
                    Err(StoreError::Retry(_)) if attempts < 3 => attempts += 1,
                    result => return result,
                }
            }
        })
    }

    fn event_by_id(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<StoredEvent>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let shared = self.inner.shared.clone();
            self.read_tenant(&tenant, move |conn, ctx| reader::event_by_id(conn, &shared.recent, ctx, &id)).await
        })
    }

    fn query<'a>(
        &'a self,
        tenant: &'a str,
        query: &'a EventQuery,
        page: &'a PageRequest,
    ) -> BoxFuture<'a, StoreResult<EventPage>> {
        Box::pin(async move {
            let (query, page) = (query.clone(), page.clone());
            self.read_tenant(tenant, move |conn, ctx| reader::query(conn, ctx, &query, &page)).await
        })
    }

    fn records(&self, tenant: &str, from: u64, limit: u32) -> BoxFuture<'_, StoreResult<Vec<StoredEvent>>> {
        let tenant = tenant.to_string();
        Box::pin(async move { self.records_from(&tenant, from, limit, true).await })
    }

    fn records_lean(&self, tenant: &str, from: u64, limit: u32) -> BoxFuture<'_, StoreResult<Vec<StoredEvent>>> {
        let tenant = tenant.to_string();
        Box::pin(async move { self.records_from(&tenant, from, limit, false).await })
    }

    fn tree_head(&self, tenant: &str) -> BoxFuture<'_, StoreResult<TreeHead>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            // The writer publishes a tenant's head after every commit that grew it, before
            // answering anyone: current, and no frontier to rebuild from storage.
            if let Some(head) = self.inner.shared.heads.lock().unwrap_or_else(|p| p.into_inner()).get(&no) {
                return Ok(*head);
            }
            self.read(move |conn| {
                let size = tree::tree_size(conn, no)?;
                let root = tree::load_frontier(conn, no, size)?.root();
                Ok(TreeHead { size, root: root.0 })
            })
            .await
        })
    }

    fn tree_size(&self, tenant: &str) -> BoxFuture<'_, StoreResult<u64>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            if let Some(head) = self.inner.shared.heads.lock().unwrap_or_else(|p| p.into_inner()).get(&no) {
                return Ok(head.size);
            }
            self.read(move |conn| tree::tree_size(conn, no)).await
        })
    }

    fn tree_heads(&self) -> BoxFuture<'_, StoreResult<Vec<(String, TreeHead)>>> {
        // One read for the whole pass: the heads the writer published after its commits, and
        // the stored tree of tenants it has not appended to since the store opened.
        let shared = self.inner.shared.clone();
        Box::pin(self.read(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT no, id FROM tenants ORDER BY no").map_err(sql_error)?;
            let tenants = stmt
                .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))
                .map_err(sql_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_error)?;
            let published = shared.heads.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let mut heads = Vec::with_capacity(tenants.len());
            for (no, id) in tenants {
                let head = match published.get(&no) {
                    Some(head) => *head,
                    None => {
                        let size = tree::tree_size(conn, no)?;
                        TreeHead { size, root: tree::load_frontier(conn, no, size)?.root().0 }
                    }
                };
                heads.push((id, head));
            }
            Ok(heads)
        }))
    }

    fn subtree_hashes(&self, tenant: &str, nodes: Vec<(u32, u64)>) -> BoxFuture<'_, StoreResult<Vec<[u8; 32]>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            self.read(move |conn| Ok(tree::subtree_hashes(conn, no, &nodes)?.into_iter().map(|hash| hash.0).collect()))
                .await
        })
    }

    fn add_checkpoint(&self, tenant: &str, checkpoint: StoredCheckpoint) -> BoxFuture<'_, StoreResult<()>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            self.write(move |conn| {
                conn.execute(
                    "INSERT OR IGNORE INTO checkpoints (tenant_no, tree_size, root, note, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        no,
                        checkpoint.size as i64,
                        checkpoint.root.as_slice(),
                        checkpoint.note,
                        to_micros(checkpoint.created_at)
                    ],
                )
                .map_err(sql_error)?;
                Ok(())
            })
            .await
        })
    }

    fn latest_checkpoint(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Option<StoredCheckpoint>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            self.read(move |conn| {
                read_checkpoint(conn, "WHERE tenant_no = ?1 ORDER BY tree_size DESC LIMIT 1", params![no])
            })
            .await
        })
    }

    fn checkpoint_at(&self, tenant: &str, size: u64) -> BoxFuture<'_, StoreResult<Option<StoredCheckpoint>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            self.read(move |conn| {
                read_checkpoint(conn, "WHERE tenant_no = ?1 AND tree_size = ?2", params![no, size as i64])
            })
            .await
        })
    }

    fn add_checkpoint_timestamp(&self, tenant: &str, timestamp: CheckpointTimestamp) -> BoxFuture<'_, StoreResult<()>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            self.write(move |conn| timestamps::add(conn, no, &timestamp, Timestamp::now())).await
        })
    }

    fn checkpoint_timestamp(&self, tenant: &str, size: u64) -> BoxFuture<'_, StoreResult<Option<CheckpointTimestamp>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            self.read(move |conn| timestamps::at(conn, no, size)).await
        })
    }

    fn checkpoint_timestamps(
        &self,
        tenant: &str,
        max_size: u64,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<CheckpointTimestamp>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            self.read(move |conn| timestamps::up_to(conn, no, max_size, limit)).await
        })
    }

    fn erase_subject(&self, tenant: &str, subject: &str) -> BoxFuture<'_, StoreResult<Erasure>> {
        let (tenant, subject) = (tenant.to_string(), subject.to_string());
        Box::pin(async move {
            let tenant_no = self.tenant_no(&tenant).await?;
            // Every event committed so far is in the index, so its events as actor are found.
            self.wait_indexed().await?;
            let who = subject.clone();
            let actor_keys = self.read(move |conn| keys::actor_record_keys(conn, tenant_no, &who)).await?;
            let (reply, answer) = oneshot::channel();
            let job = Job::Erase { tenant, tenant_no, subject, actor_keys: actor_keys.clone(), reply };
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.submit(job))
                .await
                .map_err(|e| StoreError::Unavailable(format!("writer hand-off failed: {e}")))??;
            let erasure = answer.await.map_err(|_| StoreError::Unavailable("store writer has stopped".into()))??;
            // The derived index holds the same tokens: clear them there too.
            let index_path = self.inner.dir.join(INDEX_FILE);
            tokio::task::spawn_blocking(move || keys::unlink_index(&index_path, &actor_keys))
                .await
                .map_err(|e| StoreError::Backend(format!("index unlink task failed: {e}")))??;
            Ok(erasure)
        })
    }

    fn rotate_master_key(&self) -> BoxFuture<'_, StoreResult<String>> {
        Box::pin(async move {
            if !self.inner.key_file {
                return Err(StoreError::Conflict(
                    "the master key comes from VERITRAIL_MASTER_KEY: restart with the new key there and the old \
                     one in VERITRAIL_MASTER_KEY_PREVIOUS"
                        .into(),
                ));
            }
            let _one = self.inner.rotating.lock().await;
            let dir = self.inner.dir.clone();
            let new = veritrail_crypto::MasterKey::generate().map_err(|e| StoreError::Backend(e.to_string()))?;
            let (next, current) = (dir.join(keys::NEXT_MASTER_KEY_FILE), dir.join(MASTER_KEY_FILE));
            // 1. The new key on disk first: whatever happens next, the data stays readable.
            let written = new.clone();
            let next_path = next.clone();
            tokio::task::spawn_blocking(move || {
                let _ = std::fs::remove_file(&next_path);
                write_key_file(&next_path, &written)
            })
            .await
            .map_err(|e| StoreError::Backend(format!("key file task failed: {e}")))??;
            // 2. New wraps under it, then every stored key and secret re-wrapped in one transaction,
            //    again until a pass finds nothing: an append sealed just before the switch may
            //    commit a key wrapped under the old master key after the first pass.
            let privacy = &self.inner.privacy;
            privacy.set_master_keys(privacy.master_keys().rotated_to(new.clone()));
            let mut rewrapped = self.rewrap_keys().await?;
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                match self.rewrap_keys().await? {
                    0 => break,
                    more => rewrapped += more,
                }
            }
            // 3. The new key replaces the old file (atomically); the old key is gone from disk.
            tokio::task::spawn_blocking(move || {
                std::fs::rename(&next, &current)?;
                std::fs::File::open(&dir)?.sync_all()
            })
            .await
            .map_err(|e| StoreError::Backend(format!("key file task failed: {e}")))?
            .map_err(|e| StoreError::Backend(format!("cannot install the new master key file: {e}")))?;
            privacy.set_master_keys(veritrail_crypto::MasterKeys::new(new.clone()));
            tracing::info!(key_id = %new.id(), rewrapped, "master key rotated");
            Ok(new.id().to_string())
        })
    }

    fn rewrap_keys(&self) -> BoxFuture<'_, StoreResult<u64>> {
        let privacy = self.inner.privacy.clone();
        Box::pin(self.write(move |conn| keys::rewrap_all(conn, &privacy)))
    }

    fn privacy(&self) -> &Privacy {
        &self.inner.privacy
    }

    fn seal_tenant_text(&self, tenant: &str, context: &str, text: &str) -> BoxFuture<'_, StoreResult<String>> {
        // Every tenant's key is loaded at open and at creation.
        let sealed = self.inner.privacy.seal_tenant_text(tenant, context, text);
        Box::pin(async move { sealed })
    }

    fn open_tenant_text(&self, tenant: &str, context: &str, text: &str) -> BoxFuture<'_, StoreResult<String>> {
        let opened = self.inner.privacy.open_tenant_text(tenant, context, text);
        Box::pin(async move { opened })
    }

    fn wait_indexed(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let shared = &self.inner.shared;
            let target = shared.committed_total.load(Ordering::SeqCst);
            // Someone waits: the indexer indexes what is there instead of gathering a batch.
            let _waiting = shared.index_waiter();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while shared.indexed_total.load(Ordering::SeqCst) < target {
                if tokio::time::Instant::now() > deadline {
                    return Err(StoreError::Unavailable("index did not catch up within 60 s".into()));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok(())
        })
    }

    fn rebuild_indexes(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.inner
                .rebuilds
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(reply)
                .map_err(|_| StoreError::Unavailable("indexer has stopped".into()))?;
            self.inner.shared.wake_indexer();
            answer.await.map_err(|_| StoreError::Unavailable("indexer has stopped".into()))?
        })
    }

    fn stats(&self) -> StoreStats {
        let shared = &self.inner.shared;
        let (commit_latency_buckets, commit_latency_sum) = shared.latency();
        let committed = shared.committed_total.load(Ordering::SeqCst);
        let indexed = shared.indexed_total.load(Ordering::SeqCst);
        StoreStats {
            events_appended: shared.events_appended.load(Ordering::Relaxed),
            commits: shared.commits.load(Ordering::Relaxed),
            queue_depth: shared.queue_depth.load(Ordering::Relaxed),
            commit_latency_buckets,
            commit_latency_sum,
            index: IndexStatus {
                lag_events: committed.saturating_sub(indexed),
                rebuilding: shared.rebuilding.load(Ordering::SeqCst),
            },
            records_from_memory: shared.records_from_memory.load(Ordering::Relaxed),
            records_from_storage: shared.records_from_storage.load(Ordering::Relaxed),
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            if self.inner.shared.writer_stopped.load(Ordering::SeqCst) {
                return Ok(());
            }
            let (reply, answer) = oneshot::channel();
            let this = self.clone();
            let submitted = tokio::task::spawn_blocking(move || this.submit(Job::Shutdown(reply)))
                .await
                .map_err(|e| StoreError::Unavailable(format!("writer hand-off failed: {e}")))?;
            if submitted.is_ok() {
                let _ = answer.await;
            }
            self.inner.shared.stopping.store(true, Ordering::SeqCst);
            self.inner.shared.wake_indexer();
            let indexer = self.inner.indexer_thread.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(indexer) = indexer {
                let _ = tokio::task::spawn_blocking(move || indexer.join()).await;
            }
            Ok(())
        })
    }
}
