//! The chat model seam: [`ChatModel`] and its provider-neutral types.
//!
//! Providers (OpenAI, Anthropic, local candle models, ...) live in `wattos-llm`; routers implement the same
//! trait, so they nest and compose. RAG and agents depend only on this trait.

mod stream;
mod types;

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;

pub use stream::{ChatDelta, ChatStream, StreamAccumulator, ToolCallDelta, response_to_deltas};
pub use types::{
    Capabilities, ChatRequest, ChatResponse, ContentPart, Cost, FinishReason, ImageSource, Message,
    ResponseFormat, ToolCall, ToolChoice, ToolDefinition, Usage,
};

use crate::context::RequestContext;
use crate::error::Result;

/// A model that answers chat requests.
///
/// Implement [`ChatModel::chat`]; override [`ChatModel::chat_stream`] when the backend streams natively
/// (the default runs `chat` and replays the answer as deltas).
///
/// ```
/// use async_trait::async_trait;
/// use wattos_core::llm::{ChatModel, ChatRequest, ChatResponse, FinishReason, Message, Usage};
/// use wattos_core::{RequestContext, Result, TenantId};
///
/// /// Answers every request by echoing the last user message.
/// struct Echo;
///
/// #[async_trait]
/// impl ChatModel for Echo {
///     fn name(&self) -> &str { "echo" }
///     async fn chat(&self, _ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
///         req.validate()?;
///         let last = req.messages.last().map(Message::text).unwrap_or_default();
///         Ok(ChatResponse {
///             id: "echo-1".into(),
///             model: req.model,
///             content: Some(last),
///             tool_calls: vec![],
///             finish_reason: FinishReason::Stop,
///             usage: Usage::default(),
///             cost: None,
///             provider_fields: Default::default(),
///         })
///     }
/// }
///
/// # tokio_test_block_on(async {
/// use futures::StreamExt;
/// let ctx = RequestContext::system(TenantId::new("acme")?);
/// let model = std::sync::Arc::new(Echo);
/// let answer = model.chat(&ctx, ChatRequest::new("echo", vec![Message::user("ping")])).await?;
/// assert_eq!(answer.text(), "ping");
/// // Every model streams, natively or through the default.
/// let mut stream = model.chat_stream(&ctx, ChatRequest::new("echo", vec![Message::user("pong")])).await?;
/// let mut text = String::new();
/// while let Some(delta) = stream.next().await {
///     if let wattos_core::llm::ChatDelta::Text { text: t } = delta? { text.push_str(&t); }
/// }
/// assert_eq!(text, "pong");
/// # Ok::<_, wattos_core::Error>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// A short identifier for logs and metrics (provider and model, or deployment name).
    fn name(&self) -> &str;

    /// What this model supports. Conservative by default.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Answers a request.
    ///
    /// # Errors
    /// Typed [`crate::Error`]s: invalid input, context length, auth, rate limits (with retry-after),
    /// upstream failures classified as retryable or not, timeouts.
    async fn chat(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse>;

    /// Answers a request as a stream of deltas. Errors before the first delta are returned directly;
    /// later failures arrive as an `Err` item.
    ///
    /// # Errors
    /// As for [`ChatModel::chat`].
    async fn chat_stream(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatStream> {
        let resp = self.chat(ctx, req).await?;
        Ok(futures::stream::iter(response_to_deltas(&resp).into_iter().map(Ok)).boxed())
    }
}

#[async_trait]
impl<T: ChatModel + ?Sized> ChatModel for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn chat(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
        (**self).chat(ctx, req).await
    }
    async fn chat_stream(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatStream> {
        (**self).chat_stream(ctx, req).await
    }
}

#[async_trait]
impl<T: ChatModel + ?Sized> ChatModel for Box<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn chat(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
        (**self).chat(ctx, req).await
    }
    async fn chat_stream(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatStream> {
        (**self).chat_stream(ctx, req).await
    }
}

/// Compile-time check that the trait stays object safe.
#[allow(dead_code)]
fn _object_safe(_: &dyn ChatModel) {}
