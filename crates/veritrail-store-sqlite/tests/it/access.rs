//! The access-control half (`access.sqlite`): the shared access-store suite, and what only a
//! file in the data directory has (its mode, a restart).

use jiff::Timestamp;
use veritrail_store::{AccessStore, SessionRecord, Store, UserRecord, UserStatus};
use veritrail_store_sqlite::{ACCESS_FILE, SqliteAccessStore, SqliteStore};

async fn make_access_store() -> (SqliteAccessStore, tempfile::TempDir) {
    let (store, dir) = super::make_store().await;
    (store.access_store(), dir)
}

veritrail_store::access_store_test_suite!(make_access_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_file_is_private_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let at = Timestamp::from_second(1_700_000_000).unwrap();
    let user = UserRecord {
        id: "usr_1".into(),
        tenant: "tn_a".into(),
        email: "a@example.com".into(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        role: "auditor".into(),
        actor_id: None,
        status: UserStatus::Active,
        created_at: at,
        updated_at: at,
    };
    let session = SessionRecord {
        id: "ses_1".into(),
        tenant: "tn_a".into(),
        user_id: "usr_1".into(),
        secret_hash: [3; 32],
        created_at: at,
        expires_at: at,
        last_seen_at: at,
        revoked_at: None,
        ip: None,
        user_agent: None,
    };
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        store.access_store().create_user(user.clone()).await.unwrap();
        assert!(store.access_store().create_session(session.clone()).await.unwrap());
        store.rebuild_indexes().await.unwrap();
        store.shutdown().await.unwrap();
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(ACCESS_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    let access = store.access_store();
    assert_eq!(access.user("tn_a", "usr_1").await.unwrap(), Some(user));
    assert_eq!(access.session("ses_1").await.unwrap(), Some(session));
}
