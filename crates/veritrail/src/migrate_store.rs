//! `veritrail migrate-store --from <store> --to <store>`: copies a whole store — every tenant
//! with its ledger, keys, settings, access control and monitoring — between the embedded store
//! (a data directory) and PostgreSQL (a `postgres://` URL), either way, with every server of
//! both stopped.
//!
//! 1. **Before copying**, the source is read once in full ([`LedgerCheck`]): each tenant's RFC
//!    6962 tree is recomputed from the leaf hashes of its stored bytes (each checked against
//!    `SHA-256(0x00 || sealed)`), every stored checkpoint's root must be the recomputed root at
//!    its size, and the latest checkpoint's note must verify with the ledger's signing keys;
//!    every wrapped key and sealed secret must open with the master key the target will use.
//! 2. **The copy** streams the source's batches ([`veritrail_store::dump`]) into the target's
//!    import, which refuses a target that holds a store, commits only a complete dump and
//!    derives what its own backend derives (Merkle nodes, heads, query index and columns).
//! 3. **After copying**, the target is read back the same way and must give each tenant the same
//!    size, root and latest checkpoint; an embedded target also passes `verify --data-dir`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;
use veritrail_crypto::{MasterKey, MasterKeys};
use veritrail_ledger::checkpoint::open_checkpoint;
use veritrail_ledger::hash::{Hash, leaf_hash};
use veritrail_ledger::note::VerifierKey;
use veritrail_ledger::tree::Frontier;
use veritrail_store::StoredCheckpoint;
use veritrail_store::dump::{Batch, ImportCounts, Scope};
use veritrail_store::privacy::{Privacy, SubjectKeyRow};
use veritrail_store_sqlite::verify::{SIGNING_KEYS_SETTING, is_origin_of, verify_data_dir};
use veritrail_store_sqlite::{MASTER_KEY_FILE, OpenOptions, PREVIOUS_MASTER_KEY_FILE};

/// Batches in flight between an export and its consumer (each at most `BATCH_ROWS` rows).
const CHANNEL_BATCHES: usize = 4;

/// Arguments of `veritrail migrate-store`.
#[derive(clap::Args, Debug)]
pub struct MigrateStoreArgs {
    /// The store to copy: a data directory, or a PostgreSQL database
    /// (`postgres://user:password@host:port/dbname`). Its servers must be stopped.
    #[arg(long, value_name = "DATA_DIR|DATABASE_URL")]
    from: String,
    /// Where to copy it: a data directory holding no store, or a PostgreSQL database holding
    /// none. Its servers must be stopped too.
    #[arg(long, value_name = "DATA_DIR|DATABASE_URL")]
    to: String,
}

/// One side of a migration.
#[derive(Debug, Clone)]
enum Location {
    Dir(PathBuf),
    Postgres(String),
}

impl Location {
    fn parse(text: &str) -> Location {
        match text.starts_with("postgres://") || text.starts_with("postgresql://") {
            true => Location::Postgres(text.to_string()),
            false => Location::Dir(PathBuf::from(text)),
        }
    }

    /// For messages: the directory, or the URL without its credentials.
    fn describe(&self) -> String {
        match self {
            Location::Dir(dir) => format!("data directory {}", dir.display()),
            Location::Postgres(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
                let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("database {scheme}://{rest}")
            }
        }
    }
}

/// What was found in one tenant's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TenantSummary {
    id: String,
    records: u64,
    root: Hash,
    /// Size and root of the latest checkpoint.
    latest: Option<(u64, Hash)>,
    checkpoints: u64,
}

/// Runs `veritrail migrate-store`: 0 when copied and verified, 1 when a ledger does not verify
/// or the copy differs (an error otherwise).
pub async fn run(args: MigrateStoreArgs) -> Result<ExitCode> {
    let (from, to) = (Location::parse(&args.from), Location::parse(&args.to));
    if args.from == args.to {
        bail!("--from and --to are the same store");
    }
    let keys = target_keys(&from, &to)?;
    if let Location::Dir(dir) = &from {
        if !dir.join(veritrail_store_sqlite::LEDGER_FILE).is_file() {
            bail!("{} holds no veritrail ledger", dir.display());
        }
        if dir.join(format!("{}.unclean", veritrail_store_sqlite::INDEX_FILE)).exists() {
            bail!(
                "{} is in use by a running server (or its server did not stop cleanly): stop it (after a crash, \
                 start and stop it once) and try again",
                from.describe()
            );
        }
    }
    let found = match &to {
        Location::Dir(dir) => veritrail_store_sqlite::dump::contents(dir)?,
        Location::Postgres(url) => veritrail_store_postgres::dump::contents(url).await?,
    };
    if let Some(found) = found {
        bail!("refusing to migrate into {}: it is not empty: {found}", to.describe());
    }

    println!("verifying {} ...", from.describe());
    let source = match check(&from, Scope::Everything, Some(&keys.keys)).await? {
        Ok(summaries) => summaries,
        Err(problem) => {
            println!("FAILED: source {}: {problem}", from.describe());
            return Ok(ExitCode::from(1));
        }
    };
    println!("source verified: {} tenants", source.len());

    if let Some(key) = &keys.copy_file
        && let Location::Dir(dir) = &to
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        veritrail_store_sqlite::write_key_file(&dir.join(MASTER_KEY_FILE), key)
            .context("cannot write the target's master key file")?;
    }
    println!("copying to {} ...", to.describe());
    let counts = copy(&from, &to, keys.from_env.clone()).await?;
    for (section, rows) in &counts.sections {
        println!("  {section}: {rows}");
    }

    println!("verifying {} ...", to.describe());
    let target = match check(&to, Scope::Ledger, None).await? {
        Ok(summaries) => summaries,
        Err(problem) => {
            println!("FAILED: target {}: {problem}", to.describe());
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(problem) = compare(&source, &target) {
        println!("FAILED: the copy differs from the source: {problem}");
        return Ok(ExitCode::from(1));
    }
    if let Location::Dir(dir) = &to {
        let dir = dir.clone();
        let verified = tokio::task::spawn_blocking(move || verify_data_dir(&dir, None)).await?;
        if let Err(error) = verified {
            println!("FAILED: target {}: {error}", to.describe());
            return Ok(ExitCode::from(1));
        }
    }
    for tenant in &source {
        let checkpoint = match tenant.latest {
            Some((size, _)) => format!("latest checkpoint at size {size} ({} checkpoints)", tenant.checkpoints),
            None => "no checkpoint".to_string(),
        };
        println!("  tenant {}: {} records, root {}, {checkpoint}", tenant.id, tenant.records, tenant.root.to_hex());
    }
    println!("ok: {} tenants copied to {} and verified", source.len(), to.describe());
    Ok(ExitCode::SUCCESS)
}

/// The master keys the migration works with.
struct Keys {
    /// What the target opens the keys with: every wrapped key and sealed secret of the source
    /// must open with these.
    keys: MasterKeys,
    /// `VERITRAIL_MASTER_KEY` (and `_PREVIOUS`), if set: what an embedded target is opened with.
    from_env: Option<MasterKeys>,
    /// The source's `master.key`, to write into an embedded target that has none.
    copy_file: Option<MasterKey>,
}

/// The master keys the target will use, as `serve` would find them: `VERITRAIL_MASTER_KEY`,
/// else (embedded target) its own `master.key`, else the source data directory's, copied over.
fn target_keys(from: &Location, to: &Location) -> Result<Keys> {
    let from_env = crate::keys::from_env()?;
    if let Some(keys) = &from_env {
        return Ok(Keys { keys: keys.clone(), from_env, copy_file: None });
    }
    let Location::Dir(target) = to else {
        bail!(
            "PostgreSQL needs VERITRAIL_MASTER_KEY: set it to the master key the source was written with{}",
            match from {
                Location::Dir(dir) => format!(" (the content of {})", dir.join(MASTER_KEY_FILE).display()),
                Location::Postgres(_) => String::new(),
            }
        );
    };
    if let Some(key) = read_key_file(&target.join(MASTER_KEY_FILE))? {
        return Ok(Keys { keys: MasterKeys::new(key), from_env, copy_file: None });
    }
    let Location::Dir(source) = from else {
        bail!("set VERITRAIL_MASTER_KEY to the master key of the source database");
    };
    // `master.key.next`: an online rotation stopped half-way.
    for unfinished in [PREVIOUS_MASTER_KEY_FILE.to_string(), format!("{MASTER_KEY_FILE}.next")] {
        if source.join(&unfinished).exists() {
            bail!(
                "{} holds {unfinished}: a master key rotation is unfinished; complete it (start the server once, \
                 or `veritrail rotate-master-key`) and try again",
                source.display()
            );
        }
    }
    let key = read_key_file(&source.join(MASTER_KEY_FILE))?.with_context(|| {
        format!("{} has no {MASTER_KEY_FILE} and VERITRAIL_MASTER_KEY is not set", source.display())
    })?;
    Ok(Keys { keys: MasterKeys::new(key.clone()), from_env, copy_file: Some(key) })
}

fn read_key_file(path: &Path) -> Result<Option<MasterKey>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(MasterKey::from_base64(&text).with_context(|| format!("invalid {}", path.display()))?)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Starts the export of `location` into a channel (the receiving end is returned).
fn start_export(
    location: &Location,
    scope: Scope,
) -> (mpsc::Receiver<Batch>, tokio::task::JoinHandle<veritrail_store::StoreResult<()>>) {
    let (sender, receiver) = mpsc::channel(CHANNEL_BATCHES);
    let task = match location.clone() {
        Location::Dir(dir) => {
            tokio::task::spawn_blocking(move || veritrail_store_sqlite::dump::export(&dir, scope, &sender))
        }
        Location::Postgres(url) => {
            tokio::spawn(async move { veritrail_store_postgres::dump::export(&url, scope, &sender).await })
        }
    };
    (receiver, task)
}

/// Reads `location` and checks its ledgers ([`LedgerCheck`]): the summaries, `Ok(Err(problem))`
/// when something does not verify, `Err` when it cannot be read.
async fn check(
    location: &Location,
    scope: Scope,
    keys: Option<&MasterKeys>,
) -> Result<Result<Vec<TenantSummary>, String>> {
    let (mut batches, export) = start_export(location, scope);
    let mut checker = LedgerCheck::new(keys.map(|keys| Privacy::new(keys.clone())));
    let mut verdict = Ok(());
    while let Some(batch) = batches.recv().await {
        verdict = checker.consume(batch);
        if verdict.is_err() {
            break;
        }
    }
    drop(batches);
    let exported = export.await.context("export task failed")?;
    if let Err(problem) = verdict {
        return Ok(Err(problem));
    }
    exported.with_context(|| format!("cannot read {}", location.describe()))?;
    Ok(checker.finish())
}

/// Streams the source's whole dump into the target's import.
async fn copy(from: &Location, to: &Location, env_keys: Option<MasterKeys>) -> Result<ImportCounts> {
    let (batches, export) = start_export(from, Scope::Everything);
    let imported = match to {
        Location::Dir(dir) => {
            let options = OpenOptions { master_keys: env_keys, ..OpenOptions::default() };
            veritrail_store_sqlite::dump::import(dir, options, batches).await
        }
        Location::Postgres(url) => veritrail_store_postgres::dump::import(url, batches).await,
    };
    let exported = export.await.context("export task failed")?;
    // The export's own error first (the import only saw the stream stop), unless the export
    // stopped because the import did.
    match exported {
        Err(error) if veritrail_store::dump::is_import_stopped(&error) && imported.is_err() => {}
        exported => exported.with_context(|| format!("cannot read {}", from.describe()))?,
    }
    // Both imports leave nothing behind on failure: the run can simply be repeated.
    imported.with_context(|| format!("cannot write {} (nothing was kept)", to.describe()))
}

/// The first difference between the source's ledgers and the copy's.
fn compare(source: &[TenantSummary], target: &[TenantSummary]) -> Option<String> {
    for tenant in source {
        let Some(copy) = target.iter().find(|t| t.id == tenant.id) else {
            return Some(format!("tenant {}: missing", tenant.id));
        };
        if copy.records != tenant.records {
            return Some(format!("tenant {}: {} records, the source has {}", tenant.id, copy.records, tenant.records));
        }
        if copy.root != tenant.root {
            return Some(format!(
                "tenant {}: root {}, the source's is {}",
                tenant.id,
                copy.root.to_hex(),
                tenant.root.to_hex()
            ));
        }
        if copy.latest != tenant.latest || copy.checkpoints != tenant.checkpoints {
            return Some(format!(
                "tenant {}: {} checkpoints, the latest at {:?}; the source has {}, the latest at {:?}",
                tenant.id,
                copy.checkpoints,
                copy.latest.map(|(size, _)| size),
                tenant.checkpoints,
                tenant.latest.map(|(size, _)| size)
            ));
        }
    }
    if let Some(extra) = target.iter().find(|t| !source.iter().any(|s| s.id == t.id)) {
        return Some(format!("tenant {}: not in the source", extra.id));
    }
    None
}

/// One tenant's ledger as the check goes through it.
struct TenantCheck {
    id: String,
    frontier: Frontier,
    /// Sizes and roots of the stored checkpoints not reached yet, smallest first.
    pending: VecDeque<(u64, [u8; 32])>,
    latest: Option<StoredCheckpoint>,
    checkpoints: u64,
}

/// Recomputes every tenant's tree from its records as a dump streams by, checks each stored
/// checkpoint's root against it and the latest one's signature, and (given master keys) that
/// every wrapped key and sealed secret opens with them.
struct LedgerCheck {
    privacy: Option<Privacy>,
    signing_keys: Vec<VerifierKey>,
    tenants: Vec<TenantCheck>,
}

impl LedgerCheck {
    fn new(privacy: Option<Privacy>) -> LedgerCheck {
        LedgerCheck { privacy, signing_keys: Vec::new(), tenants: Vec::new() }
    }

    fn tenant(&mut self, id: &str) -> Result<&mut TenantCheck, String> {
        self.tenants.iter_mut().find(|t| t.id == id).ok_or_else(|| format!("rows of unknown tenant {id}"))
    }

    fn consume(&mut self, batch: Batch) -> Result<(), String> {
        let wrong_key = |what: String, error: veritrail_store::StoreError| {
            format!(
                "the master key does not open {what} ({error}): VERITRAIL_MASTER_KEY (or the data directory's \
                 master.key) must be the key the source was written with"
            )
        };
        match batch {
            Batch::Settings(rows) => {
                for row in rows {
                    if row.name == SIGNING_KEYS_SETTING {
                        self.signing_keys = signing_keys(&row.value)?;
                    }
                    if let Some(privacy) = &self.privacy {
                        privacy
                            .reseal_setting(&row.name, &row.value)
                            .map_err(|e| wrong_key(format!("setting {}", row.name), e))?;
                    }
                }
            }
            Batch::Tenants(rows) => {
                for row in rows {
                    if let (Some(privacy), Some(wrapped)) = (&self.privacy, &row.blind_wrapped) {
                        privacy
                            .remember_blind_key(&row.tenant.id, wrapped)
                            .map_err(|e| wrong_key(format!("the keys of tenant {}", row.tenant.id), e))?;
                    }
                    self.tenants.push(TenantCheck {
                        id: row.tenant.id,
                        frontier: Frontier::new(),
                        pending: VecDeque::new(),
                        latest: None,
                        checkpoints: 0,
                    });
                }
            }
            Batch::DataKeys(keys) => {
                if let Some(privacy) = &self.privacy {
                    for key in keys {
                        let row = SubjectKeyRow { key_id: key.key_id, subject: key.subject, wrapped: key.wrapped };
                        privacy
                            .unwrap(&key.tenant, &row)
                            .map_err(|e| wrong_key(format!("data key {} of tenant {}", key.key_id, key.tenant), e))?;
                    }
                }
            }
            Batch::Checkpoints { tenant, checkpoints } => {
                let state = self.tenant(&tenant)?;
                for checkpoint in checkpoints {
                    state.checkpoints += 1;
                    state.pending.push_back((checkpoint.size, checkpoint.root));
                    state.latest = Some(checkpoint);
                }
            }
            Batch::Records { tenant, records } => {
                let state = self.tenant(&tenant)?;
                for record in records {
                    state.check_reached()?;
                    if record.seq != state.frontier.size() {
                        return Err(format!(
                            "tenant {tenant}: seq {} where seq {} was expected",
                            record.seq,
                            state.frontier.size()
                        ));
                    }
                    let leaf = leaf_hash(&record.sealed);
                    if leaf.0 != record.leaf_hash {
                        return Err(format!(
                            "tenant {tenant}: seq {}: leaf hash mismatch (stored {}, computed {})",
                            record.seq,
                            Hash(record.leaf_hash).to_hex(),
                            leaf.to_hex()
                        ));
                    }
                    state.frontier.push(leaf).map_err(|e| format!("tenant {tenant}: {e}"))?;
                    state.check_reached()?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Every tenant's summary, once its latest checkpoint verified against its records.
    fn finish(mut self) -> Result<Vec<TenantSummary>, String> {
        let mut summaries = Vec::with_capacity(self.tenants.len());
        for state in &mut self.tenants {
            // A checkpoint of the empty tree is reached before any record.
            state.check_reached()?;
            let size = state.frontier.size();
            if let Some((unreached, _)) = state.pending.front() {
                return Err(format!(
                    "tenant {}: checkpoint at size {unreached} but the ledger has only {size} records",
                    state.id
                ));
            }
            if let Some(latest) = &state.latest {
                let signed = open_checkpoint(&latest.note, &self.signing_keys).map_err(|e| {
                    format!("tenant {}: latest checkpoint (size {}) does not verify: {e}", state.id, latest.size)
                })?;
                if signed.size != latest.size
                    || signed.root.0 != latest.root
                    || !is_origin_of(&signed.origin, &state.id)
                {
                    return Err(format!(
                        "tenant {}: the signed note of the checkpoint at size {} does not say what is stored \
                         (size {}, origin {})",
                        state.id, latest.size, signed.size, signed.origin
                    ));
                }
            }
            summaries.push(TenantSummary {
                id: state.id.clone(),
                records: size,
                root: state.frontier.root(),
                latest: state.latest.as_ref().map(|c| (c.size, Hash(c.root))),
                checkpoints: state.checkpoints,
            });
        }
        Ok(summaries)
    }
}

impl TenantCheck {
    /// Checks the stored checkpoints at the current size against the recomputed root.
    fn check_reached(&mut self) -> Result<(), String> {
        while let Some(&(size, stored)) = self.pending.front() {
            if size != self.frontier.size() {
                return Ok(());
            }
            let root = self.frontier.root();
            if root.0 != stored {
                return Err(format!(
                    "tenant {}: checkpoint at size {size}: signed root {} but the records give {}",
                    self.id,
                    Hash(stored).to_hex(),
                    root.to_hex()
                ));
            }
            self.pending.pop_front();
        }
        Ok(())
    }
}

/// The verifier keys of the `ledger.signing_keys` setting (a JSON array of objects with a
/// `verifier_key`).
fn signing_keys(value: &[u8]) -> Result<Vec<VerifierKey>, String> {
    let entries: Vec<serde_json::Value> = serde_json::from_slice(value)
        .map_err(|e| format!("setting {SIGNING_KEYS_SETTING} is not a JSON array: {e}"))?;
    let mut keys = Vec::with_capacity(entries.len());
    for entry in entries {
        let text = entry
            .get("verifier_key")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("setting {SIGNING_KEYS_SETTING}: an entry has no verifier_key"))?;
        keys.push(text.parse().map_err(|e| format!("setting {SIGNING_KEYS_SETTING}: {e}"))?);
    }
    Ok(keys)
}
