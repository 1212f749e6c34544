//! `genTime`: a GeneralizedTime that RFC 3161 §2.4.2 allows to carry fractional seconds
//! (`YYYYMMDDhhmmss[.s...]Z`, no trailing zeros in the fraction), which `der` does not accept.

use der::asn1::Any;
use der::{Tag, Tagged};
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use crate::{TsaError, TsaResult};

fn malformed(detail: impl Into<String>) -> TsaError {
    TsaError::Malformed { what: "TSTInfo genTime", detail: detail.into() }
}

/// Parses the raw `genTime` of a `TSTInfo`.
pub(crate) fn parse_gen_time(raw: &Any) -> TsaResult<Timestamp> {
    if raw.tag() != Tag::GeneralizedTime {
        return Err(malformed(format!("expected a GeneralizedTime, found {}", raw.tag())));
    }
    let text = std::str::from_utf8(raw.value()).map_err(|_| malformed("not ASCII"))?;
    parse_generalized_time(text).ok_or_else(|| malformed(format!("{text:?} is not YYYYMMDDhhmmss[.f]Z")))
}

/// `YYYYMMDDhhmmss[.f{1,9}]Z`, as DER requires it (UTC, no trailing zero in the fraction).
fn parse_generalized_time(text: &str) -> Option<Timestamp> {
    let body = text.strip_suffix('Z')?;
    let (whole, fraction) = match body.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (body, None),
    };
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| whole.get(range)?.parse::<i16>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(8..10)?, number(10..12)?, number(12..14)?);
    let nanos = match fraction {
        None => 0,
        Some(digits) => {
            let valid =
                (1..=9).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.ends_with('0');
            if !valid {
                return None;
            }
            let value: i32 = digits.parse().ok()?;
            value * 10i32.pow(9 - digits.len() as u32)
        }
    };
    let civil = DateTime::new(
        year,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        nanos,
    )
    .ok()?;
    Some(civil.to_zoned(TimeZone::UTC).ok()?.timestamp())
}

#[cfg(test)]
mod tests {
    use super::parse_generalized_time;

    fn check(text: &str, expected: Option<&str>) {
        let parsed = parse_generalized_time(text).map(|t| t.to_string());
        assert_eq!(parsed.as_deref(), expected, "{text}");
    }

    #[test]
    fn gen_time_forms() {
        check("20260115143211Z", Some("2026-01-15T14:32:11Z"));
        check("20260115143211.5Z", Some("2026-01-15T14:32:11.5Z"));
        check("20260115143211.123456789Z", Some("2026-01-15T14:32:11.123456789Z"));
        check("20260115143211.120Z", None); // trailing zero is not DER
        check("20260115143211.Z", None);
        check("20260115143211", None); // local time
        check("2026011514321Z", None);
        check("20261315143211Z", None); // month 13
        check("20260115143211+0100", None);
        check("2026-1-15143211Z", None);
    }
}
