//! E-mail notifications: a notification endpoint whose URL is `mailto:a@x,b@y` gets each alert
//! message as an e-mail, sent through the operator's SMTP relay with the same outbox, retries,
//! dead letters and delivery log as webhooks (see `webhooks.rs`).
//!
//! The client is a small SMTP submission client (RFC 5321, RFC 3207 STARTTLS, RFC 4954 AUTH
//! PLAIN) on tokio and rustls (ring), written here rather than pulled in as a mail framework:
//!
//! - `smtps://host[:465]`: TLS from the first byte; `smtp://host[:587]`: STARTTLS, required —
//!   a relay that does not offer it is refused, so alerts never cross the network in clear;
//!   `smtp+plain://host[:25]`: no TLS at all, for a relay on the same host or network, and then
//!   no credentials are sent.
//! - Certificates are checked against the system's CA certificates plus `outbound_ca_file`.
//! - The relay is the operator's choice (configuration, not the API), so no address guard
//!   applies to it; recipients are validated when the endpoint is created.
//! - One connection per message, a total timeout per attempt; any refusal (a recipient, the
//!   sender, the data) fails the attempt, which is retried like a webhook's.
//! - The message: `text/plain; charset=utf-8`, base64 body (any content, no line-length
//!   limits), RFC 2047 subject, `Message-ID` derived from the delivery's id so that every retry
//!   of one delivery is the same message to the receiving side.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::http_client;

/// Most recipients of one endpoint.
pub(crate) const MAX_RECIPIENTS: usize = 10;
/// Longest address (RFC 5321 path limit).
const MAX_ADDRESS_CHARS: usize = 254;
/// Longest reply line read from a relay.
const MAX_REPLY_LINE: usize = 4096;
/// Most lines of one (multi-line) reply.
const MAX_REPLY_LINES: usize = 100;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// TLS from the first byte (`smtps://`).
    Implicit,
    /// STARTTLS, required (`smtp://`).
    StartTls,
    /// No TLS (`smtp+plain://`).
    Plain,
}

/// The operator's SMTP relay.
#[derive(Clone)]
pub struct SmtpConfig {
    /// Relay host name or address.
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// How the connection is protected.
    pub security: SmtpSecurity,
    /// The envelope and header sender, `alerts@example.com`.
    pub from: String,
    /// AUTH PLAIN user and password (never over [`SmtpSecurity::Plain`]).
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("from", &self.from)
            .field("credentials", &self.credentials.as_ref().map(|(user, _)| (user, "<redacted>")))
            .finish()
    }
}

impl SmtpConfig {
    /// Parses `smtps://host[:port]`, `smtp://host[:port]` or `smtp+plain://host[:port]` and the
    /// sender address; credentials need TLS.
    pub fn parse(url: &str, from: &str, credentials: Option<(String, String)>) -> Result<SmtpConfig, String> {
        let (security, rest, default_port) = if let Some(rest) = url.strip_prefix("smtps://") {
            (SmtpSecurity::Implicit, rest, 465)
        } else if let Some(rest) = url.strip_prefix("smtp://") {
            (SmtpSecurity::StartTls, rest, 587)
        } else if let Some(rest) = url.strip_prefix("smtp+plain://") {
            (SmtpSecurity::Plain, rest, 25)
        } else {
            return Err(format!("smtp_url {url:?} must start with smtps://, smtp:// or smtp+plain://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '@', '?', '#']) || authority.contains(char::is_whitespace) {
            return Err(format!("smtp_url {url:?} must be scheme://host[:port] (credentials go in smtp_username)"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port.parse::<u16>().map_err(|_| format!("smtp_url {url:?}: {port:?} is not a port"))?;
                (host, port)
            }
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(format!("smtp_url {url:?} has no host or port"));
        }
        check_address(from).map_err(|e| format!("smtp_from: {e}"))?;
        if credentials.is_some() && security == SmtpSecurity::Plain {
            return Err("smtp_username/smtp_password are never sent without TLS: use smtps:// or smtp://".into());
        }
        Ok(SmtpConfig { host: host.to_string(), port, security, from: from.to_string(), credentials })
    }
}

/// Checks one address: `local@domain`, printable ASCII, no spaces, brackets, commas or quotes.
pub(crate) fn check_address(address: &str) -> Result<(), String> {
    let valid = address.len() <= MAX_ADDRESS_CHARS
        && address.bytes().all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:\"".contains(&b))
        && address.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !domain.starts_with('.')
        });
    if valid { Ok(()) } else { Err(format!("{address:?} is not an e-mail address (local@domain)")) }
}

/// The recipients of a `mailto:` endpoint URL: 1 to [`MAX_RECIPIENTS`] distinct valid addresses,
/// comma-separated; `None` when `url` is not a `mailto:` URL.
pub(crate) fn recipients(url: &str) -> Option<Result<Vec<String>, String>> {
    let list = url.strip_prefix("mailto:")?;
    let mut out: Vec<String> = Vec::new();
    for address in list.split(',') {
        if let Err(error) = check_address(address) {
            return Some(Err(error));
        }
        if !out.iter().any(|a| a.eq_ignore_ascii_case(address)) {
            out.push(address.to_string());
        }
    }
    if out.len() > MAX_RECIPIENTS {
        return Some(Err(format!("at most {MAX_RECIPIENTS} recipients")));
    }
    Some(Ok(out))
}

/// Why an attempt failed (one line, for the delivery log).
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// No SMTP relay is configured.
    #[error("no SMTP relay is configured (smtp_url)")]
    NotConfigured,
    /// Connection, TLS or I/O failure.
    #[error("{0}")]
    Transport(String),
    /// The relay refused a command: its code and text.
    #[error("the relay refused {command}: {code} {text}")]
    Refused {
        /// What was sent (`MAIL FROM`, `RCPT TO <x>`, `DATA`, ...).
        command: String,
        /// The reply code.
        code: u16,
        /// The reply text.
        text: String,
    },
    /// The relay spoke something that is not SMTP.
    #[error("the relay's answer is not SMTP: {0}")]
    Protocol(String),
    /// No complete exchange within the attempt's timeout.
    #[error("no complete exchange with the relay within {0:?}")]
    Timeout(Duration),
}

/// Sends e-mails through the configured relay.
pub(crate) struct Mailer {
    config: SmtpConfig,
    tls: TlsConnector,
    /// The name this client gives in EHLO.
    client_name: String,
}

impl Mailer {
    /// A mailer for `config`, trusting the system's CAs plus `extra_ca_pem`.
    pub(crate) fn new(config: SmtpConfig, extra_ca_pem: Option<&[u8]>) -> Result<Mailer, String> {
        let tls = http_client::tls_client_config(extra_ca_pem).map_err(|e| e.to_string())?;
        Ok(Mailer { config, tls: TlsConnector::from(Arc::new(tls)), client_name: "veritrail.invalid".into() })
    }

    /// Sends one alert message (a webhook payload) to `to`, as e-mail `message_id`.
    pub(crate) async fn send_alert(
        &self,
        to: &[String],
        message_id: &str,
        payload: &str,
        timeout: Duration,
    ) -> Result<(), SmtpError> {
        let message = compose(&self.config.from, to, message_id, payload, Timestamp::now());
        tokio::time::timeout(timeout, self.send(to, message.as_bytes()))
            .await
            .map_err(|_| SmtpError::Timeout(timeout))?
    }

    async fn send(&self, to: &[String], message: &[u8]) -> Result<(), SmtpError> {
        let config = &self.config;
        let tcp = TcpStream::connect((config.host.as_str(), config.port))
            .await
            .map_err(|e| SmtpError::Transport(format!("cannot connect to {}:{}: {e}", config.host, config.port)))?;
        let _ = tcp.set_nodelay(true);
        let mut session = match config.security {
            SmtpSecurity::Implicit => Session::new(Box::new(self.handshake(tcp).await?)),
            SmtpSecurity::StartTls | SmtpSecurity::Plain => Session::new(Box::new(tcp)),
        };
        session.expect("greeting", 220).await?;
        let mut extensions = session.command(&format!("EHLO {}", self.client_name), "EHLO", 250).await?;
        if config.security == SmtpSecurity::StartTls {
            if !extensions.iter().any(|line| line.eq_ignore_ascii_case("STARTTLS")) {
                return Err(SmtpError::Protocol("the relay does not offer STARTTLS (required by smtp://)".into()));
            }
            session.command("STARTTLS", "STARTTLS", 220).await?;
            let tcp = session.into_tcp()?;
            session = Session::new(Box::new(self.handshake(tcp).await?));
            extensions = session.command(&format!("EHLO {}", self.client_name), "EHLO", 250).await?;
        }
        if let Some((user, password)) = &config.credentials {
            let offers_plain = extensions.iter().any(|line| {
                let upper = line.to_ascii_uppercase();
                upper.starts_with("AUTH") && upper.split([' ', '=']).any(|m| m == "PLAIN")
            });
            if !offers_plain {
                return Err(SmtpError::Protocol("the relay does not offer AUTH PLAIN".into()));
            }
            let token = STANDARD.encode(format!("\0{user}\0{password}"));
            session.command(&format!("AUTH PLAIN {token}"), "AUTH PLAIN", 235).await?;
        }
        session.command(&format!("MAIL FROM:<{}>", config.from), "MAIL FROM", 250).await?;
        for address in to {
            session.command(&format!("RCPT TO:<{address}>"), &format!("RCPT TO <{address}>"), 250).await?;
        }
        session.command("DATA", "DATA", 354).await?;
        session.write(&dot_stuffed(message)).await?;
        session.command(".", "the message", 250).await?;
        // The message is accepted: a failed goodbye changes nothing.
        let _ = session.command("QUIT", "QUIT", 221).await;
        Ok(())
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SmtpError> {
        let name = ServerName::try_from(self.config.host.clone())
            .map_err(|e| SmtpError::Transport(format!("{:?} is not a valid tls server name: {e}", self.config.host)))?;
        self.tls
            .connect(name, tcp)
            .await
            .map_err(|e| SmtpError::Transport(format!("tls handshake with {} failed: {e}", self.config.host)))
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {
    /// The plain TCP stream, before any TLS.
    fn into_tcp(self: Box<Self>) -> Option<TcpStream>;
}

impl Io for TcpStream {
    fn into_tcp(self: Box<Self>) -> Option<TcpStream> {
        Some(*self)
    }
}

impl Io for tokio_rustls::client::TlsStream<TcpStream> {
    fn into_tcp(self: Box<Self>) -> Option<TcpStream> {
        None
    }
}

/// One SMTP conversation.
struct Session {
    stream: BufReader<Box<dyn Io>>,
}

impl Session {
    fn new(stream: Box<dyn Io>) -> Session {
        Session { stream: BufReader::new(stream) }
    }

    fn into_tcp(self) -> Result<TcpStream, SmtpError> {
        if !self.stream.buffer().is_empty() {
            return Err(SmtpError::Protocol("the relay sent data before the tls handshake".into()));
        }
        self.stream.into_inner().into_tcp().ok_or_else(|| SmtpError::Protocol("STARTTLS inside tls".into()))
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SmtpError> {
        let stream = self.stream.get_mut();
        stream.write_all(bytes).await.map_err(|e| SmtpError::Transport(format!("writing to the relay failed: {e}")))?;
        stream.flush().await.map_err(|e| SmtpError::Transport(format!("writing to the relay failed: {e}")))
    }

    /// Sends `line` and expects reply `code`: the reply's lines (after the code).
    async fn command(&mut self, line: &str, what: &str, code: u16) -> Result<Vec<String>, SmtpError> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.expect(what, code).await
    }

    /// Reads one reply and checks its code.
    async fn expect(&mut self, what: &str, expected: u16) -> Result<Vec<String>, SmtpError> {
        let (code, lines) = self.reply().await?;
        if code != expected {
            return Err(SmtpError::Refused { command: what.to_string(), code, text: lines.join(" ") });
        }
        Ok(lines)
    }

    /// One reply: `ddd-text` lines ending with a `ddd text` line.
    async fn reply(&mut self) -> Result<(u16, Vec<String>), SmtpError> {
        let mut lines = Vec::new();
        loop {
            let mut raw = Vec::new();
            let read = (&mut self.stream)
                .take(MAX_REPLY_LINE as u64)
                .read_until(b'\n', &mut raw)
                .await
                .map_err(|e| SmtpError::Transport(format!("reading from the relay failed: {e}")))?;
            if read == 0 {
                return Err(SmtpError::Transport("the relay closed the connection".into()));
            }
            if !raw.ends_with(b"\n") {
                return Err(SmtpError::Protocol(format!("a reply line longer than {MAX_REPLY_LINE} bytes")));
            }
            let text = String::from_utf8_lossy(&raw);
            let text = text.trim_end_matches(['\r', '\n']);
            let code = text.get(..3).and_then(|c| c.parse::<u16>().ok()).filter(|c| (200..600).contains(c));
            let Some(code) = code else {
                return Err(SmtpError::Protocol(format!("{:?}", text.chars().take(80).collect::<String>())));
            };
            lines.push(text.get(4..).unwrap_or_default().to_string());
            match text.as_bytes().get(3) {
                Some(b'-') if lines.len() < MAX_REPLY_LINES => continue,
                Some(b'-') => return Err(SmtpError::Protocol(format!("a reply of more than {MAX_REPLY_LINES} lines"))),
                _ => return Ok((code, lines)),
            }
        }
    }
}

/// `message` with every line starting with `.` given another, ending with CRLF (RFC 5321
/// 4.5.2); the terminating `.` line is sent as a command.
fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut at_line_start = true;
    for &byte in message {
        if at_line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        at_line_start = byte == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A header value with anything that could end the header (CR, LF) or confuse it removed, and
/// RFC 2047-encoded when it is not plain ASCII.
fn header_text(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
    if clean.is_ascii() { clean } else { format!("=?UTF-8?B?{}?=", STANDARD.encode(clean.as_bytes())) }
}

/// The e-mail for an alert message: headers, and a base64 `text/plain` body with the summary and
/// the exact payload.
pub(crate) fn compose(from: &str, to: &[String], message_id: &str, payload: &str, now: Timestamp) -> String {
    let parsed: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let data = &parsed["data"];
    let text = |value: &Value| value.as_str().unwrap_or("?").to_string();
    let kind = match parsed["type"].as_str() {
        Some("alert.acknowledged") => "acknowledged",
        Some("alert.resolved") => "resolved",
        _ => "raised",
    };
    let subject = format!(
        "[Veritrail] {} alert {kind}: {} - {}",
        text(&data["severity"]),
        text(&data["rule"]),
        text(&data["summary"])
    );
    let mut body = format!(
        "Alert {kind}\n\nRule:      {}\nSeverity:  {}\nStatus:    {}\nSummary:   {}\nTenant:    {}\nAlert id:  {}\nFired at:  {}\nEvents:    {}\n",
        text(&data["rule"]),
        text(&data["severity"]),
        text(&data["status"]),
        text(&data["summary"]),
        text(&data["tenant"]),
        text(&data["id"]),
        text(&data["fired_at"]),
        data["event_ids"].as_array().map(|ids| ids.iter().map(text).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
    );
    body.push_str("\nThe message as webhooks receive it:\n\n");
    body.push_str(&serde_json::to_string_pretty(&parsed).unwrap_or_else(|_| payload.to_string()));
    body.push('\n');
    let encoded = STANDARD.encode(body.as_bytes());
    let mut lines = Vec::new();
    lines.push(format!("From: Veritrail <{from}>"));
    lines.push(format!("To: {}", to.join(", ")));
    lines.push(format!("Subject: {}", header_text(&subject)));
    lines.push(format!("Date: {}", now.strftime("%a, %d %b %Y %H:%M:%S +0000")));
    let id: String = message_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    lines.push(format!("Message-ID: <{id}@veritrail.invalid>"));
    lines.push(format!("X-Veritrail-Message-Id: {id}"));
    lines.push("Auto-Submitted: auto-generated".into());
    lines.push("MIME-Version: 1.0".into());
    lines.push("Content-Type: text/plain; charset=utf-8".into());
    lines.push("Content-Transfer-Encoding: base64".into());
    lines.push(String::new());
    for chunk in encoded.as_bytes().chunks(76) {
        lines.push(String::from_utf8_lossy(chunk).into_owned());
    }
    let mut message = lines.join("\r\n");
    message.push_str("\r\n");
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_are_parsed_strictly() {
        let parse = |url: &str| SmtpConfig::parse(url, "alerts@acme.test", None);
        let ok = parse("smtps://mail.acme.test").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((ok.host.as_str(), ok.port, ok.security), ("mail.acme.test", 465, SmtpSecurity::Implicit));
        let ok = parse("smtp://mail.acme.test:2525/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((ok.port, ok.security), (2525, SmtpSecurity::StartTls));
        let ok = parse("smtp+plain://127.0.0.1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((ok.host.as_str(), ok.port, ok.security), ("127.0.0.1", 25, SmtpSecurity::Plain));
        let ok = parse("smtp+plain://[::1]:26").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((ok.host.as_str(), ok.port), ("::1", 26));
        for bad in ["http://x", "smtp://", "smtp://u:p@host", "smtp://host:99999", "smtp://host/path", "smtp://a b"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(SmtpConfig::parse("smtp://h", "not an address", None).is_err());
        let creds = Some(("u".to_string(), "p".to_string()));
        assert!(SmtpConfig::parse("smtp+plain://h", "a@b.c", creds.clone()).is_err(), "no password in clear");
        let debug = format!("{:?}", SmtpConfig::parse("smtp://h", "a@b.c", creds).unwrap_or_else(|e| panic!("{e}")));
        assert!(!debug.contains("\"p\""), "{debug}");
    }

    #[test]
    fn mailto_recipients_are_validated() {
        assert_eq!(recipients("https://x"), None);
        let list = recipients("mailto:a@acme.test,B@acme.test,b@acme.test").and_then(Result::ok);
        assert_eq!(list, Some(vec!["a@acme.test".to_string(), "B@acme.test".to_string()]));
        for bad in [
            "mailto:",
            "mailto:nobody",
            "mailto:a@b.c,",
            "mailto:a@b.c\r\nRCPT TO:<x@y.z>",
            "mailto:<a@b.c>",
            "mailto:a b@c.d",
            "mailto:a@@b.c",
        ] {
            assert!(matches!(recipients(bad), Some(Err(_))), "{bad:?}");
        }
        let many: Vec<String> = (0..=MAX_RECIPIENTS).map(|i| format!("u{i}@acme.test")).collect();
        assert!(matches!(recipients(&format!("mailto:{}", many.join(","))), Some(Err(_))));
    }

    #[test]
    fn lines_starting_with_a_dot_are_stuffed() {
        assert_eq!(dot_stuffed(b".a\r\nb\r\n.\r\n..c"), b"..a\r\nb\r\n..\r\n...c\r\n".to_vec());
    }

    #[test]
    fn messages_carry_the_alert_and_no_header_injection() {
        let payload = serde_json::json!({"type": "alert.raised", "timestamp": "t", "data": {
            "id": "alr_1", "rule": "brute_force", "severity": "high", "status": "open", "tenant": "tn_1",
            "summary": "5 failed logins\r\nBcc: victim@evil.test für alice", "event_ids": ["e1", "e2"], "fired_at": "t"}});
        let message = compose(
            "alerts@acme.test",
            &["soc@acme.test".into()],
            "msg_abc",
            &payload.to_string(),
            Timestamp::UNIX_EPOCH,
        );
        let (head, body) = message.split_once("\r\n\r\n").unwrap_or_default();
        assert!(!head.contains("\nBcc:"), "{head}");
        assert!(head.contains("Subject: =?UTF-8?B?"), "{head}");
        assert!(head.contains("Message-ID: <msg_abc@veritrail.invalid>"), "{head}");
        let decoded = STANDARD.decode(body.replace("\r\n", "")).unwrap_or_default();
        let text = String::from_utf8(decoded).unwrap_or_default();
        assert!(text.contains("Rule:      brute_force") && text.contains("e1, e2"), "{text}");
        assert!(message.lines().all(|line| line.len() <= 998), "SMTP line limit");
    }
}
