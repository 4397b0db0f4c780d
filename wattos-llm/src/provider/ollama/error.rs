//! Ollama error bodies: `{"error": "model 'x' not found"}`.

use serde::Deserialize;
use wattos_core::Error;

use crate::http::{ErrorResponse, body_excerpt, classify};

#[derive(Deserialize)]
struct Envelope {
    error: String,
}

fn is_context_overflow(m: &str) -> bool {
    let m = m.to_ascii_lowercase();
    m.contains("context length")
        || m.contains("exceeds the context")
        || m.contains("context window")
}

/// Maps an HTTP error answer.
pub(crate) fn map_error(provider: &'static str, resp: ErrorResponse) -> Error {
    let message = serde_json::from_slice::<Envelope>(&resp.body)
        .map(|e| e.error)
        .unwrap_or_else(|_| body_excerpt(&resp.body));
    let context = resp.status == 400 && is_context_overflow(&message);
    classify(provider, &resp, None, message, context)
}

/// Maps an `{"error": ...}` line inside a stream.
pub(crate) fn map_stream_error(provider: &'static str, message: String) -> Error {
    let err = if is_context_overflow(&message) {
        Error::context_length_exceeded(message)
    } else {
        Error::upstream(provider, None, true, message)
    };
    err.with_upstream(provider, None)
}
