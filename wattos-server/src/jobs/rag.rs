//! [`RagIngestion`]: the [`IngestionService`] over `wattos_rag::Rag`, one stack per collection.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::PgPool;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::{Error, RequestContext, Result, TenantId};
use wattos_rag::Rag;
use wattos_rag::document::Document;
use wattos_rag::jobs::is_permanent;

use crate::rag::{PgVectorBackend, RagBackend};

use super::{IngestDocument, IngestionService, report_json, validate_collection};

/// Where the collections live.
#[derive(Clone)]
enum Backend {
    /// Embedded stores (vectors + BM25) under `<dir>/<collection>`.
    Embedded(PathBuf),
    /// pgvector tables `rag_<collection>`, as the RAG API's shared-mode backend opens them.
    Postgres(PgVectorBackend),
}

/// Ingests into `wattos_rag::Rag` stacks, one per collection: embedded stores in embedded mode,
/// pgvector tables in shared mode. Idempotent by content: a document whose content hash is already
/// stored is reported `unchanged` and not written again.
pub struct RagIngestion {
    embedder: Arc<dyn EmbeddingModel>,
    backend: Backend,
    stacks: tokio::sync::Mutex<HashMap<String, Rag>>,
}

impl std::fmt::Debug for RagIngestion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RagIngestion")
            .field("embedder", &self.embedder.name())
            .finish_non_exhaustive()
    }
}

impl RagIngestion {
    /// Collections as embedded stores under `dir`.
    pub fn embedded(dir: impl Into<PathBuf>, embedder: Arc<dyn EmbeddingModel>) -> Self {
        Self {
            embedder,
            backend: Backend::Embedded(dir.into()),
            stacks: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Collections as pgvector tables in the database of `pool`.
    pub fn postgres(pool: PgPool, embedder: Arc<dyn EmbeddingModel>) -> Self {
        Self {
            embedder,
            backend: Backend::Postgres(PgVectorBackend::new(pool)),
            stacks: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    async fn stack(&self, collection: &str) -> Result<Rag> {
        validate_collection(collection)?;
        let mut stacks = self.stacks.lock().await;
        if let Some(rag) = stacks.get(collection) {
            return Ok(rag.clone());
        }
        let rag = match &self.backend {
            Backend::Embedded(dir) => {
                let dir = dir.join(collection);
                let embedder = self.embedder.clone();
                tokio::task::spawn_blocking(move || Rag::open(dir, embedder))
                    .await
                    .map_err(|e| {
                        Error::internal("opening a collection panicked").with_source(e)
                    })??
            }
            Backend::Postgres(backend) => {
                // One table per collection for every tenant (each row carries the tenant of the
                // call that wrote it), so the stack does not depend on the tenant passed here.
                let tenant = TenantId::new(crate::gateway::EMBEDDED_TENANT)?;
                backend
                    .open(&tenant, collection, self.embedder.clone())
                    .await?
            }
        };
        stacks.insert(collection.to_owned(), rag.clone());
        Ok(rag)
    }
}

#[async_trait]
impl IngestionService for RagIngestion {
    async fn ingest(
        &self,
        ctx: &RequestContext,
        collection: &str,
        documents: Vec<IngestDocument>,
    ) -> Result<Value> {
        let rag = self.stack(collection).await?;
        let total = documents.len();
        let docs: Vec<Document> = documents
            .into_iter()
            .map(|d| {
                let mut doc = Document::text(d.id, d.text);
                doc.title = d.title;
                doc.location = d.location;
                if let Some(f) = d.format {
                    doc.format = f.into();
                }
                for (k, v) in d.metadata.unwrap_or_default() {
                    doc = doc.with_meta(k, v);
                }
                doc
            })
            .collect();
        // The pipeline's future is not provably `Send` (buffered stream over borrowed closures), so
        // it runs to completion on a blocking thread of the runtime; embedding is CPU-bound anyway.
        let owned_ctx = ctx.clone();
        let handle = tokio::runtime::Handle::current();
        let report = tokio::task::spawn_blocking(move || {
            handle.block_on(rag.pipeline().ingest_documents(&owned_ctx, docs))
        })
        .await
        .map_err(|e| Error::internal("ingestion panicked").with_source(e))??;
        let failed = report.failed();
        // A transient failure (embedder or store unavailable) retries the whole job; documents
        // already stored are then `unchanged`, so nothing is written twice.
        if let Some((id, e)) = failed.iter().find(|(_, e)| !is_permanent(e)) {
            return Err(Error::new(
                e.kind(),
                format!(
                    "{} of {total} documents failed, e.g. {id:?}: {}",
                    failed.len(),
                    e.message()
                ),
            ));
        }
        if !failed.is_empty() && failed.len() == total {
            let (id, e) = failed[0];
            return Err(Error::invalid_input(format!(
                "every document failed, e.g. {id:?}: {}",
                e.message()
            )));
        }
        Ok(report_json(&report))
    }
}

/// The pgvector table of a collection: `rag_`, the name with `-` as `_` (at most 24 bytes), and 8
/// hex digits of its hash, so `a-b` and `a_b` never share a table.
pub fn table_name(collection: &str) -> String {
    use sha2::{Digest, Sha256};
    let readable: String = collection
        .chars()
        .take(24)
        .map(|c| if c == '-' { '_' } else { c })
        .collect();
    let hash = hex::encode(Sha256::digest(collection.as_bytes()));
    format!("rag_{readable}_{}", &hash[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_identifiers_and_distinct() {
        let a = table_name("a-b");
        assert_ne!(a, table_name("a_b"));
        assert!(a.starts_with("rag_a_b_"));
        let long = table_name(&"x".repeat(64));
        assert!(long.len() <= 48, "{long}");
        assert!(long.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    }
}
