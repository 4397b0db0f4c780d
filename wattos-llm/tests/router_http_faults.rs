//! The router's fault matrix over real HTTP: OpenAI providers against local mock upstreams that
//! speak OpenAI's wire format, with faults injected at the socket and protocol level. With one
//! healthy deployment behind a faulty one, every request succeeds, in chat and streaming mode, and
//! the faulty upstream is called exactly once.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use wattos_core::llm::{ChatDelta, ChatModel, ChatRequest, Message};
use wattos_core::{RequestContext, TenantId};
use wattos_llm::provider::openai::{OpenAiChat, OpenAiConfig};
use wattos_llm::router::{Deployment, ModelGroup, Router, Strategy};
use wattos_llm::testing::{Fault, MockServer};

fn provider(base_url: String) -> Arc<dyn ChatModel> {
    Arc::new(OpenAiChat::new(OpenAiConfig::compatible(base_url, Some("sk-test".into()))).unwrap())
}

fn router(faulty: Arc<dyn ChatModel>, healthy: Arc<dyn ChatModel>) -> Router {
    Router::builder()
        .attempt_timeout(Duration::from_millis(700))
        .deployment(Deployment::from_arc("faulty", faulty).upstream_model("gpt-4o-mini"))
        .deployment(Deployment::from_arc("healthy", healthy).upstream_model("gpt-4o-mini"))
        .group(
            ModelGroup::new("chat")
                .deployments(["faulty", "healthy"])
                .strategy(Strategy::Priority),
        )
        .build()
        .unwrap()
}

fn request() -> ChatRequest {
    ChatRequest::new("chat", vec![Message::user("hello")]).with_max_tokens(16)
}

fn ctx() -> RequestContext {
    RequestContext::system(TenantId::new("t").unwrap())
}

async fn answer(router: &Router, streamed: bool) -> String {
    if !streamed {
        return router
            .chat(&ctx(), request())
            .await
            .unwrap()
            .text()
            .to_owned();
    }
    let mut s = router.chat_stream(&ctx(), request()).await.unwrap();
    let mut text = String::new();
    while let Some(item) = s.next().await {
        if let ChatDelta::Text { text: t } = item.unwrap() {
            text.push_str(&t);
        }
    }
    text
}

#[tokio::test]
async fn one_healthy_upstream_is_enough_for_every_http_fault() {
    let faults: Vec<(&str, Fault)> = vec![
        ("500", Fault::status(500)),
        ("429 + Retry-After", Fault::rate_limited("1")),
        ("timeout", Fault::Latency(Duration::from_secs(5))),
        ("dropped connection", Fault::DropConnection),
        ("broken SSE before content", Fault::BreakStreamAfter(0)),
        ("slow drip", Fault::Drip(Duration::from_secs(3))),
    ];
    let healthy = MockServer::openai().await;
    let expected = {
        let r = provider(healthy.base_url());
        r.chat(&ctx(), request().clone())
            .await
            .unwrap()
            .text()
            .to_owned()
    };
    assert!(!expected.is_empty());
    for streamed in [false, true] {
        for (name, fault) in &faults {
            // Stream-only faults mean nothing to a non-streamed call.
            if !streamed && matches!(fault, Fault::BreakStreamAfter(_) | Fault::Drip(_)) {
                continue;
            }
            let faulty = MockServer::openai().await;
            faulty.push_fault(fault.clone());
            healthy.reset();
            let r = router(provider(faulty.base_url()), provider(healthy.base_url()));
            let text = answer(&r, streamed).await;
            assert_eq!(text, expected, "{name} (streamed: {streamed})");
            assert_eq!(
                faulty.requests().len(),
                1,
                "{name}: the faulty upstream is tried once"
            );
            assert_eq!(
                healthy.requests().len(),
                1,
                "{name}: the healthy upstream answers once"
            );
        }
    }
}

#[tokio::test]
async fn connection_refused_falls_back_without_retry_storms() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_url = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let healthy = MockServer::openai().await;
    let r = router(provider(refused_url), provider(healthy.base_url()));
    for streamed in [false, true] {
        healthy.reset();
        assert!(!answer(&r, streamed).await.is_empty());
        assert_eq!(healthy.requests().len(), 1);
    }
}

#[tokio::test]
async fn bad_requests_do_not_fall_back() {
    let faulty = MockServer::openai().await;
    faulty.push_fault(Fault::status(400));
    let healthy = MockServer::openai().await;
    let r = router(provider(faulty.base_url()), provider(healthy.base_url()));
    let err = r.chat(&ctx(), request()).await.unwrap_err();
    assert_eq!(err.kind(), wattos_core::ErrorKind::InvalidInput);
    assert_eq!(healthy.requests().len(), 0);
}
