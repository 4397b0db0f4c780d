//! Evaluates BM25, dense, hybrid and reranked retrieval on a BEIR-layout dataset.
//!
//! ```text
//! cargo run -p wattos-rag --release --example beir_eval -- [DATASET_DIR] [--split test] [--embedder minilm|hashing]
//! ```
//!
//! Defaults to the shipped `wattos-rag/data/wattos-mini`; `wattos-rag/data/rust-errors` is the
//! larger shipped set (518 rustc error-index pages, 364 compiler messages as queries). The embedder is the local
//! all-MiniLM-L6-v2 (`wattos_llm::local::MiniLmEmbedder`, from `$WATTOS_MODELS__DIR` or the cache
//! folder `scripts/fetch-models.sh` fills); without the model files it says so and falls back to
//! the deterministic hashing embedder from `wattos_core::test_utils`. Any
//! `Arc<dyn EmbeddingModel>` works with `wattos_rag::eval::evaluate`.
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use wattos_core::embedding::EmbeddingModel;
use wattos_core::test_utils::embed::HashingEmbedder;
use wattos_core::{RequestContext, TenantId};
use wattos_llm::local::{MiniLmEmbedder, default_models_dir};
use wattos_rag::RagBuilder;
use wattos_rag::chunk::StructuredChunker;
use wattos_rag::embed::CachedEmbedder;
use wattos_rag::eval::{self, BeirDataset};
use wattos_rag::fusion::Fusion;
use wattos_rag::keyword::{KeywordIndex, Language};
use wattos_rag::rerank::MmrReranker;
use wattos_rag::retrieve::{SearchMode, SearchRequest};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/wattos-mini").to_string();
    let mut split = "test".to_string();
    let mut which = "minilm".to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--split" => split = args.next().ok_or("--split needs a value")?,
            "--embedder" => which = args.next().ok_or("--embedder needs a value")?,
            other => dir = other.to_string(),
        }
    }
    let dataset = BeirDataset::load(&dir, &split)?;
    let embedder: Arc<dyn EmbeddingModel> = match which.as_str() {
        "hashing" => HashingEmbedder::shared(384),
        "minilm" => match MiniLmEmbedder::from_models_dir(default_models_dir()) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                println!("MiniLM unavailable ({e}); using the hashing embedder");
                HashingEmbedder::shared(384)
            }
        },
        other => return Err(format!("unknown embedder {other:?} (minilm|hashing)").into()),
    };
    println!("embedder: {}", embedder.name());
    // One embedding cache shared by ingestion, search and the MMR reranker: MMR needs the vectors
    // of its candidates, and with the shared cache those are the ones ingestion computed.
    let embedder: Arc<dyn EmbeddingModel> = Arc::new(CachedEmbedder::new(embedder, 1_000_000));
    let rag = RagBuilder::new(embedder.clone())
        .embedding_cache(0)
        .chunker(Arc::new(StructuredChunker::new(512)?))
        .keyword_index(KeywordIndex::in_memory(Language::English))
        .reranker(Arc::new(MmrReranker::new(embedder, 0.8)))
        .build()?;
    let ctx = RequestContext::system(TenantId::new("eval")?);
    let started = std::time::Instant::now();
    let skipped = eval::ingest(&ctx, &rag, &dataset).await?;
    for (id, why) in &skipped {
        eprintln!("skipped corpus document {id}: {why}");
    }
    println!(
        "dataset {dir}: {} docs ({} skipped), {} queries, ingested in {:.2?}",
        dataset.corpus.len(),
        skipped.len(),
        dataset.queries.len(),
        started.elapsed()
    );
    let runs = [
        (
            "bm25",
            SearchRequest::new("", 100).with_mode(SearchMode::Keyword),
        ),
        (
            "dense",
            SearchRequest::new("", 100).with_mode(SearchMode::Dense),
        ),
        (
            "hybrid-rrf",
            SearchRequest::new("", 100).with_mode(SearchMode::Hybrid {
                fusion: Fusion::Rrf { k: 60.0 },
            }),
        ),
        (
            "hybrid-weighted",
            SearchRequest::new("", 100).with_mode(SearchMode::Hybrid {
                fusion: Fusion::Weighted { dense_weight: 0.5 },
            }),
        ),
        (
            "hybrid-rrf+mmr",
            SearchRequest::new("", 100)
                .with_mode(SearchMode::Hybrid {
                    fusion: Fusion::Rrf { k: 60.0 },
                })
                .reranked(),
        ),
    ];
    println!(
        "{:<18} {:>8} {:>11} {:>8}",
        "run", "nDCG@10", "Recall@100", "MRR@10"
    );
    for (name, req) in runs {
        let m = eval::evaluate(&ctx, &rag, &dataset, &req).await?;
        println!(
            "{name:<18} {:>8.4} {:>11.4} {:>8.4}",
            m.ndcg_at_10, m.recall_at_100, m.mrr_at_10
        );
    }
    Ok(())
}
