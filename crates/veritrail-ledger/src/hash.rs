//! SHA-256 hash values and the RFC 6962 hashing of leaves and interior nodes (SPEC.md §3).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};

#[cfg(test)]
mod tests;

/// Domain separation prefix of a leaf hash (RFC 6962 §2.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain separation prefix of an interior node hash (RFC 6962 §2.1).
const NODE_PREFIX: u8 = 0x01;

/// A SHA-256 value: a leaf hash, an interior node hash or a root hash.
///
/// `Debug` and `Display` print lowercase hex; the wire form (proofs, checkpoints) is standard
/// base64 with padding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash(pub [u8; 32]);

/// Why a string is not a valid [`Hash`](struct@Hash).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashDecodeError {
    /// The string is not canonical standard base64 (RFC 4648 §4, with padding).
    #[error("hash is not valid base64")]
    Base64,
    /// The string is not hex.
    #[error("hash is not valid hex")]
    Hex,
    /// The decoded value is not 32 bytes long.
    #[error("hash has {0} bytes, expected 32")]
    Length(usize),
}

impl Hash {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Standard base64 with padding (44 characters), as used in proofs and checkpoints.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// Parses standard base64 with padding. Non-canonical encodings (stray trailing bits,
    /// missing padding, whitespace) are rejected, so `from_base64(s)?.to_base64() == s`.
    pub fn from_base64(text: &str) -> Result<Self, HashDecodeError> {
        let bytes = BASE64.decode(text).map_err(|_| HashDecodeError::Base64)?;
        Self::from_slice(&bytes)
    }

    /// Lowercase hex (64 characters).
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0x0f));
        }
        out
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<Self, HashDecodeError> {
        let digits = text.as_bytes();
        if digits.len() != 64 {
            return Err(HashDecodeError::Length(digits.len() / 2));
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let high = hex_value(pair[0]).ok_or(HashDecodeError::Hex)?;
            let low = hex_value(pair[1]).ok_or(HashDecodeError::Hex)?;
            *byte = (high << 4) | low;
        }
        Ok(Hash(bytes))
    }

    /// Takes exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, HashDecodeError> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| HashDecodeError::Length(bytes.len()))?;
        Ok(Hash(array))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl From<[u8; 32]> for Hash {
    fn from(bytes: [u8; 32]) -> Self {
        Hash(bytes)
    }
}

/// The hash of a ledger leaf: `SHA-256(0x00 || data)`, where `data` is the JCS form of the
/// sealed record.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let digest = Sha256::new().chain_update([LEAF_PREFIX]).chain_update(data).finalize();
    Hash(digest.into())
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let digest = Sha256::new().chain_update([NODE_PREFIX]).chain_update(left.0).chain_update(right.0).finalize();
    Hash(digest.into())
}

/// The root hash of the empty tree: `SHA-256("")` (RFC 6962 §2.1).
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// The lowercase hex digit of the low 4 bits of `nibble`.
pub(crate) fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}
