//! Async ingestion jobs ([`crate::jobs`]) write through the same [`RagService`] as the synchronous
//! ingest route: same collections, same document registry, same stores.

use async_trait::async_trait;
use serde_json::Value;
use wattos_core::{Error, RequestContext, Result};
use wattos_rag::document::Source;

use super::{Pending, RagService, check_document_id, check_metadata, run_ingest};
use crate::jobs::{IngestDocument, IngestionService};

#[async_trait]
impl IngestionService for RagService {
    async fn ingest(
        &self,
        ctx: &RequestContext,
        collection: &str,
        documents: Vec<IngestDocument>,
    ) -> Result<Value> {
        // A job for a collection that does not exist (or was deleted since) is permanent:
        // `not_found` dead-letters it instead of retrying.
        if self
            .registry()
            .get_collection(ctx.tenant(), collection)
            .await?
            .is_none()
        {
            return Err(Error::not_found(format!(
                "collection {collection:?} does not exist"
            )));
        }
        let mut items = Vec::with_capacity(documents.len());
        for (i, d) in documents.into_iter().enumerate() {
            check_document_id(&d.id, &format!("documents[{i}].id"))?;
            let metadata = d.metadata.unwrap_or_default();
            check_metadata(&metadata, &format!("documents[{i}].metadata"))?;
            let mut source = Source::new(d.id, d.text.into_bytes());
            if let Some(t) = d.title {
                source = source.with_title(t);
            }
            if let Some(l) = d.location {
                source = source.with_location(l);
            }
            if let Some(f) = d.format {
                source = source.with_format(f.into());
            }
            items.push(Pending { source, metadata });
        }
        // Per-document results even when every document failed (a crawl batch of broken pages
        // must not fail the whole crawl).
        let report = run_ingest(self, ctx, collection, items)
            .await
            .map_err(|e| e.0)?
            .response;
        serde_json::to_value(&report)
            .map_err(|e| Error::internal("ingest report is not JSON").with_source(e))
    }
}
