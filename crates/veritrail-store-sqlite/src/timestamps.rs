//! `checkpoint_timestamps`: RFC 3161 time-stamps of stored checkpoints (ledger.sqlite). Written
//! on the writer thread like every ledger write, read on the reader pool.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use veritrail_store::{CheckpointTimestamp, StoreError, StoreResult};

use crate::sql_error;

/// Stores the time-stamp of the checkpoint at `timestamp.size` unless it has one already.
pub(crate) fn add(
    conn: &Connection,
    tenant_no: i64,
    timestamp: &CheckpointTimestamp,
    now: Timestamp,
) -> StoreResult<()> {
    let size = i64::try_from(timestamp.size)
        .map_err(|_| StoreError::Backend(format!("tree size {} is out of range", timestamp.size)))?;
    let checkpoint: Option<i64> = conn
        .query_row(
            "SELECT tree_size FROM checkpoints WHERE tenant_no = ?1 AND tree_size = ?2",
            params![tenant_no, size],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql_error)?;
    if checkpoint.is_none() {
        return Err(StoreError::Backend(format!("no checkpoint at size {} to time-stamp", timestamp.size)));
    }
    conn.execute(
        "INSERT OR IGNORE INTO checkpoint_timestamps (tenant_no, tree_size, response, created_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![tenant_no, size, timestamp.response, now.as_microsecond()],
    )
    .map_err(sql_error)?;
    Ok(())
}

/// The time-stamp of the checkpoint at `size`.
pub(crate) fn at(conn: &Connection, tenant_no: i64, size: u64) -> StoreResult<Option<CheckpointTimestamp>> {
    let Ok(size) = i64::try_from(size) else {
        return Ok(None);
    };
    conn.query_row(
        "SELECT tree_size, response FROM checkpoint_timestamps WHERE tenant_no = ?1 AND tree_size = ?2",
        params![tenant_no, size],
        row_to_timestamp,
    )
    .optional()
    .map_err(sql_error)
}

/// Time-stamps of checkpoints of size at most `max_size`, largest first, at most `limit`.
pub(crate) fn up_to(
    conn: &Connection,
    tenant_no: i64,
    max_size: u64,
    limit: u32,
) -> StoreResult<Vec<CheckpointTimestamp>> {
    let max_size = i64::try_from(max_size).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare(
            "SELECT tree_size, response FROM checkpoint_timestamps
             WHERE tenant_no = ?1 AND tree_size <= ?2 ORDER BY tree_size DESC LIMIT ?3",
        )
        .map_err(sql_error)?;
    let rows = stmt.query_map(params![tenant_no, max_size, limit], row_to_timestamp).map_err(sql_error)?;
    let mut timestamps = Vec::new();
    for row in rows {
        timestamps.push(row.map_err(sql_error)?);
    }
    Ok(timestamps)
}

fn row_to_timestamp(row: &rusqlite::Row<'_>) -> rusqlite::Result<CheckpointTimestamp> {
    let size: i64 = row.get(0)?;
    Ok(CheckpointTimestamp { size: size.max(0) as u64, response: row.get(1)? })
}
