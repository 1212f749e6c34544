//! Several `veritrail serve` processes sharing one PostgreSQL database (SPEC §5): concurrent
//! ingest into one tenant through both gives one dense ledger with each event once, and a
//! checkpoint signed by either node verifies against the records read from the other; killing
//! one node mid-ingest loses no acknowledged event and the survivor continues the same ledger.
//! Each tenant's rules run on one node, the tenants spread over the nodes and taken over when
//! one dies; rule changes taken by one node reach the rule engine of another that runs meanwhile.

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

/// `veritrail_rule_events_evaluated_total` of a node (every tenant's it runs).
fn events_evaluated(client: &Client) -> u64 {
    client.metric("veritrail_rule_events_evaluated_total")
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

/// Waits until every one of `nodes` sees exactly them as the engine nodes (a killed node's
/// entry lasts its time to live, 5 s), and a rule check more for the engines to move.
fn settle(nodes: &[&ChildServer]) {
    let agreed = eventually(Duration::from_secs(20), || {
        nodes.iter().all(|node| node.client.metric("veritrail_rule_engine_nodes") == nodes.len() as u64)
    });
    assert!(agreed, "the nodes agree on who runs rule engines");
    std::thread::sleep(Duration::from_millis(1500));
}

/// Which of `nodes` runs the tenant of `key`: ingests a batch through the first and waits until
/// one node's engine has evaluated all of it; the others must have evaluated none.
fn engine_node(nodes: &[&ChildServer], key: &str, prefix: &str) -> usize {
    const EVENTS: u64 = 100;
    let before: Vec<u64> = nodes.iter().map(|node| events_evaluated(&node.client)).collect();
    let batch = (0..EVENTS).map(|i| event(&format!("{prefix}-{i}"), "warm.up", "u")).collect();
    ingest_all(&nodes[0].client, key, batch);
    let mut owner = None;
    let found = eventually(Duration::from_secs(10), || {
        owner = (0..nodes.len()).find(|&i| events_evaluated(&nodes[i].client) - before[i] >= EVENTS);
        owner.is_some()
    });
    assert!(found, "some node's rule engine runs the tenant");
    let owner = owner.unwrap();
    for (i, node) in nodes.iter().enumerate() {
        if i != owner {
            assert_eq!(events_evaluated(&node.client), before[i], "one engine per tenant");
        }
    }
    owner
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

/// Each tenant's rules run on one node at a time. Each step takes a rule change through the node
/// that does not run the tenant and then kills it, so that what fires can only come from the
/// engine of the node that runs the tenant, loaded before the change and running since.
#[test]
fn rule_changes_reach_the_engines_of_other_running_nodes() {
    let database = TestDatabase::create();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut nodes: Vec<Option<ChildServer>> = start_together(&database, &dirs).into_iter().map(Some).collect();
    let (_, key) = nodes[0].as_ref().unwrap().client.create_tenant("rules");
    // Restarts the killed node (if any), waits until both agree who runs what, and returns
    // (the node running the tenant, the other).
    let step = |nodes: &mut Vec<Option<ChildServer>>, prefix: &str| -> (usize, usize) {
        for (slot, dir) in nodes.iter_mut().zip(&dirs) {
            if slot.is_none() {
                *slot = Some(node(&database, dir.path()));
            }
        }
        let both: Vec<&ChildServer> = nodes.iter().map(|n| n.as_ref().unwrap()).collect();
        settle(&both);
        let runs = engine_node(&both, &key, prefix);
        (runs, 1 - runs)
    };

    // Created through the other node, which then dies: the running engine fires them.
    let (runs, other) = step(&mut nodes, "warm-1");
    let burst = json!({"name": "Probe burst", "severity": "high", "when": {"action": "probe.burst"},
                       "group_by": ["actor.id"], "threshold": {"count": 3, "window": "5m"}});
    let changer = &nodes[other].as_ref().unwrap().client;
    let burst_id = create_rule(changer, &key, &burst);
    let probe_id =
        create_rule(changer, &key, &json!({"name": "Probe", "severity": "low", "when": {"action": "probe.match"}}));
    let control_id =
        create_rule(changer, &key, &json!({"name": "Control", "severity": "low", "when": {"action": "probe.control"}}));
    assert!(!nodes[other].take().unwrap().signal_and_wait("KILL").success());
    let runner = &nodes[runs].as_ref().unwrap().client;
    // At once, so that the engine most likely evaluates it before it looks at the rules again:
    // the new rules are then caught up on it.
    assert_eq!(runner.ingest(&key, &event("match-1", "probe.match", "u")).status, 201);
    ingest_all(runner, &key, bursts("burst-1", "mallory", 3));
    let fired = eventually(Duration::from_secs(5), || {
        !alerts_of(runner, &key, &probe_id).is_empty() && !alerts_of(runner, &key, &burst_id).is_empty()
    });
    assert!(fired, "rules created through the other node fire");
    let probe_alerts = alerts_of(runner, &key, &probe_id);
    assert_eq!(probe_alerts.len(), 1, "{probe_alerts:?}");
    assert_eq!(probe_alerts[0]["event_ids"], json!(["match-1"]));
    let burst_alerts = alerts_of(runner, &key, &burst_id);
    assert_eq!(burst_alerts.len(), 1, "one burst, one alert: {burst_alerts:?}");
    assert_eq!((burst_alerts[0]["rule_version"].as_u64(), burst_alerts[0]["event_count"].as_u64()), (Some(1), Some(3)));

    // Disabled and deleted through the other node, which then dies: they stop firing.
    let (runs, other) = step(&mut nodes, "warm-2");
    let changer = &nodes[other].as_ref().unwrap().client;
    let mut disabled = changer.get(Some(&key), &format!("/v1/rules/{burst_id}")).json();
    disabled["enabled"] = json!(false);
    let reply = changer.put_json(Some(&key), &format!("/v1/rules/{burst_id}"), &disabled);
    assert_eq!((reply.status, reply.json()["version"].as_u64()), (200, Some(2)), "{}", reply.text());
    assert_eq!(changer.delete(Some(&key), &format!("/v1/rules/{probe_id}")).status, 204);
    assert!(!nodes[other].take().unwrap().signal_and_wait("KILL").success());
    std::thread::sleep(Duration::from_millis(2500)); // more than the engine's rule check interval
    let runner = &nodes[runs].as_ref().unwrap().client;
    ingest_all(runner, &key, bursts("burst-2", "trudy", 3));
    assert_eq!(runner.ingest(&key, &event("match-2", "probe.match", "u")).status, 201);
    assert_eq!(runner.ingest(&key, &event("control-1", "probe.control", "u")).status, 201);
    let evaluated = eventually(Duration::from_secs(5), || !alerts_of(runner, &key, &control_id).is_empty());
    assert!(evaluated, "the running engine evaluated the events (the control rule fired on the last one)");
    assert_eq!(alerts_of(runner, &key, &burst_id).len(), 1, "the disabled rule no longer fires");
    assert_eq!(alerts_of(runner, &key, &probe_id).len(), 1, "the deleted rule no longer fires");

    // Updated through the other node, which then dies: the running engine fires the new version.
    let (runs, other) = step(&mut nodes, "warm-3");
    let changer = &nodes[other].as_ref().unwrap().client;
    let mut stricter = burst.clone();
    stricter["threshold"]["count"] = json!(2);
    let reply = changer.put_json(Some(&key), &format!("/v1/rules/{burst_id}"), &stricter);
    assert_eq!((reply.status, reply.json()["version"].as_u64()), (200, Some(3)), "{}", reply.text());
    assert!(!nodes[other].take().unwrap().signal_and_wait("KILL").success());
    let runner = &nodes[runs].as_ref().unwrap().client;
    ingest_all(runner, &key, bursts("burst-3", "oscar", 2));
    let fired = eventually(Duration::from_secs(5), || alerts_of(runner, &key, &burst_id).len() == 2);
    let burst_alerts = alerts_of(runner, &key, &burst_id);
    assert!(fired, "the version updated through the other node fires: {burst_alerts:?}");
    assert_eq!((burst_alerts[0]["rule_version"].as_u64(), burst_alerts[0]["event_count"].as_u64()), (Some(3), Some(2)));
}

/// Tenants are spread over the nodes, each evaluated by one; when a node dies the others take
/// its tenants over within the engine's time to live and evaluate from where it stopped.
#[test]
fn tenants_are_shared_between_nodes_and_taken_over_when_one_dies() {
    const TENANTS: usize = 16;
    const EVENTS: u64 = 20;
    let database = TestDatabase::create();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut nodes = start_together(&database, &dirs);
    let keys: Vec<String> = (0..TENANTS).map(|i| nodes[0].client.create_tenant(&format!("t{i}")).1).collect();
    settle(&[&nodes[0], &nodes[1]]);
    // Every tenant's engine loaded somewhere (the platform's too), none twice.
    let loaded = eventually(Duration::from_secs(10), || {
        nodes.iter().map(|node| node.client.metric("veritrail_rule_engine_tenants")).sum::<u64>() == TENANTS as u64 + 1
    });
    assert!(loaded, "each tenant runs on one node");
    let shares: Vec<u64> = nodes.iter().map(|node| node.client.metric("veritrail_rule_engine_tenants")).collect();
    assert!(shares.iter().all(|&share| share > 0), "both nodes run tenants: {shares:?}");

    let ingest_everywhere = |client: &Client, prefix: &str| {
        for (t, key) in keys.iter().enumerate() {
            let batch = (0..EVENTS).map(|i| event(&format!("{prefix}-{t}-{i}"), "spread.test", "u")).collect();
            ingest_all(client, key, batch);
        }
    };
    let before: Vec<u64> = nodes.iter().map(|node| events_evaluated(&node.client)).collect();
    ingest_everywhere(&nodes[0].client, "first");
    let total = TENANTS as u64 * EVENTS;
    let delta = |nodes: &[ChildServer], before: &[u64]| -> Vec<u64> {
        nodes.iter().zip(before).map(|(node, before)| events_evaluated(&node.client) - before).collect::<Vec<_>>()
    };
    let evaluated = eventually(Duration::from_secs(10), || delta(&nodes, &before).iter().sum::<u64>() >= total);
    assert!(evaluated, "every event evaluated: {:?}", delta(&nodes, &before));
    std::thread::sleep(Duration::from_millis(500));
    let split = delta(&nodes, &before);
    assert_eq!(split.iter().sum::<u64>(), total, "each event evaluated once, on the node running its tenant");

    // One node dies: the survivor takes every tenant over and evaluates what comes next.
    let survivor = nodes.remove(0);
    assert!(!nodes.pop().unwrap().signal_and_wait("KILL").success());
    let taken = eventually(Duration::from_secs(15), || {
        survivor.client.metric("veritrail_rule_engine_tenants") == TENANTS as u64 + 1
    });
    assert!(taken, "the survivor runs every tenant");
    let before = events_evaluated(&survivor.client);
    ingest_everywhere(&survivor.client, "second");
    let evaluated = eventually(Duration::from_secs(10), || events_evaluated(&survivor.client) - before >= total);
    assert!(evaluated, "the survivor evaluates every tenant's new events");
}

/// A node keeps its engine id in its data directory: restarted after a SIGKILL it is the same
/// node to the others (never a third one beside its own stale entry) and runs its tenants again
/// at once, not after the dead entry's time to live.
#[test]
fn a_node_restarted_after_a_crash_takes_its_tenants_back_at_once() {
    const TENANTS: usize = 8;
    let database = TestDatabase::create();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut nodes = start_together(&database, &dirs);
    for i in 0..TENANTS {
        nodes[0].client.create_tenant(&format!("t{i}"));
    }
    settle(&[&nodes[0], &nodes[1]]);
    let id_file = dirs[1].path().join("engine-node");
    let id = std::fs::read_to_string(&id_file).unwrap();
    assert!(id.starts_with("node_"), "{id}");
    let runs_before = nodes[1].client.metric("veritrail_rule_engine_tenants");

    assert!(!nodes.pop().unwrap().signal_and_wait("KILL").success());
    let restarted = node(&database, dirs[1].path());
    assert_eq!(std::fs::read_to_string(&id_file).unwrap(), id, "the same id after the restart");
    let started = Instant::now();
    let back =
        eventually(Duration::from_secs(3), || restarted.client.metric("veritrail_rule_engine_tenants") == runs_before);
    assert!(back, "the restarted node runs its {runs_before} tenants again within 3 s");
    assert!(started.elapsed() < Duration::from_secs(4));
    for node in [&nodes[0], &restarted] {
        assert_eq!(node.client.metric("veritrail_rule_engine_nodes"), 2, "two nodes, not three");
    }
}
