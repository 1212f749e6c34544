//! The PostgreSQL backend: several Veritrail nodes share one database, with the same API and
//! the same ledger format as the embedded store.
//!
//! - **Per-tenant serialisation across nodes.** Every append transaction first locks the
//!   tenant's `ledger_heads` row (`SELECT ... FOR UPDATE`), so however many nodes append to one
//!   tenant, `seq` stays dense from 0 and there is one tree. Records, personal sidecars, resources,
//!   Merkle nodes and the new head commit together: a node dying mid-commit leaves nothing.
//! - **Group commit per node.** One committer task per tenant and node puts whatever queued
//!   during the previous transaction into the next one (see `writer.rs`).
//! - **Idempotency across nodes.** Ids are looked up after the lock is taken, so they see every
//!   commit before it; `UNIQUE (tenant_no, event_id)` is the backstop.
//! - **Synchronous indexing.** Query columns are written with the record, so
//!   [`Store::wait_indexed`] returns at once.
//! - **Migrations** (`migrations/*.sql`) run on connect, in one transaction under an advisory
//!   lock, recorded in `schema_migrations`.
//!
//! Connections are TLS when the URL asks for it (`sslmode=require`, `verify-ca`, `verify-full`;
//! see `tls.rs`), plain TCP otherwise.

#![forbid(unsafe_code)]

mod access;
mod alerts;
pub mod dump;
mod migrate;
mod reader;
mod stats;
mod tls;
mod tree;
mod writer;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};

use veritrail_crypto::MasterKeys;
use veritrail_ledger::hash::empty_root;
use veritrail_model::PreparedEvent;
use veritrail_query::{EventQuery, PageRequest};
use veritrail_store::privacy::{Privacy, SealedBatch, SubjectKeyRow};
use veritrail_store::{
    ApiKeyRecord, Appended, BoxFuture, CheckpointTimestamp, Erasure, EventPage, Store, StoreError, StoreResult,
    StoreStats, StoredCheckpoint, StoredEvent, Tenant, TreeHead,
};

pub use crate::access::PgAccessStore;
pub use crate::alerts::PgAlertStore;
pub use crate::migrate::{Applied, latest_version};
use crate::stats::Stats;
use crate::writer::{AppendRequest, TenantRef};

/// Append requests that may queue per tenant before callers wait.
const QUEUE_CAPACITY: usize = 4096;

/// How to connect.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections this node holds open.
    pub max_connections: usize,
    /// The master keys (every node must be given the same; `VERITRAIL_MASTER_KEY`).
    pub master_keys: MasterKeys,
    /// A read replica (hot standby) of the database that event queries and exports read from,
    /// taking them off the primary; everything else — appends, reads by id, the ledger and its
    /// proofs, the rule engine — stays on the primary.
    pub read_url: Option<String>,
    /// How long `connect` waits for the read replica to have replayed the schema (default 30 s).
    pub replica_schema_wait: Duration,
}

impl PgOptions {
    /// Defaults (16 connections) with these master keys.
    pub fn new(master_keys: MasterKeys) -> PgOptions {
        PgOptions { max_connections: 16, master_keys, read_url: None, replica_schema_wait: REPLICA_SCHEMA_WAIT }
    }
}

/// The insert of an `api_keys` row with [`api_key_params`] (the create path adds its conflict
/// clause; `migrate-store`'s import uses it as is).
pub(crate) const INSERT_API_KEY: &str = "INSERT INTO api_keys (id, tenant_no, name, secret_hash, scopes, created_at,
     expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// The parameters of [`INSERT_API_KEY`] for the tenant numbered `tenant_no`; `hash` is
/// `key.secret_hash` as a slice (bytea).
pub(crate) fn api_key_params<'a>(
    key: &'a ApiKeyRecord,
    tenant_no: &'a i64,
    hash: &'a &'a [u8],
) -> [&'a (dyn tokio_postgres::types::ToSql + Sync); 8] {
    [&key.id, tenant_no, &key.name, hash, &key.scopes, &key.created_at, &key.expires_at, &key.revoked_at]
}

pub(crate) fn pg_error(error: tokio_postgres::Error) -> StoreError {
    if error.is_closed() {
        return StoreError::Unavailable(format!("database connection closed: {}", with_causes(&error)));
    }
    match error.as_db_error() {
        Some(db) => StoreError::Backend(format!("postgresql: {} ({})", db.message(), db.code().code())),
        None => StoreError::Backend(format!("postgresql: {}", with_causes(&error))),
    }
}

/// An error and its sources, `: `-separated (tokio-postgres keeps the cause out of `Display`).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

pub(crate) fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("no database connection: {}", with_causes(&error)))
}

/// Parses a `postgres://` URL (or key=value connection string), with Veritrail's defaults for
/// what it leaves open.
/// Also the TLS connector its `sslmode` and `sslrootcert` ask for (see `tls.rs`).
fn parse_config(url: &str) -> StoreResult<(tokio_postgres::Config, tls::PgTls)> {
    let (url, verify, root_cert) = tls::split_tls_params(url);
    let mut config = tokio_postgres::Config::from_str(&url)
        .map_err(|e| StoreError::Backend(format!("invalid database url: {e}")))?;
    let tls = tls::connector(&mut config, verify, root_cert.as_deref())?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("veritrail");
    }
    // A node that vanishes mid-transaction must not hold a tenant's lock for hours.
    config.keepalives_idle(Duration::from_secs(30));
    Ok((config, tls))
}

/// A pool of at most `size` connections to `url`.
fn connection_pool(url: &str, size: usize) -> StoreResult<Pool> {
    let (config, tls) = parse_config(url)?;
    let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(Duration::from_secs(10)))
        .wait_timeout(Some(Duration::from_secs(60)))
        .build()
        .map_err(|e| StoreError::Backend(format!("cannot create the connection pool: {e}")))
}

/// Applies pending schema migrations to the database at `url` (what `veritrail migrate` does;
/// [`PgStore::connect`] does it too). Returns the migrations applied.
pub async fn migrate(url: &str) -> StoreResult<Vec<Applied>> {
    let (config, tls) = parse_config(url)?;
    let (mut client, connection) = config
        .connect(tls)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to the database: {}", with_causes(&e))))?;
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "migration connection failed");
        }
    });
    let result = migrate::run(&mut client).await;
    drop(client);
    let _ = driver.await;
    result
}

struct Inner {
    pool: Pool,
    /// Where event queries read: a replica's pool, or `pool`.
    query_pool: Pool,
    stats: Arc<Stats>,
    tenant_nos: RwLock<HashMap<String, i64>>,
    /// The group committer of each tenant this node appended to.
    writers: Mutex<HashMap<i64, mpsc::Sender<AppendRequest>>>,
    writer_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    stopped: AtomicBool,
    /// Master keys and this node's cache of unwrapped data keys (for sealing only: reads fetch
    /// the keys of each page, so an erasure on another node is seen at once).
    privacy: Arc<Privacy>,
}

/// The PostgreSQL store of one node. Cheap to clone; clones share the pool and committers.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// How long a node waits at start for its read replica to replay the schema the primary has.
const REPLICA_SCHEMA_WAIT: Duration = Duration::from_secs(30);

/// Waits until the read replica has the schema this build migrated the primary to (it replays
/// the primary's WAL, normally within milliseconds): queries on a replica without it would fail.
/// Fails at once when the replica cannot be reached, and after `wait` when it stays behind.
async fn wait_for_replica_schema(replica: &Pool, wait: Duration) -> StoreResult<()> {
    let wanted = migrate::latest_version();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let client = replica.get().await.map_err(pool_error)?;
        // `to_regclass` is NULL while the table itself has not been replayed yet.
        let row = client
            .query_one(
                "SELECT CASE WHEN to_regclass('schema_migrations') IS NULL THEN NULL
                        ELSE (SELECT max(version) FROM schema_migrations) END",
                &[],
            )
            .await;
        let found: Option<i32> = match row {
            Ok(row) => row.get(0),
            // The table appeared between the check and the read: look again.
            Err(error) if error.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => None,
            Err(error) => return Err(pg_error(error)),
        };
        if found.is_some_and(|version| version >= wanted) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let found = found.map_or("no schema".to_string(), |version| format!("schema version {version}"));
            return Err(StoreError::Unavailable(format!(
                "the read replica has {found} after {} s, the primary {wanted}: is it a standby of this database, \
                 replaying its WAL?",
                wait.as_secs()
            )));
        }
        drop(client);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl PgStore {
    /// Connects to `url`, applies pending migrations and checks the server is durable.
    pub async fn connect(url: &str, master_keys: MasterKeys) -> StoreResult<PgStore> {
        PgStore::connect_with(url, PgOptions::new(master_keys)).await
    }

    /// [`PgStore::connect`] with options.
    pub async fn connect_with(url: &str, options: PgOptions) -> StoreResult<PgStore> {
        migrate(url).await?;
        let pool = connection_pool(url, options.max_connections.max(2))?;
        let query_pool = match &options.read_url {
            Some(read_url) => {
                let replica = connection_pool(read_url, options.max_connections.max(2))?;
                wait_for_replica_schema(&replica, options.replica_schema_wait).await?;
                replica
            }
            None => pool.clone(),
        };
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                query_pool,
                stats: Arc::new(Stats::default()),
                tenant_nos: RwLock::new(HashMap::new()),
                writers: Mutex::new(HashMap::new()),
                writer_tasks: Mutex::new(Vec::new()),
                stopped: AtomicBool::new(false),
                privacy: Arc::new(Privacy::new(options.master_keys)),
            }),
        };
        store.check_durability().await?;
        store.load_tenant_keys().await?;
        // Only while a previous key is configured can anything be under another master key: no
        // scan (and lock) of every key row at each node's start otherwise.
        if store.inner.privacy.master_keys().has_previous() {
            let rewrapped = store.rewrap_keys().await?;
            tracing::info!(rewrapped, "re-wrapped data keys under the current master key");
        }
        Ok(store)
    }

    /// Loads every tenant's blind-index key, creating missing ones; fails when they are
    /// wrapped under a master key that is not configured.
    async fn load_tenant_keys(&self) -> StoreResult<()> {
        let client = self.client().await?;
        let rows = client.query("SELECT t.id FROM tenants t", &[]).await.map_err(pg_error)?;
        drop(client);
        for row in rows {
            let tenant: String = row.get(0);
            let no = self.tenant_no(&tenant).await?;
            self.ensure_blind_key(&tenant, no).await?;
        }
        Ok(())
    }

    /// The tenant's blind-index key: the stored one, or a new one stored if none (the first
    /// node to insert wins; everyone uses what is stored).
    async fn ensure_blind_key(&self, tenant: &str, tenant_no: i64) -> StoreResult<()> {
        let privacy = &self.inner.privacy;
        if privacy.has_blind_key(tenant) {
            return Ok(());
        }
        let candidate = privacy.new_blind_key(tenant)?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO tenant_keys (tenant_no, blind_wrapped) VALUES ($1, $2) ON CONFLICT (tenant_no) DO NOTHING",
                &[&tenant_no, &candidate],
            )
            .await
            .map_err(pg_error)?;
        let row = client
            .query_one("SELECT blind_wrapped FROM tenant_keys WHERE tenant_no = $1", &[&tenant_no])
            .await
            .map_err(pg_error)?;
        let wrapped: Vec<u8> = row.get(0);
        privacy.remember_blind_key(tenant, &wrapped).map_err(|e| {
            StoreError::Corrupt(format!(
                "cannot unwrap the blind-index key of tenant {tenant} (is the right master key configured?): {e}"
            ))
        })
    }

    /// Seals a batch's sidecars, loading the keys of subjects this node has not cached.
    async fn seal(&self, tenant: &str, tenant_no: i64, events: &[PreparedEvent]) -> StoreResult<SealedBatch> {
        let privacy = &self.inner.privacy;
        if events.iter().any(|e| !e.personal.is_empty()) {
            self.ensure_blind_key(tenant, tenant_no).await?;
            let missing = privacy.missing_subjects(tenant, events);
            if !missing.is_empty() {
                let client = self.client().await?;
                let rows = client
                    .query(
                        "SELECT key_id, subject, wrapped FROM subject_keys WHERE tenant_no = $1 AND subject = ANY($2)",
                        &[&tenant_no, &missing],
                    )
                    .await
                    .map_err(pg_error)?;
                let rows: Vec<SubjectKeyRow> = rows
                    .iter()
                    .map(|row| SubjectKeyRow {
                        key_id: row.get::<_, i64>(0) as u64,
                        subject: row.get(1),
                        wrapped: row.get(2),
                    })
                    .collect();
                privacy.remember(tenant, &rows)?;
            }
        }
        privacy.seal(tenant, events)
    }

    fn read_ctx<'a>(&'a self, tenant: &'a str, tenant_no: i64) -> reader::ReadCtx<'a> {
        reader::ReadCtx { privacy: &self.inner.privacy, tenant, tenant_no }
    }

    /// Acknowledged means committed to stable storage: refuse a server that would not say so.
    async fn check_durability(&self) -> StoreResult<()> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT current_setting('fsync'), current_setting('synchronous_commit')", &[])
            .await
            .map_err(pg_error)?;
        let (fsync, synchronous_commit): (String, String) = (row.get(0), row.get(1));
        if fsync != "on" {
            tracing::warn!("postgresql runs with fsync=off: acknowledged events may be lost in a crash");
        }
        if synchronous_commit == "off" {
            return Err(StoreError::Backend(
                "postgresql synchronous_commit is off: commits would be acknowledged before they are durable; \
                 set it to on (or local, remote_write, remote_apply) for the veritrail database or role"
                    .into(),
            ));
        }
        Ok(())
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.inner.pool.get().await.map_err(pool_error)
    }

    /// The internal number of a tenant, cached (tenants are never renumbered or deleted).
    async fn tenant_no(&self, tenant: &str) -> StoreResult<i64> {
        if let Some(&no) = self.inner.tenant_nos.read().unwrap_or_else(|p| p.into_inner()).get(tenant) {
            return Ok(no);
        }
        let client = self.client().await?;
        let row = client.query_opt("SELECT no FROM tenants WHERE id = $1", &[&tenant]).await.map_err(pg_error)?;
        let no: i64 = row.ok_or_else(|| StoreError::TenantNotFound(tenant.to_string()))?.get(0);
        self.inner.tenant_nos.write().unwrap_or_else(|p| p.into_inner()).insert(tenant.to_string(), no);
        Ok(no)
    }

    /// The group committer of a tenant on this node, started on first use.
    fn committer(&self, tenant: TenantRef) -> StoreResult<mpsc::Sender<AppendRequest>> {
        let mut writers = self.inner.writers.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock that shutdown takes, so no committer starts after it.
        if self.inner.stopped.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("store is shut down".into()));
        }
        if let Some(sender) = writers.get(&tenant.no) {
            return Ok(sender.clone());
        }
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let no = tenant.no;
        let task = tokio::spawn(writer::run(
            self.inner.pool.clone(),
            tenant,
            receiver,
            self.inner.stats.clone(),
            self.inner.privacy.clone(),
        ));
        self.inner.writer_tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        writers.insert(no, sender.clone());
        Ok(sender)
    }
}

fn to_i64(value: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("{what} {value} is out of range")))
}

fn to_tenant(row: &tokio_postgres::Row) -> Tenant {
    Tenant { id: row.get(0), name: row.get(1), created_at: row.get(2) }
}

const API_KEY_COLUMNS: &str =
    "SELECT k.id, t.id, k.name, k.secret_hash, k.scopes, k.created_at, k.expires_at, k.revoked_at
     FROM api_keys k JOIN tenants t ON t.no = k.tenant_no";

fn to_api_key(row: &tokio_postgres::Row) -> StoreResult<ApiKeyRecord> {
    let id: String = row.get(0);
    let hash: &[u8] = row.get(3);
    let secret_hash: [u8; 32] =
        hash.try_into().map_err(|_| StoreError::Corrupt(format!("hash of key {id} is not 32 bytes")))?;
    Ok(ApiKeyRecord {
        id,
        tenant: row.get(1),
        name: row.get(2),
        secret_hash,
        scopes: row.get(4),
        created_at: row.get(5),
        expires_at: row.get(6),
        revoked_at: row.get(7),
    })
}

fn to_checkpoint(row: &tokio_postgres::Row) -> StoreResult<StoredCheckpoint> {
    let size: i64 = row.get(0);
    Ok(StoredCheckpoint {
        size: size as u64,
        root: tree::to_hash(row.get(1))?.0,
        note: row.get(2),
        created_at: row.get(3),
    })
}

fn to_timestamp(row: &tokio_postgres::Row) -> CheckpointTimestamp {
    let size: i64 = row.get(0);
    CheckpointTimestamp { size: size as u64, response: row.get(1) }
}

fn to_head(size: i64, root: &[u8]) -> StoreResult<TreeHead> {
    Ok(TreeHead { size: size as u64, root: tree::to_hash(root)?.0 })
}

impl Store for PgStore {
    fn create_tenant(&self, tenant: Tenant) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            let row = tx
                .query_opt(
                    "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (id) DO NOTHING RETURNING no",
                    &[&tenant.id, &tenant.name, &tenant.created_at],
                )
                .await
                .map_err(pg_error)?;
            let Some(row) = row else {
                return Err(StoreError::AlreadyExists(format!("tenant {:?}", tenant.id)));
            };
            let no: i64 = row.get(0);
            let blind = self.inner.privacy.new_blind_key(&tenant.id)?;
            tx.execute("INSERT INTO tenant_keys (tenant_no, blind_wrapped) VALUES ($1, $2)", &[&no, &blind])
                .await
                .map_err(pg_error)?;
            let root = empty_root().0.to_vec();
            tx.execute(
                "INSERT INTO ledger_heads (tenant_no, size, root, frontier, last_received_at)
                 VALUES ($1, 0, $2, ''::bytea, $3)",
                &[&no, &root, &Timestamp::UNIX_EPOCH],
            )
            .await
            .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            Ok(())
        })
    }

    fn tenant(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<Tenant>>> {
        let id = id.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt("SELECT id, name, created_at FROM tenants WHERE id = $1", &[&id])
                .await
                .map_err(pg_error)?;
            Ok(row.as_ref().map(to_tenant))
        })
    }

    fn tenants(&self) -> BoxFuture<'_, StoreResult<Vec<Tenant>>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows =
                client.query("SELECT id, name, created_at FROM tenants ORDER BY no", &[]).await.map_err(pg_error)?;
            Ok(rows.iter().map(to_tenant).collect())
        })
    }

    fn create_api_key(&self, key: ApiKeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let tenant_no = self.tenant_no(&key.tenant).await?;
            let client = self.client().await?;
            let sql = format!("{INSERT_API_KEY} ON CONFLICT (id) DO NOTHING");
            let hash = key.secret_hash.as_slice();
            let inserted = client.execute(&sql, &api_key_params(&key, &tenant_no, &hash)).await.map_err(pg_error)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("api key {:?}", key.id)));
            }
            Ok(())
        })
    }

    fn api_key(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<ApiKeyRecord>>> {
        let id = id.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            let row =
                client.query_opt(&format!("{API_KEY_COLUMNS} WHERE k.id = $1"), &[&id]).await.map_err(pg_error)?;
            row.as_ref().map(to_api_key).transpose()
        })
    }

    fn api_keys(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<ApiKeyRecord>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(&format!("{API_KEY_COLUMNS} WHERE t.id = $1 ORDER BY k.created_at, k.id"), &[&tenant])
                .await
                .map_err(pg_error)?;
            rows.iter().map(to_api_key).collect()
        })
    }

    fn revoke_api_key(&self, tenant: &str, id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            let changed = client
                .execute(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3)
                     WHERE id = $1 AND tenant_no = (SELECT no FROM tenants WHERE id = $2)",
                    &[&id, &tenant, &at],
                )
                .await
                .map_err(pg_error)?;
            Ok(changed == 1)
        })
    }

    fn setting(&self, name: &str) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>> {
        let name = name.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            let row =
                client.query_opt("SELECT value FROM settings WHERE name = $1", &[&name]).await.map_err(pg_error)?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    fn init_setting(&self, name: &str, value: Vec<u8>) -> BoxFuture<'_, StoreResult<Vec<u8>>> {
        let name = name.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            // A racing insert from another node waits for the first and then does nothing; the
            // read after it (a new statement, a new snapshot) sees whichever value won.
            client
                .execute(
                    "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                    &[&name, &value],
                )
                .await
                .map_err(pg_error)?;
            let row =
                client.query_one("SELECT value FROM settings WHERE name = $1", &[&name]).await.map_err(pg_error)?;
            Ok(row.get(0))
        })
    }

    fn swap_setting(&self, name: &str, expected: Vec<u8>, new: Vec<u8>) -> BoxFuture<'_, StoreResult<bool>> {
        let name = name.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            // Row-locked compare-and-swap: a concurrent swap re-checks `value` after the first.
            let changed = client
                .execute("UPDATE settings SET value = $3 WHERE name = $1 AND value = $2", &[&name, &expected, &new])
                .await
                .map_err(pg_error)?;
            Ok(changed == 1)
        })
    }

    fn append(&self, tenant: &str, events: Vec<PreparedEvent>) -> BoxFuture<'_, StoreResult<Vec<Appended>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            if self.inner.stopped.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("store is shut down".into()));
            }
            let no = self.tenant_no(&tenant).await?;
            if events.is_empty() {
                return Ok(Vec::new());
            }
            let events = Arc::new(events);
            let committer = self.committer(TenantRef { no, id: tenant.clone() })?;
            // Sealed under a key an erasure destroyed meanwhile: seal again under a new one.
            let mut attempts = 0;
            loop {
                let sealed = self.seal(&tenant, no, &events).await?;
                let (reply, answer) = oneshot::channel();
                self.inner.stats.queue_depth.fetch_add(1, Ordering::Relaxed);
                if committer.send(AppendRequest { events: events.clone(), sealed, reply }).await.is_err() {
                    self.inner.stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                    return Err(StoreError::Unavailable("store is shut down".into()));
                }
                match answer.await.map_err(|_| StoreError::Unavailable("store committer has stopped".into()))? {
                    Err(StoreError::Retry(_)) if attempts < 3 => attempts += 1,
                    result => return result,
                }
            }
        })
    }

    fn event_by_id(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<StoredEvent>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            let client = self.client().await?;
            reader::event_by_id(&**client, &self.read_ctx(&tenant, no), &id).await
        })
    }

    fn query<'a>(
        &'a self,
        tenant: &'a str,
        query: &'a EventQuery,
        page: &'a PageRequest,
    ) -> BoxFuture<'a, StoreResult<EventPage>> {
        Box::pin(async move {
            let no = self.tenant_no(tenant).await?;
            if query.actor_email.is_some() || query.ip.is_some() {
                // Blind-index filters need the tenant's key (another node may have created it).
                self.ensure_blind_key(tenant, no).await?;
            }
            let client = self.inner.query_pool.get().await.map_err(pool_error)?;
            reader::query(&**client, &self.read_ctx(tenant, no), query, page).await
        })
    }

    fn records(&self, tenant: &str, from: u64, limit: u32) -> BoxFuture<'_, StoreResult<Vec<StoredEvent>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            let client = self.client().await?;
            let records = reader::records(&**client, &self.read_ctx(&tenant, no), from, limit).await?;
            self.inner.stats.records_read.fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(records)
        })
    }

    fn tree_head(&self, tenant: &str) -> BoxFuture<'_, StoreResult<TreeHead>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            let client = self.client().await?;
            let row = client
                .query_opt("SELECT size, root FROM ledger_heads WHERE tenant_no = $1", &[&no])
                .await
                .map_err(pg_error)?
                .ok_or_else(|| StoreError::Corrupt(format!("tenant {tenant} has no ledger head")))?;
            to_head(row.get(0), row.get(1))
        })
    }

    fn tree_heads(&self) -> BoxFuture<'_, StoreResult<Vec<(String, TreeHead)>>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT t.id, h.size, h.root FROM tenants t JOIN ledger_heads h ON h.tenant_no = t.no ORDER BY t.no",
                    &[],
                )
                .await
                .map_err(pg_error)?;
            let mut heads = Vec::with_capacity(rows.len());
            for row in &rows {
                heads.push((row.get(0), to_head(row.get(1), row.get(2))?));
            }
            Ok(heads)
        })
    }

    fn subtree_hashes(&self, tenant: &str, nodes: Vec<(u32, u64)>) -> BoxFuture<'_, StoreResult<Vec<[u8; 32]>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            let mut client = self.client().await?;
            // One snapshot for every hash, so they all come from the same tree.
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(pg_error)?;
            let hashes = tree::subtree_hashes(&*tx, no, &nodes).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(hashes.into_iter().map(|hash| hash.0).collect())
        })
    }

    fn add_checkpoint(&self, tenant: &str, checkpoint: StoredCheckpoint) -> BoxFuture<'_, StoreResult<()>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            let size = to_i64(checkpoint.size, "tree size")?;
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO checkpoints (tenant_no, tree_size, root, note, created_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (tenant_no, tree_size) DO NOTHING",
                    &[&no, &size, &checkpoint.root.as_slice(), &checkpoint.note, &checkpoint.created_at],
                )
                .await
                .map_err(pg_error)?;
            Ok(())
        })
    }

    fn latest_checkpoint(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Option<StoredCheckpoint>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT tree_size, root, note, created_at FROM checkpoints WHERE tenant_no = $1
                     ORDER BY tree_size DESC LIMIT 1",
                    &[&no],
                )
                .await
                .map_err(pg_error)?;
            row.as_ref().map(to_checkpoint).transpose()
        })
    }

    fn checkpoint_at(&self, tenant: &str, size: u64) -> BoxFuture<'_, StoreResult<Option<StoredCheckpoint>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            let Ok(size) = i64::try_from(size) else { return Ok(None) };
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT tree_size, root, note, created_at FROM checkpoints WHERE tenant_no = $1 AND tree_size = $2",
                    &[&no, &size],
                )
                .await
                .map_err(pg_error)?;
            row.as_ref().map(to_checkpoint).transpose()
        })
    }

    fn add_checkpoint_timestamp(&self, tenant: &str, timestamp: CheckpointTimestamp) -> BoxFuture<'_, StoreResult<()>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            let size = to_i64(timestamp.size, "tree size")?;
            let client = self.client().await?;
            // Checkpoints are never deleted, so one that exists now still exists at the insert.
            let checkpoint = client
                .query_opt("SELECT 1 FROM checkpoints WHERE tenant_no = $1 AND tree_size = $2", &[&no, &size])
                .await
                .map_err(pg_error)?;
            if checkpoint.is_none() {
                return Err(StoreError::Backend(format!("no checkpoint at size {} to time-stamp", timestamp.size)));
            }
            client
                .execute(
                    "INSERT INTO checkpoint_timestamps (tenant_no, tree_size, response, created_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_no, tree_size) DO NOTHING",
                    &[&no, &size, &timestamp.response, &Timestamp::now()],
                )
                .await
                .map_err(pg_error)?;
            Ok(())
        })
    }

    fn checkpoint_timestamp(&self, tenant: &str, size: u64) -> BoxFuture<'_, StoreResult<Option<CheckpointTimestamp>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            let Ok(size) = i64::try_from(size) else { return Ok(None) };
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT tree_size, response FROM checkpoint_timestamps WHERE tenant_no = $1 AND tree_size = $2",
                    &[&no, &size],
                )
                .await
                .map_err(pg_error)?;
            Ok(row.as_ref().map(to_timestamp))
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
            let max_size = i64::try_from(max_size).unwrap_or(i64::MAX);
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT tree_size, response FROM checkpoint_timestamps
                     WHERE tenant_no = $1 AND tree_size <= $2 ORDER BY tree_size DESC LIMIT $3",
                    &[&no, &max_size, &i64::from(limit)],
                )
                .await
                .map_err(pg_error)?;
            Ok(rows.iter().map(to_timestamp).collect())
        })
    }

    fn erase_subject(&self, tenant: &str, subject: &str) -> BoxFuture<'_, StoreResult<Erasure>> {
        let (tenant, subject) = (tenant.to_string(), subject.to_string());
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // The tenant's appends first lock its head row, as this does: an append in flight
            // commits before the erasure starts, and none commits until it has ended. Without
            // it an append sealed under the subject's *new* key (its old one found deleted)
            // could commit between the delete and the unlinking below, and lose its search
            // tokens to it. (Committers also lock the keys they sealed with, FOR KEY SHARE: an
            // append sealed under a deleted key finds it gone and seals again.)
            tx.query_opt("SELECT size FROM ledger_heads WHERE tenant_no = $1 FOR UPDATE", &[&no])
                .await
                .map_err(pg_error)?;
            let ids: Vec<u64> = tx
                .query(
                    "DELETE FROM subject_keys WHERE tenant_no = $1 AND subject = $2 RETURNING key_id",
                    &[&no, &subject],
                )
                .await
                .map_err(pg_error)?
                .iter()
                .map(|row| row.get::<_, i64>(0) as u64)
                .collect();
            let unlinked = tx
                .execute(
                    "UPDATE personal p SET email_bidx = NULL, ip_bidx = NULL FROM records r
                     WHERE r.tenant_no = $1 AND r.actor_id = $2 AND p.tenant_no = r.tenant_no AND p.seq = r.seq
                       AND (p.email_bidx IS NOT NULL OR p.ip_bidx IS NOT NULL)",
                    &[&no, &subject],
                )
                .await
                .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            self.inner.privacy.forget(&tenant, &subject, &ids);
            Ok(Erasure { keys_destroyed: ids.len() as u64, events_unlinked: unlinked })
        })
    }

    fn rewrap_keys(&self) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let privacy = &self.inner.privacy;
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            let mut count = 0;
            let rows = tx
                .query(
                    "SELECT k.key_id, t.id, k.subject, k.wrapped FROM subject_keys k JOIN tenants t ON t.no = k.tenant_no
                     FOR UPDATE OF k",
                    &[],
                )
                .await
                .map_err(pg_error)?;
            for row in rows {
                let key_id: i64 = row.get(0);
                let tenant: String = row.get(1);
                let key = SubjectKeyRow { key_id: key_id as u64, subject: row.get(2), wrapped: row.get(3) };
                if let Some(new) = privacy.rewrap(&tenant, &key)? {
                    tx.execute("UPDATE subject_keys SET wrapped = $2 WHERE key_id = $1", &[&key_id, &new])
                        .await
                        .map_err(pg_error)?;
                    count += 1;
                }
            }
            let rows = tx
                .query(
                    "SELECT k.tenant_no, t.id, k.blind_wrapped FROM tenant_keys k JOIN tenants t ON t.no = k.tenant_no
                     FOR UPDATE OF k",
                    &[],
                )
                .await
                .map_err(pg_error)?;
            for row in rows {
                let (no, tenant, wrapped): (i64, String, Vec<u8>) = (row.get(0), row.get(1), row.get(2));
                if let Some(new) = privacy.rewrap_blind(&tenant, &wrapped)? {
                    tx.execute("UPDATE tenant_keys SET blind_wrapped = $2 WHERE tenant_no = $1", &[&no, &new])
                        .await
                        .map_err(pg_error)?;
                    count += 1;
                }
            }
            // Installation secrets (signing-key seeds, the API-key pepper) in settings.
            let rows = tx.query("SELECT name, value FROM settings FOR UPDATE", &[]).await.map_err(pg_error)?;
            for row in rows {
                let (name, value): (String, Vec<u8>) = (row.get(0), row.get(1));
                if let Some(new) = privacy.reseal_setting(&name, &value)? {
                    tx.execute("UPDATE settings SET value = $2 WHERE name = $1", &[&name, &new])
                        .await
                        .map_err(pg_error)?;
                    count += 1;
                }
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(count)
        })
    }

    fn privacy(&self) -> &Privacy {
        &self.inner.privacy
    }

    fn seal_tenant_text(&self, tenant: &str, context: &str, text: &str) -> BoxFuture<'_, StoreResult<String>> {
        let (tenant, context, text) = (tenant.to_string(), context.to_string(), text.to_string());
        Box::pin(async move {
            let no = self.tenant_no(&tenant).await?;
            self.ensure_blind_key(&tenant, no).await?;
            self.inner.privacy.seal_tenant_text(&tenant, &context, &text)
        })
    }

    fn open_tenant_text(&self, tenant: &str, context: &str, text: &str) -> BoxFuture<'_, StoreResult<String>> {
        let (tenant, context, text) = (tenant.to_string(), context.to_string(), text.to_string());
        Box::pin(async move {
            if text.starts_with(veritrail_store::privacy::SEALED_TEXT_PREFIX) {
                let no = self.tenant_no(&tenant).await?;
                self.ensure_blind_key(&tenant, no).await?;
            }
            self.inner.privacy.open_tenant_text(&tenant, &context, &text)
        })
    }

    fn wait_indexed(&self) -> BoxFuture<'_, StoreResult<()>> {
        // Query columns are written in the appending transaction: nothing ever lags.
        Box::pin(async { Ok(()) })
    }

    fn rebuild_indexes(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let client = self.client().await?;
            // Blocks appends (not reads of the tables) while it runs; an operator's action.
            client
                .batch_execute("REINDEX TABLE records; REINDEX TABLE personal; REINDEX TABLE event_resources;")
                .await
                .map_err(pg_error)?;
            Ok(())
        })
    }

    fn stats(&self) -> StoreStats {
        self.inner.stats.snapshot()
    }

    fn shutdown(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            // Dropping the senders lets each committer finish what is queued, then stop.
            let senders = {
                let mut writers = self.inner.writers.lock().unwrap_or_else(|p| p.into_inner());
                self.inner.stopped.store(true, Ordering::SeqCst);
                std::mem::take(&mut *writers)
            };
            drop(senders);
            let tasks = std::mem::take(&mut *self.inner.writer_tasks.lock().unwrap_or_else(|p| p.into_inner()));
            for task in tasks {
                let _ = task.await;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_filled_in() {
        let (config, _) = parse_config("postgres://vt@127.0.0.1:5433/audit").expect("valid url");
        assert_eq!(config.get_dbname(), Some("audit"));
        assert_eq!(config.get_application_name(), Some("veritrail"));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(10)));
        assert!(matches!(parse_config("postgres://[oops"), Err(StoreError::Backend(_))));
    }

    /// The idempotency lookup of every group commit probes the unique index id by id, even in
    /// the generic plan of a fresh, never-analysed table.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn known_ids_probe_the_unique_index_on_a_fresh_table() {
        let database =
            tokio::task::spawn_blocking(veritrail_test_support::postgres::TestDatabase::create).await.expect("join");
        migrate(&database.url).await.expect("migrated");
        let plan = database.execute(&format!(
            "SET plan_cache_mode = force_generic_plan; PREPARE known(bigint, text[]) AS {};
             EXPLAIN EXECUTE known(1, ARRAY['a', 'b']);",
            writer::KNOWN_IDS
        ));
        assert!(plan.contains("records_tenant_no_event_id_key"), "{plan}");
        assert!(!plan.contains("records_actor"), "{plan}");
    }

    /// Inserts pipelined in one transaction fail with the error that failed it — here the
    /// unique index refusing a known event id — never with the 25P02 refusal of a statement
    /// sent after it, whichever of them is polled first (with `try_join!` this test failed).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_inserts_fail_with_their_cause() {
        let database =
            tokio::task::spawn_blocking(veritrail_test_support::postgres::TestDatabase::create).await.expect("join");
        migrate(&database.url).await.expect("migrated");
        let (mut client, connection) =
            tokio_postgres::connect(&database.url, tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        let event = veritrail_store::suite::prepared(
            serde_json::json!({"id": "known", "action": "data.read", "actor": {"id": "u1"}}),
        );
        let sealed = veritrail_model::seal(&event, "tn_a", 0, Timestamp::now()).expect("sealed");
        let leaf = veritrail_ledger::hash::leaf_hash(&sealed);
        let rows = |seq: i64| {
            let mut rows = writer::Rows::default();
            let personal = veritrail_store::dump::PersonalRow { data: vec![1], email_bidx: None, ip_bidx: None };
            rows.push_record(seq, "known".into(), &leaf, sealed.clone(), Some(personal)).expect("row");
            rows
        };
        let tx = client.transaction().await.expect("begin");
        writer::RowInserts::prepare(&tx).await.expect("prepared").insert(&tx, 1, &rows(0)).await.expect("inserted");
        tx.commit().await.expect("committed");
        for _ in 0..20 {
            let tx = client.transaction().await.expect("begin");
            let inserts = writer::RowInserts::prepare(&tx).await.expect("prepared");
            let error = inserts.insert(&tx, 1, &rows(1)).await.expect_err("the id is known");
            let constraint = error.as_db_error().and_then(|db| db.constraint());
            assert_eq!(constraint, Some("records_tenant_no_event_id_key"), "{error:?}");
            tx.rollback().await.expect("rolled back");
        }
    }
}
