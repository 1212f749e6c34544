//! The naive baseline: a throw-away PostgreSQL cluster (Debian's server binaries) in a temporary
//! directory on a free loopback port, `fsync=on`, `synchronous_commit=on`, with the classic
//! `audit_events` table and its four secondary indexes; loaded with binary COPY and queried with
//! tokio-postgres.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::{Client, NoTls};

use crate::events::PgRow;

/// The tenant all loaded rows belong to.
pub const TENANT: &str = "tenant-bench";

/// Settings appended to `postgresql.conf`: durable like Veritrail, and sized like a modest
/// production server rather than the 128 MB defaults.
const SETTINGS: &str = "
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
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

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// The directory holding `initdb` and `pg_ctl`: the newest `/usr/lib/postgresql/*/bin`, else `PATH`.
fn find_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let bin = entry.path().join("bin");
            if bin.join("initdb").is_file() && bin.join("pg_ctl").is_file() {
                let version = entry.file_name().to_string_lossy().parse::<u32>().unwrap_or(0);
                versions.push((version, bin));
            }
        }
    }
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

/// Finds the PostgreSQL server binaries, installing Debian's `postgresql` when running as root.
fn ensure_installed() -> Result<PathBuf> {
    if let Some(bin) = find_bin_dir() {
        return Ok(bin);
    }
    eprintln!("bench: PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin or PATH");
    if !is_root() {
        bail!("not running as root, so not installing them; install the `postgresql` package to get the baseline");
    }
    eprintln!("bench: running `apt-get install -y postgresql` (this may take a minute)");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !install() {
        eprintln!("bench: install failed; running `apt-get update` and trying again");
        let _ = Command::new("apt-get").arg("update").env("DEBIAN_FRONTEND", "noninteractive").status();
        if !install() {
            bail!("apt-get install postgresql failed");
        }
    }
    find_bin_dir().ok_or_else(|| anyhow!("postgresql installed but initdb/pg_ctl still not found"))
}

/// A throw-away PostgreSQL cluster; stopped and deleted on drop.
pub struct PgCluster {
    bin: PathBuf,
    data: PathBuf,
    /// Loopback port it listens on.
    pub port: u16,
    as_postgres: bool,
    running: bool,
    _root: tempfile::TempDir,
}

impl PgCluster {
    /// Installs (if needed and allowed), initialises and starts a cluster under `work_dir`.
    pub fn start(work_dir: &Path) -> Result<PgCluster> {
        let bin = ensure_installed()?;
        let as_postgres = is_root();
        let root = tempfile::Builder::new().prefix("veritrail-bench-pg-").tempdir_in(work_dir)?;
        let data = root.path().join("data");
        std::fs::create_dir(&data)?;
        if as_postgres {
            // PostgreSQL refuses to run as root: the cluster belongs to the `postgres` user.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))?;
            let status = Command::new("chown").args(["postgres:postgres"]).arg(&data).status()?;
            if !status.success() {
                bail!("cannot chown {} to the postgres user (does it exist?)", data.display());
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut cluster = PgCluster { bin, data, port, as_postgres, running: false, _root: root };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data_str(),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
        )?;
        let conf = cluster.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).context("reading postgresql.conf")?;
        text.push_str(SETTINGS);
        text.push_str(&format!("port = {port}\n"));
        std::fs::write(&conf, text).context("writing postgresql.conf")?;
        let log = cluster.data.join("bench-server.log");
        cluster
            .run("pg_ctl", &["-D", &cluster.data_str(), "-l", &log.to_string_lossy(), "-w", "-t", "120", "start"])?;
        cluster.running = true;
        Ok(cluster)
    }

    fn data_str(&self) -> String {
        self.data.to_string_lossy().into_owned()
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        command.args(args).current_dir("/");
        let output = command.output().with_context(|| format!("cannot run {program}"))?;
        if !output.status.success() {
            bail!(
                "{program} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// The postmaster's PID (for CPU accounting).
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Connection string.
    pub fn conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
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
        if self.running {
            self.running = false;
            if let Err(e) = self.run("pg_ctl", &["-D", &self.data_str(), "-m", "fast", "-w", "-t", "60", "stop"]) {
                eprintln!("bench: stopping postgresql: {e}");
            }
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
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
