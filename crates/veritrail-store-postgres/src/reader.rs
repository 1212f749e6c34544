//! Read paths: queries (a SQL pre-filter on the indexed columns, then the final decision with
//! [`EventQuery::matches`] on the opened record), point reads and ledger scans.

use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use veritrail_query::{Cursor, EventQuery, Order, PageRequest};
use veritrail_store::{EventPage, StoreError, StoreResult, StoredEvent};

use std::collections::HashMap;

use veritrail_store::PageBuilder;
use veritrail_store::privacy::{BLIND_EMAIL, BLIND_IP, Privacy, SubjectKeyRow};

use crate::pg_error;

const RECORD_COLUMNS: &str = "SELECT r.seq, r.event_id, r.leaf_hash, r.sealed, p.data FROM records r
    LEFT JOIN personal p ON p.tenant_no = r.tenant_no AND p.seq = r.seq";

/// The tenant a read is for, and the keys to decrypt its personal data with.
pub(crate) struct ReadCtx<'a> {
    pub(crate) privacy: &'a Privacy,
    pub(crate) tenant: &'a str,
    pub(crate) tenant_no: i64,
}

impl ReadCtx<'_> {
    /// Turns rows of [`RECORD_COLUMNS`] into events, decrypting their personal data with the
    /// data keys fetched for these rows (never a cached key: an erasure on another node is
    /// seen at once). Parts whose key is gone read as erased.
    async fn stored_events(
        &self,
        client: &impl GenericClient,
        rows: &[tokio_postgres::Row],
    ) -> StoreResult<Vec<StoredEvent>> {
        let mut ids: Vec<i64> = Vec::new();
        for row in rows {
            if let Some(data) = row.get::<_, Option<&[u8]>>(4) {
                ids.extend(Privacy::key_ids(data).into_iter().map(|id| id as i64));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let mut keys = HashMap::new();
        if !ids.is_empty() {
            let key_rows = client
                .query(
                    "SELECT key_id, subject, wrapped FROM subject_keys WHERE tenant_no = $1 AND key_id = ANY($2)",
                    &[&self.tenant_no, &ids],
                )
                .await
                .map_err(pg_error)?;
            for row in key_rows {
                let key =
                    SubjectKeyRow { key_id: row.get::<_, i64>(0) as u64, subject: row.get(1), wrapped: row.get(2) };
                match self.privacy.unwrap(self.tenant, &key) {
                    Ok(unwrapped) => {
                        keys.insert(key.key_id, unwrapped);
                    }
                    Err(error) => tracing::error!(%error, key_id = key.key_id, "data key does not unwrap"),
                }
            }
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.get(0);
            let id: String = row.get(1);
            let leaf: &[u8] = row.get(2);
            let leaf_hash: [u8; 32] = leaf
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("leaf hash of record {seq} is not 32 bytes")))?;
            let personal = match row.get::<_, Option<&[u8]>>(4) {
                Some(data) => self.privacy.open_with(self.tenant, &id, data, &keys)?,
                None => None,
            };
            let sealed = row.get::<_, Vec<u8>>(3).into();
            out.push(StoredEvent { seq: seq as u64, id, sealed, leaf_hash, personal, layout: None });
        }
        Ok(out)
    }
}

/// One record by event id.
pub(crate) async fn event_by_id(
    client: &impl GenericClient,
    ctx: &ReadCtx<'_>,
    id: &str,
) -> StoreResult<Option<StoredEvent>> {
    let sql = format!("{RECORD_COLUMNS} WHERE r.tenant_no = $1 AND r.event_id = $2");
    let rows = client.query(&sql, &[&ctx.tenant_no, &id]).await.map_err(pg_error)?;
    Ok(ctx.stored_events(client, &rows).await?.pop())
}

/// Records `seq >= from` in order, at most `limit`.
pub(crate) async fn records(
    client: &impl GenericClient,
    ctx: &ReadCtx<'_>,
    from: u64,
    limit: u32,
) -> StoreResult<Vec<StoredEvent>> {
    let Ok(from) = i64::try_from(from) else { return Ok(Vec::new()) };
    let sql = format!("{RECORD_COLUMNS} WHERE r.tenant_no = $1 AND r.seq >= $2 ORDER BY r.seq LIMIT $3");
    let rows = client.query(&sql, &[&ctx.tenant_no, &from, &i64::from(limit)]).await.map_err(pg_error)?;
    ctx.stored_events(client, &rows).await
}

/// The SQL pre-filter of a query: only conditions implied by the query's filters, so it never
/// drops a true match. Parameters are numbered from `first`. `None` when no record can match
/// (a value no event can hold).
fn prefilter(
    ctx: &ReadCtx<'_>,
    query: &EventQuery,
    first: usize,
) -> Option<(String, Vec<Box<dyn ToSql + Sync + Send>>)> {
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
    ];
    // Encrypted fields are found by their blind-index tokens (no key loaded: nothing matches).
    for (column, kind, value) in [("p.email_bidx", BLIND_EMAIL, &query.actor_email), ("p.ip_bidx", BLIND_IP, &query.ip)]
    {
        let Some(value) = value else { continue };
        let token: Vec<u8> = ctx.privacy.token(ctx.tenant, kind, value).map(Vec::from).unwrap_or_default();
        let param = next(&mut args, Box::new(token));
        sql.push_str(&format!(" AND {column} = {param}"));
    }
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
    ctx: &ReadCtx<'_>,
    query: &EventQuery,
    page: &PageRequest,
) -> StoreResult<EventPage> {
    let tenant_no = ctx.tenant_no;
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
    let Some((filter_sql, filter_args)) = prefilter(ctx, query, 5) else { return Ok(empty()) };
    let direction = match page.order {
        Order::Desc => "DESC",
        Order::Asc => "ASC",
    };
    let sql = format!(
        "{RECORD_COLUMNS} WHERE r.tenant_no = $1 AND r.seq BETWEEN $2 AND $3{filter_sql}
         ORDER BY r.seq {direction} LIMIT $4"
    );
    let statement = client.prepare(&sql).await.map_err(pg_error)?;
    let mut builder = PageBuilder::new(query, page);
    while lo <= hi {
        let chunk = builder.chunk() as i64;
        let mut args: Vec<&(dyn ToSql + Sync)> = vec![&tenant_no, &lo, &hi, &chunk];
        for arg in &filter_args {
            args.push(arg.as_ref() as &(dyn ToSql + Sync));
        }
        let rows = client.query(&statement, &args).await.map_err(pg_error)?;
        let fetched = rows.len();
        let mut last_seq = None;
        for record in ctx.stored_events(client, &rows).await? {
            last_seq = Some(record.seq as i64);
            if !builder.offer(record)? {
                break;
            }
        }
        if !builder.advance(fetched, last_seq, &mut lo, &mut hi) {
            break;
        }
    }
    Ok(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_of(params: &[(&str, &str)]) -> Option<String> {
        let pairs: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (query, _) = veritrail_query::parse_params(&pairs).expect("valid params");
        let keys = veritrail_crypto::MasterKeys::new(veritrail_crypto::MasterKey::from_bytes([1; 32]));
        let privacy = Privacy::new(keys);
        let ctx = ReadCtx { privacy: &privacy, tenant: "t", tenant_no: 1 };
        prefilter(&ctx, &query, 5).map(|(sql, _)| sql)
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
                " AND p.email_bidx = $5 AND r.seq IN (SELECT seq FROM event_resources WHERE tenant_no = $1 AND rid = $6)"
            )
        );
        assert_eq!(sql_of(&[("actor_id", "a\0b")]), None, "no event holds nul");
    }
}
