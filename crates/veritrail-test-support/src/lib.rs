//! Fixtures shared by every test suite (cargo-test-support style): a real server on a loopback
//! port over a temporary data directory, a blocking HTTP client, event generators, a throw-away
//! PostgreSQL cluster (`postgres`).
//!
//! Tests using it are plain `#[test]` functions: the server runs on its own runtime thread, so a
//! blocking client never stalls it.
//!
//! [`TestServer`] and [`ChildServer`] run on the backend [`Backend::from_env`] names:
//! `VERITRAIL_TEST_BACKEND=postgres` gives each data directory its own database on the shared
//! throw-away cluster, so the same API tests run against both backends.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use veritrail_crypto::{MasterKey, MasterKeys};
use veritrail_server::{Server, ServerConfig};
use veritrail_store::{AccessStore, AlertStore, Store};
use veritrail_store_postgres::{PgAccessStore, PgAlertStore, PgStore};
use veritrail_store_sqlite::SqliteStore;

use crate::postgres::TestDatabase;

pub mod postgres;
pub mod smtp;
pub mod tls;
pub mod tsa;
pub mod webhook;

/// The bootstrap token every test server is started with.
pub const BOOTSTRAP_TOKEN: &str = "test-bootstrap-token-0123456789";

/// The master key (base64 of 32 bytes) of test servers on PostgreSQL, which has no key file.
pub const TEST_MASTER_KEY: &str = "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=";

/// The storage backend test servers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded store in the server's data directory.
    Sqlite,
    /// A database of its own on the shared throw-away PostgreSQL cluster, per data directory.
    Postgres,
}

impl Backend {
    /// `VERITRAIL_TEST_BACKEND`: unset or `sqlite`, or `postgres`. Anything else panics, so a
    /// typo never runs a pass on the wrong backend.
    pub fn from_env() -> Backend {
        match std::env::var("VERITRAIL_TEST_BACKEND").as_deref() {
            Err(_) | Ok("" | "sqlite") => Backend::Sqlite,
            Ok("postgres") => Backend::Postgres,
            Ok(other) => panic!("VERITRAIL_TEST_BACKEND={other:?}: expected sqlite or postgres"),
        }
    }

    /// The database a server over `data_dir` uses on this backend (none on SQLite). A server
    /// restarted over the same directory gets the same database back, and so does a test that
    /// looks at what a server stored or tampers with it.
    pub fn database_for(self, data_dir: &Path) -> Option<Arc<TestDatabase>> {
        static DATABASES: Mutex<BTreeMap<PathBuf, Arc<TestDatabase>>> = Mutex::new(BTreeMap::new());
        if self == Backend::Sqlite {
            return None;
        }
        let mut databases = DATABASES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(database) = databases.get(data_dir) {
            return Some(database.clone());
        }
        // Created before older entries are let go, so the shared cluster stays up meanwhile.
        let database = Arc::new(TestDatabase::create());
        databases.retain(|dir, _| dir.exists());
        databases.insert(data_dir.to_path_buf(), database.clone());
        Some(database)
    }

    /// Points a `veritrail serve` command over `data_dir` at this backend: on PostgreSQL, the
    /// directory's database (`--database-url`) and [`TEST_MASTER_KEY`]. Returns the database, to
    /// keep while the server runs.
    pub fn configure_serve(self, command: &mut std::process::Command, data_dir: &Path) -> Option<Arc<TestDatabase>> {
        let database = self.database_for(data_dir)?;
        command.args(["--database-url", &database.url]).env("VERITRAIL_MASTER_KEY", TEST_MASTER_KEY);
        Some(database)
    }
}

/// Polls `check` every 20 ms until it returns something or `within` has passed.
pub fn wait_for<T>(within: std::time::Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A response: status, raw body and headers of interest.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// `Retry-After` header.
    pub retry_after: Option<String>,
}

impl Reply {
    /// The body parsed as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not json ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `error.code` of an error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_string()
    }
}

/// A blocking HTTP client for one base URL.
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Client {
        let config =
            ureq::Agent::config_builder().http_status_as_error(false).max_idle_connections_per_host(16).build();
        Client { base: base.trim_end_matches('/').to_string(), agent: config.into() }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn finish(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut response = response.unwrap_or_else(|e| panic!("request failed: {e}"));
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (content_type, retry_after) = (header("content-type"), header("retry-after"));
        let body = response.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap_or_default();
        Reply { status, body, content_type, retry_after }
    }

    /// GET `path` with an optional bearer token.
    pub fn get(&self, token: Option<&str>, path: &str) -> Reply {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        Client::finish(request.call())
    }

    /// A counter or gauge without labels from the server's `/metrics` (0 when absent).
    pub fn metric(&self, name: &str) -> u64 {
        let metrics = self.get(None, "/metrics").text();
        let line = metrics.lines().find(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ')));
        line.and_then(|line| line.split(' ').nth(1)).and_then(|n| n.parse().ok()).unwrap_or(0)
    }

    /// DELETE `path`.
    pub fn delete(&self, token: Option<&str>, path: &str) -> Reply {
        let mut request = self.agent.delete(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        Client::finish(request.call())
    }

    /// POST raw bytes with a content type.
    pub fn post_raw(&self, token: Option<&str>, path: &str, content_type: &str, body: &[u8]) -> Reply {
        let mut request = self.agent.post(format!("{}{path}", self.base)).header("content-type", content_type);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        Client::finish(request.send(body))
    }

    /// POST raw bytes, returning transport failures (refused, reset) instead of panicking.
    pub fn try_post_raw(
        &self,
        token: Option<&str>,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Reply, String> {
        let mut request = self.agent.post(format!("{}{path}", self.base)).header("content-type", content_type);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let mut response = request.send(body).map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (content_type, retry_after) = (header("content-type"), header("retry-after"));
        let body = response.body_mut().read_to_vec().map_err(|e| e.to_string())?;
        Ok(Reply { status, body, content_type, retry_after })
    }

    /// PUT a JSON value.
    pub fn put_json(&self, token: Option<&str>, path: &str, body: &Value) -> Reply {
        let mut request = self.agent.put(format!("{}{path}", self.base)).header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        Client::finish(request.send(body.to_string().as_bytes()))
    }

    /// PATCH a JSON value.
    pub fn patch_json(&self, token: Option<&str>, path: &str, body: &Value) -> Reply {
        let mut request = self.agent.patch(format!("{}{path}", self.base)).header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        Client::finish(request.send(body.to_string().as_bytes()))
    }

    /// POST a JSON value.
    pub fn post_json(&self, token: Option<&str>, path: &str, body: &Value) -> Reply {
        self.post_raw(token, path, "application/json", body.to_string().as_bytes())
    }

    /// Creates a tenant with the bootstrap token; returns `(tenant id, admin api key)`.
    pub fn create_tenant(&self, name: &str) -> (String, String) {
        let reply = self.post_json(Some(BOOTSTRAP_TOKEN), "/v1/tenants", &json!({"name": name}));
        assert_eq!(reply.status, 201, "create tenant: {}", reply.text());
        let body = reply.json();
        (body["tenant"].as_str().unwrap().to_string(), body["api_key"].as_str().unwrap().to_string())
    }

    /// Creates an API key with `scopes` using an admin key; returns the token.
    pub fn create_key(&self, admin: &str, scopes: &[&str]) -> String {
        let reply = self.post_json(Some(admin), "/v1/api-keys", &json!({"name": "test", "scopes": scopes}));
        assert_eq!(reply.status, 201, "create key: {}", reply.text());
        reply.json()["api_key"].as_str().unwrap().to_string()
    }

    /// Ingests events (a JSON value: object or array) and returns the reply.
    pub fn ingest(&self, key: &str, events: &Value) -> Reply {
        self.post_json(Some(key), "/v1/events", events)
    }
}

/// A server running in-process on a loopback port over its own temporary data directory.
pub struct TestServer {
    /// Client for the server.
    pub client: Client,
    /// Bound address.
    pub addr: SocketAddr,
    dir: Option<tempfile::TempDir>,
    data_dir: PathBuf,
    database: Option<Arc<TestDatabase>>,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server over a fresh temporary data directory.
    pub fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut server = TestServer::start_in(&path);
        server.dir = Some(dir);
        server
    }

    /// Starts a server with `config` (its bootstrap token replaced by [`BOOTSTRAP_TOKEN`]) over
    /// a fresh temporary data directory.
    pub fn start_with(config: ServerConfig) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut server = TestServer::start_in_with(&path, config);
        server.dir = Some(dir);
        server
    }

    /// Starts a server over `data_dir` (kept after the server stops; on PostgreSQL, the
    /// directory's database is kept with it).
    pub fn start_in(data_dir: &Path) -> TestServer {
        TestServer::start_in_with(data_dir, ServerConfig::default())
    }

    /// [`TestServer::start_in`] with `config` (its bootstrap token replaced by
    /// [`BOOTSTRAP_TOKEN`]).
    pub fn start_in_with(data_dir: &Path, config: ServerConfig) -> TestServer {
        let shutdown = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let dir = data_dir.to_path_buf();
        let database = Backend::from_env().database_for(data_dir);
        let url = database.as_ref().map(|database| database.url.clone());
        let token = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let (store, alerts, access) = open_stores(&dir, url.as_deref()).await;
                let config = ServerConfig { bootstrap_token: Some(BOOTSTRAP_TOKEN.into()), ..config };
                let server = Server::start(store, alerts, access, config).await.unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready_tx.send(listener.local_addr().unwrap()).unwrap();
                veritrail_server::serve(server, listener, token).await.unwrap();
            });
        });
        let addr = ready_rx.recv().expect("test server failed to start");
        TestServer {
            client: Client::new(&format!("http://{addr}")),
            addr,
            dir: None,
            data_dir: data_dir.to_path_buf(),
            database,
            shutdown,
            thread: Some(thread),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The PostgreSQL database it runs on (`None` on the embedded store).
    pub fn database(&self) -> Option<&TestDatabase> {
        self.database.as_deref()
    }

    /// Stops the server gracefully and waits for it (the data directory stays).
    pub fn stop(mut self) -> Option<tempfile::TempDir> {
        self.halt();
        self.dir.take()
    }

    fn halt(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The stores of a server over `dir`: the embedded ones, or those of the database at `url`
/// (wired like `veritrail serve --database-url`).
async fn open_stores(dir: &Path, url: Option<&str>) -> (Arc<dyn Store>, Arc<dyn AlertStore>, Arc<dyn AccessStore>) {
    match url {
        None => {
            let sqlite = SqliteStore::open(dir).unwrap();
            let (alerts, access) = (Arc::new(sqlite.alert_store()), Arc::new(sqlite.access_store()));
            (Arc::new(sqlite), alerts, access)
        }
        Some(url) => {
            let keys = MasterKeys::new(MasterKey::from_base64(TEST_MASTER_KEY).unwrap());
            (
                Arc::new(PgStore::connect(url, keys).await.unwrap()),
                Arc::new(PgAlertStore::connect(url).await.unwrap()),
                Arc::new(PgAccessStore::connect(url).await.unwrap()),
            )
        }
    }
}

/// A `veritrail` binary running as a child process (for crash and signal tests).
pub struct ChildServer {
    /// The process.
    pub child: std::process::Child,
    /// Client for it.
    pub client: Client,
    _database: Option<Arc<TestDatabase>>,
}

impl ChildServer {
    /// Starts `binary serve` over `data_dir` on a free loopback port and waits until it answers.
    /// On PostgreSQL it also gets `--database-url` of the directory's database and
    /// [`TEST_MASTER_KEY`].
    pub fn start(binary: &str, data_dir: &Path) -> ChildServer {
        ChildServer::start_with(binary, data_dir, &[], &[])
    }

    /// [`ChildServer::start`] with more `serve` arguments and environment variables (a
    /// `--database-url` among them replaces the backend's).
    pub fn start_with(binary: &str, data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> ChildServer {
        ChildServer::spawn(binary, data_dir, args, envs, |port| Client::new(&format!("http://127.0.0.1:{port}")))
    }

    /// [`ChildServer::start_with`] with the client `client_for` makes for the server's port (one
    /// speaking HTTPS, say); waits until `/healthz` answers 200 through it, and fails at once if
    /// the process exits meanwhile.
    pub(crate) fn spawn(
        binary: &str,
        data_dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        client_for: impl FnOnce(u16) -> Client,
    ) -> ChildServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = std::process::Command::new(binary);
        command
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("VERITRAIL_BOOTSTRAP_TOKEN", BOOTSTRAP_TOKEN)
            .env("VERITRAIL_LOG", "warn");
        let backend = if args.contains(&"--database-url") { Backend::Sqlite } else { Backend::from_env() };
        let database = backend.configure_serve(&mut command, data_dir);
        let mut child = command
            .args(args)
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let client = client_for(port);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let probe = client.agent.get(format!("{}/healthz", client.base)).call();
            if probe.is_ok_and(|reply| reply.status() == 200) {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("veritrail exited at start ({status})");
            }
            assert!(std::time::Instant::now() < deadline, "veritrail did not answer /healthz within 30 s");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        ChildServer { child, client, _database: database }
    }

    /// Sends a signal by name (`KILL`, `TERM`) and waits for the exit status.
    pub fn signal_and_wait(mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
        assert!(sent.success(), "kill -{signal} failed");
        self.child.wait().unwrap()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A valid event with a distinct id and the given action and actor.
pub fn event(id: &str, action: &str, actor: &str) -> Value {
    json!({"id": id, "action": action, "actor": {"id": actor, "type": "user"}})
}
