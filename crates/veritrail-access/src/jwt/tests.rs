use super::*;

#[test]
fn depth_scan() {
    assert!(depth_within(b"{}", 1));
    assert!(!depth_within(b"{\"a\":[]}", 1));
    assert!(depth_within(b"{\"a\":[]}", 2));
    assert!(depth_within(br#"{"a":"[[[[[[\"[[[[["}"#, 1), "brackets in strings, escaped quotes");
    assert!(!depth_within(br#"{"a":"\\",[[[]]]}"#, 3), "an escaped backslash ends the string");
    assert!(depth_within(b"]]]]]]{}", 1), "stray closers do not go negative");
    assert!(!depth_within(&[b'['; 10_000], 16));
}

#[test]
fn algorithm_names() {
    assert_eq!(classify_alg("RS256"), Ok(JwsAlgorithm::Rs256));
    assert_eq!(classify_alg("ES256"), Ok(JwsAlgorithm::Es256));
    assert_eq!(classify_alg("EdDSA"), Ok(JwsAlgorithm::EdDsa));
    assert_eq!(classify_alg("none"), Err(JwtError::Unsigned));
    assert_eq!(classify_alg("hs512"), Err(JwtError::HmacRefused { alg: "hs512".into() }));
    assert_eq!(classify_alg("H"), Err(JwtError::UnsupportedAlgorithm { alg: "H".into() }));
    assert_eq!(classify_alg("é"), Err(JwtError::UnsupportedAlgorithm { alg: "é".into() }), "no slicing panic");
    let long = classify_alg(&"X".repeat(1000)).unwrap_err();
    assert!(long.to_string().len() < 100, "{long}");
    assert_eq!(
        serde_json::from_str::<Vec<JwsAlgorithm>>(r#"["EdDSA","RS256"]"#).unwrap(),
        [JwsAlgorithm::EdDsa, JwsAlgorithm::Rs256]
    );
    assert!(serde_json::from_str::<JwsAlgorithm>(r#""HS256""#).unwrap_err().to_string().contains("HMAC"));
}

#[test]
fn numeric_dates() {
    let claims = |value: Value| {
        let mut map = Map::new();
        map.insert("exp".into(), value);
        map
    };
    assert_eq!(numeric_date(&claims(json(1)), "exp").unwrap(), Some(Timestamp::from_second(1).unwrap()));
    assert_eq!(numeric_date(&claims(json(1.9)), "exp").unwrap(), Some(Timestamp::from_second(1).unwrap()));
    assert_eq!(numeric_date(&claims(json(-0.5)), "exp").unwrap(), Some(Timestamp::from_second(-1).unwrap()));
    assert_eq!(numeric_date(&Map::new(), "exp").unwrap(), None);
    for bad in [json(i64::MAX), json(1e300), json(u64::MAX), Value::String("1".into())] {
        assert_eq!(numeric_date(&claims(bad.clone()), "exp").unwrap_err().code(), "token_claim_invalid", "{bad}");
    }
}

fn json(value: impl Into<Value>) -> Value {
    value.into()
}

#[test]
fn distinct_object() {
    assert!(parse_object(br#"{"a":1,"b":{"a":1,"a":2}}"#, "claims").is_ok(), "only top-level duplicates matter");
    let error = parse_object(br#"{"a":1,"a":1}"#, "claims").unwrap_err();
    assert_eq!(error.code(), "token_bad_json");
    assert!(parse_object(b"null", "claims").is_err());
    assert!(parse_object(b"", "claims").is_err());
}
