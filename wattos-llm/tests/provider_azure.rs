//! Azure OpenAI: deployment URLs, api-version, api-key header, OpenAI body without `model`.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::{ChatModel, ChatRequest, Message};
use wattos_core::{ErrorKind, RequestContext, TenantId};
use wattos_llm::provider::azure::AzureConfig;
use wattos_llm::provider::openai::{MaxTokensField, OpenAiChat, OpenAiEmbeddings};
use wattos_llm::testing::MockServer;

fn ctx() -> RequestContext {
    RequestContext::system(TenantId::new("t").unwrap())
}

#[tokio::test]
async fn deployment_url_and_api_key_header() {
    let server = MockServer::azure().await;
    let mut cfg = AzureConfig::new(server.url(), "gpt4o-prod", "azure-key");
    cfg.api_version = "2025-01-01-preview".into();
    cfg.max_tokens_field = MaxTokensField::MaxCompletionTokens;
    let model = OpenAiChat::azure(cfg).unwrap();
    assert_eq!(model.name(), "azure_openai/gpt4o-prod");
    let r = model
        .chat(
            &ctx(),
            ChatRequest::new("gpt-4o", vec![Message::user("hi")]).with_max_tokens(5),
        )
        .await
        .unwrap();
    assert_eq!(r.text(), "Echo: hi");
    let sent = server.last_request().unwrap();
    assert_eq!(sent.path, "/openai/deployments/gpt4o-prod/chat/completions");
    assert_eq!(sent.query_param("api-version"), Some("2025-01-01-preview"));
    assert_eq!(sent.header("api-key"), Some("azure-key"));
    assert!(sent.header("authorization").is_none());
    assert!(
        sent.body.get("model").is_none(),
        "the deployment picks the model"
    );
    assert_eq!(sent.body["max_completion_tokens"], 5);
}

#[tokio::test]
async fn embeddings_use_their_own_deployment() {
    let server = MockServer::azure().await;
    let cfg = AzureConfig::new(server.url(), "chat", "azure-key");
    let m = OpenAiEmbeddings::azure(cfg, "emb-prod", "text-embedding-3-small", Some(4)).unwrap();
    let v = m.embed_one(&ctx(), "hello").await.unwrap();
    assert_eq!(v.len(), 4);
    let sent = server.last_request().unwrap();
    assert_eq!(sent.path, "/openai/deployments/emb-prod/embeddings");
    assert_eq!(
        sent.body,
        json!({"input": ["hello"], "encoding_format": "float", "dimensions": 4})
    );
}

#[tokio::test]
async fn bad_deployment_names_are_rejected_and_content_filter_maps() {
    assert!(OpenAiChat::azure(AzureConfig::new("https://x", "a/b", "k")).is_err());
    let server = MockServer::azure().await;
    server.push_fault(wattos_llm::testing::Fault::status_with_body(
        400,
        json!({"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            "type": null, "param": "prompt", "code": "content_filter", "status": 400}}),
    ));
    let model = OpenAiChat::azure(AzureConfig::new(server.url(), "d", "k")).unwrap();
    let e = model
        .chat(&ctx(), ChatRequest::new("", vec![Message::user("x")]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        e.upstream_details().and_then(|u| u.code.as_deref()),
        Some("content_filter")
    );
}
