use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn check(input: &str, expected: &str) {
    let value: Value = serde_json::from_str(input).unwrap();
    let canonical = canonicalize(&value).unwrap();
    assert_eq!(canonical, expected, "canonical form of {input}");
    assert!(is_canonical(expected.as_bytes()), "{expected} is canonical");
    let mut out = b"prefix".to_vec();
    canonicalize_to(&value, &mut out).unwrap();
    assert_eq!(out, [b"prefix".as_slice(), expected.as_bytes()].concat());
}

fn number(bits: u64) -> String {
    let value = Value::from(f64::from_bits(bits));
    canonicalize(&value).unwrap()
}

#[test]
fn rfc8785_section_3_2_2_sample() {
    check(
        r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#,
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#,
    );
}

#[test]
fn rfc8785_section_3_2_3_sorting() {
    let input = r#"{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }"#;
    let expected = concat!(
        "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",",
        "\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",",
        "\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
    );
    check(input, expected);
    // U+1F600 sorts before U+FB33 in UTF-16 (0xD83D < 0xFB33), after it in UTF-8.
    assert!("\u{1f600}" > "\u{fb33}");
}

#[test]
fn rfc8785_appendix_b_numbers() {
    let samples: [(u64, &str); 24] = [
        (0x0000000000000000, "0"),
        (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"),
        (0x8000000000000001, "-5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0xc340000000000000, "-9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44b52d02c7e14af5, "9.999999999999997e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
        (0x444b1ae4d6e2ef4e, "999999999999999700000"),
        (0x444b1ae4d6e2ef4f, "999999999999999900000"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
        (0x3eb0c6f7a0b5ed8d, "0.000001"),
        (0x41b3de4355555553, "333333333.3333332"),
        (0x41b3de4355555554, "333333333.33333325"),
        (0x41b3de4355555555, "333333333.3333333"),
        (0x41b3de4355555556, "333333333.3333334"),
        (0x41b3de4355555557, "333333333.33333343"),
        (0xbecbf647612f3696, "-0.0000033333333333333333"),
        (0x43143ff3c1cb0959, "1424953923781206.2"),
    ];
    for (bits, expected) in samples {
        assert_eq!(number(bits), expected, "number {bits:016x}");
        // The canonical text parses back to the same double.
        let parsed: f64 = serde_json::from_str(expected).unwrap();
        assert_eq!(parsed, f64::from_bits(bits)); // also true for -0 == 0
    }
    // NaN and the infinities are not JSON numbers: serde_json cannot even hold them.
    assert_eq!(Value::from(f64::NAN), Value::Null);
    assert_eq!(Value::from(f64::INFINITY), Value::Null);
}

#[test]
fn number_literals_from_json_text() {
    check("[1e21, 1e-7, 1E-6, 100, -0, -0.0, 0.1, 1.5e300]", "[1e+21,1e-7,0.000001,100,0,0,0.1,1.5e+300]");
    check("[5e-324, 1.7976931348623157e308]", "[5e-324,1.7976931348623157e+308]");
    check("[9007199254740992, -9007199254740992]", "[9007199254740992,-9007199254740992]");
    // Integers whose double prints back as the same digits.
    check("[1152921504606847000, -9223372036854776000]", "[1152921504606847000,-9223372036854776000]");
    check("1938864716147061500", "1938864716147061500");
    // Beyond u64, serde_json reads a double, as ECMAScript does (I-JSON: avoid these).
    check("295147905179352825856", "295147905179352830000");
}

#[test]
fn integers_that_would_change_are_refused() {
    let cases = [
        ("9007199254740993", "9007199254740992"),
        ("-9007199254740993", "-9007199254740992"),
        ("18446744073709551615", "18446744073709552000"),
        // Exactly 2^60, but JCS would print other digits.
        ("1152921504606846976", "1152921504606847000"),
    ];
    for (text, printed) in cases {
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            canonicalize(&value),
            Err(JcsError::IntegerNotPreserved { integer: text.to_string(), canonical: printed.to_string() })
        );
        assert!(!is_canonical(text.as_bytes()));
    }
    let mut out = b"kept".to_vec();
    assert!(canonicalize_to(&json!({"n": u64::MAX}), &mut out).is_err());
    assert_eq!(out, b"kept");
}

#[test]
fn string_escaping() {
    let all_controls: String = (0u8..0x20).map(char::from).collect();
    let expected = concat!(
        "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007",
        "\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f",
        "\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017",
        "\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\""
    );
    assert_eq!(canonicalize(&Value::from(all_controls)).unwrap(), expected);

    // Quote and backslash escaped; slash, DEL, U+2028/U+2029, non-BMP and the rest literal.
    let text = "\"\\/\u{7f}\u{80}\u{2028}\u{2029}\u{1f600}<script>é";
    assert_eq!(
        canonicalize(&Value::from(text)).unwrap(),
        "\"\\\"\\\\/\u{7f}\u{80}\u{2028}\u{2029}\u{1f600}<script>é\""
    );
    check(r#""\u1e0d\u0307""#, "\"\u{1e0d}\u{307}\"");
}

#[test]
fn cyberphone_test_data() {
    // github.com/cyberphone/json-canonicalization testdata input/output pairs.
    check(r#"[56, {"d": true, "10": null, "1": [ ]}]"#, r#"[56,{"1":[],"10":null,"d":true}]"#);
    check(
        r#"{"1": {"f": {"f": "hi","F": 5} ,"\n": 56.0}, "10": { }, "": "empty", "a": { }, "111": [ { } ], "A": { }}"#,
        r#"{"":"empty","1":{"\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}"#,
    );
    check(
        r#"{"peach": "This sorting order", "péché": "is wrong according to French", "pêche": "but canonicalization MUST", "sin": "ingnore locale"}"#,
        r#"{"peach":"This sorting order","péché":"is wrong according to French","pêche":"but canonicalization MUST","sin":"ingnore locale"}"#,
    );
    check(
        r#"{"\u20ac": "Euro Sign", "1": "One", "\u0080": "Control\u007f", "\ud83d\ude02": "Smiley", "\u00f6": "Latin Small Letter O With Diaeresis", "\ufb33": "Hebrew Letter Dalet With Dagesh", "</script>": "Browser Challenge"}"#,
        "{\"1\":\"One\",\"</script>\":\"Browser Challenge\",\"\u{80}\":\"Control\u{7f}\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f602}\":\"Smiley\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}",
    );
}

#[test]
fn is_canonical_rejects_every_other_spelling() {
    assert!(is_canonical(br#"{"a":1,"b":[true,null]}"#));
    for text in [
        r#"{"b":1,"a":2}"#,  // unsorted
        r#"{"a": 1}"#,       // whitespace
        r#"{"a":1} "#,       // trailing whitespace
        r#"{"a":1,"a":1}"#,  // duplicate member
        r#"{"a":1.0}"#,      // non-shortest number
        r#"{"a":1E+21}"#,    // exponent spelling
        r#"{"a":-0}"#,       // negative zero
        r#"{"a":"\u0041"}"#, // needless escape
        r#"{"a":"\/"}"#,     // escaped slash
        r#"{"a":"\u001F"}"#, // uppercase hex
        r#"{"a":"\ud800"}"#, // lone surrogate
        "\u{feff}{}",        // byte order mark
        "",
        "{",
    ] {
        assert!(!is_canonical(text.as_bytes()), "{text:?} is not canonical");
    }
    assert!(!is_canonical(b"\"\xff\""));
}

#[test]
fn nesting_is_limited_to_what_can_be_parsed_back() {
    let nested = |depth: usize| "[".repeat(depth) + &"]".repeat(depth);
    let deepest = nested(MAX_DEPTH);
    let value: Value = serde_json::from_str(&deepest).unwrap();
    assert_eq!(canonicalize(&value).unwrap(), deepest);
    assert!(is_canonical(deepest.as_bytes()));
    assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH + 1)).is_err());

    let mut too_deep = Value::Null;
    for _ in 0..=MAX_DEPTH {
        too_deep = json!({ "a": too_deep });
    }
    assert_eq!(canonicalize(&too_deep), Err(JcsError::TooDeep));
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (-(1i64 << 53)..=(1i64 << 53)).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            proptest::collection::btree_map(any::<String>(), inner, 0..8)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn numbers_as_doubles(value: &Value) -> Value {
    match value {
        Value::Number(number) => Value::from(number.as_f64().unwrap() + 0.0),
        Value::Array(items) => items.iter().map(numbers_as_doubles).collect(),
        Value::Object(members) => {
            members.iter().map(|(name, member)| (name.clone(), numbers_as_doubles(member))).collect()
        }
        other => other.clone(),
    }
}

proptest! {
    #[test]
    fn canonical_output_is_stable_and_equivalent(value in arbitrary_json()) {
        // Large integers may be refused; everything else has a canonical form.
        let canonical = match canonicalize(&value) {
            Ok(canonical) => canonical,
            Err(JcsError::IntegerNotPreserved { .. }) => return Ok(()),
            Err(other) => panic!("{other}"),
        };
        prop_assert!(is_canonical(canonical.as_bytes()));
        let reparsed: Value = serde_json::from_str(&canonical).unwrap();
        prop_assert_eq!(canonicalize(&reparsed).unwrap(), canonical);
        // The same data, numbers compared as doubles.
        prop_assert_eq!(numbers_as_doubles(&reparsed), numbers_as_doubles(&value));
    }

    #[test]
    fn is_canonical_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = is_canonical(&bytes);
    }

    #[test]
    fn doubles_round_trip(bits in any::<u64>()) {
        let double = f64::from_bits(bits);
        prop_assume!(double.is_finite());
        let text = canonicalize(&Value::from(double)).unwrap();
        let parsed: f64 = serde_json::from_str(&text).unwrap();
        prop_assert!(parsed == double, "{} -> {} -> {}", double, text, parsed);
    }
}
