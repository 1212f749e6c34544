#![allow(clippy::unwrap_used)]

use std::path::Path;

use jiff::Timestamp;
use rusqlite::{Connection, params};
use serde_json::json;
use veritrail_ledger::checkpoint::{Checkpoint, sign_checkpoint};
use veritrail_ledger::hash::{Hash, leaf_hash};
use veritrail_ledger::jcs;
use veritrail_ledger::note::{NoteSigner, VerifierKey};
use veritrail_store::{Store, StoredCheckpoint, Tenant};

use super::{Location, SealedRecordError, VerifyError, canonical, read_sealed_head, verify_data_dir};
use crate::schema::record_key;
use crate::{LEDGER_FILE, SqliteStore};

const TENANT: &str = "tn_alpha";
const OTHER: &str = "tn_beta";
const RECORDS: u64 = 100;

fn signer() -> NoteSigner {
    NoteSigner::from_seed("veritrail.test", [9; 32]).unwrap()
}

/// A data directory with `RECORDS` records for `TENANT` (checkpoints at 0, 5, 40 and 90,
/// so the last 10 are not covered yet) and 20 for `OTHER` (checkpoint at 20).
fn ledger(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(dir).unwrap();
        let keys = json!([{"verifier_key": signer().verifier_key().to_string(), "seed": "x",
                           "created_at": "2024-01-01T00:00:00Z", "retired_at": null}]);
        store.init_setting(super::SIGNING_KEYS_SETTING, keys.to_string().into_bytes()).await.unwrap();
        for (tenant, records, checkpoints) in [(TENANT, RECORDS, &[0, 5, 40, 90][..]), (OTHER, 20, &[20][..])] {
            let created_at = Timestamp::UNIX_EPOCH;
            store.create_tenant(Tenant { id: tenant.into(), name: tenant.into(), created_at }).await.unwrap();
            let mut appended = 0;
            for &size in checkpoints.iter().chain([&records]) {
                let events = (appended..size)
                    .map(|i| veritrail_store::suite::prepared(json!({"id": format!("evt_{i}"), "action": "user.login", "actor": {"id": "u1", "email": "a@example.com"}, "metadata": {"n": i, "note": "a\nb"}})))
                    .collect();
                store.append(tenant, events).await.unwrap();
                appended = size;
                if checkpoints.contains(&size) {
                    add_checkpoint(&store, tenant, size).await;
                }
            }
        }
        store.shutdown().await.unwrap();
    });
}

async fn add_checkpoint(store: &SqliteStore, tenant: &str, size: u64) {
    let head = store.tree_head(tenant).await.unwrap();
    assert_eq!(head.size, size);
    let checkpoint = Checkpoint::new(format!("veritrail.test/{tenant}"), size, Hash(head.root));
    let note = sign_checkpoint(&checkpoint, &signer()).unwrap();
    let stored = StoredCheckpoint { size, root: head.root, note, created_at: Timestamp::UNIX_EPOCH };
    store.add_checkpoint(tenant, stored).await.unwrap();
}

fn open(dir: &Path) -> Connection {
    Connection::open(dir.join(LEDGER_FILE)).unwrap()
}

fn key(conn: &Connection, tenant: &str, seq: u64) -> i64 {
    let no: i64 = conn.query_row("SELECT no FROM tenants WHERE id = ?1", [tenant], |row| row.get(0)).unwrap();
    record_key(no, seq)
}

fn sealed(conn: &Connection, key: i64) -> Vec<u8> {
    conn.query_row("SELECT sealed FROM records WHERE key = ?1", [key], |row| row.get(0)).unwrap()
}

fn set_sealed(conn: &Connection, key: i64, sealed: &[u8], recompute_leaf: bool) {
    conn.execute("UPDATE records SET sealed = ?2 WHERE key = ?1", params![key, sealed]).unwrap();
    if recompute_leaf {
        let leaf = leaf_hash(sealed);
        conn.execute("UPDATE records SET leaf_hash = ?2 WHERE key = ?1", params![key, leaf.0.as_slice()]).unwrap();
    }
}

fn replace(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains(from), "{from} not in {text}");
    text.replacen(from, to, 1).into_bytes()
}

/// Builds a ledger, damages it with `tamper`, and returns the failure — found alike with the
/// damage still in the WAL (records read through SQLite) and once it is in the database file
/// (records read from its pages).
fn failure_after(tamper: impl FnOnce(&Connection)) -> super::Failure {
    let dir = tempfile::tempdir().unwrap();
    ledger(dir.path());
    let conn = open(dir.path());
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    tamper(&conn);
    let path = dir.path().join(LEDGER_FILE);
    assert!(super::pages::wal_may_hold_frames(&path).unwrap());
    let through_sqlite = failure_of(dir.path());
    // What a stopped server leaves (the store's WAL checkpointer may still hold a connection
    // here for a moment, so closing this one is not enough).
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    drop(conn);
    assert!(!super::pages::wal_may_hold_frames(&path).unwrap());
    let from_pages = failure_of(dir.path());
    assert_eq!(through_sqlite, from_pages);
    from_pages
}

fn failure_of(dir: &Path) -> super::Failure {
    match verify_data_dir(dir, None) {
        Err(VerifyError::Failed(failure)) => failure,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn an_intact_ledger_verifies() {
    let dir = tempfile::tempdir().unwrap();
    ledger(dir.path());
    let report = verify_data_dir(dir.path(), None).unwrap();
    assert_eq!(report.quick_check, "ok");
    assert_eq!(report.tenants.len(), 2);
    assert_eq!(report.records(), RECORDS + 20);
    assert_eq!(report.checkpoints(), 5);
    assert_eq!(report.merkle_nodes(), RECORDS / 16 + 20 / 16);
    assert_eq!(report.tenants[0].latest_checkpoint, Some(90));
    assert_eq!(report.uncovered(), 10);

    assert!(report.read_pages, "the store is closed: its WAL is empty");

    let trusted = [signer().verifier_key()];
    assert_eq!(verify_data_dir(dir.path(), Some(&trusted)).unwrap(), report);

    // The same verdict through SQLite, while a connection keeps a frame in the WAL.
    let conn = open(dir.path());
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    conn.execute("INSERT INTO settings (name, value) VALUES ('test.touch', x'00')", []).unwrap();
    let through_sqlite = verify_data_dir(dir.path(), None).unwrap();
    assert!(!through_sqlite.read_pages);
    assert_eq!(through_sqlite.tenants, report.tenants);
}

#[test]
fn an_edited_record_is_caught_by_its_leaf_hash() {
    let failure = failure_after(|conn| {
        let key = key(conn, TENANT, 41);
        set_sealed(conn, key, &replace(&sealed(conn, key), "user.login", "user.logon"), false);
    });
    assert_eq!((failure.tenant.as_deref(), failure.at), (Some(TENANT), Location::Seq(41)));
    assert!(failure.problem.starts_with("leaf hash mismatch (stored "), "{failure}");
    assert!(failure.to_string().starts_with("tenant tn_alpha: seq 41: leaf hash mismatch"), "{failure}");
}

#[test]
fn an_edited_record_with_its_leaf_hash_is_caught_by_the_merkle_nodes() {
    let failure = failure_after(|conn| {
        let key = key(conn, TENANT, 41);
        set_sealed(conn, key, &replace(&sealed(conn, key), "user.login", "user.logon"), true);
    });
    assert_eq!(failure.at, Location::Seqs { first: 32, last: 47 });
    assert!(failure.problem.starts_with("merkle node (level 4, index 2) mismatch"), "{failure}");
}

#[test]
fn an_edited_trailing_record_with_its_leaf_hash_is_caught_by_the_checkpoint() {
    let failure = failure_after(|conn| {
        let key = key(conn, TENANT, 81);
        set_sealed(conn, key, &replace(&sealed(conn, key), "user.login", "user.logon"), true);
    });
    assert_eq!(failure.at, Location::Checkpoint { size: 90 });
    assert!(failure.problem.starts_with("root mismatch (signed "), "{failure}");
}

#[test]
fn a_deleted_record_is_missing() {
    let failure = failure_after(|conn| {
        conn.execute("DELETE FROM records WHERE key = ?1", [key(conn, TENANT, 41)]).unwrap();
    });
    assert_eq!((failure.at, failure.problem.as_str()), (Location::Seq(41), "missing"));
}

#[test]
fn deleted_trailing_records_are_missing() {
    // The last records, beyond every checkpoint: the merkle node of 80..=95 still tells.
    let failure = failure_after(|conn| {
        conn.execute(
            "DELETE FROM records WHERE key >= ?1 AND key <= ?2",
            [key(conn, TENANT, 85), key(conn, TENANT, 99)],
        )
        .unwrap();
    });
    assert_eq!(failure.at, Location::Seq(85));
    assert_eq!(failure.problem, "missing (the checkpoint at size 90 covers it)");

    let failure = failure_after(|conn| {
        conn.execute(
            "DELETE FROM records WHERE key >= ?1 AND key <= ?2",
            [key(conn, TENANT, 95), key(conn, TENANT, 99)],
        )
        .unwrap();
    });
    assert_eq!(failure.at, Location::Seq(95));
    assert_eq!(failure.problem, "missing (merkle node (level 4, index 5) covers seq 80..=95)");
}

#[test]
fn deleted_blocks_of_records_are_missing() {
    // Whole blocks of the checker threads (7 seqs in tests) gone, the first and later ones.
    for (first, last) in [(0, 20), (14, 27), (21, 50)] {
        let failure = failure_after(|conn| {
            conn.execute(
                "DELETE FROM records WHERE key >= ?1 AND key <= ?2",
                [key(conn, TENANT, first), key(conn, TENANT, last)],
            )
            .unwrap();
        });
        assert_eq!((failure.at, failure.problem.as_str()), (Location::Seq(first), "missing"), "{first}..={last}");
    }
}

#[test]
fn a_record_far_beyond_the_last_leaves_the_seqs_between_missing() {
    let failure = failure_after(|conn| {
        let (from, to) = (key(conn, TENANT, 99), key(conn, TENANT, 5000));
        conn.execute("UPDATE records SET key = ?2 WHERE key = ?1", [from, to]).unwrap();
    });
    assert_eq!((failure.at, failure.problem.as_str()), (Location::Seq(99), "missing"));
}

#[test]
fn a_ledger_verifies_while_it_grows() {
    // The checker threads' snapshots may hold records the main one does not: they must stop at
    // its last record.
    let dir = tempfile::tempdir().unwrap();
    ledger(dir.path());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let store = runtime.block_on(async { SqliteStore::open(dir.path()) }).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = RECORDS;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let event = json!({"id": format!("evt_{n}"), "action": "user.login", "actor": {"id": "u1"}});
                runtime.block_on(store.append(TENANT, vec![veritrail_store::suite::prepared(event)])).unwrap();
                n += 1;
            }
        });
        for _ in 0..40 {
            let report = verify_data_dir(dir.path(), None).unwrap();
            assert!(report.tenants[0].records >= RECORDS);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    runtime.block_on(store.shutdown()).unwrap();
}

#[test]
fn checker_threads_stop_at_the_last_record_of_the_main_snapshot() {
    // The checkers' connections may see records appended after the main snapshot: blocks end at
    // the last seq that snapshot holds, even inside a block. Likewise when they read pages.
    let dir = tempfile::tempdir().unwrap();
    ledger(dir.path());
    let path = dir.path().join(LEDGER_FILE);
    let mut conn = super::open_read_only(&path).unwrap();
    let no: i64 = conn.query_row("SELECT no FROM tenants WHERE id = ?1", [TENANT], |row| row.get(0)).unwrap();
    let (file, records) = table_pages(&path, "records");
    for reader in [super::Reader::Sqlite(&mut conn), super::Reader::File(&file, records)] {
        let queue = super::BlockQueue::new(50, 2);
        let (done, arrivals) = std::sync::mpsc::channel();
        let mut seqs = Vec::new();
        std::thread::scope(|scope| {
            let (queue, done) = (&queue, done);
            scope.spawn(move || queue.work(reader, (no, TENANT), &done));
            for _ in 0..queue.blocks {
                let (_, block) = arrivals.recv().unwrap();
                assert!(block.error.is_none());
                seqs.extend(block.rows.iter().map(|row| crate::schema::key_seq(row.key)));
                queue.give_back(block);
            }
        });
        seqs.sort_unstable();
        assert_eq!(seqs, (0..=50).collect::<Vec<u64>>());
    }
}

/// Table `table` of the ledger of a closed store, to read from its pages.
fn table_pages(path: &Path, table: &'static str) -> (super::pages::DatabaseFile, super::pages::Table) {
    let conn = super::open_read_only(path).unwrap();
    let root = super::root_page(&conn, table).unwrap().unwrap();
    let file = super::pages::DatabaseFile::open(path).unwrap().expect("the WAL is empty");
    (file, super::pages::Table::new(table, root).unwrap())
}

type OwnedRow = (i64, Vec<rusqlite::types::Value>);

#[test]
fn rows_read_from_pages_are_the_rows_sqlite_reads() {
    // Records small and large: those past ~4 kB spill to overflow pages, one over several.
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(dir.path()).unwrap();
        for tenant in [TENANT, OTHER] {
            let created_at = Timestamp::UNIX_EPOCH;
            store.create_tenant(Tenant { id: tenant.into(), name: tenant.into(), created_at }).await.unwrap();
            let events = (0..400)
                .map(|i: usize| {
                    let note = "n".repeat([10, 900, 3_900, 4_100, 9_000, 60_000][i % 6] + i);
                    veritrail_store::suite::prepared(json!({"id": format!("evt_{i}"), "action": "user.login",
                        "actor": {"id": "u1"}, "metadata": {"note": note}}))
                })
                .collect();
            store.append(tenant, events).await.unwrap();
        }
        store.shutdown().await.unwrap();
    });
    let path = dir.path().join(LEDGER_FILE);
    let (file, records) = table_pages(&path, "records");
    let conn = super::open_read_only(&path).unwrap();
    let (alpha, beta) = (key(&conn, TENANT, 0), key(&conn, OTHER, 0));
    let ranges = [
        i64::MIN..=i64::MAX,
        alpha..=alpha + 399,
        alpha + 17..=alpha + 230,
        beta + 5..=beta + 5,
        beta + 400..=i64::MAX,
    ];
    let mut buffers = super::pages::Buffers::default();
    for keys in ranges {
        let mut from_pages: Vec<OwnedRow> = Vec::new();
        file.scan(records, keys.clone(), &mut buffers, |row: super::pages::Row<'_, 5>| {
            from_pages.push((
                row.key,
                row.columns.iter().map(|value| rusqlite::types::Value::try_from(*value).unwrap()).collect(),
            ));
            Ok::<_, super::pages::Corrupt>(())
        })
        .unwrap();
        let mut stmt = conn
            .prepare("SELECT key, key, tenant_no, event_id, leaf_hash, sealed FROM records WHERE key BETWEEN ?1 AND ?2 ORDER BY key")
            .unwrap();
        let through_sqlite: Vec<OwnedRow> = stmt
            .query_map(params![keys.start(), keys.end()], |row| {
                // The key column is the rowid itself, stored as NULL in the record.
                let mut columns = vec![rusqlite::types::Value::Null];
                columns.extend((2..6).map(|i| row.get::<_, rusqlite::types::Value>(i).unwrap()));
                Ok((row.get(0)?, columns))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(from_pages.len(), through_sqlite.len(), "{keys:?}");
        assert!(from_pages == through_sqlite, "{keys:?}: the rows differ");
    }
    let report = verify_data_dir(dir.path(), None).unwrap();
    assert!(report.read_pages);
    assert_eq!(report.records(), 800);
}

/// A fresh ledger (`ledger`), and one page of `table` in it: its number and bytes; `pick`
/// chooses it from the leaf pages in key order and the root.
fn ledger_page(
    table: &'static str,
    pick: impl FnOnce(&[u32], u32) -> u32,
) -> (tempfile::TempDir, std::path::PathBuf, u32, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    ledger(dir.path());
    let path = dir.path().join(LEDGER_FILE);
    let (file, table) = table_pages(&path, table);
    let page = pick(&file.leaf_pages(table), table.root);
    let bytes = read_page(&path, file.page_size(), page);
    (dir, path, page, bytes)
}

fn read_page(path: &Path, page_size: usize, page: u32) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut bytes = vec![0; page_size];
    std::fs::File::open(path).unwrap().read_exact_at(&mut bytes, (u64::from(page) - 1) * page_size as u64).unwrap();
    bytes
}

/// Overwrites `bytes` at `offset` of page `page` of the ledger file.
fn damage_page(path: &Path, page_size: usize, page: u32, offset: usize, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, (u64::from(page) - 1) * page_size as u64 + offset as u64).unwrap();
}

#[test]
fn a_damaged_records_page_is_a_corrupt_database() {
    // Page header: type at 0, cell count at 3..5; cell pointers from 8 (a leaf page).
    /// Where to write what, given the page.
    type Damage = fn(&[u8]) -> (usize, Vec<u8>);
    let cases: [(&str, Damage); 4] = [
        ("page type 0x0a is not a table B-tree page", |_| (0, vec![0x0a])),
        ("cells do not fit in the page", |_| (3, vec![0xff, 0xff])),
        ("outside the cell content area", |_| (8, vec![0x00, 0x01])),
        // The first two cell pointers swapped: keys out of order.
        ("out of order", |page| (8, [&page[10..12], &page[8..10]].concat())),
    ];
    for (expected, damage) in cases {
        let (dir, path, leaf, page) = ledger_page("records", |leaves, _| leaves[3]);
        let (offset, bytes) = damage(&page);
        damage_page(&path, page.len(), leaf, offset, &bytes);
        let failure = failure_of(dir.path());
        assert_eq!((failure.tenant.as_deref(), failure.at), (None, Location::Ledger));
        assert!(
            failure.problem.starts_with(&format!("database is corrupt: records page {leaf}: ")),
            "{}",
            failure.problem
        );
        assert!(failure.problem.contains(expected), "{expected}: {}", failure.problem);
    }
}

#[test]
fn a_records_page_outside_the_file_is_a_corrupt_database() {
    let (dir, path, root, page) = ledger_page("records", |_, root| root);
    assert_eq!(page[0], 0x05, "100 records of this size take more than one page");
    // The child pointer of the root's third cell (SQLite's own queries of the main snapshot go
    // down the first and last) beyond the end of the file.
    let cell = usize::from(u16::from_be_bytes([page[12 + 4], page[12 + 5]]));
    damage_page(&path, page.len(), root, cell, &u32::MAX.to_be_bytes());
    let failure = failure_of(dir.path());
    assert!(failure.problem.contains(&format!("refers to page {}", u32::MAX)), "{}", failure.problem);
}

#[test]
fn personal_data_read_from_pages_is_checked_like_quick_check_does() {
    use super::pages::varint;
    // `personal` is STRICT: a wrong column type can only come from damage below SQL. Here the
    // serial type of the first row's `data` (a blob) turned into a text of the same length.
    let (dir, path, leaf, page) = ledger_page("personal", |leaves, _| leaves[0]);
    let cell = usize::from(u16::from_be_bytes([page[8], page[9]]));
    let (_, rowid_at) = varint(&page, cell).unwrap();
    let (key, record_at) = varint(&page, rowid_at).unwrap();
    let (_, key_type_at) = varint(&page, record_at).unwrap();
    let (_, data_type_at) = varint(&page, key_type_at).unwrap();
    let (data_type, after) = varint(&page, data_type_at).unwrap();
    assert!(data_type >= 12 && data_type % 2 == 0, "data is a blob");
    damage_page(&path, page.len(), leaf, after - 1, &[page[after - 1] ^ 1]);
    let failure = failure_of(dir.path());
    assert_eq!(failure.problem, format!("personal data of record key {key}: data is not a blob"));

    // And its B-tree like the records' one.
    damage_page(&path, page.len(), leaf, 0, &[0x0a]);
    let failure = failure_of(dir.path());
    assert!(
        failure.problem.starts_with(&format!("database is corrupt: personal page {leaf}: page type 0x0a")),
        "{}",
        failure.problem
    );
}

#[test]
fn only_a_wal_whose_first_frame_matches_its_header_may_hold_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LEDGER_FILE);
    let wal = dir.path().join(format!("{LEDGER_FILE}-wal"));
    let may_hold = || super::pages::wal_may_hold_frames(&path).unwrap();
    assert!(!may_hold(), "no WAL");
    std::fs::write(&wal, []).unwrap();
    assert!(!may_hold(), "an empty WAL");
    std::fs::write(&wal, [7; 40]).unwrap();
    assert!(!may_hold(), "shorter than a header and a frame header");
    let mut bytes = vec![0; 32 + 24 + 4096];
    bytes[16..24].copy_from_slice(b"saltsalt");
    bytes[40..48].copy_from_slice(b"oldsalts");
    std::fs::write(&wal, &bytes).unwrap();
    assert!(!may_hold(), "a frame left from before the last restart");
    bytes[40..48].copy_from_slice(b"saltsalt");
    std::fs::write(&wal, &bytes).unwrap();
    assert!(may_hold());
}

#[test]
fn swapped_records_claim_another_seq() {
    let failure = failure_after(|conn| {
        let (a, b) = (key(conn, TENANT, 41), key(conn, TENANT, 42));
        let (sealed_a, sealed_b) = (sealed(conn, a), sealed(conn, b));
        set_sealed(conn, a, &sealed_b, true);
        set_sealed(conn, b, &sealed_a, true);
    });
    assert_eq!((failure.at, failure.problem.as_str()), (Location::Seq(41), "record claims seq 42"));
}

#[test]
fn a_record_of_another_tenant_is_refused() {
    let failure = failure_after(|conn| {
        let key = key(conn, TENANT, 3);
        set_sealed(conn, key, &replace(&sealed(conn, key), TENANT, "tn_alphb"), true);
    });
    assert_eq!((failure.at, failure.problem.as_str()), (Location::Seq(3), "record claims tenant tn_alphb"));
}

#[test]
fn a_non_canonical_record_is_refused() {
    let failure = failure_after(|conn| {
        let key = key(conn, TENANT, 7);
        set_sealed(conn, key, &replace(&sealed(conn, key), "\"action\":", "\"action\": "), true);
    });
    assert_eq!((failure.at, failure.problem.as_str()), (Location::Seq(7), "not canonical JSON"));
}

#[test]
fn a_forged_checkpoint_is_refused() {
    // Re-signed with a key of the forger's, registered in the ledger's own settings: only a
    // trusted key given from outside catches it.
    let dir = tempfile::tempdir().unwrap();
    ledger(dir.path());
    let forger = NoteSigner::from_seed("veritrail.test", [6; 32]).unwrap();
    let conn = open(dir.path());
    let note: String = conn
        .query_row("SELECT note FROM checkpoints WHERE tree_size = 40 AND tenant_no = 1", [], |row| row.get(0))
        .unwrap();
    let body = &note[..note.find("\n\n").unwrap() + 1];
    let forged = forger.sign(body).unwrap();
    conn.execute("UPDATE checkpoints SET note = ?1 WHERE tree_size = 40 AND tenant_no = 1", [&forged]).unwrap();
    let failure = match verify_data_dir(dir.path(), None) {
        Err(VerifyError::Failed(failure)) => failure,
        other => panic!("expected a failure, got {other:?}"),
    };
    assert_eq!(failure.at, Location::Checkpoint { size: 40 });
    assert_eq!(failure.problem, "note does not verify: note has no signature by a trusted key");

    let keys = json!([{"verifier_key": forger.verifier_key().to_string()}, {"verifier_key": signer().verifier_key().to_string()}]);
    conn.execute("UPDATE settings SET value = ?1 WHERE name = 'ledger.signing_keys'", [keys.to_string().into_bytes()])
        .unwrap();
    assert!(verify_data_dir(dir.path(), None).is_ok());
    let trusted: [VerifierKey; 1] = [signer().verifier_key()];
    assert!(matches!(verify_data_dir(dir.path(), Some(&trusted)), Err(VerifyError::Failed(_))));
}

fn insert_timestamp(conn: &Connection, size: i64, response: &[u8]) {
    let no: i64 = conn.query_row("SELECT no FROM tenants WHERE id = ?1", [TENANT], |row| row.get(0)).unwrap();
    conn.execute(
        "INSERT INTO checkpoint_timestamps (tenant_no, tree_size, response, created_at) VALUES (?1, ?2, ?3, 0)",
        params![no, size, response],
    )
    .unwrap();
}

#[test]
fn a_time_stamp_without_its_checkpoint_is_refused() {
    let failure = failure_after(|conn| {
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap(); // what a tamperer can do
        insert_timestamp(conn, 41, b"\x30\x00");
    });
    assert_eq!((failure.tenant.as_deref(), failure.at), (Some(TENANT), Location::Checkpoint { size: 41 }));
    assert_eq!(failure.problem, "a time-stamp of size 41 but no checkpoint at that size");
}

#[test]
fn a_damaged_time_stamp_names_its_checkpoint() {
    let failure = failure_after(|conn| insert_timestamp(conn, 40, b"\x30\x03\x02\x01\x00"));
    assert_eq!((failure.tenant.as_deref(), failure.at), (Some(TENANT), Location::Checkpoint { size: 40 }));
    assert!(failure.problem.starts_with("time-stamp does not verify: malformed time-stamp response"), "{failure}");
}

#[test]
fn a_ledger_from_before_time_stamps_verifies() {
    let dir = tempfile::tempdir().unwrap();
    ledger(dir.path());
    open(dir.path()).execute_batch("DROP TABLE checkpoint_timestamps").unwrap();
    let report = verify_data_dir(dir.path(), None).unwrap();
    assert_eq!((report.checkpoints(), report.timestamps()), (5, 0));
    assert_eq!(report.latest_timestamp(), None);
}

#[test]
fn a_stored_merkle_node_is_checked() {
    let failure = failure_after(|conn| {
        conn.execute("UPDATE merkle_nodes SET hash = zeroblob(32) WHERE level = 4 AND idx = 3 AND tenant_no = 1", [])
            .unwrap();
    });
    assert_eq!(failure.at, Location::Seqs { first: 48, last: 63 });
    assert!(failure.problem.starts_with("merkle node (level 4, index 3) mismatch (stored AAAA"), "{failure}");
    let failure = failure_after(|conn| {
        conn.execute("DELETE FROM merkle_nodes WHERE level = 4 AND idx = 3 AND tenant_no = 1", []).unwrap();
    });
    assert_eq!(failure.problem, "merkle node (level 4, index 3) is missing");
}

#[test]
fn records_outside_every_tenant_are_refused() {
    let failure = failure_after(|conn| {
        conn.execute(
            "INSERT INTO records (key, tenant_no, event_id, leaf_hash, sealed) VALUES (?1, 9, 'x', x'00', x'00')",
            [record_key(9, 0)],
        )
        .unwrap();
    });
    assert_eq!((failure.tenant, failure.at), (None, Location::Ledger));
    assert!(failure.problem.starts_with("record key 9895604649984 belongs to no tenant"), "{}", failure.problem);
}

#[test]
fn a_missing_ledger_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(verify_data_dir(dir.path(), None), Err(VerifyError::NoLedger(_))));
    assert!(!dir.path().join(LEDGER_FILE).exists(), "read-only: nothing created");
}

#[test]
fn garbage_instead_of_a_database_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(LEDGER_FILE), vec![0x5a; 8192]).unwrap();
    let result = verify_data_dir(dir.path(), None);
    assert!(matches!(result, Err(VerifyError::Failed(_))), "{result:?}");
}

#[test]
fn sealed_heads_are_read() {
    let head = read_sealed_head(br#"{"id":"evt_1","seq":41,"tenant":"tn_x","v":1}"#).unwrap();
    assert_eq!((head.seq, &*head.tenant, head.id.as_deref()), (41, "tn_x", Some("evt_1")));
    // Escaped or exotic values take the reference path and give the same answer.
    let head = read_sealed_head(br#"{"n":1.5,"seq":41,"tenant":"tn_\"x\"","\u00e9":0}"#);
    assert!(head.is_err(), "names must be sorted by UTF-16 and é is not escaped in canonical form");
    let head = read_sealed_head("{\"n\":1.5,\"seq\":41,\"tenant\":\"tn_\\\"x\\\"\",\"é\":0}".as_bytes()).unwrap();
    assert_eq!((head.seq, &*head.tenant, head.id), (41, "tn_\"x\"", None));

    let refused: [(&[u8], SealedRecordError); 8] = [
        (b"", SealedRecordError::NotCanonical),
        (b"{\"seq\":1,\"tenant\":\"t\"} ", SealedRecordError::NotCanonical),
        (b"{\"tenant\":\"t\",\"seq\":1}", SealedRecordError::NotCanonical),
        (b"[1,\"t\"]", SealedRecordError::NotAnObject),
        (b"{\"seq\":-1,\"tenant\":\"t\"}", SealedRecordError::NoSeq),
        (b"{\"seq\":1.5,\"tenant\":\"t\"}", SealedRecordError::NoSeq),
        (b"{\"seq\":1,\"tenant\":7}", SealedRecordError::NoTenant),
        (b"{\"id\":[],\"seq\":1,\"tenant\":\"t\"}", SealedRecordError::IdNotString),
    ];
    for (bytes, expected) in refused {
        assert_eq!(read_sealed_head(bytes), Err(expected), "{}", String::from_utf8_lossy(bytes));
    }
}

/// The fast check against the reference: it may only accept what `jcs::is_canonical`
/// accepts, and it should accept the usual canonical records.
#[test]
fn the_fast_canonical_check_agrees_with_the_reference() {
    let samples: &[&str] = &[
        "{}",
        "[]",
        "0",
        "-1",
        "9007199254740992",
        "-9007199254740992",
        "9007199254740993",
        "1e3",
        "1.5",
        "-0",
        "01",
        "\"\"",
        "\"\\u001f\"",
        "\"\\u001F\"",
        "\"\\u000a\"",
        "\"\\n\"",
        "\"\\/\"",
        "\"é\"",
        "\"\\u00e9\"",
        "\"\u{7f}\"",
        "\"\u{2028}\"",
        "{\"a\":1,\"a\":1}",
        "{\"b\":1,\"a\":2}",
        "{\"a\":1,\"b\":2}",
        "{\"a\":[1,2,{\"c\":null}],\"b\":true}",
        "{\"a\" :1}",
        "[1,]",
        "[1 ]",
        "{\"a\":1,}",
        "tru",
        "nul",
        "\"abc",
        "{\"a\":\"\\ud800\"}",
        "{\"\u{e000}\":1,\"\u{1f600}\":2}",
        "[\"\\\"\\\\\\b\\t\\n\\f\\r\"]",
    ];
    for sample in samples {
        let fast = canonical::check(sample.as_bytes()).is_some();
        let reference = jcs::is_canonical(sample.as_bytes());
        assert!(!fast || reference, "fast check accepts {sample:?}, the reference does not");
    }
    for accepted in ["{}", "-1", "9007199254740992", "\"\\u001f\"", "\"é\"", "{\"a\":[1,2,{\"c\":null}],\"b\":true}"] {
        assert!(canonical::check(accepted.as_bytes()).is_some(), "{accepted}");
    }

    // Random documents, canonicalized, then with random bytes changed.
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let alphabet = b"{}[]\",:\\-0123456789.eEabtnfrlsu \x01\x1f\x7f\x80\xc3\xa9\xff";
    for _ in 0..3000 {
        let value = random.value(0);
        let canonical = jcs::canonicalize(&value).unwrap();
        assert!(jcs::is_canonical(canonical.as_bytes()));
        let mut bytes = canonical.into_bytes();
        for _ in 0..=random.below(3) {
            let fast = canonical::check(&bytes).is_some();
            assert!(!fast || jcs::is_canonical(&bytes), "fast check accepts {:?}", String::from_utf8_lossy(&bytes));
            if bytes.is_empty() {
                break;
            }
            let at = random.below(bytes.len() as u64) as usize;
            bytes[at] = alphabet[random.below(alphabet.len() as u64) as usize];
        }
    }
}

/// Records long enough to take the fast check's other path (over 4 KiB), and records whose
/// quotes fall on either side of its 64-byte words, agree with the reference too.
#[test]
fn the_fast_canonical_check_agrees_on_long_records() {
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    for length in (4000..4200).step_by(3).chain(60..70) {
        let note: String = (0..length).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let mut record = json!({"id": "evt_1", "seq": 3, "tenant": "tn_x", "note": note, "tags": ["a", "b\"c", "é"]});
        if length % 2 == 0 {
            record["tags"] = json!(["a", "b", "c"]);
        }
        let canonical = jcs::canonicalize(&record).unwrap().into_bytes();
        let head = read_sealed_head(&canonical).unwrap();
        assert_eq!((head.seq, &*head.tenant, head.id.as_deref()), (3, "tn_x", Some("evt_1")));
        assert!(canonical::check_record(&canonical).is_some(), "{length}");
        for _ in 0..20 {
            let mut bytes = canonical.clone();
            let at = random.below(bytes.len() as u64) as usize;
            bytes[at] = b"\"\\ ,:{}[]0\x01\x80"[random.below(11) as usize];
            let fast = canonical::check(&bytes).is_some();
            assert!(!fast || jcs::is_canonical(&bytes), "fast check accepts {:?}", String::from_utf8_lossy(&bytes));
        }
    }
}

/// xorshift64*: enough randomness for generating test documents.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }

    fn string(&mut self) -> String {
        let pieces = [
            "a",
            "b",
            "seq",
            "id",
            "é",
            "\n",
            "\u{1}",
            "\u{1f}",
            "\"",
            "\\",
            "\u{7f}",
            "\u{e000}",
            "\u{1f600}",
            "/",
            "0123456789abcdef",
            " !#$%&'()*+,-./",
        ];
        (0..self.below(6)).map(|_| pieces[self.below(pieces.len() as u64) as usize]).collect()
    }

    fn value(&mut self, depth: u32) -> serde_json::Value {
        let kind = if depth > 3 { self.below(5) } else { self.below(7) };
        match kind {
            0 => serde_json::Value::Null,
            1 => serde_json::Value::Bool(self.below(2) == 0),
            2 => json!(self.below(1 << 54) as i64 - (1 << 53)),
            3 => json!(self.below(1000) as f64 / 8.0),
            4 => json!(self.string()),
            5 => (0..self.below(4)).map(|_| self.value(depth + 1)).collect(),
            _ => {
                let map: serde_json::Map<_, _> =
                    (0..self.below(5)).map(|_| (self.string(), self.value(depth + 1))).collect();
                serde_json::Value::Object(map)
            }
        }
    }
}
