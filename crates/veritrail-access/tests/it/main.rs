//! veritrail-access through its public API: JWT verification with real RSA, P-256 and Ed25519
//! keys, JWKS and identity-provider configuration, and the login flow.

#![allow(clippy::unwrap_used)]

mod jwks;
mod jwt;
mod login;
mod support;

/// The server keeps these in its axum state and shares them between tasks.
#[test]
fn shared_state_is_send_and_sync() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<veritrail_access::LoginThrottle>();
    shareable::<veritrail_access::RateLimiter>();
    shareable::<veritrail_access::TokenVerifier>();
    shareable::<veritrail_access::RoleCatalog>();
}
