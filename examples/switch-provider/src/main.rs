//! Switch LLM providers by configuration only.
//!
//! ```text
//! cargo run -p example-switch-provider                          # openai, against a local mock
//! WATTOS_PROVIDER=anthropic cargo run -p example-switch-provider
//! WATTOS_PROVIDER=gemini WATTOS_PROVIDERS_FILE=my.toml WATTOS_LIVE=1 cargo run -p example-switch-provider
//! ```
//!
//! By default the example starts a mock of the chosen vendor's API on localhost (the same mocks the
//! crate's tests use), so it runs offline. `ask` below is the application code: it only sees
//! `Arc<dyn ChatModel>` and never changes when the provider does.

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::sync::Arc;

use futures::StreamExt;
use wattos_core::llm::{ChatDelta, ChatModel, ChatRequest, Message};
use wattos_core::{RequestContext, TenantId};
use wattos_llm::registry::{BuildContext, ProvidersConfig, build_chat_model_with};
use wattos_llm::testing::{MockServer, Vendor};

/// The application: one question, answered in full and then streamed.
async fn ask(model: Arc<dyn ChatModel>) -> Result<(), Box<dyn Error>> {
    let ctx = RequestContext::system(TenantId::new("example")?);
    let req =
        ChatRequest::new("default", vec![Message::user("What is WattOS?")]).with_max_tokens(64);
    let answer = model.chat(&ctx, req.clone()).await?;
    println!("[{}] {}", model.name(), answer.text());
    println!(
        "  usage: {} in / {} out, cost: {}",
        answer.usage.input_tokens,
        answer.usage.output_tokens,
        answer
            .cost
            .map_or("unknown".to_owned(), |c| format!("${:.8}", c.total_usd()))
    );
    print!("  streamed:");
    let mut stream = model.chat_stream(&ctx, req).await?;
    while let Some(delta) = stream.next().await {
        if let ChatDelta::Text { text } = delta? {
            print!(" [{text}]");
        }
    }
    println!();
    Ok(())
}

fn vendor_of(kind: &str) -> Vendor {
    match kind {
        "azure" => Vendor::Azure,
        "anthropic" => Vendor::Anthropic,
        "gemini" => Vendor::Gemini,
        "ollama" => Vendor::Ollama,
        _ => Vendor::OpenAi,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let name = std::env::var("WATTOS_PROVIDER").unwrap_or_else(|_| "openai".into());
    let file = std::env::var("WATTOS_PROVIDERS_FILE")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/providers.toml").into());
    let text = std::fs::read_to_string(&file)?;
    let live = std::env::var_os("WATTOS_LIVE").is_some();

    // Find the provider's kind first so the matching mock can be started.
    let probe: ProvidersConfig = toml_probe(&text.replace("{mock}", "http://127.0.0.1:1"))?;
    let kind = probe
        .providers
        .get(&name)
        .ok_or_else(|| format!("no provider '{name}' in {file}"))?
        .kind();

    let (text, build, _mock) = if live {
        (text, BuildContext::from_env(), None)
    } else {
        let mock = MockServer::start(vendor_of(kind)).await;
        let text = text.replace("{mock}", &mock.url());
        let keys = [
            "OPENAI_API_KEY",
            "AZURE_OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "GEMINI_API_KEY",
        ]
        .map(|k| (k, "mock-key"));
        (
            text,
            BuildContext::from_env().with_env_map(keys),
            Some(mock),
        )
    };
    let providers = toml_probe(&text)?;
    let cfg = &providers.providers[&name];
    let model = build_chat_model_with(cfg, &build)?;
    ask(model).await
}

fn toml_probe(text: &str) -> Result<ProvidersConfig, Box<dyn Error>> {
    Ok(ProvidersConfig::from_toml(text)?)
}
