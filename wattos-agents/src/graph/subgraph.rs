//! A compiled graph used as a node of another graph.

use std::sync::Arc;

use futures::future::BoxFuture;
use wattos_core::Result;
use wattos_core::checkpoint::ThreadId;

use super::compiled::{CompiledGraph, Event, RunConfig, Sink};
use super::executor::{self, Start};
use super::node::{Node, NodeContext, NodeOutput};
use crate::state::State;

type InputFn<S, T> = Arc<dyn Fn(&S) -> T + Send + Sync>;
type OutputFn<S, T> = Arc<dyn Fn(&S, T) -> <S as State>::Update + Send + Sync>;

/// Runs a [`CompiledGraph`] over state `T` as one node of a graph over `S`.
///
/// `input` builds the subgraph's initial state from the parent's; `output` turns its final state into an
/// update of the parent. The subgraph checkpoints with the parent's checkpointer under its own thread
/// (derived from the parent's checkpoint and task), so an interrupt inside it suspends the parent too,
/// and resuming the parent resumes the subgraph where it stopped, not from its start.
pub struct Subgraph<S: State, T: State> {
    graph: CompiledGraph<T>,
    input: InputFn<S, T>,
    output: OutputFn<S, T>,
}

impl<S: State, T: State> std::fmt::Debug for Subgraph<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subgraph")
            .field("graph", &self.graph)
            .finish_non_exhaustive()
    }
}

impl<S: State, T: State> Subgraph<S, T> {
    /// A subgraph node with state mappings in and out.
    pub fn new(
        graph: CompiledGraph<T>,
        input: impl Fn(&S) -> T + Send + Sync + 'static,
        output: impl Fn(&S, T) -> S::Update + Send + Sync + 'static,
    ) -> Self {
        Self {
            graph,
            input: Arc::new(input),
            output: Arc::new(output),
        }
    }
}

impl<S: State, T: State> Node<S> for Subgraph<S, T> {
    fn run(&self, state: Arc<S>, ctx: NodeContext) -> BoxFuture<'static, Result<NodeOutput<S>>> {
        let graph = self.graph.clone();
        let input = self.input.clone();
        let output = self.output.clone();
        Box::pin(async move {
            // The parent run's ceiling and approval list hold inside the subgraph too.
            let mut config = RunConfig {
                max_steps: ctx.env.max_steps,
                approval_required_tools: ctx.env.approval_tools.to_vec(),
                ..RunConfig::default()
            };
            if let (Some(cp), false) = (&ctx.env.checkpointer, ctx.env.namespace.is_empty()) {
                // Checkpoint ids are unique, so this names one invocation of this node.
                let ns = &ctx.env.namespace;
                let tail = ns.rsplitn(3, '/').collect::<Vec<_>>();
                let name = match tail.as_slice() {
                    [task, checkpoint, _] => format!("sub:{checkpoint}:{task}"),
                    _ => format!("sub:{ns}"),
                };
                config.thread = Some(ThreadId::new(name)?);
                config.checkpointer = Some(cp.clone());
            }
            let sink: Option<Sink<T>> = ctx.is_streaming().then(|| {
                let outer = ctx.clone();
                let f: Sink<T> = Arc::new(move |e: Event<T>| {
                    if let Event::Node { event, .. } = e {
                        outer.emit(event);
                    }
                });
                f
            });
            let existing = match (&config.checkpointer, &config.thread) {
                (Some(cp), Some(t)) if ctx.is_resumed() => {
                    cp.get(ctx.request(), t, None).await?.is_some()
                }
                _ => false,
            };
            let start = if existing {
                Start::Resume(ctx.latest_resume().cloned())
            } else {
                Start::State(input(&state))
            };
            let outcome = executor::run(&graph, ctx.request(), &config, start, sink).await?;
            if outcome.is_interrupted() {
                let value = serde_json::json!({
                    "subgraph": ctx.node(),
                    "interrupts": outcome.interrupts,
                });
                return Err(ctx.raise(value));
            }
            Ok(NodeOutput::update(output(&state, outcome.state)))
        })
    }
}
