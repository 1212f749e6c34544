//! `GET /v1/export?format=csv|jsonl&<filters>`: streams every matching event, oldest first by
//! default, page by page from the store, so memory stays flat whatever the export size.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use veritrail_query::{EventQuery, Order, PageRequest, parse_params};

use crate::AppState;
use crate::audit::{self, RequestContext};
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, Code};
use crate::routes::query_pairs;

/// Events fetched per page while streaming.
const PAGE: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Jsonl,
    Ledger,
}

/// Columns of the CSV export, in order.
pub(crate) const CSV_COLUMNS: &[&str] = &[
    "seq",
    "id",
    "occurred_at",
    "received_at",
    "action",
    "outcome",
    "actor_id",
    "actor_type",
    "actor_name",
    "actor_email",
    "actor_roles",
    "resource_type",
    "resource_id",
    "resource_name",
    "targets",
    "reason",
    "ip",
    "user_agent",
    "location",
    "session_id",
    "request_id",
    "channel",
    "endpoint",
    "data_subject",
    "sensitivity",
    "changes",
    "metadata",
    "leaf_hash",
];

pub(crate) async fn export(
    State(state): State<AppState>,
    principal: Principal,
    request: RequestContext,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let key = principal.tenant_key()?;
    key.require_any(&[Permission::EventsExport, Permission::LedgerRead, Permission::EventsReadOwn])?;
    let mut pairs = query_pairs(raw.as_deref());
    let mut format = None;
    let mut filters = Vec::new();
    for (name, value) in pairs.drain(..) {
        match name.as_str() {
            "format" if format.is_none() => {
                format = Some(match value.as_str() {
                    "csv" => Format::Csv,
                    "jsonl" => Format::Jsonl,
                    "ledger" => Format::Ledger,
                    other => {
                        return Err(ApiError::new(
                            Code::InvalidQuery,
                            format!("format must be csv, jsonl or ledger, not {other:?}"),
                        ));
                    }
                })
            }
            "format" => {
                return Err(ApiError::new(Code::InvalidQuery, "query parameter \"format\" is given more than once"));
            }
            "limit" | "cursor" => {
                return Err(ApiError::new(
                    Code::InvalidQuery,
                    format!("export streams every match; {name:?} is not accepted"),
                ));
            }
            _ => filters.push((name, value)),
        }
    }
    let format = format.ok_or_else(|| ApiError::new(Code::InvalidQuery, "format is required: csv, jsonl or ledger"))?;
    if format == Format::Ledger {
        key.require(Permission::LedgerRead)?;
    }
    if format == Format::Ledger {
        if !filters.is_empty() {
            return Err(ApiError::new(
                Code::InvalidQuery,
                "a ledger bundle holds the whole ledger; it takes no filters",
            ));
        }
        let metadata = json!({"format": "ledger"});
        audit::record(&state, &key.tenant, "audit.exported", key.actor_json(), metadata, &request).await?;
        return crate::ledger_routes::export_bundle(state, key.tenant.clone()).await;
    }
    let has_order = filters.iter().any(|(name, _)| name == "order");
    let own = key.read_filter(Permission::EventsExport)?;
    let (mut query, mut page) = parse_params(&filters)?;
    if let Some(actor) = own {
        // Own records only, enforced in the storage query: another actor's id matches nothing.
        if query.actor_id.as_ref().is_some_and(|asked| *asked != actor) {
            query.actor_id = Some(String::new());
        } else {
            query.actor_id = Some(actor);
        }
    }
    if !has_order {
        page.order = Order::Asc;
    }
    page.limit = PAGE;
    let filter_map = crate::privacy::audit_filters(&filters);
    let format_name = if format == Format::Csv { "csv" } else { "jsonl" };
    debug_assert!(format != Format::Ledger);
    // Without pii:read personal fields are masked; with it, the unmasked export is recorded as
    // an access to sensitive data before a byte leaves.
    let masked = !key.has(Permission::PiiRead);
    let personal = if masked { "masked" } else { "unmasked" };
    let metadata = json!({"format": format_name, "query": filter_map, "personal_data": personal});
    audit::record(&state, &key.tenant, "audit.exported", key.actor_json(), metadata, &request).await?;
    if !masked {
        let metadata = json!({"export": format_name, "query": crate::privacy::audit_filters(&filters)});
        audit::record(&state, &key.tenant, "data.sensitive.accessed", key.actor_json(), metadata, &request).await?;
    }

    let stream = futures_util::stream::unfold(
        ExportCursor { state, tenant: key.tenant.clone(), query, page, format, masked, started: false, done: false },
        next_chunk,
    );
    let (content_type, extension) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Jsonl | Format::Ledger => ("application/x-ndjson", "jsonl"),
    };
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"veritrail-export.{extension}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

struct ExportCursor {
    state: AppState,
    tenant: String,
    query: EventQuery,
    page: PageRequest,
    format: Format,
    /// Personal fields masked (the reader lacks `pii:read`).
    masked: bool,
    started: bool,
    done: bool,
}

async fn next_chunk(mut cursor: ExportCursor) -> Option<(Result<Bytes, std::io::Error>, ExportCursor)> {
    if cursor.done {
        return None;
    }
    let mut out = Vec::new();
    if !cursor.started && cursor.format == Format::Csv {
        write_csv_row(&mut out, CSV_COLUMNS.iter().map(|c| c.to_string()).collect());
    }
    cursor.started = true;
    let result = cursor.state.store.query(&cursor.tenant, &cursor.query, &cursor.page).await;
    let page = match result {
        Ok(page) => page,
        Err(error) => {
            // Headers are gone already: end the stream with an error so the client sees a cut.
            tracing::error!(%error, "export failed mid-stream");
            cursor.done = true;
            return Some((Err(std::io::Error::other("export failed")), cursor));
        }
    };
    for mut view in crate::routes::page_json(page.events, page.views) {
        if cursor.masked {
            crate::privacy::mask_view(&mut view);
        }
        match cursor.format {
            Format::Jsonl | Format::Ledger => {
                out.extend_from_slice(view.to_string().as_bytes());
                out.push(b'\n');
            }
            Format::Csv => write_csv_row(&mut out, csv_cells(&view)),
        }
    }
    match page.next {
        Some(next) => cursor.page.after = Some(next),
        None => cursor.done = true,
    }
    Some((Ok(Bytes::from(out)), cursor))
}

fn write_csv_row(out: &mut Vec<u8>, cells: Vec<String>) {
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    let safe: Vec<String> = cells.into_iter().map(|cell| spreadsheet_safe(&cell)).collect();
    if writer.write_record(&safe).is_ok()
        && let Ok(bytes) = writer.into_inner()
    {
        out.extend_from_slice(&bytes);
    }
}

/// Neutralises CSV formula injection (OWASP): a cell a spreadsheet would evaluate gets a leading `'`.
pub(crate) fn spreadsheet_safe(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '\n' | '|' | '%') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

fn text(view: &Value, path: &[&str]) -> String {
    let mut at = view;
    for key in path {
        match at.get(key) {
            Some(next) => at = next,
            None => return String::new(),
        }
    }
    match at {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn csv_cells(view: &Value) -> Vec<String> {
    let joined = |path: &[&str]| -> String {
        let mut at = view;
        for key in path {
            match at.get(key) {
                Some(next) => at = next,
                None => return String::new(),
            }
        }
        match at {
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(";"),
            _ => String::new(),
        }
    };
    vec![
        text(view, &["seq"]),
        text(view, &["id"]),
        text(view, &["occurred_at"]),
        text(view, &["received_at"]),
        text(view, &["action"]),
        text(view, &["outcome"]),
        text(view, &["actor", "id"]),
        text(view, &["actor", "type"]),
        text(view, &["actor", "name"]),
        text(view, &["actor", "email"]),
        joined(&["actor", "roles"]),
        text(view, &["resource", "type"]),
        text(view, &["resource", "id"]),
        text(view, &["resource", "name"]),
        text(view, &["targets"]),
        text(view, &["reason"]),
        text(view, &["context", "ip"]),
        text(view, &["context", "user_agent"]),
        text(view, &["context", "location"]),
        text(view, &["context", "session_id"]),
        text(view, &["context", "request_id"]),
        text(view, &["context", "channel"]),
        text(view, &["context", "endpoint"]),
        text(view, &["data_subject"]),
        joined(&["sensitivity"]),
        text(view, &["changes"]),
        text(view, &["metadata"]),
        text(view, &["leaf_hash"]),
    ]
}
