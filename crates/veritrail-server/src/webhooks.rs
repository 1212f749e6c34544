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
//! - **SSRF guard:** the URL's host is resolved at every attempt and the request goes to the
//!   resolved address itself (no second lookup an attacker could answer differently); loopback,
//!   private, link-local (cloud metadata), CGNAT and other special-purpose addresses are refused
//!   unless `webhook_allow_private`. No redirects are followed.
//!
//! Plain `http://` only for now: the client is hyper-util's (already linked through axum), and
//! https needs a TLS stack the workspace does not carry yet.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::{HeaderValue, Request, Uri, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use sha2::Sha256;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use veritrail_store::{Delivery, DeliveryAttempt};

use crate::AppState;
use crate::alerting::RetryPolicy;
use crate::error::{ApiError, Code};
use crate::ids;

/// Deliveries sent at once.
const MAX_IN_FLIGHT: usize = 8;
/// Longest sleep between looks at the store (other nodes, clock changes).
const MAX_IDLE: Duration = Duration::from_secs(5);
/// Most of an answer's body read (then the connection is dropped).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
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

/// True when a webhook may be sent to `ip`. Unspecified, multicast and broadcast addresses are
/// never allowed; loopback, private, link-local (cloud metadata at 169.254.169.254 and
/// fd00:ec2::254), CGNAT, documentation, benchmarking and reserved ranges only with
/// `allow_private`.
pub(crate) fn address_allowed(ip: IpAddr, allow_private: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_allowed(v4, allow_private),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return v4_allowed(v4, allow_private);
            }
            if v6.is_unspecified() || v6.is_multicast() {
                return false;
            }
            let segments = v6.segments();
            let special = v6.is_loopback()
                || (segments[0] & 0xffc0) == 0xfe80 // link-local
                || (segments[0] & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254 among them)
                || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
                || (segments[0] & 0xffc0) == 0xfec0; // deprecated site-local
            allow_private || !special
        }
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible or NAT64
/// (`64:ff9b::/96`) address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let segments = v6.segments();
    let tail = Ipv4Addr::new((segments[6] >> 8) as u8, segments[6] as u8, (segments[7] >> 8) as u8, segments[7] as u8);
    let nat64 = segments[0] == 0x64 && segments[1] == 0xff9b && segments[2..6].iter().all(|s| *s == 0);
    let compatible = segments[..6].iter().all(|s| *s == 0) && !v6.is_loopback() && !v6.is_unspecified();
    (nat64 || compatible).then_some(tail)
}

fn v4_allowed(v4: Ipv4Addr, allow_private: bool) -> bool {
    if v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() {
        return false;
    }
    let [a, b, c, _] = v4.octets();
    let special = v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 240; // reserved
    allow_private || !special
}

/// Checks a webhook URL as given to the API: `http://host[:port][/path]`, no credentials, and
/// (when the host is an address or `localhost`) not a refused address. Host names are checked
/// again, resolved, at every send.
pub(crate) fn check_url(text: &str, allow_private: bool) -> Result<Uri, ApiError> {
    let refuse = |why: String| ApiError::new(Code::UrlNotAllowed, why);
    if text.is_empty()
        || text.chars().count() > MAX_URL_CHARS
        || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(refuse(format!("url must be 1 to {MAX_URL_CHARS} characters without spaces")));
    }
    let uri: Uri = text.parse().map_err(|e| refuse(format!("url is not a valid URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(refuse(
                "https webhooks are not supported yet (no TLS client in this build); use http:// behind a TLS-terminating proxy"
                    .into(),
            ));
        }
        _ => return Err(refuse("url must start with http://".into())),
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
    Ok(uri)
}

/// The host of `uri` without IPv6 brackets.
fn host_of(uri: &Uri) -> Option<&str> {
    let host = uri.host()?;
    Some(host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host))
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

/// The HTTP client of deliveries.
pub(crate) struct Sender {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    allow_private: bool,
}

impl Sender {
    pub(crate) fn new(timeout: Duration, allow_private: bool) -> Sender {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.enforce_http(true);
        Sender { client: Client::builder(TokioExecutor::new()).build(connector), timeout, allow_private }
    }

    /// Resolves the URL's host and picks the address to connect to; refuses the whole name if
    /// any of its addresses is refused (a name mixing public and private addresses is a
    /// rebinding attempt).
    async fn resolve(&self, uri: &Uri) -> Result<SocketAddr, Failure> {
        let host = host_of(uri).ok_or_else(|| Failure::new("url has no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(self.timeout, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| Failure::new(format!("resolving {host} timed out")))?
                .map_err(|e| Failure::new(format!("cannot resolve {host}: {e}")))?
                .collect(),
        };
        if let Some(refused) = addresses.iter().find(|a| !address_allowed(a.ip(), self.allow_private)) {
            return Err(Failure::new(format!(
                "{host} resolves to {}, a loopback, private, link-local or reserved address (refused)",
                refused.ip()
            )));
        }
        addresses.first().copied().ok_or_else(|| Failure::new(format!("{host} has no address")))
    }

    /// One attempt: the HTTP status of a 2xx answer, or why it failed.
    async fn send(&self, url: &str, secret: &str, delivery: &Delivery) -> Result<u16, Failure> {
        let uri: Uri = url.parse().map_err(|e| Failure::new(format!("stored url is invalid: {e}")))?;
        let address = self.resolve(&uri).await?;
        let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let target: Uri = format!("http://{address}{path}").parse().map_err(|e| Failure::new(format!("{e}")))?;
        let timestamp = Timestamp::now().as_second();
        let signature =
            sign(secret, &delivery.message_id, timestamp, delivery.payload.as_bytes()).map_err(Failure::new)?;
        let request = Request::post(target)
            .header(header::HOST, HeaderValue::from_str(&authority).map_err(|e| Failure::new(e.to_string()))?)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, concat!("Veritrail-Webhooks/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", delivery.message_id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(Bytes::from(delivery.payload.clone())))
            .map_err(|e| Failure::new(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| Failure::new(describe(&e)))?;
            let status = response.status();
            // Read (a bounded part of) the answer so the connection can be reused.
            let _ = Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect().await;
            if status.is_success() {
                Ok(status.as_u16())
            } else {
                Err(Failure { status: Some(status.as_u16()), error: format!("endpoint answered HTTP {status}") })
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Failure::new(format!("no answer within {:?}", self.timeout)))?
    }
}

/// An error and its causes on one line.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        text.push_str(": ");
        text.push_str(&current.to_string());
        cause = current.source();
    }
    text
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

/// Sends due deliveries until `stop`, then lets attempts under way finish for a moment.
pub(crate) async fn run(state: AppState, stop: CancellationToken) {
    let config = state.alerting.config().clone();
    let sender = std::sync::Arc::new(Sender::new(config.webhook_timeout, config.webhook_allow_private));
    let mut in_flight: HashSet<(String, String)> = HashSet::new();
    let mut tasks: JoinSet<(String, String)> = JoinSet::new();
    loop {
        let mut waiting_on_busy = false;
        if tasks.len() < MAX_IN_FLIGHT {
            match state.alerts.due_deliveries(Timestamp::now(), 64).await {
                Ok(due) => {
                    for delivery in due {
                        let key = (delivery.endpoint_id.clone(), delivery.message_id.clone());
                        if in_flight.contains(&key) {
                            waiting_on_busy = true;
                            continue;
                        }
                        if tasks.len() >= MAX_IN_FLIGHT {
                            waiting_on_busy = true;
                            break;
                        }
                        in_flight.insert(key.clone());
                        let (state, sender, policy) = (state.clone(), sender.clone(), config.retry);
                        tasks.spawn(async move {
                            attempt(&state, &sender, &policy, delivery).await;
                            key
                        });
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read due webhook deliveries"),
            }
        } else {
            waiting_on_busy = true;
        }
        let sleep = if waiting_on_busy {
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
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = state.alerting.deliveries.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                match done {
                    Ok(key) => { in_flight.remove(&key); }
                    Err(error) => {
                        tracing::error!(%error, "webhook delivery task failed");
                        in_flight.clear(); // its key is unknown; the store still says pending
                    }
                }
            }
        }
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("webhook deliveries still running at shutdown were abandoned; they are retried at next start");
        tasks.abort_all();
    }
}

/// One attempt at one delivery, recorded in the store.
async fn attempt(state: &AppState, sender: &Sender, policy: &RetryPolicy, delivery: Delivery) {
    let endpoint = match state.alerts.webhook(&delivery.tenant, &delivery.endpoint_id).await {
        Ok(Some(endpoint)) => endpoint,
        Ok(None) => return, // deleted meanwhile, with its deliveries
        Err(error) => {
            tracing::warn!(%error, "cannot read a webhook endpoint");
            tokio::time::sleep(Duration::from_secs(1)).await; // the delivery stays due: no hot loop
            return;
        }
    };
    let result = sender.send(&endpoint.url, &endpoint.secret, &delivery).await;
    let now = Timestamp::now();
    let metrics = &state.alerting.metrics;
    let record = match result {
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
    if let Err(error) = state
        .alerts
        .record_delivery_attempt(&delivery.tenant, &delivery.endpoint_id, &delivery.message_id, record)
        .await
    {
        tracing::warn!(%error, "cannot record a webhook delivery attempt; it will be sent again");
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
    fn special_addresses_are_refused_unless_allowed() {
        let refused = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ];
        for text in refused {
            let ip: IpAddr = text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            assert!(!address_allowed(ip, false), "{text} allowed");
        }
        for text in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            let ip: IpAddr = text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            assert!(address_allowed(ip, false), "{text} refused");
        }
        for text in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1"] {
            let ip: IpAddr = text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            assert!(address_allowed(ip, true), "{text} refused although allowed");
        }
        for text in ["0.0.0.0", "224.0.0.1", "ff02::1"] {
            let ip: IpAddr = text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            assert!(!address_allowed(ip, true), "{text} never allowed");
        }
    }

    #[test]
    fn urls_are_checked_when_given() {
        let code = |url: &str, allow: bool| check_url(url, allow).err().map(|e| (e.code, e.message));
        assert!(check_url("http://siem.example.com:8088/hook?x=1", false).is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook", true).is_ok());
        for url in [
            "https://siem.example.com/",
            "ftp://siem.example.com/",
            "siem.example.com",
            "http://user:pw@siem.example.com/",
            "http://127.0.0.1/",
            "http://[::1]:80/",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost:8080/",
            "http://a b/",
            "",
        ] {
            let refused = code(url, false);
            assert!(matches!(refused, Some((Code::UrlNotAllowed, _))), "{url}: {refused:?}");
        }
        let long = format!("http://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(code(&long, false).is_some());
        assert!(code("https://x.example/", false).is_some_and(|(_, m)| m.contains("https")));
    }

    #[tokio::test]
    async fn names_are_resolved_and_checked_at_send_time() {
        let Ok(uri) = "http://localhost:9/hook".parse::<Uri>() else { panic!("test uri") };
        let refused = Sender::new(Duration::from_secs(2), false).resolve(&uri).await;
        assert!(refused.is_err_and(|f| f.error.contains("refused")), "localhost resolves to a refused address");
        let allowed = Sender::new(Duration::from_secs(2), true).resolve(&uri).await;
        assert!(allowed.is_ok_and(|a| a.ip().is_loopback() && a.port() == 9));
        let Ok(literal) = "http://[::ffff:10.0.0.1]:8080/".parse::<Uri>() else { panic!("test uri") };
        assert!(Sender::new(Duration::from_secs(2), false).resolve(&literal).await.is_err());
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
