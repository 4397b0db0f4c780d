//! Ingestion: loader -> chunker -> metadata transformers -> embedder (batched, concurrent, cached) ->
//! vector store + keyword index, incrementally.
//!
//! * A document whose content hash is already stored (`content_hash` chunk metadata) is skipped.
//! * A changed document replaces its chunks in the vector store (one atomic call) and in the keyword
//!   index (one commit).
//! * Every fallible step (load, chunk, transform, embed) runs before any index is touched, so a bad
//!   document never leaves partial state. If the keyword write fails after the vector write, the
//!   document is removed from the vector store too and reported as failed: a retry re-indexes it.
//! * Each change invalidates the tenant's query cache.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::vector_store::{Filter, VectorRecord, VectorStore};
use wattos_core::{Error, RequestContext, Result};

use crate::cache::QueryCache;
use crate::chunk::Chunker;
use crate::document::{Chunk, Document, Source};
use crate::embed::embed_concurrently;
use crate::keyword::{KeywordChunk, KeywordSearch};
use crate::loader::Loader;

/// Metadata key holding the document's content hash on every chunk.
pub const CONTENT_HASH_KEY: &str = "content_hash";

/// Adds or rewrites chunk metadata after chunking (language detection, tags, ACL labels...).
pub trait MetadataTransformer: Send + Sync {
    /// Updates `chunk` in place; `doc` is its document.
    ///
    /// # Errors
    /// Any error aborts the document (nothing is indexed for it).
    fn transform(&self, doc: &Document, chunk: &mut Chunk) -> Result<()>;
}

impl<F: Fn(&Document, &mut Chunk) -> Result<()> + Send + Sync> MetadataTransformer for F {
    fn transform(&self, doc: &Document, chunk: &mut Chunk) -> Result<()> {
        self(doc, chunk)
    }
}

/// What happened to one input.
#[derive(Debug)]
#[non_exhaustive]
pub enum IngestOutcome {
    /// Indexed (new or changed) with this many chunks.
    Indexed {
        /// Document id.
        document_id: String,
        /// Chunks written.
        chunks: usize,
    },
    /// Same content hash already indexed; nothing written.
    Unchanged {
        /// Document id.
        document_id: String,
        /// Chunks stored for it (read from the vector store, so a caller keeping its own record
        /// of documents can repair one that a crash left behind the store).
        chunks: usize,
    },
    /// Not indexed; the error names the document.
    Failed {
        /// Document id.
        document_id: String,
        /// Why.
        error: Error,
    },
}

/// Summary of an ingest call.
#[derive(Debug, Default)]
pub struct IngestReport {
    /// One outcome per input, in input order.
    pub outcomes: Vec<IngestOutcome>,
}

impl IngestReport {
    /// Documents indexed.
    pub fn indexed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, IngestOutcome::Indexed { .. }))
            .count()
    }
    /// Documents skipped as unchanged.
    pub fn unchanged(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, IngestOutcome::Unchanged { .. }))
            .count()
    }
    /// Failed documents.
    pub fn failed(&self) -> Vec<(&str, &Error)> {
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                IngestOutcome::Failed { document_id, error } => Some((document_id.as_str(), error)),
                _ => None,
            })
            .collect()
    }
    /// Chunks written.
    pub fn chunks(&self) -> usize {
        self.outcomes
            .iter()
            .map(|o| {
                if let IngestOutcome::Indexed { chunks, .. } = o {
                    *chunks
                } else {
                    0
                }
            })
            .sum()
    }
}

/// The ingestion pipeline. Build with [`IndexPipeline::new`] and the `with_*` methods.
#[derive(Clone)]
pub struct IndexPipeline {
    loader: Arc<dyn Loader>,
    chunker: Arc<dyn Chunker>,
    transformers: Vec<Arc<dyn MetadataTransformer>>,
    embedder: Arc<dyn EmbeddingModel>,
    vectors: Arc<dyn VectorStore>,
    keywords: Option<Arc<dyn KeywordSearch>>,
    cache: Option<Arc<dyn QueryCache>>,
    concurrency: usize,
}

struct Prepared {
    doc_id: String,
    records: Vec<VectorRecord>,
}

/// What preparing one document found.
enum Prepare {
    /// Already stored with the same content, in this many chunks.
    Unchanged(usize),
    /// To write.
    Write(Prepared),
}

impl IndexPipeline {
    /// A pipeline writing to `vectors`, embedding with `embedder`.
    pub fn new(
        loader: Arc<dyn Loader>,
        chunker: Arc<dyn Chunker>,
        embedder: Arc<dyn EmbeddingModel>,
        vectors: Arc<dyn VectorStore>,
    ) -> Self {
        Self {
            loader,
            chunker,
            transformers: Vec::new(),
            embedder,
            vectors,
            keywords: None,
            cache: None,
            concurrency: 4,
        }
    }

    /// Also indexes chunks for BM25.
    pub fn with_keywords(self, keywords: impl KeywordSearch + 'static) -> Self {
        self.with_shared_keywords(Arc::new(keywords))
    }

    /// As [`Self::with_keywords`], with an index shared with other parts (the pipeline and the
    /// retriever of one stack share theirs).
    pub fn with_shared_keywords(mut self, keywords: Arc<dyn KeywordSearch>) -> Self {
        self.keywords = Some(keywords);
        self
    }

    /// Appends a metadata transformer.
    pub fn with_transformer(mut self, t: Arc<dyn MetadataTransformer>) -> Self {
        self.transformers.push(t);
        self
    }

    /// Invalidates `cache` for the tenant after each change.
    pub fn with_cache(mut self, cache: Arc<dyn QueryCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Documents prepared (loaded, chunked, embedded) in parallel (default 4).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How many chunks of `doc` with content `hash` are stored (0: new or changed).
    async fn stored_chunks(&self, ctx: &RequestContext, doc: &Document, hash: &str) -> Result<u64> {
        let f = Filter::eq(wattos_core::vector_store::DOCUMENT_ID_KEY, doc.id.clone())
            .and(Filter::eq(CONTENT_HASH_KEY, hash));
        self.vectors.count(ctx, Some(&f)).await
    }

    /// Load, check hash, chunk, transform, embed.
    async fn prepare(&self, ctx: &RequestContext, source: Source) -> Result<Prepare> {
        let doc = self.loader.load(ctx, source).await?;
        self.prepare_document(ctx, doc).await
    }

    async fn prepare_document(&self, ctx: &RequestContext, doc: Document) -> Result<Prepare> {
        let hash = doc.content_hash();
        let stored = self.stored_chunks(ctx, &doc, &hash).await?;
        if stored > 0 {
            return Ok(Prepare::Unchanged(
                usize::try_from(stored).unwrap_or(usize::MAX),
            ));
        }
        let mut chunks = self.chunker.chunk(&doc)?;
        for chunk in &mut chunks {
            chunk
                .metadata
                .insert(CONTENT_HASH_KEY.into(), hash.clone().into());
            chunk
                .metadata
                .insert("start_char".into(), chunk.start_char.into());
            chunk
                .metadata
                .insert("end_char".into(), chunk.end_char.into());
            chunk
                .metadata
                .insert("chunk_index".into(), chunk.index.into());
            if let Some(t) = &doc.title {
                chunk
                    .metadata
                    .insert("title".into(), Value::String(t.clone()));
            }
            if let Some(l) = &doc.location {
                chunk
                    .metadata
                    .insert("location".into(), Value::String(l.clone()));
            }
            for t in &self.transformers {
                t.transform(&doc, chunk)?;
            }
        }
        let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
        let vectors = embed_concurrently(self.embedder.as_ref(), ctx, &texts, 2)
            .await
            .map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("document {:?}: embedding failed: {}", doc.id, e.message()),
                )
                .with_source(e)
            })?;
        let records = chunks
            .into_iter()
            .zip(vectors)
            .map(|(c, v)| VectorRecord {
                id: c.id,
                document_id: c.document_id,
                vector: v,
                text: c.text,
                metadata: c.metadata,
            })
            .collect();
        Ok(Prepare::Write(Prepared {
            doc_id: doc.id,
            records,
        }))
    }

    /// Loads and indexes `sources`. Per-document failures are reported, not returned: one bad file
    /// does not stop the batch.
    ///
    /// # Errors
    /// Only for failures that are not about one document (none today; reserved).
    pub async fn ingest(&self, ctx: &RequestContext, sources: Vec<Source>) -> Result<IngestReport> {
        let ids: Vec<String> = sources.iter().map(|s| s.id.clone()).collect();
        let prepared: Vec<Result<Prepare>> = futures::stream::iter(sources)
            .map(|s| self.prepare(ctx, s))
            .buffered(self.concurrency)
            .collect()
            .await;
        self.write(ctx, ids, prepared).await
    }

    /// Indexes already-loaded documents (skips the loader).
    ///
    /// # Errors
    /// As for [`IndexPipeline::ingest`].
    pub async fn ingest_documents(
        &self,
        ctx: &RequestContext,
        docs: Vec<Document>,
    ) -> Result<IngestReport> {
        let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
        let prepared: Vec<Result<Prepare>> = futures::stream::iter(docs)
            .map(|d| self.prepare_document(ctx, d))
            .buffered(self.concurrency)
            .collect()
            .await;
        self.write(ctx, ids, prepared).await
    }

    async fn write(
        &self,
        ctx: &RequestContext,
        ids: Vec<String>,
        prepared: Vec<Result<Prepare>>,
    ) -> Result<IngestReport> {
        let mut outcomes: Vec<Option<IngestOutcome>> = Vec::with_capacity(ids.len());
        let mut written: Vec<(usize, Prepared)> = Vec::new();
        for (i, (id, p)) in ids.into_iter().zip(prepared).enumerate() {
            match p {
                Ok(Prepare::Unchanged(chunks)) => outcomes.push(Some(IngestOutcome::Unchanged {
                    document_id: id,
                    chunks,
                })),
                Err(error) => outcomes.push(Some(IngestOutcome::Failed {
                    document_id: id,
                    error,
                })),
                Ok(Prepare::Write(p)) => match self
                    .vectors
                    .replace_document(ctx, &p.doc_id, p.records.clone())
                    .await
                {
                    Ok(()) => {
                        outcomes.push(None);
                        written.push((i, p));
                    }
                    Err(error) => outcomes.push(Some(IngestOutcome::Failed {
                        document_id: id,
                        error,
                    })),
                },
            }
        }
        if let Some(kw) = &self.keywords
            && !written.is_empty()
        {
            let docs: Vec<(String, Vec<KeywordChunk>)> = written
                .iter()
                .map(|(_, p)| {
                    (
                        p.doc_id.clone(),
                        p.records
                            .iter()
                            .map(|r| KeywordChunk {
                                id: r.id.clone(),
                                text: r.text.clone(),
                                metadata: r.metadata.clone(),
                            })
                            .collect(),
                    )
                })
                .collect();
            if let Err(e) = kw.replace_documents(ctx, &docs).await {
                // Keep the indexes consistent: take the documents out of the vector store as well.
                let doc_ids: Vec<String> = written.iter().map(|(_, p)| p.doc_id.clone()).collect();
                let _ = self.vectors.delete_documents(ctx, &doc_ids).await;
                for (i, p) in written.drain(..) {
                    outcomes[i] = Some(IngestOutcome::Failed {
                        document_id: p.doc_id.clone(),
                        error: Error::new(
                            e.kind(),
                            format!("document {:?}: keyword index: {}", p.doc_id, e.message()),
                        ),
                    });
                }
            }
        }
        for (i, p) in written {
            outcomes[i] = Some(IngestOutcome::Indexed {
                document_id: p.doc_id,
                chunks: p.records.len(),
            });
        }
        let report = IngestReport {
            outcomes: outcomes.into_iter().flatten().collect(),
        };
        if report.indexed() > 0 {
            self.invalidate(ctx).await;
        }
        metrics::counter!("wattos_rag_documents_indexed_total").increment(report.indexed() as u64);
        metrics::counter!("wattos_rag_chunks_indexed_total").increment(report.chunks() as u64);
        Ok(report)
    }

    async fn invalidate(&self, ctx: &RequestContext) {
        if let Some(c) = &self.cache
            && let Err(e) = c.invalidate(ctx).await
        {
            tracing::warn!(error = %e, tenant = %ctx.tenant(), "query cache invalidation failed");
        }
    }

    /// Removes documents from every index; returns the vector records removed.
    ///
    /// # Errors
    /// Store failures.
    pub async fn delete(&self, ctx: &RequestContext, document_ids: &[String]) -> Result<u64> {
        let n = self.vectors.delete_documents(ctx, document_ids).await?;
        if let Some(kw) = &self.keywords {
            kw.delete_documents(ctx, document_ids).await?;
        }
        self.invalidate(ctx).await;
        Ok(n)
    }
}
