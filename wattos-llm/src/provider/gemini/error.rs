//! Gemini error bodies: `{"error": {"code": 429, "message": "...", "status": "RESOURCE_EXHAUSTED",
//! "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}]}}`.
//! A streamed answer may also end with such an object.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use wattos_core::Error;

use crate::http::{ErrorResponse, body_excerpt, classify};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireError {
    #[serde(default)]
    pub(crate) code: Option<u16>,
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(default)]
    pub(crate) details: Vec<Value>,
}

#[derive(Deserialize)]
struct Envelope {
    error: WireError,
}

/// Gemini bodies are sometimes a one-element array around the error.
#[derive(Deserialize)]
#[serde(untagged)]
enum Body {
    One(Envelope),
    Many(Vec<Envelope>),
}

pub(crate) fn parse(body: &[u8]) -> WireError {
    match serde_json::from_slice::<Body>(body) {
        Ok(Body::One(e)) => e.error,
        Ok(Body::Many(v)) => v.into_iter().next().map(|e| e.error).unwrap_or_default(),
        Err(_) => WireError {
            message: Some(body_excerpt(body)),
            ..WireError::default()
        },
    }
}

impl WireError {
    /// "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
    fn is_context_overflow(&self) -> bool {
        let m = self.message.as_deref().unwrap_or("").to_ascii_lowercase();
        m.contains("exceeds the maximum number of tokens")
            || (m.contains("input token count") && m.contains("exceeds"))
            || m.contains("context window")
    }

    /// `RetryInfo.retryDelay` ("30s", "1.5s").
    fn retry_delay(&self) -> Option<Duration> {
        self.details.iter().find_map(|d| {
            let delay = d.get("retryDelay")?.as_str()?;
            let secs: f64 = delay.strip_suffix('s')?.parse().ok()?;
            (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
        })
    }
}

/// Maps an HTTP error answer.
pub(crate) fn map_error(provider: &'static str, mut resp: ErrorResponse) -> Error {
    let wire = parse(&resp.body);
    if resp.retry_after.is_none() {
        resp.retry_after = wire.retry_delay();
    }
    let context = matches!(resp.status, 400 | 413) && wire.is_context_overflow();
    let message = wire
        .message
        .clone()
        .unwrap_or_else(|| format!("HTTP {}", resp.status));
    classify(provider, &resp, wire.status.clone(), message, context)
}

/// Maps an error object inside a stream, using its `code` as the status.
pub(crate) fn map_stream_error(provider: &'static str, wire: WireError) -> Error {
    let resp = ErrorResponse {
        status: wire.code.unwrap_or(500),
        retry_after: wire.retry_delay(),
        request_id: None,
        body: bytes::Bytes::new(),
    };
    let context = wire.is_context_overflow();
    let message = wire.message.unwrap_or_else(|| "error in stream".to_owned());
    classify(provider, &resp, wire.status, message, context)
}
