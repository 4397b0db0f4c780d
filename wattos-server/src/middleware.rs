//! Cross-cutting HTTP middleware: request ids and trace context, access logs, HTTP metrics, panic
//! recovery, body read deadlines, load shedding and per-request timeouts. All of them answer with
//! the JSON error shape of the route's API ([`crate::error::WireFormat`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;
use tracing::Instrument;
use wattos_core::telemetry::names;
use wattos_core::{Error, RequestId, TraceContext};

use crate::error::{WireFormat, error_response};

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
            error_response(
                WireFormat::for_path(req.uri().path()),
                &Error::unavailable("server is at its concurrent request limit")
                    .with_retry_after(Duration::from_secs(1)),
            )
        }
    }
}

/// Fails requests whose response has not started within the timeout with 504. A streaming response
/// that has started is not cut off (its own idle limits apply).
pub async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    if is_operational(req.uri().path()) {
        return next.run(req).await;
    }
    let format = WireFormat::for_path(req.uri().path());
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => error_response(format, &Error::timeout("request", limit)),
    }
}

/// Settings of [`receive_body`].
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body in bytes (413 beyond).
    pub max_bytes: usize,
    /// Longest time to receive it (408 beyond).
    pub read_timeout: Duration,
}

/// Receives the whole request body, within [`BodyLimits::read_timeout`], before the request goes
/// on to load shedding: a client trickling its body holds a connection, never one of the server's
/// concurrency slots, and is answered 408 when the deadline passes. Bodies are bounded by
/// [`BodyLimits::max_bytes`] (413), as every route would bound them anyway, and a non-empty body
/// must be declared JSON (or multipart for uploads): 415 otherwise, as OpenAI's API answers.
pub async fn receive_body(State(limits): State<BodyLimits>, req: Request, next: Next) -> Response {
    use axum::body::HttpBody as _;
    if is_operational(req.uri().path()) || req.body().is_end_stream() {
        return next.run(req).await;
    }
    let format = WireFormat::for_path(req.uri().path());
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, limits.max_bytes);
    let bytes = match tokio::time::timeout(limits.read_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            // Over the limit (or the client went away mid-body).
            return crate::error::payload_too_large(format, limits.max_bytes);
        }
        Err(_) => {
            metrics::counter!(names::HTTP_BODY_TIMEOUTS_TOTAL).increment(1);
            return crate::error::body_timeout(format, limits.read_timeout);
        }
    };
    if !bytes.is_empty() && !is_accepted_body_type(&parts.headers) {
        return crate::error::raw_error(
            format,
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "invalid_request_error",
            "Send the body as JSON with `Content-Type: application/json` \
             (file uploads: `multipart/form-data`)."
                .to_owned(),
        );
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Whether a request body's declared type is one the API reads: JSON (`application/json`,
/// `application/*+json`) or, for file uploads, `multipart/form-data`.
fn is_accepted_body_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
        || essence == "multipart/form-data"
}

/// Turns a panic in the handling of a request into a 500 error in the route's wire format, logs it
/// at ERROR (inside the request's span, so with its request id) and counts `http_panics_total`.
/// The connection, the other requests and every shared state (all locks recover from poisoning)
/// keep working.
pub async fn catch_panic(req: Request, next: Next) -> Response {
    use futures::FutureExt as _;
    let format = WireFormat::for_path(req.uri().path());
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            metrics::counter!(names::HTTP_PANICS_TOTAL).increment(1);
            tracing::error!(panic = %wattos_core::error::quote(&what), "request handler panicked");
            error_response(format, &Error::internal("request handler panicked"))
        }
    }
}
