//! Single sign-on end to end (issue 6): a tenant configures its identity provider, whose JWT
//! bearer tokens (signed in the test with a key generated here) then act with the roles their
//! claims map to; forged, expired, wrong-audience, `alg: none` and HMAC-confusion tokens get 401
//! and are recorded as `auth.login.failed`. Also the session-expiry and credential events and
//! the platform ledger.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use veritrail_test_support::{BOOTSTRAP_TOKEN, TestServer, event};

use crate::access::actions;

const ISSUER: &str = "https://login.acme.example/realms/acme";
const AUDIENCE: &str = "veritrail-acme";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A test identity provider: an Ed25519 key pair and the tokens it signs.
pub(crate) struct Idp {
    key: SigningKey,
    kid: &'static str,
}

impl Idp {
    pub(crate) fn new(seed: u8, kid: &'static str) -> Idp {
        Idp { key: SigningKey::from_bytes(&sha2_seed(seed)), kid }
    }

    fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "use": "sig", "x": b64(self.key.verifying_key().as_bytes())})
    }

    fn jwks(&self) -> Value {
        json!({"keys": [self.jwk()]})
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", b64(&signature.to_bytes()))
    }

    pub(crate) fn token(&self, claims: &Value) -> String {
        self.sign(&json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid}), claims)
    }
}

fn sha2_seed(seed: u8) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest([b"veritrail sso test key ".as_slice(), &[seed]].concat()).into()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

pub(crate) fn claims(subject: &str, groups: &[&str]) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "email": format!("{subject}@acme.example"),
        "groups": groups,
        "iat": now() - 5,
        "exp": now() + 600,
    })
}

pub(crate) fn provider(idp: &Idp) -> Value {
    json!({
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "allowed_algorithms": ["EdDSA"],
        "jwks": idp.jwks(),
        "role_claim": "groups",
        "role_mapping": {"audit-admins": "super_admin", "auditors": "auditor", "staff": "standard_user"},
        "email_claim": "email",
    })
}

fn reasons(events: &[Value]) -> Vec<String> {
    let mut reasons: Vec<String> =
        events.iter().map(|e| e["metadata"]["reason"].as_str().unwrap_or_default().to_string()).collect();
    reasons.sort();
    reasons
}

#[test]
fn identity_provider_tokens_act_with_their_mapped_roles() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, admin) = c.create_tenant("acme");
    let (_, other_admin) = c.create_tenant("globex");
    let idp = Idp::new(1, "k1");

    // Configuration is validated and needs users:manage.
    let reader = c.create_key(&admin, &["events:read"]);
    let denied = c.post_json(Some(&reader), "/v1/identity-providers", &provider(&idp));
    assert_eq!((denied.status, denied.error_code().as_str()), (403, "forbidden"), "{}", denied.text());
    for (change, fragment) in [
        (json!({"allowed_algorithms": ["HS256"]}), "HMAC"),
        (json!({"allowed_algorithms": ["RS256"]}), "no key can verify RS256"),
        (json!({"jwks": null}), "jwks: missing"),
        (json!({"role_mapping": {"x": "no_such_role"}}), "no_such_role"),
        (json!({"client_secret": "s"}), "unknown field"),
    ] {
        let mut body = provider(&idp);
        for (name, value) in change.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(name);
            } else {
                body[name] = value.clone();
            }
        }
        let reply = c.post_json(Some(&admin), "/v1/identity-providers", &body);
        assert_eq!(reply.status, 400, "{change}: {}", reply.text());
        assert!(reply.text().contains(fragment), "{change}: {}", reply.text());
    }
    // A credential cannot map tokens to roles stronger than itself.
    let user_admin = c.create_key(&admin, &["users:manage"]);
    let escalation = c.post_json(Some(&user_admin), "/v1/identity-providers", &provider(&idp));
    assert_eq!(escalation.status, 403, "{}", escalation.text());

    let created = c.post_json(Some(&admin), "/v1/identity-providers", &provider(&idp));
    assert_eq!(created.status, 201, "{}", created.text());
    let provider_id = created.json()["id"].as_str().unwrap().to_string();
    assert!(provider_id.starts_with("idp_"), "{provider_id}");
    let again = c.post_json(Some(&admin), "/v1/identity-providers", &provider(&idp));
    assert_eq!(again.status, 409, "one provider per issuer: {}", again.text());
    let listed = c.get(Some(&admin), "/v1/identity-providers").json();
    assert_eq!(listed["identity_providers"][0]["issuer"], ISSUER);
    // Another tenant neither sees nor changes it.
    let path = format!("/v1/identity-providers/{provider_id}");
    assert_eq!(c.get(Some(&other_admin), &path).status, 404);
    assert_eq!(c.delete(Some(&other_admin), &path).status, 404);
    assert_eq!(c.get(Some(&other_admin), "/v1/identity-providers").json()["identity_providers"], json!([]));
    let configured = actions(c, &admin, "config.sso.configured", 1);
    assert_eq!(configured[0]["metadata"]["provider_id"], provider_id.as_str());

    // Events by two application users.
    let events = json!([event("e-alice", "data.read", "alice"), event("e-bob", "data.read", "bob")]);
    assert_eq!(c.ingest(&admin, &events).status, 201);

    // An auditor token reads everything and may not manage keys.
    let auditor = idp.token(&claims("carol", &["auditors"]));
    for _ in 0..3 {
        assert_eq!(c.get(Some(&auditor), "/v1/events?limit=1").status, 200);
    }
    let keys = c.post_json(Some(&auditor), "/v1/api-keys", &json!({"name": "x", "scopes": ["events:read"]}));
    assert_eq!(keys.status, 403, "{}", keys.text());
    // The first use of a token is recorded once, whatever the number of requests.
    let logins = actions(c, &admin, "auth.login.success", 1);
    let carol: Vec<&Value> = logins.iter().filter(|e| e["actor"]["id"] == "carol").collect();
    assert_eq!(carol.len(), 1, "{logins:?}");
    assert_eq!(carol[0]["metadata"]["method"], "sso");
    assert_eq!(carol[0]["metadata"]["roles"], json!(["auditor"]));

    // A standard_user token sees only its own events: query, by id and export.
    let alice = idp.token(&claims("alice", &["staff"]));
    let mine = c.get(Some(&alice), "/v1/events?action=data.read").json();
    let ids: Vec<&str> = mine["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["e-alice"]);
    assert_eq!(c.get(Some(&alice), "/v1/events/e-alice").status, 200);
    assert_eq!(c.get(Some(&alice), "/v1/events/e-bob").status, 404);
    let export = c.get(Some(&alice), "/v1/export?format=jsonl&action=data.read");
    assert_eq!(export.status, 200, "{}", export.text());
    assert!(export.text().contains("e-alice") && !export.text().contains("e-bob"), "{}", export.text());
    // A token mapping to no role authenticates but may do nothing.
    let nobody = idp.token(&claims("dan", &["visitors"]));
    assert_eq!(c.get(Some(&nobody), "/v1/events").status, 403);

    // Deleting the provider ends its tokens at once.
    assert_eq!(c.delete(Some(&admin), &path).status, 204);
    assert_eq!(c.get(Some(&auditor), "/v1/events").status, 401);
    let changes = actions(c, &admin, "config.sso.configured", 2);
    let operations: Vec<&str> = changes.iter().map(|e| e["metadata"]["operation"].as_str().unwrap()).collect();
    assert!(operations.contains(&"deleted") && operations.contains(&"created"), "{operations:?}");
}

#[test]
fn bad_tokens_get_401_and_are_recorded() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, admin) = c.create_tenant("acme");
    let idp = Idp::new(2, "k1");
    let created = c.post_json(Some(&admin), "/v1/identity-providers", &provider(&idp));
    assert_eq!(created.status, 201, "{}", created.text());
    let good = claims("carol", &["auditors"]);
    assert_eq!(c.get(Some(&idp.token(&good)), "/v1/events?limit=1").status, 200);

    let impostor = Idp::new(3, "k1");
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 3600);
    let mut wrong_audience = good.clone();
    wrong_audience["aud"] = json!("someone-else");
    let mut not_yet = good.clone();
    not_yet["nbf"] = json!(now() + 3600);
    let payload = b64(good.to_string().as_bytes());
    let alg_none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    // HMAC keyed with the provider's public key: the classic algorithm confusion.
    let hs_input = format!("{}.{payload}", b64(br#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#));
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(idp.jwk().to_string().as_bytes()).unwrap();
    mac.update(hs_input.as_bytes());
    let hs256 = format!("{hs_input}.{}", b64(&mac.finalize().into_bytes()));
    // Claims changed after signing (another role), the original signature kept.
    let signed = idp.token(&good);
    let (header, rest) = signed.split_once('.').unwrap();
    let signature = rest.split_once('.').unwrap().1;
    let tampered = format!("{header}.{}.{signature}", b64(claims("carol", &["audit-admins"]).to_string().as_bytes()));
    let cases = [
        ("forged signature", impostor.token(&good), "token_bad_signature"),
        ("expired", idp.token(&expired), "token_expired"),
        ("wrong audience", idp.token(&wrong_audience), "token_wrong_audience"),
        ("not yet valid", idp.token(&not_yet), "token_not_yet_valid"),
        ("alg none", alg_none, "token_unsigned"),
        ("hs256 confusion", hs256, "token_hmac_refused"),
        ("tampered claims", tampered, "token_bad_signature"),
    ];
    for (what, token, _) in &cases {
        let reply = c.get(Some(token), "/v1/events");
        assert_eq!((reply.status, reply.error_code().as_str()), (401, "unauthorized"), "{what}: {}", reply.text());
        assert!(!reply.text().contains(token.as_str()), "{what}: the answer quotes the token");
    }
    let failed = actions(c, &admin, "auth.login.failed", cases.len());
    let recorded = reasons(&failed);
    let mut expected: Vec<String> = cases.iter().map(|(_, _, reason)| reason.to_string()).collect();
    expected.sort();
    assert_eq!(recorded, expected);
    assert!(failed.iter().all(|e| e["outcome"] == "failure" && e["metadata"]["method"] == "sso"), "{failed:?}");
    // A token from an issuer nobody trusts is refused without touching any ledger.
    let mut stranger = good.clone();
    stranger["iss"] = json!("https://elsewhere.example");
    assert_eq!(c.get(Some(&idp.token(&stranger)), "/v1/events").status, 401);
}

#[test]
fn refused_tokens_are_throttled_per_address() {
    let server = TestServer::start();
    let c = &server.client;
    let (_, admin) = c.create_tenant("acme");
    let idp = Idp::new(4, "k1");
    assert_eq!(c.post_json(Some(&admin), "/v1/identity-providers", &provider(&idp)).status, 201);
    let forged = Idp::new(5, "k1").token(&claims("mallory", &["audit-admins"]));
    let statuses: Vec<u16> = (0..12).map(|_| c.get(Some(&forged), "/v1/events").status).collect();
    assert_eq!(statuses[0], 401);
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
    let throttled = c.get(Some(&forged), "/v1/events");
    assert_eq!(throttled.status, 429);
    assert!(throttled.retry_after.is_some(), "429 carries Retry-After");
}

#[test]
fn expired_sessions_and_api_keys_leave_credential_events() {
    let ttl = Duration::from_millis(600);
    let server =
        TestServer::start_with(veritrail_server::ServerConfig { session_ttl: Some(ttl), ..Default::default() });
    let c = &server.client;
    let (tenant, admin) = c.create_tenant("acme");
    let password = "correct horse battery staple 42";
    let user = json!({"email": "erin@acme.test", "password": password, "role": "auditor"});
    assert_eq!(c.post_json(Some(&admin), "/v1/users", &user).status, 201);
    let login =
        c.post_json(None, "/v1/sessions", &json!({"tenant": tenant, "email": "erin@acme.test", "password": password}));
    assert_eq!(login.status, 201, "{}", login.text());
    let token = login.json()["token"].as_str().unwrap().to_string();
    assert_eq!(c.get(Some(&token), "/v1/events?limit=1").status, 200);
    std::thread::sleep(ttl + Duration::from_millis(100));
    assert_eq!(c.get(Some(&token), "/v1/events").status, 401);
    let expired = actions(c, &admin, "auth.session.expired", 1);
    assert_eq!(expired.len(), 1, "recorded once: {expired:?}");
    assert!(expired[0]["metadata"]["session_id"].is_string(), "{expired:?}");

    // API keys are credentials: created and revoked as auth.token.* (PCI DSS 10.2.1.5).
    let created = c.post_json(Some(&admin), "/v1/api-keys", &json!({"name": "ci", "scopes": ["events:write"]}));
    assert_eq!(created.status, 201);
    let key_id = created.json()["id"].as_str().unwrap().to_string();
    assert_eq!(c.delete(Some(&admin), &format!("/v1/api-keys/{key_id}")).status, 204);
    let tokens = actions(c, &admin, "auth.token.*", 3);
    let of_key: Vec<&str> = tokens
        .iter()
        .filter(|e| e["metadata"]["key_id"] == key_id.as_str())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(of_key, ["auth.token.revoked", "auth.token.created"]);
}

#[test]
fn the_platform_ledger_records_server_wide_activity() {
    let server = TestServer::start();
    let c = &server.client;
    let (tenant, key) = c.create_tenant("acme");
    // The bootstrap token reads (only) the platform ledger, through the ordinary endpoints.
    let platform = actions(c, BOOTSTRAP_TOKEN, "admin.tenant.created", 1);
    assert_eq!(platform[0]["metadata"]["tenant"], tenant.as_str());
    let opened = c.get(Some(BOOTSTRAP_TOKEN), "/v1/events?order=asc&limit=1").json();
    assert_eq!(opened["events"][0]["action"], "audit.log.initialized");
    let signing = actions(c, BOOTSTRAP_TOKEN, "audit.key.created", 1);
    let published = c.get(None, "/v1/ledger/key").text();
    assert_eq!(signing[0]["metadata"]["verifier_key"].as_str(), Some(published.trim()), "{signing:?}");
    assert_eq!(c.get(Some(BOOTSTRAP_TOKEN), "/v1/ledger/checkpoint").status, 200);
    let records = c.get(Some(BOOTSTRAP_TOKEN), "/v1/ledger/records?from=0&limit=10");
    assert_eq!(records.status, 200, "{}", records.text());
    // Nothing of a tenant's is visible to it, and it writes nothing itself.
    assert!(!c.get(Some(BOOTSTRAP_TOKEN), "/v1/events?limit=1000").text().contains("\"e-1\""));
    assert_eq!(c.ingest(&key, &event("e-1", "data.read", "u1")).status, 201);
    assert_eq!(c.get(Some(BOOTSTRAP_TOKEN), "/v1/events/e-1").status, 404);
    let write = c.ingest(BOOTSTRAP_TOKEN, &event("p-1", "data.read", "u1"));
    assert_eq!(write.status, 403, "{}", write.text());
    assert_eq!(c.get(Some(BOOTSTRAP_TOKEN), "/v1/api-keys").status, 403);
    actions(c, BOOTSTRAP_TOKEN, "permission.denied", 2);
    // A tenant's credentials never reach the platform ledger.
    assert!(
        c.get(Some(&key), "/v1/events?action=admin.tenant.created").json()["events"].as_array().unwrap().is_empty()
    );
}

/// A plain HTTP server answering every request with the current key set; counts requests.
struct KeySetServer {
    url: String,
    body: std::sync::Arc<std::sync::Mutex<String>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl KeySetServer {
    fn start(body: &Value) -> KeySetServer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let body = std::sync::Arc::new(std::sync::Mutex::new(body.to_string()));
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served, counted) = (body.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let text = served.lock().unwrap().clone();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        KeySetServer { url, body, hits }
    }

    fn serve(&self, body: &Value) {
        *self.body.lock().unwrap() = body.to_string();
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn key_sets_are_fetched_from_jwks_url_and_refreshed_on_a_new_key() {
    let (k1, k2, k3) = (Idp::new(11, "k1"), Idp::new(12, "k2"), Idp::new(13, "k3"));
    let keys = KeySetServer::start(&k1.jwks());
    let config = veritrail_server::ServerConfig {
        alerting: veritrail_server::AlertingConfig { webhook_allow_private: true, ..Default::default() },
        ..Default::default()
    };
    let server = TestServer::start_with(config);
    let c = &server.client;
    let (_, admin) = c.create_tenant("acme");
    let mut body = provider(&k1);
    body.as_object_mut().unwrap().remove("jwks");
    body["jwks_url"] = json!(keys.url);

    // The key set is fetched and checked when the provider is saved.
    let unreachable = json!("http://127.0.0.1:9/jwks.json");
    for (url, fragment) in [(unreachable, "jwks_url"), (json!("ftp://x.example/k"), "jwks_url")] {
        let mut bad = body.clone();
        bad["jwks_url"] = url;
        let reply = c.post_json(Some(&admin), "/v1/identity-providers", &bad);
        assert_eq!(reply.status, 400, "{}", reply.text());
        assert!(reply.text().contains(fragment), "{}", reply.text());
    }
    keys.serve(&json!({"keys": "not a list"}));
    let garbage = c.post_json(Some(&admin), "/v1/identity-providers", &body);
    assert_eq!(garbage.status, 400, "a document that is no key set: {}", garbage.text());
    keys.serve(&k1.jwks());
    let created = c.post_json(Some(&admin), "/v1/identity-providers", &body);
    assert_eq!(created.status, 201, "{}", created.text());

    // Tokens verify against the fetched set, which is then cached.
    let token = |idp: &Idp| idp.token(&claims("carol", &["auditors"]));
    assert_eq!(c.get(Some(&token(&k1)), "/v1/events?limit=1").status, 200);
    let after_first = keys.hits();
    assert_eq!(c.get(Some(&token(&k1)), "/v1/events?limit=1").status, 200);
    assert_eq!(keys.hits(), after_first, "the key set is cached");

    // The provider rotates to k2: a token naming the new key makes the server fetch again.
    keys.serve(&json!({"keys": [k1.jwk(), k2.jwk()]}));
    assert_eq!(c.get(Some(&token(&k2)), "/v1/events?limit=1").status, 200);
    assert_eq!(keys.hits(), after_first + 1, "one fetch for the new key");
    // Unknown keys again within 30 s: no request to the provider, the token is refused.
    for _ in 0..3 {
        assert_eq!(c.get(Some(&token(&k3)), "/v1/events?limit=1").status, 401);
    }
    assert_eq!(keys.hits(), after_first + 1, "made-up key ids do not hammer the provider");
}
