//! The HTTP server of Veritrail: the only crate that knows HTTP and the wire JSON.
//!
//! [`Server::start`] prepares the platform secrets in the store and returns the router;
//! [`serve`] runs it on a listener until a shutdown token fires, then flushes the store.

#![forbid(unsafe_code)]

mod alerting;
mod audit;
pub mod auth;
pub mod error;
mod export;
mod http_client;
mod ids;
mod ledger;
mod ledger_routes;
mod metrics;
mod openapi;
mod privacy;
mod roles;
mod routes;
mod routes_alerts;
mod rule_thread;
mod sealed_alerts;
mod smtp;
mod sso;
mod subjects;
mod tls;
mod users;
mod webhooks;
mod witness;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio_util::sync::CancellationToken;
use veritrail_model::Limits;
use veritrail_store::{AccessStore, AlertStore, Store};

pub use crate::alerting::{AlertingConfig, RetryPolicy};
pub use crate::error::{ApiError, Code};
pub use crate::smtp::{SmtpConfig, SmtpSecurity};
pub use crate::tls::{Listener, TlsError, TlsIdentity, TlsListener};
pub use crate::witness::TsaConfig;

/// Name of the store setting holding the pepper API-key secrets are hashed under.
const PEPPER_SETTING: &str = "auth.pepper";
/// Name of the store setting holding the hash of the platform bootstrap token.
const BOOTSTRAP_SETTING: &str = "auth.bootstrap_token_hash";

/// Everything the server needs besides its store.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Limits on request bodies and events.
    pub limits: Limits,
    /// The bootstrap token to install on first start (`VERITRAIL_BOOTSTRAP_TOKEN`); generated
    /// when absent.
    pub bootstrap_token: Option<String>,
    /// This server's origin (`VERITRAIL_ORIGIN`): checkpoint origins are `<origin>/<tenant>` and
    /// the first signing key is named after it. Default `veritrail.local`.
    pub origin: Option<String>,
    /// How often grown ledgers get a new signed checkpoint. Default 1 s.
    pub checkpoint_interval: Option<Duration>,
    /// RFC 3161 witnessing of checkpoints by a Time-Stamp Authority; off when `None`.
    pub tsa: Option<TsaConfig>,
    /// The rule engine and webhook delivery.
    pub alerting: AlertingConfig,
    /// Requests per second each API key may send, sustained, and in a burst (429
    /// `rate_limited` with `Retry-After` beyond). `None`: 2,000/s with bursts of 4,000.
    pub key_rate_limit: Option<(f64, u32)>,
    /// How long a signed-in session (`POST /v1/sessions`) lasts. `None`: 12 hours.
    pub session_ttl: Option<Duration>,
    /// PEM CA certificates trusted for outbound HTTPS (webhooks, identity providers' key sets)
    /// besides the system's (`outbound_ca_file`), for a private PKI.
    pub outbound_ca_pem: Option<Vec<u8>>,
    /// The SMTP relay of e-mail notifications (`mailto:` endpoints); none when `None`.
    pub smtp: Option<SmtpConfig>,
}

/// The server origin when none is configured.
pub const DEFAULT_ORIGIN: &str = "veritrail.local";

/// Shared state of every request handler.
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: Arc<dyn Store>,
    /// Rules, alerts, webhooks and their deliveries.
    pub(crate) alerts: Arc<dyn AlertStore>,
    /// The rule engine's command channel, the delivery wake-up and their counters.
    pub(crate) alerting: Arc<alerting::Alerting>,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) pepper: Arc<[u8]>,
    pub(crate) bootstrap_hash: [u8; 32],
    pub(crate) metrics: Arc<metrics::ServerMetrics>,
    pub(crate) ledger: Arc<ledger::Ledger>,
    /// The RFC 3161 witness, when a TSA is configured.
    pub(crate) witness: Option<Arc<witness::Witness>>,
    /// Each tenant's classified personal fields, cached for ingest.
    pub(crate) classification: Arc<privacy::ClassificationCache>,
    /// Per-API-key request rate limit.
    pub(crate) key_rate_limit: Arc<veritrail_access::RateLimiter>,
    /// Users, sessions, custom roles and identity providers.
    pub(crate) access: Arc<dyn AccessStore>,
    /// Failed sign-ins per account and per source address.
    pub(crate) login_throttle: Arc<veritrail_access::LoginThrottle>,
    /// A password hash verified against when the account is unknown, so that timing does not
    /// tell which accounts exist.
    pub(crate) dummy_password_hash: Arc<str>,
    /// Identity providers' verifiers and the tokens whose first use was recorded.
    pub(crate) sso: Arc<sso::SsoState>,
    /// The guarded HTTP(S) client of requests to URLs users chose (webhooks, key sets).
    pub(crate) outbound: Arc<http_client::HttpClient>,
    /// The e-mail sender, when an SMTP relay is configured.
    pub(crate) mailer: Option<Arc<smtp::Mailer>>,
}

/// A prepared server: its router, and the bootstrap token if this start generated one (to be
/// shown once to the operator).
pub struct Server {
    /// The HTTP application.
    pub router: Router,
    /// A newly generated bootstrap token, `None` when one was already installed.
    pub new_bootstrap_token: Option<String>,
    state: AppState,
}

/// An installation secret kept in a store setting, sealed under the master key: `fresh` is
/// stored on first start (or another node's, if it won the race); a value stored in clear
/// before sealing existed, or sealed under a previous master key, is sealed again.
async fn secret_setting(store: &dyn Store, name: &str, fresh: &[u8]) -> Result<Vec<u8>, ApiError> {
    let privacy = store.privacy();
    let stored = store.init_setting(name, privacy.seal_secret(name, fresh)?.into_bytes()).await?;
    let text = String::from_utf8_lossy(&stored).into_owned();
    let clear = match privacy.open_secret(name, &text)? {
        Some(clear) => clear.to_vec(),
        None => stored.clone(),
    };
    if !privacy.secret_is_current(&text) {
        let resealed = privacy.seal_secret(name, &clear)?.into_bytes();
        // Losing this race is fine: the other node stored the same secret, sealed.
        store.swap_setting(name, stored, resealed).await?;
    }
    Ok(clear)
}

impl Server {
    /// Loads or initialises the platform secrets and builds the router. `alerts` keeps
    /// monitoring (often the same backend object as `store`); `access` keeps users, sessions
    /// and custom roles.
    pub async fn start(
        store: Arc<dyn Store>,
        alerts: Arc<dyn AlertStore>,
        access: Arc<dyn AccessStore>,
        config: ServerConfig,
    ) -> Result<Server, ApiError> {
        let pepper = secret_setting(store.as_ref(), PEPPER_SETTING, &ids::random_bytes::<32>()?).await?;
        let mut new_bootstrap_token = None;
        let bootstrap_hash = match store.setting(BOOTSTRAP_SETTING).await? {
            Some(hash) => hash,
            None => {
                let token = match &config.bootstrap_token {
                    Some(token) => token.clone(),
                    None => {
                        let token = format!("vtb_{}", ids::random_base32(40)?);
                        new_bootstrap_token = Some(token.clone());
                        token
                    }
                };
                let hash = auth::hash_secret(&pepper, &token).to_vec();
                let stored = store.init_setting(BOOTSTRAP_SETTING, hash.clone()).await?;
                if stored != hash {
                    new_bootstrap_token = None; // another node initialised it first
                }
                stored
            }
        };
        let bootstrap_hash: [u8; 32] = bootstrap_hash
            .as_slice()
            .try_into()
            .map_err(|_| ApiError::new(Code::Internal, "stored bootstrap token hash is damaged"))?;
        let max_body = config.limits.max_body_bytes;
        let origin = config.origin.clone().unwrap_or_else(|| DEFAULT_ORIGIN.to_string());
        if origin.is_empty() || origin.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control()) {
            return Err(ApiError::new(
                Code::Internal,
                format!("origin {origin:?} must be non-empty without spaces or '+'"),
            ));
        }
        let (per_second, burst) = config.key_rate_limit.unwrap_or((2000.0, 4000));
        let key_rate_limit = veritrail_access::RateLimiter::new(veritrail_access::RateLimit::new(per_second, burst))
            .map_err(|e| ApiError::new(Code::Internal, format!("invalid key rate limit: {e}")))?;
        let dummy_password_hash = users::dummy_password_hash().await?;
        let keys = ledger::LedgerKeys::load(store.as_ref(), &origin).await?;
        let witness = match &config.tsa {
            Some(tsa) => Some(Arc::new(witness::Witness::new(tsa, config.outbound_ca_pem.as_deref())?)),
            None => None,
        };
        let outbound = Arc::new(webhooks::client(&config)?);
        let mailer = match &config.smtp {
            Some(smtp) => Some(Arc::new(
                smtp::Mailer::new(smtp.clone(), config.outbound_ca_pem.as_deref())
                    .map_err(|e| ApiError::new(Code::Internal, format!("smtp: {e}")))?,
            )),
            None => None,
        };
        let alerting = Arc::new(alerting::Alerting::new(config.alerting.clone(), &pepper));
        // Alert details, webhook payloads and secrets are sealed under the tenant's key at rest.
        let alerts: Arc<dyn AlertStore> = Arc::new(sealed_alerts::SealedAlertStore::new(alerts, store.clone()));
        let state = AppState {
            store: store.clone(),
            alerts,
            alerting,
            config: Arc::new(config),
            pepper: pepper.into(),
            bootstrap_hash,
            metrics: Arc::new(metrics::ServerMetrics::default()),
            ledger: Arc::new(ledger::Ledger::new(keys, origin)),
            witness,
            classification: Arc::default(),
            key_rate_limit: Arc::new(key_rate_limit),
            access,
            login_throttle: Arc::new(veritrail_access::LoginThrottle::default()),
            dummy_password_hash,
            sso: Arc::default(),
            outbound,
            mailer,
        };
        audit::ensure_platform_ledger(&state).await?;
        let router = routes::router(state.clone()).layer(DefaultBodyLimit::max(max_body));
        Ok(Server { router, new_bootstrap_token, state })
    }
}

/// Serves `server` on `listener` (a `TcpListener` for HTTP, a [`TlsListener`] for HTTPS) until
/// `shutdown` is cancelled, then lets in-flight requests finish (at most 30 s) and shuts the
/// store down so that everything acknowledged is committed.
pub async fn serve(server: Server, listener: impl Into<Listener>, shutdown: CancellationToken) -> std::io::Result<()> {
    let Server { router, state, .. } = server;
    let interval = state.config.checkpoint_interval.unwrap_or(Duration::from_secs(1));
    let checkpointer_stop = CancellationToken::new();
    let checkpointer = tokio::spawn(ledger::run_checkpointer(state.clone(), interval, checkpointer_stop.clone()));
    let witness_stop = CancellationToken::new();
    let witness =
        state.witness.clone().map(|witness| tokio::spawn(witness::run(state.clone(), witness, witness_stop.clone())));
    let alerting_stop = CancellationToken::new();
    let engine =
        state.config.alerting.enabled.then(|| tokio::spawn(alerting::run(state.clone(), alerting_stop.clone())));
    let deliverer = tokio::spawn(webhooks::run(state.clone(), alerting_stop.clone()));
    let sweeper = tokio::spawn(users::run_session_sweeper(state.clone(), alerting_stop.clone()));
    let signal = shutdown.clone();
    let serving = listener.into().serve(router, async move { signal.cancelled().await });
    let result = tokio::select! {
        result = serving => result,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(Duration::from_secs(30)).await } => {
            tracing::warn!("requests still running 30 s after shutdown began; closing");
            Ok(())
        }
    };
    checkpointer_stop.cancel();
    let _ = checkpointer.await;
    // The engine appends its last alerts to the ledger before the final checkpoints.
    alerting_stop.cancel();
    if let Some(engine) = engine {
        let _ = engine.await;
    }
    let _ = deliverer.await;
    let _ = sweeper.await;
    // Everything acknowledged gets covered by a signed checkpoint before the store closes.
    ledger::checkpoint_all(&state).await;
    // Time-stamps under way may still be stored; the last checkpoint is witnessed at next start.
    witness_stop.cancel();
    if let Some(witness) = witness {
        let _ = witness.await;
    }
    if let Err(error) = state.store.shutdown().await {
        tracing::error!(%error, "store shutdown failed");
    }
    result
}
