//! Validation of one event object against the schema (SPEC §2). See the crate README for the
//! rules in prose.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::Value;

use crate::error::{ValidationError, ValidationErrorKind};
use crate::event::{Actor, Changes, Context, Event, Resource};
use crate::fields::{Fields, Result, as_str, check_nonempty, index_path, invalid, not_one_of, wrong_type};
use crate::json::{check_values, serialized_len};
use crate::limits::*;
use crate::metadata::validate_metadata;
use crate::time;
use crate::vocabulary::{ActorType, Channel, Outcome, Sensitivity};

#[cfg(test)]
mod tests;

const EVENT_FIELDS: &[&str] = &[
    "id",
    "action",
    "occurred_at",
    "actor",
    "resource",
    "targets",
    "outcome",
    "reason",
    "context",
    "changes",
    "data_subject",
    "sensitivity",
    "metadata",
];
const ACTOR_FIELDS: &[&str] = &["id", "type", "name", "email", "roles"];
const RESOURCE_FIELDS: &[&str] = &["type", "id", "name"];
const CONTEXT_FIELDS: &[&str] = &["ip", "user_agent", "location", "session_id", "request_id", "channel", "endpoint"];
const CHANGES_FIELDS: &[&str] = &["before", "after"];

const ACTOR_TYPES: &[&str] = &["user", "service", "api_key", "ai_agent", "system", "anonymous"];
const OUTCOMES: &[&str] = &["success", "failure", "denied"];
const CHANNELS: &[&str] = &["ui", "api", "workflow", "system"];
const SENSITIVITIES: &[&str] = &["pii", "phi", "pci", "secret", "confidential"];

/// Validates one parsed event object and builds the typed [`Event`].
///
/// Checks, in order: the value is an object; its compact serialization fits
/// `limits.max_event_bytes`; nesting depth, NUL characters and number ranges everywhere;
/// then the schema field by field.
pub fn validate_event(value: &Value, limits: &Limits) -> std::result::Result<Event, ValidationError> {
    if !value.is_object() {
        return Err(wrong_type("", "a json object"));
    }
    let size = serialized_len(value);
    if size > limits.max_event_bytes {
        return Err(ValidationError::new(
            ValidationErrorKind::TooLarge,
            "",
            format!("event is {size} bytes, more than the limit of {} bytes", limits.max_event_bytes),
        ));
    }
    check_values(value, limits)?;
    let event = Fields::open(value, String::new(), EVENT_FIELDS)?;
    Ok(Event {
        id: event_id(&event)?,
        action: action(&event)?,
        occurred_at: occurred_at(&event)?,
        actor: actor(&event)?,
        resource: resource(&event)?,
        targets: targets(&event)?,
        outcome: event.optional_choice("outcome", Outcome::parse, OUTCOMES)?.unwrap_or(Outcome::Success),
        reason: owned(event.optional_text("reason", MAX_REASON_CHARS)?),
        context: context(&event)?,
        changes: changes(&event)?,
        data_subject: owned(event.optional_nonempty("data_subject", MAX_DATA_SUBJECT_CHARS)?),
        sensitivity: sensitivity(&event)?,
        metadata: validate_metadata(event.get("metadata"), limits)?,
    })
}

fn owned(text: Option<&str>) -> Option<String> {
    text.map(str::to_owned)
}

/// `id`: 1–128 characters of `[A-Za-z0-9._:@/_-]`, starting with a letter or digit.
fn event_id(event: &Fields<'_>) -> Result<Option<String>> {
    let Some(id) = event.optional_nonempty("id", MAX_ID_CHARS)? else {
        return Ok(None);
    };
    if !is_valid_event_id(id) {
        return Err(invalid(
            "id",
            "field \"id\" must start with a letter or digit and contain only letters, digits \
             and . _ : @ / -"
                .to_owned(),
        ));
    }
    Ok(Some(id.to_owned()))
}

/// True for a syntactically valid event id (length not checked).
pub(crate) fn is_valid_event_id(id: &str) -> bool {
    let mut chars = id.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if !first.is_ascii_alphanumeric() {
        return false;
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '/' | '-'))
}

/// `action`: `^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`, at most 128 characters.
fn action(event: &Fields<'_>) -> Result<String> {
    let action = event.required_nonempty("action", MAX_ACTION_CHARS)?;
    if !is_valid_action(action) {
        return Err(invalid(
            "action",
            "field \"action\" must be two or more dot-separated lowercase segments, each \
             starting with a letter, e.g. \"data.updated\""
                .to_owned(),
        ));
    }
    Ok(action.to_owned())
}

/// True when `action` matches `^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`.
pub(crate) fn is_valid_action(action: &str) -> bool {
    let mut segments = 0;
    for segment in action.split('.') {
        let mut chars = segment.chars();
        let starts_with_letter = matches!(chars.next(), Some('a'..='z'));
        if !starts_with_letter || !chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_')) {
            return false;
        }
        segments += 1;
    }
    segments >= 2
}

/// `occurred_at`: RFC 3339 with an offset, years 1970–9999 in UTC.
fn occurred_at(event: &Fields<'_>) -> Result<Option<jiff::Timestamp>> {
    let Some(value) = event.get("occurred_at") else {
        return Ok(None);
    };
    let text = as_str(value, "occurred_at")?;
    let Some(timestamp) = time::parse_rfc3339(text) else {
        return Err(invalid(
            "occurred_at",
            "field \"occurred_at\" must be an rfc 3339 timestamp with an offset, e.g. \
             \"2026-01-15T14:32:11.234Z\""
                .to_owned(),
        ));
    };
    let year = time::utc_year(timestamp);
    if !(MIN_OCCURRED_YEAR..=MAX_OCCURRED_YEAR).contains(&year) {
        return Err(invalid(
            "occurred_at",
            format!(
                "field \"occurred_at\" must be between years {MIN_OCCURRED_YEAR} and \
                 {MAX_OCCURRED_YEAR} in utc"
            ),
        ));
    }
    Ok(Some(timestamp))
}

fn actor(event: &Fields<'_>) -> Result<Actor> {
    let value = event.required("actor")?;
    let actor = Fields::open(value, "actor".to_owned(), ACTOR_FIELDS)?;
    let id = actor.required_nonempty("id", MAX_ACTOR_ID_CHARS)?;
    let actor_type = actor.optional_choice("type", ActorType::parse, ACTOR_TYPES)?.unwrap_or(ActorType::User);
    let name = actor.optional_text("name", MAX_ACTOR_NAME_CHARS)?;
    let email = actor.optional_text("email", MAX_EMAIL_CHARS)?;
    if let Some(email) = email {
        check_email(email)?;
    }
    let mut roles = Vec::new();
    for (index, role) in actor.optional_array("roles", MAX_ROLES)?.iter().enumerate() {
        let path = index_path("actor.roles", index);
        let role = as_str(role, &path)?;
        check_nonempty(role, &path, MAX_ROLE_CHARS)?;
        roles.push(role.to_owned());
    }
    Ok(Actor { id: id.to_owned(), actor_type, name: owned(name), email: owned(email), roles })
}

/// `actor.email`: exactly one `@`, with something on both sides.
pub(crate) fn check_email(email: &str) -> Result<()> {
    let mut parts = email.split('@');
    let local = parts.next().unwrap_or("");
    let domain = parts.next();
    let well_formed = match (domain, parts.next()) {
        (Some(domain), None) => !local.is_empty() && !domain.is_empty(),
        _ => false,
    };
    if well_formed {
        return Ok(());
    }
    Err(invalid("actor.email", "field \"actor.email\" must contain exactly one @ with text on both sides".to_owned()))
}

fn resource(event: &Fields<'_>) -> Result<Option<Resource>> {
    match event.get("resource") {
        Some(value) => Ok(Some(resource_at(value, "resource".to_owned())?)),
        None => Ok(None),
    }
}

fn targets(event: &Fields<'_>) -> Result<Vec<Resource>> {
    let mut targets = Vec::new();
    for (index, value) in event.optional_array("targets", MAX_TARGETS)?.iter().enumerate() {
        targets.push(resource_at(value, index_path("targets", index))?);
    }
    Ok(targets)
}

fn resource_at(value: &Value, path: String) -> Result<Resource> {
    let resource = Fields::open(value, path, RESOURCE_FIELDS)?;
    let resource_type = resource.required_nonempty("type", MAX_RESOURCE_TYPE_CHARS)?;
    let id = resource.required_nonempty("id", MAX_RESOURCE_ID_CHARS)?;
    let name = resource.optional_text("name", MAX_RESOURCE_NAME_CHARS)?;
    Ok(Resource { resource_type: resource_type.to_owned(), id: id.to_owned(), name: owned(name) })
}

fn context(event: &Fields<'_>) -> Result<Option<Context>> {
    let Some(value) = event.get("context") else {
        return Ok(None);
    };
    let fields = Fields::open(value, "context".to_owned(), CONTEXT_FIELDS)?;
    let context = Context {
        ip: ip_address(&fields)?,
        user_agent: owned(fields.optional_text("user_agent", MAX_USER_AGENT_CHARS)?),
        location: owned(fields.optional_text("location", MAX_LOCATION_CHARS)?),
        session_id: owned(fields.optional_text("session_id", MAX_CORRELATION_ID_CHARS)?),
        request_id: owned(fields.optional_text("request_id", MAX_CORRELATION_ID_CHARS)?),
        channel: fields.optional_choice("channel", Channel::parse, CHANNELS)?,
        endpoint: owned(fields.optional_text("endpoint", MAX_ENDPOINT_CHARS)?),
    };
    if context.is_empty() {
        return Ok(None);
    }
    Ok(Some(context))
}

fn ip_address(context: &Fields<'_>) -> Result<Option<IpAddr>> {
    let Some(value) = context.get("ip") else {
        return Ok(None);
    };
    let text = as_str(value, "context.ip")?;
    match text.parse::<IpAddr>() {
        Ok(ip) => Ok(Some(ip)),
        Err(_) => Err(invalid("context.ip", "field \"context.ip\" is not a valid ipv4 or ipv6 address".to_owned())),
    }
}

fn changes(event: &Fields<'_>) -> Result<Option<Changes>> {
    let Some(value) = event.get("changes") else {
        return Ok(None);
    };
    let fields = Fields::open(value, "changes".to_owned(), CHANGES_FIELDS)?;
    let before = fields.get_raw("before").cloned();
    let after = fields.get_raw("after").cloned();
    if before.is_none() && after.is_none() {
        return Ok(None);
    }
    Ok(Some(Changes { before, after }))
}

fn sensitivity(event: &Fields<'_>) -> Result<BTreeSet<Sensitivity>> {
    let mut labels = BTreeSet::new();
    let items = event.optional_array("sensitivity", usize::MAX)?;
    for (index, item) in items.iter().enumerate() {
        let path = index_path("sensitivity", index);
        let text = as_str(item, &path)?;
        match Sensitivity::parse(text) {
            Some(label) => {
                labels.insert(label);
            }
            None => return Err(not_one_of(&path, SENSITIVITIES)),
        }
    }
    Ok(labels)
}
