//! E-mail notifications end to end (issue 7): `mailto:` notification endpoints get each alert as
//! an e-mail through a real SMTP relay (aiosmtpd in a child process) that requires STARTTLS with
//! a certificate of a throw-away CA and AUTH PLAIN; temporary refusals are retried; a relay that
//! cannot protect the connection is refused, never sent to in clear.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use veritrail_server::{AlertingConfig, RetryPolicy, ServerConfig, SmtpConfig};
use veritrail_test_support::smtp::{SmtpSink, SmtpSinkOptions};
use veritrail_test_support::tls::TestPki;
use veritrail_test_support::{Client, TestServer};

const USER: &str = "veritrail-relay";
const PASSWORD: &str = "relay password 0123456789";

fn config(smtp: Option<SmtpConfig>, ca_pem: Option<Vec<u8>>) -> ServerConfig {
    let retry = RetryPolicy {
        first: Duration::from_millis(200),
        max: Duration::from_millis(400),
        give_up_after: Duration::from_secs(60),
    };
    ServerConfig {
        alerting: AlertingConfig { webhook_timeout: Duration::from_secs(5), retry, ..AlertingConfig::default() },
        outbound_ca_pem: ca_pem,
        smtp,
        ..ServerConfig::default()
    }
}

/// Five failed logins of one actor: one `brute_force` alert.
fn brute_force(c: &Client, key: &str, actor: &str) {
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"id": format!("{actor}-{i}"), "action": "auth.login.failed", "actor": {"id": actor, "type": "user"}}))
        .collect();
    assert_eq!(c.ingest(key, &Value::Array(events)).status, 201);
}

/// The endpoint's deliveries once `done` holds for them (10 s at most).
fn deliveries(c: &Client, key: &str, endpoint: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = c.get(Some(key), &format!("/v1/webhooks/{endpoint}/deliveries"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        let list = reply.json()["deliveries"].as_array().unwrap().clone();
        if done(&list) || Instant::now() > deadline {
            return list;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn body_of(message: &Value) -> (String, String) {
    let data = message["data"].as_str().unwrap();
    let (head, body) = data.split_once("\r\n\r\n").or_else(|| data.split_once("\n\n")).unwrap();
    let decoded = STANDARD.decode(body.split_whitespace().collect::<String>()).unwrap();
    (head.to_string(), String::from_utf8(decoded).unwrap())
}

#[test]
fn alerts_are_mailed_over_starttls_with_auth_and_retried() {
    let pki = TestPki::generate();
    let sink = SmtpSink::start(&SmtpSinkOptions {
        starttls: Some((pki.cert_path(), pki.key_path())),
        credentials: Some((USER.into(), PASSWORD.into())),
        fail_first: 2,
    });
    let smtp = SmtpConfig::parse(
        &format!("smtp://localhost:{}", sink.port),
        "alerts@veritrail.test",
        Some((USER.into(), PASSWORD.into())),
    )
    .unwrap();
    let ca = std::fs::read(pki.ca_path()).unwrap();
    let server = TestServer::start_with(config(Some(smtp), Some(ca)));
    let c = &server.client;
    let (tenant, key) = c.create_tenant("acme");

    // Endpoints are checked when given.
    for bad in ["mailto:", "mailto:soc", "mailto:soc@acme.test,<x@y.z>", "mailto:a@acme.test\r\nBcc: x@y.z"] {
        let reply = c.post_json(Some(&key), "/v1/webhooks", &json!({"url": bad}));
        assert_eq!((reply.status, reply.error_code().as_str()), (400, "url_not_allowed"), "{bad}: {}", reply.text());
    }
    let created = c.post_json(Some(&key), "/v1/webhooks", &json!({"url": "mailto:soc@acme.test,cso@acme.test"}));
    assert_eq!(created.status, 201, "{}", created.text());
    let endpoint = created.json()["id"].as_str().unwrap().to_string();

    brute_force(c, &key, "mallory");
    let messages = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(messages.len(), 1, "one e-mail after two temporary refusals");
    let message = &messages[0];
    assert_eq!(message["mail_from"], "alerts@veritrail.test");
    assert_eq!(message["rcpt_tos"], json!(["soc@acme.test", "cso@acme.test"]));
    assert_eq!(message["tls"], true, "sent only after STARTTLS");
    assert_eq!(message["auth"], USER);
    let (head, body) = body_of(message);
    assert!(head.contains("Subject: [Veritrail] high alert raised: brute_force"), "{head}");
    assert!(head.contains("To: soc@acme.test, cso@acme.test"), "{head}");
    assert!(body.contains("Rule:      brute_force") && body.contains(&tenant), "{body}");
    assert!(body.contains("mallory-0"), "the alert's events are named: {body}");

    let list = deliveries(c, &key, &endpoint, |list| list.iter().any(|d| d["status"] == "delivered"));
    let delivery = list.iter().find(|d| d["type"] == "alert.raised").unwrap();
    assert_eq!(delivery["status"], "delivered", "{list:?}");
    assert_eq!(delivery["attempts"], 3, "two refusals, then accepted: {delivery}");
    assert_eq!(delivery["last_status"], 250);
    let id = delivery["id"].as_str().unwrap();
    assert!(head.contains(&format!("Message-ID: <{id}@veritrail.invalid>")), "one id per delivery: {head}");

    // Acknowledging the alert mails again (alert.* by default).
    let alert =
        c.get(Some(&key), "/v1/alerts?rule=brute_force").json()["alerts"][0]["id"].as_str().unwrap().to_string();
    let ack = c.post_json(Some(&key), &format!("/v1/alerts/{alert}/acknowledge"), &json!({"note": "on it"}));
    assert_eq!(ack.status, 200, "{}", ack.text());
    let messages = sink.wait_for(2, Duration::from_secs(10));
    assert_eq!(messages.len(), 2);
    assert!(body_of(&messages[1]).0.contains("alert acknowledged: brute_force"), "{}", body_of(&messages[1]).0);
}

#[test]
fn relays_that_cannot_protect_the_connection_are_refused_and_mail_needs_a_relay() {
    // A relay without STARTTLS behind an smtp:// URL: nothing is sent, the log says why.
    let plain = SmtpSink::start(&SmtpSinkOptions::default());
    let smtp = SmtpConfig::parse(&format!("smtp://127.0.0.1:{}", plain.port), "alerts@veritrail.test", None).unwrap();
    let server = TestServer::start_with(config(Some(smtp), None));
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    let created = c.post_json(Some(&key), "/v1/webhooks", &json!({"url": "mailto:soc@acme.test"}));
    assert_eq!(created.status, 201, "{}", created.text());
    let endpoint = created.json()["id"].as_str().unwrap().to_string();
    brute_force(c, &key, "mallory");
    let list = deliveries(c, &key, &endpoint, |list| list.iter().any(|d| d["attempts"].as_u64() >= Some(2)));
    let delivery = &list[0];
    assert_ne!(delivery["status"], "delivered", "{delivery}");
    assert!(delivery["last_error"].as_str().unwrap_or_default().contains("STARTTLS"), "{delivery}");
    assert!(plain.messages().is_empty(), "nothing crossed in clear");

    // smtp+plain:// is the explicit choice of a local relay: sent, without TLS.
    let smtp = SmtpConfig::parse(&format!("smtp+plain://127.0.0.1:{}", plain.port), "alerts@veritrail.test", None);
    let server = TestServer::start_with(config(Some(smtp.unwrap()), None));
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    assert_eq!(c.post_json(Some(&key), "/v1/webhooks", &json!({"url": "mailto:soc@acme.test"})).status, 201);
    brute_force(c, &key, "mallory");
    let messages = plain.wait_for(1, Duration::from_secs(10));
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["tls"], false);

    // Without a relay, mailto: endpoints are refused with the reason.
    let server = TestServer::start_with(config(None, None));
    let c = &server.client;
    let (_, key) = c.create_tenant("acme");
    let reply = c.post_json(Some(&key), "/v1/webhooks", &json!({"url": "mailto:soc@acme.test"}));
    assert_eq!((reply.status, reply.error_code().as_str()), (400, "url_not_allowed"));
    assert!(reply.text().contains("smtp_url"), "{}", reply.text());
}
