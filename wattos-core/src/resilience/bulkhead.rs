//! Bulkhead: cap concurrent calls to a dependency and how long a caller may queue for a slot.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{Error, Result};

/// Bulkhead settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkheadConfig {
    /// Calls allowed at once.
    pub max_concurrent: usize,
    /// How long a caller may wait for a slot; zero rejects at once when full.
    pub max_wait: Duration,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 64,
            max_wait: Duration::from_millis(100),
        }
    }
}

/// A concurrency limiter. Clones share slots.
///
/// ```
/// use std::time::Duration;
/// use wattos_core::resilience::{Bulkhead, BulkheadConfig};
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let b = Bulkhead::new("db", BulkheadConfig { max_concurrent: 1, max_wait: Duration::ZERO });
/// let held = b.acquire().await.unwrap();
/// assert!(b.acquire().await.is_err()); // full: rejected at once
/// drop(held);
/// assert!(b.acquire().await.is_ok());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Bulkhead {
    name: Arc<str>,
    config: BulkheadConfig,
    slots: Arc<Semaphore>,
}

/// A held bulkhead slot; released on drop.
#[derive(Debug)]
pub struct BulkheadPermit {
    _permit: OwnedSemaphorePermit,
}

impl Bulkhead {
    /// A bulkhead named `name` (used in errors and metrics).
    pub fn new(name: impl Into<Arc<str>>, config: BulkheadConfig) -> Self {
        let slots = Arc::new(Semaphore::new(config.max_concurrent));
        Self {
            name: name.into(),
            config,
            slots,
        }
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.config.max_concurrent - self.slots.available_permits()
    }

    /// The settings.
    pub fn config(&self) -> &BulkheadConfig {
        &self.config
    }

    /// Takes a slot, waiting at most `max_wait`.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Unavailable`] (retryable, with a `retry_after`) when no slot frees in time.
    pub async fn acquire(&self) -> Result<BulkheadPermit> {
        let sem = self.slots.clone();
        let permit = if self.config.max_wait.is_zero() {
            sem.try_acquire_owned().ok()
        } else {
            tokio::time::timeout(self.config.max_wait, sem.acquire_owned())
                .await
                .ok()
                .and_then(|r| r.ok())
        };
        match permit {
            Some(p) => Ok(BulkheadPermit { _permit: p }),
            None => {
                metrics::counter!(crate::telemetry::names::BULKHEAD_REJECTIONS,
                    "bulkhead" => self.name.to_string())
                .increment(1);
                Err(Error::unavailable(format!(
                    "'{}' is at its concurrency limit of {}",
                    self.name, self.config.max_concurrent
                ))
                .with_retry_after(Duration::from_secs(1)))
            }
        }
    }

    /// Runs `fut` inside a slot.
    ///
    /// # Errors
    /// The rejection, or `fut`'s own error.
    pub async fn run<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let _slot = self.acquire().await?;
        fut.await
    }
}

/// A [`Layer`] that runs every call inside a shared [`Bulkhead`].
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    bulkhead: Bulkhead,
}

impl BulkheadLayer {
    /// Uses `bulkhead` for every service built.
    pub fn new(bulkhead: Bulkhead) -> Self {
        Self { bulkhead }
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            inner,
            bulkhead: self.bulkhead.clone(),
        }
    }
}

/// A concurrency-limited service; see [`BulkheadLayer`].
#[derive(Debug, Clone)]
pub struct BulkheadService<S> {
    inner: S,
    bulkhead: Bulkhead,
}

impl<S, Req> Service<Req> for BulkheadService<S>
where
    S: Service<Req, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let bulkhead = self.bulkhead.clone();
        Box::pin(async move {
            let _slot = bulkhead.acquire().await?;
            inner.call(req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn queued_caller_gets_a_slot_within_max_wait() {
        let b = Bulkhead::new(
            "t",
            BulkheadConfig {
                max_concurrent: 1,
                max_wait: Duration::from_millis(100),
            },
        );
        let held = b.acquire().await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire().await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        assert!(waiter.await.unwrap().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn rejects_after_max_wait() {
        let b = Bulkhead::new(
            "t",
            BulkheadConfig {
                max_concurrent: 2,
                max_wait: Duration::from_millis(100),
            },
        );
        let _a = b.acquire().await.unwrap();
        let _b = b.acquire().await.unwrap();
        assert_eq!(b.in_flight(), 2);
        let err = b.acquire().await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unavailable);
        assert!(err.is_retryable());
        assert!(err.retry_after().is_some());
    }

    #[tokio::test]
    async fn layer_limits_concurrency() {
        use tower::{ServiceExt, service_fn};
        let b = Bulkhead::new(
            "t",
            BulkheadConfig {
                max_concurrent: 1,
                max_wait: Duration::ZERO,
            },
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rx = Arc::new(tokio::sync::Mutex::new(Some(rx)));
        let svc = BulkheadLayer::new(b.clone()).layer(service_fn(move |_: ()| {
            let rx = rx.clone();
            async move {
                if let Some(rx) = rx.lock().await.take() {
                    let _ = rx.await;
                }
                Ok::<_, Error>(())
            }
        }));
        let first = tokio::spawn(svc.clone().oneshot(()));
        while b.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(svc.clone().oneshot(()).await.is_err());
        tx.send(()).unwrap();
        first.await.unwrap().unwrap();
    }
}
