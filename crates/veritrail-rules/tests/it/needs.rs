//! `Engine::needs`: an engine fed each event's view cut down to what it needs fires, keeps
//! state and counts exactly as one fed the whole views.

use serde_json::{Map, Value, json};
use veritrail_rules::{
    BusinessHours, Engine, EventInput, EventNeeds, Firing, INPUT_MEMBERS, Rule, VIEW_MEMBER, default_pack,
};

use crate::replay::{Op, config, rules, scenario};
use crate::sim::{engine, rule};

/// The view as a reader that opens only what `engine` needs would build it, and no more: the
/// `members` given (the engine's own), and for each path the value it names with everything
/// below (a path reaching an array keeps the whole array, which the engine looks through).
fn cut_down(engine: &Engine, view: &Value, members: &[&str]) -> Value {
    let action = view["action"].as_str().unwrap();
    let paths = match engine.needs(action) {
        EventNeeds::View => return view.clone(),
        EventNeeds::Paths(paths) => paths,
    };
    let mut kept = Map::new();
    for path in members.iter().chain(&paths) {
        copy_path(view, &path.split('.').collect::<Vec<_>>(), &mut kept);
    }
    Value::Object(kept)
}

/// Copies what is at `segments` in `from` (an object) into `into`, creating the objects on the
/// way; stops early at an array or a scalar, which it copies whole.
fn copy_path(from: &Value, segments: &[&str], into: &mut Map<String, Value>) {
    let Some((first, rest)) = segments.split_first() else { return };
    let Some(value) = from.get(first) else { return };
    if rest.is_empty() || !value.is_object() {
        into.insert(first.to_string(), value.clone());
        return;
    }
    let slot = into.entry(first.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(below) = slot {
        copy_path(value, rest, below);
    }
}

/// Feeds `ops` to three engines with `rules`: one the whole views, one views cut down to
/// [`INPUT_MEMBERS`] and the paths (read with `EventInput::from_view`), one views cut down to
/// [`VIEW_MEMBER`] and the paths with the input's other fields filled from the record (as the
/// server does); asserts they agree at every step. Returns the firings and how many events were
/// cut down.
fn check_equivalence(rules: Vec<Rule>, ops: &[Op]) -> (Vec<Firing>, usize) {
    let new_engine = || {
        let mut engine = Engine::new(config());
        engine.set_rules(rules.clone());
        engine
    };
    let (mut whole, mut cut, mut bare) = (new_engine(), new_engine(), new_engine());
    let mut firings = Vec::new();
    let mut reduced = 0;
    for (i, op) in ops.iter().enumerate() {
        let (expected, actual, from_record) = match op {
            Op::Event(view) => {
                let small = cut_down(&cut, view, &INPUT_MEMBERS);
                let smallest = cut_down(&bare, view, &[VIEW_MEMBER]);
                if small != *view {
                    reduced += 1;
                }
                let input = EventInput::from_view(view).unwrap();
                (
                    whole.process(&input),
                    cut.process(&EventInput::from_view(&small).unwrap()),
                    bare.process(&EventInput { view: &smallest, ..input }),
                )
            }
            Op::Tick(at) => (whole.tick(*at), cut.tick(*at), bare.tick(*at)),
        };
        assert_eq!(actual, expected, "op {i}");
        assert_eq!(from_record, expected, "op {i}, view of the action and the paths alone");
        for engine in [&cut, &bare] {
            assert_eq!(engine.stats(), whole.stats(), "op {i}");
            assert_eq!(engine.state_size(), whole.state_size(), "op {i}");
        }
        firings.extend(expected);
    }
    (firings, reduced)
}

/// Silence rules of every shape the pre-check distinguishes, beside rules that need the view.
fn silence_rules() -> Vec<Rule> {
    let mut rules: Vec<Rule> = default_pack(&BusinessHours::office_hours_utc())
        .into_iter()
        .filter(|rule| rule.id().as_str() == "logging_stopped")
        .collect();
    rules.push(rule(
        "data_actor_silent",
        json!({"name": "Data actor silent", "severity": "low", "when": {"action": "data.*"},
               "group_by": ["actor.id", "context.ip"], "silence": {"window": "10m"}}),
    ));
    rules.push(rule(
        "user1_silent",
        json!({"name": "User 1 silent", "severity": "low", "when": {"actor_id": "user-1"},
               "group_by": ["metadata.source.host"], "silence": {"window": "5m"}}),
    ));
    rules.push(rule(
        "admin_silent",
        json!({"name": "Admin silent", "severity": "low", "when": {"action": "permission.*"},
               "field_matches": {"fields": ["metadata.role"], "patterns": ["admin"]},
               "group_by": ["actor.id"], "silence": {"window": "1m"}}),
    ));
    rules
}

#[test]
fn cut_down_views_fire_like_whole_views() {
    let ops = scenario(0x5eed, 3000);
    let (firings, reduced) = check_equivalence(rules(), &ops);
    assert!(firings.len() > 50, "the scenario fires: {}", firings.len());
    assert!(firings.iter().any(|f| f.trigger_seq.is_none()), "silences fire");
    assert!(reduced > 100, "most events are cut down: {reduced}");

    let (firings, reduced) = check_equivalence(silence_rules(), &ops);
    for id in ["logging_stopped", "data_actor_silent", "user1_silent", "admin_silent"] {
        assert!(firings.iter().any(|f| f.rule_id.as_str() == id), "the scenario exercises {id}");
    }
    assert_eq!(reduced, 0, "user1_silent filters beyond the action, on every action");
    let (_, reduced) = check_equivalence(without_user1(), &ops);
    assert!(reduced > 100, "events cut down: {reduced}");
}

/// [`silence_rules`] but the one filtering beyond the action.
fn without_user1() -> Vec<Rule> {
    silence_rules().into_iter().filter(|rule| rule.id().as_str() != "user1_silent").collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
    #[test]
    fn cut_down_views_fire_like_whole_views_on_random_streams(seed in proptest::prelude::any::<u64>()) {
        let ops = scenario(seed, 400);
        check_equivalence(rules(), &ops);
        check_equivalence(silence_rules(), &ops);
        check_equivalence(without_user1(), &ops);
    }
}

#[test]
fn needs_follow_the_rules_that_admit_the_action() {
    let pack = engine(default_pack(&BusinessHours::office_hours_utc()));
    // Only `logging_stopped` (no filter, grouped by metadata.source.service) wants data.read,
    // and of it only that path.
    const SOURCE: &str = "metadata.source.service";
    assert_eq!(pack.needs("data.read"), EventNeeds::Paths(vec![SOURCE]));
    // The others filter on the action alone: what their paths and summaries name.
    assert_eq!(pack.needs("auth.login.failed"), EventNeeds::Paths(vec!["actor.id", "context.ip", SOURCE]));
    assert_eq!(pack.needs("data.exported"), EventNeeds::Paths(vec!["actor.id", "metadata.record_count", SOURCE]));
    assert_eq!(
        pack.needs("permission.granted"),
        EventNeeds::Paths(vec![
            "metadata.role",
            "metadata.permission",
            "resource.id",
            "resource.name",
            "targets.id",
            "targets.name",
            "actor.id",
            "resource.type",
            SOURCE
        ])
    );
    for action in ["config.sso.updated", "audit.control.failed"] {
        assert_eq!(
            pack.needs(action),
            EventNeeds::Paths(vec!["actor.id", "resource.type", "resource.id", SOURCE]),
            "{action}"
        );
    }
    let without_silence: Vec<Rule> = default_pack(&BusinessHours::office_hours_utc())
        .into_iter()
        .filter(|rule| rule.id().as_str() != "logging_stopped")
        .collect();
    let quiet = engine(without_silence);
    assert_eq!(quiet.needs("data.read"), EventNeeds::Paths(vec![]));
    assert_eq!(quiet.needs("data.deleted"), EventNeeds::Paths(vec!["actor.id", "metadata.record_count"]));

    let silences = engine(silence_rules());
    assert_eq!(silences.needs("auth.logout"), EventNeeds::View, "user1_silent filters beyond the action");
    let actions_only = engine(without_user1());
    assert_eq!(actions_only.needs("data.read"), EventNeeds::Paths(vec![SOURCE, "actor.id", "context.ip"]));
    assert_eq!(actions_only.needs("permission.granted"), EventNeeds::Paths(vec![SOURCE, "actor.id", "metadata.role"]));
    assert_eq!(engine(Vec::new()).needs("data.read"), EventNeeds::Paths(vec![]));
}
