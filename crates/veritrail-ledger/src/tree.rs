//! The RFC 6962 / RFC 9162 Merkle tree of a ledger (SPEC.md §3).
//!
//! Everything here is expressed in *perfect subtrees*: the perfect subtree at level `L`,
//! index `i` covers the leaves `[i * 2^L, (i + 1) * 2^L)`; level 0 holds the leaf hashes.
//! Once a perfect subtree is complete its hash never changes, so a store can keep each one
//! the moment [`Frontier::push`] reports it, and every root and proof of any tree size is
//! computed from O(log n) of them through a [`NodeSource`].
//!
//! - [`Frontier`]: the append-only state of a ledger (its size and the perfect subtrees
//!   covering `[0, size)`), the only thing the writer needs in memory.
//! - [`root_at`], [`inclusion_proof`], [`consistency_proof`]: produce exactly RFC 6962
//!   §2.1.1 `PATH` and §2.1.2 `PROOF` (RFC 9162 §2.1.3 and §2.1.4).
//! - [`verify_inclusion`], [`verify_consistency`]: the RFC 9162 §2.1.3.2 and §2.1.4.2
//!   verification algorithms.
//! - [`MemoryTree`]: a [`NodeSource`] held in memory, for tests and offline verification.

mod frontier;
mod memory;
mod proof;
mod verify;

#[cfg(test)]
mod tests;

pub use frontier::{CompletedNode, Frontier, FrontierError, subtrees_for_size};
pub use memory::{MemoryTree, MissingNode};
pub use proof::{ProofError, consistency_proof, inclusion_proof, root_at};
pub use verify::{VerifyError, root_from_inclusion_proof, verify_consistency, verify_inclusion};

use crate::hash::Hash;

/// Read access to the perfect subtrees of a tree, implemented by the ledger store.
///
/// Proof generation asks for O(log n) subtrees per proof, so each read should be cheap
/// (an indexed lookup, not a recomputation).
pub trait NodeSource {
    /// Why a subtree could not be read (I/O, missing row, ...).
    type Error;

    /// The hash of the perfect subtree at `level`, `index`, covering the leaves
    /// `[index * 2^level, (index + 1) * 2^level)`. Level 0 is the leaf hash at `index`.
    fn perfect_subtree(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// The largest power of two strictly smaller than `n`: RFC 6962's split point `k`.
/// Only defined for `n >= 2`, which every caller ensures.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}
