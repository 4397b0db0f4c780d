//! In-process state: sliding-window logs, budget counters and a TTL cache behind one mutex each.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wattos_core::Result;
use wattos_core::resilience::{SharedClock, system_clock};
use wattos_core::state::{
    Admission, BudgetLine, BudgetStore, CacheStore, Reservation, StateKey, WindowCharge,
    WindowStore,
};

#[derive(Debug, Default)]
struct Window {
    entries: VecDeque<(Instant, i64)>,
    sum: i64,
}

impl Window {
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some(&(t, n)) = self.entries.front() {
            if now.saturating_duration_since(t) >= window {
                self.entries.pop_front();
                self.sum -= n;
            } else {
                break;
            }
        }
    }

    /// How long until the window sum drops enough to admit `amount` under `limit`.
    fn retry_after(&self, now: Instant, window: Duration, limit: u64, amount: u64) -> Duration {
        let mut sum = self.sum;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let amount = i64::try_from(amount).unwrap_or(i64::MAX);
        for &(t, n) in &self.entries {
            sum -= n;
            if sum.saturating_add(amount) <= limit {
                return (t + window).saturating_duration_since(now);
            }
        }
        window
    }
}

#[derive(Debug, Default)]
struct Inner {
    windows: HashMap<StateKey, Window>,
    budgets: HashMap<StateKey, i64>,
    cache: HashMap<StateKey, (Instant, Vec<u8>)>,
    ops: u64,
}

/// In-memory implementation of every state trait. Clones share state.
///
/// ```
/// use std::time::Duration;
/// use wattos_core::state::{Admission, StateKey, WindowCharge, WindowStore};
/// use wattos_llm::state::MemoryState;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let state = MemoryState::new();
/// let charge = WindowCharge { key: StateKey::shared("rpm", &["d1"]), limit: 1,
///     window: Duration::from_secs(60), amount: 1 };
/// assert_eq!(state.try_acquire(&[charge.clone()]).await?, Admission::Admitted);
/// assert!(matches!(state.try_acquire(&[charge]).await?, Admission::Rejected { .. }));
/// # Ok::<_, wattos_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct MemoryState {
    inner: Arc<Mutex<Inner>>,
    clock: SharedClock,
}

impl Default for MemoryState {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryState {
    /// State on the system clock.
    pub fn new() -> Self {
        Self::with_clock(system_clock())
    }

    /// State on a given clock (tests use a manual clock).
    pub fn with_clock(clock: SharedClock) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops expired cache entries and empty windows every so often so memory stays bounded.
    fn housekeeping(inner: &mut Inner, now: Instant) {
        inner.ops += 1;
        if inner.ops.is_multiple_of(4096) {
            inner.cache.retain(|_, (exp, _)| *exp > now);
            inner.windows.retain(|_, w| !w.entries.is_empty());
        }
    }
}

#[async_trait]
impl WindowStore for MemoryState {
    async fn try_acquire(&self, charges: &[WindowCharge]) -> Result<Admission> {
        let now = self.clock.now();
        let mut inner = self.lock();
        Self::housekeeping(&mut inner, now);
        for (index, c) in charges.iter().enumerate() {
            let w = inner.windows.entry(c.key.clone()).or_default();
            w.expire(now, c.window);
            let after = w
                .sum
                .saturating_add(i64::try_from(c.amount).unwrap_or(i64::MAX));
            if after > i64::try_from(c.limit).unwrap_or(i64::MAX) {
                let retry_after = w.retry_after(now, c.window, c.limit, c.amount);
                return Ok(Admission::Rejected { index, retry_after });
            }
        }
        for c in charges {
            let w = inner.windows.entry(c.key.clone()).or_default();
            let amount = i64::try_from(c.amount).unwrap_or(i64::MAX);
            w.entries.push_back((now, amount));
            w.sum = w.sum.saturating_add(amount);
        }
        Ok(Admission::Admitted)
    }

    async fn adjust(&self, key: &StateKey, window: Duration, delta: i64) -> Result<()> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let w = inner.windows.entry(key.clone()).or_default();
        w.expire(now, window);
        w.entries.push_back((now, delta));
        w.sum = w.sum.saturating_add(delta);
        Ok(())
    }

    async fn current(&self, key: &StateKey, window: Duration) -> Result<i64> {
        let now = self.clock.now();
        let mut inner = self.lock();
        Ok(match inner.windows.get_mut(key) {
            Some(w) => {
                w.expire(now, window);
                w.sum
            }
            None => 0,
        })
    }
}

#[async_trait]
impl BudgetStore for MemoryState {
    async fn reserve(&self, lines: &[BudgetLine], amount_nanos: i64) -> Result<Reservation> {
        let mut inner = self.lock();
        for (index, line) in lines.iter().enumerate() {
            let committed = inner.budgets.get(&line.key).copied().unwrap_or(0);
            if committed.saturating_add(amount_nanos) > line.limit_nanos {
                return Ok(Reservation::Exceeded {
                    index,
                    committed_nanos: committed,
                });
            }
        }
        for line in lines {
            let v = inner.budgets.entry(line.key.clone()).or_insert(0);
            *v = v.saturating_add(amount_nanos);
        }
        Ok(Reservation::Reserved)
    }

    async fn settle(&self, keys: &[StateKey], delta_nanos: i64) -> Result<()> {
        let mut inner = self.lock();
        for k in keys {
            let v = inner.budgets.entry(k.clone()).or_insert(0);
            *v = v.saturating_add(delta_nanos);
        }
        Ok(())
    }

    async fn committed(&self, key: &StateKey) -> Result<i64> {
        Ok(self.lock().budgets.get(key).copied().unwrap_or(0))
    }
}

#[async_trait]
impl CacheStore for MemoryState {
    async fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>> {
        let now = self.clock.now();
        let mut inner = self.lock();
        Self::housekeeping(&mut inner, now);
        match inner.cache.get(key) {
            Some((exp, v)) if *exp > now => Ok(Some(v.clone())),
            Some(_) => {
                inner.cache.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn put(&self, key: &StateKey, value: Vec<u8>, ttl: Duration) -> Result<()> {
        let exp = self.clock.now() + ttl;
        self.lock().cache.insert(key.clone(), (exp, value));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattos_core::resilience::ManualClock;

    fn charge(key: &str, limit: u64, amount: u64) -> WindowCharge {
        WindowCharge {
            key: StateKey::shared("t", &[key]),
            limit,
            window: Duration::from_secs(60),
            amount,
        }
    }

    #[tokio::test]
    async fn window_slides_and_is_all_or_nothing() {
        let clock = ManualClock::new();
        let s = MemoryState::with_clock(Arc::new(clock.clone()));
        assert_eq!(
            s.try_acquire(&[charge("a", 2, 1)]).await.unwrap(),
            Admission::Admitted
        );
        clock.advance(Duration::from_secs(30));
        assert_eq!(
            s.try_acquire(&[charge("a", 2, 1)]).await.unwrap(),
            Admission::Admitted
        );
        // b would pass, a fails: nothing is applied to b
        let r = s
            .try_acquire(&[charge("b", 5, 1), charge("a", 2, 1)])
            .await
            .unwrap();
        assert_eq!(
            r,
            Admission::Rejected {
                index: 1,
                retry_after: Duration::from_secs(30)
            }
        );
        assert_eq!(
            s.current(&StateKey::shared("t", &["b"]), Duration::from_secs(60))
                .await
                .unwrap(),
            0
        );
        clock.advance(Duration::from_secs(30));
        assert_eq!(
            s.try_acquire(&[charge("a", 2, 1)]).await.unwrap(),
            Admission::Admitted
        );
    }

    #[tokio::test]
    async fn budget_reserve_settle() {
        let s = MemoryState::new();
        let line = BudgetLine {
            key: StateKey::shared("b", &["x"]),
            limit_nanos: 100,
            ttl: None,
        };
        assert_eq!(
            s.reserve(std::slice::from_ref(&line), 60).await.unwrap(),
            Reservation::Reserved
        );
        assert!(matches!(
            s.reserve(std::slice::from_ref(&line), 60).await.unwrap(),
            Reservation::Exceeded {
                committed_nanos: 60,
                ..
            }
        ));
        s.settle(std::slice::from_ref(&line.key), -30)
            .await
            .unwrap();
        assert_eq!(s.committed(&line.key).await.unwrap(), 30);
        assert_eq!(
            s.reserve(std::slice::from_ref(&line), 60).await.unwrap(),
            Reservation::Reserved
        );
    }

    #[tokio::test]
    async fn cache_expires() {
        let clock = ManualClock::new();
        let s = MemoryState::with_clock(Arc::new(clock.clone()));
        let k = StateKey::shared("c", &["1"]);
        s.put(&k, b"v".to_vec(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(s.get(&k).await.unwrap().as_deref(), Some(&b"v"[..]));
        clock.advance(Duration::from_secs(5));
        assert_eq!(s.get(&k).await.unwrap(), None);
    }
}
