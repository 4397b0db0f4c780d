//! Asynchronous ingestion: `POST /v1/rag/collections/{collection}/jobs` queues documents and
//! answers 202 with a job id; workers (in this process, or in worker-only instances of the same
//! binary) run them; `GET /v1/jobs/{id}` reports the status.
//!
//! * The queue is a [`wattos_rag::jobs::JobQueue`]: in process in embedded mode, NATS JetStream in
//!   shared mode (feature `nats`), with redelivery, bounded retries, a dead-letter stream and
//!   idempotency by content hash.
//! * What a job does is behind [`IngestionService`] ("ingest these documents into this collection
//!   of this tenant"). [`RagIngestion`] implements it over `wattos_rag::Rag`; the server's RAG
//!   service can implement it instead and be passed to [`Jobs::new`].
//! * Crawl jobs ([`crawl`]) fetch a site and ingest its pages through the same service.
//! * [`ServerRole`] (`server.role` or `--worker`) picks what an instance does: `api` serves HTTP
//!   only, `worker` consumes jobs (and serves only health and metrics), `all` does both.

pub mod crawl;
mod health;
mod rag;
pub mod routes;
mod setup;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use wattos_core::config::ConfigReader;
use wattos_core::{Error, RequestContext, Result, TenantId};
use wattos_rag::jobs::{
    Job, JobHandler, JobQueue, NewJob, RetryPolicy, WorkerHeartbeat, WorkerOptions,
};

pub use crawl::{CRAWL_JOB_KIND, CrawlPayload, CrawlRequest, CrawlSettings};
pub use health::WorkerHealthCheck;
pub use rag::{RagIngestion, table_name};
pub use routes::{SubmitBody, SubmittedJob, routes};
pub use setup::build_jobs;

/// The job kind of document ingestion.
pub const INGEST_JOB_KIND: &str = "rag.ingest";

/// What an instance does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerRole {
    /// Serves the HTTP API; queues jobs but runs none.
    Api,
    /// Runs jobs; serves only health and metrics.
    Worker,
    /// Both (the default).
    All,
}

impl ServerRole {
    /// Whether this instance consumes jobs.
    pub fn runs_jobs(self) -> bool {
        matches!(self, Self::Worker | Self::All)
    }

    /// Whether this instance serves the API routes.
    pub fn serves_api(self) -> bool {
        matches!(self, Self::Api | Self::All)
    }
}

/// Settings of roles, the job queue and workers (`server.role`, `jobs.*`, `redis.key_prefix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// `server.role`: `api`, `worker` or `all` (default).
    pub role: ServerRole,
    /// `jobs.concurrency`: jobs one worker runs at once (default 2).
    pub concurrency: usize,
    /// `jobs.ack_wait`: a job whose worker stops heartbeating is redelivered after this
    /// (default 30 s).
    pub ack_wait: Duration,
    /// `jobs.max_attempts`: deliveries before a failing job is dead-lettered (default 5).
    pub max_attempts: u32,
    /// `jobs.retry_backoff`: delay before the second attempt, doubled each time (default 1 s).
    pub retry_backoff: Duration,
    /// `jobs.stream`: JetStream stream name (default `WATTOS_JOBS`).
    pub stream: String,
    /// `jobs.subject_prefix`: JetStream subject prefix (default `wattos.jobs`).
    pub subject_prefix: String,
    /// `jobs.status_bucket`: JetStream stream of job statuses (default
    /// `wattos_job_status`).
    pub status_bucket: String,
    /// `jobs.embedding_model`: the served embedding model ingestion uses when the RAG API is off
    /// (with it on, jobs ingest through it, with its model) (default the local
    /// `all-minilm-l6-v2`).
    pub embedding_model: String,
    /// `redis.key_prefix`: prefix of every Redis key of this deployment (default `wattos:`).
    pub redis_key_prefix: String,
    /// `jobs.heartbeat_timeout`: readiness fails when this instance's worker loop has not beaten
    /// for this long (default 15 s; the loop beats every second).
    pub heartbeat_timeout: Duration,
    /// `crawl.*`: what crawl jobs may reach and their limits.
    pub crawl: CrawlSettings,
    /// `jobs.max_outstanding_per_tenant`: queued, running or retrying jobs (ingestions and
    /// crawls) one tenant may have; more are refused with 429 + Retry-After (default 100).
    pub max_outstanding_per_tenant: u64,
    /// `jobs.max_outstanding`: the same for all tenants together (default 10 000).
    pub max_outstanding: u64,
}

impl JobSettings {
    /// Reads the settings, recording problems in `r`.
    pub fn read(r: &mut ConfigReader) -> Self {
        let role = match r.or::<String>("server.role", "all".into()).as_str() {
            "api" => ServerRole::Api,
            "worker" => ServerRole::Worker,
            "all" => ServerRole::All,
            other => {
                r.problem(
                    "server.role",
                    format!("expected 'api', 'worker' or 'all', got '{other}'"),
                );
                ServerRole::All
            }
        };
        let s = Self {
            role,
            concurrency: r.or("jobs.concurrency", 2),
            ack_wait: r.or("jobs.ack_wait", Duration::from_secs(30)),
            max_attempts: r.or("jobs.max_attempts", 5),
            retry_backoff: r.or("jobs.retry_backoff", Duration::from_secs(1)),
            stream: r.or("jobs.stream", "WATTOS_JOBS".into()),
            subject_prefix: r.or("jobs.subject_prefix", "wattos.jobs".into()),
            status_bucket: r.or("jobs.status_bucket", "wattos_job_status".into()),
            embedding_model: r.or(
                "jobs.embedding_model",
                crate::bootstrap::LOCAL_EMBEDDING_MODEL.into(),
            ),
            redis_key_prefix: r.or("redis.key_prefix", "wattos:".into()),
            heartbeat_timeout: r.or("jobs.heartbeat_timeout", Duration::from_secs(15)),
            crawl: CrawlSettings::read(r),
            max_outstanding_per_tenant: r.or("jobs.max_outstanding_per_tenant", 100),
            max_outstanding: r.or("jobs.max_outstanding", 10_000),
        };
        for (key, v) in [
            (
                "jobs.max_outstanding_per_tenant",
                s.max_outstanding_per_tenant,
            ),
            ("jobs.max_outstanding", s.max_outstanding),
        ] {
            if !(1..=1_000_000).contains(&v) {
                r.problem(key, "must be 1..=1000000");
            }
        }
        if s.heartbeat_timeout < Duration::from_secs(2) {
            r.problem("jobs.heartbeat_timeout", "must be at least 2s");
        }
        if s.concurrency == 0 || s.concurrency > 256 {
            r.problem("jobs.concurrency", "must be 1..=256");
        }
        if s.max_attempts == 0 || s.max_attempts > 100 {
            r.problem("jobs.max_attempts", "must be 1..=100");
        }
        if s.ack_wait < Duration::from_secs(1) {
            r.problem("jobs.ack_wait", "must be at least 1s");
        }
        s
    }

    /// The retry policy these settings describe.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            backoff: self.retry_backoff,
            max_backoff: Duration::from_secs(60).max(self.retry_backoff),
        }
    }
}

impl Default for JobSettings {
    fn default() -> Self {
        Self::read(&mut ConfigReader::new(None, Vec::new()))
    }
}

/// One document to ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestDocument {
    /// Document id, unique in the collection (re-ingesting an id replaces the document).
    pub id: String,
    /// The document's text (Markdown and plain text are chunked by structure).
    pub text: String,
    /// Title, kept in chunk metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Where the document came from (URL or path), kept in chunk metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Format; guessed from `location` or `id` (`.md`, `.html`, ...) when absent, else text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<crate::rag::types::TextFormat>,
    /// Extra metadata (string, number or bool values), kept in chunk metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, Value>>,
}

/// The payload of a `rag.ingest` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestPayload {
    /// Target collection.
    pub collection: String,
    /// Documents.
    pub documents: Vec<IngestDocument>,
}

impl IngestPayload {
    /// The idempotency key: SHA-256 over the collection and every document's id, title and text
    /// (length-prefixed, in order).
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        let mut field = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        field(&self.collection);
        for d in &self.documents {
            field(&d.id);
            field(d.title.as_deref().unwrap_or(""));
            field(d.location.as_deref().unwrap_or(""));
            field(d.format.map_or("", crate::rag::types::TextFormat::as_str));
            field(
                &d.metadata
                    .as_ref()
                    .map(|m| Value::Object(m.clone()).to_string())
                    .unwrap_or_default(),
            );
            field(&d.text);
        }
        hex::encode(h.finalize())
    }
}

/// Ingests documents into a tenant's collection: the seam between the job workers and the RAG
/// stack. Implementations must be idempotent by content (ingesting the same document twice stores
/// it once), since a job may run again after a crash.
#[async_trait]
pub trait IngestionService: Send + Sync {
    /// Ingests `documents` into `collection` of `ctx`'s tenant; returns a report (kept as the job
    /// result).
    ///
    /// # Errors
    /// Permanent kinds (`invalid_input`, `not_found`, ...) dead-letter the job; others retry it.
    async fn ingest(
        &self,
        ctx: &RequestContext,
        collection: &str,
        documents: Vec<IngestDocument>,
    ) -> Result<Value>;
}

/// Runs `rag.ingest` and `rag.crawl` jobs through an [`IngestionService`].
pub struct IngestHandler {
    service: Arc<dyn IngestionService>,
    crawl: CrawlSettings,
}

impl IngestHandler {
    /// A handler over `service`; crawls run with the default [`CrawlSettings`].
    pub fn new(service: Arc<dyn IngestionService>) -> Self {
        Self {
            service,
            crawl: CrawlSettings::default(),
        }
    }

    /// Crawls run with `settings`.
    #[must_use]
    pub fn with_crawl_settings(mut self, settings: CrawlSettings) -> Self {
        self.crawl = settings;
        self
    }
}

#[async_trait]
impl JobHandler for IngestHandler {
    async fn handle(&self, job: &Job) -> Result<Value> {
        if job.kind == CRAWL_JOB_KIND {
            let payload: CrawlPayload = serde_json::from_value(job.payload.clone())
                .map_err(|e| Error::invalid_input(format!("bad crawl job payload: {e}")))?;
            let ctx = RequestContext::system(job.tenant.clone());
            let started = std::time::Instant::now();
            let result = crawl::run_crawl(&ctx, &self.crawl, &*self.service, payload).await?;
            metrics::histogram!("wattos_crawl_job_seconds").record(started.elapsed().as_secs_f64());
            return Ok(result);
        }
        if job.kind != INGEST_JOB_KIND {
            return Err(Error::invalid_input(format!(
                "unknown job kind '{}'",
                job.kind
            )));
        }
        let payload: IngestPayload = serde_json::from_value(job.payload.clone())
            .map_err(|e| Error::invalid_input(format!("bad ingestion job payload: {e}")))?;
        let ctx = RequestContext::system(job.tenant.clone());
        let started = std::time::Instant::now();
        let report = self
            .service
            .ingest(&ctx, &payload.collection, payload.documents)
            .await?;
        metrics::histogram!("wattos_ingest_job_seconds").record(started.elapsed().as_secs_f64());
        Ok(report)
    }
}

/// The job side of the server state: the queue, this instance's role and worker settings.
#[derive(Clone)]
pub struct Jobs {
    queue: Arc<dyn JobQueue>,
    service: Option<Arc<dyn IngestionService>>,
    settings: Arc<JobSettings>,
    heartbeat: WorkerHeartbeat,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("settings", &self.settings)
            .field("worker", &self.service.is_some())
            .finish_non_exhaustive()
    }
}

impl Jobs {
    /// Jobs on `queue`; `service` runs them when this instance's role runs jobs.
    pub fn new(
        queue: Arc<dyn JobQueue>,
        service: Option<Arc<dyn IngestionService>>,
        settings: JobSettings,
    ) -> Self {
        Self {
            queue,
            service,
            settings: Arc::new(settings),
            heartbeat: WorkerHeartbeat::new(),
        }
    }

    /// Whether this instance runs a worker: its role runs jobs and it has an ingestion service.
    pub fn runs_worker(&self) -> bool {
        self.role().runs_jobs() && self.service.is_some()
    }

    /// The readiness check of this instance's worker (see [`WorkerHealthCheck`]), when it runs
    /// one. [`crate::AppState::with_jobs`] registers it.
    pub fn health_check(&self) -> Option<WorkerHealthCheck> {
        self.runs_worker().then(|| {
            WorkerHealthCheck::new(self.heartbeat.clone(), self.settings.heartbeat_timeout)
        })
    }

    /// The worker loop's heartbeat.
    pub fn heartbeat(&self) -> &WorkerHeartbeat {
        &self.heartbeat
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<dyn JobQueue> {
        &self.queue
    }

    /// The settings.
    pub fn settings(&self) -> &JobSettings {
        &self.settings
    }

    /// This instance's role.
    pub fn role(&self) -> ServerRole {
        self.settings.role
    }

    /// Queues an ingestion of `documents` into `collection` for `tenant`.
    ///
    /// # Errors
    /// `invalid_input` for a bad collection name or documents; `unavailable` when the queue is down.
    pub async fn submit_ingestion(
        &self,
        tenant: &TenantId,
        collection: &str,
        documents: Vec<IngestDocument>,
    ) -> Result<wattos_rag::jobs::Enqueued> {
        validate_submission(collection, &documents)?;
        let payload = IngestPayload {
            collection: collection.to_owned(),
            documents,
        };
        let hash = payload.content_hash();
        let value = serde_json::to_value(&payload)
            .map_err(|e| Error::internal("job payload encoding").with_source(e))?;
        self.queue
            .enqueue(NewJob::new(tenant.clone(), INGEST_JOB_KIND, value).with_content_hash(hash))
            .await
    }

    /// Queues a crawl from `request.seeds` into `collection` for `ctx`'s tenant. Every call is a
    /// new crawl (re-crawls find changed pages; unchanged ones are not embedded again).
    ///
    /// # Errors
    /// `invalid_input` for a bad collection name or request; `unavailable` when the queue is down.
    pub async fn submit_crawl(
        &self,
        ctx: &RequestContext,
        collection: &str,
        request: CrawlRequest,
    ) -> Result<wattos_rag::jobs::Enqueued> {
        validate_collection(collection)?;
        request.validate(&self.settings.crawl)?;
        let payload = CrawlPayload {
            collection: collection.to_owned(),
            request,
            submitted_by: ctx.request_id().as_str().to_owned(),
        };
        let hash = payload.content_hash();
        let value = serde_json::to_value(&payload)
            .map_err(|e| Error::internal("job payload encoding").with_source(e))?;
        self.queue
            .enqueue(
                NewJob::new(ctx.tenant().clone(), CRAWL_JOB_KIND, value).with_content_hash(hash),
            )
            .await
    }

    /// Starts this instance's worker when its role runs jobs; it stops when `shutdown` is
    /// cancelled (after its running jobs finish). The loop beats [`Jobs::heartbeat`]; when it ends
    /// for any other reason (an error, a panic) the heartbeat records why, and readiness fails.
    pub fn spawn_worker(
        &self,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<Result<()>>> {
        if !self.role().runs_jobs() {
            return None;
        }
        let Some(service) = self.service.clone() else {
            tracing::warn!("this instance runs jobs but has no ingestion service; no worker");
            return None;
        };
        let opts = WorkerOptions {
            worker_id: worker_id(),
            concurrency: self.settings.concurrency,
            heartbeat: Some(self.heartbeat.clone()),
        };
        tracing::info!(worker = %opts.worker_id, concurrency = opts.concurrency, "job worker started");
        let handler: Arc<dyn JobHandler> =
            Arc::new(IngestHandler::new(service).with_crawl_settings(self.settings.crawl.clone()));
        Some(spawn_watched(
            self.queue.clone(),
            handler,
            opts,
            self.heartbeat.clone(),
            shutdown,
        ))
    }
}

/// Runs `queue`'s worker loop in a task and records in `heartbeat` why it ended, unless it ended
/// because `shutdown` was cancelled.
fn spawn_watched(
    queue: Arc<dyn JobQueue>,
    handler: Arc<dyn JobHandler>,
    opts: WorkerOptions,
    heartbeat: WorkerHeartbeat,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<Result<()>> {
    use futures::FutureExt;
    heartbeat.beat();
    tokio::spawn(async move {
        let run = std::panic::AssertUnwindSafe(queue.work(handler, opts, shutdown.clone()));
        let ended = run.catch_unwind().await;
        let why = match &ended {
            Ok(Ok(())) if shutdown.is_cancelled() => None,
            Ok(Ok(())) => Some("the worker loop returned".to_owned()),
            Ok(Err(e)) => Some(format!("the worker loop failed: {e}")),
            Err(_) => Some("the worker loop panicked".to_owned()),
        };
        if let Some(why) = why {
            tracing::error!(reason = %why, "job worker stopped; readiness fails");
            heartbeat.mark_stopped(why);
        }
        match ended {
            Ok(result) => result,
            Err(_) => Err(Error::internal("the job worker panicked")),
        }
    })
}

/// `<hostname>/<pid>`: shown in job statuses.
pub fn worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "localhost".into());
    format!("{host}/{}", std::process::id())
}

/// Collection names, as in the RAG API: `^[a-z0-9][a-z0-9_-]{0,63}$`.
///
/// # Errors
/// `invalid_input` naming `collection`.
pub fn validate_collection(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_field(
            "collection",
            "must match ^[a-z0-9][a-z0-9_-]{0,63}$",
        ))
    }
}

/// Checks an ingestion job's collection name and documents.
///
/// # Errors
/// `invalid_input` naming the field at fault.
pub fn validate_submission(collection: &str, documents: &[IngestDocument]) -> Result<()> {
    validate_collection(collection)?;
    validate_documents(documents)
}

/// Most documents one job may carry.
pub const MAX_DOCUMENTS_PER_JOB: usize = 1000;

fn validate_documents(docs: &[IngestDocument]) -> Result<()> {
    if docs.is_empty() {
        return Err(Error::invalid_field("documents", "must not be empty"));
    }
    if docs.len() > MAX_DOCUMENTS_PER_JOB {
        return Err(Error::invalid_field(
            "documents",
            format!("at most {MAX_DOCUMENTS_PER_JOB} per job"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, d) in docs.iter().enumerate() {
        if d.id.is_empty() || d.id.len() > 256 {
            return Err(Error::invalid_field(
                format!("documents[{i}].id"),
                "must be 1-256 bytes",
            ));
        }
        if d.text.trim().is_empty() {
            return Err(Error::invalid_field(
                format!("documents[{i}].text"),
                "must not be empty",
            ));
        }
        if !seen.insert(d.id.as_str()) {
            return Err(Error::invalid_field(
                format!("documents[{i}].id"),
                format!("duplicate id '{}'", d.id),
            ));
        }
    }
    Ok(())
}

/// A summary of an ingestion report, as kept in the job result.
pub(crate) fn report_json(report: &wattos_rag::pipeline::IngestReport) -> Value {
    let failed: Vec<Value> = report
        .failed()
        .into_iter()
        .map(|(id, e)| json!({"document_id": id, "code": e.code(), "message": e.message()}))
        .collect();
    json!({
        "indexed": report.indexed(),
        "unchanged": report.unchanged(),
        "chunks": report.chunks(),
        "failed": failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, text: &str) -> IngestDocument {
        IngestDocument {
            id: id.into(),
            text: text.into(),
            title: None,
            location: None,
            format: None,
            metadata: None,
        }
    }

    #[test]
    fn collection_names_and_documents_are_validated() {
        for good in ["docs", "a", "kb_2024", "1docs", "a-b"] {
            assert!(validate_collection(good).is_ok(), "{good}");
        }
        for bad in ["", "Docs", "-a", "_a", "a b", "a/b", &"x".repeat(65)] {
            assert!(validate_collection(bad).is_err(), "{bad}");
        }
        assert!(validate_documents(&[]).is_err());
        assert!(validate_documents(&[doc("", "x")]).is_err());
        assert!(validate_documents(&[doc("a", "  ")]).is_err());
        assert!(validate_documents(&[doc("a", "x"), doc("a", "y")]).is_err());
        assert!(validate_documents(&[doc("a", "x"), doc("b", "y")]).is_ok());
    }

    #[test]
    fn the_content_hash_covers_collection_ids_and_text() {
        let p = |c: &str, docs: Vec<IngestDocument>| {
            IngestPayload {
                collection: c.into(),
                documents: docs,
            }
            .content_hash()
        };
        let base = p("c", vec![doc("a", "x")]);
        assert_eq!(base, p("c", vec![doc("a", "x")]));
        assert_ne!(base, p("d", vec![doc("a", "x")]));
        assert_ne!(base, p("c", vec![doc("b", "x")]));
        assert_ne!(base, p("c", vec![doc("a", "y")]));
        // Length prefixes: moving bytes between fields changes the hash.
        assert_ne!(p("c", vec![doc("ab", "c")]), p("c", vec![doc("a", "bc")]));
    }

    #[test]
    fn roles_and_settings_are_read_and_checked() {
        let env = vec![
            ("WATTOS_SERVER__ROLE".to_owned(), "worker".to_owned()),
            ("WATTOS_JOBS__ACK_WAIT".to_owned(), "5s".to_owned()),
            ("WATTOS_REDIS__KEY_PREFIX".to_owned(), "t1:".to_owned()),
        ];
        let mut r = ConfigReader::new(None, env);
        let s = JobSettings::read(&mut r);
        assert!(r.problems().is_empty(), "{:?}", r.problems());
        assert_eq!(s.role, ServerRole::Worker);
        assert!(s.role.runs_jobs() && !s.role.serves_api());
        assert_eq!(s.ack_wait, Duration::from_secs(5));
        assert_eq!(s.redis_key_prefix, "t1:");
        let env = vec![
            ("WATTOS_SERVER__ROLE".to_owned(), "boss".to_owned()),
            ("WATTOS_JOBS__CONCURRENCY".to_owned(), "0".to_owned()),
        ];
        let mut r = ConfigReader::new(None, env);
        let _ = JobSettings::read(&mut r);
        let keys: Vec<_> = r.problems().iter().map(|p| p.key.clone()).collect();
        assert!(keys.contains(&"server.role".to_owned()), "{keys:?}");
        assert!(keys.contains(&"jobs.concurrency".to_owned()), "{keys:?}");
    }
}
