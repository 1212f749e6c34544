//! veritrail-tsa against real `openssl ts` answers, made at test time by a throw-away PKI.

#![allow(clippy::unwrap_used)]

mod openssl;

use jiff::{Timestamp, ToSpan};
use openssl::{KeyKind, Pki};
use veritrail_tsa::{Expected, TimestampRequest, TrustAnchors, TsaError, verify_response, verify_token};

const NOTE: &[u8] =
    "veritrail.local/tn_a\n42\nq3xw5B5B4mXqU1V1QxWg0HcJjR2yX8bD2m2QKzqk9bM=\n\n— veritrail.local AbCdEf==\n".as_bytes();
const NONCE: u64 = 0x9a3c_5e11_0042_7fff;

/// A fresh request for `NOTE`, answered by `pki`.
fn answered(pki: &Pki) -> Vec<u8> {
    pki.reply(TimestampRequest::new(NOTE, NONCE).der())
}

fn expected<'a>(trust: Option<&'a TrustAnchors>) -> Expected<'a> {
    Expected { message: NOTE, nonce: Some(NONCE), trust }
}

fn check_granted(kind: KeyKind) {
    let pki = Pki::new(kind, 0);
    let response = answered(&pki);
    let anchors = TrustAnchors::from_pem(&pki.ca_pem()).unwrap();
    let verified = verify_response(&response, &expected(Some(&anchors))).unwrap();
    let now = Timestamp::now();
    assert!(verified.gen_time > now - 5.minutes() && verified.gen_time <= now + 5.seconds(), "{verified:?}");
    assert_eq!(verified.signer, "CN=Test TSA,O=Veritrail Test");
    assert_eq!(verified.policy, "1.3.6.1.4.1.99999.1");
    assert!(verified.serial_number.chars().all(|c| c.is_ascii_hexdigit()), "{verified:?}");
    assert!(verified.chained);

    // A stored response is checked without a nonce, with or without trusted CAs.
    let stored = Expected { message: NOTE, nonce: None, trust: None };
    assert!(!verify_response(&response, &stored).unwrap().chained);
    // The bare token verifies the same way.
    let token = pki.token_of(&response);
    assert_eq!(verify_token(&token, &expected(Some(&anchors))).unwrap(), verified);
}

#[test]
fn an_rsa_tsa_answer_verifies() {
    check_granted(KeyKind::Rsa);
}

#[test]
fn an_ecdsa_p256_tsa_answer_verifies() {
    check_granted(KeyKind::EcP256);
}

#[test]
fn fractional_gen_time_is_read() {
    let pki = Pki::new(KeyKind::EcP256, 3);
    let verified = verify_response(&answered(&pki), &expected(None)).unwrap();
    assert!((Timestamp::now() - verified.gen_time).get_seconds().abs() < 300, "{verified:?}");
}

#[test]
fn openssl_reads_our_request() {
    let pki = Pki::new(KeyKind::EcP256, 0);
    let request = TimestampRequest::new(NOTE, NONCE);
    let text = pki.describe_query(request.der());
    assert!(text.contains("Version: 1"), "{text}");
    assert!(text.contains("Hash Algorithm: sha256"), "{text}");
    assert!(text.contains("Nonce: 0x9A3C5E1100427FFF"), "{text}");
    assert!(text.contains("Certificate required: yes"), "{text}");
    // Byte for byte what `openssl ts -query -sha256 -cert` asks, but for the nonce.
    let theirs = pki.openssl_query(NOTE, "-sha256");
    assert_eq!(request.der()[2..56], theirs[2..56]);
}

#[test]
fn other_bytes_are_refused() {
    let pki = Pki::new(KeyKind::Rsa, 0);
    let response = answered(&pki);
    let mut other = NOTE.to_vec();
    other[21] = b'3'; // size 42 -> 43
    let error = verify_response(&response, &Expected { message: &other, nonce: None, trust: None }).unwrap_err();
    assert_eq!(error, TsaError::ImprintMismatch);
}

#[test]
fn another_requests_answer_is_refused() {
    let pki = Pki::new(KeyKind::EcP256, 0);
    let response = answered(&pki);
    let error =
        verify_response(&response, &Expected { message: NOTE, nonce: Some(NONCE + 1), trust: None }).unwrap_err();
    assert!(matches!(&error, TsaError::NonceMismatch { found, .. } if found == "0x9a3c5e1100427fff"), "{error}");
}

#[test]
fn a_corrupted_signature_is_refused() {
    for kind in [KeyKind::Rsa, KeyKind::EcP256] {
        let pki = Pki::new(kind, 0);
        let mut response = answered(&pki);
        // The response ends with the signature (openssl writes no unsigned attributes).
        let last = response.len() - 1;
        response[last] ^= 0x01;
        let error = verify_response(&response, &expected(None)).unwrap_err();
        assert!(matches!(error, TsaError::BadSignature(_)), "{kind:?}: {error}");
    }
}

#[test]
fn an_altered_gen_time_is_refused() {
    let pki = Pki::new(KeyKind::Rsa, 0);
    let mut response = answered(&pki);
    // genTime is the only GeneralizedTime in the response: 0x18 0x0f "YYYYMMDDhhmmssZ".
    let at = response.windows(2).position(|w| w == [0x18, 0x0f]).unwrap() + 2;
    response[at + 3] = if response[at + 3] == b'0' { b'1' } else { b'0' }; // another year
    let error = verify_response(&response, &expected(None)).unwrap_err();
    assert_eq!(error, TsaError::ContentDigestMismatch);
}

#[test]
fn a_signer_without_the_timestamping_usage_is_refused() {
    for kind in [KeyKind::Rsa, KeyKind::EcP256] {
        let pki = Pki::new(kind, 0);
        pki.issue("server", "/O=Veritrail Test/CN=Some Web Server", "server_ext");
        let token = pki.token_of(&answered(&pki));
        let resigned = pki.resign_token(&token, "server");
        let anchors = TrustAnchors::from_pem(&pki.ca_pem()).unwrap();
        let error = verify_token(&resigned, &expected(Some(&anchors))).unwrap_err();
        assert!(
            matches!(&error, TsaError::NotTimestampingCertificate { subject, .. } if subject.contains("Some Web Server")),
            "{kind:?}: {error}"
        );
        // The same TSTInfo re-signed by the real TSA certificate passes: only the EKU was wrong.
        let by_tsa = pki.resign_token(&token, "tsa");
        verify_token(&by_tsa, &expected(Some(&anchors))).unwrap();
    }
}

#[test]
fn another_ca_is_not_trusted() {
    let pki = Pki::new(KeyKind::Rsa, 0);
    let stranger = Pki::new(KeyKind::EcP256, 0);
    let anchors = TrustAnchors::from_pem(&stranger.ca_pem()).unwrap();
    let error = verify_response(&answered(&pki), &expected(Some(&anchors))).unwrap_err();
    assert!(matches!(&error, TsaError::Untrusted(why) if why.contains("CN=Test Root CA")), "{error}");
    // Pinning the TSA certificate itself is enough.
    let pinned = TrustAnchors::from_pem(&std::fs::read(pki.path("tsa.pem")).unwrap()).unwrap();
    assert!(verify_response(&answered(&pki), &expected(Some(&pinned))).unwrap().chained);
}

#[test]
fn a_refusal_names_the_status_and_failure() {
    let pki = Pki::new(KeyKind::EcP256, 0);
    // The TSA accepts sha256, sha384 and sha512 imprints only.
    let response = pki.reply(&pki.openssl_query(NOTE, "-sha1"));
    let error = verify_response(&response, &expected(None)).unwrap_err();
    assert!(
        matches!(&error, TsaError::Rejected { status, detail } if status == "rejection" && detail.contains("badAlg")),
        "{error}"
    );
}

#[test]
fn garbage_is_malformed() {
    let pki = Pki::new(KeyKind::EcP256, 0);
    let response = answered(&pki);
    for bytes in [&b""[..], b"\x30\x03\x02\x01", &response[..response.len() - 1], b"not der at all"] {
        let error = verify_response(bytes, &expected(None)).unwrap_err();
        assert!(matches!(error, TsaError::Malformed { .. }), "{error}");
    }
    let mut trailing = response.clone();
    trailing.push(0);
    assert!(matches!(verify_response(&trailing, &expected(None)), Err(TsaError::Malformed { .. })));
    assert!(matches!(TrustAnchors::from_pem(b"no pem here"), Err(TsaError::InvalidTrustAnchors(_))));
}
