//! JWKS documents and identity-provider configurations.

use serde_json::{Value, json};
use veritrail_access::{IdentityProvider, Jwks, JwksError, JwsAlgorithm, ProviderError};

use crate::support::{b64, jwks, keys};

fn parse(value: &Value) -> Result<Jwks, JwksError> {
    Jwks::from_json(&value.to_string())
}

fn code(value: &Value) -> &'static str {
    parse(value).unwrap_err().code()
}

#[test]
fn reads_the_three_key_types() {
    let set = parse(&jwks()).unwrap();
    assert_eq!(set.len(), 3);
    assert_eq!(set.key_ids().collect::<Vec<_>>(), [Some("rsa-1"), Some("ec-1"), Some("ed-1")]);
    for alg in JwsAlgorithm::ALL {
        assert!(set.supports(alg));
    }
    assert_eq!(format!("{set:?}"), r#"Jwks { keys: ["RSA rsa-1", "EC P-256 ec-1", "OKP Ed25519 ed-1"] }"#);
}

#[test]
fn skips_keys_that_are_not_for_signatures_with_our_algorithms() {
    let keys = keys();
    let mut encryption = keys.rsa.jwk("enc");
    encryption["use"] = json!("enc");
    let mut oaep = keys.rsa.jwk("oaep");
    oaep.as_object_mut().unwrap().remove("use");
    oaep["alg"] = json!("RSA-OAEP");
    let mut ps256 = keys.rsa.jwk("ps");
    ps256["alg"] = json!("PS256");
    let mut wrap_only = keys.rsa.jwk("wrap");
    wrap_only["key_ops"] = json!(["wrapKey"]);
    let p384 = json!({"kty": "EC", "crv": "P-384", "kid": "p384", "x": b64(&[1; 48]), "y": b64(&[2; 48])});
    let x25519 = json!({"kty": "OKP", "crv": "X25519", "kid": "x", "x": b64(&[9; 32])});
    let unknown = json!({"kty": "AKP", "kid": "pq", "pub": "abc"});
    let mut with_x5c = keys.rsa.jwk("signing");
    with_x5c["x5c"] = json!(["MIIC..."]);
    with_x5c["x5t"] = json!("abc");
    with_x5c["alg"] = json!("RS256");
    with_x5c["key_ops"] = json!(["verify"]);

    let set = parse(&json!({"keys": [encryption, oaep, ps256, wrap_only, p384, x25519, unknown, with_x5c]})).unwrap();
    assert_eq!(set.key_ids().collect::<Vec<_>>(), [Some("signing")]);
    assert!(set.supports(JwsAlgorithm::Rs256) && !set.supports(JwsAlgorithm::Es256));
}

#[test]
fn refuses_private_and_symmetric_keys() {
    let mut private = keys().rsa.jwk("k");
    private["d"] = json!("c2VjcmV0");
    let error = parse(&json!({"keys": [private]})).unwrap_err();
    assert_eq!(error, JwksError::PrivateKey { index: 0, member: "d" });
    assert_eq!(error.to_string(), "jwks: keys[0] contains private key material (`d`): publish only public keys");
    assert!(!error.to_string().contains("c2VjcmV0"));

    let symmetric = json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"});
    assert_eq!(code(&json!({"keys": [keys().ec.jwk("ec"), symmetric]})), "jwks_private_key");
}

#[test]
fn broken_keys_are_named() {
    let keys = keys();
    let mut padded = keys.rsa.jwk("padded");
    padded["e"] = json!("AQAB=");
    let error = parse(&json!({"keys": [padded]})).unwrap_err();
    assert_eq!(error.to_string(), "jwks: keys[0] (kid `padded`): e is not base64url without padding");

    let small = json!({"kty": "RSA", "kid": "small", "n": b64(&[0xc5; 128]), "e": "AQAB"});
    let error = parse(&json!({"keys": [keys.ec.jwk("ok"), small]})).unwrap_err();
    assert_eq!(error.to_string(), "jwks: keys[1] (kid `small`): RSA modulus n must have 2048 to 8192 bits");

    let even = json!({"kty": "RSA", "n": b64(&[0xc4; 256]), "e": "AQAB"});
    assert_eq!(code(&json!({"keys": [even]})), "jwks_key_invalid");
    let huge = json!({"kty": "RSA", "n": b64(&[0xc5; 1025]), "e": "AQAB"});
    assert_eq!(code(&json!({"keys": [huge]})), "jwks_key_invalid");
    let no_e = json!({"kty": "RSA", "n": b64(&[0xc5; 256])});
    assert!(parse(&json!({"keys": [no_e]})).unwrap_err().to_string().contains("e is missing"));

    let off_curve = json!({"kty": "EC", "crv": "P-256", "kid": "bad", "x": b64(&[1; 32]), "y": b64(&[1; 32])});
    assert!(parse(&json!({"keys": [off_curve]})).unwrap_err().to_string().contains("not a point on P-256"));
    let short = json!({"kty": "EC", "crv": "P-256", "x": b64(&[1; 31]), "y": b64(&[1; 32])});
    assert_eq!(code(&json!({"keys": [short]})), "jwks_key_invalid");

    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = json!({"kty": "OKP", "crv": "Ed25519", "kid": "weak", "x": b64(&identity)});
    assert!(parse(&json!({"keys": [weak]})).unwrap_err().to_string().contains("weak"));
    let short = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[1; 31])});
    assert_eq!(code(&json!({"keys": [short]})), "jwks_key_invalid");

    let mut mismatched = keys.ec.jwk("ec");
    mismatched["alg"] = json!("RS256");
    let error = parse(&json!({"keys": [mismatched]})).unwrap_err();
    assert_eq!(error.to_string(), "jwks: keys[0] (kid `ec`): alg RS256 does not fit a EC P-256 key");

    assert_eq!(code(&json!({"keys": [{"kty": "RSA", "kid": 7, "n": "AQAB", "e": "AQAB"}]})), "jwks_key_invalid");
    assert_eq!(code(&json!({"keys": [{"n": "AQAB"}]})), "jwks_key_invalid");
    assert_eq!(code(&json!({"keys": ["RSA"]})), "jwks_key_invalid");
}

#[test]
fn set_level_errors() {
    let keys = keys();
    assert_eq!(code(&json!({"keys": [keys.rsa.jwk("a"), keys.ec.jwk("a")]})), "jwks_duplicate_kid");
    assert_eq!(code(&json!({"keys": []})), "jwks_no_usable_key");
    assert_eq!(code(&json!({"keys": [{"kty": "oct-less", "kid": "x"}]})), "jwks_no_usable_key");
    assert_eq!(code(&json!({"keys": {}})), "jwks_malformed");
    assert_eq!(code(&json!({"key": []})), "jwks_malformed");
    assert_eq!(code(&json!([keys.rsa.jwk("a")])), "jwks_malformed");
    let many: Vec<Value> = (0..65).map(|i| keys.ed.jwk(&format!("k{i}"))).collect();
    assert_eq!(code(&json!({ "keys": many })), "jwks_too_many_keys");
    assert_eq!(Jwks::from_json("{\"keys\": [").unwrap_err().code(), "jwks_bad_json");
    assert_eq!(Jwks::from_json(&" ".repeat(300 * 1024)).unwrap_err().code(), "jwks_bad_json");
    let deep = format!("{{\"keys\":[{}]}}", "[".repeat(100) + &"]".repeat(100));
    assert_eq!(Jwks::from_json(&deep).unwrap_err().code(), "jwks_bad_json");
    // Keys without kid are fine (selected by alg).
    assert_eq!(
        parse(&json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": keys.ed.jwk("x")["x"]}]})).unwrap().len(),
        1
    );
}

fn config(overrides: Value) -> Value {
    let mut config = json!({
        "issuer": "https://idp.example.com",
        "audience": "veritrail",
        "allowed_algorithms": ["RS256"],
        "jwks": jwks(),
    });
    for (name, value) in overrides.as_object().unwrap() {
        if value.is_null() {
            config.as_object_mut().unwrap().remove(name);
        } else {
            config[name] = value.clone();
        }
    }
    config
}

fn provider_error(overrides: Value) -> ProviderError {
    match IdentityProvider::from_json(&config(overrides).to_string()) {
        Ok(provider) => provider.verifier().unwrap_err(),
        Err(error) => error,
    }
}

#[test]
fn provider_defaults() {
    let provider = IdentityProvider::from_json(&config(json!({})).to_string()).unwrap();
    assert_eq!(provider.role_claim, "roles");
    assert_eq!(provider.subject_claim, "sub");
    assert_eq!(provider.email_claim, None);
    assert_eq!(provider.leeway_seconds, 60);
    assert!(provider.role_mapping.is_empty());
    assert_eq!(provider.verifier().unwrap().issuer(), "https://idp.example.com");
}

#[test]
fn provider_jwks_may_be_a_json_string() {
    let inline = config(json!({"jwks": jwks().to_string()}));
    let provider = IdentityProvider::from_json(&inline.to_string()).unwrap();
    assert!(provider.verifier().is_ok());
}

#[test]
fn provider_refuses_hmac_and_none_when_configured() {
    for (alg, fragment) in [("HS256", "HMAC"), ("none", "alg none"), ("RS512", "not supported")] {
        let error = provider_error(json!({"allowed_algorithms": ["RS256", alg]}));
        assert_eq!(error.code(), "idp_config_invalid", "{alg}");
        assert!(error.to_string().contains(fragment), "{alg}: {error}");
    }
}

#[test]
fn provider_fields_are_checked() {
    let cases = [
        (json!({"issuer": ""}), "idp_field_invalid", "issuer: must not be empty"),
        (json!({"audience": " "}), "idp_field_invalid", "audience: must not be empty"),
        (json!({"issuer": "a\nb"}), "idp_field_invalid", "issuer: must not contain control characters"),
        (json!({"allowed_algorithms": []}), "idp_field_invalid", "allowed_algorithms: must list at least one"),
        (json!({"allowed_algorithms": ["RS256", "RS256"]}), "idp_field_invalid", "RS256 is listed twice"),
        (
            json!({"role_mapping": {"admins": "Super Admin"}}),
            "idp_field_invalid",
            "role_mapping.admins: `Super Admin` is not a valid role name",
        ),
        (json!({"leeway_seconds": 601}), "idp_field_invalid", "leeway_seconds: 601 is more than the 600 allowed"),
        (json!({"role_claim": ""}), "idp_field_invalid", "role_claim"),
        (json!({"subject_claim": ""}), "idp_field_invalid", "subject_claim"),
        (json!({"email_claim": ""}), "idp_field_invalid", "email_claim"),
        (json!({"jwks": null}), "idp_field_invalid", "jwks: missing"),
        (json!({"jwks_url": "https://idp.example.com/keys"}), "idp_field_invalid", "not both"),
        (json!({"jwks": null, "jwks_url": "ftp://idp.example.com/k"}), "idp_field_invalid", "http:// or https://"),
        (json!({"jwks": null, "jwks_url": "https://u:p@idp/k"}), "idp_field_invalid", "without credentials"),
        (json!({"jwks": null, "jwks_url": "https:///k"}), "idp_field_invalid", "must name a host"),
        (
            json!({"jwks": null, "jwks_url": "https://idp.example.com/keys"}),
            "idp_field_invalid",
            "TokenVerifier::with_jwks",
        ),
        (
            json!({"allowed_algorithms": ["ES256"], "jwks": {"keys": [keys().rsa.jwk("r")]}}),
            "idp_field_invalid",
            "jwks: no key can verify ES256",
        ),
        (json!({"jwks": {"keys": []}}), "jwks_no_usable_key", "jwks: no RSA"),
        (json!({"jwks": "not json"}), "jwks_bad_json", "jwks:"),
        (json!({"issuer": null}), "idp_config_invalid", "missing field `issuer`"),
        (json!({"client_secret": "s3cret"}), "idp_config_invalid", "unknown field `client_secret`"),
        (json!({"leeway_seconds": -1}), "idp_config_invalid", "invalid value"),
    ];
    for (overrides, code, fragment) in cases {
        let error = provider_error(overrides.clone());
        assert_eq!(error.code(), code, "{overrides}: {error}");
        assert!(error.to_string().contains(fragment), "{overrides}: {error}");
        assert!(!error.to_string().contains("s3cret"));
    }
}

#[test]
fn provider_with_a_jwks_url_checks_its_key_source() {
    let provider = IdentityProvider::from_json(
        &config(json!({"jwks": null, "jwks_url": "https://idp.example.com/keys"})).to_string(),
    )
    .unwrap();
    provider.check_key_source().unwrap();
    let keys = Jwks::from_value(&jwks()).unwrap();
    assert!(veritrail_access::TokenVerifier::with_jwks(&provider, keys).is_ok());
}

#[test]
fn provider_round_trips_through_serde() {
    let provider =
        IdentityProvider::from_json(&config(json!({"allowed_algorithms": ["EdDSA", "ES256"]})).to_string()).unwrap();
    let text = serde_json::to_string(&provider).unwrap();
    assert!(text.contains(r#""allowed_algorithms":["EdDSA","ES256"]"#), "{text}");
    assert_eq!(IdentityProvider::from_json(&text).unwrap(), provider);
}
