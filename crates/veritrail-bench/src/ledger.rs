//! `veritrail-bench ledger`: the tamper-evident ledger's own targets (issue "Tamper-evident
//! ledger"): how soon a signed checkpoint covers an acknowledged event under full ingest load,
//! inclusion-proof latency on the loaded tree, and `verify --data-dir` speed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use veritrail_model::{PrepareContext, PreparedEvent};
use veritrail_server::{AlertingConfig, ServerConfig};
use veritrail_store::Store;
use veritrail_store_sqlite::SqliteStore;

use crate::events::Generator;
use crate::stats::{self, CpuSnapshot, median, min_max};
use crate::vt::{VtServer, agent};

/// How often the checkpoint is polled while loading. A checkpoint counts as seen when the poll's
/// answer arrives, so the measured lag is an upper bound, too high by up to this much plus one
/// request: against a 1 s target, a 10 ms poll was a whole percentile of error.
const CHECKPOINT_POLL: Duration = Duration::from_millis(2);

/// Figures of one ledger run.
pub struct LedgerFigures {
    /// Events loaded.
    pub events: u64,
    /// Ack → first checkpoint covering it, p50 / p99 / max, ms.
    pub checkpoint_lag_ms: (f64, f64, f64),
    /// Inclusion proof round trips, p50 / p99, ms, and how many.
    pub inclusion_ms: (f64, f64, usize),
    /// `verify_data_dir` records per second, and records checked.
    pub verify: (f64, u64),
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn checkpoint_size(agent: &ureq::Agent, base: &str, auth: &str) -> Result<u64> {
    let text = agent
        .get(format!("{base}/v1/ledger/checkpoint"))
        .header("authorization", auth)
        .call()?
        .body_mut()
        .read_to_string()?;
    match text.lines().nth(1).and_then(|line| line.parse::<u64>().ok()) {
        Some(size) => Ok(size),
        None => bail!("not a checkpoint: {text}"),
    }
}

/// Runs the ledger benchmarks over `events` generated events in a fresh data dir under `work`.
pub fn run(events: u64, clients: usize, batch: usize, work: &std::path::Path) -> Result<LedgerFigures> {
    let dir = tempfile::tempdir_in(work)?;
    let mut server = VtServer::start(dir.path())?;
    let key = server.create_tenant("bench-ledger")?;
    let auth = format!("Bearer {key}");
    let base = server.base.clone();
    let generator = Generator::new(7, events, jiff::Timestamp::now());
    let mut bodies = Vec::new();
    let mut next = 0u64;
    while next < events {
        let end = (next + batch as u64).min(events);
        let mut body = String::new();
        for i in next..end {
            body.push_str(&generator.event(i).json);
            body.push('\n');
        }
        bodies.push(body.into_bytes());
        next = end;
    }
    println!(
        "== ledger: {events} events over HTTP, checkpoint lag sampled every {} ms ==",
        CHECKPOINT_POLL.as_millis()
    );

    // Acks: (when, highest seq acknowledged by that response).
    let acks: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let bodies = Arc::new(bodies);
    let cursor = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..clients {
        let (acks, bodies, cursor, base, auth) =
            (acks.clone(), bodies.clone(), cursor.clone(), base.clone(), auth.clone());
        threads.push(std::thread::spawn(move || -> Result<()> {
            let agent = agent(1);
            loop {
                let i = cursor.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(body) = bodies.get(i) else { return Ok(()) };
                let mut response = agent
                    .post(format!("{base}/v1/events"))
                    .header("authorization", &auth)
                    .header("content-type", "application/x-ndjson")
                    .send(body.as_slice())?;
                let at = Instant::now();
                let text = response.body_mut().read_to_string()?;
                let value: serde_json::Value = serde_json::from_str(&text)?;
                let max = value["events"].as_array().into_iter().flatten().filter_map(|e| e["seq"].as_u64()).max();
                if let Some(max) = max {
                    acks.lock().unwrap_or_else(|p| p.into_inner()).push((at, max));
                }
            }
        }));
    }
    // Checkpoints: (when first seen, size).
    let poller = {
        let (done, base, auth) = (done.clone(), base.clone(), auth.clone());
        std::thread::spawn(move || -> Result<Vec<(Instant, u64)>> {
            let agent = agent(1);
            let mut seen = Vec::new();
            let mut last = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let size = checkpoint_size(&agent, &base, &auth)?;
                if size > last {
                    seen.push((Instant::now(), size));
                    last = size;
                }
                std::thread::sleep(CHECKPOINT_POLL);
            }
            // Until the last acknowledged events are covered too.
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let size = checkpoint_size(&agent, &base, &auth)?;
                if size > last {
                    seen.push((Instant::now(), size));
                    last = size;
                }
                std::thread::sleep(CHECKPOINT_POLL);
                if seen.len() > 1 && Instant::now() > seen[seen.len() - 1].0 + Duration::from_millis(2500) {
                    break;
                }
            }
            Ok(seen)
        })
    };
    let started = Instant::now();
    for thread in threads {
        thread.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let checkpoints = poller.join().map_err(|_| anyhow::anyhow!("poller panicked"))??;
    let acks = acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut lags = Vec::new();
    for (at, seq) in &acks {
        if let Some((seen, _)) = checkpoints.iter().find(|(_, size)| *size > *seq) {
            lags.push(seen.saturating_duration_since(*at).as_secs_f64() * 1000.0);
        }
    }
    lags.sort_by(f64::total_cmp);
    println!(
        "ingested at {:.0} events/s; {} of {} acknowledged batches covered by a checkpoint",
        events as f64 / ingest_secs,
        lags.len(),
        acks.len()
    );
    let checkpoint_lag_ms = (percentile(&lags, 0.5), percentile(&lags, 0.99), lags.last().copied().unwrap_or(f64::NAN));

    // Inclusion proofs against the latest checkpoint.
    let agent = agent(1);
    let tree_size = checkpoint_size(&agent, &base, &auth)?;
    let mut latencies = Vec::new();
    let count = 2000usize;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let seq = state % tree_size;
        let began = Instant::now();
        let mut response = agent
            .get(format!("{base}/v1/ledger/proof/inclusion?seq={seq}&tree_size={tree_size}"))
            .header("authorization", &auth)
            .call()?;
        let _ = response.body_mut().read_to_vec()?;
        if response.status().as_u16() != 200 {
            bail!("inclusion proof: status {}", response.status());
        }
        latencies.push(began.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let inclusion_ms = (percentile(&latencies, 0.5), percentile(&latencies, 0.99), count);
    println!("inclusion proofs on a {tree_size}-leaf tree: p50 {:.3} ms, p99 {:.3} ms", inclusion_ms.0, inclusion_ms.1);

    server.stop();
    let began = Instant::now();
    let report = veritrail_store_sqlite::verify::verify_data_dir(dir.path(), None)
        .map_err(|e| anyhow::anyhow!("verify failed: {e}"))?;
    let secs = began.elapsed().as_secs_f64();
    let records = report.records();
    println!("verify --data-dir: {records} records in {secs:.2} s ({:.0} records/s)", records as f64 / secs);
    Ok(LedgerFigures { events, checkpoint_lag_ms, inclusion_ms, verify: (records as f64 / secs, records) })
}

/// The markdown table of a ledger run.
pub fn table(figures: &LedgerFigures) -> String {
    let (p50, p99, max) = figures.checkpoint_lag_ms;
    format!(
        "| ledger benchmark ({} events) | figure | target | verdict |\n|---|---|---|---|\n\
         | ack → first signed checkpoint covering it, under full ingest load | p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms | p99 ≤ 1 s | {} |\n\
         | inclusion proof over HTTP (random leaf, {} requests) | p50 {:.2} ms, p99 {:.2} ms | p99 ≤ 2 ms (on 10M leaves) | {} at this size |\n\
         | `verify --data-dir` (one thread reading, workers checking) | {:.0} records/s over {} records | ≥ 1,000,000/s | {} |\n",
        figures.events,
        if p99 <= 1000.0 { "**met**" } else { "**not met**" },
        figures.inclusion_ms.2,
        figures.inclusion_ms.0,
        figures.inclusion_ms.1,
        if figures.inclusion_ms.1 <= 2.0 { "**met**" } else { "**not met**" },
        figures.verify.0,
        figures.verify.1,
        if figures.verify.0 >= 1_000_000.0 { "**met**" } else { "**not met**" },
    )
}

/// The file in which a directly loaded data directory describes its load, so a later run
/// (`--data-dir`) can reuse it, or finish it if it was interrupted.
const MANIFEST: &str = "bench-ledger.json";

/// What [`MANIFEST`] holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Manifest {
    /// The tenant id.
    tenant: String,
    /// Records the tenant had before the load (its own first audit events).
    base: u64,
    /// Generated events to append.
    events: u64,
    /// All appended, indexed and covered by a signed checkpoint.
    complete: bool,
}

/// A data directory whose tenant's ledger was loaded straight through `SqliteStore::append`.
#[derive(Debug, Clone)]
pub struct DirectLoad {
    /// The tenant id.
    pub tenant: String,
    /// An admin API key of the tenant, minted for this run if asked for.
    pub key: Option<String>,
    /// Generated events appended (the tree also holds the tenant's own first records).
    pub events: u64,
}

/// Prepares generated events as the ingest path does (parse, validate, seal members with
/// commitments), with deterministic salts.
fn prepare_events(generator: &Generator, range: std::ops::Range<u64>) -> Result<Vec<PreparedEvent>> {
    let limits = veritrail_model::Limits::default();
    let now = jiff::Timestamp::now();
    let mut prepared = Vec::with_capacity((range.end - range.start) as usize);
    for index in range {
        let event = generator.event(index);
        let parsed = veritrail_model::parse_event(event.json.as_bytes(), &limits)
            .map_err(|e| anyhow::anyhow!("generated event {index} is invalid: {e:?}"))?;
        let mut rng = crate::events::Rng::new(index ^ 0x5eed_5a17);
        let mut salt = || {
            let mut salt = [0u8; 32];
            for chunk in salt.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            salt
        };
        let context = PrepareContext { id_if_missing: String::new(), now, salt: &mut salt };
        prepared.push(parsed.prepare(context).map_err(|e| anyhow::anyhow!("cannot prepare event {index}: {e}"))?);
    }
    Ok(prepared)
}

fn store_error(what: &str) -> impl FnOnce(veritrail_store::StoreError) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("{what}: {e}")
}

/// Loads `events` generated events into a single tenant's ledger in `dir` without HTTP: the
/// tenant (with its signing key) is created by the real server, then the events are prepared on
/// a few threads and appended straight into `SqliteStore` in batches of `batch` (durable group
/// commits, tree maintained, indexed), and finally the server runs once more so a signed
/// checkpoint covers the whole tree. A directory holding such a load of the same size is reused,
/// and an interrupted load is finished (the events are deterministic). With `key`, mints a fresh
/// admin API key for the tenant.
pub fn load_direct(dir: &Path, events: u64, batch: usize, key: bool) -> Result<DirectLoad> {
    let manifest_path = dir.join(MANIFEST);
    let mut manifest = if manifest_path.is_file() {
        let manifest: Manifest = serde_json::from_slice(&std::fs::read(&manifest_path)?)?;
        if manifest.events != events {
            bail!(
                "{} holds a load of {} events, not {events}: delete it or pass --events {}",
                dir.display(),
                manifest.events,
                manifest.events
            );
        }
        manifest
    } else {
        if dir.join(veritrail_store_sqlite::LEDGER_FILE).exists() {
            bail!("{} holds a ledger that this benchmark did not load", dir.display());
        }
        std::fs::create_dir_all(dir)?;
        let mut server = VtServer::start(dir)?;
        let key = server.create_tenant("bench-ledger")?;
        let auth = format!("Bearer {key}");
        let origin = checkpoint_origin(&agent(1), &server.base, &auth)?;
        let base = checkpoint_size(&agent(1), &server.base, &auth)?;
        server.stop();
        let tenant = origin.rsplit('/').next().unwrap_or_default().to_string();
        let manifest = Manifest { tenant, base, events, complete: false };
        std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest)?)?;
        manifest
    };

    let tenant = manifest.tenant.clone();
    if manifest.complete && !key {
        println!("reusing {} ({events} events, tenant {tenant})", dir.display());
        return Ok(DirectLoad { tenant, key: None, events });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let store = SqliteStore::open(dir).map_err(store_error("cannot open store"))?;
    if !manifest.complete {
        let size = runtime.block_on(store.tree_head(&tenant)).map_err(store_error("tree head"))?.size;
        let first = size.saturating_sub(manifest.base);
        if first > 0 {
            println!("resuming the load at event {first}");
        }
        append_generated(&runtime, &store, &tenant, first..events, batch)?;
    }
    // However long the indexer takes to catch up.
    let started = Instant::now();
    while store.stats().index.lag_events > 0 {
        std::thread::sleep(Duration::from_millis(200));
    }
    if started.elapsed() > Duration::from_secs(1) {
        println!("index caught up after another {:.0} s", started.elapsed().as_secs_f64());
    }
    let minted = mint_key(&runtime, &store, &tenant)?;
    runtime.block_on(store.shutdown()).map_err(store_error("shutdown"))?;
    drop(store);

    if !manifest.complete {
        // A signed checkpoint over the whole tree (the server signs one when it starts).
        let mut server = VtServer::start(dir)?;
        let auth = format!("Bearer {minted}");
        let deadline = Instant::now() + Duration::from_secs(600);
        while checkpoint_size(&agent(1), &server.base, &auth)? < manifest.base + events {
            if Instant::now() > deadline {
                bail!("no checkpoint covering the load after 600 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        server.stop();
        manifest.complete = true;
        std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest)?)?;
    } else {
        println!("reusing {} ({events} events, tenant {tenant})", dir.display());
    }
    Ok(DirectLoad { tenant, key: key.then_some(minted), events })
}

/// Appends generated events `range` to `tenant`, from three threads: while one waits for its
/// group commit, the others prepare.
fn append_generated(
    runtime: &tokio::runtime::Runtime,
    store: &SqliteStore,
    tenant: &str,
    range: std::ops::Range<u64>,
    batch: usize,
) -> Result<()> {
    let events = range.end;
    println!("== loading events {}..{events} straight into SqliteStore (batches of {batch}, no HTTP) ==", range.start);
    let generator = Generator::new(7, events, jiff::Timestamp::now());
    let next = AtomicU64::new(range.start);
    let done = AtomicU64::new(range.start);
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let mut workers = Vec::new();
        for _ in 0..3 {
            workers.push(scope.spawn(|| -> Result<()> {
                loop {
                    let first = next.fetch_add(batch as u64, Ordering::Relaxed);
                    if first >= events {
                        return Ok(());
                    }
                    let end = (first + batch as u64).min(events);
                    let prepared = prepare_events(&generator, first..end)?;
                    runtime.block_on(store.append(tenant, prepared)).map_err(store_error("append"))?;
                    let total = done.fetch_add(end - first, Ordering::Relaxed) + (end - first);
                    let step = 1_000_000u64.min(events.div_ceil(4).max(1));
                    if total / step != (total - (end - first)) / step {
                        let secs = started.elapsed().as_secs_f64();
                        let rate = (total - range.start) as f64 / secs;
                        println!("  {total} events appended after {secs:.0} s ({rate:.0}/s)");
                    }
                }
            }));
        }
        for worker in workers {
            worker.join().map_err(|_| anyhow::anyhow!("loader panicked"))??;
        }
        Ok(())
    })
}

/// Mints an admin API key for `tenant` straight into the store, as `POST /v1/api-keys` would.
fn mint_key(runtime: &tokio::runtime::Runtime, store: &SqliteStore, tenant: &str) -> Result<String> {
    let sealed = runtime
        .block_on(store.setting("auth.pepper"))
        .map_err(store_error("pepper"))?
        .ok_or_else(|| anyhow::anyhow!("the data dir has no API-key pepper"))?;
    let pepper = match store.privacy().open_secret("auth.pepper", &String::from_utf8_lossy(&sealed)) {
        Ok(Some(clear)) => clear.to_vec(),
        Ok(None) => sealed,
        Err(error) => anyhow::bail!("cannot open the API-key pepper: {error}"),
    };
    let minted = veritrail_server::auth::mint_key(&pepper).map_err(|e| anyhow::anyhow!("mint key: {}", e.message))?;
    let record = veritrail_store::ApiKeyRecord {
        id: minted.id.clone(),
        tenant: tenant.to_string(),
        name: "bench".into(),
        secret_hash: minted.secret_hash,
        scopes: vec!["admin".to_string()],
        created_at: jiff::Timestamp::now(),
        expires_at: None,
        revoked_at: None,
    };
    runtime.block_on(store.create_api_key(record)).map_err(store_error("create API key"))?;
    Ok(minted.token)
}

/// The origin line of the tenant's latest checkpoint (`<server origin>/<tenant>`).
fn checkpoint_origin(agent: &ureq::Agent, base: &str, auth: &str) -> Result<String> {
    let text = agent
        .get(format!("{base}/v1/ledger/checkpoint"))
        .header("authorization", auth)
        .call()?
        .body_mut()
        .read_to_string()?;
    match text.lines().next() {
        Some(origin) if origin.contains('/') => Ok(origin.to_string()),
        _ => bail!("not a checkpoint: {text}"),
    }
}

/// Where a benchmark's data directory lives: `--data-dir` (kept), or a temporary one under the
/// work directory (deleted at the end).
pub enum DataDir {
    /// Given by the user; kept for later runs.
    Kept(PathBuf),
    /// Deleted when dropped.
    Temporary(tempfile::TempDir),
}

impl DataDir {
    /// `given`, or a fresh temporary directory under `work`.
    pub fn new(given: Option<&Path>, work: &Path) -> Result<DataDir> {
        Ok(match given {
            Some(dir) => DataDir::Kept(dir.to_path_buf()),
            None => DataDir::Temporary(tempfile::Builder::new().prefix("veritrail-bench-ledger-").tempdir_in(work)?),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        match self {
            DataDir::Kept(dir) => dir,
            DataDir::Temporary(dir) => dir.path(),
        }
    }
}

/// One run of `verify_data_dir`.
#[derive(Debug, Clone, Copy)]
pub struct VerifyRun {
    /// Records verified per second of wall-clock time.
    pub rate: f64,
    /// CPU time the verification used per record, µs (all its threads).
    pub cpu_us_per_record: f64,
    /// Cores' worth of CPU that other processes used meanwhile (0–2 here).
    pub others_cores: f64,
}

/// Runs `verify_data_dir` over `dir` `runs` times.
pub fn run_verify(dir: &Path, runs: usize) -> Result<Vec<VerifyRun>> {
    let mut results = Vec::with_capacity(runs);
    for run in 0..runs {
        let before = CpuSnapshot::take(None);
        let began = Instant::now();
        let report = veritrail_store_sqlite::verify::verify_data_dir(dir, None)
            .map_err(|e| anyhow::anyhow!("verify failed: {e}"))?;
        let secs = began.elapsed().as_secs_f64();
        let after = CpuSnapshot::take(None);
        let records = report.records();
        let cpu = after.process - before.process;
        let others = ((after.machine_busy - before.machine_busy) - cpu).max(0.0) / secs;
        let result = VerifyRun {
            rate: records as f64 / secs,
            cpu_us_per_record: cpu * 1e6 / records.max(1) as f64,
            others_cores: others,
        };
        println!(
            "verify run {run}: {records} records, {} checkpoints, {} merkle nodes in {secs:.3} s: {:.0} records/s; \
             {cpu:.2} CPU-s ({:.2} µs/record); other processes used {others:.2} cores",
            report.checkpoints(),
            report.merkle_nodes(),
            result.rate,
            result.cpu_us_per_record,
        );
        results.push(result);
    }
    let rates: Vec<f64> = results.iter().map(|r| r.rate).collect();
    let cpu: Vec<f64> = results.iter().map(|r| r.cpu_us_per_record).collect();
    let others: Vec<f64> = results.iter().map(|r| r.others_cores).collect();
    let (low, high) = min_max(&rates);
    println!(
        "verify --data-dir: median {:.0} records/s [{low:.0}–{high:.0}] over {runs} runs; median {:.2} CPU-µs per \
         record; other processes used {:.2} cores (median)",
        median(&rates),
        median(&cpu),
        median(&others)
    );
    Ok(results)
}

/// Latencies of one kind of proof in one round.
#[derive(Debug, Clone, Copy)]
pub struct ProofRound {
    /// Median, ms.
    pub p50: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// Slowest, ms.
    pub max: f64,
}

impl ProofRound {
    fn of(samples: &[f64]) -> ProofRound {
        ProofRound {
            p50: stats::percentile(samples, 50.0),
            p99: stats::percentile(samples, 99.0),
            max: min_max(samples).1,
        }
    }
}

/// Waits until the bench process (the server in it) has used less than a tenth of a core for
/// two seconds: after a start on a big ledger, background work (WAL checkpoints, the index
/// catching up) would share the two cores with the proofs.
fn wait_quiet(limit: Duration) -> Result<()> {
    let started = Instant::now();
    let mut quiet_since = Instant::now();
    let mut last = CpuSnapshot::take(None).process;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = CpuSnapshot::take(None).process;
        if now - last > 0.025 {
            quiet_since = Instant::now();
        }
        last = now;
        if quiet_since.elapsed() >= Duration::from_secs(2) {
            break;
        }
        if started.elapsed() > limit {
            bail!("server still busy after {limit:?}");
        }
    }
    if started.elapsed() > Duration::from_secs(3) {
        println!("server quiet after {:.0} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Starts the real server on a loaded data dir and times `count` inclusion proofs (random
/// leaves) and `count` consistency proofs (random first size, the checkpoint's size second) per
/// round, over one keep-alive connection, against the latest checkpoint.
pub fn run_proofs(
    dir: &Path,
    loaded: &DirectLoad,
    count: usize,
    rounds: usize,
) -> Result<Vec<(ProofRound, ProofRound)>> {
    // The rule engine off: on every start it replays the events received within its horizon of
    // the last one, which for a directly loaded ledger is all of them (minutes of both cores).
    let config = ServerConfig {
        alerting: AlertingConfig { enabled: false, ..AlertingConfig::default() },
        ..ServerConfig::default()
    };
    let server = VtServer::start_with(dir, config)?;
    server.wait_indexed(Duration::from_secs(3600))?;
    wait_quiet(Duration::from_secs(3600))?;
    let auth = format!("Bearer {}", loaded.key.as_deref().unwrap_or_default());
    let agent = agent(1);
    let tree_size = checkpoint_size(&agent, &server.base, &auth)?;
    println!(
        "== proofs over HTTP on the {tree_size}-leaf tree of tenant {} ({} generated events): {count} inclusion + \
         {count} consistency per round ==",
        loaded.tenant, loaded.events
    );
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut random = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    let time = |url: String| -> Result<f64> {
        let began = Instant::now();
        let mut response = agent.get(url).header("authorization", &auth).call()?;
        let body = response.body_mut().read_to_vec()?;
        let elapsed = began.elapsed().as_secs_f64() * 1000.0;
        if response.status().as_u16() != 200 {
            bail!("proof: status {}: {}", response.status(), String::from_utf8_lossy(&body));
        }
        Ok(elapsed)
    };
    // Warm-up: the first requests open reader connections.
    for _ in 0..20 {
        time(format!("{}/v1/ledger/proof/inclusion?seq={}&tree_size={tree_size}", server.base, random(tree_size)))?;
    }
    let mut results = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let (before, began) = (CpuSnapshot::take(None), Instant::now());
        let mut inclusion = Vec::with_capacity(count);
        for _ in 0..count {
            let seq = random(tree_size);
            inclusion.push(time(format!("{}/v1/ledger/proof/inclusion?seq={seq}&tree_size={tree_size}", server.base))?);
        }
        let mut consistency = Vec::with_capacity(count);
        for _ in 0..count {
            let first = 1 + random(tree_size - 1);
            consistency
                .push(time(format!("{}/v1/ledger/proof/consistency?first={first}&second={tree_size}", server.base))?);
        }
        let after = CpuSnapshot::take(None);
        let own = after.process - before.process;
        let others = ((after.machine_busy - before.machine_busy) - own).max(0.0) / began.elapsed().as_secs_f64();
        let (inclusion, consistency) = (ProofRound::of(&inclusion), ProofRound::of(&consistency));
        println!(
            "round {round}: inclusion p50 {:.3} ms, p99 {:.3} ms, max {:.2} ms; consistency p50 {:.3} ms, p99 {:.3} ms, \
             max {:.2} ms; other processes used {others:.2} cores",
            inclusion.p50, inclusion.p99, inclusion.max, consistency.p50, consistency.p99, consistency.max
        );
        results.push((inclusion, consistency));
    }
    let pick = |f: &dyn Fn(&(ProofRound, ProofRound)) -> f64| {
        let values: Vec<f64> = results.iter().map(f).collect();
        let (low, high) = min_max(&values);
        format!("{:.3} ms [{low:.3}–{high:.3}]", median(&values))
    };
    println!(
        "proofs on {tree_size} leaves, median of {rounds} rounds: inclusion p50 {}, p99 {}; consistency p50 {}, p99 {}",
        pick(&|r| r.0.p50),
        pick(&|r| r.0.p99),
        pick(&|r| r.1.p50),
        pick(&|r| r.1.p99)
    );
    Ok(results)
}
