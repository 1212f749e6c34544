use jiff::Timestamp;
use serde_json::{Value, json};

use crate::{
    ERASED, Limits, OpenError, PersonalData, PrepareContext, PreparedEvent, commitment, open, parse_event, seal,
};

const EMAIL: &str = "zelda.quux-7731@example-hospital.test";
const IP: &str = "198.51.100.219";
const NAME: &str = "Zelda Quuxworth";
const USER_AGENT: &str = "QuuxBrowser/9.9 (distinctive)";
const LOCATION: &str = "Quuxville, ZZ";
const BEFORE_SECRET: &str = "diagnosis-before-8842";
const AFTER_SECRET: &str = "diagnosis-after-8843";

fn event_json() -> Value {
    json!({
        "action": "data.updated",
        "occurred_at": "2026-01-15T15:32:11.234+01:00",
        "actor": {"id": "user-123", "name": NAME, "email": EMAIL, "roles": ["doctor"]},
        "resource": {"type": "record", "id": "r-1", "name": "Chart"},
        "targets": [{"type": "team", "id": "t-1"}],
        "reason": "treatment",
        "context": {"ip": IP, "user_agent": USER_AGENT, "location": LOCATION,
                    "session_id": "sess-1", "channel": "ui"},
        "changes": {"before": {"dx": BEFORE_SECRET}, "after": {"dx": AFTER_SECRET}},
        "data_subject": "patient-77",
        "sensitivity": ["phi"],
        "metadata": {"cost": 0.0045, "tokens": 470, "nested": {"ok": [1, 2.5, null]}}
    })
}

fn now() -> Timestamp {
    "2026-01-15T14:32:12.345678901Z".parse().unwrap()
}

fn received_at() -> Timestamp {
    "2026-01-15T14:32:12.999999Z".parse().unwrap()
}

/// `prepared`'s personal data with another `actor.email` than the one committed.
fn with_another_email(prepared: &PreparedEvent) -> PersonalData {
    let mut tampered = PersonalData::from_bytes(&prepared.personal.to_bytes()).unwrap();
    let mut field = tampered.remove("actor.email").unwrap();
    field.value = json!("someone.else@example.test");
    tampered.insert("actor.email", field);
    tampered
}

/// Prepares `event` with salts 1, 2, 3... (each salt is 32 copies of its number).
fn prepare(event: &Value) -> PreparedEvent {
    let event = parse_event(event.to_string().as_bytes(), &Limits::default()).unwrap();
    let mut next = 0_u8;
    let mut salt = move || {
        next += 1;
        [next; 32]
    };
    event
        .prepare(PrepareContext {
            id_if_missing: "evt_01KF0000000000000000000000".to_owned(),
            now: now(),
            salt: &mut salt,
        })
        .unwrap()
}

fn sealed_text(prepared: &PreparedEvent) -> String {
    String::from_utf8(seal(prepared, "acme", 41, received_at()).unwrap()).unwrap()
}

#[test]
fn round_trip_restores_the_event() {
    let prepared = prepare(&event_json());
    let sealed = seal(&prepared, "acme", 41, received_at()).unwrap();
    let view = open(&sealed, Some(&prepared.personal)).unwrap();

    let mut expected = event_json();
    let extra = json!({
        "id": "evt_01KF0000000000000000000000",
        "occurred_at": "2026-01-15T14:32:11.234Z",
        "occurred_at_source": "client",
        "outcome": "success",
        "tenant": "acme",
        "seq": 41,
        "received_at": "2026-01-15T14:32:12.999Z",
    });
    for (key, value) in extra.as_object().unwrap() {
        expected[key] = value.clone();
    }
    expected["actor"]["type"] = json!("user");
    assert_eq!(view, expected);
}

#[test]
fn personal_values_never_reach_the_sealed_record() {
    let prepared = prepare(&event_json());
    let sealed = sealed_text(&prepared);
    for secret in [EMAIL, IP, NAME, USER_AGENT, LOCATION, BEFORE_SECRET, AFTER_SECRET] {
        assert!(!sealed.contains(secret), "{secret} leaked into {sealed}");
    }
    let paths: Vec<&str> = prepared.personal.iter().map(|(path, _)| path).collect();
    assert_eq!(paths, ["actor.email", "actor.name", "changes", "context.ip", "context.location", "context.user_agent"]);
    assert_eq!(prepared.personal.get("actor.email").unwrap().value, json!(EMAIL));
    // Salts are drawn in PERSONAL_FIELDS order.
    assert_eq!(prepared.personal.get("actor.name").unwrap().salt, [1; 32]);
    assert_eq!(prepared.personal.get("changes").unwrap().salt, [6; 32]);
}

#[test]
fn changes_stay_in_clear_without_sensitivity() {
    let mut event = event_json();
    event.as_object_mut().unwrap().remove("sensitivity");
    let prepared = prepare(&event);
    assert!(sealed_text(&prepared).contains(BEFORE_SECRET));
    assert!(prepared.personal.get("changes").is_none());
    let view = open(&seal(&prepared, "acme", 41, received_at()).unwrap(), None).unwrap();
    assert_eq!(view["changes"], event["changes"]);
}

#[test]
fn erased_personal_data_reads_as_erased() {
    let prepared = prepare(&event_json());
    let sealed = seal(&prepared, "acme", 41, received_at()).unwrap();
    let view = open(&sealed, None).unwrap();
    assert_eq!(view["actor"]["email"], json!(ERASED));
    assert_eq!(view["actor"]["name"], json!(ERASED));
    assert_eq!(view["context"]["ip"], json!(ERASED));
    assert_eq!(view["context"]["user_agent"], json!(ERASED));
    assert_eq!(view["context"]["location"], json!(ERASED));
    assert_eq!(view["changes"], json!(ERASED));
    assert_eq!(view["context"]["session_id"], json!("sess-1"));
    assert!(!view.to_string().contains("commitment"));

    // Partial erasure; the sealed bytes do not change.
    let mut personal = prepared.personal.clone();
    personal.remove("actor.email");
    let view = open(&sealed, Some(&personal)).unwrap();
    assert_eq!(view["actor"]["email"], json!(ERASED));
    assert_eq!(view["actor"]["name"], json!(NAME));
    assert_eq!(seal(&prepared, "acme", 41, received_at()).unwrap(), sealed);
}

#[test]
fn sealing_is_deterministic_and_canonical() {
    let first = seal(&prepare(&event_json()), "acme", 41, received_at()).unwrap();
    let second = seal(&prepare(&event_json()), "acme", 41, received_at()).unwrap();
    assert_eq!(first, second);
    assert!(veritrail_ledger::jcs::is_canonical(&first));
    assert_ne!(seal(&prepare(&event_json()), "acme", 42, received_at()).unwrap(), first);
}

#[test]
fn salts_change_commitments() {
    let value = json!(EMAIL);
    let first = commitment(&[1; 32], &value).unwrap();
    assert_ne!(first, commitment(&[2; 32], &value).unwrap());
    assert_eq!(first.len(), 44);
}

#[test]
fn server_defaults() {
    let prepared = prepare(&json!({"action": "auth.logout", "actor": {"id": "u"}}));
    assert_eq!(prepared.id, "evt_01KF0000000000000000000000");
    assert!(prepared.personal.is_empty());
    let view = open(&seal(&prepared, "acme", 0, received_at()).unwrap(), Some(&prepared.personal)).unwrap();
    assert_eq!(view["occurred_at"], json!("2026-01-15T14:32:12.345Z"));
    assert_eq!(view["occurred_at_source"], json!("server"));
    assert_eq!(view["id"], json!("evt_01KF0000000000000000000000"));

    let prepared = prepare(&json!({"id": "order-9", "action": "auth.logout", "actor": {"id": "u"}}));
    assert_eq!(prepared.id, "order-9");
    let view = open(&seal(&prepared, "acme", 0, received_at()).unwrap(), None).unwrap();
    assert_eq!(view["id"], json!("order-9"));
}

/// The sealed record format is fixed forever: this pins it byte for byte (commitments
/// cross-checked with Python hashlib: sha256(prefix + bytes([n])*32 + b"\"value\"")).
#[test]
fn golden_sealed_record() {
    let event = json!({
        "action": "auth.login.success",
        "occurred_at": "2026-01-15T14:32:11.234Z",
        "actor": {"id": "user-123", "email": "jane@acme.com"},
        "context": {"ip": "203.0.113.7", "channel": "api"},
        "metadata": {"cost": 0.0045, "z": 1, "a": "é"}
    });
    let sealed = sealed_text(&prepare(&event));
    let expected = concat!(
        r#"{"action":"auth.login.success","#,
        r#""actor":{"email":{"commitment":"6UGWpwACUT2YnDBGhy0vEYFVWjHwaeG83N/TNygeI9I="},"id":"user-123","type":"user"},"#,
        r#""context":{"channel":"api","ip":{"commitment":"ejE9jfdcWsKVNqXs3kqjIky5if5prLgpk3I9bIhRvA4="}},"#,
        r#""id":"evt_01KF0000000000000000000000","metadata":{"a":"é","cost":0.0045,"z":1},"#,
        r#""occurred_at":"2026-01-15T14:32:11.234Z","occurred_at_source":"client","outcome":"success","#,
        r#""received_at":"2026-01-15T14:32:12.999Z","seq":41,"tenant":"acme","v":1}"#,
    );
    assert_eq!(sealed, expected);
}

#[test]
fn commitment_definition() {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let mut input = b"veritrail.commitment.v1\n".to_vec();
    input.extend_from_slice(&[7; 32]);
    input.extend_from_slice(b"\"jane@acme.com\"");
    let expected = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&input));
    assert_eq!(commitment(&[7; 32], &json!("jane@acme.com")).unwrap(), expected);
}

#[test]
fn tampered_or_foreign_personal_data_is_refused() {
    let prepared = prepare(&event_json());
    let sealed = seal(&prepared, "acme", 41, received_at()).unwrap();

    let tampered = with_another_email(&prepared);
    assert_eq!(open(&sealed, Some(&tampered)), Err(OpenError::CommitmentMismatch { path: "actor.email".to_owned() }));

    // Personal data of an event without `changes` committed.
    let plain = prepare(&json!({"action": "a.b", "actor": {"id": "u"}}));
    let plain_sealed = seal(&plain, "acme", 1, received_at()).unwrap();
    assert_eq!(
        open(&plain_sealed, Some(&prepared.personal)),
        Err(OpenError::UnexpectedPersonalValue { path: "actor.email".to_owned() })
    );
}

#[test]
fn personal_data_bytes_round_trip() {
    let prepared = prepare(&event_json());
    let bytes = prepared.personal.to_bytes();
    let decoded = PersonalData::from_bytes(&bytes).unwrap();
    assert_eq!(decoded, prepared.personal);
    assert_eq!(decoded.len(), 6);
    let root: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(root["v"], json!(1));
    let email = &root["fields"]["actor.email"];
    assert_eq!(email["salt"], json!("AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="));
    assert_eq!(email["value"], json!(EMAIL));

    for bad in [
        &b"not json"[..],
        br#"{"v":2,"fields":{}}"#,
        br#"{"v":1}"#,
        br#"{"v":1,"fields":{"actor.email":{"value":"x"}}}"#,
        br#"{"v":1,"fields":{"actor.email":{"salt":"AAAA","value":"x"}}}"#,
        br#"{"v":1,"fields":{"actor.email":{"salt":"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="}}}"#,
    ] {
        assert!(matches!(PersonalData::from_bytes(bad), Err(OpenError::MalformedPersonalData(_))));
    }
}

#[test]
fn malformed_sealed_records_are_refused() {
    let cases: &[&[u8]] = &[b"not json", b"[1]", br#"{"seq":1}"#, br#"{"v":1,"actor":{"id":"u","email":"in clear"}}"#];
    for sealed in cases {
        assert!(matches!(open(sealed, None), Err(OpenError::MalformedRecord(_))), "{sealed:?}");
    }
    assert_eq!(open(br#"{"v":2}"#, None), Err(OpenError::UnsupportedVersion("2".to_owned())));
}

#[test]
fn values_without_a_canonical_form_cannot_be_sealed() {
    let prepared = prepare(&json!({"action": "a.b", "actor": {"id": "u"}}));
    let error = seal(&prepared, "acme", (1 << 53) + 1, received_at()).unwrap_err();
    assert_eq!(error.path, "seq");
}

/// Sealing splices precomputed members; the result must be canonical JSON holding exactly the
/// event's members and the ledger fields.
#[test]
fn sealing_splices_into_canonical_json() {
    let events = [
        event_json(),
        json!({"action": "a.b", "actor": {"id": "u"}}),
        json!({"action": "x.y", "actor": {"id": "ü∂"}, "reason": "\u{1F600} \n", "metadata": {"z": 1.5e-7, "a": [true, null]}}),
    ];
    for event in events {
        let prepared = prepare(&event);
        for (tenant, seq) in [("acme", 0u64), ("tn_x", 41), ("t", 9_007_199_254_740_991)] {
            let sealed = seal(&prepared, tenant, seq, received_at()).unwrap();
            assert!(veritrail_ledger::jcs::is_canonical(&sealed), "{}", String::from_utf8_lossy(&sealed));
            let record: Value = serde_json::from_slice(&sealed).unwrap();
            assert_eq!(
                (record["seq"].as_u64(), record["tenant"].as_str(), record["v"].as_u64()),
                (Some(seq), Some(tenant), Some(1))
            );
            assert_eq!(record["received_at"], json!(crate::format_timestamp_millis(received_at())));
            let view = open(&sealed, Some(&prepared.personal)).unwrap();
            for (key, value) in event.as_object().unwrap() {
                match key.as_str() {
                    "occurred_at" => {}
                    "actor" => assert_eq!(view["actor"]["id"], value["id"]),
                    _ => assert_eq!(&view[key], value, "{key}"),
                }
            }
        }
    }
}

#[test]
fn personal_values_without_a_canonical_form_are_malformed() {
    let prepared = prepare(&event_json());
    let sealed = seal(&prepared, "acme", 41, received_at()).unwrap();
    let mut root: Value = serde_json::from_slice(&prepared.personal.to_bytes()).unwrap();
    root["fields"]["actor.email"]["value"] = json!(u64::MAX - 1);
    let personal = PersonalData::from_bytes(root.to_string().as_bytes()).unwrap();
    assert!(matches!(open(&sealed, Some(&personal)), Err(OpenError::MalformedPersonalData(_))));
}

/// The sealed record as the straightforward definition gives it: canonicalize the whole record
/// built as a JSON tree from [`crate::Event::to_json`], personal fields replaced by their
/// commitments (salts in `PERSONAL_FIELDS` order). `prepare` + `seal` write the same bytes
/// without building the tree; this is the reference they are checked against.
fn reference_sealed(event: &Value, tenant: &str, seq: u64) -> Vec<u8> {
    let event = parse_event(event.to_string().as_bytes(), &Limits::default()).unwrap();
    let mut next = 0_u8;
    let mut salt = move || {
        next += 1;
        [next; 32]
    };
    let mut record = event.to_json();
    let id = event.id().unwrap_or("evt_01KF0000000000000000000000").to_owned();
    let (occurred_at, source) = match event.occurred_at() {
        Some(at) => (at, "client"),
        None => (crate::time::truncate_to_millis(now()), "server"),
    };
    record.insert("id".into(), json!(id));
    record.insert("occurred_at".into(), json!(crate::format_timestamp(occurred_at)));
    record.insert("occurred_at_source".into(), json!(source));
    let mut commit = |slot: &mut Value| {
        let digest = commitment(&salt(), slot).unwrap();
        *slot = json!({ "commitment": digest });
    };
    for (parent, key) in
        [("actor", "name"), ("actor", "email"), ("context", "ip"), ("context", "user_agent"), ("context", "location")]
    {
        if let Some(slot) = record.get_mut(parent).and_then(|object| object.get_mut(key)) {
            commit(slot);
        }
    }
    if !event.sensitivity().is_empty()
        && let Some(slot) = record.get_mut("changes")
    {
        commit(slot);
    }
    record.insert("v".into(), json!(1));
    record.insert("seq".into(), json!(seq));
    record.insert("tenant".into(), json!(tenant));
    record.insert("received_at".into(), json!(crate::format_timestamp_millis(received_at())));
    veritrail_ledger::jcs::canonicalize(&Value::Object(record)).unwrap().into_bytes()
}

mod against_reference {
    use proptest::prelude::*;

    use super::{prepare, received_at, reference_sealed};
    use crate::seal;
    use crate::test_events::event;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn prepared_and_sealed_bytes_equal_the_reference(event in event(), seq in 0u64..1_000_000) {
            let sealed = seal(&prepare(&event), "tenant-1", seq, received_at()).unwrap();
            let expected = reference_sealed(&event, "tenant-1", seq);
            prop_assert_eq!(String::from_utf8(sealed).unwrap(), String::from_utf8(expected).unwrap());
        }
    }
}

#[test]
fn the_full_event_seals_like_the_reference() {
    for event in [event_json(), json!({"action": "a.b", "actor": {"id": "u"}})] {
        assert_eq!(seal(&prepare(&event), "acme", 41, received_at()).unwrap(), reference_sealed(&event, "acme", 41));
    }
}

mod classified {
    use super::*;
    use crate::{owner_of, validate_personal_path};

    const PATIENT: &str = "Quincy Patientname-5521";

    fn classified_event() -> Value {
        let mut event = event_json();
        event["metadata"] = json!({"patient": {"name": PATIENT, "ward": 7}, "cost": 1, "card": "4111-x"});
        event
    }

    fn prepare_with(event: &Value, paths: &[&str]) -> PreparedEvent {
        let event = parse_event(event.to_string().as_bytes(), &Limits::default()).unwrap();
        let mut next = 0_u8;
        let mut salt = move || {
            next += 1;
            [next; 32]
        };
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        let ctx =
            PrepareContext { id_if_missing: "evt_01KF0000000000000000000000".to_owned(), now: now(), salt: &mut salt };
        event.prepare_classified(ctx, &paths).unwrap()
    }

    #[test]
    fn tenant_paths_are_committed_listed_and_revealed() {
        let paths = ["metadata.patient.name", "metadata.card", "metadata.absent.field"];
        let prepared = prepare_with(&classified_event(), &paths);
        let sealed = sealed_text(&prepared);
        assert!(!sealed.contains(PATIENT) && !sealed.contains("4111-x"), "{sealed}");
        assert!(sealed.contains(r#""personal_fields":["metadata.card","metadata.patient.name"]"#), "{sealed}");
        assert!(sealed.contains(r#""ward":7"#), "unclassified metadata stays in clear: {sealed}");
        // Canonical: what a verifier recomputes from the parsed record.
        let reparsed: Value = serde_json::from_str(&sealed).unwrap();
        assert_eq!(crate::jcs::canonical_bytes(&reparsed).unwrap(), sealed.as_bytes());

        let view = open(sealed.as_bytes(), Some(&prepared.personal)).unwrap();
        assert_eq!(view["metadata"]["patient"]["name"], PATIENT);
        assert_eq!(view["metadata"]["card"], "4111-x");
        let erased = open(sealed.as_bytes(), None).unwrap();
        assert_eq!(erased["metadata"]["patient"]["name"], ERASED);
        assert_eq!(erased["metadata"]["patient"]["ward"], 7);

        // The classified values belong to the data subject; the actor's own fields stay the actor's.
        assert_eq!(owner_of("metadata.patient.name", true), crate::Owner::Subject);
        assert_eq!(owner_of("metadata.patient.name", false), crate::Owner::Actor);
        assert_eq!(owner_of("actor.email", true), crate::Owner::Actor);
    }

    #[test]
    fn without_classification_nothing_changes() {
        let plain = sealed_text(&prepare(&classified_event()));
        let none = sealed_text(&prepare_with(&classified_event(), &[]));
        assert_eq!(plain, none);
        assert!(!plain.contains("personal_fields"));
    }

    #[test]
    fn a_forged_personal_fields_member_fails_to_open() {
        let prepared = prepare_with(&classified_event(), &["metadata.card"]);
        let sealed = sealed_text(&prepared).replace(r#"["metadata.card"]"#, r#"["metadata.cost"]"#);
        assert!(matches!(open(sealed.as_bytes(), Some(&prepared.personal)), Err(OpenError::MalformedRecord(_))));
    }

    #[test]
    fn a_layout_that_does_not_fit_is_refused() {
        let prepared = prepare(&event_json());
        let (sealed, layout) = crate::seal_with_layout(&prepared, "tenant-1", 7, received_at()).unwrap();
        assert!(crate::SealedMembers::from_layout(&sealed, &layout).is_ok());
        assert!(crate::SealedMembers::from_layout(&sealed[..sealed.len() / 2], &layout).is_err());
        let shifted = [b" ".as_slice(), &sealed].concat();
        assert!(crate::SealedMembers::from_layout(&shifted, &layout).is_err());
        // Entries out of order, or not at a member's opening quote, are refused too.
        let starts: Vec<u32> = layout.0.to_vec();
        let mut swapped = starts.clone();
        swapped.swap(1, 2);
        let inside = starts.iter().map(|&start| if start == starts[3] { start + 1 } else { start }).collect::<Vec<_>>();
        for bad in [swapped, inside, vec![starts[0], starts[0]]] {
            let bad = crate::seal::MemberLayout(bad.into());
            assert!(crate::SealedMembers::from_layout(&sealed, &bad).is_err(), "{bad:?}");
        }
        // An entry at a `,"` inside a value passes the look from_layout takes; reading it finds
        // no member there and opening the record fails.
        let text = std::str::from_utf8(&sealed).unwrap();
        let metadata = text.find("\"metadata\":").unwrap();
        let inner = metadata + text[metadata..].find(",\"").unwrap() + 1;
        assert!(!starts.contains(&(inner as u32)), "the event's metadata has several members");
        let mut inserted = starts.clone();
        inserted.push(inner as u32);
        inserted.sort_unstable();
        let inserted = crate::seal::MemberLayout(inserted.into());
        let members = crate::SealedMembers::from_layout(&sealed, &inserted).unwrap();
        assert!(members.open(None, &|_| true).is_err());
    }

    #[test]
    fn personal_paths_are_validated() {
        assert!(validate_personal_path("metadata.patient.name").is_ok());
        for bad in
            ["actor.email", "metadata.", "metadata..x", "metadata.consent.purposes", "metadata.a.b.c.d.e.f.g.h.i"]
        {
            assert!(validate_personal_path(bad).is_err(), "{bad}");
        }
    }
}

/// `SealedMembers::open` is `open` restricted to the kept members, whatever is kept, erased or
/// classified.
mod members {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::{event_json, now, prepare, received_at, with_another_email};
    use crate::test_events::event;
    use crate::{Limits, OpenError, PrepareContext, RESERVED_METADATA_KEYS, SealedMembers, open, parse_event, seal};

    const MEMBERS: &[&str] = &[
        "action",
        "actor",
        "changes",
        "context",
        "data_subject",
        "id",
        "metadata",
        "occurred_at",
        "occurred_at_source",
        "outcome",
        "personal_fields",
        "reason",
        "received_at",
        "resource",
        "sensitivity",
        "seq",
        "targets",
        "tenant",
    ];

    /// Members no commitment is ever in, which `open_plain` serves.
    const PLAIN: [&str; 5] = ["action", "id", "occurred_at", "received_at", "seq"];

    fn restricted(view: &Value, keep: &[&str]) -> Value {
        let object = view.as_object().unwrap();
        Value::Object(
            object
                .iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Map<_, _>>(),
        )
    }

    /// Prepares `event` with its first unreserved metadata key classified as personal.
    fn prepare_classifying(event: &Value) -> crate::PreparedEvent {
        let paths: Vec<String> = event["metadata"]
            .as_object()
            .and_then(|metadata| metadata.keys().find(|key| !RESERVED_METADATA_KEYS.contains(&key.as_str())))
            .map(|key| vec![format!("metadata.{key}")])
            .unwrap_or_default();
        let event = parse_event(event.to_string().as_bytes(), &Limits::default()).unwrap();
        let mut next = 0_u8;
        let mut salt = move || {
            next = next.wrapping_add(1);
            [next; 32]
        };
        let ctx =
            PrepareContext { id_if_missing: "evt_01KF0000000000000000000000".to_owned(), now: now(), salt: &mut salt };
        event.prepare_classified(ctx, &paths).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn the_layout_sealing_notes_finds_the_members_a_scan_finds(
            event in event(),
            classify in any::<bool>(),
            seq in prop_oneof![Just(0u64), 1u64..1_000_000_000_000],
        ) {
            let prepared = if classify { prepare_classifying(&event) } else { prepare(&event) };
            let (sealed, layout) = crate::seal_with_layout(&prepared, "tenant-1", seq, received_at()).unwrap();
            prop_assert_eq!(&sealed, &seal(&prepared, "tenant-1", seq, received_at()).unwrap());
            let scanned = SealedMembers::parse(&sealed).unwrap();
            let laid_out = SealedMembers::from_layout(&sealed, &layout).unwrap();
            prop_assert_eq!(laid_out.entries().unwrap(), scanned.entries().unwrap());
        }

        #[test]
        fn kept_members_open_as_in_the_whole_view(
            event in event(),
            keep in prop::sample::subsequence(MEMBERS, 0..=MEMBERS.len()),
            classify in any::<bool>(),
            erasure in 0u8..3,
        ) {
            let prepared = if classify { prepare_classifying(&event) } else { prepare(&event) };
            let sealed = seal(&prepared, "tenant-1", 7, received_at()).unwrap();
            let personal = match erasure {
                0 => Some(prepared.personal.clone()),
                1 => None,
                _ => {
                    let mut personal = prepared.personal.clone();
                    let first = personal.iter().next().map(|(path, _)| path.to_owned());
                    if let Some(path) = first {
                        personal.remove(&path);
                    }
                    Some(personal)
                }
            };
            let whole = open(&sealed, personal.as_ref()).unwrap();
            let members = SealedMembers::parse(&sealed).unwrap();
            let part = members.open(personal.as_ref(), &|key| keep.contains(&key)).unwrap();
            prop_assert_eq!(part, restricted(&whole, &keep));
            prop_assert_eq!(members.str("action"), whole["action"].as_str());
            prop_assert_eq!(members.str("received_at"), whole["received_at"].as_str());
            prop_assert_eq!(members.str("seq"), None);
            let id = members.string("id");
            prop_assert_eq!(id.as_deref(), whole["id"].as_str());
            prop_assert_eq!(members.string("seq"), None);
            // The plain members open without parsing, exactly as the whole view has them.
            let plain_keep: Vec<&str> = keep.iter().copied().filter(|k| PLAIN.contains(k)).collect();
            let plain = members.open_plain(&plain_keep);
            prop_assert_eq!(plain.as_ref(), Some(&restricted(&whole, &plain_keep)));
            prop_assert_eq!(members.open_plain(&PLAIN), Some(restricted(&whole, &PLAIN)));
            if keep.iter().any(|k| !PLAIN.contains(k)) {
                let others: Vec<&str> = keep.iter().copied().filter(|k| !PLAIN.contains(k)).collect();
                if let Some(view) = members.open_plain(&others) {
                    // Only strings and integers open plainly; never `changes`.
                    prop_assert!(!others.contains(&"changes"));
                    prop_assert_eq!(view, restricted(&whole, &others));
                }
            }
        }
    }

    /// Every path into `view` (objects walked, arrays and scalars as leaves), a few levels deep.
    fn paths_of(view: &Value, prefix: &str, depth: usize, out: &mut Vec<String>) {
        let Some(object) = view.as_object() else { return };
        for (key, value) in object {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            out.push(path.clone());
            if depth > 0 {
                paths_of(value, &path, depth - 1, out);
            }
        }
    }

    /// Where a reader following `path` stops in `view`, and what it finds there.
    fn reached<'v>(view: &'v Value, path: &str) -> (usize, Option<&'v Value>) {
        let mut at = view;
        for (depth, segment) in path.split('.').enumerate() {
            if !at.is_object() {
                return (depth, Some(at));
            }
            match at.get(segment) {
                Some(next) => at = next,
                None => return (depth, None),
            }
        }
        (usize::MAX, Some(at))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn paths_open_as_in_the_whole_view(
            event in event(),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            absent in prop::sample::subsequence(&["metadata.nope", "metadata.nope.deeper", "actor.nope", "resource"][..], 0..=4),
            classify in any::<bool>(),
            erased in any::<bool>(),
        ) {
            let prepared = if classify { prepare_classifying(&event) } else { prepare(&event) };
            let sealed = seal(&prepared, "tenant-1", 7, received_at()).unwrap();
            let personal = (!erased).then(|| prepared.personal.clone());
            let whole = open(&sealed, personal.as_ref()).unwrap();
            let mut all = Vec::new();
            paths_of(&whole, "", 3, &mut all);
            let mut paths: Vec<&str> = picks.iter().map(|pick| all[pick.index(all.len())].as_str()).collect();
            paths.extend(absent.iter().copied());
            paths.extend(PLAIN);
            let members = SealedMembers::parse(&sealed).unwrap();
            let part = members.open_paths(personal.as_ref(), &paths).unwrap();
            for path in &paths {
                // Absent in the whole view: absent here too (how far a reader got before
                // finding nothing does not matter).
                match reached(&whole, path) {
                    (_, None) => prop_assert_eq!(reached(&part, path).1, None, "{}", path),
                    found => prop_assert_eq!(reached(&part, path), found, "{}", path),
                }
            }
            for key in part.as_object().unwrap().keys() {
                prop_assert!(whole.get(key).is_some(), "{} is not in the whole view", key);
            }
        }
    }

    /// Wire members of an event a variant may take from another event.
    const SWAPPABLE: &[&str] = &["action", "actor", "context", "id", "metadata", "occurred_at", "outcome", "resource"];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        /// The rule engine keeps views by `plain_view_key`: two records with the same key must
        /// have the same view of the paths, whatever else differs between them.
        #[test]
        fn records_with_the_same_view_key_have_the_same_view(
            event in event(),
            other in event(),
            swap in prop::sample::subsequence(SWAPPABLE, 0..=SWAPPABLE.len()),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
            classify in any::<bool>(),
        ) {
            let mut variant = event.clone();
            for member in &swap {
                match other.get(*member) {
                    Some(value) => variant[*member] = value.clone(),
                    None => {
                        variant.as_object_mut().unwrap().remove(*member);
                    }
                }
            }
            prop_assume!(parse_event(variant.to_string().as_bytes(), &Limits::default()).is_ok());
            let sealed: Vec<(Vec<u8>, crate::PreparedEvent)> = [&event, &variant]
                .into_iter()
                .map(|event| {
                    let prepared = if classify { prepare_classifying(event) } else { prepare(event) };
                    (seal(&prepared, "tenant-1", 7, received_at()).unwrap(), prepared)
                })
                .collect();
            let mut all = Vec::new();
            for (record, prepared) in &sealed {
                paths_of(&open(record, Some(&prepared.personal)).unwrap(), "", 3, &mut all);
            }
            let mut paths: Vec<&str> = picks.iter().map(|pick| all[pick.index(all.len())].as_str()).collect();
            // The first record's metadata paths, so that keys holding metadata often agree.
            paths.extend(all.iter().filter(|path| path.starts_with("metadata.")).take(3).map(String::as_str));
            paths.push("action");
            let mut keys = Vec::new();
            for (record, prepared) in &sealed {
                let members = SealedMembers::parse(record).unwrap();
                let mut key = String::new();
                let keyed = members.plain_view_key(&paths, &mut key).unwrap();
                let view = members.open_paths(Some(&prepared.personal), &paths).unwrap();
                keys.push((keyed.then_some(key), view));
            }
            if let [(Some(a), view_a), (Some(b), view_b)] = &keys[..]
                && a == b
            {
                prop_assert_eq!(view_a, view_b, "same key {:?}, paths {:?}", a, paths);
            }
        }
    }

    #[test]
    fn a_view_key_names_exactly_what_the_view_holds() {
        let paths = ["metadata.source.service", "action"];
        let key_and_view = |event: Value, classified: &[&str], paths: &[&str]| {
            let parsed = parse_event(event.to_string().as_bytes(), &Limits::default()).unwrap();
            let mut salt = || [9u8; 32];
            let ctx = PrepareContext { id_if_missing: "evt_x".to_owned(), now: now(), salt: &mut salt };
            let classified: Vec<String> = classified.iter().map(|c| (*c).to_owned()).collect();
            let prepared = parsed.prepare_classified(ctx, &classified).unwrap();
            let sealed = seal(&prepared, "acme", 4, received_at()).unwrap();
            let members = SealedMembers::parse(&sealed).unwrap();
            let mut key = String::new();
            let keyed = members.plain_view_key(paths, &mut key).unwrap();
            (keyed.then_some(key), members.open_paths(Some(&prepared.personal), paths).unwrap())
        };
        let base = json!({"id": "e1", "action": "data.read", "actor": {"id": "u"}, "context": {"ip": "10.0.0.1"},
            "metadata": {"source": {"service": "api", "host": "h1"}, "n": 1}});
        let (key, view) = key_and_view(base.clone(), &[], &paths);
        assert_eq!(view, json!({"action": "data.read", "metadata": {"source": {"service": "api"}}}));
        // Another id, actor and metadata beside the path: the same key and view.
        let elsewhere = json!({"id": "e2", "action": "data.read", "actor": {"id": "w", "email": "w@example.com"},
            "metadata": {"source": {"service": "api", "host": "h2"}, "n": 2, "extra": [1]}});
        let (same, same_view) = key_and_view(elsewhere, &[], &paths);
        assert_eq!((&same, &same_view), (&key, &view));
        // Another value at a path, the path's end missing, or a scalar before its end: new keys.
        let mut seen = vec![key.clone().unwrap()];
        for metadata in [json!({"source": {"service": "web"}}), json!({})] {
            let (other, _) =
                key_and_view(json!({"action": "data.read", "actor": {"id": "u"}, "metadata": metadata}), &[], &paths);
            let other = other.unwrap();
            assert!(!seen.contains(&other), "{other:?}");
            seen.push(other);
        }
        // Nothing at the path's end is nothing, however far the path got.
        let stops =
            key_and_view(json!({"action": "data.read", "actor": {"id": "u"}, "metadata": {"source": {}}}), &[], &paths);
        assert_eq!(stops.0.as_ref(), seen.last());
        // A scalar where the path goes on: its own key.
        let deeper = ["metadata.n.deeper", "action"];
        let scalar = key_and_view(json!({"action": "a.b", "actor": {"id": "u"}, "metadata": {"n": 1}}), &[], &deeper);
        let object = key_and_view(
            json!({"action": "a.b", "actor": {"id": "u"}, "metadata": {"n": {"deeper": 1}}}),
            &[],
            &deeper,
        );
        assert_eq!(scalar.1, json!({"action": "a.b", "metadata": {"n": 1}}));
        assert_ne!(scalar.0.unwrap(), object.0.unwrap());
        // Members that may hold commitments, `metadata` whole, classified fields: no key.
        for paths in [&["actor.id"][..], &["metadata"], &["context"]] {
            assert_eq!(key_and_view(base.clone(), &[], paths).0, None, "{paths:?}");
        }
        assert_eq!(key_and_view(base.clone(), &["metadata.source"], &paths).0, None, "classified");
        assert!(key_and_view(base, &["metadata.n"], &paths).0.is_some(), "a classified field elsewhere");
    }

    #[test]
    fn only_named_metadata_paths_are_parsed_unless_classified() {
        let event = json!({"action": "a.b", "actor": {"id": "u"},
            "metadata": {"source": {"service": "api", "host": "h1"}, "items": [{"name": "x"}], "note": "n"}});
        let prepared = prepare(&event);
        let sealed = seal(&prepared, "acme", 3, received_at()).unwrap();
        let members = SealedMembers::parse(&sealed).unwrap();
        let view = members.open_paths(None, &["action", "metadata.source.service", "metadata.items.name"]).unwrap();
        assert_eq!(
            view,
            json!({"action": "a.b", "metadata": {"source": {"service": "api"}, "items": [{"name": "x"}]}})
        );
        let view = members.open_paths(None, &["metadata.source", "metadata.source.host", "metadata.gone"]).unwrap();
        assert_eq!(view, json!({"metadata": {"source": {"service": "api", "host": "h1"}}}));
        assert_eq!(members.open_paths(None, &["metadata.gone"]).unwrap(), json!({}));
        // `actor.id` opens `actor` whole, as `open` does.
        assert_eq!(members.open_paths(None, &["actor.id"]).unwrap(), json!({"actor": {"id": "u", "type": "user"}}));

        // A path touching a classified field opens `metadata` whole, with the value revealed.
        let note = json!({"action": "a.b", "actor": {"id": "u"}, "metadata": {"note": "secret", "other": 1}});
        let parsed = parse_event(note.to_string().as_bytes(), &Limits::default()).unwrap();
        let mut salt = || [9u8; 32];
        let ctx = PrepareContext { id_if_missing: "evt_x".to_owned(), now: now(), salt: &mut salt };
        let classified = parsed.prepare_classified(ctx, &["metadata.note".to_owned()]).unwrap();
        let sealed = seal(&classified, "acme", 4, received_at()).unwrap();
        let members = SealedMembers::parse(&sealed).unwrap();
        let revealed = members.open_paths(Some(&classified.personal), &["metadata.note"]).unwrap();
        assert_eq!(revealed, json!({"metadata": {"note": "secret", "other": 1}}));
        let untouched = members.open_paths(Some(&classified.personal), &["metadata.other"]).unwrap();
        assert_eq!(untouched, json!({"metadata": {"other": 1}}));
    }

    #[test]
    fn only_kept_members_are_checked() {
        let prepared = prepare(&event_json());
        let sealed = seal(&prepared, "acme", 41, received_at()).unwrap();
        let tampered = with_another_email(&prepared);
        let members = SealedMembers::parse(&sealed).unwrap();
        let mismatch = Err(OpenError::CommitmentMismatch { path: "actor.email".to_owned() });
        assert_eq!(members.open(Some(&tampered), &|_| true), mismatch);
        assert_eq!(members.open(Some(&tampered), &|key| key == "actor"), mismatch);
        let view = members.open(Some(&tampered), &|key| key == "context").unwrap();
        assert_eq!(
            view,
            json!({"context": {"ip": super::IP, "user_agent": super::USER_AGENT,
            "location": super::LOCATION, "session_id": "sess-1", "channel": "ui"}})
        );

        let plain = prepare(&json!({"action": "a.b", "actor": {"id": "u"}}));
        let plain_sealed = seal(&plain, "acme", 1, received_at()).unwrap();
        let members = SealedMembers::parse(&plain_sealed).unwrap();
        let unexpected = Err(OpenError::UnexpectedPersonalValue { path: "actor.email".to_owned() });
        assert_eq!(members.open(Some(&prepared.personal), &|_| true), unexpected);
        assert_eq!(members.open(Some(&prepared.personal), &|key| key == "action").unwrap(), json!({"action": "a.b"}));
    }

    #[test]
    fn malformed_records_are_refused_as_by_open() {
        let cases: &[&[u8]] = &[b"not json", b"[1]", br#"{"seq":1}"#, br#"{"v":1,"a":}"#];
        for sealed in cases {
            assert!(matches!(SealedMembers::parse(sealed), Err(OpenError::MalformedRecord(_))), "{sealed:?}");
        }
        assert!(matches!(SealedMembers::parse(br#"{"v":2}"#), Err(OpenError::UnsupportedVersion(v)) if v == "2"));
        let escaped = SealedMembers::parse(br#"{"\u0061ction":"x\"y","v":1,"id":"e"}"#).unwrap();
        assert_eq!(escaped.str("action"), None, "escaped strings are not borrowed");
        assert_eq!(escaped.string("action").as_deref(), Some("x\"y"), "but unescaped");
        assert!(matches!(escaped.string("id"), Some(std::borrow::Cow::Borrowed("e"))));
        assert_eq!(escaped.string("v"), None, "not a string");
        assert_eq!(escaped.open(None, &|_| true).unwrap(), json!({"action": "x\"y", "id": "e"}));
        assert_eq!(escaped.open_plain(&["action"]), None, "escaped strings are parsed by open");
        assert_eq!(escaped.open_plain(&["id", "seq"]), Some(json!({"id": "e"})), "absent members stay absent");
        let numbers =
            SealedMembers::parse(br#"{"a":-1,"b":1.5,"c":1e3,"d":0,"e":18446744073709551616,"v":1}"#).unwrap();
        for key in ["a", "b", "c", "e"] {
            assert_eq!(numbers.open_plain(&[key]), None, "{key}");
        }
        assert_eq!(numbers.open_plain(&["d"]), Some(json!({"d": 0})));
        let changes = SealedMembers::parse(br#"{"changes":"c","v":1}"#).unwrap();
        assert_eq!(changes.open_plain(&["changes"]), None, "changes may be a commitment");
    }
}
