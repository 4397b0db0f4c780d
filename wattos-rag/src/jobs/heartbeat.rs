//! [`WorkerHeartbeat`]: how a worker loop shows it is alive.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a worker loop beats while it waits (for a job, a free slot or a pull).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Inner {
    /// Unix ms of the last beat; 0 before the first.
    last_beat_ms: AtomicI64,
    /// Why the loop ended, once it ended.
    stopped: Mutex<Option<String>>,
}

/// Shared between a worker loop (which calls [`WorkerHeartbeat::beat`] at least every
/// [`HEARTBEAT_INTERVAL`] while it runs, busy or idle) and whoever watches it (a readiness check).
/// A loop that died or hangs stops beating. Cheap to clone; clones share the state.
#[derive(Debug, Clone, Default)]
pub struct WorkerHeartbeat {
    inner: Arc<Inner>,
}

impl PartialEq for WorkerHeartbeat {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for WorkerHeartbeat {}

impl WorkerHeartbeat {
    /// A heartbeat that has not beaten yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the loop is alive now.
    pub fn beat(&self) {
        self.inner
            .last_beat_ms
            .store(super::now_ms().max(1), Ordering::Relaxed);
    }

    /// How long ago the last beat was; `None` before the first.
    pub fn since_last_beat(&self) -> Option<Duration> {
        let last = self.inner.last_beat_ms.load(Ordering::Relaxed);
        (last > 0)
            .then(|| Duration::from_millis(u64::try_from(super::now_ms() - last).unwrap_or(0)))
    }

    /// Records that the loop ended (returned, failed or panicked) and why.
    pub fn mark_stopped(&self, reason: impl Into<String>) {
        let mut s = self.inner.stopped.lock().unwrap_or_else(|p| p.into_inner());
        *s = Some(reason.into());
    }

    /// Why the loop ended, if it did.
    pub fn stopped(&self) -> Option<String> {
        self.inner
            .stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Beats `heartbeat`, if any.
pub(crate) fn beat(heartbeat: Option<&WorkerHeartbeat>) {
    if let Some(h) = heartbeat {
        h.beat();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_and_stops_are_shared_by_clones() {
        let h = WorkerHeartbeat::new();
        assert_eq!(h.since_last_beat(), None);
        let c = h.clone();
        c.beat();
        assert!(h.since_last_beat().unwrap() < Duration::from_secs(5));
        assert_eq!(h, c);
        assert_ne!(h, WorkerHeartbeat::new());
        assert_eq!(h.stopped(), None);
        c.mark_stopped("consumer deleted");
        assert_eq!(h.stopped().as_deref(), Some("consumer deleted"));
    }
}
