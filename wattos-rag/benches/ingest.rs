//! Ingestion throughput: load (Markdown) -> structure-aware chunking -> embedding -> embedded
//! vector store + BM25, in memory.
//!
//! ```text
//! cargo bench -p wattos-rag --bench ingest
//! ```
//!
//! The embedder is the deterministic hashing embedder (the local MiniLM lives in wattos-llm and is
//! wired in after merge), so the figures measure the pipeline, not a neural model.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wattos_core::test_utils::embed::HashingEmbedder;
use wattos_core::{RequestContext, TenantId};
use wattos_rag::RagBuilder;
use wattos_rag::document::Source;
use wattos_rag::keyword::{KeywordIndex, Language};

const DOCS: usize = 200;

fn corpus(seed: usize) -> Vec<Source> {
    (0..DOCS)
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
