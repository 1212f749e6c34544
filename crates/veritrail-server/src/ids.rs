//! Random identifiers and secrets from the operating system's generator.

use crate::error::{ApiError, Code};

const BASE32: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Fills `buf` with OS randomness.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| {
        tracing::error!(error = %e, "os random generator failed");
        ApiError::new(Code::Internal, "random generator unavailable")
    })?;
    Ok(buf)
}

/// `len` random lowercase Crockford base32 characters (5 bits each).
pub fn random_base32(len: usize) -> Result<String, ApiError> {
    let bytes: [u8; 64] = random_bytes()?;
    let len = len.min(64);
    Ok(bytes[..len].iter().map(|b| BASE32[(b & 31) as usize] as char).collect())
}

/// The first `len` bytes of `bytes` (at most its length), 5 bits each, as lowercase Crockford
/// base32: ids derived from a digest.
pub fn base32(bytes: &[u8], len: usize) -> String {
    bytes.iter().take(len).map(|b| BASE32[(b & 31) as usize] as char).collect()
}

/// Characters of an [`ordered`] id's leading part: 50 bits.
pub const ORDER_CHARS: usize = 10;

/// Characters of an [`ordered`] id's tail: 80 bits.
pub const TAIL_CHARS: usize = 16;

/// A 26-character id (as [`random_base32`]`(26)` ones) that sorts by `order`: big-endian base32
/// of its low 50 bits ([`ORDER_CHARS`] characters; the alphabet is in ASCII order), followed by
/// [`TAIL_CHARS`] characters of `tail` ([`base32`]). Rows keyed by such ids are inserted next to
/// one another, at the end of their index: with uniformly random ids each insert dirtied its own
/// index page (a model of the alert store wrote 10.8 kB of WAL per alert at 20,000 alerts,
/// 5.5 kB with ordered alert and message ids; BENCHMARKS.md, issue 7).
pub fn ordered(order: u64, tail: &[u8; TAIL_CHARS]) -> String {
    let mut id = String::with_capacity(ORDER_CHARS + TAIL_CHARS);
    for index in (0..ORDER_CHARS).rev() {
        id.push(BASE32[((order >> (5 * index)) & 31) as usize] as char);
    }
    id.push_str(&base32(tail, TAIL_CHARS));
    id
}

/// Unpredictable bytes for one request: a 256-bit OS-random seed expanded with SHA-256 in counter
/// mode, so a batch of a thousand events costs one system call instead of thousands.
pub struct RandomStream {
    seed: [u8; 32],
    counter: u64,
}

impl RandomStream {
    /// A stream seeded from the OS generator.
    pub fn new() -> Result<RandomStream, ApiError> {
        Ok(RandomStream { seed: random_bytes()?, counter: 0 })
    }

    /// The next 32 bytes.
    pub fn next_block(&mut self) -> [u8; 32] {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(b"veritrail.random-stream.v1");
        hasher.update(self.seed);
        hasher.update(self.counter.to_le_bytes());
        self.counter += 1;
        hasher.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_ids_sort_by_their_order_then_tail() {
        let tail = [7u8; 16];
        let ids: Vec<String> =
            [0u64, 1, 31, 32, 1_000, 1 << 40, (1 << 50) - 1].iter().map(|&o| ordered(o, &tail)).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
        assert!(ids.iter().all(|id| id.len() == 26));
        assert_eq!(ids[0], "00000000007777777777777777");
        assert_eq!(&ids[2][..ORDER_CHARS], "000000000z");
        assert_eq!(&ids[3][..ORDER_CHARS], "0000000010");
        assert_ne!(ordered(5, &[1u8; 16]), ordered(5, &[2u8; 16]));
    }
}
