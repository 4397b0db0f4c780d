//! The in-process job queue of the embedded mode.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wattos_core::{Error, Result, TenantId};

use super::{
    AfterFailure, Enqueued, JobHandler, JobId, JobQueue, JobState, JobStatus, NewJob, RetryPolicy,
    WorkerOptions, after_failure, error_text, job_metrics, now_ms,
};

/// Jobs in process memory: correct for one instance (same retry, dead-letter and idempotency rules
/// as the JetStream queue), lost on restart. Cheap to clone.
#[derive(Clone, Default)]
pub struct MemoryJobQueue {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    ready: Notify,
    policy: RetryPolicy,
}

#[derive(Default)]
struct State {
    statuses: HashMap<JobId, JobStatus>,
    payloads: HashMap<JobId, Value>,
    queue: VecDeque<JobId>,
    dead: Vec<JobId>,
}

impl std::fmt::Debug for MemoryJobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryJobQueue")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl MemoryJobQueue {
    /// An empty queue with the default [`RetryPolicy`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty queue with `policy`.
    pub fn with_policy(policy: RetryPolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                policy,
                ..Inner::default()
            }),
        }
    }

    /// The dead-lettered jobs, oldest first.
    pub fn dead_letters(&self) -> Vec<JobStatus> {
        let Ok(s) = self.lock() else {
            return Vec::new();
        };
        s.dead
            .iter()
            .filter_map(|id| s.statuses.get(id).cloned())
            .collect()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.inner
            .state
            .lock()
            .map_err(|_| Error::internal("job queue lock poisoned"))
    }

    fn push(&self, id: JobId) {
        if let Ok(mut s) = self.lock() {
            s.queue.push_back(id);
        }
        self.inner.ready.notify_one();
    }

    fn update(&self, id: &JobId, f: impl FnOnce(&mut JobStatus)) {
        if let Ok(mut s) = self.lock()
            && let Some(st) = s.statuses.get_mut(id)
        {
            f(st);
            st.updated_at_ms = now_ms();
        }
    }

    async fn run_one(&self, id: JobId, handler: Arc<dyn JobHandler>, worker: String) {
        let job = {
            let Ok(mut s) = self.lock() else { return };
            let Some(payload) = s.payloads.get(&id).cloned() else {
                return;
            };
            let Some(st) = s.statuses.get_mut(&id) else {
                return;
            };
            if st.state.is_terminal() {
                return;
            }
            st.state = JobState::Running;
            st.attempts += 1;
            st.worker = Some(worker);
            st.updated_at_ms = now_ms();
            let mut job = st.job(payload);
            job.attempt = st.attempts;
            job
        };
        match handler.handle(&job).await {
            Ok(result) => {
                self.update(&id, |st| {
                    st.state = JobState::Succeeded;
                    st.result = Some(result);
                    st.error = None;
                });
                if let Ok(mut s) = self.lock() {
                    s.payloads.remove(&id);
                }
                job_metrics(&job.kind, "succeeded");
            }
            Err(e) => match after_failure(&self.inner.policy, job.attempt, &e) {
                AfterFailure::Retry(delay) => {
                    self.update(&id, |st| {
                        st.state = JobState::Retrying;
                        st.error = Some(error_text(&e));
                    });
                    job_metrics(&job.kind, "retried");
                    let queue = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        queue.push(id);
                    });
                }
                AfterFailure::DeadLetter => {
                    tracing::warn!(job = %id, error = %e, "job dead-lettered");
                    self.update(&id, |st| {
                        st.state = JobState::DeadLettered;
                        st.error = Some(error_text(&e));
                    });
                    if let Ok(mut s) = self.lock() {
                        s.dead.push(id);
                    }
                    job_metrics(&job.kind, "dead_lettered");
                }
            },
        }
    }
}

#[async_trait]
impl JobQueue for MemoryJobQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let id = job.id();
        {
            let mut s = self.lock()?;
            if let Some(existing) = s.statuses.get(&id)
                && existing.state != JobState::DeadLettered
            {
                return Ok(Enqueued {
                    status: existing.clone(),
                    duplicate: true,
                });
            }
            s.dead.retain(|d| *d != id);
            s.statuses.insert(id.clone(), JobStatus::queued(&job));
            s.payloads.insert(id.clone(), job.payload.clone());
        }
        self.push(id.clone());
        let status = self
            .lock()?
            .statuses
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::internal("job vanished after enqueue"))?;
        Ok(Enqueued {
            status,
            duplicate: false,
        })
    }

    async fn status(&self, tenant: &TenantId, id: &JobId) -> Result<Option<JobStatus>> {
        Ok(self
            .lock()?
            .statuses
            .get(id)
            .filter(|s| s.tenant == *tenant)
            .cloned())
    }

    async fn work(
        &self,
        handler: Arc<dyn JobHandler>,
        opts: WorkerOptions,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let slots = Arc::new(Semaphore::new(opts.concurrency.max(1)));
        let mut running = JoinSet::new();
        let heartbeat = opts.heartbeat.as_ref();
        let mut ticker = tokio::time::interval(super::HEARTBEAT_INTERVAL);
        'outer: loop {
            super::heartbeat::beat(heartbeat);
            let permit = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break 'outer,
                    p = slots.clone().acquire_owned() => break p.map_err(|_| Error::internal("worker slots closed"))?,
                    _ = ticker.tick() => super::heartbeat::beat(heartbeat),
                }
            };
            let next = loop {
                let popped = self.lock()?.queue.pop_front();
                if let Some(id) = popped {
                    break Some(id);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break None,
                    _ = self.inner.ready.notified() => {}
                    _ = ticker.tick() => super::heartbeat::beat(heartbeat),
                }
            };
            let Some(id) = next else { break };
            let queue = self.clone();
            let handler = handler.clone();
            let worker = opts.worker_id.clone();
            running.spawn(async move {
                queue.run_one(id, handler, worker).await;
                drop(permit);
            });
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::jobs::Job;

    /// Fails the first `fail` attempts of every job with `error`, then succeeds; counts effects.
    struct Flaky {
        fail: u32,
        error: fn() -> Error,
        effects: AtomicU32,
    }

    #[async_trait]
    impl JobHandler for Flaky {
        async fn handle(&self, job: &Job) -> Result<Value> {
            if job.attempt <= self.fail {
                return Err((self.error)());
            }
            self.effects.fetch_add(1, Ordering::SeqCst);
            Ok(json!({"attempt": job.attempt}))
        }
    }

    async fn wait_terminal(q: &MemoryJobQueue, t: &TenantId, id: &JobId) -> JobStatus {
        for _ in 0..200 {
            let s = q.status(t, id).await.unwrap().unwrap();
            if s.state.is_terminal() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("job {id} did not finish");
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        }
    }

    #[tokio::test]
    async fn the_idle_worker_keeps_beating_and_stops_beating_when_it_ends() {
        let q = MemoryJobQueue::with_policy(policy());
        let heartbeat = crate::jobs::WorkerHeartbeat::new();
        let h = Arc::new(Flaky {
            fail: 0,
            error: || Error::unavailable("flaky"),
            effects: AtomicU32::new(0),
        });
        let stop = CancellationToken::new();
        let opts = WorkerOptions {
            heartbeat: Some(heartbeat.clone()),
            ..WorkerOptions::default()
        };
        let w = tokio::spawn({
            let (q, stop) = (q.clone(), stop.clone());
            async move { q.work(h, opts, stop).await }
        });
        let mut worst = Duration::ZERO;
        for _ in 0..25 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            worst = worst.max(heartbeat.since_last_beat().expect("never beat"));
        }
        assert!(worst < Duration::from_millis(1900), "{worst:?}");
        stop.cancel();
        w.await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(heartbeat.since_last_beat().unwrap() >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn retries_then_succeeds_once_and_deduplicates() {
        let q = MemoryJobQueue::with_policy(policy());
        let h = Arc::new(Flaky {
            fail: 2,
            error: || Error::unavailable("flaky"),
            effects: AtomicU32::new(0),
        });
        let stop = CancellationToken::new();
        let w = tokio::spawn({
            let (q, h, stop) = (q.clone(), h.clone(), stop.clone());
            async move { q.work(h, WorkerOptions::default(), stop).await }
        });
        let t = TenantId::new("acme").unwrap();
        let e = q
            .enqueue(NewJob::new(t.clone(), "k", json!({"doc": 1})))
            .await
            .unwrap();
        assert!(!e.duplicate);
        let done = wait_terminal(&q, &t, &e.status.id).await;
        assert_eq!(done.state, JobState::Succeeded);
        assert_eq!(done.attempts, 3);
        assert_eq!(done.result, Some(json!({"attempt": 3})));
        let again = q
            .enqueue(NewJob::new(t.clone(), "k", json!({"doc": 1})))
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.status.state, JobState::Succeeded);
        let other = TenantId::new("other").unwrap();
        assert!(q.status(&other, &e.status.id).await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.effects.load(Ordering::SeqCst), 1);
        stop.cancel();
        w.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn dead_letters_after_max_attempts_or_at_once_when_permanent() {
        let q = MemoryJobQueue::with_policy(policy());
        let stop = CancellationToken::new();
        let t = TenantId::new("acme").unwrap();
        let transient = Arc::new(Flaky {
            fail: u32::MAX,
            error: || Error::unavailable("down"),
            effects: AtomicU32::new(0),
        });
        let w = tokio::spawn({
            let (q, stop) = (q.clone(), stop.clone());
            async move { q.work(transient, WorkerOptions::default(), stop).await }
        });
        let e = q
            .enqueue(NewJob::new(t.clone(), "k", json!(1)))
            .await
            .unwrap();
        let s = wait_terminal(&q, &t, &e.status.id).await;
        assert_eq!((s.state, s.attempts), (JobState::DeadLettered, 3));
        assert!(s.error.unwrap().starts_with("unavailable"));
        assert_eq!(q.dead_letters().len(), 1);
        stop.cancel();
        w.await.unwrap().unwrap();

        let stop = CancellationToken::new();
        let permanent = Arc::new(Flaky {
            fail: u32::MAX,
            error: || Error::invalid_input("bad document"),
            effects: AtomicU32::new(0),
        });
        let w = tokio::spawn({
            let (q, stop) = (q.clone(), stop.clone());
            async move { q.work(permanent, WorkerOptions::default(), stop).await }
        });
        let e = q
            .enqueue(NewJob::new(t.clone(), "k", json!(2)))
            .await
            .unwrap();
        let s = wait_terminal(&q, &t, &e.status.id).await;
        assert_eq!((s.state, s.attempts), (JobState::DeadLettered, 1));
        // A dead-lettered job may be enqueued again.
        let again = q
            .enqueue(NewJob::new(t.clone(), "k", json!(2)))
            .await
            .unwrap();
        assert!(!again.duplicate);
        stop.cancel();
        w.await.unwrap().unwrap();
    }
}
