//! JSON parsing and the checks that apply to every value of an event, whatever its field:
//! duplicate keys, nesting depth, NUL characters, I-JSON number range, serialized size.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::{ValidationError, ValidationErrorKind};
use crate::limits::{Limits, MAX_SAFE_INTEGER};

/// Parses one JSON document, rejecting duplicate object keys (I-JSON, RFC 7493 §2.3).
///
/// serde_json's recursion limit (128 levels) stops deep nesting before it can exhaust the
/// stack; that error comes back as [`ValidationErrorKind::TooDeep`].
pub(crate) fn parse_strict(text: &str) -> Result<Value, ValidationError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = StrictValue::deserialize(&mut deserializer).and_then(|value| {
        deserializer.end()?;
        Ok(value)
    });
    match parsed {
        Ok(StrictValue(value)) => Ok(value),
        Err(error) => Err(json_error(&error)),
    }
}

fn json_error(error: &serde_json::Error) -> ValidationError {
    let message = error.to_string();
    if message.starts_with("recursion limit exceeded") {
        return ValidationError::new(ValidationErrorKind::TooDeep, "", format!("json nested too deeply: {message}"));
    }
    ValidationError::new(ValidationErrorKind::MalformedJson, "", format!("invalid json: {message}"))
}

/// A `serde_json::Value` whose deserialization fails on duplicate object keys.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictValueVisitor)
    }
}

struct StrictValueVisitor;

impl<'de> Visitor<'de> for StrictValueVisitor {
    type Value = StrictValue;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any json value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(value)))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(value.into())))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(value.into())))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<StrictValue, E> {
        match Number::from_f64(value) {
            Some(number) => Ok(StrictValue(Value::Number(number))),
            None => Err(E::custom("number is not finite")),
        }
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(value.to_owned())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(value)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element::<StrictValue>()? {
            items.push(item);
        }
        Ok(StrictValue(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key \"{key}\"")));
            }
            let StrictValue(value) = map.next_value::<StrictValue>()?;
            object.insert(key, value);
        }
        Ok(StrictValue(Value::Object(object)))
    }
}

/// Checks every value of an event: nesting depth, no NUL in strings or keys, numbers within
/// ±(2^53 − 1). `value` is the event object (depth 1).
pub(crate) fn check_values(value: &Value, limits: &Limits) -> Result<(), ValidationError> {
    let mut path = String::new();
    check_value(value, &mut path, 1, limits)
}

/// [`check_values`] for a value found at `path`, `depth` levels down in an event.
pub(crate) fn check_values_at(
    value: &Value,
    path: &mut String,
    depth: usize,
    limits: &Limits,
) -> Result<(), ValidationError> {
    check_value(value, path, depth, limits)
}

fn check_value(value: &Value, path: &mut String, depth: usize, limits: &Limits) -> Result<(), ValidationError> {
    match value {
        Value::Null | Value::Bool(_) => Ok(()),
        Value::Number(number) => check_number(number, path),
        Value::String(text) => check_no_nul(text, path),
        Value::Array(items) => {
            check_depth(depth, path, limits)?;
            for (index, item) in items.iter().enumerate() {
                let parent_len = path.len();
                push_index(path, index);
                check_value(item, path, depth + 1, limits)?;
                path.truncate(parent_len);
            }
            Ok(())
        }
        Value::Object(object) => {
            check_depth(depth, path, limits)?;
            for (key, item) in object {
                let parent_len = path.len();
                push_key(path, key);
                check_no_nul(key, path)?;
                check_value(item, path, depth + 1, limits)?;
                path.truncate(parent_len);
            }
            Ok(())
        }
    }
}

fn check_depth(depth: usize, path: &str, limits: &Limits) -> Result<(), ValidationError> {
    if depth <= limits.max_depth {
        return Ok(());
    }
    Err(ValidationError::new(
        ValidationErrorKind::TooDeep,
        path,
        format!("{} is nested deeper than {} levels", describe(path), limits.max_depth),
    ))
}

fn check_no_nul(text: &str, path: &str) -> Result<(), ValidationError> {
    if !text.contains('\0') {
        return Ok(());
    }
    Err(ValidationError::new(
        ValidationErrorKind::InvalidValue,
        path,
        format!("{} contains a nul character", describe(path)),
    ))
}

fn check_number(number: &Number, path: &str) -> Result<(), ValidationError> {
    if is_safe_number(number) {
        return Ok(());
    }
    Err(ValidationError::new(
        ValidationErrorKind::InvalidValue,
        path,
        format!("{} is a number outside the i-json safe range ±(2^53 − 1); send it as a string", describe(path)),
    ))
}

/// True when the number's magnitude is at most 2^53 − 1 and it is finite. Larger doubles
/// are all integers that may have lost digits on the way in, so they are refused too.
fn is_safe_number(number: &Number) -> bool {
    if let Some(value) = number.as_u64() {
        return value <= MAX_SAFE_INTEGER;
    }
    if let Some(value) = number.as_i64() {
        return value.unsigned_abs() <= MAX_SAFE_INTEGER;
    }
    match number.as_f64() {
        Some(value) => value.is_finite() && value.abs() <= MAX_SAFE_INTEGER as f64,
        None => false,
    }
}

/// Size of the compact JSON serialization of `value`, in bytes.
pub(crate) fn serialized_len(value: &Value) -> usize {
    let mut counter = ByteCounter(0);
    // Writing into a counter cannot fail, and a `Value` always serializes.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends `.key` (or `key` at the root) to a field path.
pub(crate) fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// Appends `[index]` to a field path.
pub(crate) fn push_index(path: &mut String, index: usize) {
    path.push('[');
    path.push_str(&index.to_string());
    path.push(']');
}

/// `field "a.b"`, or `the event` for the root path; used at the start of messages.
pub(crate) fn describe(path: &str) -> String {
    if path.is_empty() { "the event".to_owned() } else { format!("field \"{path}\"") }
}
