//! Builds the running server's state from [`Settings`]: local models, configured providers,
//! authentication stores, health checks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use wattos_core::embedding::EmbeddingModel;
use wattos_core::health::{ComponentHealth, HealthCheck, HealthRegistry};
use wattos_core::llm::ChatModel;
use wattos_core::tenancy::Tenant;
use wattos_core::{Error, Result};
use wattos_llm::local::{HubCache, MINILM_FILES, MiniLmEmbedder, SmolLm, SmolLmOptions};
use wattos_llm::router::TenantConfigPolicies;

use crate::auth::{Auth, AuthParts, JwtAuthenticator, JwtConfig, JwtKeys, KeyHasher};
use crate::dbpool::{Pool, PoolSpec};
use crate::events::{EventPublisher, EventUsageSink, PublishingAudit};
use crate::gateway::ModelCatalog;
use crate::gateway::routing::{
    DeploymentHealthCheck, RoutedModel, RouterBackends, build_chat_router, build_embedding_router,
};
use crate::settings::{AuthMode, Settings};
use crate::state::AppState;
use crate::tenancy::SqlStore;
use crate::usage::{FanoutUsageSink, Operation, SqlUsage};
use wattos_llm::usage::UsageSink;

/// Name the local chat model is served under.
pub const LOCAL_CHAT_MODEL: &str = "smollm2-135m-instruct";
/// Name the local embedding model is served under.
pub const LOCAL_EMBEDDING_MODEL: &str = "all-minilm-l6-v2";

/// Reports a model that could not be loaded at start (the server runs on without it).
struct UnloadedModel {
    name: String,
    reason: String,
}

#[async_trait::async_trait]
impl HealthCheck for UnloadedModel {
    fn name(&self) -> &str {
        &self.name
    }
    fn critical(&self) -> bool {
        false
    }
    async fn check(&self) -> ComponentHealth {
        ComponentHealth::unhealthy(self.reason.clone())
    }
}

async fn load_local_models(
    settings: &Settings,
    chat: &mut Vec<RoutedModel<dyn ChatModel>>,
    embedding: &mut Vec<RoutedModel<dyn EmbeddingModel>>,
    health: &mut HealthRegistry,
) {
    let dir = settings.core.models.dir.clone();
    let hub = HubCache::from_env();
    if settings.local_models.embeddings {
        let folder = match &settings.local_models.embeddings_from {
            Some(from) => hub.folder(from, &MINILM_FILES).await,
            None => Ok(MiniLmEmbedder::folder_in(&dir)),
        };
        let loaded = match folder {
            Ok(folder) => tokio::task::spawn_blocking(move || MiniLmEmbedder::load(&folder)).await,
            Err(e) => Ok(Err(e)),
        };
        match loaded {
            Ok(Ok(m)) => embedding.push(RoutedModel {
                name: LOCAL_EMBEDDING_MODEL.into(),
                provider: "wattos".into(),
                model: Arc::new(m),
                upstream_model: None,
                price: None,
            }),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "local embedding model not loaded");
                health.register(UnloadedModel {
                    name: format!("model:{LOCAL_EMBEDDING_MODEL}"),
                    reason: e.to_string(),
                });
            }
            Err(e) => tracing::error!(error = %e, "loading the local embedding model panicked"),
        }
    }
    if settings.local_models.chat {
        let opts = SmolLmOptions::default().with_name(LOCAL_CHAT_MODEL);
        let file = match &settings.local_models.chat_from {
            Some(from) => hub.file(from).await,
            None => Ok(SmolLm::file_in(&dir)),
        };
        let loaded = match file {
            Ok(file) => tokio::task::spawn_blocking(move || SmolLm::load(&file, opts)).await,
            Err(e) => Ok(Err(e)),
        };
        match loaded {
            Ok(Ok(m)) => chat.push(RoutedModel {
                name: LOCAL_CHAT_MODEL.into(),
                provider: "wattos".into(),
                model: Arc::new(m),
                upstream_model: None,
                price: None,
            }),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "local chat model not loaded");
                health.register(UnloadedModel {
                    name: format!("model:{LOCAL_CHAT_MODEL}"),
                    reason: e.to_string(),
                });
            }
            Err(e) => tracing::error!(error = %e, "loading the local chat model panicked"),
        }
    }
}

async fn connect_store(settings: &Settings) -> Result<SqlStore> {
    let core = &settings.core;
    let url = match &core.database {
        Some(db) => db.url.expose().clone(),
        None => {
            std::fs::create_dir_all(&core.data_dir).map_err(|e| {
                Error::unavailable(format!("cannot create {}: {e}", core.data_dir.display()))
                    .with_source(e)
            })?;
            format!(
                "sqlite://{}?mode=rwc",
                core.data_dir.join("wattos.db").display()
            )
        }
    };
    SqlStore::connect_with(&url, PoolSpec::of(core, Pool::Tenancy)).await
}

/// The usage writer: on PostgreSQL its own pool (`database.pools.usage`), so bursts of usage
/// inserts never take connections from authentication; on SQLite the store's pool.
async fn usage_store(settings: &Settings, store: &SqlStore) -> Result<SqlUsage> {
    match &settings.core.database {
        Some(db) if store.backend() == crate::tenancy::Backend::Postgres => {
            let pool = PoolSpec::of(&settings.core, Pool::Usage)
                .any()
                .connect(db.url.expose())
                .await
                .map_err(|e| {
                    Error::unavailable("cannot connect to the usage database").with_source(e)
                })?;
            Ok(SqlUsage::with_pool(pool, store.backend()))
        }
        _ => Ok(SqlUsage::new(store)),
    }
}

/// The instance's Redis connections (`redis.pool_size` of them) in shared mode; rate limits,
/// revocations and router state share them.
#[cfg(feature = "redis")]
type SharedRedis = Option<wattos_llm::state::RedisPool>;
/// Without the `redis` feature there is never a Redis pool.
#[cfg(not(feature = "redis"))]
type SharedRedis = Option<std::convert::Infallible>;

async fn shared_redis(settings: &Settings) -> Result<SharedRedis> {
    #[cfg(feature = "redis")]
    if settings.core.mode == wattos_core::config::DeploymentMode::Shared
        && let Some(redis) = &settings.core.redis
    {
        let pool =
            wattos_llm::state::RedisPool::connect(redis.url.expose(), redis.pool_size).await?;
        return Ok(Some(pool));
    }
    #[cfg(not(feature = "redis"))]
    let _ = settings;
    Ok(None)
}

/// How long a shared search-result cache entry lives (invalidation makes it unreachable sooner).
#[cfg(feature = "redis")]
const SHARED_QUERY_CACHE_TTL_SECS: u64 = 600;

/// The shared services the RAG API uses: search results cached in Redis (keys under
/// `<redis.key_prefix>rag:cache`) when this instance has a Redis pool.
fn shared_services(settings: &Settings, redis: &SharedRedis) -> crate::apis::SharedServices {
    let shared = crate::apis::SharedServices::none();
    #[cfg(feature = "redis")]
    if let Some(pool) = redis {
        return shared.with_query_cache(wattos_rag::cache::RedisQueryCache::from_connection(
            pool.get(),
            format!("{}rag:cache", settings.jobs.redis_key_prefix),
            SHARED_QUERY_CACHE_TTL_SECS,
        ));
    }
    let _ = (settings, redis);
    shared
}

/// Rate-limit windows and budgets for the routers: Redis in shared mode (keys under
/// `<redis.key_prefix>router:`), else one in-memory state shared by every router of the process.
async fn router_state(settings: &Settings, redis: &SharedRedis) -> Result<RouterBackends> {
    let mut backends = RouterBackends::default();
    #[cfg(feature = "redis")]
    if let Some(pool) = redis {
        let prefix = format!("{}router:", settings.jobs.redis_key_prefix);
        let state = Arc::new(wattos_llm::state::RedisState::from_pool(
            pool.clone(),
            prefix,
        ));
        backends.windows = Some(state.clone());
        backends.budgets = Some(state);
        return Ok(backends);
    }
    #[cfg(not(feature = "redis"))]
    let _ = (settings, redis);
    let state = Arc::new(wattos_llm::state::MemoryState::new());
    backends.windows = Some(state.clone());
    backends.budgets = Some(state);
    Ok(backends)
}

async fn build_auth(
    settings: &Settings,
    store: SqlStore,
    usage: Option<Arc<SqlUsage>>,
    policies: Option<Arc<TenantConfigPolicies>>,
    events: &EventPublisher,
    redis: &SharedRedis,
) -> Result<Auth> {
    let core = &settings.core;
    let pepper = settings.auth.key_pepper.as_ref().ok_or_else(|| {
        Error::invalid_field(
            "auth.key_pepper",
            "is required when auth.mode is 'required'",
        )
    })?;
    let mut parts = AuthParts::embedded(store, KeyHasher::new(pepper.expose())?);
    parts.usage = usage.map(|u| u as Arc<dyn crate::tenancy::admin::UsageReporter>);
    parts.policies = policies;
    // Every stored audit entry also goes out as an event.
    parts.audit = Arc::new(PublishingAudit::new(parts.audit.clone(), events.clone()));
    // The platform tenant must exist so a platform admin can create the first tenants and keys.
    let platform = parts.platform_tenant.clone();
    if parts.tenants.get_tenant(&platform).await?.is_none() {
        let tenant = Tenant {
            id: platform.clone(),
            name: "Platform administration".into(),
            disabled: false,
            created_at_ms: crate::auth::now_ms(),
        };
        // Another instance may create it at the same moment: a conflict is fine.
        match parts.tenants.create_tenant(&tenant).await {
            Ok(()) => tracing::info!(tenant = %platform, "created the platform tenant"),
            Err(e) if e.kind() == wattos_core::ErrorKind::Conflict => {}
            Err(e) => return Err(e),
        }
    }
    parts.request_timeout = Some(core.server.request_timeout);
    #[cfg(feature = "redis")]
    if let Some(pool) = redis {
        let prefix = settings.jobs.redis_key_prefix.as_str();
        parts.revocations = Arc::new(crate::auth::RedisRevocations::from_pool(
            pool.clone(),
            prefix,
        ));
        parts.limiter = Arc::new(crate::auth::RedisRateLimiter::from_pool(
            pool.clone(),
            prefix,
        ));
    }
    #[cfg(not(feature = "redis"))]
    let _ = redis;
    if let Some(jwt) = &settings.auth.jwt {
        let keys = match (&jwt.hs256_secret, &jwt.jwks_url) {
            (Some(secret), _) => JwtKeys::Hs256(secret.expose().as_bytes().to_vec()),
            (None, Some(url)) => JwtKeys::Jwks {
                url: url.clone(),
                ttl: Duration::from_secs(300),
                min_refresh: Duration::from_secs(30),
            },
            (None, None) => {
                return Err(Error::invalid_field(
                    "auth.jwt",
                    "needs hs256_secret or jwks_url",
                ));
            }
        };
        let mut cfg = JwtConfig::new(keys);
        if let Some(iss) = &jwt.issuer {
            cfg = cfg.with_issuer(iss.clone());
        }
        if let Some(aud) = &jwt.audience {
            cfg = cfg.with_audience(aud.clone());
        }
        parts.jwt = Some(Arc::new(JwtAuthenticator::new(
            cfg,
            parts.revocations.clone(),
        )?));
    }
    let auth = Auth::new(parts);
    auth.api_keys()
        .spawn_last_used_flusher(Duration::from_secs(30));
    Ok(auth)
}

/// Builds the application state: loads the local models (a missing model is reported by `/health`
/// and the server runs on), builds every configured provider, puts them all behind the router
/// (`[llm.router]`), and sets up authentication and usage accounting.
///
/// # Errors
/// A provider, router or authentication setup that cannot work (bad key material, unreachable
/// store, a group naming an unknown deployment).
pub async fn build_state(settings: Settings) -> Result<AppState> {
    // The recorder first: breaker gauges are published while the routers are built.
    crate::telemetry::prometheus();
    let mut health = AppState::default_health(&settings.core);
    let mut chat = Vec::new();
    let mut embedding = Vec::new();
    load_local_models(&settings, &mut chat, &mut embedding, &mut health).await;
    // Every provider is a chat deployment; one with an `embedding_model` also serves embeddings,
    // under that model's name.
    let (provider_chat, provider_embedding) = wattos_llm::router::config::provider_deployments(
        &settings.providers,
        &wattos_llm::registry::BuildContext::from_env(),
    )
    .map_err(crate::gateway::routing::setting_error)?;
    chat.extend(provider_chat);
    embedding.extend(provider_embedding);
    // Usage is recorded in the authentication store's database (there is no admin API without it).
    let store = match settings.auth.mode {
        AuthMode::None => None,
        AuthMode::Required => Some(connect_store(&settings).await?),
    };
    let usage = match &store {
        Some(s) => Some(Arc::new(usage_store(&settings, s).await?)),
        None => None,
    };
    let events = crate::events::build_publisher(&settings).await?;
    let redis = shared_redis(&settings).await?;
    let mut backends = router_state(&settings, &redis).await?;
    // Every router reads the calling tenant's allow-list and budget from the tenant registry on
    // each call (cached like authentication's view of it), whoever calls the model.
    let policies = store.as_ref().map(|s| {
        Arc::new(TenantConfigPolicies::new(
            Arc::new(s.clone()),
            crate::auth::DEFAULT_CACHE_TTL,
        ))
    });
    backends.policies = policies
        .clone()
        .map(|p| p as Arc<dyn wattos_llm::router::PolicySource>);
    let providers: HashMap<String, String> = chat
        .iter()
        .map(|m| (m.name.clone(), m.provider.clone()))
        .chain(
            embedding
                .iter()
                .map(|m| (m.name.clone(), m.provider.clone())),
        )
        .collect();
    // Every usage record goes to the usage table (when there is one) and out as an event.
    let usage_sink = |op: Operation| -> Arc<dyn UsageSink> {
        let mut sinks: Vec<Arc<dyn UsageSink>> = Vec::new();
        if let Some(u) = &usage {
            sinks.push(u.sink(op, providers.clone()));
        }
        sinks.push(Arc::new(EventUsageSink::new(
            events.clone(),
            op,
            providers.clone(),
        )));
        Arc::new(FanoutUsageSink::new(sinks))
    };
    backends.chat_usage = Some(usage_sink(Operation::Chat));
    backends.embedding_usage = Some(usage_sink(Operation::Embedding));
    for name in chat
        .iter()
        .map(|m| &m.name)
        .chain(embedding.iter().map(|m| &m.name))
    {
        // Every deployment's breaker starts closed (0); the router updates it on transitions.
        metrics::gauge!(wattos_core::telemetry::names::BREAKER_STATE, "breaker" => format!("llm:{name}"))
            .set(0.0);
    }
    let mut catalog = ModelCatalog::default();
    let chat_router =
        build_chat_router(&chat, &settings.router, &backends, Some(LOCAL_CHAT_MODEL))?;
    if let Some((router, names)) = &chat_router {
        for (name, owned_by) in names {
            catalog.add_chat(name.clone(), owned_by.clone(), router.clone());
        }
        catalog.set_chat_router(router.clone());
        for check in DeploymentHealthCheck::for_chat(router) {
            health.register(check);
        }
    }
    let mut embedding_routers = Vec::new();
    for m in &embedding {
        let router = build_embedding_router(m, &settings.router, &backends)?;
        catalog.add_embedding(m.name.clone(), m.provider.clone(), router.clone());
        for check in DeploymentHealthCheck::for_embedding(&router) {
            health.register(check);
        }
        embedding_routers.push(router);
    }
    let auth = match store {
        None => None,
        Some(store) => Some(build_auth(&settings, store, usage, policies, &events, &redis).await?),
    };
    let mut shared = shared_services(&settings, &redis);
    if let Some(a) = &auth {
        shared = shared.with_tenant_configs(a.tenant_configs().clone());
    }
    let (rag, agents) =
        crate::apis::build_services_with(&settings.core, &catalog, None, &shared).await?;
    let job_counters: Arc<dyn wattos_core::state::BudgetStore> = match &backends.budgets {
        Some(b) => b.clone(),
        None => Arc::new(wattos_llm::state::MemoryState::new()),
    };
    let jobs = crate::jobs::build_jobs(&settings, &catalog, rag.as_ref(), job_counters).await?;
    let memories = crate::memories::MemoryService::open(&settings.core, &catalog).await?;
    let conversations = crate::conversations::ConversationServices::open(&settings.core)
        .await?
        .with_memories(memories.store().clone());
    Ok(AppState::with_parts(settings.core, health, catalog)
        .with_auth(auth)
        .with_rag(rag)
        .with_agents(Some(agents))
        .with_jobs(Some(jobs))
        .with_conversations(Some(conversations))
        .with_memories(Some(memories))
        .with_events(Some(events)))
}
