//! The naive baseline: a throw-away PostgreSQL cluster (Debian's server binaries, through the
//! harness in `veritrail-test-support`) in a temporary directory on a free loopback port,
//! `fsync=on`, `synchronous_commit=on`, with the classic
//! `audit_events` table and its four secondary indexes; loaded with binary COPY and queried with
//! tokio-postgres.

use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::{Client, NoTls};
use veritrail_test_support::postgres;

use crate::events::PgRow;

/// The tenant all loaded rows belong to.
pub const TENANT: &str = "tenant-bench";

/// Settings appended to `postgresql.conf`: durable like Veritrail, and sized like a modest
/// production server rather than the 128 MB defaults.
const SETTINGS: &str = "
fsync = on
synchronous_commit = on
full_page_writes = on
wal_sync_method = fdatasync
shared_buffers = 512MB
max_wal_size = 2GB
logging_collector = off
";

fn schema(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (
            id bigserial PRIMARY KEY,
            tenant_id text NOT NULL,
            user_id text,
            action text NOT NULL,
            resource_type text,
            resource_id text,
            changes jsonb,
            ip_address inet,
            user_agent text,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ON {table} (tenant_id, created_at);
        CREATE INDEX ON {table} (tenant_id, user_id);
        CREATE INDEX ON {table} (tenant_id, action);
        CREATE INDEX ON {table} (tenant_id, resource_type, resource_id);"
    )
}

const COLUMNS: &str =
    "tenant_id, user_id, action, resource_type, resource_id, changes, ip_address, user_agent, created_at";
const TYPES: &[Type] = &[
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::INET,
    Type::TEXT,
    Type::TIMESTAMPTZ,
];

/// The baseline's cluster: the throw-away cluster of `veritrail-test-support` (Debian's
/// `postgresql` installed first when missing and running as root), with the settings above.
pub struct PgCluster {
    inner: postgres::PgCluster,
    /// Loopback port it listens on.
    pub port: u16,
}

impl PgCluster {
    /// Installs (if needed and allowed), initialises and starts a cluster under `work_dir`.
    pub fn start(work_dir: &Path) -> Result<PgCluster> {
        postgres::ensure_installed().map_err(|e| anyhow!(e))?;
        let options = postgres::ClusterOptions {
            settings: SETTINGS.to_string(),
            work_dir: Some(work_dir.to_path_buf()),
            stop_mode: postgres::StopMode::Fast,
        };
        let inner = postgres::PgCluster::start(&options).map_err(|e| anyhow!(e))?;
        Ok(PgCluster { port: inner.port(), inner })
    }

    /// The postmaster's PID (for CPU accounting).
    pub fn postmaster_pid(&self) -> Option<u32> {
        self.inner.postmaster_pid()
    }

    /// Connection string.
    pub fn conninfo(&self) -> String {
        self.inner.conninfo("postgres")
    }

    /// Connection string of database `dbname`.
    pub fn conninfo_of(&self, dbname: &str) -> String {
        self.inner.conninfo(dbname)
    }

    /// `postgres://` URL of database `dbname` (what `veritrail serve --database-url` takes).
    pub fn url(&self, dbname: &str) -> String {
        self.inner.url(dbname)
    }

    /// Creates an empty database.
    pub fn create_database(&self, dbname: &str) -> Result<()> {
        self.inner.create_database(dbname).map_err(|e| anyhow!(e))
    }

    /// Connects one client; its connection task runs on the current runtime.
    pub async fn connect(&self) -> Result<Client> {
        connect(&self.conninfo()).await
    }

    /// Server version string.
    pub async fn version(&self) -> Result<String> {
        let client = self.connect().await?;
        let row = client.query_one("SHOW server_version", &[]).await?;
        Ok(row.get::<_, String>(0))
    }

    /// Stops the cluster.
    pub fn stop(&mut self) {
        self.inner.stop();
    }
}

/// Connects to `conninfo`, spawning the connection task on the current runtime.
pub async fn connect(conninfo: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("bench: postgres connection: {e}");
        }
    });
    Ok(client)
}

/// Creates `table` with the naive schema and its indexes.
pub async fn create_table(client: &Client, table: &str) -> Result<()> {
    client.batch_execute(&format!("DROP TABLE IF EXISTS {table}; {}", schema(table))).await?;
    Ok(())
}

fn params<'a>(
    tenant: &'a &'a str,
    row: &'a PgRow,
    changes: &'a Json<&'a serde_json::value::RawValue>,
) -> [&'a (dyn ToSql + Sync); 9] {
    [
        tenant,
        &row.user_id,
        &row.action,
        &row.resource_type,
        &row.resource_id,
        changes,
        &row.ip,
        &row.user_agent,
        &row.created_at,
    ]
}

/// Loads `rows` with binary COPY from `connections` concurrent connections, `rows_per_copy` rows
/// per COPY statement (each statement is its own durable commit); returns the elapsed time.
pub async fn copy_rows(
    clients: &[Arc<Client>],
    table: &str,
    rows: Arc<Vec<PgRow>>,
    range: std::ops::Range<usize>,
    rows_per_copy: usize,
) -> Result<Duration> {
    let chunks: Vec<std::ops::Range<usize>> =
        range.clone().step_by(rows_per_copy.max(1)).map(|s| s..(s + rows_per_copy).min(range.end)).collect();
    let chunks = Arc::new(chunks);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in clients {
        let (client, rows, chunks, next) = (client.clone(), rows.clone(), chunks.clone(), next.clone());
        let statement = format!("COPY {table} ({COLUMNS}) FROM STDIN (FORMAT binary)");
        tasks.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(chunk) = chunks.get(index) else { break };
                let sink = client.copy_in(statement.as_str()).await?;
                let mut writer = pin!(BinaryCopyInWriter::new(sink, TYPES));
                for row in &rows[chunk.clone()] {
                    let changes = Json(row.changes.as_ref());
                    writer.as_mut().write(&params(&TENANT, row, &changes)).await?;
                }
                writer.finish().await?;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| anyhow!("copy task: {e}"))??;
    }
    Ok(started.elapsed())
}

/// The prepared single-row insert used by the latency baseline.
pub fn insert_sql(table: &str) -> String {
    format!("INSERT INTO {table} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
}

/// Inserts one row with a prepared statement (autocommit: one durable commit).
pub async fn insert_one(
    client: &Client,
    statement: &tokio_postgres::Statement,
    tenant: &str,
    row: &PgRow,
) -> Result<()> {
    let changes = Json(row.changes.as_ref());
    client.execute(statement, &params(&tenant, row, &changes)).await?;
    Ok(())
}

/// The query equivalent to `GET /v1/events?actor_id=..&action=auth.*&limit=100`.
pub fn query_sql(table: &str) -> String {
    format!(
        "SELECT * FROM {table} WHERE tenant_id = $1 AND user_id = $2 AND action LIKE 'auth.%' ORDER BY created_at DESC LIMIT 100"
    )
}

/// Runs the prepared query for `actor`; returns the number of rows.
pub async fn run_query(client: &Client, statement: &tokio_postgres::Statement, actor: &str) -> Result<usize> {
    Ok(client.query(statement, &[&TENANT, &actor]).await?.len())
}

/// Runs `VACUUM ANALYZE` so the planner has statistics (what autovacuum would have done).
pub async fn analyze(client: &Client, table: &str) -> Result<()> {
    client.batch_execute(&format!("VACUUM ANALYZE {table}")).await?;
    Ok(())
}

/// The plan of the query for one actor (for the report).
pub async fn explain(client: &Client, table: &str, actor: &str) -> Result<String> {
    let sql = format!("EXPLAIN {}", query_sql(table));
    let rows = client.query(sql.as_str(), &[&TENANT, &actor]).await?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n"))
}

/// A one-thread runtime whose threads are named for CPU accounting.
pub fn runtime(workers: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("pg-client")
        .enable_all()
        .build()
        .map_err(Into::into)
}

/// Checks a PostgreSQL connection works at all.
pub fn probe(rt: &tokio::runtime::Runtime, cluster: &PgCluster) -> Result<String> {
    rt.block_on(cluster.version())
}

/// Statement timeout guard for a whole phase.
pub async fn within<T>(limit: Duration, what: &str, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limit, fut).await.map_err(|_| anyhow!("{what} took longer than {limit:?}"))?
}
