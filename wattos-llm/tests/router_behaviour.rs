//! Routing behaviour: strategies, context-window fallback, streaming rules, allow-lists, nesting,
//! bulkheads, usage records, the response cache and the embedding router.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "router_support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use support::*;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::{ChatModel, ChatRequest, Message};
use wattos_core::tenancy::{Tenant, TenantConfig, TenantStore};
use wattos_core::{ErrorKind, TenantId};
use wattos_llm::router::{
    BudgetPeriod, Deployment, EmbeddingRouter, ModelGroup, Price, Router, Strategy,
    TenantConfigPolicies, TenantPolicy, TokenBudget, tenant_token_budget_key,
};
use wattos_llm::state::MemoryState;
use wattos_llm::usage::{MemoryUsageSink, UsageOutcome};

fn three(strategy: Strategy) -> (Router, Vec<Arc<FakeChat>>) {
    let models: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| FakeChat::healthy(n))
        .collect();
    let router = Router::builder()
        .deployment(
            dep("a", &models[0])
                .weight(1)
                .price(Price::per_mtok(5.0, 15.0)),
        )
        .deployment(
            dep("b", &models[1])
                .weight(3)
                .price(Price::per_mtok(0.5, 1.5)),
        )
        .deployment(
            dep("c", &models[2])
                .weight(0)
                .price(Price::per_mtok(1.0, 2.0)),
        )
        .group(
            ModelGroup::new("m")
                .deployments(["a", "b", "c"])
                .strategy(strategy),
        )
        .build()
        .unwrap();
    (router, models)
}

async fn run(router: &Router, n: usize) {
    for _ in 0..n {
        router.chat(&ctx("t"), req("m")).await.unwrap();
    }
}

#[tokio::test]
async fn strategies_spread_as_documented() {
    let (r, m) = three(Strategy::RoundRobin);
    run(&r, 30).await;
    assert_eq!((m[0].calls(), m[1].calls(), m[2].calls()), (10, 10, 10));

    let (r, m) = three(Strategy::WeightedRandom);
    run(&r, 400).await;
    assert_eq!(
        m[2].calls(),
        0,
        "weight 0 is never picked while others are eligible"
    );
    assert!(
        m[1].calls() > 2 * m[0].calls(),
        "{} vs {}",
        m[1].calls(),
        m[0].calls()
    );

    let (r, m) = three(Strategy::LowestCost);
    run(&r, 5).await;
    assert_eq!(m[1].calls(), 5);

    let (r, m) = three(Strategy::Priority);
    run(&r, 5).await;
    assert_eq!(m[0].calls(), 5);

    let (r, m) = three(Strategy::LowestLatency);
    run(&r, 50).await;
    assert!(
        m.iter().all(|x| x.calls() >= 1),
        "every deployment is measured once"
    );
}

// Real time, not a paused clock: the router measures latency on the wall clock, and under a paused
// clock the slow deployment's sleep takes no wall time, so which one measured faster was noise
// (it failed once under a loaded CI run). The slow calls cost about 0.4 s of wall time.
#[tokio::test]
async fn lowest_latency_prefers_the_fast_deployment_and_least_in_flight_spreads() {
    let fast = FakeChat::healthy("fast");
    let slow = FakeChat::new("slow", Fault::SlowDrip(Duration::from_millis(100)));
    let r = Router::builder()
        .deployment(dep("fast", &fast))
        .deployment(dep("slow", &slow))
        .group(
            ModelGroup::new("m")
                .deployments(["slow", "fast"])
                .strategy(Strategy::LowestLatency),
        )
        .build()
        .unwrap();
    run(&r, 40).await;
    assert_eq!(slow.calls(), 1, "measured once, then avoided");

    let x = FakeChat::new("x", Fault::SlowDrip(Duration::from_millis(100)));
    let y = FakeChat::new("y", Fault::SlowDrip(Duration::from_millis(100)));
    let r = Router::builder()
        .deployment(dep("x", &x))
        .deployment(dep("y", &y))
        .group(
            ModelGroup::new("m")
                .deployments(["x", "y"])
                .strategy(Strategy::LeastInFlight),
        )
        .build()
        .unwrap();
    let calls = (0..10).map(|_| {
        let r = r.clone();
        async move { r.chat(&ctx("t"), req("m")).await.unwrap() }
    });
    futures::future::join_all(calls).await;
    assert_eq!((x.calls(), y.calls()), (5, 5));
}

#[tokio::test]
async fn context_window_fallback_before_and_after_the_call() {
    let small = FakeChat::healthy("small");
    let large = FakeChat::healthy("large");
    let r = Router::builder()
        .deployment(dep("small", &small).context_window(200))
        .deployment(dep("large", &large).context_window(100_000))
        .group(
            ModelGroup::new("small")
                .deployment("small")
                .context_fallbacks(["large"]),
        )
        .group(ModelGroup::new("large").deployment("large"))
        .build()
        .unwrap();
    // Estimated too big for `small`: it is skipped without a call.
    let big = ChatRequest::new("small", vec![Message::user("x".repeat(4000))]).with_max_tokens(10);
    assert_eq!(
        r.chat(&ctx("t"), big).await.unwrap().text(),
        "hello from large"
    );
    assert_eq!(small.calls(), 0);
    // The upstream itself says the prompt is too long: go to the larger group.
    small.script([Fault::ContextTooLong]);
    assert_eq!(
        r.chat(&ctx("t"), req("small")).await.unwrap().text(),
        "hello from large"
    );
    assert_eq!((small.calls(), large.calls()), (1, 2));
    // Without a context fallback the error is returned as is, with no retry.
    let lone = FakeChat::new("lone", Fault::ContextTooLong);
    let r = Router::builder()
        .deployment(dep("lone", &lone))
        .group(ModelGroup::new("m").deployment("lone"))
        .build()
        .unwrap();
    let err = r.chat(&ctx("t"), req("m")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextLengthExceeded);
    assert_eq!(lone.calls(), 1);
}

#[tokio::test]
async fn streams_never_fall_back_after_content() {
    let a = FakeChat::new("a", Fault::BreakAfterText);
    let b = FakeChat::healthy("b");
    let sink = MemoryUsageSink::default();
    let r = Router::builder()
        .usage_sink(Arc::new(sink.clone()))
        .deployment(dep("a", &a))
        .deployment(dep("b", &b))
        .group(ModelGroup::new("m").deployments(["a", "b"]))
        .build()
        .unwrap();
    let (text, err) = collect(r.chat_stream(&ctx("t"), req("m")).await.unwrap()).await;
    assert_eq!(text, "hello ");
    assert_eq!(err.unwrap().kind(), ErrorKind::Upstream);
    assert_eq!(b.calls(), 0);
    let recs = sink.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(
        recs[0].outcome,
        UsageOutcome::Error("upstream_error".into())
    );
    assert!(recs[0].streamed);
}

#[tokio::test]
async fn dropped_stream_is_accounted_as_cancelled() {
    let a = FakeChat::healthy("a");
    let sink = MemoryUsageSink::default();
    let r = Router::builder()
        .usage_sink(Arc::new(sink.clone()))
        .deployment(dep("a", &a))
        .group(ModelGroup::new("m").deployment("a"))
        .build()
        .unwrap();
    let mut s = r.chat_stream(&ctx("t"), req("m")).await.unwrap();
    s.next().await.unwrap().unwrap();
    drop(s);
    for _ in 0..100 {
        if !sink.records().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(sink.records()[0].outcome, UsageOutcome::Cancelled);
    assert_eq!(r.health().deployments[0].in_flight, 0);
}

#[tokio::test]
async fn tenant_allow_list_and_unknown_models() {
    let a = FakeChat::healthy("a");
    let b = FakeChat::healthy("b");
    let r = Router::builder()
        .deployment(dep("a", &a))
        .deployment(dep("b", &b))
        .group(ModelGroup::new("cheap").alias("fast").deployment("a"))
        .group(ModelGroup::new("premium").deployment("b"))
        .tenant_policy(
            TenantId::new("basic").unwrap(),
            TenantPolicy::default().allow_models(["cheap"]),
        )
        .build()
        .unwrap();
    assert_eq!(
        r.chat(&ctx("basic"), req("fast")).await.unwrap().text(),
        "hello from a"
    );
    let err = r.chat(&ctx("basic"), req("premium")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    assert_eq!(
        r.chat(&ctx("gold"), req("premium")).await.unwrap().text(),
        "hello from b"
    );
    assert_eq!(
        r.chat(&ctx("gold"), req("nope")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(b.calls(), 1);
}

/// A tenant registry in a map (the server's is SQL): enough for the policy source.
#[derive(Default)]
struct Tenants(std::sync::Mutex<std::collections::HashMap<String, (bool, TenantConfig)>>);

impl Tenants {
    fn set(&self, id: &str, disabled: bool, allowed: &[&str]) {
        let cfg = TenantConfig {
            allowed_models: allowed.iter().map(|s| (*s).to_owned()).collect(),
            ..TenantConfig::default()
        };
        self.0.lock().unwrap().insert(id.into(), (disabled, cfg));
    }
}

#[async_trait::async_trait]
impl TenantStore for Tenants {
    async fn create_tenant(&self, _: &Tenant) -> wattos_core::Result<()> {
        unreachable!("not used by the policy source")
    }
    async fn get_tenant(&self, id: &TenantId) -> wattos_core::Result<Option<Tenant>> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(id.as_str())
            .map(|(d, _)| Tenant {
                id: id.clone(),
                name: id.to_string(),
                disabled: *d,
                created_at_ms: 0,
            }))
    }
    async fn list_tenants(&self, _: Option<&TenantId>, _: u32) -> wattos_core::Result<Vec<Tenant>> {
        unreachable!("not used by the policy source")
    }
    async fn set_disabled(&self, _: &TenantId, _: bool) -> wattos_core::Result<()> {
        unreachable!("not used by the policy source")
    }
    async fn get_config(&self, id: &TenantId) -> wattos_core::Result<TenantConfig> {
        Ok(self.0.lock().unwrap()[id.as_str()].1.clone())
    }
    async fn put_config(&self, _: &TenantId, _: &TenantConfig) -> wattos_core::Result<()> {
        unreachable!("not used by the policy source")
    }
}

#[tokio::test]
async fn the_policy_source_is_asked_on_every_call_for_chat_and_embeddings() {
    let tenants = Arc::new(Tenants::default());
    tenants.set("basic", false, &["cheap"]);
    tenants.set("gone", true, &[]);
    let policies = Arc::new(TenantConfigPolicies::new(
        tenants.clone(),
        Duration::from_secs(3600),
    ));
    let a = FakeChat::healthy("a");
    let b = FakeChat::healthy("b");
    let r = Router::builder()
        .deployment(dep("a", &a))
        .deployment(dep("b", &b))
        .group(ModelGroup::new("cheap").deployment("a"))
        .group(ModelGroup::new("premium").deployment("b"))
        .policy_source(policies.clone())
        // A policy set on the router does not override the source's answer for a known tenant.
        .tenant_policy(TenantId::new("basic").unwrap(), TenantPolicy::default())
        .build()
        .unwrap();
    // No one pushed anything: the first call of the tenant is already held to its allow-list.
    assert_eq!(
        r.chat(&ctx("basic"), req("premium"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Forbidden
    );
    r.chat(&ctx("basic"), req("cheap")).await.unwrap();
    // A tenant the registry does not know gets the router's own (default) policy.
    r.chat(&ctx("internal"), req("premium")).await.unwrap();
    // A disabled tenant is refused whatever it asks for.
    let err = r.chat(&ctx("gone"), req("cheap")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    assert!(err.message().contains("disabled"), "{err}");
    // A changed configuration applies once the cached policy is forgotten.
    tenants.set("basic", false, &["premium"]);
    assert_eq!(
        r.chat(&ctx("basic"), req("premium"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Forbidden,
        "cached for the ttl"
    );
    policies.invalidate(&TenantId::new("basic").unwrap());
    r.chat(&ctx("basic"), req("premium")).await.unwrap();
    assert_eq!(
        r.chat(&ctx("basic"), req("cheap"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Forbidden
    );
    assert_eq!((a.calls(), b.calls()), (1, 2));

    // The embedding router asks the same source.
    tenants.set("basic", false, &["other"]);
    policies.invalidate(&TenantId::new("basic").unwrap());
    let e = FakeEmbed::new("e", Fault::Ok);
    let er = EmbeddingRouter::builder()
        .deployment(Deployment::from_arc("e", e as Arc<dyn EmbeddingModel>))
        .group(ModelGroup::new("emb").deployment("e"))
        .policy_source(policies)
        .build()
        .unwrap();
    let err = er
        .embed(&ctx("basic"), &["x".to_owned()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    er.embed(&ctx("internal"), &["x".to_owned()]).await.unwrap();
}

#[tokio::test]
async fn a_request_without_a_model_goes_to_the_tenants_default_then_the_routers() {
    let tenants = Arc::new(Tenants::default());
    tenants.set("basic", false, &["cheap", "premium"]);
    tenants
        .0
        .lock()
        .unwrap()
        .get_mut("basic")
        .unwrap()
        .1
        .default_model = Some("premium".into());
    tenants.set("plain", false, &[]);
    // A default the router does not serve falls through to the router's default.
    tenants.set("elsewhere", false, &[]);
    tenants
        .0
        .lock()
        .unwrap()
        .get_mut("elsewhere")
        .unwrap()
        .1
        .default_model = Some("served-by-another-router".into());
    tenants.set("narrow", false, &["premium"]);
    let a = FakeChat::healthy("a");
    let b = FakeChat::healthy("b");
    let build = |default: Option<&str>| {
        let mut builder = Router::builder()
            .deployment(dep("a", &a))
            .deployment(dep("b", &b))
            .group(ModelGroup::new("cheap").deployment("a"))
            .group(ModelGroup::new("premium").alias("best").deployment("b"))
            .policy_source(Arc::new(TenantConfigPolicies::new(
                tenants.clone(),
                Duration::from_secs(3600),
            )));
        if let Some(d) = default {
            builder = builder.default_model(d);
        }
        builder.build()
    };
    let r = build(None).unwrap();
    assert_eq!(
        r.chat(&ctx("basic"), req("")).await.unwrap().text(),
        "hello from b"
    );
    assert_eq!(r.resolve_model(&ctx("basic"), "").await.unwrap(), "premium");
    // Without a tenant default: the router's default, here the first group.
    assert_eq!(
        r.chat(&ctx("plain"), req("")).await.unwrap().text(),
        "hello from a"
    );
    assert_eq!(
        r.resolve_model(&ctx("elsewhere"), "").await.unwrap(),
        "cheap"
    );
    // An explicit model always wins over the default; aliases resolve to their group.
    assert_eq!(
        r.chat(&ctx("basic"), req("cheap")).await.unwrap().text(),
        "hello from a"
    );
    assert_eq!(
        r.resolve_model(&ctx("plain"), "best").await.unwrap(),
        "premium"
    );
    // The resolved default is held to the allow-list like a named model.
    let err = r.resolve_model(&ctx("narrow"), "").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    assert_eq!(
        r.chat(&ctx("narrow"), req("")).await.unwrap_err().kind(),
        ErrorKind::Forbidden
    );
    assert_eq!(
        r.resolve_model(&ctx("plain"), "nope")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // The router's default can be named (by name or alias), and must exist.
    let r = build(Some("best")).unwrap();
    assert_eq!(
        r.chat(&ctx("plain"), req("")).await.unwrap().text(),
        "hello from b"
    );
    let err = build(Some("missing")).unwrap_err();
    assert!(err.message().contains("default model 'missing'"), "{err}");
    assert_eq!((a.calls(), b.calls()), (2, 2));
}

#[tokio::test]
async fn a_token_budget_reserves_the_estimate_settles_the_actual_count_and_refuses_beyond() {
    let state = Arc::new(MemoryState::new());
    let ok = FakeChat::healthy("ok");
    let broken = FakeChat::new("broken", Fault::ServerError);
    let r = Router::builder()
        .deployment(dep("ok", &ok))
        .deployment(dep("broken", &broken))
        .group(ModelGroup::new("m").deployment("ok"))
        .group(ModelGroup::new("down").deployment("broken"))
        .state(state.clone())
        .tenant_policy(
            TenantId::new("metered").unwrap(),
            TenantPolicy::default().with_token_budget(TokenBudget::new(100, BudgetPeriod::Monthly)),
        )
        .build()
        .unwrap();
    let key = tenant_token_budget_key(&TenantId::new("metered").unwrap(), BudgetPeriod::Monthly);
    use wattos_core::state::BudgetStore;
    // A failed call uses no tokens: its reservation is given back.
    let err = r.chat(&ctx("metered"), req("down")).await.unwrap_err();
    assert_ne!(err.kind(), ErrorKind::BudgetExceeded, "{err}");
    assert_eq!(state.committed(&key).await.unwrap(), 0);
    // Each call reserves its estimate (about 30 tokens here) and settles to the 15 it used.
    let mut answered = 0;
    let refusal = loop {
        match r.chat(&ctx("metered"), req("m")).await {
            Ok(_) => answered += 1,
            Err(e) => break e,
        }
        assert!(answered < 100, "the budget never refused");
    };
    assert_eq!(refusal.kind(), ErrorKind::BudgetExceeded, "{refusal}");
    assert!(
        refusal
            .message()
            .contains("monthly token budget of 100 tokens"),
        "{refusal}"
    );
    let used = state.committed(&key).await.unwrap();
    assert_eq!(used, 15 * answered);
    // Admitted while the used tokens plus the estimate fitted: 75 + 30 > 100 refuses the sixth.
    assert_eq!(answered, 5);
    assert_eq!(ok.calls(), 5, "the refused call reached no deployment");
    // Other tenants are not metered by it.
    r.chat(&ctx("other"), req("m")).await.unwrap();
    assert_eq!(state.committed(&key).await.unwrap(), used);
}

#[tokio::test]
async fn a_busy_deployment_that_sheds_load_never_opens_its_breaker() {
    let busy = FakeChat::new("local", Fault::Overloaded(Duration::from_secs(7)));
    let r = Router::builder()
        .deployment(dep("local", &busy))
        .group(ModelGroup::new("m").deployment("local"))
        .build()
        .unwrap();
    // Far more refusals than the breaker's failure threshold.
    for _ in 0..20 {
        let err = r.chat(&ctx("t"), req("m")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.is_load_shed(), "{err}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    }
    assert_eq!(
        r.health().deployments[0].breaker,
        wattos_core::resilience::BreakerState::Closed
    );
    // Once it has room again, it answers at once.
    busy.set(Fault::Ok);
    r.chat(&ctx("t"), req("m")).await.unwrap();
}

#[tokio::test]
async fn routers_nest() {
    let a = FakeChat::new("a", Fault::ServerError);
    let b = FakeChat::healthy("b");
    let inner = Router::builder()
        .name("inner")
        .deployment(dep("a", &a))
        .group(ModelGroup::new("inner-model").deployment("a"))
        .build()
        .unwrap();
    let inner2 = Router::builder()
        .name("inner2")
        .deployment(dep("b", &b))
        .group(ModelGroup::new("inner-model").deployment("b"))
        .build()
        .unwrap();
    let outer = Router::builder()
        .deployment(Deployment::chat("region-1", inner).upstream_model("inner-model"))
        .deployment(Deployment::chat("region-2", inner2).upstream_model("inner-model"))
        .group(ModelGroup::new("global").deployments(["region-1", "region-2"]))
        .build()
        .unwrap();
    let resp = outer.chat(&ctx("t"), req("global")).await.unwrap();
    assert_eq!(resp.text(), "hello from b");
    assert_eq!(resp.model, "inner-model");
}

#[tokio::test]
async fn bulkhead_skips_a_full_deployment() {
    let a = FakeChat::new("a", Fault::SlowDrip(Duration::from_millis(50)));
    let b = FakeChat::healthy("b");
    let r = Router::builder()
        .deployment(dep("a", &a).max_concurrent(1))
        .deployment(dep("b", &b))
        .group(ModelGroup::new("m").deployments(["a", "b"]))
        .build()
        .unwrap();
    let c = ctx("t");
    let (x, y) = tokio::join!(r.chat(&c, req("m")), r.chat(&c, req("m")));
    let mut texts = vec![x.unwrap().text().to_owned(), y.unwrap().text().to_owned()];
    texts.sort();
    assert_eq!(texts, vec!["hello from a", "hello from b"]);
}

#[tokio::test]
async fn usage_records_every_attempt_with_cost() {
    let a = FakeChat::new("a", Fault::ServerError);
    let b = FakeChat::healthy("b");
    let sink = MemoryUsageSink::default();
    let r = Router::builder()
        .usage_sink(Arc::new(sink.clone()))
        .deployment(dep("a", &a))
        .deployment(
            dep("b", &b)
                .upstream_model("vendor-b")
                .price(Price::per_mtok(1000.0, 2000.0)),
        )
        .group(ModelGroup::new("m").deployments(["a", "b"]))
        .build()
        .unwrap();
    let ctx = ctx("acme");
    let resp = r.chat(&ctx, req("m")).await.unwrap();
    // 10 input tokens at $1000/M + 5 output at $2000/M = 0.02 USD
    let cost = resp.cost.unwrap().total_usd();
    assert!((cost - 0.02).abs() < 1e-12, "{cost}");
    let recs = sink.records();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].deployment, "a");
    assert_eq!(
        recs[0].outcome,
        UsageOutcome::Error("upstream_error".into())
    );
    assert_eq!(recs[0].cost_nanos, 0);
    assert_eq!(recs[1].deployment, "b");
    assert_eq!(recs[1].upstream_model, "vendor-b");
    assert_eq!(recs[1].attempt, 2);
    assert_eq!(recs[1].cost_nanos, 20_000_000);
    assert_eq!(recs[1].usage.total_tokens(), 15);
    assert_eq!(recs[1].request_id, ctx.request_id().to_string());
    assert_eq!(sink.total_cost_nanos(ctx.tenant()), 20_000_000);
}

#[tokio::test]
async fn response_cache_is_exact_and_tenant_scoped() {
    let a = FakeChat::healthy("a");
    let r = Router::builder()
        .response_cache(Arc::new(MemoryState::new()), Duration::from_secs(60))
        .deployment(dep("a", &a))
        .group(ModelGroup::new("m").alias("alias").deployment("a"))
        .build()
        .unwrap();
    r.chat(&ctx("t1"), req("m")).await.unwrap();
    r.chat(&ctx("t1"), req("alias")).await.unwrap(); // same group, same request: hit
    assert_eq!(a.calls(), 1);
    let (text, _) = collect(r.chat_stream(&ctx("t1"), req("m")).await.unwrap()).await;
    assert_eq!(text, "hello from a");
    assert_eq!(a.calls(), 1, "streams replay cached answers");
    r.chat(&ctx("t2"), req("m")).await.unwrap(); // other tenant: miss
    assert_eq!(a.calls(), 2);
    r.chat(&ctx("t1"), req("m").with_max_tokens(21))
        .await
        .unwrap(); // different request
    assert_eq!(a.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn embedding_router_falls_back() {
    let a = FakeEmbed::new("a", Fault::Hang);
    let b = FakeEmbed::new("b", Fault::Ok);
    let r = EmbeddingRouter::builder()
        .attempt_timeout(Duration::from_secs(1))
        .deployment(Deployment::from_arc(
            "a",
            a.clone() as Arc<dyn EmbeddingModel>,
        ))
        .deployment(Deployment::from_arc(
            "b",
            b.clone() as Arc<dyn EmbeddingModel>,
        ))
        .group(ModelGroup::new("embed").deployments(["a", "b"]))
        .build()
        .unwrap();
    assert_eq!(r.dimensions(), 3);
    let v = r.embed_one(&ctx("t"), "hello").await.unwrap();
    assert_eq!(v, vec![1.0, 0.0, 0.0]);
    assert_eq!(
        (
            a.calls.load(std::sync::atomic::Ordering::SeqCst),
            b.calls.load(std::sync::atomic::Ordering::SeqCst)
        ),
        (1, 1)
    );
}

#[test]
fn invalid_configurations_are_rejected() {
    let a = FakeChat::healthy("a");
    let cases = [
        Router::builder().deployment(dep("a", &a)).build(),
        Router::builder()
            .deployment(dep("a", &a))
            .group(ModelGroup::new("m").deployment("missing"))
            .build(),
        Router::builder()
            .deployment(dep("a", &a))
            .deployment(dep("a", &a))
            .group(ModelGroup::new("m").deployment("a"))
            .build(),
        Router::builder()
            .deployment(dep("a", &a))
            .group(ModelGroup::new("m").deployment("a").fallbacks(["nope"]))
            .build(),
        Router::builder()
            .deployment(dep("a", &a))
            .group(ModelGroup::new("m").deployment("a"))
            .group(ModelGroup::new("n").alias("m").deployment("a"))
            .build(),
    ];
    for c in cases {
        assert_eq!(c.unwrap_err().kind(), ErrorKind::InvalidInput);
    }
}
