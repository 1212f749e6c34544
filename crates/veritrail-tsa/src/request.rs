//! `TimeStampReq` (RFC 3161 §2.4.1).

use der::Encode;
use der::asn1::{Any, OctetString};
use sha2::{Digest, Sha256};
use x509_cert::spki::AlgorithmIdentifierOwned;

use crate::asn1::{ID_SHA256, MessageImprint, TimeStampReq};

/// SHA-256 of `message`: the imprint a checkpoint is time-stamped under.
pub fn message_imprint(message: &[u8]) -> [u8; 32] {
    Sha256::digest(message).into()
}

/// A DER `TimeStampReq`: version 1, the SHA-256 imprint of the message, a nonce, no policy, and
/// `certReq` TRUE so that the token carries the TSA certificate and verifies on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampRequest {
    der: Vec<u8>,
    nonce: u64,
}

impl TimestampRequest {
    /// A request for `message` (a checkpoint's exact signed-note bytes). `nonce` must be random
    /// (the caller draws it: this crate has no randomness) so that an answer cannot be replayed.
    pub fn new(message: &[u8], nonce: u64) -> TimestampRequest {
        let der = encode_request(&message_imprint(message), nonce)
            .expect("a request of fixed-size, well-formed fields always encodes");
        TimestampRequest { der, nonce }
    }

    /// The DER bytes to send (`Content-Type: application/timestamp-query`).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The nonce the answer must carry.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }
}

fn encode_request(imprint: &[u8; 32], nonce: u64) -> der::Result<Vec<u8>> {
    let request = TimeStampReq {
        version: 1,
        // NULL parameters, as OpenSSL and most TSAs write them.
        message_imprint: MessageImprint {
            hash_algorithm: AlgorithmIdentifierOwned { oid: ID_SHA256, parameters: Some(Any::null()) },
            hashed_message: OctetString::new(imprint.to_vec())?,
        },
        req_policy: None,
        nonce: Some(nonce),
        cert_req: true,
        extensions: None,
    };
    request.to_der()
}

#[cfg(test)]
mod tests {
    use der::Decode;

    use super::*;

    #[test]
    fn request_round_trips() {
        let request = TimestampRequest::new(b"checkpoint", 0x8000_0000_0000_0001);
        let decoded = TimeStampReq::from_der(request.der()).expect("decodes");
        assert_eq!(decoded.version, 1);
        assert_eq!(decoded.nonce, Some(0x8000_0000_0000_0001));
        assert!(decoded.cert_req);
        assert_eq!(decoded.message_imprint.hash_algorithm.oid, ID_SHA256);
        assert_eq!(decoded.message_imprint.hashed_message.as_bytes(), message_imprint(b"checkpoint"));
        assert_eq!(request.nonce(), 0x8000_0000_0000_0001);
    }
}
