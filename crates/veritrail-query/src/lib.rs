//! The event query language of `GET /v1/events` and `GET /v1/export`: filters, ordering and
//! cursors, parsed from query-string pairs into a plain [`EventQuery`] and a [`PageRequest`].
//!
//! [`EventQuery::matches`] is the reference semantics: every storage backend must return exactly
//! the events it accepts (the property tests compare backends against it). Pure: no I/O.

#![forbid(unsafe_code)]

mod cursor;
mod filter;
mod parse;
#[cfg(test)]
mod tests;

pub use cursor::Cursor;
pub use filter::{ActionPattern, EventQuery, MetadataFilter, glob_match_by, text_of};
pub use parse::{DEFAULT_LIMIT, MAX_LIMIT, parse_params};

/// Sort order of results, by `seq` (the order the ledger received them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Newest first (the default).
    #[default]
    Desc,
    /// Oldest first.
    Asc,
}

/// Which slice of the matching events a caller wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Maximum number of events, 1..=[`MAX_LIMIT`].
    pub limit: u32,
    /// Continue after this position (from a previous page's `next_cursor`).
    pub after: Option<Cursor>,
    /// Sort order.
    pub order: Order,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest { limit: DEFAULT_LIMIT, after: None, order: Order::Desc }
    }
}

/// A query parameter that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// The parameter at fault (e.g. `limit`, `metadata.source`).
    pub param: String,
    /// What is wrong, lowercase, naming the parameter.
    pub message: String,
}

impl QueryError {
    pub(crate) fn new(param: &str, message: impl Into<String>) -> Self {
        QueryError { param: param.to_string(), message: message.into() }
    }
}
