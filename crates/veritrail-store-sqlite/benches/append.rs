//! `cargo bench -p veritrail-store-sqlite --bench append`: durable append throughput of the
//! embedded store (no HTTP), with the tamper-evident ledger on and off, in interleaved rounds.
//! Environment: `VERITRAIL_BENCH_EVENTS` (default 200000), `VERITRAIL_BENCH_ROUNDS` (default 3).

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use jiff::Timestamp;
use serde_json::json;
use veritrail_model::{Limits, PrepareContext, PreparedEvent};
use veritrail_store::{Store, Tenant};
use veritrail_store_sqlite::{OpenOptions, SqliteStore};

const BATCH: usize = 1000;
const APPENDERS: usize = 4;

fn events(count: usize) -> Vec<PreparedEvent> {
    let actions = ["auth.login.success", "auth.login.failed", "data.read", "data.updated", "permission.granted"];
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let actor = i % 20_000;
        let event = json!({
            "id": format!("evt_{i:012}_{:08x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32),
            "action": actions[i % actions.len()],
            "actor": {"id": format!("usr_{actor:05}"), "type": "user", "email": format!("user{actor}@example.com"), "roles": ["member"]},
            "resource": {"type": "document", "id": format!("doc_{}", i % 5000), "name": "Quarterly report"},
            "outcome": "success",
            "context": {"ip": format!("10.{}.{}.{}", i % 200, (i / 200) % 250, i % 250), "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36", "channel": "api", "request_id": format!("req-{i}")},
            "metadata": {"source": {"service": "billing", "host": "app-1"}, "latency_ms": i % 900}
        });
        let bytes = serde_json::to_vec(&event).unwrap();
        let parsed = veritrail_model::parse_event(&bytes, &Limits::default()).unwrap();
        let mut salt = || [(i % 251) as u8; 32];
        let ctx = PrepareContext { id_if_missing: String::new(), now: Timestamp::now(), salt: &mut salt };
        out.push(parsed.prepare(ctx).unwrap());
    }
    out
}

async fn round(events: &[PreparedEvent], merkle_tree: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(dir.path(), OpenOptions { merkle_tree, ..OpenOptions::default() }).unwrap();
    store
        .create_tenant(Tenant { id: "tn_bench".into(), name: "bench".into(), created_at: Timestamp::now() })
        .await
        .unwrap();
    let batches: Vec<Vec<PreparedEvent>> = events.chunks(BATCH).map(<[PreparedEvent]>::to_vec).collect();
    let mut lanes: Vec<Vec<Vec<PreparedEvent>>> = (0..APPENDERS).map(|_| Vec::new()).collect();
    for (i, batch) in batches.into_iter().enumerate() {
        lanes[i % APPENDERS].push(batch);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mine in lanes {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for batch in mine {
                store.append("tn_bench", batch).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let rate = events.len() as f64 / started.elapsed().as_secs_f64();
    store.shutdown().await.unwrap();
    drop(store);
    rate
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let count: usize = std::env::var("VERITRAIL_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let rounds: usize = std::env::var("VERITRAIL_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let events = events(count);
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let with = runtime.block_on(round(&events, true));
        let without = runtime.block_on(round(&events, false));
        println!("round {r}: ledger on {with:.0} events/s, ledger off {without:.0} events/s");
        on.push(with);
        off.push(without);
    }
    let (on, off) = (median(&mut on), median(&mut off));
    println!(
        "append {count} events in requests of {BATCH} from {APPENDERS} appenders, median of {rounds}: ledger on {on:.0}/s, off {off:.0}/s, ledger cost {:.1} %",
        (1.0 - on / off) * 100.0
    );
}
