//! Witnessing checkpoints with RFC 3161 time-stamps from a configured Time-Stamp Authority.
//!
//! The checkpointer hands every stored checkpoint to [`Witness::submit`], which only records it
//! as the tenant's newest waiting checkpoint (replacing an older one still waiting: the newer one
//! covers it), so signing and ingest are never delayed. A dispatcher task sends at most one
//! request per tenant per `interval` and at most [`MAX_IN_FLIGHT`] at a time. Each request is
//! `POST <tsa_url>` with a DER `TimeStampReq` over the SHA-256 of the exact signed note and a
//! random nonce; the answer is verified ([`veritrail_tsa::verify_response`]: status, signature,
//! imprint, nonce, time-stamping certificate, chain to the configured CA) before it is stored with
//! the checkpoint. Failures are retried with exponential backoff, logged and counted in `/metrics`,
//! never fatal. At start, each tenant's latest checkpoint is witnessed if it was not yet (e.g. the
//! one signed at the last shutdown).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use veritrail_store::{CheckpointTimestamp, StoredCheckpoint};
use veritrail_tsa::{Expected, TimestampRequest, TrustAnchors, TsaError, VerifiedTimestamp};

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::http_client::{HttpClient, HttpClientConfig, HttpClientError};
use crate::ids;

/// Requests to the TSA running at once.
const MAX_IN_FLIGHT: usize = 4;
/// Attempts per checkpoint before it is given up (a later checkpoint is tried anyway).
const ATTEMPTS: u32 = 5;
/// Wait before the first retry; doubled after each failure, at most [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Largest TSA answer read (a token with a certificate chain is a few kilobytes).
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// How long requests under way may finish once the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// RFC 3161 witnessing of checkpoints (`tsa_url` and friends).
#[derive(Debug, Clone)]
pub struct TsaConfig {
    /// The TSA, `http://host[:port]/path` or `https://…` (`VERITRAIL_TSA_URL`). An `https://`
    /// TSA's certificate is verified against the system's CA certificates plus
    /// `outbound_ca_file`. The address is the operator's choice, so private and loopback
    /// addresses are allowed (unlike webhooks').
    pub url: String,
    /// PEM CA certificates the TSA certificate must chain to (`tsa_ca_file`). Without them any
    /// TSA certificate fit for time stamping is accepted.
    pub ca_pem: Option<Vec<u8>>,
    /// Timeout of one request, answer included.
    pub timeout: Duration,
    /// At most one request per tenant per interval; the newest checkpoint waiting is sent.
    pub interval: Duration,
}

impl TsaConfig {
    /// A configuration for `url` with the default timeout (10 s) and interval (60 s).
    pub fn new(url: impl Into<String>) -> TsaConfig {
        TsaConfig { url: url.into(), ca_pem: None, timeout: Duration::from_secs(10), interval: Duration::from_secs(60) }
    }
}

/// Counters of the witness, for `/metrics`.
#[derive(Default)]
pub(crate) struct WitnessMetrics {
    /// Time-stamps verified and stored.
    pub(crate) stored: AtomicU64,
    /// Attempts that failed (transport, HTTP status, invalid answer).
    pub(crate) failures: AtomicU64,
    /// Checkpoints given up after every attempt failed.
    pub(crate) given_up: AtomicU64,
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("cannot reach the TSA: {0}")]
    Transport(String),
    #[error("the TSA answered HTTP {0}")]
    Status(StatusCode),
    #[error("the TSA did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot read the TSA answer: {0}")]
    Body(String),
    #[error("the TSA answer is not acceptable: {0}")]
    Invalid(#[from] TsaError),
    #[error("{0}")]
    Local(String),
}

/// The TSA client and the checkpoints waiting for it.
pub(crate) struct Witness {
    url: String,
    anchors: Option<TrustAnchors>,
    timeout: Duration,
    interval: Duration,
    client: HttpClient,
    /// The newest checkpoint per tenant whose request has not started.
    pending: Mutex<HashMap<String, StoredCheckpoint>>,
    wake: Notify,
    pub(crate) metrics: WitnessMetrics,
}

impl Witness {
    /// Checks the configuration: an `http://` or `https://` URL, and readable CA certificates
    /// (`outbound_ca_pem`: the extra CAs an `https://` TSA may chain to besides the system's).
    pub(crate) fn new(config: &TsaConfig, outbound_ca_pem: Option<&[u8]>) -> Result<Witness, ApiError> {
        let invalid = |what: String| ApiError::new(Code::Internal, what);
        let url: Uri =
            config.url.parse().map_err(|e| invalid(format!("tsa_url {:?} is not a URL: {e}", config.url)))?;
        match url.scheme_str() {
            Some("http" | "https") if url.host().is_some() => {}
            _ => return Err(invalid(format!("tsa_url {:?} must be http(s)://host[:port]/path", config.url))),
        }
        let anchors = match &config.ca_pem {
            Some(pem) => Some(TrustAnchors::from_pem(pem).map_err(|e| invalid(format!("tsa_ca_file: {e}")))?),
            None => None,
        };
        let settings = HttpClientConfig {
            connect_timeout: config.timeout,
            allow_private: true,
            extra_ca_pem: outbound_ca_pem.map(<[u8]>::to_vec),
        };
        let client = HttpClient::new(&settings).map_err(|e| invalid(format!("outbound_ca_file: {e}")))?;
        Ok(Witness {
            url: config.url.clone(),
            anchors,
            timeout: config.timeout,
            interval: config.interval,
            client,
            pending: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            metrics: WitnessMetrics::default(),
        })
    }

    /// Queues a stored checkpoint for time stamping; returns at once.
    pub(crate) fn submit(&self, tenant: &str, checkpoint: &StoredCheckpoint) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let newer = pending.get(tenant).is_none_or(|waiting| waiting.size < checkpoint.size);
        if newer {
            pending.insert(tenant.to_string(), checkpoint.clone());
        }
        drop(pending);
        self.wake.notify_one();
    }

    /// Checkpoints waiting for their request, for `/metrics`.
    pub(crate) fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// One request: the verified DER answer for `note`.
    async fn timestamp(&self, note: &[u8]) -> Result<(Vec<u8>, VerifiedTimestamp), AttemptError> {
        let nonce = u64::from_be_bytes(ids::random_bytes().map_err(|e| AttemptError::Local(e.message))?);
        let query = TimestampRequest::new(note, nonce);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(veritrail_tsa::QUERY_CONTENT_TYPE));
        headers.insert(header::ACCEPT, HeaderValue::from_static(veritrail_tsa::REPLY_CONTENT_TYPE));
        let body = Bytes::copy_from_slice(query.der());
        let (status, body) =
            self.client.post(&self.url, headers, body, MAX_RESPONSE_BYTES, self.timeout).await.map_err(|error| {
                match error {
                    HttpClientError::Timeout(after) => AttemptError::Timeout(after),
                    HttpClientError::TooLarge { .. } => AttemptError::Body(error.to_string()),
                    other => AttemptError::Transport(other.to_string()),
                }
            })?;
        if status != StatusCode::OK {
            return Err(AttemptError::Status(status));
        }
        let expected = Expected { message: note, nonce: Some(nonce), trust: self.anchors.as_ref() };
        let verified = veritrail_tsa::verify_response(&body, &expected)?;
        Ok((body.to_vec(), verified))
    }
}

/// Sends waiting checkpoints to the TSA until `stop`; then lets requests under way finish for
/// at most [`SHUTDOWN_GRACE`].
pub(crate) async fn run(state: AppState, witness: std::sync::Arc<Witness>, stop: CancellationToken) {
    submit_unwitnessed(&state, &witness).await;
    let mut last_started: HashMap<String, Instant> = HashMap::new();
    let mut busy: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut tasks = JoinSet::new();
    loop {
        let next_due = start_due(&state, &witness, &mut last_started, &mut busy, &mut tasks, &stop);
        let sleep = async {
            match next_due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = witness.wake.notified() => {}
            _ = sleep => {}
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(error) => error.id(),
                };
                busy.remove(&id);
            }
        }
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("checkpoint time-stamp requests still running at shutdown were abandoned");
        tasks.abort_all();
    }
}

/// Starts the requests that are due; returns when the next waiting one becomes due.
fn start_due(
    state: &AppState,
    witness: &std::sync::Arc<Witness>,
    last_started: &mut HashMap<String, Instant>,
    busy: &mut HashMap<tokio::task::Id, String>,
    tasks: &mut JoinSet<()>,
    stop: &CancellationToken,
) -> Option<Instant> {
    let now = Instant::now();
    let mut next_due: Option<Instant> = None;
    let mut pending = witness.pending.lock().unwrap_or_else(|p| p.into_inner());
    let busy_tenants: HashSet<String> = busy.values().cloned().collect();
    let waiting: Vec<String> = pending.keys().filter(|t| !busy_tenants.contains(*t)).cloned().collect();
    for tenant in waiting {
        if tasks.len() >= MAX_IN_FLIGHT {
            break; // a finishing request wakes the dispatcher
        }
        let due = last_started.get(&tenant).map_or(now, |started| *started + witness.interval);
        if due > now {
            next_due = Some(next_due.map_or(due, |next| next.min(due)));
            continue;
        }
        let Some(checkpoint) = pending.remove(&tenant) else { continue };
        last_started.insert(tenant.clone(), now);
        let task = witness_checkpoint(state.clone(), witness.clone(), tenant.clone(), checkpoint, stop.clone());
        let handle = tasks.spawn(task);
        busy.insert(handle.id(), tenant);
    }
    next_due
}

/// Time-stamps one checkpoint, retrying with backoff; stores the verified answer.
async fn witness_checkpoint(
    state: AppState,
    witness: std::sync::Arc<Witness>,
    tenant: String,
    checkpoint: StoredCheckpoint,
    stop: CancellationToken,
) {
    let size = checkpoint.size;
    let mut delay = RETRY_FIRST;
    for attempt in 1..=ATTEMPTS {
        match witness.timestamp(checkpoint.note.as_bytes()).await {
            Ok((response, verified)) => {
                let timestamp = CheckpointTimestamp { size, response };
                match state.store.add_checkpoint_timestamp(&tenant, timestamp).await {
                    Ok(()) => {
                        witness.metrics.stored.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(tenant, size, gen_time = %verified.gen_time, tsa = %verified.signer, "checkpoint time-stamped");
                    }
                    Err(error) => {
                        witness.metrics.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(tenant, size, %error, "cannot store the checkpoint time-stamp");
                    }
                }
                return;
            }
            Err(error) => {
                witness.metrics.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tenant, size, attempt, %error, "checkpoint time-stamp failed");
            }
        }
        if attempt == ATTEMPTS {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(with_jitter(delay)) => {}
            _ = stop.cancelled() => return,
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
    witness.metrics.given_up.fetch_add(1, Ordering::Relaxed);
    tracing::error!(tenant, size, attempts = ATTEMPTS, "checkpoint not time-stamped; a later checkpoint will be");
}

/// `delay` plus up to a quarter more, so that retries after a TSA outage do not arrive together.
fn with_jitter(delay: Duration) -> Duration {
    let random = ids::random_bytes::<2>().map(u16::from_be_bytes).unwrap_or(0);
    delay + delay.mul_f64(f64::from(random) / f64::from(u16::MAX) / 4.0)
}

/// At start: each tenant's latest checkpoint without a time-stamp is queued.
async fn submit_unwitnessed(state: &AppState, witness: &Witness) {
    let tenants = match state.store.tenants().await {
        Ok(tenants) => tenants,
        Err(error) => {
            tracing::warn!(%error, "witness cannot list tenants");
            return;
        }
    };
    for tenant in tenants {
        let latest = match state.store.latest_checkpoint(&tenant.id).await {
            Ok(Some(latest)) => latest,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(tenant = %tenant.id, %error, "witness cannot read the latest checkpoint");
                continue;
            }
        };
        if matches!(state.store.checkpoint_timestamp(&tenant.id, latest.size).await, Ok(None)) {
            witness.submit(&tenant.id, &latest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(config: TsaConfig) -> String {
        match Witness::new(&config, None) {
            Ok(_) => panic!("{config:?} was accepted"),
            Err(error) => error.message,
        }
    }

    #[test]
    fn the_configuration_is_checked_at_start() {
        assert!(Witness::new(&TsaConfig::new("http://127.0.0.1:3180/tsa"), None).is_ok());
        assert!(Witness::new(&TsaConfig::new("https://tsa.example/tsr"), None).is_ok());
        assert!(refused(TsaConfig::new("ftp://tsa.example/")).contains("must be http(s)://host[:port]/path"));
        assert!(refused(TsaConfig::new("/just/a/path")).contains("must be http(s)://"));
        assert!(refused(TsaConfig::new("http://exa mple")).contains("is not a URL"));
        let bad_ca = TsaConfig { ca_pem: Some(b"not pem".to_vec()), ..TsaConfig::new("http://127.0.0.1/") };
        assert!(refused(bad_ca).contains("tsa_ca_file: invalid trusted CA certificates"));
    }

    #[test]
    fn a_newer_checkpoint_replaces_the_one_waiting() {
        let witness =
            Witness::new(&TsaConfig::new("http://127.0.0.1/"), None).unwrap_or_else(|e| panic!("{}", e.message));
        let checkpoint = |size| StoredCheckpoint {
            size,
            root: [0; 32],
            note: format!("note {size}"),
            created_at: jiff::Timestamp::UNIX_EPOCH,
        };
        witness.submit("tn_a", &checkpoint(5));
        witness.submit("tn_a", &checkpoint(9));
        witness.submit("tn_a", &checkpoint(7)); // older than the one waiting: ignored
        witness.submit("tn_b", &checkpoint(1));
        assert_eq!(witness.pending(), 2);
        let pending = witness.pending.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(pending.get("tn_a").map(|c| c.size), Some(9));
    }
}
