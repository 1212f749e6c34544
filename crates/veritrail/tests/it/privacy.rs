//! Privacy by design (issue 5) against the real binary: personal data never on disk in clear,
//! blind-index lookups, masking without `pii:read`, erasure by crypto-shredding with the ledger
//! verifying unchanged, subject access and consents, legal holds, master-key rotation.

use std::path::Path;

use serde_json::{Value, json};
use veritrail_test_support::postgres::TableDump;
use veritrail_test_support::webhook::WebhookReceiver;
use veritrail_test_support::{BOOTSTRAP_TOKEN, Backend, ChildServer, Client};

use crate::ledger::{Run, verify};

const BINARY: &str = env!("CARGO_BIN_EXE_veritrail");

/// Personal values the tests write; none may appear in clear in any file.
const SECRETS: &[&str] = &[
    "alice.liddell@wonder.example",
    "Alice Liddell",
    "198.51.100.23",
    "AliceBrowser/7.1",
    "Oxford, Rabbit Hole",
    "bob.baker@clinic.example",
    "Bob Baker",
    "203.0.113.99",
    "Diagnosis: chronic teapot",
];

fn alice_event(id: &str) -> Value {
    json!({
        "id": id, "action": "auth.login.success",
        "actor": {"id": "alice", "type": "user", "name": "Alice Liddell", "email": "Alice.Liddell@wonder.example"},
        "context": {"ip": "198.51.100.23", "user_agent": "AliceBrowser/7.1", "location": "Oxford, Rabbit Hole"},
    })
}

/// An update of patient-7's record by Bob, with personal data and a PHI-labelled `changes`.
pub(crate) fn bob_updates_patient(id: &str) -> Value {
    json!({
        "id": id, "action": "data.updated",
        "actor": {"id": "bob", "type": "user", "name": "Bob Baker", "email": "bob.baker@clinic.example"},
        "resource": {"type": "record", "id": "r-1"},
        "context": {"ip": "203.0.113.99"},
        "data_subject": "patient-7",
        "sensitivity": ["phi"],
        "changes": {"before": {"note": "none"}, "after": {"note": "Diagnosis: chronic teapot"}},
    })
}

fn ingest(client: &Client, key: &str, events: Value) {
    let reply = client.ingest(key, &events);
    assert_eq!(reply.status, 201, "{}", reply.text());
}

/// Waits until `path` returns `count` events.
fn events_eventually(client: &Client, key: &str, path: &str, count: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = client.get(Some(key), path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let events = reply.json()["events"].as_array().unwrap().clone();
        if events.len() == count {
            return events;
        }
        assert!(std::time::Instant::now() < deadline, "{path}: {} events, wanted {count}", events.len());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// What the server over a data directory stored: its files, and on PostgreSQL its database's
/// rows (the cluster's files are shared with other tests' databases).
struct Stored<'a> {
    dir: &'a Path,
    tables: Option<TableDump>,
}

impl Stored<'_> {
    fn of(dir: &Path) -> Stored<'_> {
        Stored { dir, tables: Backend::from_env().database_for(dir).map(|database| database.table_dump()) }
    }

    /// Where `needle` is in clear.
    fn places_of(&self, needle: &str) -> Vec<String> {
        let mut found = files_containing(self.dir, needle.as_bytes());
        if self.tables.as_ref().is_some_and(|tables| tables.contains(needle)) {
            found.push("the database's tables".into());
        }
        found
    }
}

fn assert_verified(run: Run) {
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.starts_with("ok: "), "{run:#?}");
}

/// `veritrail verify --data-dir`, where the ledger is in the data directory (not on PostgreSQL).
fn assert_data_dir_verified(dir: &Path) {
    if Backend::from_env() == Backend::Sqlite {
        assert_verified(verify(&["--data-dir", dir.to_str().unwrap()]));
    }
}

#[test]
fn personal_data_is_never_written_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = WebhookReceiver::start();
    let server = ChildServer::start_with(BINARY, dir.path(), &["--webhook-allow-private"], &[]);
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    let webhook = c.post_json(Some(&key), "/v1/webhooks", &json!({"url": receiver.url}));
    assert_eq!(webhook.status, 201, "{}", webhook.text());
    let secret = webhook.json()["secret"].as_str().unwrap().to_string();
    ingest(c, &key, json!([alice_event("a1"), alice_event("a2"), bob_updates_patient("b1")]));
    // Failed logins from alice's address: the brute-force alert is grouped by actor and IP.
    let failures: Vec<Value> = (0..6)
        .map(|i| {
            let mut failed = alice_event(&format!("f{i}"));
            failed["action"] = json!("auth.login.failed");
            failed["outcome"] = json!("failure");
            failed
        })
        .collect();
    ingest(c, &key, json!(failures));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let alert = loop {
        let alerts = c.get(Some(&key), "/v1/alerts?rule=brute_force").json();
        if let Some(alert) = alerts["alerts"].as_array().and_then(|a| a.first()) {
            break alert.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no brute-force alert: {alerts}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(alert["group_key"]["context.ip"], "198.51.100.23", "readable through the API: {alert}");
    while receiver.received().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the webhook was not delivered");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        String::from_utf8_lossy(&receiver.received()[0].body).contains("198.51.100.23"),
        "the receiver gets the clear alert"
    );
    // Reads of every kind, filters by personal values included (they are not logged in clear).
    events_eventually(c, &key, "/v1/events?actor_email=alice.liddell@wonder.example", 8);
    events_eventually(c, &key, "/v1/events?ip=203.0.113.99", 1);
    assert_eq!(c.get(Some(&key), "/v1/events?q=teapot").status, 200);
    assert_eq!(c.get(Some(&key), "/v1/events/a1").status, 200);
    assert_eq!(c.get(Some(&key), "/v1/export?format=csv").status, 200);
    assert_eq!(c.get(Some(&key), "/v1/subjects/alice/export").status, 200);
    let status = server.signal_and_wait("TERM");
    assert!(status.success(), "{status:?}");
    let webhook_secret = [secret.as_str()];
    let stored = Stored::of(dir.path());
    for secret in SECRETS.iter().chain(&webhook_secret) {
        for needle in [secret.to_string(), secret.to_lowercase()] {
            let found = stored.places_of(&needle);
            assert!(found.is_empty(), "{needle:?} is in clear in {found:?}");
        }
    }
}

#[test]
fn blind_index_finds_exactly_the_right_events_and_only_in_the_right_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(BINARY, dir.path());
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    let (_, other) = c.create_tenant("globex");
    ingest(c, &key, json!([alice_event("a1"), bob_updates_patient("b1"), alice_event("a2")]));
    ingest(c, &other, json!([alice_event("g1")]));
    // Case-insensitive on e-mail, as before encryption; exact on IP.
    let found = events_eventually(c, &key, "/v1/events?actor_email=ALICE.liddell@wonder.example&order=asc", 2);
    let ids: Vec<&str> = found.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a1", "a2"]);
    assert_eq!(found[0]["actor"]["email"], "Alice.Liddell@wonder.example");
    let found = events_eventually(c, &key, "/v1/events?ip=203.0.113.99", 1);
    assert_eq!(found[0]["id"], "b1");
    events_eventually(c, &key, "/v1/events?actor_email=nobody@wonder.example", 0);
    // The other tenant's index is keyed differently: it finds its own event, never acme's.
    let found = events_eventually(c, &other, "/v1/events?actor_email=alice.liddell@wonder.example", 1);
    assert_eq!(found[0]["id"], "g1");
}

#[test]
fn readers_without_pii_read_see_masked_values_and_unmasked_sensitive_reads_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(BINARY, dir.path());
    let c = &server.client;
    let (_, admin) = c.create_tenant("acme");
    let reader = c.create_key(&admin, &["events:read"]);
    let trusted = c.create_key(&admin, &["events:read", "pii:read"]);
    ingest(c, &admin, json!([alice_event("a1"), bob_updates_patient("b1")]));
    let masked = events_eventually(c, &reader, "/v1/events?order=asc&action=auth.login.*,data.*", 2);
    assert_eq!(masked[0]["actor"]["email"], "A***@w***.example");
    assert_eq!(masked[0]["actor"]["name"], "A*** L***");
    assert_eq!(masked[0]["context"]["ip"], "198.51.100.x");
    assert_eq!(masked[0]["actor"]["id"], "alice", "identifiers stay readable");
    assert_eq!(masked[1]["changes"], "[masked]");
    let csv = c.get(Some(&reader), "/v1/export?format=csv").text();
    assert!(!csv.contains("Alice Liddell") && csv.contains("A*** L***"), "{csv}");
    let one = c.get(Some(&reader), "/v1/events/b1").json();
    assert_eq!(one["actor"]["email"], "b***@c***.example");

    let clear = events_eventually(c, &trusted, "/v1/events?order=asc&action=auth.login.*,data.*", 2);
    assert_eq!(clear[0]["actor"]["email"], "Alice.Liddell@wonder.example");
    assert_eq!(clear[1]["changes"]["after"]["note"], "Diagnosis: chronic teapot");
    let logged = events_eventually(c, &admin, "/v1/events?action=data.sensitive.accessed", 1);
    assert_eq!(logged[0]["metadata"]["event_ids"], json!(["b1"]));
    assert_eq!(logged[0]["metadata"]["data_subjects"], json!(["patient-7"]));
    // Personal filter values are withheld from the self-audit trail.
    c.get(Some(&trusted), "/v1/events?actor_email=alice.liddell@wonder.example");
    // Its self-audit event is indexed within a second; every read naming a personal filter
    // (there is exactly this one) shows the value withheld.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reads = c.get(Some(&admin), "/v1/events?action=audit.read&limit=1000").json();
        let named: Vec<&Value> = reads["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|read| read["metadata"]["query"].get("actor_email"))
            .collect();
        if !named.is_empty() {
            assert_eq!(named, [&json!("[personal data withheld]")]);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the query's audit.read was never indexed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn erasure_shreds_one_subject_everywhere_and_the_ledger_verifies_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(BINARY, dir.path());
    let c = &server.client;
    let (tenant, key) = c.create_tenant("acme");
    ingest(c, &key, json!([alice_event("a1"), bob_updates_patient("b1"), alice_event("a2")]));
    events_eventually(c, &key, "/v1/events?actor_email=alice.liddell@wonder.example", 2);
    let checkpoint_before = c.post_json(Some(&key), "/v1/ledger/checkpoint", &json!({})).text();
    let records_before = c.get(Some(&key), "/v1/ledger/records?from=0&limit=1000").body;

    // A legal hold blocks erasure with a clear 409 until released.
    let hold = c.put_json(Some(&key), "/v1/subjects/alice/legal-hold", &json!({"reason": "litigation 42"}));
    assert_eq!(hold.status, 200, "{}", hold.text());
    let refused = c.delete(Some(&key), "/v1/subjects/alice");
    assert_eq!((refused.status, refused.error_code()), (409, "legal_hold".to_string()), "{}", refused.text());
    assert_eq!(c.delete(Some(&key), "/v1/subjects/alice/legal-hold").status, 200);

    let erased = c.delete(Some(&key), "/v1/subjects/alice");
    assert_eq!(erased.status, 200, "{}", erased.text());
    let erased = erased.json();
    assert!(erased["keys_destroyed"].as_u64().unwrap() >= 1, "{erased}");
    assert_eq!(erased["events_affected"], 2);

    // Alice's personal fields read as erased through every endpoint; bob's are untouched.
    let a1 = c.get(Some(&key), "/v1/events/a1").json();
    assert_eq!(a1["actor"]["email"], "[erased]");
    assert_eq!(a1["actor"]["name"], "[erased]");
    assert_eq!(a1["context"]["ip"], "[erased]");
    assert_eq!(a1["actor"]["id"], "alice");
    let b1 = c.get(Some(&key), "/v1/events/b1").json();
    assert_eq!(b1["actor"]["email"], "bob.baker@clinic.example");
    assert_eq!(b1["changes"]["after"]["note"], "Diagnosis: chronic teapot");
    events_eventually(c, &key, "/v1/events?actor_email=alice.liddell@wonder.example", 0);
    for path in ["/v1/export?format=csv", "/v1/export?format=jsonl", "/v1/subjects/alice/export", "/v1/events?q=Alice"]
    {
        let body = c.get(Some(&key), path).text();
        assert!(!body.contains("Liddell") && !body.contains("198.51.100.23"), "{path}: {body}");
    }
    let performed = events_eventually(c, &key, "/v1/events?action=audit.erasure.performed", 1);
    assert_eq!(performed[0]["metadata"]["subject"], "alice");

    // Erasing the patient removes the data about them, not the doctor's own data.
    let erased = c.delete(Some(&key), "/v1/subjects/patient-7").json();
    assert_eq!(erased["retention_conflicts"][0]["framework"], "HIPAA", "{erased}");
    let b1 = c.get(Some(&key), "/v1/events/b1").json();
    assert_eq!(b1["changes"], "[erased]");
    assert_eq!(b1["actor"]["email"], "bob.baker@clinic.example");

    // The ledger is byte for byte what it was, proofs still hold, and it verifies.
    let records_after = c.get(Some(&key), "/v1/ledger/records?from=0&limit=1000").body;
    assert!(records_after.starts_with(&records_before), "sealed records changed");
    let size: u64 = checkpoint_before.lines().nth(1).unwrap().parse().unwrap();
    let consistency = c.get(Some(&key), &format!("/v1/ledger/proof/consistency?first={size}&second={size}"));
    assert_eq!(consistency.status, 200, "{}", consistency.text());
    let url = c.base().to_string();
    assert_verified(verify(&["--url", &url, "--token", &key]));
    let bundle = c.get(Some(&key), "/v1/export?format=ledger");
    let verifier_key = c.get(None, "/v1/ledger/key").text().trim().to_string();
    drop(server);
    let file = dir.path().join("bundle.jsonl");
    std::fs::write(&file, &bundle.body).unwrap();
    assert_verified(verify(&["--bundle", file.to_str().unwrap(), "--key", &verifier_key]));
    std::fs::remove_file(&file).unwrap();
    assert_data_dir_verified(dir.path());
    assert!(!tenant.is_empty());
}

#[test]
fn a_legal_hold_placed_while_an_erasure_runs_is_never_overtaken_by_it() {
    // Each round races an erasure of one subject against a hold placed on it a little later.
    // Either the hold came first (the erasure is refused) or the erasure did, and then its
    // `audit.erasure.performed` precedes the hold's `audit.legal_hold.placed` in the ledger.
    // Before erasures claimed the subject, a hold placed while the erasure read the subject's
    // events was answered 200 and the erasure went ahead anyway.
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(BINARY, dir.path());
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    const ROUNDS: usize = 16;
    let events: Vec<Value> = (0..ROUNDS)
        .flat_map(|round| {
            (0..40).map(move |n| {
                let mut event = alice_event(&format!("s{round}-{n}"));
                event["actor"]["id"] = json!(format!("subject-{round}"));
                event
            })
        })
        .collect();
    ingest(c, &key, Value::Array(events));
    events_eventually(c, &key, &format!("/v1/events?actor_id=subject-{}&limit=1000", ROUNDS - 1), 40);
    let mut outcomes = Vec::new();
    for round in 0..ROUNDS {
        let path = format!("/v1/subjects/subject-{round}");
        let start = std::sync::Barrier::new(2);
        let (erased, held) = std::thread::scope(|scope| {
            let eraser = scope.spawn(|| {
                let client = Client::new(c.base());
                start.wait();
                client.delete(Some(&key), &path)
            });
            let holder = scope.spawn(|| {
                let client = Client::new(c.base());
                start.wait();
                std::thread::sleep(std::time::Duration::from_micros(500 * round as u64));
                client.put_json(Some(&key), &format!("{path}/legal-hold"), &json!({"reason": "litigation"}))
            });
            (eraser.join().unwrap(), holder.join().unwrap())
        });
        assert_eq!(held.status, 200, "round {round}: {}", held.text());
        match (erased.status, erased.error_code().as_str()) {
            (200, _) => outcomes.push(round),
            (409, "legal_hold") => {}
            _ => panic!("round {round}: erasure answered {}: {}", erased.status, erased.text()),
        }
    }
    let seq_of = |action: &str, subject: &str| {
        let path = format!("/v1/events?action={action}&limit=1000");
        let page = c.get(Some(&key), &path).json();
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["metadata"]["subject"] == subject)
            .map(|e| e["seq"].as_u64().unwrap())
    };
    for round in outcomes {
        let subject = format!("subject-{round}");
        let both = veritrail_test_support::wait_for(std::time::Duration::from_secs(10), || {
            Some((seq_of("audit.erasure.performed", &subject)?, seq_of("audit.legal_hold.placed", &subject)?))
        });
        let (erased_at, held_at) = both.unwrap_or_else(|| panic!("{subject}: audit events missing"));
        assert!(erased_at < held_at, "{subject}: hold placed (seq {held_at}) before the erasure (seq {erased_at}) ran");
    }
}

#[test]
fn subject_access_report_and_consents_fold_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(BINARY, dir.path());
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    let consent = |id: &str, action: &str, purposes: Value| {
        json!({"id": id, "action": action, "actor": {"id": "patient-7", "type": "user"}, "data_subject": "patient-7",
               "metadata": {"consent": {"consent_id": "c-1", "purposes": purposes, "legal_basis": "consent",
                                        "notice_version": "v3", "method": "web_form"}}})
    };
    ingest(
        c,
        &key,
        json!([
            bob_updates_patient("b1"),
            consent("c1", "consent.granted", json!(["marketing", "research"])),
            consent("c2", "consent.revoked", json!(["marketing"])),
            {"id": "r1", "action": "data.read", "actor": {"id": "bob", "type": "user", "roles": ["doctor"]},
             "data_subject": "patient-7", "reason": "treatment"},
        ]),
    );
    events_eventually(c, &key, "/v1/events?data_subject=patient-7", 4);
    let report = c.get(Some(&key), "/v1/subjects/patient-7/export");
    assert_eq!(report.status, 200, "{}", report.text());
    let report = report.json();
    assert_eq!(report["confirmation"]["processed"], true);
    assert_eq!(report["personal_data"].as_array().unwrap().len(), 4);
    assert!(!report.to_string().contains("bob.baker@clinic.example"), "other people's data: {report}");
    assert_eq!(report["consultation_log"][0]["operation"], "data.read");
    assert_eq!(report["consultation_log"][0]["purpose"], "treatment");
    assert!(report["consultation_log"][0].get("accessor").is_none(), "accessors withheld by default");
    assert!(report["purposes"].as_array().unwrap().contains(&json!("treatment")));
    events_eventually(c, &key, "/v1/events?action=audit.dsar.completed", 1);

    // Disclosing accessors needs a recorded justification.
    let refused = c.put_json(Some(&key), "/v1/privacy/settings", &json!({"dsar_include_accessors": true}));
    assert_eq!(refused.status, 400, "{}", refused.text());
    let settings = json!({"dsar_include_accessors": true, "justification": "works council agreement 2026-4"});
    assert_eq!(c.put_json(Some(&key), "/v1/privacy/settings", &settings).status, 200);
    let report = c.get(Some(&key), "/v1/subjects/patient-7/export").json();
    assert_eq!(report["consultation_log"][0]["accessor"]["id"], "bob");

    let consents = c.get(Some(&key), "/v1/subjects/patient-7/consents");
    assert_eq!(consents.status, 200, "{}", consents.text());
    let consents = consents.json();
    let state: Vec<(&str, &str)> = consents["consents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["purpose"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(state, [("marketing", "revoked"), ("research", "granted")]);
    let proof = &consents["consents"][1]["event"]["inclusion_proof"];
    assert!(proof["tree_size"].as_u64().unwrap() > 0 && proof["hashes"].is_array(), "{consents}");
    assert!(consents["checkpoint"].as_str().unwrap().contains("\n\n— "), "{consents}");
}

#[test]
fn master_key_rotation_rewraps_keys_and_changes_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = ChildServer::start(BINARY, data);
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    ingest(c, &key, json!([alice_event("a1"), bob_updates_patient("b1")]));
    let records = c.get(Some(&key), "/v1/ledger/records?from=0&limit=1000").body;
    drop(server);
    let old_key = std::fs::read_to_string(data.join("master.key")).unwrap();

    let rotate = std::process::Command::new(BINARY)
        .args(["rotate-master-key", "--data-dir"])
        .arg(data)
        .env("VERITRAIL_LOG", "warn")
        .env_remove("VERITRAIL_MASTER_KEY")
        .output()
        .unwrap();
    assert!(rotate.status.success(), "{rotate:?}");
    let new_key = std::fs::read_to_string(data.join("master.key")).unwrap();
    assert_ne!(old_key, new_key);
    // Installation secrets are sealed too: the pepper, and every signing-key seed (the verifier
    // keys beside them stay readable for `verify --data-dir`).
    let ledger = rusqlite::Connection::open(data.join("ledger.sqlite")).unwrap();
    let setting = |name: &str| -> String {
        let value: Vec<u8> =
            ledger.query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| r.get(0)).unwrap();
        String::from_utf8(value).unwrap()
    };
    assert!(setting("auth.pepper").starts_with("vtk1:"));
    let keys: Value = serde_json::from_str(&setting("ledger.signing_keys")).unwrap();
    assert!(keys[0]["seed"].as_str().unwrap().starts_with("vtk1:"), "{keys}");
    assert!(keys[0]["verifier_key"].as_str().unwrap().starts_with("veritrail.local+"));
    drop(ledger);
    assert!(!data.join("master.key.previous").exists());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(data.join("master.key")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let server = ChildServer::start(BINARY, data);
    let c = &server.client;
    let a1 = c.get(Some(&key), "/v1/events/a1").json();
    assert_eq!(a1["actor"]["email"], "Alice.Liddell@wonder.example");
    assert_eq!(c.get(Some(&key), "/v1/ledger/records?from=0&limit=1000").body[..records.len()], records[..]);
    drop(server);
    assert_verified(verify(&["--data-dir", data.to_str().unwrap()]));

    // The old key alone no longer opens anything: the data keys are wrapped under the new one.
    std::fs::write(data.join("master.key"), &old_key).unwrap();
    let refused = std::process::Command::new(BINARY)
        .args(["reindex", "--data-dir"])
        .arg(data)
        .env("VERITRAIL_LOG", "warn")
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("master key"), "{stderr}");
}

#[test]
fn a_key_from_the_environment_rotates_by_restart_with_the_previous_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (old, new) = ("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=");
    let server = ChildServer::start_with(BINARY, data, &[], &[("VERITRAIL_MASTER_KEY", old)]);
    let (_, key) = server.client.create_tenant("acme");
    ingest(&server.client, &key, json!([alice_event("a1")]));
    drop(server);
    assert!(!data.join("master.key").exists(), "no key file when the key is configured");
    let env = [("VERITRAIL_MASTER_KEY", new), ("VERITRAIL_MASTER_KEY_PREVIOUS", old)];
    let server = ChildServer::start_with(BINARY, data, &[], &env);
    assert_eq!(server.client.get(Some(&key), "/v1/events/a1").json()["actor"]["name"], "Alice Liddell");
    drop(server);
    // Re-wrapped at that start: the new key alone now reads everything.
    let server = ChildServer::start_with(BINARY, data, &[], &[("VERITRAIL_MASTER_KEY", new)]);
    assert_eq!(server.client.get(Some(&key), "/v1/events/a1").json()["actor"]["name"], "Alice Liddell");
}

#[test]
fn fields_a_tenant_declares_personal_are_sealed_masked_and_erased_like_the_built_in_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(BINARY, dir.path());
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    let reader = c.create_key(&key, &["events:read"]);
    let bad = c.put_json(Some(&key), "/v1/privacy/classification", &json!({"fields": {"actor.id": "pii"}}));
    assert_eq!((bad.status, bad.error_code()), (400, "invalid_value".to_string()), "{}", bad.text());
    let bad = c.put_json(Some(&key), "/v1/privacy/classification", &json!({"fields": {"metadata.x": "secret"}}));
    assert_eq!(bad.status, 400, "{}", bad.text());
    let fields = json!({"fields": {"metadata.patient.name": "phi", "metadata.card_holder": "pci"}});
    let set = c.put_json(Some(&key), "/v1/privacy/classification", &fields);
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(c.get(Some(&key), "/v1/privacy/classification").json(), fields);
    let event = json!({
        "id": "m1", "action": "data.read", "actor": {"id": "nurse-1", "type": "user"}, "data_subject": "p-9",
        "metadata": {"patient": {"name": "Quincy Patientname", "ward": 7}, "card_holder": "Q PATIENTNAME"},
    });
    ingest(c, &key, event);
    let view = c.get(Some(&key), "/v1/events/m1").json();
    assert_eq!(view["metadata"]["patient"]["name"], "Quincy Patientname");
    assert_eq!(view["metadata"]["patient"]["ward"], 7);
    assert_eq!(view["personal_fields"], json!(["metadata.card_holder", "metadata.patient.name"]));
    let masked = c.get(Some(&reader), "/v1/events/m1").json();
    assert_eq!(masked["metadata"]["patient"]["name"], "Q*** P***");
    assert_eq!(masked["metadata"]["patient"]["ward"], 7);
    assert_eq!(c.delete(Some(&key), "/v1/subjects/p-9").status, 200);
    let erased = c.get(Some(&key), "/v1/events/m1").json();
    assert_eq!(erased["metadata"]["patient"]["name"], "[erased]");
    assert_eq!(erased["metadata"]["card_holder"], "[erased]");
    drop(server);
    let stored = Stored::of(dir.path());
    for needle in ["Quincy Patientname", "PATIENTNAME"] {
        let found = stored.places_of(needle);
        assert!(found.is_empty(), "{needle:?} is in clear in {found:?}");
    }
    assert_data_dir_verified(dir.path());
}

#[test]
fn the_master_key_rotates_online_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = ChildServer::start(BINARY, data);
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    ingest(c, &key, json!([alice_event("a1"), bob_updates_patient("b1")]));
    let old_key = std::fs::read_to_string(data.join("master.key")).unwrap();
    assert_eq!(c.post_json(Some(&key), "/v1/platform/master-key/rotate", &json!({})).status, 403);
    let rotated = c.post_json(Some(BOOTSTRAP_TOKEN), "/v1/platform/master-key/rotate", &json!({}));
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let key_id = rotated.json()["key_id"].as_str().unwrap().to_string();
    assert_ne!(std::fs::read_to_string(data.join("master.key")).unwrap(), old_key);
    assert!(!data.join("master.key.next").exists());
    // Served throughout: old data readable, new data written, the rotation recorded.
    assert_eq!(c.get(Some(&key), "/v1/events/a1").json()["actor"]["name"], "Alice Liddell");
    ingest(c, &key, json!([alice_event("a2")]));
    let logged = events_eventually(c, &key, "/v1/events?action=audit.key.rotated", 1);
    assert_eq!(logged[0]["metadata"]["key_id"], key_id.as_str());
    drop(server);
    // After a restart with only the new key on disk, everything still opens.
    let server = ChildServer::start(BINARY, data);
    assert_eq!(server.client.get(Some(&key), "/v1/events/a2").json()["actor"]["email"], "Alice.Liddell@wonder.example");
    assert_eq!(
        server.client.get(Some(&key), "/v1/events/b1").json()["changes"]["after"]["note"],
        "Diagnosis: chronic teapot"
    );
    drop(server);
    assert_verified(verify(&["--data-dir", data.to_str().unwrap()]));
}
