//! A local SMTP relay for tests: Python's aiosmtpd (`pip install aiosmtpd`, done by `.ci/run`)
//! run as a child process from a small script written here. It can require STARTTLS (with a
//! certificate of the test PKI) and AUTH PLAIN, refuse the first messages with a temporary
//! error, and writes every accepted message as one JSON file (`envelope`, `data`, `tls`,
//! `auth`). Tests using it fail (never skip) when aiosmtpd is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SCRIPT: &str = r#"
import asyncio, json, os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, out_dir, cert, key, user, password, fail_first = sys.argv[1:8]
fail_left = [int(fail_first)]
counter = [0]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        if fail_left[0] > 0:
            fail_left[0] -= 1
            return "451 4.3.0 try again later"
        counter[0] += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "tls": session.ssl is not None,
            "auth": getattr(session, "auth_data", None),
        }
        path = os.path.join(out_dir, "%06d.json" % counter[0])
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 2.0.0 queued"

def authenticator(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password:
        return AuthResult(success=True, auth_data=user)
    return AuthResult(success=False, handled=False)

kwargs = {}
if cert != "-":
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    kwargs.update(tls_context=context, require_starttls=True)
if user != "-":
    kwargs.update(authenticator=authenticator, auth_require_tls=cert != "-", auth_required=True)
else:
    kwargs.update(auth_require_tls=False)
controller = Controller(Handler(), hostname="127.0.0.1", port=int(port), server_hostname="localhost", **kwargs)
controller.start()
print("ready", flush=True)
try:
    while True:
        time.sleep(3600)
finally:
    controller.stop()
"#;

/// How the relay behaves.
#[derive(Debug, Clone, Default)]
pub struct SmtpSinkOptions {
    /// Require STARTTLS with this certificate and key (PEM files).
    pub starttls: Option<(PathBuf, PathBuf)>,
    /// Require AUTH PLAIN/LOGIN with this user and password.
    pub credentials: Option<(String, String)>,
    /// Answer the first this many messages `451` (a temporary refusal).
    pub fail_first: u32,
}

/// The running relay; killed on drop.
pub struct SmtpSink {
    child: Child,
    dir: tempfile::TempDir,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl SmtpSink {
    /// Starts a relay on a free loopback port and waits until it accepts connections.
    pub fn start(options: &SmtpSinkOptions) -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("sink.py");
        std::fs::write(&script, SCRIPT).unwrap();
        let out = dir.path().join("messages");
        std::fs::create_dir(&out).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let (cert, key) = match &options.starttls {
            Some((cert, key)) => (path(cert), path(key)),
            None => ("-".into(), "-".into()),
        };
        let (user, password) = options.credentials.clone().unwrap_or(("-".into(), "-".into()));
        let child = Command::new("python3")
            .arg(&script)
            .args([port.to_string(), path(&out), cert, key, user, password, options.fail_first.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("the e-mail tests need python3 with aiosmtpd (pip install aiosmtpd): {e}"));
        let mut sink = SmtpSink { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = sink.child.try_wait() {
                panic!("the SMTP sink exited ({status}): is aiosmtpd installed? (pip install aiosmtpd)");
            }
            assert!(Instant::now() < deadline, "the SMTP sink did not start within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        sink
    }

    /// Every accepted message so far, oldest first.
    pub fn messages(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("messages"))
            .unwrap()
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files.iter().map(|path| serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()).collect()
    }

    /// Waits up to `within` until at least `count` messages arrived.
    pub fn wait_for(&self, count: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let messages = self.messages();
            if messages.len() >= count || Instant::now() > deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
