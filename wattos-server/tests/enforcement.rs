//! Tenant policy, permissions and audit are enforced below the handlers: the router holds every
//! model call to the calling tenant's allow-list and budget whatever route makes it (in a fresh
//! server, with no gateway call first), every 403 of every route writes `access.denied`, every
//! successful state change writes an audit record, and the RBAC rules of `docs/security.md` hold
//! (`chat:invoke` for model-invoking routes, no `system` role from credentials, reserved tenant
//! ids, the platform chain readable by the platform admin), and the tenant defaults
//! (`default_model`, `rag.default_top_k`, `rag.max_documents`, `budgets.monthly_tokens`,
//! `agents.max_steps`, `agents.approval_required_tools`) act on every route they concern.

#![allow(clippy::unwrap_used)]

mod jwt_support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use wattos_core::config::ConfigSources;
use wattos_llm::testing::MockServer;
use wattos_server::bootstrap::build_state;
use wattos_server::settings::Settings;

const SECRET: &str = "a-test-hs256-secret-of-at-least-32-bytes!";
const ISSUER: &str = "wattos-tests";

fn jwt(tenant: &str, roles: &[&str]) -> String {
    jwt_support::TestIssuer {
        secret: SECRET,
        issuer: ISSUER,
        subject: "ops",
        ttl_secs: 600,
    }
    .token(tenant, roles)
}

fn platform() -> String {
    jwt("platform", &["platform_admin"])
}

struct Server {
    base: String,
    http: reqwest::Client,
    mock: MockServer,
}

#[derive(Debug)]
struct Resp {
    status: u16,
    body: Value,
}

impl Server {
    /// The production configuration (required auth, no local models) with one OpenAI-compatible
    /// provider `pol-oai` (chat) that also serves `text-embedding-3-small`, both priced.
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    async fn start_with(extra: &[(&str, &str)]) -> Self {
        Self::start_full(false, extra).await
    }

    /// With `second_model`, a second chat provider `pol-two` (upstream model `gpt-4o`) on the
    /// same mock.
    async fn start_full(second_model: bool, extra: &[(&str, &str)]) -> Self {
        let mock = MockServer::openai().await;
        mock.set_embedding_dimensions(1536);
        let mut file = format!(
            "[llm.providers.pol-oai]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-test\"\nmodel = \"gpt-4o-mini\"\nprice = {{ input = 1000.0, output = 1000.0 }}\nembedding_model = \"text-embedding-3-small\"\n",
            mock.base_url()
        );
        if second_model {
            file.push_str(&format!(
                "[llm.providers.pol-two]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-test\"\nmodel = \"gpt-4o\"\n",
                mock.base_url()
            ));
        }
        let env = jwt_support::required_auth_env("enforcement", SECRET, ISSUER);
        let sources = ConfigSources {
            file: Some(("wattos.toml".into(), file)),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .chain(
                    extra
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
                )
                .collect(),
        };
        let state = build_state(Settings::from_sources(&sources).unwrap())
            .await
            .unwrap();
        // The job worker, as `serve` starts it (runs until the test process ends).
        if let Some(jobs) = state.jobs() {
            let _ = jobs.spawn_worker(tokio_util::sync::CancellationToken::new());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, wattos_server::app(state)).await });
        Self {
            base,
            http: reqwest::Client::new(),
            mock,
        }
    }

    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Resp {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        Resp {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// A fresh tenant (unique id) with an API key of `roles`; returns (tenant, key).
    async fn tenant(&self, prefix: &str, roles: &[&str]) -> (String, String) {
        let id = format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let r = self
            .call(
                "POST",
                "/v1/admin/tenants",
                &platform(),
                Some(json!({"id": id, "name": id})),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let key = self.key(&id, roles).await;
        (id, key)
    }

    async fn key(&self, tenant: &str, roles: &[&str]) -> String {
        let r = self
            .call(
                "POST",
                &format!("/v1/admin/tenants/{tenant}/keys"),
                &platform(),
                Some(json!({"name": "k", "roles": roles})),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["key"].as_str().unwrap().to_owned()
    }

    async fn put_config(&self, tenant: &str, config: Value) {
        let r = self
            .call(
                "PUT",
                &format!("/v1/admin/tenants/{tenant}/config"),
                &platform(),
                Some(config),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    /// Creates collection `name` (or finds it) with `key`.
    async fn create_collection(&self, key: &str, name: &str) {
        let r = self
            .call(
                "POST",
                "/v1/rag/collections",
                key,
                Some(json!({"name": name})),
            )
            .await;
        assert!(r.status == 201 || r.status == 200, "{name}: {:?}", r.body);
    }

    /// The tenant's audit records (read by the platform admin).
    async fn audit(&self, tenant: &str) -> Vec<Value> {
        let r = self
            .call(
                "GET",
                &format!("/v1/admin/audit?tenant={tenant}&limit=500"),
                &platform(),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["records"].as_array().unwrap().clone()
    }

    /// Uploads one small text file with multipart/form-data.
    async fn upload(&self, token: &str, path: &str) -> Resp {
        let part = reqwest::multipart::Part::bytes(b"Wind turbines make electricity.".to_vec())
            .file_name("wind.txt")
            .mime_str("text/plain")
            .unwrap();
        let form = reqwest::multipart::Form::new().part("file", part);
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        Resp {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    async fn openapi(&self) -> Value {
        self.http
            .get(format!("{}/openapi.json", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Every route that can invoke a model, with a request that reaches the model. `{c}` is a
/// collection created beforehand.
fn model_routes(c: &str) -> Vec<(&'static str, String, Value)> {
    vec![
        (
            "POST",
            "/v1/chat/completions".into(),
            json!({"model": "pol-oai", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "POST",
            "/v1/messages".into(),
            json!({"model": "pol-oai", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "POST",
            "/v1/embeddings".into(),
            json!({"model": "text-embedding-3-small", "input": "hi"}),
        ),
        (
            "POST",
            format!("/v1/rag/collections/{c}/documents"),
            json!({"documents": [{"id": "d1", "text": "Solar panels turn sunlight into electricity."}]}),
        ),
        (
            "POST",
            format!("/v1/rag/collections/{c}/search"),
            json!({"query": "solar"}),
        ),
        (
            "POST",
            format!("/v1/rag/collections/{c}/answer"),
            json!({"question": "What do solar panels do?", "model": "pol-oai", "max_tokens": 4}),
        ),
        (
            "POST",
            "/v1/memories".into(),
            json!({"text": "The user likes tea"}),
        ),
        (
            "POST",
            "/v1/memories/search".into(),
            json!({"query": "tea"}),
        ),
        (
            "POST",
            "/v1/agents/graphs/approval/runs".into(),
            json!({"input": {"request": "Please refund order 1234."}}),
        ),
        (
            "POST",
            "/v1/agents/graphs/assistant/runs".into(),
            // AgentState::user("hi"), as the graph's `input_example` shows it.
            json!({"input": {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}}),
        ),
    ]
}

/// Asserts that `r` is the refusal `reference` (same status; same error code, or for the Anthropic
/// route the same status in Anthropic's error shape).
fn same_refusal(path: &str, r: &Resp, reference: &Resp) {
    assert_eq!(r.status, reference.status, "{path}: {:?}", r.body);
    if path == "/v1/messages" {
        assert_eq!(r.body["type"], "error", "{path}: {:?}", r.body);
    } else {
        assert_eq!(
            r.body["error"]["code"], reference.body["error"]["code"],
            "{path}: {:?}",
            r.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_policy_holds_on_every_route_that_invokes_a_model_in_a_fresh_server() {
    let s = Server::start().await;
    // Every POST route of the OpenAPI document is either in the model table (it calls a model
    // while the request is open) or named here with the reason it does not, so a new route has to
    // be classified before this test passes.
    let doc = s.openapi().await;
    let no_model_in_the_request: BTreeSet<&str> = [
        "/v1/rag/collections",                    // creates an empty collection
        "/v1/rag/collections/{collection}/crawl", // a detached job: its calls use the same router
        "/v1/rag/collections/{collection}/jobs",  // likewise (asynchronous ingestion)
        "/v1/agents/runs/{run_id}/resume",        // needs an interrupted run: see the agents test
        "/v1/conversations",                      // stores a thread
        "/v1/feedback",                           // stores a rating
        "/v1/messages/count_tokens",              // counts locally
    ]
    .into();
    let table: BTreeSet<String> = model_routes("{collection}")
        .into_iter()
        .map(|(_, p, _)| {
            p.replace("graphs/approval", "graphs/{graph}")
                .replace("graphs/assistant", "graphs/{graph}")
        })
        .chain(["/v1/rag/collections/{collection}/files".to_owned()])
        .collect();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if item.get("post").is_some() && !no_model_in_the_request.contains(path.as_str()) {
            assert!(
                table.contains(path),
                "POST {path} is neither in the model table nor listed as model-free"
            );
        }
    }

    for (case, config) in [
        ("allow-list", json!({"allowed_models": ["no-such-model"]})),
        ("budget", json!({"budgets": {"monthly_usd": 0.0}})),
        ("tokens", json!({"budgets": {"monthly_tokens": 0}})),
        (
            "rpm",
            json!({"rate_limits": {"per_key_rpm": 1, "burst": 0}}),
        ),
    ] {
        let (tenant, key) = s.tenant("pol", &["admin"]).await;
        s.create_collection(&key, "kb").await;
        s.put_config(&tenant, config).await;
        if case == "rpm" {
            // The key's one request of the minute, on a route that calls no model.
            let r = s.call("GET", "/v1/models", &key, None).await;
            assert_eq!(r.status, 200, "{case}: {:?}", r.body);
        }
        let upstream_before = s.mock.requests().len();
        let routes = model_routes("kb");
        // The reference: what the chat API answers.
        let (m, p, b) = &routes[0];
        let reference = s.call(m, p, &key, Some(b.clone())).await;
        assert!(
            matches!(reference.status, 402 | 403 | 429),
            "{case}: {:?}",
            reference.body
        );
        for (method, path, body) in &routes[1..] {
            let r = s.call(method, path, &key, Some(body.clone())).await;
            same_refusal(path, &r, &reference);
        }
        let r = s.upload(&key, "/v1/rag/collections/kb/files").await;
        same_refusal("files", &r, &reference);
        assert_eq!(
            s.mock.requests().len(),
            upstream_before,
            "{case}: a refused tenant reached the upstream model"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_403_of_every_route_is_audited_and_every_state_change_too() {
    let s = Server::start().await;
    // A key whose only role grants nothing: every guarded route refuses it.
    let (tenant, admin) = s.tenant("aud", &["admin"]).await;
    let r = s
        .call(
            "PUT",
            "/v1/admin/config",
            &admin,
            Some(json!({"roles": {"nobody": []}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let nobody = s.key(&tenant, &["nobody"]).await;
    let doc = s.openapi().await;
    let mut forbidden = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") {
            continue;
        }
        let concrete = path
            .replace("{collection}", "kb")
            .replace("{document_id}", "d1")
            .replace("{graph}", "approval")
            .replace("{run_id}", "run_x")
            .replace("{thread_id}", "t1")
            .replace("{id}", "x1")
            .replace("{user}", "u1");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let body = (method != "get" && method != "delete").then(|| json!({}));
            let method = method.to_uppercase();
            let r = s.call(&method, &concrete, &nobody, body).await;
            assert!(
                r.status < 500,
                "{method} {concrete}: {} {:?}",
                r.status,
                r.body
            );
            if r.status == 403 {
                forbidden.push(concrete.clone());
            }
        }
    }
    assert!(
        forbidden.len() >= 20,
        "a key without permissions is refused almost everywhere: {forbidden:?}"
    );
    let records = s.audit(&tenant).await;
    let denied: Vec<&str> = records
        .iter()
        .filter(|r| r["action"] == "access.denied")
        .map(|r| r["target"].as_str().unwrap_or(""))
        .collect();
    for path in &forbidden {
        assert!(
            denied.iter().any(|t| t.contains(path.as_str())),
            "403 on {path} left no access.denied record; denied targets: {denied:?}"
        );
    }

    // State changes: each leaves its record (the admin routes and memories write their own).
    s.create_collection(&admin, "kb").await;
    let r = s
        .call(
            "POST",
            "/v1/rag/collections/kb/documents",
            &admin,
            Some(json!({"documents": [{"id": "d1", "text": "Solar panels turn sunlight into electricity."}]})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = s
        .call(
            "DELETE",
            "/v1/rag/collections/kb/documents/d1",
            &admin,
            None,
        )
        .await;
    assert!(r.status < 300, "{:?}", r.body);
    let records = s.audit(&tenant).await;
    let actions: Vec<&str> = records
        .iter()
        .filter(|r| r["outcome"] == "success")
        .map(|r| r["action"].as_str().unwrap_or(""))
        .collect();
    for want in [
        "config.updated",
        "rag.created",
        "rag.ingested",
        "rag.deleted",
    ] {
        assert!(actions.contains(&want), "no {want} record in {actions:?}");
    }
    // A query (search) is not a state change.
    let before = records.len();
    let r = s
        .call(
            "POST",
            "/v1/rag/collections/kb/search",
            &admin,
            Some(json!({"query": "solar"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(s.audit(&tenant).await.len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_matches_the_documented_roles() {
    let s = Server::start().await;
    let (tenant, viewer) = s.tenant("rbac", &["viewer"]).await;
    // A viewer may search but not answer (answering invokes the chat model).
    let r = s
        .call(
            "POST",
            "/v1/rag/collections/kb/answer",
            &viewer,
            Some(json!({"question": "q", "model": "pol-oai"})),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chat:invoke"),
        "{:?}",
        r.body
    );
    // `system` in a token grants nothing, and no key can be created with it.
    let r = s
        .call("GET", "/v1/admin/config", &jwt(&tenant, &["system"]), None)
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = s
        .call(
            "POST",
            &format!("/v1/admin/tenants/{tenant}/keys"),
            &platform(),
            Some(json!({"name": "k", "roles": ["system"]})),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    // Reserved tenant ids.
    for id in ["_platform", "_x", "platform"] {
        let r = s
            .call(
                "POST",
                "/v1/admin/tenants",
                &platform(),
                Some(json!({"id": id, "name": id})),
            )
            .await;
        assert_eq!(r.status, 400, "{id}: {:?}", r.body);
    }
    // Refusals for an unknown tenant are on the platform chain, which the platform admin reads;
    // a tenant cannot read another chain.
    let ghost = jwt("ghost-tenant", &["owner"]);
    let r = s.call("GET", "/v1/models", &ghost, None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    let records = s.audit("_platform").await;
    assert!(
        records
            .iter()
            .any(|r| r["action"] == "auth.failed" && r["target"] == "tenant:ghost-tenant"),
        "{records:?}"
    );
    let (_, owner) = s.tenant("rbac-own", &["owner"]).await;
    let r = s
        .call("GET", "/v1/admin/audit?tenant=_platform", &owner, None)
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = s
        .call(
            "GET",
            "/v1/admin/audit/verify?tenant=_platform",
            &platform(),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_runs_are_admitted_against_the_tenant_limit_even_when_clients_hang_up() {
    let s = Server::start_with(&[("WATTOS_SERVER__MAX_BACKGROUND_TASKS_PER_TENANT", "2")]).await;
    let (_, key) = s.tenant("adm", &["member"]).await;
    // Each model call takes 3 s, so a run holds its slot that long.
    for _ in 0..4 {
        s.mock.push_fault(wattos_llm::testing::Fault::Latency(
            std::time::Duration::from_secs(3),
        ));
    }
    let start = |n: u32| {
        s.http
            .post(format!("{}/v1/agents/graphs/approval/runs", s.base))
            .bearer_auth(&key)
            .json(&json!({"input": {"request": format!("Refund order {n}.")}, "stream": true}))
            .send()
    };
    // Two streamed runs whose clients hang up as soon as the stream starts.
    for n in 0..2 {
        let resp = start(n).await.unwrap();
        assert_eq!(resp.status(), 200);
        drop(resp);
    }
    // The runs go on without their clients and hold the tenant's two slots: a third is refused.
    let resp = start(2).await.unwrap();
    assert_eq!(resp.status(), 429, "{}", resp.text().await.unwrap());
    // Also when not streamed, and no run row was left behind for the refused ones.
    let r = s
        .call(
            "POST",
            "/v1/agents/graphs/approval/runs",
            &key,
            Some(json!({"input": {"request": "again"}})),
        )
        .await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    let runs = s.call("GET", "/v1/agents/runs", &key, None).await;
    assert_eq!(
        runs.body["data"].as_array().unwrap().len(),
        2,
        "{:?}",
        runs.body
    );
    // Once the detached runs end, the slots are free again.
    let mut admitted = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let r = s
            .call(
                "POST",
                "/v1/agents/graphs/approval/runs",
                &key,
                Some(json!({"input": {"request": "later"}})),
            )
            .await;
        if r.status == 200 {
            admitted = true;
            break;
        }
        assert_eq!(r.status, 429, "{:?}", r.body);
    }
    assert!(admitted, "the slots were never given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_max_concurrent_holds_in_the_auth_layer() {
    let s = Server::start().await;
    let (tenant, key) = s.tenant("conc", &["admin"]).await;
    s.put_config(&tenant, json!({"rate_limits": {"max_concurrent": 1}}))
        .await;
    // The first call holds the tenant's one slot for 2 s (a slow upstream).
    s.mock.push_fault(wattos_llm::testing::Fault::Latency(
        std::time::Duration::from_secs(2),
    ));
    let body = json!({"model": "pol-oai", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]});
    let slow = s.call("POST", "/v1/chat/completions", &key, Some(body.clone()));
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        s.call("GET", "/v1/models", &key, None).await
    };
    let (slow, second) = tokio::join!(slow, second);
    assert_eq!(slow.status, 200, "{:?}", slow.body);
    assert_eq!(second.status, 429, "{:?}", second.body);
    assert!(
        second.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit 1"),
        "{:?}",
        second.body
    );
    // The slot came back with the first response.
    assert_eq!(s.call("GET", "/v1/models", &key, None).await.status, 200);
}

/// The upstream model of the mock's last chat request.
fn last_chat_model(mock: &MockServer) -> Value {
    mock.requests()
        .iter()
        .rev()
        .find(|r| r.path.ends_with("/chat/completions"))
        .map(|r| r.body["model"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_settings_choose_the_model_the_top_k_the_step_ceiling_and_approvals() {
    let s = Server::start_full(true, &[]).await;
    let (tenant, key) = s.tenant("defaults", &["admin"]).await;
    s.create_collection(&key, "kb").await;
    let docs: Vec<Value> = (0..8)
        .map(|i| json!({"id": format!("d{i}"), "text": format!("Solar panel fact number {i}: panels turn sunlight into electricity.")}))
        .collect();
    let r = s
        .call(
            "POST",
            "/v1/rag/collections/kb/documents",
            &key,
            Some(json!({"documents": docs})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let search = |body: Value| s.call("POST", "/v1/rag/collections/kb/search", &key, Some(body));
    let answer = || {
        s.call(
            "POST",
            "/v1/rag/collections/kb/answer",
            &key,
            Some(json!({"question": "What do solar panels do?", "max_tokens": 8})),
        )
    };

    // No tenant defaults: 5 results, the server's default model (the first served name).
    let r = search(json!({"query": "solar"})).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 5, "{:?}", r.body);
    let r = answer().await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["model"], "pol-oai");
    assert_eq!(r.body["sources"].as_array().unwrap().len(), 5);
    assert_eq!(last_chat_model(&s.mock), "gpt-4o-mini");

    s.put_config(
        &tenant,
        json!({"default_model": "pol-two", "rag": {"default_top_k": 2}, "agents": {"max_steps": 2}}),
    )
    .await;
    // rag.default_top_k: the top_k of requests that give none; an explicit one still wins.
    let r = search(json!({"query": "solar"})).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2, "{:?}", r.body);
    let r = search(json!({"query": "solar", "top_k": 3})).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 3, "{:?}", r.body);
    // default_model: a RAG answer without a model goes to it (and retrieves default_top_k).
    let r = answer().await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["model"], "pol-two");
    assert_eq!(r.body["sources"].as_array().unwrap().len(), 2);
    assert_eq!(last_chat_model(&s.mock), "gpt-4o");
    // ... and so do the built-in agent graphs, whose model calls name none.
    let r = s
        .call(
            "POST",
            "/v1/agents/graphs/approval/runs",
            &key,
            Some(json!({"input": {"request": "Please refund order 1234."}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "interrupted", "{:?}", r.body);
    assert_eq!(last_chat_model(&s.mock), "gpt-4o");

    // agents.max_steps: the assistant needs three supersteps here (model -> tool -> model), so
    // a ceiling of 2 stops it, whatever the graph's own limit; 3 lets it finish.
    let assistant = || {
        s.call(
            "POST",
            "/v1/agents/graphs/assistant/runs",
            &key,
            Some(json!({"input": {"messages": [{"role": "user", "content": [{"type": "text", "text": "What do my documents say about solar panels?"}]}]}})),
        )
    };
    let r = assistant().await;
    assert_eq!(r.status, 402, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "budget_exceeded", "{:?}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("step limit of 2"),
        "{:?}",
        r.body
    );
    s.put_config(&tenant, json!({"agents": {"max_steps": 3}}))
        .await;
    let r = assistant().await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "completed", "{:?}", r.body);
    assert_eq!(r.body["steps"], 3, "{:?}", r.body);
    // Back to no tenant default model: the server's default again.
    let r = answer().await;
    assert_eq!(r.body["model"], "pol-oai", "{:?}", r.body);

    // agents.approval_required_tools: the same run now stops before its tool call for a human.
    s.put_config(
        &tenant,
        json!({"agents": {"approval_required_tools": ["search_documents"]}}),
    )
    .await;
    let r = assistant().await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "interrupted", "{:?}", r.body);
    let ask = &r.body["interrupts"][0]["value"];
    assert_eq!(ask["type"], "tool_approval", "{:?}", r.body);
    assert_eq!(ask["tool"], "search_documents", "{:?}", r.body);
    let run = r.body["id"].as_str().unwrap().to_owned();
    let r = s
        .call(
            "POST",
            &format!("/v1/agents/runs/{run}/resume"),
            &key,
            Some(json!({"action": "approve"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "completed", "{:?}", r.body);

    // The server's default is held to the allow-list like a named model: a tenant that may not
    // use it is refused until it names a default of its own.
    s.put_config(&tenant, json!({"allowed_models": ["pol-two"]}))
        .await;
    let r = answer().await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    s.put_config(
        &tenant,
        json!({"allowed_models": ["pol-two"], "default_model": "pol-two"}),
    )
    .await;
    let r = answer().await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["model"], "pol-two", "{:?}", r.body);

    // rag.max_documents: the tenant has 8 documents; a quota of 9 admits one new document,
    // updates of stored ones, and refuses the rest before anything is stored.
    s.put_config(&tenant, json!({"rag": {"max_documents": 9}}))
        .await;
    let ingest = |ids: &[&str]| {
        let docs: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "text": format!("Document {id} about wind power.")}))
            .collect();
        s.call(
            "POST",
            "/v1/rag/collections/kb/documents",
            &key,
            Some(json!({"documents": docs})),
        )
    };
    let r = ingest(&["n1", "n2"]).await;
    assert_eq!(r.status, 402, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "budget_exceeded", "{:?}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_documents"),
        "{:?}",
        r.body
    );
    let r = ingest(&["d0", "d1", "n1"]).await;
    assert_eq!(
        r.status, 200,
        "updates and one new document fit: {:?}",
        r.body
    );
    let r = ingest(&["n2"]).await;
    assert_eq!(r.status, 402, "{:?}", r.body);
    let r = s
        .call("DELETE", "/v1/rag/collections/kb/documents/d7", &key, None)
        .await;
    assert!(r.status < 300, "{:?}", r.body);
    let r = ingest(&["n2"]).await;
    assert_eq!(
        r.status, 200,
        "a deleted document frees its place: {:?}",
        r.body
    );
    let listed = s.call("GET", "/v1/rag/collections/kb", &key, None).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(listed.body["document_count"], 9, "{:?}", listed.body);
}

/// Ingestion jobs are admitted against the tenant's limit of outstanding jobs at submission: the
/// excess is refused with 429 + Retry-After and nothing is queued; the slot comes back when the job
/// ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_jobs_are_admitted_against_the_tenants_outstanding_limit() {
    // No local model here, and `jobs.embedding_model` left at its default (the local MiniLM):
    // the jobs still run, through the RAG service and its embedding model.
    let s = Server::start_with(&[("WATTOS_JOBS__MAX_OUTSTANDING_PER_TENANT", "1")]).await;
    let (_tenant, key) = s.tenant("jobs", &["admin"]).await;
    s.create_collection(&key, "kb").await;
    let submit = |n: u32| {
        s.call(
            "POST",
            "/v1/rag/collections/kb/jobs",
            &key,
            Some(json!({"documents": [{"id": format!("j{n}"), "text": format!("Job document {n} on tides.")}]})),
        )
    };
    // The first job's embedding call is slow, so the job is still running below.
    s.mock.push_fault(wattos_llm::testing::Fault::Latency(
        std::time::Duration::from_millis(1500),
    ));
    let first = submit(1).await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let r = submit(2).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "rate_limited", "{:?}", r.body);
    // Resubmitting the outstanding job is a duplicate, not a refusal.
    let again = submit(1).await;
    assert_eq!(again.status, 202, "{:?}", again.body);
    assert_eq!(again.body["duplicate"], true, "{:?}", again.body);
    let url = first.body["status_url"].as_str().unwrap().to_owned();
    let mut state = String::new();
    for _ in 0..100 {
        let r = s.call("GET", &url, &key, None).await;
        state = r.body["state"].as_str().unwrap_or("").to_owned();
        if state == "succeeded" || state == "dead_lettered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(state, "succeeded");
    let r = submit(2).await;
    assert_eq!(r.status, 202, "the slot came back: {:?}", r.body);
}
