//! Roles: named permission sets. Five are built in; tenants may define more in their configuration.

use std::collections::BTreeMap;

use super::permission::{Permission, PermissionSet};
use crate::error::{Error, Result};

use Permission::*;

/// The built-in roles, from most to least privileged within a tenant, plus the platform administrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinRole {
    /// Everything within the tenant.
    Owner,
    /// Everything within the tenant (owners may be distinguished by billing later).
    Admin,
    /// Builds on the platform: models, RAG, agents, and reading audit and usage.
    Developer,
    /// Uses the platform: models, RAG queries, agents.
    Member,
    /// Read-only: RAG queries and usage.
    Viewer,
    /// Cross-tenant administration. Granted only by the operator (JWT claim or a platform key),
    /// never by a tenant-defined role.
    PlatformAdmin,
    /// WattOS itself (embedded use and background work): everything within its tenant.
    System,
}

const TENANT_ALL: PermissionSet = PermissionSet::ALL.without(PermissionSet::of(&[PlatformAdmin]));

impl BuiltinRole {
    /// Every built-in role.
    pub const ALL: [BuiltinRole; 7] = [
        Self::Owner,
        Self::Admin,
        Self::Developer,
        Self::Member,
        Self::Viewer,
        Self::PlatformAdmin,
        Self::System,
    ];

    /// The role's wire name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Developer => "developer",
            Self::Member => "member",
            Self::Viewer => "viewer",
            Self::PlatformAdmin => "platform_admin",
            Self::System => "system",
        }
    }

    /// The role's permissions.
    pub const fn permissions(self) -> PermissionSet {
        match self {
            Self::Owner | Self::Admin | Self::System => TENANT_ALL,
            Self::Developer => PermissionSet::of(&[
                ChatInvoke,
                RagIngest,
                RagQuery,
                AgentsRun,
                AgentsResume,
                AuditRead,
                UsageRead,
            ]),
            Self::Member => PermissionSet::of(&[ChatInvoke, RagQuery, AgentsRun, AgentsResume]),
            Self::Viewer => PermissionSet::of(&[RagQuery, UsageRead]),
            Self::PlatformAdmin => PermissionSet::ALL,
        }
    }

    /// The built-in role called `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// Tenant-defined roles: name -> permissions. Names may not shadow built-in roles, and no custom
/// role may hold [`Permission::PlatformAdmin`].
///
/// ```
/// use wattos_core::tenancy::{CustomRoles, Permission, PermissionSet, effective_permissions};
/// let mut roles = CustomRoles::default();
/// roles.define("ingester", PermissionSet::of(&[Permission::RagIngest])).unwrap();
/// let perms = effective_permissions(&["viewer".to_owned(), "ingester".to_owned()], &roles);
/// assert!(perms.contains(Permission::RagIngest) && perms.contains(Permission::RagQuery));
/// assert!(roles.define("admin", PermissionSet::EMPTY).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CustomRoles(BTreeMap<String, PermissionSet>);

impl CustomRoles {
    /// Adds or replaces a role.
    ///
    /// # Errors
    /// `invalid_input` for a built-in name, a malformed name or a platform permission.
    pub fn define(&mut self, name: impl Into<String>, perms: PermissionSet) -> Result<()> {
        let name = name.into();
        validate_role(&name, perms)?;
        self.0.insert(name, perms);
        Ok(())
    }

    /// The permissions of role `name`, if defined.
    pub fn get(&self, name: &str) -> Option<PermissionSet> {
        self.0.get(name).copied()
    }

    /// Checks every role (after deserialising untrusted input).
    ///
    /// # Errors
    /// As [`CustomRoles::define`].
    pub fn validate(&self) -> Result<()> {
        self.0
            .iter()
            .try_for_each(|(name, perms)| validate_role(name, *perms))
    }

    /// Iterates over `(name, permissions)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, PermissionSet)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

fn validate_role(name: &str, perms: PermissionSet) -> Result<()> {
    if BuiltinRole::from_name(name).is_some() {
        return Err(Error::invalid_field(
            "roles",
            format!("`{name}` is a built-in role"),
        ));
    }
    let well_formed = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
    if !well_formed {
        return Err(Error::invalid_field(
            "roles",
            format!("role name `{name}` must be 1..=64 of a-z, 0-9, '_' or '-'"),
        ));
    }
    if perms.contains(PlatformAdmin) {
        return Err(Error::invalid_field(
            "roles",
            "a tenant role cannot grant platform:admin",
        ));
    }
    Ok(())
}

/// The union of the permissions of `roles`: built-in roles first, then the tenant's custom roles.
/// Unknown role names grant nothing.
pub fn effective_permissions(roles: &[String], custom: &CustomRoles) -> PermissionSet {
    roles.iter().fold(PermissionSet::EMPTY, |acc, r| {
        let perms = BuiltinRole::from_name(r)
            .map(BuiltinRole::permissions)
            .or_else(|| custom.get(r))
            .unwrap_or(PermissionSet::EMPTY);
        acc.union(perms)
    })
}
