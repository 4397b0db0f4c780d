//! [`WorkerHealthCheck`]: readiness fed by the worker loop's heartbeat.

use std::time::Duration;

use async_trait::async_trait;
use wattos_core::health::{ComponentHealth, HealthCheck, HealthStatus};
use wattos_rag::jobs::WorkerHeartbeat;

/// Critical check `worker`: unhealthy when this instance's worker loop ended (error, panic) or
/// has not beaten for `timeout` (stuck). A worker that was never started is reported healthy
/// with a note: readiness is about the worker this instance runs, and an embedding application
/// that does not call [`super::Jobs::spawn_worker`] runs none.
#[derive(Debug, Clone)]
pub struct WorkerHealthCheck {
    heartbeat: WorkerHeartbeat,
    timeout: Duration,
}

impl WorkerHealthCheck {
    /// Watches `heartbeat`; `timeout` without a beat is unhealthy.
    pub fn new(heartbeat: WorkerHeartbeat, timeout: Duration) -> Self {
        Self { heartbeat, timeout }
    }
}

#[async_trait]
impl HealthCheck for WorkerHealthCheck {
    fn name(&self) -> &str {
        "worker"
    }

    async fn check(&self) -> ComponentHealth {
        if let Some(why) = self.heartbeat.stopped() {
            return ComponentHealth::unhealthy(why);
        }
        match self.heartbeat.since_last_beat() {
            None => ComponentHealth {
                status: HealthStatus::Healthy,
                detail: Some("not started".into()),
            },
            Some(age) if age > self.timeout => ComponentHealth::unhealthy(format!(
                "no heartbeat from the worker loop for {} s (limit {} s)",
                age.as_secs(),
                self.timeout.as_secs()
            )),
            Some(_) => ComponentHealth::healthy(),
        }
    }
}
