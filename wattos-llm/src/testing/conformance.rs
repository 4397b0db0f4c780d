//! One conformance suite for every chat and embedding provider, run against a [`MockServer`].
//!
//! The suite takes a *constructor*: given the mock server and an API key, build the provider under
//! test pointed at `server.base_url()`. Each check panics with a message naming the check and the
//! provider when the provider misbehaves.
//!
//! Checks: plain text answer with usage; streaming equals non-streaming (text and tools); a tool
//! call round trip; request id and W3C trace propagation; 401 maps to `unauthenticated` (not
//! retryable) for both call styles; every kind of broken stream (connection cut, truncated body,
//! vendor error event, invalid frame) ends in an `Err` item and never in a `Finish`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::{
    ChatDelta, ChatModel, ChatRequest, ChatResponse, FinishReason, Message, StreamAccumulator,
    ToolDefinition,
};
use wattos_core::{ErrorKind, RequestContext, Result, TenantId, TraceContext};

use super::{Fault, MockServer, Vendor};

/// The API key the suite configures on the mock server.
pub const GOOD_KEY: &str = "test-key";

fn ctx() -> RequestContext {
    RequestContext::system(TenantId::new("conformance").expect("tenant id"))
}

/// A weather tool with one required string argument.
pub fn weather_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"]}),
        strict: None,
    }
}

/// Collects a stream: all items, in order.
pub async fn collect_stream(
    model: &dyn ChatModel,
    ctx: &RequestContext,
    req: ChatRequest,
) -> Result<Vec<Result<ChatDelta>>> {
    let stream = model.chat_stream(ctx, req).await?;
    Ok(stream.collect().await)
}

/// Folds a stream into a response, failing on the first error item.
pub async fn stream_to_response(
    model: &dyn ChatModel,
    ctx: &RequestContext,
    req: ChatRequest,
) -> Result<ChatResponse> {
    let mut acc = StreamAccumulator::new(req.model.clone());
    let mut stream = model.chat_stream(ctx, req).await?;
    while let Some(item) = stream.next().await {
        acc.push(item?);
    }
    acc.finish()
}

/// Runs every chat check. `make(server, api_key)` builds the provider under test.
pub async fn chat_conformance<F>(vendor: Vendor, make: F)
where
    F: Fn(&MockServer, &str) -> Arc<dyn ChatModel>,
{
    let server = MockServer::start(vendor).await;
    server.require_api_key(GOOD_KEY);
    let model = make(&server, GOOD_KEY);
    let name = model.name().to_owned();

    text_answer(&*model, &name).await;
    stream_equals_chat(&*model, &name).await;
    tool_round_trip(&*model, &name).await;
    propagates_ids(&server, &*model, &name).await;
    server.reset();
    unauthenticated(&*make(&server, "wrong-key"), &name).await;
    broken_streams(&server, &*model, &name).await;
}

fn req(text: &str) -> ChatRequest {
    ChatRequest::new("", vec![Message::system("Be brief."), Message::user(text)])
}

async fn text_answer(model: &dyn ChatModel, name: &str) {
    let r = model
        .chat(&ctx(), req("ping"))
        .await
        .unwrap_or_else(|e| panic!("[{name}] text answer failed: {e:?}"));
    assert_eq!(r.text(), "Echo: ping", "[{name}] text answer");
    assert_eq!(
        r.finish_reason,
        FinishReason::Stop,
        "[{name}] finish reason"
    );
    assert!(r.tool_calls.is_empty(), "[{name}] no tool calls expected");
    assert!(
        r.usage.input_tokens > 0,
        "[{name}] usage.input_tokens missing"
    );
    assert!(
        r.usage.output_tokens > 0,
        "[{name}] usage.output_tokens missing"
    );
    assert!(!r.id.is_empty() && !r.model.is_empty(), "[{name}] id/model");
}

fn same_answer(name: &str, what: &str, a: &ChatResponse, b: &ChatResponse) {
    assert_eq!(a.content, b.content, "[{name}] {what}: content");
    assert_eq!(a.finish_reason, b.finish_reason, "[{name}] {what}: finish");
    assert_eq!(a.usage, b.usage, "[{name}] {what}: usage");
    assert_eq!(
        a.tool_calls.len(),
        b.tool_calls.len(),
        "[{name}] {what}: calls"
    );
    for (x, y) in a.tool_calls.iter().zip(&b.tool_calls) {
        assert_eq!(x.id, y.id, "[{name}] {what}: call id");
        assert_eq!(x.name, y.name, "[{name}] {what}: call name");
        assert_eq!(
            x.parse_arguments().unwrap(),
            y.parse_arguments().unwrap(),
            "[{name}] {what}: call arguments"
        );
    }
}

async fn stream_equals_chat(model: &dyn ChatModel, name: &str) {
    for (what, request) in [
        ("text", req("tell me a long enough story")),
        (
            "tools",
            req("weather in Paris?").with_tool(weather_tool()).with_tool(ToolDefinition {
                name: "get_time".into(),
                description: "Local time in a city".into(),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
                strict: None,
            }),
        ),
    ] {
        let whole = model
            .chat(&ctx(), request.clone())
            .await
            .unwrap_or_else(|e| panic!("[{name}] chat ({what}) failed: {e:?}"));
        let items = collect_stream(model, &ctx(), request.clone())
            .await
            .unwrap_or_else(|e| panic!("[{name}] stream ({what}) failed: {e:?}"));
        let texts = items
            .iter()
            .filter(|i| matches!(i, Ok(ChatDelta::Text { .. })))
            .count();
        if what == "text" {
            assert!(texts > 1, "[{name}] text should arrive in several deltas");
        }
        assert!(
            matches!(items.last(), Some(Ok(ChatDelta::Finish { .. }))),
            "[{name}] stream ({what}) must end with Finish: {items:?}"
        );
        let streamed = stream_to_response(model, &ctx(), request)
            .await
            .unwrap_or_else(|e| panic!("[{name}] stream ({what}) failed: {e:?}"));
        same_answer(name, what, &whole, &streamed);
        if what == "tools" {
            assert_eq!(whole.tool_calls.len(), 2, "[{name}] two tool calls in one turn");
        }
    }
}

async fn tool_round_trip(model: &dyn ChatModel, name: &str) {
    let first = req("What's the weather in Paris?").with_tool(weather_tool());
    let r = model
        .chat(&ctx(), first.clone())
        .await
        .unwrap_or_else(|e| panic!("[{name}] tool call failed: {e:?}"));
    assert_eq!(r.finish_reason, FinishReason::ToolCalls, "[{name}] finish");
    let call = r
        .tool_calls
        .first()
        .unwrap_or_else(|| panic!("[{name}] no tool call"));
    assert_eq!(call.name, "get_weather", "[{name}] tool name");
    assert_eq!(
        call.parse_arguments().unwrap(),
        json!({"city": "Paris"}),
        "[{name}] tool arguments"
    );
    let mut second = first;
    second.messages.push(r.to_message());
    second
        .messages
        .push(Message::tool_result(call.id.clone(), r#"{"temp_c": 21}"#));
    let answer = model
        .chat(&ctx(), second)
        .await
        .unwrap_or_else(|e| panic!("[{name}] tool result turn failed: {e:?}"));
    assert!(
        answer.text().contains("21"),
        "[{name}] the answer should use the tool result, got {:?}",
        answer.text()
    );
    assert_eq!(answer.finish_reason, FinishReason::Stop, "[{name}] finish");
}

async fn propagates_ids(server: &MockServer, model: &dyn ChatModel, name: &str) {
    let trace = TraceContext::new_root();
    let c = ctx().with_trace(trace.clone());
    model
        .chat(&c, req("trace me"))
        .await
        .unwrap_or_else(|e| panic!("[{name}] traced call failed: {e:?}"));
    let sent = server.last_request().expect("a request");
    assert_eq!(
        sent.header("x-request-id"),
        Some(c.request_id().as_str()),
        "[{name}] x-request-id"
    );
    let tp = sent
        .header("traceparent")
        .and_then(|t| TraceContext::parse(t, None))
        .unwrap_or_else(|| panic!("[{name}] traceparent missing or invalid"));
    assert_eq!(tp.trace_id, trace.trace_id, "[{name}] same trace");
    assert_ne!(tp.parent_id, trace.parent_id, "[{name}] child span");
}

async fn unauthenticated(model: &dyn ChatModel, name: &str) {
    let e = model
        .chat(&ctx(), req("hi"))
        .await
        .expect_err("wrong key must fail");
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "[{name}] 401: {e:?}");
    assert!(!e.is_retryable(), "[{name}] 401 is not retryable");
    assert_eq!(e.upstream_details().and_then(|u| u.status), Some(401));
    let e = match model.chat_stream(&ctx(), req("hi")).await {
        Err(e) => e,
        Ok(_) => panic!("[{name}] streaming with a wrong key must fail before the first delta"),
    };
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "[{name}] stream 401");
}

async fn broken_streams(server: &MockServer, model: &dyn ChatModel, name: &str) {
    for fault in [
        Fault::BreakStreamAfter(2),
        Fault::TruncateStreamAfter(2),
        Fault::StreamErrorAfter(2),
        Fault::InvalidFrameAfter(1),
    ] {
        server.push_fault(fault.clone());
        let items = collect_stream(model, &ctx(), req("a reply long enough to be cut"))
            .await
            .unwrap_or_else(|e| panic!("[{name}] {fault:?}: stream should start: {e:?}"));
        let last = items
            .last()
            .unwrap_or_else(|| panic!("[{name}] {fault:?}: no items"));
        let err = match last {
            Err(e) => e,
            Ok(d) => panic!("[{name}] {fault:?}: must end with an error item, ended with {d:?}"),
        };
        assert!(
            !items
                .iter()
                .any(|i| matches!(i, Ok(ChatDelta::Finish { .. }))),
            "[{name}] {fault:?}: no Finish may precede the error"
        );
        assert_eq!(
            items.iter().filter(|i| i.is_err()).count(),
            1,
            "[{name}] {fault:?}: exactly one error item"
        );
        assert!(
            err.is_retryable(),
            "[{name}] {fault:?}: a broken stream is retryable: {err:?}"
        );
    }
}

/// Runs every embedding check. `make(server, api_key)` builds the provider under test; it must
/// produce vectors of `server`'s default size (8) unless it asks for another size.
pub async fn embedding_conformance<F>(vendor: Vendor, make: F)
where
    F: Fn(&MockServer, &str) -> Arc<dyn EmbeddingModel>,
{
    let server = MockServer::start(vendor).await;
    server.require_api_key(GOOD_KEY);
    let model = make(&server, GOOD_KEY);
    let name = model.name().to_owned();
    let inputs: Vec<String> = ["alpha", "beta", "gamma"].map(String::from).to_vec();
    let e = model
        .embed_all(&ctx(), &inputs)
        .await
        .unwrap_or_else(|e| panic!("[{name}] embed failed: {e:?}"));
    assert_eq!(e.vectors.len(), 3, "[{name}] one vector per input");
    assert!(
        e.vectors.iter().all(|v| v.len() == model.dimensions()),
        "[{name}] vector size"
    );
    assert_ne!(
        e.vectors[0], e.vectors[1],
        "[{name}] different inputs differ"
    );
    let again = model.embed_one(&ctx(), "alpha").await.unwrap();
    assert_eq!(
        again, e.vectors[0],
        "[{name}] deterministic and order-preserving"
    );
    let bad = make(&server, "wrong-key");
    let err = bad.embed_all(&ctx(), &inputs).await.expect_err("401");
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "[{name}] 401");
    assert!(
        model.embed_all(&ctx(), &[String::new()]).await.is_err(),
        "[{name}] empty input rejected"
    );
}
