//! The CAs an operator trusts, and chaining a signer certificate to them.
//!
//! A chain is built from the signer certificate upwards through the certificates the token
//! carries until a certificate signed by (or equal to) a trust anchor is reached. Every issuer is
//! a CA (basicConstraints `cA`), every signature verifies, and every certificate on the way was
//! valid when the time-stamp was made. Revocation is not checked.

use der::{Decode, Encode};
use jiff::Timestamp;
use x509_cert::Certificate;
use x509_cert::ext::pkix::BasicConstraints;

use crate::crypto::{certificate_digest, verify_signature};
use crate::{TsaError, TsaResult};

/// Longest chain followed from the signer certificate to an anchor.
const MAX_CHAIN: usize = 8;

/// CA certificates the signer certificate of a time-stamp must chain to.
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    certificates: Vec<Certificate>,
}

impl TrustAnchors {
    /// Reads one or more PEM `CERTIFICATE` blocks (a CA bundle file).
    pub fn from_pem(pem: &[u8]) -> TsaResult<TrustAnchors> {
        let certificates = Certificate::load_pem_chain(pem)
            .map_err(|e| TsaError::InvalidTrustAnchors(format!("not PEM certificates: {e}")))?;
        if certificates.is_empty() {
            return Err(TsaError::InvalidTrustAnchors("no certificate found".into()));
        }
        Ok(TrustAnchors { certificates })
    }

    /// Reads DER certificates.
    pub fn from_der(certificates: &[&[u8]]) -> TsaResult<TrustAnchors> {
        let mut parsed = Vec::with_capacity(certificates.len());
        for (i, der) in certificates.iter().enumerate() {
            let certificate = Certificate::from_der(der)
                .map_err(|e| TsaError::InvalidTrustAnchors(format!("certificate {i}: {e}")))?;
            parsed.push(certificate);
        }
        if parsed.is_empty() {
            return Err(TsaError::InvalidTrustAnchors("no certificate given".into()));
        }
        Ok(TrustAnchors { certificates: parsed })
    }

    /// How many certificates are trusted.
    pub fn len(&self) -> usize {
        self.certificates.len()
    }

    /// Whether no certificate is trusted (never true for a value built by this crate).
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }

    /// The subjects of the trusted certificates, for messages.
    pub fn subjects(&self) -> Vec<String> {
        self.certificates.iter().map(|c| c.tbs_certificate().subject().to_string()).collect()
    }

    pub(crate) fn certificates(&self) -> &[Certificate] {
        &self.certificates
    }

    /// Chains `signer` to an anchor through `intermediates`, every certificate valid at `at`.
    pub(crate) fn chain(&self, signer: &Certificate, intermediates: &[Certificate], at: Timestamp) -> TsaResult<()> {
        let mut current = signer.clone();
        for _ in 0..MAX_CHAIN {
            if self.certificates.iter().any(|anchor| anchor == &current) {
                return Ok(()); // the operator pinned this very certificate
            }
            for anchor in &self.certificates {
                if issued(anchor, &current).is_ok() {
                    check_validity(anchor, at)?;
                    return Ok(());
                }
            }
            let next =
                intermediates.iter().find(|candidate| *candidate != &current && issued(candidate, &current).is_ok());
            let Some(next) = next else {
                let issuer = current.tbs_certificate().issuer().to_string();
                return Err(TsaError::Untrusted(format!(
                    "no trusted issuer {issuer} of {} (trusted: {})",
                    subject(&current),
                    self.subjects().join("; ")
                )));
            };
            check_validity(next, at)?;
            current = next.clone();
        }
        Err(TsaError::Untrusted(format!("no trusted CA within {MAX_CHAIN} certificates")))
    }
}

/// Whether `issuer` is a CA that signed `subject`.
fn issued(issuer: &Certificate, subject: &Certificate) -> TsaResult<()> {
    if issuer.tbs_certificate().subject() != subject.tbs_certificate().issuer() {
        return Err(TsaError::Untrusted("name mismatch".into()));
    }
    let is_ca = matches!(
        issuer.tbs_certificate().get_extension::<BasicConstraints>(),
        Ok(Some((_, BasicConstraints { ca: true, .. })))
    );
    if !is_ca {
        return Err(TsaError::Untrusted(format!("{} is not a CA", self::subject(issuer))));
    }
    let tbs = subject
        .tbs_certificate()
        .to_der()
        .map_err(|e| TsaError::Malformed { what: "certificate", detail: e.to_string() })?;
    let digest_algorithm = certificate_digest(subject.signature_algorithm())?;
    let signature = subject
        .signature()
        .as_bytes()
        .ok_or_else(|| TsaError::Malformed { what: "certificate", detail: "signature has unused bits".into() })?;
    verify_signature(
        issuer.tbs_certificate().subject_public_key_info(),
        subject.signature_algorithm(),
        digest_algorithm,
        &digest_algorithm.digest(&tbs),
        signature,
    )
}

/// Fails unless `certificate` was valid at `at`.
pub(crate) fn check_validity(certificate: &Certificate, at: Timestamp) -> TsaResult<()> {
    let validity = certificate.tbs_certificate().validity();
    let seconds = |time: x509_cert::time::Time| time.to_unix_duration().as_secs() as i64;
    let (not_before, not_after) = (seconds(validity.not_before), seconds(validity.not_after));
    if (not_before..=not_after).contains(&at.as_second()) {
        return Ok(());
    }
    let show = |secs: i64| Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string());
    Err(TsaError::CertificateNotValid {
        subject: subject(certificate),
        at: at.to_string(),
        not_before: show(not_before),
        not_after: show(not_after),
    })
}

/// A certificate's subject, as `CN=...,O=...`.
pub(crate) fn subject(certificate: &Certificate) -> String {
    certificate.tbs_certificate().subject().to_string()
}
