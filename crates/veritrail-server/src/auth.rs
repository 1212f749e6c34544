//! Credentials: tenant API keys (`vt_<key id>_<secret>`), user sessions (`vts_<session
//! id>_<secret>`, from `POST /v1/sessions`) and the platform bootstrap token.
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
use veritrail_access::{PermissionSet, ReadScope};
use veritrail_store::UserStatus;

/// The scopes an API key may be created with: the legacy `events:write`, `events:read`,
/// `admin`, or any permission name (`pii:read`, `rules:manage`, ...); see
/// `veritrail_access::scope_permissions` for what each grants.
pub fn valid_scope(scope: &str) -> bool {
    veritrail_access::scope_permissions(scope).is_ok()
}

/// The tenant id of the platform ledger: server-wide activity (tenants created, platform keys
/// rotated, the operator's own reads) is recorded there (SPEC §6), readable and verifiable
/// with the bootstrap token through the ordinary read endpoints.
pub const PLATFORM_TENANT: &str = "platform";

/// What the bootstrap token may do inside the platform ledger: read, export and verify it.
const PLATFORM_LEDGER_PERMISSIONS: PermissionSet =
    PermissionSet::of(&[Permission::EventsRead, Permission::EventsExport, Permission::LedgerRead, Permission::PiiRead]);

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The platform operator (bootstrap token): may create tenants and rotate platform keys,
    /// sees no tenant's data; inside the API it acts on the platform ledger only, read-only.
    Platform(KeyPrincipal),
    /// A tenant API key, a user's session, or an identity provider's token.
    Key(KeyPrincipal),
}

/// The user behind an identity provider's token.
#[derive(Debug, Clone)]
pub struct SsoIdentity {
    /// The tenant's provider that verified the token (`idp_…`).
    pub provider_id: String,
    /// The token's subject: the user's `actor.id`.
    pub subject: String,
    /// The user's email, when the provider's email claim gave one.
    pub email: Option<String>,
}

/// The signed-in user behind a session credential.
#[derive(Debug, Clone)]
pub struct SessionUser {
    /// The user's id (`usr_…`).
    pub user_id: String,
    /// The session's public id.
    pub session_id: String,
}

/// An authenticated tenant credential: an API key or a user's session.
#[derive(Debug, Clone)]
pub struct KeyPrincipal {
    /// The tenant the key belongs to.
    pub tenant: String,
    /// Public key id.
    pub key_id: String,
    /// Key label.
    pub name: String,
    /// What the key's scopes (or the user's role) grant.
    pub permissions: PermissionSet,
    /// The `actor.id` this credential's own events carry (users only): what own-records-only
    /// reads are restricted to.
    pub actor_id: Option<String>,
    /// The user and session, when the credential is a session.
    pub user: Option<SessionUser>,
    /// The user, when the credential is an identity provider's token.
    pub sso: Option<SsoIdentity>,
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
        let message = if self.tenant == PLATFORM_TENANT && self.key_id == PLATFORM_TENANT {
            format!("the platform bootstrap token only reads the platform ledger (no {} permission)", permission.name())
        } else {
            format!("this credential lacks the {} permission", permission.name())
        };
        let mut error = ApiError::new(Code::Forbidden, message);
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

    /// The actor recorded in self-audit events for this key (or user).
    pub fn actor_json(&self) -> serde_json::Value {
        if self.tenant == PLATFORM_TENANT && self.key_id == PLATFORM_TENANT {
            return crate::audit::platform_actor();
        }
        match (&self.user, &self.sso) {
            (Some(user), _) => serde_json::json!({"id": format!("user:{}", user.user_id), "type": "user"}),
            (None, Some(sso)) => {
                let mut actor = serde_json::json!({"id": sso.subject, "type": "user"});
                if let Some(email) = &sso.email {
                    actor["email"] = serde_json::json!(email);
                }
                actor
            }
            (None, None) => {
                serde_json::json!({"id": format!("api_key:{}", self.key_id), "type": "api_key", "name": self.name})
            }
        }
    }

    /// Who acted, as `api_key:<id>`, `user:<id>` or `sso:<provider id>:<subject>` (alert
    /// status changes).
    pub fn actor_ref(&self) -> String {
        match (&self.user, &self.sso) {
            (Some(user), _) => format!("user:{}", user.user_id),
            (None, Some(sso)) => format!("sso:{}:{}", sso.provider_id, sso.subject),
            (None, None) => format!("api_key:{}", self.key_id),
        }
    }

    /// Which events this credential may read: `Ok(None)` all of the tenant's (`permission`,
    /// e.g. `events:read`), `Ok(Some(actor))` only those whose `actor.id` is `actor`
    /// (own-records-only, `events:read:own`); 403 otherwise, and for an own-only credential
    /// that is linked to no actor id.
    pub fn read_filter(&self, permission: Permission) -> Result<Option<String>, ApiError> {
        let full = self.has(permission) && veritrail_access::read_scope(&self.permissions) != ReadScope::OwnOnly;
        if full {
            return Ok(None);
        }
        if veritrail_access::read_scope(&self.permissions) == ReadScope::OwnOnly {
            return match &self.actor_id {
                Some(actor) => Ok(Some(actor.clone())),
                None => Err(ApiError::new(
                    Code::Forbidden,
                    "this credential may read only its own events but is linked to no actor_id",
                )),
            };
        }
        self.require(permission).map(|()| None)
    }
}

impl Principal {
    /// The credential inside its tenant: for the platform token, a read-only credential on the
    /// platform ledger (so any tenant endpoint answers it 403, recorded there).
    pub fn tenant_key(&self) -> Result<&KeyPrincipal, ApiError> {
        match self {
            Principal::Key(key) | Principal::Platform(key) => Ok(key),
        }
    }

    /// True for the platform bootstrap token.
    pub fn is_platform(&self) -> bool {
        matches!(self, Principal::Platform(_))
    }

    /// Fails with 403 `what` unless this is the platform bootstrap token; a tenant credential's
    /// attempt is recorded in its tenant's ledger as `permission.denied` (permission
    /// `platform`), like any other refusal.
    pub fn require_platform(&self, what: &str) -> Result<(), ApiError> {
        match self {
            Principal::Platform(_) => Ok(()),
            Principal::Key(key) => {
                let mut error = ApiError::new(Code::Forbidden, format!("{what} needs the platform bootstrap token"));
                error.denied = Some(Box::new(Denied {
                    tenant: key.tenant.clone(),
                    actor: key.actor_json(),
                    permission: "platform",
                }));
                Err(error)
            }
        }
    }

    fn platform() -> Principal {
        Principal::Platform(KeyPrincipal {
            tenant: PLATFORM_TENANT.into(),
            key_id: PLATFORM_TENANT.into(),
            name: "platform operator".into(),
            permissions: PLATFORM_LEDGER_PERMISSIONS,
            actor_id: None,
            user: None,
            sso: None,
        })
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
        let token = bearer(parts)?.to_string();
        let token = token.as_str();
        if token.len() > veritrail_access::MAX_TOKEN_BYTES {
            return Err(invalid());
        }
        if token.starts_with(veritrail_access::SESSION_PREFIX) {
            return session_principal(state, token).await;
        }
        if crate::sso::looks_like_jwt(token) {
            let request = crate::audit::RequestContext::from_request_parts(parts, state).await?;
            return crate::sso::authenticate(state, token, &request).await;
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
                actor_id: None,
                user: None,
                sso: None,
            }));
        }
        let presented = hash_secret(&state.pepper, token);
        if bool::from(presented.ct_eq(&state.bootstrap_hash)) {
            return Ok(Principal::platform());
        }
        Err(invalid())
    }
}

/// What a role grants in `tenant`: a built-in role's permissions, or a custom role's; nothing
/// for a role that no longer exists.
pub(crate) async fn role_permissions(state: &AppState, tenant: &str, role: &str) -> Result<PermissionSet, ApiError> {
    if let Some(builtin) = veritrail_access::BuiltinRole::parse(role) {
        return Ok(builtin.permissions());
    }
    let Some(custom) = state.access.role(tenant, role).await? else {
        return Ok(PermissionSet::EMPTY);
    };
    Ok(custom
        .permissions
        .iter()
        .filter_map(|name| Permission::parse(name))
        .fold(PermissionSet::EMPTY, PermissionSet::with))
}

/// Authenticates a session token: a known session, the secret's keyed hash matching (constant
/// time), not revoked or expired, its user active.
async fn session_principal(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let parts = veritrail_access::split_token(veritrail_access::SESSION_PREFIX, token).map_err(|_| invalid())?;
    let Some(session) = state.access.session(parts.id).await? else {
        return Err(invalid());
    };
    if !veritrail_access::secret_matches(&state.pepper, parts.secret, &session.secret_hash) {
        return Err(invalid());
    }
    let now = Timestamp::now();
    if session.revoked_at.is_some() || session.expires_at <= now {
        return Err(invalid());
    }
    let Some(user) = state.access.user(&session.tenant, &session.user_id).await? else {
        return Err(invalid());
    };
    if user.status != UserStatus::Active {
        return Err(invalid());
    }
    if let Err(retry) = state.key_rate_limit.check(&format!("session:{}", session.id), std::time::Instant::now()) {
        let mut error = ApiError::new(Code::RateLimited, "this session exceeded its request rate; slow down");
        error.retry_after = Some(retry.retry_after_secs().max(1).try_into().unwrap_or(u32::MAX));
        return Err(error);
    }
    let permissions = role_permissions(state, &session.tenant, &user.role).await?;
    // Not necessarily durable; a lost touch costs only an older last_seen_at.
    if let Err(error) = state.access.touch_session(&session.tenant, &session.id, now).await {
        tracing::debug!(%error, "cannot record session use");
    }
    Ok(Principal::Key(KeyPrincipal {
        tenant: session.tenant,
        key_id: session.id.clone(),
        name: user.id.clone(),
        permissions,
        actor_id: user.actor_id,
        user: Some(SessionUser { user_id: user.id, session_id: session.id }),
        sso: None,
    }))
}
