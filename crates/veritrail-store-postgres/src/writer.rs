//! Appends: one group committer per tenant and node. Requests queue on the tenant's channel;
//! whatever queued while the previous transaction ran goes into the next one (up to
//! [`MAX_GROUP_EVENTS`]), and no caller hears back before that transaction has committed.
//!
//! One transaction per group does everything, so a node dying mid-way leaves nothing behind:
//! 1. lock the tenant's `ledger_heads` row (`SELECT ... FOR UPDATE`): appends of one tenant from
//!    every node queue here, which keeps `seq` dense and the tree single;
//! 2. look up the group's event ids (a statement after the lock, so under READ COMMITTED it sees
//!    everything other nodes committed before): known ids answer with their original seq;
//! 3. seal, hash and extend the tree in memory from the head row's frontier;
//! 4. insert records, personal sidecars, resources and completed Merkle nodes (multi-row
//!    `INSERT ... SELECT FROM unnest(...)`, pipelined) and update the head row;
//! 5. commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Statement;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use veritrail_ledger::hash::{Hash, leaf_hash};
use veritrail_ledger::tree::Frontier;
use veritrail_model::PreparedEvent;
use veritrail_store::dump::PersonalRow;
use veritrail_store::index_row::IndexRow;
use veritrail_store::privacy::{Privacy, SealedBatch};
use veritrail_store::{Appended, StoreError, StoreResult};

use crate::stats::Stats;
use crate::tree::{NODE_LEVEL_STEP, to_hash};
use crate::{pg_error, pool_error};

/// Most events put into one group commit.
const MAX_GROUP_EVENTS: usize = 10_000;
/// Largest `seq`: sealed records carry it as a JSON number, exact only below 2^53.
const MAX_SEQ: u64 = (1 << 53) - 1;

/// One caller's append, waiting for its group.
pub(crate) struct AppendRequest {
    pub(crate) events: Arc<Vec<PreparedEvent>>,
    /// The events' encrypted sidecars and the data keys created for them.
    pub(crate) sealed: SealedBatch,
    pub(crate) reply: oneshot::Sender<StoreResult<Vec<Appended>>>,
}

/// One request of a group as `commit` sees it.
type Batch<'a> = (&'a [PreparedEvent], &'a SealedBatch);

/// The tenant a committer appends to.
#[derive(Clone)]
pub(crate) struct TenantRef {
    pub(crate) no: i64,
    pub(crate) id: String,
}

/// Runs one tenant's group committer until every sender of its channel is gone (shutdown);
/// requests queued before that are still committed.
pub(crate) async fn run(
    pool: deadpool_postgres::Pool,
    tenant: TenantRef,
    mut requests: mpsc::Receiver<AppendRequest>,
    stats: Arc<Stats>,
    privacy: Arc<Privacy>,
) {
    while let Some(first) = requests.recv().await {
        let mut count = first.events.len();
        let mut group = vec![first];
        while count < MAX_GROUP_EVENTS {
            match requests.try_recv() {
                Ok(request) => {
                    count += request.events.len();
                    group.push(request);
                }
                Err(_) => break,
            }
        }
        stats.queue_depth.fetch_sub(group.len() as u64, Ordering::Relaxed);
        commit_group(&pool, &tenant, group, &stats, &privacy).await;
    }
}

async fn commit_group(
    pool: &deadpool_postgres::Pool,
    tenant: &TenantRef,
    group: Vec<AppendRequest>,
    stats: &Stats,
    privacy: &Privacy,
) {
    let started = Instant::now();
    let batches: Vec<Batch<'_>> = group.iter().map(|r| (r.events.as_slice(), &r.sealed)).collect();
    let outcome = commit(pool, tenant, &batches, privacy).await;
    match outcome {
        Ok(committed) => {
            stats.record_commit(started.elapsed(), committed.new_events);
            remember_new_keys(privacy, tenant, &group, &committed.results);
            for (request, result) in group.into_iter().zip(committed.results) {
                let _ = request.reply.send(result);
            }
        }
        // A database error caused by one request must not fail the others: retry each alone.
        Err(error) if group.len() > 1 && !matches!(error, StoreError::Unavailable(_)) => {
            tracing::warn!(%error, tenant = %tenant.id, requests = group.len(), "group commit failed; retrying requests one by one");
            for request in group {
                let started = Instant::now();
                let result = match commit(pool, tenant, &[(request.events.as_slice(), &request.sealed)], privacy).await
                {
                    Ok(mut committed) => {
                        stats.record_commit(started.elapsed(), committed.new_events);
                        remember_new_keys(privacy, tenant, std::slice::from_ref(&request), &committed.results);
                        committed.results.pop().unwrap_or_else(|| Err(StoreError::Backend("no result".into())))
                    }
                    Err(error) => Err(error),
                };
                let _ = request.reply.send(result);
            }
        }
        Err(error) => {
            tracing::error!(%error, tenant = %tenant.id, "group commit failed");
            for request in group {
                let _ = request.reply.send(Err(clone_error(&error)));
            }
        }
    }
}

/// After a commit: the data keys it created may seal this node's next events.
fn remember_new_keys(
    privacy: &Privacy,
    tenant: &TenantRef,
    requests: &[AppendRequest],
    results: &[StoreResult<Vec<Appended>>],
) {
    for (request, result) in requests.iter().zip(results) {
        if result.is_ok()
            && !request.sealed.new_keys.is_empty()
            && let Err(error) = privacy.committed(&tenant.id, &request.sealed.new_keys)
        {
            tracing::error!(%error, "cannot cache new data keys");
        }
    }
}

fn clone_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Retry(why) => StoreError::Retry(why.clone()),
        StoreError::TenantNotFound(t) => StoreError::TenantNotFound(t.clone()),
        StoreError::AlreadyExists(what) => StoreError::AlreadyExists(what.clone()),
        StoreError::Conflict(why) => StoreError::Conflict(why.clone()),
        StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
        StoreError::Corrupt(why) => StoreError::Corrupt(why.clone()),
        StoreError::Backend(why) => StoreError::Backend(format!("commit failed: {why}")),
    }
}

/// What a committed group answers: one result per request, and how many events were new.
struct Committed {
    results: Vec<StoreResult<Vec<Appended>>>,
    new_events: u64,
}

/// The tenant's tree as the head row describes it, extended in memory during a group.
#[derive(Clone)]
struct Head {
    frontier: Frontier,
    last_received_at: Timestamp,
}

/// Rows to insert, column by column (the shape `unnest` wants): what the committer writes for a
/// group, and what `migrate-store` writes for the records it imports.
#[derive(Default)]
pub(crate) struct Rows {
    seq: Vec<i64>,
    event_id: Vec<String>,
    leaf_hash: Vec<Vec<u8>>,
    sealed: Vec<Vec<u8>>,
    occurred_at: Vec<Timestamp>,
    action: Vec<String>,
    actor_id: Vec<String>,
    actor_type: Vec<String>,
    outcome: Vec<String>,
    channel: Vec<Option<String>>,
    data_subject: Vec<Option<String>>,
    personal_seq: Vec<i64>,
    personal_data: Vec<Vec<u8>>,
    personal_email: Vec<Option<Vec<u8>>>,
    personal_ip: Vec<Option<Vec<u8>>>,
    resource_seq: Vec<i64>,
    resource_id: Vec<String>,
    resource_type: Vec<String>,
    node_level: Vec<i32>,
    node_index: Vec<i64>,
    node_hash: Vec<Vec<u8>>,
}

impl Rows {
    /// Adds one record at `seq` with its query columns and resources ([`IndexRow`] of its
    /// sealed bytes) and its encrypted sidecar with its blind-index tokens.
    pub(crate) fn push_record(
        &mut self,
        seq: i64,
        event_id: String,
        leaf: &Hash,
        sealed: Vec<u8>,
        personal: Option<PersonalRow>,
    ) -> StoreResult<()> {
        let fields = IndexRow::of(&sealed)?;
        self.seq.push(seq);
        self.event_id.push(event_id);
        self.leaf_hash.push(leaf.0.to_vec());
        self.occurred_at.push(Timestamp::from_microsecond(fields.occurred_at).unwrap_or(Timestamp::UNIX_EPOCH));
        self.action.push(fields.action);
        self.actor_id.push(fields.actor_id);
        self.actor_type.push(fields.actor_type);
        self.outcome.push(fields.outcome);
        self.channel.push(fields.channel);
        self.data_subject.push(fields.data_subject);
        if let Some(personal) = personal {
            self.personal_seq.push(seq);
            self.personal_data.push(personal.data);
            self.personal_email.push(personal.email_bidx);
            self.personal_ip.push(personal.ip_bidx);
        }
        let mut resources = fields.resources;
        resources.sort();
        resources.dedup();
        for (rtype, rid) in resources {
            self.resource_seq.push(seq);
            self.resource_type.push(rtype);
            self.resource_id.push(rid);
        }
        self.sealed.push(sealed);
        Ok(())
    }

    /// Adds a completed Merkle node if its level is one that is stored.
    pub(crate) fn push_node(&mut self, node: &veritrail_ledger::tree::CompletedNode) {
        if node.level.is_multiple_of(NODE_LEVEL_STEP) {
            self.node_level.push(node.level as i32);
            self.node_index.push(node.index as i64);
            self.node_hash.push(node.hash.0.to_vec());
        }
    }

    /// True when no record was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }
}

/// The inserts of [`Rows`], prepared on the transaction's connection.
pub(crate) struct RowInserts {
    records: Statement,
    personal: Statement,
    resources: Statement,
    nodes: Statement,
}

impl RowInserts {
    /// Prepares them without the pool's statement cache (a one-off connection).
    pub(crate) async fn prepare(tx: &tokio_postgres::Transaction<'_>) -> Result<RowInserts, tokio_postgres::Error> {
        let (records, personal, resources, nodes) = tokio::try_join!(
            tx.prepare(INSERT_RECORDS),
            tx.prepare(INSERT_PERSONAL),
            tx.prepare(INSERT_RESOURCES),
            tx.prepare(INSERT_NODES),
        )?;
        Ok(RowInserts { records, personal, resources, nodes })
    }

    /// Inserts every row of `rows` for the tenant, the statements pipelined on the connection.
    pub(crate) async fn insert(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        tenant_no: i64,
        rows: &Rows,
    ) -> Result<(), tokio_postgres::Error> {
        let record_params: [&(dyn ToSql + Sync); 12] = [
            &tenant_no,
            &rows.seq,
            &rows.event_id,
            &rows.leaf_hash,
            &rows.sealed,
            &rows.occurred_at,
            &rows.action,
            &rows.actor_id,
            &rows.actor_type,
            &rows.outcome,
            &rows.channel,
            &rows.data_subject,
        ];
        let personal_params: [&(dyn ToSql + Sync); 5] =
            [&tenant_no, &rows.personal_seq, &rows.personal_data, &rows.personal_email, &rows.personal_ip];
        let resource_params: [&(dyn ToSql + Sync); 4] =
            [&tenant_no, &rows.resource_seq, &rows.resource_id, &rows.resource_type];
        let node_params: [&(dyn ToSql + Sync); 4] = [&tenant_no, &rows.node_level, &rows.node_index, &rows.node_hash];
        let (records, personal, resources, nodes) = tokio::join!(
            optional(!rows.seq.is_empty(), tx.execute(&self.records, &record_params)),
            optional(!rows.personal_seq.is_empty(), tx.execute(&self.personal, &personal_params)),
            optional(!rows.resource_seq.is_empty(), tx.execute(&self.resources, &resource_params)),
            optional(!rows.node_level.is_empty(), tx.execute(&self.nodes, &node_params)),
        );
        first_cause([records, personal, resources, nodes])
    }
}

/// The error of statements pipelined in one transaction that says why it failed: the first
/// that is not PostgreSQL refusing a statement because an earlier one had failed (25P02), which
/// is all the statements after the failed one can answer. They are awaited together (`join!`;
/// with `try_join!` whichever refusal was polled first became the error, and a commit failing
/// on, say, a unique index reported only "current transaction is aborted").
fn first_cause(
    results: impl IntoIterator<Item = Result<u64, tokio_postgres::Error>>,
) -> Result<(), tokio_postgres::Error> {
    let mut refused = None;
    for result in results {
        match result {
            Ok(_) => {}
            Err(error) if error.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION) => {
                refused.get_or_insert(error);
            }
            Err(error) => return Err(error),
        }
    }
    refused.map_or(Ok(()), Err)
}

/// Data keys created for a group, column by column.
#[derive(Default)]
struct NewKeys {
    key_id: Vec<i64>,
    subject: Vec<String>,
    wrapped: Vec<Vec<u8>>,
}

impl Rows {
    fn extend(&mut self, other: Rows) {
        self.seq.extend(other.seq);
        self.event_id.extend(other.event_id);
        self.leaf_hash.extend(other.leaf_hash);
        self.sealed.extend(other.sealed);
        self.occurred_at.extend(other.occurred_at);
        self.action.extend(other.action);
        self.actor_id.extend(other.actor_id);
        self.actor_type.extend(other.actor_type);
        self.outcome.extend(other.outcome);
        self.channel.extend(other.channel);
        self.data_subject.extend(other.data_subject);
        self.personal_seq.extend(other.personal_seq);
        self.personal_data.extend(other.personal_data);
        self.personal_email.extend(other.personal_email);
        self.personal_ip.extend(other.personal_ip);
        self.resource_seq.extend(other.resource_seq);
        self.resource_id.extend(other.resource_id);
        self.resource_type.extend(other.resource_type);
        self.node_level.extend(other.node_level);
        self.node_index.extend(other.node_index);
        self.node_hash.extend(other.node_hash);
    }
}

const LOCK_HEAD: &str = "SELECT size, frontier, last_received_at FROM ledger_heads WHERE tenant_no = $1 FOR UPDATE";
/// One probe of the unique `(tenant_no, event_id)` index per id. (`event_id = ANY($2)` let the
/// generic plan of a fresh, never-analysed table scan the tenant's whole actor index instead,
/// at every group commit.)
pub(crate) const KNOWN_IDS: &str = "SELECT r.event_id, r.seq FROM unnest($2::text[]) AS wanted(id),
    LATERAL (SELECT event_id, seq FROM records WHERE tenant_no = $1 AND event_id = wanted.id) AS r";
const INSERT_RECORDS: &str = "INSERT INTO records (tenant_no, seq, event_id, leaf_hash, sealed, occurred_at, action,
        actor_id, actor_type, outcome, channel, data_subject)
    SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bytea[], $5::bytea[], $6::timestamptz[], $7::text[],
        $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])";
const INSERT_PERSONAL: &str = "INSERT INTO personal (tenant_no, seq, data, email_bidx, ip_bidx)
    SELECT $1, * FROM unnest($2::bigint[], $3::bytea[], $4::bytea[], $5::bytea[])";
/// The existing keys a group was sealed under, locked against a concurrent erasure's DELETE.
const LOCK_KEYS: &str = "SELECT key_id FROM subject_keys WHERE tenant_no = $1 AND key_id = ANY($2) FOR KEY SHARE";
const INSERT_KEYS: &str = "INSERT INTO subject_keys (key_id, tenant_no, subject, wrapped)
    SELECT unnest($1::bigint[]), $2, unnest($3::text[]), unnest($4::bytea[])";
const INSERT_RESOURCES: &str = "INSERT INTO event_resources (tenant_no, seq, rid, rtype)
    SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[])";
const INSERT_NODES: &str = "INSERT INTO merkle_nodes (tenant_no, level, idx, hash)
    SELECT $1, * FROM unnest($2::integer[], $3::bigint[], $4::bytea[])";
const UPDATE_HEAD: &str =
    "UPDATE ledger_heads SET size = $2, root = $3, frontier = $4, last_received_at = $5 WHERE tenant_no = $1";

/// Appends `batches` (one per request, in order) to the tenant's ledger in one transaction.
/// `Err` means nothing was written; a request that cannot be sealed fails alone.
async fn commit(
    pool: &deadpool_postgres::Pool,
    tenant: &TenantRef,
    batches: &[Batch<'_>],
    privacy: &Privacy,
) -> StoreResult<Committed> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let row = tx
        .query_opt(&tx.prepare_cached(LOCK_HEAD).await.map_err(pg_error)?, &[&tenant.no])
        .await
        .map_err(pg_error)?
        .ok_or_else(|| StoreError::TenantNotFound(tenant.id.clone()))?;
    let size: i64 = row.get(0);
    let mut head = Head { frontier: decode_frontier(size, row.get(1))?, last_received_at: row.get(2) };

    // A key destroyed by an erasure (on any node) after this node sealed with it: that request
    // is refused with Retry and this node forgets the key, so the retry seals under a new one.
    let used: Vec<i64> = batches.iter().flat_map(|(_, sealed)| sealed.used_keys.iter().map(|id| *id as i64)).collect();
    let mut destroyed: Vec<u64> = Vec::new();
    if !used.is_empty() {
        let live: std::collections::HashSet<i64> = tx
            .query(&tx.prepare_cached(LOCK_KEYS).await.map_err(pg_error)?, &[&tenant.no, &used])
            .await
            .map_err(pg_error)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        destroyed = used.iter().filter(|id| !live.contains(id)).map(|id| *id as u64).collect();
        if !destroyed.is_empty() {
            privacy.forget_keys(&tenant.id, &destroyed);
        }
    }
    let ids: Vec<&str> = batches.iter().flat_map(|(batch, _)| batch.iter().map(|e| e.id.as_str())).collect();
    let mut known: HashMap<String, u64> = HashMap::new();
    for row in
        tx.query(&tx.prepare_cached(KNOWN_IDS).await.map_err(pg_error)?, &[&tenant.no, &ids]).await.map_err(pg_error)?
    {
        let seq: i64 = row.get(1);
        known.insert(row.get(0), seq as u64);
    }

    // received_at never goes back, whatever the clocks of the nodes.
    let received_at = Timestamp::now().max(head.last_received_at);
    let mut rows = Rows::default();
    let mut results = Vec::with_capacity(batches.len());
    let mut new_events = 0u64;
    let mut new_keys = NewKeys::default();
    for (batch, sealed) in batches {
        if sealed.used_keys.iter().any(|id| destroyed.contains(id)) {
            results.push(Err(StoreError::Retry("a data key it was sealed under was destroyed".into())));
            continue;
        }
        let mut staged = Rows::default();
        let mut staged_head = head.clone();
        let mut staged_ids = Vec::new();
        match stage(tenant, batch, sealed, received_at, &mut staged_head, &mut staged, &mut known, &mut staged_ids) {
            Ok(appended) => {
                new_events += appended.iter().filter(|a| !a.duplicate).count() as u64;
                head = staged_head;
                rows.extend(staged);
                for key in &sealed.new_keys {
                    new_keys.key_id.push(key.key_id as i64);
                    new_keys.subject.push(key.subject.clone());
                    new_keys.wrapped.push(key.wrapped.clone());
                }
                results.push(Ok(appended));
            }
            Err(error) => {
                for id in staged_ids {
                    known.remove(&id);
                }
                results.push(Err(error));
            }
        }
    }
    if new_events == 0 {
        // Only duplicates or failures: nothing to write; the lock goes with the rollback.
        tx.rollback().await.map_err(pg_error)?;
        return Ok(Committed { results, new_events });
    }
    head.last_received_at = received_at;
    if !new_keys.key_id.is_empty() {
        let params: [&(dyn ToSql + Sync); 4] = [&new_keys.key_id, &tenant.no, &new_keys.subject, &new_keys.wrapped];
        tx.execute(&tx.prepare_cached(INSERT_KEYS).await.map_err(pg_error)?, &params).await.map_err(pg_error)?;
    }
    write_rows(&tx, tenant.no, &rows, &head).await?;
    tx.commit().await.map_err(pg_error)?;
    Ok(Committed { results, new_events })
}

/// Seals one request's new events onto `head`, collecting their rows; ids seen for the first
/// time are added to `known` (and to `added`, so the caller can take them back on failure).
#[allow(clippy::too_many_arguments)]
fn stage(
    tenant: &TenantRef,
    events: &[PreparedEvent],
    sealed_batch: &SealedBatch,
    received_at: Timestamp,
    head: &mut Head,
    rows: &mut Rows,
    known: &mut HashMap<String, u64>,
    added: &mut Vec<String>,
) -> StoreResult<Vec<Appended>> {
    let mut appended = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        if let Some(&seq) = known.get(&event.id) {
            appended.push(Appended { id: event.id.clone(), seq, duplicate: true });
            continue;
        }
        let seq = head.frontier.size();
        if seq > MAX_SEQ {
            return Err(StoreError::Backend(format!("tenant {} reached the maximum ledger size", tenant.id)));
        }
        let sealed = veritrail_model::seal(event, &tenant.id, seq, received_at)
            .map_err(|e| StoreError::Backend(format!("cannot seal event {}: {e}", event.id)))?;
        let leaf = leaf_hash(&sealed);
        head.frontier
            .push_with(leaf, |node| rows.push_node(&node))
            .map_err(|e| StoreError::Backend(format!("merkle tree of tenant {} is full: {e}", tenant.id)))?;
        let personal = match sealed_batch.sidecars.get(index) {
            Some(Some(sidecar)) => Some(PersonalRow {
                data: sidecar.data.clone(),
                email_bidx: sidecar.email.map(Vec::from),
                ip_bidx: sidecar.ip.map(Vec::from),
            }),
            _ => None,
        };
        rows.push_record(seq as i64, event.id.clone(), &leaf, sealed, personal)?;
        known.insert(event.id.clone(), seq);
        added.push(event.id.clone());
        appended.push(Appended { id: event.id.clone(), seq, duplicate: false });
    }
    Ok(appended)
}

/// Writes a group's rows and the new head, every statement pipelined on the one connection.
async fn write_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant_no: i64,
    rows: &Rows,
    head: &Head,
) -> StoreResult<()> {
    let (records, personal, resources, nodes, update) = tokio::try_join!(
        tx.prepare_cached(INSERT_RECORDS),
        tx.prepare_cached(INSERT_PERSONAL),
        tx.prepare_cached(INSERT_RESOURCES),
        tx.prepare_cached(INSERT_NODES),
        tx.prepare_cached(UPDATE_HEAD),
    )
    .map_err(pg_error)?;
    let inserts = RowInserts { records, personal, resources, nodes };
    let size = head.frontier.size() as i64;
    let root = head.frontier.root().0.to_vec();
    let frontier = encode_frontier(&head.frontier);
    let head_params: [&(dyn ToSql + Sync); 5] = [&tenant_no, &size, &root, &frontier, &head.last_received_at];
    let (inserted, updated) = tokio::join!(inserts.insert(tx, tenant_no, rows), tx.execute(&update, &head_params));
    first_cause([inserted.map(|()| 0), updated]).map_err(pg_error)
}

/// Runs `statement` only when there are rows for it.
async fn optional(
    wanted: bool,
    statement: impl std::future::Future<Output = Result<u64, tokio_postgres::Error>>,
) -> Result<u64, tokio_postgres::Error> {
    if wanted { statement.await } else { Ok(0) }
}

/// The head row's `frontier`: the subtree hashes of the compact range, concatenated.
pub(crate) fn encode_frontier(frontier: &Frontier) -> Vec<u8> {
    frontier.subtrees().iter().flat_map(|hash| hash.0).collect()
}

/// Restores the frontier of a tree of `size` leaves from the head row.
pub(crate) fn decode_frontier(size: i64, bytes: &[u8]) -> StoreResult<Frontier> {
    if size < 0 || !bytes.len().is_multiple_of(32) {
        return Err(StoreError::Corrupt(format!("ledger head of size {size} has a damaged frontier")));
    }
    let mut hashes: Vec<Hash> = Vec::with_capacity(bytes.len() / 32);
    for chunk in bytes.chunks(32) {
        hashes.push(to_hash(chunk)?);
    }
    Frontier::from_subtrees(size as u64, hashes)
        .map_err(|e| StoreError::Corrupt(format!("ledger head of size {size} has a damaged frontier: {e}")))
}
