//! The RAG API: per-tenant collections, JSON and multipart ingestion with per-document results,
//! document listing and deletion, hybrid / dense / keyword search with metadata filters, and cited
//! answers (JSON or server-sent events).
//!
//! Every handler takes the tenant from the authenticated [`wattos_core::RequestContext`]: another
//! tenant's collection is a plain 404. Storage sits behind [`RagBackend`] (embedded by default).

mod jobs;
mod registry;
mod service;
pub mod types;

use std::collections::HashSet;
use std::convert::Infallible;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use futures::{Stream, StreamExt};
use serde_json::{Map, Value, json};
use wattos_core::llm::{ChatDelta, Message, Usage};
use wattos_core::tenancy::{Permission, TenantConfig};
use wattos_core::vector_store::Filter;
use wattos_core::{Error, RequestContext};
use wattos_rag::answer::{AnswerOptions, ContextBuilder, answer_request, finish_answer};
use wattos_rag::document::{Format, Source};
use wattos_rag::fusion::Fusion;
use wattos_rag::loader::{AutoLoader, LoadError, LoadFailure, Loader};
use wattos_rag::pipeline::IngestOutcome;
use wattos_rag::rerank::{MmrReranker, Reranker};
use wattos_rag::retrieve::{SearchMode, SearchRequest};

pub use registry::{CollectionRow, DocumentRow, Registry};
pub use service::{EmbeddedBackend, PgVectorBackend, RagBackend, RagService};
use types::*;

use crate::auth::Auth;
use crate::conversations::{ThreadTurn, context_window, with_conversation_header};
use crate::error::{ApiError, ApiResult, ErrorBody, error_body, path_err, query_err};
use crate::gateway::{CallerConfig, Ctx, GatewayState};
use crate::state::AppState;

/// Metadata keys the pipeline sets itself.
const RESERVED_KEYS: [&str; 8] = [
    "title",
    "location",
    "section",
    "start_char",
    "end_char",
    "chunk_index",
    "content_hash",
    "document_id",
];
const MAX_DOCUMENTS: usize = 256;

fn now_ms() -> i64 {
    crate::auth::now_ms()
}

/// Applies `permission` to `route` when authentication is on.
fn guard(
    route: MethodRouter<AppState>,
    auth: Option<&Auth>,
    permission: Permission,
) -> MethodRouter<AppState> {
    match auth {
        Some(a) => route.route_layer(a.require(permission)),
        None => route,
    }
}

/// The RAG routes; with `auth`, writes need `rag:ingest`, reads `rag:query`, and `answer` (which
/// invokes the chat model) also `chat:invoke`.
pub fn routes(auth: Option<&Auth>) -> Router<AppState> {
    let ingest = |r| guard(r, auth, Permission::RagIngest);
    let query = |r| guard(r, auth, Permission::RagQuery);
    Router::new()
        .route(
            "/v1/rag/collections",
            query(get(list_collections)).merge(ingest(post(create_collection))),
        )
        .route(
            "/v1/rag/collections/{collection}",
            query(get(get_collection)).merge(ingest(axum::routing::delete(delete_collection))),
        )
        .route(
            "/v1/rag/collections/{collection}/documents",
            query(get(list_documents)).merge(ingest(post(ingest_json))),
        )
        .route(
            "/v1/rag/collections/{collection}/files",
            ingest(post(ingest_files)),
        )
        .route(
            "/v1/rag/collections/{collection}/documents/{document_id}",
            query(get(get_document)).merge(ingest(axum::routing::delete(delete_document))),
        )
        .route(
            "/v1/rag/collections/{collection}/search",
            query(post(search)),
        )
        .route(
            "/v1/rag/collections/{collection}/answer",
            // Answering invokes the chat model: it needs what the chat API needs, too.
            query(guard(post(answer), auth, Permission::ChatInvoke)),
        )
}

fn service(state: &AppState) -> ApiResult<&RagService> {
    state.rag().ok_or_else(|| {
        ApiError(Error::unavailable(
            "RAG is not available on this server (no embedding model is loaded)",
        ))
    })
}

/// Checks a collection name: `^[a-z0-9][a-z0-9_-]{0,63}$`.
fn check_collection_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && !name.starts_with(['_', '-']);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_field(
            "name",
            "collection names are 1-64 lowercase letters, digits, '_' or '-', starting with a letter or digit",
        ))
    }
}

fn check_document_id(id: &str, field: &str) -> Result<(), Error> {
    if id.is_empty() || id.chars().count() > 512 || id.chars().any(char::is_control) {
        return Err(Error::invalid_field(
            field,
            "document ids are 1-512 characters without control characters",
        ));
    }
    Ok(())
}

fn check_metadata(meta: &Map<String, Value>, field: &str) -> Result<(), Error> {
    for (k, v) in meta {
        let key_ok = !k.is_empty()
            && k.len() <= 128
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !key_ok {
            return Err(Error::invalid_field(
                field,
                format!("invalid metadata key {k:?}"),
            ));
        }
        if RESERVED_KEYS.contains(&k.as_str()) {
            return Err(Error::invalid_field(
                field,
                format!("metadata key {k:?} is reserved"),
            ));
        }
        if !(v.is_string() || v.is_number() || v.is_boolean()) {
            return Err(Error::invalid_field(
                field,
                format!("metadata value of {k:?} must be a string, number or boolean"),
            ));
        }
    }
    Ok(())
}

/// The collection of the caller's tenant, or 404.
async fn existing(svc: &RagService, ctx: &RequestContext, name: &str) -> ApiResult<CollectionRow> {
    // A name that cannot exist is not found rather than invalid: same answer as another tenant's.
    if check_collection_name(name).is_err() {
        return Err(not_found_collection(name));
    }
    svc.registry()
        .get_collection(ctx.tenant(), name)
        .await?
        .ok_or_else(|| not_found_collection(name))
}

fn not_found_collection(name: &str) -> ApiError {
    ApiError(Error::not_found(format!("collection `{name}`")).with_field("collection"))
}

fn collection_json(row: CollectionRow) -> Collection {
    Collection {
        id: row.name,
        object: "collection",
        description: row.description,
        created_at_ms: row.created_at_ms,
        document_count: row.document_count,
        chunk_count: row.chunk_count,
    }
}

fn document_json(row: DocumentRow) -> DocumentInfo {
    DocumentInfo {
        id: row.id,
        object: "document",
        title: row.title,
        location: row.location,
        format: row.format,
        content_hash: row.content_hash,
        chunks: row.chunks,
        bytes: row.bytes,
        metadata: row.metadata,
        created_at_ms: row.created_at_ms,
        updated_at_ms: row.updated_at_ms,
    }
}

/// `POST /v1/rag/collections`.
#[utoipa::path(
    post, path = "/v1/rag/collections", tag = "rag",
    request_body = CreateCollection,
    responses(
        (status = 201, description = "Created", body = Collection),
        (status = 400, description = "Invalid name or body", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Missing rag:ingest", body = ErrorBody),
        (status = 409, description = "A collection of that name exists", body = ErrorBody),
    )
)]
pub async fn create_collection(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let svc = service(&state)?;
    let req: CreateCollection = crate::gateway::openai::parse_body(&body)?;
    check_collection_name(&req.name)?;
    if req
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1024)
    {
        return Err(ApiError(Error::invalid_field(
            "description",
            "at most 1024 characters",
        )));
    }
    svc.registry()
        .create_collection(
            ctx.tenant(),
            &req.name,
            req.description.as_deref(),
            now_ms(),
        )
        .await?;
    let row = existing(svc, &ctx, &req.name).await?;
    Ok((StatusCode::CREATED, Json(collection_json(row))).into_response())
}

/// `GET /v1/rag/collections`.
#[utoipa::path(
    get, path = "/v1/rag/collections", tag = "rag",
    responses(
        (status = 200, description = "The tenant's collections", body = CollectionList),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
    )
)]
pub async fn list_collections(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
) -> ApiResult<Json<CollectionList>> {
    let svc = service(&state)?;
    let data = svc
        .registry()
        .list_collections(ctx.tenant())
        .await?
        .into_iter()
        .map(collection_json)
        .collect();
    Ok(Json(CollectionList {
        object: "list",
        data,
    }))
}

/// `GET /v1/rag/collections/{collection}`.
#[utoipa::path(
    get, path = "/v1/rag/collections/{collection}", tag = "rag",
    params(("collection" = String, Path, description = "Collection name")),
    responses(
        (status = 200, description = "The collection", body = Collection),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 404, description = "No such collection", body = ErrorBody),
    )
)]
pub async fn get_collection(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Collection>> {
    let Path(name) = path.map_err(path_err)?;
    let svc = service(&state)?;
    Ok(Json(collection_json(existing(svc, &ctx, &name).await?)))
}

/// `DELETE /v1/rag/collections/{collection}`: removes the collection, its documents and index files.
#[utoipa::path(
    delete, path = "/v1/rag/collections/{collection}", tag = "rag",
    params(("collection" = String, Path, description = "Collection name")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Missing rag:ingest", body = ErrorBody),
        (status = 404, description = "No such collection", body = ErrorBody),
    )
)]
pub async fn delete_collection(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Deleted>> {
    let Path(name) = path.map_err(path_err)?;
    let svc = service(&state)?;
    let row = existing(svc, &ctx, &name).await?;
    svc.registry()
        .delete_collection(ctx.tenant(), &name)
        .await?;
    svc.destroy(ctx.tenant(), &name).await?;
    Ok(Json(Deleted {
        id: name,
        object: "collection",
        deleted: true,
        chunks_removed: u64::try_from(row.chunk_count).unwrap_or(0),
    }))
}

/// One input of an ingest, before loading.
struct Pending {
    source: Source,
    metadata: Map<String, Value>,
}

fn failure_name(f: &LoadFailure) -> &'static str {
    match f {
        LoadFailure::Empty => "empty",
        LoadFailure::Binary => "binary",
        LoadFailure::InvalidUtf8 { .. } => "invalid_utf8",
        LoadFailure::TooLarge { .. } => "too_large",
        LoadFailure::BrokenPdf { .. } => "broken_pdf",
        LoadFailure::UnsupportedFormat { .. } => "unsupported_format",
        _ => "other",
    }
}

fn failed(document_id: String, err: &Error) -> IngestResult {
    IngestResult {
        document_id,
        status: IngestStatus::Failed,
        chunks: 0,
        error: Some(IngestError {
            code: err.code(),
            message: if err.kind() == wattos_core::ErrorKind::Internal {
                "internal error".to_owned()
            } else {
                err.message().to_owned()
            },
            failure: LoadError::from_error(err).map(|l| failure_name(&l.failure)),
        }),
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Text => "text",
        Format::Markdown => "markdown",
        Format::Html => "html",
        Format::Pdf => "pdf",
    }
}

/// Loads, indexes and registers `items` in `collection`; one result per item, in order.
async fn run_ingest(
    svc: &RagService,
    ctx: &RequestContext,
    collection: &str,
    items: Vec<Pending>,
) -> ApiResult<Ingested> {
    let rag = svc.rag(ctx.tenant(), collection).await?;
    let loader = AutoLoader::default();
    let mut results: Vec<Option<IngestResult>> = Vec::with_capacity(items.len());
    let mut docs = Vec::new();
    // (result index, bytes) per loaded document, in `docs` order.
    let mut slots = Vec::new();
    // The first failure, for the request error when nothing at all could be stored.
    let mut first_failure: Option<(wattos_core::ErrorKind, String)> = None;
    let mut note = |e: &Error| {
        if first_failure.is_none() {
            first_failure = Some((e.kind(), e.message().to_owned()));
        }
    };
    for item in items {
        let id = item.source.id.clone();
        let bytes = item.source.bytes.len();
        match loader.load(ctx, item.source).await {
            Ok(mut doc) => {
                doc.metadata.extend(item.metadata);
                slots.push((results.len(), bytes));
                results.push(None);
                docs.push(doc);
            }
            Err(e) => {
                note(&e);
                results.push(Some(failed(id, &e)));
            }
        }
    }
    let infos: Vec<DocumentRow> = docs
        .iter()
        .zip(&slots)
        .map(|(d, (_, bytes))| DocumentRow {
            id: d.id.clone(),
            title: d.title.clone(),
            location: d.location.clone(),
            format: format_name(d.format).to_owned(),
            content_hash: d.content_hash(),
            chunks: 0,
            bytes: i64::try_from(*bytes).unwrap_or(i64::MAX),
            metadata: d.metadata.clone(),
            created_at_ms: 0,
            updated_at_ms: 0,
        })
        .collect();
    // The tenant's document quota, checked before anything is stored; the guard keeps the
    // tenant's other ingests out until these documents are recorded.
    let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    let _quota = svc.reserve_documents(ctx, collection, &ids).await?;
    let report = if docs.is_empty() {
        Default::default()
    } else {
        // On a blocking-pool thread driving the ingest to completion: it finishes even when the
        // client goes away, and the pipeline's borrowing stream combinators need not be `Send`
        // (rustc cannot prove it for them; see rust-lang/rust#102211).
        let (rag, task_ctx) = (rag.clone(), ctx.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            handle.block_on(rag.pipeline().ingest_documents(&task_ctx, docs))
        })
        .await
        .map_err(|e| Error::internal("ingest task panicked").with_source(e))??
    };
    let now = now_ms();
    for ((outcome, (slot, _)), mut info) in report.outcomes.into_iter().zip(slots).zip(infos) {
        let result = match outcome {
            IngestOutcome::Indexed {
                document_id,
                chunks,
            } => {
                let prior = svc
                    .registry()
                    .get_document(ctx.tenant(), collection, &document_id)
                    .await?;
                info.chunks = i64::try_from(chunks).unwrap_or(i64::MAX);
                info.created_at_ms = prior.map_or(now, |p| p.created_at_ms);
                info.updated_at_ms = now;
                svc.registry()
                    .upsert_document(ctx.tenant(), collection, &info)
                    .await?;
                IngestResult {
                    document_id,
                    status: IngestStatus::Indexed,
                    chunks,
                    error: None,
                }
            }
            IngestOutcome::Unchanged {
                document_id,
                chunks: stored,
            } => {
                let prior = svc
                    .registry()
                    .get_document(ctx.tenant(), collection, &document_id)
                    .await?;
                let stored = i64::try_from(stored).unwrap_or(i64::MAX);
                // The record follows what is stored: a crash between storing the chunks and
                // recording the document (or a record written by such a crash's redelivery with a
                // wrong count) is repaired here, by the redelivery or any later ingest.
                let repair = match &prior {
                    None => Some(now),
                    Some(p) if p.chunks != stored => Some(p.created_at_ms),
                    Some(_) => None,
                };
                if let Some(created_at_ms) = repair {
                    tracing::warn!(
                        collection,
                        document_id = %document_id,
                        recorded = prior.as_ref().map(|p| p.chunks),
                        stored,
                        "document record repaired from the stored chunks"
                    );
                    info.chunks = stored;
                    info.created_at_ms = created_at_ms;
                    info.updated_at_ms = now;
                    svc.registry()
                        .upsert_document(ctx.tenant(), collection, &info)
                        .await?;
                }
                IngestResult {
                    document_id,
                    status: IngestStatus::Unchanged,
                    chunks: 0,
                    error: None,
                }
            }
            IngestOutcome::Failed { document_id, error } => {
                note(&error);
                failed(document_id, &error)
            }
            _ => failed(info.id.clone(), &Error::internal("unknown ingest outcome")),
        };
        results[slot] = Some(result);
    }
    let results: Vec<IngestResult> = results.into_iter().flatten().collect();
    let count = |s: IngestStatus| results.iter().filter(|r| r.status == s).count();
    let nothing_stored = (count(IngestStatus::Indexed) + count(IngestStatus::Unchanged) == 0)
        .then_some(first_failure)
        .flatten()
        .map(|(kind, message)| {
            let n = results.len();
            let detail = if n == 1 {
                message
            } else {
                format!("all {n} documents failed, e.g. {message}")
            };
            Error::new(kind, format!("no document was stored: {detail}")).with_field("documents")
        });
    let response = IngestResponse {
        object: "ingest.result",
        collection: collection.to_owned(),
        indexed: count(IngestStatus::Indexed),
        unchanged: count(IngestStatus::Unchanged),
        failed: count(IngestStatus::Failed),
        results,
    };
    Ok(Ingested {
        response,
        nothing_stored,
    })
}

/// What [`run_ingest`] did.
struct Ingested {
    /// One result per document.
    response: IngestResponse,
    /// When every document failed: the request's error, with the first failure's kind (400 for
    /// bad documents, 503 when a dependency is down). The HTTP API answers with it, so no client
    /// takes a request that stored nothing for a success; jobs keep the per-document results.
    nothing_stored: Option<Error>,
}

impl Ingested {
    /// The HTTP answer: the results, or the error when nothing was stored.
    fn into_http(self) -> ApiResult<IngestResponse> {
        match self.nothing_stored {
            Some(e) => Err(ApiError(e)),
            None => Ok(self.response),
        }
    }
}

/// `POST /v1/rag/collections/{collection}/documents`: ingests JSON documents (synchronously).
#[utoipa::path(
    post, path = "/v1/rag/collections/{collection}/documents", tag = "rag",
    params(("collection" = String, Path, description = "Collection name")),
    request_body = IngestRequest,
    responses(
        (status = 200, description = "Per-document results: at least one document was stored or unchanged (a failed document does not fail the request)", body = IngestResponse),
        (status = 400, description = "Invalid body, or every document failed (nothing was stored; the message names the first failure)", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Missing rag:ingest, or the embedding model is not allowed for the tenant (nothing was stored)", body = ErrorBody),
        (status = 404, description = "No such collection", body = ErrorBody),
        (status = 402, description = "The tenant's model budget is spent", body = ErrorBody),
        (status = 429, description = "A rate limit of the tenant or the model; see Retry-After", body = ErrorBody),
        (status = 502, description = "Model failure", body = ErrorBody),
        (status = 503, description = "The model is unavailable or overloaded; see Retry-After", body = ErrorBody),
    )
)]
pub async fn ingest_json(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    path: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> ApiResult<Json<IngestResponse>> {
    let Path(name) = path.map_err(path_err)?;
    let svc = service(&state)?;
    existing(svc, &ctx, &name).await?;
    let req: IngestRequest = crate::gateway::openai::parse_body(&body)?;
    if req.documents.is_empty() || req.documents.len() > MAX_DOCUMENTS {
        return Err(ApiError(Error::invalid_field(
            "documents",
            format!("1..={MAX_DOCUMENTS} documents per request"),
        )));
    }
    let mut seen = HashSet::new();
    let mut items = Vec::with_capacity(req.documents.len());
    for (i, d) in req.documents.into_iter().enumerate() {
        check_document_id(&d.id, &format!("documents[{i}].id"))?;
        if !seen.insert(d.id.clone()) {
            return Err(ApiError(Error::invalid_field(
                format!("documents[{i}].id"),
                format!("duplicate document id {:?}", d.id),
            )));
        }
        let metadata = d.metadata.unwrap_or_default();
        check_metadata(&metadata, &format!("documents[{i}].metadata"))?;
        let mut source = Source::new(d.id, d.text.into_bytes());
        if let Some(t) = d.title {
            source = source.with_title(t);
        }
        if let Some(l) = d.location {
            source = source.with_location(l);
        }
        if let Some(f) = d.format {
            source = source.with_format(f.into());
        }
        items.push(Pending { source, metadata });
    }
    Ok(Json(
        run_ingest(svc, &ctx, &name, items).await?.into_http()?,
    ))
}

fn format_from_content_type(ct: &str) -> Option<Format> {
    let essence = ct.split(';').next().unwrap_or("").trim();
    match essence {
        "text/plain" => Some(Format::Text),
        "text/markdown" | "text/x-markdown" => Some(Format::Markdown),
        "text/html" | "application/xhtml+xml" => Some(Format::Html),
        "application/pdf" => Some(Format::Pdf),
        _ => None,
    }
}

fn multipart_err(e: axum::extract::multipart::MultipartError) -> Response {
    let status = e.status();
    let mut resp = ApiError(Error::invalid_input(format!(
        "invalid multipart body: {}",
        e.body_text()
    )))
    .into_response();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        *resp.status_mut() = status;
    }
    resp
}

/// `POST /v1/rag/collections/{collection}/files`: ingests uploaded files (multipart/form-data).
#[utoipa::path(
    post, path = "/v1/rag/collections/{collection}/files", tag = "rag",
    params(("collection" = String, Path, description = "Collection name")),
    request_body(content = FileUpload, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Per-document results: at least one file was stored or unchanged", body = IngestResponse),
        (status = 400, description = "Invalid form, or every file failed (nothing was stored; the message names the first failure)", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 402, description = "The tenant's model budget is spent", body = ErrorBody),
        (status = 403, description = "Missing rag:ingest, or the embedding model is not allowed for the tenant (nothing was stored)", body = ErrorBody),
        (status = 404, description = "No such collection", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "A rate limit of the tenant or the model; see Retry-After", body = ErrorBody),
        (status = 502, description = "Model failure", body = ErrorBody),
        (status = 503, description = "The model is unavailable or overloaded; see Retry-After", body = ErrorBody),
    )
)]
pub async fn ingest_files(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    path: Result<Path<String>, PathRejection>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, Response> {
    let Path(name) = path.map_err(|e| path_err(e).into_response())?;
    let svc = service(&state).map_err(IntoResponse::into_response)?;
    existing(svc, &ctx, &name)
        .await
        .map_err(IntoResponse::into_response)?;
    let mut multipart = multipart.map_err(|e| {
        ApiError(Error::invalid_input(format!(
            "expected a multipart/form-data body: {e}"
        )))
        .into_response()
    })?;
    let bad = |field: &str, msg: String| ApiError(Error::invalid_field(field, msg)).into_response();
    let mut files: Vec<Source> = Vec::new();
    let mut metadata = Map::new();
    let mut seen = HashSet::new();
    while let Some(field) = multipart.next_field().await.map_err(multipart_err)? {
        let field_name = field.name().unwrap_or("").to_owned();
        match field_name.as_str() {
            "file" | "files" | "file[]" => {
                let raw = field.file_name().unwrap_or("").to_owned();
                let file_name = raw.rsplit(['/', '\\']).next().unwrap_or("").to_owned();
                if file_name.is_empty() {
                    return Err(bad("file", "every file part needs a file name".into()));
                }
                check_document_id(&file_name, "file").map_err(|e| ApiError(e).into_response())?;
                if !seen.insert(file_name.clone()) {
                    return Err(bad("file", format!("duplicate file name {file_name:?}")));
                }
                let ct = field.content_type().map(str::to_owned);
                let bytes = field.bytes().await.map_err(multipart_err)?;
                let mut source = Source::new(file_name.clone(), bytes.to_vec());
                if Format::from_path(&file_name).is_none()
                    && let Some(f) = ct.as_deref().and_then(format_from_content_type)
                {
                    source = source.with_format(f);
                }
                files.push(source);
            }
            "metadata" => {
                let text = field.text().await.map_err(multipart_err)?;
                let value: Value = serde_json::from_str(&text)
                    .map_err(|e| bad("metadata", format!("not JSON: {e}")))?;
                let Value::Object(map) = value else {
                    return Err(bad("metadata", "must be a JSON object".into()));
                };
                check_metadata(&map, "metadata").map_err(|e| ApiError(e).into_response())?;
                metadata = map;
            }
            other => {
                return Err(bad(
                    other,
                    format!("unknown form field {other:?} (expected `file` or `metadata`)"),
                ));
            }
        }
    }
    if files.is_empty() || files.len() > MAX_DOCUMENTS {
        return Err(bad(
            "file",
            format!("send 1..={MAX_DOCUMENTS} `file` parts"),
        ));
    }
    let items = files
        .into_iter()
        .map(|source| Pending {
            source,
            metadata: metadata.clone(),
        })
        .collect();
    run_ingest(svc, &ctx, &name, items)
        .await
        .and_then(Ingested::into_http)
        .map(|r| Json(r).into_response())
        .map_err(IntoResponse::into_response)
}

/// `GET /v1/rag/collections/{collection}/documents`.
#[utoipa::path(
    get, path = "/v1/rag/collections/{collection}/documents", tag = "rag",
    params(("collection" = String, Path, description = "Collection name"), ListDocumentsQuery),
    responses(
        (status = 200, description = "A page of documents, by id", body = DocumentList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 404, description = "No such collection", body = ErrorBody),
    )
)]
pub async fn list_documents(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ListDocumentsQuery>, QueryRejection>,
) -> ApiResult<Json<DocumentList>> {
    let Path(name) = path.map_err(path_err)?;
    let Query(q) = query.map_err(query_err)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError(Error::invalid_field("limit", "must be 1..=1000")));
    }
    let svc = service(&state)?;
    existing(svc, &ctx, &name).await?;
    let mut rows = svc
        .registry()
        .list_documents(ctx.tenant(), &name, q.after.as_deref(), limit + 1)
        .await?;
    let has_more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(Json(DocumentList {
        object: "list",
        data: rows.into_iter().map(document_json).collect(),
        has_more,
    }))
}

async fn existing_document(
    svc: &RagService,
    ctx: &RequestContext,
    collection: &str,
    id: &str,
) -> ApiResult<DocumentRow> {
    svc.registry()
        .get_document(ctx.tenant(), collection, id)
        .await?
        .ok_or_else(|| {
            ApiError(Error::not_found(format!("document {id:?}")).with_field("document_id"))
        })
}

/// `GET /v1/rag/collections/{collection}/documents/{document_id}`.
#[utoipa::path(
    get, path = "/v1/rag/collections/{collection}/documents/{document_id}", tag = "rag",
    params(
        ("collection" = String, Path, description = "Collection name"),
        ("document_id" = String, Path, description = "Document id (percent-encoded)"),
    ),
    responses(
        (status = 200, description = "The document", body = DocumentInfo),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 404, description = "No such collection or document", body = ErrorBody),
    )
)]
pub async fn get_document(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<DocumentInfo>> {
    let Path((name, id)) = path.map_err(path_err)?;
    let svc = service(&state)?;
    existing(svc, &ctx, &name).await?;
    Ok(Json(document_json(
        existing_document(svc, &ctx, &name, &id).await?,
    )))
}

/// `DELETE /v1/rag/collections/{collection}/documents/{document_id}`.
#[utoipa::path(
    delete, path = "/v1/rag/collections/{collection}/documents/{document_id}", tag = "rag",
    params(
        ("collection" = String, Path, description = "Collection name"),
        ("document_id" = String, Path, description = "Document id (percent-encoded)"),
    ),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Missing rag:ingest", body = ErrorBody),
        (status = 404, description = "No such collection or document", body = ErrorBody),
    )
)]
pub async fn delete_document(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<Deleted>> {
    let Path((name, id)) = path.map_err(path_err)?;
    let svc = service(&state)?;
    existing(svc, &ctx, &name).await?;
    existing_document(svc, &ctx, &name, &id).await?;
    let rag = svc.rag(ctx.tenant(), &name).await?;
    let removed = rag.delete(&ctx, std::slice::from_ref(&id)).await?;
    svc.registry()
        .delete_document(ctx.tenant(), &name, &id)
        .await?;
    Ok(Json(Deleted {
        id,
        object: "document",
        deleted: true,
        chunks_removed: removed,
    }))
}

fn parse_filter(v: Option<Value>) -> ApiResult<Option<Filter>> {
    let Some(v) = v else { return Ok(None) };
    let f: Filter = serde_json::from_value(v).map_err(|e| {
        ApiError(Error::invalid_field(
            "filter",
            format!("not a filter ({{\"eq\": {{\"key\", \"value\"}}}}, {{\"in\": ..}}, {{\"and\": [..]}}, {{\"or\": [..]}}, {{\"not\": ..}}): {e}"),
        ))
    })?;
    f.validate()?;
    Ok(Some(f))
}

fn search_mode(m: Option<SearchModeName>) -> SearchMode {
    match m {
        None => SearchMode::Auto,
        Some(SearchModeName::Hybrid) => SearchMode::Hybrid {
            fusion: Fusion::default(),
        },
        Some(SearchModeName::HybridWeighted) => SearchMode::Hybrid {
            fusion: Fusion::Weighted { dense_weight: 0.5 },
        },
        Some(SearchModeName::Dense) => SearchMode::Dense,
        Some(SearchModeName::Keyword) => SearchMode::Keyword,
    }
}

/// Results returned when a request names no `top_k`: the tenant's `rag.default_top_k` (at most
/// the route's `max`), 5 without a tenant configuration.
fn default_top_k(config: Option<&TenantConfig>, max: usize) -> usize {
    config.map_or(5, |c| {
        usize::try_from(c.rag.default_top_k).unwrap_or(max).min(max)
    })
}

fn search_request(
    query: String,
    top_k: Option<usize>,
    default_top_k: usize,
    max: usize,
    mode: Option<SearchModeName>,
    filter: Option<Value>,
) -> ApiResult<SearchRequest> {
    let top_k = top_k.unwrap_or(default_top_k);
    if !(1..=max).contains(&top_k) {
        return Err(ApiError(Error::invalid_field(
            "top_k",
            format!("must be 1..={max}"),
        )));
    }
    if query.trim().is_empty() {
        return Err(ApiError(Error::invalid_field("query", "must not be empty")));
    }
    let mut req = SearchRequest::new(query, top_k).with_mode(search_mode(mode));
    if let Some(f) = parse_filter(filter)? {
        req = req.with_filter(f);
    }
    Ok(req)
}

/// `POST /v1/rag/collections/{collection}/search`.
#[utoipa::path(
    post, path = "/v1/rag/collections/{collection}/search", tag = "rag",
    params(("collection" = String, Path, description = "Collection name")),
    request_body = SearchBody,
    responses(
        (status = 200, description = "Hits, best first", body = SearchResponse),
        (status = 400, description = "Invalid body or filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Missing rag:query, or the embedding model is not allowed for the tenant", body = ErrorBody),
        (status = 404, description = "No such collection", body = ErrorBody),
        (status = 402, description = "The tenant's model budget is spent", body = ErrorBody),
        (status = 429, description = "A rate limit of the tenant or the model; see Retry-After", body = ErrorBody),
        (status = 502, description = "Model failure", body = ErrorBody),
        (status = 503, description = "The model is unavailable or overloaded; see Retry-After", body = ErrorBody),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    CallerConfig(config): CallerConfig,
    path: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> ApiResult<Json<SearchResponse>> {
    let Path(name) = path.map_err(path_err)?;
    let svc = service(&state)?;
    existing(svc, &ctx, &name).await?;
    let body: SearchBody = crate::gateway::openai::parse_body(&body)?;
    let diversity = body.diversity.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&diversity) {
        return Err(ApiError(Error::invalid_field("diversity", "must be 0..=1")));
    }
    let mut req = search_request(
        body.query,
        body.top_k,
        default_top_k(config.as_deref(), 100),
        100,
        body.mode,
        body.filter,
    )?;
    let top_k = req.top_k;
    if diversity > 0.0 {
        // Candidates for MMR to choose from, fetched as the library's two-stage retrieval does:
        // `max(4 * top_k, 40)` from each first-stage list, that many kept after fusion.
        let n = (4 * top_k).max(40);
        req.top_k = n;
        req.candidates = Some(n);
    }
    let rag = svc.rag(ctx.tenant(), &name).await?;
    let mut hits = rag.search(&ctx, &req).await?;
    if diversity > 0.0 {
        hits = MmrReranker::new(svc.embedder(), 1.0 - diversity)
            .rerank(&ctx, &req.query, hits, top_k)
            .await?;
    }
    Ok(Json(SearchResponse {
        object: "list",
        data: hits
            .into_iter()
            .map(|h| SearchHit {
                chunk_id: h.id,
                document_id: h.document_id,
                score: h.score,
                text: h.text,
                metadata: h.metadata,
            })
            .collect(),
    }))
}

fn answer_json(model: String, a: wattos_rag::answer::Answer) -> AnswerResponse {
    AnswerResponse {
        object: "rag.answer",
        model,
        answer: a.text,
        citations: a.cited.into_iter().map(Into::into).collect(),
        sources: a.sources.into_iter().map(Into::into).collect(),
        invalid_citations: a.invalid_citations,
        usage: AnswerUsage {
            input_tokens: a.usage.input_tokens,
            output_tokens: a.usage.output_tokens,
        },
    }
}

/// `POST /v1/rag/collections/{collection}/answer`: retrieves, asks the chat model with numbered
/// sources, and returns the answer with its citations.
#[utoipa::path(
    post, path = "/v1/rag/collections/{collection}/answer", tag = "rag",
    params(("collection" = String, Path, description = "Collection name")),
    request_body = AnswerBody,
    responses(
        (status = 200, description = "A cited answer, or with `stream: true` a `text/event-stream`: `sources` ({sources}), `delta` ({text}) events, then `done` (the answer object) or `error` (an error body)",
            content((AnswerResponse = "application/json"), (crate::rag::types::SseEvent = "text/event-stream"))),
        (status = 400, description = "Invalid body or filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 402, description = "The tenant's model budget is spent", body = ErrorBody),
        (status = 403, description = "Missing rag:query or chat:invoke, or a model the tenant may not use", body = ErrorBody),
        (status = 404, description = "No such collection, or no such conversation (or another user's)", body = ErrorBody),
        (status = 429, description = "A rate limit of the tenant or the model; see Retry-After", body = ErrorBody),
        (status = 502, description = "Model failure", body = ErrorBody),
        (status = 503, description = "No chat model, conversations not configured, or the model is overloaded; see Retry-After", body = ErrorBody),
    )
)]
pub async fn answer(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    CallerConfig(config): CallerConfig,
    path: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let Path(name) = path.map_err(path_err)?;
    let svc = service(&state)?;
    existing(svc, &ctx, &name).await?;
    let body: AnswerBody = crate::gateway::openai::parse_body(&body)?;
    if body.question.trim().is_empty() {
        return Err(ApiError(Error::invalid_field(
            "question",
            "must not be empty",
        )));
    }
    let search = search_request(
        body.question.clone(),
        body.top_k,
        default_top_k(config.as_deref(), 50),
        50,
        body.mode,
        body.filter,
    )?;
    let context_tokens = body.context_tokens.unwrap_or(1500);
    if !(64..=16_000).contains(&context_tokens) {
        return Err(ApiError(Error::invalid_field(
            "context_tokens",
            "must be 64..=16000",
        )));
    }
    let max_tokens = body.max_tokens.unwrap_or(256);
    if !(1..=4096).contains(&max_tokens) {
        return Err(ApiError(Error::invalid_field(
            "max_tokens",
            "must be 1..=4096",
        )));
    }
    // No model named: the tenant's default model, else the server's (the chat router decides).
    let model_name = match body.model {
        Some(m) => m,
        None => state.catalog().default_chat(&ctx).await?,
    };
    // An unknown model is a bad field of this request (the collection exists): 400, not 404.
    let chat = state.catalog().chat(&ctx, &model_name).map_err(|e| {
        if e.kind() == wattos_core::ErrorKind::NotFound {
            ApiError(Error::invalid_field("model", e.message().to_owned()))
        } else {
            ApiError(e)
        }
    })?;
    let mut opts = AnswerOptions::new(model_name.clone());
    opts.search = search;
    opts.context_tokens = context_tokens;
    opts.max_tokens = Some(max_tokens);
    let conversation = crate::conversations::conversation_id_field(body.conversation_id)?;
    let rag = svc.rag(ctx.tenant(), &name).await?;
    // A thread by id: access is checked before retrieval, its turns go before the question.
    let turn = match &conversation {
        Some(id) => {
            let new = vec![Message::user(body.question.clone())];
            let (turn, history) = ThreadTurn::open(state.conversations(), &ctx, id, new).await?;
            opts.history = history;
            Some(turn)
        }
        None => None,
    };
    let hits = rag.search(&ctx, &opts.search).await?;
    let context = ContextBuilder::new(opts.context_tokens).build(&hits);
    let mut req = answer_request(&body.question, &context, &opts);
    if turn.is_some() {
        req.messages = context_window(&*chat, opts.max_tokens).trim(&req.messages);
    }
    if !body.stream.unwrap_or(false) {
        let resp = chat.chat(&ctx, req).await?;
        let a = finish_answer(resp.text(), context, resp.usage);
        if let Some(turn) = turn {
            let cost = resp
                .cost
                .as_ref()
                .map_or(0.0, |c| c.input_usd + c.cached_input_usd + c.output_usd);
            turn.record(
                Message::assistant(a.text.clone()),
                resp.model.clone(),
                resp.usage,
                cost,
            )
            .await?;
        }
        let out = Json(answer_json(model_name, a)).into_response();
        return Ok(with_conversation_header(out, conversation.as_deref()));
    }
    let deltas = chat.chat_stream(&ctx, req).await?;
    let sources: Vec<SourceRef> = context.sources.iter().cloned().map(Into::into).collect();
    // A struct, not `json!`: scores keep their f32 rendering, as in the `done` event.
    #[derive(serde::Serialize)]
    struct SourcesEvent {
        sources: Vec<SourceRef>,
    }
    let first = futures::stream::once(async move {
        Ok::<_, Infallible>(sse("sources", &SourcesEvent { sources }))
    });
    let rest = answer_events(deltas, context, model_name, turn);
    let out = Sse::new(first.chain(rest))
        .keep_alive(KeepAlive::default())
        .into_response();
    Ok(with_conversation_header(out, conversation.as_deref()))
}

fn sse(name: &str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name).data("{}"))
}

/// `delta` events per text delta, then `done` with the checked answer, or `error`. With a
/// conversation `turn`, the question and the checked answer are appended before `done`; if that
/// fails the last event is `error` instead.
fn answer_events(
    deltas: wattos_core::llm::ChatStream,
    context: wattos_rag::answer::Context,
    model: String,
    turn: Option<ThreadTurn>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    struct St {
        deltas: wattos_core::llm::ChatStream,
        context: Option<wattos_rag::answer::Context>,
        model: String,
        text: String,
        usage: Usage,
        turn: Option<ThreadTurn>,
    }
    let st = St {
        deltas,
        context: Some(context),
        model,
        text: String::new(),
        usage: Usage::default(),
        turn,
    };
    futures::stream::unfold(st, |mut st| async move {
        let context = st.context.take()?;
        loop {
            match st.deltas.next().await {
                Some(Ok(ChatDelta::Text { text })) => {
                    st.text.push_str(&text);
                    st.context = Some(context);
                    return Some((Ok(sse("delta", &json!({ "text": text }))), st));
                }
                Some(Ok(ChatDelta::Usage(u))) => st.usage = u,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "RAG answer stream failed");
                    return Some((Ok(sse("error", &error_body(&e))), st));
                }
                None => {
                    let a = finish_answer(&st.text, context, st.usage);
                    if let Some(turn) = st.turn.take() {
                        let answer = Message::assistant(a.text.clone());
                        if let Err(e) = turn.record_priced(answer, st.model.clone(), st.usage).await
                        {
                            tracing::error!(error = %e, "RAG answer not stored in its conversation");
                            return Some((Ok(sse("error", &error_body(&e))), st));
                        }
                    }
                    let done = answer_json(st.model.clone(), a);
                    return Some((Ok(sse("done", &done)), st));
                }
            }
        }
    })
}
