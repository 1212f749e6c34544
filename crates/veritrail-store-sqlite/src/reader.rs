//! Read paths: queries over the derived index (pre-filter in SQL, final match with
//! [`EventQuery::matches`] on the opened record), point reads and ledger scans.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use veritrail_model::PersonalData;
use veritrail_query::{Cursor, EventQuery, Order, PageRequest};
use veritrail_store::{EventPage, StoreError, StoreResult, StoredEvent};

use veritrail_store::PageBuilder;
use veritrail_store::privacy::{BLIND_EMAIL, BLIND_IP, Privacy};

use crate::keys;
use crate::schema::{MAX_SEQ, key_seq, record_key};
use crate::sql_error;

/// The tenant a read is for, and the keys to decrypt its personal data with.
pub(crate) struct ReadCtx<'a> {
    pub(crate) privacy: &'a Privacy,
    pub(crate) tenant: &'a str,
    pub(crate) tenant_no: i64,
}

impl ReadCtx<'_> {
    /// Decrypts a stored sidecar; parts whose key was destroyed are left out (erased).
    fn personal(&self, conn: &Connection, event_id: &str, data: Option<Vec<u8>>) -> StoreResult<Option<PersonalData>> {
        let Some(data) = data else { return Ok(None) };
        let mut load = |ids: &[u64]| keys::keys_by_id(conn, self.tenant_no, ids);
        self.privacy.open_cached(self.tenant, event_id, &data, &mut load)
    }

    fn stored_event(&self, conn: &Connection, row: RecordRow) -> StoreResult<StoredEvent> {
        let (key, id, leaf, sealed, personal) = row;
        let leaf_hash: [u8; 32] = leaf
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("leaf hash of record {key} is not 32 bytes")))?;
        let personal = self.personal(conn, &id, personal)?;
        Ok(StoredEvent { seq: key_seq(key), id, sealed: sealed.into(), leaf_hash, personal, layout: None })
    }
}

const RECORD_COLUMNS: &str =
    "SELECT r.key, r.event_id, r.leaf_hash, r.sealed, p.data FROM records r LEFT JOIN personal p ON p.key = r.key";

type RecordRow = (i64, String, Vec<u8>, Vec<u8>, Option<Vec<u8>>);

fn record_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

/// One record by event id: recent ids first, then the index (in a snapshot taken after).
pub(crate) fn event_by_id(
    conn: &Connection,
    recent: &crate::shared::RecentIds,
    ctx: &ReadCtx<'_>,
    id: &str,
) -> StoreResult<Option<StoredEvent>> {
    let tenant_no = ctx.tenant_no;
    let seq = match recent.get(tenant_no, id) {
        Some(seq) => Some(seq),
        None => {
            let mut stmt = conn
                .prepare_cached("SELECT seq FROM idx.event_ids WHERE tenant_no = ?1 AND event_id = ?2")
                .map_err(sql_error)?;
            let seq: Option<i64> =
                stmt.query_row(params![tenant_no, id], |row| row.get(0)).optional().map_err(sql_error)?;
            seq.map(|seq| seq as u64)
        }
    };
    match seq {
        Some(seq) => record_by_key(conn, ctx, record_key(tenant_no, seq)),
        None => Ok(None),
    }
}

fn record_by_key(conn: &Connection, ctx: &ReadCtx<'_>, key: i64) -> StoreResult<Option<StoredEvent>> {
    let mut stmt = conn.prepare_cached(&format!("{RECORD_COLUMNS} WHERE r.key = ?1")).map_err(sql_error)?;
    let row = stmt.query_row(params![key], record_row).optional().map_err(sql_error)?;
    row.map(|row| ctx.stored_event(conn, row)).transpose()
}

/// Records `seq >= from` in order, at most `limit`.
pub(crate) fn records(conn: &Connection, ctx: &ReadCtx<'_>, from: u64, limit: u32) -> StoreResult<Vec<StoredEvent>> {
    let tenant_no = ctx.tenant_no;
    if from > MAX_SEQ {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare_cached(&format!("{RECORD_COLUMNS} WHERE r.key BETWEEN ?1 AND ?2 ORDER BY r.key LIMIT ?3"))
        .map_err(sql_error)?;
    let rows = stmt
        .query_map(params![record_key(tenant_no, from), record_key(tenant_no, MAX_SEQ), limit], record_row)
        .map_err(sql_error)?;
    let mut out = Vec::new();
    let rows: Vec<RecordRow> = rows.collect::<Result<_, _>>().map_err(sql_error)?;
    for row in rows {
        out.push(ctx.stored_event(conn, row)?);
    }
    Ok(out)
}

/// The SQL pre-filter of a query: only conditions implied by the query's filters, so it never
/// drops a true match; `EventQuery::matches` decides.
fn prefilter(ctx: &ReadCtx<'_>, query: &EventQuery) -> (String, Vec<SqlValue>) {
    let mut sql = String::new();
    let mut args: Vec<SqlValue> = Vec::new();
    let eq = |column: &str, value: &Option<String>, sql: &mut String, args: &mut Vec<SqlValue>| {
        if let Some(value) = value {
            sql.push_str(&format!(" AND e.{column} = ?"));
            args.push(SqlValue::Text(value.clone()));
        }
    };
    eq("actor_id", &query.actor_id, &mut sql, &mut args);
    // Encrypted fields are found by their blind-index tokens (no key loaded: nothing matches).
    let token = |column: &str, kind: &str, value: &Option<String>, sql: &mut String, args: &mut Vec<SqlValue>| {
        if let Some(value) = value {
            sql.push_str(&format!(" AND e.{column} = ?"));
            let token = ctx.privacy.token(ctx.tenant, kind, value).map(Vec::from).unwrap_or_default();
            args.push(SqlValue::Blob(token));
        }
    };
    token("actor_email", BLIND_EMAIL, &query.actor_email, &mut sql, &mut args);
    eq("actor_type", &query.actor_type, &mut sql, &mut args);
    eq("outcome", &query.outcome, &mut sql, &mut args);
    token("ip", BLIND_IP, &query.ip, &mut sql, &mut args);
    eq("channel", &query.channel, &mut sql, &mut args);
    eq("data_subject", &query.data_subject, &mut sql, &mut args);
    if !query.actions.is_empty() {
        let mut alternatives = Vec::new();
        for pattern in &query.actions {
            // Patterns are [a-z0-9_.*] only, so GLOB means exactly what ActionPattern means.
            alternatives.push(if pattern.is_exact() { "e.action = ?" } else { "e.action GLOB ?" });
            args.push(SqlValue::Text(pattern.as_str().to_string()));
        }
        sql.push_str(&format!(" AND ({})", alternatives.join(" OR ")));
    }
    match (&query.resource_type, &query.resource_id) {
        (Some(rtype), Some(rid)) => {
            sql.push_str(" AND e.key IN (SELECT key FROM event_resources WHERE rid = ? AND rtype = ?)");
            args.push(SqlValue::Text(rid.clone()));
            args.push(SqlValue::Text(rtype.clone()));
        }
        (Some(rtype), None) => {
            sql.push_str(" AND e.key IN (SELECT key FROM event_resources WHERE rtype = ?)");
            args.push(SqlValue::Text(rtype.clone()));
        }
        (None, Some(rid)) => {
            sql.push_str(" AND e.key IN (SELECT key FROM event_resources WHERE rid = ?)");
            args.push(SqlValue::Text(rid.clone()));
        }
        (None, None) => {}
    }
    if let Some(since) = query.since {
        sql.push_str(" AND e.occurred_at >= ?");
        args.push(SqlValue::Integer(since.as_microsecond()));
    }
    if let Some(until) = query.until {
        sql.push_str(" AND e.occurred_at < ?");
        args.push(SqlValue::Integer(until.as_microsecond()));
    }
    (sql, args)
}

/// A page of matching events. Walks candidate keys from the index in chunks, opening and
/// matching each, until `limit + 1` matches are found or the tenant's range is exhausted.
pub(crate) fn query(
    conn: &Connection,
    ctx: &ReadCtx<'_>,
    query: &EventQuery,
    page: &PageRequest,
) -> StoreResult<EventPage> {
    let tenant_no = ctx.tenant_no;
    let (mut lo, mut hi) = (record_key(tenant_no, 0), record_key(tenant_no, MAX_SEQ));
    match page.after {
        Some(Cursor { seq, order: Order::Desc }) => {
            if seq == 0 {
                return Ok(EventPage { events: Vec::new(), views: Vec::new(), next: None });
            }
            hi = record_key(tenant_no, seq.min(MAX_SEQ + 1) - 1);
        }
        Some(Cursor { seq, order: Order::Asc }) => {
            if seq >= MAX_SEQ {
                return Ok(EventPage { events: Vec::new(), views: Vec::new(), next: None });
            }
            lo = record_key(tenant_no, seq + 1);
        }
        None => {}
    }
    let (filter_sql, filter_args) = prefilter(ctx, query);
    let direction = match page.order {
        Order::Desc => "DESC",
        Order::Asc => "ASC",
    };
    // One statement per chunk: candidates from the index joined to their records.
    let sql = format!(
        "SELECT e.key, r.event_id, r.leaf_hash, r.sealed, p.data FROM idx.events e
         JOIN records r ON r.key = e.key LEFT JOIN personal p ON p.key = e.key
         WHERE e.key BETWEEN ? AND ?{filter_sql} ORDER BY e.key {direction} LIMIT ?"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(sql_error)?;
    let mut builder = PageBuilder::new(query, page);
    while lo <= hi {
        let mut args: Vec<SqlValue> = vec![SqlValue::Integer(lo), SqlValue::Integer(hi)];
        args.extend(filter_args.iter().cloned());
        args.push(SqlValue::Integer(builder.chunk() as i64));
        let rows: Vec<RecordRow> = stmt
            .query_map(params_from_iter(args), record_row)
            .map_err(sql_error)?
            .collect::<Result<_, _>>()
            .map_err(sql_error)?;
        let fetched = rows.len();
        let last_key = rows.last().map(|row| row.0);
        for row in rows {
            if !builder.offer(ctx.stored_event(conn, row)?)? {
                break;
            }
        }
        if !builder.advance(fetched, last_key, &mut lo, &mut hi) {
            break;
        }
    }
    Ok(builder.finish())
}
