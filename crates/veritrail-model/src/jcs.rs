//! TEMPORARY stand-in for `veritrail_ledger::jcs` (RFC 8785 JSON Canonicalization Scheme).
//!
//! Switch: once `veritrail-ledger` builds, delete this file, add `veritrail-ledger.workspace =
//! true` to Cargo.toml and make [`canonical_bytes`] call
//! `veritrail_ledger::jcs::canonicalize_to(value, &mut out)`. Nothing else uses JCS directly.
//!
//! This shim is exact for every value an [`crate::Event`] can hold (I-JSON numbers of
//! magnitude ≤ 2^53 − 1): object keys sorted by UTF-16 code units, no whitespace, JCS string
//! escaping (serde_json's, which is the same), numbers in ECMAScript `Number.prototype.toString`
//! form built from the shortest round-trip digits.

use serde_json::{Number, Value};

/// The RFC 8785 canonical bytes of `value`.
pub(crate) fn canonical_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => out.extend_from_slice(format_number(number).as_bytes()),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(object) => {
            let mut entries: Vec<(&String, &Value)> = object.iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(item, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    // serde_json escapes exactly as RFC 8785 §3.2.2.2 asks; serializing a str cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn format_number(number: &Number) -> String {
    if number.is_i64() || number.is_u64() {
        return number.to_string();
    }
    match number.as_f64() {
        Some(value) => format_f64(value),
        None => number.to_string(),
    }
}

/// ECMAScript `Number.prototype.toString` for a finite double.
pub(crate) fn format_f64(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    // Shortest round-trip digits come from serde_json's float printer; only the layout changes.
    let shortest = Number::from_f64(value.abs())
        .map(|n| n.to_string())
        .unwrap_or_default();
    let (mantissa, exponent) = match shortest.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().unwrap_or(0)),
        None => (shortest.as_str(), 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = format!("{integer}{fraction}");
    // value = 0.DIGITS × 10^point
    let mut point = integer.len() as i32 + exponent;
    while digits.starts_with('0') {
        digits.remove(0);
        point -= 1;
    }
    while digits.ends_with('0') {
        digits.pop();
    }
    let sign = if value < 0.0 { "-" } else { "" };
    format!("{sign}{}", layout(&digits, point))
}

/// RFC 8785 / ECMA-262 Number::toString layout of `0.digits × 10^point`.
fn layout(digits: &str, point: i32) -> String {
    let k = digits.len() as i32;
    if k <= point && point <= 21 {
        return format!("{digits}{}", "0".repeat((point - k) as usize));
    }
    if 0 < point && point <= 21 {
        let (head, tail) = digits.split_at(point as usize);
        return format!("{head}.{tail}");
    }
    if -6 < point && point <= 0 {
        return format!("0.{}{digits}", "0".repeat((-point) as usize));
    }
    let exponent = point - 1;
    let exponent_sign = if exponent < 0 { "-" } else { "+" };
    let (head, tail) = digits.split_at(1);
    if tail.is_empty() {
        format!("{head}e{exponent_sign}{}", exponent.abs())
    } else {
        format!("{head}.{tail}e{exponent_sign}{}", exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_follow_ecmascript() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (-1.5, "-1.5"),
            (0.0045, "0.0045"),
            (0.000001, "0.000001"),
            (0.0000001, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (123456789.125, "123456789.125"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.25e22, "1.25e+22"),
            (-0.0, "0"),
            (9007199254740991.0, "9007199254740991"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ];
        for (value, expected) in cases {
            assert_eq!(format_f64(*value), *expected, "{value:e}");
        }
    }

    #[test]
    fn keys_sorted_by_utf16_no_whitespace() {
        // U+1F600 is the surrogate pair D83D DE00 in UTF-16, so it sorts before U+FF61
        // although its code point is larger (RFC 8785 §3.2.3).
        let value = json!({"b": 1, "a": [true, null, "x\n\u{1}"], "\u{1f600}": 2, "\u{20ac}": 3, "\u{ff61}": 4});
        let bytes = canonical_bytes(&value);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "{\"a\":[true,null,\"x\\n\\u0001\"],\"b\":1,\"\u{20ac}\":3,\"\u{1f600}\":2,\"\u{ff61}\":4}"
        );
    }
}
