//! A throw-away PostgreSQL cluster: the distribution's server binaries, `initdb` into a
//! temporary directory, started on a free loopback port (TCP only) with `fsync=on`, stopped and
//! deleted on drop. Used by the PostgreSQL store's tests, the multi-node tests and the benchmark.
//!
//! Tests get a fresh database on a cluster shared by the whole test process with
//! [`TestDatabase::create`]; the cluster stops when the last of them is dropped, or at the
//! latest once the process has exited. A missing PostgreSQL fails the test with instructions,
//! never skips it (`.ci/run` installs it).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// `postgresql.conf` additions of test clusters: durable like production, small and quick.
pub const TEST_SETTINGS: &str = "
fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = 32MB
max_connections = 200
logging_collector = off
";

/// How to stop a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `pg_ctl stop -m fast`: a clean shutdown with a checkpoint.
    Fast,
    /// `pg_ctl stop -m immediate`: no checkpoint; enough for data deleted right after.
    Immediate,
}

/// How to create a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Lines appended to `postgresql.conf` (listening and sockets are set by the harness).
    pub settings: String,
    /// Directory the cluster's temporary directory is made in (default: the system's).
    pub work_dir: Option<PathBuf>,
    /// How [`PgCluster::stop`] and drop stop it.
    pub stop_mode: StopMode,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions { settings: TEST_SETTINGS.to_string(), work_dir: None, stop_mode: StopMode::Immediate }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// The directory holding `initdb` and `pg_ctl`: the newest `/usr/lib/postgresql/*/bin`
/// (Debian), else the first directory on `PATH` with both.
pub fn find_bin_dir() -> Option<PathBuf> {
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

/// Finds the server binaries, installing Debian's `postgresql` package first when they are
/// missing and this process runs as root (the benchmark does; tests leave it to `.ci/run`).
pub fn ensure_installed() -> Result<PathBuf, String> {
    if let Some(bin) = find_bin_dir() {
        return Ok(bin);
    }
    if !is_root() {
        return Err("PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin or PATH, \
             and not running as root to install them: install the `postgresql` package"
            .into());
    }
    eprintln!("postgresql: running `apt-get install -y postgresql` (this may take a minute)");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !install() {
        eprintln!("postgresql: install failed; running `apt-get update` and trying again");
        let _ = Command::new("apt-get").args(["update", "-qq"]).env("DEBIAN_FRONTEND", "noninteractive").status();
        if !install() {
            return Err("apt-get install postgresql failed".into());
        }
    }
    find_bin_dir().ok_or_else(|| "postgresql installed but initdb/pg_ctl still not found".into())
}

/// A throw-away PostgreSQL cluster; stopped and deleted on drop.
pub struct PgCluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Running as root: the server runs as the `postgres` user (it refuses root).
    as_postgres: bool,
    stop_mode: StopMode,
    running: Mutex<bool>,
    /// The temporary directory holding `data`, deleted on drop.
    root: tempfile::TempDir,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster").field("data", &self.data).field("port", &self.port).finish()
    }
}

static SHARED: Mutex<Weak<PgCluster>> = Mutex::new(Weak::new());
static DATABASES: AtomicUsize = AtomicUsize::new(0);

impl PgCluster {
    /// Initialises and starts a cluster with the binaries of [`find_bin_dir`] (installing
    /// nothing: see [`ensure_installed`]).
    pub fn start(options: &ClusterOptions) -> Result<PgCluster, String> {
        PgCluster::launch(options, |cluster| {
            let data = cluster.data_str();
            cluster.run(
                "initdb",
                &["-D", &data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"],
            )?;
            let conf = cluster.data.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).map_err(|e| format!("cannot read postgresql.conf: {e}"))?;
            text.push_str("\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n");
            text.push_str(&options.settings);
            std::fs::write(&conf, text).map_err(|e| format!("cannot write postgresql.conf: {e}"))
        })
    }

    /// A hot standby of `primary` (`pg_basebackup -R`: streaming replication, read-only), on a
    /// port of its own.
    pub fn start_replica(primary: &PgCluster) -> Result<PgCluster, String> {
        let options = ClusterOptions { stop_mode: primary.stop_mode, ..ClusterOptions::default() };
        PgCluster::launch(&options, |cluster| {
            let data = cluster.data_str();
            let port = primary.port.to_string();
            let args = ["-D", &data, "-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-R", "-X", "stream"];
            cluster.run("pg_basebackup", &[&args[..], &["-c", "fast", "--no-sync"]].concat())?;
            // The server refuses a data directory others may read (initdb sets this itself).
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cluster.data, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("cannot restrict {}: {e}", cluster.data.display()))
        })
    }

    /// Makes the cluster's directory, fills it with `init`, and starts the server.
    fn launch(
        options: &ClusterOptions,
        init: impl FnOnce(&PgCluster) -> Result<(), String>,
    ) -> Result<PgCluster, String> {
        let bin = find_bin_dir().ok_or_else(|| {
            "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin or PATH: \
             install them (Debian: apt-get install postgresql; .ci/run does)"
                .to_string()
        })?;
        let as_postgres = is_root();
        let mut builder = tempfile::Builder::new();
        builder.prefix("veritrail-pg-");
        let root = match &options.work_dir {
            Some(dir) => builder.tempdir_in(dir),
            None => builder.tempdir(),
        }
        .map_err(|e| format!("cannot create the cluster directory: {e}"))?;
        let data = root.path().join("data");
        std::fs::create_dir(&data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("cannot open up {}: {e}", root.path().display()))?;
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&data)
                .status()
                .map_err(|e| format!("cannot run chown: {e}"))?;
            if !status.success() {
                return Err(format!("cannot chown {} to the postgres user (does it exist?)", data.display()));
            }
        }
        let mut cluster = PgCluster {
            bin,
            data,
            port: 0,
            as_postgres,
            stop_mode: options.stop_mode,
            running: Mutex::new(false),
            root,
        };
        init(&cluster)?;
        let data = cluster.data_str();
        let log = cluster.data.join("server.log").to_string_lossy().into_owned();
        // A free port can be taken by someone else before the server binds it: try a few.
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let port_option = format!("-p {port}");
            match cluster.run("pg_ctl", &["-D", &data, "-l", &log, "-o", &port_option, "-w", "-t", "120", "start"]) {
                Ok(()) => {
                    cluster.port = port;
                    *cluster.running.lock().unwrap_or_else(|p| p.into_inner()) = true;
                    cluster.spawn_reaper();
                    return Ok(cluster);
                }
                Err(error) => {
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    let tail: Vec<&str> = tail.lines().rev().take(10).collect();
                    last_error = format!("{error}\nserver log (last lines, newest first):\n{}", tail.join("\n"));
                }
            }
        }
        Err(last_error)
    }

    /// The cluster shared by this test process, started on first use; it stops when the last
    /// `Arc` to it is dropped. Panics (failing the test) if PostgreSQL is not installed.
    pub fn shared() -> Arc<PgCluster> {
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cluster) = slot.upgrade() {
            return cluster;
        }
        let cluster = match PgCluster::start(&ClusterOptions::default()) {
            Ok(cluster) => Arc::new(cluster),
            Err(error) => panic!("cannot start a throw-away postgresql cluster: {error}"),
        };
        *slot = Arc::downgrade(&cluster);
        cluster
    }

    /// The cluster's data directory (tables, WAL).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data
    }

    fn data_str(&self) -> String {
        self.data.to_string_lossy().into_owned()
    }

    /// `program` of the server binaries with `args`, run as the user owning the cluster.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        command.args(args).current_dir("/");
        command
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let mut command = self.command(program, args);
        let output = command.output().map_err(|e| format!("cannot run {program}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{program} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(())
    }

    /// Starts a watcher that stops the cluster and deletes its directory once this process has
    /// exited, however it exits: statics (a server shared by a test's cases, the databases kept
    /// per data directory) are never dropped, and a timed-out test is killed.
    fn spawn_reaper(&self) {
        let stop = self.command("pg_ctl", &["-D", &self.data_str(), "-m", "immediate", "-w", "-t", "60", "stop"]);
        let mut reaper = Command::new("sh");
        reaper
            .arg("-c")
            .arg(r#"pid=$1 root=$2; shift 2; while kill -0 "$pid" 2>/dev/null; do sleep 1; done; "$@"; rm -rf "$root""#)
            .arg("veritrail-pg-reaper")
            .arg(std::process::id().to_string())
            .arg(self.root.path())
            .arg(stop.get_program())
            .args(stop.get_args())
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // Its own process group: the test runner's kill of a timed-out test spares it.
        std::os::unix::process::CommandExt::process_group(&mut reaper, 0);
        if let Err(error) = reaper.spawn() {
            eprintln!("postgresql: cannot start the cluster's reaper (it may outlive the tests): {error}");
        }
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's PID (for CPU accounting).
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Key-value connection string for `dbname`, as superuser `postgres`.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname={dbname}", self.port)
    }

    /// `postgres://` URL of `dbname`, as superuser `postgres`.
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    /// Runs one SQL statement with `psql` as superuser, in `dbname`.
    pub fn execute(&self, dbname: &str, sql: &str) -> Result<String, String> {
        let psql = self.bin.join("psql");
        let psql = if psql.is_file() { psql } else { PathBuf::from("psql") };
        let output = Command::new(&psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &self.conninfo(dbname), "-c", sql])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", psql.display()))?;
        if !output.status.success() {
            return Err(format!("psql failed on {sql:?}: {}", String::from_utf8_lossy(&output.stderr)));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Creates an empty database.
    pub fn create_database(&self, name: &str) -> Result<(), String> {
        self.execute("postgres", &format!("CREATE DATABASE \"{name}\"")).map(|_| ())
    }

    /// Stops the cluster (idempotent).
    pub fn stop(&self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if !*running {
            return;
        }
        *running = false;
        let mode = match self.stop_mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        if let Err(error) = self.run("pg_ctl", &["-D", &self.data_str(), "-m", mode, "-w", "-t", "60", "stop"]) {
            eprintln!("postgresql: stopping the throw-away cluster: {error}");
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// A fresh, empty database on the process's shared cluster, which lives at least as long.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its `postgres://` URL.
    pub url: String,
    /// Its name.
    pub name: String,
    cluster: Arc<PgCluster>,
}

impl TestDatabase {
    /// Creates a database on [`PgCluster::shared`] (starting the cluster if needed). Blocking.
    pub fn create() -> TestDatabase {
        let cluster = PgCluster::shared();
        let name = format!("vt_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed));
        if let Err(error) = cluster.create_database(&name) {
            panic!("cannot create test database {name}: {error}");
        }
        TestDatabase { url: cluster.url(&name), name, cluster }
    }

    /// The cluster it lives on.
    pub fn cluster(&self) -> &PgCluster {
        &self.cluster
    }

    /// Runs one SQL statement in this database (as superuser) and returns `psql`'s unaligned,
    /// tuples-only output.
    pub fn execute(&self, sql: &str) -> String {
        self.cluster.execute(&self.name, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every row of every table of this database, as text: what a test searches for values
    /// that must never be stored in clear.
    pub fn table_dump(&self) -> TableDump {
        let tables = self.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'");
        let mut text = String::new();
        for table in tables.lines().filter(|t| !t.is_empty()) {
            let sql = format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{table}\" t");
            text.push_str(&self.execute(&sql));
        }
        TableDump { text }
    }
}

/// The rows of a database's tables as text ([`TestDatabase::table_dump`]); `bytea` is in hex.
#[derive(Debug, Clone)]
pub struct TableDump {
    /// One row a line, `(col1,col2,...)`.
    pub text: String,
}

impl TableDump {
    /// Whether `needle` is in some row, as text or as the hex of `bytea`.
    pub fn contains(&self, needle: &str) -> bool {
        let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
        self.text.contains(needle) || self.text.contains(&hex)
    }
}
