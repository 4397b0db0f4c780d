//! Operational routes: service info, health probes and Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use wattos_core::Error;
use wattos_core::health::{HealthReport, HealthStatus};

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// `GET /`: name, version, mode and links.
#[utoipa::path(get, path = "/", tag = "operations", responses((status = 200, description = "Service info", body = Object)))]
pub async fn index(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "name": "wattos",
        "version": env!("CARGO_PKG_VERSION"),
        "mode": state.config().mode,
        "links": {
            "health": "/health",
            "liveness": "/health/liveness",
            "readiness": "/health/readiness",
            "metrics": "/metrics",
        }
    }))
}

/// `GET /health/liveness`: the process is up and serving HTTP. Never checks dependencies, so a
/// dependency outage does not get the process restarted.
#[utoipa::path(get, path = "/health/liveness", tag = "operations", responses((status = 200, description = "Alive", body = Object)))]
pub async fn liveness() -> Json<serde_json::Value> {
    Json(json!({ "status": "alive" }))
}

/// Body of `/health` and `/health/readiness`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthBody {
    /// healthy / degraded / unhealthy.
    #[schema(value_type = String)]
    pub status: HealthStatus,
    /// Whether the instance should receive traffic.
    pub ready: bool,
    /// Whether shutdown has begun.
    pub draining: bool,
    /// Server version.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Per-component results.
    #[schema(value_type = Object)]
    pub components: std::collections::BTreeMap<String, wattos_core::health::ComponentReport>,
}

fn body(state: &AppState, report: HealthReport) -> (StatusCode, HealthBody) {
    let draining = state.is_draining();
    let ready = report.is_ready() && !draining;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        HealthBody {
            status: report.status,
            ready,
            draining,
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: state.uptime_secs(),
            components: report.components,
        },
    )
}

/// `GET /health/readiness`: 200 when every critical dependency works and the server is not draining,
/// else 503.
#[utoipa::path(get, path = "/health/readiness", tag = "operations", responses(
    (status = 200, description = "Ready", body = HealthBody), (status = 503, description = "Not ready", body = HealthBody)))]
pub async fn readiness(State(state): State<AppState>) -> Response {
    let report = state.health().report().await;
    let (code, body) = body(&state, report);
    (code, Json(body)).into_response()
}

/// `GET /health`: the full report: healthy / degraded (200) or unhealthy (503) with per-component
/// detail.
#[utoipa::path(get, path = "/health", tag = "operations", responses(
    (status = 200, description = "Healthy or degraded", body = HealthBody), (status = 503, description = "Unhealthy", body = HealthBody)))]
pub async fn health(State(state): State<AppState>) -> Response {
    let report = state.health().report().await;
    let (code, body) = body(&state, report);
    let code = if body.status == HealthStatus::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        code
    };
    (code, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics().run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

/// Fallback for unknown routes: 404 in the JSON error shape.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError(Error::not_found(format!(
        "no route for {method} {}",
        uri.path()
    )))
}

/// Fallback for a known route with the wrong method: 405 in the JSON error shape.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let mut resp = ApiError(Error::invalid_input(format!(
        "method {method} is not allowed on {}",
        uri.path()
    )))
    .into_response();
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    resp
}

/// The OpenAPI 3.1 document of every route.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "WattOS", description = "WattOS reference server: OpenAI- and Anthropic-compatible gateway, health and metrics."),
    paths(
        index, liveness, readiness, health, metrics,
        crate::gateway::openai::chat_completions,
        crate::gateway::openai::embeddings,
        crate::gateway::openai::list_models,
        crate::gateway::openai::get_model,
        crate::gateway::anthropic::messages,
        crate::rag::create_collection, crate::rag::list_collections, crate::rag::get_collection,
        crate::rag::delete_collection, crate::rag::ingest_json, crate::rag::ingest_files,
        crate::rag::list_documents, crate::rag::get_document, crate::rag::delete_document,
        crate::rag::search, crate::rag::answer,
        crate::agents::list_graphs, crate::agents::start_run, crate::agents::list_runs,
        crate::agents::get_run, crate::agents::resume_run, crate::agents::list_checkpoints,
        crate::jobs::routes::submit_ingestion, crate::jobs::routes::submit_crawl,
        crate::jobs::routes::job_status,
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "openai", description = "OpenAI-compatible API"),
        (name = "anthropic", description = "Anthropic-compatible API"),
        (name = "operations", description = "Health and metrics"),
        (name = "rag", description = "RAG collections, ingestion, search and cited answers"),
        (name = "agents", description = "Agent graphs, runs, human-in-the-loop resume and checkpoints"),
        (name = "jobs", description = "Asynchronous ingestion and web crawl jobs (202 + job id) and their status"),
    )
)]
pub struct ApiDoc;

/// `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' types.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    use utoipa::OpenApi;
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::conversations::ConversationsDoc::openapi());
    doc.merge(crate::memories::MemoriesDoc::openapi());
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document_layer_statuses(&mut doc);
    Json(doc)
}

/// Adds to every API operation the statuses that the layers in front of every handler can answer
/// with (see [`crate::app::app`]), so clients and fuzzers find each one documented: 401, 403 and 429
/// (authentication, permissions and tenant limits, when authentication is on), 500 (a caught
/// panic), 503 (load shedding) and 504 (request timeout) everywhere under `/v1/`; 408 (body read
/// timeout), 413 (body too large) and 415 (not JSON) where the operation takes a body. A status an
/// operation documents itself is kept.
fn document_layer_statuses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    for (path, item) in &mut doc.paths.paths {
        if !path.starts_with("/v1/") {
            continue;
        }
        let format = crate::error::WireFormat::for_path(path);
        let ops = [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
        ];
        for op in ops.into_iter().flatten() {
            let mut statuses = vec![
                (
                    "401",
                    "Missing or invalid credentials (when the server requires authentication)",
                ),
                (
                    "403",
                    "The credentials lack the permission this operation needs",
                ),
                (
                    "429",
                    "A rate or concurrency limit of the caller's tenant (`Retry-After`)",
                ),
                ("500", "Internal error (the handler failed or panicked)"),
                (
                    "503",
                    "Overloaded: the server is at its concurrent request limit (`Retry-After`)",
                ),
                (
                    "504",
                    "The response did not start within the request timeout",
                ),
            ];
            if op.request_body.is_some() {
                statuses.extend([
                    (
                        "408",
                        "The request body did not arrive within the body read timeout",
                    ),
                    ("413", "The request body is larger than the body limit"),
                    (
                        "415",
                        "The body is not sent as `application/json` (or multipart where documented)",
                    ),
                ]);
            }
            for (status, description) in statuses {
                if op.responses.responses.contains_key(status) {
                    continue;
                }
                let content = match format {
                    crate::error::WireFormat::OpenAi => ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                    crate::error::WireFormat::Anthropic => ContentBuilder::new()
                        .schema(Some(utoipa::openapi::schema::Object::new()))
                        .build(),
                };
                let response = ResponseBuilder::new()
                    .description(description)
                    .content("application/json", content)
                    .build();
                op.responses
                    .responses
                    .insert(status.to_owned(), response.into());
            }
        }
    }
}
