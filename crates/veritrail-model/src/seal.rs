//! Turning a validated event into a sealed record (SPEC §3), and back into the reader's view.
//!
//! The sealed record format is documented in the crate README ("Sealed record v1"); it is
//! fixed forever once data exists, so every change here must keep old records opening.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use veritrail_ledger::JcsError;

use crate::error::{OpenError, SealError};
use crate::event::Event;
use crate::jcs::canonical_bytes;
use crate::personal::PersonalData;
use crate::time;
use veritrail_ledger::jcs::write_string;

mod members;
mod scan;
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

/// The sealed-record member listing the paths a tenant's classification committed.
pub const PERSONAL_FIELDS_MEMBER: &str = "personal_fields";

/// Longest classified path, and most keys in one.
const MAX_PERSONAL_PATH: usize = 256;
const MAX_PERSONAL_PATH_KEYS: usize = 8;

/// Checks a path a tenant declares personal: `metadata.<key>[.<key>...]`, at most 8 keys and
/// 256 bytes, no empty key, not under a reserved metadata key (the server reads those).
pub fn validate_personal_path(path: &str) -> Result<(), String> {
    let Some(rest) = path.strip_prefix("metadata.") else {
        return Err(format!("{path:?} must start with \"metadata.\""));
    };
    if path.len() > MAX_PERSONAL_PATH {
        return Err(format!("{path:?} is longer than {MAX_PERSONAL_PATH} bytes"));
    }
    let keys: Vec<&str> = rest.split('.').collect();
    if keys.len() > MAX_PERSONAL_PATH_KEYS || keys.iter().any(|key| key.is_empty() || key.chars().any(char::is_control))
    {
        return Err(format!("{path:?} must be 1 to {MAX_PERSONAL_PATH_KEYS} non-empty keys separated by dots"));
    }
    if crate::metadata::RESERVED_METADATA_KEYS.contains(&keys[0]) {
        return Err(format!("{path:?} is under the reserved metadata key {:?}", keys[0]));
    }
    Ok(())
}

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
    /// The sealed record's members except the ledger fields, in RFC 8785 form and canonical
    /// key order, comma-separated, without braces: sealing (done by the single ledger writer)
    /// is a splice of the server fields, so the writer never touches the event's JSON.
    body: Vec<u8>,
    /// Where the server fields go: `body[..splits[0]]` sorts before `received_at`,
    /// `body[splits[0]..splits[1]]` between `received_at` and `seq`, the rest between `seq`
    /// and `tenant`.
    splits: [usize; 2],
    /// Where each member of `body` begins (its key's opening quote), for [`MemberLayout`].
    starts: Vec<u32>,
    /// `actor.id`: whose key seals the actor's own personal data.
    pub actor_id: String,
    /// `data_subject`, when present: whose key seals the data about the subject.
    pub data_subject: Option<String>,
}

impl Event {
    /// Applies the server defaults (`id`, `occurred_at`) and replaces the personal fields by
    /// commitments, moving their clear values into [`PreparedEvent::personal`].
    ///
    /// The canonical members are written straight from the typed fields (`members.rs`); the
    /// tests check them byte for byte against canonicalizing [`Event::to_json`].
    ///
    /// Never fails for an event from the validating parsers (see [`SealError`]).
    pub fn prepare(self, ctx: PrepareContext<'_>) -> Result<PreparedEvent, SealError> {
        self.prepare_classified(ctx, &[])
    }

    /// [`Event::prepare`] with the tenant's own personal fields (`personal_paths`, checked by
    /// [`validate_personal_path`]) committed too: each value present at one of those paths
    /// under `metadata` is replaced by a commitment like the built-in personal fields (salts
    /// drawn after theirs, in path order), and the record lists the paths it committed in
    /// `personal_fields`. Paths the event does not have are ignored.
    pub fn prepare_classified(
        self,
        ctx: PrepareContext<'_>,
        personal_paths: &[String],
    ) -> Result<PreparedEvent, SealError> {
        let id = self.id.clone().unwrap_or(ctx.id_if_missing);
        let (occurred_at, occurred_at_source) = match self.occurred_at {
            Some(occurred_at) => (occurred_at, "client"),
            None => (time::truncate_to_millis(ctx.now), "server"),
        };
        let actor_id = self.actor.id.clone();
        let data_subject = self.data_subject.clone();
        let written = members::write(self, &id, occurred_at, occurred_at_source, ctx.salt, personal_paths)?;
        Ok(PreparedEvent {
            id,
            personal: written.personal,
            body: written.body,
            splits: written.splits,
            starts: written.starts,
            actor_id,
            data_subject,
        })
    }
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
    seal_into(prepared, tenant, seq, received_at, None)
}

/// [`seal`], and where the sealed record's members lie, for [`SealedMembers::from_layout`]:
/// a reader of a record sealed in the same process can skip the scan for its members.
pub fn seal_with_layout(
    prepared: &PreparedEvent,
    tenant: &str,
    seq: u64,
    received_at: Timestamp,
) -> Result<(Vec<u8>, MemberLayout), SealError> {
    let mut starts = Vec::with_capacity(prepared.starts.len() + 4);
    let sealed = seal_into(prepared, tenant, seq, received_at, Some(&mut starts))?;
    Ok((sealed, MemberLayout(starts.into())))
}

fn seal_into(
    prepared: &PreparedEvent,
    tenant: &str,
    seq: u64,
    received_at: Timestamp,
    mut layout: Option<&mut Vec<u32>>,
) -> Result<Vec<u8>, SealError> {
    let mut seq_text = Vec::with_capacity(20);
    veritrail_ledger::jcs::canonicalize_to(&Value::from(seq), &mut seq_text)
        .map_err(|source| SealError { path: "seq".to_owned(), source })?;
    let [first, second] = prepared.splits;
    let body = &prepared.body;
    let mut out = Vec::with_capacity(body.len() + tenant.len() + 80);
    // Where the body members from `range` begin once their run is copied to `at`.
    let note_run = |layout: &mut Option<&mut Vec<u32>>, at: usize, range: std::ops::Range<usize>| {
        if let Some(layout) = layout {
            let run = prepared.starts.iter().filter(|&&start| range.contains(&(start as usize)));
            layout.extend(run.map(|&start| (at + start as usize - range.start) as u32));
        }
    };
    // A server member begins one byte after `at` (its comma).
    let note_server = |layout: &mut Option<&mut Vec<u32>>, at: usize| {
        if let Some(layout) = layout {
            layout.push((at + 1) as u32);
        }
    };
    // Canonical order: body[..first], received_at, body[first..second], seq, body[second..],
    // tenant, v (no body key sorts between these server keys; see `members.rs`).
    out.push(b'{');
    note_run(&mut layout, out.len(), 0..first);
    out.extend_from_slice(&body[..first]);
    note_server(&mut layout, out.len());
    out.extend_from_slice(b",\"received_at\":");
    write_string(&time::format_millis(received_at), &mut out);
    if first < second {
        out.push(b',');
        note_run(&mut layout, out.len(), first..second);
        out.extend_from_slice(&body[first..second]);
    }
    note_server(&mut layout, out.len());
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(&seq_text);
    if second < body.len() {
        out.push(b',');
        note_run(&mut layout, out.len(), second..body.len());
        out.extend_from_slice(&body[second..]);
    }
    note_server(&mut layout, out.len());
    out.extend_from_slice(b",\"tenant\":");
    write_string(tenant, &mut out);
    note_server(&mut layout, out.len());
    out.extend_from_slice(b",\"v\":");
    out.extend_from_slice(SEALED_RECORD_VERSION.to_string().as_bytes());
    out.push(b'}');
    Ok(out)
}

/// Where the members of a sealed record begin (the opening quote of each key, in order), as
/// [`seal_with_layout`] sealed it. A reading aid for records that never left the process:
/// [`SealedMembers::from_layout`] checks it only for plausibility.
#[derive(Debug, Clone)]
pub struct MemberLayout(std::sync::Arc<[u32]>);

impl MemberLayout {
    /// Bytes it takes in memory.
    pub fn heap_bytes(&self) -> usize {
        self.0.len() * 4
    }
}

/// The event as API readers see it: every sealed field except `v`, with each commitment
/// replaced by its clear value from `personal` (checked against the commitment) or by
/// `"[erased]"` when `personal` does not hold it.
pub fn open(sealed: &[u8], personal: Option<&PersonalData>) -> Result<Value, OpenError> {
    let record: Value = serde_json::from_slice(sealed).map_err(|error| malformed(error.to_string()))?;
    let Value::Object(mut record) = record else {
        return Err(malformed("not a json object".to_owned()));
    };
    check_version(record.remove("v"))?;
    let classified = classified_paths(record.get(PERSONAL_FIELDS_MEMBER))?;
    reveal_members(&mut record, &classified, personal, &|_| true)?;
    Ok(Value::Object(record))
}

/// A sealed record's top-level members, found in one borrowed pass over its bytes and parsed
/// only when asked for: for readers that need a few members of many records (the rule engine)
/// and would otherwise build every record's whole view and check every commitment in it.
#[derive(Debug)]
pub struct SealedMembers<'a> {
    members: Members<'a>,
}

/// Where [`SealedMembers`] finds the members.
#[derive(Debug)]
enum Members<'a> {
    /// Found by a scan of the record.
    Scanned(scan::RawMembers<'a>),
    /// Where sealing noted them ([`MemberLayout`]): each member is read where its entry points
    /// when it is asked for, so that a reader of a few members builds nothing.
    Laid { record: &'a [u8], starts: &'a [u32] },
}

impl<'a> SealedMembers<'a> {
    /// Finds the members of `sealed` and checks its `v` as [`open`] does. The object's structure
    /// is checked (UTF-8, strings closed, brackets matched, separators, nothing after it); a
    /// member's value is parsed, and so checked, only when it is read.
    pub fn parse(sealed: &'a [u8]) -> Result<SealedMembers<'a>, OpenError> {
        let text = std::str::from_utf8(sealed).map_err(|error| malformed(error.to_string()))?;
        let record = SealedMembers { members: Members::Scanned(scan::members(text).map_err(malformed)?) };
        record.check_version()?;
        Ok(record)
    }

    /// The members of a record [`seal_with_layout`] sealed in this process, taken from its
    /// `layout` instead of a scan: no structure is checked beyond where the layout points. Here
    /// the entries are checked to lie in order inside the record, each at the opening quote of a
    /// member (after the record's `{` or a `,`); a layout that does not fit is refused, and the
    /// caller can [`SealedMembers::parse`] instead. A member is checked further (a plain name
    /// closed and followed by `:` and a value, UTF-8) when it is read; one that is not is read
    /// as absent, and makes [`SealedMembers::open`] fail.
    pub fn from_layout(sealed: &'a [u8], layout: &'a MemberLayout) -> Result<SealedMembers<'a>, OpenError> {
        let unfit = || malformed("the member layout does not fit the record".to_owned());
        let starts: &[u32] = &layout.0;
        if sealed.first() != Some(&b'{') || sealed.last() != Some(&b'}') {
            return Err(unfit());
        }
        let mut previous = 0;
        for (index, &start) in starts.iter().enumerate() {
            let start = start as usize;
            let opens = if index == 0 { start == 1 } else { start > previous && sealed.get(start - 1) == Some(&b',') };
            // The last entry must leave room for a name, `:` and a value before the `}`.
            if !opens || sealed.get(start) != Some(&b'"') || start + 4 >= sealed.len() {
                return Err(unfit());
            }
            previous = start;
        }
        let record = SealedMembers { members: Members::Laid { record: sealed, starts } };
        record.check_version()?;
        Ok(record)
    }

    /// The member at entry `index` of a layout: its name and raw value, or `None` when the
    /// entry does not hold one.
    fn laid_member(record: &'a [u8], starts: &[u32], index: usize) -> Option<(&'a str, &'a str)> {
        let start = *starts.get(index)? as usize;
        let end = match starts.get(index + 1) {
            Some(&next) => (next as usize).checked_sub(1)?,
            None => record.len().checked_sub(1)?,
        };
        let member = record.get(start + 1..end)?;
        let quote = member.iter().position(|&b| b == b'"')?;
        let (name, after) = member.split_at(quote);
        let value = after.strip_prefix(b"\":")?;
        if name.contains(&b'\\') || value.is_empty() {
            return None;
        }
        Some((std::str::from_utf8(name).ok()?, std::str::from_utf8(value).ok()?))
    }

    /// Every member in order (name, raw value); for a layout, an entry that does not hold a
    /// member fails.
    fn entries(&self) -> Result<Vec<(std::borrow::Cow<'a, str>, &'a str)>, OpenError> {
        match &self.members {
            Members::Scanned(members) => Ok(members.clone()),
            Members::Laid { record, starts } => (0..starts.len())
                .map(|index| {
                    let (name, value) = Self::laid_member(record, starts, index)
                        .ok_or_else(|| malformed("the member layout does not fit the record".to_owned()))?;
                    Ok((std::borrow::Cow::Borrowed(name), value))
                })
                .collect(),
        }
    }

    /// Checks `v` as [`open`] does, without parsing it when it is the plain number expected.
    fn check_version(&self) -> Result<(), OpenError> {
        match self.raw("v") {
            Some(raw) if raw.parse::<u64>() == Ok(SEALED_RECORD_VERSION) => Ok(()),
            raw => check_version(raw.map(parse_value).transpose()?),
        }
    }

    /// The member `key` unparsed (of repeated keys the last, as in a parsed record).
    fn raw(&self, key: &str) -> Option<&'a str> {
        match &self.members {
            Members::Scanned(members) => members.iter().rev().find(|(name, _)| name == key).map(|(_, raw)| *raw),
            Members::Laid { record, starts } => {
                let key = key.as_bytes();
                // A cheap look at each entry's name first; the one that matches is read whole.
                let named = |start: u32| {
                    let name = start as usize + 1;
                    record.get(name) == key.first()
                        && record.get(name + key.len()) == Some(&b'"')
                        && record.get(name..name + key.len()) == Some(key)
                };
                let index = starts.iter().rposition(|&start| named(start))?;
                Self::laid_member(record, starts, index).map(|(_, value)| value)
            }
        }
    }

    /// The member `key` if it is a string: borrowed from the record when it has no escapes,
    /// unescaped otherwise; `None` for any other value, or when it is absent.
    pub fn string(&self, key: &str) -> Option<std::borrow::Cow<'a, str>> {
        match self.str(key) {
            Some(text) => Some(std::borrow::Cow::Borrowed(text)),
            None => serde_json::from_str::<String>(self.raw(key)?).ok().map(std::borrow::Cow::Owned),
        }
    }

    /// The member `key` if it is a string without escapes (`action`, `received_at`), borrowed
    /// from the record; `None` for any other value, or when it is absent.
    pub fn str(&self, key: &str) -> Option<&'a str> {
        let text = self.raw(key)?;
        let inner = text.strip_prefix('"')?.strip_suffix('"')?;
        (!inner.contains('\\')).then_some(inner)
    }

    /// [`open`]'s view cut down to the members `keep` admits: each as [`open`] gives it, its
    /// commitments revealed from `personal` (checked) or read as `"[erased]"`. Only what is kept
    /// is parsed and checked: personal data for a member left out goes unnoticed.
    pub fn open(&self, personal: Option<&PersonalData>, keep: &dyn Fn(&str) -> bool) -> Result<Value, OpenError> {
        let mut record = Map::new();
        for (key, raw) in &self.entries()? {
            if key != "v" && keep(key) {
                record.insert(key.as_ref().to_owned(), parse_value(raw)?);
            }
        }
        let classified = self.raw(PERSONAL_FIELDS_MEMBER).map(parse_value).transpose()?;
        let classified = classified_paths(classified.as_ref())?;
        reveal_members(&mut record, &classified, personal, keep)?;
        Ok(Value::Object(record))
    }

    /// [`SealedMembers::open`] of `keys` without parsing: for members that never hold a
    /// commitment (`action`, `id`, `seq`, `occurred_at`, `received_at`), when each is a string
    /// without escapes or a canonical non-negative integer, or absent. `None` when one is not
    /// (an object, an escaped string, ...) or is `changes` (which may be a commitment): then
    /// [`SealedMembers::open`] gives the view. The rule engine reads these five members of every
    /// event; building them straight from the record's bytes costs a fraction of a parse.
    pub fn open_plain(&self, keys: &[&str]) -> Option<Value> {
        let mut record = Map::new();
        for &key in keys {
            if key == "changes" || key == "v" {
                return None;
            }
            let Some(raw) = self.raw(key) else { continue };
            let value = if let Some(inner) = raw.strip_prefix('"') {
                let inner = inner.strip_suffix('"')?;
                if inner.contains('\\') {
                    return None;
                }
                Value::String(inner.to_owned())
            } else {
                let canonical = raw.bytes().all(|b| b.is_ascii_digit()) && (raw == "0" || !raw.starts_with('0'));
                if !canonical {
                    return None;
                }
                Value::from(raw.parse::<u64>().ok()?)
            };
            record.insert(key.to_owned(), value);
        }
        Some(Value::Object(record))
    }

    /// The view cut down to what is below `paths`: dotted paths (`metadata.source.service`,
    /// `actor.id`) or whole members (`action`); a path reaching an array or a scalar before its
    /// end keeps that whole. Below `metadata`, only the named paths are parsed (unless one
    /// touches a field the tenant classified as personal: then `metadata` opens whole, its
    /// commitments revealed); any other path opens its whole top-level member as
    /// [`SealedMembers::open`] does. For every path, the value found there is the whole view's.
    pub fn open_paths(&self, personal: Option<&PersonalData>, paths: &[&str]) -> Result<Value, OpenError> {
        let mut whole: Vec<&str> = Vec::new();
        let mut below_metadata: Vec<&str> = Vec::new();
        for &path in paths {
            match path.split_once('.') {
                Some(("metadata", _)) => below_metadata.push(path),
                Some((member, _)) if !whole.contains(&member) => whole.push(member),
                None if !whole.contains(&path) => whole.push(path),
                _ => {}
            }
        }
        if !below_metadata.is_empty() && !whole.contains(&"metadata") {
            let classified = self.raw(PERSONAL_FIELDS_MEMBER).map(parse_value).transpose()?;
            let classified = classified_paths(classified.as_ref())?;
            if classified.iter().any(|c| below_metadata.iter().any(|p| overlaps(c, p))) {
                whole.push("metadata");
            }
        }
        let mut view = match self.open_plain(&whole) {
            Some(view) => view,
            None => self.open(personal, &|key| whole.contains(&key))?,
        };
        if whole.contains(&"metadata") {
            return Ok(view);
        }
        let (Some(raw), Value::Object(record)) = (self.raw("metadata"), &mut view) else {
            return Ok(view);
        };
        // Shorter paths first: a path below one already copied whole has nothing to add.
        below_metadata.sort_by_key(|path| path.len());
        let mut copied: Vec<&str> = Vec::new();
        for path in below_metadata {
            if copied.iter().any(|done| overlaps_below(path, done)) {
                continue;
            }
            let segments: Vec<&str> = path.split('.').skip(1).collect();
            if let Some(found) = raw_path(raw, &segments)? {
                merge(record.entry("metadata").or_insert_with(|| Value::Object(Map::new())), found);
            }
            copied.push(path);
        }
        Ok(view)
    }

    /// A key for the view [`SealedMembers::open_paths`] gives of `paths`, written to `key`
    /// (cleared first), when that view follows from what the key holds alone: every path is a
    /// top-level member that is absent or a plain string or integer (as
    /// [`SealedMembers::open_plain`] reads them), or a path below `metadata` that touches no
    /// field the tenant classified as personal. Then two records with the same key have the
    /// same view of `paths`, and a reader of many records can keep views by key (the rule
    /// engine does). `false` when the view may depend on more (a member that may hold
    /// commitments, `metadata` whole, a classified field): only `open_paths` gives it then.
    /// Fails where `open_paths` fails on the same paths.
    pub fn plain_view_key(&self, paths: &[&str], key: &mut String) -> Result<bool, OpenError> {
        key.clear();
        let mut classified: Option<Vec<String>> = None;
        for &path in paths {
            key.push_str(path);
            key.push('\0');
            match path.split_once('.') {
                Some(("metadata", below)) => {
                    let classified = match &mut classified {
                        Some(classified) => classified,
                        None => {
                            let member = self.raw(PERSONAL_FIELDS_MEMBER).map(parse_value).transpose()?;
                            classified.insert(classified_paths(member.as_ref())?)
                        }
                    };
                    if classified.iter().any(|c| overlaps(c, path)) {
                        return Ok(false);
                    }
                    match self.raw("metadata").map(|raw| raw_path_text(raw, below.split('.'))).transpose()?.flatten() {
                        Some((depth, raw)) => {
                            let _ = write!(key, "{depth}:{raw}");
                        }
                        None => key.push('\u{1}'),
                    }
                }
                Some(_) => return Ok(false),
                None => match self.raw(path) {
                    None => key.push('\u{1}'),
                    Some(raw) if path != "changes" && path != "v" && path != "metadata" && plain_scalar(raw) => {
                        key.push_str(raw);
                    }
                    Some(_) => return Ok(false),
                },
            }
            key.push('\0');
        }
        Ok(true)
    }
}

/// Whether one of two dotted paths is the other or below it.
fn overlaps(a: &str, b: &str) -> bool {
    overlaps_below(a, b) || overlaps_below(b, a)
}

/// Whether `path` is `base` or below it.
fn overlaps_below(path: &str, base: &str) -> bool {
    path.strip_prefix(base).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// What is at `segments` inside the raw JSON object `raw`, in the objects leading to it:
/// `{"source": {"service": "api"}}` for `source.service`. A value that is not an object before
/// the path ends is taken whole (readers look through arrays). `None` when the path is absent.
fn raw_path(raw: &str, segments: &[&str]) -> Result<Option<Value>, OpenError> {
    let Some((depth, text)) = raw_path_text(raw, segments.iter().copied())? else {
        return Ok(None);
    };
    let mut found = parse_value(text)?;
    for segment in segments[..depth].iter().rev() {
        let mut object = Map::new();
        object.insert((*segment).to_owned(), found);
        found = Value::Object(object);
    }
    Ok(Some(found))
}

/// Where [`raw_path`] finds the value at `segments` inside the raw object `raw`: how many of
/// the segments it went down and the raw value there, unparsed (what
/// [`SealedMembers::plain_view_key`] keys views by). `None` when the path is absent.
fn raw_path_text<'r, 's>(
    mut raw: &'r str,
    segments: impl IntoIterator<Item = &'s str>,
) -> Result<Option<(usize, &'r str)>, OpenError> {
    let mut segments = segments.into_iter().peekable();
    let mut depth = 0;
    while let Some(segment) = segments.next() {
        if !raw.starts_with('{') {
            return Ok(None);
        }
        let Some(value) = scan::member(raw, segment).map_err(malformed)? else {
            return Ok(None);
        };
        depth += 1;
        if segments.peek().is_none() || !value.starts_with('{') {
            return Ok(Some((depth, value)));
        }
        raw = value;
    }
    Ok(None)
}

/// Whether [`SealedMembers::open_plain`] reads the raw member value `raw` without parsing: a
/// string without escapes or a canonical non-negative integer.
fn plain_scalar(raw: &str) -> bool {
    match raw.strip_prefix('"') {
        Some(inner) => inner.strip_suffix('"').is_some_and(|inner| !inner.contains('\\')),
        None => {
            !raw.is_empty()
                && raw.bytes().all(|b| b.is_ascii_digit())
                && (raw == "0" || !raw.starts_with('0'))
                && raw.parse::<u64>().is_ok()
        }
    }
}

/// Merges the object `from` into `into` (objects member by member, anything else replaced).
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        into.insert(key, value);
                    }
                }
            }
        }
        (into, from) => *into = from,
    }
}

fn parse_value(raw: &str) -> Result<Value, OpenError> {
    serde_json::from_str(raw).map_err(|error| malformed(error.to_string()))
}

/// Checks the `v` member.
fn check_version(version: Option<Value>) -> Result<(), OpenError> {
    match version {
        Some(version) if version.as_u64() == Some(SEALED_RECORD_VERSION) => Ok(()),
        Some(version) => Err(OpenError::UnsupportedVersion(version.to_string())),
        None => Err(malformed("missing \"v\"".to_owned())),
    }
}

/// The paths a tenant's classification committed (the `personal_fields` member).
fn classified_paths(member: Option<&Value>) -> Result<Vec<String>, OpenError> {
    match member {
        None => Ok(Vec::new()),
        Some(Value::Array(paths)) => paths
            .iter()
            .map(|p| p.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| malformed(format!("\"{PERSONAL_FIELDS_MEMBER}\" must hold strings"))),
        Some(_) => Err(malformed(format!("\"{PERSONAL_FIELDS_MEMBER}\" must be an array"))),
    }
}

/// Reveals the commitments in `record` (the members of a sealed record that `kept` admits,
/// without `v`), and checks that `personal` holds nothing for a kept member that has no
/// commitment.
fn reveal_members(
    record: &mut Map<String, Value>,
    classified: &[String],
    personal: Option<&PersonalData>,
    kept: &dyn Fn(&str) -> bool,
) -> Result<(), OpenError> {
    let mut revealed = BTreeSet::new();
    for (parent, key) in PERSONAL_STRING_FIELDS {
        let Some(Value::Object(object)) = record.get_mut(*parent) else {
            continue;
        };
        let Some(slot) = object.get_mut(*key) else {
            continue;
        };
        let path = format!("{parent}.{key}");
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
    // Fields the tenant classified as personal, under `metadata`.
    for path in classified {
        if path.starts_with("metadata.") && !kept("metadata") {
            continue;
        }
        let slot = path
            .strip_prefix("metadata.")
            .and_then(|rest| {
                rest.split('.').try_fold(record.get_mut("metadata")?, |value, key| value.as_object_mut()?.get_mut(key))
            })
            .ok_or_else(|| malformed(format!("personal field \"{path}\" is not in the record")))?;
        if !reveal(slot, path, personal)? {
            return Err(malformed(format!("\"{path}\" is not a commitment")));
        }
        revealed.insert(path.clone());
    }

    if let Some(personal) = personal {
        for (path, _) in personal.iter() {
            let member = path.split('.').next().unwrap_or(path);
            if kept(member) && !revealed.contains(path) {
                return Err(OpenError::UnexpectedPersonalValue { path: path.to_owned() });
            }
        }
    }
    Ok(())
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
