use std::time::{Duration, Instant};

use crate::ValidationErrorKind::{
    BatchTooLarge, BodyTooLarge, EmptyBatch, InvalidUtf8, MalformedJson, MissingField, TooDeep, TooLarge, WrongType,
};
use crate::{BatchError, BodyFormat, Limits, ValidationErrorKind, parse_batch, parse_event};

const GOOD: &str = r#"{"action":"data.read","actor":{"id":"u-1"}}"#;
const NO_ACTOR: &str = r#"{"action":"data.read"}"#;

fn parse(body: &str, format: BodyFormat) -> Result<Vec<crate::Event>, BatchError> {
    parse_batch(body.as_bytes(), format, &Limits::default())
}

/// Asserts the body is accepted with `count` events.
#[track_caller]
fn check_ok(body: &str, format: BodyFormat, count: usize) {
    match parse(body, format) {
        Ok(events) => assert_eq!(events.len(), count),
        Err(error) => panic!("rejected: {error}"),
    }
}

/// Asserts the body is rejected at `index` with `kind` on `field`.
#[track_caller]
fn check(body: &[u8], format: BodyFormat, index: Option<usize>, field: &str, kind: ValidationErrorKind) -> BatchError {
    let error = match parse_batch(body, format, &Limits::default()) {
        Ok(events) => panic!("accepted {} events, expected {kind:?}", events.len()),
        Err(error) => error,
    };
    assert_eq!((error.index, error.error.field.as_str(), error.error.kind), (index, field, kind), "{error}");
    error
}

#[test]
fn json_object_array_and_ndjson() {
    check_ok(GOOD, BodyFormat::Json, 1);
    check_ok(&format!(" [{GOOD}, {GOOD},\n{GOOD}] "), BodyFormat::Json, 3);
    check_ok(&format!("{GOOD}\n\n{GOOD}\r\n  \n{GOOD}\n"), BodyFormat::Ndjson, 3);
    check_ok(GOOD, BodyFormat::Ndjson, 1);
    let events = parse(&format!("[{GOOD}]"), BodyFormat::Json).unwrap();
    assert_eq!(events[0].actor().id(), "u-1");
}

#[test]
fn bad_utf8_is_reported() {
    let mut body = br#"{"action":"data.read","actor":{"id":"u-"#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""}}"#);
    for format in [BodyFormat::Json, BodyFormat::Ndjson] {
        let error = check(&body, format, None, "", InvalidUtf8);
        assert!(error.error.message.contains("offset 39"), "{error}");
    }
    let error = parse_event(&body, &Limits::default()).unwrap_err();
    assert_eq!(error.kind, InvalidUtf8);
}

#[test]
fn malformed_json() {
    let cases = [
        "{",
        "{\"action\":}",
        "{\"action\":\"data.read\",}",
        "{\"action\":\"data.read\"} trailing",
        "[{\"action\":\"a.b\"}",
        "{\"s\":\"\\ud800\"}",
        "{\"n\":1e400}",
        "{'action':'a.b'}",
        "\u{feff}{}",
        "NaN",
    ];
    for body in cases {
        check(body.as_bytes(), BodyFormat::Json, None, "", MalformedJson);
    }
}

#[test]
fn duplicate_keys_are_rejected() {
    let body = r#"{"action":"data.read","action":"data.deleted","actor":{"id":"u"}}"#;
    let error = check(body.as_bytes(), BodyFormat::Json, None, "", MalformedJson);
    assert!(error.error.message.contains("duplicate key \"action\""), "{error}");
    let nested = r#"{"action":"data.read","actor":{"id":"u","id":"v"}}"#;
    check(nested.as_bytes(), BodyFormat::Json, None, "", MalformedJson);
}

#[test]
fn array_with_a_bad_element() {
    let body = format!("[{GOOD}, {NO_ACTOR}, {GOOD}]");
    let error = check(body.as_bytes(), BodyFormat::Json, Some(1), "actor", MissingField);
    assert_eq!(error.to_string(), "event 1: missing required field \"actor\"");
    let body = format!("[{GOOD}, 42]");
    check(body.as_bytes(), BodyFormat::Json, Some(1), "", WrongType);
}

#[test]
fn ndjson_with_a_bad_line() {
    // Blank lines do not count: the bad event is the third event, on line 4.
    let body = format!("{GOOD}\n\n{GOOD}\n{{\"action\":\n{GOOD}\n");
    let error = check(body.as_bytes(), BodyFormat::Ndjson, Some(2), "", MalformedJson);
    assert!(error.error.message.starts_with("line 4: invalid json"), "{error}");
    let body = format!("{GOOD}\n{NO_ACTOR}\n");
    check(body.as_bytes(), BodyFormat::Ndjson, Some(1), "actor", MissingField);
    // An array is not an event, even on its own line.
    let body = format!("{GOOD}\n[{GOOD}]\n");
    check(body.as_bytes(), BodyFormat::Ndjson, Some(1), "", WrongType);
}

#[test]
fn single_object_errors_have_no_index() {
    check(NO_ACTOR.as_bytes(), BodyFormat::Json, None, "actor", MissingField);
}

#[test]
fn top_level_must_be_object_or_array() {
    for body in ["42", "\"event\"", "null", "true"] {
        check(body.as_bytes(), BodyFormat::Json, None, "", WrongType);
    }
    let error = parse_event(format!("[{GOOD}]").as_bytes(), &Limits::default()).unwrap_err();
    assert_eq!(error.kind, WrongType);
}

#[test]
fn empty_batches_are_rejected() {
    check(b"[]", BodyFormat::Json, None, "", EmptyBatch);
    check(b"", BodyFormat::Json, None, "", EmptyBatch);
    check(b" \n\t", BodyFormat::Json, None, "", EmptyBatch);
    check(b"", BodyFormat::Ndjson, None, "", EmptyBatch);
    check(b"\n \r\n\t\n", BodyFormat::Ndjson, None, "", EmptyBatch);
}

#[test]
fn batch_and_body_limits() {
    let limits = Limits { max_batch_events: 2, ..Limits::default() };
    let array = format!("[{GOOD},{GOOD}]");
    assert_eq!(parse_batch(array.as_bytes(), BodyFormat::Json, &limits).unwrap().len(), 2);
    let array = format!("[{GOOD},{GOOD},{GOOD}]");
    let error = parse_batch(array.as_bytes(), BodyFormat::Json, &limits).unwrap_err();
    assert_eq!((error.index, error.error.kind), (None, BatchTooLarge));
    let lines = format!("{GOOD}\n{GOOD}\n{GOOD}\n");
    let error = parse_batch(lines.as_bytes(), BodyFormat::Ndjson, &limits).unwrap_err();
    assert_eq!((error.index, error.error.kind), (None, BatchTooLarge));

    let limits = Limits { max_body_bytes: GOOD.len() - 1, ..Limits::default() };
    let error = parse_batch(GOOD.as_bytes(), BodyFormat::Json, &limits).unwrap_err();
    assert_eq!((error.index, error.error.kind), (None, BodyTooLarge));

    let limits = Limits { max_event_bytes: GOOD.len() - 1, ..Limits::default() };
    let error = parse_batch(format!("[{GOOD}]").as_bytes(), BodyFormat::Json, &limits).unwrap_err();
    assert_eq!((error.index, error.error.kind), (Some(0), TooLarge));
}

#[test]
fn pathological_nesting_fails_fast_without_overflow() {
    let depth = 100_000;
    let arrays = "[".repeat(depth);
    let objects = "{\"a\":".repeat(depth);
    let in_metadata = format!(r#"{{"action":"a.b","actor":{{"id":"u"}},"metadata":{}"#, "[".repeat(depth));
    for body in [&arrays, &objects, &in_metadata] {
        let started = Instant::now();
        for format in [BodyFormat::Json, BodyFormat::Ndjson] {
            check(body.as_bytes(), format, if format == BodyFormat::Ndjson { Some(0) } else { None }, "", TooDeep);
        }
        let error = parse_event(body.as_bytes(), &Limits::default()).unwrap_err();
        assert_eq!(error.kind, TooDeep);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn nesting_within_parser_limit_but_over_max_depth() {
    let body =
        format!(r#"{{"action":"a.b","actor":{{"id":"u"}},"metadata":{{"x":{}1{}}}}}"#, "[".repeat(20), "]".repeat(20));
    let error =
        check(body.as_bytes(), BodyFormat::Json, None, "metadata.x[0][0][0][0][0][0][0][0][0][0][0][0][0][0]", TooDeep);
    assert!(error.error.message.contains("deeper than 16 levels"), "{error}");
}

mod properties {
    use proptest::prelude::*;

    use crate::{BodyFormat, Limits, PrepareContext, open, parse_batch, seal};

    const SAMPLE: &str = r#"{"id":"e-1","action":"data.updated","occurred_at":"2026-01-15T14:32:11.234+01:00","actor":{"id":"u","type":"user","name":"Jane","email":"j@a.io","roles":["admin"]},"resource":{"type":"p","id":"1"},"targets":[{"type":"t","id":"2"}],"outcome":"denied","reason":"r","context":{"ip":"::1","user_agent":"ua","channel":"api"},"changes":{"before":null,"after":{"s":[1,2.5]}},"data_subject":"s","sensitivity":["pii"],"metadata":{"k":[{"x":-3}],"error":{"code":1}}}"#;

    /// The sample event with one or two bytes overwritten, by JSON-significant characters or
    /// by harmless ones (so that a fair share of the results stay valid).
    pub(super) fn mutated_sample() -> impl Strategy<Value = Vec<u8>> {
        let edit = (0..SAMPLE.len(), prop::sample::select(b"{}[]\",:0.-e\\ nx\x00\xffaaZZ55__@@".to_vec()));
        prop::collection::vec(edit, 1..3).prop_map(|edits| {
            let mut bytes = SAMPLE.as_bytes().to_vec();
            for (position, byte) in edits {
                bytes[position] = byte;
            }
            bytes
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_batch(&bytes, BodyFormat::Json, &Limits::default());
            let _ = parse_batch(&bytes, BodyFormat::Ndjson, &Limits::default());
        }

        /// Whatever is accepted survives prepare → seal → open unchanged (in canonical form).
        #[test]
        fn accepted_events_round_trip(bytes in mutated_sample()) {
            let Ok(events) = parse_batch(&bytes, BodyFormat::Ndjson, &Limits::default()) else {
                return Ok(());
            };
            for event in events {
                let normalised = event.to_json();
                let mut salt = || [9; 32];
                let prepared = event
                    .prepare(PrepareContext {
                        id_if_missing: "generated".to_owned(),
                        now: jiff::Timestamp::UNIX_EPOCH,
                        salt: &mut salt,
                    })
                    .unwrap();
                let sealed = seal(&prepared, "t", 7, jiff::Timestamp::UNIX_EPOCH).unwrap();
                prop_assert!(veritrail_ledger::jcs::is_canonical(&sealed));
                let view = open(&sealed, Some(&prepared.personal)).unwrap();
                for (key, value) in &normalised {
                    // Unchanged as RFC 8785 writes it (`-0` is written `0`).
                    let canonical = veritrail_ledger::jcs::canonicalize(value).unwrap();
                    let expected: serde_json::Value = serde_json::from_str(&canonical).unwrap();
                    prop_assert_eq!(&view[key], &expected, "{}", key);
                }
            }
        }
    }
}

/// The fast path (`crate::wire`) must never change an answer: for any body, `parse_batch` says
/// exactly what the reference parser says, events and errors alike; and it must actually carry
/// valid events (if it fell back for them, ingest would silently lose its speed).
mod fast_path {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::super::{fast_batch, reference_batch};
    use super::properties::mutated_sample;
    use crate::test_events::{event, json_value};
    use crate::{BodyFormat, Limits};

    fn limits() -> impl Strategy<Value = Limits> {
        prop_oneof![
            Just(Limits::default()),
            (200usize..900, 2usize..6, 1usize..4, 1usize..6).prop_map(|(event_bytes, depth, keys, batch)| Limits {
                max_event_bytes: event_bytes,
                max_depth: depth,
                max_metadata_keys: keys,
                max_batch_events: batch,
                ..Limits::default()
            }),
        ]
    }

    /// Schema places and values that are wrong there, or right, or borderline.
    fn edit() -> impl Strategy<Value = (Vec<&'static str>, Value)> {
        let places = prop::sample::select(vec![
            vec!["id"],
            vec!["action"],
            vec!["occurred_at"],
            vec!["actor"],
            vec!["actor", "id"],
            vec!["actor", "type"],
            vec!["actor", "name"],
            vec!["actor", "email"],
            vec!["actor", "roles"],
            vec!["actor", "extra"],
            vec!["resource"],
            vec!["resource", "type"],
            vec!["resource", "name"],
            vec!["targets"],
            vec!["outcome"],
            vec!["reason"],
            vec!["context"],
            vec!["context", "ip"],
            vec!["context", "channel"],
            vec!["context", "endpoint"],
            vec!["changes"],
            vec!["changes", "before"],
            vec!["changes", "other"],
            vec!["data_subject"],
            vec!["sensitivity"],
            vec!["metadata"],
            vec!["metadata", "consent"],
            vec!["metadata", "source"],
            vec!["metadata", "error"],
            vec!["unknown"],
        ]);
        let values = prop_oneof![
            prop::sample::select(vec![
                json!(null),
                json!(""),
                json!("a\u{0}b"),
                json!(7),
                json!(true),
                json!([]),
                json!({}),
                json!(["x"]),
                json!([null]),
                json!(["pii", "pii", "phi"]),
                json!("x@y"),
                json!("x@@y"),
                json!("1969-12-31T23:59:59Z"),
                json!("2026-01-15T14:32:11.234+01:00"),
                json!("2026-13-15T14:32:11Z"),
                json!("a.b"),
                json!("A.b"),
                json!("user"),
                json!("api"),
                json!("denied"),
                json!("10.0.0.1"),
                json!("::ffff:10.0.0.1"),
                json!("300.1.1.1"),
                json!({"type": "t", "id": "i"}),
                json!({"type": "t"}),
                json!({"before": null}),
                json!({"service": "billing"}),
                json!({"purposes": "x"}),
                json!("x".repeat(300)),
                json!(9_007_199_254_740_993u64),
                json!([[[[[[[[1]]]]]]]]),
            ]),
            json_value(),
        ];
        (places, values)
    }

    fn set(event: &mut Value, place: &[&str], value: Value) {
        let mut slot = event;
        for key in &place[..place.len() - 1] {
            if !slot[*key].is_object() {
                slot[*key] = json!({});
            }
            slot = &mut slot[*key];
        }
        slot[place[place.len() - 1]] = value;
    }

    fn same_answer(body: &[u8], limits: &Limits) -> Result<(), TestCaseError> {
        for format in [BodyFormat::Json, BodyFormat::Ndjson] {
            let fast = fast_batch(body, format, limits);
            let reference = reference_batch(body, format, limits);
            if let Some(events) = fast {
                prop_assert_eq!(Ok(events), reference, "{}", String::from_utf8_lossy(body));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        #[test]
        fn valid_events_take_the_fast_path(events in prop::collection::vec(event(), 1..4)) {
            let array = serde_json::to_vec(&events).unwrap();
            let lines = events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
            let limits = Limits::default();
            prop_assert_eq!(fast_batch(&array, BodyFormat::Json, &limits), reference_batch(&array, BodyFormat::Json, &limits).ok());
            prop_assert!(fast_batch(&array, BodyFormat::Json, &limits).is_some());
            prop_assert_eq!(fast_batch(lines.as_bytes(), BodyFormat::Ndjson, &limits), reference_batch(lines.as_bytes(), BodyFormat::Ndjson, &limits).ok());
            prop_assert!(fast_batch(lines.as_bytes(), BodyFormat::Ndjson, &limits).is_some());
        }

        #[test]
        fn edited_events_get_the_reference_answer(mut event in event(), edits in prop::collection::vec(edit(), 1..3), limits in limits()) {
            for (place, value) in edits {
                set(&mut event, &place, value);
            }
            let text = event.to_string();
            same_answer(text.as_bytes(), &limits)?;
            same_answer(format!("[{text}, {text}]").as_bytes(), &limits)?;
            // The same event with escapes the sender did not need (strings the parser cannot borrow).
            same_answer(text.replace('/', "\\/").replace('a', "\\u0061").as_bytes(), &limits)?;
            // A duplicate member at the top.
            same_answer(text.replacen('{', "{\"action\":\"x.y\",", 1).as_bytes(), &limits)?;
        }

        #[test]
        fn mutated_bytes_get_the_reference_answer(bytes in mutated_sample(), limits in limits()) {
            same_answer(&bytes, &limits)?;
        }
    }
}
