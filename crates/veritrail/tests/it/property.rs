//! Property: for random events and random filter combinations, walking every page of
//! `GET /v1/events` with the cursor returns exactly the events the reference semantics
//! ([`EventQuery::matches`]) accepts, each once, in the requested `seq` order.
//!
//! The server appends its own events (`audit.log.initialized` and `auth.token.created` at tenant
//! creation, one `audit.read` per query) to the same ledger, so the exact comparison is made on the ingested events only; every returned
//! event, audit or not, must still match the filters.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::option::weighted;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};
use veritrail_query::{EventQuery, Order, PageRequest, parse_params};
use veritrail_test_support::TestServer;

const ACTIONS: &[&str] =
    &["auth.login.failed", "auth.login.success", "data.read", "data.exported", "permission.role.assigned"];
/// (id, email as sent, name).
const ACTORS: &[(&str, &str, &str)] = &[
    ("u-alice", "Alice@Example.com", "Alice Liddell"),
    ("u-bob", "bob@example.com", "Bob Stone"),
    ("svc-etl", "etl@svc.example.org", "ETL job"),
    ("u-carol", "CAROL@example.net", "Carol Danvers"),
];
const ACTOR_TYPES: &[&str] = &["user", "service", "ai_agent", "system"];
const ROLES: &[&str] = &["admin", "viewer", "auditor"];
/// (type, id); `team/p-1` shares an id with `project/p-1` so type and id must hold for the same object.
const RESOURCES: &[(&str, &str)] = &[("project", "p-1"), ("project", "p-2"), ("document", "d-1"), ("team", "p-1")];
const OUTCOMES: &[&str] = &["success", "failure", "denied"];
/// (as sent, canonical as stored and compared).
const IPS: &[(&str, &str)] =
    &[("203.0.113.7", "203.0.113.7"), ("198.51.100.23", "198.51.100.23"), ("2001:DB8:0:0::1", "2001:db8::1")];
const CHANNELS: &[&str] = &["ui", "api", "workflow", "system"];
const SENSITIVITIES: &[&str] = &["pii", "phi", "pci"];
const SUBJECTS: &[&str] = &["patient-1", "patient-2"];
const METADATA_KEYS: &[&str] = &["tier", "count", "flag"];
const REASONS: &[&str] = &["support ticket 42", "Quarterly AUDIT review"];
const OCCURRED: &[&str] = &[
    "2025-01-01T00:00:00Z",
    "2025-01-01T00:00:00.5Z",
    "2025-03-10T12:00:00+02:00",
    "2025-06-30T23:59:59.999Z",
    "2025-07-01T00:00:00Z",
];
/// `since`/`until` bounds, ascending; several equal an `OCCURRED` instant (inclusive/exclusive edges).
const BOUNDS: &[&str] = &[
    "2025-01-01T00:00:00Z",
    "2025-01-01T00:00:00.5Z",
    "2025-03-10T10:00:00Z",
    "2025-03-10T10:00:00.001Z",
    "2025-06-30T23:59:59.999Z",
    "2025-07-01T00:00:00Z",
    "2027-01-01T00:00:00Z",
];

fn metadata_values() -> Vec<Value> {
    vec![
        json!("gold"),
        json!("silver"),
        json!("1"),
        json!(1),
        json!(2),
        json!(1.5),
        json!(true),
        json!(false),
        json!("true"),
    ]
}

/// One random event, as indexes into the vocabularies.
#[derive(Debug, Clone)]
struct GenEvent {
    action: &'static str,
    actor: usize,
    actor_type: &'static str,
    roles: Vec<&'static str>,
    resource: Option<usize>,
    targets: Vec<usize>,
    outcome: &'static str,
    ip: Option<usize>,
    channel: Option<&'static str>,
    sensitivity: Vec<&'static str>,
    data_subject: Option<&'static str>,
    metadata: Vec<(&'static str, Value)>,
    occurred_at: &'static str,
    reason: Option<&'static str>,
    client_id: bool,
}

impl GenEvent {
    /// The event as sent, and as the reference expects to read it back (canonical ip).
    fn to_json(&self, index: usize) -> (Value, Value) {
        let (actor_id, email, name) = ACTORS[self.actor];
        let mut event = Map::new();
        if self.client_id {
            event.insert("id".into(), json!(format!("evt-{index}")));
        }
        event.insert("action".into(), json!(self.action));
        event.insert("occurred_at".into(), json!(self.occurred_at));
        let mut actor = json!({"id": actor_id, "type": self.actor_type, "email": email, "name": name});
        if !self.roles.is_empty() {
            actor["roles"] = json!(self.roles);
        }
        event.insert("actor".into(), actor);
        if let Some(resource) = self.resource {
            let (kind, id) = RESOURCES[resource];
            event.insert("resource".into(), json!({"type": kind, "id": id, "name": format!("{kind} {id}")}));
        }
        if !self.targets.is_empty() {
            let targets: Vec<Value> =
                self.targets.iter().map(|&t| json!({"type": RESOURCES[t].0, "id": RESOURCES[t].1})).collect();
            event.insert("targets".into(), json!(targets));
        }
        event.insert("outcome".into(), json!(self.outcome));
        if let Some(reason) = self.reason {
            event.insert("reason".into(), json!(reason));
        }
        let mut context = Map::new();
        if let Some(channel) = self.channel {
            context.insert("channel".into(), json!(channel));
        }
        if !context.is_empty() || self.ip.is_some() {
            event.insert("context".into(), Value::Object(context));
        }
        if let Some(subject) = self.data_subject {
            event.insert("data_subject".into(), json!(subject));
        }
        if !self.sensitivity.is_empty() {
            event.insert("sensitivity".into(), json!(self.sensitivity));
        }
        if !self.metadata.is_empty() {
            let metadata: Map<String, Value> = self.metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            event.insert("metadata".into(), Value::Object(metadata));
        }
        let mut sent = Value::Object(event);
        let mut reference = sent.clone();
        if let Some(ip) = self.ip {
            sent["context"]["ip"] = json!(IPS[ip].0);
            reference["context"]["ip"] = json!(IPS[ip].1);
        }
        (sent, reference)
    }
}

fn event_strategy() -> impl Strategy<Value = GenEvent> {
    let who = (
        select(ACTIONS),
        0..ACTORS.len(),
        select(ACTOR_TYPES),
        subsequence(ROLES, 0..=2),
        weighted(0.7, 0..RESOURCES.len()),
        vec(0..RESOURCES.len(), 0..=2),
        select(OUTCOMES),
        any::<bool>(),
    );
    let rest = (
        weighted(0.7, 0..IPS.len()),
        weighted(0.7, select(CHANNELS)),
        subsequence(SENSITIVITIES, 0..=2),
        weighted(0.5, select(SUBJECTS)),
        subsequence(METADATA_KEYS, 0..=3),
        vec(select(metadata_values()), 3),
        select(OCCURRED),
        weighted(0.4, select(REASONS)),
    );
    (who, rest).prop_map(
        |(
            (action, actor, actor_type, roles, resource, targets, outcome, client_id),
            (ip, channel, sensitivity, data_subject, keys, values, occurred_at, reason),
        )| GenEvent {
            action,
            actor,
            actor_type,
            roles,
            resource,
            targets,
            outcome,
            ip,
            channel,
            sensitivity,
            data_subject,
            metadata: keys.into_iter().zip(values).collect(),
            occurred_at,
            reason,
            client_id,
        },
    )
}

/// Chance of each filter being present (about two per query on average).
const P: f64 = 0.12;

/// A random set of query parameters (filters, order, limit), always valid.
fn filter_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    let action_filters = vec![
        "auth.login.failed",
        "data.read",
        "auth.*",
        "*.failed",
        "data.*",
        "auth.login.*",
        "*",
        "*.*.*",
        "data.re*d",
        "data.read,auth.login.success",
        "permission.*,*.exported",
        "audit.*",
    ];
    let who = (
        weighted(P, select(action_filters)),
        weighted(P, select(vec!["u-alice", "u-bob", "svc-etl", "u-carol", "u-nobody"])),
        weighted(P, (0..ACTORS.len(), 0..3usize)),
        weighted(P, select(vec!["user", "service", "ai_agent", "system", "api_key"])),
        weighted(P, select(vec!["admin", "viewer", "auditor", "owner"])),
        weighted(P, select(vec!["project", "document", "team", "folder"])),
        weighted(P, select(vec!["p-1", "p-2", "d-1", "x-9"])),
        weighted(P, select(OUTCOMES)),
    );
    let what = (
        weighted(P, select(vec!["203.0.113.7", "198.51.100.23", "2001:db8::1", "2001:DB8:0::1", "127.0.0.1"])),
        weighted(P, select(CHANNELS)),
        weighted(P, select(vec!["pii", "phi", "pci", "secret"])),
        weighted(P, select(vec!["patient-1", "patient-2", "patient-3"])),
        weighted(P, (select(METADATA_KEYS), select(vec!["gold", "silver", "1", "2", "1.5", "true", "false"]))),
        (weighted(P, 0..BOUNDS.len()), weighted(P, 0..BOUNDS.len())),
        weighted(P, select(vec!["alice", "P-1", "login", "patient", "example.com", "audit review", "TICKET"])),
        (select(vec![None, Some("asc"), Some("desc")]), 1u32..=7),
    );
    (who, what).prop_map(
        |(
            (action, actor_id, actor_email, actor_type, actor_role, resource_type, resource_id, outcome),
            (ip, channel, sensitivity, data_subject, metadata, (since, until), q, (order, limit)),
        )| {
            let mut pairs: Vec<(String, String)> = Vec::new();
            let mut push = |name: &str, value: Option<String>| {
                if let Some(value) = value {
                    pairs.push((name.to_string(), value));
                }
            };
            push("action", action.map(str::to_string));
            push("actor_id", actor_id.map(str::to_string));
            push(
                "actor_email",
                actor_email.map(|(actor, case)| {
                    let email = ACTORS[actor].1;
                    match case {
                        0 => email.to_string(),
                        1 => email.to_lowercase(),
                        _ => email.to_uppercase(),
                    }
                }),
            );
            push("actor_type", actor_type.map(str::to_string));
            push("actor_role", actor_role.map(str::to_string));
            push("resource_type", resource_type.map(str::to_string));
            push("resource_id", resource_id.map(str::to_string));
            push("outcome", outcome.map(str::to_string));
            push("ip", ip.map(str::to_string));
            push("channel", channel.map(str::to_string));
            push("sensitivity", sensitivity.map(str::to_string));
            push("data_subject", data_subject.map(str::to_string));
            if let Some((key, value)) = metadata {
                push(&format!("metadata.{key}"), Some(value.to_string()));
            }
            let (since, until) = match (since, until) {
                (Some(a), Some(b)) if a > b => (Some(b), Some(a)),
                other => other,
            };
            push("since", since.map(|i| BOUNDS[i].to_string()));
            push("until", until.map(|i| BOUNDS[i].to_string()));
            push("q", q.map(str::to_string));
            push("order", order.map(str::to_string));
            push("limit", Some(limit.to_string()));
            pairs
        },
    )
}

fn server() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(TestServer::start)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn query_string(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// An ingested event: its seq, id, and the JSON the reference semantics is applied to.
struct Ingested {
    seq: u64,
    id: String,
    reference: Value,
}

fn ingest(key: &str, events: &[GenEvent], batch_size: usize) -> Vec<Ingested> {
    let client = &server().client;
    let mut ingested = Vec::new();
    let all: Vec<(Value, Value)> = events.iter().enumerate().map(|(i, e)| e.to_json(i)).collect();
    for chunk in all.chunks(batch_size) {
        let batch: Vec<Value> = chunk.iter().map(|(sent, _)| sent.clone()).collect();
        let reply = client.ingest(key, &json!(batch));
        assert_eq!(reply.status, 201, "ingest: {}", reply.text());
        let acks = reply.json()["events"].as_array().unwrap().clone();
        assert_eq!(acks.len(), chunk.len(), "one ack per event");
        for ((_, reference), ack) in chunk.iter().zip(acks) {
            let id = ack["id"].as_str().unwrap().to_string();
            let mut reference = reference.clone();
            reference["id"] = json!(id);
            ingested.push(Ingested { seq: ack["seq"].as_u64().unwrap(), id, reference });
        }
    }
    ingested
}

/// Polls until every ingested event is visible to queries; returns their views by id.
fn wait_until_visible(key: &str, expected: usize) -> BTreeMap<String, Value> {
    // (auth.login.*: the tenant's ledger opens with the server's auth.token.created.)
    let path = "/v1/events?action=auth.login.*,data.read,data.exported,permission.*&order=asc&limit=1000";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = server().client.get(Some(key), path);
        assert_eq!(reply.status, 200, "poll: {}", reply.text());
        let events = reply.json()["events"].as_array().unwrap().clone();
        if events.len() == expected {
            return events.into_iter().map(|e| (e["id"].as_str().unwrap().to_string(), e)).collect();
        }
        assert!(events.len() < expected, "more events visible ({}) than ingested ({expected})", events.len());
        assert!(Instant::now() < deadline, "only {} of {expected} events visible after 10 s", events.len());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every page of the query, in order: (seq, id, action) of each returned event.
fn walk(
    key: &str,
    pairs: &[(String, String)],
    query: &EventQuery,
    page: &PageRequest,
    last_ingested: u64,
) -> Vec<(u64, String, String)> {
    let mut returned = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut params = pairs.to_vec();
        if let Some(cursor) = &cursor {
            params.push(("cursor".into(), cursor.clone()));
        }
        let path = format!("/v1/events?{}", query_string(&params));
        let reply = server().client.get(Some(key), &path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let body = reply.json();
        let events = body["events"].as_array().unwrap();
        assert!(events.len() <= page.limit as usize, "{path}: {} events for limit {}", events.len(), page.limit);
        for view in events {
            assert!(query.matches(view), "{path}: returned an event the filters reject: {view}");
            let seq = view["seq"].as_u64().unwrap();
            returned.push((
                seq,
                view["id"].as_str().unwrap().to_string(),
                view["action"].as_str().unwrap().to_string(),
            ));
        }
        match body["next_cursor"].as_str() {
            None => return returned,
            Some(next) => {
                assert!(!events.is_empty(), "{path}: empty page with a next_cursor");
                cursor = Some(next.to_string());
            }
        }
        // Ascending, past the last ingested event only the server's own reads can follow, and
        // each page read appends one: stop rather than chase them.
        if page.order == Order::Asc && returned.last().is_some_and(|(seq, _, _)| *seq > last_ingested) {
            return returned;
        }
    }
    panic!("more than 1000 pages for {pairs:?}");
}

/// One property case: a fresh tenant with `events`, queried with each parameter set.
fn check(events: &[GenEvent], batch_size: usize, queries: &[Vec<(String, String)>]) {
    static TENANTS: AtomicUsize = AtomicUsize::new(0);
    let client = &server().client;
    let (_, key) = client.create_tenant(&format!("property {}", TENANTS.fetch_add(1, Ordering::Relaxed)));
    let ingested = ingest(&key, events, batch_size);
    let views = wait_until_visible(&key, ingested.len());
    for pairs in queries {
        check_query(&key, &ingested, &views, pairs);
    }
}

fn check_query(key: &str, ingested: &[Ingested], views: &BTreeMap<String, Value>, pairs: &[(String, String)]) {
    let (query, page) = parse_params(pairs).unwrap_or_else(|e| panic!("generated invalid params {pairs:?}: {e}"));

    // The reference JSON must judge like the server's view of the same event would.
    for event in ingested {
        let view = views.get(&event.id).unwrap_or_else(|| panic!("event {} not visible", event.id));
        assert_eq!(view["seq"].as_u64(), Some(event.seq), "seq of {}", event.id);
        assert_eq!(
            query.matches(view),
            query.matches(&event.reference),
            "{pairs:?}: the stored view judges differently from what was sent\nview: {view}\nsent: {}",
            event.reference
        );
    }

    let last_ingested = ingested.iter().map(|e| e.seq).max().unwrap();
    let returned = walk(key, pairs, &query, &page, last_ingested);

    let seqs: Vec<u64> = returned.iter().map(|(seq, _, _)| *seq).collect();
    let in_order = match page.order {
        Order::Asc => seqs.windows(2).all(|w| w[0] < w[1]),
        Order::Desc => seqs.windows(2).all(|w| w[0] > w[1]),
    };
    assert!(in_order, "{pairs:?}: seqs not strictly {:?}: {seqs:?}", page.order);
    let mut ids = HashSet::new();
    for (_, id, _) in &returned {
        assert!(ids.insert(id.clone()), "{pairs:?}: id {id} returned twice");
    }

    let mut expected: Vec<(u64, &str)> =
        ingested.iter().filter(|e| query.matches(&e.reference)).map(|e| (e.seq, e.id.as_str())).collect();
    expected.sort_unstable();
    if page.order == Order::Desc {
        expected.reverse();
    }
    let actual: Vec<(u64, &str)> = returned
        .iter()
        // Only the ingested events: not the server's own (the tenant's opening records,
        // self-audit, the record of unmasked sensitive reads).
        .filter(|(_, id, _)| views.contains_key(id))
        .map(|(seq, id, _)| (*seq, id.as_str()))
        .collect();
    assert_eq!(actual, expected, "{pairs:?}: pages differ from the reference answer");
}

proptest! {
    #![proptest_config(Config { cases: 24, max_shrink_iters: 32, failure_persistence: None, ..Config::default() })]

    /// Each case: 20–60 random events in a fresh tenant, ingested in batches of `batch_size`,
    /// then four random queries walked page by page.
    #[test]
    fn query_pages_match_the_reference(
        events in vec(event_strategy(), 20..=60),
        batch_size in 1usize..=60,
        queries in vec(filter_strategy(), 4),
    ) {
        check(&events, batch_size, &queries);
    }
}
