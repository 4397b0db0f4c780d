//! Health checks: each dependency reports [`ComponentHealth`]; a [`HealthRegistry`] runs them all
//! concurrently (each under a timeout) and folds them into healthy / degraded / unhealthy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The health of one component or of the whole service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Fully working.
    Healthy,
    /// Working with reduced function (a non-critical component is down, a breaker is open).
    Degraded,
    /// Not able to serve.
    Unhealthy,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentHealth {
    /// The verdict.
    pub status: HealthStatus,
    /// A short explanation, e.g. the error or `breaker OPEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ComponentHealth {
    /// Healthy, no detail.
    pub fn healthy() -> Self {
        Self {
            status: HealthStatus::Healthy,
            detail: None,
        }
    }
    /// Degraded, with a reason.
    pub fn degraded(detail: impl Into<String>) -> Self {
        Self {
            status: HealthStatus::Degraded,
            detail: Some(detail.into()),
        }
    }
    /// Unhealthy, with a reason.
    pub fn unhealthy(detail: impl Into<String>) -> Self {
        Self {
            status: HealthStatus::Unhealthy,
            detail: Some(detail.into()),
        }
    }
}

/// A dependency check.
///
/// ```
/// use async_trait::async_trait;
/// use wattos_core::health::{ComponentHealth, HealthCheck, HealthRegistry, HealthStatus};
///
/// struct Disk;
/// #[async_trait]
/// impl HealthCheck for Disk {
///     fn name(&self) -> &str { "disk" }
///     async fn check(&self) -> ComponentHealth { ComponentHealth::healthy() }
/// }
/// struct Cache;
/// #[async_trait]
/// impl HealthCheck for Cache {
///     fn name(&self) -> &str { "cache" }
///     fn critical(&self) -> bool { false }
///     async fn check(&self) -> ComponentHealth { ComponentHealth::unhealthy("connection refused") }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let mut registry = HealthRegistry::default();
/// registry.register(Disk);
/// registry.register(Cache);
/// let report = registry.report().await;
/// assert_eq!(report.status, HealthStatus::Degraded); // a non-critical failure only degrades
/// # });
/// ```
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// Component name in the report.
    fn name(&self) -> &str;
    /// Whether the service is unusable without this component (and readiness must fail).
    fn critical(&self) -> bool {
        true
    }
    /// Runs the check. Must not hang: the registry applies a timeout anyway.
    async fn check(&self) -> ComponentHealth;
}

/// One component's entry in a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentReport {
    /// The verdict.
    pub status: HealthStatus,
    /// Whether the component is critical.
    pub critical: bool,
    /// Explanation, when not healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// How long the check took.
    pub latency_ms: u64,
}

/// The folded result of all checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// Overall verdict: unhealthy if a critical component is unhealthy; degraded if anything else
    /// is not healthy; healthy otherwise.
    pub status: HealthStatus,
    /// Per-component results.
    pub components: BTreeMap<String, ComponentReport>,
}

impl HealthReport {
    /// Whether every critical component is healthy or degraded (readiness).
    pub fn is_ready(&self) -> bool {
        self.status != HealthStatus::Unhealthy
    }
}

/// Runs registered checks concurrently.
#[derive(Clone)]
pub struct HealthRegistry {
    checks: Vec<Arc<dyn HealthCheck>>,
    timeout: Duration,
}

impl Default for HealthRegistry {
    fn default() -> Self {
        Self {
            checks: Vec::new(),
            timeout: Duration::from_secs(2),
        }
    }
}

impl std::fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthRegistry")
            .field(
                "checks",
                &self
                    .checks
                    .iter()
                    .map(|c| c.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HealthRegistry {
    /// An empty registry whose checks time out after `timeout` (reported as unhealthy).
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            checks: Vec::new(),
            timeout,
        }
    }

    /// Adds a check.
    pub fn register(&mut self, check: impl HealthCheck + 'static) {
        self.checks.push(Arc::new(check));
    }

    /// Adds a shared check.
    pub fn register_arc(&mut self, check: Arc<dyn HealthCheck>) {
        self.checks.push(check);
    }

    /// Runs every check and folds the results.
    pub async fn report(&self) -> HealthReport {
        let runs = self.checks.iter().map(|c| {
            let c = c.clone();
            let timeout = self.timeout;
            async move {
                let start = Instant::now();
                let health = tokio::time::timeout(timeout, c.check())
                    .await
                    .unwrap_or_else(|_| {
                        ComponentHealth::unhealthy(format!(
                            "check timed out after {} ms",
                            timeout.as_millis()
                        ))
                    });
                let report = ComponentReport {
                    status: health.status,
                    critical: c.critical(),
                    detail: health.detail,
                    latency_ms: start.elapsed().as_millis() as u64,
                };
                (c.name().to_owned(), report)
            }
        });
        let components: BTreeMap<_, _> =
            futures::future::join_all(runs).await.into_iter().collect();
        let status = components.values().fold(HealthStatus::Healthy, |acc, c| {
            let s = match (c.status, c.critical) {
                (HealthStatus::Unhealthy, false) => HealthStatus::Degraded,
                (s, _) => s,
            };
            acc.max(s)
        });
        HealthReport { status, components }
    }
}

/// A check that is always healthy: for embedded components that live in-process.
#[derive(Debug, Clone)]
pub struct StaticCheck {
    name: String,
    detail: Option<String>,
}

impl StaticCheck {
    /// A healthy component named `name` with an informational detail.
    pub fn new(name: impl Into<String>, detail: Option<String>) -> Self {
        Self {
            name: name.into(),
            detail,
        }
    }
}

#[async_trait]
impl HealthCheck for StaticCheck {
    fn name(&self) -> &str {
        &self.name
    }
    async fn check(&self) -> ComponentHealth {
        ComponentHealth {
            status: HealthStatus::Healthy,
            detail: self.detail.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, bool, ComponentHealth);
    #[async_trait]
    impl HealthCheck for Fixed {
        fn name(&self) -> &str {
            self.0
        }
        fn critical(&self) -> bool {
            self.1
        }
        async fn check(&self) -> ComponentHealth {
            self.2.clone()
        }
    }

    struct Hangs;
    #[async_trait]
    impl HealthCheck for Hangs {
        fn name(&self) -> &str {
            "hangs"
        }
        async fn check(&self) -> ComponentHealth {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn critical_failure_is_unhealthy() {
        let mut r = HealthRegistry::default();
        r.register(Fixed("db", true, ComponentHealth::unhealthy("down")));
        r.register(Fixed("cache", false, ComponentHealth::healthy()));
        let rep = r.report().await;
        assert_eq!(rep.status, HealthStatus::Unhealthy);
        assert!(!rep.is_ready());
        assert_eq!(rep.components["db"].detail.as_deref(), Some("down"));
    }

    #[tokio::test]
    async fn degraded_component_degrades() {
        let mut r = HealthRegistry::default();
        r.register(Fixed(
            "llm",
            true,
            ComponentHealth::degraded("breaker OPEN"),
        ));
        assert_eq!(r.report().await.status, HealthStatus::Degraded);
    }

    #[tokio::test(start_paused = true)]
    async fn hanging_check_times_out_as_unhealthy() {
        let mut r = HealthRegistry::with_timeout(Duration::from_millis(50));
        r.register(Hangs);
        let rep = r.report().await;
        assert_eq!(rep.components["hangs"].status, HealthStatus::Unhealthy);
    }

    #[tokio::test]
    async fn empty_registry_is_healthy() {
        assert_eq!(
            HealthRegistry::default().report().await.status,
            HealthStatus::Healthy
        );
    }
}
