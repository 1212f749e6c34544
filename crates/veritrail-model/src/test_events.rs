//! Random events for property tests: every field of the schema, strings that exercise JSON
//! escaping, free-form values of every JSON type.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Strings that exercise JCS escaping: quotes, backslashes, controls, non-ASCII, astral.
pub(crate) fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9 ._@-]{1,12}", "[\"\\\\\u{1}\u{8}\t\n\u{c}\r\u{1f}\u{7f}é€\u{1F600}a-z]{1,10}",]
}

pub(crate) fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-9_007_199_254_740_991i64..=9_007_199_254_740_991).prop_map(Value::from),
        (-1e15f64..1e15).prop_map(|f| json!(f)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

fn resource() -> impl Strategy<Value = Value> {
    (text(), text(), prop::option::of(text())).prop_map(|(kind, id, name)| {
        let mut object = json!({"type": kind, "id": id});
        if let Some(name) = name {
            object["name"] = json!(name);
        }
        object
    })
}

prop_compose! {
    pub(crate) fn event()(
        id in prop::option::of("[a-z0-9][a-z0-9._:@/-]{0,20}"),
        occurred_at in prop::option::of(prop_oneof![
            Just("2026-01-15T15:32:11.234+01:00"), Just("2026-01-15T14:32:11Z"), Just("2026-01-15T14:32:11.123456789Z")
        ]),
        actor in (text(), prop::option::of(prop_oneof![Just("user"), Just("service"), Just("ai_agent")]),
                  prop::option::of(text()), prop::option::of("[a-z]{1,5}@[a-z]{1,5}"), prop::collection::vec(text(), 0..3)),
        resource in prop::option::of(resource()),
        targets in prop::collection::vec(resource(), 0..3),
        outcome in prop::option::of(prop_oneof![Just("success"), Just("failure"), Just("denied")]),
        reason in prop::option::of(text()),
        context in prop::option::of((prop::option::of(prop_oneof![Just("203.0.113.9"), Just("2001:db8::1")]),
                  prop::option::of(text()), prop::option::of(text()), prop::option::of(text()),
                  prop::option::of(prop_oneof![Just("ui"), Just("api")]), prop::option::of(text()))),
        changes in prop::option::of((prop::option::of(json_value()), prop::option::of(json_value()))),
        data_subject in prop::option::of(text()),
        sensitivity in prop::collection::vec(prop_oneof![Just("pii"), Just("phi"), Just("pci"), Just("secret")], 0..3),
        metadata in prop::option::of(prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..4)),
    ) -> Value {
        let mut event = json!({"action": "data.updated"});
        if let Some(id) = id { event["id"] = json!(id); }
        if let Some(at) = occurred_at { event["occurred_at"] = json!(at); }
        let (actor_id, kind, name, email, roles) = actor;
        let mut actor_json = json!({"id": actor_id});
        if let Some(kind) = kind { actor_json["type"] = json!(kind); }
        if let Some(name) = name { actor_json["name"] = json!(name); }
        if let Some(email) = email { actor_json["email"] = json!(email); }
        if !roles.is_empty() { actor_json["roles"] = json!(roles); }
        event["actor"] = actor_json;
        if let Some(resource) = resource { event["resource"] = resource; }
        if !targets.is_empty() { event["targets"] = json!(targets); }
        if let Some(outcome) = outcome { event["outcome"] = json!(outcome); }
        if let Some(reason) = reason { event["reason"] = json!(reason); }
        if let Some((ip, user_agent, location, session, channel, endpoint)) = context {
            let mut context = Map::new();
            for (key, value) in [("ip", ip.map(str::to_owned)), ("user_agent", user_agent), ("location", location),
                                 ("session_id", session), ("channel", channel.map(str::to_owned)), ("endpoint", endpoint)] {
                if let Some(value) = value { context.insert(key.to_owned(), json!(value)); }
            }
            event["context"] = Value::Object(context);
        }
        if let Some((before, after)) = changes {
            let mut object = Map::new();
            if let Some(before) = before { object.insert("before".to_owned(), before); }
            if let Some(after) = after { object.insert("after".to_owned(), after); }
            event["changes"] = Value::Object(object);
        }
        if let Some(subject) = data_subject { event["data_subject"] = json!(subject); }
        if !sensitivity.is_empty() { event["sensitivity"] = json!(sensitivity); }
        if let Some(metadata) = metadata {
            event["metadata"] = Value::Object(metadata.into_iter().collect());
        }
        event
    }
}
