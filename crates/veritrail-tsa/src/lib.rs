//! RFC 3161 time stamping of Veritrail checkpoints: building a `TimeStampReq`, and checking a
//! `TimeStampResp` (or a bare `TimeStampToken`) the way an auditor would.
//!
//! A checkpoint is witnessed by asking a Time-Stamp Authority (TSA) to sign the SHA-256 of its
//! exact signed-note bytes. What the TSA returns is verified before it is stored, and again by
//! `veritrail verify`:
//!
//! - the `PKIStatus` is granted (or granted with modifications);
//! - the token is a CMS `SignedData` with one signer, whose `eContentType` is `id-ct-TSTInfo`;
//! - the signed attributes carry that content type, the digest of the `TSTInfo`, and an ESS
//!   signing-certificate attribute naming the signer certificate by hash;
//! - the signature over the signed attributes verifies with the signer certificate's key
//!   (RSA PKCS#1 v1.5 or ECDSA P-256, with SHA-256, SHA-384 or SHA-512);
//! - the signer certificate has a critical extended key usage of only `id-kp-timeStamping`, and
//!   was valid at the time stamped;
//! - the `TSTInfo` imprint is SHA-256 of the expected bytes, and its nonce the one sent (when
//!   checking a fresh response);
//! - optionally, the signer certificate chains to a CA the operator trusts.
//!
//! **Architecture invariant:** pure. No I/O, no clock, no randomness: the nonce is passed in, and
//! the HTTP exchange with the TSA belongs to the server.

#![forbid(unsafe_code)]

mod asn1;
mod crypto;
mod request;
mod time;
mod trust;
mod verify;

pub use crate::request::{TimestampRequest, message_imprint};
pub use crate::trust::TrustAnchors;
pub use crate::verify::{verify_response, verify_token};

/// MIME type of a request body sent to a TSA (RFC 3161 §3.4).
pub const QUERY_CONTENT_TYPE: &str = "application/timestamp-query";
/// MIME type of a TSA's answer (RFC 3161 §3.4).
pub const REPLY_CONTENT_TYPE: &str = "application/timestamp-reply";

/// What a time-stamp must attest to.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The exact bytes that were time-stamped (a checkpoint's signed note); the token's imprint
    /// must be their SHA-256.
    pub message: &'a [u8],
    /// The nonce of the request, when checking the answer to it; `None` for a stored token.
    pub nonce: Option<u64>,
    /// CAs the signer certificate must chain to; `None` accepts any signer certificate that is
    /// otherwise fit for time stamping.
    pub trust: Option<&'a TrustAnchors>,
}

/// A time-stamp that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTimestamp {
    /// When the TSA says it signed (the `TSTInfo` `genTime`).
    pub gen_time: jiff::Timestamp,
    /// The token's serial number, lowercase hex.
    pub serial_number: String,
    /// The TSA policy it was issued under, as a dotted OID.
    pub policy: String,
    /// The subject of the signer certificate, e.g. `CN=Example TSA,O=Example`.
    pub signer: String,
    /// Whether the signer certificate was chained to one of [`Expected::trust`].
    pub chained: bool,
}

/// Everything that can be wrong with a request, response or token. Messages name what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsaError {
    /// The bytes are not the DER structure they should be.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which structure, e.g. `time-stamp response`.
        what: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// The TSA did not grant the request.
    #[error("the TSA refused the request: status {status}{detail}")]
    Rejected {
        /// The `PKIStatus` name, e.g. `rejection`.
        status: String,
        /// The status text and failure bits, if any, prefixed with `: `.
        detail: String,
    },
    /// The token is not shaped as RFC 3161 prescribes (content types, signer count, version, a
    /// missing signed attribute).
    #[error("invalid time-stamp token: {0}")]
    InvalidToken(String),
    /// An algorithm this crate does not implement.
    #[error("unsupported {what} {oid}")]
    Unsupported {
        /// What kind of algorithm, e.g. `signature algorithm`.
        what: &'static str,
        /// Its OID.
        oid: String,
    },
    /// The token time-stamps other bytes than the expected ones.
    #[error("the token's message imprint is not the SHA-256 of the time-stamped bytes")]
    ImprintMismatch,
    /// The token answers another request.
    #[error("the token's nonce {found} is not the request's {expected}")]
    NonceMismatch {
        /// The nonce sent.
        expected: String,
        /// The nonce in the token, or `absent`.
        found: String,
    },
    /// The signed message-digest attribute is not the digest of the `TSTInfo`: the time-stamp
    /// content was altered after signing.
    #[error("the signed message digest does not match the TSTInfo: the token content was altered")]
    ContentDigestMismatch,
    /// The signature does not verify with the signer certificate's key.
    #[error("the TSA signature does not verify: {0}")]
    BadSignature(String),
    /// The signer certificate is not in the token (nor among the trusted certificates).
    #[error("the signer certificate is not in the token")]
    SignerNotFound,
    /// The ESS signing-certificate attribute names another certificate than the signer's.
    #[error("the signing-certificate attribute does not name the signer certificate")]
    SignerCertificateMismatch,
    /// The signer certificate may not issue time-stamps.
    #[error("the signer certificate {subject} is not a time-stamping certificate: {problem}")]
    NotTimestampingCertificate {
        /// Its subject.
        subject: String,
        /// What is missing, e.g. `extendedKeyUsage is not critical`.
        problem: String,
    },
    /// A certificate was not valid when the time-stamp was made.
    #[error("the certificate {subject} was not valid at {at} (valid {not_before} to {not_after})")]
    CertificateNotValid {
        /// Its subject.
        subject: String,
        /// The `genTime`.
        at: String,
        /// Start of its validity.
        not_before: String,
        /// End of its validity.
        not_after: String,
    },
    /// The signer certificate does not chain to a trusted CA.
    #[error("the signer certificate does not chain to a trusted CA: {0}")]
    Untrusted(String),
    /// The operator's CA file could not be used.
    #[error("invalid trusted CA certificates: {0}")]
    InvalidTrustAnchors(String),
}

/// Result of this crate's operations.
pub type TsaResult<T> = Result<T, TsaError>;
