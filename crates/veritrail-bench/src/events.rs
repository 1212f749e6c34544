//! Deterministic, realistic audit events: ~20k actors with a skewed activity distribution, 30
//! actions of the SPEC §6 taxonomy with realistic weights, resources, IPs, user agents, changes
//! and metadata; 400–600 bytes of JSON each. Every event is produced twice from the same values:
//! as Veritrail wire JSON and as a row of the naive PostgreSQL table.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use serde_json::value::RawValue;
use serde_json::{Value, json};

/// Distinct actors (users and service accounts).
pub const ACTORS: u64 = 20_000;
/// Distinct resources per resource type.
const RESOURCES_PER_TYPE: u64 = 50_000;
/// Time span the generated `occurred_at` values cover, ending at generation time.
const SPAN: Duration = Duration::from_secs(30 * 24 * 3600);

/// Actions (SPEC §6) with their relative frequency in per-mille.
const ACTIONS: &[(&str, u32)] = &[
    ("auth.login.success", 100),
    ("auth.login.failed", 20),
    ("auth.logout", 40),
    ("auth.mfa.verified", 30),
    ("auth.mfa.failed", 5),
    ("auth.sso.redirect", 20),
    ("auth.session.created", 50),
    ("auth.session.expired", 30),
    ("auth.token.created", 10),
    ("auth.token.revoked", 5),
    ("auth.password.changed", 5),
    ("data.created", 60),
    ("data.read", 150),
    ("data.updated", 80),
    ("data.deleted", 15),
    ("data.exported", 10),
    ("data.sensitive.accessed", 20),
    ("permission.granted", 10),
    ("permission.revoked", 5),
    ("permission.denied", 15),
    ("permission.role.assigned", 5),
    ("config.updated", 10),
    ("config.security.updated", 3),
    ("admin.user.created", 5),
    ("admin.user.suspended", 2),
    ("api.request", 150),
    ("ai.generate", 30),
    ("ai.tool.call", 20),
    ("consent.granted", 5),
    ("disclosure.made", 3),
];

const RESOURCE_TYPES: &[&str] = &[
    "document",
    "project",
    "invoice",
    "patient_record",
    "customer",
    "repository",
    "report",
    "dataset",
    "ticket",
    "workspace",
];
const FIRST_NAMES: &[&str] = &[
    "jane", "john", "maria", "wei", "aisha", "lukas", "sofia", "omar", "elena", "kenji", "fatima", "noah", "chloe",
    "ravi", "ines", "mateo",
];
const LAST_NAMES: &[&str] = &[
    "smith", "garcia", "chen", "okafor", "muller", "rossi", "tanaka", "haddad", "novak", "silva", "kowalski", "jensen",
    "dubois", "patel", "kim", "larsen",
];
const DOMAINS: &[&str] = &["acme.com", "globex.io", "initech.net", "umbrella.health", "hooli.dev"];
const ROLES: &[&str] = &["admin", "member", "viewer", "billing", "support", "auditor"];
const SERVICES: &[&str] = &["billing-api", "web-frontend", "ehr-sync", "search-indexer", "notifier", "ml-gateway"];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) Mobile/15E148",
    "acme-sdk-python/3.4.1 python-requests/2.32.3",
    "acme-sdk-go/1.9.0 go-http-client/1.1",
    "okhttp/4.12.0",
    "curl/8.11.0",
];
const STATUSES: &[&str] = &["draft", "open", "in_review", "approved", "completed", "archived"];
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// SplitMix64: small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A stable hash of an integer (for per-actor attributes).
fn mix(value: u64) -> u64 {
    Rng::new(value ^ 0x5EED_0FAC_0070).next_u64()
}

/// The actor of a draw: activity is skewed (`u²`), so low numbers are busy accounts (the top one
/// has ~0.7 % of all events) and the median actor has a few dozen events per million.
pub fn actor_number(rng: &mut Rng) -> u64 {
    let u = rng.unit();
    ((u * u) * ACTORS as f64) as u64 % ACTORS
}

/// The actor id of an actor number (`usr_…` for users, `svc-…` for one in twenty).
pub fn actor_id(no: u64) -> String {
    if no % 20 == 7 {
        format!("svc-{}-{no}", SERVICES[(mix(no) % SERVICES.len() as u64) as usize])
    } else {
        format!("usr_{no:05}")
    }
}

/// One generated event: its wire JSON and the same values as a row of the naive table.
#[derive(Debug)]
pub struct GeneratedEvent {
    /// The event as sent to `POST /v1/events` (one line, no trailing newline).
    pub json: String,
    /// The row for the PostgreSQL baseline.
    pub row: PgRow,
}

/// A row of `audit_events` (without `id` and `tenant_id`).
#[derive(Debug)]
pub struct PgRow {
    /// `user_id`: the actor id.
    pub user_id: String,
    /// `action`.
    pub action: &'static str,
    /// `resource_type`.
    pub resource_type: Option<&'static str>,
    /// `resource_id`.
    pub resource_id: Option<String>,
    /// `changes` (jsonb): every field of the event that has no column of its own, so that both
    /// systems store the same information.
    pub changes: Box<RawValue>,
    /// `ip_address` (inet).
    pub ip: IpAddr,
    /// `user_agent`.
    pub user_agent: &'static str,
    /// `created_at` (timestamptz): the event's `occurred_at`.
    pub created_at: SystemTime,
}

/// Generates events `first..first + count` of the stream of `seed`; `occurred_at` runs evenly
/// over the 30 days before `end` (in stream order, as a real log would).
pub struct Generator {
    seed: u64,
    end_us: i64,
    total: u64,
    action_cdf: Vec<(u32, &'static str)>,
}

impl Generator {
    /// A generator for a stream of `total` events ending at `end`.
    pub fn new(seed: u64, total: u64, end: jiff::Timestamp) -> Generator {
        let mut acc = 0;
        let mut action_cdf = Vec::with_capacity(ACTIONS.len());
        for (action, weight) in ACTIONS {
            acc += weight;
            action_cdf.push((acc, *action));
        }
        Generator { seed, end_us: end.as_microsecond(), total: total.max(1), action_cdf }
    }

    fn action(&self, rng: &mut Rng) -> &'static str {
        let total = self.action_cdf.last().map(|(w, _)| *w).unwrap_or(1);
        let draw = rng.below(u64::from(total)) as u32;
        for (bound, action) in &self.action_cdf {
            if draw < *bound {
                return action;
            }
        }
        "api.request"
    }

    /// Event number `index` of the stream.
    pub fn event(&self, index: u64) -> GeneratedEvent {
        let mut rng = Rng::new(self.seed.wrapping_mul(0x1000_0000_01B3) ^ index.wrapping_mul(0x9E37_79B9));
        let span_us = SPAN.as_micros() as i64;
        let offset = (index as i128 * span_us as i128 / self.total as i128) as i64;
        let occurred_us = self.end_us - span_us + offset + rng.below(1000) as i64;
        let occurred_at = jiff::Timestamp::from_microsecond(occurred_us).unwrap_or(jiff::Timestamp::UNIX_EPOCH);

        let actor_no = actor_number(&mut rng);
        let actor_hash = mix(actor_no);
        let actor = actor_id(actor_no);
        let service = actor.starts_with("svc-");
        let first = FIRST_NAMES[(actor_hash % 16) as usize];
        let last = LAST_NAMES[((actor_hash >> 4) % 16) as usize];
        let domain = DOMAINS[((actor_hash >> 8) % DOMAINS.len() as u64) as usize];
        let role = ROLES[((actor_hash >> 12) % ROLES.len() as u64) as usize];
        let action = self.action(&mut rng);

        // Each actor works from two addresses most of the time, sometimes from elsewhere.
        let ip = if rng.below(10) < 8 {
            let which = rng.below(2);
            let h = mix(actor_no * 2 + which);
            Ipv4Addr::new(10 + (h % 100) as u8, (h >> 8) as u8, (h >> 16) as u8, 1 + (h >> 24) as u8 % 250)
        } else {
            let h = rng.next_u64();
            Ipv4Addr::new(203, (h % 256) as u8, (h >> 8) as u8, 1 + (h >> 16) as u8 % 250)
        };
        let user_agent =
            if service { USER_AGENTS[4 + (actor_hash % 4) as usize] } else { USER_AGENTS[(actor_hash % 4) as usize] };

        let resource_type = if action.starts_with("auth.") { None } else { Some(rng.pick(RESOURCE_TYPES)) };
        let resource_id = resource_type.map(|t| format!("{}-{}", &t[..3], rng.below(RESOURCES_PER_TYPE)));
        let outcome = if action.ends_with(".failed") {
            "failure"
        } else if action == "permission.denied" {
            "denied"
        } else if rng.below(100) == 0 {
            "failure"
        } else {
            "success"
        };
        let channel = if service || rng.below(3) == 0 { "api" } else { "ui" };
        let session = format!("sess_{:016x}", mix(actor_no ^ (occurred_us as u64 / 3_600_000_000)));
        let endpoint = match (&resource_type, &resource_id) {
            (Some(t), Some(id)) => {
                format!("{} /api/v2/{t}s/{id}", if action.ends_with("read") { "GET" } else { "POST" })
            }
            _ => "POST /api/v2/session".to_string(),
        };
        let changes = if action.ends_with(".updated") {
            let before = rng.pick(STATUSES);
            let after = rng.pick(STATUSES);
            Some(json!({"before": {"status": before}, "after": {"status": after}}))
        } else {
            None
        };
        let metadata = if action.starts_with("ai.") {
            json!({"provider": "openai", "model": "gpt-4o", "tokens": 200 + rng.below(2000), "latency_ms": 300 + rng.below(3000),
                   "source": {"service": "ml-gateway", "host": format!("ml-{}", rng.below(8)), "version": "2.7.0"}})
        } else {
            json!({"source": {"service": SERVICES[(actor_hash % SERVICES.len() as u64) as usize]},
                   "trace_id": format!("{:016x}", rng.next_u64())})
        };
        let data_subject = match resource_type {
            Some("patient_record") => Some(format!("patient-{}", rng.below(100_000))),
            Some("customer") => Some(format!("customer-{}", rng.below(100_000))),
            _ => None,
        };
        let sensitivity = match resource_type {
            Some("patient_record") => Some(json!(["phi"])),
            Some("customer") => Some(json!(["pii"])),
            _ => None,
        };
        let reason = if action == "data.sensitive.accessed" || action == "data.exported" {
            Some(format!("support ticket {}", rng.below(100_000)))
        } else {
            None
        };
        let id = ulid(occurred_us, &mut rng);

        let actor_json = if service {
            json!({"id": actor, "type": "service"})
        } else {
            json!({"id": actor, "type": "user", "name": format!("{first} {last}"), "email": format!("{first}.{last}{actor_no}@{domain}"), "roles": [role]})
        };
        let mut event = serde_json::Map::new();
        event.insert("id".into(), json!(id));
        event.insert("action".into(), json!(action));
        event.insert("occurred_at".into(), json!(occurred_at.to_string()));
        event.insert("actor".into(), actor_json.clone());
        if let (Some(t), Some(rid)) = (resource_type, &resource_id) {
            event.insert("resource".into(), json!({"type": t, "id": rid}));
        }
        event.insert("outcome".into(), json!(outcome));
        if let Some(reason) = &reason {
            event.insert("reason".into(), json!(reason));
        }
        event.insert(
            "context".into(),
            json!({"ip": ip.to_string(), "user_agent": user_agent, "session_id": session,
                   "channel": channel, "endpoint": endpoint}),
        );
        if let Some(changes) = &changes {
            event.insert("changes".into(), changes.clone());
        }
        if let Some(subject) = &data_subject {
            event.insert("data_subject".into(), json!(subject));
        }
        if let Some(sensitivity) = &sensitivity {
            event.insert("sensitivity".into(), sensitivity.clone());
        }
        event.insert("metadata".into(), metadata.clone());
        let json = Value::Object(event).to_string();

        // The naive table keeps what has no column of its own in `changes`.
        let mut rest = serde_json::Map::new();
        rest.insert("event_id".into(), json!(id));
        rest.insert("actor".into(), actor_json);
        rest.insert("outcome".into(), json!(outcome));
        if let Some(reason) = reason {
            rest.insert("reason".into(), json!(reason));
        }
        rest.insert("context".into(), json!({"session_id": session, "channel": channel, "endpoint": endpoint}));
        if let Some(changes) = changes {
            rest.insert("changes".into(), changes);
        }
        if let Some(subject) = data_subject {
            rest.insert("data_subject".into(), json!(subject));
        }
        if let Some(sensitivity) = sensitivity {
            rest.insert("sensitivity".into(), sensitivity);
        }
        rest.insert("metadata".into(), metadata);
        // serde_json's own output is valid JSON, so the fallback (`null`) never happens.
        let changes = serde_json::value::to_raw_value(&Value::Object(rest)).unwrap_or_default();

        let created_at = if occurred_us >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_micros(occurred_us as u64)
        } else {
            SystemTime::UNIX_EPOCH
        };
        GeneratedEvent {
            json,
            row: PgRow {
                user_id: actor,
                action,
                resource_type,
                resource_id,
                changes,
                ip: IpAddr::V4(ip),
                user_agent,
                created_at,
            },
        }
    }
}

/// A ULID-shaped, time-ordered event id (`evt_` + 26 Crockford base32 characters), as SDKs send
/// for idempotency.
fn ulid(time_us: i64, rng: &mut Rng) -> String {
    let ms = (time_us / 1000).max(0) as u128;
    let random = (u128::from(rng.next_u64()) << 16) | u128::from(rng.next_u64() & 0xFFFF);
    let value = (ms << 80) | (random & ((1u128 << 80) - 1));
    let mut out = String::with_capacity(30);
    out.push_str("evt_");
    for i in (0..26).rev() {
        let digit = ((value >> (i * 5)) & 31) as usize;
        out.push(CROCKFORD[digit] as char);
    }
    out
}
