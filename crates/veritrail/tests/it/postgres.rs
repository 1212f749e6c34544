//! Several `veritrail serve` processes sharing one PostgreSQL database (SPEC §5): concurrent
//! ingest into one tenant through both gives one dense ledger with each event once, and a
//! checkpoint signed by either node verifies against the records read from the other; killing
//! one node mid-ingest loses no acknowledged event and the survivor continues the same ledger.
//! Rule changes taken by one node reach the rule engine of another that runs meanwhile.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use veritrail_ledger::checkpoint::{Checkpoint, open_checkpoint};
use veritrail_ledger::hash::leaf_hash;
use veritrail_ledger::note::VerifierKey;
use veritrail_ledger::tree::Frontier;
use veritrail_test_support::postgres::TestDatabase;
use veritrail_test_support::{ChildServer, Client, event};

const BINARY: &str = env!("CARGO_BIN_EXE_veritrail");

/// The master key every node of the test installation is given.
const MASTER_KEY: &str = "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=";

fn node(database: &TestDatabase, dir: &Path) -> ChildServer {
    ChildServer::start_with(BINARY, dir, &["--database-url", &database.url], &[("VERITRAIL_MASTER_KEY", MASTER_KEY)])
}

/// Starts `count` nodes on the database at the same moment (they race to migrate the schema
/// and to initialise the shared secrets and signing key).
fn start_together(database: &TestDatabase, dirs: &[tempfile::TempDir]) -> Vec<ChildServer> {
    std::thread::scope(|scope| {
        let starts: Vec<_> = dirs.iter().map(|dir| scope.spawn(|| node(database, dir.path()))).collect();
        starts.into_iter().map(|start| start.join().unwrap()).collect()
    })
}

fn verifier_key(client: &Client) -> VerifierKey {
    let reply = client.get(None, "/v1/ledger/key");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text().trim().parse().unwrap()
}

/// Ingests batches through `client` until `stop` or the node goes away; returns every
/// acknowledged `(id, seq)`. Ids starting with `both-` are sent through every node.
fn ingest_until_stopped(client: &Client, key: &str, prefix: String, stop: Arc<AtomicBool>) -> Vec<(String, u64)> {
    let mut acked = Vec::new();
    for round in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let batch: Vec<Value> = (0..10).map(|i| event(&format!("{prefix}-{round}-{i}"), "multi.node", "u")).collect();
        match client.try_post_raw(
            Some(key),
            "/v1/events",
            "application/json",
            Value::Array(batch).to_string().as_bytes(),
        ) {
            Ok(reply) if reply.status == 201 => {
                for e in reply.json()["events"].as_array().unwrap() {
                    acked.push((e["id"].as_str().unwrap().to_string(), e["seq"].as_u64().unwrap()));
                }
            }
            Ok(reply) => panic!("ingest refused with {}: {}", reply.status, reply.text()),
            Err(_) => break,
        }
    }
    acked
}

/// The tenant's ledger as sealed records (exact bytes), read in pages from one node. (Each read
/// is itself recorded in the ledger, so the last page is the first one shorter than asked.)
fn records(client: &Client, key: &str) -> Vec<Vec<u8>> {
    const PAGE: usize = 10_000;
    let mut all = Vec::new();
    loop {
        let reply = client.get(Some(key), &format!("/v1/ledger/records?from={}&limit={PAGE}", all.len()));
        assert_eq!(reply.status, 200, "{}", reply.text());
        let page: Vec<Vec<u8>> =
            reply.body.split(|b| *b == b'\n').filter(|line| !line.is_empty()).map(<[u8]>::to_vec).collect();
        let last = page.len() < PAGE;
        all.extend(page);
        if last {
            return all;
        }
    }
}

/// Every record's seq is its position, each id appears once, and each acknowledged event is
/// there with the seq it was acknowledged with.
fn check_dense_and_complete(records: &[Vec<u8>], acked: &[(String, u64)]) {
    let mut by_id = BTreeMap::new();
    for (position, bytes) in records.iter().enumerate() {
        let record: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(record["seq"].as_u64(), Some(position as u64), "seq is dense from 0");
        let id = record["id"].as_str().unwrap().to_string();
        assert!(by_id.insert(id.clone(), position as u64).is_none(), "id {id} stored twice");
    }
    for (id, seq) in acked {
        assert_eq!(by_id.get(id), Some(seq), "acknowledged event {id} lost or moved");
    }
}

/// Signs a checkpoint on `signer` and verifies it against `reader`'s published key and the
/// records read from `reader`.
fn checkpoint_verifies_across(signer: &Client, reader: &Client, key: &str) -> Checkpoint {
    let note = signer.post_raw(Some(key), "/v1/ledger/checkpoint", "text/plain", b"");
    assert_eq!(note.status, 201, "{}", note.text());
    let checkpoint = open_checkpoint(&note.text(), &[verifier_key(reader)]).unwrap();
    let records = records(reader, key);
    assert!(records.len() as u64 >= checkpoint.size);
    let mut frontier = Frontier::new();
    for record in &records[..checkpoint.size as usize] {
        frontier.push(leaf_hash(record)).unwrap();
    }
    assert_eq!(frontier.root(), checkpoint.root, "checkpoint root over the other node's records");
    checkpoint
}

#[test]
fn two_nodes_ingesting_into_one_tenant_keep_one_verifiable_ledger() {
    let database = TestDatabase::create();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let nodes = start_together(&database, &dirs);
    let (a, b) = (&nodes[0].client, &nodes[1].client);
    assert_eq!(verifier_key(a).to_string(), verifier_key(b).to_string(), "one signing key for all nodes");
    let (_, key) = a.create_tenant("multi");

    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (name, client) in [("a", a), ("b", b)] {
        for thread in 0..2 {
            let (client, key, stop) = (client.clone(), key.clone(), stop.clone());
            let prefix = format!("{name}{thread}");
            threads.push(std::thread::spawn(move || ingest_until_stopped(&client, &key, prefix, stop)));
        }
        // The same ids through both nodes at once: each stored once, both answered alike.
        let (client, key) = (client.clone(), key.clone());
        threads.push(std::thread::spawn(move || {
            let mut acked = Vec::new();
            for i in 0..40 {
                let reply = client.ingest(&key, &event(&format!("both-{i}"), "multi.node", "u"));
                assert_eq!(reply.status, 201, "{}", reply.text());
                let e = &reply.json()["events"][0];
                acked.push((e["id"].as_str().unwrap().to_string(), e["seq"].as_u64().unwrap()));
            }
            acked
        }));
    }
    std::thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<(String, u64)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let distinct: HashSet<&str> = acked.iter().map(|(id, _)| id.as_str()).collect();
    assert!(distinct.len() > 200, "both nodes ingested ({} events)", distinct.len());
    assert!(acked.iter().any(|(id, _)| id.starts_with("a")) && acked.iter().any(|(id, _)| id.starts_with("b")));

    check_dense_and_complete(&records(b, &key), &acked);
    check_dense_and_complete(&records(a, &key), &acked);
    let signed_by_a = checkpoint_verifies_across(a, b, &key);
    let signed_by_b = checkpoint_verifies_across(b, a, &key);
    assert!(signed_by_b.size >= signed_by_a.size);
    // Queries see every event at once, through either node.
    let found = b.get(Some(&key), "/v1/events?action=multi.node&limit=1000&order=asc").json();
    let found: HashSet<&str> = found["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(found.len(), distinct.len().min(1000));
}

#[test]
fn killing_one_node_during_ingest_loses_nothing_and_the_other_continues() {
    let database = TestDatabase::create();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut nodes = start_together(&database, &dirs);
    let survivor = nodes.pop().unwrap();
    let victim = nodes.pop().unwrap();
    let (_, key) = victim.client.create_tenant("kill");

    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (name, client) in [("victim", &victim.client), ("survivor", &survivor.client)] {
        for thread in 0..3 {
            let (client, key, stop) = (client.clone(), key.clone(), stop.clone());
            let prefix = format!("{name}{thread}");
            threads.push(std::thread::spawn(move || ingest_until_stopped(&client, &key, prefix, stop)));
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    let status = victim.signal_and_wait("KILL");
    assert!(!status.success());
    // The survivor keeps ingesting after the kill.
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<(String, u64)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let max_victim = acked.iter().filter(|(id, _)| id.starts_with("victim")).map(|(_, seq)| *seq).max();
    let max_survivor = acked.iter().filter(|(id, _)| id.starts_with("survivor")).map(|(_, seq)| *seq).max();
    assert!(max_victim.is_some(), "the killed node acknowledged events before it died");
    assert!(max_survivor > max_victim, "the survivor went on after the kill");

    let client = &survivor.client;
    let stored = records(client, &key);
    check_dense_and_complete(&stored, &acked);
    let next = client.ingest(&key, &event("after-kill", "multi.node", "u")).json();
    assert!(next["events"][0]["seq"].as_u64().unwrap() >= stored.len() as u64);
    checkpoint_verifies_across(client, client, &key);

    // A replacement node on the same database continues the same ledger.
    let replacement = node(&database, dirs[0].path());
    let again = replacement.client.ingest(&key, &event("after-kill", "multi.node", "u")).json();
    assert_eq!(again["events"][0], next["events"][0], "the id is known to every node");
    checkpoint_verifies_across(&replacement.client, client, &key);
}

/// `veritrail_rule_events_evaluated_total` of a node (every tenant's, the platform's included).
fn events_evaluated(client: &Client) -> u64 {
    let metrics = client.get(None, "/metrics").text();
    let line = metrics.lines().find(|line| line.starts_with("veritrail_rule_events_evaluated_total "));
    line.and_then(|line| line.split(' ').nth(1)).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Polls `check` every 50 ms until it holds or `within` has passed; returns whether it held.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ingests a batch through `client` and waits until that node's rule engine has evaluated as
/// many events: more than the platform ledger holds, so the tenant's among them, and the engine
/// has loaded the tenant's rules as they are now.
fn warm_up(client: &Client, key: &str, prefix: &str) {
    const EVENTS: usize = 100;
    let batch = (0..EVENTS).map(|i| event(&format!("{prefix}-{i}"), "warm.up", "u")).collect();
    ingest_all(client, key, batch);
    let evaluated = eventually(Duration::from_secs(10), || events_evaluated(client) >= EVENTS as u64);
    assert!(evaluated, "the rule engine runs the tenant");
}

fn alerts_of(client: &Client, key: &str, rule: &str) -> Vec<Value> {
    let reply = client.get(Some(key), &format!("/v1/alerts?rule={rule}&limit=100"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["alerts"].as_array().unwrap().clone()
}

fn create_rule(client: &Client, key: &str, spec: &Value) -> String {
    let reply = client.post_json(Some(key), "/v1/rules", spec);
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["id"].as_str().unwrap().to_string()
}

fn ingest_all(client: &Client, key: &str, events: Vec<Value>) {
    let reply = client.ingest(key, &Value::Array(events));
    assert_eq!(reply.status, 201, "{}", reply.text());
}

fn bursts(prefix: &str, actor: &str, count: usize) -> Vec<Value> {
    (0..count).map(|i| event(&format!("{prefix}-{i}"), "probe.burst", actor)).collect()
}

/// Each observation runs with the other node killed, so what fires can only come from the
/// engine of the node that did not take the change, loaded before it and running since.
#[test]
fn rule_changes_reach_the_engines_of_other_running_nodes() {
    let database = TestDatabase::create();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut nodes = start_together(&database, &dirs);
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    let (_, key) = a.client.create_tenant("rules");
    warm_up(&b.client, &key, "warm-b");

    // Created through A, then A dies: B's engine, running since before, fires them.
    let burst = json!({"name": "Probe burst", "severity": "high", "when": {"action": "probe.burst"},
                       "group_by": ["actor.id"], "threshold": {"count": 3, "window": "5m"}});
    let burst_id = create_rule(&a.client, &key, &burst);
    let probe_id =
        create_rule(&a.client, &key, &json!({"name": "Probe", "severity": "low", "when": {"action": "probe.match"}}));
    let control_id = create_rule(
        &a.client,
        &key,
        &json!({"name": "Control", "severity": "low", "when": {"action": "probe.control"}}),
    );
    assert!(!a.signal_and_wait("KILL").success());
    // At once, so that B most likely evaluates it before it looks at the rules again: the new
    // rules are then caught up on it.
    assert_eq!(b.client.ingest(&key, &event("match-1", "probe.match", "u")).status, 201);
    ingest_all(&b.client, &key, bursts("burst-1", "mallory", 3));
    let fired = eventually(Duration::from_secs(5), || {
        !alerts_of(&b.client, &key, &probe_id).is_empty() && !alerts_of(&b.client, &key, &burst_id).is_empty()
    });
    assert!(fired, "rules created through A fire on B");
    let probe_alerts = alerts_of(&b.client, &key, &probe_id);
    assert_eq!(probe_alerts.len(), 1, "{probe_alerts:?}");
    assert_eq!(probe_alerts[0]["event_ids"], json!(["match-1"]));
    let burst_alerts = alerts_of(&b.client, &key, &burst_id);
    assert_eq!(burst_alerts.len(), 1, "one burst, one alert: {burst_alerts:?}");
    assert_eq!((burst_alerts[0]["rule_version"].as_u64(), burst_alerts[0]["event_count"].as_u64()), (Some(1), Some(3)));

    // Disabled and deleted through A again, then A dies: B stops firing them.
    let a = node(&database, dirs[0].path());
    let mut disabled = a.client.get(Some(&key), &format!("/v1/rules/{burst_id}")).json();
    disabled["enabled"] = json!(false);
    let reply = a.client.put_json(Some(&key), &format!("/v1/rules/{burst_id}"), &disabled);
    assert_eq!((reply.status, reply.json()["version"].as_u64()), (200, Some(2)), "{}", reply.text());
    assert_eq!(a.client.delete(Some(&key), &format!("/v1/rules/{probe_id}")).status, 204);
    assert!(!a.signal_and_wait("KILL").success());
    std::thread::sleep(Duration::from_millis(2500)); // more than the engine's rule check interval
    ingest_all(&b.client, &key, bursts("burst-2", "trudy", 3));
    assert_eq!(b.client.ingest(&key, &event("match-2", "probe.match", "u")).status, 201);
    assert_eq!(b.client.ingest(&key, &event("control-1", "probe.control", "u")).status, 201);
    let evaluated = eventually(Duration::from_secs(5), || !alerts_of(&b.client, &key, &control_id).is_empty());
    assert!(evaluated, "B evaluated the events (the control rule fired on the last one)");
    assert_eq!(alerts_of(&b.client, &key, &burst_id).len(), 1, "the disabled rule no longer fires on B");
    assert_eq!(alerts_of(&b.client, &key, &probe_id).len(), 1, "the deleted rule no longer fires on B");

    // Updated through B while A runs, then B dies: A's engine fires the new version.
    let a = node(&database, dirs[0].path());
    warm_up(&a.client, &key, "warm-a");
    let mut stricter = burst.clone();
    stricter["threshold"]["count"] = json!(2);
    let reply = b.client.put_json(Some(&key), &format!("/v1/rules/{burst_id}"), &stricter);
    assert_eq!((reply.status, reply.json()["version"].as_u64()), (200, Some(3)), "{}", reply.text());
    assert!(!b.signal_and_wait("KILL").success());
    ingest_all(&a.client, &key, bursts("burst-3", "oscar", 2));
    let fired = eventually(Duration::from_secs(5), || alerts_of(&a.client, &key, &burst_id).len() == 2);
    let burst_alerts = alerts_of(&a.client, &key, &burst_id);
    assert!(fired, "the version updated through B fires on A: {burst_alerts:?}");
    assert_eq!((burst_alerts[0]["rule_version"].as_u64(), burst_alerts[0]["event_count"].as_u64()), (Some(3), Some(2)));
}
