//! Human passwords: Argon2id PHC strings and the password policy.
//!
//! Hashing and verifying cost about 45 ms of CPU each with the default parameters: async callers
//! must run them in `tokio::task::spawn_blocking`, never on a runtime thread.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

/// Fewest characters (Unicode scalar values) a new password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most bytes (UTF-8) a password may have; longer ones are refused when set and never verify.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest PHC string [`verify_password`] looks at.
const MAX_PHC_LEN: usize = 512;
/// Salt length, bytes (the PHC recommendation).
const SALT_LEN: usize = 16;

/// Why a password cannot be set or hashed. Messages never contain the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Fewer than [`MIN_PASSWORD_CHARS`] characters.
    #[error("password: {chars} characters, fewer than the {min} required")]
    TooShort {
        /// The password's length in characters.
        chars: usize,
        /// The minimum.
        min: usize,
    },
    /// More than [`MAX_PASSWORD_BYTES`] bytes.
    #[error("password: {bytes} bytes, more than the {max} allowed")]
    TooLong {
        /// The password's length in bytes.
        bytes: usize,
        /// The maximum.
        max: usize,
    },
    /// Only whitespace.
    #[error("password: must not be only whitespace")]
    Blank,
    /// Argon2 parameters out of the supported range.
    #[error("password hashing parameters: {problem}")]
    InvalidParams {
        /// What is out of range.
        problem: String,
    },
    /// The operating system's random generator failed (no salt).
    #[error("the operating system's random generator is unavailable")]
    Random,
    /// Argon2 itself failed (should not happen with validated parameters).
    #[error("password hashing failed: {detail}")]
    Hashing {
        /// What argon2 said.
        detail: String,
    },
}

impl PasswordError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            PasswordError::TooShort { .. } => "password_too_short",
            PasswordError::TooLong { .. } => "password_too_long",
            PasswordError::Blank => "password_blank",
            PasswordError::InvalidParams { .. } => "password_params_invalid",
            PasswordError::Random => "random_unavailable",
            PasswordError::Hashing { .. } => "password_hashing_failed",
        }
    }
}

/// Argon2id cost parameters. [`PasswordParams::default`] is argon2's (and OWASP's) default,
/// m = 19456 KiB, t = 2, p = 1: about 45 ms per hash here. [`PasswordParams::FAST_INSECURE`]
/// exists for tests only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory, KiB (8 × `parallelism` to [`PasswordParams::MAX_MEMORY_KIB`]).
    pub memory_kib: u32,
    /// Passes over memory (1 to [`PasswordParams::MAX_ITERATIONS`]).
    pub iterations: u32,
    /// Lanes (1 to [`PasswordParams::MAX_PARALLELISM`]).
    pub parallelism: u32,
}

impl PasswordParams {
    /// argon2's defaults: m = 19456 KiB, t = 2, p = 1.
    pub const DEFAULT: PasswordParams = PasswordParams {
        memory_kib: Params::DEFAULT_M_COST,
        iterations: Params::DEFAULT_T_COST,
        parallelism: Params::DEFAULT_P_COST,
    };
    /// The cheapest parameters argon2 accepts (8 KiB, one pass): microseconds per hash. Tests
    /// only; never for stored passwords.
    pub const FAST_INSECURE: PasswordParams = PasswordParams { memory_kib: 8, iterations: 1, parallelism: 1 };
    /// Most memory a hash may demand (256 MiB), also when verifying a stored hash: a corrupted or
    /// planted PHC string cannot make verification allocate more.
    pub const MAX_MEMORY_KIB: u32 = 256 * 1024;
    /// Most passes a hash may demand.
    pub const MAX_ITERATIONS: u32 = 16;
    /// Most lanes a hash may demand.
    pub const MAX_PARALLELISM: u32 = 16;

    fn argon2(self) -> Result<Argon2<'static>, PasswordError> {
        if self.parallelism == 0 || self.parallelism > PasswordParams::MAX_PARALLELISM {
            return Err(PasswordError::InvalidParams {
                problem: format!(
                    "parallelism {} is not within 1..={}",
                    self.parallelism,
                    PasswordParams::MAX_PARALLELISM
                ),
            });
        }
        if self.iterations == 0 || self.iterations > PasswordParams::MAX_ITERATIONS {
            return Err(PasswordError::InvalidParams {
                problem: format!("iterations {} is not within 1..={}", self.iterations, PasswordParams::MAX_ITERATIONS),
            });
        }
        let min_memory = 8 * self.parallelism;
        if self.memory_kib < min_memory || self.memory_kib > PasswordParams::MAX_MEMORY_KIB {
            return Err(PasswordError::InvalidParams {
                problem: format!(
                    "memory {} KiB is not within {min_memory}..={} KiB",
                    self.memory_kib,
                    PasswordParams::MAX_MEMORY_KIB
                ),
            });
        }
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| PasswordError::InvalidParams { problem: e.to_string() })?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl Default for PasswordParams {
    fn default() -> PasswordParams {
        PasswordParams::DEFAULT
    }
}

/// Checks a new password against the policy: at least [`MIN_PASSWORD_CHARS`] characters, at most
/// [`MAX_PASSWORD_BYTES`] bytes, not only whitespace. Cheap; run it before hashing.
pub fn check_password_policy(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong { bytes: password.len(), max: MAX_PASSWORD_BYTES });
    }
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort { chars, min: MIN_PASSWORD_CHARS });
    }
    if password.chars().all(char::is_whitespace) {
        return Err(PasswordError::Blank);
    }
    Ok(())
}

/// Hashes `password` with Argon2id and the default parameters and a fresh 16-byte salt from the
/// OS, giving a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`). About 45 ms of
/// CPU: call it from `spawn_blocking`. Refuses passwords over [`MAX_PASSWORD_BYTES`]; it does
/// not apply the rest of the policy (see [`check_password_policy`]).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    hash_password_with(password, &PasswordParams::DEFAULT)
}

/// [`hash_password`] with explicit parameters.
pub fn hash_password_with(password: &str, params: &PasswordParams) -> Result<String, PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong { bytes: password.len(), max: MAX_PASSWORD_BYTES });
    }
    let argon2 = params.argon2()?;
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|_| PasswordError::Random)?;
    let hash = argon2
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| PasswordError::Hashing { detail: e.to_string() })?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `phc` made by [`hash_password`]. The hash output is
/// compared in constant time. `false`, never a panic, for anything unusable: a malformed PHC
/// string, another algorithm than Argon2id v19, parameters above the `MAX_*` limits of
/// [`PasswordParams`], or a password over [`MAX_PASSWORD_BYTES`]. Costs what the stored
/// parameters cost (about 45 ms by default): call it from `spawn_blocking`.
pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES || phc.len() > MAX_PHC_LEN {
        return false;
    }
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    if hash.algorithm != argon2::ARGON2ID_IDENT || hash.version != Some(Version::V0x13.into()) {
        return false;
    }
    let Ok(stored) = Params::try_from(&hash) else {
        return false;
    };
    let bounded =
        PasswordParams { memory_kib: stored.m_cost(), iterations: stored.t_cost(), parallelism: stored.p_cost() };
    if bounded.argon2().is_err() || hash.salt.is_none() || hash.hash.is_none() {
        return false;
    }
    Argon2::default().verify_password(password.as_bytes(), &hash).is_ok()
}

/// Whether a stored hash should be recomputed at the next successful login, because it was made
/// with other parameters than `params` (or is not a usable Argon2id hash at all).
pub fn needs_rehash(phc: &str, params: &PasswordParams) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return true;
    };
    let Ok(stored) = Params::try_from(&hash) else {
        return true;
    };
    hash.algorithm != argon2::ARGON2ID_IDENT
        || hash.version != Some(Version::V0x13.into())
        || stored.m_cost() != params.memory_kib
        || stored.t_cost() != params.iterations
        || stored.p_cost() != params.parallelism
}

#[cfg(test)]
mod tests;
