//! C2SP tlog checkpoints (c2sp.org/tlog-checkpoint): the signed statement of a ledger's
//! size and root hash.
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <root hash, base64>
//! [extension lines]
//!
//! — <key name> <base64 signature>
//! ```

use crate::hash::{Hash, HashDecodeError};
use crate::note::{self, NoteError, NoteSigner, VerifierKey};

#[cfg(test)]
mod tests;

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The checkpoint text does not follow the tlog-checkpoint format.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The root hash line is not a base64 SHA-256 hash.
    #[error("malformed checkpoint root hash: {0}")]
    RootHash(#[from] HashDecodeError),
    /// The signed note around the checkpoint was refused.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A tree head: the origin (`<server origin>/<tenant>` in Veritrail), the number of leaves
/// and the root hash of the ledger at that size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Identifies the log; non-empty, one line.
    pub origin: String,
    /// The number of leaves.
    pub size: u64,
    /// The RFC 6962 root hash of the first `size` leaves.
    pub root: Hash,
    /// Optional extra lines, each non-empty; Veritrail writes none.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Self {
        Self { origin: origin.into(), size, root, extensions: Vec::new() }
    }

    /// The note text: `<origin>\n<size>\n<base64 root>\n`, then each extension line and a
    /// newline. Only meaningful for a checkpoint that passes [`Checkpoint::validate`].
    pub fn body(&self) -> String {
        let mut body = format!("{}\n{}\n{}\n", self.origin, self.size, self.root.to_base64());
        for line in &self.extensions {
            body.push_str(line);
            body.push('\n');
        }
        body
    }

    /// Checks that [`Checkpoint::body`] will produce a well-formed checkpoint: a non-empty
    /// origin and non-empty extension lines, none containing a newline or another control
    /// character.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if self.origin.is_empty() {
            return Err(CheckpointError::Malformed("empty origin"));
        }
        if has_control_character(&self.origin) {
            return Err(CheckpointError::Malformed("control character in the origin"));
        }
        for line in &self.extensions {
            if line.is_empty() {
                return Err(CheckpointError::Malformed("empty extension line"));
            }
            if has_control_character(line) {
                return Err(CheckpointError::Malformed("control character in an extension"));
            }
        }
        Ok(())
    }

    /// Parses a checkpoint body. Only the canonical spelling is accepted (size without
    /// leading zeros, canonical base64), so `parse_body(text)?.body() == text`.
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let Some(text) = text.strip_suffix('\n') else {
            return Err(CheckpointError::Malformed("must end in a newline"));
        };
        let mut lines = text.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(CheckpointError::Malformed("needs origin, size and root hash lines"));
        };
        let checkpoint = Self {
            origin: origin.to_string(),
            size: parse_size(size)?,
            root: Hash::from_base64(root)?,
            extensions: lines.map(str::to_string).collect(),
        };
        checkpoint.validate()?;
        Ok(checkpoint)
    }
}

/// Signs a checkpoint: its body as a signed note.
pub fn sign_checkpoint(checkpoint: &Checkpoint, signer: &NoteSigner) -> Result<String, CheckpointError> {
    checkpoint.validate()?;
    Ok(signer.sign(&checkpoint.body())?)
}

/// Opens a signed checkpoint: verifies the note against the trusted keys (see
/// [`note::open`]) and parses its body. The caller must still check that the origin is the
/// log (tenant) it expects: a key may sign several logs.
pub fn open_checkpoint(note: &str, verifiers: &[VerifierKey]) -> Result<Checkpoint, CheckpointError> {
    let verified = note::open(note, verifiers)?;
    Checkpoint::parse_body(&verified.text)
}

/// ASCII decimal without leading zeros ("0" for the empty tree).
fn parse_size(text: &str) -> Result<u64, CheckpointError> {
    let canonical =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(CheckpointError::Malformed("tree size is not a decimal number"));
    }
    text.parse().map_err(|_| CheckpointError::Malformed("tree size is too large"))
}

fn has_control_character(text: &str) -> bool {
    text.chars().any(|c| c < ' ')
}
