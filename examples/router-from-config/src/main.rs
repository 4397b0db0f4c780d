//! A router with a fallback and circuit breakers, built from a TOML file by `wattos-llm` alone (no
//! server crate): `[providers.<name>]` tables become deployments
//! (`wattos_llm::router::config::provider_deployments`), the `[router]` table groups them
//! (`RouterConfig`, `build_chat_router`), and chats go through the router.
//!
//! With no argument it serves the bundled `router.toml` against two local mock vendors speaking
//! OpenAI's wire format, and makes the primary fail: the first two calls fall back to the backup,
//! the second failure opens the primary's breaker, and the third call skips the primary entirely.
//! With a file argument it uses that file's endpoints as they are.
//!
//! Run: `cargo run -p example-router-from-config [-- router.toml]`
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use wattos_core::llm::{ChatModel, ChatRequest, Message};
use wattos_core::{Error, RequestContext, Result, TenantId};
use wattos_llm::registry::{BuildContext, ProvidersConfig};
use wattos_llm::router::Router;
use wattos_llm::router::config::{
    RouterBackends, RouterConfig, ServedNames, build_chat_router, provider_deployments,
};
use wattos_llm::testing::{Fault, MockServer};

/// The `[providers]` and `[router]` tables of a config file.
fn parse(text: &str) -> Result<(ProvidersConfig, RouterConfig)> {
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| Error::invalid_input(format!("not TOML: {e}")))?;
    let router = match table.remove("router") {
        Some(toml::Value::Table(t)) => RouterConfig::from_table(t)?,
        Some(_) => return Err(Error::invalid_field("router", "must be a table")),
        None => RouterConfig::default(),
    };
    let providers =
        toml::to_string(&table).map_err(|e| Error::invalid_input(format!("providers: {e}")))?;
    Ok((ProvidersConfig::from_toml(&providers)?, router))
}

/// The router a config file describes (and the names it serves).
fn build(text: &str) -> Result<(Arc<Router>, ServedNames)> {
    let (providers, config) = parse(text)?;
    let (chat, _embedding) = provider_deployments(&providers, &BuildContext::from_env())?;
    build_chat_router(&chat, &config, &RouterBackends::default(), None)?
        .ok_or_else(|| Error::invalid_input("the file configures no provider"))
}

/// The bundled `router.toml` pointed at two local mock vendors, the primary failing `failures`
/// times.
async fn demo_vendors(failures: usize) -> (String, MockServer, MockServer) {
    let (primary, backup) = (MockServer::openai().await, MockServer::openai().await);
    for _ in 0..failures {
        primary.push_fault(Fault::status(500));
    }
    let text = include_str!("../router.toml")
        .replace("{primary_url}", &primary.base_url())
        .replace("{backup_url}", &backup.base_url());
    (text, primary, backup)
}

#[tokio::main]
async fn main() -> Result<()> {
    // The offline demo's vendors (kept alive until the end of `main`).
    let mut mocks = Vec::new();
    let text = match std::env::args().nth(1) {
        Some(path) => std::fs::read_to_string(&path)
            .map_err(|e| Error::invalid_input(format!("cannot read {path}: {e}")))?,
        None => {
            // The primary fails every call of the demo (one fault per request).
            let (text, primary, backup) = demo_vendors(3).await;
            mocks.push(primary);
            mocks.push(backup);
            text
        }
    };
    let (router, served) = build(&text)?;
    let names: Vec<&str> = served.iter().map(|(n, _)| n.as_str()).collect();
    println!("serving {names:?}");

    let ctx = RequestContext::system(TenantId::new("example")?);
    for i in 1..=3 {
        let req = ChatRequest::new("chat", vec![Message::user(format!("Hello #{i}"))])
            .with_max_tokens(16);
        match router.chat(&ctx, req).await {
            Ok(resp) => println!("call {i}: {} answered: {}", resp.model, resp.text()),
            Err(e) => println!("call {i}: failed: {e}"),
        }
    }
    for d in router.health().deployments {
        println!("{}: breaker {:?}", d.deployment, d.breaker);
    }
    if let [primary, backup] = mocks.as_slice() {
        println!(
            "upstream calls: primary {}, backup {}",
            primary.requests().len(),
            backup.requests().len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattos_core::resilience::BreakerState;

    #[tokio::test]
    async fn the_bundled_file_falls_back_and_opens_the_primarys_breaker() {
        let (text, primary, backup) = demo_vendors(2).await;
        let (router, served) = build(&text).expect("the bundled file builds");
        let names: Vec<&str> = served.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["chat", "default", "backup", "primary"]);
        let ctx = RequestContext::system(TenantId::new("example").expect("id"));
        for i in 0..3 {
            let req = ChatRequest::new("default", vec![Message::user(format!("hi {i}"))]);
            let resp = router.chat(&ctx, req).await.expect("the backup answers");
            assert_eq!(resp.model, "backup-model");
        }
        // Two failures opened the breaker: the third call never reached the primary.
        assert_eq!((primary.requests().len(), backup.requests().len()), (2, 3));
        let health = router.health();
        let primary_health = health
            .deployments
            .iter()
            .find(|d| d.deployment == "primary")
            .expect("primary");
        assert_eq!(primary_health.breaker, BreakerState::Open);
    }

    #[test]
    fn typos_and_unknown_deployments_are_errors() {
        let bad_key = "[router]\nbreaker_failure_treshold = 2\n";
        assert!(parse(bad_key).is_err());
        let unknown = "[providers.a]\nkind = \"openai_compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key = \"k\"\n[router.groups.chat]\ndeployments = [\"b\"]\n";
        let err = build(unknown).expect_err("unknown deployment");
        assert!(err.message().contains("unknown deployment 'b'"), "{err}");
    }
}
