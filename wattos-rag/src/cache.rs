//! Tenant-scoped query result caches, invalidated whenever that tenant's index changes.
//!
//! Keys are always combined with the tenant id inside the cache, so one tenant can never read
//! another's entries even with an identical query.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use wattos_core::vector_store::Hit;
use wattos_core::{Error, RequestContext, Result};

/// Caches search results per tenant.
#[async_trait]
pub trait QueryCache: Send + Sync {
    /// The cached hits for `key` in the caller's tenant.
    ///
    /// # Errors
    /// Backend failures (callers treat them as a miss).
    async fn get(&self, ctx: &RequestContext, key: &str) -> Result<Option<Vec<Hit>>>;

    /// Stores hits for `key` in the caller's tenant.
    ///
    /// # Errors
    /// Backend failures.
    async fn put(&self, ctx: &RequestContext, key: &str, hits: &[Hit]) -> Result<()>;

    /// Drops every entry of the caller's tenant (called after each index change).
    ///
    /// # Errors
    /// Backend failures.
    async fn invalidate(&self, ctx: &RequestContext) -> Result<()>;
}

#[async_trait]
impl<T: QueryCache + ?Sized> QueryCache for std::sync::Arc<T> {
    async fn get(&self, ctx: &RequestContext, key: &str) -> Result<Option<Vec<Hit>>> {
        (**self).get(ctx, key).await
    }
    async fn put(&self, ctx: &RequestContext, key: &str, hits: &[Hit]) -> Result<()> {
        (**self).put(ctx, key, hits).await
    }
    async fn invalidate(&self, ctx: &RequestContext) -> Result<()> {
        (**self).invalidate(ctx).await
    }
}

#[derive(Default)]
struct TenantEntries {
    map: HashMap<String, Vec<Hit>>,
    order: VecDeque<String>,
}

/// In-process cache, at most `per_tenant` entries per tenant (FIFO eviction).
pub struct MemoryQueryCache {
    per_tenant: usize,
    tenants: Mutex<HashMap<String, TenantEntries>>,
}

impl MemoryQueryCache {
    /// A cache holding up to `per_tenant` queries per tenant.
    pub fn new(per_tenant: usize) -> Self {
        Self {
            per_tenant: per_tenant.max(1),
            tenants: Mutex::new(HashMap::new()),
        }
    }
}

fn poisoned() -> Error {
    Error::internal("query cache lock poisoned")
}

#[async_trait]
impl QueryCache for MemoryQueryCache {
    async fn get(&self, ctx: &RequestContext, key: &str) -> Result<Option<Vec<Hit>>> {
        let g = self.tenants.lock().map_err(|_| poisoned())?;
        Ok(g.get(ctx.tenant().as_str())
            .and_then(|t| t.map.get(key).cloned()))
    }

    async fn put(&self, ctx: &RequestContext, key: &str, hits: &[Hit]) -> Result<()> {
        let mut g = self.tenants.lock().map_err(|_| poisoned())?;
        let t = g.entry(ctx.tenant().as_str().to_owned()).or_default();
        if t.map.insert(key.to_owned(), hits.to_vec()).is_none() {
            t.order.push_back(key.to_owned());
        }
        while t.order.len() > self.per_tenant {
            if let Some(old) = t.order.pop_front() {
                t.map.remove(&old);
            }
        }
        Ok(())
    }

    async fn invalidate(&self, ctx: &RequestContext) -> Result<()> {
        self.tenants
            .lock()
            .map_err(|_| poisoned())?
            .remove(ctx.tenant().as_str());
        Ok(())
    }
}

#[cfg(feature = "redis")]
pub use redis_cache::RedisQueryCache;

#[cfg(feature = "redis")]
mod redis_cache {
    use super::*;
    use redis::AsyncCommands;
    use redis::aio::ConnectionManager;

    /// Redis-backed cache shared by server replicas. Entries live under
    /// `{prefix}:{tenant}:{generation}:{key}` with a TTL; invalidation bumps the tenant's generation
    /// counter, so stale entries are never read again and expire on their own.
    #[derive(Clone)]
    pub struct RedisQueryCache {
        conn: ConnectionManager,
        prefix: String,
        ttl_secs: u64,
    }

    fn redis_err(e: redis::RedisError) -> Error {
        Error::unavailable(format!("redis query cache: {e}")).with_source(e)
    }

    impl RedisQueryCache {
        /// Connects to `url` (e.g. `redis://127.0.0.1:6379`).
        ///
        /// # Errors
        /// [`wattos_core::ErrorKind::Unavailable`] when Redis cannot be reached.
        pub async fn connect(url: &str, prefix: impl Into<String>, ttl_secs: u64) -> Result<Self> {
            let client = redis::Client::open(url).map_err(redis_err)?;
            let conn = ConnectionManager::new(client).await.map_err(redis_err)?;
            Ok(Self {
                conn,
                prefix: prefix.into(),
                ttl_secs: ttl_secs.max(1),
            })
        }

        /// A cache over an existing connection (for example one of the server's pooled ones).
        pub fn from_connection(
            conn: ConnectionManager,
            prefix: impl Into<String>,
            ttl_secs: u64,
        ) -> Self {
            Self {
                conn,
                prefix: prefix.into(),
                ttl_secs: ttl_secs.max(1),
            }
        }

        /// The same connection and TTL under `prefix:scope` (for example one collection), so
        /// equal queries in different scopes never share entries and invalidating one scope
        /// leaves the others' entries alone.
        pub fn scoped(&self, scope: &str) -> Self {
            Self {
                conn: self.conn.clone(),
                prefix: format!("{}:{scope}", self.prefix),
                ttl_secs: self.ttl_secs,
            }
        }

        async fn generation(&self, ctx: &RequestContext) -> Result<u64> {
            let mut c = self.conn.clone();
            let g: Option<u64> = c
                .get(format!("{}:{}:gen", self.prefix, ctx.tenant()))
                .await
                .map_err(redis_err)?;
            Ok(g.unwrap_or(0))
        }

        fn entry_key(&self, ctx: &RequestContext, generation: u64, key: &str) -> String {
            format!(
                "{}:{}:{generation}:{}",
                self.prefix,
                ctx.tenant(),
                crate::document::text_hash(key)
            )
        }
    }

    #[async_trait]
    impl QueryCache for RedisQueryCache {
        async fn get(&self, ctx: &RequestContext, key: &str) -> Result<Option<Vec<Hit>>> {
            let generation = self.generation(ctx).await?;
            let mut c = self.conn.clone();
            let raw: Option<String> = c
                .get(self.entry_key(ctx, generation, key))
                .await
                .map_err(redis_err)?;
            Ok(raw.and_then(|s| serde_json::from_str(&s).ok()))
        }

        async fn put(&self, ctx: &RequestContext, key: &str, hits: &[Hit]) -> Result<()> {
            let generation = self.generation(ctx).await?;
            let body = serde_json::to_string(hits)
                .map_err(|e| Error::internal(format!("encode hits: {e}")))?;
            let mut c = self.conn.clone();
            let _: () = c
                .set_ex(self.entry_key(ctx, generation, key), body, self.ttl_secs)
                .await
                .map_err(redis_err)?;
            Ok(())
        }

        async fn invalidate(&self, ctx: &RequestContext) -> Result<()> {
            let mut c = self.conn.clone();
            let _: u64 = c
                .incr(format!("{}:{}:gen", self.prefix, ctx.tenant()), 1u64)
                .await
                .map_err(redis_err)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattos_core::TenantId;

    fn hit(id: &str) -> Hit {
        Hit {
            id: id.into(),
            document_id: "d".into(),
            score: 1.0,
            text: "secret".into(),
            metadata: Default::default(),
        }
    }

    pub(crate) async fn cache_contract(cache: &dyn QueryCache, a: &str, b: &str) {
        let a = RequestContext::system(TenantId::new(a).unwrap());
        let b = RequestContext::system(TenantId::new(b).unwrap());
        cache.invalidate(&a).await.unwrap();
        cache.invalidate(&b).await.unwrap();
        cache.put(&a, "q", &[hit("x")]).await.unwrap();
        assert_eq!(cache.get(&a, "q").await.unwrap().unwrap()[0].id, "x");
        assert!(
            cache.get(&b, "q").await.unwrap().is_none(),
            "tenant B never sees A's entry"
        );
        cache.put(&b, "q", &[hit("y")]).await.unwrap();
        cache.invalidate(&a).await.unwrap();
        assert!(cache.get(&a, "q").await.unwrap().is_none(), "invalidated");
        assert_eq!(
            cache.get(&b, "q").await.unwrap().unwrap()[0].id,
            "y",
            "other tenant untouched"
        );
    }

    #[tokio::test]
    async fn memory_cache_is_tenant_scoped() {
        cache_contract(&MemoryQueryCache::new(10), "a", "b").await;
        let c = MemoryQueryCache::new(1);
        let t = RequestContext::system(TenantId::new("t").unwrap());
        c.put(&t, "1", &[hit("1")]).await.unwrap();
        c.put(&t, "2", &[hit("2")]).await.unwrap();
        assert!(c.get(&t, "1").await.unwrap().is_none(), "bounded");
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn redis_cache_is_tenant_scoped() {
        let url =
            std::env::var("REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let cache =
            RedisQueryCache::connect(&url, format!("wattos-test-{}", std::process::id()), 60)
                .await
                .unwrap();
        cache_contract(&cache, "ra", "rb").await;
    }
}
