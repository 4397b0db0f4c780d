//! Every error class, for every vendor: HTTP statuses with the vendor's own bodies, Retry-After in
//! all its forms, context-length errors, timeouts, refused and dropped connections, and failures in
//! the middle of a stream.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use wattos_core::llm::{ChatDelta, ChatModel, ChatRequest, Message};
use wattos_core::{ErrorKind, RequestContext, TenantId};
use wattos_llm::provider::anthropic::{AnthropicChat, AnthropicConfig};
use wattos_llm::provider::azure::AzureConfig;
use wattos_llm::provider::gemini::{GeminiChat, GeminiConfig};
use wattos_llm::provider::ollama::{OllamaChat, OllamaConfig};
use wattos_llm::provider::openai::{OpenAiChat, OpenAiConfig};
use wattos_llm::testing::{Fault, MockServer, Vendor, context_length_error};

const VENDORS: [Vendor; 5] = [
    Vendor::OpenAi,
    Vendor::Azure,
    Vendor::Anthropic,
    Vendor::Gemini,
    Vendor::Ollama,
];

fn ctx() -> RequestContext {
    RequestContext::system(TenantId::new("t").unwrap())
}

fn req() -> ChatRequest {
    ChatRequest::new("", vec![Message::user("hello there")])
}

fn model_at(vendor: Vendor, base_url: String) -> Arc<dyn ChatModel> {
    match vendor {
        Vendor::OpenAi => Arc::new(
            OpenAiChat::new(
                OpenAiConfig::new("k")
                    .with_base_url(base_url)
                    .with_model("gpt-4o"),
            )
            .unwrap(),
        ),
        Vendor::Azure => {
            Arc::new(OpenAiChat::azure(AzureConfig::new(base_url, "dep", "k")).unwrap())
        }
        Vendor::Anthropic => Arc::new(
            AnthropicChat::new(
                AnthropicConfig::new("k")
                    .with_base_url(base_url)
                    .with_model("claude-sonnet-4-20250514"),
            )
            .unwrap(),
        ),
        Vendor::Gemini => Arc::new(
            GeminiChat::new(
                GeminiConfig::new("k")
                    .with_base_url(base_url)
                    .with_model("gemini-2.0-flash"),
            )
            .unwrap(),
        ),
        _ => Arc::new(OllamaChat::new(OllamaConfig::new(base_url).with_model("llama3.2")).unwrap()),
    }
}

async fn setup(vendor: Vendor) -> (MockServer, Arc<dyn ChatModel>) {
    let server = MockServer::start(vendor).await;
    let model = model_at(vendor, server.base_url());
    (server, model)
}

#[tokio::test]
async fn statuses_map_to_kinds_for_every_vendor() {
    for vendor in VENDORS {
        let (server, model) = setup(vendor).await;
        for (status, kind, retryable) in [
            (400, ErrorKind::InvalidInput, false),
            (401, ErrorKind::Unauthenticated, false),
            (403, ErrorKind::Forbidden, false),
            (404, ErrorKind::NotFound, false),
            (429, ErrorKind::RateLimited, true),
            (500, ErrorKind::Upstream, true),
            (503, ErrorKind::Upstream, true),
        ] {
            server.push_fault(Fault::status(status));
            let e = model.chat(&ctx(), req()).await.unwrap_err();
            assert_eq!(e.kind(), kind, "{vendor:?} {status}: {e:?}");
            assert_eq!(e.is_retryable(), retryable, "{vendor:?} {status}");
            let up = e.upstream_details().unwrap();
            assert_eq!(up.status, Some(status), "{vendor:?}");
            assert!(!e.message().is_empty());
            // The same mapping applies before the first delta of a stream.
            server.push_fault(Fault::status(status));
            let e = model.chat_stream(&ctx(), req()).await.err().unwrap();
            assert_eq!(e.kind(), kind, "{vendor:?} stream {status}");
        }
    }
}

#[tokio::test]
async fn context_length_errors_are_recognised_per_vendor() {
    for vendor in VENDORS {
        let (server, model) = setup(vendor).await;
        let (status, body) = context_length_error(vendor);
        server.push_fault(Fault::status_with_body(status, body));
        let e = model.chat(&ctx(), req()).await.unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::ContextLengthExceeded,
            "{vendor:?}: {e:?}"
        );
        assert!(!e.is_retryable());
    }
}

#[tokio::test]
async fn retry_after_in_seconds_dates_and_milliseconds() {
    for vendor in VENDORS {
        let (server, model) = setup(vendor).await;
        server.push_fault(Fault::rate_limited("3"));
        let e = model.chat(&ctx(), req()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)), "{vendor:?}");
        assert!(
            e.is_dependency_failure(),
            "provider 429s count for breakers"
        );

        let at = SystemTime::now() + Duration::from_secs(120);
        server.push_fault(Fault::rate_limited(httpdate::fmt_http_date(at)));
        let e = model.chat(&ctx(), req()).await.unwrap_err();
        let ra = e.retry_after().unwrap();
        assert!(
            ra > Duration::from_secs(100) && ra <= Duration::from_secs(120),
            "{ra:?}"
        );
    }
    let (server, model) = setup(Vendor::OpenAi).await;
    server.push_fault(Fault::Status {
        status: 429,
        body: None,
        retry_after: Some("20".into()),
        headers: vec![("retry-after-ms".into(), "1500".into())],
    });
    let e = model.chat(&ctx(), req()).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
    assert_eq!(
        e.upstream_details().and_then(|u| u.code.as_deref()),
        Some("rate_limit_exceeded")
    );
    // Gemini puts the delay in the body (google.rpc.RetryInfo).
    let (server, model) = setup(Vendor::Gemini).await;
    server.push_fault(Fault::status(429));
    let e = model.chat(&ctx(), req()).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn quota_exhaustion_is_not_retryable() {
    let (server, model) = setup(Vendor::OpenAi).await;
    server.push_fault(Fault::status_with_body(
        429,
        serde_json::json!({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
    ));
    let e = model.chat(&ctx(), req()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn anthropic_overloaded_529_is_retryable_upstream() {
    let (server, model) = setup(Vendor::Anthropic).await;
    server.push_fault(Fault::status(529));
    let e = model.chat(&ctx(), req()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Upstream);
    assert!(e.is_retryable() && e.is_dependency_failure());
    let up = e.upstream_details().unwrap();
    assert_eq!(
        (up.status, up.code.as_deref()),
        (Some(529), Some("overloaded_error"))
    );
}

#[tokio::test]
async fn deadline_bounds_the_call() {
    for vendor in VENDORS {
        let (server, model) = setup(vendor).await;
        server.push_fault(Fault::Latency(Duration::from_secs(5)));
        let c = ctx().with_timeout(Duration::from_millis(150));
        let started = std::time::Instant::now();
        let e = model.chat(&c, req()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{vendor:?}: {e:?}");
        assert!(e.is_retryable());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    // An expired deadline fails without a call.
    let (server, model) = setup(Vendor::OpenAi).await;
    let past = ctx().with_deadline(std::time::Instant::now() - Duration::from_millis(1));
    assert_eq!(
        model.chat(&past, req()).await.unwrap_err().kind(),
        ErrorKind::Timeout
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn deadline_during_a_slow_stream_is_an_error_item() {
    for vendor in VENDORS {
        let (server, model) = setup(vendor).await;
        server.push_fault(Fault::Drip(Duration::from_millis(100)));
        let c = ctx().with_timeout(Duration::from_millis(250));
        let items: Vec<_> = model.chat_stream(&c, req()).await.unwrap().collect().await;
        let last = items.last().unwrap();
        let e = last.as_ref().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{vendor:?}: {e:?}");
        assert!(
            !items
                .iter()
                .any(|i| matches!(i, Ok(ChatDelta::Finish { .. })))
        );
    }
}

#[tokio::test]
async fn slow_drip_still_completes_within_deadline() {
    let (server, model) = setup(Vendor::Anthropic).await;
    server.push_fault(Fault::Drip(Duration::from_millis(5)));
    let items: Vec<_> = model
        .chat_stream(&ctx(), req())
        .await
        .unwrap()
        .collect()
        .await;
    assert!(matches!(items.last(), Some(Ok(ChatDelta::Finish { .. }))));
}

#[tokio::test]
async fn connection_refused_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    for vendor in VENDORS {
        let model = model_at(vendor, format!("http://{addr}"));
        let e = model.chat(&ctx(), req()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{vendor:?}: {e:?}");
        assert!(e.is_retryable() && e.is_dependency_failure());
    }
}

#[tokio::test]
async fn dropped_connection_is_a_retryable_dependency_failure() {
    for vendor in VENDORS {
        let (server, model) = setup(vendor).await;
        server.push_fault(Fault::DropConnection);
        let e = model.chat(&ctx(), req()).await.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Upstream),
            "{vendor:?}: {e:?}"
        );
        assert!(e.is_retryable() && e.is_dependency_failure(), "{vendor:?}");
    }
}

#[tokio::test]
async fn vendor_error_events_mid_stream_keep_their_class() {
    let (server, model) = setup(Vendor::Anthropic).await;
    server.push_fault(Fault::StreamErrorAfter(5));
    let items: Vec<_> = model
        .chat_stream(&ctx(), req())
        .await
        .unwrap()
        .collect()
        .await;
    assert!(
        items
            .iter()
            .any(|i| matches!(i, Ok(ChatDelta::Text { .. }))),
        "partial text first"
    );
    let e = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(
        e.upstream_details().and_then(|u| u.code.as_deref()),
        Some("overloaded_error")
    );
    assert!(e.is_retryable());

    let (server, model) = setup(Vendor::Gemini).await;
    server.push_fault(Fault::StreamErrorAfter(1));
    let items: Vec<_> = model
        .chat_stream(&ctx(), req())
        .await
        .unwrap()
        .collect()
        .await;
    let e = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(e.upstream_details().and_then(|u| u.status), Some(503));
}
