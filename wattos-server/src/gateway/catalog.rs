//! The models a gateway serves: names mapped to chat and embedding models.

use std::collections::BTreeMap;
use std::sync::Arc;

use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::ChatModel;
use wattos_core::tenancy::TenantConfig;
use wattos_core::{Error, RequestContext, Result};
use wattos_llm::router::Router;

/// One entry of `/v1/models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The name clients send as `model`.
    pub id: String,
    /// Who provides it (`wattos`, `openai`, ...).
    pub owned_by: String,
    /// Unix seconds the entry was registered.
    pub created: u64,
    /// `chat` or `embedding`.
    pub kind: ModelKind,
}

/// What a catalog entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Chat completions / messages.
    Chat,
    /// Embeddings.
    Embedding,
}

/// Names to models. A router that resolves names itself can be registered under each of its names.
///
/// ```
/// use std::sync::Arc;
/// use wattos_server::gateway::ModelCatalog;
/// # use wattos_core::llm::*; use async_trait::async_trait;
/// # struct Echo;
/// # #[async_trait] impl ChatModel for Echo {
/// #   fn name(&self) -> &str { "echo" }
/// #   async fn chat(&self, _: &wattos_core::RequestContext, r: ChatRequest) -> wattos_core::Result<ChatResponse> { unimplemented!() }
/// # }
/// let mut catalog = ModelCatalog::default();
/// catalog.add_chat("echo-1", "wattos", Arc::new(Echo));
/// assert!(catalog.has_chat("echo-1"));
/// ```
#[derive(Clone, Default)]
pub struct ModelCatalog {
    chat: BTreeMap<String, (ModelInfo, Arc<dyn ChatModel>)>,
    embedding: BTreeMap<String, (ModelInfo, Arc<dyn EmbeddingModel>)>,
    /// Resolves requests that name no chat model (the tenant's default, else the router's).
    chat_router: Option<Arc<Router>>,
}

impl std::fmt::Debug for ModelCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelCatalog")
            .field("chat", &self.chat.keys().collect::<Vec<_>>())
            .field("embedding", &self.embedding.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Unix time in seconds (OpenAI's `created` fields).
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The error for a model name the caller cannot use, in OpenAI's wording.
pub(crate) fn model_not_found(id: &str) -> Error {
    Error::not_found(format!(
        "The model '{id}' does not exist or you do not have access to it."
    ))
    .with_field("model")
}

impl ModelCatalog {
    /// Registers a chat model under `id`.
    pub fn add_chat(
        &mut self,
        id: impl Into<String>,
        owned_by: impl Into<String>,
        model: Arc<dyn ChatModel>,
    ) {
        let id = id.into();
        let info = ModelInfo {
            id: id.clone(),
            owned_by: owned_by.into(),
            created: now_secs(),
            kind: ModelKind::Chat,
        };
        self.chat.insert(id, (info, model));
    }

    /// Registers an embedding model under `id`.
    pub fn add_embedding(
        &mut self,
        id: impl Into<String>,
        owned_by: impl Into<String>,
        model: Arc<dyn EmbeddingModel>,
    ) {
        let id = id.into();
        let info = ModelInfo {
            id: id.clone(),
            owned_by: owned_by.into(),
            created: now_secs(),
            kind: ModelKind::Embedding,
        };
        self.embedding.insert(id, (info, model));
    }

    /// Lets `router` (registered under its names with [`ModelCatalog::add_chat`]) choose the chat
    /// model of requests that name none: the caller's tenant default model, else the router's.
    pub fn set_chat_router(&mut self, router: Arc<Router>) {
        self.chat_router = Some(router);
    }

    /// The chat model a request that names none uses for `ctx`'s caller: with a chat router, the
    /// tenant's `default_model`, else the router's default; without one, the first chat model by
    /// name.
    ///
    /// # Errors
    /// `unavailable` when the catalog has no chat model; the router's refusal (`forbidden` for a
    /// default the tenant may not use).
    pub async fn default_chat(&self, ctx: &RequestContext) -> Result<String> {
        if let Some(router) = &self.chat_router {
            return router.resolve_model(ctx, "").await;
        }
        self.chat
            .keys()
            .next()
            .cloned()
            .ok_or_else(|| Error::unavailable("no chat model is loaded on this server"))
    }

    /// The model and the name to send for chats that name no model (the built-in agents): the
    /// chat router with an empty name, resolved per call to the caller's default, when there is
    /// one; else the first chat model by name.
    pub fn default_chat_target(&self) -> Option<(Arc<dyn ChatModel>, String)> {
        if let Some(router) = &self.chat_router {
            return Some((router.clone() as Arc<dyn ChatModel>, String::new()));
        }
        self.chat
            .iter()
            .next()
            .map(|(name, (_, model))| (model.clone(), name.clone()))
    }

    /// The models the caller's tenant may use: [`ModelCatalog::list`] filtered by the tenant's
    /// `allowed_models` (when it has a list).
    pub fn list_for(&self, ctx: &RequestContext, config: Option<&TenantConfig>) -> Vec<ModelInfo> {
        let mut all = self.list(ctx);
        if let Some(cfg) = config {
            all.retain(|m| cfg.model_allowed(&m.id));
        }
        all
    }

    /// Whether a chat model named `id` exists.
    pub fn has_chat(&self, id: &str) -> bool {
        self.chat.contains_key(id)
    }

    /// The chat model for `id`.
    ///
    /// # Errors
    /// `not_found` naming the model (OpenAI's `model_not_found` situation).
    pub fn chat(&self, _ctx: &RequestContext, id: &str) -> Result<Arc<dyn ChatModel>> {
        self.chat
            .get(id)
            .map(|(_, m)| m.clone())
            .ok_or_else(|| model_not_found(id))
    }

    /// The embedding model for `id`.
    ///
    /// # Errors
    /// `not_found` naming the model.
    pub fn embedding(&self, _ctx: &RequestContext, id: &str) -> Result<Arc<dyn EmbeddingModel>> {
        self.embedding
            .get(id)
            .map(|(_, m)| m.clone())
            .ok_or_else(|| model_not_found(id))
    }

    /// Every model, chat first, sorted by name.
    pub fn list(&self, _ctx: &RequestContext) -> Vec<ModelInfo> {
        self.chat
            .values()
            .map(|(i, _)| i.clone())
            .chain(self.embedding.values().map(|(i, _)| i.clone()))
            .collect()
    }

    /// Whether the catalog has no models at all.
    pub fn is_empty(&self) -> bool {
        self.chat.is_empty() && self.embedding.is_empty()
    }
}
