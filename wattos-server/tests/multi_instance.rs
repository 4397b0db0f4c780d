//! Three real `wattos-server` processes in shared mode on loopback ports, against the machine's
//! PostgreSQL (a database created for the run), Redis (a key prefix per run) and NATS JetStream
//! (stream, subjects and bucket per run). Shows that no state lives in one instance:
//!
//! * a tenant limit of N requests per minute admits exactly N across the three;
//! * an API key created on one instance works on the others;
//! * a key revoked on one instance is refused by the others within a second;
//! * a worker killed with SIGKILL in the middle of an ingestion job loses nothing: the job is
//!   redelivered to another instance and its documents are stored exactly once;
//! * a tenant budget (reserved and settled in Redis) is never exceeded by concurrent requests
//!   spread over the three, against a mock upstream whose calls have a known cost;
//! * an agent run interrupted (the built-in `approval` graph) on one instance is listed on a
//!   second and resumed on the third.
//!
//! Needs `PGVECTOR_TEST_URL` (the ingestion workers store vectors with pgvector; every other
//! table lives in the same database), `REDIS_TEST_URL`, `NATS_TEST_URL` and, for the job test,
//! `WATTOS_MODELS__DIR` (the local embedding model). Without them the tests skip loudly.
#![cfg(all(feature = "redis", feature = "nats"))]
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod jwt_support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;
use wattos_llm::testing::{Fault, MockServer};

const SECRET: &str = "a-multi-instance-hs256-secret-of-32-bytes+";

/// One test at a time: each starts three servers on a 2-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn jwt(tenant: &str, roles: &[&str]) -> String {
    jwt_support::TestIssuer {
        secret: SECRET,
        issuer: "wattos-mi",
        subject: "ops",
        ttl_secs: 900,
    }
    .token(tenant, roles)
}

fn env(name: &str) -> Option<String> {
    let v = std::env::var(name).ok().filter(|v| !v.is_empty());
    if v.is_none() {
        wattos_core::test_utils::skip::skip("multi-instance test", &format!("{name} is not set"));
    }
    v
}

struct Instance {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Instance {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Three servers sharing one database, Redis prefix and JetStream namespace.
struct Fleet {
    instances: Vec<Option<Instance>>,
    admin_url: String,
    db_name: String,
    db_url: String,
    dir: PathBuf,
    tag: String,
    redis: String,
    nats: String,
}

fn with_database(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_path(&format!("/{db}"));
    u.to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Fleet {
    async fn start(pg: &str, redis: &str, nats: &str, embeddings: bool) -> Self {
        Self::start_roles(pg, redis, nats, &["all", "all", "all"], embeddings, 1, None).await
    }

    /// One process per entry of `roles` (`all`, `api` or `worker`); `file` is a TOML
    /// configuration file every instance reads (e.g. providers).
    async fn start_roles(
        pg: &str,
        redis: &str,
        nats: &str,
        roles: &[&str],
        embeddings: bool,
        concurrency: usize,
        file: Option<String>,
    ) -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let db_name = format!("wattos_mi_{tag}");
        let mut admin = sqlx::PgConnection::connect(pg).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {db_name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let db_url = with_database(pg, &db_name);
        let dir = std::env::temp_dir().join(format!("wattos-mi-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config_file = dir.join("wattos.toml");
        std::fs::write(&config_file, file.unwrap_or_default()).unwrap();
        let mut instances = Vec::new();
        for (i, role) in roles.iter().enumerate() {
            let port = free_port();
            let log = dir.join(format!("instance-{i}.log"));
            let out = std::fs::File::create(&log).unwrap();
            let vars = [
                ("WATTOS_MODE", "shared".to_owned()),
                ("WATTOS_SERVER__BIND", format!("127.0.0.1:{port}")),
                ("WATTOS_SERVER__SHUTDOWN_GRACE", "1s".into()),
                (
                    "WATTOS_DATA_DIR",
                    dir.join(format!("data-{i}")).display().to_string(),
                ),
                ("WATTOS_DATABASE__URL", db_url.clone()),
                ("WATTOS_DATABASE__MAX_CONNECTIONS", "4".into()),
                ("WATTOS_REDIS__URL", redis.to_owned()),
                ("WATTOS_REDIS__KEY_PREFIX", format!("mi{tag}:")),
                ("WATTOS_NATS__URL", nats.to_owned()),
                ("WATTOS_JOBS__STREAM", format!("MI_{tag}")),
                ("WATTOS_JOBS__SUBJECT_PREFIX", format!("mi.{tag}")),
                ("WATTOS_JOBS__STATUS_BUCKET", format!("mi_{tag}")),
                ("WATTOS_JOBS__ACK_WAIT", "3s".into()),
                ("WATTOS_JOBS__CONCURRENCY", concurrency.to_string()),
                ("WATTOS_EVENTS__STREAM", format!("MI_{tag}_EVENTS")),
                ("WATTOS_EVENTS__SUBJECT_PREFIX", format!("mievents.{tag}")),
                ("WATTOS_CONFIG", config_file.display().to_string()),
                ("WATTOS_SERVER__ROLE", (*role).to_owned()),
                (
                    "WATTOS_AUTH__KEY_PEPPER",
                    "pepper-of-the-multi-instance-test".into(),
                ),
                ("WATTOS_AUTH__JWT__HS256_SECRET", SECRET.into()),
                ("WATTOS_AUTH__JWT__ISSUER", "wattos-mi".into()),
                ("WATTOS_AUTH__JWT__AUDIENCE", "wattos".into()),
                ("WATTOS_MODELS__LOCAL_CHAT", "false".into()),
                ("WATTOS_MODELS__LOCAL_EMBEDDINGS", embeddings.to_string()),
                ("WATTOS_TELEMETRY__LOG_FILTER", "info".into()),
            ];
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_wattos-server"));
            for (k, _) in std::env::vars()
                .filter(|(k, _)| k.starts_with("WATTOS_") && k != "WATTOS_MODELS__DIR")
            {
                cmd.env_remove(k);
            }
            cmd.envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            let child = cmd.spawn().unwrap();
            instances.push(Some(Instance {
                child,
                base: format!("http://127.0.0.1:{port}"),
                log,
            }));
        }
        let fleet = Self {
            instances,
            admin_url: pg.to_owned(),
            db_name,
            db_url,
            dir,
            tag,
            redis: redis.to_owned(),
            nats: nats.to_owned(),
        };
        fleet.wait_ready().await;
        fleet
    }

    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(240);
        for inst in self.instances.iter().flatten() {
            loop {
                let ok = http
                    .get(format!("{}/health/readiness", inst.base))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if ok {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "instance {} not ready; log:\n{}",
                    inst.base,
                    std::fs::read_to_string(&inst.log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    fn base(&self, i: usize) -> &str {
        &self.instances[i].as_ref().unwrap().base
    }

    fn live(&self) -> impl Iterator<Item = &Instance> {
        self.instances.iter().flatten()
    }

    fn kill_pid(&mut self, pid: u32) -> bool {
        for slot in &mut self.instances {
            if slot.as_ref().is_some_and(|i| i.pid() == pid) {
                let mut inst = slot.take().unwrap();
                // std's kill is SIGKILL on Unix: no shutdown, no ack, no status write.
                inst.child.kill().unwrap();
                inst.child.wait().unwrap();
                return true;
            }
        }
        false
    }

    async fn stop(mut self) {
        for inst in self.instances.iter_mut().flatten() {
            let _ = inst.child.kill();
            let _ = inst.child.wait();
        }
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.db_name
        ))
        .execute(&mut admin)
        .await;
        let _ = std::fs::remove_dir_all(&self.dir);
        // The run's JetStream streams and bucket, and its Redis keys.
        if let Ok(client) = async_nats::connect(&self.nats).await {
            let js = async_nats::jetstream::new(client);
            let _ = js.delete_stream(format!("MI_{}", self.tag)).await;
            let _ = js.delete_stream(format!("MI_{}_DLQ", self.tag)).await;
            let _ = js.delete_stream(format!("mi_{}", self.tag)).await;
            let _ = js.delete_stream(format!("MI_{}_EVENTS", self.tag)).await;
        }
        if let Ok(client) = redis::Client::open(self.redis.as_str())
            && let Ok(mut conn) = client.get_multiplexed_async_connection().await
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("mi{}:*", self.tag))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> =
                    redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
            }
        }
    }
}

async fn create_tenant_with_key(
    http: &reqwest::Client,
    base: &str,
    tenant: &str,
    config: Value,
) -> (String, String) {
    let admin = jwt("platform", &["platform_admin"]);
    let r = http
        .post(format!("{base}/v1/admin/tenants"))
        .bearer_auth(&admin)
        .json(&json!({"id": tenant, "name": tenant}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = http
        .put(format!("{base}/v1/admin/tenants/{tenant}/config"))
        .bearer_auth(&admin)
        .json(&config)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = http
        .post(format!("{base}/v1/admin/tenants/{tenant}/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "mi", "roles": ["developer"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let body: Value = r.json().await.unwrap();
    (
        body["key"].as_str().unwrap().to_owned(),
        body["id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_keys_and_revocations_are_shared_by_three_instances() {
    let (Some(pg), Some(redis), Some(nats)) = (
        env("PGVECTOR_TEST_URL"),
        env("REDIS_TEST_URL"),
        env("NATS_TEST_URL"),
    ) else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let fleet = Fleet::start(&pg, &redis, &nats, false).await;
    let http = reqwest::Client::new();

    // A key created on instance 0 works on instances 1 and 2 at once.
    let (key, key_id) = create_tenant_with_key(&http, fleet.base(0), "acme", json!({})).await;
    for i in [1, 2, 0] {
        let r = http
            .get(format!("{}/v1/models", fleet.base(i)))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "key refused by instance {i}");
    }

    // A tenant limit of N per minute (bucket of N, refilled one every 60/N s) admits exactly N
    // of 3N concurrent requests spread over the three instances.
    const N: u32 = 12;
    let config = json!({"rate_limits": {"per_tenant_rpm": N, "burst": N - 1}});
    let (limited, _) = create_tenant_with_key(&http, fleet.base(1), "limited", config).await;
    let started = Instant::now();
    let requests = (0..3 * N).map(|i| {
        let url = format!("{}/v1/models", fleet.base((i % 3) as usize));
        let req = http.get(url).bearer_auth(&limited);
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures::future::join_all(requests).await;
    let elapsed = started.elapsed();
    let admitted = statuses.iter().filter(|s| **s == 200).count() as u32;
    let limited_count = statuses.iter().filter(|s| **s == 429).count() as u32;
    assert_eq!(admitted + limited_count, 3 * N, "{statuses:?}");
    // One token is refilled every 60/N s: a slow machine may legitimately admit those too.
    let refilled = (elapsed.as_secs_f64() / (60.0 / f64::from(N))).floor() as u32;
    assert!(
        admitted >= N && admitted <= N + refilled,
        "admitted {admitted} of {} (limit {N}, {refilled} refilled in {elapsed:?})",
        3 * N
    );
    if refilled == 0 {
        assert_eq!(admitted, N);
    }
    eprintln!(
        "rate limit: {admitted} of {} admitted across 3 instances in {elapsed:?} (limit {N}/min)",
        3 * N
    );

    // Revoked on instance 0: instances 1 and 2 refuse the key within a second.
    let tenant_admin = jwt("acme", &["admin"]);
    let r = http
        .delete(format!("{}/v1/admin/keys/{key_id}", fleet.base(0)))
        .bearer_auth(&tenant_admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let revoked_at = Instant::now();
    for i in [1, 2] {
        loop {
            let status = http
                .get(format!("{}/v1/models", fleet.base(i)))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .status();
            if status == 401 {
                break;
            }
            assert!(
                revoked_at.elapsed() < Duration::from_secs(1),
                "instance {i} still accepts a revoked key after {:?}",
                revoked_at.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!(
        "revocation enforced on all instances after {:?}",
        revoked_at.elapsed()
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_and_interrupted_agent_runs_are_shared_by_three_instances() {
    let (Some(pg), Some(redis), Some(nats)) = (
        env("PGVECTOR_TEST_URL"),
        env("REDIS_TEST_URL"),
        env("NATS_TEST_URL"),
    ) else {
        return;
    };
    let _serial = SERIAL.lock().await;
    // The mock answers "Echo: <last user message>" and reports len/4 + 1 output tokens: "Echo:
    // spend" is 3. At $1 per output token (input free) every call costs exactly $3, and with
    // max_tokens 3 the router reserves exactly $3 before calling.
    let mock = MockServer::openai().await;
    let file = format!(
        "[llm.providers.mi-gpt]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk\"\nmodel = \"gpt-4o-mini\"\nprice = {{ input = 0.0, output = 1000000.0 }}\n",
        mock.base_url()
    );
    let fleet = Fleet::start_roles(
        &pg,
        &redis,
        &nats,
        &["all", "all", "all"],
        false,
        1,
        Some(file),
    )
    .await;
    let http = reqwest::Client::new();

    // A $10 monthly budget admits exactly three $3 calls of twelve concurrent ones spread over
    // the three instances (each admitted call is held upstream for 300 ms, so reservations of
    // all instances overlap); the others are refused with 402 before reaching the upstream.
    let config = json!({"budgets": {"monthly_usd": 10.0}});
    let (key, _) = create_tenant_with_key(&http, fleet.base(0), "budget", config).await;
    for _ in 0..12 {
        mock.push_fault(Fault::Latency(Duration::from_millis(300)));
    }
    let chat = |i: usize| {
        let req = http
            .post(format!("{}/v1/chat/completions", fleet.base(i % 3)))
            .bearer_auth(&key)
            .json(&json!({"model": "mi-gpt", "max_tokens": 3,
                          "messages": [{"role": "user", "content": "spend"}]}));
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let answers = futures::future::join_all((0..12).map(chat)).await;
    let admitted: Vec<_> = answers.iter().filter(|(s, _)| *s == 200).collect();
    let refused = answers.iter().filter(|(s, _)| *s == 402).count();
    assert_eq!(admitted.len() + refused, 12, "{answers:?}");
    assert_eq!(admitted.len(), 3, "{answers:?}");
    for (_, a) in &admitted {
        assert_eq!(a["usage"]["completion_tokens"], 3, "{a}");
    }
    assert_eq!(
        mock.requests().len(),
        3,
        "refused calls never reach the upstream"
    );
    // Spent $9 of $10: a fourth call would exceed the budget, on any instance.
    for i in 0..3 {
        let (status, body) = chat(i).await;
        assert_eq!(status, 402, "{body}");
        assert_eq!(body["error"]["type"], "insufficient_quota");
    }
    assert_eq!(mock.requests().len(), 3);
    // The usage all instances recorded adds up to what was spent: $9, within the budget.
    let mut total = f64::NAN;
    for _ in 0..100 {
        let r: Value = http
            .get(format!("{}/v1/admin/usage", fleet.base(2)))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        total = r["total_cost_usd"].as_f64().unwrap_or(f64::NAN);
        if (total - 9.0).abs() < 1e-9 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!((total - 9.0).abs() < 1e-9, "recorded cost {total}");
    eprintln!("budget: 3 of 12 concurrent $3 calls admitted under $10 across 3 instances");

    // An approval run drafted on instance 0 stops before `publish`; instance 1 lists it as
    // pending, instance 2 resumes it, and it is then done everywhere.
    mock.reset();
    let (agent_key, _) = create_tenant_with_key(&http, fleet.base(0), "agents", json!({})).await;
    let agents = |i: usize| format!("{}/v1/agents", fleet.base(i));
    let thread = format!("ticket-{}", fleet.tag);
    let r = http
        .post(format!("{}/graphs/approval/runs", agents(0)))
        .bearer_auth(&agent_key)
        .json(&json!({"input": {"request": "Please refund order 1234."}, "thread_id": thread}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let run: Value = r.json().await.unwrap();
    assert_eq!(run["status"], "interrupted", "{run}");
    assert_eq!(run["interrupts"][0]["node"], "publish");
    let draft = run["state"]["draft"].as_str().unwrap().to_owned();
    assert_eq!(draft, "Echo: Please refund order 1234.");
    let id = run["id"].as_str().unwrap().to_owned();
    let pending: Value = http
        .get(format!("{}/runs?status=interrupted", agents(1)))
        .bearer_auth(&agent_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending["data"][0]["id"], id.as_str(), "{pending}");
    let r = http
        .post(format!("{}/runs/{id}/resume", agents(2)))
        .bearer_auth(&agent_key)
        .json(&json!({"action": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["state"]["published"], true);
    assert_eq!(done["state"]["reply"], draft.as_str());
    assert_eq!(mock.requests().len(), 1, "resuming does not draft again");
    for i in [0, 1] {
        let r: Value = http
            .get(format!("{}/runs/{id}", agents(i)))
            .bearer_auth(&agent_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["status"], "completed", "instance {i}: {r}");
    }
    let r = http
        .post(format!("{}/runs/{id}/resume", agents(0)))
        .bearer_auth(&agent_key)
        .json(&json!({"action": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        409,
        "a run resumes once, whichever instance is asked"
    );
    fleet.stop().await;
}

/// Documents big enough that an ingestion job runs for a while (so it can be killed mid-way).
fn documents(n: usize) -> Vec<Value> {
    const WORDS: [&str; 16] = [
        "solar",
        "panels",
        "wind",
        "turbines",
        "battery",
        "storage",
        "grid",
        "inverter",
        "load",
        "demand",
        "frequency",
        "voltage",
        "heat",
        "pump",
        "hydrogen",
        "tariff",
    ];
    (0..n)
        .map(|i| {
            let text: Vec<String> = (0..160)
                .map(|j| WORDS[(i * 7 + j * 3 + j / 5) % WORDS.len()].to_owned())
                .collect();
            json!({"id": format!("doc-{i}"), "title": format!("Note {i}"),
                   "text": format!("# Note {i}\n\n{}.", text.join(" "))})
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing() {
    let (Some(pg), Some(redis), Some(nats), Some(_models)) = (
        env("PGVECTOR_TEST_URL"),
        env("REDIS_TEST_URL"),
        env("NATS_TEST_URL"),
        env("WATTOS_MODELS__DIR"),
    ) else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let mut fleet = Fleet::start(&pg, &redis, &nats, true).await;
    let http = reqwest::Client::new();
    let (key, _) = create_tenant_with_key(&http, fleet.base(0), "acme", json!({})).await;

    // Jobs write through the RAG API's collections: the collection must exist first.
    let r = http
        .post(format!("{}/v1/rag/collections", fleet.base(0)))
        .bearer_auth(&key)
        .json(&json!({"name": "notes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    const DOCS: usize = 200;
    let body = json!({"documents": documents(DOCS)});
    let r = http
        .post(format!("{}/v1/rag/collections/notes/jobs", fleet.base(0)))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let submitted: Value = r.json().await.unwrap();
    let id = submitted["id"].as_str().unwrap().to_owned();
    assert_eq!(submitted["state"], "queued");
    assert_eq!(submitted["duplicate"], false);

    // Poll on instance 1 until some instance runs the job, then SIGKILL that instance.
    let status_of = |base: String| {
        let req = http.get(format!("{base}/v1/jobs/{id}")).bearer_auth(&key);
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let running = loop {
        let s = status_of(fleet.base(1).to_owned()).await;
        if s["state"] == "running" {
            break s;
        }
        assert_ne!(
            s["state"], "succeeded",
            "the job finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "the job never started: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let worker = running["worker"].as_str().unwrap().to_owned();
    let pid: u32 = worker.rsplit('/').next().unwrap().parse().unwrap();
    assert!(
        fleet.kill_pid(pid),
        "worker {worker} is not one of the instances"
    );
    let killed_at = Instant::now();
    eprintln!("killed worker {worker} mid-job");

    // Another instance gets the job after ack_wait and completes it.
    let deadline = Instant::now() + Duration::from_secs(180);
    let done = loop {
        let base = fleet.live().next().unwrap().base.clone();
        let s = status_of(base).await;
        if s["state"] == "succeeded" || s["state"] == "dead_lettered" {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the job was not redelivered: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "redelivered and completed {:?} after the kill: {done}",
        killed_at.elapsed()
    );
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    assert_ne!(done["worker"].as_str().unwrap(), worker);
    assert_eq!(done["result"]["indexed"], DOCS, "{done}");
    assert_eq!(done["result"]["failed"], 0, "{done}");
    let chunks = total_chunks(&done["result"]);

    // Stored exactly once: one set of chunks per document, nothing duplicated.
    let mut db = sqlx::PgConnection::connect(&fleet.db_url).await.unwrap();
    let table = wattos_server::jobs::table_name("notes");
    let (rows, docs): (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*), count(DISTINCT document_id) FROM {table} WHERE tenant = 'acme'"
    ))
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!((rows as u64, docs as usize), (chunks, DOCS));

    // The same submission again is the same, finished job; nothing runs twice.
    let base = fleet.live().next().unwrap().base.clone();
    let r = http
        .post(format!("{base}/v1/rag/collections/notes/jobs"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let again: Value = r.json().await.unwrap();
    assert_eq!(
        (again["id"].as_str().unwrap(), &again["duplicate"]),
        (id.as_str(), &json!(true))
    );
    assert_eq!(again["state"], "succeeded");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = status_of(base).await;
    assert_eq!(later["attempts"], 2);
    assert_eq!(later["updated_at_ms"], done["updated_at_ms"]);
    let (rows_after,): (i64,) = sqlx::query_as(&format!(
        "SELECT count(*) FROM {table} WHERE tenant = 'acme'"
    ))
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(rows_after, rows);
    drop(db);

    // Another tenant cannot see the job.
    let (other, _) = create_tenant_with_key(
        &http,
        &fleet.live().next().unwrap().base.clone(),
        "other",
        json!({}),
    )
    .await;
    let r = http
        .get(format!(
            "{}/v1/jobs/{id}",
            fleet.live().next().unwrap().base
        ))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    fleet.stop().await;
}

/// Ingestion throughput through the JetStream queue with 1, 2 and 3 worker processes (one API
/// process queues the jobs). Run on purpose, with release-like builds of the dependencies:
/// `cargo test -p wattos-server --test multi_instance -- --ignored --nocapture ingest_throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn ingest_throughput_with_1_2_3_workers() {
    let (Some(pg), Some(redis), Some(nats), Some(_models)) = (
        env("PGVECTOR_TEST_URL"),
        env("REDIS_TEST_URL"),
        env("NATS_TEST_URL"),
        env("WATTOS_MODELS__DIR"),
    ) else {
        return;
    };
    let _serial = SERIAL.lock().await;
    const JOBS: usize = 24;
    const DOCS_PER_JOB: usize = 10;
    let mut lines = Vec::new();
    for workers in 1..=3 {
        let mut roles = vec!["api"];
        roles.extend(std::iter::repeat_n("worker", workers));
        let fleet = Fleet::start_roles(&pg, &redis, &nats, &roles, true, 1, None).await;
        let http = reqwest::Client::new();
        let (key, _) = create_tenant_with_key(&http, fleet.base(0), "bench", json!({})).await;
        let r = http
            .post(format!("{}/v1/rag/collections", fleet.base(0)))
            .bearer_auth(&key)
            .json(&json!({"name": "bench"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let all = documents(JOBS * DOCS_PER_JOB);
        let started = Instant::now();
        let mut ids = Vec::new();
        for chunk in all.chunks(DOCS_PER_JOB) {
            let r = http
                .post(format!("{}/v1/rag/collections/bench/jobs", fleet.base(0)))
                .bearer_auth(&key)
                .json(&json!({"documents": chunk}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            ids.push(
                r.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        let mut chunks = 0;
        for id in &ids {
            loop {
                let s: Value = http
                    .get(format!("{}/v1/jobs/{id}", fleet.base(0)))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if s["state"] == "succeeded" {
                    chunks += total_chunks(&s["result"]);
                    break;
                }
                assert_ne!(s["state"], "dead_lettered", "{s}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let docs = (JOBS * DOCS_PER_JOB) as f64;
        let line = format!(
            "| {workers} | {JOBS} x {DOCS_PER_JOB} | {chunks} | {secs:.1} | {:.1} | {:.1} |",
            docs / secs,
            chunks as f64 / secs
        );
        eprintln!("{line}");
        lines.push(line);
        fleet.stop().await;
    }
    eprintln!(
        "| workers | jobs x docs | chunks | seconds | docs/s | chunks/s |\n|---|---|---|---|---|---|"
    );
    for l in lines {
        eprintln!("{l}");
    }
}

/// Chunks written by an ingest job (the sum over its per-document results).
fn total_chunks(result: &Value) -> u64 {
    result["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["chunks"].as_u64().unwrap())
        .sum()
}
