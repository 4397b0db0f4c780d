//! The superstep loop: run every task scheduled for a step (in parallel), merge their updates in task
//! order, route, checkpoint, repeat.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wattos_core::checkpoint::{
    Checkpoint, CheckpointId, CheckpointSource, CheckpointWrites, Checkpointer, PendingWrite,
    StateBlob, StepBatch, TaskRecord, ThreadId, WriteKind,
};
use wattos_core::{Error, RequestContext, Result};

use super::builder::Durability;
use super::compiled::{CompiledGraph, Event, GraphInner, RunConfig, RunOutcome, RunStatus, Sink};
use super::node::{
    Command, END, EventSink, Interrupt, InterruptKind, NodeContext, NodeOutput, Route, TaskEnv,
};
use crate::error::GraphError;
use crate::state::{State, decode, encode};

/// How a run begins.
pub(crate) enum Start<S: State> {
    Input(S::Update),
    State(S),
    Resume(Option<Command>),
}

const BEFORE_TASK: &str = "__before__";
const AFTER_TASK: &str = "__after__";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RouteRecord {
    node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input: Option<Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct OutputRecord<S: State> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    update: Option<S::Update>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    goto: Option<Vec<RouteRecord>>,
}

/// [`OutputRecord`] by reference: a pending write encodes the task's update without copying it.
#[derive(Serialize)]
#[serde(bound = "")]
struct OutputRecordRef<'a, S: State> {
    #[serde(skip_serializing_if = "Option::is_none")]
    update: Option<&'a S::Update>,
    #[serde(skip_serializing_if = "Option::is_none")]
    goto: Option<Vec<RouteRecord>>,
}

fn output_to_record<S: State>(out: &NodeOutput<S>) -> Result<Vec<u8>> {
    let goto = match &out.goto {
        None => None,
        Some(routes) => Some(
            routes
                .iter()
                .map(|r| {
                    Ok(RouteRecord {
                        node: r.target().to_owned(),
                        input: match r {
                            Route::Send(_, u) => Some(serde_json::to_value(u).map_err(|e| {
                                Error::internal(format!("cannot encode branch input: {e}"))
                            })?),
                            _ => None,
                        },
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    encode(
        &OutputRecordRef::<S> {
            update: out.update.as_ref(),
            goto,
        },
        "task output",
    )
}

fn record_to_output<S: State>(bytes: &[u8]) -> Result<NodeOutput<S>> {
    let rec: OutputRecord<S> = decode(bytes, "task output")?;
    let goto = match rec.goto {
        None => None,
        Some(routes) => Some(
            routes
                .into_iter()
                .map(|r| route_from_parts(r.node, r.input))
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    Ok(NodeOutput {
        update: rec.update,
        goto,
    })
}

fn route_from_parts<S: State>(node: String, input: Option<Value>) -> Result<Route<S>> {
    Ok(match input {
        Some(v) => Route::Send(
            node,
            serde_json::from_value(v)
                .map_err(|e| GraphError::Corrupt(format!("branch input: {e}")))?,
        ),
        None if node == END => Route::End,
        None => Route::To(node),
    })
}

struct Task<S: State> {
    id: String,
    spec: usize,
    input: Option<S::Update>,
}

fn task_records<S: State>(tasks: &[Task<S>], g: &GraphInner<S>) -> Result<Vec<TaskRecord>> {
    tasks
        .iter()
        .map(|t| {
            Ok(TaskRecord {
                id: t.id.clone(),
                node: g.specs[t.spec].name.to_string(),
                input: match &t.input {
                    Some(u) => Some(serde_json::to_value(u).map_err(|e| {
                        Error::internal(format!("cannot encode branch input: {e}"))
                    })?),
                    None => None,
                },
            })
        })
        .collect()
}

fn tasks_from_records<S: State>(records: &[TaskRecord], g: &GraphInner<S>) -> Result<Vec<Task<S>>> {
    records
        .iter()
        .map(|r| {
            let spec = *g.index.get(&r.node).ok_or_else(|| {
                GraphError::Corrupt(format!("checkpoint names unknown node `{}`", r.node))
            })?;
            let input = match &r.input {
                Some(v) => Some(
                    serde_json::from_value(v.clone())
                        .map_err(|e| GraphError::Corrupt(format!("branch input: {e}")))?,
                ),
                None => None,
            };
            Ok(Task {
                id: r.id.clone(),
                spec,
                input,
            })
        })
        .collect()
}

/// Rebuilds a checkpoint's state, replaying deltas from the nearest full snapshot. Returns the state
/// and how many deltas it replayed.
pub(crate) async fn load_state<S: State>(
    cp: &dyn Checkpointer,
    ctx: &RequestContext,
    checkpoint: &Checkpoint,
) -> Result<(S, u32)> {
    let mut deltas: Vec<Vec<u8>> = Vec::new();
    let mut current = checkpoint.clone();
    let base = loop {
        match &current.state {
            StateBlob::Full(bytes) => break decode::<S>(bytes, "state")?,
            StateBlob::Delta(bytes) => {
                deltas.push(bytes.clone());
                let parent = current.parent.ok_or_else(|| {
                    GraphError::Corrupt(format!("delta checkpoint {} has no parent", current.id))
                })?;
                current = cp
                    .get(ctx, &checkpoint.thread, Some(parent))
                    .await?
                    .ok_or_else(|| {
                        GraphError::Corrupt(format!("parent checkpoint {parent} is missing"))
                    })?;
            }
        }
    };
    let mut state = base;
    let replayed = deltas.len() as u32;
    for bytes in deltas.iter().rev() {
        let updates: Vec<S::Update> = decode(bytes, "state delta")?;
        for u in updates {
            state.apply(u);
        }
    }
    Ok((state, replayed))
}

/// Interrupts raised and not yet answered, from a checkpoint's pending writes.
pub(crate) fn pending_interrupts(writes: &[PendingWrite]) -> Result<Vec<Interrupt>> {
    let mut raised: HashMap<&str, Vec<Interrupt>> = HashMap::new();
    let mut answered: HashMap<&str, usize> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for w in writes {
        match w.kind {
            WriteKind::Interrupt => {
                if !raised.contains_key(w.task_id.as_str()) {
                    order.push(&w.task_id);
                }
                raised
                    .entry(&w.task_id)
                    .or_default()
                    .push(decode(&w.payload, "interrupt")?);
            }
            WriteKind::Resume => *answered.entry(&w.task_id).or_default() += 1,
            WriteKind::Output => {}
        }
    }
    let mut pending = Vec::new();
    for task in order {
        let list = &raised[task];
        let n = answered.get(task).copied().unwrap_or(0);
        if list.len() > n {
            pending.extend(list[n..].iter().cloned());
        }
    }
    Ok(pending)
}

/// What the background writer stores.
enum Entry {
    Writes(CheckpointWrites),
    Checkpoint(Checkpoint),
}

/// One message to the writer: something to store, and/or a request to be told when everything sent
/// so far (this message included) is committed.
struct Msg {
    entry: Option<Entry>,
    ack: Option<tokio::sync::oneshot::Sender<Result<()>>>,
}

/// Entries the writer's queue holds before a sender waits (back-pressure on a run that outpaces its
/// store).
const WRITER_QUEUE: usize = 1024;
/// Most entries group-committed in one [`Checkpointer::put_step`].
const WRITER_MAX_BATCH: usize = 2048;
const WRITER_STOPPED: &str = "checkpoint writer stopped";

fn writer_stopped() -> Error {
    Error::unavailable(WRITER_STOPPED)
}

fn add_entry(batch: &mut StepBatch, entry: Entry) {
    match entry {
        Entry::Checkpoint(c) => batch.checkpoints.push(c),
        Entry::Writes(w) => match batch.writes.last_mut() {
            Some(last) if last.checkpoint == w.checkpoint && last.thread == w.thread => {
                last.writes.extend(w.writes);
            }
            _ => batch.writes.push(w),
        },
    }
}

/// Stores checkpoints and pending writes in the background, in order, with group commit: whatever
/// queued up while one batch was being stored goes into the next [`Checkpointer::put_step`] (one
/// transaction). The queue is bounded ([`WRITER_QUEUE`]): a sender waits while it is full.
struct Writer {
    tx: Option<tokio::sync::mpsc::Sender<Msg>>,
    handle: Option<tokio::task::JoinHandle<Result<()>>>,
}

impl Writer {
    fn spawn(cp: Arc<dyn Checkpointer>, ctx: RequestContext) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(WRITER_QUEUE);
        let handle = tokio::spawn(async move {
            let mut acks = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut batch = StepBatch::default();
                let mut entries = 0;
                let mut next = Some(first);
                while let Some(msg) = next.take() {
                    if let Some(e) = msg.entry {
                        add_entry(&mut batch, e);
                        entries += 1;
                    }
                    acks.extend(msg.ack);
                    if entries < WRITER_MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                let stored = if batch.is_empty() {
                    Ok(())
                } else {
                    cp.put_step(&ctx, batch).await
                };
                match stored {
                    Ok(()) => {
                        for a in acks.drain(..) {
                            a.send(Ok(())).ok();
                        }
                    }
                    Err(e) => {
                        for a in acks.drain(..) {
                            a.send(Err(Error::new(e.kind(), e.message()))).ok();
                        }
                        return Err(e);
                    }
                }
            }
            Ok(())
        });
        Self {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    fn sender(&self) -> Result<tokio::sync::mpsc::Sender<Msg>> {
        self.tx.clone().ok_or_else(writer_stopped)
    }

    /// Waits until everything sent is stored; later sends start a new writer.
    async fn flush(&mut self) -> Result<()> {
        self.tx = None;
        match self.handle.take() {
            Some(h) => h
                .await
                .map_err(|e| Error::internal(format!("checkpoint writer panicked: {e}")))?,
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A dropped run (cancelled stream) still lets queued checkpoints reach storage.
        self.tx = None;
    }
}

struct Run<'a, S: State> {
    writer: Option<Writer>,
    /// Entries were sent to the writer that no caller has waited for yet.
    unacked: bool,
    g: &'a GraphInner<S>,
    ctx: &'a RequestContext,
    persist: Option<(&'a Arc<dyn Checkpointer>, ThreadId)>,
    sink: Option<Sink<S>>,
    state: Arc<S>,
    step: u64,
    steps_run: u64,
    limit: u32,
    /// The run's ceiling and approval list, handed to nodes (and so to subgraphs).
    max_steps: Option<u32>,
    approval_tools: Arc<[String]>,
    tasks: Vec<Task<S>>,
    checkpoint: Option<CheckpointId>,
    since_full: u32,
    /// Outputs of tasks that finished before a stop (resume only).
    done: HashMap<String, NodeOutput<S>>,
    resumes: HashMap<String, Vec<Command>>,
    resumed: bool,
    skip_before: bool,
}

pub(crate) async fn run<S: State>(
    graph: &CompiledGraph<S>,
    ctx: &RequestContext,
    config: &RunConfig,
    start: Start<S>,
    sink: Option<Sink<S>>,
) -> Result<RunOutcome<S>> {
    let g = &*graph.inner;
    let persist = match (
        config
            .checkpointer
            .as_ref()
            .or(g.options.checkpointer.as_ref()),
        &config.thread,
    ) {
        (Some(cp), Some(t)) => Some((cp, t.clone())),
        _ => None,
    };
    let mut run = Run {
        writer: None,
        unacked: false,
        g,
        ctx,
        persist,
        sink,
        state: Arc::new(S::default()),
        step: 0,
        steps_run: 0,
        limit: config.effective_step_limit(g.options.step_limit),
        max_steps: config.max_steps,
        approval_tools: Arc::from(config.approval_required_tools.as_slice()),
        tasks: Vec::new(),
        checkpoint: None,
        since_full: 0,
        done: HashMap::new(),
        resumes: HashMap::new(),
        resumed: false,
        skip_before: false,
    };
    match start {
        Start::Input(update) => {
            if let Some((cp, thread)) = &run.persist
                && let Some(latest) = cp.get(ctx, thread, None).await?
            {
                let (state, _) = load_state::<S>(&***cp, ctx, &latest).await?;
                run.state = Arc::new(state);
                run.step = latest.step + 1;
                run.checkpoint = Some(latest.id);
            }
            Arc::make_mut(&mut run.state).apply(update);
            run.begin().await?;
        }
        Start::State(state) => {
            run.state = Arc::new(state);
            run.begin().await?;
        }
        Start::Resume(command) => {
            if let Some(outcome) = run.restore(command).await? {
                return Ok(outcome);
            }
        }
    }
    let result = run.run_loop().await;
    let flushed = run.flush().await;
    match (result, flushed) {
        // The step saw only that the writer stopped; the writer's own error says why.
        (Err(e), Err(f)) if e.message() == WRITER_STOPPED => Err(f),
        (result, flushed) => {
            let outcome = result?;
            flushed?;
            Ok(outcome)
        }
    }
}

impl<S: State> Run<'_, S> {
    fn emit(&self, event: impl FnOnce() -> Event<S>) {
        if let Some(sink) = &self.sink {
            sink(event());
        }
    }

    /// Schedules START's successors and writes the input checkpoint.
    async fn begin(&mut self) -> Result<()> {
        let routes = self.routes_of(0, None)?;
        self.tasks = self.schedule(routes, self.step);
        self.save(CheckpointSource::Input, None, serde_json::Map::new())
            .await?;
        Ok(())
    }

    /// Loads the latest checkpoint and applies `command` to its pending interrupts. Returns an outcome
    /// when there is nothing left to run.
    async fn restore(&mut self, command: Option<Command>) -> Result<Option<RunOutcome<S>>> {
        let (cp, thread) = self.persist.clone().ok_or(GraphError::NoCheckpointer)?;
        let latest = cp
            .get(self.ctx, &thread, None)
            .await?
            .ok_or_else(|| GraphError::NothingToResume(thread.to_string()))?;
        let (state, replayed) = load_state::<S>(&**cp, self.ctx, &latest).await?;
        self.state = Arc::new(state);
        self.step = latest.step;
        self.since_full = replayed;
        self.checkpoint = Some(latest.id);
        self.tasks = tasks_from_records(&latest.next, self.g)?;
        self.resumed = true;
        if self.tasks.is_empty() {
            return Ok(Some(self.outcome(RunStatus::Completed, Vec::new())));
        }
        let writes = cp.get_writes(self.ctx, &thread, latest.id).await?;
        for w in &writes {
            match w.kind {
                WriteKind::Output => {
                    self.done
                        .insert(w.task_id.clone(), record_to_output(&w.payload)?);
                }
                WriteKind::Resume => self
                    .resumes
                    .entry(w.task_id.clone())
                    .or_default()
                    .push(decode(&w.payload, "resume command")?),
                WriteKind::Interrupt => {}
            }
        }
        let pending = pending_interrupts(&writes)?;
        self.skip_before = !self.done.is_empty()
            || pending.iter().any(|i| i.kind == InterruptKind::Dynamic)
            || writes
                .iter()
                .any(|w| w.task_id == BEFORE_TASK && w.kind == WriteKind::Resume);
        let Some(command) = command else {
            if pending.is_empty() {
                return Ok(None);
            }
            return Ok(Some(self.outcome(RunStatus::Interrupted, pending)));
        };
        let mut answers = Vec::new();
        for interrupt in &pending {
            match interrupt.kind {
                InterruptKind::Before | InterruptKind::After => {
                    match &command {
                        Command::Approve => {}
                        Command::Edit(value) => {
                            let update: S::Update =
                                serde_json::from_value(value.clone()).map_err(|e| {
                                    Error::invalid_field(
                                        "command.edit",
                                        format!("not a valid state update: {e}"),
                                    )
                                })?;
                            Arc::make_mut(&mut self.state).apply(update.clone());
                            self.save(
                                CheckpointSource::Update,
                                Some(vec![update]),
                                Default::default(),
                            )
                            .await?;
                        }
                        Command::Reject(reason) => {
                            let mut meta = serde_json::Map::new();
                            meta.insert("rejected".into(), Value::String(reason.clone()));
                            self.tasks.clear();
                            self.save(CheckpointSource::Update, Some(Vec::new()), meta)
                                .await?;
                            return Ok(Some(
                                self.outcome(RunStatus::Rejected(reason.clone()), Vec::new()),
                            ));
                        }
                    }
                    if interrupt.kind == InterruptKind::Before {
                        self.skip_before = true;
                    }
                }
                InterruptKind::Dynamic => {
                    self.resumes
                        .entry(interrupt.task_id.clone())
                        .or_default()
                        .push(command.clone());
                }
            }
            if !answers
                .iter()
                .any(|w: &PendingWrite| w.task_id == interrupt.task_id)
            {
                answers.push(PendingWrite {
                    task_id: interrupt.task_id.clone(),
                    kind: WriteKind::Resume,
                    payload: encode(&command, "resume command")?,
                });
            }
        }
        if !answers.is_empty()
            && let Some(id) = self.checkpoint
        {
            cp.put_writes(self.ctx, &thread, id, answers).await?;
        }
        Ok(None)
    }

    fn outcome(&self, status: RunStatus, interrupts: Vec<Interrupt>) -> RunOutcome<S> {
        RunOutcome {
            state: (*self.state).clone(),
            status,
            interrupts,
            checkpoint: self.checkpoint,
            steps: self.steps_run,
        }
    }

    /// Writes a checkpoint of the current state and tasks. `delta` is the list of updates since the
    /// previous checkpoint when known (a delta may be stored instead of the whole state).
    async fn save(
        &mut self,
        source: CheckpointSource,
        delta: Option<Vec<S::Update>>,
        metadata: serde_json::Map<String, Value>,
    ) -> Result<()> {
        let Some((cp, thread)) = self.persist.clone() else {
            return Ok(());
        };
        let use_delta = delta.is_some()
            && self.checkpoint.is_some()
            && self.since_full + 1 < self.g.options.full_snapshot_every;
        let blob = match delta {
            Some(updates) if use_delta => {
                self.since_full += 1;
                StateBlob::Delta(encode(&updates, "state delta")?)
            }
            _ => {
                self.since_full = 0;
                StateBlob::Full(encode(&*self.state, "state")?)
            }
        };
        let mut c = Checkpoint::new(thread.clone(), self.checkpoint, self.step, blob);
        c.next = task_records(&self.tasks, self.g)?;
        c.source = source;
        c.metadata = metadata;
        let id = c.id;
        let step = c.step;
        if self.g.options.durability == Durability::Async && source == CheckpointSource::Loop {
            self.enqueue(cp, Entry::Checkpoint(c)).await?;
        } else {
            self.store(cp, Entry::Checkpoint(c)).await?;
        }
        self.checkpoint = Some(id);
        self.emit(|| Event::Checkpoint { step, id });
        Ok(())
    }

    /// The running writer's queue, starting a writer when there is none.
    fn writer_sender(
        &mut self,
        cp: &Arc<dyn Checkpointer>,
    ) -> Result<tokio::sync::mpsc::Sender<Msg>> {
        let ctx = self.ctx;
        self.writer
            .get_or_insert_with(|| Writer::spawn(cp.clone(), ctx.clone()))
            .sender()
    }

    /// Queues `entry` for the writer without waiting for it to be stored (asynchronous durability).
    async fn enqueue(&mut self, cp: &Arc<dyn Checkpointer>, entry: Entry) -> Result<()> {
        let tx = self.writer_sender(cp)?;
        self.unacked = true;
        tx.send(Msg {
            entry: Some(entry),
            ack: None,
        })
        .await
        .map_err(|_| writer_stopped())
    }

    /// Stores `entry` and returns once it is committed, together with everything queued before it
    /// (one transaction when the writer has not picked those up yet).
    async fn store(&mut self, cp: &Arc<dyn Checkpointer>, entry: Entry) -> Result<()> {
        if !self.unacked {
            // Nothing in flight: store directly, without a hop through the writer task.
            let mut batch = StepBatch::default();
            add_entry(&mut batch, entry);
            return cp.put_step(self.ctx, batch).await;
        }
        let tx = self.writer_sender(cp)?;
        let (ack, done) = tokio::sync::oneshot::channel();
        tx.send(Msg {
            entry: Some(entry),
            ack: Some(ack),
        })
        .await
        .map_err(|_| writer_stopped())?;
        match done.await {
            Ok(stored) => {
                stored?;
                self.unacked = false;
                Ok(())
            }
            // The writer failed before it got to this entry: its error comes from `flush`.
            Err(_) => self.flush().await.and(Err(writer_stopped())),
        }
    }

    async fn flush(&mut self) -> Result<()> {
        self.unacked = false;
        match self.writer.take() {
            Some(mut w) => w.flush().await,
            None => Ok(()),
        }
    }

    async fn write(&mut self, writes: Vec<PendingWrite>) -> Result<()> {
        if let (Some((cp, thread)), Some(id)) = (self.persist.clone(), self.checkpoint) {
            let entry = Entry::Writes(CheckpointWrites {
                thread,
                checkpoint: id,
                writes,
            });
            self.store(cp, entry).await?;
        }
        Ok(())
    }

    /// Where a node's output leads: its `goto`, or its edges and routers on the current state.
    fn routes_of(&self, spec: usize, goto: Option<Vec<Route<S>>>) -> Result<Vec<Route<S>>> {
        let s = &self.g.specs[spec];
        if let Some(goto) = goto {
            for r in &goto {
                let t = r.target();
                let declared = s.destinations.contains(t)
                    || s.edges.iter().any(|e| e == t)
                    || s.branches.iter().any(|b| b.targets.contains(t));
                if !declared {
                    return Err(GraphError::UndeclaredRoute {
                        node: s.name.to_string(),
                        target: t.to_owned(),
                    }
                    .into());
                }
            }
            return Ok(goto);
        }
        let mut routes: Vec<Route<S>> = s.edges.iter().map(|e| Route::to(e.as_str())).collect();
        for b in &s.branches {
            for r in (b.router)(&self.state) {
                if !b.targets.contains(r.target()) {
                    return Err(GraphError::UndeclaredRoute {
                        node: s.name.to_string(),
                        target: r.target().to_owned(),
                    }
                    .into());
                }
                routes.push(r);
            }
        }
        Ok(routes)
    }

    /// Turns routes into the next step's tasks: plain targets once each, sends as their own tasks.
    fn schedule(&self, routes: Vec<Route<S>>, step: u64) -> Vec<Task<S>> {
        let mut seen: HashSet<usize> = HashSet::new();
        let mut tasks = Vec::with_capacity(routes.len());
        for r in routes {
            let (name, input) = match r {
                Route::End => continue,
                Route::To(n) => (n, None),
                Route::Send(n, u) => (n, Some(u)),
            };
            let Some(&spec) = self.g.index.get(&name) else {
                continue;
            };
            if input.is_none() && !seen.insert(spec) {
                continue;
            }
            tasks.push(Task {
                id: format!("{step}:{}", tasks.len()),
                spec,
                input,
            });
        }
        tasks
    }

    fn task_context(&self, task: &Task<S>) -> NodeContext {
        let spec = &self.g.specs[task.spec];
        let sink: Option<EventSink> = self.sink.as_ref().map(|sink| {
            let sink = sink.clone();
            let node = spec.name.to_string();
            let task_id = task.id.clone();
            let f: EventSink = Arc::new(move |event| {
                sink(Event::Node {
                    node: node.clone(),
                    task_id: task_id.clone(),
                    event,
                });
            });
            f
        });
        let (thread, checkpointer) = match &self.persist {
            Some((cp, t)) => (Some(t.clone()), Some((*cp).clone())),
            None => (None, None),
        };
        let namespace = match (&thread, self.checkpoint) {
            (Some(t), Some(c)) => format!("{t}/{c}/{}", task.id),
            _ => String::new(),
        };
        NodeContext {
            env: Arc::new(TaskEnv {
                request: self.ctx.clone(),
                node: spec.name.clone(),
                task_id: task.id.clone(),
                step: self.step,
                thread,
                namespace,
                checkpointer,
                sink,
                resumes: self.resumes.get(&task.id).cloned().unwrap_or_default(),
                resumed: self.resumed,
                interrupts_seen: AtomicUsize::new(0),
                raised: Mutex::new(None),
                max_steps: self.max_steps,
                approval_tools: self.approval_tools.clone(),
            }),
        }
    }

    fn task_state(&self, task: &Task<S>) -> Arc<S> {
        match &task.input {
            None => self.state.clone(),
            Some(u) => {
                let mut s = (*self.state).clone();
                s.apply(u.clone());
                Arc::new(s)
            }
        }
    }

    async fn run_loop(&mut self) -> Result<RunOutcome<S>> {
        loop {
            if self.tasks.is_empty() {
                return Ok(self.outcome(RunStatus::Completed, Vec::new()));
            }
            if self.steps_run >= u64::from(self.limit) {
                return Err(GraphError::StepLimit { limit: self.limit }.into());
            }
            self.ctx.check_deadline()?;
            if !self.skip_before
                && let Some(t) = self
                    .tasks
                    .iter()
                    .find(|t| self.g.specs[t.spec].interrupt_before)
            {
                return self.breakpoint(InterruptKind::Before, t.spec).await;
            }
            self.skip_before = false;

            // Run the tasks that have no saved output, all at once.
            let pending: Vec<usize> = (0..self.tasks.len())
                .filter(|&i| !self.done.contains_key(&self.tasks[i].id))
                .collect();
            let parallel_persist = pending.len() > 1 && self.persist.is_some();
            // In a parallel step, each finished task's output goes to the writer at once (so a crash
            // or a failing sibling does not make it run again); it is committed with whatever else is
            // queued, at the latest together with the step's checkpoint.
            let branch_writer = match (&self.persist, self.checkpoint) {
                (Some((cp, thread)), Some(checkpoint)) if parallel_persist => {
                    let cp = (*cp).clone();
                    let thread = thread.clone();
                    self.unacked = true;
                    Some((self.writer_sender(&cp)?, thread, checkpoint))
                }
                _ => None,
            };
            let mut futures = Vec::with_capacity(pending.len());
            for &i in &pending {
                let task = &self.tasks[i];
                let node = self.g.specs[task.spec]
                    .node
                    .clone()
                    .ok_or_else(|| Error::internal("START cannot run"))?;
                let nctx = self.task_context(task);
                let fut = node.run(self.task_state(task), nctx.clone());
                let saver = branch_writer
                    .as_ref()
                    .map(|(tx, t, c)| (tx.clone(), t.clone(), *c, task.id.clone()));
                futures.push(async move {
                    let out = fut.await;
                    if let (Ok(o), Some((tx, thread, checkpoint, task_id))) = (&out, saver) {
                        let writes = vec![PendingWrite {
                            task_id,
                            kind: WriteKind::Output,
                            payload: output_to_record(o)?,
                        }];
                        let entry = Entry::Writes(CheckpointWrites {
                            thread,
                            checkpoint,
                            writes,
                        });
                        tx.send(Msg {
                            entry: Some(entry),
                            ack: None,
                        })
                        .await
                        .map_err(|_| writer_stopped())?;
                    }
                    Ok::<_, Error>((nctx, out))
                });
            }
            let joined = futures::future::join_all(futures);
            let results = match self.ctx.remaining() {
                Some(left) => tokio::time::timeout(left, joined)
                    .await
                    .map_err(|_| Error::timeout("graph step", left))?,
                None => joined.await,
            };

            let mut interrupts = Vec::new();
            let mut failure = None;
            let mut fresh: Vec<(usize, NodeOutput<S>)> = Vec::with_capacity(results.len());
            for (&i, result) in pending.iter().zip(results) {
                let (nctx, out) = result?;
                match out {
                    Ok(o) => fresh.push((i, o)),
                    Err(e) => match nctx.take_raised() {
                        Some(value) => interrupts.push(Interrupt {
                            task_id: self.tasks[i].id.clone(),
                            node: self.g.specs[self.tasks[i].spec].name.to_string(),
                            kind: InterruptKind::Dynamic,
                            value,
                        }),
                        None => {
                            if failure.is_none() {
                                failure = Some(e);
                            }
                        }
                    },
                }
            }
            if failure.is_some() || !interrupts.is_empty() {
                let mut writes = Vec::new();
                if !parallel_persist {
                    for (i, o) in &fresh {
                        writes.push(PendingWrite {
                            task_id: self.tasks[*i].id.clone(),
                            kind: WriteKind::Output,
                            payload: output_to_record(o)?,
                        });
                    }
                }
                for it in &interrupts {
                    writes.push(PendingWrite {
                        task_id: it.task_id.clone(),
                        kind: WriteKind::Interrupt,
                        payload: encode(it, "interrupt")?,
                    });
                }
                if !writes.is_empty() {
                    self.write(writes).await?;
                }
                if let Some(e) = failure {
                    return Err(e);
                }
                return Ok(self.outcome(RunStatus::Interrupted, interrupts));
            }

            // Merge in task order: saved outputs and fresh ones.
            let mut outputs: Vec<Option<NodeOutput<S>>> =
                (0..self.tasks.len()).map(|_| None).collect();
            for (i, o) in fresh {
                outputs[i] = Some(o);
            }
            for (i, t) in self.tasks.iter().enumerate() {
                if outputs[i].is_none() {
                    outputs[i] = self.done.remove(&t.id);
                }
            }
            self.done.clear();
            self.resumes.clear();
            self.resumed = false;
            let keep_updates = self.persist.is_some();
            let mut step_updates = Vec::new();
            let mut gotos = Vec::with_capacity(outputs.len());
            for (i, o) in outputs.into_iter().enumerate() {
                let o = o.ok_or_else(|| Error::internal("task output missing"))?;
                if let Some(u) = o.update {
                    if self.sink.is_some() {
                        let node = self.g.specs[self.tasks[i].spec].name.to_string();
                        let (step, update) = (self.step, u.clone());
                        self.emit(|| Event::Update { step, node, update });
                    }
                    if keep_updates {
                        step_updates.push(u.clone());
                    }
                    Arc::make_mut(&mut self.state).apply(u);
                }
                gotos.push(o.goto);
            }
            let mut routes = Vec::new();
            let mut after = None;
            for (i, goto) in gotos.into_iter().enumerate() {
                let spec = self.tasks[i].spec;
                routes.extend(self.routes_of(spec, goto)?);
                if after.is_none() && self.g.specs[spec].interrupt_after {
                    after = Some(spec);
                }
            }
            let (step, state) = (self.step, self.state.clone());
            self.emit(|| Event::Values { step, state });
            self.step += 1;
            self.steps_run += 1;
            self.tasks = self.schedule(routes, self.step);
            self.save(
                CheckpointSource::Loop,
                Some(step_updates),
                Default::default(),
            )
            .await?;
            if let Some(spec) = after
                && !self.tasks.is_empty()
            {
                return self.breakpoint(InterruptKind::After, spec).await;
            }
        }
    }

    async fn breakpoint(&mut self, kind: InterruptKind, spec: usize) -> Result<RunOutcome<S>> {
        if self.persist.is_none() {
            return Err(GraphError::NoCheckpointer.into());
        }
        let task_id = if kind == InterruptKind::Before {
            BEFORE_TASK
        } else {
            AFTER_TASK
        };
        let interrupt = Interrupt {
            task_id: task_id.to_owned(),
            node: self.g.specs[spec].name.to_string(),
            kind,
            value: Value::Null,
        };
        self.write(vec![PendingWrite {
            task_id: task_id.to_owned(),
            kind: WriteKind::Interrupt,
            payload: encode(&interrupt, "interrupt")?,
        }])
        .await?;
        Ok(self.outcome(RunStatus::Interrupted, vec![interrupt]))
    }
}
