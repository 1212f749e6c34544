//! Routes and handlers of the HTTP API v1 (SPEC §4).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use jiff::Timestamp;
use serde_json::{Value, json};
use veritrail_model::BodyFormat;
use veritrail_query::parse_params;
use veritrail_store::{ApiKeyRecord, StoredEvent, Tenant};

use crate::AppState;
use crate::audit::{self, RequestContext};
use crate::auth::{self, Permission, Principal};
use crate::error::{ApiError, Code};
use crate::{alerting, export, ids, ledger, ledger_routes, metrics, roles, routes_alerts, sso, subjects, users};

/// Appends waiting for the writer beyond which ingest answers 503 instead of queueing.
const MAX_QUEUE_DEPTH: u64 = 3000;

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/tenants", post(create_tenant))
        .route("/v1/events", post(ingest).get(query_events))
        .route("/v1/events/{id}", get(get_event))
        .route("/v1/export", get(export::export))
        .route("/v1/api-keys", post(create_api_key).get(list_api_keys))
        .route("/v1/api-keys/{id}", delete(revoke_api_key))
        .route("/v1/users", post(users::create_user).get(users::list_users))
        .route("/v1/users/{id}", get(users::get_user).patch(users::update_user).delete(users::delete_user))
        .route("/v1/sessions", post(users::create_session))
        .route("/v1/sessions/current", delete(users::delete_current_session))
        .route("/v1/ledger/checkpoint", get(ledger_routes::get_checkpoint).post(ledger_routes::post_checkpoint))
        .route("/v1/ledger/checkpoint/timestamp", get(ledger_routes::get_checkpoint_timestamp))
        .route("/v1/ledger/key", get(ledger_routes::get_key))
        .route("/v1/ledger/keys", get(ledger_routes::get_keys))
        .route("/v1/ledger/keys/rotate", post(ledger_routes::rotate_key))
        .route("/v1/ledger/records", get(ledger_routes::get_records))
        .route("/v1/ledger/proof/inclusion", get(ledger_routes::get_inclusion))
        .route("/v1/ledger/proof/consistency", get(ledger_routes::get_consistency))
        .route("/v1/ledger/verifications", post(ledger_routes::post_verification))
        .route("/v1/alerts", get(routes_alerts::list_alerts))
        .route("/v1/alerts/{id}", get(routes_alerts::get_alert))
        .route("/v1/alerts/{id}/acknowledge", post(routes_alerts::acknowledge_alert))
        .route("/v1/alerts/{id}/resolve", post(routes_alerts::resolve_alert))
        .route("/v1/rules", get(routes_alerts::list_rules).post(routes_alerts::create_rule))
        .route("/v1/rules/dry-run", post(routes_alerts::dry_run_draft))
        .route(
            "/v1/rules/{id}",
            get(routes_alerts::get_rule).put(routes_alerts::update_rule).delete(routes_alerts::delete_rule),
        )
        .route("/v1/rules/{id}/dry-run", post(routes_alerts::dry_run_rule))
        .route("/v1/webhooks", get(routes_alerts::list_webhooks).post(routes_alerts::create_webhook))
        .route("/v1/webhooks/{id}", get(routes_alerts::get_webhook).delete(routes_alerts::delete_webhook))
        .route("/v1/webhooks/{id}/deliveries", get(routes_alerts::list_deliveries))
        .route("/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", post(routes_alerts::redeliver))
        .route("/v1/subjects/{subject_id}", delete(subjects::erase))
        .route("/v1/subjects/{subject_id}/export", get(subjects::export))
        .route("/v1/subjects/{subject_id}/consents", get(subjects::consents))
        .route("/v1/subjects/{subject_id}/legal-hold", put(subjects::place_hold).delete(subjects::release_hold))
        .route("/v1/privacy/settings", get(subjects::get_settings).put(subjects::put_settings))
        .route("/v1/platform/master-key/rotate", post(subjects::rotate_master_key))
        .route("/v1/roles", post(roles::create_role).get(roles::list_roles))
        .route("/v1/roles/{name}", get(roles::get_role).put(roles::replace_role).delete(roles::delete_role))
        .route("/v1/privacy/classification", get(subjects::get_classification).put(subjects::put_classification))
        .route("/v1/identity-providers", post(sso::create_provider).get(sso::list_providers))
        .route(
            "/v1/identity-providers/{id}",
            get(sso::get_provider).put(sso::replace_provider).delete(sso::delete_provider),
        )
        .route("/v1/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), record_denials))
        .layer(axum::middleware::from_fn_with_state(state.clone(), read_whole_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::new(Code::Internal, "unexpected server error").into_response()
        }))
        .with_state(state)
}

/// Records every refused permission in the tenant's ledger (`permission.denied`, outcome
/// `denied`, PCI DSS 10.2.1.x) before the 403 leaves; when that record cannot be written the
/// caller gets 503 rather than an unrecorded refusal.
async fn record_denials(State(state): State<AppState>, request: Request, next: axum::middleware::Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let context = RequestContext::from_request_parts(&mut parts, &state).await.unwrap_or_default();
    let response = next.run(Request::from_parts(parts, body)).await;
    let Some(denied) = response.extensions().get::<crate::error::Denied>().cloned() else {
        return response;
    };
    let metadata = json!({"permission": denied.permission, "endpoint": context.endpoint});
    let recorded =
        audit::record_outcome(&state, &denied.tenant, "permission.denied", denied.actor, metadata, &context, "denied")
            .await;
    match recorded {
        Ok(_) => response,
        Err(error) => {
            tracing::error!(error = %error.message, "cannot record permission.denied");
            ApiError::new(Code::Unavailable, "the refusal could not be recorded; retry").into_response()
        }
    }
}

/// Reads every request body (up to the limit) before routing, so that an early refusal (bad
/// token, wrong content type) never closes a connection with unread data in it: the kernel would
/// answer that with a reset that can destroy the response before the client reads it.
async fn read_whole_body(State(state): State<AppState>, request: Request, next: axum::middleware::Next) -> Response {
    let (parts, body) = request.into_parts();
    let limit = state.config.limits.max_body_bytes;
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Err(error) => {
            let mut too_large = false;
            let mut cause: Option<&dyn std::error::Error> = Some(&error);
            while let Some(current) = cause {
                too_large |= current.to_string().contains("length limit exceeded");
                cause = current.source();
            }
            if too_large {
                ApiError::new(Code::PayloadTooLarge, format!("request body is larger than {limit} bytes"))
                    .into_response()
            } else {
                ApiError::new(Code::InvalidRequest, format!("cannot read request body: {error}")).into_response()
            }
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(Code::MethodNotAllowed, "method not allowed on this path")
}

/// Caller details for self-audit records.
impl FromRequestParts<AppState> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<RequestContext, ApiError> {
        let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip().to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let path = parts
            .extensions
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| parts.uri.path().into());
        Ok(RequestContext { ip, user_agent, endpoint: format!("{} {path}", parts.method) })
    }
}

/// The request body as bytes, with size-limit failures in our error format.
pub(crate) struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Body, ApiError> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                Code::PayloadTooLarge,
                format!("request body is larger than {} bytes", state.config.limits.max_body_bytes),
            )),
            Err(rejection) => {
                Err(ApiError::new(Code::InvalidRequest, format!("cannot read request body: {rejection}")))
            }
        }
    }
}

/// Decoded query-string pairs, in order.
pub(crate) fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    match raw {
        Some(raw) => form_urlencoded::parse(raw.as_bytes()).into_owned().collect(),
        None => Vec::new(),
    }
}

/// A small JSON request body (admin endpoints), read field by field so that every error names
/// its field and uses the same codes as event validation.
pub(crate) struct JsonObject(serde_json::Map<String, Value>);

impl JsonObject {
    /// Parses `body`, which must be a JSON object with only the `allowed` fields.
    pub(crate) fn parse(body: &[u8], allowed: &[&str]) -> Result<JsonObject, ApiError> {
        if body.len() > 64 * 1024 {
            return Err(ApiError::new(Code::PayloadTooLarge, "request body is larger than 65536 bytes"));
        }
        if std::str::from_utf8(body).is_err() {
            return Err(ApiError::new(Code::InvalidUtf8, "request body is not valid utf-8"));
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::new(Code::MalformedJson, format!("request body is not valid json: {e}")))?;
        let Value::Object(map) = value else {
            return Err(ApiError::new(Code::WrongType, "request body must be a json object"));
        };
        for name in map.keys() {
            if !allowed.contains(&name.as_str()) {
                return Err(ApiError::new(
                    Code::UnknownField,
                    format!("unknown field {name:?}; expected one of {}", allowed.join(", ")),
                ));
            }
        }
        Ok(JsonObject(map))
    }

    /// Whether the field is given at all (null included).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// A field that is present and not null.
    pub(crate) fn present(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|value| !value.is_null())
    }

    /// A required string field.
    pub(crate) fn string(&self, name: &str) -> Result<String, ApiError> {
        self.optional_string(name)?
            .ok_or_else(|| ApiError::new(Code::MissingField, format!("field {name:?} is required")))
    }

    /// An optional string field.
    pub(crate) fn optional_string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(ApiError::new(Code::WrongType, format!("field {name:?} must be a string"))),
        }
    }

    /// A required array of strings.
    pub(crate) fn strings(&self, name: &str) -> Result<Vec<String>, ApiError> {
        let wrong = || ApiError::new(Code::WrongType, format!("field {name:?} must be an array of strings"));
        match self.present(name) {
            None => Err(ApiError::new(Code::MissingField, format!("field {name:?} is required"))),
            Some(Value::Array(items)) => {
                items.iter().map(|item| item.as_str().map(str::to_string).ok_or_else(wrong)).collect()
            }
            Some(_) => Err(wrong()),
        }
    }

    /// A required non-negative integer.
    pub(crate) fn unsigned(&self, name: &str) -> Result<u64, ApiError> {
        match self.present(name) {
            None => Err(ApiError::new(Code::MissingField, format!("field {name:?} is required"))),
            Some(value) => value.as_u64().ok_or_else(|| {
                ApiError::new(Code::WrongType, format!("field {name:?} must be a non-negative integer"))
            }),
        }
    }
}

/// Fails with 415 unless the request declares a JSON body (or none at all).
pub(crate) fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("invalid")) {
        None => Ok(()),
        Some(value) if value.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") => Ok(()),
        Some(other) => Err(ApiError::new(
            Code::UnsupportedMediaType,
            format!("content type {other:?} is not accepted; send application/json"),
        )),
    }
}

/// Query results as API readers see them: each opened record plus its `leaf_hash`.
pub(crate) fn page_json(events: Vec<StoredEvent>, views: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::with_capacity(views.len());
    for (stored, mut view) in events.into_iter().zip(views) {
        view["leaf_hash"] = json!(STANDARD.encode(stored.leaf_hash));
        out.push(view);
    }
    out
}

/// The event as API readers see it: the opened record plus `leaf_hash`.
pub(crate) fn event_json(stored: &StoredEvent) -> Result<Value, ApiError> {
    let mut view = veritrail_model::open(&stored.sealed, stored.personal.as_ref()).map_err(|e| {
        tracing::error!(error = %e, seq = stored.seq, "sealed record unreadable");
        ApiError::new(Code::Internal, "stored event is unreadable")
    })?;
    view["leaf_hash"] = json!(STANDARD.encode(stored.leaf_hash));
    Ok(view)
}

async fn create_tenant(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    principal.require_platform("creating tenants")?;
    require_json(&headers)?;
    let name = JsonObject::parse(&body, &["name"])?.string("name")?.trim().to_string();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::new(Code::InvalidValue, "name must be 1 to 200 printable characters"));
    }
    let tenant =
        Tenant { id: format!("tn_{}", ids::random_base32(20)?), name: name.clone(), created_at: Timestamp::now() };
    state.store.create_tenant(tenant.clone()).await?;
    // Monitoring starts with the tenant's first event, under the default rule pack.
    state.alerts.install_rules(&tenant.id, alerting::default_rules(0, tenant.created_at), 0).await?;
    let platform = audit::platform_actor();
    audit::record(
        &state,
        &tenant.id,
        "audit.log.initialized",
        platform.clone(),
        json!({"tenant_name": name, "verifier_key": state.ledger.keys().current.to_string()}),
        &request,
    )
    .await?;
    let scopes = vec!["admin".to_string()];
    let key = store_new_key(&state, &tenant.id, "admin", scopes.clone(), None).await?;
    let metadata = json!({"token_type": "api_key", "key_id": key.id, "name": "admin", "scopes": scopes});
    audit::record(&state, &tenant.id, "auth.token.created", platform, metadata, &request).await?;
    let metadata = json!({"tenant": tenant.id, "tenant_name": name});
    let actor = audit::platform_actor();
    audit::record(&state, auth::PLATFORM_TENANT, "admin.tenant.created", actor, metadata, &request).await?;
    Ok((StatusCode::CREATED, Json(json!({"tenant": tenant.id, "name": name, "api_key": key.token}))).into_response())
}

async fn store_new_key(
    state: &AppState,
    tenant: &str,
    name: &str,
    scopes: Vec<String>,
    expires_at: Option<Timestamp>,
) -> Result<auth::NewKey, ApiError> {
    let key = auth::mint_key(&state.pepper)?;
    let record = ApiKeyRecord {
        id: key.id.clone(),
        tenant: tenant.to_string(),
        name: name.to_string(),
        secret_hash: key.secret_hash,
        scopes,
        created_at: Timestamp::now(),
        expires_at,
        revoked_at: None,
    };
    state.store.create_api_key(record).await?;
    Ok(key)
}

fn body_format(parts_content_type: Option<&str>) -> Result<BodyFormat, ApiError> {
    let Some(content_type) = parts_content_type else {
        return Ok(BodyFormat::Json);
    };
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" | "" => Ok(BodyFormat::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(BodyFormat::Ndjson),
        other => Err(ApiError::new(
            Code::UnsupportedMediaType,
            format!("content type {other:?} is not accepted; send application/json or application/x-ndjson"),
        )),
    }
}

async fn ingest(State(state): State<AppState>, principal: Principal, request: Request) -> Result<Response, ApiError> {
    let key = principal.tenant_key()?;
    let content_type = request.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("invalid").to_string());
    let format = body_format(content_type.as_deref())?;
    let mut receipt = false;
    for (name, value) in query_pairs(request.uri().query()) {
        match (name.as_str(), value.as_str()) {
            ("receipt", "true") if !receipt => receipt = true,
            ("receipt", "false") => {}
            _ => {
                return Err(ApiError::new(Code::InvalidQuery, "POST /v1/events takes only receipt=true|false"));
            }
        }
    }
    // An authenticated caller's body is read before refusing it, so the answer is not lost to a
    // connection closed under a client still sending.
    let Body(body) = Body::from_request(request, &state).await?;
    key.require(Permission::EventsWrite)?;
    if state.store.stats().queue_depth >= MAX_QUEUE_DEPTH {
        let mut error = ApiError::new(Code::Overloaded, "ingest queue is full; retry shortly");
        error.retry_after = Some(1);
        return Err(error);
    }
    // Parsing, validating and sealing-preparation of a large batch takes milliseconds of CPU:
    // off the async workers.
    let limits = state.config.limits.clone();
    let classified = crate::privacy::classified_paths(&state, &key.tenant).await?;
    let prepared = tokio::task::spawn_blocking(move || parse_and_prepare(&body, format, &limits, &classified))
        .await
        .map_err(|e| ApiError::new(Code::Internal, format!("ingest task failed: {e}")))??;
    let appended = state.store.append(&key.tenant, prepared).await?;
    if receipt {
        return receipts(&state, &key.tenant, &appended).await;
    }
    // Serialized straight from the appended list: a `Value` per event cost a map per event.
    let events = appended.iter().map(|a| Acknowledged { id: &a.id, seq: a.seq }).collect();
    Ok((StatusCode::CREATED, Json(IngestAnswer { events })).into_response())
}

/// The answer to `POST /v1/events`: `{"events":[{"id","seq"}, ...]}` in request order.
#[derive(serde::Serialize)]
struct IngestAnswer<'a> {
    events: Vec<Acknowledged<'a>>,
}

#[derive(serde::Serialize)]
struct Acknowledged<'a> {
    id: &'a str,
    seq: u64,
}

/// Validates an ingest body and prepares every event for sealing; all or nothing.
fn parse_and_prepare(
    body: &[u8],
    format: BodyFormat,
    limits: &veritrail_model::Limits,
    classified: &[String],
) -> Result<Vec<veritrail_model::PreparedEvent>, ApiError> {
    let events = veritrail_model::parse_batch(body, format, limits)?;
    let mut prepared = Vec::with_capacity(events.len());
    let mut random = ids::RandomStream::new()?;
    for (index, event) in events.into_iter().enumerate() {
        if veritrail_model::taxonomy::is_reserved(event.action()) {
            // The audit.* namespace is the server's own record of itself; clients cannot forge it.
            return Err(ApiError::new(
                Code::InvalidValue,
                format!(
                    "event {index}: field \"action\": {:?} is reserved for events veritrail records itself",
                    event.action()
                ),
            ));
        }
        prepared.push(audit::prepare_classified(event, &mut random, classified)?);
    }
    Ok(prepared)
}

/// Most events one receipt request may cover (each needs its own inclusion proof).
const MAX_RECEIPT_EVENTS: usize = 1000;

/// The answer to `POST /v1/events?receipt=true`: each event's leaf hash and inclusion proof in
/// a checkpoint that covers all of them, and that checkpoint.
async fn receipts(
    state: &AppState,
    tenant: &str,
    appended: &[veritrail_store::Appended],
) -> Result<Response, ApiError> {
    if appended.len() > MAX_RECEIPT_EVENTS {
        return Err(ApiError::new(
            Code::TooMany,
            format!("events were stored, but receipts cover at most {MAX_RECEIPT_EVENTS} events per request"),
        ));
    }
    let checkpoint = ledger::issue_checkpoint(state, tenant).await?;
    let leaves = state.store.subtree_hashes(tenant, appended.iter().map(|a| (0, a.seq)).collect()).await?;
    let mut events = Vec::with_capacity(appended.len());
    for (appended, leaf) in appended.iter().zip(leaves) {
        let proof = ledger::inclusion_proof(state, tenant, appended.seq, checkpoint.size).await?;
        events.push(json!({
            "id": appended.id,
            "seq": appended.seq,
            "leaf_hash": STANDARD.encode(leaf),
            "tree_size": checkpoint.size,
            "inclusion_proof": ledger::encode_hashes(&proof),
        }));
    }
    Ok((StatusCode::CREATED, Json(json!({"events": events, "checkpoint": checkpoint.note}))).into_response())
}

async fn query_events(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    let own = key.read_filter(Permission::EventsRead)?;
    let pairs = query_pairs(raw.as_deref());
    let (mut query, page) = parse_params(&pairs)?;
    if let Some(actor) = own {
        // Own records only: enforced in the storage query. Asking for another actor finds nothing.
        if query.actor_id.as_ref().is_some_and(|asked| *asked != actor) {
            return Ok(Json(json!({"events": [], "next_cursor": null})));
        }
        query.actor_id = Some(actor);
    }
    let result = state.store.query(&key.tenant, &query, &page).await?;
    let mut events = page_json(result.events, result.views);
    let filters = crate::privacy::audit_filters(&pairs);
    let metadata = json!({"query": filters, "result_count": events.len()});
    audit::record(&state, &key.tenant, "audit.read", key.actor_json(), metadata, &request).await?;
    crate::privacy::present(&state, key, &request, &mut events).await?;
    Ok(Json(json!({"events": events, "next_cursor": result.next.map(|c| c.encode())})))
}

async fn get_event(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    let own = key.read_filter(Permission::EventsRead)?;
    if id.is_empty() || id.len() > 128 {
        return Err(ApiError::not_found("no event with this id"));
    }
    // Own records only: the store answers another actor's event as absent.
    let found = match &own {
        Some(actor) => state.store.own_event_by_id(&key.tenant, &id, actor).await?,
        None => state.store.event_by_id(&key.tenant, &id).await?,
    };
    let Some(stored) = found else {
        return Err(ApiError::not_found("no event with this id"));
    };
    let mut view = event_json(&stored)?;
    view["proof"] = json!(format!("/v1/ledger/proof/inclusion?seq={}", stored.seq));
    audit::record(&state, &key.tenant, "audit.read", key.actor_json(), json!({"event_id": id}), &request).await?;
    crate::privacy::present(&state, key, &request, std::slice::from_mut(&mut view)).await?;
    Ok(Json(view))
}

async fn create_api_key(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::KeysManage)?;
    require_json(&headers)?;
    let fields = JsonObject::parse(&body, &["name", "scopes", "expires_at"])?;
    let (name, scopes, expires_at) =
        (fields.string("name")?, fields.strings("scopes")?, fields.optional_string("expires_at")?);
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::new(Code::InvalidValue, "name must be 1 to 200 printable characters"));
    }
    if scopes.is_empty() || scopes.len() > veritrail_access::Permission::ALL.len() + 3 {
        return Err(ApiError::new(Code::InvalidValue, "scopes must list 1 to 20 scopes"));
    }
    for scope in &scopes {
        if !auth::valid_scope(scope) {
            return Err(ApiError::new(
                Code::InvalidValue,
                format!("unknown scope {scope:?}; known: events:write, events:read, admin, or a permission name"),
            ));
        }
    }
    // A key never grants more than the credential creating it holds.
    let granted = veritrail_access::scopes_permissions(scopes.iter().map(String::as_str));
    if !key.permissions.contains_all(granted) {
        let missing: Vec<&str> = granted.iter().filter(|p| !key.has(*p)).map(|p| p.name()).collect();
        return Err(ApiError::new(
            Code::Forbidden,
            format!("a key cannot grant permissions its creator lacks: {}", missing.join(", ")),
        ));
    }
    let expires_at = match expires_at {
        Some(text) => Some(
            text.parse::<Timestamp>()
                .map_err(|_| ApiError::new(Code::InvalidValue, "expires_at must be an RFC 3339 timestamp"))?,
        ),
        None => None,
    };
    if expires_at.is_some_and(|at| at <= Timestamp::now()) {
        return Err(ApiError::new(Code::InvalidValue, "expires_at must be in the future"));
    }
    let new_key = store_new_key(&state, &key.tenant, name.trim(), scopes.clone(), expires_at).await?;
    let metadata = json!({
        "token_type": "api_key",
        "key_id": new_key.id,
        "name": name.trim(),
        "scopes": scopes,
        "expires_at": expires_at.map(|at| at.to_string()),
    });
    audit::record(&state, &key.tenant, "auth.token.created", key.actor_json(), metadata, &request).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": new_key.id, "api_key": new_key.token}))).into_response())
}

async fn list_api_keys(State(state): State<AppState>, principal: Principal) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::KeysManage)?;
    let keys = state.store.api_keys(&key.tenant).await?;
    let keys: Vec<Value> = keys
        .into_iter()
        .map(|k| {
            json!({
                "id": k.id, "name": k.name, "scopes": k.scopes,
                "created_at": k.created_at.to_string(),
                "expires_at": k.expires_at.map(|t| t.to_string()),
                "revoked_at": k.revoked_at.map(|t| t.to_string()),
            })
        })
        .collect();
    Ok(Json(json!({"api_keys": keys})))
}

async fn revoke_api_key(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::KeysManage)?;
    if !state.store.revoke_api_key(&key.tenant, &id, Timestamp::now()).await? {
        return Err(ApiError::not_found("no api key with this id"));
    }
    let metadata = json!({"token_type": "api_key", "key_id": id});
    audit::record(&state, &key.tenant, "auth.token.revoked", key.actor_json(), metadata, &request).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let stats = state.store.stats();
    let body = json!({
        "status": "ready",
        "index_lag_events": stats.index.lag_events,
        "index_rebuilding": stats.index.rebuilding,
        "ingest_queue_depth": stats.queue_depth,
    });
    match state.store.tenant("readiness-probe").await {
        Ok(_) => Json(body).into_response(),
        Err(_) => ApiError::new(Code::Unavailable, "storage is not reachable").into_response(),
    }
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}
