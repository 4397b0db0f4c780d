//! Circuit breaker: stop calling a dependency that keeps failing, probe it again after a pause.
//!
//! CLOSED counts consecutive dependency failures (within the monitoring window); at the threshold it
//! goes OPEN and rejects calls until `reset_timeout` passes; then HALF_OPEN admits a limited number
//! of probe calls: enough successes close it, any failure opens it again. Only
//! [`Error::is_dependency_failure`] outcomes count, so bad requests never trip a breaker.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tower_layer::Layer;
use tower_service::Service;

use super::clock::{SharedClock, system_clock};
use crate::error::{Error, Result};

/// Breaker settings. Defaults follow the original platform: 5 failures, 60 s reset, 60 s window,
/// one probe at a time, one success to close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerConfig {
    /// Consecutive dependency failures that open the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open before admitting probes.
    pub reset_timeout: Duration,
    /// Failures further apart than this do not add up.
    pub monitoring_window: Duration,
    /// Probe calls admitted at once while half-open.
    pub half_open_max_probes: u32,
    /// Successful probes needed to close again.
    pub success_threshold: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            reset_timeout: Duration::from_secs(60),
            monitoring_window: Duration::from_secs(60),
            half_open_max_probes: 1,
            success_threshold: 1,
        }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    /// Calls flow; failures are counted.
    Closed,
    /// Calls are rejected.
    Open,
    /// A limited number of probe calls flow.
    HalfOpen,
}

impl BreakerState {
    /// Numeric value for gauges: 0 closed, 1 half-open, 2 open.
    pub fn as_gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "CLOSED",
            Self::Open => "OPEN",
            Self::HalfOpen => "HALF_OPEN",
        })
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    /// Bumped on every transition; outcomes of permits from older generations are ignored.
    generation: u64,
    consecutive_failures: u32,
    last_failure: Option<Instant>,
    opened_at: Option<Instant>,
    probes_in_flight: u32,
    probe_successes: u32,
}

/// A circuit breaker. Cheap to clone; clones share state.
///
/// ```
/// use std::time::Duration;
/// use wattos_core::resilience::{BreakerConfig, BreakerState, CircuitBreaker, ManualClock};
/// use wattos_core::Error;
///
/// let clock = ManualClock::new();
/// let breaker = CircuitBreaker::with_clock("openai", BreakerConfig::default(), clock.clone());
/// for _ in 0..5 {
///     breaker.try_acquire().unwrap().failure();
/// }
/// assert_eq!(breaker.state(), BreakerState::Open);
/// assert!(breaker.try_acquire().is_err());
/// clock.advance(Duration::from_secs(60));
/// let probe = breaker.try_acquire().unwrap(); // half-open probe
/// probe.success();
/// assert_eq!(breaker.state(), BreakerState::Closed);
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    name: Arc<str>,
    config: Arc<BreakerConfig>,
    clock: SharedClock,
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("state", &self.state())
            .finish()
    }
}

impl CircuitBreaker {
    /// A breaker on the system clock.
    pub fn new(name: impl Into<Arc<str>>, config: BreakerConfig) -> Self {
        Self::with_shared_clock(name, config, system_clock())
    }

    /// A breaker on a given clock (tests use [`super::ManualClock`]).
    pub fn with_clock(
        name: impl Into<Arc<str>>,
        config: BreakerConfig,
        clock: impl super::Clock + 'static,
    ) -> Self {
        Self::with_shared_clock(name, config, Arc::new(clock))
    }

    /// A breaker on a shared clock handle.
    pub fn with_shared_clock(
        name: impl Into<Arc<str>>,
        config: BreakerConfig,
        clock: SharedClock,
    ) -> Self {
        let b = Self {
            name: name.into(),
            config: Arc::new(config),
            clock,
            inner: Arc::new(Mutex::new(Inner {
                state: BreakerState::Closed,
                generation: 0,
                consecutive_failures: 0,
                last_failure: None,
                opened_at: None,
                probes_in_flight: 0,
                probe_successes: 0,
            })),
        };
        b.publish(BreakerState::Closed);
        b
    }

    /// The name used in errors, logs and metrics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current state; an OPEN breaker whose reset timeout has passed reports HALF_OPEN.
    pub fn state(&self) -> BreakerState {
        let mut inner = self.lock();
        self.refresh(&mut inner);
        inner.state
    }

    fn transition(&self, inner: &mut Inner, to: BreakerState) {
        if inner.state == to {
            return;
        }
        let from = inner.state;
        inner.state = to;
        inner.generation += 1;
        inner.probes_in_flight = 0;
        inner.probe_successes = 0;
        match to {
            BreakerState::Open => inner.opened_at = Some(self.clock.now()),
            BreakerState::Closed => {
                inner.consecutive_failures = 0;
                inner.last_failure = None;
                inner.opened_at = None;
            }
            BreakerState::HalfOpen => {}
        }
        tracing::warn!(breaker = %self.name, %from, %to, "circuit breaker state change");
        metrics::counter!(crate::telemetry::names::BREAKER_TRANSITIONS,
            "breaker" => self.name.to_string(), "to" => to.to_string())
        .increment(1);
        self.publish(to);
    }

    fn publish(&self, state: BreakerState) {
        metrics::gauge!(crate::telemetry::names::BREAKER_STATE, "breaker" => self.name.to_string())
            .set(state.as_gauge());
    }

    fn refresh(&self, inner: &mut Inner) {
        if inner.state == BreakerState::Open
            && let Some(opened) = inner.opened_at
            && self.clock.now().saturating_duration_since(opened) >= self.config.reset_timeout
        {
            self.transition(inner, BreakerState::HalfOpen);
        }
    }

    /// Asks to make a call. The returned permit must be resolved with [`BreakerPermit::success`],
    /// [`BreakerPermit::failure`] or [`BreakerPermit::record`]; dropping it unresolved counts as neither.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Unavailable`] (retryable, with `retry_after`) while open or while all
    /// half-open probe slots are taken.
    pub fn try_acquire(&self) -> Result<BreakerPermit> {
        let mut inner = self.lock();
        self.refresh(&mut inner);
        match inner.state {
            BreakerState::Closed => Ok(self.permit(inner.generation, false)),
            BreakerState::HalfOpen if inner.probes_in_flight < self.config.half_open_max_probes => {
                inner.probes_in_flight += 1;
                Ok(self.permit(inner.generation, true))
            }
            BreakerState::HalfOpen => Err(Error::unavailable(format!(
                "circuit breaker '{}' is half-open and its probe slots are taken",
                self.name
            ))
            .with_retry_after(Duration::from_secs(1))),
            BreakerState::Open => {
                let left = inner
                    .opened_at
                    .map(|o| {
                        self.config
                            .reset_timeout
                            .saturating_sub(self.clock.now().saturating_duration_since(o))
                    })
                    .unwrap_or(self.config.reset_timeout);
                metrics::counter!(crate::telemetry::names::BREAKER_REJECTIONS,
                    "breaker" => self.name.to_string())
                .increment(1);
                Err(
                    Error::unavailable(format!("circuit breaker '{}' is open", self.name))
                        .with_retry_after(left.max(Duration::from_millis(1))),
                )
            }
        }
    }

    fn permit(&self, generation: u64, probe: bool) -> BreakerPermit {
        BreakerPermit {
            breaker: self.clone(),
            generation,
            probe,
            resolved: false,
        }
    }

    fn on_outcome(&self, generation: u64, probe: bool, outcome: Option<bool>) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return; // a late result from before the last transition says nothing about now
        }
        if probe {
            inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
        }
        let now = self.clock.now();
        match (inner.state, outcome) {
            (_, None) => {}
            (BreakerState::Closed, Some(true)) => {
                inner.consecutive_failures = 0;
            }
            (BreakerState::Closed, Some(false)) => {
                let stale = inner.last_failure.is_some_and(|t| {
                    now.saturating_duration_since(t) > self.config.monitoring_window
                });
                if stale {
                    inner.consecutive_failures = 0;
                }
                inner.consecutive_failures += 1;
                inner.last_failure = Some(now);
                if inner.consecutive_failures >= self.config.failure_threshold {
                    self.transition(&mut inner, BreakerState::Open);
                }
            }
            (BreakerState::HalfOpen, Some(true)) => {
                inner.probe_successes += 1;
                if inner.probe_successes >= self.config.success_threshold {
                    self.transition(&mut inner, BreakerState::Closed);
                }
            }
            (BreakerState::HalfOpen, Some(false)) => {
                self.transition(&mut inner, BreakerState::Open)
            }
            (BreakerState::Open, Some(_)) => {}
        }
    }

    /// Runs `fut` under the breaker, classifying its result with [`Error::is_dependency_failure`].
    ///
    /// # Errors
    /// The breaker's rejection, or `fut`'s own error.
    pub async fn call<T, F>(&self, fut: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let permit = self.try_acquire()?;
        let result = fut.await;
        permit.record(&result);
        result
    }
}

/// Permission to make one call through a [`CircuitBreaker`].
#[must_use = "resolve the permit with success(), failure() or record()"]
#[derive(Debug)]
pub struct BreakerPermit {
    breaker: CircuitBreaker,
    generation: u64,
    probe: bool,
    resolved: bool,
}

impl BreakerPermit {
    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The call succeeded.
    pub fn success(mut self) {
        self.resolved = true;
        self.breaker
            .on_outcome(self.generation, self.probe, Some(true));
    }

    /// The dependency failed.
    pub fn failure(mut self) {
        self.resolved = true;
        self.breaker
            .on_outcome(self.generation, self.probe, Some(false));
    }

    /// Records a result: dependency failures count as failures, other errors (caller mistakes) as
    /// neither, `Ok` as success.
    pub fn record<T>(self, result: &Result<T>) {
        match result {
            Ok(_) => self.success(),
            Err(e) if e.is_dependency_failure() => self.failure(),
            Err(_) => drop(self),
        }
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if !self.resolved {
            self.resolved = true;
            self.breaker.on_outcome(self.generation, self.probe, None);
        }
    }
}

/// A [`Layer`] that wraps a service in a [`CircuitBreaker`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    breaker: CircuitBreaker,
}

impl CircuitBreakerLayer {
    /// Wraps services in `breaker` (shared by every service this layer builds).
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self { breaker }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreakerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

/// A service guarded by a [`CircuitBreaker`]; see [`CircuitBreakerLayer`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerService<S> {
    inner: S,
    breaker: CircuitBreaker,
}

impl<S> CircuitBreakerService<S> {
    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for CircuitBreakerService<S>
where
    S: Service<Req, Error = Error>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.breaker.try_acquire() {
            Err(e) => Box::pin(std::future::ready(Err(e))),
            Ok(permit) => {
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let result = fut.await;
                    permit.record(&result);
                    result
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::ManualClock;

    fn breaker() -> (CircuitBreaker, ManualClock) {
        let clock = ManualClock::new();
        (
            CircuitBreaker::with_clock("test", BreakerConfig::default(), clock.clone()),
            clock,
        )
    }

    fn fail(b: &CircuitBreaker, n: u32) {
        for _ in 0..n {
            b.try_acquire().unwrap().failure();
        }
    }

    #[test]
    fn five_failures_open_the_breaker() {
        let (b, _) = breaker();
        fail(&b, 4);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, 1);
        assert_eq!(b.state(), BreakerState::Open);
        let err = b.try_acquire().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unavailable);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn success_resets_the_failure_count() {
        let (b, _) = breaker();
        fail(&b, 4);
        b.try_acquire().unwrap().success();
        fail(&b, 4);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let (b, clock) = breaker();
        fail(&b, 4);
        clock.advance(Duration::from_secs(61));
        fail(&b, 4);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, 1);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn reset_timeout_leads_to_half_open_then_closed_on_success() {
        let (b, clock) = breaker();
        fail(&b, 5);
        clock.advance(Duration::from_secs(59));
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.try_acquire().unwrap();
        assert!(probe.is_probe());
        // only one probe at a time
        assert!(b.try_acquire().is_err());
        probe.success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn failure_in_half_open_reopens() {
        let (b, clock) = breaker();
        fail(&b, 5);
        clock.advance(Duration::from_secs(60));
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        // and the reset timer restarted
        clock.advance(Duration::from_secs(30));
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(30));
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn dropped_probe_frees_its_slot() {
        let (b, clock) = breaker();
        fail(&b, 5);
        clock.advance(Duration::from_secs(60));
        drop(b.try_acquire().unwrap());
        assert!(b.try_acquire().is_ok());
    }

    #[test]
    fn late_results_from_before_a_transition_are_ignored() {
        let (b, _) = breaker();
        let slow = b.try_acquire().unwrap();
        fail(&b, 5);
        slow.success();
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn caller_errors_do_not_count() {
        let (b, _) = breaker();
        for _ in 0..10 {
            b.try_acquire()
                .unwrap()
                .record::<()>(&Err(Error::invalid_input("bad request")));
        }
        assert_eq!(b.state(), BreakerState::Closed);
        for _ in 0..5 {
            b.try_acquire().unwrap().record::<()>(&Err(Error::upstream(
                "p",
                Some(503),
                true,
                "down",
            )));
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test]
    async fn works_as_a_tower_layer() {
        use tower::{ServiceExt, service_fn};
        let (b, _) = breaker();
        let svc = CircuitBreakerLayer::new(b.clone()).layer(service_fn(|fail: bool| async move {
            if fail {
                Err(Error::unavailable("down"))
            } else {
                Ok("ok")
            }
        }));
        for _ in 0..5 {
            assert!(svc.clone().oneshot(true).await.is_err());
        }
        let err = svc.clone().oneshot(false).await.unwrap_err();
        assert!(err.message().contains("open"));
    }
}
