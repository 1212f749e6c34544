//! The standard action types (SPEC §6). Tenants may use their own actions too, as long as they
//! follow the action syntax; these lists are what reports, rules and UIs know by name.

/// Standard actions applications send (SPEC §6, expanded).
pub const STANDARD_ACTIONS: &[&str] = &[
    "auth.login.success",
    "auth.login.failed",
    "auth.logout",
    "auth.mfa.verified",
    "auth.mfa.failed",
    "auth.sso.redirect",
    "auth.session.created",
    "auth.session.expired",
    "auth.token.created",
    "auth.token.revoked",
    "auth.password.changed",
    "data.created",
    "data.read",
    "data.updated",
    "data.deleted",
    "data.exported",
    "data.sensitive.accessed",
    "permission.granted",
    "permission.revoked",
    "permission.denied",
    "permission.role.assigned",
    "permission.role.removed",
    "config.updated",
    "config.security.updated",
    "config.sso.configured",
    "config.integration.added",
    "admin.user.created",
    "admin.user.deleted",
    "admin.user.suspended",
    "admin.tenant.updated",
    "api.request",
    "ai.generate",
    "ai.tool.call",
    "consent.granted",
    "consent.revoked",
    "disclosure.made",
    "incident.opened",
    "incident.updated",
    "incident.closed",
];

/// Actions Veritrail records about its own activity (SPEC §6; PCI DSS 10.2.1.3/.6/.7).
/// All start with [`SELF_AUDIT_PREFIX`].
pub const SELF_AUDIT_ACTIONS: &[&str] = &[
    "audit.read",
    "audit.exported",
    "audit.report.generated",
    "audit.review.completed",
    "audit.verified",
    "audit.log.initialized",
    "audit.ingest.paused",
    "audit.ingest.resumed",
    "audit.stream.created",
    "audit.stream.deleted",
    "audit.stream.paused",
    "audit.stream.resumed",
    "audit.stream.failed",
    "audit.retention.policy.updated",
    "audit.retention.purged",
    "audit.legal_hold.placed",
    "audit.legal_hold.released",
    "audit.key.created",
    "audit.key.rotated",
    "audit.key.revoked",
    "audit.rule.created",
    "audit.rule.updated",
    "audit.rule.deleted",
    "audit.alert.raised",
    "audit.alert.acknowledged",
    "audit.alert.resolved",
    "audit.webhook.created",
    "audit.webhook.deleted",
    "audit.control.failed",
    "audit.control.restored",
    "audit.erasure.performed",
    "audit.dsar.received",
    "audit.dsar.completed",
];

/// The namespace of self-audit actions. The model accepts it from any caller; the server
/// decides whether clients may send it (it should refuse, so that self-audit cannot be forged).
pub const SELF_AUDIT_PREFIX: &str = "audit.";

/// True for an action listed in [`STANDARD_ACTIONS`].
pub fn is_standard(action: &str) -> bool {
    STANDARD_ACTIONS.contains(&action)
}

/// True for an action listed in [`SELF_AUDIT_ACTIONS`].
pub fn is_self_audit(action: &str) -> bool {
    SELF_AUDIT_ACTIONS.contains(&action)
}

/// True for any action in the reserved `audit.` namespace, listed or not.
pub fn is_reserved(action: &str) -> bool {
    action.starts_with(SELF_AUDIT_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::is_valid_action;

    #[test]
    fn every_listed_action_is_valid_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for action in STANDARD_ACTIONS.iter().chain(SELF_AUDIT_ACTIONS) {
            assert!(is_valid_action(action), "{action}");
            assert!(seen.insert(*action), "duplicate {action}");
        }
        assert_eq!(STANDARD_ACTIONS.len(), 39);
        assert_eq!(SELF_AUDIT_ACTIONS.len(), 33);
    }

    #[test]
    fn classification() {
        assert!(is_standard("auth.login.failed"));
        assert!(!is_standard("audit.read"));
        assert!(is_self_audit("audit.read"));
        assert!(!is_self_audit("auth.login.failed"));
        assert!(is_reserved("audit.custom.thing"));
        assert!(!is_reserved("auditor.read"));
        for action in SELF_AUDIT_ACTIONS {
            assert!(is_reserved(action));
        }
    }
}
