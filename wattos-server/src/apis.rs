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
fn rag_backend(config: &Config) -> Result<Arc<dyn RagBackend>> {
    match (&config.database, config.mode) {
        (Some(db), DeploymentMode::Shared) if db.url.expose().starts_with("postgres") => {
            let pool = PoolSpec::of(config, Pool::Vectors)
                .pg()
                .connect_lazy(db.url.expose())
                .map_err(|e| {
                    Error::invalid_field("database.url", format!("not a PostgreSQL URL: {e}"))
                })?;
            Ok(Arc::new(PgVectorBackend::new(pool)))
        }
        _ => Ok(Arc::new(EmbeddedBackend::new(config.data_dir.join("rag")))),
    }
}

/// The RAG service (when an embedding model is loaded; the local MiniLM is preferred) and the
/// agents service with the built-in graphs (when a chat model is loaded; the local SmolLM2 is
/// preferred), over the database of `config` (`database.url`, else `data_dir/wattos.db`) with
/// table prefix `prefix` (default [`DEFAULT_PREFIX`]).
///
/// # Errors
/// The database or the checkpointer cannot be opened; built-in graphs fail validation.
pub async fn build_services(
    config: &Config,
    catalog: &ModelCatalog,
    prefix: Option<&str>,
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
            Some(RagService::new(
                Registry::new(db.clone()),
                rag_backend(config)?,
                embedder,
                name,
            ))
        }
        None => {
            tracing::warn!("no embedding model loaded: the RAG API answers 503");
            None
        }
    };
    let agents = AgentsService::open(config, db).await?;
    match pick(catalog, crate::bootstrap::LOCAL_CHAT_MODEL, ModelKind::Chat) {
        Some(name) => {
            let model = catalog.chat(&ctx, &name)?;
            crate::agents::builtin::register(&agents, model, &name, rag.clone())?;
        }
        None => tracing::warn!("no chat model loaded: no built-in agent graphs"),
    }
    Ok((rag, agents))
}
