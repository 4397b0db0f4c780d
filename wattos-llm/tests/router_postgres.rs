//! Postgres usage sink against the machine's PostgreSQL (127.0.0.1:5432, database `test`, or
//! `PG_TEST_URL`).
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "router_support/mod.rs"]
mod support;

use std::sync::Arc;

use support::*;
use wattos_core::llm::ChatModel;
use wattos_llm::router::{ModelGroup, Price, Router};
use wattos_llm::usage::{PostgresUsageSink, PostgresUsageSinkConfig, UsageSink};

#[tokio::test]
async fn records_every_attempt_in_batches() {
    let url = std::env::var("PG_TEST_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap();
    let table = format!("llm_usage_test_{}", uuid::Uuid::new_v4().simple());
    let sink = PostgresUsageSink::connect(
        pool.clone(),
        PostgresUsageSinkConfig {
            table: table.clone(),
            batch_size: 4,
            ..PostgresUsageSinkConfig::default()
        },
    )
    .await
    .unwrap();
    let a = FakeChat::new("a", Fault::ServerError);
    let b = FakeChat::healthy("b");
    let r = Router::builder()
        .usage_sink(Arc::new(sink.clone()))
        .deployment(dep("a", &a))
        .deployment(dep("b", &b).price(Price::per_mtok(1000.0, 1000.0)))
        .group(ModelGroup::new("m").deployments(["a", "b"]))
        .build()
        .unwrap();
    let ctx = ctx("pg-tenant");
    for _ in 0..5 {
        r.chat(&ctx, req("m")).await.unwrap();
    }
    sink.flush().await.unwrap();
    // 5 requests, each a failed attempt on `a` and a success on `b` costing $0.015.
    assert_eq!(
        sink.total_cost_nanos(ctx.tenant()).await.unwrap(),
        5 * 15_000_000
    );
    assert_eq!(
        sink.count_for_request(&ctx.request_id().to_string())
            .await
            .unwrap(),
        10
    );
    assert_eq!(sink.dropped(), 0);
    let bad = PostgresUsageSink::connect(
        pool.clone(),
        PostgresUsageSinkConfig {
            table: "x; DROP TABLE y".into(),
            ..PostgresUsageSinkConfig::default()
        },
    )
    .await;
    assert!(bad.is_err());
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await
        .unwrap();
}
