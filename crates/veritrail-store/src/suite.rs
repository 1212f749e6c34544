//! The conformance suite every [`Store`] backend must pass (quickwit's `metastore_test_suite!`
//! pattern). A backend's test binary stamps it with
//! `veritrail_store::store_test_suite!(make_store);` where `make_store` is an async fn returning
//! `(impl Store, Guard)`, the guard keeping the backend's resources (a temp dir, a database)
//! alive for the test.

use jiff::Timestamp;
use serde_json::{Value, json};
use veritrail_model::{Limits, PrepareContext, PreparedEvent};
use veritrail_query::{EventQuery, Order, PageRequest, parse_params};

use crate::{ApiKeyRecord, CheckpointTimestamp, Store, StoreError, StoredCheckpoint, Tenant};

/// Stamps every conformance test onto a backend. See the module docs.
#[macro_export]
macro_rules! store_test_suite {
    ($make:path) => {
        $crate::store_test_suite!(@tests $make;
            tenants_are_created_once,
            api_keys_round_trip_and_revoke,
            settings_initialise_once,
            appends_are_dense_per_tenant,
            duplicate_ids_return_the_original_seq,
            unknown_tenant_is_refused_and_writes_nothing,
            event_by_id_is_isolated_per_tenant,
            queries_filter_and_paginate,
            records_and_tree_head_match_the_sealed_bytes,
            concurrent_appends_stay_dense,
            rebuilt_indexes_answer_the_same,
            checkpoints_are_kept_per_size,
            checkpoint_timestamps_are_kept_per_checkpoint,
        );
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make().await;
                $crate::suite::$name(&store).await;
            }
        )*
    };
}

fn salt() -> [u8; 32] {
    [7; 32]
}

/// Builds a prepared event from ingest JSON (panics on invalid JSON: test helper).
pub fn prepared(json: Value) -> PreparedEvent {
    let bytes = serde_json::to_vec(&json).expect("test json serialises");
    let event = veritrail_model::parse_event(&bytes, &Limits::default()).expect("test event is valid");
    let id = format!("evt_test_{}", json.to_string().len());
    let mut salt = salt;
    event
        .prepare(PrepareContext { id_if_missing: id, now: Timestamp::UNIX_EPOCH, salt: &mut salt })
        .expect("test event seals")
}

fn event(id: &str, action: &str, actor: &str) -> PreparedEvent {
    prepared(json!({"id": id, "action": action, "actor": {"id": actor}}))
}

async fn tenant(store: &impl Store, id: &str) {
    let tenant = Tenant { id: id.to_string(), name: format!("{id} inc"), created_at: Timestamp::UNIX_EPOCH };
    store.create_tenant(tenant).await.expect("create tenant");
}

/// Tenant ids are unique; lookups see what was stored.
pub async fn tenants_are_created_once(store: &impl Store) {
    tenant(store, "tn_a").await;
    let again = Tenant { id: "tn_a".into(), name: "other".into(), created_at: Timestamp::UNIX_EPOCH };
    assert!(matches!(store.create_tenant(again).await, Err(StoreError::AlreadyExists(_))));
    let found = store.tenant("tn_a").await.expect("read").expect("exists");
    assert_eq!(found.name, "tn_a inc");
    assert!(store.tenant("tn_missing").await.expect("read").is_none());
    tenant(store, "tn_b").await;
    let all: Vec<String> = store.tenants().await.expect("list").into_iter().map(|t| t.id).collect();
    assert_eq!(all, ["tn_a", "tn_b"]);
}

/// Keys are stored with their scopes, listed per tenant, revoked once.
pub async fn api_keys_round_trip_and_revoke(store: &impl Store) {
    tenant(store, "tn_a").await;
    tenant(store, "tn_b").await;
    let key = ApiKeyRecord {
        id: "k1".into(),
        tenant: "tn_a".into(),
        name: "ingest".into(),
        secret_hash: [9; 32],
        scopes: vec!["events:write".into(), "events:read".into()],
        created_at: Timestamp::UNIX_EPOCH,
        expires_at: None,
        revoked_at: None,
    };
    store.create_api_key(key.clone()).await.expect("create key");
    assert!(matches!(store.create_api_key(key.clone()).await, Err(StoreError::AlreadyExists(_))));
    assert_eq!(store.api_key("k1").await.expect("read"), Some(key.clone()));
    assert_eq!(store.api_keys("tn_a").await.expect("list").len(), 1);
    assert!(store.api_keys("tn_b").await.expect("list").is_empty());
    assert!(!store.revoke_api_key("tn_b", "k1", Timestamp::UNIX_EPOCH).await.expect("revoke"), "other tenant's key");
    let at = Timestamp::from_second(100).expect("time");
    assert!(store.revoke_api_key("tn_a", "k1", at).await.expect("revoke"));
    assert_eq!(store.api_key("k1").await.expect("read").and_then(|k| k.revoked_at), Some(at));
    let orphan = ApiKeyRecord { id: "k2".into(), tenant: "tn_none".into(), ..key };
    assert!(matches!(store.create_api_key(orphan).await, Err(StoreError::TenantNotFound(_))));
}

/// The first value of a setting wins.
pub async fn settings_initialise_once(store: &impl Store) {
    assert_eq!(store.setting("pepper").await.expect("read"), None);
    assert_eq!(store.init_setting("pepper", b"one".to_vec()).await.expect("init"), b"one");
    assert_eq!(store.init_setting("pepper", b"two".to_vec()).await.expect("init"), b"one");
    assert_eq!(store.setting("pepper").await.expect("read"), Some(b"one".to_vec()));
    assert!(
        !store.swap_setting("pepper", b"two".to_vec(), b"three".to_vec()).await.expect("swap"),
        "stale expectation"
    );
    assert!(store.swap_setting("pepper", b"one".to_vec(), b"three".to_vec()).await.expect("swap"));
    assert_eq!(store.setting("pepper").await.expect("read"), Some(b"three".to_vec()));
    assert!(!store.swap_setting("absent", b"".to_vec(), b"x".to_vec()).await.expect("swap"));
}

/// Each tenant's seq starts at 0 and is dense, whatever the other tenants do.
pub async fn appends_are_dense_per_tenant(store: &impl Store) {
    tenant(store, "tn_a").await;
    tenant(store, "tn_b").await;
    let a = store
        .append("tn_a", vec![event("e1", "data.read", "u1"), event("e2", "data.read", "u1")])
        .await
        .expect("append");
    let b = store.append("tn_b", vec![event("e1", "data.read", "u1")]).await.expect("append");
    let a2 = store.append("tn_a", vec![event("e3", "data.read", "u1")]).await.expect("append");
    let seqs: Vec<u64> = a.iter().chain(&a2).map(|x| x.seq).collect();
    assert_eq!(seqs, [0, 1, 2]);
    assert_eq!(b[0].seq, 0);
    assert!(a.iter().chain(&b).chain(&a2).all(|x| !x.duplicate));
    assert_eq!(store.tree_head("tn_a").await.expect("head").size, 3);
}

/// Same id again, in a later batch or the same one, gives the original seq and writes nothing.
pub async fn duplicate_ids_return_the_original_seq(store: &impl Store) {
    tenant(store, "tn_a").await;
    store.append("tn_a", vec![event("e1", "data.read", "u1")]).await.expect("append");
    let again = store
        .append(
            "tn_a",
            vec![event("e2", "data.read", "u1"), event("e1", "data.deleted", "u2"), event("e2", "x.y", "u3")],
        )
        .await
        .expect("append");
    assert_eq!(again.iter().map(|a| (a.seq, a.duplicate)).collect::<Vec<_>>(), [(1, false), (0, true), (1, true)]);
    assert_eq!(store.tree_head("tn_a").await.expect("head").size, 2);
    let stored = store.event_by_id("tn_a", "e1").await.expect("read").expect("exists");
    let view = veritrail_model::open(&stored.sealed, None).expect("opens");
    assert_eq!(view["action"], "data.read", "the original event is kept");
}

/// Appending to a tenant that does not exist fails and leaves other tenants untouched.
pub async fn unknown_tenant_is_refused_and_writes_nothing(store: &impl Store) {
    tenant(store, "tn_a").await;
    let result = store.append("tn_ghost", vec![event("e1", "data.read", "u1")]).await;
    assert!(matches!(result, Err(StoreError::TenantNotFound(_))), "{result:?}");
    assert_eq!(store.tree_head("tn_a").await.expect("head").size, 0);
    assert!(matches!(store.tree_head("tn_ghost").await, Err(StoreError::TenantNotFound(_))));
}

/// An id is looked up within one tenant only.
pub async fn event_by_id_is_isolated_per_tenant(store: &impl Store) {
    tenant(store, "tn_a").await;
    tenant(store, "tn_b").await;
    store.append("tn_a", vec![event("secret", "data.read", "u1")]).await.expect("append");
    assert!(store.event_by_id("tn_a", "secret").await.expect("read").is_some());
    assert!(store.event_by_id("tn_b", "secret").await.expect("read").is_none());
    // Own-records-only reads find an event only under its own actor, and in its own tenant.
    assert!(store.own_event_by_id("tn_a", "secret", "u1").await.expect("read").is_some());
    assert!(store.own_event_by_id("tn_a", "secret", "u2").await.expect("read").is_none());
    assert!(store.own_event_by_id("tn_b", "secret", "u1").await.expect("read").is_none());
}

fn ids(events: &[crate::StoredEvent]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

async fn run_query(store: &impl Store, tenant: &str, params: &[(&str, &str)]) -> Vec<String> {
    let pairs: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (query, page) = parse_params(&pairs).expect("valid params");
    ids(&store.query(tenant, &query, &page).await.expect("query").events)
}

/// Filters narrow, order and cursors walk every match exactly once, tenants never mix.
pub async fn queries_filter_and_paginate(store: &impl Store) {
    tenant(store, "tn_a").await;
    tenant(store, "tn_b").await;
    let mut batch = Vec::new();
    for i in 0..25 {
        let action = if i % 2 == 0 { "auth.login.failed" } else { "data.read" };
        let actor = if i % 3 == 0 { "alice" } else { "bob" };
        batch.push(prepared(json!({
            "id": format!("e{i:02}"), "action": action, "actor": {"id": actor, "email": format!("{actor}@example.com")},
            "resource": {"type": "doc", "id": format!("d{}", i % 4)},
            "metadata": {"n": i}
        })));
    }
    store.append("tn_a", batch).await.expect("append");
    store.append("tn_b", vec![event("other", "auth.login.failed", "alice")]).await.expect("append");
    store.wait_indexed().await.expect("indexed");

    assert_eq!(run_query(store, "tn_a", &[("limit", "3")]).await, ["e24", "e23", "e22"]);
    assert_eq!(run_query(store, "tn_a", &[("limit", "2"), ("order", "asc")]).await, ["e00", "e01"]);
    assert_eq!(
        run_query(store, "tn_a", &[("action", "auth.*"), ("actor_id", "alice"), ("limit", "100")]).await,
        ["e24", "e18", "e12", "e06", "e00"]
    );
    assert_eq!(
        run_query(store, "tn_a", &[("resource_id", "d1"), ("order", "asc")]).await,
        ["e01", "e05", "e09", "e13", "e17", "e21"]
    );
    assert_eq!(run_query(store, "tn_a", &[("metadata.n", "7")]).await, ["e07"]);
    assert_eq!(
        run_query(store, "tn_a", &[("actor_email", "BOB@example.com"), ("action", "data.read"), ("limit", "2")]).await,
        ["e23", "e19"]
    );
    assert_eq!(run_query(store, "tn_b", &[]).await, ["other"]);

    // Walk all of tn_a three at a time, in both orders.
    for order in [Order::Desc, Order::Asc] {
        let mut page = PageRequest { limit: 3, after: None, order };
        let mut seen = Vec::new();
        loop {
            let result = store.query("tn_a", &EventQuery::default(), &page).await.expect("query");
            seen.extend(ids(&result.events));
            match result.next {
                Some(cursor) => page.after = Some(cursor),
                None => break,
            }
        }
        let mut expected: Vec<String> = (0..25).map(|i| format!("e{i:02}")).collect();
        if order == Order::Desc {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{order:?}");
    }
}

/// Stored bytes are the ones hashed; the tree head is the RFC 6962 root over them.
pub async fn records_and_tree_head_match_the_sealed_bytes(store: &impl Store) {
    tenant(store, "tn_a").await;
    let events: Vec<PreparedEvent> = (0..37).map(|i| event(&format!("e{i}"), "data.read", "u1")).collect();
    store.append("tn_a", events).await.expect("append");
    let records = store.records("tn_a", 0, 1000).await.expect("records");
    assert_eq!(records.len(), 37);
    let mut leaves = Vec::new();
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.seq, i as u64);
        let leaf = veritrail_ledger::hash::leaf_hash(&record.sealed);
        assert_eq!(leaf.0, record.leaf_hash);
        leaves.push(leaf);
    }
    let tail = store.records("tn_a", 30, 3).await.expect("records");
    assert_eq!(tail.iter().map(|r| r.seq).collect::<Vec<_>>(), [30, 31, 32]);
    let mut frontier = veritrail_ledger::tree::Frontier::new();
    for leaf in &leaves {
        frontier.push(*leaf).expect("frontier has room");
    }
    let head = store.tree_head("tn_a").await.expect("head");
    assert_eq!(head.size, 37);
    assert_eq!(head.root, frontier.root().0);
    // Every perfect subtree the store reports agrees with the in-memory tree.
    let memory = veritrail_ledger::tree::MemoryTree::from_leaves(leaves.clone());
    let mut nodes = Vec::new();
    for level in 0..6u32 {
        for index in 0..(37u64 >> level) {
            nodes.push((level, index));
        }
    }
    let stored = store.subtree_hashes("tn_a", nodes.clone()).await.expect("subtrees");
    for ((level, index), stored) in nodes.into_iter().zip(stored) {
        let expected = veritrail_ledger::tree::NodeSource::perfect_subtree(&memory, level, index).expect("memory");
        assert_eq!(stored, expected.0, "level {level} index {index}");
    }
    assert!(store.subtree_hashes("tn_a", vec![(3, 4)]).await.is_err(), "leaves 32..40 are not all there");
}

/// Checkpoints are stored once per size and found by size and as the latest.
pub async fn checkpoints_are_kept_per_size(store: &impl Store) {
    tenant(store, "tn_a").await;
    tenant(store, "tn_b").await;
    assert_eq!(store.latest_checkpoint("tn_a").await.expect("read"), None);
    let at = |size: u64, note: &str| StoredCheckpoint {
        size,
        root: [size as u8; 32],
        note: note.to_string(),
        created_at: Timestamp::from_second(size as i64).expect("time"),
    };
    store.add_checkpoint("tn_a", at(3, "three")).await.expect("add");
    store.add_checkpoint("tn_a", at(10, "ten")).await.expect("add");
    store.add_checkpoint("tn_a", at(10, "ten again")).await.expect("idempotent");
    store.add_checkpoint("tn_a", at(7, "seven")).await.expect("add");
    assert_eq!(store.latest_checkpoint("tn_a").await.expect("read"), Some(at(10, "ten")));
    assert_eq!(store.checkpoint_at("tn_a", 7).await.expect("read"), Some(at(7, "seven")));
    assert_eq!(store.checkpoint_at("tn_a", 8).await.expect("read"), None);
    assert_eq!(store.latest_checkpoint("tn_b").await.expect("read"), None);
    assert!(matches!(store.add_checkpoint("tn_ghost", at(1, "x")).await, Err(StoreError::TenantNotFound(_))));
}

/// A time-stamp belongs to one stored checkpoint of one tenant; the first one stored is kept,
/// and they are listed largest size first.
pub async fn checkpoint_timestamps_are_kept_per_checkpoint(store: &impl Store) {
    tenant(store, "tn_a").await;
    tenant(store, "tn_b").await;
    for size in [0, 3, 10, 7] {
        let checkpoint = StoredCheckpoint {
            size,
            root: [size as u8; 32],
            note: format!("note {size}"),
            created_at: Timestamp::UNIX_EPOCH,
        };
        store.add_checkpoint("tn_a", checkpoint).await.expect("add checkpoint");
    }
    let stamp = |size: u64, response: &[u8]| CheckpointTimestamp { size, response: response.to_vec() };
    assert_eq!(store.checkpoint_timestamp("tn_a", 3).await.expect("read"), None);
    assert!(store.checkpoint_timestamps("tn_a", u64::MAX, 10).await.expect("list").is_empty());

    store.add_checkpoint_timestamp("tn_a", stamp(3, b"\x30three")).await.expect("add");
    store.add_checkpoint_timestamp("tn_a", stamp(10, b"\x30ten")).await.expect("add");
    store.add_checkpoint_timestamp("tn_a", stamp(0, b"\x30zero")).await.expect("add");
    store.add_checkpoint_timestamp("tn_a", stamp(10, b"\x30ten again")).await.expect("idempotent");
    assert_eq!(store.checkpoint_timestamp("tn_a", 10).await.expect("read"), Some(stamp(10, b"\x30ten")));
    assert_eq!(store.checkpoint_timestamp("tn_a", 7).await.expect("read"), None, "checkpoint 7 has none");
    assert_eq!(store.checkpoint_timestamp("tn_a", 11).await.expect("read"), None);

    let sizes = |list: Vec<CheckpointTimestamp>| list.into_iter().map(|t| t.size).collect::<Vec<_>>();
    assert_eq!(sizes(store.checkpoint_timestamps("tn_a", u64::MAX, 10).await.expect("list")), [10, 3, 0]);
    assert_eq!(sizes(store.checkpoint_timestamps("tn_a", 9, 10).await.expect("list")), [3, 0]);
    assert_eq!(sizes(store.checkpoint_timestamps("tn_a", u64::MAX, 2).await.expect("list")), [10, 3]);
    assert_eq!(store.checkpoint_timestamps("tn_a", 10, 1).await.expect("list"), [stamp(10, b"\x30ten")]);

    // Only stored checkpoints get time-stamps, and tenants never see each other's.
    assert!(store.add_checkpoint_timestamp("tn_a", stamp(8, b"\x30eight")).await.is_err(), "no checkpoint 8");
    assert!(store.add_checkpoint_timestamp("tn_b", stamp(3, b"\x30three")).await.is_err(), "tn_b has no checkpoint 3");
    assert_eq!(store.checkpoint_timestamp("tn_b", 3).await.expect("read"), None);
    assert!(store.checkpoint_timestamps("tn_b", u64::MAX, 10).await.expect("list").is_empty());
    assert!(matches!(
        store.add_checkpoint_timestamp("tn_ghost", stamp(3, b"\x30")).await,
        Err(StoreError::TenantNotFound(_))
    ));
    assert!(matches!(store.checkpoint_timestamp("tn_ghost", 3).await, Err(StoreError::TenantNotFound(_))));
}

/// Many concurrent appenders: every event lands once, seq stays dense.
pub async fn concurrent_appends_stay_dense(store: &impl Store) {
    tenant(store, "tn_a").await;
    let mut all = Vec::new();
    for task in 0..8 {
        let mut seqs = Vec::new();
        for i in 0..20 {
            seqs.push(store.append("tn_a", vec![event(&format!("t{task}-{i}"), "data.read", "u1")]));
        }
        all.push(seqs);
    }
    let mut futures = Vec::new();
    for seqs in all {
        futures.push(async move {
            let mut out = Vec::new();
            for fut in seqs {
                out.push(fut.await.expect("append")[0].seq);
            }
            out
        });
    }
    let mut seen = Vec::new();
    for out in join_all(futures).await {
        seen.extend(out);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..160).collect::<Vec<u64>>());
}

/// Polls all futures together, so the appends really race each other.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().map(|output| output.expect("every future completed")).collect()
}

/// Dropping and rebuilding the derived indexes gives the same answers.
pub async fn rebuilt_indexes_answer_the_same(store: &impl Store) {
    tenant(store, "tn_a").await;
    let events: Vec<PreparedEvent> =
        (0..50).map(|i| event(&format!("e{i}"), if i % 5 == 0 { "x.y" } else { "a.b" }, "u1")).collect();
    store.append("tn_a", events).await.expect("append");
    store.wait_indexed().await.expect("indexed");
    let before = run_query(store, "tn_a", &[("action", "x.*")]).await;
    // Ids stay unique and findable whether they are indexed, being rebuilt, or rebuilt.
    let again = store.append("tn_a", vec![event("e7", "a.b", "u1")]).await.expect("append");
    assert_eq!((again[0].seq, again[0].duplicate), (7, true));
    store.rebuild_indexes().await.expect("rebuild");
    let again = store.append("tn_a", vec![event("e8", "a.b", "u1"), event("e50", "a.b", "u1")]).await.expect("append");
    assert_eq!(again.iter().map(|a| (a.seq, a.duplicate)).collect::<Vec<_>>(), [(8, true), (50, false)]);
    assert_eq!(store.event_by_id("tn_a", "e9").await.expect("read").map(|e| e.seq), Some(9));
    store.wait_indexed().await.expect("indexed");
    assert_eq!(run_query(store, "tn_a", &[("action", "x.*")]).await, before);
    assert_eq!(before.len(), 10);
    assert_eq!(store.event_by_id("tn_a", "e50").await.expect("read").map(|e| e.seq), Some(50));
    let again = store.append("tn_a", vec![event("e50", "a.b", "u1")]).await.expect("append");
    assert_eq!((again[0].seq, again[0].duplicate), (50, true));
}
