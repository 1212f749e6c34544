//! The digests and signature schemes a token or certificate may use: SHA-1 (only to match an
//! ESS certificate hash), SHA-256/384/512, RSA PKCS#1 v1.5 and ECDSA on P-256.

use der::asn1::ObjectIdentifier;
use der::referenced::OwnedToRef;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rsa::pkcs1v15::Pkcs1v15Sign;
use sha2::Digest;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use crate::asn1::*;
use crate::{TsaError, TsaResult};

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DigestAlgorithm {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlgorithm {
    /// The algorithm of an `AlgorithmIdentifier` (parameters absent or NULL).
    pub(crate) fn from_identifier(id: &AlgorithmIdentifierOwned, what: &'static str) -> TsaResult<Self> {
        if id.parameters.as_ref().is_some_and(|p| !p.is_null()) {
            return Err(TsaError::Unsupported { what, oid: format!("{} with parameters", id.oid) });
        }
        Self::from_oid(id.oid).ok_or(TsaError::Unsupported { what, oid: id.oid.to_string() })
    }

    fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        match oid {
            ID_SHA1 => Some(DigestAlgorithm::Sha1),
            ID_SHA256 => Some(DigestAlgorithm::Sha256),
            ID_SHA384 => Some(DigestAlgorithm::Sha384),
            ID_SHA512 => Some(DigestAlgorithm::Sha512),
            _ => None,
        }
    }

    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            DigestAlgorithm::Sha1 => sha1::Sha1::digest(data).to_vec(),
            DigestAlgorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
            DigestAlgorithm::Sha384 => sha2::Sha384::digest(data).to_vec(),
            DigestAlgorithm::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    fn pkcs1v15(self) -> TsaResult<Pkcs1v15Sign> {
        match self {
            DigestAlgorithm::Sha256 => Ok(Pkcs1v15Sign::new::<sha2::Sha256>()),
            DigestAlgorithm::Sha384 => Ok(Pkcs1v15Sign::new::<sha2::Sha384>()),
            DigestAlgorithm::Sha512 => Ok(Pkcs1v15Sign::new::<sha2::Sha512>()),
            DigestAlgorithm::Sha1 => Err(TsaError::Unsupported { what: "signature digest", oid: ID_SHA1.to_string() }),
        }
    }
}

/// Which scheme a signature-algorithm identifier names, and the digest it fixes (if it does).
fn scheme(algorithm: &AlgorithmIdentifierOwned) -> TsaResult<(KeyKind, Option<DigestAlgorithm>)> {
    let unsupported = || TsaError::Unsupported { what: "signature algorithm", oid: algorithm.oid.to_string() };
    Ok(match algorithm.oid {
        // CMS signers commonly name only the key type; the digest is the SignerInfo's.
        RSA_ENCRYPTION => (KeyKind::Rsa, None),
        SHA256_WITH_RSA => (KeyKind::Rsa, Some(DigestAlgorithm::Sha256)),
        SHA384_WITH_RSA => (KeyKind::Rsa, Some(DigestAlgorithm::Sha384)),
        SHA512_WITH_RSA => (KeyKind::Rsa, Some(DigestAlgorithm::Sha512)),
        ID_EC_PUBLIC_KEY => (KeyKind::EcdsaP256, None),
        ECDSA_WITH_SHA256 => (KeyKind::EcdsaP256, Some(DigestAlgorithm::Sha256)),
        ECDSA_WITH_SHA384 => (KeyKind::EcdsaP256, Some(DigestAlgorithm::Sha384)),
        ECDSA_WITH_SHA512 => (KeyKind::EcdsaP256, Some(DigestAlgorithm::Sha512)),
        _ => return Err(unsupported()),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcdsaP256,
}

/// The digest a certificate's signature algorithm implies (`sha256WithRSAEncryption`, ...).
pub(crate) fn certificate_digest(algorithm: &AlgorithmIdentifierOwned) -> TsaResult<DigestAlgorithm> {
    match scheme(algorithm)? {
        (_, Some(digest)) => Ok(digest),
        (_, None) => {
            Err(TsaError::Unsupported { what: "certificate signature algorithm", oid: algorithm.oid.to_string() })
        }
    }
}

/// Verifies `signature` over a message whose `digest_algorithm` digest is `digest`, made with
/// the key of `key` under `algorithm`.
pub(crate) fn verify_signature(
    key: &SubjectPublicKeyInfoOwned,
    algorithm: &AlgorithmIdentifierOwned,
    digest_algorithm: DigestAlgorithm,
    digest: &[u8],
    signature: &[u8],
) -> TsaResult<()> {
    let (kind, implied) = scheme(algorithm)?;
    if implied.is_some_and(|implied| implied != digest_algorithm) {
        return Err(TsaError::BadSignature(format!(
            "signature algorithm {} does not match digest {digest_algorithm:?}",
            algorithm.oid
        )));
    }
    match kind {
        KeyKind::Rsa => {
            if key.algorithm.oid != RSA_ENCRYPTION {
                return Err(TsaError::BadSignature(format!(
                    "an RSA signature but a key of type {}",
                    key.algorithm.oid
                )));
            }
            let public = rsa::RsaPublicKey::try_from(key.owned_to_ref())
                .map_err(|e| TsaError::BadSignature(format!("unusable RSA key: {e}")))?;
            public
                .verify(digest_algorithm.pkcs1v15()?, digest, signature)
                .map_err(|_| TsaError::BadSignature("RSA PKCS#1 v1.5 verification failed".into()))
        }
        KeyKind::EcdsaP256 => {
            let curve = key.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            if key.algorithm.oid != ID_EC_PUBLIC_KEY || curve != Some(PRIME256V1) {
                let found = curve.map_or_else(|| key.algorithm.oid.to_string(), |c| c.to_string());
                return Err(TsaError::Unsupported { what: "elliptic curve", oid: found });
            }
            let public = p256::ecdsa::VerifyingKey::from_sec1_bytes(key.subject_public_key.raw_bytes())
                .map_err(|_| TsaError::BadSignature("unusable P-256 key".into()))?;
            let signature = p256::ecdsa::Signature::from_der(signature)
                .map_err(|_| TsaError::BadSignature("malformed ECDSA signature".into()))?;
            public
                .verify_prehash(digest, &signature)
                .map_err(|_| TsaError::BadSignature("ECDSA P-256 verification failed".into()))
        }
    }
}
