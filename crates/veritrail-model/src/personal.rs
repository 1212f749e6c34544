//! Personal data taken out of a sealed record: the clear values and the salts of their
//! commitments. Stored apart from the ledger; destroying it erases the data (GDPR Art. 17)
//! without changing any sealed record.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::error::OpenError;

/// Format version of [`PersonalData::to_bytes`].
const PERSONAL_DATA_VERSION: u64 = 1;

/// One committed value: the salt and the clear JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalValue {
    /// The 32 random bytes mixed into the commitment.
    pub salt: [u8; 32],
    /// The value in clear, exactly as committed.
    pub value: Value,
}

/// The personal values of one event, keyed by field path (`actor.email`, `context.ip`,
/// `changes`...; see [`crate::PERSONAL_FIELDS`]).
///
/// Cloning is cheap (the fields are shared until one of the copies changes): the store hands the
/// same clear values to every reader of a recent record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersonalData {
    fields: Arc<BTreeMap<String, PersonalValue>>,
}

impl PersonalData {
    /// True when the event had no personal field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Number of personal fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// The value committed at `path`, if still held.
    pub fn get(&self, path: &str) -> Option<&PersonalValue> {
        self.fields.get(path)
    }

    /// Forgets one field (partial erasure); returns it if it was there.
    pub fn remove(&mut self, path: &str) -> Option<PersonalValue> {
        Arc::make_mut(&mut self.fields).remove(path)
    }

    /// The fields in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PersonalValue)> {
        self.fields.iter().map(|(path, value)| (path.as_str(), value))
    }

    /// Adds every field of `other` (the owners' parts of one event back together).
    pub fn merge(&mut self, other: PersonalData) {
        Arc::make_mut(&mut self.fields).extend(Arc::unwrap_or_clone(other.fields));
    }

    pub(crate) fn insert(&mut self, path: &str, value: PersonalValue) {
        Arc::make_mut(&mut self.fields).insert(path.to_owned(), value);
    }

    /// Encodes as compact JSON:
    /// `{"v":1,"fields":{"<path>":{"salt":"<base64 std>","value":<json>},...}}`
    /// (member order unspecified; this blob is never hashed).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.write_bytes(|_| true)
    }

    /// Whether the event has personal data of each owner (indexed by [`Owner`]).
    pub fn owners(&self, has_data_subject: bool) -> [bool; 2] {
        let mut owners = [false, false];
        for path in self.fields.keys() {
            owners[owner_of(path, has_data_subject) as usize] = true;
        }
        owners
    }

    /// [`PersonalData::to_bytes`] of only `owner`'s fields ([`owner_of`]): each owner's part is
    /// sealed under that owner's key, so erasing one person leaves the other's data.
    pub fn owner_bytes(&self, owner: Owner, has_data_subject: bool) -> Vec<u8> {
        self.write_bytes(|path| owner_of(path, has_data_subject) == owner)
    }

    fn write_bytes(&self, include: impl Fn(&str) -> bool) -> Vec<u8> {
        // Written directly (this runs for every ingested event), same JSON as building a `Value`.
        let mut out = Vec::with_capacity(64 + 96 * self.fields.len());
        out.extend_from_slice(b"{\"fields\":{");
        let mut first = true;
        for (path, field) in self.fields.iter().filter(|(path, _)| include(path)) {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            write_json(&mut out, path);
            out.extend_from_slice(b":{\"salt\":\"");
            let start = out.len();
            out.resize(start + 44, 0);
            let written = BASE64.encode_slice(field.salt, &mut out[start..]).unwrap_or(0);
            out.truncate(start + written);
            out.extend_from_slice(b"\",\"value\":");
            write_json(&mut out, &field.value);
            out.push(b'}');
        }
        // Writing into a Vec cannot fail.
        let _ = std::io::Write::write_fmt(&mut out, format_args!("}},\"v\":{PERSONAL_DATA_VERSION}}}"));
        out
    }

    /// Decodes what [`PersonalData::to_bytes`] produced.
    pub fn from_bytes(bytes: &[u8]) -> Result<PersonalData, OpenError> {
        let root: Value = serde_json::from_slice(bytes).map_err(|error| malformed(error.to_string()))?;
        if root.get("v").and_then(Value::as_u64) != Some(PERSONAL_DATA_VERSION) {
            return Err(malformed("missing or unsupported \"v\"".to_owned()));
        }
        let Some(Value::Object(entries)) = root.get("fields") else {
            return Err(malformed("\"fields\" must be an object".to_owned()));
        };
        let mut personal = PersonalData::default();
        for (path, entry) in entries {
            let field = decode_field(path, entry)?;
            personal.insert(path, field);
        }
        Ok(personal)
    }
}

/// Whose personal data a field is: the actor's own (`actor.*`, `context.*`) or, when the event
/// has a `data_subject`, the subject's (`changes`, classified `metadata` fields); the index into
/// [`PersonalData::owners`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The event's actor (`actor.id`).
    Actor = 0,
    /// The event's `data_subject`.
    Subject = 1,
}

/// The owner of the personal field at `path`.
pub fn owner_of(path: &str, has_data_subject: bool) -> Owner {
    let about_subject = path == "changes" || path.starts_with("metadata.");
    if has_data_subject && about_subject { Owner::Subject } else { Owner::Actor }
}

fn decode_field(path: &str, entry: &Value) -> Result<PersonalValue, OpenError> {
    let Some(salt) = entry.get("salt").and_then(Value::as_str) else {
        return Err(malformed(format!("\"{path}\" has no salt")));
    };
    let salt = BASE64
        .decode(salt)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| malformed(format!("\"{path}\" salt is not 32 base64-encoded bytes")))?;
    let Some(value) = entry.get("value") else {
        return Err(malformed(format!("\"{path}\" has no value")));
    };
    Ok(PersonalValue { salt, value: value.clone() })
}

fn malformed(message: String) -> OpenError {
    OpenError::MalformedPersonalData(message)
}

/// Appends compact JSON; serialising a `Value` into a `Vec` cannot fail.
fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        debug_assert!(false, "serialising a json value into memory failed");
    }
}
