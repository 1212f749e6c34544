//! [`AccessStore`] on PostgreSQL: users, sessions, custom roles and identity providers in the
//! shared database (`migrations/0004_access.sql`), so every node sees the same logins. Same
//! semantics as the SQLite store; what several nodes add is that every rule of the trait holds
//! whatever they race, by constraints and row locks rather than checks read before a write:
//!
//! - **Unique values** (user ids and emails per tenant, session ids, role names per tenant,
//!   provider ids) are unique constraints; inserts are `ON CONFLICT DO NOTHING`, and nothing
//!   inserted means [`StoreError::AlreadyExists`].
//! - **Held roles.** `users.custom_role` (the role when it is a custom one) references
//!   `custom_roles`: PostgreSQL's foreign-key checks lock the role row, so a role deleted while
//!   a node assigns it either fails the delete (it is held) or the assignment (it is gone), both
//!   as [`StoreError::Conflict`]. [`AccessStore::update_user`] locks the new role before the user
//!   row, and a role's deletion takes only key-share locks on users (which a user update does
//!   not block), so the two never deadlock.
//! - **Sessions of suspended users.** [`AccessStore::create_session`] reads the user's status
//!   under a share lock held until its insert commits; a suspension updates the user row (which
//!   waits for that lock) and then, in a new statement that sees the committed session, revokes
//!   the user's sessions. Deleting a user cascades to its sessions.
//!
//! Its own small connection pool, as `access.sqlite` has its own connection: a login never
//! waits for a connection behind ingest. Session touches commit with `synchronous_commit = off`:
//! a lost one costs only an older `last_seen_at`.

use std::sync::Arc;

use deadpool_postgres::Pool;
use jiff::Timestamp;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use veritrail_store::{
    AccessStore, BoxFuture, IdentityProviderRecord, RoleRecord, SessionRecord, StoreError, StoreResult, UserCursor,
    UserRecord, UserStatus, UserUpdate, is_builtin_role, normalize_email,
};

use crate::{connection_pool, migrate, pg_error, pool_error};

/// Most connections the access store of one node holds open (a session lookup and a touch per
/// authenticated request, logins, administration).
const MAX_CONNECTIONS: usize = 8;

/// The [`AccessStore`] of the PostgreSQL backend: one per node. Cheap to clone; clones share
/// the connection pool.
#[derive(Clone)]
pub struct PgAccessStore {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for PgAccessStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAccessStore").finish_non_exhaustive()
    }
}

impl PgAccessStore {
    /// Connects to `url` (the database of [`PgStore`](crate::PgStore)) and applies pending
    /// migrations.
    pub async fn connect(url: &str) -> StoreResult<PgAccessStore> {
        migrate(url).await?;
        let pool = connection_pool(url, MAX_CONNECTIONS)?;
        // Fail at start, not at the first login, when the database is unreachable.
        drop(pool.get().await.map_err(pool_error)?);
        Ok(PgAccessStore { pool: Arc::new(pool) })
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }
}

/// [`pg_error`], except that a foreign-key violation becomes [`StoreError::Conflict`] with
/// `conflict` as its message.
fn or_conflict(error: tokio_postgres::Error, conflict: impl FnOnce() -> String) -> StoreError {
    if error.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
        return StoreError::Conflict(conflict());
    }
    pg_error(error)
}

fn role_missing(role: &str) -> String {
    format!("role {role:?} does not exist")
}

// ---- users ----

pub(crate) const USER_COLUMNS: &str =
    "id, tenant, email, password_hash, role, actor_id, status, created_at, updated_at";

pub(crate) fn to_user(row: &Row) -> StoreResult<UserRecord> {
    let status: &str = row.get(6);
    let status = UserStatus::parse(status).ok_or_else(|| StoreError::Corrupt(format!("user status {status:?}")))?;
    Ok(UserRecord {
        id: row.get(0),
        tenant: row.get(1),
        email: row.get(2),
        password_hash: row.get(3),
        role: row.get(4),
        actor_id: row.get(5),
        status,
        created_at: row.get(7),
        updated_at: row.get(8),
    })
}

/// The `custom_role` column for `role`: `None` for a built-in role.
pub(crate) fn custom_role(role: &str) -> Option<&str> {
    (!is_builtin_role(role)).then_some(role)
}

// ---- sessions ----

pub(crate) const SESSION_COLUMNS: &str =
    "id, tenant, user_id, secret_hash, created_at, expires_at, last_seen_at, revoked_at, ip, user_agent";

/// The insert of a `sessions` row with [`session_params`] (the create path adds its conflict
/// clause; `migrate-store`'s import uses it as is).
pub(crate) const INSERT_SESSION: &str =
    "INSERT INTO sessions (id, tenant, user_id, secret_hash, created_at, expires_at,
     last_seen_at, revoked_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// The parameters of [`INSERT_SESSION`]; `hash` is `session.secret_hash` as a slice (bytea).
pub(crate) fn session_params<'a>(session: &'a SessionRecord, hash: &'a &'a [u8]) -> [&'a (dyn ToSql + Sync); 10] {
    [
        &session.id,
        &session.tenant,
        &session.user_id,
        hash,
        &session.created_at,
        &session.expires_at,
        &session.last_seen_at,
        &session.revoked_at,
        &session.ip,
        &session.user_agent,
    ]
}

pub(crate) fn to_session(row: &Row) -> StoreResult<SessionRecord> {
    let id: String = row.get(0);
    let hash: &[u8] = row.get(3);
    let secret_hash = <[u8; 32]>::try_from(hash)
        .map_err(|_| StoreError::Corrupt(format!("session {id:?} has a hash of {} bytes", hash.len())))?;
    Ok(SessionRecord {
        id,
        tenant: row.get(1),
        user_id: row.get(2),
        secret_hash,
        created_at: row.get(4),
        expires_at: row.get(5),
        last_seen_at: row.get(6),
        revoked_at: row.get(7),
        ip: row.get(8),
        user_agent: row.get(9),
    })
}

// ---- roles and identity providers ----

pub(crate) const ROLE_COLUMNS: &str = "tenant, name, description, permissions, created_at, updated_at";

/// The insert of a `custom_roles` row with [`role_params`] (the create path adds its conflict
/// clause; `migrate-store`'s import uses it as is).
pub(crate) const INSERT_ROLE: &str =
    "INSERT INTO custom_roles (tenant, name, description, permissions, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// The insert of an `identity_providers` row with [`identity_provider_params`] (the create path
/// adds its conflict clause; `migrate-store`'s import uses it as is).
pub(crate) const INSERT_IDENTITY_PROVIDER: &str = "INSERT INTO identity_providers (id, tenant, issuer, config, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)";

/// The parameters of [`INSERT_IDENTITY_PROVIDER`]; `issuer` is `provider.issuer()`.
pub(crate) fn identity_provider_params<'a>(
    provider: &'a IdentityProviderRecord,
    issuer: &'a Option<&'a str>,
) -> [&'a (dyn ToSql + Sync); 6] {
    [&provider.id, &provider.tenant, issuer, &provider.config, &provider.created_at, &provider.updated_at]
}

/// The parameters of [`INSERT_ROLE`].
pub(crate) fn role_params(role: &RoleRecord) -> [&(dyn ToSql + Sync); 6] {
    [&role.tenant, &role.name, &role.description, &role.permissions, &role.created_at, &role.updated_at]
}

pub(crate) fn to_role(row: &Row) -> RoleRecord {
    RoleRecord {
        tenant: row.get(0),
        name: row.get(1),
        description: row.get(2),
        permissions: row.get(3),
        created_at: row.get(4),
        updated_at: row.get(5),
    }
}

pub(crate) const PROVIDER_COLUMNS: &str = "id, tenant, config, created_at, updated_at";

pub(crate) fn to_provider(row: &Row) -> IdentityProviderRecord {
    IdentityProviderRecord {
        id: row.get(0),
        tenant: row.get(1),
        config: row.get(2),
        created_at: row.get(3),
        updated_at: row.get(4),
    }
}

impl AccessStore for PgAccessStore {
    fn create_user(&self, user: UserRecord) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let email = normalize_email(&user.email);
            let client = self.client().await?;
            let inserted = client
                .execute(
                    "INSERT INTO users (id, tenant, email, password_hash, role, custom_role, actor_id, status,
                         created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
                    &[
                        &user.id,
                        &user.tenant,
                        &email,
                        &user.password_hash,
                        &user.role,
                        &custom_role(&user.role),
                        &user.actor_id,
                        &user.status.as_str(),
                        &user.created_at,
                        &user.updated_at,
                    ],
                )
                .await
                .map_err(|e| or_conflict(e, || role_missing(&user.role)))?;
            if inserted == 1 {
                return Ok(());
            }
            let email_taken: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM users WHERE tenant = $1 AND email = $2)",
                    &[&user.tenant, &email],
                )
                .await
                .map_err(pg_error)?
                .get(0);
            Err(StoreError::AlreadyExists(match email_taken {
                true => "a user with this email".into(),
                false => format!("user {:?}", user.id),
            }))
        })
    }

    fn user(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<UserRecord>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant = $1 AND id = $2");
            let row = client.query_opt(&sql, &[&tenant, &id]).await.map_err(pg_error)?;
            row.as_ref().map(to_user).transpose()
        })
    }

    fn user_by_email(&self, tenant: &str, email: &str) -> BoxFuture<'_, StoreResult<Option<UserRecord>>> {
        let (tenant, email) = (tenant.to_string(), normalize_email(email));
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant = $1 AND email = $2");
            let row = client.query_opt(&sql, &[&tenant, &email]).await.map_err(pg_error)?;
            row.as_ref().map(to_user).transpose()
        })
    }

    fn users(
        &self,
        tenant: &str,
        after: Option<UserCursor>,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<UserRecord>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            let limit = i64::from(limit);
            let rows = match after {
                None => {
                    let sql =
                        format!("SELECT {USER_COLUMNS} FROM users WHERE tenant = $1 ORDER BY created_at, id LIMIT $2");
                    client.query(&sql, &[&tenant, &limit]).await
                }
                Some(cursor) => {
                    let sql = format!(
                        "SELECT {USER_COLUMNS} FROM users WHERE tenant = $1 AND (created_at, id) > ($2, $3)
                         ORDER BY created_at, id LIMIT $4"
                    );
                    client.query(&sql, &[&tenant, &cursor.created_at, &cursor.id, &limit]).await
                }
            }
            .map_err(pg_error)?;
            rows.iter().map(to_user).collect()
        })
    }

    fn update_user(
        &self,
        tenant: &str,
        id: &str,
        update: UserUpdate,
        at: Timestamp,
    ) -> BoxFuture<'_, StoreResult<Option<UserRecord>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // The new role first, in the order a role's deletion locks rows (role, then users).
            if let Some(role) = update.role.as_deref().and_then(custom_role) {
                let held = tx
                    .query_opt(
                        "SELECT 1 FROM custom_roles WHERE tenant = $1 AND name = $2 FOR KEY SHARE",
                        &[&tenant, &role],
                    )
                    .await
                    .map_err(pg_error)?;
                if held.is_none() {
                    return Err(StoreError::Conflict(role_missing(role)));
                }
            }
            // NO KEY UPDATE: excludes session creation (FOR SHARE), not foreign-key checks.
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant = $1 AND id = $2 FOR NO KEY UPDATE");
            let Some(row) = tx.query_opt(&sql, &[&tenant, &id]).await.map_err(pg_error)? else { return Ok(None) };
            let mut user = to_user(&row)?;
            if let Some(role) = update.role {
                user.role = role;
            }
            if let Some(actor_id) = update.actor_id {
                user.actor_id = actor_id;
            }
            if let Some(status) = update.status {
                user.status = status;
            }
            if let Some(password_hash) = update.password_hash {
                user.password_hash = password_hash;
            }
            user.updated_at = at;
            tx.execute(
                "UPDATE users SET password_hash = $3, role = $4, custom_role = $5, actor_id = $6, status = $7,
                     updated_at = $8
                 WHERE tenant = $1 AND id = $2",
                &[
                    &tenant,
                    &id,
                    &user.password_hash,
                    &user.role,
                    &custom_role(&user.role),
                    &user.actor_id,
                    &user.status.as_str(),
                    &at,
                ],
            )
            .await
            .map_err(|e| or_conflict(e, || role_missing(&user.role)))?;
            if update.status == Some(UserStatus::Suspended) {
                // A new statement: sees every session committed before the row lock was ours.
                tx.execute(
                    "UPDATE sessions SET revoked_at = $3 WHERE tenant = $1 AND user_id = $2 AND revoked_at IS NULL",
                    &[&tenant, &id, &at],
                )
                .await
                .map_err(pg_error)?;
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(Some(user))
        })
    }

    fn delete_user(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            // Its sessions go by the foreign key's cascade, in the same statement.
            let deleted = client
                .execute("DELETE FROM users WHERE tenant = $1 AND id = $2", &[&tenant, &id])
                .await
                .map_err(pg_error)?;
            Ok(deleted == 1)
        })
    }

    fn create_session(&self, session: SessionRecord) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // Held until commit: a suspension or deletion of the user waits for this session.
            let status = tx
                .query_opt(
                    "SELECT status FROM users WHERE tenant = $1 AND id = $2 FOR SHARE",
                    &[&session.tenant, &session.user_id],
                )
                .await
                .map_err(pg_error)?;
            let active = status.is_some_and(|row| row.get::<_, &str>(0) == UserStatus::Active.as_str());
            if !active {
                return Ok(false);
            }
            let sql = format!("{INSERT_SESSION} ON CONFLICT (id) DO NOTHING");
            let hash = session.secret_hash.as_slice();
            let inserted = tx.execute(&sql, &session_params(&session, &hash)).await.map_err(pg_error)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("session {:?}", session.id)));
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(true)
        })
    }

    fn session(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<SessionRecord>>> {
        let id = id.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
            let row = client.query_opt(&sql, &[&id]).await.map_err(pg_error)?;
            row.as_ref().map(to_session).transpose()
        })
    }

    fn touch_session(&self, tenant: &str, id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // Not worth a flush of its own: a lost touch is an older last_seen_at.
            tx.batch_execute("SET LOCAL synchronous_commit = off").await.map_err(pg_error)?;
            let touched = tx
                .execute(
                    "UPDATE sessions SET last_seen_at = greatest(last_seen_at, $3)
                     WHERE tenant = $1 AND id = $2 AND revoked_at IS NULL AND expires_at > $3",
                    &[&tenant, &id, &at],
                )
                .await
                .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            Ok(touched == 1)
        })
    }

    fn revoke_session(&self, tenant: &str, id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            let revoked = client
                .execute(
                    "UPDATE sessions SET revoked_at = $3 WHERE tenant = $1 AND id = $2 AND revoked_at IS NULL",
                    &[&tenant, &id, &at],
                )
                .await
                .map_err(pg_error)?;
            Ok(revoked == 1)
        })
    }

    fn revoke_user_sessions(&self, tenant: &str, user_id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<u64>> {
        let (tenant, user_id) = (tenant.to_string(), user_id.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE sessions SET revoked_at = $3 WHERE tenant = $1 AND user_id = $2 AND revoked_at IS NULL",
                    &[&tenant, &user_id, &at],
                )
                .await
                .map_err(pg_error)
        })
    }

    fn expired_sessions(&self, at: Timestamp, limit: u32) -> BoxFuture<'_, StoreResult<Vec<SessionRecord>>> {
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE expires_at <= $1 AND revoked_at IS NULL
                 ORDER BY expires_at, id LIMIT $2"
            );
            let rows = client.query(&sql, &[&at, &i64::from(limit)]).await.map_err(pg_error)?;
            rows.iter().map(to_session).collect()
        })
    }

    fn purge_sessions(&self, before: Timestamp) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let client = self.client().await?;
            client
                .execute("DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $1", &[&before])
                .await
                .map_err(pg_error)
        })
    }

    fn create_role(&self, role: RoleRecord) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            if is_builtin_role(&role.name) {
                return Err(StoreError::AlreadyExists(format!("role {:?}", role.name)));
            }
            let client = self.client().await?;
            let sql = format!("{INSERT_ROLE} ON CONFLICT DO NOTHING");
            let inserted = client.execute(&sql, &role_params(&role)).await.map_err(pg_error)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("role {:?}", role.name)));
            }
            Ok(())
        })
    }

    fn role(&self, tenant: &str, name: &str) -> BoxFuture<'_, StoreResult<Option<RoleRecord>>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {ROLE_COLUMNS} FROM custom_roles WHERE tenant = $1 AND name = $2");
            let row = client.query_opt(&sql, &[&tenant, &name]).await.map_err(pg_error)?;
            Ok(row.as_ref().map(to_role))
        })
    }

    fn roles(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<RoleRecord>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {ROLE_COLUMNS} FROM custom_roles WHERE tenant = $1 ORDER BY no");
            let rows = client.query(&sql, &[&tenant]).await.map_err(pg_error)?;
            Ok(rows.iter().map(to_role).collect())
        })
    }

    fn replace_role(&self, role: RoleRecord) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move {
            let client = self.client().await?;
            let changed = client
                .execute(
                    "UPDATE custom_roles SET description = $3, permissions = $4, updated_at = $5
                     WHERE tenant = $1 AND name = $2",
                    &[&role.tenant, &role.name, &role.description, &role.permissions, &role.updated_at],
                )
                .await
                .map_err(pg_error)?;
            Ok(changed == 1)
        })
    }

    fn delete_role(&self, tenant: &str, name: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            // The foreign key decides, against every node's committed assignments.
            let deleted = client
                .execute("DELETE FROM custom_roles WHERE tenant = $1 AND name = $2", &[&tenant, &name])
                .await
                .map_err(|e| or_conflict(e, || format!("role {name:?} is assigned to users")))?;
            Ok(deleted == 1)
        })
    }

    fn create_identity_provider(&self, provider: IdentityProviderRecord) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("{INSERT_IDENTITY_PROVIDER} ON CONFLICT DO NOTHING");
            let issuer = provider.issuer();
            let inserted =
                client.execute(&sql, &identity_provider_params(&provider, &issuer)).await.map_err(pg_error)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("identity provider {:?}", provider.id)));
            }
            Ok(())
        })
    }

    fn identity_provider(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<IdentityProviderRecord>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {PROVIDER_COLUMNS} FROM identity_providers WHERE tenant = $1 AND id = $2");
            let row = client.query_opt(&sql, &[&tenant, &id]).await.map_err(pg_error)?;
            Ok(row.as_ref().map(to_provider))
        })
    }

    fn identity_providers(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<IdentityProviderRecord>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {PROVIDER_COLUMNS} FROM identity_providers WHERE tenant = $1 ORDER BY no");
            let rows = client.query(&sql, &[&tenant]).await.map_err(pg_error)?;
            Ok(rows.iter().map(to_provider).collect())
        })
    }

    fn identity_providers_for_issuer(&self, issuer: &str) -> BoxFuture<'_, StoreResult<Vec<IdentityProviderRecord>>> {
        let issuer = issuer.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {PROVIDER_COLUMNS} FROM identity_providers WHERE issuer = $1 ORDER BY no");
            let rows = client.query(&sql, &[&issuer]).await.map_err(pg_error)?;
            Ok(rows.iter().map(to_provider).collect())
        })
    }

    fn replace_identity_provider(&self, provider: IdentityProviderRecord) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move {
            let client = self.client().await?;
            let changed = client
                .execute(
                    "UPDATE identity_providers SET issuer = $3, config = $4, updated_at = $5
                     WHERE tenant = $1 AND id = $2",
                    &[&provider.tenant, &provider.id, &provider.issuer(), &provider.config, &provider.updated_at],
                )
                .await
                .map_err(pg_error)?;
            Ok(changed == 1)
        })
    }

    fn delete_identity_provider(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(async move {
            let client = self.client().await?;
            let deleted = client
                .execute("DELETE FROM identity_providers WHERE tenant = $1 AND id = $2", &[&tenant, &id])
                .await
                .map_err(pg_error)?;
            Ok(deleted == 1)
        })
    }
}
