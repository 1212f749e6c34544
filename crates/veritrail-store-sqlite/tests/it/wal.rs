//! The ledger's WAL under sustained ingest: SQLite restarts a WAL only when a checkpoint has
//! caught up with every frame before the next write, which a PASSIVE checkpoint never does
//! while the writer commits without pause, so the WAL grew for as long as the load lasted. Past
//! its size limit the checkpoint thread now restarts it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::json;
use veritrail_store::suite::prepared;
use veritrail_store::{Store, Tenant};
use veritrail_store_sqlite::{OpenOptions, SqliteStore};

/// The checkpoint sequence number in the WAL header (bytes 12–15, big-endian): SQLite raises
/// it each time it restarts the log. `None` while the file is missing or shorter.
fn checkpoint_sequence(wal: &std::path::Path) -> Option<u32> {
    let bytes = std::fs::read(wal).ok()?;
    let field: [u8; 4] = bytes.get(12..16)?.try_into().ok()?;
    Some(u32::from_be_bytes(field))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wal_past_its_limit_restarts_under_sustained_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let options = OpenOptions { wal_restart_bytes: 1 << 20, ..OpenOptions::default() };
    let store = Arc::new(SqliteStore::open_with(dir.path(), options).unwrap());
    store
        .create_tenant(Tenant { id: "tn_wal".into(), name: "wal".into(), created_at: Timestamp::now() })
        .await
        .unwrap();
    let wal = dir.path().join("ledger.sqlite-wal");
    // Four writers without pause for long enough for several checkpoint passes (every 2 s).
    let until = Instant::now() + Duration::from_secs(7);
    let mut writers = Vec::new();
    for writer in 0..4u32 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut batch_no = 0u32;
            while Instant::now() < until {
                let events = (0..50u32)
                    .map(|i| {
                        prepared(json!({
                            "id": format!("w{writer}-b{batch_no}-e{i}"),
                            "action": "data.read",
                            "actor": {"id": format!("svc-{writer}")},
                            "metadata": {"batch": batch_no, "padding": "x".repeat(400)},
                        }))
                    })
                    .collect();
                store.append("tn_wal", events).await.unwrap();
                batch_no += 1;
            }
            batch_no * 50
        }));
    }
    let mut sequences = std::collections::BTreeSet::new();
    while Instant::now() < until {
        if let Some(sequence) = checkpoint_sequence(&wal) {
            sequences.insert(sequence);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut appended = 0u64;
    for writer in writers {
        appended += u64::from(writer.await.unwrap());
    }
    assert!(
        sequences.len() >= 2,
        "the WAL was never restarted during the load ({appended} events; checkpoint sequences seen: {sequences:?})"
    );
    // Every acknowledged event is still there, in a ledger of dense seqs.
    assert_eq!(store.tree_size("tn_wal").await.unwrap(), appended);
    store.shutdown().await.unwrap();
}
