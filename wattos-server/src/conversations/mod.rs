//! Conversations and feedback over HTTP, plus thread continuation for `POST /v1/chat/completions`.
//!
//! | Method | Path | |
//! |---|---|---|
//! | POST | /v1/conversations | create (`{title?, model?, metadata?}`) -> 201 |
//! | GET | /v1/conversations | the caller's threads, newest first (`limit`, `before_ms`) |
//! | GET | /v1/conversations/{id} | one thread |
//! | PATCH | /v1/conversations/{id} | rename (`{title}`) |
//! | DELETE | /v1/conversations/{id} | delete |
//! | GET | /v1/conversations/{id}/messages | messages in order |
//! | GET | /v1/conversations/{id}/export | thread plus messages |
//! | POST | /v1/feedback | rating 1..=5 + comment for an answer -> 201 |
//! | GET | /v1/feedback/report | ratings by model and collection |
//! | GET | /v1/feedback/export | rated answers as a BEIR eval set (`corpus`, `queries`, `qrels` texts) |
//!
//! A chat completion request (streaming or not) or a RAG answer with the extension field
//! `"conversation_id"` continues that thread ([`ThreadTurn`]): the stored history (trimmed to the
//! model's context window) is put before the request's messages, and once the answer is complete
//! the new messages plus the answer are appended with usage and cost. A failed or cut-off answer
//! appends nothing. Clients that do not send the field see the OpenAI API unchanged.
//!
//! Retention: [`RetentionSweeper`] deletes threads older than each tenant's `retention.data_days`.
//!
//! Storage: SQLite files under `data_dir` in embedded mode, the configured Postgres in shared mode.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use wattos_agents::conversation::{
    Conversations, ListOptions, NewConversation, SqlConversationStore,
};
use wattos_core::config::{Config, DeploymentMode};
use wattos_core::{Error, Result};
use wattos_rag::feedback::{FeedbackFilter, FeedbackStore, NewFeedback, SqlFeedbackStore};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::gateway::Ctx;
use crate::gateway::openai::parse_body;
use crate::state::AppState;

mod retention;
mod turn;

pub use retention::RetentionSweeper;
pub use turn::{
    CONVERSATION_HEADER, DEFAULT_CONTEXT_WINDOW, ThreadTurn, context_window,
    with_conversation_header,
};

/// `conversations.*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSettings {
    /// `conversations.retention_interval`: how often [`RetentionSweeper`] applies each tenant's
    /// `retention.data_days` (default 1 h, at least 1 s).
    pub retention_interval: std::time::Duration,
}

impl ConversationSettings {
    /// Reads the settings, recording problems in `r`.
    pub fn read(r: &mut wattos_core::config::ConfigReader) -> Self {
        let s = Self {
            retention_interval: r.or(
                "conversations.retention_interval",
                std::time::Duration::from_secs(3600),
            ),
        };
        if s.retention_interval < std::time::Duration::from_secs(1) {
            r.problem("conversations.retention_interval", "must be at least 1s");
        }
        s
    }
}

/// The conversation and feedback stores. Cheap to clone.
#[derive(Clone)]
pub struct ConversationServices {
    conversations: Conversations,
    feedback: Arc<dyn FeedbackStore>,
    memories: Option<Arc<dyn wattos_agents::memory::MemoryStore>>,
}

impl std::fmt::Debug for ConversationServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversationServices")
            .finish_non_exhaustive()
    }
}

impl ConversationServices {
    /// Opens the stores for `config`: SQLite files `conversations.db` and `feedback.db` under
    /// `data_dir` (embedded mode), or the configured Postgres (shared mode).
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be opened; shared mode without a database.
    pub async fn open(config: &Config) -> Result<Self> {
        match (&config.mode, &config.database) {
            (DeploymentMode::Shared, Some(db)) => {
                let pool = crate::dbpool::PoolSpec::of(config, crate::dbpool::Pool::Conversations)
                    .pg()
                    .connect(db.url.expose())
                    .await
                    .map_err(|e| Error::unavailable(format!("conversation database: {e}")))?;
                let conv = SqlConversationStore::postgres(pool.clone(), "wattos_").await?;
                let fb = SqlFeedbackStore::postgres(pool, "wattos_").await?;
                Ok(Self::new(Conversations::new(Arc::new(conv)), Arc::new(fb)))
            }
            (DeploymentMode::Shared, None) => Err(Error::invalid_field(
                "database.url",
                "shared mode needs a database for conversations",
            )),
            _ => {
                std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                    Error::unavailable(format!("cannot create {}: {e}", config.data_dir.display()))
                })?;
                let conv = SqlConversationStore::open_sqlite(
                    config.data_dir.join("conversations.db"),
                    "wattos_",
                )
                .await?;
                let fb =
                    SqlFeedbackStore::open_sqlite(config.data_dir.join("feedback.db"), "wattos_")
                        .await?;
                Ok(Self::new(Conversations::new(Arc::new(conv)), Arc::new(fb)))
            }
        }
    }

    /// Services over the given stores.
    pub fn new(conversations: Conversations, feedback: Arc<dyn FeedbackStore>) -> Self {
        Self {
            conversations,
            feedback,
            memories: None,
        }
    }

    /// Lets threads opt in to recall from `memories`: a thread whose metadata has
    /// `"recall_memories": true` gets the caller's memories most relevant to the new user message
    /// as a system message before its history (see [`crate::memories`]).
    #[must_use]
    pub fn with_memories(mut self, memories: Arc<dyn wattos_agents::memory::MemoryStore>) -> Self {
        self.memories = Some(memories);
        self
    }

    /// The memory store threads recall from, when set.
    pub fn memories(&self) -> Option<&Arc<dyn wattos_agents::memory::MemoryStore>> {
        self.memories.as_ref()
    }

    /// The conversation service.
    pub fn conversations(&self) -> &Conversations {
        &self.conversations
    }

    /// The feedback store.
    pub fn feedback(&self) -> &Arc<dyn FeedbackStore> {
        &self.feedback
    }
}

fn services(state: &AppState) -> ApiResult<&ConversationServices> {
    state.conversations().ok_or_else(|| {
        ApiError(Error::unavailable(
            "conversations are not configured on this server",
        ))
    })
}

/// The routes (mounted behind authentication by [`crate::app`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/conversations", post(create).get(list))
        .route(
            "/v1/conversations/{id}",
            get(get_one).patch(rename).delete(delete),
        )
        .route("/v1/conversations/{id}/messages", get(messages))
        .route("/v1/conversations/{id}/export", get(export))
        .route("/v1/feedback", post(record_feedback))
        .route("/v1/feedback/report", get(feedback_report))
        .route("/v1/feedback/export", get(feedback_export))
}

/// `POST /v1/conversations` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    /// Title (default "New conversation").
    #[serde(default)]
    pub title: Option<String>,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Metadata.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// `PATCH /v1/conversations/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameConversation {
    /// New title (1..=200 characters).
    pub title: String,
}

/// List query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1..=200, default 50.
    pub limit: Option<u32>,
    /// Cursor: only threads updated before this time (Unix ms).
    pub before_ms: Option<i64>,
}

/// A thread header (JSON of `wattos_agents::conversation::Conversation` plus `object`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationBody {
    /// Always "conversation".
    pub object: &'static str,
    /// The thread.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub conversation: wattos_agents::conversation::Conversation,
}

fn conv_body(c: wattos_agents::conversation::Conversation) -> Json<ConversationBody> {
    Json(ConversationBody {
        object: "conversation",
        conversation: c,
    })
}

/// `POST /v1/conversations`.
#[utoipa::path(post, path = "/v1/conversations", tag = "conversations",
    request_body = CreateConversation,
    responses((status = 201, body = ConversationBody), (status = 400, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    // serde would also read a JSON array as this struct's fields in order: require an object.
    let raw: serde_json::Value = parse_body(&body)?;
    if !raw.is_object() {
        return Err(ApiError(Error::invalid_input(
            "the body must be a JSON object",
        )));
    }
    let req: CreateConversation = parse_body(&body)?;
    let c = services(&state)?
        .conversations
        .store()
        .create(
            &ctx,
            NewConversation {
                title: req.title,
                model: req.model,
                metadata: req.metadata,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, conv_body(c)).into_response())
}

/// `GET /v1/conversations`.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", params(ListQuery),
    responses((status = 200, description = "`{object: list, data: [conversation]}`", body = Object), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    if q.limit.is_some_and(|l| !(1..=200).contains(&l)) {
        return Err(ApiError(Error::invalid_field("limit", "must be 1..=200")));
    }
    let opts = ListOptions {
        limit: q.limit.unwrap_or(50),
        before_ms: q.before_ms,
    };
    let data = services(&state)?
        .conversations
        .store()
        .list(&ctx, opts)
        .await?;
    let data: Vec<_> = data
        .into_iter()
        .map(|c| ConversationBody {
            object: "conversation",
            conversation: c,
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `GET /v1/conversations/{id}`.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path)),
    responses((status = 200, body = ConversationBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<ConversationBody>> {
    let c = services(&state)?
        .conversations
        .store()
        .get(&ctx, &id)
        .await?;
    Ok(conv_body(c))
}

/// `PATCH /v1/conversations/{id}`.
#[utoipa::path(patch, path = "/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path)), request_body = RenameConversation,
    responses((status = 200, body = ConversationBody), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rename(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<ConversationBody>> {
    let req: RenameConversation = parse_body(&body)?;
    let c = services(&state)?
        .conversations
        .store()
        .rename(&ctx, &id, &req.title)
        .await?;
    Ok(conv_body(c))
}

/// `DELETE /v1/conversations/{id}`.
#[utoipa::path(delete, path = "/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path)),
    responses((status = 200, description = "`{id, object, deleted: true}`", body = Object), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    services(&state)?
        .conversations
        .store()
        .delete(&ctx, &id)
        .await?;
    Ok(Json(
        json!({"id": id, "object": "conversation", "deleted": true}),
    ))
}

/// `GET /v1/conversations/{id}/messages`.
#[utoipa::path(get, path = "/v1/conversations/{id}/messages", tag = "conversations",
    params(("id" = String, Path)),
    responses((status = 200, description = "`{object: list, data: [message]}`", body = Object), (status = 404, body = ErrorBody)))]
pub async fn messages(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let data = services(&state)?
        .conversations
        .store()
        .messages(&ctx, &id)
        .await?;
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `GET /v1/conversations/{id}/export`.
#[utoipa::path(get, path = "/v1/conversations/{id}/export", tag = "conversations",
    params(("id" = String, Path)),
    responses((status = 200, description = "`{conversation, messages}`", body = Object), (status = 404, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<wattos_agents::conversation::ConversationExport>> {
    Ok(Json(
        services(&state)?.conversations.export(&ctx, &id).await?,
    ))
}

/// `POST /v1/feedback`.
#[utoipa::path(post, path = "/v1/feedback", tag = "feedback",
    request_body(content = Object, description = "`{request_id, rating: 1..=5, comment?, model?, collection?, query?, answer?, chunks?: [{chunk_id, document_id, title?, text, score?}], citations?: [document_id], conversation_id?}`"),
    responses((status = 201, description = "The stored feedback", body = Object), (status = 400, body = ErrorBody)))]
pub async fn record_feedback(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let req: NewFeedback = parse_body(&body)?;
    let fb = services(&state)?.feedback.record(&ctx, req).await?;
    Ok((StatusCode::CREATED, Json(fb)).into_response())
}

/// `GET /v1/feedback/report`.
#[utoipa::path(get, path = "/v1/feedback/report", tag = "feedback",
    responses((status = 200, description = "`{total, by_model: [{key, count, mean, positive}], by_collection: [...]}`", body = Object)))]
pub async fn feedback_report(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
) -> ApiResult<Json<wattos_rag::feedback::FeedbackReport>> {
    Ok(Json(services(&state)?.feedback.report(&ctx).await?))
}

/// Feedback export filter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Only this model.
    pub model: Option<String>,
    /// Only this collection.
    pub collection: Option<String>,
}

/// `GET /v1/feedback/export`.
#[utoipa::path(get, path = "/v1/feedback/export", tag = "feedback", params(ExportQuery),
    responses((status = 200, description = "`{corpus, queries, qrels, summary}`: the texts of corpus.jsonl, queries.jsonl and qrels/test.tsv", body = Object), (status = 400, body = ErrorBody)))]
pub async fn feedback_export(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Json<wattos_rag::feedback::BeirFiles>> {
    let all = services(&state)?
        .feedback
        .list(
            &ctx,
            &FeedbackFilter {
                model: q.model,
                collection: q.collection,
                ..FeedbackFilter::default()
            },
        )
        .await?;
    Ok(Json(wattos_rag::feedback::beir_files(&all)))
}

/// A `conversation_id` body field: absent, or a non-empty id.
///
/// # Errors
/// `invalid_input` when it is blank.
pub fn conversation_id_field(id: Option<String>) -> ApiResult<Option<String>> {
    match id {
        Some(s) if s.trim().is_empty() => Err(ApiError(Error::invalid_field(
            "conversation_id",
            "must be a non-empty string",
        ))),
        other => Ok(other),
    }
}

/// The `conversation_id` extension field of a chat completion request, if any.
///
/// # Errors
/// `invalid_input` when it is present but not a non-empty string.
pub fn conversation_id(
    other: &serde_json::Map<String, serde_json::Value>,
) -> ApiResult<Option<String>> {
    match other.get("conversation_id") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(ApiError(Error::invalid_field(
            "conversation_id",
            "must be a non-empty string",
        ))),
    }
}

/// OpenAPI paths of this module.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create, list, get_one, rename, delete, messages, export, record_feedback, feedback_report, feedback_export),
    components(schemas(CreateConversation, RenameConversation, ConversationBody)),
    tags(
        (name = "conversations", description = "Durable chat threads per tenant and user"),
        (name = "feedback", description = "Answer ratings, reports and eval export"),
    )
)]
pub struct ConversationsDoc;
