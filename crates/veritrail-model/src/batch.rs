//! Parsing HTTP ingest bodies: one event, a JSON array of events, or NDJSON.

use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{BatchError, ValidationError, ValidationErrorKind};
use crate::event::Event;
use crate::json::parse_strict;
use crate::limits::Limits;
use crate::validate::validate_event;
use crate::wire;

#[cfg(test)]
mod tests;

/// How an ingest body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json`: one event object, or an array of event objects.
    Json,
    /// `application/x-ndjson`: one event object per line; blank lines are ignored.
    Ndjson,
}

/// Parses and validates one event from JSON bytes.
pub fn parse_event(json: &[u8], limits: &Limits) -> Result<Event, ValidationError> {
    let text = utf8(json)?;
    let value = parse_strict(text)?;
    validate_event(&value, limits)
}

/// Parses and validates an HTTP ingest body. All-or-nothing: the first bad event rejects the
/// whole body, and [`BatchError::index`] says which one it was.
pub fn parse_batch(body: &[u8], format: BodyFormat, limits: &Limits) -> Result<Vec<Event>, BatchError> {
    if let Some(events) = fast_batch(body, format, limits) {
        return Ok(events);
    }
    reference_batch(body, format, limits)
}

/// Every event of a valid body through the fast path ([`crate::wire`]), and an event it is
/// unsure of through the reference path; `None` as soon as anything is refused or the body is
/// unusual, so that [`reference_batch`] over the whole body decides and words the error exactly
/// as it always has.
fn fast_batch(body: &[u8], format: BodyFormat, limits: &Limits) -> Option<Vec<Event>> {
    if body.len() > limits.max_body_bytes || limits.max_depth > wire::MAX_FAST_DEPTH {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let one = |raw: &str| wire::event(raw, limits).or_else(|| validate_event(&parse_strict(raw).ok()?, limits).ok());
    let events = match format {
        BodyFormat::Json => {
            let text = text.trim_matches(is_json_whitespace);
            if text.starts_with('[') {
                let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
                if items.len() > limits.max_batch_events {
                    return None;
                }
                items.iter().map(|raw| one(raw.get())).collect::<Option<Vec<_>>>()?
            } else {
                vec![one(text)?]
            }
        }
        BodyFormat::Ndjson => {
            let mut events = Vec::new();
            for line in text.split('\n').filter(|line| !is_blank(line)) {
                if events.len() == limits.max_batch_events {
                    return None;
                }
                events.push(one(line)?);
            }
            events
        }
    };
    (!events.is_empty()).then_some(events)
}

/// The reference parser: the whole body as a JSON tree, then [`validate_event`] on each event.
fn reference_batch(body: &[u8], format: BodyFormat, limits: &Limits) -> Result<Vec<Event>, BatchError> {
    if body.len() > limits.max_body_bytes {
        return Err(whole_body(ValidationError::new(
            ValidationErrorKind::BodyTooLarge,
            "",
            format!("body is {} bytes, more than the limit of {} bytes", body.len(), limits.max_body_bytes),
        )));
    }
    let text = utf8(body).map_err(whole_body)?;
    if text.trim().is_empty() {
        return Err(empty());
    }
    let events = match format {
        BodyFormat::Json => parse_json_body(text, limits)?,
        BodyFormat::Ndjson => parse_ndjson_body(text, limits)?,
    };
    if events.is_empty() {
        return Err(empty());
    }
    Ok(events)
}

fn parse_json_body(text: &str, limits: &Limits) -> Result<Vec<Event>, BatchError> {
    let value = parse_strict(text).map_err(whole_body)?;
    match value {
        Value::Object(_) => {
            let event = validate_event(&value, limits).map_err(whole_body)?;
            Ok(vec![event])
        }
        Value::Array(items) => {
            check_batch_len(items.len(), limits)?;
            let mut events = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let event = validate_event(item, limits).map_err(|error| at(index, error))?;
                events.push(event);
            }
            Ok(events)
        }
        _ => Err(whole_body(ValidationError::new(
            ValidationErrorKind::WrongType,
            "",
            "body must be a json object or an array of json objects",
        ))),
    }
}

fn parse_ndjson_body(text: &str, limits: &Limits) -> Result<Vec<Event>, BatchError> {
    let mut events = Vec::new();
    for (line_index, line) in text.split('\n').enumerate() {
        if is_blank(line) {
            continue;
        }
        let index = events.len();
        check_batch_len(index + 1, limits)?;
        let event = parse_ndjson_line(line, line_index + 1, limits).map_err(|error| at(index, error))?;
        events.push(event);
    }
    Ok(events)
}

fn parse_ndjson_line(line: &str, line_number: usize, limits: &Limits) -> Result<Event, ValidationError> {
    let value = parse_strict(line).map_err(|mut error| {
        // serde_json positions are relative to the line; say which line.
        error.message = format!("line {line_number}: {}", error.message);
        error
    })?;
    validate_event(&value, limits)
}

/// Only JSON whitespace (space, tab, CR, LF) counts as blank.
fn is_blank(line: &str) -> bool {
    line.chars().all(is_json_whitespace)
}

fn is_json_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn empty() -> BatchError {
    whole_body(ValidationError::new(ValidationErrorKind::EmptyBatch, "", "body contains no event"))
}

fn check_batch_len(len: usize, limits: &Limits) -> Result<(), BatchError> {
    if len <= limits.max_batch_events {
        return Ok(());
    }
    Err(whole_body(ValidationError::new(
        ValidationErrorKind::BatchTooLarge,
        "",
        format!("batch has more than {} events", limits.max_batch_events),
    )))
}

fn utf8(bytes: &[u8]) -> Result<&str, ValidationError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(error) => Err(ValidationError::new(
            ValidationErrorKind::InvalidUtf8,
            "",
            format!("body is not valid utf-8 (bad byte at offset {})", error.valid_up_to()),
        )),
    }
}

fn whole_body(error: ValidationError) -> BatchError {
    BatchError { index: None, error }
}

fn at(index: usize, error: ValidationError) -> BatchError {
    BatchError { index: Some(index), error }
}
