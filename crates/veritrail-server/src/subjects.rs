//! Data-subject rights (issue 5): erasure by crypto-shredding (GDPR Art. 17), subject access
//! (Art. 15, COMPLIANCE.md §9.4), consent state folded from the ledger (Art. 7), legal holds
//! that block erasure, and the tenant's privacy settings.
//!
//! A subject is the string events carry as `actor.id` (their own activity) or `data_subject`
//! (data about them); both populations are covered. Erasure destroys the subject's data keys in
//! the store: sealed records, checkpoints and proofs stay exactly as they were.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use veritrail_query::{Order, PageRequest, parse_params};

use crate::AppState;
use crate::audit::{self, RequestContext};
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, Code};
use crate::routes::{Body, JsonObject, event_json, require_json};

/// Events a subject access report covers at most (it says so when it stops there).
const MAX_REPORT_EVENTS: usize = 50_000;
/// Longest subject id accepted in a path.
const MAX_SUBJECT_LEN: usize = 256;
/// Actions that are accesses to a subject's data (the report's consultation log, C-579/21).
const ACCESS_ACTIONS: &[&str] = &["data.read", "data.sensitive.accessed", "data.exported", "disclosure.made"];

fn validate_subject(subject: &str) -> Result<(), ApiError> {
    if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN || subject.chars().any(char::is_control) {
        return Err(ApiError::new(
            Code::InvalidRequest,
            format!("subject id must be 1-{MAX_SUBJECT_LEN} bytes without control characters"),
        ));
    }
    Ok(())
}

fn setting_name(kind: &str, tenant: &str, subject: Option<&str>) -> String {
    match subject {
        Some(subject) => format!("privacy.{kind}/{tenant}/{subject}"),
        None => format!("privacy.{kind}/{tenant}"),
    }
}

/// A setting holding JSON, `Value::Null` when absent or unreadable.
async fn json_setting(state: &AppState, name: &str) -> Result<Value, ApiError> {
    Ok(state.store.setting(name).await?.and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or(Value::Null))
}

/// Replaces a JSON setting (created if absent), retrying a concurrent change.
async fn put_json_setting(state: &AppState, name: &str, value: &Value) -> Result<(), ApiError> {
    let new = to_bytes(value)?;
    for _ in 0..5 {
        let current = state.store.init_setting(name, new.clone()).await?;
        if current == new || state.store.swap_setting(name, current, new.clone()).await? {
            return Ok(());
        }
    }
    Err(ApiError::new(Code::Unavailable, "the setting changed concurrently; retry"))
}

/// The active legal hold on a subject, if any.
async fn legal_hold(state: &AppState, tenant: &str, subject: &str) -> Result<Option<Value>, ApiError> {
    let hold = json_setting(state, &setting_name("legal_hold", tenant, Some(subject))).await?;
    Ok((hold["active"] == json!(true)).then_some(hold))
}

// Legal holds and erasures exclude each other through the subject's `legal_hold` setting,
// changed only by compare-and-swap (atomic in both stores, across nodes): an erasure first
// swaps in a claim (`"erasing": {"since": …}`) that holds cannot be placed over, and swaps the
// setting back once its `audit.erasure.performed` event is in the ledger. Checking the hold and
// then erasing, as two steps, let a hold placed in between be answered 200 and then ignored.

/// A claim older than this was left by a node that stopped mid-erasure; it no longer counts.
const ERASURE_CLAIM_STALE: std::time::Duration = std::time::Duration::from_secs(300);
/// How long a hold placement or another erasure waits for an erasure under way to finish.
const ERASURE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Pause between looks at a claimed setting.
const CLAIM_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether a legal-hold setting carries a live erasure claim.
fn erasure_claimed(setting: &Value, now: jiff::Timestamp) -> bool {
    let Some(since) = setting["erasing"]["since"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return false;
    };
    now.duration_since(since).unsigned_abs() < ERASURE_CLAIM_STALE
}

/// The erasure's claim on a subject's legal-hold setting, to be released with [`release_claim`].
struct ErasureClaim {
    name: String,
    claimed: Vec<u8>,
    before: Vec<u8>,
}

/// What [`change_unclaimed`] does with the setting it found.
enum Change<T> {
    /// Swap in these bytes, then answer `T`.
    To(Vec<u8>, T),
    /// Leave it, answer `T`.
    Keep(T),
}

/// Changes the subject's legal-hold setting `name` (by compare-and-swap, again until nothing
/// changed it meanwhile) to what `change` makes of it, once no erasure claims it: a live claim
/// is waited for up to [`ERASURE_WAIT`], then 409.
async fn change_unclaimed<T>(
    state: &AppState,
    subject: &str,
    name: &str,
    change: impl Fn(&Value, jiff::Timestamp) -> Result<Change<T>, ApiError>,
) -> Result<T, ApiError> {
    let deadline = tokio::time::Instant::now() + ERASURE_WAIT;
    loop {
        let current = state.store.init_setting(name, b"{}".to_vec()).await?;
        let setting = serde_json::from_slice::<Value>(&current).unwrap_or(Value::Null);
        let now = jiff::Timestamp::now();
        if !erasure_claimed(&setting, now) {
            match change(&setting, now)? {
                Change::Keep(answer) => return Ok(answer),
                Change::To(new, answer) => {
                    if state.store.swap_setting(name, current, new).await? {
                        return Ok(answer);
                    }
                    continue; // changed meanwhile: look again
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::new(
                Code::Conflict,
                format!("an erasure of subject {subject:?} is under way; retry in a moment"),
            ));
        }
        tokio::time::sleep(CLAIM_POLL).await;
    }
}

/// Claims a subject for erasure: `Ok(Err(hold))` when a legal hold is active (nothing claimed).
async fn claim_for_erasure(
    state: &AppState,
    tenant: &str,
    subject: &str,
) -> Result<Result<ErasureClaim, Value>, ApiError> {
    let name = setting_name("legal_hold", tenant, Some(subject));
    change_unclaimed(state, subject, &name, |setting, now| {
        if setting["active"] == json!(true) {
            return Ok(Change::Keep(Err(setting.clone())));
        }
        let mut setting = if setting.is_object() { setting.clone() } else { json!({}) };
        if let Some(members) = setting.as_object_mut() {
            members.remove("erasing"); // a lapsed claim is not given back
        }
        let before = to_bytes(&setting)?;
        setting["erasing"] = json!({"since": now.to_string()});
        let claimed = to_bytes(&setting)?;
        Ok(Change::To(claimed.clone(), Ok(ErasureClaim { name: name.clone(), claimed, before })))
    })
    .await
}

/// Gives the setting back as it was before the claim (a claim that lapsed and was taken over
/// meanwhile is left to its new owner).
async fn release_claim(state: &AppState, claim: ErasureClaim) {
    match state.store.swap_setting(&claim.name, claim.claimed, claim.before).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(setting = %claim.name, "an erasure claim changed under its erasure"),
        Err(error) => {
            tracing::warn!(%error, setting = %claim.name, "cannot release an erasure claim; it lapses in 5 minutes")
        }
    }
}

fn to_bytes(value: &Value) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::new(Code::Internal, format!("setting: {e}")))
}

/// Places a legal hold unless an erasure holds a claim on the subject (waited for up to
/// [`ERASURE_WAIT`]).
async fn put_hold(state: &AppState, tenant: &str, subject: &str, hold: &Value) -> Result<(), ApiError> {
    let name = setting_name("legal_hold", tenant, Some(subject));
    let new = to_bytes(hold)?;
    change_unclaimed(state, subject, &name, |_, _| Ok(Change::To(new.clone(), ()))).await
}

/// Every event by (`actor_id`) or about (`data_subject`) the subject matching the `also`
/// filters, oldest first, opened and decrypted, at most `cap`; the flag says whether the cap cut
/// the list.
async fn subject_events(
    state: &AppState,
    tenant: &str,
    subject: &str,
    also: &[(&str, &str)],
    cap: usize,
) -> Result<(Vec<Value>, bool), ApiError> {
    let mut by_seq: std::collections::BTreeMap<u64, Value> = std::collections::BTreeMap::new();
    let mut truncated = false;
    for filter in ["actor_id", "data_subject"] {
        let mut pairs = vec![(filter.to_string(), subject.to_string())];
        pairs.extend(also.iter().map(|(name, value)| (name.to_string(), value.to_string())));
        let (query, _) = parse_params(&pairs)?;
        let mut page = PageRequest { limit: veritrail_query::MAX_LIMIT, after: None, order: Order::Asc };
        loop {
            let result = state.store.query(tenant, &query, &page).await?;
            for stored in &result.events {
                by_seq.insert(stored.seq, event_json(stored)?);
            }
            if by_seq.len() >= cap {
                truncated = true;
                break;
            }
            match result.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
    }
    Ok((by_seq.into_values().take(cap).collect(), truncated))
}

/// `DELETE /v1/subjects/{subject_id}` `{"reason"?}`: crypto-shreds the subject.
pub(crate) async fn erase(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: axum::http::HeaderMap,
    Path(subject): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::SubjectsManage)?;
    validate_subject(&subject)?;
    require_json(&headers)?;
    let reason = match body.is_empty() {
        true => None,
        false => JsonObject::parse(&body, &["reason"])?.optional_string("reason")?,
    };
    if reason.as_ref().is_some_and(|r| r.chars().count() > 1000) {
        return Err(ApiError::new(Code::InvalidValue, "field \"reason\" is longer than 1000 characters"));
    }
    let claim = match claim_for_erasure(&state, &key.tenant, &subject).await? {
        Ok(claim) => claim,
        Err(hold) => {
            let metadata = json!({"subject": subject, "refused": "legal_hold", "hold_placed_at": hold["placed_at"]});
            audit::record(&state, &key.tenant, "audit.erasure.refused", key.actor_json(), metadata, &request).await?;
            return Err(ApiError::new(
                Code::LegalHold,
                format!("subject {subject:?} is under a legal hold placed at {}; release it first", hold["placed_at"]),
            ));
        }
    };
    let erased = erase_claimed(&state, key, &request, &subject, reason).await;
    release_claim(&state, claim).await;
    erased
}

/// The erasure proper, once the subject is claimed; its audit event is in the ledger before the
/// claim is released.
async fn erase_claimed(
    state: &AppState,
    key: &crate::auth::KeyPrincipal,
    request: &RequestContext,
    subject: &str,
    reason: Option<String>,
) -> Result<Json<Value>, ApiError> {
    // Longer retention obligations are recorded with the erasure, never resolved silently: the
    // sealed records (what happened, when, disclosure descriptions) are kept under Art. 17(3)(b)
    // and (e); only the personal values go.
    let (events, _) = subject_events(state, &key.tenant, subject, &[], MAX_REPORT_EVENTS).await?;
    let phi = events.iter().filter(|e| labels(e).contains(&"phi")).count();
    let pci = events.iter().filter(|e| labels(e).contains(&"pci")).count();
    let disclosures = events.iter().filter(|e| e["action"] == "disclosure.made").count();
    let mut conflicts = Vec::new();
    if phi > 0 {
        conflicts
            .push(json!({"framework": "HIPAA", "clause": "45 CFR 164.316(b)(2)(i) (6-year retention)", "events": phi}));
    }
    if disclosures > 0 {
        conflicts.push(json!({"framework": "HIPAA", "clause": "45 CFR 164.528 (accounting of disclosures)", "events": disclosures}));
    }
    if pci > 0 {
        conflicts
            .push(json!({"framework": "PCI DSS", "clause": "10.5.1 (12-month audit log retention)", "events": pci}));
    }
    let values = personal_values(&events, subject);
    let erasure = state.store.erase_subject(&key.tenant, subject).await?;
    let (alerts_redacted, deliveries_redacted) = redact_monitoring(state, &key.tenant, &values).await?;
    let metadata = json!({
        "subject": subject,
        "reason": reason,
        "legal_basis": "GDPR Art. 17(1)",
        "method": "crypto-shredding: the subject's data keys were destroyed; sealed records are unchanged",
        "keys_destroyed": erasure.keys_destroyed,
        "events_unlinked": erasure.events_unlinked,
        "events_affected": events.len(),
        "alerts_redacted": alerts_redacted,
        "webhook_messages_redacted": deliveries_redacted,
        "retention_conflicts": conflicts,
        "retained_under": if conflicts.is_empty() { Value::Null } else { json!("GDPR Art. 17(3)(b) and (e): the records are kept without the personal values") },
    });
    let seq = audit::record(state, &key.tenant, "audit.erasure.performed", key.actor_json(), metadata.clone(), request)
        .await?;
    Ok(Json(json!({
        "subject": subject,
        "erased": true,
        "keys_destroyed": erasure.keys_destroyed,
        "events_affected": events.len(),
        "alerts_redacted": alerts_redacted,
        "webhook_messages_redacted": deliveries_redacted,
        "retention_conflicts": metadata["retention_conflicts"],
        "erasure_event_seq": seq,
    })))
}

/// Shortest personal value removed from monitoring text: shorter ones identify no one and would
/// be cut out of unrelated words.
const MIN_REDACTED_CHARS: usize = 3;
/// Alerts and deliveries read at once while redacting.
const REDACT_PAGE: u32 = 500;

/// The subject's own personal values in its events (the fields its erasure makes unreadable in
/// the ledger: name, e-mail, IP, user agent and location of its own actions; `changes` and the
/// classified metadata of events about it), longest first. Monitoring keeps copies of such
/// values in clear under the tenant's key — alert group keys (`context.ip`) and summaries,
/// stored webhook payloads — which crypto-shredding the subject's keys does not reach.
fn personal_values(events: &[Value], subject: &str) -> Vec<String> {
    let mut values = std::collections::BTreeSet::new();
    for view in events {
        let as_actor = view["actor"]["id"] == subject;
        if as_actor {
            for path in veritrail_model::PERSONAL_FIELDS.iter().filter(|path| path.contains('.')) {
                collect_strings(at_path(view, path), &mut values);
            }
        }
        if view["data_subject"] == subject || (as_actor && view["data_subject"].is_null()) {
            collect_strings(view.get("changes"), &mut values);
            for path in view[veritrail_model::PERSONAL_FIELDS_MEMBER].as_array().into_iter().flatten() {
                if let Some(path) = path.as_str() {
                    collect_strings(at_path(view, path), &mut values);
                }
            }
        }
    }
    let mut values: Vec<String> = values
        .into_iter()
        .filter(|value| value.chars().count() >= MIN_REDACTED_CHARS && value != veritrail_model::ERASED)
        .collect();
    values.sort_by_key(|value| std::cmp::Reverse(value.len()));
    values
}

/// What is at the dotted `path` of an event view.
fn at_path<'v>(view: &'v Value, path: &str) -> Option<&'v Value> {
    view.pointer(&format!("/{}", path.replace('.', "/")))
}

/// Every string below `value`.
fn collect_strings(value: Option<&Value>, into: &mut std::collections::BTreeSet<String>) {
    match value {
        Some(Value::String(text)) => {
            into.insert(text.clone());
        }
        Some(Value::Array(items)) => items.iter().for_each(|item| collect_strings(Some(item), into)),
        Some(Value::Object(members)) => members.values().for_each(|item| collect_strings(Some(item), into)),
        _ => {}
    }
}

/// `text` with every occurrence of `values` replaced by `"[erased]"`; `None` when none occurs.
fn redact_text(text: &str, values: &[String]) -> Option<String> {
    let mut out: Option<String> = None;
    for value in values {
        let current = out.as_deref().unwrap_or(text);
        if current.contains(value.as_str()) {
            out = Some(current.replace(value.as_str(), veritrail_model::ERASED));
        }
    }
    out
}

/// Redacts every string in a JSON value (member names untouched); whether any changed.
fn redact_json(value: &mut Value, values: &[String]) -> bool {
    match value {
        Value::String(text) => match redact_text(text, values) {
            Some(redacted) => {
                *text = redacted;
                true
            }
            None => false,
        },
        Value::Array(items) => items.iter_mut().fold(false, |changed, item| redact_json(item, values) | changed),
        Value::Object(members) => members.values_mut().fold(false, |changed, item| redact_json(item, values) | changed),
        _ => false,
    }
}

/// Removes the subject's `values` from the tenant's alerts (group keys, summaries) and stored
/// webhook payloads; returns how many of each were rewritten. Alerts and deliveries are read
/// whole, a page at a time: erasures are rare, monitoring tables small next to the ledger.
async fn redact_monitoring(state: &AppState, tenant: &str, values: &[String]) -> Result<(u64, u64), ApiError> {
    if values.is_empty() {
        return Ok((0, 0));
    }
    let filter = veritrail_store::AlertFilter::default();
    let (mut alerts, mut deliveries) = (0, 0);
    let mut before = None;
    loop {
        let page = state.alerts.alerts(tenant, &filter, before, REDACT_PAGE).await?;
        for alert in &page {
            let mut group_key = alert.group_key.clone();
            let grouped = redact_json(&mut group_key, values);
            let summary = redact_text(&alert.summary, values);
            let note = alert.status_note.as_deref().and_then(|note| redact_text(note, values));
            if grouped || summary.is_some() || note.is_some() {
                let summary = summary.unwrap_or_else(|| alert.summary.clone());
                let note = note.or_else(|| alert.status_note.clone());
                alerts += u64::from(state.alerts.rewrite_alert(tenant, &alert.id, group_key, summary, note).await?);
            }
        }
        match page.last() {
            Some(last) if page.len() == REDACT_PAGE as usize => before = Some(last.position),
            _ => break,
        }
    }
    for endpoint in state.alerts.webhooks(tenant).await? {
        let mut before = None;
        loop {
            let page = state.alerts.deliveries(tenant, &endpoint.id, None, before, REDACT_PAGE).await?;
            for delivery in &page {
                let Ok(mut payload) = serde_json::from_str::<Value>(&delivery.payload) else { continue };
                if redact_json(&mut payload, values) {
                    let payload = payload.to_string();
                    let rewritten =
                        state.alerts.rewrite_delivery(tenant, &endpoint.id, &delivery.message_id, payload).await?;
                    deliveries += u64::from(rewritten);
                }
            }
            match page.last() {
                Some(last) if page.len() == REDACT_PAGE as usize => before = Some(last.position),
                _ => break,
            }
        }
    }
    Ok((alerts, deliveries))
}

fn labels(view: &Value) -> Vec<&str> {
    view["sensitivity"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// The subject's own personal fields of one event (other people's data left out, Art. 15(4)).
fn subject_copy(view: &Value, subject: &str, include_accessors: bool) -> Value {
    let as_actor = view["actor"]["id"] == subject;
    let mut copy = json!({
        "id": view["id"],
        "seq": view["seq"],
        "occurred_at": view["occurred_at"],
        "action": view["action"],
        "outcome": view["outcome"],
        "role": if as_actor { "actor" } else { "data_subject" },
    });
    for field in ["resource", "targets", "reason", "sensitivity"] {
        if !view[field].is_null() {
            copy[field] = view[field].clone();
        }
    }
    if as_actor {
        copy["actor"] = view["actor"].clone();
        for field in ["ip", "user_agent", "location"] {
            if !view["context"][field].is_null() {
                copy["context"][field] = view["context"][field].clone();
            }
        }
    } else if include_accessors {
        copy["accessor"] =
            json!({"id": view["actor"]["id"], "type": view["actor"]["type"], "name": view["actor"]["name"]});
    } else {
        copy["accessor"] = json!({"type": view["actor"]["type"], "roles": view["actor"]["roles"]});
    }
    if view["data_subject"] == subject && !view["changes"].is_null() {
        copy["changes"] = view["changes"].clone();
    }
    let about_subject = view["data_subject"] == subject || (as_actor && view["data_subject"].is_null());
    if about_subject && !view[veritrail_model::PERSONAL_FIELDS_MEMBER].is_null() {
        copy["metadata"] = view["metadata"].clone();
        copy[veritrail_model::PERSONAL_FIELDS_MEMBER] = view[veritrail_model::PERSONAL_FIELDS_MEMBER].clone();
    }
    copy
}

/// The consent state per purpose, folded over `consent.granted|revoked` events in ledger order.
fn fold_consents(events: &[Value]) -> Vec<Value> {
    let mut state: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    for event in events {
        let status = match event["action"].as_str() {
            Some("consent.granted") => "granted",
            Some("consent.revoked") => "revoked",
            _ => continue,
        };
        let consent = &event["metadata"]["consent"];
        let purposes: Vec<String> = consent["purposes"]
            .as_array()
            .map(|p| p.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        for purpose in purposes {
            state.insert(
                purpose.clone(),
                json!({
                    "purpose": purpose,
                    "status": status,
                    "since": event["occurred_at"],
                    "consent_id": consent["consent_id"],
                    "legal_basis": consent["legal_basis"],
                    "notice_version": consent["notice_version"],
                    "method": consent["method"],
                    "event": {"id": event["id"], "seq": event["seq"], "leaf_hash": event["leaf_hash"]},
                }),
            );
        }
    }
    state.into_values().collect()
}

/// `GET /v1/subjects/{subject_id}/export`: the Art. 15 subject access report.
pub(crate) async fn export(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    Path(subject): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::SubjectsManage)?;
    validate_subject(&subject)?;
    let settings = json_setting(&state, &setting_name("settings", &key.tenant, None)).await?;
    let include_accessors = settings["dsar_include_accessors"] == json!(true);
    let (events, truncated) = subject_events(&state, &key.tenant, &subject, &[], MAX_REPORT_EVENTS).await?;
    let mut purposes = std::collections::BTreeSet::new();
    let mut categories = std::collections::BTreeSet::new();
    let mut recipients = Vec::new();
    let mut consultations = Vec::new();
    let mut automated = Vec::new();
    let mut requests = Vec::new();
    for view in &events {
        for value in [&view["reason"], &view["metadata"]["purpose_category"], &view["metadata"]["legal_basis"]] {
            if let Some(text) = value.as_str() {
                purposes.insert(text.to_string());
            }
        }
        for label in labels(view) {
            categories.insert(format!("sensitivity: {label}"));
        }
        if let Some(paths) = view[veritrail_model::PERSONAL_FIELDS_MEMBER].as_array() {
            for path in paths.iter().filter_map(Value::as_str) {
                categories.insert(format!("declared by the tenant: {path}"));
            }
        }
        let as_actor = view["actor"]["id"] == subject.as_str();
        if as_actor {
            for (path, category) in [("name", "identity (name)"), ("email", "contact details (e-mail address)")] {
                if !view["actor"][path].is_null() {
                    categories.insert(category.to_string());
                }
            }
            for (path, category) in [
                ("ip", "online identifiers (IP address)"),
                ("user_agent", "device information (user agent)"),
                ("location", "location"),
            ] {
                if !view["context"][path].is_null() {
                    categories.insert(category.to_string());
                }
            }
        }
        let action = view["action"].as_str().unwrap_or_default();
        if matches!(action, "disclosure.made" | "data.exported") && !view["metadata"]["disclosure"].is_null() {
            recipients.push(json!({
                "recipient": view["metadata"]["disclosure"]["recipient"],
                "purpose": view["metadata"]["disclosure"]["purpose_category"],
                "occurred_at": view["occurred_at"],
            }));
        }
        if !as_actor && ACCESS_ACTIONS.contains(&action) {
            let mut entry = json!({
                "occurred_at": view["occurred_at"],
                "operation": action,
                "purpose": view["reason"].as_str().or(view["metadata"]["purpose_category"].as_str()),
                "accessor_role": {"type": view["actor"]["type"], "roles": view["actor"]["roles"]},
            });
            if include_accessors {
                entry["accessor"] = json!({"id": view["actor"]["id"], "name": view["actor"]["name"]});
            }
            consultations.push(entry);
        }
        if action.starts_with("ai.") {
            automated.push(json!({"occurred_at": view["occurred_at"], "action": action, "metadata": view["metadata"]}));
        }
    }
    // Earlier rights requests are the server's own events; they name the subject in metadata.
    for action in ["audit.dsar.completed", "audit.erasure.performed"] {
        let pairs = [("action".to_string(), action.to_string()), ("metadata.subject".to_string(), subject.clone())];
        let (query, mut page) = parse_params(&pairs)?;
        page.limit = veritrail_query::MAX_LIMIT;
        page.order = Order::Asc;
        let result = state.store.query(&key.tenant, &query, &page).await?;
        for stored in &result.events {
            let view = event_json(stored)?;
            requests.push(json!({"action": action, "occurred_at": view["occurred_at"], "seq": stored.seq}));
        }
    }
    let hold = legal_hold(&state, &key.tenant, &subject).await?;
    let personal_data: Vec<Value> = events.iter().map(|view| subject_copy(view, &subject, include_accessors)).collect();
    let period = json!({
        "from": events.first().map(|e| e["occurred_at"].clone()),
        "to": events.last().map(|e| e["occurred_at"].clone()),
    });
    let report = json!({
        "report": "GDPR Art. 15 subject access",
        "subject": subject,
        "generated_at": jiff::Timestamp::now().to_string(),
        "confirmation": {"processed": !events.is_empty(), "period": period, "identifiers_matched": [subject], "events": events.len()},
        "personal_data": personal_data,
        "purposes": purposes,
        "categories": categories,
        "recipients": recipients,
        "storage_period": {
            "criteria": "Audit records are kept as tamper-evident evidence for the tenant's retention period; personal values in them can be erased on request (crypto-shredding) unless a legal hold or a longer legal retention obligation applies.",
            "legal_hold": hold.is_some(),
        },
        "rights": [
            "rectification (Art. 16)", "erasure (Art. 17)", "restriction of processing (Art. 18)",
            "data portability (Art. 20)", "objection (Art. 21)",
            "lodging a complaint with a supervisory authority (Art. 77)",
        ],
        "automated_decisions": automated,
        "consultation_log": consultations,
        "consents": fold_consents(&events),
        "rights_requests": requests,
        "redactions": if include_accessors { "other people's personal data removed (Art. 15(4)); accessor identities disclosed by tenant setting" } else { "other people's personal data and accessor identities removed (Art. 15(4), CJEU C-579/21)" },
        "truncated": truncated,
    });
    let metadata = json!({"subject": subject, "events": events.len(), "truncated": truncated});
    audit::record(&state, &key.tenant, "audit.dsar.completed", key.actor_json(), metadata, &request).await?;
    Ok(Json(report))
}

/// `GET /v1/subjects/{subject_id}/consents`: current consent per purpose, each with the event
/// that set it and its inclusion proof in the latest signed checkpoint.
pub(crate) async fn consents(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    Path(subject): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::EventsRead)?;
    validate_subject(&subject)?;
    let (views, _) = subject_events(&state, &key.tenant, &subject, &[("action", "consent.*")], usize::MAX).await?;
    let mut consents = fold_consents(&views);
    let checkpoint = crate::ledger::issue_checkpoint(&state, &key.tenant).await?;
    for consent in &mut consents {
        let Some(seq) = consent["event"]["seq"].as_u64() else { continue };
        if seq < checkpoint.size {
            let proof = crate::ledger::inclusion_proof(&state, &key.tenant, seq, checkpoint.size).await?;
            consent["event"]["inclusion_proof"] =
                json!({"tree_size": checkpoint.size, "hashes": crate::ledger::encode_hashes(&proof)});
        }
    }
    let metadata = json!({"subject": subject, "consents": consents.len()});
    audit::record(&state, &key.tenant, "audit.read", key.actor_json(), metadata, &request).await?;
    Ok(Json(json!({"subject": subject, "consents": consents, "checkpoint": checkpoint.note})))
}

/// `PUT /v1/subjects/{subject_id}/legal-hold` `{"reason"}`: blocks erasure until released.
pub(crate) async fn place_hold(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: axum::http::HeaderMap,
    Path(subject): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::SubjectsManage)?;
    validate_subject(&subject)?;
    require_json(&headers)?;
    let reason = JsonObject::parse(&body, &["reason"])?.string("reason")?;
    if reason.trim().is_empty() || reason.chars().count() > 1000 {
        return Err(ApiError::new(Code::InvalidValue, "field \"reason\" must be 1-1000 characters"));
    }
    let hold = json!({
        "active": true,
        "reason": reason,
        "placed_at": jiff::Timestamp::now().to_string(),
        "placed_by": key.actor_json()["id"],
    });
    // Placed first, then recorded: the event's place in the ledger is after any erasure that
    // ran before the hold (whose claim it waited for), and a failed recording leaves the
    // subject protected rather than exposed.
    put_hold(&state, &key.tenant, &subject, &hold).await?;
    let metadata = json!({"subject": subject, "reason": reason});
    audit::record(&state, &key.tenant, "audit.legal_hold.placed", key.actor_json(), metadata, &request).await?;
    Ok(Json(json!({"subject": subject, "legal_hold": hold})))
}

/// `DELETE /v1/subjects/{subject_id}/legal-hold`: releases the hold.
pub(crate) async fn release_hold(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    Path(subject): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::SubjectsManage)?;
    validate_subject(&subject)?;
    if legal_hold(&state, &key.tenant, &subject).await?.is_none() {
        return Err(ApiError::not_found("no legal hold on this subject"));
    }
    let released = json!({"active": false, "released_at": jiff::Timestamp::now().to_string()});
    put_json_setting(&state, &setting_name("legal_hold", &key.tenant, Some(&subject)), &released).await?;
    let metadata = json!({"subject": subject});
    audit::record(&state, &key.tenant, "audit.legal_hold.released", key.actor_json(), metadata, &request).await?;
    Ok(Json(json!({"subject": subject, "legal_hold": released})))
}

/// `GET /v1/privacy/settings`.
pub(crate) async fn get_settings(State(state): State<AppState>, principal: Principal) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::SubjectsManage)?;
    let settings = json_setting(&state, &setting_name("settings", &key.tenant, None)).await?;
    Ok(Json(json!({
        "dsar_include_accessors": settings["dsar_include_accessors"] == json!(true),
        "justification": settings["justification"],
    })))
}

/// `PUT /v1/privacy/settings` `{"dsar_include_accessors", "justification"}`: whether subject
/// access reports name who accessed the subject's data (off by default, CJEU C-579/21); turning
/// it on needs a recorded justification.
pub(crate) async fn put_settings(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::SubjectsManage)?;
    require_json(&headers)?;
    let fields = JsonObject::parse(&body, &["dsar_include_accessors", "justification"])?;
    let include = match fields.present("dsar_include_accessors") {
        Some(Value::Bool(include)) => *include,
        Some(_) => return Err(ApiError::new(Code::WrongType, "field \"dsar_include_accessors\" must be a boolean")),
        None => return Err(ApiError::new(Code::MissingField, "field \"dsar_include_accessors\" is required")),
    };
    let justification = fields.optional_string("justification")?;
    if include && justification.as_deref().is_none_or(|j| j.trim().is_empty()) {
        return Err(ApiError::new(
            Code::MissingField,
            "field \"justification\" is required to disclose accessor identities",
        ));
    }
    let settings = json!({"dsar_include_accessors": include, "justification": justification});
    let metadata = json!({"setting": "privacy", "new": settings});
    audit::record(&state, &key.tenant, "config.updated", key.actor_json(), metadata, &request).await?;
    put_json_setting(&state, &setting_name("settings", &key.tenant, None), &settings).await?;
    Ok(Json(settings))
}

/// `POST /v1/platform/master-key/rotate` (bootstrap token): a new master key while serving.
/// Every data key and installation secret is re-wrapped under it; no record changes. Recorded
/// in every tenant's ledger as `audit.key.rotated` (the key's public id only).
pub(crate) async fn rotate_master_key(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
) -> Result<Json<Value>, ApiError> {
    principal.require_platform("rotating the master key")?;
    let key_id = state.store.rotate_master_key().await?;
    let actor = audit::platform_actor();
    let metadata = json!({"key": "master", "key_id": key_id});
    for tenant in state.store.tenants().await? {
        audit::record(&state, &tenant.id, "audit.key.rotated", actor.clone(), metadata.clone(), &request).await?;
    }
    Ok(Json(json!({"key_id": key_id})))
}

/// Most fields a tenant may classify.
const MAX_CLASSIFIED: usize = 100;

/// `GET /v1/privacy/classification`.
pub(crate) async fn get_classification(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::SubjectsManage)?;
    let stored = json_setting(&state, &crate::privacy::classification_setting(&key.tenant)).await?;
    Ok(Json(json!({"fields": stored.get("fields").cloned().unwrap_or_else(|| json!({}))})))
}

/// `PUT /v1/privacy/classification` `{"fields": {"metadata.<path>": "pii"|"phi"|"pci"}}`: the
/// tenant's own personal fields, committed and encrypted like the built-in ones in every event
/// ingested from now on (events already sealed keep their form).
pub(crate) async fn put_classification(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let key = principal.tenant_key()?;
    key.require(Permission::SubjectsManage)?;
    require_json(&headers)?;
    let fields = JsonObject::parse(&body, &["fields"])?;
    let Some(Value::Object(map)) = fields.present("fields") else {
        return Err(ApiError::new(Code::WrongType, "field \"fields\" must be an object of path: category"));
    };
    if map.len() > MAX_CLASSIFIED {
        return Err(ApiError::new(Code::TooMany, format!("at most {MAX_CLASSIFIED} classified fields")));
    }
    for (path, category) in map {
        veritrail_model::validate_personal_path(path)
            .map_err(|e| ApiError::new(Code::InvalidValue, format!("field \"fields\": {e}")))?;
        if !matches!(category.as_str(), Some("pii" | "phi" | "pci")) {
            return Err(ApiError::new(
                Code::InvalidValue,
                format!("field \"fields\": category of {path:?} must be \"pii\", \"phi\" or \"pci\""),
            ));
        }
    }
    let classification = json!({"fields": map});
    let metadata = json!({"setting": "privacy.classification", "new": classification});
    audit::record(&state, &key.tenant, "config.updated", key.actor_json(), metadata, &request).await?;
    put_json_setting(&state, &crate::privacy::classification_setting(&key.tenant), &classification).await?;
    state.classification.forget(&key.tenant);
    Ok(Json(classification))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_erasure_claim_lapses_after_a_while() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let claim = |seconds_ago: i64| {
            let since = now.checked_sub(jiff::SignedDuration::from_secs(seconds_ago)).unwrap();
            json!({"active": false, "erasing": {"since": since.to_string()}})
        };
        assert!(erasure_claimed(&claim(0), now));
        assert!(erasure_claimed(&claim(299), now));
        assert!(erasure_claimed(&claim(-30), now), "a node's clock a little ahead");
        assert!(!erasure_claimed(&claim(301), now), "left by a node that stopped mid-erasure");
        assert!(!erasure_claimed(&json!({"active": false}), now));
        assert!(!erasure_claimed(&json!({"erasing": {"since": "yesterday"}}), now));
        assert!(!erasure_claimed(&Value::Null, now));
    }

    #[test]
    fn an_erased_subjects_own_values_are_cut_out_of_monitoring_text() {
        let events = [
            json!({"actor": {"id": "alice", "name": "Alice Liddell", "email": "alice@wonder.example"},
                   "context": {"ip": "198.51.100.23", "user_agent": "UA"}}),
            json!({"actor": {"id": "bob", "email": "bob@clinic.example"}, "context": {"ip": "203.0.113.99"},
                   "data_subject": "alice", "changes": {"after": {"note": "chronic teapot"}},
                   "metadata": {"patient": {"dob": "1852-05-04"}, "ward": "B"},
                   veritrail_model::PERSONAL_FIELDS_MEMBER: ["metadata.patient.dob"]}),
        ];
        let values = personal_values(&events, "alice");
        // Her own fields and the data about her; not bob's, not unclassified metadata, not
        // values too short to identify anyone; longest first.
        assert_eq!(
            values,
            ["alice@wonder.example", "chronic teapot", "198.51.100.23", "Alice Liddell", "1852-05-04"]
                .map(String::from)
        );
        let summary = "for actor.id=alice, context.ip=198.51.100.23 (Alice Liddell, UA)";
        assert_eq!(
            redact_text(summary, &values).as_deref(),
            Some("for actor.id=alice, context.ip=[erased] ([erased], UA)")
        );
        assert_eq!(redact_text("nothing here", &values), None);
        let mut payload = json!({"data": {"group_key": {"context.ip": "198.51.100.23"}, "ids": ["alice", 7]}});
        assert!(redact_json(&mut payload, &values));
        assert_eq!(payload, json!({"data": {"group_key": {"context.ip": "[erased]"}, "ids": ["alice", 7]}}));
        assert!(!redact_json(&mut payload, &values));
        assert!(personal_values(&events, "carol").is_empty());
    }

    use super::*;

    #[test]
    fn consents_fold_in_ledger_order_per_purpose() {
        let event = |seq: u64, action: &str, purposes: &[&str]| {
            json!({"id": format!("e{seq}"), "seq": seq, "action": action, "occurred_at": "t",
                   "metadata": {"consent": {"purposes": purposes, "consent_id": "c"}}})
        };
        let folded = fold_consents(&[
            event(1, "consent.granted", &["marketing", "analytics"]),
            event(2, "consent.revoked", &["marketing"]),
            event(3, "data.read", &["analytics"]),
        ]);
        assert_eq!(folded.len(), 2);
        assert_eq!(folded[0]["purpose"], "analytics");
        assert_eq!(folded[0]["status"], "granted");
        assert_eq!(folded[1]["purpose"], "marketing");
        assert_eq!(folded[1]["status"], "revoked");
        assert_eq!(folded[1]["event"]["seq"], 2);
    }

    #[test]
    fn subject_copy_leaves_out_other_peoples_data() {
        let view = json!({"id": "e", "seq": 1, "action": "data.read", "actor": {"id": "doc", "type": "user",
            "name": "Dr Who", "email": "who@h.org"}, "context": {"ip": "10.0.0.1"}, "data_subject": "p-1",
            "changes": {"after": {"x": 1}}});
        let copy = subject_copy(&view, "p-1", false);
        assert_eq!(copy["role"], "data_subject");
        assert!(copy.get("actor").is_none());
        assert!(copy["accessor"].get("name").is_none());
        assert!(copy.to_string().find("who@h.org").is_none());
        assert!(copy.to_string().find("10.0.0.1").is_none());
        assert_eq!(copy["changes"]["after"]["x"], 1);
        let disclosed = subject_copy(&view, "p-1", true);
        assert_eq!(disclosed["accessor"]["name"], "Dr Who");
        let own = subject_copy(&view, "doc", false);
        assert_eq!(own["actor"]["email"], "who@h.org");
        assert!(own.get("changes").is_none());
    }

    #[test]
    fn subject_ids_are_validated() {
        assert!(validate_subject("patient-7").is_ok());
        assert!(validate_subject("").is_err());
        assert!(validate_subject("a\nb").is_err());
        assert!(validate_subject(&"x".repeat(300)).is_err());
    }
}
