//! Test keys, a deterministic RNG, JWKS documents and token signing.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::rand_core::{TryCryptoRng, TryRng};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// SHA-256 in counter mode over a seed: deterministic key generation. Tests only.
pub struct TestRng {
    seed: [u8; 32],
    counter: u64,
}

impl TestRng {
    pub fn new(label: &str) -> TestRng {
        TestRng { seed: Sha256::digest(label.as_bytes()).into(), counter: 0 }
    }

    fn block(&mut self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.seed);
        hasher.update(self.counter.to_le_bytes());
        self.counter += 1;
        hasher.finalize().into()
    }
}

impl TryRng for TestRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let block = self.block();
        Ok(u32::from_le_bytes(block[..4].try_into().unwrap()))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let block = self.block();
        Ok(u64::from_le_bytes(block[..8].try_into().unwrap()))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(32) {
            let block = self.block();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}

impl TryCryptoRng for TestRng {}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key of one of the three supported types.
pub enum Signer {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl Signer {
    pub fn rsa(label: &str) -> Signer {
        Signer::Rsa(Box::new(rsa::RsaPrivateKey::new(&mut TestRng::new(label), 2048).unwrap()))
    }

    pub fn p256(label: &str) -> Signer {
        let scalar: [u8; 32] = Sha256::digest(label.as_bytes()).into();
        Signer::P256(p256::ecdsa::SigningKey::from_slice(&scalar).unwrap())
    }

    pub fn ed25519(label: &str) -> Signer {
        Signer::Ed25519(ed25519_dalek::SigningKey::from_bytes(&Sha256::digest(label.as_bytes()).into()))
    }

    pub fn alg(&self) -> &'static str {
        match self {
            Signer::Rsa(_) => "RS256",
            Signer::P256(_) => "ES256",
            Signer::Ed25519(_) => "EdDSA",
        }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Signer::Rsa(key) => key.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(message)).unwrap(),
            Signer::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_bytes().to_vec()
            }
            Signer::Ed25519(key) => {
                use ed25519_dalek::Signer as _;
                key.sign(message).to_bytes().to_vec()
            }
        }
    }

    /// The public JWK, with `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        match self {
            Signer::Rsa(key) => json!({
                "kty": "RSA",
                "kid": kid,
                "use": "sig",
                "n": b64(&key.n().to_be_bytes_trimmed_vartime()),
                "e": b64(&key.e().to_be_bytes_trimmed_vartime()),
            }),
            Signer::P256(key) => {
                let point = key.verifying_key().to_sec1_point(false);
                let bytes = point.as_bytes();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&bytes[1..33]), "y": b64(&bytes[33..65])})
            }
            Signer::Ed25519(key) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(key.verifying_key().as_bytes())})
            }
        }
    }
}

/// The identity provider's keys: `rsa-1`, `ec-1`, `ed-1`.
pub struct Keys {
    pub rsa: Signer,
    pub ec: Signer,
    pub ed: Signer,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys { rsa: Signer::rsa("idp rsa"), ec: Signer::p256("idp ec"), ed: Signer::ed25519("idp ed") })
}

/// An attacker's RSA key (same type, another key).
pub fn other_rsa() -> &'static Signer {
    static KEY: OnceLock<Signer> = OnceLock::new();
    KEY.get_or_init(|| Signer::rsa("attacker rsa"))
}

pub fn jwks() -> Value {
    let keys = keys();
    json!({"keys": [keys.rsa.jwk("rsa-1"), keys.ec.jwk("ec-1"), keys.ed.jwk("ed-1")]})
}

/// `header.claims.signature` with the given JSON header and claims, signed by `signer`.
pub fn token(signer: &Signer, header: &Value, claims: &Value) -> String {
    raw_token(signer, header.to_string().as_bytes(), claims.to_string().as_bytes())
}

/// The same with header and claims bytes as given (not necessarily JSON).
pub fn raw_token(signer: &Signer, header: &[u8], claims: &[u8]) -> String {
    let signed = format!("{}.{}", b64(header), b64(claims));
    let signature = signer.sign(signed.as_bytes());
    format!("{signed}.{}", b64(&signature))
}
