//! Root hashes and RFC 6962 proofs computed from perfect subtrees.
//!
//! The proofs follow the recursive definitions of RFC 6962 §2.1.1 (`PATH`) and §2.1.2
//! (`PROOF` / `SUBPROOF`), walked top-down as a loop over the current subtree
//! `D[start:start+count]`. Every such range is either a perfect subtree or the right part of
//! an RFC 6962 split, which is why its hash can always be folded from perfect subtrees
//! ([`range_root`]). Each proof reads O(log n) perfect subtrees.

use crate::hash::{Hash, empty_root, node_hash};

use super::{NodeSource, split_point};

/// Why a proof could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ProofError<E> {
    /// The leaf is not in the tree.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("first tree size {first} is larger than second tree size {second}")]
    SizeOrder {
        /// The first (older) tree size.
        first: u64,
        /// The second (newer) tree size.
        second: u64,
    },
    /// The node source failed.
    #[error("reading a tree node failed: {0}")]
    Source(E),
}

/// The RFC 6962 Merkle tree hash of the first `size` leaves ([`empty_root`] for 0).
pub fn root_at<S: NodeSource + ?Sized>(size: u64, source: &S) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_root(source, 0, size)
}

/// The inclusion proof of leaf `leaf_index` in the tree of the first `tree_size` leaves:
/// exactly RFC 6962 `PATH(leaf_index, D[tree_size])`, sibling hashes from the leaf up.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    leaf_index: u64,
    tree_size: u64,
    source: &S,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if leaf_index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index: leaf_index, size: tree_size });
    }

    // Walk down from the root; `path` collects the siblings top-down and is reversed at the
    // end, since PATH lists them from the leaf up.
    let mut path = Vec::new();
    let (mut start, mut count) = (0u64, tree_size);
    while count > 1 {
        let k = split_point(count);
        if leaf_index < start + k {
            // PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
            path.push(range_root(source, start + k, count - k).map_err(ProofError::Source)?);
            count = k;
        } else {
            // PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
            path.push(range_root(source, start, k).map_err(ProofError::Source)?);
            start += k;
            count -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The consistency proof between the trees of the first `first` and the first `second`
/// leaves: exactly RFC 6962 `PROOF(first, D[second])`. It is empty when `first` is 0 or
/// equal to `second`, where there is nothing to prove.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    first: u64,
    second: u64,
    source: &S,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if first > second {
        return Err(ProofError::SizeOrder { first, second });
    }
    if first == 0 || first == second {
        return Ok(Vec::new());
    }

    // SUBPROOF(m, D[n], b), walked top-down over D[start:start+count] with the invariant
    // start < first <= start + count; `path` is reversed at the end because SUBPROOF lists
    // the deepest hashes first.
    let mut path = Vec::new();
    let (mut start, mut count) = (0u64, second);
    // SUBPROOF's `b`: true while the walk has only gone left, so the current subtree starts
    // where the old tree starts and the verifier already holds the old root.
    let mut old_root_known = true;
    loop {
        if first == start + count {
            // SUBPROOF(m, D[m], true) = {} ; SUBPROOF(m, D[m], false) = {MTH(D[m])}
            if !old_root_known {
                path.push(range_root(source, start, count).map_err(ProofError::Source)?);
            }
            break;
        }
        let k = split_point(count);
        if first <= start + k {
            // SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            path.push(range_root(source, start + k, count - k).map_err(ProofError::Source)?);
            count = k;
        } else {
            // SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            path.push(range_root(source, start, k).map_err(ProofError::Source)?);
            start += k;
            count -= k;
            old_root_known = false;
        }
    }
    path.reverse();
    Ok(path)
}

/// MTH(D[start:start+count]) for `count >= 1`, where `start` is a multiple of the largest
/// power of two not above `count`: a perfect subtree, or the right part of an RFC 6962
/// split. Such a range is the perfect subtrees given by the 1 bits of `count`, largest
/// first, and its hash folds them from the right, reading one node per 1 bit.
fn range_root<S: NodeSource + ?Sized>(source: &S, start: u64, count: u64) -> Result<Hash, S::Error> {
    debug_assert!(count >= 1);
    debug_assert_eq!(start % (1 << (63 - count.leading_zeros())), 0);

    let mut folded: Option<Hash> = None;
    let mut remaining = count;
    while remaining != 0 {
        // The lowest 1 bit is the rightmost remaining subtree; it starts after all the
        // larger subtrees, whose widths are the other 1 bits.
        let level = remaining.trailing_zeros();
        remaining &= remaining - 1;
        let subtree_start = start + remaining;
        let subtree = source.perfect_subtree(level, subtree_start >> level)?;
        folded = Some(match folded {
            None => subtree,
            Some(right) => node_hash(&subtree, &right),
        });
    }
    Ok(folded.unwrap_or_else(empty_root))
}
