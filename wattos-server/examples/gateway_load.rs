//! Gateway benchmark helper (used by `scripts/bench-gateway.sh`).
//!
//! * `gateway_load mock <port> [latency-ms]`: a mock upstream speaking OpenAI's chat completions
//!   wire format (`stream: false` JSON and `stream: true` SSE), answering at once or after
//!   `latency-ms` (an LLM's time to first byte).
//! * `gateway_load run <direct-url> <gateway-url> <model> <secs> <concurrencies> [stream]
//!   [rate=<req/s>]`: for each concurrency (comma separated), drives the mock directly and then
//!   through the gateway with that many connections and prints latency p50/p99, throughput, and
//!   the latency the gateway adds.
//!   - Without `rate` (closed loop), each connection sends requests back to back: this measures
//!     saturation throughput, and latency includes queueing for the CPU.
//!   - With `rate=R` (open loop), the connections together send R requests per second on a fixed
//!     schedule; each latency is measured from the request's scheduled start, so a stalled
//!     server cannot hide its delay (no coordinated omission).
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// Simulated upstream time to first byte, set once by `mock`.
static MOCK_LATENCY: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

async fn chat(Json(body): Json<Value>) -> Response {
    if let Some(latency) = MOCK_LATENCY.get().filter(|l| !l.is_zero()) {
        tokio::time::sleep(*latency).await;
    }
    let model = body["model"].as_str().unwrap_or("mock").to_owned();
    let usage = json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17});
    if body["stream"] == true {
        let mut out = String::new();
        let chunk = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
                   "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        out.push_str(&format!(
            "data: {}\n\n",
            chunk(json!({"role": "assistant", "content": ""}), Value::Null)
        ));
        for w in ["The ", "quick ", "brown ", "fox."] {
            out.push_str(&format!(
                "data: {}\n\n",
                chunk(json!({"content": w}), Value::Null)
            ));
        }
        out.push_str(&format!("data: {}\n\n", chunk(json!({}), json!("stop"))));
        if body["stream_options"]["include_usage"] == true {
            out.push_str(&format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
                       "model": model, "choices": [], "usage": usage})
            ));
        }
        out.push_str("data: [DONE]\n\n");
        ([("content-type", "text/event-stream")], out).into_response()
    } else {
        Json(json!({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "The quick brown fox."},
                         "finish_reason": "stop"}],
            "usage": usage
        }))
        .into_response()
    }
}

async fn mock(port: u16, latency: Duration) {
    MOCK_LATENCY.set(latency).unwrap();
    let app = axum::Router::new().route("/v1/chat/completions", post(chat));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    println!("mock upstream on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}

struct Stats {
    p50: Duration,
    p99: Duration,
    rps: f64,
    errors: u64,
}

async fn drive(
    url: &str,
    model: &str,
    secs: u64,
    conns: usize,
    stream: bool,
    rate: Option<f64>,
) -> Stats {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .build()
        .unwrap();
    let body = Arc::new(
        json!({"model": model, "stream": stream, "max_tokens": 16,
               "messages": [{"role": "user", "content": "Say something short."}]})
        .to_string(),
    );
    let url = Arc::new(format!("{url}/v1/chat/completions"));
    // Warm up the connections.
    let warm_until = Instant::now() + Duration::from_millis(500);
    let stop = Instant::now() + Duration::from_millis(500) + Duration::from_secs(secs);
    // Open loop: connection i starts at i * period / conns and then every `period`.
    let period = rate.map(|r| Duration::from_secs_f64(conns as f64 / r));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..conns {
        let (client, body, url) = (client.clone(), body.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut next = period.map(|p| start + p.mul_f64(i as f64 / conns as f64));
            while Instant::now() < stop {
                let t = match (next, period) {
                    (Some(at), Some(p)) => {
                        tokio::time::sleep_until(at.into()).await;
                        next = Some(at + p);
                        at
                    }
                    _ => Instant::now(),
                };
                let ok = match client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body.as_str().to_owned())
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    Ok(_) | Err(_) => false,
                };
                if t >= warm_until {
                    if ok {
                        lat.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let measured = stop
        .saturating_duration_since(warm_until.max(start))
        .as_secs_f64();
    Stats {
        p50: pct(0.50),
        p99: pct(0.99),
        rps: all.len() as f64 / measured,
        errors,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn run(args: &[String]) {
    let (direct, gateway, model) = (&args[0], &args[1], &args[2]);
    let secs: u64 = args[3].parse().unwrap();
    let concurrencies: Vec<usize> = args[4].split(',').map(|c| c.parse().unwrap()).collect();
    let stream = args[5..].iter().any(|s| s == "stream");
    let rate: Option<f64> = args[5..]
        .iter()
        .find_map(|s| s.strip_prefix("rate="))
        .map(|r| r.parse().unwrap());
    println!(
        "\n{} requests, {secs} s per point, {}",
        if stream { "streaming" } else { "non-streaming" },
        match rate {
            Some(r) => format!("open loop at {r} req/s"),
            None => "closed loop (back to back)".to_owned(),
        }
    );
    println!(
        "{:>5} | {:>10} {:>10} {:>9} | {:>10} {:>10} {:>9} | {:>10} {:>10} | {:>6}",
        "conns",
        "direct p50",
        "p99",
        "req/s",
        "gw p50",
        "p99",
        "req/s",
        "added p50",
        "added p99",
        "errors"
    );
    for c in concurrencies {
        let d = drive(direct, model, secs, c, stream, rate).await;
        let g = drive(gateway, model, secs, c, stream, rate).await;
        println!(
            "{:>5} | {:>8.3}ms {:>8.3}ms {:>9.0} | {:>8.3}ms {:>8.3}ms {:>9.0} | {:>8.3}ms {:>8.3}ms | {:>6}",
            c,
            ms(d.p50),
            ms(d.p99),
            d.rps,
            ms(g.p50),
            ms(g.p99),
            g.rps,
            ms(g.p50) - ms(d.p50),
            ms(g.p99) - ms(d.p99),
            d.errors + g.errors,
        );
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("mock") if (2..=3).contains(&args.len()) => {
            let latency = args.get(2).map_or(0, |ms| ms.parse().unwrap());
            mock(args[1].parse().unwrap(), Duration::from_millis(latency)).await
        }
        Some("run") if args.len() >= 6 => run(&args[1..]).await,
        _ => {
            eprintln!(
                "usage: gateway_load mock <port> [latency-ms]\n       gateway_load run <direct-url> <gateway-url> <model> <secs> <c1,c2,..> [stream] [rate=<req/s>]"
            );
            std::process::exit(2);
        }
    }
}
