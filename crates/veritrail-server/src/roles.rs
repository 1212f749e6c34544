//! Roles (issue 6): the built-in matrix (`super_admin`, `compliance_officer`, `auditor`,
//! `standard_user`) and a tenant's custom roles, `POST/GET /v1/roles`,
//! `GET/PUT/DELETE /v1/roles/{name}`. Changing a role is a security configuration change,
//! recorded as `config.security.updated` with the permissions; a role never grants what its
//! author lacks.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::{Value, json};
use veritrail_access::{BuiltinRole, CustomRole, Permission, RoleSpec};
use veritrail_store::{RoleRecord, StoreError};

use crate::AppState;
use crate::audit::{self, RequestContext};
use crate::auth::{KeyPrincipal, Principal};
use crate::error::{ApiError, Code};
use crate::routes::{Body, require_json};

fn builtin_json(role: BuiltinRole) -> Value {
    json!({
        "name": role.name(),
        "description": role.description(),
        "permissions": role.permissions().names(),
        "built_in": true,
    })
}

fn custom_json(role: &RoleRecord) -> Value {
    json!({
        "name": role.name,
        "description": role.description,
        "permissions": role.permissions,
        "built_in": false,
        "created_at": role.created_at.to_string(),
        "updated_at": role.updated_at.to_string(),
    })
}

/// Parses a role document (`name` from the path when given there) and checks that it grants
/// nothing the author lacks.
fn parse_role(key: &KeyPrincipal, body: &[u8], name: Option<&str>) -> Result<CustomRole, ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::new(Code::InvalidUtf8, "request body is not valid utf-8"))?;
    let mut document: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::new(Code::MalformedJson, format!("request body is not valid json: {e}")))?;
    if let Some(name) = name {
        let Value::Object(fields) = &mut document else {
            return Err(ApiError::new(Code::WrongType, "request body must be a json object"));
        };
        if fields.get("name").is_some_and(|given| given != name) {
            return Err(ApiError::new(Code::InvalidValue, "field \"name\" must match the role in the path"));
        }
        fields.insert("name".into(), json!(name));
    }
    let role =
        RoleSpec::from_json(&document.to_string()).map_err(|e| ApiError::new(Code::InvalidValue, e.to_string()))?;
    if !key.permissions.contains_all(role.permissions()) {
        let missing: Vec<&str> = role.permissions().iter().filter(|p| !key.has(*p)).map(|p| p.name()).collect();
        return Err(ApiError::new(
            Code::Forbidden,
            format!("a role cannot grant permissions its author lacks: {}", missing.join(", ")),
        ));
    }
    Ok(role)
}

fn record_of(tenant: &str, role: &CustomRole, now: Timestamp) -> RoleRecord {
    RoleRecord {
        tenant: tenant.to_string(),
        name: role.name().to_string(),
        description: role.description().map(str::to_string),
        permissions: role.permissions().names().into_iter().map(str::to_string).collect(),
        created_at: now,
        updated_at: now,
    }
}

async fn record_change(
    state: &AppState,
    key: &KeyPrincipal,
    request: &RequestContext,
    change: &str,
    role: Value,
) -> Result<(), ApiError> {
    let metadata = json!({"setting": "role", "operation": change, "role": role});
    audit::record(state, &key.tenant, "config.security.updated", key.actor_json(), metadata, request).await?;
    Ok(())
}

fn builtin_is_fixed(name: &str) -> Result<(), ApiError> {
    match BuiltinRole::parse(name) {
        Some(_) => Err(ApiError::new(Code::Conflict, format!("{name:?} is a built-in role and cannot be changed"))),
        None => Ok(()),
    }
}

/// `POST /v1/roles` `{"name","description"?,"permissions"}`.
pub(crate) async fn create_role(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::UsersManage)?;
    require_json(&headers)?;
    let role = parse_role(key, &body, None)?;
    let record = record_of(&key.tenant, &role, Timestamp::now());
    state.access.create_role(record.clone()).await.map_err(|error| match error {
        StoreError::AlreadyExists(_) => ApiError::new(Code::Conflict, format!("role {:?} exists already", record.name)),
        other => other.into(),
    })?;
    record_change(&state, key, &request, "created", custom_json(&record)).await?;
    Ok((StatusCode::CREATED, Json(custom_json(&record))).into_response())
}

/// `GET /v1/roles`: the built-in roles, then the tenant's custom roles.
pub(crate) async fn list_roles(State(state): State<AppState>, principal: Principal) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::UsersManage)?;
    let mut roles: Vec<Value> = BuiltinRole::ALL.into_iter().map(builtin_json).collect();
    roles.extend(state.access.roles(&key.tenant).await?.iter().map(custom_json));
    Ok(Json(json!({"roles": roles})))
}

/// `GET /v1/roles/{name}`.
pub(crate) async fn get_role(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::UsersManage)?;
    if let Some(builtin) = BuiltinRole::parse(&name) {
        return Ok(Json(builtin_json(builtin)));
    }
    let role =
        state.access.role(&key.tenant, &name).await?.ok_or_else(|| ApiError::not_found("no role with this name"))?;
    Ok(Json(custom_json(&role)))
}

/// `PUT /v1/roles/{name}` `{"description"?,"permissions"}`: replaces a custom role; users
/// holding it get the new permissions at their next request.
pub(crate) async fn replace_role(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::UsersManage)?;
    require_json(&headers)?;
    builtin_is_fixed(&name)?;
    let role = parse_role(key, &body, Some(&name))?;
    let Some(current) = state.access.role(&key.tenant, &name).await? else {
        return Err(ApiError::not_found("no role with this name"));
    };
    let mut record = record_of(&key.tenant, &role, Timestamp::now());
    record.created_at = current.created_at;
    if !state.access.replace_role(record.clone()).await? {
        return Err(ApiError::not_found("no role with this name"));
    }
    record_change(&state, key, &request, "updated", custom_json(&record)).await?;
    Ok(Json(custom_json(&record)))
}

/// `DELETE /v1/roles/{name}`: 409 while a user holds the role.
pub(crate) async fn delete_role(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::UsersManage)?;
    builtin_is_fixed(&name)?;
    let Some(current) = state.access.role(&key.tenant, &name).await? else {
        return Err(ApiError::not_found("no role with this name"));
    };
    match state.access.delete_role(&key.tenant, &name).await {
        Ok(true) => {}
        Ok(false) => return Err(ApiError::not_found("no role with this name")),
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::new(Code::Conflict, format!("role {name:?} is still assigned to users")));
        }
        Err(other) => return Err(other.into()),
    }
    record_change(&state, key, &request, "deleted", custom_json(&current)).await?;
    Ok(StatusCode::NO_CONTENT)
}
