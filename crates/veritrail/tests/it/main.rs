//! End-to-end tests of Veritrail over real HTTP: an in-process server on a loopback port over a
//! real data directory (`TestServer`), or the real `veritrail` binary as a child process.

#![allow(clippy::unwrap_used)]

mod api;
mod bad_input;
mod crash;
mod ledger;
mod proofs;
mod property;
mod tsa;
