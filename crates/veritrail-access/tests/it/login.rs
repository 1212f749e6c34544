//! The login flow a server builds from these parts: throttle check, password verification,
//! failure or success recorded, a session minted.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use veritrail_access::{
    LoginThrottle, PasswordParams, SESSION_PREFIX, hash_password_with, mint_token, secret_matches, split_token,
    verify_password,
};

const PEPPER: &[u8] = b"a server pepper of enough bytes!";

/// The HTTP status a login handler would answer.
fn login(throttle: &LoginThrottle, stored: &str, account: &str, password: &str, now: Instant) -> u16 {
    let address = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    if throttle.check(account, address, now).is_err() {
        return 429;
    }
    if verify_password(password, stored) {
        throttle.record_success(account);
        200
    } else {
        let _ = throttle.record_failure(account, address, now);
        401
    }
}

#[test]
fn twelve_bad_passwords_in_a_row_get_429() {
    let stored = hash_password_with("the right password", &PasswordParams::FAST_INSECURE).unwrap();
    let throttle = LoginThrottle::default();
    let t0 = Instant::now();
    let statuses: Vec<u16> = (0..12u64)
        .map(|i| login(&throttle, &stored, "ada@example.com", "a wrong password", t0 + Duration::from_millis(45 * i)))
        .collect();
    assert_eq!(statuses, [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 429, 429]);
    // Even the right password waits out the lockout...
    assert_eq!(login(&throttle, &stored, "ada@example.com", "the right password", t0 + Duration::from_secs(60)), 429);
    // ...and works after it, resetting the account.
    let after = t0 + Duration::from_secs(301);
    assert_eq!(login(&throttle, &stored, "ada@example.com", "the right password", after), 200);
    assert_eq!(login(&throttle, &stored, "ada@example.com", "a wrong password", after), 401);
}

#[test]
fn a_session_is_minted_and_checked() {
    let session = mint_token(SESSION_PREFIX, PEPPER).unwrap();
    let presented = split_token(SESSION_PREFIX, &session.token).unwrap();
    assert_eq!(presented.id, session.id);
    assert!(secret_matches(PEPPER, presented.secret, &session.secret_hash));
}
