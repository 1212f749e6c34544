//! Project automation in Rust (matklad's xtask pattern): `cargo xtask <task>`.
//!
//! - `test`  — formatting check, clippy with warnings denied, then the whole test suite
//!   (cargo-nextest when installed, `cargo test` otherwise), then the API integration tests
//!   again on PostgreSQL. `.ci/run` calls exactly this.
//! - `bench` — the benchmarks of BENCHMARKS.md (see `cargo xtask bench --help`).

use std::process::{Command, ExitCode};
use std::time::Instant;

/// API integration tests (name prefixes in `veritrail`'s `it` binary) left out of the PostgreSQL
/// pass because they are about the embedded store itself; everything else runs on both.
const EMBEDDED_ONLY: &[(&str, &str)] = &[
    ("postgres::", "they start their own nodes on their own database already"),
    ("migrate_store::", "they choose their backends themselves (a data directory and a database of their own)"),
    ("crash::reindex_command_", "`veritrail reindex` rebuilds the index files; PostgreSQL indexes with the record"),
    ("ledger::data_dir_verification_", "`verify --data-dir` and tampering with ledger.sqlite"),
    ("ledger::a_restored_backup_", "a cold backup copies the data directory's files; `verify --data-dir --checkpoint`"),
    ("privacy::master_key_rotation_", "`rotate-master-key` rewrites master.key; PostgreSQL's key is configured"),
    ("privacy::the_master_key_rotates_online_", "it swaps master.key; PostgreSQL's key rotates by restart"),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask test [nextest filters...] | cargo xtask bench [args...]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(mut command: Command, what: &str) -> Result<(), String> {
    eprintln!("xtask: {what}");
    let status = command.status().map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{what} failed ({status})")) }
}

fn has_nextest() -> bool {
    cargo().args(["nextest", "--version"]).output().map(|o| o.status.success()).unwrap_or(false)
}

fn test(filters: &[String]) -> Result<(), String> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt, "cargo fmt --check")?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    run(clippy, "cargo clippy")?;
    let mut tests = cargo();
    if has_nextest() {
        tests.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        tests.args(["test", "--workspace", "--no-fail-fast"]);
    }
    tests.args(filters);
    run(tests, "test suite")?;
    if !filters.is_empty() {
        eprintln!("xtask: filters given, so no PostgreSQL pass of the API tests (VERITRAIL_TEST_BACKEND=postgres)");
        return Ok(());
    }
    let started = Instant::now();
    run(api_tests_on_postgres(), "API tests on PostgreSQL")?;
    eprintln!("xtask: API tests on PostgreSQL took {:.0?}", started.elapsed());
    Ok(())
}

/// The `veritrail` API integration tests with their servers on PostgreSQL
/// (`VERITRAIL_TEST_BACKEND`), except [`EMBEDDED_ONLY`].
fn api_tests_on_postgres() -> Command {
    let mut tests = cargo();
    tests.env("VERITRAIL_TEST_BACKEND", "postgres");
    if has_nextest() {
        // `--workspace` like the full run, so that no dependency is rebuilt with other features.
        let excluded: Vec<String> = EMBEDDED_ONLY.iter().map(|(prefix, _)| format!("test(/^{prefix}/)")).collect();
        let filter = format!("binary_id(veritrail::it) & not ({})", excluded.join(" | "));
        tests.args(["nextest", "run", "--workspace", "--no-fail-fast", "-E", &filter]);
    } else {
        tests.args(["test", "-p", "veritrail", "--test", "it", "--no-fail-fast", "--"]);
        for (prefix, _) in EMBEDDED_ONLY {
            tests.args(["--skip", prefix]);
        }
    }
    tests
}

fn bench(args: &[String]) -> Result<(), String> {
    // `bench postgres` runs the `veritrail` binary too: both built by one cargo command (one
    // feature resolution), since two builds with different features overwrite each other's
    // dependency artifacts (ring, rustls) and rebuild them every time.
    if args.first().map(String::as_str) == Some("postgres") {
        let mut build = cargo();
        build.args(["build", "--release", "--package", "veritrail", "--package", "veritrail-bench"]);
        run(build, "benchmark build")?;
        let release = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => std::path::PathBuf::from(dir).join("release"),
            None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release"),
        };
        let mut command = Command::new(release.join("veritrail-bench"));
        command.args(args).env("VERITRAIL_BENCH_BINARY", release.join("veritrail"));
        return run(command, "benchmarks");
    }
    let mut command = cargo();
    command.args(["run", "--release", "--package", "veritrail-bench", "--"]);
    command.args(args);
    run(command, "benchmarks")
}
