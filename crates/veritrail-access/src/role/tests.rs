use super::*;
use crate::permission::ReadScope;

fn spec(json: &str) -> Result<CustomRole, RoleError> {
    RoleSpec::from_json(json)
}

#[test]
fn builtin_matrix() {
    use Permission::*;
    assert_eq!(BuiltinRole::SuperAdmin.permissions(), PermissionSet::ALL);
    assert_eq!(
        BuiltinRole::ComplianceOfficer.permissions(),
        PermissionSet::of(&[
            EventsRead,
            EventsExport,
            PiiRead,
            LedgerRead,
            ReportsRead,
            ReportsManage,
            RulesRead,
            AlertsRead
        ])
    );
    assert_eq!(
        BuiltinRole::Auditor.permissions(),
        PermissionSet::of(&[EventsRead, EventsExport, LedgerRead, ReportsRead])
    );
    assert_eq!(BuiltinRole::StandardUser.permissions(), PermissionSet::of(&[EventsReadOwn]));

    assert!(!BuiltinRole::Auditor.permissions().contains(PiiRead), "auditors see personal data masked");
    assert_eq!(BuiltinRole::StandardUser.permissions().read_scope(), ReadScope::OwnOnly);
    assert_eq!(BuiltinRole::Auditor.permissions().read_scope(), ReadScope::All);
    for role in BuiltinRole::ALL {
        assert_eq!(BuiltinRole::parse(role.name()), Some(role));
        assert!(is_role_name(role.name()));
        assert!(!role.description().is_empty());
    }
}

#[test]
fn valid_spec() {
    let role = spec(r#"{"name":"soc_analyst","description":"SOC tier 1","permissions":["alerts:read","alerts:manage","events:read"]}"#)
        .unwrap();
    assert_eq!(role.name(), "soc_analyst");
    assert_eq!(role.description(), Some("SOC tier 1"));
    assert_eq!(
        role.permissions(),
        PermissionSet::of(&[Permission::AlertsRead, Permission::AlertsManage, Permission::EventsRead])
    );
    let back = role.to_spec();
    assert_eq!(back.permissions, ["events:read", "alerts:read", "alerts:manage"]);
    assert_eq!(back.validate().unwrap(), role);

    let without_description = spec(r#"{"name":"ab","permissions":["ledger:read"]}"#).unwrap();
    assert_eq!(without_description.description(), None);
}

/// `(document, code, message fragment)`: each invalid role names its problem.
#[test]
fn invalid_specs_name_the_field() {
    let long_name = format!(r#"{{"name":"a{}","permissions":["ledger:read"]}}"#, "b".repeat(63));
    let long_description =
        format!(r#"{{"name":"ok","description":"{}","permissions":["ledger:read"]}}"#, "x".repeat(501));
    let cases: Vec<(&str, &str, &str)> = vec![
        (r#"{"name":"x","permissions":["ledger:read"]}"#, "role_name_invalid", "name: `x` is not a valid role name"),
        (r#"{"name":"Admins","permissions":["ledger:read"]}"#, "role_name_invalid", "name: `Admins`"),
        (r#"{"name":"1st","permissions":["ledger:read"]}"#, "role_name_invalid", "name:"),
        (r#"{"name":"soc-analyst","permissions":["ledger:read"]}"#, "role_name_invalid", "name:"),
        (r#"{"name":"","permissions":["ledger:read"]}"#, "role_name_invalid", "name:"),
        (
            r#"{"name":"auditor","permissions":["ledger:read"]}"#,
            "role_name_reserved",
            "name: `auditor` is a built-in role",
        ),
        (r#"{"name":"super_admin","permissions":["ledger:read"]}"#, "role_name_reserved", "built-in"),
        (&long_name, "role_name_invalid", "name:"),
        (&long_description, "role_description_invalid", "description: 501 characters"),
        (r#"{"name":"ok","description":"a\nb","permissions":["ledger:read"]}"#, "role_description_invalid", "control"),
        (r#"{"name":"ok","permissions":[]}"#, "role_permissions_empty", "permissions: a role must grant"),
        (
            r#"{"name":"ok","permissions":["ledger:read","events:delete"]}"#,
            "permission_unknown",
            "permissions[1]: unknown permission `events:delete`",
        ),
        (
            r#"{"name":"ok","permissions":["ledger:read","ledger:read"]}"#,
            "role_permission_duplicate",
            "permissions[1]: permission `ledger:read` is listed twice",
        ),
        (r#"{"name":"ok","permissions":["ledger:read"],"admin":true}"#, "role_invalid", "unknown field `admin`"),
        (r#"{"name":"ok"}"#, "role_invalid", "missing field `permissions`"),
        (r#"{"permissions":["ledger:read"]}"#, "role_invalid", "missing field `name`"),
        (r#"{"name":"ok","permissions":"ledger:read"}"#, "role_invalid", "invalid type"),
        (r#"{"name":"ok","permissions":[1]}"#, "role_invalid", "invalid type"),
        ("[]", "role_invalid", "invalid role"),
        ("{", "role_invalid", "invalid role"),
    ];
    for (json, code, fragment) in cases {
        let error = spec(json).unwrap_err();
        assert_eq!(error.code(), code, "{json}: {error}");
        assert!(error.to_string().contains(fragment), "{json}: {error}");
    }
    let boundary = format!(r#"{{"name":"a{}","permissions":["ledger:read"]}}"#, "b".repeat(62));
    assert!(spec(&boundary).is_ok(), "63 characters is the longest name");
}

#[test]
fn control_characters_in_names_are_escaped_in_messages() {
    let error = spec("{\"name\":\"a\\u001b[31mb\",\"permissions\":[\"ledger:read\"]}").unwrap_err();
    assert!(!error.to_string().contains('\u{1b}'), "{error}");
}

#[test]
fn catalog_resolves_builtin_and_custom_roles() {
    let analyst = spec(r#"{"name":"soc_analyst","permissions":["alerts:read","alerts:manage"]}"#).unwrap();
    let catalog = RoleCatalog::new([analyst.clone()]).unwrap();
    assert_eq!(catalog.permissions("auditor"), Some(BuiltinRole::Auditor.permissions()));
    assert_eq!(catalog.permissions("soc_analyst"), Some(analyst.permissions()));
    assert_eq!(catalog.permissions("ghost"), None);
    assert!(catalog.contains("standard_user"));
    assert_eq!(
        catalog.permissions_of(["standard_user", "soc_analyst", "ghost"]),
        PermissionSet::of(&[Permission::EventsReadOwn, Permission::AlertsRead, Permission::AlertsManage])
    );
    assert_eq!(catalog.custom_roles().count(), 1);

    let error = RoleCatalog::new([analyst.clone(), analyst]).unwrap_err();
    assert_eq!(error.code(), "role_duplicate");
}

#[test]
fn legacy_scopes_keep_their_meaning() {
    assert_eq!(scope_permissions("admin").unwrap(), PermissionSet::ALL);
    assert_eq!(scope_permissions("events:write").unwrap(), PermissionSet::of(&[Permission::EventsWrite]));
    let read = scope_permissions("events:read").unwrap();
    assert_eq!(read, LEGACY_EVENTS_READ);
    assert!(read.contains(Permission::EventsExport) && read.contains(Permission::LedgerRead));
    assert!(!read.contains(Permission::PiiRead));
    assert!(!read.contains(Permission::EventsWrite));
    for scope in LEGACY_SCOPES {
        assert!(scope_permissions(scope).is_ok());
    }
}

#[test]
fn permission_names_work_as_scopes() {
    assert_eq!(scope_permissions("pii:read").unwrap(), PermissionSet::of(&[Permission::PiiRead]));
    assert_eq!(scope_permissions("events:read:own").unwrap(), PermissionSet::of(&[Permission::EventsReadOwn]));
    let error = scope_permissions("root").unwrap_err();
    assert_eq!(error.code(), "scope_unknown");
    assert!(error.to_string().contains("`root`"));

    assert_eq!(
        scopes_permissions(["events:write", "keys:manage", "future:scope"]),
        PermissionSet::of(&[Permission::EventsWrite, Permission::KeysManage]),
        "unknown stored scopes grant nothing"
    );
    assert_eq!(scopes_permissions(["events:write", "admin"]), PermissionSet::ALL);
}
