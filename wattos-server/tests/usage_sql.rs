//! The SQL usage store on both backends: records written through the router's sink come back in
//! the report grouped by model, key and UTC day, only for their tenant and time range.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wattos_core::TenantId;
use wattos_core::llm::Usage;
use wattos_llm::usage::{UsageOutcome, UsageRecord};
use wattos_server::tenancy::admin::UsageReporter;
use wattos_server::tenancy::{Backend, SqlStore};
use wattos_server::usage::{Operation, SqlUsage};

const DAY_MS: i64 = 86_400_000;

fn record(tenant: &TenantId, at_ms: i64, model: &str, key: &str, ok: bool) -> UsageRecord {
    UsageRecord {
        at: UNIX_EPOCH + Duration::from_millis(at_ms as u64),
        tenant: tenant.clone(),
        principal: key.into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        model_group: model.into(),
        deployment: "dep-a".into(),
        upstream_model: "gpt-4o-mini".into(),
        usage: if ok {
            Usage {
                input_tokens: 100,
                output_tokens: 20,
                cached_input_tokens: 10,
            }
        } else {
            Usage::default()
        },
        cost_nanos: if ok { 1_500_000 } else { 0 },
        latency: Duration::from_millis(40),
        outcome: if ok {
            UsageOutcome::Success
        } else {
            UsageOutcome::Error("upstream".into())
        },
        attempt: 1,
        streamed: false,
    }
}

async fn conformance(store: SqlStore) {
    let usage = SqlUsage::new(&store);
    let sink = usage.sink(
        Operation::Chat,
        HashMap::from([("dep-a".to_owned(), "openai".to_owned())]),
    );
    let t = TenantId::new(format!(
        "u{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ))
    .unwrap();
    let other = TenantId::new(format!(
        "o{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ))
    .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let today = now - now.rem_euclid(DAY_MS) + 1000;
    let yesterday = today - DAY_MS;
    for r in [
        record(&t, today, "chat", "key-1", true),
        record(&t, today, "chat", "key-2", true),
        record(&t, today, "chat", "key-1", false),
        record(&t, yesterday, "embed", "key-1", true),
        record(&other, today, "chat", "key-9", true),
    ] {
        wattos_llm::usage::UsageSink::record(&*sink, r)
            .await
            .unwrap();
    }
    usage.flush().await.unwrap();

    let r = usage.report(&t, yesterday - 1, now + 1).await.unwrap();
    assert_eq!(r.models.len(), 2);
    let chat = &r.models[0];
    assert_eq!(
        (chat.model.as_str(), chat.requests, chat.failed),
        ("chat", 3, 1)
    );
    assert_eq!(
        (chat.input_tokens, chat.output_tokens, chat.cached_tokens),
        (200, 40, 20)
    );
    assert!((chat.cost_usd - 0.003).abs() < 1e-12);
    assert!((chat.avg_latency_ms - 40.0).abs() < 1e-9);
    assert_eq!(r.models[1].model, "embed");
    let keys: Vec<(&str, u64)> = r
        .keys
        .iter()
        .map(|k| (k.principal.as_str(), k.requests))
        .collect();
    assert_eq!(keys, [("key-1", 3), ("key-2", 1)]);
    assert_eq!(r.days.len(), 2);
    assert!(r.days[0].date < r.days[1].date);
    assert_eq!((r.days[0].requests, r.days[1].requests), (1, 3));
    assert!((r.total_cost_usd - 0.0045).abs() < 1e-12);

    // The range is half-open and per tenant.
    let only_today = usage.report(&t, today, now + 1).await.unwrap();
    assert_eq!(only_today.models.len(), 1);
    let other_report = usage.report(&other, 0, now + 1).await.unwrap();
    assert_eq!(other_report.keys.len(), 1);
    assert_eq!(other_report.keys[0].principal, "key-9");
    assert!(usage.report(&t, 10, 5).await.is_err());
    assert_eq!(usage.dropped(), 0);
}

#[tokio::test]
async fn sqlite_usage_store() {
    let dir = std::env::temp_dir().join(format!("wattos-usage-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqlStore::connect(&format!("sqlite://{}?mode=rwc", dir.join("w.db").display()))
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    conformance(store).await;
}

#[tokio::test]
async fn postgres_usage_store() {
    let Ok(base) = std::env::var("PG_TEST_URL") else {
        wattos_core::test_utils::skip::skip(
            "Postgres usage store",
            "PG_TEST_URL is not set (scripts/test.sh sets it)",
        );
        return;
    };
    let schema = format!("wattos_usage_{}", uuid::Uuid::new_v4().simple());
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let store = SqlStore::connect(&format!("{base}{sep}options=-c%20search_path%3D{schema}"))
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    conformance(store.clone()).await;
    store.pool().close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}
