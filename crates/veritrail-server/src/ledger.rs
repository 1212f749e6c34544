//! The tenant ledgers seen from the server: the checkpoint signer and its keys, issuing
//! checkpoints (periodically, on demand, at shutdown) with a consistency self-check against the
//! previous checkpoint, and proof generation over the store's stored subtree hashes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use veritrail_ledger::checkpoint::{Checkpoint, sign_checkpoint};
use veritrail_ledger::hash::Hash;
use veritrail_ledger::note::{NoteSigner, VerifierKey};
use veritrail_ledger::tree::{self, NodeSource, ProofError};
use veritrail_store::{Store, StoredCheckpoint, TreeHead};

use crate::AppState;
use crate::audit::{self, RequestContext};
use crate::error::{ApiError, Code};
use crate::ids;

/// Store setting holding every signing key ever used (see docs/ledger-formats.md).
const SIGNING_KEYS_SETTING: &str = "ledger.signing_keys";

/// One entry of the `ledger.signing_keys` setting.
#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct SigningKeyEntry {
    verifier_key: String,
    seed: String,
    created_at: String,
    retired_at: Option<String>,
}

/// The checkpoint signer and the verifier keys of every key ever used.
pub(crate) struct LedgerKeys {
    pub(crate) signer: NoteSigner,
    pub(crate) current: VerifierKey,
    pub(crate) all: Vec<(VerifierKey, String, Option<String>)>,
}

impl LedgerKeys {
    /// Loads the signing keys, generating the first one on first start.
    pub(crate) async fn load(store: &dyn Store, key_name: &str) -> Result<LedgerKeys, ApiError> {
        let (entry, _) = new_entry(store, key_name)?;
        let initial = serde_json::to_vec(&vec![entry]).map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
        let stored = store.init_setting(SIGNING_KEYS_SETTING, initial).await?;
        // Seeds stored in clear (before sealing existed) or under a previous master key are
        // sealed again under the current one; the verifier keys stay readable for verifiers.
        let mut entries = parse_entries(&stored)?;
        if reseal_seeds(store, &mut entries)? {
            let updated = serde_json::to_vec(&entries).map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
            if store.swap_setting(SIGNING_KEYS_SETTING, stored.clone(), updated.clone()).await? {
                return LedgerKeys::parse(store, &updated);
            }
        }
        LedgerKeys::parse(store, &stored)
    }

    /// Retires the current key and makes a new one current; old checkpoints stay verifiable
    /// with the retired keys, which remain published.
    pub(crate) async fn rotate(store: &dyn Store, key_name: &str) -> Result<LedgerKeys, ApiError> {
        for _ in 0..5 {
            let current = store
                .setting(SIGNING_KEYS_SETTING)
                .await?
                .ok_or_else(|| ApiError::new(Code::Internal, "no ledger signing keys stored"))?;
            let mut entries = parse_entries(&current)?;
            let now = Timestamp::now().to_string();
            for entry in &mut entries {
                if entry.retired_at.is_none() {
                    entry.retired_at = Some(now.clone());
                }
            }
            entries.push(new_entry(store, key_name)?.0);
            let updated = serde_json::to_vec(&entries).map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
            if store.swap_setting(SIGNING_KEYS_SETTING, current, updated.clone()).await? {
                return LedgerKeys::parse(store, &updated);
            }
        }
        Err(ApiError::new(Code::Unavailable, "signing keys changed concurrently; retry"))
    }

    fn parse(store: &dyn Store, stored: &[u8]) -> Result<LedgerKeys, ApiError> {
        let entries = parse_entries(stored)?;
        let damaged = |what: &str| ApiError::new(Code::Internal, format!("stored ledger signing key: {what}"));
        let mut all = Vec::new();
        let mut signer = None;
        for entry in &entries {
            let key: VerifierKey = entry.verifier_key.parse().map_err(|_| damaged("bad verifier key"))?;
            if entry.retired_at.is_none() {
                let seed = open_seed(store, &entry.seed)?.ok_or_else(|| damaged("bad seed"))?;
                let candidate = NoteSigner::from_seed(key.name(), seed).map_err(|_| damaged("bad seed"))?;
                if candidate.verifier_key().to_string() != entry.verifier_key {
                    return Err(damaged("seed does not match its verifier key"));
                }
                signer = Some(candidate);
            }
            all.push((key, entry.created_at.clone(), entry.retired_at.clone()));
        }
        let signer = signer.ok_or_else(|| damaged("no current key"))?;
        Ok(LedgerKeys { current: signer.verifier_key(), signer, all })
    }
}

fn parse_entries(stored: &[u8]) -> Result<Vec<SigningKeyEntry>, ApiError> {
    serde_json::from_slice(stored)
        .map_err(|e| ApiError::new(Code::Internal, format!("stored ledger signing keys are damaged: {e}")))
}

/// What a signing-key seed is sealed against (the setting's name).
const SEED_CONTEXT: &str = SIGNING_KEYS_SETTING;

/// A stored seed: sealed under the master key, or (written before sealing) base64 in clear.
fn open_seed(store: &dyn Store, text: &str) -> Result<Option<[u8; 32]>, ApiError> {
    let bytes = match store.privacy().open_secret(SEED_CONTEXT, text)? {
        Some(clear) => clear.to_vec(),
        None => match STANDARD.decode(text) {
            Ok(bytes) => bytes,
            Err(_) => return Ok(None),
        },
    };
    Ok(bytes.try_into().ok())
}

/// Seals every seed not sealed under the current master key; true when one changed.
fn reseal_seeds(store: &dyn Store, entries: &mut [SigningKeyEntry]) -> Result<bool, ApiError> {
    let privacy = store.privacy();
    let mut changed = false;
    for entry in entries.iter_mut().filter(|entry| !privacy.secret_is_current(&entry.seed)) {
        let seed = open_seed(store, &entry.seed)?
            .ok_or_else(|| ApiError::new(Code::Internal, "stored ledger signing key: bad seed"))?;
        entry.seed = privacy.seal_secret(SEED_CONTEXT, &seed)?;
        changed = true;
    }
    Ok(changed)
}

/// A fresh random signing key as a setting entry, its seed sealed under the master key.
fn new_entry(store: &dyn Store, key_name: &str) -> Result<(SigningKeyEntry, NoteSigner), ApiError> {
    let seed: [u8; 32] = ids::random_bytes()?;
    let signer = NoteSigner::from_seed(key_name, seed)
        .map_err(|e| ApiError::new(Code::Internal, format!("invalid ledger key name {key_name:?}: {e}")))?;
    let entry = SigningKeyEntry {
        verifier_key: signer.verifier_key().to_string(),
        seed: store.privacy().seal_secret(SEED_CONTEXT, &seed)?,
        created_at: Timestamp::now().to_string(),
        retired_at: None,
    };
    Ok((entry, signer))
}

/// Ledger state shared by handlers and the checkpointer.
pub(crate) struct Ledger {
    keys: std::sync::RwLock<std::sync::Arc<LedgerKeys>>,
    /// `<server origin>`; a tenant's checkpoint origin is `<server origin>/<tenant>`.
    pub(crate) origin: String,
    /// Serialises issuing and key rotation, so two checkpoints of one size are never signed
    /// differently.
    issuing: tokio::sync::Mutex<()>,
    /// Tenants whose self-check failed: no further checkpoint is signed for them.
    failed: std::sync::Mutex<HashSet<String>>,
    /// The newest checkpoint known per tenant: signed here, served before its write reaches the
    /// store (it is a valid signed statement about already durable records either way), or found
    /// stored at the tree's current size.
    latest: std::sync::Mutex<HashMap<String, StoredCheckpoint>>,
}

impl Ledger {
    pub(crate) fn new(keys: LedgerKeys, origin: String) -> Ledger {
        Ledger {
            keys: std::sync::RwLock::new(std::sync::Arc::new(keys)),
            origin,
            issuing: tokio::sync::Mutex::new(()),
            failed: Default::default(),
            latest: Default::default(),
        }
    }

    /// The current signer and all published keys.
    pub(crate) fn keys(&self) -> std::sync::Arc<LedgerKeys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Rotates the signing key (see [`LedgerKeys::rotate`]); checkpoints signed afterwards use
    /// the new key.
    pub(crate) async fn rotate(&self, store: &dyn Store) -> Result<std::sync::Arc<LedgerKeys>, ApiError> {
        let _issuing = self.issuing.lock().await;
        let name = self.keys().current.name().to_string();
        let rotated = std::sync::Arc::new(LedgerKeys::rotate(store, &name).await?);
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = rotated.clone();
        Ok(rotated)
    }

    /// The checkpoint origin of a tenant.
    pub(crate) fn tenant_origin(&self, tenant: &str) -> String {
        format!("{}/{tenant}", self.origin)
    }

    /// The tree size of the newest checkpoint known here for the tenant (signed by this
    /// process, or found stored at the current size): the ledger has at least that many records.
    pub(crate) fn checkpointed_size(&self, tenant: &str) -> Option<u64> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).get(tenant).map(|checkpoint| checkpoint.size)
    }

    /// Keeps `checkpoint` as the tenant's newest known, unless a newer one is known already.
    fn remember(&self, tenant: &str, checkpoint: &StoredCheckpoint) {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if latest.get(tenant).is_none_or(|known| known.size < checkpoint.size) {
            latest.insert(tenant.to_string(), checkpoint.clone());
        }
    }
}

/// Signs and stores a checkpoint of the tenant's current tree if it grew since the last one
/// (returns the latest otherwise). Before signing, proves the new tree consistent with the last
/// checkpoint; a failure means storage changed underneath the server: it records
/// `audit.control.failed` and refuses to sign.
pub(crate) async fn issue_checkpoint(state: &AppState, tenant: &str) -> Result<StoredCheckpoint, ApiError> {
    issue_checkpoint_at(state, tenant, None).await
}

/// [`issue_checkpoint`] for a tree head already read (`None`: read it now, under the lock).
async fn issue_checkpoint_at(
    state: &AppState,
    tenant: &str,
    head: Option<TreeHead>,
) -> Result<StoredCheckpoint, ApiError> {
    let ledger = &state.ledger;
    if ledger.failed.lock().unwrap_or_else(|p| p.into_inner()).contains(tenant) {
        return Err(ApiError::new(
            Code::Internal,
            "ledger self-check failed earlier; no checkpoint is signed until resolved",
        ));
    }
    let issuing = ledger.issuing.lock().await;
    let mut head = match head {
        Some(head) => head,
        None => state.store.tree_head(tenant).await?,
    };
    // The latest checkpoint this process signed is in memory; storage is asked only once.
    let signed = ledger.latest.lock().unwrap_or_else(|p| p.into_inner()).get(tenant).cloned();
    let previous = match signed {
        Some(signed) => Some(signed),
        None => state.store.latest_checkpoint(tenant).await?,
    };
    // A head read before the lock (the checkpointer's pass), or before another node sharing the
    // store signed a newer one, can be stale: read it again before calling the ledger shorter
    // than its last checkpoint.
    if let Some(previous) = &previous
        && previous.size > head.size
    {
        head = state.store.tree_head(tenant).await?;
    }
    if let Some(previous) = &previous
        && previous.size == head.size
    {
        if previous.root != head.root {
            drop(issuing);
            return Err(control_failed(state, tenant, previous.size, "root at an already signed size changed").await);
        }
        // After a restart the tree may not grow for a while: without this, every pass of the
        // checkpointer would read the stored checkpoint again, and every proof the tree size.
        ledger.remember(tenant, previous);
        return Ok(previous.clone());
    }
    if let Some(previous) = &previous {
        if previous.size > head.size {
            drop(issuing);
            return Err(
                control_failed(state, tenant, previous.size, "ledger is shorter than its last checkpoint").await
            );
        }
        let proof = consistency_proof(state, tenant, previous.size, head.size).await?;
        let consistent =
            tree::verify_consistency(previous.size, head.size, &proof, &Hash(previous.root), &Hash(head.root));
        if consistent.is_err() {
            drop(issuing);
            return Err(control_failed(
                state,
                tenant,
                previous.size,
                "ledger is not an extension of its last checkpoint",
            )
            .await);
        }
    }
    let checkpoint = Checkpoint::new(ledger.tenant_origin(tenant), head.size, Hash(head.root));
    let note = sign_checkpoint(&checkpoint, &ledger.keys().signer)
        .map_err(|e| ApiError::new(Code::Internal, format!("cannot sign checkpoint: {e}")))?;
    let stored = StoredCheckpoint { size: head.size, root: head.root, note, created_at: Timestamp::now() };
    ledger.latest.lock().unwrap_or_else(|p| p.into_inner()).insert(tenant.to_string(), stored.clone());
    state.metrics.checkpoints_signed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    state.store.add_checkpoint(tenant, stored.clone()).await?;
    if let Some(witness) = &state.witness {
        witness.submit(tenant, &stored);
    }
    Ok(stored)
}

async fn control_failed(state: &AppState, tenant: &str, checkpoint_size: u64, what: &str) -> ApiError {
    tracing::error!(tenant, checkpoint_size, problem = what, "ledger self-check failed");
    state.metrics.self_check_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    state.ledger.failed.lock().unwrap_or_else(|p| p.into_inner()).insert(tenant.to_string());
    let actor = json!({"id": "veritrail", "type": "system", "name": "ledger self-check"});
    let metadata = json!({"control": "ledger.consistency", "checkpoint_size": checkpoint_size, "problem": what});
    let request = RequestContext { endpoint: "internal checkpointer".into(), ..RequestContext::default() };
    if let Err(error) = audit::record(state, tenant, "audit.control.failed", actor, metadata, &request).await {
        tracing::error!(tenant, error = %error.message, "cannot record audit.control.failed");
    }
    ApiError::new(Code::Internal, format!("ledger self-check failed: {what}"))
}

/// The latest checkpoint, issuing one first if none exists or it does not cover `seq`.
pub(crate) async fn checkpoint_covering(
    state: &AppState,
    tenant: &str,
    seq: Option<u64>,
) -> Result<StoredCheckpoint, ApiError> {
    let signed = state.ledger.latest.lock().unwrap_or_else(|p| p.into_inner()).get(tenant).cloned();
    if let Some(latest) = signed
        && seq.is_none_or(|seq| seq < latest.size)
    {
        return Ok(latest);
    }
    if let Some(latest) = state.store.latest_checkpoint(tenant).await?
        && seq.is_none_or(|seq| seq < latest.size)
    {
        return Ok(latest);
    }
    issue_checkpoint(state, tenant).await
}

/// Records the `(level, index)` a proof generator asks for, answering with placeholders: the
/// nodes a proof needs depend only on sizes and indexes, never on hash values.
struct Recorder(std::sync::Mutex<Vec<(u32, u64)>>);

impl NodeSource for Recorder {
    type Error = String;
    fn perfect_subtree(&self, level: u32, index: u64) -> Result<Hash, String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push((level, index));
        Ok(Hash([0; 32]))
    }
}

/// Answers from hashes fetched in one batch.
struct Fetched(HashMap<(u32, u64), Hash>);

impl NodeSource for Fetched {
    type Error = String;
    fn perfect_subtree(&self, level: u32, index: u64) -> Result<Hash, String> {
        self.0.get(&(level, index)).copied().ok_or_else(|| format!("node ({level}, {index}) was not fetched"))
    }
}

/// Runs a proof generator twice: once to learn which nodes it needs, then over those nodes
/// fetched from the store in a single read.
async fn prove<F>(state: &AppState, tenant: &str, generate: F) -> Result<Vec<Hash>, ApiError>
where
    F: Fn(&dyn NodeSource<Error = String>) -> Result<Vec<Hash>, ProofError<String>>,
{
    let recorder = Recorder(std::sync::Mutex::new(Vec::new()));
    generate(&recorder).map_err(proof_error)?;
    let nodes = recorder.0.into_inner().unwrap_or_else(|p| p.into_inner());
    let hashes = state.store.subtree_hashes(tenant, nodes.clone()).await?;
    let fetched = Fetched(nodes.into_iter().zip(hashes.into_iter().map(Hash)).collect());
    generate(&fetched).map_err(proof_error)
}

fn proof_error(error: ProofError<String>) -> ApiError {
    match error {
        ProofError::Source(why) => {
            tracing::error!(%why, "proof generation failed");
            ApiError::new(Code::Internal, "stored tree is incomplete")
        }
        other => ApiError::new(Code::InvalidQuery, other.to_string()),
    }
}

/// RFC 9162 inclusion proof of `seq` in the tree of `tree_size`.
pub(crate) async fn inclusion_proof(
    state: &AppState,
    tenant: &str,
    seq: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ApiError> {
    prove(state, tenant, |source| tree::inclusion_proof(seq, tree_size, source)).await
}

/// RFC 9162 consistency proof between two tree sizes.
pub(crate) async fn consistency_proof(
    state: &AppState,
    tenant: &str,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, ApiError> {
    prove(state, tenant, |source| tree::consistency_proof(first, second, source)).await
}

/// Base64 of each hash, as proofs are sent.
pub(crate) fn encode_hashes(hashes: &[Hash]) -> Vec<Value> {
    hashes.iter().map(|hash| Value::String(hash.to_base64())).collect()
}

/// Issues checkpoints for every tenant whose tree grew, every `interval`, until `shutdown`;
/// then once more, so a graceful stop leaves every record covered by a signed checkpoint.
pub(crate) async fn run_checkpointer(state: AppState, interval: Duration, shutdown: CancellationToken) {
    // Start to start, so an event waits at most one interval plus one signing for its checkpoint.
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        checkpoint_all(&state).await;
    }
}

/// One pass of the checkpointer over every tenant.
///
/// Few round trips, since under full ingest load each waits for a core: the heads of all tenants
/// come in one call (from memory where the store keeps them), the previous checkpoint from
/// memory, and only the consistency proof of a grown tree reads storage.
pub(crate) async fn checkpoint_all(state: &AppState) {
    let heads = match state.store.tree_heads().await {
        Ok(heads) => heads,
        Err(error) => {
            tracing::warn!(%error, "checkpointer cannot read tree heads");
            return;
        }
    };
    for (tenant, head) in heads {
        let signed = state.ledger.latest.lock().unwrap_or_else(|p| p.into_inner()).get(&tenant).map(|c| c.size);
        if signed == Some(head.size) {
            continue;
        }
        if let Err(error) = issue_checkpoint_at(state, &tenant, Some(head)).await
            && error.code != Code::Internal
        {
            tracing::warn!(%tenant, error = %error.message, "checkpoint not issued");
        }
    }
}
