//! Local model throughput: SmolLM2 decode tokens/s per weight format, MiniLM sentences/s and
//! passages/s at batch 32.
//!
//! `cargo bench -p wattos-llm --features local --bench local_models`
//! (models from `WATTOS_MODELS__DIR` or the default cache; run `scripts/fetch-models.sh` first).

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use wattos_core::llm::{ChatDelta, ChatModel, ChatRequest, Message};
use wattos_core::{RequestContext, TenantId};
use wattos_llm::local::{MiniLmEmbedder, SmolLm, SmolLmOptions, WeightFormat, default_models_dir};

/// Tokens each decode measurement is normalised to.
const DECODE_TOKENS: u64 = 64;
const BATCH: usize = 32;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Time spent decoding (first text delta to finish) and the number of tokens decoded in it.
async fn decode_once(model: &SmolLm, ctx: &RequestContext) -> (Duration, u64) {
    let mut req = ChatRequest::new(
        "smollm2",
        vec![Message::user(
            "Write a long story about a lighthouse keeper and the sea.",
        )],
    )
    .with_max_tokens(DECODE_TOKENS as u32 + 1)
    .with_temperature(0.0);
    req.stop = vec![];
    let mut stream = model.chat_stream(ctx, req).await.expect("stream");
    let mut first: Option<Instant> = None;
    let mut tokens = 0;
    while let Some(delta) = stream.next().await {
        match delta.expect("delta") {
            ChatDelta::Text { .. } if first.is_none() => first = Some(Instant::now()),
            ChatDelta::Usage(u) => tokens = u.output_tokens,
            _ => {}
        }
    }
    let elapsed = first.map(|f| f.elapsed()).unwrap_or_default();
    // The first token came from the prefill pass.
    (elapsed, tokens.saturating_sub(1).max(1))
}

fn decode(c: &mut Criterion) {
    let rt = runtime();
    let ctx = RequestContext::system(TenantId::new("bench").expect("tenant"));
    let mut group = c.benchmark_group("smollm2_decode");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(12));
    group.throughput(Throughput::Elements(DECODE_TOKENS));
    for (label, format) in [
        ("q8_0", WeightFormat::Q8_0),
        ("q4_0", WeightFormat::Q4_0),
        ("q4_1_as_stored", WeightFormat::AsStored),
    ] {
        let options = SmolLmOptions::default().with_weights(format);
        let model = SmolLm::from_models_dir(default_models_dir(), options)
            .expect("load SmolLM2 (run scripts/fetch-models.sh)");
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (elapsed, tokens) = rt.block_on(decode_once(&model, &ctx));
                    // Normalise to DECODE_TOKENS so throughput reads as decode tokens/s.
                    total += elapsed.mul_f64(DECODE_TOKENS as f64 / tokens as f64);
                }
                total
            });
        });
    }
    group.finish();
}

fn passage(i: usize) -> String {
    let words = [
        "energy",
        "grid",
        "battery",
        "solar",
        "wind",
        "storage",
        "demand",
        "supply",
        "price",
        "market",
        "forecast",
        "turbine",
        "panel",
        "inverter",
        "voltage",
        "frequency",
        "load",
        "peak",
        "reserve",
        "capacity",
    ];
    (0..200)
        .map(|w| words[(i * 7 + w * 13) % words.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn embeddings(c: &mut Criterion) {
    let embedder = MiniLmEmbedder::from_models_dir(default_models_dir())
        .expect("load MiniLM (run scripts/fetch-models.sh)");
    let sentences: Vec<String> = (0..BATCH)
        .map(|i| {
            format!(
                "Sentence {i}: how do I reset the password of account number {}?",
                i * 31
            )
        })
        .collect();
    let passages: Vec<String> = (0..BATCH).map(passage).collect();

    let mut group = c.benchmark_group("minilm_embed_batch32");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("sentences", |b| {
        b.iter(|| embedder.embed_blocking(&sentences).expect("embed"));
    });
    group.bench_function("passages_200_words", |b| {
        b.iter(|| embedder.embed_blocking(&passages).expect("embed"));
    });
    group.finish();
}

criterion_group!(benches, decode, embeddings);
criterion_main!(benches);
