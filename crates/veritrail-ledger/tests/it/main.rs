//! End-to-end use of the ledger format, the way the writer, the store and an offline
//! verifier combine it.

mod ledger;
