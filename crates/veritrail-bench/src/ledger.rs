//! `veritrail-bench ledger`: the tamper-evident ledger's own targets (issue "Tamper-evident
//! ledger"): how soon a signed checkpoint covers an acknowledged event under full ingest load,
//! inclusion-proof latency on the loaded tree, and `verify --data-dir` speed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::events::Generator;
use crate::vt::{VtServer, agent};

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
    println!("== ledger: {events} events over HTTP, checkpoint lag sampled every 10 ms ==");

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
                std::thread::sleep(Duration::from_millis(10));
            }
            // Until the last acknowledged events are covered too.
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let size = checkpoint_size(&agent, &base, &auth)?;
                if size > last {
                    seen.push((Instant::now(), size));
                    last = size;
                }
                std::thread::sleep(Duration::from_millis(10));
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
