use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

const MIN: Duration = Duration::from_secs(60);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

/// What the server does per attempt with a wrong password: check, then record the failure.
/// `Err` when the attempt is refused before the password is looked at.
fn bad_attempt(throttle: &LoginThrottle, account: &str, address: IpAddr, now: Instant) -> Result<(), Throttled> {
    throttle.check(account, address, now)?;
    let _ = throttle.record_failure(account, address, now);
    Ok(())
}

#[test]
fn twelve_bad_passwords_in_a_row_are_throttled() {
    let throttle = LoginThrottle::default();
    let t0 = Instant::now();
    let mut refused = Vec::new();
    for attempt in 1..=12u64 {
        // About one Argon2 verification apart.
        let now = t0 + Duration::from_millis(50 * attempt);
        if let Err(throttled) = bad_attempt(&throttle, "alice@example.com", ip(1), now) {
            assert!(matches!(throttled, Throttled::AccountLocked { .. }), "{throttled:?}");
            refused.push(attempt);
        }
    }
    assert_eq!(refused, [11, 12]);
}

#[test]
fn the_tenth_failure_starts_a_five_minute_lockout() {
    let throttle = LoginThrottle::default();
    let t0 = Instant::now();
    for _ in 0..9 {
        assert_eq!(throttle.record_failure("bob", ip(1), t0), Ok(()));
    }
    assert_eq!(throttle.check("bob", ip(1), t0), Ok(()));
    assert_eq!(throttle.record_failure("bob", ip(1), t0), Err(Throttled::AccountLocked { retry_after: 5 * MIN }));
    let refused = throttle.check("bob", ip(1), t0 + MIN).unwrap_err();
    assert_eq!(refused, Throttled::AccountLocked { retry_after: 4 * MIN });
    assert_eq!(refused.retry_after_secs(), 240);
    assert_eq!(refused.code(), "login_account_locked");
    assert_eq!(refused.to_string(), "too many failed logins for this account: try again in 240 s");
    // Other accounts, and the same account from elsewhere, are unaffected / still locked.
    assert_eq!(throttle.check("carol", ip(1), t0 + MIN), Ok(()));
    assert!(throttle.check("bob", ip(2), t0 + MIN).is_err(), "the lock is on the account, whatever the address");
    assert_eq!(throttle.check("bob", ip(1), t0 + 5 * MIN), Ok(()));
}

#[test]
fn lockouts_double_up_to_an_hour() {
    let throttle = LoginThrottle::default();
    let mut now = Instant::now();
    let mut lockouts = Vec::new();
    // An attacker who retries as soon as each lockout ends.
    while lockouts.len() < 7 {
        match bad_attempt(&throttle, "dave", ip(3), now) {
            Ok(()) => now += Duration::from_secs(1),
            Err(throttled) => {
                lockouts.push(throttled.retry_after().as_secs().div_ceil(60));
                now += throttled.retry_after();
            }
        }
    }
    assert_eq!(lockouts, [5, 10, 20, 40, 60, 60, 60]);
}

#[test]
fn failures_decay_over_the_window() {
    let throttle = LoginThrottle::default();
    let t0 = Instant::now();
    for _ in 0..9 {
        throttle.record_failure("erin", ip(4), t0).unwrap();
    }
    // 15 minutes later the budget has refilled: nine more failures are fine.
    let later = t0 + 15 * MIN;
    for _ in 0..9 {
        assert_eq!(throttle.record_failure("erin", ip(4), later), Ok(()));
    }
    assert!(throttle.record_failure("erin", ip(4), later).is_err());
}

#[test]
fn a_slow_guesser_is_still_locked() {
    // One failure a minute: 15 per window, above the 10 allowed.
    let throttle = LoginThrottle::default();
    let t0 = Instant::now();
    let locked_at = (0..30u32).find(|minute| throttle.record_failure("frank", ip(5), t0 + *minute * MIN).is_err());
    assert!(locked_at.is_some_and(|minute| minute < 30), "{locked_at:?}");
    // One failure every two minutes (7.5 per window) is never locked.
    let throttle = LoginThrottle::default();
    assert!((0..100u32).all(|i| throttle.record_failure("grace", ip(5), t0 + i * 2 * MIN).is_ok()));
}

#[test]
fn success_resets_the_account_but_not_the_address() {
    let config = ThrottleConfig { address: FailureLimit { max_failures: 12, window: 15 * MIN }, ..Default::default() };
    let throttle = LoginThrottle::new(config).unwrap();
    let t0 = Instant::now();
    for _ in 0..9 {
        throttle.record_failure("heidi", ip(6), t0).unwrap();
    }
    throttle.record_success("heidi");
    for _ in 0..2 {
        throttle.record_failure("heidi", ip(6), t0).unwrap();
    }
    // The account starts over, but the address has 11 failures: the 12th locks it.
    assert_eq!(throttle.record_failure("heidi", ip(6), t0), Err(Throttled::AddressLocked { retry_after: 5 * MIN }));
    assert!(matches!(throttle.check("ivan", ip(6), t0), Err(Throttled::AddressLocked { .. })));
    assert_eq!(throttle.check("ivan", ip(7), t0), Ok(()));
}

#[test]
fn fifty_failures_from_one_address_lock_it() {
    let throttle = LoginThrottle::default();
    let t0 = Instant::now();
    for i in 0..49 {
        assert_eq!(throttle.record_failure(&format!("user{i}"), ip(8), t0), Ok(()), "{i}");
    }
    let locked = throttle.record_failure("user49", ip(8), t0).unwrap_err();
    assert_eq!(locked, Throttled::AddressLocked { retry_after: 5 * MIN });
    assert_eq!(locked.code(), "login_address_locked");
    assert!(throttle.check("someone_new", ip(8), t0).is_err());
}

#[test]
fn ipv6_counts_by_slash_64() {
    let throttle = LoginThrottle::new(ThrottleConfig {
        address: FailureLimit { max_failures: 2, window: 15 * MIN },
        ..Default::default()
    })
    .unwrap();
    let t0 = Instant::now();
    let a = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 1));
    let b = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0xffff, 1, 2, 3));
    let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
    throttle.record_failure("x", a, t0).unwrap();
    assert!(throttle.record_failure("y", b, t0).is_err());
    assert!(throttle.check("z", a, t0).is_err());
    assert_eq!(throttle.check("z", other, t0), Ok(()));

    let mapped = IpAddr::V6(Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped());
    assert_eq!(address_key(mapped), IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)));
}

#[test]
fn memory_is_bounded() {
    let throttle = LoginThrottle::new(ThrottleConfig { max_entries: 100, ..Default::default() }).unwrap();
    let t0 = Instant::now();
    for i in 0..10_000u32 {
        let address = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let _ = throttle.record_failure(&format!("account{i}"), address, t0 + Duration::from_millis(u64::from(i)));
        let (accounts, addresses) = throttle.tracked();
        assert!(accounts <= 100 && addresses <= 100, "{accounts} {addresses}");
    }
}

#[test]
fn eviction_keeps_locked_accounts_longest() {
    let throttle = LoginThrottle::new(ThrottleConfig { max_entries: 50, ..Default::default() }).unwrap();
    let t0 = Instant::now();
    for _ in 0..10 {
        let _ = throttle.record_failure("target", ip(9), t0);
    }
    assert!(throttle.check("target", ip(10), t0).is_err());
    // A flood of single failures on other accounts, from many addresses.
    for i in 0..500u32 {
        let _ = throttle.record_failure(&format!("noise{i}"), IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i)), t0 + MIN);
    }
    assert!(throttle.check("target", ip(10), t0 + MIN).is_err(), "the flood did not evict the lockout");
}

#[test]
fn a_long_quiet_period_forgets_everything() {
    let throttle = LoginThrottle::default();
    let mut now = Instant::now();
    for _ in 0..10 {
        let _ = throttle.record_failure("judy", ip(11), now);
    }
    now += 5 * MIN;
    for _ in 0..4 {
        let _ = throttle.record_failure("judy", ip(11), now);
    }
    // Second lockout: 10 minutes. After it, two quiet hours: the next lockout is 5 minutes again.
    now += 10 * MIN + 120 * MIN;
    let lockout = (0..20).find_map(|_| throttle.record_failure("judy", ip(11), now).err()).unwrap();
    assert_eq!(lockout.retry_after(), 5 * MIN);
}

#[test]
fn config_is_checked() {
    let zero = ThrottleConfig { account: FailureLimit { max_failures: 0, window: MIN }, ..Default::default() };
    let error = LoginThrottle::new(zero).unwrap_err();
    assert_eq!(error.field, "account");
    assert_eq!(error.code(), "limit_config_invalid");
    assert!(LoginThrottle::new(ThrottleConfig { lockout: Duration::ZERO, ..Default::default() }).is_err());
    assert!(LoginThrottle::new(ThrottleConfig { max_lockout: MIN, ..Default::default() }).is_err());
    assert!(LoginThrottle::new(ThrottleConfig { max_entries: 0, ..Default::default() }).is_err());
    let instant_window = FailureLimit { max_failures: 10, window: Duration::from_nanos(5) };
    assert!(LoginThrottle::new(ThrottleConfig { address: instant_window, ..Default::default() }).is_err());
    assert!(LoginThrottle::new(ThrottleConfig::default()).is_ok());
}

#[test]
fn retry_after_rounds_up() {
    assert_eq!(Throttled::RateLimited { retry_after: Duration::from_millis(1) }.retry_after_secs(), 1);
    assert_eq!(Throttled::RateLimited { retry_after: Duration::from_millis(1001) }.retry_after_secs(), 2);
    assert_eq!(Throttled::RateLimited { retry_after: Duration::ZERO }.retry_after_secs(), 1);
}

#[test]
fn shared_across_threads() {
    let throttle = std::sync::Arc::new(LoginThrottle::default());
    let t0 = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let throttle = throttle.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let _ = throttle.record_failure("shared", ip(12), t0);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert!(throttle.check("shared", ip(13), t0).is_err());
}
