use super::*;

#[test]
fn wire_names_are_exactly_the_documented_ones() {
    let names: Vec<&str> = Permission::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(
        names,
        [
            "events:write",
            "events:read",
            "events:read:own",
            "events:export",
            "pii:read",
            "reports:read",
            "reports:manage",
            "rules:read",
            "rules:manage",
            "alerts:read",
            "alerts:manage",
            "streams:manage",
            "retention:manage",
            "subjects:manage",
            "users:manage",
            "keys:manage",
            "ledger:read",
        ]
    );
    for permission in Permission::ALL {
        assert_eq!(Permission::parse(permission.name()), Some(permission));
        assert_eq!(permission.name().parse::<Permission>().unwrap(), permission);
        assert_eq!(permission.to_string(), permission.name());
    }
}

#[test]
fn parse_is_exact() {
    for text in ["", "EVENTS:READ", "events:read ", "events", "events:read:all", "admin"] {
        assert_eq!(Permission::parse(text), None, "{text:?}");
    }
    let error = "events:delete".parse::<Permission>().unwrap_err();
    assert_eq!(error.code(), "permission_unknown");
    assert_eq!(error.to_string(), "permission: unknown permission `events:delete`");
}

#[test]
fn set_operations() {
    let set = PermissionSet::of(&[Permission::EventsRead, Permission::LedgerRead]);
    assert!(set.contains(Permission::EventsRead));
    assert!(!set.contains(Permission::EventsWrite));
    assert_eq!(set.len(), 2);
    assert!(!set.is_empty());
    assert!(PermissionSet::EMPTY.is_empty());
    assert_eq!(PermissionSet::ALL.len(), Permission::ALL.len());
    assert!(PermissionSet::ALL.contains_all(set));
    assert!(!set.contains_all(PermissionSet::ALL));
    assert_eq!(set.with(Permission::PiiRead).len(), 3);
    assert_eq!(set.without(Permission::EventsRead), PermissionSet::from(Permission::LedgerRead));
    assert_eq!(
        set.union(Permission::PiiRead.into()).intersection(Permission::PiiRead.into()),
        Permission::PiiRead.into()
    );

    let mut grown = PermissionSet::EMPTY;
    grown.insert(Permission::LedgerRead);
    grown.insert(Permission::EventsRead);
    grown.insert(Permission::EventsRead);
    assert_eq!(grown, set);
    grown.remove(Permission::LedgerRead);
    assert_eq!(grown.iter().collect::<Vec<_>>(), [Permission::EventsRead]);

    let collected: PermissionSet = [Permission::KeysManage, Permission::EventsWrite].into_iter().collect();
    assert_eq!(collected.names(), ["events:write", "keys:manage"], "iteration is in wire order");
    assert_eq!(format!("{collected:?}"), r#"{"events:write", "keys:manage"}"#);
}

#[test]
fn from_names_names_the_unknown_one() {
    let set = PermissionSet::from_names(["pii:read", "events:read"]).unwrap();
    assert_eq!(set, PermissionSet::of(&[Permission::PiiRead, Permission::EventsRead]));
    let error = PermissionSet::from_names(["pii:read", "pii:write"]).unwrap_err();
    assert!(error.to_string().contains("`pii:write`"), "{error}");
}

#[test]
fn serde_is_a_list_of_names() {
    let set = PermissionSet::of(&[Permission::LedgerRead, Permission::EventsReadOwn]);
    let json = serde_json::to_string(&set).unwrap();
    assert_eq!(json, r#"["events:read:own","ledger:read"]"#);
    assert_eq!(serde_json::from_str::<PermissionSet>(&json).unwrap(), set);
    assert_eq!(serde_json::from_str::<PermissionSet>("[]").unwrap(), PermissionSet::EMPTY);

    let error = serde_json::from_str::<PermissionSet>(r#"["events:read","nope"]"#).unwrap_err();
    assert!(error.to_string().contains("unknown permission `nope`"), "{error}");
    assert!(serde_json::from_str::<PermissionSet>(r#""events:read""#).is_err());
    assert!(serde_json::from_str::<PermissionSet>("[1]").is_err());
    assert_eq!(serde_json::to_string(&Permission::PiiRead).unwrap(), r#""pii:read""#);
}

#[test]
fn read_scope_and_implication() {
    let own = PermissionSet::of(&[Permission::EventsReadOwn]);
    let all = PermissionSet::of(&[Permission::EventsRead]);
    let both = own.union(all);
    assert_eq!(read_scope(&own), ReadScope::OwnOnly);
    assert_eq!(read_scope(&all), ReadScope::All);
    assert_eq!(read_scope(&both), ReadScope::All, "events:read makes events:read:own redundant");
    assert_eq!(read_scope(&PermissionSet::of(&[Permission::EventsExport, Permission::PiiRead])), ReadScope::None);
    assert_eq!(read_scope(&PermissionSet::EMPTY), ReadScope::None);

    assert!(all.allows(Permission::EventsReadOwn), "reading everything includes one's own events");
    assert!(!all.contains(Permission::EventsReadOwn));
    assert!(!own.allows(Permission::EventsRead));
    assert!(!PermissionSet::of(&[Permission::ReportsManage]).allows(Permission::ReportsRead));
}
