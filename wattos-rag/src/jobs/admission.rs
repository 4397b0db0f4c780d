//! [`AdmittedQueue`]: a [`JobQueue`] that admits each new job against per-tenant and global limits
//! on outstanding (queued, running or retrying) jobs, counted in a shared
//! [`BudgetStore`](wattos_core::state::BudgetStore), so one tenant cannot fill the queue for
//! everyone and the backlog stays bounded.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use wattos_core::state::{BudgetLine, BudgetStore, Reservation, StateKey};
use wattos_core::{Error, Result, TenantId};

use super::{
    AfterFailure, Enqueued, Job, JobHandler, JobId, JobQueue, JobState, JobStatus, NewJob,
    RetryPolicy, WorkerOptions, after_failure,
};

/// Limits on outstanding jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// Outstanding jobs of one tenant.
    pub per_tenant: u64,
    /// Outstanding jobs of all tenants together.
    pub global: u64,
    /// `Retry-After` of a refusal.
    pub retry_after: Duration,
    /// How long a counter lives after it was created; a count lost to a crash (a job that never
    /// ends on a worker) heals after it (default a day).
    pub ttl: Duration,
}

impl Default for JobLimits {
    fn default() -> Self {
        Self {
            per_tenant: 100,
            global: 10_000,
            retry_after: Duration::from_secs(5),
            ttl: Duration::from_secs(86_400),
        }
    }
}

/// Wraps a [`JobQueue`]: [`JobQueue::enqueue`] of a new job reserves one slot of the tenant's and
/// the global count (`rate_limited` with `Retry-After` when either is full; nothing is queued); a
/// duplicate (accepted also when the count is full) or a failed enqueue gives it back; the slot is released when the job ends (succeeded,
/// or dead-lettered by a permanent error or its last attempt under `retry`), observed by wrapping
/// the worker's handler. Use the same `retry` policy as the queue.
///
/// ```
/// use std::sync::Arc;
/// use wattos_rag::jobs::{AdmittedQueue, JobLimits, MemoryJobQueue, RetryPolicy};
/// # fn demo(counters: Arc<dyn wattos_core::state::BudgetStore>) {
/// let retry = RetryPolicy::default();
/// let queue = AdmittedQueue::new(
///     Arc::new(MemoryJobQueue::with_policy(retry)),
///     counters, // e.g. the router's MemoryState, or RedisState shared by every instance
///     JobLimits { per_tenant: 10, ..JobLimits::default() },
///     retry,
/// );
/// # let _ = queue; }
/// ```
pub struct AdmittedQueue {
    inner: Arc<dyn JobQueue>,
    counters: Arc<dyn BudgetStore>,
    limits: JobLimits,
    retry: RetryPolicy,
}

impl std::fmt::Debug for AdmittedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmittedQueue")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn tenant_key(tenant: &TenantId) -> StateKey {
    StateKey::tenant(tenant, "jobs", &["outstanding"])
}

fn global_key() -> StateKey {
    StateKey::shared("jobs", &["outstanding"])
}

impl AdmittedQueue {
    /// `inner` with admission counted in `counters` under `limits`; `retry` must be the queue's.
    pub fn new(
        inner: Arc<dyn JobQueue>,
        counters: Arc<dyn BudgetStore>,
        limits: JobLimits,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            inner,
            counters,
            limits,
            retry,
        }
    }

    /// The tenant's outstanding jobs as counted here.
    ///
    /// # Errors
    /// Counter store failures.
    pub async fn outstanding(&self, tenant: &TenantId) -> Result<i64> {
        self.counters.committed(&tenant_key(tenant)).await
    }

    fn lines(&self, tenant: &TenantId) -> [BudgetLine; 2] {
        let limit = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        [
            BudgetLine {
                key: tenant_key(tenant),
                limit_nanos: limit(self.limits.per_tenant),
                ttl: Some(self.limits.ttl),
            },
            BudgetLine {
                key: global_key(),
                limit_nanos: limit(self.limits.global),
                ttl: Some(self.limits.ttl),
            },
        ]
    }
}

/// Gives one slot of `tenant`'s and the global count back.
async fn release(counters: &dyn BudgetStore, tenant: &TenantId) {
    if let Err(e) = counters
        .settle(&[tenant_key(tenant), global_key()], -1)
        .await
    {
        tracing::warn!(error = %e, "could not release a job admission slot");
    }
}

#[async_trait]
impl JobQueue for AdmittedQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let tenant = job.tenant.clone();
        let lines = self.lines(&tenant);
        if let Reservation::Exceeded { index, .. } = self.counters.reserve(&lines, 1).await? {
            // Resubmitting a job that is queued, running or done adds nothing: answer it as the
            // queue does (a duplicate), also when the count is full.
            if let Some(existing) = self.inner.status(&tenant, &job.id()).await?
                && existing.state != JobState::DeadLettered
            {
                return self.inner.enqueue(job).await;
            }
            let (scope, limit) = if index == 0 {
                ("the tenant", self.limits.per_tenant)
            } else {
                ("the server", self.limits.global)
            };
            return Err(Error::rate_limited(format!(
                "{scope} has {limit} jobs outstanding (queued or running), its limit: wait for some to finish"
            ))
            .with_retry_after(self.limits.retry_after));
        }
        match self.inner.enqueue(job).await {
            Ok(e) if !e.duplicate => Ok(e),
            // The same job is already counted (or done): this call adds nothing.
            Ok(e) => {
                release(&*self.counters, &tenant).await;
                Ok(e)
            }
            Err(e) => {
                release(&*self.counters, &tenant).await;
                Err(e)
            }
        }
    }

    async fn status(&self, tenant: &TenantId, id: &JobId) -> Result<Option<JobStatus>> {
        self.inner.status(tenant, id).await
    }

    async fn work(
        &self,
        handler: Arc<dyn JobHandler>,
        opts: WorkerOptions,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let releasing = Arc::new(Releasing {
            inner: handler,
            counters: self.counters.clone(),
            retry: self.retry,
        });
        self.inner.work(releasing, opts, shutdown).await
    }
}

/// Releases a job's slot when its attempt ends it.
struct Releasing {
    inner: Arc<dyn JobHandler>,
    counters: Arc<dyn BudgetStore>,
    retry: RetryPolicy,
}

#[async_trait]
impl JobHandler for Releasing {
    async fn handle(&self, job: &Job) -> Result<Value> {
        let result = self.inner.handle(job).await;
        let ended = match &result {
            Ok(_) => true,
            Err(e) => after_failure(&self.retry, job.attempt, e) == AfterFailure::DeadLetter,
        };
        if ended {
            release(&*self.counters, &job.tenant).await;
        }
        result
    }
}
