//! Table layout of the two SQLite files and the pragmas they are opened with.
//!
//! `ledger.sqlite` is the source of truth: tenants, keys, settings, sealed records, personal-data
//! sidecars and stored Merkle nodes. `index.sqlite` is derived from it and can be deleted and
//! rebuilt at any time (`veritrail reindex`).

use rusqlite::Connection;

/// Bits of a record key that hold the `seq`; the tenant number sits above them.
pub(crate) const SEQ_BITS: u32 = 40;
/// Largest `seq` a tenant can reach (2^40 - 1, about 1.1 trillion events).
pub(crate) const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;
/// Largest tenant number (keys must stay below 2^63).
pub(crate) const MAX_TENANT_NO: i64 = (1 << (63 - SEQ_BITS)) - 1;
/// Internal Merkle levels that are stored: multiples of this (leaf hashes live in `records`).
pub(crate) const NODE_LEVEL_STEP: u32 = 4;

/// `records.key` of a tenant's `seq`: records of one tenant are contiguous and in seq order, so
/// the rowid B-tree itself is the ledger's index.
pub(crate) fn record_key(tenant_no: i64, seq: u64) -> i64 {
    debug_assert!(seq <= MAX_SEQ && (0..=MAX_TENANT_NO).contains(&tenant_no));
    (tenant_no << SEQ_BITS) | seq as i64
}

/// The `seq` stored in a record key.
pub(crate) fn key_seq(key: i64) -> u64 {
    (key as u64) & MAX_SEQ
}

pub(crate) const LEDGER_SCHEMA_VERSION: i64 = 2;
const INDEX_SCHEMA_VERSION: i64 = 3;

const LEDGER_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS tenants (
    no         INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS api_keys (
    id          TEXT PRIMARY KEY,
    tenant_no   INTEGER NOT NULL REFERENCES tenants(no),
    name        TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    scopes      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys(tenant_no);
-- key = tenant_no << 40 | seq. Append-only: rows are never updated or deleted. No secondary
-- index: event ids are found through index.event_ids plus the writer's in-memory recent ids.
CREATE TABLE IF NOT EXISTS records (
    key       INTEGER PRIMARY KEY,
    tenant_no INTEGER NOT NULL,
    event_id  TEXT NOT NULL,
    leaf_hash BLOB NOT NULL,
    sealed    BLOB NOT NULL
) STRICT;
-- Personal data of a record, kept apart so that erasure never touches `records`: `data` is the
-- encrypted sidecar (veritrail_crypto::encode_sidecar; parts sealed under subject_keys), the
-- bidx columns the blind-index tokens of actor.email and context.ip (cleared by erasure).
CREATE TABLE IF NOT EXISTS personal (
    key        INTEGER PRIMARY KEY,
    data       BLOB NOT NULL,
    email_bidx BLOB,
    ip_bidx    BLOB
) STRICT;
-- Per-subject data keys, wrapped under the master key. Erasure deletes a subject's rows.
CREATE TABLE IF NOT EXISTS subject_keys (
    key_id     INTEGER PRIMARY KEY,
    tenant_no  INTEGER NOT NULL,
    subject    TEXT NOT NULL,
    wrapped    BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS subject_keys_subject ON subject_keys(tenant_no, subject);
-- Per-tenant blind-index key, wrapped under the master key.
CREATE TABLE IF NOT EXISTS tenant_keys (
    tenant_no     INTEGER PRIMARY KEY,
    blind_wrapped BLOB NOT NULL
) STRICT;
-- Hashes of complete perfect subtrees at levels 4, 8, 12, ...; other levels are folded from these.
CREATE TABLE IF NOT EXISTS merkle_nodes (
    tenant_no INTEGER NOT NULL,
    level     INTEGER NOT NULL,
    idx       INTEGER NOT NULL,
    hash      BLOB NOT NULL,
    PRIMARY KEY (tenant_no, level, idx)
) STRICT, WITHOUT ROWID;
-- Signed checkpoints (C2SP signed notes), one per tree size at most.
CREATE TABLE IF NOT EXISTS checkpoints (
    tenant_no  INTEGER NOT NULL,
    tree_size  INTEGER NOT NULL,
    root       BLOB NOT NULL,
    note       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_no, tree_size)
) STRICT, WITHOUT ROWID;
-- RFC 3161 time-stamps of checkpoints: the DER TimeStampResp as the TSA sent it, verified before
-- it was stored; at most one per checkpoint. (A rowid table: responses are kilobytes.)
CREATE TABLE IF NOT EXISTS checkpoint_timestamps (
    tenant_no  INTEGER NOT NULL,
    tree_size  INTEGER NOT NULL,
    response   BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_no, tree_size),
    FOREIGN KEY (tenant_no, tree_size) REFERENCES checkpoints (tenant_no, tree_size)
) STRICT;
";

const INDEX_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS progress (
    tenant_no INTEGER PRIMARY KEY,
    next_seq  INTEGER NOT NULL
) STRICT;
-- One row per indexed record; key as in ledger.records. Only columns worth a SQL pre-filter:
-- the final match is always EventQuery::matches on the opened record.
CREATE TABLE IF NOT EXISTS events (
    key          INTEGER PRIMARY KEY,
    occurred_at  INTEGER NOT NULL,
    action       TEXT NOT NULL,
    actor_id     TEXT NOT NULL,
    actor_type   TEXT NOT NULL,
    actor_email  BLOB,
    outcome      TEXT NOT NULL,
    ip           BLOB,
    channel      TEXT,
    data_subject TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS events_actor ON events(actor_id, key);
CREATE INDEX IF NOT EXISTS events_action ON events(action, key);
CREATE INDEX IF NOT EXISTS events_subject ON events(data_subject, key) WHERE data_subject IS NOT NULL;
-- actor_email and ip hold blind-index tokens (HMAC under the tenant's key), never clear values.
-- Event id -> seq, for idempotent ingest and reads by id.
CREATE TABLE IF NOT EXISTS event_ids (
    tenant_no INTEGER NOT NULL,
    event_id  TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (tenant_no, event_id)
) STRICT, WITHOUT ROWID;
-- The primary resource and every target of a record; id first, since resource_id alone is the
-- common lookup ('what happened to p-42').
CREATE TABLE IF NOT EXISTS event_resources (
    rid   TEXT NOT NULL,
    rtype TEXT NOT NULL,
    key   INTEGER NOT NULL,
    PRIMARY KEY (rid, rtype, key)
) STRICT, WITHOUT ROWID;
";

/// Pages after which a committing connection checkpoints the WAL itself. The ledger writer never
/// does (a background thread checkpoints, off the commit path); the indexer does, often, so each
/// burst of database-file writes stays small next to the ledger's fsyncs.
pub(crate) enum Checkpointing {
    /// Never on commit (the ledger writer, readers).
    Background,
    /// On commit past this many WAL pages.
    OnCommit(i64),
}

/// For the connections that run only fixed statements (the writer, its id lookups, the
/// indexer): query plans that do not depend on bound values. The bundled SQLite is built with
/// STAT4, under which a cached statement whose plan looked at a bound value is compiled afresh
/// whenever that value changes — the indexer's batch read (`key BETWEEN ?1 AND ?2`) was
/// re-prepared at every batch, a fifth of its CPU at low rates.
pub(crate) fn fixed_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map(|_| ())
}

/// Pragmas common to every connection.
pub(crate) fn configure(
    conn: &Connection,
    synchronous_full: bool,
    checkpointing: Checkpointing,
) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if synchronous_full { "FULL" } else { "OFF" })?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    let pages = match checkpointing {
        Checkpointing::Background => 0,
        Checkpointing::OnCommit(pages) => pages,
    };
    conn.pragma_update(None, "wal_autocheckpoint", pages)?;
    // Point reads (event ids, merkle nodes, records by key) become memory reads, not syscalls.
    conn.pragma_update(None, "mmap_size", 1i64 << 34)?;
    Ok(())
}

/// Creates or checks the ledger schema. Version 1 had clear sidecars and no key tables: the
/// new tables are created and the blind-index columns added; the store encrypts the old
/// sidecars when it opens.
pub(crate) fn migrate_ledger(conn: &Connection) -> Result<(), String> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| format!("cannot read ledger schema version: {e}"))?;
    migrate(conn, LEDGER_SCHEMA, LEDGER_SCHEMA_VERSION, "ledger")?;
    if found == 1 {
        // Version 1 wrote sidecars in clear: the store encrypts them at this open (and the next
        // ones, until none is left).
        conn.execute(
            "INSERT OR IGNORE INTO settings (name, value) VALUES (?1, X'01')",
            [crate::keys::CLEAR_SIDECARS_SETTING],
        )
        .map_err(|e| format!("cannot mark clear sidecars: {e}"))?;
    }
    let has_bidx: i64 = conn
        .query_row("SELECT count(*) FROM pragma_table_info('personal') WHERE name = 'email_bidx'", [], |row| row.get(0))
        .map_err(|e| format!("cannot inspect the ledger schema: {e}"))?;
    if has_bidx == 0 {
        conn.execute_batch(
            "ALTER TABLE personal ADD COLUMN email_bidx BLOB; ALTER TABLE personal ADD COLUMN ip_bidx BLOB;",
        )
        .map_err(|e| format!("cannot add blind-index columns: {e}"))?;
    }
    Ok(())
}

/// Creates or checks the index schema. An index of an older layout is derived data: its tables
/// are dropped and rebuilt from the ledger.
pub(crate) fn migrate_index(conn: &Connection) -> Result<(), String> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| format!("cannot read index schema version: {e}"))?;
    if found > 0 && found < INDEX_SCHEMA_VERSION {
        conn.execute_batch(
            "DROP TABLE IF EXISTS events; DROP TABLE IF EXISTS event_resources;
             DROP TABLE IF EXISTS event_ids; DROP TABLE IF EXISTS progress;",
        )
        .map_err(|e| format!("cannot drop the old index layout: {e}"))?;
    }
    migrate(conn, INDEX_SCHEMA, INDEX_SCHEMA_VERSION, "index")
}

fn migrate(conn: &Connection, schema: &str, version: i64, what: &str) -> Result<(), String> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| format!("cannot read {what} schema version: {e}"))?;
    if found > version {
        return Err(format!("{what} schema version {found} is newer than this binary ({version})"));
    }
    conn.execute_batch(schema).map_err(|e| format!("cannot create {what} schema: {e}"))?;
    conn.pragma_update(None, "user_version", version)
        .map_err(|e| format!("cannot record {what} schema version: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, StatementStatus, params};

    /// How often a cached range read is compiled again when only its bounds change.
    fn reprepares(fixed: bool) -> i32 {
        let conn = Connection::open_in_memory().unwrap();
        if fixed {
            super::fixed_plans(&conn).unwrap();
        }
        conn.execute_batch("CREATE TABLE records (key INTEGER PRIMARY KEY, sealed BLOB NOT NULL) STRICT;").unwrap();
        for key in 0..100i64 {
            conn.execute("INSERT INTO records (key, sealed) VALUES (?1, x'00')", [key]).unwrap();
        }
        let mut select =
            conn.prepare("SELECT key FROM records WHERE key BETWEEN ?1 AND ?2 ORDER BY key LIMIT ?3").unwrap();
        for from in 0..10i64 {
            let keys: Vec<i64> = select
                .query_map(params![from * 10, from * 10 + 9, 16], |row| row.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(keys, (from * 10..from * 10 + 10).collect::<Vec<_>>());
        }
        select.get_status(StatementStatus::RePrepare)
    }

    #[test]
    fn fixed_plans_stop_recompiling_a_range_read_at_every_new_bound() {
        assert!(
            reprepares(false) > 0,
            "the bundled SQLite no longer re-prepares on new bounds; fixed_plans may be moot"
        );
        assert_eq!(reprepares(true), 0);
    }
}
