//! The results of a run and their markdown table.

use std::fmt::Write;
use std::path::Path;
use std::process::Command;

use crate::stats::{CpuUse, median, min_max, percentile};

/// Target: durable HTTP ingest rate, events/s.
const TARGET_INGEST: f64 = 100_000.0;
/// Target: ingest rate relative to PostgreSQL COPY.
const TARGET_INGEST_RATIO: f64 = 2.0;
/// Target: single-event ack p99 at 1,000 events/s, ms.
const TARGET_ACK_P99_MS: f64 = 5.0;
/// Target: query p95 on 1M events, ms.
const TARGET_QUERY_P95_MS: f64 = 10.0;

/// One ingest round of both systems.
#[derive(Debug, Default, Clone)]
pub struct IngestRound {
    /// Events in the round.
    pub events: usize,
    /// Veritrail: events/s until the last durable ack.
    pub vt_ack_rate: Option<f64>,
    /// Veritrail: events/s until the last event is query-visible.
    pub vt_visible_rate: Option<f64>,
    /// Veritrail: seconds the indexer needed after the last ack.
    pub vt_index_tail: Option<f64>,
    /// Veritrail: group commits in the round.
    pub vt_commits: Option<f64>,
    /// Veritrail: seconds spent in group commits (fsync included).
    pub vt_commit_secs: Option<f64>,
    /// Veritrail: 503 answers retried.
    pub vt_retries: u64,
    /// Veritrail: CPU use.
    pub vt_cpu: Option<CpuUse>,
    /// PostgreSQL: rows/s with COPY statements of one batch each from several connections.
    pub pg_copy_rate: Option<f64>,
    /// PostgreSQL: CPU use of that.
    pub pg_cpu: Option<CpuUse>,
    /// PostgreSQL: rows/s with one COPY for the whole round.
    pub pg_bulk_rate: Option<f64>,
    /// PostgreSQL: CPU use of that.
    pub pg_bulk_cpu: Option<CpuUse>,
}

/// The ingest benchmark.
#[derive(Debug, Default)]
pub struct IngestResults {
    /// Its rounds.
    pub rounds: Vec<IngestRound>,
}

/// One query round: latencies in ms.
#[derive(Debug, Default, Clone)]
pub struct QueryRound {
    /// Veritrail latencies.
    pub vt: Vec<f64>,
    /// PostgreSQL latencies.
    pub pg: Vec<f64>,
    /// Events returned in total.
    pub matched: usize,
}

/// The query benchmark.
#[derive(Debug, Default)]
pub struct QueryResults {
    /// Its rounds.
    pub rounds: Vec<QueryRound>,
    /// Queries per system.
    pub queries: usize,
    /// Queries whose result counts differed between the systems.
    pub mismatches: Option<usize>,
}

/// One latency round: latencies in ms from scheduled send to ack.
#[derive(Debug, Default, Clone)]
pub struct LatencyRound {
    /// Veritrail latencies.
    pub vt: Vec<f64>,
    /// PostgreSQL latencies.
    pub pg: Vec<f64>,
    /// Veritrail CPU use.
    pub vt_cpu: Option<CpuUse>,
    /// PostgreSQL CPU use.
    pub pg_cpu: Option<CpuUse>,
}

/// The latency benchmark.
#[derive(Debug, Default)]
pub struct LatencyResults {
    /// Its rounds.
    pub rounds: Vec<LatencyRound>,
}

/// Everything a run measured.
#[derive(Debug, Default)]
pub struct Results {
    /// Which benchmark ran.
    pub which: String,
    /// The plan, in words.
    pub plan: String,
    /// The machine, in words.
    pub machine: String,
    /// PostgreSQL server version.
    pub pg_version: Option<String>,
    /// Average JSON bytes per loaded event.
    pub event_bytes: Option<f64>,
    /// Ingest results.
    pub ingest: Option<IngestResults>,
    /// Query results.
    pub query: Option<QueryResults>,
    /// Latency results.
    pub latency: Option<LatencyResults>,
    /// Remarks to print under the table.
    pub notes: Vec<String>,
    /// Wall-clock seconds of the whole run.
    pub total_secs: f64,
}

/// `nproc`, CPU model, memory and the filesystem/disk under `dir`.
pub fn machine(dir: &Path) -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown")
        .to_string();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<f64>().ok()).unwrap_or(0.0))
        })
        .map(|kb| format!("{:.0} GiB RAM", kb / 1024.0 / 1024.0))
        .unwrap_or_default();
    let df = Command::new("df")
        .args(["-hT"])
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "unknown".into());
    format!("machine: {cores} cores (nproc), CPU {model}, {memory}; work dir {} on {df}", dir.display())
}

fn fmt_rate(v: f64) -> String {
    let v = v.round() as u64;
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn series(values: &[f64], unit: fn(f64) -> String) -> String {
    if values.is_empty() {
        return "—".into();
    }
    let (lo, hi) = min_max(values);
    if values.len() == 1 {
        unit(median(values))
    } else {
        format!("{} [{}–{}]", unit(median(values)), unit(lo), unit(hi))
    }
}

fn ms2(v: f64) -> String {
    format!("{v:.2} ms")
}

fn ratio(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 { format!("{:.2}×", a / b) } else { "—".into() }
}

fn met(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**not met**" }
}

impl Results {
    /// Empty results of a run.
    pub fn new(which: String, plan: String, machine: String) -> Results {
        Results { which, plan, machine, ..Results::default() }
    }

    /// The results as markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "## veritrail-bench {} — {}",
            self.which,
            jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC")
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "- {}", self.machine);
        let _ = writeln!(out, "- plan: {}", self.plan);
        if let Some(v) = &self.pg_version {
            let _ = writeln!(
                out,
                "- baseline: PostgreSQL {v}, fsync=on, synchronous_commit=on, shared_buffers=512MB, max_wal_size=2GB"
            );
        }
        if let Some(b) = self.event_bytes {
            let _ = writeln!(out, "- events: {b:.0} bytes of JSON on average");
        }
        let _ =
            writeln!(out, "- figures: median of rounds [min–max of rounds]; total run time {:.0} s", self.total_secs);
        let _ = writeln!(out);
        let _ =
            writeln!(out, "| benchmark | Veritrail | PostgreSQL baseline | Veritrail ÷ baseline | target | verdict |");
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        if let Some(ingest) = &self.ingest {
            self.ingest_rows(&mut out, ingest);
        }
        if let Some(latency) = &self.latency {
            latency_rows(&mut out, latency);
        }
        if let Some(query) = &self.query {
            query_rows(&mut out, query);
        }
        let _ = writeln!(out);
        if let Some(ingest) = &self.ingest {
            resource_rows(&mut out, ingest);
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }

    fn ingest_rows(&self, out: &mut String, ingest: &IngestResults) {
        let collect = |f: fn(&IngestRound) -> Option<f64>| ingest.rounds.iter().filter_map(f).collect::<Vec<f64>>();
        let ack = collect(|r| r.vt_ack_rate);
        let visible = collect(|r| r.vt_visible_rate);
        let copy = collect(|r| r.pg_copy_rate);
        let bulk = collect(|r| r.pg_bulk_rate);
        let rate = |v: f64| format!("{}/s", fmt_rate(v));
        let batch_label = "COPY of 1 batch per statement, same connections";
        let best_pg = median(&copy).max(median(&bulk));
        if !ack.is_empty() || !copy.is_empty() {
            let ok = median(&ack) >= TARGET_INGEST && (best_pg == 0.0 || median(&ack) >= TARGET_INGEST_RATIO * best_pg);
            let _ = writeln!(
                out,
                "| durable ingest, batches over HTTP, acked (events/s) | {} | {} ({batch_label}) | {} | ≥100,000/s and ≥2× the faster PG COPY | {} |",
                series(&ack, rate),
                series(&copy, rate),
                ratio(median(&ack), median(&copy)),
                if ack.is_empty() { "—" } else { met(ok) }
            );
            let _ = writeln!(
                out,
                "| durable ingest, until query-visible (acks + index catch-up) | {} | {} | {} | (PG rows are visible at commit) | {} |",
                series(&visible, rate),
                series(&copy, rate),
                ratio(median(&visible), median(&copy)),
                if visible.is_empty() {
                    "—"
                } else {
                    met(median(&visible) >= TARGET_INGEST
                        && (best_pg == 0.0 || median(&visible) >= TARGET_INGEST_RATIO * best_pg))
                }
            );
            if !bulk.is_empty() {
                let _ = writeln!(
                    out,
                    "| … against one bulk COPY per round (1 connection) | {} | {} | {} | ≥2× | {} |",
                    series(&ack, rate),
                    series(&bulk, rate),
                    ratio(median(&ack), median(&bulk)),
                    if ack.is_empty() { "—" } else { met(median(&ack) >= TARGET_INGEST_RATIO * median(&bulk)) }
                );
            }
        }
    }
}

fn latency_rows(out: &mut String, latency: &LatencyResults) {
    let per_round = |f: fn(&LatencyRound) -> &Vec<f64>, p: f64| {
        latency.rounds.iter().map(f).filter(|v| !v.is_empty()).map(|v| percentile(v, p)).collect::<Vec<f64>>()
    };
    let all = |f: fn(&LatencyRound) -> &Vec<f64>| {
        latency.rounds.iter().flat_map(|r| f(r).iter().copied()).collect::<Vec<f64>>()
    };
    fn vt(r: &LatencyRound) -> &Vec<f64> {
        &r.vt
    }
    fn pg(r: &LatencyRound) -> &Vec<f64> {
        &r.pg
    }
    for (label, p) in [("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9)] {
        let v = per_round(vt, p);
        let b = per_round(pg, p);
        let (target, verdict) =
            if p == 99.0 && !v.is_empty() { ("≤ 5 ms", met(median(&v) <= TARGET_ACK_P99_MS)) } else { ("", "") };
        let _ = writeln!(
            out,
            "| single-event ack latency {label} at 1,000 ev/s (open loop) | {} | {} (single-row INSERT, autocommit) | {} | {target} | {verdict} |",
            series(&v, ms2),
            series(&b, ms2),
            ratio(median(&v), median(&b))
        );
    }
    let (v, b) = (all(vt), all(pg));
    let _ = writeln!(
        out,
        "| single-event ack latency max (all rounds, {} / {} samples) | {} | {} | | | |",
        v.len(),
        b.len(),
        ms2(percentile(&v, 100.0)),
        ms2(percentile(&b, 100.0))
    );
}

fn query_rows(out: &mut String, query: &QueryResults) {
    let per_round = |f: fn(&QueryRound) -> &Vec<f64>, p: f64| {
        query.rounds.iter().map(f).filter(|v| !v.is_empty()).map(|v| percentile(v, p)).collect::<Vec<f64>>()
    };
    fn vt(r: &QueryRound) -> &Vec<f64> {
        &r.vt
    }
    fn pg(r: &QueryRound) -> &Vec<f64> {
        &r.pg
    }
    let matched: usize = query.rounds.iter().map(|r| r.matched).sum();
    for (label, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0)] {
        let v = per_round(vt, p);
        let b = per_round(pg, p);
        let (target, verdict) =
            if p == 95.0 && !v.is_empty() { ("≤ 10 ms", met(median(&v) <= TARGET_QUERY_P95_MS)) } else { ("", "") };
        let _ = writeln!(
            out,
            "| query actor_id + action=auth.* + limit 100, {label} ({} queries, {:.1} events/result) | {} | {} (WHERE tenant, user, action LIKE, ORDER BY created_at DESC) | {} | {target} | {verdict} |",
            query.queries,
            matched as f64 / query.queries.max(1) as f64,
            series(&v, ms2),
            series(&b, ms2),
            ratio(median(&v), median(&b))
        );
    }
    if let Some(m) = query.mismatches {
        let _ = writeln!(
            out,
            "| query result counts equal in both systems | {} of {} | | | | |",
            query.queries - m,
            query.queries
        );
    }
}

fn resource_rows(out: &mut String, ingest: &IngestResults) {
    let mut vt = CpuUse::default();
    let mut pg = CpuUse::default();
    let mut bulk = CpuUse::default();
    let mut events = 0.0;
    let mut commits = 0.0;
    let mut commit_secs = 0.0;
    for r in &ingest.rounds {
        events += r.events as f64;
        if let Some(c) = &r.vt_cpu {
            vt.add(c);
        }
        if let Some(c) = &r.pg_cpu {
            pg.add(c);
        }
        if let Some(c) = &r.pg_bulk_cpu {
            bulk.add(c);
        }
        commits += r.vt_commits.unwrap_or(0.0);
        commit_secs += r.vt_commit_secs.unwrap_or(0.0);
    }
    let per_k = |cpu: f64| format!("{:.3}", cpu / events.max(1.0) * 1000.0);
    let _ = writeln!(
        out,
        "Where the CPU went during the ingest rounds (CPU-seconds per 1,000 events; cores busy on average):"
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| ingest path | server CPU-s/1k events | client CPU-s/1k | written bytes/event | other processes (cores) | detail |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    if vt.wall > 0.0 {
        let _ = writeln!(
            out,
            "| Veritrail HTTP | {} | {} | {:.0} | {:.2} | runtime (HTTP, parse, seal) {} + writer {} + indexer {} CPU-s/1k; {:.0} events/commit, {:.1} ms/commit |",
            per_k(vt.vt_runtime + vt.vt_writer + vt.vt_indexer),
            per_k(vt.client),
            vt.vt_write_bytes / events.max(1.0),
            vt.other / vt.wall.max(1e-9),
            per_k(vt.vt_runtime),
            per_k(vt.vt_writer),
            per_k(vt.vt_indexer),
            events / commits.max(1.0),
            commit_secs / commits.max(1.0) * 1000.0
        );
    }
    if pg.wall > 0.0 {
        let _ = writeln!(
            out,
            "| PostgreSQL COPY per batch | {} | {} | {:.0} | {:.2} | |",
            per_k(pg.postgres),
            per_k(pg.client),
            pg.pg_write_bytes / events.max(1.0),
            pg.other / pg.wall.max(1e-9)
        );
    }
    if bulk.wall > 0.0 {
        let _ = writeln!(
            out,
            "| PostgreSQL bulk COPY | {} | {} | {:.0} | {:.2} | |",
            per_k(bulk.postgres),
            per_k(bulk.client),
            bulk.pg_write_bytes / events.max(1.0),
            bulk.other / bulk.wall.max(1e-9)
        );
    }
}
