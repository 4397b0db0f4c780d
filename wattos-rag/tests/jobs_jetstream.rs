//! The JetStream job queue against the machine's NATS server (`NATS_TEST_URL`): acks, redelivery
//! after a worker dies without acking, dead-lettering after bounded retries, idempotency.
#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wattos_core::{Error, Result, TenantId};
use wattos_rag::jobs::{
    JetStreamConfig, JetStreamQueue, Job, JobHandler, JobId, JobQueue, JobState, JobStatus, NewJob,
    RetryPolicy, WorkerHeartbeat, WorkerOptions,
};

fn nats_url() -> Option<String> {
    let url = std::env::var("NATS_TEST_URL").ok();
    if url.is_none() {
        wattos_core::test_utils::skip::skip("JetStream queue", "NATS_TEST_URL is not set");
    }
    url
}

/// Unique stream, subjects and bucket per test, with short timings.
fn config(max_attempts: u32) -> JetStreamConfig {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut cfg = JetStreamConfig::named(
        format!("T_JOBS_{tag}"),
        format!("test.jobs.{tag}"),
        format!("t_status_{tag}"),
    );
    cfg.ack_wait = Duration::from_secs(1);
    cfg.retention = Duration::from_secs(600);
    cfg.retry = RetryPolicy {
        max_attempts,
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    };
    cfg
}

async fn cleanup(url: &str, cfg: &JetStreamConfig) {
    let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    let _ = js.delete_stream(&cfg.stream).await;
    let _ = js.delete_stream(format!("{}_DLQ", cfg.stream)).await;
    let _ = js.delete_stream(&cfg.status_bucket).await;
}

/// What a test handler does with each attempt.
#[derive(Clone, Copy)]
enum Behaviour {
    Succeed,
    FailTransient,
    Hang,
}

/// Counts attempts and applied effects per content hash.
struct Recorder {
    behaviour: Behaviour,
    attempts: Mutex<HashMap<String, u32>>,
    effects: Mutex<HashMap<String, u32>>,
}

impl Recorder {
    fn new(behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            behaviour,
            attempts: Mutex::default(),
            effects: Mutex::default(),
        })
    }
    fn attempts(&self) -> u32 {
        self.attempts.lock().unwrap().values().sum()
    }
    fn effects(&self) -> u32 {
        self.effects.lock().unwrap().values().sum()
    }
}

#[async_trait]
impl JobHandler for Recorder {
    async fn handle(&self, job: &Job) -> Result<Value> {
        *self
            .attempts
            .lock()
            .unwrap()
            .entry(job.content_hash.clone())
            .or_default() += 1;
        match self.behaviour {
            Behaviour::Succeed => {
                *self
                    .effects
                    .lock()
                    .unwrap()
                    .entry(job.content_hash.clone())
                    .or_default() += 1;
                Ok(json!({"attempt": job.attempt}))
            }
            Behaviour::FailTransient => Err(Error::unavailable("embedding service down")),
            Behaviour::Hang => {
                std::future::pending::<()>().await;
                Ok(Value::Null)
            }
        }
    }
}

fn start_worker(
    q: &JetStreamQueue,
    h: Arc<Recorder>,
    name: &str,
) -> (CancellationToken, tokio::task::JoinHandle<Result<()>>) {
    let stop = CancellationToken::new();
    let opts = WorkerOptions {
        worker_id: name.to_owned(),
        concurrency: 2,
        heartbeat: None,
    };
    let task = tokio::spawn({
        let (q, stop) = (q.clone(), stop.clone());
        async move { q.work(h, opts, stop).await }
    });
    (stop, task)
}

async fn wait_for(
    q: &JetStreamQueue,
    t: &TenantId,
    id: &JobId,
    what: impl Fn(&JobStatus) -> bool,
) -> JobStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = q.status(t, id).await.unwrap();
        if let Some(s) = s.filter(|s| what(s)) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never reached the state"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

#[tokio::test]
async fn a_job_runs_once_and_is_acked() {
    let Some(url) = nats_url() else { return };
    let cfg = config(3);
    let q = JetStreamQueue::connect(&url, cfg.clone()).await.unwrap();
    let h = Recorder::new(Behaviour::Succeed);
    let (stop, w) = start_worker(&q, h.clone(), "w1");
    let e = q
        .enqueue(NewJob::new(tenant(), "test", json!({"doc": "a"})))
        .await
        .unwrap();
    assert!(!e.duplicate);
    assert_eq!(e.status.state, JobState::Queued);
    let s = wait_for(&q, &tenant(), &e.status.id, |s| s.state.is_terminal()).await;
    assert_eq!(s.state, JobState::Succeeded);
    assert_eq!(s.attempts, 1);
    assert_eq!(s.worker.as_deref(), Some("w1"));
    assert_eq!(s.result, Some(json!({"attempt": 1})));
    // Acked: the work-queue stream dropped the message, and nothing comes back after ack_wait.
    assert_eq!(q.pending().await.unwrap(), 0);
    tokio::time::sleep(cfg.ack_wait * 2).await;
    assert_eq!((h.attempts(), h.effects()), (1, 1));
    // Another tenant cannot see the job.
    let other = TenantId::new("other").unwrap();
    assert!(q.status(&other, &e.status.id).await.unwrap().is_none());
    stop.cancel();
    w.await.unwrap().unwrap();
    cleanup(&url, &cfg).await;
}

#[tokio::test]
async fn a_job_whose_worker_dies_without_acking_is_redelivered() {
    let Some(url) = nats_url() else { return };
    let cfg = config(3);
    let q = JetStreamQueue::connect(&url, cfg.clone()).await.unwrap();
    let hang = Recorder::new(Behaviour::Hang);
    let (_stop_a, worker_a) = start_worker(&q, hang.clone(), "a");
    let e = q
        .enqueue(NewJob::new(tenant(), "test", json!({"doc": "b"})))
        .await
        .unwrap();
    let running = wait_for(&q, &tenant(), &e.status.id, |s| {
        s.state == JobState::Running
    })
    .await;
    assert_eq!(running.worker.as_deref(), Some("a"));
    // Worker a is alive and heartbeating: no redelivery beyond ack_wait.
    tokio::time::sleep(cfg.ack_wait * 2).await;
    assert_eq!(hang.attempts(), 1);
    // Worker a dies: no ack, no more heartbeats.
    worker_a.abort();
    let _ = worker_a.await;
    let died = Instant::now();
    let ok = Recorder::new(Behaviour::Succeed);
    let (stop_b, worker_b) = start_worker(&q, ok.clone(), "b");
    let s = wait_for(&q, &tenant(), &e.status.id, |s| s.state.is_terminal()).await;
    assert_eq!(s.state, JobState::Succeeded);
    assert_eq!(s.attempts, 2);
    assert_eq!(s.worker.as_deref(), Some("b"));
    assert!(died.elapsed() < Duration::from_secs(10));
    assert_eq!(ok.effects(), 1);
    assert_eq!(q.pending().await.unwrap(), 0);
    stop_b.cancel();
    worker_b.await.unwrap().unwrap();
    cleanup(&url, &cfg).await;
}

#[tokio::test]
async fn a_failing_job_is_dead_lettered_after_max_attempts() {
    let Some(url) = nats_url() else { return };
    let cfg = config(3);
    let q = JetStreamQueue::connect(&url, cfg.clone()).await.unwrap();
    let h = Recorder::new(Behaviour::FailTransient);
    let (stop, w) = start_worker(&q, h.clone(), "w");
    let e = q
        .enqueue(NewJob::new(tenant(), "test", json!({"doc": "c"})))
        .await
        .unwrap();
    let s = wait_for(&q, &tenant(), &e.status.id, |s| s.state.is_terminal()).await;
    assert_eq!(s.state, JobState::DeadLettered);
    assert_eq!(s.attempts, 3);
    assert!(
        s.error
            .as_deref()
            .unwrap()
            .contains("embedding service down")
    );
    assert_eq!(h.attempts(), 3);
    assert_eq!(q.dead_letter_count().await.unwrap(), 1);
    assert_eq!(q.pending().await.unwrap(), 0);
    // Once dead-lettered, the same job may be submitted again (and fails again here).
    let again = q
        .enqueue(NewJob::new(tenant(), "test", json!({"doc": "c"})))
        .await
        .unwrap();
    assert!(!again.duplicate);
    assert_eq!(again.status.state, JobState::Queued);
    let s = wait_for(&q, &tenant(), &e.status.id, |s| s.state.is_terminal()).await;
    assert_eq!(s.state, JobState::DeadLettered);
    assert_eq!(q.dead_letter_count().await.unwrap(), 2);
    stop.cancel();
    w.await.unwrap().unwrap();
    cleanup(&url, &cfg).await;
}

#[tokio::test]
async fn a_job_whose_worker_dies_on_the_last_attempt_is_dead_lettered_without_running_again() {
    let Some(url) = nats_url() else { return };
    let cfg = config(1);
    let q = JetStreamQueue::connect(&url, cfg.clone()).await.unwrap();
    let hang = Recorder::new(Behaviour::Hang);
    let (_stop_a, worker_a) = start_worker(&q, hang.clone(), "a");
    let e = q
        .enqueue(NewJob::new(tenant(), "test", json!({"doc": "poison"})))
        .await
        .unwrap();
    wait_for(&q, &tenant(), &e.status.id, |s| {
        s.state == JobState::Running
    })
    .await;
    worker_a.abort();
    let _ = worker_a.await;
    let b = Recorder::new(Behaviour::Succeed);
    let (stop_b, worker_b) = start_worker(&q, b.clone(), "b");
    let s = wait_for(&q, &tenant(), &e.status.id, |s| s.state.is_terminal()).await;
    assert_eq!(s.state, JobState::DeadLettered);
    assert!(s.error.unwrap().contains("worker lost"));
    assert_eq!(b.attempts(), 0, "a poison job must not run again");
    assert_eq!(q.dead_letter_count().await.unwrap(), 1);
    stop_b.cancel();
    worker_b.await.unwrap().unwrap();
    cleanup(&url, &cfg).await;
}

#[tokio::test]
async fn the_same_content_is_one_job_and_a_redelivered_success_changes_nothing() {
    let Some(url) = nats_url() else { return };
    let cfg = config(3);
    let q = JetStreamQueue::connect(&url, cfg.clone()).await.unwrap();
    let h = Recorder::new(Behaviour::Succeed);
    // Enqueued twice before any worker runs: one job, one message.
    let first = q
        .enqueue(NewJob::new(tenant(), "test", json!({"doc": "d"})))
        .await
        .unwrap();
    let second = q
        .enqueue(NewJob::new(tenant(), "test", json!({"doc": "d"})))
        .await
        .unwrap();
    assert!(second.duplicate);
    assert_eq!(first.status.id, second.status.id);
    assert_eq!(q.pending().await.unwrap(), 1);
    let (stop, w) = start_worker(&q, h.clone(), "w");
    let s = wait_for(&q, &tenant(), &first.status.id, |s| s.state.is_terminal()).await;
    assert_eq!(s.state, JobState::Succeeded);
    // After success, the same content is still the same (done) job.
    let third = q
        .enqueue(NewJob::new(tenant(), "test", json!({"doc": "d"})))
        .await
        .unwrap();
    assert!(third.duplicate);
    assert_eq!(third.status.state, JobState::Succeeded);
    // A delivery of the finished job (as after a worker died between recording success and
    // acking) is acked without running the handler.
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let job = Job {
        id: first.status.id.clone(),
        tenant: tenant(),
        kind: "test".into(),
        payload: json!({"doc": "d"}),
        content_hash: first.status.content_hash.clone(),
        attempt: 0,
    };
    js.publish(
        format!("{}.queue", cfg.subject_prefix),
        serde_json::to_vec(&job).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while q.pending().await.unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "the redelivered job was not acked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((h.attempts(), h.effects()), (1, 1));
    let s = q
        .status(&tenant(), &first.status.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((s.state, s.attempts), (JobState::Succeeded, 1));
    stop.cancel();
    w.await.unwrap().unwrap();
    cleanup(&url, &cfg).await;
}

/// Samples `h` for `span`: the longest gap since the last beat seen meanwhile.
async fn longest_gap(h: &WorkerHeartbeat, span: Duration) -> Duration {
    let until = Instant::now() + span;
    let mut worst = Duration::ZERO;
    while Instant::now() < until {
        worst = worst.max(h.since_last_beat().expect("the worker never beat"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worst
}

#[tokio::test]
async fn the_worker_loop_beats_while_idle_and_while_every_slot_is_busy() {
    let Some(url) = nats_url() else { return };
    let cfg = config(3);
    let q = JetStreamQueue::connect(&url, cfg.clone()).await.unwrap();
    let heartbeat = WorkerHeartbeat::new();
    let stop = CancellationToken::new();
    let opts = WorkerOptions {
        worker_id: "beating".into(),
        concurrency: 1,
        heartbeat: Some(heartbeat.clone()),
    };
    let hang = Recorder::new(Behaviour::Hang);
    let w = tokio::spawn({
        let (q, stop, h) = (q.clone(), stop.clone(), hang.clone());
        async move { q.work(h, opts, stop).await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while heartbeat.since_last_beat().is_none() {
        assert!(Instant::now() < deadline, "the worker never beat");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Idle: pulls expire and come back empty; the loop keeps beating.
    let idle = longest_gap(&heartbeat, Duration::from_secs(3)).await;
    // Busy: its only slot holds a job that never finishes.
    let e = q
        .enqueue(NewJob::new(tenant(), "test", json!({"doc": "forever"})))
        .await
        .unwrap();
    wait_for(&q, &tenant(), &e.status.id, |s| {
        s.state == JobState::Running
    })
    .await;
    let busy = longest_gap(&heartbeat, Duration::from_secs(3)).await;
    let limit = wattos_rag::jobs::HEARTBEAT_INTERVAL + Duration::from_millis(900);
    assert!(idle < limit && busy < limit, "idle {idle:?}, busy {busy:?}");
    assert_eq!(heartbeat.stopped(), None);
    // The hanging job never ends, so the worker cannot drain: abort it.
    stop.cancel();
    w.abort();
    let _ = w.await;
    cleanup(&url, &cfg).await;
}
