//! The HTTP API end to end: ingest formats, idempotency, queries and pagination, reads by id,
//! exports, tenant isolation, keys and scopes, self-audit, operational endpoints.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use veritrail_test_support::{BOOTSTRAP_TOKEN, Client, TestServer, event};

/// Polls `GET path` until `done(body)` holds, for at most `within`.
fn eventually(client: &Client, key: &str, path: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let reply = client.get(Some(key), path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let body = reply.json();
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "condition not met within {within:?} for {path}: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ids(body: &Value) -> Vec<String> {
    body["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

fn seqs(reply: &Value) -> Vec<u64> {
    reply["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[test]
fn ingest_accepts_object_array_and_ndjson() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    // Seq 0 and 1 are the tenant's own audit.log.initialized and auth.token.created.
    let one = c.ingest(&key, &event("a1", "data.read", "u1"));
    assert_eq!(one.status, 201, "{}", one.text());
    assert_eq!(one.json(), json!({"events": [{"id": "a1", "seq": 2}]}));
    let many = c.ingest(&key, &json!([event("a2", "data.read", "u1"), event("a3", "data.read", "u1")]));
    assert_eq!(seqs(&many.json()), [3, 4]);
    let ndjson = format!("{}\n\n{}\n", event("a4", "x.y", "u1"), event("a5", "x.y", "u1"));
    let lines = c.post_raw(Some(&key), "/v1/events", "application/x-ndjson", ndjson.as_bytes());
    assert_eq!(lines.status, 201, "{}", lines.text());
    assert_eq!(seqs(&lines.json()), [5, 6]);
    // Without an id the server assigns a time-ordered one.
    let anonymous = c.ingest(&key, &json!({"action": "data.read", "actor": {"id": "u1"}}));
    let id = anonymous.json()["events"][0]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("evt_") && id.len() == 30, "{id}");
}

#[test]
fn same_id_gives_the_original_seq_and_no_duplicate() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    let first = c.ingest(&key, &event("dup", "data.read", "u1")).json();
    let again = c
        .ingest(
            &key,
            &json!([event("new", "data.read", "u1"), {"id": "dup", "action": "data.deleted", "actor": {"id": "u2"}}]),
        )
        .json();
    assert_eq!(seqs(&again), [seqs(&first)[0] + 1, seqs(&first)[0]]);
    let stored = c.get(Some(&key), "/v1/events/dup").json();
    assert_eq!(stored["action"], "data.read", "the first version is kept");
    let body = eventually(c, &key, "/v1/events?actor_id=u1&limit=1000", Duration::from_secs(5), |b| ids(b).len() == 2);
    assert_eq!(ids(&body), ["new", "dup"]);
}

#[test]
fn events_are_readable_by_id_with_seq_leaf_hash_and_proof_link() {
    let server = TestServer::start();
    let c = &server.client;
    let (tenant, key) = c.create_tenant("acme");
    let input = json!({
        "id": "e1", "action": "data.updated", "occurred_at": "2026-01-15T15:32:11.234+01:00",
        "actor": {"id": "user-123", "type": "user", "name": "Jane Smith", "email": "jane@acme.com", "roles": ["admin"]},
        "resource": {"type": "project", "id": "p-42", "name": "Apollo"},
        "targets": [{"type": "team", "id": "t-1"}],
        "outcome": "success", "reason": "ticket 123",
        "context": {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "channel": "api", "endpoint": "PATCH /projects/p-42"},
        "changes": {"before": {"status": "open"}, "after": {"status": "done"}},
        "data_subject": "patient-77", "sensitivity": ["phi"],
        "metadata": {"tokens": 470, "cost": 0.0045}
    });
    assert_eq!(c.ingest(&key, &input).status, 201);
    let got = c.get(Some(&key), "/v1/events/e1");
    assert_eq!(got.status, 200, "{}", got.text());
    let got = got.json();
    assert_eq!(got["tenant"], tenant);
    assert_eq!(got["seq"], 2);
    assert_eq!(got["occurred_at"], "2026-01-15T14:32:11.234Z", "normalised to UTC");
    assert_eq!(got["occurred_at_source"], "client");
    assert!(got["received_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(got["actor"], input["actor"]);
    assert_eq!(got["changes"], input["changes"]);
    assert_eq!(got["context"]["ip"], "203.0.113.7");
    assert_eq!(got["metadata"], input["metadata"]);
    assert_eq!(got["leaf_hash"].as_str().unwrap().len(), 44);
    assert_eq!(got["proof"], "/v1/ledger/proof/inclusion?seq=2");
    assert_eq!(c.get(Some(&key), "/v1/events/nope").status, 404);
}

#[test]
fn pagination_returns_every_event_exactly_once_in_both_orders() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    let batch: Vec<Value> = (0..250).map(|i| event(&format!("p{i:03}"), "page.test", "u1")).collect();
    assert_eq!(c.ingest(&key, &Value::Array(batch)).status, 201);
    eventually(c, &key, "/v1/events?action=page.test&limit=1000", Duration::from_secs(5), |b| ids(b).len() == 250);
    for order in ["desc", "asc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/events?action=page.*&limit=37&order={order}");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page = c.get(Some(&key), &path).json();
            seen.extend(ids(&page));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        let mut expected: Vec<String> = (0..250).map(|i| format!("p{i:03}")).collect();
        if order == "desc" {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{order}");
    }
}

#[test]
fn filters_narrow_results() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    let events = json!([
        {"id": "f1", "action": "auth.login.failed", "actor": {"id": "alice", "email": "Alice@Acme.com", "roles": ["admin"]}, "outcome": "failure", "context": {"ip": "10.0.0.1", "channel": "ui"}},
        {"id": "f2", "action": "auth.login.success", "actor": {"id": "alice", "type": "user"}, "context": {"ip": "10.0.0.2"}},
        {"id": "f3", "action": "data.exported", "actor": {"id": "svc", "type": "service"}, "resource": {"type": "report", "id": "r1"}, "metadata": {"record_count": 12000, "source": {"service": "billing"}}},
        {"id": "f4", "action": "data.read", "actor": {"id": "bob"}, "targets": [{"type": "report", "id": "r1"}], "data_subject": "patient-7", "sensitivity": ["phi"], "occurred_at": "2020-01-01T00:00:00Z", "reason": "Quarterly REVIEW"}
    ]);
    assert_eq!(c.ingest(&key, &events).status, 201);
    // (Reading f4, a sensitive event, with pii:read records data.sensitive.accessed: the filters
    // below name the actions they mean rather than data.*.)
    // (auth.login.* and not auth.*: the tenant's ledger opens with the server's own
    // auth.token.created of its admin key.)
    let all = "/v1/events?action=auth.login.*,data.read,data.exported&limit=1000";
    eventually(c, &key, all, Duration::from_secs(5), |b| ids(b).len() == 4);
    let cases: &[(&str, &[&str])] = &[
        ("action=auth.login.*", &["f2", "f1"]),
        ("action=auth.login.failed,data.read", &["f4", "f1"]),
        ("actor_id=alice&outcome=failure", &["f1"]),
        ("actor_email=alice@acme.com", &["f1"]),
        ("actor_type=service", &["f3"]),
        ("actor_role=admin", &["f1"]),
        ("resource_type=report&resource_id=r1", &["f4", "f3"]),
        ("ip=10.0.0.2", &["f2"]),
        ("channel=ui", &["f1"]),
        ("sensitivity=phi", &["f4"]),
        ("data_subject=patient-7", &["f4"]),
        ("metadata.record_count=12000", &["f3"]),
        ("metadata.source.service=billing", &["f3"]),
        ("until=2021-01-01T00:00:00Z", &["f4"]),
        ("since=2021-01-01T00:00:00Z&action=data.exported,data.read", &["f3"]),
        ("q=quarterly", &["f4"]),
    ];
    for (query, expected) in cases {
        let body = c.get(Some(&key), &format!("/v1/events?{query}"));
        assert_eq!(body.status, 200, "{query}: {}", body.text());
        assert_eq!(ids(&body.json()), *expected, "{query}");
    }
}

#[test]
fn new_events_are_visible_to_queries_within_a_second() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    for round in 0..5 {
        let id = format!("v{round}");
        let acked = Instant::now();
        assert_eq!(c.ingest(&key, &event(&id, "visibility.test", "u1")).status, 201);
        eventually(c, &key, "/v1/events?action=visibility.test&limit=1", Duration::from_secs(1), |b| {
            ids(b).first() == Some(&id)
        });
        assert!(acked.elapsed() < Duration::from_secs(1));
    }
}

#[test]
fn tenants_never_see_each_other() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, key_a) = c.create_tenant("a");
    let (_, key_b) = c.create_tenant("b");
    assert_eq!(c.ingest(&key_a, &event("secret-a", "data.read", "shared-actor")).status, 201);
    assert_eq!(c.ingest(&key_b, &event("mine-b", "data.read", "shared-actor")).status, 201);
    eventually(c, &key_a, "/v1/events?actor_id=shared-actor", Duration::from_secs(5), |b| ids(b) == ["secret-a"]);
    let b = eventually(c, &key_b, "/v1/events?actor_id=shared-actor", Duration::from_secs(5), |b| !ids(b).is_empty());
    assert_eq!(ids(&b), ["mine-b"]);
    assert_eq!(c.get(Some(&key_b), "/v1/events/secret-a").status, 404);
    let export = c.get(Some(&key_b), "/v1/export?format=jsonl");
    assert!(!export.text().contains("secret-a"));
    // The same event id in another tenant is a different event.
    let reuse = c.ingest(&key_b, &event("secret-a", "data.read", "x")).json();
    assert!(seqs(&reuse)[0] > 0);
    assert_eq!(c.get(Some(&key_a), "/v1/events/secret-a").json()["actor"]["id"], "shared-actor");
}

#[test]
fn exports_stream_csv_and_jsonl_with_filters_safely() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    let events = json!([
        {"id": "x1", "action": "data.read", "actor": {"id": "=HYPERLINK(\"http://evil\")"}, "resource": {"type": "doc", "id": "+cmd", "name": "a,b \"quoted\"\nline"}},
        {"id": "x2", "action": "data.read", "actor": {"id": "@SUM(A1)"}},
        {"id": "x3", "action": "other.thing", "actor": {"id": "u"}}
    ]);
    assert_eq!(c.ingest(&key, &events).status, 201);
    eventually(c, &key, "/v1/events?action=data.read", Duration::from_secs(5), |b| ids(b).len() == 2);
    let csv = c.get(Some(&key), "/v1/export?format=csv&action=data.read");
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert!(csv.content_type.as_deref().unwrap().starts_with("text/csv"));
    let text = csv.text();
    assert!(text.starts_with("seq,id,occurred_at,received_at,action,"), "{text}");
    assert!(text.contains("'=HYPERLINK"), "formula neutralised: {text}");
    assert!(text.contains("'@SUM(A1)"));
    assert!(text.contains("'+cmd"));
    assert!(!text.contains(",x3,"), "only data.read: {text}");
    assert!(text.contains("\"a,b \"\"quoted\"\"\nline\""), "csv quoting: {text}");
    let jsonl = c.get(Some(&key), "/v1/export?format=jsonl&action=data.read");
    let lines: Vec<Value> = jsonl.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.iter().map(|l| l["id"].as_str().unwrap()).collect::<Vec<_>>(), ["x1", "x2"], "oldest first");
    assert_eq!(c.get(Some(&key), "/v1/export?format=xml").error_code(), "invalid_query");
    assert_eq!(c.get(Some(&key), "/v1/export").error_code(), "invalid_query");
}

#[test]
fn reads_and_exports_are_recorded_in_the_tenants_ledger() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    assert_eq!(c.get(Some(&key), "/v1/events?actor_id=nobody").status, 200);
    assert_eq!(c.get(Some(&key), "/v1/export?format=csv&action=data.*").status, 200);
    let body = eventually(
        c,
        &key,
        "/v1/events?action=audit.read,audit.exported&order=asc&limit=10",
        Duration::from_secs(5),
        |b| ids(b).len() >= 2,
    );
    let first = &body["events"][0];
    assert_eq!(first["action"], "audit.read");
    assert_eq!(first["actor"]["type"], "api_key");
    assert!(first["actor"]["id"].as_str().unwrap().starts_with("api_key:"));
    assert_eq!(first["metadata"]["query"], json!({"actor_id": "nobody"}));
    assert_eq!(first["context"]["endpoint"], "GET /v1/events");
    assert_eq!(first["context"]["ip"], "127.0.0.1");
    let second = &body["events"][1];
    assert_eq!(second["action"], "audit.exported");
    assert_eq!(
        second["metadata"],
        json!({"format": "csv", "query": {"action": "data.*"}, "personal_data": "unmasked"})
    );
    // The ledger opens with the tenant's own lifecycle events.
    let start = c.get(Some(&key), "/v1/events?order=asc&limit=2").json();
    assert_eq!(body_actions(&start), ["audit.log.initialized", "auth.token.created"]);
}

fn body_actions(body: &Value) -> Vec<String> {
    body["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_string()).collect()
}

#[test]
fn scoped_keys_are_enforced_and_revocation_is_immediate() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, admin) = c.create_tenant("acme");
    let writer = c.create_key(&admin, &["events:write"]);
    let reader = c.create_key(&admin, &["events:read"]);
    assert_eq!(c.ingest(&writer, &event("k1", "data.read", "u")).status, 201);
    assert_eq!(c.get(Some(&writer), "/v1/events").error_code(), "forbidden");
    assert_eq!(c.ingest(&reader, &event("k2", "data.read", "u")).error_code(), "forbidden");
    assert_eq!(c.get(Some(&reader), "/v1/events").status, 200);
    assert_eq!(c.get(Some(&reader), "/v1/api-keys").status, 403);
    let keys = c.get(Some(&admin), "/v1/api-keys").json();
    assert_eq!(keys["api_keys"].as_array().unwrap().len(), 3);
    assert!(!keys.to_string().contains(&writer[20..]), "no secret is listed");
    let writer_id = writer.split('_').nth(1).unwrap();
    assert_eq!(c.delete(Some(&admin), &format!("/v1/api-keys/{writer_id}")).status, 204);
    assert_eq!(c.ingest(&writer, &event("k3", "data.read", "u")).status, 401);
    assert_eq!(c.delete(Some(&admin), "/v1/api-keys/unknown").status, 404);
    // Bootstrap token creates tenants but reads no tenant data (only the platform ledger);
    // tenant keys cannot create tenants.
    let platform = c.get(Some(BOOTSTRAP_TOKEN), "/v1/events?limit=1000");
    assert_eq!(platform.status, 200, "{}", platform.text());
    let platform_events = platform.json()["events"].as_array().unwrap().clone();
    assert!(
        !platform_events.is_empty() && platform_events.iter().all(|e| e["tenant"] == "platform"),
        "{platform_events:?}"
    );
    assert!(!platform.text().contains("\"k1\""), "no tenant event");
    assert_eq!(c.get(Some(BOOTSTRAP_TOKEN), "/v1/events/k1").status, 404);
    assert_eq!(c.post_json(Some(&admin), "/v1/tenants", &json!({"name": "x"})).status, 403);
    assert_eq!(c.get(None, "/v1/events").status, 401);
    assert_eq!(c.get(Some("vt_nope_nope"), "/v1/events").status, 401);
}

#[test]
fn operational_endpoints_answer() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    assert_eq!(c.ingest(&key, &event("m1", "data.read", "u")).status, 201);
    assert_eq!(c.get(None, "/healthz").json(), json!({"status": "ok"}));
    let ready = c.get(None, "/readyz");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");
    let metrics = c.get(None, "/metrics").text();
    for name in [
        "veritrail_events_ingested_total",
        "veritrail_ingest_queue_depth",
        "veritrail_commit_duration_seconds_bucket{le=\"0.001\"}",
        "veritrail_commit_duration_seconds_count",
        "veritrail_index_lag_events",
        "veritrail_ledger_records_read_total{source=\"memory\"}",
        "veritrail_ledger_records_read_total{source=\"storage\"}",
        "veritrail_http_requests_total{method=\"POST\",route=\"/v1/events\",status=\"200\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    assert!(!metrics.contains(&key[3..]), "no secrets in metrics");
}

#[test]
fn the_openapi_document_lists_every_route_and_error_code() {
    let server = TestServer::start();
    let c = &server.client;
    let doc = c.get(None, "/v1/openapi.json").json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", "some-id");
            let reply = match method.as_str() {
                "get" => c.get(None, &concrete),
                "delete" => c.delete(None, &concrete),
                "put" => c.put_json(None, &concrete, &json!({})),
                "patch" => c.patch_json(None, &concrete, &json!({})),
                _ => c.post_raw(None, &concrete, "application/json", b"{}"),
            };
            assert!(
                !(reply.status == 404 && reply.text().contains("no such endpoint")) && reply.status != 405,
                "{method} {path} is documented but not routed"
            );
        }
    }
    let required = [
        "/v1/tenants",
        "/v1/events",
        "/v1/events/{id}",
        "/v1/export",
        "/v1/api-keys",
        "/v1/ledger/checkpoint",
        "/v1/ledger/key",
        "/v1/ledger/records",
        "/v1/ledger/proof/inclusion",
        "/v1/ledger/proof/consistency",
        "/v1/subjects/{subject_id}",
        "/v1/users",
        "/v1/sessions",
        "/v1/platform/master-key/rotate",
        "/metrics",
    ];
    for path in required {
        assert!(paths.contains_key(path), "{path} undocumented");
    }
    let codes = doc["x-veritrail-error-codes"].as_array().unwrap();
    assert!(codes.iter().any(|c| c["code"] == "payload_too_large" && c["status"] == 413));
}

#[test]
fn clients_cannot_forge_the_servers_own_audit_events() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    let forged = c.ingest(&key, &json!([event("ok", "data.read", "u"), event("forged", "audit.read", "u")]));
    assert_eq!(forged.status, 400);
    assert_eq!(forged.error_code(), "invalid_value");
    assert!(forged.json()["error"]["message"].as_str().unwrap().contains("event 1"));
    assert_eq!(c.get(Some(&key), "/v1/events/ok").status, 404, "nothing of the batch was stored");
}

#[test]
fn each_api_key_is_rate_limited_with_retry_after() {
    let config = veritrail_server::ServerConfig { key_rate_limit: Some((1.0, 3)), ..Default::default() };
    let server = TestServer::start_with(config);
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    let other = c.create_key(&key, &["events:read"]);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(c.get(Some(&other), "/v1/events?limit=1").status);
    }
    assert_eq!(statuses[..3], [200, 200, 200]);
    let limited = c.get(Some(&other), "/v1/events?limit=1");
    assert_eq!((limited.status, limited.error_code()), (429, "rate_limited".to_string()), "{}", limited.text());
    assert!(limited.retry_after.as_deref().and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= 1));
    // Per key: another key of the tenant is not slowed down.
    assert_eq!(c.get(Some(&key), "/v1/events?limit=1").status, 200);
}
