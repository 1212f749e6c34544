//! [`AccessStore`] on SQLite: a fourth file, `access.sqlite`, beside the ledger, the index and
//! the alerts.
//!
//! Its own file for the reasons `alerts.sqlite` has one: users, sessions and roles change
//! (suspensions, revocations), they are not derived from the ledger (a reindex must not touch
//! them), and their writes must never queue behind the ledger writer. One connection behind a
//! mutex serves reads and writes, always off the async runtime, so every transaction sees the
//! one before it: the integrity rules of the trait (a held custom role cannot be deleted, a
//! session needs an active user) are checked inside the writing transaction. Foreign keys back
//! them. `synchronous=FULL`, except for session touches (see [`AccessStore::touch_session`]).

use std::path::Path;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use veritrail_store::{
    AccessStore, BoxFuture, IdentityProviderRecord, RoleRecord, SessionRecord, StoreError, StoreResult, UserCursor,
    UserRecord, UserStatus, UserUpdate, is_builtin_role, normalize_email,
};

use crate::side::{SideDb, collect};
use crate::{CachedSql, SqliteStore, from_micros, sql_error, to_micros};

/// File name of the access-control database inside the data directory.
pub const ACCESS_FILE: &str = "access.sqlite";

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS roles (
    no          INTEGER PRIMARY KEY,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT,
    permissions TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (tenant, name)
) STRICT;
-- `custom_role` is `role` when that is a custom role, NULL for a built-in one: the foreign key
-- keeps a held custom role from being deleted.
CREATE TABLE IF NOT EXISTS users (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    email         TEXT NOT NULL,
    password_hash TEXT,
    role          TEXT NOT NULL,
    custom_role   TEXT CHECK (custom_role IS NULL OR custom_role = role),
    actor_id      TEXT,
    status        TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (tenant, email),
    FOREIGN KEY (tenant, custom_role) REFERENCES roles (tenant, name)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS users_by_creation ON users(tenant, created_at, id);
CREATE INDEX IF NOT EXISTS users_by_custom_role ON users(tenant, custom_role);
CREATE TABLE IF NOT EXISTS sessions (
    id           TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret_hash  BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    revoked_at   INTEGER,
    ip           TEXT,
    user_agent   TEXT
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user_id);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions(expires_at);
CREATE TABLE IF NOT EXISTS identity_providers (
    no         INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    tenant     TEXT NOT NULL,
    issuer     TEXT,
    config     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS identity_providers_by_tenant ON identity_providers(tenant, no);
CREATE INDEX IF NOT EXISTS identity_providers_by_issuer ON identity_providers(issuer, no);
";

/// The open `access.sqlite`: the [`AccessStore`] of the embedded backend. Cheap to clone; the
/// clones share one connection. [`SqliteStore::access_store`] gives the one opened with the
/// store; [`SqliteAccessStore::open`] opens one on its own (beside another `Store` backend).
#[derive(Clone)]
pub struct SqliteAccessStore {
    db: SideDb,
}

impl std::fmt::Debug for SqliteAccessStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAccessStore").finish_non_exhaustive()
    }
}

impl SqliteAccessStore {
    /// Opens (creating if needed) `access.sqlite` in `dir`.
    pub fn open(dir: &Path) -> StoreResult<SqliteAccessStore> {
        // secure_delete: password and session hashes of deleted rows must not linger in free pages.
        Ok(SqliteAccessStore { db: SideDb::open(dir, ACCESS_FILE, SCHEMA, SCHEMA_VERSION, true)? })
    }
}

impl SqliteStore {
    /// The store's access-control half (`access.sqlite` in the same data directory).
    pub fn access_store(&self) -> SqliteAccessStore {
        self.inner.access.clone()
    }
}

fn exists(tx: &Transaction<'_>, sql: &str, args: impl rusqlite::Params) -> StoreResult<bool> {
    let found: Option<i64> = tx.query_row(sql, args, |row| row.get(0)).optional().map_err(sql_error)?;
    Ok(found.is_some())
}

fn opt_micros(value: Option<i64>) -> StoreResult<Option<Timestamp>> {
    value.map(from_micros).transpose()
}

// ---- users ----

pub(crate) const USER_COLUMNS: &str =
    "id, tenant, email, password_hash, role, actor_id, status, created_at, updated_at";

/// A `users` row as read, in [`USER_COLUMNS`] order.
pub(crate) struct UserRow {
    id: String,
    tenant: String,
    email: String,
    password_hash: Option<String>,
    role: String,
    actor_id: Option<String>,
    status: String,
    created_at: i64,
    updated_at: i64,
}

pub(crate) fn user_row(row: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: row.get(0)?,
        tenant: row.get(1)?,
        email: row.get(2)?,
        password_hash: row.get(3)?,
        role: row.get(4)?,
        actor_id: row.get(5)?,
        status: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    })
}

pub(crate) fn to_user(row: UserRow) -> StoreResult<UserRecord> {
    let status =
        UserStatus::parse(&row.status).ok_or_else(|| StoreError::Corrupt(format!("user status {:?}", row.status)))?;
    Ok(UserRecord {
        id: row.id,
        tenant: row.tenant,
        email: row.email,
        password_hash: row.password_hash,
        role: row.role,
        actor_id: row.actor_id,
        status,
        created_at: from_micros(row.created_at)?,
        updated_at: from_micros(row.updated_at)?,
    })
}

fn read_user(conn: &Connection, tenant: &str, id: &str) -> StoreResult<Option<UserRecord>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant = ?1 AND id = ?2");
    let row = conn.query_row(&sql, params![tenant, id], user_row).optional().map_err(sql_error)?;
    row.map(to_user).transpose()
}

/// The `custom_role` column for `role`: `None` for a built-in role; for a custom one, its name
/// once checked to exist in the tenant ([`StoreError::Conflict`] if not).
fn custom_role(tx: &Transaction<'_>, tenant: &str, role: &str) -> StoreResult<Option<String>> {
    if is_builtin_role(role) {
        return Ok(None);
    }
    if !exists(tx, "SELECT 1 FROM roles WHERE tenant = ?1 AND name = ?2", params![tenant, role])? {
        return Err(StoreError::Conflict(format!("role {role:?} does not exist")));
    }
    Ok(Some(role.to_string()))
}

// ---- sessions ----

pub(crate) const SESSION_COLUMNS: &str =
    "id, tenant, user_id, secret_hash, created_at, expires_at, last_seen_at, revoked_at, ip, user_agent";

/// A `sessions` row as read, in [`SESSION_COLUMNS`] order.
pub(crate) struct SessionRow {
    id: String,
    tenant: String,
    user_id: String,
    secret_hash: Vec<u8>,
    created_at: i64,
    expires_at: i64,
    last_seen_at: i64,
    revoked_at: Option<i64>,
    ip: Option<String>,
    user_agent: Option<String>,
}

pub(crate) fn session_row(row: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: row.get(0)?,
        tenant: row.get(1)?,
        user_id: row.get(2)?,
        secret_hash: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        last_seen_at: row.get(6)?,
        revoked_at: row.get(7)?,
        ip: row.get(8)?,
        user_agent: row.get(9)?,
    })
}

pub(crate) fn to_session(row: SessionRow) -> StoreResult<SessionRecord> {
    let secret_hash = <[u8; 32]>::try_from(row.secret_hash.as_slice()).map_err(|_| {
        StoreError::Corrupt(format!("session {:?} has a hash of {} bytes", row.id, row.secret_hash.len()))
    })?;
    Ok(SessionRecord {
        id: row.id,
        tenant: row.tenant,
        user_id: row.user_id,
        secret_hash,
        created_at: from_micros(row.created_at)?,
        expires_at: from_micros(row.expires_at)?,
        last_seen_at: from_micros(row.last_seen_at)?,
        revoked_at: opt_micros(row.revoked_at)?,
        ip: row.ip,
        user_agent: row.user_agent,
    })
}

fn revoke_open_sessions(tx: &Transaction<'_>, tenant: &str, user_id: &str, at: Timestamp) -> StoreResult<u64> {
    let revoked = tx
        .execute_cached(
            "UPDATE sessions SET revoked_at = ?3 WHERE tenant = ?1 AND user_id = ?2 AND revoked_at IS NULL",
            params![tenant, user_id, to_micros(at)],
        )
        .map_err(sql_error)?;
    Ok(revoked as u64)
}

// ---- roles ----

/// Inserts a `users` row (`email` as stored: normalised; `custom_role` as [`custom_role`] gives
/// it). The create path and `migrate-store`'s import both write users through this.
pub(crate) fn insert_user(
    conn: &Connection,
    user: &UserRecord,
    email: &str,
    custom_role: Option<&str>,
) -> StoreResult<()> {
    conn.execute_cached(
        "INSERT INTO users (id, tenant, email, password_hash, role, custom_role, actor_id, status, created_at,
             updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            user.id,
            user.tenant,
            email,
            user.password_hash,
            user.role,
            custom_role,
            user.actor_id,
            user.status.as_str(),
            to_micros(user.created_at),
            to_micros(user.updated_at),
        ],
    )
    .map_err(sql_error)?;
    Ok(())
}

/// Inserts a `sessions` row (create path and import).
pub(crate) fn insert_session(conn: &Connection, session: &SessionRecord) -> StoreResult<()> {
    conn.execute_cached(
        &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            session.id,
            session.tenant,
            session.user_id,
            session.secret_hash.as_slice(),
            to_micros(session.created_at),
            to_micros(session.expires_at),
            to_micros(session.last_seen_at),
            session.revoked_at.map(to_micros),
            session.ip,
            session.user_agent,
        ],
    )
    .map_err(sql_error)?;
    Ok(())
}

/// Inserts a `roles` row (create path and import).
pub(crate) fn insert_role(conn: &Connection, role: &RoleRecord) -> StoreResult<()> {
    let permissions = permissions_json(&role.permissions)?;
    conn.execute_cached(
        &format!("INSERT INTO roles ({ROLE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            role.tenant,
            role.name,
            role.description,
            permissions,
            to_micros(role.created_at),
            to_micros(role.updated_at),
        ],
    )
    .map_err(sql_error)?;
    Ok(())
}

/// Inserts an `identity_providers` row (create path and import).
pub(crate) fn insert_identity_provider(conn: &Connection, provider: &IdentityProviderRecord) -> StoreResult<()> {
    let config = config_json(provider)?;
    conn.execute_cached(
        "INSERT INTO identity_providers (id, tenant, issuer, config, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            provider.id,
            provider.tenant,
            provider.issuer(),
            config,
            to_micros(provider.created_at),
            to_micros(provider.updated_at),
        ],
    )
    .map_err(sql_error)?;
    Ok(())
}

pub(crate) const ROLE_COLUMNS: &str = "tenant, name, description, permissions, created_at, updated_at";

pub(crate) type RoleRow = (String, String, Option<String>, String, i64, i64);

pub(crate) fn role_row(row: &Row<'_>) -> rusqlite::Result<RoleRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
}

pub(crate) fn to_role((tenant, name, description, permissions, created, updated): RoleRow) -> StoreResult<RoleRecord> {
    let permissions = serde_json::from_str(&permissions)
        .map_err(|e| StoreError::Corrupt(format!("permissions of role {name:?} are not a json list: {e}")))?;
    Ok(RoleRecord {
        tenant,
        name,
        description,
        permissions,
        created_at: from_micros(created)?,
        updated_at: from_micros(updated)?,
    })
}

pub(crate) fn permissions_json(permissions: &[String]) -> StoreResult<String> {
    serde_json::to_string(permissions).map_err(|e| StoreError::Backend(format!("cannot encode permissions: {e}")))
}

// ---- identity providers ----

pub(crate) const PROVIDER_COLUMNS: &str = "id, tenant, config, created_at, updated_at";

pub(crate) type ProviderRow = (String, String, String, i64, i64);

pub(crate) fn provider_row(row: &Row<'_>) -> rusqlite::Result<ProviderRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

pub(crate) fn to_provider((id, tenant, config, created, updated): ProviderRow) -> StoreResult<IdentityProviderRecord> {
    let config = serde_json::from_str(&config)
        .map_err(|e| StoreError::Corrupt(format!("identity provider {id:?} is not valid json: {e}")))?;
    Ok(IdentityProviderRecord {
        id,
        tenant,
        config,
        created_at: from_micros(created)?,
        updated_at: from_micros(updated)?,
    })
}

pub(crate) fn config_json(provider: &IdentityProviderRecord) -> StoreResult<String> {
    serde_json::to_string(&provider.config)
        .map_err(|e| StoreError::Backend(format!("cannot encode identity provider: {e}")))
}

impl AccessStore for SqliteAccessStore {
    fn create_user(&self, user: UserRecord) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.db.run(true, move |tx| {
            let email = normalize_email(&user.email);
            if exists(tx, "SELECT 1 FROM users WHERE id = ?1", [&user.id])? {
                return Err(StoreError::AlreadyExists(format!("user {:?}", user.id)));
            }
            if exists(tx, "SELECT 1 FROM users WHERE tenant = ?1 AND email = ?2", params![user.tenant, email])? {
                return Err(StoreError::AlreadyExists("a user with this email".into()));
            }
            let custom_role = custom_role(tx, &user.tenant, &user.role)?;
            insert_user(tx, &user, &email, custom_role.as_deref())
        }))
    }

    fn user(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<UserRecord>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(self.db.run(true, move |tx| read_user(tx, &tenant, &id)))
    }

    fn user_by_email(&self, tenant: &str, email: &str) -> BoxFuture<'_, StoreResult<Option<UserRecord>>> {
        let (tenant, email) = (tenant.to_string(), normalize_email(email));
        Box::pin(self.db.run(true, move |tx| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant = ?1 AND email = ?2");
            let row = tx.query_row(&sql, params![tenant, email], user_row).optional().map_err(sql_error)?;
            row.map(to_user).transpose()
        }))
    }

    fn users(
        &self,
        tenant: &str,
        after: Option<UserCursor>,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<UserRecord>>> {
        let tenant = tenant.to_string();
        Box::pin(self.db.run(true, move |tx| match after {
            None => collect(
                tx,
                &format!("SELECT {USER_COLUMNS} FROM users WHERE tenant = ?1 ORDER BY created_at, id LIMIT ?2"),
                params![tenant, limit],
                user_row,
                to_user,
            ),
            Some(cursor) => collect(
                tx,
                &format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE tenant = ?1 AND (created_at, id) > (?2, ?3)
                     ORDER BY created_at, id LIMIT ?4"
                ),
                params![tenant, to_micros(cursor.created_at), cursor.id, limit],
                user_row,
                to_user,
            ),
        }))
    }

    fn update_user(
        &self,
        tenant: &str,
        id: &str,
        update: UserUpdate,
        at: Timestamp,
    ) -> BoxFuture<'_, StoreResult<Option<UserRecord>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(self.db.run(true, move |tx| {
            let Some(mut user) = read_user(tx, &tenant, &id)? else { return Ok(None) };
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
            let custom_role = custom_role(tx, &tenant, &user.role)?;
            tx.execute_cached(
                "UPDATE users SET password_hash = ?3, role = ?4, custom_role = ?5, actor_id = ?6, status = ?7,
                     updated_at = ?8
                 WHERE tenant = ?1 AND id = ?2",
                params![
                    tenant,
                    id,
                    user.password_hash,
                    user.role,
                    custom_role,
                    user.actor_id,
                    user.status.as_str(),
                    to_micros(at),
                ],
            )
            .map_err(sql_error)?;
            if update.status == Some(UserStatus::Suspended) {
                revoke_open_sessions(tx, &tenant, &id, at)?;
            }
            Ok(Some(user))
        }))
    }

    fn delete_user(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(self.db.run(true, move |tx| {
            // Explicit, not only the foreign key's cascade: a session must never outlive its user.
            tx.execute_cached("DELETE FROM sessions WHERE tenant = ?1 AND user_id = ?2", params![tenant, id])
                .map_err(sql_error)?;
            let deleted = tx
                .execute_cached("DELETE FROM users WHERE tenant = ?1 AND id = ?2", params![tenant, id])
                .map_err(sql_error)?;
            Ok(deleted == 1)
        }))
    }

    fn create_session(&self, session: SessionRecord) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(self.db.run(true, move |tx| {
            let status: Option<String> = tx
                .query_row_cached(
                    "SELECT status FROM users WHERE tenant = ?1 AND id = ?2",
                    params![session.tenant, session.user_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql_error)?;
            if status.as_deref() != Some(UserStatus::Active.as_str()) {
                return Ok(false);
            }
            if exists(tx, "SELECT 1 FROM sessions WHERE id = ?1", [&session.id])? {
                return Err(StoreError::AlreadyExists(format!("session {:?}", session.id)));
            }
            insert_session(tx, &session)?;
            Ok(true)
        }))
    }

    fn session(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<SessionRecord>>> {
        let id = id.to_string();
        Box::pin(self.db.run(true, move |tx| {
            let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1");
            let row = tx.query_row(&sql, [&id], session_row).optional().map_err(sql_error)?;
            row.map(to_session).transpose()
        }))
    }

    fn touch_session(&self, tenant: &str, id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        // Not durable: one may come with every request, and a lost one costs only an older
        // `last_seen_at`.
        Box::pin(self.db.run(false, move |tx| {
            let touched = tx
                .execute_cached(
                    "UPDATE sessions SET last_seen_at = max(last_seen_at, ?3)
                     WHERE tenant = ?1 AND id = ?2 AND revoked_at IS NULL AND expires_at > ?3",
                    params![tenant, id, to_micros(at)],
                )
                .map_err(sql_error)?;
            Ok(touched == 1)
        }))
    }

    fn revoke_session(&self, tenant: &str, id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(self.db.run(true, move |tx| {
            let revoked = tx
                .execute_cached(
                    "UPDATE sessions SET revoked_at = ?3 WHERE tenant = ?1 AND id = ?2 AND revoked_at IS NULL",
                    params![tenant, id, to_micros(at)],
                )
                .map_err(sql_error)?;
            Ok(revoked == 1)
        }))
    }

    fn revoke_user_sessions(&self, tenant: &str, user_id: &str, at: Timestamp) -> BoxFuture<'_, StoreResult<u64>> {
        let (tenant, user_id) = (tenant.to_string(), user_id.to_string());
        Box::pin(self.db.run(true, move |tx| revoke_open_sessions(tx, &tenant, &user_id, at)))
    }

    fn expired_sessions(&self, at: Timestamp, limit: u32) -> BoxFuture<'_, StoreResult<Vec<SessionRecord>>> {
        Box::pin(self.db.run(true, move |tx| {
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE expires_at <= ?1 AND revoked_at IS NULL
                 ORDER BY expires_at, id LIMIT ?2"
            );
            let mut stmt = tx.prepare(&sql).map_err(sql_error)?;
            let rows = stmt.query_map(params![to_micros(at), limit], session_row).map_err(sql_error)?;
            rows.map(|row| row.map_err(sql_error).and_then(to_session)).collect()
        }))
    }

    fn purge_sessions(&self, before: Timestamp) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(self.db.run(true, move |tx| {
            let purged = tx
                .execute_cached("DELETE FROM sessions WHERE expires_at < ?1 OR revoked_at < ?1", [to_micros(before)])
                .map_err(sql_error)?;
            Ok(purged as u64)
        }))
    }

    fn create_role(&self, role: RoleRecord) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.db.run(true, move |tx| {
            let taken = is_builtin_role(&role.name)
                || exists(tx, "SELECT 1 FROM roles WHERE tenant = ?1 AND name = ?2", params![role.tenant, role.name])?;
            if taken {
                return Err(StoreError::AlreadyExists(format!("role {:?}", role.name)));
            }
            insert_role(tx, &role)
        }))
    }

    fn role(&self, tenant: &str, name: &str) -> BoxFuture<'_, StoreResult<Option<RoleRecord>>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        Box::pin(self.db.run(true, move |tx| {
            let sql = format!("SELECT {ROLE_COLUMNS} FROM roles WHERE tenant = ?1 AND name = ?2");
            let row = tx.query_row(&sql, params![tenant, name], role_row).optional().map_err(sql_error)?;
            row.map(to_role).transpose()
        }))
    }

    fn roles(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<RoleRecord>>> {
        let tenant = tenant.to_string();
        Box::pin(self.db.run(true, move |tx| {
            let sql = format!("SELECT {ROLE_COLUMNS} FROM roles WHERE tenant = ?1 ORDER BY no");
            collect(tx, &sql, [&tenant], role_row, to_role)
        }))
    }

    fn replace_role(&self, role: RoleRecord) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(self.db.run(true, move |tx| {
            let changed = tx
                .execute_cached(
                    "UPDATE roles SET description = ?3, permissions = ?4, updated_at = ?5
                     WHERE tenant = ?1 AND name = ?2",
                    params![
                        role.tenant,
                        role.name,
                        role.description,
                        permissions_json(&role.permissions)?,
                        to_micros(role.updated_at),
                    ],
                )
                .map_err(sql_error)?;
            Ok(changed == 1)
        }))
    }

    fn delete_role(&self, tenant: &str, name: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        Box::pin(self.db.run(true, move |tx| {
            if exists(tx, "SELECT 1 FROM users WHERE tenant = ?1 AND custom_role = ?2 LIMIT 1", params![tenant, name])?
            {
                return Err(StoreError::Conflict(format!("role {name:?} is assigned to users")));
            }
            let deleted = tx
                .execute_cached("DELETE FROM roles WHERE tenant = ?1 AND name = ?2", params![tenant, name])
                .map_err(sql_error)?;
            Ok(deleted == 1)
        }))
    }

    fn create_identity_provider(&self, provider: IdentityProviderRecord) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.db.run(true, move |tx| {
            if exists(tx, "SELECT 1 FROM identity_providers WHERE id = ?1", [&provider.id])? {
                return Err(StoreError::AlreadyExists(format!("identity provider {:?}", provider.id)));
            }
            insert_identity_provider(tx, &provider)
        }))
    }

    fn identity_provider(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<Option<IdentityProviderRecord>>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(self.db.run(true, move |tx| {
            let sql = format!("SELECT {PROVIDER_COLUMNS} FROM identity_providers WHERE tenant = ?1 AND id = ?2");
            let row = tx.query_row(&sql, params![tenant, id], provider_row).optional().map_err(sql_error)?;
            row.map(to_provider).transpose()
        }))
    }

    fn identity_providers(&self, tenant: &str) -> BoxFuture<'_, StoreResult<Vec<IdentityProviderRecord>>> {
        let tenant = tenant.to_string();
        Box::pin(self.db.run(true, move |tx| {
            let sql = format!("SELECT {PROVIDER_COLUMNS} FROM identity_providers WHERE tenant = ?1 ORDER BY no");
            collect(tx, &sql, [&tenant], provider_row, to_provider)
        }))
    }

    fn identity_providers_for_issuer(&self, issuer: &str) -> BoxFuture<'_, StoreResult<Vec<IdentityProviderRecord>>> {
        let issuer = issuer.to_string();
        Box::pin(self.db.run(true, move |tx| {
            let sql = format!("SELECT {PROVIDER_COLUMNS} FROM identity_providers WHERE issuer = ?1 ORDER BY no");
            collect(tx, &sql, [&issuer], provider_row, to_provider)
        }))
    }

    fn replace_identity_provider(&self, provider: IdentityProviderRecord) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(self.db.run(true, move |tx| {
            let changed = tx
                .execute_cached(
                    "UPDATE identity_providers SET issuer = ?3, config = ?4, updated_at = ?5
                     WHERE tenant = ?1 AND id = ?2",
                    params![
                        provider.tenant,
                        provider.id,
                        provider.issuer(),
                        config_json(&provider)?,
                        to_micros(provider.updated_at),
                    ],
                )
                .map_err(sql_error)?;
            Ok(changed == 1)
        }))
    }

    fn delete_identity_provider(&self, tenant: &str, id: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(self.db.run(true, move |tx| {
            let deleted = tx
                .execute_cached("DELETE FROM identity_providers WHERE tenant = ?1 AND id = ?2", params![tenant, id])
                .map_err(sql_error)?;
            Ok(deleted == 1)
        }))
    }
}
