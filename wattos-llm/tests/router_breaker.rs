//! Circuit breakers per deployment (fake clock), health snapshots, the health check and probes.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "router_support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use wattos_core::ErrorKind;
use wattos_core::health::{HealthCheck, HealthStatus};
use wattos_core::llm::ChatModel;
use wattos_core::resilience::{BreakerConfig, BreakerState, ManualClock};
use wattos_llm::router::{ModelGroup, Router};

fn router(a: &Arc<FakeChat>, b: &Arc<FakeChat>, clock: &ManualClock) -> Router {
    Router::builder()
        .clock(Arc::new(clock.clone()))
        .breaker(BreakerConfig {
            failure_threshold: 3,
            reset_timeout: Duration::from_secs(30),
            ..BreakerConfig::default()
        })
        .deployment(dep("a", a))
        .deployment(dep("b", b))
        .group(ModelGroup::new("m").deployments(["a", "b"]))
        .build()
        .unwrap()
}

fn breaker_of(r: &Router, id: &str) -> BreakerState {
    r.health()
        .deployments
        .into_iter()
        .find(|d| d.deployment == id)
        .unwrap()
        .breaker
}

#[tokio::test]
async fn breaker_opens_at_threshold_and_recovers_through_half_open() {
    let clock = ManualClock::new();
    let a = FakeChat::new("a", Fault::ServerError);
    let b = FakeChat::healthy("b");
    let r = router(&a, &b, &clock);
    for i in 1..=3 {
        assert_eq!(
            r.chat(&ctx("t"), req("m")).await.unwrap().text(),
            "hello from b"
        );
        assert_eq!(a.calls(), i);
    }
    assert_eq!(breaker_of(&r, "a"), BreakerState::Open);
    let health = r.health();
    assert_eq!(health.status, HealthStatus::Degraded);
    assert_eq!(health.deployments[0].status, HealthStatus::Unhealthy);
    assert_eq!(
        r.health_check().check().await.status,
        HealthStatus::Degraded
    );
    // Open: `a` is not called at all.
    for _ in 0..5 {
        r.chat(&ctx("t"), req("m")).await.unwrap();
    }
    assert_eq!(a.calls(), 3);

    // Half-open after the reset timeout; a failing probe opens it again.
    clock.advance(Duration::from_secs(30));
    assert_eq!(breaker_of(&r, "a"), BreakerState::HalfOpen);
    r.chat(&ctx("t"), req("m")).await.unwrap();
    assert_eq!(a.calls(), 4);
    assert_eq!(breaker_of(&r, "a"), BreakerState::Open);

    // Next time the probe succeeds and the breaker closes.
    clock.advance(Duration::from_secs(30));
    a.set(Fault::Ok);
    assert_eq!(
        r.chat(&ctx("t"), req("m")).await.unwrap().text(),
        "hello from a"
    );
    assert_eq!(a.calls(), 5);
    assert_eq!(breaker_of(&r, "a"), BreakerState::Closed);
    assert_ne!(r.health().status, HealthStatus::Unhealthy);
}

#[tokio::test]
async fn caller_errors_neither_trip_the_breaker_nor_fall_back() {
    for fault in [Fault::BadRequest, Fault::Unauthorized] {
        let clock = ManualClock::new();
        let a = FakeChat::new("a", fault.clone());
        let b = FakeChat::healthy("b");
        let r = router(&a, &b, &clock);
        for _ in 0..6 {
            let err = r.chat(&ctx("t"), req("m")).await.unwrap_err();
            assert!(!err.is_retryable(), "{fault:?}");
        }
        assert_eq!(a.calls(), 6);
        assert_eq!(b.calls(), 0, "{fault:?} must not fall back");
        assert_eq!(breaker_of(&r, "a"), BreakerState::Closed);
    }
    // Invalid requests are rejected before any deployment is called.
    let clock = ManualClock::new();
    let a = FakeChat::healthy("a");
    let b = FakeChat::healthy("b");
    let r = router(&a, &b, &clock);
    let bad = req("m").with_temperature(7.0);
    assert_eq!(
        r.chat(&ctx("t"), bad).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(a.calls() + b.calls(), 0);
}

#[tokio::test]
async fn all_breakers_open_is_unhealthy_and_fails_fast() {
    let clock = ManualClock::new();
    let a = FakeChat::new("a", Fault::Refused);
    let b = FakeChat::new("b", Fault::Refused);
    let r = router(&a, &b, &clock);
    // 2 calls per request (rounds sleep 0..250 ms of real time)...
    for _ in 0..2 {
        r.chat(&ctx("t"), req("m")).await.unwrap_err();
    }
    assert_eq!(r.health().status, HealthStatus::Unhealthy);
    assert_eq!(
        r.health_check().check().await.status,
        HealthStatus::Unhealthy
    );
    let calls = a.calls() + b.calls();
    let err = r.chat(&ctx("t"), req("m")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(a.calls() + b.calls(), calls, "open breakers are not called");
}

#[tokio::test]
async fn active_probes_feed_health_and_breakers() {
    let clock = ManualClock::new();
    let a = FakeChat::new("a", Fault::ServerError);
    let b = FakeChat::healthy("b");
    let r = router(&a, &b, &clock);
    let results = r.probe().await;
    assert_eq!(results.len(), 2);
    let h = r.health();
    assert_eq!(h.deployments[0].status, HealthStatus::Degraded);
    assert_eq!(
        h.deployments[0].last_probe.as_ref().map(|p| p.ok),
        Some(false)
    );
    assert_eq!(h.deployments[1].status, HealthStatus::Healthy);
    r.probe().await;
    r.probe().await;
    assert_eq!(
        breaker_of(&r, "a"),
        BreakerState::Open,
        "probe failures count"
    );
    // An open breaker is not probed until it may half-open.
    let calls = a.calls();
    r.probe().await;
    assert_eq!(a.calls(), calls);
    a.set(Fault::Ok);
    clock.advance(Duration::from_secs(30));
    r.probe().await;
    assert_eq!(breaker_of(&r, "a"), BreakerState::Closed);
}
