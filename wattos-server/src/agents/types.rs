//! Wire types of the agents API (documented in the OpenAPI spec).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::runs::{RunError, RunState};

/// A registered graph.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GraphInfo {
    /// The name runs are started with.
    pub name: String,
    /// What it does and what its input looks like.
    pub description: String,
    /// An example `input` for starting a run.
    #[schema(value_type = Object)]
    pub input_example: Value,
}

/// The registered graphs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GraphList {
    /// Always `list`.
    pub object: &'static str,
    /// Graphs by name.
    pub data: Vec<GraphInfo>,
}

/// `POST /v1/agents/graphs/{graph}/runs`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The graph's state update to start with (see the graph's `input_example`).
    #[schema(value_type = Object)]
    pub input: Value,
    /// Thread to run on (`^[A-Za-z0-9_.:-]{1,128}$`, scoped by tenant); default: a new thread named
    /// after the run. A thread continues from its latest state.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub thread_id: Option<String>,
    /// Stream the run's events as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
}

/// A human's answer to an interrupted run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResumeAction {
    /// Go ahead as proposed.
    Approve,
    /// Go ahead with `value` instead (new tool arguments, or a state update for a breakpoint).
    Edit,
    /// Do not go ahead (`reason` says why).
    Reject,
}

/// `POST /v1/agents/runs/{run_id}/resume`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRun {
    /// What to do.
    pub action: ResumeAction,
    /// For `edit`: the replacement (required).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub value: Option<Value>,
    /// For `reject`: why (default "rejected").
    #[serde(default)]
    pub reason: Option<String>,
    /// Stream the continued run's events as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
}

/// A pending request for a human.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InterruptInfo {
    /// The task that raised it.
    pub task_id: String,
    /// The node.
    pub node: String,
    /// `before` / `after` (breakpoints) or `dynamic` (raised inside the node, e.g. a tool approval).
    pub kind: String,
    /// What the node asks (for tool approvals `{"type": "tool_approval", "tool", ...}`).
    #[schema(value_type = Object)]
    pub value: Value,
}

/// A run without its state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunSummary {
    /// Run id.
    pub id: String,
    /// Always `agent.run`.
    pub object: &'static str,
    /// Graph name.
    pub graph: String,
    /// Thread id.
    pub thread_id: String,
    /// Status.
    pub status: RunState,
    /// Supersteps run.
    pub steps: i64,
    /// Why a human rejected it.
    pub reason: Option<String>,
    /// Why it failed.
    pub error: Option<RunError>,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms.
    pub updated_at_ms: i64,
}

/// A run with its thread's current state and pending interrupts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Run {
    /// The summary fields.
    #[serde(flatten)]
    pub summary: RunSummary,
    /// The thread's latest state (null when unknown).
    #[schema(value_type = Object)]
    pub state: Value,
    /// Pending interrupts (when interrupted).
    pub interrupts: Vec<InterruptInfo>,
    /// The latest checkpoint id.
    pub checkpoint: Option<String>,
}

/// A list of runs, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunList {
    /// Always `list`.
    pub object: &'static str,
    /// The runs.
    pub data: Vec<RunSummary>,
}

/// Query of `GET /v1/agents/runs`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListRunsQuery {
    /// Only runs in this status (`interrupted` lists pending approvals).
    pub status: Option<RunState>,
    /// Only runs of this graph.
    pub graph: Option<String>,
    /// Only runs on this thread.
    pub thread_id: Option<String>,
    /// At most this many, 1..=500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// A checkpoint in a thread's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckpointEntry {
    /// Checkpoint id.
    pub id: String,
    /// The one before.
    pub parent: Option<String>,
    /// Its step.
    pub step: u64,
    /// Nodes that run next.
    pub next: Vec<String>,
    /// Why it was written (`input`, `loop`, `update`, ...).
    pub source: String,
    /// Its metadata.
    #[schema(value_type = Object)]
    pub metadata: Value,
}

/// A thread's checkpoints, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckpointList {
    /// Always `list`.
    pub object: &'static str,
    /// The thread.
    pub thread_id: String,
    /// The graph of the thread.
    pub graph: String,
    /// Checkpoints.
    pub data: Vec<CheckpointEntry>,
}

/// Query of `GET /v1/agents/threads/{thread_id}/checkpoints`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListCheckpointsQuery {
    /// At most this many, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}
