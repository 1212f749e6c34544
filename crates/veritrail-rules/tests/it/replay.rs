//! Restarts: an engine rebuilt by replaying the ledger from `replay_horizon()` before the cursor
//! fires exactly what an uninterrupted engine fires from then on.

use std::collections::HashSet;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use veritrail_rules::{BusinessHours, Engine, EngineConfig, EventInput, Firing, Rule, RuleSpec, default_pack};

use crate::sim::{Stream, rule, t};

pub(crate) enum Op {
    Event(Value),
    Tick(Timestamp),
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub(crate) fn rules() -> Vec<Rule> {
    let mut rules = default_pack(&BusinessHours::new("Europe/Berlin", "mon-fri", "08:00", "18:00").unwrap());
    rules.push(rule(
        "new_ip",
        json!({"name": "New IP", "severity": "medium", "when": {"action": "auth.login.success"},
               "group_by": ["actor.id"], "new_value": {"field": "context.ip", "lookback": "1h"}}),
    ));
    rules.push(rule(
        "host_silent",
        json!({"name": "Host silent", "severity": "low", "group_by": ["metadata.source.host"], "silence": {"window": "5m"}}),
    ));
    rules.push(rule(
        "ip_burst",
        json!({"name": "IP burst", "severity": "low", "when": {"action": "auth.*"},
               "group_by": ["context.ip"], "threshold": {"count": 3, "window": "2m"}}),
    ));
    rules
}

pub(crate) fn config() -> EngineConfig {
    EngineConfig { max_lateness: SignedDuration::from_mins(10), ..EngineConfig::default() }
}

/// Events with `received_at` non-decreasing (as the writer assigns it), `occurred_at` mostly a
/// little earlier, sometimes much earlier (beyond the lateness limit) or later (clock skew),
/// and ticks in between that are never ahead of the events still to come.
pub(crate) fn scenario(seed: u64, events: usize) -> Vec<Op> {
    let mut rng = Rng(seed | 1);
    let mut stream = Stream::default();
    let mut ops = Vec::new();
    let mut now = 0.0f64;
    let actions = [
        "auth.login.failed",
        "auth.login.failed",
        "auth.login.failed",
        "auth.login.success",
        "auth.login.success",
        "data.exported",
        "data.deleted",
        "data.sensitive.accessed",
        "permission.role.assigned",
        "data.read",
    ];
    for _ in 0..events {
        now += match rng.below(10) {
            0..=3 => rng.below(5) as f64,
            4..=8 => rng.below(90) as f64,
            _ => rng.below(1200) as f64,
        } + rng.below(1000) as f64 / 1000.0;
        let lag = match rng.below(20) {
            0 => -(rng.below(600) as f64),
            1..=2 => rng.below(1500) as f64,
            _ => rng.below(30) as f64,
        };
        let action = actions[rng.below(actions.len() as u64) as usize];
        let mut body = json!({
            "action": action,
            "actor": {"id": format!("user-{}", rng.below(4)), "type": "user"},
            "context": {"ip": format!("192.0.2.{}", rng.below(5))},
            "metadata": {}
        });
        if !rng.chance(20) {
            body["metadata"]["source"] =
                json!({"service": format!("svc-{}", rng.below(3)), "host": format!("host-{}", rng.below(2))});
        }
        match action {
            "data.exported" => body["metadata"]["record_count"] = json!(rng.below(6000)),
            "data.deleted" if rng.chance(50) => body["metadata"]["record_count"] = json!(rng.below(800)),
            "permission.role.assigned" => {
                body["metadata"]["role"] = json!(if rng.chance(50) { "admin" } else { "viewer" });
            }
            _ => {}
        }
        ops.push(Op::Event(stream.at(now, now - lag, body)));
        if rng.chance(30) {
            now += rng.below(400) as f64;
            ops.push(Op::Tick(t(now)));
        }
    }
    ops
}

fn received_at(view: &Value) -> Timestamp {
    view["received_at"].as_str().unwrap().parse().unwrap()
}

fn apply(engine: &mut Engine, op: &Op) -> Vec<Firing> {
    match op {
        Op::Event(view) => engine.process(&EventInput::from_view(view).unwrap()),
        Op::Tick(at) => engine.tick(*at),
    }
}

/// Runs the scenario uninterrupted and with a restart after the event at `cut` (an op index),
/// and compares what both fire after the cut.
fn check_restart(ops: &[Op], cut: usize) {
    let Op::Event(cursor_view) = &ops[cut] else { panic!("cut at an event") };
    let cursor_seq = cursor_view["seq"].as_u64().unwrap();

    let mut uninterrupted = Engine::new(config());
    uninterrupted.set_rules(rules());
    let mut before = Vec::new();
    let mut expected = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let firings = apply(&mut uninterrupted, op);
        if i <= cut { before.extend(firings) } else { expected.extend(firings) }
    }
    let last_tick = ops[..=cut]
        .iter()
        .filter_map(|op| match op {
            Op::Tick(at) => Some(*at),
            Op::Event(_) => None,
        })
        .max();

    let mut restarted = Engine::new(config());
    restarted.set_rules(rules());
    let from = received_at(cursor_view) - restarted.replay_horizon();
    let mut replayed = 0;
    for op in &ops[..=cut] {
        if let Op::Event(view) = op
            && received_at(view) >= from
        {
            restarted.replay(&EventInput::from_view(view).unwrap());
            replayed += 1;
        }
    }
    assert!(replayed >= 1 && replayed as u64 <= cursor_seq + 1);
    let mut actual = Vec::new();
    if let Some(at) = last_tick {
        actual.extend(restarted.tick(at));
    }
    for op in &ops[cut + 1..] {
        actual.extend(apply(&mut restarted, op));
    }

    let already: HashSet<&str> = before.iter().map(|f| f.dedup_key.as_str()).collect();
    let (repeated, actual): (Vec<Firing>, Vec<Firing>) =
        actual.into_iter().partition(|f| already.contains(f.dedup_key.as_str()));
    for firing in &repeated {
        assert!(firing.trigger_seq.is_none(), "only silences may be derived again: {firing:?}");
    }
    assert_eq!(actual.len(), expected.len(), "cut after seq {cursor_seq}");
    for (a, e) in actual.iter().zip(&expected) {
        assert_eq!(a, e, "cut after seq {cursor_seq}");
    }
}

fn event_positions(ops: &[Op]) -> Vec<usize> {
    ops.iter().enumerate().filter_map(|(i, op)| matches!(op, Op::Event(_)).then_some(i)).collect()
}

#[test]
fn replay_gives_the_same_future_firings_as_running_on() {
    let ops = scenario(0x5eed, 1500);
    let positions = event_positions(&ops);
    let mut total = Engine::new(config());
    total.set_rules(rules());
    let firings: Vec<Firing> = ops.iter().flat_map(|op| apply(&mut total, op)).collect();
    for id in
        ["brute_force", "mass_export", "mass_deletion", "privilege_escalation", "new_ip", "host_silent", "ip_burst"]
    {
        assert!(firings.iter().any(|f| f.rule_id.as_str() == id), "the scenario exercises {id}");
    }
    assert!(total.stats().late_events > 0, "the scenario has late events");
    for k in [1, 10, 100, 400, 777, 1200, 1498] {
        check_restart(&ops, positions[k]);
    }
}

/// The rule change a node takes at seq `from`: `ip_burst` tightened (version 2), `mass_export`
/// deleted, a new-value rule created.
fn changed_rules(from: u64) -> Vec<Rule> {
    let mut changed = Vec::new();
    for rule in rules() {
        match rule.id().as_str() {
            "mass_export" => {}
            "ip_burst" => {
                let spec = json!({"name": "IP burst", "severity": "high", "when": {"action": "auth.*"},
                                  "group_by": ["context.ip"], "threshold": {"count": 2, "window": "1m"}});
                changed.push(rule.updated(RuleSpec::from_json(&spec).unwrap()).effective_from(from));
            }
            _ => changed.push(rule),
        }
    }
    changed.push(
        rule(
            "new_service",
            json!({"name": "New service", "severity": "low", "group_by": ["actor.id"],
                   "new_value": {"field": "metadata.source.service", "lookback": "1h"}}),
        )
        .effective_from(from),
    );
    changed
}

/// A node that learns of a rule change (taken by another node at the event `change`) only at
/// the op `learnt`, after passing the new versions' `effective_from_seq`, catches those
/// versions up alone on the events in between and adopts them: the catch-up fires what the
/// other node's versions fired meanwhile, and from then on both fire the same. Returns how many
/// firings the catch-up had.
fn check_late_change(ops: &[Op], change: usize, learnt: usize) -> usize {
    let Op::Event(view) = &ops[change] else { panic!("change at an event") };
    let after = changed_rules(view["seq"].as_u64().unwrap());
    let new_versions = ["ip_burst", "new_service"];
    let mut taker = Engine::new(config());
    taker.set_rules(rules());
    let mut late = Engine::new(config());
    late.set_rules(rules());
    let (mut meanwhile, mut caught_up, mut expected, mut actual) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, op) in ops.iter().enumerate() {
        if i == change {
            taker.set_rules(after.clone());
        }
        if i == learnt {
            let missing: Vec<Rule> = after
                .iter()
                .filter(|rule| {
                    !late.rules().any(|running| {
                        running.id() == rule.id()
                            && running.version() == rule.version()
                            && running.effective_from_seq() == rule.effective_from_seq()
                    })
                })
                .cloned()
                .collect();
            let mut side = Engine::new(config());
            side.set_rules(missing);
            for op in &ops[change..learnt] {
                if let Op::Event(view) = op {
                    caught_up.extend(side.process(&EventInput::from_view(view).unwrap()));
                }
            }
            late.set_rules(after.clone());
            late.adopt_rules(side);
        }
        let (by_taker, by_late) = (apply(&mut taker, op), apply(&mut late, op));
        if i >= learnt {
            expected.extend(by_taker);
            actual.extend(by_late);
        } else if i >= change {
            meanwhile.extend(by_taker.into_iter().filter(|f| new_versions.contains(&f.rule_id.as_str())));
        }
    }
    assert_eq!(caught_up, meanwhile, "change at op {change}, learnt at op {learnt}");
    assert_eq!(actual, expected, "change at op {change}, learnt at op {learnt}");
    for id in new_versions {
        assert!(expected.iter().any(|f| f.rule_id.as_str() == id), "{id} fires after the change is learnt");
    }
    caught_up.len()
}

#[test]
fn a_rule_change_learnt_late_is_caught_up_exactly() {
    let ops = scenario(0x5eed, 1500);
    let positions = event_positions(&ops);
    assert_eq!(check_late_change(&ops, positions[300], positions[300] + 1), 0);
    assert!(check_late_change(&ops, positions[300], positions[420]) > 0, "the catch-up fires");
    check_late_change(&ops, positions[700], positions[1000]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    #[test]
    fn replay_equivalence_holds_for_random_streams_and_cursors(seed in proptest::prelude::any::<u64>(), at in 0.0f64..1.0) {
        let ops = scenario(seed, 300);
        let positions = event_positions(&ops);
        let k = ((positions.len() - 1) as f64 * at) as usize;
        check_restart(&ops, positions[k]);
    }
}
