//! Encryption at rest of personal data (issue 5): a master key (key-encryption key) wraps
//! random per-subject data keys; personal values are sealed with AES-256-GCM under the data
//! key of the person they belong to, with the record's identity as associated data; equality
//! search on encrypted fields goes through keyed blind-index tokens; readers without the right
//! to see personal data get masked values.
//!
//! Erasure (crypto-shredding) deletes a subject's data keys: every ciphertext sealed under
//! them becomes unreadable, while the sealed ledger records — which hold only salted
//! commitments — stay byte for byte the same, so every proof still verifies.
//!
//! Pure apart from the operating system's random number generator (keys and nonces). No I/O,
//! no clock. Key material is zeroized on drop and never printed by `Debug`.

mod blind;
mod error;
mod keys;
pub mod mask;
mod random;
mod sidecar;

pub use blind::{BlindKey, BlindToken};
pub use error::CryptoError;
pub use keys::{DataKey, KekId, MasterKey, MasterKeys, WRAPPED_KEY_LEN};
pub use random::fill_random;
pub use sidecar::{Part, SIDECAR_VERSION, decode_sidecar, encode_sidecar, part_aad};
