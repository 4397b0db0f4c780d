//! The gateway's router: every chat and embedding call of the server goes through a
//! [`wattos_llm::router::Router`] (or an [`EmbeddingRouter`] per embedding model), so breakers,
//! fallbacks, tenant budgets, allow-lists and usage accounting apply to every model alike.
//!
//! The routers are built by [`wattos_llm::router::config`] from the `[llm.router]` settings
//! section (groups, aliases, fallbacks, breaker and retry settings, deployment knobs; see that
//! module for the keys), over every provider (`[llm.providers.<name>]`) and local model, each a
//! deployment named after it. The server adds what is its own: each model is wrapped in
//! [`Timed`] (upstream time for the overhead metric and the `llm.upstream` span), field names in
//! errors are the settings' (`llm.router...`), and each deployment gets a `/health` component.

use std::sync::Arc;

use wattos_core::embedding::EmbeddingModel;
use wattos_core::health::{ComponentHealth, HealthCheck, HealthStatus};
use wattos_core::llm::ChatModel;
use wattos_core::resilience::BreakerState;
use wattos_core::{Error, Result};
use wattos_llm::router::config;
pub use wattos_llm::router::config::{
    DeploymentConfig, GroupConfig, RoutedModel, RouterBackends, RouterConfig, ServedNames,
};
use wattos_llm::router::{EmbeddingRouter, Router, RouterHealth};

use super::timing::Timed;

/// Models the router can wrap in [`Timed`].
pub trait Timeable {
    /// `model` wrapped so its calls are timed and traced.
    fn timed(model: &Arc<Self>, deployment: &str, provider: &str) -> Arc<Self>;
}

impl Timeable for dyn ChatModel {
    fn timed(model: &Arc<Self>, deployment: &str, provider: &str) -> Arc<Self> {
        Arc::new(Timed::new(model.clone(), deployment, provider))
    }
}

impl Timeable for dyn EmbeddingModel {
    fn timed(model: &Arc<Self>, deployment: &str, provider: &str) -> Arc<Self> {
        Arc::new(Timed::new(model.clone(), deployment, provider))
    }
}

/// `m` with its model wrapped in [`Timed`].
fn timed<M: ?Sized + Timeable>(m: &RoutedModel<M>) -> RoutedModel<M> {
    RoutedModel {
        name: m.name.clone(),
        provider: m.provider.clone(),
        model: M::timed(&m.model, &m.name, &m.provider),
        upstream_model: m.upstream_model.clone(),
        price: m.price,
    }
}

/// An error of `wattos_llm::router::config` about the `router` or `providers` tables, its field
/// named as in the server's settings (`llm.router...`, `llm.providers...`).
pub(crate) fn setting_error(e: Error) -> Error {
    match e.field() {
        Some(f) if f.starts_with("router") || f.starts_with("providers") => {
            let field = format!("llm.{f}");
            Error::invalid_field(field, e.message().to_owned())
        }
        _ => e,
    }
}

/// Builds the chat router over `models` (each [`Timed`]) as `cfg` says, with
/// [`config::build_chat_router`]. `None` when there are no chat models.
///
/// # Errors
/// `invalid_input` for groups naming unknown deployments, duplicate names, unknown fallbacks.
pub fn build_chat_router(
    models: &[RoutedModel<dyn ChatModel>],
    cfg: &RouterConfig,
    backends: &RouterBackends,
    preferred_default: Option<&str>,
) -> Result<Option<(Arc<Router>, ServedNames)>> {
    let models: Vec<_> = models.iter().map(timed).collect();
    config::build_chat_router(&models, cfg, backends, preferred_default).map_err(setting_error)
}

/// Builds the embedding router of one embedding model (embedding requests name their model; each
/// router serves one group), with [`config::build_embedding_router`].
///
/// # Errors
/// `invalid_input` when a router cannot be built.
pub fn build_embedding_router(
    model: &RoutedModel<dyn EmbeddingModel>,
    cfg: &RouterConfig,
    backends: &RouterBackends,
) -> Result<Arc<EmbeddingRouter>> {
    config::build_embedding_router(&timed(model), cfg, backends).map_err(setting_error)
}

/// A `/health` component per deployment (`provider:<name>`): its breaker state, degraded while the
/// breaker is open or half-open. Never critical: one provider down does not fail readiness.
pub struct DeploymentHealthCheck {
    name: String,
    deployment: String,
    source: Arc<dyn Fn() -> RouterHealth + Send + Sync>,
}

impl std::fmt::Debug for DeploymentHealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentHealthCheck")
            .field("name", &self.name)
            .finish()
    }
}

impl DeploymentHealthCheck {
    /// One check per deployment of a chat router.
    pub fn for_chat(router: &Arc<Router>) -> Vec<Self> {
        let r = router.clone();
        Self::all(Arc::new(move || r.health()))
    }

    /// One check per deployment of an embedding router.
    pub fn for_embedding(router: &Arc<EmbeddingRouter>) -> Vec<Self> {
        let r = router.clone();
        Self::all(Arc::new(move || r.health()))
    }

    fn all(source: Arc<dyn Fn() -> RouterHealth + Send + Sync>) -> Vec<Self> {
        source()
            .deployments
            .into_iter()
            .map(|d| Self {
                name: format!("provider:{}", d.deployment),
                deployment: d.deployment,
                source: source.clone(),
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl HealthCheck for DeploymentHealthCheck {
    fn name(&self) -> &str {
        &self.name
    }
    fn critical(&self) -> bool {
        false
    }
    async fn check(&self) -> ComponentHealth {
        let health = (self.source)();
        let Some(d) = health
            .deployments
            .iter()
            .find(|d| d.deployment == self.deployment)
        else {
            return ComponentHealth::unhealthy("deployment not found");
        };
        let mut detail = format!("breaker {}", breaker_label(d.breaker));
        if let Some(e) = &d.last_error {
            detail.push_str(&format!("; last error: {e}"));
        }
        match (d.breaker, d.status) {
            (BreakerState::Closed, HealthStatus::Healthy) => ComponentHealth {
                status: HealthStatus::Healthy,
                detail: Some(detail),
            },
            _ => ComponentHealth::degraded(detail),
        }
    }
}

/// `closed`, `half_open` or `open`.
pub fn breaker_label(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::HalfOpen => "half_open",
        BreakerState::Open => "open",
    }
}
