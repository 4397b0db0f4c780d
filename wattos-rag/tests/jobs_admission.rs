//! Admission of jobs: per-tenant and global limits on outstanding jobs, slots given back when a
//! job ends (succeeded, or dead-lettered by a permanent error or its last attempt), and for
//! duplicates, never while a job is still retrying.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wattos_core::{Error, ErrorKind, Result, TenantId};
use wattos_llm::state::MemoryState;
use wattos_rag::jobs::{
    AdmittedQueue, Job, JobHandler, JobId, JobLimits, JobQueue, JobState, MemoryJobQueue, NewJob,
    RetryPolicy, WorkerOptions,
};

/// Holds every job until `open`; then fails kind `bad` permanently, kind `flaky` on every
/// attempt (retryable), and succeeds for the rest.
struct Gate {
    open: AtomicBool,
}

#[async_trait]
impl JobHandler for Gate {
    async fn handle(&self, job: &Job) -> Result<Value> {
        while !self.open.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match job.kind.as_str() {
            "bad" => Err(Error::invalid_input("bad job")),
            "flaky" => Err(Error::unavailable("try again")),
            _ => Ok(json!({"ok": true})),
        }
    }
}

fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(10),
    }
}

fn job(tenant: &TenantId, kind: &str, n: u32) -> NewJob {
    NewJob::new(tenant.clone(), kind, json!({"n": n}))
}

async fn wait_ended(q: &AdmittedQueue, t: &TenantId, id: &JobId) -> JobState {
    for _ in 0..400 {
        let s = q.status(t, id).await.unwrap().unwrap();
        if s.state.is_terminal() {
            return s.state;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} did not end");
}

#[tokio::test]
async fn outstanding_jobs_are_limited_per_tenant_and_globally_and_released_when_they_end() {
    let counters = Arc::new(MemoryState::new());
    let q = AdmittedQueue::new(
        Arc::new(MemoryJobQueue::with_policy(retry())),
        counters,
        JobLimits {
            per_tenant: 2,
            global: 3,
            retry_after: Duration::from_secs(7),
            ..JobLimits::default()
        },
        retry(),
    );
    let (acme, globex) = (
        TenantId::new("acme").unwrap(),
        TenantId::new("globex").unwrap(),
    );
    let a1 = q.enqueue(job(&acme, "ok", 1)).await.unwrap();
    let a2 = q.enqueue(job(&acme, "bad", 2)).await.unwrap();
    // A duplicate of a counted job is accepted and counts nothing more.
    assert!(q.enqueue(job(&acme, "ok", 1)).await.unwrap().duplicate);
    assert_eq!(q.outstanding(&acme).await.unwrap(), 2);
    // The tenant's third is refused, with Retry-After, and nothing is queued.
    let err = q.enqueue(job(&acme, "ok", 3)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    let refused = job(&acme, "ok", 3).id();
    assert!(q.status(&acme, &refused).await.unwrap().is_none());
    // Another tenant has room until the global limit (3) is reached.
    let g1 = q.enqueue(job(&globex, "flaky", 1)).await.unwrap();
    let err = q.enqueue(job(&globex, "ok", 2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert!(err.message().contains("the server"), "{err}");

    // Work: a success and a permanent failure end at once; the flaky job retries until its last
    // attempt. Each slot comes back when its job ends, and not while it is held.
    let q = Arc::new(q);
    let gate = Arc::new(Gate {
        open: AtomicBool::new(false),
    });
    let stop = CancellationToken::new();
    let worker = tokio::spawn({
        let (q, stop) = (q.clone(), stop.clone());
        let handler: Arc<dyn JobHandler> = gate.clone();
        let opts = WorkerOptions {
            concurrency: 4,
            ..WorkerOptions::default()
        };
        async move { q.work(handler, opts, stop).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        q.outstanding(&acme).await.unwrap(),
        2,
        "held jobs still count"
    );
    gate.open.store(true, Ordering::SeqCst);
    assert_eq!(
        wait_ended(&q, &acme, &a1.status.id).await,
        JobState::Succeeded
    );
    assert_eq!(
        wait_ended(&q, &acme, &a2.status.id).await,
        JobState::DeadLettered
    );
    assert_eq!(
        wait_ended(&q, &globex, &g1.status.id).await,
        JobState::DeadLettered
    );
    assert_eq!(q.outstanding(&acme).await.unwrap(), 0);
    assert_eq!(q.outstanding(&globex).await.unwrap(), 0);
    // Room again for both.
    q.enqueue(job(&acme, "ok", 3)).await.unwrap();
    q.enqueue(job(&globex, "ok", 2)).await.unwrap();
    stop.cancel();
    worker.await.unwrap().unwrap();
}
