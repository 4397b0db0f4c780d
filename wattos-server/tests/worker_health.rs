//! Readiness follows this instance's job worker: a worker loop that beats keeps the instance
//! ready (idle or busy), one that failed, panicked or stopped beating makes `/health/readiness`
//! answer 503 with a `worker` component saying why.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wattos_core::config::Config;
use wattos_core::{Error, RequestContext, Result, TenantId};
use wattos_rag::jobs::{
    Enqueued, JobHandler, JobId, JobQueue, JobStatus, MemoryJobQueue, NewJob, WorkerOptions,
};
use wattos_server::AppState;
use wattos_server::jobs::{IngestDocument, IngestionService, JobSettings, Jobs};

/// Counts documents; stores nothing.
struct Counting;

#[async_trait]
impl IngestionService for Counting {
    async fn ingest(
        &self,
        _ctx: &RequestContext,
        _collection: &str,
        documents: Vec<IngestDocument>,
    ) -> Result<Value> {
        Ok(json!({"indexed": documents.len()}))
    }
}

/// How the worker loop of [`Broken`] misbehaves.
#[derive(Clone, Copy)]
enum Fault {
    /// Returns an error at once (e.g. its consumer was deleted).
    Fails,
    /// Panics.
    Panics,
    /// Never returns and never beats (stuck in a call that does not time out).
    Hangs,
}

/// A queue whose worker loop misbehaves; enqueue and status go to a memory queue.
struct Broken {
    fault: Fault,
    inner: MemoryJobQueue,
}

#[async_trait]
impl JobQueue for Broken {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        self.inner.enqueue(job).await
    }
    async fn status(&self, tenant: &TenantId, id: &JobId) -> Result<Option<JobStatus>> {
        self.inner.status(tenant, id).await
    }
    async fn work(
        &self,
        _handler: Arc<dyn JobHandler>,
        _opts: WorkerOptions,
        _shutdown: CancellationToken,
    ) -> Result<()> {
        match self.fault {
            Fault::Fails => Err(Error::unavailable("nats: the job consumer was deleted")),
            Fault::Panics => panic!("worker bug"),
            Fault::Hangs => std::future::pending().await,
        }
    }
}

struct Server {
    base: String,
    stop: CancellationToken,
    jobs: Jobs,
}

async fn serve(queue: Arc<dyn JobQueue>) -> Server {
    let dir = std::env::temp_dir().join(format!("wattos-wh-{}", uuid::Uuid::new_v4().simple()));
    let config = Config::from_sources(
        None,
        vec![("WATTOS_DATA_DIR".to_owned(), dir.display().to_string())],
    )
    .unwrap();
    let settings = JobSettings {
        heartbeat_timeout: Duration::from_secs(2),
        ..JobSettings::default()
    };
    let jobs = Jobs::new(queue, Some(Arc::new(Counting)), settings);
    let state = AppState::new(config).with_jobs(Some(jobs.clone()));
    let stop = CancellationToken::new();
    jobs.spawn_worker(stop.child_token()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, wattos_server::app(state)).await });
    Server { base, stop, jobs }
}

async fn readiness(base: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}/health/readiness"))
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Polls readiness until it is `status` (within `within`), returning the body.
async fn until_readiness(base: &str, status: u16, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, body) = readiness(base).await;
        if code == status {
            return body;
        }
        assert!(Instant::now() < deadline, "readiness still {code}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beating_worker_keeps_the_instance_ready_idle_and_busy() {
    let queue = Arc::new(MemoryJobQueue::new());
    let s = serve(queue.clone()).await;
    let (code, body) = readiness(&s.base).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["components"]["worker"]["status"], "healthy", "{body}");
    // Idle for longer than the heartbeat timeout: still ready (the loop beats while it waits).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, body) = readiness(&s.base).await;
    assert_eq!(code, 200, "{body}");
    // And it runs jobs.
    let e = s
        .jobs
        .submit_ingestion(
            &TenantId::new("default").unwrap(),
            "docs",
            vec![IngestDocument {
                id: "a".into(),
                text: "text".into(),
                title: None,
                location: None,
                format: None,
                metadata: None,
            }],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = queue
            .status(&TenantId::new("default").unwrap(), &e.status.id)
            .await
            .unwrap()
            .unwrap();
        if st.state.is_terminal() {
            assert_eq!(st.result, Some(json!({"indexed": 1})));
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A worker stopped by shutdown is not reported as dead (draining handles readiness).
    s.stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.jobs.heartbeat().stopped(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_failed_or_panicked_fails_readiness_at_once() {
    for (fault, why) in [
        (Fault::Fails, "the job consumer was deleted"),
        (Fault::Panics, "panicked"),
    ] {
        let s = serve(Arc::new(Broken {
            fault,
            inner: MemoryJobQueue::new(),
        }))
        .await;
        let body = until_readiness(&s.base, 503, Duration::from_secs(5)).await;
        let worker = &body["components"]["worker"];
        assert_eq!(worker["status"], "unhealthy", "{body}");
        assert!(worker["detail"].as_str().unwrap().contains(why), "{body}");
        assert_eq!(body["ready"], false);
        assert_eq!(body["draining"], false);
        // Liveness is unaffected: restarting is the orchestrator's call, not a probe's.
        let live = reqwest::get(format!("{}/health/liveness", s.base))
            .await
            .unwrap();
        assert_eq!(live.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_worker_fails_readiness_after_the_heartbeat_timeout() {
    let s = serve(Arc::new(Broken {
        fault: Fault::Hangs,
        inner: MemoryJobQueue::new(),
    }))
    .await;
    let started = Instant::now();
    let (code, body) = readiness(&s.base).await;
    assert_eq!(code, 200, "ready before the timeout: {body}");
    let body = until_readiness(&s.base, 503, Duration::from_secs(10)).await;
    assert!(started.elapsed() >= Duration::from_secs(2));
    let detail = body["components"]["worker"]["detail"].as_str().unwrap();
    assert!(detail.contains("no heartbeat"), "{body}");
}
