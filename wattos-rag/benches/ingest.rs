//! Ingestion throughput: load (Markdown) -> structure-aware chunking -> embedding -> embedded
//! vector store + BM25, in memory.
//!
//! ```text
//! cargo bench -p wattos-rag --bench ingest
//! ```
//!
//! First a timed pass with the real local embedder (all-MiniLM-L6-v2 from the model cache,
//! `scripts/fetch-models.sh` / `WATTOS_MODELS__DIR`; skipped loudly without it), then a timed pass
//! and the criterion group with the deterministic hashing embedder, which measure the pipeline
//! without a neural model. `WATTOS_BENCH_MINILM_DOCS` sets the MiniLM pass size (default 200).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;

use wattos_core::embedding::EmbeddingModel;
use wattos_core::test_utils::embed::HashingEmbedder;
use wattos_core::{RequestContext, TenantId};
use wattos_rag::RagBuilder;
use wattos_rag::document::Source;
use wattos_rag::keyword::{KeywordIndex, Language};

mod support;
use support::rss_bytes;

const DOCS: usize = 200;

fn corpus(seed: usize) -> Vec<Source> {
    corpus_n(seed, DOCS)
}

fn corpus_n(seed: usize, docs: usize) -> Vec<Source> {
    (0..docs)
        .map(|d| {
            let mut md = format!("# Document {d}\n\n");
            for s in 0..4 {
                md.push_str(&format!("## Section {s}\n\n"));
                for p in 0..3 {
                    md.push_str(&format!(
                        "Paragraph {p} of section {s} in document {d} (run {seed}) talks about grid storage, heat pumps and tariffs. \
                         It has a few sentences so that the chunker has real boundaries to respect. Prices and demand vary by season.\n\n"
                    ));
                }
            }
            Source::new(format!("doc-{seed}-{d}.md"), md)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let ctx = RequestContext::system(TenantId::new("bench").unwrap());
    match wattos_llm::local::MiniLmEmbedder::from_models_dir(wattos_llm::local::default_models_dir())
    {
        Ok(m) => {
            let docs = std::env::var("WATTOS_BENCH_MINILM_DOCS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(DOCS);
            let embedder: Arc<dyn EmbeddingModel> = Arc::new(m);
            let rag = RagBuilder::new(embedder)
                .keyword_index(KeywordIndex::in_memory(Language::English))
                .build()
                .unwrap();
            let rss0 = rss_bytes();
            let t = Instant::now();
            let report = rt.block_on(rag.ingest(&ctx, corpus_n(100, docs))).unwrap();
            let secs = t.elapsed().as_secs_f64();
            println!(
                "[ingest minilm] {} docs, {} chunks in {secs:.3}s: {:.1} docs/s, {:.1} chunks/s; RSS growth {:.1} MiB",
                report.indexed(),
                report.chunks(),
                report.indexed() as f64 / secs,
                report.chunks() as f64 / secs,
                rss_bytes().saturating_sub(rss0) as f64 / 1048576.0
            );
        }
        Err(e) => println!("SKIPPED: MiniLM ingest pass: {e}"),
    }
    // One timed pass for the docs/s and chunks/s figures.
    let rag = RagBuilder::new(HashingEmbedder::shared(384))
        .keyword_index(KeywordIndex::in_memory(Language::English))
        .build()
        .unwrap();
    let t = Instant::now();
    let report = rt.block_on(rag.ingest(&ctx, corpus(0))).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "[ingest] {} docs, {} chunks in {secs:.3}s: {:.0} docs/s, {:.0} chunks/s",
        report.indexed(),
        report.chunks(),
        report.indexed() as f64 / secs,
        report.chunks() as f64 / secs
    );

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(DOCS as u64));
    let mut run = 1;
    group.bench_function("markdown_docs_hybrid_in_memory", |b| {
        b.iter(|| {
            run += 1;
            let rag = RagBuilder::new(HashingEmbedder::shared(384))
                .keyword_index(KeywordIndex::in_memory(Language::English))
                .build()
                .unwrap();
            rt.block_on(rag.ingest(&ctx, corpus(run))).unwrap()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(8));
    targets = bench
}
criterion_main!(benches);
