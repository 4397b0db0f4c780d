//! The NATS JetStream job queue of the shared mode.
//!
//! Layout, for a [`JetStreamConfig`] with stream `S` and subject prefix `p`:
//!
//! * stream `S` (work-queue retention, file storage) on subject `p.queue`: one message per queued
//!   job, deduplicated by `Nats-Msg-Id` within the duplicate window;
//! * durable pull consumer `S`'s [`JetStreamConfig::consumer`]: explicit acks, `ack_wait`, and
//!   `max_deliver = max_attempts + 1` (the extra delivery dead-letters a job whose worker died on
//!   its last attempt);
//! * stream `S_DLQ` on subject `p.dead`: dead-lettered jobs with their last error;
//! * stream [`JetStreamConfig::status_bucket`] on subjects `p.status.<job id>`, one message per
//!   subject (a key-value layout that also works on NATS 2.9): one [`JobStatus`] per job id,
//!   readable by every instance; creation and takeover use expected-last-subject-sequence checks.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::{AckKind, PublishMessage};
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context, Message};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wattos_core::{Error, Result, TenantId};

use super::{
    AfterFailure, Enqueued, Job, JobHandler, JobId, JobQueue, JobState, JobStatus, NewJob,
    RetryPolicy, WorkerOptions, after_failure, error_text, job_metrics, now_ms,
};

/// Names and limits of the JetStream queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// Work stream name (no `.`, spaces or wildcards). Default `WATTOS_JOBS`.
    pub stream: String,
    /// Subject prefix: jobs go to `<prefix>.queue`, dead letters to `<prefix>.dead`.
    /// Default `wattos.jobs`.
    pub subject_prefix: String,
    /// Durable consumer shared by every worker. Default `workers`.
    pub consumer: String,
    /// Stream holding the job statuses (one message per job). Default `wattos_job_status`.
    pub status_bucket: String,
    /// How long a delivered job may go without an ack or a progress heartbeat before it is
    /// redelivered (workers send heartbeats every third of it). Default 30 s.
    pub ack_wait: Duration,
    /// Attempts and backoff.
    pub retry: RetryPolicy,
    /// How long statuses and dead letters are kept. Default 7 days.
    pub retention: Duration,
    /// Window in which a re-published job message is dropped as a duplicate. Default 2 min.
    pub duplicate_window: Duration,
    /// Stream and bucket replicas (1 for a single NATS server). Default 1.
    pub replicas: usize,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        Self::named("WATTOS_JOBS", "wattos.jobs", "wattos_job_status")
    }
}

impl JetStreamConfig {
    /// Default limits with these names (tests use unique names per run).
    pub fn named(
        stream: impl Into<String>,
        subject_prefix: impl Into<String>,
        status_bucket: impl Into<String>,
    ) -> Self {
        Self {
            stream: stream.into(),
            subject_prefix: subject_prefix.into(),
            consumer: "workers".into(),
            status_bucket: status_bucket.into(),
            ack_wait: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            retention: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
        }
    }

    fn queue_subject(&self) -> String {
        format!("{}.queue", self.subject_prefix)
    }

    fn dead_subject(&self) -> String {
        format!("{}.dead", self.subject_prefix)
    }

    fn status_subject(&self, id: &JobId) -> String {
        format!("{}.status.{id}", self.subject_prefix)
    }

    fn dead_stream(&self) -> String {
        format!("{}_DLQ", self.stream)
    }
}

/// A dead-lettered job as stored in the dead-letter stream.
#[derive(Debug, Serialize)]
struct DeadLetter<'a> {
    job: &'a Job,
    error: &'a str,
    attempts: u32,
    worker: &'a str,
    at_ms: i64,
}

/// Durable jobs on NATS JetStream: every instance may enqueue, read statuses and work. Cheap to
/// clone.
#[derive(Clone)]
pub struct JetStreamQueue {
    js: Context,
    statuses: stream::Stream,
    work: stream::Stream,
    dead: stream::Stream,
    cfg: Arc<JetStreamConfig>,
}

impl std::fmt::Debug for JetStreamQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamQueue")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn nats_err<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
) -> impl Fn(E) -> Error {
    move |e| Error::unavailable(format!("nats: {what} failed: {e}")).with_source(e)
}

fn boxed_err(what: &'static str) -> impl Fn(async_nats::Error) -> Error {
    move |e| Error::unavailable(format!("nats: {what} failed: {e}")).with_source(e)
}

impl JetStreamQueue {
    /// Connects to the NATS server at `url` and sets up the streams, consumer and bucket.
    ///
    /// # Errors
    /// `unavailable` when NATS cannot be reached or JetStream refuses the setup.
    pub async fn connect(url: &str, cfg: JetStreamConfig) -> Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name("wattos-jobs")
            .connect(url)
            .await
            .map_err(nats_err("connect"))?;
        Self::new(client, cfg).await
    }

    /// Sets up the streams, consumer and bucket on an existing client (idempotent: every instance
    /// runs it at start).
    ///
    /// # Errors
    /// `unavailable` when JetStream refuses the setup; `invalid_input` for bad names.
    pub async fn new(client: async_nats::Client, cfg: JetStreamConfig) -> Result<Self> {
        for (field, name) in [
            ("stream", &cfg.stream),
            ("consumer", &cfg.consumer),
            ("status_bucket", &cfg.status_bucket),
        ] {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(Error::invalid_field(
                    format!("jobs.{field}"),
                    "use letters, digits, '_' and '-' only",
                ));
            }
        }
        let js = jetstream::new(client);
        let work = js
            .get_or_create_stream(stream::Config {
                name: cfg.stream.clone(),
                subjects: vec![cfg.queue_subject()],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                duplicate_window: cfg.duplicate_window,
                num_replicas: cfg.replicas,
                ..Default::default()
            })
            .await
            .map_err(nats_err("creating the job stream"))?;
        let dead = js
            .get_or_create_stream(stream::Config {
                name: cfg.dead_stream(),
                subjects: vec![cfg.dead_subject()],
                retention: RetentionPolicy::Limits,
                storage: StorageType::File,
                max_age: cfg.retention,
                num_replicas: cfg.replicas,
                ..Default::default()
            })
            .await
            .map_err(nats_err("creating the dead-letter stream"))?;
        let max_deliver = i64::from(cfg.retry.max_attempts.max(1)) + 1;
        let _: PullConsumer = work
            .get_or_create_consumer(
                &cfg.consumer,
                pull::Config {
                    durable_name: Some(cfg.consumer.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: cfg.ack_wait,
                    max_deliver,
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(nats_err("creating the job consumer"))?;
        let statuses = js
            .get_or_create_stream(stream::Config {
                name: cfg.status_bucket.clone(),
                subjects: vec![format!("{}.status.>", cfg.subject_prefix)],
                retention: RetentionPolicy::Limits,
                max_messages_per_subject: 1,
                storage: StorageType::File,
                max_age: cfg.retention,
                num_replicas: cfg.replicas,
                ..Default::default()
            })
            .await
            .map_err(nats_err("creating the job status stream"))?;
        Ok(Self {
            js,
            statuses,
            work,
            dead,
            cfg: Arc::new(cfg),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &JetStreamConfig {
        &self.cfg
    }

    /// Jobs waiting in the work stream (queued, running or awaiting retry).
    ///
    /// # Errors
    /// `unavailable` when JetStream cannot be reached.
    pub async fn pending(&self) -> Result<u64> {
        let mut s = self.work.clone();
        Ok(s.info()
            .await
            .map_err(nats_err("stream info"))?
            .state
            .messages)
    }

    /// Jobs in the dead-letter stream.
    ///
    /// # Errors
    /// `unavailable` when JetStream cannot be reached.
    pub async fn dead_letter_count(&self) -> Result<u64> {
        let mut s = self.dead.clone();
        Ok(s.info()
            .await
            .map_err(nats_err("stream info"))?
            .state
            .messages)
    }

    /// The status of `id` and its revision (stream sequence).
    async fn read_status(&self, id: &JobId) -> Result<Option<(JobStatus, u64)>> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let msg = match self
            .statuses
            .get_last_raw_message_by_subject(&self.cfg.status_subject(id))
            .await
        {
            Ok(m) => m,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(e) => return Err(nats_err("reading a job status")(e)),
        };
        if msg.payload.is_empty() {
            return Ok(None);
        }
        let status: JobStatus = serde_json::from_slice(&msg.payload)
            .map_err(|e| Error::internal("corrupt job status").with_source(e))?;
        Ok(Some((status, msg.sequence)))
    }

    /// Writes `status`; with `expect`, only if the current revision is that (0: no status yet).
    /// `Ok(false)` when the expectation failed.
    async fn put_status(&self, status: &JobStatus, expect: Option<u64>) -> Result<bool> {
        use async_nats::jetstream::context::PublishErrorKind;
        let bytes = serde_json::to_vec(status)
            .map_err(|e| Error::internal("job status encoding").with_source(e))?;
        let mut msg = PublishMessage::build().payload(Bytes::from(bytes));
        if let Some(rev) = expect {
            msg = msg.expected_last_subject_sequence(rev);
        }
        let ack = self
            .js
            .send_publish(self.cfg.status_subject(&status.id), msg)
            .await
            .map_err(nats_err("writing a job status"))?
            .await;
        match ack {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(false),
            Err(e) => Err(nats_err("writing a job status")(e)),
        }
    }

    async fn write_status(&self, status: &JobStatus) -> Result<()> {
        self.put_status(status, None).await.map(|_| ())
    }

    async fn publish_job(&self, status: &JobStatus, payload: &serde_json::Value) -> Result<()> {
        let job = status.job(payload.clone());
        let bytes =
            serde_json::to_vec(&job).map_err(|e| Error::internal("job encoding").with_source(e))?;
        let msg_id = format!("{}-{}", status.id, status.created_at_ms);
        self.js
            .send_publish(
                self.cfg.queue_subject(),
                PublishMessage::build()
                    .payload(Bytes::from(bytes))
                    .message_id(msg_id),
            )
            .await
            .map_err(nats_err("publishing a job"))?
            .await
            .map_err(nats_err("publishing a job"))?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        job: &Job,
        mut status: JobStatus,
        error: String,
        worker: &str,
    ) -> Result<()> {
        let letter = DeadLetter {
            job,
            error: &error,
            attempts: job.attempt,
            worker,
            at_ms: now_ms(),
        };
        let bytes = serde_json::to_vec(&letter)
            .map_err(|e| Error::internal("dead letter encoding").with_source(e))?;
        self.js
            .send_publish(
                self.cfg.dead_subject(),
                PublishMessage::build()
                    .payload(Bytes::from(bytes))
                    .message_id(format!("{}-{}-dead", job.id, status.created_at_ms)),
            )
            .await
            .map_err(nats_err("dead-lettering a job"))?
            .await
            .map_err(nats_err("dead-lettering a job"))?;
        status.state = JobState::DeadLettered;
        status.lease_until_ms = None;
        status.error = Some(error);
        status.attempts = job.attempt;
        status.updated_at_ms = now_ms();
        self.write_status(&status).await?;
        job_metrics(&job.kind, "dead_lettered");
        tracing::warn!(job = %job.id, attempts = job.attempt, "job dead-lettered");
        Ok(())
    }

    /// Handles one delivery. Errors are NATS failures; the message is then left unacked and comes
    /// back after `ack_wait`.
    async fn process(&self, msg: Message, handler: &dyn JobHandler, worker: &str) -> Result<()> {
        let delivered = msg
            .info()
            .map(|i| u32::try_from(i.delivered).unwrap_or(u32::MAX))
            .map_err(|e| Error::internal(format!("bad JetStream delivery: {e}")))?;
        let mut job: Job = match serde_json::from_slice(&msg.payload) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "undecodable job message; terminated");
                msg.ack_with(AckKind::Term)
                    .await
                    .map_err(boxed_err("term"))?;
                return Ok(());
            }
        };
        job.attempt = delivered;
        let mut status = match self.read_status(&job.id).await? {
            Some((s, _)) => s,
            // Status expired or lost: rebuild it from the message.
            None => {
                let now = now_ms();
                JobStatus {
                    id: job.id.clone(),
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
        };
        if status.state == JobState::Succeeded {
            // Delivered again after its success was recorded (the ack was lost): nothing to do.
            job_metrics(&job.kind, "duplicate_skipped");
            msg.double_ack().await.map_err(boxed_err("ack"))?;
            return Ok(());
        }
        let max = self.cfg.retry.max_attempts.max(1);
        if delivered > max {
            let error = status.error.clone().map_or_else(
                || format!("worker lost during the last of {max} attempts"),
                |e| format!("worker lost during the last of {max} attempts; earlier: {e}"),
            );
            self.dead_letter(&job, status, error, worker).await?;
            msg.double_ack().await.map_err(boxed_err("ack"))?;
            return Ok(());
        }
        if delivered > 1 && status.state == JobState::Running {
            // The previous attempt started and never recorded an outcome: its worker died, hung
            // or lost NATS, and JetStream redelivered the job after `ack_wait`.
            tracing::warn!(
                job = %job.id,
                attempt = delivered,
                previous_worker = status.worker.as_deref().unwrap_or("?"),
                "job redelivered: the previous attempt's worker stopped without an outcome"
            );
            job_metrics(&job.kind, "redelivered");
        }
        let lease = i64::try_from(self.cfg.ack_wait.as_millis()).unwrap_or(i64::MAX);
        status.state = JobState::Running;
        status.attempts = delivered;
        status.worker = Some(worker.to_owned());
        status.updated_at_ms = now_ms();
        status.lease_until_ms = Some(status.updated_at_ms.saturating_add(lease));
        self.write_status(&status).await?;

        let heartbeat = (self.cfg.ack_wait / 3).max(Duration::from_millis(100));
        let result = {
            let run = handler.handle(&job);
            tokio::pin!(run);
            loop {
                tokio::select! {
                    r = &mut run => break r,
                    _ = tokio::time::sleep(heartbeat) => {
                        if let Err(e) = msg.ack_with(AckKind::Progress).await {
                            tracing::warn!(job = %job.id, error = %e, "job heartbeat failed");
                        }
                        // Renew the lease readers see (the ack above renews JetStream's own).
                        status.lease_until_ms = Some(now_ms().saturating_add(lease));
                        if let Err(e) = self.write_status(&status).await {
                            tracing::warn!(job = %job.id, error = %e, "job lease renewal failed");
                        }
                    }
                }
            }
        };
        status.lease_until_ms = None;
        match result {
            Ok(value) => {
                status.state = JobState::Succeeded;
                status.result = Some(value);
                status.error = None;
                status.updated_at_ms = now_ms();
                self.write_status(&status).await?;
                msg.double_ack().await.map_err(boxed_err("ack"))?;
                job_metrics(&job.kind, "succeeded");
            }
            Err(e) => match after_failure(&self.cfg.retry, delivered, &e) {
                AfterFailure::Retry(delay) => {
                    status.state = JobState::Retrying;
                    status.error = Some(error_text(&e));
                    status.updated_at_ms = now_ms();
                    self.write_status(&status).await?;
                    msg.ack_with(AckKind::Nak(Some(delay)))
                        .await
                        .map_err(boxed_err("nak"))?;
                    job_metrics(&job.kind, "retried");
                }
                AfterFailure::DeadLetter => {
                    self.dead_letter(&job, status, error_text(&e), worker)
                        .await?;
                    msg.double_ack().await.map_err(boxed_err("ack"))?;
                }
            },
        }
        Ok(())
    }
}

#[async_trait]
impl JobQueue for JetStreamQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let status = JobStatus::queued(&job);
        let id = status.id.clone();
        match self.read_status(&id).await? {
            None => {
                if !self.put_status(&status, Some(0)).await? {
                    // Created concurrently by another instance: that one is the job.
                    let current = self.read_status(&id).await?.map(|(s, _)| s);
                    return Ok(Enqueued {
                        status: current.unwrap_or(status),
                        duplicate: true,
                    });
                }
            }
            Some((existing, revision)) => {
                match existing.state {
                    JobState::DeadLettered => {
                        // A dead-lettered job may run again: take over its status record.
                        if !self.put_status(&status, Some(revision)).await? {
                            let current = self.read_status(&id).await?.map(|(s, _)| s);
                            return Ok(Enqueued {
                                status: current.unwrap_or(existing),
                                duplicate: true,
                            });
                        }
                    }
                    JobState::Queued => {
                        // The first enqueue may have died between the status and the message:
                        // publish again under the same message id (JetStream drops a duplicate).
                        self.publish_job(&existing, &job.payload).await?;
                        return Ok(Enqueued {
                            status: existing,
                            duplicate: true,
                        });
                    }
                    _ => {
                        return Ok(Enqueued {
                            status: existing,
                            duplicate: true,
                        });
                    }
                }
            }
        }
        if let Err(e) = self.publish_job(&status, &job.payload).await {
            // Do not leave a queued status without a message behind.
            let _ = self
                .statuses
                .purge()
                .filter(self.cfg.status_subject(&id))
                .await;
            return Err(e);
        }
        job_metrics(&job.kind, "enqueued");
        Ok(Enqueued {
            status,
            duplicate: false,
        })
    }

    async fn status(&self, tenant: &TenantId, id: &JobId) -> Result<Option<JobStatus>> {
        Ok(self
            .read_status(id)
            .await?
            .map(|(s, _)| s.as_seen_at(now_ms()))
            .filter(|s| s.tenant == *tenant))
    }

    async fn work(
        &self,
        handler: Arc<dyn JobHandler>,
        opts: WorkerOptions,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let consumer: PullConsumer = self
            .work
            .get_consumer(&self.cfg.consumer)
            .await
            .map_err(boxed_err("opening the job consumer"))?;
        let concurrency = opts.concurrency.max(1);
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut running = JoinSet::new();
        let heartbeat = opts.heartbeat.as_ref();
        let mut ticker = tokio::time::interval(super::HEARTBEAT_INTERVAL);
        'outer: loop {
            super::heartbeat::beat(heartbeat);
            // Wait for one free slot, take every other free one, then ask for that many jobs so
            // no job waits in this worker while another worker is idle.
            let first = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break 'outer,
                    p = slots.clone().acquire_owned() => break p.map_err(|_| Error::internal("worker slots closed"))?,
                    _ = ticker.tick() => super::heartbeat::beat(heartbeat),
                }
            };
            let mut permits = vec![first];
            while let Ok(p) = slots.clone().try_acquire_owned() {
                permits.push(p);
            }
            let batch = consumer
                .batch()
                .max_messages(permits.len())
                .expires(Duration::from_secs(2))
                .messages()
                .await;
            let mut batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "job pull failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break 'outer,
                    n = batch.next() => n,
                    _ = ticker.tick() => {
                        super::heartbeat::beat(heartbeat);
                        continue;
                    }
                };
                match next {
                    None => break,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "job pull ended");
                        break;
                    }
                    Some(Ok(msg)) => {
                        let Some(permit) = permits.pop() else { break };
                        let queue = self.clone();
                        let handler = handler.clone();
                        let worker = opts.worker_id.clone();
                        running.spawn(async move {
                            if let Err(e) = queue.process(msg, handler.as_ref(), &worker).await {
                                tracing::warn!(error = %e, "job delivery not settled; it will be redelivered");
                            }
                            drop(permit);
                        });
                    }
                }
            }
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
        Ok(())
    }
}
