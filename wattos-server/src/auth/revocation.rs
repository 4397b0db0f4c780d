//! Revocation stores: in memory (embedded) and Redis with TTL (shared, feature `redis`).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::SystemTime;

use async_trait::async_trait;
use wattos_core::Result;
use wattos_core::tenancy::RevocationStore;

/// Revoked ids in process memory; entries are dropped once past their expiry.
#[derive(Debug, Default)]
pub struct MemoryRevocations {
    entries: RwLock<HashMap<String, SystemTime>>,
}

impl MemoryRevocations {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RevocationStore for MemoryRevocations {
    async fn revoke(&self, id: &str, until: SystemTime) -> Result<()> {
        // A lock poisoned by a panic elsewhere is taken over: a revocation is never skipped.
        let mut m = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let now = SystemTime::now();
        if m.len() > 10_000 {
            m.retain(|_, u| *u > now);
        }
        m.insert(id.to_owned(), until);
        Ok(())
    }

    async fn is_revoked(&self, id: &str) -> Result<bool> {
        Ok(self
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .is_some_and(|until| *until > SystemTime::now()))
    }
}

#[cfg(feature = "redis")]
pub use redis_store::RedisRevocations;
#[cfg(feature = "redis")]
pub(crate) use redis_store::redis_err as redis_store_err;

#[cfg(feature = "redis")]
mod redis_store {
    use std::time::SystemTime;

    use async_trait::async_trait;
    use redis::AsyncCommands;
    use wattos_core::tenancy::RevocationStore;
    use wattos_core::{Error, Result};
    use wattos_llm::state::RedisPool;

    /// Revoked ids as Redis keys `<prefix>revoked:<id>` expiring with the credential.
    #[derive(Clone)]
    pub struct RedisRevocations {
        conns: RedisPool,
        prefix: String,
    }

    impl std::fmt::Debug for RedisRevocations {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("RedisRevocations")
                .field("prefix", &self.prefix)
                .finish_non_exhaustive()
        }
    }

    pub(crate) fn redis_err(e: redis::RedisError) -> Error {
        Error::unavailable("redis unavailable").with_source(e)
    }

    impl RedisRevocations {
        /// Connects to `url`; every key is prefixed with `prefix` (e.g. `wattos:`).
        ///
        /// # Errors
        /// `unavailable` when Redis cannot be reached.
        pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self> {
            Ok(Self::from_pool(RedisPool::connect(url, 1).await?, prefix))
        }

        /// Spreads lookups over the connections of `pool`; keys are `<prefix>revoked:<id>`.
        pub fn from_pool(pool: RedisPool, prefix: impl Into<String>) -> Self {
            Self {
                conns: pool,
                prefix: prefix.into(),
            }
        }
    }

    #[async_trait]
    impl RevocationStore for RedisRevocations {
        async fn revoke(&self, id: &str, until: SystemTime) -> Result<()> {
            let ttl_ms = until
                .duration_since(SystemTime::now())
                .map_or(0, |d| d.as_millis())
                .max(1);
            let ttl_ms = u64::try_from(ttl_ms).unwrap_or(u64::MAX);
            let mut conn = self.conns.get();
            let _: () = conn
                .pset_ex(format!("{}revoked:{id}", self.prefix), 1, ttl_ms)
                .await
                .map_err(redis_err)?;
            Ok(())
        }

        async fn is_revoked(&self, id: &str) -> Result<bool> {
            let mut conn = self.conns.get();
            conn.exists(format!("{}revoked:{id}", self.prefix))
                .await
                .map_err(redis_err)
        }
    }
}
