//! Turning a validated event into a sealed record (SPEC §3), and back into the reader's view.
//!
//! The sealed record format is documented in the crate README ("Sealed record v1"); it is
//! fixed forever once data exists, so every change here must keep old records opening.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use veritrail_ledger::JcsError;

use crate::error::{OpenError, SealError};
use crate::event::Event;
use crate::jcs::canonical_bytes;
use crate::personal::{PersonalData, PersonalValue};
use crate::time;

#[cfg(test)]
mod tests;

/// Sealed record format version, the `"v"` member.
pub const SEALED_RECORD_VERSION: u64 = 1;

/// Domain-separation prefix of every commitment hash.
pub const COMMITMENT_DOMAIN: &[u8] = b"veritrail.commitment.v1\n";

/// What an erased personal value reads as in [`open`]'s output.
pub const ERASED: &str = "[erased]";

/// Field paths whose values never appear in clear in a sealed record, in the order their
/// salts are drawn. `changes` is committed only when the event has a `sensitivity` label.
pub const PERSONAL_FIELDS: &[&str] =
    &["actor.name", "actor.email", "context.ip", "context.user_agent", "context.location", "changes"];

/// The personal string fields as (parent object, key).
const PERSONAL_STRING_FIELDS: &[(&str, &str)] =
    &[("actor", "name"), ("actor", "email"), ("context", "ip"), ("context", "user_agent"), ("context", "location")];

/// What [`Event::prepare`] needs from the caller: the server-side defaults and a source of
/// random salts (the model does no I/O and has no randomness of its own).
pub struct PrepareContext<'a> {
    /// The id to use when the client sent none, e.g. from [`crate::new_event_id`].
    pub id_if_missing: String,
    /// Server time; used (truncated to milliseconds) when the client sent no `occurred_at`.
    pub now: Timestamp,
    /// Returns 32 fresh random bytes per call; called once per personal field, in
    /// [`PERSONAL_FIELDS`] order.
    pub salt: &'a mut dyn FnMut() -> [u8; 32],
}

/// An event ready to be sealed: its final id, the sealed body (without the ledger fields
/// `v`, `seq`, `tenant`, `received_at`) and the personal data taken out of it.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedEvent {
    /// The event id (client's, or `id_if_missing`).
    pub id: String,
    /// Clear values and salts of the committed fields (may be empty).
    pub personal: PersonalData,
    /// `"key":value` in RFC 8785 form for each member of the sealed record except the ledger
    /// fields (`v`, `seq`, `tenant`, `received_at`), personal fields as commitments, in canonical
    /// key order: sealing (done by the single ledger writer) is only a splice of the server
    /// fields, and the event's JSON tree is freed on the request's thread, not the writer's.
    members: Vec<(String, Vec<u8>)>,
    /// `personal.to_bytes()`, empty when there is no personal data.
    personal_bytes: Vec<u8>,
}

impl PreparedEvent {
    /// The personal-data sidecar as stored ([`PersonalData::to_bytes`]); empty when the event
    /// has no personal data.
    pub fn personal_bytes(&self) -> &[u8] {
        &self.personal_bytes
    }

    fn new(id: String, body: Map<String, Value>, personal: PersonalData) -> Result<PreparedEvent, SealError> {
        let mut members = Vec::with_capacity(body.len());
        for (key, value) in &body {
            // Every member name of the schema is ASCII, where RFC 8785's UTF-16 order is byte order.
            debug_assert!(key.is_ascii());
            let mut member = canonical_bytes(&Value::String(key.clone()))
                .map_err(|source| SealError { path: key.clone(), source })?;
            member.push(b':');
            member.extend(canonical_bytes(value).map_err(|source| SealError { path: key.clone(), source })?);
            members.push((key.clone(), member));
        }
        members.sort_by(|a, b| a.0.cmp(&b.0));
        let personal_bytes = if personal.is_empty() { Vec::new() } else { personal.to_bytes() };
        Ok(PreparedEvent { id, personal, members, personal_bytes })
    }
}

impl Event {
    /// Applies the server defaults (`id`, `occurred_at`) and replaces the personal fields by
    /// commitments, moving their clear values into [`PreparedEvent::personal`].
    ///
    /// Never fails for an event from the validating parsers (see [`SealError`]).
    pub fn prepare(self, ctx: PrepareContext<'_>) -> Result<PreparedEvent, SealError> {
        let id = self.id.clone().unwrap_or(ctx.id_if_missing);
        let (occurred_at, occurred_at_source) = match self.occurred_at {
            Some(occurred_at) => (occurred_at, "client"),
            None => (time::truncate_to_millis(ctx.now), "server"),
        };
        let mut body = self.to_json();
        body.insert("id".into(), Value::String(id.clone()));
        body.insert("occurred_at".into(), time::format_exact(occurred_at).into());
        body.insert("occurred_at_source".into(), occurred_at_source.into());

        let mut personal = PersonalData::default();
        for (parent, key) in PERSONAL_STRING_FIELDS {
            if let Some(Value::Object(object)) = body.get_mut(*parent) {
                let path = format!("{parent}.{key}");
                commit_field(object, key, &path, ctx.salt, &mut personal)?;
            }
        }
        if !self.sensitivity.is_empty() {
            commit_field(&mut body, "changes", "changes", ctx.salt, &mut personal)?;
        }
        PreparedEvent::new(id, body, personal)
    }
}

/// Replaces `object[key]`, if present, by `{"commitment": ...}` and records its clear value.
fn commit_field(
    object: &mut Map<String, Value>,
    key: &str,
    path: &str,
    salt: &mut dyn FnMut() -> [u8; 32],
    personal: &mut PersonalData,
) -> Result<(), SealError> {
    let Some(slot) = object.get_mut(key) else {
        return Ok(());
    };
    let salt = salt();
    let mut committed = Map::new();
    let digest = commitment(&salt, slot).map_err(|source| SealError { path: path.to_owned(), source })?;
    committed.insert("commitment".into(), Value::String(digest));
    let value = std::mem::replace(slot, Value::Object(committed));
    personal.insert(path, PersonalValue { salt, value });
    Ok(())
}

/// `base64(SHA-256("veritrail.commitment.v1\n" || salt || JCS(value)))`, standard alphabet
/// with padding. Fails only if `value` has no canonical form.
pub fn commitment(salt: &[u8; 32], value: &Value) -> Result<String, JcsError> {
    let mut hasher = Sha256::new();
    hasher.update(COMMITMENT_DOMAIN);
    hasher.update(salt);
    hasher.update(canonical_bytes(value)?);
    Ok(BASE64.encode(hasher.finalize()))
}

/// The sealed record: canonical (RFC 8785) JSON bytes of the prepared body plus
/// `"v":1`, `seq`, `tenant` and `received_at` (UTC, milliseconds). These are the exact bytes
/// to store and to hash into the ledger leaf. Deterministic.
///
/// Fails only if the body was edited into something without a canonical form, or `seq` is
/// above 2^53 and not exactly representable as a double (see [`SealError`]).
pub fn seal(prepared: &PreparedEvent, tenant: &str, seq: u64, received_at: Timestamp) -> Result<Vec<u8>, SealError> {
    let member = |key: &str, value: Value| -> Result<(String, Vec<u8>), SealError> {
        let mut bytes = canonical_bytes(&Value::String(key.to_owned()))
            .map_err(|source| SealError { path: key.to_owned(), source })?;
        bytes.push(b':');
        bytes.extend(canonical_bytes(&value).map_err(|source| SealError { path: key.to_owned(), source })?);
        Ok((key.to_owned(), bytes))
    };
    // Already in canonical (byte = UTF-16 for ASCII) order.
    let server = [
        member("received_at", time::format_millis(received_at).into())?,
        member("seq", Value::from(seq))?,
        member("tenant", Value::String(tenant.to_owned()))?,
        member("v", Value::from(SEALED_RECORD_VERSION))?,
    ];
    let size = prepared.members.iter().chain(&server).map(|(_, bytes)| bytes.len() + 1).sum::<usize>() + 2;
    let mut out = Vec::with_capacity(size);
    out.push(b'{');
    let (mut body, mut added) = (prepared.members.iter().peekable(), server.iter().peekable());
    loop {
        let next = match (body.peek(), added.peek()) {
            (Some(b), Some(a)) if b.0 < a.0 => body.next(),
            (Some(_), Some(_)) | (None, Some(_)) => added.next(),
            (Some(_), None) => body.next(),
            (None, None) => break,
        };
        if let Some((_, bytes)) = next {
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(bytes);
        }
    }
    out.push(b'}');
    debug_assert!(prepared.members.iter().all(|(key, _)| server.iter().all(|(server_key, _)| key != server_key)));
    Ok(out)
}

/// The event as API readers see it: every sealed field except `v`, with each commitment
/// replaced by its clear value from `personal` (checked against the commitment) or by
/// `"[erased]"` when `personal` does not hold it.
pub fn open(sealed: &[u8], personal: Option<&PersonalData>) -> Result<Value, OpenError> {
    let record: Value = serde_json::from_slice(sealed).map_err(|error| malformed(error.to_string()))?;
    let Value::Object(mut record) = record else {
        return Err(malformed("not a json object".to_owned()));
    };
    match record.remove("v") {
        Some(version) if version.as_u64() == Some(SEALED_RECORD_VERSION) => {}
        Some(version) => return Err(OpenError::UnsupportedVersion(version.to_string())),
        None => return Err(malformed("missing \"v\"".to_owned())),
    }

    let mut revealed = BTreeSet::new();
    for (parent, key) in PERSONAL_STRING_FIELDS {
        let path = format!("{parent}.{key}");
        let Some(Value::Object(object)) = record.get_mut(*parent) else {
            continue;
        };
        let Some(slot) = object.get_mut(*key) else {
            continue;
        };
        if !reveal(slot, &path, personal)? {
            return Err(malformed(format!("\"{path}\" is not a commitment")));
        }
        revealed.insert(path);
    }
    // `changes` is in clear when the event had no sensitivity label.
    if let Some(slot) = record.get_mut("changes")
        && reveal(slot, "changes", personal)?
    {
        revealed.insert("changes".to_owned());
    }

    if let Some(personal) = personal {
        for (path, _) in personal.iter() {
            if !revealed.contains(path) {
                return Err(OpenError::UnexpectedPersonalValue { path: path.to_owned() });
            }
        }
    }
    Ok(Value::Object(record))
}

/// If `slot` is a commitment, replaces it by the verified clear value (or `"[erased]"`) and
/// returns true; returns false when `slot` is not a commitment.
fn reveal(slot: &mut Value, path: &str, personal: Option<&PersonalData>) -> Result<bool, OpenError> {
    let Some(expected) = commitment_in(slot) else {
        return Ok(false);
    };
    let Some(field) = personal.and_then(|personal| personal.get(path)) else {
        *slot = Value::String(ERASED.to_owned());
        return Ok(true);
    };
    let actual = commitment(&field.salt, &field.value)
        .map_err(|error| OpenError::MalformedPersonalData(format!("\"{path}\" cannot be canonicalized: {error}")))?;
    if actual != expected {
        return Err(OpenError::CommitmentMismatch { path: path.to_owned() });
    }
    *slot = field.value.clone();
    Ok(true)
}

/// The commitment string if `value` is exactly `{"commitment": "<string>"}`.
fn commitment_in(value: &Value) -> Option<String> {
    let Value::Object(object) = value else {
        return None;
    };
    if object.len() != 1 {
        return None;
    }
    object.get("commitment")?.as_str().map(str::to_owned)
}

fn malformed(message: String) -> OpenError {
    OpenError::MalformedRecord(message)
}
