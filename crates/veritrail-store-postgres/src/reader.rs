//! Read paths: queries (a SQL pre-filter on the indexed columns, then the final decision with
//! [`EventQuery::matches`] on the opened record), point reads and ledger scans.

use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use veritrail_model::PersonalData;
use veritrail_query::{Cursor, EventQuery, Order, PageRequest};
use veritrail_store::{EventPage, StoreError, StoreResult, StoredEvent};

use crate::pg_error;

/// Most candidate records fetched per round trip.
const MAX_CHUNK: usize = 1024;

const RECORD_COLUMNS: &str = "SELECT r.seq, r.event_id, r.leaf_hash, r.sealed, p.data FROM records r
    LEFT JOIN personal p ON p.tenant_no = r.tenant_no AND p.seq = r.seq";

fn stored_event(row: &tokio_postgres::Row) -> StoreResult<StoredEvent> {
    let seq: i64 = row.get(0);
    let leaf: &[u8] = row.get(2);
    let leaf_hash: [u8; 32] =
        leaf.try_into().map_err(|_| StoreError::Corrupt(format!("leaf hash of record {seq} is not 32 bytes")))?;
    Ok(StoredEvent { seq: seq as u64, id: row.get(1), sealed: row.get(3), leaf_hash, personal: row.get(4) })
}

/// Opens a record as readers see it; a damaged personal sidecar reads as erased rather than
/// failing the query.
fn open_view(sealed: &[u8], personal: Option<&[u8]>) -> StoreResult<serde_json::Value> {
    let personal = personal.and_then(|bytes| PersonalData::from_bytes(bytes).ok());
    match veritrail_model::open(sealed, personal.as_ref()) {
        Ok(view) => Ok(view),
        Err(_) if personal.is_some() => veritrail_model::open(sealed, None)
            .map_err(|e| StoreError::Corrupt(format!("cannot open sealed record: {e}"))),
        Err(e) => Err(StoreError::Corrupt(format!("cannot open sealed record: {e}"))),
    }
}

/// One record by event id.
pub(crate) async fn event_by_id(
    client: &impl GenericClient,
    tenant_no: i64,
    id: &str,
) -> StoreResult<Option<StoredEvent>> {
    let sql = format!("{RECORD_COLUMNS} WHERE r.tenant_no = $1 AND r.event_id = $2");
    let row = client.query_opt(&sql, &[&tenant_no, &id]).await.map_err(pg_error)?;
    row.as_ref().map(stored_event).transpose()
}

/// Records `seq >= from` in order, at most `limit`.
pub(crate) async fn records(
    client: &impl GenericClient,
    tenant_no: i64,
    from: u64,
    limit: u32,
) -> StoreResult<Vec<StoredEvent>> {
    let Ok(from) = i64::try_from(from) else { return Ok(Vec::new()) };
    let sql = format!("{RECORD_COLUMNS} WHERE r.tenant_no = $1 AND r.seq >= $2 ORDER BY r.seq LIMIT $3");
    let rows = client.query(&sql, &[&tenant_no, &from, &i64::from(limit)]).await.map_err(pg_error)?;
    rows.iter().map(stored_event).collect()
}

/// The SQL pre-filter of a query: only conditions implied by the query's filters, so it never
/// drops a true match. Parameters are numbered from `first`. `None` when no record can match
/// (a value no event can hold).
fn prefilter(query: &EventQuery, first: usize) -> Option<(String, Vec<Box<dyn ToSql + Sync + Send>>)> {
    let mut sql = String::new();
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let next = |args: &mut Vec<Box<dyn ToSql + Sync + Send>>, value: Box<dyn ToSql + Sync + Send>| {
        args.push(value);
        format!("${}", first + args.len() - 1)
    };
    let equalities = [
        ("r.actor_id", query.actor_id.clone()),
        ("r.actor_type", query.actor_type.clone()),
        ("r.outcome", query.outcome.clone()),
        ("r.channel", query.channel.clone()),
        ("r.data_subject", query.data_subject.clone()),
        ("p.actor_email", query.actor_email.as_ref().map(|e| e.to_lowercase())),
        ("p.ip", query.ip.clone()),
    ];
    for (column, value) in equalities {
        let Some(value) = value else { continue };
        // Events never hold NUL (the parser refuses it), and PostgreSQL text cannot.
        if value.contains('\0') {
            return None;
        }
        let param = next(&mut args, Box::new(value));
        sql.push_str(&format!(" AND {column} = {param}"));
    }
    if !query.actions.is_empty() {
        let mut alternatives = Vec::new();
        for pattern in &query.actions {
            // Patterns are [a-z0-9_.*] only: `*` becomes `%`, and `_` is escaped for LIKE.
            if pattern.is_exact() {
                let param = next(&mut args, Box::new(pattern.as_str().to_string()));
                alternatives.push(format!("r.action = {param}"));
            } else {
                let like = pattern.as_str().replace('_', "\\_").replace('*', "%");
                let param = next(&mut args, Box::new(like));
                alternatives.push(format!("r.action LIKE {param}"));
            }
        }
        sql.push_str(&format!(" AND ({})", alternatives.join(" OR ")));
    }
    let mut resource = Vec::new();
    for (column, value) in [("rid", &query.resource_id), ("rtype", &query.resource_type)] {
        let Some(value) = value else { continue };
        if value.contains('\0') {
            return None;
        }
        let param = next(&mut args, Box::new(value.clone()));
        resource.push(format!("{column} = {param}"));
    }
    if !resource.is_empty() {
        sql.push_str(&format!(
            " AND r.seq IN (SELECT seq FROM event_resources WHERE tenant_no = $1 AND {})",
            resource.join(" AND ")
        ));
    }
    if let Some(since) = query.since {
        let param = next(&mut args, Box::new(since));
        sql.push_str(&format!(" AND r.occurred_at >= {param}"));
    }
    if let Some(until) = query.until {
        let param = next(&mut args, Box::new(until));
        sql.push_str(&format!(" AND r.occurred_at < {param}"));
    }
    Some((sql, args))
}

/// A page of matching events. Walks candidates in chunks, opening and matching each, until
/// `limit + 1` matches are found or the tenant's ledger is exhausted.
pub(crate) async fn query(
    client: &impl GenericClient,
    tenant_no: i64,
    query: &EventQuery,
    page: &PageRequest,
) -> StoreResult<EventPage> {
    let empty = || EventPage { events: Vec::new(), views: Vec::new(), next: None };
    let (mut lo, mut hi) = (0i64, i64::MAX);
    match page.after {
        Some(Cursor { seq, order: Order::Desc }) => {
            if seq == 0 {
                return Ok(empty());
            }
            hi = i64::try_from(seq - 1).unwrap_or(i64::MAX);
        }
        Some(Cursor { seq, order: Order::Asc }) => match i64::try_from(seq) {
            Ok(seq) if seq < i64::MAX => lo = seq + 1,
            _ => return Ok(empty()),
        },
        None => {}
    }
    // $1 tenant, $2 lo, $3 hi, $4 limit, then the filters.
    let Some((filter_sql, filter_args)) = prefilter(query, 5) else { return Ok(empty()) };
    let direction = match page.order {
        Order::Desc => "DESC",
        Order::Asc => "ASC",
    };
    let sql = format!(
        "{RECORD_COLUMNS} WHERE r.tenant_no = $1 AND r.seq BETWEEN $2 AND $3{filter_sql}
         ORDER BY r.seq {direction} LIMIT $4"
    );
    let statement = client.prepare(&sql).await.map_err(pg_error)?;
    let wanted = page.limit as usize + 1;
    let mut found: Vec<StoredEvent> = Vec::new();
    let mut views: Vec<serde_json::Value> = Vec::new();
    // Start with what the page needs; widen when the final match rejects candidates.
    let mut chunk = wanted.max(16);
    while found.len() < wanted && lo <= hi {
        let chunk_sql = chunk as i64;
        let mut args: Vec<&(dyn ToSql + Sync)> = vec![&tenant_no, &lo, &hi, &chunk_sql];
        for arg in &filter_args {
            args.push(arg.as_ref() as &(dyn ToSql + Sync));
        }
        let rows = client.query(&statement, &args).await.map_err(pg_error)?;
        let fetched = rows.len();
        let mut last_seq = None;
        for row in &rows {
            let record = stored_event(row)?;
            last_seq = Some(record.seq as i64);
            let view = open_view(&record.sealed, record.personal.as_deref())?;
            if query.matches(&view) {
                found.push(record);
                views.push(view);
                if found.len() == wanted {
                    break;
                }
            }
        }
        let Some(last) = last_seq else { break };
        if fetched < chunk {
            break;
        }
        match page.order {
            Order::Desc => hi = last - 1,
            Order::Asc => lo = last + 1,
        }
        chunk = (chunk * 4).min(MAX_CHUNK);
    }
    let mut next = None;
    if found.len() == wanted {
        found.pop();
        views.pop();
        next = found.last().map(|last| Cursor { seq: last.seq, order: page.order });
    }
    Ok(EventPage { events: found, views, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_of(params: &[(&str, &str)]) -> Option<String> {
        let pairs: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (query, _) = veritrail_query::parse_params(&pairs).expect("valid params");
        prefilter(&query, 5).map(|(sql, _)| sql)
    }

    #[test]
    fn prefilter_uses_indexed_columns_and_numbers_parameters() {
        assert_eq!(sql_of(&[]).as_deref(), Some(""));
        assert_eq!(
            sql_of(&[("actor_id", "alice"), ("action", "auth.*,data.read")]).as_deref(),
            Some(" AND r.actor_id = $5 AND (r.action LIKE $6 OR r.action = $7)")
        );
        assert_eq!(
            sql_of(&[("resource_id", "p-1"), ("actor_email", "A@B.C")]).as_deref(),
            Some(
                " AND p.actor_email = $5 AND r.seq IN (SELECT seq FROM event_resources WHERE tenant_no = $1 AND rid = $6)"
            )
        );
        assert_eq!(sql_of(&[("actor_id", "a\0b")]), None, "no event holds nul");
    }
}
