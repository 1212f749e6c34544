//! The small databases beside the ledger (`access.sqlite`, `alerts.sqlite`): one connection
//! each, shared behind a mutex, every call one transaction run off the async runtime.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Params, Row, Transaction};
use veritrail_store::{StoreError, StoreResult};

use crate::{restrict_permissions, sql_error};

/// Statements kept compiled per side database: more than the distinct statements the alert
/// and access stores run, so none is ever compiled twice.
const STATEMENT_CACHE: usize = 128;

/// An open side database. Cheap to clone; the clones share the connection.
#[derive(Clone)]
pub(crate) struct SideDb {
    conn: Arc<Mutex<Connection>>,
    file: &'static str,
}

impl SideDb {
    /// Opens (creating if needed) `file` in `dir`, private to the owner, in WAL mode with
    /// durable commits, and brings it to `schema` at `version` (refusing a newer file).
    /// `secure_delete` zeroes deleted rows' bytes (for files holding secrets).
    pub(crate) fn open(
        dir: &Path,
        file: &'static str,
        schema: &str,
        version: i64,
        secure_delete: bool,
    ) -> StoreResult<SideDb> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(file);
        let conn = Connection::open(&path).map_err(sql_error)?;
        restrict_permissions(&path, 0o600)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql_error)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql_error)?;
        conn.pragma_update(None, "busy_timeout", 5000).map_err(sql_error)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(sql_error)?;
        if secure_delete {
            conn.pragma_update(None, "secure_delete", "ON").map_err(sql_error)?;
        }
        let found: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(sql_error)?;
        if found > version {
            return Err(StoreError::Corrupt(format!(
                "{file} has schema version {found}, newer than this build knows ({version})"
            )));
        }
        conn.execute_batch(schema).map_err(sql_error)?;
        conn.pragma_update(None, "user_version", version).map_err(sql_error)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        crate::schema::fixed_plans(&conn).map_err(sql_error)?;
        Ok(SideDb { conn: Arc::new(Mutex::new(conn)), file })
    }

    /// Runs `work` in a transaction, off the async runtime. Durable when it returns if
    /// `durable`; otherwise committed without waiting for the disk (it gets there with the next
    /// durable commit or WAL checkpoint), for writes whose loss costs nothing but a repeat.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        durable: bool,
        work: impl FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let conn = self.conn.clone();
        let file = self.file;
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            if !durable {
                conn.execute_cached("PRAGMA synchronous = NORMAL", []).map_err(sql_error)?;
            }
            let result = (|| {
                let tx = conn.transaction().map_err(sql_error)?;
                let result = work(&tx)?;
                tx.commit().map_err(sql_error)?;
                Ok(result)
            })();
            if !durable {
                conn.execute_cached("PRAGMA synchronous = FULL", []).map_err(sql_error)?;
            }
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("{file} task failed: {e}")))?
    }
}

/// `execute` and `query_row` through the connection's statement cache. The side databases run
/// the same few dozen statements over and over (an alert and its deliveries are ~6 statements),
/// and compiling one cost more than running it: ~1 µs of CPU per ingested event under the
/// default rule pack went to SQLite's parser before these were cached.
pub(crate) trait CachedSql {
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn query_row_cached<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        read: F,
    ) -> rusqlite::Result<T>;
}

impl CachedSql for Connection {
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        read: F,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, read)
    }
}
