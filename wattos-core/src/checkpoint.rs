//! The checkpointer seam: durable graph state after every step.
//!
//! A graph executor (in `wattos-agents`) writes one [`Checkpoint`] per superstep: the state (whole or as
//! the delta of updates since its parent), the tasks still to run and where it came from. Tasks that
//! finish inside a step that does not complete (a crash, an interrupt, a failing sibling) are saved as
//! [`PendingWrite`]s against the step's checkpoint, so that a resumed run does not repeat them.
//!
//! Every call takes the [`RequestContext`]: implementations key everything by the caller's tenant, so one
//! tenant can never read or overwrite another tenant's thread even when thread ids collide.
//!
//! ```
//! use async_trait::async_trait;
//! use wattos_core::checkpoint::{Checkpoint, CheckpointId, Checkpointer, PendingWrite, StateBlob, ThreadId};
//! use wattos_core::{RequestContext, Result, TenantId};
//!
//! /// Keeps nothing: every read misses. (A real implementation stores by `(tenant, thread)`.)
//! struct Forgetful;
//!
//! #[async_trait]
//! impl Checkpointer for Forgetful {
//!     async fn put(&self, _: &RequestContext, _: Checkpoint) -> Result<()> { Ok(()) }
//!     async fn put_writes(&self, _: &RequestContext, _: &ThreadId, _: CheckpointId, _: Vec<PendingWrite>) -> Result<()> { Ok(()) }
//!     async fn get(&self, _: &RequestContext, _: &ThreadId, _: Option<CheckpointId>) -> Result<Option<Checkpoint>> { Ok(None) }
//!     async fn get_writes(&self, _: &RequestContext, _: &ThreadId, _: CheckpointId) -> Result<Vec<PendingWrite>> { Ok(vec![]) }
//!     async fn list(&self, _: &RequestContext, _: &ThreadId, _: usize) -> Result<Vec<Checkpoint>> { Ok(vec![]) }
//!     async fn delete_thread(&self, _: &RequestContext, _: &ThreadId) -> Result<()> { Ok(()) }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let ctx = RequestContext::system(TenantId::new("acme")?);
//! let thread = ThreadId::new("conversation-1")?;
//! let cp = Checkpoint::new(thread.clone(), None, 0, StateBlob::Full(b"{}".to_vec()));
//! Forgetful.put(&ctx, cp).await?;
//! assert!(Forgetful.get(&ctx, &thread, None).await?.is_none());
//! # Ok::<_, wattos_core::Error>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::RequestContext;
use crate::error::{Error, Result};

/// Identifies a conversation / run history within a tenant. 1 to 256 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ThreadId(Arc<str>);

impl ThreadId {
    /// Validates and wraps a thread id.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] when empty, longer than 256 bytes or containing control characters.
    pub fn new(id: impl AsRef<str>) -> Result<Self> {
        let id = id.as_ref();
        if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
            return Err(Error::invalid_field(
                "thread_id",
                "must be 1 to 256 bytes without control characters",
            ));
        }
        Ok(Self(Arc::from(id)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one checkpoint. Time-ordered (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CheckpointId(pub Uuid);

impl CheckpointId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for CheckpointId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|e| Error::invalid_field("checkpoint_id", format!("not a UUID: {e}")))
    }
}

/// The serialized graph state of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum StateBlob {
    /// The whole state as JSON.
    Full(Vec<u8>),
    /// A JSON array of the state updates applied on top of the parent checkpoint's state, in order.
    Delta(Vec<u8>),
}

impl StateBlob {
    /// The encoded bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Full(b) | Self::Delta(b) => b,
        }
    }

    /// Whether this is a whole state.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }
}

/// A task scheduled for the next step: a node, optionally with a private input (a fan-out branch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Stable id of the task within its thread (`<step>:<index>`).
    pub id: String,
    /// The node to run.
    pub node: String,
    /// Branch input (JSON of a state update overlaid on the state for this task only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
}

/// Why a checkpoint was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointSource {
    /// The input of a new run.
    Input,
    /// The end of a step.
    #[default]
    Loop,
    /// A manual state update (an edit on resume, `update_state`).
    Update,
    /// A copy of an earlier checkpoint, branching history.
    Fork,
}

/// One saved point of a thread's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// This checkpoint.
    pub id: CheckpointId,
    /// Its thread.
    pub thread: ThreadId,
    /// The checkpoint this one follows (`None` for the first of a thread).
    pub parent: Option<CheckpointId>,
    /// Superstep number: how many steps ran before this state.
    pub step: u64,
    /// The state.
    pub state: StateBlob,
    /// Tasks to run next; empty when the run finished.
    pub next: Vec<TaskRecord>,
    /// Why it was written.
    pub source: CheckpointSource,
    /// Free-form metadata (run status, rejection reasons, ...), JSON object.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl Checkpoint {
    /// A loop checkpoint with a fresh id, no next tasks and no metadata.
    pub fn new(
        thread: ThreadId,
        parent: Option<CheckpointId>,
        step: u64,
        state: StateBlob,
    ) -> Self {
        Self {
            id: CheckpointId::generate(),
            thread,
            parent,
            step,
            state,
            next: Vec::new(),
            source: CheckpointSource::Loop,
            metadata: serde_json::Map::new(),
        }
    }
}

/// What a [`PendingWrite`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteKind {
    /// A task finished: its output (update and routes).
    Output,
    /// A task (or a static breakpoint) interrupted the run, waiting for a human.
    Interrupt,
    /// A human's answer to an interrupt of this task.
    Resume,
}

impl WriteKind {
    /// The stable lowercase name (used as a database value).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Output => "output",
            Self::Interrupt => "interrupt",
            Self::Resume => "resume",
        }
    }

    /// Parses [`WriteKind::as_str`].
    ///
    /// # Errors
    /// [`crate::ErrorKind::Internal`] for an unknown name (corrupt storage).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "output" => Ok(Self::Output),
            "interrupt" => Ok(Self::Interrupt),
            "resume" => Ok(Self::Resume),
            other => Err(Error::internal(format!(
                "unknown pending write kind `{other}`"
            ))),
        }
    }
}

/// A write made during the step that follows a checkpoint, saved before the step completes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingWrite {
    /// The task ([`TaskRecord::id`]) that wrote it.
    pub task_id: String,
    /// What it is.
    pub kind: WriteKind,
    /// JSON payload, defined by the executor.
    pub payload: Vec<u8>,
}

/// The pending writes of one checkpoint, as part of a [`StepBatch`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointWrites {
    /// The thread of the checkpoint.
    pub thread: ThreadId,
    /// The checkpoint the writes belong to (the one whose `next` tasks wrote them).
    pub checkpoint: CheckpointId,
    /// The writes, in order.
    pub writes: Vec<PendingWrite>,
}

/// Pending writes and checkpoints that reach storage together: what a graph executor stores for one
/// superstep (the branches' outputs and the checkpoint that follows), or for several steps at once
/// when it batches ([`Checkpointer::put_step`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepBatch {
    /// Pending writes, in order (stored before the checkpoints of the batch).
    pub writes: Vec<CheckpointWrites>,
    /// Checkpoints, in order.
    pub checkpoints: Vec<Checkpoint>,
}

impl StepBatch {
    /// Nothing to store.
    pub fn is_empty(&self) -> bool {
        self.checkpoints.is_empty() && self.writes.iter().all(|w| w.writes.is_empty())
    }

    /// How many pending writes the batch holds.
    pub fn write_count(&self) -> usize {
        self.writes.iter().map(|w| w.writes.len()).sum()
    }
}

/// Durable storage for graph checkpoints, scoped by the caller's tenant.
///
/// Implementations must:
/// * key every row by `ctx.tenant()` and the thread: no call may see another tenant's data;
/// * return the most recently *written* checkpoint of a thread from `get(.., None)` (insertion order,
///   not step order: forks and edits append);
/// * keep pending writes in insertion order; writing the same `(task, kind)` twice keeps both.
#[async_trait]
pub trait Checkpointer: Send + Sync {
    /// Stores a checkpoint.
    ///
    /// # Errors
    /// Storage failures ([`crate::ErrorKind::Unavailable`] when the backend cannot be reached).
    async fn put(&self, ctx: &RequestContext, checkpoint: Checkpoint) -> Result<()>;

    /// Stores several checkpoints in order (one round trip / transaction where the backend allows).
    /// The default calls [`Checkpointer::put`] for each.
    ///
    /// # Errors
    /// Storage failures; on error, a prefix of the batch may have been stored.
    async fn put_batch(&self, ctx: &RequestContext, checkpoints: Vec<Checkpoint>) -> Result<()> {
        for c in checkpoints {
            self.put(ctx, c).await?;
        }
        Ok(())
    }

    /// Appends pending writes to a stored checkpoint.
    ///
    /// # Errors
    /// Storage failures.
    async fn put_writes(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        checkpoint: CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<()>;

    /// Stores a batch of pending writes and checkpoints, all or nothing where the backend allows (one
    /// transaction: one commit on SQLite, one statement and round trip on Postgres). Graph executors
    /// call this once per superstep (or once per group of steps with asynchronous durability).
    ///
    /// The default calls [`Checkpointer::put_writes`] for each write set, then
    /// [`Checkpointer::put_batch`]: correct, but neither atomic nor one round trip. Implementations
    /// backed by a transactional store should override it.
    ///
    /// # Errors
    /// Storage failures; with the default implementation, a prefix of the batch may have been stored.
    async fn put_step(&self, ctx: &RequestContext, batch: StepBatch) -> Result<()> {
        for w in batch.writes {
            if !w.writes.is_empty() {
                self.put_writes(ctx, &w.thread, w.checkpoint, w.writes)
                    .await?;
            }
        }
        if !batch.checkpoints.is_empty() {
            self.put_batch(ctx, batch.checkpoints).await?;
        }
        Ok(())
    }

    /// The checkpoint `id` of `thread`, or its latest when `id` is `None`.
    ///
    /// # Errors
    /// Storage failures; a missing checkpoint is `Ok(None)`.
    async fn get(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        id: Option<CheckpointId>,
    ) -> Result<Option<Checkpoint>>;

    /// The pending writes of a checkpoint, in insertion order.
    ///
    /// # Errors
    /// Storage failures.
    async fn get_writes(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        checkpoint: CheckpointId,
    ) -> Result<Vec<PendingWrite>>;

    /// The thread's history, newest first, at most `limit` checkpoints.
    ///
    /// # Errors
    /// Storage failures.
    async fn list(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        limit: usize,
    ) -> Result<Vec<Checkpoint>>;

    /// Deletes a thread's checkpoints and writes (idempotent).
    ///
    /// # Errors
    /// Storage failures.
    async fn delete_thread(&self, ctx: &RequestContext, thread: &ThreadId) -> Result<()>;
}

#[async_trait]
impl<T: Checkpointer + ?Sized> Checkpointer for Arc<T> {
    async fn put(&self, ctx: &RequestContext, checkpoint: Checkpoint) -> Result<()> {
        (**self).put(ctx, checkpoint).await
    }
    async fn put_batch(&self, ctx: &RequestContext, checkpoints: Vec<Checkpoint>) -> Result<()> {
        (**self).put_batch(ctx, checkpoints).await
    }
    async fn put_writes(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        checkpoint: CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<()> {
        (**self).put_writes(ctx, thread, checkpoint, writes).await
    }
    async fn put_step(&self, ctx: &RequestContext, batch: StepBatch) -> Result<()> {
        (**self).put_step(ctx, batch).await
    }
    async fn get(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        id: Option<CheckpointId>,
    ) -> Result<Option<Checkpoint>> {
        (**self).get(ctx, thread, id).await
    }
    async fn get_writes(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        checkpoint: CheckpointId,
    ) -> Result<Vec<PendingWrite>> {
        (**self).get_writes(ctx, thread, checkpoint).await
    }
    async fn list(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        limit: usize,
    ) -> Result<Vec<Checkpoint>> {
        (**self).list(ctx, thread, limit).await
    }
    async fn delete_thread(&self, ctx: &RequestContext, thread: &ThreadId) -> Result<()> {
        (**self).delete_thread(ctx, thread).await
    }
}

/// Compile-time check that the trait stays object safe.
#[allow(dead_code)]
fn _object_safe(_: &dyn Checkpointer) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_ids_are_validated() {
        assert!(ThreadId::new("").is_err());
        assert!(ThreadId::new("a\nb").is_err());
        assert!(ThreadId::new("x".repeat(257)).is_err());
        assert_eq!(ThreadId::new("t-1").unwrap().as_str(), "t-1");
    }

    #[test]
    fn checkpoint_ids_roundtrip_and_order() {
        let a = CheckpointId::generate();
        let b = CheckpointId::generate();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<CheckpointId>().unwrap(), a);
        assert!("nope".parse::<CheckpointId>().is_err());
    }

    #[test]
    fn write_kinds_roundtrip() {
        for k in [WriteKind::Output, WriteKind::Interrupt, WriteKind::Resume] {
            assert_eq!(WriteKind::parse(k.as_str()).unwrap(), k);
        }
        assert!(WriteKind::parse("x").is_err());
    }
}
