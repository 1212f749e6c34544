//! Business hours (`outside_hours`): a time zone, the working days and a daily time range.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

use crate::RuleError;
use crate::json::{Obj, Result};

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const FIELDS: &[&str] = &["timezone", "days", "from", "to"];

/// A tenant's business hours, e.g. Monday to Friday 08:00–18:00 in `Europe/Berlin`. Written in
/// a rule as `"outside_hours": {"timezone": "Europe/Berlin", "days": "mon-fri", "from": "08:00",
/// "to": "18:00"}`, where the rule's condition is that the event happened *outside* them.
///
/// `days` is a comma list of day names (`mon` … `sun`) and ranges (`mon-fri`, `fri-mon` wraps);
/// `from`/`to` are `HH:MM` in local time, `to` exclusive and allowed to be `24:00`. When `from`
/// is later than `to` the hours run overnight and belong to the day they start on
/// (`"days": "mon-fri", "from": "22:00", "to": "06:00"` covers Saturday 03:00).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessHours {
    timezone_name: String,
    timezone: TimeZone,
    days_text: String,
    /// Bit `i` set: day `i` (Monday = 0) is a working day.
    days: u8,
    from: u16,
    to: u16,
}

impl BusinessHours {
    /// Business hours from their four parts; errors name `outside_hours.<part>`.
    pub fn new(timezone: &str, days: &str, from: &str, to: &str) -> std::result::Result<BusinessHours, RuleError> {
        BusinessHours::build("outside_hours", timezone, days, from, to)
    }

    /// Monday to Friday, 08:00–18:00 UTC: the hours the default pack uses for a tenant that has
    /// not set its own.
    pub fn office_hours_utc() -> BusinessHours {
        BusinessHours {
            timezone_name: "UTC".to_owned(),
            timezone: TimeZone::UTC,
            days_text: "mon-fri".to_owned(),
            days: 0b001_1111,
            from: 8 * 60,
            to: 18 * 60,
        }
    }

    pub(crate) fn parse(value: &Value, path: &str) -> Result<BusinessHours> {
        let obj = Obj::open(value, path, FIELDS)?;
        BusinessHours::build(
            path,
            obj.required_str("timezone")?,
            obj.required_str("days")?,
            obj.required_str("from")?,
            obj.required_str("to")?,
        )
    }

    fn build(path: &str, timezone: &str, days: &str, from: &str, to: &str) -> Result<BusinessHours> {
        let field = |name: &str| format!("{path}.{name}");
        let tz = TimeZone::get(timezone)
            .map_err(|_| RuleError::UnknownTimeZone { field: field("timezone"), name: timezone.to_owned() })?;
        let day_mask = parse_days(&field("days"), days)?;
        let from_minute = parse_time_of_day(&field("from"), from, false)?;
        let to_minute = parse_time_of_day(&field("to"), to, true)?;
        if from_minute == to_minute {
            return Err(RuleError::invalid(field("to"), "from and to must differ"));
        }
        Ok(BusinessHours {
            timezone_name: timezone.to_owned(),
            timezone: tz,
            days_text: days.to_owned(),
            days: day_mask,
            from: from_minute,
            to: to_minute,
        })
    }

    /// The time zone name as given.
    pub fn timezone(&self) -> &str {
        &self.timezone_name
    }

    /// The working days as given (`mon-fri`).
    pub fn days(&self) -> &str {
        &self.days_text
    }

    /// Start of the working day, `HH:MM`.
    pub fn from(&self) -> String {
        format_minute(self.from)
    }

    /// End of the working day (exclusive), `HH:MM`.
    pub fn to(&self) -> String {
        format_minute(self.to)
    }

    /// Whether `at` falls inside business hours.
    pub fn contains(&self, at: Timestamp) -> bool {
        let local = self.timezone.to_datetime(at);
        let day = local.weekday().to_monday_zero_offset() as u8;
        let minute = u16::from(local.hour() as u8) * 60 + u16::from(local.minute() as u8);
        let works = |day: u8| self.days & (1 << day) != 0;
        if self.from < self.to {
            works(day) && self.from <= minute && minute < self.to
        } else {
            let previous = (day + 6) % 7;
            (works(day) && minute >= self.from) || (works(previous) && minute < self.to)
        }
    }

    /// The local date and time of `at` in these hours' time zone, for alert summaries.
    pub(crate) fn local_text(&self, at: Timestamp) -> String {
        let local = self.timezone.to_datetime(at);
        format!("{} {}", local.strftime("%a %Y-%m-%d %H:%M"), self.timezone_name)
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({"timezone": self.timezone_name, "days": self.days_text, "from": self.from(), "to": self.to()})
    }
}

fn parse_days(field: &str, text: &str) -> Result<u8> {
    let malformed =
        || RuleError::invalid(field, format!("{text:?} is not a list of days like \"mon-fri\" or \"sat,sun\""));
    let day = |name: &str| DAY_NAMES.iter().position(|d| *d == name).map(|i| i as u8);
    let mut mask = 0u8;
    for item in text.split(',') {
        match item.split_once('-') {
            None => mask |= 1 << day(item).ok_or_else(malformed)?,
            Some((first, last)) => {
                let (mut at, last) = (day(first).ok_or_else(malformed)?, day(last).ok_or_else(malformed)?);
                loop {
                    mask |= 1 << at;
                    if at == last {
                        break;
                    }
                    at = (at + 1) % 7;
                }
            }
        }
    }
    Ok(mask)
}

fn parse_time_of_day(field: &str, text: &str, allow_end_of_day: bool) -> Result<u16> {
    let malformed = || RuleError::invalid(field, format!("{text:?} is not a time of day like \"08:00\""));
    let bytes = text.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' || !bytes.iter().enumerate().all(|(i, b)| i == 2 || b.is_ascii_digit()) {
        return Err(malformed());
    }
    let hour = u16::from(bytes[0] - b'0') * 10 + u16::from(bytes[1] - b'0');
    let minute = u16::from(bytes[3] - b'0') * 10 + u16::from(bytes[4] - b'0');
    match (hour, minute) {
        (24, 0) if allow_end_of_day => Ok(24 * 60),
        (0..=23, 0..=59) => Ok(hour * 60 + minute),
        _ => Err(malformed()),
    }
}

fn format_minute(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn berlin_office_hours_follow_local_time_and_dst() {
        let hours = BusinessHours::new("Europe/Berlin", "mon-fri", "08:00", "18:00").unwrap();
        // Thursday 2026-01-15: CET (UTC+1).
        assert!(!hours.contains(at("2026-01-15T06:59:59Z")));
        assert!(hours.contains(at("2026-01-15T07:00:00Z")));
        assert!(hours.contains(at("2026-01-15T16:59:59Z")));
        assert!(!hours.contains(at("2026-01-15T17:00:00Z")));
        // Thursday 2026-07-16: CEST (UTC+2).
        assert!(hours.contains(at("2026-07-16T06:00:00Z")));
        assert!(!hours.contains(at("2026-07-16T16:00:00Z")));
        // Saturday.
        assert!(!hours.contains(at("2026-01-17T10:00:00Z")));
        // Friday 23:30 UTC is Saturday 00:30 in Berlin.
        assert!(!hours.contains(at("2026-01-16T23:30:00Z")));
    }

    #[test]
    fn overnight_hours_belong_to_the_day_they_start() {
        let hours = BusinessHours::new("UTC", "mon-fri", "22:00", "06:00").unwrap();
        assert!(hours.contains(at("2026-01-16T23:00:00Z"))); // Friday night
        assert!(hours.contains(at("2026-01-17T03:00:00Z"))); // Saturday early: Friday's shift
        assert!(!hours.contains(at("2026-01-17T23:00:00Z"))); // Saturday night
        assert!(!hours.contains(at("2026-01-19T03:00:00Z"))); // Monday early: Sunday's shift
        assert!(!hours.contains(at("2026-01-16T12:00:00Z")));
    }

    #[test]
    fn day_lists_and_wrapping_ranges() {
        assert_eq!(parse_days("d", "mon-fri").unwrap(), 0b001_1111);
        assert_eq!(parse_days("d", "sat,sun").unwrap(), 0b110_0000);
        assert_eq!(parse_days("d", "fri-mon").unwrap(), 0b111_0001);
        assert_eq!(parse_days("d", "mon,wed-thu").unwrap(), 0b000_1101);
        assert_eq!(parse_days("d", "mon-mon").unwrap(), 0b000_0001);
        for bad in ["", "monday", "Mon", "mon-", "mon,,tue", "mon - fri", "mon-fri-sat"] {
            assert_eq!(parse_days("outside_hours.days", bad).unwrap_err().field(), "outside_hours.days", "{bad}");
        }
    }

    #[test]
    fn bad_parts_are_named() {
        let cases = [
            (("Mars/Olympus", "mon-fri", "08:00", "18:00"), "outside_hours.timezone"),
            (("UTC", "weekdays", "08:00", "18:00"), "outside_hours.days"),
            (("UTC", "mon-fri", "8:00", "18:00"), "outside_hours.from"),
            (("UTC", "mon-fri", "24:00", "18:00"), "outside_hours.from"),
            (("UTC", "mon-fri", "08:00", "18:60"), "outside_hours.to"),
            (("UTC", "mon-fri", "08:00", "08:00"), "outside_hours.to"),
        ];
        for ((tz, days, from, to), field) in cases {
            assert_eq!(BusinessHours::new(tz, days, from, to).unwrap_err().field(), field);
        }
        assert_eq!(
            BusinessHours::new("Mars/Olympus", "mon", "08:00", "18:00").unwrap_err().code(),
            "unknown_time_zone"
        );
        assert!(BusinessHours::new("UTC", "mon-sun", "00:00", "24:00").is_ok());
    }
}
