//! `Store::records` serves the last commits from memory (`RecentRecords`): whatever it serves
//! must equal what storage holds, byte for byte and clear value for clear value, also after
//! eviction, duplicates, several tenants and an erasure.

use jiff::Timestamp;
use serde_json::json;
use veritrail_store::suite::prepared;
use veritrail_store::{Store, StoredEvent, Tenant};
use veritrail_store_sqlite::{OpenOptions, SqliteStore};

fn personal_event(tenant: &str, i: u32) -> veritrail_model::PreparedEvent {
    let subject = format!("subject-{}", i % 3);
    prepared(json!({
        "id": format!("{tenant}-e{i}"),
        "action": if i.is_multiple_of(2) { "data.record.updated" } else { "auth.login.success" },
        "actor": {"id": format!("user-{}", i % 4), "email": format!("user{}@example.com", i % 4)},
        "context": {"ip": format!("10.0.0.{}", i % 7), "user_agent": "curl/8"},
        "data_subject": subject,
        "changes": {"before": {"email": "old@example.com"}, "after": {"email": format!("new{i}@example.com")}},
        "metadata": {"n": i},
    }))
}

fn plain_event(tenant: &str, i: u32) -> veritrail_model::PreparedEvent {
    prepared(json!({"id": format!("{tenant}-p{i}"), "action": "data.read", "actor": {"id": "svc"}}))
}

async fn open(dir: &std::path::Path, recent_records_bytes: usize) -> SqliteStore {
    let options = OpenOptions { recent_records_bytes, ..OpenOptions::default() };
    SqliteStore::open_with(dir, options).unwrap()
}

async fn all_records(store: &SqliteStore, tenant: &str, step: u32) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    loop {
        let page = store.records(tenant, out.len() as u64, step).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Appends to two tenants in several requests (personal data, none, duplicates), reads every
/// range from memory, then reads the same from storage after a reopen.
async fn served_equals_stored(recent_records_bytes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), recent_records_bytes).await;
    for tenant in ["tn_a", "tn_b"] {
        let tenant = Tenant { id: tenant.into(), name: tenant.into(), created_at: Timestamp::UNIX_EPOCH };
        store.create_tenant(tenant).await.unwrap();
    }
    for round in 0..6u32 {
        for tenant in ["tn_a", "tn_b"] {
            let mut batch: Vec<_> = (round * 10..round * 10 + 10).map(|i| personal_event(tenant, i)).collect();
            batch.extend((round * 3..round * 3 + 3).map(|i| plain_event(tenant, i)));
            if round > 0 {
                // A duplicate of an earlier event: answered with its seq, not added again.
                batch.push(personal_event(tenant, round * 10 - 1));
            }
            store.append(tenant, batch).await.unwrap();
        }
    }
    let mut served = Vec::new();
    for tenant in ["tn_a", "tn_b"] {
        let whole = all_records(&store, tenant, 1000).await;
        assert_eq!(whole.len(), 78, "{tenant}: 6 rounds of 13 new events");
        // Ranges starting anywhere, of any length, agree with the whole.
        for from in [0u64, 1, 12, 40, 77, 78, 500] {
            for limit in [1u32, 5, 100] {
                let part = store.records(tenant, from, limit).await.unwrap();
                let expected: Vec<_> = whole.iter().skip(from as usize).take(limit as usize).cloned().collect();
                assert_eq!(part, expected, "{tenant} from {from} limit {limit}");
            }
        }
        assert_eq!(all_records(&store, tenant, 7).await, whole);
        served.push(whole);
    }
    // The metric says where the answers came from: all from memory when everything fits the
    // budget, some from storage under eviction.
    let stats = store.stats();
    assert!(stats.records_from_memory > 0, "{stats:?}");
    if recent_records_bytes == 0 {
        assert_eq!(stats.records_from_storage, 0, "{stats:?}");
    } else {
        assert!(stats.records_from_storage > 0, "{stats:?}");
    }
    store.shutdown().await.unwrap();
    drop(store);

    let store = open(dir.path(), recent_records_bytes).await;
    for (tenant, served) in ["tn_a", "tn_b"].into_iter().zip(served) {
        let stored = all_records(&store, tenant, 1000).await;
        assert_eq!(stored, served, "{tenant}: served from memory = read back from storage");
        assert!(stored.iter().filter(|r| r.personal.is_some()).count() == 60, "{tenant}: clear values read back");
    }
    let stats = store.stats();
    assert_eq!(
        (stats.records_from_memory, stats.records_from_storage),
        (0, 2 * 78),
        "after a reopen, all from storage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_served_from_memory_equal_the_stored_ones() {
    served_equals_stored(0).await;
}

/// A budget of a few records: most ranges start before what is held and are read from
/// storage, the rest from memory; the answers are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_equal_the_stored_ones_under_eviction() {
    served_equals_stored(8 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_is_seen_at_once_in_recent_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0).await;
    let tenant = Tenant { id: "tn_a".into(), name: "a".into(), created_at: Timestamp::UNIX_EPOCH };
    store.create_tenant(tenant).await.unwrap();
    store.append("tn_a", (0..12).map(|i| personal_event("tn_a", i)).collect()).await.unwrap();
    let before = all_records(&store, "tn_a", 100).await;
    let email_of = |records: &[StoredEvent]| -> usize {
        records
            .iter()
            .filter(|r| r.personal.as_ref().is_some_and(|p| p.get("actor.email").is_some()))
            .filter(|r| r.id.ends_with("-e1") || r.id.ends_with("-e5") || r.id.ends_with("-e9"))
            .count()
    };
    assert_eq!(email_of(&before), 3, "user-1's e-mail is held before the erasure");

    store.erase_subject("tn_a", "user-1").await.unwrap();
    let after = all_records(&store, "tn_a", 100).await;
    assert_eq!(email_of(&after), 0, "the erased actor's e-mail is gone from the served records");
    assert_eq!(after.len(), before.len());
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(a.sealed, b.sealed, "sealed bytes never change");
    }
    // Appends after the erasure are served from memory again, and still agree with storage.
    store.append("tn_a", (12..20).map(|i| personal_event("tn_a", i)).collect()).await.unwrap();
    let served = all_records(&store, "tn_a", 100).await;
    store.shutdown().await.unwrap();
    drop(store);
    let store = open(dir.path(), 0).await;
    assert_eq!(all_records(&store, "tn_a", 100).await, served);
}
