//! Checking a `TimeStampResp` / `TimeStampToken` (RFC 3161 §2.4.2, RFC 5652 §5).

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{Int, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier};

use crate::asn1::*;
use crate::crypto::{DigestAlgorithm, verify_signature};
use crate::request::message_imprint;
use crate::time::parse_gen_time;
use crate::trust::{check_validity, subject};
use crate::{Expected, TsaError, TsaResult, VerifiedTimestamp};

fn malformed(what: &'static str, error: der::Error) -> TsaError {
    TsaError::Malformed { what, detail: error.to_string() }
}

fn invalid(problem: impl Into<String>) -> TsaError {
    TsaError::InvalidToken(problem.into())
}

/// Verifies a DER `TimeStampResp` as a TSA sends it (and as Veritrail stores it): the status must
/// be granted and the token must pass [`verify_token`].
pub fn verify_response(response: &[u8], expected: &Expected<'_>) -> TsaResult<VerifiedTimestamp> {
    let response = TimeStampResp::from_der(response).map_err(|e| malformed("time-stamp response", e))?;
    let status = response.status.status;
    if !matches!(status, PkiStatus::Granted | PkiStatus::GrantedWithMods) {
        return Err(TsaError::Rejected { status: status.name().to_string(), detail: status_detail(&response.status) });
    }
    let token = response.time_stamp_token.ok_or_else(|| invalid("a granted response without a token"))?;
    let token = token.to_der().map_err(|e| malformed("time-stamp token", e))?;
    verify_token(&token, expected)
}

/// `: <status text>; failure bits ...` of a refusal, or nothing.
fn status_detail(info: &PkiStatusInfo) -> String {
    const FAILURES: [&str; 26] = [
        "badAlg",
        "",
        "badRequest",
        "",
        "",
        "badDataFormat",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "timeNotAvailable",
        "unacceptedPolicy",
        "unacceptedExtension",
        "addInfoNotAvailable",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "systemFailure",
    ];
    let mut parts = Vec::new();
    if let Some(texts) = &info.status_string {
        parts.push(texts.join(" "));
    }
    if let Some(bits) = &info.fail_info {
        let names: Vec<String> = bits
            .bits()
            .enumerate()
            .filter(|(_, set)| *set)
            .map(|(i, _)| match FAILURES.get(i) {
                Some(name) if !name.is_empty() => (*name).to_string(),
                _ => format!("bit {i}"),
            })
            .collect();
        if !names.is_empty() {
            parts.push(format!("failure {}", names.join(", ")));
        }
    }
    if parts.is_empty() { String::new() } else { format!(": {}", parts.join("; ")) }
}

/// Verifies a DER `TimeStampToken` (a CMS `ContentInfo` holding `SignedData` over a `TSTInfo`)
/// against what it must attest to. See the crate documentation for every check made.
pub fn verify_token(token: &[u8], expected: &Expected<'_>) -> TsaResult<VerifiedTimestamp> {
    let content_info = ContentInfo::from_der(token).map_err(|e| malformed("time-stamp token", e))?;
    if content_info.content_type != ID_SIGNED_DATA {
        return Err(invalid(format!("content type {} is not signed data", content_info.content_type)));
    }
    let signed: SignedData =
        content_info.content.decode_as().map_err(|e| malformed("time-stamp token signed data", e))?;
    if signed.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err(invalid(format!(
            "encapsulated content {} is not a TSTInfo",
            signed.encap_content_info.econtent_type
        )));
    }
    let tst_bytes = match &signed.encap_content_info.econtent {
        Some(content) => content.decode_as::<OctetString>().map_err(|e| malformed("encapsulated TSTInfo", e))?,
        None => return Err(invalid("the TSTInfo is missing")),
    };
    let tst_bytes = tst_bytes.as_bytes();
    let tst = TstInfo::from_der(tst_bytes).map_err(|e| malformed("TSTInfo", e))?;
    if tst.version != 1 {
        return Err(invalid(format!("TSTInfo version {} is not 1", tst.version)));
    }

    // What the TSA says it time-stamped, and when.
    let imprint_algorithm = DigestAlgorithm::from_identifier(&tst.message_imprint.hash_algorithm, "imprint digest")?;
    if imprint_algorithm != DigestAlgorithm::Sha256
        || tst.message_imprint.hashed_message.as_bytes() != message_imprint(expected.message)
    {
        return Err(TsaError::ImprintMismatch);
    }
    if let Some(nonce) = expected.nonce {
        check_nonce(nonce, tst.nonce.as_ref())?;
    }
    let gen_time = parse_gen_time(&tst.gen_time)?;

    // Who signed it, and whether they signed exactly this TSTInfo.
    let signer_info = only_signer(&signed)?;
    let certificates = carried_certificates(&signed);
    let signer = find_signer(&signer_info.sid, &certificates, expected)?;
    verify_signer_info(signer_info, &signer, tst_bytes)?;
    check_timestamping_certificate(&signer)?;
    check_validity(&signer, gen_time)?;
    let chained = match expected.trust {
        Some(anchors) => {
            anchors.chain(&signer, &certificates, gen_time)?;
            true
        }
        None => false,
    };

    Ok(VerifiedTimestamp {
        gen_time,
        serial_number: hex(unsigned(tst.serial_number.as_bytes())),
        policy: tst.policy.to_string(),
        signer: subject(&signer),
        chained,
    })
}

fn check_nonce(expected: u64, found: Option<&Int>) -> TsaResult<()> {
    let mismatch = |found: String| TsaError::NonceMismatch { expected: format!("{expected:#x}"), found };
    let Some(found) = found else {
        return Err(mismatch("absent".into()));
    };
    let bytes = found.as_bytes();
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    if negative || unsigned(bytes) != unsigned(&expected.to_be_bytes()) {
        return Err(mismatch(format!("0x{}", hex(unsigned(bytes)))));
    }
    Ok(())
}

/// Big-endian bytes without leading zeros.
fn unsigned(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "0".into();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3161 §2.4.2: the token carries the TSA's signature and no other.
fn only_signer(signed: &SignedData) -> TsaResult<&SignerInfo> {
    let mut signers = signed.signer_infos.0.iter();
    match (signers.next(), signers.next()) {
        (Some(signer), None) => Ok(signer),
        (None, _) => Err(invalid("no signer")),
        (Some(_), Some(_)) => Err(invalid("more than one signer")),
    }
}

fn carried_certificates(signed: &SignedData) -> Vec<Certificate> {
    let Some(set) = &signed.certificates else {
        return Vec::new();
    };
    set.0
        .iter()
        .filter_map(|choice| match choice {
            CertificateChoices::Certificate(certificate) => Some(certificate.clone()),
            CertificateChoices::Other(_) => None,
        })
        .collect()
}

/// The certificate the signer identifier names: one the token carries, else a trusted one (a
/// TSA may leave its certificate out when the request did not ask for it).
fn find_signer(sid: &SignerIdentifier, carried: &[Certificate], expected: &Expected<'_>) -> TsaResult<Certificate> {
    let trusted = expected.trust.map(|anchors| anchors.certificates()).unwrap_or_default();
    for certificate in carried.iter().chain(trusted) {
        let tbs = certificate.tbs_certificate();
        let matches = match sid {
            SignerIdentifier::IssuerAndSerialNumber(id) => {
                tbs.issuer() == &id.issuer && tbs.serial_number() == &id.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(id) => {
                matches!(tbs.get_extension::<SubjectKeyIdentifier>(), Ok(Some((_, ski))) if &ski == id)
            }
        };
        if matches {
            return Ok(certificate.clone());
        }
    }
    Err(TsaError::SignerNotFound)
}

/// The signed attributes name the TSTInfo content type, its digest and the signer certificate,
/// and the signature over them verifies with the signer's key.
fn verify_signer_info(signer_info: &SignerInfo, signer: &Certificate, tst_bytes: &[u8]) -> TsaResult<()> {
    let digest_algorithm = DigestAlgorithm::from_identifier(&signer_info.digest_alg, "signer digest")?;
    let Some(attributes) = &signer_info.signed_attrs else {
        return Err(invalid("no signed attributes"));
    };

    let content_type: ObjectIdentifier = single_value(attributes.iter(), ID_CONTENT_TYPE, "content-type")?;
    if content_type != ID_CT_TST_INFO {
        return Err(invalid(format!("signed content type {content_type} is not TSTInfo")));
    }
    let digest: OctetString = single_value(attributes.iter(), ID_MESSAGE_DIGEST, "message-digest")?;
    if digest.as_bytes() != digest_algorithm.digest(tst_bytes) {
        return Err(TsaError::ContentDigestMismatch);
    }
    check_signing_certificate(attributes.iter(), signer)?;

    // The signature covers the DER of the attributes as a SET OF (RFC 5652 §5.4).
    let signed_bytes = attributes.to_der().map_err(|e| malformed("signed attributes", e))?;
    verify_signature(
        signer.tbs_certificate().subject_public_key_info(),
        &signer_info.signature_algorithm,
        digest_algorithm,
        &digest_algorithm.digest(&signed_bytes),
        signer_info.signature.as_bytes(),
    )
}

/// The one value of the one attribute `oid`, decoded.
fn single_value<'a, T>(
    mut attributes: impl Iterator<Item = &'a Attribute>,
    oid: ObjectIdentifier,
    name: &str,
) -> TsaResult<T>
where
    T: for<'b> Decode<'b, Error = der::Error>,
{
    let Some(attribute) = attributes.find(|a| a.oid == oid) else {
        return Err(invalid(format!("the signed {name} attribute is missing")));
    };
    let mut values = attribute.values.iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(invalid(format!("the signed {name} attribute must have one value")));
    };
    let der = value.to_der().map_err(|e| malformed("signed attribute", e))?;
    T::from_der(&der).map_err(|e| TsaError::Malformed { what: "signed attribute", detail: format!("{name}: {e}") })
}

/// RFC 3161 §2.4.1 / RFC 5035: an ESS signing-certificate attribute identifies the signer
/// certificate by hash, so that it cannot be swapped for another with the same key.
fn check_signing_certificate<'a>(
    attributes: impl Iterator<Item = &'a Attribute> + Clone,
    signer: &Certificate,
) -> TsaResult<()> {
    let der = signer.to_der().map_err(|e| malformed("signer certificate", e))?;
    let has = |oid| attributes.clone().any(|a: &Attribute| a.oid == oid);
    let (algorithm, hash) = if has(ID_SIGNING_CERTIFICATE_V2) {
        let attribute: SigningCertificateV2 =
            single_value(attributes.clone(), ID_SIGNING_CERTIFICATE_V2, "signing-certificate-v2")?;
        let first = attribute.certs.first().ok_or_else(|| invalid("empty signing-certificate-v2 attribute"))?;
        let algorithm = match &first.hash_algorithm {
            Some(id) => DigestAlgorithm::from_identifier(id, "ESS certificate hash")?,
            None => DigestAlgorithm::Sha256,
        };
        (algorithm, first.cert_hash.as_bytes().to_vec())
    } else if has(ID_SIGNING_CERTIFICATE) {
        let attribute: SigningCertificate =
            single_value(attributes.clone(), ID_SIGNING_CERTIFICATE, "signing-certificate")?;
        let first = attribute.certs.first().ok_or_else(|| invalid("empty signing-certificate attribute"))?;
        (DigestAlgorithm::Sha1, first.cert_hash.as_bytes().to_vec())
    } else {
        return Err(invalid("the signed signing-certificate attribute is missing"));
    };
    if algorithm.digest(&der) != hash {
        return Err(TsaError::SignerCertificateMismatch);
    }
    Ok(())
}

/// RFC 3161 §2.3: extended key usage present, critical, and only `id-kp-timeStamping`; a key
/// usage, if present, allows signatures.
fn check_timestamping_certificate(certificate: &Certificate) -> TsaResult<()> {
    let unfit = |problem: &str| TsaError::NotTimestampingCertificate {
        subject: subject(certificate),
        problem: problem.to_string(),
    };
    let tbs = certificate.tbs_certificate();
    match tbs.get_extension::<ExtendedKeyUsage>() {
        Ok(Some((true, usage))) if usage.0 == [ID_KP_TIME_STAMPING] => {}
        Ok(Some((true, _))) => return Err(unfit("extendedKeyUsage is not only timeStamping")),
        Ok(Some((false, _))) => return Err(unfit("extendedKeyUsage is not critical")),
        Ok(None) => return Err(unfit("no extendedKeyUsage")),
        Err(_) => return Err(unfit("malformed extendedKeyUsage")),
    }
    match tbs.get_extension::<KeyUsage>() {
        Ok(None) => Ok(()),
        Ok(Some((_, usage))) if usage.digital_signature() || usage.non_repudiation() => Ok(()),
        Ok(Some(_)) => Err(unfit("keyUsage allows no signature")),
        Err(_) => Err(unfit("malformed keyUsage")),
    }
}
