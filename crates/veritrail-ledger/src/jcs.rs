//! RFC 8785 JSON Canonicalization Scheme (JCS): the exact bytes a leaf hash commits to.
//!
//! - Objects: members sorted by their names' UTF-16 code units, no whitespace.
//! - Strings: `\"`, `\\`, `\b`, `\t`, `\n`, `\f`, `\r` as short escapes, other characters
//!   below U+0020 as `\u00xx` (lowercase hex), everything else as literal UTF-8 (RFC 8785
//!   §3.2.2.2).
//! - Numbers: the IEEE 754 double printed as ECMAScript's `Number.prototype.toString`
//!   (RFC 8785 §3.2.2.3), by `ryu-js`; `-0` prints as `0`.
//!
//! Integers: `serde_json` keeps integers as `u64`/`i64`, while JCS is defined on doubles.
//! An integer is printed as its nearest double when that prints back as the very same
//! digits (every `|n| <= 2^53` does); any other integer is refused with
//! [`JcsError::IntegerNotPreserved`] rather than silently changed, since the ledger would
//! otherwise commit to another value than the one received (a 64-bit id, say). Callers
//! should keep integers within the I-JSON range `|n| <= 2^53` (RFC 7493 §2.2), where every
//! implementation agrees, and send larger ones as strings. Number literals too large for
//! `u64`/`i64` reach this module as doubles, like fractions, and are canonicalized as such.
//!
//! Nesting is limited to [`MAX_DEPTH`] arrays and objects, the most `serde_json` parses
//! back, so that every canonical document can be read and re-checked by [`is_canonical`].

use std::cmp::Ordering;

use serde_json::{Number, Value};

use crate::hash::hex_digit;

#[cfg(test)]
mod tests;

/// The deepest nesting of arrays and objects that is canonicalized (`serde_json`'s parser
/// refuses deeper documents).
pub const MAX_DEPTH: usize = 127;

/// Why a JSON value has no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    /// An integer that would not survive canonicalization unchanged.
    #[error("integer {integer} would become {canonical} in canonical JSON")]
    IntegerNotPreserved {
        /// The integer.
        integer: String,
        /// What its canonical form would be.
        canonical: String,
    },
    /// NaN or an infinity (only reachable through `serde_json`'s `arbitrary_precision`).
    #[error("number is not finite")]
    NonFiniteNumber,
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    #[error("JSON is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Output that is not UTF-8 (an internal error: never produced from a `Value`).
    #[error("canonical form is not utf-8")]
    NotUtf8,
}

/// The RFC 8785 canonical form of `value`.
pub fn canonicalize(value: &Value) -> Result<String, JcsError> {
    let mut out = Vec::new();
    write_value(value, 0, &mut out)?;
    // Only whole UTF-8 strings and ASCII are ever written, so this cannot fail.
    String::from_utf8(out).map_err(|_| JcsError::NotUtf8)
}

/// Appends the RFC 8785 canonical form of `value` to `out`. On error `out` is left as it
/// was.
pub fn canonicalize_to(value: &Value, out: &mut Vec<u8>) -> Result<(), JcsError> {
    let start = out.len();
    let written = write_value(value, 0, out);
    if written.is_err() {
        out.truncate(start);
    }
    written
}

/// Appends the RFC 8785 canonical form of the string `string` (quotes included) to `out`.
pub fn write_string(string: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    // Every character that needs escaping is ASCII, so the runs between them are copied
    // whole and the cuts always fall on character boundaries.
    let bytes = string.as_bytes();
    // Most strings need no escape at all: look for one a chunk at a time (this loop
    // vectorizes), and copy the whole string when there is none.
    let clean = bytes.chunks(16).all(|chunk| !chunk.iter().fold(false, |found, &b| found | needs_escape(b)));
    if clean {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut run_start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        // `None`: a control character without a short form.
        let short_escape: Option<&[u8]> = match byte {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            b'\t' => Some(b"\\t"),
            b'\n' => Some(b"\\n"),
            0x0c => Some(b"\\f"),
            b'\r' => Some(b"\\r"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[run_start..i]);
        match short_escape {
            Some(escape) => out.extend_from_slice(escape),
            None => {
                out.extend_from_slice(b"\\u00");
                out.push(hex_digit(byte >> 4) as u8);
                out.push(hex_digit(byte & 0x0f) as u8);
            }
        }
        run_start = i + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

/// Whether `bytes` are exactly the canonical form of the JSON they contain (so, among
/// others: valid UTF-8 JSON, no insignificant whitespace, no duplicate member names, sorted
/// members, shortest number forms).
pub fn is_canonical(bytes: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return false;
    };
    match canonicalize(&value) {
        Ok(canonical) => canonical.as_bytes() == bytes,
        Err(_) => false,
    }
}

fn write_value(value: &Value, depth: usize, out: &mut Vec<u8>) -> Result<(), JcsError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => write_number(number, out)?,
        Value::String(string) => write_string(string, out),
        Value::Array(items) => {
            let depth = nest(depth)?;
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, depth, out)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let depth = nest(depth)?;
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| compare_utf16(a, b));
            out.push(b'{');
            for (i, (name, member)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_value(member, depth, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// `"`, `\\` and the control characters: the bytes RFC 8785 writes as escapes.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

fn nest(depth: usize) -> Result<usize, JcsError> {
    if depth >= MAX_DEPTH {
        return Err(JcsError::TooDeep);
    }
    Ok(depth + 1)
}

/// RFC 8785 §3.2.3: member names compare as arrays of UTF-16 code units, which differs
/// from UTF-8 byte order once characters beyond U+FFFF meet U+E000..U+FFFF.
fn compare_utf16(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_number(number: &Number, out: &mut Vec<u8>) -> Result<(), JcsError> {
    if let Some(unsigned) = number.as_u64() {
        write_integer(i128::from(unsigned), out)
    } else if let Some(signed) = number.as_i64() {
        write_integer(i128::from(signed), out)
    } else {
        write_double(number.as_f64().ok_or(JcsError::NonFiniteNumber)?, out)
    }
}

/// The largest integer magnitude below which every integer is exactly a double.
const MAX_EXACT_INTEGER: i128 = 1 << 53;

fn write_integer(integer: i128, out: &mut Vec<u8>) -> Result<(), JcsError> {
    let double = integer as f64;
    if integer.abs() <= MAX_EXACT_INTEGER {
        return write_double(double, out);
    }
    let mut canonical = Vec::new();
    write_double(double, &mut canonical)?;
    if canonical != integer.to_string().as_bytes() {
        let canonical = String::from_utf8_lossy(&canonical).into_owned();
        return Err(JcsError::IntegerNotPreserved { integer: integer.to_string(), canonical });
    }
    out.extend_from_slice(&canonical);
    Ok(())
}

/// ECMAScript `Number.prototype.toString` (RFC 8785 §3.2.2.3).
fn write_double(double: f64, out: &mut Vec<u8>) -> Result<(), JcsError> {
    if !double.is_finite() {
        return Err(JcsError::NonFiniteNumber);
    }
    // ECMAScript prints negative zero as "0".
    let double = if double == 0.0 { 0.0 } else { double };
    out.extend_from_slice(ryu_js::Buffer::new().format_finite(double).as_bytes());
    Ok(())
}
