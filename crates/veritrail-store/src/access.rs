//! The persistence of access control (issue 6): people's logins (users), their sessions, the
//! tenants' custom roles and SSO identity providers.
//!
//! A trait of its own, apart from [`Store`](crate::Store) and [`AlertStore`](crate::AlertStore):
//! these rows change (roles are reassigned, sessions revoked, users suspended), they are not
//! derived from the ledger, and a backend may keep them wherever it likes. API keys stay in
//! [`Store`](crate::Store).
//!
//! **Tenant isolation.** Every method takes the tenant from the caller (the server's
//! authenticated credential) and never touches another tenant's rows: an id of another
//! tenant's object behaves as absent. Two lookups span tenants because the credential they
//! authenticate names no tenant: [`AccessStore::session`] (a session token carries only the
//! session id, like an API key) and [`AccessStore::identity_providers_for_issuer`] (a JWT names
//! its issuer); both return records that say whose they are.
//!
//! **Integrity the store keeps, whatever nodes race:**
//! - a user's `role` is a built-in role ([`veritrail_access::BuiltinRole`]) or one of the
//!   tenant's custom roles; a custom role cannot be deleted while a user holds it
//!   ([`StoreError::Conflict`](crate::StoreError::Conflict)), and assigning a role that does not
//!   exist (or was deleted meanwhile) fails the same way;
//! - a session is only created for an active user of its tenant, and suspending or deleting a
//!   user revokes (deletes) its sessions in the same transaction, so no session created
//!   concurrently survives a suspension.

use jiff::Timestamp;
use serde_json::Value;

use crate::{BoxFuture, StoreResult};

/// The form in which emails are stored and looked up: lowercased, so that `Alice@Example.com`
/// and `alice@example.com` are one login. Also the account key to throttle logins on.
pub fn normalize_email(email: &str) -> String {
    email.to_lowercase()
}

/// True when `role` names a built-in role (assignable without a custom-role row).
pub fn is_builtin_role(role: &str) -> bool {
    veritrail_access::BuiltinRole::parse(role).is_some()
}

/// Whether a user may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserStatus {
    /// May sign in.
    Active,
    /// May not sign in; its sessions were revoked when it was suspended.
    Suspended,
}

impl UserStatus {
    /// Every status.
    pub const ALL: [UserStatus; 2] = [UserStatus::Active, UserStatus::Suspended];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Suspended => "suspended",
        }
    }

    /// Parses [`UserStatus::as_str`].
    pub fn parse(text: &str) -> Option<UserStatus> {
        UserStatus::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// A person who signs in to a tenant. `Debug` leaves the password hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Public id (`usr_…`), unique in the store.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Login name, unique per tenant; stored [`normalize_email`]ed.
    pub email: String,
    /// Argon2id PHC string (`veritrail_access::hash_password`); `None` for SSO-only users.
    pub password_hash: Option<String>,
    /// A built-in role name or one of the tenant's custom roles.
    pub role: String,
    /// The `actor.id` this user's events carry (what own-records-only filters on).
    pub actor_id: Option<String>,
    /// Whether it may sign in.
    pub status: UserStatus,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("email", &self.email)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "<redacted>"))
            .field("role", &self.role)
            .field("actor_id", &self.actor_id)
            .field("status", &self.status)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// Where a page of [`AccessStore::users`] continues: after the user created at `created_at`
/// with id `id` (users are listed by creation time, then id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCursor {
    /// The last listed user's creation time.
    pub created_at: Timestamp,
    /// The last listed user's id.
    pub id: String,
}

impl UserCursor {
    /// The cursor continuing after `user`.
    pub fn after(user: &UserRecord) -> UserCursor {
        UserCursor { created_at: user.created_at, id: user.id.clone() }
    }
}

/// A change to a user: fields left `None` keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    /// A new role (built-in, or a custom role of the tenant).
    pub role: Option<String>,
    /// A new actor id: `Some(None)` clears it.
    pub actor_id: Option<Option<String>>,
    /// A new status; suspending revokes the user's open sessions in the same transaction.
    pub status: Option<UserStatus>,
    /// A new password hash: `Some(None)` removes the password (SSO only).
    pub password_hash: Option<Option<String>>,
}

/// A signed-in session (token `vts_<id>_<secret>`). The secret itself is never stored, only
/// its keyed hash (`veritrail_access::hash_secret`). `Debug` leaves the hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Public session id (the part of the token before the secret), unique in the store.
    pub id: String,
    /// Owning tenant (the user's).
    pub tenant: String,
    /// The user signed in.
    pub user_id: String,
    /// Keyed hash of the token's secret part.
    pub secret_hash: [u8; 32],
    /// When it was created.
    pub created_at: Timestamp,
    /// From this instant on it is refused (absolute: [`AccessStore::touch_session`] does not
    /// extend it).
    pub expires_at: Timestamp,
    /// When it was last used (as far as the server told the store).
    pub last_seen_at: Timestamp,
    /// Set once revoked (logout, suspension); revoked sessions are refused.
    pub revoked_at: Option<Timestamp>,
    /// The address it was created from.
    pub ip: Option<String>,
    /// The `User-Agent` it was created with.
    pub user_agent: Option<String>,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("user_id", &self.user_id)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("revoked_at", &self.revoked_at)
            .field("ip", &self.ip)
            .field("user_agent", &self.user_agent)
            .finish_non_exhaustive()
    }
}

/// A tenant's custom role, as validated by `veritrail_access::RoleSpec` (the store does not
/// check names or permissions, only that built-in names are taken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRecord {
    /// Owning tenant.
    pub tenant: String,
    /// Unique per tenant, never a built-in role's name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Permission wire names, in the order given.
    pub permissions: Vec<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// A tenant's SSO identity provider: the `veritrail_access::IdentityProvider` JSON, kept
/// opaque apart from its `issuer`, which [`AccessStore::identity_providers_for_issuer`] looks
/// up.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityProviderRecord {
    /// Public id (`idp_…`), unique in the store.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// The provider's settings as JSON (issuer, audience, JWKS, role mapping, …).
    pub config: Value,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl IdentityProviderRecord {
    /// The `issuer` member of the configuration, if it is a string.
    pub fn issuer(&self) -> Option<&str> {
        self.config.get("issuer").and_then(Value::as_str)
    }
}

/// The persistence of access control. See the module docs for isolation and integrity.
pub trait AccessStore: Send + Sync + 'static {
    /// Stores a new user, its email [`normalize_email`]ed.
    /// [`StoreError::AlreadyExists`](crate::StoreError::AlreadyExists) when the tenant has a user
    /// with that email or the id is taken; [`StoreError::Conflict`](crate::StoreError::Conflict)
    /// when its role is neither built in nor a custom role of the tenant.
    fn create_user(&self, user: UserRecord) -> BoxFuture<'_, StoreResult<()>>;
    /// One user by id.
    fn user(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<UserRecord>>>;
    /// One user by email (compared [`normalize_email`]ed).
    fn user_by_email(&self, tenant: &str, email: &str) -> BoxFuture<'_, StoreResult<Option<UserRecord>>>;
    /// The tenant's users by creation time, then id, after `after` when given, at most `limit`.
    fn users(&self, tenant: &str, after: Option<UserCursor>, limit: u32)
    -> BoxFuture<'_, StoreResult<Vec<UserRecord>>>;
    /// Applies `update` and sets `updated_at = at`; returns the user as changed, `None` when
    /// the tenant has no such user. Suspending revokes the user's open sessions at `at`.
    /// [`StoreError::Conflict`](crate::StoreError::Conflict) when the new role does not exist.
    fn update_user(
        &self,
        tenant: &str,
        id: &str,
        update: UserUpdate,
        at: Timestamp,
    ) -> BoxFuture<'_, StoreResult<Option<UserRecord>>>;
    /// Deletes a user and its sessions; returns false when the tenant has no such user.
    fn delete_user(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>>;

    /// Stores a new session if its user exists in its tenant and is active; returns false
    /// (nothing written) otherwise. [`StoreError::AlreadyExists`](crate::StoreError::AlreadyExists)
    /// when the id is taken.
    fn create_session(&self, session: SessionRecord) -> BoxFuture<'_, StoreResult<bool>>;
    /// A session by its public id, whatever its tenant or state (revoked and expired ones
    /// included: the caller decides): the authentication lookup.
    fn session(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<SessionRecord>>>;
    /// Records a use at `at` (`last_seen_at` never moves back). Returns false when the tenant
    /// has no such session or it is revoked or expired at `at`. Not necessarily durable: a lost
    /// touch costs only an older `last_seen_at`.
    fn touch_session(&self, tenant: &str, id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<bool>>;
    /// Revokes a session at `at`; returns false when absent or revoked already.
    fn revoke_session(&self, tenant: &str, id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<bool>>;
    /// Revokes every open session of a user at `at`; returns how many.
    fn revoke_user_sessions(&self, tenant: &str, user_id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<u64>>;
    /// Sessions of every tenant that expired at or before `at` and were never revoked, earliest
    /// expiry first, at most `limit`: the ones whose expiry is still to be recorded
    /// (`auth.session.expired`), after which the caller marks them revoked.
    fn expired_sessions(&self, at: Timestamp, limit: u32) -> BoxFuture<'_, StoreResult<Vec<SessionRecord>>>;
    /// Deletes, in every tenant, the sessions that expired or were revoked before `before`;
    /// returns how many.
    fn purge_sessions(&self, before: Timestamp) -> BoxFuture<'_, StoreResult<u64>>;

    /// Stores a new custom role. [`StoreError::AlreadyExists`](crate::StoreError::AlreadyExists)
    /// when the tenant has a role of that name or it is a built-in role's.
    fn create_role(&self, role: RoleRecord) -> BoxFuture<'_, StoreResult<()>>;
    /// One custom role.
    fn role(&self, tenant: &str, name: &str) -> BoxFuture<'_, StoreResult<Option<RoleRecord>>>;
    /// The tenant's custom roles, oldest first.
    fn roles(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<RoleRecord>>>;
    /// Replaces a custom role's description and permissions (and `updated_at`; `created_at` is
    /// kept); returns false when the tenant has no such role.
    fn replace_role(&self, role: RoleRecord) -> BoxFuture<'_, StoreResult<bool>>;
    /// Deletes a custom role; returns false when absent.
    /// [`StoreError::Conflict`](crate::StoreError::Conflict) while a user holds it.
    fn delete_role(&self, tenant: &str, name: &str) -> BoxFuture<'_, StoreResult<bool>>;

    /// Stores a new identity provider.
    /// [`StoreError::AlreadyExists`](crate::StoreError::AlreadyExists) when the id is taken.
    fn create_identity_provider(&self, provider: IdentityProviderRecord) -> BoxFuture<'_, StoreResult<()>>;
    /// One identity provider.
    fn identity_provider(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<IdentityProviderRecord>>>;
    /// The tenant's identity providers, oldest first.
    fn identity_providers(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<IdentityProviderRecord>>>;
    /// The identity providers of every tenant whose configuration names `issuer`, oldest
    /// first: routing a bearer token (`veritrail_access::unverified_issuer`) to the providers
    /// that may verify it.
    fn identity_providers_for_issuer(&self, issuer: &str) -> BoxFuture<'_, StoreResult<Vec<IdentityProviderRecord>>>;
    /// Replaces a provider's configuration (and `updated_at`; `created_at` is kept); returns
    /// false when the tenant has no such provider.
    fn replace_identity_provider(&self, provider: IdentityProviderRecord) -> BoxFuture<'_, StoreResult<bool>>;
    /// Deletes an identity provider; returns false when absent.
    fn delete_identity_provider(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for status in UserStatus::ALL {
            assert_eq!(UserStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(UserStatus::parse("deleted"), None);
    }

    #[test]
    fn debug_hides_secrets() {
        let at = Timestamp::UNIX_EPOCH;
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
        assert!(!format!("{user:?}").contains("argon2"));
        let session = SessionRecord {
            id: "s1".into(),
            tenant: "tn_a".into(),
            user_id: "usr_1".into(),
            secret_hash: [0xab; 32],
            created_at: at,
            expires_at: at,
            last_seen_at: at,
            revoked_at: None,
            ip: None,
            user_agent: None,
        };
        assert!(!format!("{session:?}").contains("171"), "{session:?}");
    }

    #[test]
    fn emails_and_roles() {
        assert_eq!(normalize_email("Alice@Example.COM"), "alice@example.com");
        assert!(is_builtin_role("super_admin"));
        assert!(!is_builtin_role("Super_Admin"));
        assert!(!is_builtin_role("incident_responder"));
        let provider = IdentityProviderRecord {
            id: "idp_1".into(),
            tenant: "tn_a".into(),
            config: serde_json::json!({"issuer": "https://login.example.com"}),
            created_at: Timestamp::UNIX_EPOCH,
            updated_at: Timestamp::UNIX_EPOCH,
        };
        assert_eq!(provider.issuer(), Some("https://login.example.com"));
    }
}
