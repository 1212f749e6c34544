//! Reading stored Merkle subtree hashes: leaf hashes from `records`, internal nodes at every
//! [`NODE_LEVEL_STEP`]-th level from `merkle_nodes`, anything in between folded on the fly (at
//! most 2^(STEP-1) hashes read per node).

use rusqlite::{Connection, OptionalExtension, params};
use veritrail_ledger::hash::{Hash, node_hash};
use veritrail_ledger::tree::{Frontier, NodeSource};
use veritrail_store::{StoreError, StoreResult};

use crate::schema::{NODE_LEVEL_STEP, record_key};
use crate::sql_error;

/// Hash of the perfect subtree at `level`, `index` of a tenant's tree.
pub(crate) fn subtree_hash(conn: &Connection, tenant_no: i64, level: u32, index: u64) -> StoreResult<Hash> {
    if level >= 40 {
        return Err(StoreError::Corrupt(format!("subtree level {level} is out of range")));
    }
    let base = level - level % NODE_LEVEL_STEP;
    let width = 1u64 << (level - base);
    let first = index
        .checked_mul(width)
        .ok_or_else(|| StoreError::Corrupt(format!("subtree index {index} is out of range")))?;
    let mut hashes = if base == 0 {
        read_leaf_hashes(conn, tenant_no, first, width)?
    } else {
        read_nodes(conn, tenant_no, base, first, width)?
    };
    if hashes.len() as u64 != width {
        return Err(StoreError::Corrupt(format!(
            "missing merkle hashes for subtree level {level} index {index} of tenant {tenant_no}"
        )));
    }
    while hashes.len() > 1 {
        hashes = hashes.chunks(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
    }
    Ok(hashes[0])
}

fn read_leaf_hashes(conn: &Connection, tenant_no: i64, first: u64, count: u64) -> StoreResult<Vec<Hash>> {
    let mut stmt = conn
        .prepare_cached("SELECT leaf_hash FROM records WHERE key BETWEEN ?1 AND ?2 ORDER BY key")
        .map_err(sql_error)?;
    let lo = record_key(tenant_no, first);
    let rows = stmt.query_map(params![lo, lo + count as i64 - 1], |row| row.get::<_, Vec<u8>>(0)).map_err(sql_error)?;
    collect_hashes(rows)
}

fn read_nodes(conn: &Connection, tenant_no: i64, level: u32, first: u64, count: u64) -> StoreResult<Vec<Hash>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT hash FROM merkle_nodes WHERE tenant_no = ?1 AND level = ?2 AND idx BETWEEN ?3 AND ?4 ORDER BY idx",
        )
        .map_err(sql_error)?;
    let rows = stmt
        .query_map(params![tenant_no, level, first as i64, (first + count - 1) as i64], |row| row.get::<_, Vec<u8>>(0))
        .map_err(sql_error)?;
    collect_hashes(rows)
}

fn collect_hashes(rows: impl Iterator<Item = rusqlite::Result<Vec<u8>>>) -> StoreResult<Vec<Hash>> {
    let mut hashes = Vec::new();
    for row in rows {
        hashes.push(to_hash(&row.map_err(sql_error)?)?);
    }
    Ok(hashes)
}

/// Converts a stored 32-byte blob to a [`Hash`].
pub(crate) fn to_hash(bytes: &[u8]) -> StoreResult<Hash> {
    let array: [u8; 32] =
        bytes.try_into().map_err(|_| StoreError::Corrupt(format!("stored hash has {} bytes, not 32", bytes.len())))?;
    Ok(Hash(array))
}

/// Number of records of a tenant (its next `seq`).
pub(crate) fn tree_size(conn: &Connection, tenant_no: i64) -> StoreResult<u64> {
    let max: Option<i64> = conn
        .query_row(
            "SELECT max(key) FROM records WHERE key BETWEEN ?1 AND ?2",
            params![record_key(tenant_no, 0), record_key(tenant_no, crate::schema::MAX_SEQ)],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql_error)?
        .flatten();
    Ok(max.map(|key| crate::schema::key_seq(key) + 1).unwrap_or(0))
}

/// The tenant's frontier (compact range) at `size`, rebuilt from stored hashes.
pub(crate) fn load_frontier(conn: &Connection, tenant_no: i64, size: u64) -> StoreResult<Frontier> {
    Frontier::from_source(size, &StoredTree { conn, tenant_no })
}

/// A tenant's stored tree as the ledger crate's [`NodeSource`].
struct StoredTree<'a> {
    conn: &'a Connection,
    tenant_no: i64,
}

impl NodeSource for StoredTree<'_> {
    type Error = StoreError;
    fn perfect_subtree(&self, level: u32, index: u64) -> StoreResult<Hash> {
        subtree_hash(self.conn, self.tenant_no, level, index)
    }
}
