//! Integration tests of the SQLite backend: the shared conformance suite, plus what only an
//! embedded store has (files, restarts, a damaged index).

#![allow(clippy::unwrap_used)]

mod access;
mod durability;
mod recent;
mod wal;

use veritrail_store_sqlite::SqliteStore;

async fn make_store() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (SqliteStore::open(dir.path()).unwrap(), dir)
}

veritrail_store::store_test_suite!(make_store);

/// The monitoring half (`alerts.sqlite`), through the shared alert-store suite.
mod alert_store {
    async fn make_alert_store() -> (veritrail_store_sqlite::SqliteAlertStore, tempfile::TempDir) {
        let (store, dir) = super::make_store().await;
        (store.alert_store(), dir)
    }

    veritrail_store::alert_store_test_suite!(make_alert_store);
}
