//! Windows such as `90s`, `10m`, `1h`, `7d`, and the integer time the engine computes with.

use std::fmt;

use jiff::{SignedDuration, Timestamp};

use crate::RuleError;

/// Instants and durations inside the engine: microseconds (since the Unix epoch for instants).
pub(crate) type Micros = i64;

pub(crate) const MICROS_PER_SECOND: Micros = 1_000_000;

pub(crate) fn micros(at: Timestamp) -> Micros {
    // Within jiff's range (±9999 years) microseconds fit an i64 with room to spare.
    at.as_microsecond()
}

pub(crate) fn timestamp(at: Micros) -> Timestamp {
    Timestamp::from_microsecond(at).unwrap_or(if at < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// The unit of a [`Window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowUnit {
    /// `s`
    Seconds,
    /// `m`
    Minutes,
    /// `h`
    Hours,
    /// `d` (24 hours: windows are elapsed time, not calendar days)
    Days,
}

impl WindowUnit {
    fn seconds(self) -> i64 {
        match self {
            WindowUnit::Seconds => 1,
            WindowUnit::Minutes => 60,
            WindowUnit::Hours => 3600,
            WindowUnit::Days => 86_400,
        }
    }

    fn suffix(self) -> char {
        match self {
            WindowUnit::Seconds => 's',
            WindowUnit::Minutes => 'm',
            WindowUnit::Hours => 'h',
            WindowUnit::Days => 'd',
        }
    }
}

/// A length of elapsed time written `<integer><unit>` with unit `s`, `m`, `h` or `d`: `90s`,
/// `10m`, `1h`, `7d`. Kept as written, so a rule serialises back to the text it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    amount: u32,
    unit: WindowUnit,
}

/// Inclusive limits of one kind of window, in seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowLimits {
    pub(crate) min: Window,
    pub(crate) max: Window,
}

impl Window {
    /// A window of `amount` units.
    pub const fn new(amount: u32, unit: WindowUnit) -> Window {
        Window { amount, unit }
    }

    /// The number of units.
    pub fn amount(&self) -> u32 {
        self.amount
    }

    /// The unit.
    pub fn unit(&self) -> WindowUnit {
        self.unit
    }

    /// The window as a duration.
    pub fn duration(&self) -> SignedDuration {
        SignedDuration::from_secs(self.seconds())
    }

    fn seconds(&self) -> i64 {
        i64::from(self.amount) * self.unit.seconds()
    }

    pub(crate) fn micros(&self) -> Micros {
        self.seconds() * MICROS_PER_SECOND
    }

    /// Parses `text`, checking it against `limits`; errors name `field`.
    pub(crate) fn parse(field: &str, text: &str, limits: WindowLimits) -> Result<Window, RuleError> {
        let malformed = || RuleError::InvalidWindow {
            field: field.to_owned(),
            message: format!("{text:?} is not a window like \"90s\", \"10m\", \"1h\" or \"7d\""),
        };
        let Some(last) = text.chars().last() else {
            return Err(malformed());
        };
        let unit = match last {
            's' => WindowUnit::Seconds,
            'm' => WindowUnit::Minutes,
            'h' => WindowUnit::Hours,
            'd' => WindowUnit::Days,
            _ => return Err(malformed()),
        };
        let digits = &text[..text.len() - 1];
        let well_formed = !digits.is_empty()
            && digits.len() <= 7
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !(digits.len() > 1 && digits.starts_with('0'));
        if !well_formed {
            return Err(malformed());
        }
        let amount: u32 = digits.parse().map_err(|_| malformed())?;
        let window = Window { amount, unit };
        if window.seconds() < limits.min.seconds() || window.seconds() > limits.max.seconds() {
            return Err(RuleError::InvalidWindow {
                field: field.to_owned(),
                message: format!("{text:?} must be from {} to {}", limits.min, limits.max),
            });
        }
        Ok(window)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.unit.suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: WindowLimits =
        WindowLimits { min: Window::new(1, WindowUnit::Seconds), max: Window::new(7, WindowUnit::Days) };

    #[test]
    fn windows_parse_and_print_as_written() {
        for (text, seconds) in [("90s", 90), ("10m", 600), ("1h", 3600), ("7d", 604_800), ("60m", 3600)] {
            let window = Window::parse("w", text, LIMITS).unwrap();
            assert_eq!(window.duration(), SignedDuration::from_secs(seconds), "{text}");
            assert_eq!(window.to_string(), text);
        }
    }

    #[test]
    fn bad_windows_are_rejected_with_the_field() {
        for text in ["", "m", "10", "10 m", "-1m", "+1m", "1.5h", "01m", "10M", "1w", "0s", "8d", "99999999s", "１m"] {
            let error = Window::parse("threshold.window", text, LIMITS).unwrap_err();
            assert_eq!(error.field(), "threshold.window", "{text}");
            assert_eq!(error.code(), "invalid_window", "{text}");
        }
    }
}
