//! Compares the embedded store's IVF index with three ANN crates on the same data:
//! 100k x 384-d clustered unit vectors (`wattos_rag::synthetic::clustered_vectors`, 256 centres),
//! 500 queries, top-10. Reports build time, query p50/p99 (one thread), recall@10 against exact
//! search, and memory (RSS growth while building; usearch also reports its own figure).
//!
//! ```text
//! cd wattos-rag/ann-compare && cargo run --release -- [n] [queries]
//! ```
//!
//! Not a workspace member: usearch (C++) and hannoy (LMDB, C) only compile when this is run.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::collections::BinaryHeap;
use std::cmp::Reverse;
use std::time::{Duration, Instant};

#[path = "../../benches/support/mod.rs"]
mod support;
use support::{percentile as pct, rss_bytes as rss};

#[path = "../../src/synthetic.rs"]
mod synthetic;

#[allow(dead_code)]
mod ivf;

#[path = "../../src/store/embedded/distance.rs"]
#[allow(dead_code)]
mod distance;
use distance::dot;

const DIMS: usize = 384;
const K: usize = 10;

#[derive(PartialEq)]
struct S(f32, u32);
impl Eq for S {}
impl PartialOrd for S {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for S {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0).then_with(|| o.1.cmp(&self.1))
    }
}

fn top_k(flat: &[f32], q: &[f32], slots: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut heap: BinaryHeap<Reverse<S>> = BinaryHeap::with_capacity(K + 1);
    for s in slots {
        let v = &flat[s as usize * DIMS..(s as usize + 1) * DIMS];
        let d = dot(q, v);
        if heap.len() < K {
            heap.push(Reverse(S(d, s)));
        } else if heap.peek().is_some_and(|m| d > m.0.0) {
            heap.pop();
            heap.push(Reverse(S(d, s)));
        }
    }
    heap.into_iter().map(|r| r.0.1).collect()
}

struct Row {
    name: String,
    build: Duration,
    p50: Duration,
    p99: Duration,
    recall: f64,
    mem_mib: f64,
}

fn measure(
    name: String,
    build: Duration,
    mem: usize,
    queries: &[Vec<f32>],
    truth: &[Vec<u32>],
    mut search: impl FnMut(&[f32]) -> Vec<u32>,
) -> Row {
    let mut lat = Vec::with_capacity(queries.len());
    let mut found = 0usize;
    for (q, t) in queries.iter().zip(truth) {
        let start = Instant::now();
        let got = search(q);
        lat.push(start.elapsed());
        found += got.iter().filter(|g| t.contains(g)).count();
    }
    lat.sort();
    let row = Row {
        name,
        build,
        p50: pct(&lat, 0.5),
        p99: pct(&lat, 0.99),
        recall: found as f64 / (queries.len() * K) as f64,
        mem_mib: mem as f64 / 1048576.0,
    };
    println!(
        "| {} | {:.1} s | {:.3} ms | {:.3} ms | {:.3} | {:.0} MiB |",
        row.name,
        row.build.as_secs_f64(),
        row.p50.as_secs_f64() * 1e3,
        row.p99.as_secs_f64() * 1e3,
        row.recall,
        row.mem_mib
    );
    row
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let nq: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(500);
    let only: Option<String> = args.get(3).cloned();
    let want = |s: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == s));
    let data = synthetic::clustered_vectors(n, DIMS, 256, 1);
    let queries = synthetic::clustered_vectors(nq, DIMS, 256, 3);
    let flat: Vec<f32> = data.iter().flatten().copied().collect();
    let all: Vec<u32> = (0..n as u32).collect();
    println!("n = {n}, dims = {DIMS}, queries = {nq}, top-{K}, cores = {:?}", std::thread::available_parallelism());
    let mut exact_lat = Vec::new();
    let truth: Vec<Vec<u32>> = queries
        .iter()
        .map(|q| {
            let t = Instant::now();
            let r = top_k(&flat, q, all.iter().copied());
            exact_lat.push(t.elapsed());
            r
        })
        .collect();
    exact_lat.sort();
    println!("| index | build | p50 | p99 | recall@10 | memory |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| exact scan (f32) | - | {:.3} ms | {:.3} ms | 1.000 | {:.0} MiB |",
        pct(&exact_lat, 0.5).as_secs_f64() * 1e3,
        pct(&exact_lat, 0.99).as_secs_f64() * 1e3,
        (n * DIMS * 4) as f64 / 1048576.0
    );
    let mut rows = Vec::new();

    if want("ivf") {
        let r0 = rss();
        let t = Instant::now();
        let nlist = ((n as f64).sqrt() as usize).clamp(16, 1024);
        let index = ivf::Ivf::train(DIMS, &flat, &all, nlist, 6);
        let build = t.elapsed();
        // The store keeps the f32 vectors anyway; the index adds lists (+ codes when quantised).
        let mem = rss().saturating_sub(r0) + n * DIMS * 4;
        for nprobe in [8, 16, 24] {
            rows.push(measure(
                format!("wattos IVF nlist={nlist} nprobe={nprobe} (f32 scan)"),
                build,
                mem,
                &queries,
                &truth,
                |q| top_k(&flat, q, index.candidates(q, nprobe)),
            ));
        }
        // The store's setting: at least 16 lists, then best bound first until no unprobed list
        // can beat the k-th candidate, at most 128; int8 scan with f32 re-scoring of 40.
        for (min, max, m) in [(8, 8, 40), (16, 16, 40), (16, 128, 40)] {
            rows.push(measure(
                format!("wattos IVF nlist={nlist} probe {min}..={max} (int8 scan, f32 re-score of {m})"),
                build,
                mem,
                &queries,
                &truth,
                |q| {
                    index
                        .search(&flat, q, K, ivf::Probe { min, max }, m, |_| true)
                        .0
                        .into_iter()
                        .map(|c| c.1)
                        .collect()
                },
            ));
        }
        drop(index);
    }

    if want("hnsw_rs") {
        use hnsw_rs::prelude::*;
        let r0 = rss();
        let t = Instant::now();
        let hnsw: Hnsw<f32, DistDot> = Hnsw::new(16, n, 16, 128, DistDot {});
        let items: Vec<(&Vec<f32>, usize)> = data.iter().zip(0..).collect();
        hnsw.parallel_insert(&items);
        let build = t.elapsed();
        let mem = rss().saturating_sub(r0);
        for ef in [32, 64, 128] {
            rows.push(measure(
                format!("hnsw_rs 0.3.5 M=16 efC=128 ef={ef}"),
                build,
                mem,
                &queries,
                &truth,
                |q| hnsw.search(q, K, ef).into_iter().map(|x| x.d_id as u32).collect(),
            ));
        }
    }

    #[cfg(feature = "usearch")]
    if want("usearch") {
        use usearch::{IndexOptions, MetricKind, ScalarKind};
        for (qname, quant) in [("f32", ScalarKind::F32), ("i8", ScalarKind::I8)] {
            let r0 = rss();
            let t = Instant::now();
            let opts = IndexOptions {
                dimensions: DIMS,
                metric: MetricKind::IP,
                quantization: quant,
                connectivity: 16,
                expansion_add: 128,
                expansion_search: 64,
                multi: false,
            };
            let index = usearch::new_index(&opts).unwrap();
            index.reserve(n).unwrap();
            for (i, v) in data.iter().enumerate() {
                index.add(i as u64, v.as_slice()).unwrap();
            }
            let build = t.elapsed();
            let mem = rss().saturating_sub(r0).max(index.memory_usage());
            for ef in [32, 64, 128] {
                index.change_expansion_search(ef);
                rows.push(measure(
                    format!("usearch 2.26.6 {qname} M=16 efC=128 ef={ef} (1 build thread)"),
                    build,
                    mem,
                    &queries,
                    &truth,
                    |q| index.search(q, K).unwrap().keys.into_iter().map(|k| k as u32).collect(),
                ));
            }
        }
    }

    if want("hannoy") {
        use hannoy::distances::Cosine;
        use hannoy::{Database, Reader, Writer};
        use rand::SeedableRng;
        let dir = std::env::temp_dir().join(format!("wattos-ann-hannoy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let env = unsafe {
            heed::EnvOpenOptions::new()
                .map_size(4 << 30)
                .open(&dir)
        }
        .unwrap();
        let r0 = rss();
        let t = Instant::now();
        let wtxn = env.write_txn().unwrap();
        let db: Database<Cosine> = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
                dbo.create_database(wtxn, None).map(heed::CommitOrAbort::<_, ()>::Commit)
            })
            .unwrap()
            .unwrap_commit();
        let mut wtxn = env.write_txn().unwrap();
        let writer: Writer<Cosine> = Writer::new(db, 0, DIMS);
        for (i, v) in data.iter().enumerate() {
            writer.add_item(&mut wtxn, i as u32, v).unwrap();
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        writer.builder(&mut rng).ef_construction(128).build::<16, 32>(&mut wtxn).unwrap();
        wtxn.commit().unwrap();
        let build = t.elapsed();
        let disk: u64 = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.metadata().map_or(0, |m| m.len())).sum();
        let mem = rss().saturating_sub(r0).max(disk as usize);
        let rtxn = env.read_txn().unwrap();
        let reader = Reader::<Cosine>::open(&rtxn, 0, db).unwrap();
        for ef in [32, 64, 128] {
            rows.push(measure(
                format!("hannoy 0.3.0 M=16 M0=32 efC=128 ef={ef} (LMDB, mem = max(RSS, file))"),
                build,
                mem,
                &queries,
                &truth,
                |q| {
                    reader.nns(K).ef_search(ef).by_vector(&rtxn, q).unwrap().into_nns().into_iter().map(|(id, _)| id).collect()
                },
            ));
        }
        drop(rtxn);
        drop(env);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = rows;
}
