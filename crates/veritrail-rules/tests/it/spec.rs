//! The rule model: strict validation with named fields and stable codes, round trips, versions.

use serde_json::{Value, json};
use veritrail_rules::{
    BusinessHours, GroupMode, Rule, RuleError, RuleId, RuleKind, RuleSpec, Severity, Threshold, default_pack,
};

fn error(spec: Value) -> RuleError {
    RuleSpec::from_json(&spec).unwrap_err()
}

fn with(extra: Value) -> Value {
    let mut spec = json!({"name": "r", "severity": "low", "when": {"action": "data.read"}});
    for (key, value) in extra.as_object().unwrap() {
        if value.is_null() {
            spec.as_object_mut().unwrap().remove(key);
        } else {
            spec[key] = value.clone();
        }
    }
    spec
}

#[test]
fn the_rule_kinds_of_issue_7_parse() {
    let threshold = RuleSpec::from_json(&with(json!({
        "group_by": ["actor.id", "context.ip"], "threshold": {"count": 5, "window": "10m"}
    })))
    .unwrap();
    assert!(matches!(threshold.kind(), RuleKind::Threshold(Threshold::Count { count: 5, .. })));
    assert_eq!(threshold.group_mode(), GroupMode::Combined);

    let sum = RuleSpec::from_json(&with(json!({
        "threshold": {"sum": "metadata.record_count", "over": 10000, "window": "1h"}
    })))
    .unwrap();
    assert!(matches!(sum.kind(), RuleKind::Threshold(Threshold::Sum { over, .. }) if *over == 10000.0));

    let hours = RuleSpec::from_json(&with(json!({
        "outside_hours": {"timezone": "Europe/Berlin", "days": "mon-fri", "from": "08:00", "to": "18:00"}
    })))
    .unwrap();
    assert_eq!(hours.outside_hours().unwrap().timezone(), "Europe/Berlin");
    assert_eq!(hours.kind(), &RuleKind::Match);

    let new_value = RuleSpec::from_json(&with(json!({
        "group_by": ["actor.id"], "new_value": {"field": "context.location", "lookback": "30d"}
    })))
    .unwrap();
    assert!(matches!(new_value.kind(), RuleKind::NewValue(_)));

    let silence = RuleSpec::from_json(&json!({"name": "s", "severity": "high", "silence": {"window": "15m"}})).unwrap();
    assert_eq!(silence.group_by()[0].as_str(), "metadata.source.service", "sources are the default group");
    assert_eq!(silence.severity(), Severity::High);
}

#[test]
fn invalid_rules_name_the_field_and_a_stable_code() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (with(json!({"colour": "red"})), "colour", "unknown_field"),
        (with(json!({"name": null})), "name", "missing_field"),
        (with(json!({"name": ""})), "name", "invalid_value"),
        (with(json!({"name": 7})), "name", "wrong_type"),
        (with(json!({"severity": "urgent"})), "severity", "invalid_value"),
        (with(json!({"enabled": "yes"})), "enabled", "wrong_type"),
        (with(json!({"when": {"action": "Auth.*"}})), "when.action", "invalid_filter"),
        (with(json!({"when": {"color": "red"}})), "when.color", "unknown_field"),
        (with(json!({"when": {"limit": "5"}})), "when.limit", "invalid_filter"),
        (with(json!({"when": {"since": "2026-01-01T00:00:00Z"}})), "when.since", "invalid_filter"),
        (with(json!({"when": {"ip": "not-an-ip"}})), "when.ip", "invalid_filter"),
        (with(json!({"when": {"outcome": 1}})), "when.outcome", "wrong_type"),
        (with(json!({"when": {"metadata.a..b": "x"}})), "when.metadata.a..b", "invalid_filter"),
        (with(json!({"when": "action=data.read"})), "when", "wrong_type"),
        (with(json!({"when": {}})), "when", "invalid_value"),
        (with(json!({"when": null})), "when", "invalid_value"),
        (with(json!({"group_by": ["actor.id"]})), "group_by", "conflicting_fields"),
        (with(json!({"threshold": {"count": 0, "window": "10m"}})), "threshold.count", "invalid_value"),
        (with(json!({"threshold": {"count": 10001, "window": "10m"}})), "threshold.count", "invalid_value"),
        (with(json!({"threshold": {"count": 1.5, "window": "10m"}})), "threshold.count", "wrong_type"),
        (with(json!({"threshold": {"count": 5}})), "threshold.window", "missing_field"),
        (with(json!({"threshold": {"count": 5, "window": "10 min"}})), "threshold.window", "invalid_window"),
        (with(json!({"threshold": {"count": 5, "window": "8d"}})), "threshold.window", "invalid_window"),
        (with(json!({"threshold": {"count": 5, "window": "0s"}})), "threshold.window", "invalid_window"),
        (
            with(json!({"threshold": {"count": 5, "sum": "metadata.n", "window": "1m"}})),
            "threshold.sum",
            "conflicting_fields",
        ),
        (with(json!({"threshold": {"window": "1m"}})), "threshold", "invalid_value"),
        (with(json!({"threshold": {"sum": "actor.id", "over": 1, "window": "1m"}})), "threshold.sum", "invalid_value"),
        (with(json!({"threshold": {"sum": "metadata.n", "window": "1m"}})), "threshold.over", "missing_field"),
        (
            with(json!({"threshold": {"sum": "metadata.n", "over": 0, "window": "1m"}})),
            "threshold.over",
            "invalid_value",
        ),
        (
            with(json!({"threshold": {"sum": "metadata.n", "over": 5, "default": -1, "window": "1m"}})),
            "threshold.default",
            "invalid_value",
        ),
        (with(json!({"threshold": {"count": 5, "window": "1m", "per": "x"}})), "threshold.per", "unknown_field"),
        (
            with(json!({"threshold": {"count": 5, "window": "1m"}, "group_by": ["actr.id"]})),
            "group_by[0]",
            "invalid_value",
        ),
        (
            with(json!({"threshold": {"count": 5, "window": "1m"}, "group_by": ["actor.id", "actor.id"]})),
            "group_by[1]",
            "invalid_value",
        ),
        (
            with(json!({"threshold": {"count": 5, "window": "1m"}, "group_by": ["a.b", "c", "d", "e", "f"]})),
            "group_by",
            "invalid_value",
        ),
        (with(json!({"threshold": {"count": 5, "window": "1m"}, "group_mode": "any"})), "group_mode", "invalid_value"),
        (
            with(json!({"threshold": {"count": 5, "window": "1m"}, "silence": {"window": "1h"}})),
            "silence",
            "conflicting_fields",
        ),
        (
            with(json!({"new_value": {"field": "context.ip", "lookback": "30d"}, "group_mode": "each"})),
            "group_mode",
            "conflicting_fields",
        ),
        (
            with(json!({"new_value": {"field": "context.ip", "lookback": "30m"}})),
            "new_value.lookback",
            "invalid_window",
        ),
        (
            with(json!({"new_value": {"field": "context.country", "lookback": "30d"}})),
            "new_value.field",
            "invalid_value",
        ),
        (with(json!({"silence": {"window": "30s"}})), "silence.window", "invalid_window"),
        (
            with(
                json!({"silence": {"window": "1h"}, "outside_hours": {"timezone": "UTC", "days": "mon", "from": "08:00", "to": "18:00"}}),
            ),
            "outside_hours",
            "conflicting_fields",
        ),
        (
            with(
                json!({"outside_hours": {"timezone": "Europe/Atlantis", "days": "mon-fri", "from": "08:00", "to": "18:00"}}),
            ),
            "outside_hours.timezone",
            "unknown_time_zone",
        ),
        (
            with(json!({"outside_hours": {"timezone": "UTC", "days": "weekdays", "from": "08:00", "to": "18:00"}})),
            "outside_hours.days",
            "invalid_value",
        ),
        (
            with(json!({"outside_hours": {"timezone": "UTC", "days": "mon-fri", "from": "8am", "to": "18:00"}})),
            "outside_hours.from",
            "invalid_value",
        ),
        (
            with(json!({"outside_hours": {"timezone": "UTC", "days": "mon-fri", "from": "08:00"}})),
            "outside_hours.to",
            "missing_field",
        ),
        (with(json!({"field_matches": {"fields": ["metadata.role"]}})), "field_matches.patterns", "missing_field"),
        (
            with(json!({"field_matches": {"fields": ["metadata.role"], "patterns": ["Admin"]}})),
            "field_matches.patterns[0]",
            "invalid_value",
        ),
    ];
    for (spec, field, code) in cases {
        let error = error(spec.clone());
        assert_eq!((error.field(), error.code()), (field, code), "{spec}: {error}");
        assert!(error.to_string().starts_with(field), "{error}");
    }
}

#[test]
fn when_filters_mean_what_they_mean_in_the_query_api() {
    let spec = RuleSpec::from_json(&with(json!({
        "when": {"action": "auth.*,data.exported", "metadata.tokens": 470, "metadata.flag": true, "ip": "203.0.113.7"}
    })))
    .unwrap();
    // `when` is a JSON object: its filters are applied in key order.
    let pairs = [
        ("action", "auth.*,data.exported"),
        ("ip", "203.0.113.7"),
        ("metadata.flag", "true"),
        ("metadata.tokens", "470"),
    ];
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (query, _) = veritrail_query::parse_params(&pairs).unwrap();
    assert_eq!(spec.when().query(), &query);
    let error = error(with(json!({"when": {"action": "Auth.*"}})));
    let query_error = veritrail_query::parse_params(&[("action".into(), "Auth.*".into())]).unwrap_err();
    assert_eq!(error.to_string(), format!("when.action: {}", query_error.message));
}

#[test]
fn rules_round_trip_through_json_and_serde() {
    let hours = BusinessHours::new("Europe/Berlin", "mon-fri", "08:00", "18:00").unwrap();
    let mut rules = default_pack(&hours);
    rules.push(
        Rule::from_json(&json!({
            "id": "new-country", "version": 3, "effective_from_seq": 42,
            "name": "New country", "description": "a login from a country not seen in 30 days", "severity": "medium",
            "enabled": false,
            "when": {"action": "auth.login.success"},
            "group_by": ["actor.id"], "new_value": {"field": "metadata.geo.country", "lookback": "30d"}
        }))
        .unwrap(),
    );
    rules.push(
        Rule::from_json(&json!({
            "id": "spend", "version": 1, "name": "AI spend", "severity": "low",
            "threshold": {"sum": "metadata.cost", "over": 12.5, "window": "1d"}
        }))
        .unwrap(),
    );
    for rule in rules {
        let json = rule.to_json();
        assert_eq!(Rule::from_json(&json).unwrap(), rule, "{json}");
        let text = serde_json::to_string(&rule).unwrap();
        assert_eq!(serde_json::from_str::<Rule>(&text).unwrap(), rule);
        let spec_json = rule.spec().to_json();
        assert_eq!(&RuleSpec::from_json(&spec_json).unwrap(), rule.spec());
        assert_eq!(serde_json::from_value::<RuleSpec>(spec_json).unwrap(), *rule.spec());
    }
    let written = json!({"name": "x", "severity": "high", "enabled": true, "when": {"action": "a.b"},
        "group_by": ["actor.id"], "threshold": {"count": 5, "window": "60m"}});
    assert_eq!(RuleSpec::from_json(&written).unwrap().to_json(), written, "windows keep their spelling");
    assert!(serde_json::from_value::<Rule>(json!({"id": "Bad Id", "version": 1})).is_err());
}

#[test]
fn stored_rules_need_an_id_and_a_version() {
    let spec = json!({"name": "n", "severity": "low", "when": {"action": "a"}});
    let mut stored = spec.clone();
    stored["version"] = json!(1);
    assert_eq!(Rule::from_json(&stored).unwrap_err().field(), "id");
    stored["id"] = json!("UPPER");
    assert_eq!(Rule::from_json(&stored).unwrap_err().code(), "invalid_value");
    stored["id"] = json!("ok_id");
    stored["version"] = json!(0);
    assert_eq!(Rule::from_json(&stored).unwrap_err().field(), "version");
    let mut user = spec;
    user["id"] = json!("ok_id");
    assert_eq!(RuleSpec::from_json(&user).unwrap_err().code(), "unknown_field", "users do not pick ids and versions");
}

#[test]
fn every_change_bumps_the_version() {
    let rule = Rule::new(
        RuleId::parse("r1").unwrap(),
        RuleSpec::from_json(&json!({"name": "n", "severity": "low", "when": {"action": "a"}})).unwrap(),
    );
    assert_eq!(rule.version(), 1);
    let updated =
        rule.updated(RuleSpec::from_json(&json!({"name": "n", "severity": "high", "when": {"action": "a"}})).unwrap());
    assert_eq!((updated.version(), updated.spec().severity()), (2, Severity::High));
    let disabled = updated.with_enabled(false);
    assert_eq!((disabled.version(), disabled.spec().enabled()), (3, false));
    assert_eq!(disabled.with_enabled(false).version(), 3, "no change, no new version");
    assert_eq!(disabled.clone().effective_from(7).effective_from_seq(), 7);
}
