use super::*;

fn limiter(per_second: f64, burst: u32) -> RateLimiter {
    RateLimiter::new(RateLimit::new(per_second, burst)).unwrap()
}

#[test]
fn burst_then_steady_rate() {
    let limiter = limiter(10.0, 5);
    let t0 = Instant::now();
    for _ in 0..5 {
        assert_eq!(limiter.check("key", t0), Ok(()));
    }
    let refused = limiter.check("key", t0).unwrap_err();
    assert_eq!(refused, Throttled::RateLimited { retry_after: Duration::from_millis(100) });
    assert_eq!(refused.code(), "rate_limited");
    assert!(limiter.check("key", t0 + Duration::from_millis(99)).is_err());
    assert_eq!(limiter.check("key", t0 + Duration::from_millis(100)), Ok(()));
    assert!(limiter.check("key", t0 + Duration::from_millis(100)).is_err());
    // Other keys have their own bucket.
    assert_eq!(limiter.check("other", t0), Ok(()));
}

#[test]
fn refused_requests_cost_nothing() {
    let limiter = limiter(1.0, 1);
    let t0 = Instant::now();
    assert!(limiter.check("k", t0).is_ok());
    for ms in 0..50 {
        assert!(limiter.check("k", t0 + Duration::from_millis(ms * 10)).is_err());
    }
    assert!(limiter.check("k", t0 + Duration::from_secs(1)).is_ok());
}

#[test]
fn sustained_rate_matches_configuration() {
    let limiter = limiter(2.0, 4);
    let t0 = Instant::now();
    // Ten seconds of requests every 10 ms: 4 (burst) + 2/s * 10 s.
    let allowed = (0..=1000u64).filter(|i| limiter.check("k", t0 + Duration::from_millis(i * 10)).is_ok()).count();
    assert_eq!(allowed, 4 + 20);
}

#[test]
fn fractional_rates() {
    let limiter = limiter(0.5, 1);
    let t0 = Instant::now();
    assert!(limiter.check("k", t0).is_ok());
    assert_eq!(limiter.check("k", t0).unwrap_err().retry_after(), Duration::from_secs(2));
}

#[test]
fn memory_is_bounded_and_quiet_keys_go_first() {
    let limiter = RateLimiter::new(RateLimit { per_second: 1.0, burst: 2, max_keys: 100 }).unwrap();
    let t0 = Instant::now();
    assert!(limiter.check("busy", t0).is_ok());
    assert!(limiter.check("busy", t0).is_ok());
    for i in 0..1000 {
        let _ = limiter.check(&format!("k{i}"), t0);
        assert!(limiter.tracked() <= 100);
    }
    assert!(limiter.check("busy", t0).is_err(), "the emptiest bucket was kept");
}

#[test]
fn long_keys_are_cut_on_a_char_boundary() {
    let limiter = limiter(1.0, 1);
    let t0 = Instant::now();
    let long = "é".repeat(200);
    assert!(limiter.check(&long, t0).is_ok());
    assert!(limiter.check(&format!("{long}x"), t0).is_err(), "same first 128 bytes, same bucket");
}

#[test]
fn config_is_checked() {
    for (per_second, burst) in
        [(0.0, 1), (-1.0, 1), (f64::NAN, 1), (f64::INFINITY, 1), (1.0, 0), (1e-9, 1), (1e-6, 1000)]
    {
        let error = RateLimiter::new(RateLimit::new(per_second, burst)).unwrap_err();
        assert_eq!(error.code(), "limit_config_invalid", "{per_second} {burst}");
    }
    assert!(RateLimiter::new(RateLimit { per_second: 1.0, burst: 1, max_keys: 0 }).is_err());
}
