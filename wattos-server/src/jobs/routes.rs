//! `POST /v1/rag/collections/{collection}/jobs` and `POST /v1/rag/collections/{collection}/crawl`
//! (202 + job id), and `GET /v1/jobs/{id}`.

use axum::Json;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use wattos_core::Error;
use wattos_core::tenancy::Permission;
use wattos_rag::jobs::{JobId, JobStatus};

use super::{CrawlRequest, IngestDocument};
use crate::error::{ApiError, ApiResult, path_err};
use crate::gateway::Ctx;
use crate::gateway::openai::parse_body;
use crate::state::AppState;

/// Body of `POST /v1/rag/collections/{collection}/jobs`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    /// Documents to ingest (1 to 1000).
    pub documents: Vec<IngestDocument>,
}

/// Answer of `POST /v1/rag/collections/{collection}/jobs`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubmittedJob {
    /// The job id (the same for the same collection and documents).
    pub id: String,
    /// `queued`, `running`, `retrying`, `succeeded` or `dead_lettered`.
    pub state: String,
    /// Whether the same job already existed, so nothing new was queued.
    pub duplicate: bool,
    /// Where to poll the status.
    pub status_url: String,
}

/// The job routes (authorization applied here when authentication is on; the caller's identity
/// comes from the layer in front, as for every API route). Always mounted and always in
/// `/openapi.json`: without a job queue (see [`AppState::with_jobs`]) a valid request gets 404
/// `not_found` ("background jobs are not configured on this server"), an invalid one its 400
/// first. 404 rather than 503: nothing will change by retrying (503 remains the answer when a
/// configured queue cannot be reached).
pub fn routes(state: &AppState) -> Router<AppState> {
    let submit = post(submit_ingestion);
    let crawl = post(submit_crawl);
    let status = get(job_status);
    let (submit, crawl, status) = match state.auth() {
        Some(auth) => (
            submit.route_layer(auth.require(Permission::RagIngest)),
            crawl.route_layer(auth.require(Permission::RagIngest)),
            status.route_layer(auth.require(Permission::RagIngest)),
        ),
        None => (submit, crawl, status),
    };
    Router::new()
        .route("/v1/rag/collections/{collection}/jobs", submit)
        .route("/v1/rag/collections/{collection}/crawl", crawl)
        .route("/v1/jobs/{id}", status)
}

/// The message of the 404 a server without a job queue answers.
pub const NOT_CONFIGURED: &str = "background jobs are not configured on this server (no job \
     queue): ingest synchronously with POST /v1/rag/collections/{collection}/documents";

fn jobs(state: &AppState) -> ApiResult<&super::Jobs> {
    state
        .jobs()
        .ok_or_else(|| ApiError(Error::not_found(NOT_CONFIGURED)))
}

fn state_name(s: &JobStatus) -> String {
    serde_json::to_value(s.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `POST /v1/rag/collections/{collection}/jobs`: queues an ingestion; 202 with the job id.
#[utoipa::path(
    post, path = "/v1/rag/collections/{collection}/jobs", tag = "jobs",
    request_body = SubmitBody,
    params(("collection" = String, Path, description = "Collection name")),
    responses(
        (status = 202, description = "Queued (or already queued or done: `duplicate`)", body = SubmittedJob),
        (status = 400, description = "Invalid collection name or documents", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = crate::error::ErrorBody),
        (status = 403, description = "Missing rag:ingest", body = crate::error::ErrorBody),
        (status = 404, description = "No job queue on this server (`not_found`)", body = crate::error::ErrorBody),
        (status = 429, description = "The tenant (`jobs.max_outstanding_per_tenant`) or the server (`jobs.max_outstanding`) has its limit of jobs outstanding, or a request rate limit; see Retry-After", body = crate::error::ErrorBody),
        (status = 503, description = "The job queue is unreachable (`unavailable`)", body = crate::error::ErrorBody),
    )
)]
pub async fn submit_ingestion(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    path: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let Path(collection) = path.map_err(path_err)?;
    let body: SubmitBody = parse_body(&body)?;
    // Bad input is a 400 whether or not this server has a queue.
    super::validate_submission(&collection, &body.documents)?;
    let enqueued = jobs(&state)?
        .submit_ingestion(ctx.tenant(), &collection, body.documents)
        .await?;
    Ok(accepted(&enqueued))
}

/// `POST /v1/rag/collections/{collection}/crawl`: queues a web crawl whose pages are ingested
/// into the collection; 202 with the job id. The job's result lists the pages crawled, the URLs
/// skipped and why (robots.txt, depth, size, content type, blocked address, ...) and the ingestion
/// reports.
#[utoipa::path(
    post, path = "/v1/rag/collections/{collection}/crawl", tag = "jobs",
    request_body = CrawlRequest,
    params(("collection" = String, Path, description = "Collection name")),
    responses(
        (status = 202, description = "Queued", body = SubmittedJob),
        (status = 400, description = "Invalid collection name, seed URL or limits", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = crate::error::ErrorBody),
        (status = 403, description = "Missing rag:ingest", body = crate::error::ErrorBody),
        (status = 404, description = "No job queue on this server (`not_found`)", body = crate::error::ErrorBody),
        (status = 429, description = "The tenant (`jobs.max_outstanding_per_tenant`) or the server (`jobs.max_outstanding`) has its limit of jobs outstanding, or a request rate limit; see Retry-After", body = crate::error::ErrorBody),
        (status = 503, description = "The job queue is unreachable (`unavailable`)", body = crate::error::ErrorBody),
    )
)]
pub async fn submit_crawl(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    path: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let Path(collection) = path.map_err(path_err)?;
    let body: CrawlRequest = parse_body(&body)?;
    // Bad input is a 400 whether or not this server has a queue.
    super::validate_collection(&collection)?;
    let caps = state
        .jobs()
        .map_or_else(super::CrawlSettings::default, |j| {
            j.settings().crawl.clone()
        });
    body.validate(&caps)?;
    let enqueued = jobs(&state)?.submit_crawl(&ctx, &collection, body).await?;
    Ok(accepted(&enqueued))
}

/// 202 with [`SubmittedJob`] and a `Location` header.
fn accepted(enqueued: &wattos_rag::jobs::Enqueued) -> Response {
    let id = enqueued.status.id.to_string();
    let status_url = format!("/v1/jobs/{id}");
    let answer = SubmittedJob {
        state: state_name(&enqueued.status),
        id,
        duplicate: enqueued.duplicate,
        status_url: status_url.clone(),
    };
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, status_url)],
        Json(answer),
    )
        .into_response()
}

/// `GET /v1/jobs/{id}`: the job's status (404 for unknown jobs and other tenants' jobs).
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id (`job_` and 32 hex digits)")),
    responses(
        (status = 200, description = "The job's status", body = Object),
        (status = 400, description = "Malformed job id", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = crate::error::ErrorBody),
        (status = 403, description = "Missing rag:ingest", body = crate::error::ErrorBody),
        (status = 404, description = "No such job (or another tenant's), or no job queue on this server", body = crate::error::ErrorBody),
        (status = 503, description = "The job queue is unreachable (`unavailable`)", body = crate::error::ErrorBody),
    )
)]
pub async fn job_status(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<JobStatus>> {
    let Path(id) = path.map_err(path_err)?;
    let id = JobId::parse(&id)?;
    let status = jobs(&state)?
        .queue()
        .status(ctx.tenant(), &id)
        .await?
        .ok_or_else(|| ApiError(Error::not_found(format!("job {id}"))))?;
    Ok(Json(status))
}
