//! Errors. Messages never contain key material or plaintext.

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// A master key was not 32 bytes of standard base64.
    #[error("master key must be 32 bytes, base64-encoded (standard alphabet): {0}")]
    InvalidMasterKey(&'static str),
    /// A wrapped key is under a master key that is not configured.
    #[error("data key is wrapped under master key {0}, which is not configured")]
    UnknownMasterKey(String),
    /// Authentication failed: wrong key, wrong associated data or tampered bytes.
    #[error("decryption failed: wrong key, wrong record identity or tampered ciphertext")]
    Decrypt,
    /// Bytes that are not in the expected format.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which structure.
        what: &'static str,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Random,
}

impl CryptoError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            CryptoError::InvalidMasterKey(_) => "invalid_master_key",
            CryptoError::UnknownMasterKey(_) => "unknown_master_key",
            CryptoError::Decrypt => "decrypt_failed",
            CryptoError::Malformed { .. } => "malformed",
            CryptoError::Random => "random_failed",
        }
    }
}
