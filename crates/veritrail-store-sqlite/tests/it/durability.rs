use jiff::Timestamp;
use serde_json::json;
use veritrail_query::{EventQuery, PageRequest};
use veritrail_store::suite::prepared;
use veritrail_store::{Store, Tenant};
use veritrail_store_sqlite::{INDEX_FILE, SqliteStore};

async fn with_tenant(dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(dir).unwrap();
    store
        .create_tenant(Tenant { id: "tn_a".into(), name: "a".into(), created_at: Timestamp::UNIX_EPOCH })
        .await
        .unwrap();
    store
}

fn events(range: std::ops::Range<u32>) -> Vec<veritrail_model::PreparedEvent> {
    range.map(|i| prepared(json!({"id": format!("e{i}"), "action": "data.read", "actor": {"id": "u"}}))).collect()
}

/// A data directory whose store appended and indexed `n` events of `tn_a`, then stopped.
async fn stopped_after_indexing(n: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = with_tenant(dir.path()).await;
    store.append("tn_a", events(0..n)).await.unwrap();
    assert_eq!(count(&store).await, n as usize);
    store.shutdown().await.unwrap();
    drop(store);
    dir
}

async fn count(store: &SqliteStore) -> usize {
    store.wait_indexed().await.unwrap();
    let page = PageRequest { limit: 1000, ..PageRequest::default() };
    store.query("tn_a", &EventQuery::default(), &page).await.unwrap().events.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopened_store_continues_the_same_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_tenant(dir.path()).await;
    store.append("tn_a", events(0..10)).await.unwrap();
    let head = store.tree_head("tn_a").await.unwrap();
    store.shutdown().await.unwrap();
    drop(store);

    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.tree_head("tn_a").await.unwrap(), head);
    let appended = store.append("tn_a", events(5..15)).await.unwrap();
    let fresh: Vec<u64> = appended.iter().filter(|a| !a.duplicate).map(|a| a.seq).collect();
    assert_eq!(fresh, (10..15).collect::<Vec<u64>>());
    assert_eq!(count(&store).await, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_index_is_set_aside_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_tenant(dir.path()).await;
    store.append("tn_a", events(0..40)).await.unwrap();
    assert_eq!(count(&store).await, 40);
    store.shutdown().await.unwrap();
    drop(store);
    std::thread::sleep(std::time::Duration::from_millis(200));
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{INDEX_FILE}{suffix}")));
    }
    std::fs::write(dir.path().join(INDEX_FILE), b"this is not a sqlite database, just garbage bytes".repeat(100))
        .unwrap();

    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(count(&store).await, 40);
    let set_aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains("damaged"));
    assert!(set_aside, "the damaged file is kept for inspection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_index_is_rebuilt_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_tenant(dir.path()).await;
    store.append("tn_a", events(0..25)).await.unwrap();
    store.shutdown().await.unwrap();
    drop(store);
    std::thread::sleep(std::time::Duration::from_millis(200));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{INDEX_FILE}{suffix}")));
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(count(&store).await, 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_after_shutdown_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_tenant(dir.path()).await;
    store.shutdown().await.unwrap();
    assert!(store.append("tn_a", events(0..1)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_that_lost_rows_in_an_unclean_stop_is_rebuilt() {
    let dir = stopped_after_indexing(30).await;
    assert!(!dir.path().join(format!("{INDEX_FILE}.unclean")).exists(), "a clean stop removes the marker");
    // Simulate a power loss that kept the progress row but lost index rows.
    let index = rusqlite::Connection::open(dir.path().join(INDEX_FILE)).unwrap();
    index.execute("DELETE FROM events WHERE key % 3 = 0", []).unwrap();
    drop(index);
    std::fs::write(dir.path().join(format!("{INDEX_FILE}.unclean")), b"").unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(count(&store).await, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_row_beyond_its_progress_has_the_index_rebuilt() {
    // Rows and progress commit together, so a row past the progress is damage: the batch that
    // meets it fails and the whole index is derived again (never a stale row kept or patched).
    let dir = stopped_after_indexing(20).await;
    let index = rusqlite::Connection::open(dir.path().join(INDEX_FILE)).unwrap();
    let (no, next): (i64, i64) =
        index.query_row("SELECT tenant_no, next_seq FROM progress", [], |row| Ok((row.get(0)?, row.get(1)?))).unwrap();
    assert_eq!(next, 20);
    index
        .execute(
            "INSERT INTO events (key, occurred_at, action, actor_id, actor_type, outcome) VALUES (?1, 0, 'bogus', 'x', 'user', 'success')",
            [(no << 40) | 25],
        )
        .unwrap();
    drop(index);

    let store = SqliteStore::open(dir.path()).unwrap();
    store.append("tn_a", events(20..30)).await.unwrap();
    assert_eq!(count(&store).await, 30, "indexing went past the damaged row");
    store.shutdown().await.unwrap();
    drop(store);
    let index = rusqlite::Connection::open(dir.path().join(INDEX_FILE)).unwrap();
    let action: String =
        index.query_row("SELECT action FROM events WHERE key = ?1", [(no << 40) | 25], |row| row.get(0)).unwrap();
    assert_eq!(action, "data.read", "the row was derived again from the ledger");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_of_an_older_layout_is_rebuilt() {
    let dir = stopped_after_indexing(12).await;
    let index = rusqlite::Connection::open(dir.path().join(INDEX_FILE)).unwrap();
    index.pragma_update(None, "user_version", 1).unwrap();
    drop(index);
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(count(&store).await, 12);
    let again = store.append("tn_a", events(3..4)).await.unwrap();
    assert!(again[0].duplicate, "ids stay known while the index is rebuilt");
}

/// An import whose stream stops before its end (the source failed half-way) keeps nothing: no
/// store file is left in the directory, so the same import can simply run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_leaves_no_store_behind() {
    use veritrail_store::dump::{Batch, SettingRow};
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender.send(Batch::Settings(vec![SettingRow { name: "a.setting".into(), value: b"x".to_vec() }])).await.unwrap();
    drop(sender); // no Batch::End
    let options = veritrail_store_sqlite::OpenOptions::default();
    let failed = veritrail_store_sqlite::dump::import(&target, options, receiver).await;
    assert!(failed.is_err(), "a stream without its end is refused");
    let left: Vec<String> =
        std::fs::read_dir(&target).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into()).collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    assert_eq!(veritrail_store_sqlite::dump::contents(&target).unwrap(), None, "the directory holds no store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_per_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_tenant(dir.path()).await;
    store.append("tn_a", events(0..3)).await.unwrap();
    let second = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || SqliteStore::open(&dir).map(drop)
    });
    let refused = second.await.unwrap().unwrap_err().to_string();
    assert!(refused.contains("is in use by another Veritrail process"), "{refused}");
    // The refused open wrote nothing and the first store goes on.
    assert_eq!(store.append("tn_a", events(3..4)).await.unwrap()[0].seq, 3);
    // Dropped without a shutdown, the store's threads end and the directory is free again.
    drop(store);
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.tree_head("tn_a").await.unwrap().size, 4);
    assert_eq!(count(&store).await, 4);
}
