use super::*;

#[test]
fn empty_root_is_sha256_of_nothing() {
    assert_eq!(empty_root().to_hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

#[test]
fn leaf_and_node_hashes_match_transparency_dev_vectors() {
    // testonly/constants.go: leaf hashes of the inputs "" and 0x00, and their parent.
    let leaf0 = leaf_hash(b"");
    let leaf1 = leaf_hash(&[0x00]);
    assert_eq!(leaf0.to_hex(), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    assert_eq!(leaf1.to_hex(), "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7");
    assert_eq!(node_hash(&leaf0, &leaf1).to_hex(), "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125");
}

#[test]
fn base64_round_trip_and_strictness() {
    let hash = leaf_hash(b"veritrail");
    let text = hash.to_base64();
    assert_eq!(text.len(), 44);
    assert_eq!(Hash::from_base64(&text), Ok(hash));

    assert_eq!(Hash::from_base64("not base64!"), Err(HashDecodeError::Base64));
    assert_eq!(Hash::from_base64(text.trim_end_matches('=')), Err(HashDecodeError::Base64));
    assert_eq!(Hash::from_base64("AAAA"), Err(HashDecodeError::Length(3)));
    // 32 zero bytes end in "A=" ; "B=" sets trailing bits that carry no data.
    let zero = Hash([0; 32]).to_base64();
    let non_canonical = format!("{}B=", &zero[..42]);
    assert_eq!(Hash::from_base64(&non_canonical), Err(HashDecodeError::Base64));
}

#[test]
fn hex_round_trip_and_errors() {
    let hash = leaf_hash(b"x");
    assert_eq!(Hash::from_hex(&hash.to_hex()), Ok(hash));
    assert_eq!(Hash::from_hex(&hash.to_hex().to_uppercase()), Ok(hash));
    assert_eq!(Hash::from_hex("abc"), Err(HashDecodeError::Length(1)));
    assert_eq!(Hash::from_hex(&"g".repeat(64)), Err(HashDecodeError::Hex));
    // A multi-byte character must not split a pair into a panic.
    assert!(Hash::from_hex(&format!("{}é", "0".repeat(62))).is_err());
}

#[test]
fn debug_prints_hex() {
    let hash = Hash([0xab; 32]);
    assert_eq!(format!("{hash:?}"), format!("Hash({})", "ab".repeat(32)));
    assert_eq!(hash.to_string(), "ab".repeat(32));
}
