//! The embedded store's ANN index against a well-kept HNSW crate (`hnsw_rs`) on the same data:
//! build time, memory, query latency p50/p99 and recall@10 against exact search.
//!
//! ```text
//! cargo bench -p wattos-rag --bench ann_compare
//! WATTOS_BENCH_SIZES=10000 cargo bench -p wattos-rag --bench ann_compare   # quicker
//! ```
//!
//! Synthetic 384-d unit vectors around 256 cluster centres (as in `benches/search.rs`), 500
//! queries, one tenant, no filter (HNSW has no tenant namespace; the embedded store keeps one
//! partition per tenant, so filtering by tenant costs it nothing). Single-threaded queries.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use anndists::dist::DistDot;
use hnsw_rs::prelude::Hnsw;
use wattos_core::vector_store::{VectorQuery, VectorRecord, VectorStore};
use wattos_core::{RequestContext, TenantId};
use wattos_rag::store::{EmbeddedOptions, EmbeddedStore};
use wattos_rag::synthetic::clustered_vectors;

mod support;
use support::{percentile, rss_bytes};

const DIMS: usize = 384;
const K: usize = 10;

fn row(name: &str, build: Duration, mem: usize, lat: &mut [Duration], recall: f64) {
    lat.sort();
    println!(
        "| {name} | {:.1} s | {:.0} MiB | {:.3} ms | {:.3} ms | {recall:.3} |",
        build.as_secs_f64(),
        mem as f64 / (1024.0 * 1024.0),
        percentile(lat, 0.5).as_secs_f64() * 1e3,
        percentile(lat, 0.99).as_secs_f64() * 1e3,
    );
}

fn recall(found: &[usize], truth: &[usize]) -> usize {
    found.iter().filter(|i| truth.contains(i)).count()
}

fn main() {
    let sizes: Vec<usize> = std::env::var("WATTOS_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ctx = RequestContext::system(TenantId::new("bench").unwrap());
    for n in sizes {
        let data = clustered_vectors(n, DIMS, 256, 1);
        let queries = clustered_vectors(500, DIMS, 256, 3);
        let records = |store: &EmbeddedStore| {
            for (b, batch) in data.chunks(5_000).enumerate() {
                let recs: Vec<VectorRecord> = batch
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let id = b * 5_000 + i;
                        VectorRecord::new(id.to_string(), format!("d{}", id / 8), v.clone(), "x")
                    })
                    .collect();
                rt.block_on(store.upsert(&ctx, recs)).unwrap();
            }
        };
        let ids = |hits: Vec<wattos_core::vector_store::Hit>| -> Vec<usize> {
            hits.iter().map(|h| h.id.parse().unwrap()).collect()
        };

        // Ground truth: exact search.
        let exact = EmbeddedStore::in_memory_with(DIMS, EmbeddedOptions::exact());
        records(&exact);
        let truth: Vec<Vec<usize>> = queries
            .iter()
            .map(|q| {
                ids(rt
                    .block_on(exact.search(&ctx, &VectorQuery::new(q.clone(), K)))
                    .unwrap())
            })
            .collect();
        drop(exact);

        println!("\n{n} vectors, {DIMS} dims, 256 clusters, 500 queries, top-{K}");
        println!("| index | build | memory (RSS growth) | p50 | p99 | recall@10 |");
        println!("|---|---|---|---|---|---|");

        // The embedded store (2-bit code scan with error bounds, exact re-scoring).
        let rss0 = rss_bytes();
        let t = Instant::now();
        let store = EmbeddedStore::in_memory_with(DIMS, EmbeddedOptions::default());
        records(&store);
        let build = t.elapsed();
        let mem = rss_bytes().saturating_sub(rss0);
        let mut lat = Vec::new();
        let mut hit = 0;
        for (q, truth) in queries.iter().zip(&truth) {
            let t = Instant::now();
            let hits = rt
                .block_on(store.search(&ctx, &VectorQuery::new(q.clone(), K)))
                .unwrap();
            lat.push(t.elapsed());
            hit += recall(&ids(hits), truth);
        }
        row(
            "wattos EmbeddedStore (2-bit codes, bounded re-scoring)",
            build,
            mem,
            &mut lat,
            hit as f64 / (K * queries.len()) as f64,
        );
        drop(store);

        // hnsw_rs: M = 16, ef_construction = 200, parallel insertion on every core.
        let rss0 = rss_bytes();
        let t = Instant::now();
        let mut hnsw = Hnsw::<f32, DistDot>::new(16, n, 16, 200, DistDot {});
        let refs: Vec<(&Vec<f32>, usize)> = data.iter().zip(0..).collect();
        hnsw.parallel_insert(&refs);
        hnsw.set_searching_mode(true);
        let build = t.elapsed();
        let mem = rss_bytes().saturating_sub(rss0);
        for ef in [32, 64, 128, 256] {
            let mut lat = Vec::new();
            let mut hit = 0;
            for (q, truth) in queries.iter().zip(&truth) {
                let t = Instant::now();
                let found = hnsw.search(q, K, ef);
                lat.push(t.elapsed());
                let found: Vec<usize> = found.iter().map(|n| n.d_id).collect();
                hit += recall(&found, truth);
            }
            row(
                &format!("hnsw_rs 0.3 (M 16, ef_c 200, ef {ef})"),
                build,
                mem,
                &mut lat,
                hit as f64 / (K * queries.len()) as f64,
            );
        }
    }
}
