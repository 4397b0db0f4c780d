//! Calls a flaky dependency through a retry policy inside a circuit breaker, then shows the breaker
//! opening once the dependency goes down for good.
//!
//! Run: `cargo run -p example-resilient-call`
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use wattos_core::resilience::{BreakerConfig, CircuitBreaker, Jitter, RetryPolicy};
use wattos_core::{Error, Result};

/// A dependency that fails its first two calls, then succeeds until `down` is set.
struct Flaky {
    calls: AtomicU32,
    down: std::sync::atomic::AtomicBool,
}

impl Flaky {
    async fn call(&self) -> Result<&'static str> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) || n < 2 {
            Err(Error::upstream(
                "flaky",
                Some(503),
                true,
                "service unavailable",
            ))
        } else {
            Ok("pong")
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let dep = Arc::new(Flaky {
        calls: AtomicU32::new(0),
        down: false.into(),
    });
    let breaker = CircuitBreaker::new(
        "flaky",
        BreakerConfig {
            failure_threshold: 3,
            ..BreakerConfig::default()
        },
    );
    let retry = RetryPolicy {
        base_delay: Duration::from_millis(50),
        jitter: Jitter::Full,
        ..RetryPolicy::default()
    };

    let answer = retry
        .retry(None, |attempt| {
            let dep = dep.clone();
            let breaker = breaker.clone();
            async move {
                println!("attempt {attempt}");
                breaker.call(dep.call()).await
            }
        })
        .await?;
    println!("answer: {answer} (breaker {})", breaker.state());

    dep.down.store(true, Ordering::SeqCst);
    for i in 0..5 {
        match breaker.call(dep.call()).await {
            Ok(_) => println!("call {i}: ok"),
            Err(e) => println!("call {i}: {e} [{}]", e.code()),
        }
    }
    println!("breaker is now {}", breaker.state());
    Ok(())
}
