//! Veritrail under test: the real server (`veritrail serve` minus flag parsing) in this process on
//! its own runtime (2 workers, as `veritrail serve` has on this box) over a fresh data directory,
//! and the blocking HTTP clients (ureq, one keep-alive connection per client thread) that load it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio_util::sync::CancellationToken;
use veritrail_server::{Server, ServerConfig};
use veritrail_store::{AlertStore, Store};
use veritrail_store_sqlite::SqliteStore;

use crate::stats::thread_cpu;

/// The bootstrap token of the benchmark server.
pub const BOOTSTRAP_TOKEN: &str = "bench-bootstrap-token-0123456789";

/// A running in-process server.
pub struct VtServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl VtServer {
    /// Starts a server over `data_dir` (created if needed).
    pub fn start(data_dir: &Path) -> Result<VtServer> {
        VtServer::start_with(data_dir, ServerConfig::default())
    }

    /// [`VtServer::start`] with `config` (its bootstrap token replaced by the benchmark's).
    pub fn start_with(data_dir: &Path, config: ServerConfig) -> Result<VtServer> {
        let shutdown = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<std::net::SocketAddr, String>>();
        let dir = data_dir.to_path_buf();
        let token = shutdown.clone();
        let thread = std::thread::Builder::new().name("vt-server-main".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(64)
                .thread_name("vt-server")
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot build runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let store = match SqliteStore::open(&dir) {
                    Ok(store) => store,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot open store: {e}")));
                        return;
                    }
                };
                let alerts: Arc<dyn AlertStore> = Arc::new(store.alert_store());
                let access: Arc<dyn veritrail_store::AccessStore> = Arc::new(store.access_store());
                let store: Arc<dyn Store> = Arc::new(store);
                let config = ServerConfig { bootstrap_token: Some(BOOTSTRAP_TOKEN.into()), ..config };
                let server = match Server::start(store, alerts, access, config).await {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start server: {}", e.message)));
                        return;
                    }
                };
                let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                    Ok(listener) => listener,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot listen: {e}")));
                        return;
                    }
                };
                match listener.local_addr() {
                    Ok(addr) => {
                        let _ = ready_tx.send(Ok(addr));
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("no local address: {e}")));
                        return;
                    }
                }
                if let Err(e) = veritrail_server::serve(server, listener, token).await {
                    eprintln!("bench: veritrail server failed: {e}");
                }
            });
        })?;
        let addr = ready_rx.recv().map_err(|_| anyhow!("veritrail server thread died"))?.map_err(|e| anyhow!(e))?;
        Ok(VtServer { base: format!("http://{addr}"), shutdown, thread: Some(thread) })
    }

    /// Creates a tenant; returns its admin API key.
    pub fn create_tenant(&self, name: &str) -> Result<String> {
        Ok(create_tenant_at(&self.base, name)?.1)
    }

    /// A numeric figure from `GET /metrics`.
    pub fn metric(&self, name: &str) -> Result<f64> {
        metric_at(&self.base, name)
    }

    /// Waits until every committed event is visible to queries (`veritrail_index_lag_events 0`);
    /// returns how long that took.
    pub fn wait_indexed(&self, limit: Duration) -> Result<Duration> {
        wait_indexed_at(&self.base, limit)
    }

    /// Stops the server (it commits and closes the store) and waits for it.
    pub fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for VtServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// [`VtServer::wait_indexed`] for the server at `base`.
pub fn wait_indexed_at(base: &str, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    loop {
        if metric_at(base, "veritrail_index_lag_events")? <= 0.0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("index still lagging after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Creates a tenant on the server at `base` (with the benchmark's bootstrap token); returns its
/// id and admin API key.
pub fn create_tenant_at(base: &str, name: &str) -> Result<(String, String)> {
    let agent = agent(1);
    let body = serde_json::json!({"name": name}).to_string();
    let mut response = agent
        .post(format!("{base}/v1/tenants"))
        .header("authorization", format!("Bearer {BOOTSTRAP_TOKEN}"))
        .header("content-type", "application/json")
        .send(body.as_bytes())?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string()?;
    if status != 201 {
        bail!("create tenant: status {status}: {text}");
    }
    let value: serde_json::Value = serde_json::from_str(&text)?;
    let field = |name: &str| {
        value[name].as_str().map(str::to_string).ok_or_else(|| anyhow!("create tenant: no {name} in {text}"))
    };
    Ok((field("tenant")?, field("api_key")?))
}

/// A numeric figure from `GET /metrics` of the server at `base`.
pub fn metric_at(base: &str, name: &str) -> Result<f64> {
    let text = agent(1).get(format!("{base}/metrics")).call()?.body_mut().read_to_string()?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(name)
            && let Some(value) = rest.strip_prefix(' ')
        {
            return value.trim().parse::<f64>().with_context(|| format!("metric {name}: {value}"));
        }
    }
    bail!("metric {name} not found")
}

/// A blocking HTTP agent that keeps `connections` keep-alive connections.
pub fn agent(connections: usize) -> ureq::Agent {
    // Every phase is bounded but the name lookup: ureq resolves at every request, and a lookup
    // with a deadline runs on a thread of its own — a thread created per request, in the
    // process that also runs the in-process server, whose threads then queue on the address
    // space lock behind every thread start (`mmap`/`mprotect`/`munmap` of its stack).
    let limit = Some(Duration::from_secs(120));
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(limit)
        .timeout_send_request(limit)
        .timeout_send_body(limit)
        .timeout_recv_response(limit)
        .timeout_recv_body(limit)
        .max_idle_connections_per_host(connections)
        .build()
        .into()
}

/// What a set of client threads did.
#[derive(Debug, Default)]
pub struct ClientRun {
    /// Wall-clock time from start to the last answer.
    pub elapsed: Duration,
    /// CPU seconds the client threads used.
    pub client_cpu: f64,
    /// 503 answers that were retried.
    pub retries: u64,
    /// [`ingest_routes`]: per route, the time from start until its last client finished.
    pub route_elapsed: Vec<Duration>,
}

/// Posts every body in `bodies` (NDJSON batches) from `clients` threads, each on one keep-alive
/// connection, as fast as acknowledgements come back.
pub fn ingest(base: &str, key: &str, bodies: &[Vec<u8>], clients: usize) -> Result<ClientRun> {
    ingest_to(&[base.to_string()], key, bodies, clients)
}

/// [`ingest`] into several nodes sharing one store: client `i` posts to `bases[i % bases.len()]`,
/// all clients taking the next body from one queue.
pub fn ingest_to(bases: &[String], key: &str, bodies: &[Vec<u8>], clients: usize) -> Result<ClientRun> {
    let routes: Vec<Route> =
        bases.iter().map(|base| Route { base: base.clone(), key: key.to_string(), queue: 0 }).collect();
    let queue: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    ingest_routes(&routes, &[queue], clients)
}

/// Where a client posts: the node at `base`, with the API key `key` (so into its tenant), the
/// bodies of `queues[queue]`.
#[derive(Debug, Clone)]
pub struct Route {
    pub base: String,
    pub key: String,
    pub queue: usize,
}

/// Posts every body of every queue: client `i` takes route `routes[i % routes.len()]` and the
/// next body of that route's queue, on one keep-alive connection, as fast as acknowledgements
/// come back. Every queue needs a route and every route a client. `ClientRun::route_elapsed`
/// gives, per route, when its last client finished.
pub fn ingest_routes(routes: &[Route], queues: &[Vec<&[u8]>], clients: usize) -> Result<ClientRun> {
    if routes.is_empty() {
        bail!("ingest: no server to post to");
    }
    if clients < routes.len() {
        bail!("ingest: {clients} clients for {} routes: a route without a client", routes.len());
    }
    for q in 0..queues.len() {
        if !routes.iter().any(|r| r.queue == q) {
            bail!("ingest: queue {q} has no route");
        }
    }
    if let Some(route) = routes.iter().find(|r| r.queue >= queues.len()) {
        bail!("ingest: route to {} names queue {} of {}", route.base, route.queue, queues.len());
    }
    let next: Vec<AtomicUsize> = queues.iter().map(|_| AtomicUsize::new(0)).collect();
    let urls: Vec<String> = routes.iter().map(|r| format!("{}/v1/events", r.base)).collect();
    let auths: Vec<String> = routes.iter().map(|r| format!("Bearer {}", r.key)).collect();
    let started = Instant::now();
    let results: Vec<Result<(f64, u64, Duration)>> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for i in 0..clients {
            let r = i % routes.len();
            let (next, url, auth) = (&next[routes[r].queue], &urls[r], &auths[r]);
            let bodies = &queues[routes[r].queue];
            let handle = std::thread::Builder::new().name(format!("bench-http-{i}")).spawn_scoped(
                scope,
                move || -> Result<(f64, u64, Duration)> {
                    let cpu0 = thread_cpu();
                    let agent = agent(1);
                    let mut retries = 0u64;
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = bodies.get(index) else { break };
                        let mut attempts = 0;
                        loop {
                            let mut response = agent
                                .post(url.as_str())
                                .header("authorization", auth.as_str())
                                .header("content-type", "application/x-ndjson")
                                .send(*body)?;
                            let status = response.status().as_u16();
                            let reply = response.body_mut().with_config().limit(64 << 20).read_to_vec()?;
                            if status == 201 {
                                break;
                            }
                            attempts += 1;
                            if (status == 503 || status == 429) && attempts < 1000 {
                                retries += 1;
                                std::thread::sleep(Duration::from_millis(20));
                                continue;
                            }
                            bail!(
                                "ingest: status {status}: {}",
                                String::from_utf8_lossy(&reply[..reply.len().min(300)])
                            );
                        }
                    }
                    Ok((thread_cpu() - cpu0, retries, started.elapsed()))
                },
            );
            handles.push(handle);
        }
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|_| Err(anyhow!("client thread panicked"))),
                Err(e) => Err(anyhow!("cannot spawn client thread: {e}")),
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut run = ClientRun { elapsed, route_elapsed: vec![Duration::ZERO; routes.len()], ..ClientRun::default() };
    for (i, result) in results.into_iter().enumerate() {
        let (cpu, retries, finished) = result?;
        run.client_cpu += cpu;
        run.retries += retries;
        let lane = &mut run.route_elapsed[i % routes.len()];
        *lane = (*lane).max(finished);
    }
    Ok(run)
}

/// `(event index, latency in ms)` pairs.
pub type Samples = Vec<(usize, f64)>;

/// An open-loop schedule: event `i` is due at `start + i / rate`; connection `k` of `connections`
/// sends events `k, k + connections, ...`. Latency is measured from the *scheduled* time to the
/// acknowledgement, so a slow answer that delays later sends is charged to them too (no
/// coordinated omission).
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Events per second.
    pub rate: f64,
    /// Concurrent connections.
    pub connections: usize,
    /// Events sent before measuring starts.
    pub warmup: usize,
}

/// Runs `schedule` over `count` events; `send(connection_state, i)` sends event `i`. Returns
/// `(event index, latency in ms)` after warmup, in schedule order, and the client CPU.
pub fn open_loop<S, I, F>(schedule: Schedule, count: usize, init: I, send: F) -> Result<(Samples, ClientRun)>
where
    I: Fn(usize) -> Result<S> + Sync,
    F: Fn(&mut S, usize) -> Result<()> + Sync,
{
    let start = Instant::now() + Duration::from_millis(200);
    let period = Duration::from_secs_f64(1.0 / schedule.rate);
    let results: Vec<Result<(Samples, f64)>> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for k in 0..schedule.connections {
            let (init, send) = (&init, &send);
            let handle = std::thread::Builder::new().name(format!("bench-lat-{k}")).spawn_scoped(
                scope,
                move || -> Result<(Samples, f64)> {
                    let mut state = init(k)?;
                    let cpu0 = thread_cpu();
                    let mut latencies = Vec::with_capacity(count / schedule.connections + 1);
                    let mut i = k;
                    while i < count {
                        let due = start + period * i as u32;
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        send(&mut state, i)?;
                        if i >= schedule.warmup {
                            latencies.push((i, crate::stats::ms(Instant::now().saturating_duration_since(due))));
                        }
                        i += schedule.connections;
                    }
                    Ok((latencies, thread_cpu() - cpu0))
                },
            );
            handles.push(handle);
        }
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|_| Err(anyhow!("client thread panicked"))),
                Err(e) => Err(anyhow!("cannot spawn client thread: {e}")),
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let mut all = Vec::with_capacity(count);
    let mut run = ClientRun { elapsed, ..ClientRun::default() };
    for result in results {
        let (latencies, cpu) = result?;
        all.extend(latencies);
        run.client_cpu += cpu;
    }
    all.sort_by_key(|(i, _)| *i);
    Ok((all, run))
}

/// Posts one event body and checks for 201.
pub fn post_one(agent: &ureq::Agent, url: &str, auth: &str, body: &[u8]) -> Result<()> {
    let mut response =
        agent.post(url).header("authorization", auth).header("content-type", "application/json").send(body)?;
    let status = response.status().as_u16();
    let reply = response.body_mut().read_to_vec()?;
    if status != 201 {
        bail!("single ingest: status {status}: {}", String::from_utf8_lossy(&reply[..reply.len().min(300)]));
    }
    Ok(())
}

/// Runs one query; returns its latency (ms, until the whole body is in) and the number of events.
pub fn query(agent: &ureq::Agent, base: &str, auth: &str, actor: &str) -> Result<(f64, usize)> {
    let url = format!("{base}/v1/events?actor_id={actor}&action=auth.*&limit=100");
    let started = Instant::now();
    let mut response = agent.get(&url).header("authorization", auth).call()?;
    let status = response.status().as_u16();
    let body = response.body_mut().with_config().limit(64 << 20).read_to_vec()?;
    let latency = crate::stats::ms(started.elapsed());
    if status != 200 {
        bail!("query: status {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
    }
    let value: serde_json::Value = serde_json::from_slice(&body)?;
    let count = value["events"].as_array().map(Vec::len).unwrap_or(0);
    Ok((latency, count))
}
