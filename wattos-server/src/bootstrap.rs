//! Builds the running server's state from [`Settings`]: local models, configured providers,
//! authentication stores, health checks.

use std::sync::Arc;
use std::time::Duration;

use wattos_core::config::DeploymentMode;
use wattos_core::health::{ComponentHealth, HealthCheck, HealthRegistry};
use wattos_core::tenancy::Tenant;
use wattos_core::{Error, Result};
use wattos_llm::local::{MiniLmEmbedder, SmolLm, SmolLmOptions};

use crate::auth::{Auth, AuthParts, JwtAuthenticator, JwtConfig, JwtKeys, KeyHasher};
use crate::gateway::ModelCatalog;
use crate::settings::{AuthMode, Settings};
use crate::state::AppState;
use crate::tenancy::SqlStore;

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
    catalog: &mut ModelCatalog,
    health: &mut HealthRegistry,
) {
    let dir = settings.core.models.dir.clone();
    if settings.local_models.embeddings {
        let d = dir.clone();
        match tokio::task::spawn_blocking(move || MiniLmEmbedder::from_models_dir(&d)).await {
            Ok(Ok(m)) => catalog.add_embedding(LOCAL_EMBEDDING_MODEL, "wattos", Arc::new(m)),
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
        match tokio::task::spawn_blocking(move || SmolLm::from_models_dir(&dir, opts)).await {
            Ok(Ok(m)) => catalog.add_chat(LOCAL_CHAT_MODEL, "wattos", Arc::new(m)),
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

async fn build_auth(settings: &Settings) -> Result<Auth> {
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
    let store = SqlStore::connect(&url).await?;
    let pepper = settings.auth.key_pepper.as_ref().ok_or_else(|| {
        Error::invalid_field(
            "auth.key_pepper",
            "is required when auth.mode is 'required'",
        )
    })?;
    let mut parts = AuthParts::embedded(store, KeyHasher::new(pepper.expose())?);
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
    if core.mode == DeploymentMode::Shared
        && let Some(redis) = &core.redis
    {
        let url = redis.url.expose();
        parts.revocations = Arc::new(crate::auth::RedisRevocations::connect(url, "wattos:").await?);
        parts.limiter = Arc::new(crate::auth::RedisRateLimiter::connect(url, "wattos:").await?);
    }
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
/// and the server runs on), builds every configured provider, and sets up authentication.
///
/// # Errors
/// A provider or authentication setup that cannot work (bad key material, unreachable store).
pub async fn build_state(settings: Settings) -> Result<AppState> {
    let mut health = AppState::default_health(&settings.core);
    let mut catalog = ModelCatalog::default();
    load_local_models(&settings, &mut catalog, &mut health).await;
    for (name, cfg) in &settings.providers.providers {
        let model = wattos_llm::registry::build_chat_model(cfg).map_err(|e| {
            Error::invalid_field(format!("llm.providers.{name}"), e.message().to_owned())
        })?;
        catalog.add_chat(name.clone(), cfg.kind(), model);
    }
    let auth = match settings.auth.mode {
        AuthMode::None => None,
        AuthMode::Required => Some(build_auth(&settings).await?),
    };
    let conversations = crate::conversations::ConversationServices::open(&settings.core).await?;
    Ok(AppState::with_parts(settings.core, health, catalog)
        .with_auth(auth)
        .with_conversations(Some(conversations)))
}
