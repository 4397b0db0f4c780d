//! The engine every [`super::MemoryStore`] shares: rows (the memories, the source of truth) plus an
//! optional semantic index (an embedding model and a vector store).
//!
//! Writes embed first (nothing is stored when embedding fails), then upsert the vector, then the row.
//! A vector without a row (a write that failed half-way, a memory forgotten while the index was
//! down) is never returned: every semantic hit is re-read from the rows, which also drops expired
//! memories.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};
use wattos_core::embedding::EmbeddingModel;
use wattos_core::vector_store::{Filter, MAX_TOP_K, VectorQuery, VectorRecord, VectorStore};
use wattos_core::{Error, RequestContext, Result, TenantId};

use super::store::{
    MatchKind, Memory, MemoryHit, MemoryQuery, Namespace, NewMemory, check_id, keyword_rank,
};

/// Metadata key of the owning user on index records.
const USER_KEY: &str = "wattos_mem.user";
/// Metadata key of the full path key on index records.
const NS_KEY: &str = "wattos_mem.ns";
/// Metadata key of the memory id on index records.
const ID_KEY: &str = "wattos_mem.id";

fn depth_key(depth: usize) -> String {
    format!("wattos_mem.ns{depth}")
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A memory's address, as returned by [`Rows::take_expired`].
#[derive(Debug, Clone)]
pub(crate) struct ExpiredKey {
    pub(crate) tenant: String,
    pub(crate) namespace: Namespace,
    pub(crate) id: String,
}

/// Where memories are kept (process memory, SQL).
#[async_trait]
pub(crate) trait Rows: Send + Sync {
    /// Inserts or replaces by (tenant, user, path, id), keeping an existing `created_ms`; returns
    /// the stored `created_ms`.
    async fn upsert(&self, tenant: &str, m: &Memory) -> Result<i64>;
    /// One live memory.
    async fn get(&self, tenant: &str, ns: &Namespace, id: &str, now: i64)
    -> Result<Option<Memory>>;
    /// Live memories at or below `prefix`, most recently written first (ties by id).
    async fn scan(
        &self,
        tenant: &str,
        prefix: &Namespace,
        now: i64,
        limit: Option<usize>,
    ) -> Result<Vec<Memory>>;
    /// Deletes one; whether it existed.
    async fn delete(&self, tenant: &str, ns: &Namespace, id: &str) -> Result<bool>;
    /// Deletes a user's memories; how many.
    async fn delete_user(&self, tenant: &str, user: &str) -> Result<u64>;
    /// Deletes expired memories (of one tenant, or all) and returns their keys.
    async fn take_expired(&self, tenant: Option<&str>, now: i64) -> Result<Vec<ExpiredKey>>;
}

/// The semantic index of a memory store: an embedding model and a vector store of the same
/// dimensions.
///
/// Give the memory store a vector store (or collection) of its own: its records carry
/// `wattos_mem.*` metadata and would otherwise show up in, say, RAG searches over the same store.
/// With keyword fallback on, a search whose embedding or vector search fails ranks by keywords
/// instead of failing (logged as a warning; hits say [`MatchKind::Keyword`]). A refusal of the
/// caller (invalid input, not allowed, budget spent, rate limited) is returned, never masked.
#[derive(Clone)]
pub struct MemoryIndex {
    embedder: Arc<dyn EmbeddingModel>,
    vectors: Arc<dyn VectorStore>,
    keyword_fallback: bool,
}

impl std::fmt::Debug for MemoryIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryIndex")
            .field("embedder", &self.embedder.name())
            .field("vectors", &self.vectors.name())
            .field("keyword_fallback", &self.keyword_fallback)
            .finish()
    }
}

impl MemoryIndex {
    /// An index embedding with `embedder` into `vectors`, without keyword fallback.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] when their dimensions differ.
    pub fn new(embedder: Arc<dyn EmbeddingModel>, vectors: Arc<dyn VectorStore>) -> Result<Self> {
        if embedder.dimensions() != vectors.dimensions() {
            return Err(Error::invalid_field(
                "vectors",
                format!(
                    "the embedder {} has {} dimensions, the vector store {} has {}",
                    embedder.name(),
                    embedder.dimensions(),
                    vectors.name(),
                    vectors.dimensions()
                ),
            ));
        }
        Ok(Self {
            embedder,
            vectors,
            keyword_fallback: false,
        })
    }

    /// Ranks by keywords when the embedding model or the vector store fails during a search.
    #[must_use]
    pub fn with_keyword_fallback(mut self, on: bool) -> Self {
        self.keyword_fallback = on;
        self
    }

    /// The id of a memory's record: a hash of its user, path and id (unique within the tenant).
    fn record_id(ns: &Namespace, id: &str) -> String {
        let mut h = Sha256::new();
        h.update(ns.user_id().as_bytes());
        h.update([0]);
        h.update(ns.path_key().as_bytes());
        h.update([0]);
        h.update(id.as_bytes());
        format!("mem-{}", &hex::encode(h.finalize())[..40])
    }

    async fn embed(&self, ctx: &RequestContext, text: &str) -> Result<Vec<f32>> {
        self.embedder
            .embed_all(ctx, &[text.to_owned()])
            .await?
            .vectors
            .pop()
            .ok_or_else(|| Error::internal(format!("{} returned no vector", self.embedder.name())))
    }

    fn record(m: &Memory, vector: Vec<f32>) -> VectorRecord {
        let rid = Self::record_id(&m.namespace, &m.id);
        let mut rec = VectorRecord::new(rid.clone(), rid, vector, m.text.clone());
        rec.metadata = m.metadata.clone();
        rec.metadata
            .insert(USER_KEY.into(), m.namespace.user_id().into());
        rec.metadata
            .insert(NS_KEY.into(), m.namespace.path_key().into());
        rec.metadata.insert(ID_KEY.into(), m.id.clone().into());
        let mut prefix = String::new();
        for (i, seg) in m.namespace.path().iter().enumerate() {
            prefix.push_str(seg);
            prefix.push('/');
            rec.metadata
                .insert(depth_key(i + 1), Value::String(prefix.clone()));
        }
        rec
    }

    /// The filter selecting `prefix`'s records (plus the caller's filter).
    fn scope(prefix: &Namespace, filter: Option<&Filter>) -> Filter {
        let mut f = Filter::eq(USER_KEY, prefix.user_id());
        if !prefix.path().is_empty() {
            f = f.and(Filter::eq(
                depth_key(prefix.path().len()),
                prefix.path_key(),
            ));
        }
        match filter {
            Some(x) => f.and(x.clone()),
            None => f,
        }
    }

    async fn search(
        &self,
        ctx: &RequestContext,
        prefix: &Namespace,
        query: &str,
        filter: Option<&Filter>,
        top_k: usize,
    ) -> Result<Vec<(Namespace, String, f32)>> {
        let vector = self.embed(ctx, query).await?;
        let q = VectorQuery::new(vector, top_k.clamp(1, MAX_TOP_K))
            .with_filter(Self::scope(prefix, filter));
        let hits = self.vectors.search(ctx, &q).await?;
        let mut out = Vec::with_capacity(hits.len());
        for h in hits {
            let get = |k: &str| h.metadata.get(k).and_then(Value::as_str).map(str::to_owned);
            let (Some(user), Some(ns), Some(id)) = (get(USER_KEY), get(NS_KEY), get(ID_KEY)) else {
                continue;
            };
            if let Ok(ns) = Namespace::from_key(user, &ns) {
                out.push((ns, id, h.score));
            }
        }
        Ok(out)
    }
}

/// Rows plus an optional index: the behaviour of every memory store.
pub(crate) struct Engine<R> {
    rows: R,
    index: Option<MemoryIndex>,
    default_ttl: Option<Duration>,
}

impl<R: Default> Default for Engine<R> {
    fn default() -> Self {
        Self::new(R::default())
    }
}

impl<R> Engine<R> {
    pub(crate) fn new(rows: R) -> Self {
        Self {
            rows,
            index: None,
            default_ttl: None,
        }
    }

    pub(crate) fn with_index(mut self, index: MemoryIndex) -> Self {
        self.index = Some(index);
        self
    }

    pub(crate) fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn rows(&self) -> &R {
        &self.rows
    }
}

impl<R: Rows> Engine<R> {
    pub(crate) async fn put(
        &self,
        ctx: &RequestContext,
        ns: &Namespace,
        new: NewMemory,
    ) -> Result<Memory> {
        new.validate()?;
        let id = match new.id {
            Some(id) => id,
            None => uuid::Uuid::now_v7().to_string(),
        };
        check_id(&id)?;
        // Embed before taking the time, so a slow model does not eat into a short TTL.
        let vector = match &self.index {
            Some(ix) => Some(ix.embed(ctx, &new.text).await?),
            None => None,
        };
        let now = now_ms();
        let mut memory = Memory {
            id,
            namespace: ns.clone(),
            text: new.text,
            metadata: new.metadata,
            created_ms: now,
            updated_ms: now,
            expires_ms: new
                .ttl
                .or(self.default_ttl)
                .map(|t| now.saturating_add(duration_ms(t))),
        };
        if let (Some(ix), Some(vector)) = (&self.index, vector) {
            ix.vectors
                .upsert(ctx, vec![MemoryIndex::record(&memory, vector)])
                .await?;
        }
        memory.created_ms = self.rows.upsert(ctx.tenant().as_str(), &memory).await?;
        Ok(memory)
    }

    pub(crate) async fn get(
        &self,
        ctx: &RequestContext,
        ns: &Namespace,
        id: &str,
    ) -> Result<Option<Memory>> {
        self.rows.get(ctx.tenant().as_str(), ns, id, now_ms()).await
    }

    pub(crate) async fn search(
        &self,
        ctx: &RequestContext,
        prefix: &Namespace,
        query: &str,
        options: &MemoryQuery,
    ) -> Result<Vec<MemoryHit>> {
        options.validate()?;
        if query.trim().is_empty() {
            return Err(Error::invalid_field("query", "must not be empty"));
        }
        let wanted = options.offset + options.limit;
        if let Some(ix) = &self.index {
            // Over-fetch a little: hits whose row is gone or expired are dropped below.
            let top_k = wanted.saturating_mul(2).saturating_add(8);
            match ix
                .search(ctx, prefix, query, options.filter.as_ref(), top_k)
                .await
            {
                Ok(found) => {
                    let tenant = ctx.tenant().as_str();
                    let now = now_ms();
                    let mut hits = Vec::with_capacity(wanted);
                    for (ns, id, score) in found {
                        if hits.len() == wanted {
                            break;
                        }
                        if let Some(memory) = self.rows.get(tenant, &ns, &id, now).await? {
                            hits.push(MemoryHit {
                                memory,
                                score,
                                matched_by: MatchKind::Semantic,
                            });
                        }
                    }
                    return Ok(hits.into_iter().skip(options.offset).collect());
                }
                // The fallback covers the index failing, not the caller being refused: a tenant
                // that may not use the embedding model (or has spent its budget, or hit a limit)
                // gets that refusal, as from every other route that calls the model.
                Err(e) if ix.keyword_fallback && !refuses_the_caller(&e) => {
                    tracing::warn!(error = %e, "memory index failed; ranking by keywords");
                }
                Err(e) => return Err(e),
            }
        }
        let candidates = self
            .filtered(ctx, prefix, options.filter.as_ref(), None)
            .await?;
        Ok(keyword_rank(query, candidates)
            .into_iter()
            .skip(options.offset)
            .take(options.limit)
            .collect())
    }

    async fn filtered(
        &self,
        ctx: &RequestContext,
        prefix: &Namespace,
        filter: Option<&Filter>,
        limit: Option<usize>,
    ) -> Result<Vec<Memory>> {
        let mut all = self
            .rows
            .scan(
                ctx.tenant().as_str(),
                prefix,
                now_ms(),
                if filter.is_none() { limit } else { None },
            )
            .await?;
        if let Some(f) = filter {
            all.retain(|m| f.matches(&m.id, &m.metadata));
        }
        Ok(all)
    }

    pub(crate) async fn list(
        &self,
        ctx: &RequestContext,
        prefix: &Namespace,
        options: &MemoryQuery,
    ) -> Result<Vec<Memory>> {
        options.validate()?;
        let all = self
            .filtered(
                ctx,
                prefix,
                options.filter.as_ref(),
                Some(options.offset + options.limit),
            )
            .await?;
        Ok(all
            .into_iter()
            .skip(options.offset)
            .take(options.limit)
            .collect())
    }

    pub(crate) async fn forget(
        &self,
        ctx: &RequestContext,
        ns: &Namespace,
        id: &str,
    ) -> Result<bool> {
        let existed = self.rows.delete(ctx.tenant().as_str(), ns, id).await?;
        if let Some(ix) = &self.index {
            ix.vectors
                .delete_documents(ctx, &[MemoryIndex::record_id(ns, id)])
                .await?;
        }
        Ok(existed)
    }

    pub(crate) async fn forget_user(&self, ctx: &RequestContext, user: &str) -> Result<u64> {
        let n = self.rows.delete_user(ctx.tenant().as_str(), user).await?;
        if let Some(ix) = &self.index {
            ix.vectors
                .delete_where(ctx, &Filter::eq(USER_KEY, user))
                .await?;
        }
        Ok(n)
    }

    pub(crate) async fn purge_expired(&self, ctx: &RequestContext) -> Result<u64> {
        let gone = self
            .rows
            .take_expired(Some(ctx.tenant().as_str()), now_ms())
            .await?;
        self.unindex(gone).await
    }

    /// Deletes every tenant's expired memories (for a periodic sweeper); how many went.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) async fn purge_all_expired(&self) -> Result<u64> {
        let gone = self.rows.take_expired(None, now_ms()).await?;
        self.unindex(gone).await
    }

    async fn unindex(&self, gone: Vec<ExpiredKey>) -> Result<u64> {
        let n = gone.len() as u64;
        if let Some(ix) = &self.index {
            let mut by_tenant: std::collections::BTreeMap<String, Vec<String>> =
                std::collections::BTreeMap::new();
            for k in gone {
                by_tenant
                    .entry(k.tenant)
                    .or_default()
                    .push(MemoryIndex::record_id(&k.namespace, &k.id));
            }
            for (tenant, ids) in by_tenant {
                let ctx = RequestContext::system(TenantId::new(&tenant)?);
                ix.vectors.delete_documents(&ctx, &ids).await?;
            }
        }
        Ok(n)
    }
}

/// Whether `e` refuses the caller (rather than reporting the index as broken or unreachable).
fn refuses_the_caller(e: &wattos_core::Error) -> bool {
    use wattos_core::ErrorKind::*;
    matches!(
        e.kind(),
        InvalidInput | Unauthenticated | Forbidden | RateLimited | BudgetExceeded
    )
}
