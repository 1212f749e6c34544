//! `cargo xtask bench alerts`: what the rule engine costs and how fast it alerts (issue 7).
//!
//! Interleaved rounds over fresh data directories: the same NDJSON load ingested by a server
//! with the engine on (the default pack, plus one probe rule) and by one with it off
//! (`alerting = false`), each at full speed from the ingest clients. While the engine-on server
//! is loaded, a probe thread sends a `bench.probe` event every 100 ms and waits for the webhook
//! of the alert citing it at a local receiver: the alert latency under full ingest load, from the
//! probe's ack to the signed webhook arriving (every alert of the load is delivered there too).
//!
//! Each round's server is the release binary as an operator runs it, `veritrail serve`, in a
//! process of its own (as in `bench postgres`). Servers used to run one after another inside
//! the benchmark's process, and then a round inherited the allocator's state from the rounds
//! before it: whether the memory freed by the previous server had been handed back to the OS
//! during the pause before the load depended on what ran in that pause (the engine's polling
//! did; an idle engine-off server did not), so engine-on rounds paid ~2 CPU-µs per event more
//! in page faults (zeroing of transparent huge pages) for memory the engine-off rounds reused.
//! A process per round starts both modes from the same state.
//!
//! The warm-up rounds (one per mode, not counted) are as large as the counted ones. On this
//! machine (a VM whose balloon device reports free pages to the host, `virtio_balloon` with
//! free page reporting) memory the guest freed a few seconds ago goes back to the host, and the
//! first write to each page of it afterwards costs a host fault: a round that needs more fresh
//! page cache than the rounds before it freed pays for it. With 20-batch warm-ups that was
//! always the first counted round, engine on (`perf`: ~1 CPU-µs per event in the ledger
//! writer's `zero_user_segments` under `pwrite`, against ~0.05 in the rounds after it), which
//! made its engine cost read ~17 % where the later rounds read 5–11 %.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use veritrail_test_support::webhook::WebhookReceiver;

use crate::backend::{Node, veritrail_binary};
use crate::stats::{
    CpuSnapshot, median, min_max, percentile, process_cpu, process_minor_faults, process_peak_rss_mb,
    process_write_bytes, threads_cpu,
};
use crate::vt::{self, agent};

/// The server's long-lived threads, by name, whose CPU the rounds report apart: where the
/// engine's cost lands (rule evaluation runs on its own thread; storing and sending alerts on
/// the async runtime; the ledger events of alerts in the writer and indexer).
const NAMED_THREADS: [(&str, &str); 4] = [
    ("veritrail-rules", "rule evaluation"),
    ("veritrail-write", "ledger writer"),
    ("veritrail-index", "indexer"),
    // `veritrail-checkpoint`, cut to the 15 characters Linux keeps of a thread's name: the
    // ledger's WAL checkpoints (not the signed ledger checkpoints).
    ("veritrail-check", "ledger WAL checkpointer"),
];

/// How often the probe sends a triggering event.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// One round of one mode.
struct Round {
    ack_rate: f64,
    /// Seconds after the last ack until the engine had evaluated every committed record.
    engine_tail: f64,
    alerts: f64,
    /// Records the engine read back from storage, having fallen behind the store's memory of
    /// its last commits.
    read_from_storage: f64,
    /// CPU-µs per event of the server's named threads ([`NAMED_THREADS`]), in that order.
    threads_cpu_per_event: [f64; NAMED_THREADS.len()],
    /// Alerts stored within 0.25 s and 1 s of their trigger's receipt (server histogram).
    within_quarter: f64,
    within_second: f64,
    /// CPU-µs per event of the server process, from the start of the load until everything is
    /// indexed (and, engine on, evaluated).
    server_cpu_per_event: f64,
    /// CPU-µs per event of the benchmark's process meanwhile (ingest clients, probe, webhook
    /// receiver).
    bench_cpu_per_event: f64,
    /// Minor page faults of the server per event over the same stretch, and its peak resident
    /// memory (MB) at the end.
    server_faults_per_event: f64,
    server_peak_rss_mb: f64,
    /// Ledger group commits per 1,000 events, and bytes the server wrote to storage per event.
    commits_per_thousand: f64,
    written_per_event: f64,
    /// Cores other processes kept busy meanwhile (the machine is shared).
    others: f64,
}

/// Runs the benchmark and prints its table.
pub fn run(bodies: &[Vec<u8>], events: u64, clients: usize, rounds: usize, work_dir: &Path) -> Result<()> {
    let binary = veritrail_binary()?;
    println!("\n== alerts: {events} events per round, {rounds} interleaved rounds, engine on (default pack) vs off ==");
    let mut on = Vec::new();
    let mut off = Vec::new();
    let mut latencies = Vec::new();
    // One unmeasured round of each mode first, as large as the counted ones (the binary, the
    // file system and the guest's memory warm up; see the module's note).
    for enabled in [true, false] {
        let (result, _) = round_of(&binary, enabled, bodies, events, clients, work_dir)?;
        println!(
            "warm-up, engine {} (not counted): {} events, acked {:.0} events/s",
            if enabled { "on " } else { "off" },
            events,
            result.ack_rate
        );
    }
    for round in 0..rounds {
        // Alternate which mode goes first, so that warm caches and disk state favour neither.
        let order = if round % 2 == 0 { [true, false] } else { [false, true] };
        for enabled in order {
            let (result, samples) = round_of(&binary, enabled, bodies, events, clients, work_dir)?;
            println!(
                "round {} engine {}: acked {:.0} events/s, server {:.1} CPU-µs per event ({:.3} page faults per event, peak {:.0} MB resident, {:.1} group commits per 1,000 events, {:.0} bytes written per event), benchmark {:.1} (other processes: {:.2} cores){}",
                round + 1,
                if enabled { "on " } else { "off" },
                result.ack_rate,
                result.server_cpu_per_event,
                result.server_faults_per_event,
                result.server_peak_rss_mb,
                result.commits_per_thousand,
                result.written_per_event,
                result.bench_cpu_per_event,
                result.others,
                if enabled {
                    format!(
                        ", engine caught up {:.2} s after the last ack, {:.0} records read from storage, {} alerts ({:.1} % stored within 0.25 s, {:.1} % within 1 s of receipt), webhook probe p50 {:.0} ms p99 {:.0} ms ({} probes)",
                        result.engine_tail,
                        result.read_from_storage,
                        result.alerts,
                        result.within_quarter * 100.0,
                        result.within_second * 100.0,
                        percentile(&samples, 50.0),
                        percentile(&samples, 99.0),
                        samples.len()
                    )
                } else {
                    String::new()
                }
            );
            latencies.extend(samples);
            if enabled { on.push(result) } else { off.push(result) }
        }
    }
    let rates = |rounds: &[Round]| rounds.iter().map(|r| r.ack_rate).collect::<Vec<_>>();
    let (on_rates, off_rates) = (rates(&on), rates(&off));
    let (on_min, on_max) = min_max(&on_rates);
    let (off_min, off_max) = min_max(&off_rates);
    let cost = 1.0 - median(&on_rates) / median(&off_rates);
    let tails: Vec<f64> = on.iter().map(|r| r.engine_tail).collect();
    println!("\n| figure | engine on (default pack) | engine off |");
    println!("|---|---|---|");
    println!(
        "| ingest, acked events/s (median [range]) | {:.0} [{:.0}–{:.0}] | {:.0} [{:.0}–{:.0}] |",
        median(&on_rates),
        on_min,
        on_max,
        median(&off_rates),
        off_min,
        off_max
    );
    println!("| cost of the engine (ratio of the medians) | {:.1} % | — |", cost * 100.0);
    // Each round runs its two modes back to back: comparing within rounds cancels the drift of
    // a shared host between rounds, which the ratio of medians over all rounds does not.
    let paired: Vec<f64> = on.iter().zip(&off).map(|(on, off)| 100.0 * (1.0 - on.ack_rate / off.ack_rate)).collect();
    let (paired_min, paired_max) = min_max(&paired);
    println!(
        "| cost of the engine within each round (median [range] of the rounds) | {:.1} % [{:.1}–{:.1}] | — |",
        median(&paired),
        paired_min,
        paired_max
    );
    let cpu = |rounds: &[Round]| rounds.iter().map(|r| r.server_cpu_per_event).collect::<Vec<_>>();
    let (on_cpu, off_cpu) = (cpu(&on), cpu(&off));
    let ((on_cpu_min, on_cpu_max), (off_cpu_min, off_cpu_max)) = (min_max(&on_cpu), min_max(&off_cpu));
    println!(
        "| CPU-µs per event, server process until indexed and evaluated (median [range]) | {:.1} [{:.1}–{:.1}] | {:.1} [{:.1}–{:.1}] |",
        median(&on_cpu),
        on_cpu_min,
        on_cpu_max,
        median(&off_cpu),
        off_cpu_min,
        off_cpu_max
    );
    println!(
        "| CPU-µs per event the engine adds to the server (difference of medians) | {:.1} | — |",
        median(&on_cpu) - median(&off_cpu)
    );
    // Where the difference lands: the named threads each, and the rest of the process (the
    // async runtime and its blocking pool: requests, storing and sending alerts).
    let named = |rounds: &[Round], index: usize| {
        median(&rounds.iter().map(|r| r.threads_cpu_per_event[index]).collect::<Vec<_>>())
    };
    for (index, (name, what)) in NAMED_THREADS.iter().enumerate() {
        println!(
            "| CPU-µs per event, {what} (thread `{name}`, median) | {:.2} | {:.2} |",
            named(&on, index),
            named(&off, index)
        );
    }
    let rest = |rounds: &[Round]| {
        median(
            &rounds
                .iter()
                .map(|r| r.server_cpu_per_event - r.threads_cpu_per_event.iter().sum::<f64>())
                .collect::<Vec<_>>(),
        )
    };
    println!(
        "| CPU-µs per event, the rest of the server (async runtime, request and blocking threads; median) | {:.2} | {:.2} |",
        rest(&on),
        rest(&off)
    );
    let bench_cpu = |rounds: &[Round]| rounds.iter().map(|r| r.bench_cpu_per_event).collect::<Vec<_>>();
    println!(
        "| CPU-µs per event of the benchmark's process (clients, probe, webhook receiver; median) | {:.1} | {:.1} |",
        median(&bench_cpu(&on)),
        median(&bench_cpu(&off))
    );
    let others: Vec<f64> = on.iter().chain(&off).map(|r| r.others).collect();
    println!(
        "| other processes on the machine during the rounds (cores, median [range]) | {:.2} [{:.2}–{:.2}] | |",
        median(&others),
        min_max(&others).0,
        min_max(&others).1
    );
    println!(
        "| alert latency under full ingest load, ack → webhook received (p50 / p99 / max, {} probes) | {:.0} / {:.0} / {:.0} ms | — |",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        min_max(&latencies).1
    );
    println!("| engine caught up after the last ack (median) | {:.2} s | — |", median(&tails));
    let quarter: Vec<f64> = on.iter().map(|r| r.within_quarter * 100.0).collect();
    let second: Vec<f64> = on.iter().map(|r| r.within_second * 100.0).collect();
    println!(
        "| alerts stored within 0.25 s / 1 s of their trigger's receipt, all alerts of the load (median of rounds) | {:.1} % / {:.1} % | — |",
        median(&quarter),
        median(&second)
    );
    Ok(())
}

/// One round: a fresh `veritrail serve` process over a fresh data directory, with the engine on
/// or off, loaded with `bodies`.
fn round_of(
    binary: &Path,
    enabled: bool,
    bodies: &[Vec<u8>],
    events: u64,
    clients: usize,
    work_dir: &Path,
) -> Result<(Round, Vec<f64>)> {
    let dir = tempfile::Builder::new().prefix("veritrail-bench-alerts-").tempdir_in(work_dir)?;
    let data_dir = dir.path().join("data");
    let config = dir.path().join("veritrail.toml");
    std::fs::write(&config, format!("alerting = {enabled}\nwebhook_allow_private = true\n"))?;
    let mut node = Node::start_with(binary, &data_dir, None, Some(&config))?;
    let (_, key) = vt::create_tenant_at(&node.base, "bench")?;
    let result = load(&node, &key, bodies, events, clients, enabled);
    node.stop();
    result
}

/// Ingests the load; with the engine on, probes alert latency meanwhile.
fn load(
    node: &Node,
    key: &str,
    bodies: &[Vec<u8>],
    events: u64,
    clients: usize,
    enabled: bool,
) -> Result<(Round, Vec<f64>)> {
    let base = node.base.as_str();
    let receiver = WebhookReceiver::start();
    if enabled {
        create_probe_rule(base, key)?;
        post_json(base, key, "/v1/webhooks", &json!({"url": receiver.url}))?;
    }
    // Both modes wait alike before the load.
    let never_evaluated = settled_gap(base)?;
    let loading = AtomicBool::new(true);
    let cpu_before = CpuSnapshot::take(None);
    let server_before = process_cpu(node.pid());
    let threads_before = NAMED_THREADS.map(|(name, _)| threads_cpu(node.pid(), name));
    let faults_before = process_minor_faults(node.pid());
    let written_before = process_write_bytes(node.pid());
    let commits_before = vt::metric_at(base, "veritrail_commits_total")?;
    let started = Instant::now();
    let (run, samples) = std::thread::scope(|scope| {
        let probe = enabled.then(|| {
            let (loading, receiver) = (&loading, &receiver);
            scope.spawn(move || probe(base, key, receiver, loading))
        });
        let run = vt::ingest(base, key, bodies, clients);
        loading.store(false, Ordering::SeqCst);
        let samples = match probe {
            Some(handle) => handle.join().unwrap_or_else(|_| Err(anyhow!("probe thread panicked"))),
            None => Ok(Vec::new()),
        };
        (run, samples)
    });
    let run = run?;
    let samples = samples?;
    let acked = run.elapsed.min(started.elapsed());
    let mut engine_tail = 0.0;
    let mut alerts = 0.0;
    let mut read_from_storage = 0.0;
    if enabled {
        let caught_up = Instant::now();
        loop {
            let appended = vt::metric_at(base, "veritrail_events_ingested_total")?;
            let evaluated = vt::metric_at(base, "veritrail_rule_events_evaluated_total")?;
            if evaluated >= appended - never_evaluated {
                break;
            }
            if caught_up.elapsed() > Duration::from_secs(600) {
                bail!("the rule engine did not catch up within 10 minutes");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        engine_tail = caught_up.elapsed().as_secs_f64();
        alerts = vt::metric_at(base, "veritrail_alerts_raised_total")?;
        read_from_storage = vt::metric_at(base, "veritrail_ledger_records_read_total{source=\"storage\"}")?;
    }
    vt::wait_indexed_at(base, Duration::from_secs(600))?;
    let server = process_cpu(node.pid()) - server_before;
    let mut threads = NAMED_THREADS.map(|(name, _)| threads_cpu(node.pid(), name));
    for (after, before) in threads.iter_mut().zip(threads_before) {
        *after -= before;
    }
    let faults = process_minor_faults(node.pid()) - faults_before;
    let server_peak_rss_mb = process_peak_rss_mb(node.pid());
    let written = process_write_bytes(node.pid()) - written_before;
    let commits = vt::metric_at(base, "veritrail_commits_total")? - commits_before;
    let cpu_after = CpuSnapshot::take(None);
    let bench = cpu_after.process - cpu_before.process;
    let others =
        (cpu_after.machine_busy - cpu_before.machine_busy - server - bench).max(0.0) / started.elapsed().as_secs_f64();
    let (mut within_quarter, mut within_second) = (0.0, 0.0);
    if enabled && alerts > 0.0 {
        let bucket = |le: &str| vt::metric_at(base, &format!("veritrail_alert_latency_seconds_bucket{{le=\"{le}\"}}"));
        let count = vt::metric_at(base, "veritrail_alert_latency_seconds_count")?.max(1.0);
        within_quarter = bucket("0.25")? / count;
        within_second = bucket("1")? / count;
    }
    let ack_rate = events as f64 / acked.as_secs_f64();
    let per_event = |seconds: f64| seconds * 1e6 / events as f64;
    Ok((
        Round {
            ack_rate,
            engine_tail,
            alerts,
            read_from_storage,
            threads_cpu_per_event: threads.map(per_event),
            within_quarter,
            within_second,
            server_cpu_per_event: per_event(server),
            bench_cpu_per_event: per_event(bench),
            server_faults_per_event: faults / events as f64,
            server_peak_rss_mb,
            commits_per_thousand: commits * 1000.0 / events as f64,
            written_per_event: written / events as f64,
            others,
        },
        samples,
    ))
}

/// Events the engine will never evaluate: those a ledger held before the engine first looked at
/// it (a tenant found without a cursor starts at its tree size, e.g. the platform ledger's
/// `audit.log.initialized`). Read once ingested − evaluated has stayed the same for longer than
/// the engine's full-pass interval (1 s). With the engine off nothing is evaluated and the gap
/// settles at the first look, after an idle pause of 1.5 s (engine on: usually 3 s).
fn settled_gap(base: &str) -> Result<f64> {
    let gap = || -> Result<f64> {
        Ok(vt::metric_at(base, "veritrail_events_ingested_total")?
            - vt::metric_at(base, "veritrail_rule_events_evaluated_total")?)
    };
    let mut last = gap()?;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(1500));
        let now = gap()?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    bail!("the rule engine did not settle before the load")
}

fn post_json(base: &str, key: &str, path: &str, body: &Value) -> Result<Value> {
    let mut response = agent(1)
        .post(format!("{base}{path}"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .send(body.to_string().as_bytes())?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string()?;
    if status != 201 {
        bail!("POST {path}: status {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("POST {path}: {text}"))
}

fn create_probe_rule(base: &str, key: &str) -> Result<String> {
    let rule = json!({"name": "bench probe", "severity": "low", "when": {"action": "bench.probe"}});
    let value = post_json(base, key, "/v1/rules", &rule)?;
    value["id"].as_str().map(str::to_string).ok_or_else(|| anyhow!("create rule: {value}"))
}

/// Every [`PROBE_EVERY`] while `loading` (open loop): one `bench.probe` event; meanwhile, the
/// webhooks arriving are matched to the probes they cite. After the load, waits up to 60 s for
/// the probes still under way. Returns the latencies in ms.
fn probe(base: &str, key: &str, receiver: &WebhookReceiver, loading: &AtomicBool) -> Result<Vec<f64>> {
    let agent = agent(1);
    let auth = format!("Bearer {key}");
    let mut waiting: HashMap<String, Instant> = HashMap::new();
    let mut samples = Vec::new();
    let mut seen = 0;
    let mut next_probe = Instant::now();
    let mut i = 0u64;
    let mut deadline = None;
    loop {
        for received in receiver.received_from(seen) {
            seen += 1;
            let Ok(body) = serde_json::from_slice::<Value>(&received.body) else { continue };
            if let Some(id) = body["data"]["event_ids"][0].as_str()
                && let Some(acked) = waiting.remove(id)
            {
                samples.push(acked.elapsed().as_secs_f64() * 1000.0);
            }
        }
        if loading.load(Ordering::SeqCst) {
            if Instant::now() >= next_probe {
                next_probe += PROBE_EVERY;
                let id = format!("probe-{i}");
                i += 1;
                let event = json!({"id": id, "action": "bench.probe", "actor": {"id": "bench", "type": "service"}});
                let mut response = agent
                    .post(format!("{base}/v1/events"))
                    .header("authorization", auth.as_str())
                    .header("content-type", "application/json")
                    .send(event.to_string().as_bytes())?;
                let ok = response.status().as_u16() == 201;
                let _ = response.body_mut().read_to_vec()?;
                if ok {
                    waiting.insert(id, Instant::now()); // overloaded answers are not samples
                }
            }
        } else if waiting.is_empty() {
            break;
        } else {
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(60));
            if Instant::now() > deadline {
                bail!("{} probes got no webhook within 60 s after the load", waiting.len());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(samples)
}
