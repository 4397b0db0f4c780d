//! The tenant registry and per-tenant configuration.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::role::CustomRoles;
use crate::context::TenantId;
use crate::error::{Error, Result};

/// A registered tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// The tenant id.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// Disabled tenants cannot authenticate.
    pub disabled: bool,
    /// Creation time (unix ms).
    pub created_at_ms: i64,
}

/// Request rate limits, each a sustained rate per minute plus a burst. `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Requests per minute per API key.
    pub per_key_rpm: Option<u32>,
    /// Requests per minute per user.
    pub per_user_rpm: Option<u32>,
    /// Requests per minute for the whole tenant.
    pub per_tenant_rpm: Option<u32>,
    /// Extra requests allowed at once above the steady rate (0: none).
    pub burst: u32,
    /// Requests of the tenant in flight at once.
    pub max_concurrent: Option<u32>,
}

/// Spending limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budgets {
    /// Monthly spend limit in USD.
    pub monthly_usd: Option<f64>,
    /// Monthly token limit (input plus output, all models together; `None`: unlimited).
    pub monthly_tokens: Option<u64>,
}

/// RAG settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RagSettings {
    /// Results returned when a query does not say.
    pub default_top_k: u32,
    /// Maximum documents the tenant may store (`None`: unlimited).
    pub max_documents: Option<u64>,
}

impl Default for RagSettings {
    fn default() -> Self {
        Self {
            default_top_k: 5,
            max_documents: None,
        }
    }
}

/// Agent settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSettings {
    /// Maximum steps per run.
    pub max_steps: u32,
    /// Tools that pause the run for human approval.
    pub approval_required_tools: Vec<String>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            max_steps: 25,
            approval_required_tools: Vec::new(),
        }
    }
}

/// Data retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Days audit records are kept (minimum 30).
    pub audit_days: u32,
    /// Days conversation and run data are kept (`None`: forever).
    pub data_days: Option<u32>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            audit_days: 365,
            data_days: None,
        }
    }
}

/// Everything configurable per tenant.
///
/// ```
/// use wattos_core::tenancy::TenantConfig;
/// let mut cfg = TenantConfig::default();
/// cfg.allowed_models = vec!["gpt-4o-mini".into()];
/// cfg.default_model = Some("gpt-4o".into());
/// assert!(cfg.validate().is_err()); // the default must be allowed
/// cfg.default_model = Some("gpt-4o-mini".into());
/// assert!(cfg.validate().is_ok());
/// assert!(cfg.model_allowed("gpt-4o-mini") && !cfg.model_allowed("gpt-4o"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantConfig {
    /// Models the tenant may call; empty means every model the router offers.
    pub allowed_models: Vec<String>,
    /// Model used when a request names none.
    pub default_model: Option<String>,
    /// Request rate limits.
    pub rate_limits: RateLimits,
    /// Spending limits.
    pub budgets: Budgets,
    /// RAG settings.
    pub rag: RagSettings,
    /// Agent settings.
    pub agents: AgentSettings,
    /// Retention.
    pub retention: Retention,
    /// Tenant-defined roles.
    pub roles: CustomRoles,
}

impl TenantConfig {
    /// Whether `model` may be called.
    pub fn model_allowed(&self, model: &str) -> bool {
        self.allowed_models.is_empty() || self.allowed_models.iter().any(|m| m == model)
    }

    /// Checks the whole configuration.
    ///
    /// # Errors
    /// `invalid_input` naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        check_names("allowed_models", &self.allowed_models)?;
        if let Some(d) = &self.default_model {
            check_name("default_model", d)?;
            if !self.model_allowed(d) {
                return Err(Error::invalid_field(
                    "default_model",
                    "the default model must be one of allowed_models",
                ));
            }
        }
        let rl = &self.rate_limits;
        for (field, v, max) in [
            ("rate_limits.per_key_rpm", rl.per_key_rpm, limits::MAX_RPM),
            ("rate_limits.per_user_rpm", rl.per_user_rpm, limits::MAX_RPM),
            (
                "rate_limits.per_tenant_rpm",
                rl.per_tenant_rpm,
                limits::MAX_RPM,
            ),
            (
                "rate_limits.max_concurrent",
                rl.max_concurrent,
                limits::MAX_CONCURRENT,
            ),
        ] {
            if let Some(v) = v
                && !(1..=max).contains(&v)
            {
                return Err(Error::invalid_field(
                    field,
                    format!("must be 1..={max} (omit for no limit)"),
                ));
            }
        }
        if rl.burst > limits::MAX_BURST {
            return Err(Error::invalid_field(
                "rate_limits.burst",
                format!("must be 0..={}", limits::MAX_BURST),
            ));
        }
        if let Some(usd) = self.budgets.monthly_usd
            && !(usd.is_finite() && (0.0..=limits::MAX_BUDGET_USD).contains(&usd))
        {
            return Err(Error::invalid_field(
                "budgets.monthly_usd",
                format!("must be a number in 0..={:e}", limits::MAX_BUDGET_USD),
            ));
        }
        if let Some(tokens) = self.budgets.monthly_tokens
            && tokens > limits::MAX_MONTHLY_TOKENS
        {
            return Err(Error::invalid_field(
                "budgets.monthly_tokens",
                format!("must be 0..={}", limits::MAX_MONTHLY_TOKENS),
            ));
        }
        if !(1..=1000).contains(&self.rag.default_top_k) {
            return Err(Error::invalid_field(
                "rag.default_top_k",
                "must be 1..=1000",
            ));
        }
        if !(1..=10_000).contains(&self.agents.max_steps) {
            return Err(Error::invalid_field(
                "agents.max_steps",
                "must be 1..=10000",
            ));
        }
        check_names(
            "agents.approval_required_tools",
            &self.agents.approval_required_tools,
        )?;
        if let Some(days) = self.retention.data_days
            && !(1..=limits::MAX_RETENTION_DAYS).contains(&days)
        {
            return Err(Error::invalid_field(
                "retention.data_days",
                format!(
                    "must be 1..={} (leave it out to keep conversations and runs)",
                    limits::MAX_RETENTION_DAYS
                ),
            ));
        }
        if !(30..=limits::MAX_RETENTION_DAYS).contains(&self.retention.audit_days) {
            return Err(Error::invalid_field(
                "retention.audit_days",
                format!("must be 30..={}", limits::MAX_RETENTION_DAYS),
            ));
        }
        self.roles.validate()
    }
}

/// The ranges [`TenantConfig::validate`] enforces. Every number a tenant admin can set has one, so
/// no setting can drive the arithmetic that uses it (rate intervals, retention cut-offs) out of range.
pub mod limits {
    /// Largest requests-per-minute rate (about 16,700 per second).
    pub const MAX_RPM: u32 = 1_000_000;
    /// Largest burst above the steady rate.
    pub const MAX_BURST: u32 = 1_000_000;
    /// Largest per-tenant concurrency limit.
    pub const MAX_CONCURRENT: u32 = 100_000;
    /// Largest monthly budget in USD.
    pub const MAX_BUDGET_USD: f64 = 1e12;
    /// Largest monthly token budget (10^15 tokens; fits the budget counters' `i64`).
    pub const MAX_MONTHLY_TOKENS: u64 = 1_000_000_000_000_000;
    /// Longest retention in days (100 years).
    pub const MAX_RETENTION_DAYS: u32 = 36_500;
    /// Most entries in a list of names (allowed models, approval tools).
    pub const MAX_NAMES: usize = 1_000;
    /// Longest name (model, tool) in bytes.
    pub const MAX_NAME_BYTES: usize = 256;
}

fn check_name(field: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid_field(field, "empty name"));
    }
    if name.len() > limits::MAX_NAME_BYTES {
        return Err(Error::invalid_field(
            field,
            format!("names are at most {} bytes", limits::MAX_NAME_BYTES),
        ));
    }
    Ok(())
}

fn check_names(field: &str, names: &[String]) -> Result<()> {
    if names.len() > limits::MAX_NAMES {
        return Err(Error::invalid_field(
            field,
            format!("at most {} entries", limits::MAX_NAMES),
        ));
    }
    names.iter().try_for_each(|n| check_name(field, n))
}

/// The tenant registry and per-tenant configuration.
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Registers a tenant with the default configuration.
    ///
    /// # Errors
    /// `conflict` when the id exists.
    async fn create_tenant(&self, tenant: &Tenant) -> Result<()>;
    /// The tenant `id`, if registered.
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>>;
    /// All tenants, by id, at most `limit` after `after` (exclusive).
    async fn list_tenants(&self, after: Option<&TenantId>, limit: u32) -> Result<Vec<Tenant>>;
    /// Enables or disables a tenant.
    ///
    /// # Errors
    /// `not_found` when missing.
    async fn set_disabled(&self, id: &TenantId, disabled: bool) -> Result<()>;
    /// The tenant's configuration.
    ///
    /// # Errors
    /// `not_found` when the tenant is missing.
    async fn get_config(&self, id: &TenantId) -> Result<TenantConfig>;
    /// Replaces the tenant's configuration (validated by the caller and again here).
    ///
    /// # Errors
    /// `not_found` when the tenant is missing; `invalid_input` when invalid.
    async fn put_config(&self, id: &TenantId, config: &TenantConfig) -> Result<()>;
}

#[async_trait]
impl<T: TenantStore + ?Sized> TenantStore for Arc<T> {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<()> {
        (**self).create_tenant(tenant).await
    }
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        (**self).get_tenant(id).await
    }
    async fn list_tenants(&self, after: Option<&TenantId>, limit: u32) -> Result<Vec<Tenant>> {
        (**self).list_tenants(after, limit).await
    }
    async fn set_disabled(&self, id: &TenantId, disabled: bool) -> Result<()> {
        (**self).set_disabled(id, disabled).await
    }
    async fn get_config(&self, id: &TenantId) -> Result<TenantConfig> {
        (**self).get_config(id).await
    }
    async fn put_config(&self, id: &TenantId, config: &TenantConfig) -> Result<()> {
        (**self).put_config(id, config).await
    }
}

#[cfg(test)]
fn _object_safe(_: Arc<dyn TenantStore>) {}

#[cfg(test)]
mod props {
    //! Whatever JSON a tenant admin sends as configuration, parsing and validation answer with a
    //! value or a typed `invalid_input` error naming a field, never a panic, and every
    //! configuration that validates keeps each number inside the documented range (so the
    //! arithmetic that uses it cannot overflow or divide by zero).

    use proptest::prelude::*;

    use super::{TenantConfig, limits};
    use crate::ErrorKind;
    use crate::test_utils::json::tenant_config;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn any_config_json_parses_and_validates_without_panicking(v in tenant_config()) {
            let Ok(cfg) = serde_json::from_value::<TenantConfig>(v) else {
                return Ok(());
            };
            match cfg.validate() {
                Err(e) => {
                    prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
                    prop_assert!(e.field().is_some(), "{e}");
                }
                Ok(()) => {
                    let rl = &cfg.rate_limits;
                    let rates = [rl.per_key_rpm, rl.per_user_rpm, rl.per_tenant_rpm];
                    for v in rates.into_iter().flatten() {
                        prop_assert!((1..=limits::MAX_RPM).contains(&v));
                        // The GCRA emission interval in µs is never zero.
                        prop_assert!(60_000_000 / u64::from(v) >= 1);
                    }
                    prop_assert!(rl.burst <= limits::MAX_BURST);
                    if let Some(c) = rl.max_concurrent {
                        prop_assert!((1..=limits::MAX_CONCURRENT).contains(&c));
                    }
                    if let Some(usd) = cfg.budgets.monthly_usd {
                        prop_assert!(usd.is_finite() && (0.0..=limits::MAX_BUDGET_USD).contains(&usd));
                    }
                    prop_assert!(cfg.retention.audit_days <= limits::MAX_RETENTION_DAYS);
                    // A retention cut-off in ms never overflows.
                    prop_assert!(i64::from(cfg.retention.audit_days).checked_mul(86_400_000).is_some());
                    prop_assert!(
                        cfg.allowed_models.iter().all(|m| m.len() <= limits::MAX_NAME_BYTES)
                    );
                }
            }
        }
    }
}
