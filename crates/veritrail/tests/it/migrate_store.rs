//! `veritrail migrate-store` with the real binary: a data directory copied to PostgreSQL and
//! back to a new data directory answers over HTTP as the original did (events by query and by
//! id, personal data readable, the erased subject still erased, the same checkpoint, new events
//! continuing the ledger consistently, keys, users, rules, alerts and webhooks); a non-empty
//! target, a wrong master key, a source whose records do not match its checkpoint and a
//! database a server still runs on are refused with a non-zero exit. These tests choose their backends themselves (xtask leaves them
//! out of the PostgreSQL pass).

use std::path::Path;
use std::process::Output;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use veritrail_ledger::checkpoint::open_checkpoint;
use veritrail_ledger::hash::{Hash, leaf_hash};
use veritrail_ledger::note::VerifierKey;
use veritrail_ledger::tree::verify_consistency;
use veritrail_test_support::postgres::TestDatabase;
use veritrail_test_support::{ChildServer, Client, event, wait_for};

use crate::privacy::bob_updates_patient;

const BINARY: &str = env!("CARGO_BIN_EXE_veritrail");

/// A master key no test store was written with.
const OTHER_MASTER_KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

fn migrate(from: &str, to: &str, master_key: Option<&str>) -> Output {
    let mut command = std::process::Command::new(BINARY);
    command.args(["migrate-store", "--from", from, "--to", to]).env("VERITRAIL_LOG", "warn");
    command.env_remove("VERITRAIL_MASTER_KEY").env_remove("VERITRAIL_MASTER_KEY_PREVIOUS");
    if let Some(key) = master_key {
        command.env("VERITRAIL_MASTER_KEY", key);
    }
    command.output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn embedded(dir: &Path, master_key: Option<&str>) -> ChildServer {
    let envs: Vec<(&str, &str)> = master_key.map(|key| ("VERITRAIL_MASTER_KEY", key)).into_iter().collect();
    ChildServer::start_with(BINARY, dir, &[], &envs)
}

fn path(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

fn ingest(c: &Client, key: &str, events: Value) -> Value {
    let reply = c.ingest(key, &events);
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()
}

/// Waits until `path` returns `count` events; returns them.
fn events_eventually(c: &Client, key: &str, path: &str, count: usize) -> Vec<Value> {
    wait_for(std::time::Duration::from_secs(10), || {
        let reply = c.get(Some(key), path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let events = reply.json()["events"].as_array().unwrap().clone();
        (events.len() == count).then_some(events)
    })
    .unwrap_or_else(|| panic!("{path}: never {count} events"))
}

fn alice(id: &str) -> Value {
    json!({
        "id": id, "action": "auth.login.success",
        "actor": {"id": "alice", "type": "user", "name": "Alice Liddell", "email": "Alice.Liddell@wonder.example"},
        "context": {"ip": "198.51.100.23", "user_agent": "AliceBrowser/7.1"},
    })
}

/// The latest stored checkpoint note of every tenant, read from a stopped data directory.
fn stored_checkpoints(dir: &Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(dir.join("ledger.sqlite")).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT t.id, c.note FROM tenants t JOIN checkpoints c ON c.tenant_no = t.no
             WHERE c.tree_size = (SELECT max(tree_size) FROM checkpoints WHERE tenant_no = t.no) ORDER BY t.no",
        )
        .unwrap();
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

fn checkpoint_of(notes: &[(String, String)], tenant: &str) -> String {
    notes.iter().find(|(id, _)| id == tenant).map(|(_, note)| note.clone()).unwrap()
}

/// What the source server showed, to compare the copy with.
struct Before {
    tenant: String,
    admin: String,
    reader: String,
    other_admin: String,
    rule_id: String,
    alert_id: String,
    webhook_id: String,
    verifier_key: String,
    bob: Value,
}

/// A source data directory with two tenants, personal data, an erased subject, a read-only API
/// key, a user, a custom rule that fired, a webhook and checkpoints; the server is stopped.
fn populate(dir: &Path) -> Before {
    let server = embedded(dir, None);
    let c = &server.client;
    let (tenant, admin) = c.create_tenant("acme");
    let (_, other_admin) = c.create_tenant("globex");
    let reader = c.create_key(&admin, &["events:read"]);
    let webhook = c.post_json(Some(&admin), "/v1/webhooks", &json!({"url": "https://hooks.example.com/veritrail"}));
    assert_eq!(webhook.status, 201, "{}", webhook.text());
    let rule = c.post_json(
        Some(&admin),
        "/v1/rules",
        &json!({"name": "Exports", "severity": "high", "when": {"action": "data.exported"},
                "group_by": ["actor.id"], "threshold": {"count": 1, "window": "5m"}}),
    );
    assert_eq!(rule.status, 201, "{}", rule.text());
    let user = c.post_json(
        Some(&admin),
        "/v1/users",
        &json!({"email": "carol@acme.example", "password": "correct horse battery staple", "role": "auditor"}),
    );
    assert_eq!(user.status, 201, "{}", user.text());

    ingest(
        c,
        &admin,
        json!([alice("a1"), bob_updates_patient("b1"), alice("a2"), event("x1", "data.exported", "dave")]),
    );
    ingest(c, &other_admin, json!([event("g1", "data.read", "erin")]));
    events_eventually(c, &admin, "/v1/events?actor_email=alice.liddell@wonder.example", 2);
    let erased = c.delete(Some(&admin), "/v1/subjects/alice");
    assert_eq!(erased.status, 200, "{}", erased.text());
    let rule_id = rule.json()["id"].as_str().unwrap().to_string();
    let alert = wait_for(std::time::Duration::from_secs(10), || {
        let alerts = c.get(Some(&admin), "/v1/alerts").json()["alerts"].as_array().unwrap().clone();
        alerts.into_iter().find(|alert| alert["rule"] == rule_id.as_str())
    })
    .expect("the custom rule fired");
    let checkpoint = c.post_json(Some(&admin), "/v1/ledger/checkpoint", &json!({}));
    assert_eq!(checkpoint.status, 201, "{}", checkpoint.text());
    let before = Before {
        tenant,
        bob: c.get(Some(&admin), "/v1/events/b1").json(),
        reader,
        other_admin,
        rule_id,
        alert_id: alert["id"].as_str().unwrap().to_string(),
        webhook_id: webhook.json()["id"].as_str().unwrap().to_string(),
        verifier_key: c.get(None, "/v1/ledger/key").text().trim().to_string(),
        admin,
    };
    assert!(server.signal_and_wait("TERM").success());
    before
}

#[test]
fn a_data_directory_moves_to_postgresql_and_back_and_carries_on_where_it_was() {
    let source = tempfile::tempdir().unwrap();
    let before = populate(source.path());
    let master_key = std::fs::read_to_string(source.path().join("master.key")).unwrap().trim().to_string();
    let checkpoints = stored_checkpoints(source.path());
    let sealed: Vec<Vec<u8>> = {
        let conn = rusqlite::Connection::open(source.path().join("ledger.sqlite")).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT r.sealed FROM records r JOIN tenants t ON t.no = r.tenant_no WHERE t.id = ?1 ORDER BY r.key",
            )
            .unwrap();
        stmt.query_map([&before.tenant], |row| row.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };
    let records = sealed.len() as u64;
    let database = TestDatabase::create();

    // PostgreSQL needs the master key the data directory was written with.
    let refused = migrate(path(source.path()), &database.url, None);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("VERITRAIL_MASTER_KEY"), "{}", text(&refused));

    let to_pg = migrate(path(source.path()), &database.url, Some(&master_key));
    assert!(to_pg.status.success(), "{}", text(&to_pg));
    assert!(text(&to_pg).contains(&format!("tenant {}: {records} records", before.tenant)), "{}", text(&to_pg));

    // Once there, the database is not empty any more.
    let again = migrate(path(source.path()), &database.url, Some(&master_key));
    assert!(!again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("not empty") && text(&again).contains("tenants: 3 rows"), "{}", text(&again));

    let target = tempfile::tempdir().unwrap();
    let target_dir = target.path().join("data");
    let back = migrate(&database.url, path(&target_dir), Some(&master_key));
    assert!(back.status.success(), "{}", text(&back));
    assert!(!target_dir.join("master.key").exists(), "the environment's key is used, as serve would");

    let server = embedded(&target_dir, Some(&master_key));
    let c = &server.client;
    // The same latest checkpoint, byte for byte, signed by the same key.
    let note = c.get(Some(&before.admin), "/v1/ledger/checkpoint").text();
    assert_eq!(note, checkpoint_of(&checkpoints, &before.tenant));
    assert_eq!(c.get(None, "/v1/ledger/key").text().trim(), before.verifier_key);
    let verifier: VerifierKey = before.verifier_key.parse().unwrap();
    let old = open_checkpoint(&note, std::slice::from_ref(&verifier)).unwrap();
    assert_eq!(old.size, records);

    // New events continue the ledger after the copied records, which are the source's bytes.
    // (The rule engine may append first what the source's had not evaluated yet when stopped.)
    let appended = ingest(c, &before.admin, json!(event("after-1", "data.read", "frank")));
    let seq = appended["events"][0]["seq"].as_u64().unwrap();
    assert!(seq >= records, "{seq} < {records}");
    let copied = c.get(Some(&before.admin), &format!("/v1/ledger/records?from=0&limit={}", seq + 1));
    let copied: Vec<&[u8]> = copied.body.split(|b| *b == b'\n').filter(|line| !line.is_empty()).collect();
    assert_eq!(copied.len() as u64, seq + 1);
    for (i, bytes) in sealed.iter().enumerate() {
        assert_eq!(copied[i], bytes.as_slice(), "record {i} differs");
    }
    let after: Value = serde_json::from_slice(copied[seq as usize]).unwrap();
    assert_eq!(after["id"], "after-1");

    // Events by id and by query, personal data readable, the erased subject erased.
    let bob = c.get(Some(&before.admin), "/v1/events/b1");
    assert_eq!(bob.status, 200, "{}", bob.text());
    let bob = bob.json();
    assert_eq!(bob, before.bob);
    assert_eq!(bob["actor"]["email"], "bob.baker@clinic.example");
    assert_eq!(bob["changes"]["after"]["note"], "Diagnosis: chronic teapot");
    let a1 = c.get(Some(&before.admin), "/v1/events/a1").json();
    assert_eq!((a1["actor"]["email"].as_str(), a1["context"]["ip"].as_str()), (Some("[erased]"), Some("[erased]")));
    let by_email = events_eventually(c, &before.admin, "/v1/events?actor_email=bob.baker@clinic.example", 1);
    assert_eq!(by_email[0]["id"], "b1");
    events_eventually(c, &before.admin, "/v1/events?actor_email=alice.liddell@wonder.example", 0);
    events_eventually(c, &before.admin, "/v1/events?resource_id=r-1", 1);
    events_eventually(c, &before.other_admin, "/v1/events?action=data.read", 1);

    // API keys, users, rules, alerts and webhooks came along.
    assert_eq!(c.get(Some(&before.reader), "/v1/events?limit=1").status, 200);
    let users = c.get(Some(&before.admin), "/v1/users").json();
    assert!(users.to_string().contains("carol@acme.example"), "{users}");
    let login = c.post_json(
        None,
        "/v1/sessions",
        &json!({"tenant": before.tenant, "email": "carol@acme.example", "password": "correct horse battery staple"}),
    );
    assert_eq!(login.status, 201, "{}", login.text());
    assert_eq!(c.get(Some(&before.admin), &format!("/v1/rules/{}", before.rule_id)).status, 200);
    let alert = c.get(Some(&before.admin), &format!("/v1/alerts/{}", before.alert_id));
    assert_eq!(alert.status, 200, "{}", alert.text());
    assert_eq!(alert.json()["rule"], before.rule_id.as_str());
    let webhooks = c.get(Some(&before.admin), "/v1/webhooks").json();
    assert!(webhooks.to_string().contains(&before.webhook_id), "{webhooks}");

    // A new checkpoint is consistent with the migrated one.
    let new_note = c.post_json(Some(&before.admin), "/v1/ledger/checkpoint", &json!({})).text();
    let new = open_checkpoint(&new_note, std::slice::from_ref(&verifier)).unwrap();
    assert!(new.size > old.size);
    let proof =
        c.get(Some(&before.admin), &format!("/v1/ledger/proof/consistency?first={}&second={}", old.size, new.size));
    assert_eq!(proof.status, 200, "{}", proof.text());
    let hashes: Vec<Hash> = proof.json()["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| Hash(STANDARD.decode(h.as_str().unwrap()).unwrap().try_into().unwrap()))
        .collect();
    verify_consistency(old.size, new.size, &hashes, &old.root, &new.root).unwrap();
}

#[test]
fn a_target_that_is_not_empty_is_refused() {
    let (source, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [source.path(), target.path()] {
        let server = embedded(dir, None);
        server.client.create_tenant("acme");
        assert!(server.signal_and_wait("TERM").success());
    }
    let refused = migrate(path(source.path()), path(target.path()), None);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("not empty") && text(&refused).contains("2 tenants"), "{}", text(&refused));
}

#[test]
fn a_wrong_master_key_is_refused_and_nothing_is_written() {
    let source = tempfile::tempdir().unwrap();
    let server = embedded(source.path(), None);
    let (_, key) = server.client.create_tenant("acme");
    ingest(&server.client, &key, json!([alice("a1")]));
    assert!(server.signal_and_wait("TERM").success());
    let database = TestDatabase::create();
    let refused = migrate(path(source.path()), &database.url, Some(OTHER_MASTER_KEY));
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("master key does not open"), "{}", text(&refused));
    let tenants = database.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'tenants'");
    assert_eq!(tenants.trim(), "0", "nothing was written");
}

#[test]
fn a_source_whose_records_do_not_match_their_checkpoint_is_refused() {
    let source = tempfile::tempdir().unwrap();
    let server = embedded(source.path(), None);
    let (tenant, key) = server.client.create_tenant("acme");
    ingest(&server.client, &key, json!([event("e1", "data.read", "u1"), event("e2", "data.read", "u2")]));
    assert_eq!(server.client.post_json(Some(&key), "/v1/ledger/checkpoint", &json!({})).status, 201);
    assert!(server.signal_and_wait("TERM").success());

    // One sealed record rewritten, its leaf hash with it: only the checkpoints can tell.
    let conn = rusqlite::Connection::open(source.path().join("ledger.sqlite")).unwrap();
    let (row_key, sealed): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT r.key, r.sealed FROM records r JOIN tenants t ON t.no = r.tenant_no
             WHERE t.id = ?1 AND r.event_id = 'e2'",
            [&tenant],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    let forged = String::from_utf8(sealed).unwrap().replace("\"u2\"", "\"u3\"").into_bytes();
    conn.execute(
        "UPDATE records SET sealed = ?2, leaf_hash = ?3 WHERE key = ?1",
        rusqlite::params![row_key, forged, leaf_hash(&forged).0.as_slice()],
    )
    .unwrap();
    drop(conn);

    let target = tempfile::tempdir().unwrap();
    let target_dir = target.path().join("copy");
    let refused = migrate(path(source.path()), path(&target_dir), None);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let output = text(&refused);
    assert!(output.contains(&format!("tenant {tenant}: checkpoint at size")), "{output}");
    assert!(!target_dir.join("ledger.sqlite").exists(), "nothing copied");
}

#[test]
fn a_database_a_server_runs_on_is_refused_until_it_stops() {
    let database = TestDatabase::create();
    let (dir, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master_key = STANDARD.encode([7u8; 32]);
    let envs = [("VERITRAIL_MASTER_KEY", master_key.as_str())];
    let server = ChildServer::start_with(BINARY, dir.path(), &["--database-url", &database.url], &envs);
    let (_, key) = server.client.create_tenant("acme");
    ingest(&server.client, &key, json!([alice("a1")]));
    let copy_to = target.path().join("data");
    let refused = migrate(&database.url, path(&copy_to), Some(&master_key));
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("stop every server first"), "{}", text(&refused));
    assert!(!copy_to.join("ledger.sqlite").exists(), "nothing was written");
    // Its connections close with it (their backends may linger a moment): then it goes.
    assert!(server.signal_and_wait("TERM").success());
    let copied = migrate(&database.url, path(&copy_to), Some(&master_key));
    assert!(copied.status.success(), "{}", text(&copied));
}
