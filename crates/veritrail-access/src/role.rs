//! Built-in roles, custom roles and the API-key scopes of before roles existed.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::permission::{Permission, PermissionSet};
use crate::printable;

/// Longest custom-role description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// Something wrong with a role, a permission name or an API-key scope. Messages start with the
/// field they are about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// The role document is not valid JSON of the expected shape (an unknown field, a wrong
    /// type, a missing `name` or `permissions`).
    #[error("invalid role: {detail}")]
    InvalidSpec {
        /// What the parser said, e.g. ``unknown field `perms` ``.
        detail: String,
    },
    /// The name does not match `^[a-z][a-z0-9_]{1,62}$`.
    #[error(
        "name: `{name}` is not a valid role name: use 2 to 63 lowercase letters, digits and underscores, \
         starting with a letter"
    )]
    InvalidName {
        /// The name given (truncated, control characters escaped).
        name: String,
    },
    /// The name is a built-in role's.
    #[error("name: `{name}` is a built-in role and cannot be redefined")]
    ReservedName {
        /// The built-in name.
        name: String,
    },
    /// The description is too long or holds control characters.
    #[error("description: {problem}")]
    InvalidDescription {
        /// What is wrong with it.
        problem: String,
    },
    /// The role grants nothing.
    #[error("permissions: a role must grant at least one permission")]
    NoPermissions,
    /// A permission name is not one of [`Permission::ALL`].
    #[error("{field}: unknown permission `{name}`")]
    UnknownPermission {
        /// Where it was, e.g. `permissions[2]`, or `permission`.
        field: String,
        /// The name given (truncated, control characters escaped).
        name: String,
    },
    /// A permission is listed twice.
    #[error("{field}: permission `{name}` is listed twice")]
    DuplicatePermission {
        /// Where the second one was, e.g. `permissions[3]`.
        field: String,
        /// The permission.
        name: &'static str,
    },
    /// Two custom roles share a name.
    #[error("name: custom role `{name}` is defined twice")]
    DuplicateRole {
        /// The name.
        name: String,
    },
    /// An API-key scope is neither a legacy scope nor a permission name.
    #[error("scopes: unknown api key scope `{scope}`: use admin, events:write, events:read or a permission name")]
    UnknownScope {
        /// The scope given (truncated, control characters escaped).
        scope: String,
    },
}

impl RoleError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RoleError::InvalidSpec { .. } => "role_invalid",
            RoleError::InvalidName { .. } => "role_name_invalid",
            RoleError::ReservedName { .. } => "role_name_reserved",
            RoleError::InvalidDescription { .. } => "role_description_invalid",
            RoleError::NoPermissions => "role_permissions_empty",
            RoleError::UnknownPermission { .. } => "permission_unknown",
            RoleError::DuplicatePermission { .. } => "role_permission_duplicate",
            RoleError::DuplicateRole { .. } => "role_duplicate",
            RoleError::UnknownScope { .. } => "scope_unknown",
        }
    }
}

/// A role every tenant has. Their permissions are fixed in code:
///
/// | Role | Permissions |
/// |---|---|
/// | `super_admin` | all of [`Permission::ALL`] |
/// | `compliance_officer` | `events:read`, `events:export`, `pii:read`, `ledger:read`, `reports:read`, `reports:manage`, `rules:read`, `alerts:read` |
/// | `auditor` | `events:read`, `events:export`, `ledger:read`, `reports:read` |
/// | `standard_user` | `events:read:own` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BuiltinRole {
    /// `super_admin`: every permission.
    SuperAdmin,
    /// `compliance_officer`: reads everything including personal data, exports, runs reports.
    ComplianceOfficer,
    /// `auditor`: reads and exports logs, verifies the ledger, reads reports.
    Auditor,
    /// `standard_user`: reads only the events the user performed.
    StandardUser,
}

impl BuiltinRole {
    /// Every built-in role.
    pub const ALL: [BuiltinRole; 4] =
        [BuiltinRole::SuperAdmin, BuiltinRole::ComplianceOfficer, BuiltinRole::Auditor, BuiltinRole::StandardUser];

    /// The stable name, e.g. `compliance_officer`.
    pub const fn name(self) -> &'static str {
        match self {
            BuiltinRole::SuperAdmin => "super_admin",
            BuiltinRole::ComplianceOfficer => "compliance_officer",
            BuiltinRole::Auditor => "auditor",
            BuiltinRole::StandardUser => "standard_user",
        }
    }

    /// The built-in role named `name`.
    pub fn parse(name: &str) -> Option<BuiltinRole> {
        BuiltinRole::ALL.into_iter().find(|role| role.name() == name)
    }

    /// What the role grants.
    pub const fn permissions(self) -> PermissionSet {
        use Permission::*;
        match self {
            BuiltinRole::SuperAdmin => PermissionSet::ALL,
            BuiltinRole::ComplianceOfficer => PermissionSet::of(&[
                EventsRead,
                EventsExport,
                PiiRead,
                LedgerRead,
                ReportsRead,
                ReportsManage,
                RulesRead,
                AlertsRead,
            ]),
            BuiltinRole::Auditor => PermissionSet::of(&[EventsRead, EventsExport, LedgerRead, ReportsRead]),
            BuiltinRole::StandardUser => PermissionSet::of(&[EventsReadOwn]),
        }
    }

    /// One line for people choosing a role.
    pub const fn description(self) -> &'static str {
        match self {
            BuiltinRole::SuperAdmin => "everything, including users, roles, keys, streams and retention",
            BuiltinRole::ComplianceOfficer => {
                "reads and exports all events including personal data, verifies the ledger, manages reports, \
                 reads rules and alerts"
            }
            BuiltinRole::Auditor => {
                "reads and exports events (personal data masked), verifies the ledger, reads reports"
            }
            BuiltinRole::StandardUser => "reads only the events the user performed",
        }
    }
}

impl fmt::Display for BuiltinRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A custom role as submitted (an API body or a config file), before [`RoleSpec::validate`].
/// Unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// `^[a-z][a-z0-9_]{1,62}$`, not a built-in role's name.
    pub name: String,
    /// Optional, at most [`MAX_DESCRIPTION_CHARS`] characters, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Permission wire names, at least one, each once.
    pub permissions: Vec<String>,
}

impl RoleSpec {
    /// Parses and validates a JSON role document.
    pub fn from_json(json: &str) -> Result<CustomRole, RoleError> {
        let spec: RoleSpec =
            serde_json::from_str(json).map_err(|e| RoleError::InvalidSpec { detail: crate::json_error_detail(&e) })?;
        spec.validate()
    }

    /// Checks every field; the first problem found is returned, naming its field.
    pub fn validate(&self) -> Result<CustomRole, RoleError> {
        validate_custom_role_name(&self.name)?;
        if let Some(description) = &self.description {
            let chars = description.chars().count();
            if chars > MAX_DESCRIPTION_CHARS {
                return Err(RoleError::InvalidDescription {
                    problem: format!("{chars} characters, more than the {MAX_DESCRIPTION_CHARS} allowed"),
                });
            }
            if description.chars().any(char::is_control) {
                return Err(RoleError::InvalidDescription { problem: "must not contain control characters".into() });
            }
        }
        if self.permissions.is_empty() {
            return Err(RoleError::NoPermissions);
        }
        let mut permissions = PermissionSet::EMPTY;
        for (index, name) in self.permissions.iter().enumerate() {
            let field = format!("permissions[{index}]");
            let Some(permission) = Permission::parse(name) else {
                return Err(RoleError::UnknownPermission { field, name: printable(name, 64) });
            };
            if permissions.contains(permission) {
                return Err(RoleError::DuplicatePermission { field, name: permission.name() });
            }
            permissions.insert(permission);
        }
        let description = self.description.clone().filter(|d| !d.is_empty());
        Ok(CustomRole { name: self.name.clone(), description, permissions })
    }
}

/// Checks that `name` may name a custom role: `^[a-z][a-z0-9_]{1,62}$` and not built in.
pub fn validate_custom_role_name(name: &str) -> Result<(), RoleError> {
    if !is_role_name(name) {
        return Err(RoleError::InvalidName { name: printable(name, 64) });
    }
    if BuiltinRole::parse(name).is_some() {
        return Err(RoleError::ReservedName { name: name.to_string() });
    }
    Ok(())
}

/// Whether `name` has the syntax of a role name, `^[a-z][a-z0-9_]{1,62}$` (built-in names have
/// it too).
pub fn is_role_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (2..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes[1..].iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

/// A validated custom role: a name that is not built in, an optional description, and a
/// non-empty permission set. Made by [`RoleSpec::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomRole {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    permissions: PermissionSet,
}

impl CustomRole {
    /// The role's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The description, if one was given.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// What the role grants.
    pub fn permissions(&self) -> PermissionSet {
        self.permissions
    }

    /// Back to the submitted shape (permissions in [`Permission::ALL`] order), e.g. to store it.
    pub fn to_spec(&self) -> RoleSpec {
        RoleSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            permissions: self.permissions.iter().map(|p| p.name().to_string()).collect(),
        }
    }
}

/// The roles a tenant can assign: the built-in ones plus its custom roles.
#[derive(Debug, Clone, Default)]
pub struct RoleCatalog {
    custom: BTreeMap<String, CustomRole>,
}

impl RoleCatalog {
    /// The built-in roles and `custom`; two custom roles with one name are an error.
    pub fn new(custom: impl IntoIterator<Item = CustomRole>) -> Result<RoleCatalog, RoleError> {
        let mut catalog = RoleCatalog::default();
        for role in custom {
            if catalog.custom.contains_key(&role.name) {
                return Err(RoleError::DuplicateRole { name: role.name });
            }
            catalog.custom.insert(role.name.clone(), role);
        }
        Ok(catalog)
    }

    /// What the role named `name` grants, built in or custom; `None` for an unknown role.
    pub fn permissions(&self, name: &str) -> Option<PermissionSet> {
        match BuiltinRole::parse(name) {
            Some(role) => Some(role.permissions()),
            None => self.custom.get(name).map(CustomRole::permissions),
        }
    }

    /// Whether a role named `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.permissions(name).is_some()
    }

    /// The union of what the roles `names` grant. Unknown names grant nothing (a role deleted
    /// while still assigned, or an SSO mapping to a role that does not exist yet).
    pub fn permissions_of<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> PermissionSet {
        let mut set = PermissionSet::EMPTY;
        for name in names {
            set = set.union(self.permissions(name).unwrap_or(PermissionSet::EMPTY));
        }
        set
    }

    /// The custom roles, by name.
    pub fn custom_roles(&self) -> impl Iterator<Item = &CustomRole> {
        self.custom.values()
    }
}

/// The scopes API keys had before roles existed. Stored keys keep them, and they keep meaning
/// what they meant then.
pub const LEGACY_SCOPES: [&str; 3] = ["events:write", "events:read", "admin"];

/// What the legacy `events:read` scope allowed: query, read and export events, read alerts and
/// rules, and read the ledger's checkpoints and proofs. Not `pii:read`: personal data stays
/// masked for old read keys.
pub const LEGACY_EVENTS_READ: PermissionSet = PermissionSet::of(&[
    Permission::EventsRead,
    Permission::EventsExport,
    Permission::LedgerRead,
    Permission::AlertsRead,
    Permission::RulesRead,
]);

/// What one API-key scope grants. The legacy scopes come first: `admin` is every permission,
/// `events:write` is `events:write`, and `events:read` is [`LEGACY_EVENTS_READ`] (so a new key
/// cannot be limited to the bare `events:read` permission; give it `events:read:own` or use a
/// role). Any other permission wire name grants that permission.
pub fn scope_permissions(scope: &str) -> Result<PermissionSet, RoleError> {
    match scope {
        "admin" => Ok(PermissionSet::ALL),
        "events:write" => Ok(PermissionSet::of(&[Permission::EventsWrite])),
        "events:read" => Ok(LEGACY_EVENTS_READ),
        _ => match Permission::parse(scope) {
            Some(permission) => Ok(permission.into()),
            None => Err(RoleError::UnknownScope { scope: printable(scope, 64) }),
        },
    }
}

/// The union of what `scopes` grant, ignoring unknown ones (a stored key never gains anything
/// from a scope this version does not know). Validate new keys' scopes with
/// [`scope_permissions`].
pub fn scopes_permissions<'a>(scopes: impl IntoIterator<Item = &'a str>) -> PermissionSet {
    let mut set = PermissionSet::EMPTY;
    for scope in scopes {
        if let Ok(granted) = scope_permissions(scope) {
            set = set.union(granted);
        }
    }
    set
}

#[cfg(test)]
mod tests;
