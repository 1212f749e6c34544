//! Webhook delivery: the outbox worker that POSTs stored messages to their endpoints, signed per
//! Standard Webhooks, with retries persisted in the store.
//!
//! - **Signature:** `webhook-id` (the message id, the same on every retry and redelivery, so a
//!   receiver can drop repeats), `webhook-timestamp` (seconds, at each attempt) and
//!   `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
//!   base64-decoded part of the endpoint's `whsec_` secret.
//! - **Retries:** a failed attempt (transport error, timeout, non-2xx) is retried after an
//!   exponentially growing, jittered delay ([`RetryPolicy`]) until `give_up_after` has passed
//!   since the round began (24 h by default); then the delivery is dead and waits for a manual
//!   redelivery. The schedule lives in the store, so a restart continues it.
//! - **Transport:** `http://` or `https://`, through the server's [`HttpClient`]: certificates
//!   verified against the system's CA certificates plus `outbound_ca_file`; the SSRF guard checks
//!   every address the host resolves to at every attempt and connects to a checked one (no
//!   second lookup an attacker could answer differently); loopback, private, link-local (cloud
//!   metadata), CGNAT and other special-purpose addresses are refused unless
//!   `webhook_allow_private`. No redirects are followed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Uri, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use sha2::Sha256;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use veritrail_store::{Delivery, DeliveryAttempt, RecordedAttempt, WebhookEndpoint};

use crate::alerting::RetryPolicy;
use crate::error::{ApiError, Code};
use crate::http_client::{HttpClient, HttpClientConfig, HttpClientError, address_allowed, host_of};
use crate::{AppState, ServerConfig, ids, smtp};

/// Deliveries sent at once.
const MAX_IN_FLIGHT: usize = 8;
/// Due deliveries read from the store at once.
const FETCH_BATCH: u32 = 64;
/// How long a batch read from the store is worked through before it is read again.
const BATCH_FRESH_FOR: Duration = Duration::from_secs(5);
/// Longest sleep between looks at the store (other nodes, clock changes).
const MAX_IDLE: Duration = Duration::from_secs(5);
/// Most of an answer's body read (then the connection is dropped).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Attempts that ended are recorded together once this many have, …
const RECORD_BATCH: usize = 32;
/// … or once the first of them ended this long ago (or nothing else is under way).
const RECORD_WITHIN: Duration = Duration::from_millis(20);
/// Pause after the store failed to answer an endpoint read.
const STORE_TROUBLE_PAUSE: Duration = Duration::from_secs(1);
/// How long attempts under way may finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Longest webhook URL accepted.
pub(crate) const MAX_URL_CHARS: usize = 2048;
/// Random bytes of a new signing secret.
const SECRET_BYTES: usize = 32;

/// A new Standard Webhooks secret: `whsec_` + base64 of 32 random bytes.
pub(crate) fn new_secret() -> Result<String, ApiError> {
    let bytes: [u8; SECRET_BYTES] = ids::random_bytes()?;
    Ok(format!("whsec_{}", STANDARD.encode(bytes)))
}

/// `v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>` under `secret` (`whsec_<base64 key>`).
pub(crate) fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let encoded = secret.strip_prefix("whsec_").ok_or("secret lacks the whsec_ prefix")?;
    let key = STANDARD.decode(encoded).map_err(|e| format!("secret is not base64: {e}"))?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// Checks a webhook URL as given to the API: `http(s)://host[:port][/path]`, no credentials,
/// and (when the host is an address or `localhost`) not a refused address. Host names are
/// checked again, resolved, at every send.
/// A `mailto:` URL (e-mail notification, see `smtp.rs`) needs an SMTP relay (`mail_enabled`) and
/// 1 to 10 valid addresses.
pub(crate) fn check_url(text: &str, allow_private: bool, mail_enabled: bool) -> Result<(), ApiError> {
    let refuse = |why: String| ApiError::new(Code::UrlNotAllowed, why);
    if text.is_empty()
        || text.chars().count() > MAX_URL_CHARS
        || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(refuse(format!("url must be 1 to {MAX_URL_CHARS} characters without spaces")));
    }
    if let Some(recipients) = smtp::recipients(text) {
        recipients.map_err(|e| refuse(format!("url: {e}")))?;
        if !mail_enabled {
            return Err(refuse("mailto: endpoints need an SMTP relay, and this server has none (smtp_url)".into()));
        }
        return Ok(());
    }
    let uri: Uri = text.parse().map_err(|e| refuse(format!("url is not a valid URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(refuse("url must start with http://, https:// or mailto:".into()));
    }
    let authority = uri.authority().ok_or_else(|| refuse("url has no host".into()))?;
    if authority.as_str().contains('@') {
        return Err(refuse("url must not carry credentials (user:password@)".into()));
    }
    let host = host_of(&uri).ok_or_else(|| refuse("url has no host".into()))?;
    if let Ok(ip) = host.parse::<IpAddr>()
        && !address_allowed(ip, allow_private)
    {
        return Err(refuse(format!(
            "{ip} is a loopback, private, link-local or reserved address; webhooks may not target it"
        )));
    }
    let lower = host.to_ascii_lowercase();
    if !allow_private && (lower == "localhost" || lower.ends_with(".localhost")) {
        return Err(refuse(format!("{host} is this machine; webhooks may not target it")));
    }
    Ok(())
}

/// Why one attempt failed.
#[derive(Debug)]
struct Failure {
    status: Option<u16>,
    error: String,
}

impl Failure {
    fn new(error: impl Into<String>) -> Failure {
        Failure { status: None, error: error.into() }
    }
}

/// The client of deliveries (and of other requests to URLs users chose): the webhook address
/// policy, the webhook timeout for connections, `outbound_ca_pem` trusted besides the system's
/// CA certificates.
pub(crate) fn client(config: &ServerConfig) -> Result<HttpClient, ApiError> {
    let settings = HttpClientConfig {
        connect_timeout: config.alerting.webhook_timeout,
        allow_private: config.alerting.webhook_allow_private,
        extra_ca_pem: config.outbound_ca_pem.clone(),
    };
    HttpClient::new(&settings).map_err(|e| ApiError::new(Code::Internal, format!("outbound_ca_file: {e}")))
}

/// One attempt: the HTTP status of a 2xx answer, or why it failed.
async fn send(
    client: &HttpClient,
    timeout: Duration,
    url: &str,
    secret: &str,
    delivery: &Delivery,
) -> Result<u16, Failure> {
    let timestamp = Timestamp::now().as_second();
    let signature = sign(secret, &delivery.message_id, timestamp, delivery.payload.as_bytes()).map_err(Failure::new)?;
    let value = |text: &str| HeaderValue::from_str(text).map_err(|e| Failure::new(format!("invalid header: {e}")));
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("Veritrail-Webhooks/", env!("CARGO_PKG_VERSION"))),
    );
    headers.insert("webhook-id", value(&delivery.message_id)?);
    headers.insert("webhook-timestamp", value(&timestamp.to_string())?);
    headers.insert("webhook-signature", value(&signature)?);
    let body = Bytes::from(delivery.payload.clone());
    // The answer's body is read (bounded) so that the connection can be reused; a longer one
    // still counts by its status.
    let status = match client.post(url, headers, body, MAX_ANSWER_BYTES, timeout).await {
        Ok((status, _)) | Err(HttpClientError::TooLarge { status, .. }) => status,
        Err(error) => return Err(Failure::new(error.to_string())),
    };
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(Failure { status: Some(status.as_u16()), error: format!("endpoint answered HTTP {status}") })
    }
}

/// One attempt at an e-mail delivery: 250 once the relay accepted the message.
async fn mail(
    state: &AppState,
    timeout: Duration,
    recipients: Result<Vec<String>, String>,
    delivery: &Delivery,
) -> Result<u16, Failure> {
    let recipients = recipients.map_err(|e| Failure::new(format!("stored url: {e}")))?;
    let mailer = state.mailer.as_ref().ok_or_else(|| Failure::new(smtp::SmtpError::NotConfigured.to_string()))?;
    match mailer.send_alert(&recipients, &delivery.message_id, &delivery.payload, timeout).await {
        Ok(()) => Ok(250),
        Err(smtp::SmtpError::Refused { command, code, text }) => {
            Err(Failure { status: Some(code), error: format!("the relay refused {command}: {code} {text}") })
        }
        Err(error) => Err(Failure::new(error.to_string())),
    }
}

/// When to try again after the `round_attempts`-th failed attempt of a round that began at
/// `round_started`; `None` once `give_up_after` has passed (the delivery is then dead). The
/// last retry is placed at the end of the period, so retries go on for all of it.
pub(crate) fn next_retry(
    policy: &RetryPolicy,
    round_started: Timestamp,
    round_attempts: u32,
    now: Timestamp,
) -> Option<Timestamp> {
    let give_up = round_started.checked_add(policy.give_up_after).ok()?;
    if now >= give_up {
        return None;
    }
    let doublings = round_attempts.saturating_sub(1).min(30);
    let delay = policy.first.saturating_mul(1u32 << doublings).min(policy.max);
    let random = ids::random_bytes::<2>().map(u16::from_be_bytes).unwrap_or(u16::MAX / 2);
    let factor = 0.8 + 0.4 * f64::from(random) / f64::from(u16::MAX);
    let retry = now.checked_add(delay.mul_f64(factor)).ok()?;
    Some(retry.min(give_up))
}

/// An attempt that ended: its delivery's key, and what to record.
struct Finished {
    key: (String, String),
    record: RecordedAttempt,
}

/// The endpoints of the deliveries under way, read once per batch of due deliveries instead of
/// once per attempt (an alert storm paid a store read per delivery). Dropped with each new batch
/// and when an endpoint is deleted on this node, so a deleted endpoint is not sent to from here
/// after its deletion, and from another node's batch for at most [`BATCH_FRESH_FOR`].
#[derive(Default)]
struct Endpoints {
    known: HashMap<(String, String), Option<Arc<WebhookEndpoint>>>,
    deletions_seen: u64,
}

impl Endpoints {
    fn clear(&mut self) {
        self.known.clear();
    }

    async fn get(
        &mut self,
        state: &AppState,
        delivery: &Delivery,
    ) -> Result<Option<Arc<WebhookEndpoint>>, veritrail_store::StoreError> {
        let deletions = state.alerting.endpoints_deleted.load(Ordering::SeqCst);
        if deletions != self.deletions_seen {
            self.known.clear();
            self.deletions_seen = deletions;
        }
        let key = (delivery.tenant.clone(), delivery.endpoint_id.clone());
        if let Some(known) = self.known.get(&key) {
            return Ok(known.clone());
        }
        let endpoint = state.alerts.webhook(&delivery.tenant, &delivery.endpoint_id).await?.map(Arc::new);
        self.known.insert(key, endpoint.clone());
        Ok(endpoint)
    }
}

/// Records the attempts that ended in one store call, then lets their deliveries be read as
/// due again.
async fn record(state: &AppState, finished: &mut Vec<Finished>, in_flight: &mut HashSet<(String, String)>) {
    let (keys, attempts): (Vec<_>, Vec<_>) = finished.drain(..).map(|done| (done.key, done.record)).unzip();
    if !attempts.is_empty()
        && let Err(error) = state.alerts.record_delivery_attempts(attempts).await
    {
        tracing::warn!(%error, "cannot record webhook delivery attempts; they will be sent again");
    }
    for key in keys {
        in_flight.remove(&key);
    }
}

/// Sends due deliveries until `stop`, then lets attempts under way finish for a moment.
///
/// Due deliveries are read a batch at a time ([`FETCH_BATCH`]) and started as slots free up
/// ([`MAX_IN_FLIGHT`]); the store is read again only when the batch is used up or older than
/// [`BATCH_FRESH_FOR`] (well inside the PostgreSQL claim lease), and, once used up, only when
/// something can have become due: new deliveries were announced, attempts were recorded, or the
/// wait for the next due one ran out. Reading again at every finished attempt re-read and
/// re-opened the deliveries still in flight each time: an alert storm cost ~0.3 ms of CPU per
/// delivery that way, and ~6 µs per delivery while only the batch's tail re-read (BENCHMARKS.md,
/// issue 7). Attempts that end together are recorded together ([`RECORD_WITHIN`],
/// [`RECORD_BATCH`]); a delivery stays out of the batches read meanwhile until its attempt is
/// recorded.
pub(crate) async fn run(state: AppState, stop: CancellationToken) {
    let config = state.alerting.config().clone();
    let mut in_flight: HashSet<(String, String)> = HashSet::new();
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    let mut batch: VecDeque<Delivery> = VecDeque::new();
    let mut batch_read_at = Instant::now();
    let mut endpoints = Endpoints::default();
    let mut finished: Vec<Finished> = Vec::new();
    let mut first_finished_at = Instant::now();
    // Whether the store may hold due deliveries the batch does not: set by an announcement, a
    // recorded attempt, the end of a wait, a failed read.
    let mut may_be_due = true;
    // Whether the last read met deliveries in flight: they read as due until recorded.
    let mut met_in_flight = false;
    loop {
        if !finished.is_empty()
            && (tasks.is_empty() || finished.len() >= RECORD_BATCH || first_finished_at.elapsed() >= RECORD_WITHIN)
        {
            record(&state, &mut finished, &mut in_flight).await;
            may_be_due = true;
        }
        let mut store_trouble = false;
        if (batch.is_empty() && may_be_due) || batch_read_at.elapsed() >= BATCH_FRESH_FOR {
            batch.clear();
            endpoints.clear();
            may_be_due = false;
            match state.alerts.due_deliveries(Timestamp::now(), FETCH_BATCH).await {
                Ok(due) => {
                    // Deliveries whose attempt is under way (or not yet recorded) still read as
                    // pending: leave them out now, or one could be started again from the batch
                    // once that attempt ended (delivered twice, or retried before its backoff).
                    let fetched = due.len();
                    batch.extend(due.into_iter().filter(|delivery| {
                        !in_flight.contains(&(delivery.endpoint_id.clone(), delivery.message_id.clone()))
                    }));
                    met_in_flight = batch.len() < fetched;
                    batch_read_at = Instant::now();
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read due webhook deliveries");
                    may_be_due = true;
                    store_trouble = true;
                }
            }
        }
        while tasks.len() < MAX_IN_FLIGHT {
            let Some(delivery) = batch.pop_front() else { break };
            let endpoint = match endpoints.get(&state, &delivery).await {
                Ok(Some(endpoint)) => endpoint,
                Ok(None) => continue, // deleted meanwhile, with its deliveries
                Err(error) => {
                    tracing::warn!(%error, "cannot read a webhook endpoint");
                    batch.push_front(delivery); // stays due: tried again after a pause, no hot loop
                    store_trouble = true;
                    break;
                }
            };
            let key = (delivery.endpoint_id.clone(), delivery.message_id.clone());
            in_flight.insert(key.clone());
            let (state, policy, timeout) = (state.clone(), config.retry, config.webhook_timeout);
            tasks.spawn(async move {
                let record = attempt(&state, timeout, &policy, delivery, &endpoint).await;
                Finished { key, record }
            });
        }
        let sleep = if store_trouble {
            STORE_TROUBLE_PAUSE
        } else if !batch.is_empty() || met_in_flight {
            // Waiting for a free slot, or for attempts under way to be recorded (which sets
            // `may_be_due`): the store's next due time would be one of those, already past.
            MAX_IDLE
        } else {
            match state.alerts.next_delivery_due().await {
                Ok(Some(at)) => {
                    let wait = at.duration_since(Timestamp::now());
                    Duration::try_from(wait).unwrap_or(Duration::ZERO).min(MAX_IDLE)
                }
                Ok(None) => MAX_IDLE,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the next webhook delivery time");
                    MAX_IDLE
                }
            }
        };
        let record_at = first_finished_at + RECORD_WITHIN;
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = state.alerting.deliveries.notified(), if !store_trouble => may_be_due = true,
            _ = tokio::time::sleep(sleep) => may_be_due = true,
            _ = tokio::time::sleep_until(record_at.into()), if !finished.is_empty() => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if finished.is_empty() {
                    first_finished_at = Instant::now();
                }
                let mut lost = false;
                for done in std::iter::once(done).chain(std::iter::from_fn(|| tasks.try_join_next())) {
                    match done {
                        Ok(done) => finished.push(done),
                        Err(error) => {
                            tracing::error!(%error, "webhook delivery task failed");
                            lost = true;
                        }
                    }
                }
                if lost {
                    // The failed task's key is unknown; the store still says pending.
                    record(&state, &mut finished, &mut in_flight).await;
                    in_flight.clear();
                    may_be_due = true;
                }
            }
        }
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(done) = tasks.join_next().await {
            if let Ok(done) = done {
                finished.push(done);
            }
        }
    })
    .await;
    record(&state, &mut finished, &mut in_flight).await;
    if drained.is_err() {
        tracing::warn!("webhook deliveries still running at shutdown were abandoned; they are retried at next start");
        tasks.abort_all();
    }
}

/// One attempt at one delivery: what to record.
async fn attempt(
    state: &AppState,
    timeout: Duration,
    policy: &RetryPolicy,
    delivery: Delivery,
    endpoint: &WebhookEndpoint,
) -> RecordedAttempt {
    let result = match smtp::recipients(&endpoint.url) {
        None => send(&state.outbound, timeout, &endpoint.url, &endpoint.secret, &delivery).await,
        Some(recipients) => mail(state, timeout, recipients, &delivery).await,
    };
    let now = Timestamp::now();
    let metrics = &state.alerting.metrics;
    let attempt = match result {
        Ok(status) => {
            metrics.deliveries_succeeded.fetch_add(1, Ordering::Relaxed);
            DeliveryAttempt { at: now, status: Some(status), error: None, retry_at: None }
        }
        Err(failure) => {
            metrics.deliveries_failed.fetch_add(1, Ordering::Relaxed);
            let retry_at = next_retry(policy, delivery.round_started_at, delivery.round_attempts + 1, now);
            if retry_at.is_none() {
                metrics.deliveries_dead.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    tenant = %delivery.tenant, webhook = %delivery.endpoint_id, message = %delivery.message_id,
                    error = %failure.error, "webhook delivery is dead after its retries"
                );
            } else {
                tracing::debug!(
                    webhook = %delivery.endpoint_id, message = %delivery.message_id, error = %failure.error,
                    "webhook delivery failed; retrying"
                );
            }
            DeliveryAttempt { at: now, status: failure.status, error: Some(failure.error), retry_at }
        }
    };
    RecordedAttempt {
        tenant: delivery.tenant,
        endpoint_id: delivery.endpoint_id,
        message_id: delivery.message_id,
        attempt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification (and of its reference libraries).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap_or_default();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "m", 1, b"").is_err());
        assert!(
            new_secret()
                .is_ok_and(|s| s.starts_with("whsec_") && STANDARD.decode(&s[6..]).is_ok_and(|k| k.len() == 32))
        );
    }

    #[test]
    fn urls_are_checked_when_given() {
        let code = |url: &str, allow: bool| check_url(url, allow, false).err().map(|e| (e.code, e.message));
        assert!(check_url("http://siem.example.com:8088/hook?x=1", false, false).is_ok());
        assert!(check_url("https://siem.example.com/hook", false, false).is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook", true, false).is_ok());
        assert!(check_url("mailto:soc@acme.example,cso@acme.example", false, true).is_ok());
        assert!(code("mailto:soc@acme.example", false).is_some_and(|(_, m)| m.contains("smtp_url")));
        assert!(check_url("mailto:not-an-address", false, true).is_err());
        for url in [
            "ftp://siem.example.com/",
            "siem.example.com",
            "http://user:pw@siem.example.com/",
            "http://127.0.0.1/",
            "http://[::1]:80/",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost:8080/",
            "https://10.0.0.1/",
            "http://a b/",
            "",
        ] {
            let refused = code(url, false);
            assert!(matches!(refused, Some((Code::UrlNotAllowed, _))), "{url}: {refused:?}");
        }
        let long = format!("http://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(code(&long, false).is_some());
        assert!(code("ftp://x.example/", false).is_some_and(|(_, m)| m.contains("https://")));
    }

    #[test]
    fn retries_back_off_with_jitter_and_stop_after_the_period() {
        let policy = RetryPolicy {
            first: Duration::from_secs(5),
            max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
        };
        let start = Timestamp::UNIX_EPOCH;
        let after = |seconds: i64| start.checked_add(jiff::SignedDuration::from_secs(seconds)).unwrap_or(start);
        let first = next_retry(&policy, start, 1, start).map(|t| t.duration_since(start).as_secs_f64());
        assert!(first.is_some_and(|s| (4.0..=6.0).contains(&s)), "{first:?}");
        let fourth = next_retry(&policy, start, 4, after(100)).map(|t| t.duration_since(after(100)).as_secs_f64());
        assert!(fourth.is_some_and(|s| (32.0..=48.0).contains(&s)), "{fourth:?}");
        let capped = next_retry(&policy, start, 25, after(3600)).map(|t| t.duration_since(after(3600)).as_secs_f64());
        assert!(capped.is_some_and(|s| (2880.0..=4320.0).contains(&s)), "{capped:?}");
        // Close to the end of the period, the last retry is at its end; after it, none.
        let last = next_retry(&policy, start, 30, after(24 * 3600 - 60));
        assert_eq!(last, Some(after(24 * 3600)));
        assert_eq!(next_retry(&policy, start, 31, after(24 * 3600)), None);
        // Counted: with the defaults a delivery is tried about 30 times over the 24 hours.
        let (mut now, mut attempts) = (start, 1);
        while let Some(next) = next_retry(&policy, start, attempts, now) {
            now = next;
            attempts += 1;
        }
        assert!(now >= after(24 * 3600) && (25..=45).contains(&attempts), "{attempts} attempts");
    }
}
