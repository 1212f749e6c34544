//! Bearer tokens signed in the test with RSA-2048, P-256 and Ed25519 keys.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use rsa::pkcs8::EncodePublicKey;
use serde_json::{Value, json};
use sha2::Sha256;
use veritrail_access::{IdentityProvider, JwsAlgorithm, JwtError, TokenVerifier, VerifiedToken, unverified_issuer};

use crate::support::{Signer, b64, jwks, keys, other_rsa, raw_token, token};

const ISSUER: &str = "https://login.example.com/realms/acme";
const AUDIENCE: &str = "veritrail";
const NOW: i64 = 1_800_000_000;

fn now() -> Timestamp {
    Timestamp::from_second(NOW).unwrap()
}

fn provider() -> IdentityProvider {
    IdentityProvider::from_json(
        &json!({
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "allowed_algorithms": ["RS256", "ES256", "EdDSA"],
            "jwks": jwks(),
            "role_mapping": {"audit-admins": "super_admin", "auditors": "auditor", "soc": "soc_analyst"},
            "email_claim": "email",
        })
        .to_string(),
    )
    .unwrap()
}

fn verifier() -> TokenVerifier {
    provider().verifier().unwrap()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "email": "ada@example.com",
        "exp": NOW + 300,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "roles": ["auditors", "unmapped", "auditors", "soc"],
    })
}

fn header(signer: &Signer, kid: &str) -> Value {
    json!({"alg": signer.alg(), "typ": "JWT", "kid": kid})
}

/// The three keys of the provider with their `kid`s.
fn each_key() -> [(&'static Signer, &'static str); 3] {
    let keys = keys();
    [(&keys.rsa, "rsa-1"), (&keys.ec, "ec-1"), (&keys.ed, "ed-1")]
}

fn verify(token: &str) -> Result<VerifiedToken, JwtError> {
    verifier().verify(token, now())
}

fn verify_claims(claims: &Value) -> Result<VerifiedToken, JwtError> {
    verify(&token(&keys().rsa, &header(&keys().rsa, "rsa-1"), claims))
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

#[test]
fn valid_tokens_of_each_algorithm() {
    for (signer, kid) in each_key() {
        let verified = verify(&token(signer, &header(signer, kid), &claims())).unwrap();
        assert_eq!(verified.subject, "user-42");
        assert_eq!(verified.email.as_deref(), Some("ada@example.com"));
        assert_eq!(verified.roles, ["auditor", "soc_analyst"], "mapped, deduplicated, unmapped values dropped");
        assert_eq!(verified.expires_at, Timestamp::from_second(NOW + 300).unwrap());
        assert_eq!(verified.algorithm.name(), signer.alg());
        assert_eq!(verified.key_id.as_deref(), Some(kid));
        assert_eq!(verified.claims["sub"], "user-42");
    }
}

#[test]
fn forged_signatures_fail() {
    let keys = keys();
    let forgers =
        [(other_rsa(), "rsa-1"), (&Signer::p256("attacker ec"), "ec-1"), (&Signer::ed25519("attacker ed"), "ed-1")];
    for (forger, kid) in forgers {
        assert_eq!(verify(&token(forger, &header(forger, kid), &claims())).unwrap_err(), JwtError::BadSignature);
    }
    // One flipped bit anywhere in the signature.
    for (signer, kid) in each_key() {
        let good = token(signer, &header(signer, kid), &claims());
        let (signed, signature) = good.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        for position in [0, bytes.len() / 2, bytes.len() - 1] {
            bytes[position] ^= 0x01;
            let forged = format!("{signed}.{}", b64(&bytes));
            assert_eq!(verify(&forged).unwrap_err(), JwtError::BadSignature, "{} byte {position}", signer.alg());
            bytes[position] ^= 0x01;
        }
    }
    // A signature moved from another token.
    let a = token(&keys.rsa, &header(&keys.rsa, "rsa-1"), &claims());
    let b = token(&keys.rsa, &header(&keys.rsa, "rsa-1"), &with(claims(), "sub", json!("admin")));
    let spliced = format!("{}.{}", b.rsplit_once('.').unwrap().0, a.rsplit_once('.').unwrap().1);
    assert_eq!(verify(&spliced).unwrap_err(), JwtError::BadSignature);
}

#[test]
fn tampered_claims_or_header_fail() {
    for (signer, kid) in each_key() {
        let good = token(signer, &header(signer, kid), &claims());
        let segments: Vec<&str> = good.split('.').collect();
        let promoted = with(claims(), "roles", json!(["audit-admins"]));
        let tampered = format!("{}.{}.{}", segments[0], b64(promoted.to_string().as_bytes()), segments[2]);
        assert_eq!(verify(&tampered).unwrap_err(), JwtError::BadSignature, "{}", signer.alg());

        let later = with(claims(), "exp", json!(NOW + 999_999));
        let tampered = format!("{}.{}.{}", segments[0], b64(later.to_string().as_bytes()), segments[2]);
        assert_eq!(verify(&tampered).unwrap_err(), JwtError::BadSignature);

        let mut other_header = header(signer, kid);
        other_header["typ"] = json!("at+jwt");
        let tampered = format!("{}.{}.{}", b64(other_header.to_string().as_bytes()), segments[1], segments[2]);
        assert_eq!(verify(&tampered).unwrap_err(), JwtError::BadSignature);
    }
}

#[test]
fn expiry_with_leeway() {
    let at = |exp: i64| verify_claims(&with(claims(), "exp", json!(exp)));
    assert!(at(NOW + 1).is_ok());
    assert!(at(NOW - 59).is_ok(), "within the 60 s leeway");
    let expired = at(NOW - 60).unwrap_err();
    assert_eq!(expired, JwtError::Expired { expired_at: Timestamp::from_second(NOW - 60).unwrap() });
    assert_eq!(expired.code(), "token_expired");
    assert!(at(NOW - 86_400).is_err());
    assert!(verify_claims(&with(claims(), "exp", json!(NOW as f64 + 0.5))).is_ok(), "fractional NumericDate");

    let missing = verify_claims(&without(claims(), "exp")).unwrap_err();
    assert_eq!(missing, JwtError::MissingClaim { claim: "exp".into() });
    for bad in [json!("1800000300"), json!(null), json!(true), json!(1e300), json!([1])] {
        let error = verify_claims(&with(claims(), "exp", bad.clone())).unwrap_err();
        assert_eq!(error.code(), "token_claim_invalid", "{bad}");
    }

    let strict = IdentityProvider { leeway_seconds: 0, ..provider() }.verifier().unwrap();
    let token = token(&keys().rsa, &header(&keys().rsa, "rsa-1"), &with(claims(), "exp", json!(NOW)));
    assert_eq!(strict.verify(&token, now()).unwrap_err().code(), "token_expired", "exp is exclusive");
}

#[test]
fn not_yet_valid_and_issued_in_the_future() {
    let nbf = |nbf: i64| verify_claims(&with(claims(), "nbf", json!(nbf)));
    assert!(nbf(NOW + 60).is_ok(), "within the leeway");
    let error = nbf(NOW + 61).unwrap_err();
    assert_eq!(error, JwtError::NotYetValid { not_before: Timestamp::from_second(NOW + 61).unwrap() });
    assert_eq!(error.code(), "token_not_yet_valid");

    let iat = |iat: i64| verify_claims(&with(claims(), "iat", json!(iat)));
    assert!(iat(NOW + 60).is_ok());
    assert_eq!(iat(NOW + 3600).unwrap_err().code(), "token_issued_in_future");
    assert!(verify_claims(&without(without(claims(), "iat"), "nbf")).is_ok(), "nbf and iat are optional");
}

#[test]
fn issuer_must_match_exactly() {
    for wrong in ["https://evil.example.com/realms/acme", "https://login.example.com/realms/acme/", ""] {
        let error = verify_claims(&with(claims(), "iss", json!(wrong))).unwrap_err();
        assert_eq!(error.code(), "token_wrong_issuer", "{wrong}");
    }
    assert_eq!(verify_claims(&without(claims(), "iss")).unwrap_err(), JwtError::MissingClaim { claim: "iss".into() });
    assert_eq!(verify_claims(&with(claims(), "iss", json!([ISSUER]))).unwrap_err().code(), "token_claim_invalid");
}

#[test]
fn audience_string_or_array() {
    let aud = |aud: Value| verify_claims(&with(claims(), "aud", aud));
    assert!(aud(json!(AUDIENCE)).is_ok());
    assert!(aud(json!(["account", AUDIENCE])).is_ok());
    assert_eq!(aud(json!("account")).unwrap_err(), JwtError::WrongAudience);
    assert_eq!(aud(json!(["account", "other"])).unwrap_err(), JwtError::WrongAudience);
    assert_eq!(aud(json!([])).unwrap_err(), JwtError::WrongAudience);
    assert_eq!(aud(json!("VERITRAIL")).unwrap_err(), JwtError::WrongAudience, "case-sensitive");
    assert_eq!(aud(json!([AUDIENCE, 7])).unwrap_err().code(), "token_claim_invalid");
    assert_eq!(aud(json!({"aud": AUDIENCE})).unwrap_err().code(), "token_claim_invalid");
    assert_eq!(verify_claims(&without(claims(), "aud")).unwrap_err().code(), "token_claim_missing");
}

#[test]
fn alg_none_is_refused() {
    let claims = b64(claims().to_string().as_bytes());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        for signature in ["", "c2ln"] {
            let error = verify(&format!("{header}.{claims}.{signature}")).unwrap_err();
            assert_eq!(error, JwtError::Unsigned, "{alg} {signature:?}");
            assert_eq!(error.code(), "token_unsigned");
        }
    }
}

/// The classic algorithm confusion: an attacker signs with HMAC, using the provider's public
/// key (in every usual encoding) as the secret.
#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    let Signer::Rsa(private) = &keys().rsa else { unreachable!() };
    let public = private.to_public_key();
    let der = public.to_public_key_der().unwrap();
    let pem = public.to_public_key_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let jwk = keys().rsa.jwk("rsa-1").to_string();
    let secrets: Vec<Vec<u8>> = vec![
        der.as_bytes().to_vec(),
        pem.as_bytes().to_vec(),
        jwk.into_bytes(),
        STANDARD.encode(der.as_bytes()).into_bytes(),
    ];
    for alg in ["HS256", "HS384", "HS512", "hs256"] {
        for secret in &secrets {
            let signed = format!(
                "{}.{}",
                b64(json!({"alg": alg, "typ": "JWT", "kid": "rsa-1"}).to_string().as_bytes()),
                b64(claims().to_string().as_bytes())
            );
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap();
            mac.update(signed.as_bytes());
            let token = format!("{signed}.{}", b64(&mac.finalize().into_bytes()));
            let error = verify(&token).unwrap_err();
            assert_eq!(error.code(), "token_hmac_refused", "{alg}");
            assert!(error.to_string().contains("HMAC"), "{error}");
        }
    }
}

#[test]
fn a_key_verifies_only_its_own_algorithm() {
    let keys = keys();
    // Each signer's alg, but the kid of a key of another type.
    let cases = [
        (&keys.ec, "rsa-1"),
        (&keys.ed, "rsa-1"),
        (&keys.rsa, "ec-1"),
        (&keys.rsa, "ed-1"),
        (&keys.ed, "ec-1"),
        (&keys.ec, "ed-1"),
    ];
    for (signer, kid) in cases {
        let error = verify(&token(signer, &header(signer, kid), &claims())).unwrap_err();
        assert_eq!(error.code(), "token_key_mismatch", "{} with {kid}", signer.alg());
        assert!(error.to_string().contains("cannot verify"), "{error}");
    }
    let error = verify(&token(&keys.ec, &header(&keys.ec, "rsa-1"), &claims())).unwrap_err();
    assert_eq!(error.to_string(), "key `rsa-1` is RSA and cannot verify ES256");

    // A JWK restricted to RS256 never verifies anything else, even were its type to fit.
    let mut restricted = keys.rsa.jwk("rsa-r");
    restricted["alg"] = json!("RS256");
    let jwks = json!({"keys": [restricted]});
    let verifier = IdentityProvider { jwks: Some(jwks), ..provider() }.verifier().unwrap();
    let ok = token(&keys.rsa, &header(&keys.rsa, "rsa-r"), &claims());
    assert!(verifier.verify(&ok, now()).is_ok());
}

#[test]
fn key_selection_by_kid() {
    let keys = keys();
    let error = verify(&token(&keys.rsa, &header(&keys.rsa, "rsa-2"), &claims())).unwrap_err();
    assert_eq!(error, JwtError::UnknownKey { kid: "rsa-2".into() });
    assert_eq!(error.code(), "token_unknown_kid");

    // No kid: fine when exactly one key fits the alg.
    for (signer, _) in each_key() {
        let header = json!({"alg": signer.alg()});
        assert!(verify(&token(signer, &header, &claims())).is_ok(), "{}", signer.alg());
    }
    // Not when two do.
    let jwks = json!({"keys": [keys.rsa.jwk("a"), other_rsa().jwk("b")]});
    let verifier = IdentityProvider { jwks: Some(jwks), ..provider() }.verifier().unwrap();
    let error = verifier.verify(&token(&keys.rsa, &json!({"alg": "RS256"}), &claims()), now()).unwrap_err();
    assert_eq!(error, JwtError::KeyIdRequired { candidates: 2 });
    assert!(verifier.verify(&token(other_rsa(), &json!({"alg": "RS256", "kid": "b"}), &claims()), now()).is_ok());
    // Nor when none does.
    let jwks = json!({"keys": [keys.rsa.jwk("a")]});
    let verifier = IdentityProvider { jwks: Some(jwks), ..provider() }.verifier().unwrap();
    let error = verifier.verify(&token(&keys.ed, &json!({"alg": "EdDSA"}), &claims()), now()).unwrap_err();
    assert_eq!(error, JwtError::NoKeyForAlgorithm { alg: JwsAlgorithm::EdDsa });
}

#[test]
fn embedded_keys_in_the_header_are_ignored() {
    let attacker = Signer::p256("attacker ec");
    let header = json!({"alg": "ES256", "kid": "ec-1", "jwk": attacker.jwk("ec-1"), "jku": "https://evil.example/jwks", "x5u": "https://evil.example/cert"});
    assert_eq!(verify(&token(&attacker, &header, &claims())).unwrap_err(), JwtError::BadSignature);
}

#[test]
fn disallowed_algorithms() {
    let rsa_only = IdentityProvider { allowed_algorithms: vec![JwsAlgorithm::Rs256], ..provider() }.verifier().unwrap();
    let keys = keys();
    for signer in [&keys.ec, &keys.ed] {
        let kid = if signer.alg() == "ES256" { "ec-1" } else { "ed-1" };
        let error = rsa_only.verify(&token(signer, &header(signer, kid), &claims()), now()).unwrap_err();
        assert_eq!(error.code(), "token_alg_not_allowed", "{}", signer.alg());
    }
    assert!(rsa_only.verify(&token(&keys.rsa, &header(&keys.rsa, "rsa-1"), &claims()), now()).is_ok());

    for alg in ["RS384", "RS512", "PS256", "ES384", "ES512", "Ed25519", "eddsa", "rs256", ""] {
        let header = json!({"alg": alg, "kid": "rsa-1"});
        let error = verify(&token(&keys.rsa, &header, &claims())).unwrap_err();
        assert_eq!(error.code(), "token_alg_unsupported", "{alg}");
    }
    let error = verify(&token(&keys.rsa, &json!({"kid": "rsa-1"}), &claims())).unwrap_err();
    assert_eq!(error.code(), "token_bad_header");
    let error = verify(&token(&keys.rsa, &json!({"alg": ["RS256"], "kid": "rsa-1"}), &claims())).unwrap_err();
    assert_eq!(error.code(), "token_bad_header");
}

#[test]
fn malformed_base64() {
    let good = token(&keys().rsa, &header(&keys().rsa, "rsa-1"), &claims());
    let segments: Vec<String> = good.split('.').map(str::to_string).collect();
    let mutate = |index: usize, f: &dyn Fn(&str) -> String| {
        let mut segments = segments.clone();
        segments[index] = f(&segments[index]);
        segments.join(".")
    };
    for index in 0..3 {
        let segment = ["header", "claims", "signature"][index];
        let variants = [
            mutate(index, &|s| format!("{s}=")),
            mutate(index, &|s| format!("{s}==")),
            mutate(index, &|s| s.replacen(|c: char| c.is_ascii_alphanumeric(), "+", 1)),
            mutate(index, &|s| s.replacen(|c: char| c.is_ascii_alphanumeric(), "/", 1)),
            mutate(index, &|s| format!(" {s}")),
            mutate(index, &|s| format!("{s}!")),
            // A length of 1 mod 4 is never base64.
            mutate(index, &|s| format!("{s}{}", "A".repeat((5 - s.len() % 4) % 4))),
        ];
        for token in variants {
            let error = verify(&token).unwrap_err();
            assert_eq!(error, JwtError::InvalidBase64 { segment }, "{token}");
        }
    }
    // Non-canonical trailing bits: "eyJ" + last char changed so the unused bits are set.
    let header = b64(b"{}");
    assert_eq!(header, "e30");
    let token = format!("e31.{}.{}", segments[1], segments[2]);
    assert_eq!(verify(&token).unwrap_err(), JwtError::InvalidBase64 { segment: "header" });
}

#[test]
fn malformed_json() {
    let rsa = &keys().rsa;
    let claims_bytes = claims().to_string();
    let header_bytes = header(rsa, "rsa-1").to_string();
    let cases: Vec<(Vec<u8>, Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), claims_bytes.clone().into_bytes(), "header"),
        (b"[\"RS256\"]".to_vec(), claims_bytes.clone().into_bytes(), "header"),
        (br#"{"alg":"RS256","kid":"rsa-1""#.to_vec(), claims_bytes.clone().into_bytes(), "header"),
        (br#"{"alg":"RS256","alg":"none","kid":"rsa-1"}"#.to_vec(), claims_bytes.clone().into_bytes(), "header"),
        (vec![0xff, 0xfe], claims_bytes.clone().into_bytes(), "header"),
        (header_bytes.clone().into_bytes(), b"not json".to_vec(), "claims"),
        (header_bytes.clone().into_bytes(), b"\"a string\"".to_vec(), "claims"),
        (header_bytes.clone().into_bytes(), b"{\"iss\":".to_vec(), "claims"),
        (header_bytes.clone().into_bytes(), format!("{claims_bytes} trailing").into_bytes(), "claims"),
    ];
    for (header, claims, segment) in cases {
        let error = verify(&raw_token(rsa, &header, &claims)).unwrap_err();
        assert_eq!(error.code(), "token_bad_json", "{}", String::from_utf8_lossy(&header));
        assert!(matches!(error, JwtError::InvalidJson { segment: s, .. } if s == segment), "{error}");
    }
    // A second `iss` (or `sub`) after the first is refused, not silently taken.
    let duplicated =
        format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"user","exp":{},"sub":"admin"}}"#, NOW + 300);
    let error = verify(&raw_token(rsa, header_bytes.as_bytes(), duplicated.as_bytes())).unwrap_err();
    assert!(error.to_string().contains("member `sub` appears twice"), "{error}");
}

#[test]
fn segment_counts() {
    let good = token(&keys().rsa, &header(&keys().rsa, "rsa-1"), &claims());
    let (signed, _) = good.rsplit_once('.').unwrap();
    assert_eq!(verify(signed).unwrap_err().code(), "token_malformed");
    assert_eq!(verify(&format!("{good}.x")).unwrap_err().code(), "token_malformed");
    assert_eq!(
        verify(&format!("{good}.x.y")).unwrap_err().to_string(),
        "malformed token: encrypted tokens (JWE) are not supported"
    );
    assert_eq!(verify(&format!("{signed}.")).unwrap_err(), JwtError::Unsigned);
    assert_eq!(verify(&format!(".{}", good.split_once('.').unwrap().1)).unwrap_err().code(), "token_malformed");
    for garbage in ["", ".", "..", "...", "a.b.c", "Bearer x", "\u{0}\u{0}\u{0}", "é.é.é"] {
        assert!(verify(garbage).is_err(), "{garbage:?}");
    }
}

#[test]
fn oversized_and_deep_tokens() {
    let rsa = &keys().rsa;
    let padded = with(claims(), "padding", json!("x".repeat(8 * 1024)));
    let big = token(rsa, &header(rsa, "rsa-1"), &padded);
    let error = verify(&big).unwrap_err();
    assert_eq!(error.code(), "token_too_long");
    assert!(error.to_string().starts_with("token is "), "{error}");

    let mut deep = json!("leaf");
    for _ in 0..20 {
        deep = json!([deep]);
    }
    let error = verify(&token(rsa, &header(rsa, "rsa-1"), &with(claims(), "deep", deep))).unwrap_err();
    assert_eq!(error, JwtError::TooDeep { segment: "claims", max: 16 });

    // Brackets inside strings do not count.
    let brackets = with(claims(), "note", json!("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{{{{{{{{{{{{{{{{{{{{"));
    assert!(verify(&token(rsa, &header(rsa, "rsa-1"), &brackets)).is_ok());

    let deep_header = b64(format!(r#"{{"alg":"RS256","x":{}1{}}}"#, "[".repeat(40), "]".repeat(40)).as_bytes());
    let error = verify(&format!("{deep_header}.e30.c2ln")).unwrap_err();
    assert_eq!(error, JwtError::TooDeep { segment: "header", max: 16 });
}

#[test]
fn header_crit_and_typ() {
    let rsa = &keys().rsa;
    let crit = json!({"alg": "RS256", "kid": "rsa-1", "crit": ["b64"], "b64": false});
    assert_eq!(verify(&token(rsa, &crit, &claims())).unwrap_err(), JwtError::CriticalHeader);
    for typ in ["JWT", "jwt", "at+jwt", "application/at+jwt", "application/jwt"] {
        let header = json!({"alg": "RS256", "kid": "rsa-1", "typ": typ});
        assert!(verify(&token(rsa, &header, &claims())).is_ok(), "{typ}");
    }
    for typ in [json!("dpop+jwt"), json!("logout+jwt"), json!("JOSE+JSON"), json!(1)] {
        let header = json!({"alg": "RS256", "kid": "rsa-1", "typ": typ});
        assert_eq!(verify(&token(rsa, &header, &claims())).unwrap_err().code(), "token_bad_header", "{typ}");
    }
    let header = json!({"alg": "RS256", "kid": 1});
    assert_eq!(verify(&token(rsa, &header, &claims())).unwrap_err().code(), "token_bad_header");
}

#[test]
fn subject_email_and_roles_claims() {
    assert_eq!(verify_claims(&without(claims(), "sub")).unwrap_err(), JwtError::MissingClaim { claim: "sub".into() });
    assert_eq!(verify_claims(&with(claims(), "sub", json!(""))).unwrap_err().code(), "token_claim_invalid");
    assert_eq!(verify_claims(&with(claims(), "sub", json!(42))).unwrap_err().code(), "token_claim_invalid");
    assert_eq!(verify_claims(&with(claims(), "email", json!(["a@b"]))).unwrap_err().code(), "token_claim_invalid");
    let no_email = verify_claims(&without(claims(), "email")).unwrap();
    assert_eq!(no_email.email, None);

    assert_eq!(verify_claims(&with(claims(), "roles", json!("audit-admins"))).unwrap().roles, ["super_admin"]);
    assert!(verify_claims(&without(claims(), "roles")).unwrap().roles.is_empty());
    assert!(verify_claims(&with(claims(), "roles", json!(["nobody"]))).unwrap().roles.is_empty());
    assert_eq!(verify_claims(&with(claims(), "roles", json!(["soc", 1]))).unwrap_err().code(), "token_claim_invalid");
    assert_eq!(
        verify_claims(&with(claims(), "roles", json!({"soc": true}))).unwrap_err().code(),
        "token_claim_invalid"
    );

    // Azure-style object id as subject, Keycloak-style nested roles.
    let config = IdentityProvider {
        subject_claim: "oid".into(),
        role_claim: "/realm_access/roles".into(),
        email_claim: None,
        ..provider()
    };
    let verifier = config.verifier().unwrap();
    let claims = with(with(claims(), "oid", json!("0000-1111")), "realm_access", json!({"roles": ["soc", "x"]}));
    let verified = verifier.verify(&token(&keys().rsa, &header(&keys().rsa, "rsa-1"), &claims), now()).unwrap();
    assert_eq!(verified.subject, "0000-1111");
    assert_eq!(verified.roles, ["soc_analyst"]);
    assert_eq!(verified.email, None, "no email claim configured");
}

#[test]
fn errors_never_quote_the_token() {
    let rsa = &keys().rsa;
    let good = token(rsa, &header(rsa, "rsa-1"), &claims());
    let signature = good.rsplit('.').next().unwrap().to_string();
    let attempts = [
        format!("{good}x"),
        good.replace(&signature, &signature[..signature.len() - 4]),
        token(rsa, &header(rsa, "rsa-1"), &with(claims(), "exp", json!(NOW - 1000))),
        token(rsa, &header(rsa, "nope"), &claims()),
    ];
    for attempt in attempts {
        let error = verify(&attempt).unwrap_err();
        for text in [error.to_string(), format!("{error:?}")] {
            assert!(!text.contains(&attempt) && !text.contains(&signature[..20]), "{text}");
        }
    }
}

/// Every single-character change of a valid token is refused, and nothing panics.
#[test]
fn mutations_never_verify_nor_panic() {
    let verifier = verifier();
    for (signer, kid) in each_key() {
        let good = token(signer, &header(signer, kid), &claims());
        let bytes = good.as_bytes();
        for position in 0..bytes.len() {
            for replacement in [b'A', b'_', b'.', b'='] {
                if bytes[position] == replacement {
                    continue;
                }
                let mut mutated = bytes.to_vec();
                mutated[position] = replacement;
                let mutated = String::from_utf8(mutated).unwrap();
                let result = verifier.verify(&mutated, now());
                // Base64 has a few encodings of the same final bits only when the last character's
                // unused bits change, which strict decoding refuses.
                assert!(result.is_err(), "{} position {position} -> {}", signer.alg(), replacement as char);
            }
        }
        for cut in 0..bytes.len() {
            assert!(verifier.verify(&good[..cut], now()).is_err());
        }
    }
}

#[test]
fn unverified_issuer_routes_only() {
    let rsa = &keys().rsa;
    let good = token(rsa, &header(rsa, "rsa-1"), &claims());
    assert_eq!(unverified_issuer(&good).as_deref(), Some(ISSUER));
    let forged = token(other_rsa(), &header(rsa, "rsa-1"), &with(claims(), "iss", json!("https://other")));
    assert_eq!(unverified_issuer(&forged).as_deref(), Some("https://other"), "read, not trusted");
    assert_eq!(unverified_issuer("garbage"), None);
    let (head, rest) = good.split_once('.').unwrap_or_default();
    let payload = rest.split_once('.').unwrap_or_default().0;
    let unsigned = format!("{head}.{payload}.");
    assert_eq!(unverified_issuer(&unsigned).as_deref(), Some(ISSUER), "an unsigned token is routed, then refused");
    assert_eq!(unverified_issuer(&format!("{unsigned}.x")), None, "four segments");
    assert_eq!(unverified_issuer(&format!("{head}.!!.sig")), None, "claims not base64url");
}
