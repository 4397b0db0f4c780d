//! The one place where [`wattos_core::Error`] becomes an HTTP response, per wire format.
//!
//! Error bodies take the shape of the API the route belongs to ([`WireFormat`]), so official SDKs
//! parse them whichever layer refused the request (authentication, rate limits, load shedding,
//! timeouts, rejected bodies, panics, or the handler):
//!
//! * OpenAI (every route but Anthropic's):
//!   `{"error": {"message": "...", "type": "...", "param": null | "field", "code": "stable_code"}}`
//! * Anthropic (`/v1/messages`): `{"type": "error", "error": {"type": "...", "message": "..."}}`
//!
//! Rate limits and unavailability carry `Retry-After`. Messages are bounded (see
//! [`wattos_core::error::MAX_MESSAGE_BYTES`]): caller input is never echoed at length.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use wattos_core::{Error, ErrorKind};

/// Maps an error kind to its HTTP status. Each kind has exactly one status.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput | ErrorKind::ContextLengthExceeded => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::BudgetExceeded => StatusCode::PAYMENT_REQUIRED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        // Unknown future kinds are treated as internal errors.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// OpenAI's coarse error `type` for a kind.
fn type_for(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput
        | ErrorKind::ContextLengthExceeded
        | ErrorKind::NotFound
        | ErrorKind::Conflict => "invalid_request_error",
        ErrorKind::Unauthenticated => "authentication_error",
        ErrorKind::Forbidden => "permission_error",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::BudgetExceeded => "insufficient_quota",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Unavailable => "overloaded_error",
        ErrorKind::Upstream => "upstream_error",
        _ => "server_error",
    }
}

/// The `error` object of an error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    /// Human-readable message.
    pub message: String,
    /// Coarse class (OpenAI's `type`).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The request field at fault, or null.
    pub param: Option<String>,
    /// Stable machine-readable code.
    pub code: &'static str,
}

/// An error body: `{"error": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorObject,
}

/// A handler error: wraps [`wattos_core::Error`] and renders it as JSON with the right status.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl ApiError {
    /// The HTTP status this error renders with.
    pub fn status(&self) -> StatusCode {
        status_for(self.0.kind())
    }
}

/// The message a client sees for `err` (internal details are replaced by a generic message).
fn public_message(err: &Error) -> String {
    if err.kind() == ErrorKind::Internal {
        "internal server error".to_owned()
    } else {
        err.to_string()
    }
}

/// The JSON body for `err` in OpenAI's shape (internal details are replaced by a generic message).
pub fn error_body(err: &Error) -> ErrorBody {
    ErrorBody {
        error: ErrorObject {
            message: public_message(err),
            kind: type_for(err.kind()),
            param: err.field().map(str::to_owned),
            code: err.code(),
        },
    }
}

/// The coarse error type name used in bodies (OpenAI's `type`; Anthropic's `error.type` differs).
pub fn error_type(kind: ErrorKind) -> &'static str {
    type_for(kind)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(WireFormat::OpenAi, &self.0)
    }
}

/// The wire format of an API route, which decides the shape of its error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// OpenAI's error shape (the default for every route).
    OpenAi,
    /// Anthropic's error shape (`/v1/messages` and below).
    Anthropic,
}

impl WireFormat {
    /// The format of the route serving `path`.
    pub fn for_path(path: &str) -> Self {
        match path.strip_prefix("/v1/messages") {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => Self::Anthropic,
            _ => Self::OpenAi,
        }
    }
}

/// Anthropic's error `type` for a kind.
pub fn anthropic_error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput | ErrorKind::ContextLengthExceeded | ErrorKind::Conflict => {
            "invalid_request_error"
        }
        ErrorKind::Unauthenticated => "authentication_error",
        ErrorKind::Forbidden => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::BudgetExceeded => "billing_error",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Unavailable => "overloaded_error",
        _ => "api_error",
    }
}

/// Anthropic's error body: `{"type":"error","error":{"type","message"}}`.
pub fn anthropic_error_body(err: &Error) -> serde_json::Value {
    serde_json::json!({
        "type": "error",
        "error": {"type": anthropic_error_type(err.kind()), "message": public_message(err)},
    })
}

/// The response for `err` in `format`: status, body and `Retry-After`. Internal errors are
/// logged here (their details never reach the body).
pub fn error_response(format: WireFormat, err: &Error) -> Response {
    let status = status_for(err.kind());
    if status.is_server_error() && err.kind() == ErrorKind::Internal {
        tracing::error!(error = ?err, "internal error");
    }
    let mut resp = match format {
        WireFormat::OpenAi => (status, Json(error_body(err))).into_response(),
        WireFormat::Anthropic => (status, Json(anthropic_error_body(err))).into_response(),
    };
    set_retry_after(&mut resp, err);
    resp
}

/// 408 `request_timeout`: the request body did not arrive within `limit`.
pub fn body_timeout(format: WireFormat, limit: std::time::Duration) -> Response {
    let message = format!(
        "The request body did not arrive within {} ms.",
        limit.as_millis()
    );
    raw_error(
        format,
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "invalid_request_error",
        message,
    )
}

/// 413 `payload_too_large`: the request body is larger than `limit` bytes.
pub fn payload_too_large(format: WireFormat, limit: usize) -> Response {
    raw_error(
        format,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "invalid_request_error",
        format!("The request body is larger than the limit of {limit} bytes."),
    )
}

/// An error raised by the HTTP layer itself (not a [`wattos_core::Error`]: malformed HTTP), with
/// its own status and stable `code`, in `format`'s shape.
pub fn raw_error(
    format: WireFormat,
    status: StatusCode,
    code: &'static str,
    kind: &'static str,
    message: String,
) -> Response {
    let message = wattos_core::error::bound_message(&message).into_owned();
    match format {
        WireFormat::OpenAi => (
            status,
            Json(ErrorBody {
                error: ErrorObject {
                    message,
                    kind,
                    param: None,
                    code,
                },
            }),
        )
            .into_response(),
        WireFormat::Anthropic => {
            let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "request_too_large"
            } else {
                kind
            };
            (
                status,
                Json(serde_json::json!({
                    "type": "error",
                    "error": {"type": kind, "message": message},
                })),
            )
                .into_response()
        }
    }
}

/// Sets `Retry-After` (whole seconds, rounded up, at least 1) when `err` carries a retry delay.
pub fn set_retry_after(resp: &mut Response, err: &Error) {
    if let Some(after) = err.retry_after() {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
}

/// Handler result type.
pub type ApiResult<T> = Result<T, ApiError>;

/// A path that did not parse (an id segment of the wrong shape): 400 `invalid_input`.
pub(crate) fn path_err(e: axum::extract::rejection::PathRejection) -> ApiError {
    ApiError(Error::invalid_input(format!("invalid path: {e}")))
}

/// A query string that did not parse: 400 `invalid_input`.
pub(crate) fn query_err(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError(Error::invalid_input(format!("invalid query string: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_kind_has_a_distinct_meaningful_status() {
        let expected = [
            (ErrorKind::InvalidInput, 400),
            (ErrorKind::ContextLengthExceeded, 400),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Unauthenticated, 401),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::RateLimited, 429),
            (ErrorKind::BudgetExceeded, 402),
            (ErrorKind::Timeout, 504),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Upstream, 502),
            (ErrorKind::Conflict, 409),
            (ErrorKind::Internal, 500),
        ];
        assert_eq!(expected.len(), ErrorKind::ALL.len());
        for (kind, status) in expected {
            assert_eq!(status_for(kind).as_u16(), status, "{kind}");
        }
    }

    #[test]
    fn wire_format_follows_the_route() {
        assert_eq!(WireFormat::for_path("/v1/messages"), WireFormat::Anthropic);
        assert_eq!(
            WireFormat::for_path("/v1/messages/count_tokens"),
            WireFormat::Anthropic
        );
        assert_eq!(WireFormat::for_path("/v1/messagesx"), WireFormat::OpenAi);
        assert_eq!(
            WireFormat::for_path("/v1/chat/completions"),
            WireFormat::OpenAi
        );
        let resp = error_response(WireFormat::Anthropic, &Error::unauthenticated("bad key"));
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn retry_after_header_is_rounded_up() {
        let resp =
            ApiError(Error::rate_limited("slow").with_retry_after(Duration::from_millis(1500)))
                .into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
    }
}
