-- Encryption at rest of personal data (issue 5). Sidecars (`personal.data`) are sealed per owner
-- under per-subject data keys, wrapped under the master key; equality filters on e-mail and IP
-- use blind-index tokens under a per-tenant key. Erasure deletes a subject's key rows.
CREATE TABLE subject_keys (
    key_id     bigint PRIMARY KEY,
    tenant_no  bigint NOT NULL REFERENCES tenants (no),
    subject    text NOT NULL,
    wrapped    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subject_keys_subject ON subject_keys (tenant_no, subject);

CREATE TABLE tenant_keys (
    tenant_no     bigint PRIMARY KEY REFERENCES tenants (no),
    blind_wrapped bytea NOT NULL
);

-- The clear pre-filter columns go; their tokens replace them.
ALTER TABLE personal DROP COLUMN actor_email, DROP COLUMN ip,
    ADD COLUMN email_bidx bytea, ADD COLUMN ip_bidx bytea;
