-- Monitoring (the AlertStore, src/alerts.rs), schema version 2: rules, alerts, webhook
-- endpoints, their deliveries (an outbox) and the rule engine's cursor per tenant, shared by
-- every node. Keyed by the public tenant id, not `tenants.no`: the AlertStore contract does not
-- require the tenant to exist in the ledger tables, and these tables are small.

-- The first ledger seq the rule engine has not evaluated yet. Also the row record_alerts locks
-- first (its upsert), so one tenant's alerts are recorded by one transaction at a time.
CREATE TABLE engine_cursors (
    tenant       text PRIMARY KEY,
    next_seq     bigint NOT NULL CHECK (next_seq >= 0),
    installed_at timestamptz NOT NULL
);

-- The current version of each rule ever created; deleted ones keep their row (ids are not
-- reused). `no` orders them oldest first.
CREATE TABLE rules (
    no         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant     text NOT NULL,
    id         text NOT NULL,
    version    bigint NOT NULL,
    definition jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    deleted_at timestamptz,
    UNIQUE (tenant, id)
);

-- Every version ever stored, for alerts that name an older one.
CREATE TABLE rule_versions (
    tenant     text NOT NULL,
    id         text NOT NULL,
    version    bigint NOT NULL,
    definition jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    saved_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant, id, version)
);

-- One row per firing: UNIQUE (tenant, dedup_key) is what makes engine replays, and several
-- nodes evaluating the same tenant, store each alert once. `position` is the list order.
CREATE TABLE alerts (
    position          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                text NOT NULL UNIQUE,
    tenant            text NOT NULL,
    rule_id           text NOT NULL,
    rule_version      bigint NOT NULL,
    severity          text NOT NULL,
    group_key         jsonb NOT NULL,
    event_ids         text[] NOT NULL,
    event_count       bigint NOT NULL,
    trigger_seq       bigint,
    started_at        timestamptz NOT NULL,
    fired_at          timestamptz NOT NULL,
    summary           text NOT NULL,
    dedup_key         text NOT NULL,
    status            text NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    status_changed_by text,
    status_changed_at timestamptz,
    status_note       text,
    UNIQUE (tenant, dedup_key)
);
CREATE INDEX alerts_tenant ON alerts (tenant, position);

CREATE TABLE webhooks (
    no         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         text NOT NULL UNIQUE,
    tenant     text NOT NULL,
    url        text NOT NULL,
    events     text[] NOT NULL,
    secret     text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant, no);

-- The outbox: one row per message and endpoint, written in the transaction of the alert or
-- status change it announces, deleted with its endpoint. `claimed_by` / `claimed_until` is the
-- lease a node takes in due_deliveries so that no other node sends it meanwhile (see
-- src/alerts.rs); an attempt recorded or a redelivery clears it.
CREATE TABLE deliveries (
    position         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant           text NOT NULL,
    endpoint_id      text NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    message_id       text NOT NULL,
    event_type       text NOT NULL,
    alert_id         text NOT NULL,
    payload          text NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL,
    round_attempts   integer NOT NULL,
    round_started_at timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    next_attempt_at  timestamptz,
    last_attempt_at  timestamptz,
    last_status      integer,
    last_error       text,
    delivered_at     timestamptz,
    claimed_by       text,
    claimed_until    timestamptz,
    UNIQUE (endpoint_id, message_id)
);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, position);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, position) WHERE status = 'pending';
