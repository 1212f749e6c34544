//! Reading stored Merkle subtree hashes: leaf hashes from `records`, internal nodes at every
//! [`NODE_LEVEL_STEP`]-th level from `merkle_nodes`, anything in between folded on the fly (at
//! most 2^(STEP-1) hashes per node, one range read per aligned block of 2^STEP stored entries
//! however many requested subtrees it holds).

use rusqlite::{Connection, OptionalExtension, params};
use veritrail_ledger::hash::{Hash, node_hash};
use veritrail_ledger::tree::{Frontier, subtrees_for_size};
use veritrail_store::{StoreError, StoreResult};

use crate::schema::{MAX_SEQ, NODE_LEVEL_STEP, key_seq, record_key};
use crate::sql_error;

/// Stored entries (leaf hashes, or nodes of one stored level) folded into one requested subtree:
/// below the next stored level, at most 2^(STEP-1) of them.
#[derive(Debug, Clone, Copy)]
struct Span {
    /// The stored level the subtree is folded from (0: leaf hashes in `records`).
    base: u32,
    /// Its first entry at that level, and how many.
    first: u64,
    width: u64,
}

impl Span {
    fn of(tenant_no: i64, level: u32, index: u64) -> StoreResult<Span> {
        if level >= 40 {
            return Err(StoreError::Corrupt(format!("subtree level {level} is out of range")));
        }
        let base = level - level % NODE_LEVEL_STEP;
        let width = 1u64 << (level - base);
        let first =
            index.checked_mul(width).filter(|first| first.saturating_add(width) <= MAX_SEQ + 1).ok_or_else(|| {
                StoreError::Corrupt(format!("subtree index {index} of tenant {tenant_no} is out of range"))
            })?;
        Ok(Span { base, first, width })
    }

    /// The aligned block of 2^STEP entries it lies in: the entries one stored node covers, and
    /// what one read fetches for every requested subtree inside it.
    fn block(&self) -> (u32, u64) {
        (self.base, self.first >> NODE_LEVEL_STEP)
    }
}

/// Hashes of the perfect subtrees `(level, index)` of a tenant's tree, in the order asked.
///
/// Subtrees folded from the same aligned block of 2^STEP stored entries share one range read: an
/// inclusion proof asks for a sibling at every level, i.e. for four subtrees of the same block
/// at each stored level, which is one read per stored level instead of four (and, for the leaf
/// hashes spread over fat `records` rows, the same few pages once).
pub(crate) fn subtree_hashes(conn: &Connection, tenant_no: i64, nodes: &[(u32, u64)]) -> StoreResult<Vec<Hash>> {
    let mut spans = Vec::with_capacity(nodes.len());
    for &(level, index) in nodes {
        spans.push(Span::of(tenant_no, level, index)?);
    }
    // Per block: the entries from the first needed to the last needed, read once.
    let mut blocks: Vec<Block> = Vec::new();
    for span in &spans {
        let end = span.first + span.width;
        match blocks.iter_mut().find(|block| block.id == span.block()) {
            Some(block) => {
                block.first = block.first.min(span.first);
                block.end = block.end.max(end);
            }
            None => blocks.push(Block { id: span.block(), first: span.first, end, entries: Vec::new() }),
        }
    }
    for block in &mut blocks {
        block.read(conn, tenant_no)?;
    }
    let mut folded = Vec::with_capacity(spans.len());
    for (span, &(level, index)) in spans.iter().zip(nodes) {
        let entries = blocks.iter().find(|block| block.id == span.block()).and_then(|block| block.entries_of(span));
        let Some(entries) = entries else {
            return Err(StoreError::Corrupt(format!(
                "missing merkle hashes for subtree level {level} index {index} of tenant {tenant_no}"
            )));
        };
        folded.push(fold(&entries));
    }
    Ok(folded)
}

/// One aligned block of stored entries and the part of it read.
struct Block {
    /// `(stored level, index of the block)`, as [`Span::block`].
    id: (u32, u64),
    /// The entries `first..end` at that level; `entries[i]` is entry `first + i`, if stored.
    first: u64,
    end: u64,
    entries: Vec<Option<Hash>>,
}

impl Block {
    fn read(&mut self, conn: &Connection, tenant_no: i64) -> StoreResult<()> {
        self.entries = vec![None; (self.end - self.first) as usize];
        let rows = if self.id.0 == 0 {
            read_leaf_hashes(conn, tenant_no, self.first, self.end)?
        } else {
            read_nodes(conn, tenant_no, self.id.0, self.first, self.end)?
        };
        for (at, hash) in rows {
            if let Some(slot) = at.checked_sub(self.first).and_then(|i| self.entries.get_mut(i as usize)) {
                *slot = Some(hash);
            }
        }
        Ok(())
    }

    /// The entries of a span inside this block, if all are stored.
    fn entries_of(&self, span: &Span) -> Option<Vec<Hash>> {
        let offset = usize::try_from(span.first.checked_sub(self.first)?).ok()?;
        self.entries.get(offset..offset + span.width as usize)?.iter().copied().collect()
    }
}

/// The root of a perfect subtree from its 2^k entries at one level.
fn fold(entries: &[Hash]) -> Hash {
    debug_assert!(entries.len().is_power_of_two());
    let mut level = entries.to_vec();
    while level.len() > 1 {
        level = level.chunks(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
    }
    level[0]
}

/// `(seq, leaf hash)` of the records with seqs `first..end` that exist, in seq order.
fn read_leaf_hashes(conn: &Connection, tenant_no: i64, first: u64, end: u64) -> StoreResult<Vec<(u64, Hash)>> {
    let mut stmt = conn
        .prepare_cached("SELECT key, leaf_hash FROM records WHERE key BETWEEN ?1 AND ?2 ORDER BY key")
        .map_err(sql_error)?;
    let rows = stmt
        .query_map(params![record_key(tenant_no, first), record_key(tenant_no, end - 1)], |row| {
            Ok((key_seq(row.get(0)?), row.get::<_, Vec<u8>>(1)?))
        })
        .map_err(sql_error)?;
    collect_hashes(rows)
}

/// `(index, hash)` of the stored nodes `first..end` of one level that exist, in index order.
fn read_nodes(conn: &Connection, tenant_no: i64, level: u32, first: u64, end: u64) -> StoreResult<Vec<(u64, Hash)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT idx, hash FROM merkle_nodes WHERE tenant_no = ?1 AND level = ?2 AND idx BETWEEN ?3 AND ?4 ORDER BY idx",
        )
        .map_err(sql_error)?;
    let rows = stmt
        .query_map(params![tenant_no, level, first as i64, (end - 1) as i64], |row| {
            Ok((row.get::<_, i64>(0)? as u64, row.get::<_, Vec<u8>>(1)?))
        })
        .map_err(sql_error)?;
    collect_hashes(rows)
}

fn collect_hashes(rows: impl Iterator<Item = rusqlite::Result<(u64, Vec<u8>)>>) -> StoreResult<Vec<(u64, Hash)>> {
    let mut hashes = Vec::new();
    for row in rows {
        let (at, bytes) = row.map_err(sql_error)?;
        hashes.push((at, to_hash(&bytes)?));
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
            params![record_key(tenant_no, 0), record_key(tenant_no, MAX_SEQ)],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql_error)?
        .flatten();
    Ok(max.map(|key| crate::schema::key_seq(key) + 1).unwrap_or(0))
}

/// The tenant's frontier (compact range) at `size`, rebuilt from stored hashes.
pub(crate) fn load_frontier(conn: &Connection, tenant_no: i64, size: u64) -> StoreResult<Frontier> {
    let hashes = subtree_hashes(conn, tenant_no, &subtrees_for_size(size))?;
    Frontier::from_subtrees(size, hashes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rusqlite::{Connection, params};
    use veritrail_ledger::hash::{Hash, leaf_hash};
    use veritrail_ledger::tree::{self, Frontier, MemoryTree, NodeSource};
    use veritrail_store::StoreError;

    use super::{load_frontier, subtree_hashes};
    use crate::schema::{NODE_LEVEL_STEP, migrate_ledger, record_key};

    const TENANT: i64 = 3;

    /// A ledger of `size` records stored as the writer stores them, and the same tree in memory.
    fn ledger(size: u64) -> (Connection, MemoryTree) {
        let conn = Connection::open_in_memory().expect("open");
        migrate_ledger(&conn).expect("schema");
        let mut frontier = Frontier::new();
        let mut leaves = Vec::new();
        for seq in 0..size {
            let leaf = leaf_hash(format!("record {seq}").as_bytes());
            leaves.push(leaf);
            conn.execute(
                "INSERT INTO records (key, tenant_no, event_id, leaf_hash, sealed) VALUES (?1, ?2, ?3, ?4, x'00')",
                params![record_key(TENANT, seq), TENANT, format!("evt_{seq}"), leaf.as_bytes().as_slice()],
            )
            .expect("record");
            let mut completed = Vec::new();
            frontier.push_with(leaf, |node| completed.push(node)).expect("room");
            for node in completed.into_iter().filter(|node| node.level % NODE_LEVEL_STEP == 0) {
                conn.execute(
                    "INSERT INTO merkle_nodes (tenant_no, level, idx, hash) VALUES (?1, ?2, ?3, ?4)",
                    params![TENANT, node.level, node.index as i64, node.hash.as_bytes().as_slice()],
                )
                .expect("node");
            }
        }
        (conn, MemoryTree::from_leaves(leaves))
    }

    /// Answers from hashes read in one batch, as the server's proofs do.
    struct Fetched(HashMap<(u32, u64), Hash>);

    impl NodeSource for Fetched {
        type Error = String;
        fn perfect_subtree(&self, level: u32, index: u64) -> Result<Hash, String> {
            self.0.get(&(level, index)).copied().ok_or_else(|| format!("({level}, {index}) not fetched"))
        }
    }

    /// The nodes a proof generator asks for.
    struct Recorder(std::cell::RefCell<Vec<(u32, u64)>>);

    impl NodeSource for Recorder {
        type Error = String;
        fn perfect_subtree(&self, level: u32, index: u64) -> Result<Hash, String> {
            self.0.borrow_mut().push((level, index));
            Ok(Hash([0; 32]))
        }
    }

    fn fetch(conn: &Connection, nodes: Vec<(u32, u64)>) -> Fetched {
        let hashes = subtree_hashes(conn, TENANT, &nodes).expect("stored tree");
        Fetched(nodes.into_iter().zip(hashes).collect())
    }

    #[test]
    fn batched_reads_give_the_proofs_and_roots_of_the_tree() {
        let (conn, memory) = ledger(300);
        for size in [1, 2, 15, 16, 17, 31, 255, 256, 257, 300] {
            let frontier = load_frontier(&conn, TENANT, size).expect("frontier");
            assert_eq!(frontier.root(), tree::root_at(size, &memory).expect("memory"), "root at {size}");
            for seq in (0..size).step_by(7).chain([size - 1]) {
                let recorder = Recorder(Default::default());
                tree::inclusion_proof(seq, size, &recorder).expect("recorded");
                let fetched = fetch(&conn, recorder.0.into_inner());
                let proof = tree::inclusion_proof(seq, size, &fetched).expect("proof");
                assert_eq!(proof, tree::inclusion_proof(seq, size, &memory).expect("memory"), "seq {seq} of {size}");
            }
            for first in (1..size).step_by(13) {
                let recorder = Recorder(Default::default());
                tree::consistency_proof(first, size, &recorder).expect("recorded");
                let fetched = fetch(&conn, recorder.0.into_inner());
                let proof = tree::consistency_proof(first, size, &fetched).expect("proof");
                assert_eq!(proof, tree::consistency_proof(first, size, &memory).expect("memory"), "{first} of {size}");
            }
        }
    }

    #[test]
    fn a_missing_record_fails_only_the_subtrees_over_it() {
        let (conn, memory) = ledger(40);
        conn.execute("DELETE FROM records WHERE key = ?1", [record_key(TENANT, 21)]).expect("delete");
        // Leaves 20..22 and 16..24 lie over seq 21; 16..20 and 22, in the same block, do not.
        for node in [(1, 10), (3, 2), (0, 21)] {
            let error = subtree_hashes(&conn, TENANT, &[(2, 4), node, (0, 22)]).expect_err("hole");
            assert!(matches!(error, StoreError::Corrupt(_)), "{node:?}: {error}");
        }
        let hashes = subtree_hashes(&conn, TENANT, &[(0, 22), (2, 4), (4, 0)]).expect("no hole under these");
        let expected: Vec<Hash> = [(0, 22), (2, 4), (4, 0)]
            .map(|(level, index)| memory.perfect_subtree(level, index).expect("memory"))
            .into();
        assert_eq!(hashes, expected);
        // Beyond the tree.
        assert!(subtree_hashes(&conn, TENANT, &[(3, 5)]).is_err());
        assert!(subtree_hashes(&conn, TENANT, &[(4, 3)]).is_err());
    }
}
