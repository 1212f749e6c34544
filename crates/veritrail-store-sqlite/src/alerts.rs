//! [`AlertStore`] on SQLite: a third file, `alerts.sqlite`, beside the ledger and the index.
//!
//! Its own file because alerts are neither the ledger (they change: people acknowledge them,
//! deliveries are retried) nor derived (a reindex must not touch them), and so that its writes
//! never queue behind the ledger writer. Volumes are small (rules, alerts, deliveries), so one
//! connection behind a mutex serves reads and writes, always off the async runtime.
//! `synchronous=FULL`: rules, alerts, status changes and new deliveries are durable once a call
//! returns; delivery attempts are committed without waiting for the disk (see `run_with`).

use std::path::Path;

use jiff::Timestamp;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};
use veritrail_store::{
    Alert, AlertFilter, AlertStatus, AlertStore, BoxFuture, Delivery, DeliveryStatus, NewAlert, OutboundMessage,
    RecordedAttempt, StatusChange, StoreError, StoreResult, StoredRule, WebhookEndpoint, event_type_matches,
};

use crate::side::{SideDb, collect};
use crate::{CachedSql, SqliteStore, from_micros, sql_error, to_micros};

/// File name of the monitoring database inside the data directory.
pub const ALERTS_FILE: &str = "alerts.sqlite";

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS engine_cursors (
    tenant       TEXT PRIMARY KEY,
    next_seq     INTEGER NOT NULL,
    installed_at INTEGER NOT NULL
) STRICT;
-- Current version of each rule ever created; deleted ones keep their row (ids are not reused).
CREATE TABLE IF NOT EXISTS rules (
    no         INTEGER PRIMARY KEY,
    tenant     TEXT NOT NULL,
    id         TEXT NOT NULL,
    version    INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER,
    UNIQUE (tenant, id)
) STRICT;
-- How many times each tenant's rules changed, bumped in the transaction of every change: what
-- the rule engine compares, every second, with the count its rules were loaded at.
CREATE TABLE IF NOT EXISTS rule_changes (
    tenant  TEXT PRIMARY KEY,
    changes INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
-- Every version ever stored, for alerts that name an older one.
CREATE TABLE IF NOT EXISTS rule_versions (
    tenant     TEXT NOT NULL,
    id         TEXT NOT NULL,
    version    INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    saved_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant, id, version)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
    position          INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    tenant            TEXT NOT NULL,
    rule_id           TEXT NOT NULL,
    rule_version      INTEGER NOT NULL,
    severity          TEXT NOT NULL,
    group_key         TEXT NOT NULL,
    event_ids         TEXT NOT NULL,
    event_count       INTEGER NOT NULL,
    trigger_seq       INTEGER,
    started_at        INTEGER NOT NULL,
    fired_at          INTEGER NOT NULL,
    summary           TEXT NOT NULL,
    dedup_key         TEXT NOT NULL,
    status            TEXT NOT NULL,
    status_changed_by TEXT,
    status_changed_at INTEGER,
    status_note       TEXT,
    UNIQUE (tenant, dedup_key)
);
CREATE INDEX IF NOT EXISTS alerts_tenant ON alerts(tenant, position);
CREATE TABLE IF NOT EXISTS webhooks (
    no         INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    tenant     TEXT NOT NULL,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS webhooks_tenant ON webhooks(tenant, no);
CREATE TABLE IF NOT EXISTS deliveries (
    position         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant           TEXT NOT NULL,
    endpoint_id      TEXT NOT NULL,
    message_id       TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    alert_id         TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    round_attempts   INTEGER NOT NULL,
    round_started_at INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    next_attempt_at  INTEGER,
    last_attempt_at  INTEGER,
    last_status      INTEGER,
    last_error       TEXT,
    delivered_at     INTEGER,
    UNIQUE (endpoint_id, message_id)
);
CREATE INDEX IF NOT EXISTS deliveries_endpoint ON deliveries(endpoint_id, position);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(next_attempt_at) WHERE status = 'pending';
";

/// The open `alerts.sqlite`: the [`AlertStore`] of the embedded backend. Cheap to clone; the
/// clones share one connection. [`SqliteStore::alert_store`] gives the one opened with the
/// store; [`SqliteAlertStore::open`] opens one on its own (beside another `Store` backend).
#[derive(Clone)]
pub struct SqliteAlertStore {
    db: SideDb,
}

impl std::fmt::Debug for SqliteAlertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAlertStore").finish_non_exhaustive()
    }
}

impl SqliteAlertStore {
    /// Opens (creating if needed) `alerts.sqlite` in `dir`.
    pub fn open(dir: &Path) -> StoreResult<SqliteAlertStore> {
        Ok(SqliteAlertStore { db: SideDb::open(dir, ALERTS_FILE, SCHEMA, SCHEMA_VERSION, false)? })
    }
}

/// Inserts an alert's row, followed by `conflict` (a conflict clause or nothing): by
/// `record_alerts` (the table numbers it) and by `migrate-store`'s import (`keep_position`).
/// Returns the rows inserted.
pub(crate) fn insert_alert(
    conn: &Connection,
    alert: &Alert,
    keep_position: bool,
    conflict: &str,
) -> StoreResult<usize> {
    const COLUMNS: &str = "id, tenant, rule_id, rule_version, severity, group_key, event_ids, event_count,
         trigger_seq, started_at, fired_at, summary, dedup_key, status, status_changed_by, status_changed_at,
         status_note";
    let position = keep_position.then_some(alert.position as i64);
    let (group_key, event_ids) = (json_text(&alert.group_key)?, json_text(&alert.event_ids)?);
    let (event_count, trigger_seq) = (alert.event_count as i64, alert.trigger_seq.map(|seq| seq as i64));
    let (started_at, fired_at) = (to_micros(alert.started_at), to_micros(alert.fired_at));
    let (status, status_changed_at) = (alert.status.as_str(), alert.status_changed_at.map(to_micros));
    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(18);
    if let Some(position) = &position {
        values.push(position);
    }
    values.extend([
        &alert.id as &dyn rusqlite::ToSql,
        &alert.tenant,
        &alert.rule_id,
        &alert.rule_version,
        &alert.severity,
        &group_key,
        &event_ids,
        &event_count,
        &trigger_seq,
        &started_at,
        &fired_at,
        &alert.summary,
        &alert.dedup_key,
        &status,
        &alert.status_changed_by,
        &status_changed_at,
        &alert.status_note,
    ]);
    let placeholders: Vec<String> = (1..=values.len()).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "INSERT INTO alerts ({}{COLUMNS}) VALUES ({}) {conflict}",
        if keep_position { "position, " } else { "" },
        placeholders.join(", ")
    );
    conn.execute_cached(&sql, params_from_iter(values)).map_err(sql_error)
}

pub(crate) fn json_text(value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("cannot encode json: {e}")))
}

fn json_value<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored {what} is not valid json: {e}")))
}

fn opt_micros(value: Option<i64>) -> StoreResult<Option<Timestamp>> {
    value.map(from_micros).transpose()
}

fn u64_of(value: i64) -> u64 {
    value.max(0) as u64
}

// ---- rules ----

pub(crate) const RULE_COLUMNS: &str = "id, version, definition, created_at, updated_at";

pub(crate) fn rule_row(row: &Row<'_>) -> rusqlite::Result<(String, i64, String, i64, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

pub(crate) fn to_rule(
    (id, version, definition, created, updated): (String, i64, String, i64, i64),
) -> StoreResult<StoredRule> {
    Ok(StoredRule {
        definition: json_value(&definition, &format!("rule {id}"))?,
        id,
        version: u32::try_from(version).map_err(|_| StoreError::Corrupt(format!("rule version {version}")))?,
        created_at: from_micros(created)?,
        updated_at: from_micros(updated)?,
    })
}

fn insert_rule(tx: &Transaction<'_>, tenant: &str, rule: &StoredRule) -> StoreResult<()> {
    let taken: Option<i64> = tx
        .query_row_cached("SELECT no FROM rules WHERE tenant = ?1 AND id = ?2", params![tenant, rule.id], |row| {
            row.get(0)
        })
        .optional()
        .map_err(sql_error)?;
    if taken.is_some() {
        return Err(StoreError::AlreadyExists(format!("rule {:?}", rule.id)));
    }
    let definition = json_text(&rule.definition)?;
    tx.execute_cached(
        "INSERT INTO rules (tenant, id, version, definition, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![tenant, rule.id, rule.version, definition, to_micros(rule.created_at), to_micros(rule.updated_at)],
    )
    .map_err(sql_error)?;
    insert_rule_version(tx, tenant, rule, &definition)
}

/// Counts a change of the tenant's rules, in the transaction that makes it.
fn count_rule_change(tx: &Transaction<'_>, tenant: &str) -> StoreResult<()> {
    tx.execute_cached(
        "INSERT INTO rule_changes (tenant, changes) VALUES (?1, 1)
         ON CONFLICT (tenant) DO UPDATE SET changes = changes + 1",
        [tenant],
    )
    .map_err(sql_error)?;
    Ok(())
}

fn insert_rule_version(tx: &Transaction<'_>, tenant: &str, rule: &StoredRule, definition: &str) -> StoreResult<()> {
    tx.execute_cached(
        "INSERT OR REPLACE INTO rule_versions (tenant, id, version, definition, created_at, saved_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![tenant, rule.id, rule.version, definition, to_micros(rule.created_at), to_micros(rule.updated_at)],
    )
    .map_err(sql_error)?;
    Ok(())
}

// ---- alerts ----

pub(crate) const ALERT_COLUMNS: &str =
    "position, id, tenant, rule_id, rule_version, severity, group_key, event_ids, event_count,
     trigger_seq, started_at, fired_at, summary, dedup_key, status, status_changed_by, status_changed_at, status_note";

/// An `alerts` row as read, in [`ALERT_COLUMNS`] order.
pub(crate) struct AlertRow {
    position: i64,
    id: String,
    tenant: String,
    rule_id: String,
    rule_version: i64,
    severity: String,
    group_key: String,
    event_ids: String,
    event_count: i64,
    trigger_seq: Option<i64>,
    started_at: i64,
    fired_at: i64,
    summary: String,
    dedup_key: String,
    status: String,
    status_changed_by: Option<String>,
    status_changed_at: Option<i64>,
    status_note: Option<String>,
}

pub(crate) fn alert_row(row: &Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        position: row.get(0)?,
        id: row.get(1)?,
        tenant: row.get(2)?,
        rule_id: row.get(3)?,
        rule_version: row.get(4)?,
        severity: row.get(5)?,
        group_key: row.get(6)?,
        event_ids: row.get(7)?,
        event_count: row.get(8)?,
        trigger_seq: row.get(9)?,
        started_at: row.get(10)?,
        fired_at: row.get(11)?,
        summary: row.get(12)?,
        dedup_key: row.get(13)?,
        status: row.get(14)?,
        status_changed_by: row.get(15)?,
        status_changed_at: row.get(16)?,
        status_note: row.get(17)?,
    })
}

pub(crate) fn to_alert(row: AlertRow) -> StoreResult<Alert> {
    let status =
        AlertStatus::parse(&row.status).ok_or_else(|| StoreError::Corrupt(format!("alert status {:?}", row.status)))?;
    Ok(Alert {
        group_key: json_value(&row.group_key, "alert group key")?,
        event_ids: json_value(&row.event_ids, "alert event ids")?,
        id: row.id,
        tenant: row.tenant,
        position: u64_of(row.position),
        rule_id: row.rule_id,
        rule_version: u32::try_from(row.rule_version).unwrap_or(u32::MAX),
        severity: row.severity,
        event_count: u64_of(row.event_count),
        trigger_seq: row.trigger_seq.map(u64_of),
        started_at: from_micros(row.started_at)?,
        fired_at: from_micros(row.fired_at)?,
        summary: row.summary,
        dedup_key: row.dedup_key,
        status,
        status_changed_by: row.status_changed_by,
        status_changed_at: opt_micros(row.status_changed_at)?,
        status_note: row.status_note,
    })
}

fn read_alert(conn: &Connection, tenant: &str, id: &str) -> StoreResult<Option<Alert>> {
    let row = conn
        .query_row_cached(
            &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE tenant = ?1 AND id = ?2"),
            params![tenant, id],
            alert_row,
        )
        .optional()
        .map_err(sql_error)?;
    row.map(to_alert).transpose()
}

fn set_cursor(tx: &Transaction<'_>, tenant: &str, next_seq: u64, now: Timestamp) -> StoreResult<()> {
    tx.execute_cached(
        "INSERT INTO engine_cursors (tenant, next_seq, installed_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (tenant) DO UPDATE SET next_seq = max(next_seq, excluded.next_seq)",
        params![tenant, next_seq as i64, to_micros(now)],
    )
    .map_err(sql_error)?;
    Ok(())
}

/// A webhook endpoint of the tenant and the event types it subscribed to.
struct Subscriber {
    endpoint_id: String,
    events: Vec<String>,
}

/// The tenant's webhook endpoints, read once per transaction that fans messages out.
fn subscribers(tx: &Transaction<'_>, tenant: &str) -> StoreResult<Vec<Subscriber>> {
    let mut stmt =
        tx.prepare_cached("SELECT id, events FROM webhooks WHERE tenant = ?1 ORDER BY no").map_err(sql_error)?;
    let rows: Vec<(String, String)> = stmt
        .query_map([tenant], |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    rows.into_iter()
        .map(|(endpoint_id, events)| Ok(Subscriber { endpoint_id, events: json_value(&events, "webhook events")? }))
        .collect()
}

/// One pending delivery of `message` per subscriber whose filter accepts its type.
fn fan_out(
    tx: &Transaction<'_>,
    tenant: &str,
    subscribers: &[Subscriber],
    message: &OutboundMessage,
) -> StoreResult<()> {
    for subscriber in subscribers {
        if !subscriber.events.iter().any(|filter| event_type_matches(filter, &message.event_type)) {
            continue;
        }
        let created = to_micros(message.created_at);
        tx.execute_cached(
            "INSERT OR IGNORE INTO deliveries (tenant, endpoint_id, message_id, event_type, alert_id, payload, status,
                 attempts, round_attempts, round_started_at, created_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, 0, ?7, ?7, ?7)",
            params![
                tenant,
                subscriber.endpoint_id,
                message.id,
                message.event_type,
                message.alert_id,
                message.payload,
                created
            ],
        )
        .map_err(sql_error)?;
    }
    Ok(())
}

// ---- webhooks and deliveries ----

pub(crate) fn webhook_row(row: &Row<'_>) -> rusqlite::Result<(String, String, String, String, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
}

pub(crate) fn to_webhook(
    (id, tenant, url, events, secret, created): (String, String, String, String, String, i64),
) -> StoreResult<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        events: json_value(&events, "webhook events")?,
        id,
        tenant,
        url,
        secret,
        created_at: from_micros(created)?,
    })
}

pub(crate) const WEBHOOK_COLUMNS: &str = "id, tenant, url, events, secret, created_at";

pub(crate) const DELIVERY_COLUMNS: &str =
    "tenant, endpoint_id, message_id, position, event_type, alert_id, payload, status,
     attempts, round_attempts, round_started_at, created_at, next_attempt_at, last_attempt_at, last_status,
     last_error, delivered_at";

/// A `deliveries` row as read, in [`DELIVERY_COLUMNS`] order.
pub(crate) struct DeliveryRow {
    tenant: String,
    endpoint_id: String,
    message_id: String,
    position: i64,
    event_type: String,
    alert_id: String,
    payload: String,
    status: String,
    attempts: i64,
    round_attempts: i64,
    round_started_at: i64,
    created_at: i64,
    next_attempt_at: Option<i64>,
    last_attempt_at: Option<i64>,
    last_status: Option<i64>,
    last_error: Option<String>,
    delivered_at: Option<i64>,
}

pub(crate) fn delivery_row(row: &Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        tenant: row.get(0)?,
        endpoint_id: row.get(1)?,
        message_id: row.get(2)?,
        position: row.get(3)?,
        event_type: row.get(4)?,
        alert_id: row.get(5)?,
        payload: row.get(6)?,
        status: row.get(7)?,
        attempts: row.get(8)?,
        round_attempts: row.get(9)?,
        round_started_at: row.get(10)?,
        created_at: row.get(11)?,
        next_attempt_at: row.get(12)?,
        last_attempt_at: row.get(13)?,
        last_status: row.get(14)?,
        last_error: row.get(15)?,
        delivered_at: row.get(16)?,
    })
}

pub(crate) fn to_delivery(row: DeliveryRow) -> StoreResult<Delivery> {
    let status = DeliveryStatus::parse(&row.status)
        .ok_or_else(|| StoreError::Corrupt(format!("delivery status {:?}", row.status)))?;
    let count = |value: i64| u32::try_from(value.max(0)).unwrap_or(u32::MAX);
    Ok(Delivery {
        tenant: row.tenant,
        endpoint_id: row.endpoint_id,
        message_id: row.message_id,
        position: u64_of(row.position),
        event_type: row.event_type,
        alert_id: row.alert_id,
        payload: row.payload,
        status,
        attempts: count(row.attempts),
        round_attempts: count(row.round_attempts),
        round_started_at: from_micros(row.round_started_at)?,
        created_at: from_micros(row.created_at)?,
        next_attempt_at: opt_micros(row.next_attempt_at)?,
        last_attempt_at: opt_micros(row.last_attempt_at)?,
        last_status: row.last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.last_error,
        delivered_at: opt_micros(row.delivered_at)?,
    })
}

fn read_delivery(
    conn: &Connection,
    tenant: &str,
    endpoint_id: &str,
    message_id: &str,
) -> StoreResult<Option<Delivery>> {
    let row = conn
        .query_row_cached(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE tenant = ?1 AND endpoint_id = ?2 AND message_id = ?3"
            ),
            params![tenant, endpoint_id, message_id],
            delivery_row,
        )
        .optional()
        .map_err(sql_error)?;
    row.map(to_delivery).transpose()
}

impl SqliteStore {
    /// The store's monitoring half (`alerts.sqlite` in the same data directory).
    pub fn alert_store(&self) -> SqliteAlertStore {
        self.inner.alerts.clone()
    }
}

impl AlertStore for SqliteAlertStore {
    fn install_rules(&self, tenant: &str, rules: Vec<StoredRule>, next_seq: u64) -> BoxFuture<'_, StoreResult<bool>> {
        let tenant = tenant.to_string();
        Box::pin(self.db.run(true, move |tx| {
            let installed: Option<i64> = tx
                .query_row_cached("SELECT 1 FROM engine_cursors WHERE tenant = ?1", [&tenant], |row| row.get(0))
                .optional()
                .map_err(sql_error)?;
            if installed.is_some() {
                return Ok(false);
            }
            for rule in &rules {
                insert_rule(tx, &tenant, rule)?;
            }
            count_rule_change(tx, &tenant)?;
            set_cursor(tx, &tenant, next_seq, Timestamp::now())?;
            Ok(true)
        }))
    }

    fn rules(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<StoredRule>>> {
        let tenant = tenant.to_string();
        Box::pin(self.db.run(true, move |tx| {
            let sql = format!("SELECT {RULE_COLUMNS} FROM rules WHERE tenant = ?1 AND deleted_at IS NULL ORDER BY no");
            collect(tx, &sql, [&tenant], rule_row, to_rule)
        }))
    }

    fn rule(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<StoredRule>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(self.db.run(true, move |tx| {
            let sql = format!("SELECT {RULE_COLUMNS} FROM rules WHERE tenant = ?1 AND id = ?2 AND deleted_at IS NULL");
            tx.query_row(&sql, params![tenant, id], rule_row).optional().map_err(sql_error)?.map(to_rule).transpose()
        }))
    }

    fn rule_version(&self, tenant: &str, id: &str, version: u32) -> BoxFuture<'_, StoreResult<Option<StoredRule>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(self.db.run(true, move |tx| {
            tx.query_row_cached(
                "SELECT id, version, definition, created_at, saved_at FROM rule_versions
                 WHERE tenant = ?1 AND id = ?2 AND version = ?3",
                params![tenant, id, version],
                rule_row,
            )
            .optional()
            .map_err(sql_error)?
            .map(to_rule)
            .transpose()
        }))
    }

    fn create_rule(&self, tenant: &str, rule: StoredRule) -> BoxFuture<'_, StoreResult<()>> {
        let tenant = tenant.to_string();
        Box::pin(self.db.run(true, move |tx| {
            insert_rule(tx, &tenant, &rule)?;
            count_rule_change(tx, &tenant)
        }))
    }

    fn update_rule(&self, tenant: &str, rule: StoredRule, expected_version: u32) -> BoxFuture<'_, StoreResult<bool>> {
        let tenant = tenant.to_string();
        Box::pin(self.db.run(true, move |tx| {
            let definition = json_text(&rule.definition)?;
            let changed = tx
                .execute_cached(
                    "UPDATE rules SET version = ?3, definition = ?4, updated_at = ?5
                     WHERE tenant = ?1 AND id = ?2 AND version = ?6 AND deleted_at IS NULL",
                    params![tenant, rule.id, rule.version, definition, to_micros(rule.updated_at), expected_version],
                )
                .map_err(sql_error)?;
            if changed == 0 {
                return Ok(false);
            }
            let created: i64 = tx
                .query_row_cached(
                    "SELECT created_at FROM rules WHERE tenant = ?1 AND id = ?2",
                    params![tenant, rule.id],
                    |row| row.get(0),
                )
                .map_err(sql_error)?;
            let stored = StoredRule { created_at: from_micros(created)?, ..rule };
            insert_rule_version(tx, &tenant, &stored, &definition)?;
            count_rule_change(tx, &tenant)?;
            Ok(true)
        }))
    }

    fn delete_rule(&self, tenant: &str, id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(self.db.run(true, move |tx| {
            let changed = tx
                .execute_cached(
                    "UPDATE rules SET deleted_at = ?3 WHERE tenant = ?1 AND id = ?2 AND deleted_at IS NULL",
                    params![tenant, id, to_micros(at)],
                )
                .map_err(sql_error)?;
            if changed == 1 {
                count_rule_change(tx, &tenant)?;
            }
            Ok(changed == 1)
        }))
    }

    fn rule_change_counts(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>> {
        Box::pin(self.db.run(true, move |tx| {
            collect(
                tx,
                "SELECT tenant, changes FROM rule_changes",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
                |(tenant, changes): (String, i64)| Ok((tenant, u64_of(changes))),
            )
        }))
    }

    fn engine_cursor(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Option<u64>>> {
        let tenant = tenant.to_string();
        Box::pin(self.db.run(true, move |tx| {
            let next: Option<i64> = tx
                .query_row_cached("SELECT next_seq FROM engine_cursors WHERE tenant = ?1", [&tenant], |row| row.get(0))
                .optional()
                .map_err(sql_error)?;
            Ok(next.map(u64_of))
        }))
    }

    fn set_engine_cursor(&self, tenant: &str, next_seq: u64, durable: bool) -> BoxFuture<'_, StoreResult<()>> {
        let tenant = tenant.to_string();
        Box::pin(self.db.run(durable, move |tx| set_cursor(tx, &tenant, next_seq, Timestamp::now())))
    }

    fn record_alerts(
        &self,
        tenant: &str,
        alerts: Vec<NewAlert>,
        next_seq: u64,
    ) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        let tenant = tenant.to_string();
        Box::pin(self.db.run(true, move |tx| {
            let mut stored = Vec::new();
            let subscribers = if alerts.is_empty() { Vec::new() } else { subscribers(tx, &tenant)? };
            for NewAlert { alert, messages } in alerts {
                debug_assert_eq!(alert.tenant, tenant);
                let inserted = insert_alert(tx, &alert, false, "ON CONFLICT (tenant, dedup_key) DO NOTHING")?;
                if inserted == 0 {
                    continue;
                }
                for message in &messages {
                    fan_out(tx, &tenant, &subscribers, message)?;
                }
                stored.push(alert.id);
            }
            set_cursor(tx, &tenant, next_seq, Timestamp::now())?;
            Ok(stored)
        }))
    }

    fn alert(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<Alert>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(self.db.run(true, move |tx| read_alert(tx, &tenant, &id)))
    }

    fn alerts<'a>(
        &'a self,
        tenant: &'a str,
        filter: &'a AlertFilter,
        before: Option<u64>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<Alert>>> {
        let tenant = tenant.to_string();
        let filter = filter.clone();
        Box::pin(self.db.run(true, move |tx| {
            let mut sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE tenant = ?");
            let mut args = vec![SqlValue::Text(tenant)];
            if let Some(before) = before {
                sql.push_str(" AND position < ?");
                args.push(SqlValue::Integer(i64::try_from(before).unwrap_or(i64::MAX)));
            }
            if !filter.statuses.is_empty() {
                sql.push_str(&format!(" AND status IN ({})", vec!["?"; filter.statuses.len()].join(", ")));
                args.extend(filter.statuses.iter().map(|s| SqlValue::Text(s.as_str().into())));
            }
            if !filter.severities.is_empty() {
                sql.push_str(&format!(" AND severity IN ({})", vec!["?"; filter.severities.len()].join(", ")));
                args.extend(filter.severities.iter().map(|s| SqlValue::Text(s.clone())));
            }
            if let Some(rule) = filter.rule_id {
                sql.push_str(" AND rule_id = ?");
                args.push(SqlValue::Text(rule));
            }
            if let Some(since) = filter.since {
                sql.push_str(" AND fired_at >= ?");
                args.push(SqlValue::Integer(to_micros(since)));
            }
            if let Some(until) = filter.until {
                sql.push_str(" AND fired_at < ?");
                args.push(SqlValue::Integer(to_micros(until)));
            }
            sql.push_str(" ORDER BY position DESC LIMIT ?");
            args.push(SqlValue::Integer(i64::from(limit)));
            collect(tx, &sql, params_from_iter(args), alert_row, to_alert)
        }))
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
        Box::pin(self.db.run(true, move |tx| {
            let changed = tx
                .execute_cached(
                    "UPDATE alerts SET status = ?4, status_changed_by = ?5, status_changed_at = ?6, status_note = ?7
                     WHERE tenant = ?1 AND id = ?2 AND status = ?3",
                    params![
                        tenant,
                        id,
                        from.as_str(),
                        change.status.as_str(),
                        change.by,
                        to_micros(change.at),
                        change.note
                    ],
                )
                .map_err(sql_error)?;
            if changed == 0 {
                return Ok(None);
            }
            if let Some(message) = &message {
                fan_out(tx, &tenant, &subscribers(tx, &tenant)?, message)?;
            }
            read_alert(tx, &tenant, &id)
        }))
    }

    fn create_webhook(&self, endpoint: WebhookEndpoint) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.db.run(true, move |tx| {
            let taken: Option<i64> = tx
                .query_row_cached("SELECT no FROM webhooks WHERE id = ?1", [&endpoint.id], |row| row.get(0))
                .optional()
                .map_err(sql_error)?;
            if taken.is_some() {
                return Err(StoreError::AlreadyExists(format!("webhook {:?}", endpoint.id)));
            }
            tx.execute_cached(
                "INSERT INTO webhooks (id, tenant, url, events, secret, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    endpoint.id,
                    endpoint.tenant,
                    endpoint.url,
                    json_text(&endpoint.events)?,
                    endpoint.secret,
                    to_micros(endpoint.created_at)
                ],
            )
            .map_err(sql_error)?;
            Ok(())
        }))
    }

    fn webhooks(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<WebhookEndpoint>>> {
        let tenant = tenant.to_string();
        Box::pin(self.db.run(true, move |tx| {
            let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ?1 ORDER BY no");
            collect(tx, &sql, [&tenant], webhook_row, to_webhook)
        }))
    }

    fn webhook(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<WebhookEndpoint>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(self.db.run(true, move |tx| {
            let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ?1 AND id = ?2");
            tx.query_row_cached(&sql, params![tenant, id], webhook_row)
                .optional()
                .map_err(sql_error)?
                .map(to_webhook)
                .transpose()
        }))
    }

    fn delete_webhook(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(self.db.run(true, move |tx| {
            let deleted = tx
                .execute_cached("DELETE FROM webhooks WHERE tenant = ?1 AND id = ?2", params![tenant, id])
                .map_err(sql_error)?;
            if deleted == 0 {
                return Ok(false);
            }
            tx.execute_cached("DELETE FROM deliveries WHERE tenant = ?1 AND endpoint_id = ?2", params![tenant, id])
                .map_err(sql_error)?;
            Ok(true)
        }))
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
        Box::pin(self.db.run(true, move |tx| {
            let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE endpoint_id = ? AND tenant = ?");
            let mut args = vec![SqlValue::Text(endpoint_id), SqlValue::Text(tenant)];
            if let Some(status) = status {
                sql.push_str(" AND status = ?");
                args.push(SqlValue::Text(status.as_str().into()));
            }
            if let Some(before) = before {
                sql.push_str(" AND position < ?");
                args.push(SqlValue::Integer(i64::try_from(before).unwrap_or(i64::MAX)));
            }
            sql.push_str(" ORDER BY position DESC LIMIT ?");
            args.push(SqlValue::Integer(i64::from(limit)));
            collect(tx, &sql, params_from_iter(args), delivery_row, to_delivery)
        }))
    }

    fn delivery(
        &self,
        tenant: &str,
        endpoint_id: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<Delivery>>> {
        let (tenant, endpoint_id, message_id) = (tenant.to_string(), endpoint_id.to_string(), message_id.to_string());
        Box::pin(self.db.run(true, move |tx| read_delivery(tx, &tenant, &endpoint_id, &message_id)))
    }

    fn due_deliveries(&self, now: Timestamp, limit: u32) -> BoxFuture<'_, StoreResult<Vec<Delivery>>> {
        Box::pin(self.db.run(true, move |tx| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries
                 WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, position LIMIT ?"
            );
            let args = vec![SqlValue::Integer(to_micros(now)), SqlValue::Integer(i64::from(limit))];
            collect(tx, &sql, params_from_iter(args), delivery_row, to_delivery)
        }))
    }

    fn next_delivery_due(&self) -> BoxFuture<'_, StoreResult<Option<Timestamp>>> {
        Box::pin(self.db.run(true, |tx| {
            let next: Option<i64> = tx
                .query_row_cached("SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending'", [], |row| {
                    row.get(0)
                })
                .map_err(sql_error)?;
            opt_micros(next)
        }))
    }

    fn record_delivery_attempts(&self, attempts: Vec<RecordedAttempt>) -> BoxFuture<'_, StoreResult<Vec<bool>>> {
        // Not durable: a lost attempt means a webhook sent again under the same `webhook-id`,
        // which delivery promises anyway (at least once), and an fsync per attempt limited
        // delivery throughput under load.
        Box::pin(self.db.run(false, move |tx| {
            let mut recorded = Vec::with_capacity(attempts.len());
            for RecordedAttempt { tenant, endpoint_id, message_id, attempt } in attempts {
                let at = to_micros(attempt.at);
                let status = attempt.status_after();
                let next = attempt.next_attempt_at().map(to_micros);
                let delivered = (status == DeliveryStatus::Delivered).then_some(at);
                let error = attempt.stored_error();
                let changed = tx
                    .execute_cached(
                        "UPDATE deliveries SET status = ?4, attempts = attempts + 1, round_attempts = round_attempts + 1,
                             next_attempt_at = ?5, last_attempt_at = ?6, last_status = ?7, last_error = ?8,
                             delivered_at = coalesce(?9, delivered_at)
                         WHERE tenant = ?1 AND endpoint_id = ?2 AND message_id = ?3 AND status = 'pending'",
                        params![
                            tenant,
                            endpoint_id,
                            message_id,
                            status.as_str(),
                            next,
                            at,
                            attempt.status,
                            error,
                            delivered
                        ],
                    )
                    .map_err(sql_error)?;
                recorded.push(changed == 1);
            }
            Ok(recorded)
        }))
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
        Box::pin(self.db.run_overwriting(move |tx| {
            let changed = tx
                .execute_cached(
                    "UPDATE alerts SET group_key = ?3, summary = ?4, status_note = ?5 WHERE tenant = ?1 AND id = ?2",
                    params![tenant, id, json_text(&group_key)?, summary, status_note],
                )
                .map_err(sql_error)?;
            Ok(changed == 1)
        }))
    }

    fn rewrite_delivery(
        &self,
        tenant: &str,
        endpoint_id: &str,
        message_id: &str,
        payload: String,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, endpoint_id, message_id) = (tenant.to_string(), endpoint_id.to_string(), message_id.to_string());
        Box::pin(self.db.run_overwriting(move |tx| {
            let changed = tx
                .execute_cached(
                    "UPDATE deliveries SET payload = ?4 WHERE tenant = ?1 AND endpoint_id = ?2 AND message_id = ?3",
                    params![tenant, endpoint_id, message_id, payload],
                )
                .map_err(sql_error)?;
            Ok(changed == 1)
        }))
    }

    fn redeliver(
        &self,
        tenant: &str,
        endpoint_id: &str,
        message_id: &str,
        at: Timestamp,
    ) -> BoxFuture<'_, StoreResult<Option<Delivery>>> {
        let (tenant, endpoint_id, message_id) = (tenant.to_string(), endpoint_id.to_string(), message_id.to_string());
        Box::pin(self.db.run(true, move |tx| {
            let changed = tx
                .execute_cached(
                    "UPDATE deliveries SET status = 'pending', round_attempts = 0, round_started_at = ?4,
                         next_attempt_at = ?4
                     WHERE tenant = ?1 AND endpoint_id = ?2 AND message_id = ?3",
                    params![tenant, endpoint_id, message_id, to_micros(at)],
                )
                .map_err(sql_error)?;
            if changed == 0 {
                return Ok(None);
            }
            read_delivery(tx, &tenant, &endpoint_id, &message_id)
        }))
    }
}
