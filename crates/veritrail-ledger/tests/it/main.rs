//! End-to-end use of the ledger format, the way the writer, the store and an offline
//! verifier combine it.

// Test helpers outside `#[test]` functions may unwrap too.
#![allow(clippy::unwrap_used)]

mod ledger;
