//! Gemini: model paths, x-goog-api-key, contents/parts, systemInstruction, function calling,
//! generationConfig, SSE streaming and embeddings.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::{ChatModel, ChatRequest, FinishReason, Message, ResponseFormat, ToolChoice};
use wattos_core::{RequestContext, TenantId};
use wattos_llm::provider::gemini::{GeminiChat, GeminiConfig, GeminiEmbeddings};
use wattos_llm::testing::conformance::{stream_to_response, weather_tool};
use wattos_llm::testing::{MockReply, MockServer};

fn ctx() -> RequestContext {
    RequestContext::system(TenantId::new("t").unwrap())
}

fn cfg(server: &MockServer) -> GeminiConfig {
    GeminiConfig::new("g-key").with_base_url(server.base_url())
}

#[tokio::test]
async fn request_shape_and_function_round_trip() {
    let server = MockServer::gemini().await;
    let model = GeminiChat::new(cfg(&server).with_model("gemini-2.0-flash")).unwrap();
    let mut req = ChatRequest::new(
        "",
        vec![
            Message::system("Be brief."),
            Message::user("Weather in Paris?"),
        ],
    )
    .with_tool(weather_tool())
    .with_max_tokens(64)
    .with_temperature(0.25);
    req.tool_choice = Some(ToolChoice::Required);
    req.stop = vec!["END".into()];
    let first = model.chat(&ctx(), req.clone()).await.unwrap();
    assert_eq!(first.finish_reason, FinishReason::ToolCalls);
    let sent = server.last_request().unwrap();
    assert_eq!(sent.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(sent.header("x-goog-api-key"), Some("g-key"));
    let b = &sent.body;
    assert_eq!(
        b["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    assert_eq!(
        b["contents"],
        json!([{"role": "user", "parts": [{"text": "Weather in Paris?"}]}])
    );
    assert_eq!(
        b["tools"][0]["functionDeclarations"][0]["name"],
        "get_weather"
    );
    assert_eq!(
        b["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
    assert_eq!(
        b["generationConfig"],
        json!({"temperature": 0.25, "maxOutputTokens": 64, "stopSequences": ["END"]})
    );

    req.messages.push(first.to_message());
    req.messages.push(Message::tool_result(
        first.tool_calls[0].id.clone(),
        r#"{"temp_c": 19}"#,
    ));
    req.tool_choice = None;
    let second = model.chat(&ctx(), req).await.unwrap();
    assert!(second.text().contains("19"));
    let contents = &server.last_request().unwrap().body["contents"];
    assert_eq!(
        contents[1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]})
    );
    assert_eq!(
        contents[2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 19}}}]})
    );
}

#[tokio::test]
async fn stream_uses_alt_sse_and_documented_chunks() {
    let server = MockServer::gemini().await;
    server.push_reply(MockReply::Stream {
        content_type: "text/event-stream".into(),
        frames: vec![
            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"totalTokenCount\": 8},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n".into(),
            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" end.\"}],\"role\": \"model\"},\"finishReason\": \"MAX_TOKENS\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 3,\"totalTokenCount\": 11, \"cachedContentTokenCount\": 4},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n".into(),
        ],
    });
    let model = GeminiChat::new(cfg(&server).with_model("gemini-2.0-flash")).unwrap();
    let r = stream_to_response(
        &model,
        &ctx(),
        ChatRequest::new("", vec![Message::user("hi")]),
    )
    .await
    .unwrap();
    assert_eq!(r.text(), "The end.");
    assert_eq!(r.finish_reason, FinishReason::Length);
    assert_eq!(
        (
            r.usage.input_tokens,
            r.usage.output_tokens,
            r.usage.cached_input_tokens
        ),
        (8, 3, 4)
    );
    let sent = server.last_request().unwrap();
    assert_eq!(
        sent.path,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    );
    assert_eq!(sent.query_param("alt"), Some("sse"));
}

#[tokio::test]
async fn json_schema_and_safety_block() {
    let server = MockServer::gemini().await;
    let model = GeminiChat::new(cfg(&server).with_model("gemini-2.5-flash")).unwrap();
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
    let mut req = ChatRequest::new("", vec![Message::user("count")]);
    req.response_format = Some(ResponseFormat::JsonSchema {
        name: "c".into(),
        schema: schema.clone(),
        strict: None,
    });
    let r = model.chat(&ctx(), req).await.unwrap();
    assert_eq!(r.text(), r#"{"n":1}"#);
    let g = &server.last_request().unwrap().body["generationConfig"];
    assert_eq!(g["responseMimeType"], "application/json");
    assert_eq!(g["responseJsonSchema"], schema);

    server.push_reply(MockReply::Json { status: 200, body: json!({
        "candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "SAFETY",
            "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]}],
        "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}})});
    let r = model
        .chat(&ctx(), ChatRequest::new("", vec![Message::user("x")]))
        .await
        .unwrap();
    assert_eq!(r.finish_reason, FinishReason::ContentFilter);
    assert!(r.provider_fields.contains_key("safetyRatings"));
}

#[tokio::test]
async fn embed_single_and_batch() {
    let server = MockServer::gemini().await;
    let m = GeminiEmbeddings::new(
        cfg(&server),
        "text-embedding-004",
        Some(8),
        Some("RETRIEVAL_DOCUMENT".into()),
    )
    .unwrap();
    m.embed_one(&ctx(), "one").await.unwrap();
    let single = server.last_request().unwrap();
    assert_eq!(
        single.path,
        "/v1beta/models/text-embedding-004:embedContent"
    );
    assert_eq!(single.body["taskType"], "RETRIEVAL_DOCUMENT");
    assert_eq!(single.body["outputDimensionality"], 8);
    let e = m
        .embed_all(&ctx(), &["a".to_string(), "b".to_string()])
        .await
        .unwrap();
    assert_eq!(e.vectors.len(), 2);
    let batch = server.last_request().unwrap();
    assert_eq!(
        batch.path,
        "/v1beta/models/text-embedding-004:batchEmbedContents"
    );
    assert_eq!(
        batch.body["requests"][1]["content"],
        json!({"parts": [{"text": "b"}]})
    );
    assert_eq!(
        batch.body["requests"][1]["model"],
        "models/text-embedding-004"
    );
}
