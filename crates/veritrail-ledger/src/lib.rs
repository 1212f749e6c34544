//! Veritrail's ledger format (SPEC.md §3), as pure functions over bytes.
//!
//! - [`hash`]: SHA-256 values and the RFC 6962 leaf and node hashes.
//! - [`tree`]: the RFC 6962 / RFC 9162 Merkle tree: an append-only [`tree::Frontier`],
//!   root hashes, inclusion and consistency proofs over a [`tree::NodeSource`], and their
//!   verification.
//! - [`jcs`]: RFC 8785 JSON Canonicalization, the bytes a leaf hash commits to.
//! - [`note`]: C2SP signed notes with Ed25519 keys.
//! - [`checkpoint`]: C2SP tlog checkpoints, the signed statement of a ledger's size and root.
//!
//! Architecture invariant: this crate does no I/O, knows no database, async runtime or wire
//! format, and never panics on input. Independent verifiers must agree with it bit for bit,
//! so every format here follows its public specification exactly.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod hash;
pub mod jcs;
pub mod note;
pub mod tree;

pub use checkpoint::{Checkpoint, CheckpointError, open_checkpoint, sign_checkpoint};
pub use hash::{Hash, HashDecodeError, empty_root, leaf_hash, node_hash};
pub use jcs::JcsError;
pub use note::{NoteError, NoteSigner, VerifiedNote, VerifierKey};
pub use tree::{CompletedNode, Frontier, FrontierError, MemoryTree, NodeSource, ProofError, VerifyError};

/// Any error of this crate, for callers that want a single type (each module's functions
/// return their own, more precise, error type).
///
/// [`tree::ProofError`] is not folded in because it is generic over the caller's
/// [`tree::NodeSource`] error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A hash could not be decoded.
    #[error(transparent)]
    HashDecode(#[from] HashDecodeError),
    /// A frontier could not be built or extended.
    #[error(transparent)]
    Frontier(#[from] FrontierError),
    /// A Merkle proof did not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A JSON value could not be canonicalized.
    #[error(transparent)]
    Jcs(#[from] JcsError),
    /// A signed note or key was malformed or did not verify.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// A checkpoint was malformed or did not verify.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}
