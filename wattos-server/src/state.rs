//! Shared application state handed to every handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use wattos_core::config::{Config, DeploymentMode};
use wattos_core::health::HealthRegistry;

use crate::checks::{DataDirCheck, LocalModelsCheck, TcpReachableCheck};

/// Application state: configuration, health checks, metrics and lifecycle flags. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    health: HealthRegistry,
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
    /// Builds the state for `config`: registers a health check for the data folder (embedded), the
    /// local models, and every configured external service.
    pub fn new(config: Config) -> Self {
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
        Self::with_health(config, health)
    }

    /// Builds the state with an explicit health registry (for embedding apps and tests).
    pub fn with_health(config: Config, health: HealthRegistry) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                health,
                metrics: crate::telemetry::prometheus(),
                draining: AtomicBool::new(false),
                started_at: Instant::now(),
            }),
        }
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
