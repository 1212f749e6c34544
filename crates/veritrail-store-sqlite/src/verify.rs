//! Full verification of a data directory (`veritrail verify --data-dir`): reads `ledger.sqlite`
//! read-only, in one snapshot (the server may keep writing), and recomputes everything the
//! ledger commits to.
//!
//! For every tenant, in key order: `seq` is dense from 0; each sealed record is canonical JSON
//! (RFC 8785) whose own `seq`, `tenant` and `id` are those of its row; its leaf hash is the stored
//! one; every stored internal Merkle node (levels 4, 8, ...) is the recomputed one; and at every
//! stored checkpoint the recomputed root is the signed one, the note verifies with a trusted key
//! and its origin is `.../<tenant>`. Nothing stored may describe records that are not there.
//! `PRAGMA quick_check` runs meanwhile on a second connection.
//!
//! Speed matters (a ledger may hold billions of records): records are read in batches that
//! checker threads (one per spare core) check while the next batches are read, and sealed records
//! take a single-pass canonical-form check (`canonical`) that only falls back to
//! [`jcs::is_canonical`] for what it does not settle itself (fractions, escaped member names,
//! ...).

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
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

use crate::LEDGER_FILE;
use crate::schema::{MAX_SEQ, MAX_TENANT_NO, NODE_LEVEL_STEP, SEQ_BITS, key_seq, record_key};

/// The setting holding every ledger signing key ever used: a JSON array of
/// `{"verifier_key", "seed", "created_at", "retired_at"}`.
pub const SIGNING_KEYS_SETTING: &str = "ledger.signing_keys";

/// Stored Merkle nodes read per query while scanning one level.
const NODE_BATCH: i64 = 4096;
/// Records per batch handed to a checker thread (tests use many small batches).
const BATCH_RECORDS: usize = if cfg!(test) { 7 } else { 2048 };
/// Batches per checker thread being read, checked or added to the tree at a time.
const BATCHES_PER_CHECKER: usize = 2;
/// Most checker threads (beyond that, reading the records is the bottleneck).
const MAX_CHECKERS: usize = 4;

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
    let path = dir.join(LEDGER_FILE);
    if !path.is_file() {
        return Err(VerifyError::NoLedger(path));
    }
    let mut conn = open_read_only(&path)?;
    let structure_conn = open_read_only(&path)?;
    let interrupt = structure_conn.get_interrupt_handle();
    thread::scope(|scope| {
        // SQLite's own structural check runs meanwhile, on a second connection.
        let structure = scope.spawn(move || quick_check(&structure_conn));
        let tenants = verify_ledgers(&mut conn, trusted_keys).inspect_err(|_| interrupt.interrupt())?;
        let quick_check = structure.join().map_err(|_| ledger_failure("quick_check panicked".into()))??;
        Ok(Report { tenants, quick_check })
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

/// Every tenant's ledger, read in one transaction: every table is seen at the same instant,
/// whatever the server writes meanwhile.
fn verify_ledgers(
    conn: &mut Connection,
    trusted_keys: Option<&[VerifierKey]>,
) -> Result<Vec<TenantReport>, VerifyError> {
    let snapshot = conn.transaction()?;
    let keys = match trusted_keys {
        Some(keys) => keys.to_vec(),
        None => signing_keys(&snapshot)?,
    };
    scan(&snapshot, &keys)
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
fn scan(conn: &Connection, keys: &[VerifierKey]) -> Result<Vec<TenantReport>, VerifyError> {
    let tenants = tenants(conn)?;
    let mut checkpoints = checkpoints(conn)?;
    let mut node_counts = node_counts(conn)?;
    let known = |no: &i64| tenants.iter().any(|(known, _)| known == no);
    if let Some(no) = checkpoints.keys().find(|no| !known(no)) {
        return Err(ledger_failure(format!("checkpoints of unknown tenant number {no}")));
    }
    if let Some(no) = node_counts.keys().find(|no| !known(no)) {
        return Err(ledger_failure(format!("merkle nodes of unknown tenant number {no}")));
    }

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
            keys,
            checkpoints.remove(no).unwrap_or_default(),
            node_counts.remove(no).unwrap_or_default(),
        );
        reports.push(tenant.run()?);
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

/// A row of `checkpoints`.
#[derive(Debug, Clone)]
struct StoredCheckpoint {
    size: u64,
    root: Vec<u8>,
    note: String,
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
        checkpoints.entry(no).or_default().push(StoredCheckpoint { size, root, note });
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

/// `PRAGMA quick_check`: `ok`, or a failure listing the first problems SQLite found.
fn quick_check(conn: &Connection) -> Result<String, VerifyError> {
    let mut stmt = conn.prepare("PRAGMA quick_check(10)")?;
    let mut rows = stmt.query([])?;
    let mut lines = Vec::new();
    while let Some(row) = rows.next()? {
        lines.push(text_of(row.get_ref(0)?).unwrap_or("?").to_string());
    }
    let answer = lines.join("; ");
    if answer != "ok" {
        return Err(ledger_failure(format!("sqlite quick_check: {answer}")));
    }
    Ok(answer)
}

/// The verification of one tenant's ledger, record by record.
struct TenantScan<'a> {
    conn: &'a Connection,
    no: i64,
    id: &'a str,
    keys: &'a [VerifierKey],
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
}

impl<'a> TenantScan<'a> {
    fn new(
        conn: &'a Connection,
        (no, id): (i64, &'a str),
        keys: &'a [VerifierKey],
        checkpoints: Vec<StoredCheckpoint>,
        node_counts: Vec<NodeCount>,
    ) -> Self {
        Self {
            conn,
            no,
            id,
            keys,
            checkpoints: checkpoints.into(),
            node_counts,
            frontier: Frontier::new(),
            node_cursors: Vec::new(),
            completed: Vec::new(),
            merkle_nodes: 0,
            checkpoints_verified: 0,
            latest_checkpoint: None,
        }
    }

    /// Reads the records in batches that checker threads check on their own (canonical form,
    /// fields, leaf hash: what needs no other record) while this one reads the next batches,
    /// then puts them in the tree in order. Batch `n` goes to checker `n % checkers`, so taking
    /// the results round-robin keeps the order.
    fn run(mut self) -> Result<TenantReport, VerifyError> {
        self.check_checkpoints()?;
        let (conn, id) = (self.conn, self.id);
        let mut stmt = conn.prepare(
            "SELECT key, tenant_no, event_id, leaf_hash, sealed FROM records WHERE key BETWEEN ?1 AND ?2 ORDER BY key",
        )?;
        let mut rows = stmt.query(params![record_key(self.no, 0), record_key(self.no, MAX_SEQ)])?;
        let checkers = checker_threads();
        thread::scope(|scope| {
            let (mut to_checkers, mut from_checkers) = (Vec::new(), Vec::new());
            for _ in 0..checkers {
                let (to_checker, inbox) = mpsc::sync_channel::<Batch>(BATCHES_PER_CHECKER);
                let (outbox, from_checker) = mpsc::sync_channel::<Batch>(BATCHES_PER_CHECKER);
                scope.spawn(move || {
                    for mut batch in inbox {
                        batch.check(id);
                        if outbox.send(batch).is_err() {
                            break;
                        }
                    }
                });
                to_checkers.push(to_checker);
                from_checkers.push(from_checker);
            }
            // A checker only goes away by panicking, which the scope passes on.
            let gone = || ledger_failure("record checker stopped".into());

            let mut free: Vec<Batch> = (0..checkers * BATCHES_PER_CHECKER).map(|_| Batch::default()).collect();
            let (mut sent, mut received) = (0, 0);
            let mut more_rows = true;
            loop {
                while more_rows && let Some(mut batch) = free.pop() {
                    more_rows = batch.fill(&mut rows)?;
                    if batch.rows.is_empty() {
                        free.push(batch);
                        break;
                    }
                    to_checkers[sent % checkers].send(batch).map_err(|_| gone())?;
                    sent += 1;
                }
                if received == sent {
                    break;
                }
                let batch = from_checkers[received % checkers].recv().map_err(|_| gone())?;
                received += 1;
                self.add_batch(&batch)?;
                free.push(batch);
            }
            Ok::<_, VerifyError>(())
        })?;
        self.finish()
    }

    fn fail(&self, at: Location, problem: impl Into<String>) -> VerifyError {
        VerifyError::Failed(Failure::new(Some(self.id), at, problem))
    }

    /// Adds checked records to the tree, in order, checking what depends on their position.
    fn add_batch(&mut self, batch: &Batch) -> Result<(), VerifyError> {
        for (row, verdict) in batch.rows.iter().zip(&batch.verdicts) {
            let seq = self.frontier.size();
            let at = Location::Seq(seq);
            if key_seq(row.key) != seq {
                return Err(self.fail(at, "missing"));
            }
            if row.tenant_no != self.no {
                return Err(self.fail(at, format!("row says tenant number {}, its key {}", row.tenant_no, self.no)));
            }
            let leaf = match verdict {
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
            self.checkpoints_verified += 1;
            self.latest_checkpoint = Some(size);
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
            let problem = format!("missing (the checkpoint at size {} covers it)", checkpoint.size);
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
        })
    }
}

/// Threads checking records: one per core but the reader's, at least one (tests use several
/// whatever the machine).
fn checker_threads() -> usize {
    if cfg!(test) {
        return 3;
    }
    let cores = thread::available_parallelism().map_or(1, |cores| cores.get());
    cores.saturating_sub(1).clamp(1, MAX_CHECKERS)
}

/// Records read from `records`, on their way to a checker thread and back.
#[derive(Default)]
struct Batch {
    rows: Vec<BatchRow>,
    /// The event ids, stored leaf hashes and sealed records of `rows`, end to end.
    bytes: Vec<u8>,
    /// Once checked, per row: its leaf hash, or what is wrong with it.
    verdicts: Vec<Result<Hash, String>>,
}

/// One row of `records`, its byte columns in [`Batch::bytes`].
struct BatchRow {
    key: i64,
    tenant_no: i64,
    event_id: Range<usize>,
    leaf_hash: Range<usize>,
    sealed: Range<usize>,
    /// A column of the wrong type.
    malformed: Option<&'static str>,
}

impl Batch {
    /// Replaces the batch by the next rows (at most [`BATCH_RECORDS`]); false when there are
    /// no more.
    fn fill(&mut self, rows: &mut rusqlite::Rows<'_>) -> Result<bool, VerifyError> {
        self.rows.clear();
        self.bytes.clear();
        self.verdicts.clear();
        while self.rows.len() < BATCH_RECORDS {
            let Some(row) = rows.next()? else {
                return Ok(false);
            };
            let mut malformed = None;
            let mut copy = |value: ValueRef<'_>, is_text: bool, column: &'static str| {
                let start = self.bytes.len();
                match (value, is_text) {
                    (ValueRef::Text(bytes), true) | (ValueRef::Blob(bytes), false) => {
                        self.bytes.extend_from_slice(bytes)
                    }
                    _ => malformed = malformed.or(Some(column)),
                }
                start..self.bytes.len()
            };
            let event_id = copy(row.get_ref(2)?, true, "event_id is not text");
            let leaf_hash = copy(row.get_ref(3)?, false, "leaf_hash is not a blob");
            let sealed = copy(row.get_ref(4)?, false, "sealed record is not a blob");
            self.rows.push(BatchRow {
                key: row.get(0)?,
                tenant_no: row.get(1)?,
                event_id,
                leaf_hash,
                sealed,
                malformed,
            });
        }
        Ok(true)
    }

    /// Checks each record on its own, for the records of `tenant`.
    fn check(&mut self, tenant: &str) {
        self.verdicts.clear();
        for row in &self.rows {
            self.verdicts.push(check_row(row, &self.bytes, tenant));
        }
    }
}

/// What can be checked of a record without the others: its canonical form, that it claims its
/// row's seq, tenant and event id, and its leaf hash. Returns the leaf hash.
fn check_row(row: &BatchRow, bytes: &[u8], tenant: &str) -> Result<Hash, String> {
    if let Some(problem) = row.malformed {
        return Err(problem.to_string());
    }
    let column = |range: &Range<usize>| bytes.get(range.clone()).unwrap_or_default();
    let (event_id, stored_leaf, sealed) = (column(&row.event_id), column(&row.leaf_hash), column(&row.sealed));
    let head = read_sealed_head(sealed).map_err(|e| e.to_string())?;
    if head.seq != key_seq(row.key) {
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
mod canonical {
    /// Deeper nesting is left to the reference implementation.
    const MAX_DEPTH: usize = 32;
    /// Integers up to this magnitude print as themselves in canonical JSON.
    const MAX_EXACT_INTEGER: u64 = 1 << 53;

    /// Top-level fields of a canonical record.
    #[derive(Debug, Default)]
    pub(super) struct Fields<'a> {
        pub(super) seq: Option<u64>,
        pub(super) tenant: Option<&'a str>,
        pub(super) id: Option<&'a str>,
    }

    /// `Some` if `bytes` are certainly a canonical JSON object whose `seq` (if any) is a
    /// non-negative integer and `tenant` and `id` (if any) are strings without escapes.
    pub(super) fn check_record(bytes: &[u8]) -> Option<Fields<'_>> {
        let mut scanner = Scanner { bytes, pos: 0 };
        let mut fields = Fields::default();
        if scanner.peek()? != b'{' {
            return None;
        }
        scanner.object(0, Some(&mut fields))?;
        (scanner.pos == bytes.len()).then_some(fields)
    }

    /// Whether `bytes` are certainly canonical JSON (`None`: not sure).
    #[cfg(test)]
    pub(super) fn check(bytes: &[u8]) -> Option<()> {
        let mut scanner = Scanner { bytes, pos: 0 };
        scanner.value(0)?;
        (scanner.pos == bytes.len()).then_some(())
    }

    /// What a value was, as far as the top-level fields care.
    enum Scanned<'a> {
        NonNegativeInteger(u64),
        /// A string without escapes: its UTF-8 bytes.
        PlainString(&'a [u8]),
        Other,
    }

    struct Scanner<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    impl<'a> Scanner<'a> {
        fn peek(&self) -> Option<u8> {
            self.bytes.get(self.pos).copied()
        }

        fn next(&mut self) -> Option<u8> {
            let byte = self.peek()?;
            self.pos += 1;
            Some(byte)
        }

        fn value(&mut self, depth: usize) -> Option<Scanned<'a>> {
            match self.peek()? {
                b'{' => self.object(depth + 1, None),
                b'[' => self.array(depth + 1),
                b'"' => {
                    let string = self.string()?;
                    Some(if string.escaped { Scanned::Other } else { Scanned::PlainString(string.raw) })
                }
                b'-' | b'0'..=b'9' => self.integer(),
                b't' => self.literal(b"true"),
                b'f' => self.literal(b"false"),
                b'n' => self.literal(b"null"),
                _ => None,
            }
        }

        fn literal(&mut self, literal: &[u8]) -> Option<Scanned<'a>> {
            let end = self.pos.checked_add(literal.len())?;
            if self.bytes.get(self.pos..end)? != literal {
                return None;
            }
            self.pos = end;
            Some(Scanned::Other)
        }

        /// An object whose member names are ASCII without escapes, in strictly increasing
        /// byte order (which is UTF-16 order for ASCII, and rules out duplicates). At the top
        /// level, captures the record fields.
        fn object(&mut self, depth: usize, mut fields: Option<&mut Fields<'a>>) -> Option<Scanned<'a>> {
            if depth > MAX_DEPTH {
                return None;
            }
            self.pos += 1; // '{'
            if self.peek()? == b'}' {
                self.pos += 1;
                return Some(Scanned::Other);
            }
            let mut previous: Option<&[u8]> = None;
            loop {
                if self.peek()? != b'"' {
                    return None;
                }
                let name = self.string()?;
                if name.escaped || !name.ascii {
                    return None;
                }
                let name = name.raw;
                if previous.is_some_and(|previous| previous >= name) {
                    return None;
                }
                previous = Some(name);
                if self.next()? != b':' {
                    return None;
                }
                let value = self.value(depth)?;
                if let Some(fields) = fields.as_deref_mut() {
                    match (name, value) {
                        (b"seq", Scanned::NonNegativeInteger(seq)) => fields.seq = Some(seq),
                        (b"tenant", Scanned::PlainString(tenant)) => fields.tenant = std::str::from_utf8(tenant).ok(),
                        (b"id", Scanned::PlainString(id)) => fields.id = std::str::from_utf8(id).ok(),
                        (b"seq" | b"tenant" | b"id", _) => return None,
                        _ => {}
                    }
                }
                match self.next()? {
                    b',' => {}
                    b'}' => return Some(Scanned::Other),
                    _ => return None,
                }
            }
        }

        fn array(&mut self, depth: usize) -> Option<Scanned<'a>> {
            if depth > MAX_DEPTH {
                return None;
            }
            self.pos += 1; // '['
            if self.peek()? == b']' {
                self.pos += 1;
                return Some(Scanned::Other);
            }
            loop {
                self.value(depth)?;
                match self.next()? {
                    b',' => {}
                    b']' => return Some(Scanned::Other),
                    _ => return None,
                }
            }
        }

        /// A string in canonical form: UTF-8, no raw control character, and only the escapes
        /// RFC 8785 writes (`\"`, `\\`, `\b`, `\t`, `\n`, `\f`, `\r`, and `\u00xx` in
        /// lowercase hex for the other control characters).
        fn string(&mut self) -> Option<ScannedString<'a>> {
            let bytes = self.bytes;
            let start = self.pos + 1; // after '"'
            let mut pos = start;
            let mut escaped = false;
            // The OR of every byte: its high bit tells whether the string is all ASCII.
            let mut high_bits = 0u8;
            loop {
                while let Some(&word) = bytes.get(pos..).and_then(|rest| rest.first_chunk::<8>()) {
                    if needs_attention(u64::from_le_bytes(word)) {
                        break;
                    }
                    pos += 8;
                }
                let byte = *bytes.get(pos)?;
                pos += 1;
                match byte {
                    b'"' => break,
                    b'\\' => {
                        escaped = true;
                        self.pos = pos;
                        self.escape()?;
                        pos = self.pos;
                    }
                    0x00..=0x1f => return None,
                    _ => high_bits |= byte,
                }
            }
            self.pos = pos;
            let raw = &bytes[start..pos - 1];
            let ascii = high_bits < 0x80;
            if !ascii {
                std::str::from_utf8(raw).ok()?;
            }
            Some(ScannedString { raw, escaped, ascii })
        }

        fn escape(&mut self) -> Option<()> {
            match self.next()? {
                b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => Some(()),
                b'u' => {
                    let end = self.pos.checked_add(4)?;
                    let &[b'0', b'0', high, low] = self.bytes.get(self.pos..end)? else {
                        return None;
                    };
                    let low = match low {
                        b'0'..=b'9' => low - b'0',
                        b'a'..=b'f' => low - b'a' + 10,
                        _ => return None,
                    };
                    let code = match high {
                        b'0' => low,
                        b'1' => 0x10 + low,
                        _ => return None,
                    };
                    // These have short forms.
                    if matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                        return None;
                    }
                    self.pos = end;
                    Some(())
                }
                _ => None,
            }
        }

        /// An integer without fraction or exponent, within ±2^53, in shortest form.
        fn integer(&mut self) -> Option<Scanned<'a>> {
            let negative = self.peek()? == b'-';
            if negative {
                self.pos += 1;
            }
            let start = self.pos;
            match self.next()? {
                b'0' => {}
                b'1'..=b'9' => {
                    while self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
                        self.pos += 1;
                    }
                }
                _ => return None,
            }
            // A fraction, an exponent or a leading zero: not for this check.
            if matches!(self.peek(), Some(b'.' | b'e' | b'E' | b'0'..=b'9')) {
                return None;
            }
            let digits = &self.bytes[start..self.pos];
            if digits.len() > 16 {
                return None;
            }
            let magnitude = digits.iter().fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
            match (negative, magnitude) {
                (_, magnitude) if magnitude > MAX_EXACT_INTEGER => None,
                (true, 0) => None,
                (true, _) => Some(Scanned::Other),
                (false, magnitude) => Some(Scanned::NonNegativeInteger(magnitude)),
            }
        }
    }

    /// Whether any of 8 bytes is a quote, a backslash, a control character or not ASCII (may
    /// say yes for bytes after one that is: the caller then looks at them one by one).
    fn needs_attention(word: u64) -> bool {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
        // The classic "has a zero byte" and "has a byte less than n" bit tricks.
        let has_zero_byte = |word: u64| word.wrapping_sub(ONES) & !word & HIGH_BITS != 0;
        let quote = has_zero_byte(word ^ (ONES * u64::from(b'"')));
        let backslash = has_zero_byte(word ^ (ONES * u64::from(b'\\')));
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH_BITS != 0;
        quote || backslash || control || word & HIGH_BITS != 0
    }

    struct ScannedString<'a> {
        /// The bytes between the quotes (escapes not decoded), valid UTF-8.
        raw: &'a [u8],
        escaped: bool,
        ascii: bool,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use jiff::Timestamp;
    use rusqlite::{Connection, params};
    use serde_json::json;
    use veritrail_ledger::checkpoint::{Checkpoint, sign_checkpoint};
    use veritrail_ledger::hash::{Hash, leaf_hash};
    use veritrail_ledger::jcs;
    use veritrail_ledger::note::{NoteSigner, VerifierKey};
    use veritrail_store::{Store, StoredCheckpoint, Tenant};

    use super::{Location, SealedRecordError, VerifyError, canonical, read_sealed_head, verify_data_dir};
    use crate::schema::record_key;
    use crate::{LEDGER_FILE, SqliteStore};

    const TENANT: &str = "tn_alpha";
    const OTHER: &str = "tn_beta";
    const RECORDS: u64 = 100;

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("veritrail.test", [9; 32]).unwrap()
    }

    /// A data directory with `RECORDS` records for `TENANT` (checkpoints at 0, 5, 40 and 90,
    /// so the last 10 are not covered yet) and 20 for `OTHER` (checkpoint at 20).
    fn ledger(dir: &Path) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let store = SqliteStore::open(dir).unwrap();
            let keys = json!([{"verifier_key": signer().verifier_key().to_string(), "seed": "x",
                               "created_at": "2024-01-01T00:00:00Z", "retired_at": null}]);
            store.init_setting(super::SIGNING_KEYS_SETTING, keys.to_string().into_bytes()).await.unwrap();
            for (tenant, records, checkpoints) in [(TENANT, RECORDS, &[0, 5, 40, 90][..]), (OTHER, 20, &[20][..])] {
                let created_at = Timestamp::UNIX_EPOCH;
                store.create_tenant(Tenant { id: tenant.into(), name: tenant.into(), created_at }).await.unwrap();
                let mut appended = 0;
                for &size in checkpoints.iter().chain([&records]) {
                    let events = (appended..size)
                        .map(|i| veritrail_store::suite::prepared(json!({"id": format!("evt_{i}"), "action": "user.login", "actor": {"id": "u1", "email": "a@example.com"}, "metadata": {"n": i, "note": "a\nb"}})))
                        .collect();
                    store.append(tenant, events).await.unwrap();
                    appended = size;
                    if checkpoints.contains(&size) {
                        add_checkpoint(&store, tenant, size).await;
                    }
                }
            }
            store.shutdown().await.unwrap();
        });
    }

    async fn add_checkpoint(store: &SqliteStore, tenant: &str, size: u64) {
        let head = store.tree_head(tenant).await.unwrap();
        assert_eq!(head.size, size);
        let checkpoint = Checkpoint::new(format!("veritrail.test/{tenant}"), size, Hash(head.root));
        let note = sign_checkpoint(&checkpoint, &signer()).unwrap();
        let stored = StoredCheckpoint { size, root: head.root, note, created_at: Timestamp::UNIX_EPOCH };
        store.add_checkpoint(tenant, stored).await.unwrap();
    }

    fn open(dir: &Path) -> Connection {
        Connection::open(dir.join(LEDGER_FILE)).unwrap()
    }

    fn key(conn: &Connection, tenant: &str, seq: u64) -> i64 {
        let no: i64 = conn.query_row("SELECT no FROM tenants WHERE id = ?1", [tenant], |row| row.get(0)).unwrap();
        record_key(no, seq)
    }

    fn sealed(conn: &Connection, key: i64) -> Vec<u8> {
        conn.query_row("SELECT sealed FROM records WHERE key = ?1", [key], |row| row.get(0)).unwrap()
    }

    fn set_sealed(conn: &Connection, key: i64, sealed: &[u8], recompute_leaf: bool) {
        conn.execute("UPDATE records SET sealed = ?2 WHERE key = ?1", params![key, sealed]).unwrap();
        if recompute_leaf {
            let leaf = leaf_hash(sealed);
            conn.execute("UPDATE records SET leaf_hash = ?2 WHERE key = ?1", params![key, leaf.0.as_slice()]).unwrap();
        }
    }

    fn replace(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.contains(from), "{from} not in {text}");
        text.replacen(from, to, 1).into_bytes()
    }

    /// Builds a ledger, damages it with `tamper`, and returns the failure.
    fn failure_after(tamper: impl FnOnce(&Connection)) -> super::Failure {
        let dir = tempfile::tempdir().unwrap();
        ledger(dir.path());
        tamper(&open(dir.path()));
        match verify_data_dir(dir.path(), None) {
            Err(VerifyError::Failed(failure)) => failure,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn an_intact_ledger_verifies() {
        let dir = tempfile::tempdir().unwrap();
        ledger(dir.path());
        let report = verify_data_dir(dir.path(), None).unwrap();
        assert_eq!(report.quick_check, "ok");
        assert_eq!(report.tenants.len(), 2);
        assert_eq!(report.records(), RECORDS + 20);
        assert_eq!(report.checkpoints(), 5);
        assert_eq!(report.merkle_nodes(), RECORDS / 16 + 20 / 16);
        assert_eq!(report.tenants[0].latest_checkpoint, Some(90));
        assert_eq!(report.uncovered(), 10);

        let trusted = [signer().verifier_key()];
        assert_eq!(verify_data_dir(dir.path(), Some(&trusted)).unwrap(), report);
    }

    #[test]
    fn an_edited_record_is_caught_by_its_leaf_hash() {
        let failure = failure_after(|conn| {
            let key = key(conn, TENANT, 41);
            set_sealed(conn, key, &replace(&sealed(conn, key), "user.login", "user.logon"), false);
        });
        assert_eq!((failure.tenant.as_deref(), failure.at), (Some(TENANT), Location::Seq(41)));
        assert!(failure.problem.starts_with("leaf hash mismatch (stored "), "{failure}");
        assert!(failure.to_string().starts_with("tenant tn_alpha: seq 41: leaf hash mismatch"), "{failure}");
    }

    #[test]
    fn an_edited_record_with_its_leaf_hash_is_caught_by_the_merkle_nodes() {
        let failure = failure_after(|conn| {
            let key = key(conn, TENANT, 41);
            set_sealed(conn, key, &replace(&sealed(conn, key), "user.login", "user.logon"), true);
        });
        assert_eq!(failure.at, Location::Seqs { first: 32, last: 47 });
        assert!(failure.problem.starts_with("merkle node (level 4, index 2) mismatch"), "{failure}");
    }

    #[test]
    fn an_edited_trailing_record_with_its_leaf_hash_is_caught_by_the_checkpoint() {
        let failure = failure_after(|conn| {
            let key = key(conn, TENANT, 81);
            set_sealed(conn, key, &replace(&sealed(conn, key), "user.login", "user.logon"), true);
        });
        assert_eq!(failure.at, Location::Checkpoint { size: 90 });
        assert!(failure.problem.starts_with("root mismatch (signed "), "{failure}");
    }

    #[test]
    fn a_deleted_record_is_missing() {
        let failure = failure_after(|conn| {
            conn.execute("DELETE FROM records WHERE key = ?1", [key(conn, TENANT, 41)]).unwrap();
        });
        assert_eq!((failure.at, failure.problem.as_str()), (Location::Seq(41), "missing"));
    }

    #[test]
    fn deleted_trailing_records_are_missing() {
        // The last records, beyond every checkpoint: the merkle node of 80..=95 still tells.
        let failure = failure_after(|conn| {
            conn.execute(
                "DELETE FROM records WHERE key >= ?1 AND key <= ?2",
                [key(conn, TENANT, 85), key(conn, TENANT, 99)],
            )
            .unwrap();
        });
        assert_eq!(failure.at, Location::Seq(85));
        assert_eq!(failure.problem, "missing (the checkpoint at size 90 covers it)");

        let failure = failure_after(|conn| {
            conn.execute(
                "DELETE FROM records WHERE key >= ?1 AND key <= ?2",
                [key(conn, TENANT, 95), key(conn, TENANT, 99)],
            )
            .unwrap();
        });
        assert_eq!(failure.at, Location::Seq(95));
        assert_eq!(failure.problem, "missing (merkle node (level 4, index 5) covers seq 80..=95)");
    }

    #[test]
    fn swapped_records_claim_another_seq() {
        let failure = failure_after(|conn| {
            let (a, b) = (key(conn, TENANT, 41), key(conn, TENANT, 42));
            let (sealed_a, sealed_b) = (sealed(conn, a), sealed(conn, b));
            set_sealed(conn, a, &sealed_b, true);
            set_sealed(conn, b, &sealed_a, true);
        });
        assert_eq!((failure.at, failure.problem.as_str()), (Location::Seq(41), "record claims seq 42"));
    }

    #[test]
    fn a_record_of_another_tenant_is_refused() {
        let failure = failure_after(|conn| {
            let key = key(conn, TENANT, 3);
            set_sealed(conn, key, &replace(&sealed(conn, key), TENANT, "tn_alphb"), true);
        });
        assert_eq!((failure.at, failure.problem.as_str()), (Location::Seq(3), "record claims tenant tn_alphb"));
    }

    #[test]
    fn a_non_canonical_record_is_refused() {
        let failure = failure_after(|conn| {
            let key = key(conn, TENANT, 7);
            set_sealed(conn, key, &replace(&sealed(conn, key), "\"action\":", "\"action\": "), true);
        });
        assert_eq!((failure.at, failure.problem.as_str()), (Location::Seq(7), "not canonical JSON"));
    }

    #[test]
    fn a_forged_checkpoint_is_refused() {
        // Re-signed with a key of the forger's, registered in the ledger's own settings: only a
        // trusted key given from outside catches it.
        let dir = tempfile::tempdir().unwrap();
        ledger(dir.path());
        let forger = NoteSigner::from_seed("veritrail.test", [6; 32]).unwrap();
        let conn = open(dir.path());
        let note: String = conn
            .query_row("SELECT note FROM checkpoints WHERE tree_size = 40 AND tenant_no = 1", [], |row| row.get(0))
            .unwrap();
        let body = &note[..note.find("\n\n").unwrap() + 1];
        let forged = forger.sign(body).unwrap();
        conn.execute("UPDATE checkpoints SET note = ?1 WHERE tree_size = 40 AND tenant_no = 1", [&forged]).unwrap();
        let failure = match verify_data_dir(dir.path(), None) {
            Err(VerifyError::Failed(failure)) => failure,
            other => panic!("expected a failure, got {other:?}"),
        };
        assert_eq!(failure.at, Location::Checkpoint { size: 40 });
        assert_eq!(failure.problem, "note does not verify: note has no signature by a trusted key");

        let keys = json!([{"verifier_key": forger.verifier_key().to_string()}, {"verifier_key": signer().verifier_key().to_string()}]);
        conn.execute(
            "UPDATE settings SET value = ?1 WHERE name = 'ledger.signing_keys'",
            [keys.to_string().into_bytes()],
        )
        .unwrap();
        assert!(verify_data_dir(dir.path(), None).is_ok());
        let trusted: [VerifierKey; 1] = [signer().verifier_key()];
        assert!(matches!(verify_data_dir(dir.path(), Some(&trusted)), Err(VerifyError::Failed(_))));
    }

    #[test]
    fn a_stored_merkle_node_is_checked() {
        let failure = failure_after(|conn| {
            conn.execute(
                "UPDATE merkle_nodes SET hash = zeroblob(32) WHERE level = 4 AND idx = 3 AND tenant_no = 1",
                [],
            )
            .unwrap();
        });
        assert_eq!(failure.at, Location::Seqs { first: 48, last: 63 });
        assert!(failure.problem.starts_with("merkle node (level 4, index 3) mismatch (stored AAAA"), "{failure}");
        let failure = failure_after(|conn| {
            conn.execute("DELETE FROM merkle_nodes WHERE level = 4 AND idx = 3 AND tenant_no = 1", []).unwrap();
        });
        assert_eq!(failure.problem, "merkle node (level 4, index 3) is missing");
    }

    #[test]
    fn records_outside_every_tenant_are_refused() {
        let failure = failure_after(|conn| {
            conn.execute(
                "INSERT INTO records (key, tenant_no, event_id, leaf_hash, sealed) VALUES (?1, 9, 'x', x'00', x'00')",
                [record_key(9, 0)],
            )
            .unwrap();
        });
        assert_eq!((failure.tenant, failure.at), (None, Location::Ledger));
        assert!(failure.problem.starts_with("record key 9895604649984 belongs to no tenant"), "{}", failure.problem);
    }

    #[test]
    fn a_missing_ledger_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(verify_data_dir(dir.path(), None), Err(VerifyError::NoLedger(_))));
        assert!(!dir.path().join(LEDGER_FILE).exists(), "read-only: nothing created");
    }

    #[test]
    fn garbage_instead_of_a_database_is_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEDGER_FILE), vec![0x5a; 8192]).unwrap();
        let result = verify_data_dir(dir.path(), None);
        assert!(matches!(result, Err(VerifyError::Failed(_))), "{result:?}");
    }

    #[test]
    fn sealed_heads_are_read() {
        let head = read_sealed_head(br#"{"id":"evt_1","seq":41,"tenant":"tn_x","v":1}"#).unwrap();
        assert_eq!((head.seq, &*head.tenant, head.id.as_deref()), (41, "tn_x", Some("evt_1")));
        // Escaped or exotic values take the reference path and give the same answer.
        let head = read_sealed_head(br#"{"n":1.5,"seq":41,"tenant":"tn_\"x\"","\u00e9":0}"#);
        assert!(head.is_err(), "names must be sorted by UTF-16 and é is not escaped in canonical form");
        let head = read_sealed_head("{\"n\":1.5,\"seq\":41,\"tenant\":\"tn_\\\"x\\\"\",\"é\":0}".as_bytes()).unwrap();
        assert_eq!((head.seq, &*head.tenant, head.id), (41, "tn_\"x\"", None));

        let refused: [(&[u8], SealedRecordError); 8] = [
            (b"", SealedRecordError::NotCanonical),
            (b"{\"seq\":1,\"tenant\":\"t\"} ", SealedRecordError::NotCanonical),
            (b"{\"tenant\":\"t\",\"seq\":1}", SealedRecordError::NotCanonical),
            (b"[1,\"t\"]", SealedRecordError::NotAnObject),
            (b"{\"seq\":-1,\"tenant\":\"t\"}", SealedRecordError::NoSeq),
            (b"{\"seq\":1.5,\"tenant\":\"t\"}", SealedRecordError::NoSeq),
            (b"{\"seq\":1,\"tenant\":7}", SealedRecordError::NoTenant),
            (b"{\"id\":[],\"seq\":1,\"tenant\":\"t\"}", SealedRecordError::IdNotString),
        ];
        for (bytes, expected) in refused {
            assert_eq!(read_sealed_head(bytes), Err(expected), "{}", String::from_utf8_lossy(bytes));
        }
    }

    /// The fast check against the reference: it may only accept what `jcs::is_canonical`
    /// accepts, and it should accept the usual canonical records.
    #[test]
    fn the_fast_canonical_check_agrees_with_the_reference() {
        let samples: &[&str] = &[
            "{}",
            "[]",
            "0",
            "-1",
            "9007199254740992",
            "-9007199254740992",
            "9007199254740993",
            "1e3",
            "1.5",
            "-0",
            "01",
            "\"\"",
            "\"\\u001f\"",
            "\"\\u001F\"",
            "\"\\u000a\"",
            "\"\\n\"",
            "\"\\/\"",
            "\"é\"",
            "\"\\u00e9\"",
            "\"\u{7f}\"",
            "\"\u{2028}\"",
            "{\"a\":1,\"a\":1}",
            "{\"b\":1,\"a\":2}",
            "{\"a\":1,\"b\":2}",
            "{\"a\":[1,2,{\"c\":null}],\"b\":true}",
            "{\"a\" :1}",
            "[1,]",
            "[1 ]",
            "{\"a\":1,}",
            "tru",
            "nul",
            "\"abc",
            "{\"a\":\"\\ud800\"}",
            "{\"\u{e000}\":1,\"\u{1f600}\":2}",
            "[\"\\\"\\\\\\b\\t\\n\\f\\r\"]",
        ];
        for sample in samples {
            let fast = canonical::check(sample.as_bytes()).is_some();
            let reference = jcs::is_canonical(sample.as_bytes());
            assert!(!fast || reference, "fast check accepts {sample:?}, the reference does not");
        }
        for accepted in
            ["{}", "-1", "9007199254740992", "\"\\u001f\"", "\"é\"", "{\"a\":[1,2,{\"c\":null}],\"b\":true}"]
        {
            assert!(canonical::check(accepted.as_bytes()).is_some(), "{accepted}");
        }

        // Random documents, canonicalized, then with random bytes changed.
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"{}[]\",:\\-0123456789.eEabtnfrlsu \x01\x1f\x7f\x80\xc3\xa9\xff";
        for _ in 0..3000 {
            let value = random.value(0);
            let canonical = jcs::canonicalize(&value).unwrap();
            assert!(jcs::is_canonical(canonical.as_bytes()));
            let mut bytes = canonical.into_bytes();
            for _ in 0..=random.below(3) {
                let fast = canonical::check(&bytes).is_some();
                assert!(!fast || jcs::is_canonical(&bytes), "fast check accepts {:?}", String::from_utf8_lossy(&bytes));
                if bytes.is_empty() {
                    break;
                }
                let at = random.below(bytes.len() as u64) as usize;
                bytes[at] = alphabet[random.below(alphabet.len() as u64) as usize];
            }
        }
    }

    /// xorshift64*: enough randomness for generating test documents.
    struct Random(u64);

    impl Random {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }

        fn string(&mut self) -> String {
            let pieces = [
                "a",
                "b",
                "seq",
                "id",
                "é",
                "\n",
                "\u{1}",
                "\u{1f}",
                "\"",
                "\\",
                "\u{7f}",
                "\u{e000}",
                "\u{1f600}",
                "/",
                "0123456789abcdef",
                " !#$%&'()*+,-./",
            ];
            (0..self.below(6)).map(|_| pieces[self.below(pieces.len() as u64) as usize]).collect()
        }

        fn value(&mut self, depth: u32) -> serde_json::Value {
            let kind = if depth > 3 { self.below(5) } else { self.below(7) };
            match kind {
                0 => serde_json::Value::Null,
                1 => serde_json::Value::Bool(self.below(2) == 0),
                2 => json!(self.below(1 << 54) as i64 - (1 << 53)),
                3 => json!(self.below(1000) as f64 / 8.0),
                4 => json!(self.string()),
                5 => (0..self.below(4)).map(|_| self.value(depth + 1)).collect(),
                _ => {
                    let map: serde_json::Map<_, _> =
                        (0..self.below(5)).map(|_| (self.string(), self.value(depth + 1))).collect();
                    serde_json::Value::Object(map)
                }
            }
        }
    }
}
