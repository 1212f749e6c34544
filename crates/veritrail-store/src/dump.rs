//! The backend-neutral form of a whole store, for `veritrail migrate-store`: everything a
//! server needs to carry on where it was, as typed rows per logical table.
//!
//! A backend's exporter reads its tables and hands out [`Batch`]es in [`Batch`]'s section order
//! (each batch at most [`BATCH_ROWS`] rows, so a ledger of any size streams through bounded
//! memory); another backend's importer writes them. Rows are copied **as stored**: sealed
//! records byte for byte with their seq and leaf hash, sidecars as ciphertext with their
//! blind-index tokens, data keys and installation secrets wrapped under the master key, webhook
//! secrets and alert details sealed under the tenant's key. What a backend derives from those
//! rows (tenant numbers, Merkle nodes, ledger heads, query indexes and columns) is not in the
//! dump: the importer derives it with its own code, as its writer would have.
//!
//! Rows that name a tenant name it by its public id, never by a backend's tenant number.

use jiff::Timestamp;

use crate::{
    Alert, ApiKeyRecord, Delivery, IdentityProviderRecord, RoleRecord, SessionRecord, StoredCheckpoint, StoredRule,
    Tenant, UserRecord, WebhookEndpoint,
};

/// The error an exporter returns when the importer stopped taking batches: the importer's own
/// error is the one to report ([`is_import_stopped`]).
pub fn import_stopped() -> crate::StoreError {
    crate::StoreError::Unavailable(IMPORT_STOPPED.to_owned())
}

/// Whether `error` is an exporter's [`import_stopped`].
pub fn is_import_stopped(error: &crate::StoreError) -> bool {
    matches!(error, crate::StoreError::Unavailable(message) if message == IMPORT_STOPPED)
}

const IMPORT_STOPPED: &str = "the import stopped";

/// Most rows an exporter puts in one [`Batch`].
pub const BATCH_ROWS: usize = 2_000;

/// What an exporter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only what verifying the ledgers needs: settings (the signing keys), tenants, records
    /// (without their sidecars) and checkpoints.
    Ledger,
    /// Everything, for a copy.
    Everything,
}

/// A server-wide setting (API-key pepper, bootstrap-token hash, signing keys, privacy
/// settings), its value as stored (secrets in it sealed under the master key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingRow {
    /// Its name.
    pub name: String,
    /// Its value, as stored.
    pub value: Vec<u8>,
}

/// A tenant and its blind-index key, wrapped under the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    /// The tenant.
    pub tenant: Tenant,
    /// Its wrapped blind-index key (`None` only in stores older than encryption at rest, which
    /// create one when they open).
    pub blind_wrapped: Option<Vec<u8>>,
}

/// A data subject's data key, wrapped under the master key. Erased subjects have none left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyRow {
    /// The tenant.
    pub tenant: String,
    /// The key id the sidecars name (unique in a store).
    pub key_id: u64,
    /// The subject (an actor id or a `data_subject`).
    pub subject: String,
    /// The key, wrapped.
    pub wrapped: Vec<u8>,
    /// When it was created.
    pub created_at: Timestamp,
}

/// One sealed record of a tenant's ledger, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRow {
    /// Its position in the ledger.
    pub seq: u64,
    /// The event id.
    pub event_id: String,
    /// `SHA-256(0x00 || sealed)` as stored (importers check it against `sealed`).
    pub leaf_hash: [u8; 32],
    /// The exact bytes hashed into the ledger.
    pub sealed: Vec<u8>,
    /// The encrypted personal-data sidecar, if the event had personal data.
    pub personal: Option<PersonalRow>,
}

/// A record's encrypted personal-data sidecar and its blind-index tokens (cleared by erasure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalRow {
    /// The sidecar as stored (`veritrail_crypto::encode_sidecar`).
    pub data: Vec<u8>,
    /// Blind-index token of `actor.email`.
    pub email_bidx: Option<Vec<u8>>,
    /// Blind-index token of `context.ip`.
    pub ip_bidx: Option<Vec<u8>>,
}

/// The RFC 3161 time-stamp of a stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointTimestampRow {
    /// Tree size of the checkpoint.
    pub size: u64,
    /// The DER `TimeStampResp` as the TSA sent it.
    pub response: Vec<u8>,
    /// When it was stored.
    pub created_at: Timestamp,
}

/// The rule engine's position in a tenant's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineCursorRow {
    /// The tenant.
    pub tenant: String,
    /// The first seq not evaluated yet.
    pub next_seq: u64,
    /// When the tenant's rules were installed.
    pub installed_at: Timestamp,
}

/// The current version of a rule ever created (deleted ones too: ids are not reused).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleRow {
    /// The tenant.
    pub tenant: String,
    /// The rule at its current version.
    pub rule: StoredRule,
    /// When it was deleted.
    pub deleted_at: Option<Timestamp>,
}

/// One stored version of a rule; `rule.updated_at` is when that version was saved.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleVersionRow {
    /// The tenant.
    pub tenant: String,
    /// The version.
    pub rule: StoredRule,
}

/// How many times a tenant's rules changed (what rule engines compare every second).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleChangesRow {
    /// The tenant.
    pub tenant: String,
    /// The count.
    pub changes: u64,
}

/// A piece of a dump. Exporters hand them out in this order of sections (a section may come in
/// several batches, or none when empty): settings, tenants, API keys, data keys, then for each
/// tenant in [`Batch::Tenants`] order its checkpoints and its records in seq order, then every
/// tenant's checkpoint time-stamps, access control (roles, users, sessions, identity providers)
/// and monitoring (engine cursors, rules, rule versions, rule change counts, webhooks, alerts,
/// deliveries), and last [`Batch::End`]. Lists keep the store's order (oldest first; alerts and
/// deliveries by position).
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    /// Server-wide settings.
    Settings(Vec<SettingRow>),
    /// Tenants, oldest first.
    Tenants(Vec<TenantRow>),
    /// API keys (secret hashes only).
    ApiKeys(Vec<ApiKeyRecord>),
    /// Data keys of data subjects.
    DataKeys(Vec<DataKeyRow>),
    /// Consecutive records of one tenant, continuing the previous batch of that tenant.
    Records {
        /// The tenant.
        tenant: String,
        /// Its records, seq ascending.
        records: Vec<RecordRow>,
    },
    /// Signed checkpoints of one tenant, tree size ascending.
    Checkpoints {
        /// The tenant.
        tenant: String,
        /// The checkpoints.
        checkpoints: Vec<StoredCheckpoint>,
    },
    /// Checkpoint time-stamps of one tenant, tree size ascending.
    CheckpointTimestamps {
        /// The tenant.
        tenant: String,
        /// The time-stamps.
        timestamps: Vec<CheckpointTimestampRow>,
    },
    /// Custom roles.
    Roles(Vec<RoleRecord>),
    /// Users.
    Users(Vec<UserRecord>),
    /// Sessions (secret hashes only).
    Sessions(Vec<SessionRecord>),
    /// SSO identity providers.
    IdentityProviders(Vec<IdentityProviderRecord>),
    /// Rule engine cursors.
    EngineCursors(Vec<EngineCursorRow>),
    /// Rules at their current version.
    Rules(Vec<RuleRow>),
    /// Every stored rule version.
    RuleVersions(Vec<RuleVersionRow>),
    /// Rule change counts.
    RuleChanges(Vec<RuleChangesRow>),
    /// Webhook endpoints (secrets as stored).
    Webhooks(Vec<WebhookEndpoint>),
    /// Alerts, by position.
    Alerts(Vec<Alert>),
    /// Webhook deliveries (the outbox, delivered ones and dead letters), by position.
    Deliveries(Vec<Delivery>),
    /// The dump is complete. An importer commits nothing until it has seen it: a dump that
    /// stops before (the exporter failed) leaves the target as it was.
    End,
}

impl Batch {
    /// The name of its section, for messages.
    pub fn section(&self) -> &'static str {
        match self {
            Batch::Settings(_) => "settings",
            Batch::Tenants(_) => "tenants",
            Batch::ApiKeys(_) => "api keys",
            Batch::DataKeys(_) => "data keys",
            Batch::Records { .. } => "records",
            Batch::Checkpoints { .. } => "checkpoints",
            Batch::CheckpointTimestamps { .. } => "checkpoint time-stamps",
            Batch::Roles(_) => "roles",
            Batch::Users(_) => "users",
            Batch::Sessions(_) => "sessions",
            Batch::IdentityProviders(_) => "identity providers",
            Batch::EngineCursors(_) => "engine cursors",
            Batch::Rules(_) => "rules",
            Batch::RuleVersions(_) => "rule versions",
            Batch::RuleChanges(_) => "rule changes",
            Batch::Webhooks(_) => "webhooks",
            Batch::Alerts(_) => "alerts",
            Batch::Deliveries(_) => "deliveries",
            Batch::End => "end",
        }
    }

    /// How many rows it holds.
    pub fn rows(&self) -> usize {
        match self {
            Batch::Settings(rows) => rows.len(),
            Batch::Tenants(rows) => rows.len(),
            Batch::ApiKeys(rows) => rows.len(),
            Batch::DataKeys(rows) => rows.len(),
            Batch::Records { records, .. } => records.len(),
            Batch::Checkpoints { checkpoints, .. } => checkpoints.len(),
            Batch::CheckpointTimestamps { timestamps, .. } => timestamps.len(),
            Batch::Roles(rows) => rows.len(),
            Batch::Users(rows) => rows.len(),
            Batch::Sessions(rows) => rows.len(),
            Batch::IdentityProviders(rows) => rows.len(),
            Batch::EngineCursors(rows) => rows.len(),
            Batch::Rules(rows) => rows.len(),
            Batch::RuleVersions(rows) => rows.len(),
            Batch::RuleChanges(rows) => rows.len(),
            Batch::Webhooks(rows) => rows.len(),
            Batch::Alerts(rows) => rows.len(),
            Batch::Deliveries(rows) => rows.len(),
            Batch::End => 0,
        }
    }
}

/// How many rows an import wrote per section, in the order first seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// `(section, rows)`.
    pub sections: Vec<(&'static str, u64)>,
}

impl ImportCounts {
    /// Counts a batch.
    pub fn add(&mut self, batch: &Batch) {
        if matches!(batch, Batch::End) {
            return;
        }
        let (section, rows) = (batch.section(), batch.rows() as u64);
        match self.sections.iter_mut().find(|(name, _)| *name == section) {
            Some((_, count)) => *count += rows,
            None => self.sections.push((section, rows)),
        }
    }
}
