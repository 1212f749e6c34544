//! Schema migrations: plain SQL files embedded in the binary, applied in order, each once,
//! recorded in `schema_migrations`. All pending migrations run in one transaction under an
//! advisory lock, so nodes starting together never apply one twice and a failure applies none.

use tokio_postgres::Client;
use veritrail_store::{StoreError, StoreResult};

use crate::pg_error;

/// One schema change.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, oldest first. Released ones are never edited: changes are new entries.
const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial schema", sql: include_str!("../migrations/0001_initial.sql") },
    Migration { version: 2, name: "alerts", sql: include_str!("../migrations/0002_alerts.sql") },
    Migration { version: 3, name: "encryption at rest", sql: include_str!("../migrations/0003_encryption.sql") },
    Migration { version: 4, name: "access control", sql: include_str!("../migrations/0004_access.sql") },
    Migration { version: 5, name: "rule changes", sql: include_str!("../migrations/0005_rule_changes.sql") },
    Migration { version: 6, name: "engine nodes", sql: include_str!("../migrations/0006_engine_nodes.sql") },
];

/// Key of the transaction-scoped advisory lock migrators take (ASCII "vtmigrat").
const MIGRATION_LOCK: i64 = 0x7674_6d69_6772_6174;

/// The newest schema version this binary knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// A migration applied by [`run`]: its version and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Schema version it brought the database to.
    pub version: i32,
    /// What it does.
    pub name: String,
}

/// Applies every pending migration in one transaction; returns those applied (none when the
/// schema is current). Refuses a database whose schema is newer than this binary.
pub(crate) async fn run(client: &mut Client) -> StoreResult<Vec<Applied>> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_error)?;
    // Checked first rather than `IF NOT EXISTS`, whose notice would be logged at every start.
    let exists: bool =
        tx.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[]).await.map_err(pg_error)?.get(0);
    if !exists {
        tx.batch_execute(
            "CREATE TABLE schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(pg_error)?;
    }
    let rows = tx.query("SELECT version FROM schema_migrations ORDER BY version", &[]).await.map_err(pg_error)?;
    let done: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    if let Some(&newest) = done.last()
        && newest > latest_version()
    {
        return Err(StoreError::Backend(format!(
            "database schema version {newest} is newer than this binary ({}); upgrade veritrail",
            latest_version()
        )));
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        if done.contains(&migration.version) {
            continue;
        }
        tx.batch_execute(migration.sql).await.map_err(|e| {
            StoreError::Backend(format!("migration {} ({}) failed: {}", migration.version, migration.name, pg_error(e)))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(pg_error)?;
        applied.push(Applied { version: migration.version, name: migration.name.to_string() });
    }
    tx.commit().await.map_err(pg_error)?;
    for migration in &applied {
        tracing::info!(version = migration.version, name = %migration.name, "applied schema migration");
    }
    Ok(applied)
}
