//! Redis state: atomic windows and budgets shared by several router instances (needs the machine's
//! Redis at 127.0.0.1:6379, or `REDIS_TEST_URL`). Every test uses its own key prefix.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "router_support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use wattos_core::llm::ChatModel;
use wattos_core::state::{
    Admission, BudgetLine, BudgetStore, CacheStore, Reservation, StateKey, WindowCharge,
    WindowStore,
};
use wattos_core::{ErrorKind, TenantId};
use wattos_llm::router::{
    Budget, BudgetPeriod, ModelGroup, Price, RateLimits, Router, TenantPolicy, tenant_budget_key,
};
use wattos_llm::state::RedisState;
use wattos_llm::usage::MemoryUsageSink;

fn url() -> String {
    std::env::var("REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn state() -> Arc<RedisState> {
    let prefix = format!("wattos-test:{}:", uuid::Uuid::new_v4().simple());
    Arc::new(RedisState::connect(&url(), prefix).await.unwrap())
}

#[tokio::test]
async fn windows_budgets_and_cache_are_atomic() {
    let s = state().await;
    let charge = |k: &str, limit| WindowCharge {
        key: StateKey::shared("w", &[k]),
        limit,
        window: Duration::from_secs(60),
        amount: 1,
    };
    assert_eq!(
        s.try_acquire(&[charge("a", 1)]).await.unwrap(),
        Admission::Admitted
    );
    let r = s
        .try_acquire(&[charge("b", 5), charge("a", 1)])
        .await
        .unwrap();
    assert!(
        matches!(r, Admission::Rejected { index: 1, retry_after } if retry_after > Duration::from_secs(55))
    );
    assert_eq!(
        s.current(&StateKey::shared("w", &["b"]), Duration::from_secs(60))
            .await
            .unwrap(),
        0
    );
    s.adjust(&StateKey::shared("w", &["a"]), Duration::from_secs(60), -1)
        .await
        .unwrap();
    assert_eq!(
        s.current(&StateKey::shared("w", &["a"]), Duration::from_secs(60))
            .await
            .unwrap(),
        0
    );

    let line = BudgetLine {
        key: StateKey::shared("b", &["x"]),
        limit_nanos: 10_000_000_000,
        ttl: Some(Duration::from_secs(60)),
    };
    assert_eq!(
        s.reserve(std::slice::from_ref(&line), 6_000_000_000)
            .await
            .unwrap(),
        Reservation::Reserved
    );
    assert!(matches!(
        s.reserve(std::slice::from_ref(&line), 6_000_000_000)
            .await
            .unwrap(),
        Reservation::Exceeded {
            index: 0,
            committed_nanos: 6_000_000_000
        }
    ));
    s.settle(std::slice::from_ref(&line.key), -1_500_000_000)
        .await
        .unwrap();
    assert_eq!(s.committed(&line.key).await.unwrap(), 4_500_000_000);

    let k = StateKey::shared("c", &["1"]);
    s.put(&k, b"v".to_vec(), Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(s.get(&k).await.unwrap().as_deref(), Some(&b"v"[..]));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.get(&k).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_routers_sharing_redis_admit_exactly_the_rpm() {
    let s = state().await;
    let build = |state: Arc<RedisState>, m: &Arc<FakeChat>| {
        Router::builder()
            .state(state)
            .deployment(dep("a", m))
            .group(ModelGroup::new("m").deployment("a"))
            .default_policy(TenantPolicy::default().with_limits(RateLimits {
                rpm: Some(10),
                tpm: None,
            }))
            .build()
            .unwrap()
    };
    let m1 = FakeChat::healthy("a");
    let m2 = FakeChat::healthy("a");
    // Two separate connections, as two processes would have.
    let s2 = Arc::new(
        RedisState::connect(&url(), s.prefix().to_owned())
            .await
            .unwrap(),
    );
    let r1 = build(s.clone(), &m1);
    let r2 = build(s2, &m2);
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let r = if i % 2 == 0 { r1.clone() } else { r2.clone() };
            tokio::spawn(async move { r.chat(&ctx("acme"), req("m")).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::RateLimited),
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(m1.calls() + m2.calls(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_overspend_a_redis_budget() {
    let s = state().await;
    let sink = MemoryUsageSink::default();
    let tenant = TenantId::new("acme").unwrap();
    let make = |m: &Arc<FakeChat>| {
        Router::builder()
            .state(s.clone())
            .usage_sink(Arc::new(sink.clone()))
            // estimate ~30 tokens = $0.03 per call, actual 15 tokens = $0.015
            .deployment(dep("a", m).price(Price::per_mtok(1000.0, 1000.0)))
            .group(ModelGroup::new("m").deployment("a"))
            .default_policy(
                TenantPolicy::default().with_budget(Budget::new(1.0, BudgetPeriod::Monthly)),
            )
            .build()
            .unwrap()
    };
    let m = FakeChat::new("a", Fault::SlowDrip(Duration::from_millis(2)));
    let routers = [make(&m), make(&m)];
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let r = routers[i % 2].clone();
            tokio::spawn(async move { r.chat(&ctx("acme"), req("m")).await })
        })
        .collect();
    let mut ok = 0u32;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::BudgetExceeded, "{e}"),
        }
    }
    let spent = sink.total_cost_nanos(&tenant);
    let committed = s
        .committed(&tenant_budget_key(&tenant, BudgetPeriod::Monthly))
        .await
        .unwrap();
    // One request's estimate error: the estimate ($0.03) minus the actual ($0.015), never exceeded.
    let one_estimate_error = 15_000_000;
    assert_eq!(
        committed, spent,
        "no drift between the counter and the records"
    );
    assert!(
        spent <= 1_000_000_000 + one_estimate_error,
        "overspent: {spent}"
    );
    assert!(spent <= 1_000_000_000);
    assert!(ok >= 33, "only {ok} admitted");
    assert_eq!(u64::from(ok) * 15_000_000, spent as u64);
}

#[tokio::test]
async fn response_cache_in_redis() {
    let s = state().await;
    let a = FakeChat::healthy("a");
    let r = Router::builder()
        .response_cache(s.clone(), Duration::from_secs(30))
        .deployment(dep("a", &a))
        .group(ModelGroup::new("m").deployment("a"))
        .build()
        .unwrap();
    r.chat(&ctx("t1"), req("m")).await.unwrap();
    r.chat(&ctx("t1"), req("m")).await.unwrap();
    r.chat(&ctx("t2"), req("m")).await.unwrap();
    assert_eq!(a.calls(), 2);
}
