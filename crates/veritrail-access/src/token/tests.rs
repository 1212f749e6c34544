use super::*;

const PEPPER: &[u8] = b"test pepper, 32 bytes or so......";

#[test]
fn mint_split_and_match() {
    for prefix in [API_KEY_PREFIX, SESSION_PREFIX] {
        let minted = mint_token(prefix, PEPPER).unwrap();
        assert!(minted.token.starts_with(prefix));
        assert_eq!(minted.id.len(), TOKEN_ID_CHARS);
        let parts = split_token(prefix, &minted.token).unwrap();
        assert_eq!(parts.id, minted.id);
        assert_eq!(parts.secret.len(), TOKEN_SECRET_CHARS);
        assert!(parts.secret.bytes().all(|b| BASE32.contains(&b)));
        assert!(secret_matches(PEPPER, parts.secret, &minted.secret_hash));
        assert!(!secret_matches(b"another pepper", parts.secret, &minted.secret_hash));
        let mut flipped = parts.secret.to_string();
        flipped.replace_range(0..1, if flipped.starts_with('0') { "1" } else { "0" });
        assert!(!secret_matches(PEPPER, &flipped, &minted.secret_hash));
    }
}

#[test]
fn tokens_are_unique() {
    let a = mint_token(SESSION_PREFIX, PEPPER).unwrap();
    let b = mint_token(SESSION_PREFIX, PEPPER).unwrap();
    assert_ne!(a.id, b.id);
    assert_ne!(a.token, b.token);
    assert_ne!(a.secret_hash, b.secret_hash);
}

/// The server has stored HMAC-SHA-256(pepper, secret) for API keys since the start.
#[test]
fn hash_is_hmac_sha256_of_the_secret() {
    // RFC 4231 test case 2.
    let hash = hash_secret(b"Jefe", "what do ya want for nothing?");
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

#[test]
fn split_refuses_other_shapes() {
    let minted = mint_token(API_KEY_PREFIX, PEPPER).unwrap();
    assert!(split_token(SESSION_PREFIX, &minted.token).is_err(), "an API key is not a session");
    let session = mint_token(SESSION_PREFIX, PEPPER).unwrap();
    assert!(split_token(API_KEY_PREFIX, &session.token).is_err(), "a session is not an API key");
    for bad in ["", "vt_", "vt_abc", "vt__secret", "vt_abc_", "xx_abc_def", "VT_abc_def"] {
        let error = split_token(API_KEY_PREFIX, bad).unwrap_err();
        assert_eq!(error.code(), "token_malformed", "{bad}");
    }
    assert!(split_token(API_KEY_PREFIX, &format!("vt_abc_{}", "x".repeat(MAX_TOKEN_LEN))).is_err());
    // Secrets may contain `_` (split at the first one after the id).
    assert_eq!(split_token(API_KEY_PREFIX, "vt_id_se_cret").unwrap().secret, "se_cret");
}

#[test]
fn prefix_and_pepper_are_checked() {
    for prefix in ["", "_", "vt", "VT_", "v1_", "toolongprefix_", "vt__"] {
        assert_eq!(mint_token(prefix, PEPPER).unwrap_err(), TokenError::InvalidPrefix, "{prefix:?}");
    }
    assert_eq!(mint_token("vt_", b"").unwrap_err().code(), "token_pepper_empty");
}

#[test]
fn debug_hides_secrets() {
    let minted = mint_token(SESSION_PREFIX, PEPPER).unwrap();
    let secret = minted.token.rsplit('_').next().unwrap().to_string();
    let debug = format!("{minted:?}");
    assert!(!debug.contains(&secret) && debug.contains(&minted.id), "{debug}");
    let parts = split_token(SESSION_PREFIX, &minted.token).unwrap();
    assert!(!format!("{parts:?}").contains(&secret));
}
