//! The HTTP(S) client of every request Veritrail sends to a URL someone else chose (webhooks, an
//! identity provider's key set) or the operator configured (the RFC 3161 TSA): hyper-util's
//! legacy client over rustls, behind an SSRF guard.
//!
//! - **TLS:** `https://` URLs are verified against the system's CA certificates (read once from
//!   the OS store: `/etc/ssl/certs` on Debian, or `SSL_CERT_FILE`/`SSL_CERT_DIR`) plus an
//!   optional extra PEM bundle (`outbound_ca_file`, for a private PKI). rustls with the ring
//!   provider only; TLS 1.2 and 1.3.
//! - **SSRF guard:** every address a connection goes to is checked with
//!   [`address_allowed`]: address literals before connecting, host names after resolution, all
//!   of their addresses (a name mixing public and private addresses is refused whole, as a
//!   rebinding attempt). The connection then goes to a checked address, never through a second
//!   lookup. Loopback, private, link-local (cloud metadata), CGNAT and reserved ranges pass only
//!   with `allow_private`.
//! - **No redirects** are followed, URLs with credentials are refused, every request has a total
//!   timeout (connection, TLS handshake and the bounded answer included).

use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The `User-Agent` of requests that do not set their own.
const USER_AGENT: &str = concat!("Veritrail/", env!("CARGO_PKG_VERSION"));

/// How an [`HttpClient`] connects.
#[derive(Debug, Clone)]
pub struct HttpClientConfig {
    /// Longest wait for a TCP connection to one address (default 10 s).
    pub connect_timeout: Duration,
    /// Let requests reach loopback, private, link-local and cloud-metadata addresses (default
    /// false).
    pub allow_private: bool,
    /// PEM CA certificates trusted besides the system's (default none).
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        HttpClientConfig { connect_timeout: Duration::from_secs(10), allow_private: false, extra_ca_pem: None }
    }
}

/// Why a request (or building a client) failed. Messages are lowercase, on one line, fit for a
/// delivery log.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    /// The URL is not `http(s)://host[:port][/path]` without credentials.
    #[error("{0}")]
    InvalidUrl(String),
    /// The host is, or resolves to, an address the SSRF guard refuses.
    #[error("{0}")]
    Refused(String),
    /// The TLS handshake failed (untrusted or expired certificate, wrong name, no common
    /// protocol).
    #[error("{0}")]
    Tls(String),
    /// Name resolution, connection or HTTP failed.
    #[error("{0}")]
    Transport(String),
    /// No complete answer within the request's timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer's body is larger than the request allowed.
    #[error("the answer (HTTP {status}) is larger than {max_bytes} bytes")]
    TooLarge {
        /// The answer's status.
        status: StatusCode,
        /// The limit.
        max_bytes: usize,
    },
    /// The extra CA certificates cannot be used.
    #[error("{0}")]
    Config(String),
}

/// A guarded HTTP/1.1 client for `http://` and `https://` URLs; cheap to share (`Arc`), it
/// keeps idle connections for reuse.
pub struct HttpClient {
    client: Client<HttpsConnector<GuardedConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// A client trusting the system's CA certificates and `config.extra_ca_pem`; fails when the
    /// extra PEM holds no usable certificate.
    pub fn new(config: &HttpClientConfig) -> Result<HttpClient, HttpClientError> {
        let tls = tls_client_config(config.extra_ca_pem.as_deref())?;
        let mut http = HttpConnector::new_with_resolver(GuardedResolver { allow_private: config.allow_private });
        http.enforce_http(false); // https URLs pass through it to the TLS layer
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        let guarded = GuardedConnector { http, allow_private: config.allow_private };
        let connector =
            HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(guarded);
        Ok(HttpClient { client: Client::builder(TokioExecutor::new()).build(connector) })
    }

    /// GET `url`: the status and a body of at most `max_bytes`, all within `timeout`.
    pub async fn get(
        &self,
        url: &str,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), HttpClientError> {
        self.send(Method::GET, url, HeaderMap::new(), Bytes::new(), max_bytes, timeout).await
    }

    /// POST `body` with `headers` to `url`: the status and a body of at most `max_bytes`, all
    /// within `timeout`.
    pub async fn post(
        &self,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), HttpClientError> {
        self.send(Method::POST, url, headers, body, max_bytes, timeout).await
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), HttpClientError> {
        let uri = parse_url(url)?;
        let host = host_of(&uri).unwrap_or_default().to_string();
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|e| HttpClientError::InvalidUrl(format!("cannot build the request: {e}")))?;
        request.headers_mut().extend(headers);
        if !request.headers().contains_key(header::USER_AGENT) {
            request.headers_mut().insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        }
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| classify(&e, &host))?;
            let status = response.status();
            match Limited::new(response.into_body(), max_bytes).collect().await {
                Ok(collected) => Ok((status, collected.to_bytes())),
                Err(error) if error.is::<LengthLimitError>() => Err(HttpClientError::TooLarge { status, max_bytes }),
                Err(error) => {
                    Err(HttpClientError::Transport(format!("reading the answer failed: {}", describe(&*error))))
                }
            }
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| HttpClientError::Timeout(timeout))?
    }
}

/// Checks `text` is `http(s)://host[:port][/path]` without credentials.
fn parse_url(text: &str) -> Result<Uri, HttpClientError> {
    let uri: Uri =
        text.parse().map_err(|e| HttpClientError::InvalidUrl(format!("{text:?} is not a valid url: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(HttpClientError::InvalidUrl("url must start with http:// or https://".into()));
    }
    let authority = uri.authority().ok_or_else(|| HttpClientError::InvalidUrl("url has no host".into()))?;
    if authority.as_str().contains('@') {
        return Err(HttpClientError::InvalidUrl("url must not carry credentials (user:password@)".into()));
    }
    Ok(uri)
}

/// The host of `uri` without IPv6 brackets.
pub(crate) fn host_of(uri: &Uri) -> Option<&str> {
    let host = uri.host()?;
    Some(host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host))
}

/// The TLS configuration of every outbound connection (HTTPS, the SMTP relay): ring, TLS 1.2
/// and 1.3, the server verified against [`root_store`].
pub(crate) fn tls_client_config(extra_ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, HttpClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpClientError::Config(format!("cannot set up tls: {e}")))?
        .with_root_certificates(root_store(extra_ca_pem)?)
        .with_no_client_auth())
}

/// The system's CA certificates (read once per process) and `extra_pem`'s.
fn root_store(extra_pem: Option<&[u8]>) -> Result<RootCertStore, HttpClientError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(pem) = extra_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| HttpClientError::Config(format!("the extra ca file is not valid pem: {e}")))?;
            roots.add(cert).map_err(|e| {
                HttpClientError::Config(format!("the extra ca file holds an unusable certificate: {e}"))
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(HttpClientError::Config("the extra ca file holds no CERTIFICATE".into()));
        }
    }
    if roots.is_empty() {
        tracing::warn!(
            "no ca certificates found (install ca-certificates or set outbound_ca_file); https requests will fail"
        );
    }
    Ok(roots)
}

fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "cannot read some system ca certificates");
        }
        found.certs
    })
}

/// True when a request may go to `ip`. Unspecified, multicast and broadcast addresses are
/// never allowed; loopback, private, link-local (cloud metadata at 169.254.169.254 and
/// fd00:ec2::254), CGNAT, documentation, benchmarking and reserved ranges only with
/// `allow_private`.
pub(crate) fn address_allowed(ip: IpAddr, allow_private: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_allowed(v4, allow_private),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return v4_allowed(v4, allow_private);
            }
            if v6.is_unspecified() || v6.is_multicast() {
                return false;
            }
            let segments = v6.segments();
            let special = v6.is_loopback()
                || (segments[0] & 0xffc0) == 0xfe80 // link-local
                || (segments[0] & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254 among them)
                || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
                || (segments[0] & 0xffc0) == 0xfec0; // deprecated site-local
            allow_private || !special
        }
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible or NAT64
/// (`64:ff9b::/96`) address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let segments = v6.segments();
    let tail = Ipv4Addr::new((segments[6] >> 8) as u8, segments[6] as u8, (segments[7] >> 8) as u8, segments[7] as u8);
    let nat64 = segments[0] == 0x64 && segments[1] == 0xff9b && segments[2..6].iter().all(|s| *s == 0);
    let compatible = segments[..6].iter().all(|s| *s == 0) && !v6.is_loopback() && !v6.is_unspecified();
    (nat64 || compatible).then_some(tail)
}

fn v4_allowed(v4: Ipv4Addr, allow_private: bool) -> bool {
    if v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() {
        return false;
    }
    let [a, b, c, _] = v4.octets();
    let special = v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 240; // reserved
    allow_private || !special
}

/// A destination the SSRF guard refused (found again in the error chain by [`classify`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

fn refused(host: &str, ip: IpAddr) -> Refused {
    if host == ip.to_string() {
        Refused(format!("{ip} is a loopback, private, link-local or reserved address (refused)"))
    } else {
        Refused(format!("{host} resolves to {ip}, a loopback, private, link-local or reserved address (refused)"))
    }
}

/// Name resolution for [`HttpConnector`] that refuses a name when any of its addresses is
/// refused.
#[derive(Clone)]
struct GuardedResolver {
    allow_private: bool,
}

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str();
            // The connector puts the URL's port on each address.
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host, 0)).await.map_err(|e| format!("cannot resolve {host}: {e}"))?.collect();
            if let Some(bad) = addresses.iter().find(|a| !address_allowed(a.ip(), allow_private)) {
                return Err(refused(host, bad.ip()).into());
            }
            if addresses.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            Ok(addresses.into_iter())
        })
    }
}

/// [`HttpConnector`] with the guard on address literals too (it skips the resolver for them).
#[derive(Clone)]
struct GuardedConnector {
    http: HttpConnector<GuardedResolver>,
    allow_private: bool,
}

impl tower::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let host = host_of(&uri).unwrap_or_default();
        if let Ok(ip) = host.parse::<IpAddr>()
            && !address_allowed(ip, self.allow_private)
        {
            let error: BoxError = refused(host, ip).into();
            return Box::pin(async move { Err(error) });
        }
        let connecting = self.http.call(uri);
        Box::pin(async move { connecting.await.map_err(Into::into) })
    }
}

/// Sorts a request failure into refused, TLS or transport, with its causes on one line.
fn classify(error: &(dyn StdError + 'static), host: &str) -> HttpClientError {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(refused) = current.downcast_ref::<Refused>() {
            return HttpClientError::Refused(refused.0.clone());
        }
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return HttpClientError::Tls(format!("tls handshake with {host} failed: {tls}"));
        }
        // hyper-rustls hands rustls errors over inside io::Errors (two deep), whose source()
        // skips the error they wrap: step into it instead.
        cause = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => current.source(),
        };
    }
    HttpClientError::Transport(describe(error))
}

/// An error and its causes on one line.
pub(crate) fn describe(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        text.push_str(": ");
        text.push_str(&current.to_string());
        cause = current.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(allow_private: bool) -> HttpClient {
        let config = HttpClientConfig { allow_private, ..HttpClientConfig::default() };
        HttpClient::new(&config).unwrap_or_else(|e| panic!("client: {e}"))
    }

    #[test]
    fn special_addresses_are_refused_unless_allowed() {
        let refused = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ];
        for text in refused {
            let ip: IpAddr = text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            assert!(!address_allowed(ip, false), "{text} allowed");
        }
        for text in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            let ip: IpAddr = text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            assert!(address_allowed(ip, false), "{text} refused");
        }
        for text in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1"] {
            let ip: IpAddr = text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            assert!(address_allowed(ip, true), "{text} refused although allowed");
        }
        for text in ["0.0.0.0", "224.0.0.1", "ff02::1"] {
            let ip: IpAddr = text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            assert!(!address_allowed(ip, true), "{text} never allowed");
        }
    }

    #[tokio::test]
    async fn the_guard_checks_literals_and_resolved_names_for_both_schemes() {
        let guarded = client(false);
        let second = Duration::from_secs(2);
        for url in [
            "http://127.0.0.1:9/",
            "https://127.0.0.1:9/",
            "http://[::ffff:10.0.0.1]:8080/",
            "https://169.254.169.254/latest/meta-data/",
            "http://localhost:9/hook",
            "https://localhost:9/hook",
            "http://2130706433:9/", // 127.0.0.1 as one number: only the resolver knows
        ] {
            let result = guarded.get(url, 1024, second).await;
            assert!(matches!(&result, Err(HttpClientError::Refused(m)) if m.contains("refused")), "{url}: {result:?}");
        }
        for url in ["ftp://example.com/", "http://user:pw@example.com/", "example.com", "http:///x"] {
            let result = guarded.get(url, 1024, second).await;
            assert!(matches!(result, Err(HttpClientError::InvalidUrl(_))), "{url}: {result:?}");
        }
        // Allowed, the same address is tried (nothing listens on port 9: connection refused).
        let result = client(true).get("http://localhost:9/", 1024, second).await;
        assert!(matches!(&result, Err(HttpClientError::Transport(m)) if !m.contains("(refused)")), "{result:?}");
    }

    #[test]
    fn an_extra_ca_file_must_hold_certificates() {
        let config = |pem: &[u8]| HttpClientConfig { extra_ca_pem: Some(pem.to_vec()), ..HttpClientConfig::default() };
        for pem in [&b""[..], b"not pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"] {
            let result = HttpClient::new(&config(pem));
            assert!(matches!(result, Err(HttpClientError::Config(_))), "{:?}", String::from_utf8_lossy(pem));
        }
    }
}
