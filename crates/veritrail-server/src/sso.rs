//! Single sign-on (issue 6): a tenant's identity providers, `POST/GET /v1/identity-providers`
//! and `GET/PUT/DELETE /v1/identity-providers/{id}` (permission `users:manage`), and the
//! authentication of their JWT bearer tokens.
//!
//! A provider names its issuer, the audience that designates this tenant, the algorithms its
//! tokens may use, its key set (inline, or a `jwks_url` fetched and cached), and which claim
//! values map to which Veritrail roles. A token is routed by its (unverified) `iss` to the
//! providers configured for that issuer; it authenticates when exactly one of them verifies it
//! (signature, algorithm allow-list, `exp`/`nbf`/`iat`, `iss`, `aud`: see
//! `veritrail_access::jwt`). Its permissions are the union of its mapped roles' permissions, and
//! its `actor.id` is the token's subject, which own-records-only reads are restricted to.
//!
//! Self-audit: configuring a provider is `config.sso.configured`; the first use of a token is
//! `auth.login.success` (once per token, under an event id derived from it, so several nodes
//! and restarts record it once); a refused token whose issuer a tenant trusts is
//! `auth.login.failed` in that tenant's ledger with the reason code. Refusals are throttled per
//! source address like password sign-ins (429 with `Retry-After`).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::{Value, json};
use veritrail_access::{BuiltinRole, IdentityProvider, Jwks, JwtError, Permission, PermissionSet, TokenVerifier};
use veritrail_store::{IdentityProviderRecord, StoreError};

use crate::AppState;
use crate::audit::{self, RequestContext};
use crate::auth::{self, KeyPrincipal, Principal, SsoIdentity};
use crate::error::{ApiError, Code};
use crate::ids;
use crate::routes::{Body, require_json};

/// Most identity providers one tenant may configure.
const MAX_PROVIDERS: usize = 20;
/// How long a fetched key set is used before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(15 * 60);
/// Least time between two fetches of one provider's key set that tokens naming an unknown key
/// trigger (a flood of made-up key ids costs the provider one request per gap).
const JWKS_REFETCH_GAP: Duration = Duration::from_secs(30);
/// Largest key set document fetched.
const MAX_JWKS_FETCH_BYTES: usize = veritrail_access::MAX_JWKS_BYTES;
/// How long a key set fetch may take.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Tokens whose first use this node has recorded, before the set is cleared.
const MAX_REMEMBERED_TOKENS: usize = 50_000;

/// Verifiers built from the providers' configurations and key sets, and the tokens whose
/// first use this node has already recorded.
#[derive(Default)]
pub(crate) struct SsoState {
    verifiers: Mutex<HashMap<String, Cached>>,
    recorded: Mutex<HashSet<[u8; 32]>>,
}

#[derive(Clone)]
struct Cached {
    /// The configuration version the verifier was built from.
    updated_at: Timestamp,
    verifier: Arc<TokenVerifier>,
    /// When the key set was fetched (`None` for an inline key set).
    fetched: Option<Instant>,
    /// When a token naming an unknown key last made it fetch the key set again.
    refetched: Option<Instant>,
}

impl SsoState {
    fn cached(&self, record: &IdentityProviderRecord) -> Option<Cached> {
        let verifiers = self.verifiers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        verifiers.get(&record.id).filter(|c| c.updated_at == record.updated_at).cloned()
    }

    fn store(&self, record: &IdentityProviderRecord, cached: Cached) {
        let mut verifiers = self.verifiers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if verifiers.len() > 10_000 {
            verifiers.clear();
        }
        verifiers.insert(record.id.clone(), Cached { updated_at: record.updated_at, ..cached });
    }

    fn forget(&self, id: &str) {
        self.verifiers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }

    /// True the first time this node sees `token_hash`.
    fn first_use(&self, token_hash: [u8; 32]) -> bool {
        let mut recorded = self.recorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if recorded.len() >= MAX_REMEMBERED_TOKENS {
            recorded.clear();
        }
        recorded.insert(token_hash)
    }
}

/// True when a bearer token has the shape of a compact JWS (`eyJ…` with three segments):
/// routed to [`authenticate`] rather than to the API-key or session lookups.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

fn invalid() -> ApiError {
    ApiError::new(Code::Unauthorized, "invalid, expired or revoked token")
}

fn provider_error(error: &veritrail_access::ProviderError) -> ApiError {
    ApiError::new(Code::InvalidValue, error.to_string())
}

/// Fetches and parses a provider's key set.
async fn fetch_jwks(state: &AppState, url: &str) -> Result<Jwks, String> {
    let (status, body) = state
        .outbound
        .get(url, MAX_JWKS_FETCH_BYTES, JWKS_FETCH_TIMEOUT)
        .await
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url} answered HTTP {status}"));
    }
    let text = std::str::from_utf8(&body).map_err(|_| format!("{url} answered a key set that is not UTF-8"))?;
    Jwks::from_json(text).map_err(|e| format!("{url}: {e}"))
}

/// The verifier of a stored provider: cached, or built now (fetching the key set of a
/// `jwks_url` provider when it is older than [`JWKS_TTL`], or when `refresh` asks — a token
/// named an unknown key — and no such refresh happened within [`JWKS_REFETCH_GAP`]).
async fn verifier(
    state: &AppState,
    record: &IdentityProviderRecord,
    refresh: bool,
) -> Result<Arc<TokenVerifier>, String> {
    let cached = state.sso.cached(record);
    if let Some(cached) = &cached {
        let fresh = match (cached.fetched, cached.refetched) {
            (None, _) => true,
            (Some(_), Some(at)) if refresh => at.elapsed() < JWKS_REFETCH_GAP,
            (Some(_), None) if refresh => false,
            (Some(at), _) => at.elapsed() < JWKS_TTL,
        };
        if fresh {
            return Ok(cached.verifier.clone());
        }
    }
    let config: IdentityProvider =
        serde_json::from_value(record.config.clone()).map_err(|e| format!("stored configuration unreadable: {e}"))?;
    let now = Instant::now();
    let refetched = if refresh { Some(now) } else { cached.as_ref().and_then(|c| c.refetched) };
    let (verifier, fetched) = match &config.jwks_url {
        None => (config.verifier().map_err(|e| e.to_string())?, None),
        Some(url) => match fetch_jwks(state, url).await {
            Ok(jwks) => (TokenVerifier::with_jwks(&config, jwks).map_err(|e| e.to_string())?, Some(now)),
            // A provider briefly unreachable keeps its last key set (until the next try).
            Err(error) => match cached {
                Some(cached) => {
                    tracing::warn!(provider = %record.id, %error, "cannot refresh an identity provider's key set");
                    let verifier = cached.verifier.clone();
                    state.sso.store(record, Cached { fetched: Some(now), refetched, ..cached });
                    return Ok(verifier);
                }
                None => return Err(error),
            },
        },
    };
    let verifier = Arc::new(verifier);
    let entry = Cached { updated_at: record.updated_at, verifier: verifier.clone(), fetched, refetched };
    state.sso.store(record, entry);
    Ok(verifier)
}

/// Verifies `token` against one provider; an unknown key id refreshes a fetched key set once.
async fn verify_with(
    state: &AppState,
    record: &IdentityProviderRecord,
    token: &str,
    now: Timestamp,
) -> Result<veritrail_access::VerifiedToken, &'static str> {
    let current = verifier(state, record, false).await.map_err(|error| {
        tracing::warn!(provider = %record.id, %error, "identity provider unusable");
        "idp_unavailable"
    })?;
    match current.verify(token, now) {
        Err(JwtError::UnknownKey { .. }) if record.config.get("jwks_url").is_some() => {
            let refreshed = verifier(state, record, true).await.map_err(|_| "idp_unavailable")?;
            refreshed.verify(token, now).map_err(|e| e.code())
        }
        other => other.map_err(|e| e.code()),
    }
}

/// What the mapped roles grant together in `tenant`.
async fn roles_permissions(state: &AppState, tenant: &str, roles: &[String]) -> Result<PermissionSet, ApiError> {
    let mut granted = PermissionSet::EMPTY;
    for role in roles {
        granted = granted.union(auth::role_permissions(state, tenant, role).await?);
    }
    Ok(granted)
}

/// Authenticates a JWT bearer token (see the module documentation).
pub(crate) async fn authenticate(
    state: &AppState,
    token: &str,
    request: &RequestContext,
) -> Result<Principal, ApiError> {
    let Some(issuer) = veritrail_access::unverified_issuer(token) else {
        return Err(invalid());
    };
    let providers = state.access.identity_providers_for_issuer(&issuer).await?;
    if providers.is_empty() {
        return Err(invalid());
    }
    let ip =
        request.ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    // Per source address only: a flood of forged tokens must not lock a provider's users out.
    let account = format!("sso\n{ip}");
    if let Err(refused) = state.login_throttle.check(&account, ip, Instant::now()) {
        let mut error = ApiError::new(Code::RateLimited, "too many refused tokens from this address; retry later");
        error.retry_after = Some(refused.retry_after_secs().max(1).try_into().unwrap_or(u32::MAX));
        return Err(error);
    }
    let now = Timestamp::now();
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for record in &providers {
        match verify_with(state, record, token, now).await {
            Ok(verified) => accepted.push((record, verified)),
            Err(reason) => refused.push((record, reason)),
        }
    }
    let (record, verified) = match accepted.len() {
        1 => accepted.remove(0),
        count => {
            let _ = state.login_throttle.record_failure(&account, ip, Instant::now());
            let failures: Vec<(&IdentityProviderRecord, &str)> = if count == 0 {
                refused
            } else {
                accepted.iter().map(|(record, _)| (*record, "token_ambiguous")).collect()
            };
            for (record, reason) in failures {
                let metadata = json!({"method": "sso", "provider_id": record.id, "issuer": issuer, "reason": reason});
                let actor = json!({"id": "unknown", "type": "anonymous"});
                let recorded = audit::record_outcome(
                    state,
                    &record.tenant,
                    "auth.login.failed",
                    actor,
                    metadata,
                    request,
                    "failure",
                )
                .await;
                if let Err(error) = recorded
                    && error.code != Code::NotFound
                {
                    return Err(error);
                }
            }
            return Err(invalid());
        }
    };
    let tenant = record.tenant.clone();
    let identity = SsoIdentity {
        provider_id: record.id.clone(),
        subject: verified.subject.clone(),
        email: verified.email.clone(),
    };
    if let Err(retry) =
        state.key_rate_limit.check(&format!("sso:{tenant}:{}", verified.subject), std::time::Instant::now())
    {
        let mut error = ApiError::new(Code::RateLimited, "this identity exceeded its request rate; slow down");
        error.retry_after = Some(retry.retry_after_secs().max(1).try_into().unwrap_or(u32::MAX));
        return Err(error);
    }
    let permissions = roles_permissions(state, &tenant, &verified.roles).await?;
    let principal = KeyPrincipal {
        tenant: tenant.clone(),
        key_id: format!("sso:{}", record.id),
        name: verified.subject.clone(),
        permissions,
        actor_id: Some(verified.subject.clone()),
        user: None,
        sso: Some(identity),
    };
    let token_hash = auth::hash_secret(&state.pepper, token);
    if state.sso.first_use(token_hash) {
        let id = format!("auth.sso:{}", ids::base32(&token_hash, 26));
        let metadata = json!({
            "method": "sso",
            "provider_id": record.id,
            "issuer": issuer,
            "roles": verified.roles,
            "token_expires_at": verified.expires_at.to_string(),
        });
        let actor = principal.actor_json();
        audit::record_with_id(state, &tenant, Some(&id), "auth.login.success", actor, metadata, request, "success")
            .await?;
    }
    Ok(Principal::Key(principal))
}

/// The provider as the API shows it: its configuration with its id and times.
fn provider_json(record: &IdentityProviderRecord) -> Value {
    let mut view = json!({"id": record.id});
    if let (Value::Object(view), Value::Object(config)) = (&mut view, &record.config) {
        for (name, value) in config {
            view.insert(name.clone(), value.clone());
        }
    }
    view["created_at"] = json!(record.created_at.to_string());
    view["updated_at"] = json!(record.updated_at.to_string());
    view
}

/// Parses and checks a provider document: a usable configuration whose key set loads, whose
/// mapped roles exist in the tenant and grant nothing the author lacks.
async fn parse_provider(state: &AppState, key: &KeyPrincipal, body: &[u8]) -> Result<IdentityProvider, ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::new(Code::InvalidUtf8, "request body is not valid utf-8"))?;
    let provider = IdentityProvider::from_json(text).map_err(|e| provider_error(&e))?;
    provider.check_key_source().map_err(|e| provider_error(&e))?;
    match &provider.jwks_url {
        None => {
            provider.verifier().map_err(|e| provider_error(&e))?;
        }
        Some(url) => {
            let jwks = fetch_jwks(state, url).await.map_err(|error| {
                ApiError::new(Code::InvalidValue, format!("jwks_url: cannot load the key set: {error}"))
            })?;
            TokenVerifier::with_jwks(&provider, jwks).map_err(|e| provider_error(&e))?;
        }
    }
    for (value, role) in &provider.role_mapping {
        let exists = BuiltinRole::parse(role).is_some() || state.access.role(&key.tenant, role).await?.is_some();
        if !exists {
            return Err(ApiError::new(
                Code::InvalidValue,
                format!("role_mapping.{value}: no role {role:?} in this tenant (built in or custom)"),
            ));
        }
    }
    let roles: Vec<String> = provider.role_mapping.values().cloned().collect();
    let granted = roles_permissions(state, &key.tenant, &roles).await?;
    if !key.permissions.contains_all(granted) {
        let missing: Vec<&str> = granted.iter().filter(|p| !key.has(*p)).map(|p| p.name()).collect();
        return Err(ApiError::new(
            Code::Forbidden,
            format!("a provider cannot map to roles with permissions its author lacks: {}", missing.join(", ")),
        ));
    }
    Ok(provider)
}

fn config_value(provider: &IdentityProvider) -> Result<Value, ApiError> {
    serde_json::to_value(provider).map_err(|e| ApiError::new(Code::Internal, format!("provider configuration: {e}")))
}

async fn record_change(
    state: &AppState,
    key: &KeyPrincipal,
    request: &RequestContext,
    operation: &str,
    record: &IdentityProviderRecord,
) -> Result<(), ApiError> {
    let metadata = json!({
        "provider_id": record.id,
        "operation": operation,
        "issuer": record.issuer(),
        "audience": record.config.get("audience"),
        "role_mapping": record.config.get("role_mapping"),
        "jwks_url": record.config.get("jwks_url"),
    });
    audit::record(state, &key.tenant, "config.sso.configured", key.actor_json(), metadata, request).await?;
    Ok(())
}

fn not_found() -> ApiError {
    ApiError::not_found("no identity provider with this id")
}

/// Refuses a second provider for the same issuer in one tenant (a token must route to one).
async fn check_issuer_free(state: &AppState, tenant: &str, issuer: &str, except: Option<&str>) -> Result<(), ApiError> {
    let taken = state
        .access
        .identity_providers(tenant)
        .await?
        .iter()
        .any(|other| other.issuer() == Some(issuer) && Some(other.id.as_str()) != except);
    if taken {
        return Err(ApiError::new(
            Code::Conflict,
            format!("the tenant has an identity provider for issuer {issuer:?}"),
        ));
    }
    Ok(())
}

/// `POST /v1/identity-providers`: a new provider; 201 with it.
pub(crate) async fn create_provider(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::UsersManage)?;
    require_json(&headers)?;
    let provider = parse_provider(&state, key, &body).await?;
    if state.access.identity_providers(&key.tenant).await?.len() >= MAX_PROVIDERS {
        return Err(ApiError::new(Code::Conflict, format!("a tenant has at most {MAX_PROVIDERS} identity providers")));
    }
    check_issuer_free(&state, &key.tenant, &provider.issuer, None).await?;
    let now = Timestamp::now();
    let record = IdentityProviderRecord {
        id: format!("idp_{}", ids::random_base32(20)?),
        tenant: key.tenant.clone(),
        config: config_value(&provider)?,
        created_at: now,
        updated_at: now,
    };
    state.access.create_identity_provider(record.clone()).await?;
    record_change(&state, key, &request, "created", &record).await?;
    Ok((StatusCode::CREATED, Json(provider_json(&record))).into_response())
}

/// `GET /v1/identity-providers`.
pub(crate) async fn list_providers(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::UsersManage)?;
    let providers: Vec<Value> = state.access.identity_providers(&key.tenant).await?.iter().map(provider_json).collect();
    Ok(Json(json!({"identity_providers": providers})))
}

/// `GET /v1/identity-providers/{id}`.
pub(crate) async fn get_provider(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::UsersManage)?;
    let record = state.access.identity_provider(&key.tenant, &id).await?.ok_or_else(not_found)?;
    Ok(Json(provider_json(&record)))
}

/// `PUT /v1/identity-providers/{id}`: replaces the configuration; tokens are verified with the
/// new one from the next request on.
pub(crate) async fn replace_provider(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::UsersManage)?;
    require_json(&headers)?;
    let current = state.access.identity_provider(&key.tenant, &id).await?.ok_or_else(not_found)?;
    let provider = parse_provider(&state, key, &body).await?;
    check_issuer_free(&state, &key.tenant, &provider.issuer, Some(&id)).await?;
    let now = Timestamp::now();
    // A strictly later version, so that every node's cached verifier is seen as stale.
    let updated_at =
        if now > current.updated_at { now } else { current.updated_at + jiff::SignedDuration::from_micros(1) };
    let record = IdentityProviderRecord { config: config_value(&provider)?, updated_at, ..current };
    if !state.access.replace_identity_provider(record.clone()).await? {
        return Err(not_found());
    }
    state.sso.forget(&id);
    record_change(&state, key, &request, "updated", &record).await?;
    Ok(Json(provider_json(&record)))
}

/// `DELETE /v1/identity-providers/{id}`: its tokens stop working at once.
pub(crate) async fn delete_provider(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::UsersManage)?;
    let current = state.access.identity_provider(&key.tenant, &id).await?.ok_or_else(not_found)?;
    match state.access.delete_identity_provider(&key.tenant, &id).await {
        Ok(true) => {}
        Ok(false) => return Err(not_found()),
        Err(StoreError::Conflict(why)) => return Err(ApiError::new(Code::Conflict, why)),
        Err(other) => return Err(other.into()),
    }
    state.sso.forget(&id);
    record_change(&state, key, &request, "deleted", &current).await?;
    Ok(StatusCode::NO_CONTENT)
}
