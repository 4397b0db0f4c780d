//! Timeouts that fail with a typed [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) error.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use crate::error::{Error, Result};

/// Runs `fut` for at most `after`; `operation` names it in the error.
///
/// ```
/// use std::time::Duration;
/// use wattos_core::{resilience::with_timeout, ErrorKind};
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let slow = async { tokio::time::sleep(Duration::from_secs(5)).await; Ok(()) };
/// let err = with_timeout("slow call", Duration::from_millis(5), slow).await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Timeout);
/// # });
/// ```
///
/// # Errors
/// [`crate::ErrorKind::Timeout`] when time runs out, else `fut`'s own error.
pub async fn with_timeout<T>(
    operation: &str,
    after: Duration,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::timeout(operation, after)),
    }
}

/// A [`Layer`] that bounds each call's duration.
#[derive(Debug, Clone)]
pub struct TimeoutLayer {
    name: &'static str,
    after: Duration,
}

impl TimeoutLayer {
    /// Fails calls that take longer than `after`; `name` appears in the error.
    pub fn new(name: &'static str, after: Duration) -> Self {
        Self { name, after }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = TimeoutService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TimeoutService {
            inner,
            name: self.name,
            after: self.after,
        }
    }
}

/// A time-bounded service; see [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct TimeoutService<S> {
    inner: S,
    name: &'static str,
    after: Duration,
}

impl<S, Req> Service<Req> for TimeoutService<S>
where
    S: Service<Req, Error = Error>,
    S::Future: Send + 'static,
    S::Response: 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let fut = self.inner.call(req);
        let (name, after) = (self.name, self.after);
        Box::pin(with_timeout(name, after, fut))
    }
}
