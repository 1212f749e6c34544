use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use proptest::prelude::*;

use super::*;

// golang.org/x/mod/sumdb/note note_test.go vectors.
const PETER_SIGNER_KEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_KEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_KEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str =
    "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter_signer() -> NoteSigner {
    // The Go signer key is "PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>".
    let encoded = PETER_SIGNER_KEY.splitn(5, '+').nth(4).unwrap();
    let bytes = BASE64.decode(encoded).unwrap();
    assert_eq!(bytes[0], ALGORITHM_ED25519);
    NoteSigner::from_seed("PeterNeumann", bytes[1..].try_into().unwrap()).unwrap()
}

fn peter() -> VerifierKey {
    PETER_KEY.parse().unwrap()
}

fn enoch() -> VerifierKey {
    ENOCH_KEY.parse().unwrap()
}

fn test_signer(name: &str, seed_byte: u8) -> NoteSigner {
    NoteSigner::from_seed(name, [seed_byte; 32]).unwrap()
}

#[test]
fn go_signer_reproduces_go_signature_and_key() {
    let signer = peter_signer();
    assert_eq!(signer.key_id(), [0xc7, 0x4f, 0x20, 0xa3]);
    assert_eq!(signer.verifier_key().to_string(), PETER_KEY);
    assert_eq!(signer.verifier_key(), peter());
    // Ed25519 signatures are deterministic, so the note is byte for byte Go's.
    assert_eq!(signer.sign(TEXT).unwrap(), format!("{TEXT}\n{PETER_SIG}"));
}

#[test]
fn key_id_is_truncated_sha256_of_name_newline_type_and_key() {
    let peter = peter();
    assert_eq!(key_id("PeterNeumann", &peter.public_key()), [0xc7, 0x4f, 0x20, 0xa3]);
    assert_eq!(key_id("EnochRoot", &enoch().public_key()), [0xaf, 0x0c, 0xfe, 0x78]);
}

#[test]
fn verifier_key_round_trip() {
    for text in [PETER_KEY, ENOCH_KEY] {
        let key: VerifierKey = text.parse().unwrap();
        assert_eq!(key.to_string(), text);
    }
    let signer = test_signer("veritrail.example/acme", 7);
    let key = signer.verifier_key();
    assert_eq!(key.to_string().parse::<VerifierKey>().unwrap(), key);
    assert_eq!(VerifierKey::new(key.name(), &key.public_key()).unwrap(), key);
}

#[test]
fn mangled_verifier_keys_are_rejected() {
    // Every proper substring and every single-byte change of a valid key (Go TestNewVerifier).
    let bytes = PETER_KEY.as_bytes();
    for start in 0..=bytes.len() {
        for end in start + 1..=bytes.len() {
            if (start, end) != (0, bytes.len()) {
                let part = &PETER_KEY[start..end];
                assert!(part.parse::<VerifierKey>().is_err(), "accepted {part:?}");
            }
        }
    }
    for i in 0..bytes.len() {
        let mut changed = bytes.to_vec();
        changed[i] += 1;
        let changed = String::from_utf8(changed).unwrap();
        assert!(changed.parse::<VerifierKey>().is_err(), "accepted {changed:?}");
    }
    // Wrong key length and unknown algorithm, each with a matching key id.
    assert!(
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==".parse::<VerifierKey>().is_err()
    );
    assert_eq!(
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW".parse::<VerifierKey>(),
        Err(NoteError::UnsupportedAlgorithm(0x65))
    );
    assert_eq!(
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW".parse::<VerifierKey>(),
        Err(NoteError::MalformedVerifierKey("key id is not 8 lowercase hex digits"))
    );
    assert_eq!(
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW".parse::<VerifierKey>(),
        Err(NoteError::KeyIdMismatch)
    );
}

#[test]
fn key_names() {
    for name in ["PeterNeumann", "veritrail.example/acme", "a", "ü"] {
        assert!(is_valid_key_name(name), "{name:?}");
    }
    for name in ["", "a b", "a+b", "a\tb", "a\nb", "a\u{a0}b", "a\u{2028}b", "a\u{1}b"] {
        assert!(!is_valid_key_name(name), "{name:?}");
        assert_eq!(NoteSigner::from_seed(name, [1; 32]).err(), Some(NoteError::InvalidKeyName(name.to_string())));
    }
}

#[test]
fn signing_requires_valid_text() {
    let signer = test_signer("signer", 1);
    assert_eq!(signer.sign("abc"), Err(NoteError::InvalidText("must end in a newline")));
    assert_eq!(signer.sign(""), Err(NoteError::InvalidText("must end in a newline")));
    assert_eq!(signer.sign("a\rb\n"), Err(NoteError::InvalidText("must not contain control characters")));
    // Blank lines inside the text, and at its end, survive the round trip.
    for text in ["\n", "a\n\nb\n", "a\n\n", "— not a signature\n\n"] {
        let note = signer.sign(text).unwrap();
        let opened = open(&note, &[signer.verifier_key()]).unwrap();
        assert_eq!(opened.text, text);
    }
}

#[test]
fn signed_note_layout() {
    let signer = test_signer("veritrail.example/acme", 9);
    let note = signer.sign("hello\n").unwrap();
    let signature_line = note.strip_prefix("hello\n\n\u{2014} veritrail.example/acme ").unwrap();
    let encoded = signature_line.strip_suffix('\n').unwrap();
    let bytes = BASE64.decode(encoded).unwrap();
    assert_eq!(bytes.len(), 4 + 64);
    assert_eq!(bytes[..4], signer.key_id());
}

#[test]
fn open_go_vectors() {
    let both = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");

    let opened = open(&both, &[peter()]).unwrap();
    assert_eq!(opened.text, TEXT);
    assert_eq!(opened.verified_by, vec![peter()]);

    let opened = open(&both, &[enoch(), peter()]).unwrap();
    assert_eq!(opened.verified_by, vec![peter(), enoch()]);

    assert_eq!(open(&both, &[]), Err(NoteError::NoTrustedSignature));

    // The same key listed twice is not ambiguous; two keys sharing a name and id are.
    assert!(open(&both, &[peter(), peter()]).is_ok());
    let impostor = VerifierKey { key: enoch().key, ..peter() };
    assert!(matches!(open(&both, &[peter(), impostor]), Err(NoteError::AmbiguousKey { .. })));

    let many = format!("{TEXT}\n{}", PETER_SIG.repeat(101));
    assert_eq!(open(&many, &[peter()]), Err(NoteError::TooManySignatures));
    assert_eq!(open(&many, &[]), Err(NoteError::TooManySignatures));
    let hundred = format!("{TEXT}\n{}", PETER_SIG.repeat(100));
    assert!(open(&hundred, &[peter()]).is_ok());

    let corrupted = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    assert!(matches!(
        open(&corrupted, &[peter()]),
        Err(NoteError::InvalidSignature { name, key_id }) if name == "PeterNeumann" && key_id == "c74f20a3"
    ));

    // Repeated signatures, and a corrupted one from an untrusted key, are fine.
    let corrupted_enoch = format!("{}ABCD{}", &ENOCH_SIG[..60], &ENOCH_SIG[60..]);
    let noisy = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}{corrupted_enoch}");
    assert_eq!(open(&noisy, &[peter()]).unwrap().verified_by, vec![peter()]);

    // A changed key id makes the signature one of an unknown key.
    let other_id = format!("{TEXT}\n{}", PETER_SIG.replace("x08g", "xxxx"));
    assert_eq!(open(&other_id, &[peter()]), Err(NoteError::NoTrustedSignature));
}

#[test]
fn malformed_notes_are_rejected() {
    let malformed = [
        TEXT.to_string(),
        format!("{TEXT}\n"),
        format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\u{1}{TEXT}\n{PETER_SIG}"),
        format!(
            "{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        ),
        format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
        format!(
            "{TEXT}\n- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        ),
        format!("{TEXT}\n\u{2014} PeterNeumann\n"),
        format!("{TEXT}\n\u{2014} PeterNeumann \n"),
        format!("{TEXT}\n\u{2014} PeterNeumann AAAA\n"),
        format!("{TEXT}\n\u{2014} PeterNeumann not-base64\n"),
        format!("{TEXT}\n{}", PETER_SIG.replace('\n', "\r\n")),
        String::new(),
        "\n\n".to_string(),
    ];
    for note in malformed {
        let result = open(&note, &[peter()]);
        assert!(matches!(result, Err(NoteError::Malformed(_))), "{note:?} gave {result:?}");
    }
}

#[test]
fn round_trip_and_tamper_detection() {
    let signer = test_signer("veritrail.example/acme", 42);
    let key = signer.verifier_key();
    let note = signer.sign("veritrail.example/acme\n5\nroot\n").unwrap();
    let opened = open(&note, std::slice::from_ref(&key)).unwrap();
    assert_eq!(opened.text, "veritrail.example/acme\n5\nroot\n");
    assert_eq!(opened.verified_by, vec![key.clone()]);

    let changed_text = note.replacen('5', "6", 1);
    assert!(matches!(open(&changed_text, std::slice::from_ref(&key)), Err(NoteError::InvalidSignature { .. })));

    let other_signature = signer.sign("something else\n").unwrap();
    let signature_line = &other_signature[other_signature.find('\u{2014}').unwrap()..];
    let swapped = format!("veritrail.example/acme\n5\nroot\n\n{signature_line}");
    assert!(matches!(open(&swapped, std::slice::from_ref(&key)), Err(NoteError::InvalidSignature { .. })));

    // Same name, another key: a different key id, so only an unknown signature.
    let other_key = test_signer("veritrail.example/acme", 43).verifier_key();
    assert_eq!(open(&note, &[other_key]), Err(NoteError::NoTrustedSignature));

    // A second, trusted signer appended after the first.
    let witness = test_signer("witness.example", 44);
    let cosigned = format!("{note}{}", &witness.sign(&opened.text).unwrap()[opened.text.len() + 1..]);
    let opened = open(&cosigned, &[witness.verifier_key(), key.clone()]).unwrap();
    assert_eq!(opened.verified_by, vec![key, witness.verifier_key()]);
}

#[test]
fn signer_debug_hides_the_secret() {
    let signer = test_signer("name", 5);
    let debug = format!("{signer:?}");
    assert!(debug.contains("name") && !debug.contains("key:"), "{debug}");
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(note in any::<String>(), key in any::<String>()) {
        let _ = open(&note, &[peter()]);
        let _ = key.parse::<VerifierKey>();
        let _ = open(&format!("{note}\n\n{PETER_SIG}"), &[peter()]);
    }

    #[test]
    fn note_shaped_text_never_panics(
        text in "[a-z\n]{0,20}",
        name in "[A-Za-z+ ]{0,8}",
        signature in "[A-Za-z0-9+/=]{0,100}",
    ) {
        let note = format!("{text}\n\u{2014} {name} {signature}\n");
        let _ = open(&note, &[peter()]);
    }

    #[test]
    fn a_mutated_note_never_verifies_other_text(
        position in any::<prop::sample::Index>(),
        replacement in any::<char>(),
    ) {
        let note = format!("{TEXT}\n{PETER_SIG}");
        let mut chars: Vec<char> = note.chars().collect();
        let i = position.index(chars.len());
        chars[i] = replacement;
        let mutated: String = chars.into_iter().collect();
        if let Ok(opened) = open(&mutated, &[peter()]) {
            prop_assert_eq!(opened.text, TEXT);
            prop_assert_eq!(mutated, note);
        }
    }
}
