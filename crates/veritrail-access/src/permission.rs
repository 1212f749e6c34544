//! Permissions, the sets a principal holds, and what they let it read.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::role::RoleError;

/// One thing a principal may do. The wire name (`events:read`, ...) is stable: it is stored in
/// roles, API-key scopes and audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// `events:write`: ingest events.
    EventsWrite,
    /// `events:read`: query and read every event of the tenant.
    EventsRead,
    /// `events:read:own`: read only the events whose actor is the principal itself.
    EventsReadOwn,
    /// `events:export`: export events (CSV, JSONL).
    EventsExport,
    /// `pii:read`: see decrypted personal data in events instead of masked values.
    PiiRead,
    /// `reports:read`: read and download reports.
    ReportsRead,
    /// `reports:manage`: create, schedule and delete reports.
    ReportsManage,
    /// `rules:read`: read detection rules.
    RulesRead,
    /// `rules:manage`: create, change and delete detection rules.
    RulesManage,
    /// `alerts:read`: read alerts.
    AlertsRead,
    /// `alerts:manage`: acknowledge, resolve and route alerts.
    AlertsManage,
    /// `streams:manage`: configure outbound streams (webhooks, syslog, SIEM sinks).
    StreamsManage,
    /// `retention:manage`: change retention and archive policies.
    RetentionManage,
    /// `subjects:manage`: data-subject requests (access, erasure by crypto-shredding).
    SubjectsManage,
    /// `users:manage`: create users, assign roles, define custom roles.
    UsersManage,
    /// `keys:manage`: create and revoke API keys.
    KeysManage,
    /// `ledger:read`: read checkpoints and inclusion/consistency proofs.
    LedgerRead,
}

impl Permission {
    /// Every permission, in wire order (the order [`PermissionSet::iter`] yields).
    pub const ALL: [Permission; 17] = [
        Permission::EventsWrite,
        Permission::EventsRead,
        Permission::EventsReadOwn,
        Permission::EventsExport,
        Permission::PiiRead,
        Permission::ReportsRead,
        Permission::ReportsManage,
        Permission::RulesRead,
        Permission::RulesManage,
        Permission::AlertsRead,
        Permission::AlertsManage,
        Permission::StreamsManage,
        Permission::RetentionManage,
        Permission::SubjectsManage,
        Permission::UsersManage,
        Permission::KeysManage,
        Permission::LedgerRead,
    ];

    /// The stable wire name, e.g. `events:read:own`.
    pub const fn name(self) -> &'static str {
        match self {
            Permission::EventsWrite => "events:write",
            Permission::EventsRead => "events:read",
            Permission::EventsReadOwn => "events:read:own",
            Permission::EventsExport => "events:export",
            Permission::PiiRead => "pii:read",
            Permission::ReportsRead => "reports:read",
            Permission::ReportsManage => "reports:manage",
            Permission::RulesRead => "rules:read",
            Permission::RulesManage => "rules:manage",
            Permission::AlertsRead => "alerts:read",
            Permission::AlertsManage => "alerts:manage",
            Permission::StreamsManage => "streams:manage",
            Permission::RetentionManage => "retention:manage",
            Permission::SubjectsManage => "subjects:manage",
            Permission::UsersManage => "users:manage",
            Permission::KeysManage => "keys:manage",
            Permission::LedgerRead => "ledger:read",
        }
    }

    /// The permission with wire name `name` (exact, case-sensitive).
    pub fn parse(name: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|permission| permission.name() == name)
    }

    /// The bit of this permission in a [`PermissionSet`].
    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Permission {
    type Err = RoleError;

    fn from_str(name: &str) -> Result<Permission, RoleError> {
        Permission::parse(name).ok_or_else(|| RoleError::UnknownPermission {
            field: "permission".into(),
            name: crate::printable(name, 64),
        })
    }
}

impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Permission, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        name.parse().map_err(de::Error::custom)
    }
}

/// A set of permissions: one bit each, so it is `Copy` and checks are a mask. Serialized as a
/// list of wire names in [`Permission::ALL`] order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet(u32);

impl PermissionSet {
    /// No permission.
    pub const EMPTY: PermissionSet = PermissionSet(0);
    /// Every permission.
    pub const ALL: PermissionSet = PermissionSet::of(&Permission::ALL);

    /// The set of `permissions` (usable in `const` context).
    pub const fn of(permissions: &[Permission]) -> PermissionSet {
        let mut bits = 0;
        let mut i = 0;
        while i < permissions.len() {
            bits |= permissions[i].bit();
            i += 1;
        }
        PermissionSet(bits)
    }

    /// Whether `permission` is literally in the set. Use [`PermissionSet::allows`] for access
    /// checks: it also applies implications.
    pub const fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    /// Whether the set grants `permission`, directly or by implication: `events:read` grants
    /// `events:read:own` (reading everything includes reading one's own events). No other
    /// permission implies another; a `manage` permission does not imply the `read` one.
    pub const fn allows(self, permission: Permission) -> bool {
        match permission {
            Permission::EventsReadOwn => {
                self.contains(Permission::EventsReadOwn) || self.contains(Permission::EventsRead)
            }
            _ => self.contains(permission),
        }
    }

    /// Whether every permission of `other` is in the set.
    pub const fn contains_all(self, other: PermissionSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// The set with `permission` added.
    #[must_use]
    pub const fn with(self, permission: Permission) -> PermissionSet {
        PermissionSet(self.0 | permission.bit())
    }

    /// The set with `permission` removed.
    #[must_use]
    pub const fn without(self, permission: Permission) -> PermissionSet {
        PermissionSet(self.0 & !permission.bit())
    }

    /// Adds `permission`.
    pub fn insert(&mut self, permission: Permission) {
        self.0 |= permission.bit();
    }

    /// Removes `permission`.
    pub fn remove(&mut self, permission: Permission) {
        self.0 &= !permission.bit();
    }

    /// Permissions in either set.
    #[must_use]
    pub const fn union(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 | other.0)
    }

    /// Permissions in both sets.
    #[must_use]
    pub const fn intersection(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many permissions the set holds.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The permissions, in [`Permission::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.into_iter().filter(move |permission| self.contains(*permission))
    }

    /// The wire names, in [`Permission::ALL`] order.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Permission::name).collect()
    }

    /// The set of the permissions named; fails on the first unknown name.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<PermissionSet, RoleError> {
        let mut set = PermissionSet::EMPTY;
        for name in names {
            set.insert(name.parse()?);
        }
        Ok(set)
    }

    /// Who may read which events with this set. See [`read_scope`].
    pub const fn read_scope(self) -> ReadScope {
        if self.contains(Permission::EventsRead) {
            ReadScope::All
        } else if self.contains(Permission::EventsReadOwn) {
            ReadScope::OwnOnly
        } else {
            ReadScope::None
        }
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(Permission::name)).finish()
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> PermissionSet {
        let mut set = PermissionSet::EMPTY;
        for permission in iter {
            set.insert(permission);
        }
        set
    }
}

impl Extend<Permission> for PermissionSet {
    fn extend<I: IntoIterator<Item = Permission>>(&mut self, iter: I) {
        for permission in iter {
            self.insert(permission);
        }
    }
}

impl From<Permission> for PermissionSet {
    fn from(permission: Permission) -> PermissionSet {
        PermissionSet::EMPTY.with(permission)
    }
}

impl Serialize for PermissionSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(Permission::name))
    }
}

impl<'de> Deserialize<'de> for PermissionSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PermissionSet, D::Error> {
        struct SetVisitor;

        impl<'de> Visitor<'de> for SetVisitor {
            type Value = PermissionSet;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of permission names such as \"events:read\"")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PermissionSet, A::Error> {
                let mut set = PermissionSet::EMPTY;
                while let Some(permission) = seq.next_element::<Permission>()? {
                    set.insert(permission);
                }
                Ok(set)
            }
        }

        deserializer.deserialize_seq(SetVisitor)
    }
}

/// Which events a principal may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadScope {
    /// Every event of the tenant (`events:read`).
    All,
    /// Only events whose actor id is the principal's own (`events:read:own` without
    /// `events:read`): the caller must add an `actor.id = <principal>` filter to every query,
    /// export and single-event read.
    OwnOnly,
    /// No event at all.
    None,
}

/// Which events a holder of `permissions` may read: [`ReadScope::All`] with `events:read`
/// (which makes `events:read:own` redundant), [`ReadScope::OwnOnly`] with only
/// `events:read:own`, [`ReadScope::None`] otherwise.
pub const fn read_scope(permissions: &PermissionSet) -> ReadScope {
    permissions.read_scope()
}

#[cfg(test)]
mod tests;
