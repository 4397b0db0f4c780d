//! Search latency and recall of the embedded store, and hybrid (dense + BM25 + RRF) latency.
//!
//! ```text
//! cargo bench -p wattos-rag --bench search
//! WATTOS_BENCH_SIZES=10000 cargo bench -p wattos-rag --bench search   # quicker
//! ```
//!
//! Before the criterion runs, each size prints p50/p99 over 500 queries, recall@10 against exact
//! search, and memory (store estimate and process RSS growth). Vectors are synthetic: 384-d unit
//! vectors around 256 cluster centres (the shape of real embeddings). Two tenants share the store;
//! every query is scoped to one of them.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use wattos_core::embedding::EmbeddingModel;
use wattos_core::test_utils::embed::HashingEmbedder;
use wattos_core::vector_store::{VectorQuery, VectorRecord, VectorStore};
use wattos_core::{RequestContext, TenantId};
use wattos_rag::keyword::{KeywordChunk, KeywordIndex, Language};
use wattos_rag::retrieve::{Retriever, SearchMode, SearchRequest};
use wattos_rag::store::{EmbeddedOptions, EmbeddedStore};
use wattos_rag::synthetic::clustered_vectors;

mod support;
use support::{percentile, rss_bytes};

const DIMS: usize = 384;

fn sizes() -> Vec<usize> {
    std::env::var("WATTOS_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000])
}

/// Options of the indexed stores; `WATTOS_BENCH_MAX_NPROBE` / `WATTOS_BENCH_NPROBE` override the
/// probe limits (to sweep the recall/latency trade-off).
fn ivf_options() -> EmbeddedOptions {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    let d = EmbeddedOptions::default();
    EmbeddedOptions {
        nprobe: env("WATTOS_BENCH_NPROBE").unwrap_or(d.nprobe),
        max_nprobe: env("WATTOS_BENCH_MAX_NPROBE").unwrap_or(d.max_nprobe),
        ..d
    }
}

const WORDS: &[&str] = &[
    "energy",
    "grid",
    "solar",
    "wind",
    "battery",
    "storage",
    "heat",
    "pump",
    "price",
    "tariff",
    "network",
    "voltage",
    "frequency",
    "demand",
    "supply",
    "customer",
    "contract",
    "meter",
    "reading",
    "invoice",
    "outage",
    "repair",
    "cable",
    "transformer",
    "station",
    "hydrogen",
    "gas",
    "pipeline",
    "district",
    "heating",
    "efficiency",
    "insulation",
    "roof",
    "panel",
    "inverter",
    "charging",
    "vehicle",
    "fleet",
    "forecast",
    "weather",
    "load",
    "peak",
    "reserve",
    "market",
];

fn synthetic_text(i: usize) -> String {
    let mut x = i as u64 * 2_654_435_761 + 17;
    (0..40)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Zipf-like: low indexes far more often.
            let r = (x % 10_000) as f64 / 10_000.0;
            WORDS[((r * r * r) * WORDS.len() as f64) as usize % WORDS.len()]
        })
        .collect::<Vec<_>>()
        .join(" ")
        + &format!(" doc{i}")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let tenant = RequestContext::system(TenantId::new("bench").unwrap());
    let other = RequestContext::system(TenantId::new("other").unwrap());
    for n in sizes() {
        // ---- dense search on synthetic vectors ----
        let rss0 = rss_bytes();
        let store = EmbeddedStore::in_memory_with(DIMS, ivf_options());
        let exact = EmbeddedStore::in_memory_with(
            DIMS,
            EmbeddedOptions {
                index_threshold: usize::MAX,
                ..Default::default()
            },
        );
        let data = clustered_vectors(n, DIMS, 256, 1);
        let built = Instant::now();
        for (b, batch) in data.chunks(5_000).enumerate() {
            let recs: Vec<VectorRecord> = batch
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    VectorRecord::new(
                        format!("c{}", b * 5_000 + i),
                        format!("d{}", (b * 5_000 + i) / 8),
                        v.clone(),
                        "x",
                    )
                    .with_meta("lang", "en")
                })
                .collect();
            rt.block_on(store.upsert(&tenant, recs.clone())).unwrap();
            rt.block_on(exact.upsert(&tenant, recs)).unwrap();
        }
        let build_time = built.elapsed();
        // Another tenant's data in the same store: queries must not pay for it.
        let noise: Vec<VectorRecord> = clustered_vectors(n / 10, DIMS, 256, 2)
            .into_iter()
            .enumerate()
            .map(|(i, v)| VectorRecord::new(format!("o{i}"), "o", v, "x"))
            .collect();
        rt.block_on(store.upsert(&other, noise)).unwrap();
        let mem_estimate = store.approx_memory_bytes(&tenant);
        let rss_growth = rss_bytes().saturating_sub(rss0) / 2; // two stores of the same data were built
        let queries = clustered_vectors(500, DIMS, 256, 3);
        let mut lat = Vec::with_capacity(queries.len());
        let mut found = 0usize;
        let mut probed = 0usize;
        let mut by_bound = 0usize;
        for q in &queries {
            let t = Instant::now();
            let (hits, stats) = store
                .search_with_stats(&tenant, &VectorQuery::new(q.clone(), 10))
                .unwrap();
            lat.push(t.elapsed());
            probed += stats.lists_probed;
            by_bound += usize::from(stats.stopped_by_bound);
            let truth = rt
                .block_on(exact.search(&tenant, &VectorQuery::new(q.clone(), 10)))
                .unwrap();
            found += hits
                .iter()
                .filter(|h| truth.iter().any(|x| x.id == h.id))
                .count();
        }
        let mut exact_lat = Vec::new();
        for q in queries.iter().take(100) {
            let t = Instant::now();
            rt.block_on(exact.search(&tenant, &VectorQuery::new(q.clone(), 10)))
                .unwrap();
            exact_lat.push(t.elapsed());
        }
        lat.sort();
        exact_lat.sort();
        println!(
            "[dense n={n}] build {build_time:.2?}; ivf p50 {:?} p99 {:?}; exact p50 {:?} p99 {:?}; recall@10 {:.3}; lists probed {:.1} (stopped by bound {:.0}%); memory: estimate {:.1} MiB, RSS growth {:.1} MiB per store",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            percentile(&exact_lat, 0.5),
            percentile(&exact_lat, 0.99),
            found as f64 / (queries.len() * 10) as f64,
            probed as f64 / queries.len() as f64,
            100.0 * by_bound as f64 / queries.len() as f64,
            mem_estimate as f64 / 1048576.0,
            rss_growth as f64 / 1048576.0,
        );
        drop(exact);
        let mut qi = 0;
        c.bench_function(&format!("dense_search_top10_n{n}"), |b| {
            b.iter(|| {
                qi = (qi + 1) % queries.len();
                rt.block_on(store.search(&tenant, &VectorQuery::new(queries[qi].clone(), 10)))
                    .unwrap()
            })
        });
        drop(store);

        // ---- hybrid search: hashing-embedded synthetic text, BM25, RRF, tenant-scoped ----
        let embedder = HashingEmbedder::shared(DIMS);
        let vectors = Arc::new(EmbeddedStore::in_memory_with(DIMS, ivf_options()));
        // The same records without an index: hybrid with exact dense search is the recall truth.
        let vectors_exact = Arc::new(EmbeddedStore::in_memory_with(
            DIMS,
            EmbeddedOptions {
                index_threshold: usize::MAX,
                ..Default::default()
            },
        ));
        let keywords = KeywordIndex::in_memory(Language::English);
        for start in (0..n).step_by(5_000) {
            let texts: Vec<String> = (start..(start + 5_000).min(n))
                .map(synthetic_text)
                .collect();
            let recs: Vec<VectorRecord> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    VectorRecord::new(
                        format!("c{}", start + i),
                        format!("d{}", start + i),
                        embedder.vector(t),
                        t.clone(),
                    )
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
            rt.block_on(vectors_exact.upsert(&tenant, recs.clone()))
                .unwrap();
            rt.block_on(vectors.upsert(&tenant, recs)).unwrap();
            keywords.replace_documents(&tenant, &kw).unwrap();
        }
        let retriever =
            Retriever::new(embedder.clone(), vectors.clone()).with_keywords(keywords.clone());
        let exact_retriever =
            Retriever::new(embedder.clone(), vectors_exact.clone()).with_keywords(keywords.clone());
        let qtexts: Vec<String> = (0..200)
            .map(|i| {
                format!(
                    "{} {} {}",
                    WORDS[i % WORDS.len()],
                    WORDS[(i * 7 + 3) % WORDS.len()],
                    WORDS[(i * 13 + 5) % WORDS.len()]
                )
            })
            .collect();
        let hybrid = |q: &str| {
            SearchRequest::new(q, 10).with_mode(SearchMode::Hybrid {
                fusion: Default::default(),
            })
        };
        // The stages on their own: dense top-40 (the fusion's candidate list) and BM25 top-40.
        let (mut dense_lat, mut kw_lat) = (Vec::new(), Vec::new());
        let (mut dense_found, mut probed, mut by_bound) = (0usize, 0usize, 0usize);
        for q in &qtexts {
            let v = embedder.vector(q);
            let t = Instant::now();
            let (hits, stats) = vectors
                .search_with_stats(&tenant, &VectorQuery::new(v.clone(), 40))
                .unwrap();
            dense_lat.push(t.elapsed());
            probed += stats.lists_probed;
            by_bound += usize::from(stats.stopped_by_bound);
            let truth = rt
                .block_on(vectors_exact.search(&tenant, &VectorQuery::new(v, 40)))
                .unwrap();
            dense_found += hits
                .iter()
                .filter(|h| truth.iter().any(|x| x.id == h.id))
                .count();
            let t = Instant::now();
            keywords.search(&tenant, q, 40, None).unwrap();
            kw_lat.push(t.elapsed());
        }
        dense_lat.sort();
        kw_lat.sort();
        println!(
            "[hybrid stages n={n}] dense top-40 p50 {:?} p99 {:?}, recall@40 vs exact {:.3}, lists probed {:.1} (stopped by bound {:.0}%); BM25 top-40 p50 {:?} p99 {:?}",
            percentile(&dense_lat, 0.5),
            percentile(&dense_lat, 0.99),
            dense_found as f64 / (qtexts.len() * 40) as f64,
            probed as f64 / qtexts.len() as f64,
            100.0 * by_bound as f64 / qtexts.len() as f64,
            percentile(&kw_lat, 0.5),
            percentile(&kw_lat, 0.99),
        );
        let mut lat = Vec::new();
        let mut found = 0usize;
        for q in &qtexts {
            let t = Instant::now();
            let hits = rt.block_on(retriever.search(&tenant, &hybrid(q))).unwrap();
            lat.push(t.elapsed());
            let truth = rt
                .block_on(exact_retriever.search(&tenant, &hybrid(q)))
                .unwrap();
            found += hits
                .iter()
                .filter(|h| truth.iter().any(|x| x.id == h.id))
                .count();
        }
        drop(exact_retriever);
        drop(vectors_exact);
        lat.sort();
        println!(
            "[hybrid n={n}] p50 {:?} p99 {:?}; recall@10 vs hybrid with exact dense search {:.3} (embed query + IVF top-40 + BM25 top-40 + RRF, tenant-scoped)",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            found as f64 / (qtexts.len() * 10) as f64
        );
        let _ = embedder.name();
        let mut qi = 0;
        c.bench_function(&format!("hybrid_search_top10_n{n}"), |b| {
            b.iter(|| {
                qi = (qi + 1) % qtexts.len();
                rt.block_on(retriever.search(&tenant, &hybrid(&qtexts[qi])))
                    .unwrap()
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
