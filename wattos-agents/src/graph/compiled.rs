//! [`CompiledGraph`]: run, stream, resume and inspect a validated graph.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use wattos_core::checkpoint::{
    Checkpoint, CheckpointId, CheckpointSource, Checkpointer, StateBlob, ThreadId,
};
use wattos_core::{RequestContext, Result};

use super::builder::{CompileOptions, NodeSpec};
use super::executor::{self, Start};
use super::node::{Command, Interrupt, NodeEvent};
use crate::error::GraphError;
use crate::state::{State, encode};

pub(crate) struct GraphInner<S: State> {
    pub(crate) specs: Vec<NodeSpec<S>>,
    pub(crate) index: HashMap<String, usize>,
    pub(crate) options: CompileOptions,
}

/// A validated graph, ready to run. Cheap to clone and share between requests and tenants (all
/// per-run data lives in the run and in the checkpointer, keyed by tenant and thread).
pub struct CompiledGraph<S: State> {
    pub(crate) inner: Arc<GraphInner<S>>,
}

impl<S: State> Clone for CompiledGraph<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S: State> std::fmt::Debug for CompiledGraph<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledGraph")
            .field("nodes", &self.node_names())
            .field("options", &self.inner.options)
            .finish()
    }
}

/// Per-run settings.
#[derive(Clone, Default)]
pub struct RunConfig {
    /// The thread to persist to (needs a checkpointer); `None` runs in memory only.
    pub thread: Option<ThreadId>,
    /// Overrides the compiled step limit.
    pub step_limit: Option<u32>,
    /// A ceiling on the step limit, whichever applies (e.g. a tenant's `agents.max_steps`): the
    /// run stops with [`GraphError::StepLimit`](crate::GraphError::StepLimit) after
    /// `min(step limit, max_steps)` supersteps.
    pub max_steps: Option<u32>,
    /// Tools whose every call waits for a human's approval in this run (and its subgraphs), on
    /// top of the calls a tool asks approval for itself (e.g. a tenant's
    /// `agents.approval_required_tools`). See [`crate::agent::ToolNode`].
    pub approval_required_tools: Vec<String>,
    /// A subgraph inherits its parent's checkpointer.
    pub(crate) checkpointer: Option<Arc<dyn Checkpointer>>,
}

impl std::fmt::Debug for RunConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunConfig")
            .field("thread", &self.thread)
            .field("step_limit", &self.step_limit)
            .field("max_steps", &self.max_steps)
            .field("approval_required_tools", &self.approval_required_tools)
            .finish_non_exhaustive()
    }
}

impl RunConfig {
    /// A persisted run on `thread`.
    pub fn thread(thread: ThreadId) -> Self {
        Self {
            thread: Some(thread),
            ..Self::default()
        }
    }

    /// Overrides the step limit for this run.
    #[must_use]
    pub fn with_step_limit(mut self, limit: u32) -> Self {
        self.step_limit = Some(limit.max(1));
        self
    }

    /// Caps the step limit for this run, whatever the graph or [`RunConfig::with_step_limit`]
    /// allows (a platform's per-tenant ceiling).
    #[must_use]
    pub fn with_max_steps(mut self, max: u32) -> Self {
        self.max_steps = Some(max.max(1));
        self
    }

    /// Makes every call of these tools wait for a human's approval (an interrupt of type
    /// `tool_approval`, answered with approve, edit or reject), whatever the tool says itself.
    #[must_use]
    pub fn with_approval_required<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        tools: I,
    ) -> Self {
        self.approval_required_tools = tools.into_iter().map(Into::into).collect();
        self
    }

    /// The step limit a run of a graph compiled with `compiled` steps gets.
    pub(crate) fn effective_step_limit(&self, compiled: u32) -> u32 {
        let limit = self.step_limit.unwrap_or(compiled);
        self.max_steps.map_or(limit, |m| limit.min(m))
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum RunStatus {
    /// Every branch reached END.
    Completed,
    /// Waiting for a human: see [`RunOutcome::interrupts`], then call [`CompiledGraph::resume`].
    Interrupted,
    /// A human rejected a breakpoint; the run stopped there.
    Rejected(String),
}

/// The result of a run (or of a resumed run).
#[derive(Debug, Clone)]
pub struct RunOutcome<S: State> {
    /// The state when the run stopped.
    pub state: S,
    /// Why it stopped.
    pub status: RunStatus,
    /// Pending interrupts (when interrupted).
    pub interrupts: Vec<Interrupt>,
    /// The last checkpoint written (when persisted).
    pub checkpoint: Option<CheckpointId>,
    /// Supersteps run by this call.
    pub steps: u64,
}

impl<S: State> RunOutcome<S> {
    /// Whether the run waits for a human.
    pub fn is_interrupted(&self) -> bool {
        self.status == RunStatus::Interrupted
    }
}

/// An item of a streamed run.
#[derive(Debug, Clone)]
pub enum Event<S: State> {
    /// The whole state after a step ("values" mode).
    Values {
        /// The step that just finished.
        step: u64,
        /// The state.
        state: Arc<S>,
    },
    /// One node's update in a step ("updates" mode).
    Update {
        /// The step.
        step: u64,
        /// The node.
        node: String,
        /// Its update.
        update: S::Update,
    },
    /// An event a node emitted: LLM tokens, tool start/end, custom.
    Node {
        /// The node (for subgraphs: `outer/inner`).
        node: String,
        /// Its task.
        task_id: String,
        /// The event.
        event: NodeEvent,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Its step.
        step: u64,
        /// Its id.
        id: CheckpointId,
    },
    /// The run ended; always the last item.
    Done(Box<RunOutcome<S>>),
}

/// A stream of run events; the run stops when the stream is dropped.
pub type EventStream<S> = Pin<Box<dyn Stream<Item = Result<Event<S>>> + Send>>;

/// A checkpoint's place in a thread's history (without its state; see [`CompiledGraph::state_at`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// The checkpoint.
    pub id: CheckpointId,
    /// The one before it.
    pub parent: Option<CheckpointId>,
    /// Its step.
    pub step: u64,
    /// Nodes that run next.
    pub next: Vec<String>,
    /// Why it was written.
    pub source: CheckpointSource,
    /// Its metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A thread's current state.
#[derive(Debug, Clone)]
pub struct StateSnapshot<S: State> {
    /// The state.
    pub state: S,
    /// Nodes that run next (empty when finished).
    pub next: Vec<String>,
    /// Unanswered interrupts.
    pub interrupts: Vec<Interrupt>,
    /// The latest checkpoint.
    pub checkpoint: CheckpointId,
    /// Its step.
    pub step: u64,
}

pub(crate) type Sink<S> = Arc<dyn Fn(Event<S>) + Send + Sync>;

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<S: State> CompiledGraph<S> {
    pub(crate) fn new(
        specs: Vec<NodeSpec<S>>,
        index: HashMap<String, usize>,
        options: CompileOptions,
    ) -> Self {
        Self {
            inner: Arc::new(GraphInner {
                specs,
                index,
                options,
            }),
        }
    }

    /// The node names (without START).
    pub fn node_names(&self) -> Vec<&str> {
        self.inner.specs[1..].iter().map(|s| &*s.name).collect()
    }

    /// The checkpointer given at compile time.
    pub fn checkpointer(&self) -> Option<&Arc<dyn Checkpointer>> {
        self.inner.options.checkpointer.as_ref()
    }

    /// Runs the graph: the thread's latest state (or the default state) with `input` merged, from START,
    /// until every branch reaches END, an interrupt, an error, the step limit or the deadline.
    ///
    /// # Errors
    /// A node's error; [`GraphError::StepLimit`]; a timeout when `ctx`'s deadline passes; checkpointer
    /// failures.
    pub async fn invoke(
        &self,
        ctx: &RequestContext,
        config: &RunConfig,
        input: S::Update,
    ) -> Result<RunOutcome<S>> {
        executor::run(self, ctx, config, Start::Input(input), None).await
    }

    /// Runs the graph from START on exactly `state`, ignoring the thread's earlier state.
    ///
    /// # Errors
    /// As for [`CompiledGraph::invoke`].
    pub async fn invoke_with_state(
        &self,
        ctx: &RequestContext,
        config: &RunConfig,
        state: S,
    ) -> Result<RunOutcome<S>> {
        executor::run(self, ctx, config, Start::State(state), None).await
    }

    /// Continues a thread from its latest checkpoint: answers its pending interrupts with `command`
    /// (every pending interrupt of the step gets it), or, when nothing is pending, recovers a run that
    /// stopped (a crash): tasks that already finished in the interrupted step are not run again.
    ///
    /// # Errors
    /// [`GraphError::NoCheckpointer`], [`GraphError::NothingToResume`], and as for `invoke`.
    pub async fn resume(
        &self,
        ctx: &RequestContext,
        config: &RunConfig,
        command: Command,
    ) -> Result<RunOutcome<S>> {
        executor::run(self, ctx, config, Start::Resume(Some(command)), None).await
    }

    /// Continues a thread that stopped without an interrupt (a crash, a timeout, a failing node) from
    /// its latest checkpoint. Pending interrupts stay pending: the outcome is then `Interrupted` again.
    ///
    /// # Errors
    /// As for [`CompiledGraph::resume`].
    pub async fn recover(&self, ctx: &RequestContext, config: &RunConfig) -> Result<RunOutcome<S>> {
        executor::run(self, ctx, config, Start::Resume(None), None).await
    }

    /// [`CompiledGraph::invoke`] as a stream of events ending with [`Event::Done`].
    pub fn stream(
        &self,
        ctx: &RequestContext,
        config: &RunConfig,
        input: S::Update,
    ) -> EventStream<S> {
        self.spawn_stream(ctx, config, Start::Input(input))
    }

    /// [`CompiledGraph::resume`] as a stream of events ending with [`Event::Done`].
    pub fn stream_resume(
        &self,
        ctx: &RequestContext,
        config: &RunConfig,
        command: Command,
    ) -> EventStream<S> {
        self.spawn_stream(ctx, config, Start::Resume(Some(command)))
    }

    fn spawn_stream(
        &self,
        ctx: &RequestContext,
        config: &RunConfig,
        start: Start<S>,
    ) -> EventStream<S> {
        let (tx, rx) = mpsc::unbounded_channel::<Result<Event<S>>>();
        let graph = self.clone();
        let ctx = ctx.clone();
        let config = config.clone();
        let handle = tokio::spawn(async move {
            let events = tx.clone();
            let sink: Sink<S> = Arc::new(move |e| {
                let _ = events.send(Ok(e));
            });
            let result = executor::run(&graph, &ctx, &config, start, Some(sink)).await;
            let _ = tx.send(result.map(|o| Event::Done(Box::new(o))));
        });
        let guard = AbortOnDrop(handle);
        Box::pin(futures::stream::unfold(
            (rx, guard),
            |(mut rx, guard)| async move { rx.recv().await.map(|item| (item, (rx, guard))) },
        ))
    }

    pub(crate) fn checkpointer_for<'a>(
        &'a self,
        config: &'a RunConfig,
    ) -> Result<(&'a Arc<dyn Checkpointer>, &'a ThreadId)> {
        let cp = config.checkpointer.as_ref().or(self.checkpointer());
        match (cp, config.thread.as_ref()) {
            (Some(cp), Some(t)) => Ok((cp, t)),
            _ => Err(GraphError::NoCheckpointer.into()),
        }
    }

    /// The thread's latest state, next nodes and pending interrupts; `None` for an unknown thread.
    ///
    /// # Errors
    /// [`GraphError::NoCheckpointer`]; storage failures.
    pub async fn get_state(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
    ) -> Result<Option<StateSnapshot<S>>> {
        let cfg = RunConfig::thread(thread.clone());
        let (cp, thread) = self.checkpointer_for(&cfg)?;
        let Some(c) = cp.get(ctx, thread, None).await? else {
            return Ok(None);
        };
        let (state, _) = executor::load_state(&**cp, ctx, &c).await?;
        let writes = cp.get_writes(ctx, thread, c.id).await?;
        let interrupts = executor::pending_interrupts(&writes)?;
        Ok(Some(StateSnapshot {
            state,
            next: c.next.iter().map(|t| t.node.clone()).collect(),
            interrupts,
            checkpoint: c.id,
            step: c.step,
        }))
    }

    /// The thread's checkpoints, newest first.
    ///
    /// # Errors
    /// [`GraphError::NoCheckpointer`]; storage failures.
    pub async fn history(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        limit: usize,
    ) -> Result<Vec<CheckpointInfo>> {
        let cfg = RunConfig::thread(thread.clone());
        let (cp, thread) = self.checkpointer_for(&cfg)?;
        Ok(cp
            .list(ctx, thread, limit)
            .await?
            .into_iter()
            .map(|c| CheckpointInfo {
                id: c.id,
                parent: c.parent,
                step: c.step,
                next: c.next.into_iter().map(|t| t.node).collect(),
                source: c.source,
                metadata: c.metadata,
            })
            .collect())
    }

    /// The state at checkpoint `id` of `thread`.
    ///
    /// # Errors
    /// Not found for an unknown checkpoint; [`GraphError::NoCheckpointer`]; storage failures.
    pub async fn state_at(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        id: CheckpointId,
    ) -> Result<S> {
        let cfg = RunConfig::thread(thread.clone());
        let (cp, thread) = self.checkpointer_for(&cfg)?;
        let c = cp
            .get(ctx, thread, Some(id))
            .await?
            .ok_or_else(|| wattos_core::Error::not_found(format!("checkpoint {id}")))?;
        Ok(executor::load_state(&**cp, ctx, &c).await?.0)
    }

    /// Writes a new latest checkpoint for `thread` copied from `from` (default: the latest), with
    /// `update` merged: time travel and forks. `resume(.., Command::Approve)` then runs on from it; the
    /// history keeps the original branch.
    ///
    /// # Errors
    /// Not found for an unknown checkpoint; [`GraphError::NoCheckpointer`]; storage failures.
    pub async fn update_state(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        from: Option<CheckpointId>,
        update: Option<S::Update>,
    ) -> Result<CheckpointId> {
        let cfg = RunConfig::thread(thread.clone());
        let (cp, thread) = self.checkpointer_for(&cfg)?;
        let base = cp.get(ctx, thread, from).await?.ok_or_else(|| {
            wattos_core::Error::not_found(format!("checkpoint of thread {thread}"))
        })?;
        let updates: Vec<S::Update> = update.into_iter().collect();
        let mut next = Checkpoint::new(
            thread.clone(),
            Some(base.id),
            base.step,
            StateBlob::Delta(encode(&updates, "state update")?),
        );
        next.next = base.next.clone();
        next.source = if from.is_some() {
            CheckpointSource::Fork
        } else {
            CheckpointSource::Update
        };
        let id = next.id;
        cp.put(ctx, next).await?;
        Ok(id)
    }
}
