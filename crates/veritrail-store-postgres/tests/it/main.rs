//! Integration tests of the PostgreSQL backend against a real throw-away cluster: the shared
//! conformance suites unchanged (`store_test_suite!` here, `alert_store_test_suite!` in
//! `alerts`, `access_store_test_suite!` in `access`), plus what only a shared database has
//! (several stores — nodes — on one database, migrations, a node cut off mid-commit).

#![allow(clippy::unwrap_used)]

mod access;
mod alerts;
mod nodes;
mod privacy;
mod tls;

use veritrail_store_postgres::PgStore;
use veritrail_test_support::postgres::TestDatabase;

/// The master keys every test node shares (a fixed test key; nodes of one installation must be
/// given the same).
fn test_keys() -> veritrail_crypto::MasterKeys {
    veritrail_crypto::MasterKeys::new(veritrail_crypto::MasterKey::from_bytes([0x5a; 32]))
}

/// A store over a fresh database; the database (and the cluster) live as long as the guard.
async fn make_store() -> (PgStore, TestDatabase) {
    let database = tokio::task::spawn_blocking(TestDatabase::create).await.unwrap();
    (PgStore::connect(&database.url, test_keys()).await.unwrap(), database)
}

veritrail_store::store_test_suite!(make_store);
