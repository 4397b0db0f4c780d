//! Anthropic-compatible endpoint: `POST /v1/messages` (with streaming), routed through the same
//! catalog as the OpenAI endpoints.

pub mod types;

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use wattos_core::llm::{ChatDelta, ChatStream, Usage};

use super::GatewayState;
use super::context::Ctx;
use crate::error::ApiError;

/// An error rendered in Anthropic's shape: `{"type":"error","error":{"type","message"}}`.
#[derive(Debug)]
pub struct AnthropicError(pub wattos_core::Error);

impl From<wattos_core::Error> for AnthropicError {
    fn from(e: wattos_core::Error) -> Self {
        Self(e)
    }
}

impl From<ApiError> for AnthropicError {
    fn from(e: ApiError) -> Self {
        Self(e.0)
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        crate::error::error_response(crate::error::WireFormat::Anthropic, &self.0)
    }
}

/// `POST /v1/messages`.
#[utoipa::path(
    post, path = "/v1/messages", tag = "anthropic",
    request_body = types::MessagesRequest,
    responses(
        (status = 200, description = "A `message`, or `text/event-stream` of Anthropic stream events when `stream` is true", body = Object),
        (status = 400, description = "Invalid request: `{\"type\":\"error\",\"error\":{...}}`", body = Object),
        (status = 404, description = "Unknown model", body = Object),
    )
)]
pub async fn messages<S: GatewayState>(
    State(state): State<S>,
    ctx: Result<Ctx, ApiError>,
    body: axum::body::Bytes,
) -> Result<Response, AnthropicError> {
    let Ctx(ctx) = ctx?;
    let req: types::MessagesRequest = super::openai::parse_body(&body)?;
    let stream = req.is_stream();
    let neutral = req.into_neutral()?;
    let model = state.catalog().chat(&ctx, &neutral.model)?;
    let requested = neutral.model.clone();
    if stream {
        let deltas = model.chat_stream(&ctx, neutral).await?;
        Ok(Sse::new(events(deltas, requested)).into_response())
    } else {
        let resp = model.chat(&ctx, neutral).await?;
        Ok(Json(types::to_message(resp)).into_response())
    }
}

#[derive(Debug, PartialEq)]
enum Block {
    None,
    Text(usize),
    Tool { block: usize, call: usize },
}

struct Writer {
    id: String,
    model: String,
    next_block: usize,
    open: Block,
    usage: Usage,
    started: bool,
}

fn ev(name: &str, data: Value) -> (String, String) {
    (name.to_owned(), data.to_string())
}

impl Writer {
    fn start(&mut self) -> Vec<(String, String)> {
        if self.started {
            return Vec::new();
        }
        self.started = true;
        vec![
            ev(
                "message_start",
                json!({"type": "message_start", "message": {
                    "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0},
                }}),
            ),
            ev("ping", json!({"type": "ping"})),
        ]
    }

    fn close(&mut self) -> Vec<(String, String)> {
        let out = match self.open {
            Block::None => Vec::new(),
            Block::Text(i) | Block::Tool { block: i, .. } => {
                vec![ev(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": i}),
                )]
            }
        };
        self.open = Block::None;
        out
    }

    fn on_delta(&mut self, d: ChatDelta) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let ChatDelta::Start { model, id } = &d {
            if !model.is_empty() {
                self.model = model.clone();
            }
            if !id.is_empty() {
                self.id = types::message_id(id);
            }
        }
        out.extend(self.start());
        match d {
            ChatDelta::Start { .. } => {}
            ChatDelta::Text { text } => {
                let idx = match self.open {
                    Block::Text(i) => i,
                    _ => {
                        out.extend(self.close());
                        let i = self.next_block;
                        self.next_block += 1;
                        self.open = Block::Text(i);
                        out.push(ev(
                            "content_block_start",
                            json!({"type": "content_block_start", "index": i,
                            "content_block": {"type": "text", "text": ""}}),
                        ));
                        i
                    }
                };
                out.push(ev(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": idx,
                    "delta": {"type": "text_delta", "text": text}}),
                ));
            }
            ChatDelta::ToolCall(tc) => {
                let idx = match self.open {
                    Block::Tool { block, call } if call == tc.index && tc.id.is_none() => block,
                    _ => {
                        out.extend(self.close());
                        let i = self.next_block;
                        self.next_block += 1;
                        self.open = Block::Tool {
                            block: i,
                            call: tc.index,
                        };
                        out.push(ev("content_block_start", json!({"type": "content_block_start", "index": i,
                            "content_block": {"type": "tool_use", "id": tc.id.clone().unwrap_or_default(),
                                "name": tc.name.clone().unwrap_or_default(), "input": {}}})));
                        i
                    }
                };
                if !tc.arguments.is_empty() {
                    out.push(ev(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": idx,
                        "delta": {"type": "input_json_delta", "partial_json": tc.arguments}}),
                    ));
                }
            }
            ChatDelta::Usage(u) => self.usage = u,
            ChatDelta::Finish { reason } => {
                out.extend(self.close());
                out.push(ev(
                    "message_delta",
                    json!({"type": "message_delta",
                    "delta": {"stop_reason": types::stop_reason(&reason), "stop_sequence": null},
                    "usage": types::usage_json(&self.usage)}),
                ));
                out.push(ev("message_stop", json!({"type": "message_stop"})));
            }
        }
        out
    }
}

fn events(
    inner: ChatStream,
    model: String,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let writer = Writer {
        id: format!("msg_{}", uuid::Uuid::new_v4().simple()),
        model,
        next_block: 0,
        open: Block::None,
        usage: Usage::default(),
        started: false,
    };
    let state = (inner, writer, false, VecDeque::<(String, String)>::new());
    futures::stream::unfold(
        state,
        |(mut inner, mut writer, mut done, mut buf)| async move {
            loop {
                if let Some((name, data)) = buf.pop_front() {
                    return Some((
                        Ok(Event::default().event(name).data(data)),
                        (inner, writer, done, buf),
                    ));
                }
                if done {
                    return None;
                }
                match inner.next().await {
                    Some(Ok(d)) => buf.extend(writer.on_delta(d)),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "stream failed after it started");
                        buf.push_back(ev("error", crate::error::anthropic_error_body(&e)));
                        done = true;
                    }
                    None => done = true,
                }
            }
        },
    )
}
