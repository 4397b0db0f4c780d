//! Rate limits (GCRA, in memory or in Redis). Per-tenant concurrency is
//! [`wattos_core::resilience::Admission`].
//!
//! GCRA with rate `r` per minute and burst `b`: the emission interval is `T = 60 s / r`, a bucket
//! holds `b + 1` requests, and each key stores one number, its theoretical arrival time (TAT). The
//! Redis variant runs the same arithmetic in one Lua script on Redis's own clock, so every process
//! sharing the Redis sees exactly the same decisions.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wattos_core::{Error, Result};

/// A rate: `per_minute` sustained, `burst` extra at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Sustained requests per minute (at least 1).
    pub per_minute: u32,
    /// Extra requests allowed at once.
    pub burst: u32,
}

impl Quota {
    /// Emission interval in microseconds (at least 1, whatever the rate: a rate above one request
    /// per microsecond is clamped there instead of becoming a zero interval).
    fn interval_us(self) -> u64 {
        (60_000_000 / u64::from(self.per_minute.max(1))).max(1)
    }

    /// Bucket capacity.
    pub fn capacity(self) -> u32 {
        self.burst.saturating_add(1)
    }
}

/// A rate-limit decision, with what the `RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Bucket capacity (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests left now (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Until the bucket is full again (`RateLimit-Reset`).
    pub reset: Duration,
    /// When denied: until the next request would be allowed (`Retry-After`).
    pub retry_after: Duration,
}

impl Decision {
    fn from_gcra(quota: Quota, allowed: bool, tat_ahead_us: u64, retry_us: u64) -> Self {
        let t = quota.interval_us();
        let cap = u64::from(quota.capacity());
        let used = tat_ahead_us.div_ceil(t.max(1));
        Self {
            allowed,
            limit: quota.capacity(),
            remaining: u32::try_from(cap.saturating_sub(used)).unwrap_or(0),
            reset: Duration::from_micros(tat_ahead_us),
            retry_after: Duration::from_micros(retry_us),
        }
    }

    /// The `rate_limited` error for a denied decision, carrying `Retry-After`.
    pub fn to_error(&self, what: &str) -> Error {
        Error::rate_limited(format!("{what} rate limit exceeded"))
            .with_retry_after(self.retry_after)
    }
}

/// Decides whether a request under `key` fits `quota`.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes one request from `key`'s bucket if it fits.
    async fn check(&self, key: &str, quota: Quota) -> Result<Decision>;
}

/// GCRA state in process memory.
#[derive(Debug)]
pub struct MemoryRateLimiter {
    epoch: Instant,
    tats: Mutex<HashMap<String, u64>>,
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            tats: Mutex::new(HashMap::new()),
        }
    }
}

impl MemoryRateLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The GCRA step at `now_us` (exposed for deterministic tests).
    pub fn check_at(&self, key: &str, quota: Quota, now_us: u64) -> Decision {
        let t = quota.interval_us();
        let tau = t.saturating_mul(u64::from(quota.capacity()));
        // The map holds plain numbers that are valid after any partial update, so a lock poisoned
        // by a panic elsewhere is taken over as it is: limiting never switches off.
        let mut tats = self.tats.lock().unwrap_or_else(PoisonError::into_inner);
        if tats.len() > 100_000 {
            tats.retain(|_, tat| *tat > now_us);
        }
        let tat = tats.get(key).copied().unwrap_or(now_us).max(now_us);
        let new_tat = tat.saturating_add(t);
        let ahead = new_tat - now_us; // new_tat >= tat >= now_us
        if ahead > tau {
            return Decision::from_gcra(quota, false, tat - now_us, ahead - tau);
        }
        tats.insert(key.to_owned(), new_tat);
        Decision::from_gcra(quota, true, ahead, 0)
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<Decision> {
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        Ok(self.check_at(key, quota, now))
    }
}

#[cfg(feature = "redis")]
pub use redis_limiter::RedisRateLimiter;

#[cfg(feature = "redis")]
mod redis_limiter {
    use async_trait::async_trait;
    use wattos_core::Result;
    use wattos_llm::state::RedisPool;

    use super::{Decision, Quota, RateLimiter};
    use crate::auth::revocation::redis_store_err as redis_err;

    // KEYS[1]: the bucket. ARGV: interval (us), capacity.
    // Returns {allowed, tat_ahead_us, retry_us}. Uses Redis's clock so all clients agree.
    const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > tau then
  return {0, tat - now, new_tat - now - tau}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, new_tat - now, 0}
";

    /// GCRA in Redis: exact across every process sharing the server.
    #[derive(Clone)]
    pub struct RedisRateLimiter {
        conns: RedisPool,
        prefix: String,
        script: redis::Script,
    }

    impl std::fmt::Debug for RedisRateLimiter {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("RedisRateLimiter")
                .field("prefix", &self.prefix)
                .finish_non_exhaustive()
        }
    }

    impl RedisRateLimiter {
        /// Connects to `url`; buckets are keys `<prefix>rl:<key>`.
        ///
        /// # Errors
        /// `unavailable` when Redis cannot be reached.
        pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self> {
            Ok(Self::from_pool(RedisPool::connect(url, 1).await?, prefix))
        }

        /// Spreads checks over the connections of `pool`; buckets are keys `<prefix>rl:<key>`.
        pub fn from_pool(pool: RedisPool, prefix: impl Into<String>) -> Self {
            Self {
                conns: pool,
                prefix: prefix.into(),
                script: redis::Script::new(GCRA),
            }
        }
    }

    #[async_trait]
    impl RateLimiter for RedisRateLimiter {
        async fn check(&self, key: &str, quota: Quota) -> Result<Decision> {
            let mut conn = self.conns.get();
            let (allowed, ahead, retry): (i64, i64, i64) = self
                .script
                .key(format!("{}rl:{key}", self.prefix))
                .arg(quota.interval_us())
                .arg(quota.capacity())
                .invoke_async(&mut conn)
                .await
                .map_err(redis_err)?;
            let u = |v: i64| u64::try_from(v).unwrap_or(0);
            Ok(Decision::from_gcra(quota, allowed == 1, u(ahead), u(retry)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_capacity_then_one_per_interval() {
        let l = MemoryRateLimiter::new();
        let q = Quota {
            per_minute: 60,
            burst: 2,
        };
        let now = 1_000_000_000;
        let d: Vec<_> = (0..4).map(|_| l.check_at("k", q, now)).collect();
        assert_eq!(
            d.iter().map(|d| d.allowed).collect::<Vec<_>>(),
            [true, true, true, false]
        );
        assert_eq!(d[0].remaining, 2);
        assert_eq!(d[2].remaining, 0);
        assert_eq!(d[3].retry_after, Duration::from_secs(1));
        assert!(!l.check_at("k", q, now + 999_999).allowed);
        assert!(l.check_at("k", q, now + 1_000_000).allowed);
        assert!(l.check_at("other", q, now).allowed);
    }

    #[test]
    fn any_rate_is_safe_arithmetic() {
        // 4294967295 rpm once made the interval 0 and `div_ceil` panicked with the lock held.
        let l = MemoryRateLimiter::new();
        for per_minute in [1, 59, 60_000_000, 60_000_001, u32::MAX] {
            for burst in [0, 1, u32::MAX] {
                let q = Quota { per_minute, burst };
                for now in [0, 1, u64::MAX / 2, u64::MAX] {
                    let d = l.check_at("k", q, now);
                    assert!(d.limit >= 1);
                }
            }
        }
        // The limiter still limits afterwards.
        let q = Quota {
            per_minute: 1,
            burst: 0,
        };
        assert!(l.check_at("fresh", q, 5_000_000).allowed);
        assert!(!l.check_at("fresh", q, 5_000_001).allowed);
    }

    #[test]
    fn a_poisoned_lock_keeps_limiting() {
        let l = std::sync::Arc::new(MemoryRateLimiter::new());
        let q = Quota {
            per_minute: 1,
            burst: 0,
        };
        assert!(l.check_at("b", q, 1_000_000).allowed);
        let l2 = l.clone();
        let _ = std::thread::spawn(move || {
            let _guard = l2.tats.lock();
            panic!("poison the limiter");
        })
        .join();
        assert!(l.tats.is_poisoned());
        assert!(
            !l.check_at("b", q, 1_000_001).allowed,
            "fails closed as before"
        );
    }
}
