//! Builds [`Jobs`] from the settings: the queue for the deployment mode and, when this instance
//! runs jobs, the ingestion service.

use std::sync::Arc;

use wattos_core::config::DeploymentMode;
use wattos_core::state::BudgetStore;
use wattos_core::{Error, RequestContext, Result, TenantId};
use wattos_rag::jobs::{AdmittedQueue, JobLimits, JobQueue, MemoryJobQueue};

use super::{IngestionService, JobSettings, Jobs, RagIngestion, ServerRole};
use crate::gateway::ModelCatalog;
use crate::settings::Settings;

/// The queue (JetStream in shared mode, in process otherwise), admitting each new job against
/// `jobs.max_outstanding_per_tenant` and `jobs.max_outstanding` counted in `counters` (the
/// routers' state: Redis in shared mode, so API and worker instances count together), and, for
/// roles that run jobs, the ingestion service: the server's [`crate::rag::RagService`] when the
/// RAG API is on (with its own embedding model), else [`RagIngestion`] with `jobs.embedding_model`
/// (pgvector tables in shared mode, embedded stores under `<data_dir>/rag` otherwise).
///
/// # Errors
/// `unavailable` when NATS or PostgreSQL cannot be reached; `invalid_input` when a worker-only
/// instance has no embedding model to ingest with.
pub async fn build_jobs(
    settings: &Settings,
    catalog: &ModelCatalog,
    rag: Option<&crate::rag::RagService>,
    counters: Arc<dyn BudgetStore>,
) -> Result<Jobs> {
    let js = &settings.jobs;
    let core = &settings.core;
    let shared = core.mode == DeploymentMode::Shared;
    let queue: Arc<dyn JobQueue> = match (&core.nats, shared) {
        (Some(nats), true) => jetstream_queue(nats.url.expose(), js).await?,
        _ => Arc::new(MemoryJobQueue::with_policy(js.retry())),
    };
    let queue: Arc<dyn JobQueue> = Arc::new(AdmittedQueue::new(
        queue,
        counters,
        JobLimits {
            per_tenant: js.max_outstanding_per_tenant,
            global: js.max_outstanding,
            ..JobLimits::default()
        },
        js.retry(),
    ));
    if !js.role.runs_jobs() {
        return Ok(Jobs::new(queue, None, js.clone()));
    }
    // The server's RAG API is on: jobs write through it (same collections, registry, stores and
    // embedding model), whatever `jobs.embedding_model` says.
    if let Some(rag) = rag {
        let service: Arc<dyn IngestionService> = Arc::new(rag.clone());
        return Ok(Jobs::new(queue, Some(service), js.clone()));
    }
    let ctx = RequestContext::system(TenantId::new(crate::gateway::EMBEDDED_TENANT)?);
    let embedder = match catalog.embedding(&ctx, &js.embedding_model) {
        Ok(e) => e,
        Err(e) if js.role == ServerRole::Worker => {
            return Err(Error::invalid_field(
                "jobs.embedding_model",
                format!("a worker needs an embedding model: {}", e.message()),
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "no embedding model for ingestion; this instance runs no jobs");
            return Ok(Jobs::new(queue, None, js.clone()));
        }
    };
    let service: Arc<dyn IngestionService> = match (&core.database, shared) {
        (Some(db), true) => {
            let pool = crate::dbpool::PoolSpec::of(core, crate::dbpool::Pool::Vectors)
                .pg()
                .connect(db.url.expose())
                .await
                .map_err(|e| Error::unavailable(format!("postgres: {e}")).with_source(e))?;
            Arc::new(RagIngestion::postgres(pool, embedder))
        }
        _ => Arc::new(RagIngestion::embedded(core.data_dir.join("rag"), embedder)),
    };
    Ok(Jobs::new(queue, Some(service), js.clone()))
}

#[cfg(feature = "nats")]
async fn jetstream_queue(url: &str, js: &JobSettings) -> Result<Arc<dyn JobQueue>> {
    let mut cfg = wattos_rag::jobs::JetStreamConfig::named(
        js.stream.clone(),
        js.subject_prefix.clone(),
        js.status_bucket.clone(),
    );
    cfg.ack_wait = js.ack_wait;
    cfg.retry = js.retry();
    Ok(Arc::new(
        wattos_rag::jobs::JetStreamQueue::connect(url, cfg).await?,
    ))
}

#[cfg(not(feature = "nats"))]
async fn jetstream_queue(_url: &str, _js: &JobSettings) -> Result<Arc<dyn JobQueue>> {
    Err(Error::unavailable(
        "shared mode runs jobs on NATS JetStream, but this binary was built without the `nats` feature",
    ))
}
