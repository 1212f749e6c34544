//! The master key (key-encryption key, KEK) and the data keys it wraps.
//!
//! Wrapped key format (69 bytes): `0x01 || kek id (8) || nonce (12) || AES-256-GCM(KEK,
//! data key) with tag (48)`, associated data `"veritrail.wrap.v1\0" || context`, where the
//! context names what the key is for (tenant and subject), so a wrapped key cannot be moved to
//! another subject. Rotation re-wraps under the new master key; the data key, and everything
//! sealed under it, stays the same.

use std::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::CryptoError;
use crate::random::fill_random;

const WRAP_VERSION: u8 = 1;
const WRAP_DOMAIN: &[u8] = b"veritrail.wrap.v1\0";
/// Length of a wrapped data key.
pub const WRAPPED_KEY_LEN: usize = 1 + 8 + 12 + 32 + 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The public identity of a master key: the first 8 bytes of
/// `SHA-256("veritrail.kek-id.v1\n" || key)`. Safe to store and print.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KekId(pub [u8; 8]);

impl fmt::Display for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KekId({self})")
    }
}

/// A 32-byte master key. Zeroized on drop; `Debug` shows only its id.
#[derive(Clone)]
pub struct MasterKey {
    id: KekId,
    cipher: Aes256Gcm,
    raw: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl MasterKey {
    /// A master key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        let raw = Zeroizing::new(bytes);
        let mut hasher = Sha256::new();
        hasher.update(b"veritrail.kek-id.v1\n");
        hasher.update(&raw[..]);
        let digest = hasher.finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*raw));
        MasterKey { id: KekId(id), cipher, raw }
    }

    /// Parses standard base64 of exactly 32 bytes (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<MasterKey, CryptoError> {
        let mut decoded =
            Zeroizing::new(BASE64.decode(text.trim()).map_err(|_| CryptoError::InvalidMasterKey("not valid base64"))?);
        let bytes: [u8; 32] =
            decoded.as_slice().try_into().map_err(|_| CryptoError::InvalidMasterKey("not 32 bytes long"))?;
        decoded.zeroize();
        Ok(MasterKey::from_bytes(bytes))
    }

    /// A fresh random master key.
    pub fn generate() -> Result<MasterKey, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        fill_random(&mut bytes[..])?;
        Ok(MasterKey::from_bytes(*bytes))
    }

    /// Standard base64 of the key, for writing a key file. Handle with care.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(&self.raw[..]))
    }

    /// The key's public id.
    pub fn id(&self) -> KekId {
        self.id
    }
}

/// The configured master keys: the current one (wraps new keys) and previous ones (still
/// unwrap keys not yet re-wrapped after a rotation).
#[derive(Clone, Debug)]
pub struct MasterKeys {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl MasterKeys {
    /// Only `current`.
    pub fn new(current: MasterKey) -> MasterKeys {
        MasterKeys { current, previous: Vec::new() }
    }

    /// `current` plus keys being rotated out.
    pub fn with_previous(current: MasterKey, previous: Vec<MasterKey>) -> MasterKeys {
        let previous = previous.into_iter().filter(|key| key.id != current.id).collect();
        MasterKeys { current, previous }
    }

    /// These keys with `new` current and every key so far kept to unwrap (rotation).
    pub fn rotated_to(&self, new: MasterKey) -> MasterKeys {
        let previous = std::iter::once(self.current.clone()).chain(self.previous.iter().cloned()).collect();
        MasterKeys::with_previous(new, previous)
    }

    /// True while keys being rotated out are configured (something may still be under them).
    pub fn has_previous(&self) -> bool {
        !self.previous.is_empty()
    }

    /// The key new wraps use.
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// Wraps `key` under the current master key, bound to `context`.
    pub fn wrap(&self, key: &DataKey, context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.seal(&key.raw[..], context)
    }

    /// Seals any secret (a signing key, a pepper) under the current master key, bound to
    /// `context`: the wrapped-key format with a ciphertext of the secret's length.
    pub fn seal(&self, secret: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let master = &self.current;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut out = Vec::with_capacity(1 + 8 + NONCE_LEN + secret.len() + TAG_LEN);
        out.push(WRAP_VERSION);
        out.extend_from_slice(&master.id.0);
        out.extend_from_slice(&nonce);
        let mut buffer = Zeroizing::new(Vec::with_capacity(secret.len() + TAG_LEN));
        buffer.extend_from_slice(secret);
        master
            .cipher
            .encrypt_in_place(&Nonce::from(nonce), &wrap_aad(context), &mut *buffer)
            .map_err(|_| CryptoError::Decrypt)?;
        out.extend_from_slice(&buffer);
        Ok(out)
    }

    /// Opens what [`MasterKeys::seal`] wrote with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let id = MasterKeys::sealed_under(sealed)?;
        let master = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id == id)
            .ok_or_else(|| CryptoError::UnknownMasterKey(id.to_string()))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[9..21]);
        let mut buffer = Zeroizing::new(sealed[21..].to_vec());
        master
            .cipher
            .decrypt_in_place(&Nonce::from(nonce), &wrap_aad(context), &mut *buffer)
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(buffer)
    }

    /// The id of the master key a sealed secret is under.
    pub fn sealed_under(sealed: &[u8]) -> Result<KekId, CryptoError> {
        if sealed.len() < 1 + 8 + NONCE_LEN + TAG_LEN || sealed[0] != WRAP_VERSION {
            return Err(CryptoError::Malformed { what: "sealed secret", detail: "too short or wrong version" });
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&sealed[1..9]);
        Ok(KekId(id))
    }

    /// The id of the master key `wrapped` is under.
    pub fn wrapped_under(wrapped: &[u8]) -> Result<KekId, CryptoError> {
        if wrapped.len() != WRAPPED_KEY_LEN {
            return Err(CryptoError::Malformed { what: "wrapped key", detail: "wrong length or version" });
        }
        MasterKeys::sealed_under(wrapped)
    }

    /// True when `wrapped` is under a master key other than the current one.
    pub fn needs_rewrap(&self, wrapped: &[u8]) -> bool {
        MasterKeys::wrapped_under(wrapped).is_ok_and(|id| id != self.current.id)
    }

    /// Unwraps a data key wrapped by [`MasterKeys::wrap`] with the same `context`.
    pub fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> Result<DataKey, CryptoError> {
        MasterKeys::wrapped_under(wrapped)?;
        let buffer = self.open(wrapped, context)?;
        let bytes: [u8; 32] = buffer.as_slice().try_into().map_err(|_| CryptoError::Decrypt)?;
        Ok(DataKey::from_bytes(bytes))
    }

    /// True when `sealed` (a wrapped key or sealed secret) is under the current master key.
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        MasterKeys::sealed_under(sealed).is_ok_and(|id| id == self.current.id)
    }

    /// Re-wraps under the current master key (for rotation); the data key is unchanged.
    pub fn rewrap(&self, wrapped: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self.unwrap(wrapped, context)?;
        self.wrap(&key, context)
    }
}

fn wrap_aad(context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_DOMAIN.len() + context.len());
    aad.extend_from_slice(WRAP_DOMAIN);
    aad.extend_from_slice(context);
    aad
}

/// A 32-byte data key (one per data subject, or a tenant's blind-index key). The AES key
/// schedule is kept, so sealing costs no key expansion. Zeroized on drop.
#[derive(Clone)]
pub struct DataKey {
    cipher: Aes256Gcm,
    raw: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh random data key.
    pub fn generate() -> Result<DataKey, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        fill_random(&mut bytes[..])?;
        Ok(DataKey::from_bytes(*bytes))
    }

    pub(crate) fn from_bytes(bytes: [u8; 32]) -> DataKey {
        let raw = Zeroizing::new(bytes);
        DataKey { cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(*raw)), raw }
    }

    /// The raw key bytes (for deriving a blind-index key).
    pub(crate) fn raw(&self) -> &[u8; 32] {
        &self.raw
    }

    /// `nonce (12) || ciphertext || tag (16)` of `plaintext` bound to `aad`, appended to `out`.
    pub fn seal_into(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        out.reserve(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_inout_detached(&Nonce::from(nonce), aad, (&mut out[start..]).into())
            .map_err(|_| CryptoError::Decrypt)?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Opens what [`DataKey::seal_into`] wrote, with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed { what: "ciphertext", detail: "shorter than nonce and tag" });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[..NONCE_LEN]);
        let mut buffer = sealed[NONCE_LEN..].to_vec();
        self.cipher.decrypt_in_place(&Nonce::from(nonce), aad, &mut buffer).map_err(|_| CryptoError::Decrypt)?;
        Ok(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> MasterKeys {
        MasterKeys::new(MasterKey::from_bytes([7; 32]))
    }

    #[test]
    fn wrap_round_trips_and_binds_the_context() {
        let keys = keys();
        let key = DataKey::generate().unwrap();
        let wrapped = keys.wrap(&key, b"tn_1\0alice").unwrap();
        assert_eq!(wrapped.len(), WRAPPED_KEY_LEN);
        let back = keys.unwrap(&wrapped, b"tn_1\0alice").unwrap();
        assert_eq!(back.raw(), key.raw());
        assert_eq!(keys.unwrap(&wrapped, b"tn_1\0bob").unwrap_err(), CryptoError::Decrypt);
        let mut tampered = wrapped.clone();
        tampered[30] ^= 1;
        assert_eq!(keys.unwrap(&tampered, b"tn_1\0alice").unwrap_err(), CryptoError::Decrypt);
        assert!(keys.unwrap(&wrapped[..40], b"tn_1\0alice").is_err());
    }

    #[test]
    fn rotation_rewraps_under_the_new_key() {
        let old = keys();
        let key = DataKey::generate().unwrap();
        let wrapped = old.wrap(&key, b"ctx").unwrap();
        let new_master = MasterKey::from_bytes([9; 32]);
        let rotated = MasterKeys::with_previous(new_master.clone(), vec![MasterKey::from_bytes([7; 32])]);
        assert!(rotated.needs_rewrap(&wrapped));
        let rewrapped = rotated.rewrap(&wrapped, b"ctx").unwrap();
        assert!(!rotated.needs_rewrap(&rewrapped));
        let only_new = MasterKeys::new(new_master);
        assert_eq!(only_new.unwrap(&rewrapped, b"ctx").unwrap().raw(), key.raw());
        assert!(matches!(only_new.unwrap(&wrapped, b"ctx"), Err(CryptoError::UnknownMasterKey(_))));
    }

    #[test]
    fn secrets_of_any_length_seal_and_rotate() {
        let keys = keys();
        for secret in [&b""[..], b"x", &[7u8; 200]] {
            let sealed = keys.seal(secret, b"ledger.signing_keys").unwrap();
            assert_eq!(&keys.open(&sealed, b"ledger.signing_keys").unwrap()[..], secret);
            assert_eq!(keys.open(&sealed, b"auth.pepper").unwrap_err(), CryptoError::Decrypt);
            assert!(keys.is_current(&sealed));
            let rotated =
                MasterKeys::with_previous(MasterKey::from_bytes([8; 32]), vec![MasterKey::from_bytes([7; 32])]);
            assert!(!rotated.is_current(&sealed));
            assert_eq!(&rotated.open(&sealed, b"ledger.signing_keys").unwrap()[..], secret);
        }
        assert!(keys.open(&[1, 2, 3], b"x").is_err());
    }

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let key = DataKey::generate().unwrap();
        let mut sealed = b"prefix".to_vec();
        key.seal_into(b"aad", b"jane@acme.com", &mut sealed).unwrap();
        let body = &sealed[6..];
        assert!(!body.windows(13).any(|w| w == b"jane@acme.com"));
        assert_eq!(key.open(b"aad", body).unwrap(), b"jane@acme.com");
        assert_eq!(key.open(b"other", body).unwrap_err(), CryptoError::Decrypt);
        let other = DataKey::generate().unwrap();
        assert_eq!(other.open(b"aad", body).unwrap_err(), CryptoError::Decrypt);
        assert!(key.open(b"aad", &body[..10]).is_err());
    }

    #[test]
    fn master_key_parsing_and_debug_hide_the_key() {
        let key = MasterKey::generate().unwrap();
        let text = key.to_base64();
        let parsed = MasterKey::from_base64(&format!(" {}\n", &*text)).unwrap();
        assert_eq!(parsed.id(), key.id());
        assert!(!format!("{key:?}").contains(&*text));
        assert_eq!(MasterKey::from_base64("AAAA").unwrap_err().code(), "invalid_master_key");
        assert_eq!(MasterKey::from_base64("not base64!").unwrap_err().code(), "invalid_master_key");
        assert_eq!(format!("{:?}", DataKey::generate().unwrap()), "DataKey(..)");
    }
}
