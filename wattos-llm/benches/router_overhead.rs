//! Routing overhead per call with an in-process mock provider: the router's time is the difference
//! between `direct` (calling the mock) and each `router/*` case.
//!
//! `cargo bench -p wattos-llm --bench router_overhead`
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use wattos_core::llm::{ChatModel, ChatRequest, ChatResponse, FinishReason, Message, Usage};
use wattos_core::{RequestContext, Result, TenantId};
use wattos_llm::router::{
    Budget, BudgetPeriod, Deployment, ModelGroup, Price, RateLimits, Router, Strategy, TenantPolicy,
};

struct Mock(ChatResponse);

#[async_trait]
impl ChatModel for Mock {
    fn name(&self) -> &str {
        "mock"
    }
    async fn chat(&self, _ctx: &RequestContext, _req: ChatRequest) -> Result<ChatResponse> {
        Ok(self.0.clone())
    }
}

fn mock() -> Arc<dyn ChatModel> {
    Arc::new(Mock(ChatResponse {
        id: "r".into(),
        model: "m".into(),
        content: Some("Hello! How can I help you today?".into()),
        tool_calls: vec![],
        finish_reason: FinishReason::Stop,
        usage: Usage {
            input_tokens: 20,
            output_tokens: 9,
            cached_input_tokens: 0,
        },
        cost: None,
        provider_fields: Default::default(),
    }))
}

fn router(strategy: Strategy, deployments: usize, policy: TenantPolicy) -> Router {
    let mut b = Router::builder();
    let mut ids = Vec::new();
    for i in 0..deployments {
        let id = format!("d{i}");
        b = b.deployment(
            Deployment::from_arc(id.clone(), mock())
                .upstream_model("vendor-model")
                .price(Price::per_mtok(0.15, 0.6)),
        );
        ids.push(id);
    }
    b.group(ModelGroup::new("m").deployments(ids).strategy(strategy))
        .default_policy(policy)
        .build()
        .expect("valid router")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ctx = RequestContext::system(TenantId::new("bench").expect("tenant"));
    let req = ChatRequest::new(
        "m",
        vec![
            Message::system("You are a helpful assistant."),
            Message::user("Say hello in one short sentence."),
        ],
    )
    .with_max_tokens(64);
    let limited = TenantPolicy::default()
        .with_limits(RateLimits {
            rpm: Some(u64::MAX / 4),
            tpm: Some(u64::MAX / 4),
        })
        .with_key_limits(RateLimits {
            rpm: Some(u64::MAX / 4),
            tpm: None,
        })
        .with_budget(Budget::new(1e9, BudgetPeriod::Monthly));

    let direct = mock();
    let mut g = c.benchmark_group("router_overhead");
    g.bench_function("direct", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(direct.chat(&ctx, req.clone()).await) })
    });
    let cases = [
        (
            "router/priority_1",
            router(Strategy::Priority, 1, TenantPolicy::default()),
        ),
        (
            "router/lowest_latency_4",
            router(Strategy::LowestLatency, 4, TenantPolicy::default()),
        ),
        (
            "router/weighted_4",
            router(Strategy::WeightedRandom, 4, TenantPolicy::default()),
        ),
        (
            "router/limits_and_budget_1",
            router(Strategy::Priority, 1, limited),
        ),
    ];
    for (name, r) in &cases {
        g.bench_function(*name, |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(r.chat(&ctx, req.clone()).await) })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
