//! The storage traits of Veritrail and the conformance suite every backend must pass.
//!
//! **Architecture invariant:** this crate depends on no database crate and no async runtime.
//! Backends (`veritrail-store-sqlite`, `veritrail-store-postgres`) implement [`Store`];
//! the server only ever sees `Arc<dyn Store>`. Monitoring (rules, alerts, webhook deliveries)
//! has its own trait, [`AlertStore`], with its own suite (`alert_store_test_suite!`); so has
//! access control (users, sessions, custom roles, identity providers): [`AccessStore`]
//! (`access_store_test_suite!`).
//! Backend-specific detail (file names, SQL, pragmas, tenant numbering) never appears here.
//!
//! **Ledger invariant:** [`Store::append`] is the only way events enter a ledger. The backend's
//! single writer per tenant assigns `seq` densely from 0, seals each event with
//! [`veritrail_model::seal`], extends the tenant's RFC 6962 tree and makes all of it durable in
//! one commit before the future resolves.

#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;

use jiff::Timestamp;
use veritrail_model::PreparedEvent;
use veritrail_query::{Cursor, EventQuery, Order, PageRequest};

mod access;
#[cfg(feature = "test-suite")]
pub mod access_suite;
#[cfg(feature = "test-suite")]
pub mod alert_suite;
mod alerts;
pub mod dump;
pub mod index_row;
pub mod privacy;
#[cfg(feature = "test-suite")]
pub mod suite;

pub use access::{
    AccessStore, IdentityProviderRecord, RoleRecord, SessionRecord, UserCursor, UserRecord, UserStatus, UserUpdate,
    is_builtin_role, normalize_email,
};
pub use alerts::{
    Alert, AlertFilter, AlertStatus, AlertStore, Delivery, DeliveryAttempt, DeliveryStatus, MAX_DELIVERY_ERROR_CHARS,
    NewAlert, OutboundMessage, RecordedAttempt, StatusChange, StoredRule, WebhookEndpoint, engine_owner,
    event_type_matches,
};

/// Opens a stored record as readers see it (what queries match on; both backends use it);
/// personal data that does not fit its commitments reads as erased rather than failing.
pub fn open_view(sealed: &[u8], personal: Option<&veritrail_model::PersonalData>) -> StoreResult<serde_json::Value> {
    match veritrail_model::open(sealed, personal) {
        Ok(view) => Ok(view),
        Err(_) if personal.is_some() => veritrail_model::open(sealed, None)
            .map_err(|e| StoreError::Corrupt(format!("cannot open sealed record: {e}"))),
        Err(e) => Err(StoreError::Corrupt(format!("cannot open sealed record: {e}"))),
    }
}

/// A boxed, sendable future, so that [`Store`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything that can go wrong below the trait, backend detail boxed into the message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The tenant does not exist.
    #[error("tenant {0:?} not found")]
    TenantNotFound(String),
    /// A unique value (tenant id, key id) exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The store is shutting down or its writer stopped; nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data is inconsistent with itself (a failed invariant, damaged file).
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// A concurrent change (an erasure destroyed a key the request was sealed under) made the
    /// request stale; nothing was written and repeating it is safe. Backends retry themselves.
    #[error("request conflicts with a concurrent change: {0}")]
    Retry(String),
    /// The request contradicts what is stored (deleting a role users still hold, assigning a
    /// role that does not exist); nothing was written and repeating it fails the same way.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Any other backend failure (I/O, disk full, database error).
    #[error("storage error: {0}")]
    Backend(String),
}

/// An isolated organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Public identifier, e.g. `tn_01j...` (also the last part of the ledger origin).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A stored API key. The secret itself is never stored, only a keyed hash of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public key id (the part of the token before the secret), unique across the store.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Human label.
    pub name: String,
    /// Keyed hash of the secret part.
    pub secret_hash: [u8; 32],
    /// Granted scopes, e.g. `events:write`.
    pub scopes: Vec<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// After this instant the key is refused.
    pub expires_at: Option<Timestamp>,
    /// Set once revoked; revoked keys are refused at once.
    pub revoked_at: Option<Timestamp>,
}

/// The outcome of appending one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The event id.
    pub id: String,
    /// Its position in the tenant's ledger.
    pub seq: u64,
    /// True when the id was already present and nothing new was written.
    pub duplicate: bool,
}

/// One sealed ledger record as stored, with its personal-data sidecar.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Position in the tenant's ledger.
    pub seq: u64,
    /// Event id.
    pub id: String,
    /// The exact canonical bytes that were hashed into the ledger (shared, not copied, when
    /// served from a store's memory).
    pub sealed: bytes::Bytes,
    /// `SHA-256(0x00 || sealed)`.
    pub leaf_hash: [u8; 32],
    /// The personal data, decrypted: absent when the event carried none or all of it was
    /// erased; an erased owner's fields are missing (they read as `"[erased]"`).
    pub personal: Option<veritrail_model::PersonalData>,
    /// Where the members of `sealed` lie, when the store sealed it in this process and still
    /// holds the layout (records served from memory): readers that pick members
    /// ([`veritrail_model::SealedMembers::from_layout`]) skip scanning for them. Not part of
    /// the record: two stored events are equal whatever their layouts.
    pub layout: Option<veritrail_model::MemberLayout>,
}

impl PartialEq for StoredEvent {
    fn eq(&self, other: &StoredEvent) -> bool {
        (self.seq, &self.id, &self.sealed, &self.leaf_hash, &self.personal)
            == (other.seq, &other.id, &other.sealed, &other.leaf_hash, &other.personal)
    }
}

impl Eq for StoredEvent {}

/// What [`Store::erase_subject`] destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Erasure {
    /// Data keys of the subject destroyed (every ciphertext under them is now unreadable).
    pub keys_destroyed: u64,
    /// Events whose blind-index tokens (e-mail, IP) were cleared.
    pub events_unlinked: u64,
}

/// A page of query results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// Matching events in the requested order.
    pub events: Vec<StoredEvent>,
    /// `events[i]` opened with `veritrail_model::open` (what the match was decided on), so
    /// callers need not open each record again.
    pub views: Vec<serde_json::Value>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<Cursor>,
}

/// What a backend's [`Store::query`] does after its SQL pre-filter: candidates are walked in
/// the page's order, in chunks, each opened and decided by [`EventQuery::matches`], until the
/// page holds `limit + 1` matches (the extra one says a next page exists) or the candidates
/// run out. Positions (`lo`, `hi`, `last`) are whatever the backend orders candidates by.
#[derive(Debug)]
pub struct PageBuilder<'q> {
    query: &'q EventQuery,
    order: Order,
    wanted: usize,
    chunk: usize,
    events: Vec<StoredEvent>,
    views: Vec<serde_json::Value>,
}

impl<'q> PageBuilder<'q> {
    /// A page of up to `page.limit` events matching `query`, in `page.order`.
    pub fn new(query: &'q EventQuery, page: &PageRequest) -> PageBuilder<'q> {
        let wanted = page.limit as usize + 1;
        // Start with what the page needs; widen when the final match rejects candidates.
        PageBuilder { query, order: page.order, wanted, chunk: wanted.max(16), events: Vec::new(), views: Vec::new() }
    }

    /// How many candidates to fetch next.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// Whether the page holds all it needs.
    pub fn is_full(&self) -> bool {
        self.events.len() >= self.wanted
    }

    /// Opens a candidate and keeps it if the query matches; false once the page is full.
    pub fn offer(&mut self, record: StoredEvent) -> StoreResult<bool> {
        let view = open_view(&record.sealed, record.personal.as_ref())?;
        if self.query.matches(&view) {
            self.events.push(record);
            self.views.push(view);
        }
        Ok(!self.is_full())
    }

    /// After a chunk of `fetched` candidates, the last at position `last`: false when there is
    /// nothing more to walk; else moves `lo` or `hi` past `last` and widens the next chunk.
    pub fn advance(&mut self, fetched: usize, last: Option<i64>, lo: &mut i64, hi: &mut i64) -> bool {
        let Some(last) = last else { return false };
        if fetched < self.chunk {
            return false;
        }
        match self.order {
            Order::Desc => *hi = last - 1,
            Order::Asc => *lo = last + 1,
        }
        self.chunk = (self.chunk * 4).min(MAX_QUERY_CHUNK);
        !self.is_full() && *lo <= *hi
    }

    /// The page, with its cursor when there is more.
    pub fn finish(mut self) -> EventPage {
        let mut next = None;
        if self.is_full() {
            self.events.pop();
            self.views.pop();
            next = self.events.last().map(|last| Cursor { seq: last.seq, order: self.order });
        }
        EventPage { events: self.events, views: self.views, next }
    }
}

/// Most candidates one chunk of a query fetches.
pub const MAX_QUERY_CHUNK: usize = 1024;

/// Size and root of a tenant's Merkle tree after the last commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// Number of leaves (= next `seq`).
    pub size: u64,
    /// RFC 6962 root hash.
    pub root: [u8; 32],
}

/// A signed checkpoint of a tenant's ledger, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size it commits to.
    pub size: u64,
    /// Root hash at that size.
    pub root: [u8; 32],
    /// The complete C2SP signed note.
    pub note: String,
    /// When it was signed.
    pub created_at: Timestamp,
}

/// An RFC 3161 time-stamp of a stored checkpoint: a Time-Stamp Authority's signature over the
/// SHA-256 of the checkpoint's exact signed-note bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointTimestamp {
    /// Tree size of the checkpoint it time-stamps.
    pub size: u64,
    /// The DER `TimeStampResp` exactly as the TSA sent it (status granted, token included),
    /// verified before it was stored.
    pub response: Vec<u8>,
}

/// How far the derived query indexes trail the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexStatus {
    /// Events committed to ledgers but not yet visible to [`Store::query`].
    pub lag_events: u64,
    /// True while a rebuild from the ledger is running.
    pub rebuilding: bool,
}

/// Counters a backend exposes for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStats {
    /// Events durably appended since start (duplicates excluded).
    pub events_appended: u64,
    /// Group commits since start.
    pub commits: u64,
    /// Append requests waiting for the writer.
    pub queue_depth: u64,
    /// Cumulative counts of commit latencies per bucket: `(upper bound in seconds, count)`.
    pub commit_latency_buckets: Vec<(f64, u64)>,
    /// Sum of all commit latencies in seconds.
    pub commit_latency_sum: f64,
    /// Index progress.
    pub index: IndexStatus,
    /// Records [`Store::records`] answered since start from the store's memory of the last
    /// commits, and from storage: a follower of the live ledger (the rule engine) that falls
    /// behind that memory shows as reads from storage.
    pub records_from_memory: u64,
    /// See [`StoreStats::records_from_memory`].
    pub records_from_storage: u64,
}

/// The persistence of Veritrail: tenants, keys, settings, ledgers and their query indexes.
pub trait Store: Send + Sync + 'static {
    /// Stores a new tenant; fails with [`StoreError::AlreadyExists`] if its id is taken.
    fn create_tenant(&self, tenant: Tenant) -> BoxFuture<'_, StoreResult<()>>;
    /// Looks a tenant up by id.
    fn tenant(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<Tenant>>>;
    /// All tenants, oldest first.
    fn tenants(&self) -> BoxFuture<'_, StoreResult<Vec<Tenant>>>;

    /// Stores a new API key.
    fn create_api_key(&self, key: ApiKeyRecord) -> BoxFuture<'_, StoreResult<()>>;
    /// Looks a key up by its public id, whatever its tenant or state.
    fn api_key(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<ApiKeyRecord>>>;
    /// A tenant's keys, oldest first, revoked ones included.
    fn api_keys(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<ApiKeyRecord>>>;
    /// Marks a key revoked; returns false when the tenant has no such key.
    fn revoke_api_key(&self, tenant: &str, id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<bool>>;

    /// Reads a server-wide setting (bootstrap token hash, peppers, signing keys).
    fn setting(&self, name: &str) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>>;
    /// Stores `value` under `name` unless a value exists; returns the value now stored, so that
    /// several nodes racing to initialise agree on one.
    fn init_setting(&self, name: &str, value: Vec<u8>) -> BoxFuture<'_, StoreResult<Vec<u8>>>;

    /// Replaces the value of `name` with `new` only if it currently equals `expected`
    /// (compare-and-swap); returns whether it did.
    fn swap_setting(&self, name: &str, expected: Vec<u8>, new: Vec<u8>) -> BoxFuture<'_, StoreResult<bool>>;

    /// Appends events to a tenant's ledger, durably, in the given order. An id already in the
    /// ledger (or earlier in the same batch) is not written again: its original `seq` is returned
    /// with `duplicate = true`.
    fn append(&self, tenant: &str, events: Vec<PreparedEvent>) -> BoxFuture<'_, StoreResult<Vec<Appended>>>;
    /// One event by id, straight from the ledger (never lags).
    fn event_by_id(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<StoredEvent>>>;
    /// [`Store::event_by_id`] for an own-records-only reader: the event only when its
    /// `actor.id` is `actor`, otherwise (and when the actor was erased) answered as absent, so
    /// the caller never holds another actor's event.
    fn own_event_by_id<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
        actor: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<StoredEvent>>> {
        Box::pin(async move {
            let Some(stored) = self.event_by_id(tenant, id).await? else {
                return Ok(None);
            };
            let view = veritrail_model::open(&stored.sealed, stored.personal.as_ref())
                .map_err(|e| StoreError::Corrupt(format!("event {id}: {e}")))?;
            let own = view.pointer("/actor/id").and_then(serde_json::Value::as_str) == Some(actor);
            Ok(own.then_some(stored))
        })
    }
    /// Events matching `query`, from the indexed part of the ledger.
    fn query<'a>(
        &'a self,
        tenant: &'a str,
        query: &'a EventQuery,
        page: &'a PageRequest,
    ) -> BoxFuture<'a, StoreResult<EventPage>>;
    /// Sealed records with `seq >= from`, in seq order, at most `limit`.
    fn records(&self, tenant: &str, from: u64, limit: u32) -> BoxFuture<'_, StoreResult<Vec<StoredEvent>>>;
    /// [`Store::records`] for a reader that takes each event's id from its sealed record (the
    /// rule engine, which needs ids only of the events rules keep): a store may leave `id`
    /// empty — the embedded store does for records it serves from memory, sparing a copy per
    /// event. Everything else is as `records` gives it.
    fn records_lean(&self, tenant: &str, from: u64, limit: u32) -> BoxFuture<'_, StoreResult<Vec<StoredEvent>>> {
        self.records(tenant, from, limit)
    }
    /// The tenant's current tree size and root.
    fn tree_head(&self, tenant: &str) -> BoxFuture<'_, StoreResult<TreeHead>>;
    /// The tenant's current tree size (its next `seq`), for callers that need no root: backends
    /// whose root costs reads answer it more cheaply.
    fn tree_size(&self, tenant: &str) -> BoxFuture<'_, StoreResult<u64>> {
        let tenant = tenant.to_string();
        Box::pin(async move { Ok(self.tree_head(&tenant).await?.size) })
    }
    /// Hashes of perfect subtrees, each `(level, index)` covering leaves
    /// `[index * 2^level, (index + 1) * 2^level)`, read in one consistent snapshot. Fails with
    /// [`StoreError::Corrupt`] if a requested subtree is not complete.
    fn subtree_hashes(&self, tenant: &str, nodes: Vec<(u32, u64)>) -> BoxFuture<'_, StoreResult<Vec<[u8; 32]>>>;
    /// Every tenant's tree head, for the checkpointer's pass over all tenants. Backends that keep
    /// the heads of their last commits in memory answer without touching storage; the default
    /// asks for each tenant in turn.
    fn tree_heads(&self) -> BoxFuture<'_, StoreResult<Vec<(String, TreeHead)>>> {
        Box::pin(async move {
            let mut heads = Vec::new();
            for tenant in self.tenants().await? {
                let head = self.tree_head(&tenant.id).await?;
                heads.push((tenant.id, head));
            }
            Ok(heads)
        })
    }

    /// Stores a signed checkpoint; storing one for a size already checkpointed is a no-op.
    fn add_checkpoint(&self, tenant: &str, checkpoint: StoredCheckpoint) -> BoxFuture<'_, StoreResult<()>>;
    /// The checkpoint with the largest tree size.
    fn latest_checkpoint(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Option<StoredCheckpoint>>>;
    /// The checkpoint at exactly `size`, if one was issued.
    fn checkpoint_at(&self, tenant: &str, size: u64) -> BoxFuture<'_, StoreResult<Option<StoredCheckpoint>>>;

    /// Stores the time-stamp of the tenant's checkpoint at `timestamp.size`; that checkpoint must
    /// be stored already (else [`StoreError::Backend`]). Storing a second one for the same
    /// checkpoint is a no-op: the first is kept.
    fn add_checkpoint_timestamp(&self, tenant: &str, timestamp: CheckpointTimestamp) -> BoxFuture<'_, StoreResult<()>>;
    /// The time-stamp of the checkpoint at exactly `size`, if it has one.
    fn checkpoint_timestamp(&self, tenant: &str, size: u64) -> BoxFuture<'_, StoreResult<Option<CheckpointTimestamp>>>;
    /// Time-stamps of checkpoints of size at most `max_size`, largest size first, at most `limit`.
    fn checkpoint_timestamps(
        &self,
        tenant: &str,
        max_size: u64,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<CheckpointTimestamp>>>;

    /// Crypto-shreds a data subject (GDPR Art. 17): destroys every data key of `subject` in the
    /// tenant — its personal data, as actor and as data subject, then reads as `"[erased]"`
    /// everywhere — and clears the blind-index tokens of the events `subject` acted in. Sealed
    /// records and the Merkle tree are untouched. Data written for `subject` afterwards is
    /// sealed under a new key.
    fn erase_subject(&self, tenant: &str, subject: &str) -> BoxFuture<'_, StoreResult<Erasure>>;
    /// Replaces the master key while serving: a new random key becomes current, every data key
    /// and installation secret is re-wrapped under it, sealed records are untouched; returns the
    /// new key's id. Only where the store keeps the key itself (the embedded store's key file);
    /// elsewhere [`StoreError::Conflict`] explains how to rotate (restart with the previous key).
    fn rotate_master_key(&self) -> BoxFuture<'_, StoreResult<String>> {
        Box::pin(async {
            Err(StoreError::Conflict(
                "this store's master key is configured, not kept by the store: restart with the new key in \
                 VERITRAIL_MASTER_KEY and the old one in VERITRAIL_MASTER_KEY_PREVIOUS"
                    .into(),
            ))
        })
    }
    /// Re-wraps every stored data key that is not under the current master key (after a
    /// master-key rotation); returns how many were re-wrapped. Sealed records are untouched.
    fn rewrap_keys(&self) -> BoxFuture<'_, StoreResult<u64>>;

    /// The master keys and data-key cache: installation secrets (signing keys, the API-key
    /// pepper) are sealed with [`privacy::Privacy::seal_secret`] before they are stored.
    fn privacy(&self) -> &privacy::Privacy;
    /// Encrypts a tenant's server-side text at rest (alert details, webhook payloads and
    /// secrets kept by the [`AlertStore`]) under a key of the tenant's, bound to `context`
    /// ([`privacy::Privacy::seal_tenant_text`]).
    fn seal_tenant_text(&self, tenant: &str, context: &str, text: &str) -> BoxFuture<'_, StoreResult<String>>;
    /// Opens [`Store::seal_tenant_text`]'s output (text stored before encryption: as it is).
    fn open_tenant_text(&self, tenant: &str, context: &str, text: &str) -> BoxFuture<'_, StoreResult<String>>;

    /// Waits until every event committed before the call is visible to [`Store::query`].
    fn wait_indexed(&self) -> BoxFuture<'_, StoreResult<()>>;
    /// Drops and rebuilds the derived query indexes from the ledger.
    fn rebuild_indexes(&self) -> BoxFuture<'_, StoreResult<()>>;
    /// Counters for `/metrics`.
    fn stats(&self) -> StoreStats;
    /// Commits everything acknowledged and stops the writer; later appends fail with
    /// [`StoreError::Unavailable`].
    fn shutdown(&self) -> BoxFuture<'_, StoreResult<()>>;
}
