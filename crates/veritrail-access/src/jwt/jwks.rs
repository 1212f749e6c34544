//! JSON Web Key Sets (RFC 7517) of an identity provider: the public keys its tokens are signed
//! with. RSA (`n`, `e`), EC P-256 (`x`, `y`) and OKP Ed25519 (`x`) keys are read; other keys
//! are skipped, and a set with private key material is refused.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::jwt::JwsAlgorithm;
use crate::printable;

/// Most keys a set may hold.
pub const MAX_JWKS_KEYS: usize = 64;
/// Largest JWKS document, bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Smallest and largest RSA modulus accepted, bits.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;
/// JWK members that only private (or symmetric) keys have.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Something wrong with a JWKS document. Messages name the key (`keys[1]`, and its `kid`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON, or too large.
    #[error("jwks: {problem}")]
    InvalidJson {
        /// What is wrong.
        problem: String,
    },
    /// JSON, but not `{"keys": [...]}`.
    #[error("jwks: {problem}")]
    NotAKeySet {
        /// What is wrong.
        problem: String,
    },
    /// More than [`MAX_JWKS_KEYS`] keys.
    #[error("jwks: {count} keys, more than the {max} allowed")]
    TooManyKeys {
        /// Keys in the document.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// A key of a supported type is unusable.
    #[error("jwks: keys[{index}]{}: {problem}", kid_suffix(kid))]
    InvalidKey {
        /// Position in `keys`.
        index: usize,
        /// Its `kid`, if any.
        kid: Option<String>,
        /// What is wrong, e.g. `n is not base64url without padding`.
        problem: String,
    },
    /// A key carries private or symmetric key material.
    #[error("jwks: keys[{index}] contains private key material (`{member}`): publish only public keys")]
    PrivateKey {
        /// Position in `keys`.
        index: usize,
        /// The member, e.g. `d`.
        member: &'static str,
    },
    /// Two usable keys share a `kid`.
    #[error("jwks: two keys have kid `{kid}`")]
    DuplicateKid {
        /// The `kid`.
        kid: String,
    },
    /// No key in the set can verify RS256, ES256 or EdDSA signatures.
    #[error("jwks: no RSA, EC P-256 or Ed25519 signing key in the set")]
    NoUsableKeys,
}

impl JwksError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            JwksError::InvalidJson { .. } => "jwks_bad_json",
            JwksError::NotAKeySet { .. } => "jwks_malformed",
            JwksError::TooManyKeys { .. } => "jwks_too_many_keys",
            JwksError::InvalidKey { .. } => "jwks_key_invalid",
            JwksError::PrivateKey { .. } => "jwks_private_key",
            JwksError::DuplicateKid { .. } => "jwks_duplicate_kid",
            JwksError::NoUsableKeys => "jwks_no_usable_key",
        }
    }
}

fn kid_suffix(kid: &Option<String>) -> String {
    match kid {
        Some(kid) => format!(" (kid `{kid}`)"),
        None => String::new(),
    }
}

/// The verifying keys of one identity provider.
#[derive(Clone)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

/// One usable public key.
#[derive(Clone)]
pub(crate) struct Jwk {
    pub(crate) kid: Option<String>,
    /// The `alg` the key is restricted to, when the JWK says.
    pub(crate) alg: Option<JwsAlgorithm>,
    pub(crate) key: PublicKey,
}

/// The key itself; its type fixes the one algorithm it can verify.
#[derive(Clone)]
pub(crate) enum PublicKey {
    Rsa(Box<rsa::RsaPublicKey>),
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// The only algorithm this key verifies: RS256 for RSA, ES256 for P-256, EdDSA for Ed25519.
    pub(crate) fn algorithm(&self) -> JwsAlgorithm {
        match self {
            PublicKey::Rsa(_) => JwsAlgorithm::Rs256,
            PublicKey::P256(_) => JwsAlgorithm::Es256,
            PublicKey::Ed25519(_) => JwsAlgorithm::EdDsa,
        }
    }

    /// `kty`/`crv` as a JWK names them.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            PublicKey::Rsa(_) => "RSA",
            PublicKey::P256(_) => "EC P-256",
            PublicKey::Ed25519(_) => "OKP Ed25519",
        }
    }
}

impl Jwk {
    /// Whether this key may verify an `alg` signature: its type must be the algorithm's, and
    /// its own `alg`, if any, the same.
    pub(crate) fn verifies(&self, alg: JwsAlgorithm) -> bool {
        self.key.algorithm() == alg && self.alg.is_none_or(|own| own == alg)
    }
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|key| format!("{} {}", key.key.type_name(), key.kid.as_deref().unwrap_or("(no kid)")))
            .collect();
        f.debug_struct("Jwks").field("keys", &keys).finish()
    }
}

impl Jwks {
    /// Reads a JWKS document, `{"keys": [...]}`.
    pub fn from_json(json: &str) -> Result<Jwks, JwksError> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(JwksError::InvalidJson {
                problem: format!("{} bytes, more than the {MAX_JWKS_BYTES} allowed", json.len()),
            });
        }
        if !crate::jwt::depth_within(json.as_bytes(), 16) {
            return Err(JwksError::InvalidJson { problem: "nested more than 16 levels deep".into() });
        }
        let value: Value =
            serde_json::from_str(json).map_err(|e| JwksError::InvalidJson { problem: crate::json_error_detail(&e) })?;
        Jwks::from_value(&value)
    }

    /// Reads a JWKS already parsed as JSON.
    pub fn from_value(value: &Value) -> Result<Jwks, JwksError> {
        let Some(object) = value.as_object() else {
            return Err(JwksError::NotAKeySet { problem: "expected a JSON object with a `keys` array".into() });
        };
        let Some(entries) = object.get("keys").and_then(Value::as_array) else {
            return Err(JwksError::NotAKeySet { problem: "`keys` is missing or not an array".into() });
        };
        if entries.len() > MAX_JWKS_KEYS {
            return Err(JwksError::TooManyKeys { count: entries.len(), max: MAX_JWKS_KEYS });
        }
        let mut keys: Vec<Jwk> = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let Some(key) = read_key(index, entry)? else {
                continue;
            };
            if let Some(kid) = &key.kid
                && keys.iter().any(|other| other.kid.as_ref() == Some(kid))
            {
                return Err(JwksError::DuplicateKid { kid: printable(kid, 64) });
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys);
        }
        Ok(Jwks { keys })
    }

    /// How many usable keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no usable key (never true for a set that parsed).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `kid`s of the usable keys (`None` for a key without one).
    pub fn key_ids(&self) -> impl Iterator<Item = Option<&str>> {
        self.keys.iter().map(|key| key.kid.as_deref())
    }

    /// Whether some key can verify `alg` signatures.
    pub fn supports(&self, alg: JwsAlgorithm) -> bool {
        self.keys.iter().any(|key| key.verifies(alg))
    }

    pub(crate) fn keys(&self) -> &[Jwk] {
        &self.keys
    }
}

/// One `keys[index]` entry: `Ok(None)` for a key that is not for us (encryption keys, other key
/// types and curves, other algorithms), an error for a broken key of a type we use.
fn read_key(index: usize, entry: &Value) -> Result<Option<Jwk>, JwksError> {
    let Some(jwk) = entry.as_object() else {
        return Err(JwksError::InvalidKey { index, kid: None, problem: "not a JSON object".into() });
    };
    for member in PRIVATE_MEMBERS {
        if jwk.contains_key(member) {
            return Err(JwksError::PrivateKey { index, member });
        }
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(JwksError::InvalidKey { index, kid: None, problem: "kid is not a string".into() }),
    };
    let invalid =
        |problem: String| JwksError::InvalidKey { index, kid: kid.as_deref().map(|k| printable(k, 64)), problem };

    let text = |member: &str| -> Result<Option<&str>, JwksError> {
        match jwk.get(member) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(invalid(format!("{member} is not a string"))),
        }
    };
    if text("use")?.is_some_and(|usage| usage != "sig") {
        return Ok(None);
    }
    if let Some(ops) = jwk.get("key_ops") {
        let Some(ops) = ops.as_array() else {
            return Err(invalid("key_ops is not an array".into()));
        };
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Ok(None);
        }
    }
    let alg = match text("alg")? {
        None => None,
        Some(name) => match JwsAlgorithm::parse(name) {
            Some(alg) => Some(alg),
            // Meant for another algorithm (RS384, PS256, RSA-OAEP, ...): RFC 7517 §4.4.
            None => return Ok(None),
        },
    };
    let Some(kty) = text("kty")? else {
        return Err(invalid("kty is missing".into()));
    };
    let bytes = |member: &str| -> Result<Vec<u8>, JwksError> {
        let Some(encoded) = text(member)? else {
            return Err(invalid(format!("{member} is missing")));
        };
        URL_SAFE_NO_PAD.decode(encoded).map_err(|_| invalid(format!("{member} is not base64url without padding")))
    };
    let key = match kty {
        "RSA" => {
            let n = bytes("n")?;
            let e = bytes("e")?;
            PublicKey::Rsa(Box::new(rsa_key(&n, &e).map_err(invalid)?))
        }
        "EC" => {
            if text("crv")? != Some("P-256") {
                return Ok(None);
            }
            let x = bytes("x")?;
            let y = bytes("y")?;
            if x.len() != 32 || y.len() != 32 {
                return Err(invalid("x and y of a P-256 key must be 32 bytes each".into()));
            }
            let mut sec1 = Vec::with_capacity(65);
            sec1.push(0x04);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .map_err(|_| invalid("x, y is not a point on P-256".into()))?;
            PublicKey::P256(key)
        }
        "OKP" => {
            if text("crv")? != Some("Ed25519") {
                return Ok(None);
            }
            let x = bytes("x")?;
            let Ok(x) = <[u8; 32]>::try_from(x.as_slice()) else {
                return Err(invalid("x of an Ed25519 key must be 32 bytes".into()));
            };
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                .map_err(|_| invalid("x is not an Ed25519 public key".into()))?;
            if key.is_weak() {
                return Err(invalid("x is a weak (small-order) Ed25519 key".into()));
            }
            PublicKey::Ed25519(key)
        }
        _ => return Ok(None),
    };
    if alg.is_some_and(|alg| alg != key.algorithm()) {
        return Err(invalid(format!(
            "alg {} does not fit a {} key",
            alg.map_or("", JwsAlgorithm::name),
            key.type_name()
        )));
    }
    Ok(Some(Jwk { kid, alg, key }))
}

fn rsa_key(n: &[u8], e: &[u8]) -> Result<rsa::RsaPublicKey, String> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let bits = n.len() * 8;
    let size_problem = || format!("RSA modulus n must have {} to {} bits", RSA_BITS.start(), RSA_BITS.end());
    if bits > *RSA_BITS.end() || bits < *RSA_BITS.start() {
        return Err(size_problem());
    }
    if e.is_empty() || e.len() > 8 {
        return Err("RSA exponent e is zero or longer than 64 bits".into());
    }
    let n = rsa::BoxedUint::from_be_slice_vartime(n);
    let e = rsa::BoxedUint::from_be_slice_vartime(e);
    rsa::RsaPublicKey::new_with_size_limits(n, e, RSA_BITS).map_err(|error| match error {
        rsa::Error::ModulusTooSmall | rsa::Error::ModulusTooLarge => size_problem(),
        other => format!("unusable RSA key: {other}"),
    })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}
