//! Encryption at rest on PostgreSQL: no personal value of an event reaches the database in
//! clear — not in any table, not in the WAL — blind-index lookups work, and erasure on one node
//! is seen by another at once.

use jiff::Timestamp;
use serde_json::json;
use veritrail_query::parse_params;
use veritrail_store::suite::prepared;
use veritrail_store::{Store, Tenant};
use veritrail_store_postgres::PgStore;
use veritrail_test_support::postgres::TestDatabase;

use crate::test_keys;

const SECRETS: &[&str] =
    &["carol.danvers@pg-secret.example", "Carol Danvers", "192.0.2.201", "CarolAgent/9", "Hala Station"];

fn files_containing(dir: &std::path::Path, needle: &str, found: &mut Vec<String>) {
    debug_assert!(needle.is_ascii(), "lossy decoding keeps ascii intact, and only ascii");
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_containing(&path, needle, found);
        } else if let Ok(bytes) = std::fs::read(&path)
            // The standard library's search is optimised even in test builds (the cluster's files
            // are tens of megabytes).
            && String::from_utf8_lossy(&bytes).contains(needle)
        {
            found.push(path.display().to_string());
        }
    }
}

async fn query_ids(store: &PgStore, tenant: &str, pairs: &[(&str, &str)]) -> Vec<String> {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (query, page) = parse_params(&pairs).unwrap();
    let page = store.query(tenant, &query, &page).await.unwrap();
    page.events.into_iter().map(|e| e.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_never_reaches_postgresql_in_clear() {
    let database = tokio::task::spawn_blocking(TestDatabase::create).await.unwrap();
    let (a, b) = (
        PgStore::connect(&database.url, test_keys()).await.unwrap(),
        PgStore::connect(&database.url, test_keys()).await.unwrap(),
    );
    for tenant in ["acme", "globex"] {
        a.create_tenant(Tenant { id: tenant.into(), name: tenant.into(), created_at: Timestamp::now() }).await.unwrap();
    }
    let carol = |id: &str| {
        prepared(json!({
            "id": id, "action": "auth.login.success",
            "actor": {"id": "carol", "type": "user", "name": "Carol Danvers", "email": "Carol.Danvers@pg-secret.example"},
            "context": {"ip": "192.0.2.201", "user_agent": "CarolAgent/9", "location": "Hala Station"},
        }))
    };
    a.append("acme", vec![carol("c1"), carol("c2")]).await.unwrap();
    b.append("globex", vec![carol("g1")]).await.unwrap();
    a.append(
        "acme",
        vec![prepared(json!({"id": "o1", "action": "data.read", "actor": {"id": "other", "email": "o@x.example"}}))],
    )
    .await
    .unwrap();

    // Blind index: exact, case-insensitive on e-mail, per tenant; both nodes agree.
    for store in [&a, &b] {
        assert_eq!(
            query_ids(store, "acme", &[("actor_email", "carol.danvers@PG-SECRET.example"), ("order", "asc")]).await,
            ["c1", "c2"]
        );
        assert_eq!(query_ids(store, "acme", &[("ip", "192.0.2.201"), ("order", "asc")]).await, ["c1", "c2"]);
        assert_eq!(query_ids(store, "globex", &[("actor_email", "carol.danvers@pg-secret.example")]).await, ["g1"]);
    }
    let read = b.event_by_id("acme", "c1").await.unwrap().unwrap();
    assert_eq!(read.personal.unwrap().get("actor.email").unwrap().value, json!("Carol.Danvers@pg-secret.example"));

    // No clear value in any table, as text or as bytea hex, nor anywhere in the cluster's files.
    let dump = database.table_dump();
    assert!(dump.contains("carol"), "the dump holds the pseudonymous ids");
    database.execute("CHECKPOINT");
    for secret in SECRETS {
        for needle in [secret.to_string(), secret.to_lowercase()] {
            assert!(!dump.contains(&needle), "{needle:?} is in a table in clear");
            let mut found = Vec::new();
            files_containing(database.cluster().data_dir(), &needle, &mut found);
            assert!(found.is_empty(), "{needle:?} is in clear in {found:?}");
        }
    }

    // Erasure on node a; node b reads the data as erased at once, and new data gets a new key.
    let erasure = a.erase_subject("acme", "carol").await.unwrap();
    assert_eq!((erasure.keys_destroyed, erasure.events_unlinked), (1, 2));
    assert!(b.event_by_id("acme", "c1").await.unwrap().unwrap().personal.is_none());
    assert!(query_ids(&b, "acme", &[("actor_email", "carol.danvers@pg-secret.example")]).await.is_empty());
    assert_eq!(query_ids(&b, "globex", &[("actor_email", "carol.danvers@pg-secret.example")]).await, ["g1"]);
    b.append("acme", vec![carol("c3")]).await.unwrap();
    let c3 = a.event_by_id("acme", "c3").await.unwrap().unwrap();
    assert_eq!(c3.personal.unwrap().get("actor.name").unwrap().value, json!("Carol Danvers"));
    assert!(b.event_by_id("acme", "c2").await.unwrap().unwrap().personal.is_none(), "old data stays erased");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// An erasure takes the tenant's ledger head lock, as every append does: it waits for a commit
/// in flight (here a transaction holding that lock, as another node's committer would) and no
/// append commits while it runs — so an append sealed under the subject's new key cannot
/// commit between the erasure's key deletion and its unlinking of search tokens, and lose its
/// tokens. (Without the lock this erasure finished at once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_is_serialised_with_the_tenants_appends() {
    let (store, database) = crate::make_store().await;
    store.create_tenant(Tenant { id: "acme".into(), name: "acme".into(), created_at: Timestamp::now() }).await.unwrap();
    let event = prepared(json!({
        "id": "c1", "action": "auth.login.success",
        "actor": {"id": "carol", "email": "carol@pg-secret.example"}, "context": {"ip": "192.0.2.201"},
    }));
    store.append("acme", vec![event]).await.unwrap();

    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "BEGIN; SELECT size FROM ledger_heads WHERE tenant_no = (SELECT no FROM tenants WHERE id = 'acme') FOR UPDATE",
        )
        .await
        .unwrap();
    let erasing = tokio::spawn({
        let store = store.clone();
        async move { store.erase_subject("acme", "carol").await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(!erasing.is_finished(), "the erasure waits for the commit in flight");
    client.batch_execute("COMMIT").await.unwrap();
    let erasure = erasing.await.unwrap().unwrap();
    assert_eq!((erasure.keys_destroyed, erasure.events_unlinked), (1, 1));
    assert!(query_ids(&store, "acme", &[("actor_email", "carol@pg-secret.example")]).await.is_empty());
    store.shutdown().await.unwrap();
}
