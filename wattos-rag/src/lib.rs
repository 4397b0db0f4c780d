//! # wattos-rag
//!
//! Retrieval-augmented generation as small, replaceable stages, embeddable with no services:
//!
//! * [`loader`]: text, Markdown, HTML (headings kept) and PDF (feature `pdf`) to [`document::Document`],
//!   with typed errors naming the document.
//! * [`chunk`]: token windows with overlap, or structure-aware (headings, paragraphs, sentences),
//!   keeping char offsets.
//! * [`pipeline`]: loader -> chunker -> metadata transformers -> embedder (batched, concurrent,
//!   cached by content hash) -> vector store + BM25, incremental by content hash.
//! * [`store`]: tenant-namespaced [`VectorStore`]s: [`store::EmbeddedStore`] (default, persistent) and
//!   `PgVectorStore` (feature `pgvector`).
//! * [`keyword`]: tantivy BM25 per tenant, English or German analysis.
//! * [`retrieve`]: dense, keyword, hybrid (RRF or weighted fusion), rerank ([`rerank`]: MMR, LLM),
//!   tenant-scoped cache ([`cache`]; Redis with feature `redis`).
//! * [`answer`](mod@answer): context under a token budget with numbered citations; cited answers.
//! * [`eval`]: BEIR-layout datasets, nDCG@10, Recall@100, MRR@10.
//! * [`jobs`]: durable background jobs (ingestion): in process, or on NATS JetStream (feature
//!   `nats`) with redelivery, bounded retries, a dead-letter stream and idempotency by content hash.
//!
//! ```
//! use std::sync::Arc;
//! use wattos_core::{RequestContext, TenantId};
//! use wattos_core::test_utils::embed::HashingEmbedder;
//! use wattos_rag::{Rag, document::Source, retrieve::SearchRequest};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let rag = Rag::in_memory(Arc::new(HashingEmbedder::new(256)))?;
//! let ctx = RequestContext::system(TenantId::new("acme")?);
//! rag.ingest(&ctx, vec![
//!     Source::new("solar.md", "# Solar\n\nSolar panels turn sunlight into electricity."),
//!     Source::new("wind.md", "# Wind\n\nWind turbines turn moving air into electricity."),
//! ]).await?;
//! let hits = rag.search(&ctx, &SearchRequest::new("sunlight panels", 1)).await?;
//! assert_eq!(hits[0].document_id, "solar.md");
//! # Ok::<_, wattos_core::Error>(())
//! # }).unwrap();
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod answer;
pub mod cache;
pub mod chunk;
#[cfg(any(test, feature = "test-utils"))]
pub mod conformance;
pub mod document;
pub mod embed;
pub mod eval;
pub mod feedback;
pub mod fusion;
#[doc(hidden)]
pub mod fuzz;
pub mod jobs;
pub mod keyword;
pub mod loader;
pub mod pipeline;
pub mod rerank;
pub mod retrieve;
pub mod store;
pub mod synthetic;
#[cfg(feature = "web")]
#[cfg_attr(docsrs, doc(cfg(feature = "web")))]
pub mod web;

use std::path::Path;
use std::sync::Arc;

use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::ChatModel;
use wattos_core::vector_store::{Hit, VectorStore};
use wattos_core::{RequestContext, Result};

use crate::answer::{Answer, AnswerOptions};
use crate::cache::{MemoryQueryCache, QueryCache};
use crate::chunk::{Chunker, StructuredChunker};
use crate::document::Source;
use crate::embed::CachedEmbedder;
use crate::keyword::{KeywordIndex, KeywordSearch, Language};
use crate::loader::{AutoLoader, Loader};
use crate::pipeline::{IndexPipeline, IngestReport};
use crate::rerank::Reranker;
use crate::retrieve::{Retriever, SearchRequest};

/// The assembled RAG stack: ingestion pipeline and retriever sharing stores and cache.
///
/// Build the default embedded stack with [`Rag::open`] / [`Rag::in_memory`], or any combination
/// with [`RagBuilder`].
#[derive(Clone)]
pub struct Rag {
    pipeline: IndexPipeline,
    retriever: Retriever,
}

impl Rag {
    /// Embedded, persistent stack under `dir`: vectors in `dir/vectors`, BM25 (English) in
    /// `dir/keywords`, structure-aware chunks of 256 tokens, a memory query cache.
    ///
    /// # Errors
    /// I/O failures opening the stores.
    pub fn open(dir: impl AsRef<Path>, embedder: Arc<dyn EmbeddingModel>) -> Result<Self> {
        let dims = embedder.dimensions();
        RagBuilder::new(embedder)
            .vector_store(Arc::new(store::EmbeddedStore::open(
                dir.as_ref().join("vectors"),
                dims,
            )?))
            .keyword_index(KeywordIndex::open(
                dir.as_ref().join("keywords"),
                Language::English,
            )?)
            .build()
    }

    /// Embedded stack kept in memory.
    ///
    /// # Errors
    /// Only invalid settings.
    pub fn in_memory(embedder: Arc<dyn EmbeddingModel>) -> Result<Self> {
        let dims = embedder.dimensions();
        RagBuilder::new(embedder)
            .vector_store(Arc::new(store::EmbeddedStore::in_memory(dims)))
            .keyword_index(KeywordIndex::in_memory(Language::English))
            .build()
    }

    /// Loads, chunks, embeds and indexes `sources` (incremental; see [`pipeline`]).
    ///
    /// # Errors
    /// See [`IndexPipeline::ingest`].
    pub async fn ingest(&self, ctx: &RequestContext, sources: Vec<Source>) -> Result<IngestReport> {
        self.pipeline.ingest(ctx, sources).await
    }

    /// Removes documents everywhere.
    ///
    /// # Errors
    /// Store failures.
    pub async fn delete(&self, ctx: &RequestContext, document_ids: &[String]) -> Result<u64> {
        self.pipeline.delete(ctx, document_ids).await
    }

    /// Searches the caller's tenant.
    ///
    /// # Errors
    /// See [`Retriever::search`].
    pub async fn search(&self, ctx: &RequestContext, req: &SearchRequest) -> Result<Vec<Hit>> {
        self.retriever.search(ctx, req).await
    }

    /// Retrieves and answers with citations.
    ///
    /// # Errors
    /// See [`answer::answer`].
    pub async fn answer(
        &self,
        ctx: &RequestContext,
        chat: &dyn ChatModel,
        question: &str,
        opts: &AnswerOptions,
    ) -> Result<Answer> {
        answer::answer(ctx, &self.retriever, chat, question, opts).await
    }

    /// The ingestion pipeline.
    pub fn pipeline(&self) -> &IndexPipeline {
        &self.pipeline
    }

    /// The retriever.
    pub fn retriever(&self) -> &Retriever {
        &self.retriever
    }
}

/// The query cache a [`RagBuilder`] puts in front of retrieval.
enum QueryCacheChoice {
    /// A [`MemoryQueryCache`] of 1024 entries per tenant.
    Default,
    /// The caller's cache.
    Given(Arc<dyn QueryCache>),
    /// None.
    Disabled,
}

/// Builds a [`Rag`] from chosen parts; unset parts get the embedded defaults.
pub struct RagBuilder {
    embedder: Arc<dyn EmbeddingModel>,
    loader: Arc<dyn Loader>,
    chunker: Option<Arc<dyn Chunker>>,
    vectors: Option<Arc<dyn VectorStore>>,
    keywords: Option<Arc<dyn KeywordSearch>>,
    reranker: Option<Arc<dyn Reranker>>,
    cache: QueryCacheChoice,
    embedding_cache: usize,
    transformers: Vec<Arc<dyn pipeline::MetadataTransformer>>,
}

impl RagBuilder {
    /// Starts from an embedder.
    pub fn new(embedder: Arc<dyn EmbeddingModel>) -> Self {
        Self {
            embedder,
            loader: Arc::new(AutoLoader::default()),
            chunker: None,
            vectors: None,
            keywords: None,
            reranker: None,
            cache: QueryCacheChoice::Default,
            embedding_cache: 100_000,
            transformers: Vec::new(),
        }
    }

    /// Loader (default [`AutoLoader`]).
    pub fn loader(mut self, l: Arc<dyn Loader>) -> Self {
        self.loader = l;
        self
    }
    /// Chunker (default [`StructuredChunker`] with 256 tokens).
    pub fn chunker(mut self, c: Arc<dyn Chunker>) -> Self {
        self.chunker = Some(c);
        self
    }
    /// Vector store (default in-memory [`store::EmbeddedStore`]).
    pub fn vector_store(mut self, v: Arc<dyn VectorStore>) -> Self {
        self.vectors = Some(v);
        self
    }
    /// Keyword index (none by default: dense only), e.g. a [`KeywordIndex`].
    pub fn keyword_index(mut self, k: impl KeywordSearch + 'static) -> Self {
        self.keywords = Some(Arc::new(k));
        self
    }
    /// Reranker for requests with `rerank: true`.
    pub fn reranker(mut self, r: Arc<dyn Reranker>) -> Self {
        self.reranker = Some(r);
        self
    }
    /// Query cache (default: [`MemoryQueryCache`] with 1024 entries per tenant).
    pub fn query_cache(mut self, c: Arc<dyn QueryCache>) -> Self {
        self.cache = QueryCacheChoice::Given(c);
        self
    }
    /// No query cache: every search reaches the stores. For stacks whose stores other processes
    /// write to, where a per-process cache would serve stale results (share one instead, such as
    /// `cache::RedisQueryCache`).
    pub fn without_query_cache(mut self) -> Self {
        self.cache = QueryCacheChoice::Disabled;
        self
    }
    /// Embedding cache size in vectors (default 100 000; 0 disables).
    pub fn embedding_cache(mut self, n: usize) -> Self {
        self.embedding_cache = n;
        self
    }
    /// Adds a metadata transformer.
    pub fn transformer(mut self, t: Arc<dyn pipeline::MetadataTransformer>) -> Self {
        self.transformers.push(t);
        self
    }

    /// Assembles the stack.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] when the store's dimensions differ from the embedder's.
    pub fn build(self) -> Result<Rag> {
        let dims = self.embedder.dimensions();
        let vectors = self
            .vectors
            .unwrap_or_else(|| Arc::new(store::EmbeddedStore::in_memory(dims)));
        if vectors.dimensions() != dims {
            return Err(wattos_core::Error::invalid_field(
                "dimensions",
                format!(
                    "vector store has {} dimensions, embedder {} has {dims}",
                    vectors.dimensions(),
                    self.embedder.name()
                ),
            ));
        }
        let embedder: Arc<dyn EmbeddingModel> = if self.embedding_cache > 0 {
            Arc::new(CachedEmbedder::new(self.embedder, self.embedding_cache))
        } else {
            self.embedder
        };
        let chunker: Arc<dyn Chunker> = match self.chunker {
            Some(c) => c,
            None => Arc::new(StructuredChunker::new(256)?),
        };
        let cache: Option<Arc<dyn QueryCache>> = match self.cache {
            QueryCacheChoice::Default => Some(Arc::new(MemoryQueryCache::new(1024))),
            QueryCacheChoice::Given(c) => Some(c),
            QueryCacheChoice::Disabled => None,
        };
        let mut pipeline =
            IndexPipeline::new(self.loader, chunker, embedder.clone(), vectors.clone());
        let mut retriever = Retriever::new(embedder, vectors);
        if let Some(cache) = cache {
            pipeline = pipeline.with_cache(cache.clone());
            retriever = retriever.with_cache(cache);
        }
        for t in self.transformers {
            pipeline = pipeline.with_transformer(t);
        }
        if let Some(k) = self.keywords {
            pipeline = pipeline.with_shared_keywords(k.clone());
            retriever = retriever.with_shared_keywords(k);
        }
        if let Some(r) = self.reranker {
            retriever = retriever.with_reranker(r);
        }
        Ok(Rag {
            pipeline,
            retriever,
        })
    }
}
