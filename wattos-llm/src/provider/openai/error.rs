//! OpenAI (and Azure OpenAI, and most OpenAI-compatible servers) error bodies:
//! `{"error": {"message": "...", "type": "...", "param": ..., "code": ...}}`.

use serde::Deserialize;
use serde_json::Value;
use wattos_core::Error;

use crate::http::{ErrorResponse, body_excerpt, classify};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireError {
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) code: Option<Value>,
}

#[derive(Deserialize)]
struct Envelope {
    error: ErrorField,
}

/// Some compatible servers send `{"error": "text"}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Object(WireError),
    Text(String),
}

impl WireError {
    fn code_str(&self) -> Option<String> {
        match &self.code {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Whether this is a context-window overflow, by code or by the documented message.
    pub(crate) fn is_context_overflow(&self) -> bool {
        let code = self.code_str();
        let msg = self.message.as_deref().unwrap_or("").to_ascii_lowercase();
        code.as_deref() == Some("context_length_exceeded")
            || msg.contains("maximum context length")
            || msg.contains("context_length_exceeded")
            || msg.contains("context window")
            || msg.contains("too many tokens")
    }
}

pub(crate) fn parse(body: &[u8]) -> WireError {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            error: ErrorField::Object(e),
        }) => e,
        Ok(Envelope {
            error: ErrorField::Text(t),
        }) => WireError {
            message: Some(t),
            ..WireError::default()
        },
        Err(_) => WireError {
            message: Some(body_excerpt(body)),
            ..WireError::default()
        },
    }
}

/// Maps an HTTP error answer.
pub(crate) fn map_error(provider: &'static str, resp: ErrorResponse) -> Error {
    let wire = parse(&resp.body);
    let context = resp.status == 400 && wire.is_context_overflow();
    let code = wire.code_str().or_else(|| wire.kind.clone());
    let message = wire
        .message
        .clone()
        .unwrap_or_else(|| format!("HTTP {}", resp.status));
    classify(provider, &resp, code, message, context)
}

/// Maps an error object that arrived inside a stream (no HTTP status).
pub(crate) fn map_stream_error(provider: &'static str, wire: &WireError) -> Error {
    let message = wire
        .message
        .clone()
        .unwrap_or_else(|| "error event in stream".to_owned());
    let code = wire.code_str().or_else(|| wire.kind.clone());
    let kind = wire.kind.as_deref().unwrap_or("");
    let err = if wire.is_context_overflow() {
        Error::context_length_exceeded(message)
    } else if kind.contains("rate_limit") || code.as_deref() == Some("rate_limit_exceeded") {
        Error::rate_limited(message)
    } else if kind == "invalid_request_error" {
        Error::invalid_input(message)
    } else {
        Error::upstream(provider, None, true, message)
    };
    let err = err.with_upstream(provider, None);
    match code {
        Some(c) => err.with_upstream_code(c),
        None => err,
    }
}
