//! The local model's wait queue: one generation runs at a time, and a request that would wait
//! longer than its deadline allows (or finds the queue full) is refused at once with 503
//! `unavailable` and a `Retry-After`, instead of waiting until its deadline passes.
//!
//! The expected wait is the number of requests ahead (queued and running) times the recent
//! generation time (an exponentially weighted moving average of finished generations). Refusals
//! are [`Error::overloaded`]: a router in front does not count them against the model's circuit
//! breaker (a busy model is not a broken one).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wattos_core::{Error, Result};

/// Requests that may wait for (or hold) the model at once by default.
pub const DEFAULT_MAX_QUEUE: usize = 64;

/// Margin kept before a request's deadline: a refusal must reach the client before the server's
/// own request timeout answers 504.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

#[derive(Debug)]
struct Inner {
    max_queue: usize,
    /// Requests queued or generating.
    present: AtomicUsize,
    /// Moving average of a generation's duration, in microseconds (0 until one finished).
    avg_us: AtomicU64,
}

/// See the module docs. Clones share the queue.
#[derive(Debug, Clone)]
pub struct WaitQueue {
    name: Arc<str>,
    inner: Arc<Inner>,
}

/// A place in the queue; dropping it leaves the queue.
#[derive(Debug)]
pub struct QueueTicket {
    inner: Arc<Inner>,
}

impl Drop for QueueTicket {
    fn drop(&mut self) {
        self.inner.present.fetch_sub(1, Ordering::AcqRel);
    }
}

impl QueueTicket {
    /// Records how long this request's generation took (feeds the expected wait of later ones).
    pub fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.inner.avg_us.load(Ordering::Relaxed);
        // Weight 1/4 for the newest sample: follows a change of load within a few requests.
        let new = if old == 0 {
            us
        } else {
            old.saturating_mul(3).saturating_add(us) / 4
        };
        self.inner.avg_us.store(new, Ordering::Relaxed);
    }
}

impl WaitQueue {
    /// A queue for model `name` admitting at most `max_queue` requests at once (at least 1).
    pub fn new(name: impl Into<Arc<str>>, max_queue: usize) -> Self {
        Self {
            name: name.into(),
            inner: Arc::new(Inner {
                max_queue: max_queue.max(1),
                present: AtomicUsize::new(0),
                avg_us: AtomicU64::new(0),
            }),
        }
    }

    /// Requests queued or generating now.
    pub fn len(&self) -> usize {
        self.inner.present.load(Ordering::Acquire)
    }

    /// Whether no request is queued or generating.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The recent generation time (zero before the first finished generation).
    pub fn average_generation(&self) -> Duration {
        Duration::from_micros(self.inner.avg_us.load(Ordering::Relaxed))
    }

    /// How long a request joining now is expected to wait before it generates.
    pub fn expected_wait(&self) -> Duration {
        let ahead = u32::try_from(self.len()).unwrap_or(u32::MAX);
        self.average_generation().saturating_mul(ahead)
    }

    /// Joins the queue, or refuses at once when it is full or the expected wait (plus a margin)
    /// does not fit before `deadline`.
    ///
    /// # Errors
    /// `unavailable` (503) with a `Retry-After` of the expected wait (at least a second).
    pub fn join(&self, deadline: Option<Instant>) -> Result<QueueTicket> {
        let wait = self.expected_wait();
        let retry_after = wait.max(Duration::from_secs(1));
        let before = self.inner.present.fetch_add(1, Ordering::AcqRel);
        let ticket = QueueTicket {
            inner: self.inner.clone(),
        };
        if before >= self.inner.max_queue {
            return Err(Error::overloaded(
                format!(
                    "{} is busy: {before} requests are waiting for it (limit {})",
                    self.name, self.inner.max_queue
                ),
                retry_after,
            ));
        }
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if wait + DEADLINE_MARGIN > left {
                return Err(Error::overloaded(
                    format!(
                        "{} is busy: the expected wait ({} ms) exceeds the request's deadline ({} ms left)",
                        self.name,
                        wait.as_millis(),
                        left.as_millis()
                    ),
                    retry_after,
                ));
            }
        }
        Ok(ticket)
    }

    /// The refusal for a request whose deadline passed while it waited for the model.
    pub fn deadline_error(&self) -> Error {
        Error::overloaded(
            format!(
                "{} is busy: the request's deadline passed while it waited",
                self.name
            ),
            self.expected_wait().max(Duration::from_secs(1)),
        )
    }

    /// The instant to stop waiting for the model, for a request with `deadline`.
    pub fn wait_until(deadline: Option<Instant>) -> Option<Instant> {
        deadline.map(|d| d.checked_sub(DEADLINE_MARGIN).unwrap_or(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattos_core::ErrorKind;

    #[test]
    fn refuses_when_full_or_when_the_wait_exceeds_the_deadline() {
        let q = WaitQueue::new("m", 3);
        // Nothing measured yet: no expected wait, admitted whatever the deadline.
        let a = q
            .join(Some(Instant::now() + Duration::from_secs(1)))
            .unwrap();
        a.record(Duration::from_secs(2));
        assert_eq!(q.average_generation(), Duration::from_secs(2));
        // One ahead at 2 s each: a 1 s deadline cannot be met, a 10 s one can.
        let e = q
            .join(Some(Instant::now() + Duration::from_secs(1)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        // Load shedding, not a failure: a router's breaker does not count it.
        assert!(e.is_load_shed() && !e.is_dependency_failure());
        assert_eq!(q.len(), 1, "a refused request leaves the queue");
        let b = q
            .join(Some(Instant::now() + Duration::from_secs(10)))
            .unwrap();
        let c = q.join(None).unwrap();
        // Full (3 present).
        let e = q.join(None).unwrap_err();
        assert!(e.message().contains("limit 3"), "{e}");
        drop((a, b, c));
        assert!(q.is_empty());
        // The average follows new samples.
        let d = q.join(None).unwrap();
        d.record(Duration::from_secs(6));
        assert_eq!(q.average_generation(), Duration::from_secs(3));
    }
}
