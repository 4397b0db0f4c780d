//! Durable background jobs (ingestion and anything else), generic over what a job does.
//!
//! A [`JobQueue`] takes [`NewJob`]s, reports their [`JobStatus`] and runs workers that hand each
//! [`Job`] to a [`JobHandler`]. Two implementations share the same semantics:
//!
//! * [`MemoryJobQueue`]: in-process, for the embedded mode (one instance; jobs do not survive a
//!   restart).
//! * `JetStreamQueue` (feature `nats`): a NATS JetStream work-queue stream, a durable pull consumer
//!   with explicit acks, `ack_wait` redelivery (kept alive by progress heartbeats while a worker is
//!   busy), bounded attempts then a dead-letter stream, and job status in a JetStream stream (one
//!   message per job) every instance reads.
//!
//! Semantics (both implementations):
//!
//! * **Idempotent by content hash.** A job's id is derived from its tenant, kind and content hash
//!   ([`NewJob::content_hash`]); enqueueing the same content again returns the existing job
//!   (`duplicate: true`) unless it was dead-lettered. A redelivered job whose status is already
//!   `succeeded` is acknowledged without running the handler again, and the handler is told the
//!   content hash so its own writes can be idempotent for the window between its effect and the
//!   status write (RAG ingestion is: chunks are keyed by document and content hash).
//! * **At-least-once with bounded retries.** Errors of a permanent kind (invalid input, not found,
//!   forbidden, ...) dead-letter at once; others are retried with exponential backoff until
//!   `max_attempts`, then dead-lettered. A job whose worker died on its last attempt is
//!   dead-lettered on the next delivery without running again (poison jobs cannot crash-loop a
//!   fleet).

mod admission;
mod heartbeat;
mod memory;

#[cfg(feature = "nats")]
mod jetstream;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use wattos_core::{Error, ErrorKind, Result, TenantId};

pub use admission::{AdmittedQueue, JobLimits};
pub use heartbeat::{HEARTBEAT_INTERVAL, WorkerHeartbeat};
#[cfg(feature = "nats")]
pub use jetstream::{JetStreamConfig, JetStreamQueue};
pub use memory::MemoryJobQueue;

/// A job's id: `job_` and 32 hex digits of the hash of tenant, kind and content hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// The id of a job with this tenant, kind and content hash.
    pub fn derive(tenant: &TenantId, kind: &str, content_hash: &str) -> Self {
        let mut h = Sha256::new();
        for part in [tenant.as_str(), kind, content_hash] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        let digest = hex::encode(h.finalize());
        Self(format!("job_{}", &digest[..32]))
    }

    /// Parses a job id as the API shows it.
    ///
    /// # Errors
    /// `invalid_input` when `s` is not `job_` plus 32 lowercase hex digits.
    pub fn parse(s: &str) -> Result<Self> {
        let ok = s.len() == 36
            && s.starts_with("job_")
            && s[4..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::invalid_field(
                "job_id",
                "expected 'job_' followed by 32 lowercase hex digits",
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The tenant the job runs for.
    pub tenant: TenantId,
    /// What kind of job this is (e.g. `rag.ingest`); handlers dispatch on it.
    pub kind: String,
    /// The job's input.
    pub payload: Value,
    /// Hash of what the job does, the idempotency key. Defaults to the SHA-256 of the payload's
    /// JSON text; set it explicitly when the payload has no canonical form.
    pub content_hash: String,
}

impl NewJob {
    /// A job whose content hash is the SHA-256 of `payload`'s JSON text.
    pub fn new(tenant: TenantId, kind: impl Into<String>, payload: Value) -> Self {
        let content_hash = hex::encode(Sha256::digest(payload.to_string().as_bytes()));
        Self {
            tenant,
            kind: kind.into(),
            payload,
            content_hash,
        }
    }

    /// Replaces the content hash (the idempotency key).
    pub fn with_content_hash(mut self, hash: impl Into<String>) -> Self {
        self.content_hash = hash.into();
        self
    }

    /// The id this job gets.
    pub fn id(&self) -> JobId {
        JobId::derive(&self.tenant, &self.kind, &self.content_hash)
    }
}

/// A job as a worker receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Id.
    pub id: JobId,
    /// Tenant.
    pub tenant: TenantId,
    /// Kind.
    pub kind: String,
    /// Input.
    pub payload: Value,
    /// Idempotency key.
    pub content_hash: String,
    /// Which delivery this is (1 for the first).
    #[serde(default)]
    pub attempt: u32,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// A worker is running it.
    Running,
    /// The last attempt failed; it will be retried.
    Retrying,
    /// Done; `result` holds the handler's output.
    Succeeded,
    /// Failed permanently or too often; moved to the dead-letter queue.
    DeadLettered,
}

impl JobState {
    /// Whether the job will not change any more (until it is enqueued again).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::DeadLettered)
    }
}

/// What every instance can read about a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// Id.
    pub id: JobId,
    /// Tenant.
    pub tenant: TenantId,
    /// Kind.
    pub kind: String,
    /// Idempotency key.
    pub content_hash: String,
    /// State.
    pub state: JobState,
    /// Deliveries so far.
    pub attempts: u32,
    /// The worker of the latest attempt.
    pub worker: Option<String>,
    /// The latest error.
    pub error: Option<String>,
    /// The handler's output, once succeeded.
    pub result: Option<Value>,
    /// Enqueue time (unix ms).
    pub created_at_ms: i64,
    /// Last change (unix ms).
    pub updated_at_ms: i64,
    /// While running: until when the worker's lease holds (unix ms). The worker renews it with
    /// every heartbeat; a running job past it has lost its worker and will be redelivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until_ms: Option<i64>,
}

impl JobStatus {
    /// This status as a reader at `now_ms` should see it: a `running` job whose worker let its
    /// lease lapse (died, hung or lost its connection) is shown as `retrying`, with an error that
    /// says so, because the queue redelivers it.
    pub fn as_seen_at(mut self, now_ms: i64) -> Self {
        if self.state == JobState::Running
            && let Some(until) = self.lease_until_ms
            && until < now_ms
        {
            self.state = JobState::Retrying;
            self.error = Some(format!(
                "worker {} stopped renewing its lease {} ms ago (it died or lost its connection); \
                 the job will be redelivered",
                self.worker.as_deref().unwrap_or("?"),
                now_ms.saturating_sub(until)
            ));
        }
        self
    }

    fn queued(job: &NewJob) -> Self {
        let now = now_ms();
        Self {
            id: job.id(),
            tenant: job.tenant.clone(),
            kind: job.kind.clone(),
            content_hash: job.content_hash.clone(),
            state: JobState::Queued,
            attempts: 0,
            worker: None,
            error: None,
            result: None,
            created_at_ms: now,
            updated_at_ms: now,
            lease_until_ms: None,
        }
    }

    fn job(&self, payload: Value) -> Job {
        Job {
            id: self.id.clone(),
            tenant: self.tenant.clone(),
            kind: self.kind.clone(),
            payload,
            content_hash: self.content_hash.clone(),
            attempt: 0,
        }
    }
}

/// The answer to [`JobQueue::enqueue`].
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    /// The job's status (the existing one for a duplicate).
    pub status: JobStatus,
    /// Whether the same job was already queued, running or done, so nothing new was queued.
    pub duplicate: bool,
}

/// Runs jobs. Make its effects idempotent by [`Job::content_hash`]: a job can be delivered again
/// after its effect happened if the worker dies before recording success.
#[async_trait]
pub trait JobHandler: Send + Sync {
    /// Runs `job`, returning its result (kept in the job status).
    ///
    /// # Errors
    /// Permanent kinds (see [`is_permanent`]) dead-letter the job at once; others are retried.
    async fn handle(&self, job: &Job) -> Result<Value>;
}

/// How a worker runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOptions {
    /// Name shown in job status (e.g. host and pid).
    pub worker_id: String,
    /// Jobs run at once by this worker.
    pub concurrency: usize,
    /// Beaten by the worker loop at least every [`HEARTBEAT_INTERVAL`] while it runs (busy or
    /// idle), so a watcher can tell a live loop from a dead or stuck one.
    pub heartbeat: Option<WorkerHeartbeat>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            worker_id: format!("pid-{}", std::process::id()),
            concurrency: 2,
            heartbeat: None,
        }
    }
}

/// Retry settings shared by the queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Deliveries before a failing job is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles each attempt.
    pub backoff: Duration,
    /// Longest delay between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Delay after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// A durable job queue.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Queues `job` unless the same job (same id) is queued, running or done.
    ///
    /// # Errors
    /// `unavailable` when the queue's backend cannot be reached.
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued>;

    /// The status of job `id` of `tenant` (`None` when unknown or another tenant's).
    ///
    /// # Errors
    /// `unavailable` when the status store cannot be reached.
    async fn status(&self, tenant: &TenantId, id: &JobId) -> Result<Option<JobStatus>>;

    /// Runs a worker until `shutdown` is cancelled, then waits for its running jobs. Beats
    /// [`WorkerOptions::heartbeat`] at least every [`HEARTBEAT_INTERVAL`] meanwhile.
    ///
    /// # Errors
    /// `unavailable` when the queue cannot be consumed.
    async fn work(
        &self,
        handler: Arc<dyn JobHandler>,
        opts: WorkerOptions,
        shutdown: CancellationToken,
    ) -> Result<()>;
}

#[cfg(test)]
fn _object_safe(_: Arc<dyn JobQueue>, _: Arc<dyn JobHandler>) {}

/// Whether an error will not go away on retry: the job is dead-lettered at once.
pub fn is_permanent(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::InvalidInput
            | ErrorKind::NotFound
            | ErrorKind::Forbidden
            | ErrorKind::Unauthenticated
            | ErrorKind::ContextLengthExceeded
    )
}

/// What a worker does after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterFailure {
    Retry(Duration),
    DeadLetter,
}

fn after_failure(policy: &RetryPolicy, attempt: u32, e: &Error) -> AfterFailure {
    if is_permanent(e) || attempt >= policy.max_attempts.max(1) {
        AfterFailure::DeadLetter
    } else {
        AfterFailure::Retry(policy.delay(attempt))
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn error_text(e: &Error) -> String {
    format!("{}: {}", e.code(), e.message())
}

fn job_metrics(kind: &str, outcome: &'static str) {
    metrics::counter!("wattos_jobs_total", "kind" => kind.to_owned(), "outcome" => outcome)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_tenant_kind_and_content() {
        let a = TenantId::new("a").unwrap();
        let b = TenantId::new("b").unwrap();
        let j = NewJob::new(a.clone(), "k", serde_json::json!({"x": 1}));
        assert_eq!(
            j.id(),
            NewJob::new(a.clone(), "k", serde_json::json!({"x": 1})).id()
        );
        assert_ne!(
            j.id(),
            NewJob::new(b, "k", serde_json::json!({"x": 1})).id()
        );
        assert_ne!(j.id(), NewJob::new(a.clone(), "k2", j.payload.clone()).id());
        assert_ne!(
            j.id(),
            NewJob::new(a, "k", serde_json::json!({"x": 2})).id()
        );
        assert_eq!(JobId::parse(j.id().as_str()).unwrap(), j.id());
        for bad in [
            "",
            "job_",
            "job_XYZ",
            "abc_0123456789abcdef0123456789abcdef",
        ] {
            assert!(JobId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn failures_retry_with_backoff_until_the_last_attempt() {
        let p = RetryPolicy {
            max_attempts: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(250),
        };
        let transient = Error::unavailable("down");
        assert_eq!(
            after_failure(&p, 1, &transient),
            AfterFailure::Retry(Duration::from_millis(100))
        );
        assert_eq!(
            after_failure(&p, 2, &transient),
            AfterFailure::Retry(Duration::from_millis(200))
        );
        assert_eq!(after_failure(&p, 3, &transient), AfterFailure::DeadLetter);
        assert_eq!(
            after_failure(&p, 1, &Error::invalid_input("bad")),
            AfterFailure::DeadLetter
        );
        assert_eq!(p.delay(10), Duration::from_millis(250));
    }

    #[test]
    fn a_running_job_whose_lease_lapsed_shows_its_lost_worker() {
        let job = NewJob::new(TenantId::new("a").unwrap(), "k", serde_json::json!({}));
        let mut st = JobStatus::queued(&job);
        st.state = JobState::Running;
        st.worker = Some("w-1".into());
        st.lease_until_ms = Some(10_000);
        let fresh = st.clone().as_seen_at(9_999);
        assert_eq!(fresh.state, JobState::Running);
        assert_eq!(fresh.error, None);
        let lost = st.clone().as_seen_at(12_000);
        assert_eq!(lost.state, JobState::Retrying);
        let why = lost.error.unwrap();
        assert!(why.contains("w-1") && why.contains("2000 ms"), "{why}");
        // Finished jobs are shown as they are.
        st.state = JobState::Succeeded;
        assert_eq!(st.clone().as_seen_at(99_999), st);
    }
}
