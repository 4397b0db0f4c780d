//! `POST /v1/rag/collections/{collection}/jobs` (202 + job id) and `GET /v1/jobs/{id}`.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use wattos_core::Error;
use wattos_core::tenancy::Permission;
use wattos_rag::jobs::{JobId, JobStatus};

use super::IngestDocument;
use crate::error::{ApiError, ApiResult};
use crate::gateway::Ctx;
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
/// comes from the layer in front, as for every API route). Empty when the state has no job queue
/// (see [`AppState::with_jobs`]).
///
/// Not yet in `/openapi.json`: add [`submit_ingestion`] and [`job_status`] to the document together
/// with the RAG routes.
pub fn routes(state: &AppState) -> Router<AppState> {
    if state.jobs().is_none() {
        return Router::new();
    }
    let submit = post(submit_ingestion);
    let status = get(job_status);
    let (submit, status) = match state.auth() {
        Some(auth) => (
            submit.route_layer(auth.require(Permission::RagIngest)),
            status.route_layer(auth.require(Permission::RagIngest)),
        ),
        None => (submit, status),
    };
    Router::new()
        .route("/v1/rag/collections/{collection}/jobs", submit)
        .route("/v1/jobs/{id}", status)
}

fn jobs(state: &AppState) -> ApiResult<&super::Jobs> {
    state
        .jobs()
        .ok_or_else(|| ApiError(Error::unavailable("background jobs are not configured")))
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
        (status = 400, description = "Invalid request", body = crate::error::ErrorBody),
        (status = 503, description = "Job queue unavailable", body = crate::error::ErrorBody),
    )
)]
pub async fn submit_ingestion(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(collection): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let body: SubmitBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError(Error::invalid_input(format!(
            "We could not parse the JSON body of your request: {e}"
        )))
    })?;
    let enqueued = jobs(&state)?
        .submit_ingestion(ctx.tenant(), &collection, body.documents)
        .await?;
    let id = enqueued.status.id.to_string();
    let status_url = format!("/v1/jobs/{id}");
    let answer = SubmittedJob {
        state: state_name(&enqueued.status),
        id,
        duplicate: enqueued.duplicate,
        status_url: status_url.clone(),
    };
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, status_url)],
        Json(answer),
    )
        .into_response())
}

/// `GET /v1/jobs/{id}`: the job's status (404 for unknown jobs and other tenants' jobs).
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job's status", body = Object),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
    )
)]
pub async fn job_status(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<JobStatus>> {
    let id = JobId::parse(&id)?;
    let status = jobs(&state)?
        .queue()
        .status(ctx.tenant(), &id)
        .await?
        .ok_or_else(|| ApiError(Error::not_found(format!("job {id}"))))?;
    Ok(Json(status))
}
