//! Monitoring endpoints: alerts (`/v1/alerts`), rules (`/v1/rules`) and webhooks
//! (`/v1/webhooks`). Reading alerts and rules needs `events:read`; changing anything needs
//! `admin`. Reads of alerts and dry runs over history are recorded as `audit.read`; every
//! change is recorded as its own `audit.*` event. Ids of other tenants answer 404.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde_json::{Map, Value, json};
use veritrail_rules::{Rule, RuleError, RuleId, RuleSpec};
use veritrail_store::{
    Alert, AlertFilter, AlertStatus, Delivery, DeliveryStatus, StatusChange, StoredRule, WebhookEndpoint,
};

use crate::AppState;
use crate::alerting::{self, RuleChange, RuleChanged};
use crate::audit::{self, RequestContext};
use crate::auth::{KeyPrincipal, Permission, Principal};
use crate::error::{ApiError, Code};
use crate::ids;
use crate::routes::{Body, JsonObject, query_pairs, require_json};
use crate::webhooks;

/// Largest rule definition accepted.
const MAX_RULE_BYTES: usize = 64 * 1024;
/// Default and largest page of alerts and deliveries.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
/// Dry runs: events evaluated by default and at most, firings returned by default and at most.
const DRY_RUN_EVENTS: u64 = 100_000;
const MAX_DRY_RUN_EVENTS: u64 = 1_000_000;
const DRY_RUN_FIRINGS: usize = 100;
const MAX_DRY_RUN_FIRINGS: usize = 1000;
/// Most webhook endpoints per tenant, and event filters per endpoint.
const MAX_WEBHOOKS: usize = 20;
const MAX_WEBHOOK_FILTERS: usize = 10;
/// Message types webhooks can ask for.
const WEBHOOK_EVENT_TYPES: &[&str] = &["alert.raised", "alert.acknowledged", "alert.resolved"];
/// Longest note on a status change.
const MAX_NOTE_CHARS: usize = 2000;

/// Ids in paths are short; anything else cannot exist.
fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128
}

/// Query parameters by name, each at most once and all known.
fn params(raw: Option<&str>, allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    for (name, value) in query_pairs(raw) {
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::new(
                Code::InvalidQuery,
                format!("unknown query parameter {name:?}; expected one of {}", allowed.join(", ")),
            ));
        }
        if out.insert(name.clone(), Value::String(value)).is_some() {
            return Err(ApiError::new(Code::InvalidQuery, format!("query parameter {name:?} is repeated")));
        }
    }
    Ok(out)
}

fn param<'a>(params: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    params.get(name).and_then(Value::as_str)
}

fn limit(params: &Map<String, Value>, default: u32) -> Result<u32, ApiError> {
    match param(params, "limit") {
        None => Ok(default),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::new(Code::InvalidQuery, format!("limit must be 1 to {MAX_LIMIT}"))),
    }
}

fn timestamp_param(params: &Map<String, Value>, name: &str) -> Result<Option<Timestamp>, ApiError> {
    param(params, name)
        .map(|text| {
            text.parse::<Timestamp>()
                .map_err(|_| ApiError::new(Code::InvalidQuery, format!("{name} must be an RFC 3339 timestamp")))
        })
        .transpose()
}

/// Opaque page cursors: a position in the store's insertion order.
fn encode_cursor(kind: &str, position: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{position}"))
}

fn decode_cursor(kind: &str, params: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
    let Some(text) = param(params, "cursor") else { return Ok(None) };
    let invalid = || ApiError::new(Code::InvalidQuery, "cursor is not a next_cursor of this list");
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let position = text.strip_prefix(kind).and_then(|rest| rest.strip_prefix(':')).ok_or_else(invalid)?;
    position.parse().map(Some).map_err(|_| invalid())
}

/// Comma-separated values, each known.
fn list_param<T>(
    params: &Map<String, Value>,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
    known: &str,
) -> Result<Vec<T>, ApiError> {
    let Some(text) = param(params, name) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for part in text.split(',') {
        out.push(parse(part.trim()).ok_or_else(|| {
            ApiError::new(Code::InvalidQuery, format!("{name}: unknown value {part:?}; known: {known}"))
        })?);
    }
    Ok(out)
}

// ---- alerts ----

pub(crate) async fn list_alerts(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::AlertsRead)?;
    let params = params(raw.as_deref(), &["status", "severity", "rule", "since", "until", "limit", "cursor"])?;
    let filter = AlertFilter {
        statuses: list_param(&params, "status", AlertStatus::parse, "open, acknowledged, resolved")?,
        severities: list_param(
            &params,
            "severity",
            |s| ["low", "medium", "high", "critical"].contains(&s).then(|| s.to_string()),
            "low, medium, high, critical",
        )?,
        rule_id: param(&params, "rule").map(str::to_string),
        since: timestamp_param(&params, "since")?,
        until: timestamp_param(&params, "until")?,
    };
    let limit = limit(&params, DEFAULT_LIMIT)?;
    let before = decode_cursor("alerts", &params)?;
    let alerts = state.alerts.alerts(&key.tenant, &filter, before, limit).await?;
    let next_cursor =
        (alerts.len() == limit as usize).then(|| alerts.last().map(|a| encode_cursor("alerts", a.position))).flatten();
    let metadata = json!({"alerts": params, "result_count": alerts.len()});
    audit::record(&state, &key.tenant, "audit.read", key.actor_json(), metadata, &request).await?;
    let alerts: Vec<Value> = alerts.iter().map(alerting::alert_json).collect();
    Ok(Json(json!({"alerts": alerts, "next_cursor": next_cursor})))
}

async fn find_alert(state: &AppState, tenant: &str, id: &str) -> Result<Alert, ApiError> {
    if !plausible_id(id) {
        return Err(ApiError::not_found("no alert with this id"));
    }
    state.alerts.alert(tenant, id).await?.ok_or_else(|| ApiError::not_found("no alert with this id"))
}

pub(crate) async fn get_alert(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::AlertsRead)?;
    let alert = find_alert(&state, &key.tenant, &id).await?;
    let mut body = alerting::alert_json(&alert);
    if let Some(rule) = state.alerts.rule_version(&key.tenant, &alert.rule_id, alert.rule_version).await? {
        body["rule_name"] = rule.definition.get("name").cloned().unwrap_or(Value::Null);
    }
    audit::record(&state, &key.tenant, "audit.read", key.actor_json(), json!({"alert_id": id}), &request).await?;
    Ok(Json(body))
}

pub(crate) async fn acknowledge_alert(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    change_status(state, principal, request, headers, id, body, AlertStatus::Acknowledged).await
}

pub(crate) async fn resolve_alert(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    change_status(state, principal, request, headers, id, body, AlertStatus::Resolved).await
}

/// Acknowledge (from open) or resolve (from open or acknowledged). Asking for the status the
/// alert has already is answered with the alert, unchanged; going back is refused.
async fn change_status(
    state: AppState,
    principal: Principal,
    request: RequestContext,
    headers: HeaderMap,
    id: String,
    body: bytes::Bytes,
    to: AlertStatus,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::AlertsManage)?;
    require_json(&headers)?;
    let note = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        JsonObject::parse(&body, &["note"])?.optional_string("note")?
    };
    if let Some(note) = &note
        && (note.chars().count() > MAX_NOTE_CHARS || note.chars().any(|c| c.is_control() && c != '\n'))
    {
        return Err(ApiError::new(
            Code::InvalidValue,
            format!("note must be at most {MAX_NOTE_CHARS} characters without control characters"),
        ));
    }
    let event_type = match to {
        AlertStatus::Acknowledged => "alert.acknowledged",
        _ => "alert.resolved",
    };
    for _ in 0..3 {
        let current = find_alert(&state, &key.tenant, &id).await?;
        if current.status == to {
            return Ok(Json(alerting::alert_json(&current)));
        }
        if current.status == AlertStatus::Resolved {
            return Err(ApiError::new(Code::InvalidState, format!("alert {id} is resolved already")));
        }
        let now = Timestamp::now();
        let by = key.actor_ref();
        let change = StatusChange { status: to, by: by.clone(), at: now, note: note.clone() };
        let after = Alert {
            status: to,
            status_changed_by: Some(by),
            status_changed_at: Some(now),
            status_note: note.clone(),
            ..current.clone()
        };
        let message = alerting::message(event_type, &key.tenant, &after, now)?;
        let changed = state.alerts.change_alert_status(&key.tenant, &id, current.status, change, Some(message)).await?;
        let Some(changed) = changed else { continue }; // changed meanwhile: look again
        state.alerting.deliveries.notify_one();
        let action = format!("audit.{}", event_type);
        // The note is an operator's free text and may name a data subject: like an alert's group
        // key and summary it stays out of the ledger, whose records an erasure cannot change; the
        // alert keeps it (sealed, redacted by an erasure). The ledger records that one was given.
        let metadata = json!({
            "alert_id": id,
            "rule": changed.rule_id,
            "previous_status": current.status.as_str(),
            "status": to.as_str(),
            "with_note": note.is_some(),
        });
        audit::record(&state, &key.tenant, &action, key.actor_json(), metadata, &request).await?;
        return Ok(Json(alerting::alert_json(&changed)));
    }
    Err(ApiError::new(Code::InvalidState, "the alert keeps changing; retry"))
}

// ---- rules ----

fn rule_error(error: RuleError) -> ApiError {
    let code = match error.code() {
        "unknown_field" => Code::UnknownField,
        "missing_field" => Code::MissingField,
        "wrong_type" => Code::WrongType,
        _ => Code::InvalidRule,
    };
    ApiError::new(code, error.to_string())
}

/// Parses a JSON body of at most [`MAX_RULE_BYTES`].
fn json_body(body: &[u8], max: usize) -> Result<Value, ApiError> {
    if body.len() > max {
        return Err(ApiError::new(Code::PayloadTooLarge, format!("request body is larger than {max} bytes")));
    }
    if std::str::from_utf8(body).is_err() {
        return Err(ApiError::new(Code::InvalidUtf8, "request body is not valid utf-8"));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(Code::MalformedJson, format!("request body is not valid json: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::new(Code::WrongType, "request body must be a json object"));
    }
    Ok(value)
}

fn parse_spec(value: &Value) -> Result<RuleSpec, ApiError> {
    RuleSpec::from_json(value).map_err(rule_error)
}

fn rule_json(rule: &Rule, stored: &StoredRule) -> Value {
    let mut out = rule.to_json();
    out["builtin"] = json!(alerting::is_builtin(rule.id().as_str()));
    out["created_at"] = json!(stored.created_at.to_string());
    out["updated_at"] = json!(stored.updated_at.to_string());
    out
}

fn stored_rule_json(stored: &StoredRule) -> Result<Value, ApiError> {
    let rule =
        alerting::parse_rule(stored).ok_or_else(|| ApiError::new(Code::Internal, "a stored rule is unreadable"))?;
    Ok(rule_json(&rule, stored))
}

fn rule_id(id: &str) -> Result<RuleId, ApiError> {
    RuleId::parse(id).map_err(|_| alerting::no_such_rule())
}

pub(crate) async fn list_rules(State(state): State<AppState>, principal: Principal) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::RulesRead)?;
    let rules = state.alerts.rules(&key.tenant).await?;
    let rules: Vec<Value> = rules.iter().map(stored_rule_json).collect::<Result<_, _>>()?;
    Ok(Json(json!({"rules": rules})))
}

pub(crate) async fn get_rule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::RulesRead)?;
    let id = rule_id(&id)?;
    let stored = state.alerts.rule(&key.tenant, id.as_str()).await?.ok_or_else(alerting::no_such_rule)?;
    Ok(Json(stored_rule_json(&stored)?))
}

async fn record_rule_change(
    state: &AppState,
    key: &KeyPrincipal,
    request: &RequestContext,
    action: &str,
    changed: &RuleChanged,
) -> Result<(), ApiError> {
    let mut metadata = json!({
        "rule_id": changed.rule.id().as_str(),
        "version": changed.rule.version(),
        "rule": changed.rule.to_json(),
    });
    if let Some(previous) = changed.previous_version {
        metadata["previous_version"] = json!(previous);
    }
    audit::record(state, &key.tenant, action, key.actor_json(), metadata, request).await?;
    Ok(())
}

pub(crate) async fn create_rule(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::RulesManage)?;
    require_json(&headers)?;
    let spec = parse_spec(&json_body(&body, MAX_RULE_BYTES)?)?;
    let changed = state.alerting.change_rules(&state, &key.tenant, RuleChange::Create(spec)).await?;
    record_rule_change(&state, key, &request, "audit.rule.created", &changed).await?;
    Ok((StatusCode::CREATED, Json(rule_json(&changed.rule, &changed.stored))).into_response())
}

pub(crate) async fn update_rule(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::RulesManage)?;
    require_json(&headers)?;
    let id = rule_id(&id)?;
    let mut value = json_body(&body, MAX_RULE_BYTES)?;
    // A rule as GET returns it may be sent back edited: its read-only fields are ignored.
    if let Some(fields) = value.as_object_mut() {
        if fields.get("id").is_some_and(|given| given.as_str() != Some(id.as_str())) {
            return Err(ApiError::new(Code::InvalidValue, "field \"id\" differs from the rule in the path"));
        }
        for read_only in ["id", "version", "effective_from_seq", "builtin", "created_at", "updated_at"] {
            fields.remove(read_only);
        }
    }
    let spec = parse_spec(&value)?;
    let changed = state.alerting.change_rules(&state, &key.tenant, RuleChange::Update(id, spec)).await?;
    record_rule_change(&state, key, &request, "audit.rule.updated", &changed).await?;
    Ok(Json(rule_json(&changed.rule, &changed.stored)))
}

pub(crate) async fn delete_rule(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::RulesManage)?;
    let id = rule_id(&id)?;
    let changed = state.alerting.change_rules(&state, &key.tenant, RuleChange::Delete(id)).await?;
    record_rule_change(&state, key, &request, "audit.rule.deleted", &changed).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/rules/dry-run`: `{"rule": {...}, "since"?, "max_events"?, "max_firings"?}`.
pub(crate) async fn dry_run_draft(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::RulesManage)?;
    require_json(&headers)?;
    let value = json_body(&body, MAX_RULE_BYTES)?;
    let options = DryRunOptions::parse(&value, &["rule", "since", "max_events", "max_firings"])?;
    let spec_value = value.get("rule").filter(|v| !v.is_null()).ok_or_else(|| {
        ApiError::new(Code::MissingField, "field \"rule\" is required: the rule to try, as for POST /v1/rules")
    })?;
    if !spec_value.is_object() {
        return Err(ApiError::new(Code::WrongType, "field \"rule\" must be a json object"));
    }
    let spec = RuleSpec::from_json(spec_value).map_err(|e| {
        let mut error = rule_error(e);
        error.message = format!("rule.{}", error.message);
        error
    })?;
    let draft = RuleId::parse("draft").map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
    run_dry_run(&state, key, &request, &Rule::new(draft, spec), options).await
}

/// `POST /v1/rules/{id}/dry-run`: a stored rule over history.
pub(crate) async fn dry_run_rule(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::RulesManage)?;
    require_json(&headers)?;
    let id = rule_id(&id)?;
    let value = if body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { json_body(&body, MAX_RULE_BYTES)? };
    let options = DryRunOptions::parse(&value, &["since", "max_events", "max_firings"])?;
    let stored = state.alerts.rule(&key.tenant, id.as_str()).await?.ok_or_else(alerting::no_such_rule)?;
    let rule =
        alerting::parse_rule(&stored).ok_or_else(|| ApiError::new(Code::Internal, "the stored rule is unreadable"))?;
    run_dry_run(&state, key, &request, &rule, options).await
}

struct DryRunOptions {
    since: Option<Timestamp>,
    max_events: u64,
    max_firings: usize,
}

impl DryRunOptions {
    fn parse(value: &Value, allowed: &[&str]) -> Result<DryRunOptions, ApiError> {
        let fields = JsonObject::parse(value.to_string().as_bytes(), allowed)?;
        let since = match fields.optional_string("since")? {
            Some(text) => Some(
                text.parse::<Timestamp>()
                    .map_err(|_| ApiError::new(Code::InvalidValue, "since must be an RFC 3339 timestamp"))?,
            ),
            None => None,
        };
        let number = |name: &str, default: u64, max: u64| -> Result<u64, ApiError> {
            match value.get(name).filter(|v| !v.is_null()) {
                None => Ok(default),
                Some(v) => v.as_u64().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                    ApiError::new(Code::InvalidValue, format!("field {name:?} must be an integer from 1 to {max}"))
                }),
            }
        };
        Ok(DryRunOptions {
            since,
            max_events: number("max_events", DRY_RUN_EVENTS, MAX_DRY_RUN_EVENTS)?,
            max_firings: number("max_firings", DRY_RUN_FIRINGS as u64, MAX_DRY_RUN_FIRINGS as u64)? as usize,
        })
    }
}

async fn run_dry_run(
    state: &AppState,
    key: &KeyPrincipal,
    request: &RequestContext,
    rule: &Rule,
    options: DryRunOptions,
) -> Result<Json<Value>, ApiError> {
    let size = state.store.tree_head(&key.tenant).await?.size;
    let from = match options.since {
        Some(since) if size > 0 => {
            alerting::first_seq_received_since(state.store.as_ref(), &key.tenant, since, 0, size).await?
        }
        Some(_) => 0,
        None => size.saturating_sub(options.max_events),
    };
    let to = size.min(from.saturating_add(options.max_events));
    let report = alerting::dry_run(state.store.as_ref(), &key.tenant, rule, from, to, options.max_firings).await?;
    let firings: Vec<Value> = report.firings.iter().map(alerting::firing_json).collect();
    let metadata = json!({
        "dry_run": rule.id().as_str(),
        "from_seq": from,
        "to_seq": to,
        "events_evaluated": report.events_evaluated,
        "result_count": firings.len(),
    });
    audit::record(state, &key.tenant, "audit.read", key.actor_json(), metadata, request).await?;
    Ok(Json(json!({
        "rule": rule.id().as_str(),
        "from_seq": from,
        "to_seq": to,
        "events_evaluated": report.events_evaluated,
        "truncated": report.truncated,
        "firings": firings,
    })))
}

// ---- webhooks ----

fn webhook_json(endpoint: &WebhookEndpoint) -> Value {
    json!({
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.events,
        "created_at": endpoint.created_at.to_string(),
    })
}

/// The URL without query and fragment, for the ledger (query strings often carry tokens).
fn url_for_ledger(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

pub(crate) async fn create_webhook(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::StreamsManage)?;
    require_json(&headers)?;
    let fields = JsonObject::parse(&body, &["url", "events"])?;
    let url = fields.string("url")?;
    webhooks::check_url(&url, state.alerting.config().webhook_allow_private, state.mailer.is_some())?;
    let events = match fields.present("events") {
        None => vec!["alert.*".to_string()],
        Some(_) => fields.strings("events")?,
    };
    if events.is_empty() || events.len() > MAX_WEBHOOK_FILTERS {
        return Err(ApiError::new(
            Code::InvalidValue,
            format!("events must list 1 to {MAX_WEBHOOK_FILTERS} message types"),
        ));
    }
    for filter in &events {
        let known = filter == "*" || filter == "alert.*" || WEBHOOK_EVENT_TYPES.contains(&filter.as_str());
        if !known {
            return Err(ApiError::new(
                Code::InvalidValue,
                format!("events: unknown message type {filter:?}; known: alert.*, {}", WEBHOOK_EVENT_TYPES.join(", ")),
            ));
        }
    }
    if state.alerts.webhooks(&key.tenant).await?.len() >= MAX_WEBHOOKS {
        return Err(ApiError::new(
            Code::TooMany,
            format!("a tenant has at most {MAX_WEBHOOKS} webhooks; delete one first"),
        ));
    }
    let endpoint = WebhookEndpoint {
        id: format!("wh_{}", ids::random_base32(20)?),
        tenant: key.tenant.clone(),
        url,
        events,
        secret: webhooks::new_secret()?,
        created_at: Timestamp::now(),
    };
    state.alerts.create_webhook(endpoint.clone()).await?;
    let metadata = json!({"webhook_id": endpoint.id, "url": url_for_ledger(&endpoint.url), "events": endpoint.events});
    audit::record(&state, &key.tenant, "audit.webhook.created", key.actor_json(), metadata, &request).await?;
    let mut body = webhook_json(&endpoint);
    body["secret"] = json!(endpoint.secret);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(crate) async fn list_webhooks(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::StreamsManage)?;
    let endpoints = state.alerts.webhooks(&key.tenant).await?;
    Ok(Json(json!({"webhooks": endpoints.iter().map(webhook_json).collect::<Vec<_>>()})))
}

async fn find_webhook(state: &AppState, tenant: &str, id: &str) -> Result<WebhookEndpoint, ApiError> {
    if !plausible_id(id) {
        return Err(ApiError::not_found("no webhook with this id"));
    }
    state.alerts.webhook(tenant, id).await?.ok_or_else(|| ApiError::not_found("no webhook with this id"))
}

pub(crate) async fn get_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::StreamsManage)?;
    Ok(Json(webhook_json(&find_webhook(&state, &key.tenant, &id).await?)))
}

pub(crate) async fn delete_webhook(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::StreamsManage)?;
    let endpoint = find_webhook(&state, &key.tenant, &id).await?;
    if !state.alerts.delete_webhook(&key.tenant, &id).await? {
        return Err(ApiError::not_found("no webhook with this id"));
    }
    state.alerting.endpoints_deleted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let metadata = json!({"webhook_id": id, "url": url_for_ledger(&endpoint.url)});
    audit::record(&state, &key.tenant, "audit.webhook.deleted", key.actor_json(), metadata, &request).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn delivery_json(delivery: &Delivery) -> Value {
    let payload: Value = serde_json::from_str(&delivery.payload).unwrap_or(Value::Null);
    json!({
        "id": delivery.message_id,
        "webhook_id": delivery.endpoint_id,
        "type": delivery.event_type,
        "alert_id": delivery.alert_id,
        "status": delivery.status.as_str(),
        "attempts": delivery.attempts,
        "created_at": delivery.created_at.to_string(),
        "next_attempt_at": delivery.next_attempt_at.map(|t| t.to_string()),
        "last_attempt_at": delivery.last_attempt_at.map(|t| t.to_string()),
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "delivered_at": delivery.delivered_at.map(|t| t.to_string()),
        "payload": payload,
    })
}

pub(crate) async fn list_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::StreamsManage)?;
    let params = params(raw.as_deref(), &["status", "limit", "cursor"])?;
    let status = match param(&params, "status") {
        None => None,
        Some(text) => Some(DeliveryStatus::parse(text).ok_or_else(|| {
            ApiError::new(
                Code::InvalidQuery,
                format!("status: unknown value {text:?}; known: pending, delivered, dead"),
            )
        })?),
    };
    let limit = limit(&params, DEFAULT_LIMIT)?;
    let before = decode_cursor("deliveries", &params)?;
    find_webhook(&state, &key.tenant, &id).await?;
    let deliveries = state.alerts.deliveries(&key.tenant, &id, status, before, limit).await?;
    let next_cursor = (deliveries.len() == limit as usize)
        .then(|| deliveries.last().map(|d| encode_cursor("deliveries", d.position)))
        .flatten();
    Ok(Json(json!({
        "deliveries": deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    })))
}

pub(crate) async fn redeliver(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::StreamsManage)?;
    find_webhook(&state, &key.tenant, &id).await?;
    let missing = || ApiError::not_found("no delivery with this id for this webhook");
    if !plausible_id(&delivery_id) {
        return Err(missing());
    }
    let delivery =
        state.alerts.redeliver(&key.tenant, &id, &delivery_id, Timestamp::now()).await?.ok_or_else(missing)?;
    state.alerting.deliveries.notify_one();
    Ok((StatusCode::ACCEPTED, Json(delivery_json(&delivery))).into_response())
}
