//! The configured server (bootstrap from settings, authentication on) in front of mock vendor
//! upstreams: every chat call goes through the router (groups, aliases, tenant budgets and
//! allow-lists), usage lands in the SQL store and comes back from `/v1/admin/usage`, and metrics,
//! health, trace propagation and JSON rejections are checked over real HTTP.

#![allow(clippy::unwrap_used)]

mod jwt_support;

use std::time::Duration;

use serde_json::{Value, json};
use wattos_core::config::ConfigSources;
use wattos_llm::testing::{Fault, MockServer};
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

struct Server {
    base: String,
    http: reqwest::Client,
    /// An `admin` key of a fresh tenant.
    key: String,
    key_id: String,
    tenant: String,
}

/// Starts the server as `build_state` builds it from `file` (TOML), with authentication on, and
/// creates a fresh tenant with an admin key.
async fn start(file: &str) -> Server {
    let mut env = jwt_support::required_auth_env("ops", SECRET, "wattos-tests");
    env.push(("WATTOS_SERVER__BODY_LIMIT_BYTES".into(), "65536".into()));
    let sources = ConfigSources {
        file: Some(("wattos.toml".into(), file.to_owned())),
        env,
    };
    let state = build_state(Settings::from_sources(&sources).unwrap())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, wattos_server::app(state)).await });
    let http = reqwest::Client::new();
    let tenant = format!("ops-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let admin = jwt("platform", &["platform_admin"]);
    let resp = http
        .post(format!("{base}/v1/admin/tenants"))
        .bearer_auth(&admin)
        .json(&json!({"id": tenant, "name": "Ops test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let resp = http
        .post(format!("{base}/v1/admin/tenants/{tenant}/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "ops", "roles": ["admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    Server {
        base,
        http,
        key: v["key"].as_str().unwrap().to_owned(),
        key_id: v["id"].as_str().unwrap().to_owned(),
        tenant,
    }
}

impl Server {
    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
    }

    async fn put_config(&self, config: Value) {
        let resp = self
            .http
            .put(format!("{}/v1/admin/config", self.base))
            .bearer_auth(&self.key)
            .json(&config)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }

    async fn chat(&self, model: &str, text: &str) -> reqwest::Response {
        self.post(
            "/v1/chat/completions",
            json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": text}]}),
        )
        .await
    }

    /// Polls the usage report until it counts `calls` calls in all (the writer is asynchronous).
    async fn usage_with(&self, calls: u64) -> Value {
        for _ in 0..100 {
            let resp = self.get("/v1/admin/usage").await;
            assert_eq!(resp.status(), 200);
            let v: Value = resp.json().await.unwrap();
            let n: u64 = v["models"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["requests"].as_u64().unwrap())
                .sum();
            if n >= calls {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("usage never reached {calls} calls");
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

fn provider(name: &str, mock: &MockServer, model: &str) -> String {
    format!(
        "[llm.providers.{name}]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-test\"\nmodel = \"{model}\"\nprice = {{ input = 1000.0, output = 1000.0 }}\n",
        mock.base_url()
    )
}

/// The sum of every sample of `metric` whose labels contain all of `labels`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(metric)
                && l[metric.len()..].starts_with(['{', ' '])
                && labels.iter().all(|x| l.contains(x))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn chat_goes_through_the_router_with_budgets_allow_lists_and_usage_reports() {
    let mock = MockServer::openai().await;
    let file = format!(
        "{}\n[llm.router.groups.smart]\ndeployments = [\"ops-gpt\"]\naliases = [\"ops-default\"]\n",
        provider("ops-gpt", &mock, "gpt-4o-mini")
    );
    let s = start(&file).await;

    // The group, its alias and the provider's own group are served.
    let models: Value = s.get("/v1/models").await.json().await.unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ops-default", "ops-gpt", "smart"]);

    let resp = s.chat("smart", "hello router").await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: hello router");
    assert_eq!(mock.last_request().unwrap().body["model"], "gpt-4o-mini");

    let resp = s
        .post(
            "/v1/messages",
            json!({"model": "ops-default", "max_tokens": 16,
                   "messages": [{"role": "user", "content": "via anthropic"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "Echo: via anthropic");

    let resp = s
        .post(
            "/v1/chat/completions",
            json!({"model": "ops-gpt", "stream": true, "messages": [{"role": "user", "content": "streamed"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .unwrap()
            .trim_end()
            .ends_with("data: [DONE]")
    );
    assert_eq!(mock.requests().len(), 3);

    // Usage: by model group, by key, by day; tokens and cost from the provider's price.
    let report = s.usage_with(3).await;
    let by_model = report["models"].as_array().unwrap();
    assert_eq!(by_model.len(), 2, "{report}");
    let smart = by_model.iter().find(|m| m["model"] == "smart").unwrap();
    assert_eq!(smart["requests"], 2);
    assert_eq!(smart["failed"], 0);
    assert!(smart["input_tokens"].as_u64().unwrap() > 0);
    assert!(smart["output_tokens"].as_u64().unwrap() > 0);
    let tokens = smart["input_tokens"].as_u64().unwrap() + smart["output_tokens"].as_u64().unwrap();
    // $1000 per million tokens = $0.001 per token.
    assert!((smart["cost_usd"].as_f64().unwrap() - tokens as f64 * 0.001).abs() < 1e-9);
    assert_eq!(report["keys"][0]["principal"], s.key_id.as_str());
    assert_eq!(report["keys"][0]["requests"], 3);
    assert_eq!(report["days"].as_array().unwrap().len(), 1);
    let total = report["total_cost_usd"].as_f64().unwrap();
    assert!(total > 0.0);
    // A range before today holds nothing.
    let empty: Value = s
        .get("/v1/admin/usage?since_ms=0&until_ms=1000")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(empty["models"], json!([]));
    assert_eq!(empty["total_cost_usd"], 0.0);

    // A monthly budget below what was spent: 402 insufficient_quota, on both APIs, no upstream call.
    s.put_config(json!({"budgets": {"monthly_usd": total / 2.0}}))
        .await;
    let resp = s.chat("smart", "over budget").await;
    assert_eq!(resp.status(), 402);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "insufficient_quota", "{v}");
    assert_eq!(v["error"]["code"], "budget_exceeded");
    let resp = s
        .post(
            "/v1/messages",
            json!({"model": "smart", "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(resp.status(), 402);
    assert_eq!(mock.requests().len(), 3);
    // The budget gauge says a tenant budget is spent, without naming the tenant.
    let m = s.metrics().await;
    assert!(
        sample(
            &m,
            "llm_budget_utilization_ratio",
            &["scope=\"tenant\"", "period=\"monthly\""]
        ) >= 1.0,
        "{m}"
    );
    assert!(
        !m.contains(&s.tenant),
        "a tenant id leaked into the metrics"
    );

    // Raised again: calls flow.
    s.put_config(json!({"budgets": {"monthly_usd": 1000.0}}))
        .await;
    assert_eq!(s.chat("smart", "budget raised").await.status(), 200);

    // The allow-list: only the provider's own group.
    s.put_config(json!({"allowed_models": ["ops-gpt"]})).await;
    let resp = s.chat("smart", "not allowed").await;
    assert_eq!(resp.status(), 403, "{}", resp.text().await.unwrap());
    assert_eq!(s.chat("ops-gpt", "allowed").await.status(), 200);
    let models: Value = s.get("/v1/models").await.json().await.unwrap();
    assert_eq!(models["data"].as_array().unwrap().len(), 1);
    assert_eq!(models["data"][0]["id"], "ops-gpt");
    let _ = s.tenant;
}

#[tokio::test]
async fn metrics_health_and_breakers_over_http() {
    let good = MockServer::openai().await;
    let bad = MockServer::openai().await;
    let file = format!(
        "{}{}[llm.router]\nbreaker_failure_threshold = 1\nbreaker_open_secs = 600\nretry_rounds = 1\n",
        provider("met-good", &good, "gpt-4o-mini"),
        provider("met-bad", &bad, "gpt-4o-mini"),
    );
    let s = start(&file).await;
    assert_eq!(s.chat("met-good", "one").await.status(), 200);
    assert_eq!(s.chat("met-good", "two").await.status(), 200);

    // The bad provider fails until its breaker opens.
    for _ in 0..20 {
        bad.push_fault(Fault::status(500));
    }
    for _ in 0..3 {
        // 502 from the upstream's 500, then the open breaker's refusal.
        let status = s.chat("met-bad", "fail").await.status();
        assert!(status.is_server_error() || status == 429, "{status}");
    }
    let health: Value = s
        .http
        .get(format!("{}/health", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(
        health["components"]["provider:met-good"]["status"],
        "healthy"
    );
    assert_eq!(
        health["components"]["provider:met-bad"]["status"],
        "degraded"
    );
    assert!(
        health["components"]["provider:met-bad"]["detail"]
            .as_str()
            .unwrap()
            .contains("breaker open"),
        "{health}"
    );

    let m = s.metrics().await;
    assert!(
        sample(
            &m,
            "llm_calls_total",
            &["model=\"met-good\"", "outcome=\"success\""]
        ) >= 2.0,
        "{m}"
    );
    assert!(sample(&m, "llm_calls_total", &["model=\"met-bad\""]) >= 1.0);
    assert!(
        sample(
            &m,
            "llm_tokens_total",
            &["model=\"met-good\"", "direction=\"input\""]
        ) > 0.0
    );
    assert!(
        sample(
            &m,
            "llm_tokens_total",
            &["model=\"met-good\"", "direction=\"output\""]
        ) > 0.0
    );
    assert!(sample(&m, "llm_cost_usd", &["model=\"met-good\""]) > 0.0);
    assert!(sample(&m, "db_queries_total", &["operation=\"get_tenant\""]) >= 1.0);
    assert!(
        sample(
            &m,
            "cache_operations_total",
            &["cache=\"api_key\"", "result=\"hit\""]
        ) >= 1.0
    );
    assert!(
        sample(&m, "circuit_breaker_state", &["met-bad"]) >= 2.0,
        "breaker gauge missing: {m}"
    );
    assert!(
        sample(
            &m,
            "gateway_request_overhead_us_count",
            &["route=\"/v1/chat/completions\""]
        ) >= 2.0,
        "{m}"
    );
    assert!(
        sample(
            &m,
            "http_requests_total",
            &["route=\"/v1/chat/completions\""]
        ) >= 5.0
    );
    // No tenant id in any label.
    assert!(
        !m.contains(&s.tenant),
        "a tenant id leaked into the metrics"
    );

    // Rate limiting is counted.
    s.put_config(json!({"rate_limits": {"per_key_rpm": 1}}))
        .await;
    let mut limited = false;
    for _ in 0..3 {
        if s.chat("met-good", "again").await.status() == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited);
    let m = s.metrics().await;
    assert!(
        sample(&m, "rate_limited_total", &["scope=\"key_rpm\""]) >= 1.0,
        "{m}"
    );
}

#[tokio::test]
async fn traceparent_reaches_the_upstream_with_the_callers_trace_id() {
    let mock = MockServer::openai().await;
    let s = start(&provider("tp-gpt", &mock, "gpt-4o-mini")).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = s
        .http
        .post(format!("{}/v1/chat/completions", s.base))
        .bearer_auth(&s.key)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({"model": "tp-gpt", "messages": [{"role": "user", "content": "trace me"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tp = mock
        .last_request()
        .unwrap()
        .header("traceparent")
        .unwrap()
        .to_owned();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[1], trace_id);
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "the upstream call is a child span"
    );
}

#[tokio::test]
async fn rejections_are_json_errors_with_stable_codes() {
    let mock = MockServer::openai().await;
    let s = start(&provider("rj-gpt", &mock, "gpt-4o-mini")).await;
    let url = |p: &str| format!("{}{p}", s.base);

    // Over the body limit (64 KiB here).
    let big = "x".repeat(100_000);
    let resp = s
        .http
        .post(url("/v1/chat/completions"))
        .bearer_auth(&s.key)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"model\":\"rj-gpt\",\"messages\":[{{\"role\":\"user\",\"content\":\"{big}\"}}]}}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "payload_too_large");
    assert!(v["error"]["message"].as_str().unwrap().contains("65536"));
    assert_eq!(v["error"]["type"], "invalid_request_error");

    // Admin routes use axum's JSON extractor: syntax, content type and shape errors.
    let cases: [(Option<&str>, &str, u16, &str); 3] = [
        (Some("application/json"), "{not json", 400, "invalid_input"),
        (None, "{\"budgets\": {}}", 415, "unsupported_media_type"),
        (
            Some("application/json"),
            "{\"budgets\": 5}",
            422,
            "invalid_input",
        ),
    ];
    for (ct, body, status, code) in cases {
        let mut req = s
            .http
            .put(url("/v1/admin/config"))
            .bearer_auth(&s.key)
            .body(body.to_owned());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), status, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    // A bad query string.
    let resp = s.get("/v1/admin/usage?since_ms=yesterday").await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_input");
}

#[tokio::test]
async fn embeddings_go_through_the_router_and_are_accounted() {
    let mock = MockServer::openai().await;
    mock.set_embedding_dimensions(1536);
    let file = format!(
        "{}embedding_model = \"text-embedding-3-small\"\n",
        provider("emb-oai", &mock, "gpt-4o-mini")
    );
    let s = start(&file).await;
    let resp = s
        .post(
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": ["one", "two"]}),
        )
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(mock.last_request().unwrap().path, "/v1/embeddings");
    let report = s.usage_with(1).await;
    let m = &report["models"][0];
    assert_eq!(m["model"], "text-embedding-3-small", "{report}");
    assert_eq!(m["requests"], 1);
    assert!(m["input_tokens"].as_u64().unwrap() > 0);
    // Priced per token like the chat model ($1000 per million tokens here).
    assert!(m["cost_usd"].as_f64().unwrap() > 0.0);
    // The allow-list applies to embeddings too.
    s.put_config(json!({"allowed_models": ["emb-oai"]})).await;
    let resp = s
        .post(
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "three"}),
        )
        .await;
    assert_eq!(resp.status(), 403);
}
