//! Search latency and recall of the embedded store on any data, filtered or not (issue #21), and
//! hybrid (dense + BM25 + RRF) latency.
//!
//! ```text
//! cargo bench -p wattos-rag --bench search
//! WATTOS_BENCH_N=20000 WATTOS_BENCH_DATA=uniform cargo bench -p wattos-rag --bench search  # quicker
//! ```
//!
//! Before the criterion runs, every case prints p50/p99 over `WATTOS_BENCH_QUERIES` (300) queries,
//! one query thread, recall@10 against exact float64 top-10 within the case's rows, and the build
//! time and memory of the store. Data sets (`WATTOS_BENCH_DATA`, comma separated, default all):
//!
//! * `uniform`: `WATTOS_BENCH_N` (100 000) random 384-d unit vectors (standard normal, normalised),
//!   no structure for an index to exploit;
//! * `clustered`: as many around 256 centres (`synthetic::clustered_vectors`);
//! * `minilm`: all-MiniLM-L6-v2 embeddings of the paragraphs of the shipped rust-errors corpus
//!   (skipped without the model, `scripts/fetch-models.sh`; embeddings cached under `target/`).
//!
//! Each data set is loaded twice: as 10 tenants of 50 % down to 0.5 % of the rows (cases
//! "tenant 50 %", "tenant 5 %", "tenant 0.5 %") and as one partition with metadata selecting 50 %,
//! 5 % and 0.5 % of the rows (hashed, so spread over the partition). Queries are a stored vector of
//! the case's rows plus Gaussian noise of norm 0.5, renormalised (seeded). Columns "exact" give the
//! same store's exact scan of the same rows for comparison.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use wattos_core::embedding::EmbeddingModel;
use wattos_core::test_utils::embed::HashingEmbedder;
use wattos_core::vector_store::{Filter, VectorQuery, VectorRecord, VectorStore};
use wattos_core::{RequestContext, TenantId};
use wattos_rag::keyword::{KeywordChunk, KeywordIndex, Language};
use wattos_rag::retrieve::{Retriever, SearchMode, SearchRequest};
use wattos_rag::store::{EmbeddedOptions, EmbeddedStore, SearchPolicy};
use wattos_rag::synthetic::{SplitMix, clustered_vectors, near, uniform_vectors};

mod support;
use support::{percentile, rss_bytes};

const DIMS: usize = 384;
const K: usize = 10;
/// Tenant shares of the rows, in per mille (sum 1000).
const TENANTS: [usize; 10] = [500, 200, 100, 80, 50, 30, 20, 10, 5, 5];

fn env_usize(k: &str, default: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn datasets() -> Vec<String> {
    std::env::var("WATTOS_BENCH_DATA")
        .unwrap_or_else(|_| "uniform,clustered,minilm".into())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// MiniLM embeddings of the rust-errors corpus split into paragraphs (at least 200 characters),
/// cached in `target/` as little-endian f32.
fn minilm_vectors() -> Option<Vec<Vec<f32>>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = root.join("../target/bench-minilm-rust-errors.f32");
    if let Ok(bytes) = std::fs::read(&cache) {
        let floats: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        return Some(floats.chunks_exact(DIMS).map(<[f32]>::to_vec).collect());
    }
    let dir = wattos_llm::local::default_models_dir();
    let model = match wattos_llm::local::MiniLmEmbedder::from_models_dir(&dir) {
        Ok(m) => m,
        Err(e) => {
            println!("[minilm] SKIPPED: {e} (models dir {})", dir.display());
            return None;
        }
    };
    let dataset =
        wattos_rag::eval::BeirDataset::load(root.join("data/rust-errors"), "test").ok()?;
    let mut texts = Vec::new();
    for doc in &dataset.corpus {
        let mut cur = String::new();
        for para in doc.text.split("\n\n") {
            cur.push_str(para);
            cur.push('\n');
            if cur.len() >= 200 {
                texts.push(std::mem::take(&mut cur));
            }
        }
        if !cur.trim().is_empty() {
            texts.push(cur);
        }
    }
    let t = Instant::now();
    let mut vectors = Vec::with_capacity(texts.len());
    for batch in texts.chunks(32) {
        vectors.extend(model.embed_blocking(batch).ok()?.vectors);
    }
    println!(
        "[minilm] embedded {} paragraphs in {:.1?}",
        vectors.len(),
        t.elapsed()
    );
    let bytes: Vec<u8> = vectors
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let _ = std::fs::write(&cache, bytes);
    Some(vectors)
}

/// Hashed selectivity classes of row `i`: 1 in 2, 1 in 20, 1 in 200.
fn classes(i: usize) -> (bool, bool, bool) {
    let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    (
        h.is_multiple_of(2),
        h.is_multiple_of(20),
        h.is_multiple_of(200),
    )
}

/// Which tenant row `i` belongs to (by hash, in the shares of [`TENANTS`]).
fn tenant_of(i: usize) -> usize {
    let h = ((i as u64).wrapping_mul(0xd6e8_feb8_6659_fd93) >> 32) % 1000;
    let mut acc = 0;
    for (t, share) in TENANTS.iter().enumerate() {
        acc += share;
        if (h as usize) < acc {
            return t;
        }
    }
    TENANTS.len() - 1
}

fn ctx(name: &str) -> RequestContext {
    RequestContext::system(TenantId::new(name).unwrap())
}

/// Exact float64 top-k ids among `rows`.
fn truth(data: &[Vec<f32>], rows: &[usize], q: &[f32]) -> Vec<usize> {
    let mut scored: Vec<(f64, usize)> = rows
        .iter()
        .map(|&i| {
            let s: f64 = data[i]
                .iter()
                .zip(q)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            (s, i)
        })
        .collect();
    let k = K.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
    scored.truncate(k);
    scored.into_iter().map(|(_, i)| i).collect()
}

struct Case<'a> {
    name: String,
    store: &'a EmbeddedStore,
    ctx: RequestContext,
    rows: Vec<usize>,
    filter: Option<Filter>,
    memory: usize,
}

fn run_case(data_name: &str, data: &[Vec<f32>], case: &Case<'_>, build: Duration, rss: usize) {
    let queries = env_usize("WATTOS_BENCH_QUERIES", 300);
    let mut rng = SplitMix::new(3);
    let qs: Vec<Vec<f32>> = (0..queries)
        .map(|_| near(&data[case.rows[rng.below(case.rows.len())]], 0.5, &mut rng))
        .collect();
    let query = |q: &Vec<f32>| {
        let mut v = VectorQuery::new(q.clone(), K);
        v.filter = case.filter.clone();
        v
    };
    // Warm up caches and the allocator.
    for q in qs.iter().take(20) {
        case.store.search_with_stats(&case.ctx, &query(q)).unwrap();
    }
    let (mut lat, mut exact_lat) = (Vec::new(), Vec::new());
    let (mut found, mut total) = (0usize, 0usize);
    let (mut rescored, mut fell_back, mut exact_plans) = (0usize, 0usize, 0usize);
    for q in &qs {
        let vq = query(q);
        let t = Instant::now();
        let (hits, stats) = case.store.search_with_stats(&case.ctx, &vq).unwrap();
        lat.push(t.elapsed());
        let t = Instant::now();
        let _ = case
            .store
            .search_with_policy(&case.ctx, &vq, SearchPolicy::Exact)
            .unwrap();
        exact_lat.push(t.elapsed());
        let want = truth(data, &case.rows, q);
        total += want.len();
        found += hits
            .iter()
            .filter(|h| want.contains(&h.id[1..].parse::<usize>().unwrap()))
            .count();
        rescored += stats.rescored;
        fell_back += usize::from(stats.fell_back);
        exact_plans += usize::from(stats.exact);
    }
    lat.sort();
    exact_lat.sort();
    println!(
        "| {data_name} | {} | {} | {:.2} | {:.2} | {:.3} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} |",
        case.name,
        case.rows.len(),
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        found as f64 / total.max(1) as f64,
        if exact_plans == qs.len() {
            "exact".to_owned()
        } else if exact_plans == 0 {
            "codes".to_owned()
        } else {
            format!("codes, {} fell back", fell_back)
        },
        rescored as f64 / qs.len() as f64,
        percentile(&exact_lat, 0.5).as_secs_f64() * 1e3,
        percentile(&exact_lat, 0.99).as_secs_f64() * 1e3,
        case.memory as f64 / 1048576.0,
        rss as f64 / 1048576.0,
        build.as_secs_f64(),
    );
}

fn dense_cases(data_name: &str, data: &[Vec<f32>], rt: &tokio::runtime::Runtime) {
    let n = data.len();
    // ---- 10 tenants of 50 % .. 0.5 % ----
    let rss0 = rss_bytes();
    let t = Instant::now();
    let store = EmbeddedStore::in_memory(DIMS);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); TENANTS.len()];
    (0..n).for_each(|i| rows[tenant_of(i)].push(i));
    for (tn, rs) in rows.iter().enumerate() {
        for chunk in rs.chunks(5_000) {
            let recs: Vec<VectorRecord> = chunk
                .iter()
                .map(|&i| {
                    VectorRecord::new(format!("r{i}"), format!("d{}", i / 8), data[i].clone(), "x")
                })
                .collect();
            rt.block_on(store.upsert(&ctx(&format!("t{tn}")), recs))
                .unwrap();
        }
    }
    let build = t.elapsed();
    let rss = rss_bytes().saturating_sub(rss0);
    for (tn, label) in [(0, "tenant 50%"), (4, "tenant 5%"), (8, "tenant 0.5%")] {
        let c = ctx(&format!("t{tn}"));
        let memory = store.approx_memory_bytes(&c);
        run_case(
            data_name,
            data,
            &Case {
                name: label.into(),
                store: &store,
                ctx: c,
                rows: rows[tn].clone(),
                filter: None,
                memory,
            },
            build,
            rss,
        );
    }
    drop(store);

    // ---- one partition, metadata filters ----
    let rss0 = rss_bytes();
    let t = Instant::now();
    let store = EmbeddedStore::in_memory(DIMS);
    let c = ctx("one");
    for start in (0..n).step_by(5_000) {
        let recs: Vec<VectorRecord> = (start..(start + 5_000).min(n))
            .map(|i| {
                let (half, twentieth, rare) = classes(i);
                VectorRecord::new(format!("r{i}"), format!("d{}", i / 8), data[i].clone(), "x")
                    .with_meta("half", half)
                    .with_meta("twentieth", twentieth)
                    .with_meta("rare", rare)
            })
            .collect();
        rt.block_on(store.upsert(&c, recs)).unwrap();
    }
    let build = t.elapsed();
    let rss = rss_bytes().saturating_sub(rss0);
    let memory = store.approx_memory_bytes(&c);
    let all: Vec<usize> = (0..n).collect();
    let pick = |f: fn((bool, bool, bool)) -> bool| -> Vec<usize> {
        (0..n).filter(|&i| f(classes(i))).collect()
    };
    let cases = [
        ("unfiltered", all, None),
        ("filter 50%", pick(|c| c.0), Some(Filter::eq("half", true))),
        (
            "filter 5%",
            pick(|c| c.1),
            Some(Filter::eq("twentieth", true)),
        ),
        ("filter 0.5%", pick(|c| c.2), Some(Filter::eq("rare", true))),
    ];
    for (label, rows, filter) in cases {
        if rows.is_empty() {
            continue;
        }
        run_case(
            data_name,
            data,
            &Case {
                name: label.into(),
                store: &store,
                ctx: c.clone(),
                rows,
                filter,
                memory,
            },
            build,
            rss,
        );
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
    let n = env_usize("WATTOS_BENCH_N", 100_000);
    println!(
        "\n| data | case | rows | p50 ms | p99 ms | recall@10 | plan | re-scored | exact p50 ms | exact p99 ms | memory MiB (estimate) | store RSS growth MiB | build s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for name in datasets() {
        let data = match name.as_str() {
            "uniform" => uniform_vectors(n, DIMS, 1),
            "clustered" => clustered_vectors(n, DIMS, 256, 1),
            "minilm" => match minilm_vectors() {
                Some(v) => v,
                None => continue,
            },
            other => {
                println!("unknown data set {other}");
                continue;
            }
        };
        dense_cases(&name, &data, &rt);
    }

    // ---- criterion: unfiltered dense search on uniform data ----
    let tenant = ctx("bench");
    let store = EmbeddedStore::in_memory(DIMS);
    let data = uniform_vectors(n, DIMS, 1);
    for (b, batch) in data.chunks(5_000).enumerate() {
        let recs: Vec<VectorRecord> = batch
            .iter()
            .enumerate()
            .map(|(i, v)| VectorRecord::new(format!("c{}", b * 5_000 + i), "d", v.clone(), "x"))
            .collect();
        rt.block_on(store.upsert(&tenant, recs)).unwrap();
    }
    let mut rng = SplitMix::new(9);
    let queries: Vec<Vec<f32>> = (0..200)
        .map(|_| near(&data[rng.below(n)], 0.5, &mut rng))
        .collect();
    drop(data);
    let mut qi = 0;
    c.bench_function(&format!("dense_search_top10_uniform_n{n}"), |b| {
        b.iter(|| {
            qi = (qi + 1) % queries.len();
            rt.block_on(store.search(&tenant, &VectorQuery::new(queries[qi].clone(), K)))
                .unwrap()
        })
    });
    drop(store);

    // ---- hybrid search: hashing-embedded synthetic text, BM25, RRF, tenant-scoped ----
    let n = env_usize("WATTOS_BENCH_HYBRID_N", 10_000);
    let embedder = HashingEmbedder::shared(DIMS);
    let vectors = Arc::new(EmbeddedStore::in_memory(DIMS));
    // The same records without an index: hybrid with exact dense search is the recall truth.
    let vectors_exact = Arc::new(EmbeddedStore::in_memory_with(
        DIMS,
        EmbeddedOptions::exact(),
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
    let mut dense_found = 0usize;
    for q in &qtexts {
        let v = embedder.vector(q);
        let t = Instant::now();
        let (hits, _) = vectors
            .search_with_stats(&tenant, &VectorQuery::new(v.clone(), 40))
            .unwrap();
        dense_lat.push(t.elapsed());
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
        "\n[hybrid stages n={n}] dense top-40 p50 {:?} p99 {:?}, recall@40 vs exact {:.3}; BM25 top-40 p50 {:?} p99 {:?}",
        percentile(&dense_lat, 0.5),
        percentile(&dense_lat, 0.99),
        dense_found as f64 / (qtexts.len() * 40) as f64,
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
        "[hybrid n={n}] p50 {:?} p99 {:?}; recall@10 vs hybrid with exact dense search {:.3} (embed query + dense top-40 + BM25 top-40 + RRF, tenant-scoped)",
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
