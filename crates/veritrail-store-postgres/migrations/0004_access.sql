-- Access control (the AccessStore, src/access.rs), schema version 4: users, their sessions,
-- custom roles and SSO identity providers, shared by every node. Keyed by the public tenant id
-- like the monitoring tables. Ids and names compared in "C" collation, so that list order is
-- the same as the embedded store's (byte order).

-- A tenant's custom roles; built-in roles have no row. `no` orders them oldest first.
CREATE TABLE custom_roles (
    no          bigint GENERATED ALWAYS AS IDENTITY,
    tenant      text NOT NULL,
    name        text COLLATE "C" NOT NULL,
    description text,
    permissions text[] NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- `email` is stored lowercased (by the store, not by PostgreSQL's lower(), so both backends
-- agree). `custom_role` is `role` when that is a custom role, NULL for a built-in one: the
-- foreign key is what keeps a held role from being deleted and a deleted role from being
-- assigned, whichever nodes race (its checks lock the role row).
CREATE TABLE users (
    id            text COLLATE "C" PRIMARY KEY,
    tenant        text NOT NULL,
    email         text NOT NULL,
    password_hash text,
    role          text COLLATE "C" NOT NULL,
    custom_role   text COLLATE "C" CHECK (custom_role IS NULL OR custom_role = role),
    actor_id      text,
    status        text NOT NULL CHECK (status IN ('active', 'suspended')),
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    UNIQUE (tenant, email),
    FOREIGN KEY (tenant, custom_role) REFERENCES custom_roles (tenant, name)
);
CREATE INDEX users_by_creation ON users (tenant, created_at, id);
CREATE INDEX users_by_custom_role ON users (tenant, custom_role) WHERE custom_role IS NOT NULL;

-- Sessions go with their user. A session is inserted under a share lock on its (active) user's
-- row, and suspension revokes sessions after updating that row, so none created concurrently
-- survives a suspension.
CREATE TABLE sessions (
    id           text PRIMARY KEY,
    tenant       text NOT NULL,
    user_id      text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret_hash  bytea NOT NULL CHECK (length(secret_hash) = 32),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    revoked_at   timestamptz,
    ip           text,
    user_agent   text
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- `issuer` is the configuration's `issuer` member, copied by the store for routing bearer
-- tokens to the providers that may verify them.
CREATE TABLE identity_providers (
    no         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         text NOT NULL UNIQUE,
    tenant     text NOT NULL,
    issuer     text,
    config     jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX identity_providers_by_tenant ON identity_providers (tenant, no);
CREATE INDEX identity_providers_by_issuer ON identity_providers (issuer, no);
