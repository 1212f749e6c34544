use super::printable;

#[test]
fn printable_escapes_and_cuts() {
    assert_eq!(printable("plain é", 10), "plain é");
    assert_eq!(printable("abcdef", 3), "abc…");
    assert_eq!(printable("a\nb\u{1b}[0m", 20), "a\\nb\\u{1b}[0m");
    assert_eq!(printable("admin\u{202E}nimda", 20), "admin\\u{202e}nimda");
}
