//! The access store on PostgreSQL: the shared conformance suite unchanged, and what several
//! nodes racing must not break (a held role is never deleted, no session outlives a suspension).

use std::time::Duration;

use jiff::Timestamp;
use veritrail_store::{AccessStore, RoleRecord, SessionRecord, StoreError, UserRecord, UserStatus, UserUpdate};
use veritrail_store_postgres::PgAccessStore;
use veritrail_test_support::postgres::TestDatabase;

/// An access store over a fresh database; the database lives as long as the guard.
async fn make_access_store() -> (PgAccessStore, TestDatabase) {
    let database = tokio::task::spawn_blocking(TestDatabase::create).await.unwrap();
    (PgAccessStore::connect(&database.url).await.unwrap(), database)
}

veritrail_store::access_store_test_suite!(make_access_store);

/// Two nodes on one fresh database.
async fn two_nodes() -> (PgAccessStore, PgAccessStore, TestDatabase) {
    let database = tokio::task::spawn_blocking(TestDatabase::create).await.unwrap();
    let a = PgAccessStore::connect(&database.url).await.unwrap();
    let b = PgAccessStore::connect(&database.url).await.unwrap();
    (a, b, database)
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

fn user(id: &str, role: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        tenant: "tn_a".into(),
        email: format!("{id}@example.com"),
        password_hash: None,
        role: role.into(),
        actor_id: None,
        status: UserStatus::Active,
        created_at: at(0),
        updated_at: at(0),
    }
}

fn role(name: &str) -> RoleRecord {
    RoleRecord {
        tenant: "tn_a".into(),
        name: name.into(),
        description: None,
        permissions: vec!["alerts:read".into()],
        created_at: at(0),
        updated_at: at(0),
    }
}

fn session(id: &str, user_id: &str) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        tenant: "tn_a".into(),
        user_id: user_id.into(),
        secret_hash: [9; 32],
        created_at: at(1),
        expires_at: at(3_600),
        last_seen_at: at(1),
        revoked_at: None,
        ip: None,
        user_agent: None,
    }
}

/// A delay of 0 to 3.5 ms, varied by round, so that either side of a race starts first.
async fn stagger(round: u64) {
    tokio::time::sleep(Duration::from_micros(round % 8 * 500)).await;
}

/// One node deletes a role while the other assigns it: exactly one of them wins, and a user
/// never holds a role that no longer exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_deleted_while_assigned_elsewhere_is_never_left_dangling() {
    let (a, b, _database) = two_nodes().await;
    let mut held = 0;
    for round in 0..40 {
        let name = format!("responder_{round}");
        let id = format!("usr_{round}");
        a.create_role(role(&name)).await.unwrap();
        a.create_user(user(&id, "auditor")).await.unwrap();
        let assign = UserUpdate { role: Some(name.clone()), ..UserUpdate::default() };
        let delete = async {
            stagger(round).await;
            b.delete_role("tn_a", &name).await
        };
        let (assigned, deleted) = tokio::join!(a.update_user("tn_a", &id, assign, at(5)), delete);
        let role_exists = b.role("tn_a", &name).await.unwrap().is_some();
        let holds = a.user("tn_a", &id).await.unwrap().unwrap().role == name;
        match (assigned, deleted) {
            (Ok(Some(_)), Err(StoreError::Conflict(_))) => {
                held += 1;
                assert!(role_exists && holds, "round {round}");
            }
            (Err(StoreError::Conflict(_)), Ok(true)) => assert!(!role_exists && !holds, "round {round}"),
            other => panic!("round {round}: unexpected outcome {other:?}"),
        }
    }
    eprintln!("{held} of 40 roles kept by the assignment, the others deleted");
}

/// One node creates a session while the other suspends its user: either the session is
/// refused or it is revoked by the suspension; never an open session of a suspended user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_created_concurrently_survives_a_suspension() {
    let (a, b, _database) = two_nodes().await;
    let mut refused = 0;
    for round in 0..40 {
        let id = format!("usr_{round}");
        let session_id = format!("ses_{round}");
        a.create_user(user(&id, "auditor")).await.unwrap();
        let suspend = UserUpdate { status: Some(UserStatus::Suspended), ..UserUpdate::default() };
        let suspension = async {
            stagger(round).await;
            b.update_user("tn_a", &id, suspend, at(7)).await
        };
        let (created, suspended) = tokio::join!(a.create_session(session(&session_id, &id)), suspension);
        assert_eq!(suspended.unwrap().unwrap().status, UserStatus::Suspended);
        match created.unwrap() {
            true => {
                let stored = b.session(&session_id).await.unwrap().unwrap();
                assert_eq!(stored.revoked_at, Some(at(7)), "round {round}: revoked by the suspension");
            }
            false => {
                refused += 1;
                assert!(b.session(&session_id).await.unwrap().is_none(), "round {round}");
            }
        }
    }
    eprintln!("{refused} of 40 sessions refused, the others revoked");
}

/// Two nodes creating the same email at once: one user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_per_email_whichever_node_creates_it() {
    let (a, b, _database) = two_nodes().await;
    for round in 0..20 {
        let email = format!("person{round}@example.com");
        let first = UserRecord { email: email.clone(), ..user(&format!("usr_a{round}"), "auditor") };
        let second = UserRecord { email: email.to_uppercase(), ..user(&format!("usr_b{round}"), "auditor") };
        let (x, y) = tokio::join!(a.create_user(first), b.create_user(second));
        let outcomes = [x.is_ok(), y.is_ok()];
        assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "round {round}: {x:?} {y:?}");
        for result in [x, y] {
            if let Err(error) = result {
                assert!(matches!(error, StoreError::AlreadyExists(_)), "{error:?}");
            }
        }
    }
}
