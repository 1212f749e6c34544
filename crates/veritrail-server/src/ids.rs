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
