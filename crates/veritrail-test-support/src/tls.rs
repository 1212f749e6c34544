//! TLS fixtures: a throw-away CA and a server certificate for `localhost`, 127.0.0.1 and ::1
//! made with the `openssl` command line ([`TestPki`]), HTTPS clients trusting that CA, the
//! `veritrail` binary serving HTTPS ([`start_https_child`]), and an HTTPS server of fixed
//! documents ([`DocumentServer`], e.g. an identity provider's key set).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_util::sync::CancellationToken;
use veritrail_server::{TlsIdentity, TlsListener};

use crate::{ChildServer, Client};

/// The extensions of the CA and the server certificate (no system `openssl.cnf` involved).
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_cert]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_cert]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// A throw-away CA and a server certificate it signed for `localhost`, 127.0.0.1 and ::1
/// (P-256 keys, valid for a week), in a temporary directory that goes with it.
pub struct TestPki {
    dir: tempfile::TempDir,
    /// The CA certificate, PEM.
    pub ca_pem: Vec<u8>,
    /// The server certificate, PEM.
    pub cert_pem: Vec<u8>,
    /// The server's private key, PEM (PKCS#8 `PRIVATE KEY`).
    pub key_pem: Vec<u8>,
}

impl TestPki {
    /// Makes a new CA and server certificate with `openssl` (panics when it is missing).
    pub fn generate() -> TestPki {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("openssl.cnf"), OPENSSL_CONFIG).unwrap();
        let new_key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        let at = dir.path();
        // A name of its own: a client trusting another test CA must not mistake it for this one.
        static CAS: AtomicU32 = AtomicU32::new(0);
        let name = format!("veritrail-test-ca-{}-{}", std::process::id(), CAS.fetch_add(1, Ordering::Relaxed));
        let ca = format!("-config openssl.cnf -extensions ca_cert -subj /CN={name} -keyout ca.key -out ca.pem");
        openssl(at, &format!("req -x509 -days 7 {new_key} {ca}"));
        let request = "-config openssl.cnf -subj /CN=localhost -keyout server.key -out server.csr";
        openssl(at, &format!("req -new {new_key} {request}"));
        let signed = "-extfile openssl.cnf -extensions server_cert -out server.pem";
        openssl(at, &format!("x509 -req -days 7 -in server.csr -CA ca.pem -CAkey ca.key {signed}"));
        // The same key as SEC1 (`EC PRIVATE KEY`), the other form servers are often given.
        openssl(at, "ec -in server.key -out server-sec1.key");
        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        let (ca_pem, cert_pem, key_pem) = (read("ca.pem"), read("server.pem"), read("server.key"));
        TestPki { dir, ca_pem, cert_pem, key_pem }
    }

    /// The CA certificate's file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate's file.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server key's file (PKCS#8).
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// The server key's file in SEC1 form (`EC PRIVATE KEY`).
    pub fn sec1_key_path(&self) -> PathBuf {
        self.dir.path().join("server-sec1.key")
    }

    /// The server certificate and key, to serve with.
    pub fn identity(&self) -> TlsIdentity {
        TlsIdentity::from_pem(&self.cert_pem, &self.key_pem).unwrap()
    }

    /// A client for `base` (`https://...`) trusting this CA only.
    pub fn client(&self, base: &str) -> Client {
        let ca = ureq::tls::Certificate::from_pem(&self.ca_pem).unwrap();
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections_per_host(16)
            .tls_config(tls)
            .build();
        Client { base: base.trim_end_matches('/').to_string(), agent: config.into() }
    }
}

/// Runs `openssl` with `args` (split at spaces) in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &str) {
    crate::tsa::openssl(dir, args, &[]).unwrap_or_else(|e| panic!("{e}"));
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// What a successful [`handshake`] agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The protocol version.
    pub version: TlsVersion,
    /// The ALPN protocol the server chose, if any.
    pub alpn: Option<String>,
}

/// A bare TLS handshake with the server at `addr` as `localhost`, trusting `ca_pem` only,
/// offering `version` only and the ALPN protocols `h2` and `http/1.1`; the error on one line
/// when it fails.
pub fn handshake(addr: SocketAddr, ca_pem: &[u8], version: TlsVersion) -> Result<Negotiated, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = match version {
        TlsVersion::Tls12 => &[&rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = ServerName::try_from("localhost").unwrap();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).map_err(|e| format!("cannot connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while connection.is_handshaking() {
        connection.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    let version = match connection.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) => TlsVersion::Tls12,
        Some(rustls::ProtocolVersion::TLSv1_3) => TlsVersion::Tls13,
        other => return Err(format!("unexpected protocol version {other:?}")),
    };
    let alpn = connection.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
    Ok(Negotiated { version, alpn })
}

/// Starts `binary serve` over `data_dir` on a free loopback port, like
/// [`ChildServer::start_with`], for a server whose `args`/`envs` make it serve HTTPS with a
/// certificate `pki` issued; waits until it answers `/healthz` over HTTPS. Its client trusts
/// `pki`'s CA.
pub fn start_https_child(
    binary: &str,
    data_dir: &Path,
    pki: &TestPki,
    args: &[&str],
    envs: &[(&str, &str)],
) -> ChildServer {
    ChildServer::spawn(binary, data_dir, args, envs, |port| pki.client(&format!("https://127.0.0.1:{port}")))
}

/// An axum application served on a loopback port (over TLS with `tls`) by a runtime thread of
/// its own, until dropped.
pub(crate) struct ServerThread {
    /// The bound address.
    pub(crate) addr: SocketAddr,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    pub(crate) fn start(app: Router, tls: Option<TlsIdentity>) -> ServerThread {
        let shutdown = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let token = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            runtime.block_on(async move {
                let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready_tx.send(tcp.local_addr().unwrap()).unwrap();
                let stop = async move { token.cancelled().await };
                let served = match tls {
                    None => axum::serve(tcp, app).with_graceful_shutdown(stop).await,
                    Some(identity) => {
                        let listener = TlsListener::new(tcp, &identity).unwrap();
                        axum::serve(listener, app).with_graceful_shutdown(stop).await
                    }
                };
                served.unwrap();
            });
        });
        let addr = ready_rx.recv().expect("the test server failed to start");
        ServerThread { addr, shutdown, thread: Some(thread) }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An HTTPS server on a loopback port with a certificate of a [`TestPki`]: `GET` of one of its
/// documents answers it (200 with its content type), anything else 404.
pub struct DocumentServer {
    /// `https://localhost:<port>`.
    pub base: String,
    _server: ServerThread,
}

type Documents = Arc<HashMap<String, (String, Vec<u8>)>>;

impl DocumentServer {
    /// Serves `documents`, each `(path, content type, body)`.
    pub fn start(pki: &TestPki, documents: &[(&str, &str, &[u8])]) -> DocumentServer {
        let documents: Documents = Arc::new(
            documents
                .iter()
                .map(|(path, content_type, body)| (path.to_string(), (content_type.to_string(), body.to_vec())))
                .collect(),
        );
        let app = Router::new().fallback(document).with_state(documents);
        let server = ServerThread::start(app, Some(pki.identity()));
        DocumentServer { base: format!("https://localhost:{}", server.addr.port()), _server: server }
    }
}

async fn document(State(documents): State<Documents>, uri: Uri) -> Response {
    match documents.get(uri.path()) {
        Some((content_type, body)) => ([(header::CONTENT_TYPE, content_type.clone())], body.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
