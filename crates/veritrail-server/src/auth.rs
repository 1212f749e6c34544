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
use crate::error::{ApiError, Code, Denied};
use crate::ids;

pub use veritrail_access::Permission;
use veritrail_access::PermissionSet;

/// The scopes an API key may be created with: the legacy `events:write`, `events:read`,
/// `admin`, or any permission name (`pii:read`, `rules:manage`, ...); see
/// `veritrail_access::scope_permissions` for what each grants.
pub fn valid_scope(scope: &str) -> bool {
    veritrail_access::scope_permissions(scope).is_ok()
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
    /// What the key's scopes grant.
    pub permissions: PermissionSet,
}

impl KeyPrincipal {
    /// True when the key has `permission`.
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.allows(permission)
    }

    /// Fails with 403 unless the key has `permission`; the refusal is recorded in the tenant's
    /// ledger as `permission.denied` before the answer leaves (see `routes::record_denials`).
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.has(permission) {
            return Ok(());
        }
        let mut error =
            ApiError::new(Code::Forbidden, format!("this credential lacks the {} permission", permission.name()));
        error.denied = Some(Box::new(Denied {
            tenant: self.tenant.clone(),
            actor: self.actor_json(),
            permission: permission.name(),
        }));
        Err(error)
    }

    /// Fails with 403 unless the key has at least one of `permissions` (e.g. `events:read` or
    /// `events:read:own`).
    pub fn require_any(&self, permissions: &[Permission]) -> Result<(), ApiError> {
        match permissions.iter().find(|p| self.has(**p)) {
            Some(_) => Ok(()),
            None => self.require(permissions[0]),
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
            if let Err(retry) = state.key_rate_limit.check(&key.id, std::time::Instant::now()) {
                let mut error = ApiError::new(Code::RateLimited, "this api key exceeded its request rate; slow down");
                error.retry_after = Some(retry.retry_after_secs().max(1).try_into().unwrap_or(u32::MAX));
                return Err(error);
            }
            let permissions = veritrail_access::scopes_permissions(key.scopes.iter().map(String::as_str));
            return Ok(Principal::Key(KeyPrincipal {
                tenant: key.tenant,
                key_id: key.id,
                name: key.name,
                permissions,
            }));
        }
        let presented = hash_secret(&state.pepper, token);
        if bool::from(presented.ct_eq(&state.bootstrap_hash)) {
            return Ok(Principal::Platform);
        }
        Err(invalid())
    }
}
