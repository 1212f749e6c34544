//! The fields of a sealed record that backends index for a SQL pre-filter of queries, read with
//! a borrowed, partial parse: it runs for every event, so it skips building the reader's view
//! (no JSON tree, no commitment checks — the final match of a query is still made on the fully
//! opened, verified record with `EventQuery::matches`). Shared by every backend so they index
//! exactly the same values.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::{StoreError, StoreResult};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// The indexed columns of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    /// `occurred_at` in microseconds since the Unix epoch (0 if it does not parse).
    pub occurred_at: i64,
    /// `action`.
    pub action: String,
    /// `actor.id`.
    pub actor_id: String,
    /// `actor.type`.
    pub actor_type: String,
    /// `actor.email`, lowercased; `"[erased]"` when committed but not in the sidecar.
    pub actor_email: Option<String>,
    /// `outcome`.
    pub outcome: String,
    /// `context.ip`; `"[erased]"` when committed but not in the sidecar.
    pub ip: Option<String>,
    /// `context.channel`.
    pub channel: Option<String>,
    /// `data_subject`.
    pub data_subject: Option<String>,
    /// `(type, id)` of the primary resource and of every target.
    pub resources: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct Sealed<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow)]
    occurred_at: Cow<'a, str>,
    #[serde(borrow)]
    actor: Actor<'a>,
    #[serde(borrow)]
    outcome: Cow<'a, str>,
    #[serde(borrow, default)]
    context: Option<Context<'a>>,
    #[serde(borrow, default)]
    data_subject: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    resource: Option<Resource<'a>>,
    #[serde(borrow, default)]
    targets: Vec<Resource<'a>>,
}

#[derive(Deserialize)]
struct Actor<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(default)]
    email: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Context<'a> {
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(default)]
    ip: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Resource<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Sidecar<'a> {
    #[serde(borrow)]
    fields: HashMap<Cow<'a, str>, Field<'a>>,
}

#[derive(Deserialize)]
struct Field<'a> {
    #[serde(borrow)]
    value: &'a RawValue,
}

/// A personal string field: its clear value from the sidecar, `"[erased]"` when the sealed
/// record commits to one that the sidecar no longer holds (as readers see it), `None` when the
/// event had none.
fn personal_text(present: bool, sidecar: Option<&Sidecar<'_>>, path: &str) -> Option<String> {
    if !present {
        return None;
    }
    let value = sidecar
        .and_then(|s| s.fields.get(path))
        .and_then(|field| serde_json::from_str::<String>(field.value.get()).ok());
    Some(value.unwrap_or_else(|| veritrail_model::ERASED.to_string()))
}

impl IndexRow {
    /// Extracts the index columns of a sealed record and its personal sidecar. A sidecar that
    /// does not parse is treated as erased.
    pub fn of(sealed: &[u8], personal: Option<&[u8]>) -> StoreResult<IndexRow> {
        let record: Sealed<'_> = serde_json::from_slice(sealed)
            .map_err(|e| StoreError::Corrupt(format!("sealed record lacks an index field: {e}")))?;
        let sidecar: Option<Sidecar<'_>> = personal.and_then(|bytes| serde_json::from_slice(bytes).ok());
        let occurred_at = record.occurred_at.parse::<jiff::Timestamp>().map(|t| t.as_microsecond()).unwrap_or(0);
        let mut resources = Vec::with_capacity(1 + record.targets.len());
        for object in record.resource.iter().chain(&record.targets) {
            resources.push((object.kind.to_string(), object.id.to_string()));
        }
        let ip_present = record.context.as_ref().is_some_and(|c| c.ip.is_some());
        Ok(IndexRow {
            occurred_at,
            action: record.action.into_owned(),
            actor_id: record.actor.id.into_owned(),
            actor_type: record.actor.kind.into_owned(),
            actor_email: personal_text(record.actor.email.is_some(), sidecar.as_ref(), "actor.email")
                .map(|e| e.to_lowercase()),
            outcome: record.outcome.into_owned(),
            ip: personal_text(ip_present, sidecar.as_ref(), "context.ip"),
            channel: record.context.and_then(|c| c.channel).map(Cow::into_owned),
            data_subject: record.data_subject.map(Cow::into_owned),
            resources,
        })
    }
}
