//! C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys.
//!
//! ```text
//! <text, ending in a newline>
//!
//! — <key name> <base64(4-byte key id || 64-byte Ed25519 signature of the text)>
//! ```
//!
//! Verifier keys are written `<key name>+<8 lowercase hex digits of the key id>+<base64(0x01
//! || 32-byte public key)>`, the form used by golang.org/x/mod/sumdb/note.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest as _, Sha256};

#[cfg(test)]
mod tests;

/// The signature type byte of Ed25519 in key ids and verifier keys.
pub const ALGORITHM_ED25519: u8 = 0x01;

/// The most signature lines [`open`] reads; the specification asks verifiers to accept at
/// least 16. More makes the note malformed.
pub const MAX_SIGNATURES: usize = 100;

/// Starts every signature line: U+2014 EM DASH, then a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a note or a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Key names must be non-empty, without whitespace, `+` or control characters.
    #[error("invalid key name {0:?}")]
    InvalidKeyName(String),
    /// A verifier key is not `<name>+<hex key id>+<base64 key>`.
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(&'static str),
    /// A verifier key is for another signature algorithm than Ed25519.
    #[error("unsupported signature algorithm {0:#04x}")]
    UnsupportedAlgorithm(u8),
    /// A verifier key's id does not match its name and public key.
    #[error("verifier key id does not match its name and public key")]
    KeyIdMismatch,
    /// The public key is not a valid Ed25519 point.
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
    /// The text to sign is not valid note text.
    #[error("invalid note text: {0}")]
    InvalidText(&'static str),
    /// The note does not follow the signed-note format.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// Two different trusted keys share a name and key id.
    #[error("ambiguous verifier key {name}+{key_id}")]
    AmbiguousKey {
        /// The key name.
        name: String,
        /// The key id, in hex.
        key_id: String,
    },
    /// A signature by a trusted key does not verify: the note has been tampered with.
    #[error("invalid signature by {name}+{key_id}")]
    InvalidSignature {
        /// The key name.
        name: String,
        /// The key id, in hex.
        key_id: String,
    },
    /// No trusted key signed the note.
    #[error("note has no signature by a trusted key")]
    NoTrustedSignature,
}

/// Whether `name` may name a key: non-empty, without Unicode whitespace or `+`, and (as
/// nothing in a note may be) without ASCII control characters.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+' || c < ' ')
}

/// The key id of an Ed25519 key: the first 4 bytes of
/// `SHA-256(name || "\n" || 0x01 || public_key)`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update(b"\n")
        .chain_update([ALGORITHM_ED25519])
        .chain_update(public_key)
        .finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A named Ed25519 signing key.
pub struct NoteSigner {
    name: String,
    key_id: [u8; 4],
    key: SigningKey,
}

impl NoteSigner {
    /// The signer of the Ed25519 key with this 32-byte seed (RFC 8032 private key). The
    /// caller generates the seed from a secure random source and keeps it secret.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKeyName(name.to_string()));
        }
        let key = SigningKey::from_bytes(&seed);
        Ok(Self { name: name.to_string(), key_id: key_id(name, key.verifying_key().as_bytes()), key })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The matching verifier key, to publish.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey { name: self.name.clone(), key_id: self.key_id, key: self.key.verifying_key() }
    }

    /// Signs `text`: returns `text`, a blank line and this key's signature line.
    /// `text` must end in a newline and contain no control character other than newline.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let signature = self.key.sign(text.as_bytes());
        let mut signed = Vec::with_capacity(4 + 64);
        signed.extend_from_slice(&self.key_id);
        signed.extend_from_slice(&signature.to_bytes());
        Ok(format!("{text}\n{SIGNATURE_PREFIX}{} {}\n", self.name, BASE64.encode(signed)))
    }
}

impl fmt::Debug for NoteSigner {
    /// Shows the key's identity, never its secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &hex(&self.key_id))
            .finish_non_exhaustive()
    }
}

/// A trusted Ed25519 public key with its name, as published in verifier-key form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: [u8; 4],
    key: VerifyingKey,
}

impl VerifierKey {
    /// The verifier key for `name` and a 32-byte Ed25519 public key.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKeyName(name.to_string()));
        }
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| NoteError::InvalidPublicKey)?;
        Ok(Self { name: name.to_string(), key_id: key_id(name, public_key), key })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    fn identifies(&self, name: &str, key_id: &[u8; 4]) -> bool {
        self.name == name && self.key_id == *key_id
    }
}

impl fmt::Display for VerifierKey {
    /// `<name>+<hex key id>+<base64(0x01 || public key)>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut encoded = [0u8; 33];
        encoded[0] = ALGORITHM_ED25519;
        encoded[1..].copy_from_slice(self.key.as_bytes());
        write!(f, "{}+{}+{}", self.name, hex(&self.key_id), BASE64.encode(encoded))
    }
}

impl FromStr for VerifierKey {
    type Err = NoteError;

    /// Parses `<name>+<hex key id>+<base64(0x01 || public key)>`, checking that the key id
    /// matches. The key id must be 8 lowercase hex digits.
    fn from_str(text: &str) -> Result<Self, NoteError> {
        // Names contain no '+', and base64 may: split at the first two only.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_base64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::MalformedVerifierKey("expected <name>+<key id>+<key>"));
        };
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKeyName(name.to_string()));
        }
        let claimed_id =
            parse_key_id(id_hex).ok_or(NoteError::MalformedVerifierKey("key id is not 8 lowercase hex digits"))?;
        let encoded = BASE64.decode(key_base64).map_err(|_| NoteError::MalformedVerifierKey("key is not base64"))?;
        let (&algorithm, public_key) = encoded.split_first().ok_or(NoteError::MalformedVerifierKey("key is empty"))?;
        if algorithm != ALGORITHM_ED25519 {
            return Err(NoteError::UnsupportedAlgorithm(algorithm));
        }
        let public_key: &[u8; 32] =
            public_key.try_into().map_err(|_| NoteError::MalformedVerifierKey("Ed25519 key is not 32 bytes"))?;
        let key = Self::new(name, public_key)?;
        if key.key_id != claimed_id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(key)
    }
}

/// A note whose signatures have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNote {
    /// The signed text, including its final newline.
    pub text: String,
    /// The trusted keys whose signatures verified, in the order of their signature lines,
    /// each once.
    pub verified_by: Vec<VerifierKey>,
}

/// Parses a signed note and checks its signatures against the trusted `verifiers`.
///
/// Signatures by keys that are not trusted (by name and key id) are ignored. A signature by
/// a trusted key that does not verify rejects the whole note, and so does a note without
/// any verified signature. Malformed notes are errors, never panics.
pub fn open(note: &str, verifiers: &[VerifierKey]) -> Result<VerifiedNote, NoteError> {
    if note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control character"));
    }
    // The text ends at the last blank line; the signature lines follow.
    let split = note.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, signature_block) = (&note[..=split], &note[split + 2..]);
    let Some(signature_block) = signature_block.strip_suffix('\n') else {
        return Err(NoteError::Malformed("signatures must end in a newline"));
    };
    if signature_block.is_empty() {
        return Err(NoteError::Malformed("no signatures"));
    }

    let mut verified_by: Vec<VerifierKey> = Vec::new();
    for (count, line) in signature_block.split('\n').enumerate() {
        if count == MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        let (name, key_id, signature) = parse_signature_line(line)?;
        let Some(key) = trusted_key(verifiers, name, &key_id)? else {
            continue;
        };
        let invalid = || NoteError::InvalidSignature { name: name.to_string(), key_id: hex(&key_id) };
        let signature = Signature::from_slice(&signature).map_err(|_| invalid())?;
        // Cofactorless RFC 8032 verification, as Go's crypto/ed25519 does.
        key.key.verify(text.as_bytes(), &signature).map_err(|_| invalid())?;
        if !verified_by.contains(key) {
            verified_by.push(key.clone());
        }
    }
    if verified_by.is_empty() {
        return Err(NoteError::NoTrustedSignature);
    }
    Ok(VerifiedNote { text: text.to_string(), verified_by })
}

/// `— <name> <base64(key id || signature)>` into its name, key id and signature bytes.
fn parse_signature_line(line: &str) -> Result<(&str, [u8; 4], Vec<u8>), NoteError> {
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(NoteError::Malformed("signature line must start with an em dash and a space"))?;
    let (name, encoded) = rest.split_once(' ').ok_or(NoteError::Malformed("signature line has no signature"))?;
    if !is_valid_key_name(name) {
        return Err(NoteError::Malformed("invalid key name in a signature line"));
    }
    let mut bytes = BASE64.decode(encoded).map_err(|_| NoteError::Malformed("signature is not base64"))?;
    if bytes.len() < 5 {
        return Err(NoteError::Malformed("signature is too short"));
    }
    let signature = bytes.split_off(4);
    let key_id = [bytes[0], bytes[1], bytes[2], bytes[3]];
    Ok((name, key_id, signature))
}

/// The trusted key with this name and key id, if any; two different ones are an error.
fn trusted_key<'a>(
    verifiers: &'a [VerifierKey],
    name: &str,
    key_id: &[u8; 4],
) -> Result<Option<&'a VerifierKey>, NoteError> {
    let mut found: Option<&VerifierKey> = None;
    for key in verifiers.iter().filter(|key| key.identifies(name, key_id)) {
        match found {
            Some(other) if other != key => {
                return Err(NoteError::AmbiguousKey { name: name.to_string(), key_id: hex(key_id) });
            }
            _ => found = Some(key),
        }
    }
    Ok(found)
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::InvalidText("must end in a newline"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::InvalidText("must not contain control characters"));
    }
    Ok(())
}

fn parse_key_id(text: &str) -> Option<[u8; 4]> {
    let digits = text.as_bytes();
    if digits.len() != 8 {
        return None;
    }
    let mut id = [0u8; 4];
    for (byte, pair) in id.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (lowercase_hex_value(pair[0])? << 4) | lowercase_hex_value(pair[1])?;
    }
    Some(id)
}

fn lowercase_hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        out.push(crate::hash::hex_digit(byte >> 4));
        out.push(crate::hash::hex_digit(byte & 0x0f));
    }
    out
}
