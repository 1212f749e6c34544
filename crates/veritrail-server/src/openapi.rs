//! The OpenAPI 3.1 document served at `/v1/openapi.json`, generated from [`OPERATIONS`] (the
//! same table a test checks against the router, so a route cannot go undocumented) and from the
//! error-code table.

use serde_json::{Map, Value, json};

use crate::error::Code;
use crate::export::CSV_COLUMNS;

/// One documented operation.
pub(crate) struct Operation {
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    pub(crate) summary: &'static str,
    /// Scope needed (`platform` for the bootstrap token, empty for none).
    pub(crate) auth: &'static str,
    pub(crate) query: &'static [(&'static str, &'static str)],
    pub(crate) success: (u16, &'static str),
}

const FILTERS: &[(&str, &str)] = &[
    ("action", "Action, glob (`auth.*`) or comma list of them"),
    ("actor_id", "Exact actor id"),
    ("actor_email", "Actor e-mail, case-insensitive"),
    ("actor_type", "user | service | api_key | ai_agent | system | anonymous"),
    ("actor_role", "One of the actor's roles"),
    ("resource_type", "Type of the resource or of any target"),
    ("resource_id", "Id of the resource or of any target"),
    ("outcome", "success | failure | denied"),
    ("ip", "context.ip (IPv4/IPv6)"),
    ("channel", "ui | api | workflow | system"),
    ("sensitivity", "pii | phi | pci | secret | confidential"),
    ("data_subject", "Exact data subject"),
    ("metadata.<key>", "metadata value at a dotted path equals the given text"),
    ("since", "occurred_at >= since (RFC 3339)"),
    ("until", "occurred_at < until (RFC 3339)"),
    ("q", "case-insensitive text search over action, actor, resources, reason, subject, endpoint"),
    ("order", "desc (default) | asc, by seq"),
];

pub(crate) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "post",
        path: "/v1/tenants",
        summary: "Create a tenant and its first admin API key",
        auth: "platform",
        query: &[],
        success: (201, "`{\"tenant\", \"name\", \"api_key\"}`"),
    },
    Operation {
        method: "post",
        path: "/v1/events",
        summary: "Ingest one event, a JSON array of events, or NDJSON; answers once durable; idempotent by id",
        auth: "events:write",
        query: &[],
        success: (201, "`{\"events\":[{\"id\",\"seq\"}]}`"),
    },
    Operation {
        method: "get",
        path: "/v1/events",
        summary: "Query events, newest first, with cursor pagination",
        auth: "events:read",
        query: &[("limit", "1-1000, default 100"), ("cursor", "next_cursor of the previous page")],
        success: (200, "`{\"events\":[...], \"next_cursor\"}`"),
    },
    Operation {
        method: "get",
        path: "/v1/events/{id}",
        summary: "One event with its seq, leaf_hash and inclusion-proof link",
        auth: "events:read",
        query: &[],
        success: (200, "the event"),
    },
    Operation {
        method: "get",
        path: "/v1/export",
        summary: "Stream every matching event as CSV (spreadsheet-safe) or JSON lines, oldest first",
        auth: "events:export (format=ledger: ledger:read)",
        query: &[("format", "csv | jsonl (required)")],
        success: (200, "text/csv or application/x-ndjson"),
    },
    Operation {
        method: "post",
        path: "/v1/api-keys",
        summary: "Create an API key `{\"name\",\"scopes\",\"expires_at\"?}`; the secret is shown once",
        auth: "keys:manage",
        query: &[],
        success: (201, "`{\"id\", \"api_key\"}`"),
    },
    Operation {
        method: "get",
        path: "/v1/api-keys",
        summary: "List the tenant's API keys (no secrets)",
        auth: "keys:manage",
        query: &[],
        success: (200, "`{\"api_keys\":[...]}`"),
    },
    Operation {
        method: "delete",
        path: "/v1/api-keys/{id}",
        summary: "Revoke an API key at once",
        auth: "keys:manage",
        query: &[],
        success: (204, "revoked"),
    },
    Operation {
        method: "post",
        path: "/v1/users",
        summary: "Create a user `{\"email\",\"password\",\"role\",\"actor_id\"?}` (built-in or custom role; password of at least 12 characters, stored as argon2id)",
        auth: "users:manage",
        query: &[],
        success: (201, "the user (no password hash)"),
    },
    Operation {
        method: "get",
        path: "/v1/users",
        summary: "List the tenant's users (no password hashes)",
        auth: "users:manage",
        query: &[],
        success: (
            200,
            "`{\"users\":[{\"id\",\"email\",\"role\",\"actor_id\",\"status\",\"created_at\",\"updated_at\"}]}`",
        ),
    },
    Operation {
        method: "get",
        path: "/v1/users/{id}",
        summary: "One user",
        auth: "users:manage",
        query: &[],
        success: (200, "the user"),
    },
    Operation {
        method: "patch",
        path: "/v1/users/{id}",
        summary: "Change a user's `role`, `actor_id`, `status` (active | suspended: revokes its sessions) or `password`",
        auth: "users:manage",
        query: &[],
        success: (200, "the user as changed"),
    },
    Operation {
        method: "delete",
        path: "/v1/users/{id}",
        summary: "Delete a user and its sessions",
        auth: "users:manage",
        query: &[],
        success: (204, "deleted"),
    },
    Operation {
        method: "post",
        path: "/v1/sessions",
        summary: "Sign in `{\"tenant\",\"email\",\"password\"}`: a session token (`vts_...`) used as a bearer token; failures answer 401, repeated failures 429",
        auth: "",
        query: &[],
        success: (201, "`{\"token\", \"expires_at\"}`"),
    },
    Operation {
        method: "delete",
        path: "/v1/sessions/current",
        summary: "Sign out: revoke the calling session at once",
        auth: "session",
        query: &[],
        success: (204, "revoked"),
    },
    Operation {
        method: "get",
        path: "/v1/ledger/checkpoint",
        summary: "The latest signed checkpoint (or the one at `size`): a C2SP tlog-checkpoint in a signed note, Ed25519, text/plain",
        auth: "ledger:read",
        query: &[("size", "tree size of the checkpoint; default the latest")],
        success: (200, "text/plain signed note"),
    },
    Operation {
        method: "post",
        path: "/v1/ledger/checkpoint",
        summary: "Sign a checkpoint of the current tree now (when it grew since the last one)",
        auth: "ledger:read or events:write",
        query: &[],
        success: (201, "text/plain signed note"),
    },
    Operation {
        method: "get",
        path: "/v1/ledger/key",
        summary: "The current checkpoint verifier key, `<name>+<hex id>+<base64 key>`",
        auth: "",
        query: &[],
        success: (200, "text/plain verifier key"),
    },
    Operation {
        method: "get",
        path: "/v1/ledger/keys",
        summary: "Every checkpoint verifier key ever used, with when it was created and retired",
        auth: "",
        query: &[],
        success: (200, "`{\"keys\":[...]}`"),
    },
    Operation {
        method: "post",
        path: "/v1/ledger/keys/rotate",
        summary: "Retire the checkpoint signing key and make a new one current; old checkpoints stay verifiable; recorded as audit.key.rotated",
        auth: "platform",
        query: &[],
        success: (201, "`{\"verifier_key\"}`"),
    },
    Operation {
        method: "get",
        path: "/v1/ledger/records",
        summary: "Sealed records in seq order, the exact hashed bytes, application/x-ndjson",
        auth: "ledger:read",
        query: &[("from", "first seq, default 0"), ("limit", "1-10000, default 1000")],
        success: (200, "application/x-ndjson"),
    },
    Operation {
        method: "get",
        path: "/v1/ledger/proof/inclusion",
        summary: "RFC 9162 inclusion proof of a record in a checkpointed tree",
        auth: "ledger:read",
        query: &[("seq", "the record"), ("tree_size", "size of a signed checkpoint; default the latest")],
        success: (200, "`{\"seq\",\"tree_size\",\"hashes\":[base64...]}`"),
    },
    Operation {
        method: "get",
        path: "/v1/ledger/proof/consistency",
        summary: "RFC 9162 consistency proof between two checkpointed tree sizes",
        auth: "ledger:read",
        query: &[("first", "the smaller size"), ("second", "the larger size")],
        success: (200, "`{\"first\",\"second\",\"hashes\":[base64...]}`"),
    },
    Operation {
        method: "post",
        path: "/v1/ledger/verifications",
        summary: "Report a monitor's verification result, recorded as audit.verified (or audit.control.failed)",
        auth: "ledger:read",
        query: &[],
        success: (201, "`{\"seq\"}` of the recorded event"),
    },
    Operation {
        method: "get",
        path: "/v1/ledger/checkpoint/timestamp",
        summary: "RFC 3161 time-stamp of a checkpoint (DER TimeStampResp over the SHA-256 of its exact signed note); 404 when it has none",
        auth: "ledger:read",
        query: &[("size", "tree size of the checkpoint; default the latest")],
        success: (200, "application/timestamp-reply"),
    },
    Operation {
        method: "get",
        path: "/v1/alerts",
        summary: "Alerts raised by the tenant's rules, newest first, with cursor pagination",
        auth: "alerts:read",
        query: &[
            ("status", "open | acknowledged | resolved, or a comma list"),
            ("severity", "low | medium | high | critical, or a comma list"),
            ("rule", "id of the rule that fired, e.g. brute_force"),
            ("since", "fired_at >= since (RFC 3339)"),
            ("until", "fired_at < until (RFC 3339)"),
            ("limit", "1-1000, default 100"),
            ("cursor", "next_cursor of the previous page"),
        ],
        success: (
            200,
            "`{\"alerts\":[{\"id\",\"rule\",\"severity\",\"status\",\"event_ids\",\"group_key\",\"fired_at\",\"summary\",...}], \"next_cursor\"}`",
        ),
    },
    Operation {
        method: "get",
        path: "/v1/alerts/{id}",
        summary: "One alert, with the name of the rule version that fired",
        auth: "alerts:read",
        query: &[],
        success: (200, "the alert"),
    },
    Operation {
        method: "post",
        path: "/v1/alerts/{id}/acknowledge",
        summary: "Acknowledge an open alert `{\"note\"?}`; recorded as audit.alert.acknowledged and sent to webhooks",
        auth: "alerts:manage",
        query: &[],
        success: (200, "the alert"),
    },
    Operation {
        method: "post",
        path: "/v1/alerts/{id}/resolve",
        summary: "Resolve an open or acknowledged alert `{\"note\"?}`; recorded as audit.alert.resolved and sent to webhooks",
        auth: "alerts:manage",
        query: &[],
        success: (200, "the alert"),
    },
    Operation {
        method: "get",
        path: "/v1/rules",
        summary: "The tenant's monitoring rules (the default pack included)",
        auth: "rules:read",
        query: &[],
        success: (200, "`{\"rules\":[...]}`"),
    },
    Operation {
        method: "post",
        path: "/v1/rules",
        summary: "Create a rule (match, threshold, sum, outside_hours, new_value, silence); recorded as audit.rule.created",
        auth: "rules:manage",
        query: &[],
        success: (201, "the rule with its `id` and `version`"),
    },
    Operation {
        method: "post",
        path: "/v1/rules/dry-run",
        summary: "What a draft rule `{\"rule\", \"since\"?, \"max_events\"?, \"max_firings\"?}` would have fired over stored history",
        auth: "rules:manage",
        query: &[],
        success: (200, "`{\"firings\":[...], \"events_evaluated\", \"truncated\", \"from_seq\", \"to_seq\"}`"),
    },
    Operation {
        method: "get",
        path: "/v1/rules/{id}",
        summary: "One rule, current version",
        auth: "rules:read",
        query: &[],
        success: (200, "the rule"),
    },
    Operation {
        method: "put",
        path: "/v1/rules/{id}",
        summary: "Replace a rule's definition (a new version, evaluated from the next event on); recorded as audit.rule.updated",
        auth: "rules:manage",
        query: &[],
        success: (200, "the rule"),
    },
    Operation {
        method: "delete",
        path: "/v1/rules/{id}",
        summary: "Delete a rule (its alerts stay); recorded as audit.rule.deleted",
        auth: "rules:manage",
        query: &[],
        success: (204, "deleted"),
    },
    Operation {
        method: "post",
        path: "/v1/rules/{id}/dry-run",
        summary: "What a stored rule would have fired over stored history `{\"since\"?, \"max_events\"?, \"max_firings\"?}`",
        auth: "rules:manage",
        query: &[],
        success: (200, "as POST /v1/rules/dry-run"),
    },
    Operation {
        method: "post",
        path: "/v1/webhooks",
        summary: "Add a webhook endpoint `{\"url\", \"events\"?: [\"alert.*\"]}` (http:// only); the signing secret is shown once",
        auth: "streams:manage",
        query: &[],
        success: (201, "`{\"id\", \"url\", \"events\", \"secret\": \"whsec_...\"}`"),
    },
    Operation {
        method: "get",
        path: "/v1/webhooks",
        summary: "The tenant's webhook endpoints (no secrets)",
        auth: "streams:manage",
        query: &[],
        success: (200, "`{\"webhooks\":[...]}`"),
    },
    Operation {
        method: "get",
        path: "/v1/webhooks/{id}",
        summary: "One webhook endpoint (no secret)",
        auth: "streams:manage",
        query: &[],
        success: (200, "the endpoint"),
    },
    Operation {
        method: "delete",
        path: "/v1/webhooks/{id}",
        summary: "Remove a webhook endpoint and its deliveries",
        auth: "streams:manage",
        query: &[],
        success: (204, "deleted"),
    },
    Operation {
        method: "get",
        path: "/v1/webhooks/{id}/deliveries",
        summary: "The endpoint's delivery log, newest first; status=dead is the dead-letter list",
        auth: "streams:manage",
        query: &[
            ("status", "pending | delivered | dead"),
            ("limit", "1-1000, default 100"),
            ("cursor", "next_cursor of the previous page"),
        ],
        success: (200, "`{\"deliveries\":[...], \"next_cursor\"}`"),
    },
    Operation {
        method: "post",
        path: "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver",
        summary: "Send a delivery again now (same webhook-id), starting a new round of retries",
        auth: "streams:manage",
        query: &[],
        success: (202, "the delivery"),
    },
    Operation {
        method: "delete",
        path: "/v1/subjects/{subject_id}",
        summary: "Erase a data subject (GDPR Art. 17) by crypto-shredding `{\"reason\"?}`: the subject's data keys and blind-index tokens are destroyed, its personal fields read as \"[erased]\" everywhere, sealed records and proofs are unchanged; the subject's values are also cut out of alert group keys, summaries, status notes and stored webhook messages; recorded as audit.erasure.performed with any retention conflict; 409 legal_hold under a legal hold",
        auth: "subjects:manage",
        query: &[],
        success: (
            200,
            "`{\"subject\", \"erased\", \"keys_destroyed\", \"events_affected\", \"alerts_redacted\", \"webhook_messages_redacted\", \"retention_conflicts\", \"erasure_event_seq\"}`",
        ),
    },
    Operation {
        method: "get",
        path: "/v1/subjects/{subject_id}/export",
        summary: "Subject access report (GDPR Art. 15): every event by or about the subject, decrypted, with purposes, categories, recipients, storage period, rights, consultation log, consents and earlier requests; recorded as audit.dsar.completed",
        auth: "subjects:manage",
        query: &[],
        success: (200, "the report (JSON)"),
    },
    Operation {
        method: "get",
        path: "/v1/subjects/{subject_id}/consents",
        summary: "Current consent per purpose, folded from consent.granted/revoked events, each with its inclusion proof in the returned checkpoint",
        auth: "events:read",
        query: &[],
        success: (200, "`{\"subject\", \"consents\":[...], \"checkpoint\"}`"),
    },
    Operation {
        method: "put",
        path: "/v1/subjects/{subject_id}/legal-hold",
        summary: "Place a legal hold `{\"reason\"}`: erasure of the subject is refused (409) until released; an erasure already under way is waited for (409 conflict after 10 s); recorded as audit.legal_hold.placed",
        auth: "subjects:manage",
        query: &[],
        success: (200, "`{\"subject\", \"legal_hold\"}`"),
    },
    Operation {
        method: "delete",
        path: "/v1/subjects/{subject_id}/legal-hold",
        summary: "Release the legal hold; recorded as audit.legal_hold.released",
        auth: "subjects:manage",
        query: &[],
        success: (200, "`{\"subject\", \"legal_hold\"}`"),
    },
    Operation {
        method: "get",
        path: "/v1/privacy/settings",
        summary: "The tenant's privacy settings",
        auth: "subjects:manage",
        query: &[],
        success: (200, "`{\"dsar_include_accessors\", \"justification\"}`"),
    },
    Operation {
        method: "put",
        path: "/v1/privacy/settings",
        summary: "Set `{\"dsar_include_accessors\", \"justification\"}`: whether subject access reports name accessors (off by default, CJEU C-579/21; on needs a justification); recorded as config.updated",
        auth: "subjects:manage",
        query: &[],
        success: (200, "the settings"),
    },
    Operation {
        method: "get",
        path: "/v1/privacy/classification",
        summary: "The tenant's own personal fields",
        auth: "subjects:manage",
        query: &[],
        success: (200, "`{\"fields\": {\"metadata.<path>\": \"pii|phi|pci\"}}`"),
    },
    Operation {
        method: "put",
        path: "/v1/privacy/classification",
        summary: "Declare fields under metadata personal `{\"fields\": {\"metadata.<path>\": \"pii|phi|pci\"}}` (at most 100; not under reserved metadata keys): committed in the sealed record, encrypted under the data subject's key, masked without pii:read, erased with the subject — for events ingested from then on; recorded as config.updated",
        auth: "subjects:manage",
        query: &[],
        success: (200, "the classification"),
    },
    Operation {
        method: "post",
        path: "/v1/platform/master-key/rotate",
        summary: "Rotate the master key while serving (embedded store with its key file): every data key and installation secret is re-wrapped under a new key, no record changes; recorded as audit.key.rotated; 409 conflict when the key is configured (rotate by restart with VERITRAIL_MASTER_KEY_PREVIOUS)",
        auth: "platform",
        query: &[],
        success: (200, "`{\"key_id\"}`"),
    },
    Operation {
        method: "post",
        path: "/v1/roles",
        summary: "Create a custom role `{\"name\",\"description\"?,\"permissions\"}` (name `[a-z][a-z0-9_]{1,62}`, not a built-in; never more than the author holds); recorded as config.security.updated",
        auth: "users:manage",
        query: &[],
        success: (201, "the role"),
    },
    Operation {
        method: "get",
        path: "/v1/roles",
        summary: "The built-in roles (super_admin, compliance_officer, auditor, standard_user) and the tenant's custom roles, with their permissions",
        auth: "users:manage",
        query: &[],
        success: (200, "`{\"roles\":[{\"name\",\"description\",\"permissions\",\"built_in\"}]}`"),
    },
    Operation {
        method: "get",
        path: "/v1/roles/{name}",
        summary: "One role",
        auth: "users:manage",
        query: &[],
        success: (200, "the role"),
    },
    Operation {
        method: "put",
        path: "/v1/roles/{name}",
        summary: "Replace a custom role's description and permissions (built-in roles: 409); users holding it get the new permissions at their next request",
        auth: "users:manage",
        query: &[],
        success: (200, "the role"),
    },
    Operation {
        method: "delete",
        path: "/v1/roles/{name}",
        summary: "Delete a custom role (409 while a user holds it, or for a built-in role)",
        auth: "users:manage",
        query: &[],
        success: (204, "deleted"),
    },
    Operation {
        method: "post",
        path: "/v1/identity-providers",
        summary: "Trust an OpenID Connect / JWT identity provider `{\"issuer\",\"audience\",\"jwks\" or \"jwks_url\",\"allowed_algorithms\":[RS256|ES256|EdDSA],\"role_claim\"?,\"role_mapping\":{claim value: role},\"subject_claim\"?,\"email_claim\"?,\"leeway_seconds\"?}`: its signed tokens then act as their subject with the union of the mapped roles (never more than the author holds); one provider per issuer; a jwks_url key set is fetched now and validated; recorded as config.sso.configured",
        auth: "users:manage",
        query: &[],
        success: (201, "the provider (`idp_…` id)"),
    },
    Operation {
        method: "get",
        path: "/v1/identity-providers",
        summary: "The tenant's identity providers",
        auth: "users:manage",
        query: &[],
        success: (200, "`{\"identity_providers\":[...]}`"),
    },
    Operation {
        method: "get",
        path: "/v1/identity-providers/{id}",
        summary: "One identity provider",
        auth: "users:manage",
        query: &[],
        success: (200, "the provider"),
    },
    Operation {
        method: "put",
        path: "/v1/identity-providers/{id}",
        summary: "Replace an identity provider's configuration (validated like a new one); tokens verify against the new configuration at once",
        auth: "users:manage",
        query: &[],
        success: (200, "the provider"),
    },
    Operation {
        method: "delete",
        path: "/v1/identity-providers/{id}",
        summary: "Stop trusting an identity provider: its tokens are refused from the next request",
        auth: "users:manage",
        query: &[],
        success: (204, "deleted"),
    },
    Operation {
        method: "get",
        path: "/v1/openapi.json",
        summary: "This document",
        auth: "",
        query: &[],
        success: (200, "OpenAPI 3.1"),
    },
    Operation {
        method: "get",
        path: "/healthz",
        summary: "Liveness",
        auth: "",
        query: &[],
        success: (200, "`{\"status\":\"ok\"}`"),
    },
    Operation {
        method: "get",
        path: "/readyz",
        summary: "Readiness: storage reachable, index lag",
        auth: "",
        query: &[],
        success: (200, "`{\"status\":\"ready\", ...}`"),
    },
    Operation {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics",
        auth: "",
        query: &[],
        success: (200, "text/plain"),
    },
];

fn takes_filters(op: &Operation) -> bool {
    op.method == "get" && (op.path == "/v1/events" || op.path == "/v1/export")
}

/// Builds the document.
pub(crate) fn document() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let mut parameters = Vec::new();
        for segment in op.path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                parameters.push(json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}));
            }
        }
        let mut query: Vec<(&str, &str)> = op.query.to_vec();
        if takes_filters(op) {
            query.extend_from_slice(FILTERS);
        }
        for (name, description) in query {
            parameters.push(json!({"name": name, "in": "query", "required": name == "format", "description": description, "schema": {"type": "string"}}));
        }
        let mut responses = Map::new();
        responses.insert(op.success.0.to_string(), json!({"description": op.success.1}));
        responses.insert("default".into(), json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
        let mut operation = json!({"summary": op.summary, "parameters": parameters, "responses": responses});
        if !op.auth.is_empty() {
            operation["security"] = json!([{"bearer": []}]);
            operation["x-veritrail-scope"] = json!(op.auth);
        }
        let entry = paths.entry(op.path.to_string()).or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    let codes: Vec<Value> = Code::ALL
        .iter()
        .map(|c| json!({"code": c.name(), "status": c.status().as_u16(), "description": c.description()}))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Veritrail API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Tamper-evident audit trail. Errors use the codes listed in x-veritrail-error-codes."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "tenant API key (vt_...), user session token (vts_...), an identity provider's signed JWT, or platform bootstrap token"}},
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string", "enum": Code::ALL.iter().map(|c| c.name()).collect::<Vec<_>>()}, "message": {"type": "string"}}}}}}
        },
        "x-veritrail-error-codes": codes,
        "x-veritrail-csv-columns": CSV_COLUMNS,
    })
}
