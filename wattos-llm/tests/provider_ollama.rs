//! Ollama: /api/chat body (options, format, tools, stream flag), NDJSON streaming, /api/embed.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::{ChatModel, ChatRequest, FinishReason, Message, ResponseFormat};
use wattos_core::{RequestContext, TenantId};
use wattos_llm::provider::ollama::{OllamaChat, OllamaConfig, OllamaEmbeddings};
use wattos_llm::testing::conformance::{stream_to_response, weather_tool};
use wattos_llm::testing::{MockReply, MockServer};

fn ctx() -> RequestContext {
    RequestContext::system(TenantId::new("t").unwrap())
}

#[tokio::test]
async fn request_shape() {
    let server = MockServer::ollama().await;
    let mut cfg = OllamaConfig::new(server.base_url()).with_model("llama3.2");
    cfg.keep_alive = Some("10m".into());
    let model = OllamaChat::new(cfg).unwrap();
    let mut req = ChatRequest::new("", vec![Message::system("sys"), Message::user("hi")])
        .with_tool(weather_tool())
        .with_max_tokens(32)
        .with_temperature(0.7);
    req.seed = Some(42);
    req.response_format = Some(ResponseFormat::JsonObject);
    let r = model.chat(&ctx(), req).await.unwrap();
    assert_eq!(r.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        r.tool_calls[0].parse_arguments().unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(
        r.cost.unwrap().total_usd(),
        0.0,
        "self-hosted is free by default"
    );
    assert!(r.provider_fields.contains_key("total_duration"));
    let sent = server.last_request().unwrap();
    assert_eq!(sent.path, "/api/chat");
    let b = &sent.body;
    assert_eq!(
        b["stream"], false,
        "Ollama streams by default, so false must be explicit"
    );
    assert_eq!(b["model"], "llama3.2");
    assert_eq!(b["keep_alive"], "10m");
    assert_eq!(b["format"], "json");
    assert_eq!(
        b["options"],
        json!({"temperature": 0.7, "num_predict": 32, "seed": 42})
    );
    assert_eq!(b["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        b["messages"][0],
        json!({"role": "system", "content": "sys"})
    );
}

#[tokio::test]
async fn documented_ndjson_stream() {
    let server = MockServer::ollama().await;
    server.push_reply(MockReply::Stream {
        content_type: "application/x-ndjson".into(),
        frames: vec![
            "{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T08:52:19.385406455-07:00\",\"message\":{\"role\":\"assistant\",\"content\":\"The\"},\"done\":false}\n{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T08:52:19.4Z\",\"message\":{\"role\":\"assistant\",\"content\":\" sky\"},\"done\":false}\n".into(),
            "{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T19:22:45.499127Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"length\",\"total_duration\":4883583458,\"load_duration\":1334875,\"prompt_eval_count\":26,\"prompt_eval_duration\":342546000,\"eval_count\":282,\"eval_duration\":4535599000}\n".into(),
        ],
    });
    let model =
        OllamaChat::new(OllamaConfig::new(server.base_url()).with_model("llama3.2")).unwrap();
    let r = stream_to_response(
        &model,
        &ctx(),
        ChatRequest::new("", vec![Message::user("why?")]),
    )
    .await
    .unwrap();
    assert_eq!(r.text(), "The sky");
    assert_eq!(r.finish_reason, FinishReason::Length);
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (26, 282));
    assert_eq!(server.last_request().unwrap().body["stream"], true);
}

#[tokio::test]
async fn embed_request() {
    let server = MockServer::ollama().await;
    server.set_embedding_dimensions(384);
    let m =
        OllamaEmbeddings::new(OllamaConfig::new(server.base_url()), "all-minilm", None).unwrap();
    assert_eq!(m.dimensions(), 384);
    let e = m
        .embed_all(&ctx(), &["Why is the sky blue?".to_string()])
        .await
        .unwrap();
    assert_eq!(e.vectors[0].len(), 384);
    assert!(e.usage.input_tokens > 0);
    let sent = server.last_request().unwrap();
    assert_eq!(sent.path, "/api/embed");
    assert_eq!(
        sent.body,
        json!({"model": "all-minilm", "input": ["Why is the sky blue?"]})
    );
}
