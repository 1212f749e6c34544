//! The ledger API (SPEC §3–§4) checked the way an outside verifier would: signatures with the
//! published key, proofs with the RFC 9162 algorithms, leaves from the exact record bytes.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use veritrail_ledger::checkpoint::{Checkpoint, open_checkpoint};
use veritrail_ledger::hash::{Hash, leaf_hash};
use veritrail_ledger::note::VerifierKey;
use veritrail_ledger::tree::{verify_consistency, verify_inclusion};
use veritrail_test_support::{Client, TestServer, event};

fn hashes(body: &Value) -> Vec<Hash> {
    body["hashes"].as_array().unwrap().iter().map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap()).collect()
}

fn key(c: &Client) -> VerifierKey {
    c.get(None, "/v1/ledger/key").text().trim().parse().unwrap()
}

fn checkpoint(c: &Client, api_key: &str, tenant: &str) -> Checkpoint {
    let note = c.post_raw(Some(api_key), "/v1/ledger/checkpoint", "text/plain", b"");
    assert_eq!(note.status, 201, "{}", note.text());
    let checkpoint = open_checkpoint(&note.text(), &[key(c)]).unwrap();
    assert_eq!(checkpoint.origin, format!("veritrail.local/{tenant}"));
    checkpoint
}

fn ingest(c: &Client, api_key: &str, prefix: &str, n: usize) {
    let batch: Vec<Value> = (0..n).map(|i| event(&format!("{prefix}{i}"), "proof.test", "u")).collect();
    assert_eq!(c.ingest(api_key, &Value::Array(batch)).status, 201);
}

#[test]
fn checkpoints_records_and_proofs_verify_with_the_published_key() {
    let server = TestServer::start();
    let c = &server.client;
    let (tenant, api_key) = c.create_tenant("acme");
    ingest(c, &api_key, "a", 37);
    let first = checkpoint(c, &api_key, &tenant);
    assert_eq!(first.size, 39, "2 lifecycle events + 37");
    let latest = c.get(Some(&api_key), "/v1/ledger/checkpoint");
    assert_eq!(latest.content_type.as_deref(), Some("text/plain; charset=utf-8"));
    assert_eq!(
        open_checkpoint(&latest.text(), &[key(c)]).unwrap().size,
        39,
        "not re-signed when the tree did not grow"
    );

    let records = c.get(Some(&api_key), "/v1/ledger/records?from=0&limit=39");
    assert_eq!(records.content_type.as_deref(), Some("application/x-ndjson"));
    let lines: Vec<&[u8]> = records.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 39);
    for (seq, line) in lines.iter().enumerate() {
        assert!(veritrail_ledger::jcs::is_canonical(line));
        let proof = c.get(Some(&api_key), &format!("/v1/ledger/proof/inclusion?seq={seq}&tree_size=39")).json();
        assert_eq!((proof["seq"].as_u64(), proof["tree_size"].as_u64()), (Some(seq as u64), Some(39)));
        verify_inclusion(&leaf_hash(line), seq as u64, 39, &hashes(&proof), &first.root).unwrap();
    }
    // The event's leaf_hash is the hash of its record bytes.
    let by_id = c.get(Some(&api_key), "/v1/events/a5").json();
    assert_eq!(by_id["leaf_hash"], STANDARD.encode(leaf_hash(lines[7]).0));

    ingest(c, &api_key, "b", 100);
    let second = checkpoint(c, &api_key, &tenant);
    let proof = c.get(Some(&api_key), &format!("/v1/ledger/proof/consistency?first=39&second={}", second.size)).json();
    verify_consistency(39, second.size, &hashes(&proof), &first.root, &second.root).unwrap();
    // Defaults: the latest checkpoint.
    let proof = c.get(Some(&api_key), "/v1/ledger/proof/consistency?first=39").json();
    assert_eq!(proof["second"].as_u64(), Some(second.size));
    let proof = c.get(Some(&api_key), "/v1/ledger/proof/inclusion?seq=3").json();
    assert!(proof["tree_size"].as_u64().unwrap() >= second.size);

    for bad in [
        "/v1/ledger/proof/inclusion?seq=500&tree_size=39",
        "/v1/ledger/proof/inclusion?seq=1&tree_size=999999",
        "/v1/ledger/proof/inclusion",
        "/v1/ledger/proof/consistency?first=50&second=40",
        "/v1/ledger/proof/consistency?first=-1",
        "/v1/ledger/records?limit=0",
        "/v1/ledger/records?from=x",
        "/v1/ledger/records?color=red",
    ] {
        assert_eq!(c.get(Some(&api_key), bad).error_code(), "invalid_query", "{bad}");
    }
}

#[test]
fn receipts_prove_inclusion_at_ingest() {
    let server = TestServer::start();
    let c = &server.client;
    let (tenant, api_key) = c.create_tenant("acme");
    let batch = json!([event("r1", "receipt.test", "u"), event("r2", "receipt.test", "u")]);
    let reply = c.post_json(Some(&api_key), "/v1/events?receipt=true", &batch);
    assert_eq!(reply.status, 201, "{}", reply.text());
    let body = reply.json();
    let checkpoint = open_checkpoint(body["checkpoint"].as_str().unwrap(), &[key(c)]).unwrap();
    assert_eq!(checkpoint.origin, format!("veritrail.local/{tenant}"));
    for receipt in body["events"].as_array().unwrap() {
        let seq = receipt["seq"].as_u64().unwrap();
        let leaf = Hash::from_base64(receipt["leaf_hash"].as_str().unwrap()).unwrap();
        let proof: Vec<Hash> = receipt["inclusion_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap())
            .collect();
        verify_inclusion(&leaf, seq, checkpoint.size, &proof, &checkpoint.root).unwrap();
    }
    assert_eq!(c.post_json(Some(&api_key), "/v1/events?receipt=maybe", &batch).error_code(), "invalid_query");
}

#[test]
fn checkpoints_are_issued_automatically_when_the_tree_grows() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, api_key) = c.create_tenant("acme");
    let initial = c.get(Some(&api_key), "/v1/ledger/checkpoint").text();
    assert_eq!(open_checkpoint(&initial, &[key(c)]).unwrap().size, 2);
    ingest(c, &api_key, "a", 10);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let note = c.get(Some(&api_key), "/v1/ledger/checkpoint").text();
        if open_checkpoint(&note, &[key(c)]).unwrap().size >= 12 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no checkpoint within 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn monitors_record_their_verifications() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, api_key) = c.create_tenant("acme");
    let report = json!({"tree_size": 2, "root": STANDARD.encode([7u8; 32]), "result": "ok", "detail": "consistent"});
    let reply = c.post_json(Some(&api_key), "/v1/ledger/verifications", &report);
    assert_eq!(reply.status, 201, "{}", reply.text());
    let seq = reply.json()["seq"].as_u64().unwrap();
    let records = c.get(Some(&api_key), &format!("/v1/ledger/records?from={seq}&limit=1")).text();
    let record: Value = serde_json::from_str(records.trim()).unwrap();
    assert_eq!(record["action"], "audit.verified");
    assert_eq!(record["metadata"]["verification"]["result"], "ok");
    let bad = json!({"tree_size": 2, "root": "short", "result": "ok"});
    assert_eq!(c.post_json(Some(&api_key), "/v1/ledger/verifications", &bad).error_code(), "invalid_value");
}

#[test]
fn storage_altered_underneath_the_server_raises_a_control_failure() {
    let server = TestServer::start();
    let c = &server.client;
    let (tenant, api_key) = c.create_tenant("acme");
    ingest(c, &api_key, "a", 20);
    let first = c.post_raw(Some(&api_key), "/v1/ledger/checkpoint", "text/plain", b"").text();
    let size = open_checkpoint(&first, &[key(c)]).unwrap().size;
    // An attacker with file (or superuser) access rewrites an already checkpointed leaf hash.
    let changed = match server.database() {
        None => {
            let db = rusqlite::Connection::open(server.data_dir().join("ledger.sqlite")).unwrap();
            db.busy_timeout(Duration::from_secs(5)).unwrap();
            db.execute(
                "UPDATE records SET leaf_hash = zeroblob(32) WHERE key = (SELECT max(key) FROM records \
                 WHERE key < ((SELECT no FROM tenants WHERE id = ?1) << 40) + ?2)",
                rusqlite::params![tenant, size as i64],
            )
            .unwrap()
        }
        // Past the append-only trigger, as only a superuser can.
        Some(database) => database
            .execute(&format!(
                "SET session_replication_role = replica; \
                 WITH changed AS (UPDATE records SET leaf_hash = decode(repeat('00', 32), 'hex') \
                 WHERE tenant_no = (SELECT no FROM tenants WHERE id = '{tenant}') AND seq = {size} - 1 RETURNING 1) \
                 SELECT count(*) FROM changed"
            ))
            .trim()
            .parse()
            .unwrap(),
    };
    assert_eq!(changed, 1);
    ingest(c, &api_key, "b", 5);
    let reply = c.post_raw(Some(&api_key), "/v1/ledger/checkpoint", "text/plain", b"");
    assert_eq!(reply.status, 500, "a forked ledger is never signed: {}", reply.text());
    assert!(reply.text().contains("self-check failed"));
    assert!(c.get(None, "/metrics").text().contains("veritrail_ledger_self_check_failures_total 1"));
    // The failure is on record in the ledger itself.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let found = c.get(Some(&api_key), "/v1/events?action=audit.control.failed").json();
        if let Some(event) = found["events"].as_array().unwrap().first() {
            assert_eq!(event["metadata"]["control"], "ledger.consistency");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no audit.control.failed event");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn key_rotation_keeps_old_checkpoints_verifiable() {
    let server = TestServer::start();
    let c = &server.client;
    let (tenant, api_key) = c.create_tenant("acme");
    let old_key = key(c);
    let old = c.post_raw(Some(&api_key), "/v1/ledger/checkpoint", "text/plain", b"").text();
    assert_eq!(c.post_raw(Some(&api_key), "/v1/ledger/keys/rotate", "application/json", b"").status, 403);
    let rotated =
        c.post_raw(Some(veritrail_test_support::BOOTSTRAP_TOKEN), "/v1/ledger/keys/rotate", "application/json", b"");
    assert_eq!(rotated.status, 201, "{}", rotated.text());
    let new_key = key(c);
    assert_ne!(new_key.to_string(), old_key.to_string());
    assert_eq!(rotated.json()["verifier_key"], new_key.to_string());
    ingest(c, &api_key, "after", 3);
    let new = checkpoint(c, &api_key, &tenant);
    assert!(
        open_checkpoint(&old, std::slice::from_ref(&new_key)).is_err(),
        "the old checkpoint was signed by the old key"
    );
    let published: Vec<VerifierKey> = c.get(None, "/v1/ledger/keys").json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["verifier_key"].as_str().unwrap().parse().unwrap())
        .collect();
    let old_checkpoint = open_checkpoint(&old, &published).unwrap();
    let proof = c
        .get(Some(&api_key), &format!("/v1/ledger/proof/consistency?first={}&second={}", old_checkpoint.size, new.size))
        .json();
    verify_consistency(old_checkpoint.size, new.size, &hashes(&proof), &old_checkpoint.root, &new.root).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while c.get(Some(&api_key), "/v1/events?action=audit.key.rotated").json()["events"].as_array().unwrap().len() != 1 {
        assert!(std::time::Instant::now() < deadline, "rotation not recorded");
        std::thread::sleep(Duration::from_millis(20));
    }
}
