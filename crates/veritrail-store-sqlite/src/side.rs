//! The small databases beside the ledger (`access.sqlite`, `alerts.sqlite`): one connection
//! each, shared behind a mutex, every call one transaction run off the async runtime.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Transaction};
use veritrail_store::{StoreError, StoreResult};

use crate::{restrict_permissions, sql_error};

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
                conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql_error)?;
            }
            let result = (|| {
                let tx = conn.transaction().map_err(sql_error)?;
                let result = work(&tx)?;
                tx.commit().map_err(sql_error)?;
                Ok(result)
            })();
            if !durable {
                conn.pragma_update(None, "synchronous", "FULL").map_err(sql_error)?;
            }
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("{file} task failed: {e}")))?
    }
}
