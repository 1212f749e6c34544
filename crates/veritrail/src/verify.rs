//! `veritrail verify`: checks a ledger the way an outside auditor would, in one of three modes.
//!
//! - `--bundle FILE --key KEY`: an exported ledger bundle, offline, trusting only `KEY`
//!   (docs/ledger-formats.md, "Ledger bundle").
//! - `--data-dir DIR`: every ledger of a local data directory, read-only
//!   ([`veritrail_store_sqlite::verify`]).
//! - `--url URL --token TOKEN`: a running server, like a Certificate Transparency monitor: the
//!   latest checkpoint, its consistency with the one verified last time (`--state`), and
//!   inclusion proofs of a few random records. The result is reported back to the server, which
//!   records it in the ledger.
//!
//! In the first two modes every RFC 3161 checkpoint time-stamp is checked against the exact bytes
//! of its checkpoint (and, with `--tsa-ca`, must chain to one of those CAs); checkpoints without
//! one are fine, the summary says how many were time-stamped.
//!
//! Output: one line on stdout, `ok: ...` (exit 0) or `FAILED: <where>: <what>` (exit 1), e.g.
//! `FAILED: tenant tn_x: seq 41: leaf hash mismatch (stored ..., computed ...)`. When the
//! verification cannot be carried out at all (unreadable file, server unreachable), `error: ...`
//! on stderr and exit 2.

use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use veritrail_ledger::checkpoint::{Checkpoint, open_checkpoint};
use veritrail_ledger::hash::{Hash, leaf_hash};
use veritrail_ledger::note::VerifierKey;
use veritrail_ledger::tree::{Frontier, verify_consistency, verify_inclusion};
use veritrail_store_sqlite::verify::{
    Report, SealedHead, VerifyError, VerifyOptions, is_origin_of, read_sealed_head, verify_data_dir_with,
};
use veritrail_tsa::{Expected, TrustAnchors, VerifiedTimestamp};

/// The `format` of a ledger bundle's header line.
const BUNDLE_FORMAT: &str = "veritrail.ledger-bundle.v1";
/// Longest line accepted in a bundle: 1 MiB (events are at most 64 KiB).
const MAX_LINE_BYTES: u64 = 1 << 20;
/// Largest HTTP response body read in monitor mode.
const MAX_RESPONSE_BYTES: u64 = 16 << 20;

/// Arguments of `veritrail verify`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["bundle", "data_dir", "url"])))]
pub struct VerifyArgs {
    /// Verify an exported ledger bundle (`GET /v1/export?format=ledger`) offline; needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    bundle: Option<PathBuf>,
    /// The trusted verifier key `<name>+<id>+<key>` (from `GET /v1/ledger/key`), or `@FILE` to
    /// read it from a file. With --data-dir, checkpoints must verify with it rather than with the
    /// keys the data directory lists itself.
    #[arg(long, value_name = "VERIFIER_KEY")]
    key: Option<String>,
    /// Verify every ledger of a local data directory, read-only (the server may be running).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Monitor a running server, e.g. `http://127.0.0.1:8080`; needs --token.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// API key of the tenant to monitor (scope `events:read`).
    #[arg(long, value_name = "TOKEN", env = "VERITRAIL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File keeping the last verified checkpoint (and the verifier key trusted on first use)
    /// between --url runs.
    #[arg(long, value_name = "FILE", requires = "url")]
    state: Option<PathBuf>,
    /// Records whose inclusion proofs are checked in --url mode, picked at random.
    #[arg(long, value_name = "N", default_value_t = 8)]
    samples: u64,
    /// PEM file of CA certificates: with --bundle or --data-dir, every checkpoint time-stamp must
    /// chain to one of them (without it, any TSA certificate fit for time stamping is accepted).
    #[arg(long, value_name = "FILE", conflicts_with = "url")]
    tsa_ca: Option<PathBuf>,
    /// With --data-dir: a checkpoint published before (the signed note of `GET
    /// /v1/ledger/checkpoint`, e.g. the last one a monitor saw; repeat for several tenants). The
    /// ledger must contain it root for root — check a restored backup with it before serving.
    #[arg(long, value_name = "FILE", requires = "data_dir")]
    checkpoint: Vec<PathBuf>,
}

/// What a verification concluded.
enum Verdict {
    /// Everything checked out: a one-line summary.
    Verified(String),
    /// The first problem found.
    Failed(String),
}

/// Runs `veritrail verify`; the exit code is 0 (verified), 1 (failed) or 2 (could not verify).
pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    let verdict = if let Some(path) = &args.bundle {
        trusted_key(args.key.as_deref())
            .and_then(|key| Ok((key, tsa_anchors(args.tsa_ca.as_deref())?)))
            .and_then(|(key, anchors)| verify_bundle(path, &key, anchors.as_ref()))
    } else if let Some(dir) = &args.data_dir {
        tsa_anchors(args.tsa_ca.as_deref())
            .and_then(|anchors| verify_dir(dir, args.key.as_deref(), anchors.as_ref(), &args.checkpoint))
    } else if let Some(url) = &args.url {
        monitor(url, &args)
    } else {
        Err(anyhow::anyhow!("give one of --bundle, --data-dir or --url"))
    };
    Ok(match verdict {
        Ok(Verdict::Verified(summary)) => {
            println!("ok: {summary}");
            ExitCode::SUCCESS
        }
        Ok(Verdict::Failed(problem)) => {
            println!("FAILED: {problem}");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    })
}

/// `--key`: the key itself, or `@FILE`.
fn trusted_key(arg: Option<&str>) -> Result<VerifierKey> {
    let Some(arg) = arg else {
        bail!("--key is required");
    };
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read --key file {path}"))?,
        None => arg.to_string(),
    };
    text.trim().parse().with_context(|| format!("invalid verifier key {:?}", text.trim()))
}

/// `--tsa-ca`: the CA certificates time-stamps must chain to.
fn tsa_anchors(path: Option<&Path>) -> Result<Option<TrustAnchors>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let pem = std::fs::read(path).with_context(|| format!("cannot read --tsa-ca file {}", path.display()))?;
    let anchors = TrustAnchors::from_pem(&pem).with_context(|| format!("--tsa-ca file {}", path.display()))?;
    Ok(Some(anchors))
}

/// `, the latest (size 90) at <genTime> by <TSA>`, or nothing.
fn latest_timestamp(latest: Option<(u64, &VerifiedTimestampSummary)>) -> String {
    let Some((size, latest)) = latest else {
        return String::new();
    };
    let chained = if latest.chained { " (chained to --tsa-ca)" } else { "" };
    format!(", the latest (size {size}) at {} by {}{chained}", latest.gen_time, latest.tsa)
}

/// What a summary says of a time-stamp.
struct VerifiedTimestampSummary {
    gen_time: jiff::Timestamp,
    tsa: String,
    chained: bool,
}

impl From<&VerifiedTimestamp> for VerifiedTimestampSummary {
    fn from(verified: &VerifiedTimestamp) -> Self {
        Self { gen_time: verified.gen_time, tsa: verified.signer.clone(), chained: verified.chained }
    }
}

// --- --bundle ----------------------------------------------------------------------------------

/// Line 1 of a ledger bundle.
#[derive(Deserialize)]
struct BundleHeader {
    format: String,
    tenant: String,
    origin: String,
    tree_size: u64,
    root: String,
    checkpoint: String,
    /// Time-stamped checkpoints of prefixes of the bundle, oldest first (absent in bundles made
    /// before time-stamps existed).
    #[serde(default)]
    timestamps: Vec<BundleTimestamp>,
}

/// One entry of a bundle header's `timestamps`.
#[derive(Deserialize)]
struct BundleTimestamp {
    tree_size: u64,
    checkpoint: String,
    /// Base64 of the DER `TimeStampResp`.
    timestamp: String,
}

/// A bundle time-stamp whose checkpoint and token verified; its root is compared with the
/// bundle's records once they reach its size.
struct PendingTimestamp {
    size: u64,
    root: Hash,
    verified: VerifiedTimestamp,
}

/// Verifies the header's time-stamp entries on their own (checkpoint signature, origin, token
/// against the exact note bytes); `Err(problem)` names the checkpoint size at fault.
fn check_bundle_timestamps(
    header: &BundleHeader,
    key: &VerifierKey,
    anchors: Option<&TrustAnchors>,
) -> Result<Vec<PendingTimestamp>, String> {
    use base64::Engine;
    let mut pending: Vec<PendingTimestamp> = Vec::with_capacity(header.timestamps.len());
    for entry in &header.timestamps {
        let size = entry.tree_size;
        let at = |problem: String| format!("checkpoint at size {size}: {problem}");
        if pending.last().is_some_and(|last| last.size >= size) {
            return Err(at("time-stamps are not in increasing size order".into()));
        }
        if size > header.tree_size {
            return Err(at(format!("beyond the bundle's {} records", header.tree_size)));
        }
        let checkpoint = open_checkpoint(&entry.checkpoint, std::slice::from_ref(key))
            .map_err(|e| at(format!("the time-stamped checkpoint does not verify: {e}")))?;
        if checkpoint.origin != header.origin || checkpoint.size != size {
            return Err(at(format!(
                "the time-stamped checkpoint is for {} at size {}",
                checkpoint.origin, checkpoint.size
            )));
        }
        let response = base64::engine::general_purpose::STANDARD
            .decode(&entry.timestamp)
            .map_err(|e| at(format!("time-stamp is not base64: {e}")))?;
        let expected = Expected { message: entry.checkpoint.as_bytes(), nonce: None, trust: anchors };
        let verified = veritrail_tsa::verify_response(&response, &expected)
            .map_err(|e| at(format!("time-stamp does not verify: {e}")))?;
        pending.push(PendingTimestamp { size, root: checkpoint.root, verified });
    }
    Ok(pending)
}

/// Verifies a bundle as docs/ledger-formats.md prescribes, streaming it line by line.
fn verify_bundle(path: &Path, key: &VerifierKey, anchors: Option<&TrustAnchors>) -> Result<Verdict> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut lines = Lines::new(BufReader::with_capacity(1 << 20, file));

    let header = match lines.next()? {
        Line::Complete(line) => line,
        Line::End => return Ok(Verdict::Failed("the bundle is empty".into())),
        Line::Broken(problem) => return Ok(Verdict::Failed(format!("bundle header: {problem}"))),
    };
    let header: BundleHeader = match serde_json::from_slice(header) {
        Ok(header) => header,
        Err(e) => return Ok(Verdict::Failed(format!("bundle header is not valid: {e}"))),
    };
    if header.format != BUNDLE_FORMAT {
        return Ok(Verdict::Failed(format!("bundle format is {:?}, not {BUNDLE_FORMAT:?}", header.format)));
    }
    let tenant = header.tenant.as_str();
    let checkpoint = match open_checkpoint(&header.checkpoint, std::slice::from_ref(key)) {
        Ok(checkpoint) => checkpoint,
        Err(e) => return Ok(Verdict::Failed(format!("tenant {tenant}: the bundle's checkpoint does not verify: {e}"))),
    };
    if let Some(problem) = header_mismatch(&header, &checkpoint) {
        return Ok(Verdict::Failed(format!("tenant {tenant}: {problem}")));
    }
    let timestamps = match check_bundle_timestamps(&header, key, anchors) {
        Ok(timestamps) => timestamps,
        Err(problem) => return Ok(Verdict::Failed(format!("tenant {tenant}: {problem}"))),
    };
    let mut unreached = timestamps.iter().peekable();

    let size = checkpoint.size;
    let mut frontier = Frontier::new();
    for seq in 0..=size {
        // The records so far are the tree of every time-stamped checkpoint of this size.
        while let Some(timestamp) = unreached.next_if(|t| t.size == seq) {
            if frontier.root() != timestamp.root {
                let problem = format!(
                    "checkpoint at size {seq}: the time-stamped root {} is not the root of the bundle's first {seq} \
                     records: a record was altered",
                    timestamp.root.to_base64()
                );
                return Ok(Verdict::Failed(format!("tenant {tenant}: {problem}")));
            }
        }
        if seq == size {
            break;
        }
        let record = match lines.next()? {
            Line::Complete(line) => line,
            Line::End => {
                let problem = format!("missing (the bundle ends after {seq} records, its checkpoint has {size})");
                return Ok(Verdict::Failed(format!("tenant {tenant}: seq {seq}: {problem}")));
            }
            Line::Broken(problem) => return Ok(Verdict::Failed(format!("tenant {tenant}: seq {seq}: {problem}"))),
        };
        if let Some(problem) = record_mismatch(record, seq, tenant) {
            return Ok(Verdict::Failed(format!("tenant {tenant}: seq {seq}: {problem}")));
        }
        frontier.push_with(leaf_hash(record), |_| {})?;
    }
    if !matches!(lines.next()?, Line::End) {
        return Ok(Verdict::Failed(format!(
            "tenant {tenant}: the bundle has more than the checkpoint's {size} records"
        )));
    }
    let root = frontier.root();
    if root != checkpoint.root {
        let (computed, signed) = (root.to_base64(), checkpoint.root.to_base64());
        let problem = format!("root mismatch (computed {computed}, signed {signed}): a record was altered");
        return Ok(Verdict::Failed(format!("tenant {tenant}: {problem}")));
    }
    let latest = timestamps.last().map(|t| (t.size, VerifiedTimestampSummary::from(&t.verified)));
    Ok(Verdict::Verified(format!(
        "bundle of tenant {tenant}: {size} records, root {} signed by {}; {} time-stamped checkpoints{}",
        root.to_base64(),
        key.name(),
        timestamps.len(),
        latest_timestamp(latest.as_ref().map(|(size, summary)| (*size, summary)))
    )))
}

/// What the header says that its (verified) checkpoint does not.
fn header_mismatch(header: &BundleHeader, checkpoint: &Checkpoint) -> Option<String> {
    if !is_origin_of(&checkpoint.origin, &header.tenant) {
        return Some(format!("checkpoint origin {} is not of this tenant", checkpoint.origin));
    }
    if header.origin != checkpoint.origin {
        return Some(format!("header origin {} differs from the checkpoint's {}", header.origin, checkpoint.origin));
    }
    if header.tree_size != checkpoint.size {
        return Some(format!(
            "header tree_size {} differs from the checkpoint's {}",
            header.tree_size, checkpoint.size
        ));
    }
    if header.root != checkpoint.root.to_base64() {
        return Some(format!(
            "header root {} differs from the checkpoint's {}",
            header.root,
            checkpoint.root.to_base64()
        ));
    }
    None
}

/// What is wrong with a sealed record expected at `seq` of `tenant`, if anything.
fn record_mismatch(record: &[u8], seq: u64, tenant: &str) -> Option<String> {
    match read_sealed_head(record) {
        Err(e) => Some(e.to_string()),
        Ok(SealedHead { seq: claimed, .. }) if claimed != seq => Some(format!("record claims seq {claimed}")),
        Ok(SealedHead { tenant: claimed, .. }) if claimed != tenant => Some(format!("record claims tenant {claimed}")),
        Ok(_) => None,
    }
}

/// Newline-terminated lines of at most [`MAX_LINE_BYTES`], read into one reused buffer.
struct Lines<R> {
    reader: R,
    buffer: Vec<u8>,
}

/// What [`Lines::next`] read.
enum Line<'a> {
    /// A line, without its newline.
    Complete(&'a [u8]),
    /// Not a complete line: why.
    Broken(&'static str),
    End,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R) -> Self {
        Self { reader, buffer: Vec::new() }
    }

    fn next(&mut self) -> std::io::Result<Line<'_>> {
        self.buffer.clear();
        let read = (&mut self.reader).take(MAX_LINE_BYTES + 1).read_until(b'\n', &mut self.buffer)?;
        Ok(match self.buffer.strip_suffix(b"\n") {
            Some(line) => Line::Complete(line),
            None if read == 0 => Line::End,
            None if read as u64 > MAX_LINE_BYTES => Line::Broken("line longer than 1 MiB"),
            None => Line::Broken("truncated (no final newline)"),
        })
    }
}

// --- --data-dir --------------------------------------------------------------------------------

fn verify_dir(dir: &Path, key: Option<&str>, anchors: Option<&TrustAnchors>, published: &[PathBuf]) -> Result<Verdict> {
    let trusted = key.map(|key| trusted_key(Some(key))).transpose()?;
    let started = Instant::now();
    let published = published
        .iter()
        .map(|path| {
            std::fs::read_to_string(path).with_context(|| format!("cannot read --checkpoint {}", path.display()))
        })
        .collect::<Result<Vec<String>>>()?;
    let options = VerifyOptions {
        trusted_keys: trusted.as_ref().map(std::slice::from_ref),
        tsa_trust: anchors,
        published: &published,
    };
    let report = match verify_data_dir_with(dir, options) {
        Ok(report) => report,
        Err(VerifyError::Failed(failure)) => return Ok(Verdict::Failed(failure.to_string())),
        Err(error) => return Err(error.into()),
    };
    let mut summary = dir_summary(dir, &report, started.elapsed(), anchors.is_some());
    if !published.is_empty() {
        summary.push_str(&format!("; contains the {} published checkpoint(s) given", published.len()));
    }
    Ok(Verdict::Verified(summary))
}

/// `data dir D: 2 tenants, 5000 records, 7 checkpoints, 312 merkle nodes; 12 records not yet
/// covered by a checkpoint; 3 of 7 checkpoints time-stamped, the latest (size 4990) at T by TSA;
/// quick_check ok; records read from the file's pages; 0.01 s (500000 records/s)`.
fn dir_summary(dir: &Path, report: &Report, elapsed: Duration, chained: bool) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 { report.records() as f64 / seconds } else { 0.0 };
    let latest = report.latest_timestamp().map(|latest| {
        (latest.size, VerifiedTimestampSummary { gen_time: latest.gen_time, tsa: latest.tsa.clone(), chained })
    });
    let stamped = format!(
        "{} of {} checkpoints time-stamped{}",
        report.timestamps(),
        report.checkpoints(),
        latest_timestamp(latest.as_ref().map(|(size, summary)| (*size, summary)))
    );
    format!(
        "data dir {}: {} tenants, {} records, {} checkpoints, {} merkle nodes; {} records not yet covered by a \
         checkpoint; {stamped}; quick_check {}; records read {}; {seconds:.2} s ({rate:.0} records/s)",
        dir.display(),
        report.tenants.len(),
        report.records(),
        report.checkpoints(),
        report.merkle_nodes(),
        report.uncovered(),
        report.quick_check,
        if report.read_pages { "from the file's pages" } else { "through SQLite (the WAL holds frames)" },
    )
}

// --- --url -------------------------------------------------------------------------------------

/// What `--state` keeps between runs: the last verified checkpoint and the trusted key.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct MonitorState {
    origin: String,
    size: u64,
    root: String,
    verifier_key: String,
}

#[derive(Deserialize)]
struct ConsistencyProof {
    first: u64,
    second: u64,
    hashes: Vec<String>,
}

#[derive(Deserialize)]
struct InclusionProof {
    seq: u64,
    tree_size: u64,
    hashes: Vec<String>,
}

fn monitor(url: &str, args: &VerifyArgs) -> Result<Verdict> {
    let Some(token) = &args.token else {
        bail!("--url needs --token (or VERITRAIL_TOKEN)");
    };
    let pinned_key = args.key.as_deref().map(|key| trusted_key(Some(key))).transpose()?;
    let previous = match &args.state {
        Some(path) => read_state(path)?,
        None => None,
    };
    let mut monitor = Monitor { api: Api::new(url, token), checkpoint: None };
    let verdict = monitor.check(pinned_key, previous.as_ref(), args.samples)?;

    if let (Verdict::Verified(_), Some(path), Some((checkpoint, key))) = (&verdict, &args.state, &monitor.checkpoint) {
        let state = MonitorState {
            origin: checkpoint.origin.clone(),
            size: checkpoint.size,
            root: checkpoint.root.to_base64(),
            verifier_key: key.to_string(),
        };
        write_state(path, &state)?;
    }
    monitor.report(&verdict);
    Ok(verdict)
}

/// One monitoring run against a server.
struct Monitor {
    api: Api,
    /// The checkpoint verified in this run, with the key that verified it.
    checkpoint: Option<(Checkpoint, VerifierKey)>,
}

impl Monitor {
    fn check(
        &mut self,
        pinned_key: Option<VerifierKey>,
        previous: Option<&MonitorState>,
        samples: u64,
    ) -> Result<Verdict> {
        let served_key = String::from_utf8_lossy(&self.api.get("/v1/ledger/key")?).trim().to_string();
        let served_key: VerifierKey = match served_key.parse() {
            Ok(key) => key,
            Err(e) => return Ok(Verdict::Failed(format!("the server's verifier key {served_key:?} is invalid: {e}"))),
        };
        let first_use = pinned_key.is_none() && previous.is_none();
        let key = match (pinned_key, previous) {
            (Some(pinned), _) if pinned != served_key => {
                return Ok(Verdict::Failed(format!(
                    "the server's verifier key {served_key} is not the trusted {pinned}"
                )));
            }
            (Some(pinned), _) => pinned,
            (None, Some(previous)) if previous.verifier_key != served_key.to_string() => {
                return Ok(Verdict::Failed(format!(
                    "the server's verifier key changed since the last run (was {}, now {served_key}); if it was \
                     rotated (GET /v1/ledger/keys), rerun with --key to trust the new one",
                    previous.verifier_key
                )));
            }
            // Trust on first use, or the key trusted last time.
            (None, _) => served_key,
        };

        let note = String::from_utf8_lossy(&self.api.get("/v1/ledger/checkpoint")?).into_owned();
        let checkpoint = match open_checkpoint(&note, std::slice::from_ref(&key)) {
            Ok(checkpoint) => checkpoint,
            Err(e) => return Ok(Verdict::Failed(format!("the latest checkpoint does not verify: {e}"))),
        };
        let Some((_, tenant)) = checkpoint.origin.rsplit_once('/').filter(|(_, t)| is_origin_of(&checkpoint.origin, t))
        else {
            return Ok(Verdict::Failed(format!("checkpoint origin {} is not <server>/<tenant>", checkpoint.origin)));
        };
        let tenant = tenant.to_string();
        self.checkpoint = Some((checkpoint.clone(), key));

        let mut summary = format!("tenant {tenant}: checkpoint at size {} verified", checkpoint.size);
        if first_use {
            summary.push_str(" (verifier key trusted on first use)");
        }
        if let Some(previous) = previous {
            if let Some(problem) = self.check_consistency(previous, &checkpoint)? {
                return Ok(Verdict::Failed(format!("tenant {tenant}: {problem}")));
            }
            summary.push_str(&format!(", consistent with size {} verified before", previous.size));
        }
        let seqs = pick_samples(checkpoint.size, samples);
        for &seq in &seqs {
            if let Some(problem) = self.check_inclusion(seq, &tenant, &checkpoint)? {
                return Ok(Verdict::Failed(format!("tenant {tenant}: seq {seq}: {problem}")));
            }
        }
        summary.push_str(&format!(", {} sampled records included", seqs.len()));
        Ok(Verdict::Verified(summary))
    }

    /// Whether `checkpoint` extends the one verified last time; `Some(problem)` if not.
    fn check_consistency(&self, previous: &MonitorState, checkpoint: &Checkpoint) -> Result<Option<String>> {
        let forked = |detail: String| Ok(Some(format!("ledger forked or rolled back: {detail}")));
        if previous.origin != checkpoint.origin {
            return Ok(Some(format!(
                "origin {} differs from {} in the state file",
                checkpoint.origin, previous.origin
            )));
        }
        let previous_root =
            Hash::from_base64(&previous.root).with_context(|| format!("state file root {:?}", previous.root))?;
        let (first, second) = (previous.size, checkpoint.size);
        if second < first {
            return forked(format!("checkpoint size {second} is smaller than the size {first} verified before"));
        }
        if first == second || first == 0 {
            if first == second && previous_root != checkpoint.root {
                let (root, before) = (checkpoint.root.to_base64(), previous.root.as_str());
                return forked(format!("size {second} now has root {root}, verified before as {before}"));
            }
            return Ok(None);
        }
        let body = self.api.get(&format!("/v1/ledger/proof/consistency?first={first}&second={second}"))?;
        let proof: ConsistencyProof = match serde_json::from_slice(&body) {
            Ok(proof) => proof,
            Err(e) => return Ok(Some(format!("malformed consistency proof: {e}"))),
        };
        if (proof.first, proof.second) != (first, second) {
            return Ok(Some(format!(
                "asked a proof from {first} to {second}, got {} to {}",
                proof.first, proof.second
            )));
        }
        let hashes = match decode_hashes(&proof.hashes) {
            Ok(hashes) => hashes,
            Err(problem) => return Ok(Some(format!("malformed consistency proof: {problem}"))),
        };
        match verify_consistency(first, second, &hashes, &previous_root, &checkpoint.root) {
            Ok(()) => Ok(None),
            Err(e) => forked(format!("no valid consistency proof from size {first} to {second}: {e}")),
        }
    }

    /// Whether record `seq` as served is in the tree of `checkpoint`; `Some(problem)` if not.
    fn check_inclusion(&self, seq: u64, tenant: &str, checkpoint: &Checkpoint) -> Result<Option<String>> {
        let body = self.api.get(&format!("/v1/ledger/records?from={seq}&limit=1"))?;
        let Some(record) = body.split(|&byte| byte == b'\n').next().filter(|line| !line.is_empty()) else {
            return Ok(Some("the server returned no record".into()));
        };
        if let Some(problem) = record_mismatch(record, seq, tenant) {
            return Ok(Some(problem));
        }
        let size = checkpoint.size;
        let body = self.api.get(&format!("/v1/ledger/proof/inclusion?seq={seq}&tree_size={size}"))?;
        let proof: InclusionProof = match serde_json::from_slice(&body) {
            Ok(proof) => proof,
            Err(e) => return Ok(Some(format!("malformed inclusion proof: {e}"))),
        };
        if (proof.seq, proof.tree_size) != (seq, size) {
            return Ok(Some(format!(
                "asked a proof in size {size}, got seq {} in size {}",
                proof.seq, proof.tree_size
            )));
        }
        let hashes = match decode_hashes(&proof.hashes) {
            Ok(hashes) => hashes,
            Err(problem) => return Ok(Some(format!("malformed inclusion proof: {problem}"))),
        };
        match verify_inclusion(&leaf_hash(record), seq, size, &hashes, &checkpoint.root) {
            Ok(()) => Ok(None),
            Err(e) => Ok(Some(format!("not included in the checkpoint's tree: {e}"))),
        }
    }

    /// Reports the verdict to the server (`POST /v1/ledger/verifications`), which records it
    /// in the ledger. Not possible without a verified checkpoint to name; a refusal is only a
    /// warning: the verdict stands either way.
    fn report(&self, verdict: &Verdict) {
        let Some((checkpoint, _)) = &self.checkpoint else {
            return;
        };
        let (result, detail) = match verdict {
            Verdict::Verified(summary) => ("ok", summary),
            Verdict::Failed(problem) => ("failed", problem),
        };
        let body = serde_json::json!({
            "tree_size": checkpoint.size,
            "root": checkpoint.root.to_base64(),
            "result": result,
            "detail": detail,
        });
        if let Err(error) = self.api.post_json("/v1/ledger/verifications", &body) {
            eprintln!("warning: the server did not record the verification: {error:#}");
        }
    }
}

fn decode_hashes(hashes: &[String]) -> Result<Vec<Hash>, String> {
    let mut decoded = Vec::with_capacity(hashes.len());
    for hash in hashes {
        decoded.push(Hash::from_base64(hash).map_err(|e| format!("hash {hash:?}: {e}"))?);
    }
    Ok(decoded)
}

/// Up to `count` distinct random seqs below `size` (all of them if there are no more).
fn pick_samples(size: u64, count: u64) -> BTreeSet<u64> {
    if size <= count {
        return (0..size).collect();
    }
    // The standard library's randomly keyed hasher is random enough to pick samples.
    let random = RandomState::new();
    let mut picked = BTreeSet::new();
    let mut draw = 0u64;
    while (picked.len() as u64) < count {
        picked.insert(random.hash_one(draw) % size);
        draw += 1;
    }
    picked
}

fn read_state(path: &Path) -> Result<Option<MonitorState>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read state file {}", path.display())),
    };
    let state = serde_json::from_slice(&bytes).with_context(|| format!("invalid state file {}", path.display()))?;
    Ok(Some(state))
}

/// Replaces the state file atomically: a temporary file in the same directory, then a rename.
fn write_state(path: &Path, state: &MonitorState) -> Result<()> {
    let file_name = path.file_name().with_context(|| format!("state file {} has no file name", path.display()))?;
    let temporary = path.with_file_name(format!(".{}.tmp", file_name.to_string_lossy()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(state)?)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().with_context(|| format!("cannot write state file {}", path.display()))
}

/// A blocking client of the server's API with the tenant's token.
struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Api {
    fn new(base: &str, token: &str) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build();
        Self { base: base.trim_end_matches('/').to_string(), token: token.to_string(), agent: config.into() }
    }

    /// GET `path`; anything but a 2xx answer is an error.
    fn get(&self, path: &str) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let request = self.agent.get(&url).header("authorization", format!("Bearer {}", self.token));
        Self::body(request.call(), "GET", &url)
    }

    /// POST a JSON body to `path`; anything but a 2xx answer is an error.
    fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let request = self.agent.post(&url).header("authorization", format!("Bearer {}", self.token));
        Self::body(request.send_json(body), "POST", &url)
    }

    fn body(
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        method: &str,
        url: &str,
    ) -> Result<Vec<u8>> {
        let mut response = response.with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .with_context(|| format!("{method} {url}: cannot read the response"))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            bail!("{method} {url}: HTTP {}: {}", status.as_u16(), text.chars().take(300).collect::<String>().trim());
        }
        Ok(body)
    }
}
