//! Long-term memories over HTTP: every caller reads and writes only its own memories (tenant from
//! the credential, user from its subject); tenant admins can erase a user's memories.
//!
//! | Method | Path | |
//! |---|---|---|
//! | POST | /v1/memories | store (`{text, namespace?, id?, metadata?, ttl_seconds?}`) -> 201 |
//! | GET | /v1/memories | the caller's memories below `namespace`, newest first (`limit`, `offset`) |
//! | POST | /v1/memories/search | the most relevant (`{query, namespace?, filter?, limit?, offset?}`) |
//! | GET | /v1/memories/{id} | one (`namespace` query parameter) |
//! | DELETE | /v1/memories/{id} | forget one (`namespace`) |
//! | DELETE | /v1/memories | forget all of the caller's memories |
//! | DELETE | /v1/admin/users/{user}/memories | forget all of a user's memories (`tenant:configure`) |
//!
//! `namespace` is a path of segments below the caller's own root, written `a/b` in query
//! parameters and `["a", "b"]` in bodies. Writes and deletions are audited (when authentication is
//! on). Storage: `data_dir/memories.db` (SQLite) with an embedded vector store under
//! `data_dir/memories-vectors` in embedded mode, the configured Postgres (rows) and pgvector (when
//! the extension is available; keyword ranking otherwise) in shared mode; searches rank by the local
//! MiniLM (or the first embedding model loaded), falling back to keywords when the index fails.
//!
//! Conversations opt in to recall: a thread whose metadata has `"recall_memories": true` gets the
//! caller's most relevant memories as a system message before its history (see
//! [`crate::conversations::ThreadTurn`]).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use wattos_agents::memory::{
    MemoryHit, MemoryIndex, MemoryQuery, MemoryStore, Namespace, NewMemory, SqlMemoryStore,
};
use wattos_core::config::{Config, DeploymentMode};
use wattos_core::embedding::EmbeddingModel;
use wattos_core::tenancy::{Outcome, Permission};
use wattos_core::vector_store::{Filter, VectorStore};
use wattos_core::{Error, RequestContext, Result};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::gateway::openai::parse_body;
use crate::gateway::{Ctx, ModelCatalog, ModelKind};
use crate::state::AppState;

/// Audit actions of this module.
pub mod actions {
    /// A memory was stored or replaced.
    pub const MEMORY_STORED: &str = "memory.stored";
    /// A memory was forgotten.
    pub const MEMORY_FORGOTTEN: &str = "memory.forgotten";
    /// Every memory of a user was forgotten.
    pub const MEMORIES_ERASED: &str = "memory.user_erased";
}

/// The memory store the API serves. Cheap to clone.
#[derive(Clone)]
pub struct MemoryService {
    store: Arc<dyn MemoryStore>,
}

impl std::fmt::Debug for MemoryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryService").finish_non_exhaustive()
    }
}

impl MemoryService {
    /// A service over `store`.
    pub fn new(store: Arc<dyn MemoryStore>) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn MemoryStore> {
        &self.store
    }

    /// [`MemoryService::open_with`] with the catalog's local MiniLM, else its first embedding
    /// model, else none.
    ///
    /// # Errors
    /// As [`MemoryService::open_with`].
    pub async fn open(config: &Config, catalog: &ModelCatalog) -> Result<Self> {
        let ctx =
            RequestContext::system(wattos_core::TenantId::new(crate::gateway::EMBEDDED_TENANT)?);
        let models = catalog.list(&ctx);
        let name = models
            .iter()
            .find(|m| {
                m.kind == ModelKind::Embedding && m.id == crate::bootstrap::LOCAL_EMBEDDING_MODEL
            })
            .or_else(|| models.iter().find(|m| m.kind == ModelKind::Embedding))
            .map(|m| m.id.clone());
        let embedder = match name {
            Some(n) => Some(catalog.embedding(&ctx, &n)?),
            None => None,
        };
        Self::open_with(config, embedder).await
    }

    /// Opens the store for `config`, searching through `embedder` when given (keywords
    /// otherwise): SQLite plus an embedded vector store under `data_dir` (embedded mode), or the
    /// configured Postgres plus pgvector when its extension is available (shared mode).
    ///
    /// # Errors
    /// `Unavailable` when the database or the vector store cannot be opened.
    pub async fn open_with(
        config: &Config,
        embedder: Option<Arc<dyn EmbeddingModel>>,
    ) -> Result<Self> {
        let store = match (&config.mode, &config.database) {
            (DeploymentMode::Shared, Some(db)) if db.url.expose().starts_with("postgres") => {
                let pool = crate::dbpool::PoolSpec::of(config, crate::dbpool::Pool::Conversations)
                    .pg()
                    .connect(db.url.expose())
                    .await
                    .map_err(|e| Error::unavailable(format!("memory database: {e}")))?;
                let store = SqlMemoryStore::postgres(pool.clone(), "wattos_").await?;
                let vectors = match &embedder {
                    Some(e) => match wattos_rag::store::PgVectorStore::with_pool(
                        pool,
                        "wattos_memory_vectors",
                        e.dimensions(),
                    )
                    .await
                    {
                        Ok(v) => Some(Arc::new(v) as Arc<dyn VectorStore>),
                        Err(err) => {
                            tracing::warn!(error = %err, "no pgvector for memories: they rank by keywords");
                            None
                        }
                    },
                    None => None,
                };
                with_index(store, embedder, vectors)?
            }
            _ => {
                std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                    Error::unavailable(format!("cannot create {}: {e}", config.data_dir.display()))
                })?;
                let store =
                    SqlMemoryStore::open_sqlite(config.data_dir.join("memories.db"), "wattos_")
                        .await?;
                let vectors = match &embedder {
                    Some(e) => Some(Arc::new(wattos_rag::store::EmbeddedStore::open(
                        config.data_dir.join("memories-vectors"),
                        e.dimensions(),
                    )?) as Arc<dyn VectorStore>),
                    None => None,
                };
                with_index(store, embedder, vectors)?
            }
        };
        Ok(Self::new(Arc::new(store)))
    }
}

fn with_index(
    store: SqlMemoryStore,
    embedder: Option<Arc<dyn EmbeddingModel>>,
    vectors: Option<Arc<dyn VectorStore>>,
) -> Result<SqlMemoryStore> {
    Ok(match (embedder, vectors) {
        (Some(e), Some(v)) => store.with_index(MemoryIndex::new(e, v)?.with_keyword_fallback(true)),
        _ => {
            tracing::warn!("memories have no embedding model: searches rank by keywords");
            store
        }
    })
}

fn service(state: &AppState) -> ApiResult<&MemoryService> {
    state.memories().ok_or_else(|| {
        ApiError(Error::unavailable(
            "memories are not configured on this server",
        ))
    })
}

fn guard(
    route: MethodRouter<AppState>,
    auth: Option<&Auth>,
    p: Permission,
) -> MethodRouter<AppState> {
    match auth {
        Some(a) => route.route_layer(a.require(p)),
        None => route,
    }
}

/// The routes; with `auth`, a caller's own memories need `chat:invoke` and erasing another
/// user's `tenant:configure`.
pub fn routes(auth: Option<&Auth>) -> Router<AppState> {
    let own = |r| guard(r, auth, Permission::ChatInvoke);
    Router::new()
        .route(
            "/v1/memories",
            own(post(create).get(list).delete(forget_mine)),
        )
        .route("/v1/memories/search", own(post(search)))
        .route("/v1/memories/{id}", own(get(get_one).delete(forget_one)))
        .route(
            "/v1/admin/users/{user}/memories",
            guard(delete(erase_user), auth, Permission::TenantConfigure),
        )
}

async fn audit(
    state: &AppState,
    ctx: &RequestContext,
    action: &str,
    target: &str,
    detail: Option<String>,
) {
    if let Some(auth) = state.auth() {
        auth.audit_event(
            ctx.tenant(),
            &ctx.principal().subject,
            action,
            target,
            Outcome::Success,
            ctx.request_id().as_str(),
            detail,
        )
        .await;
    }
}

/// The caller's namespace `path` (segments below its own root).
fn caller_ns(ctx: &RequestContext, path: &[String]) -> ApiResult<Namespace> {
    Ok(Namespace::for_caller(ctx)?.join(path.iter().cloned())?)
}

/// `a/b` -> `["a", "b"]` (empty: the root).
fn split_path(path: Option<&str>) -> Vec<String> {
    path.unwrap_or_default()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `POST /v1/memories` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMemory {
    /// The text (1..=16384 bytes).
    pub text: String,
    /// Path below the caller's root, e.g. `["prefs", "food"]` (default: the root).
    #[serde(default)]
    pub namespace: Vec<String>,
    /// Id within the namespace: an existing id is replaced (default: a fresh UUIDv7).
    #[serde(default)]
    pub id: Option<String>,
    /// Metadata (keys must not start with `wattos_mem.`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Expires this many seconds from now (default: never).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// `POST /v1/memories/search` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchMemories {
    /// What to look for.
    pub query: String,
    /// Only below this path of the caller's namespace (default: all of the caller's memories).
    #[serde(default)]
    pub namespace: Vec<String>,
    /// Metadata filter (`{"eq": {"key": "kind", "value": "x"}}`, `in`, `and`, `or`, `not`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Filter>,
    /// 1..=100, default 10.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Skip this many.
    #[serde(default)]
    pub offset: Option<usize>,
}

/// List and single-memory query parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NamespaceQuery {
    /// Path below the caller's root, `a/b` (default: the root; lists include everything below).
    pub namespace: Option<String>,
    /// 1..=100, default 50 (lists only).
    pub limit: Option<usize>,
    /// Skip this many (lists only).
    pub offset: Option<usize>,
}

/// A memory (JSON of `wattos_agents::memory::Memory` plus `object`).
#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryBody {
    /// Always "memory".
    pub object: &'static str,
    /// The memory: `id`, `namespace {user, path}`, `text`, `metadata`, `created_ms`,
    /// `updated_ms`, `expires_ms?`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub memory: wattos_agents::memory::Memory,
}

fn body(m: wattos_agents::memory::Memory) -> MemoryBody {
    MemoryBody {
        object: "memory",
        memory: m,
    }
}

fn limit_of(limit: Option<usize>, default: usize) -> ApiResult<usize> {
    match limit {
        None => Ok(default),
        Some(l) if (1..=100).contains(&l) => Ok(l),
        Some(_) => Err(ApiError(Error::invalid_field("limit", "must be 1..=100"))),
    }
}

/// `POST /v1/memories`.
#[utoipa::path(post, path = "/v1/memories", tag = "memories", request_body = CreateMemory,
    responses((status = 201, body = MemoryBody), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    raw: axum::body::Bytes,
) -> ApiResult<Response> {
    let req: CreateMemory = parse_body(&raw)?;
    let ns = caller_ns(&ctx, &req.namespace)?;
    let new = NewMemory {
        id: req.id,
        text: req.text,
        metadata: req.metadata,
        ttl: match req.ttl_seconds {
            Some(0) => {
                return Err(ApiError(Error::invalid_field(
                    "ttl_seconds",
                    "must be positive",
                )));
            }
            Some(s) => Some(std::time::Duration::from_secs(s)),
            None => None,
        },
    };
    let m = service(&state)?.store.put(&ctx, &ns, new).await?;
    audit(
        &state,
        &ctx,
        actions::MEMORY_STORED,
        &m.id,
        Some(format!("namespace={}", ns.path().join("/"))),
    )
    .await;
    Ok((StatusCode::CREATED, Json(body(m))).into_response())
}

/// `GET /v1/memories`.
#[utoipa::path(get, path = "/v1/memories", tag = "memories", params(NamespaceQuery),
    responses((status = 200, description = "`{object: list, data: [memory]}`", body = Object), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Query(q): Query<NamespaceQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let ns = caller_ns(&ctx, &split_path(q.namespace.as_deref()))?;
    let query = MemoryQuery::top(limit_of(q.limit, 50)?).with_offset(q.offset.unwrap_or(0));
    let data: Vec<MemoryBody> = service(&state)?
        .store
        .list(&ctx, &ns, &query)
        .await?
        .into_iter()
        .map(body)
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `POST /v1/memories/search`.
#[utoipa::path(post, path = "/v1/memories/search", tag = "memories", request_body = SearchMemories,
    responses((status = 200, description = "`{object: list, data: [{memory, score, matched_by: semantic|keyword}]}`", body = Object), (status = 400, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    raw: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let req: SearchMemories = parse_body(&raw)?;
    let ns = caller_ns(&ctx, &req.namespace)?;
    let mut query = MemoryQuery::top(limit_of(req.limit, 10)?).with_offset(req.offset.unwrap_or(0));
    query.filter = req.filter;
    let data: Vec<MemoryHit> = service(&state)?
        .store
        .search(&ctx, &ns, &req.query, &query)
        .await?;
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `GET /v1/memories/{id}`.
#[utoipa::path(get, path = "/v1/memories/{id}", tag = "memories",
    params(("id" = String, Path), NamespaceQuery),
    responses((status = 200, body = MemoryBody), (status = 400, description = "Invalid id or query", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    Query(q): Query<NamespaceQuery>,
) -> ApiResult<Json<MemoryBody>> {
    let ns = caller_ns(&ctx, &split_path(q.namespace.as_deref()))?;
    let m = service(&state)?
        .store
        .get(&ctx, &ns, &id)
        .await?
        .ok_or_else(|| ApiError(Error::not_found(format!("memory {id:?}"))))?;
    Ok(Json(body(m)))
}

/// `DELETE /v1/memories/{id}`.
#[utoipa::path(delete, path = "/v1/memories/{id}", tag = "memories",
    params(("id" = String, Path), NamespaceQuery),
    responses((status = 200, description = "`{id, object, deleted: true}`", body = Object), (status = 400, description = "Invalid id or query", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn forget_one(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    Query(q): Query<NamespaceQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let ns = caller_ns(&ctx, &split_path(q.namespace.as_deref()))?;
    if !service(&state)?.store.forget(&ctx, &ns, &id).await? {
        return Err(ApiError(Error::not_found(format!("memory {id:?}"))));
    }
    audit(
        &state,
        &ctx,
        actions::MEMORY_FORGOTTEN,
        &id,
        Some(format!("namespace={}", ns.path().join("/"))),
    )
    .await;
    Ok(Json(json!({"id": id, "object": "memory", "deleted": true})))
}

/// `DELETE /v1/memories`.
#[utoipa::path(delete, path = "/v1/memories", tag = "memories",
    responses((status = 200, description = "`{object: memories.deleted, user, deleted: n}`", body = Object), (status = 400, description = "Invalid query", body = ErrorBody)))]
pub async fn forget_mine(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
) -> ApiResult<Json<serde_json::Value>> {
    let user = ctx.principal().subject.clone();
    erase(&state, &ctx, &user).await
}

/// `DELETE /v1/admin/users/{user}/memories`.
#[utoipa::path(delete, path = "/v1/admin/users/{user}/memories", tag = "memories",
    params(("user" = String, Path, description = "The user's subject")),
    responses((status = 200, description = "`{object: memories.deleted, user, deleted: n}`", body = Object), (status = 400, description = "Invalid user id", body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn erase_user(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(user): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    erase(&state, &ctx, &user).await
}

async fn erase(
    state: &AppState,
    ctx: &RequestContext,
    user: &str,
) -> ApiResult<Json<serde_json::Value>> {
    Namespace::user(user)?;
    let n = service(state)?.store.forget_user(ctx, user).await?;
    audit(
        state,
        ctx,
        actions::MEMORIES_ERASED,
        user,
        Some(format!("deleted={n}")),
    )
    .await;
    Ok(Json(
        json!({"object": "memories.deleted", "user": user, "deleted": n}),
    ))
}

/// OpenAPI paths of this module.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create, list, search, get_one, forget_one, forget_mine, erase_user),
    components(schemas(CreateMemory, SearchMemories, MemoryBody)),
    tags((name = "memories", description = "Long-term memories per tenant and user: semantic search, TTLs, erasure")),
)]
pub struct MemoriesDoc;
