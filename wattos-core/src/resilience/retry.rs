//! Retries with exponential backoff, full jitter and `Retry-After`, bounded by a deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{Error, Result};

/// How much randomness to add to backoff delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Exact exponential delays (tests, single clients).
    None,
    /// Uniform in `[0, delay]` ("full jitter"): spreads retry storms best.
    #[default]
    Full,
}

/// Retry settings. Defaults follow the original platform: 3 attempts, 1000 ms base, x2, 30 s cap,
/// full jitter, honour `Retry-After`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts including the first (1 = no retries).
    pub max_attempts: u32,
    /// Delay before the first retry (before jitter).
    pub base_delay: Duration,
    /// Growth factor per retry.
    pub multiplier: f64,
    /// Upper bound of any delay; a `Retry-After` above it ends the retries instead of waiting.
    pub max_delay: Duration,
    /// Jitter mode.
    pub jitter: Jitter,
    /// Wait at least the `Retry-After` the failing party asked for.
    pub honor_retry_after: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(1000),
            multiplier: 2.0,
            max_delay: Duration::from_secs(30),
            jitter: Jitter::Full,
            honor_retry_after: true,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The exponential delay before retry number `retry` (0-based), capped, before jitter.
    pub fn base_backoff(&self, retry: u32) -> Duration {
        let factor = self.multiplier.max(1.0).powi(retry.min(64) as i32);
        let ms = (self.base_delay.as_secs_f64() * factor).min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(ms.max(0.0))
    }

    /// The delay before retry `retry` with jitter drawn from `rng`.
    pub fn backoff(&self, retry: u32, rng: &mut fastrand::Rng) -> Duration {
        let d = self.base_backoff(retry);
        match self.jitter {
            Jitter::None => d,
            Jitter::Full => d.mul_f64(rng.f64()),
        }
    }

    /// Decides whether to retry after `attempt` (1-based) failed with `err`, and how long to wait.
    /// `None` means give up: the error is not retryable, attempts are used up, the requested
    /// `Retry-After` exceeds `max_delay`, or the wait would pass `deadline`.
    pub fn next_delay(
        &self,
        attempt: u32,
        err: &Error,
        deadline: Option<Instant>,
        rng: &mut fastrand::Rng,
    ) -> Option<Duration> {
        if !err.is_retryable() || attempt >= self.max_attempts {
            return None;
        }
        let mut delay = self.backoff(attempt - 1, rng);
        if self.honor_retry_after
            && let Some(ra) = err.retry_after()
        {
            if ra > self.max_delay {
                return None;
            }
            delay = delay.max(ra);
        }
        if let Some(deadline) = deadline
            && Instant::now() + delay >= deadline
        {
            return None;
        }
        Some(delay)
    }

    /// Runs `op` until it succeeds, fails permanently, or the policy gives up; returns the last error.
    ///
    /// `op` gets the 1-based attempt number. Waits use tokio's timer.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use wattos_core::resilience::{Jitter, RetryPolicy};
    /// use wattos_core::Error;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let policy = RetryPolicy { base_delay: Duration::from_millis(1), jitter: Jitter::None, ..Default::default() };
    /// let calls = AtomicU32::new(0);
    /// let out = policy.retry(None, |attempt| {
    ///     calls.fetch_add(1, Ordering::SeqCst);
    ///     async move { if attempt < 3 { Err(Error::unavailable("flaky")) } else { Ok(attempt) } }
    /// }).await;
    /// assert_eq!(out.unwrap(), 3);
    /// assert_eq!(calls.load(Ordering::SeqCst), 3);
    /// # });
    /// ```
    ///
    /// # Errors
    /// The last error `op` returned.
    pub async fn retry<T, F, Fut>(&self, deadline: Option<Instant>, mut op: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut rng = fastrand::Rng::new();
        let mut attempt = 1;
        loop {
            match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) => match self.next_delay(attempt, &e, deadline, &mut rng) {
                    None => return Err(e),
                    Some(delay) => {
                        tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, error = %e, "retrying");
                        metrics::counter!(crate::telemetry::names::RETRIES).increment(1);
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                },
            }
        }
    }
}

/// A [`Layer`] that retries failed calls of a service per a [`RetryPolicy`]. Requests must be `Clone`.
#[derive(Debug, Clone)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// Retries per `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = RetryService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RetryService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// A retrying service; see [`RetryLayer`].
#[derive(Debug, Clone)]
pub struct RetryService<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S, Req> Service<Req> for RetryService<S>
where
    S: Service<Req, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    Req: Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let svc = self.inner.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            policy
                .retry(None, move |_| {
                    let mut s = svc.clone();
                    let req = req.clone();
                    async move {
                        std::future::poll_fn(|cx| s.poll_ready(cx)).await?;
                        s.call(req).await
                    }
                })
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn exact() -> RetryPolicy {
        RetryPolicy {
            jitter: Jitter::None,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn exponential_schedule_with_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            ..exact()
        };
        let ms: Vec<u128> = (0..7).map(|i| p.base_backoff(i).as_millis()).collect();
        assert_eq!(ms, vec![1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    }

    #[test]
    fn full_jitter_stays_within_bounds() {
        let p = RetryPolicy::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..200 {
            let d = p.backoff(2, &mut rng);
            assert!(d <= Duration::from_millis(4000));
            distinct.insert(d.as_millis());
        }
        assert!(distinct.len() > 50, "jitter should spread delays");
    }

    #[test]
    fn gives_up_on_permanent_errors_and_after_max_attempts() {
        let p = exact();
        let mut rng = fastrand::Rng::new();
        assert_eq!(
            p.next_delay(1, &Error::invalid_input("x"), None, &mut rng),
            None
        );
        let transient = Error::unavailable("x");
        assert_eq!(
            p.next_delay(1, &transient, None, &mut rng),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            p.next_delay(2, &transient, None, &mut rng),
            Some(Duration::from_secs(2))
        );
        assert_eq!(p.next_delay(3, &transient, None, &mut rng), None);
    }

    #[test]
    fn retry_after_is_honoured_and_bounded() {
        let p = exact();
        let mut rng = fastrand::Rng::new();
        let e = Error::rate_limited("slow down").with_retry_after(Duration::from_secs(7));
        assert_eq!(
            p.next_delay(1, &e, None, &mut rng),
            Some(Duration::from_secs(7))
        );
        // shorter Retry-After than the backoff: the backoff wins
        let e = Error::rate_limited("x").with_retry_after(Duration::from_millis(10));
        assert_eq!(
            p.next_delay(2, &e, None, &mut rng),
            Some(Duration::from_secs(2))
        );
        // longer than the cap: give up so a router can fall back instead of stalling
        let e = Error::rate_limited("x").with_retry_after(Duration::from_secs(3600));
        assert_eq!(p.next_delay(1, &e, None, &mut rng), None);
    }

    #[test]
    fn deadline_stops_retries() {
        let p = exact();
        let mut rng = fastrand::Rng::new();
        let deadline = Instant::now() + Duration::from_millis(500);
        assert_eq!(
            p.next_delay(1, &Error::unavailable("x"), Some(deadline), &mut rng),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waits_follow_the_schedule() {
        let p = exact();
        let start = tokio::time::Instant::now();
        let stamps = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = stamps.clone();
        let out: Result<()> = p
            .retry(None, move |_| {
                s2.lock().unwrap().push(start.elapsed().as_millis());
                async { Err(Error::timeout("call", Duration::from_secs(1))) }
            })
            .await;
        assert_eq!(out.unwrap_err().kind(), crate::ErrorKind::Timeout);
        assert_eq!(*stamps.lock().unwrap(), vec![0, 1000, 3000]);
    }

    #[tokio::test(start_paused = true)]
    async fn tower_layer_retries_transient_failures() {
        use tower::{ServiceExt, service_fn};
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let svc = RetryLayer::new(exact()).layer(service_fn(move |x: u32| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(Error::unavailable("flaky"))
                } else {
                    Ok(x * 2)
                }
            }
        }));
        assert_eq!(svc.oneshot(21).await.unwrap(), 42);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
