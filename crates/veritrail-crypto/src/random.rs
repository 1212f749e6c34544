//! Random bytes for keys and nonces: the OS generator, drawn 4 KiB at a time per thread so a
//! nonce costs a copy rather than a system call.

use std::cell::RefCell;

use zeroize::Zeroize;

use crate::CryptoError;

const POOL: usize = 4096;

struct Pool {
    bytes: Box<[u8; POOL]>,
    used: usize,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

thread_local! {
    static POOL_BYTES: RefCell<Pool> = RefCell::new(Pool { bytes: Box::new([0; POOL]), used: POOL });
}

/// Fills `out` with bytes from the operating system's CSPRNG. Bytes handed out are wiped from
/// the pool, so no two calls ever return the same bytes.
pub fn fill_random(out: &mut [u8]) -> Result<(), CryptoError> {
    if out.len() > POOL / 4 {
        return getrandom::fill(out).map_err(|_| CryptoError::Random);
    }
    POOL_BYTES.with(|pool| {
        let mut pool = pool.borrow_mut();
        if POOL - pool.used < out.len() {
            getrandom::fill(&mut pool.bytes[..]).map_err(|_| CryptoError::Random)?;
            pool.used = 0;
        }
        let start = pool.used;
        let end = start + out.len();
        out.copy_from_slice(&pool.bytes[start..end]);
        pool.bytes[start..end].zeroize();
        pool.used = end;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ_across_refills() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let mut nonce = [0u8; 12];
            fill_random(&mut nonce).unwrap();
            assert!(seen.insert(nonce), "a nonce repeated");
        }
        let mut big = [0u8; 2048];
        fill_random(&mut big).unwrap();
        assert!(big.iter().any(|b| *b != 0));
    }
}
