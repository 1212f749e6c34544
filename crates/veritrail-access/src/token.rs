//! Opaque bearer tokens: API keys (`vt_<id>_<secret>`) and sessions (`vts_<id>_<secret>`).
//!
//! The id is public and finds the stored row; the secret (32 base32 characters, 160 bits) is
//! stored only as HMAC-SHA-256 under a server-wide pepper and compared in constant time. The
//! format and hash are those `veritrail-server` has used for API keys since the start, so keys
//! minted before this crate existed keep verifying.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Prefix of tenant API keys.
pub const API_KEY_PREFIX: &str = "vt_";
/// Prefix of login sessions.
pub const SESSION_PREFIX: &str = "vts_";
/// Characters of a token id (60 bits: unique, not secret).
pub const TOKEN_ID_CHARS: usize = 12;
/// Characters of a token secret (160 bits).
pub const TOKEN_SECRET_CHARS: usize = 32;
/// Longest token [`split_token`] looks at.
pub const MAX_TOKEN_LEN: usize = 256;

/// Lowercase Crockford base32: each character carries 5 bits of one random byte (256 is a
/// multiple of 32, so the characters are uniform).
const BASE32: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Why a token could not be minted or read. Messages never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The prefix is not 1 to 8 lowercase letters followed by `_`.
    #[error("token prefix: must be 1 to 8 lowercase letters followed by an underscore, like vt_ or vts_")]
    InvalidPrefix,
    /// The pepper is empty.
    #[error("token pepper: must not be empty")]
    EmptyPepper,
    /// The operating system's random generator failed.
    #[error("the operating system's random generator is unavailable")]
    Random,
    /// The presented text is not a token of the expected kind.
    #[error("malformed token: expected {prefix}<id>_<secret>")]
    Malformed {
        /// The prefix that was expected.
        prefix: String,
    },
}

impl TokenError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidPrefix => "token_prefix_invalid",
            TokenError::EmptyPepper => "token_pepper_empty",
            TokenError::Random => "random_unavailable",
            TokenError::Malformed { .. } => "token_malformed",
        }
    }
}

/// A freshly minted token. `token` is shown to its owner once and never stored; store `id` and
/// `secret_hash`. `Debug` hides the token.
#[derive(Clone)]
pub struct MintedToken {
    /// Public id, [`TOKEN_ID_CHARS`] base32 characters.
    pub id: String,
    /// `<prefix><id>_<secret>`: the credential itself.
    pub token: String,
    /// HMAC-SHA-256 of the secret under the pepper.
    pub secret_hash: [u8; 32],
}

impl fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedToken").field("id", &self.id).field("token", &"<redacted>").finish_non_exhaustive()
    }
}

/// A presented token split into its parts. `Debug` hides the secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenParts<'a> {
    /// The public id: look the stored row up by it.
    pub id: &'a str,
    /// The secret: check it with [`secret_matches`].
    pub secret: &'a str,
}

impl fmt::Debug for TokenParts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenParts").field("id", &self.id).field("secret", &"<redacted>").finish()
    }
}

/// Mints `<prefix><id>_<secret>` with a random id and secret from the OS generator, and the
/// secret's hash under `pepper`. `prefix` is [`API_KEY_PREFIX`], [`SESSION_PREFIX`] or another
/// 1 to 8 lowercase letters followed by `_`.
pub fn mint_token(prefix: &str, pepper: &[u8]) -> Result<MintedToken, TokenError> {
    if !is_prefix(prefix) {
        return Err(TokenError::InvalidPrefix);
    }
    if pepper.is_empty() {
        return Err(TokenError::EmptyPepper);
    }
    let mut random = [0u8; TOKEN_ID_CHARS + TOKEN_SECRET_CHARS];
    getrandom::fill(&mut random).map_err(|_| TokenError::Random)?;
    let (id_bytes, secret_bytes) = random.split_at(TOKEN_ID_CHARS);
    let id = base32(id_bytes);
    let secret = base32(secret_bytes);
    let secret_hash = hash_secret(pepper, &secret);
    Ok(MintedToken { token: format!("{prefix}{id}_{secret}"), id, secret_hash })
}

/// Splits a presented `<prefix><id>_<secret>` token. Only the shape is checked (lengths and
/// alphabet are not, so tokens from older mints stay readable); whether it is genuine is for
/// [`secret_matches`] against the stored hash.
pub fn split_token<'a>(prefix: &str, token: &'a str) -> Result<TokenParts<'a>, TokenError> {
    let malformed = || TokenError::Malformed { prefix: prefix.to_string() };
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed());
    }
    let rest = token.strip_prefix(prefix).ok_or_else(malformed)?;
    let (id, secret) = rest.split_once('_').ok_or_else(malformed)?;
    if id.is_empty() || secret.is_empty() {
        return Err(malformed());
    }
    Ok(TokenParts { id, secret })
}

/// HMAC-SHA-256 of `secret` under `pepper`: what is stored for a token secret (and for any
/// other bearer secret such as the platform bootstrap token).
pub fn hash_secret(pepper: &[u8], secret: &str) -> [u8; 32] {
    // HMAC takes keys of any length; the error branch cannot happen.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(pepper) else {
        return [0; 32];
    };
    mac.update(secret.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Whether `secret` hashes under `pepper` to `stored`, compared in constant time.
pub fn secret_matches(pepper: &[u8], secret: &str, stored: &[u8; 32]) -> bool {
    bool::from(hash_secret(pepper, secret).ct_eq(stored))
}

fn is_prefix(prefix: &str) -> bool {
    let Some(letters) = prefix.strip_suffix('_') else {
        return false;
    };
    (1..=8).contains(&letters.len()) && letters.bytes().all(|b| b.is_ascii_lowercase())
}

fn base32(bytes: &[u8]) -> String {
    bytes.iter().map(|b| BASE32[usize::from(b & 31)] as char).collect()
}

#[cfg(test)]
mod tests;
