//! An in-process checkpointer: fast, lost on restart. For tests, development and short-lived runs.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use wattos_core::checkpoint::{
    Checkpoint, CheckpointId, Checkpointer, PendingWrite, StepBatch, ThreadId,
};
use wattos_core::{RequestContext, Result};

#[derive(Default)]
struct ThreadLog {
    checkpoints: Vec<Checkpoint>,
    by_id: HashMap<CheckpointId, usize>,
    writes: HashMap<CheckpointId, Vec<PendingWrite>>,
}

/// Keeps checkpoints in memory, keyed by tenant and thread.
#[derive(Default)]
pub struct InMemoryCheckpointer {
    threads: Mutex<HashMap<(String, ThreadId), ThreadLog>>,
}

impl std::fmt::Debug for InMemoryCheckpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryCheckpointer")
            .finish_non_exhaustive()
    }
}

impl InMemoryCheckpointer {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Threads> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(ctx: &RequestContext, thread: &ThreadId) -> (String, ThreadId) {
        (ctx.tenant().as_str().to_owned(), thread.clone())
    }
}

type Threads = HashMap<(String, ThreadId), ThreadLog>;

fn insert(threads: &mut Threads, ctx: &RequestContext, checkpoint: Checkpoint) {
    let log = threads
        .entry(InMemoryCheckpointer::key(ctx, &checkpoint.thread))
        .or_default();
    log.by_id.insert(checkpoint.id, log.checkpoints.len());
    log.checkpoints.push(checkpoint);
}

#[async_trait]
impl Checkpointer for InMemoryCheckpointer {
    async fn put(&self, ctx: &RequestContext, checkpoint: Checkpoint) -> Result<()> {
        insert(&mut self.lock(), ctx, checkpoint);
        Ok(())
    }

    async fn put_batch(&self, ctx: &RequestContext, checkpoints: Vec<Checkpoint>) -> Result<()> {
        let mut threads = self.lock();
        for c in checkpoints {
            insert(&mut threads, ctx, c);
        }
        Ok(())
    }

    /// Under one lock: readers see all of the batch or none of it.
    async fn put_step(&self, ctx: &RequestContext, batch: StepBatch) -> Result<()> {
        let mut threads = self.lock();
        for w in batch.writes {
            if w.writes.is_empty() {
                continue;
            }
            threads
                .entry(Self::key(ctx, &w.thread))
                .or_default()
                .writes
                .entry(w.checkpoint)
                .or_default()
                .extend(w.writes);
        }
        for c in batch.checkpoints {
            insert(&mut threads, ctx, c);
        }
        Ok(())
    }

    async fn put_writes(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        checkpoint: CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<()> {
        let mut threads = self.lock();
        let log = threads.entry(Self::key(ctx, thread)).or_default();
        log.writes.entry(checkpoint).or_default().extend(writes);
        Ok(())
    }

    async fn get(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        id: Option<CheckpointId>,
    ) -> Result<Option<Checkpoint>> {
        let threads = self.lock();
        let Some(log) = threads.get(&Self::key(ctx, thread)) else {
            return Ok(None);
        };
        Ok(match id {
            None => log.checkpoints.last().cloned(),
            Some(id) => log.by_id.get(&id).map(|&i| log.checkpoints[i].clone()),
        })
    }

    async fn get_writes(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        checkpoint: CheckpointId,
    ) -> Result<Vec<PendingWrite>> {
        let threads = self.lock();
        Ok(threads
            .get(&Self::key(ctx, thread))
            .and_then(|log| log.writes.get(&checkpoint).cloned())
            .unwrap_or_default())
    }

    async fn list(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        limit: usize,
    ) -> Result<Vec<Checkpoint>> {
        let threads = self.lock();
        Ok(threads
            .get(&Self::key(ctx, thread))
            .map(|log| log.checkpoints.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn delete_thread(&self, ctx: &RequestContext, thread: &ThreadId) -> Result<()> {
        self.lock().remove(&Self::key(ctx, thread));
        Ok(())
    }
}
