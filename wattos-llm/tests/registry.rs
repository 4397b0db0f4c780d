//! Switching providers is configuration only: the same code runs against every kind.

#![allow(clippy::unwrap_used)]

use wattos_core::llm::{ChatRequest, Message};
use wattos_core::{ErrorKind, RequestContext, TenantId};
use wattos_llm::registry::{
    BuildContext, ProviderConfig, build_chat_model_with, build_embedding_model_with,
};
use wattos_llm::testing::{MockServer, Vendor};

fn ctx() -> RequestContext {
    RequestContext::system(TenantId::new("t").unwrap())
}

fn config_for(server: &MockServer) -> String {
    let base = server.base_url();
    match server.vendor() {
        Vendor::OpenAi => format!(
            "kind = \"openai\"\nbase_url = \"{base}\"\nmodel = \"gpt-4o-mini\"\napi_key_env = \"KEY\"\nembedding_model = \"text-embedding-3-small\"\nembedding_dimensions = 8"
        ),
        Vendor::Azure => format!(
            "kind = \"azure\"\nendpoint = \"{base}\"\ndeployment = \"chat\"\napi_key_env = \"KEY\"\nembedding_deployment = \"emb\"\nembedding_model = \"text-embedding-3-small\"\nembedding_dimensions = 8"
        ),
        Vendor::Anthropic => format!(
            "kind = \"anthropic\"\nbase_url = \"{base}\"\nmodel = \"claude-3-5-haiku-latest\"\napi_key_env = \"KEY\""
        ),
        Vendor::Gemini => format!(
            "kind = \"gemini\"\nbase_url = \"{base}\"\nmodel = \"gemini-2.0-flash\"\napi_key_env = \"KEY\"\nembedding_model = \"text-embedding-004\"\nembedding_dimensions = 8"
        ),
        _ => format!(
            "kind = \"ollama\"\nbase_url = \"{base}\"\nmodel = \"llama3.2\"\nembedding_model = \"all-minilm\"\nembedding_dimensions = 8"
        ),
    }
}

#[tokio::test]
async fn same_code_every_provider_by_config() {
    let build = BuildContext::from_env().with_env_map([("KEY", "test-key")]);
    for vendor in [
        Vendor::OpenAi,
        Vendor::Azure,
        Vendor::Anthropic,
        Vendor::Gemini,
        Vendor::Ollama,
    ] {
        let server = MockServer::start(vendor).await;
        if vendor != Vendor::Ollama {
            server.require_api_key("test-key");
        }
        let cfg = ProviderConfig::from_toml(&config_for(&server)).unwrap();
        let model = build_chat_model_with(&cfg, &build).unwrap();
        let answer = model
            .chat(
                &ctx(),
                ChatRequest::new("any-alias", vec![Message::user("hello")]),
            )
            .await
            .unwrap_or_else(|e| panic!("{vendor:?}: {e:?}"));
        assert_eq!(answer.text(), "Echo: hello", "{vendor:?}");
        // Every provider with a known price reports the cost (Ollama is free, Azure's mock model
        // is gpt-4o-mini).
        let cost = answer
            .cost
            .unwrap_or_else(|| panic!("{vendor:?}: cost missing"));
        if vendor == Vendor::Ollama {
            assert_eq!(cost.total_usd(), 0.0);
        } else {
            assert!(cost.total_usd() > 0.0, "{vendor:?}: {cost:?}");
        }
        if vendor != Vendor::Anthropic {
            let emb = build_embedding_model_with(&cfg, &build).unwrap();
            let v = emb.embed_one(&ctx(), "text").await.unwrap();
            assert_eq!(v.len(), 8, "{vendor:?}");
        }
    }
}

#[test]
fn missing_key_and_bad_settings_are_typed_errors() {
    let empty = BuildContext::from_env().with_env_map([("UNUSED", "x")]);
    let cfg = ProviderConfig::from_toml(
        "kind = \"anthropic\"\nmodel = \"m\"\napi_key_env = \"WATTOS_TEST_SURELY_UNSET\"",
    )
    .unwrap();
    let e = build_chat_model_with(&cfg, &empty).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("WATTOS_TEST_SURELY_UNSET"));

    let cfg = ProviderConfig::from_toml("kind = \"openai_compatible\"").unwrap();
    let e = build_chat_model_with(&cfg, &empty).err().unwrap();
    assert_eq!(e.field(), Some("base_url"));

    let cfg = ProviderConfig::from_toml("kind = \"ollama\"\ntimeout = \"soon\"").unwrap();
    assert_eq!(
        build_chat_model_with(&cfg, &empty).err().unwrap().field(),
        Some("timeout")
    );
    let cfg = ProviderConfig::from_toml("kind = \"anthropic\"\napi_key = \"k\"").unwrap();
    assert!(build_embedding_model_with(&cfg, &empty).is_err());
}
