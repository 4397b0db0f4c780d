//! One turn of a stored thread: load and trim the history, call the model, append the turn once
//! the answer is complete.

use std::sync::Arc;

use axum::http::HeaderValue;
use axum::response::Response;
use futures::StreamExt;
use wattos_agents::conversation::{ConversationStore, NewMessage, window_for_model};
use wattos_agents::memory::ConversationWindow;
use wattos_core::llm::{
    ChatModel, ChatResponse, ChatStream, Cost, Message, StreamAccumulator, Usage,
};
use wattos_core::{Error, RequestContext, Result};

use super::ConversationServices;
use crate::error::{ApiError, ApiResult};

/// Response header naming the conversation a turn was stored in.
pub const CONVERSATION_HEADER: &str = "x-wattos-conversation-id";

/// Context window assumed for models that do not report one.
pub const DEFAULT_CONTEXT_WINDOW: usize = 8192;

/// The window a request to `model` with `max_tokens` answer tokens may fill: the model's context
/// window (or [`DEFAULT_CONTEXT_WINDOW`]) less the answer's reserve.
pub fn context_window(model: &dyn ChatModel, max_tokens: Option<u32>) -> ConversationWindow {
    let caps = model.capabilities();
    let window_tokens = caps
        .context_window
        .map_or(DEFAULT_CONTEXT_WINDOW, |w| w as usize);
    let reserve = max_tokens
        .or(caps.max_output_tokens)
        .map_or(0, |t| t as usize);
    window_for_model(window_tokens, reserve)
}

/// A turn of thread `id` in progress. [`ThreadTurn::open`] checks access and loads the history;
/// the caller sends history plus the new messages (trimmed with [`context_window`]) to the model
/// and then hands the answer to [`ThreadTurn::record`] or the answer stream to
/// [`ThreadTurn::record_stream`]. Nothing is written unless the answer is complete, so a failed
/// call can simply be retried.
pub struct ThreadTurn {
    store: Arc<dyn ConversationStore>,
    ctx: RequestContext,
    id: String,
    new_messages: Vec<Message>,
}

impl std::fmt::Debug for ThreadTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadTurn")
            .field("id", &self.id)
            .field("new_messages", &self.new_messages.len())
            .finish_non_exhaustive()
    }
}

impl ThreadTurn {
    /// Opens a turn of thread `id` that adds `new_messages` (the user's side of the turn); returns
    /// it with the thread's stored history, oldest first.
    ///
    /// # Errors
    /// `unavailable` without conversation storage; `not_found` when the caller may
    /// not use the thread (checked before any model call).
    pub async fn open(
        services: Option<&ConversationServices>,
        ctx: &RequestContext,
        id: &str,
        new_messages: Vec<Message>,
    ) -> ApiResult<(Self, Vec<Message>)> {
        let svc = services.ok_or_else(|| {
            ApiError(Error::unavailable(
                "conversations are not configured on this server",
            ))
        })?;
        let store = svc.conversations().store().clone();
        let conversation = store.get(ctx, id).await?;
        let mut history: Vec<Message> = store
            .messages(ctx, id)
            .await?
            .into_iter()
            .map(|m| m.message)
            .collect();
        if let Some(recalled) = recall(svc, ctx, &conversation.metadata, &new_messages).await {
            history.insert(0, recalled);
        }
        let turn = Self {
            store,
            ctx: ctx.clone(),
            id: id.to_owned(),
            new_messages,
        };
        Ok((turn, history))
    }

    /// The thread id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Appends the turn: the new messages, then `answer` (written by `model`, with its usage and
    /// cost in USD).
    ///
    /// # Errors
    /// The store's errors.
    pub async fn record(
        self,
        answer: Message,
        model: String,
        usage: Usage,
        cost_usd: f64,
    ) -> Result<()> {
        let mut batch: Vec<NewMessage> = self
            .new_messages
            .into_iter()
            .map(NewMessage::plain)
            .collect();
        batch.push(
            NewMessage::answer(answer, model, usage, cost_usd)
                .with_request_id(self.ctx.request_id().as_str()),
        );
        self.store.append(&self.ctx, &self.id, batch).await?;
        Ok(())
    }

    /// Appends the turn with `resp` as the answer.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn record_response(self, resp: &ChatResponse) -> Result<()> {
        let answer = Message::Assistant {
            content: resp.content.clone(),
            tool_calls: resp.tool_calls.clone(),
        };
        let cost = resp.cost.as_ref().map_or(0.0, total);
        self.record(answer, resp.model.clone(), resp.usage, cost)
            .await
    }

    /// Appends the turn with `answer`, pricing `usage` from the built-in price table (zero for
    /// models it does not list): for streamed answers, whose cost the stream does not carry.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn record_priced(self, answer: Message, model: String, usage: Usage) -> Result<()> {
        let cost =
            wattos_llm::pricing::builtin_price(&model).map_or(0.0, |p| total(&p.cost(&usage)));
        self.record(answer, model, usage, cost).await
    }

    /// Passes `deltas` through unchanged and appends the turn when the stream has finished
    /// cleanly (a finish reason, no error). A stream that fails or is cut off appends nothing;
    /// when appending fails, an error item follows the answer so the client knows the turn was not
    /// kept. Priced as [`ThreadTurn::record_priced`].
    pub fn record_stream(self, deltas: ChatStream, model: impl Into<String>) -> ChatStream {
        struct Tap {
            deltas: ChatStream,
            acc: StreamAccumulator,
            turn: Option<ThreadTurn>,
        }
        let tap = Tap {
            deltas,
            acc: StreamAccumulator::new(model),
            turn: Some(self),
        };
        futures::stream::unfold(tap, |mut tap| async move {
            let turn = tap.turn.take()?;
            match tap.deltas.next().await {
                Some(Ok(d)) => {
                    tap.acc.push(d.clone());
                    tap.turn = Some(turn);
                    Some((Ok(d), tap))
                }
                Some(Err(e)) => Some((Err(e), tap)),
                None => {
                    let acc = std::mem::take(&mut tap.acc);
                    // Cut off: the caller's stream reports it; nothing is kept.
                    let resp = acc.finish().ok()?;
                    let answer = Message::Assistant {
                        content: resp.content,
                        tool_calls: resp.tool_calls,
                    };
                    let id = turn.id.clone();
                    match turn.record_priced(answer, resp.model, resp.usage).await {
                        Ok(()) => None,
                        Err(e) => {
                            tracing::error!(error = %e, conversation = %id, "streamed turn not stored");
                            Some((Err(e), tap))
                        }
                    }
                }
            }
        })
        .boxed()
    }
}

/// How many memories an opted-in thread recalls per turn.
const RECALLED_MEMORIES: usize = 5;

/// For a thread whose metadata has `"recall_memories": true`: the caller's memories most relevant
/// to the turn's last user message, as a system message. Recall failures are logged and skipped (a
/// turn does not fail because memory is down).
async fn recall(
    svc: &ConversationServices,
    ctx: &RequestContext,
    metadata: &serde_json::Map<String, serde_json::Value>,
    new_messages: &[Message],
) -> Option<Message> {
    if metadata.get("recall_memories") != Some(&serde_json::Value::Bool(true)) {
        return None;
    }
    let memories = svc.memories()?;
    let query = new_messages
        .iter()
        .rev()
        .find(|m| matches!(m, Message::User { .. }))
        .map(Message::text)?;
    let ns = wattos_agents::memory::Namespace::for_caller(ctx).ok()?;
    match wattos_agents::memory::recall_message(&**memories, ctx, &ns, &query, RECALLED_MEMORIES)
        .await
    {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "memory recall failed; the turn goes on without it");
            None
        }
    }
}

/// Sets [`CONVERSATION_HEADER`] to `id` on `resp` (nothing without an id).
pub fn with_conversation_header(mut resp: Response, id: Option<&str>) -> Response {
    if let Some(v) = id.and_then(|id| HeaderValue::from_str(id).ok()) {
        resp.headers_mut().insert(CONVERSATION_HEADER, v);
    }
    resp
}

fn total(c: &Cost) -> f64 {
    c.input_usd + c.cached_input_usd + c.output_usd
}
