//! Multi-tenancy and security as traits: who is calling ([`Authenticator`]), what they may do
//! ([`Permission`], [`BuiltinRole`], [`Authorizer`]), the stores behind them ([`ApiKeyStore`],
//! [`RevocationStore`], [`TenantStore`]) and the tamper-evident [`AuditLog`].
//!
//! Backends (JWT, hashed API keys, SQLite/Postgres/Redis stores, the axum extractor) live in
//! `wattos-server`; implement these traits to plug in your own.

mod audit;
mod authn;
mod authz;
mod config_cache;
mod keys;
mod permission;
mod role;
mod tenant;

pub use audit::{
    AuditEvent, AuditFilter, AuditLog, AuditPage, AuditRecord, AuditSink, ChainReport, Outcome,
    PageRequest, actions,
};
pub use authn::{Authenticator, Credentials, Identity};
pub use authz::{Authorizer, BuiltinRoles, require_in};
pub use config_cache::{TenantConfigCache, TenantStatus};
pub use keys::{ApiKeyRecord, ApiKeyStore, RevocationStore};
pub use permission::{Permission, PermissionSet};
pub use role::{BuiltinRole, CustomRoles, effective_permissions};
pub use tenant::{
    AgentSettings, Budgets, RagSettings, RateLimits, Retention, Tenant, TenantConfig, TenantStore,
    limits,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_hierarchy_is_monotonic() {
        let order = [
            BuiltinRole::Viewer,
            BuiltinRole::Developer,
            BuiltinRole::Admin,
            BuiltinRole::PlatformAdmin,
        ];
        for w in order.windows(2) {
            assert!(w[0].permissions().is_subset_of(w[1].permissions()));
        }
        assert!(
            BuiltinRole::Member
                .permissions()
                .is_subset_of(BuiltinRole::Developer.permissions())
        );
        assert!(
            !BuiltinRole::Owner
                .permissions()
                .contains(Permission::PlatformAdmin)
        );
    }

    #[test]
    fn permission_names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
        }
        let set = PermissionSet::of(&[Permission::AuditRead, Permission::UsageRead]);
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#"["audit:read","usage:read"]"#);
        assert_eq!(serde_json::from_str::<PermissionSet>(&json).unwrap(), set);
    }

    #[test]
    fn custom_roles_cannot_escalate() {
        let mut roles = CustomRoles::default();
        assert!(roles.define("ops", PermissionSet::ALL).is_err());
        assert!(roles.define("Bad Name", PermissionSet::EMPTY).is_err());
        roles
            .define("ops", PermissionSet::of(&[Permission::UsageRead]))
            .unwrap();
        let perms = effective_permissions(&["ops".into(), "nope".into()], &roles);
        assert_eq!(perms, PermissionSet::of(&[Permission::UsageRead]));
    }

    #[test]
    fn canonical_bytes_separate_fields() {
        let ev = |actor: &str, action: &str| AuditEvent {
            tenant: crate::TenantId::new("t").unwrap(),
            actor: actor.into(),
            action: action.into(),
            target: String::new(),
            outcome: Outcome::Success,
            request_id: "r".into(),
            time_ms: 1,
            detail: None,
        };
        assert_ne!(
            ev("ab", "c").canonical_bytes(),
            ev("a", "bc").canonical_bytes()
        );
    }

    #[test]
    fn config_validation_names_the_field() {
        let mut cfg = TenantConfig::default();
        assert!(cfg.validate().is_ok());
        cfg.rate_limits.per_key_rpm = Some(0);
        assert_eq!(
            cfg.validate().unwrap_err().field(),
            Some("rate_limits.per_key_rpm")
        );
    }
}
