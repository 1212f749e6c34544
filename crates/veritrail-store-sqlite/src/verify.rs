//! Full verification of a data directory (`veritrail verify --data-dir`): reads `ledger.sqlite`
//! read-only, in one snapshot (the server may keep writing), and recomputes everything the
//! ledger commits to.
//!
//! For every tenant, in key order: `seq` is dense from 0; each sealed record is canonical JSON
//! (RFC 8785) whose own `seq`, `tenant` and `id` are those of its row; its leaf hash is the stored
//! one; every stored internal Merkle node (levels 4, 8, ...) is the recomputed one; and at every
//! stored checkpoint the recomputed root is the signed one, the note verifies with a trusted key
//! and its origin is `.../<tenant>`. A checkpoint's RFC 3161 time-stamp, if it has one, must
//! verify against the exact bytes of its note (`timestamps`). Nothing stored may describe records
//! (or checkpoints) that are not there. `PRAGMA quick_check` of the tables the scan does not
//! read in full runs meanwhile on another connection.
//!
//! Speed matters (a ledger may hold billions of records): each tenant's records are cut into
//! blocks of consecutive seqs that checker threads (one per core) read through connections of
//! their own and check where SQLite holds the bytes (canonical form, fields, leaf hash: what
//! needs no other record), while this thread puts the checked blocks in the tree in order. Sealed
//! records take a single-pass canonical-form check (`canonical`) that only falls back to
//! [`jcs::is_canonical`] for what it does not settle itself (fractions, escaped member names,
//! ...).

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use serde_json::Value;
use veritrail_ledger::checkpoint::open_checkpoint;
use veritrail_ledger::hash::{Hash, leaf_hash};
use veritrail_ledger::jcs;
use veritrail_ledger::note::VerifierKey;
use veritrail_ledger::tree::{CompletedNode, Frontier};
use veritrail_tsa::TrustAnchors;

use crate::LEDGER_FILE;
use crate::schema::{MAX_SEQ, MAX_TENANT_NO, NODE_LEVEL_STEP, SEQ_BITS, key_seq, record_key};

/// The setting holding every ledger signing key ever used: a JSON array of
/// `{"verifier_key", "seed", "created_at", "retired_at"}`.
pub const SIGNING_KEYS_SETTING: &str = "ledger.signing_keys";

/// Stored Merkle nodes read per query while scanning one level.
const NODE_BATCH: i64 = 4096;
/// Seqs per block: the records a checker thread reads with one query and checks in one go (tests
/// use many small blocks).
const BLOCK_SEQS: u64 = if cfg!(test) { 7 } else { 4096 };
/// Blocks per checker thread being read, checked or waiting to be added to the tree.
const BLOCKS_PER_CHECKER: usize = 3;
/// Most checker threads.
const MAX_CHECKERS: usize = 8;

/// Why a data directory could not be verified, or the first thing found wrong in it.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The data directory holds no `ledger.sqlite`.
    #[error("{} does not exist", .0.display())]
    NoLedger(PathBuf),
    /// `ledger.sqlite` could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The ledger file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// Reading the ledger failed (I/O, a lock held too long, ...).
    #[error("cannot read the ledger: {0}")]
    Read(rusqlite::Error),
    /// The ledger was read and is not intact.
    #[error("{0}")]
    Failed(Failure),
}

impl From<rusqlite::Error> for VerifyError {
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                VerifyError::Failed(Failure::new(None, Location::Ledger, format!("database is corrupt: {error}")))
            }
            _ => VerifyError::Read(error),
        }
    }
}

impl From<pages::Corrupt> for VerifyError {
    fn from(pages::Corrupt(problem): pages::Corrupt) -> Self {
        ledger_failure(format!("database is corrupt: {problem}"))
    }
}

/// The first integrity problem found: displayed as
/// `tenant tn_x: seq 41: leaf hash mismatch (stored ..., computed ...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The tenant whose ledger is damaged; `None` for problems of the whole database.
    pub tenant: Option<String>,
    /// Where in that ledger.
    pub at: Location,
    /// What is wrong, lowercase, e.g. `missing` or `record claims seq 42`.
    pub problem: String,
}

impl Failure {
    fn new(tenant: Option<&str>, at: Location, problem: impl Into<String>) -> Self {
        Self { tenant: tenant.map(str::to_string), at, problem: problem.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(tenant) = &self.tenant {
            write!(f, "tenant {tenant}: ")?;
        }
        match self.at {
            Location::Ledger => {}
            Location::Seq(seq) => write!(f, "seq {seq}: ")?,
            Location::Seqs { first, last } => write!(f, "seq {first}..={last}: ")?,
            Location::Checkpoint { size } => write!(f, "checkpoint at size {size}: ")?,
        }
        f.write_str(&self.problem)
    }
}

/// Where a [`Failure`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The database or the tenant's ledger as a whole.
    Ledger,
    /// One record.
    Seq(u64),
    /// The records under one stored Merkle node, `first..=last`.
    Seqs {
        /// The first seq the node covers.
        first: u64,
        /// The last seq the node covers.
        last: u64,
    },
    /// A stored checkpoint, by tree size.
    Checkpoint {
        /// Its tree size.
        size: u64,
    },
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Every tenant, by tenant number.
    pub tenants: Vec<TenantReport>,
    /// The answer of `PRAGMA quick_check` (`ok`).
    pub quick_check: String,
    /// The records were read straight from the database file's pages (its WAL held no frames);
    /// else through SQLite.
    pub read_pages: bool,
}

impl Report {
    /// Records verified, all tenants together.
    pub fn records(&self) -> u64 {
        self.tenants.iter().map(|tenant| tenant.records).sum()
    }

    /// Checkpoints verified, all tenants together.
    pub fn checkpoints(&self) -> u64 {
        self.tenants.iter().map(|tenant| tenant.checkpoints).sum()
    }

    /// Stored Merkle nodes verified, all tenants together.
    pub fn merkle_nodes(&self) -> u64 {
        self.tenants.iter().map(|tenant| tenant.merkle_nodes).sum()
    }

    /// Records not yet covered by a checkpoint, all tenants together.
    pub fn uncovered(&self) -> u64 {
        self.tenants.iter().map(TenantReport::uncovered).sum()
    }

    /// Checkpoint time-stamps verified, all tenants together.
    pub fn timestamps(&self) -> u64 {
        self.tenants.iter().map(|tenant| tenant.timestamps).sum()
    }

    /// The most recent time-stamp of any tenant (by `genTime`).
    pub fn latest_timestamp(&self) -> Option<&TimestampReport> {
        self.tenants.iter().filter_map(|tenant| tenant.latest_timestamp.as_ref()).max_by_key(|t| t.gen_time)
    }
}

/// What was verified of one tenant's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantReport {
    /// The tenant id.
    pub id: String,
    /// Its records (its tree size).
    pub records: u64,
    /// Stored Merkle nodes checked.
    pub merkle_nodes: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Tree size of the latest checkpoint, if any.
    pub latest_checkpoint: Option<u64>,
    /// Checkpoint time-stamps checked.
    pub timestamps: u64,
    /// The time-stamp of the latest time-stamped checkpoint, if any.
    pub latest_timestamp: Option<TimestampReport>,
}

/// A checkpoint time-stamp that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampReport {
    /// Tree size of the checkpoint.
    pub size: u64,
    /// When the TSA signed it.
    pub gen_time: jiff::Timestamp,
    /// The subject of the TSA certificate.
    pub tsa: String,
}

/// What to trust while verifying a data directory.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions<'a> {
    /// Checkpoint notes must verify with one of these keys; `None` trusts the keys the ledger
    /// lists in [`SIGNING_KEYS_SETTING`].
    pub trusted_keys: Option<&'a [VerifierKey]>,
    /// Checkpoint time-stamps must chain to one of these CAs; `None` accepts any TSA certificate
    /// fit for time stamping.
    pub tsa_trust: Option<&'a TrustAnchors>,
    /// Checkpoints published before (signed notes, e.g. the last one a monitor or witness saw):
    /// each tenant's ledger must contain each of its tenant's, root for root. A restored backup
    /// older than one of them fails: serving it would fork the history already published.
    pub published: &'a [String],
}

impl TenantReport {
    /// Trailing records that no checkpoint covers yet (normal while the server runs: it signs
    /// checkpoints periodically and on shutdown).
    pub fn uncovered(&self) -> u64 {
        self.records - self.latest_checkpoint.unwrap_or(0)
    }
}

/// Verifies the ledger of the data directory `dir`, read-only.
///
/// Checkpoint notes must verify with one of `trusted_keys`, or, when `None`, with one of the keys
/// in the ledger's own [`SIGNING_KEYS_SETTING`] (which whoever can rewrite the file can also
/// replace: pass the published verifier key to rule that out).
pub fn verify_data_dir(dir: &Path, trusted_keys: Option<&[VerifierKey]>) -> Result<Report, VerifyError> {
    verify_data_dir_with(dir, VerifyOptions { trusted_keys, ..VerifyOptions::default() })
}

/// [`verify_data_dir`] with every option.
pub fn verify_data_dir_with(dir: &Path, options: VerifyOptions<'_>) -> Result<Report, VerifyError> {
    let path = dir.join(LEDGER_FILE);
    if !path.is_file() {
        return Err(VerifyError::NoLedger(path));
    }
    let mut conn = open_read_only(&path)?;
    // Every table is read in this one snapshot, taken at the first read: whatever the server
    // writes meanwhile.
    let snapshot = conn.transaction()?;
    let file = pages::DatabaseFile::open(&path).map_err(ledger_failure)?;
    let records = table_pages(&snapshot, file.as_ref(), "records")?;
    let personal = table_pages(&snapshot, file.as_ref(), "personal")?;
    let structure_conn = open_read_only(&path)?;
    let interrupt = structure_conn.get_interrupt_handle();
    thread::scope(|scope| {
        // SQLite's own structural check runs meanwhile, on a second connection, of what the scan
        // does not read itself; so does the check of `personal` when it is read from pages.
        let skip = personal.map(|(_, table)| table.name);
        let structure = scope.spawn(move || quick_check(&structure_conn, skip));
        let sidecars = personal.map(|(file, table)| scope.spawn(move || check_personal(file, table)));
        let tenants = verify_ledgers(&snapshot, records, options).inspect_err(|_| interrupt.interrupt())?;
        let quick_check = structure.join().map_err(|_| ledger_failure("quick_check panicked".into()))??;
        if let Some(sidecars) = sidecars {
            sidecars.join().map_err(|_| ledger_failure("the check of personal data panicked".into()))??;
        }
        Ok(Report { tenants, quick_check, read_pages: records.is_some() })
    })
}

/// Table `name` of `file` to read from its pages, when there is a file to read so (see
/// [`pages::DatabaseFile::open`]) and the table exists in the snapshot of `conn`.
fn table_pages<'f>(
    conn: &Connection,
    file: Option<&'f pages::DatabaseFile>,
    name: &'static str,
) -> Result<Option<(&'f pages::DatabaseFile, pages::Table)>, VerifyError> {
    let Some(file) = file else { return Ok(None) };
    let root = root_page(conn, name)?;
    Ok(root.map(|root| pages::Table::new(name, root)).transpose()?.map(|table| (file, table)))
}

/// The root page of table `name`, if it exists.
fn root_page(conn: &Connection, name: &str) -> Result<Option<i64>, VerifyError> {
    let sql = "SELECT rootpage FROM sqlite_schema WHERE type = 'table' AND name = ?1";
    Ok(conn.query_row(sql, [name], |row| row.get(0)).optional()?)
}

/// The `personal` sidecars read from pages: what `PRAGMA quick_check` checks of them — their
/// B-tree, and the column types of every row (`data` a blob, the blind-index tokens blobs or
/// NULL). They are the one table whose content no hash covers (erasure clears them).
fn check_personal(file: &pages::DatabaseFile, table: pages::Table) -> Result<(), VerifyError> {
    let mut buffers = pages::Buffers::default();
    file.scan(table, i64::MIN..=i64::MAX, &mut buffers, |pages::Row { key, columns: [_, data, email, ip] }| {
        let token = |value: ValueRef<'_>| matches!(value, ValueRef::Blob(_) | ValueRef::Null);
        let wrong = match (matches!(data, ValueRef::Blob(_)), token(email), token(ip)) {
            (true, true, true) => return Ok(()),
            (false, _, _) => "data is not a blob",
            (true, false, _) => "email_bidx is neither a blob nor NULL",
            (true, true, false) => "ip_bidx is neither a blob nor NULL",
        };
        Err(ledger_failure(format!("personal data of record key {key}: {wrong}")))
    })
}

fn open_read_only(path: &Path) -> Result<Connection, VerifyError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|source| VerifyError::Open { path: path.into(), source })?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "cache_size", -65536)?;
    // Pages are read from the mapping rather than copied by read(2) (SQLite caps it at 2 GiB).
    conn.pragma_update(None, "mmap_size", 1i64 << 31)?;
    Ok(conn)
}

/// Every tenant's ledger, in the snapshot of `conn`; records read from pages if `records` says
/// where.
fn verify_ledgers(
    conn: &Connection,
    records: Option<(&pages::DatabaseFile, pages::Table)>,
    options: VerifyOptions<'_>,
) -> Result<Vec<TenantReport>, VerifyError> {
    let keys = match options.trusted_keys {
        Some(keys) => keys.to_vec(),
        None => signing_keys(conn)?,
    };
    scan(conn, records, &keys, options.tsa_trust, options.published)
}

/// The verifier keys of [`SIGNING_KEYS_SETTING`] (none if the setting is absent).
fn signing_keys(conn: &Connection) -> Result<Vec<VerifierKey>, VerifyError> {
    let invalid = |problem: String| {
        VerifyError::Failed(Failure::new(None, Location::Ledger, format!("setting {SIGNING_KEYS_SETTING}: {problem}")))
    };
    let mut stmt = conn.prepare("SELECT value FROM settings WHERE name = ?1")?;
    let mut rows = stmt.query([SIGNING_KEYS_SETTING])?;
    let Some(row) = rows.next()? else {
        return Ok(Vec::new());
    };
    let bytes = bytes_of(row.get_ref(0)?).ok_or_else(|| invalid("not text".into()))?;
    let entries: Vec<Value> =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not a JSON array of keys: {e}")))?;
    let mut keys = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let text = entry
            .get("verifier_key")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("entry {i} has no \"verifier_key\"")))?;
        keys.push(text.parse().map_err(|e| invalid(format!("entry {i}: {e}")))?);
    }
    Ok(keys)
}

/// Verifies every tenant's ledger, and that no record, node or checkpoint belongs to no tenant.
fn scan(
    conn: &Connection,
    records: Option<(&pages::DatabaseFile, pages::Table)>,
    keys: &[VerifierKey],
    tsa: Option<&TrustAnchors>,
    published: &[String],
) -> Result<Vec<TenantReport>, VerifyError> {
    let tenants = tenants(conn)?;
    let timestamps = timestamps::Timestamps::open(conn, &tenants, tsa)?;
    let mut checkpoints = checkpoints(conn)?;
    add_published(&mut checkpoints, &tenants, keys, published)?;
    let mut node_counts = node_counts(conn)?;
    let known = |no: &i64| tenants.iter().any(|(known, _)| known == no);
    if let Some(no) = checkpoints.keys().find(|no| !known(no)) {
        return Err(ledger_failure(format!("checkpoints of unknown tenant number {no}")));
    }
    if let Some(no) = node_counts.keys().find(|no| !known(no)) {
        return Err(ledger_failure(format!("merkle nodes of unknown tenant number {no}")));
    }

    let mut checkers = Checkers::open(conn, records)?;
    let mut reports = Vec::with_capacity(tenants.len());
    // The first key after the previous tenant's range (none after the largest tenant number).
    let mut next_key = Some(i64::MIN);
    for (no, id) in &tenants {
        if let Some(from) = next_key {
            check_no_records(conn, from, Some(record_key(*no, 0)))?;
        }
        let tenant = TenantScan::new(
            conn,
            (*no, id),
            (keys, &timestamps),
            checkpoints.remove(no).unwrap_or_default(),
            node_counts.remove(no).unwrap_or_default(),
        );
        reports.push(tenant.run(&mut checkers)?);
        next_key = record_key(*no, MAX_SEQ).checked_add(1);
    }
    if let Some(from) = next_key {
        check_no_records(conn, from, None)?;
    }
    Ok(reports)
}

/// Tenants `(no, id)` by number.
fn tenants(conn: &Connection) -> Result<Vec<(i64, String)>, VerifyError> {
    let mut stmt = conn.prepare("SELECT no, id FROM tenants ORDER BY no")?;
    let mut rows = stmt.query([])?;
    let mut tenants = Vec::new();
    while let Some(row) = rows.next()? {
        let no: i64 = row.get(0)?;
        let id = text_of(row.get_ref(1)?)
            .ok_or_else(|| ledger_failure(format!("tenant number {no} has no text id")))?
            .to_string();
        if !(0..=MAX_TENANT_NO).contains(&no) {
            return Err(ledger_failure(format!("tenant {id} has an invalid number {no}")));
        }
        tenants.push((no, id));
    }
    Ok(tenants)
}

/// A row of `checkpoints`, or a checkpoint published before ([`VerifyOptions::published`]).
#[derive(Debug, Clone)]
struct StoredCheckpoint {
    size: u64,
    root: Vec<u8>,
    note: String,
    published: bool,
}

/// Adds each published checkpoint to its tenant's list (after the stored ones of its size).
fn add_published(
    checkpoints: &mut BTreeMap<i64, Vec<StoredCheckpoint>>,
    tenants: &[(i64, String)],
    keys: &[VerifierKey],
    published: &[String],
) -> Result<(), VerifyError> {
    for (i, note) in published.iter().enumerate() {
        let signed = open_checkpoint(note, keys).map_err(|e| {
            ledger_failure(format!("published checkpoint {}: note does not verify with this ledger's keys: {e}", i + 1))
        })?;
        let Some((no, _)) = tenants.iter().find(|(_, id)| is_origin_of(&signed.origin, id)) else {
            return Err(ledger_failure(format!(
                "published checkpoint {} (origin {}): no such tenant in this ledger",
                i + 1,
                signed.origin
            )));
        };
        let list = checkpoints.entry(*no).or_default();
        let at = list.partition_point(|c| c.size <= signed.size);
        let root = signed.root.as_bytes().to_vec();
        list.insert(at, StoredCheckpoint { size: signed.size, root, note: note.clone(), published: true });
    }
    Ok(())
}

/// Every stored checkpoint, by tenant number, in tree size order.
fn checkpoints(conn: &Connection) -> Result<BTreeMap<i64, Vec<StoredCheckpoint>>, VerifyError> {
    let mut stmt =
        conn.prepare("SELECT tenant_no, tree_size, root, note FROM checkpoints ORDER BY tenant_no, tree_size")?;
    let mut rows = stmt.query([])?;
    let mut checkpoints: BTreeMap<i64, Vec<StoredCheckpoint>> = BTreeMap::new();
    while let Some(row) = rows.next()? {
        let no: i64 = row.get(0)?;
        let size: i64 = row.get(1)?;
        let invalid =
            |problem: &str| ledger_failure(format!("checkpoint of tenant number {no} at size {size}: {problem}"));
        let size = u64::try_from(size).map_err(|_| invalid("negative size"))?;
        let root = bytes_of(row.get_ref(2)?).ok_or_else(|| invalid("root is not a blob"))?.to_vec();
        let note = text_of(row.get_ref(3)?).ok_or_else(|| invalid("note is not text"))?.to_string();
        checkpoints.entry(no).or_default().push(StoredCheckpoint { size, root, note, published: false });
    }
    Ok(checkpoints)
}

/// How many Merkle nodes are stored per tenant number and level, with the largest index.
#[derive(Debug, Clone, Copy)]
struct NodeCount {
    level: i64,
    count: u64,
    max_index: i64,
}

fn node_counts(conn: &Connection) -> Result<BTreeMap<i64, Vec<NodeCount>>, VerifyError> {
    let mut stmt =
        conn.prepare("SELECT tenant_no, level, count(*), max(idx) FROM merkle_nodes GROUP BY tenant_no, level")?;
    let mut rows = stmt.query([])?;
    let mut counts: BTreeMap<i64, Vec<NodeCount>> = BTreeMap::new();
    while let Some(row) = rows.next()? {
        let count: i64 = row.get(2)?;
        let node_count =
            NodeCount { level: row.get(1)?, count: u64::try_from(count).unwrap_or(0), max_index: row.get(3)? };
        counts.entry(row.get(0)?).or_default().push(node_count);
    }
    Ok(counts)
}

/// Fails if a record key lies in `[from, to)` (or `[from, ..)`): outside every tenant's range.
fn check_no_records(conn: &Connection, from: i64, to: Option<i64>) -> Result<(), VerifyError> {
    let key: Option<i64> = match to {
        Some(to) => conn
            .query_row(
                "SELECT key FROM records WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT 1",
                params![from, to],
                |row| row.get(0),
            )
            .optional()?,
        None => conn
            .query_row("SELECT key FROM records WHERE key >= ?1 ORDER BY key LIMIT 1", params![from], |row| row.get(0))
            .optional()?,
    };
    match key {
        Some(key) => Err(ledger_failure(format!(
            "record key {key} belongs to no tenant (tenant number {}, seq {})",
            key >> SEQ_BITS,
            key_seq(key)
        ))),
        None => Ok(()),
    }
}

/// Tables whose every row the scan reads and checks itself; [`quick_check`] leaves them out.
const SCANNED_TABLES: [&str; 2] = ["records", "merkle_nodes"];

/// `PRAGMA quick_check` of every table and its indexes but [`SCANNED_TABLES`]: `ok`, or a
/// failure listing the first problems SQLite found.
///
/// The scan reads every row of those through their B-trees, with `cell_size_check` on, and
/// checks every byte against the hashes: SQLite's own pass over them would cost about as much
/// as the whole scan and only repeat what reading them checks, apart from file-level bookkeeping
/// (pages counted twice or never, the freelist) that does not touch their content.
fn quick_check(conn: &Connection, also_skip: Option<&str>) -> Result<String, VerifyError> {
    let mut tables = conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")?;
    let tables = tables.query_map([], |row| row.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    let mut problems = Vec::new();
    let skipped = |table: &str| SCANNED_TABLES.contains(&table) || also_skip == Some(table);
    for table in tables.iter().filter(|table| !skipped(table)) {
        let mut stmt = conn.prepare(&format!("PRAGMA quick_check(\"{}\")", table.replace('"', "\"\"")))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let line = text_of(row.get_ref(0)?).unwrap_or("?");
            if line != "ok" && problems.len() < 10 {
                problems.push(line.to_string());
            }
        }
    }
    if !problems.is_empty() {
        return Err(ledger_failure(format!("sqlite quick_check: {}", problems.join("; "))));
    }
    Ok("ok".to_string())
}

/// The verification of one tenant's ledger, record by record.
struct TenantScan<'a> {
    conn: &'a Connection,
    no: i64,
    id: &'a str,
    keys: &'a [VerifierKey],
    timestamps: &'a timestamps::Timestamps<'a>,
    /// Checkpoints not reached yet, smallest size first.
    checkpoints: VecDeque<StoredCheckpoint>,
    node_counts: Vec<NodeCount>,
    /// The tree of the records verified so far.
    frontier: Frontier,
    /// One per stored level, `node_cursors[level / NODE_LEVEL_STEP - 1]`, opened when reached.
    node_cursors: Vec<NodeCursor>,
    /// Reused buffer: the stored-level nodes the last record completed.
    completed: Vec<CompletedNode>,
    merkle_nodes: u64,
    checkpoints_verified: u64,
    latest_checkpoint: Option<u64>,
    timestamps_verified: u64,
    latest_timestamp: Option<TimestampReport>,
}

impl<'a> TenantScan<'a> {
    fn new(
        conn: &'a Connection,
        (no, id): (i64, &'a str),
        (keys, timestamps): (&'a [VerifierKey], &'a timestamps::Timestamps<'a>),
        checkpoints: Vec<StoredCheckpoint>,
        node_counts: Vec<NodeCount>,
    ) -> Self {
        Self {
            conn,
            no,
            id,
            keys,
            timestamps,
            checkpoints: checkpoints.into(),
            node_counts,
            frontier: Frontier::new(),
            node_cursors: Vec::new(),
            completed: Vec::new(),
            merkle_nodes: 0,
            checkpoints_verified: 0,
            latest_checkpoint: None,
            timestamps_verified: 0,
            latest_timestamp: None,
        }
    }

    /// Checker threads read and check blocks of records on their own (canonical form, fields,
    /// leaf hash: what needs no other record), each through its own connection, while this one
    /// puts the checked blocks in the tree in order, checking what depends on position.
    fn run(mut self, checkers: &mut Checkers<'_>) -> Result<TenantReport, VerifyError> {
        self.check_checkpoints()?;
        let last: Option<i64> = self.conn.query_row(
            "SELECT max(key) FROM records WHERE key BETWEEN ?1 AND ?2",
            params![record_key(self.no, 0), record_key(self.no, MAX_SEQ)],
            |row| row.get(0),
        )?;
        if let Some(last) = last {
            let queue = BlockQueue::new(key_seq(last), checkers.threads() * BLOCKS_PER_CHECKER);
            let (no, id) = (self.no, self.id);
            thread::scope(|scope| {
                let (done, arrivals) = mpsc::channel();
                for reader in checkers.readers() {
                    let (queue, done) = (&queue, done.clone());
                    scope.spawn(move || queue.work(reader, (no, id), &done));
                }
                drop(done);
                // After a failure (or a panic) the checkers stop at the end of their current block.
                let _stop = StopOnDrop { queue: &queue, only_when_panicking: false };
                self.add_blocks(&queue, &arrivals)
            })?;
        }
        self.finish()
    }

    fn fail(&self, at: Location, problem: impl Into<String>) -> VerifyError {
        VerifyError::Failed(Failure::new(Some(self.id), at, problem))
    }

    /// Adds the checked blocks to the tree in block order, whatever order they arrive in.
    fn add_blocks(&mut self, queue: &BlockQueue, arrivals: &mpsc::Receiver<(u64, Block)>) -> Result<(), VerifyError> {
        let mut arrived: BTreeMap<u64, Block> = BTreeMap::new();
        for index in 0..queue.blocks {
            let mut block = loop {
                if let Some(block) = arrived.remove(&index) {
                    break block;
                }
                // A checker only goes away early by panicking, which the scope passes on.
                let (at, block) = arrivals.recv().map_err(|_| ledger_failure("record checker stopped".into()))?;
                arrived.insert(at, block);
            };
            if let Some(error) = block.error.take() {
                return Err(error);
            }
            self.add_block(&block)?;
            // Records of later blocks exist: this one must have been full.
            let end = (index + 1) * BLOCK_SEQS;
            if index + 1 < queue.blocks && self.frontier.size() < end {
                return Err(self.fail(Location::Seq(self.frontier.size()), "missing"));
            }
            queue.give_back(block);
        }
        Ok(())
    }

    /// Adds checked records to the tree, in order, checking what depends on their position.
    fn add_block(&mut self, block: &Block) -> Result<(), VerifyError> {
        for row in &block.rows {
            let seq = self.frontier.size();
            let at = Location::Seq(seq);
            if key_seq(row.key) != seq {
                return Err(self.fail(at, "missing"));
            }
            if row.tenant_no != self.no {
                return Err(self.fail(at, format!("row says tenant number {}, its key {}", row.tenant_no, self.no)));
            }
            let leaf = match &row.verdict {
                Ok(leaf) => *leaf,
                Err(problem) => return Err(self.fail(at, problem.clone())),
            };
            let completed = &mut self.completed;
            completed.clear();
            self.frontier
                .push_with(leaf, |node| {
                    if node.level % NODE_LEVEL_STEP == 0 {
                        completed.push(node);
                    }
                })
                .map_err(|e| self.fail(at, e.to_string()))?;
            self.check_nodes()?;
            self.check_checkpoints()?;
        }
        Ok(())
    }

    /// Compares the stored-level nodes the last record completed with the stored ones.
    fn check_nodes(&mut self) -> Result<(), VerifyError> {
        for i in 0..self.completed.len() {
            let node = self.completed[i];
            let (first, last) = covered_by(node.level, node.index);
            let at = Location::Seqs { first, last };
            let what = || format!("merkle node (level {}, index {})", node.level, node.index);
            let slot = (node.level / NODE_LEVEL_STEP) as usize - 1;
            while self.node_cursors.len() <= slot {
                let level = (self.node_cursors.len() as u32 + 1) * NODE_LEVEL_STEP;
                self.node_cursors.push(NodeCursor::new(level));
            }
            match self.node_cursors[slot].take(self.conn, self.no, node.index)? {
                None => return Err(self.fail(at, format!("{} is missing", what()))),
                Some(stored) if stored != node.hash.as_bytes() => {
                    let stored = describe_hash(&stored);
                    let computed = node.hash.to_base64();
                    return Err(self.fail(at, format!("{} mismatch (stored {stored}, computed {computed})", what())));
                }
                Some(_) => self.merkle_nodes += 1,
            }
        }
        Ok(())
    }

    /// Verifies the checkpoints at the current tree size.
    fn check_checkpoints(&mut self) -> Result<(), VerifyError> {
        let size = self.frontier.size();
        while let Some(stored) = self.checkpoints.front() {
            if stored.size != size {
                break;
            }
            self.check_checkpoint(stored)?;
            if !stored.published {
                if let Some(timestamp) = self.timestamps.check((self.no, self.id), stored.size, &stored.note)? {
                    self.timestamps_verified += 1;
                    self.latest_timestamp = Some(timestamp);
                }
                self.checkpoints_verified += 1;
                self.latest_checkpoint = Some(size);
            }
            self.checkpoints.pop_front();
        }
        Ok(())
    }

    fn check_checkpoint(&self, stored: &StoredCheckpoint) -> Result<(), VerifyError> {
        let at = Location::Checkpoint { size: stored.size };
        if self.keys.is_empty() {
            return Err(self.fail(at, format!("no key to verify it with (setting {SIGNING_KEYS_SETTING} is empty)")));
        }
        let signed = open_checkpoint(&stored.note, self.keys)
            .map_err(|e| self.fail(at, format!("note does not verify: {e}")))?;
        if !is_origin_of(&signed.origin, self.id) {
            return Err(self.fail(at, format!("origin {} is not of this tenant", signed.origin)));
        }
        if signed.size != stored.size {
            return Err(self.fail(at, format!("the note is for size {}", signed.size)));
        }
        if stored.root != signed.root.as_bytes() {
            let stored = describe_hash(&stored.root);
            return Err(
                self.fail(at, format!("stored root {stored} differs from the signed one {}", signed.root.to_base64()))
            );
        }
        let computed = self.frontier.root();
        if computed != signed.root && stored.published {
            let (signed, computed) = (signed.root.to_base64(), computed.to_base64());
            return Err(self.fail(
                at,
                format!("the published checkpoint's root {signed} differs from this ledger's {computed}: forked"),
            ));
        }
        if computed != signed.root {
            let signed = signed.root.to_base64();
            return Err(self.fail(at, format!("root mismatch (signed {signed}, computed {})", computed.to_base64())));
        }
        Ok(())
    }

    /// After the last record: nothing stored may describe records beyond it.
    fn finish(self) -> Result<TenantReport, VerifyError> {
        let size = self.frontier.size();
        if let Some(checkpoint) = self.checkpoints.front() {
            let problem = if checkpoint.published {
                format!(
                    "missing: the published checkpoint at size {} covers it; this ledger is behind what was \
                     published (an older backup?) and serving it would fork that history",
                    checkpoint.size
                )
            } else {
                format!("missing (the checkpoint at size {} covers it)", checkpoint.size)
            };
            return Err(self.fail(Location::Seq(size), problem));
        }
        for count in &self.node_counts {
            let level = count.level;
            if level <= 0 || level % i64::from(NODE_LEVEL_STEP) != 0 || level >= i64::from(SEQ_BITS) {
                return Err(self.fail(Location::Ledger, format!("merkle nodes stored at level {level}")));
            }
            let expected = size >> level;
            if count.max_index >= 0 && count.max_index as u64 >= expected {
                let (level, index) = (level as u32, count.max_index as u64);
                let (first, last) = covered_by(level, index);
                let problem =
                    format!("missing (merkle node (level {level}, index {index}) covers seq {first}..={last})");
                return Err(self.fail(Location::Seq(size), problem));
            }
            if count.count != expected {
                return Err(self.fail(Location::Ledger, format!("unexpected merkle nodes at level {level}")));
            }
        }
        Ok(TenantReport {
            id: self.id.to_string(),
            records: size,
            merkle_nodes: self.merkle_nodes,
            checkpoints: self.checkpoints_verified,
            latest_checkpoint: self.latest_checkpoint,
            timestamps: self.timestamps_verified,
            latest_timestamp: self.latest_timestamp,
        })
    }
}

/// Threads checking records: one per core (they also read), at least one (tests use several
/// whatever the machine).
fn checker_threads() -> usize {
    if cfg!(test) {
        return 3;
    }
    let cores = thread::available_parallelism().map_or(1, |cores| cores.get());
    cores.clamp(1, MAX_CHECKERS)
}

/// How the checker threads read records: straight from the database file's pages when the WAL
/// holds no frames (`pages.rs`), else through connections of their own, each in a read
/// transaction opened after the main one's: records are append-only and each tenant's scan stops
/// at the last key the main snapshot sees, so they read exactly the records that snapshot holds.
enum Checkers<'a> {
    File { file: &'a pages::DatabaseFile, records: pages::Table },
    Sqlite { conns: Vec<Connection> },
}

impl<'a> Checkers<'a> {
    /// Called with the main snapshot taken (`conn` has read in its transaction).
    fn open(conn: &Connection, records: Option<(&'a pages::DatabaseFile, pages::Table)>) -> Result<Self, VerifyError> {
        if let Some((file, records)) = records {
            return Ok(Self::File { file, records });
        }
        let path = Path::new(conn.path().unwrap_or_default());
        let mut conns = Vec::new();
        for _ in 0..checker_threads() {
            let conn = open_read_only(path)?;
            // Every page read gets SQLite's cell-level sanity checks: what `quick_check` would
            // say of the records table (which it skips) surfaces as a corrupt-database error.
            conn.pragma_update(None, "cell_size_check", true)?;
            conn.execute_batch("BEGIN")?;
            conns.push(conn);
        }
        Ok(Self::Sqlite { conns })
    }

    fn threads(&self) -> usize {
        match self {
            Self::File { .. } => checker_threads(),
            Self::Sqlite { conns } => conns.len(),
        }
    }

    /// What each checker thread reads with.
    fn readers(&mut self) -> Vec<Reader<'_>> {
        match self {
            Self::File { file, records } => (0..checker_threads()).map(|_| Reader::File(file, *records)).collect(),
            Self::Sqlite { conns } => conns.iter_mut().map(Reader::Sqlite).collect(),
        }
    }
}

/// A checker thread's way to the records (a connection is used by one thread at a time).
enum Reader<'a> {
    File(&'a pages::DatabaseFile, pages::Table),
    Sqlite(&'a mut Connection),
}

/// Hands out the blocks of one tenant's records, in order, to the checker threads, each with a
/// buffer taken from a fixed pool, so at most that many blocks are in flight.
struct BlockQueue {
    /// Blocks of [`BLOCK_SEQS`] seqs: the last one holds the tenant's last record.
    blocks: u64,
    /// The seq of that record: blocks stop there, whatever the checkers' snapshots hold beyond.
    last_seq: u64,
    state: Mutex<QueueState>,
    freed: Condvar,
}

struct QueueState {
    next: u64,
    free: Vec<Block>,
    stopped: bool,
}

impl BlockQueue {
    fn new(last_seq: u64, buffers: usize) -> Self {
        let blocks = last_seq / BLOCK_SEQS + 1;
        let free = (0..buffers.max(1)).map(|_| Block::default()).collect();
        let state = Mutex::new(QueueState { next: 0, free, stopped: false });
        Self { blocks, last_seq, state, freed: Condvar::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next block and a buffer for it; `None` when every block is taken or the scan stopped.
    /// (A block is numbered only once it has a buffer, so the block the tree waits for is always
    /// in a checker's hands, never behind a buffer.)
    fn take(&self) -> Option<(u64, Block)> {
        let mut state = self.lock();
        loop {
            if state.stopped || state.next >= self.blocks {
                return None;
            }
            if let Some(block) = state.free.pop() {
                state.next += 1;
                return Some((state.next - 1, block));
            }
            state = self.freed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn give_back(&self, block: Block) {
        self.lock().free.push(block);
        self.freed.notify_one();
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.freed.notify_all();
    }

    /// A checker thread: reads and checks blocks until there are no more.
    fn work(&self, reader: Reader<'_>, (no, tenant): (i64, &str), done: &mpsc::Sender<(u64, Block)>) {
        // A panicking checker never delivers its block: the others must not wait for buffers.
        let _stop = StopOnDrop { queue: self, only_when_panicking: true };
        while let Some((index, mut block)) = self.take() {
            block.rows.clear();
            let first = index * BLOCK_SEQS;
            let seqs = first..=(first + BLOCK_SEQS - 1).min(self.last_seq);
            block.error = match &reader {
                Reader::File(file, records) => block.read_pages((file, *records), (no, tenant), seqs),
                Reader::Sqlite(conn) => block.read(conn, (no, tenant), seqs),
            }
            .err();
            if done.send((index, block)).is_err() {
                return;
            }
        }
    }
}

/// Stops a [`BlockQueue`] when dropped (or only when dropped by a panic).
struct StopOnDrop<'a> {
    queue: &'a BlockQueue,
    only_when_panicking: bool,
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        if !self.only_when_panicking || thread::panicking() {
            self.queue.stop();
        }
    }
}

/// Records of one block, checked.
#[derive(Default)]
struct Block {
    rows: Vec<CheckedRow>,
    /// Reading failed after `rows`.
    error: Option<VerifyError>,
    /// Reused from block to block when reading pages.
    buffers: pages::Buffers,
}

/// One row of `records`, checked on its own.
struct CheckedRow {
    key: i64,
    tenant_no: i64,
    /// Its leaf hash, or what is wrong with it.
    verdict: Result<Hash, String>,
}

impl Block {
    /// Reads and checks the records of tenant `no` with `seqs`, in key order. The sealed bytes
    /// are checked and hashed where SQLite holds them, never copied.
    fn read(
        &mut self,
        conn: &Connection,
        (no, tenant): (i64, &str),
        seqs: RangeInclusive<u64>,
    ) -> Result<(), VerifyError> {
        let mut stmt = conn.prepare_cached(
            "SELECT key, tenant_no, event_id, leaf_hash, sealed FROM records WHERE key BETWEEN ?1 AND ?2 ORDER BY key",
        )?;
        let mut rows = stmt.query(params![record_key(no, *seqs.start()), record_key(no, *seqs.end())])?;
        while let Some(row) = rows.next()? {
            let key = row.get(0)?;
            let verdict = check_row(key, [row.get_ref(2)?, row.get_ref(3)?, row.get_ref(4)?], tenant);
            self.rows.push(CheckedRow { key, tenant_no: row.get(1)?, verdict });
        }
        Ok(())
    }

    /// [`Block::read`] from the database file's pages.
    fn read_pages(
        &mut self,
        (file, records): (&pages::DatabaseFile, pages::Table),
        (no, tenant): (i64, &str),
        seqs: RangeInclusive<u64>,
    ) -> Result<(), VerifyError> {
        let keys = record_key(no, *seqs.start())..=record_key(no, *seqs.end());
        let Self { rows, buffers, .. } = self;
        file.scan(records, keys, buffers, |pages::Row { key, columns: [_, tenant_no, event_id, leaf_hash, sealed] }| {
            let ValueRef::Integer(tenant_no) = tenant_no else {
                let at = Location::Seq(key_seq(key));
                return Err(VerifyError::Failed(Failure::new(Some(tenant), at, "tenant_no is not an integer")));
            };
            let verdict = check_row(key, [event_id, leaf_hash, sealed], tenant);
            rows.push(CheckedRow { key, tenant_no, verdict });
            Ok(())
        })
    }
}

/// What can be checked of a record without the others: its canonical form, that it claims its
/// row's seq, tenant and event id, and its leaf hash. Takes the row's `event_id`, `leaf_hash`
/// and `sealed`; returns the leaf hash.
fn check_row(key: i64, [event_id, stored_leaf, sealed]: [ValueRef<'_>; 3], tenant: &str) -> Result<Hash, String> {
    let ValueRef::Text(event_id) = event_id else {
        return Err("event_id is not text".to_string());
    };
    let ValueRef::Blob(stored_leaf) = stored_leaf else {
        return Err("leaf_hash is not a blob".to_string());
    };
    let ValueRef::Blob(sealed) = sealed else {
        return Err("sealed record is not a blob".to_string());
    };
    let head = read_sealed_head(sealed).map_err(|e| e.to_string())?;
    if head.seq != key_seq(key) {
        return Err(format!("record claims seq {}", head.seq));
    }
    if head.tenant != tenant {
        return Err(format!("record claims tenant {}", head.tenant));
    }
    match &head.id {
        Some(id) if id.as_bytes() == event_id => {}
        Some(id) => {
            let event_id = String::from_utf8_lossy(event_id);
            return Err(format!("record claims id {id}, its row event_id {event_id}"));
        }
        None => return Err("record has no id".to_string()),
    }
    let leaf = leaf_hash(sealed);
    if stored_leaf != leaf.as_bytes() {
        let stored = describe_hash(stored_leaf);
        return Err(format!("leaf hash mismatch (stored {stored}, computed {})", leaf.to_base64()));
    }
    Ok(leaf)
}

/// Reads one stored level of a tenant's Merkle nodes in index order, a batch at a time.
struct NodeCursor {
    level: u32,
    /// `(index, hash bytes)`, from the next expected index on.
    buffer: VecDeque<(i64, Vec<u8>)>,
}

impl NodeCursor {
    fn new(level: u32) -> Self {
        Self { level, buffer: VecDeque::new() }
    }

    /// The stored hash of node `index`, or `None` if it is not stored. Indexes must be asked
    /// for in increasing order.
    fn take(&mut self, conn: &Connection, no: i64, index: u64) -> Result<Option<Vec<u8>>, VerifyError> {
        let index = i64::try_from(index).unwrap_or(i64::MAX);
        if self.buffer.front().is_none_or(|(first, _)| *first < index) {
            self.buffer.clear();
            let mut stmt = conn.prepare_cached(
                "SELECT idx, hash FROM merkle_nodes WHERE tenant_no = ?1 AND level = ?2 AND idx >= ?3 ORDER BY idx LIMIT ?4",
            )?;
            let mut rows = stmt.query(params![no, self.level, index, NODE_BATCH])?;
            while let Some(row) = rows.next()? {
                let hash = bytes_of(row.get_ref(1)?).unwrap_or_default().to_vec();
                self.buffer.push_back((row.get(0)?, hash));
            }
        }
        match self.buffer.front() {
            Some((first, _)) if *first == index => Ok(self.buffer.pop_front().map(|(_, hash)| hash)),
            _ => Ok(None),
        }
    }
}

/// The first and last seq under the Merkle node at `level`, `index` (saturating: the index may
/// come from a damaged file).
fn covered_by(level: u32, index: u64) -> (u64, u64) {
    let width = 1u64 << level.min(63);
    let first = index.saturating_mul(width);
    (first, first.saturating_add(width - 1))
}

/// Whether a checkpoint origin is `<server origin>/<tenant>`.
pub fn is_origin_of(origin: &str, tenant: &str) -> bool {
    origin.strip_suffix(tenant).is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('/'))
}

fn ledger_failure(problem: String) -> VerifyError {
    VerifyError::Failed(Failure::new(None, Location::Ledger, problem))
}

/// A stored hash for a message: base64 if it is 32 bytes, else its length.
fn describe_hash(bytes: &[u8]) -> String {
    match Hash::from_slice(bytes) {
        Ok(hash) => hash.to_base64(),
        Err(_) => format!("a {}-byte value", bytes.len()),
    }
}

fn bytes_of(value: ValueRef<'_>) -> Option<&[u8]> {
    match value {
        ValueRef::Blob(bytes) | ValueRef::Text(bytes) => Some(bytes),
        _ => None,
    }
}

fn text_of(value: ValueRef<'_>) -> Option<&str> {
    match value {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes).ok(),
        _ => None,
    }
}

/// The fields of a sealed record that place it in a ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedHead<'a> {
    /// Its position in the tenant's ledger.
    pub seq: u64,
    /// The tenant id.
    pub tenant: Cow<'a, str>,
    /// The event id (every record the server seals has one).
    pub id: Option<Cow<'a, str>>,
}

/// Why bytes are not a sealed record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealedRecordError {
    /// Not exactly the RFC 8785 canonical form of the JSON they hold (or not JSON at all).
    #[error("not canonical JSON")]
    NotCanonical,
    /// Canonical JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// No non-negative integer `seq`.
    #[error("record has no integer seq")]
    NoSeq,
    /// No string `tenant`.
    #[error("record has no string tenant")]
    NoTenant,
    /// An `id` that is not a string.
    #[error("record id is not a string")]
    IdNotString,
}

/// Checks that `sealed` is a sealed record in canonical form (what [`jcs::is_canonical`]
/// accepts, and an object) and returns its `seq`, `tenant` and `id`. Allocation-free for the
/// records the server writes.
pub fn read_sealed_head(sealed: &[u8]) -> Result<SealedHead<'_>, SealedRecordError> {
    if let Some(fields) = canonical::check_record(sealed) {
        return Ok(SealedHead {
            seq: fields.seq.ok_or(SealedRecordError::NoSeq)?,
            tenant: Cow::Borrowed(fields.tenant.ok_or(SealedRecordError::NoTenant)?),
            id: fields.id.map(Cow::Borrowed),
        });
    }
    // What the fast check does not settle: ask the reference implementation.
    if !jcs::is_canonical(sealed) {
        return Err(SealedRecordError::NotCanonical);
    }
    let Ok(Value::Object(mut record)) = serde_json::from_slice::<Value>(sealed) else {
        return Err(SealedRecordError::NotAnObject);
    };
    let seq = record.get("seq").and_then(Value::as_u64).ok_or(SealedRecordError::NoSeq)?;
    let Some(Value::String(tenant)) = record.remove("tenant") else {
        return Err(SealedRecordError::NoTenant);
    };
    let id = match record.remove("id") {
        None => None,
        Some(Value::String(id)) => Some(Cow::Owned(id)),
        Some(_) => return Err(SealedRecordError::IdNotString),
    };
    Ok(SealedHead { seq, tenant: Cow::Owned(tenant), id })
}

/// A single-pass check that bytes are RFC 8785 canonical JSON, for the common shapes only.
///
/// It answers "certainly canonical" or "not sure", never "not canonical": anything it does not
/// handle itself (numbers other than integers within ±2^53, member names that are escaped or
/// not ASCII, deep nesting, anything malformed) is left to [`jcs::is_canonical`], so it can only
/// be wrong by accepting what the reference refuses, which its tests look for.
mod canonical;
mod pages;

/// Checkpoint time-stamps (`checkpoint_timestamps`).
mod timestamps;

#[cfg(test)]
mod tests;
