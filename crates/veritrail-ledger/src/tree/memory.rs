//! A tree held in memory, for tests and for verifying exported ledgers offline.

use crate::hash::{Hash, empty_root, node_hash};

use super::NodeSource;

/// Every perfect subtree of a tree, level by level, built as leaves are appended.
/// Uses about twice the memory of the leaf hashes; every [`NodeSource`] read is O(1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    /// `levels[l][i]` is the perfect subtree at level `l`, index `i`; `levels[0]` are the
    /// leaf hashes.
    levels: Vec<Vec<Hash>>,
}

/// The error of [`MemoryTree`] as a [`NodeSource`]: the subtree is not complete (it
/// reaches beyond the leaves appended so far).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no perfect subtree at level {level}, index {index}")]
pub struct MissingNode {
    /// The requested level.
    pub level: u32,
    /// The requested index.
    pub index: u64,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree of the given leaf hashes, in order.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = Self::new();
        for leaf in leaves {
            tree.push(leaf);
        }
        tree
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            // The new node completes its parent when it is a right child (odd index).
            if !row.len().is_multiple_of(2) {
                break;
            }
            hash = node_hash(&row[row.len() - 2], &hash);
            level += 1;
        }
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// The leaf hash at `index`, if any.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.node(0, index)
    }

    /// The root hash of the whole tree ([`root_at`](super::root_at) gives the roots of its
    /// prefixes).
    pub fn root(&self) -> Hash {
        // `levels[l].len() == size >> l`, so an odd row ends with one of the perfect
        // subtrees making up [0, size); fold them from the smallest (rightmost) up.
        let mut root: Option<Hash> = None;
        for row in &self.levels {
            if row.len().is_multiple_of(2) {
                continue;
            }
            let Some(subtree) = row.last() else {
                continue;
            };
            root = Some(match root {
                None => *subtree,
                Some(right) => node_hash(subtree, &right),
            });
        }
        root.unwrap_or_else(empty_root)
    }

    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        let row = self.levels.get(usize::try_from(level).ok()?)?;
        row.get(usize::try_from(index).ok()?).copied()
    }
}

impl NodeSource for MemoryTree {
    type Error = MissingNode;

    fn perfect_subtree(&self, level: u32, index: u64) -> Result<Hash, MissingNode> {
        self.node(level, index).ok_or(MissingNode { level, index })
    }
}
