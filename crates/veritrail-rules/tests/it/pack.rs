//! The default pack: stable ids, and one event that fires each rule next to one that does not.

use jiff::SignedDuration;
use serde_json::{Value, json};
use veritrail_rules::{BusinessHours, DEFAULT_PACK_IDS, Severity, default_pack};

use crate::sim::{Stream, engine, feed};

#[test]
fn the_pack_has_stable_ids_and_starts_enabled_at_version_1() {
    let pack = default_pack(&BusinessHours::office_hours_utc());
    let ids: Vec<&str> = pack.iter().map(|rule| rule.id().as_str()).collect();
    assert_eq!(
        ids,
        [
            "brute_force",
            "mass_export",
            "mass_deletion",
            "privilege_escalation",
            "off_hours_sensitive_access",
            "security_config_change",
            "audit_log_tampering",
            "logging_stopped"
        ]
    );
    assert_eq!(ids, DEFAULT_PACK_IDS);
    assert!(pack.iter().all(|rule| rule.version() == 1 && rule.spec().enabled() && rule.effective_from_seq() == 0));
    let tampering = pack.iter().find(|rule| rule.id().as_str() == "audit_log_tampering").unwrap();
    assert_eq!(tampering.spec().severity(), Severity::Critical);
    let hours = BusinessHours::new("America/New_York", "mon-fri", "09:00", "17:00").unwrap();
    let off_hours =
        default_pack(&hours).into_iter().find(|rule| rule.id().as_str() == "off_hours_sensitive_access").unwrap();
    assert_eq!(off_hours.spec().outside_hours(), Some(&hours), "the tenant's hours");
}

#[test]
fn the_replay_horizon_of_the_pack_is_two_hours() {
    let engine = engine(default_pack(&BusinessHours::office_hours_utc()));
    // mass_export: 1h window + 1h lateness; logging_stopped: 2 × 1h.
    assert_eq!(engine.replay_horizon(), SignedDuration::from_hours(2));
}

/// Events that fire exactly the named rule (at noon UTC on a Thursday, inside office hours).
#[test]
fn each_rule_fires_on_what_it_is_for_and_not_on_its_near_misses() {
    let cases: Vec<(&str, Value, bool)> = vec![
        (
            "privilege_escalation",
            json!({"action": "permission.role.assigned", "metadata": {"role": "org_admin"}}),
            true,
        ),
        (
            "privilege_escalation",
            json!({"action": "permission.role.assigned", "resource": {"type": "role", "id": "Administrator"}}),
            true,
        ),
        (
            "privilege_escalation",
            json!({"action": "permission.granted", "targets": [{"type": "user", "id": "u-2"}, {"type": "role", "id": "r1", "name": "Owner"}]}),
            true,
        ),
        ("privilege_escalation", json!({"action": "permission.granted", "metadata": {"permission": "sudo:all"}}), true),
        ("privilege_escalation", json!({"action": "permission.role.assigned", "metadata": {"role": "viewer"}}), false),
        ("privilege_escalation", json!({"action": "permission.role.removed", "metadata": {"role": "admin"}}), false),
        ("security_config_change", json!({"action": "config.security.updated"}), true),
        ("security_config_change", json!({"action": "config.sso.configured"}), true),
        ("security_config_change", json!({"action": "config.updated"}), false),
        ("audit_log_tampering", json!({"action": "audit.control.failed"}), true),
        ("audit_log_tampering", json!({"action": "audit.control.restored"}), false),
        ("mass_export", json!({"action": "data.exported", "metadata": {"record_count": 10_000}}), true),
        ("mass_export", json!({"action": "data.exported", "metadata": {"record_count": 9_999}}), false),
        ("mass_export", json!({"action": "data.exported", "metadata": {"record_count": "50000"}}), false),
        ("mass_deletion", json!({"action": "data.deleted", "metadata": {"record_count": 5000}}), true),
        ("off_hours_sensitive_access", json!({"action": "data.sensitive.accessed"}), false),
    ];
    for (rule, event, fires) in cases {
        let mut engine = engine(default_pack(&BusinessHours::office_hours_utc()));
        let view = Stream::default().now(2.0 * 3600.0, event.clone());
        let fired: Vec<String> = feed(&mut engine, &view).iter().map(|f| f.rule_id.to_string()).collect();
        let expected: Vec<String> = if fires { vec![rule.to_string()] } else { vec![] };
        assert_eq!(fired, expected, "{rule}: {event}");
    }
}
