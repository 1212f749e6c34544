//! A local RFC 3161 Time-Stamp Authority for tests: a throw-away CA and TSA certificate made with
//! the `openssl` command line, and a small HTTP(S) responder that pipes each request body through
//! `openssl ts -reply`. Tests using it fail (never skip) when `openssl` is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use veritrail_server::TlsIdentity;

use crate::tls::{ServerThread, TestPki};

const CONFIG: &str = r#"
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused

[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ tsa_ext ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = .
serial = $dir/tsaserial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/ca.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"#;

/// Runs `openssl <command>` (split on spaces, then `more` as they are) in `dir`: its stdout, or
/// what went wrong.
pub(crate) fn openssl(dir: &Path, command: &str, more: &[&str]) -> Result<Vec<u8>, String> {
    let mut args: Vec<&str> = command.split_whitespace().collect();
    args.extend_from_slice(more);
    let output = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("these tests need the `openssl` command line tool (apt-get install openssl): {e}"))?;
    if !output.status.success() {
        return Err(format!("openssl {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr)));
    }
    Ok(output.stdout)
}

/// A CA (`ca.pem`) and an RSA TSA certificate it issued (`tsa.pem`, critical extendedKeyUsage
/// timeStamping), with an `openssl ts` configuration using them, in a temporary directory.
pub struct OpensslTsa {
    dir: tempfile::TempDir,
    /// `openssl ts -reply` updates a serial file: one answer at a time.
    replying: Mutex<()>,
}

impl OpensslTsa {
    /// Makes the CA and TSA certificate (panics, naming the problem, if openssl fails).
    pub fn new() -> OpensslTsa {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        std::fs::write(path.join("openssl.cnf"), CONFIG).unwrap();
        std::fs::write(path.join("tsaserial"), "01\n").unwrap();
        let run = |command: &str, more: &[&str]| openssl(path, command, more).unwrap_or_else(|e| panic!("{e}"));
        for key in ["ca.key", "tsa.key"] {
            run(&format!("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out {key}"), &[]);
        }
        let ca = "req -config openssl.cnf -new -x509 -key ca.key -out ca.pem -days 3650 -extensions ca_ext -sha256";
        run(&format!("{ca} -subj"), &["/O=Veritrail Test/CN=Test Root CA"]);
        run("req -config openssl.cnf -new -key tsa.key -out tsa.csr -subj", &["/O=Veritrail Test/CN=Test TSA"]);
        let tsa = "x509 -req -in tsa.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
                   -extfile openssl.cnf -extensions tsa_ext -out tsa.pem";
        run(tsa, &[]);
        OpensslTsa { dir, replying: Mutex::new(()) }
    }

    /// The CA certificate file (PEM), for `tsa_ca_file` / `verify --tsa-ca`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The directory holding the PKI (to run `openssl ts -verify` in).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `openssl ts -reply` to a DER `TimeStampReq`: a DER `TimeStampResp`.
    pub fn reply(&self, query: &[u8]) -> Result<Vec<u8>, String> {
        let _one_at_a_time = self.replying.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.dir.path();
        std::fs::write(path.join("query.tsq"), query).map_err(|e| e.to_string())?;
        openssl(path, "ts -reply -config openssl.cnf -queryfile query.tsq -out reply.tsr", &[])?;
        std::fs::read(path.join("reply.tsr")).map_err(|e| e.to_string())
    }

    /// `openssl ts -verify` of a DER `TimeStampResp` against the exact `data` it time-stamps and
    /// the CA: OpenSSL's own verdict, independent of Veritrail's.
    pub fn openssl_verify(&self, response: &[u8], data: &[u8]) -> Result<(), String> {
        let _one_at_a_time = self.replying.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.dir.path();
        std::fs::write(path.join("check.tsr"), response).map_err(|e| e.to_string())?;
        std::fs::write(path.join("check.data"), data).map_err(|e| e.to_string())?;
        openssl(path, "ts -verify -in check.tsr -data check.data -CAfile ca.pem", &[]).map(|_| ())
    }
}

impl Default for OpensslTsa {
    fn default() -> Self {
        OpensslTsa::new()
    }
}

struct ResponderState {
    tsa: Arc<OpensslTsa>,
    requests: AtomicU64,
    fail_next: AtomicU64,
}

/// A TSA on a loopback port: `POST /tsa` with `Content-Type: application/timestamp-query`
/// answers `application/timestamp-reply` from [`OpensslTsa::reply`]; other content types get
/// 415; [`TsaResponder::fail_next`] makes the next requests fail with 503.
pub struct TsaResponder {
    /// `http://127.0.0.1:<port>/tsa`, or `https://` for [`TsaResponder::start_https`].
    pub url: String,
    state: Arc<ResponderState>,
    _server: ServerThread,
}

impl TsaResponder {
    /// Starts the responder over HTTP on its own runtime thread.
    pub fn start(tsa: Arc<OpensslTsa>) -> TsaResponder {
        TsaResponder::start_on(tsa, None)
    }

    /// Starts the responder over HTTPS, with `pki`'s server certificate (for `127.0.0.1`).
    pub fn start_https(tsa: Arc<OpensslTsa>, pki: &TestPki) -> TsaResponder {
        TsaResponder::start_on(tsa, Some(pki.identity()))
    }

    fn start_on(tsa: Arc<OpensslTsa>, tls: Option<TlsIdentity>) -> TsaResponder {
        let state = Arc::new(ResponderState { tsa, requests: AtomicU64::new(0), fail_next: AtomicU64::new(0) });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let app = Router::new().route("/tsa", post(answer)).with_state(state.clone());
        let server = ServerThread::start(app, tls);
        TsaResponder { url: format!("{scheme}://{}/tsa", server.addr), state, _server: server }
    }

    /// Requests received so far (failed ones included).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The next `count` requests are answered 503.
    pub fn fail_next(&self, count: u64) {
        self.state.fail_next.store(count, Ordering::SeqCst);
    }
}

async fn answer(State(state): State<Arc<ResponderState>>, headers: HeaderMap, body: Bytes) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) != Some("application/timestamp-query") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected application/timestamp-query").into_response();
    }
    let failing = state.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if failing {
        return (StatusCode::SERVICE_UNAVAILABLE, "failing on purpose").into_response();
    }
    let tsa = state.tsa.clone();
    match tokio::task::spawn_blocking(move || tsa.reply(&body)).await {
        Ok(Ok(reply)) => {
            let mut response = reply.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/timestamp-reply"));
            response
        }
        Ok(Err(error)) => (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}
