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
    /// Monthly token limit.
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
        if self.allowed_models.iter().any(|m| m.trim().is_empty()) {
            return Err(Error::invalid_field("allowed_models", "empty model name"));
        }
        if let Some(d) = &self.default_model
            && !self.model_allowed(d)
        {
            return Err(Error::invalid_field(
                "default_model",
                "the default model must be one of allowed_models",
            ));
        }
        let rl = &self.rate_limits;
        for (field, v) in [
            ("rate_limits.per_key_rpm", rl.per_key_rpm),
            ("rate_limits.per_user_rpm", rl.per_user_rpm),
            ("rate_limits.per_tenant_rpm", rl.per_tenant_rpm),
            ("rate_limits.max_concurrent", rl.max_concurrent),
        ] {
            if v == Some(0) {
                return Err(Error::invalid_field(
                    field,
                    "must be at least 1 (omit for no limit)",
                ));
            }
        }
        if let Some(usd) = self.budgets.monthly_usd
            && (!usd.is_finite() || usd < 0.0)
        {
            return Err(Error::invalid_field(
                "budgets.monthly_usd",
                "must be a non-negative number",
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
        if self.retention.data_days == Some(0) {
            return Err(Error::invalid_field(
                "retention.data_days",
                "must be at least 1 (leave it out to keep conversations and runs)",
            ));
        }
        if self.retention.audit_days < 30 {
            return Err(Error::invalid_field(
                "retention.audit_days",
                "must be at least 30",
            ));
        }
        self.roles.validate()
    }
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
