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
