//! The top-level members of a JSON object in one pass over its text, without parsing their
//! values: for [`super::SealedMembers`], which parses (and so checks) only the members it is asked
//! for. Structure is checked (strings closed, brackets balanced and matched, separators in place,
//! nothing after the object); the inside of a value nobody asks for is not (a bad number or
//! literal there goes unnoticed: checking every byte of every record is the verifier's job).

use std::borrow::Cow;

/// `(key, raw value text)` of each member in order; keys borrowed unless they hold escapes.
pub(super) type RawMembers<'a> = Vec<(Cow<'a, str>, &'a str)>;

/// Deepest nesting of arrays and objects inside a member's value.
const MAX_DEPTH: usize = 128;

/// Splits the object `text` into its members.
pub(super) fn members(text: &str) -> Result<RawMembers<'_>, String> {
    let mut members = Vec::with_capacity(20);
    walk(text, |key, value| members.push((key, value)))?;
    Ok(members)
}

/// The raw value of the member `key` of the object `text` (of repeated keys the last, as in a
/// parsed object), with the whole object's structure checked as [`members`] does, but nothing
/// collected.
pub(super) fn member<'a>(text: &'a str, key: &str) -> Result<Option<&'a str>, String> {
    let mut found = None;
    walk(text, |name, value| {
        if name == key {
            found = Some(value);
        }
    })?;
    Ok(found)
}

/// Calls `each` with every member of the object `text`, in order.
fn walk<'a>(text: &'a str, mut each: impl FnMut(Cow<'a, str>, &'a str)) -> Result<(), String> {
    let bytes = text.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return Err("not a json object".to_owned());
    }
    at = skip_space(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        at += 1;
    } else {
        loop {
            if bytes.get(at) != Some(&b'"') {
                return Err(format!("expected a member name at byte {at}"));
            }
            let key_end = string_end(bytes, at)?;
            let key = key_text(&text[at..key_end])?;
            at = skip_space(bytes, key_end);
            if bytes.get(at) != Some(&b':') {
                return Err(format!("expected ':' at byte {at}"));
            }
            at = skip_space(bytes, at + 1);
            let value_end = value_end(bytes, at)?;
            each(key, &text[at..value_end]);
            at = skip_space(bytes, value_end);
            match bytes.get(at) {
                Some(b',') => at = skip_space(bytes, at + 1),
                Some(b'}') => {
                    at += 1;
                    break;
                }
                _ => return Err(format!("expected ',' or '}}' at byte {at}")),
            }
        }
    }
    if skip_space(bytes, at) != bytes.len() {
        return Err(format!("trailing characters at byte {at}"));
    }
    Ok(())
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The index after the closing quote of the string opening at `start`.
fn string_end(bytes: &[u8], start: usize) -> Result<usize, String> {
    let mut at = start + 1;
    loop {
        // Eight bytes at a time up to the first quote, backslash or control character (most of
        // a record's bytes are inside strings).
        while let Some(chunk) = bytes.get(at..at + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            let special = equal_bytes(word, b'"') | equal_bytes(word, b'\\') | bytes_below(word, 0x20);
            if special != 0 {
                at += (special.trailing_zeros() / 8) as usize;
                break;
            }
            at += 8;
        }
        match bytes.get(at) {
            None => return Err(format!("unterminated string at byte {start}")),
            Some(b'"') => return Ok(at + 1),
            Some(b'\\') => at += 2,
            Some(byte) if *byte < 0x20 => return Err(format!("control character in a string at byte {at}")),
            Some(_) => at += 1,
        }
    }
}

/// Bytes of a little-endian word, one per byte lane.
const LANES: u64 = 0x0101_0101_0101_0101;
/// The top bit of every lane.
const TOPS: u64 = 0x8080_8080_8080_8080;

/// A lane's top bit set for bytes of `word` equal to `byte`. Exact up to the first such byte
/// (the borrow may mark lanes above it), which is all [`string_end`] reads.
fn equal_bytes(word: u64, byte: u8) -> u64 {
    let diff = word ^ (LANES * u64::from(byte));
    diff.wrapping_sub(LANES) & !diff & TOPS
}

/// A lane's top bit set for bytes of `word` below `limit` (at most 128); exact up to the first.
fn bytes_below(word: u64, limit: u8) -> u64 {
    word.wrapping_sub(LANES * u64::from(limit)) & !word & TOPS
}

/// A member name: borrowed without its quotes, or decoded when it holds escapes.
fn key_text(quoted: &str) -> Result<Cow<'_, str>, String> {
    let inner = &quoted[1..quoted.len() - 1];
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(quoted).map(Cow::Owned).map_err(|error| format!("bad member name: {error}"))
}

/// The index after the value starting at `start`: a string, an object or array (brackets
/// matched, strings inside skipped), or a number or literal (up to the next delimiter).
fn value_end(bytes: &[u8], start: usize) -> Result<usize, String> {
    match bytes.get(start) {
        None => Err("missing value at the end".to_owned()),
        Some(b'"') => string_end(bytes, start),
        Some(b'{' | b'[') => {
            // The closing bracket each open one expects, innermost last (on the stack: most
            // values scanned are small objects, and an allocation each would cost more).
            let mut open = [0u8; MAX_DEPTH];
            let mut depth = 0;
            let mut at = start;
            loop {
                match bytes.get(at) {
                    None => return Err(format!("unclosed value at byte {start}")),
                    Some(b'"') => {
                        at = string_end(bytes, at)?;
                        continue;
                    }
                    Some(&bracket @ (b'{' | b'[')) => {
                        let Some(slot) = open.get_mut(depth) else {
                            return Err(format!("value nested deeper than {MAX_DEPTH} at byte {at}"));
                        };
                        *slot = if bracket == b'{' { b'}' } else { b']' };
                        depth += 1;
                    }
                    Some(&close @ (b'}' | b']')) => {
                        let expected = depth.checked_sub(1).and_then(|top| open.get(top));
                        if expected != Some(&close) {
                            return Err(format!("mismatched '{}' at byte {at}", close as char));
                        }
                        depth -= 1;
                        if depth == 0 {
                            return Ok(at + 1);
                        }
                    }
                    Some(_) => {}
                }
                at += 1;
            }
        }
        Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            let mut at = start;
            while bytes.get(at).is_some_and(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')) {
                at += 1;
            }
            Ok(at)
        }
        Some(_) => Err(format!("expected a value at byte {start}")),
    }
}

#[cfg(test)]
mod tests {
    use super::members;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    #[test]
    fn splits_members_and_refuses_broken_structure() {
        let found = members(r#" {"a" : 1, "b":{"c":[1,"}",{"d":null}]} ,"\u0065":"x\"y" } "#).unwrap();
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["a", "b", "e"]);
        assert_eq!(found[1].1, r#"{"c":[1,"}",{"d":null}]}"#);
        assert_eq!(found[2].1, r#""x\"y""#);
        assert!(members("{}").unwrap().is_empty());
        for bad in [
            "",
            "[1]",
            "{",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1"#,
            r#"{"a":1,}"#,
            r#"{"a":[1}"#,
            r#"{"a":{]}"#,
            r#"{"a":"x}"#,
            r#"{"a":1} x"#,
            r#"{a:1}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":1 "b":2}"#,
        ] {
            assert!(members(bad).is_err(), "{bad:?}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(members(&deep).is_err(), "nesting is bounded");
    }

    #[test]
    fn one_member_is_found_with_the_whole_structure_checked() {
        use super::member;
        let text = r#"{"a":1,"b":{"c":[1,"}"]},"a":"last","\u0064":true}"#;
        assert_eq!(member(text, "a").unwrap(), Some(r#""last""#), "of repeated names the last");
        assert_eq!(member(text, "b").unwrap(), Some(r#"{"c":[1,"}"]}"#));
        assert_eq!(member(text, "d").unwrap(), Some("true"), "escaped names decoded");
        assert_eq!(member(text, "z").unwrap(), None);
        assert_eq!(member("{}", "a").unwrap(), None);
        for bad in [r#"{"a":1,}"#, r#"{"a":1} x"#, r#"{"a":[1}"#, r#"{"z":1,"a":{]}"#] {
            assert!(member(bad, "a").is_err(), "{bad:?}: a broken object is refused, found or not");
        }
    }

    /// Strings are skipped eight bytes at a time: the end, an escape or a control character at
    /// any position of a word is found at its byte.
    #[test]
    fn long_strings_end_at_the_right_byte() {
        for len in 0..40 {
            for (filler, escaped) in [("a", "\\\""), ("é", "\\n"), ("😀", "\\u00e9")] {
                let text = filler.repeat(len);
                for at in 0..=len {
                    let inner = format!("{}{escaped}{}", filler.repeat(at), filler.repeat(len - at));
                    let object = format!(r#"{{"k":"{inner}","z":"{text}"}}"#);
                    let found = members(&object).unwrap();
                    assert_eq!(found[0].1, format!("\"{inner}\""), "{object}");
                    assert_eq!(found[1].1, format!("\"{text}\""), "{object}");
                    let control = format!("{{\"k\":\"{}\u{1f}{}\"}}", filler.repeat(at), filler.repeat(len - at));
                    assert!(members(&control).is_err(), "{control:?}");
                    let unterminated = format!("{{\"k\":\"{}", filler.repeat(at));
                    assert!(members(&unterminated).is_err(), "{unterminated:?}");
                }
            }
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            "[ -~\\\\\"\u{e9}\u{1f600}\n]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z\"\\\\ ]{0,6}", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// On any JSON object, compact or pretty, the members and each value's text parse to
        /// what serde_json finds.
        #[test]
        fn agrees_with_serde_json(object in proptest::collection::btree_map("[a-z\"\\\\]{0,6}", json_value(), 0..8), pretty in any::<bool>()) {
            let value = Value::Object(object.into_iter().collect());
            let text = if pretty { serde_json::to_string_pretty(&value).unwrap() } else { value.to_string() };
            let found = members(&text).unwrap();
            let Value::Object(expected) = value else { unreachable!() };
            prop_assert_eq!(found.len(), expected.len());
            for ((key, raw), (expected_key, expected_value)) in found.iter().zip(expected.iter()) {
                prop_assert_eq!(key.as_ref(), expected_key.as_str());
                prop_assert_eq!(&serde_json::from_str::<Value>(raw).unwrap(), expected_value);
            }
        }
    }
}
