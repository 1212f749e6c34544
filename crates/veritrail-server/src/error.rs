//! The one table of public error codes. Every failure leaves the server as
//! `{"error": {"code", "message"}}` with a code from [`Code`]; codes never change meaning.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use veritrail_model::{BatchError, ValidationErrorKind};
use veritrail_query::QueryError;
use veritrail_store::StoreError;

macro_rules! codes {
    ($($variant:ident => $name:literal, $status:ident, $doc:literal;)*) => {
        /// A stable public error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $(#[doc = $doc] $variant,)*
        }

        impl Code {
            /// Every code, in table order (for the docs and the OpenAPI document).
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The wire name, snake_case.
            pub fn name(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }

            /// The HTTP status the code is sent with.
            pub fn status(self) -> StatusCode {
                match self { $(Code::$variant => StatusCode::$status,)* }
            }

            /// One line describing when the code is used.
            pub fn description(self) -> &'static str {
                match self { $(Code::$variant => $doc,)* }
            }
        }
    };
}

codes! {
    MalformedJson => "malformed_json", BAD_REQUEST, "The body is not valid JSON (or NDJSON).";
    InvalidUtf8 => "invalid_utf8", BAD_REQUEST, "The body is not valid UTF-8.";
    UnknownField => "unknown_field", BAD_REQUEST, "An object has a field the schema does not define.";
    MissingField => "missing_field", BAD_REQUEST, "A required field is absent.";
    WrongType => "wrong_type", BAD_REQUEST, "A field has the wrong JSON type.";
    InvalidValue => "invalid_value", BAD_REQUEST, "A field's value is not allowed (format, range, vocabulary).";
    TooDeep => "too_deep", BAD_REQUEST, "JSON nesting exceeds the documented depth limit.";
    TooMany => "too_many", BAD_REQUEST, "A list or object has more entries than the documented limit.";
    EmptyBatch => "empty_batch", BAD_REQUEST, "The ingest body holds no event.";
    EventTooLarge => "event_too_large", PAYLOAD_TOO_LARGE, "One event exceeds the maximum event size.";
    BatchTooLarge => "batch_too_large", PAYLOAD_TOO_LARGE, "The batch has more events than allowed.";
    PayloadTooLarge => "payload_too_large", PAYLOAD_TOO_LARGE, "The request body exceeds the maximum body size.";
    UnsupportedMediaType => "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "The Content-Type is not accepted by this endpoint.";
    InvalidQuery => "invalid_query", BAD_REQUEST, "A query parameter is unknown, repeated or invalid.";
    InvalidRequest => "invalid_request", BAD_REQUEST, "The request is malformed in another way (path, body shape).";
    Unauthorized => "unauthorized", UNAUTHORIZED, "No valid credential was presented.";
    Forbidden => "forbidden", FORBIDDEN, "The credential lacks the permission this request needs (recorded as permission.denied).";
    NotFound => "not_found", NOT_FOUND, "No such resource for this tenant.";
    MethodNotAllowed => "method_not_allowed", METHOD_NOT_ALLOWED, "The path exists but not with this method.";
    Conflict => "conflict", CONFLICT, "The resource exists already.";
    InvalidRule => "invalid_rule", BAD_REQUEST, "A monitoring rule is invalid (filter, window, threshold, time zone, fields that cannot be combined); the message names the field.";
    LegalHold => "legal_hold", CONFLICT, "A legal hold on the data subject blocks erasure; release the hold first.";
    InvalidState => "invalid_state", CONFLICT, "The resource's current state does not allow this change (e.g. acknowledging a resolved alert).";
    UrlNotAllowed => "url_not_allowed", BAD_REQUEST, "A webhook URL is refused: not http://, malformed, or aimed at a loopback, private, link-local or cloud-metadata address (allowed only by configuration).";
    RateLimited => "rate_limited", TOO_MANY_REQUESTS, "Too many requests from this credential, or too many failed sign-ins for this account or address; retry after the given delay.";
    Overloaded => "overloaded", SERVICE_UNAVAILABLE, "The ingest queue is full; retry after the given delay.";
    Unavailable => "unavailable", SERVICE_UNAVAILABLE, "The server is starting, shutting down or cannot reach its storage.";
    Internal => "internal", INTERNAL_SERVER_ERROR, "An unexpected server error; nothing was changed by it.";
}

/// `docs/errors.md`: the public code table as Markdown (a test keeps the file equal to this).
pub fn error_table_markdown() -> String {
    let mut out = String::from(
        "# Error codes\n\nEvery error answer is `{\"error\": {\"code\", \"message\"}}`. The codes below never change\nmeaning; the message is for people and names the field or parameter at fault. Generated from\n`crates/veritrail-server/src/error.rs` (`VERITRAIL_BLESS=1 cargo test -p veritrail-server` rewrites\nthis file).\n\n| code | HTTP status | when |\n|---|---|---|\n",
    );
    for code in Code::ALL {
        out.push_str(&format!("| `{}` | {} | {} |\n", code.name(), code.status().as_u16(), code.description()));
    }
    out
}

#[cfg(test)]
mod tests;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The public code.
    pub code: Code,
    /// Lowercase text naming the problem.
    pub message: String,
    /// Seconds to wait, sent as `Retry-After`.
    pub retry_after: Option<u32>,
    /// A refused permission, recorded as `permission.denied` before the answer leaves.
    pub(crate) denied: Option<Box<Denied>>,
}

/// Who was refused which permission (a response extension the self-audit layer records).
#[derive(Debug, Clone)]
pub(crate) struct Denied {
    pub(crate) tenant: String,
    pub(crate) actor: serde_json::Value,
    pub(crate) permission: &'static str,
}

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), retry_after: None, denied: None }
    }

    /// 404 with a message naming what was not found.
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(Code::NotFound, what)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code.name(), "message": self.message}});
        let mut response = (self.code.status(), Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(denied) = self.denied {
            response.extensions_mut().insert(*denied);
        }
        response
    }
}

impl From<BatchError> for ApiError {
    fn from(error: BatchError) -> ApiError {
        let code = match error.error.kind {
            ValidationErrorKind::MalformedJson => Code::MalformedJson,
            ValidationErrorKind::InvalidUtf8 => Code::InvalidUtf8,
            ValidationErrorKind::UnknownField => Code::UnknownField,
            ValidationErrorKind::MissingField => Code::MissingField,
            ValidationErrorKind::WrongType => Code::WrongType,
            ValidationErrorKind::InvalidValue => Code::InvalidValue,
            ValidationErrorKind::TooDeep => Code::TooDeep,
            ValidationErrorKind::TooMany => Code::TooMany,
            ValidationErrorKind::TooLarge => Code::EventTooLarge,
            ValidationErrorKind::BodyTooLarge => Code::PayloadTooLarge,
            ValidationErrorKind::BatchTooLarge => Code::BatchTooLarge,
            ValidationErrorKind::EmptyBatch => Code::EmptyBatch,
        };
        let message = match error.index {
            Some(index) => format!("event {index}: {}", error.error.message),
            None => error.error.message.clone(),
        };
        ApiError::new(code, message)
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> ApiError {
        ApiError::new(Code::InvalidQuery, error.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::TenantNotFound(_) => ApiError::new(Code::NotFound, "tenant not found"),
            StoreError::AlreadyExists(what) => ApiError::new(Code::Conflict, format!("{what} already exists")),
            StoreError::Conflict(why) => ApiError::new(Code::Conflict, why),
            StoreError::Retry(why) => ApiError::new(Code::Unavailable, format!("please retry: {why}")),
            StoreError::Unavailable(why) => {
                tracing::warn!(%why, "storage unavailable");
                ApiError::new(Code::Unavailable, "storage is unavailable; nothing was written")
            }
            StoreError::Corrupt(why) | StoreError::Backend(why) => {
                tracing::error!(%why, "storage failure");
                ApiError::new(Code::Internal, "storage failure; nothing was acknowledged")
            }
        }
    }
}
