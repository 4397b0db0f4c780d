//! Shared mode: the router keeps budgets in Redis and the tenancy and usage store is Postgres, so
//! two server instances enforce one tenant budget together.

#![allow(clippy::unwrap_used)]

mod jwt_support;

use serde_json::{Value, json};
use wattos_core::config::ConfigSources;
use wattos_llm::testing::MockServer;
use wattos_server::bootstrap::build_state;
use wattos_server::settings::Settings;

const SECRET: &str = "a-test-hs256-secret-of-at-least-32-bytes!";

fn jwt(tenant: &str, roles: &[&str]) -> String {
    jwt_support::TestIssuer {
        secret: SECRET,
        issuer: "wattos-tests",
        subject: "ops",
        ttl_secs: 600,
    }
    .token(tenant, roles)
}

async fn instance(db: &str, redis: &str, nats: &str, file: &str) -> String {
    let env = [
        ("WATTOS_MODE", "shared".to_owned()),
        ("WATTOS_DATABASE__URL", db.to_owned()),
        ("WATTOS_REDIS__URL", redis.to_owned()),
        ("WATTOS_NATS__URL", nats.to_owned()),
        (
            "WATTOS_AUTH__KEY_PEPPER",
            "pepper-for-the-test-suite".into(),
        ),
        ("WATTOS_AUTH__JWT__HS256_SECRET", SECRET.into()),
        ("WATTOS_AUTH__JWT__ISSUER", "wattos-tests".into()),
        ("WATTOS_AUTH__JWT__AUDIENCE", "wattos".into()),
        ("WATTOS_MODELS__LOCAL_CHAT", "false".into()),
        ("WATTOS_MODELS__LOCAL_EMBEDDINGS", "false".into()),
        // Events are tested in events_nats.rs; keep the machine's NATS free of this test's.
        ("WATTOS_EVENTS__SINK", "none".into()),
    ];
    let sources = ConfigSources {
        file: Some(("wattos.toml".into(), file.to_owned())),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    };
    let state = build_state(Settings::from_sources(&sources).unwrap())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, wattos_server::app(state)).await });
    base
}

#[tokio::test]
async fn two_instances_share_the_tenant_budget_through_redis() {
    let (Ok(pg), Ok(redis)) = (
        std::env::var("PG_TEST_URL"),
        std::env::var("REDIS_TEST_URL"),
    ) else {
        wattos_core::test_utils::skip::skip(
            "shared router budget",
            "PG_TEST_URL and REDIS_TEST_URL are needed (scripts/test.sh sets them)",
        );
        return;
    };
    let nats = std::env::var("NATS_TEST_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    // A fresh schema keeps this run's tenancy tables and migrations apart.
    let schema = format!("wattos_shared_{}", uuid::Uuid::new_v4().simple());
    sqlx::any::install_default_drivers();
    let admin_pool = sqlx::AnyPool::connect(&pg).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin_pool)
        .await
        .unwrap();
    let sep = if pg.contains('?') { '&' } else { '?' };
    let db = format!("{pg}{sep}options=-c%20search_path%3D{schema}");
    let mock = MockServer::openai().await;
    let file = format!(
        "[llm.providers.shared-gpt]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk\"\nmodel = \"gpt-4o-mini\"\nprice = {{ input = 1000.0, output = 1000.0 }}\n",
        mock.base_url()
    );
    let a = instance(&db, &redis, &nats, &file).await;
    let b = instance(&db, &redis, &nats, &file).await;
    let http = reqwest::Client::new();
    let tenant = format!("sh-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let platform = jwt("platform", &["platform_admin"]);
    let resp = http
        .post(format!("{a}/v1/admin/tenants"))
        .bearer_auth(&platform)
        .json(&json!({"id": tenant, "name": "Shared"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let owner = jwt(&tenant, &["admin"]);
    let chat = |base: &str| {
        http.post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&owner)
            .json(&json!({"model": "shared-gpt", "max_tokens": 8,
                          "messages": [{"role": "user", "content": "spend"}]}))
            .send()
    };
    // Spend on instance A, then a budget below that spend: instance B refuses (the spend is in Redis).
    assert_eq!(chat(&a).await.unwrap().status(), 200);
    assert_eq!(chat(&a).await.unwrap().status(), 200);
    let resp = http
        .put(format!("{b}/v1/admin/config"))
        .bearer_auth(&owner)
        .json(&json!({"budgets": {"monthly_usd": 0.001}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = chat(&b).await.unwrap();
    assert_eq!(resp.status(), 402);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "insufficient_quota");
    assert_eq!(mock.requests().len(), 2);

    // Usage from both instances lands in the one Postgres store.
    let mut models = Value::Null;
    for _ in 0..100 {
        let r: Value = http
            .get(format!("{b}/v1/admin/usage"))
            .bearer_auth(&owner)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if r["models"][0]["requests"] == 2 {
            models = r["models"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(models[0]["model"], "shared-gpt", "{models}");
    let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin_pool)
        .await;
}
