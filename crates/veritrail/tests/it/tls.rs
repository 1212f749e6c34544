//! TLS end to end, with a throw-away CA made by the `openssl` command line: the real binary
//! serving HTTPS (`--tls-cert`/`--tls-key`) to clients that trust the CA and to no others, and
//! refusing to start with a bad certificate or key; webhooks delivered over HTTPS to an
//! endpoint whose CA is trusted (`outbound_ca_pem`) and not to one whose CA is not; an identity
//! provider's key set fetched over HTTPS from its `jwks_url`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use veritrail_server::{AlertingConfig, RetryPolicy, ServerConfig};
use veritrail_test_support::tls::{DocumentServer, Negotiated, TestPki, TlsVersion, handshake, start_https_child};
use veritrail_test_support::webhook::{ReceivedWebhook, WebhookReceiver};
use veritrail_test_support::{BOOTSTRAP_TOKEN, ChildServer, Client, TestServer, event, wait_for};

const BINARY: &str = env!("CARGO_BIN_EXE_veritrail");

fn path_text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// What the server at `addr` answers a plain-HTTP request with, until it closes the connection.
fn plain_http_answer(addr: SocketAddr) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer); // a reset ends it as well as a close
    answer
}

#[test]
fn the_binary_serves_https_to_clients_trusting_its_ca_only() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    // The certificate by flag, the key (SEC1 form) by environment.
    let (cert, key) = (pki.cert_path(), pki.sec1_key_path());
    let server = start_https_child(
        BINARY,
        dir.path(),
        &pki,
        &["--tls-cert", path_text(&cert)],
        &[("VERITRAIL_TLS_KEY", path_text(&key))],
    );
    let c = &server.client;
    let addr: SocketAddr = c.base().trim_start_matches("https://").parse().unwrap();

    assert_eq!(c.get(None, "/healthz").status, 200);
    let (_, admin) = c.create_tenant("acme"); // POST /v1/tenants over HTTPS
    assert_eq!(c.ingest(&admin, &event("e-1", "data.read", "u1")).status, 201);
    for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
        let negotiated = handshake(addr, &pki.ca_pem, version);
        assert_eq!(negotiated, Ok(Negotiated { version, alpn: Some("http/1.1".into()) }));
    }

    // A client trusting another CA fails the handshake, and gets nothing done.
    let stranger = TestPki::generate();
    let refused = handshake(addr, &stranger.ca_pem, TlsVersion::Tls13);
    assert!(refused.as_ref().is_err_and(|e| e.contains("UnknownIssuer")), "{refused:?}");
    let body = json!({"name": "globex"}).to_string();
    let untrusted = stranger.client(c.base()).try_post_raw(
        Some(BOOTSTRAP_TOKEN),
        "/v1/tenants",
        "application/json",
        body.as_bytes(),
    );
    assert!(untrusted.is_err(), "{untrusted:?}");
    // Plain HTTP gets no HTTP answer.
    let answer = plain_http_answer(addr);
    assert!(!answer.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&answer));

    // Clients stalled before or in their handshake do not hold up the others.
    let mut stalled: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    stalled[0].write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap(); // half a ClientHello
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(c.get(Some(&admin), "/v1/events/e-1").status, 200);
        assert_eq!(handshake(addr, &pki.ca_pem, TlsVersion::Tls13).map(|n| n.version), Ok(TlsVersion::Tls13));
    }
    assert!(started.elapsed() < Duration::from_secs(5), "served in {:?}", started.elapsed());
    drop(stalled);

    // A stop lets the server finish and commit; the data is there for a plain-HTTP start.
    assert!(server.signal_and_wait("TERM").success(), "graceful stop");
    let plain = ChildServer::start(BINARY, dir.path());
    assert_eq!(plain.client.get(Some(&admin), "/v1/events/e-1").status, 200);
}

#[test]
fn a_bad_certificate_or_key_stops_the_binary_at_start() {
    let pki = TestPki::generate();
    let other = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, other_key) = (pki.cert_path(), pki.key_path(), other.key_path());
    let (cert, key, other_key) = (path_text(&cert), path_text(&key), path_text(&other_key));
    let missing = dir.path().join("missing.key");
    let config = dir.path().join("veritrail.toml");
    std::fs::write(&config, format!("tls_cert = {cert:?}\ntls_key = {other_key:?}\n")).unwrap();
    let cases: [(&[&str], &str); 7] = [
        (&["--tls-cert", cert], "--tls-cert needs --tls-key"),
        (&["--tls-key", key], "--tls-key needs --tls-cert"),
        (&["--tls-cert", cert, "--tls-key", other_key], "the private key does not belong to the (first) certificate"),
        (&["--tls-cert", cert, "--tls-key", path_text(&missing)], "cannot read tls_key"),
        (&["--tls-cert", cert, "--tls-key", cert], "holds no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY"),
        (&["--tls-cert", key, "--tls-key", key], "tls certificate file: holds no CERTIFICATE"),
        (&["--config", path_text(&config)], "the private key does not belong to the (first) certificate"),
    ];
    for (args, expected) in cases {
        let mut child = std::process::Command::new(BINARY)
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("VERITRAIL_BOOTSTRAP_TOKEN", BOOTSTRAP_TOKEN)
            .env_remove("VERITRAIL_TLS_CERT")
            .env_remove("VERITRAIL_TLS_KEY")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_for(Duration::from_secs(30), || child.try_wait().unwrap());
        let Some(status) = status else {
            let _ = child.kill();
            panic!("{args:?}: veritrail kept running");
        };
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(!status.success(), "{args:?}: {status}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// A server whose webhooks may reach this machine, trusting `outbound_ca_pem` besides the
/// system's CAs, with fast retries.
fn outbound_config(outbound_ca_pem: Option<Vec<u8>>) -> ServerConfig {
    ServerConfig {
        alerting: AlertingConfig {
            webhook_allow_private: true,
            retry: RetryPolicy {
                first: Duration::from_millis(50),
                max: Duration::from_millis(200),
                give_up_after: Duration::from_secs(2),
            },
            ..AlertingConfig::default()
        },
        outbound_ca_pem,
        ..ServerConfig::default()
    }
}

/// Creates a webhook to `url`; returns its id and secret.
fn create_webhook(c: &Client, key: &str, url: &str) -> (String, String) {
    let reply = c.post_json(Some(key), "/v1/webhooks", &json!({"url": url}));
    assert_eq!(reply.status, 201, "{}", reply.text());
    let body = reply.json();
    (body["id"].as_str().unwrap().to_string(), body["secret"].as_str().unwrap().to_string())
}

/// Standard Webhooks verification, written from the specification: the payload.
fn verify(secret: &str, received: &ReceivedWebhook) -> Value {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ prefix")).unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", received.id, received.timestamp).as_bytes());
    mac.update(&received.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert!(received.signature.split(' ').any(|s| s == expected), "signature {:?} does not verify", received.signature);
    serde_json::from_slice(&received.body).unwrap()
}

/// The first delivery of `webhook` that `done` accepts, within 10 s.
fn delivery(c: &Client, key: &str, webhook: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_for(Duration::from_secs(10), || {
        let log = c.get(Some(key), &format!("/v1/webhooks/{webhook}/deliveries")).json();
        log["deliveries"].as_array().and_then(|all| all.iter().find(|d| done(d)).cloned())
    })
    .unwrap_or_else(|| {
        panic!("no such delivery: {}", c.get(Some(key), &format!("/v1/webhooks/{webhook}/deliveries")).text())
    })
}

#[test]
fn webhooks_are_delivered_over_https_when_the_receivers_ca_is_trusted() {
    let pki = TestPki::generate();
    let receiver = WebhookReceiver::start_https(&pki);
    assert!(receiver.url.starts_with("https://127.0.0.1:"), "{}", receiver.url);
    let sensitive = event("tamper", "config.sso.configured", "admin-1"); // a built-in rule's

    let trusting = TestServer::start_with(outbound_config(Some(pki.ca_pem.clone())));
    let c = &trusting.client;
    let (_, key) = c.create_tenant("acme");
    let (webhook, secret) = create_webhook(c, &key, &receiver.url);
    assert_eq!(c.ingest(&key, &sensitive).status, 201);
    let received = wait_for(Duration::from_secs(10), || receiver.accepted().first().cloned()).expect("a webhook");
    assert_eq!(verify(&secret, &received)["data"]["rule"], "security_config_change");
    let delivered = delivery(c, &key, &webhook, |d| d["status"] == "delivered");
    assert_eq!(delivered["id"], received.id.as_str());

    // Without the CA, the handshake fails; the delivery log says why.
    let distrusting = TestServer::start_with(outbound_config(None));
    let c = &distrusting.client;
    let (_, key) = c.create_tenant("acme");
    let (webhook, _) = create_webhook(c, &key, &receiver.url);
    assert_eq!(c.ingest(&key, &sensitive).status, 201);
    let failed = delivery(c, &key, &webhook, |d| d["last_error"].is_string());
    let error = failed["last_error"].as_str().unwrap();
    assert!(error.contains("tls handshake with 127.0.0.1 failed: invalid peer certificate: UnknownIssuer"), "{failed}");
    assert_ne!(failed["status"], "delivered", "{failed}");
    assert_eq!(receiver.received().len(), 1, "nothing reached the receiver");
}

const ISSUER: &str = "https://login.acme.example/realms/acme";
const AUDIENCE: &str = "veritrail-acme";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn provider(jwks_url: &str) -> Value {
    json!({
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "allowed_algorithms": ["EdDSA"],
        "jwks_url": jwks_url,
        "role_claim": "groups",
        "role_mapping": {"auditors": "auditor"},
    })
}

/// A token for `subject` in the auditors group, signed with `key` as key `k1`.
fn token(key: &SigningKey, subject: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"});
    let claims = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "groups": ["auditors"],
        "iat": now - 5,
        "exp": now + 600,
    });
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    format!("{input}.{}", b64(&key.sign(input.as_bytes()).to_bytes()))
}

#[test]
fn identity_provider_key_sets_are_fetched_over_https() {
    let pki = TestPki::generate();
    let key = SigningKey::from_bytes(&[7; 32]);
    let jwk =
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "k1", "use": "sig", "x": b64(key.verifying_key().as_bytes())});
    let jwks = json!({"keys": [jwk]}).to_string();
    let documents = DocumentServer::start(
        &pki,
        &[("/jwks.json", "application/json", jwks.as_bytes()), ("/login", "text/html", b"<html>sign in</html>")],
    );
    let jwks_url = format!("{}/jwks.json", documents.base);

    let server = TestServer::start_with(outbound_config(Some(pki.ca_pem.clone())));
    let c = &server.client;
    let (_, admin) = c.create_tenant("acme");
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for url in [
        format!("https://127.0.0.1:{closed_port}/jwks.json"),
        format!("{}/login", documents.base),
        format!("{}/missing.json", documents.base),
    ] {
        let reply = c.post_json(Some(&admin), "/v1/identity-providers", &provider(&url));
        assert_eq!(reply.status, 400, "{url}: {}", reply.text());
        assert!(reply.text().contains("jwks_url"), "{url}: {}", reply.text());
    }
    assert_eq!(c.get(Some(&token(&key, "carol")), "/v1/events").status, 401, "no provider yet");
    let created = c.post_json(Some(&admin), "/v1/identity-providers", &provider(&jwks_url));
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(c.get(Some(&token(&key, "carol")), "/v1/events").status, 200);

    // Without the CA, the key set cannot be fetched.
    let distrusting = TestServer::start_with(outbound_config(None));
    let c = &distrusting.client;
    let (_, admin) = c.create_tenant("acme");
    let reply = c.post_json(Some(&admin), "/v1/identity-providers", &provider(&jwks_url));
    assert_eq!(reply.status, 400, "{}", reply.text());
    let text = reply.text();
    assert!(text.contains("jwks_url") && text.contains("tls handshake") && text.contains("UnknownIssuer"), "{text}");
}
