//! A registry of named graphs behind a JSON interface, for servers: the state type is erased, inputs
//! and outputs are JSON.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wattos_core::checkpoint::ThreadId;
use wattos_core::{Error, RequestContext, Result};

use crate::graph::{
    CheckpointInfo, Command, CompiledGraph, Event, Interrupt, NodeEvent, RunConfig, RunOutcome,
    RunStatus,
};
use crate::state::State;

/// A run's result with the state as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonOutcome {
    /// The state when the run stopped.
    pub state: Value,
    /// Why it stopped.
    #[serde(flatten)]
    pub status: RunStatus,
    /// Pending interrupts.
    pub interrupts: Vec<Interrupt>,
    /// The last checkpoint, when persisted.
    pub checkpoint: Option<String>,
    /// Steps run by this call.
    pub steps: u64,
}

/// An item of a streamed run, with state and updates as JSON (see [`crate::Event`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JsonEvent {
    /// The whole state after a step.
    Values {
        /// The step that just finished.
        step: u64,
        /// The state.
        state: Value,
    },
    /// One node's update in a step.
    Update {
        /// The step.
        step: u64,
        /// The node.
        node: String,
        /// Its update.
        update: Value,
    },
    /// An event a node emitted (tokens, tool start/end, custom).
    Node {
        /// The node.
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
        id: String,
    },
    /// The run ended; always the last item.
    Done {
        /// The outcome.
        outcome: JsonOutcome,
    },
}

/// A stream of [`JsonEvent`]s; the run stops when the stream is dropped.
pub type JsonEventStream = Pin<Box<dyn Stream<Item = Result<JsonEvent>> + Send>>;

fn json_value<T: Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::internal(format!("state is not JSON: {e}")))
}

fn to_json_event<S: State>(e: Event<S>) -> Result<JsonEvent> {
    Ok(match e {
        Event::Values { step, state } => JsonEvent::Values {
            step,
            state: json_value(&*state)?,
        },
        Event::Update { step, node, update } => JsonEvent::Update {
            step,
            node,
            update: json_value(&update)?,
        },
        Event::Node {
            node,
            task_id,
            event,
        } => JsonEvent::Node {
            node,
            task_id,
            event,
        },
        Event::Checkpoint { step, id } => JsonEvent::Checkpoint {
            step,
            id: id.to_string(),
        },
        Event::Done(o) => JsonEvent::Done {
            outcome: to_json(*o)?,
        },
    })
}

fn to_json<S: State>(o: RunOutcome<S>) -> Result<JsonOutcome> {
    Ok(JsonOutcome {
        state: serde_json::to_value(&o.state)
            .map_err(|e| Error::internal(format!("state is not JSON: {e}")))?,
        status: o.status,
        interrupts: o.interrupts,
        checkpoint: o.checkpoint.map(|c| c.to_string()),
        steps: o.steps,
    })
}

/// A compiled graph driven with JSON.
#[async_trait]
pub trait JsonGraph: Send + Sync {
    /// Starts a run with `input` (JSON of the state's update type), on `config`'s thread and
    /// within its step limits.
    ///
    /// # Errors
    /// Invalid input (JSON that is not an update); the run's errors.
    async fn invoke(
        &self,
        ctx: &RequestContext,
        config: &RunConfig,
        input: Value,
    ) -> Result<JsonOutcome>;
    /// Answers the thread's pending interrupts.
    ///
    /// # Errors
    /// As for [`CompiledGraph::resume`].
    async fn resume(
        &self,
        ctx: &RequestContext,
        config: &RunConfig,
        command: Command,
    ) -> Result<JsonOutcome>;
    /// Continues a crashed run.
    ///
    /// # Errors
    /// As for [`CompiledGraph::recover`].
    async fn recover(&self, ctx: &RequestContext, config: &RunConfig) -> Result<JsonOutcome>;
    /// The thread's latest state and pending interrupts.
    ///
    /// # Errors
    /// As for [`CompiledGraph::get_state`].
    async fn state(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
    ) -> Result<Option<(Value, Vec<Interrupt>)>>;
    /// The thread's history, newest first.
    ///
    /// # Errors
    /// As for [`CompiledGraph::history`].
    async fn history(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        limit: usize,
    ) -> Result<Vec<CheckpointInfo>>;
    /// Checks that `input` is a valid state update, without running anything.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] naming field `input`.
    fn validate_input(&self, input: &Value) -> Result<()>;
    /// [`JsonGraph::invoke`] as a stream of events ending with [`JsonEvent::Done`]. Invalid input
    /// is the stream's only item.
    fn stream(&self, ctx: &RequestContext, config: &RunConfig, input: Value) -> JsonEventStream;
    /// [`JsonGraph::resume`] as a stream of events ending with [`JsonEvent::Done`].
    fn stream_resume(
        &self,
        ctx: &RequestContext,
        config: &RunConfig,
        command: Command,
    ) -> JsonEventStream;
}

#[async_trait]
impl<S: State> JsonGraph for CompiledGraph<S> {
    async fn invoke(
        &self,
        ctx: &RequestContext,
        config: &RunConfig,
        input: Value,
    ) -> Result<JsonOutcome> {
        let update: S::Update = serde_json::from_value(input)
            .map_err(|e| Error::invalid_field("input", format!("not a valid state update: {e}")))?;
        to_json(CompiledGraph::invoke(self, ctx, config, update).await?)
    }
    async fn resume(
        &self,
        ctx: &RequestContext,
        config: &RunConfig,
        command: Command,
    ) -> Result<JsonOutcome> {
        to_json(CompiledGraph::resume(self, ctx, config, command).await?)
    }
    async fn recover(&self, ctx: &RequestContext, config: &RunConfig) -> Result<JsonOutcome> {
        to_json(CompiledGraph::recover(self, ctx, config).await?)
    }
    async fn state(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
    ) -> Result<Option<(Value, Vec<Interrupt>)>> {
        match self.get_state(ctx, thread).await? {
            None => Ok(None),
            Some(s) => Ok(Some((
                serde_json::to_value(&s.state)
                    .map_err(|e| Error::internal(format!("state is not JSON: {e}")))?,
                s.interrupts,
            ))),
        }
    }
    async fn history(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        limit: usize,
    ) -> Result<Vec<CheckpointInfo>> {
        CompiledGraph::history(self, ctx, thread, limit).await
    }
    fn validate_input(&self, input: &Value) -> Result<()> {
        S::Update::deserialize(input)
            .map(|_| ())
            .map_err(|e| Error::invalid_field("input", format!("not a valid state update: {e}")))
    }
    fn stream(&self, ctx: &RequestContext, config: &RunConfig, input: Value) -> JsonEventStream {
        let update: S::Update = match serde_json::from_value(input) {
            Ok(u) => u,
            Err(e) => {
                let err = Error::invalid_field("input", format!("not a valid state update: {e}"));
                return Box::pin(futures::stream::once(async move { Err(err) }));
            }
        };
        Box::pin(
            CompiledGraph::stream(self, ctx, config, update)
                .map(|item| item.and_then(to_json_event)),
        )
    }
    fn stream_resume(
        &self,
        ctx: &RequestContext,
        config: &RunConfig,
        command: Command,
    ) -> JsonEventStream {
        Box::pin(
            CompiledGraph::stream_resume(self, ctx, config, command)
                .map(|item| item.and_then(to_json_event)),
        )
    }
}

/// Named graphs, shared by all requests (tenancy lives in the request context and the checkpointer).
#[derive(Clone, Default)]
pub struct GraphRegistry {
    graphs: BTreeMap<String, Arc<dyn JsonGraph>>,
}

impl std::fmt::Debug for GraphRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.graphs.keys()).finish()
    }
}

impl GraphRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `graph` as `name` (replacing one of the same name).
    #[must_use]
    pub fn with<S: State>(mut self, name: impl Into<String>, graph: CompiledGraph<S>) -> Self {
        self.graphs.insert(name.into(), Arc::new(graph));
        self
    }

    /// The graph named `name`.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::NotFound`] for an unknown name.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn JsonGraph>> {
        self.graphs
            .get(name)
            .ok_or_else(|| Error::not_found(format!("graph `{name}`")))
    }

    /// Registers an already type-erased graph as `name` (replacing one of the same name).
    #[must_use]
    pub fn with_graph(mut self, name: impl Into<String>, graph: Arc<dyn JsonGraph>) -> Self {
        self.graphs.insert(name.into(), graph);
        self
    }

    /// Registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.graphs.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{AgentState, ReactAgent};
    use crate::checkpoint::InMemoryCheckpointer;
    use crate::graph::CompileOptions;
    use wattos_core::TenantId;
    use wattos_core::test_utils::chat::ScriptedChatModel;

    #[tokio::test]
    async fn registry_runs_graphs_with_json() {
        let model = ScriptedChatModel::new().then_text("hi there");
        let agent = ReactAgent::new(Arc::new(model), "m")
            .compile(CompileOptions::new().with_checkpointer(Arc::new(InMemoryCheckpointer::new())))
            .unwrap_or_else(|e| panic!("{e}"));
        let registry = GraphRegistry::new().with("chat", agent);
        assert_eq!(registry.names().collect::<Vec<_>>(), ["chat"]);
        assert!(registry.get("nope").is_err());
        let ctx = RequestContext::system(TenantId::new("t").unwrap_or_else(|e| panic!("{e}")));
        let thread = ThreadId::new("x").unwrap_or_else(|e| panic!("{e}"));
        let g = registry.get("chat").unwrap_or_else(|e| panic!("{e}"));
        let input = serde_json::to_value(AgentState::user("hello")).unwrap_or_default();
        let out = g
            .invoke(&ctx, &RunConfig::thread(thread.clone()), input)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.status, RunStatus::Completed);
        assert_eq!(out.state["messages"][1]["content"], "hi there");
        assert!(
            g.invoke(
                &ctx,
                &RunConfig::default(),
                serde_json::json!({"messages": 5})
            )
            .await
            .is_err()
        );
        assert_eq!(
            g.history(&ctx, &thread, 10).await.unwrap_or_default().len(),
            2
        );
    }

    #[tokio::test]
    async fn json_streams_end_with_the_outcome_and_inputs_are_checked() {
        let model = ScriptedChatModel::new().then_text("streamed");
        let agent = ReactAgent::new(Arc::new(model), "m")
            .compile(CompileOptions::new().with_checkpointer(Arc::new(InMemoryCheckpointer::new())))
            .unwrap_or_else(|e| panic!("{e}"));
        let g: Arc<dyn JsonGraph> = Arc::new(agent);
        assert!(
            g.validate_input(&serde_json::json!({"messages": 5}))
                .is_err()
        );
        let input = serde_json::to_value(AgentState::user("hi")).unwrap_or_default();
        assert!(g.validate_input(&input).is_ok());
        let ctx = RequestContext::system(TenantId::new("t").unwrap_or_else(|e| panic!("{e}")));
        let thread = ThreadId::new("s").unwrap_or_else(|e| panic!("{e}"));
        let events: Vec<JsonEvent> = g
            .stream(&ctx, &RunConfig::thread(thread), input)
            .map(|e| e.unwrap_or_else(|e| panic!("{e}")))
            .collect()
            .await;
        assert!(
            events
                .iter()
                .any(|e| matches!(e, JsonEvent::Update { node, .. } if node == "agent"))
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, JsonEvent::Checkpoint { .. }))
        );
        match events.last() {
            Some(JsonEvent::Done { outcome }) => {
                assert_eq!(outcome.status, RunStatus::Completed);
                assert_eq!(outcome.state["messages"][1]["content"], "streamed");
            }
            other => panic!("last event {other:?}"),
        }
        let bad: Vec<_> = g
            .stream(
                &ctx,
                &RunConfig::default(),
                serde_json::json!({"messages": 5}),
            )
            .collect()
            .await;
        assert_eq!(bad.len(), 1);
        assert!(bad[0].is_err());
    }
}
