//! [`EmbeddingRouter`]: an [`EmbeddingModel`] over embedding deployments with the same fallbacks,
//! breakers, retries, limits, budgets and accounting as the chat router.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wattos_core::embedding::{EmbeddingModel, Embeddings};
use wattos_core::{Error, RequestContext, Result, TenantId};

use super::builder::RouterBuilder;
use super::engine::Engine;
use super::estimate::estimate_embedding;
use super::health::{ProbeOutcome, RouterHealth};
use super::policy::TenantPolicy;
use super::shared::{RouterHealthCheck, spawn_probes};

/// Routes embedding batches over the first model group (and its fallbacks). Every deployment must
/// produce vectors of the same dimension. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddingRouter {
    engine: Arc<Engine<dyn EmbeddingModel>>,
    name: Arc<str>,
    dimensions: usize,
    max_batch: usize,
}

impl std::fmt::Debug for EmbeddingRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingRouter")
            .field("name", &self.name)
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

impl RouterBuilder<dyn EmbeddingModel> {
    /// Validates the configuration and builds the router.
    ///
    /// # Errors
    /// As for the chat router, and when deployments disagree on dimensions.
    pub fn build(self) -> Result<EmbeddingRouter> {
        let (engine, _cache, name) = self.build_engine()?;
        let mut dims = None;
        let mut max_batch = usize::MAX;
        for slot in &engine.slots {
            let d = slot.dep.model.dimensions();
            if *dims.get_or_insert(d) != d {
                return Err(Error::invalid_field(
                    "router",
                    format!(
                        "embedding deployment '{}' has {d} dimensions, others {}",
                        slot.label,
                        dims.unwrap_or_default()
                    ),
                ));
            }
            max_batch = max_batch.min(slot.dep.model.max_batch_size());
        }
        Ok(EmbeddingRouter {
            engine: Arc::new(engine),
            name: Arc::from(name),
            dimensions: dims.unwrap_or(0),
            max_batch: max_batch.clamp(1, 4096),
        })
    }
}

impl EmbeddingRouter {
    /// A builder for an embedding router.
    pub fn builder() -> RouterBuilder<dyn EmbeddingModel> {
        RouterBuilder::new("embedding_router")
    }

    /// Health of every deployment.
    pub fn health(&self) -> RouterHealth {
        self.engine.health()
    }

    /// A health check to register with the server's `HealthRegistry`.
    pub fn health_check(&self) -> RouterHealthCheck {
        RouterHealthCheck {
            name: format!("embedding_router:{}", self.name),
            source: self.engine.clone(),
        }
    }

    /// Replaces one tenant's policy at run time.
    pub fn set_tenant_policy(&self, tenant: TenantId, policy: TenantPolicy) {
        self.engine.set_policy(tenant, policy);
    }

    /// Probes every deployment whose breaker admits a call.
    pub async fn probe(&self) -> Vec<(String, ProbeOutcome)> {
        self.engine.probe_all().await
    }

    /// Probes every `interval` in the background until the router is dropped.
    pub fn spawn_active_probes(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        spawn_probes(Arc::downgrade(&self.engine), interval)
    }
}

#[async_trait]
impl EmbeddingModel for EmbeddingRouter {
    fn name(&self) -> &str {
        &self.name
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn max_batch_size(&self) -> usize {
        self.max_batch
    }

    async fn embed(&self, ctx: &RequestContext, inputs: &[String]) -> Result<Embeddings> {
        let group = self.engine.groups[0].name.clone();
        let adm = self
            .engine
            .admit(ctx, &group, estimate_embedding(inputs))
            .await?;
        let inputs: Arc<[String]> = Arc::from(inputs);
        let (mut out, lease) = self
            .engine
            .run(ctx, adm, false, |slot| {
                let model = slot.dep.model.clone();
                let ctx = ctx.clone();
                let inputs = inputs.clone();
                Box::pin(async move { model.embed(&ctx, &inputs).await })
            })
            .await?;
        let cost = lease.succeed(out.usage, out.cost).await;
        if out.cost.is_none() {
            out.cost = cost;
        }
        Ok(out)
    }
}
