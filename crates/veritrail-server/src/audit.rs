//! Self-audit: Veritrail records its own reads, exports and administrative acts in the tenant's
//! ledger (SPEC §4, PCI DSS 10.2.1.3). The record is durable before the caller gets the data.

use jiff::Timestamp;
use serde_json::{Value, json};
use veritrail_model::{Limits, PrepareContext};

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::ids;

/// Request details worth recording about the caller.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// Caller's address.
    pub ip: Option<String>,
    /// Caller's user agent.
    pub user_agent: Option<String>,
    /// `METHOD /path`.
    pub endpoint: String,
}

/// Appends one self-audit event (`action`, by `actor`, with `metadata`) to `tenant`'s ledger and
/// waits until it is durable.
pub async fn record(
    state: &AppState,
    tenant: &str,
    action: &str,
    actor: Value,
    metadata: Value,
    request: &RequestContext,
) -> Result<u64, ApiError> {
    record_outcome(state, tenant, action, actor, metadata, request, "success").await
}

/// [`record`] with another outcome (`failure`, `denied`).
pub async fn record_outcome(
    state: &AppState,
    tenant: &str,
    action: &str,
    actor: Value,
    metadata: Value,
    request: &RequestContext,
    outcome: &str,
) -> Result<u64, ApiError> {
    record_with_id(state, tenant, None, action, actor, metadata, request, outcome).await
}

/// [`record_outcome`] under a given event id: recording the same fact again (another node, a
/// retry after a crash) answers the first record's `seq` and adds nothing, as ingest does.
#[allow(clippy::too_many_arguments)]
pub async fn record_with_id(
    state: &AppState,
    tenant: &str,
    id: Option<&str>,
    action: &str,
    actor: Value,
    metadata: Value,
    request: &RequestContext,
    outcome: &str,
) -> Result<u64, ApiError> {
    let mut context = json!({"channel": "api", "endpoint": request.endpoint});
    if let Some(ip) = &request.ip {
        context["ip"] = json!(ip);
    }
    if let Some(agent) = &request.user_agent {
        context["user_agent"] = json!(agent.chars().take(1024).collect::<String>());
    }
    let mut event = json!({
        "action": action,
        "actor": actor,
        "outcome": outcome,
        "context": context,
        "metadata": metadata,
    });
    if let Some(id) = id {
        event["id"] = json!(id);
    }
    let prepared = prepare(internal_event(&event)?)?;
    let appended = state.store.append(tenant, vec![prepared]).await?;
    appended.first().map(|a| a.seq).ok_or_else(|| ApiError::new(Code::Internal, "self-audit event was not appended"))
}

/// Validates an event the server wrote itself, as ingest validates a client's (straight from
/// the value: serialising it only to parse it back cost more than the validation).
pub(crate) fn internal_event(event: &Value) -> Result<veritrail_model::Event, ApiError> {
    veritrail_model::validate_event(event, &Limits::default()).map_err(|e| {
        tracing::error!(error = %e.message, field = %e.field, "an event of the server's own failed validation");
        ApiError::new(Code::Internal, "cannot record the server's own event in the ledger")
    })
}

/// The platform operator as the actor of server-wide records.
pub fn platform_actor() -> Value {
    json!({"id": "platform", "type": "system", "name": "platform operator"})
}

/// Creates the platform ledger on the installation's first start (the tenant
/// [`PLATFORM_TENANT`](crate::auth::PLATFORM_TENANT), opened by `audit.log.initialized`). Nodes
/// starting together on one database create it once.
pub(crate) async fn ensure_platform_ledger(state: &AppState) -> Result<(), ApiError> {
    use crate::auth::PLATFORM_TENANT;
    if state.store.tenant(PLATFORM_TENANT).await?.is_some() {
        return Ok(());
    }
    let tenant =
        veritrail_store::Tenant { id: PLATFORM_TENANT.into(), name: "platform".into(), created_at: Timestamp::now() };
    match state.store.create_tenant(tenant).await {
        Ok(()) => {}
        Err(veritrail_store::StoreError::AlreadyExists(_)) => return Ok(()),
        Err(error) => return Err(error.into()),
    }
    let request = RequestContext { endpoint: "server start".into(), ..RequestContext::default() };
    let metadata = json!({"ledger": "platform"});
    record(state, PLATFORM_TENANT, "audit.log.initialized", platform_actor(), metadata, &request).await?;
    // The checkpoint signing key every ledger is signed with (rotations: audit.key.rotated).
    let keys = state.ledger.keys();
    let created_at = keys.all.iter().find(|(key, _, _)| *key == keys.current).map(|(_, created, _)| created.clone());
    let metadata = json!({"key": "ledger.signing", "verifier_key": keys.current.to_string(), "created_at": created_at});
    record(state, PLATFORM_TENANT, "audit.key.created", platform_actor(), metadata, &request).await?;
    Ok(())
}

/// Prepares a validated event: a fresh id when it has none, server time, unpredictable salts.
pub fn prepare(event: veritrail_model::Event) -> Result<veritrail_model::PreparedEvent, ApiError> {
    prepare_with(event, &mut ids::RandomStream::new()?)
}

/// [`prepare`] drawing ids and salts from a request's random stream.
pub fn prepare_with(
    event: veritrail_model::Event,
    random: &mut ids::RandomStream,
) -> Result<veritrail_model::PreparedEvent, ApiError> {
    prepare_classified(event, random, &[])
}

/// [`prepare_with`], also committing the tenant's classified personal fields.
pub fn prepare_classified(
    event: veritrail_model::Event,
    random: &mut ids::RandomStream,
    personal_paths: &[String],
) -> Result<veritrail_model::PreparedEvent, ApiError> {
    let now = Timestamp::now();
    let mut id_random = [0u8; 10];
    id_random.copy_from_slice(&random.next_block()[..10]);
    let id = veritrail_model::new_event_id(now.as_millisecond().max(0) as u64, id_random);
    let mut salt = || random.next_block();
    event.prepare_classified(PrepareContext { id_if_missing: id, now, salt: &mut salt }, personal_paths).map_err(|e| {
        tracing::error!(error = %e, "cannot prepare a validated event");
        ApiError::new(Code::InvalidValue, format!("event cannot be sealed: {e}"))
    })
}
