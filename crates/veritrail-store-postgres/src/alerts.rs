//! [`AlertStore`] on PostgreSQL: rules, alerts, webhook endpoints, the deliveries outbox and the
//! rule engine's cursors in the shared database (`migrations/0002_alerts.sql`), so every node
//! sees the same monitoring state. Same semantics as the SQLite store; what several nodes add:
//!
//! - **Alerts once, whichever node derives them.** Each tenant's rule engine runs on one node
//!   at a time, but while nodes join or leave two may run it for about a second, and a node
//!   taking a tenant over replays what the other derived. Alerts and deliveries stay exact
//!   without a lock: alert ids (and through them the ids of the `audit.alert.raised` ledger
//!   events that list them) are derived from `(tenant, dedup_key)`, replayed engines reproduce
//!   the same dedup keys (the engine's restart protocol), `UNIQUE (tenant, dedup_key)` stores
//!   each alert once, and only the transaction that inserted an alert fans out its messages, so
//!   a firing becomes one alert and one delivery per endpoint. [`AlertStore::record_alerts`]
//!   upserts the tenant's cursor row first, so one tenant's alerts are recorded by one
//!   transaction at a time (never two nodes waiting on each other's alert rows in opposite
//!   orders); the cursor only moves forward. What the overlap costs is repeated work, not
//!   repeated alerts.
//! - **Rule changes reach every node.** Every rule write bumps the tenant's row in
//!   `rule_changes` in its own transaction (`migrations/0005_rule_changes.sql`);
//!   [`AlertStore::rule_change_counts`] reads them all in one statement, which each node's rule
//!   engine does every second to reload the rules of tenants whose count moved.
//! - **One sender per delivery.** [`AlertStore::due_deliveries`] claims what it returns: rows
//!   are picked `FOR UPDATE SKIP LOCKED` and leased to this store (`claimed_by`, a random id
//!   drawn at [`PgAlertStore::connect`]) for [`CLAIM_LEASE`], on the database's clock. Other
//!   nodes skip leased rows and [`AlertStore::next_delivery_due`] reports them as due when the
//!   lease ends, so an idle node does not poll them in a loop; this node gets its own claims
//!   back on every call (its delivery task already skips what it has in flight). Recording an
//!   attempt releases the claim; a node that dies holding claims delays those deliveries by at
//!   most the lease.
//! - **Races resolved in the database.** Installing rules, creating rules and webhooks, rule
//!   updates and status changes are conditional single-row writes (`ON CONFLICT`, `WHERE
//!   version = …`, `WHERE status = …`), so racing nodes agree on one winner. Fan-out locks the
//!   tenant's endpoints (`FOR KEY SHARE`) and deliveries reference their endpoint `ON DELETE
//!   CASCADE`, so an endpoint deleted meanwhile never leaves deliveries behind.
//!
//! Its own small connection pool, as `alerts.sqlite` has its own connection: monitoring never
//! waits for a connection behind ingest and queries. Delivery attempts commit with
//! `synchronous_commit = off`, like the SQLite store's non-durable attempts: a lost one means the
//! webhook is sent again under the same `webhook-id`, which at-least-once delivery allows anyway.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Pool, Transaction};
use jiff::Timestamp;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use veritrail_store::{
    Alert, AlertFilter, AlertStatus, AlertStore, BoxFuture, Delivery, DeliveryStatus, NewAlert, OutboundMessage,
    RecordedAttempt, StatusChange, StoreError, StoreResult, StoredRule, WebhookEndpoint, event_type_matches,
};

use crate::{connection_pool, migrate, pg_error, pool_error, to_i64};

/// How long a node's claim on a due delivery keeps other nodes from sending it: far longer
/// than an attempt (name resolution and the exchange are each bounded by the webhook timeout,
/// 10 s by default), short enough that a node's death delays its claimed deliveries little.
const CLAIM_LEASE: Duration = Duration::from_secs(300);

/// Most connections the alert store of one node holds open (the delivery task has up to eight
/// attempts in flight, each reading its endpoint and recording its outcome).
const MAX_CONNECTIONS: usize = 8;

/// The [`AlertStore`] of the PostgreSQL backend: one per node. Cheap to clone; clones share the
/// connection pool and one delivery-claim identity.
#[derive(Clone)]
pub struct PgAlertStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// This node's id in `deliveries.claimed_by`: a random UUID, so no two nodes share one.
    claimant: String,
}

impl std::fmt::Debug for PgAlertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAlertStore").finish_non_exhaustive()
    }
}

impl PgAlertStore {
    /// Connects to `url` (the database of [`PgStore`](crate::PgStore)) and applies pending
    /// migrations. Each store has its own delivery-claim identity: one per node.
    pub async fn connect(url: &str) -> StoreResult<PgAlertStore> {
        migrate(url).await?;
        let pool = connection_pool(url, MAX_CONNECTIONS)?;
        let client = pool.get().await.map_err(pool_error)?;
        let claimant = client.query_one("SELECT gen_random_uuid()::text", &[]).await.map_err(pg_error)?.get(0);
        drop(client);
        Ok(PgAlertStore { inner: Arc::new(Inner { pool, claimant }) })
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.inner.pool.get().await.map_err(pool_error)
    }

    /// Runs one statement (prepared once per connection) on a pooled connection: whether it
    /// changed exactly one row.
    async fn execute_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<bool> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
        Ok(client.execute(&statement, params).await.map_err(pg_error)? == 1)
    }
}

fn count_u32(value: i64, what: &str) -> StoreResult<u32> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} is out of range")))
}

// ---- rules ----

pub(crate) const RULE_COLUMNS: &str = "id, version, definition, created_at, updated_at";

pub(crate) fn to_rule(row: &Row) -> StoreResult<StoredRule> {
    Ok(StoredRule {
        id: row.get(0),
        version: count_u32(row.get(1), "rule version")?,
        definition: row.get(2),
        created_at: row.get(3),
        updated_at: row.get(4),
    })
}

async fn insert_rule(tx: &Transaction<'_>, tenant: &str, rule: &StoredRule) -> StoreResult<()> {
    let inserted = tx
        .execute(
            "INSERT INTO rules (tenant, id, version, definition, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, id) DO NOTHING",
            &[&tenant, &rule.id, &i64::from(rule.version), &rule.definition, &rule.created_at, &rule.updated_at],
        )
        .await
        .map_err(pg_error)?;
    if inserted == 0 {
        return Err(StoreError::AlreadyExists(format!("rule {:?}", rule.id)));
    }
    insert_rule_version(tx, tenant, rule).await
}

async fn insert_rule_version(tx: &Transaction<'_>, tenant: &str, rule: &StoredRule) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO rule_versions (tenant, id, version, definition, created_at, saved_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant, id, version) DO UPDATE
         SET definition = excluded.definition, created_at = excluded.created_at, saved_at = excluded.saved_at",
        &[&tenant, &rule.id, &i64::from(rule.version), &rule.definition, &rule.created_at, &rule.updated_at],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// Counts a change of the tenant's rules, in the transaction that makes it; the row stays locked
/// until it commits, so concurrent changes of one tenant are counted one after the other.
async fn count_rule_change(tx: &Transaction<'_>, tenant: &str) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO rule_changes (tenant, changes) VALUES ($1, 1)
         ON CONFLICT (tenant) DO UPDATE SET changes = rule_changes.changes + 1",
        &[&tenant],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// Moves a tenant's engine cursor forward (creating it if needed) and keeps its row locked
/// until the transaction ends.
async fn set_cursor(tx: &Transaction<'_>, tenant: &str, next_seq: u64) -> StoreResult<()> {
    let next_seq = to_i64(next_seq, "engine cursor")?;
    let statement = tx
        .prepare_cached(
            "INSERT INTO engine_cursors (tenant, next_seq, installed_at) VALUES ($1, $2, now())
             ON CONFLICT (tenant) DO UPDATE SET next_seq = greatest(engine_cursors.next_seq, excluded.next_seq)",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(&statement, &[&tenant, &next_seq]).await.map_err(pg_error)?;
    Ok(())
}

// ---- alerts ----

/// An alert as its `alerts` row is written, its numbers converted: by `record_alerts` (the
/// database numbers it) and by `migrate-store`'s import (which keeps its `position`).
pub(crate) struct AlertRow<'a> {
    alert: &'a Alert,
    position: Option<i64>,
    rule_version: i64,
    event_count: i64,
    trigger_seq: Option<i64>,
    status: &'static str,
}

impl<'a> AlertRow<'a> {
    pub(crate) fn new(alert: &'a Alert, keep_position: bool) -> StoreResult<AlertRow<'a>> {
        Ok(AlertRow {
            alert,
            position: keep_position.then(|| to_i64(alert.position, "alert position")).transpose()?,
            rule_version: i64::from(alert.rule_version),
            event_count: to_i64(alert.event_count, "alert event count")?,
            trigger_seq: alert.trigger_seq.map(|seq| to_i64(seq, "alert trigger seq")).transpose()?,
            status: alert.status.as_str(),
        })
    }

    /// The insert of rows made with `keep_position`, followed by `conflict` (a conflict clause
    /// or nothing).
    pub(crate) fn insert_sql(keep_position: bool, conflict: &str) -> String {
        const COLUMNS: &str = "id, tenant, rule_id, rule_version, severity, group_key, event_ids, event_count,
             trigger_seq, started_at, fired_at, summary, dedup_key, status, status_changed_by, status_changed_at,
             status_note";
        let (position, overriding, count) =
            if keep_position { ("position, ", " OVERRIDING SYSTEM VALUE", 18) } else { ("", "", 17) };
        let values: Vec<String> = (1..=count).map(|i| format!("${i}")).collect();
        format!("INSERT INTO alerts ({position}{COLUMNS}){overriding} VALUES ({}) {conflict}", values.join(", "))
    }

    /// The parameters of [`AlertRow::insert_sql`].
    pub(crate) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let alert = self.alert;
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(18);
        if let Some(position) = &self.position {
            params.push(position);
        }
        params.extend([
            &alert.id as &(dyn ToSql + Sync),
            &alert.tenant,
            &alert.rule_id,
            &self.rule_version,
            &alert.severity,
            &alert.group_key,
            &alert.event_ids,
            &self.event_count,
            &self.trigger_seq,
            &alert.started_at,
            &alert.fired_at,
            &alert.summary,
            &alert.dedup_key,
            &self.status,
            &alert.status_changed_by,
            &alert.status_changed_at,
            &alert.status_note,
        ]);
        params
    }
}

pub(crate) const ALERT_COLUMNS: &str =
    "position, id, tenant, rule_id, rule_version, severity, group_key, event_ids, event_count,
     trigger_seq, started_at, fired_at, summary, dedup_key, status, status_changed_by, status_changed_at, status_note";

pub(crate) fn to_alert(row: &Row) -> StoreResult<Alert> {
    let status: &str = row.get(14);
    let status = AlertStatus::parse(status).ok_or_else(|| StoreError::Corrupt(format!("alert status {status:?}")))?;
    let position: i64 = row.get(0);
    let event_count: i64 = row.get(8);
    let trigger_seq: Option<i64> = row.get(9);
    Ok(Alert {
        position: position as u64,
        id: row.get(1),
        tenant: row.get(2),
        rule_id: row.get(3),
        rule_version: count_u32(row.get(4), "alert rule version")?,
        severity: row.get(5),
        group_key: row.get(6),
        event_ids: row.get(7),
        event_count: event_count.max(0) as u64,
        trigger_seq: trigger_seq.map(|seq| seq.max(0) as u64),
        started_at: row.get(10),
        fired_at: row.get(11),
        summary: row.get(12),
        dedup_key: row.get(13),
        status,
        status_changed_by: row.get(15),
        status_changed_at: row.get(16),
        status_note: row.get(17),
    })
}

/// A webhook endpoint of the tenant as fan-out needs it: id and event filters.
struct Subscriber {
    endpoint_id: String,
    events: Vec<String>,
}

/// The tenant's endpoints, locked against deletion until the transaction ends (a delete that
/// committed first is not seen; one that comes later cascades to the deliveries written here).
async fn subscribers(tx: &Transaction<'_>, tenant: &str) -> StoreResult<Vec<Subscriber>> {
    let statement = tx
        .prepare_cached("SELECT id, events FROM webhooks WHERE tenant = $1 ORDER BY no FOR KEY SHARE")
        .await
        .map_err(pg_error)?;
    let rows = tx.query(&statement, &[&tenant]).await.map_err(pg_error)?;
    Ok(rows.iter().map(|row| Subscriber { endpoint_id: row.get(0), events: row.get(1) }).collect())
}

/// One pending delivery of `message` per subscriber whose filter accepts its type.
async fn fan_out(
    tx: &Transaction<'_>,
    tenant: &str,
    subscribers: &[Subscriber],
    message: &OutboundMessage,
) -> StoreResult<()> {
    let mut endpoint_ids = Vec::new();
    for subscriber in subscribers {
        if subscriber.events.iter().any(|filter| event_type_matches(filter, &message.event_type)) {
            endpoint_ids.push(subscriber.endpoint_id.as_str());
        }
    }
    if endpoint_ids.is_empty() {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(
            "INSERT INTO deliveries (tenant, endpoint_id, message_id, event_type, alert_id, payload, status,
                 attempts, round_attempts, round_started_at, created_at, next_attempt_at)
             SELECT $1, endpoint_id, $3, $4, $5, $6, 'pending', 0, 0, $7, $7, $7 FROM unnest($2::text[]) AS endpoint_id
             ON CONFLICT (endpoint_id, message_id) DO NOTHING",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(
        &statement,
        &[
            &tenant,
            &endpoint_ids,
            &message.id,
            &message.event_type,
            &message.alert_id,
            &message.payload,
            &message.created_at,
        ],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

// ---- webhooks and deliveries ----

pub(crate) const WEBHOOK_COLUMNS: &str = "id, tenant, url, events, secret, created_at";

pub(crate) fn to_webhook(row: &Row) -> WebhookEndpoint {
    WebhookEndpoint {
        id: row.get(0),
        tenant: row.get(1),
        url: row.get(2),
        events: row.get(3),
        secret: row.get(4),
        created_at: row.get(5),
    }
}

pub(crate) const DELIVERY_COLUMNS: &str =
    "tenant, endpoint_id, message_id, position, event_type, alert_id, payload, status,
     attempts, round_attempts, round_started_at, created_at, next_attempt_at, last_attempt_at, last_status,
     last_error, delivered_at";

pub(crate) fn to_delivery(row: &Row) -> StoreResult<Delivery> {
    let status: &str = row.get(7);
    let status =
        DeliveryStatus::parse(status).ok_or_else(|| StoreError::Corrupt(format!("delivery status {status:?}")))?;
    let position: i64 = row.get(3);
    let attempts: i32 = row.get(8);
    let round_attempts: i32 = row.get(9);
    let last_status: Option<i32> = row.get(14);
    Ok(Delivery {
        tenant: row.get(0),
        endpoint_id: row.get(1),
        message_id: row.get(2),
        position: position as u64,
        event_type: row.get(4),
        alert_id: row.get(5),
        payload: row.get(6),
        status,
        attempts: attempts.max(0) as u32,
        round_attempts: round_attempts.max(0) as u32,
        round_started_at: row.get(10),
        created_at: row.get(11),
        next_attempt_at: row.get(12),
        last_attempt_at: row.get(13),
        last_status: last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.get(15),
        delivered_at: row.get(16),
    })
}

/// Sorts deliveries earliest due first (an `UPDATE … RETURNING` keeps no order).
fn earliest_first(deliveries: &mut [Delivery]) {
    deliveries.sort_by_key(|d| (d.next_attempt_at, d.position));
}

impl AlertStore for PgAlertStore {
    fn install_rules(&self, tenant: &str, rules: Vec<StoredRule>, next_seq: u64) -> BoxFuture<'_, StoreResult<bool>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let next_seq = to_i64(next_seq, "engine cursor")?;
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // The cursor row decides: a racing node's insert waits for this commit, then does
            // nothing and installs nothing.
            let installed = tx
                .execute(
                    "INSERT INTO engine_cursors (tenant, next_seq, installed_at) VALUES ($1, $2, now())
                     ON CONFLICT (tenant) DO NOTHING",
                    &[&tenant, &next_seq],
                )
                .await
                .map_err(pg_error)?;
            if installed == 0 {
                return Ok(false);
            }
            for rule in &rules {
                insert_rule(&tx, &tenant, rule).await?;
            }
            count_rule_change(&tx, &tenant).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(true)
        })
    }

    fn rules(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<StoredRule>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {RULE_COLUMNS} FROM rules WHERE tenant = $1 AND deleted_at IS NULL ORDER BY no");
            let rows = client.query(&sql, &[&tenant]).await.map_err(pg_error)?;
            rows.iter().map(to_rule).collect()
        })
    }

    fn rule(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<StoredRule>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {RULE_COLUMNS} FROM rules WHERE tenant = $1 AND id = $2 AND deleted_at IS NULL");
            let row = client.query_opt(&sql, &[&tenant, &id]).await.map_err(pg_error)?;
            row.as_ref().map(to_rule).transpose()
        })
    }

    fn rule_version(&self, tenant: &str, id: &str, version: u32) -> BoxFuture<'_, StoreResult<Option<StoredRule>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT id, version, definition, created_at, saved_at FROM rule_versions
                     WHERE tenant = $1 AND id = $2 AND version = $3",
                    &[&tenant, &id, &i64::from(version)],
                )
                .await
                .map_err(pg_error)?;
            row.as_ref().map(to_rule).transpose()
        })
    }

    fn create_rule(&self, tenant: &str, rule: StoredRule) -> BoxFuture<'_, StoreResult<()>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            insert_rule(&tx, &tenant, &rule).await?;
            count_rule_change(&tx, &tenant).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(())
        })
    }

    fn update_rule(&self, tenant: &str, rule: StoredRule, expected_version: u32) -> BoxFuture<'_, StoreResult<bool>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // Row-locked compare-and-swap on the version: a racing update re-checks it after us.
            let row = tx
                .query_opt(
                    "UPDATE rules SET version = $3, definition = $4, updated_at = $5
                     WHERE tenant = $1 AND id = $2 AND version = $6 AND deleted_at IS NULL
                     RETURNING created_at",
                    &[
                        &tenant,
                        &rule.id,
                        &i64::from(rule.version),
                        &rule.definition,
                        &rule.updated_at,
                        &i64::from(expected_version),
                    ],
                )
                .await
                .map_err(pg_error)?;
            let Some(row) = row else { return Ok(false) };
            let stored = StoredRule { created_at: row.get(0), ..rule };
            insert_rule_version(&tx, &tenant, &stored).await?;
            count_rule_change(&tx, &tenant).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(true)
        })
    }

    fn delete_rule(&self, tenant: &str, id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            let changed = tx
                .execute(
                    "UPDATE rules SET deleted_at = $3 WHERE tenant = $1 AND id = $2 AND deleted_at IS NULL",
                    &[&tenant, &id, &at],
                )
                .await
                .map_err(pg_error)?;
            if changed == 0 {
                return Ok(false);
            }
            count_rule_change(&tx, &tenant).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(true)
        })
    }

    fn rule_change_counts(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>> {
        Box::pin(async move {
            let client = self.client().await?;
            let statement =
                client.prepare_cached("SELECT tenant, changes FROM rule_changes").await.map_err(pg_error)?;
            let rows = client.query(&statement, &[]).await.map_err(pg_error)?;
            Ok(rows.iter().map(|row| (row.get(0), row.get::<_, i64>(1).max(0) as u64)).collect())
        })
    }

    fn engine_nodes(&self, node: &str, ttl: Duration) -> BoxFuture<'_, StoreResult<Option<Vec<String>>>> {
        let node = node.to_string();
        Box::pin(async move {
            let ttl = ttl.as_secs_f64();
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // Progress of a kind that is written again within a second.
            tx.batch_execute("SET LOCAL synchronous_commit = off").await.map_err(pg_error)?;
            tx.execute(
                "INSERT INTO engine_nodes (node, seen_at) VALUES ($1, now())
                 ON CONFLICT (node) DO UPDATE SET seen_at = now()",
                &[&node],
            )
            .await
            .map_err(pg_error)?;
            tx.execute("DELETE FROM engine_nodes WHERE seen_at < now() - make_interval(secs => $1)", &[&ttl])
                .await
                .map_err(pg_error)?;
            let rows = tx.query("SELECT node FROM engine_nodes ORDER BY node", &[]).await.map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            Ok(Some(rows.iter().map(|row| row.get(0)).collect()))
        })
    }

    fn leave_engine_nodes(&self, node: &str) -> BoxFuture<'_, StoreResult<()>> {
        let node = node.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            client.execute("DELETE FROM engine_nodes WHERE node = $1", &[&node]).await.map_err(pg_error)?;
            Ok(())
        })
    }

    fn engine_cursor(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Option<u64>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt("SELECT next_seq FROM engine_cursors WHERE tenant = $1", &[&tenant])
                .await
                .map_err(pg_error)?;
            Ok(row.map(|row| row.get::<_, i64>(0).max(0) as u64))
        })
    }

    fn set_engine_cursor(&self, tenant: &str, next_seq: u64, durable: bool) -> BoxFuture<'_, StoreResult<()>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            if !durable {
                tx.batch_execute("SET LOCAL synchronous_commit = off").await.map_err(pg_error)?;
            }
            set_cursor(&tx, &tenant, next_seq).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(())
        })
    }

    fn record_alerts(
        &self,
        tenant: &str,
        alerts: Vec<NewAlert>,
        next_seq: u64,
    ) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // The cursor first: its row lock serialises this tenant's record_alerts across nodes.
            set_cursor(&tx, &tenant, next_seq).await?;
            if alerts.is_empty() {
                tx.commit().await.map_err(pg_error)?;
                return Ok(Vec::new());
            }
            let subscribers = subscribers(&tx, &tenant).await?;
            let insert = tx
                .prepare_cached(&AlertRow::insert_sql(false, "ON CONFLICT (tenant, dedup_key) DO NOTHING"))
                .await
                .map_err(pg_error)?;
            let mut stored = Vec::new();
            for NewAlert { alert, messages } in alerts {
                debug_assert_eq!(alert.tenant, tenant);
                let row = AlertRow::new(&alert, false)?;
                let inserted = tx.execute(&insert, &row.params()).await.map_err(pg_error)?;
                if inserted == 0 {
                    continue;
                }
                for message in &messages {
                    fan_out(&tx, &tenant, &subscribers, message).await?;
                }
                stored.push(alert.id);
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(stored)
        })
    }

    fn alert(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<Alert>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE tenant = $1 AND id = $2");
            let row = client.query_opt(&sql, &[&tenant, &id]).await.map_err(pg_error)?;
            row.as_ref().map(to_alert).transpose()
        })
    }

    fn alerts<'a>(
        &'a self,
        tenant: &'a str,
        filter: &'a AlertFilter,
        before: Option<u64>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<Alert>>> {
        Box::pin(async move {
            let client = self.client().await?;
            // One statement for every filter: an absent condition is an empty array or a null.
            let sql = format!(
                "SELECT {ALERT_COLUMNS} FROM alerts
                 WHERE tenant = $1 AND position < $2
                   AND (cardinality($3::text[]) = 0 OR status = ANY($3))
                   AND (cardinality($4::text[]) = 0 OR severity = ANY($4))
                   AND ($5::text IS NULL OR rule_id = $5)
                   AND ($6::timestamptz IS NULL OR fired_at >= $6)
                   AND ($7::timestamptz IS NULL OR fired_at < $7)
                 ORDER BY position DESC LIMIT $8"
            );
            let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
            let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
            let statement = client.prepare_cached(&sql).await.map_err(pg_error)?;
            let rows = client
                .query(
                    &statement,
                    &[
                        &tenant,
                        &before,
                        &statuses,
                        &filter.severities,
                        &filter.rule_id,
                        &filter.since,
                        &filter.until,
                        &i64::from(limit),
                    ],
                )
                .await
                .map_err(pg_error)?;
            rows.iter().map(to_alert).collect()
        })
    }

    fn change_alert_status(
        &self,
        tenant: &str,
        id: &str,
        from: AlertStatus,
        change: StatusChange,
        message: Option<OutboundMessage>,
    ) -> BoxFuture<'_, StoreResult<Option<Alert>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // Conditional on the current status: of two racing changes, the second finds none.
            let sql = format!(
                "UPDATE alerts SET status = $4, status_changed_by = $5, status_changed_at = $6, status_note = $7
                 WHERE tenant = $1 AND id = $2 AND status = $3
                 RETURNING {ALERT_COLUMNS}"
            );
            let row = tx
                .query_opt(
                    &sql,
                    &[&tenant, &id, &from.as_str(), &change.status.as_str(), &change.by, &change.at, &change.note],
                )
                .await
                .map_err(pg_error)?;
            let Some(row) = row else { return Ok(None) };
            let alert = to_alert(&row)?;
            if let Some(message) = &message {
                let subscribers = subscribers(&tx, &tenant).await?;
                fan_out(&tx, &tenant, &subscribers, message).await?;
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(Some(alert))
        })
    }

    fn create_webhook(&self, endpoint: WebhookEndpoint) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let client = self.client().await?;
            let inserted = client
                .execute(
                    "INSERT INTO webhooks (id, tenant, url, events, secret, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                    &[
                        &endpoint.id,
                        &endpoint.tenant,
                        &endpoint.url,
                        &endpoint.events,
                        &endpoint.secret,
                        &endpoint.created_at,
                    ],
                )
                .await
                .map_err(pg_error)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("webhook {:?}", endpoint.id)));
            }
            Ok(())
        })
    }

    fn webhooks(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<WebhookEndpoint>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = $1 ORDER BY no");
            let rows = client.query(&sql, &[&tenant]).await.map_err(pg_error)?;
            Ok(rows.iter().map(to_webhook).collect())
        })
    }

    fn webhook(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<WebhookEndpoint>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = $1 AND id = $2");
            let statement = client.prepare_cached(&sql).await.map_err(pg_error)?;
            let row = client.query_opt(&statement, &[&tenant, &id]).await.map_err(pg_error)?;
            Ok(row.as_ref().map(to_webhook))
        })
    }

    fn delete_webhook(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        // Its deliveries go with it (ON DELETE CASCADE).
        Box::pin(async move {
            self.execute_one("DELETE FROM webhooks WHERE tenant = $1 AND id = $2", &[&tenant, &id]).await
        })
    }

    fn deliveries(
        &self,
        tenant: &str,
        endpoint_id: &str,
        status: Option<DeliveryStatus>,
        before: Option<u64>,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<Delivery>>> {
        let (tenant, endpoint_id) = (tenant.to_string(), endpoint_id.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries
                 WHERE endpoint_id = $1 AND tenant = $2 AND ($3::text IS NULL OR status = $3) AND position < $4
                 ORDER BY position DESC LIMIT $5"
            );
            let status = status.map(DeliveryStatus::as_str);
            let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
            let rows = client
                .query(&sql, &[&endpoint_id, &tenant, &status, &before, &i64::from(limit)])
                .await
                .map_err(pg_error)?;
            rows.iter().map(to_delivery).collect()
        })
    }

    fn delivery(
        &self,
        tenant: &str,
        endpoint_id: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<Delivery>>> {
        let (tenant, endpoint_id, message_id) = (tenant.to_string(), endpoint_id.to_string(), message_id.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE tenant = $1 AND endpoint_id = $2 AND message_id = $3"
            );
            let row = client.query_opt(&sql, &[&tenant, &endpoint_id, &message_id]).await.map_err(pg_error)?;
            row.as_ref().map(to_delivery).transpose()
        })
    }

    fn due_deliveries(&self, now: Timestamp, limit: u32) -> BoxFuture<'_, StoreResult<Vec<Delivery>>> {
        Box::pin(async move {
            let claimant = &self.inner.claimant;
            let client = self.client().await?;
            // Due by the caller's clock (as `next_attempt_at` was computed); leases by the
            // database's, the one clock all nodes share. Rows another node is claiming right
            // now are skipped, not waited for.
            let sql = format!(
                "WITH due AS MATERIALIZED (
                     SELECT position FROM deliveries
                     WHERE status = 'pending' AND next_attempt_at <= $1
                       AND (claimed_until IS NULL OR claimed_until <= now() OR claimed_by = $2)
                     ORDER BY next_attempt_at, position LIMIT $3
                     FOR UPDATE SKIP LOCKED
                 )
                 UPDATE deliveries SET claimed_by = $2, claimed_until = now() + make_interval(secs => $4)
                 WHERE position IN (SELECT position FROM due)
                 RETURNING {DELIVERY_COLUMNS}"
            );
            let statement = client.prepare_cached(&sql).await.map_err(pg_error)?;
            let lease = CLAIM_LEASE.as_secs_f64();
            let rows =
                client.query(&statement, &[&now, &claimant, &i64::from(limit), &lease]).await.map_err(pg_error)?;
            let mut due = rows.iter().map(to_delivery).collect::<StoreResult<Vec<_>>>()?;
            earliest_first(&mut due);
            Ok(due)
        })
    }

    fn next_delivery_due(&self) -> BoxFuture<'_, StoreResult<Option<Timestamp>>> {
        Box::pin(async move {
            let claimant = &self.inner.claimant;
            let client = self.client().await?;
            // A delivery another node has claimed is due for this one when the lease ends.
            let statement = client
                .prepare_cached(
                    "SELECT min(CASE WHEN claimed_until > now() AND claimed_by <> $1
                                     THEN greatest(next_attempt_at, claimed_until)
                                     ELSE next_attempt_at END)
                     FROM deliveries WHERE status = 'pending'",
                )
                .await
                .map_err(pg_error)?;
            let row = client.query_one(&statement, &[&claimant]).await.map_err(pg_error)?;
            Ok(row.get(0))
        })
    }

    fn record_delivery_attempts(&self, attempts: Vec<RecordedAttempt>) -> BoxFuture<'_, StoreResult<Vec<bool>>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // Not worth a flush of its own: a lost attempt is a webhook sent again, same id.
            tx.batch_execute("SET LOCAL synchronous_commit = off").await.map_err(pg_error)?;
            let statement = tx
                .prepare_cached(
                    "UPDATE deliveries SET status = $4, attempts = attempts + 1, round_attempts = round_attempts + 1,
                         next_attempt_at = $5, last_attempt_at = $6, last_status = $7, last_error = $8,
                         delivered_at = coalesce($9, delivered_at), claimed_by = NULL, claimed_until = NULL
                     WHERE tenant = $1 AND endpoint_id = $2 AND message_id = $3 AND status = 'pending'",
                )
                .await
                .map_err(pg_error)?;
            let mut recorded = Vec::with_capacity(attempts.len());
            for RecordedAttempt { tenant, endpoint_id, message_id, attempt } in attempts {
                let status = attempt.status_after();
                let next = attempt.next_attempt_at();
                let delivered = (status == DeliveryStatus::Delivered).then_some(attempt.at);
                let error = attempt.stored_error();
                let last_status = attempt.status.map(i32::from);
                let changed = tx
                    .execute(
                        &statement,
                        &[
                            &tenant,
                            &endpoint_id,
                            &message_id,
                            &status.as_str(),
                            &next,
                            &attempt.at,
                            &last_status,
                            &error,
                            &delivered,
                        ],
                    )
                    .await
                    .map_err(pg_error)?;
                recorded.push(changed == 1);
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(recorded)
        })
    }

    fn rewrite_alert(
        &self,
        tenant: &str,
        id: &str,
        group_key: serde_json::Value,
        summary: String,
        status_note: Option<String>,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            self.execute_one(
                "UPDATE alerts SET group_key = $3, summary = $4, status_note = $5 WHERE tenant = $1 AND id = $2",
                &[&tenant, &id, &group_key, &summary, &status_note],
            )
            .await
        })
    }

    fn rewrite_delivery(
        &self,
        tenant: &str,
        endpoint_id: &str,
        message_id: &str,
        payload: String,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, endpoint_id, message_id) = (tenant.to_string(), endpoint_id.to_string(), message_id.to_string());
        Box::pin(async move {
            self.execute_one(
                "UPDATE deliveries SET payload = $4 WHERE tenant = $1 AND endpoint_id = $2 AND message_id = $3",
                &[&tenant, &endpoint_id, &message_id, &payload],
            )
            .await
        })
    }

    fn redeliver(
        &self,
        tenant: &str,
        endpoint_id: &str,
        message_id: &str,
        at: Timestamp,
    ) -> BoxFuture<'_, StoreResult<Option<Delivery>>> {
        let (tenant, endpoint_id, message_id) = (tenant.to_string(), endpoint_id.to_string(), message_id.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            // A claim is left as it is: delivered and dead ones hold none, and a pending one
            // being sent stays with the node sending it.
            let sql = format!(
                "UPDATE deliveries SET status = 'pending', round_attempts = 0, round_started_at = $4,
                     next_attempt_at = $4
                 WHERE tenant = $1 AND endpoint_id = $2 AND message_id = $3
                 RETURNING {DELIVERY_COLUMNS}"
            );
            let row = client.query_opt(&sql, &[&tenant, &endpoint_id, &message_id, &at]).await.map_err(pg_error)?;
            row.as_ref().map(to_delivery).transpose()
        })
    }
}
