use proptest::prelude::*;

use super::*;
use crate::hash::leaf_hash;
use crate::note::NoteSigner;

fn signer() -> NoteSigner {
    NoteSigner::from_seed("veritrail.example", [3; 32]).unwrap()
}

#[test]
fn body_format() {
    let root = leaf_hash(b"root");
    let checkpoint = Checkpoint::new("veritrail.example/acme", 42, root);
    assert_eq!(checkpoint.body(), format!("veritrail.example/acme\n42\n{}\n", root.to_base64()));
    let with_extensions = Checkpoint { extensions: vec!["ext one".into(), "ext two".into()], ..checkpoint };
    assert!(with_extensions.body().ends_with("\next one\next two\n"));
    assert_eq!(Checkpoint::parse_body(&with_extensions.body()), Ok(with_extensions));
}

#[test]
fn c2sp_example_body_parses() {
    let body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let checkpoint = Checkpoint::parse_body(body).unwrap();
    assert_eq!(checkpoint.origin, "example.com/behind-the-sofa");
    assert_eq!(checkpoint.size, 20852163);
    assert!(checkpoint.extensions.is_empty());
    assert_eq!(checkpoint.body(), body);
}

#[test]
fn signed_checkpoint_matches_the_spec_layout() {
    let root = leaf_hash(b"root");
    let checkpoint = Checkpoint::new("veritrail.example/acme", 7, root);
    let note = sign_checkpoint(&checkpoint, &signer()).unwrap();
    let prefix = format!("veritrail.example/acme\n7\n{}\n\n\u{2014} veritrail.example ", root.to_base64());
    assert!(note.starts_with(&prefix), "{note}");
    assert!(note.ends_with('\n'));
    assert_eq!(note.lines().count(), 5);

    let opened = open_checkpoint(&note, &[signer().verifier_key()]).unwrap();
    assert_eq!(opened, checkpoint);

    let other = NoteSigner::from_seed("veritrail.example", [4; 32]).unwrap();
    assert_eq!(
        open_checkpoint(&note, &[other.verifier_key()]),
        Err(CheckpointError::Note(NoteError::NoTrustedSignature))
    );
    let forged = note.replacen("\n7\n", "\n8\n", 1);
    assert!(matches!(
        open_checkpoint(&forged, &[signer().verifier_key()]),
        Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
    ));
}

#[test]
fn a_validly_signed_note_that_is_not_a_checkpoint_is_refused() {
    let note = signer().sign("just some text\n").unwrap();
    assert!(matches!(open_checkpoint(&note, &[signer().verifier_key()]), Err(CheckpointError::Malformed(_))));
}

#[test]
fn invalid_checkpoints_are_not_signed() {
    let root = leaf_hash(b"root");
    for checkpoint in [
        Checkpoint::new("", 1, root),
        Checkpoint::new("two\nlines", 1, root),
        Checkpoint { extensions: vec![String::new()], ..Checkpoint::new("origin", 1, root) },
        Checkpoint { extensions: vec!["a\nb".into()], ..Checkpoint::new("origin", 1, root) },
    ] {
        assert!(
            matches!(sign_checkpoint(&checkpoint, &signer()), Err(CheckpointError::Malformed(_))),
            "{checkpoint:?}"
        );
    }
}

#[test]
fn malformed_bodies_are_rejected() {
    let root = leaf_hash(b"root").to_base64();
    let bad_sizes = ["", "007", "00", "+5", "-1", " 5", "5 ", "0x10", "18446744073709551616", "５"];
    for size in bad_sizes {
        let body = format!("origin\n{size}\n{root}\n");
        assert!(matches!(Checkpoint::parse_body(&body), Err(CheckpointError::Malformed(_))), "size {size:?}");
    }
    assert_eq!(
        Checkpoint::parse_body(&format!("origin\n18446744073709551615\n{root}\n")).map(|c| c.size),
        Ok(u64::MAX)
    );
    assert_eq!(Checkpoint::parse_body(&format!("origin\n0\n{root}\n")).map(|c| c.size), Ok(0));

    let bad_bodies = [
        format!("origin\n1\n{root}"),
        "origin\n1\n".to_string(),
        format!("\n1\n{root}\n"),
        format!("origin\n1\n{root}\n\n"),
        format!("origin\n1\n{root}\next\n\n"),
        format!("or\rigin\n1\n{root}\n"),
        String::new(),
    ];
    for body in bad_bodies {
        assert!(matches!(Checkpoint::parse_body(&body), Err(CheckpointError::Malformed(_))), "{body:?}");
    }
    for bad_root in ["", "AAAA", "not base64", &root[..43], &format!("{root}=")] {
        let body = format!("origin\n1\n{bad_root}\n");
        assert!(matches!(Checkpoint::parse_body(&body), Err(CheckpointError::RootHash(_))), "root {bad_root:?}");
    }
}

proptest! {
    #[test]
    fn body_round_trips(
        origin in "[^\\x00-\\x1f]{1,40}",
        size in any::<u64>(),
        root in any::<[u8; 32]>(),
        extensions in proptest::collection::vec("[^\\x00-\\x1f]{1,20}", 0..3),
    ) {
        let checkpoint = Checkpoint { origin, size, root: Hash(root), extensions };
        prop_assert_eq!(Checkpoint::parse_body(&checkpoint.body()), Ok(checkpoint.clone()));
        let note = sign_checkpoint(&checkpoint, &signer()).unwrap();
        prop_assert_eq!(open_checkpoint(&note, &[signer().verifier_key()]), Ok(checkpoint));
    }

    #[test]
    fn parse_body_never_panics(text in any::<String>()) {
        if let Ok(checkpoint) = Checkpoint::parse_body(&text) {
            prop_assert_eq!(checkpoint.body(), text);
        }
    }
}
