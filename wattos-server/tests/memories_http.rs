//! Long-term memories over HTTP with authentication on: users of one tenant and the same user id in
//! another tenant never see each other's memories (list, search, get, delete); a tenant admin
//! erases one user's memories in their own tenant only; writes and erasures are audited; TTLs
//! expire; the routes are in the OpenAPI document; a conversation that opts in recalls the caller's
//! memories into the prompt. Searches rank with the local MiniLM (the server's default) when the
//! model cache is there.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "auth_support.rs"]
mod auth_support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use wattos_core::config::Config;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::*;
use wattos_core::tenancy::{Tenant, TenantStore};
use wattos_core::{RequestContext, Result, TenantId};
use wattos_server::auth::{Auth, AuthParts, JwtAuthenticator, JwtConfig, JwtKeys, KeyHasher};
use wattos_server::conversations::ConversationServices;
use wattos_server::gateway::ModelCatalog;
use wattos_server::memories::MemoryService;
use wattos_server::{AppState, app};

use auth_support::{AUD, HS_SECRET, ISS, PEPPER, claims, hs_token, sqlite_store};
use wattos_server::auth::now_ms;

/// Answers with the text of every system message it was sent (so a test sees recalled memories).
struct SystemEcho;

#[async_trait]
impl ChatModel for SystemEcho {
    fn name(&self) -> &str {
        "system-echo"
    }
    async fn chat(&self, _ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
        let text = req
            .messages
            .iter()
            .filter(|m| matches!(m, Message::System { .. }))
            .map(Message::text)
            .collect::<Vec<_>>()
            .join("\n");
        Ok(ChatResponse {
            id: "e1".into(),
            model: req.model.clone(),
            content: Some(format!("system: {text}")),
            tool_calls: vec![],
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            cost: None,
            provider_fields: Default::default(),
        })
    }
}

fn embedder() -> (Arc<dyn EmbeddingModel>, bool) {
    let dir = wattos_llm::local::default_models_dir();
    match wattos_llm::local::MiniLmEmbedder::from_models_dir(&dir) {
        Ok(m) => (Arc::new(m), true),
        Err(e) => {
            let why = format!("MiniLM: {e} (models dir {})", dir.display());
            wattos_core::test_utils::skip::skip(
                "semantic ranking over HTTP (a hashing embedder stands in)",
                &why,
            );
            (
                wattos_core::test_utils::embed::HashingEmbedder::shared(64),
                false,
            )
        }
    }
}

struct Server {
    base: String,
    http: reqwest::Client,
}

impl Server {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
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
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

async fn start(dir: &std::path::Path) -> (Server, bool) {
    let config = Config::from_sources(
        None,
        vec![("WATTOS_DATA_DIR".to_string(), dir.display().to_string())],
    )
    .unwrap();
    let (embed, semantic) = embedder();
    let mut catalog = ModelCatalog::default();
    catalog.add_chat("system-echo", "wattos", Arc::new(SystemEcho));
    catalog.add_embedding(
        wattos_server::bootstrap::LOCAL_EMBEDDING_MODEL,
        "wattos",
        embed,
    );
    let memories = MemoryService::open(&config, &catalog).await.unwrap();
    let conversations = ConversationServices::open(&config)
        .await
        .unwrap()
        .with_memories(memories.store().clone());

    let store = sqlite_store().await;
    for id in ["platform", "acme", "globex"] {
        store
            .create_tenant(&Tenant {
                id: TenantId::new(id).unwrap(),
                name: id.into(),
                disabled: false,
                created_at_ms: now_ms(),
            })
            .await
            .unwrap();
    }
    let mut parts = AuthParts::embedded(store, KeyHasher::new(PEPPER).unwrap());
    parts.cache_ttl = Duration::from_millis(0);
    let cfg = JwtConfig::new(JwtKeys::Hs256(HS_SECRET.to_vec()))
        .with_issuer(ISS)
        .with_audience(AUD)
        .with_leeway(Duration::from_secs(5));
    parts.jwt = Some(Arc::new(
        JwtAuthenticator::new(cfg, parts.revocations.clone()).unwrap(),
    ));
    let state = AppState::with_parts(config.clone(), AppState::default_health(&config), catalog)
        .with_auth(Some(Auth::new(parts)))
        .with_conversations(Some(conversations))
        .with_memories(Some(memories));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
    (
        Server {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        },
        semantic,
    )
}

fn token(tenant: &str, sub: &str, role: &str) -> String {
    hs_token(&claims(tenant, sub, &[role]))
}

fn texts(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d.get("memory")
                .unwrap_or(d)
                .get("text")
                .and_then(Value::as_str)
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memories_stay_with_their_user_and_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let (s, semantic) = start(dir.path()).await;
    let ann = token("acme", "ann", "member");
    let bob = token("acme", "bob", "member");
    let globex_ann = token("globex", "ann", "member");
    let acme_admin = token("acme", "root", "admin");
    let globex_admin = token("globex", "root", "admin");

    let (st, allergy) = s
        .call(
            "POST",
            "/v1/memories",
            &ann,
            Some(
                json!({"text": "I am allergic to penicillin.", "namespace": ["health"],
                        "metadata": {"kind": "health"}}),
            ),
        )
        .await;
    assert_eq!(st, 201, "{allergy}");
    assert_eq!(allergy["object"], "memory");
    assert_eq!(
        allergy["namespace"],
        json!({"user": "ann", "path": ["health"]})
    );
    let ann_id = allergy["id"].as_str().unwrap().to_owned();
    for (t, text) in [
        (
            &ann,
            "Doctors should avoid giving me long waits, I hate queues.",
        ),
        (&bob, "Bob is allergic to cats."),
        (&globex_ann, "Globex Ann takes aspirin daily."),
    ] {
        let (st, b) = s
            .call("POST", "/v1/memories", t, Some(json!({"text": text})))
            .await;
        assert_eq!(st, 201, "{b}");
    }
    // Reserved metadata and bad namespaces are rejected.
    let (st, _) = s
        .call(
            "POST",
            "/v1/memories",
            &ann,
            Some(json!({"text": "x", "metadata": {"wattos_mem.user": "bob"}})),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .call(
            "POST",
            "/v1/memories",
            &ann,
            Some(json!({"text": "x", "namespace": ["a/b"]})),
        )
        .await;
    assert_eq!(st, 400);

    // Ann finds her memory by meaning.
    let query = json!({"query": "which medicines must doctors not give me"});
    let (st, hits) = s
        .call("POST", "/v1/memories/search", &ann, Some(query.clone()))
        .await;
    assert_eq!(st, 200, "{hits}");
    assert_eq!(texts(&hits).len(), 2);
    if semantic {
        assert_eq!(texts(&hits)[0], "I am allergic to penicillin.", "{hits}");
        assert_eq!(hits["data"][0]["matched_by"], "semantic");
    }
    let (_, filtered) = s
        .call(
            "POST",
            "/v1/memories/search",
            &ann,
            Some(json!({"query": "doctors", "filter": {"eq": {"key": "kind", "value": "health"}}})),
        )
        .await;
    assert_eq!(texts(&filtered), ["I am allergic to penicillin."]);

    // Bob (same tenant) and Ann of globex (same user id, other tenant) see nothing of hers.
    for (who, t, own) in [
        ("bob", &bob, "Bob is allergic to cats."),
        ("globex ann", &globex_ann, "Globex Ann takes aspirin daily."),
    ] {
        let (_, hits) = s
            .call("POST", "/v1/memories/search", t, Some(query.clone()))
            .await;
        assert_eq!(texts(&hits), [own], "{who} searched: {hits}");
        let (_, list) = s.call("GET", "/v1/memories", t, None).await;
        assert_eq!(texts(&list), [own], "{who} listed: {list}");
        let (st, _) = s
            .call(
                "GET",
                &format!("/v1/memories/{ann_id}?namespace=health"),
                t,
                None,
            )
            .await;
        assert_eq!(st, 404, "{who} read ann's memory");
        let (st, _) = s
            .call(
                "DELETE",
                &format!("/v1/memories/{ann_id}?namespace=health"),
                t,
                None,
            )
            .await;
        assert_eq!(st, 404, "{who} deleted ann's memory");
    }
    let (st, one) = s
        .call(
            "GET",
            &format!("/v1/memories/{ann_id}?namespace=health"),
            &ann,
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(one["text"], "I am allergic to penicillin.");

    // A conversation that opts in recalls Ann's memories (and only hers) into the prompt.
    let (st, conv) = s
        .call(
            "POST",
            "/v1/conversations",
            &ann,
            Some(json!({"metadata": {"recall_memories": true}})),
        )
        .await;
    assert_eq!(st, 201, "{conv}");
    let (st, answer) = s
        .call(
            "POST",
            "/v1/chat/completions",
            &ann,
            Some(json!({"model": "system-echo", "conversation_id": conv["id"],
                        "messages": [{"role": "user", "content": "Which medicines should doctors avoid giving me?"}]})),
        )
        .await;
    assert_eq!(st, 200, "{answer}");
    let seen = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(seen.contains("penicillin"), "{seen}");
    assert!(
        !seen.contains("cats") && !seen.contains("aspirin"),
        "{seen}"
    );
    // Without the opt-in nothing is recalled.
    let (_, plain) = s
        .call("POST", "/v1/conversations", &ann, Some(json!({})))
        .await;
    let (_, answer) = s
        .call(
            "POST",
            "/v1/chat/completions",
            &ann,
            Some(json!({"model": "system-echo", "conversation_id": plain["id"],
                        "messages": [{"role": "user", "content": "Which medicines should doctors avoid giving me?"}]})),
        )
        .await;
    let seen = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!seen.contains("penicillin"), "{seen}");

    // TTL over HTTP.
    let (st, _) = s
        .call(
            "POST",
            "/v1/memories",
            &ann,
            Some(json!({"text": "My parking spot today is B12.", "ttl_seconds": 1})),
        )
        .await;
    assert_eq!(st, 201);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (_, list) = s.call("GET", "/v1/memories", &ann, None).await;
    assert_eq!(texts(&list).len(), 2, "the expired memory is gone: {list}");

    // Erasure: members may not erase others; a tenant admin erases only within the tenant.
    let (st, _) = s
        .call("DELETE", "/v1/admin/users/ann/memories", &bob, None)
        .await;
    assert_eq!(st, 403);
    let (st, gone) = s
        .call(
            "DELETE",
            "/v1/admin/users/ann/memories",
            &globex_admin,
            None,
        )
        .await;
    assert_eq!(st, 200, "{gone}");
    assert_eq!(gone["deleted"], 1);
    let (_, list) = s.call("GET", "/v1/memories", &ann, None).await;
    assert_eq!(texts(&list).len(), 2, "globex's admin did not touch acme");
    let (_, gone) = s
        .call("DELETE", "/v1/admin/users/ann/memories", &acme_admin, None)
        .await;
    // Her two memories plus the expired one not yet purged: erasure takes every stored row.
    assert_eq!(gone["deleted"], 3, "{gone}");
    let (_, list) = s.call("GET", "/v1/memories", &ann, None).await;
    assert!(texts(&list).is_empty());
    let (_, list) = s.call("GET", "/v1/memories", &bob, None).await;
    assert_eq!(texts(&list).len(), 1, "bob's memories stay");
    // Bob erases his own.
    let (_, gone) = s.call("DELETE", "/v1/memories", &bob, None).await;
    assert_eq!(gone["deleted"], 1);

    // Audited.
    let (st, audit) = s.call("GET", "/v1/admin/audit", &acme_admin, None).await;
    assert_eq!(st, 200, "{audit}");
    let audit = audit.to_string();
    for action in ["memory.stored", "memory.user_erased"] {
        assert!(audit.contains(action), "{action} missing from {audit}");
    }

    // In the OpenAPI document.
    let doc: Value = s
        .http
        .get(format!("{}/openapi.json", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/memories",
        "/v1/memories/search",
        "/v1/memories/{id}",
        "/v1/admin/users/{user}/memories",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} not documented");
    }
}
