//! [`RagService`]: per-tenant, per-collection RAG stacks behind a [`RagBackend`], plus the document
//! registry.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::tenancy::TenantConfigCache;
use wattos_core::{Error, RequestContext, Result, TenantId};
use wattos_rag::embed::CachedEmbedder;
use wattos_rag::keyword::{KeywordIndex, Language};
use wattos_rag::store::EmbeddedStore;
use wattos_rag::{Rag, RagBuilder};

use super::registry::Registry;

/// Where the chunks of a collection live. The embedded backend keeps one persistent store per
/// collection under the data folder; a shared deployment plugs in a backend over shared services
/// (pgvector) with [`RagService::new`].
#[async_trait]
pub trait RagBackend: Send + Sync {
    /// Backend name for logs.
    fn name(&self) -> &str;

    /// Opens (creating if needed) the stack of `collection` of `tenant`, embedding with `embedder`
    /// (already cached: build with `embedding_cache(0)`).
    ///
    /// # Errors
    /// Storage failures.
    async fn open(
        &self,
        tenant: &TenantId,
        collection: &str,
        embedder: Arc<dyn EmbeddingModel>,
    ) -> Result<Rag>;

    /// Removes everything stored for `collection` of `tenant` (no stack of it is open any more).
    ///
    /// # Errors
    /// Storage failures.
    async fn destroy(&self, tenant: &TenantId, collection: &str) -> Result<()>;
}

/// One persistent embedded stack (vectors + BM25) per collection under
/// `root/t_<tenant>/<collection>`.
#[derive(Debug, Clone)]
pub struct EmbeddedBackend {
    root: PathBuf,
}

impl EmbeddedBackend {
    /// Stacks under `root` (usually `data_dir/rag`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn dir(&self, tenant: &TenantId, collection: &str) -> PathBuf {
        // The `t_` prefix keeps tenant ids such as `..` inside the root.
        self.root
            .join(format!("t_{}", tenant.as_str()))
            .join(collection)
    }
}

#[async_trait]
impl RagBackend for EmbeddedBackend {
    fn name(&self) -> &str {
        "embedded"
    }

    async fn open(
        &self,
        tenant: &TenantId,
        collection: &str,
        embedder: Arc<dyn EmbeddingModel>,
    ) -> Result<Rag> {
        let dir = self.dir(tenant, collection);
        tokio::task::spawn_blocking(move || {
            let dims = embedder.dimensions();
            RagBuilder::new(embedder)
                .embedding_cache(0)
                .vector_store(Arc::new(EmbeddedStore::open(dir.join("vectors"), dims)?))
                .keyword_index(KeywordIndex::open(dir.join("keywords"), Language::English)?)
                .build()
        })
        .await
        .map_err(|e| Error::internal("opening a RAG collection panicked").with_source(e))?
    }

    async fn destroy(&self, tenant: &TenantId, collection: &str) -> Result<()> {
        let dir = self.dir(tenant, collection);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::unavailable(format!(
                "cannot remove collection data at {}: {e}",
                dir.display()
            ))
            .with_source(e)),
        }
    }
}

/// Shared-mode backend: one pgvector table per collection (tenants share it; every row carries its
/// tenant, and every query is scoped by it), so every instance sees the same chunks. Keyword search
/// (and so hybrid search) is PostgreSQL full-text search over the same rows
/// ([`wattos_rag::store::PgFullText`], English configuration), not tantivy BM25: a local BM25 index
/// would only know what its own instance ingested.
///
/// Search results are cached only in a cache every instance shares ([`Self::with_redis_cache`]):
/// an instance's own memory cache would keep serving results from before another instance (or a
/// worker) changed the collection.
#[derive(Clone)]
pub struct PgVectorBackend {
    pool: sqlx::PgPool,
    #[cfg(feature = "redis")]
    cache: Option<wattos_rag::cache::RedisQueryCache>,
}

impl std::fmt::Debug for PgVectorBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("PgVectorBackend");
        #[cfg(feature = "redis")]
        d.field("redis_cache", &self.cache.is_some());
        d.finish_non_exhaustive()
    }
}

impl PgVectorBackend {
    /// Collections as pgvector tables in the database of `pool` (the `vector` extension is created
    /// on first use), with no query cache.
    pub fn new(pool: sqlx::PgPool) -> Self {
        Self {
            pool,
            #[cfg(feature = "redis")]
            cache: None,
        }
    }

    /// Caches search results in Redis under `cache`'s prefix, scoped per collection; an ingest or
    /// delete on any instance invalidates the tenant's entries of that collection for all.
    #[cfg(feature = "redis")]
    pub fn with_redis_cache(mut self, cache: wattos_rag::cache::RedisQueryCache) -> Self {
        self.cache = Some(cache);
        self
    }

    fn builder(&self, collection: &str, embedder: Arc<dyn EmbeddingModel>) -> RagBuilder {
        let builder = RagBuilder::new(embedder).embedding_cache(0);
        #[cfg(feature = "redis")]
        if let Some(cache) = &self.cache {
            return builder.query_cache(Arc::new(cache.scoped(collection)));
        }
        let _ = collection;
        builder.without_query_cache()
    }
}

#[async_trait]
impl RagBackend for PgVectorBackend {
    fn name(&self) -> &str {
        "pgvector"
    }

    async fn open(
        &self,
        _tenant: &TenantId,
        collection: &str,
        embedder: Arc<dyn EmbeddingModel>,
    ) -> Result<Rag> {
        let dims = embedder.dimensions();
        let store = wattos_rag::store::PgVectorStore::with_pool(
            self.pool.clone(),
            &crate::jobs::table_name(collection),
            dims,
        )
        .await?;
        let keywords = store.full_text(Language::English).await?;
        self.builder(collection, embedder)
            .vector_store(Arc::new(store))
            .keyword_index(keywords)
            .build()
    }

    async fn destroy(&self, tenant: &TenantId, collection: &str) -> Result<()> {
        let table = crate::jobs::table_name(collection);
        // Only this tenant's rows: other tenants may have a collection of the same name.
        let sql = format!("DELETE FROM {table} WHERE tenant = $1");
        match sqlx::query(&sql)
            .bind(tenant.as_str())
            .execute(&self.pool)
            .await
        {
            Ok(_) => Ok(()),
            // Never opened: nothing stored.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Ok(()),
            Err(e) => Err(
                Error::unavailable(format!("cannot remove collection rows: {e}")).with_source(e),
            ),
        }
    }
}

struct Inner {
    registry: Registry,
    backend: Arc<dyn RagBackend>,
    embedder: Arc<dyn EmbeddingModel>,
    embedder_name: String,
    open: Mutex<HashMap<(TenantId, String), Rag>>,
    /// Tenant configurations, for `rag.max_documents` (none: no quota is enforced).
    configs: std::sync::OnceLock<Arc<TenantConfigCache>>,
    /// One ingest at a time per tenant with a document quota, so its check is exact here.
    quota_locks: std::sync::Mutex<HashMap<TenantId, Arc<Mutex<()>>>>,
}

/// Collections of every tenant: the registry (what was ingested) and the open stacks. Cheap to
/// clone.
#[derive(Clone)]
pub struct RagService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RagService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RagService")
            .field("backend", &self.inner.backend.name())
            .field("embedder", &self.inner.embedder_name)
            .finish_non_exhaustive()
    }
}

impl RagService {
    /// A service over `registry` and `backend`, embedding with `embedder` (served as
    /// `embedder_name`). Embeddings are cached by text across collections (100 000 vectors).
    pub fn new(
        registry: Registry,
        backend: Arc<dyn RagBackend>,
        embedder: Arc<dyn EmbeddingModel>,
        embedder_name: impl Into<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry,
                backend,
                embedder: Arc::new(CachedEmbedder::new(embedder, 100_000)),
                embedder_name: embedder_name.into(),
                open: Mutex::new(HashMap::new()),
                configs: std::sync::OnceLock::new(),
                quota_locks: std::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Reads each tenant's `rag.max_documents` from `configs` (the server's shared tenant
    /// configuration cache). Set once; later calls are ignored.
    pub fn set_tenant_configs(&self, configs: Arc<TenantConfigCache>) {
        let _ = self.inner.configs.set(configs);
    }

    /// Checks the tenant's document quota (`rag.max_documents`) for storing `ids` in
    /// `collection`: documents it already has there count once. Returns a guard to hold until
    /// the documents are recorded: while a tenant has a quota its ingests run one at a time in
    /// this instance, so two of them cannot both pass the check.
    ///
    /// # Errors
    /// `budget_exceeded` when the new documents do not fit; registry failures.
    pub async fn reserve_documents(
        &self,
        ctx: &RequestContext,
        collection: &str,
        ids: &[&str],
    ) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>> {
        let Some(configs) = self.inner.configs.get() else {
            return Ok(None);
        };
        let tenant = ctx.tenant();
        let Some(max) = configs
            .config(tenant)
            .await?
            .and_then(|c| c.rag.max_documents)
        else {
            return Ok(None);
        };
        let lock = self
            .inner
            .quota_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant.clone())
            .or_default()
            .clone();
        let guard = lock.lock_owned().await;
        let registry = self.registry();
        let stored = registry.count_tenant_documents(tenant).await?;
        let existing = registry.existing_ids(tenant, collection, ids).await?;
        let new = ids
            .iter()
            .filter(|id| !existing.contains(**id))
            .collect::<std::collections::HashSet<_>>()
            .len() as u64;
        if stored.saturating_add(new) > max {
            return Err(Error::budget_exceeded(format!(
                "the tenant's document quota (rag.max_documents) is {max}: {stored} stored, this \
                 request adds {new} new"
            )));
        }
        Ok(Some(guard))
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The embedding model, behind the service's cache (the vectors ingestion computed are
    /// reused, e.g. by a reranker).
    pub fn embedder(&self) -> Arc<dyn EmbeddingModel> {
        self.inner.embedder.clone()
    }

    /// The name of the embedding model.
    pub fn embedder_name(&self) -> &str {
        &self.inner.embedder_name
    }

    /// The stack of `collection` of `tenant` (opened on first use, then kept). The caller checks
    /// that the collection exists.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn rag(&self, tenant: &TenantId, collection: &str) -> Result<Rag> {
        let key = (tenant.clone(), collection.to_owned());
        let mut open = self.inner.open.lock().await;
        if let Some(rag) = open.get(&key) {
            return Ok(rag.clone());
        }
        let rag = self
            .inner
            .backend
            .open(tenant, collection, self.inner.embedder.clone())
            .await?;
        open.insert(key, rag.clone());
        Ok(rag)
    }

    /// Closes and removes every chunk of `collection` of `tenant`.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn destroy(&self, tenant: &TenantId, collection: &str) -> Result<()> {
        let mut open = self.inner.open.lock().await;
        open.remove(&(tenant.clone(), collection.to_owned()));
        self.inner.backend.destroy(tenant, collection).await
    }
}
