//! Access control for Veritrail, as pure functions and small thread-safe tables:
//!
//! - [`Permission`]s, [`PermissionSet`]s, the built-in [`BuiltinRole`]s, validated custom roles
//!   ([`RoleSpec`] → [`CustomRole`]), a [`RoleCatalog`], the legacy API-key scopes
//!   ([`scope_permissions`]) and who may read which events ([`read_scope`]);
//! - human passwords: Argon2id PHC strings ([`hash_password`], [`verify_password`]) and the
//!   policy ([`check_password_policy`]);
//! - SSO bearer tokens: compact JWS (RS256, ES256, EdDSA) checked against an
//!   [`IdentityProvider`]'s JWKS by a [`TokenVerifier`];
//! - throttling: failed logins per account and address ([`LoginThrottle`]), request rates per
//!   key ([`RateLimiter`]);
//! - opaque tokens: API keys `vt_<id>_<secret>` and sessions `vts_<id>_<secret>`
//!   ([`mint_token`], [`split_token`], [`secret_matches`]).
//!
//! **Architecture invariant:** no I/O, no clock, no async runtime. Time is an argument
//! (`jiff::Timestamp` for token validity, `std::time::Instant` for throttles); the only outside
//! input is OS randomness, for salts and token secrets. The HTTP mapping (401, 403, 429 with
//! `Retry-After`) belongs to `veritrail-server`.
//!
//! **Secrets:** no password, token, secret or key ever appears in an error message or `Debug`
//! output. Hostile input (tokens, JWKS, PHC strings, role documents) never panics.

#![forbid(unsafe_code)]

mod jwt;
mod password;
mod permission;
mod rate_limit;
mod role;
mod throttle;
mod token;

pub use crate::jwt::{
    DEFAULT_LEEWAY_SECONDS, IdentityProvider, Jwks, JwksError, JwsAlgorithm, JwtError, MAX_JSON_DEPTH, MAX_JWKS_BYTES,
    MAX_JWKS_KEYS, MAX_LEEWAY_SECONDS, MAX_TOKEN_BYTES, ProviderError, TokenVerifier, VerifiedToken, unverified_issuer,
};
pub use crate::password::{
    MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, PasswordError, PasswordParams, check_password_policy, hash_password,
    hash_password_with, needs_rehash, verify_password,
};
pub use crate::permission::{Permission, PermissionSet, ReadScope, read_scope};
pub use crate::rate_limit::{RateLimit, RateLimiter};
pub use crate::role::{
    BuiltinRole, CustomRole, LEGACY_EVENTS_READ, LEGACY_SCOPES, MAX_DESCRIPTION_CHARS, RoleCatalog, RoleError,
    RoleSpec, is_role_name, scope_permissions, scopes_permissions, validate_custom_role_name,
};
pub use crate::throttle::{FailureLimit, LimitConfigError, LoginThrottle, ThrottleConfig, Throttled};
pub use crate::token::{
    API_KEY_PREFIX, MAX_TOKEN_LEN, MintedToken, SESSION_PREFIX, TOKEN_ID_CHARS, TOKEN_SECRET_CHARS, TokenError,
    TokenParts, hash_secret, mint_token, secret_matches, split_token,
};

/// `text` fit to quote in an error message or a log line: at most `max` characters, control and
/// invisible formatting characters (bidi overrides, zero-width) escaped, `…` when cut.
pub(crate) fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == max {
            out.push('…');
            break;
        }
        if c.is_control() || is_invisible_format(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Zero-width and bidirectional formatting characters, which can make a log line read
/// differently from what it holds.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A serde_json error as a message: what is wrong and where, without echoing long input.
pub(crate) fn json_error_detail(error: &serde_json::Error) -> String {
    printable(&error.to_string(), 200)
}

#[cfg(test)]
mod tests;
