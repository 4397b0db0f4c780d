//! Streaming parser throughput: SSE (OpenAI-style chunks, LF and CRLF) and NDJSON (Ollama-style
//! lines), fed in 1 KiB network-sized chunks. Reports bytes/s (criterion prints MB/s) and, in a
//! second group, events/s.

#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use wattos_llm::sse::{NdjsonParser, SseParser};

const EVENTS: usize = 10_000;

fn openai_sse(crlf: bool) -> Vec<u8> {
    let nl = if crlf { "\r\n" } else { "\n" };
    let mut s = String::new();
    for i in 0..EVENTS {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token{i} \"}},\"finish_reason\":null}}]}}{nl}{nl}"
        ));
    }
    s.push_str(&format!("data: [DONE]{nl}{nl}"));
    s.into_bytes()
}

fn ollama_ndjson() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..EVENTS {
        s.push_str(&format!(
            "{{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T08:52:19.385406455-07:00\",\"message\":{{\"role\":\"assistant\",\"content\":\"token{i} \"}},\"done\":false}}\n"
        ));
    }
    s.into_bytes()
}

fn parse_sse(input: &[u8], chunk: usize) -> usize {
    let mut p = SseParser::new();
    let mut n = 0;
    for c in input.chunks(chunk) {
        p.feed(c);
        while let Some(ev) = p.next_event().unwrap() {
            n += ev.data.len();
        }
    }
    n
}

fn parse_ndjson(input: &[u8], chunk: usize) -> usize {
    let mut p = NdjsonParser::new();
    let mut n = 0;
    for c in input.chunks(chunk) {
        p.feed(c);
        while let Some(line) = p.next_line().unwrap() {
            n += line.len();
        }
    }
    n
}

fn bytes_per_second(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_parse_bytes");
    for (name, input) in [
        ("sse_lf", openai_sse(false)),
        ("sse_crlf", openai_sse(true)),
        ("ndjson", ollama_ndjson()),
    ] {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_with_input(BenchmarkId::new(name, "1KiB_chunks"), &input, |b, input| {
            b.iter(|| {
                if name == "ndjson" {
                    black_box(parse_ndjson(input, 1024))
                } else {
                    black_box(parse_sse(input, 1024))
                }
            });
        });
    }
    g.finish();
}

fn events_per_second(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_parse_events");
    let sse = openai_sse(false);
    let ndjson = ollama_ndjson();
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("sse_lf", |b| b.iter(|| black_box(parse_sse(&sse, 1024))));
    g.bench_function("ndjson", |b| {
        b.iter(|| black_box(parse_ndjson(&ndjson, 1024)))
    });
    // Worst case: the network hands over 7 bytes at a time.
    g.bench_function("sse_lf_7B_chunks", |b| {
        b.iter(|| black_box(parse_sse(&sse, 7)))
    });
    g.finish();
}

criterion_group!(benches, bytes_per_second, events_per_second);
criterion_main!(benches);
