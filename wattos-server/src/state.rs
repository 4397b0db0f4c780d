//! Shared application state handed to every handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use wattos_core::config::{Config, DeploymentMode};
use wattos_core::health::HealthRegistry;

use crate::checks::{DataDirCheck, LocalModelsCheck, TcpReachableCheck};
use crate::gateway::{GatewayState, ModelCatalog};

/// Application state: configuration, health checks, metrics and lifecycle flags. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    health: HealthRegistry,
    catalog: ModelCatalog,
    auth: Option<crate::auth::Auth>,
    rag: Option<crate::rag::RagService>,
    agents: Option<crate::agents::AgentsService>,
    jobs: Option<crate::jobs::Jobs>,
    events: Option<crate::events::EventPublisher>,
    conversations: Option<crate::conversations::ConversationServices>,
    memories: Option<crate::memories::MemoryService>,
    metrics: PrometheusHandle,
    draining: AtomicBool,
    started_at: Instant,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("mode", &self.inner.config.mode)
            .field("health", &self.inner.health)
            .field("draining", &self.is_draining())
            .finish()
    }
}

impl AppState {
    /// Builds the state for `config` with no models: see [`AppState::default_health`].
    pub fn new(config: Config) -> Self {
        let health = Self::default_health(&config);
        Self::with_parts(config, health, ModelCatalog::default())
    }

    /// Health checks for `config`: the data folder (embedded), the local models, and every
    /// configured external service.
    pub fn default_health(config: &Config) -> HealthRegistry {
        let mut health = HealthRegistry::default();
        if config.mode == DeploymentMode::Embedded {
            health.register(DataDirCheck::new(config.data_dir.clone()));
        }
        health.register(LocalModelsCheck::new(config.models.dir.clone()));
        let services = [
            (
                "postgres",
                config.database.as_ref().map(|d| d.url.expose().clone()),
                5432,
            ),
            (
                "redis",
                config.redis.as_ref().map(|r| r.url.expose().clone()),
                6379,
            ),
            (
                "nats",
                config.nats.as_ref().map(|n| n.url.expose().clone()),
                4222,
            ),
        ];
        for (name, url, port) in services {
            if let Some(check) = url.and_then(|u| TcpReachableCheck::from_url(name, &u, port)) {
                health.register(check);
            }
        }
        health
    }

    /// Builds the state with an explicit health registry and no models (for embedding apps and tests).
    pub fn with_health(config: Config, health: HealthRegistry) -> Self {
        Self::with_parts(config, health, ModelCatalog::default())
    }

    /// Builds the state from its parts.
    pub fn with_parts(config: Config, health: HealthRegistry, catalog: ModelCatalog) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                health,
                catalog,
                auth: None,
                rag: None,
                agents: None,
                jobs: None,
                events: None,
                conversations: None,
                memories: None,
                metrics: crate::telemetry::prometheus(),
                draining: AtomicBool::new(false),
                started_at: Instant::now(),
            }),
        }
    }

    /// Turns authentication on (`Some`) or off (`None`: every request acts as the system principal of
    /// the `default` tenant). Call before the state is shared.
    pub fn with_auth(mut self, auth: Option<crate::auth::Auth>) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.auth = auth,
            None => tracing::error!("with_auth called on a shared AppState; ignored"),
        }
        self
    }

    /// Turns the RAG API on (`Some`). Call before the state is shared.
    pub fn with_rag(mut self, rag: Option<crate::rag::RagService>) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.rag = rag,
            None => tracing::error!("with_rag called on a shared AppState; ignored"),
        }
        self
    }

    /// Serves conversations and feedback from `services` (see [`crate::conversations`]).
    pub fn with_conversations(
        mut self,
        services: Option<crate::conversations::ConversationServices>,
    ) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.conversations = services,
            None => tracing::error!("with_conversations called on a shared AppState; ignored"),
        }
        self
    }

    /// Serves long-term memories from `service` (see [`crate::memories`]). Call before the state
    /// is shared.
    pub fn with_memories(mut self, service: Option<crate::memories::MemoryService>) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.memories = service,
            None => tracing::error!("with_memories called on a shared AppState; ignored"),
        }
        self
    }

    /// The long-term memory service, when configured.
    pub fn memories(&self) -> Option<&crate::memories::MemoryService> {
        self.inner.memories.as_ref()
    }

    /// Sets the background job queue (async ingestion). When this instance runs a worker, its
    /// heartbeat check (`worker`) joins the health checks, so readiness fails when the worker
    /// loop dies or hangs; start the worker with [`crate::jobs::Jobs::spawn_worker`]. Call before
    /// the state is shared.
    pub fn with_jobs(mut self, jobs: Option<crate::jobs::Jobs>) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => {
                if let Some(check) = jobs.as_ref().and_then(crate::jobs::Jobs::health_check) {
                    inner.health.register(check);
                }
                inner.jobs = jobs;
            }
            None => tracing::error!("with_jobs called on a shared AppState; ignored"),
        }
        self
    }

    /// Sets the platform event publisher (usage and audit events). Call before the state is
    /// shared.
    pub fn with_events(mut self, events: Option<crate::events::EventPublisher>) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.events = events,
            None => tracing::error!("with_events called on a shared AppState; ignored"),
        }
        self
    }

    /// The platform event publisher, when configured (subscribe to in-process events with
    /// [`crate::events::EventPublisher::subscribe`]).
    pub fn events(&self) -> Option<&crate::events::EventPublisher> {
        self.inner.events.as_ref()
    }

    /// Turns the agents API on (`Some`); register graphs on the service (also after this call).
    /// Call before the state is shared.
    pub fn with_agents(mut self, agents: Option<crate::agents::AgentsService>) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.agents = agents,
            None => tracing::error!("with_agents called on a shared AppState; ignored"),
        }
        self
    }

    /// The RAG service, when RAG is on.
    pub fn rag(&self) -> Option<&crate::rag::RagService> {
        self.inner.rag.as_ref()
    }

    /// The agents service, when agents are on.
    pub fn agents(&self) -> Option<&crate::agents::AgentsService> {
        self.inner.agents.as_ref()
    }

    /// The background job queue, when configured.
    pub fn jobs(&self) -> Option<&crate::jobs::Jobs> {
        self.inner.jobs.as_ref()
    }

    /// The conversation and feedback stores, when configured.
    pub fn conversations(&self) -> Option<&crate::conversations::ConversationServices> {
        self.inner.conversations.as_ref()
    }

    /// Authentication, when it is on.
    pub fn auth(&self) -> Option<&crate::auth::Auth> {
        self.inner.auth.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The health checks.
    pub fn health(&self) -> &HealthRegistry {
        &self.inner.health
    }

    /// The Prometheus handle.
    pub fn metrics(&self) -> &PrometheusHandle {
        &self.inner.metrics
    }

    /// Marks the server as shutting down: readiness fails so load balancers stop sending traffic.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Seconds since the state was built.
    pub fn uptime_secs(&self) -> u64 {
        self.inner.started_at.elapsed().as_secs()
    }
}

impl GatewayState for AppState {
    fn catalog(&self) -> &ModelCatalog {
        &self.inner.catalog
    }

    fn conversations(&self) -> Option<&crate::conversations::ConversationServices> {
        self.inner.conversations.as_ref()
    }
}
