//! What chat and embedding routers share: policy updates, health snapshots, active probes.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::health::{ComponentHealth, HealthCheck, HealthStatus};
use wattos_core::llm::{ChatModel, ChatRequest, Message};
use wattos_core::{RequestContext, Result, TenantId};

use super::engine::Engine;
use super::health::{ProbeOutcome, RouterHealth};
use super::policy::TenantPolicy;

/// A minimal call that shows whether a deployment answers.
#[async_trait]
pub(crate) trait Probe: Send + Sync {
    async fn probe(&self, ctx: &RequestContext, model: &str) -> Result<()>;
}

#[async_trait]
impl Probe for dyn ChatModel {
    async fn probe(&self, ctx: &RequestContext, model: &str) -> Result<()> {
        let req = ChatRequest::new(model, vec![Message::user("ping")]).with_max_tokens(1);
        self.chat(ctx, req).await.map(|_| ())
    }
}

#[async_trait]
impl Probe for dyn EmbeddingModel {
    async fn probe(&self, ctx: &RequestContext, _model: &str) -> Result<()> {
        self.embed(ctx, &["ping".to_owned()]).await.map(|_| ())
    }
}

impl<M: ?Sized + Probe + Send + Sync + 'static> Engine<M> {
    pub(crate) fn health(&self) -> RouterHealth {
        RouterHealth::fold(self.slots.iter().map(|s| s.snapshot()).collect())
    }

    pub(crate) fn set_policy(&self, tenant: TenantId, policy: TenantPolicy) {
        self.policies
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant, Arc::new(policy));
    }

    pub(crate) fn set_default_policy(&self, policy: TenantPolicy) {
        *self
            .default_policy
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
    }

    /// Probes every deployment whose breaker admits a call; outcomes feed the breaker and health.
    pub(crate) async fn probe_all(&self) -> Vec<(String, ProbeOutcome)> {
        let Ok(tenant) = TenantId::new("wattos-probe") else {
            return Vec::new();
        };
        let ctx = RequestContext::system(tenant);
        let runs = self.slots.iter().map(|slot| {
            let ctx = ctx.clone();
            let model_name = slot
                .dep
                .upstream_model
                .clone()
                .or_else(|| {
                    let idx = self.slots.iter().position(|s| Arc::ptr_eq(s, slot))?;
                    self.groups
                        .iter()
                        .find(|g| g.slots.contains(&idx))
                        .map(|g| g.name.clone())
                })
                .unwrap_or_default();
            let timeout = slot.dep.timeout.unwrap_or(self.settings.attempt_timeout);
            async move {
                let permit = slot.breaker.try_acquire().ok()?;
                let start = Instant::now();
                let result =
                    match tokio::time::timeout(timeout, slot.dep.model.probe(&ctx, &model_name))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(wattos_core::Error::timeout("health probe", timeout)),
                    };
                permit.record(&result);
                slot.record_outcome(result.is_ok(), result.as_ref().err());
                let outcome = ProbeOutcome {
                    ok: result.is_ok(),
                    error: result.err().map(|e| e.to_string()),
                    latency_ms: start.elapsed().as_millis() as u64,
                };
                slot.record_probe(outcome.clone());
                Some((slot.label.clone(), outcome))
            }
        });
        futures::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

pub(crate) fn spawn_probes<M: ?Sized + Probe + Send + Sync + 'static>(
    engine: Weak<Engine<M>>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(engine) = engine.upgrade() else {
                break;
            };
            engine.probe_all().await;
        }
    })
}

pub(crate) trait HealthSource: Send + Sync {
    fn snapshot(&self) -> RouterHealth;
}

impl<M: ?Sized + Probe + Send + Sync + 'static> HealthSource for Engine<M> {
    fn snapshot(&self) -> RouterHealth {
        self.health()
    }
}

/// A [`HealthCheck`] over a router's deployments, for the server's health registry: unhealthy when
/// every deployment's breaker is open, degraded when any deployment is not healthy.
#[derive(Clone)]
pub struct RouterHealthCheck {
    pub(crate) name: String,
    pub(crate) source: Arc<dyn HealthSource>,
}

impl std::fmt::Debug for RouterHealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterHealthCheck")
            .field("name", &self.name)
            .finish()
    }
}

#[async_trait]
impl HealthCheck for RouterHealthCheck {
    fn name(&self) -> &str {
        &self.name
    }
    async fn check(&self) -> ComponentHealth {
        let h = self.source.snapshot();
        match h.status {
            HealthStatus::Healthy => ComponentHealth::healthy(),
            HealthStatus::Degraded => ComponentHealth::degraded(h.summary().unwrap_or_default()),
            HealthStatus::Unhealthy => ComponentHealth::unhealthy(h.summary().unwrap_or_default()),
        }
    }
}
