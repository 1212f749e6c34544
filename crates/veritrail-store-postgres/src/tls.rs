//! TLS to the database: `sslmode=require` (or libpq's `verify-ca` / `verify-full`) in the
//! database URL makes every connection TLS, with the server's certificate always verified —
//! chain and host name — against the system's CA certificates plus the PEM file named by
//! `sslrootcert` (libpq's parameter, read here because tokio-postgres does not know it). Any
//! other `sslmode` (`disable`, `prefer`, none) is plain TCP, as before: a certificate that is
//! not checked would protect nothing. rustls with the ring provider only.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::TlsConnector;
use veritrail_store::{StoreError, StoreResult};

/// Splits libpq's TLS parameters out of `url` (`sslrootcert=FILE`, `sslmode=verify-ca|verify-full`,
/// which tokio-postgres does not parse): the URL without them, whether TLS is required, and the
/// extra CA file.
pub(crate) fn split_tls_params(url: &str) -> (String, bool, Option<String>) {
    let mut verify = false;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| match (key, value) {
        ("sslrootcert", file) => {
            root_cert = Some(file.to_string());
            true
        }
        ("sslmode", "verify-ca" | "verify-full") => {
            verify = true;
            true
        }
        _ => false,
    };
    let rest = if let Some((base, query)) = url.split_once('?').filter(|_| url.contains("://")) {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| pair.split_once('=').is_none_or(|(key, value)| !take(key, &percent_decode(value))))
            .collect();
        if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) }
    } else if url.contains("://") {
        url.to_string()
    } else {
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|pair| pair.split_once('=').is_none_or(|(key, value)| !take(key, value.trim_matches('\''))))
            .collect();
        kept.join(" ")
    };
    (rest, verify, root_cert)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The connector of every pool and connection: TLS when `config` requires it (any other mode is
/// set to `disable`), verified against the system's CAs and `root_cert`.
pub(crate) fn connector(
    config: &mut tokio_postgres::Config,
    require: bool,
    root_cert: Option<&str>,
) -> StoreResult<PgTls> {
    let require = require || config.get_ssl_mode() == SslMode::Require;
    if !require {
        config.ssl_mode(SslMode::Disable);
        return Ok(PgTls { connector: None });
    }
    config.ssl_mode(SslMode::Require);
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if let Some(path) = root_cert {
        let pem = std::fs::read(path).map_err(|e| StoreError::Backend(format!("sslrootcert {path}: {e}")))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| StoreError::Backend(format!("sslrootcert {path}: not valid pem: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| StoreError::Backend(format!("sslrootcert {path}: unusable certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(StoreError::Backend(format!("sslrootcert {path} holds no CERTIFICATE")));
        }
    }
    if roots.is_empty() {
        return Err(StoreError::Backend(
            "sslmode=require but no CA certificate to verify the database with (install ca-certificates or give sslrootcert)"
                .into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(format!("cannot set up tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(PgTls { connector: Some(TlsConnector::from(Arc::new(config))) })
}

/// tokio-postgres's TLS hook over tokio-rustls; without a connector it never connects with TLS
/// (the mode is `disable` then, so it is never asked to).
#[derive(Clone)]
pub(crate) struct PgTls {
    connector: Option<TlsConnector>,
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    /// Called for every connection, TLS or not (tokio-postgres prepares it before it looks at
    /// the mode): without TLS nothing is checked here, and `connect` is never called.
    fn make_tls_connect(&mut self, domain: &str) -> io::Result<PgTlsConnect> {
        let Some(connector) = self.connector.clone() else {
            return Ok(PgTlsConnect { target: None });
        };
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{domain:?}: {e}")))?;
        Ok(PgTlsConnect { target: Some((connector, name)) })
    }
}

/// One connection's handshake.
pub(crate) struct PgTlsConnect {
    target: Option<(TlsConnector, ServerName<'static>)>,
}

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let (connector, name) = self.target.ok_or_else(|| io::Error::other("tls is not configured"))?;
            Ok(PgTlsStream(connector.connect(name, stream).await?))
        })
    }
}

/// A TLS connection to the database.
pub(crate) struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_parameters_are_split_out() {
        let (url, verify, root) = split_tls_params(
            "postgres://vt:pw@db:5432/vt?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        );
        assert_eq!(
            (url.as_str(), verify, root.as_deref()),
            ("postgres://vt:pw@db:5432/vt?application_name=x", true, Some("/etc/ca.pem"))
        );
        let (url, verify, root) = split_tls_params("postgres://db/vt?sslmode=require");
        assert_eq!((url.as_str(), verify, root), ("postgres://db/vt?sslmode=require", false, None));
        let (url, verify, root) = split_tls_params("host=db dbname=vt sslmode=verify-ca sslrootcert='/ca.pem'");
        assert_eq!((url.as_str(), verify, root.as_deref()), ("host=db dbname=vt", true, Some("/ca.pem")));
        assert_eq!(split_tls_params("postgres://db/vt").0, "postgres://db/vt");
    }

    #[test]
    fn only_a_required_mode_uses_tls() {
        let mut config: tokio_postgres::Config = "postgres://db/vt".parse().unwrap_or_default();
        let plain = connector(&mut config, false, None).map(|tls| tls.connector.is_none());
        assert!(matches!(plain, Ok(true)));
        assert_eq!(config.get_ssl_mode(), SslMode::Disable, "prefer is plain, as before");
        let mut config: tokio_postgres::Config = "postgres://db/vt?sslmode=require".parse().unwrap_or_default();
        let missing = connector(&mut config, false, Some("/nonexistent/ca.pem"));
        assert!(matches!(missing, Err(StoreError::Backend(m)) if m.contains("sslrootcert")));
    }
}
