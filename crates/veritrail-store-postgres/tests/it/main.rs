//! Integration tests of the PostgreSQL backend against a real throw-away cluster: the shared
//! conformance suite unchanged, plus what only a shared database has (several stores — nodes —
//! on one database, migrations, a node cut off mid-commit).

#![allow(clippy::unwrap_used)]

mod nodes;

use veritrail_store_postgres::PgStore;
use veritrail_test_support::postgres::TestDatabase;

/// A store over a fresh database; the database (and the cluster) live as long as the guard.
async fn make_store() -> (PgStore, TestDatabase) {
    let database = tokio::task::spawn_blocking(TestDatabase::create).await.unwrap();
    (PgStore::connect(&database.url).await.unwrap(), database)
}

veritrail_store::store_test_suite!(make_store);
