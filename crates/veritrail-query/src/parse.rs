use std::net::IpAddr;

use jiff::Timestamp;

use crate::filter::{ActionPattern, EventQuery, MetadataFilter};
use crate::{Cursor, Order, PageRequest, QueryError};

/// Largest accepted `limit`.
pub const MAX_LIMIT: u32 = 1000;
/// `limit` when none is given.
pub const DEFAULT_LIMIT: u32 = 100;
/// Longest accepted filter value, in bytes.
const MAX_VALUE_LEN: usize = 512;
/// Most alternatives in one `action` filter.
const MAX_ACTION_ALTERNATIVES: usize = 32;
/// Most `metadata.<key>` filters in one query.
const MAX_METADATA_FILTERS: usize = 16;

const ACTOR_TYPES: &[&str] = &["user", "service", "api_key", "ai_agent", "system", "anonymous"];
const OUTCOMES: &[&str] = &["success", "failure", "denied"];
const CHANNELS: &[&str] = &["ui", "api", "workflow", "system"];
const SENSITIVITIES: &[&str] = &["pii", "phi", "pci", "secret", "confidential"];

/// Parses decoded query-string pairs into filters and a page request. Unknown parameters, repeated
/// parameters and invalid values are errors naming the parameter; nothing is silently ignored.
pub fn parse_params(pairs: &[(String, String)]) -> Result<(EventQuery, PageRequest), QueryError> {
    let mut query = EventQuery::default();
    let mut page = PageRequest::default();
    let mut cursor_text: Option<&str> = None;
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in pairs {
        if seen.contains(&name.as_str()) {
            return Err(QueryError::new(name, format!("query parameter {name:?} is given more than once")));
        }
        seen.push(name);
        if value.len() > MAX_VALUE_LEN {
            return Err(QueryError::new(
                name,
                format!("query parameter {name:?} is longer than {MAX_VALUE_LEN} bytes"),
            ));
        }
        if value.is_empty() {
            return Err(QueryError::new(name, format!("query parameter {name:?} is empty")));
        }
        match name.as_str() {
            "action" => query.actions = parse_actions(value)?,
            "actor_id" => query.actor_id = Some(value.clone()),
            "actor_email" => query.actor_email = Some(value.to_lowercase()),
            "actor_type" => query.actor_type = Some(one_of(name, value, ACTOR_TYPES)?),
            "actor_role" => query.actor_role = Some(value.clone()),
            "resource_type" => query.resource_type = Some(value.clone()),
            "resource_id" => query.resource_id = Some(value.clone()),
            "outcome" => query.outcome = Some(one_of(name, value, OUTCOMES)?),
            "ip" => {
                let ip: IpAddr = value
                    .parse()
                    .map_err(|_| QueryError::new(name, format!("ip {value:?} is not an IPv4 or IPv6 address")))?;
                query.ip = Some(ip.to_string());
            }
            "channel" => query.channel = Some(one_of(name, value, CHANNELS)?),
            "sensitivity" => query.sensitivity = Some(one_of(name, value, SENSITIVITIES)?),
            "data_subject" => query.data_subject = Some(value.clone()),
            "since" => query.since = Some(parse_time(name, value)?),
            "until" => query.until = Some(parse_time(name, value)?),
            "q" => query.text = Some(value.to_lowercase()),
            "limit" => page.limit = parse_limit(value)?,
            "order" => {
                page.order = match value.as_str() {
                    "desc" => Order::Desc,
                    "asc" => Order::Asc,
                    _ => {
                        return Err(QueryError::new(name, format!("order must be \"asc\" or \"desc\", not {value:?}")));
                    }
                }
            }
            "cursor" => cursor_text = Some(value),
            other => match other.strip_prefix("metadata.") {
                Some(path) => {
                    if query.metadata.len() == MAX_METADATA_FILTERS {
                        return Err(QueryError::new(
                            other,
                            format!("at most {MAX_METADATA_FILTERS} metadata filters are allowed"),
                        ));
                    }
                    query
                        .metadata
                        .push(MetadataFilter { path: parse_metadata_path(other, path)?, value: value.clone() });
                }
                None => return Err(QueryError::new(other, format!("unknown query parameter {other:?}"))),
            },
        }
    }
    if let (Some(since), Some(until)) = (query.since, query.until)
        && since > until
    {
        return Err(QueryError::new("since", "since is later than until"));
    }
    if let Some(text) = cursor_text {
        let cursor = Cursor::decode(text)?;
        if cursor.order != page.order {
            return Err(QueryError::new("cursor", "cursor was issued for the other sort order"));
        }
        page.after = Some(cursor);
    }
    Ok((query, page))
}

fn parse_actions(value: &str) -> Result<Vec<ActionPattern>, QueryError> {
    let mut patterns = Vec::new();
    for alternative in value.split(',') {
        let alternative = alternative.trim();
        let valid = !alternative.is_empty()
            && alternative
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.' || b == b'*');
        if !valid {
            return Err(QueryError::new(
                "action",
                format!("action filter {alternative:?} must be a lowercase dotted action, optionally with * wildcards"),
            ));
        }
        patterns.push(ActionPattern::new(alternative.to_string()));
    }
    if patterns.len() > MAX_ACTION_ALTERNATIVES {
        return Err(QueryError::new("action", format!("at most {MAX_ACTION_ALTERNATIVES} actions may be listed")));
    }
    Ok(patterns)
}

fn one_of(name: &str, value: &str, allowed: &[&str]) -> Result<String, QueryError> {
    if allowed.contains(&value) {
        Ok(value.to_string())
    } else {
        Err(QueryError::new(name, format!("{name} must be one of {}, not {value:?}", allowed.join(", "))))
    }
}

fn parse_time(name: &str, value: &str) -> Result<Timestamp, QueryError> {
    value.parse::<Timestamp>().map_err(|_| {
        QueryError::new(name, format!("{name} must be an RFC 3339 timestamp with offset, e.g. 2026-01-15T14:32:11Z"))
    })
}

fn parse_limit(value: &str) -> Result<u32, QueryError> {
    match value.parse::<u32>() {
        Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(QueryError::new("limit", format!("limit must be an integer from 1 to {MAX_LIMIT}, not {value:?}"))),
    }
}

fn parse_metadata_path(param: &str, path: &str) -> Result<Vec<String>, QueryError> {
    let mut segments = Vec::new();
    for segment in path.split('.') {
        let valid = !segment.is_empty()
            && segment.len() <= 128
            && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(QueryError::new(
                param,
                format!("metadata filter {param:?} must name a dotted key of letters, digits, _ or -"),
            ));
        }
        segments.push(segment.to_string());
    }
    if segments.len() > 8 {
        return Err(QueryError::new(param, "metadata filter paths are at most 8 keys deep"));
    }
    Ok(segments)
}
