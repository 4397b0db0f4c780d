//! The LLM gateway: OpenAI- and Anthropic-compatible HTTP endpoints over a [`ModelCatalog`].
//!
//! Handlers only translate wire formats; every model call goes through the `ChatModel` /
//! `EmbeddingModel` traits, so a router, a local model or a single provider serve the same way.

pub mod anthropic;
mod catalog;
pub mod context;
pub mod openai;
pub mod routing;
pub mod timing;

use axum::Router;
use axum::routing::{get, post};

pub use catalog::{ModelCatalog, ModelInfo, ModelKind};
pub use context::{CallerConfig, Ctx, EMBEDDED_TENANT, embedded_identity};

/// State the gateway handlers need.
pub trait GatewayState: Clone + Send + Sync + 'static {
    /// The models served.
    fn catalog(&self) -> &ModelCatalog;

    /// Conversation storage for chat requests that name a `conversation_id` (none by default).
    fn conversations(&self) -> Option<&crate::conversations::ConversationServices> {
        None
    }
}

/// The gateway's routes, for any state that implements [`GatewayState`].
pub fn routes<S: GatewayState>() -> Router<S> {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions::<S>))
        .route("/v1/embeddings", post(openai::embeddings::<S>))
        .route("/v1/models", get(openai::list_models::<S>))
        .route("/v1/models/{id}", get(openai::get_model::<S>))
        .route("/v1/messages", post(anthropic::messages::<S>))
}
