//! Per-key request rate limits: a token bucket per key (API key id, session id, address).
//!
//! Implemented as a GCRA, which behaves exactly like a token bucket of `burst` tokens refilled
//! at `per_second` but keeps one `Instant` per key instead of a count and a timestamp.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::throttle::{LimitConfigError, Throttled, evict, later};

/// Longest key remembered; longer keys are cut (callers pass ids, not request data).
const MAX_KEY_LEN: usize = 128;

/// How fast one key may go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second (> 0; fractions allowed, e.g. 0.5).
    pub per_second: f64,
    /// Requests allowed at once after a quiet period (at least 1).
    pub burst: u32,
    /// Most keys remembered; a full table drops the keys whose bucket is fullest first.
    /// Default: 100 000.
    pub max_keys: usize,
}

impl RateLimit {
    /// `per_second` sustained with bursts of `burst`, for up to 100 000 keys.
    pub fn new(per_second: f64, burst: u32) -> RateLimit {
        RateLimit { per_second, burst, max_keys: 100_000 }
    }
}

/// Token buckets by key. Share one in the server state; each call holds the mutex for one
/// hash-map lookup (plus, rarely, a sweep of a full table).
#[derive(Debug)]
pub struct RateLimiter {
    /// Time to earn one token.
    interval: Duration,
    /// `burst * interval`: how far ahead of `now` the schedule may run.
    capacity: Duration,
    max_keys: usize,
    /// Per key, when its bucket is full again (GCRA theoretical arrival time).
    full_at: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    /// A limiter enforcing `limit`, checked.
    pub fn new(limit: RateLimit) -> Result<RateLimiter, LimitConfigError> {
        if !limit.per_second.is_finite() || limit.per_second <= 0.0 || limit.per_second > 1e9 {
            return Err(LimitConfigError {
                field: "per_second",
                problem: "must be a number above 0 and at most 1e9".into(),
            });
        }
        let interval = Duration::from_secs_f64(1.0 / limit.per_second);
        if interval.is_zero() || interval > Duration::from_secs(7 * 24 * 3600) {
            return Err(LimitConfigError {
                field: "per_second",
                problem: "must allow one request per 7 days at least".into(),
            });
        }
        if limit.burst == 0 {
            return Err(LimitConfigError { field: "burst", problem: "must be at least 1".into() });
        }
        let capacity = interval.checked_mul(limit.burst).filter(|c| *c <= Duration::from_secs(365 * 24 * 3600));
        let Some(capacity) = capacity else {
            return Err(LimitConfigError { field: "burst", problem: "burst / per_second must be under a year".into() });
        };
        if limit.max_keys == 0 {
            return Err(LimitConfigError { field: "max_keys", problem: "must be at least 1".into() });
        }
        Ok(RateLimiter { interval, capacity, max_keys: limit.max_keys, full_at: Mutex::new(HashMap::new()) })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        // Nothing panics while the lock is held; a poisoned map is still consistent.
        self.full_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes one token from `key`'s bucket, or says how long until one is available (nothing
    /// is taken then).
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Throttled> {
        let key = cut(key);
        let mut full_at = self.lock();
        let scheduled = full_at.get(key).copied().unwrap_or(now).max(now);
        let next = later(scheduled, self.interval);
        let ahead = next.saturating_duration_since(now);
        if ahead > self.capacity {
            return Err(Throttled::RateLimited { retry_after: ahead - self.capacity });
        }
        if let Some(slot) = full_at.get_mut(key) {
            *slot = next;
        } else {
            if full_at.len() >= self.max_keys {
                evict(&mut full_at, self.max_keys, now, |at| *at);
            }
            full_at.insert(key.to_string(), next);
        }
        Ok(())
    }

    /// How many keys are remembered (for metrics).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

fn cut(key: &str) -> &str {
    if key.len() <= MAX_KEY_LEN {
        return key;
    }
    let mut end = MAX_KEY_LEN;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

#[cfg(test)]
mod tests;
