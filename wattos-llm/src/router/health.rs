//! Per-deployment runtime state (breaker, in-flight count, latency EWMA, cooldown, recent outcomes)
//! and the health snapshot built from it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wattos_core::health::HealthStatus;
use wattos_core::resilience::{BreakerConfig, BreakerState, CircuitBreaker, SharedClock};
use wattos_core::state::StateKey;

use super::deployment::Deployment;

/// Outcomes remembered for the passive failure rate.
const WINDOW: u32 = 32;
/// Failure rate (over the remembered outcomes) at which a deployment counts as degraded.
const DEGRADED_RATE: f64 = 0.25;
/// EWMA smoothing factor for latency.
const ALPHA: f64 = 0.3;

#[derive(Debug, Default)]
struct Passive {
    /// Bit i set = the i-th most recent outcome failed.
    failures: u32,
    count: u32,
    last_error: Option<String>,
    probe: Option<ProbeOutcome>,
}

/// The result of the last active probe of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    /// Whether the probe succeeded.
    pub ok: bool,
    /// The error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Probe latency in milliseconds.
    pub latency_ms: u64,
}

/// A deployment plus its runtime state.
pub(crate) struct Slot<M: ?Sized> {
    pub(crate) dep: Deployment<M>,
    pub(crate) breaker: CircuitBreaker,
    pub(crate) in_flight: AtomicUsize,
    /// f64 bits of the latency EWMA in seconds; 0 = unmeasured.
    ewma: AtomicU64,
    /// Cooldown end as nanoseconds after `epoch`; 0 = none.
    cooldown_until: AtomicU64,
    /// Cooldowns run on tokio's clock, like the retry sleeps that wait them out.
    epoch: tokio::time::Instant,
    passive: Mutex<Passive>,
    pub(crate) rpm_key: StateKey,
    pub(crate) tpm_key: StateKey,
    pub(crate) label: String,
}

impl<M: ?Sized> Slot<M> {
    pub(crate) fn new(dep: Deployment<M>, breaker: &BreakerConfig, clock: SharedClock) -> Self {
        let breaker =
            CircuitBreaker::with_shared_clock(format!("llm:{}", dep.id), breaker.clone(), clock);
        Self {
            rpm_key: StateKey::shared("deployment_rpm", &[&dep.id]),
            tpm_key: StateKey::shared("deployment_tpm", &[&dep.id]),
            label: dep.id.to_string(),
            dep,
            breaker,
            in_flight: AtomicUsize::new(0),
            ewma: AtomicU64::new(0),
            cooldown_until: AtomicU64::new(0),
            epoch: tokio::time::Instant::now(),
            passive: Mutex::new(Passive::default()),
        }
    }

    fn passive(&self) -> MutexGuard<'_, Passive> {
        self.passive.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn latency(&self) -> Option<Duration> {
        let v = f64::from_bits(self.ewma.load(Ordering::Relaxed));
        (v > 0.0).then(|| Duration::from_secs_f64(v))
    }

    pub(crate) fn observe_latency(&self, d: Duration) {
        let sample = d.as_secs_f64().max(1e-9);
        let _ = self
            .ewma
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                let old = f64::from_bits(old);
                let new = if old > 0.0 {
                    ALPHA * sample + (1.0 - ALPHA) * old
                } else {
                    sample
                };
                Some(new.to_bits())
            });
    }

    pub(crate) fn record_outcome(&self, ok: bool, error: Option<&wattos_core::Error>) {
        let mut p = self.passive();
        p.failures = (p.failures << 1) | u32::from(!ok);
        p.count = (p.count + 1).min(WINDOW);
        if let Some(e) = error {
            p.last_error = Some(e.to_string());
        }
    }

    pub(crate) fn record_probe(&self, probe: ProbeOutcome) {
        self.passive().probe = Some(probe);
    }

    pub(crate) fn failure_rate(&self) -> f64 {
        let p = self.passive();
        if p.count == 0 {
            return 0.0;
        }
        let mask = if p.count >= 32 {
            u32::MAX
        } else {
            (1u32 << p.count) - 1
        };
        f64::from((p.failures & mask).count_ones()) / f64::from(p.count)
    }

    pub(crate) fn cooldown_remaining(&self) -> Option<Duration> {
        let until = self.cooldown_until.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        let now = tokio::time::Instant::now().saturating_duration_since(self.epoch);
        let until = Duration::from_nanos(until);
        (until > now).then(|| until - now)
    }

    /// Skips this deployment for `d` (e.g. an upstream 429's Retry-After).
    pub(crate) fn cool_down(&self, d: Duration) {
        let now = tokio::time::Instant::now().saturating_duration_since(self.epoch);
        let until = u64::try_from((now + d).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        self.cooldown_until.fetch_max(until, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> DeploymentHealth {
        let breaker = self.breaker.state();
        let failure_rate = self.failure_rate();
        let cooldown = self.cooldown_remaining();
        let (last_error, probe) = {
            let p = self.passive();
            (p.last_error.clone(), p.probe.clone())
        };
        let probe_failed = probe.as_ref().is_some_and(|p| !p.ok);
        let status = match breaker {
            BreakerState::Open => HealthStatus::Unhealthy,
            BreakerState::HalfOpen => HealthStatus::Degraded,
            BreakerState::Closed
                if cooldown.is_some() || failure_rate >= DEGRADED_RATE || probe_failed =>
            {
                HealthStatus::Degraded
            }
            BreakerState::Closed => HealthStatus::Healthy,
        };
        DeploymentHealth {
            deployment: self.label.clone(),
            status,
            breaker,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            latency_ewma_ms: self.latency().map(|d| d.as_secs_f64() * 1e3),
            recent_failure_rate: failure_rate,
            cooldown_remaining_ms: cooldown.map(|d| d.as_millis() as u64),
            last_error,
            last_probe: probe,
        }
    }
}

/// Counts a call in flight for as long as it lives.
pub(crate) struct InFlight<M: ?Sized>(pub(crate) Arc<Slot<M>>);

impl<M: ?Sized> InFlight<M> {
    /// Takes a slot unless `max` calls are already in flight.
    pub(crate) fn try_new(slot: &Arc<Slot<M>>) -> Option<Self> {
        let max = slot.dep.limits.max_concurrent.unwrap_or(usize::MAX);
        slot.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(slot.clone()))
    }
}

impl<M: ?Sized> Drop for InFlight<M> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Health of one deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentHealth {
    /// Deployment id.
    pub deployment: String,
    /// Unhealthy while the breaker is open; degraded while half-open, cooling down after a 429, when
    /// at least a quarter of recent calls failed, or when the last active probe failed.
    pub status: HealthStatus,
    /// Breaker state.
    pub breaker: BreakerState,
    /// Calls in flight.
    pub in_flight: usize,
    /// Latency EWMA of successful calls, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ewma_ms: Option<f64>,
    /// Share of failed calls among the last 32.
    pub recent_failure_rate: f64,
    /// Remaining cooldown, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_remaining_ms: Option<u64>,
    /// The last error seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The last active probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<ProbeOutcome>,
}

/// Health of every deployment of a router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterHealth {
    /// Overall: unhealthy when no deployment is usable, degraded when any is not healthy.
    pub status: HealthStatus,
    /// Per deployment, in configuration order.
    pub deployments: Vec<DeploymentHealth>,
}

impl RouterHealth {
    pub(crate) fn fold(deployments: Vec<DeploymentHealth>) -> Self {
        let unhealthy = deployments
            .iter()
            .filter(|d| d.status == HealthStatus::Unhealthy)
            .count();
        let status = if !deployments.is_empty() && unhealthy == deployments.len() {
            HealthStatus::Unhealthy
        } else if deployments
            .iter()
            .any(|d| d.status != HealthStatus::Healthy)
        {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        };
        Self {
            status,
            deployments,
        }
    }

    /// A one-line summary of the deployments that are not healthy.
    pub fn summary(&self) -> Option<String> {
        let bad: Vec<String> = self
            .deployments
            .iter()
            .filter(|d| d.status != HealthStatus::Healthy)
            .map(|d| format!("{}: {:?} (breaker {})", d.deployment, d.status, d.breaker))
            .collect();
        (!bad.is_empty()).then(|| bad.join("; "))
    }
}
