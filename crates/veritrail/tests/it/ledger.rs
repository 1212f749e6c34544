//! `veritrail verify` run as its own process, the way an auditor would: on the data directory of
//! a stopped server (finding each kind of tampering at the right place), on an exported ledger
//! bundle with only the published key, and as a monitor of a running server.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rusqlite::{Connection, params};
use serde_json::{Value, json};
use veritrail_ledger::checkpoint::{Checkpoint, sign_checkpoint};
use veritrail_ledger::hash::{Hash, leaf_hash};
use veritrail_ledger::note::NoteSigner;
use veritrail_ledger::tree::MemoryTree;
use veritrail_test_support::{ChildServer, Client, event};

const BINARY: &str = env!("CARGO_BIN_EXE_veritrail");
/// Events ingested for the data directory tests: with the 2 lifecycle events, 302 records, so
/// the last 14 are under no stored Merkle node (levels 4, 8, ...), only under the checkpoint.
const EVENTS: usize = 300;

/// The outcome of one `veritrail verify` process.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `veritrail verify ARGS` as a separate process.
pub(crate) fn verify(args: &[&str]) -> Run {
    let output = Command::new(BINARY)
        .arg("verify")
        .args(args)
        .env("VERITRAIL_LOG", "warn")
        .env_remove("VERITRAIL_TOKEN")
        .output()
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The summary line of a successful run.
fn assert_verified(run: Run) -> String {
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.starts_with("ok: "), "{run:#?}");
    assert_eq!(run.stdout.lines().count(), 1, "{run:#?}");
    run.stdout
}

fn assert_failed(run: &Run, expected: &str) {
    assert_eq!(run.code, Some(1), "{run:#?}");
    let line = run.stdout.trim_end();
    assert!(line.starts_with(&format!("FAILED: {expected}")), "expected FAILED: {expected}...\n{run:#?}");
}

fn ingest(client: &Client, key: &str, prefix: &str, count: usize) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<Value> = chunk.iter().map(|i| event(&format!("{prefix}{i}"), "verify.test", "u")).collect();
        let reply = client.ingest(key, &Value::Array(batch));
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
}

// --- --data-dir --------------------------------------------------------------------------------

/// A fresh copy of the ledger of `from` (SQLite files only), to damage.
fn copy_ledger(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for name in ["ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"] {
        if from.join(name).exists() {
            std::fs::copy(from.join(name), to.path().join(name)).unwrap();
        }
    }
    to
}

/// The ledger of a copy, opened for tampering.
struct Ledger {
    conn: Connection,
    tenant_no: i64,
}

impl Ledger {
    fn open(dir: &Path, tenant: &str) -> Ledger {
        let conn = Connection::open(dir.join("ledger.sqlite")).unwrap();
        let tenant_no = conn.query_row("SELECT no FROM tenants WHERE id = ?1", [tenant], |row| row.get(0)).unwrap();
        Ledger { conn, tenant_no }
    }

    fn key(&self, seq: u64) -> i64 {
        (self.tenant_no << 40) | seq as i64
    }

    fn size(&self) -> u64 {
        let count: i64 = self
            .conn
            .query_row("SELECT count(*) FROM records WHERE tenant_no = ?1", [self.tenant_no], |row| row.get(0))
            .unwrap();
        count as u64
    }

    fn sealed(&self, seq: u64) -> Vec<u8> {
        self.conn.query_row("SELECT sealed FROM records WHERE key = ?1", [self.key(seq)], |row| row.get(0)).unwrap()
    }

    /// Replaces the sealed bytes of `seq`, and its leaf hash too if `rehash`.
    fn set_sealed(&self, seq: u64, sealed: &[u8], rehash: bool) {
        self.conn.execute("UPDATE records SET sealed = ?2 WHERE key = ?1", params![self.key(seq), sealed]).unwrap();
        if rehash {
            let leaf = leaf_hash(sealed).0;
            self.conn
                .execute("UPDATE records SET leaf_hash = ?2 WHERE key = ?1", params![self.key(seq), leaf.as_slice()])
                .unwrap();
        }
    }

    fn edited(&self, seq: u64) -> Vec<u8> {
        let text = String::from_utf8(self.sealed(seq)).unwrap();
        assert!(text.contains("verify.test"), "{text}");
        text.replacen("verify.test", "verify.tEst", 1).into_bytes()
    }
}

#[test]
fn data_dir_verification_finds_each_kind_of_tampering_at_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(BINARY, dir.path());
    let (tenant, key) = server.client.create_tenant("acme");
    ingest(&server.client, &key, "e", EVENTS);
    let data_dir = dir.path().to_str().unwrap();
    // While the server runs, too (read-only, one snapshot).
    assert_verified(verify(&["--data-dir", data_dir]));
    let verifier_key = server.client.get(None, "/v1/ledger/key").text().trim().to_string();
    assert!(server.signal_and_wait("TERM").success());

    let summary = assert_verified(verify(&["--data-dir", data_dir]));
    let size = EVENTS as u64 + 2;
    // The platform ledger besides: audit.log.initialized, audit.key.created and
    // admin.tenant.created.
    assert!(summary.contains(&format!("2 tenants, {} records", size + 3)), "{summary}");
    assert!(summary.contains("0 records not yet covered by a checkpoint"), "shutdown signs a checkpoint: {summary}");
    assert!(summary.contains("quick_check ok"), "{summary}");
    assert_eq!(size % 16, 14, "the test's premise: the last records are under no stored node");
    // Checkpoints signed with the published key, not only with a key the data dir lists.
    assert_verified(verify(&["--data-dir", data_dir, "--key", &verifier_key]));
    let other_key = NoteSigner::from_seed("veritrail.local", [42; 32]).unwrap().verifier_key().to_string();
    let run = verify(&["--data-dir", data_dir, "--key", &other_key]);
    // The platform ledger, created at the server's first start, is checked first.
    assert_failed(&run, "tenant platform: checkpoint at size ");
    assert!(run.stdout.contains("note does not verify: note has no signature by a trusted key"), "{run:#?}");

    let check = |tamper: &dyn Fn(&Ledger), expected: &str| {
        let copy = copy_ledger(dir.path());
        tamper(&Ledger::open(copy.path(), &tenant));
        assert_failed(&verify(&["--data-dir", copy.path().to_str().unwrap()]), &format!("tenant {tenant}: {expected}"));
    };
    // (a) A record edited in place.
    check(&|ledger| ledger.set_sealed(41, &ledger.edited(41), false), "seq 41: leaf hash mismatch (stored ");
    // (b) A record deleted.
    check(
        &|ledger| {
            ledger.conn.execute("DELETE FROM records WHERE key = ?1", [ledger.key(41)]).unwrap();
        },
        "seq 41: missing",
    );
    // (c) Two records swapped.
    check(
        &|ledger| {
            let (a, b) = (ledger.sealed(41), ledger.sealed(42));
            ledger.set_sealed(41, &b, true);
            ledger.set_sealed(42, &a, true);
        },
        "seq 41: record claims seq 42",
    );
    // (d) A forged record slipped in, the later ones moved up a seq.
    check(
        &|ledger| {
            for seq in (41..ledger.size()).rev() {
                let moved = params![ledger.key(seq + 1), ledger.key(seq)];
                ledger.conn.execute("UPDATE records SET key = ?1 WHERE key = ?2", moved).unwrap();
            }
            // A copy of the record that was at 41, under another id.
            let forged =
                String::from_utf8(ledger.sealed(42)).unwrap().replacen("\"id\":\"e39\"", "\"id\":\"forged\"", 1);
            let leaf = leaf_hash(forged.as_bytes()).0;
            ledger
                .conn
                .execute(
                    "INSERT INTO records (key, tenant_no, event_id, leaf_hash, sealed) VALUES (?1, ?2, 'forged', ?3, ?4)",
                    params![ledger.key(41), ledger.tenant_no, leaf.as_slice(), forged.as_bytes()],
                )
                .unwrap();
        },
        "seq 42: record claims seq 41",
    );
    // (e) A record edited with its leaf hash recomputed: the stored Merkle node above it.
    check(
        &|ledger| ledger.set_sealed(41, &ledger.edited(41), true),
        "seq 32..=47: merkle node (level 4, index 2) mismatch (stored ",
    );
    // ... and under no stored node: the signed checkpoint.
    check(
        &|ledger| ledger.set_sealed(size - 2, &ledger.edited(size - 2), true),
        &format!("checkpoint at size {size}: root mismatch (signed "),
    );
    // The latest records cut off.
    check(
        &|ledger| {
            ledger.conn.execute("DELETE FROM records WHERE key = ?1", [ledger.key(size - 1)]).unwrap();
        },
        &format!("seq {}: missing (the checkpoint at size {size} covers it)", size - 1),
    );
}

// --- --bundle ----------------------------------------------------------------------------------

#[test]
fn an_exported_bundle_verifies_offline_with_the_published_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(BINARY, dir.path());
    let client = &server.client;
    let (tenant, key) = client.create_tenant("acme");
    ingest(client, &key, "b", 60);
    let export = client.get(Some(&key), "/v1/export?format=ledger");
    assert_eq!(export.status, 200, "{}", export.text());
    let verifier_key = client.get(None, "/v1/ledger/key").text().trim().to_string();
    drop(server);

    let files = tempfile::tempdir().unwrap();
    let bundle = files.path().join("ledger.jsonl");
    std::fs::write(&bundle, &export.body).unwrap();
    let bundle = bundle.to_str().unwrap();
    let size = export.text().lines().count() - 1;
    let summary = assert_verified(verify(&["--bundle", bundle, "--key", &verifier_key]));
    assert!(summary.contains(&format!("bundle of tenant {tenant}: {size} records")), "{summary}");
    let key_file = files.path().join("key.txt");
    std::fs::write(&key_file, format!("{verifier_key}\n")).unwrap();
    assert_verified(verify(&["--bundle", bundle, "--key", &format!("@{}", key_file.display())]));

    // Line 1 is the header: seq 5 is line 7.
    let lines: Vec<&[u8]> = export.body.split_inclusive(|&byte| byte == b'\n').collect();
    let with_line_7 = |line: &[u8]| {
        let path = files.path().join("tampered.jsonl");
        let mut bytes = Vec::new();
        for (i, original) in lines.iter().enumerate() {
            bytes.extend_from_slice(if i == 6 { line } else { original });
        }
        std::fs::write(&path, bytes).unwrap();
        verify(&["--bundle", path.to_str().unwrap(), "--key", &verifier_key])
    };
    let mut flipped = lines[6].to_vec();
    flipped[0] = b'[';
    assert_failed(&with_line_7(&flipped), &format!("tenant {tenant}: seq 5: not canonical JSON"));
    let claims_6 = String::from_utf8(lines[6].to_vec()).unwrap().replacen("\"seq\":5", "\"seq\":6", 1);
    assert_failed(&with_line_7(claims_6.as_bytes()), &format!("tenant {tenant}: seq 5: record claims seq 6"));
    // A change that keeps the record well-formed: only the root can tell, not where.
    let flipped = String::from_utf8(lines[6].to_vec()).unwrap().replacen("verify.test", "verify.tEst", 1);
    assert_failed(&with_line_7(flipped.as_bytes()), &format!("tenant {tenant}: root mismatch (computed "));
    // A record left out.
    assert_failed(&with_line_7(b""), &format!("tenant {tenant}: seq 5: record claims seq 6"));

    let truncated = files.path().join("truncated.jsonl");
    std::fs::write(&truncated, lines[..lines.len() - 1].concat()).unwrap();
    let run = verify(&["--bundle", truncated.to_str().unwrap(), "--key", &verifier_key]);
    assert_failed(&run, &format!("tenant {tenant}: seq {}: missing (the bundle ends after", size - 1));

    let other_key = NoteSigner::from_seed("veritrail.local", [42; 32]).unwrap().verifier_key().to_string();
    let run = verify(&["--bundle", bundle, "--key", &other_key]);
    assert_failed(&run, &format!("tenant {tenant}: the bundle's checkpoint does not verify"));

    let run = verify(&["--bundle", bundle, "--key", "not-a-key"]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.starts_with("error: invalid verifier key"), "{run:#?}");
}

/// A bundle of `records` handcrafted records of tenant `tn_hand`, signed by a key of the test's:
/// `(bundle lines, verifier key)`.
fn handcrafted_bundle(records: u64) -> (Vec<Vec<u8>>, String) {
    let signer = NoteSigner::from_seed("veritrail.test", [5; 32]).unwrap();
    let sealed: Vec<Vec<u8>> = (0..records)
        .map(|seq| format!(r#"{{"id":"evt_{seq}","seq":{seq},"tenant":"tn_hand","v":1}}"#).into_bytes())
        .collect();
    let tree = MemoryTree::from_leaves(sealed.iter().map(|record| leaf_hash(record)));
    let checkpoint = Checkpoint::new("veritrail.test/tn_hand", records, tree.root());
    let header = json!({
        "format": "veritrail.ledger-bundle.v1", "tenant": "tn_hand", "origin": checkpoint.origin,
        "tree_size": records, "root": tree.root().to_base64(),
        "checkpoint": sign_checkpoint(&checkpoint, &signer).unwrap(),
        "verifier_key": signer.verifier_key().to_string(),
    });
    let mut lines = vec![header.to_string().into_bytes()];
    lines.extend(sealed);
    (lines, signer.verifier_key().to_string())
}

#[test]
fn hostile_bundles_fail_cleanly() {
    let (lines, key) = handcrafted_bundle(20);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.jsonl");
    let check = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        verify(&["--bundle", path.to_str().unwrap(), "--key", &key])
    };
    let joined =
        |lines: &[Vec<u8>]| lines.iter().flat_map(|line| [line.as_slice(), b"\n"].concat()).collect::<Vec<u8>>();
    let with_record_5 = |record: &[u8]| {
        let mut tampered = lines.clone();
        tampered[6] = record.to_vec();
        check(&joined(&tampered))
    };

    let summary = assert_verified(check(&joined(&lines)));
    assert!(summary.contains("bundle of tenant tn_hand: 20 records"), "{summary}");
    assert_failed(&check(b""), "the bundle is empty");
    assert_failed(&check(b"\x00\xff garbage\n"), "bundle header is not valid");
    assert_failed(&check(&joined(&lines)[..joined(&lines).len() - 1]), "tenant tn_hand: seq 19: truncated");
    assert_failed(&check(&joined(&lines[..20])), "tenant tn_hand: seq 19: missing (the bundle ends after 19");
    assert_failed(&check(&[joined(&lines), b"{}\n".to_vec()].concat()), "tenant tn_hand: the bundle has more than");
    assert_failed(&with_record_5(&vec![b'a'; 2 << 20]), "tenant tn_hand: seq 5: line longer than 1 MiB");
    assert_failed(&with_record_5(&vec![b'['; 100_000]), "tenant tn_hand: seq 5: not canonical JSON");
    assert_failed(&with_record_5(b"\xc3\x28"), "tenant tn_hand: seq 5: not canonical JSON");
    assert_failed(
        &with_record_5(br#"{"id":"evt_5","seq":5,"tenant":"tn_hand","v":1.0}"#),
        "tenant tn_hand: seq 5: not canonical",
    );
    assert_failed(
        &with_record_5(br#"{"id":"evt_5","seq":5,"tenant":"tn_other","v":1}"#),
        "tenant tn_hand: seq 5: record claims tenant tn_other",
    );
    assert_failed(
        &with_record_5(br#"{"id":"evt_5","seq":5,"tenant":"tn_hand","v":2}"#),
        "tenant tn_hand: root mismatch",
    );

    // A header that does not match its checkpoint, or names another tenant.
    for (field, value, expected) in [
        (
            "tenant",
            json!("tn_other"),
            "tenant tn_other: checkpoint origin veritrail.test/tn_hand is not of this tenant",
        ),
        ("tree_size", json!(21), "tenant tn_hand: header tree_size 21 differs"),
        ("root", json!(Hash([1; 32]).to_base64()), "tenant tn_hand: header root"),
        ("format", json!("something.else"), "bundle format is \"something.else\""),
    ] {
        let mut header: Value = serde_json::from_slice(&lines[0]).unwrap();
        header[field] = value;
        let mut tampered = lines.clone();
        tampered[0] = header.to_string().into_bytes();
        assert_failed(&check(&joined(&tampered)), expected);
    }
}

// --- --url -------------------------------------------------------------------------------------

#[test]
fn a_monitor_follows_the_ledger_and_catches_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(BINARY, dir.path());
    let client = &server.client;
    let (tenant, admin) = client.create_tenant("acme");
    let reader = client.create_key(&admin, &["events:read"]);
    ingest(client, &admin, "m", 40);
    let files = tempfile::tempdir().unwrap();
    let state = files.path().join("monitor-state.json");
    let monitor = |state: &Path| {
        verify(&["--url", client.base(), "--token", &reader, "--state", state.to_str().unwrap(), "--samples", "5"])
    };

    let summary = assert_verified(monitor(&state));
    assert!(summary.contains(&format!("tenant {tenant}: checkpoint at size")), "{summary}");
    assert!(summary.contains("trusted on first use"), "{summary}");
    assert!(summary.contains("5 sampled records included"), "{summary}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["origin"], format!("veritrail.local/{tenant}"));
    let first_size = saved["size"].as_u64().unwrap();

    ingest(client, &admin, "n", 40);
    let issued = client.post_raw(Some(&admin), "/v1/ledger/checkpoint", "text/plain", b"");
    assert_eq!(issued.status, 201, "{}", issued.text());
    let summary = assert_verified(monitor(&state));
    assert!(summary.contains(&format!("consistent with size {first_size} verified before")), "{summary}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let second_size = saved["size"].as_u64().unwrap();
    assert!(second_size > first_size + 40, "{saved}");

    // Another root for a size verified before: the server's history changed.
    let mut forged = saved.clone();
    forged["root"] = Value::from(Hash([7; 32]).to_base64());
    std::fs::write(&state, forged.to_string()).unwrap();
    assert_failed(&monitor(&state), &format!("tenant {tenant}: ledger forked or rolled back"));
    // A size larger than the server's now: rolled back.
    let mut forged = saved.clone();
    forged["size"] = Value::from(second_size + 1000);
    std::fs::write(&state, forged.to_string()).unwrap();
    assert_failed(&monitor(&state), &format!("tenant {tenant}: ledger forked or rolled back: checkpoint size"));
    // A key the server does not sign with.
    let mut forged = saved.clone();
    let other_key = NoteSigner::from_seed("veritrail.local", [42; 32]).unwrap().verifier_key().to_string();
    forged["verifier_key"] = Value::from(other_key);
    std::fs::write(&state, forged.to_string()).unwrap();
    assert_failed(&monitor(&state), "the server's verifier key changed since the last run");

    // Every run that got as far as a verified checkpoint is in the ledger.
    let recorded = |action: &str, at_least: usize| {
        for _ in 0..200 {
            let body = client.get(Some(&admin), &format!("/v1/events?action={action}")).json();
            if body["events"].as_array().is_some_and(|events| events.len() >= at_least) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("fewer than {at_least} {action} events");
    };
    recorded("audit.verified", 2);
    recorded("audit.control.failed", 2);
}

// --- backup and restore -------------------------------------------------------------------------

/// Every file of a stopped server's data directory, copied (a cold backup).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn a_restored_backup_is_checked_against_the_last_published_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let (live, backup) = (root.path().join("live"), root.path().join("backup"));
    let server = ChildServer::start(BINARY, &live);
    let (tenant, admin) = server.client.create_tenant("acme");
    ingest(&server.client, &admin, "before", 30);
    assert!(server.signal_and_wait("TERM").success());
    copy_dir(&live, &backup);

    // After the backup: more events, and a checkpoint an auditor keeps.
    let server = ChildServer::start(BINARY, &live);
    ingest(&server.client, &admin, "after", 30);
    let published = server.client.post_raw(Some(&admin), "/v1/ledger/checkpoint", "text/plain", b"");
    assert_eq!(published.status, 201, "{}", published.text());
    let published_file = root.path().join("published-checkpoint.txt");
    std::fs::write(&published_file, published.text()).unwrap();
    let checkpoint =
        |dir: &Path| verify(&["--data-dir", dir.to_str().unwrap(), "--checkpoint", published_file.to_str().unwrap()]);
    let summary = assert_verified(checkpoint(&live));
    assert!(summary.contains("contains the 1 published checkpoint(s) given"), "{summary}");
    ingest(&server.client, &admin, "later", 5);
    assert!(server.signal_and_wait("TERM").success());
    assert_verified(checkpoint(&live)); // grown past it: still contains it

    // The backup is internally sound, but behind what was published: refused, before serving.
    assert_verified(verify(&["--data-dir", backup.to_str().unwrap()]));
    let run = checkpoint(&backup);
    assert_failed(&run, &format!("tenant {tenant}: seq "));
    assert!(run.stdout.contains("behind what was published"), "{run:#?}");

    // Served anyway, the backup's ledger grows into a fork: the published root no longer matches.
    let server = ChildServer::start(BINARY, &backup);
    ingest(&server.client, &admin, "fork", 60);
    assert!(server.signal_and_wait("TERM").success());
    let run = checkpoint(&backup);
    assert_failed(&run, &format!("tenant {tenant}: checkpoint at size "));
    assert!(run.stdout.contains("differs from this ledger's") && run.stdout.contains("forked"), "{run:#?}");

    // A checkpoint of another server, or of no tenant here, is refused as such.
    let stranger = NoteSigner::from_seed("veritrail.local", [42; 32]).unwrap();
    let foreign = sign_checkpoint(
        &Checkpoint { origin: format!("veritrail.local/{tenant}"), size: 1, root: Hash([1; 32]), extensions: vec![] },
        &stranger,
    )
    .unwrap();
    std::fs::write(&published_file, foreign).unwrap();
    let run = checkpoint(&live);
    assert_failed(&run, "published checkpoint 1: note does not verify");
}
