//! `veritrail migrate-store` on PostgreSQL: [`export`] reads a database into
//! [`veritrail_store::dump`] batches, [`import`] writes them into an empty one.
//!
//! Every server on the database must be stopped: both refuse while other `veritrail`
//! connections are open. The export reads in one `REPEATABLE READ` transaction (one snapshot),
//! through portals, [`BATCH_ROWS`] rows at a time. The import writes everything in **one**
//! transaction — a failure leaves the database as empty as it found it — and derives what the
//! append path would have written with the records: the query columns and resources
//! ([`veritrail_store::index_row::IndexRow`], as the committer), the Merkle nodes at levels 4, 8, … and each tenant's
//! `ledger_heads` row (frontier, root, last `received_at`), from leaf hashes it checks against
//! the sealed bytes.

use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Transaction};
use veritrail_ledger::hash::leaf_hash;
use veritrail_ledger::tree::Frontier;
use veritrail_store::dump::{
    BATCH_ROWS, Batch, CheckpointTimestampRow, DataKeyRow, EngineCursorRow, ImportCounts, PersonalRow, RecordRow,
    RuleChangesRow, RuleRow, RuleVersionRow, Scope, SettingRow, TenantRow,
};
use veritrail_store::{StoreError, StoreResult, Tenant};

use crate::tree::to_hash;
use crate::writer::{RowInserts, Rows};
use crate::{access, alerts, pg_error, with_causes};

/// `application_name` of this module's connections (servers use `veritrail`).
const APPLICATION_NAME: &str = "veritrail-migrate-store";

/// Tables an import refuses to write into when they hold rows.
const STORE_TABLES: [&str; 16] = [
    "settings",
    "tenants",
    "api_keys",
    "records",
    "subject_keys",
    "checkpoints",
    "custom_roles",
    "users",
    "sessions",
    "identity_providers",
    "engine_cursors",
    "rules",
    "rule_changes",
    "alerts",
    "webhooks",
    "deliveries",
];

/// Connects one client (no pool: an export or import is one long transaction).
async fn connect(url: &str) -> StoreResult<(Client, tokio::task::JoinHandle<()>)> {
    let (mut config, tls) = crate::parse_config(url)?;
    config.application_name(APPLICATION_NAME);
    let (client, connection) = config
        .connect(tls)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to the database: {}", with_causes(&e))))?;
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "migrate-store connection failed");
        }
    });
    Ok((client, driver))
}

/// Refuses while `veritrail` servers are connected to the database.
async fn refuse_running_servers(client: &Client) -> StoreResult<()> {
    // A connection closed a moment ago (a server just stopped, or another command's) can stay
    // in `pg_stat_activity` until its backend has exited: look again for a while before
    // refusing. A running server's connections stay.
    let mut servers: i64 = 0;
    for attempt in 0..=SERVER_CHECK_RETRIES {
        if attempt > 0 {
            tokio::time::sleep(SERVER_CHECK_PAUSE).await;
        }
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'veritrail'",
                &[],
            )
            .await
            .map_err(pg_error)?;
        servers = row.get(0);
        if servers == 0 {
            return Ok(());
        }
    }
    Err(StoreError::Conflict(format!(
        "{servers} connections of running veritrail servers are open on the database: stop every server first"
    )))
}

/// How often, and how far apart, [`refuse_running_servers`] looks again before refusing.
const SERVER_CHECK_RETRIES: u32 = 10;
const SERVER_CHECK_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// What the database already holds of a store (`None`: nothing, an import may write it).
pub async fn contents(url: &str) -> StoreResult<Option<String>> {
    let (client, driver) = connect(url).await?;
    let result = contents_on(&client).await;
    drop(client);
    let _ = driver.await;
    result
}

async fn contents_on(client: &Client) -> StoreResult<Option<String>> {
    let migrated: bool =
        client.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[]).await.map_err(pg_error)?.get(0);
    if !migrated {
        return Ok(None);
    }
    let mut found = Vec::new();
    for table in STORE_TABLES {
        let exists: bool =
            client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).await.map_err(pg_error)?.get(0);
        if !exists {
            continue;
        }
        let rows: i64 = client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.map_err(pg_error)?.get(0);
        if rows > 0 {
            found.push(format!("{table}: {rows} rows"));
        }
    }
    Ok((!found.is_empty()).then(|| format!("the database holds a store ({})", found.join(", "))))
}

/// Reads the database at `url` (every server stopped) and sends its content to `out`, in
/// [`Batch`]'s order. Fails with [`StoreError::Unavailable`] when the receiver goes away.
pub async fn export(url: &str, scope: Scope, out: &mpsc::Sender<Batch>) -> StoreResult<()> {
    let (mut client, driver) = connect(url).await?;
    let result = export_on(&mut client, scope, out).await;
    drop(client);
    let _ = driver.await;
    result
}

async fn export_on(client: &mut Client, scope: Scope, out: &mpsc::Sender<Batch>) -> StoreResult<()> {
    refuse_running_servers(client).await?;
    let migrated: bool =
        client.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[]).await.map_err(pg_error)?.get(0);
    let version: Option<i32> = match migrated {
        true => client.query_one("SELECT max(version) FROM schema_migrations", &[]).await.map_err(pg_error)?.get(0),
        false => None,
    };
    if version != Some(crate::latest_version()) {
        return Err(StoreError::Conflict(format!(
            "the database schema is at version {}, not {}: run `veritrail migrate` on it first",
            version.map_or("none".to_string(), |v| v.to_string()),
            crate::latest_version()
        )));
    }
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_error)?;
    let sink = Sink { tx: &tx, out };
    sink.stream("SELECT name, value FROM settings ORDER BY name", &[], Batch::Settings, |row| {
        Ok(SettingRow { name: row.get(0), value: row.get(1) })
    })
    .await?;
    let rows = tx
        .query(
            "SELECT t.no, t.id, t.name, t.created_at, k.blind_wrapped FROM tenants t
             LEFT JOIN tenant_keys k ON k.tenant_no = t.no ORDER BY t.no",
            &[],
        )
        .await
        .map_err(pg_error)?;
    let tenants: Vec<(i64, TenantRow)> = rows
        .iter()
        .map(|row| {
            let tenant = Tenant { id: row.get(1), name: row.get(2), created_at: row.get(3) };
            (row.get(0), TenantRow { tenant, blind_wrapped: row.get(4) })
        })
        .collect();
    sink.send(Batch::Tenants(tenants.iter().map(|(_, row)| row.clone()).collect())).await?;
    if scope == Scope::Everything {
        let sql = format!("{} ORDER BY k.tenant_no, k.created_at, k.id", crate::API_KEY_COLUMNS);
        sink.stream(&sql, &[], Batch::ApiKeys, crate::to_api_key).await?;
        sink.stream(
            "SELECT t.id, k.key_id, k.subject, k.wrapped, k.created_at FROM subject_keys k
             JOIN tenants t ON t.no = k.tenant_no ORDER BY k.key_id",
            &[],
            Batch::DataKeys,
            |row| {
                let key_id: i64 = row.get(1);
                Ok(DataKeyRow {
                    tenant: row.get(0),
                    key_id: key_id as u64,
                    subject: row.get(2),
                    wrapped: row.get(3),
                    created_at: row.get(4),
                })
            },
        )
        .await?;
    }
    let records_sql = match scope {
        Scope::Everything => {
            "SELECT r.seq, r.event_id, r.leaf_hash, r.sealed, p.data, p.email_bidx, p.ip_bidx FROM records r
             LEFT JOIN personal p ON p.tenant_no = r.tenant_no AND p.seq = r.seq
             WHERE r.tenant_no = $1 ORDER BY r.seq"
        }
        Scope::Ledger => {
            "SELECT seq, event_id, leaf_hash, sealed, NULL::bytea, NULL::bytea, NULL::bytea FROM records
             WHERE tenant_no = $1 ORDER BY seq"
        }
    };
    for (no, row) in &tenants {
        let tenant = &row.tenant.id;
        sink.stream(
            "SELECT tree_size, root, note, created_at FROM checkpoints WHERE tenant_no = $1 ORDER BY tree_size",
            &[no],
            |checkpoints| Batch::Checkpoints { tenant: tenant.clone(), checkpoints },
            crate::to_checkpoint,
        )
        .await?;
        sink.stream(
            records_sql,
            &[no],
            |records| Batch::Records { tenant: tenant.clone(), records },
            |row| {
                let seq: i64 = row.get(0);
                let data: Option<Vec<u8>> = row.get(4);
                Ok(RecordRow {
                    seq: seq as u64,
                    event_id: row.get(1),
                    leaf_hash: to_hash(row.get(2))?.0,
                    sealed: row.get(3),
                    personal: data.map(|data| PersonalRow { data, email_bidx: row.get(5), ip_bidx: row.get(6) }),
                })
            },
        )
        .await?;
    }
    if scope == Scope::Everything {
        for (no, row) in &tenants {
            let tenant = &row.tenant.id;
            sink.stream(
                "SELECT tree_size, response, created_at FROM checkpoint_timestamps WHERE tenant_no = $1
                 ORDER BY tree_size",
                &[no],
                |timestamps| Batch::CheckpointTimestamps { tenant: tenant.clone(), timestamps },
                |row| {
                    let size: i64 = row.get(0);
                    Ok(CheckpointTimestampRow { size: size as u64, response: row.get(1), created_at: row.get(2) })
                },
            )
            .await?;
        }
        export_access(&sink).await?;
        export_alerts(&sink).await?;
    }
    sink.send(Batch::End).await?;
    tx.commit().await.map_err(pg_error)
}

async fn export_access(sink: &Sink<'_, '_>) -> StoreResult<()> {
    let sql = format!("SELECT {} FROM custom_roles ORDER BY no", access::ROLE_COLUMNS);
    sink.stream(&sql, &[], Batch::Roles, |row| Ok(access::to_role(row))).await?;
    let sql = format!("SELECT {} FROM users ORDER BY created_at, id", access::USER_COLUMNS);
    sink.stream(&sql, &[], Batch::Users, access::to_user).await?;
    let sql = format!("SELECT {} FROM sessions ORDER BY created_at, id", access::SESSION_COLUMNS);
    sink.stream(&sql, &[], Batch::Sessions, access::to_session).await?;
    let sql = format!("SELECT {} FROM identity_providers ORDER BY no", access::PROVIDER_COLUMNS);
    sink.stream(&sql, &[], Batch::IdentityProviders, |row| Ok(access::to_provider(row))).await?;
    Ok(())
}

async fn export_alerts(sink: &Sink<'_, '_>) -> StoreResult<()> {
    sink.stream(
        "SELECT tenant, next_seq, installed_at FROM engine_cursors ORDER BY tenant",
        &[],
        Batch::EngineCursors,
        |row| {
            let next_seq: i64 = row.get(1);
            Ok(EngineCursorRow { tenant: row.get(0), next_seq: next_seq.max(0) as u64, installed_at: row.get(2) })
        },
    )
    .await?;
    // The rule columns first: the backend's own `to_rule` reads them at 0..5.
    let sql = format!("SELECT {}, tenant, deleted_at FROM rules ORDER BY no", alerts::RULE_COLUMNS);
    sink.stream(&sql, &[], Batch::Rules, |row| {
        Ok(RuleRow { rule: alerts::to_rule(row)?, tenant: row.get(5), deleted_at: row.get(6) })
    })
    .await?;
    sink.stream(
        "SELECT id, version, definition, created_at, saved_at, tenant FROM rule_versions ORDER BY tenant, id, version",
        &[],
        Batch::RuleVersions,
        |row| Ok(RuleVersionRow { rule: alerts::to_rule(row)?, tenant: row.get(5) }),
    )
    .await?;
    sink.stream("SELECT tenant, changes FROM rule_changes ORDER BY tenant", &[], Batch::RuleChanges, |row| {
        let changes: i64 = row.get(1);
        Ok(RuleChangesRow { tenant: row.get(0), changes: changes.max(0) as u64 })
    })
    .await?;
    let sql = format!("SELECT {} FROM webhooks ORDER BY no", alerts::WEBHOOK_COLUMNS);
    sink.stream(&sql, &[], Batch::Webhooks, |row| Ok(alerts::to_webhook(row))).await?;
    let sql = format!("SELECT {} FROM alerts ORDER BY position", alerts::ALERT_COLUMNS);
    sink.stream(&sql, &[], Batch::Alerts, alerts::to_alert).await?;
    let sql = format!("SELECT {} FROM deliveries ORDER BY position", alerts::DELIVERY_COLUMNS);
    sink.stream(&sql, &[], Batch::Deliveries, alerts::to_delivery).await?;
    Ok(())
}

/// Where an export sends its batches, reading in its snapshot transaction.
struct Sink<'a, 'b> {
    tx: &'a Transaction<'b>,
    out: &'a mpsc::Sender<Batch>,
}

impl Sink<'_, '_> {
    async fn send(&self, batch: Batch) -> StoreResult<()> {
        self.out.send(batch).await.map_err(|_| veritrail_store::dump::import_stopped())
    }

    /// Sends every row of `sql`, read by `read`, in batches of at most [`BATCH_ROWS`] (a portal:
    /// never more than a batch in memory).
    async fn stream<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        batch: impl Fn(Vec<T>) -> Batch,
        read: impl Fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<u64> {
        let portal = self.tx.bind(sql, params).await.map_err(pg_error)?;
        let mut total = 0;
        loop {
            let rows = self.tx.query_portal(&portal, BATCH_ROWS as i32).await.map_err(pg_error)?;
            let last = rows.len() < BATCH_ROWS;
            if !rows.is_empty() {
                total += rows.len() as u64;
                let converted = rows.iter().map(&read).collect::<StoreResult<Vec<T>>>()?;
                self.send(batch(converted)).await?;
            }
            if last {
                return Ok(total);
            }
        }
    }
}

/// Writes the batches of `batches` into the database at `url` (schema applied first), which
/// must hold no store ([`contents`]) and have no server connected, in one transaction.
pub async fn import(url: &str, batches: mpsc::Receiver<Batch>) -> StoreResult<ImportCounts> {
    let (mut client, driver) = connect(url).await?;
    // Migrated on this connection (named as this module's), not on one of a server's name
    // that could still be listed when `refuse_running_servers` looks.
    let result = match crate::migrate::run(&mut client).await {
        Ok(_) => import_on(&mut client, batches).await,
        Err(error) => Err(error),
    };
    drop(client);
    let _ = driver.await;
    result
}

/// One tenant being imported.
struct ImportedTenant {
    id: String,
    no: i64,
    frontier: Frontier,
    last_received_at: Timestamp,
}

async fn import_on(client: &mut Client, mut batches: mpsc::Receiver<Batch>) -> StoreResult<ImportCounts> {
    refuse_running_servers(client).await?;
    if let Some(found) = contents_on(client).await? {
        return Err(StoreError::Conflict(format!("the target is not empty: {found}")));
    }
    let tx = client.transaction().await.map_err(pg_error)?;
    let mut tenants: Vec<ImportedTenant> = Vec::new();
    let mut counts = ImportCounts::default();
    loop {
        match batches.recv().await {
            Some(Batch::End) => break,
            Some(batch) => {
                counts.add(&batch);
                write(&tx, &mut tenants, batch).await?;
            }
            // Dropping the transaction rolls it back.
            None => return Err(StoreError::Unavailable("the export stopped before its end: nothing imported".into())),
        }
    }
    for tenant in &tenants {
        let (size, root) = (tenant.frontier.size() as i64, tenant.frontier.root().0.to_vec());
        let frontier = crate::writer::encode_frontier(&tenant.frontier);
        tx.execute(
            "INSERT INTO ledger_heads (tenant_no, size, root, frontier, last_received_at) VALUES ($1, $2, $3, $4, $5)",
            &[&tenant.no, &size, &root, &frontier, &tenant.last_received_at],
        )
        .await
        .map_err(pg_error)?;
    }
    // Positions were kept (list cursors point into them): new rows continue after them.
    for table in ["alerts", "deliveries"] {
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'position'), coalesce(max(position), 1),
                 max(position) IS NOT NULL) FROM {table}"
            ),
            &[],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(counts)
}

fn tenant_no(tenants: &[ImportedTenant], id: &str) -> StoreResult<i64> {
    tenants
        .iter()
        .find(|tenant| tenant.id == id)
        .map(|tenant| tenant.no)
        .ok_or_else(|| StoreError::Corrupt(format!("rows of unknown tenant {id:?}")))
}

fn to_i64(value: u64, what: &str) -> StoreResult<i64> {
    crate::to_i64(value, what)
}

async fn write(tx: &Transaction<'_>, tenants: &mut Vec<ImportedTenant>, batch: Batch) -> StoreResult<()> {
    match batch {
        Batch::Settings(rows) => {
            let names: Vec<&str> = rows.iter().map(|row| row.name.as_str()).collect();
            let values: Vec<&[u8]> = rows.iter().map(|row| row.value.as_slice()).collect();
            tx.execute(
                "INSERT INTO settings (name, value) SELECT * FROM unnest($1::text[], $2::bytea[])",
                &[&names, &values],
            )
            .await
            .map_err(pg_error)?;
        }
        Batch::Tenants(rows) => {
            for row in rows {
                let no: i64 = tx
                    .query_one(
                        "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) RETURNING no",
                        &[&row.tenant.id, &row.tenant.name, &row.tenant.created_at],
                    )
                    .await
                    .map_err(pg_error)?
                    .get(0);
                if let Some(wrapped) = &row.blind_wrapped {
                    tx.execute("INSERT INTO tenant_keys (tenant_no, blind_wrapped) VALUES ($1, $2)", &[&no, wrapped])
                        .await
                        .map_err(pg_error)?;
                }
                tenants.push(ImportedTenant {
                    id: row.tenant.id,
                    no,
                    frontier: Frontier::new(),
                    last_received_at: Timestamp::UNIX_EPOCH,
                });
            }
        }
        Batch::ApiKeys(keys) => {
            let insert = tx.prepare(crate::INSERT_API_KEY).await.map_err(pg_error)?;
            for key in keys {
                let no = tenant_no(tenants, &key.tenant)?;
                let hash = key.secret_hash.as_slice();
                tx.execute(&insert, &crate::api_key_params(&key, &no, &hash)).await.map_err(pg_error)?;
            }
        }
        Batch::DataKeys(keys) => {
            let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for key in &keys {
                columns.0.push(key.key_id as i64);
                columns.1.push(tenant_no(tenants, &key.tenant)?);
                columns.2.push(key.subject.as_str());
                columns.3.push(key.wrapped.as_slice());
                columns.4.push(key.created_at);
            }
            tx.execute(
                "INSERT INTO subject_keys (key_id, tenant_no, subject, wrapped, created_at)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bytea[], $5::timestamptz[])",
                &[&columns.0, &columns.1, &columns.2, &columns.3, &columns.4],
            )
            .await
            .map_err(pg_error)?;
        }
        Batch::Records { tenant, records } => {
            let imported = tenants
                .iter_mut()
                .find(|t| t.id == tenant)
                .ok_or_else(|| StoreError::Corrupt(format!("records of unknown tenant {tenant:?}")))?;
            write_records(tx, imported, records).await?;
        }
        Batch::Checkpoints { tenant, checkpoints } => {
            let no = tenant_no(tenants, &tenant)?;
            let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for checkpoint in &checkpoints {
                columns.0.push(to_i64(checkpoint.size, "tree size")?);
                columns.1.push(checkpoint.root.as_slice());
                columns.2.push(checkpoint.note.as_str());
                columns.3.push(checkpoint.created_at);
            }
            tx.execute(
                "INSERT INTO checkpoints (tenant_no, tree_size, root, note, created_at)
                 SELECT $1, * FROM unnest($2::bigint[], $3::bytea[], $4::text[], $5::timestamptz[])",
                &[&no, &columns.0, &columns.1, &columns.2, &columns.3],
            )
            .await
            .map_err(pg_error)?;
        }
        Batch::CheckpointTimestamps { tenant, timestamps } => {
            let no = tenant_no(tenants, &tenant)?;
            let mut columns = (Vec::new(), Vec::new(), Vec::new());
            for timestamp in &timestamps {
                columns.0.push(to_i64(timestamp.size, "tree size")?);
                columns.1.push(timestamp.response.as_slice());
                columns.2.push(timestamp.created_at);
            }
            tx.execute(
                "INSERT INTO checkpoint_timestamps (tenant_no, tree_size, response, created_at)
                 SELECT $1, * FROM unnest($2::bigint[], $3::bytea[], $4::timestamptz[])",
                &[&no, &columns.0, &columns.1, &columns.2],
            )
            .await
            .map_err(pg_error)?;
        }
        Batch::Roles(roles) => {
            for role in roles {
                tx.execute(access::INSERT_ROLE, &access::role_params(&role)).await.map_err(pg_error)?;
            }
        }
        Batch::Users(users) => {
            let insert = tx
                .prepare(
                    "INSERT INTO users (id, tenant, email, password_hash, role, custom_role, actor_id, status,
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .await
                .map_err(pg_error)?;
            for user in users {
                tx.execute(
                    &insert,
                    &[
                        &user.id,
                        &user.tenant,
                        &user.email,
                        &user.password_hash,
                        &user.role,
                        &access::custom_role(&user.role),
                        &user.actor_id,
                        &user.status.as_str(),
                        &user.created_at,
                        &user.updated_at,
                    ],
                )
                .await
                .map_err(pg_error)?;
            }
        }
        Batch::Sessions(sessions) => {
            let insert = tx.prepare(access::INSERT_SESSION).await.map_err(pg_error)?;
            for session in sessions {
                let hash = session.secret_hash.as_slice();
                tx.execute(&insert, &access::session_params(&session, &hash)).await.map_err(pg_error)?;
            }
        }
        Batch::IdentityProviders(providers) => {
            for provider in providers {
                let issuer = provider.issuer();
                let params = access::identity_provider_params(&provider, &issuer);
                tx.execute(access::INSERT_IDENTITY_PROVIDER, &params).await.map_err(pg_error)?;
            }
        }
        Batch::EngineCursors(cursors) => {
            for cursor in cursors {
                tx.execute(
                    "INSERT INTO engine_cursors (tenant, next_seq, installed_at) VALUES ($1, $2, $3)",
                    &[&cursor.tenant, &to_i64(cursor.next_seq, "engine cursor")?, &cursor.installed_at],
                )
                .await
                .map_err(pg_error)?;
            }
        }
        Batch::Rules(rules) => {
            for RuleRow { tenant, rule, deleted_at } in rules {
                tx.execute(
                    "INSERT INTO rules (tenant, id, version, definition, created_at, updated_at, deleted_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &tenant,
                        &rule.id,
                        &i64::from(rule.version),
                        &rule.definition,
                        &rule.created_at,
                        &rule.updated_at,
                        &deleted_at,
                    ],
                )
                .await
                .map_err(pg_error)?;
            }
        }
        Batch::RuleVersions(versions) => {
            for RuleVersionRow { tenant, rule } in versions {
                tx.execute(
                    "INSERT INTO rule_versions (tenant, id, version, definition, created_at, saved_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &tenant,
                        &rule.id,
                        &i64::from(rule.version),
                        &rule.definition,
                        &rule.created_at,
                        &rule.updated_at,
                    ],
                )
                .await
                .map_err(pg_error)?;
            }
        }
        Batch::RuleChanges(rows) => {
            for row in rows {
                tx.execute(
                    "INSERT INTO rule_changes (tenant, changes) VALUES ($1, $2)",
                    &[&row.tenant, &to_i64(row.changes, "rule change count")?],
                )
                .await
                .map_err(pg_error)?;
            }
        }
        Batch::Webhooks(webhooks) => {
            for webhook in webhooks {
                tx.execute(
                    "INSERT INTO webhooks (id, tenant, url, events, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&webhook.id, &webhook.tenant, &webhook.url, &webhook.events, &webhook.secret, &webhook.created_at],
                )
                .await
                .map_err(pg_error)?;
            }
        }
        Batch::Alerts(list) => {
            let insert = tx.prepare(&alerts::AlertRow::insert_sql(true, "")).await.map_err(pg_error)?;
            for alert in list {
                tx.execute(&insert, &alerts::AlertRow::new(&alert, true)?.params()).await.map_err(pg_error)?;
            }
        }
        Batch::End => {}
        Batch::Deliveries(deliveries) => {
            let insert = tx
                .prepare(
                    "INSERT INTO deliveries (position, tenant, endpoint_id, message_id, event_type, alert_id, payload,
                     status, attempts, round_attempts, round_started_at, created_at, next_attempt_at,
                     last_attempt_at, last_status, last_error, delivered_at)
                     OVERRIDING SYSTEM VALUE
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                )
                .await
                .map_err(pg_error)?;
            for delivery in deliveries {
                let count = |value: u32| i32::try_from(value).unwrap_or(i32::MAX);
                let last_status = delivery.last_status.map(i32::from);
                tx.execute(
                    &insert,
                    &[
                        &to_i64(delivery.position, "delivery position")?,
                        &delivery.tenant,
                        &delivery.endpoint_id,
                        &delivery.message_id,
                        &delivery.event_type,
                        &delivery.alert_id,
                        &delivery.payload,
                        &delivery.status.as_str(),
                        &count(delivery.attempts),
                        &count(delivery.round_attempts),
                        &delivery.round_started_at,
                        &delivery.created_at,
                        &delivery.next_attempt_at,
                        &delivery.last_attempt_at,
                        &last_status,
                        &delivery.last_error,
                        &delivery.delivered_at,
                    ],
                )
                .await
                .map_err(pg_error)?;
            }
        }
    }
    Ok(())
}

/// Inserts consecutive records of a tenant with their sidecars, query columns, resources and
/// Merkle nodes, extending the tenant's tree from leaf hashes checked against the sealed bytes.
async fn write_records(tx: &Transaction<'_>, tenant: &mut ImportedTenant, records: Vec<RecordRow>) -> StoreResult<()> {
    let mut rows = Rows::default();
    let last_sealed = records.last().map(|record| record.sealed.clone());
    for record in records {
        let expected = tenant.frontier.size();
        if record.seq != expected {
            return Err(StoreError::Corrupt(format!(
                "tenant {}: record seq {} where seq {expected} was expected",
                tenant.id, record.seq
            )));
        }
        let leaf = leaf_hash(&record.sealed);
        if leaf.0 != record.leaf_hash {
            return Err(StoreError::Corrupt(format!(
                "tenant {}: seq {}: stored leaf hash does not match the sealed record",
                tenant.id, record.seq
            )));
        }
        let seq = to_i64(record.seq, "seq")?;
        tenant
            .frontier
            .push_with(leaf, |node| rows.push_node(&node))
            .map_err(|e| StoreError::Backend(format!("merkle tree of tenant {} is full: {e}", tenant.id)))?;
        rows.push_record(seq, record.event_id, &leaf, record.sealed, record.personal)?;
    }
    if let Some(sealed) = last_sealed {
        tenant.last_received_at = tenant.last_received_at.max(received_at(&sealed)?);
    }
    if rows.is_empty() {
        return Ok(());
    }
    let inserts = RowInserts::prepare(tx).await.map_err(pg_error)?;
    inserts.insert(tx, tenant.no, &rows).await.map_err(pg_error)?;
    Ok(())
}

/// The `received_at` of a sealed record (the head row keeps the last, so that appends after
/// the import never go back in time).
fn received_at(sealed: &[u8]) -> StoreResult<Timestamp> {
    let record: serde_json::Value =
        serde_json::from_slice(sealed).map_err(|e| StoreError::Corrupt(format!("sealed record is not json: {e}")))?;
    record
        .get("received_at")
        .and_then(serde_json::Value::as_str)
        .and_then(|text| text.parse::<Timestamp>().ok())
        .ok_or_else(|| StoreError::Corrupt("sealed record has no valid received_at".into()))
}
