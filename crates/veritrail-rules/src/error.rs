//! The crate's one error type.

/// Why a rule (or an event handed to the engine) was rejected. Every variant names the field at
/// fault with its full path (`when.action`, `threshold.window`, `group_by[1]`, `outside_hours.days`)
/// and has a stable [`code`](RuleError::code) the server can put in API error bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A field the rule model does not know.
    #[error("{field}: unknown field")]
    UnknownField {
        /// Path of the unknown field.
        field: String,
    },
    /// A required field is absent or `null`.
    #[error("{field}: missing required field")]
    MissingField {
        /// Path of the missing field.
        field: String,
    },
    /// A field has the wrong JSON type.
    #[error("{field}: must be {expected}")]
    WrongType {
        /// Path of the field.
        field: String,
        /// What was expected, e.g. `a string`.
        expected: &'static str,
    },
    /// A field has the right type but a value the rule model does not accept.
    #[error("{field}: {message}")]
    InvalidValue {
        /// Path of the field.
        field: String,
        /// What is wrong, lowercase.
        message: String,
    },
    /// A `when` filter that `GET /v1/events` would reject (same messages as the query API).
    #[error("{field}: {message}")]
    InvalidFilter {
        /// `when.<filter name>`.
        field: String,
        /// What is wrong, lowercase.
        message: String,
    },
    /// A window or duration such as `10m` that is malformed or outside its limits.
    #[error("{field}: {message}")]
    InvalidWindow {
        /// Path of the field.
        field: String,
        /// What is wrong, lowercase.
        message: String,
    },
    /// A time zone name the time zone database does not know.
    #[error("{field}: unknown time zone {name:?}")]
    UnknownTimeZone {
        /// Path of the field.
        field: String,
        /// The name as given.
        name: String,
    },
    /// Two fields that cannot be used together (e.g. `threshold` and `silence`), or a field that
    /// does not apply to this kind of rule.
    #[error("{field}: {message}")]
    Conflict {
        /// Path of the field that cannot be used here.
        field: String,
        /// Why, lowercase.
        message: String,
    },
    /// An event view handed to [`EventInput::from_view`](crate::EventInput::from_view) lacks a
    /// field the engine needs (`seq`, `id`, `occurred_at`, `received_at`).
    #[error("event {field}: {message}")]
    InvalidEvent {
        /// Path of the field in the event view.
        field: String,
        /// What is wrong, lowercase.
        message: String,
    },
}

impl RuleError {
    /// A stable snake_case code for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            RuleError::UnknownField { .. } => "unknown_field",
            RuleError::MissingField { .. } => "missing_field",
            RuleError::WrongType { .. } => "wrong_type",
            RuleError::InvalidValue { .. } => "invalid_value",
            RuleError::InvalidFilter { .. } => "invalid_filter",
            RuleError::InvalidWindow { .. } => "invalid_window",
            RuleError::UnknownTimeZone { .. } => "unknown_time_zone",
            RuleError::Conflict { .. } => "conflicting_fields",
            RuleError::InvalidEvent { .. } => "invalid_event",
        }
    }

    /// The path of the field at fault.
    pub fn field(&self) -> &str {
        match self {
            RuleError::UnknownField { field }
            | RuleError::MissingField { field }
            | RuleError::WrongType { field, .. }
            | RuleError::InvalidValue { field, .. }
            | RuleError::InvalidFilter { field, .. }
            | RuleError::InvalidWindow { field, .. }
            | RuleError::UnknownTimeZone { field, .. }
            | RuleError::Conflict { field, .. }
            | RuleError::InvalidEvent { field, .. } => field,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> RuleError {
        RuleError::InvalidValue { field: field.into(), message: message.into() }
    }

    pub(crate) fn conflict(field: impl Into<String>, message: impl Into<String>) -> RuleError {
        RuleError::Conflict { field: field.into(), message: message.into() }
    }
}
