//! The rule engine task: follows every tenant's committed ledger in seq order, feeds
//! [`veritrail_rules::Engine`], and stores what fires as alerts (with their webhook messages and
//! `audit.alert.raised` ledger events listing them).
//!
//! One task for all tenants, apart from ingest: it polls `Store::records_lean` (every
//! `poll_interval`, skipped while the store's append counter has not moved), opens each record
//! as far as the rules read it ([`veritrail_rules::Engine::needs`]), and runs the engine on the
//! blocking pool. It owns each tenant's engine and is the only writer of rules: rule changes
//! from the API are commands to it, so that each new rule version gets `effective_from_seq` =
//! the engine's next unevaluated seq, and a replay after a restart applies every version to the
//! same events as the live engine did.
//!
//! **Several nodes** sharing one alert store (PostgreSQL) share the tenants: every
//! [`RULES_CHECK_INTERVAL`] each node records itself alive and reads the live nodes
//! ([`AlertStore::engine_nodes`]), and runs the tenants [`engine_owner`] gives it (rendezvous
//! hashing: every node computes the same owner from the same list). A tenant that moves — a
//! node joined, left or stopped answering for [`ENGINE_NODE_TTL`] — is handed over through the
//! store: the old owner stores what it derived and its cursor and drops the engine; the new one
//! loads it as at a restart (below). While two nodes' lists differ (for about a second) both
//! may run a tenant or neither: the first is harmless (alerts are stored once per dedup key,
//! webhooks sent once per stored alert), the second delays it. A rule change is a command to
//! the engine of the node that took the call; if that node does not run the tenant it only
//! stores the change, starting at the tenant's stored cursor. The node running the tenant
//! notices changes made elsewhere through [`AlertStore::rule_change_counts`], read every
//! [`RULES_CHECK_INTERVAL`], and applies the tenant's stored rules as the local path does
//! ([`apply_stored_rules`]): kept versions keep their state, and a new version whose
//! `effective_from_seq` this engine has passed already is first caught up alone on the events
//! in between, so it fires what an engine that had the version all along would.
//!
//! **Restart** (the crate's protocol): load the rules, replay from the first seq whose
//! `received_at` is within `replay_horizon()` of the cursor's, tick, then process on. Alert ids
//! are derived from `(tenant, dedup_key)` under a server secret, the ledger events listing raised
//! alerts have ids derived from their first alert's id and are looked up again after a load
//! (`record_raised`), and `record_alerts` stores alerts and the cursor in one transaction:
//! whatever step a crash interrupts is redone without duplicates.
//!
//! **Erasure:** an `audit.erasure.performed` event in the live stream (appended after the
//! subject's keys are destroyed) has the tenant's engine rebuilt in the background — a fresh
//! engine with the same rules replays the ledger as it now reads, the subject's values
//! `"[erased]"`, as at a restart — and swapped in once caught up, so that no value of the
//! erased subject stays in its windows (an address a threshold counts by, values a new-value
//! rule has seen). Meanwhile the live engine goes on; erasures that arrive during a rebuild are
//! covered by the next one.
//!
//! **No feedback:** `audit.alert.raised` events are never fed to rules, so a rule matching
//! `audit.*` cannot trigger itself.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use veritrail_model::SealedMembers;
use veritrail_rules::{
    BusinessHours, DEFAULT_PACK_IDS, DryRun, DryRunReport, Engine, EngineConfig, EventInput, EventNeeds, Firing, Rule,
    RuleId, RuleSpec, VIEW_MEMBER, default_pack,
};
use veritrail_store::{
    Alert, AlertStatus, AlertStore, NewAlert, OutboundMessage, Store, StoredEvent, StoredRule, engine_owner,
};

use crate::AppState;
use crate::audit;
use crate::error::{ApiError, Code};
use crate::ids;
use crate::rule_thread::RuleThread;

/// Records read and evaluated per step; between steps the task answers rule commands.
const BATCH: u32 = 2000;
/// Most events one tenant gets evaluated per pass, so that one busy tenant cannot starve the
/// others (or rule commands).
const MAX_EVENTS_PER_PASS: u64 = 20_000;
/// How often silences are checked (`Engine::tick`).
const TICK_INTERVAL: Duration = Duration::from_secs(5);
/// Ticks run this far behind the clock: an event whose commit is still under way may carry a
/// slightly older `received_at`, and a tick must never run ahead of events still coming.
const TICK_MARGIN: SignedDuration = SignedDuration::from_secs(2);
/// How often the engine compares every tenant's rule change count with the one its rules were
/// loaded at: changes taken by other nodes reach this one's engine within about this long.
const RULES_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A node whose engine has not recorded itself alive for this long is taken for gone, and its
/// tenants move to the other nodes.
const ENGINE_NODE_TTL: Duration = Duration::from_secs(5);
/// The cursor alone (no alert fired) is stored at most this often per tenant; a restart replays
/// the rest.
const CURSOR_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// Alerts derived before they are stored, even within a pass.
const MAX_PENDING_ALERTS: usize = 1000;
/// The action of the ledger event recording a raised alert: never fed back to rules.
pub(crate) const ALERT_RAISED_ACTION: &str = "audit.alert.raised";
/// The action of the ledger event recording an erasure: the engine is rebuilt after it.
const ERASURE_ACTION: &str = "audit.erasure.performed";
/// Most rules one tenant may have (the default pack included).
pub(crate) const MAX_RULES_PER_TENANT: usize = 200;

/// Retries of webhook deliveries: exponential backoff with ±20 % jitter from `first` up to
/// `max` between attempts, for at least `give_up_after` (then the delivery is dead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failure (default 5 s).
    pub first: Duration,
    /// Longest wait between attempts (default 1 h).
    pub max: Duration,
    /// How long after the first attempt of a round retries go on (default 24 h).
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first: Duration::from_secs(5),
            max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// Monitoring settings (`alerting`, `webhook_*` in the configuration file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertingConfig {
    /// Run the rule engine (default true). Off, rules can still be edited and alerts read,
    /// but nothing is evaluated (for the benchmark of its cost).
    pub enabled: bool,
    /// How often the engine looks for newly committed events (default 100 ms).
    pub poll_interval: Duration,
    /// Let webhooks reach loopback, private, link-local and metadata addresses (default false:
    /// refused, checked on every send after name resolution).
    pub webhook_allow_private: bool,
    /// Timeout of one webhook request, connection included (default 10 s).
    pub webhook_timeout: Duration,
    /// Retry schedule of webhook deliveries.
    pub retry: RetryPolicy,
    /// Where the engine keeps its node id across restarts, for stores several nodes share (the
    /// binary: `engine-node` in the data directory, with `--database-url`): a node restarted
    /// after a crash then takes its tenants back at once instead of after [`ENGINE_NODE_TTL`].
    /// `None`: a new id per start.
    pub node_id_file: Option<std::path::PathBuf>,
    /// How long a rebuild after an erasure waits before it replays (default none): lets tests
    /// change a tenant's rules while one is under way. Not a setting of the binary.
    #[doc(hidden)]
    pub rebuild_delay: Duration,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            enabled: true,
            poll_interval: Duration::from_millis(100),
            webhook_allow_private: false,
            webhook_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            node_id_file: None,
            rebuild_delay: Duration::ZERO,
        }
    }
}

/// Counters of the engine and the deliveries, for `/metrics`.
#[derive(Default)]
pub(crate) struct AlertingMetrics {
    pub(crate) events_evaluated: AtomicU64,
    /// Engine rebuilds started after an erasure (again when one is discarded: its rules changed
    /// meanwhile, or it failed).
    pub(crate) rebuilds_started: AtomicU64,
    /// Engines rebuilt after an erasure and swapped in.
    pub(crate) rebuilds: AtomicU64,
    pub(crate) alerts_raised: AtomicU64,
    pub(crate) engine_errors: AtomicU64,
    pub(crate) deliveries_succeeded: AtomicU64,
    pub(crate) deliveries_failed: AtomicU64,
    pub(crate) deliveries_dead: AtomicU64,
    /// Tenants whose engines this node runs.
    pub(crate) tenants_run: AtomicU64,
    /// Live engine nodes on the store (1 for a store that serves one node).
    pub(crate) nodes: AtomicU64,
    /// Cumulative counts of alert latency (fired → stored) per bucket of [`LATENCY_BUCKETS`].
    pub(crate) latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    pub(crate) latency_sum_micros: AtomicU64,
}

/// Upper bounds (seconds) of the alert latency histogram; the last is +Inf.
pub(crate) const LATENCY_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, f64::INFINITY];

impl AlertingMetrics {
    fn observe_latency(&self, seconds: f64) {
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_sum_micros.fetch_add((seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }
}

/// A change to a tenant's rules, from the API.
pub(crate) enum RuleChange {
    Create(RuleSpec),
    Update(RuleId, RuleSpec),
    Delete(RuleId),
}

/// What a rule change did.
pub(crate) struct RuleChanged {
    /// The rule after the change (for a delete: the version deleted).
    pub(crate) rule: Rule,
    pub(crate) stored: StoredRule,
    /// The version it replaced, for updates.
    pub(crate) previous_version: Option<u32>,
}

struct Command {
    tenant: String,
    change: RuleChange,
    reply: oneshot::Sender<Result<RuleChanged, ApiError>>,
}

/// The server's handle on monitoring: rule commands to the engine task, wake-ups of the
/// delivery task, the alert-id key and the counters.
pub(crate) struct Alerting {
    config: AlertingConfig,
    commands: mpsc::Sender<Command>,
    receiver: Mutex<Option<mpsc::Receiver<Command>>>,
    /// Wakes the webhook delivery task (new messages, redeliveries).
    pub(crate) deliveries: Notify,
    /// Counts endpoint deletions on this node: the delivery task drops the endpoints it holds
    /// when it changes (other nodes' deletions reach it with its next read of due deliveries).
    pub(crate) endpoints_deleted: std::sync::atomic::AtomicU64,
    /// Key of alert ids: HMAC of `tenant \n dedup_key`, so that ids are stable across replays
    /// but not predictable by clients (who could otherwise take an alert's ledger event id).
    id_key: [u8; 32],
    pub(crate) metrics: AlertingMetrics,
    /// Where rules are evaluated: a thread below the ingest path's priority.
    rule_thread: RuleThread,
}

impl Alerting {
    /// The handle; `secret` is the installation's pepper (alert ids are keyed with a key
    /// derived from it).
    pub(crate) fn new(config: AlertingConfig, secret: &[u8]) -> Alerting {
        let (commands, receiver) = mpsc::channel(64);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("hmac accepts keys of any length");
        mac.update(b"veritrail.alert-ids.v1");
        Alerting {
            config,
            commands,
            receiver: Mutex::new(Some(receiver)),
            deliveries: Notify::new(),
            endpoints_deleted: std::sync::atomic::AtomicU64::new(0),
            id_key: mac.finalize().into_bytes().into(),
            metrics: AlertingMetrics::default(),
            rule_thread: RuleThread::default(),
        }
    }

    pub(crate) fn config(&self) -> &AlertingConfig {
        &self.config
    }

    /// The id of the alert for `dedup_key` in `tenant`: `al_` + 26 base32 characters, the
    /// first 10 [`ids::ordered`] by `seq` (the ledger position the firing is about, named in
    /// its dedup key: the same firing derived again gets the same id), the other 16 from a keyed
    /// hash of the tenant and the dedup key.
    pub(crate) fn alert_id(&self, tenant: &str, dedup_key: &str, seq: u64) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.id_key).expect("hmac accepts keys of any length");
        mac.update(tenant.as_bytes());
        mac.update(b"\n");
        mac.update(dedup_key.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut tail = [0u8; ids::TAIL_CHARS];
        tail.copy_from_slice(&digest[..ids::TAIL_CHARS]);
        format!("al_{}", ids::ordered(seq, &tail))
    }

    /// Applies a rule change: through the engine task when it runs (so the new version starts
    /// at its next unevaluated seq), directly otherwise (starting at the ledger's next seq).
    pub(crate) async fn change_rules(
        &self,
        state: &AppState,
        tenant: &str,
        change: RuleChange,
    ) -> Result<RuleChanged, ApiError> {
        if !self.config.enabled {
            let next_seq = state.store.tree_head(tenant).await?.size;
            return apply_rule_change(state.alerts.as_ref(), tenant, change, next_seq).await;
        }
        let (reply, answer) = oneshot::channel();
        let command = Command { tenant: tenant.to_string(), change, reply };
        let unavailable = || ApiError::new(Code::Unavailable, "the rule engine is not running; retry shortly");
        self.commands.send(command).await.map_err(|_| unavailable())?;
        answer.await.map_err(|_| unavailable())?
    }
}

/// The default pack as stored for a tenant whose engine starts at `next_seq`.
pub(crate) fn default_rules(next_seq: u64, now: Timestamp) -> Vec<StoredRule> {
    default_pack(&BusinessHours::office_hours_utc())
        .into_iter()
        .map(|rule| stored_rule(&rule.effective_from(next_seq), now, now))
        .collect()
}

/// True for the ids of the default pack.
pub(crate) fn is_builtin(id: &str) -> bool {
    DEFAULT_PACK_IDS.contains(&id)
}

fn stored_rule(rule: &Rule, created_at: Timestamp, updated_at: Timestamp) -> StoredRule {
    StoredRule {
        id: rule.id().as_str().to_string(),
        version: rule.version(),
        definition: rule.to_json(),
        created_at,
        updated_at,
    }
}

/// Reads a stored rule back; `None` (logged) when it no longer parses.
pub(crate) fn parse_rule(stored: &StoredRule) -> Option<Rule> {
    match Rule::from_json(&stored.definition) {
        Ok(rule) => Some(rule),
        Err(error) => {
            tracing::error!(rule = %stored.id, %error, "stored rule is unreadable; it is not evaluated");
            None
        }
    }
}

async fn apply_rule_change(
    alerts: &dyn AlertStore,
    tenant: &str,
    change: RuleChange,
    next_seq: u64,
) -> Result<RuleChanged, ApiError> {
    let now = Timestamp::now();
    match change {
        RuleChange::Create(spec) => {
            if alerts.rules(tenant).await?.len() >= MAX_RULES_PER_TENANT {
                return Err(ApiError::new(
                    Code::TooMany,
                    format!("a tenant has at most {MAX_RULES_PER_TENANT} rules; delete one first"),
                ));
            }
            let id = RuleId::parse(&format!("rl_{}", ids::random_base32(20)?))
                .map_err(|e| ApiError::new(Code::Internal, format!("generated rule id: {e}")))?;
            let rule = Rule::new(id, spec).effective_from(next_seq);
            let stored = stored_rule(&rule, now, now);
            alerts.create_rule(tenant, stored.clone()).await?;
            Ok(RuleChanged { rule, stored, previous_version: None })
        }
        RuleChange::Update(id, spec) => {
            let current = alerts.rule(tenant, id.as_str()).await?.ok_or_else(no_such_rule)?;
            let previous =
                parse_rule(&current).ok_or_else(|| ApiError::new(Code::Internal, "the stored rule is unreadable"))?;
            let rule = previous.updated(spec).effective_from(next_seq);
            let stored = stored_rule(&rule, current.created_at, now);
            if !alerts.update_rule(tenant, stored.clone(), current.version).await? {
                return Err(ApiError::new(Code::InvalidState, "the rule was changed or deleted meanwhile; retry"));
            }
            Ok(RuleChanged { rule, stored, previous_version: Some(current.version) })
        }
        RuleChange::Delete(id) => {
            let current = alerts.rule(tenant, id.as_str()).await?.ok_or_else(no_such_rule)?;
            let rule =
                parse_rule(&current).ok_or_else(|| ApiError::new(Code::Internal, "the stored rule is unreadable"))?;
            if !alerts.delete_rule(tenant, id.as_str(), now).await? {
                return Err(no_such_rule());
            }
            Ok(RuleChanged { rule, stored: current, previous_version: None })
        }
    }
}

pub(crate) fn no_such_rule() -> ApiError {
    ApiError::not_found("no rule with this id")
}

/// The event as rules see it (the API view without `leaf_hash`); `None` (logged) when the
/// record cannot be opened.
pub(crate) fn open_view(stored: &StoredEvent) -> Option<Value> {
    match veritrail_model::open(&stored.sealed, stored.personal.as_ref()) {
        Ok(view) => Some(view),
        Err(error) => {
            tracing::error!(%error, seq = stored.seq, "sealed record unreadable; not evaluated");
            None
        }
    }
}

/// True for events rules must not see.
fn hidden_from_rules(view: &Value) -> bool {
    view.get("action").and_then(Value::as_str) == Some(ALERT_RAISED_ACTION)
}

/// What the engine is fed of one record: the view, and when it was cut down to the action and
/// the rules' paths, the input's other fields taken from the record (`None`: from the view).
struct RuleView {
    view: Rc<Value>,
    /// The record is an erasure's ledger event.
    erasure: bool,
    times: Option<(Timestamp, Timestamp)>,
    /// Where the id is, for a cut-down view of a record the store gave without one
    /// (`Store::records_lean`).
    id: Option<IdIn>,
}

/// Where an event's id is when the store left `StoredEvent::id` empty.
enum IdIn {
    /// The bytes of the sealed record between the quotes of its `id` member (no escapes).
    Sealed(std::ops::Range<usize>),
    /// Unescaped from the member.
    Owned(String),
}

/// Where the id of the record `members` reads is (its `id` member).
fn id_in(members: &SealedMembers<'_>, sealed: &[u8]) -> Option<IdIn> {
    match members.string("id")? {
        std::borrow::Cow::Borrowed(id) => {
            let start = (id.as_ptr() as usize).checked_sub(sealed.as_ptr() as usize)?;
            Some(IdIn::Sealed(start..start + id.len()))
        }
        std::borrow::Cow::Owned(id) => Some(IdIn::Owned(id)),
    }
}

/// Views kept by [`SealedMembers::plain_view_key`] on the thread that evaluates rules. Most
/// events are read only as far as their action and a path or two (`logging_stopped` reads
/// `metadata.source.service` of every event), so a few hundred views serve nearly all of them:
/// each is built once and shared instead of being built, and its memory touched, per event.
/// Views depend on nothing but their key, so one cache serves every tenant and rule version.
#[derive(Default)]
struct ViewCache {
    views: HashMap<String, Rc<Value>>,
    /// The key of the record at hand (kept to reuse its buffer).
    key: String,
}

/// Views [`ViewCache`] holds at most (emptied when full): a few hundred kilobytes.
const VIEW_CACHE_ENTRIES: usize = 1024;

thread_local! {
    static VIEW_CACHE: std::cell::RefCell<ViewCache> = std::cell::RefCell::new(ViewCache::default());
}

impl ViewCache {
    /// `members.open_paths(personal, paths)`, from the cache when the view has a key.
    fn open_paths(
        &mut self,
        members: &SealedMembers<'_>,
        personal: Option<&veritrail_model::PersonalData>,
        paths: &[&str],
    ) -> Result<Rc<Value>, veritrail_model::OpenError> {
        if !members.plain_view_key(paths, &mut self.key)? {
            return members.open_paths(personal, paths).map(Rc::new);
        }
        if let Some(view) = self.views.get(self.key.as_str()) {
            return Ok(Rc::clone(view));
        }
        let view = Rc::new(members.open_paths(personal, paths)?);
        if self.views.len() >= VIEW_CACHE_ENTRIES {
            self.views.clear();
        }
        self.views.insert(self.key.clone(), Rc::clone(&view));
        Ok(view)
    }
}

/// The event as `engine` may read it (`Engine::needs`), or why there is none: an event rules
/// must not see, or a record that cannot be opened (logged). Events are opened only as far as the rules
/// read them: the action, plus what the admitting rules' paths name — below `metadata` only
/// those paths, elsewhere their whole members, with only their commitments checked — while the
/// seq, id and times the engine reads of every event come from the record unparsed; events a
/// rule filtering on more than the action admits are opened whole. The engine fires on these
/// views exactly as on whole ones (tested in `veritrail-rules` and `veritrail-model`), so only
/// the cost changes.
fn view_for_rules(engine: &Engine, stored: &StoredEvent, cache: &mut ViewCache) -> Result<RuleView, NoView> {
    let unreadable = |error: &dyn std::fmt::Display| {
        tracing::error!(%error, seq = stored.seq, "sealed record unreadable; not evaluated");
    };
    // Records the embedded store sealed in this process come with their members' layout.
    let laid_out = stored.layout.as_ref().and_then(|layout| SealedMembers::from_layout(&stored.sealed, layout).ok());
    let members = match laid_out.map_or_else(|| SealedMembers::parse(&stored.sealed), Ok) {
        Ok(members) => members,
        Err(error) => {
            unreadable(&error);
            return Err(NoView::Unreadable);
        }
    };
    let action = members.str("action");
    if action == Some(ALERT_RAISED_ACTION) {
        return Err(NoView::Raised);
    }
    let erasure = action == Some(ERASURE_ACTION);
    let needs = match action {
        Some(action) => engine.needs(action),
        None => EventNeeds::View,
    };
    let (opened, times) = match needs {
        EventNeeds::View => (veritrail_model::open(&stored.sealed, stored.personal.as_ref()).map(Rc::new), None),
        EventNeeds::Paths(mut paths) => {
            let time = |member: &str| members.str(member).and_then(|text| text.parse::<Timestamp>().ok());
            let Some(times) = time("occurred_at").zip(time("received_at")) else {
                unreadable(&"occurred_at or received_at is not an RFC 3339 timestamp");
                return Err(NoView::Unreadable);
            };
            paths.push(VIEW_MEMBER);
            (cache.open_paths(&members, stored.personal.as_ref(), &paths), Some(times))
        }
    };
    // A whole view has the id; a cut-down one is given it from the record.
    let id = match times {
        Some(_) if stored.id.is_empty() => match id_in(&members, &stored.sealed) {
            Some(id) => Some(id),
            None => {
                unreadable(&"the record has no string id");
                return Err(NoView::Unreadable);
            }
        },
        _ => None,
    };
    match opened {
        Ok(view) if hidden_from_rules(&view) => Err(NoView::Raised),
        Ok(view) => Ok(RuleView { view, erasure, times, id }),
        Err(error) => {
            unreadable(&error);
            Err(NoView::Unreadable)
        }
    }
}

/// Why a record gives the engine no view.
enum NoView {
    /// An `audit.alert.raised` event: rules must not see it.
    Raised,
    /// The record cannot be opened (logged).
    Unreadable,
}

impl RuleView {
    /// What the engine is fed of `stored`, this view of it; `None` (logged) when the view lacks
    /// the members the engine reads of every event.
    fn input<'a>(&'a self, stored: &'a StoredEvent) -> Option<EventInput<'a>> {
        let input = match self.times {
            Some((occurred_at, received_at)) => {
                let id = match &self.id {
                    None => stored.id.as_str(),
                    Some(IdIn::Owned(id)) => id.as_str(),
                    Some(IdIn::Sealed(range)) => std::str::from_utf8(stored.sealed.get(range.clone())?).ok()?,
                };
                Ok(EventInput { view: &self.view, seq: stored.seq, id, occurred_at, received_at })
            }
            None => EventInput::from_view(&self.view),
        };
        input.map_err(|error| tracing::error!(%error, seq = stored.seq, "event not evaluated")).ok()
    }
}

/// The alert as the API and webhooks show it.
pub(crate) fn alert_json(alert: &Alert) -> Value {
    json!({
        "id": alert.id,
        "rule": alert.rule_id,
        "rule_version": alert.rule_version,
        "severity": alert.severity,
        "status": alert.status.as_str(),
        "group_key": alert.group_key,
        "event_ids": alert.event_ids,
        "event_count": alert.event_count,
        "trigger_seq": alert.trigger_seq,
        "started_at": alert.started_at.to_string(),
        "fired_at": alert.fired_at.to_string(),
        "summary": alert.summary,
        "status_changed_by": alert.status_changed_by,
        "status_changed_at": alert.status_changed_at.map(|t| t.to_string()),
        "status_note": alert.status_note,
    })
}

/// A webhook message about `alert` (Standard Webhooks payload: `type`, `timestamp`, `data`).
pub(crate) fn message(
    event_type: &str,
    tenant: &str,
    alert: &Alert,
    now: Timestamp,
) -> Result<OutboundMessage, ApiError> {
    let mut data = alert_json(alert);
    data["tenant"] = json!(tenant);
    let payload = json!({"type": event_type, "timestamp": now.to_string(), "data": data});
    Ok(OutboundMessage {
        // Time-ordered, so deliveries are inserted at the end of their index (see `ids::ordered`).
        id: format!("msg_{}", ids::ordered(now.as_millisecond().max(0) as u64, &ids::random_bytes()?)),
        event_type: event_type.to_string(),
        alert_id: alert.id.clone(),
        payload: payload.to_string(),
        created_at: now,
    })
}

/// A firing as JSON (dry runs).
pub(crate) fn firing_json(firing: &Firing) -> Value {
    json!({
        "rule": firing.rule_id.as_str(),
        "rule_version": firing.rule_version,
        "severity": firing.severity.as_str(),
        "group_key": firing.group_key.to_json(),
        "event_ids": firing.event_ids,
        "event_count": firing.event_count,
        "trigger_seq": firing.trigger_seq,
        "started_at": firing.started_at.to_string(),
        "fired_at": firing.fired_at.to_string(),
        "summary": firing.summary,
    })
}

/// One tenant's engine and where it stands.
struct TenantEngine {
    engine: Engine,
    /// First seq not yet evaluated.
    next_seq: u64,
    /// The cursor as stored.
    stored_next_seq: u64,
    /// Alerts derived but not yet stored (a failed store write is retried before going on).
    pending: Vec<NewAlert>,
    /// Up to which seq `pending` was evaluated.
    pending_next_seq: u64,
    last_cursor_write: Instant,
    /// True when the last pass read everything there was.
    caught_up: bool,
    /// From the load until the engine has caught up: the last flush before the load may have
    /// appended `audit.alert.raised` events for alerts it did not store (`record_raised`).
    recovering: bool,
    /// Alerts listed by such an event (found by the id it would have, or met in the records
    /// evaluated while recovering): not listed again.
    ledgered: HashSet<String>,
    /// The tenant's rule change count the rules were loaded at; `None` when unknown (the next
    /// check compares the rules themselves).
    rule_changes: Option<u64>,
    /// Which load of the tenant this is (a rebuild started for an earlier one is not swapped in).
    generation: u64,
    /// Whether an erasure event was evaluated live that no rebuild started yet covers.
    erased: bool,
    /// Whether a rebuild of this engine is under way.
    rebuilding: bool,
}

/// Numbers the loads of tenant engines ([`TenantEngine::generation`]).
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// An engine rebuilt from the ledger up to `to`, for the load `generation` of `tenant`.
struct Rebuilt {
    tenant: String,
    generation: u64,
    to: u64,
    engine: Result<Engine, ApiError>,
}

/// Runs the engine until `stop`; stores the cursors before returning.
pub(crate) async fn run(state: AppState, stop: CancellationToken) {
    let Some(mut commands) = state.alerting.receiver.lock().await.take() else {
        tracing::error!("the rule engine was started twice");
        return;
    };
    let node = match node_id(state.alerting.config.node_id_file.as_deref()) {
        Ok(id) => id,
        Err(error) => {
            tracing::error!(%error, "the rule engine cannot name its node; not started");
            return;
        }
    };
    let mut engines: HashMap<String, TenantEngine> = HashMap::new();
    let mut membership = Membership { node, nodes: None };
    membership.refresh(&state, &mut engines).await;
    let mut last_appended = None;
    let mut last_full_pass = Instant::now();
    let mut next_tick = Instant::now() + TICK_INTERVAL;
    let mut poll = tokio::time::interval(state.alerting.config.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rules_check = tokio::time::interval_at(Instant::now() + RULES_CHECK_INTERVAL, RULES_CHECK_INTERVAL);
    rules_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rebuilds: JoinSet<Rebuilt> = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(done) = rebuilds.join_next(), if !rebuilds.is_empty() => match done {
                Ok(rebuilt) => finish_rebuild(&state, &mut engines, rebuilt).await,
                Err(error) => {
                    // The tenant is unknown: every rebuild under way starts again.
                    tracing::error!(%error, "rule engine rebuild task failed");
                    for engine in engines.values_mut().filter(|engine| engine.rebuilding) {
                        engine.rebuilding = false;
                        engine.erased = true;
                    }
                }
            },
            Some(command) = commands.recv() => {
                let tenant = &command.tenant;
                let result = if membership.runs(tenant) {
                    handle_command(&state, &mut engines, tenant, command.change).await
                } else {
                    handle_remote_command(&state, tenant, command.change).await
                };
                let _ = command.reply.send(result);
            }
            _ = rules_check.tick() => {
                membership.refresh(&state, &mut engines).await;
                follow_rule_changes(&state, &mut engines).await;
            }
            _ = poll.tick() => {
                // The append counter tells whether any ledger grew; a full pass every second
                // covers stores that do not count.
                let appended = state.store.stats().events_appended;
                let now = Instant::now();
                let stale = now.duration_since(last_full_pass) >= Duration::from_secs(1);
                if last_appended != Some(appended) || stale {
                    last_appended = Some(appended);
                    last_full_pass = now;
                    let tick = now >= next_tick;
                    if tick {
                        next_tick = now + TICK_INTERVAL;
                    }
                    pass(&state, &mut engines, &membership, tick).await;
                    for (tenant, engine) in engines.iter_mut() {
                        if engine.erased && !engine.rebuilding {
                            start_rebuild(&state, tenant, engine, &mut rebuilds);
                        }
                    }
                }
            }
        }
    }
    for (tenant, engine) in &mut engines {
        hand_over(&state, tenant, engine).await;
    }
    if let Err(error) = state.alerts.leave_engine_nodes(&membership.node).await {
        tracing::warn!(%error, "cannot leave the rule engine nodes at shutdown");
    }
}

/// Starts rebuilding `engine` in the background after an erasure: a fresh engine with the same
/// rules replays the ledger up to where `engine` stands, reading the erased subject's values as
/// `"[erased]"` (the restart protocol's replay). Erasures evaluated from now on are covered by
/// the next rebuild.
fn start_rebuild(state: &AppState, tenant: &str, engine: &mut TenantEngine, rebuilds: &mut JoinSet<Rebuilt>) {
    engine.erased = false;
    engine.rebuilding = true;
    let (state, tenant) = (state.clone(), tenant.to_string());
    let rules: Vec<Rule> = engine.engine.rules().cloned().collect();
    let (generation, to) = (engine.generation, engine.next_seq);
    state.alerting.metrics.rebuilds_started.fetch_add(1, Ordering::Relaxed);
    rebuilds.spawn(async move {
        tokio::time::sleep(state.alerting.config.rebuild_delay).await;
        let engine = engine_at(&state, &tenant, rules, to).await;
        Rebuilt { tenant, generation, to, engine }
    });
}

/// Swaps a rebuilt engine's rules and state in for the live engine's, after feeding it what the
/// live engine evaluated meanwhile (replayed: those firings are stored). Nothing is swapped for
/// an engine loaded again meanwhile; a rebuild that failed, or whose rules changed meanwhile,
/// is started again.
async fn finish_rebuild(state: &AppState, engines: &mut HashMap<String, TenantEngine>, rebuilt: Rebuilt) {
    let Rebuilt { tenant, generation, to, engine: fresh } = rebuilt;
    let Some(live) = engines.get_mut(&tenant).filter(|live| live.generation == generation) else { return };
    live.rebuilding = false;
    let caught_up = match fresh {
        Ok(fresh) if fresh.rules().eq(live.engine.rules()) => {
            feed_events(state, &tenant, fresh, to, live.next_seq, Feed::Replay).await.map(|(fresh, _)| Some(fresh))
        }
        Ok(_) => Ok(None),
        Err(error) => Err(error),
    };
    match caught_up {
        Ok(Some(fresh)) => {
            live.engine.adopt_rules(fresh);
            state.alerting.metrics.rebuilds.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%tenant, "rule engine state rebuilt after an erasure");
        }
        Ok(None) => live.erased = true,
        Err(error) => {
            tracing::warn!(%tenant, error = %error.message, "cannot rebuild the rule engine after an erasure; trying again");
            live.erased = true;
        }
    }
}

/// Length of the random part of a node id (base32, 80 bits).
const NODE_ID_CHARS: usize = 16;

/// This node's engine id: read from `file` when it holds one, else new (and written there).
fn node_id(file: Option<&std::path::Path>) -> Result<String, String> {
    let fresh = || ids::random_base32(NODE_ID_CHARS).map(|id| format!("node_{id}")).map_err(|e| e.message);
    let Some(file) = file else { return fresh() };
    if let Ok(text) = std::fs::read_to_string(file) {
        let id = text.trim();
        let valid = id.strip_prefix("node_").is_some_and(|rest| {
            rest.len() == NODE_ID_CHARS && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        if valid {
            return Ok(id.to_string());
        }
        tracing::warn!(file = %file.display(), "engine node id file holds no node id; writing a new one");
    }
    let id = fresh()?;
    if let Some(dir) = file.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(file, format!("{id}\n")).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(id)
}

/// Which tenants this node's engine runs.
struct Membership {
    /// This node's id on the store (random, kept in `AlertingConfig::node_id_file` if set).
    node: String,
    /// The live engine nodes, as last read; `None`: this node runs every tenant (a store for
    /// one node, or none read yet).
    nodes: Option<Vec<String>>,
}

impl Membership {
    fn runs(&self, tenant: &str) -> bool {
        match &self.nodes {
            None => true,
            Some(nodes) => engine_owner(nodes, tenant).is_none_or(|owner| owner == self.node),
        }
    }

    /// Records this node alive and reads the live nodes (on failure the last list stays), then
    /// hands over the engines of tenants now run elsewhere.
    async fn refresh(&mut self, state: &AppState, engines: &mut HashMap<String, TenantEngine>) {
        match state.alerts.engine_nodes(&self.node, ENGINE_NODE_TTL).await {
            Ok(nodes) => {
                let count = nodes.as_ref().map_or(1, Vec::len);
                state.alerting.metrics.nodes.store(count as u64, Ordering::Relaxed);
                self.nodes = nodes;
            }
            Err(error) => tracing::warn!(%error, "rule engine cannot read the engine nodes"),
        }
        let moved: Vec<String> = engines.keys().filter(|tenant| !self.runs(tenant)).cloned().collect();
        for tenant in moved {
            if let Some(mut engine) = engines.remove(&tenant) {
                hand_over(state, &tenant, &mut engine).await;
                tracing::info!(%tenant, "rule engine handed over to another node");
            }
        }
        state.alerting.metrics.tenants_run.store(engines.len() as u64, Ordering::Relaxed);
    }
}

/// Stores what `engine` derived and its cursor, durably, before it is dropped (at shutdown, or
/// when its tenant moves to another node, which loads it from there).
async fn hand_over(state: &AppState, tenant: &str, engine: &mut TenantEngine) {
    if let Err(error) = flush(state, tenant, engine).await {
        tracing::warn!(%tenant, error = %error.message, "cannot store the alerts of a rule engine being dropped");
        return;
    }
    if engine.next_seq > engine.stored_next_seq
        && let Err(error) = state.alerts.set_engine_cursor(tenant, engine.next_seq, true).await
    {
        tracing::warn!(%tenant, %error, "cannot store the cursor of a rule engine being dropped");
    }
}

async fn handle_command(
    state: &AppState,
    engines: &mut HashMap<String, TenantEngine>,
    tenant: &str,
    change: RuleChange,
) -> Result<RuleChanged, ApiError> {
    if !engines.contains_key(tenant) {
        let loaded = load_tenant(state, tenant).await?;
        engines.insert(tenant.to_string(), loaded);
    }
    let Some(engine) = engines.get_mut(tenant) else {
        return Err(ApiError::new(Code::Internal, "tenant engine vanished"));
    };
    // Alerts already derived go first, so that the stored cursor covers what the old rule
    // version evaluated before the new version takes over.
    flush(state, tenant, engine).await?;
    let changed = apply_rule_change(state.alerts.as_ref(), tenant, change, engine.next_seq).await?;
    state.alerts.set_engine_cursor(tenant, engine.next_seq, true).await?;
    engine.stored_next_seq = engine.next_seq;
    // The same path as changes from other nodes (one of which may have landed meanwhile); the
    // count is read again at the next check, which finds this change running already.
    engine.rule_changes = None;
    if let Err(error) = apply_stored_rules(state, tenant, engine).await {
        // Stored all the same: the next check applies it, caught up from its first seq.
        state.alerting.metrics.engine_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%tenant, error = %error.message, "rule change stored but not applied yet");
    }
    Ok(changed)
}

/// A rule change for a tenant whose engine runs on another node: stored with the tenant's
/// stored cursor as the new version's first seq, without loading an engine here. The node
/// running the tenant takes it up within [`RULES_CHECK_INTERVAL`], catching the new version up
/// on the events it has evaluated since that cursor, as for any change made elsewhere.
async fn handle_remote_command(state: &AppState, tenant: &str, change: RuleChange) -> Result<RuleChanged, ApiError> {
    let next_seq = installed_cursor(state, tenant).await?;
    apply_rule_change(state.alerts.as_ref(), tenant, change, next_seq).await
}

/// What [`apply_stored_rules`] changed in an engine.
struct RulesApplied {
    /// Rule versions that started.
    started: usize,
    /// Rule versions that stopped (replaced, deleted or disabled).
    stopped: usize,
    /// Events the started versions were caught up on.
    caught_up: u64,
}

/// Brings a tenant's engine to its stored rules exactly as a local change is applied: a rule
/// the engine runs at the same version and `effective_from_seq` is left alone (its state
/// kept), replaced, deleted and disabled versions stop, a new version evaluates from its
/// `effective_from_seq` on. When the engine has passed that seq already (another node took the
/// change, behind this one or a moment before this one looked), the new versions first run
/// alone over the events in between ([`catch_up`]), what they fire is stored, and the engine
/// adopts their state. The fallible steps come first: on error the engine is as it was, or
/// has the new rules with their alerts still pending.
async fn apply_stored_rules(
    state: &AppState,
    tenant: &str,
    engine: &mut TenantEngine,
) -> Result<RulesApplied, ApiError> {
    let rules = load_rules(state.alerts.as_ref(), tenant).await?;
    let version = |rule: &Rule| (rule.id().clone(), rule.version(), rule.effective_from_seq());
    let running: HashSet<_> = engine.engine.rules().map(version).collect();
    let wanted: HashSet<_> = rules.iter().filter(|rule| rule.spec().enabled()).map(version).collect();
    let late: Vec<Rule> = rules
        .iter()
        .filter(|rule| {
            rule.spec().enabled() && rule.effective_from_seq() < engine.next_seq && !running.contains(&version(rule))
        })
        .cloned()
        .collect();
    let applied = RulesApplied {
        started: wanted.difference(&running).count(),
        stopped: running.difference(&wanted).count(),
        caught_up: late.iter().map(|rule| engine.next_seq - rule.effective_from_seq()).max().unwrap_or(0),
    };
    // Alerts already derived go first, as for a local change.
    flush(state, tenant, engine).await?;
    let mut caught_up = None;
    if let Some(from) = late.iter().map(Rule::effective_from_seq).min() {
        let (side, firings) = catch_up(state, tenant, late, from, engine.next_seq).await?;
        caught_up = Some((side, new_alerts(state, tenant, firings)?));
    }
    engine.engine.set_rules(rules);
    if let Some((side, alerts)) = caught_up {
        engine.engine.adopt_rules(side);
        engine.pending.extend(alerts);
        engine.pending_next_seq = engine.next_seq;
    }
    flush(state, tenant, engine).await?;
    Ok(applied)
}

/// Runs `rules` alone, in a fresh engine, over the events `[from, to)`: the state they would
/// have in an engine that had them all along, and what they fired meanwhile.
async fn catch_up(
    state: &AppState,
    tenant: &str,
    rules: Vec<Rule>,
    from: u64,
    to: u64,
) -> Result<(Engine, Vec<Firing>), ApiError> {
    let mut engine = Engine::new(EngineConfig::default());
    engine.set_rules(rules);
    feed_events(state, tenant, engine, from, to, Feed::Process).await
}

/// Applies the rules other nodes changed to the engines of their tenants: one read of every
/// tenant's rule change count, and [`apply_stored_rules`] for each loaded tenant whose count
/// is not the one its engine's rules were loaded at.
async fn follow_rule_changes(state: &AppState, engines: &mut HashMap<String, TenantEngine>) {
    if engines.is_empty() {
        return;
    }
    let counts: HashMap<String, u64> = match state.alerts.rule_change_counts().await {
        Ok(counts) => counts.into_iter().collect(),
        Err(error) => {
            tracing::warn!(%error, "rule engine cannot read rule changes");
            return;
        }
    };
    for (tenant, engine) in engines.iter_mut() {
        let count = counts.get(tenant).copied().unwrap_or(0);
        if engine.rule_changes == Some(count) {
            continue;
        }
        match apply_stored_rules(state, tenant, engine).await {
            Ok(applied) => {
                engine.rule_changes = Some(count);
                if applied.started + applied.stopped > 0 {
                    tracing::info!(
                        %tenant,
                        started = applied.started,
                        stopped = applied.stopped,
                        caught_up = applied.caught_up,
                        "rules changed elsewhere now evaluated"
                    );
                }
            }
            Err(error) => {
                state.alerting.metrics.engine_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%tenant, error = %error.message, "cannot apply changed rules; retrying");
            }
        }
    }
}

async fn load_rules(alerts: &dyn AlertStore, tenant: &str) -> Result<Vec<Rule>, ApiError> {
    Ok(alerts.rules(tenant).await?.iter().filter_map(parse_rule).collect())
}

/// The tenant's stored engine cursor, after installing the default pack (starting at the
/// tenant's current tree size) if the tenant has none yet.
async fn installed_cursor(state: &AppState, tenant: &str) -> Result<u64, ApiError> {
    let alerts = state.alerts.as_ref();
    let mut cursor = alerts.engine_cursor(tenant).await?;
    if cursor.is_none() {
        let size = state.store.tree_head(tenant).await?.size;
        alerts.install_rules(tenant, default_rules(size, Timestamp::now()), size).await?;
        cursor = alerts.engine_cursor(tenant).await?;
    }
    Ok(cursor.unwrap_or(0))
}

/// Sets up a tenant's engine: installs the default pack if the tenant has no cursor yet
/// (starting at its current tree size: history before monitoring existed is not alerted on),
/// loads its rules, and replays the ledger per the restart protocol.
async fn load_tenant(state: &AppState, tenant: &str) -> Result<TenantEngine, ApiError> {
    let next_seq = installed_cursor(state, tenant).await?;
    let rules = load_rules(state.alerts.as_ref(), tenant).await?;
    let engine = engine_at(state, tenant, rules, next_seq).await?;
    Ok(TenantEngine {
        engine,
        next_seq,
        stored_next_seq: next_seq,
        pending: Vec::new(),
        pending_next_seq: next_seq,
        last_cursor_write: Instant::now(),
        caught_up: false,
        recovering: true,
        ledgered: HashSet::new(),
        rule_changes: None,
        generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
        erased: false,
        rebuilding: false,
    })
}

/// A new engine with `rules`, holding the state the ledger as it now reads gives it just
/// before `next_seq` (the restart protocol's replay).
async fn engine_at(state: &AppState, tenant: &str, rules: Vec<Rule>, next_seq: u64) -> Result<Engine, ApiError> {
    let mut engine = Engine::new(EngineConfig::default());
    engine.set_rules(rules);
    if next_seq == 0 {
        return Ok(engine);
    }
    replay(state, tenant, engine, next_seq).await
}

/// `received_at` of the record at `seq`.
async fn received_at(store: &dyn Store, tenant: &str, seq: u64) -> Result<Option<Timestamp>, ApiError> {
    let records = store.records(tenant, seq, 1).await?;
    let Some(record) = records.first() else { return Ok(None) };
    #[derive(serde::Deserialize)]
    struct Received {
        received_at: String,
    }
    let parsed: Result<Received, _> = serde_json::from_slice(&record.sealed);
    Ok(parsed.ok().and_then(|r| r.received_at.parse().ok()))
}

/// The first seq in `[low, high]` whose `received_at` is at least `at` (`high` if none):
/// `received_at` grows with seq, the writer assigns both.
pub(crate) async fn first_seq_received_since(
    store: &dyn Store,
    tenant: &str,
    at: Timestamp,
    mut low: u64,
    mut high: u64,
) -> Result<u64, ApiError> {
    while low < high {
        let middle = low + (high - low) / 2;
        match received_at(store, tenant, middle).await? {
            Some(received) if received >= at => high = middle,
            _ => low = middle + 1,
        }
    }
    Ok(low)
}

async fn replay(state: &AppState, tenant: &str, engine: Engine, next_seq: u64) -> Result<Engine, ApiError> {
    let store = state.store.as_ref();
    let Some(last) = received_at(store, tenant, next_seq - 1).await? else {
        return Ok(engine);
    };
    let from_time = last.checked_sub(engine.replay_horizon()).unwrap_or(Timestamp::MIN);
    let from = first_seq_received_since(store, tenant, from_time, 0, next_seq - 1).await?;
    let started = Instant::now();
    let (engine, _) = feed_events(state, tenant, engine, from, next_seq, Feed::Replay).await?;
    let replayed = next_seq - from;
    tracing::info!(%tenant, replayed, elapsed_ms = started.elapsed().as_millis() as u64, "rule engine state rebuilt");
    Ok(engine)
}

/// How [`feed_events`] gives events to the engine.
#[derive(Clone, Copy)]
enum Feed {
    /// `Engine::replay`: what fires was stored before.
    Replay,
    /// `Engine::process`: what fires is returned.
    Process,
}

/// Gives the events `[from, to)` of `tenant` to `engine` in seq order, on the rule thread.
async fn feed_events(
    state: &AppState,
    tenant: &str,
    mut engine: Engine,
    from: u64,
    to: u64,
    feed: Feed,
) -> Result<(Engine, Vec<Firing>), ApiError> {
    let mut firings = Vec::new();
    let mut seq = from;
    while seq < to {
        let limit = u32::try_from((to - seq).min(u64::from(BATCH))).unwrap_or(BATCH);
        let records = state.store.records_lean(tenant, seq, limit).await?;
        let Some(last) = records.last() else { break };
        seq = last.seq + 1;
        let fed = feed_records(state, engine, records, feed, false).await?;
        engine = fed.engine;
        firings.extend(fed.fired);
    }
    Ok((engine, firings))
}

/// What [`feed_records`] did.
struct Fed {
    engine: Engine,
    fired: Vec<Firing>,
    /// The alerts the `audit.alert.raised` events passed list (when asked for).
    listed: Vec<String>,
    /// Whether an erasure's event was passed.
    erased: bool,
}

/// Gives `records` to `engine` in seq order on the rule thread; records rules must not see,
/// or that cannot be opened, are skipped (logged). With `listings`, also returns the alerts the
/// `audit.alert.raised` events among them list.
async fn feed_records(
    state: &AppState,
    mut engine: Engine,
    records: Vec<StoredEvent>,
    feed: Feed,
    listings: bool,
) -> Result<Fed, ApiError> {
    let work = move || {
        let mut fired = Vec::new();
        let mut listed = Vec::new();
        let mut erased = false;
        VIEW_CACHE.with_borrow_mut(|cache| {
            for stored in &records {
                let view = match view_for_rules(&engine, stored, cache) {
                    Ok(view) => view,
                    Err(NoView::Raised) if listings => {
                        listed.extend(listed_alerts(stored));
                        continue;
                    }
                    Err(_) => continue,
                };
                erased |= view.erasure;
                let Some(input) = view.input(stored) else { continue };
                match feed {
                    Feed::Replay => engine.replay(&input),
                    Feed::Process => fired.extend(engine.process(&input)),
                }
            }
        });
        Fed { engine, fired, listed, erased }
    };
    let evaluated = state.alerting.rule_thread.run(work).await;
    evaluated.map_err(|e| ApiError::new(Code::Internal, format!("rule evaluation failed: {e}")))
}

/// One pass over every tenant this node runs: evaluate what was committed since the last one,
/// store what fired.
async fn pass(state: &AppState, engines: &mut HashMap<String, TenantEngine>, membership: &Membership, tick: bool) {
    let tenants = match state.store.tenants().await {
        Ok(tenants) => tenants,
        Err(error) => {
            tracing::warn!(%error, "rule engine cannot list tenants");
            return;
        }
    };
    for tenant in tenants {
        let id = tenant.id;
        if !membership.runs(&id) {
            continue;
        }
        if !engines.contains_key(&id) {
            match load_tenant(state, &id).await {
                Ok(engine) => {
                    engines.insert(id.clone(), engine);
                }
                Err(error) => {
                    state.alerting.metrics.engine_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(tenant = %id, error = %error.message, "rule engine cannot load tenant");
                    continue;
                }
            }
        }
        let Some(engine) = engines.remove(&id) else { continue };
        match evaluate_tenant(state, &id, engine, tick).await {
            Ok(engine) => {
                engines.insert(id, engine);
            }
            Err(error) => {
                // The engine's state may be ahead of what was stored: rebuild it next pass.
                state.alerting.metrics.engine_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tenant = %id, error = %error.message, "rule evaluation failed; reloading the tenant");
            }
        }
    }
    state.alerting.metrics.tenants_run.store(engines.len() as u64, Ordering::Relaxed);
}

async fn evaluate_tenant(
    state: &AppState,
    tenant: &str,
    mut engine: TenantEngine,
    tick: bool,
) -> Result<TenantEngine, ApiError> {
    flush(state, tenant, &mut engine).await?;
    let mut evaluated = 0u64;
    engine.caught_up = false;
    while evaluated < MAX_EVENTS_PER_PASS {
        let records = state.store.records_lean(tenant, engine.next_seq, BATCH).await?;
        let Some(last) = records.last() else {
            engine.caught_up = true;
            break;
        };
        let full = records.len() as u32 == BATCH;
        let next_seq = last.seq + 1;
        evaluated += records.len() as u64;
        let count = records.len() as u64;
        let fed = feed_records(state, engine.engine, records, Feed::Process, engine.recovering).await?;
        engine.engine = fed.engine;
        engine.ledgered.extend(fed.listed);
        engine.erased |= fed.erased;
        engine.next_seq = next_seq;
        state.alerting.metrics.events_evaluated.fetch_add(count, Ordering::Relaxed);
        queue_firings(state, tenant, &mut engine, fed.fired)?;
        // One ledger append and one alert-store commit per pass, not per batch: under full
        // ingest load each append waits for a group commit.
        if engine.pending.len() >= MAX_PENDING_ALERTS {
            flush(state, tenant, &mut engine).await?;
        }
        if !full {
            engine.caught_up = true;
            break;
        }
    }
    flush(state, tenant, &mut engine).await?;
    if tick && engine.caught_up {
        let now = Timestamp::now().checked_sub(TICK_MARGIN).unwrap_or(Timestamp::MIN);
        let firings = engine.engine.tick(now);
        queue_firings(state, tenant, &mut engine, firings)?;
        flush(state, tenant, &mut engine).await?;
    }
    if engine.next_seq > engine.stored_next_seq && engine.last_cursor_write.elapsed() >= CURSOR_WRITE_INTERVAL {
        // Progress only: losing it costs a second evaluation of these events, which raises
        // nothing twice, so it does not wait for the disk (nor delay the ledger's fsyncs).
        state.alerts.set_engine_cursor(tenant, engine.next_seq, false).await?;
        engine.stored_next_seq = engine.next_seq;
        engine.last_cursor_write = Instant::now();
    }
    Ok(engine)
}

/// Turns firings into alerts waiting to be stored (with their messages).
fn queue_firings(
    state: &AppState,
    tenant: &str,
    engine: &mut TenantEngine,
    firings: Vec<Firing>,
) -> Result<(), ApiError> {
    engine.pending.extend(new_alerts(state, tenant, firings)?);
    engine.pending_next_seq = engine.next_seq;
    Ok(())
}

/// The alerts of `firings`, each with its `alert.raised` message.
fn new_alerts(state: &AppState, tenant: &str, firings: Vec<Firing>) -> Result<Vec<NewAlert>, ApiError> {
    let now = Timestamp::now();
    let mut alerts = Vec::with_capacity(firings.len());
    for firing in firings {
        let alert = Alert {
            // The seq of the dedup key: the trigger's, or for a silence the last event's.
            id: state.alerting.alert_id(
                tenant,
                &firing.dedup_key,
                firing.trigger_seq.or(firing.event_seqs.last().copied()).unwrap_or(0),
            ),
            tenant: tenant.to_string(),
            position: 0,
            rule_id: firing.rule_id.as_str().to_string(),
            rule_version: firing.rule_version,
            severity: firing.severity.as_str().to_string(),
            group_key: firing.group_key.to_json(),
            event_ids: firing.event_ids,
            event_count: firing.event_count,
            trigger_seq: firing.trigger_seq,
            started_at: firing.started_at,
            fired_at: firing.fired_at,
            summary: firing.summary,
            dedup_key: firing.dedup_key,
            status: AlertStatus::Open,
            status_changed_by: None,
            status_changed_at: None,
            status_note: None,
        };
        let raised = message("alert.raised", tenant, &alert, now)?;
        alerts.push(NewAlert { alert, messages: vec![raised] });
    }
    Ok(alerts)
}

/// Stores the alerts waiting, after their ledger events, and moves the cursor with them.
async fn flush(state: &AppState, tenant: &str, engine: &mut TenantEngine) -> Result<(), ApiError> {
    if engine.pending.is_empty() {
        return Ok(());
    }
    record_raised(state, tenant, engine).await?;
    let pending = engine.pending.clone();
    let stored = state.alerts.record_alerts(tenant, pending, engine.pending_next_seq).await?;
    let now = Timestamp::now();
    let stored_ids: HashSet<&str> = stored.iter().map(String::as_str).collect();
    for new in &engine.pending {
        if stored_ids.contains(new.alert.id.as_str()) {
            let latency = now.duration_since(new.alert.fired_at).as_secs_f64();
            state.alerting.metrics.observe_latency(latency);
        }
    }
    state.alerting.metrics.alerts_raised.fetch_add(stored.len() as u64, Ordering::Relaxed);
    engine.pending.clear();
    if engine.caught_up {
        // Everything the last flush before the load can have listed has been fired again.
        engine.recovering = false;
    }
    engine.stored_next_seq = engine.stored_next_seq.max(engine.pending_next_seq);
    engine.last_cursor_write = Instant::now();
    if !stored.is_empty() {
        tracing::info!(%tenant, alerts = stored.len(), "alerts raised");
        state.alerting.deliveries.notify_one();
    }
    Ok(())
}

/// Alerts one `audit.alert.raised` event lists at most.
const RAISED_PER_EVENT: usize = 200;
/// Bytes the entries of the alerts one `audit.alert.raised` event lists may take (compact
/// JSON): half of an event's 64 KiB limit.
const RAISED_EVENT_BYTES: usize = 32 * 1024;

/// The id of the `audit.alert.raised` event whose list starts with `alert_id`.
fn raised_event_id(alert_id: &str) -> String {
    format!("veritrail:alert:{alert_id}")
}

/// Appends the `audit.alert.raised` events of the alerts waiting: one event lists the alerts of
/// a flush (up to [`RAISED_PER_EVENT`] and [`RAISED_EVENT_BYTES`] per event), its id derived
/// from the first one's id. An alert storm thus adds a few ledger events a second, not one per
/// alert (each costs about as much as an ingested event: sealing, the writer, the indexer).
///
/// Exactly once: only the last flush before a crash (or a hand-over) can be in the ledger
/// without its alerts stored, and the evaluation that follows fires them again. So after a
/// load, until the engine has caught up, the alerts such an event lists are left out of new
/// events, then and later. The engine learns them two ways: the raised event an alert would
/// lead is looked up for every alert waiting (an alert fired again before the evaluation has
/// passed the event — a flush cut short by [`MAX_PENDING_ALERTS`]), and the events the
/// evaluation passes while recovering are read for what they list (the alerts of an event whose
/// first alert does not fire again: its rule was disabled meanwhile, or a silence that ended).
async fn record_raised(state: &AppState, tenant: &str, engine: &mut TenantEngine) -> Result<(), ApiError> {
    if engine.recovering {
        for NewAlert { alert, .. } in &engine.pending {
            if engine.ledgered.contains(&alert.id) {
                continue;
            }
            if let Some(found) = state.store.event_by_id(tenant, &raised_event_id(&alert.id)).await? {
                engine.ledgered.extend(listed_alerts(&found));
            }
        }
    }
    let fresh = engine.pending.iter().map(|new| &new.alert).filter(|alert| !engine.ledgered.contains(&alert.id));
    let events = raised_events(fresh);
    if events.is_empty() {
        return Ok(());
    }
    let mut random = ids::RandomStream::new()?;
    let prepared = events
        .iter()
        .map(|event| audit::prepare_with(audit::internal_event(event)?, &mut random))
        .collect::<Result<Vec<_>, ApiError>>()?;
    state.store.append(tenant, prepared).await?;
    Ok(())
}

/// The `audit.alert.raised` events listing `alerts`, in order: up to [`RAISED_PER_EVENT`]
/// alerts and [`RAISED_EVENT_BYTES`] of entries each.
fn raised_events<'a>(alerts: impl Iterator<Item = &'a Alert>) -> Vec<Value> {
    let mut events = Vec::new();
    let mut listed: Vec<Value> = Vec::new();
    let (mut first, mut bytes) = (None, 0);
    for alert in alerts {
        let entry = json!({
            "alert_id": alert.id,
            "rule": alert.rule_id,
            "rule_version": alert.rule_version,
            "severity": alert.severity,
            "event_ids": alert.event_ids,
            "event_count": alert.event_count,
            "trigger_seq": alert.trigger_seq,
        });
        // Its exact size (escaping could make an estimate from the raw lengths short).
        let size = entry.to_string().len() + 1;
        if !listed.is_empty() && (listed.len() == RAISED_PER_EVENT || bytes + size > RAISED_EVENT_BYTES) {
            events.push(raised_event(first.take().unwrap_or_default(), std::mem::take(&mut listed)));
            bytes = 0;
        }
        first.get_or_insert_with(|| alert.id.clone());
        bytes += size;
        listed.push(entry);
    }
    if let Some(first) = first {
        events.push(raised_event(first, listed));
    }
    events
}

/// The `audit.alert.raised` event listing `alerts`, the first of which has id `first`.
fn raised_event(first: String, alerts: Vec<Value>) -> Value {
    json!({
        "id": raised_event_id(&first),
        "action": ALERT_RAISED_ACTION,
        // No `name`: a name is personal data (a commitment plus an encrypted sidecar row per
        // event) and the id already says who acted.
        "actor": {"id": "veritrail:rule-engine", "type": "system"},
        "outcome": "success",
        "resource": {"type": "alert", "id": first},
        "context": {"channel": "system"},
        "metadata": {"alert_count": alerts.len(), "alerts": alerts},
    })
}

/// The alert ids an `audit.alert.raised` event lists.
fn listed_alerts(event: &StoredEvent) -> Vec<String> {
    let Some(view) = open_view(event) else { return Vec::new() };
    let alerts = view.pointer("/metadata/alerts").and_then(Value::as_array);
    alerts.into_iter().flatten().filter_map(|alert| alert["alert_id"].as_str().map(str::to_owned)).collect()
}

/// Evaluates `rule` over the stored events `[from, to)` of `tenant`, collecting at most
/// `max_firings`.
pub(crate) async fn dry_run(
    store: &dyn Store,
    tenant: &str,
    rule: &Rule,
    from: u64,
    to: u64,
    max_firings: usize,
) -> Result<DryRunReport, ApiError> {
    let mut run = DryRun::new(rule, EngineConfig::default(), max_firings);
    let mut seq = from;
    let mut going = true;
    while going && seq < to {
        let limit = u32::try_from((to - seq).min(u64::from(BATCH))).unwrap_or(BATCH);
        let records = store.records(tenant, seq, limit).await?;
        let Some(last) = records.last() else { break };
        seq = last.seq + 1;
        let (returned, more) = tokio::task::spawn_blocking(move || {
            for stored in &records {
                let Some(view) = open_view(stored) else { continue };
                if hidden_from_rules(&view) {
                    continue;
                }
                if let Ok(input) = EventInput::from_view(&view)
                    && !run.push(&input)
                {
                    return (run, false);
                }
            }
            (run, true)
        })
        .await
        .map_err(|e| ApiError::new(Code::Internal, format!("dry run failed: {e}")))?;
        run = returned;
        going = more;
    }
    Ok(run.finish(Timestamp::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_ids_are_stable_keyed_and_sort_by_seq() {
        let alerting = Alerting::new(AlertingConfig::default(), b"installation pepper");
        let id = alerting.alert_id("tn_a", "brute_force:7", 7);
        assert_eq!(id, alerting.alert_id("tn_a", "brute_force:7", 7), "derived again after a restart");
        assert_eq!(id.len(), "al_".len() + 26);
        assert!(id.starts_with("al_0000000007"), "{id}");
        assert_ne!(id, alerting.alert_id("tn_b", "brute_force:7", 7), "another tenant");
        assert_ne!(id, alerting.alert_id("tn_a", "mass_export:7", 7), "another rule on the same event");
        let other_pepper = Alerting::new(AlertingConfig::default(), b"another installation");
        assert_ne!(id, other_pepper.alert_id("tn_a", "brute_force:7", 7), "unguessable without the pepper");
        let later = [8u64, 40, 1_000_000].map(|seq| alerting.alert_id("tn_a", &format!("brute_force:{seq}"), seq));
        assert!(id < later[0] && later[0] < later[1] && later[1] < later[2], "{id} {later:?}");
    }

    fn alert(n: usize, event_ids: Vec<String>) -> Alert {
        Alert {
            id: format!("al_{n:026}"),
            tenant: "tn_a".into(),
            position: 0,
            rule_id: "brute_force".into(),
            rule_version: 1,
            severity: "high".into(),
            group_key: json!({"actor.id": "mallory"}),
            event_count: event_ids.len() as u64,
            event_ids,
            trigger_seq: Some(n as u64),
            started_at: Timestamp::UNIX_EPOCH,
            fired_at: Timestamp::UNIX_EPOCH,
            summary: "summary".into(),
            dedup_key: format!("brute_force:{n}"),
            status: AlertStatus::Open,
            status_changed_by: None,
            status_changed_at: None,
            status_note: None,
        }
    }

    /// Every alert listed once, in order, by events that are valid events of the server's own
    /// (within the 64 KiB limit whatever the event ids: escaped, they can be six times longer).
    #[test]
    fn raised_events_list_every_alert_once_within_the_event_limits() {
        let one = raised_events([alert(1, vec!["e1".into()])].iter());
        assert_eq!(one.len(), 1);
        assert_eq!(one[0]["id"], format!("veritrail:alert:{}", alert(1, vec![]).id));
        assert_eq!(one[0]["metadata"]["alerts"][0]["event_ids"], json!(["e1"]));
        assert!(raised_events(std::iter::empty()).is_empty());

        let many: Vec<Alert> = (0..450).map(|n| alert(n, vec![format!("e{n}")])).collect();
        let short = raised_events(many.iter());
        assert_eq!(
            short.iter().map(|event| event["metadata"]["alert_count"].as_u64().unwrap()).collect::<Vec<_>>(),
            [200, 200, 50]
        );
        // Ids of control characters (impossible in events, not in this function): six bytes
        // each once escaped.
        let awkward: String = std::iter::repeat_n('\u{1}', veritrail_model::limits::MAX_ID_CHARS).collect();
        let heavy: Vec<Alert> = (0..60).map(|n| alert(n, vec![awkward.clone(); 32])).collect();
        for (alerts, expected_events) in [(&many, 3), (&heavy, 60)] {
            let events = raised_events(alerts.iter());
            assert_eq!(events.len(), expected_events);
            let mut listed = Vec::new();
            for event in &events {
                assert!(event.to_string().len() <= 64 * 1024);
                audit::internal_event(event).expect("a valid event");
                let entries = event["metadata"]["alerts"].as_array().unwrap();
                assert_eq!(event["resource"]["id"], entries[0]["alert_id"]);
                listed.extend(entries.iter().map(|entry| entry["alert_id"].as_str().unwrap().to_string()));
            }
            assert_eq!(listed, alerts.iter().map(|alert| alert.id.clone()).collect::<Vec<_>>());
        }
    }
}
