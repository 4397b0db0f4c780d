//! Builds the services behind the RAG and agents APIs from the configuration and the loaded models.

use std::sync::Arc;

use wattos_core::config::{Config, DeploymentMode};
use wattos_core::{Error, RequestContext, Result, TenantId};

use crate::agents::AgentsService;
use crate::appdb::{AppDb, DEFAULT_PREFIX};
use crate::dbpool::{Pool, PoolSpec};
use crate::gateway::{ModelCatalog, ModelKind};
use crate::rag::{EmbeddedBackend, PgVectorBackend, RagBackend, RagService, Registry};

fn pick(catalog: &ModelCatalog, preferred: &str, kind: ModelKind) -> Option<String> {
    let ctx = RequestContext::system(TenantId::new(crate::gateway::EMBEDDED_TENANT).ok()?);
    let models = catalog.list(&ctx);
    if models.iter().any(|m| m.kind == kind && m.id == preferred) {
        return Some(preferred.to_owned());
    }
    models.into_iter().find(|m| m.kind == kind).map(|m| m.id)
}

/// Where collections store their chunks: pgvector tables in shared mode on PostgreSQL (every
/// instance sees the same data), one embedded store per collection under `data_dir/rag` otherwise.
fn rag_backend(config: &Config, shared: &SharedServices) -> Result<Arc<dyn RagBackend>> {
    match (&config.database, config.mode) {
        (Some(db), DeploymentMode::Shared) if db.url.expose().starts_with("postgres") => {
            let pool = PoolSpec::of(config, Pool::Vectors)
                .pg()
                .connect_lazy(db.url.expose())
                .map_err(|e| {
                    Error::invalid_field("database.url", format!("not a PostgreSQL URL: {e}"))
                })?;
            let backend = PgVectorBackend::new(pool);
            #[cfg(feature = "redis")]
            let backend = match &shared.query_cache {
                Some(cache) => backend.with_redis_cache(cache.clone()),
                None => backend,
            };
            #[cfg(not(feature = "redis"))]
            let _ = shared;
            Ok(Arc::new(backend))
        }
        _ => Ok(Arc::new(EmbeddedBackend::new(config.data_dir.join("rag")))),
    }
}

/// Connections to shared services that the RAG and agents services use in shared mode.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct SharedServices {
    /// The search result cache every instance shares (collections scope it further). Without
    /// it, shared-mode collections cache nothing.
    #[cfg(feature = "redis")]
    pub query_cache: Option<wattos_rag::cache::RedisQueryCache>,
    /// Tenant configurations (the authentication's cache), for per-tenant RAG limits such as
    /// `rag.max_documents`. Without it no tenant limit applies (embedded mode without auth).
    pub tenant_configs: Option<Arc<wattos_core::tenancy::TenantConfigCache>>,
}

impl std::fmt::Debug for SharedServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("SharedServices");
        #[cfg(feature = "redis")]
        d.field("query_cache", &self.query_cache.is_some());
        d.field("tenant_configs", &self.tenant_configs.is_some());
        d.finish()
    }
}

impl SharedServices {
    /// No shared services.
    pub fn none() -> Self {
        Self::default()
    }

    /// Enforces per-tenant RAG limits with the configurations `configs` caches.
    pub fn with_tenant_configs(
        mut self,
        configs: Arc<wattos_core::tenancy::TenantConfigCache>,
    ) -> Self {
        self.tenant_configs = Some(configs);
        self
    }

    /// Shares search results in Redis through `cache`.
    #[cfg(feature = "redis")]
    pub fn with_query_cache(mut self, cache: wattos_rag::cache::RedisQueryCache) -> Self {
        self.query_cache = Some(cache);
        self
    }
}

/// [`build_services_with`] without shared services (shared-mode collections cache nothing).
///
/// # Errors
/// As for [`build_services_with`].
pub async fn build_services(
    config: &Config,
    catalog: &ModelCatalog,
    prefix: Option<&str>,
) -> Result<(Option<RagService>, AgentsService)> {
    build_services_with(config, catalog, prefix, &SharedServices::none()).await
}

/// The RAG service (when an embedding model is loaded; the local MiniLM is preferred) and the
/// agents service with the built-in graphs (when a chat model is loaded; the local SmolLM2 is
/// preferred), over the database of `config` (`database.url`, else `data_dir/wattos.db`) with
/// table prefix `prefix` (default [`DEFAULT_PREFIX`]).
///
/// # Errors
/// The database or the checkpointer cannot be opened; built-in graphs fail validation.
pub async fn build_services_with(
    config: &Config,
    catalog: &ModelCatalog,
    prefix: Option<&str>,
    shared: &SharedServices,
) -> Result<(Option<RagService>, AgentsService)> {
    let db = AppDb::connect_with(
        &AppDb::url_for(config)?,
        prefix.unwrap_or(DEFAULT_PREFIX),
        PoolSpec::of(config, Pool::App),
    )
    .await?;
    let ctx = RequestContext::system(TenantId::new(crate::gateway::EMBEDDED_TENANT)?);
    let rag = match pick(
        catalog,
        crate::bootstrap::LOCAL_EMBEDDING_MODEL,
        ModelKind::Embedding,
    ) {
        Some(name) => {
            let embedder = catalog.embedding(&ctx, &name)?;
            let svc = RagService::new(
                Registry::new(db.clone()),
                rag_backend(config, shared)?,
                embedder,
                name,
            );
            if let Some(configs) = &shared.tenant_configs {
                svc.set_tenant_configs(configs.clone());
            }
            Some(svc)
        }
        None => {
            tracing::warn!("no embedding model loaded: the RAG API answers 503");
            None
        }
    };
    let agents = AgentsService::open(config, db).await?;
    // The built-in graphs send requests without a model: each caller's default model.
    match catalog.default_chat_target() {
        Some((model, name)) => {
            crate::agents::builtin::register(&agents, model, &name, rag.clone())?;
        }
        None => tracing::warn!("no chat model loaded: no built-in agent graphs"),
    }
    Ok((rag, agents))
}
