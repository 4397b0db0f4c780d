//! Turns axum's plain-text rejections (body too large, bad JSON, missing content type, bad query
//! string, bad path parameter) into JSON error bodies in the route's wire format, with stable codes:
//!
//! | status | code |
//! |---|---|
//! | 400 | `invalid_input` |
//! | 413 | `payload_too_large` |
//! | 415 | `unsupported_media_type` |
//! | 422 | `invalid_input` |
//!
//! Responses that already carry a content type other than plain text (every handler error, SSE)
//! pass through untouched.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::{WireFormat, raw_error};

/// Longest rejection text kept in the message.
const MAX_TEXT: usize = 4096;

fn is_plain_or_missing(resp: &Response) -> bool {
    match resp.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(v) => v
            .to_str()
            .map(|s| s.starts_with("text/plain"))
            .unwrap_or(false),
    }
}

/// Middleware: re-renders plain-text 400/413/415/422 responses as JSON errors. The state is the
/// body limit in bytes (named in the 413 message).
pub async fn json_rejections(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let format = WireFormat::for_path(req.uri().path());
    let resp = next.run(req).await;
    let status = resp.status();
    let (code, kind) = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            ("invalid_input", "invalid_request_error")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "invalid_request_error"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "invalid_request_error"),
        _ => return resp,
    };
    if !is_plain_or_missing(&resp) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            let mut out = crate::error::payload_too_large(format, limit);
            keep_headers(&mut out, &parts.headers);
            return out;
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE if text.is_empty() => {
            "Send the body as JSON with `Content-Type: application/json`.".to_owned()
        }
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("invalid request")
            .to_owned(),
        _ => text,
    };
    let mut out = raw_error(format, status, code, kind, message);
    keep_headers(&mut out, &parts.headers);
    out
}

/// Keeps the request id and the like of the replaced response; the body and its headers are new.
fn keep_headers(out: &mut Response, old: &axum::http::HeaderMap) {
    for (name, value) in old {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
}
