//! The conformance suite every [`AlertStore`] backend must pass. A backend's test binary stamps
//! it with `veritrail_store::alert_store_test_suite!(make_alert_store);` where
//! `make_alert_store` is an async fn returning `(impl AlertStore, Guard)`.

#![allow(clippy::unwrap_used)] // test code: a failure is the finding

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::{
    Alert, AlertFilter, AlertStatus, AlertStore, DeliveryAttempt, DeliveryStatus, MAX_DELIVERY_ERROR_CHARS, NewAlert,
    OutboundMessage, RecordedAttempt, StatusChange, StoreError, StoredRule, WebhookEndpoint,
};

/// Stamps every alert-store conformance test onto a backend. See the module docs.
#[macro_export]
macro_rules! alert_store_test_suite {
    ($make:path) => {
        $crate::alert_store_test_suite!(@tests $make;
            rules_are_installed_once_and_versioned,
            rule_changes_are_counted_per_tenant,
            engine_cursor_only_moves_forward,
            alerts_are_stored_once_per_dedup_key,
            alerts_filter_and_paginate_newest_first,
            status_changes_are_conditional_and_fan_out,
            messages_fan_out_to_matching_endpoints_only,
            deliveries_retry_die_and_are_redelivered,
            attempts_recorded_together_are_answered_in_order,
            alerts_and_messages_are_rewritten_in_place,
            webhooks_are_isolated_per_tenant,
        );
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make().await;
                $crate::alert_suite::$name(&store).await;
            }
        )*
    };
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).expect("valid test time")
}

fn rule(id: &str, version: u32, name: &str) -> StoredRule {
    StoredRule {
        id: id.into(),
        version,
        definition: json!({"id": id, "version": version, "name": name, "severity": "high"}),
        created_at: at(0),
        updated_at: at(i64::from(version)),
    }
}

fn alert(tenant: &str, id: &str, dedup: &str, rule: &str, severity: &str, fired: i64) -> Alert {
    Alert {
        id: id.into(),
        tenant: tenant.into(),
        position: 0,
        rule_id: rule.into(),
        rule_version: 1,
        severity: severity.into(),
        group_key: json!({"actor.id": "user-1"}),
        event_ids: vec!["evt_1".into(), "evt_2".into()],
        event_count: 2,
        trigger_seq: Some(7),
        started_at: at(fired - 5),
        fired_at: at(fired),
        summary: format!("{rule} fired"),
        dedup_key: dedup.into(),
        status: AlertStatus::Open,
        status_changed_by: None,
        status_changed_at: None,
        status_note: None,
    }
}

fn message(id: &str, event_type: &str, alert_id: &str) -> OutboundMessage {
    OutboundMessage {
        id: id.into(),
        event_type: event_type.into(),
        alert_id: alert_id.into(),
        payload: format!("{{\"type\":\"{event_type}\",\"id\":\"{id}\"}}"),
        created_at: at(100),
    }
}

fn endpoint(tenant: &str, id: &str, events: &[&str]) -> WebhookEndpoint {
    WebhookEndpoint {
        id: id.into(),
        tenant: tenant.into(),
        url: format!("http://127.0.0.1:9/{id}"),
        events: events.iter().map(|e| e.to_string()).collect(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        created_at: at(1),
    }
}

fn ids(alerts: &[Alert]) -> Vec<&str> {
    alerts.iter().map(|a| a.id.as_str()).collect()
}

/// The starting rules go in once; each change is a new version; deleted ids stay taken.
pub async fn rules_are_installed_once_and_versioned(store: &impl AlertStore) {
    assert!(
        store.install_rules("tn_a", vec![rule("brute_force", 1, "b"), rule("mass_export", 1, "m")], 0).await.unwrap()
    );
    assert!(!store.install_rules("tn_a", vec![rule("other", 1, "o")], 5).await.unwrap(), "installed once");
    let listed: Vec<String> = store.rules("tn_a").await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(listed, ["brute_force", "mass_export"]);
    assert!(store.rules("tn_b").await.unwrap().is_empty(), "tenants are isolated");
    assert!(store.rule("tn_b", "brute_force").await.unwrap().is_none());

    store.create_rule("tn_a", rule("rl_custom", 1, "c")).await.unwrap();
    let again = store.create_rule("tn_a", rule("rl_custom", 1, "c")).await;
    assert!(matches!(again, Err(StoreError::AlreadyExists(_))), "{again:?}");
    store.create_rule("tn_b", rule("rl_custom", 1, "other tenant")).await.unwrap();

    assert!(!store.update_rule("tn_a", rule("rl_custom", 3, "c3"), 2).await.unwrap(), "stale version refused");
    assert!(store.update_rule("tn_a", rule("rl_custom", 2, "c2"), 1).await.unwrap());
    let current = store.rule("tn_a", "rl_custom").await.unwrap().unwrap();
    assert_eq!((current.version, current.definition["name"].as_str()), (2, Some("c2")));
    assert_eq!(current.created_at, at(0));
    let first = store.rule_version("tn_a", "rl_custom", 1).await.unwrap().unwrap();
    assert_eq!(first.definition["name"], "c");
    assert_eq!(store.rule("tn_b", "rl_custom").await.unwrap().unwrap().definition["name"], "other tenant");
    assert!(!store.update_rule("tn_a", rule("rl_missing", 2, "x"), 1).await.unwrap());

    assert!(store.delete_rule("tn_a", "rl_custom", at(50)).await.unwrap());
    assert!(!store.delete_rule("tn_a", "rl_custom", at(51)).await.unwrap(), "deleted once");
    assert!(store.rule("tn_a", "rl_custom").await.unwrap().is_none());
    assert!(!store.rules("tn_a").await.unwrap().iter().any(|r| r.id == "rl_custom"));
    assert!(store.rule_version("tn_a", "rl_custom", 2).await.unwrap().is_some(), "history is kept");
    assert!(!store.update_rule("tn_a", rule("rl_custom", 3, "c3"), 2).await.unwrap(), "deleted rules stay deleted");
    let reuse = store.create_rule("tn_a", rule("rl_custom", 1, "c")).await;
    assert!(matches!(reuse, Err(StoreError::AlreadyExists(_))), "ids are not reused: {reuse:?}");
    assert!(store.rule("tn_b", "rl_custom").await.unwrap().is_some(), "the other tenant's rule is untouched");
}

/// The tenant's count in [`AlertStore::rule_change_counts`] (0 when absent), checking it is
/// listed once.
async fn rule_changes(store: &impl AlertStore, tenant: &str) -> u64 {
    let counts = store.rule_change_counts().await.unwrap();
    let listed: Vec<u64> = counts.iter().filter(|(t, _)| t == tenant).map(|(_, count)| *count).collect();
    assert!(listed.len() <= 1, "{tenant} listed once: {counts:?}");
    listed.first().copied().unwrap_or(0)
}

/// Every rule write moves its tenant's change count, which one read gives for all tenants;
/// refused writes, other tenants' writes, cursors and alerts do not.
pub async fn rule_changes_are_counted_per_tenant(store: &impl AlertStore) {
    assert!(store.rule_change_counts().await.unwrap().is_empty(), "no changes yet");
    assert!(store.install_rules("tn_a", vec![rule("brute_force", 1, "b")], 0).await.unwrap());
    let installed = rule_changes(store, "tn_a").await;
    assert!(installed > 0, "installing is a change");
    assert_eq!(rule_changes(store, "tn_b").await, 0, "tenants are counted apart");
    assert!(!store.install_rules("tn_a", vec![rule("other", 1, "o")], 5).await.unwrap());
    assert_eq!(rule_changes(store, "tn_a").await, installed, "a refused install is no change");

    store.create_rule("tn_a", rule("rl_custom", 1, "c")).await.unwrap();
    let created = rule_changes(store, "tn_a").await;
    assert!(created > installed, "a create moves the count");
    assert!(store.create_rule("tn_a", rule("rl_custom", 1, "c")).await.is_err());
    assert!(!store.update_rule("tn_a", rule("rl_custom", 3, "c3"), 2).await.unwrap());
    assert_eq!(rule_changes(store, "tn_a").await, created, "refused writes are no change");

    assert!(store.update_rule("tn_a", rule("rl_custom", 2, "c2"), 1).await.unwrap());
    let updated = rule_changes(store, "tn_a").await;
    assert!(updated > created, "an update moves the count");
    store.set_engine_cursor("tn_a", 10, true).await.unwrap();
    let raised =
        NewAlert { alert: alert("tn_a", "al_1", "rl_custom:3", "rl_custom", "high", 10), messages: Vec::new() };
    store.record_alerts("tn_a", vec![raised], 11).await.unwrap();
    assert_eq!(rule_changes(store, "tn_a").await, updated, "cursors and alerts are no rule change");

    assert!(store.delete_rule("tn_a", "rl_custom", at(50)).await.unwrap());
    let deleted = rule_changes(store, "tn_a").await;
    assert!(deleted > updated, "a delete moves the count");
    assert!(!store.delete_rule("tn_a", "rl_custom", at(51)).await.unwrap());
    assert_eq!(rule_changes(store, "tn_a").await, deleted, "deleting twice is one change");

    store.create_rule("tn_b", rule("rl_custom", 1, "other tenant")).await.unwrap();
    assert!(rule_changes(store, "tn_b").await > 0);
    assert_eq!(rule_changes(store, "tn_a").await, deleted, "another tenant's change is not this one's");
    assert_eq!(store.rule_change_counts().await.unwrap().len(), 2);
}

/// The cursor exists once installed and never moves back.
pub async fn engine_cursor_only_moves_forward(store: &impl AlertStore) {
    assert_eq!(store.engine_cursor("tn_a").await.unwrap(), None);
    store.install_rules("tn_a", Vec::new(), 12).await.unwrap();
    assert_eq!(store.engine_cursor("tn_a").await.unwrap(), Some(12));
    store.set_engine_cursor("tn_a", 20, false).await.unwrap();
    store.set_engine_cursor("tn_a", 15, true).await.unwrap();
    assert_eq!(store.engine_cursor("tn_a").await.unwrap(), Some(20));
    assert_eq!(store.engine_cursor("tn_b").await.unwrap(), None);
}

/// Replaying firings stores nothing twice, and the cursor moves with the alerts.
pub async fn alerts_are_stored_once_per_dedup_key(store: &impl AlertStore) {
    store.install_rules("tn_a", Vec::new(), 0).await.unwrap();
    let first = vec![
        NewAlert { alert: alert("tn_a", "al_1", "brute_force:7", "brute_force", "high", 10), messages: vec![] },
        NewAlert { alert: alert("tn_a", "al_2", "mass_export:9", "mass_export", "high", 11), messages: vec![] },
    ];
    let stored = store.record_alerts("tn_a", first, 10).await.unwrap();
    assert_eq!(stored, ["al_1", "al_2"]);
    assert_eq!(store.engine_cursor("tn_a").await.unwrap(), Some(10));

    // A replay derives the same firing again (same dedup key, possibly another id).
    let replay = vec![
        NewAlert { alert: alert("tn_a", "al_1", "brute_force:7", "brute_force", "high", 10), messages: vec![] },
        NewAlert { alert: alert("tn_a", "al_3", "brute_force:12", "brute_force", "high", 12), messages: vec![] },
    ];
    assert_eq!(store.record_alerts("tn_a", replay, 13).await.unwrap(), ["al_3"]);
    assert_eq!(store.engine_cursor("tn_a").await.unwrap(), Some(13));
    let all = store.alerts("tn_a", &AlertFilter::default(), None, 100).await.unwrap();
    assert_eq!(ids(&all), ["al_3", "al_2", "al_1"]);

    let read = store.alert("tn_a", "al_1").await.unwrap().unwrap();
    let expected = alert("tn_a", "al_1", "brute_force:7", "brute_force", "high", 10);
    assert_eq!(Alert { position: 0, ..read.clone() }, expected);
    assert!(read.position > 0);

    // Dedup keys are per tenant; ids are global and isolated on read.
    store.install_rules("tn_b", Vec::new(), 0).await.unwrap();
    let other =
        vec![NewAlert { alert: alert("tn_b", "al_b1", "brute_force:7", "brute_force", "low", 10), messages: vec![] }];
    assert_eq!(store.record_alerts("tn_b", other, 1).await.unwrap(), ["al_b1"]);
    assert!(store.alert("tn_b", "al_1").await.unwrap().is_none());
    assert!(store.alert("tn_a", "al_b1").await.unwrap().is_none());
    assert_eq!(ids(&store.alerts("tn_b", &AlertFilter::default(), None, 100).await.unwrap()), ["al_b1"]);
}

/// Filters combine; pages run newest first and continue below a position.
pub async fn alerts_filter_and_paginate_newest_first(store: &impl AlertStore) {
    store.install_rules("tn_a", Vec::new(), 0).await.unwrap();
    let mut batch = Vec::new();
    for i in 0..10 {
        let (rule, severity) = if i % 2 == 0 { ("brute_force", "high") } else { ("mass_export", "critical") };
        let id = format!("al_{i}");
        batch.push(NewAlert { alert: alert("tn_a", &id, &format!("k{i}"), rule, severity, i * 10), messages: vec![] });
    }
    store.record_alerts("tn_a", batch, 10).await.unwrap();
    let change = |status| StatusChange { status, by: "api_key:k1".into(), at: at(500), note: None };
    store
        .change_alert_status("tn_a", "al_2", AlertStatus::Open, change(AlertStatus::Acknowledged), None)
        .await
        .unwrap();
    store.change_alert_status("tn_a", "al_4", AlertStatus::Open, change(AlertStatus::Resolved), None).await.unwrap();

    let list = |filter: AlertFilter| async move { store.alerts("tn_a", &filter, None, 100).await.unwrap() };
    let by_rule = list(AlertFilter { rule_id: Some("brute_force".into()), ..AlertFilter::default() }).await;
    assert_eq!(ids(&by_rule), ["al_8", "al_6", "al_4", "al_2", "al_0"]);
    let critical = list(AlertFilter { severities: vec!["critical".into()], ..AlertFilter::default() }).await;
    assert_eq!(ids(&critical), ["al_9", "al_7", "al_5", "al_3", "al_1"]);
    let open = list(AlertFilter { statuses: vec![AlertStatus::Open], ..AlertFilter::default() }).await;
    assert_eq!(open.len(), 8);
    let handled = list(AlertFilter {
        statuses: vec![AlertStatus::Acknowledged, AlertStatus::Resolved],
        ..AlertFilter::default()
    })
    .await;
    assert_eq!(ids(&handled), ["al_4", "al_2"]);
    let window = list(AlertFilter { since: Some(at(20)), until: Some(at(50)), ..AlertFilter::default() }).await;
    assert_eq!(ids(&window), ["al_4", "al_3", "al_2"]);
    let combined = list(AlertFilter {
        rule_id: Some("brute_force".into()),
        statuses: vec![AlertStatus::Open],
        since: Some(at(10)),
        ..AlertFilter::default()
    })
    .await;
    assert_eq!(ids(&combined), ["al_8", "al_6"]);

    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.alerts("tn_a", &AlertFilter::default(), before, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        before = page.last().map(|a| a.position);
        seen.extend(page.into_iter().map(|a| a.id));
    }
    let expected: Vec<String> = (0..10).rev().map(|i| format!("al_{i}")).collect();
    assert_eq!(seen, expected);
}

/// A status change happens only from the expected status, and tells the endpoints once.
pub async fn status_changes_are_conditional_and_fan_out(store: &impl AlertStore) {
    store.install_rules("tn_a", Vec::new(), 0).await.unwrap();
    store.create_webhook(endpoint("tn_a", "wh_1", &["alert.*"])).await.unwrap();
    let new = NewAlert { alert: alert("tn_a", "al_1", "k1", "brute_force", "high", 10), messages: vec![] };
    store.record_alerts("tn_a", vec![new], 1).await.unwrap();

    let ack = StatusChange {
        status: AlertStatus::Acknowledged,
        by: "api_key:k1".into(),
        at: at(60),
        note: Some("looking".into()),
    };
    let changed = store
        .change_alert_status(
            "tn_a",
            "al_1",
            AlertStatus::Open,
            ack.clone(),
            Some(message("msg_ack", "alert.acknowledged", "al_1")),
        )
        .await
        .unwrap()
        .expect("open alert acknowledged");
    assert_eq!(changed.status, AlertStatus::Acknowledged);
    assert_eq!(changed.status_changed_by.as_deref(), Some("api_key:k1"));
    assert_eq!(changed.status_changed_at, Some(at(60)));
    assert_eq!(changed.status_note.as_deref(), Some("looking"));
    assert_eq!(store.alert("tn_a", "al_1").await.unwrap().unwrap(), changed);

    let twice = store
        .change_alert_status(
            "tn_a",
            "al_1",
            AlertStatus::Open,
            ack.clone(),
            Some(message("msg_ack2", "alert.acknowledged", "al_1")),
        )
        .await
        .unwrap();
    assert!(twice.is_none(), "no longer open: nothing written");
    let elsewhere = store.change_alert_status("tn_b", "al_1", AlertStatus::Acknowledged, ack, None).await.unwrap();
    assert!(elsewhere.is_none(), "another tenant's alert is absent");

    let deliveries = store.deliveries("tn_a", "wh_1", None, None, 100).await.unwrap();
    let messages: Vec<&str> = deliveries.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(messages, ["msg_ack"]);
    assert_eq!(deliveries[0].event_type, "alert.acknowledged");
    assert_eq!(deliveries[0].alert_id, "al_1");
}

/// Messages become deliveries for the endpoints whose filter matches, only for new alerts.
pub async fn messages_fan_out_to_matching_endpoints_only(store: &impl AlertStore) {
    store.install_rules("tn_a", Vec::new(), 0).await.unwrap();
    store.create_webhook(endpoint("tn_a", "wh_all", &["alert.*"])).await.unwrap();
    store.create_webhook(endpoint("tn_a", "wh_resolved", &["alert.resolved"])).await.unwrap();
    store.create_webhook(endpoint("tn_b", "wh_other", &["*"])).await.unwrap();
    let raised = message("msg_1", "alert.raised", "al_1");
    let new =
        NewAlert { alert: alert("tn_a", "al_1", "k1", "brute_force", "high", 10), messages: vec![raised.clone()] };
    store.record_alerts("tn_a", vec![new.clone()], 1).await.unwrap();
    // Replayed: the alert exists, its message is not sent again.
    let replayed = NewAlert { messages: vec![message("msg_again", "alert.raised", "al_1")], ..new };
    assert!(store.record_alerts("tn_a", vec![replayed], 2).await.unwrap().is_empty());

    let all = store.deliveries("tn_a", "wh_all", None, None, 100).await.unwrap();
    assert_eq!(all.len(), 1);
    let delivery = &all[0];
    assert_eq!((delivery.message_id.as_str(), delivery.payload.as_str()), ("msg_1", raised.payload.as_str()));
    assert_eq!((delivery.status, delivery.attempts, delivery.round_attempts), (DeliveryStatus::Pending, 0, 0));
    assert_eq!(delivery.next_attempt_at, Some(raised.created_at));
    assert_eq!(delivery.round_started_at, raised.created_at);
    assert!(store.deliveries("tn_a", "wh_resolved", None, None, 100).await.unwrap().is_empty());
    assert!(store.deliveries("tn_b", "wh_other", None, None, 100).await.unwrap().is_empty());
    assert!(store.deliveries("tn_b", "wh_all", None, None, 100).await.unwrap().is_empty(), "isolated");

    assert!(store.due_deliveries(at(99), 10).await.unwrap().is_empty(), "not due yet");
    let due = store.due_deliveries(at(100), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].tenant.as_str(), due[0].endpoint_id.as_str()), ("tn_a", "wh_all"));
    assert_eq!(store.next_delivery_due().await.unwrap(), Some(at(100)));
}

/// Tenant `tn_a` with webhook `wh_1` and alert `al_1`, raised with one message per id.
async fn one_alert_to_one_webhook(store: &impl AlertStore, message_ids: &[&str]) {
    store.install_rules("tn_a", Vec::new(), 0).await.unwrap();
    store.create_webhook(endpoint("tn_a", "wh_1", &["alert.*"])).await.unwrap();
    let new = NewAlert {
        alert: alert("tn_a", "al_1", "k1", "brute_force", "high", 10),
        messages: message_ids.iter().map(|id| message(id, "alert.raised", "al_1")).collect(),
    };
    store.record_alerts("tn_a", vec![new], 1).await.unwrap();
}

/// Several attempts recorded in one call: each applied as if recorded alone, one answer per
/// attempt in order (false for an absent delivery, another tenant's, or one no longer pending —
/// including one made not pending earlier in the same call).
pub async fn attempts_recorded_together_are_answered_in_order(store: &impl AlertStore) {
    one_alert_to_one_webhook(store, &["msg_1", "msg_2"]).await;
    let recorded = |tenant: &str, message_id: &str, attempt: DeliveryAttempt| RecordedAttempt {
        tenant: tenant.into(),
        endpoint_id: "wh_1".into(),
        message_id: message_id.into(),
        attempt,
    };
    let delivered = DeliveryAttempt { at: at(100), status: Some(204), error: None, retry_at: None };
    let failed =
        DeliveryAttempt { at: at(100), status: Some(503), error: Some("http 503".into()), retry_at: Some(at(160)) };
    let answers = store
        .record_delivery_attempts(vec![
            recorded("tn_a", "msg_1", delivered.clone()),
            recorded("tn_b", "msg_2", delivered.clone()),
            recorded("tn_a", "msg_2", failed.clone()),
            recorded("tn_a", "msg_404", delivered.clone()),
            recorded("tn_a", "msg_1", failed.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(answers, vec![true, false, true, false, false]);
    let one = store.delivery("tn_a", "wh_1", "msg_1").await.unwrap().unwrap();
    assert_eq!((one.status, one.attempts, one.delivered_at), (DeliveryStatus::Delivered, 1, Some(at(100))));
    let two = store.delivery("tn_a", "wh_1", "msg_2").await.unwrap().unwrap();
    assert_eq!((two.status, two.attempts, two.next_attempt_at), (DeliveryStatus::Pending, 1, Some(at(160))));
    assert!(store.record_delivery_attempts(Vec::new()).await.unwrap().is_empty());
}

/// An erasure rewrites an alert's group key and summary and a delivery's payload: nothing else
/// of them changes, and another tenant's ids are refused.
pub async fn alerts_and_messages_are_rewritten_in_place(store: &impl AlertStore) {
    one_alert_to_one_webhook(store, &["msg_1"]).await;
    let before = store.alert("tn_a", "al_1").await.unwrap().unwrap();
    let group_key = json!({"context.ip": "[erased]"});
    let note = || Some("called [erased]".to_string());
    assert!(!store.rewrite_alert("tn_b", "al_1", group_key.clone(), "x".into(), note()).await.unwrap());
    assert!(!store.rewrite_alert("tn_a", "al_404", group_key.clone(), "x".into(), note()).await.unwrap());
    assert!(store.rewrite_alert("tn_a", "al_1", group_key.clone(), "for [erased]".into(), note()).await.unwrap());
    let after = store.alert("tn_a", "al_1").await.unwrap().unwrap();
    assert_eq!(
        (after.group_key.clone(), after.summary.as_str(), after.status_note.clone()),
        (group_key, "for [erased]", note())
    );
    let unchanged = Alert {
        group_key: before.group_key.clone(),
        summary: before.summary.clone(),
        status_note: before.status_note.clone(),
        ..after
    };
    assert_eq!(unchanged, before);

    let delivery = store.delivery("tn_a", "wh_1", "msg_1").await.unwrap().unwrap();
    assert!(!store.rewrite_delivery("tn_b", "wh_1", "msg_1", "{}".into()).await.unwrap());
    assert!(!store.rewrite_delivery("tn_a", "wh_1", "msg_404", "{}".into()).await.unwrap());
    assert!(store.rewrite_delivery("tn_a", "wh_1", "msg_1", r#"{"ip":"[erased]"}"#.into()).await.unwrap());
    let rewritten = store.delivery("tn_a", "wh_1", "msg_1").await.unwrap().unwrap();
    assert_eq!(rewritten.payload, r#"{"ip":"[erased]"}"#);
    assert_eq!(rewritten.status, delivery.status);
    assert_eq!((rewritten.attempts, rewritten.next_attempt_at), (delivery.attempts, delivery.next_attempt_at));
}

/// Failed attempts are rescheduled, the last one makes the delivery dead, and a redelivery
/// starts a new round with the same message.
pub async fn deliveries_retry_die_and_are_redelivered(store: &impl AlertStore) {
    one_alert_to_one_webhook(store, &["msg_1"]).await;
    let attempt = |seconds: i64, retry: Option<i64>| DeliveryAttempt {
        at: at(seconds),
        status: Some(503),
        error: Some("http 503".into()),
        retry_at: retry.map(at),
    };

    assert!(store.record_delivery_attempt("tn_a", "wh_1", "msg_1", attempt(100, Some(105))).await.unwrap());
    let pending = store.delivery("tn_a", "wh_1", "msg_1").await.unwrap().unwrap();
    assert_eq!((pending.status, pending.attempts, pending.round_attempts), (DeliveryStatus::Pending, 1, 1));
    assert_eq!(pending.next_attempt_at, Some(at(105)));
    assert_eq!(pending.last_attempt_at, Some(at(100)));
    assert_eq!((pending.last_status, pending.last_error.as_deref()), (Some(503), Some("http 503")));
    assert!(store.due_deliveries(at(104), 10).await.unwrap().is_empty());
    assert_eq!(store.due_deliveries(at(105), 10).await.unwrap().len(), 1);
    assert!(!store.record_delivery_attempt("tn_b", "wh_1", "msg_1", attempt(105, None)).await.unwrap());

    // The last attempt's error is long (a receiver's whole answer): it is kept cut to the
    // limit, on a character boundary.
    let long_error = format!("http 503: {}", "é".repeat(MAX_DELIVERY_ERROR_CHARS));
    let last = DeliveryAttempt { error: Some(long_error.clone()), ..attempt(105, None) };
    assert!(store.record_delivery_attempt("tn_a", "wh_1", "msg_1", last).await.unwrap());
    let dead = store.delivery("tn_a", "wh_1", "msg_1").await.unwrap().unwrap();
    assert_eq!((dead.status, dead.attempts, dead.next_attempt_at), (DeliveryStatus::Dead, 2, None));
    let kept: String = long_error.chars().take(MAX_DELIVERY_ERROR_CHARS).collect();
    assert_eq!(dead.last_error.as_deref(), Some(kept.as_str()));
    assert!(store.due_deliveries(at(10_000), 10).await.unwrap().is_empty());
    assert_eq!(store.next_delivery_due().await.unwrap(), None);
    assert!(!store.record_delivery_attempt("tn_a", "wh_1", "msg_1", attempt(106, Some(200))).await.unwrap(), "dead");
    let dead_letters = store.deliveries("tn_a", "wh_1", Some(DeliveryStatus::Dead), None, 10).await.unwrap();
    assert_eq!(dead_letters.len(), 1);
    assert!(store.deliveries("tn_a", "wh_1", Some(DeliveryStatus::Pending), None, 10).await.unwrap().is_empty());

    let again = store.redeliver("tn_a", "wh_1", "msg_1", at(300)).await.unwrap().expect("redelivered");
    assert_eq!((again.status, again.attempts, again.round_attempts), (DeliveryStatus::Pending, 2, 0));
    assert_eq!((again.next_attempt_at, again.round_started_at), (Some(at(300)), at(300)));
    assert_eq!(again.message_id, "msg_1");
    assert!(store.redeliver("tn_b", "wh_1", "msg_1", at(300)).await.unwrap().is_none());
    let ok = DeliveryAttempt { at: at(301), status: Some(204), error: None, retry_at: None };
    assert!(store.record_delivery_attempt("tn_a", "wh_1", "msg_1", ok).await.unwrap());
    let delivered = store.delivery("tn_a", "wh_1", "msg_1").await.unwrap().unwrap();
    assert_eq!(
        (delivered.status, delivered.attempts, delivered.delivered_at),
        (DeliveryStatus::Delivered, 3, Some(at(301)))
    );
    assert_eq!(
        (delivered.last_status, delivered.last_error.clone(), delivered.next_attempt_at),
        (Some(204), None, None)
    );
    let later = at(301).checked_add(SignedDuration::from_hours(48)).unwrap();
    assert!(store.due_deliveries(later, 10).await.unwrap().is_empty());
}

/// Endpoints belong to one tenant; deleting one removes its deliveries.
pub async fn webhooks_are_isolated_per_tenant(store: &impl AlertStore) {
    store.create_webhook(endpoint("tn_a", "wh_1", &["alert.*"])).await.unwrap();
    store.create_webhook(endpoint("tn_a", "wh_2", &["alert.raised", "alert.resolved"])).await.unwrap();
    let taken = store.create_webhook(endpoint("tn_b", "wh_1", &["*"])).await;
    assert!(matches!(taken, Err(StoreError::AlreadyExists(_))), "{taken:?}");
    let listed = store.webhooks("tn_a").await.unwrap();
    assert_eq!(listed.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["wh_1", "wh_2"]);
    assert_eq!(listed[1], endpoint("tn_a", "wh_2", &["alert.raised", "alert.resolved"]));
    assert!(store.webhooks("tn_b").await.unwrap().is_empty());
    assert!(store.webhook("tn_b", "wh_1").await.unwrap().is_none());
    assert!(!store.delete_webhook("tn_b", "wh_1").await.unwrap());

    store.install_rules("tn_a", Vec::new(), 0).await.unwrap();
    let new = NewAlert {
        alert: alert("tn_a", "al_1", "k1", "brute_force", "high", 10),
        messages: vec![message("msg_1", "alert.raised", "al_1")],
    };
    store.record_alerts("tn_a", vec![new], 1).await.unwrap();
    assert_eq!(store.due_deliveries(at(100), 10).await.unwrap().len(), 2);
    assert!(store.delete_webhook("tn_a", "wh_1").await.unwrap());
    assert!(store.webhook("tn_a", "wh_1").await.unwrap().is_none());
    assert!(store.deliveries("tn_a", "wh_1", None, None, 10).await.unwrap().is_empty());
    let due = store.due_deliveries(at(100), 10).await.unwrap();
    assert_eq!(due.iter().map(|d| d.endpoint_id.as_str()).collect::<Vec<_>>(), ["wh_2"]);
}
