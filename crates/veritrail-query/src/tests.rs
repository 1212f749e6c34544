use serde_json::json;

use super::*;

fn params(text: &[(&str, &str)]) -> Vec<(String, String)> {
    text.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn query(text: &[(&str, &str)]) -> EventQuery {
    parse_params(&params(text)).unwrap().0
}

fn error(text: &[(&str, &str)]) -> QueryError {
    parse_params(&params(text)).unwrap_err()
}

fn event() -> serde_json::Value {
    json!({
        "action": "auth.login.failed",
        "occurred_at": "2026-01-15T14:32:11.234Z",
        "actor": {"id": "user-1", "type": "user", "email": "Jane@Acme.com", "roles": ["admin", "ops"]},
        "resource": {"type": "project", "id": "p-42", "name": "Apollo"},
        "targets": [{"type": "team", "id": "t-1"}],
        "outcome": "failure",
        "context": {"ip": "203.0.113.7", "channel": "api"},
        "data_subject": "patient-77",
        "sensitivity": ["phi"],
        "metadata": {"source": {"service": "billing"}, "tokens": 470, "flag": true}
    })
}

#[test]
fn globs_match_like_users_expect() {
    let cases = [
        ("auth.*", "auth.login.failed", true),
        ("auth.*", "authz.x", false),
        ("*.failed", "auth.login.failed", true),
        ("auth.login.*", "auth.login", false),
        ("auth.login", "auth.login", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        ("*", "anything", true),
        ("**", "", true),
    ];
    for (pattern, action, expected) in cases {
        assert_eq!(ActionPattern::new(pattern.into()).matches(action), expected, "{pattern} vs {action}");
    }
}

#[test]
fn each_filter_matches_and_rejects() {
    let e = event();
    let cases: Vec<(Vec<(&str, &str)>, bool)> = vec![
        (vec![("action", "auth.*")], true),
        (vec![("action", "data.read,auth.login.failed")], true),
        (vec![("action", "data.*")], false),
        (vec![("actor_id", "user-1")], true),
        (vec![("actor_id", "user-2")], false),
        (vec![("actor_email", "jane@acme.com")], true),
        (vec![("actor_type", "service")], false),
        (vec![("actor_role", "ops")], true),
        (vec![("actor_role", "root")], false),
        (vec![("resource_type", "team"), ("resource_id", "t-1")], true),
        (vec![("resource_type", "team"), ("resource_id", "p-42")], false),
        (vec![("resource_id", "p-42")], true),
        (vec![("outcome", "failure")], true),
        (vec![("ip", "203.0.113.7")], true),
        (vec![("ip", "203.0.113.8")], false),
        (vec![("channel", "ui")], false),
        (vec![("sensitivity", "phi")], true),
        (vec![("sensitivity", "pci")], false),
        (vec![("data_subject", "patient-77")], true),
        (vec![("metadata.source.service", "billing")], true),
        (vec![("metadata.tokens", "470")], true),
        (vec![("metadata.flag", "true")], true),
        (vec![("metadata.source", "billing")], false),
        (vec![("since", "2026-01-15T14:32:11.234Z")], true),
        (vec![("until", "2026-01-15T14:32:11.234Z")], false),
        (vec![("since", "2026-01-01T00:00:00Z"), ("until", "2026-02-01T00:00:00+01:00")], true),
        (vec![("q", "APOLLO")], true),
        (vec![("q", "zeus")], false),
    ];
    for (pairs, expected) in cases {
        assert_eq!(query(&pairs).matches(&e), expected, "{pairs:?}");
    }
}

#[test]
fn bad_parameters_are_named() {
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("limit", "0")], "limit"),
        (vec![("limit", "1001")], "limit"),
        (vec![("limit", "ten")], "limit"),
        (vec![("order", "up")], "order"),
        (vec![("action", "Auth.*")], "action"),
        (vec![("action", "a,,b")], "action"),
        (vec![("outcome", "maybe")], "outcome"),
        (vec![("ip", "999.1.1.1")], "ip"),
        (vec![("since", "yesterday")], "since"),
        (vec![("since", "2026-02-01T00:00:00Z"), ("until", "2026-01-01T00:00:00Z")], "since"),
        (vec![("color", "red")], "color"),
        (vec![("actor_id", "a"), ("actor_id", "b")], "actor_id"),
        (vec![("metadata.", "x")], "metadata."),
        (vec![("metadata.a..b", "x")], "metadata.a..b"),
        (vec![("cursor", "garbage")], "cursor"),
        (vec![("actor_id", "")], "actor_id"),
    ];
    for (pairs, param) in cases {
        assert_eq!(error(&pairs).param, param, "{pairs:?}");
    }
}

#[test]
fn cursors_round_trip_and_bind_to_their_order() {
    let cursor = Cursor { seq: 41, order: Order::Desc };
    assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
    let text = cursor.encode();
    let (_, page) = parse_params(&params(&[("cursor", &text)])).unwrap();
    assert_eq!(page.after, Some(cursor));
    assert_eq!(error(&[("cursor", &text), ("order", "asc")]).param, "cursor");
}

#[test]
fn defaults() {
    let (q, page) = parse_params(&[]).unwrap();
    assert!(q.is_empty());
    assert_eq!(page, PageRequest { limit: 100, after: None, order: Order::Desc });
}

proptest::proptest! {
    #[test]
    fn glob_never_panics(pattern in "[a-z.*]{0,12}", text in "[a-z.]{0,16}") {
        let _ = ActionPattern::new(pattern).matches(&text);
    }

    #[test]
    fn star_free_patterns_are_equality(text in "[a-z.]{0,10}", other in "[a-z.]{0,10}") {
        proptest::prop_assert_eq!(ActionPattern::new(text.clone()).matches(&other), text == other);
    }

    #[test]
    fn parse_never_panics(name in "[a-z_.]{0,16}", value in ".{0,40}") {
        let _ = parse_params(&[(name, value)]);
    }
}
