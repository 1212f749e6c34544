//! The fast path of event validation: one pass of `serde` over borrowed structs instead of a
//! `serde_json::Value` tree, for events that are valid.
//!
//! It answers only "valid, and here is the [`Event`]" or "not sure" (`None`). On `None` the
//! caller runs the reference path ([`crate::validate::validate_event`] over
//! [`crate::json::parse_strict`]), which also writes every error message. The one property
//! this module must keep, checked by the tests: whenever it returns an event, the reference
//! path accepts the same text and returns the same event.
//!
//! Why each reference check holds when this path accepts:
//! - duplicate or unknown members and wrong types make `serde` fail (derive with
//!   `deny_unknown_fields`; free-form JSON goes through the same strict parser);
//! - `null` reads as absent exactly where the reference treats it so (`Option` fields), and is
//!   kept inside `changes` (see [`present`]);
//! - depth, NUL and number checks run on `metadata` and `changes` at their depth in the event;
//!   the schema's own strings are checked for NUL here, and its own nesting is 3 levels;
//! - size: the schema part of an event never serializes longer than it was sent (compact JSON
//!   drops whitespace, and every escape the sender had to write is at least as long as its
//!   output), so the raw length with `metadata` and `changes` replaced by their serialized
//!   length bounds the reference's measure from above.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::event::{Actor, Changes, Context, Event, Resource};
use crate::fields::{check_max_chars, check_nonempty};
use crate::json::{check_values_at, parse_strict, serialized_len};
use crate::limits::*;
use crate::metadata::validate_owned_metadata;
use crate::time;
use crate::validate::{check_email, is_valid_action, is_valid_event_id};
use crate::vocabulary::{ActorType, Channel, Outcome, Sensitivity};

/// Nesting of the schema itself: event → `targets` → target.
const SCHEMA_DEPTH: usize = 3;
/// Above this `max_depth` a body-level parse could refuse what an element-level parse accepts
/// (serde_json's own limit is 128 levels), so the fast path steps aside.
pub(crate) const MAX_FAST_DEPTH: usize = 100;

/// The validated event in `text` (one JSON object, nothing around it but whitespace), or `None`
/// when the reference path must decide.
pub(crate) fn event(text: &str, limits: &Limits) -> Option<Event> {
    if !(SCHEMA_DEPTH < limits.max_depth && limits.max_depth <= MAX_FAST_DEPTH) {
        return None;
    }
    let Object(wire): Object<WireEvent<'_>> = serde_json::from_str(text).ok()?;
    let mut size = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n')).len();

    let metadata = match wire.metadata {
        Some(raw) => {
            let value = free_form(raw, "metadata", 2, &mut size, limits)?;
            validate_owned_metadata(value, limits).ok()?
        }
        None => None,
    };
    let changes = match wire.changes {
        Some(Object(changes)) => {
            let before = present_then(changes.before, |raw| free_form(raw, "changes.before", 3, &mut size, limits))?;
            let after = present_then(changes.after, |raw| free_form(raw, "changes.after", 3, &mut size, limits))?;
            (before.is_some() || after.is_some()).then_some(Changes { before, after })
        }
        None => None,
    };
    if size > limits.max_event_bytes {
        return None;
    }

    let occurred_at = present_then(wire.occurred_at, |text| {
        let timestamp = time::parse_rfc3339(text.clean()?)?;
        (MIN_OCCURRED_YEAR..=MAX_OCCURRED_YEAR).contains(&time::utc_year(timestamp)).then_some(timestamp)
    })?;
    let mut sensitivity = BTreeSet::new();
    for label in wire.sensitivity.iter().flatten() {
        sensitivity.insert(Sensitivity::parse(label.clean()?)?);
    }
    let targets: Vec<_> = wire.targets.unwrap_or_default().into_iter().map(|Object(target)| target).collect();
    if targets.len() > MAX_TARGETS {
        return None;
    }
    let id = optional(wire.id, MAX_ID_CHARS, true)?;
    if id.as_deref().is_some_and(|id| !is_valid_event_id(id)) {
        return None;
    }
    Some(Event {
        id,
        action: required(wire.action, MAX_ACTION_CHARS).filter(|action| is_valid_action(action))?,
        occurred_at,
        actor: actor(wire.actor.0)?,
        resource: present_then(wire.resource, |Object(wire)| resource(wire))?,
        targets: targets.into_iter().map(resource).collect::<Option<Vec<_>>>()?,
        outcome: match wire.outcome {
            Some(text) => Outcome::parse(text.clean()?)?,
            None => Outcome::Success,
        },
        reason: optional(wire.reason, MAX_REASON_CHARS, false)?,
        context: present_then(wire.context, |Object(wire)| context(wire))?.flatten(),
        changes,
        data_subject: optional(wire.data_subject, MAX_DATA_SUBJECT_CHARS, true)?,
        sensitivity,
        metadata,
    })
}

/// Parses and checks free-form JSON found at `path`, `depth` levels down in the event, and
/// replaces its raw length in `size` by its serialized length.
fn free_form(raw: &RawValue, path: &str, depth: usize, size: &mut usize, limits: &Limits) -> Option<Value> {
    let value = parse_strict(raw.get()).ok()?;
    let mut path = path.to_owned();
    check_values_at(&value, &mut path, depth, limits).ok()?;
    *size = (*size - raw.get().len()).checked_add(serialized_len(&value))?;
    Some(value)
}

fn actor(wire: WireActor<'_>) -> Option<Actor> {
    let email = optional(wire.email, MAX_EMAIL_CHARS, false)?;
    if let Some(email) = &email {
        check_email(email).ok()?;
    }
    let roles = wire.roles.unwrap_or_default();
    if roles.len() > MAX_ROLES {
        return None;
    }
    Some(Actor {
        id: required(wire.id, MAX_ACTOR_ID_CHARS)?,
        actor_type: match wire.actor_type {
            Some(text) => ActorType::parse(text.clean()?)?,
            None => ActorType::User,
        },
        name: optional(wire.name, MAX_ACTOR_NAME_CHARS, false)?,
        email,
        roles: roles.into_iter().map(|role| required(role, MAX_ROLE_CHARS)).collect::<Option<Vec<_>>>()?,
    })
}

fn resource(wire: WireResource<'_>) -> Option<Resource> {
    Some(Resource {
        resource_type: required(wire.resource_type, MAX_RESOURCE_TYPE_CHARS)?,
        id: required(wire.id, MAX_RESOURCE_ID_CHARS)?,
        name: optional(wire.name, MAX_RESOURCE_NAME_CHARS, false)?,
    })
}

/// `Some(None)` for a context with nothing in it (the reference drops it too).
fn context(wire: WireContext<'_>) -> Option<Option<Context>> {
    let ip = present_then(wire.ip, |text| text.clean()?.parse().ok())?;
    let context = Context {
        ip,
        user_agent: optional(wire.user_agent, MAX_USER_AGENT_CHARS, false)?,
        location: optional(wire.location, MAX_LOCATION_CHARS, false)?,
        session_id: optional(wire.session_id, MAX_CORRELATION_ID_CHARS, false)?,
        request_id: optional(wire.request_id, MAX_CORRELATION_ID_CHARS, false)?,
        channel: present_then(wire.channel, |text| Channel::parse(text.clean()?))?,
        endpoint: optional(wire.endpoint, MAX_ENDPOINT_CHARS, false)?,
    };
    Some((!context.is_empty()).then_some(context))
}

/// `Some(None)` when absent, `Some(Some(_))` when present and accepted by `accept`, `None`
/// (not sure) when present and not accepted.
fn present_then<T, U>(value: Option<T>, accept: impl FnOnce(T) -> Option<U>) -> Option<Option<U>> {
    match value {
        Some(value) => Some(Some(accept(value)?)),
        None => Some(None),
    }
}

/// A required string of 1 to `max_chars` characters.
fn required(text: Text<'_>, max_chars: usize) -> Option<String> {
    check_nonempty(text.clean()?, "", max_chars).ok()?;
    Some(text.0.into_owned())
}

/// `Some(None)` when absent; `None` (not sure) when present but not acceptable.
fn optional(text: Option<Text<'_>>, max_chars: usize, nonempty: bool) -> Option<Option<String>> {
    let Some(text) = text else {
        return Some(None);
    };
    let clean = text.clean()?;
    let checked = if nonempty { check_nonempty(clean, "", max_chars) } else { check_max_chars(clean, "", max_chars) };
    checked.ok()?;
    Some(Some(text.0.into_owned()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvent<'a> {
    #[serde(borrow)]
    id: Option<Text<'a>>,
    #[serde(borrow)]
    action: Text<'a>,
    #[serde(borrow)]
    occurred_at: Option<Text<'a>>,
    #[serde(borrow)]
    actor: Object<WireActor<'a>>,
    #[serde(borrow)]
    resource: Option<Object<WireResource<'a>>>,
    #[serde(borrow)]
    targets: Option<Vec<Object<WireResource<'a>>>>,
    #[serde(borrow)]
    outcome: Option<Text<'a>>,
    #[serde(borrow)]
    reason: Option<Text<'a>>,
    #[serde(borrow)]
    context: Option<Object<WireContext<'a>>>,
    #[serde(borrow)]
    changes: Option<Object<WireChanges<'a>>>,
    #[serde(borrow)]
    data_subject: Option<Text<'a>>,
    #[serde(borrow)]
    sensitivity: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireActor<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow, rename = "type")]
    actor_type: Option<Text<'a>>,
    #[serde(borrow)]
    name: Option<Text<'a>>,
    #[serde(borrow)]
    email: Option<Text<'a>>,
    #[serde(borrow)]
    roles: Option<Vec<Text<'a>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireResource<'a> {
    #[serde(borrow, rename = "type")]
    resource_type: Text<'a>,
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow)]
    name: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireContext<'a> {
    #[serde(borrow)]
    ip: Option<Text<'a>>,
    #[serde(borrow)]
    user_agent: Option<Text<'a>>,
    #[serde(borrow)]
    location: Option<Text<'a>>,
    #[serde(borrow)]
    session_id: Option<Text<'a>>,
    #[serde(borrow)]
    request_id: Option<Text<'a>>,
    #[serde(borrow)]
    channel: Option<Text<'a>>,
    #[serde(borrow)]
    endpoint: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireChanges<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    before: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    after: Option<&'a RawValue>,
}

/// `changes.before` / `changes.after`: a present `null` is a value ("did not exist").
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// A struct read only from a JSON object: `serde`'s derived structs would also take an array
/// of their fields in order, which the schema does not allow.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = Object<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Object)
    }
}

/// A JSON string, borrowed from the input when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl Text<'_> {
    /// The text, unless it contains NUL (refused everywhere in an event).
    fn clean(&self) -> Option<&str> {
        (!self.0.contains('\0')).then_some(&*self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(value)))
    }
}
