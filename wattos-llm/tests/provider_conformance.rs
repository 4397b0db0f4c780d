//! The generic conformance suite, run over every remote provider implementation.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::ChatModel;
use wattos_llm::provider::anthropic::{AnthropicChat, AnthropicConfig};
use wattos_llm::provider::azure::AzureConfig;
use wattos_llm::provider::gemini::{GeminiChat, GeminiConfig, GeminiEmbeddings};
use wattos_llm::provider::ollama::{OllamaChat, OllamaConfig, OllamaEmbeddings};
use wattos_llm::provider::openai::{OpenAiChat, OpenAiConfig, OpenAiEmbeddings};
use wattos_llm::testing::conformance::{chat_conformance, embedding_conformance};
use wattos_llm::testing::{MockServer, Vendor};

fn openai(server: &MockServer, key: &str) -> Arc<dyn ChatModel> {
    let cfg = OpenAiConfig::new(key)
        .with_base_url(server.base_url())
        .with_model("gpt-4o-mini");
    Arc::new(OpenAiChat::new(cfg).unwrap())
}

#[tokio::test]
async fn openai_chat_conforms() {
    chat_conformance(Vendor::OpenAi, openai).await;
}

#[tokio::test]
async fn openai_compatible_chat_conforms() {
    chat_conformance(Vendor::OpenAi, |s, key| {
        let cfg = OpenAiConfig::compatible(s.base_url(), Some(key.to_owned()))
            .with_model("meta-llama/Llama-3.1-8B-Instruct");
        Arc::new(OpenAiChat::new(cfg).unwrap()) as Arc<dyn ChatModel>
    })
    .await;
}

#[tokio::test]
async fn azure_chat_conforms() {
    chat_conformance(Vendor::Azure, |s, key| {
        Arc::new(OpenAiChat::azure(AzureConfig::new(s.url(), "gpt4o-prod", key)).unwrap())
            as Arc<dyn ChatModel>
    })
    .await;
}

#[tokio::test]
async fn anthropic_chat_conforms() {
    chat_conformance(Vendor::Anthropic, |s, key| {
        let cfg = AnthropicConfig::new(key)
            .with_base_url(s.base_url())
            .with_model("claude-sonnet-4-20250514");
        Arc::new(AnthropicChat::new(cfg).unwrap()) as Arc<dyn ChatModel>
    })
    .await;
}

#[tokio::test]
async fn gemini_chat_conforms() {
    chat_conformance(Vendor::Gemini, |s, key| {
        let cfg = GeminiConfig::new(key)
            .with_base_url(s.base_url())
            .with_model("gemini-2.0-flash");
        Arc::new(GeminiChat::new(cfg).unwrap()) as Arc<dyn ChatModel>
    })
    .await;
}

#[tokio::test]
async fn ollama_chat_conforms() {
    chat_conformance(Vendor::Ollama, |s, key| {
        let mut cfg = OllamaConfig::new(s.base_url()).with_model("llama3.2");
        cfg.api_key = Some(key.to_owned().into());
        Arc::new(OllamaChat::new(cfg).unwrap()) as Arc<dyn ChatModel>
    })
    .await;
}

#[tokio::test]
async fn openai_embeddings_conform() {
    embedding_conformance(Vendor::OpenAi, |s, key| {
        let cfg = OpenAiConfig::new(key).with_base_url(s.base_url());
        Arc::new(OpenAiEmbeddings::new(cfg, "text-embedding-3-small", Some(8)).unwrap())
            as Arc<dyn EmbeddingModel>
    })
    .await;
}

#[tokio::test]
async fn azure_embeddings_conform() {
    embedding_conformance(Vendor::Azure, |s, key| {
        let cfg = AzureConfig::new(s.url(), "unused-chat", key);
        Arc::new(OpenAiEmbeddings::azure(cfg, "embed-prod", "custom-embedder", Some(8)).unwrap())
            as Arc<dyn EmbeddingModel>
    })
    .await;
}

#[tokio::test]
async fn gemini_embeddings_conform() {
    embedding_conformance(Vendor::Gemini, |s, key| {
        let cfg = GeminiConfig::new(key).with_base_url(s.base_url());
        Arc::new(GeminiEmbeddings::new(cfg, "text-embedding-004", Some(8), None).unwrap())
            as Arc<dyn EmbeddingModel>
    })
    .await;
}

#[tokio::test]
async fn ollama_embeddings_conform() {
    embedding_conformance(Vendor::Ollama, |s, key| {
        let mut cfg = OllamaConfig::new(s.base_url());
        cfg.api_key = Some(key.to_owned().into());
        Arc::new(OllamaEmbeddings::new(cfg, "all-minilm", Some(8)).unwrap())
            as Arc<dyn EmbeddingModel>
    })
    .await;
}
