//! Retrieval: dense, keyword (BM25) or hybrid search with fusion, optional reranking and a
//! tenant-scoped result cache.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wattos_core::embedding::EmbeddingModel;
use wattos_core::vector_store::{Filter, Hit, VectorQuery, VectorStore};
use wattos_core::{Error, RequestContext, Result};

use crate::cache::QueryCache;
use crate::fusion::{Fusion, fuse, weights};
use crate::keyword::KeywordSearch;
use crate::rerank::Reranker;

/// Which first-stage retrieval runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum SearchMode {
    /// Vector search only.
    Dense,
    /// BM25 only.
    Keyword,
    /// Both, fused.
    Hybrid {
        /// How the two lists are fused.
        fusion: Fusion,
    },
    /// Hybrid with reciprocal rank fusion (k = 60) when a keyword index exists, else dense.
    #[default]
    Auto,
}

/// A search request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// Query text.
    pub query: String,
    /// Results wanted.
    pub top_k: usize,
    /// Metadata filter applied in every stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// First-stage mode.
    #[serde(default)]
    pub mode: SearchMode,
    /// Run the configured reranker on the first-stage candidates.
    #[serde(default)]
    pub rerank: bool,
    /// Candidates per first-stage list (default `max(4 * top_k, 40)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<usize>,
}

impl SearchRequest {
    /// A request for `top_k` results in [`SearchMode::Auto`].
    pub fn new(query: impl Into<String>, top_k: usize) -> Self {
        Self {
            query: query.into(),
            top_k,
            filter: None,
            mode: SearchMode::Auto,
            rerank: false,
            candidates: None,
        }
    }

    /// Sets the mode.
    pub fn with_mode(mut self, mode: SearchMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the filter.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Turns reranking on.
    pub fn reranked(mut self) -> Self {
        self.rerank = true;
        self
    }
}

/// Runs searches over a vector store and an optional keyword index.
#[derive(Clone)]
pub struct Retriever {
    embedder: Arc<dyn EmbeddingModel>,
    vectors: Arc<dyn VectorStore>,
    keywords: Option<Arc<dyn KeywordSearch>>,
    reranker: Option<Arc<dyn Reranker>>,
    cache: Option<Arc<dyn QueryCache>>,
}

impl Retriever {
    /// Dense retrieval over `vectors`, queries embedded with `embedder`.
    pub fn new(embedder: Arc<dyn EmbeddingModel>, vectors: Arc<dyn VectorStore>) -> Self {
        Self {
            embedder,
            vectors,
            keywords: None,
            reranker: None,
            cache: None,
        }
    }

    /// Enables keyword and hybrid modes.
    pub fn with_keywords(self, keywords: impl KeywordSearch + 'static) -> Self {
        self.with_shared_keywords(Arc::new(keywords))
    }

    /// As [`Self::with_keywords`], with an index shared with other parts (the pipeline and the
    /// retriever of one stack share theirs).
    pub fn with_shared_keywords(mut self, keywords: Arc<dyn KeywordSearch>) -> Self {
        self.keywords = Some(keywords);
        self
    }

    /// The reranker used when a request asks for it.
    pub fn with_reranker(mut self, reranker: Arc<dyn Reranker>) -> Self {
        self.reranker = Some(reranker);
        self
    }

    /// Caches results per tenant (the pipeline must share the cache to invalidate it).
    pub fn with_cache(mut self, cache: Arc<dyn QueryCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Runs `req` for the caller's tenant.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] for an empty query, `top_k` 0, a keyword mode without
    /// a keyword index, or a rerank request without a reranker; store and model failures.
    pub async fn search(&self, ctx: &RequestContext, req: &SearchRequest) -> Result<Vec<Hit>> {
        if req.query.trim().is_empty() {
            return Err(Error::invalid_field("query", "must not be empty"));
        }
        if req.top_k == 0 || req.top_k > wattos_core::vector_store::MAX_TOP_K {
            return Err(Error::invalid_field("top_k", "must be 1..=10000"));
        }
        let cache_key = match &self.cache {
            Some(_) => Some(
                serde_json::to_string(req)
                    .map_err(|e| Error::internal(format!("cache key: {e}")))?,
            ),
            None => None,
        };
        if let (Some(c), Some(k)) = (&self.cache, &cache_key) {
            match c.get(ctx, k).await {
                Ok(Some(hits)) => {
                    metrics::counter!("wattos_rag_query_cache_hits_total").increment(1);
                    return Ok(hits);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "query cache read failed"),
            }
        }
        let hits = self.search_uncached(ctx, req).await?;
        if let (Some(c), Some(k)) = (&self.cache, &cache_key)
            && let Err(e) = c.put(ctx, k, &hits).await
        {
            tracing::warn!(error = %e, "query cache write failed");
        }
        Ok(hits)
    }

    async fn dense(&self, ctx: &RequestContext, req: &SearchRequest, n: usize) -> Result<Vec<Hit>> {
        let v = self.embedder.embed_one(ctx, &req.query).await?;
        let mut q = VectorQuery::new(v, n);
        q.filter = req.filter.clone();
        self.vectors.search(ctx, &q).await
    }

    fn keywords(&self) -> Result<&dyn KeywordSearch> {
        self.keywords
            .as_deref()
            .ok_or_else(|| Error::invalid_field("mode", "no keyword index configured"))
    }

    async fn keyword(
        &self,
        ctx: &RequestContext,
        req: &SearchRequest,
        n: usize,
    ) -> Result<Vec<Hit>> {
        self.keywords()?
            .search(ctx, &req.query, n, req.filter.as_ref())
            .await
    }

    /// Both first-stage lists, concurrently (the BM25 index runs its search on tokio's blocking
    /// pool, so it overlaps with embedding the query and searching the vector store).
    async fn dense_and_keyword(
        &self,
        ctx: &RequestContext,
        req: &SearchRequest,
        n: usize,
    ) -> Result<(Vec<Hit>, Vec<Hit>)> {
        self.keywords()?;
        let (dense, kw) = futures::join!(self.dense(ctx, req, n), self.keyword(ctx, req, n));
        Ok((dense?, kw?))
    }

    async fn search_uncached(&self, ctx: &RequestContext, req: &SearchRequest) -> Result<Vec<Hit>> {
        let n = req
            .candidates
            .unwrap_or((req.top_k * 4).max(40))
            .max(req.top_k);
        let first_stage_k = if req.rerank { n } else { req.top_k };
        let mode = match req.mode {
            SearchMode::Auto if self.keywords.is_some() => SearchMode::Hybrid {
                fusion: Fusion::default(),
            },
            SearchMode::Auto => SearchMode::Dense,
            m => m,
        };
        let mut hits = match mode {
            SearchMode::Dense | SearchMode::Auto => self.dense(ctx, req, first_stage_k).await?,
            SearchMode::Keyword => self.keyword(ctx, req, first_stage_k).await?,
            SearchMode::Hybrid { fusion } => {
                let (dense, kw) = self.dense_and_keyword(ctx, req, n).await?;
                let mut fused = fuse(&[dense, kw], &weights(fusion), fusion);
                fused.truncate(first_stage_k);
                fused
            }
        };
        if req.rerank {
            let r = self
                .reranker
                .as_ref()
                .ok_or_else(|| Error::invalid_field("rerank", "no reranker configured"))?;
            hits = r.rerank(ctx, &req.query, hits, req.top_k).await?;
        }
        hits.truncate(req.top_k);
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fusion::Fusion;
    use crate::keyword::{KeywordChunk, KeywordIndex, Language};
    use crate::store::EmbeddedStore;
    use wattos_core::TenantId;
    use wattos_core::test_utils::embed::HashingEmbedder;
    use wattos_core::vector_store::VectorRecord;

    const TEXTS: &[&str] = &[
        "inverter fault E-4711 after firmware update",
        "heat pump defrost cycle explained",
        "solar panel cleaning schedule",
        "battery storage warranty terms",
        "grid feed-in tariff for small plants",
    ];

    async fn retriever(ctx: &RequestContext) -> Retriever {
        let embedder = HashingEmbedder::shared(64);
        let vectors = Arc::new(EmbeddedStore::in_memory(64));
        let keywords = KeywordIndex::in_memory(Language::English);
        let recs: Vec<VectorRecord> = TEXTS
            .iter()
            .enumerate()
            .map(|(i, t)| {
                VectorRecord::new(format!("c{i}"), format!("d{i}"), embedder.vector(t), *t)
            })
            .collect();
        let kw: Vec<(String, Vec<KeywordChunk>)> = recs
            .iter()
            .map(|r| {
                (
                    r.document_id.clone(),
                    vec![KeywordChunk {
                        id: r.id.clone(),
                        text: r.text.clone(),
                        metadata: Default::default(),
                    }],
                )
            })
            .collect();
        vectors.upsert(ctx, recs).await.unwrap();
        keywords.replace_documents(ctx, &kw).unwrap();
        Retriever::new(embedder, vectors).with_keywords(keywords)
    }

    fn ids(hits: &[Hit]) -> Vec<String> {
        hits.iter().map(|h| h.id.clone()).collect()
    }

    #[test]
    fn hybrid_runs_with_and_without_a_tokio_runtime() {
        let ctx = RequestContext::system(TenantId::new("t").unwrap());
        let req = SearchRequest::new("inverter fault E-4711", 3).with_mode(SearchMode::Hybrid {
            fusion: Fusion::default(),
        });
        // No tokio runtime: BM25 runs inline instead of on the blocking pool.
        let (inline, r) = futures::executor::block_on(async {
            let r = retriever(&ctx).await;
            (r.search(&ctx, &req).await.unwrap(), r)
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let pooled = rt.block_on(r.search(&ctx, &req)).unwrap();
        assert_eq!(ids(&inline), ids(&pooled));
        assert_eq!(inline[0].id, "c0");
        let dense_only = Retriever::new(HashingEmbedder::shared(64), r.vectors.clone());
        let err = futures::executor::block_on(dense_only.search(&ctx, &req)).unwrap_err();
        assert_eq!(err.kind(), wattos_core::ErrorKind::InvalidInput);
    }
}
