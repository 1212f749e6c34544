use super::*;

#[test]
fn docs_errors_md_is_the_code_table() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/errors.md");
    let expected = error_table_markdown();
    if std::env::var_os("VERITRAIL_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(actual, expected, "docs/errors.md is stale: run VERITRAIL_BLESS=1 cargo test -p veritrail-server");
}

#[test]
fn codes_are_unique_snake_case() {
    let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.name()).collect();
    assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')));
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Code::ALL.len());
}
