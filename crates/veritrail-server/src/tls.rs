//! HTTPS for `veritrail serve --tls-cert/--tls-key`: the server's certificate chain and private
//! key, loaded once at start ([`TlsIdentity`]), and a listener that hands the server finished
//! TLS streams ([`TlsListener`]). rustls with the ring provider; TLS 1.2 and 1.3; ALPN
//! `http/1.1`; no client certificates.
//!
//! One client never holds up another: TCP connections are accepted by a background task, each
//! handshake runs in a task of its own within [`HANDSHAKE_TIMEOUT`], and only finished streams
//! reach the server's accept loop, over a bounded channel. A failed or timed-out handshake is
//! logged at debug level and dropped.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::task::AbortOnDropHandle;

/// How long a client may take from its TCP connection to the end of its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes under way at once; beyond, new connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 1024;
/// Finished streams waiting for the server to take them.
const READY_STREAMS: usize = 64;

/// Why a certificate chain and key cannot be served. Messages are lowercase, on one line.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is not PEM or holds no certificate.
    #[error("tls certificate file: {0}")]
    Certificate(String),
    /// The key file is not PEM or holds no private key.
    #[error("tls key file: {0}")]
    Key(String),
    /// The key does not belong to the certificate, or rustls cannot use them.
    #[error("tls certificate and key: {0}")]
    Unusable(String),
}

/// The server's certificate chain and private key, ready to serve HTTPS with.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    config: Arc<rustls::ServerConfig>,
}

impl TlsIdentity {
    /// Loads a PEM certificate chain (the server's certificate first, then any intermediates)
    /// and a PEM private key (PKCS#8 `PRIVATE KEY`, `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`);
    /// fails when either is unreadable or the key does not belong to the first certificate.
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<TlsIdentity, TlsError> {
        let mut chain = Vec::new();
        for cert in CertificateDer::pem_slice_iter(cert_chain_pem) {
            chain.push(cert.map_err(|e| TlsError::Certificate(format!("not valid pem: {e}")))?);
        }
        if chain.is_empty() {
            return Err(TlsError::Certificate("holds no CERTIFICATE".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| match error {
            pem::Error::NoItemsFound => TlsError::Key("holds no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY".into()),
            other => TlsError::Key(format!("not valid pem: {other}")),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions() // TLS 1.3 and 1.2
            .map_err(|e| TlsError::Unusable(format!("cannot set up tls: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|error| match error {
                rustls::Error::InconsistentKeys(_) => {
                    TlsError::Unusable("the private key does not belong to the (first) certificate".into())
                }
                other => TlsError::Unusable(other.to_string()),
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsIdentity { config: Arc::new(config) })
    }
}

/// Where [`serve`](crate::serve) takes connections from: plain TCP, or TLS over TCP.
pub enum Listener {
    /// Plain HTTP.
    Tcp(TcpListener),
    /// HTTPS.
    Tls(TlsListener),
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Listener {
        Listener::Tcp(listener)
    }
}

impl From<TlsListener> for Listener {
    fn from(listener: TlsListener) -> Listener {
        Listener::Tls(listener)
    }
}

impl Listener {
    /// Runs `axum::serve` on this listener with the client's address as connection info, until
    /// `stop` completes; then waits for the connections' requests to finish.
    pub(crate) async fn serve<F>(self, app: axum::Router, stop: F) -> io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        match self {
            Listener::Tcp(tcp) => axum::serve(tcp, app).with_graceful_shutdown(stop).await,
            // axum defines the connection info of a tapped listener (not of any listener).
            Listener::Tls(tls) => axum::serve(tls.tap_io(untouched), app).with_graceful_shutdown(stop).await,
        }
    }
}

fn untouched(_: &mut TlsStream<TcpStream>) {}

/// An [`axum::serve::Listener`] yielding TLS streams whose handshake is complete (see the
/// module documentation). Dropping it closes the port and abandons handshakes under way.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    _acceptor: AbortOnDropHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp` (within a tokio runtime) with `identity`.
    pub fn new(tcp: TcpListener, identity: &TlsIdentity) -> io::Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_STREAMS);
        let acceptor = TlsAcceptor::from(identity.config.clone());
        let task = tokio::spawn(accept_loop(tcp, acceptor, sender));
        Ok(TlsListener { local_addr, ready, _acceptor: AbortOnDropHandle::new(task) })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            None => {
                // Only a panic of the accept loop gets here: nothing will ever be accepted again.
                tracing::error!("the tls accept loop stopped");
                std::future::pending().await
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

/// Accepts TCP connections and starts their handshakes until the listener is dropped (its
/// handshakes under way are aborted with the `JoinSet`).
async fn accept_loop(tcp: TcpListener, acceptor: TlsAcceptor, ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>) {
    let mut handshakes = JoinSet::new();
    loop {
        while handshakes.try_join_next().is_some() {}
        if handshakes.len() >= MAX_HANDSHAKES {
            handshakes.join_next().await;
            continue;
        }
        let (stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            _ = handshakes.join_next(), if !handshakes.is_empty() => continue,
            () = ready.closed() => return,
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                // Fails only when the server stopped taking connections: the stream is dropped.
                Ok(Ok(tls)) => drop(ready.send((tls, peer)).await),
                Ok(Err(error)) => tracing::debug!(%peer, %error, "tls handshake failed"),
                Err(_) => tracing::debug!(%peer, "tls handshake timed out after {HANDSHAKE_TIMEOUT:?}"),
            }
        });
    }
}

/// Like axum's TCP listener: a connection that failed before it was accepted is skipped; any
/// other error (out of file descriptors) is logged and accepting pauses for a second.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
