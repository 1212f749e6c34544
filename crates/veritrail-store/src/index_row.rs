//! The fields of a sealed record that backends index for a SQL pre-filter of queries, read with
//! a borrowed, partial parse: it runs for every event, so it skips building the reader's view
//! (no JSON tree, no commitment checks — the final match of a query is still made on the fully
//! opened, verified record with `EventQuery::matches`). Shared by every backend so they index
//! exactly the same values.

use std::borrow::Cow;

use crate::{StoreError, StoreResult};
use serde::Deserialize;

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
    /// `outcome`.
    pub outcome: String,
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
}

#[derive(Deserialize)]
struct Context<'a> {
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Resource<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
}

impl IndexRow {
    /// Extracts the index columns of a sealed record. (Personal fields are indexed by their
    /// blind-index tokens, which the backends keep beside the encrypted sidecar.)
    pub fn of(sealed: &[u8]) -> StoreResult<IndexRow> {
        let record: Sealed<'_> = serde_json::from_slice(sealed)
            .map_err(|e| StoreError::Corrupt(format!("sealed record lacks an index field: {e}")))?;
        let occurred_at = record.occurred_at.parse::<jiff::Timestamp>().map(|t| t.as_microsecond()).unwrap_or(0);
        let mut resources = Vec::with_capacity(1 + record.targets.len());
        for object in record.resource.iter().chain(&record.targets) {
            resources.push((object.kind.to_string(), object.id.to_string()));
        }
        Ok(IndexRow {
            occurred_at,
            action: record.action.into_owned(),
            actor_id: record.actor.id.into_owned(),
            actor_type: record.actor.kind.into_owned(),
            outcome: record.outcome.into_owned(),
            channel: record.context.and_then(|c| c.channel).map(Cow::into_owned),
            data_subject: record.data_subject.map(Cow::into_owned),
            resources,
        })
    }
}
