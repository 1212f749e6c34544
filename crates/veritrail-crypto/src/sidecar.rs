//! The encrypted personal-data sidecar as stored beside a sealed record.
//!
//! ```text
//! 0x02 || part count (u8) || per part: owner (u8) || key id (u64 BE) || length (u32 BE) || sealed
//! ```
//! `sealed` is `nonce || ciphertext || tag` under the data key `key id`, with associated data
//! [`part_aad`] (tenant, event id, owner, key id): a part cannot be moved to another record,
//! owner or key. The plaintext is the caller's (Veritrail's `PersonalData` JSON of that owner's
//! fields). A sidecar in the old clear format starts with `{` (0x7b), never with 0x02.

use crate::CryptoError;

/// First byte of an encrypted sidecar.
pub const SIDECAR_VERSION: u8 = 2;
const AAD_DOMAIN: &[u8] = b"veritrail.personal.v2\0";
const MAX_PARTS: usize = 8;

/// One encrypted part of a sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// Whose data this is (the caller's numbering, e.g. 0 = actor, 1 = data subject).
    pub owner: u8,
    /// Id of the data key it is sealed under.
    pub key_id: u64,
    /// `nonce || ciphertext || tag`.
    pub sealed: &'a [u8],
}

/// The associated data of a part.
pub fn part_aad(tenant: &str, event_id: &str, owner: u8, key_id: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + tenant.len() + event_id.len() + 11);
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(tenant.as_bytes());
    aad.push(0);
    aad.extend_from_slice(event_id.as_bytes());
    aad.push(0);
    aad.push(owner);
    aad.extend_from_slice(&key_id.to_be_bytes());
    aad
}

/// Writes a sidecar of `parts` (at most 8).
pub fn encode_sidecar(parts: &[Part<'_>]) -> Result<Vec<u8>, CryptoError> {
    if parts.len() > MAX_PARTS {
        return Err(CryptoError::Malformed { what: "sidecar", detail: "more than 8 parts" });
    }
    let mut out = Vec::with_capacity(2 + parts.iter().map(|p| 13 + p.sealed.len()).sum::<usize>());
    out.push(SIDECAR_VERSION);
    out.push(parts.len() as u8);
    for part in parts {
        let len = u32::try_from(part.sealed.len())
            .map_err(|_| CryptoError::Malformed { what: "sidecar", detail: "part longer than 4 GiB" })?;
        out.push(part.owner);
        out.extend_from_slice(&part.key_id.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part.sealed);
    }
    Ok(out)
}

/// Reads what [`encode_sidecar`] wrote; never panics on arbitrary bytes.
pub fn decode_sidecar(bytes: &[u8]) -> Result<Vec<Part<'_>>, CryptoError> {
    let bad = |detail| CryptoError::Malformed { what: "sidecar", detail };
    let (&version, rest) = bytes.split_first().ok_or(bad("empty"))?;
    if version != SIDECAR_VERSION {
        return Err(bad("unknown version"));
    }
    let (&count, mut rest) = rest.split_first().ok_or(bad("no part count"))?;
    if count as usize > MAX_PARTS {
        return Err(bad("more than 8 parts"));
    }
    let mut parts = Vec::with_capacity(count as usize);
    for _ in 0..count {
        if rest.len() < 13 {
            return Err(bad("truncated part header"));
        }
        let owner = rest[0];
        let key_id = u64::from_be_bytes(rest[1..9].try_into().map_err(|_| bad("key id"))?);
        let len = u32::from_be_bytes(rest[9..13].try_into().map_err(|_| bad("length"))?) as usize;
        rest = &rest[13..];
        if rest.len() < len {
            return Err(bad("truncated part"));
        }
        parts.push(Part { owner, key_id, sealed: &rest[..len] });
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hostile_bytes() {
        let parts = [Part { owner: 0, key_id: 42, sealed: b"abc" }, Part { owner: 1, key_id: u64::MAX, sealed: b"" }];
        let bytes = encode_sidecar(&parts).unwrap();
        assert_eq!(decode_sidecar(&bytes).unwrap(), parts);
        for cut in 0..bytes.len() {
            assert!(decode_sidecar(&bytes[..cut]).is_err());
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode_sidecar(&extra).is_err());
        assert!(decode_sidecar(b"{\"v\":1}").is_err());
        assert!(decode_sidecar(&[2, 200]).is_err());
        assert_ne!(part_aad("t", "e", 0, 1), part_aad("t", "e", 1, 1));
        assert_ne!(part_aad("t", "e", 0, 1), part_aad("t", "e", 0, 2));
        assert_ne!(part_aad("t1", "e", 0, 1), part_aad("t", "1e", 0, 1));
    }
}
