//! OpenAI: the request the provider sends (path, headers, body) and parsing of documented answers.

#![allow(clippy::unwrap_used)]

use futures::StreamExt;
use serde_json::json;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::{
    ChatDelta, ChatModel, ChatRequest, FinishReason, Message, ResponseFormat, ToolChoice,
};
use wattos_core::{RequestContext, TenantId};
use wattos_llm::provider::openai::{OpenAiChat, OpenAiConfig, OpenAiEmbeddings};
use wattos_llm::testing::conformance::weather_tool;
use wattos_llm::testing::{MockReply, MockServer};

fn ctx() -> RequestContext {
    RequestContext::system(TenantId::new("t").unwrap())
}

fn model(server: &MockServer) -> OpenAiChat {
    let mut cfg = OpenAiConfig::new("sk-test")
        .with_base_url(server.base_url())
        .with_model("gpt-4o-mini");
    cfg.organization = Some("org-1".into());
    cfg.project = Some("proj-1".into());
    OpenAiChat::new(cfg).unwrap()
}

#[tokio::test]
async fn request_shape() {
    let server = MockServer::openai().await;
    let mut req = ChatRequest::new(
        "ignored-alias",
        vec![Message::system("sys"), Message::user("hi")],
    )
    .with_tool(weather_tool())
    .with_max_tokens(100)
    .with_temperature(0.5);
    req.tool_choice = Some(ToolChoice::Tool {
        name: "get_weather".into(),
    });
    req.parallel_tool_calls = Some(false);
    req.stop = vec!["END".into()];
    req.seed = Some(7);
    req.user = Some("u-1".into());
    req.extra
        .insert("logit_bias".into(), json!({"50256": -100}));
    model(&server).chat(&ctx(), req).await.unwrap();
    let sent = server.last_request().unwrap();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(sent.header("openai-organization"), Some("org-1"));
    assert_eq!(sent.header("openai-project"), Some("proj-1"));
    assert!(
        sent.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let b = &sent.body;
    assert_eq!(b["model"], "gpt-4o-mini");
    assert_eq!(
        b["messages"],
        json!([{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}])
    );
    assert_eq!(b["tools"][0]["type"], "function");
    assert_eq!(b["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        b["tools"][0]["function"]["parameters"]["required"],
        json!(["city"])
    );
    assert_eq!(
        b["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(b["parallel_tool_calls"], false);
    assert_eq!(b["max_completion_tokens"], 100);
    assert_eq!(b["temperature"], 0.5);
    assert_eq!(b["stop"], json!(["END"]));
    assert_eq!(b["seed"], 7);
    assert_eq!(b["user"], "u-1");
    assert_eq!(b["logit_bias"], json!({"50256": -100}));
    assert!(b.get("stream").is_none());
}

#[tokio::test]
async fn streaming_request_asks_for_usage() {
    let server = MockServer::openai().await;
    let stream = model(&server)
        .chat_stream(&ctx(), ChatRequest::new("", vec![Message::user("hi")]))
        .await
        .unwrap();
    let items: Vec<_> = stream.collect().await;
    assert!(
        items
            .iter()
            .any(|i| matches!(i, Ok(ChatDelta::Usage(u)) if u.input_tokens > 0))
    );
    let b = server.last_request().unwrap().body;
    assert_eq!(b["stream"], true);
    assert_eq!(b["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn json_schema_and_json_object_formats() {
    let server = MockServer::openai().await;
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "number"}}});
    let mut req = ChatRequest::new("", vec![Message::user("weather?")]);
    req.response_format = Some(ResponseFormat::JsonSchema {
        name: "weather".into(),
        schema: schema.clone(),
        strict: Some(true),
    });
    let r = model(&server).chat(&ctx(), req.clone()).await.unwrap();
    let parsed: serde_json::Value = serde_json::from_str(r.text()).unwrap();
    assert_eq!(parsed, json!({"city": "Paris", "temp": 1.5}));
    assert_eq!(
        server.last_request().unwrap().body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "weather", "schema": schema, "strict": true}})
    );
    req.response_format = Some(ResponseFormat::JsonObject);
    model(&server).chat(&ctx(), req).await.unwrap();
    assert_eq!(
        server.last_request().unwrap().body["response_format"],
        json!({"type": "json_object"})
    );
}

#[tokio::test]
async fn documented_response_with_cached_tokens_and_unknown_fields() {
    let server = MockServer::openai().await;
    server.push_reply(MockReply::Json {
        status: 200,
        body: json!({
          "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion", "created": 1741570283,
          "model": "gpt-4o-2024-08-06",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!", "refusal": null, "annotations": []},
                       "logprobs": null, "finish_reason": "length"}],
          "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0}},
          "service_tier": "default", "system_fingerprint": "fp_6ec83003ad"
        }),
    });
    let r = model(&server)
        .chat(&ctx(), ChatRequest::new("", vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(r.id, "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG");
    assert_eq!(r.model, "gpt-4o-2024-08-06");
    assert_eq!(r.finish_reason, FinishReason::Length);
    assert_eq!(
        (
            r.usage.input_tokens,
            r.usage.output_tokens,
            r.usage.cached_input_tokens
        ),
        (2006, 300, 1920)
    );
    assert_eq!(r.provider_fields["system_fingerprint"], "fp_6ec83003ad");
    assert_eq!(r.provider_fields["service_tier"], "default");
    // gpt-4o: $2.50 input, $1.25 cached, $10 output per million.
    let c = r.cost.unwrap();
    assert!((c.input_usd - 86.0 * 2.5 / 1e6).abs() < 1e-12);
    assert!((c.cached_input_usd - 1920.0 * 1.25 / 1e6).abs() < 1e-12);
    assert!((c.output_usd - 300.0 * 10.0 / 1e6).abs() < 1e-12);
}

#[tokio::test]
async fn streamed_parallel_tool_calls_arrive_as_fragments() {
    let server = MockServer::openai().await;
    let req = ChatRequest::new("", vec![Message::user("weather?")])
        .with_tool(weather_tool())
        .with_tool(wattos_core::llm::ToolDefinition {
            name: "get_time".into(),
            ..weather_tool()
        });
    let items: Vec<_> = model(&server)
        .chat_stream(&ctx(), req)
        .await
        .unwrap()
        .collect()
        .await;
    let frags: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            Ok(ChatDelta::ToolCall(d)) => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert!(frags.len() > 2, "arguments arrive in several fragments");
    assert_eq!(frags[0].name.as_deref(), Some("get_weather"));
    assert!(
        frags
            .iter()
            .any(|f| f.index == 1 && f.name.as_deref() == Some("get_time"))
    );
    assert!(matches!(
        items.last(),
        Some(Ok(ChatDelta::Finish {
            reason: FinishReason::ToolCalls
        }))
    ));
}

#[tokio::test]
async fn embeddings_request_and_response() {
    let server = MockServer::openai().await;
    let cfg = OpenAiConfig::new("sk-test").with_base_url(server.base_url());
    let m = OpenAiEmbeddings::new(cfg, "text-embedding-3-small", Some(16)).unwrap();
    let e = m
        .embed_all(&ctx(), &["a".to_string(), "b".to_string()])
        .await
        .unwrap();
    assert_eq!(e.vectors.len(), 2);
    assert_eq!(e.vectors[0].len(), 16);
    assert!(e.usage.input_tokens > 0);
    assert!(e.cost.is_some());
    let sent = server.last_request().unwrap();
    assert_eq!(sent.path, "/v1/embeddings");
    assert_eq!(
        sent.body,
        json!({"model": "text-embedding-3-small", "input": ["a", "b"], "encoding_format": "float", "dimensions": 16})
    );
    // Unknown model without a configured size is a configuration error.
    let cfg = OpenAiConfig::new("k").with_base_url(server.base_url());
    assert!(OpenAiEmbeddings::new(cfg, "my-embedder", None).is_err());
}
