//! The small databases beside the ledger (`access.sqlite`, `alerts.sqlite`): one connection
//! each, shared behind a mutex, every call one transaction run off the async runtime.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Row, Transaction};
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
        self.run_as(if durable { Mode::Durable } else { Mode::Lazy }, work).await
    }

    /// [`SideDb::run`], durable, with SQLite's `secure_delete` on for the transaction: the bytes
    /// of rows it changes or deletes are overwritten in the database file, not left in free
    /// space (for rewrites that erase personal data). Earlier page images can survive in the
    /// WAL file until it is checkpointed and reused.
    pub(crate) async fn run_overwriting<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.run_as(Mode::Overwriting, work).await
    }

    async fn run_as<T: Send + 'static>(
        &self,
        mode: Mode,
        work: impl FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let conn = self.conn.clone();
        let file = self.file;
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            // Not through the statement cache: SQLite compiles a PRAGMA afresh at every run
            // (it applies the setting while compiling, and marks the statement run-once).
            let restore = match mode {
                Mode::Durable => None,
                Mode::Lazy => {
                    conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql_error)?;
                    Some(("synchronous", SYNCHRONOUS_FULL))
                }
                Mode::Overwriting => {
                    let before: i64 =
                        conn.query_row("PRAGMA secure_delete", [], |row| row.get(0)).map_err(sql_error)?;
                    conn.pragma_update(None, "secure_delete", 1).map_err(sql_error)?;
                    Some(("secure_delete", before))
                }
            };
            let result = (|| {
                let tx = conn.transaction().map_err(sql_error)?;
                let result = work(&tx)?;
                tx.commit().map_err(sql_error)?;
                Ok(result)
            })();
            if let Some((pragma, value)) = restore {
                conn.pragma_update(None, pragma, value).map_err(sql_error)?;
            }
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("{file} task failed: {e}")))?
    }
}

/// `PRAGMA synchronous = FULL`, the side databases' level outside lazy commits.
const SYNCHRONOUS_FULL: i64 = 2;

/// How [`SideDb::run_as`] commits.
#[derive(Clone, Copy)]
enum Mode {
    /// Synced before it returns.
    Durable,
    /// Without waiting for the disk.
    Lazy,
    /// Synced, with `secure_delete` on.
    Overwriting,
}

/// Every row of `sql` (with `args`), read by `read` and converted by `convert`, through the
/// connection's statement cache (both side databases list their rows this way).
pub(crate) fn collect<T, R>(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    read: fn(&Row<'_>) -> rusqlite::Result<R>,
    convert: fn(R) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(sql_error)?;
    let rows = stmt.query_map(args, read).map_err(sql_error)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(convert(row.map_err(sql_error)?)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::SideDb;

    /// The sync level each call commits at, read inside its transaction.
    async fn level(db: &SideDb, durable: bool) -> i64 {
        db.run(durable, |tx| tx.query_row("PRAGMA synchronous", [], |row| row.get(0)).map_err(crate::sql_error))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn every_call_commits_at_the_level_it_asks_for() {
        let dir = tempfile::tempdir().unwrap();
        let db =
            SideDb::open(dir.path(), "side.sqlite", "CREATE TABLE IF NOT EXISTS t (x INTEGER);", 1, false).unwrap();
        // NORMAL is 1, FULL is 2; again and again, in any order.
        for durable in [false, true, false, false, true, true, false] {
            assert_eq!(level(&db, durable).await, if durable { 2 } else { 1 }, "durable: {durable}");
        }
    }
}
