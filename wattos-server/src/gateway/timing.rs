//! Gateway overhead: the time a request spends in the server minus the time spent waiting on
//! upstream models.
//!
//! [`Timed`] wraps every deployment the router calls and adds each upstream call's duration (for a
//! stream: until the stream is open) to a per-request accumulator that [`measure`] scopes around
//! the request. The HTTP metrics middleware then records `gateway_request_overhead_us` for requests
//! that made an upstream call. Each upstream call also gets an `llm.upstream` tracing span.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::Instrument;
use wattos_core::embedding::{EmbeddingModel, Embeddings};
use wattos_core::llm::{Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream};
use wattos_core::{RequestContext, Result};

/// Histogram: server time minus upstream time of requests that called a model, microseconds, by
/// route.
pub const GATEWAY_REQUEST_OVERHEAD_US: &str = "gateway_request_overhead_us";

tokio::task_local! {
    static UPSTREAM: Accumulator;
}

#[derive(Clone, Default)]
struct Accumulator {
    nanos: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
}

/// Runs `f` with an upstream-time accumulator; returns its output and the upstream time, when at
/// least one upstream call was made.
pub async fn measure<F: Future>(f: F) -> (F::Output, Option<Duration>) {
    let acc = Accumulator::default();
    let out = UPSTREAM.scope(acc.clone(), f).await;
    let upstream = (acc.calls.load(Ordering::Relaxed) > 0)
        .then(|| Duration::from_nanos(acc.nanos.load(Ordering::Relaxed)));
    (out, upstream)
}

fn add(elapsed: Duration) {
    let _ = UPSTREAM.try_with(|acc| {
        acc.nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        acc.calls.fetch_add(1, Ordering::Relaxed);
    });
}

/// A model whose calls are timed (see the module docs).
pub struct Timed<M: ?Sized> {
    inner: Arc<M>,
    deployment: String,
    provider: String,
}

impl<M: ?Sized> Timed<M> {
    /// Wraps `inner`, served as deployment `deployment` of kind `provider`.
    pub fn new(inner: Arc<M>, deployment: &str, provider: &str) -> Self {
        Self {
            inner,
            deployment: deployment.to_owned(),
            provider: provider.to_owned(),
        }
    }

    fn span(&self, operation: &'static str, model: &str) -> tracing::Span {
        tracing::info_span!(
            "llm.upstream",
            otel.kind = "client",
            gen_ai.operation.name = operation,
            gen_ai.system = %self.provider,
            gen_ai.request.model = %model,
            deployment = %self.deployment,
        )
    }
}

#[async_trait]
impl ChatModel for Timed<dyn ChatModel> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn chat(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
        let span = self.span("chat", &req.model);
        let start = Instant::now();
        let out = self.inner.chat(ctx, req).instrument(span).await;
        add(start.elapsed());
        out
    }
    async fn chat_stream(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatStream> {
        let span = self.span("chat", &req.model);
        let start = Instant::now();
        let out = self.inner.chat_stream(ctx, req).instrument(span).await;
        add(start.elapsed());
        out
    }
}

#[async_trait]
impl EmbeddingModel for Timed<dyn EmbeddingModel> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    fn max_batch_size(&self) -> usize {
        self.inner.max_batch_size()
    }
    async fn embed(&self, ctx: &RequestContext, inputs: &[String]) -> Result<Embeddings> {
        let span = self.span("embeddings", self.inner.name());
        let start = Instant::now();
        let out = self.inner.embed(ctx, inputs).instrument(span).await;
        add(start.elapsed());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn upstream_time_is_summed_inside_the_scope_only() {
        let ((), none) = measure(async {}).await;
        assert_eq!(none, None);
        let ((), some) = measure(async {
            add(Duration::from_millis(2));
            add(Duration::from_millis(3));
        })
        .await;
        assert_eq!(some, Some(Duration::from_millis(5)));
        add(Duration::from_millis(1)); // outside any scope: ignored, no panic
    }
}
