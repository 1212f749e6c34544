//! Proof verification: the RFC 9162 §2.1.3.2 and §2.1.4.2 algorithms, step for step.
//!
//! `fn`/`sn` of the RFC are `node`/`last_node` here: the index of the current node and of
//! the last node of the tree at the current level, both shifted right as the walk climbs.

use crate::hash::{Hash, node_hash};

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The claimed leaf index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The first tree is larger than the second.
    #[error("first tree size {first} is larger than second tree size {second}")]
    SizeOrder {
        /// The first (older) tree size.
        first: u64,
        /// The second (newer) tree size.
        second: u64,
    },
    /// The proof has more hashes than the tree sizes allow.
    #[error("proof is too long")]
    ProofTooLong,
    /// The proof has fewer hashes than the tree sizes need.
    #[error("proof is too short")]
    ProofTooShort,
    /// There is nothing to prove (equal sizes, or an empty first tree), yet the proof is
    /// not empty.
    #[error("proof must be empty")]
    ProofNotEmpty,
    /// The hashes do not lead to the expected root (of the second tree, for consistency).
    #[error("proof does not lead to the expected root hash")]
    RootMismatch,
    /// A consistency proof does not lead to the first tree's root.
    #[error("proof does not lead to the first tree's root hash")]
    FirstRootMismatch,
}

/// Checks that `leaf` is the leaf hash at `index` in the tree of `tree_size` leaves whose
/// root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if root_from_inclusion_proof(leaf, index, tree_size, proof)? != *root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// The root hash that an inclusion proof leads to, or an error if the proof's length does
/// not fit `index` and `tree_size`. Compare the result with a trusted root.
pub fn root_from_inclusion_proof(leaf: &Hash, index: u64, tree_size: u64, proof: &[Hash]) -> Result<Hash, VerifyError> {
    if index >= tree_size {
        return Err(VerifyError::IndexOutOfRange { index, size: tree_size });
    }
    let mut node = index;
    let mut last_node = tree_size - 1;
    let mut hash = *leaf;
    for sibling in proof {
        if last_node == 0 {
            return Err(VerifyError::ProofTooLong);
        }
        if is_right_child(node) || node == last_node {
            hash = node_hash(sibling, &hash);
            if !is_right_child(node) {
                // A last node without a right sibling: climb the levels it is promoted
                // through unchanged.
                (node, last_node) = climb_while_left_child(node, last_node);
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        node >>= 1;
        last_node >>= 1;
    }
    if last_node != 0 {
        return Err(VerifyError::ProofTooShort);
    }
    Ok(hash)
}

/// Checks that the tree of `first` leaves with root `first_root` is a prefix of the tree of
/// `second` leaves with root `second_root` (RFC 9162 §2.1.4.2).
///
/// Edge cases: `first == second` needs an empty proof and equal roots; `first == 0` (the
/// empty tree is a prefix of every tree) needs an empty proof and nothing else.
pub fn verify_consistency(
    first: u64,
    second: u64,
    proof: &[Hash],
    first_root: &Hash,
    second_root: &Hash,
) -> Result<(), VerifyError> {
    if first > second {
        return Err(VerifyError::SizeOrder { first, second });
    }
    if first == second || first == 0 {
        if !proof.is_empty() {
            return Err(VerifyError::ProofNotEmpty);
        }
        if first == second && first_root != second_root {
            return Err(VerifyError::RootMismatch);
        }
        return Ok(());
    }

    // 1. Something must be proven.
    if proof.is_empty() {
        return Err(VerifyError::ProofTooShort);
    }
    // 2. A first tree that is a perfect subtree is not repeated in the proof: its root
    // starts the walk.
    let (&start, rest) = if first.is_power_of_two() {
        (first_root, proof)
    } else {
        proof.split_first().ok_or(VerifyError::ProofTooShort)?
    };

    // 3-4. Start at the last leaf of the first tree, raised to the highest level where it
    // is still the right edge of a perfect subtree.
    let mut node = first - 1;
    let mut last_node = second - 1;
    while is_right_child(node) {
        node >>= 1;
        last_node >>= 1;
    }

    // 5-6. Rebuild both roots.
    let mut first_hash = start;
    let mut second_hash = start;
    for sibling in rest {
        if last_node == 0 {
            return Err(VerifyError::ProofTooLong);
        }
        if is_right_child(node) || node == last_node {
            first_hash = node_hash(sibling, &first_hash);
            second_hash = node_hash(sibling, &second_hash);
            if !is_right_child(node) {
                (node, last_node) = climb_while_left_child(node, last_node);
            }
        } else {
            second_hash = node_hash(&second_hash, sibling);
        }
        node >>= 1;
        last_node >>= 1;
    }

    // 7.
    if last_node != 0 {
        return Err(VerifyError::ProofTooShort);
    }
    if first_hash != *first_root {
        return Err(VerifyError::FirstRootMismatch);
    }
    if second_hash != *second_root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

fn is_right_child(node: u64) -> bool {
    node & 1 == 1
}

/// RFC 9162: "right-shift both fn and sn equally until either LSB(fn) is set or fn is 0".
fn climb_while_left_child(mut node: u64, mut last_node: u64) -> (u64, u64) {
    while !is_right_child(node) && node != 0 {
        node >>= 1;
        last_node >>= 1;
    }
    (node, last_node)
}
