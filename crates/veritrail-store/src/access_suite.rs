//! The conformance suite every [`AccessStore`] backend must pass. A backend's test binary
//! stamps it with `veritrail_store::access_store_test_suite!(make_access_store);` where
//! `make_access_store` is an async fn returning `(impl AccessStore, Guard)`.

#![allow(clippy::unwrap_used)] // test code: a failure is the finding

use jiff::Timestamp;
use serde_json::json;

use crate::{
    AccessStore, IdentityProviderRecord, RoleRecord, SessionRecord, StoreError, UserCursor, UserRecord, UserStatus,
    UserUpdate,
};

/// Stamps every access-store conformance test onto a backend. See the module docs.
#[macro_export]
macro_rules! access_store_test_suite {
    ($make:path) => {
        $crate::access_store_test_suite!(@tests $make;
            user_emails_are_unique_per_tenant,
            users_page_by_creation,
            user_updates_change_only_what_is_given,
            deleting_a_user_deletes_its_sessions,
            sessions_touch_and_revoke,
            sessions_need_an_active_user_of_their_tenant,
            suspending_a_user_revokes_its_sessions,
            old_sessions_are_purged,
            custom_roles_round_trip,
            assigned_roles_cannot_be_deleted,
            identity_providers_round_trip,
        );
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make().await;
                $crate::access_suite::$name(&store).await;
            }
        )*
    };
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).expect("valid test time")
}

/// A PHC string shaped like the real ones (the store keeps it opaque).
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";

fn user(tenant: &str, id: &str, email: &str, role: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        tenant: tenant.into(),
        email: email.into(),
        password_hash: Some(HASH.into()),
        role: role.into(),
        actor_id: Some(format!("actor-{id}")),
        status: UserStatus::Active,
        created_at: at(0),
        updated_at: at(0),
    }
}

fn session(tenant: &str, id: &str, user_id: &str) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        tenant: tenant.into(),
        user_id: user_id.into(),
        secret_hash: [id.len() as u8; 32],
        created_at: at(10),
        expires_at: at(3_610),
        last_seen_at: at(10),
        revoked_at: None,
        ip: Some("192.0.2.7".into()),
        user_agent: Some("curl/8.5".into()),
    }
}

fn role(tenant: &str, name: &str, permissions: &[&str]) -> RoleRecord {
    RoleRecord {
        tenant: tenant.into(),
        name: name.into(),
        description: Some(format!("{name} role")),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
        created_at: at(0),
        updated_at: at(0),
    }
}

fn provider(tenant: &str, id: &str, issuer: &str) -> IdentityProviderRecord {
    IdentityProviderRecord {
        id: id.into(),
        tenant: tenant.into(),
        config: json!({
            "issuer": issuer,
            "audience": "veritrail",
            "allowed_algorithms": ["RS256"],
            "role_mapping": {"auditors": "auditor"},
        }),
        created_at: at(0),
        updated_at: at(0),
    }
}

fn user_ids(users: &[UserRecord]) -> Vec<&str> {
    users.iter().map(|u| u.id.as_str()).collect()
}

fn is_conflict<T: std::fmt::Debug>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Conflict(_)))
}

/// One login per email and tenant, whatever the case; lookups never cross tenants.
pub async fn user_emails_are_unique_per_tenant(store: &impl AccessStore) {
    store.create_user(user("tn_a", "usr_1", "Alice@Example.com", "auditor")).await.unwrap();
    let stored = store.user("tn_a", "usr_1").await.unwrap().unwrap();
    assert_eq!(stored, user("tn_a", "usr_1", "alice@example.com", "auditor"), "email stored lowercased");

    let twin = store.create_user(user("tn_a", "usr_2", "alice@EXAMPLE.com", "auditor")).await;
    assert!(matches!(twin, Err(StoreError::AlreadyExists(_))), "{twin:?}");
    let same_id = store.create_user(user("tn_a", "usr_1", "other@example.com", "auditor")).await;
    assert!(matches!(same_id, Err(StoreError::AlreadyExists(_))), "{same_id:?}");
    store.create_user(user("tn_b", "usr_b1", "alice@example.com", "super_admin")).await.unwrap();

    let found = store.user_by_email("tn_a", "ALICE@example.com").await.unwrap().unwrap();
    assert_eq!(found.id, "usr_1");
    assert_eq!(store.user_by_email("tn_b", "alice@example.com").await.unwrap().unwrap().id, "usr_b1");
    assert!(store.user_by_email("tn_c", "alice@example.com").await.unwrap().is_none());
    assert!(store.user("tn_b", "usr_1").await.unwrap().is_none(), "another tenant's user is absent");

    // SSO-only users have no password.
    let sso =
        UserRecord { password_hash: None, actor_id: None, ..user("tn_a", "usr_sso", "sso@example.com", "auditor") };
    store.create_user(sso.clone()).await.unwrap();
    assert_eq!(store.user("tn_a", "usr_sso").await.unwrap().unwrap(), sso);
}

/// Users list by creation time, then id, and pages continue after the last one listed.
pub async fn users_page_by_creation(store: &impl AccessStore) {
    // Created out of id order, two at the same instant.
    let plan = [("usr_e", 5), ("usr_a", 1), ("usr_d", 3), ("usr_c", 3), ("usr_b", 2), ("usr_f", 9), ("usr_g", 7)];
    for (id, created) in plan {
        let mut record = user("tn_a", id, &format!("{id}@example.com"), "standard_user");
        record.created_at = at(created);
        record.updated_at = at(created);
        store.create_user(record).await.unwrap();
    }
    store.create_user(user("tn_b", "usr_0", "zero@example.com", "standard_user")).await.unwrap();

    let all = store.users("tn_a", None, 100).await.unwrap();
    assert_eq!(user_ids(&all), ["usr_a", "usr_b", "usr_c", "usr_d", "usr_e", "usr_g", "usr_f"]);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.users("tn_a", after.clone(), 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().map(UserCursor::after);
        seen.extend(page.into_iter().map(|u| u.id));
    }
    assert_eq!(seen, user_ids(&all));
    // A cursor stays valid when its user is deleted.
    let cursor = UserCursor::after(&all[2]);
    assert!(store.delete_user("tn_a", "usr_c").await.unwrap());
    assert_eq!(user_ids(&store.users("tn_a", Some(cursor), 2).await.unwrap()), ["usr_d", "usr_e"]);
    assert_eq!(user_ids(&store.users("tn_b", None, 100).await.unwrap()), ["usr_0"]);
}

/// Each field changes on its own; `updated_at` moves, `created_at` stays.
pub async fn user_updates_change_only_what_is_given(store: &impl AccessStore) {
    store.create_user(user("tn_a", "usr_1", "a@example.com", "auditor")).await.unwrap();
    let original = store.user("tn_a", "usr_1").await.unwrap().unwrap();

    let update = UserUpdate { role: Some("compliance_officer".into()), ..UserUpdate::default() };
    let changed = store.update_user("tn_a", "usr_1", update, at(20)).await.unwrap().unwrap();
    let expected = UserRecord { role: "compliance_officer".into(), updated_at: at(20), ..original.clone() };
    assert_eq!(changed, expected);
    assert_eq!(store.user("tn_a", "usr_1").await.unwrap().unwrap(), expected);

    let update = UserUpdate { actor_id: Some(None), password_hash: Some(None), ..UserUpdate::default() };
    let changed = store.update_user("tn_a", "usr_1", update, at(30)).await.unwrap().unwrap();
    assert_eq!((changed.actor_id, changed.password_hash.clone()), (None, None));
    assert_eq!((changed.role.as_str(), changed.created_at, changed.updated_at), ("compliance_officer", at(0), at(30)));

    let new_hash = format!("{HASH}x");
    let update = UserUpdate {
        actor_id: Some(Some("user-42".into())),
        password_hash: Some(Some(new_hash.clone())),
        status: Some(UserStatus::Suspended),
        ..UserUpdate::default()
    };
    let changed = store.update_user("tn_a", "usr_1", update, at(40)).await.unwrap().unwrap();
    assert_eq!(changed.actor_id.as_deref(), Some("user-42"));
    assert_eq!(changed.password_hash.as_deref(), Some(new_hash.as_str()));
    assert_eq!(changed.status, UserStatus::Suspended);
    let update = UserUpdate { status: Some(UserStatus::Active), ..UserUpdate::default() };
    assert_eq!(store.update_user("tn_a", "usr_1", update, at(50)).await.unwrap().unwrap().status, UserStatus::Active);

    let nothing = store.update_user("tn_a", "usr_1", UserUpdate::default(), at(60)).await.unwrap().unwrap();
    assert_eq!((nothing.role.as_str(), nothing.updated_at), ("compliance_officer", at(60)));

    let update = UserUpdate { role: Some("super_admin".into()), ..UserUpdate::default() };
    assert!(store.update_user("tn_b", "usr_1", update.clone(), at(70)).await.unwrap().is_none(), "isolated");
    assert!(store.update_user("tn_a", "usr_missing", update, at(70)).await.unwrap().is_none());
    assert_eq!(store.user("tn_a", "usr_1").await.unwrap().unwrap().role, "compliance_officer");
}

/// A deleted user is gone with its sessions; another tenant cannot delete it.
pub async fn deleting_a_user_deletes_its_sessions(store: &impl AccessStore) {
    store.create_user(user("tn_a", "usr_1", "a@example.com", "auditor")).await.unwrap();
    assert!(store.create_session(session("tn_a", "ses_1", "usr_1")).await.unwrap());
    assert!(!store.delete_user("tn_b", "usr_1").await.unwrap(), "isolated");
    assert!(store.session("ses_1").await.unwrap().is_some());

    assert!(store.delete_user("tn_a", "usr_1").await.unwrap());
    assert!(!store.delete_user("tn_a", "usr_1").await.unwrap(), "deleted once");
    assert!(store.user("tn_a", "usr_1").await.unwrap().is_none());
    assert!(store.user_by_email("tn_a", "a@example.com").await.unwrap().is_none());
    assert!(store.session("ses_1").await.unwrap().is_none(), "its sessions went with it");
    // The email is free again.
    store.create_user(user("tn_a", "usr_2", "a@example.com", "auditor")).await.unwrap();
}

/// Sessions read back as stored; touches only move forward; revocation is once and isolated.
pub async fn sessions_touch_and_revoke(store: &impl AccessStore) {
    store.create_user(user("tn_a", "usr_1", "a@example.com", "auditor")).await.unwrap();
    let created = session("tn_a", "ses_1", "usr_1");
    assert!(store.create_session(created.clone()).await.unwrap());
    assert_eq!(store.session("ses_1").await.unwrap().unwrap(), created);
    let again = store.create_session(created.clone()).await;
    assert!(matches!(again, Err(StoreError::AlreadyExists(_))), "{again:?}");
    assert!(store.session("ses_missing").await.unwrap().is_none());

    assert!(store.touch_session("tn_a", "ses_1", at(100)).await.unwrap());
    assert!(store.touch_session("tn_a", "ses_1", at(50)).await.unwrap());
    assert_eq!(store.session("ses_1").await.unwrap().unwrap().last_seen_at, at(100), "never moves back");
    assert!(!store.touch_session("tn_b", "ses_1", at(200)).await.unwrap(), "isolated");
    assert!(!store.touch_session("tn_a", "ses_1", at(3_610)).await.unwrap(), "expired");
    assert!(!store.revoke_session("tn_b", "ses_1", at(200)).await.unwrap(), "isolated");
    assert_eq!(store.session("ses_1").await.unwrap().unwrap().revoked_at, None);

    assert!(store.revoke_session("tn_a", "ses_1", at(200)).await.unwrap());
    assert!(!store.revoke_session("tn_a", "ses_1", at(300)).await.unwrap(), "revoked once");
    let revoked = store.session("ses_1").await.unwrap().unwrap();
    assert_eq!((revoked.revoked_at, revoked.last_seen_at), (Some(at(200)), at(100)));
    assert!(!store.touch_session("tn_a", "ses_1", at(250)).await.unwrap(), "revoked");

    let bare = SessionRecord { ip: None, user_agent: None, ..session("tn_a", "ses_2", "usr_1") };
    assert!(store.create_session(bare.clone()).await.unwrap());
    assert_eq!(store.session("ses_2").await.unwrap().unwrap(), bare);
}

/// No session for a missing, suspended or other tenant's user.
pub async fn sessions_need_an_active_user_of_their_tenant(store: &impl AccessStore) {
    store.create_user(user("tn_a", "usr_1", "a@example.com", "auditor")).await.unwrap();
    store.create_user(user("tn_b", "usr_b", "b@example.com", "auditor")).await.unwrap();
    assert!(!store.create_session(session("tn_a", "ses_1", "usr_missing")).await.unwrap());
    assert!(!store.create_session(session("tn_a", "ses_2", "usr_b")).await.unwrap(), "another tenant's user");
    let suspend = UserUpdate { status: Some(UserStatus::Suspended), ..UserUpdate::default() };
    store.update_user("tn_a", "usr_1", suspend, at(5)).await.unwrap().unwrap();
    assert!(!store.create_session(session("tn_a", "ses_3", "usr_1")).await.unwrap(), "suspended");
    for id in ["ses_1", "ses_2", "ses_3"] {
        assert!(store.session(id).await.unwrap().is_none(), "{id} was not written");
    }
}

/// Suspension revokes every open session of the user, and only its; so can the caller.
pub async fn suspending_a_user_revokes_its_sessions(store: &impl AccessStore) {
    store.create_user(user("tn_a", "usr_1", "a@example.com", "auditor")).await.unwrap();
    store.create_user(user("tn_a", "usr_2", "b@example.com", "auditor")).await.unwrap();
    for (id, owner) in [("ses_1", "usr_1"), ("ses_2", "usr_1"), ("ses_3", "usr_1"), ("ses_4", "usr_2")] {
        assert!(store.create_session(session("tn_a", id, owner)).await.unwrap());
    }
    store.revoke_session("tn_a", "ses_3", at(20)).await.unwrap();
    let suspend = UserUpdate { status: Some(UserStatus::Suspended), ..UserUpdate::default() };
    store.update_user("tn_a", "usr_1", suspend, at(30)).await.unwrap().unwrap();
    for (id, revoked_at) in [("ses_1", Some(at(30))), ("ses_2", Some(at(30))), ("ses_3", Some(at(20))), ("ses_4", None)]
    {
        assert_eq!(store.session(id).await.unwrap().unwrap().revoked_at, revoked_at, "{id}");
    }

    assert!(store.create_session(session("tn_a", "ses_5", "usr_2")).await.unwrap());
    assert_eq!(store.revoke_user_sessions("tn_b", "usr_2", at(40)).await.unwrap(), 0, "isolated");
    assert_eq!(store.revoke_user_sessions("tn_a", "usr_2", at(40)).await.unwrap(), 2);
    assert_eq!(store.revoke_user_sessions("tn_a", "usr_2", at(41)).await.unwrap(), 0);
    assert_eq!(store.session("ses_5").await.unwrap().unwrap().revoked_at, Some(at(40)));
}

/// Purging deletes sessions expired or revoked before the cutoff, in every tenant.
pub async fn old_sessions_are_purged(store: &impl AccessStore) {
    store.create_user(user("tn_a", "usr_1", "a@example.com", "auditor")).await.unwrap();
    store.create_user(user("tn_b", "usr_b", "b@example.com", "auditor")).await.unwrap();
    let expiring = |tenant: &str, id: &str, owner: &str, expires: i64| SessionRecord {
        expires_at: at(expires),
        ..session(tenant, id, owner)
    };
    for record in [
        expiring("tn_a", "ses_old", "usr_1", 100),
        expiring("tn_b", "ses_old_b", "usr_b", 150),
        expiring("tn_a", "ses_live", "usr_1", 1_000),
        expiring("tn_a", "ses_revoked", "usr_1", 1_000),
        expiring("tn_a", "ses_revoked_late", "usr_1", 1_000),
        expiring("tn_a", "ses_edge", "usr_1", 200),
    ] {
        assert!(store.create_session(record).await.unwrap());
    }
    store.revoke_session("tn_a", "ses_revoked", at(50)).await.unwrap();
    store.revoke_session("tn_a", "ses_revoked_late", at(250)).await.unwrap();

    // Expired and never revoked, earliest expiry first, across tenants, at most `limit`.
    let expired = |list: Vec<SessionRecord>| list.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(expired(store.expired_sessions(at(200), 10).await.unwrap()), ["ses_old", "ses_old_b", "ses_edge"]);
    assert_eq!(expired(store.expired_sessions(at(200), 2).await.unwrap()), ["ses_old", "ses_old_b"]);
    assert_eq!(expired(store.expired_sessions(at(99), 10).await.unwrap()), Vec::<String>::new());
    let first = store.expired_sessions(at(100), 10).await.unwrap();
    assert_eq!(first[0], SessionRecord { expires_at: at(100), ..session("tn_a", "ses_old", "usr_1") });

    assert_eq!(store.purge_sessions(at(200)).await.unwrap(), 3);
    for (id, kept) in [
        ("ses_old", false),
        ("ses_old_b", false),
        ("ses_revoked", false),
        ("ses_live", true),
        ("ses_revoked_late", true),
        ("ses_edge", true),
    ] {
        assert_eq!(store.session(id).await.unwrap().is_some(), kept, "{id}");
    }
    assert_eq!(store.purge_sessions(at(200)).await.unwrap(), 0);
}

/// Custom role names are unique per tenant and never built in; replacing keeps `created_at`.
pub async fn custom_roles_round_trip(store: &impl AccessStore) {
    let responder = role("tn_a", "incident_responder", &["alerts:read", "alerts:manage", "events:read"]);
    store.create_role(responder.clone()).await.unwrap();
    store.create_role(role("tn_a", "report_reader", &["reports:read"])).await.unwrap();
    let taken = store.create_role(role("tn_a", "incident_responder", &["events:read"])).await;
    assert!(matches!(taken, Err(StoreError::AlreadyExists(_))), "{taken:?}");
    let builtin = store.create_role(role("tn_a", "auditor", &["events:read"])).await;
    assert!(matches!(builtin, Err(StoreError::AlreadyExists(_))), "built-in names are taken: {builtin:?}");
    store.create_role(role("tn_b", "incident_responder", &["rules:read"])).await.unwrap();

    assert_eq!(store.role("tn_a", "incident_responder").await.unwrap().unwrap(), responder);
    let names: Vec<String> = store.roles("tn_a").await.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["incident_responder", "report_reader"]);
    assert!(store.role("tn_c", "incident_responder").await.unwrap().is_none());

    let replacement = RoleRecord {
        description: None,
        permissions: vec!["events:read".into(), "alerts:read".into()],
        created_at: at(99),
        updated_at: at(100),
        ..responder.clone()
    };
    assert!(store.replace_role(replacement.clone()).await.unwrap());
    let stored = store.role("tn_a", "incident_responder").await.unwrap().unwrap();
    assert_eq!(stored, RoleRecord { created_at: at(0), ..replacement });
    assert_eq!(store.role("tn_b", "incident_responder").await.unwrap().unwrap().permissions, ["rules:read"]);
    assert!(!store.replace_role(role("tn_a", "missing", &["events:read"])).await.unwrap());
    assert!(!store.replace_role(role("tn_c", "incident_responder", &["events:read"])).await.unwrap(), "isolated");

    assert!(!store.delete_role("tn_c", "incident_responder").await.unwrap(), "isolated");
    assert!(store.delete_role("tn_a", "incident_responder").await.unwrap());
    assert!(!store.delete_role("tn_a", "incident_responder").await.unwrap(), "deleted once");
    assert!(store.role("tn_a", "incident_responder").await.unwrap().is_none());
    assert!(store.role("tn_b", "incident_responder").await.unwrap().is_some(), "the other tenant's is untouched");
    store.create_role(role("tn_a", "incident_responder", &["events:read"])).await.unwrap();
}

/// A user's role exists: built in, or a custom role of its tenant that cannot be deleted
/// while held.
pub async fn assigned_roles_cannot_be_deleted(store: &impl AccessStore) {
    store.create_role(role("tn_a", "responder", &["alerts:manage"])).await.unwrap();
    store.create_role(role("tn_b", "b_only", &["alerts:read"])).await.unwrap();

    let unknown = store.create_user(user("tn_a", "usr_x", "x@example.com", "no_such_role")).await;
    assert!(is_conflict(&unknown), "{unknown:?}");
    let foreign = store.create_user(user("tn_a", "usr_y", "y@example.com", "b_only")).await;
    assert!(is_conflict(&foreign), "another tenant's role: {foreign:?}");
    assert!(store.user("tn_a", "usr_x").await.unwrap().is_none());

    store.create_user(user("tn_a", "usr_1", "a@example.com", "responder")).await.unwrap();
    store.create_user(user("tn_a", "usr_2", "b@example.com", "auditor")).await.unwrap();
    let held = store.delete_role("tn_a", "responder").await;
    assert!(is_conflict(&held), "{held:?}");
    assert!(store.role("tn_a", "responder").await.unwrap().is_some());

    let to_custom = UserUpdate { role: Some("responder".into()), ..UserUpdate::default() };
    store.update_user("tn_a", "usr_2", to_custom, at(10)).await.unwrap().unwrap();
    let to_builtin = UserUpdate { role: Some("standard_user".into()), ..UserUpdate::default() };
    store.update_user("tn_a", "usr_1", to_builtin.clone(), at(10)).await.unwrap().unwrap();
    assert!(is_conflict(&store.delete_role("tn_a", "responder").await), "usr_2 holds it now");
    store.update_user("tn_a", "usr_2", to_builtin, at(11)).await.unwrap().unwrap();
    assert!(store.delete_role("tn_a", "responder").await.unwrap());

    let to_deleted = UserUpdate { role: Some("responder".into()), ..UserUpdate::default() };
    let refused = store.update_user("tn_a", "usr_1", to_deleted, at(12)).await;
    assert!(is_conflict(&refused), "{refused:?}");
    assert_eq!(store.user("tn_a", "usr_1").await.unwrap().unwrap().role, "standard_user", "nothing written");

    // Deleting the user releases its role.
    store.create_user(user("tn_b", "usr_b", "b@example.com", "b_only")).await.unwrap();
    assert!(is_conflict(&store.delete_role("tn_b", "b_only").await));
    assert!(store.delete_user("tn_b", "usr_b").await.unwrap());
    assert!(store.delete_role("tn_b", "b_only").await.unwrap());
}

/// Providers are per tenant, found by issuer across tenants, replaced in place.
pub async fn identity_providers_round_trip(store: &impl AccessStore) {
    let okta = provider("tn_a", "idp_1", "https://acme.okta.example");
    store.create_identity_provider(okta.clone()).await.unwrap();
    store.create_identity_provider(provider("tn_a", "idp_2", "https://login.example.net")).await.unwrap();
    store.create_identity_provider(provider("tn_b", "idp_3", "https://acme.okta.example")).await.unwrap();
    let taken = store.create_identity_provider(provider("tn_b", "idp_1", "https://other.example")).await;
    assert!(matches!(taken, Err(StoreError::AlreadyExists(_))), "{taken:?}");

    assert_eq!(store.identity_provider("tn_a", "idp_1").await.unwrap().unwrap(), okta);
    assert!(store.identity_provider("tn_b", "idp_1").await.unwrap().is_none(), "isolated");
    let listed: Vec<String> = store.identity_providers("tn_a").await.unwrap().into_iter().map(|p| p.id).collect();
    assert_eq!(listed, ["idp_1", "idp_2"]);
    let routed: Vec<(String, String)> = store
        .identity_providers_for_issuer("https://acme.okta.example")
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.tenant, p.id))
        .collect();
    assert_eq!(routed, [("tn_a".to_string(), "idp_1".to_string()), ("tn_b".to_string(), "idp_3".to_string())]);
    assert!(store.identity_providers_for_issuer("https://acme.okta.example/").await.unwrap().is_empty(), "exact");

    // Replacing may change the issuer: lookups follow.
    let moved = IdentityProviderRecord {
        config: json!({"issuer": "https://acme.auth0.example", "audience": "vt", "allowed_algorithms": ["ES256"]}),
        created_at: at(50),
        updated_at: at(60),
        ..okta.clone()
    };
    assert!(store.replace_identity_provider(moved.clone()).await.unwrap());
    let stored = store.identity_provider("tn_a", "idp_1").await.unwrap().unwrap();
    assert_eq!(stored, IdentityProviderRecord { created_at: at(0), ..moved });
    let routed = store.identity_providers_for_issuer("https://acme.okta.example").await.unwrap();
    assert_eq!(routed.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["idp_3"]);
    assert_eq!(store.identity_providers_for_issuer("https://acme.auth0.example").await.unwrap().len(), 1);
    let elsewhere = IdentityProviderRecord { tenant: "tn_b".into(), ..okta.clone() };
    assert!(!store.replace_identity_provider(elsewhere).await.unwrap(), "isolated");

    assert!(!store.delete_identity_provider("tn_b", "idp_1").await.unwrap(), "isolated");
    assert!(store.delete_identity_provider("tn_a", "idp_1").await.unwrap());
    assert!(!store.delete_identity_provider("tn_a", "idp_1").await.unwrap(), "deleted once");
    assert!(store.identity_provider("tn_a", "idp_1").await.unwrap().is_none());
    assert_eq!(store.identity_providers("tn_a").await.unwrap().len(), 1);
}
