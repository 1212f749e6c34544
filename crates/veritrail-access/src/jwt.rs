//! Bearer tokens from an identity provider (SSO): compact JWS tokens (JWT) signed with RS256,
//! ES256 or EdDSA, verified against the provider's JWKS.
//!
//! What [`TokenVerifier::verify`] checks, in order:
//!
//! 1. at most [`MAX_TOKEN_BYTES`]; three non-empty dot-separated segments of strict base64url
//!    (no padding, no stray bits);
//! 2. the header is a JSON object nested at most [`MAX_JSON_DEPTH`] levels, without duplicate
//!    members or `crit`; `typ`, if present, says JWT;
//! 3. `alg` is RS256, ES256 or EdDSA **and** one of the provider's allowed algorithms: `none` and
//!    every `HS*` are refused outright, so a public key can never be used as an HMAC secret;
//! 4. the key is chosen by `kid` (or is the only key fit for `alg` when the token has no
//!    `kid`), and its type must be the algorithm's: an RSA key never verifies an ES256 or
//!    EdDSA token, nor an EC or OKP key an RS256 one; header `jwk`/`jku`/`x5u`/`x5c` are ignored;
//! 5. the signature verifies over the exact `header.payload` text;
//! 6. only then the claims are read: `iss` equals the issuer, `aud` (string or array)
//!    contains the audience, `exp` is required and not past, `nbf` and `iat` not in the
//!    future, each with the clock leeway; the subject claim is a non-empty string.
//!
//! The clock is the caller's: `now` is an argument.

mod jwks;

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use p256::ecdsa::signature::Verifier as _;
use rsa::pkcs1v15::Pkcs1v15Sign;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use self::jwks::{Jwk, PublicKey};
pub use self::jwks::{Jwks, JwksError, MAX_JWKS_BYTES, MAX_JWKS_KEYS};
use crate::printable;
use crate::role::is_role_name;

/// Longest token accepted, bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Deepest nesting of objects and arrays accepted in a token's header or claims.
pub const MAX_JSON_DEPTH: usize = 16;
/// Default clock leeway, seconds.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 60;
/// Largest clock leeway a provider may configure, seconds.
pub const MAX_LEEWAY_SECONDS: u64 = 600;

/// A JWS signature algorithm this crate verifies. Deserializing `none` or an `HS*` name fails
/// with a message saying why they are never accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlgorithm {
    /// `RS256`: RSASSA-PKCS1-v1_5 with SHA-256, RSA keys of 2048 to 8192 bits.
    Rs256,
    /// `ES256`: ECDSA on P-256 with SHA-256 (signature is `r || s`, 64 bytes).
    Es256,
    /// `EdDSA`: Ed25519 (RFC 8037), verified strictly.
    EdDsa,
}

impl JwsAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [JwsAlgorithm; 3] = [JwsAlgorithm::Rs256, JwsAlgorithm::Es256, JwsAlgorithm::EdDsa];

    /// The JOSE name: `RS256`, `ES256`, `EdDSA`.
    pub const fn name(self) -> &'static str {
        match self {
            JwsAlgorithm::Rs256 => "RS256",
            JwsAlgorithm::Es256 => "ES256",
            JwsAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// The algorithm with JOSE name `name` (exact).
    pub fn parse(name: &str) -> Option<JwsAlgorithm> {
        JwsAlgorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for JwsAlgorithm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for JwsAlgorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JwsAlgorithm, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        match classify_alg(&name) {
            Ok(alg) => Ok(alg),
            Err(error) => Err(de::Error::custom(error)),
        }
    }
}

/// The algorithm named `name`, or why it is refused.
fn classify_alg(name: &str) -> Result<JwsAlgorithm, JwtError> {
    if let Some(alg) = JwsAlgorithm::parse(name) {
        return Ok(alg);
    }
    if name.eq_ignore_ascii_case("none") {
        return Err(JwtError::Unsigned);
    }
    if name.get(..2).is_some_and(|prefix| prefix.eq_ignore_ascii_case("HS")) {
        return Err(JwtError::HmacRefused { alg: printable(name, 16) });
    }
    Err(JwtError::UnsupportedAlgorithm { alg: printable(name, 16) })
}

/// Why a bearer token is refused. Messages are fit for logs; they never quote the token, and
/// header or claim values they quote are truncated and escaped. Tell clients only "invalid
/// token".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// The token's length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// Not three dot-separated segments.
    #[error("malformed token: {problem}")]
    Malformed {
        /// What is wrong.
        problem: &'static str,
    },
    /// A segment is not strict base64url.
    #[error("malformed token: the {segment} is not base64url without padding")]
    InvalidBase64 {
        /// `header`, `claims` or `signature`.
        segment: &'static str,
    },
    /// A segment is not the JSON object it should be.
    #[error("malformed token: the {segment} is not a valid JSON object: {problem}")]
    InvalidJson {
        /// `header` or `claims`.
        segment: &'static str,
        /// What the parser said.
        problem: String,
    },
    /// JSON nested deeper than [`MAX_JSON_DEPTH`].
    #[error("malformed token: the {segment} is nested more than {max} levels deep")]
    TooDeep {
        /// `header` or `claims`.
        segment: &'static str,
        /// The maximum.
        max: usize,
    },
    /// A header member is missing or wrong (`alg` absent, `kid` not a string, a `typ` that is
    /// not JWT).
    #[error("invalid token header: {problem}")]
    InvalidHeader {
        /// What is wrong.
        problem: String,
    },
    /// The header has `crit`: no JWS extension is understood here.
    #[error("token header has crit extensions, none of which are supported")]
    CriticalHeader,
    /// `alg` is `none`.
    #[error("unsigned tokens (alg none) are never accepted")]
    Unsigned,
    /// `alg` is an HMAC algorithm.
    #[error("token alg {alg} is refused: HMAC-signed tokens are never accepted from an identity provider")]
    HmacRefused {
        /// The `alg`.
        alg: String,
    },
    /// `alg` is none of RS256, ES256, EdDSA.
    #[error("token alg {alg} is not supported: use RS256, ES256 or EdDSA")]
    UnsupportedAlgorithm {
        /// The `alg`.
        alg: String,
    },
    /// `alg` is supported but not allowed for this identity provider.
    #[error("token alg {alg} is not allowed for this identity provider")]
    AlgorithmNotAllowed {
        /// The `alg`.
        alg: JwsAlgorithm,
    },
    /// No key has the token's `kid`.
    #[error("no key with kid `{kid}` in the identity provider's key set")]
    UnknownKey {
        /// The `kid`.
        kid: String,
    },
    /// The token has no `kid`, and several keys could verify it.
    #[error("token has no kid and {candidates} keys could verify it")]
    KeyIdRequired {
        /// How many keys fit its `alg`.
        candidates: usize,
    },
    /// The token has no `kid`, and no key fits its `alg`.
    #[error("no key in the identity provider's key set can verify {alg}")]
    NoKeyForAlgorithm {
        /// The `alg`.
        alg: JwsAlgorithm,
    },
    /// The key named by `kid` is of another type than `alg` needs (or restricted to another
    /// `alg`).
    #[error("key `{kid}` is {key_type}{restriction} and cannot verify {alg}", restriction = restricted(*key_alg))]
    KeyMismatch {
        /// The `kid`.
        kid: String,
        /// The key's type, e.g. `RSA`.
        key_type: &'static str,
        /// The `alg` the JWK is restricted to, if it says.
        key_alg: Option<JwsAlgorithm>,
        /// The token's `alg`.
        alg: JwsAlgorithm,
    },
    /// The signature does not verify.
    #[error("token signature does not verify")]
    BadSignature,
    /// `iss` is not the identity provider's.
    #[error("token issuer `{issuer}` is not this identity provider's")]
    WrongIssuer {
        /// The `iss` found.
        issuer: String,
    },
    /// `aud` does not contain the configured audience.
    #[error("token audience does not include this service")]
    WrongAudience,
    /// `exp` is past (beyond the leeway).
    #[error("token expired at {expired_at}")]
    Expired {
        /// The `exp`.
        expired_at: Timestamp,
    },
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not valid before {not_before}")]
    NotYetValid {
        /// The `nbf`.
        not_before: Timestamp,
    },
    /// `iat` is in the future (beyond the leeway).
    #[error("token was issued in the future, at {issued_at}")]
    IssuedInFuture {
        /// The `iat`.
        issued_at: Timestamp,
    },
    /// A required claim is absent.
    #[error("token claim `{claim}` is missing")]
    MissingClaim {
        /// The claim name.
        claim: String,
    },
    /// A claim has the wrong type or value.
    #[error("token claim `{claim}` {problem}")]
    InvalidClaim {
        /// The claim name.
        claim: String,
        /// What is wrong, e.g. `is not a number`.
        problem: &'static str,
    },
}

fn restricted(alg: Option<JwsAlgorithm>) -> String {
    match alg {
        Some(alg) => format!(" (restricted to {alg})"),
        None => String::new(),
    }
}

impl JwtError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            JwtError::TooLong { .. } => "token_too_long",
            JwtError::Malformed { .. } => "token_malformed",
            JwtError::InvalidBase64 { .. } => "token_bad_base64",
            JwtError::InvalidJson { .. } => "token_bad_json",
            JwtError::TooDeep { .. } => "token_too_deep",
            JwtError::InvalidHeader { .. } => "token_bad_header",
            JwtError::CriticalHeader => "token_crit_unsupported",
            JwtError::Unsigned => "token_unsigned",
            JwtError::HmacRefused { .. } => "token_hmac_refused",
            JwtError::UnsupportedAlgorithm { .. } => "token_alg_unsupported",
            JwtError::AlgorithmNotAllowed { .. } => "token_alg_not_allowed",
            JwtError::UnknownKey { .. } => "token_unknown_kid",
            JwtError::KeyIdRequired { .. } => "token_kid_required",
            JwtError::NoKeyForAlgorithm { .. } => "token_no_key_for_alg",
            JwtError::KeyMismatch { .. } => "token_key_mismatch",
            JwtError::BadSignature => "token_bad_signature",
            JwtError::WrongIssuer { .. } => "token_wrong_issuer",
            JwtError::WrongAudience => "token_wrong_audience",
            JwtError::Expired { .. } => "token_expired",
            JwtError::NotYetValid { .. } => "token_not_yet_valid",
            JwtError::IssuedInFuture { .. } => "token_issued_in_future",
            JwtError::MissingClaim { .. } => "token_claim_missing",
            JwtError::InvalidClaim { .. } => "token_claim_invalid",
        }
    }
}

/// An identity provider's configuration is unusable. Messages name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The configuration document does not parse (unknown field, wrong type, refused `alg`).
    #[error("identity provider: {detail}")]
    InvalidConfig {
        /// What the parser said.
        detail: String,
    },
    /// A field has an unusable value.
    #[error("identity provider: {field}: {problem}")]
    InvalidField {
        /// The field, e.g. `issuer` or `role_mapping.admins`.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The key set is unusable.
    #[error("identity provider: {0}")]
    Jwks(#[from] JwksError),
}

impl ProviderError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::InvalidConfig { .. } => "idp_config_invalid",
            ProviderError::InvalidField { .. } => "idp_field_invalid",
            ProviderError::Jwks(inner) => inner.code(),
        }
    }
}

/// How to trust one identity provider's tokens (config file or admin API). Unknown fields are
/// rejected; [`IdentityProvider::verifier`] checks the values.
///
/// ```json
/// {
///   "issuer": "https://login.example.com/realms/acme",
///   "audience": "veritrail",
///   "allowed_algorithms": ["RS256"],
///   "jwks": {"keys": [{"kty": "RSA", "kid": "k1", "n": "...", "e": "AQAB"}]},
///   "role_claim": "roles",
///   "role_mapping": {"audit-admins": "super_admin", "auditors": "auditor"},
///   "email_claim": "email"
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityProvider {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// The `aud` value that designates this service.
    pub audience: String,
    /// The key set: a JWKS object, or a string holding one (handy in TOML). `None` when the
    /// caller fetches the set itself and uses [`TokenVerifier::with_jwks`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// Where the provider publishes its key set (`jwks_uri` of its OpenID configuration),
    /// `http://` or `https://`: the server fetches it, caches it, and fetches it again when a
    /// token names a key it does not know. Exactly one of `jwks` and `jwks_url` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Algorithms its tokens may use: a non-empty subset of RS256, ES256, EdDSA.
    pub allowed_algorithms: Vec<JwsAlgorithm>,
    /// The claim holding the user's groups or roles: a top-level claim name, or a JSON pointer
    /// starting with `/` (e.g. `/realm_access/roles`). Its value is a string or an array of
    /// strings. Default `roles`.
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// Role-claim value → Veritrail role name. Values not listed grant nothing.
    #[serde(default)]
    pub role_mapping: BTreeMap<String, String>,
    /// The claim naming the user. Default `sub`.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The claim holding the user's email, if wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_claim: Option<String>,
    /// Clock leeway for `exp`, `nbf` and `iat`, seconds (at most 600). Default 60.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

fn default_role_claim() -> String {
    "roles".into()
}

fn default_subject_claim() -> String {
    "sub".into()
}

fn default_leeway() -> u64 {
    DEFAULT_LEEWAY_SECONDS
}

impl IdentityProvider {
    /// Parses a JSON configuration (not yet checked: see [`IdentityProvider::verifier`]).
    pub fn from_json(json: &str) -> Result<IdentityProvider, ProviderError> {
        serde_json::from_str(json).map_err(|e| ProviderError::InvalidConfig { detail: crate::json_error_detail(&e) })
    }

    /// Checks that the key set is given exactly one way, and `jwks_url`'s form when it is the
    /// way: an `http` or `https` URL of at most 2048 bytes without credentials.
    pub fn check_key_source(&self) -> Result<(), ProviderError> {
        match (&self.jwks, &self.jwks_url) {
            (None, None) => Err(field_error("jwks", "missing: give the provider's key set inline or a jwks_url")),
            (Some(_), Some(_)) => Err(field_error("jwks_url", "give either jwks or jwks_url, not both")),
            (Some(_), None) => Ok(()),
            (None, Some(url)) => {
                check_text("jwks_url", url, 2048)?;
                let rest = url
                    .strip_prefix("https://")
                    .or_else(|| url.strip_prefix("http://"))
                    .ok_or_else(|| field_error("jwks_url", "must be an http:// or https:// URL"))?;
                let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
                if authority.is_empty() || authority.contains('@') || url.contains(char::is_whitespace) {
                    return Err(field_error("jwks_url", "must name a host, without credentials or spaces"));
                }
                Ok(())
            }
        }
    }

    /// Checks the configuration and builds its verifier, with the inline `jwks`.
    pub fn verifier(&self) -> Result<TokenVerifier, ProviderError> {
        self.check_key_source()?;
        let jwks = match &self.jwks {
            None => {
                return Err(field_error("jwks", "the key set is fetched from jwks_url: use TokenVerifier::with_jwks"));
            }
            Some(Value::String(json)) => Jwks::from_json(json)?,
            Some(value) => Jwks::from_value(value)?,
        };
        TokenVerifier::with_jwks(self, jwks)
    }
}

/// Verifies one identity provider's tokens. Cheap to share (`Arc`), immutable: to rotate keys,
/// build a new one with [`TokenVerifier::with_jwks`].
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    issuer: String,
    audience: String,
    algorithms: Vec<JwsAlgorithm>,
    jwks: Jwks,
    role_claim: String,
    role_mapping: BTreeMap<String, String>,
    subject_claim: String,
    email_claim: Option<String>,
    leeway: i64,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The user, from the subject claim.
    pub subject: String,
    /// The user's email, from the email claim when configured and present.
    pub email: Option<String>,
    /// Veritrail role names the role claim maps to, deduplicated, in claim order. Empty when
    /// nothing maps.
    pub roles: Vec<String>,
    /// The `exp`.
    pub expires_at: Timestamp,
    /// The algorithm that signed it.
    pub algorithm: JwsAlgorithm,
    /// The `kid` of the key that verified it.
    pub key_id: Option<String>,
    /// Every claim, as sent.
    pub claims: Map<String, Value>,
}

fn field_error(field: impl Into<String>, problem: impl Into<String>) -> ProviderError {
    ProviderError::InvalidField { field: field.into(), problem: problem.into() }
}

/// A non-empty single-line text of at most `max` bytes.
fn check_text(field: &str, value: &str, max: usize) -> Result<(), ProviderError> {
    if value.trim().is_empty() {
        return Err(field_error(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(field_error(field, format!("{} bytes, more than the {max} allowed", value.len())));
    }
    if value.chars().any(char::is_control) {
        return Err(field_error(field, "must not contain control characters"));
    }
    Ok(())
}

impl TokenVerifier {
    /// Checks `config` and builds a verifier using `jwks` (e.g. fetched from the provider's
    /// `jwks_uri`) instead of `config.jwks`.
    pub fn with_jwks(config: &IdentityProvider, jwks: Jwks) -> Result<TokenVerifier, ProviderError> {
        check_text("issuer", &config.issuer, 2048)?;
        check_text("audience", &config.audience, 2048)?;
        check_text("role_claim", &config.role_claim, 256)?;
        check_text("subject_claim", &config.subject_claim, 256)?;
        if let Some(email_claim) = &config.email_claim {
            check_text("email_claim", email_claim, 256)?;
        }
        if config.allowed_algorithms.is_empty() {
            return Err(field_error("allowed_algorithms", "must list at least one of RS256, ES256, EdDSA"));
        }
        let mut algorithms = Vec::new();
        for alg in &config.allowed_algorithms {
            if algorithms.contains(alg) {
                return Err(field_error("allowed_algorithms", format!("{alg} is listed twice")));
            }
            algorithms.push(*alg);
        }
        if !algorithms.iter().any(|alg| jwks.supports(*alg)) {
            let names: Vec<&str> = algorithms.iter().map(|alg| alg.name()).collect();
            return Err(field_error("jwks", format!("no key can verify {}", names.join(" or "))));
        }
        for (value, role) in &config.role_mapping {
            let field = format!("role_mapping.{}", printable(value, 64));
            check_text(&field, value, 256)?;
            if !is_role_name(role) {
                return Err(field_error(field, format!("`{}` is not a valid role name", printable(role, 64))));
            }
        }
        if config.leeway_seconds > MAX_LEEWAY_SECONDS {
            return Err(field_error(
                "leeway_seconds",
                format!("{} is more than the {MAX_LEEWAY_SECONDS} allowed", config.leeway_seconds),
            ));
        }
        Ok(TokenVerifier {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            algorithms,
            jwks,
            role_claim: config.role_claim.clone(),
            role_mapping: config.role_mapping.clone(),
            subject_claim: config.subject_claim.clone(),
            email_claim: config.email_claim.clone(),
            leeway: i64::try_from(config.leeway_seconds).unwrap_or(0),
        })
    }

    /// The issuer whose tokens this verifier accepts.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Verifies a compact JWS token at time `now`. See the module documentation for the checks.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<VerifiedToken, JwtError> {
        let parts = split(token)?;
        let header = parse_object(&parts.header, "header")?;
        let header = Header::read(&header)?;
        let alg = classify_alg(&header.alg)?;
        if !self.algorithms.contains(&alg) {
            return Err(JwtError::AlgorithmNotAllowed { alg });
        }
        let key = self.key_for(alg, header.kid.as_deref())?;
        verify_signature(&key.key, parts.signed.as_bytes(), &parts.signature)?;
        let claims = parse_object(&parts.claims, "claims")?;
        self.check_claims(claims, alg, key, now)
    }

    fn key_for(&self, alg: JwsAlgorithm, kid: Option<&str>) -> Result<&Jwk, JwtError> {
        let keys = self.jwks.keys();
        let Some(kid) = kid else {
            let mut fitting = keys.iter().filter(|key| key.verifies(alg));
            return match (fitting.next(), fitting.count()) {
                (Some(key), 0) => Ok(key),
                (Some(_), more) => Err(JwtError::KeyIdRequired { candidates: more + 1 }),
                (None, _) => Err(JwtError::NoKeyForAlgorithm { alg }),
            };
        };
        let Some(key) = keys.iter().find(|key| key.kid.as_deref() == Some(kid)) else {
            return Err(JwtError::UnknownKey { kid: printable(kid, 64) });
        };
        if !key.verifies(alg) {
            return Err(JwtError::KeyMismatch {
                kid: printable(kid, 64),
                key_type: key.key.type_name(),
                key_alg: key.alg,
                alg,
            });
        }
        Ok(key)
    }

    fn check_claims(
        &self,
        claims: Map<String, Value>,
        alg: JwsAlgorithm,
        key: &Jwk,
        now: Timestamp,
    ) -> Result<VerifiedToken, JwtError> {
        match claims.get("iss") {
            None => return Err(missing("iss")),
            Some(Value::String(issuer)) if *issuer == self.issuer => {}
            Some(Value::String(issuer)) => return Err(JwtError::WrongIssuer { issuer: printable(issuer, 128) }),
            Some(_) => return Err(invalid("iss", "is not a string")),
        }
        match claims.get("aud") {
            None => return Err(missing("aud")),
            Some(Value::String(audience)) => {
                if *audience != self.audience {
                    return Err(JwtError::WrongAudience);
                }
            }
            Some(Value::Array(audiences)) => {
                let mut found = false;
                for audience in audiences {
                    let Some(audience) = audience.as_str() else {
                        return Err(invalid("aud", "is not a string or an array of strings"));
                    };
                    found |= audience == self.audience;
                }
                if !found {
                    return Err(JwtError::WrongAudience);
                }
            }
            Some(_) => return Err(invalid("aud", "is not a string or an array of strings")),
        }

        let now_seconds = now.as_second();
        let Some(expires_at) = numeric_date(&claims, "exp")? else {
            return Err(missing("exp"));
        };
        if now_seconds >= expires_at.as_second().saturating_add(self.leeway) {
            return Err(JwtError::Expired { expired_at: expires_at });
        }
        if let Some(not_before) = numeric_date(&claims, "nbf")?
            && now_seconds.saturating_add(self.leeway) < not_before.as_second()
        {
            return Err(JwtError::NotYetValid { not_before });
        }
        if let Some(issued_at) = numeric_date(&claims, "iat")?
            && now_seconds.saturating_add(self.leeway) < issued_at.as_second()
        {
            return Err(JwtError::IssuedInFuture { issued_at });
        }

        let subject = match claims.get(&self.subject_claim) {
            None => return Err(missing(&self.subject_claim)),
            Some(Value::String(subject)) if subject.is_empty() => {
                return Err(invalid(&self.subject_claim, "is empty"));
            }
            Some(Value::String(subject)) if subject.len() > 1024 => {
                return Err(invalid(&self.subject_claim, "is longer than 1024 bytes"));
            }
            Some(Value::String(subject)) => subject.clone(),
            Some(_) => return Err(invalid(&self.subject_claim, "is not a string")),
        };
        let email = match self.email_claim.as_deref().and_then(|name| claims.get(name).map(|value| (name, value))) {
            None => None,
            Some((_, Value::String(email))) => Some(email.clone()),
            Some((name, _)) => return Err(invalid(name, "is not a string")),
        };
        let roles = self.roles(&claims)?;
        Ok(VerifiedToken { subject, email, roles, expires_at, algorithm: alg, key_id: key.kid.clone(), claims })
    }

    fn roles(&self, claims: &Map<String, Value>) -> Result<Vec<String>, JwtError> {
        let value = if self.role_claim.starts_with('/') {
            // A JSON pointer into nested claims, e.g. /realm_access/roles.
            let mut current: Option<&Value> = None;
            for (depth, token) in self.role_claim[1..].split('/').enumerate() {
                let token = token.replace("~1", "/").replace("~0", "~");
                current = if depth == 0 { claims.get(&token) } else { current.and_then(|value| value.get(&token)) };
            }
            current
        } else {
            claims.get(&self.role_claim)
        };
        let values: Vec<&str> = match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(single)) => vec![single.as_str()],
            Some(Value::Array(many)) => {
                let mut values = Vec::with_capacity(many.len());
                for value in many {
                    let Some(value) = value.as_str() else {
                        return Err(invalid(&self.role_claim, "is not a string or an array of strings"));
                    };
                    values.push(value);
                }
                values
            }
            Some(_) => return Err(invalid(&self.role_claim, "is not a string or an array of strings")),
        };
        let mut roles: Vec<String> = Vec::new();
        for value in values {
            if let Some(role) = self.role_mapping.get(value)
                && !roles.contains(role)
            {
                roles.push(role.clone());
            }
        }
        Ok(roles)
    }
}

fn missing(claim: &str) -> JwtError {
    JwtError::MissingClaim { claim: printable(claim, 64) }
}

fn invalid(claim: &str, problem: &'static str) -> JwtError {
    JwtError::InvalidClaim { claim: printable(claim, 64), problem }
}

/// A NumericDate claim (seconds since the epoch, fractions allowed and dropped).
fn numeric_date(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<Timestamp>, JwtError> {
    let Some(value) = claims.get(claim) else {
        return Ok(None);
    };
    let Some(number) = value.as_number() else {
        return Err(invalid(claim, "is not a number"));
    };
    let seconds = match number.as_i64() {
        Some(seconds) => seconds,
        None => match number.as_f64() {
            // Fractions are dropped; values beyond ±2^63 are out of jiff's range anyway.
            Some(seconds) if seconds.is_finite() && seconds.abs() < 9.0e15 => seconds.floor() as i64,
            _ => return Err(invalid(claim, "is not a valid date")),
        },
    };
    Timestamp::from_second(seconds).map(Some).map_err(|_| invalid(claim, "is not a valid date"))
}

/// The decoded segments of a compact JWS.
struct Parts<'a> {
    /// `header.claims` as sent: what the signature covers.
    signed: &'a str,
    header: Vec<u8>,
    claims: Vec<u8>,
    signature: Vec<u8>,
}

fn split(token: &str) -> Result<Parts<'_>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLong { len: token.len(), max: MAX_TOKEN_BYTES });
    }
    let segments = token.split('.').count();
    if segments == 5 {
        return Err(JwtError::Malformed { problem: "encrypted tokens (JWE) are not supported" });
    }
    if segments != 3 {
        return Err(JwtError::Malformed { problem: "expected three base64url segments separated by dots" });
    }
    let Some((signed, signature)) = token.rsplit_once('.') else {
        return Err(JwtError::Malformed { problem: "expected three base64url segments separated by dots" });
    };
    let Some((header, claims)) = signed.split_once('.') else {
        return Err(JwtError::Malformed { problem: "expected three base64url segments separated by dots" });
    };
    if header.is_empty() || claims.is_empty() {
        return Err(JwtError::Malformed { problem: "empty header or claims segment" });
    }
    if signature.is_empty() {
        return Err(JwtError::Unsigned);
    }
    let decode = |text: &str, segment: &'static str| {
        URL_SAFE_NO_PAD.decode(text).map_err(|_| JwtError::InvalidBase64 { segment })
    };
    Ok(Parts {
        signed,
        header: decode(header, "header")?,
        claims: decode(claims, "claims")?,
        signature: decode(signature, "signature")?,
    })
}

/// Parses a JSON object whose members must be distinct, nested at most [`MAX_JSON_DEPTH`].
fn parse_object(bytes: &[u8], segment: &'static str) -> Result<Map<String, Value>, JwtError> {
    if !depth_within(bytes, MAX_JSON_DEPTH) {
        return Err(JwtError::TooDeep { segment, max: MAX_JSON_DEPTH });
    }
    let object: DistinctObject = serde_json::from_slice(bytes).map_err(|e| JwtError::InvalidJson {
        segment,
        problem: match e.classify() {
            serde_json::error::Category::Data => printable(&e.to_string(), 160),
            _ => format!("syntax error at line {} column {}", e.line(), e.column()),
        },
    })?;
    Ok(object.0)
}

/// Whether the JSON text nests objects and arrays at most `max` levels. A byte scan, run before
/// parsing so deep input costs no recursion; strings are skipped.
pub(crate) fn depth_within(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// A JSON object that refuses duplicate member names (RFC 7515 §5.2 lets a verifier refuse
/// them; they are how one parser is shown another `alg` or `iss` than the next).
struct DistinctObject(Map<String, Value>);

impl<'de> Deserialize<'de> for DistinctObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DistinctObject, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = DistinctObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<DistinctObject, A::Error> {
                let mut map = Map::new();
                while let Some(name) = access.next_key::<String>()? {
                    let value: Value = access.next_value()?;
                    if map.contains_key(&name) {
                        return Err(de::Error::custom(format_args!("member `{}` appears twice", printable(&name, 64))));
                    }
                    map.insert(name, value);
                }
                Ok(DistinctObject(map))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// The header members that matter.
struct Header {
    alg: String,
    kid: Option<String>,
}

impl Header {
    fn read(header: &Map<String, Value>) -> Result<Header, JwtError> {
        let problem = |problem: &str| JwtError::InvalidHeader { problem: problem.to_string() };
        if header.contains_key("crit") {
            return Err(JwtError::CriticalHeader);
        }
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.clone(),
            Some(_) => return Err(problem("alg is not a string")),
            None => return Err(problem("alg is missing")),
        };
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(problem("kid is not a string")),
        };
        match header.get("typ") {
            None => {}
            Some(Value::String(typ)) => {
                let typ = typ.to_ascii_lowercase();
                let typ = typ.strip_prefix("application/").unwrap_or(&typ);
                if typ != "jwt" && typ != "at+jwt" {
                    return Err(problem("typ is not JWT or at+jwt: the token is meant for something else"));
                }
            }
            Some(_) => return Err(problem("typ is not a string")),
        }
        Ok(Header { alg, kid })
    }
}

fn verify_signature(key: &PublicKey, signed: &[u8], signature: &[u8]) -> Result<(), JwtError> {
    let verified = match key {
        PublicKey::Rsa(key) => {
            let digest = Sha256::digest(signed);
            key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, signature).is_ok()
        }
        PublicKey::P256(key) => match p256::ecdsa::Signature::from_slice(signature) {
            Ok(signature) => key.verify(signed, &signature).is_ok(),
            Err(_) => false,
        },
        PublicKey::Ed25519(key) => match <[u8; 64]>::try_from(signature) {
            Ok(bytes) => key.verify_strict(signed, &ed25519_dalek::Signature::from_bytes(&bytes)).is_ok(),
            Err(_) => false,
        },
    };
    if verified { Ok(()) } else { Err(JwtError::BadSignature) }
}

/// The `iss` of a token, read **without verifying anything**: only to pick which provider's
/// [`TokenVerifier`] to use when several are configured. `None` if the token is not three
/// segments with readable claims; an unsigned token still names its issuer, so that the
/// provider it impersonates can refuse (and record) it.
pub fn unverified_issuer(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let mut segments = token.split('.');
    let (Some(_header), Some(claims), Some(_signature), None) =
        (segments.next(), segments.next(), segments.next(), segments.next())
    else {
        return None;
    };
    let claims = URL_SAFE_NO_PAD.decode(claims).ok()?;
    let claims = parse_object(&claims, "claims").ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests;
