//! Several `PgStore`s on one database behave like several Veritrail nodes: one dense ledger per
//! tenant, one tree, one record per event id, settings initialised once, migrations applied once.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use serde_json::json;
use veritrail_ledger::hash::{Hash, leaf_hash};
use veritrail_ledger::tree::{Frontier, MemoryTree, NodeSource};
use veritrail_store::suite::prepared;
use veritrail_store::{Appended, Store, StoreError, Tenant};
use veritrail_store_postgres::PgStore;
use veritrail_test_support::postgres::TestDatabase;

use crate::test_keys;

async fn database() -> TestDatabase {
    tokio::task::spawn_blocking(TestDatabase::create).await.unwrap()
}

async fn tenant(store: &PgStore, id: &str) {
    let tenant = Tenant { id: id.into(), name: id.into(), created_at: Timestamp::UNIX_EPOCH };
    store.create_tenant(tenant).await.unwrap();
}

fn event(id: &str) -> veritrail_model::PreparedEvent {
    prepared(json!({"id": id, "action": "data.read", "actor": {"id": "u1", "email": "u1@example.com"},
        "resource": {"type": "doc", "id": id}}))
}

/// Checks the tenant's ledger is dense from 0, holds each id once, and that the stored tree
/// (head and subtrees) is the RFC 6962 tree over the stored bytes.
async fn assert_one_valid_ledger(store: &PgStore, tenant: &str) -> BTreeMap<String, u64> {
    let records = store.records(tenant, 0, 100_000).await.unwrap();
    let mut ids = BTreeMap::new();
    let mut leaves = Vec::new();
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.seq, i as u64, "seq is dense from 0");
        assert!(ids.insert(record.id.clone(), record.seq).is_none(), "id {} stored twice", record.id);
        let leaf = leaf_hash(&record.sealed);
        assert_eq!(leaf.0, record.leaf_hash);
        leaves.push(leaf);
    }
    let mut frontier = Frontier::new();
    for leaf in &leaves {
        frontier.push(*leaf).unwrap();
    }
    let head = store.tree_head(tenant).await.unwrap();
    assert_eq!((head.size, head.root), (leaves.len() as u64, frontier.root().0));
    let memory = MemoryTree::from_leaves(leaves.clone());
    let mut nodes = Vec::new();
    for level in 0..10u32 {
        for index in 0..(leaves.len() as u64 >> level) {
            nodes.push((level, index));
        }
    }
    let stored = store.subtree_hashes(tenant, nodes.clone()).await.unwrap();
    for ((level, index), hash) in nodes.into_iter().zip(stored) {
        assert_eq!(Hash(hash), memory.perfect_subtree(level, index).unwrap(), "subtree ({level}, {index})");
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_appending_to_one_tenant_make_one_dense_ledger() {
    let database = database().await;
    let (a, b) = (
        PgStore::connect(&database.url, test_keys()).await.unwrap(),
        PgStore::connect(&database.url, test_keys()).await.unwrap(),
    );
    tenant(&a, "tn_shared").await;
    let mut tasks = Vec::new();
    for (node, store) in [("a", &a), ("b", &b)] {
        for task in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for round in 0..15 {
                    let batch = (0..4).map(|i| event(&format!("{node}{task}-{round}-{i}"))).collect();
                    acked.extend(store.append("tn_shared", batch).await.unwrap());
                }
                acked
            }));
        }
        // The same ids through both nodes at once: one record each, both answered with its seq.
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..20 {
                acked.extend(store.append("tn_shared", vec![event(&format!("both-{i}"))]).await.unwrap());
            }
            acked
        }));
    }
    let mut acked: Vec<Appended> = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    let stored = assert_one_valid_ledger(&b, "tn_shared").await;
    assert_eq!(stored.len(), 2 * 4 * 15 * 4 + 20);
    let mut first_writes = HashSet::new();
    for appended in &acked {
        assert_eq!(stored.get(&appended.id), Some(&appended.seq), "{} answered with its stored seq", appended.id);
        if !appended.duplicate {
            assert!(first_writes.insert(appended.id.clone()), "{} written twice", appended.id);
        }
    }
    assert_eq!(first_writes.len(), stored.len(), "every stored event was acknowledged as new exactly once");
    assert_eq!(a.tree_head("tn_shared").await.unwrap(), b.tree_head("tn_shared").await.unwrap());
    // Queries on either node see everything at once (indexed in the appending transaction).
    let query = veritrail_query::EventQuery { resource_id: Some("both-7".into()), ..Default::default() };
    let page = veritrail_query::PageRequest { limit: 10, after: None, order: veritrail_query::Order::Desc };
    let found = a.query("tn_shared", &query, &page).await.unwrap();
    assert_eq!(found.events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["both-7"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_initialised_once_across_nodes() {
    let database = database().await;
    let (a, b) = (
        PgStore::connect(&database.url, test_keys()).await.unwrap(),
        PgStore::connect(&database.url, test_keys()).await.unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { store.init_setting("ledger.signing_keys", vec![i]).await.unwrap() }));
    }
    let mut values = HashSet::new();
    for task in tasks {
        values.insert(task.await.unwrap());
    }
    assert_eq!(values.len(), 1, "every node got the same value: {values:?}");
    // Compare-and-swap: of racing swaps from the same expectation, exactly one wins.
    let current = values.into_iter().next().unwrap();
    let mut swaps = Vec::new();
    for i in 0..8u8 {
        let (store, current) = (if i % 2 == 0 { a.clone() } else { b.clone() }, current.clone());
        swaps
            .push(tokio::spawn(async move { store.swap_setting("ledger.signing_keys", current, vec![100 + i]).await }));
    }
    let mut won = 0;
    for swap in swaps {
        won += usize::from(swap.await.unwrap().unwrap());
    }
    assert_eq!(won, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_when_nodes_start_together() {
    let database = database().await;
    let mut starts = Vec::new();
    for _ in 0..4 {
        let url = database.url.clone();
        starts.push(tokio::spawn(async move { PgStore::connect(&url, test_keys()).await }));
    }
    for start in starts {
        start.await.unwrap().unwrap();
    }
    let versions = database.execute("SELECT count(*) || ',' || max(version) FROM schema_migrations");
    let latest = veritrail_store_postgres::latest_version();
    assert_eq!(versions.trim(), format!("{latest},{latest}"), "every migration applied once");
    assert!(veritrail_store_postgres::migrate(&database.url).await.unwrap().is_empty(), "nothing left to apply");
    // A database migrated by a newer binary is refused, not written to.
    database.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, 'from the future')");
    let refused = PgStore::connect(&database.url, test_keys()).await.unwrap_err();
    assert!(refused.to_string().contains("newer than this binary"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_mid_commit_leaves_nothing_behind() {
    let database = database().await;
    let store = PgStore::connect(&database.url, test_keys()).await.unwrap();
    tenant(&store, "tn_a").await;
    store.append("tn_a", vec![event("before")]).await.unwrap();
    // Another "node" takes the tenant's lock and writes half a commit, then dies.
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls).await.unwrap();
    let driver = tokio::spawn(connection);
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute(
            "SELECT size FROM ledger_heads WHERE tenant_no = 1 FOR UPDATE;
             INSERT INTO records (tenant_no, seq, event_id, leaf_hash, sealed, occurred_at, action, actor_id,
                 actor_type, outcome) VALUES (1, 1, 'half', '\\x00', '\\x00', now(), 'x', 'u', 'user', 'success');",
        )
        .await
        .unwrap();
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    // This append waits for the dead node's lock...
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.append("tn_a", vec![event("after")]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "appends to the tenant wait for its lock");
    // ...which its death releases, with nothing of its transaction kept.
    database.execute(&format!("SELECT pg_terminate_backend({pid})"));
    let appended = waiting.await.unwrap().unwrap();
    assert_eq!((appended[0].seq, appended[0].duplicate), (1, false));
    let _ = driver.await;
    let ids = assert_one_valid_ledger(&store, "tn_a").await;
    assert_eq!(ids.keys().collect::<Vec<_>>(), ["after", "before"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_is_append_only_in_the_database_too() {
    let database = database().await;
    let store = PgStore::connect(&database.url, test_keys()).await.unwrap();
    tenant(&store, "tn_a").await;
    // Sixteen leaves complete a stored level-4 node.
    store.append("tn_a", (0..16).map(|i| event(&format!("e{i}"))).collect()).await.unwrap();
    for sql in
        ["UPDATE records SET sealed = '\\x00'", "DELETE FROM records", "TRUNCATE records", "DELETE FROM merkle_nodes"]
    {
        let refused = database.cluster().execute(&database.name, sql).unwrap_err();
        assert!(refused.contains("append-only"), "{sql}: {refused}");
    }
    store.shutdown().await.unwrap();
    let after = store.append("tn_a", vec![event("late")]).await;
    assert!(matches!(after, Err(StoreError::Unavailable(_))), "{after:?}");
}

/// A store whose event queries read from a hot standby: appends and reads by id go to the
/// primary, queries to the replica (which sees them once replicated), and the replica is never
/// written to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_queries_read_from_a_replica() {
    use veritrail_query::{EventQuery, PageRequest};
    use veritrail_test_support::postgres::{ClusterOptions, PgCluster};
    let (primary, replica) = tokio::task::spawn_blocking(|| {
        let primary = PgCluster::start(&ClusterOptions::default()).unwrap();
        primary.create_database("vt").unwrap();
        let replica = PgCluster::start_replica(&primary).unwrap();
        (primary, replica)
    })
    .await
    .unwrap();
    let options = veritrail_store_postgres::PgOptions {
        read_url: Some(replica.url("vt")),
        ..veritrail_store_postgres::PgOptions::new(test_keys())
    };
    let store = PgStore::connect_with(&primary.url("vt"), options).await.unwrap();
    tenant(&store, "acme").await;
    let ids: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
    store.append("acme", ids.iter().map(|id| event(id)).collect()).await.unwrap();
    assert!(store.event_by_id("acme", "r0").await.unwrap().is_some(), "reads by id see the primary at once");

    // Until the standby has replayed what the primary wrote (the schema included), queries
    // there see nothing, or no tables at all.
    let caught_up = || {
        let lsn = primary.execute("vt", "SELECT pg_current_wal_lsn()").unwrap();
        let check = format!("SELECT pg_last_wal_replay_lsn() >= '{}'::pg_lsn", lsn.trim());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while replica.execute("vt", &check).unwrap().trim() != "t" {
            assert!(std::time::Instant::now() < deadline, "the standby did not catch up within 10 s");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    caught_up();
    let page = PageRequest { limit: 100, ..PageRequest::default() };
    let found = store.query("acme", &EventQuery::default(), &page).await.unwrap().events.len();
    assert_eq!(found, ids.len(), "the replica caught up");
    assert_eq!(replica.execute("vt", "SELECT pg_is_in_recovery()").unwrap().trim(), "t", "a standby");

    // With the standby's replay paused, new events are on the primary (by id) and not yet in
    // query answers: those come from the replica.
    replica.execute("vt", "SELECT pg_wal_replay_pause()").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while replica.execute("vt", "SELECT pg_get_wal_replay_pause_state()").unwrap().trim() != "paused" {
        assert!(std::time::Instant::now() < deadline, "the standby did not pause within 10 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    store.append("acme", vec![event("late")]).await.unwrap();
    assert!(store.event_by_id("acme", "late").await.unwrap().is_some());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let paused = store.query("acme", &EventQuery::default(), &page).await.unwrap().events.len();
    assert_eq!(paused, ids.len(), "queries read the (paused) replica");
    replica.execute("vt", "SELECT pg_wal_replay_resume()").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.query("acme", &EventQuery::default(), &page).await.unwrap().events.len() <= ids.len() {
        assert!(std::time::Instant::now() < deadline, "the replica resumed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    store.shutdown().await.unwrap();

    // A replica that cannot be reached fails the start, not the first query.
    let options = veritrail_store_postgres::PgOptions {
        read_url: Some("postgres://postgres@127.0.0.1:9/vt".into()),
        ..veritrail_store_postgres::PgOptions::new(test_keys())
    };
    assert!(PgStore::connect_with(&primary.url("vt"), options).await.is_err());

    // A "replica" without the schema (here a database of its own, never migrated) fails the
    // start with a message saying so, once the wait is over.
    primary.create_database("not_a_replica").unwrap();
    let options = veritrail_store_postgres::PgOptions {
        read_url: Some(primary.url("not_a_replica")),
        replica_schema_wait: std::time::Duration::from_millis(300),
        ..veritrail_store_postgres::PgOptions::new(test_keys())
    };
    let refused = PgStore::connect_with(&primary.url("vt"), options).await.map(|_| ()).unwrap_err().to_string();
    assert!(refused.contains("read replica has no schema"), "{refused}");

    // A standby behind the primary's schema is waited for: a new database is migrated on the
    // primary while the standby's replay is paused, and the node starts once replay resumes.
    primary.create_database("vt2").unwrap();
    let standby_has_vt2 = || replica.execute("vt2", "SELECT 1").is_ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !standby_has_vt2() {
        assert!(std::time::Instant::now() < deadline, "the standby did not replay CREATE DATABASE");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    replica.execute("vt2", "SELECT pg_wal_replay_pause()").unwrap();
    let options = veritrail_store_postgres::PgOptions {
        read_url: Some(replica.url("vt2")),
        ..veritrail_store_postgres::PgOptions::new(test_keys())
    };
    let url = primary.url("vt2");
    let starting = tokio::spawn(async move { PgStore::connect_with(&url, options).await });
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert!(!starting.is_finished(), "the node waits for the standby to replay the schema");
    replica.execute("vt2", "SELECT pg_wal_replay_resume()").unwrap();
    let store = tokio::time::timeout(std::time::Duration::from_secs(20), starting)
        .await
        .expect("the node started once the standby caught up")
        .unwrap()
        .unwrap();
    store.shutdown().await.unwrap();
}
