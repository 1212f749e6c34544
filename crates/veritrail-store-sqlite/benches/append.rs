//! `cargo bench -p veritrail-store-sqlite --bench append`: durable append throughput of the
//! embedded store (no HTTP) in interleaved rounds: as shipped (tamper-evident ledger and
//! encryption of personal data at rest on), without encryption, and without the ledger.
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

/// CPU time of this process so far (user + system), from `/proc/self/stat`, in seconds.
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// One round: (events/s, CPU µs per event of the whole process, indexer included).
async fn round(events: &[PreparedEvent], merkle_tree: bool, encrypt_personal: bool) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let options = OpenOptions { merkle_tree, encrypt_personal, ..OpenOptions::default() };
    let store = SqliteStore::open_with(dir.path(), options).unwrap();
    store
        .create_tenant(Tenant { id: "tn_bench".into(), name: "bench".into(), created_at: Timestamp::now() })
        .await
        .unwrap();
    let batches: Vec<Vec<PreparedEvent>> = events.chunks(BATCH).map(<[PreparedEvent]>::to_vec).collect();
    let mut lanes: Vec<Vec<Vec<PreparedEvent>>> = (0..APPENDERS).map(|_| Vec::new()).collect();
    for (i, batch) in batches.into_iter().enumerate() {
        lanes[i % APPENDERS].push(batch);
    }
    let (started, cpu_before) = (Instant::now(), process_cpu());
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
    // Until the index has caught up too: its work is part of what ingest costs.
    store.wait_indexed().await.unwrap();
    let cpu = (process_cpu() - cpu_before) * 1e6 / events.len() as f64;
    store.shutdown().await.unwrap();
    drop(store);
    (rate, cpu)
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
    // What sealing alone costs per event (one thread, keys cached after the first pass).
    let keys = veritrail_crypto::MasterKeys::new(veritrail_crypto::MasterKey::from_bytes([7; 32]));
    let privacy = veritrail_store::privacy::Privacy::new(keys);
    privacy.remember_blind_key("tn_bench", &privacy.new_blind_key("tn_bench").unwrap()).unwrap();
    for pass in ["first pass (creates keys)", "keys cached", "keys cached, again"] {
        let started = Instant::now();
        for batch in events.chunks(BATCH) {
            let sealed = privacy.seal("tn_bench", batch).unwrap();
            privacy.committed("tn_bench", &sealed.new_keys).unwrap();
        }
        let micros = started.elapsed().as_secs_f64() * 1e6 / events.len() as f64;
        println!("sealing, {pass}: {micros:.2} µs/event");
    }
    if rounds == 0 {
        return;
    }
    let modes = [("as shipped", true, true), ("encryption off", true, false), ("ledger off", false, true)];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for r in 0..rounds {
        let mut line = format!("round {r}:");
        for (i, (name, merkle_tree, encrypt)) in modes.iter().enumerate() {
            let (rate, cpu) = runtime.block_on(round(&events, *merkle_tree, *encrypt));
            line.push_str(&format!(" {name} {rate:.0}/s {cpu:.1} CPU-µs/event;"));
            rates[i].push(rate);
            cpus[i].push(cpu);
        }
        println!("{line}");
    }
    let rate: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
    let cpu: Vec<f64> = cpus.iter_mut().map(|c| median(c)).collect();
    println!(
        "append {count} events in requests of {BATCH} from {APPENDERS} appenders, median of {rounds}:\n  \
         as shipped     {:.0}/s, {:.1} CPU-µs/event\n  \
         encryption off {:.0}/s, {:.1} CPU-µs/event -> encryption costs {:.1} % throughput, {:.1} % CPU\n  \
         ledger off     {:.0}/s, {:.1} CPU-µs/event -> the ledger costs {:.1} % throughput, {:.1} % CPU",
        rate[0],
        cpu[0],
        rate[1],
        cpu[1],
        (1.0 - rate[0] / rate[1]) * 100.0,
        (cpu[0] / cpu[1] - 1.0) * 100.0,
        rate[2],
        cpu[2],
        (1.0 - rate[0] / rate[2]) * 100.0,
        (cpu[0] / cpu[2] - 1.0) * 100.0,
    );
}
