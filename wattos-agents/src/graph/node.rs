//! Nodes: async functions from the state to a partial update, with a [`NodeContext`] for the request,
//! events and interrupts.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wattos_core::checkpoint::{Checkpointer, ThreadId};
use wattos_core::{Error, ErrorKind, RequestContext, Result};

use crate::state::State;

/// Name of the virtual entry node.
pub const START: &str = "__start__";
/// Name of the virtual exit node.
pub const END: &str = "__end__";

/// Where control goes after a node.
#[derive(Debug, Clone)]
pub enum Route<S: State> {
    /// Run this node in the next step.
    To(String),
    /// Run this node in the next step as its own branch, seeing the state with this update overlaid
    /// (LangGraph's `Send`). Several sends to one node run in parallel.
    Send(String, S::Update),
    /// Finish this branch.
    End,
}

impl<S: State> Route<S> {
    /// A route to `node` (or [`END`]).
    pub fn to(node: impl Into<String>) -> Self {
        let node = node.into();
        if node == END {
            Self::End
        } else {
            Self::To(node)
        }
    }

    /// A branch of `node` with its own input.
    pub fn send(node: impl Into<String>, input: S::Update) -> Self {
        Self::Send(node.into(), input)
    }

    pub(crate) fn target(&self) -> &str {
        match self {
            Self::To(n) | Self::Send(n, _) => n,
            Self::End => END,
        }
    }
}

/// One or more routes, as returned by a router.
#[derive(Debug, Clone)]
pub struct Routes<S: State>(pub Vec<Route<S>>);

impl<S: State> From<Route<S>> for Routes<S> {
    fn from(r: Route<S>) -> Self {
        Self(vec![r])
    }
}
impl<S: State> From<Vec<Route<S>>> for Routes<S> {
    fn from(r: Vec<Route<S>>) -> Self {
        Self(r)
    }
}
impl<S: State> From<&str> for Routes<S> {
    fn from(r: &str) -> Self {
        Self(vec![Route::to(r)])
    }
}
impl<S: State> From<Vec<&str>> for Routes<S> {
    fn from(r: Vec<&str>) -> Self {
        Self(r.into_iter().map(Route::to).collect())
    }
}
impl<S: State, const N: usize> From<[&str; N]> for Routes<S> {
    fn from(r: [&str; N]) -> Self {
        Self(r.into_iter().map(Route::to).collect())
    }
}
impl<S: State> From<String> for Routes<S> {
    fn from(r: String) -> Self {
        Self(vec![Route::to(r)])
    }
}

/// What a node returns: an optional partial update and, optionally, where to go next (overriding the
/// node's edges, like LangGraph's `Command(goto=...)`; the targets must be declared with
/// [`crate::StateGraph::add_destinations`]).
#[derive(Debug, Clone)]
pub struct NodeOutput<S: State> {
    /// The update to merge.
    pub update: Option<S::Update>,
    /// Explicit next nodes.
    pub goto: Option<Vec<Route<S>>>,
}

impl<S: State> Default for NodeOutput<S> {
    fn default() -> Self {
        Self {
            update: None,
            goto: None,
        }
    }
}

impl<S: State> NodeOutput<S> {
    /// No change.
    pub fn none() -> Self {
        Self::default()
    }

    /// An update, following the node's edges.
    pub fn update(update: S::Update) -> Self {
        Self {
            update: Some(update),
            goto: None,
        }
    }

    /// Also go to `routes` instead of the node's edges.
    #[must_use]
    pub fn goto(mut self, routes: impl Into<Routes<S>>) -> Self {
        self.goto = Some(routes.into().0);
        self
    }
}

/// A human's answer to an interrupt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", content = "value", rename_all = "snake_case")]
pub enum Command {
    /// Go ahead as proposed (also: continue after a crash or a breakpoint).
    Approve,
    /// Go ahead with this instead: new tool arguments for a tool approval, a state update (JSON of
    /// `S::Update`) for a breakpoint, or whatever the interrupting node asked for.
    Edit(Value),
    /// Do not go ahead, with a reason.
    Reject(String),
}

/// Where an interrupt came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterruptKind {
    /// A breakpoint before the node.
    Before,
    /// A breakpoint after the node.
    After,
    /// `NodeContext::interrupt` inside the node (or a tool it ran).
    Dynamic,
}

/// A pending request for a human.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interrupt {
    /// The task that raised it.
    pub task_id: String,
    /// The node.
    pub node: String,
    /// Breakpoint or dynamic.
    pub kind: InterruptKind,
    /// What the node asked (an approval request, a question, ...).
    pub value: Value,
}

/// Receives events emitted by nodes (set by the executor when a run is streamed).
pub(crate) type EventSink = Arc<dyn Fn(NodeEvent) + Send + Sync>;

/// Events nodes emit while they run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeEvent {
    /// A streamed LLM token.
    Token {
        /// Text to append.
        text: String,
    },
    /// A tool call starts.
    ToolStart {
        /// The model's call id.
        call_id: String,
        /// The tool.
        tool: String,
        /// Its arguments.
        args: Value,
    },
    /// A tool call finished.
    ToolEnd {
        /// The model's call id.
        call_id: String,
        /// The tool.
        tool: String,
        /// What goes back to the model.
        result: String,
        /// Whether it failed.
        is_error: bool,
    },
    /// Anything a node wants to report.
    Custom {
        /// The payload.
        value: Value,
    },
}

pub(crate) struct TaskEnv {
    pub(crate) request: RequestContext,
    pub(crate) node: Arc<str>,
    pub(crate) task_id: String,
    pub(crate) step: u64,
    pub(crate) thread: Option<ThreadId>,
    pub(crate) namespace: String,
    pub(crate) checkpointer: Option<Arc<dyn Checkpointer>>,
    pub(crate) sink: Option<EventSink>,
    pub(crate) resumes: Vec<Command>,
    pub(crate) resumed: bool,
    pub(crate) interrupts_seen: AtomicUsize,
    pub(crate) raised: Mutex<Option<Value>>,
    /// The run's step ceiling, inherited by subgraphs.
    pub(crate) max_steps: Option<u32>,
    /// Tools whose calls need approval in this run, inherited by subgraphs.
    pub(crate) approval_tools: Arc<[String]>,
}

/// What a node can reach while it runs: the request (tenant, principal, deadline), the event stream and
/// human-in-the-loop interrupts. Cheap to clone.
#[derive(Clone)]
pub struct NodeContext {
    pub(crate) env: Arc<TaskEnv>,
}

impl fmt::Debug for NodeContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeContext")
            .field("node", &self.env.node)
            .field("task_id", &self.env.task_id)
            .field("step", &self.env.step)
            .finish_non_exhaustive()
    }
}

/// Marker text of the error a node returns to unwind after raising an interrupt.
const INTERRUPTED: &str = "graph interrupted: waiting for a human";

impl NodeContext {
    /// A context outside any graph run (for unit-testing a node or tool node alone). Interrupts raised
    /// through it simply fail.
    pub fn detached(request: RequestContext, node: &str) -> Self {
        Self {
            env: Arc::new(TaskEnv {
                request,
                node: Arc::from(node),
                task_id: "detached".into(),
                step: 0,
                thread: None,
                namespace: String::new(),
                checkpointer: None,
                sink: None,
                resumes: Vec::new(),
                resumed: false,
                interrupts_seen: AtomicUsize::new(0),
                raised: Mutex::new(None),
                max_steps: None,
                approval_tools: Arc::from([]),
            }),
        }
    }

    /// Whether the run requires a human's approval for every call of `tool`
    /// ([`RunConfig::with_approval_required`](crate::RunConfig::with_approval_required)).
    pub fn approval_required(&self, tool: &str) -> bool {
        self.env.approval_tools.iter().any(|t| t == tool)
    }

    /// The request: tenant, principal, deadline. Pass it to every model, tool and store call.
    pub fn request(&self) -> &RequestContext {
        &self.env.request
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.env.node
    }

    /// The task id (`<step>:<index>`), stable across resumes.
    pub fn task_id(&self) -> &str {
        &self.env.task_id
    }

    /// The superstep number.
    pub fn step(&self) -> u64 {
        self.env.step
    }

    /// The thread, when the run is persisted.
    pub fn thread(&self) -> Option<&ThreadId> {
        self.env.thread.as_ref()
    }

    /// Whether this task is being run again after an interrupt or a crash.
    pub fn is_resumed(&self) -> bool {
        self.env.resumed
    }

    /// Whether events are being consumed (skip building expensive events when not).
    pub fn is_streaming(&self) -> bool {
        self.env.sink.is_some()
    }

    /// Emits an event on the run's stream (a no-op when nobody streams).
    pub fn emit(&self, event: NodeEvent) {
        if let Some(sink) = &self.env.sink {
            sink(event);
        }
    }

    /// Emits a custom event.
    pub fn emit_custom(&self, value: impl Serialize) {
        if let Some(sink) = &self.env.sink {
            sink(NodeEvent::Custom {
                value: serde_json::to_value(value).unwrap_or(Value::Null),
            });
        }
    }

    /// Asks a human. The first time, this saves the run and returns an error that the node must
    /// propagate with `?`; the run ends as interrupted with `value` in its interrupts. When the run is
    /// resumed with a [`Command`], the node runs again from its start and this call returns the command.
    /// Several interrupts in one node are answered in order.
    ///
    /// ```no_run
    /// # use wattos_agents::{NodeContext, Command};
    /// # fn f(ctx: &NodeContext) -> wattos_core::Result<()> {
    /// match ctx.interrupt(serde_json::json!({"approve": "send the email?"}))? {
    ///     Command::Approve => { /* send */ }
    ///     Command::Edit(new) => { /* send `new` instead */ }
    ///     Command::Reject(reason) => { /* record why */ }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The interrupt signal itself (propagate it unchanged).
    pub fn interrupt(&self, value: impl Serialize) -> Result<Command> {
        let n = self.env.interrupts_seen.fetch_add(1, Ordering::Relaxed);
        if let Some(cmd) = self.env.resumes.get(n) {
            return Ok(cmd.clone());
        }
        let value = serde_json::to_value(value)
            .map_err(|e| Error::invalid_input(format!("interrupt value is not JSON: {e}")))?;
        *self.env.raised.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
        Err(Error::new(ErrorKind::Conflict, INTERRUPTED))
    }

    /// The latest answer given to this task, if it is being resumed (for nodes that forward resumes,
    /// like subgraphs).
    pub fn latest_resume(&self) -> Option<&Command> {
        self.env.resumes.last()
    }

    /// Raises an interrupt without consuming a resume slot (for subgraphs re-raising an inner interrupt).
    pub(crate) fn raise(&self, value: Value) -> Error {
        *self.env.raised.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
        Error::new(ErrorKind::Conflict, INTERRUPTED)
    }

    pub(crate) fn take_raised(&self) -> Option<Value> {
        self.env
            .raised
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// A graph node.
///
/// Closures `Fn(Arc<S>, NodeContext) -> impl Future<Output = Result<NodeOutput<S>>>` are nodes; implement
/// the trait for reusable nodes (the tool node, subgraphs).
pub trait Node<S: State>: Send + Sync + 'static {
    /// Runs the node on a snapshot of the state.
    fn run(&self, state: Arc<S>, ctx: NodeContext) -> BoxFuture<'static, Result<NodeOutput<S>>>;
}

impl<S, F, Fut> Node<S> for F
where
    S: State,
    F: Fn(Arc<S>, NodeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<NodeOutput<S>>> + Send + 'static,
{
    fn run(&self, state: Arc<S>, ctx: NodeContext) -> BoxFuture<'static, Result<NodeOutput<S>>> {
        Box::pin(self(state, ctx))
    }
}
