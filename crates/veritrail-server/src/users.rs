//! Users and sessions (issue 6): `POST/GET /v1/users`, `GET/PATCH/DELETE /v1/users/{id}`
//! (permission `users:manage`), `POST /v1/sessions` (sign in with email and password) and
//! `DELETE /v1/sessions/current` (sign out).
//!
//! Passwords are hashed with argon2id off the async workers and never leave the server: not in
//! answers, logs or the ledger. Failed sign-ins all get one answer, whatever failed, and are
//! throttled per account and per source address (429 `rate_limited` with `Retry-After`).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use veritrail_access::{BuiltinRole, Permission};
use veritrail_store::{SessionRecord, StoreError, UserCursor, UserRecord, UserStatus, UserUpdate, normalize_email};

use crate::AppState;
use crate::audit::{self, RequestContext};
use crate::auth::{self, KeyPrincipal, Principal};
use crate::error::{ApiError, Code};
use crate::ids;
use crate::routes::{Body, JsonObject, require_json};

/// How long a session lasts when the configuration says nothing.
const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Users listed per store page while answering `GET /v1/users`.
const USERS_PAGE: u32 = 500;
/// Most users `GET /v1/users` lists.
const MAX_LISTED_USERS: usize = 10_000;
/// The one answer to every failed sign-in.
const LOGIN_FAILED: &str = "invalid tenant, email or password";

/// An argon2id hash of a random password: verified against when the account is unknown, so
/// that an unknown account costs the same time as a wrong password.
pub(crate) async fn dummy_password_hash() -> Result<std::sync::Arc<str>, ApiError> {
    let password = ids::random_base32(32)?;
    let hash = tokio::task::spawn_blocking(move || veritrail_access::hash_password(&password))
        .await
        .map_err(|e| ApiError::new(Code::Internal, format!("password hashing task failed: {e}")))?
        .map_err(|e| ApiError::new(Code::Internal, format!("cannot hash a password: {}", e.code())))?;
    Ok(hash.into())
}

async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || veritrail_access::hash_password(&password))
        .await
        .map_err(|e| ApiError::new(Code::Internal, format!("password hashing task failed: {e}")))?
        .map_err(|e| {
            tracing::error!(code = e.code(), "cannot hash a password");
            ApiError::new(Code::Internal, "cannot hash the password")
        })
}

fn password_policy(password: &str) -> Result<(), ApiError> {
    veritrail_access::check_password_policy(password)
        .map_err(|e| ApiError::new(Code::InvalidValue, format!("field \"password\": {e}")))
}

/// The user as the API shows it: never the password hash.
fn user_json(user: &UserRecord) -> Value {
    json!({
        "id": user.id,
        "email": user.email,
        "role": user.role,
        "actor_id": user.actor_id,
        "status": user.status.as_str(),
        "created_at": user.created_at.to_string(),
        "updated_at": user.updated_at.to_string(),
    })
}

fn check_email(email: &str) -> Result<(), ApiError> {
    let valid = !email.is_empty()
        && email.len() <= 320
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if valid {
        Ok(())
    } else {
        Err(ApiError::new(Code::InvalidValue, "field \"email\" must be an email address of at most 320 bytes"))
    }
}

fn check_actor_id(actor_id: &str) -> Result<(), ApiError> {
    if actor_id.is_empty() || actor_id.len() > 256 || actor_id.chars().any(char::is_control) {
        return Err(ApiError::new(Code::InvalidValue, "field \"actor_id\" must be 1 to 256 printable bytes"));
    }
    Ok(())
}

/// Checks that `role` exists in the tenant and grants nothing its assigner lacks.
async fn check_role(state: &AppState, key: &KeyPrincipal, role: &str) -> Result<(), ApiError> {
    let exists = BuiltinRole::parse(role).is_some() || state.access.role(&key.tenant, role).await?.is_some();
    if !exists {
        return Err(ApiError::new(
            Code::InvalidValue,
            format!(
                "field \"role\": unknown role {role:?}; built in: {}, or a custom role of the tenant",
                BuiltinRole::ALL.map(BuiltinRole::name).join(", ")
            ),
        ));
    }
    let granted = auth::role_permissions(state, &key.tenant, role).await?;
    if !key.permissions.contains_all(granted) {
        let missing: Vec<&str> = granted.iter().filter(|p| !key.has(*p)).map(|p| p.name()).collect();
        return Err(ApiError::new(
            Code::Forbidden,
            format!("a role cannot be assigned with permissions its assigner lacks: {}", missing.join(", ")),
        ));
    }
    Ok(())
}

fn user_not_found() -> ApiError {
    ApiError::not_found("no user with this id")
}

fn role_conflict(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(_) => ApiError::new(Code::Conflict, "the role does not exist (any more)"),
        other => other.into(),
    }
}

pub(crate) async fn create_user(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::UsersManage)?;
    require_json(&headers)?;
    let fields = JsonObject::parse(&body, &["email", "password", "role", "actor_id"])?;
    let email = normalize_email(fields.string("email")?.trim());
    let password = fields.string("password")?;
    let role = fields.string("role")?;
    let actor_id = fields.optional_string("actor_id")?;
    check_email(&email)?;
    password_policy(&password)?;
    if let Some(actor_id) = &actor_id {
        check_actor_id(actor_id)?;
    }
    check_role(&state, key, &role).await?;
    let password_hash = hash_password(password).await?;
    let now = Timestamp::now();
    let user = UserRecord {
        id: format!("usr_{}", ids::random_base32(20)?),
        tenant: key.tenant.clone(),
        email,
        password_hash: Some(password_hash),
        role: role.clone(),
        actor_id,
        status: UserStatus::Active,
        created_at: now,
        updated_at: now,
    };
    state.access.create_user(user.clone()).await.map_err(|error| match error {
        StoreError::AlreadyExists(_) => ApiError::new(Code::Conflict, "a user with this email exists already"),
        other => role_conflict(other),
    })?;
    // The email is personal data: the ledger names the user by id only.
    let metadata = json!({"user_id": user.id, "role": role});
    audit::record(&state, &key.tenant, "admin.user.created", key.actor_json(), metadata.clone(), &request).await?;
    audit::record(&state, &key.tenant, "permission.role.assigned", key.actor_json(), metadata, &request).await?;
    Ok((StatusCode::CREATED, Json(user_json(&user))).into_response())
}

pub(crate) async fn list_users(State(state): State<AppState>, principal: Principal) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::UsersManage)?;
    let mut users = Vec::new();
    let mut after = None;
    loop {
        let page = state.access.users(&key.tenant, after, USERS_PAGE).await?;
        let full = page.len() == USERS_PAGE as usize;
        after = page.last().map(UserCursor::after);
        users.extend(page.iter().map(user_json));
        if !full || users.len() >= MAX_LISTED_USERS {
            break;
        }
    }
    Ok(Json(json!({"users": users})))
}

async fn find_user(state: &AppState, tenant: &str, id: &str) -> Result<UserRecord, ApiError> {
    if id.is_empty() || id.len() > 128 {
        return Err(user_not_found());
    }
    state.access.user(tenant, id).await?.ok_or_else(user_not_found)
}

pub(crate) async fn get_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::UsersManage)?;
    Ok(Json(user_json(&find_user(&state, &key.tenant, &id).await?)))
}

pub(crate) async fn update_user(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::UsersManage)?;
    require_json(&headers)?;
    let fields = JsonObject::parse(&body, &["role", "actor_id", "status", "password"])?;
    let role = fields.optional_string("role")?;
    let actor_id = match (fields.has("actor_id"), fields.optional_string("actor_id")?) {
        (false, _) => None,
        (true, None) => Some(None),
        (true, Some(text)) => {
            check_actor_id(&text)?;
            Some(Some(text))
        }
    };
    let status = match fields.optional_string("status")? {
        None => None,
        Some(text) => Some(UserStatus::parse(&text).ok_or_else(|| {
            ApiError::new(Code::InvalidValue, "field \"status\" must be \"active\" or \"suspended\"")
        })?),
    };
    let password = fields.optional_string("password")?;
    if let Some(password) = &password {
        password_policy(password)?;
    }
    let before = find_user(&state, &key.tenant, &id).await?;
    if let Some(role) = &role {
        check_role(&state, key, role).await?;
    }
    let password_hash = match password {
        Some(password) => Some(Some(hash_password(password).await?)),
        None => None,
    };
    let changed_password = password_hash.is_some();
    let update = UserUpdate { role: role.clone(), actor_id, status, password_hash };
    let after = state
        .access
        .update_user(&key.tenant, &id, update, Timestamp::now())
        .await
        .map_err(role_conflict)?
        .ok_or_else(user_not_found)?;
    if changed_password {
        // A new password ends the sessions opened with the old one.
        state.access.revoke_user_sessions(&key.tenant, &id, Timestamp::now()).await?;
        let metadata = json!({"user_id": id});
        audit::record(&state, &key.tenant, "auth.password.changed", key.actor_json(), metadata, &request).await?;
    }
    if before.role != after.role {
        let removed = json!({"user_id": id, "role": before.role});
        audit::record(&state, &key.tenant, "permission.role.removed", key.actor_json(), removed, &request).await?;
        let assigned = json!({"user_id": id, "role": after.role});
        audit::record(&state, &key.tenant, "permission.role.assigned", key.actor_json(), assigned, &request).await?;
    }
    if before.status != after.status && after.status == UserStatus::Suspended {
        let metadata = json!({"user_id": id});
        audit::record(&state, &key.tenant, "admin.user.suspended", key.actor_json(), metadata, &request).await?;
    }
    Ok(Json(user_json(&after)))
}

pub(crate) async fn delete_user(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::UsersManage)?;
    if id.is_empty() || id.len() > 128 || !state.access.delete_user(&key.tenant, &id).await? {
        return Err(user_not_found());
    }
    audit::record(&state, &key.tenant, "admin.user.deleted", key.actor_json(), json!({"user_id": id}), &request)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn login_failed() -> ApiError {
    ApiError::new(Code::Unauthorized, LOGIN_FAILED)
}

fn throttled(throttled: veritrail_access::Throttled) -> ApiError {
    let mut error = ApiError::new(Code::RateLimited, "too many failed sign-ins; retry later");
    error.retry_after = Some(throttled.retry_after_secs().max(1).try_into().unwrap_or(u32::MAX));
    error
}

/// Records a failed sign-in in the tenant's ledger, naming the user by id only when known
/// (never the email or the password). A tenant that does not exist has no ledger to record in.
async fn record_login_failed(
    state: &AppState,
    tenant: &str,
    user: Option<&UserRecord>,
    reason: &str,
    request: &RequestContext,
) -> Result<(), ApiError> {
    let (actor, metadata) = match user {
        Some(user) => {
            (json!({"id": format!("user:{}", user.id), "type": "user"}), json!({"user_id": user.id, "reason": reason}))
        }
        None => (json!({"id": "unknown", "type": "anonymous"}), json!({"reason": reason})),
    };
    match audit::record_outcome(state, tenant, "auth.login.failed", actor, metadata, request, "failure").await {
        Ok(_) => Ok(()),
        Err(error) if error.code == Code::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

pub(crate) async fn create_session(
    State(state): State<AppState>,
    request: RequestContext,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let fields = JsonObject::parse(&body, &["tenant", "email", "password"])?;
    let tenant = fields.string("tenant")?;
    let email = normalize_email(fields.string("email")?.trim());
    let password = fields.string("password")?;
    if tenant.is_empty() || tenant.len() > 128 || email.len() > 320 || password.len() > 1024 {
        return Err(login_failed());
    }
    let ip =
        request.ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let account = format!("{tenant}\n{email}");
    let tenant_exists = state.store.tenant(&tenant).await?.is_some();
    let user = if tenant_exists { state.access.user_by_email(&tenant, &email).await? } else { None };
    if let Err(refused) = state.login_throttle.check(&account, ip, Instant::now()) {
        if tenant_exists {
            record_login_failed(&state, &tenant, user.as_ref(), "throttled", &request).await?;
        }
        return Err(throttled(refused));
    }
    // Unknown accounts and SSO-only users are checked against a dummy hash: same time, same answer.
    let phc =
        user.as_ref().and_then(|u| u.password_hash.clone()).unwrap_or_else(|| state.dummy_password_hash.to_string());
    let password_ok = tokio::task::spawn_blocking(move || veritrail_access::verify_password(&password, &phc))
        .await
        .map_err(|e| ApiError::new(Code::Internal, format!("password check task failed: {e}")))?;
    let active = user.as_ref().filter(|u| u.password_hash.is_some() && u.status == UserStatus::Active);
    let Some(user) = active.filter(|_| password_ok) else {
        let reason = match &user {
            None => "unknown_account",
            Some(u) if u.status != UserStatus::Active => "suspended",
            Some(_) => "bad_credentials",
        };
        // The attempt that exhausts a budget still answers 401; the next ones get 429.
        let _ = state.login_throttle.record_failure(&account, ip, Instant::now());
        if tenant_exists {
            record_login_failed(&state, &tenant, user.as_ref(), reason, &request).await?;
        }
        return Err(login_failed());
    };
    state.login_throttle.record_success(&account);
    let minted = veritrail_access::mint_token(veritrail_access::SESSION_PREFIX, &state.pepper).map_err(|e| {
        tracing::error!(code = e.code(), "cannot mint a session token");
        ApiError::new(Code::Internal, "cannot create a session")
    })?;
    let now = Timestamp::now();
    let ttl = state.config.session_ttl.unwrap_or(DEFAULT_SESSION_TTL);
    let ttl = SignedDuration::try_from(ttl).unwrap_or(SignedDuration::from_hours(12));
    let expires_at = now.checked_add(ttl).map_err(|_| ApiError::new(Code::Internal, "session lifetime is too long"))?;
    let session = SessionRecord {
        id: minted.id.clone(),
        tenant: tenant.clone(),
        user_id: user.id.clone(),
        secret_hash: minted.secret_hash,
        created_at: now,
        expires_at,
        last_seen_at: now,
        revoked_at: None,
        ip: request.ip.clone(),
        user_agent: request.user_agent.clone(),
    };
    if !state.access.create_session(session).await? {
        // Suspended or deleted between the check and now.
        record_login_failed(&state, &tenant, Some(user), "suspended", &request).await?;
        return Err(login_failed());
    }
    let actor = json!({"id": format!("user:{}", user.id), "type": "user"});
    let metadata = json!({"user_id": user.id, "session_id": minted.id});
    audit::record(&state, &tenant, "auth.login.success", actor.clone(), metadata, &request).await?;
    let metadata = json!({"user_id": user.id, "session_id": minted.id, "expires_at": expires_at.to_string()});
    audit::record(&state, &tenant, "auth.session.created", actor, metadata, &request).await?;
    Ok((StatusCode::CREATED, Json(json!({"token": minted.token, "expires_at": expires_at.to_string()})))
        .into_response())
}

pub(crate) async fn delete_current_session(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
) -> Result<StatusCode, ApiError> {
    let key = principal.tenant_key()?;
    let Some(user) = &key.user else {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "this credential is not a session; api keys are revoked instead",
        ));
    };
    state.access.revoke_session(&key.tenant, &user.session_id, Timestamp::now()).await?;
    let metadata = json!({"user_id": user.user_id, "session_id": user.session_id});
    audit::record(&state, &key.tenant, "auth.logout", key.actor_json(), metadata, &request).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How often expired sessions are looked for: a quarter of the session lifetime, between 100 ms
/// and one minute.
pub(crate) fn session_sweep_interval(state: &AppState) -> Duration {
    let ttl = state.config.session_ttl.unwrap_or(DEFAULT_SESSION_TTL);
    (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// Sessions that ended longer ago than this are deleted.
const ENDED_SESSION_KEPT: SignedDuration = SignedDuration::from_hours(24);
/// Expired sessions recorded per store call.
const EXPIRY_BATCH: u32 = 200;

/// Records every session that expired unused since the last sweep as `auth.session.expired`
/// in its tenant's ledger (under an event id derived from the session, so nodes sweeping
/// together record it once), marks it ended, and deletes sessions ended a day ago. Returns how
/// many expiries were recorded.
pub(crate) async fn sweep_sessions(state: &AppState) -> Result<u64, ApiError> {
    let now = Timestamp::now();
    let mut recorded = 0;
    loop {
        let batch = state.access.expired_sessions(now, EXPIRY_BATCH).await?;
        for session in &batch {
            let request = RequestContext {
                ip: session.ip.clone(),
                user_agent: session.user_agent.clone(),
                endpoint: "session expiry".into(),
            };
            let actor = json!({"id": format!("user:{}", session.user_id), "type": "user"});
            let metadata = json!({
                "user_id": session.user_id,
                "session_id": session.id,
                "created_at": session.created_at.to_string(),
                "expires_at": session.expires_at.to_string(),
                "last_seen_at": session.last_seen_at.to_string(),
            });
            let id = format!("auth.session.expired:{}", session.id);
            let action = "auth.session.expired";
            match audit::record_with_id(state, &session.tenant, Some(&id), action, actor, metadata, &request, "success")
                .await
            {
                Ok(_) => recorded += 1,
                // The tenant is gone; nothing to record in.
                Err(error) if error.code == Code::NotFound => {}
                Err(error) => return Err(error),
            }
            state.access.revoke_session(&session.tenant, &session.id, session.expires_at).await?;
        }
        if batch.len() < EXPIRY_BATCH as usize {
            break;
        }
    }
    if let Ok(cutoff) = now.checked_sub(ENDED_SESSION_KEPT) {
        state.access.purge_sessions(cutoff).await?;
    }
    Ok(recorded)
}

/// Runs [`sweep_sessions`] every [`session_sweep_interval`] until `stop`.
pub(crate) async fn run_session_sweeper(state: AppState, stop: tokio_util::sync::CancellationToken) {
    let interval = session_sweep_interval(&state);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = sweep_sessions(&state).await {
            tracing::warn!(error = %error.message, "cannot record expired sessions");
        }
    }
}
