//! The agents API: list registered graphs, start runs (blocking JSON or server-sent events), read
//! runs with their state and pending interrupts, resume interrupted runs with approve / edit /
//! reject, list runs (e.g. pending approvals) and a thread's checkpoints.
//!
//! Runs, threads and checkpoints are scoped by the caller's tenant: another tenant's run or thread
//! is a plain 404, and two tenants may use the same thread id.

pub mod builtin;
mod runs;
mod service;
pub mod types;

use std::convert::Infallible;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use futures::Stream;
use serde_json::{Value, json};
use wattos_agents::{Command, Interrupt, JsonEvent, JsonOutcome};
use wattos_core::checkpoint::ThreadId;
use wattos_core::tenancy::Permission;
use wattos_core::{Error, RequestContext};

pub use runs::{RunEnd, RunError, RunFilter, RunRow, RunState, RunStore};
pub use service::AgentsService;
use service::{Start, StartKind, Streamed, now_ms};
use types::*;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody, error_body, path_err, query_err};
use crate::gateway::{CallerConfig, Ctx};
use crate::state::AppState;

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

/// The agents routes; with `auth`, everything needs `agents:run`, resuming `agents:resume`, and
/// starting or resuming a run (which invokes models) also `chat:invoke`.
pub fn routes(auth: Option<&Auth>) -> Router<AppState> {
    let run = |r| guard(r, auth, Permission::AgentsRun);
    Router::new()
        .route("/v1/agents/graphs", run(get(list_graphs)))
        // Starting and resuming a run invoke the graph's models: they need `chat:invoke` too.
        .route(
            "/v1/agents/graphs/{graph}/runs",
            run(guard(post(start_run), auth, Permission::ChatInvoke)),
        )
        .route("/v1/agents/runs", run(get(list_runs)))
        .route("/v1/agents/runs/{run_id}", run(get(get_run)))
        .route(
            "/v1/agents/runs/{run_id}/resume",
            guard(
                guard(post(resume_run), auth, Permission::ChatInvoke),
                auth,
                Permission::AgentsResume,
            ),
        )
        .route(
            "/v1/agents/threads/{thread_id}/checkpoints",
            run(get(list_checkpoints)),
        )
}

fn service(state: &AppState) -> ApiResult<&AgentsService> {
    state.agents().ok_or_else(|| {
        ApiError(Error::unavailable(
            "agents are not available on this server",
        ))
    })
}

fn check_thread_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_field(
            "thread_id",
            "thread ids are 1-128 ASCII letters, digits, '_', '.', ':' or '-'",
        ))
    }
}

fn summary(row: &RunRow) -> RunSummary {
    RunSummary {
        id: row.id.clone(),
        object: "agent.run",
        graph: row.graph.clone(),
        thread_id: row.thread_id.clone(),
        status: row.status,
        steps: row.steps,
        reason: row.reason.clone(),
        error: row.error.clone(),
        created_at_ms: row.created_at_ms,
        updated_at_ms: row.updated_at_ms,
    }
}

fn interrupts_json(list: Vec<Interrupt>) -> Vec<InterruptInfo> {
    list.into_iter()
        .map(|i| InterruptInfo {
            task_id: i.task_id,
            node: i.node,
            kind: serde_json::to_value(&i.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            value: i.value,
        })
        .collect()
}

fn run_from_outcome(row: &RunRow, outcome: JsonOutcome) -> Run {
    Run {
        summary: summary(row),
        state: outcome.state,
        interrupts: interrupts_json(outcome.interrupts),
        checkpoint: outcome.checkpoint,
    }
}

/// The run as stored, with the thread's current state read from the checkpointer.
async fn run_with_state(svc: &AgentsService, ctx: &RequestContext, row: RunRow) -> ApiResult<Run> {
    let (state, interrupts) = match svc.graph(&row.graph) {
        Ok(g) => match g.state(ctx, &ThreadId::new(&row.thread_id)?).await? {
            Some((s, i)) => (s, i),
            None => (Value::Null, Vec::new()),
        },
        // The graph is no longer registered: the run is still listed.
        Err(_) => (Value::Null, Vec::new()),
    };
    let interrupts = if row.status == RunState::Interrupted {
        interrupts
    } else {
        Vec::new()
    };
    Ok(Run {
        summary: summary(&row),
        state,
        interrupts: interrupts_json(interrupts),
        checkpoint: None,
    })
}

/// `GET /v1/agents/graphs`.
#[utoipa::path(
    get, path = "/v1/agents/graphs", tag = "agents",
    responses(
        (status = 200, description = "Registered graphs", body = GraphList),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Missing agents:run", body = ErrorBody),
    )
)]
pub async fn list_graphs(
    State(state): State<AppState>,
    Ctx(_ctx): Ctx,
) -> ApiResult<Json<GraphList>> {
    let svc = service(&state)?;
    Ok(Json(GraphList {
        object: "list",
        data: svc.infos(),
    }))
}

fn sse(name: &str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name).data("{}"))
}

fn event_sse(ev: JsonEvent) -> Event {
    match ev {
        JsonEvent::Values { step, state } => sse("values", &json!({"step": step, "state": state})),
        JsonEvent::Update { step, node, update } => sse(
            "update",
            &json!({"step": step, "node": node, "update": update}),
        ),
        JsonEvent::Node {
            node,
            task_id,
            event,
        } => sse(
            "node",
            &json!({"node": node, "task_id": task_id, "event": event}),
        ),
        JsonEvent::Checkpoint { step, id } => sse("checkpoint", &json!({"step": step, "id": id})),
        JsonEvent::Done { outcome } => sse("done", &json!({"state": outcome.state})),
    }
}

/// SSE of a run: `run` (the summary, status running), graph events, then `done` (the run) or
/// `error` (an error body).
fn run_events(
    first: RunSummary,
    rx: tokio::sync::mpsc::UnboundedReceiver<Streamed>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let head = futures::stream::once(async move { Ok(sse("run", &first)) });
    let rest = futures::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await? {
            Streamed::Event(ev) => Some((Ok(event_sse(ev)), Some(rx))),
            Streamed::Finished(row, outcome) => {
                Some((Ok(sse("done", &run_from_outcome(&row, *outcome))), None))
            }
            Streamed::Failed(row, err) => {
                let mut body = serde_json::to_value(error_body(&err)).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut body {
                    m.insert("run".into(), json!(summary(&row)));
                }
                Some((Ok(sse("error", &body)), None))
            }
        }
    });
    futures::StreamExt::chain(head, rest)
}

/// Answers a finished blocking run: the run, or its error (the run is recorded as failed).
fn finished(row: RunRow, result: wattos_core::Result<JsonOutcome>) -> ApiResult<Response> {
    match result {
        Ok(o) => Ok(Json(run_from_outcome(&row, o)).into_response()),
        Err(e) => Err(ApiError(e)),
    }
}

/// `POST /v1/agents/graphs/{graph}/runs`: starts a run and waits for it to complete, stop for a
/// human, or fail; with `stream: true` streams its events instead.
#[utoipa::path(
    post, path = "/v1/agents/graphs/{graph}/runs", tag = "agents",
    params(("graph" = String, Path, description = "Graph name")),
    request_body = StartRun,
    responses(
        (status = 200, description = "The run (completed, interrupted or rejected), or with `stream: true` a `text/event-stream`: `run` (summary), `update` / `node` / `values` / `checkpoint` events, then `done` (the run) or `error`",
            content((Run = "application/json"), (crate::rag::types::SseEvent = "text/event-stream"))),
        (status = 400, description = "Invalid body, thread id or input", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 402, description = "The tenant's model budget is spent, or the run reached its step limit (the graph's, capped by the tenant's `agents.max_steps`); the run is recorded as failed", body = ErrorBody),
        (status = 403, description = "Missing agents:run or chat:invoke, or a model the tenant may not use (the run is recorded as failed)", body = ErrorBody),
        (status = 404, description = "No such graph", body = ErrorBody),
        (status = 409, description = "The thread has a running or interrupted run, or belongs to another graph", body = ErrorBody),
        (status = 429, description = "The tenant has its limit of runs running (`server.max_background_tasks_per_tenant`), or a model rate limit; see Retry-After", body = ErrorBody),
        (status = 502, description = "Model failure (the run is recorded as failed)", body = ErrorBody),
        (status = 503, description = "The server runs its limit of background tasks (`server.max_background_tasks`), or the model is overloaded; see Retry-After", body = ErrorBody),
    )
)]
pub async fn start_run(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    CallerConfig(config): CallerConfig,
    path: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let Path(graph_name) = path.map_err(path_err)?;
    let svc = service(&state)?;
    let graph = svc.graph(&graph_name)?;
    let req: StartRun = crate::gateway::openai::parse_body(&body)?;
    if !req.input.is_object() {
        return Err(ApiError(Error::invalid_field(
            "input",
            "must be a JSON object (the graph's state update)",
        )));
    }
    graph.validate_input(&req.input)?;
    let id = format!("run_{}", uuid::Uuid::new_v4().simple());
    let thread_id = match req.thread_id {
        Some(t) => {
            check_thread_id(&t)?;
            t
        }
        None => id.clone(),
    };
    if let Some(prev) = svc
        .runs()
        .latest_on_thread(ctx.tenant(), &thread_id)
        .await?
    {
        if prev.graph != graph_name {
            return Err(ApiError(
                Error::conflict(format!(
                    "thread {thread_id:?} belongs to graph `{}`",
                    prev.graph
                ))
                .with_field("thread_id"),
            ));
        }
        if matches!(prev.status, RunState::Running | RunState::Interrupted) {
            return Err(ApiError(
                Error::conflict(format!(
                    "thread {thread_id:?} has a {} run ({}): wait for it or resume it first",
                    prev.status.as_str(),
                    prev.id
                ))
                .with_field("thread_id"),
            ));
        }
    }
    // Admitted before the run is recorded: a refused run leaves no row behind.
    let permit = svc.admit(&ctx)?;
    let now = now_ms();
    let row = RunRow {
        id,
        graph: graph_name,
        thread_id,
        status: RunState::Running,
        steps: 0,
        reason: None,
        error: None,
        created_at_ms: now,
        updated_at_ms: now,
    };
    svc.runs().insert(ctx.tenant(), &row).await?;
    let start = Start {
        kind: StartKind::Input(req.input),
        settings: config.map(|c| c.agents.clone()),
    };
    if req.stream.unwrap_or(false) {
        let first = summary(&row);
        let rx = svc.execute_streaming(ctx, graph, row, start, permit);
        return Ok(Sse::new(run_events(first, rx))
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let (row, result) = svc.execute(ctx, graph, row, start, permit).await?;
    finished(row, result)
}

/// `GET /v1/agents/runs`.
#[utoipa::path(
    get, path = "/v1/agents/runs", tag = "agents",
    params(ListRunsQuery),
    responses(
        (status = 200, description = "Runs, newest first", body = RunList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Missing agents:run", body = ErrorBody),
    )
)]
pub async fn list_runs(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    query: Result<Query<ListRunsQuery>, QueryRejection>,
) -> ApiResult<Json<RunList>> {
    let Query(q) = query.map_err(query_err)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError(Error::invalid_field("limit", "must be 1..=500")));
    }
    let svc = service(&state)?;
    let rows = svc
        .runs()
        .list(
            ctx.tenant(),
            &RunFilter {
                status: q.status,
                graph: q.graph,
                thread_id: q.thread_id,
                limit,
            },
        )
        .await?;
    Ok(Json(RunList {
        object: "list",
        data: rows.iter().map(summary).collect(),
    }))
}

async fn existing_run(svc: &AgentsService, ctx: &RequestContext, id: &str) -> ApiResult<RunRow> {
    svc.runs()
        .get(ctx.tenant(), id)
        .await?
        .ok_or_else(|| ApiError(Error::not_found(format!("run {id:?}")).with_field("run_id")))
}

/// `GET /v1/agents/runs/{run_id}`.
#[utoipa::path(
    get, path = "/v1/agents/runs/{run_id}", tag = "agents",
    params(("run_id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run with its thread's state and pending interrupts", body = Run),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Missing agents:run", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
pub async fn get_run(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Run>> {
    let Path(id) = path.map_err(path_err)?;
    let svc = service(&state)?;
    let row = existing_run(svc, &ctx, &id).await?;
    Ok(Json(run_with_state(svc, &ctx, row).await?))
}

/// `POST /v1/agents/runs/{run_id}/resume`: answers an interrupted run's pending interrupts.
#[utoipa::path(
    post, path = "/v1/agents/runs/{run_id}/resume", tag = "agents",
    params(("run_id" = String, Path, description = "Run id")),
    request_body = ResumeRun,
    responses(
        (status = 200, description = "The continued run, or with `stream: true` a `text/event-stream` as for starting a run",
            content((Run = "application/json"), (crate::rag::types::SseEvent = "text/event-stream"))),
        (status = 400, description = "Invalid body (edit needs `value`)", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 402, description = "The tenant's model budget is spent, or the run reached its step limit (the graph's, capped by the tenant's `agents.max_steps`)", body = ErrorBody),
        (status = 403, description = "Missing agents:resume or chat:invoke, or a model the tenant may not use", body = ErrorBody),
        (status = 404, description = "No such run, or its graph is no longer registered", body = ErrorBody),
        (status = 409, description = "The run is not interrupted", body = ErrorBody),
        (status = 429, description = "The tenant has its limit of runs running, or a model rate limit; see Retry-After", body = ErrorBody),
        (status = 502, description = "Model failure", body = ErrorBody),
        (status = 503, description = "The server runs its limit of background tasks, or the model is overloaded; see Retry-After", body = ErrorBody),
    )
)]
pub async fn resume_run(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    CallerConfig(config): CallerConfig,
    path: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let Path(id) = path.map_err(path_err)?;
    let svc = service(&state)?;
    let row = existing_run(svc, &ctx, &id).await?;
    let req: ResumeRun = crate::gateway::openai::parse_body(&body)?;
    let command = match req.action {
        ResumeAction::Approve => Command::Approve,
        ResumeAction::Edit => Command::Edit(
            req.value
                .ok_or_else(|| ApiError(Error::invalid_field("value", "`edit` needs a `value`")))?,
        ),
        ResumeAction::Reject => {
            Command::Reject(req.reason.unwrap_or_else(|| "rejected".to_owned()))
        }
    };
    let graph = svc.graph(&row.graph)?;
    // Admitted before the run is claimed: a refused resume leaves the run interrupted.
    let permit = svc.admit(&ctx)?;
    if row.status != RunState::Interrupted
        || !svc
            .runs()
            .claim_for_resume(ctx.tenant(), &id, now_ms())
            .await?
    {
        return Err(ApiError(
            Error::conflict(format!(
                "run {id:?} is {}, not interrupted",
                row.status.as_str()
            ))
            .with_field("run_id"),
        ));
    }
    let row = RunRow {
        status: RunState::Running,
        reason: None,
        error: None,
        ..row
    };
    let start = Start {
        kind: StartKind::Resume(command),
        settings: config.map(|c| c.agents.clone()),
    };
    if req.stream.unwrap_or(false) {
        let first = summary(&row);
        let rx = svc.execute_streaming(ctx, graph, row, start, permit);
        return Ok(Sse::new(run_events(first, rx))
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let (row, result) = svc.execute(ctx, graph, row, start, permit).await?;
    finished(row, result)
}

/// `GET /v1/agents/threads/{thread_id}/checkpoints`: the thread's history (the run's step
/// timeline), newest first.
#[utoipa::path(
    get, path = "/v1/agents/threads/{thread_id}/checkpoints", tag = "agents",
    params(("thread_id" = String, Path, description = "Thread id"), ListCheckpointsQuery),
    responses(
        (status = 200, description = "Checkpoints, newest first", body = CheckpointList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Missing agents:run", body = ErrorBody),
        (status = 404, description = "No such thread", body = ErrorBody),
    )
)]
pub async fn list_checkpoints(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ListCheckpointsQuery>, QueryRejection>,
) -> ApiResult<Json<CheckpointList>> {
    let Path(thread_id) = path.map_err(path_err)?;
    let Query(q) = query.map_err(query_err)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError(Error::invalid_field("limit", "must be 1..=1000")));
    }
    let svc = service(&state)?;
    let not_found =
        || ApiError(Error::not_found(format!("thread {thread_id:?}")).with_field("thread_id"));
    if check_thread_id(&thread_id).is_err() {
        return Err(not_found());
    }
    let Some(run) = svc
        .runs()
        .latest_on_thread(ctx.tenant(), &thread_id)
        .await?
    else {
        return Err(not_found());
    };
    let graph = svc.graph(&run.graph)?;
    let history = graph
        .history(&ctx, &ThreadId::new(&thread_id)?, limit)
        .await?;
    Ok(Json(CheckpointList {
        object: "list",
        thread_id,
        graph: run.graph,
        data: history
            .into_iter()
            .map(|c| CheckpointEntry {
                id: c.id.to_string(),
                parent: c.parent.map(|p| p.to_string()),
                step: c.step,
                next: c.next,
                source: match serde_json::to_value(c.source) {
                    Ok(Value::String(s)) => s,
                    Ok(other) => other.to_string(),
                    Err(_) => String::new(),
                },
                metadata: Value::Object(c.metadata),
            })
            .collect(),
    }))
}
