//! Every input from outside is hostile: malformed, mistyped, oversized, deeply nested or
//! unauthorised requests get the exact documented status and error code, a message naming the
//! problem, store nothing (the tenant's ledger does not grow), and leave the server alive.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use veritrail_test_support::{BOOTSTRAP_TOKEN, Client, Reply, TestServer, event};

/// A running server with one tenant, and the ledger position last seen by a marker event.
struct Fixture {
    server: TestServer,
    admin: String,
    last_seq: u64,
    markers: u64,
    /// Failed cases so far: every case of a table runs, and [`Fixture::finish`] lists them all.
    failures: Vec<String>,
}

impl Fixture {
    fn start() -> Fixture {
        let server = TestServer::start();
        let (_, admin) = server.client.create_tenant("hostile input");
        let mut fixture = Fixture { server, admin, last_seq: 0, markers: 0, failures: Vec::new() };
        fixture.last_seq = fixture.marker();
        fixture
    }

    fn client(&self) -> &Client {
        &self.server.client
    }

    /// Appends a marker event and returns its seq.
    fn marker(&mut self) -> u64 {
        self.markers += 1;
        let marker = event(&format!("marker-{}", self.markers), "test.marker.appended", "marker-bot");
        let reply = self.server.client.ingest(&self.admin, &marker);
        assert_eq!(reply.status, 201, "marker ingest failed: {}", reply.text());
        reply.json()["events"][0]["seq"].as_u64().unwrap()
    }

    /// Checks that nothing reached the ledger since the previous marker: the next marker gets
    /// the very next seq.
    fn nothing_stored(&mut self, case: &str) -> Result<(), String> {
        let seq = self.marker();
        let grown_by = seq - self.last_seq - 1;
        self.last_seq = seq;
        if grown_by == 0 {
            Ok(())
        } else {
            Err(format!("{case}: the rejected request stored something (the ledger grew by {grown_by})"))
        }
    }

    /// Re-reads the ledger position after a request that legitimately appended events.
    fn resync(&mut self) {
        self.last_seq = self.marker();
    }

    /// The full check of one hostile request: error shape, nothing stored, server alive.
    /// A failed check is recorded and the next case still runs; a dead server fails at once.
    fn rejected(&mut self, case: &str, reply: &Reply, status: u16, code: &str, needles: &[&str]) {
        let shape = check_error(case, reply, status, code, needles);
        self.record(shape);
        let stored = self.nothing_stored(case);
        self.record(stored);
        assert_alive(self.client(), case);
    }

    /// A refused permission: the error shape, and exactly one record stored, the tenant's
    /// `permission.denied` event naming the permission (PCI DSS 10.2.1.x).
    fn denied(&mut self, case: &str, reply: &Reply, permission: &str) {
        let shape = check_error(case, reply, 403, "forbidden", &[permission]);
        self.record(shape);
        let seq = self.marker();
        let grown_by = seq - self.last_seq - 1;
        self.last_seq = seq;
        // The refusal is at seq - 1 (when the ledger grew by one); queries see it once indexed.
        let newest = || self.client().get(Some(&self.admin), "/v1/events?action=permission.denied&limit=1").json();
        let indexed = |page: &Value| page["events"][0]["seq"].as_u64().is_some_and(|at| at + 1 >= seq);
        let last = veritrail_test_support::wait_for(Duration::from_secs(2), || Some(newest()).filter(indexed))
            .unwrap_or_else(newest);
        let recorded = &last["events"][0];
        let at_refusal = recorded["seq"].as_u64() == Some(seq - 1);
        if grown_by != 1
            || !at_refusal
            || recorded["metadata"]["permission"] != permission
            || recorded["outcome"] != "denied"
        {
            self.failures
                .push(format!("{case}: expected one permission.denied record, ledger grew by {grown_by}: {last}"));
        }
        self.resync(); // past the audit.read of the check itself
        assert_alive(self.client(), case);
    }

    fn record(&mut self, outcome: Result<(), String>) {
        if let Err(failure) = outcome {
            self.failures.push(failure);
        }
    }

    /// Fails the test listing every failed check.
    fn finish(self) {
        assert!(self.failures.is_empty(), "{} check(s) failed:\n{}", self.failures.len(), self.failures.join("\n"));
    }
}

/// Checks `reply` is a JSON error with this status and code whose message contains every needle
/// (case-insensitively).
fn check_error(case: &str, reply: &Reply, status: u16, code: &str, needles: &[&str]) -> Result<(), String> {
    let text = reply.text();
    if reply.status != status {
        return Err(format!("{case}: status {} instead of {status} (body {text})", reply.status));
    }
    let content_type = reply.content_type.as_deref().unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err(format!("{case}: error content type is {content_type:?}"));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&reply.body) else {
        return Err(format!("{case}: error body is not json: {text}"));
    };
    if body["error"]["code"] != code {
        return Err(format!("{case}: code {} instead of {code:?} (body {text})", body["error"]["code"]));
    }
    let Some(message) = body["error"]["message"].as_str() else {
        return Err(format!("{case}: no error message in {text}"));
    };
    for needle in needles {
        if !message.to_lowercase().contains(&needle.to_lowercase()) {
            return Err(format!("{case}: message {message:?} does not mention {needle:?}"));
        }
    }
    Ok(())
}

fn assert_alive(client: &Client, case: &str) {
    let reply = client.get(None, "/healthz");
    assert_eq!(reply.status, 200, "{case}: server not healthy afterwards: {}", reply.text());
}

fn status_of(code: &str) -> u16 {
    match code {
        "event_too_large" | "batch_too_large" | "payload_too_large" => 413,
        "unsupported_media_type" => 415,
        "unauthorized" => 401,
        "forbidden" => 403,
        "not_found" => 404,
        "method_not_allowed" => 405,
        _ => 400,
    }
}

/// A valid event touching most of the schema, to be broken one field at a time.
fn valid() -> Value {
    json!({
        "action": "data.read",
        "occurred_at": "2026-01-15T14:32:11.234Z",
        "actor": {"id": "u-1", "type": "user", "name": "Jane", "email": "jane@example.com", "roles": ["admin"]},
        "resource": {"type": "document", "id": "d-1"},
        "targets": [{"type": "team", "id": "t-1"}],
        "outcome": "success",
        "reason": "support ticket 1",
        "context": {"ip": "203.0.113.7", "channel": "api"},
        "data_subject": "patient-1",
        "sensitivity": ["phi"],
        "metadata": {"tokens": 470}
    })
}

/// `valid()` with the field at `path` set to `value`.
fn with(path: &[&str], value: Value) -> Value {
    let mut event = valid();
    let (last, parents) = path.split_last().unwrap();
    let mut at = &mut event;
    for key in parents {
        at = at.as_object_mut().unwrap().entry(key.to_string()).or_insert_with(|| json!({}));
    }
    at.as_object_mut().unwrap().insert(last.to_string(), value);
    event
}

/// `valid()` without the field at `path`.
fn without(path: &[&str]) -> Value {
    let mut event = valid();
    let (last, parents) = path.split_last().unwrap();
    let mut at = &mut event;
    for key in parents {
        at = at.get_mut(*key).unwrap();
    }
    at.as_object_mut().unwrap().remove(*last);
    event
}

/// `levels` nested arrays around a number, e.g. `[[[1]]]`.
fn nested_arrays(levels: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..levels {
        value = json!([value]);
    }
    value
}

/// (case, event, error code, words the message must contain).
type SchemaCase = (&'static str, Value, &'static str, Vec<&'static str>);
/// (case, content type, body, error code, words the message must contain).
type BodyCase<'a> = (&'a str, &'a str, Vec<u8>, &'a str, Vec<&'a str>);
/// (case, bearer token, status, error code, words the message must contain).
type AuthCase<'a> = (&'a str, Option<&'a str>, u16, &'a str, Vec<&'a str>);

/// Events that each break one schema rule: (case, event, error code, words the message must contain).
fn schema_cases() -> Vec<SchemaCase> {
    let many_roles: Vec<String> = (0..33).map(|i| format!("role-{i}")).collect();
    let many_targets: Vec<Value> = (0..65).map(|i| json!({"type": "team", "id": format!("t-{i}")})).collect();
    let many_keys: serde_json::Map<String, Value> = (0..129).map(|i| (format!("k{i}"), json!(i))).collect();
    vec![
        // wrong JSON types, one per top-level field
        ("action as number", with(&["action"], json!(42)), "wrong_type", vec!["\"action\"", "string"]),
        ("actor as string", with(&["actor"], json!("u-1")), "wrong_type", vec!["\"actor\"", "object"]),
        (
            "targets as object",
            with(&["targets"], json!({"type": "team", "id": "t-1"})),
            "wrong_type",
            vec!["\"targets\"", "array"],
        ),
        ("sensitivity as string", with(&["sensitivity"], json!("phi")), "wrong_type", vec!["\"sensitivity\"", "array"]),
        ("metadata as array", with(&["metadata"], json!([1, 2])), "wrong_type", vec!["\"metadata\"", "object"]),
        (
            "occurred_at as number",
            with(&["occurred_at"], json!(1_700_000_000)),
            "wrong_type",
            vec!["\"occurred_at\"", "string"],
        ),
        ("id as number", with(&["id"], json!(7)), "wrong_type", vec!["\"id\"", "string"]),
        (
            "resource as array",
            with(&["resource"], json!(["document", "d-1"])),
            "wrong_type",
            vec!["\"resource\"", "object"],
        ),
        ("outcome as bool", with(&["outcome"], json!(true)), "wrong_type", vec!["\"outcome\"", "string"]),
        ("reason as number", with(&["reason"], json!(1)), "wrong_type", vec!["\"reason\"", "string"]),
        ("context as string", with(&["context"], json!("api")), "wrong_type", vec!["\"context\"", "object"]),
        ("changes as string", with(&["changes"], json!("status: open")), "wrong_type", vec!["\"changes\"", "object"]),
        (
            "data_subject as number",
            with(&["data_subject"], json!(77)),
            "wrong_type",
            vec!["\"data_subject\"", "string"],
        ),
        (
            "actor.roles as string",
            with(&["actor", "roles"], json!("admin")),
            "wrong_type",
            vec!["actor.roles", "array"],
        ),
        ("actor.id as number", with(&["actor", "id"], json!(123)), "wrong_type", vec!["actor.id", "string"]),
        ("sensitivity entry as number", with(&["sensitivity"], json!([1])), "wrong_type", vec!["sensitivity[0]"]),
        ("context.ip as number", with(&["context", "ip"], json!(2130706433)), "wrong_type", vec!["context.ip"]),
        // unknown fields
        ("unknown top-level field", with(&["colour"], json!("red")), "unknown_field", vec!["colour"]),
        (
            "unknown field in actor",
            with(&["actor", "nickname"], json!("jj")),
            "unknown_field",
            vec!["nickname", "actor"],
        ),
        (
            "unknown field in context",
            with(&["context", "country"], json!("DE")),
            "unknown_field",
            vec!["country", "context"],
        ),
        (
            "unknown field in resource",
            with(&["resource", "owner"], json!("u-2")),
            "unknown_field",
            vec!["owner", "resource"],
        ),
        (
            "unknown field in a target",
            with(&["targets"], json!([{"type": "team", "id": "t", "x": 1}])),
            "unknown_field",
            vec!["\"x\"", "targets[0]"],
        ),
        (
            "unknown field in changes",
            with(&["changes"], json!({"during": {}})),
            "unknown_field",
            vec!["during", "changes"],
        ),
        // required fields and action syntax
        ("missing action", without(&["action"]), "missing_field", vec!["\"action\""]),
        ("null action", with(&["action"], Value::Null), "missing_field", vec!["\"action\""]),
        ("missing actor", without(&["actor"]), "missing_field", vec!["\"actor\""]),
        ("missing actor.id", without(&["actor", "id"]), "missing_field", vec!["actor.id"]),
        ("missing target id", with(&["targets"], json!([{"type": "team"}])), "missing_field", vec!["targets[0].id"]),
        ("empty action", with(&["action"], json!("")), "invalid_value", vec!["\"action\"", "empty"]),
        ("uppercase action", with(&["action"], json!("Data.Read")), "invalid_value", vec!["\"action\"", "lowercase"]),
        ("action without dot", with(&["action"], json!("login")), "invalid_value", vec!["\"action\""]),
        ("action with empty segment", with(&["action"], json!("data..read")), "invalid_value", vec!["\"action\""]),
        ("action with trailing dot", with(&["action"], json!("data.")), "invalid_value", vec!["\"action\""]),
        ("action with space", with(&["action"], json!("data.read now")), "invalid_value", vec!["\"action\""]),
        ("empty actor.id", with(&["actor", "id"], json!("")), "invalid_value", vec!["actor.id", "empty"]),
        ("empty resource.id", with(&["resource", "id"], json!("")), "invalid_value", vec!["resource.id", "empty"]),
        ("bad id syntax", with(&["id"], json!("-starts-with-dash")), "invalid_value", vec!["\"id\""]),
        ("id too long", with(&["id"], json!("e".repeat(129))), "invalid_value", vec!["\"id\"", "128"]),
        ("reason too long", with(&["reason"], json!("r".repeat(2049))), "invalid_value", vec!["\"reason\"", "2048"]),
        // closed vocabularies
        ("unknown actor type", with(&["actor", "type"], json!("robot")), "invalid_value", vec!["actor.type"]),
        ("unknown outcome", with(&["outcome"], json!("maybe")), "invalid_value", vec!["\"outcome\""]),
        ("unknown channel", with(&["context", "channel"], json!("email")), "invalid_value", vec!["context.channel"]),
        ("unknown sensitivity", with(&["sensitivity"], json!(["top-secret"])), "invalid_value", vec!["sensitivity[0]"]),
        // timestamps
        (
            "occurred_at yesterday",
            with(&["occurred_at"], json!("yesterday")),
            "invalid_value",
            vec!["\"occurred_at\"", "rfc 3339"],
        ),
        (
            "occurred_at month 13",
            with(&["occurred_at"], json!("2026-13-01T00:00:00Z")),
            "invalid_value",
            vec!["\"occurred_at\""],
        ),
        (
            "occurred_at day 32",
            with(&["occurred_at"], json!("2026-01-32T00:00:00Z")),
            "invalid_value",
            vec!["\"occurred_at\""],
        ),
        (
            "occurred_at hour 25",
            with(&["occurred_at"], json!("2026-01-15T25:00:00Z")),
            "invalid_value",
            vec!["\"occurred_at\""],
        ),
        (
            "occurred_at without offset",
            with(&["occurred_at"], json!("2026-01-15T14:32:11")),
            "invalid_value",
            vec!["\"occurred_at\"", "offset"],
        ),
        (
            "occurred_at date only",
            with(&["occurred_at"], json!("2026-01-15")),
            "invalid_value",
            vec!["\"occurred_at\""],
        ),
        (
            "occurred_at with space",
            with(&["occurred_at"], json!("2026-01-15 14:32:11Z")),
            "invalid_value",
            vec!["\"occurred_at\""],
        ),
        (
            "occurred_at before 1970",
            with(&["occurred_at"], json!("1969-12-31T23:59:59Z")),
            "invalid_value",
            vec!["\"occurred_at\"", "1970"],
        ),
        (
            "occurred_at unix seconds as text",
            with(&["occurred_at"], json!("1700000000")),
            "invalid_value",
            vec!["\"occurred_at\""],
        ),
        (
            "occurred_at offset +25:00",
            with(&["occurred_at"], json!("2026-01-15T14:32:11+25:00")),
            "invalid_value",
            vec!["\"occurred_at\""],
        ),
        (
            "occurred_at offset minutes 60",
            with(&["occurred_at"], json!("2026-01-15T14:32:11+01:60")),
            "invalid_value",
            vec!["\"occurred_at\""],
        ),
        (
            "action too long",
            with(&["action"], json!(format!("data.{}", "a".repeat(124)))),
            "invalid_value",
            vec!["\"action\"", "128"],
        ),
        ("actor.id too long", with(&["actor", "id"], json!("u".repeat(257))), "invalid_value", vec!["actor.id", "256"]),
        ("ipv6 zone id", with(&["context", "ip"], json!("fe80::1%eth0")), "invalid_value", vec!["context.ip"]),
        ("empty object", json!({}), "missing_field", vec!["\"action\""]),
        // addresses
        ("ip out of range", with(&["context", "ip"], json!("999.1.1.1")), "invalid_value", vec!["context.ip"]),
        ("ip as hostname", with(&["context", "ip"], json!("localhost")), "invalid_value", vec!["context.ip"]),
        ("ip with port", with(&["context", "ip"], json!("203.0.113.7:443")), "invalid_value", vec!["context.ip"]),
        ("email without at", with(&["actor", "email"], json!("nobody")), "invalid_value", vec!["actor.email"]),
        (
            "email with two ats",
            with(&["actor", "email"], json!("a@b@example.com")),
            "invalid_value",
            vec!["actor.email"],
        ),
        (
            "email without local part",
            with(&["actor", "email"], json!("@example.com")),
            "invalid_value",
            vec!["actor.email"],
        ),
        // values every field must obey
        ("nul in actor.id", with(&["actor", "id"], json!("u\u{0}1")), "invalid_value", vec!["actor.id", "nul"]),
        ("nul in a metadata key", with(&["metadata"], json!({"a\u{0}b": 1})), "invalid_value", vec!["nul"]),
        (
            "nul in changes",
            with(&["changes"], json!({"after": {"s": "x\u{0}"}})),
            "invalid_value",
            vec!["changes.after.s", "nul"],
        ),
        (
            "metadata integer 2^53",
            with(&["metadata"], json!({"big": 9_007_199_254_740_992_u64})),
            "invalid_value",
            vec!["metadata.big", "i-json"],
        ),
        (
            "metadata integer -2^53",
            with(&["metadata"], json!({"big": -9_007_199_254_740_992_i64})),
            "invalid_value",
            vec!["metadata.big"],
        ),
        ("metadata u64 max", with(&["metadata"], json!({"big": u64::MAX})), "invalid_value", vec!["metadata.big"]),
        ("metadata float 1e300", with(&["metadata"], json!({"big": 1e300})), "invalid_value", vec!["metadata.big"]),
        (
            "changes integer beyond 2^53",
            with(&["changes"], json!({"after": {"n": 1_u64 << 60}})),
            "invalid_value",
            vec!["changes.after.n"],
        ),
        // reserved metadata keys
        (
            "metadata.change.emergency as string",
            with(&["metadata"], json!({"change": {"emergency": "yes"}})),
            "wrong_type",
            vec!["metadata.change.emergency", "boolean"],
        ),
        (
            "metadata.change unknown field",
            with(&["metadata"], json!({"change": {"approved_by": "x"}})),
            "unknown_field",
            vec!["approved_by", "metadata.change"],
        ),
        (
            "metadata.change as string",
            with(&["metadata"], json!({"change": "CHG-1"})),
            "wrong_type",
            vec!["metadata.change"],
        ),
        (
            "metadata.purpose_category unknown",
            with(&["metadata"], json!({"purpose_category": "fun"})),
            "invalid_value",
            vec!["metadata.purpose_category"],
        ),
        (
            "metadata.legal_basis as number",
            with(&["metadata"], json!({"legal_basis": 6})),
            "wrong_type",
            vec!["metadata.legal_basis"],
        ),
        (
            "metadata.disclosure.recipient as string",
            with(&["metadata"], json!({"disclosure": {"recipient": "acme"}})),
            "wrong_type",
            vec!["metadata.disclosure.recipient"],
        ),
        (
            "metadata.consent.purposes entry as number",
            with(&["metadata"], json!({"consent": {"purposes": [1]}})),
            "wrong_type",
            vec!["metadata.consent.purposes[0]"],
        ),
        ("metadata.error as number", with(&["metadata"], json!({"error": 500})), "wrong_type", vec!["metadata.error"]),
        // shape limits
        (
            "metadata nested 20 levels",
            with(&["metadata"], json!({"deep": nested_arrays(20)})),
            "too_deep",
            vec!["metadata.deep", "16"],
        ),
        ("33 roles", with(&["actor", "roles"], json!(many_roles)), "too_many", vec!["actor.roles", "32"]),
        ("65 targets", with(&["targets"], json!(many_targets)), "too_many", vec!["\"targets\"", "64"]),
        ("129 metadata keys", with(&["metadata"], Value::Object(many_keys)), "too_many", vec!["\"metadata\"", "128"]),
    ]
}

#[test]
fn schema_violations_name_the_field_and_store_nothing() {
    let mut fixture = Fixture::start();
    let mut good_ids = Vec::new();
    for (index, (case, bad, code, needles)) in schema_cases().into_iter().enumerate() {
        let reply = fixture.client().ingest(&fixture.admin, &bad);
        fixture.rejected(case, &reply, status_of(code), code, &needles);

        // The same event after good ones in a batch: the whole batch is refused, naming the index.
        let good_id = format!("good-{index}");
        let batch =
            json!([event(&good_id, "data.read", "u-1"), event(&format!("{good_id}-b"), "data.read", "u-1"), bad]);
        let reply = fixture.client().ingest(&fixture.admin, &batch);
        let mut batch_needles = needles.clone();
        batch_needles.push("event 2");
        fixture.rejected(&format!("{case} (in a batch)"), &reply, status_of(code), code, &batch_needles);
        good_ids.push((case, good_id));
    }
    // The good events of the refused batches cannot be found by id either.
    for (case, id) in good_ids {
        let reply = fixture.client().get(Some(&fixture.admin), &format!("/v1/events/{id}"));
        let found =
            check_error(&format!("{case}: good event {id} of the refused batch"), &reply, 404, "not_found", &[]);
        fixture.record(found);
    }
    fixture.finish();
}

#[test]
fn malformed_bodies_are_rejected_whole() {
    let good = event("g-1", "data.read", "u-1").to_string();
    let bad_line = r#"{"action":"data.read","actor":{"id":"u-1"},"colour":"red"}"#;
    let cases: Vec<BodyCase<'_>> = vec![
        (
            "truncated json",
            "application/json",
            br#"{"action":"data.read","actor":"#.to_vec(),
            "malformed_json",
            vec!["json"],
        ),
        ("unquoted keys", "application/json", br#"{action:"data.read"}"#.to_vec(), "malformed_json", vec!["json"]),
        ("single quotes", "application/json", br#"{'action':'data.read'}"#.to_vec(), "malformed_json", vec!["json"]),
        (
            "trailing comma",
            "application/json",
            br#"{"action":"data.read","actor":{"id":"u"},}"#.to_vec(),
            "malformed_json",
            vec!["json"],
        ),
        (
            "trailing garbage",
            "application/json",
            format!("{good} garbage").into_bytes(),
            "malformed_json",
            vec!["trailing"],
        ),
        (
            "two concatenated objects",
            "application/json",
            format!("{good}{good}").into_bytes(),
            "malformed_json",
            vec!["trailing"],
        ),
        (
            "duplicate key",
            "application/json",
            br#"{"action":"data.read","action":"auth.logout","actor":{"id":"u"}}"#.to_vec(),
            "malformed_json",
            vec!["duplicate", "action"],
        ),
        (
            "duplicate key nested",
            "application/json",
            br#"{"action":"data.read","actor":{"id":"u","id":"v"}}"#.to_vec(),
            "malformed_json",
            vec!["duplicate"],
        ),
        (
            "NaN literal",
            "application/json",
            br#"{"action":"data.read","actor":{"id":"u"},"metadata":{"x":NaN}}"#.to_vec(),
            "malformed_json",
            vec!["json"],
        ),
        (
            "number overflowing f64",
            "application/json",
            br#"{"action":"data.read","actor":{"id":"u"},"metadata":{"x":1e400}}"#.to_vec(),
            "malformed_json",
            vec!["json"],
        ),
        (
            "lone surrogate escape",
            "application/json",
            br#"{"action":"data.read","actor":{"id":"\ud800"}}"#.to_vec(),
            "malformed_json",
            vec!["json"],
        ),
        (
            "byte order mark",
            "application/json",
            [b"\xEF\xBB\xBF".as_slice(), good.as_bytes()].concat(),
            "malformed_json",
            vec!["json"],
        ),
        ("json string body", "application/json", br#""data.read""#.to_vec(), "wrong_type", vec!["object"]),
        ("json number body", "application/json", b"42".to_vec(), "wrong_type", vec!["object"]),
        ("json null body", "application/json", b"null".to_vec(), "wrong_type", vec!["object"]),
        ("json bool body", "application/json", b"true".to_vec(), "wrong_type", vec!["object"]),
        ("array of numbers", "application/json", b"[1, 2]".to_vec(), "wrong_type", vec!["event 0", "object"]),
        (
            "array with null",
            "application/json",
            format!("[{good}, null]").into_bytes(),
            "wrong_type",
            vec!["event 1", "object"],
        ),
        (
            "nested batch",
            "application/json",
            format!("[[{good}]]").into_bytes(),
            "wrong_type",
            vec!["event 0", "object"],
        ),
        (
            "invalid utf-8 in a string",
            "application/json",
            b"{\"action\":\"data.read\",\"actor\":{\"id\":\"u\xff\xfe\"}}".to_vec(),
            "invalid_utf8",
            vec!["utf-8"],
        ),
        (
            "overlong utf-8 encoding",
            "application/json",
            b"{\"action\":\"data.read\",\"actor\":{\"id\":\"\xc0\xaf\"}}".to_vec(),
            "invalid_utf8",
            vec!["utf-8"],
        ),
        (
            "utf-8 surrogate bytes",
            "application/json",
            b"{\"action\":\"data.read\",\"actor\":{\"id\":\"\xed\xa0\x80\"}}".to_vec(),
            "invalid_utf8",
            vec!["utf-8"],
        ),
        (
            "invalid utf-8 in ndjson",
            "application/x-ndjson",
            [good.as_bytes(), b"\n\xff\n"].concat(),
            "invalid_utf8",
            vec!["utf-8"],
        ),
        (
            "latin-1 body",
            "application/json",
            b"{\"action\":\"data.read\",\"actor\":{\"id\":\"J\xfcrgen\"}}".to_vec(),
            "invalid_utf8",
            vec!["utf-8"],
        ),
        ("empty array", "application/json", b"[]".to_vec(), "empty_batch", vec!["no event"]),
        ("empty body", "application/json", Vec::new(), "empty_batch", vec!["no event"]),
        ("whitespace body", "application/json", b"  \n\t ".to_vec(), "empty_batch", vec!["no event"]),
        ("empty ndjson body", "application/x-ndjson", Vec::new(), "empty_batch", vec!["no event"]),
        ("blank ndjson lines", "application/x-ndjson", b"\n\n  \n".to_vec(), "empty_batch", vec!["no event"]),
        (
            "ndjson with a broken line",
            "application/x-ndjson",
            format!("{good}\n{{\"action\":\n{good}\n").into_bytes(),
            "malformed_json",
            vec!["event 1", "line 2"],
        ),
        (
            "ndjson with a schema-bad line",
            "application/x-ndjson",
            format!("{good}\n\n{good}\n{bad_line}\n").into_bytes(),
            "unknown_field",
            vec!["event 2", "colour"],
        ),
        (
            "ndjson with an array line",
            "application/x-ndjson",
            format!("{good}\n[{good}]\n").into_bytes(),
            "wrong_type",
            vec!["event 1", "object"],
        ),
        (
            "ndjson body sent as json",
            "application/json",
            format!("{good}\n{good}\n").into_bytes(),
            "malformed_json",
            vec!["trailing"],
        ),
        (
            "text/plain content type",
            "text/plain",
            good.clone().into_bytes(),
            "unsupported_media_type",
            vec!["text/plain"],
        ),
        (
            "form content type",
            "application/x-www-form-urlencoded",
            good.clone().into_bytes(),
            "unsupported_media_type",
            vec!["application/x-www-form-urlencoded"],
        ),
        (
            "xml content type",
            "application/xml",
            b"<event/>".to_vec(),
            "unsupported_media_type",
            vec!["application/xml"],
        ),
    ];
    let mut fixture = Fixture::start();
    for (case, content_type, body, code, needles) in cases {
        let reply = fixture.client().post_raw(Some(&fixture.admin), "/v1/events", content_type, &body);
        fixture.rejected(case, &reply, status_of(code), code, &needles);
    }
    // Unknown or malformed query parameters on ingest are refused, not ignored; the message names
    // the one parameter ingest accepts.
    for query in ["dry_run=true", "receipt=maybe", "receipt=true&receipt=true", "tenant=other"] {
        let path = format!("/v1/events?{query}");
        let reply = fixture.client().post_raw(Some(&fixture.admin), &path, "application/json", good.as_bytes());
        fixture.rejected(&format!("POST {path}"), &reply, 400, "invalid_query", &["receipt"]);
    }
    fixture.finish();
}

#[test]
fn deep_nesting_is_a_quick_400() {
    const LEVELS: usize = 100_000;
    let prefix = r#"{"action":"data.read","actor":{"id":"u-1"},"metadata":{"a":"#;
    let arrays = format!("{prefix}{}{}}}}}", "[".repeat(LEVELS), "]".repeat(LEVELS));
    let objects = format!("{prefix}{}1{}}}}}", r#"{"a":"#.repeat(LEVELS), "}".repeat(LEVELS));
    let cases: Vec<(&str, &str, String)> = vec![
        ("100k nested arrays in metadata", "application/json", arrays.clone()),
        ("100k nested objects in metadata", "application/json", objects.clone()),
        ("100k nested arrays as the body", "application/json", format!("{}{}", "[".repeat(LEVELS), "]".repeat(LEVELS))),
        ("100k unclosed arrays", "application/json", "[".repeat(LEVELS)),
        ("100k unclosed objects", "application/json", r#"{"a":"#.repeat(LEVELS)),
        ("100k nested arrays in an ndjson line", "application/x-ndjson", arrays),
        ("100k nested objects in a batch", "application/json", format!("[{objects}]")),
    ];
    let mut fixture = Fixture::start();
    for (case, content_type, body) in cases {
        let started = Instant::now();
        let reply = fixture.client().post_raw(Some(&fixture.admin), "/v1/events", content_type, body.as_bytes());
        let elapsed = started.elapsed();
        fixture.rejected(case, &reply, 400, "too_deep", &["nested"]);
        if elapsed > Duration::from_secs(2) {
            fixture.failures.push(format!("{case}: took {elapsed:?}"));
        }
    }
    fixture.finish();
}

#[test]
fn oversized_bodies_events_and_batches_are_413() {
    let mut fixture = Fixture::start();

    let huge = with(&["metadata"], json!({"pad": "x".repeat(70_000)}));
    let reply = fixture.client().ingest(&fixture.admin, &huge);
    fixture.rejected("event over 64 KiB", &reply, 413, "event_too_large", &["bytes", "65536"]);

    let batch = json!([valid(), huge, valid()]);
    let reply = fixture.client().ingest(&fixture.admin, &batch);
    fixture.rejected("oversized event in a batch", &reply, 413, "event_too_large", &["event 1", "65536"]);

    let ndjson = format!("{}\n{}\n", valid(), batch[1]);
    let reply =
        fixture.client().post_raw(Some(&fixture.admin), "/v1/events", "application/x-ndjson", ndjson.as_bytes());
    fixture.rejected("oversized event in ndjson", &reply, 413, "event_too_large", &["event 1", "65536"]);

    let tiny = json!({"action": "data.read", "actor": {"id": "u"}}).to_string();
    let too_many = format!("[{}]", vec![tiny.as_str(); 10_001].join(","));
    let reply = fixture.client().post_raw(Some(&fixture.admin), "/v1/events", "application/json", too_many.as_bytes());
    fixture.rejected("10001 events in a batch", &reply, 413, "batch_too_large", &["10000"]);

    let too_many_lines = vec![tiny.as_str(); 10_001].join("\n");
    let reply = fixture.client().post_raw(
        Some(&fixture.admin),
        "/v1/events",
        "application/x-ndjson",
        too_many_lines.as_bytes(),
    );
    fixture.rejected("10001 ndjson lines", &reply, 413, "batch_too_large", &["10000"]);

    // 64 MiB, built once and streamed both with a Content-Length and chunked.
    let pad = vec![b'x'; 64 * 1024 * 1024];
    let body: Arc<Vec<u8>> = Arc::new(
        [br#"{"action":"data.read","actor":{"id":"u"},"metadata":{"pad":""#.as_slice(), &pad, b"\"}}"].concat(),
    );
    drop(pad);
    for chunked in [false, true] {
        let case = if chunked { "64 MiB chunked body" } else { "64 MiB body" };
        let started = Instant::now();
        let reply = raw_post(fixture.server.addr, &fixture.admin, body.clone(), chunked);
        fixture.rejected(case, &reply, 413, "payload_too_large", &["larger than"]);
        assert!(started.elapsed() < Duration::from_secs(20), "{case}: took {:?}", started.elapsed());
    }

    // Just under the per-event limit is still accepted (the limits are not off by a lot).
    let near = with(&["metadata"], json!({"pad": "x".repeat(60_000)}));
    let reply = fixture.client().ingest(&fixture.admin, &near);
    assert_eq!(reply.status, 201, "60 KB event: {}", reply.text());
    fixture.resync();
    fixture.finish();
}

/// POSTs `body` to `/v1/events` over a raw connection, writing it from a second thread so that a
/// server answering early (and closing) never deadlocks the test.
fn raw_post(addr: SocketAddr, token: &str, body: Arc<Vec<u8>>, chunked: bool) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let framing =
        if chunked { "transfer-encoding: chunked".to_string() } else { format!("content-length: {}", body.len()) };
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\n{framing}\r\nconnection: close\r\n\r\n"
    );
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(head.as_bytes())?;
        for chunk in body.chunks(1 << 20) {
            if chunked {
                writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                writer.write_all(chunk)?;
                writer.write_all(b"\r\n")?;
            } else {
                writer.write_all(chunk)?;
            }
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n")?;
        }
        Ok(())
    });
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                received.extend_from_slice(&buffer[..n]);
                if parse_response(&received).is_some() {
                    break;
                }
            }
            Err(_) => break, // a reset after the answer is fine; a missing answer fails below
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    let _ = sender.join().unwrap(); // the server may stop reading early; write errors are expected
    parse_response(&received)
        .unwrap_or_else(|| panic!("no complete http response; got {:?}", String::from_utf8_lossy(&received)))
}

/// Parses a complete `HTTP/1.1` response with a `content-length` body.
fn parse_response(bytes: &[u8]) -> Option<Reply> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut length = None;
    let mut content_type = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse::<usize>().ok(),
            "content-type" => content_type = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let body = &bytes[end + 4..];
    let length = length?;
    (body.len() >= length).then(|| Reply { status, body: body[..length].to_vec(), content_type, retry_after: None })
}

/// Sends a raw request head (no body) and returns the reply.
fn raw_request(addr: SocketAddr, head: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    parse_response(&received)
        .unwrap_or_else(|| panic!("no http response; got {:?}", String::from_utf8_lossy(&received)))
}

#[test]
fn credentials_are_checked_before_anything_else() {
    let mut fixture = Fixture::start();
    let admin = fixture.admin.clone();
    let reader = fixture.client().create_key(&admin, &["events:read"]);
    let writer = fixture.client().create_key(&admin, &["events:write"]);
    let (_, other_admin) = fixture.client().create_tenant("other tenant");
    let other_event = fixture.client().ingest(&other_admin, &event("other-1", "data.read", "u-9"));
    assert_eq!(other_event.status, 201, "{}", other_event.text());
    fixture.resync();

    let body = event("auth-1", "data.read", "u-1");
    let key_id = admin.strip_prefix("vt_").unwrap().split_once('_').unwrap().0;
    let wrong_secret = format!("vt_{key_id}_{}", "a".repeat(52));
    let long_token = "v".repeat(300);
    let cases: Vec<AuthCase<'_>> = vec![
        ("no authorization header", None, 401, "unauthorized", vec!["bearer"]),
        ("garbage token", Some("garbage"), 401, "unauthorized", vec!["invalid"]),
        ("malformed api key", Some("vt_x_y"), 401, "unauthorized", vec!["invalid"]),
        ("api key prefix only", Some("vt_"), 401, "unauthorized", vec!["invalid"]),
        ("right key id, wrong secret", Some(&wrong_secret), 401, "unauthorized", vec!["invalid"]),
        ("300-character token", Some(&long_token), 401, "unauthorized", vec!["invalid"]),
        ("bootstrap token inside a tenant", Some(BOOTSTRAP_TOKEN), 403, "forbidden", vec!["platform"]),
    ];
    for (case, token, status, code, needles) in cases {
        let reply = fixture.client().post_json(token, "/v1/events", &body);
        fixture.rejected(&format!("POST /v1/events: {case}"), &reply, status, code, &needles);
    }
    let cases: Vec<AuthCase<'_>> = vec![
        ("no authorization header", None, 401, "unauthorized", vec!["bearer"]),
        ("garbage token", Some("garbage"), 401, "unauthorized", vec!["invalid"]),
        ("malformed api key", Some("vt_x_y"), 401, "unauthorized", vec!["invalid"]),
    ];
    for (case, token, status, code, needles) in cases {
        let reply = fixture.client().get(token, "/v1/events");
        fixture.rejected(&format!("GET /v1/events: {case}"), &reply, status, code, &needles);
        let reply = fixture.client().get(token, "/v1/events/auth-1");
        fixture.rejected(&format!("GET /v1/events/{{id}}: {case}"), &reply, status, code, &needles);
        let reply = fixture.client().get(token, "/v1/export?format=jsonl");
        fixture.rejected(&format!("GET /v1/export: {case}"), &reply, status, code, &needles);
    }
    // The bootstrap token reads the platform ledger only: no tenant's event, by query, id or export.
    for path in ["/v1/events?limit=1000", "/v1/export?format=jsonl"] {
        let reply = fixture.client().get(Some(BOOTSTRAP_TOKEN), path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        for line in reply.text().lines() {
            assert!(!line.contains("auth-1") && !line.contains("other-1"), "{path} shows a tenant's event: {line}");
        }
        assert!(reply.text().contains("\"tenant\":\"platform\""), "{path}: {}", reply.text());
    }
    for id in ["auth-1", "other-1"] {
        let reply = fixture.client().get(Some(BOOTSTRAP_TOKEN), &format!("/v1/events/{id}"));
        fixture.rejected("bootstrap token reading a tenant's event", &reply, 404, "not_found", &["event"]);
    }
    // A valid key without the permission: refused, and the refusal is recorded.
    let reply = fixture.client().post_json(Some(&reader), "/v1/events", &body);
    fixture.denied("POST /v1/events: read-only key ingesting", &reply, "events:write");
    let reply = fixture.client().get(Some(&writer), "/v1/events");
    fixture.denied("GET /v1/events: write-only key querying", &reply, "events:read");
    let reply = fixture.client().get(Some(&writer), "/v1/events/auth-1");
    fixture.denied("GET /v1/events/{id}: write-only key querying", &reply, "events:read");
    let reply = fixture.client().get(Some(&writer), "/v1/export?format=jsonl");
    fixture.denied("GET /v1/export: write-only key exporting", &reply, "events:export");

    // Other schemes and header shapes, sent raw.
    let addr = fixture.server.addr;
    let headers = [
        ("basic scheme", format!("authorization: Basic {admin}\r\n")),
        ("bearer without token", "authorization: Bearer\r\n".to_string()),
        ("bearer with blank token", "authorization: Bearer    \r\n".to_string()),
        ("token without scheme", format!("authorization: {admin}\r\n")),
        ("non-ascii header value", "authorization: Bearer vt_\u{e9}_x\r\n".to_string()),
    ];
    for (case, header) in headers {
        let reply =
            raw_request(addr, &format!("GET /v1/events HTTP/1.1\r\nhost: x\r\n{header}connection: close\r\n\r\n"));
        fixture.rejected(case, &reply, 401, "unauthorized", &[]);
    }

    // Scopes on the admin endpoints; the platform token on tenant endpoints and vice versa.
    let reply = fixture.client().post_json(Some(&writer), "/v1/api-keys", &json!({"name": "x", "scopes": ["admin"]}));
    fixture.denied("write key creating a key", &reply, "keys:manage");
    // A key cannot grant what its creator lacks.
    let keys_only = fixture.client().create_key(&admin, &["keys:manage"]);
    fixture.resync();
    let reply =
        fixture.client().post_json(Some(&keys_only), "/v1/api-keys", &json!({"name": "x", "scopes": ["pii:read"]}));
    fixture.rejected("key manager granting pii:read", &reply, 403, "forbidden", &["pii:read"]);
    let reply = fixture.client().post_json(Some(&admin), "/v1/tenants", &json!({"name": "sneaky"}));
    fixture.denied("tenant key creating a tenant", &reply, "platform");
    let reply = fixture.client().post_json(None, "/v1/tenants", &json!({"name": "sneaky"}));
    fixture.rejected("anonymous tenant creation", &reply, 401, "unauthorized", &["bearer"]);

    // Another tenant's event id is simply not found.
    let reply = fixture.client().get(Some(&admin), "/v1/events/other-1");
    fixture.rejected("another tenant's event", &reply, 404, "not_found", &["event"]);
    assert_alive(fixture.client(), "end");
    fixture.finish();
}

#[test]
fn revoked_key_is_refused_at_once() {
    let mut fixture = Fixture::start();
    let admin = fixture.admin.clone();
    let writer = fixture.client().create_key(&admin, &["events:write", "events:read"]);
    let writer_id = writer.strip_prefix("vt_").unwrap().split_once('_').unwrap().0.to_string();
    let reply = fixture.client().ingest(&writer, &event("before-revoke", "data.read", "u-1"));
    assert_eq!(reply.status, 201, "key works before revocation: {}", reply.text());

    let reply = fixture.client().delete(Some(&admin), &format!("/v1/api-keys/{writer_id}"));
    assert_eq!(reply.status, 204, "revoke: {}", reply.text());
    fixture.resync();

    let reply = fixture.client().ingest(&writer, &event("after-revoke", "data.read", "u-1"));
    fixture.rejected("revoked key ingesting", &reply, 401, "unauthorized", &["revoked"]);
    let reply = fixture.client().get(Some(&writer), "/v1/events");
    fixture.rejected("revoked key querying", &reply, 401, "unauthorized", &["revoked"]);

    let reply = fixture.client().delete(Some(&admin), "/v1/api-keys/no-such-key");
    fixture.rejected("revoking an unknown key", &reply, 404, "not_found", &["api key"]);
    let reply = fixture.client().delete(Some(&writer), &format!("/v1/api-keys/{writer_id}"));
    fixture.rejected("revoked key revoking itself", &reply, 401, "unauthorized", &[]);
    fixture.finish();
}

#[test]
fn hostile_query_parameters_are_invalid_query() {
    let mut fixture = Fixture::start();
    let asc_cursor = first_cursor(&fixture, "/v1/events?order=asc&limit=1");
    fixture.resync();
    let long_value = "a".repeat(600);
    let many_metadata: String = (0..17).map(|i| format!("metadata.k{i}=v&")).collect();
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("colour=red".into(), vec!["colour"]),
        ("actor=u-1".into(), vec!["actor"]),
        ("actor_id=a&actor_id=b".into(), vec!["actor_id", "more than once"]),
        ("limit=5&limit=6".into(), vec!["limit", "more than once"]),
        ("limit=0".into(), vec!["limit"]),
        ("limit=1001".into(), vec!["limit"]),
        ("limit=abc".into(), vec!["limit"]),
        ("limit=-1".into(), vec!["limit"]),
        ("limit=1.5".into(), vec!["limit"]),
        ("limit=99999999999999999999".into(), vec!["limit"]),
        ("limit=".into(), vec!["limit", "empty"]),
        ("cursor=garbage".into(), vec!["cursor"]),
        ("cursor=YzEueC4x".into(), vec!["cursor"]),   // base64 of "c1.x.1"
        ("cursor=YzEuZC4tMQ".into(), vec!["cursor"]), // base64 of "c1.d.-1"
        (format!("cursor={}", "Y".repeat(100)), vec!["cursor"]),
        (format!("cursor={asc_cursor}"), vec!["cursor", "order"]), // asc cursor, default desc order
        ("since=yesterday".into(), vec!["since"]),
        ("since=2026-13-01T00:00:00Z".into(), vec!["since"]),
        ("until=2026-01-15T14:32:11".into(), vec!["until"]),
        ("since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z".into(), vec!["since"]),
        ("order=sideways".into(), vec!["order"]),
        ("action=Data.Read".into(), vec!["action"]),
        ("action=data.read,,auth.*".into(), vec!["action"]),
        ("action=data%20read".into(), vec!["action"]),
        ("actor_type=robot".into(), vec!["actor_type"]),
        ("outcome=maybe".into(), vec!["outcome"]),
        ("channel=email".into(), vec!["channel"]),
        ("sensitivity=top-secret".into(), vec!["sensitivity"]),
        ("ip=999.1.1.1".into(), vec!["ip"]),
        ("metadata.=x".into(), vec!["metadata."]),
        ("metadata.a..b=x".into(), vec!["metadata.a..b"]),
        ("metadata.a%20b=x".into(), vec!["metadata.a b"]),
        (many_metadata.trim_end_matches('&').to_string(), vec!["metadata", "16"]),
        (format!("actor_id={long_value}"), vec!["actor_id", "512"]),
        ("actor_id=".into(), vec!["actor_id", "empty"]),
    ];
    for (query, needles) in &cases {
        let reply = fixture.client().get(Some(&fixture.admin), &format!("/v1/events?{query}"));
        fixture.rejected(&format!("GET /v1/events?{query}"), &reply, 400, "invalid_query", needles);
    }
    for (query, needles) in &cases[..3] {
        let reply = fixture.client().get(Some(&fixture.admin), &format!("/v1/export?format=jsonl&{query}"));
        fixture.rejected(&format!("GET /v1/export?format=jsonl&{query}"), &reply, 400, "invalid_query", needles);
    }
    let export_cases = [
        ("", vec!["format"]),
        ("format=xml", vec!["format"]),
        ("format=csv&format=jsonl", vec!["format", "more than once"]),
        ("format=csv&limit=5", vec!["limit"]),
    ];
    for (query, needles) in export_cases {
        let reply = fixture.client().get(Some(&fixture.admin), &format!("/v1/export?{query}"));
        fixture.rejected(&format!("GET /v1/export?{query}"), &reply, 400, "invalid_query", &needles);
    }
    fixture.finish();
}

#[test]
fn unknown_paths_and_methods_answer_json() {
    let mut fixture = Fixture::start();
    let admin = fixture.admin.clone();
    for path in ["/v1/nope", "/v2/events", "/", "/v1/events/a/b", "/V1/EVENTS"] {
        let reply = fixture.client().get(Some(&admin), path);
        fixture.rejected(&format!("GET {path}"), &reply, 404, "not_found", &[]);
    }
    for id in ["no-such-event", "..%2F..%2Fetc%2Fpasswd", &"x".repeat(200)] {
        let reply = fixture.client().get(Some(&admin), &format!("/v1/events/{id}"));
        fixture.rejected(&format!("GET /v1/events/{id}"), &reply, 404, "not_found", &["event"]);
    }
    let reply = fixture.client().delete(Some(&admin), "/v1/events");
    fixture.rejected("DELETE /v1/events", &reply, 405, "method_not_allowed", &["method"]);
    let reply = fixture.client().delete(Some(&admin), "/v1/events/no-such-event");
    fixture.rejected("DELETE /v1/events/{id}", &reply, 405, "method_not_allowed", &["method"]);
    let reply = fixture.client().post_json(Some(&admin), "/v1/events/x", &valid());
    fixture.rejected("POST /v1/events/{id}", &reply, 405, "method_not_allowed", &["method"]);
    let reply = fixture.client().get(Some(BOOTSTRAP_TOKEN), "/v1/tenants");
    fixture.rejected("GET /v1/tenants", &reply, 405, "method_not_allowed", &["method"]);
    let addr = fixture.server.addr;
    for method in ["PUT", "PATCH"] {
        let head = format!(
            "{method} /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {admin}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
        );
        let reply = raw_request(addr, &head);
        fixture.rejected(&format!("{method} /v1/events"), &reply, 405, "method_not_allowed", &["method"]);
    }
    fixture.finish();
}

/// The `next_cursor` of the first page of `path`, polling until the indexer has seen enough
/// events for there to be one.
fn first_cursor(fixture: &Fixture, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = fixture.client().get(Some(&fixture.admin), path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        if let Some(cursor) = reply.json()["next_cursor"].as_str() {
            return cursor.to_string();
        }
        assert!(Instant::now() < deadline, "{path}: no next_cursor after 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn admin_request_bodies_are_validated_like_events() {
    let mut fixture = Fixture::start();
    let admin = fixture.admin.clone();
    let cases: Vec<BodyCase<'_>> = vec![
        ("malformed json", "application/json", b"{".to_vec(), "malformed_json", vec!["json"]),
        (
            "invalid utf-8",
            "application/json",
            b"{\"name\":\"\xff\",\"scopes\":[\"admin\"]}".to_vec(),
            "invalid_utf8",
            vec!["utf-8"],
        ),
        (
            "unknown field",
            "application/json",
            br#"{"name":"x","scopes":["admin"],"extra":1}"#.to_vec(),
            "unknown_field",
            vec!["extra"],
        ),
        (
            "name as number",
            "application/json",
            br#"{"name":5,"scopes":["admin"]}"#.to_vec(),
            "wrong_type",
            vec!["name"],
        ),
        (
            "scopes as string",
            "application/json",
            br#"{"name":"x","scopes":"admin"}"#.to_vec(),
            "wrong_type",
            vec!["scopes"],
        ),
        ("missing scopes", "application/json", br#"{"name":"x"}"#.to_vec(), "missing_field", vec!["scopes"]),
        ("empty scopes", "application/json", br#"{"name":"x","scopes":[]}"#.to_vec(), "invalid_value", vec!["scopes"]),
        (
            "unknown scope",
            "application/json",
            br#"{"name":"x","scopes":["root"]}"#.to_vec(),
            "invalid_value",
            vec!["root"],
        ),
        (
            "blank name",
            "application/json",
            br#"{"name":"  ","scopes":["admin"]}"#.to_vec(),
            "invalid_value",
            vec!["name"],
        ),
        (
            "control character in name",
            "application/json",
            br#"{"name":"a\u0007b","scopes":["admin"]}"#.to_vec(),
            "invalid_value",
            vec!["name"],
        ),
        (
            "bad expires_at",
            "application/json",
            br#"{"name":"x","scopes":["admin"],"expires_at":"tomorrow"}"#.to_vec(),
            "invalid_value",
            vec!["expires_at"],
        ),
        (
            "text/plain content type",
            "text/plain",
            br#"{"name":"x","scopes":["admin"]}"#.to_vec(),
            "unsupported_media_type",
            vec!["text/plain"],
        ),
    ];
    for (case, content_type, body, code, needles) in cases {
        let reply = fixture.client().post_raw(Some(&admin), "/v1/api-keys", content_type, &body);
        fixture.rejected(&format!("POST /v1/api-keys: {case}"), &reply, status_of(code), code, &needles);
    }
    let keys = fixture.client().get(Some(&admin), "/v1/api-keys");
    assert_eq!(keys.status, 200, "{}", keys.text());
    let count = keys.json()["api_keys"].as_array().unwrap().len();
    fixture.record(if count == 1 { Ok(()) } else { Err(format!("refused key requests created keys: {count} keys")) });

    let big_name = format!(r#"{{"name":"{}"}}"#, "x".repeat(70_000));
    let cases: Vec<(&str, Vec<u8>, &str, Vec<&str>)> = vec![
        ("unknown field", br#"{"name":"x","plan":"gold"}"#.to_vec(), "unknown_field", vec!["plan"]),
        ("name as array", br#"{"name":["x"]}"#.to_vec(), "wrong_type", vec!["name"]),
        ("missing name", b"{}".to_vec(), "missing_field", vec!["name"]),
        ("blank name", br#"{"name":"   "}"#.to_vec(), "invalid_value", vec!["name"]),
        (
            "name over 200 characters",
            format!(r#"{{"name":"{}"}}"#, "n".repeat(201)).into_bytes(),
            "invalid_value",
            vec!["name"],
        ),
        ("body over 64 KiB", big_name.into_bytes(), "payload_too_large", vec!["65536"]),
    ];
    for (case, body, code, needles) in cases {
        let reply = fixture.client().post_raw(Some(BOOTSTRAP_TOKEN), "/v1/tenants", "application/json", &body);
        fixture.rejected(&format!("POST /v1/tenants: {case}"), &reply, status_of(code), code, &needles);
    }
    fixture.finish();
}

#[test]
fn oversized_uri_and_headers_leave_the_server_alive() {
    let mut fixture = Fixture::start();
    let addr = fixture.server.addr;
    let admin = fixture.admin.clone();
    let long_uri = format!(
        "GET /v1/events?actor_id={} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {admin}\r\nconnection: close\r\n\r\n",
        "a".repeat(100_000)
    );
    let huge_header = format!(
        "GET /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {admin}\r\nx-padding: {}\r\nconnection: close\r\n\r\n",
        "p".repeat(1 << 20)
    );
    let many_headers = format!(
        "GET /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {admin}\r\n{}connection: close\r\n\r\n",
        (0..10_000).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()
    );
    for (case, request) in [("100 KB uri", long_uri), ("1 MiB header", huge_header), ("10000 headers", many_headers)] {
        let reply = raw_request_lenient(addr, &request);
        // Refused by the HTTP layer (414/431/400) or by the query rules; never served, never fatal.
        if let Some(status) = reply
            && !(400..500).contains(&status)
        {
            fixture.failures.push(format!("{case}: status {status}, expected a 4xx refusal"));
        }
        let stored = fixture.nothing_stored(case);
        fixture.record(stored);
        assert_alive(fixture.client(), case);
    }
    fixture.finish();
}

/// Sends a raw request and returns the status, if the server answered before closing.
fn raw_request_lenient(addr: SocketAddr, request: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = stream.write_all(request.as_bytes());
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    let head = String::from_utf8_lossy(&received);
    head.split(' ').nth(1).and_then(|status| status.parse().ok())
}
