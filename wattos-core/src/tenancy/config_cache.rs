//! [`TenantConfigCache`]: one cached view of the tenant registry, shared by everything that reads
//! tenant configuration on the request path (authentication, the router's policy source, RAG
//! limits), so a configuration change is seen by all of them at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::tenant::{TenantConfig, TenantStore};
use crate::context::TenantId;
use crate::error::Result;
use crate::telemetry::names;

/// What the registry says about a tenant.
#[derive(Debug, Clone)]
pub enum TenantStatus {
    /// The registry does not know it (internal tenants, embedded use).
    Unknown,
    /// Registered but disabled: it may not authenticate or call models.
    Disabled,
    /// Registered and enabled, with its configuration.
    Enabled(Arc<TenantConfig>),
}

/// Entries beyond which the cache starts over (bounds memory under tenant churn).
const MAX_ENTRIES: usize = 100_000;

/// The tenant registry's answers, each cached for a time to live; [`TenantConfigCache::invalidate`]
/// forgets one tenant at once (after a change made in this process; other processes see it after
/// the time to live). Reads and misses are counted in `cache_operations_total{cache="tenant_config"}`.
///
/// ```
/// use std::sync::Arc;
/// use wattos_core::tenancy::{TenantConfigCache, TenantStatus, TenantStore};
/// # use wattos_core::{Result, TenantId};
/// # async fn demo(store: Arc<dyn TenantStore>) -> Result<()> {
/// let configs = TenantConfigCache::new(store, std::time::Duration::from_secs(5));
/// let acme = TenantId::new("acme")?;
/// let top_k = match configs.status(&acme).await? {
///     TenantStatus::Enabled(cfg) => cfg.rag.default_top_k,
///     TenantStatus::Unknown | TenantStatus::Disabled => 5,
/// };
/// # let _ = top_k;
/// configs.invalidate(&acme); // after changing acme's configuration
/// # Ok(()) }
/// ```
pub struct TenantConfigCache {
    store: Arc<dyn TenantStore>,
    ttl: Duration,
    entries: RwLock<HashMap<TenantId, (TenantStatus, Instant)>>,
}

impl std::fmt::Debug for TenantConfigCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantConfigCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn count(result: &'static str) {
    metrics::counter!(names::CACHE_OPERATIONS_TOTAL, "cache" => "tenant_config", "result" => result)
        .increment(1);
}

impl TenantConfigCache {
    /// A cache over `store` whose entries live `ttl`.
    pub fn new(store: Arc<dyn TenantStore>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The registry behind the cache.
    pub fn store(&self) -> &Arc<dyn TenantStore> {
        &self.store
    }

    /// The time to live of an entry.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The tenant's status and configuration, from the cache when fresh.
    ///
    /// # Errors
    /// The store's errors (nothing is cached then).
    pub async fn status(&self, tenant: &TenantId) -> Result<TenantStatus> {
        if let Some((status, at)) = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            && at.elapsed() < self.ttl
        {
            count("hit");
            return Ok(status.clone());
        }
        count("miss");
        let status = match self.store.get_tenant(tenant).await? {
            None => TenantStatus::Unknown,
            Some(t) if t.disabled => TenantStatus::Disabled,
            Some(_) => TenantStatus::Enabled(Arc::new(self.store.get_config(tenant).await?)),
        };
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(tenant.clone(), (status.clone(), Instant::now()));
        count("set");
        Ok(status)
    }

    /// The configuration of an enabled tenant; `None` for an unknown or disabled one.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn config(&self, tenant: &TenantId) -> Result<Option<Arc<TenantConfig>>> {
        Ok(match self.status(tenant).await? {
            TenantStatus::Enabled(c) => Some(c),
            TenantStatus::Unknown | TenantStatus::Disabled => None,
        })
    }

    /// Forgets `tenant`: the next read asks the registry.
    pub fn invalidate(&self, tenant: &TenantId) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::tenancy::Tenant;

    /// Two tenants (`on`, `off` disabled) and a count of registry reads.
    #[derive(Default)]
    struct Registry {
        reads: AtomicUsize,
        top_k: Mutex<u32>,
    }

    #[async_trait]
    impl TenantStore for Registry {
        async fn create_tenant(&self, _: &Tenant) -> Result<()> {
            unreachable!()
        }
        async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(["on", "off"].contains(&id.as_str()).then(|| Tenant {
                id: id.clone(),
                name: id.to_string(),
                disabled: id.as_str() == "off",
                created_at_ms: 0,
            }))
        }
        async fn list_tenants(&self, _: Option<&TenantId>, _: u32) -> Result<Vec<Tenant>> {
            unreachable!()
        }
        async fn set_disabled(&self, _: &TenantId, _: bool) -> Result<()> {
            unreachable!()
        }
        async fn get_config(&self, _: &TenantId) -> Result<TenantConfig> {
            let mut cfg = TenantConfig::default();
            cfg.rag.default_top_k = *self.top_k.lock().unwrap_or_else(|p| p.into_inner());
            Ok(cfg)
        }
        async fn put_config(&self, _: &TenantId, _: &TenantConfig) -> Result<()> {
            unreachable!()
        }
    }

    fn id(s: &str) -> TenantId {
        TenantId::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn answers_are_cached_until_invalidated_or_expired() -> Result<()> {
        let registry = Arc::new(Registry::default());
        *registry.top_k.lock().unwrap_or_else(|p| p.into_inner()) = 7;
        let cache = TenantConfigCache::new(registry.clone(), Duration::from_secs(3600));
        let on = cache.config(&id("on")).await?.map(|c| c.rag.default_top_k);
        assert_eq!(on, Some(7));
        assert!(matches!(
            cache.status(&id("off")).await?,
            TenantStatus::Disabled
        ));
        assert!(matches!(
            cache.status(&id("nobody")).await?,
            TenantStatus::Unknown
        ));
        assert_eq!(cache.config(&id("off")).await?.map(|_| ()), None);
        let reads = registry.reads.load(Ordering::SeqCst);
        assert_eq!(reads, 3, "one read per tenant");
        // Cached: a change in the registry is not seen until the tenant is invalidated.
        *registry.top_k.lock().unwrap_or_else(|p| p.into_inner()) = 9;
        let on = cache.config(&id("on")).await?.map(|c| c.rag.default_top_k);
        assert_eq!(on, Some(7));
        assert_eq!(registry.reads.load(Ordering::SeqCst), reads);
        cache.invalidate(&id("on"));
        let on = cache.config(&id("on")).await?.map(|c| c.rag.default_top_k);
        assert_eq!(on, Some(9));
        // A zero time to live reads every time.
        let fresh = TenantConfigCache::new(registry.clone(), Duration::ZERO);
        let before = registry.reads.load(Ordering::SeqCst);
        fresh.status(&id("on")).await?;
        fresh.status(&id("on")).await?;
        assert_eq!(registry.reads.load(Ordering::SeqCst), before + 2);
        Ok(())
    }
}
