//! OpenTelemetry export: with `telemetry.otlp_endpoint` set, the request span and the upstream LLM
//! call span reach an OTLP/HTTP receiver (a tiny one here, decoding the protobuf export request) in
//! the caller's trace, and the upstream provider receives a `traceparent` of that same trace.
//!
//! Its own test binary: the tracing subscriber is global to the process.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::json;
use wattos_core::config::Config;
use wattos_core::telemetry::TelemetryConfig;
use wattos_llm::testing::MockServer;
use wattos_server::AppState;
use wattos_server::gateway::ModelCatalog;

/// (span name, trace id hex) of every exported span.
type Spans = Arc<Mutex<Vec<(String, String)>>>;

async fn receiver(spans: Spans) -> String {
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let spans = spans.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).unwrap();
                let mut out = spans.lock().unwrap();
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            out.push((s.name, hex(&s.trace_id)));
                        }
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn request_and_upstream_spans_are_exported_in_the_callers_trace() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let spans: Spans = Arc::default();
    let endpoint = rt.block_on(receiver(spans.clone()));
    // Outside the runtime: the exporter has its own thread and blocking client.
    let guard = wattos_server::otel::init_tracing(&TelemetryConfig {
        otlp_endpoint: Some(endpoint),
        log_filter: "info".into(),
        ..TelemetryConfig::default()
    })
    .unwrap();

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let upstream_tp = rt.block_on(async {
        let mock = MockServer::openai().await;
        let cfg = wattos_llm::registry::ProviderConfig::from_toml(&format!(
            "kind = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk\"\nmodel = \"gpt-4o-mini\"\n",
            mock.base_url()
        ))
        .unwrap();
        let model = wattos_llm::registry::build_chat_model(&cfg).unwrap();
        let routed = wattos_server::gateway::routing::RoutedModel {
            name: "traced".into(),
            provider: "openai".into(),
            model,
            upstream_model: Some("gpt-4o-mini".into()),
            price: None,
        };
        let (router, names) = wattos_server::gateway::routing::build_chat_router(
            &[routed],
            &Default::default(),
            &Default::default(),
            None,
        )
        .unwrap()
        .unwrap();
        let mut catalog = ModelCatalog::default();
        for (n, o) in names {
            catalog.add_chat(n, o, router.clone());
        }
        let state = AppState::with_parts(
            Config::from_sources(None, Vec::<(String, String)>::new()).unwrap(),
            wattos_core::health::HealthRegistry::default(),
            catalog,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, wattos_server::app(state)).await });
        let resp = reqwest::Client::new()
            .post(format!("{base}/v1/chat/completions"))
            .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
            .json(&json!({"model": "traced", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        mock.last_request()
            .unwrap()
            .header("traceparent")
            .unwrap()
            .to_owned()
    });
    assert_eq!(
        upstream_tp.split('-').nth(1),
        Some(trace_id),
        "{upstream_tp}"
    );

    guard.flush();
    let mut found = Vec::new();
    for _ in 0..100 {
        found = spans.lock().unwrap().clone();
        if found.iter().any(|(n, _)| n == "http_request")
            && found.iter().any(|(n, _)| n == "llm.upstream")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let request = found
        .iter()
        .find(|(n, _)| n == "http_request")
        .unwrap_or_else(|| panic!("no request span in {found:?}"));
    assert_eq!(request.1, trace_id);
    let upstream = found
        .iter()
        .find(|(n, _)| n == "llm.upstream")
        .unwrap_or_else(|| panic!("no upstream span in {found:?}"));
    assert_eq!(upstream.1, trace_id);
    drop(guard);
}
