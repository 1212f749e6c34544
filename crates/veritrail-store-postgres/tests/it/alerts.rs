//! The alert store on PostgreSQL: the shared conformance suite unchanged, and what several nodes
//! sharing monitoring state must agree on (each firing one alert and one delivery per endpoint,
//! each due delivery sent by one node at a time, rules installed once).

use std::collections::HashSet;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use veritrail_store::{
    Alert, AlertFilter, AlertStatus, AlertStore, DeliveryAttempt, NewAlert, OutboundMessage, StoredRule,
    WebhookEndpoint,
};
use veritrail_store_postgres::PgAlertStore;
use veritrail_test_support::postgres::TestDatabase;

/// An alert store over a fresh database; the database lives as long as the guard.
async fn make_alert_store() -> (PgAlertStore, TestDatabase) {
    let database = tokio::task::spawn_blocking(TestDatabase::create).await.unwrap();
    (PgAlertStore::connect(&database.url).await.unwrap(), database)
}

veritrail_store::alert_store_test_suite!(make_alert_store);

/// Two nodes on one fresh database.
async fn two_nodes() -> (PgAlertStore, PgAlertStore, TestDatabase) {
    let database = tokio::task::spawn_blocking(TestDatabase::create).await.unwrap();
    let a = PgAlertStore::connect(&database.url).await.unwrap();
    let b = PgAlertStore::connect(&database.url).await.unwrap();
    (a, b, database)
}

fn endpoint(id: &str) -> WebhookEndpoint {
    WebhookEndpoint {
        id: id.into(),
        tenant: "tn_a".into(),
        url: format!("http://127.0.0.1:9/{id}"),
        events: vec!["alert.*".into()],
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        created_at: Timestamp::UNIX_EPOCH,
    }
}

/// The firing `i` as a node derives it: the id and dedup key are the same on every node, the
/// message id is the node's own (random in the server).
fn firing(i: u64, node: &str, created_at: Timestamp) -> NewAlert {
    let id = format!("al_{i}");
    let alert = Alert {
        id: id.clone(),
        tenant: "tn_a".into(),
        position: 0,
        rule_id: "brute_force".into(),
        rule_version: 1,
        severity: "high".into(),
        group_key: json!({"actor.id": format!("user-{i}")}),
        event_ids: vec![format!("evt_{i}")],
        event_count: 1,
        trigger_seq: Some(i),
        started_at: created_at,
        fired_at: created_at,
        summary: "brute force".into(),
        dedup_key: format!("brute_force:{i}"),
        status: AlertStatus::Open,
        status_changed_by: None,
        status_changed_at: None,
        status_note: None,
    };
    let message = OutboundMessage {
        id: format!("msg_{node}_{i}"),
        event_type: "alert.raised".into(),
        alert_id: id,
        payload: format!("{{\"alert\":{i}}}"),
        created_at,
    };
    NewAlert { alert, messages: vec![message] }
}

fn message_ids(deliveries: &[veritrail_store::Delivery]) -> HashSet<String> {
    deliveries.iter().map(|d| d.message_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_recording_the_same_firings_store_each_alert_once() {
    let (a, b, _database) = two_nodes().await;
    a.install_rules("tn_a", Vec::new(), 0).await.unwrap();
    a.create_webhook(endpoint("wh_1")).await.unwrap();
    let now = Timestamp::now();
    // Both nodes derive the same 60 firings, in batches of 10; one node goes through them
    // backwards, so without the per-tenant serialisation they would deadlock on each other's
    // rows.
    let mut tasks = Vec::new();
    for (node, store, backwards) in [("a", a.clone(), false), ("b", b.clone(), true)] {
        tasks.push(tokio::spawn(async move {
            let mut batches: Vec<u64> = (0..6).collect();
            if backwards {
                batches.reverse();
            }
            let mut stored = Vec::new();
            for batch in batches {
                let mut alerts: Vec<NewAlert> = (batch * 10..batch * 10 + 10).map(|i| firing(i, node, now)).collect();
                if backwards {
                    alerts.reverse();
                }
                stored.extend(store.record_alerts("tn_a", alerts, batch * 10 + 10).await.unwrap());
            }
            stored
        }));
    }
    let mut stored_by = Vec::new();
    for task in tasks {
        stored_by.push(task.await.unwrap());
    }
    let (by_a, by_b): (HashSet<_>, HashSet<_>) =
        (stored_by[0].iter().cloned().collect(), stored_by[1].iter().cloned().collect());
    assert!(by_a.is_disjoint(&by_b), "an alert reported stored by both nodes");
    assert_eq!(by_a.len() + by_b.len(), 60);

    let listed = b.alerts("tn_a", &AlertFilter::default(), None, 1000).await.unwrap();
    assert_eq!(listed.len(), 60, "one alert per dedup key");
    let deliveries = a.deliveries("tn_a", "wh_1", None, None, 1000).await.unwrap();
    assert_eq!(deliveries.len(), 60, "one delivery per alert: only the storing node's message");
    let alerts_told: HashSet<_> = deliveries.iter().map(|d| d.alert_id.clone()).collect();
    assert_eq!(alerts_told.len(), 60);
    for delivery in &deliveries {
        let node = if by_a.contains(&delivery.alert_id) { "a" } else { "b" };
        assert!(delivery.message_id.starts_with(&format!("msg_{node}_")), "{delivery:?}");
    }
    assert_eq!(a.engine_cursor("tn_a").await.unwrap(), Some(60), "the cursor never moved back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_deliveries_are_claimed_by_one_node_at_a_time() {
    let (a, b, database) = two_nodes().await;
    let c = PgAlertStore::connect(&database.url).await.unwrap(); // a third node, idle so far
    a.install_rules("tn_a", Vec::new(), 0).await.unwrap();
    a.create_webhook(endpoint("wh_1")).await.unwrap();
    let created = Timestamp::now().checked_sub(SignedDuration::from_secs(1)).unwrap();
    let alerts = (0..20).map(|i| firing(i, "a", created)).collect();
    a.record_alerts("tn_a", alerts, 20).await.unwrap();

    let now = Timestamp::now();
    let (from_a, from_b) = tokio::join!(a.due_deliveries(now, 12), b.due_deliveries(now, 12));
    let (from_a, from_b) = (message_ids(&from_a.unwrap()), message_ids(&from_b.unwrap()));
    assert!(from_a.is_disjoint(&from_b), "a delivery handed to two nodes");
    assert_eq!(from_a.len() + from_b.len(), 20, "{} + {}", from_a.len(), from_b.len());

    // Each node keeps getting its own claims (its delivery task skips those in flight), never
    // the other's; a node with none is told to look again when the leases end.
    assert_eq!(message_ids(&a.due_deliveries(now, 64).await.unwrap()), from_a);
    assert_eq!(message_ids(&b.due_deliveries(now, 64).await.unwrap()), from_b);
    assert!(c.due_deliveries(now, 64).await.unwrap().is_empty());
    let next = c.next_delivery_due().await.unwrap().expect("pending deliveries");
    assert!(next > now.checked_add(SignedDuration::from_mins(4)).unwrap(), "{next}");
    assert!(a.next_delivery_due().await.unwrap().is_some_and(|at| at <= now), "its own are due");

    // A failed attempt releases the claim: its retry goes to whichever node asks first.
    let retried = from_a.iter().next().unwrap().clone();
    let failure = DeliveryAttempt {
        at: now,
        status: Some(503),
        error: Some("endpoint answered HTTP 503".into()),
        retry_at: Some(now),
    };
    assert!(a.record_delivery_attempt("tn_a", "wh_1", &retried, failure).await.unwrap());
    let taken = c.due_deliveries(now, 64).await.unwrap();
    assert_eq!(message_ids(&taken), HashSet::from([retried.clone()]));
    assert_eq!(taken[0].attempts, 1);
    assert!(!message_ids(&a.due_deliveries(now, 64).await.unwrap()).contains(&retried));

    // A node that dies holding claims delays them until the lease ends, no longer.
    database.execute("UPDATE deliveries SET claimed_until = now() - interval '1 second'");
    let after_lease = c.due_deliveries(now, 64).await.unwrap();
    assert_eq!(after_lease.len(), 20);
    let due: Vec<_> = after_lease.iter().map(|d| (d.next_attempt_at, d.position)).collect();
    assert!(due.is_sorted(), "earliest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_nodes_install_the_starting_rules_once() {
    let (a, b, _database) = two_nodes().await;
    let rule = |id: &str| StoredRule {
        id: id.into(),
        version: 1,
        definition: json!({"id": id, "version": 1}),
        created_at: Timestamp::UNIX_EPOCH,
        updated_at: Timestamp::UNIX_EPOCH,
    };
    let (by_a, by_b) = tokio::join!(
        a.install_rules("tn_a", vec![rule("from_a"), rule("shared")], 3),
        b.install_rules("tn_a", vec![rule("from_b"), rule("shared")], 7)
    );
    let (by_a, by_b) = (by_a.unwrap(), by_b.unwrap());
    assert!(by_a ^ by_b, "exactly one installation: {by_a} {by_b}");
    let ids: Vec<String> = b.rules("tn_a").await.unwrap().into_iter().map(|r| r.id).collect();
    let (expected, cursor) = if by_a { (["from_a", "shared"], 3) } else { (["from_b", "shared"], 7) };
    assert_eq!(ids, expected);
    assert_eq!(a.engine_cursor("tn_a").await.unwrap(), Some(cursor));
}

/// Engine nodes: each node that looks is listed (sorted), one not seen within the time to live
/// is forgotten by the next look, and one that leaves is gone at once.
#[tokio::test]
async fn engine_nodes_list_the_live_nodes() {
    let (a, b, _database) = two_nodes().await;
    let ttl = std::time::Duration::from_millis(1500);
    assert_eq!(a.engine_nodes("node_a", ttl).await.unwrap(), Some(vec!["node_a".to_string()]));
    let both = Some(vec!["node_a".to_string(), "node_b".to_string()]);
    assert_eq!(b.engine_nodes("node_b", ttl).await.unwrap(), both);
    assert_eq!(a.engine_nodes("node_a", ttl).await.unwrap(), both, "a look renews, and lists the others");

    // node_b stops looking: gone for node_a once the time to live has passed.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(a.engine_nodes("node_a", ttl).await.unwrap(), both, "within the time to live");
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(a.engine_nodes("node_a", ttl).await.unwrap(), Some(vec!["node_a".to_string()]));

    // A node that leaves is gone at once.
    assert_eq!(b.engine_nodes("node_b", ttl).await.unwrap(), both);
    b.leave_engine_nodes("node_b").await.unwrap();
    assert_eq!(a.engine_nodes("node_a", ttl).await.unwrap(), Some(vec!["node_a".to_string()]));
}
