//! The append-only state of a tree: its size and the perfect subtrees covering it.

use crate::hash::{Hash, empty_root, node_hash};

use super::NodeSource;

/// A perfect subtree that a [`Frontier::push`] has just completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedNode {
    /// Its level (at least 1: leaves are not reported).
    pub level: u32,
    /// Its index within the level.
    pub index: u64,
    /// Its hash, which never changes afterwards.
    pub hash: Hash,
}

/// Why a [`Frontier`] could not be built or extended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontierError {
    /// A tree of `size` leaves is made of `expected` perfect subtrees, not `actual`.
    #[error("a tree of size {size} has {expected} perfect subtrees, got {actual}")]
    SubtreeCount {
        /// The tree size.
        size: u64,
        /// The number of perfect subtrees of a tree of that size (its number of 1 bits).
        expected: usize,
        /// The number of hashes given.
        actual: usize,
    },
    /// The tree already holds `u64::MAX` leaves.
    #[error("the tree is full")]
    Full,
}

/// The compact range `[0, size)` of a tree: for each 1 bit of `size`, from the highest, the
/// hash of one perfect subtree. This is all the writer needs to append leaves and compute
/// the current root; `push` costs O(1) amortised hashes and no allocation beyond its result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    /// Left to right, largest first; `subtrees.len() == size.count_ones()`.
    subtrees: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a frontier from the hashes of [`subtrees_for_size`]`(size)`, in that order.
    pub fn from_subtrees(size: u64, hashes: Vec<Hash>) -> Result<Self, FrontierError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(FrontierError::SubtreeCount { size, expected, actual: hashes.len() });
        }
        Ok(Self { size, subtrees: hashes })
    }

    /// Restores a frontier by reading [`subtrees_for_size`]`(size)` from a store.
    pub fn from_source<S: NodeSource + ?Sized>(size: u64, source: &S) -> Result<Self, S::Error> {
        let mut subtrees = Vec::with_capacity(size.count_ones() as usize);
        for (level, index) in subtrees_for_size(size) {
            subtrees.push(source.perfect_subtree(level, index)?);
        }
        Ok(Self { size, subtrees })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtree hashes, left to right, matching [`subtrees_for_size`]`(self.size())`.
    pub fn subtrees(&self) -> &[Hash] {
        &self.subtrees
    }

    /// Appends a leaf hash and returns the perfect subtrees (level >= 1) it completed, lowest
    /// first, so that a store can persist them.
    pub fn push(&mut self, leaf: Hash) -> Result<Vec<CompletedNode>, FrontierError> {
        let mut completed = Vec::with_capacity(self.size.trailing_ones() as usize);
        self.push_with(leaf, |node| completed.push(node))?;
        Ok(completed)
    }

    /// Like [`Frontier::push`], but hands each completed subtree to `on_complete` instead of
    /// allocating a `Vec`.
    pub fn push_with(&mut self, leaf: Hash, mut on_complete: impl FnMut(CompletedNode)) -> Result<(), FrontierError> {
        let leaf_index = self.size;
        let new_size = leaf_index.checked_add(1).ok_or(FrontierError::Full)?;

        // Each trailing 1 bit of the old size is a perfect subtree waiting for a right
        // sibling of the same level; the new leaf completes them from the smallest up.
        let merges = leaf_index.trailing_ones() as usize;
        let first_merged = self.subtrees.len().saturating_sub(merges);
        let mut hash = leaf;
        let mut level = 0;
        for left in self.subtrees.drain(first_merged..).rev() {
            level += 1;
            hash = node_hash(&left, &hash);
            on_complete(CompletedNode { level, index: leaf_index >> level, hash });
        }
        debug_assert_eq!(level as usize, merges);

        self.subtrees.push(hash);
        self.size = new_size;
        Ok(())
    }

    /// The RFC 6962 Merkle tree hash of the leaves so far ([`empty_root`] when empty).
    pub fn root(&self) -> Hash {
        // MTH(D[n]) = H(MTH(D[0:k]) || MTH(D[k:n])) unrolls into folding the perfect
        // subtrees from the right.
        let mut subtrees = self.subtrees.iter().rev();
        let Some(&rightmost) = subtrees.next() else {
            return empty_root();
        };
        let mut root = rightmost;
        for left in subtrees {
            root = node_hash(left, &root);
        }
        root
    }
}

/// The perfect subtrees `(level, index)`, left to right, that make up the leaves
/// `[0, size)`: one per 1 bit of `size`, from the highest.
pub fn subtrees_for_size(size: u64) -> Vec<(u32, u64)> {
    let mut subtrees = Vec::with_capacity(size.count_ones() as usize);
    let mut start = 0u64;
    for level in (0..u64::BITS).rev() {
        let width = 1u64 << level;
        if size & width != 0 {
            subtrees.push((level, start >> level));
            start += width;
        }
    }
    subtrees
}
