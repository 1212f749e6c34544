//! The access-control matrix of issue 6 in one table: every endpoint × every built-in role (and
//! two API keys with the legacy `events:write` and `events:read` scopes) × (own tenant, other
//! tenant). The expected answers are written out in [`TABLE`], from the issue's matrix
//! (`super_admin` all; `compliance_officer` reads logs, full reports, reads rules and alerts;
//! `auditor` reads logs and reports only; `standard_user` own records only) checked against
//! `BuiltinRole::permissions`. Nothing is derived from the server at run time: a drift of its
//! matrix fails this test.
//!
//! One server, two tenants: tenant-alpha's users and keys call, tenant-bravo is the other tenant.
//! In the own tenant an allowed call gets the endpoint's exact success status and a refused one
//! 403 `forbidden`. With tenant-bravo's ids an allowed call gets 404 `not_found` and changes
//! nothing of tenant-bravo's. No answer to tenant-alpha contains anything of tenant-bravo's, and
//! every refusal is in tenant-alpha's ledger as `permission.denied`. Every mismatch is collected,
//! so one run lists them all.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use veritrail_server::{AlertingConfig, ServerConfig};
use veritrail_test_support::webhook::WebhookReceiver;
use veritrail_test_support::{Client, Reply, TestServer, wait_for};

use Expect::{Allow as A, Deny as D, Hidden as H, NotASession as X, Own as O};
use Method::{Delete as DELETE, Get as GET, Patch as PATCH, Post as POST, Put as PUT};
use Obj::*;

const PASSWORD: &str = "correct horse battery staple 42";

/// The built-in roles, in column order.
const ROLES: [&str; 4] = ["super_admin", "compliance_officer", "auditor", "standard_user"];

/// The callers, in column order: a signed-in user per built-in role, then two API keys.
const COLUMNS: [&str; 6] =
    ["super_admin", "compliance_officer", "auditor", "standard_user", "key events:write", "key events:read"];

/// The scopes of the two API-key columns.
const KEY_SCOPES: [&str; 2] = ["events:write", "events:read"];

/// Brute-force alerts each tenant raises: one shared, the others one per status-changing cell.
const ALERTS: usize = 13;

/// Endpoints outside the table: unauthenticated or server-wide (checked in [`platform_only`]).
const NOT_IN_TABLE: [(&str, &str); 8] = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/sessions"),
    ("POST", "/v1/tenants"),
    ("POST", "/v1/platform/master-key/rotate"),
    ("POST", "/v1/ledger/keys/rotate"),
];

/// What one caller must get from one endpoint in its own tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The row's success status.
    Allow,
    /// Own records only: the success status, with only events whose `actor.id` is the caller's.
    Own,
    /// 404 `not_found`: own records only, asking for another actor's event.
    Hidden,
    /// 403 `forbidden`, recorded in the tenant's ledger as `permission.denied`.
    Deny,
    /// 400 `invalid_request`: signing out with an API key, which is revoked instead.
    NotASession,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// What a `{...}` of a route names. `Fresh*` objects are made anew (with the tenant's admin key)
/// for every cell, so that no cell depends on what another one did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Obj {
    /// An event of an actor no user is linked to.
    Event,
    /// An event of the standard user's actor.
    OwnEvent,
    FreshKey,
    User,
    FreshUser,
    Alert,
    FreshAlert,
    Rule,
    FreshRule,
    Webhook,
    FreshWebhook,
    /// A delivery of [`Obj::Webhook`].
    Delivery,
    /// A data subject with events.
    Subject,
    FreshSubject,
    /// A fresh data subject under a legal hold.
    HeldSubject,
    Role,
    FreshRole,
    /// An identity provider.
    Idp,
    FreshIdp,
}

impl Obj {
    /// Subject ids are values the tenant's events carry, not objects the server made: another
    /// tenant's subject id names that (empty) subject in the caller's own tenant. A legal hold,
    /// though, is an object: releasing one that only another tenant placed finds nothing.
    fn is_value(self) -> bool {
        matches!(self, Subject | FreshSubject)
    }
}

/// One endpoint: its route exactly as the router spells it, the objects its `{...}` name, a
/// query string, a JSON body (`{n}` becomes a fresh number, `{hook}` the webhook receiver's
/// URL), its success status, and what each column must get.
struct Row {
    method: Method,
    route: &'static str,
    ids: &'static [Obj],
    query: &'static str,
    body: &'static str,
    success: u16,
    expect: [Expect; 6],
}

const fn row(
    method: Method,
    route: &'static str,
    ids: &'static [Obj],
    query: &'static str,
    body: &'static str,
    success: u16,
    expect: [Expect; 6],
) -> Row {
    Row { method, route, ids, query, body, success, expect }
}

/// An identity provider's document: `{n}` keeps issuers apart; the key is RFC 8037's example.
const IDP: &str = r#"{"issuer": "https://matrix-{n}.example", "audience": "veritrail",
    "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]},
    "allowed_algorithms": ["EdDSA"], "role_mapping": {"auditors": "auditor"}}"#;

const RULE: &str = r#"{"name": "matrix rule {n}", "severity": "low", "when": {"action": "matrix.never"}}"#;

/// Columns: super_admin, compliance_officer, auditor, standard_user, key events:write, key
/// events:read (the legacy scope: events:read, events:export, ledger:read, alerts:read,
/// rules:read).
#[rustfmt::skip]
const TABLE: &[Row] = &[
    // Events: compliance officers and auditors read logs; a standard user only its own records.
    row(POST, "/v1/events", &[], "",
        r#"{"id": "matrix-{n}", "action": "data.read", "actor": {"id": "matrix-writer", "type": "service"}}"#,
        201, [A, D, D, D, A, D]),
    row(GET, "/v1/events", &[], "", "", 200, [A, A, A, O, D, A]),
    row(GET, "/v1/events/{id}", &[Event], "", "", 200, [A, A, A, H, D, A]),
    row(GET, "/v1/events/{id}", &[OwnEvent], "", "", 200, [A, A, A, A, D, A]),
    row(GET, "/v1/export", &[], "?format=jsonl", "", 200, [A, A, A, O, D, A]),
    row(GET, "/v1/export", &[], "?format=csv", "", 200, [A, A, A, O, D, A]),
    row(GET, "/v1/export", &[], "?format=ledger", "", 200, [A, A, A, D, D, A]),
    // API keys, users and roles: super_admin only.
    row(POST, "/v1/api-keys", &[], "", r#"{"name": "matrix-{n}", "scopes": ["events:read"]}"#, 201, [A, D, D, D, D, D]),
    row(GET, "/v1/api-keys", &[], "", "", 200, [A, D, D, D, D, D]),
    row(DELETE, "/v1/api-keys/{id}", &[FreshKey], "", "", 204, [A, D, D, D, D, D]),
    row(POST, "/v1/users", &[], "",
        r#"{"email": "matrix-{n}@tenant-alpha.test", "password": "matrix password 0123456789", "role": "auditor"}"#,
        201, [A, D, D, D, D, D]),
    row(GET, "/v1/users", &[], "", "", 200, [A, D, D, D, D, D]),
    row(GET, "/v1/users/{id}", &[User], "", "", 200, [A, D, D, D, D, D]),
    row(PATCH, "/v1/users/{id}", &[FreshUser], "", r#"{"role": "auditor"}"#, 200, [A, D, D, D, D, D]),
    row(DELETE, "/v1/users/{id}", &[FreshUser], "", "", 204, [A, D, D, D, D, D]),
    row(POST, "/v1/roles", &[], "", r#"{"name": "matrix_{n}", "permissions": ["events:read"]}"#,
        201, [A, D, D, D, D, D]),
    row(GET, "/v1/roles", &[], "", "", 200, [A, D, D, D, D, D]),
    row(GET, "/v1/roles/{name}", &[Role], "", "", 200, [A, D, D, D, D, D]),
    row(PUT, "/v1/roles/{name}", &[FreshRole], "", r#"{"permissions": ["events:read", "alerts:read"]}"#,
        200, [A, D, D, D, D, D]),
    row(DELETE, "/v1/roles/{name}", &[FreshRole], "", "", 204, [A, D, D, D, D, D]),
    // Identity providers grant roles: users:manage, super_admin only.
    row(POST, "/v1/identity-providers", &[], "", IDP, 201, [A, D, D, D, D, D]),
    row(GET, "/v1/identity-providers", &[], "", "", 200, [A, D, D, D, D, D]),
    row(GET, "/v1/identity-providers/{id}", &[Idp], "", "", 200, [A, D, D, D, D, D]),
    row(PUT, "/v1/identity-providers/{id}", &[FreshIdp], "", IDP, 200, [A, D, D, D, D, D]),
    row(DELETE, "/v1/identity-providers/{id}", &[FreshIdp], "", "", 204, [A, D, D, D, D, D]),
    // Signing out: any session (a fresh one per cell); an API key is not a session.
    row(DELETE, "/v1/sessions/current", &[], "", "", 204, [A, A, A, A, X, X]),
    // The ledger: whoever reads logs verifies them; the verifier keys are public.
    row(GET, "/v1/ledger/checkpoint", &[], "", "", 200, [A, A, A, D, D, A]),
    row(POST, "/v1/ledger/checkpoint", &[], "", "", 201, [A, A, A, D, A, A]),
    // No time-stamp authority is configured: the documented answer of an allowed caller is 404.
    row(GET, "/v1/ledger/checkpoint/timestamp", &[], "", "", 404, [A, A, A, D, D, A]),
    row(GET, "/v1/ledger/key", &[], "", "", 200, [A, A, A, A, A, A]),
    row(GET, "/v1/ledger/keys", &[], "", "", 200, [A, A, A, A, A, A]),
    row(GET, "/v1/ledger/records", &[], "?from=0&limit=5", "", 200, [A, A, A, D, D, A]),
    row(GET, "/v1/ledger/proof/inclusion", &[], "?seq=0", "", 200, [A, A, A, D, D, A]),
    row(GET, "/v1/ledger/proof/consistency", &[], "?first=1", "", 200, [A, A, A, D, D, A]),
    row(POST, "/v1/ledger/verifications", &[], "",
        r#"{"tree_size": 1, "root": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "result": "ok"}"#,
        201, [A, A, A, D, D, A]),
    // Alerts and rules: compliance officers read them, only super_admin changes them.
    row(GET, "/v1/alerts", &[], "", "", 200, [A, A, D, D, D, A]),
    row(GET, "/v1/alerts/{id}", &[Alert], "", "", 200, [A, A, D, D, D, A]),
    row(POST, "/v1/alerts/{id}/acknowledge", &[FreshAlert], "", r#"{"note": "matrix"}"#, 200, [A, D, D, D, D, D]),
    row(POST, "/v1/alerts/{id}/resolve", &[FreshAlert], "", r#"{"note": "matrix"}"#, 200, [A, D, D, D, D, D]),
    row(GET, "/v1/rules", &[], "", "", 200, [A, A, D, D, D, A]),
    row(POST, "/v1/rules", &[], "", RULE, 201, [A, D, D, D, D, D]),
    row(POST, "/v1/rules/dry-run", &[], "",
        r#"{"rule": {"name": "matrix draft", "severity": "low", "when": {"action": "data.read"}}}"#,
        200, [A, D, D, D, D, D]),
    row(GET, "/v1/rules/{id}", &[Rule], "", "", 200, [A, A, D, D, D, A]),
    row(PUT, "/v1/rules/{id}", &[FreshRule], "", RULE, 200, [A, D, D, D, D, D]),
    row(DELETE, "/v1/rules/{id}", &[FreshRule], "", "", 204, [A, D, D, D, D, D]),
    row(POST, "/v1/rules/{id}/dry-run", &[Rule], "", "", 200, [A, D, D, D, D, D]),
    // Webhooks (streams:manage): super_admin only.
    row(GET, "/v1/webhooks", &[], "", "", 200, [A, D, D, D, D, D]),
    row(POST, "/v1/webhooks", &[], "", r#"{"url": "{hook}"}"#, 201, [A, D, D, D, D, D]),
    row(GET, "/v1/webhooks/{id}", &[Webhook], "", "", 200, [A, D, D, D, D, D]),
    row(DELETE, "/v1/webhooks/{id}", &[FreshWebhook], "", "", 204, [A, D, D, D, D, D]),
    row(GET, "/v1/webhooks/{id}/deliveries", &[Webhook], "", "", 200, [A, D, D, D, D, D]),
    row(POST, "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", &[Webhook, Delivery], "", "",
        202, [A, D, D, D, D, D]),
    // Data subjects and privacy settings (subjects:manage): super_admin only; a subject's
    // consents are a read of logs.
    row(DELETE, "/v1/subjects/{subject_id}", &[FreshSubject], "", "", 200, [A, D, D, D, D, D]),
    row(GET, "/v1/subjects/{subject_id}/export", &[Subject], "", "", 200, [A, D, D, D, D, D]),
    row(GET, "/v1/subjects/{subject_id}/consents", &[Subject], "", "", 200, [A, A, A, D, D, A]),
    row(PUT, "/v1/subjects/{subject_id}/legal-hold", &[FreshSubject], "", r#"{"reason": "matrix litigation"}"#,
        200, [A, D, D, D, D, D]),
    row(DELETE, "/v1/subjects/{subject_id}/legal-hold", &[HeldSubject], "", "", 200, [A, D, D, D, D, D]),
    row(GET, "/v1/privacy/settings", &[], "", "", 200, [A, D, D, D, D, D]),
    row(PUT, "/v1/privacy/settings", &[], "", r#"{"dsar_include_accessors": false}"#, 200, [A, D, D, D, D, D]),
    row(GET, "/v1/privacy/classification", &[], "", "", 200, [A, D, D, D, D, D]),
    row(PUT, "/v1/privacy/classification", &[], "", r#"{"fields": {"metadata.matrix_note": "pii"}}"#,
        200, [A, D, D, D, D, D]),
];

impl Row {
    /// `METHOD route`, as `permission.denied` events name the endpoint.
    fn endpoint(&self) -> String {
        format!("{} {}", self.method.as_str(), self.route)
    }

    /// The route with `ids` in its `{...}`, and the query string.
    fn path(&self, ids: &[String]) -> String {
        let mut out = String::new();
        let mut rest = self.route;
        let mut ids = ids.iter();
        while let Some(start) = rest.find('{') {
            let end = start + rest[start..].find('}').expect("a closing brace");
            out.push_str(&rest[..start]);
            out.push_str(ids.next().expect("an id for every placeholder"));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out.push_str(self.query);
        out
    }

    fn placeholders(&self) -> usize {
        self.route.matches('{').count()
    }

    fn call(&self, c: &Client, token: &str, path: &str, n: u32, hook: &str) -> Reply {
        let template = if self.body.is_empty() { "{}" } else { self.body };
        let text = template.replace("{n}", &n.to_string()).replace("{hook}", hook);
        let body: Value = serde_json::from_str(&text).expect("table bodies are json");
        match self.method {
            Method::Get => c.get(Some(token), path),
            Method::Post => c.post_json(Some(token), path, &body),
            Method::Put => c.put_json(Some(token), path, &body),
            Method::Patch => c.patch_json(Some(token), path, &body),
            Method::Delete => c.delete(Some(token), path),
        }
    }
}

/// One column: a signed-in user or an API key of tenant-alpha.
struct Caller {
    label: &'static str,
    token: String,
    /// `actor.id` of the `permission.denied` events this caller's refusals produce.
    actor_ref: String,
    /// The `actor_id` an own-records-only caller is linked to.
    own_actor: Option<String>,
    /// The user's email, to sign in afresh (users only).
    email: Option<String>,
}

/// One tenant and the objects the table's ids name.
struct Tenant {
    /// `tenant-alpha` or `tenant-bravo`: every name the test gives in the tenant starts with it.
    prefix: String,
    id: String,
    admin: String,
    hook: String,
    /// Per built-in role: the user id and email.
    users: Vec<(String, String)>,
    shared: BTreeMap<Obj, String>,
    /// Open alerts for the cells that change one.
    alerts: Vec<String>,
    /// Subject → an event about it.
    subject_events: BTreeMap<String, String>,
    /// Fresh API key id → its token.
    key_tokens: BTreeMap<String, String>,
    /// Strings only this tenant's data holds: its name prefixes and the ids the server chose.
    markers: Vec<String>,
    next: u32,
}

fn created(c: &Client, token: &str, path: &str, body: &Value) -> Value {
    let reply = c.post_json(Some(token), path, body);
    assert_eq!(reply.status, 201, "POST {path}: {}", reply.text());
    reply.json()
}

fn error_code(reply: &Reply) -> String {
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    body["error"]["code"].as_str().unwrap_or_default().to_string()
}

fn sign_in(c: &Client, tenant: &str, email: &str) -> String {
    let reply = c.post_json(None, "/v1/sessions", &json!({"tenant": tenant, "email": email, "password": PASSWORD}));
    assert_eq!(reply.status, 201, "sign in {email}: {}", reply.text());
    reply.json()["token"].as_str().unwrap().to_string()
}

impl Tenant {
    /// A tenant with a user per built-in role, events of two actors and about a data subject, a
    /// custom role, a rule, an identity provider, a webhook with a delivered message and [`ALERTS`] brute-force alerts.
    fn set_up(c: &Client, name: &str, hook: &str) -> Tenant {
        let prefix = format!("tenant-{name}");
        let (id, admin) = c.create_tenant(&prefix);
        let mut tenant = Tenant {
            markers: vec![prefix.clone(), prefix.replace('-', "_"), id.clone()],
            prefix,
            id,
            admin,
            hook: hook.to_string(),
            users: Vec::new(),
            shared: BTreeMap::new(),
            alerts: Vec::new(),
            subject_events: BTreeMap::new(),
            key_tokens: BTreeMap::new(),
            next: 0,
        };
        let p = tenant.prefix.clone();
        for role in ROLES {
            let email = format!("{role}@{p}.test");
            let mut body = json!({"email": email, "password": PASSWORD, "role": role});
            if role == "standard_user" {
                body["actor_id"] = json!(format!("{p}-su"));
            }
            let user = created(c, &tenant.admin, "/v1/users", &body);
            let user_id = user["id"].as_str().unwrap().to_string();
            tenant.markers.push(user_id.clone());
            tenant.users.push((user_id, email));
        }
        tenant.shared.insert(User, tenant.users[2].0.clone());

        let actor = |id: &str| json!({"id": id, "type": "user"});
        let subject = format!("{p}-subject");
        let events = json!([
            {"id": format!("{p}-event"), "action": "data.read", "actor": actor(&format!("{p}-actor"))},
            {"id": format!("{p}-own-1"), "action": "data.read", "actor": actor(&format!("{p}-su"))},
            {"id": format!("{p}-own-2"), "action": "data.updated", "actor": actor(&format!("{p}-su"))},
            {"id": format!("{p}-about-subject"), "action": "data.read", "actor": actor(&format!("{p}-actor")),
             "data_subject": subject},
        ]);
        created(c, &tenant.admin, "/v1/events", &events);
        tenant.shared.insert(Event, format!("{p}-event"));
        tenant.shared.insert(OwnEvent, format!("{p}-own-1"));
        tenant.shared.insert(Subject, subject.clone());
        tenant.subject_events.insert(subject, format!("{p}-about-subject"));

        for obj in [Role, Rule, Webhook, Idp] {
            let made = tenant.fresh(c, obj);
            tenant.shared.insert(obj, made);
        }

        // Brute-force alerts, one per actor, each also a message to the webhook.
        let mut failures = Vec::new();
        for i in 0..ALERTS {
            for j in 0..5 {
                failures.push(json!({"id": format!("{p}-failure-{i}-{j}"), "action": "auth.login.failed",
                                     "actor": actor(&format!("{p}-intruder-{i}"))}));
            }
        }
        created(c, &tenant.admin, "/v1/events", &Value::Array(failures));
        let alerts = wait_for(Duration::from_secs(10), || {
            let reply = c.get(Some(&tenant.admin), "/v1/alerts?rule=brute_force&limit=1000");
            assert_eq!(reply.status, 200, "{}", reply.text());
            let alerts = reply.json()["alerts"].as_array().unwrap().clone();
            (alerts.len() >= ALERTS).then_some(alerts)
        })
        .expect("the brute-force alerts were raised within 10 s");
        for alert in alerts {
            let alert_id = alert["id"].as_str().unwrap().to_string();
            tenant.markers.push(alert_id.clone());
            tenant.alerts.push(alert_id);
        }
        let shared_alert = tenant.alerts.pop().unwrap();
        tenant.shared.insert(Alert, shared_alert);

        let deliveries = format!("/v1/webhooks/{}/deliveries?status=delivered", tenant.shared[&Webhook]);
        let delivery = wait_for(Duration::from_secs(10), || {
            let reply = c.get(Some(&tenant.admin), &deliveries);
            assert_eq!(reply.status, 200, "{}", reply.text());
            reply.json()["deliveries"][0]["id"].as_str().map(str::to_string)
        })
        .expect("a webhook message was delivered within 10 s");
        tenant.markers.push(delivery.clone());
        tenant.shared.insert(Delivery, delivery);
        tenant
    }

    /// The object `obj` names in this tenant: the shared one, or a new one for `Fresh*`.
    fn fresh(&mut self, c: &Client, obj: Obj) -> String {
        if let Some(shared) = self.shared.get(&obj) {
            return shared.clone();
        }
        self.next += 1;
        let (n, p, admin) = (self.next, self.prefix.clone(), self.admin.clone());
        let made = match obj {
            FreshKey => {
                let body = json!({"name": format!("{p}-key-{n}"), "scopes": ["events:read"]});
                let key = created(c, &admin, "/v1/api-keys", &body);
                let id = key["id"].as_str().unwrap().to_string();
                self.key_tokens.insert(id.clone(), key["api_key"].as_str().unwrap().to_string());
                id
            }
            FreshUser => {
                let body =
                    json!({"email": format!("fresh-{n}@{p}.test"), "password": PASSWORD, "role": "standard_user"});
                created(c, &admin, "/v1/users", &body)["id"].as_str().unwrap().to_string()
            }
            FreshAlert => self.alerts.pop().expect("an unused alert: raise more (ALERTS)"),
            Rule | FreshRule => {
                let body: Value = serde_json::from_str(&RULE.replace("{n}", &format!("{p} {n}"))).unwrap();
                created(c, &admin, "/v1/rules", &body)["id"].as_str().unwrap().to_string()
            }
            Webhook | FreshWebhook => {
                let webhook = created(c, &admin, "/v1/webhooks", &json!({"url": self.hook}));
                self.markers.push(webhook["secret"].as_str().unwrap().to_string());
                webhook["id"].as_str().unwrap().to_string()
            }
            FreshSubject | HeldSubject => {
                let subject = format!("{p}-subject-{n}");
                let event_id = format!("{p}-about-subject-{n}");
                let event = json!({"id": event_id, "action": "data.updated", "data_subject": subject,
                                   "actor": {"id": format!("{p}-actor"), "type": "user"}});
                created(c, &admin, "/v1/events", &event);
                if obj == HeldSubject {
                    let path = format!("/v1/subjects/{subject}/legal-hold");
                    let reply = c.put_json(Some(&admin), &path, &json!({"reason": "litigation"}));
                    assert_eq!(reply.status, 200, "{}", reply.text());
                }
                self.subject_events.insert(subject.clone(), event_id);
                subject
            }
            Role | FreshRole => {
                let body = json!({"name": format!("{}_role_{n}", p.replace('-', "_")), "permissions": ["events:read"]});
                created(c, &admin, "/v1/roles", &body)["name"].as_str().unwrap().to_string()
            }
            Idp | FreshIdp => {
                let body: Value = serde_json::from_str(&IDP.replace("{n}", &format!("{p}-{n}"))).unwrap();
                created(c, &admin, "/v1/identity-providers", &body)["id"].as_str().unwrap().to_string()
            }
            shared => panic!("{shared:?} is made by Tenant::set_up"),
        };
        self.markers.push(made.clone());
        made
    }

    /// What the tenant's admin sees of an object: equal before and after another tenant's call
    /// when that call changed nothing.
    fn snapshot(&self, c: &Client, obj: Obj, id: &str) -> Value {
        let get = |path: &str| {
            let reply = c.get(Some(&self.admin), path);
            let body = serde_json::from_slice(&reply.body).unwrap_or_else(|_| json!(reply.text()));
            json!({"status": reply.status, "body": body})
        };
        match obj {
            Event | OwnEvent => get(&format!("/v1/events/{id}")),
            FreshKey => json!({"key_works": c.get(Some(&self.key_tokens[id]), "/v1/ledger/checkpoint").status}),
            User | FreshUser => get(&format!("/v1/users/{id}")),
            Alert | FreshAlert => get(&format!("/v1/alerts/{id}")),
            Rule | FreshRule => get(&format!("/v1/rules/{id}")),
            Webhook | FreshWebhook => get(&format!("/v1/webhooks/{id}")),
            Delivery => {
                let listed = get(&format!("/v1/webhooks/{}/deliveries", self.shared[&Webhook]));
                let deliveries = listed["body"]["deliveries"].as_array().cloned().unwrap_or_default();
                let found = deliveries.iter().find(|d| d["id"] == id).cloned().unwrap_or(Value::Null);
                json!({"status": found["status"], "attempts": found["attempts"]})
            }
            Subject | FreshSubject | HeldSubject => {
                let report = get(&format!("/v1/subjects/{id}/export"));
                json!({
                    "event": get(&format!("/v1/events/{}", self.subject_events[id])),
                    "legal_hold": report["body"]["storage_period"]["legal_hold"],
                })
            }
            Role | FreshRole => get(&format!("/v1/roles/{id}")),
            Idp | FreshIdp => get(&format!("/v1/identity-providers/{id}")),
        }
    }

    /// Every event of the tenant with `action`, read with the admin key, once at least
    /// `at_least` of them are visible (the query index may lag the ledger by up to a second).
    fn events(&self, c: &Client, action: &str, at_least: usize) -> Vec<Value> {
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            events.clear();
            let mut cursor: Option<String> = None;
            loop {
                let mut path = format!("/v1/events?action={action}&limit=1000");
                if let Some(cursor) = &cursor {
                    path.push_str(&format!("&cursor={cursor}"));
                }
                let reply = c.get(Some(&self.admin), &path);
                assert_eq!(reply.status, 200, "{}", reply.text());
                let page = reply.json();
                events.extend(page["events"].as_array().unwrap().iter().cloned());
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_string()),
                    None => break,
                }
            }
            if events.len() >= at_least || Instant::now() > deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// tenant-alpha's callers, in column order.
fn callers(c: &Client, alpha: &Tenant) -> Vec<Caller> {
    let mut callers = Vec::new();
    for (column, role) in ROLES.iter().enumerate() {
        let (user_id, email) = &alpha.users[column];
        callers.push(Caller {
            label: COLUMNS[column],
            token: sign_in(c, &alpha.id, email),
            actor_ref: format!("user:{user_id}"),
            own_actor: (*role == "standard_user").then(|| format!("{}-su", alpha.prefix)),
            email: Some(email.clone()),
        });
    }
    for (i, scope) in KEY_SCOPES.iter().enumerate() {
        let key =
            created(c, &alpha.admin, "/v1/api-keys", &json!({"name": format!("matrix {scope}"), "scopes": [scope]}));
        callers.push(Caller {
            label: COLUMNS[ROLES.len() + i],
            token: key["api_key"].as_str().unwrap().to_string(),
            actor_ref: format!("api_key:{}", key["id"].as_str().unwrap()),
            own_actor: None,
            email: None,
        });
    }
    callers
}

/// The `actor.id` of every event in an answer to a query (JSON) or an export (JSON lines, CSV).
fn actor_ids(reply: &Reply) -> Vec<String> {
    let content_type = reply.content_type.as_deref().unwrap_or_default();
    let text = reply.text();
    if content_type.starts_with("text/csv") {
        // The first columns (seq, id, times, action, outcome) hold no comma in these events.
        return text.lines().skip(1).map(|line| line.split(',').nth(6).unwrap_or_default().to_string()).collect();
    }
    let events: Vec<Value> = if content_type.starts_with("application/x-ndjson") {
        text.lines().map(|line| serde_json::from_str(line).unwrap_or(Value::Null)).collect()
    } else {
        reply.json()["events"].as_array().cloned().unwrap_or_default()
    };
    events.iter().map(|e| e["actor"]["id"].as_str().unwrap_or_default().to_string()).collect()
}

/// Whether `reply` is what `expect` demands of an endpoint whose success status is `success`.
fn meets(expect: Expect, success: u16, reply: &Reply, caller: &Caller) -> bool {
    match expect {
        Expect::Allow => reply.status == success,
        Expect::Own => {
            let own = caller.own_actor.as_deref().expect("own-records-only callers have an actor id");
            let actors = actor_ids(reply);
            reply.status == success && !actors.is_empty() && actors.iter().all(|a| a == own)
        }
        Expect::Hidden => reply.status == 404 && error_code(reply) == "not_found",
        Expect::Deny => reply.status == 403 && error_code(reply) == "forbidden",
        Expect::NotASession => reply.status == 400 && error_code(reply) == "invalid_request",
    }
}

/// A marker of the other tenant in `reply`, once the ids the request itself named are left out.
fn leak<'a>(reply: &Reply, markers: &'a [String], named: &[String]) -> Option<&'a str> {
    let mut text = reply.text();
    for id in named {
        text = text.replace(id.as_str(), "");
    }
    markers.iter().map(String::as_str).find(|marker| text.contains(marker))
}

fn describe(reply: &Reply) -> String {
    let text = reply.text();
    let cut: String = text.chars().take(300).collect();
    format!("{} {cut}", reply.status)
}

#[test]
fn every_endpoint_answers_every_role_as_the_matrix_says_in_its_own_tenant_and_another() {
    let receiver = WebhookReceiver::start();
    let config = ServerConfig {
        alerting: AlertingConfig { webhook_allow_private: true, ..AlertingConfig::default() },
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(config);
    let c = &server.client;

    // The table covers every endpoint the API documents, each placeholder with an object.
    let openapi = c.get(None, "/v1/openapi.json").json();
    let normalized = |method: &str, route: &str| {
        let mut out = format!("{} ", method.to_uppercase());
        let mut inside = false;
        for ch in route.chars() {
            match ch {
                '{' => inside = true,
                '}' => {
                    inside = false;
                    out.push_str("{}");
                }
                _ if !inside => out.push(ch),
                _ => {}
            }
        }
        out
    };
    let mut covered: BTreeSet<String> = TABLE.iter().map(|r| normalized(r.method.as_str(), r.route)).collect();
    covered.extend(NOT_IN_TABLE.iter().map(|(method, route)| normalized(method, route)));
    for (route, operations) in openapi["paths"].as_object().unwrap() {
        let methods = operations.as_object().unwrap().keys();
        for method in methods.filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str())) {
            let endpoint = normalized(method, route);
            assert!(covered.contains(&endpoint), "{endpoint} has no row in the access-control table");
        }
    }
    for row in TABLE {
        assert_eq!(row.placeholders(), row.ids.len(), "{}: one object per placeholder", row.endpoint());
    }

    let mut alpha = Tenant::set_up(c, "alpha", &receiver.url);
    let mut bravo = Tenant::set_up(c, "bravo", &receiver.url);
    for (_, email) in &bravo.users {
        let token = sign_in(c, &bravo.id, email);
        bravo.markers.push(token);
    }
    let callers = callers(c, &alpha);
    let mut failures: Vec<String> = Vec::new();
    // (actor, endpoint) of every refusal tenant-alpha's ledger must hold.
    let mut denials: Vec<(String, String)> = Vec::new();

    // Own tenant.
    for row in TABLE {
        for (column, caller) in callers.iter().enumerate() {
            let expect = row.expect[column];
            let ids: Vec<String> = row.ids.iter().map(|obj| alpha.fresh(c, *obj)).collect();
            let path = row.path(&ids);
            let token = match (&caller.email, row.route) {
                (Some(email), "/v1/sessions/current") => sign_in(c, &alpha.id, email),
                _ => caller.token.clone(),
            };
            alpha.next += 1;
            let reply = row.call(c, &token, &path, alpha.next, &alpha.hook);
            let cell = format!("{} {path} as {}", row.method.as_str(), caller.label);
            if !meets(expect, row.success, &reply, caller) {
                failures.push(format!("{cell}: expected {expect:?} ({}), got {}", row.success, describe(&reply)));
            } else if expect == Expect::Deny {
                denials.push((caller.actor_ref.clone(), row.endpoint()));
            }
            if let Some(marker) = leak(&reply, &bravo.markers, &[]) {
                failures.push(format!("{cell}: the answer holds tenant-bravo's {marker:?}"));
            }
        }
    }

    // Another tenant's objects: tenant-alpha's callers with tenant-bravo's ids.
    for row in TABLE.iter().filter(|row| !row.ids.is_empty()) {
        let by_value = row.ids.iter().any(|obj| obj.is_value());
        for (column, caller) in callers.iter().enumerate() {
            let allowed = row.expect[column] != Expect::Deny;
            let ids: Vec<String> = row.ids.iter().map(|obj| bravo.fresh(c, *obj)).collect();
            let before: Vec<Value> = row.ids.iter().zip(&ids).map(|(obj, id)| bravo.snapshot(c, *obj, id)).collect();
            let path = row.path(&ids);
            alpha.next += 1;
            let reply = row.call(c, &caller.token, &path, alpha.next, &alpha.hook);
            let cell = format!("{} {path} (tenant-bravo's) as {}", row.method.as_str(), caller.label);
            let (status, code) = match (allowed, by_value) {
                (false, _) => (403, "forbidden"),
                (true, false) => (404, "not_found"),
                (true, true) => (row.success, ""),
            };
            if reply.status != status || (!code.is_empty() && error_code(&reply) != code) {
                failures.push(format!("{cell}: expected {status} {code}, got {}", describe(&reply)));
            } else if !allowed {
                denials.push((caller.actor_ref.clone(), row.endpoint()));
            }
            if let Some(marker) = leak(&reply, &bravo.markers, &ids) {
                failures.push(format!("{cell}: the answer holds tenant-bravo's {marker:?}"));
            }
            let after: Vec<Value> = row.ids.iter().zip(&ids).map(|(obj, id)| bravo.snapshot(c, *obj, id)).collect();
            if before != after {
                failures.push(format!("{cell}: tenant-bravo's object changed: {before:?} -> {after:?}"));
            }
        }
    }

    platform_only(c, &alpha, &callers, &mut failures, &mut denials);

    // Every refusal is in tenant-alpha's ledger, by whom and where; none in tenant-bravo's.
    let recorded = alpha.events(c, "permission.denied", denials.len());
    let mut found: BTreeMap<(String, String), usize> = BTreeMap::new();
    for event in &recorded {
        let actor = event["actor"]["id"].as_str().unwrap_or_default().to_string();
        let endpoint = event["metadata"]["endpoint"].as_str().unwrap_or_default().to_string();
        *found.entry((actor, endpoint)).or_default() += 1;
    }
    let mut expected: BTreeMap<(String, String), usize> = BTreeMap::new();
    for denial in &denials {
        *expected.entry(denial.clone()).or_default() += 1;
    }
    for ((actor, endpoint), count) in &expected {
        let got = found.get(&(actor.clone(), endpoint.clone())).copied().unwrap_or(0);
        if got < *count {
            failures.push(format!("{count} refusals of {endpoint} to {actor}, but {got} permission.denied events"));
        }
    }
    if recorded.len() < denials.len() {
        failures.push(format!("{} refusals, {} permission.denied events", denials.len(), recorded.len()));
    }
    let elsewhere = bravo.events(c, "permission.denied", 0);
    if !elsewhere.is_empty() {
        failures.push(format!("tenant-alpha's refusals in tenant-bravo's ledger: {elsewhere:?}"));
    }

    assert!(failures.is_empty(), "{} cells differ from the matrix:\n{}", failures.len(), failures.join("\n"));
}

/// Server-wide operations need the platform bootstrap token: every tenant credential, the
/// tenant's admin key included, gets 403, recorded like any other refusal.
fn platform_only(
    c: &Client,
    alpha: &Tenant,
    callers: &[Caller],
    failures: &mut Vec<String>,
    denials: &mut Vec<(String, String)>,
) {
    let admin_id = alpha.admin.strip_prefix("vt_").and_then(|rest| rest.split('_').next()).unwrap_or_default();
    let mut credentials: Vec<(&str, &str, String)> =
        callers.iter().map(|caller| (caller.label, caller.token.as_str(), caller.actor_ref.clone())).collect();
    credentials.push(("admin key", alpha.admin.as_str(), format!("api_key:{admin_id}")));
    let operations = [
        ("/v1/tenants", json!({"name": "tenant-alpha-sneaky"})),
        ("/v1/platform/master-key/rotate", json!({})),
        ("/v1/ledger/keys/rotate", json!({})),
    ];
    for (label, token, actor_ref) in credentials {
        for (path, body) in &operations {
            let reply = c.post_json(Some(token), path, body);
            if reply.status == 403 && error_code(&reply) == "forbidden" {
                denials.push((actor_ref.clone(), format!("POST {path}")));
            } else {
                failures.push(format!("POST {path} as {label}: expected Deny, got {}", describe(&reply)));
            }
        }
    }
}
