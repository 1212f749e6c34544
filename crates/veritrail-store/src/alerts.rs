//! The persistence of monitoring: rules, alerts, webhook endpoints, their deliveries (an outbox)
//! and the rule engine's position in each tenant's ledger.
//!
//! A trait of its own, apart from [`Store`](crate::Store): alerts are not derived from the ledger
//! alone (people acknowledge them, webhooks are configured), so they must survive an index
//! rebuild, and a backend may keep them wherever it likes.
//!
//! **Idempotence.** The engine derives firings again after a restart (it replays the ledger);
//! [`AlertStore::record_alerts`] stores each alert once per `(tenant, dedup_key)` and moves the
//! engine cursor in the same transaction, so replaying never duplicates an alert and an alert is
//! never stored without the cursor covering it.
//!
//! **Outbox.** Every [`OutboundMessage`] handed in with an alert or a status change is fanned
//! out, in the same transaction, into one [`Delivery`] per webhook endpoint of the tenant whose
//! event filter matches its type ([`event_type_matches`]). Deliveries carry their retry schedule,
//! so a restart continues it.

use jiff::Timestamp;
use serde_json::Value;

use crate::{BoxFuture, StoreResult};

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertStatus {
    /// Raised, nobody has looked at it yet.
    Open,
    /// Someone is on it.
    Acknowledged,
    /// Done with.
    Resolved,
}

impl AlertStatus {
    /// Every status.
    pub const ALL: [AlertStatus; 3] = [AlertStatus::Open, AlertStatus::Acknowledged, AlertStatus::Resolved];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
        }
    }

    /// Parses [`AlertStatus::as_str`].
    pub fn parse(text: &str) -> Option<AlertStatus> {
        AlertStatus::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// A tenant's monitoring rule as stored: its definition is the rule engine's JSON form
/// (`veritrail_rules::Rule::to_json`), kept opaque here.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRule {
    /// Stable id, unique per tenant (the default pack's are readable: `brute_force`).
    pub id: String,
    /// 1, 2, …: every change stores a new version; alerts name the version that fired.
    pub version: u32,
    /// The rule as JSON (id, version, spec fields, `effective_from_seq`).
    pub definition: Value,
    /// When version 1 was stored.
    pub created_at: Timestamp,
    /// When this version was stored.
    pub updated_at: Timestamp,
}

/// One stored alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Public id (`al_…`), unique in the store.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Position in the store's insertion order (assigned by the store; ignored on insert):
    /// lists run newest first by it and their cursors point into it.
    pub position: u64,
    /// The rule that fired.
    pub rule_id: String,
    /// The version of the rule that fired.
    pub rule_version: u32,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// The group that fired, as `{"actor.id": "user-1"}` (empty object when ungrouped).
    pub group_key: Value,
    /// Ids of the events that made it fire (at most 32: the first and last 16).
    pub event_ids: Vec<String>,
    /// How many events made it fire in all.
    pub event_count: u64,
    /// The ledger seq whose evaluation fired it (none for silences).
    pub trigger_seq: Option<u64>,
    /// When the condition began.
    pub started_at: Timestamp,
    /// When it fired.
    pub fired_at: Timestamp,
    /// One line for people.
    pub summary: String,
    /// Identifies the firing across engine replays; unique per tenant.
    pub dedup_key: String,
    /// Where it stands.
    pub status: AlertStatus,
    /// Who changed the status last (`None` while open and untouched).
    pub status_changed_by: Option<String>,
    /// When the status changed last.
    pub status_changed_at: Option<Timestamp>,
    /// The note given with the last status change.
    pub status_note: Option<String>,
}

/// Which alerts a list returns; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    /// Any of these statuses (empty: all).
    pub statuses: Vec<AlertStatus>,
    /// Any of these severities (empty: all).
    pub severities: Vec<String>,
    /// Fired by this rule.
    pub rule_id: Option<String>,
    /// `fired_at >= since`.
    pub since: Option<Timestamp>,
    /// `fired_at < until`.
    pub until: Option<Timestamp>,
}

/// A status change of an alert.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    /// The new status.
    pub status: AlertStatus,
    /// Who made it.
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// Why, as given.
    pub note: Option<String>,
}

/// Something to tell webhook endpoints: fanned out into one [`Delivery`] per matching endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    /// Message id, unique in the store; sent as `webhook-id`, the same on every retry.
    pub id: String,
    /// `alert.raised`, `alert.acknowledged`, `alert.resolved`.
    pub event_type: String,
    /// The alert it is about.
    pub alert_id: String,
    /// The exact JSON body to send (signed as is).
    pub payload: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// An alert to store, with the messages to send if it is new.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// The alert (`position` is assigned by the store).
    pub alert: Alert,
    /// Fanned out only when the alert is stored (not when its `dedup_key` exists already).
    pub messages: Vec<OutboundMessage>,
}

/// A webhook endpoint of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// Public id (`wh_…`), unique in the store.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Where messages are POSTed.
    pub url: String,
    /// Message types it wants: exact types or `prefix.*` globs (`alert.*`), `*` for all.
    pub events: Vec<String>,
    /// The Standard Webhooks signing secret (`whsec_<base64>`).
    pub secret: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every retry failed; waits for a manual redelivery (the dead-letter list).
    Dead,
}

impl DeliveryStatus {
    /// Every status.
    pub const ALL: [DeliveryStatus; 3] = [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Dead];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    /// Parses [`DeliveryStatus::as_str`].
    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// One message on its way to one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Owning tenant.
    pub tenant: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The message id (`webhook-id`); unique per endpoint, so it is the delivery's id too.
    pub message_id: String,
    /// Position in the store's insertion order: delivery logs run newest first by it.
    pub position: u64,
    /// The message type.
    pub event_type: String,
    /// The alert it is about.
    pub alert_id: String,
    /// The exact body.
    pub payload: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made, all rounds together.
    pub attempts: u32,
    /// Attempts made since the current round of retries began (creation or redelivery).
    pub round_attempts: u32,
    /// When the current round began.
    pub round_started_at: Timestamp,
    /// When it was created.
    pub created_at: Timestamp,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<Timestamp>,
    /// When the last attempt was made.
    pub last_attempt_at: Option<Timestamp>,
    /// The HTTP status of the last answer, if there was one.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the endpoint accepted it.
    pub delivered_at: Option<Timestamp>,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    /// When it was made.
    pub at: Timestamp,
    /// The HTTP status answered, if any.
    pub status: Option<u16>,
    /// `None`: delivered. `Some(error)`: failed.
    pub error: Option<String>,
    /// After a failure: when to try again; `None` makes the delivery dead.
    pub retry_at: Option<Timestamp>,
}

impl DeliveryAttempt {
    /// The delivery's status once this attempt is recorded: delivered, pending again (a retry
    /// is scheduled), or dead.
    pub fn status_after(&self) -> DeliveryStatus {
        match (&self.error, self.retry_at) {
            (None, _) => DeliveryStatus::Delivered,
            (Some(_), Some(_)) => DeliveryStatus::Pending,
            (Some(_), None) => DeliveryStatus::Dead,
        }
    }

    /// When the delivery is tried next: the retry after a failed attempt, none otherwise.
    pub fn next_attempt_at(&self) -> Option<Timestamp> {
        self.retry_at.filter(|_| self.status_after() == DeliveryStatus::Pending)
    }

    /// The error as stores keep it (`last_error`): its first [`MAX_DELIVERY_ERROR_CHARS`]
    /// characters.
    pub fn stored_error(&self) -> Option<String> {
        self.error.as_ref().map(|error| error.chars().take(MAX_DELIVERY_ERROR_CHARS).collect())
    }
}

/// Longest delivery error a store keeps, in characters.
pub const MAX_DELIVERY_ERROR_CHARS: usize = 1000;

/// An attempt on one delivery, as [`AlertStore::record_delivery_attempts`] records it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedAttempt {
    /// The delivery's tenant.
    pub tenant: String,
    /// Its endpoint.
    pub endpoint_id: String,
    /// Its message.
    pub message_id: String,
    /// What happened.
    pub attempt: DeliveryAttempt,
}

/// True when a webhook event filter entry accepts a message type: equal, `*`, or a `prefix.*`
/// glob matching the prefix and anything after its dot.
pub fn event_type_matches(filter: &str, event_type: &str) -> bool {
    if filter == "*" || filter == event_type {
        return true;
    }
    match filter.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('.') => event_type.starts_with(prefix),
        _ => false,
    }
}

/// The node among `nodes` that runs `tenant`'s rule engine: the one ranking first for it by
/// rendezvous hashing (highest SHA-256 of node, tenant), so that all nodes agree from the same
/// list, a node leaving moves only its own tenants, and tenants spread evenly. `None` when
/// `nodes` is empty.
pub fn engine_owner<'n>(nodes: &'n [String], tenant: &str) -> Option<&'n str> {
    use sha2::{Digest, Sha256};
    let rank = |node: &str| -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(node.as_bytes());
        hasher.update([0]);
        hasher.update(tenant.as_bytes());
        hasher.finalize().into()
    };
    nodes.iter().max_by_key(|node| rank(node)).map(String::as_str)
}

/// The persistence of monitoring. Every method takes the tenant from the caller (the server's
/// authenticated credential) and never sees another tenant's rows: an id of another tenant's
/// object behaves as absent.
pub trait AlertStore: Send + Sync + 'static {
    /// Installs a tenant's starting rules and engine cursor (`next_seq`: the first ledger seq
    /// the engine will evaluate) if the tenant has no engine cursor yet; returns whether it did.
    /// Several nodes racing agree on one installation.
    fn install_rules(&self, tenant: &str, rules: Vec<StoredRule>, next_seq: u64) -> BoxFuture<'_, StoreResult<bool>>;
    /// The tenant's rules (deleted ones left out), oldest first.
    fn rules(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<StoredRule>>>;
    /// One rule, current version; `None` when absent or deleted.
    fn rule(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<StoredRule>>>;
    /// Any version ever stored of a rule, deleted ones included.
    fn rule_version(&self, tenant: &str, id: &str, version: u32) -> BoxFuture<'_, StoreResult<Option<StoredRule>>>;
    /// Stores a new rule at its version; [`StoreError::AlreadyExists`](crate::StoreError) when
    /// the id was ever used in the tenant (ids of deleted rules are not reused).
    fn create_rule(&self, tenant: &str, rule: StoredRule) -> BoxFuture<'_, StoreResult<()>>;
    /// Replaces a rule with a new version if its current version is `expected_version`;
    /// returns false (nothing written) when it is absent, deleted or at another version.
    fn update_rule(&self, tenant: &str, rule: StoredRule, expected_version: u32) -> BoxFuture<'_, StoreResult<bool>>;
    /// Deletes a rule (its versions stay readable through [`AlertStore::rule_version`]);
    /// returns false when it is absent or deleted already.
    fn delete_rule(&self, tenant: &str, id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<bool>>;
    /// How many times each tenant's rules have changed, counted in the transaction of every
    /// call that wrote them ([`AlertStore::install_rules`], [`AlertStore::create_rule`],
    /// [`AlertStore::update_rule`], [`AlertStore::delete_rule`]): a count that moved means other
    /// rules, and rules read after a count are at least as new as it. Tenants whose rules never
    /// changed are left out (count 0). One read for all tenants: how rule engines sharing the
    /// store notice, every second, whose rules another node changed since they loaded them.
    fn rule_change_counts(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>>;

    /// The nodes whose rule engines share this store, for stores several nodes share: records
    /// that `node` is alive now, forgets nodes not seen within `ttl`, and returns the live ones
    /// (`node` among them), sorted. Each tenant's engine then runs on one of them
    /// ([`engine_owner`]). `None` (the default): the store serves one node, which runs every
    /// tenant.
    fn engine_nodes(&self, node: &str, ttl: std::time::Duration) -> BoxFuture<'_, StoreResult<Option<Vec<String>>>> {
        let _ = (node, ttl);
        Box::pin(async { Ok(None) })
    }

    /// Forgets `node` (at shutdown), so that the other nodes take over its tenants at once.
    fn leave_engine_nodes(&self, node: &str) -> BoxFuture<'_, StoreResult<()>> {
        let _ = node;
        Box::pin(async { Ok(()) })
    }

    /// The engine cursor: the first ledger seq not yet evaluated; `None` before
    /// [`AlertStore::install_rules`].
    fn engine_cursor(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Option<u64>>>;
    /// Moves the engine cursor (never backwards: a smaller value is ignored). A move that is not
    /// `durable` is committed without waiting for the disk and may be lost if the machine stops
    /// before the next durable commit: the engine then evaluates again from the older cursor,
    /// which raises nothing twice (alerts are stored once per `dedup_key`). The engine stores
    /// its periodic progress so, which then costs no sync on the disk acknowledgements wait for.
    fn set_engine_cursor(&self, tenant: &str, next_seq: u64, durable: bool) -> BoxFuture<'_, StoreResult<()>>;

    /// Stores alerts whose `dedup_key` the tenant does not have yet, fans out their messages,
    /// and moves the engine cursor to `next_seq`, all in one transaction. Returns the ids of
    /// the alerts stored (the others existed).
    fn record_alerts(
        &self,
        tenant: &str,
        alerts: Vec<NewAlert>,
        next_seq: u64,
    ) -> BoxFuture<'_, StoreResult<Vec<String>>>;
    /// One alert.
    fn alert(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<Alert>>>;
    /// Alerts matching `filter`, newest first, with `position < before` when given, at most
    /// `limit`.
    fn alerts<'a>(
        &'a self,
        tenant: &'a str,
        filter: &'a AlertFilter,
        before: Option<u64>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<Alert>>>;
    /// Changes an alert's status if it is currently `from`, and fans out `message` in the same
    /// transaction. Returns the changed alert, or `None` when there is no such alert or it is
    /// not in status `from` (nothing written).
    fn change_alert_status(
        &self,
        tenant: &str,
        id: &str,
        from: AlertStatus,
        change: StatusChange,
        message: Option<OutboundMessage>,
    ) -> BoxFuture<'_, StoreResult<Option<Alert>>>;

    /// Stores a new webhook endpoint; [`StoreError::AlreadyExists`](crate::StoreError) when
    /// the id is taken.
    fn create_webhook(&self, endpoint: WebhookEndpoint) -> BoxFuture<'_, StoreResult<()>>;
    /// The tenant's endpoints, oldest first.
    fn webhooks(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<WebhookEndpoint>>>;
    /// One endpoint.
    fn webhook(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<WebhookEndpoint>>>;
    /// Deletes an endpoint and its deliveries; returns false when absent.
    fn delete_webhook(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>>;

    /// An endpoint's deliveries, newest first, with `position < before` when given, of one
    /// status when given, at most `limit`.
    fn deliveries(
        &self,
        tenant: &str,
        endpoint_id: &str,
        status: Option<DeliveryStatus>,
        before: Option<u64>,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<Delivery>>>;
    /// One delivery.
    fn delivery(
        &self,
        tenant: &str,
        endpoint_id: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<Delivery>>>;
    /// Pending deliveries of every tenant due at `now`, earliest first, at most `limit`.
    fn due_deliveries(&self, now: Timestamp, limit: u32) -> BoxFuture<'_, StoreResult<Vec<Delivery>>>;
    /// When the earliest pending delivery is due.
    fn next_delivery_due(&self) -> BoxFuture<'_, StoreResult<Option<Timestamp>>>;
    /// Records attempts on pending deliveries, each delivered, retried at its `retry_at`, or
    /// dead, in one transaction where the backend can (the webhook worker records the attempts
    /// that finished together at once). One answer per attempt, in order: false when that
    /// delivery is absent or not pending (nothing written for it). Not durable on return: a lost
    /// attempt means the webhook is sent again under the same id.
    fn record_delivery_attempts(&self, attempts: Vec<RecordedAttempt>) -> BoxFuture<'_, StoreResult<Vec<bool>>>;
    /// [`AlertStore::record_delivery_attempts`] for one attempt.
    fn record_delivery_attempt(
        &self,
        tenant: &str,
        endpoint_id: &str,
        message_id: &str,
        attempt: DeliveryAttempt,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let one = RecordedAttempt {
            tenant: tenant.to_string(),
            endpoint_id: endpoint_id.to_string(),
            message_id: message_id.to_string(),
            attempt,
        };
        Box::pin(async move { Ok(self.record_delivery_attempts(vec![one]).await?.first().copied().unwrap_or(false)) })
    }
    /// Replaces an alert's group key, summary and status note (a data subject's values erased
    /// from them, GDPR Art. 17), overwriting the old text where the backend can; false when
    /// absent.
    fn rewrite_alert(
        &self,
        tenant: &str,
        id: &str,
        group_key: Value,
        summary: String,
        status_note: Option<String>,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    /// Replaces a delivery's payload (the same erasure); false when absent.
    fn rewrite_delivery(
        &self,
        tenant: &str,
        endpoint_id: &str,
        message_id: &str,
        payload: String,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    /// Makes a delivery pending again, due at `at`, starting a new round of retries (same
    /// message id, same body). Returns the delivery, `None` when absent.
    fn redeliver(
        &self,
        tenant: &str,
        endpoint_id: &str,
        message_id: &str,
        at: Timestamp,
    ) -> BoxFuture<'_, StoreResult<Option<Delivery>>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_owners_are_agreed_spread_and_move_only_when_their_node_leaves() {
        let nodes: Vec<String> = (0..3).map(|i| format!("node_{i}")).collect();
        let tenants: Vec<String> = (0..300).map(|i| format!("tn_{i}")).collect();
        assert_eq!(engine_owner(&[], "tn_0"), None);
        let owners: Vec<&str> = tenants.iter().map(|t| engine_owner(&nodes, t).unwrap()).collect();
        // The same list in another order gives the same owners.
        let reversed: Vec<String> = nodes.iter().rev().cloned().collect();
        for (tenant, owner) in tenants.iter().zip(&owners) {
            assert_eq!(engine_owner(&reversed, tenant), Some(*owner));
        }
        // Spread: each of three nodes runs about a third (300 tenants: 100 ± 30).
        for node in &nodes {
            let count = owners.iter().filter(|owner| *owner == node).count();
            assert!((70..=130).contains(&count), "{node} runs {count} of 300");
        }
        // node_1 leaves: only its tenants move, and to the others.
        let left: Vec<String> = vec!["node_0".into(), "node_2".into()];
        for (tenant, owner) in tenants.iter().zip(&owners) {
            let now = engine_owner(&left, tenant).unwrap();
            if *owner == "node_1" {
                assert_ne!(now, "node_1");
            } else {
                assert_eq!(now, *owner, "{tenant} stays on its node");
            }
        }
    }

    #[test]
    fn event_filters() {
        assert!(event_type_matches("*", "alert.raised"));
        assert!(event_type_matches("alert.*", "alert.raised"));
        assert!(event_type_matches("alert.raised", "alert.raised"));
        assert!(!event_type_matches("alert.resolved", "alert.raised"));
        assert!(!event_type_matches("alert*", "alert.raised"));
        assert!(!event_type_matches("alerts.*", "alert.raised"));
        assert!(!event_type_matches("alert.raised.*", "alert.raised"));
    }

    #[test]
    fn statuses_round_trip() {
        for status in AlertStatus::ALL {
            assert_eq!(AlertStatus::parse(status.as_str()), Some(status));
        }
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(AlertStatus::parse("closed"), None);
    }
}
