//! Rate limits (tenant, key, deployment) and budgets (tenant, key, model) on the in-memory backend.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "router_support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use wattos_core::llm::ChatModel;
use wattos_core::state::{BudgetStore, StateKey, WindowStore};
use wattos_core::{ErrorKind, Principal, RequestContext, TenantId};
use wattos_llm::router::{
    Budget, BudgetPeriod, ModelGroup, Price, RateLimits, Router, TenantPolicy, tenant_budget_key,
};
use wattos_llm::state::MemoryState;
use wattos_llm::usage::MemoryUsageSink;

fn user(tenant: &str, key: &str) -> RequestContext {
    RequestContext::new(
        TenantId::new(tenant).unwrap(),
        Principal::user(key, ["member"]),
    )
}

#[tokio::test]
async fn tenant_and_key_rpm() {
    let a = FakeChat::healthy("a");
    let r = Router::builder()
        .deployment(dep("a", &a))
        .group(ModelGroup::new("m").deployment("a"))
        .default_policy(
            TenantPolicy::default()
                .with_limits(RateLimits {
                    rpm: Some(5),
                    tpm: None,
                })
                .with_key_limits(RateLimits {
                    rpm: Some(3),
                    tpm: None,
                }),
        )
        .build()
        .unwrap();
    for _ in 0..3 {
        r.chat(&user("acme", "k1"), req("m")).await.unwrap();
    }
    let err = r.chat(&user("acme", "k1"), req("m")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert!(err.retry_after().unwrap() > Duration::from_secs(50));
    assert!(!err.is_dependency_failure());
    // Another key of the same tenant has 2 left of the tenant's 5.
    r.chat(&user("acme", "k2"), req("m")).await.unwrap();
    r.chat(&user("acme", "k2"), req("m")).await.unwrap();
    assert_eq!(
        r.chat(&user("acme", "k2"), req("m"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::RateLimited
    );
    // Other tenants are unaffected.
    r.chat(&user("other", "k1"), req("m")).await.unwrap();
    assert_eq!(a.calls(), 6);
}

#[tokio::test]
async fn tpm_counts_actual_tokens() {
    let a = FakeChat::healthy("a");
    let state = Arc::new(MemoryState::new());
    let r = Router::builder()
        .state(state.clone())
        .deployment(dep("a", &a))
        .group(ModelGroup::new("m").deployment("a"))
        .default_policy(TenantPolicy::default().with_limits(RateLimits {
            rpm: None,
            tpm: Some(100),
        }))
        .build()
        .unwrap();
    r.chat(&ctx("t"), req("m")).await.unwrap();
    // The estimate (about 30) was replaced by the actual 15 tokens.
    let used = state
        .current(
            &StateKey::tenant(&TenantId::new("t").unwrap(), "tpm", &[]),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(used, 15);
    // A request estimated beyond the limit is rejected.
    let big = req("m").with_max_tokens(500);
    assert_eq!(
        r.chat(&ctx("t"), big).await.unwrap_err().kind(),
        ErrorKind::RateLimited
    );
}

#[tokio::test]
async fn deployment_rpm_moves_traffic_to_the_next_deployment() {
    let a = FakeChat::healthy("a");
    let b = FakeChat::healthy("b");
    let r = Router::builder()
        .deployment(dep("a", &a).rpm(2))
        .deployment(dep("b", &b).rpm(1))
        .group(ModelGroup::new("m").deployments(["a", "b"]))
        .build()
        .unwrap();
    for _ in 0..3 {
        r.chat(&ctx("t"), req("m")).await.unwrap();
    }
    assert_eq!((a.calls(), b.calls()), (2, 1));
    let err = r.chat(&ctx("t"), req("m")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert!(err.retry_after().is_some());
    assert_eq!(a.calls() + b.calls(), 3);
}

#[tokio::test]
async fn budgets_reserve_then_settle() {
    let a = FakeChat::healthy("a");
    let state = Arc::new(MemoryState::new());
    let tenant = TenantId::new("t").unwrap();
    let r = Router::builder()
        .state(state.clone())
        // estimate: ~10 input + 20 output tokens = $0.03; actual 15 tokens = $0.015
        .deployment(dep("a", &a).price(Price::per_mtok(1000.0, 1000.0)))
        .group(ModelGroup::new("m").deployment("a"))
        .default_policy(
            TenantPolicy::default().with_budget(Budget::new(0.05, BudgetPeriod::Monthly)),
        )
        .build()
        .unwrap();
    r.chat(&ctx("t"), req("m")).await.unwrap();
    let key = tenant_budget_key(&tenant, BudgetPeriod::Monthly);
    assert_eq!(state.committed(&key).await.unwrap(), 15_000_000);
    r.chat(&ctx("t"), req("m")).await.unwrap(); // 0.015 + 0.03 <= 0.05
    let err = r.chat(&ctx("t"), req("m")).await.unwrap_err(); // 0.03 + 0.03 > 0.05
    assert_eq!(err.kind(), ErrorKind::BudgetExceeded);
    assert_eq!(state.committed(&key).await.unwrap(), 30_000_000);
    assert_eq!(a.calls(), 2);
}

#[tokio::test]
async fn key_and_model_budgets() {
    let a = FakeChat::healthy("a");
    let r = Router::builder()
        .deployment(dep("a", &a).price(Price::per_mtok(1000.0, 1000.0)))
        .group(ModelGroup::new("m").deployment("a"))
        .group(ModelGroup::new("n").deployment("a"))
        .default_policy(
            TenantPolicy::default()
                .with_key_budget(Budget::new(0.04, BudgetPeriod::Daily))
                .with_model_budget("n", Budget::new(0.0, BudgetPeriod::Total)),
        )
        .build()
        .unwrap();
    assert_eq!(
        r.chat(&user("t", "k1"), req("n")).await.unwrap_err().kind(),
        ErrorKind::BudgetExceeded
    );
    r.chat(&user("t", "k1"), req("m")).await.unwrap();
    assert_eq!(
        r.chat(&user("t", "k1"), req("m")).await.unwrap_err().kind(),
        ErrorKind::BudgetExceeded
    );
    r.chat(&user("t", "k2"), req("m")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_overspend_in_memory() {
    let a = FakeChat::new("a", Fault::SlowDrip(Duration::from_millis(2)));
    let state = Arc::new(MemoryState::new());
    let sink = MemoryUsageSink::default();
    let budget_usd = 1.0;
    let r = Router::builder()
        .state(state.clone())
        .usage_sink(Arc::new(sink.clone()))
        .deployment(dep("a", &a).price(Price::per_mtok(1000.0, 1000.0)))
        .group(ModelGroup::new("m").deployment("a"))
        .default_policy(
            TenantPolicy::default().with_budget(Budget::new(budget_usd, BudgetPeriod::Total)),
        )
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.chat(&ctx("t"), req("m")).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::BudgetExceeded),
        }
    }
    let tenant = TenantId::new("t").unwrap();
    let spent = sink.total_cost_nanos(&tenant);
    let committed = state
        .committed(&tenant_budget_key(&tenant, BudgetPeriod::Total))
        .await
        .unwrap();
    assert_eq!(
        committed, spent,
        "after settling, committed spend is exactly the recorded spend"
    );
    assert!(spent <= 1_000_000_000, "overspent: {spent}");
    assert!(ok >= 33, "only {ok} admitted");
}
