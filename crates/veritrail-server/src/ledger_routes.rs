//! `/v1/ledger/*` (SPEC §4): checkpoints, verifier keys, sealed records, proofs, and recording
//! verifications done by monitors.

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::AppState;
use crate::audit::{self, RequestContext};
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, Code};
use crate::ledger::{self, encode_hashes};
use crate::routes::query_pairs;

/// Most records one `GET /v1/ledger/records` returns.
const MAX_RECORDS: u32 = 10_000;
/// Records read from the store per page while streaming.
const RECORD_PAGE: u32 = 1_000;

fn text(body: String) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Parses the named unsigned integer parameters; anything else, or a repeat, is an error.
fn numbers(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<Option<u64>>, ApiError> {
    let mut values: Vec<Option<u64>> = vec![None; allowed.len()];
    for (name, value) in query_pairs(raw) {
        let Some(slot) = allowed.iter().position(|a| *a == name) else {
            return Err(ApiError::new(Code::InvalidQuery, format!("unknown query parameter {name:?}")));
        };
        if values[slot].is_some() {
            return Err(ApiError::new(Code::InvalidQuery, format!("query parameter {name:?} is given more than once")));
        }
        let number = value.parse::<u64>().map_err(|_| {
            ApiError::new(Code::InvalidQuery, format!("{name} must be a non-negative integer, not {value:?}"))
        })?;
        values[slot] = Some(number);
    }
    Ok(values)
}

/// `GET /v1/ledger/checkpoint[?size=N]`: the latest checkpoint, or the one stored at size `N`.
pub(crate) async fn get_checkpoint(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::LedgerRead)?;
    let checkpoint = match numbers(raw.as_deref(), &["size"])?[0] {
        Some(size) => state
            .store
            .checkpoint_at(&key.tenant, size)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no checkpoint was issued at size {size}")))?,
        None => ledger::checkpoint_covering(&state, &key.tenant, None).await?,
    };
    Ok(text(checkpoint.note))
}

/// `GET /v1/ledger/checkpoint/timestamp[?size=N]`: the RFC 3161 time-stamp (`TimeStampResp`,
/// DER) of the checkpoint at size `N`, by default of the latest stored checkpoint; 404 when it
/// has none (no TSA configured, or not witnessed yet). Verify it against the exact bytes of
/// `GET /v1/ledger/checkpoint?size=N`.
pub(crate) async fn get_checkpoint_timestamp(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::LedgerRead)?;
    let size = match numbers(raw.as_deref(), &["size"])?[0] {
        Some(size) => size,
        None => match state.store.latest_checkpoint(&key.tenant).await? {
            Some(latest) => latest.size,
            None => return Err(ApiError::not_found("no checkpoint was issued yet")),
        },
    };
    let Some(timestamp) = state.store.checkpoint_timestamp(&key.tenant, size).await? else {
        return Err(ApiError::not_found(format!("the checkpoint at size {size} has no time-stamp")));
    };
    let mut response = timestamp.response.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(veritrail_tsa::REPLY_CONTENT_TYPE));
    headers.insert("veritrail-checkpoint-size", HeaderValue::from(size));
    Ok(response)
}

pub(crate) async fn post_checkpoint(State(state): State<AppState>, principal: Principal) -> Result<Response, ApiError> {
    let key = principal.tenant_key()?;
    key.require_any(&[Permission::LedgerRead, Permission::EventsWrite])?;
    let checkpoint = ledger::issue_checkpoint(&state, &key.tenant).await?;
    Ok((StatusCode::CREATED, text(checkpoint.note)).into_response())
}

pub(crate) async fn get_key(State(state): State<AppState>) -> Response {
    text(format!("{}\n", state.ledger.keys().current))
}

/// `POST /v1/ledger/keys/rotate` (platform token): a new checkpoint signing key; the old one is
/// retired but stays published so its checkpoints remain verifiable. Recorded as
/// `audit.key.rotated` in every tenant's ledger.
pub(crate) async fn rotate_key(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
) -> Result<Response, ApiError> {
    principal.require_platform("rotating the ledger signing key")?;
    let previous = state.ledger.keys().current.to_string();
    let keys = state.ledger.rotate(state.store.as_ref()).await?;
    let actor = audit::platform_actor();
    let metadata =
        json!({"key": "ledger.signing", "previous_verifier_key": previous, "verifier_key": keys.current.to_string()});
    for tenant in state.store.tenants().await? {
        audit::record(&state, &tenant.id, "audit.key.rotated", actor.clone(), metadata.clone(), &request).await?;
    }
    Ok((StatusCode::CREATED, Json(json!({"verifier_key": keys.current.to_string()}))).into_response())
}

pub(crate) async fn get_keys(State(state): State<AppState>) -> Json<Value> {
    let keys: Vec<Value> = state
        .ledger
        .keys()
        .all
        .iter()
        .map(|(key, created, retired)| json!({"verifier_key": key.to_string(), "created_at": created, "retired_at": retired}))
        .collect();
    Json(json!({"keys": keys}))
}

pub(crate) async fn get_records(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::LedgerRead)?;
    let values = numbers(raw.as_deref(), &["from", "limit"])?;
    let from = values[0].unwrap_or(0);
    let limit = values[1].unwrap_or(1000);
    if limit == 0 || limit > u64::from(MAX_RECORDS) {
        return Err(ApiError::new(Code::InvalidQuery, format!("limit must be from 1 to {MAX_RECORDS}")));
    }
    let metadata = json!({"ledger_records": {"from": from, "limit": limit}});
    audit::record(&state, &key.tenant, "audit.read", key.actor_json(), metadata, &request).await?;
    let records = state.store.records(&key.tenant, from, limit as u32).await?;
    let mut response = sealed_lines(&records).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(response)
}

pub(crate) async fn get_inclusion(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::LedgerRead)?;
    let values = numbers(raw.as_deref(), &["seq", "tree_size"])?;
    let seq = values[0].ok_or_else(|| ApiError::new(Code::InvalidQuery, "seq is required"))?;
    let tree_size = match values[1] {
        Some(size) => size,
        None => ledger::checkpoint_covering(&state, &key.tenant, Some(seq)).await?.size,
    };
    check_size(&state, &key.tenant, tree_size).await?;
    if seq >= tree_size {
        return Err(ApiError::new(Code::InvalidQuery, format!("seq {seq} is not in a tree of size {tree_size}")));
    }
    let hashes = ledger::inclusion_proof(&state, &key.tenant, seq, tree_size).await?;
    Ok(Json(json!({"seq": seq, "tree_size": tree_size, "hashes": encode_hashes(&hashes)})))
}

pub(crate) async fn get_consistency(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::LedgerRead)?;
    let values = numbers(raw.as_deref(), &["first", "second"])?;
    let first = values[0].ok_or_else(|| ApiError::new(Code::InvalidQuery, "first is required"))?;
    let second = match values[1] {
        Some(size) => size,
        None => ledger::checkpoint_covering(&state, &key.tenant, None).await?.size,
    };
    if first > second {
        return Err(ApiError::new(Code::InvalidQuery, "first must not be larger than second"));
    }
    check_size(&state, &key.tenant, second).await?;
    let hashes = ledger::consistency_proof(&state, &key.tenant, first, second).await?;
    Ok(Json(json!({"first": first, "second": second, "hashes": encode_hashes(&hashes)})))
}

/// Sealed records as NDJSON: the exact stored bytes (canonical JSON has no raw newline), one per
/// line.
fn sealed_lines(records: &[veritrail_store::StoredEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.sealed.len() + 1).sum());
    for record in records {
        out.extend_from_slice(&record.sealed);
        out.push(b'\n');
    }
    out
}

/// Refuses a tree size beyond the ledger. Proofs usually ask for the size of a checkpoint, which
/// ledgers (append-only) never shrink below: those sizes need no read at all.
async fn check_size(state: &AppState, tenant: &str, size: u64) -> Result<(), ApiError> {
    if state.ledger.checkpointed_size(tenant).is_some_and(|checkpointed| size <= checkpointed) {
        return Ok(());
    }
    let current = state.store.tree_size(tenant).await?;
    if size > current {
        return Err(ApiError::new(
            Code::InvalidQuery,
            format!("tree size {size} is larger than the ledger ({current})"),
        ));
    }
    Ok(())
}

/// `POST /v1/ledger/verifications`: a monitor reports a verification; recorded as
/// `audit.verified` (or `audit.control.failed` when it failed).
pub(crate) async fn post_verification(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: axum::http::HeaderMap,
    crate::routes::Body(body): crate::routes::Body,
) -> Result<Response, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::LedgerRead)?;
    crate::routes::require_json(&headers)?;
    let fields = crate::routes::JsonObject::parse(&body, &["tree_size", "root", "result", "detail"])?;
    let (tree_size, root, result) = (fields.unsigned("tree_size")?, fields.string("root")?, fields.string("result")?);
    if STANDARD.decode(&root).map(|r| r.len()) != Ok(32) {
        return Err(ApiError::new(Code::InvalidValue, "field \"root\" must be a base64 SHA-256 hash"));
    }
    let action = match result.as_str() {
        "ok" => "audit.verified",
        "failed" => "audit.control.failed",
        other => {
            return Err(ApiError::new(
                Code::InvalidValue,
                format!("result must be \"ok\" or \"failed\", not {other:?}"),
            ));
        }
    };
    let detail: String = fields.optional_string("detail")?.unwrap_or_default().chars().take(1024).collect();
    let metadata = json!({"verification": {"tree_size": tree_size, "root": root, "result": result, "detail": detail}});
    let seq = audit::record(&state, &key.tenant, action, key.actor_json(), metadata, &request).await?;
    Ok((StatusCode::CREATED, Json(json!({"seq": seq}))).into_response())
}

/// Most checkpoint time-stamps a bundle header carries (the newest ones).
const BUNDLE_TIMESTAMPS: u32 = 16;

/// The newest time-stamped checkpoints up to `size` that verify with the current key, oldest
/// first, as bundle header entries `{"tree_size", "checkpoint", "timestamp"}`.
async fn bundle_timestamps(state: &AppState, tenant: &str, size: u64) -> Result<Vec<Value>, ApiError> {
    let current = [state.ledger.keys().current.clone()];
    let mut entries = Vec::new();
    for timestamp in state.store.checkpoint_timestamps(tenant, size, BUNDLE_TIMESTAMPS).await? {
        let Some(checkpoint) = state.store.checkpoint_at(tenant, timestamp.size).await? else {
            continue;
        };
        // Checkpoints signed by a retired key would not verify with the bundle's key.
        if veritrail_ledger::checkpoint::open_checkpoint(&checkpoint.note, &current).is_err() {
            continue;
        }
        entries.push(json!({
            "tree_size": timestamp.size,
            "checkpoint": checkpoint.note,
            "timestamp": STANDARD.encode(&timestamp.response),
        }));
    }
    entries.reverse();
    Ok(entries)
}

/// `GET /v1/export?format=ledger`: a self-contained bundle (docs/ledger-formats.md).
pub(crate) async fn export_bundle(state: AppState, tenant: String) -> Result<Response, ApiError> {
    let checkpoint = ledger::issue_checkpoint(&state, &tenant).await?;
    let timestamps = bundle_timestamps(&state, &tenant, checkpoint.size).await?;
    let header = json!({
        "format": "veritrail.ledger-bundle.v1",
        "tenant": tenant,
        "origin": state.ledger.tenant_origin(&tenant),
        "tree_size": checkpoint.size,
        "root": STANDARD.encode(checkpoint.root),
        "checkpoint": checkpoint.note,
        "verifier_key": state.ledger.keys().current.to_string(),
        "timestamps": timestamps,
    });
    let first = Bytes::from(format!("{header}\n"));
    let size = checkpoint.size;
    let stream = futures_util::stream::unfold((Some(first), 0u64), move |(pending, next)| {
        let (state, tenant) = (state.clone(), tenant.clone());
        async move {
            if let Some(first) = pending {
                return Some((Ok::<Bytes, std::io::Error>(first), (None, next)));
            }
            if next >= size {
                return None;
            }
            let limit = (size - next).min(u64::from(RECORD_PAGE)) as u32;
            match state.store.records(&tenant, next, limit).await {
                Ok(records) if !records.is_empty() => {
                    let lines = Bytes::from(sealed_lines(&records));
                    Some((Ok(lines), (None, next + records.len() as u64)))
                }
                Ok(_) | Err(_) => {
                    tracing::error!(tenant, next, "ledger bundle export failed mid-stream");
                    Some((Err(std::io::Error::other("ledger export failed")), (None, u64::MAX)))
                }
            }
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"veritrail-ledger.jsonl\""),
    );
    Ok(response)
}
