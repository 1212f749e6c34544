//! `veritrail migrate-store` on the embedded store: [`export`] reads a data directory into
//! [`veritrail_store::dump`] batches, [`import`] writes them into an empty one.
//!
//! Both run with the server stopped. The export reads `ledger.sqlite` in one read transaction
//! (one snapshot), then `access.sqlite` and `alerts.sqlite`, streaming rows in batches. The
//! import writes each file in one transaction (nothing half-written is ever committed), derives
//! what the writer would have (tenant numbers, record keys, Merkle nodes at levels 4, 8, …,
//! from the leaf hashes it checks against the sealed bytes), then opens the store once: its
//! indexer builds `index.sqlite` from the ledger, as after `veritrail reindex`.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use tokio::sync::mpsc;
use veritrail_ledger::hash::leaf_hash;
use veritrail_ledger::tree::Frontier;
use veritrail_store::dump::{
    BATCH_ROWS, Batch, CheckpointTimestampRow, DataKeyRow, EngineCursorRow, ImportCounts, PersonalRow, RecordRow,
    RuleChangesRow, RuleRow, RuleVersionRow, Scope, SettingRow, TenantRow,
};
use veritrail_store::{Store, StoreError, StoreResult, StoredCheckpoint, Tenant, is_builtin_role};

use crate::keys::CLEAR_SIDECARS_SETTING;
use crate::schema::{LEDGER_SCHEMA_VERSION, MAX_SEQ, MAX_TENANT_NO, NODE_LEVEL_STEP, key_seq, record_key};
use crate::{
    ACCESS_FILE, ALERTS_FILE, INDEX_FILE, LEDGER_FILE, OpenOptions, SqliteAccessStore, SqliteAlertStore, SqliteStore,
    access, alerts, from_micros, sql_error, to_micros,
};

/// What a data directory already holds of a store (`None`: nothing, an import may write it).
pub fn contents(dir: &Path) -> StoreResult<Option<String>> {
    let ledger = dir.join(LEDGER_FILE);
    if ledger.exists() {
        let conn = Connection::open_with_flags(&ledger, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql_error)?;
        let count = |table: &str| -> StoreResult<i64> {
            let exists: Option<String> = conn
                .query_row("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(sql_error)?;
            match exists {
                Some(_) => conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0)),
                None => Ok(0),
            }
            .map_err(sql_error)
        };
        let (tenants, records) = (count("tenants")?, count("records")?);
        return Ok(Some(format!("{} holds a ledger ({tenants} tenants, {records} records)", ledger.display())));
    }
    for file in [INDEX_FILE, ALERTS_FILE, ACCESS_FILE] {
        if dir.join(file).exists() {
            return Ok(Some(format!("{} exists", dir.join(file).display())));
        }
    }
    Ok(None)
}

/// Reads the data directory `dir` (server stopped) and sends its content to `out`, in
/// [`Batch`]'s order. Blocking: run it on a thread of its own or the blocking pool. Fails with
/// [`StoreError::Unavailable`] when the receiver goes away.
pub fn export(dir: &Path, scope: Scope, out: &mpsc::Sender<Batch>) -> StoreResult<()> {
    let path = dir.join(LEDGER_FILE);
    if !path.is_file() {
        return Err(StoreError::Backend(format!("{} holds no veritrail ledger ({LEDGER_FILE})", dir.display())));
    }
    let conn = open_existing(&path)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(sql_error)?;
    if version != LEDGER_SCHEMA_VERSION {
        return Err(StoreError::Conflict(format!(
            "{LEDGER_FILE} has schema version {version}, not {LEDGER_SCHEMA_VERSION}: start this version's server on \
             it once (it upgrades the ledger), stop it, then migrate"
        )));
    }
    // One snapshot of the whole ledger.
    conn.execute_batch("BEGIN").map_err(sql_error)?;
    let clear: Option<i64> = conn
        .query_row("SELECT 1 FROM settings WHERE name = ?1", [CLEAR_SIDECARS_SETTING], |row| row.get(0))
        .optional()
        .map_err(sql_error)?;
    if clear.is_some() {
        return Err(StoreError::Conflict(
            "the ledger may hold personal data not encrypted yet: start the server on it once (it encrypts it), \
             stop it, then migrate"
                .into(),
        ));
    }
    let sink = Sink { out };
    sink.stream(&conn, "SELECT name, value FROM settings ORDER BY name", [], Batch::Settings, |row| {
        Ok(SettingRow { name: row.get(0)?, value: row.get(1)? })
    })?;
    let tenants = tenants(&conn)?;
    sink.send(Batch::Tenants(tenants.iter().map(|(_, row)| row.clone()).collect()))?;
    if scope == Scope::Everything {
        sink.stream_converted(
            &conn,
            &format!("{} ORDER BY k.tenant_no, k.created_at, k.id", crate::API_KEY_COLUMNS),
            [],
            Batch::ApiKeys,
            crate::api_key_row,
            crate::to_api_key,
        )?;
        sink.stream(
            &conn,
            "SELECT t.id, k.key_id, k.subject, k.wrapped, k.created_at FROM subject_keys k
             JOIN tenants t ON t.no = k.tenant_no ORDER BY k.key_id",
            [],
            Batch::DataKeys,
            |row| {
                Ok(DataKeyRow {
                    tenant: row.get(0)?,
                    key_id: row.get::<_, i64>(1)? as u64,
                    subject: row.get(2)?,
                    wrapped: row.get(3)?,
                    created_at: from_micros(row.get(4)?)?,
                })
            },
        )?;
    }
    for (no, row) in &tenants {
        let tenant = row.tenant.id.clone();
        sink.stream(
            &conn,
            "SELECT tree_size, root, note, created_at FROM checkpoints WHERE tenant_no = ?1 ORDER BY tree_size",
            [no],
            |checkpoints| Batch::Checkpoints { tenant: tenant.clone(), checkpoints },
            |row| {
                Ok(StoredCheckpoint {
                    size: row.get::<_, i64>(0)? as u64,
                    root: crate::tree::to_hash(&row.get::<_, Vec<u8>>(1)?)?.0,
                    note: row.get(2)?,
                    created_at: from_micros(row.get(3)?)?,
                })
            },
        )?;
        export_records(&conn, scope, *no, &row.tenant.id, &sink)?;
    }
    if scope == Scope::Everything {
        for (no, row) in &tenants {
            let tenant = row.tenant.id.clone();
            sink.stream(
                &conn,
                "SELECT tree_size, response, created_at FROM checkpoint_timestamps WHERE tenant_no = ?1
                 ORDER BY tree_size",
                [no],
                |timestamps| Batch::CheckpointTimestamps { tenant: tenant.clone(), timestamps },
                |row| {
                    Ok(CheckpointTimestampRow {
                        size: row.get::<_, i64>(0)? as u64,
                        response: row.get(1)?,
                        created_at: from_micros(row.get(2)?)?,
                    })
                },
            )?;
        }
    }
    conn.execute_batch("COMMIT").map_err(sql_error)?;
    if scope == Scope::Everything {
        export_access(dir, &sink)?;
        export_alerts(dir, &sink)?;
    }
    sink.send(Batch::End)
}

/// Opens an existing database file (never creating one) for reading.
fn open_existing(path: &Path) -> StoreResult<Connection> {
    // Read-write, so that a WAL left by the last server is read; nothing is written.
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
    conn.pragma_update(None, "busy_timeout", 5000).map_err(sql_error)?;
    Ok(conn)
}

/// Tenants `(no, row)` by number.
fn tenants(conn: &Connection) -> StoreResult<Vec<(i64, TenantRow)>> {
    let mut stmt = conn
        .prepare(
            "SELECT t.no, t.id, t.name, t.created_at, k.blind_wrapped FROM tenants t
             LEFT JOIN tenant_keys k ON k.tenant_no = t.no ORDER BY t.no",
        )
        .map_err(sql_error)?;
    let mut rows = stmt.query([]).map_err(sql_error)?;
    let mut tenants = Vec::new();
    while let Some(row) = rows.next().map_err(sql_error)? {
        let tenant = Tenant {
            id: row.get(1).map_err(sql_error)?,
            name: row.get(2).map_err(sql_error)?,
            created_at: from_micros(row.get(3).map_err(sql_error)?)?,
        };
        tenants.push((
            row.get(0).map_err(sql_error)?,
            TenantRow { tenant, blind_wrapped: row.get(4).map_err(sql_error)? },
        ));
    }
    Ok(tenants)
}

fn export_records(conn: &Connection, scope: Scope, no: i64, tenant: &str, sink: &Sink<'_>) -> StoreResult<()> {
    let sql = match scope {
        Scope::Everything => {
            "SELECT r.key, r.event_id, r.leaf_hash, r.sealed, p.data, p.email_bidx, p.ip_bidx FROM records r
             LEFT JOIN personal p ON p.key = r.key WHERE r.key BETWEEN ?1 AND ?2 ORDER BY r.key"
        }
        Scope::Ledger => {
            "SELECT key, event_id, leaf_hash, sealed, NULL, NULL, NULL FROM records
             WHERE key BETWEEN ?1 AND ?2 ORDER BY key"
        }
    };
    sink.stream(
        conn,
        sql,
        params![record_key(no, 0), record_key(no, MAX_SEQ)],
        |records| Batch::Records { tenant: tenant.to_string(), records },
        |row| {
            let leaf: Vec<u8> = row.get(2)?;
            let personal = match row.get_ref(4)? {
                ValueRef::Null => None,
                _ => Some(PersonalRow { data: row.get(4)?, email_bidx: row.get(5)?, ip_bidx: row.get(6)? }),
            };
            Ok(RecordRow {
                seq: key_seq(row.get(0)?),
                event_id: row.get(1)?,
                leaf_hash: crate::tree::to_hash(&leaf)?.0,
                sealed: row.get(3)?,
                personal,
            })
        },
    )?;
    Ok(())
}

fn export_access(dir: &Path, sink: &Sink<'_>) -> StoreResult<()> {
    let path = dir.join(ACCESS_FILE);
    if !path.is_file() {
        return Ok(());
    }
    let conn = open_existing(&path)?;
    conn.execute_batch("BEGIN").map_err(sql_error)?;
    let sql = format!("SELECT {} FROM roles ORDER BY no", access::ROLE_COLUMNS);
    sink.stream_converted(&conn, &sql, [], Batch::Roles, access::role_row, access::to_role)?;
    let sql = format!("SELECT {} FROM users ORDER BY created_at, id", access::USER_COLUMNS);
    sink.stream_converted(&conn, &sql, [], Batch::Users, access::user_row, access::to_user)?;
    let sql = format!("SELECT {} FROM sessions ORDER BY created_at, id", access::SESSION_COLUMNS);
    sink.stream_converted(&conn, &sql, [], Batch::Sessions, access::session_row, access::to_session)?;
    let sql = format!("SELECT {} FROM identity_providers ORDER BY no", access::PROVIDER_COLUMNS);
    sink.stream_converted(&conn, &sql, [], Batch::IdentityProviders, access::provider_row, access::to_provider)?;
    conn.execute_batch("COMMIT").map_err(sql_error)
}

fn export_alerts(dir: &Path, sink: &Sink<'_>) -> StoreResult<()> {
    let path = dir.join(ALERTS_FILE);
    if !path.is_file() {
        return Ok(());
    }
    let conn = open_existing(&path)?;
    conn.execute_batch("BEGIN").map_err(sql_error)?;
    sink.stream(
        &conn,
        "SELECT tenant, next_seq, installed_at FROM engine_cursors ORDER BY tenant",
        [],
        Batch::EngineCursors,
        |row| {
            Ok(EngineCursorRow {
                tenant: row.get(0)?,
                next_seq: row.get::<_, i64>(1)?.max(0) as u64,
                installed_at: from_micros(row.get(2)?)?,
            })
        },
    )?;
    sink.stream(
        &conn,
        &format!("SELECT tenant, deleted_at, {} FROM rules ORDER BY no", alerts::RULE_COLUMNS),
        [],
        Batch::Rules,
        |row| {
            let rule = alerts::to_rule((row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?))?;
            let deleted: Option<i64> = row.get(1)?;
            Ok(RuleRow { tenant: row.get(0)?, rule, deleted_at: deleted.map(from_micros).transpose()? })
        },
    )?;
    sink.stream(
        &conn,
        "SELECT tenant, id, version, definition, created_at, saved_at FROM rule_versions ORDER BY tenant, id, version",
        [],
        Batch::RuleVersions,
        |row| {
            let rule = alerts::to_rule((row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))?;
            Ok(RuleVersionRow { tenant: row.get(0)?, rule })
        },
    )?;
    sink.stream(&conn, "SELECT tenant, changes FROM rule_changes ORDER BY tenant", [], Batch::RuleChanges, |row| {
        Ok(RuleChangesRow { tenant: row.get(0)?, changes: row.get::<_, i64>(1)?.max(0) as u64 })
    })?;
    let sql = format!("SELECT {} FROM webhooks ORDER BY no", alerts::WEBHOOK_COLUMNS);
    sink.stream_converted(&conn, &sql, [], Batch::Webhooks, alerts::webhook_row, alerts::to_webhook)?;
    let sql = format!("SELECT {} FROM alerts ORDER BY position", alerts::ALERT_COLUMNS);
    sink.stream_converted(&conn, &sql, [], Batch::Alerts, alerts::alert_row, alerts::to_alert)?;
    let sql = format!("SELECT {} FROM deliveries ORDER BY position", alerts::DELIVERY_COLUMNS);
    sink.stream_converted(&conn, &sql, [], Batch::Deliveries, alerts::delivery_row, alerts::to_delivery)?;
    conn.execute_batch("COMMIT").map_err(sql_error)
}

/// Where an export sends its batches.
struct Sink<'a> {
    out: &'a mpsc::Sender<Batch>,
}

/// A row reader's error: SQLite's or the store's.
enum ReadError {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for ReadError {
    fn from(error: rusqlite::Error) -> Self {
        ReadError::Sql(error)
    }
}

impl From<StoreError> for ReadError {
    fn from(error: StoreError) -> Self {
        ReadError::Store(error)
    }
}

impl Sink<'_> {
    fn send(&self, batch: Batch) -> StoreResult<()> {
        self.out.blocking_send(batch).map_err(|_| veritrail_store::dump::import_stopped())
    }

    /// Sends every row of `sql`, read by `read`, in batches of at most [`BATCH_ROWS`].
    fn stream<T>(
        &self,
        conn: &Connection,
        sql: &str,
        args: impl rusqlite::Params,
        batch: impl Fn(Vec<T>) -> Batch,
        read: impl Fn(&Row<'_>) -> Result<T, ReadError>,
    ) -> StoreResult<u64> {
        let mut stmt = conn.prepare(sql).map_err(sql_error)?;
        let mut rows = stmt.query(args).map_err(sql_error)?;
        let (mut pending, mut total) = (Vec::new(), 0);
        while let Some(row) = rows.next().map_err(sql_error)? {
            pending.push(read(row).map_err(|e| match e {
                ReadError::Sql(e) => sql_error(e),
                ReadError::Store(e) => e,
            })?);
            total += 1;
            if pending.len() == BATCH_ROWS {
                self.send(batch(std::mem::take(&mut pending)))?;
            }
        }
        if !pending.is_empty() {
            self.send(batch(pending))?;
        }
        Ok(total)
    }

    /// [`Sink::stream`] with a backend's own row reader and conversion.
    fn stream_converted<T, R>(
        &self,
        conn: &Connection,
        sql: &str,
        args: impl rusqlite::Params,
        batch: impl Fn(Vec<T>) -> Batch,
        read: fn(&Row<'_>) -> rusqlite::Result<R>,
        convert: fn(R) -> StoreResult<T>,
    ) -> StoreResult<u64> {
        self.stream(conn, sql, args, batch, |row| Ok(convert(read(row)?)?))
    }
}

/// Writes the batches of `batches` into the data directory `dir`, which must hold no store
/// ([`contents`]), then opens it with `options` (its master keys must open the data keys and
/// secrets imported) to build the query index, and closes it. Each file is written in one
/// transaction; on any failure the store files the import created are removed again, so the
/// directory holds no store and the import can simply be run again (other files, such as a
/// `master.key` written before, are left alone).
pub async fn import(dir: &Path, options: OpenOptions, batches: mpsc::Receiver<Batch>) -> StoreResult<ImportCounts> {
    if let Some(found) = contents(dir)? {
        return Err(StoreError::Conflict(format!("the target is not empty: {found}")));
    }
    let result = import_and_index(dir, options, batches).await;
    if result.is_err() {
        remove_store_files(dir);
    }
    result
}

async fn import_and_index(
    dir: &Path,
    options: OpenOptions,
    batches: mpsc::Receiver<Batch>,
) -> StoreResult<ImportCounts> {
    let target = dir.to_path_buf();
    let counts = tokio::task::spawn_blocking(move || import_files(&target, batches))
        .await
        .map_err(|e| StoreError::Backend(format!("import task failed: {e}")))??;
    // The store's own open: keys checked, index built from the ledger by its indexer.
    let store = SqliteStore::open_with(dir, options)?;
    let indexed = store.wait_indexed().await;
    store.shutdown().await?;
    indexed?;
    Ok(counts)
}

/// Removes every file a store keeps in `dir` (the four databases with their WAL, shared-memory
/// and journal files, and the index's unclean-stop marker); what cannot be removed is logged.
fn remove_store_files(dir: &Path) {
    for file in [LEDGER_FILE, INDEX_FILE, ALERTS_FILE, ACCESS_FILE] {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let path = dir.join(format!("{file}{suffix}"));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(%error, path = %path.display(), "cannot remove a file of a failed import"),
            }
        }
    }
    let marker = crate::unclean_marker(&dir.join(INDEX_FILE));
    if let Err(error) = std::fs::remove_file(&marker)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(%error, path = %marker.display(), "cannot remove a file of a failed import");
    }
}

/// One tenant being imported.
struct ImportedTenant {
    id: String,
    no: i64,
    frontier: Frontier,
}

/// The open target files, each inside its transaction.
struct Target {
    ledger: Connection,
    access: Connection,
    alerts: Connection,
    tenants: Vec<ImportedTenant>,
}

fn import_files(dir: &Path, mut batches: mpsc::Receiver<Batch>) -> StoreResult<ImportCounts> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
    crate::restrict_permissions(dir, 0o700)?;
    let ledger_path = dir.join(LEDGER_FILE);
    let ledger = Connection::open(&ledger_path).map_err(sql_error)?;
    crate::restrict_permissions(&ledger_path, 0o600)?;
    crate::schema::configure(&ledger, true, crate::schema::Checkpointing::Background).map_err(sql_error)?;
    crate::schema::migrate_ledger(&ledger).map_err(StoreError::Corrupt)?;
    // The stores create their files and schemas; the import writes through connections of its own.
    drop(SqliteAlertStore::open(dir)?);
    drop(SqliteAccessStore::open(dir)?);
    let open = |file: &str| -> StoreResult<Connection> {
        let conn = open_existing(&dir.join(file))?;
        conn.pragma_update(None, "foreign_keys", true).map_err(sql_error)?;
        Ok(conn)
    };
    let mut target = Target { ledger, access: open(ACCESS_FILE)?, alerts: open(ALERTS_FILE)?, tenants: Vec::new() };
    for conn in [&target.ledger, &target.access, &target.alerts] {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_error)?;
    }
    let mut counts = ImportCounts::default();
    loop {
        match batches.blocking_recv() {
            Some(Batch::End) => break,
            Some(batch) => {
                counts.add(&batch);
                target.write(batch)?;
            }
            None => return Err(StoreError::Unavailable("the export stopped before its end: nothing imported".into())),
        }
    }
    for conn in [&target.ledger, &target.access, &target.alerts] {
        conn.execute_batch("COMMIT").map_err(sql_error)?;
    }
    let _ = target.ledger.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    Ok(counts)
}

impl Target {
    fn tenant(&mut self, id: &str) -> StoreResult<&mut ImportedTenant> {
        self.tenants
            .iter_mut()
            .find(|tenant| tenant.id == id)
            .ok_or_else(|| StoreError::Corrupt(format!("rows of unknown tenant {id:?}")))
    }

    fn tenant_no(&mut self, id: &str) -> StoreResult<i64> {
        Ok(self.tenant(id)?.no)
    }

    fn write(&mut self, batch: Batch) -> StoreResult<()> {
        match batch {
            Batch::Settings(rows) => {
                let mut insert = self
                    .ledger
                    .prepare_cached("INSERT INTO settings (name, value) VALUES (?1, ?2)")
                    .map_err(sql_error)?;
                for row in rows {
                    insert.execute(params![row.name, row.value]).map_err(sql_error)?;
                }
            }
            Batch::Tenants(rows) => {
                for row in rows {
                    let no = self.tenants.len() as i64 + 1;
                    if no > MAX_TENANT_NO {
                        return Err(StoreError::Backend("the maximum number of tenants is reached".into()));
                    }
                    self.ledger
                        .execute(
                            "INSERT INTO tenants (no, id, name, created_at) VALUES (?1, ?2, ?3, ?4)",
                            params![no, row.tenant.id, row.tenant.name, to_micros(row.tenant.created_at)],
                        )
                        .map_err(sql_error)?;
                    if let Some(wrapped) = &row.blind_wrapped {
                        self.ledger
                            .execute(
                                "INSERT INTO tenant_keys (tenant_no, blind_wrapped) VALUES (?1, ?2)",
                                params![no, wrapped],
                            )
                            .map_err(sql_error)?;
                    }
                    self.tenants.push(ImportedTenant { id: row.tenant.id, no, frontier: Frontier::new() });
                }
            }
            Batch::ApiKeys(keys) => {
                for key in keys {
                    let no = self.tenant_no(&key.tenant)?;
                    crate::insert_api_key(&self.ledger, no, &key)?;
                }
            }
            Batch::DataKeys(keys) => {
                for key in keys {
                    let no = self.tenant_no(&key.tenant)?;
                    self.ledger
                        .prepare_cached(
                            "INSERT INTO subject_keys (key_id, tenant_no, subject, wrapped, created_at)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                        )
                        .map_err(sql_error)?
                        .execute(params![key.key_id as i64, no, key.subject, key.wrapped, to_micros(key.created_at)])
                        .map_err(sql_error)?;
                }
            }
            Batch::Records { tenant, records } => self.write_records(&tenant, records)?,
            Batch::Checkpoints { tenant, checkpoints } => {
                let no = self.tenant_no(&tenant)?;
                for checkpoint in checkpoints {
                    self.ledger
                        .prepare_cached(
                            "INSERT INTO checkpoints (tenant_no, tree_size, root, note, created_at)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                        )
                        .map_err(sql_error)?
                        .execute(params![
                            no,
                            checkpoint.size as i64,
                            checkpoint.root.as_slice(),
                            checkpoint.note,
                            to_micros(checkpoint.created_at)
                        ])
                        .map_err(sql_error)?;
                }
            }
            Batch::CheckpointTimestamps { tenant, timestamps } => {
                let no = self.tenant_no(&tenant)?;
                for timestamp in timestamps {
                    self.ledger
                        .prepare_cached(
                            "INSERT INTO checkpoint_timestamps (tenant_no, tree_size, response, created_at)
                             VALUES (?1, ?2, ?3, ?4)",
                        )
                        .map_err(sql_error)?
                        .execute(params![
                            no,
                            timestamp.size as i64,
                            timestamp.response,
                            to_micros(timestamp.created_at)
                        ])
                        .map_err(sql_error)?;
                }
            }
            Batch::Roles(roles) => {
                for role in roles {
                    access::insert_role(&self.access, &role)?;
                }
            }
            Batch::Users(users) => {
                for user in users {
                    let custom_role = (!is_builtin_role(&user.role)).then_some(user.role.as_str());
                    access::insert_user(&self.access, &user, &user.email, custom_role)?;
                }
            }
            Batch::Sessions(sessions) => {
                for session in sessions {
                    access::insert_session(&self.access, &session)?;
                }
            }
            Batch::IdentityProviders(providers) => {
                for provider in providers {
                    access::insert_identity_provider(&self.access, &provider)?;
                }
            }
            Batch::EngineCursors(cursors) => {
                for cursor in cursors {
                    self.alerts
                        .execute(
                            "INSERT INTO engine_cursors (tenant, next_seq, installed_at) VALUES (?1, ?2, ?3)",
                            params![cursor.tenant, cursor.next_seq as i64, to_micros(cursor.installed_at)],
                        )
                        .map_err(sql_error)?;
                }
            }
            Batch::Rules(rules) => {
                for RuleRow { tenant, rule, deleted_at } in rules {
                    self.alerts
                        .prepare_cached(
                            "INSERT INTO rules (tenant, id, version, definition, created_at, updated_at, deleted_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        )
                        .map_err(sql_error)?
                        .execute(params![
                            tenant,
                            rule.id,
                            rule.version,
                            alerts::json_text(&rule.definition)?,
                            to_micros(rule.created_at),
                            to_micros(rule.updated_at),
                            deleted_at.map(to_micros)
                        ])
                        .map_err(sql_error)?;
                }
            }
            Batch::RuleVersions(versions) => {
                for RuleVersionRow { tenant, rule } in versions {
                    self.alerts
                        .prepare_cached(
                            "INSERT INTO rule_versions (tenant, id, version, definition, created_at, saved_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        )
                        .map_err(sql_error)?
                        .execute(params![
                            tenant,
                            rule.id,
                            rule.version,
                            alerts::json_text(&rule.definition)?,
                            to_micros(rule.created_at),
                            to_micros(rule.updated_at)
                        ])
                        .map_err(sql_error)?;
                }
            }
            Batch::RuleChanges(changes) => {
                for row in changes {
                    self.alerts
                        .execute(
                            "INSERT INTO rule_changes (tenant, changes) VALUES (?1, ?2)",
                            params![row.tenant, row.changes as i64],
                        )
                        .map_err(sql_error)?;
                }
            }
            Batch::Webhooks(webhooks) => {
                for webhook in webhooks {
                    self.alerts
                        .prepare_cached(
                            "INSERT INTO webhooks (id, tenant, url, events, secret, created_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        )
                        .map_err(sql_error)?
                        .execute(params![
                            webhook.id,
                            webhook.tenant,
                            webhook.url,
                            alerts::json_text(&webhook.events)?,
                            webhook.secret,
                            to_micros(webhook.created_at)
                        ])
                        .map_err(sql_error)?;
                }
            }
            Batch::Alerts(list) => {
                for alert in list {
                    alerts::insert_alert(&self.alerts, &alert, true, "")?;
                }
            }
            Batch::End => {}
            Batch::Deliveries(deliveries) => {
                for delivery in deliveries {
                    self.alerts
                        .prepare_cached(
                            "INSERT INTO deliveries (position, tenant, endpoint_id, message_id, event_type, alert_id,
                             payload, status, attempts, round_attempts, round_started_at, created_at, next_attempt_at,
                             last_attempt_at, last_status, last_error, delivered_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                        )
                        .map_err(sql_error)?
                        .execute(params![
                            delivery.position as i64,
                            delivery.tenant,
                            delivery.endpoint_id,
                            delivery.message_id,
                            delivery.event_type,
                            delivery.alert_id,
                            delivery.payload,
                            delivery.status.as_str(),
                            delivery.attempts,
                            delivery.round_attempts,
                            to_micros(delivery.round_started_at),
                            to_micros(delivery.created_at),
                            delivery.next_attempt_at.map(to_micros),
                            delivery.last_attempt_at.map(to_micros),
                            delivery.last_status,
                            delivery.last_error,
                            delivery.delivered_at.map(to_micros)
                        ])
                        .map_err(sql_error)?;
                }
            }
        }
        Ok(())
    }

    /// Records with their sidecars, and the Merkle nodes the writer would have stored with them
    /// (levels 4, 8, …), extending the tenant's tree from the leaf hashes checked against the
    /// sealed bytes.
    fn write_records(&mut self, tenant: &str, records: Vec<RecordRow>) -> StoreResult<()> {
        let imported = self
            .tenants
            .iter_mut()
            .find(|t| t.id == tenant)
            .ok_or_else(|| StoreError::Corrupt(format!("records of unknown tenant {tenant:?}")))?;
        let mut insert_record = self
            .ledger
            .prepare_cached(
                "INSERT INTO records (key, tenant_no, event_id, leaf_hash, sealed) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(sql_error)?;
        let mut insert_personal = self
            .ledger
            .prepare_cached("INSERT INTO personal (key, data, email_bidx, ip_bidx) VALUES (?1, ?2, ?3, ?4)")
            .map_err(sql_error)?;
        let mut insert_node = self
            .ledger
            .prepare_cached("INSERT INTO merkle_nodes (tenant_no, level, idx, hash) VALUES (?1, ?2, ?3, ?4)")
            .map_err(sql_error)?;
        let mut nodes = Vec::new();
        for record in records {
            let expected = imported.frontier.size();
            if record.seq != expected {
                return Err(StoreError::Corrupt(format!(
                    "tenant {tenant}: record seq {} where seq {expected} was expected",
                    record.seq
                )));
            }
            if record.seq > MAX_SEQ {
                return Err(StoreError::Backend(format!("tenant {tenant}: seq {} is too large", record.seq)));
            }
            let leaf = leaf_hash(&record.sealed);
            if leaf.0 != record.leaf_hash {
                return Err(StoreError::Corrupt(format!(
                    "tenant {tenant}: seq {}: stored leaf hash does not match the sealed record",
                    record.seq
                )));
            }
            let key = record_key(imported.no, record.seq);
            insert_record
                .execute(params![key, imported.no, record.event_id, leaf.0.as_slice(), record.sealed])
                .map_err(sql_error)?;
            if let Some(personal) = record.personal {
                insert_personal
                    .execute(params![key, personal.data, personal.email_bidx, personal.ip_bidx])
                    .map_err(sql_error)?;
            }
            imported
                .frontier
                .push_with(leaf, |node| {
                    if node.level % NODE_LEVEL_STEP == 0 {
                        nodes.push(node);
                    }
                })
                .map_err(|e| StoreError::Backend(format!("merkle tree of tenant {tenant} is full: {e}")))?;
            for node in nodes.drain(..) {
                insert_node
                    .execute(params![imported.no, node.level, node.index as i64, node.hash.0.as_slice()])
                    .map_err(sql_error)?;
            }
        }
        Ok(())
    }
}
