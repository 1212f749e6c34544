//! The sealed record's event members, written in RFC 8785 form straight from a typed [`Event`]:
//! no JSON tree is built for the schema fields, only `metadata` and `changes` (free-form JSON)
//! go through the general canonicalizer. Every member name of the schema is ASCII without
//! escapes, where RFC 8785's UTF-16 order is byte order, so each object below writes its keys
//! in a fixed, already sorted order.
//!
//! All keys of the body sort apart from the server's (`received_at`, `seq`, `tenant`, `v`):
//! `action actor changes context data_subject id metadata occurred_at occurred_at_source
//! outcome reason` < `received_at` < `resource sensitivity` < `seq` < `targets` < `tenant` <
//! `v`. [`write`] records the two places where [`super::seal`] splices server members in.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use veritrail_ledger::jcs::{canonicalize_to, write_string};

use super::{COMMITMENT_DOMAIN, commitment};
use crate::error::SealError;
use crate::event::{Actor, Event, Resource};
use crate::personal::{PersonalData, PersonalValue};
use crate::time;

/// What [`write`] produces: the body members, where the server members go, and the personal
/// values taken out.
pub(super) struct Written {
    pub(super) body: Vec<u8>,
    pub(super) splits: [usize; 2],
    /// Where each top-level member's key begins in `body` (its opening quote), in order.
    pub(super) starts: Vec<u32>,
    pub(super) personal: PersonalData,
}

/// Writes the event's members (with `id`, `occurred_at` and `occurred_at_source` as given),
/// committing the personal fields with salts drawn in [`super::PERSONAL_FIELDS`] order.
pub(super) fn write(
    event: Event,
    id: &str,
    occurred_at: Timestamp,
    occurred_at_source: &str,
    salt: &mut dyn FnMut() -> [u8; 32],
    personal_paths: &[String],
) -> Result<Written, SealError> {
    let Event {
        id: _,
        action,
        occurred_at: _,
        actor,
        resource,
        targets,
        outcome,
        reason,
        context,
        changes,
        data_subject,
        sensitivity,
        metadata,
    } = event;
    let Actor { id: actor_id, actor_type, name, email, roles } = actor;
    let mut context = context;

    // Commitments first: the order salts are drawn in is part of the tests' expectations.
    let mut personal = PersonalData::default();
    let mut scratch = Vec::new();
    let mut commit = |path: &str, text: Option<String>| {
        text.map(|text| commit_text(&mut personal, path, text, salt(), &mut scratch))
    };
    let name = commit("actor.name", name);
    let email = commit("actor.email", email);
    let ip = commit("context.ip", context.as_mut().and_then(|c| c.ip.take()).map(|ip| ip.to_string()));
    let user_agent = commit("context.user_agent", context.as_mut().and_then(|c| c.user_agent.take()));
    let location = commit("context.location", context.as_mut().and_then(|c| c.location.take()));
    let changes = changes.map(|changes| {
        let mut object = Map::new();
        if let Some(before) = changes.before {
            object.insert("before".to_owned(), before);
        }
        if let Some(after) = changes.after {
            object.insert("after".to_owned(), after);
        }
        Value::Object(object)
    });
    let changes = match changes {
        Some(value) if !sensitivity.is_empty() => {
            let salt = salt();
            let digest = commitment(&salt, &value).map_err(|source| sealing("changes", source))?;
            personal.insert("changes", PersonalValue { salt, value });
            Some(Member::Commitment(digest))
        }
        Some(value) => Some(Member::Clear(value)),
        None => None,
    };

    // The tenant's own personal fields under metadata, in path order.
    let mut metadata = metadata.map(Value::Object);
    let mut classified: Vec<&str> = Vec::new();
    if let Some(metadata) = metadata.as_mut() {
        let mut paths: Vec<&String> = personal_paths.iter().collect();
        paths.sort_unstable();
        paths.dedup();
        for path in paths {
            let Some(slot) = path.strip_prefix("metadata.").and_then(|rest| {
                rest.split('.').try_fold(&mut *metadata, |value, key| value.as_object_mut()?.get_mut(key))
            }) else {
                continue;
            };
            let value = slot.take();
            let salt = salt();
            let digest = commitment(&salt, &value).map_err(|source| sealing("metadata", source))?;
            *slot = serde_json::json!({"commitment": digest});
            personal.insert(path, PersonalValue { salt, value });
            classified.push(path);
        }
    }

    let mut out = Vec::with_capacity(768);
    let mut starts: Vec<u32> = Vec::with_capacity(16);
    top(&mut out, &mut starts, 0, "action");
    write_string(&action, &mut out);

    top(&mut out, &mut starts, 0, "actor");
    let start = open(&mut out);
    if let Some(email) = &email {
        key(&mut out, start, "email");
        write_commitment(email, &mut out);
    }
    key(&mut out, start, "id");
    write_string(&actor_id, &mut out);
    if let Some(name) = &name {
        key(&mut out, start, "name");
        write_commitment(name, &mut out);
    }
    if !roles.is_empty() {
        key(&mut out, start, "roles");
        write_strings(roles.iter().map(String::as_str), &mut out);
    }
    key(&mut out, start, "type");
    write_string(actor_type.as_str(), &mut out);
    out.push(b'}');

    match &changes {
        Some(Member::Commitment(digest)) => {
            top(&mut out, &mut starts, 0, "changes");
            write_commitment(digest, &mut out);
        }
        Some(Member::Clear(value)) => {
            top(&mut out, &mut starts, 0, "changes");
            canonicalize_to(value, &mut out).map_err(|source| sealing("changes", source))?;
        }
        None => {}
    }

    if let Some(context) = &context {
        top(&mut out, &mut starts, 0, "context");
        let start = open(&mut out);
        if let Some(channel) = context.channel {
            key(&mut out, start, "channel");
            write_string(channel.as_str(), &mut out);
        }
        optional_text(&mut out, start, "endpoint", context.endpoint.as_deref());
        optional_commitment(&mut out, start, "ip", ip.as_deref());
        optional_commitment(&mut out, start, "location", location.as_deref());
        optional_text(&mut out, start, "request_id", context.request_id.as_deref());
        optional_text(&mut out, start, "session_id", context.session_id.as_deref());
        optional_commitment(&mut out, start, "user_agent", user_agent.as_deref());
        out.push(b'}');
    }

    optional_top(&mut out, &mut starts, "data_subject", data_subject.as_deref());
    top(&mut out, &mut starts, 0, "id");
    write_string(id, &mut out);
    if let Some(metadata) = &metadata {
        top(&mut out, &mut starts, 0, "metadata");
        canonicalize_to(metadata, &mut out).map_err(|source| sealing("metadata", source))?;
    }
    top(&mut out, &mut starts, 0, "occurred_at");
    write_string(&time::format_exact(occurred_at), &mut out);
    top(&mut out, &mut starts, 0, "occurred_at_source");
    write_string(occurred_at_source, &mut out);
    top(&mut out, &mut starts, 0, "outcome");
    write_string(outcome.as_str(), &mut out);
    if !classified.is_empty() {
        top(&mut out, &mut starts, 0, super::PERSONAL_FIELDS_MEMBER);
        write_strings(classified.iter().copied(), &mut out);
    }
    optional_top(&mut out, &mut starts, "reason", reason.as_deref());

    // Between `received_at` and `seq`.
    let first = out.len();
    if let Some(resource) = &resource {
        top(&mut out, &mut starts, first, "resource");
        write_resource(resource, &mut out);
    }
    if !sensitivity.is_empty() {
        top(&mut out, &mut starts, first, "sensitivity");
        write_strings(sensitivity.iter().map(|label| label.as_str()), &mut out);
    }

    // Between `seq` and `tenant`.
    let second = out.len();
    if !targets.is_empty() {
        top(&mut out, &mut starts, second, "targets");
        out.push(b'[');
        for (index, target) in targets.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_resource(target, &mut out);
        }
        out.push(b']');
    }
    Ok(Written { body: out, splits: [first, second], starts, personal })
}

/// The value of `changes` in the sealed record.
enum Member {
    Commitment(String),
    Clear(Value),
}

/// Commits a personal string: `base64(SHA-256(domain ‖ salt ‖ JCS(text)))`, exactly
/// [`commitment`] of the JSON string, and moves the clear value into `personal`.
fn commit_text(personal: &mut PersonalData, path: &str, text: String, salt: [u8; 32], scratch: &mut Vec<u8>) -> String {
    scratch.clear();
    write_string(&text, scratch);
    let mut hasher = Sha256::new();
    hasher.update(COMMITMENT_DOMAIN);
    hasher.update(salt);
    hasher.update(&scratch[..]);
    personal.insert(path, PersonalValue { salt, value: Value::String(text) });
    BASE64.encode(hasher.finalize())
}

/// Starts a member named `name` (a schema key: ASCII, nothing to escape) of the object or
/// run of members that began at `start`.
fn key(out: &mut Vec<u8>, start: usize, name: &str) {
    if out.len() > start {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// [`key`] for a member of the record itself, noting where it begins.
fn top(out: &mut Vec<u8>, starts: &mut Vec<u32>, start: usize, name: &str) {
    key(out, start, name);
    starts.push((out.len() - name.len() - 3) as u32);
}

/// [`optional_text`] for a member of the record itself (in the run before `received_at`).
fn optional_top(out: &mut Vec<u8>, starts: &mut Vec<u32>, name: &str, text: Option<&str>) {
    if let Some(text) = text {
        top(out, starts, 0, name);
        write_string(text, out);
    }
}

/// Opens an object; returns where its members start.
fn open(out: &mut Vec<u8>) -> usize {
    out.push(b'{');
    out.len()
}

fn optional_text(out: &mut Vec<u8>, start: usize, name: &str, text: Option<&str>) {
    if let Some(text) = text {
        key(out, start, name);
        write_string(text, out);
    }
}

fn optional_commitment(out: &mut Vec<u8>, start: usize, name: &str, digest: Option<&str>) {
    if let Some(digest) = digest {
        key(out, start, name);
        write_commitment(digest, out);
    }
}

/// `{"commitment":"<digest>"}`.
fn write_commitment(digest: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"commitment\":");
    write_string(digest, out);
    out.push(b'}');
}

fn write_strings<'s>(items: impl Iterator<Item = &'s str>, out: &mut Vec<u8>) {
    out.push(b'[');
    for (index, item) in items.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_string(item, out);
    }
    out.push(b']');
}

fn write_resource(resource: &Resource, out: &mut Vec<u8>) {
    let start = open(out);
    key(out, start, "id");
    write_string(&resource.id, out);
    optional_text(out, start, "name", resource.name.as_deref());
    key(out, start, "type");
    write_string(&resource.resource_type, out);
    out.push(b'}');
}

fn sealing(path: &str, source: veritrail_ledger::JcsError) -> SealError {
    SealError { path: path.to_owned(), source }
}
