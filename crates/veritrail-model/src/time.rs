//! Parsing and printing of the two timestamp formats the schema uses.
//!
//! Printing is done by hand, not through a library's `Display`, because the sealed record's
//! timestamp spelling is fixed forever.

use jiff::Timestamp;
use jiff::tz::Offset;

/// Checks the RFC 3339 `date-time` shape: `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, `T` and
/// `Z` in either case. Range checks (month 13, hour 25...) are left to the parser.
pub(crate) fn is_rfc3339_shape(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() < 20 {
        return false;
    }
    let date_time_ok = digits(&bytes[0..4])
        && bytes[4] == b'-'
        && digits(&bytes[5..7])
        && bytes[7] == b'-'
        && digits(&bytes[8..10])
        && matches!(bytes[10], b'T' | b't')
        && digits(&bytes[11..13])
        && bytes[13] == b':'
        && digits(&bytes[14..16])
        && bytes[16] == b':'
        && digits(&bytes[17..19]);
    if !date_time_ok {
        return false;
    }
    let mut rest = &bytes[19..];
    if rest.first() == Some(&b'.') {
        let fraction_len = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=9).contains(&fraction_len) {
            return false;
        }
        rest = &rest[1 + fraction_len..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        // RFC 3339 §5.6: time-numoffset hours 00-23, minutes 00-59.
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            digits(&[*h1, *h2, *m1, *m2]) && (*h1 - b'0') * 10 + (*h2 - b'0') <= 23 && *m1 <= b'5'
        }
        _ => false,
    }
}

fn digits(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| b.is_ascii_digit())
}

/// Parses an RFC 3339 timestamp with an offset; `None` if it is not one.
pub(crate) fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    if !is_rfc3339_shape(text) {
        return None;
    }
    text.parse::<Timestamp>().ok()
}

/// The UTC year of a timestamp.
pub(crate) fn utc_year(timestamp: Timestamp) -> i16 {
    Offset::UTC.to_datetime(timestamp).year()
}

/// `2026-01-15T14:32:11.234Z`: UTC, exactly three fractional digits (truncated).
pub fn format_millis(timestamp: Timestamp) -> String {
    format_utc(timestamp, 3)
}

/// UTC with 3, 6 or 9 fractional digits: the fewest of those that print the instant exactly.
/// `2026-01-15T14:32:11.000Z`, `2026-01-15T14:32:11.234567Z`.
pub fn format_exact(timestamp: Timestamp) -> String {
    let nanos = Offset::UTC.to_datetime(timestamp).subsec_nanosecond();
    let digits = if nanos % 1_000_000 == 0 {
        3
    } else if nanos % 1_000 == 0 {
        6
    } else {
        9
    };
    format_utc(timestamp, digits)
}

fn format_utc(timestamp: Timestamp, fraction_digits: u32) -> String {
    let datetime = Offset::UTC.to_datetime(timestamp);
    // Civil nanoseconds are never negative, unlike `Timestamp::subsec_nanosecond` before 1970.
    let nanos = datetime.subsec_nanosecond();
    let fraction = nanos / 10_i32.pow(9 - fraction_digits);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:0width$}Z",
        datetime.year(),
        datetime.month(),
        datetime.day(),
        datetime.hour(),
        datetime.minute(),
        datetime.second(),
        fraction,
        width = fraction_digits as usize,
    )
}

/// Truncates a timestamp to whole milliseconds.
pub(crate) fn truncate_to_millis(timestamp: Timestamp) -> Timestamp {
    let millis = timestamp.as_millisecond();
    Timestamp::from_millisecond(millis).unwrap_or(timestamp)
}
