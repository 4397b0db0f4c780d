//! Cross-cutting HTTP middleware: request ids and trace context, access logs, HTTP metrics, load
//! shedding and per-request timeouts. All of them answer with the JSON error shape of [`crate::error`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tracing::Instrument;
use wattos_core::telemetry::names;
use wattos_core::{Error, RequestId, TraceContext};

use crate::error::ApiError;

/// Header carrying the request id in both directions.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Per-request metadata the middleware puts into request extensions for handlers and extractors.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The caller's valid `x-request-id`, or a fresh one.
    pub request_id: RequestId,
    /// The caller's W3C trace context, or a new root.
    pub trace: TraceContext,
}

/// Paths that are never shed or timed out: probes and scrapes must work under overload.
fn is_operational(path: &str) -> bool {
    path == "/metrics" || path == "/health" || path.starts_with("/health/")
}

/// Assigns the request id and trace context, opens the request span (with an empty `tenant_id` field
/// that authentication fills in), writes an access log line and echoes `x-request-id`.
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let request_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(RequestId::from_header)
        .unwrap_or_else(RequestId::generate);
    let incoming = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|tp| {
            let state = headers.get("tracestate").and_then(|v| v.to_str().ok());
            TraceContext::parse(tp, state)
        });
    let linked = incoming.is_some();
    let mut trace = incoming.unwrap_or_else(TraceContext::new_root);
    let span = tracing::info_span!(
        "http_request",
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        tenant_id = tracing::field::Empty,
        method = %req.method(),
        path = %req.uri().path(),
    );
    crate::otel::link_request_span(&span, &mut trace, linked);
    span.record("trace_id", trace.trace_id.as_str());
    req.extensions_mut().insert(RequestMeta {
        request_id: request_id.clone(),
        trace,
    });
    let start = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = resp.status().as_u16(),
            duration_ms = start.elapsed().as_secs_f64() * 1e3,
            "request finished"
        );
    });
    if let Ok(v) = HeaderValue::from_str(request_id.as_str()) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

/// Records `http_requests_total`, `http_request_duration_ms` and `http_requests_in_flight`, labelled
/// by method, route template (never the raw path, to bound cardinality) and status.
pub async fn http_metrics(req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let in_flight = metrics::gauge!(names::HTTP_REQUESTS_IN_FLIGHT);
    in_flight.increment(1.0);
    let start = Instant::now();
    let (resp, upstream) = crate::gateway::timing::measure(next.run(req)).await;
    in_flight.decrement(1.0);
    if let Some(upstream) = upstream {
        let overhead = start.elapsed().saturating_sub(upstream);
        metrics::histogram!(crate::gateway::timing::GATEWAY_REQUEST_OVERHEAD_US, "route" => route.clone())
            .record(overhead.as_secs_f64() * 1e6);
    }
    let status = resp.status().as_u16().to_string();
    metrics::counter!(names::HTTP_REQUESTS_TOTAL,
        "method" => method.clone(), "route" => route.clone(), "status" => status)
    .increment(1);
    metrics::histogram!(names::HTTP_REQUEST_DURATION_MS, "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64() * 1e3);
    resp
}

/// Sheds load beyond `MAX_CONCURRENT_REQUESTS` with 503 + `Retry-After` instead of queueing without
/// bound. Operational endpoints are exempt.
pub async fn load_shed(State(slots): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    if is_operational(req.uri().path()) {
        return next.run(req).await;
    }
    match slots.try_acquire_owned() {
        Ok(permit) => {
            let resp = next.run(req).await;
            drop(permit);
            resp
        }
        Err(_) => {
            metrics::counter!(names::HTTP_REQUESTS_SHED_TOTAL).increment(1);
            ApiError(
                Error::unavailable("server is at its concurrent request limit")
                    .with_retry_after(Duration::from_secs(1)),
            )
            .into_response()
        }
    }
}

/// Fails requests whose response has not started within the timeout with 504. A streaming response
/// that has started is not cut off (its own idle limits apply).
pub async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    if is_operational(req.uri().path()) {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError(Error::timeout("request", limit)).into_response(),
    }
}
