//! Platform events on the machine's real NATS JetStream: a server in shared mode (Postgres,
//! Redis, NATS) publishes a `usage` event per upstream attempt and an `audit` event per audit
//! entry; a durable consumer reads them back from the stream. And a NATS outage neither fails nor
//! slows a request: events are dropped and counted instead.
//!
//! Needs `PG_TEST_URL`, `REDIS_TEST_URL` and `NATS_TEST_URL` (`scripts/test.sh` sets them);
//! without them the tests skip loudly.
#![cfg(all(feature = "redis", feature = "nats"))]
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod jwt_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use futures::StreamExt;
use serde_json::{Value, json};
use wattos_core::config::ConfigSources;
use wattos_llm::testing::MockServer;
use wattos_server::bootstrap::build_state;
use wattos_server::events::EventPublisher;
use wattos_server::settings::Settings;

const SECRET: &str = "an-events-test-hs256-secret-of-32-bytes!!";

fn jwt(tenant: &str, roles: &[&str]) -> String {
    jwt_support::TestIssuer {
        secret: SECRET,
        issuer: "wattos-ev",
        subject: "ops",
        ttl_secs: 600,
    }
    .token(tenant, roles)
}

struct Services {
    pg: String,
    redis: String,
    nats: String,
}

fn services() -> Option<Services> {
    let get = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    match (
        get("PG_TEST_URL"),
        get("REDIS_TEST_URL"),
        get("NATS_TEST_URL"),
    ) {
        (Some(pg), Some(redis), Some(nats)) => Some(Services { pg, redis, nats }),
        _ => {
            wattos_core::test_utils::skip::skip(
                "events over NATS",
                "PG_TEST_URL, REDIS_TEST_URL and NATS_TEST_URL are needed",
            );
            None
        }
    }
}

/// One in-process server in shared mode with this run's own schema, Redis prefix, job and event
/// streams.
struct Server {
    base: String,
    events: EventPublisher,
    tag: String,
    schema: String,
    admin: sqlx::AnyPool,
    mock: MockServer,
}

impl Server {
    async fn start(s: &Services, nats_url: &str, extra: &[(&str, &str)]) -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let schema = format!("wattos_ev_{tag}");
        sqlx::any::install_default_drivers();
        let admin = sqlx::AnyPool::connect(&s.pg).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap();
        let sep = if s.pg.contains('?') { '&' } else { '?' };
        let db = format!("{}{sep}options=-c%20search_path%3D{schema}", s.pg);
        let mock = MockServer::openai().await;
        let file = format!(
            "[llm.providers.ev-gpt]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk\"\nmodel = \"gpt-4o-mini\"\nprice = {{ input = 1000.0, output = 2000.0 }}\n",
            mock.base_url()
        );
        let mut env: Vec<(String, String)> = [
            ("WATTOS_MODE", "shared".to_owned()),
            ("WATTOS_DATABASE__URL", db),
            ("WATTOS_DATABASE__MAX_CONNECTIONS", "3".into()),
            ("WATTOS_REDIS__URL", s.redis.clone()),
            ("WATTOS_REDIS__KEY_PREFIX", format!("ev{tag}:")),
            ("WATTOS_NATS__URL", nats_url.to_owned()),
            ("WATTOS_JOBS__STREAM", format!("EVJ_{tag}")),
            ("WATTOS_JOBS__SUBJECT_PREFIX", format!("evj.{tag}")),
            ("WATTOS_JOBS__STATUS_BUCKET", format!("evj_{tag}")),
            ("WATTOS_EVENTS__STREAM", format!("EV_{tag}")),
            ("WATTOS_EVENTS__SUBJECT_PREFIX", format!("ev.{tag}")),
            (
                "WATTOS_AUTH__KEY_PEPPER",
                "pepper-of-the-events-test".into(),
            ),
            ("WATTOS_AUTH__JWT__HS256_SECRET", SECRET.into()),
            ("WATTOS_AUTH__JWT__ISSUER", "wattos-ev".into()),
            ("WATTOS_AUTH__JWT__AUDIENCE", "wattos".into()),
            ("WATTOS_MODELS__LOCAL_CHAT", "false".into()),
            ("WATTOS_MODELS__LOCAL_EMBEDDINGS", "false".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let sources = ConfigSources {
            file: Some(("wattos.toml".into(), file)),
            env,
        };
        let state = build_state(Settings::from_sources(&sources).unwrap())
            .await
            .unwrap();
        let events = state.events().unwrap().clone();
        assert_eq!(events.sink_name(), "jetstream");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, wattos_server::app(state)).await });
        Self {
            base,
            events,
            tag,
            schema,
            admin,
            mock,
        }
    }

    /// A tenant `t-<tag>` with an API key: (tenant, key secret, key id).
    async fn tenant_with_key(&self, http: &reqwest::Client) -> (String, String, String) {
        let tenant = format!("t-{}", self.tag);
        let platform = jwt("platform", &["platform_admin"]);
        let r = http
            .post(format!("{}/v1/admin/tenants", self.base))
            .bearer_auth(&platform)
            .json(&json!({"id": tenant, "name": "Events"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let r = http
            .post(format!("{}/v1/admin/tenants/{tenant}/keys", self.base))
            .bearer_auth(&platform)
            .json(&json!({"name": "ev", "roles": ["developer"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let body: Value = r.json().await.unwrap();
        (
            tenant,
            body["key"].as_str().unwrap().to_owned(),
            body["id"].as_str().unwrap().to_owned(),
        )
    }

    async fn chat(&self, http: &reqwest::Client, key: &str) -> reqwest::Response {
        http.post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(key)
            .json(&json!({"model": "ev-gpt", "max_tokens": 8,
                          "messages": [{"role": "user", "content": "count my tokens"}]}))
            .send()
            .await
            .unwrap()
    }

    async fn cleanup(self, s: &Services) {
        let _ = sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&self.admin)
            .await;
        if let Ok(client) = async_nats::connect(&s.nats).await {
            let js = async_nats::jetstream::new(client);
            for name in [
                format!("EV_{}", self.tag),
                format!("EVJ_{}", self.tag),
                format!("EVJ_{}_DLQ", self.tag),
                format!("evj_{}", self.tag),
            ] {
                let _ = js.delete_stream(name).await;
            }
        }
        if let Ok(client) = redis::Client::open(s.redis.as_str())
            && let Ok(mut conn) = client.get_multiplexed_async_connection().await
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("ev{}:*", self.tag))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> =
                    redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
            }
        }
        drop(self.mock);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_audit_events_reach_the_stream_and_a_durable_consumer_reads_them() {
    let Some(s) = services() else { return };
    let server = Server::start(&s, &s.nats, &[]).await;
    let http = reqwest::Client::new();
    let (tenant, key, key_id) = server.tenant_with_key(&http).await;
    let r = server.chat(&http, &key).await;
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let answer: Value = r.json().await.unwrap();
    assert!(server.events.flush(Duration::from_secs(10)).await);

    // An export job's view: a durable consumer on the stream, filtered to this tenant's token.
    let token = server.events.tenant_token(&tenant.parse().unwrap());
    let prefix = format!("ev.{}", server.tag);
    let js = async_nats::jetstream::new(async_nats::connect(&s.nats).await.unwrap());
    let stream = js.get_stream(format!("EV_{}", server.tag)).await.unwrap();
    let consumer: PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("export".into()),
            filter_subject: format!("{prefix}.*.{token}"),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut got: Vec<(String, Value)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    // tenant.created and key.created (audit, in the new tenant's chain) and the chat's usage.
    while got.len() < 3 && Instant::now() < deadline {
        let mut batch = consumer
            .fetch()
            .max_messages(10)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .unwrap();
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            got.push((
                m.subject.to_string(),
                serde_json::from_slice(&m.payload).unwrap(),
            ));
            m.ack().await.unwrap();
        }
    }
    let find = |kind: &str, action: Option<&str>| {
        got.iter()
            .find(|(_, v)| v["type"] == kind && action.is_none_or(|a| v["data"]["action"] == a))
            .unwrap_or_else(|| panic!("no {kind} event in {got:?}"))
            .clone()
    };

    // usage: one attempt of the chat call, with the router's numbers.
    let (subject, usage) = find("usage", None);
    assert_eq!(subject, format!("{prefix}.usage.{token}"));
    assert!(
        !subject.contains(&tenant),
        "the tenant id leaked into {subject}"
    );
    assert_eq!(usage["version"], 1);
    assert_eq!(usage["tenant"], tenant.as_str());
    assert_eq!(usage["tenant_token"], token.as_str());
    assert!(uuid::Uuid::parse_str(usage["id"].as_str().unwrap()).is_ok());
    assert!(
        usage["source"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{}", std::process::id()))
    );
    let d = &usage["data"];
    assert_eq!(d["request_id"], request_id.as_str());
    assert_eq!(d["principal"], key_id.as_str());
    assert_eq!(d["operation"], "chat");
    assert_eq!(d["model"], "ev-gpt");
    assert_eq!(d["deployment"], "ev-gpt");
    assert_eq!(d["provider"], "openai");
    assert_eq!(d["upstream_model"], "gpt-4o-mini");
    assert_eq!(d["input_tokens"], answer["usage"]["prompt_tokens"]);
    assert_eq!(d["output_tokens"], answer["usage"]["completion_tokens"]);
    let (input, output) = (
        d["input_tokens"].as_i64().unwrap(),
        d["output_tokens"].as_i64().unwrap(),
    );
    assert!(input > 0 && output > 0, "{d}");
    // $1000 / $2000 per million tokens = 1000 / 2000 nano-dollars per token.
    assert_eq!(d["cost_nanos"], input * 1_000_000 + output * 2_000_000);
    assert_eq!(d["outcome"], "success");
    assert_eq!(d["attempt"], 1);
    assert_eq!(d["streamed"], false);

    // audit: the key creation, exactly as the audit log stored it (same chain position and hash).
    assert_eq!(got.len(), 3, "{got:?}");
    find("audit", Some("tenant.created"));
    let (subject, audit) = find("audit", Some("key.created"));
    assert_eq!(subject, format!("{prefix}.audit.{token}"));
    let d = &audit["data"];
    assert_eq!(d["action"], "key.created");
    assert_eq!(d["target"], key_id.as_str());
    assert_eq!(d["outcome"], "success");
    let page: Value = http
        .get(format!("{}/v1/admin/audit?action=key.created", server.base))
        .bearer_auth(jwt(&tenant, &["admin"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = &page["records"][0];
    for field in ["seq", "hash", "prev_hash", "actor", "request_id", "time_ms"] {
        assert_eq!(d[field], stored[field], "{field}: {d} vs {stored}");
    }

    // Durable: the consumer's position is kept by the server; nothing is redelivered after acks.
    let info = stream.consumer_info("export").await.unwrap();
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_pending, 0);
    assert_eq!(server.events.stats().dropped, 0);
    server.cleanup(&s).await;
}

/// A TCP proxy to NATS that can be cut: the outage.
async fn proxy(target: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            conns.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, task)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_neither_fails_nor_slows_requests() {
    let Some(s) = services() else { return };
    let nats = url::Url::parse(&s.nats).unwrap();
    let target = tokio::net::lookup_host((nats.host_str().unwrap(), nats.port().unwrap_or(4222)))
        .await
        .unwrap()
        .next()
        .unwrap();
    let (addr, cut) = proxy(target).await;
    let server = Server::start(
        &s,
        &format!("nats://{addr}"),
        &[("WATTOS_EVENTS__PUBLISH_TIMEOUT", "3s")],
    )
    .await;
    let http = reqwest::Client::new();
    let (tenant, key, _) = server.tenant_with_key(&http).await;
    assert_eq!(server.chat(&http, &key).await.status(), 200);
    assert!(server.events.flush(Duration::from_secs(10)).await);
    let before = server.events.stats();
    assert_eq!(before.dropped, 0, "{before:?}");

    // NATS goes away: every connection through the proxy is cut and reconnects are refused.
    cut.abort();
    let _ = cut.await;
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let r = server.chat(&http, &key).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        slowest = slowest.max(started.elapsed());
    }
    // Audited admin actions still succeed too.
    let started = Instant::now();
    let r = http
        .post(format!("{}/v1/admin/tenants/{tenant}/keys", server.base))
        .bearer_auth(jwt("platform", &["platform_admin"]))
        .json(&json!({"name": "during-outage", "roles": ["developer"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    slowest = slowest.max(started.elapsed());
    // A publish waits up to 3 s for its acknowledgement; a request never does.
    assert!(
        slowest < Duration::from_millis(1500),
        "a request took {slowest:?} during the NATS outage"
    );

    // The events of those requests are dropped after the publish timeout, and counted.
    assert!(server.events.flush(Duration::from_secs(30)).await);
    let after = server.events.stats();
    assert!(after.dropped >= 21, "{after:?}");
    assert_eq!(after.published, before.published, "{after:?}");
    let text = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric(&text, "wattos_events_dropped_total") >= 20.0,
        "{}",
        text.lines()
            .filter(|l| l.contains("wattos_events"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("slowest request during the outage: {slowest:?}; {after:?}");
    server.cleanup(&s).await;
}
