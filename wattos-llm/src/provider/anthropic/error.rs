//! Anthropic error bodies: `{"type": "error", "error": {"type": "overloaded_error", "message": "..."}}`.

use serde::Deserialize;
use wattos_core::Error;

use crate::http::{ErrorResponse, body_excerpt, classify};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireError {
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    error: WireError,
}

pub(crate) fn parse(body: &[u8]) -> WireError {
    serde_json::from_slice::<Envelope>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| WireError {
            kind: None,
            message: Some(body_excerpt(body)),
        })
}

/// "prompt is too long: 210000 tokens > 200000 maximum", "input length and `max_tokens` exceed
/// context limit: ...".
fn is_context_overflow(w: &WireError) -> bool {
    let m = w.message.as_deref().unwrap_or("").to_ascii_lowercase();
    w.kind.as_deref() == Some("invalid_request_error")
        && (m.contains("prompt is too long")
            || m.contains("exceed context limit")
            || m.contains("context window"))
}

/// Maps an HTTP error answer.
pub(crate) fn map_error(provider: &'static str, resp: ErrorResponse) -> Error {
    let wire = parse(&resp.body);
    let context = is_context_overflow(&wire);
    let message = wire
        .message
        .clone()
        .unwrap_or_else(|| format!("HTTP {}", resp.status));
    classify(provider, &resp, wire.kind, message, context)
}

/// Maps an `event: error` that arrived mid-stream, by its error type.
pub(crate) fn map_stream_error(provider: &'static str, w: WireError) -> Error {
    let status = match w.kind.as_deref() {
        Some("invalid_request_error") => 400,
        Some("authentication_error") => 401,
        Some("permission_error") => 403,
        Some("not_found_error") => 404,
        Some("request_too_large") => 413,
        Some("rate_limit_error") => 429,
        Some("overloaded_error") => 529,
        _ => 500,
    };
    let context = is_context_overflow(&w);
    let resp = ErrorResponse {
        status,
        retry_after: None,
        request_id: None,
        body: bytes::Bytes::new(),
    };
    let message = w
        .message
        .unwrap_or_else(|| "error event in stream".to_owned());
    classify(provider, &resp, w.kind, message, context)
}
