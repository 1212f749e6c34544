//! Dotted paths into the event view (`actor.id`, `context.ip`, `metadata.record_count`) for the
//! parts of a rule the query language does not cover: grouping, sums, new values, patterns.

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

use crate::RuleError;

/// What readers see in place of an erased personal value (veritrail-model's `open`).
const ERASED: &str = "[erased]";
/// Longest value kept as (part of) a group key or a known value; longer ones are cut.
pub(crate) const MAX_VALUE_BYTES: usize = 256;
const MAX_METADATA_DEPTH: usize = 8;

/// Top-level fields of the event view, and the keys below those that are objects (`None`:
/// a scalar or an array of scalars; `metadata` takes any key).
const SCHEMA: &[(&str, Option<&[&str]>)] = &[
    ("id", None),
    ("action", None),
    ("occurred_at", None),
    ("received_at", None),
    ("outcome", None),
    ("reason", None),
    ("data_subject", None),
    ("sensitivity", None),
    ("actor", Some(&["id", "type", "name", "email", "roles"])),
    ("resource", Some(&["type", "id", "name"])),
    ("targets", Some(&["type", "id", "name"])),
    ("context", Some(&["ip", "user_agent", "location", "session_id", "request_id", "channel", "endpoint"])),
];

/// A validated dotted path into the event view, e.g. `actor.id`, `targets.id`,
/// `metadata.source.service`. Arrays on the way (`targets`, `actor.roles`, `sensitivity`) are
/// looked through: a path names every value in them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    text: String,
    segments: Vec<String>,
}

impl FieldPath {
    /// Parses `text`; errors name `field`.
    pub(crate) fn parse(field: &str, text: &str) -> Result<FieldPath, RuleError> {
        let unknown = || {
            RuleError::invalid(
                field,
                format!("{text:?} is not a field of the event (e.g. \"actor.id\", \"context.ip\", \"metadata.<key>\")"),
            )
        };
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        let valid_segment = |s: &String| {
            !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !segments.iter().all(valid_segment) {
            return Err(unknown());
        }
        if segments[0] == "metadata" {
            if segments.len() < 2 || segments.len() > MAX_METADATA_DEPTH + 1 {
                return Err(RuleError::invalid(field, "metadata paths are 1 to 8 keys below \"metadata\""));
            }
        } else {
            let Some((_, children)) = SCHEMA.iter().find(|(name, _)| *name == segments[0]) else {
                return Err(unknown());
            };
            let valid = match children {
                None => segments.len() == 1,
                Some(children) => segments.len() == 2 && children.contains(&segments[1].as_str()),
            };
            if !valid {
                return Err(unknown());
            }
        }
        Ok(FieldPath { text: text.to_owned(), segments })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for `metadata.…` paths.
    pub(crate) fn is_metadata(&self) -> bool {
        self.segments[0] == "metadata"
    }

    /// The single scalar at this path as text (see [`scalar_text`]); `None` when absent, erased,
    /// an object or an array.
    pub(crate) fn text_in<'v>(&self, view: &'v Value) -> Option<Cow<'v, str>> {
        scalar_text(self.value_in(view)?)
    }

    /// The number at this path, if it is a JSON number.
    pub(crate) fn number_in(&self, view: &Value) -> Option<f64> {
        self.value_in(view)?.as_f64()
    }

    fn value_in<'a>(&self, view: &'a Value) -> Option<&'a Value> {
        let mut at = view;
        for segment in &self.segments {
            at = at.get(segment)?;
        }
        Some(at)
    }

    /// Calls `found` with every string at this path, looking through arrays; stops when it
    /// returns true and returns whether it did.
    pub(crate) fn any_str(&self, view: &Value, found: &mut dyn FnMut(&str) -> bool) -> bool {
        any_str_below(view, &self.segments, found)
    }
}

fn any_str_below(at: &Value, segments: &[String], found: &mut dyn FnMut(&str) -> bool) -> bool {
    match at {
        Value::Array(items) => items.iter().any(|item| any_str_below(item, segments, found)),
        _ => match segments.split_first() {
            Some((first, rest)) => at.get(first).is_some_and(|next| any_str_below(next, rest, found)),
            None => at.as_str().is_some_and(|text| text != ERASED && found(text)),
        },
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A scalar as text (a string as itself; a number or boolean as its JSON text, as the query
/// language's `metadata.<key>` filter compares them), cut to [`MAX_VALUE_BYTES`]. `None` for
/// null, objects, arrays and erased personal values: such an event has no value to group by.
pub(crate) fn scalar_text(value: &Value) -> Option<Cow<'_, str>> {
    let text: Cow<'_, str> = match value {
        Value::String(s) if s == ERASED || s.is_empty() => return None,
        Value::String(s) => Cow::Borrowed(s),
        Value::Number(n) => Cow::Owned(n.to_string()),
        Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
    };
    if text.len() <= MAX_VALUE_BYTES {
        return Some(text);
    }
    let mut cut = MAX_VALUE_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(Cow::Owned(text[..cut].to_owned()))
}

/// A glob over a value, case-insensitive (ASCII), with `*` matching any run of characters:
/// `*admin*`, `owner`, `org_*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValuePattern(String);

impl ValuePattern {
    pub(crate) fn parse(field: &str, text: &str) -> Result<ValuePattern, RuleError> {
        let valid = !text.is_empty()
            && text.len() <= 128
            && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:@*-".contains(&b));
        if !valid {
            return Err(RuleError::invalid(
                field,
                format!("{text:?} must be a lowercase pattern of letters, digits, _ . : @ - and * wildcards"),
            ));
        }
        Ok(ValuePattern(text.to_owned()))
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `value` matches, ignoring ASCII case.
    pub fn matches(&self, value: &str) -> bool {
        glob_match_ignore_case(self.0.as_bytes(), value.as_bytes())
    }
}

/// veritrail-query's glob, comparing the text lowercased.
fn glob_match_ignore_case(pattern: &[u8], text: &[u8]) -> bool {
    veritrail_query::glob_match_by(pattern, text, |p, t| p == t.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_are_checked_against_the_event_schema() {
        for good in ["actor.id", "context.ip", "targets.id", "actor.roles", "metadata.source.service", "action"] {
            assert!(FieldPath::parse("group_by[0]", good).is_ok(), "{good}");
        }
        for bad in
            ["", "actr.id", "actor", "actor.id.x", "context.ipaddr", "metadata", "metadata..x", "action.x", "a b"]
        {
            let error = FieldPath::parse("group_by[0]", bad).unwrap_err();
            assert_eq!(error.field(), "group_by[0]", "{bad}");
        }
    }

    #[test]
    fn values_resolve_like_query_metadata_filters() {
        let view = json!({
            "actor": {"id": "u-1", "roles": ["Org_Admin", "member"]},
            "context": {"ip": "[erased]"},
            "targets": [{"id": "t-1"}, {"id": "t-2"}],
            "metadata": {"record_count": 12000, "flag": true, "nested": {"a": "b"}}
        });
        let path = |text: &str| FieldPath::parse("f", text).unwrap();
        assert_eq!(path("actor.id").text_in(&view).as_deref(), Some("u-1"));
        assert_eq!(path("metadata.record_count").text_in(&view).as_deref(), Some("12000"));
        assert_eq!(path("metadata.record_count").number_in(&view), Some(12000.0));
        assert_eq!(path("metadata.flag").text_in(&view).as_deref(), Some("true"));
        assert_eq!(path("metadata.nested").text_in(&view), None);
        assert_eq!(path("context.ip").text_in(&view), None, "erased values group nothing");
        assert_eq!(path("actor.roles").text_in(&view), None);

        let admin = ValuePattern::parse("p", "*admin*").unwrap();
        assert!(path("actor.roles").any_str(&view, &mut |v| admin.matches(v)));
        let t2 = ValuePattern::parse("p", "t-2").unwrap();
        assert!(path("targets.id").any_str(&view, &mut |v| t2.matches(v)));
        let any = ValuePattern::parse("p", "*").unwrap();
        assert!(!path("context.ip").any_str(&view, &mut |v| any.matches(v)));
    }

    #[test]
    fn long_values_are_cut_on_a_char_boundary() {
        let long = json!("é".repeat(200));
        let text = scalar_text(&long).unwrap();
        assert!(text.len() <= MAX_VALUE_BYTES && text.chars().all(|c| c == 'é'));
    }
}
