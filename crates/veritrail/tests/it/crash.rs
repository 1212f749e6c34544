//! Durability of the real binary: SIGKILL while clients ingest loses no acknowledged event and
//! leaves a dense ledger; SIGTERM shuts down gracefully with everything acknowledged committed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use veritrail_test_support::{Backend, ChildServer, Client, event};

const BINARY: &str = env!("CARGO_BIN_EXE_veritrail");

/// Ingests batches from `threads` clients until told to stop or the server goes away; returns
/// every acknowledged `(id, seq)`.
fn ingest_until_stopped(
    client: &Client,
    key: &str,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<(String, u64)>>> {
    let mut handles = Vec::new();
    for thread in 0..threads {
        let (client, key, stop) = (client.clone(), key.to_string(), stop.clone());
        handles.push(std::thread::spawn(move || {
            let mut acked = Vec::new();
            for round in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let batch: Vec<Value> =
                    (0..25).map(|i| event(&format!("c{thread}-{round}-{i}"), "load.test", "u")).collect();
                match client.try_post_raw(
                    Some(&key),
                    "/v1/events",
                    "application/json",
                    Value::Array(batch).to_string().as_bytes(),
                ) {
                    Ok(reply) if reply.status == 201 => {
                        for e in reply.json()["events"].as_array().unwrap() {
                            acked.push((e["id"].as_str().unwrap().to_string(), e["seq"].as_u64().unwrap()));
                        }
                    }
                    Ok(_) | Err(_) => break,
                }
            }
            acked
        }));
    }
    handles
}

/// Every event of the tenant's ledger, via the JSON-lines export.
fn ledger(client: &Client, key: &str) -> Vec<Value> {
    let reply = client.get(Some(key), "/v1/export?format=jsonl&order=asc");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// Waits until queries see at least `seq + 1` events of the tenant.
fn wait_visible(client: &Client, key: &str, seq: u64) {
    for _ in 0..500 {
        let body = client.get(Some(key), "/v1/events?limit=1").json();
        if body["events"][0]["seq"].as_u64().is_some_and(|s| s >= seq) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("index did not reach seq {seq}");
}

fn check_ledger(events: &[Value], acked: &[(String, u64)]) {
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "seq is dense from 0");
    let mut ids = HashSet::new();
    let mut by_id = BTreeMap::new();
    for e in events {
        let id = e["id"].as_str().unwrap().to_string();
        assert!(ids.insert(id.clone()), "id {id} stored twice");
        by_id.insert(id, e["seq"].as_u64().unwrap());
    }
    for (id, seq) in acked {
        assert_eq!(by_id.get(id), Some(seq), "acknowledged event {id} lost or moved");
    }
}

#[test]
fn sigkill_during_ingest_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(BINARY, dir.path());
    let (_, key) = server.client.create_tenant("crash");
    let stop = Arc::new(AtomicBool::new(false));
    let handles = ingest_until_stopped(&server.client, &key, 4, stop.clone());
    std::thread::sleep(Duration::from_millis(1500));
    let status = server.signal_and_wait("KILL");
    assert!(!status.success());
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<(String, u64)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert!(acked.len() > 100, "clients ingested before the kill ({} acked)", acked.len());

    let server = ChildServer::start(BINARY, dir.path());
    let max_seq = acked.iter().map(|(_, seq)| *seq).max().unwrap();
    wait_visible(&server.client, &key, max_seq);
    let events = ledger(&server.client, &key);
    check_ledger(&events, &acked);
    // Retrying acknowledged events after the crash is idempotent.
    let (id, seq) = &acked[acked.len() / 2];
    let retry = server.client.ingest(&key, &event(id, "load.test", "u")).json();
    assert_eq!(retry["events"][0], json!({"id": id, "seq": seq}));
    // And the ledger continues densely after the restart.
    let next = server.client.ingest(&key, &event("after-crash", "load.test", "u")).json();
    assert!(next["events"][0]["seq"].as_u64().unwrap() >= events.len() as u64);
}

#[test]
fn sigterm_shuts_down_gracefully_with_everything_acknowledged_committed() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(BINARY, dir.path());
    let (_, key) = server.client.create_tenant("term");
    let stop = Arc::new(AtomicBool::new(false));
    let handles = ingest_until_stopped(&server.client, &key, 3, stop.clone());
    std::thread::sleep(Duration::from_millis(800));
    let status = server.signal_and_wait("TERM");
    assert!(status.success(), "graceful exit, got {status}");
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<(String, u64)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert!(!acked.is_empty());

    let server = ChildServer::start(BINARY, dir.path());
    let max_seq = acked.iter().map(|(_, seq)| *seq).max().unwrap();
    wait_visible(&server.client, &key, max_seq);
    check_ledger(&ledger(&server.client, &key), &acked);
}

#[test]
fn reindex_command_rebuilds_the_index_of_a_stopped_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(BINARY, dir.path());
    let (_, key) = server.client.create_tenant("reindex");
    let batch: Vec<Value> = (0..30).map(|i| event(&format!("r{i}"), "reindex.test", "u")).collect();
    assert_eq!(server.client.ingest(&key, &Value::Array(batch)).status, 201);
    assert!(server.signal_and_wait("TERM").success());
    let output = std::process::Command::new(BINARY).args(["reindex", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("index rebuilt"));
    let server = ChildServer::start(BINARY, dir.path());
    let body = server.client.get(Some(&key), "/v1/events?action=reindex.test&limit=100").json();
    assert_eq!(body["events"].as_array().unwrap().len(), 30);
}

#[test]
fn a_second_server_or_reindex_on_a_data_directory_in_use_is_refused() {
    if Backend::from_env() != Backend::Sqlite {
        return; // PostgreSQL nodes share their database by design; the data directory is theirs alone.
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(BINARY, dir.path());
    let (_, key) = server.client.create_tenant("locked");
    assert_eq!(server.client.ingest(&key, &event("l1", "lock.test", "u")).status, 201);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pid = server.child.id();
    let expected = format!("is in use by another Veritrail process (pid {pid})");
    // Another process holds it: refused at once, not after the wait a store reopened in the same
    // process gets.
    let started = std::time::Instant::now();
    let second = std::process::Command::new(BINARY)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("VERITRAIL_BOOTSTRAP_TOKEN", "vt_bootstrap_lock_test_0123456789")
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&expected), "{stderr}");
    let reindex = std::process::Command::new(BINARY).args(["reindex", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(4), "refused at once: {:?}", started.elapsed());
    assert!(!reindex.status.success());
    let stderr = String::from_utf8_lossy(&reindex.stderr);
    assert!(stderr.contains(&expected), "{stderr}");
    // The refused commands changed nothing: the running server still answers from its ledger.
    let body = server.client.get(Some(&key), "/v1/events?action=lock.test").json();
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    assert!(server.signal_and_wait("TERM").success());
}

#[test]
fn help_explains_the_commands() {
    let output = std::process::Command::new(BINARY).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    for needle in ["serve", "reindex", "bootstrap token"] {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }
    let output = std::process::Command::new(BINARY).args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    for needle in ["--data-dir", "--listen", "--config", "VERITRAIL_DATA_DIR"] {
        assert!(text.contains(needle), "serve --help lacks {needle:?}:\n{text}");
    }
}

#[test]
fn first_start_generates_a_private_bootstrap_token_shown_once() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = |data: &std::path::Path| {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = std::process::Command::new(BINARY);
        command.args(["serve", "--data-dir"]).arg(data).args(["--listen", &format!("127.0.0.1:{port}")]);
        // On PostgreSQL the data directory holds this node's token file alone.
        let _database = Backend::from_env().configure_serve(&mut command, data);
        let mut child = command
            .env_remove("VERITRAIL_BOOTSTRAP_TOKEN")
            .env("VERITRAIL_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = Vec::new();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        loop {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).unwrap() > 0, "server exited early: {lines:?}");
            let done = line.contains("listening on");
            lines.push(line.trim().to_string());
            if done {
                break;
            }
        }
        let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(child.wait().unwrap().success());
        lines
    };
    let first = start(&data);
    let saved = std::fs::read_to_string(data.join("bootstrap-token")).unwrap();
    let token = saved.trim();
    assert!(token.starts_with("vtb_") && token.len() > 30, "{token}");
    assert!(first.iter().any(|line| line == token), "token printed on first start: {first:?}");
    let mode = std::fs::metadata(data.join("bootstrap-token")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700, "data dir is private");
    let second = start(&data);
    assert!(!second.iter().any(|line| line.contains(token)), "never printed again: {second:?}");
}
