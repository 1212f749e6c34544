//! Login throttling: failed logins counted per account and per source address, with escalating
//! lockouts.
//!
//! Each account and each address has a failure budget that drains and refills continuously
//! (a GCRA, the leaky-bucket form of a sliding window): `max_failures` failures in a burst, then
//! one more per `window / max_failures`. The failure that exhausts the budget locks the account
//! (or address) for `lockout`; every further lockout before the record has been clean for
//! `max_lockout` doubles it, up to `max_lockout`. With the defaults, ten bad passwords in a row
//! lock the account for 5 minutes, so the 11th attempt is refused.
//!
//! Time is passed in (`now: Instant`), so tests are deterministic. Both tables sit behind their
//! own mutex; each call holds it for a hash-map lookup, except when a full table is swept.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Longest window, lockout or rate-limit period accepted in a configuration.
const MAX_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

/// A request refused for now. [`Throttled::retry_after`] says when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Throttled {
    /// Too many failed logins for this account.
    #[error("too many failed logins for this account: try again in {} s", secs(*retry_after))]
    AccountLocked {
        /// How long the lockout still lasts.
        retry_after: Duration,
    },
    /// Too many failed logins from this network address.
    #[error("too many failed logins from this address: try again in {} s", secs(*retry_after))]
    AddressLocked {
        /// How long the lockout still lasts.
        retry_after: Duration,
    },
    /// Too many requests for this key.
    #[error("rate limit exceeded: try again in {} s", secs(*retry_after))]
    RateLimited {
        /// When the next request would be allowed.
        retry_after: Duration,
    },
}

impl Throttled {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Throttled::AccountLocked { .. } => "login_account_locked",
            Throttled::AddressLocked { .. } => "login_address_locked",
            Throttled::RateLimited { .. } => "rate_limited",
        }
    }

    /// How long to wait.
    pub fn retry_after(&self) -> Duration {
        match *self {
            Throttled::AccountLocked { retry_after }
            | Throttled::AddressLocked { retry_after }
            | Throttled::RateLimited { retry_after } => retry_after,
        }
    }

    /// [`Throttled::retry_after`] in whole seconds, rounded up and at least 1: the value of a
    /// `Retry-After` header.
    pub fn retry_after_secs(&self) -> u64 {
        secs(self.retry_after())
    }
}

fn secs(duration: Duration) -> u64 {
    let whole = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    whole.max(1)
}

/// A throttle or rate-limit configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct LimitConfigError {
    /// The field, e.g. `account.window`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl LimitConfigError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        "limit_config_invalid"
    }
}

/// At most `max_failures` failures per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    /// Failures allowed in a burst; the one that uses the last of them starts a lockout.
    pub max_failures: u32,
    /// Time for a full budget to refill.
    pub window: Duration,
}

impl FailureLimit {
    fn validate(self, field: &'static str) -> Result<Duration, LimitConfigError> {
        if self.max_failures == 0 {
            return Err(LimitConfigError { field, problem: "max_failures must be at least 1".into() });
        }
        if self.window.is_zero() || self.window > MAX_PERIOD {
            return Err(LimitConfigError { field, problem: "window must be between 1 ns and 7 days".into() });
        }
        let interval = self.window / self.max_failures;
        if interval.is_zero() {
            return Err(LimitConfigError { field, problem: "window is shorter than max_failures nanoseconds".into() });
        }
        Ok(interval)
    }
}

/// Settings of a [`LoginThrottle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Per account. Default: 10 failures per 15 minutes.
    pub account: FailureLimit,
    /// Per source address (IPv6 by /64). Default: 50 failures per 15 minutes.
    pub address: FailureLimit,
    /// First lockout. Default: 5 minutes.
    pub lockout: Duration,
    /// Longest lockout, and how long a record must stay clean before lockouts start again from
    /// `lockout`. Default: 1 hour.
    pub max_lockout: Duration,
    /// Most accounts, and most addresses, remembered. When a table is full, records that have
    /// fully decayed are dropped first, then those closest to it. Default: 100 000 each.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> ThrottleConfig {
        ThrottleConfig {
            account: FailureLimit { max_failures: 10, window: Duration::from_secs(15 * 60) },
            address: FailureLimit { max_failures: 50, window: Duration::from_secs(15 * 60) },
            lockout: Duration::from_secs(5 * 60),
            max_lockout: Duration::from_secs(60 * 60),
            max_entries: 100_000,
        }
    }
}

/// Counts failed logins and refuses attempts while an account or address is locked out.
/// Share one in the server state (`Arc<LoginThrottle>` or a field of it).
///
/// Protocol per login attempt: [`LoginThrottle::check`] before verifying the password (a locked
/// account costs no Argon2 hash), then [`LoginThrottle::record_failure`] or
/// [`LoginThrottle::record_success`]. Accounts are compared exactly: pass a canonical key (for
/// example the lowercased email), and pass it for unknown accounts too.
#[derive(Debug)]
pub struct LoginThrottle {
    accounts: FailureTable<[u8; 32]>,
    addresses: FailureTable<IpAddr>,
}

impl LoginThrottle {
    /// A throttle with `config`, checked.
    pub fn new(config: ThrottleConfig) -> Result<LoginThrottle, LimitConfigError> {
        let account_interval = config.account.validate("account")?;
        let address_interval = config.address.validate("address")?;
        if config.lockout.is_zero() || config.lockout > MAX_PERIOD {
            return Err(LimitConfigError { field: "lockout", problem: "must be between 1 ns and 7 days".into() });
        }
        if config.max_lockout < config.lockout || config.max_lockout > MAX_PERIOD {
            return Err(LimitConfigError {
                field: "max_lockout",
                problem: "must be at least lockout and at most 7 days".into(),
            });
        }
        if config.max_entries == 0 {
            return Err(LimitConfigError { field: "max_entries", problem: "must be at least 1".into() });
        }
        Ok(LoginThrottle::with_intervals(config, account_interval, address_interval))
    }

    fn with_intervals(config: ThrottleConfig, account_interval: Duration, address_interval: Duration) -> LoginThrottle {
        let policy = |limit: FailureLimit, interval: Duration| Policy {
            interval,
            threshold: interval.saturating_mul(limit.max_failures.saturating_sub(1)),
            lockout: config.lockout,
            max_lockout: config.max_lockout,
            max_entries: config.max_entries,
        };
        LoginThrottle {
            accounts: FailureTable::new(policy(config.account, account_interval)),
            addresses: FailureTable::new(policy(config.address, address_interval)),
        }
    }

    /// Refuses the attempt if the account or the address is locked out (the longer lockout
    /// wins). Changes nothing.
    pub fn check(&self, account: &str, address: IpAddr, now: Instant) -> Result<(), Throttled> {
        let account = self.accounts.locked_for(&account_key(account), now);
        let address = self.addresses.locked_for(&address_key(address), now);
        match (account, address) {
            (Some(a), Some(b)) if b > a => Err(Throttled::AddressLocked { retry_after: b }),
            (Some(a), _) => Err(Throttled::AccountLocked { retry_after: a }),
            (None, Some(b)) => Err(Throttled::AddressLocked { retry_after: b }),
            (None, None) => Ok(()),
        }
    }

    /// Counts a failed attempt against the account and the address. `Err` when either is now
    /// locked out (by this failure or before): the caller may answer this attempt with 429
    /// already, or with its usual 401 and refuse the next one at [`LoginThrottle::check`].
    pub fn record_failure(&self, account: &str, address: IpAddr, now: Instant) -> Result<(), Throttled> {
        let account = self.accounts.fail(account_key(account), now);
        let address = self.addresses.fail(address_key(address), now);
        match (account, address) {
            (Some(a), Some(b)) if b > a => Err(Throttled::AddressLocked { retry_after: b }),
            (Some(a), _) => Err(Throttled::AccountLocked { retry_after: a }),
            (None, Some(b)) => Err(Throttled::AddressLocked { retry_after: b }),
            (None, None) => Ok(()),
        }
    }

    /// A successful login: forgets the account's failures and lockouts. The address keeps its
    /// count (one valid account must not reset an address that is guessing at others).
    pub fn record_success(&self, account: &str) {
        self.accounts.forget(&account_key(account));
    }

    /// How many accounts and how many addresses are remembered (for metrics).
    pub fn tracked(&self) -> (usize, usize) {
        (self.accounts.len(), self.addresses.len())
    }
}

impl Default for LoginThrottle {
    /// The [`ThrottleConfig::default`] throttle.
    fn default() -> LoginThrottle {
        let config = ThrottleConfig::default();
        let interval = |limit: FailureLimit| limit.window / limit.max_failures;
        LoginThrottle::with_intervals(config, interval(config.account), interval(config.address))
    }
}

/// Accounts are keyed by their SHA-256: fixed-size entries whatever the name's length, and no
/// account names in memory dumps.
fn account_key(account: &str) -> [u8; 32] {
    Sha256::digest(account.as_bytes()).into()
}

/// IPv4 addresses as they are; IPv6 by /64 (one host usually holds a whole /64); IPv4-mapped
/// IPv6 as IPv4.
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Policy {
    /// Budget refill time per failure: `window / max_failures`.
    interval: Duration,
    /// Outstanding debt above which the budget is exhausted: `(max_failures - 1) * interval`.
    threshold: Duration,
    lockout: Duration,
    max_lockout: Duration,
    max_entries: usize,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    /// When the failure debt is paid off (GCRA theoretical arrival time).
    paid_at: Instant,
    /// End of the current or last lockout.
    locked_until: Option<Instant>,
    /// Lockouts since the record was last clean.
    lockouts: u32,
}

impl Record {
    /// From when the record carries no information (no debt, no lockout to remember).
    fn expires_at(&self, policy: &Policy) -> Instant {
        match self.locked_until {
            Some(until) if self.lockouts > 0 => self.paid_at.max(later(until, policy.max_lockout)),
            _ => self.paid_at,
        }
    }
}

#[derive(Debug)]
struct FailureTable<K> {
    policy: Policy,
    records: Mutex<HashMap<K, Record>>,
}

impl<K: Eq + Hash + Copy> FailureTable<K> {
    fn new(policy: Policy) -> FailureTable<K> {
        FailureTable { policy, records: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Record>> {
        // Nothing panics while the lock is held; a poisoned map is still consistent.
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn locked_for(&self, key: &K, now: Instant) -> Option<Duration> {
        let until = self.lock().get(key)?.locked_until?;
        until.checked_duration_since(now).filter(|left| !left.is_zero())
    }

    fn forget(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Records a failure; the remaining lockout if the key is (now) locked.
    fn fail(&self, key: K, now: Instant) -> Option<Duration> {
        let policy = self.policy;
        let mut records = self.lock();
        if !records.contains_key(&key) && records.len() >= policy.max_entries {
            evict(&mut records, policy.max_entries, now, |record| record.expires_at(&policy));
        }
        let record = records.entry(key).or_insert(Record { paid_at: now, locked_until: None, lockouts: 0 });
        if let Some(left) = record.locked_until.and_then(|until| until.checked_duration_since(now))
            && !left.is_zero()
        {
            // Attempts that raced past `check` while the lock was set add nothing.
            return Some(left);
        }
        if record.expires_at(&policy) <= now {
            *record = Record { paid_at: now, locked_until: None, lockouts: 0 };
        }
        record.paid_at = later(record.paid_at.max(now), policy.interval);
        let debt = record.paid_at.saturating_duration_since(now);
        if debt <= policy.threshold {
            return None;
        }
        let lockout = policy.lockout.saturating_mul(1 << record.lockouts.min(20)).min(policy.max_lockout);
        record.locked_until = Some(later(now, lockout));
        record.lockouts = record.lockouts.saturating_add(1);
        Some(lockout)
    }
}

/// Makes room in a full table: drops every record that `expires_at` says is stale, then, if the
/// table is still over 90 % of `max`, the records closest to expiring (the least informative)
/// until it is at 90 %. The sweep is O(n) but runs once per `max / 10` insertions at most.
pub(crate) fn evict<K: Eq + Hash + Clone, V>(
    map: &mut HashMap<K, V>,
    max: usize,
    now: Instant,
    expires_at: impl Fn(&V) -> Instant,
) {
    map.retain(|_, value| expires_at(value) > now);
    let target = max - max / 10 - 1;
    if map.len() <= target {
        return;
    }
    let mut by_expiry: Vec<(Instant, K)> = map.iter().map(|(key, value)| (expires_at(value), key.clone())).collect();
    let excess = by_expiry.len() - target;
    by_expiry.select_nth_unstable_by_key(excess - 1, |(at, _)| *at);
    for (_, key) in &by_expiry[..excess] {
        map.remove(key);
    }
}

/// `at + by`, or `at` itself in the impossible case of an `Instant` overflow (durations are
/// capped at 7 days by configuration checks).
pub(crate) fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by).unwrap_or(at)
}

#[cfg(test)]
mod tests;
