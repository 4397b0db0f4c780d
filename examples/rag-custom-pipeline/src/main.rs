//! Builds a RAG pipeline from individual stages instead of the defaults.
//!
//! ```text
//! cargo run -p example-rag-custom-pipeline
//! ```
//!
//! * a custom [`Loader`] that reads "records" from an in-memory table,
//! * a [`TokenChunker`] (64 tokens, 16 overlap),
//! * a metadata transformer tagging each chunk with its department,
//! * a German BM25 index and weighted fusion (dense 0.4 / keyword 0.6),
//! * MMR reranking for diverse results, with a department filter.
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use async_trait::async_trait;
use wattos_core::test_utils::embed::HashingEmbedder;
use wattos_core::vector_store::Filter;
use wattos_core::{RequestContext, TenantId};
use wattos_rag::RagBuilder;
use wattos_rag::chunk::TokenChunker;
use wattos_rag::document::{Chunk, Document, Format, Source};
use wattos_rag::fusion::Fusion;
use wattos_rag::keyword::{KeywordIndex, Language};
use wattos_rag::loader::Loader;
use wattos_rag::rerank::MmrReranker;
use wattos_rag::retrieve::{SearchMode, SearchRequest};
use wattos_rag::store::EmbeddedStore;

/// Reads `department|text` records.
struct RecordLoader;

#[async_trait]
impl Loader for RecordLoader {
    async fn load(&self, _ctx: &RequestContext, source: Source) -> wattos_core::Result<Document> {
        let raw = String::from_utf8(source.bytes).map_err(|_| {
            wattos_core::Error::invalid_field("document", format!("{} is not UTF-8", source.id))
        })?;
        let (dept, text) = raw.split_once('|').ok_or_else(|| {
            wattos_core::Error::invalid_field(
                "document",
                format!("{} has no department", source.id),
            )
        })?;
        Ok(Document {
            id: source.id,
            title: None,
            location: None,
            format: Format::Text,
            text: text.trim().to_owned(),
            metadata: Default::default(),
        }
        .with_meta("department", dept.trim()))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let embedder = HashingEmbedder::shared(256);
    let tag_length = |_doc: &Document, chunk: &mut Chunk| -> wattos_core::Result<()> {
        let kind = if chunk.text.len() > 120 {
            "long"
        } else {
            "short"
        };
        chunk
            .metadata
            .insert("length".into(), serde_json::Value::from(kind));
        Ok(())
    };
    let rag = RagBuilder::new(embedder.clone())
        .loader(Arc::new(RecordLoader))
        .chunker(Arc::new(TokenChunker::new(64, 16)?))
        .transformer(Arc::new(tag_length))
        .vector_store(Arc::new(EmbeddedStore::in_memory(256)))
        .keyword_index(KeywordIndex::in_memory(Language::German))
        .reranker(Arc::new(MmrReranker::new(embedder, 0.6)))
        .build()?;
    let ctx = RequestContext::system(TenantId::new("stadtwerke")?);
    let records = [
        (
            "r1",
            "netz|Die Netzfrequenz liegt in Europa bei 50 Hertz. Bei Lastspitzen springen Batteriespeicher ein.",
        ),
        (
            "r2",
            "netz|Umspannwerke wandeln Hochspannung in Mittelspannung um.",
        ),
        (
            "r3",
            "vertrieb|Kunden können ihren Stromtarif online wechseln; die Kündigungsfrist beträgt einen Monat.",
        ),
        (
            "r4",
            "vertrieb|Für Wärmepumpen gibt es einen günstigeren Heizstromtarif.",
        ),
        (
            "r5",
            "netz|Batteriespeicher stabilisieren das Netz innerhalb von Sekunden.",
        ),
    ];
    let report = rag
        .ingest(
            &ctx,
            records
                .iter()
                .map(|(id, body)| Source::new(*id, *body))
                .collect(),
        )
        .await?;
    println!(
        "indexed {} records, {} chunks",
        report.indexed(),
        report.chunks()
    );

    let req = SearchRequest::new("Batteriespeicher Netz", 3)
        .with_mode(SearchMode::Hybrid {
            fusion: Fusion::Weighted { dense_weight: 0.4 },
        })
        .with_filter(Filter::eq("department", "netz"))
        .reranked();
    for hit in rag.search(&ctx, &req).await? {
        println!(
            "{:.3}  {}  [{}]  {}",
            hit.score, hit.id, hit.metadata["length"], hit.text
        );
    }
    let tarif = rag
        .search(
            &ctx,
            &SearchRequest::new("Wärmepumpe", 2).with_mode(SearchMode::Keyword),
        )
        .await?;
    println!(
        "\nGerman stemming: 'Wärmepumpe' finds {:?}",
        tarif
            .iter()
            .map(|h| h.document_id.as_str())
            .collect::<Vec<_>>()
    );
    Ok(())
}
