//! RFC 3161 witnessing end to end: the real binary configured with a local TSA (a throw-away CA
//! and TSA certificate made with `openssl`, answers from `openssl ts -reply`), checkpoints
//! time-stamped despite a failing TSA, the tokens served and accepted by OpenSSL itself, and
//! `veritrail verify` (its own process) checking them in a data directory and a bundle, and
//! finding them tampered with.

use std::path::Path;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rusqlite::{Connection, params};
use serde_json::Value;
use veritrail_test_support::tsa::{OpensslTsa, TsaResponder};
use veritrail_test_support::{Backend, ChildServer, Client, Reply, event};
use veritrail_tsa::{Expected, TrustAnchors};

use crate::ledger::{Run, verify};

const BINARY: &str = env!("CARGO_BIN_EXE_veritrail");

fn assert_verified(run: Run) -> String {
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.starts_with("ok: "), "{run:#?}");
    run.stdout
}

fn assert_failed(run: &Run, expected: &str) {
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.starts_with(&format!("FAILED: {expected}")), "expected FAILED: {expected}...\n{run:#?}");
}

fn ingest(client: &Client, key: &str, prefix: &str, count: usize) {
    let batch: Vec<Value> = (0..count).map(|i| event(&format!("{prefix}{i}"), "tsa.test", "u")).collect();
    let reply = client.ingest(key, &Value::Array(batch));
    assert_eq!(reply.status, 201, "{}", reply.text());
}

/// A checkpoint and its time-stamp, as served.
struct Witnessed {
    size: u64,
    note: Vec<u8>,
    timestamp: Reply,
}

/// Waits until the latest checkpoint covers at least `min_size` records and has a time-stamp.
fn witnessed_latest(client: &Client, key: &str, min_size: u64) -> Witnessed {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let note = client.get(Some(key), "/v1/ledger/checkpoint").body;
        let size: u64 = String::from_utf8_lossy(&note).lines().nth(1).unwrap().parse().unwrap();
        let timestamp = client.get(Some(key), &format!("/v1/ledger/checkpoint/timestamp?size={size}"));
        if timestamp.status == 200 && size >= min_size {
            return Witnessed { size, note, timestamp };
        }
        assert!(matches!(timestamp.status, 200 | 404), "{}", timestamp.text());
        assert!(Instant::now() < deadline, "the latest checkpoint was not time-stamped within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fresh copy of the ledger of `from`, to damage.
fn copy_ledger(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for name in ["ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"] {
        if from.join(name).exists() {
            std::fs::copy(from.join(name), to.path().join(name)).unwrap();
        }
    }
    to
}

/// An `https://` TSA: reached when its server certificate chains to `outbound_ca_file`, its
/// time-stamps then stored as over HTTP; without that CA the TLS handshake fails (counted as a
/// TSA failure, no request reaches it) and nothing is stored.
#[test]
fn a_tsa_is_reached_over_https_when_its_certificate_is_trusted() {
    let tsa = Arc::new(OpensslTsa::new());
    let pki = veritrail_test_support::tls::TestPki::generate();
    let responder = TsaResponder::start_https(tsa.clone(), &pki);
    assert!(responder.url.starts_with("https://127.0.0.1:"), "{}", responder.url);
    let files = tempfile::tempdir().unwrap();
    let start = |trusted: bool| {
        let config = files.path().join(format!("veritrail-{trusted}.toml"));
        let mut toml = String::from("checkpoint_interval_ms = 100\ntsa_interval_ms = 200\n");
        if trusted {
            toml.push_str(&format!("outbound_ca_file = {:?}\n", pki.ca_path().to_str().unwrap()));
        }
        std::fs::write(&config, toml).unwrap();
        let data = tempfile::tempdir().unwrap();
        let server = ChildServer::start_with(
            BINARY,
            data.path(),
            &["--config", config.to_str().unwrap()],
            &[("VERITRAIL_TSA_URL", responder.url.as_str())],
        );
        (server, data)
    };

    let (untrusted, _data) = start(false);
    let (_, key) = untrusted.client.create_tenant("acme");
    ingest(&untrusted.client, &key, "a", 10);
    let deadline = Instant::now() + Duration::from_secs(20);
    while untrusted.client.metric("veritrail_tsa_failures_total") == 0 {
        assert!(Instant::now() < deadline, "no failed TSA attempt within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(untrusted.client.metric("veritrail_tsa_timestamps_total"), 0);
    assert_eq!(responder.requests(), 0, "the handshake fails before any request");
    drop(untrusted);

    let (trusted, _data) = start(true);
    let (_, key) = trusted.client.create_tenant("acme");
    ingest(&trusted.client, &key, "a", 10);
    let Witnessed { note, timestamp, .. } = witnessed_latest(&trusted.client, &key, 12);
    tsa.openssl_verify(&timestamp.body, &note).unwrap();
    assert!(responder.requests() >= 1);
}

#[test]
fn checkpoints_are_witnessed_by_a_tsa_and_verified() {
    let tsa = Arc::new(OpensslTsa::new());
    let responder = TsaResponder::start(tsa.clone());
    // The TSA is down for the first two requests: the server retries with backoff.
    responder.fail_next(2);
    let ca_file = tsa.ca_file();
    let ca = ca_file.to_str().unwrap();
    let files = tempfile::tempdir().unwrap();
    let config = files.path().join("veritrail.toml");
    let toml = format!("checkpoint_interval_ms = 100\ntsa_ca_file = {ca:?}\ntsa_interval_ms = 200\n");
    std::fs::write(&config, toml).unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let server = ChildServer::start_with(
        BINARY,
        data.path(),
        &["--config", config.to_str().unwrap()],
        &[("VERITRAIL_TSA_URL", responder.url.as_str())],
    );
    let client = &server.client;
    let (tenant, key) = client.create_tenant("acme");

    // The first checkpoint gets its time-stamp after two failed attempts.
    ingest(client, &key, "a", 40);
    // audit.log.initialized, auth.token.created and the 40 events.
    let Witnessed { size: first_size, note, timestamp: first } = witnessed_latest(client, &key, 42);
    assert_eq!(first.content_type.as_deref(), Some("application/timestamp-reply"));
    assert!(client.metric("veritrail_tsa_failures_total") >= 2);
    assert!(client.metric("veritrail_tsa_timestamps_total") >= 1);
    assert!(responder.requests() >= 3);

    // With the checkpoint it time-stamps, Veritrail's and OpenSSL's verdicts agree.
    let anchors = TrustAnchors::from_pem(&std::fs::read(&ca_file).unwrap()).unwrap();
    let expected = Expected { message: &note, nonce: None, trust: Some(&anchors) };
    let verified = veritrail_tsa::verify_response(&first.body, &expected).unwrap();
    assert_eq!(verified.signer, "CN=Test TSA,O=Veritrail Test");
    tsa.openssl_verify(&first.body, &note).unwrap();
    assert!(tsa.openssl_verify(&first.body, b"other bytes").is_err(), "openssl checks the imprint");
    // What has no time-stamp (or no checkpoint) is 404; reading needs a key.
    let missing = client.get(Some(&key), "/v1/ledger/checkpoint/timestamp?size=1");
    assert_eq!((missing.status, missing.error_code().as_str()), (404, "not_found"));
    assert_eq!(client.get(None, "/v1/ledger/checkpoint/timestamp").status, 401);
    assert_eq!(client.get(Some(&key), "/v1/ledger/checkpoint/timestamp?size=x").status, 400);

    // A later checkpoint is witnessed too.
    ingest(client, &key, "b", 40);
    let second_size = witnessed_latest(client, &key, first_size + 40).size;
    // Older checkpoints are served by size, as is the latest by default.
    let note = client.get(Some(&key), &format!("/v1/ledger/checkpoint?size={first_size}"));
    assert_eq!(note.status, 200);
    let by_size = client.get(Some(&key), &format!("/v1/ledger/checkpoint/timestamp?size={first_size}"));
    assert_eq!((by_size.status, &by_size.body), (200, &first.body));
    tsa.openssl_verify(&by_size.body, &note.body).unwrap();
    assert_eq!(client.get(Some(&key), "/v1/ledger/checkpoint?size=1").status, 404);

    let export = client.get(Some(&key), "/v1/export?format=ledger");
    assert_eq!(export.status, 200, "{}", export.text());
    let header: Value = serde_json::from_slice(export.body.split(|&b| b == b'\n').next().unwrap()).unwrap();
    let stamped: Vec<u64> =
        header["timestamps"].as_array().unwrap().iter().map(|t| t["tree_size"].as_u64().unwrap()).collect();
    assert!(stamped.contains(&first_size) && stamped.contains(&second_size), "{stamped:?}");
    let verifier_key = client.get(None, "/v1/ledger/key").text().trim().to_string();
    assert!(server.signal_and_wait("TERM").success());
    // The embedded store's files, checked and tampered with; PostgreSQL has no --data-dir.
    let database = Backend::from_env().database_for(data.path());

    if database.is_none() {
        // --data-dir: every stored time-stamp checked, chained to the CA when asked.
        let summary = assert_verified(verify(&["--data-dir", data_dir, "--tsa-ca", ca]));
        assert!(summary.contains("checkpoints time-stamped, the latest (size "), "{summary}");
        assert!(summary.contains("by CN=Test TSA,O=Veritrail Test (chained to --tsa-ca)"), "{summary}");
        let stamped_count: u64 = summary.split(" of ").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
        assert!(stamped_count >= 2, "{summary}");
        assert_verified(verify(&["--data-dir", data_dir]));
        let stranger = OpensslTsa::new();
        let run = verify(&["--data-dir", data_dir, "--tsa-ca", stranger.ca_file().to_str().unwrap()]);
        // Whichever ledger has a time-stamp first in the check order fails (the platform ledger's
        // checkpoint may not have been time-stamped yet when the server stopped).
        assert_failed(&run, "tenant ");
        assert!(run.stdout.contains(": time-stamp does not verify: "), "{run:#?}");
        assert!(run.stdout.contains("does not chain to a trusted CA"), "{run:#?}");
        let run = verify(&["--data-dir", data_dir, "--tsa-ca", config.to_str().unwrap()]);
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(run.stderr.starts_with("error: --tsa-ca file"), "{run:#?}");
    }

    // --bundle: the header's time-stamps, each against its checkpoint and the bundle's records.
    let bundle = files.path().join("ledger.jsonl");
    std::fs::write(&bundle, &export.body).unwrap();
    let bundle_path = bundle.to_str().unwrap();
    let summary = assert_verified(verify(&["--bundle", bundle_path, "--key", &verifier_key, "--tsa-ca", ca]));
    assert!(summary.contains(&format!("; {} time-stamped checkpoints, the latest (size ", stamped.len())), "{summary}");
    assert!(summary.contains("(chained to --tsa-ca)"), "{summary}");

    let tampered_bundle = |edit: &dyn Fn(&mut Value)| {
        let mut lines: Vec<Vec<u8>> = export.body.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        let mut header: Value = serde_json::from_slice(&lines[0]).unwrap();
        edit(&mut header);
        lines[0] = format!("{header}\n").into_bytes();
        let path = files.path().join("tampered.jsonl");
        std::fs::write(&path, lines.concat()).unwrap();
        verify(&["--bundle", path.to_str().unwrap(), "--key", &verifier_key])
    };
    let flip_last_byte = |response: &mut Vec<u8>| {
        let last = response.len() - 1;
        response[last] ^= 1;
    };
    let run = tampered_bundle(&|header| {
        let entry = &mut header["timestamps"][0];
        let mut response = STANDARD.decode(entry["timestamp"].as_str().unwrap()).unwrap();
        flip_last_byte(&mut response);
        entry["timestamp"] = Value::from(STANDARD.encode(response));
    });
    assert_failed(&run, &format!("tenant {tenant}: checkpoint at size {}: time-stamp does not verify", stamped[0]));
    assert!(run.stdout.contains("the TSA signature does not verify"), "{run:#?}");
    // A time-stamp moved to another checkpoint time-stamps other bytes.
    let run = tampered_bundle(&|header| {
        let other = header["timestamps"][1]["timestamp"].clone();
        header["timestamps"][0]["timestamp"] = other;
    });
    assert_failed(&run, &format!("tenant {tenant}: checkpoint at size {}: time-stamp does not verify", stamped[0]));
    assert!(run.stdout.contains("message imprint"), "{run:#?}");

    if database.is_none() {
        // A byte flipped in a stored token, and a token moved to another checkpoint.
        let tampered_dir = |edit: &dyn Fn(&Connection)| {
            let copy = copy_ledger(data.path());
            edit(&Connection::open(copy.path().join("ledger.sqlite")).unwrap());
            verify(&["--data-dir", copy.path().to_str().unwrap()])
        };
        let stored = |conn: &Connection, size: u64| -> Vec<u8> {
            conn.query_row("SELECT response FROM checkpoint_timestamps WHERE tree_size = ?1", [size as i64], |row| {
                row.get(0)
            })
            .unwrap()
        };
        let run = tampered_dir(&|conn| {
            let mut response = stored(conn, first_size);
            flip_last_byte(&mut response);
            let changed = conn
                .execute(
                    "UPDATE checkpoint_timestamps SET response = ?2 WHERE tree_size = ?1",
                    params![first_size as i64, response],
                )
                .unwrap();
            assert_eq!(changed, 1);
        });
        assert_failed(&run, &format!("tenant {tenant}: checkpoint at size {first_size}: time-stamp does not verify"));
        assert!(run.stdout.contains("the TSA signature does not verify"), "{run:#?}");
        let run = tampered_dir(&|conn| {
            let other = stored(conn, second_size);
            conn.execute(
                "UPDATE checkpoint_timestamps SET response = ?2 WHERE tree_size = ?1",
                params![first_size as i64, other],
            )
            .unwrap();
        });
        assert_failed(&run, &format!("tenant {tenant}: checkpoint at size {first_size}: time-stamp does not verify"));
        assert!(run.stdout.contains("message imprint"), "{run:#?}");
    }

    // At start, the latest checkpoint is witnessed if it was not (here: its time-stamp removed).
    let latest_size: i64 = match &database {
        None => {
            let conn = Connection::open(data.path().join("ledger.sqlite")).unwrap();
            let latest = conn.query_row("SELECT max(tree_size) FROM checkpoints", [], |row| row.get(0)).unwrap();
            conn.execute("DELETE FROM checkpoint_timestamps WHERE tree_size = ?1", [latest]).unwrap();
            latest
        }
        Some(database) => database
            .execute(&format!(
                "WITH latest AS (SELECT c.tenant_no, max(c.tree_size) AS size FROM checkpoints c \
                 JOIN tenants t ON t.no = c.tenant_no WHERE t.id = '{tenant}' GROUP BY c.tenant_no), \
                 removed AS (DELETE FROM checkpoint_timestamps s USING latest l \
                 WHERE s.tenant_no = l.tenant_no AND s.tree_size = l.size) \
                 SELECT size FROM latest"
            ))
            .trim()
            .parse()
            .unwrap(),
    };
    let requests = responder.requests();
    let server = ChildServer::start_with(
        BINARY,
        data.path(),
        &["--config", config.to_str().unwrap()],
        &[("VERITRAIL_TSA_URL", responder.url.as_str())],
    );
    let witnessed = witnessed_latest(&server.client, &key, latest_size as u64);
    assert_eq!(witnessed.size, latest_size as u64);
    assert!(responder.requests() > requests);
    drop(server);
}
