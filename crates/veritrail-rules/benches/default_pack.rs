//! `cargo bench -p veritrail-rules --bench default_pack`: events per second through the default
//! pack, on a synthetic ingest mix (mostly reads and API calls, some logins, failures, exports,
//! deletions, role changes; 20,000 actors, 50 sources; `occurred_at` up to 200 ms before
//! `received_at`, so many out of order). Building views is never timed: the server already
//! holds them. Three figures: `Engine::process` on views still in cache (processed right after
//! they were built, as the server will); the same plus `EventInput::from_view` (parsing the two
//! timestamps, which the server can skip: it has them); `Engine::process` on views built long
//! before, mostly out of cache (a worst case).
//! Environment: `VERITRAIL_BENCH_EVENTS` (default 500000), `VERITRAIL_BENCH_ROUNDS` (default 3).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use veritrail_rules::{BusinessHours, Engine, EngineConfig, EventInput, default_pack};

/// Views built and processed together in the warm measurement.
const CHUNK: usize = 256;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Views `from..from + count` of the synthetic stream (deterministic in the index).
fn views(from: usize, count: usize) -> Vec<Value> {
    let start: Timestamp = "2026-01-15T10:00:00Z".parse().unwrap();
    let mut out = Vec::with_capacity(count);
    for i in from..from + count {
        let mut r = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        r ^= r >> 29;
        r = r.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        r ^= r >> 32;
        let action = match r % 100 {
            0..=39 => "data.read",
            40..=64 => "api.request",
            65..=74 => "auth.login.success",
            75..=79 => "auth.login.failed",
            80..=86 => "data.updated",
            87..=89 => "data.created",
            90..=92 => "data.exported",
            93..=94 => "data.deleted",
            95..=96 => "data.sensitive.accessed",
            97 => "permission.role.assigned",
            98 => "config.updated",
            _ => "ai.generate",
        };
        // 50k events/s of received_at; occurred_at 0–200 ms earlier (so often out of order).
        let received = start + SignedDuration::from_micros(i as i64 * 20);
        let occurred = received - SignedDuration::from_micros(((r >> 8) % 200_000) as i64);
        let actor = (r >> 20) % 20_000;
        let mut view = json!({
            "id": format!("evt_{i:026}"),
            "seq": i,
            "tenant": "tn_bench",
            "action": action,
            "occurred_at": occurred.to_string(),
            "occurred_at_source": "client",
            "received_at": received.to_string(),
            "actor": {"id": format!("usr_{actor:05}"), "type": "user", "email": format!("user{actor}@example.com"), "roles": ["member"]},
            "resource": {"type": "document", "id": format!("doc_{}", (r >> 36) % 5000), "name": "Quarterly report"},
            "outcome": if action == "auth.login.failed" { "failure" } else { "success" },
            "context": {"ip": format!("10.{}.{}.{}", (r >> 40) % 200, (r >> 48) % 250, (r >> 56) % 250), "channel": "api"},
            "metadata": {"source": {"service": format!("svc-{}", (r >> 12) % 50), "host": "app-1"}, "latency_ms": r % 900}
        });
        match action {
            "data.exported" | "data.deleted" => view["metadata"]["record_count"] = json!((r >> 24) % 500),
            "permission.role.assigned" => {
                view["metadata"]["role"] = json!(if r.is_multiple_of(7) { "admin" } else { "editor" })
            }
            _ => {}
        }
        out.push(view);
    }
    out
}

/// Events per second of `work` over `count` events, the clock running only inside `work`.
fn rate(count: usize, elapsed: std::time::Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn main() {
    let count = env("VERITRAIL_BENCH_EVENTS", 500_000);
    let rounds = env("VERITRAIL_BENCH_ROUNDS", 3);
    let rules = default_pack(&BusinessHours::new("Europe/Berlin", "mon-fri", "08:00", "18:00").unwrap());
    println!("default pack ({} rules), {count} events, {rounds} rounds", rules.len());
    let new_engine = || {
        let mut engine = Engine::new(EngineConfig::default());
        engine.set_rules(rules.clone());
        engine
    };
    let (mut warm, mut warm_parse, mut cold) = (Vec::new(), Vec::new(), Vec::new());
    let mut fired = 0;
    for _ in 0..rounds {
        // Warm: as in the server, each view is processed right after it was built (in chunks
        // of CHUNK, built outside the clock), so it is still in cache.
        let (mut engine, mut parse_engine) = (new_engine(), new_engine());
        let (mut process_time, mut parse_time) = (Duration::ZERO, Duration::ZERO);
        for from in (0..count).step_by(CHUNK) {
            let chunk = views(from, CHUNK.min(count - from));
            let inputs: Vec<EventInput<'_>> = chunk.iter().map(|v| EventInput::from_view(v).unwrap()).collect();
            let started = Instant::now();
            for input in &inputs {
                fired += engine.process(input).len();
            }
            process_time += started.elapsed();
            let started = Instant::now();
            for view in &chunk {
                fired += parse_engine.process(&EventInput::from_view(view).unwrap()).len();
            }
            parse_time += started.elapsed();
        }
        warm.push(rate(count, process_time));
        warm_parse.push(rate(count, parse_time));
        println!("  state held at the end: {} entries; stats {:?}", engine.state_size(), engine.stats());

        // Cold: every view built beforehand, so most are out of cache when processed.
        let all = views(0, count);
        let inputs: Vec<EventInput<'_>> = all.iter().map(|v| EventInput::from_view(v).unwrap()).collect();
        let mut engine = new_engine();
        let started = Instant::now();
        for input in &inputs {
            fired += engine.process(input).len();
        }
        cold.push(rate(count, started.elapsed()));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("firings per pass: {}", fired / (3 * rounds));
    println!("process, view in cache:               {:>10.0} events/s (median)", median(warm));
    println!("from_view + process, view in cache:   {:>10.0} events/s (median)", median(warm_parse));
    println!("process, view out of cache:           {:>10.0} events/s (median)", median(cold));
}
