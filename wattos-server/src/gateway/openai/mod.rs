//! OpenAI-compatible endpoints: `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models`,
//! `GET /v1/models/{id}`.

pub mod chat;
pub mod embeddings;

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use wattos_core::llm::ChatStream;

use super::GatewayState;
use super::context::{CallerConfig, Ctx};
use crate::conversations::{ThreadTurn, with_conversation_header};
use crate::error::{ApiError, ApiResult, ErrorBody};
use chat::{ChatCompletionRequest, ChunkWriter};

/// Parses a JSON body into `T`, turning syntax and shape errors into OpenAI-style 400s.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError(wattos_core::Error::invalid_input(format!(
            "We could not parse the JSON body of your request: {e}"
        )))
    })
}

/// `POST /v1/chat/completions`.
#[utoipa::path(
    post, path = "/v1/chat/completions", tag = "openai",
    request_body = chat::ChatCompletionRequest,
    responses(
        (status = 200, description = "A `chat.completion`, or `text/event-stream` of `chat.completion.chunk` events ending in `data: [DONE]` when `stream` is true", body = chat::ChatCompletion),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 502, description = "Upstream failure", body = ErrorBody),
        (status = 503, description = "Overloaded", body = ErrorBody),
    )
)]
pub async fn chat_completions<S: GatewayState>(
    State(state): State<S>,
    Ctx(ctx): Ctx,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let req: ChatCompletionRequest = parse_body(&body)?;
    let stream = req.is_stream();
    let include_usage = req.include_usage();
    let conversation = crate::conversations::conversation_id(&req.other)?;
    let mut neutral = req.into_neutral()?;
    let model = state.catalog().chat(&ctx, &neutral.model)?;
    // A thread by id: its stored history goes first, trimmed to the model's window; the turn is
    // stored once the answer is complete.
    let turn = match conversation {
        Some(id) => {
            let new = neutral.messages.clone();
            let (turn, mut messages) =
                ThreadTurn::open(state.conversations(), &ctx, &id, new).await?;
            messages.append(&mut neutral.messages);
            neutral.messages =
                crate::conversations::context_window(&*model, neutral.max_tokens).trim(&messages);
            Some(turn)
        }
        None => None,
    };
    let requested = neutral.model.clone();
    if stream {
        let mut deltas = model.chat_stream(&ctx, neutral).await?;
        let tag = turn.as_ref().map(|t| t.id().to_owned());
        if let Some(turn) = turn {
            deltas = turn.record_stream(deltas, requested.clone());
        }
        let writer = ChunkWriter::new(requested, super::catalog::now_secs(), include_usage);
        let resp = Sse::new(sse_events(deltas, writer)).into_response();
        Ok(with_conversation_header(resp, tag.as_deref()))
    } else {
        let resp = model.chat(&ctx, neutral).await?;
        let tag = turn.as_ref().map(|t| t.id().to_owned());
        if let Some(turn) = turn {
            turn.record_response(&resp).await?;
        }
        let out = Json(chat::to_completion(resp, super::catalog::now_secs())).into_response();
        Ok(with_conversation_header(out, tag.as_deref()))
    }
}

enum Phase {
    Streaming,
    Done,
}

/// Turns deltas into OpenAI SSE events: chunks, an optional usage chunk, then `[DONE]`. A failure
/// mid-stream becomes a `data: {"error": {...}}` event and the stream ends without `[DONE]`.
fn sse_events(
    inner: ChatStream,
    writer: ChunkWriter,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let state = (inner, writer, Phase::Streaming, VecDeque::<String>::new());
    futures::stream::unfold(
        state,
        |(mut inner, mut writer, mut phase, mut buf)| async move {
            loop {
                if let Some(data) = buf.pop_front() {
                    return Some((Ok(Event::default().data(data)), (inner, writer, phase, buf)));
                }
                match phase {
                    Phase::Done => return None,
                    Phase::Streaming => match inner.next().await {
                        Some(Ok(delta)) => {
                            buf.extend(writer.on_delta(delta).into_iter().map(|c| c.to_string()))
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "stream failed after it started");
                            let body = error_body(e);
                            buf.push_back(serde_json::to_string(&body).unwrap_or_default());
                            phase = Phase::Done;
                        }
                        None => {
                            if let Some(u) = writer.usage_chunk() {
                                buf.push_back(u.to_string());
                            }
                            buf.push_back("[DONE]".to_owned());
                            phase = Phase::Done;
                        }
                    },
                }
            }
        },
    )
}

fn error_body(e: wattos_core::Error) -> ErrorBody {
    let resp = ApiError(e);
    crate::error::error_body(&resp.0)
}

/// `POST /v1/embeddings`.
#[utoipa::path(
    post, path = "/v1/embeddings", tag = "openai",
    request_body = embeddings::EmbeddingRequest,
    responses(
        (status = 200, description = "Embeddings", body = embeddings::EmbeddingList),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
    )
)]
pub async fn embeddings<S: GatewayState>(
    State(state): State<S>,
    Ctx(ctx): Ctx,
    body: axum::body::Bytes,
) -> ApiResult<Json<embeddings::EmbeddingList>> {
    let req: embeddings::EmbeddingRequest = parse_body(&body)?;
    let inputs = req.inputs()?;
    let encoding = req.encoding()?;
    let model = state.catalog().embedding(&ctx, &req.model)?;
    if let Some(d) = req.dimensions
        && d != model.dimensions()
    {
        return Err(ApiError(wattos_core::Error::invalid_field(
            "dimensions",
            format!(
                "{} produces {} dimensions; other sizes are not supported",
                req.model,
                model.dimensions()
            ),
        )));
    }
    let out = model.embed_all(&ctx, &inputs).await?;
    Ok(Json(embeddings::to_list(req.model, out, encoding)))
}

fn model_json(info: &super::ModelInfo) -> Value {
    json!({ "id": info.id, "object": "model", "created": info.created, "owned_by": info.owned_by })
}

/// `GET /v1/models`: the models the caller's tenant may use.
#[utoipa::path(get, path = "/v1/models", tag = "openai", responses((status = 200, description = "`{\"object\":\"list\",\"data\":[model...]}`", body = Object)))]
pub async fn list_models<S: GatewayState>(
    State(state): State<S>,
    Ctx(ctx): Ctx,
    CallerConfig(config): CallerConfig,
) -> Json<Value> {
    let data: Vec<Value> = state
        .catalog()
        .list_for(&ctx, config.as_deref())
        .iter()
        .map(model_json)
        .collect();
    Json(json!({ "object": "list", "data": data }))
}

/// `GET /v1/models/{id}`.
#[utoipa::path(
    get, path = "/v1/models/{id}", tag = "openai",
    params(("id" = String, Path, description = "Model name")),
    responses((status = 200, description = "A model object", body = Object), (status = 404, description = "Unknown model", body = ErrorBody))
)]
pub async fn get_model<S: GatewayState>(
    State(state): State<S>,
    Ctx(ctx): Ctx,
    CallerConfig(config): CallerConfig,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state
        .catalog()
        .list_for(&ctx, config.as_deref())
        .iter()
        .find(|m| m.id == id)
        .map(|m| Json(model_json(m)))
        .ok_or_else(|| ApiError(super::catalog::model_not_found(&id)))
}
