//! The crate's error types.

/// What kind of rule an ingested event broke. Stable: the server maps these to HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValidationErrorKind {
    /// The body is not valid JSON (syntax error, trailing data, duplicate key).
    MalformedJson,
    /// The body is not valid UTF-8.
    InvalidUtf8,
    /// A field the schema does not know.
    UnknownField,
    /// A required field is absent or `null`.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A field has the right type but a value the schema does not accept.
    InvalidValue,
    /// The body or an event is larger than the limit (HTTP 413).
    TooLarge,
    /// JSON nested deeper than the limit.
    TooDeep,
    /// Too many entries in an array or keys in `metadata`.
    TooMany,
    /// The whole body is larger than `Limits::max_body_bytes` (HTTP 413).
    BodyTooLarge,
    /// The batch holds more than `Limits::max_batch_events` events (HTTP 413).
    BatchTooLarge,
    /// The body holds no event (empty, blank, `[]`).
    EmptyBatch,
}

impl ValidationErrorKind {
    /// A stable snake_case name for the kind, for API error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationErrorKind::MalformedJson => "malformed_json",
            ValidationErrorKind::InvalidUtf8 => "invalid_utf8",
            ValidationErrorKind::UnknownField => "unknown_field",
            ValidationErrorKind::MissingField => "missing_field",
            ValidationErrorKind::WrongType => "wrong_type",
            ValidationErrorKind::InvalidValue => "invalid_value",
            ValidationErrorKind::TooLarge => "too_large",
            ValidationErrorKind::TooDeep => "too_deep",
            ValidationErrorKind::TooMany => "too_many",
            ValidationErrorKind::BodyTooLarge => "payload_too_large",
            ValidationErrorKind::BatchTooLarge => "batch_too_large",
            ValidationErrorKind::EmptyBatch => "empty_batch",
        }
    }
}

/// Why one event (or a whole body) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    /// Path of the offending field, e.g. `actor.email`, `targets[2].id`,
    /// `metadata.disclosure.recipient.name`; empty when the problem is the whole body or event.
    pub field: String,
    /// Which rule was broken.
    pub kind: ValidationErrorKind,
    /// Lowercase, human-readable message naming the problem and the field.
    pub message: String,
}

impl ValidationError {
    pub(crate) fn new(
        kind: ValidationErrorKind,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ValidationError {
        ValidationError { field: field.into(), kind, message: message.into() }
    }
}

/// Why an ingest body was rejected: the error, and which event of the batch caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BatchError {
    /// Zero-based position of the offending event in the batch (array element, or non-blank
    /// NDJSON line). `None` when the body is a single JSON object or the problem concerns the
    /// whole body (not JSON, too large, too many events, empty).
    pub index: Option<usize>,
    /// What is wrong.
    pub error: ValidationError,
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(index) => write!(f, "event {index}: {}", self.error.message),
            None => write!(f, "{}", self.error.message),
        }
    }
}

/// Why a sealed record or a personal-data blob could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The sealed record is not a JSON object of the expected shape.
    #[error("malformed sealed record: {0}")]
    MalformedRecord(String),
    /// The sealed record has a `v` this crate does not know.
    #[error("unsupported sealed record version {0}")]
    UnsupportedVersion(String),
    /// The personal-data blob could not be decoded.
    #[error("malformed personal data: {0}")]
    MalformedPersonalData(String),
    /// A personal value does not match the commitment in the sealed record.
    #[error("personal value for \"{path}\" does not match its commitment")]
    CommitmentMismatch {
        /// Field path, e.g. `actor.email`.
        path: String,
    },
    /// The personal data has a value for a field that carries no commitment in this record
    /// (usually: personal data of another event).
    #[error("personal value for \"{path}\" has no commitment in the sealed record")]
    UnexpectedPersonalValue {
        /// Field path, e.g. `actor.email`.
        path: String,
    },
}

/// Why an event could not be committed or sealed: some JSON in it has no RFC 8785 canonical
/// form (an integer beyond ±2^53 that no double represents, or nesting deeper than the
/// ledger's limit). Cannot happen for an [`crate::Event`] from the validating parsers with a
/// `seq` ≤ 2^53; it guards hand-built [`crate::PreparedEvent`] bodies and absurd `seq` values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot canonicalize {path}: {source}")]
pub struct SealError {
    /// What was being canonicalized: a personal field path such as `actor.email`, or
    /// `record` for the whole sealed record.
    pub path: String,
    /// The canonicalization failure.
    pub source: veritrail_ledger::JcsError,
}
