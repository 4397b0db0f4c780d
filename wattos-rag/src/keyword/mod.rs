//! Keyword (full-text) search, the lexical half of hybrid retrieval.
//!
//! [`KeywordSearch`] is the seam: the ingestion pipeline writes each document's chunks to it and
//! the retriever searches it, always within the caller's tenant. Implementations:
//!
//! * [`KeywordIndex`]: BM25 with tantivy, per tenant, English or German analysis (the embedded
//!   default).
//! * `store::PgFullText` (feature `pgvector`): PostgreSQL full-text search over the rows of a
//!   [`crate::store::PgVectorStore`] table, for deployments where every instance must see the same
//!   index.

mod bm25;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use wattos_core::vector_store::{Filter, Hit};
use wattos_core::{RequestContext, Result};

pub use bm25::KeywordIndex;

/// Analyzer language of a keyword index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    /// English stop words and stemmer.
    English,
    /// German stop words and stemmer.
    German,
}

/// One chunk as the keyword index stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordChunk {
    /// Chunk id.
    pub id: String,
    /// Indexed and returned text.
    pub text: String,
    /// Returned with hits and used by filters.
    pub metadata: Map<String, Value>,
}

/// A per-tenant full-text index.
///
/// Every call is scoped to `ctx`'s tenant: one tenant never finds, replaces or deletes another's
/// chunks. Query text is plain words, never a query language, so user input cannot fail to parse.
///
/// ```
/// use wattos_core::{RequestContext, TenantId};
/// use wattos_rag::keyword::{KeywordChunk, KeywordIndex, KeywordSearch, Language};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let index = KeywordIndex::in_memory(Language::English);
/// let ctx = RequestContext::system(TenantId::new("acme")?);
/// let chunk = KeywordChunk {
///     id: "faq#0".into(),
///     text: "Invoices are paid within thirty days.".into(),
///     metadata: Default::default(),
/// };
/// KeywordSearch::replace_documents(&index, &ctx, &[("faq".into(), vec![chunk])]).await?;
/// let hits = KeywordSearch::search(&index, &ctx, "paying invoice", 5, None).await?;
/// assert_eq!(hits[0].document_id, "faq");
/// # Ok::<_, wattos_core::Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait KeywordSearch: Send + Sync {
    /// Implementation name for logs.
    fn name(&self) -> &str;

    /// Replaces the chunks of each listed document (an empty list deletes it), all or nothing.
    ///
    /// # Errors
    /// Backend failures; nothing is changed then.
    async fn replace_documents(
        &self,
        ctx: &RequestContext,
        docs: &[(String, Vec<KeywordChunk>)],
    ) -> Result<()>;

    /// Deletes every chunk of the given documents.
    ///
    /// # Errors
    /// Backend failures.
    async fn delete_documents(&self, ctx: &RequestContext, document_ids: &[String]) -> Result<()>;

    /// Chunks indexed for the caller's tenant.
    ///
    /// # Errors
    /// Backend failures.
    async fn count(&self, ctx: &RequestContext) -> Result<u64>;

    /// The `top_k` best chunks for `query`, best first, restricted by `filter`. Scores are the
    /// implementation's relevance (higher is better; not comparable across implementations).
    ///
    /// # Errors
    /// Invalid filters; backend failures.
    async fn search(
        &self,
        ctx: &RequestContext,
        query: &str,
        top_k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<Hit>>;
}

#[async_trait]
impl<T: KeywordSearch + ?Sized> KeywordSearch for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn replace_documents(
        &self,
        ctx: &RequestContext,
        docs: &[(String, Vec<KeywordChunk>)],
    ) -> Result<()> {
        (**self).replace_documents(ctx, docs).await
    }
    async fn delete_documents(&self, ctx: &RequestContext, document_ids: &[String]) -> Result<()> {
        (**self).delete_documents(ctx, document_ids).await
    }
    async fn count(&self, ctx: &RequestContext) -> Result<u64> {
        (**self).count(ctx).await
    }
    async fn search(
        &self,
        ctx: &RequestContext,
        query: &str,
        top_k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<Hit>> {
        (**self).search(ctx, query, top_k, filter).await
    }
}
