//! Where the router finds the calling tenant's policy: [`PolicySource`], asked on every call, and
//! [`TenantConfigPolicies`], the source over the tenant registry's configuration.
//!
//! The policy is looked up from the call's [`RequestContext`] inside the router, so every caller of
//! a model (the gateway, a RAG answer, a reranker, an agent node, a background job) is held to the
//! same allow-list and budget; nothing has to push policy into the router first.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use wattos_core::tenancy::{TenantConfig, TenantConfigCache, TenantStatus, TenantStore};
use wattos_core::{Error, RequestContext, Result, TenantId};

use super::policy::{Budget, BudgetPeriod, TenantPolicy, TokenBudget};

/// Gives the router the policy of the tenant making a call. Asked once per request, before any
/// other admission step; keep it fast (cache what comes from a database).
///
/// `Ok(None)` means "no policy of its own": the router then uses the policy set for the tenant on
/// the router ([`Router::set_tenant_policy`](super::Router::set_tenant_policy)) or its default. An
/// error refuses the call with that error.
///
/// ```
/// use std::sync::Arc;
/// use async_trait::async_trait;
/// use wattos_core::{RequestContext, Result, TenantId};
/// use wattos_llm::router::{PolicySource, TenantPolicy};
///
/// /// Tenant "free" may only use the small model; everyone else gets the router's default.
/// struct Plans;
/// #[async_trait]
/// impl PolicySource for Plans {
///     async fn policy(&self, ctx: &RequestContext) -> Result<Option<Arc<TenantPolicy>>> {
///         Ok((ctx.tenant().as_str() == "free")
///             .then(|| Arc::new(TenantPolicy::default().allow_models(["small"]))))
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let free = RequestContext::system(TenantId::new("free")?);
/// let p = Plans.policy(&free).await?.unwrap();
/// assert_eq!(p.allowed_models, Some(vec!["small".to_owned()]));
/// # Ok::<_, wattos_core::Error>(()) }).unwrap();
/// ```
#[async_trait]
pub trait PolicySource: Send + Sync + 'static {
    /// The policy for `ctx`'s tenant, `None` to use the router's own.
    ///
    /// # Errors
    /// Any error refuses the call (e.g. `forbidden` for a disabled tenant, `unavailable` when the
    /// registry cannot be read).
    async fn policy(&self, ctx: &RequestContext) -> Result<Option<Arc<TenantPolicy>>>;
}

/// The monthly "limit" of tenants without a budget: high enough never to bind, so their spend is
/// still counted and a budget set later sees what the month already cost.
pub const UNLIMITED_MONTHLY_USD: f64 = 1e9;

/// The router policy for a tenant's configuration: its allow-list, its default model (for
/// requests that name none), its monthly token limit (`budgets.monthly_tokens`) and its monthly
/// spend limit
/// (every tenant's monthly spend is tracked; see [`UNLIMITED_MONTHLY_USD`]). Request rate limits
/// (`rate_limits`) apply to every request, model or not, so the server enforces them in its
/// authentication layer; the router does not count them a second time.
pub fn policy_for_config(cfg: &TenantConfig) -> TenantPolicy {
    let mut p = TenantPolicy::default();
    if !cfg.allowed_models.is_empty() {
        p = p.allow_models(cfg.allowed_models.iter().cloned());
    }
    if let Some(m) = &cfg.default_model {
        p = p.with_default_model(m.clone());
    }
    if let Some(tokens) = cfg.budgets.monthly_tokens {
        p = p.with_token_budget(TokenBudget::new(tokens, BudgetPeriod::Monthly));
    }
    let usd = cfg.budgets.monthly_usd.unwrap_or(UNLIMITED_MONTHLY_USD);
    p.with_budget(Budget::new(usd, BudgetPeriod::Monthly))
}

/// A [`PolicySource`] over the tenant registry: each tenant's configuration, read through a
/// [`TenantConfigCache`] (shared with whatever else reads tenant configuration, e.g. the server's
/// authentication), becomes its policy through [`policy_for_config`]. Call
/// [`TenantConfigPolicies::invalidate`] (or the cache's) after changing a configuration in this
/// process.
///
/// A tenant the store does not know gets the router's own policy (`None`), so internal tenants
/// (probes, tests, embedded use) keep working; a disabled tenant is refused with `forbidden`.
pub struct TenantConfigPolicies {
    configs: Arc<TenantConfigCache>,
    /// The policy derived from each tenant's current configuration (rebuilt when it changes).
    derived: RwLock<HashMap<TenantId, Derived>>,
}

impl std::fmt::Debug for TenantConfigPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantConfigPolicies")
            .field("configs", &self.configs)
            .finish_non_exhaustive()
    }
}

/// A configuration and the policy made from it.
type Derived = (Arc<TenantConfig>, Arc<TenantPolicy>);

/// Derived policies beyond which the map starts over (bounds memory under tenant churn).
const MAX_DERIVED: usize = 100_000;

impl TenantConfigPolicies {
    /// Policies from `store`, each configuration cached for `ttl` in a cache of their own.
    pub fn new(store: Arc<dyn TenantStore>, ttl: Duration) -> Self {
        Self::from_cache(Arc::new(TenantConfigCache::new(store, ttl)))
    }

    /// Policies from the configurations `configs` caches (share it with the other readers).
    pub fn from_cache(configs: Arc<TenantConfigCache>) -> Self {
        Self {
            configs,
            derived: RwLock::new(HashMap::new()),
        }
    }

    /// The configuration cache the policies come from.
    pub fn configs(&self) -> &Arc<TenantConfigCache> {
        &self.configs
    }

    /// Forgets `tenant`'s cached configuration: the next call reads it again.
    pub fn invalidate(&self, tenant: &TenantId) {
        self.configs.invalidate(tenant);
    }

    fn derive(&self, tenant: &TenantId, cfg: Arc<TenantConfig>) -> Arc<TenantPolicy> {
        if let Some((seen, policy)) = self
            .derived
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            && Arc::ptr_eq(seen, &cfg)
        {
            return policy.clone();
        }
        let policy = Arc::new(policy_for_config(&cfg));
        let mut derived = self.derived.write().unwrap_or_else(|p| p.into_inner());
        if derived.len() >= MAX_DERIVED {
            derived.clear();
        }
        derived.insert(tenant.clone(), (cfg, policy.clone()));
        policy
    }
}

#[async_trait]
impl PolicySource for TenantConfigPolicies {
    async fn policy(&self, ctx: &RequestContext) -> Result<Option<Arc<TenantPolicy>>> {
        let tenant = ctx.tenant();
        match self.configs.status(tenant).await? {
            TenantStatus::Unknown => Ok(None),
            TenantStatus::Disabled => {
                Err(Error::forbidden(format!("tenant '{tenant}' is disabled")))
            }
            TenantStatus::Enabled(cfg) => Ok(Some(self.derive(tenant, cfg))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_config_becomes_allow_list_and_monthly_budget() {
        let mut cfg = TenantConfig::default();
        let unlimited = policy_for_config(&cfg);
        assert_eq!(unlimited.allowed_models, None);
        assert_eq!(
            unlimited.budget,
            Some(Budget::new(UNLIMITED_MONTHLY_USD, BudgetPeriod::Monthly))
        );
        cfg.allowed_models = vec!["m1".into()];
        cfg.default_model = Some("m1".into());
        cfg.budgets.monthly_usd = Some(2.5);
        let p = policy_for_config(&cfg);
        assert_eq!(p.allowed_models, Some(vec!["m1".to_owned()]));
        assert_eq!(p.default_model.as_deref(), Some("m1"));
        assert_eq!(p.token_budget, None);
        cfg.budgets.monthly_tokens = Some(10_000);
        assert_eq!(
            policy_for_config(&cfg).token_budget,
            Some(TokenBudget::new(10_000, BudgetPeriod::Monthly))
        );
        assert_eq!(p.budget, Some(Budget::new(2.5, BudgetPeriod::Monthly)));
    }
}
