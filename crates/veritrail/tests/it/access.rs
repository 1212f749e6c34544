//! Users and sessions end to end (issue 6): users per built-in role sign in with a password and
//! use their session token; permissions come from the role, own-records-only readers see only
//! their own events, logout and suspension end sessions at once, failed sign-ins are throttled
//! and recorded, and no password ever leaves the server.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use veritrail_test_support::{Backend, Client, Reply, TestServer, event};

const TENANT_PASSWORD: &str = "correct horse battery staple 42";

/// Every reply of a test, to check that no secret leaks into any of them.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn keep(&mut self, reply: Reply) -> Reply {
        self.0.push(reply.text());
        reply
    }
}

fn create_user(c: &Client, admin: &str, seen: &mut Seen, email: &str, role: &str, actor_id: Option<&str>) -> Value {
    let mut body = json!({"email": email, "password": TENANT_PASSWORD, "role": role});
    if let Some(actor_id) = actor_id {
        body["actor_id"] = json!(actor_id);
    }
    let reply = seen.keep(c.post_json(Some(admin), "/v1/users", &body));
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()
}

fn login(c: &Client, seen: &mut Seen, tenant: &str, email: &str, password: &str) -> Reply {
    seen.keep(c.post_json(None, "/v1/sessions", &json!({"tenant": tenant, "email": email, "password": password})))
}

fn session(c: &Client, seen: &mut Seen, tenant: &str, email: &str) -> String {
    let reply = login(c, seen, tenant, email, TENANT_PASSWORD);
    assert_eq!(reply.status, 201, "{}", reply.text());
    let body = reply.json();
    assert!(body["expires_at"].is_string(), "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("vts_"), "{token}");
    token
}

fn event_ids(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        body["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

/// The tenant's events with `action`, read with the admin key once at least `at_least` of them
/// are visible to queries (the query index may lag the ledger a little).
pub(crate) fn actions(c: &Client, admin: &str, action: &str, at_least: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = c.get(Some(admin), &format!("/v1/events?action={action}&limit=1000"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        let events = reply.json()["events"].as_array().unwrap().clone();
        if events.len() >= at_least {
            return events;
        }
        assert!(Instant::now() < deadline, "fewer than {at_least} {action} events: {events:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The whole ledger as JSON lines, read with the admin key (personal data unmasked).
fn whole_ledger(c: &Client, admin: &str) -> String {
    let reply = c.get(Some(admin), "/v1/export?format=jsonl");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

#[test]
fn users_sign_in_and_act_with_their_roles_permissions() {
    let server = TestServer::start();
    let c = &server.client;
    let mut seen = Seen::default();
    let (tenant, admin) = c.create_tenant("acme");
    for (email, role) in [
        ("root@acme.test", "super_admin"),
        ("compliance@acme.test", "compliance_officer"),
        ("Auditor@Acme.test", "auditor"),
    ] {
        let user = create_user(c, &admin, &mut seen, email, role, None);
        assert_eq!(user["role"], role);
        assert_eq!(user["email"], email.to_lowercase());
        assert_eq!(user["status"], "active");
        assert!(user["id"].as_str().unwrap().starts_with("usr_"), "{user}");
    }
    let alice = create_user(c, &admin, &mut seen, "alice@acme.test", "standard_user", Some("alice"));
    let alice_id = alice["id"].as_str().unwrap().to_string();

    // Users are listed without password hashes; weak passwords, unknown roles and duplicates refused.
    let listed = seen.keep(c.get(Some(&admin), "/v1/users"));
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["users"].as_array().unwrap().len(), 4);
    assert!(!listed.text().contains("argon2"), "{}", listed.text());
    let weak = c.post_json(
        Some(&admin),
        "/v1/users",
        &json!({"email": "w@acme.test", "password": "short", "role": "auditor"}),
    );
    assert_eq!((weak.status, weak.error_code().as_str()), (400, "invalid_value"), "{}", weak.text());
    let unknown = c.post_json(
        Some(&admin),
        "/v1/users",
        &json!({"email": "w@acme.test", "password": TENANT_PASSWORD, "role": "wizard"}),
    );
    assert_eq!(unknown.status, 400, "{}", unknown.text());
    let duplicate = c.post_json(
        Some(&admin),
        "/v1/users",
        &json!({"email": "ALICE@acme.test", "password": TENANT_PASSWORD, "role": "auditor"}),
    );
    assert_eq!(duplicate.status, 409, "{}", duplicate.text());
    assert_eq!(seen.keep(c.get(Some(&admin), &format!("/v1/users/{alice_id}"))).json()["actor_id"], "alice");

    // Events of two actors.
    let batch = json!([
        event("a1", "data.read", "alice"),
        event("a2", "data.updated", "alice"),
        event("b1", "data.read", "bob")
    ]);
    assert_eq!(c.ingest(&admin, &batch).status, 201);

    // A super admin's session can manage users and ingest.
    let root = session(c, &mut seen, &tenant, "root@acme.test");
    assert_eq!(seen.keep(c.get(Some(&root), "/v1/users")).status, 200);
    assert_eq!(c.ingest(&root, &event("r1", "data.read", "root")).status, 201);
    actions(c, &admin, "data.read,data.updated", 4);

    // An auditor reads everything but cannot ingest nor manage users; the refusal is recorded.
    let auditor = session(c, &mut seen, &tenant, "auditor@acme.test");
    let read = seen.keep(c.get(Some(&auditor), "/v1/events?action=data.read,data.updated"));
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(event_ids(&read.json()), ["a1", "a2", "b1", "r1"]);
    let ingest = seen.keep(c.ingest(&auditor, &event("x1", "data.read", "auditor")));
    assert_eq!((ingest.status, ingest.error_code().as_str()), (403, "forbidden"), "{}", ingest.text());
    assert_eq!(seen.keep(c.get(Some(&auditor), "/v1/users")).status, 403);
    let denied = actions(c, &admin, "permission.denied", 2);
    assert!(
        denied.iter().any(|e| e["actor"]["type"] == "user"
            && e["actor"]["id"].as_str().unwrap().starts_with("user:usr_")
            && e["metadata"]["permission"] == "events:write"),
        "{denied:?}"
    );
    // A compliance officer exports everything.
    let officer = session(c, &mut seen, &tenant, "compliance@acme.test");
    let export = seen.keep(c.get(Some(&officer), "/v1/export?format=jsonl&action=data.read,data.updated"));
    assert_eq!(export.status, 200, "{}", export.text());
    assert_eq!(export.text().lines().count(), 4);

    // A standard user sees only its own events: query, by id, export.
    let own = session(c, &mut seen, &tenant, "alice@acme.test");
    let mine = seen.keep(c.get(Some(&own), "/v1/events"));
    assert_eq!(mine.status, 200, "{}", mine.text());
    assert_eq!(event_ids(&mine.json()), ["a1", "a2"]);
    let asked_for_bob = seen.keep(c.get(Some(&own), "/v1/events?actor_id=bob"));
    assert_eq!(event_ids(&asked_for_bob.json()), Vec::<String>::new());
    assert_eq!(seen.keep(c.get(Some(&own), "/v1/events/a1")).status, 200);
    assert_eq!(seen.keep(c.get(Some(&own), "/v1/events/b1")).status, 404);
    for format in ["csv", "jsonl"] {
        let export = seen.keep(c.get(Some(&own), &format!("/v1/export?format={format}")));
        assert_eq!(export.status, 200, "{}", export.text());
        let text = export.text();
        // By id: a random tenant id or hash elsewhere in a line can hold "b1" too.
        let ids: Vec<String> = match format {
            "csv" => text.lines().skip(1).map(|line| line.split(',').nth(1).unwrap().to_string()).collect(),
            _ => text.lines().map(|line| serde_json::from_str::<Value>(line).unwrap()["id"].to_string()).collect(),
        };
        let has = |id: &str| ids.iter().any(|found| found.trim_matches('"') == id);
        assert!(has("a1") && has("a2"), "{text}");
        assert!(!has("b1") && !has("r1"), "{text}");
    }
    let ledger = seen.keep(c.get(Some(&own), "/v1/export?format=ledger"));
    assert_eq!(ledger.status, 403);
    assert_eq!(seen.keep(c.ingest(&own, &event("x2", "data.read", "alice"))).status, 403);

    // An own-records-only user linked to no actor id reads nothing.
    create_user(c, &admin, &mut seen, "nobody@acme.test", "standard_user", None);
    let nobody = session(c, &mut seen, &tenant, "nobody@acme.test");
    assert_eq!(seen.keep(c.get(Some(&nobody), "/v1/events")).status, 403);

    // Logout revokes the session at once.
    assert_eq!(seen.keep(c.delete(Some(&own), "/v1/sessions/current")).status, 204);
    assert_eq!(seen.keep(c.get(Some(&own), "/v1/events")).status, 401);
    assert_eq!(actions(c, &admin, "auth.logout", 1).len(), 1);

    // Suspension ends a user's sessions, and it can no longer sign in.
    let again = session(c, &mut seen, &tenant, "alice@acme.test");
    assert_eq!(seen.keep(c.get(Some(&again), "/v1/events")).status, 200);
    let suspended =
        seen.keep(c.patch_json(Some(&admin), &format!("/v1/users/{alice_id}"), &json!({"status": "suspended"})));
    assert_eq!(suspended.status, 200, "{}", suspended.text());
    assert_eq!(suspended.json()["status"], "suspended");
    assert_eq!(seen.keep(c.get(Some(&again), "/v1/events")).status, 401);
    let refused = login(c, &mut seen, &tenant, "alice@acme.test", TENANT_PASSWORD);
    assert_eq!((refused.status, refused.error_code().as_str()), (401, "unauthorized"));
    assert_eq!(actions(c, &admin, "admin.user.suspended", 1).len(), 1);

    // A role change is recorded as removed and assigned; deletion as admin.user.deleted.
    let promoted = seen.keep(c.patch_json(
        Some(&admin),
        &format!("/v1/users/{alice_id}"),
        &json!({"role": "auditor", "status": "active"}),
    ));
    assert_eq!(promoted.json()["role"], "auditor");
    assert_eq!(actions(c, &admin, "permission.role.removed", 1).len(), 1);
    assert_eq!(seen.keep(c.delete(Some(&admin), &format!("/v1/users/{alice_id}"))).status, 204);
    assert_eq!(seen.keep(c.get(Some(&admin), &format!("/v1/users/{alice_id}"))).status, 404);
    assert_eq!(actions(c, &admin, "admin.user.deleted", 1).len(), 1);

    // Self-audit names the users; sign-ins are recorded.
    assert_eq!(actions(c, &admin, "admin.user.created", 5).len(), 5);
    actions(c, &admin, "auth.login.success", 6);
    actions(c, &admin, "auth.session.created", 6);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !actions(c, &admin, "audit.read", 1).iter().any(|e| e["actor"]["id"] == format!("user:{alice_id}")) {
        assert!(Instant::now() < deadline, "no audit.read by user:{alice_id}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The password never appears in an answer or in the ledger.
    let ledger = whole_ledger(c, &admin);
    assert!(!ledger.contains(TENANT_PASSWORD));
    assert!(!ledger.contains("alice@acme.test"), "sign-in records name users by id only");
    for body in &seen.0 {
        assert!(!body.contains(TENANT_PASSWORD), "{body}");
    }
}

#[test]
fn repeated_bad_passwords_are_throttled_and_recorded() {
    let server = TestServer::start();
    let c = &server.client;
    let mut seen = Seen::default();
    let (tenant, admin) = c.create_tenant("acme");
    create_user(c, &admin, &mut seen, "carol@acme.test", "auditor", None);
    let mut statuses = Vec::new();
    let mut last = None;
    for attempt in 0..12 {
        let reply = login(c, &mut seen, &tenant, "carol@acme.test", &format!("wrong password number {attempt}"));
        statuses.push(reply.status);
        last = Some(reply);
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    let last = last.unwrap();
    assert_eq!((last.status, last.error_code().as_str()), (429, "rate_limited"), "{statuses:?}");
    assert!(last.retry_after.as_deref().is_some_and(|s| s.parse::<u64>().unwrap() > 0), "{:?}", last.retry_after);
    // Locked: even the right password is refused for now.
    assert_eq!(login(c, &mut seen, &tenant, "carol@acme.test", TENANT_PASSWORD).status, 429);

    // Unknown accounts get the same answer as wrong passwords.
    let unknown = login(c, &mut seen, &tenant, "nobody@acme.test", "wrong password number 0");
    assert_eq!(unknown.status, 401);
    let wrong = seen.0[1].clone();
    assert_eq!(unknown.text(), wrong, "no user enumeration");

    let failed = actions(c, &admin, "auth.login.failed", 12);
    assert!(failed.iter().all(|e| e["outcome"] == "failure"), "{failed:?}");
    assert!(failed.iter().any(|e| e["metadata"]["user_id"].as_str().is_some_and(|id| id.starts_with("usr_"))));
    let ledger = whole_ledger(c, &admin);
    assert!(!ledger.contains("wrong password number"), "no password in the ledger");
    assert!(!ledger.contains("carol@acme.test"), "no email in sign-in records");
    for body in &seen.0 {
        assert!(!body.contains("wrong password number") && !body.contains(TENANT_PASSWORD), "{body}");
    }
}

#[test]
fn an_expired_session_is_refused() {
    let ttl = std::time::Duration::from_millis(500);
    let server =
        TestServer::start_with(veritrail_server::ServerConfig { session_ttl: Some(ttl), ..Default::default() });
    let c = &server.client;
    let mut seen = Seen::default();
    let (tenant, admin) = c.create_tenant("acme");
    create_user(c, &admin, &mut seen, "dave@acme.test", "auditor", None);
    let token = session(c, &mut seen, &tenant, "dave@acme.test");
    assert_eq!(c.get(Some(&token), "/v1/events").status, 200);
    std::thread::sleep(ttl + std::time::Duration::from_millis(100));
    let expired = c.get(Some(&token), "/v1/events");
    assert_eq!((expired.status, expired.error_code().as_str()), (401, "unauthorized"), "{}", expired.text());
}

#[test]
fn custom_roles_grant_exactly_their_permissions_and_stay_within_their_authors() {
    let server = TestServer::start();
    let c = &server.client;
    let mut seen = Seen::default();
    let (tenant, admin) = c.create_tenant("acme");
    let roles = c.get(Some(&admin), "/v1/roles").json();
    let names: Vec<&str> = roles["roles"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["super_admin", "compliance_officer", "auditor", "standard_user"]);

    let role = json!({"name": "incident_responder", "description": "reads events and works alerts",
                      "permissions": ["events:read", "alerts:read", "alerts:manage"]});
    let created = c.post_json(Some(&admin), "/v1/roles", &role);
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(c.post_json(Some(&admin), "/v1/roles", &role).status, 409, "names are unique");
    let unknown = c.post_json(Some(&admin), "/v1/roles", &json!({"name": "x_y", "permissions": ["events:delete"]}));
    assert_eq!((unknown.status, unknown.error_code()), (400, "invalid_value".to_string()), "{}", unknown.text());
    assert!(unknown.text().contains("events:delete"), "{}", unknown.text());
    let builtin = c.put_json(Some(&admin), "/v1/roles/auditor", &json!({"permissions": ["events:read"]}));
    assert_eq!(builtin.status, 409, "{}", builtin.text());
    // A user manager cannot mint a role with more than it holds.
    let manager = c.create_key(&admin, &["users:manage"]);
    let escalate = c.post_json(Some(&manager), "/v1/roles", &json!({"name": "sneaky", "permissions": ["pii:read"]}));
    assert_eq!(escalate.status, 403, "{}", escalate.text());

    create_user(c, &admin, &mut seen, "rita@acme.test", "incident_responder", None);
    let token = session(c, &mut seen, &tenant, "rita@acme.test");
    assert_eq!(c.get(Some(&token), "/v1/events").status, 200);
    assert_eq!(c.get(Some(&token), "/v1/alerts").status, 200);
    assert_eq!(c.ingest(&token, &event("r-1", "data.read", "rita")).status, 403);
    // Narrowed: the next request already has the new permissions.
    let narrowed = json!({"permissions": ["events:read"]});
    assert_eq!(c.put_json(Some(&admin), "/v1/roles/incident_responder", &narrowed).status, 200);
    assert_eq!(c.get(Some(&token), "/v1/alerts").status, 403);
    let held = c.delete(Some(&admin), "/v1/roles/incident_responder");
    assert_eq!(held.status, 409, "a role in use stays: {}", held.text());
    let changes = actions(c, &admin, "config.security.updated", 2);
    assert_eq!(changes[0]["metadata"]["role"]["name"], "incident_responder");
}

#[test]
fn no_secret_reaches_the_servers_output_or_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = std::fs::File::create(&log).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_veritrail"));
    command.args(["serve", "--data-dir"]).arg(dir.path().join("data")).args(["--listen", &format!("127.0.0.1:{port}")]);
    // On PostgreSQL, the database client's own debug output too.
    let _database = Backend::from_env().configure_serve(&mut command, &dir.path().join("data"));
    let mut child = command
        .env("VERITRAIL_BOOTSTRAP_TOKEN", veritrail_test_support::BOOTSTRAP_TOKEN)
        .env("VERITRAIL_LOG", "debug")
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .unwrap();
    let c = Client::new(&format!("http://127.0.0.1:{port}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.get(None, "/healthz").status, 200);
    let mut seen = Seen::default();
    let (tenant, admin) = c.create_tenant("acme");
    let reader = c.create_key(&admin, &["events:read"]);
    create_user(&c, &admin, &mut seen, "erin@acme.test", "auditor", None);
    let token = session(&c, &mut seen, &tenant, "erin@acme.test");
    let wrong = "not the password, but a secret too 77";
    assert_eq!(login(&c, &mut seen, &tenant, "erin@acme.test", wrong).status, 401);
    assert_eq!(c.get(Some(&token), "/v1/events").status, 200);
    assert_eq!(c.get(Some(&reader), "/v1/events").status, 200);
    let idp = crate::sso::Idp::new(9, "k1");
    assert_eq!(c.post_json(Some(&admin), "/v1/identity-providers", &crate::sso::provider(&idp)).status, 201);
    let jwt = idp.token(&crate::sso::claims("frank", &["auditors"]));
    assert_eq!(c.get(Some(&jwt), "/v1/events").status, 200);
    let forged = crate::sso::Idp::new(10, "k1").token(&crate::sso::claims("frank", &["audit-admins"]));
    assert_eq!(c.get(Some(&forged), "/v1/events").status, 401);
    let webhook = c.post_json(Some(&admin), "/v1/webhooks", &json!({"url": "http://192.0.2.1/hook"}));
    let webhook_secret = webhook.json()["secret"].as_str().map(str::to_string);
    let ledger = whole_ledger(&c, &admin);
    let _ = child.kill();
    let _ = child.wait();
    let output = std::fs::read_to_string(&log).unwrap();
    assert!(output.contains("veritrail listening"), "the log was captured: {output}");
    let secrets = [
        Some(admin.clone()),
        Some(reader.clone()),
        Some(token.clone()),
        Some(TENANT_PASSWORD.to_string()),
        Some(wrong.to_string()),
        Some(veritrail_test_support::BOOTSTRAP_TOKEN.to_string()),
        webhook_secret,
    ];
    // Bearer JWTs whole and by signature (their `_`-separated tail can be a few characters).
    for token in [&jwt, &forged] {
        let signature = token.rsplit('.').next().unwrap_or(token);
        for needle in [token.as_str(), signature] {
            assert!(!output.contains(needle), "a bearer JWT is in the server's output");
            assert!(!ledger.contains(needle), "a bearer JWT is in the ledger");
        }
    }
    for secret in secrets.into_iter().flatten() {
        // The whole token, and its secret part alone.
        let tail = secret.rsplit('_').next().unwrap_or(&secret).to_string();
        for needle in [secret.as_str(), tail.as_str()] {
            assert!(!output.contains(needle), "a secret is in the server's output");
            assert!(!ledger.contains(needle), "a secret is in the ledger");
        }
    }
}
