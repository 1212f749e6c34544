//! The default rule pack every new tenant starts with.

use serde_json::{Value, json};

use crate::hours::BusinessHours;
use crate::spec::{Rule, RuleId, RuleSpec};

/// The stable ids of the default pack, in pack order.
pub const DEFAULT_PACK_IDS: [&str; 8] = [
    "brute_force",
    "mass_export",
    "mass_deletion",
    "privilege_escalation",
    "off_hours_sensitive_access",
    "security_config_change",
    "audit_log_tampering",
    "logging_stopped",
];

/// The default pack at version 1, enabled, with `off_hours_sensitive_access` using the tenant's
/// business hours (pass [`BusinessHours::office_hours_utc`] when the tenant has set none).
pub fn default_pack(hours: &BusinessHours) -> Vec<Rule> {
    DEFAULT_PACK_IDS
        .iter()
        .map(|id| {
            let mut spec = RuleSpec::from_json(&definition(id)).expect("the default pack is valid (tested)");
            if *id == "off_hours_sensitive_access" {
                spec.set_outside_hours(hours.clone());
            }
            Rule::new(RuleId::parse(id).expect("default pack ids are valid (tested)"), spec)
        })
        .collect()
}

fn definition(id: &str) -> Value {
    match id {
        "brute_force" => json!({
            "name": "Brute-force login attempts",
            "description": "5 or more failed logins for one actor or from one IP address within 10 minutes \
                            (HIPAA 164.308(a)(5)(ii)(C), PCI DSS 10.2.1.4).",
            "severity": "high",
            "when": {"action": "auth.login.failed"},
            "group_by": ["actor.id", "context.ip"],
            "group_mode": "each",
            "threshold": {"count": 5, "window": "10m"}
        }),
        "mass_export" => json!({
            "name": "Mass data export",
            "description": "One actor exports 10,000 records or more within an hour, in one export or several \
                            (metadata.record_count).",
            "severity": "high",
            "when": {"action": "data.exported"},
            "group_by": ["actor.id"],
            "threshold": {"sum": "metadata.record_count", "over": 10000, "window": "1h"}
        }),
        "mass_deletion" => json!({
            "name": "Mass deletion",
            "description": "One actor deletes 1,000 records or more within an hour (metadata.record_count; an \
                            event without it counts as one record).",
            "severity": "high",
            "when": {"action": "data.deleted"},
            "group_by": ["actor.id"],
            "threshold": {"sum": "metadata.record_count", "default": 1, "over": 1000, "window": "1h"}
        }),
        "privilege_escalation" => json!({
            "name": "Privilege escalation",
            "description": "An admin-like role or permission is assigned or granted (named in metadata.role, \
                            metadata.permission, the resource or a target) (SOX ITGC, PCI DSS 10.2.1.5, SOC 2 CC6.3).",
            "severity": "high",
            "when": {"action": "permission.role.assigned,permission.granted"},
            "field_matches": {
                "fields": ["metadata.role", "metadata.permission", "resource.id", "resource.name", "targets.id", "targets.name"],
                "patterns": ["*admin*", "owner", "org_owner", "account_owner", "root", "superuser", "super_user", "sudo*"]
            }
        }),
        "off_hours_sensitive_access" => json!({
            "name": "Sensitive data accessed outside business hours",
            "description": "data.sensitive.accessed outside the tenant's business hours.",
            "severity": "medium",
            "when": {"action": "data.sensitive.accessed"}
        }),
        "security_config_change" => json!({
            "name": "Security configuration changed",
            "description": "A security or SSO setting changed (SOC 2 CC7.1, CC8.1).",
            "severity": "medium",
            "when": {"action": "config.security.*,config.sso.*"}
        }),
        "audit_log_tampering" => json!({
            "name": "Audit log control failure",
            "description": "A control protecting the audit log failed, e.g. ledger verification or checkpoint \
                            consistency (PCI DSS 10.3.4, NIST AU-9).",
            "severity": "critical",
            "when": {"action": "audit.control.failed"}
        }),
        _ => json!({
            "name": "Logging stopped",
            "description": "A source (metadata.source.service) that was sending events has sent none for more \
                            than an hour (PCI DSS 10.2.1, 10.7.2).",
            "severity": "high",
            "silence": {"window": "1h"}
        }),
    }
}
