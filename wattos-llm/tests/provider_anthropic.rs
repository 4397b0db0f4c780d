//! Anthropic: headers, system field, content blocks, tool_use / tool_result, SSE events.

#![allow(clippy::unwrap_used)]

use futures::StreamExt;
use serde_json::json;
use wattos_core::llm::{
    ChatDelta, ChatModel, ChatRequest, FinishReason, Message, ResponseFormat, ToolCall,
};
use wattos_core::{RequestContext, TenantId};
use wattos_llm::provider::anthropic::{AnthropicChat, AnthropicConfig};
use wattos_llm::testing::conformance::weather_tool;
use wattos_llm::testing::{MockReply, MockServer};

fn ctx() -> RequestContext {
    RequestContext::system(TenantId::new("t").unwrap())
}

fn model(server: &MockServer) -> AnthropicChat {
    AnthropicChat::new(
        AnthropicConfig::new("sk-ant")
            .with_base_url(server.base_url())
            .with_model("claude-sonnet-4-20250514"),
    )
    .unwrap()
}

#[tokio::test]
async fn request_shape_with_tool_results() {
    let server = MockServer::anthropic().await;
    let mut req = ChatRequest::new(
        "",
        vec![
            Message::system("Be brief."),
            Message::user("Weather in Paris and Rome?"),
            Message::Assistant {
                content: Some("Checking.".into()),
                tool_calls: vec![
                    ToolCall {
                        id: "toolu_1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    },
                    ToolCall {
                        id: "toolu_2".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Rome"}"#.into(),
                    },
                ],
            },
            Message::tool_result("toolu_1", "18C"),
            Message::Tool {
                tool_call_id: "toolu_2".into(),
                content: "service down".into(),
                is_error: true,
            },
        ],
    )
    .with_tool(weather_tool())
    .with_temperature(0.3);
    req.stop = vec!["###".into()];
    req.seed = Some(1); // not supported by Anthropic: must not be sent
    req.extra.insert("top_k".into(), json!(5));
    let r = model(&server).chat(&ctx(), req).await.unwrap();
    assert!(r.text().contains("service down"));
    let sent = server.last_request().unwrap();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some("sk-ant"));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    let b = &sent.body;
    assert_eq!(b["model"], "claude-sonnet-4-20250514");
    assert_eq!(b["max_tokens"], 4096);
    assert_eq!(b["system"], "Be brief.");
    assert_eq!(b["temperature"], 0.3);
    assert_eq!(b["stop_sequences"], json!(["###"]));
    assert_eq!(b["top_k"], 5);
    assert!(b.get("seed").is_none());
    assert_eq!(
        b["tools"][0],
        json!({"name": "get_weather", "description": "Current weather for a city",
        "input_schema": weather_tool().parameters})
    );
    let msgs = b["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "both tool results merge into one user turn");
    assert_eq!(
        msgs[0],
        json!({"role": "user", "content": "Weather in Paris and Rome?"})
    );
    assert_eq!(
        msgs[1]["content"][0],
        json!({"type": "text", "text": "Checking."})
    );
    assert_eq!(
        msgs[1]["content"][1],
        json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}})
    );
    assert_eq!(
        msgs[2],
        json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "service down", "is_error": true}]})
    );
}

#[tokio::test]
async fn documented_response_with_cache_usage() {
    let server = MockServer::anthropic().await;
    server.push_reply(MockReply::Json { status: 200, body: json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
        "content": [{"type": "text", "text": "Hello!"}], "model": "claude-sonnet-4-20250514",
        "stop_reason": "max_tokens", "stop_sequence": null,
        "usage": {"input_tokens": 12, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000, "output_tokens": 6},
        "container": null, "future_field": {"x": 1}
    })});
    let r = model(&server)
        .chat(&ctx(), ChatRequest::new("", vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(r.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(r.finish_reason, FinishReason::Length);
    assert_eq!(
        (
            r.usage.input_tokens,
            r.usage.cached_input_tokens,
            r.usage.output_tokens
        ),
        (2112, 2000, 6)
    );
    assert_eq!(r.provider_fields["future_field"], json!({"x": 1}));
    assert!(r.cost.unwrap().cached_input_usd > 0.0);
}

#[tokio::test]
async fn documented_sse_stream_with_tool_use() {
    let server = MockServer::anthropic().await;
    let frames = [
        r#"{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type": "ping"}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay, let me check"}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San Francisco, CA\"}"}}"#,
        r#"{"type":"content_block_stop","index":1}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
        r#"{"type":"message_stop"}"#,
    ];
    server.push_reply(MockReply::Stream {
        content_type: "text/event-stream".into(),
        frames: frames
            .iter()
            .map(|f| {
                let t: serde_json::Value = serde_json::from_str(f).unwrap();
                format!("event: {}\ndata: {f}\n\n", t["type"].as_str().unwrap())
            })
            .collect(),
    });
    let req = ChatRequest::new("", vec![Message::user("weather in SF?")]).with_tool(weather_tool());
    let mut acc = wattos_core::llm::StreamAccumulator::new("x");
    let mut s = model(&server).chat_stream(&ctx(), req).await.unwrap();
    while let Some(d) = s.next().await {
        acc.push(d.unwrap());
    }
    let r = acc.finish().unwrap();
    assert_eq!(r.text(), "Okay, let me check");
    assert_eq!(r.tool_calls[0].id, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(
        r.tool_calls[0].parse_arguments().unwrap(),
        json!({"location": "San Francisco, CA"})
    );
    assert_eq!(r.finish_reason, FinishReason::ToolCalls);
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (472, 89));
    assert_eq!(server.last_request().unwrap().body["stream"], true);
}

#[tokio::test]
async fn json_schema_uses_a_forced_tool_and_returns_text() {
    let server = MockServer::anthropic().await;
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    let mut req = ChatRequest::new("", vec![Message::user("where?")]);
    req.response_format = Some(ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema,
        strict: None,
    });
    let r = model(&server).chat(&ctx(), req.clone()).await.unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(r.text()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(r.finish_reason, FinishReason::Stop);
    assert!(r.tool_calls.is_empty());
    assert_eq!(
        server.last_request().unwrap().body["tool_choice"],
        json!({"type": "tool", "name": "answer"})
    );
    // Streaming gives the same text.
    let items: Vec<_> = model(&server)
        .chat_stream(&ctx(), req)
        .await
        .unwrap()
        .collect()
        .await;
    let text: String = items
        .iter()
        .filter_map(|i| match i {
            Ok(ChatDelta::Text { text }) => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(text, r.text());
}
