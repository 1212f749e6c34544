//! Blind indexes: equality search on encrypted fields through a keyed hash. The token of a
//! value is `HMAC-SHA-256(tenant blind-index key, kind || 0x00 || value)` truncated to 16
//! bytes; the key is a random per-tenant data key, so one tenant's tokens say nothing about
//! another's and a wrong tenant's key finds nothing.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::DataKey;

/// A blind-index token (16 bytes, stored in index columns).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlindToken(pub [u8; 16]);

impl fmt::Debug for BlindToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindToken(")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// A tenant's blind-index key.
#[derive(Clone)]
pub struct BlindKey {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for BlindKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindKey(..)")
    }
}

impl BlindKey {
    /// The blind-index key held in a data key's bytes.
    pub fn new(key: &DataKey) -> BlindKey {
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.raw()).expect("hmac accepts 32-byte keys");
        BlindKey { mac }
    }

    /// A data key derived from this key for `label` (HMAC-SHA-256 of the label): a second key
    /// per tenant without storing one, e.g. for the tenant's own records at rest.
    pub fn derive(&self, label: &str) -> DataKey {
        let mut mac = self.mac.clone();
        mac.update(b"veritrail.derive.v1\0");
        mac.update(label.as_bytes());
        DataKey::from_bytes(mac.finalize().into_bytes().into())
    }

    /// The token of `value` in the index `kind` (e.g. `"actor.email"`, `"context.ip"`).
    /// Callers normalise the value first (e-mails are lowercased).
    pub fn token(&self, kind: &str, value: &str) -> BlindToken {
        let mut mac = self.mac.clone();
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut token = [0u8; 16];
        token.copy_from_slice(&digest[..16]);
        BlindToken(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_keyed_and_domain_separated() {
        let key = BlindKey::new(&DataKey::generate().unwrap());
        let other = BlindKey::new(&DataKey::generate().unwrap());
        let a = key.token("actor.email", "jane@acme.com");
        assert_eq!(a, key.token("actor.email", "jane@acme.com"));
        assert_ne!(a, key.token("context.ip", "jane@acme.com"));
        assert_ne!(a, key.token("actor.email", "john@acme.com"));
        assert_ne!(a, other.token("actor.email", "jane@acme.com"));
    }
}
