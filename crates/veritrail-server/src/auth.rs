//! Credentials: tenant API keys (`vt_<key id>_<secret>`) and the platform bootstrap token.
//! Secrets are stored only as HMAC-SHA-256 under a server-wide pepper and compared in constant
//! time. The tenant of a request comes from its credential only, never from the request.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::ids;

/// A scope an API key may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Ingest events.
    EventsWrite,
    /// Query, read and export events.
    EventsRead,
    /// See personal fields (names, e-mails, IPs, sensitive changes) unmasked; every such read of
    /// sensitive events is itself recorded (`data.sensitive.accessed`).
    PiiRead,
    /// Everything in the tenant, key management and data-subject requests included.
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 4] = [Scope::EventsWrite, Scope::EventsRead, Scope::PiiRead, Scope::Admin];

    /// Wire name.
    pub fn name(self) -> &'static str {
        match self {
            Scope::EventsWrite => "events:write",
            Scope::EventsRead => "events:read",
            Scope::PiiRead => "pii:read",
            Scope::Admin => "admin",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.name() == text)
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The platform operator (bootstrap token): may create tenants, sees no tenant's data.
    Platform,
    /// A tenant API key.
    Key(KeyPrincipal),
}

/// An authenticated tenant API key.
#[derive(Debug, Clone)]
pub struct KeyPrincipal {
    /// The tenant the key belongs to.
    pub tenant: String,
    /// Public key id.
    pub key_id: String,
    /// Key label.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
}

impl KeyPrincipal {
    /// True when the key has `scope` (or `admin`).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// Fails with 403 unless the key has `scope` (or `admin`).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(ApiError::new(Code::Forbidden, format!("this api key lacks the {} scope", scope.name())))
        }
    }

    /// The actor recorded in self-audit events for this key.
    pub fn actor_json(&self) -> serde_json::Value {
        serde_json::json!({"id": format!("api_key:{}", self.key_id), "type": "api_key", "name": self.name})
    }
}

impl Principal {
    /// The tenant key, or 403 for the platform token (which reads no tenant's data).
    pub fn tenant_key(&self) -> Result<&KeyPrincipal, ApiError> {
        match self {
            Principal::Key(key) => Ok(key),
            Principal::Platform => Err(ApiError::new(
                Code::Forbidden,
                "the platform token cannot act inside a tenant; use a tenant api key",
            )),
        }
    }
}

/// Keyed hash of a secret under the server pepper.
pub fn hash_secret(pepper: &[u8], secret: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(pepper).expect("hmac accepts keys of any length");
    mac.update(secret.as_bytes());
    mac.finalize().into_bytes().into()
}

/// A freshly minted API key: the id and the full token shown once to the caller.
pub struct NewKey {
    /// Public id.
    pub id: String,
    /// `vt_<id>_<secret>`.
    pub token: String,
    /// Hash of the secret to store.
    pub secret_hash: [u8; 32],
}

/// Mints a new API key.
pub fn mint_key(pepper: &[u8]) -> Result<NewKey, ApiError> {
    let id = ids::random_base32(12)?;
    let secret = ids::random_base32(32)?;
    Ok(NewKey { token: format!("vt_{id}_{secret}"), secret_hash: hash_secret(pepper, &secret), id })
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let missing = || ApiError::new(Code::Unauthorized, "missing bearer token: send Authorization: Bearer <api key>");
    let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

fn invalid() -> ApiError {
    ApiError::new(Code::Unauthorized, "invalid, expired or revoked token")
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Principal, ApiError> {
        let token = bearer(parts)?;
        if token.len() > 256 {
            return Err(invalid());
        }
        if let Some(rest) = token.strip_prefix("vt_") {
            let (key_id, secret) = rest.split_once('_').ok_or_else(invalid)?;
            let Some(key) = state.store.api_key(key_id).await? else {
                return Err(invalid());
            };
            let presented = hash_secret(&state.pepper, secret);
            if !bool::from(presented.ct_eq(&key.secret_hash)) {
                return Err(invalid());
            }
            let now = Timestamp::now();
            if key.revoked_at.is_some() || key.expires_at.is_some_and(|at| at <= now) {
                return Err(invalid());
            }
            let scopes = key.scopes.iter().filter_map(|s| Scope::parse(s)).collect();
            return Ok(Principal::Key(KeyPrincipal { tenant: key.tenant, key_id: key.id, name: key.name, scopes }));
        }
        let presented = hash_secret(&state.pepper, token);
        if bool::from(presented.ct_eq(&state.bootstrap_hash)) {
            return Ok(Principal::Platform);
        }
        Err(invalid())
    }
}
