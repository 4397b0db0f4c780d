//! HTTP plumbing shared by the remote providers: one pooled client, request headers (tracing,
//! request id), deadlines, transport-error mapping and `Retry-After` parsing.

// Shared by all remote providers; a build with only some of them leaves parts unused.
#![cfg_attr(not(feature = "remote-all"), allow(dead_code))]

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use wattos_core::{Error, ErrorKind, RequestContext, Result};

pub use crate::provider::HttpSettings;

/// A provider's HTTP client: a pooled `reqwest::Client` plus its fixed headers.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    provider: &'static str,
    timeout: Duration,
    headers: HeaderMap,
}

impl HttpClient {
    /// Builds a client for `provider` with `fixed` headers (auth, versions) plus the settings' extras.
    pub(crate) fn new(
        provider: &'static str,
        settings: &HttpSettings,
        fixed: Vec<(&'static str, String)>,
    ) -> Result<Self> {
        let mut headers = HeaderMap::new();
        for (name, value) in fixed
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .chain(settings.headers.iter().cloned())
        {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| Error::invalid_field("headers", format!("bad header name: {e}")))?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                Error::invalid_field(
                    format!("headers.{name}"),
                    "header value has invalid characters",
                )
            })?;
            if matches!(
                name.as_str(),
                "authorization" | "api-key" | "x-api-key" | "x-goog-api-key"
            ) {
                value.set_sensitive(true);
            }
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| Error::internal("cannot build HTTP client").with_source(e))?;
        Ok(Self {
            client,
            provider,
            timeout: settings.timeout,
            headers,
        })
    }

    pub(crate) fn provider(&self) -> &'static str {
        self.provider
    }

    /// POSTs `body` as JSON to `url` within the context's deadline and returns the response when its
    /// status is a success. Error statuses go through `map_error` (vendor specific).
    pub(crate) async fn post_json<B: Serialize + ?Sized>(
        &self,
        ctx: &RequestContext,
        url: &str,
        body: &B,
        map_error: fn(&'static str, ErrorResponse) -> Error,
    ) -> Result<reqwest::Response> {
        let timeout = self.call_timeout(ctx)?;
        let mut req = self
            .client
            .post(url)
            .headers(self.headers.clone())
            .timeout(timeout)
            .json(body);
        req = req.header("x-request-id", ctx.request_id().as_str());
        if let Some(trace) = ctx.trace() {
            let child = trace.child();
            req = req.header("traceparent", child.to_traceparent());
            if let Some(state) = &child.state {
                req = req.header("tracestate", state);
            }
        }
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(self.provider, e, timeout))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap_or_default();
        Err(map_error(
            self.provider,
            ErrorResponse {
                status,
                retry_after: retry_after(&headers, SystemTime::now()),
                request_id: headers
                    .get("x-request-id")
                    .or_else(|| headers.get("request-id"))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                body,
            },
        ))
    }

    /// POSTs and decodes a JSON success body.
    pub(crate) async fn post_for_json<B: Serialize + ?Sized, T: serde::de::DeserializeOwned>(
        &self,
        ctx: &RequestContext,
        url: &str,
        body: &B,
        map_error: fn(&'static str, ErrorResponse) -> Error,
    ) -> Result<T> {
        let timeout = self.call_timeout(ctx)?;
        let resp = self.post_json(ctx, url, body, map_error).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(self.provider, e, timeout))?;
        serde_json::from_slice(&bytes).map_err(|e| invalid_response(self.provider, &e))
    }

    fn call_timeout(&self, ctx: &RequestContext) -> Result<Duration> {
        match ctx.remaining() {
            Some(left) if left.is_zero() => Err(Error::timeout(
                format!("{} call", self.provider),
                Duration::ZERO,
            )
            .with_upstream(self.provider, None)),
            Some(left) => Ok(left.min(self.timeout)),
            None => Ok(self.timeout),
        }
    }
}

/// A non-success HTTP answer, handed to the vendor's error mapper.
#[derive(Debug, Clone)]
pub(crate) struct ErrorResponse {
    /// HTTP status.
    pub(crate) status: u16,
    /// Parsed `retry-after-ms` / `Retry-After` header.
    pub(crate) retry_after: Option<Duration>,
    /// The upstream's request id header, for support tickets.
    pub(crate) request_id: Option<String>,
    /// Raw body.
    pub(crate) body: bytes::Bytes,
}

/// Maps a transport failure (no HTTP answer, or a body that broke off).
pub(crate) fn transport_error(provider: &str, e: reqwest::Error, timeout: Duration) -> Error {
    let err = if e.is_timeout() {
        Error::timeout(format!("{provider} call"), timeout)
    } else if e.is_connect() {
        Error::unavailable(format!("cannot connect to {provider}"))
    } else if e.is_body() || e.is_decode() {
        Error::upstream(
            provider,
            None,
            true,
            "connection broke while reading the response",
        )
    } else if e.is_request() {
        Error::unavailable(format!(
            "{provider} request failed before an answer arrived"
        ))
    } else {
        Error::upstream(provider, None, true, "HTTP transport error")
    };
    let status = e.status().map(|s| s.as_u16());
    err.with_upstream(provider, status).with_source(e)
}

/// A success body that does not match the vendor's documented schema.
pub(crate) fn invalid_response(provider: &str, e: &dyn std::fmt::Display) -> Error {
    Error::upstream(
        provider,
        None,
        false,
        format!("response does not match the API schema: {e}"),
    )
}

/// Parses `retry-after-ms` (OpenAI, Azure) or `Retry-After` (delta seconds or HTTP date).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    parse_retry_after(headers.get("retry-after")?.to_str().ok()?, now)
}

/// Parses one `Retry-After` value: delta seconds (integer or decimal) or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Classification shared by every vendor once it has pulled its error type/code and message out of
/// the body. `context_overflow` is the vendor-specific context-length detection.
pub(crate) fn classify(
    provider: &'static str,
    resp: &ErrorResponse,
    code: Option<String>,
    message: String,
    context_overflow: bool,
) -> Error {
    let status = resp.status;
    let mut err = match status {
        _ if context_overflow => Error::context_length_exceeded(message),
        400 | 413 | 415 | 422 => Error::invalid_input(message),
        401 => Error::unauthenticated(message),
        403 => Error::forbidden(message),
        404 => Error::not_found(message),
        408 => Error::new(ErrorKind::Timeout, message),
        429 => {
            let quota = code.as_deref() == Some("insufficient_quota");
            Error::rate_limited(message).with_retryable(!quota)
        }
        409 | 425 | 500..=599 => Error::upstream(provider, Some(status), true, message),
        _ => Error::upstream(provider, Some(status), false, message),
    };
    err = err.with_upstream(provider, Some(status));
    if let Some(code) = code {
        err = err.with_upstream_code(code);
    }
    if let Some(ra) = resp.retry_after {
        err = err.with_retry_after(ra);
    }
    if let Some(id) = &resp.request_id {
        tracing::debug!(provider, status, upstream_request_id = %id, "upstream error");
    }
    err
}

/// A short, printable excerpt of a body that could not be parsed as the vendor's error JSON.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "no error body".to_owned();
    }
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Joins a base URL and a path with exactly one `/`.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        // 1445412480 is Wed, 21 Oct 2015 07:28:00 GMT.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:20 GMT", now),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("10"));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(250)));
    }

    #[test]
    fn join_handles_slashes() {
        assert_eq!(join_url("http://h/v1/", "/chat"), "http://h/v1/chat");
        assert_eq!(join_url("http://h/v1", "chat"), "http://h/v1/chat");
    }
}
