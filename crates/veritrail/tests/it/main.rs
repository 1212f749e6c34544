//! End-to-end tests of Veritrail over real HTTP: an in-process server on a loopback port over a
//! real data directory (`TestServer`), or the real `veritrail` binary as a child process (on its
//! data directory, or several of them on one throw-away PostgreSQL database).

#![allow(clippy::unwrap_used)]

mod access;
mod alerts;
mod api;
mod bad_input;
mod crash;
mod email;
mod ledger;
mod matrix;
mod migrate_store;
mod postgres;
mod privacy;
mod proofs;
mod property;
mod sso;
mod tls;
mod tsa;
