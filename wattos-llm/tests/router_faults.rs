//! Fault matrix: with one healthy deployment anywhere in the chain, every request succeeds, in chat
//! and streaming mode, and the number of upstream calls is exactly bounded.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "router_support/mod.rs"]
mod support;

use std::time::Duration;

use support::*;
use wattos_core::ErrorKind;
use wattos_core::llm::ChatModel;
use wattos_llm::router::{ModelGroup, Router, Strategy};

const FAULTS: [Fault; 6] = [
    Fault::Hang,
    Fault::RateLimited(Duration::from_secs(5)),
    Fault::ServerError,
    Fault::Refused,
    Fault::BreakMidStream,
    Fault::SlowDrip(Duration::from_secs(2)),
];

fn chain(fault: &Fault, healthy_at: usize) -> (Router, Vec<std::sync::Arc<FakeChat>>) {
    let models: Vec<_> = (0..3)
        .map(|i| {
            if i == healthy_at {
                FakeChat::healthy(&format!("d{i}"))
            } else {
                FakeChat::new(&format!("d{i}"), fault.clone())
            }
        })
        .collect();
    let mut b = Router::builder().attempt_timeout(Duration::from_secs(1));
    for (i, m) in models.iter().enumerate() {
        b = b.deployment(dep(&format!("d{i}"), m));
    }
    let router = b
        .group(
            ModelGroup::new("chat")
                .deployments(["d0", "d1", "d2"])
                .strategy(Strategy::Priority),
        )
        .build()
        .unwrap();
    (router, models)
}

#[tokio::test(start_paused = true)]
async fn one_healthy_deployment_is_enough_for_every_fault_and_position() {
    let mut cases = 0;
    for fault in &FAULTS {
        for healthy_at in 0..3 {
            for streamed in [false, true] {
                let (router, models) = chain(fault, healthy_at);
                let text = if streamed {
                    let s = router.chat_stream(&ctx("t"), req("chat")).await;
                    let s = s.unwrap_or_else(|e| panic!("{fault:?} at {healthy_at}: {e}"));
                    let (text, err) = collect(s).await;
                    assert!(err.is_none(), "{fault:?} at {healthy_at} streamed: {err:?}");
                    text
                } else {
                    let r = router.chat(&ctx("t"), req("chat")).await;
                    r.unwrap_or_else(|e| panic!("{fault:?} at {healthy_at}: {e}"))
                        .text()
                        .to_owned()
                };
                assert_eq!(text, format!("hello from d{healthy_at}"));
                // Exactly one call to each deployment before the healthy one, none after.
                for (i, m) in models.iter().enumerate() {
                    let expected = u32::from(i <= healthy_at);
                    assert_eq!(
                        m.calls(),
                        expected,
                        "{fault:?} healthy_at={healthy_at} streamed={streamed} d{i}"
                    );
                }
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 36);
}

#[tokio::test(start_paused = true)]
async fn fallback_group_rescues_a_failed_group() {
    for fault in &FAULTS {
        let bad1 = FakeChat::new("bad1", fault.clone());
        let bad2 = FakeChat::new("bad2", fault.clone());
        let good = FakeChat::healthy("good");
        let router = Router::builder()
            .attempt_timeout(Duration::from_secs(1))
            .deployment(dep("bad1", &bad1))
            .deployment(dep("bad2", &bad2))
            .deployment(dep("good", &good))
            .group(
                ModelGroup::new("primary")
                    .deployments(["bad1", "bad2"])
                    .strategy(Strategy::RoundRobin)
                    .fallbacks(["secondary"]),
            )
            .group(ModelGroup::new("secondary").deployment("good"))
            .build()
            .unwrap();
        let r = router.chat(&ctx("t"), req("primary")).await.unwrap();
        assert_eq!(r.text(), "hello from good", "{fault:?}");
        assert_eq!((bad1.calls(), bad2.calls(), good.calls()), (1, 1, 1));
        let (text, err) =
            collect(router.chat_stream(&ctx("t"), req("primary")).await.unwrap()).await;
        assert!(err.is_none(), "{fault:?}");
        assert_eq!(text, "hello from good");
    }
}

#[tokio::test(start_paused = true)]
async fn all_failing_is_bounded_by_rounds_and_attempt_cap() {
    // Retryable server errors: 3 deployments x 2 rounds (default) = 6 calls, then the last error.
    for fault in [Fault::ServerError, Fault::Refused, Fault::Hang] {
        let (router, models) = chain(&fault, usize::MAX);
        let err = router.chat(&ctx("t"), req("chat")).await.unwrap_err();
        let total: u32 = models.iter().map(|m| m.calls()).sum();
        assert_eq!(total, 6, "{fault:?}: {err}");
        assert!(err.is_retryable());
    }
    // The hard cap wins over rounds.
    let models: Vec<_> = (0..5)
        .map(|i| FakeChat::new(&format!("d{i}"), Fault::ServerError))
        .collect();
    let mut b = Router::builder().max_total_attempts(3);
    for (i, m) in models.iter().enumerate() {
        b = b.deployment(dep(&format!("d{i}"), m));
    }
    let router = b
        .group(ModelGroup::new("m").deployments((0..5).map(|i| format!("d{i}"))))
        .build()
        .unwrap();
    router.chat(&ctx("t"), req("m")).await.unwrap_err();
    assert_eq!(models.iter().map(|m| m.calls()).sum::<u32>(), 3);
}

#[tokio::test(start_paused = true)]
async fn rate_limited_deployments_cool_down_and_retry_after_is_honoured() {
    let only = FakeChat::healthy("only");
    only.script([Fault::RateLimited(Duration::from_secs(2))]);
    let router = Router::builder()
        .deployment(dep("only", &only))
        .group(ModelGroup::new("m").deployment("only"))
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let r = router.chat(&ctx("t"), req("m")).await.unwrap();
    assert_eq!(r.text(), "hello from only");
    assert_eq!(only.calls(), 2);
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "waited {:?}",
        start.elapsed()
    );

    // A Retry-After longer than the retry policy's max delay is not waited for: fail fast instead.
    let slow = FakeChat::new("slow", Fault::RateLimited(Duration::from_secs(3600)));
    let router = Router::builder()
        .deployment(dep("slow", &slow))
        .group(ModelGroup::new("m").deployment("slow"))
        .build()
        .unwrap();
    let err = router.chat(&ctx("t"), req("m")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(slow.calls(), 1);
}

#[tokio::test]
async fn request_deadline_caps_attempts() {
    let a = FakeChat::new("a", Fault::Hang);
    let b = FakeChat::new("b", Fault::Hang);
    let router = Router::builder()
        .attempt_timeout(Duration::from_secs(30))
        .deployment(dep("a", &a))
        .deployment(dep("b", &b))
        .group(ModelGroup::new("m").deployments(["a", "b"]))
        .build()
        .unwrap();
    let ctx = ctx("t").with_timeout(Duration::from_millis(200));
    let start = std::time::Instant::now();
    let err = router.chat(&ctx, req("m")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(a.calls() + b.calls(), 1, "no attempt after the deadline");
}
