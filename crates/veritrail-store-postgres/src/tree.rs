//! Reading stored Merkle subtree hashes: leaf hashes from `records`, internal nodes at every
//! [`NODE_LEVEL_STEP`]-th level from `merkle_nodes`, anything in between folded on the fly (at
//! most 2^(STEP-1) hashes per node). All requested subtrees cost two queries in one snapshot.

use std::collections::HashMap;

use tokio_postgres::GenericClient;
use veritrail_ledger::hash::{Hash, node_hash};
use veritrail_store::{StoreError, StoreResult};

use crate::pg_error;

/// Internal Merkle levels that are stored: multiples of this (as in the embedded backend).
pub(crate) const NODE_LEVEL_STEP: u32 = 4;

/// Where the hashes a subtree is folded from are stored: `width` consecutive hashes at
/// `base_level` (0 = leaves), starting at index `first`.
struct Plan {
    base_level: u32,
    first: u64,
    width: u64,
}

fn plan(level: u32, index: u64) -> StoreResult<Plan> {
    if level >= 63 {
        return Err(StoreError::Corrupt(format!("subtree level {level} is out of range")));
    }
    let base_level = level - level % NODE_LEVEL_STEP;
    let width = 1u64 << (level - base_level);
    let first = index
        .checked_mul(width)
        .filter(|first| first.checked_add(width).is_some_and(|end| end <= i64::MAX as u64))
        .ok_or_else(|| StoreError::Corrupt(format!("subtree index {index} is out of range")))?;
    Ok(Plan { base_level, first, width })
}

/// Hashes of the perfect subtrees `(level, index)` of a tenant's tree, in request order. Run
/// inside one transaction (a snapshot) so every hash comes from the same tree.
pub(crate) async fn subtree_hashes(
    client: &impl GenericClient,
    tenant_no: i64,
    nodes: &[(u32, u64)],
) -> StoreResult<Vec<Hash>> {
    let mut plans = Vec::with_capacity(nodes.len());
    let mut leaf_seqs: Vec<i64> = Vec::new();
    let (mut node_levels, mut node_indexes): (Vec<i32>, Vec<i64>) = (Vec::new(), Vec::new());
    for &(level, index) in nodes {
        let plan = plan(level, index)?;
        for i in plan.first..plan.first + plan.width {
            if plan.base_level == 0 {
                leaf_seqs.push(i as i64);
            } else {
                node_levels.push(plan.base_level as i32);
                node_indexes.push(i as i64);
            }
        }
        plans.push(plan);
    }
    let mut stored: HashMap<(u32, u64), Hash> = HashMap::new();
    if !leaf_seqs.is_empty() {
        let rows = client
            .query(
                "SELECT seq, leaf_hash FROM records WHERE tenant_no = $1 AND seq = ANY($2)",
                &[&tenant_no, &leaf_seqs],
            )
            .await
            .map_err(pg_error)?;
        for row in rows {
            let seq: i64 = row.get(0);
            stored.insert((0, seq as u64), to_hash(row.get(1))?);
        }
    }
    if !node_levels.is_empty() {
        let rows = client
            .query(
                "SELECT n.level, n.idx, n.hash FROM merkle_nodes n
                 JOIN unnest($2::integer[], $3::bigint[]) AS wanted (level, idx)
                   ON n.level = wanted.level AND n.idx = wanted.idx
                 WHERE n.tenant_no = $1",
                &[&tenant_no, &node_levels, &node_indexes],
            )
            .await
            .map_err(pg_error)?;
        for row in rows {
            let (level, index): (i32, i64) = (row.get(0), row.get(1));
            stored.insert((level as u32, index as u64), to_hash(row.get(2))?);
        }
    }
    let mut hashes = Vec::with_capacity(nodes.len());
    for (plan, &(level, index)) in plans.iter().zip(nodes) {
        let mut layer = Vec::with_capacity(plan.width as usize);
        for i in plan.first..plan.first + plan.width {
            let hash = stored.get(&(plan.base_level, i)).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "missing merkle hashes for subtree level {level} index {index} of tenant {tenant_no}"
                ))
            })?;
            layer.push(*hash);
        }
        while layer.len() > 1 {
            layer = layer.chunks(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
        }
        hashes.push(layer[0]);
    }
    Ok(hashes)
}

/// Converts a stored 32-byte value to a [`Hash`].
pub(crate) fn to_hash(bytes: &[u8]) -> StoreResult<Hash> {
    let array: [u8; 32] =
        bytes.try_into().map_err(|_| StoreError::Corrupt(format!("stored hash has {} bytes, not 32", bytes.len())))?;
    Ok(Hash(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_fold_from_the_nearest_stored_level_below() {
        let at = |level, index| {
            let p = plan(level, index).expect("in range");
            (p.base_level, p.first, p.width)
        };
        assert_eq!(at(0, 5), (0, 5, 1));
        assert_eq!(at(3, 2), (0, 16, 8));
        assert_eq!(at(4, 2), (4, 2, 1));
        assert_eq!(at(6, 1), (4, 4, 4));
        assert!(plan(63, 0).is_err());
        assert!(plan(3, u64::MAX / 4).is_err());
    }
}
