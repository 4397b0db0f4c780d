//! [`StateGraph`]: declare nodes and edges, then [`StateGraph::compile`] validates the whole graph.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use wattos_core::Result;
use wattos_core::checkpoint::Checkpointer;

use super::compiled::CompiledGraph;
use super::node::{END, Node, NodeContext, NodeOutput, Route, Routes, START};
use crate::error::GraphError;
use crate::state::State;

pub(crate) type RouterFn<S> = Arc<dyn Fn(&S) -> Vec<Route<S>> + Send + Sync>;

pub(crate) struct Branch<S: State> {
    pub(crate) router: RouterFn<S>,
    pub(crate) targets: HashSet<String>,
}

/// A node as compiled: the node and everything that decides what follows it.
pub(crate) struct NodeSpec<S: State> {
    pub(crate) name: Arc<str>,
    pub(crate) node: Option<Arc<dyn Node<S>>>,
    pub(crate) edges: Vec<String>,
    pub(crate) branches: Vec<Branch<S>>,
    /// Targets a `goto` may name.
    pub(crate) destinations: HashSet<String>,
    pub(crate) interrupt_before: bool,
    pub(crate) interrupt_after: bool,
}

/// Options fixed when a graph is compiled.
#[derive(Clone)]
pub struct CompileOptions {
    pub(crate) checkpointer: Option<Arc<dyn Checkpointer>>,
    pub(crate) interrupt_before: Vec<String>,
    pub(crate) interrupt_after: Vec<String>,
    pub(crate) step_limit: u32,
    pub(crate) full_snapshot_every: u32,
    pub(crate) durability: Durability,
}

/// When checkpoints reach the checkpointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Each step waits for its checkpoint to be stored before the next step starts: after a crash,
    /// no completed step runs again. The default.
    #[default]
    Sync,
    /// Checkpoints are handed to a background writer that stores them in order, batching those that
    /// queue up (one round trip for many steps); the run waits for the writer only before it returns
    /// (finished, interrupted or failed). Much lower per-step overhead; after a crash, the steps whose
    /// checkpoints were still queued run again.
    Async,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            checkpointer: None,
            interrupt_before: Vec::new(),
            interrupt_after: Vec::new(),
            step_limit: 100,
            full_snapshot_every: 16,
            durability: Durability::Sync,
        }
    }
}

impl std::fmt::Debug for CompileOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileOptions")
            .field("checkpointer", &self.checkpointer.is_some())
            .field("interrupt_before", &self.interrupt_before)
            .field("interrupt_after", &self.interrupt_after)
            .field("step_limit", &self.step_limit)
            .field("full_snapshot_every", &self.full_snapshot_every)
            .field("durability", &self.durability)
            .finish()
    }
}

impl CompileOptions {
    /// Default options: no checkpointer, no breakpoints, 100 steps per run, a full state snapshot every
    /// 16 checkpoints (deltas in between).
    pub fn new() -> Self {
        Self::default()
    }

    /// Persists a checkpoint after every step (needed for interrupts, resume and history).
    #[must_use]
    pub fn with_checkpointer(mut self, checkpointer: Arc<dyn Checkpointer>) -> Self {
        self.checkpointer = Some(checkpointer);
        self
    }

    /// Stops before these nodes run, waiting for a [`crate::Command`].
    #[must_use]
    pub fn interrupt_before<I: IntoIterator<Item = T>, T: Into<String>>(
        mut self,
        nodes: I,
    ) -> Self {
        self.interrupt_before
            .extend(nodes.into_iter().map(Into::into));
        self
    }

    /// Stops after these nodes ran, waiting for a [`crate::Command`].
    #[must_use]
    pub fn interrupt_after<I: IntoIterator<Item = T>, T: Into<String>>(mut self, nodes: I) -> Self {
        self.interrupt_after
            .extend(nodes.into_iter().map(Into::into));
        self
    }

    /// The default maximum number of supersteps per run (each run may override it).
    #[must_use]
    pub fn with_step_limit(mut self, limit: u32) -> Self {
        self.step_limit = limit.max(1);
        self
    }

    /// When checkpoints are stored (see [`Durability`]).
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Writes the whole state every `n` checkpoints and only the step's updates in between (`1` writes
    /// the whole state every time). Deltas keep writes small for long conversations; resume replays at
    /// most `n - 1` deltas.
    #[must_use]
    pub fn with_full_snapshot_every(mut self, n: u32) -> Self {
        self.full_snapshot_every = n.max(1);
        self
    }
}

/// A graph under construction over state `S`.
///
/// ```
/// use std::sync::Arc;
/// use wattos_agents::{graph_state, CompileOptions, NodeContext, NodeOutput, StateGraph, Sum, END, START};
///
/// graph_state! {
///     /// A counter.
///     pub struct Count / CountUpdate { pub n: u32 => Sum }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let graph = StateGraph::<Count>::new()
///     .add_node("inc", |_s: Arc<Count>, _ctx: NodeContext| async move {
///         Ok(NodeOutput::update(CountUpdate::default().n(1)))
///     })
///     .add_edge(START, "inc")
///     .add_conditional_edges("inc", |s: &Count| if s.n < 3 { "inc" } else { END }, ["inc", END])
///     .compile(CompileOptions::new())?;
/// let ctx = wattos_core::RequestContext::system(wattos_core::TenantId::new("acme")?);
/// let out = graph.invoke(&ctx, &Default::default(), CountUpdate::default()).await?;
/// assert_eq!(out.state.n, 3);
/// # Ok::<_, wattos_core::Error>(())
/// # }).unwrap();
/// ```
pub struct StateGraph<S: State> {
    nodes: Vec<(String, Arc<dyn Node<S>>)>,
    edges: Vec<(String, String)>,
    branches: Vec<(String, Branch<S>)>,
    destinations: Vec<(String, Vec<String>)>,
}

impl<S: State> Default for StateGraph<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: State> std::fmt::Debug for StateGraph<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateGraph")
            .field(
                "nodes",
                &self.nodes.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("edges", &self.edges)
            .finish_non_exhaustive()
    }
}

impl<S: State> StateGraph<S> {
    /// An empty graph.
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            edges: Vec::new(),
            branches: Vec::new(),
            destinations: Vec::new(),
        }
    }

    /// Adds a node from an async closure.
    #[must_use]
    pub fn add_node<F, Fut>(self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(Arc<S>, NodeContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<NodeOutput<S>>> + Send + 'static,
    {
        self.add_node_impl(name, f)
    }

    /// Adds a node implementing [`Node`] (a tool node, a subgraph, ...).
    #[must_use]
    pub fn add_node_impl(mut self, name: impl Into<String>, node: impl Node<S>) -> Self {
        self.nodes.push((name.into(), Arc::new(node)));
        self
    }

    /// Adds a node from a boxed [`Node`].
    #[must_use]
    pub fn add_node_arc(mut self, name: impl Into<String>, node: Arc<dyn Node<S>>) -> Self {
        self.nodes.push((name.into(), node));
        self
    }

    /// Always goes from `from` to `to` ([`START`] and [`END`] allowed). Several edges out of a node fan
    /// out: the targets run in parallel in the next step.
    #[must_use]
    pub fn add_edge(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.edges.push((from.into(), to.into()));
        self
    }

    /// After `from`, asks `router` (on the state after the step) where to go; it may return one target,
    /// several, or [`Route::Send`] branches. `targets` lists every target it may return (for
    /// validation).
    #[must_use]
    pub fn add_conditional_edges<F, R, I, T>(
        mut self,
        from: impl Into<String>,
        router: F,
        targets: I,
    ) -> Self
    where
        F: Fn(&S) -> R + Send + Sync + 'static,
        R: Into<Routes<S>>,
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let router: RouterFn<S> = Arc::new(move |s: &S| router(s).into().0);
        self.branches.push((
            from.into(),
            Branch {
                router,
                targets: targets.into_iter().map(Into::into).collect(),
            },
        ));
        self
    }

    /// Declares the targets a node may name in [`NodeOutput::goto`] (so validation knows the graph's
    /// shape; a node with destinations needs no outgoing edge).
    #[must_use]
    pub fn add_destinations<I: IntoIterator<Item = T>, T: Into<String>>(
        mut self,
        node: impl Into<String>,
        targets: I,
    ) -> Self {
        self.destinations
            .push((node.into(), targets.into_iter().map(Into::into).collect()));
        self
    }

    /// Validates and freezes the graph.
    ///
    /// # Errors
    /// [`GraphError::Invalid`] listing every problem: duplicate or reserved names, edges to or from
    /// unknown nodes, nodes unreachable from [`START`], nodes without a way out, nodes with no path to
    /// [`END`], breakpoints on unknown nodes.
    pub fn compile(self, options: CompileOptions) -> Result<CompiledGraph<S>> {
        let mut problems = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut specs: Vec<NodeSpec<S>> = vec![NodeSpec {
            name: Arc::from(START),
            node: None,
            edges: Vec::new(),
            branches: Vec::new(),
            destinations: HashSet::new(),
            interrupt_before: false,
            interrupt_after: false,
        }];
        index.insert(START.to_owned(), 0);
        for (name, node) in self.nodes {
            if name == START || name == END || name.is_empty() {
                problems.push(format!("`{name}` is a reserved or empty node name"));
                continue;
            }
            if index.contains_key(&name) {
                problems.push(format!("node `{name}` is added twice"));
                continue;
            }
            index.insert(name.clone(), specs.len());
            specs.push(NodeSpec {
                name: Arc::from(name.as_str()),
                node: Some(node),
                edges: Vec::new(),
                branches: Vec::new(),
                destinations: HashSet::new(),
                interrupt_before: false,
                interrupt_after: false,
            });
        }
        let known = |n: &str| n == END || index.contains_key(n);
        for (from, to) in self.edges {
            if from == END {
                problems.push(format!("edge `{from}` -> `{to}` leaves END"));
            } else if !index.contains_key(&from) {
                problems.push(format!("edge `{from}` -> `{to}`: no node `{from}`"));
            } else if to == START {
                problems.push(format!("edge `{from}` -> `{to}` goes back to START"));
            } else if !known(&to) {
                problems.push(format!("edge `{from}` -> `{to}`: no node `{to}`"));
            } else {
                specs[index[&from]].edges.push(to);
            }
        }
        for (from, branch) in self.branches {
            let Some(&i) = index.get(&from) else {
                problems.push(format!("conditional edge from unknown node `{from}`"));
                continue;
            };
            if branch.targets.is_empty() {
                problems.push(format!(
                    "conditional edge from `{from}` declares no targets"
                ));
            }
            for t in &branch.targets {
                if !known(t) {
                    problems.push(format!(
                        "conditional edge from `{from}` targets unknown node `{t}`"
                    ));
                }
            }
            specs[i].branches.push(branch);
        }
        for (from, targets) in self.destinations {
            let Some(&i) = index.get(&from) else {
                problems.push(format!("destinations declared for unknown node `{from}`"));
                continue;
            };
            for t in targets {
                if known(&t) {
                    specs[i].destinations.insert(t);
                } else {
                    problems.push(format!("node `{from}` declares unknown destination `{t}`"));
                }
            }
        }
        for (names, before) in [
            (&options.interrupt_before, true),
            (&options.interrupt_after, false),
        ] {
            for n in names {
                match index.get(n) {
                    Some(&i) if i > 0 => {
                        if before {
                            specs[i].interrupt_before = true;
                        } else {
                            specs[i].interrupt_after = true;
                        }
                    }
                    _ => problems.push(format!("breakpoint on unknown node `{n}`")),
                }
            }
        }
        check_shape(&specs, &index, &mut problems);
        if !problems.is_empty() {
            return Err(GraphError::Invalid(problems).into());
        }
        Ok(CompiledGraph::new(specs, index, options))
    }
}

/// All the nodes a spec may lead to.
fn successors<S: State>(spec: &NodeSpec<S>) -> impl Iterator<Item = &str> {
    spec.edges
        .iter()
        .map(String::as_str)
        .chain(
            spec.branches
                .iter()
                .flat_map(|b| b.targets.iter().map(String::as_str)),
        )
        .chain(spec.destinations.iter().map(String::as_str))
}

fn check_shape<S: State>(
    specs: &[NodeSpec<S>],
    index: &HashMap<String, usize>,
    problems: &mut Vec<String>,
) {
    if successors(&specs[0]).next().is_none() {
        problems.push("START has no outgoing edge".into());
        return;
    }
    // Forward reachability from START.
    let mut reachable = vec![false; specs.len()];
    let mut queue = VecDeque::from([0usize]);
    reachable[0] = true;
    let mut reaches_end_directly = vec![false; specs.len()];
    while let Some(i) = queue.pop_front() {
        for t in successors(&specs[i]) {
            if t == END {
                reaches_end_directly[i] = true;
            } else if let Some(&j) = index.get(t)
                && !reachable[j]
            {
                reachable[j] = true;
                queue.push_back(j);
            }
        }
    }
    for (i, spec) in specs.iter().enumerate().skip(1) {
        if !reachable[i] {
            problems.push(format!("node `{}` is unreachable from START", spec.name));
        } else if successors(spec).next().is_none() {
            problems.push(format!(
                "node `{}` has no outgoing edge (add an edge to END if it finishes the run)",
                spec.name
            ));
        }
    }
    // Backward: which nodes can reach END.
    let mut can_end = reaches_end_directly;
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..specs.len() {
            if !can_end[i]
                && successors(&specs[i]).any(|t| index.get(t).is_some_and(|&j| can_end[j]))
            {
                can_end[i] = true;
                changed = true;
            }
        }
    }
    for (i, spec) in specs.iter().enumerate() {
        if reachable[i] && !can_end[i] && successors(spec).next().is_some() {
            problems.push(format!("node `{}` has no path to END", spec.name));
        }
    }
}
