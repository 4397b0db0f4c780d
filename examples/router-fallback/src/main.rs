//! A fallback chain with circuit breakers, retries and budgets, over in-process fake models, offline.
//!
//! * `gpt-primary` (flaky: every call fails with a 503) and `gpt-secondary` (healthy, slower) serve
//!   the `smart` group with the lowest-latency strategy; `smart` falls back to the `cheap` group.
//! * The primary's breaker opens after 3 failures, so later requests skip it entirely.
//! * Tenant `acme` has a $0.01 monthly budget: once the next call's estimate no longer fits, requests
//!   fail with `budget_exceeded` before any provider is called.
//! * Then the secondary goes down too: tenant `globex` is served by the `cheap` fallback group.
//! * Usage records (one per attempt) go to an in-memory sink; the health snapshot shows the breaker.
//!
//! Run: `cargo run -p example-router-fallback`
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use wattos_core::llm::{ChatModel, ChatRequest, ChatResponse, FinishReason, Message, Usage};
use wattos_core::resilience::BreakerConfig;
use wattos_core::{Error, RequestContext, Result, TenantId};
use wattos_llm::router::{
    Budget, BudgetPeriod, Deployment, ModelGroup, Price, Router, Strategy, TenantPolicy,
};
use wattos_llm::usage::MemoryUsageSink;

/// A stand-in for a provider: answers after `delay`, or fails with a 503 when `down`.
struct FakeProvider {
    name: &'static str,
    delay: Duration,
    down: AtomicBool,
    calls: AtomicU32,
}

#[async_trait]
impl ChatModel for FakeProvider {
    fn name(&self) -> &str {
        self.name
    }
    async fn chat(&self, _ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::upstream(
                self.name,
                Some(503),
                true,
                "service unavailable",
            ));
        }
        Ok(ChatResponse {
            id: format!("{}-1", self.name),
            model: req.model,
            content: Some(format!("answered by {}", self.name)),
            tool_calls: vec![],
            finish_reason: FinishReason::Stop,
            usage: Usage {
                input_tokens: 400,
                output_tokens: 200,
                cached_input_tokens: 0,
            },
            cost: None,
            provider_fields: Default::default(),
        })
    }
}

fn provider(name: &'static str, delay_ms: u64, down: bool) -> Arc<FakeProvider> {
    Arc::new(FakeProvider {
        name,
        delay: Duration::from_millis(delay_ms),
        down: AtomicBool::new(down),
        calls: AtomicU32::new(0),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let primary = provider("gpt-primary", 5, true);
    let secondary = provider("gpt-secondary", 20, false);
    let cheap = provider("mini", 2, false);
    let usage = MemoryUsageSink::default();
    let acme = TenantId::new("acme")?;

    let router = Router::builder()
        .deployment(
            Deployment::from_arc("gpt-primary", primary.clone() as Arc<dyn ChatModel>)
                .upstream_model("gpt-4o")
                .price(Price::per_mtok(2.5, 10.0))
                .rpm(500),
        )
        .deployment(
            Deployment::from_arc("gpt-secondary", secondary.clone() as Arc<dyn ChatModel>)
                .upstream_model("gpt-4o")
                .price(Price::per_mtok(2.5, 10.0))
                .max_concurrent(16),
        )
        .deployment(
            Deployment::from_arc("mini", cheap.clone() as Arc<dyn ChatModel>)
                .upstream_model("gpt-4o-mini")
                .price(Price::per_mtok(0.15, 0.6)),
        )
        .group(
            ModelGroup::new("smart")
                .alias("gpt-4o")
                .deployments(["gpt-primary", "gpt-secondary"])
                .strategy(Strategy::Priority)
                .fallbacks(["cheap"]),
        )
        .group(ModelGroup::new("cheap").deployment("mini"))
        .breaker(BreakerConfig {
            failure_threshold: 3,
            reset_timeout: Duration::from_secs(30),
            ..BreakerConfig::default()
        })
        .attempt_timeout(Duration::from_secs(5))
        .usage_sink(Arc::new(usage.clone()))
        .tenant_policy(
            acme.clone(),
            TenantPolicy::default().with_budget(Budget::new(0.01, BudgetPeriod::Monthly)),
        )
        .build()?;

    let ask = |tenant: &TenantId| {
        let ctx = RequestContext::system(tenant.clone()).with_timeout(Duration::from_secs(10));
        let router = router.clone();
        async move {
            let req = ChatRequest::new("gpt-4o", vec![Message::user("Summarise our Q3 report.")])
                .with_max_tokens(256);
            match router.chat(&ctx, req).await {
                Ok(resp) => format!(
                    "{} (cost ${:.5})",
                    resp.text(),
                    resp.cost.map(|c| c.total_usd()).unwrap_or_default()
                ),
                Err(e) => format!("{} error: {e}", e.code()),
            }
        }
    };
    for i in 1..=5 {
        println!("acme   request {i}: {}", ask(&acme).await);
    }
    println!("-- gpt-secondary goes down --");
    secondary.down.store(true, Ordering::SeqCst);
    let globex = TenantId::new("globex")?;
    for i in 1..=5 {
        println!("globex request {i}: {}", ask(&globex).await);
    }

    println!(
        "\nupstream calls: primary {}, secondary {}, mini {} (each open breaker stopped calls after 3 failures)",
        primary.calls.load(Ordering::SeqCst),
        secondary.calls.load(Ordering::SeqCst),
        cheap.calls.load(Ordering::SeqCst)
    );
    println!(
        "recorded spend for acme: ${:.5} of a $0.01 budget, {} usage records in all",
        wattos_core::state::nanos_to_usd(usage.total_cost_nanos(&acme)),
        usage.records().len()
    );
    println!(
        "health:\n{}",
        serde_json::to_string_pretty(&router.health()).map_err(Error::from)?
    );
    Ok(())
}
