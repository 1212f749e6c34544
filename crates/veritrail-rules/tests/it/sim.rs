//! A simulated clock and event stream.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use veritrail_rules::{Engine, EngineConfig, EventInput, Firing, Rule, RuleId, RuleSpec};

/// Thursday 2026-01-15 10:00:00 UTC.
pub fn base() -> Timestamp {
    "2026-01-15T10:00:00Z".parse().unwrap()
}

/// `base() + seconds`.
pub fn t(seconds: f64) -> Timestamp {
    base() + SignedDuration::from_secs_f64(seconds)
}

pub fn rule(id: &str, spec: Value) -> Rule {
    Rule::new(RuleId::parse(id).unwrap(), RuleSpec::from_json(&spec).unwrap())
}

pub fn engine(rules: Vec<Rule>) -> Engine {
    let mut engine = Engine::new(EngineConfig::default());
    engine.set_rules(rules);
    engine
}

/// Builds event views with dense seqs, as the ledger would.
#[derive(Default)]
pub struct Stream {
    next_seq: u64,
}

impl Stream {
    /// An event received at `received` seconds that occurred at `occurred` seconds, with
    /// `body` merged over a default event.
    pub fn at(&mut self, received: f64, occurred: f64, body: Value) -> Value {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut view = json!({
            "id": format!("evt_{seq:06}"),
            "seq": seq,
            "tenant": "acme",
            "action": "data.read",
            "actor": {"id": "user-1", "type": "user"},
            "outcome": "success",
            "occurred_at_source": "client",
            "received_at": t(received).to_string(),
            "occurred_at": t(occurred).to_string(),
        });
        for (key, value) in body.as_object().unwrap() {
            view[key] = value.clone();
        }
        view
    }

    /// An event that occurred when it was received.
    pub fn now(&mut self, at: f64, body: Value) -> Value {
        self.at(at, at, body)
    }
}

pub fn feed(engine: &mut Engine, view: &Value) -> Vec<Firing> {
    engine.process(&EventInput::from_view(view).unwrap())
}

pub fn feed_all(engine: &mut Engine, views: &[Value]) -> Vec<Firing> {
    views.iter().flat_map(|view| feed(engine, view)).collect()
}

pub fn failed_login(actor: &str, ip: &str) -> Value {
    json!({"action": "auth.login.failed", "outcome": "failure", "actor": {"id": actor, "type": "user"}, "context": {"ip": ip}})
}
