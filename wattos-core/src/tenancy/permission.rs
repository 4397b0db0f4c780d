//! Permissions: the atoms of authorization, and a compact set of them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// One thing a principal may do. Rendered as `area:verb` (for example `chat:invoke`).
///
/// ```
/// use wattos_core::tenancy::Permission;
/// let p: Permission = "rag:query".parse().unwrap();
/// assert_eq!(p, Permission::RagQuery);
/// assert_eq!(p.as_str(), "rag:query");
/// assert!("rag:everything".parse::<Permission>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Permission {
    /// Call chat / completion models.
    ChatInvoke,
    /// Add or delete documents in the tenant's RAG collections.
    RagIngest,
    /// Query the tenant's RAG collections.
    RagQuery,
    /// Start agent runs.
    AgentsRun,
    /// Resume paused agent runs (human approval).
    AgentsResume,
    /// Create, list and revoke the tenant's API keys.
    KeysManage,
    /// Read the tenant's audit log.
    AuditRead,
    /// Read and change the tenant's configuration.
    TenantConfigure,
    /// Read the tenant's usage reports.
    UsageRead,
    /// Cross-tenant administration (create tenants, act on any tenant). Never granted by a tenant role.
    PlatformAdmin,
}

impl Permission {
    /// Every permission, in bit order.
    pub const ALL: [Permission; 10] = [
        Self::ChatInvoke,
        Self::RagIngest,
        Self::RagQuery,
        Self::AgentsRun,
        Self::AgentsResume,
        Self::KeysManage,
        Self::AuditRead,
        Self::TenantConfigure,
        Self::UsageRead,
        Self::PlatformAdmin,
    ];

    /// The stable wire name (`chat:invoke`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ChatInvoke => "chat:invoke",
            Self::RagIngest => "rag:ingest",
            Self::RagQuery => "rag:query",
            Self::AgentsRun => "agents:run",
            Self::AgentsResume => "agents:resume",
            Self::KeysManage => "keys:manage",
            Self::AuditRead => "audit:read",
            Self::TenantConfigure => "tenant:configure",
            Self::UsageRead => "usage:read",
            Self::PlatformAdmin => "platform:admin",
        }
    }

    const fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| Error::invalid_field("permission", format!("unknown permission `{s}`")))
    }
}

impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A set of permissions, stored as a bit mask: `contains` is one AND.
///
/// ```
/// use wattos_core::tenancy::{Permission, PermissionSet};
/// let set = PermissionSet::from_iter([Permission::ChatInvoke, Permission::RagQuery]);
/// assert!(set.contains(Permission::RagQuery));
/// assert!(!set.contains(Permission::KeysManage));
/// assert!(set.is_subset_of(PermissionSet::ALL));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet(u32);

impl PermissionSet {
    /// No permissions.
    pub const EMPTY: PermissionSet = PermissionSet(0);
    /// Every permission, platform administration included.
    pub const ALL: PermissionSet = PermissionSet((1 << Permission::ALL.len()) - 1);

    /// A set from a slice (usable in constants).
    pub const fn of(perms: &[Permission]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < perms.len() {
            bits |= perms[i].bit();
            i += 1;
        }
        Self(bits)
    }

    /// Whether `p` is in the set.
    pub const fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// Adds `p`.
    pub fn insert(&mut self, p: Permission) {
        self.0 |= p.bit();
    }

    /// Set union.
    #[must_use]
    pub const fn union(self, other: PermissionSet) -> Self {
        Self(self.0 | other.0)
    }

    /// Set difference.
    #[must_use]
    pub const fn without(self, other: PermissionSet) -> Self {
        Self(self.0 & !other.0)
    }

    /// Whether every permission of `self` is in `other`.
    pub const fn is_subset_of(self, other: PermissionSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The permissions in the set, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut set = Self::EMPTY;
        for p in iter {
            set.insert(p);
        }
        set
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Permission::as_str))
            .finish()
    }
}

impl Serialize for PermissionSet {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for PermissionSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Vec::<Permission>::deserialize(d)?.into_iter().collect())
    }
}
