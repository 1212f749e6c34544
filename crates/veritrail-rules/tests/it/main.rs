//! The rule engine through its public API, on simulated clocks: every rule kind, window edges,
//! out-of-order `occurred_at`, bounds, dry runs, and restarts rebuilt by replay.

// Test helpers outside `#[test]` functions may unwrap too.
#![allow(clippy::unwrap_used)]

mod engine;
mod needs;
mod pack;
mod replay;
mod sim;
mod spec;
