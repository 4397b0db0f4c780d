//! Conversations and feedback over HTTP: a thread survives a server restart (SQLite under
//! `data_dir`) and continues through `/v1/chat/completions` with history trimmed to the model's
//! context window; RAG answers and streamed answers continue a thread too, and a failed stream
//! stores nothing; retention deletes only expired threads of tenants that set it; feedback is
//! recorded, reported and exported as a BEIR set; the routes are in the OpenAPI document.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Value, json};
use wattos_core::config::Config;
use wattos_core::llm::*;
use wattos_core::{RequestContext, Result};
use wattos_server::conversations::{CONVERSATION_HEADER, ConversationServices};
use wattos_server::gateway::ModelCatalog;
use wattos_server::{AppState, app};

/// Answers with how many messages it was sent and the last user text; records each request.
/// A 400-token context window, so long threads must be trimmed. Streams word by word; a last user
/// message containing "break" fails mid-stream.
struct Counter {
    seen: Arc<Mutex<Vec<Vec<Message>>>>,
}

fn last_user(req: &ChatRequest) -> String {
    req.messages
        .iter()
        .rev()
        .find(|m| matches!(m, Message::User { .. }))
        .map(Message::text)
        .unwrap_or_default()
}

#[async_trait]
impl ChatModel for Counter {
    fn name(&self) -> &str {
        "counter"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            context_window: Some(400),
            max_output_tokens: Some(50),
            ..Capabilities::default()
        }
    }
    async fn chat_stream(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatStream> {
        let broken = last_user(&req).contains("break");
        let resp = self.chat(ctx, req).await?;
        let mut items: Vec<Result<ChatDelta>> = Vec::new();
        for word in resp.text().split_inclusive(' ') {
            items.push(Ok(ChatDelta::Text { text: word.into() }));
            if broken {
                items.push(Err(wattos_core::Error::upstream(
                    "counter",
                    Some(500),
                    true,
                    "connection reset mid-stream",
                )));
                return Ok(futures::stream::iter(items).boxed());
            }
        }
        items.push(Ok(ChatDelta::Usage(resp.usage)));
        items.push(Ok(ChatDelta::Finish {
            reason: FinishReason::Stop,
        }));
        Ok(futures::stream::iter(items).boxed())
    }
    async fn chat(&self, _ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
        let last = last_user(&req);
        let text = format!("saw {} messages; last: {last}", req.messages.len());
        self.seen.lock().unwrap().push(req.messages.clone());
        Ok(ChatResponse {
            id: "c1".into(),
            model: req.model.clone(),
            content: Some(text),
            tool_calls: vec![],
            finish_reason: FinishReason::Stop,
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                cached_input_tokens: 0,
            },
            cost: Some(Cost {
                input_usd: 0.001,
                cached_input_usd: 0.0,
                output_usd: 0.002,
            }),
            provider_fields: Default::default(),
        })
    }
}

struct Server {
    base: String,
    task: tokio::task::JoinHandle<()>,
}

async fn start(dir: &std::path::Path, seen: Arc<Mutex<Vec<Vec<Message>>>>) -> Server {
    let config = Config::from_sources(
        None,
        vec![("WATTOS_DATA_DIR".to_string(), dir.display().to_string())],
    )
    .unwrap();
    let mut catalog = ModelCatalog::default();
    catalog.add_chat("counter-1", "wattos", Arc::new(Counter { seen }));
    catalog.add_embedding(
        "hashing-embedder",
        "wattos",
        wattos_core::test_utils::embed::HashingEmbedder::shared(64),
    );
    let services = ConversationServices::open(&config).await.unwrap();
    let (rag, _) = wattos_server::apis::build_services(&config, &catalog, None)
        .await
        .unwrap();
    let state = AppState::with_parts(config.clone(), AppState::default_health(&config), catalog)
        .with_rag(rag)
        .with_conversations(Some(services));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app(state)).await.unwrap();
    });
    Server {
        base: format!("http://{addr}"),
        task,
    }
}

async fn chat(
    c: &reqwest::Client,
    base: &str,
    conv: &str,
    text: &str,
) -> (u16, Value, Option<String>) {
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({
            "model": "counter-1",
            "messages": [{"role": "user", "content": text}],
            "conversation_id": conv,
        }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let header = r
        .headers()
        .get(CONVERSATION_HEADER)
        .map(|v| v.to_str().unwrap().to_owned());
    (status, r.json().await.unwrap(), header)
}

#[tokio::test]
async fn thread_survives_restart_and_continues_with_trimmed_history() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let c = reqwest::Client::new();
    let server = start(dir.path(), seen.clone()).await;
    let base = server.base.clone();

    let r = c
        .post(format!("{base}/v1/conversations"))
        .json(&json!({"title": "Heat pumps", "model": "counter-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let conv: Value = r.json().await.unwrap();
    let id = conv["id"].as_str().unwrap().to_owned();
    assert_eq!(conv["object"], "conversation");

    for i in 0..20 {
        let (status, body, header) = chat(
            &c,
            &base,
            &id,
            &format!("question {i}: how do heat pumps behave on a cold winter night, in detail?"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(header.as_deref(), Some(id.as_str()));
        assert_eq!(body["object"], "chat.completion");
    }
    // A plain OpenAI request (no conversation_id) is untouched: the model sees one message.
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "counter-1", "messages": [{"role": "user", "content": "solo"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get(CONVERSATION_HEADER).is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "saw 1 messages; last: solo"
    );

    // Restart: a new process state over the same data_dir.
    server.task.abort();
    let _ = server.task.await;
    let server = start(dir.path(), seen.clone()).await;
    let base = server.base.clone();

    let got: Value = c
        .get(format!("{base}/v1/conversations/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["message_count"], 40);
    assert_eq!(got["input_tokens"], 200);
    assert_eq!(got["output_tokens"], 100);
    assert!((got["cost_usd"].as_f64().unwrap() - 0.06).abs() < 1e-9);

    let (status, body, _) = chat(&c, &base, &id, "final question after the restart").await;
    assert_eq!(status, 200, "{body}");
    let answer = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        answer.ends_with("last: final question after the restart"),
        "{answer}"
    );
    let sent = seen.lock().unwrap().last().unwrap().clone();
    // History was trimmed to the window (400 - 50 reserved) but keeps the newest turns in order.
    assert!(
        sent.len() < 41 && sent.len() >= 3,
        "sent {} messages",
        sent.len()
    );
    assert_eq!(
        sent.last().unwrap(),
        &Message::user("final question after the restart")
    );
    assert_eq!(sent[sent.len() - 2].text(), {
        let prev = &seen.lock().unwrap()[19];
        format!(
            "saw {} messages; last: {}",
            prev.len(),
            prev.last().unwrap().text()
        )
    });
    let tokens: usize = sent
        .iter()
        .map(wattos_agents::memory::approximate_tokens)
        .sum();
    assert!(tokens <= 350, "{tokens} tokens sent");

    let msgs: Value = c
        .get(format!("{base}/v1/conversations/{id}/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        msgs["data"].as_array().unwrap().len(),
        42,
        "nothing was lost"
    );

    // Rename, list, export, errors, delete.
    let r = c
        .patch(format!("{base}/v1/conversations/{id}"))
        .json(&json!({"title": "Winter heat pumps"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = c
        .get(format!("{base}/v1/conversations?limit=10"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["title"], "Winter heat pumps");
    let export: Value = c
        .get(format!("{base}/v1/conversations/{id}/export"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(export["messages"].as_array().unwrap().len(), 42);
    let r = c
        .patch(format!("{base}/v1/conversations/{id}"))
        .json(&json!({"title": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_input");
    let (status, body, _) = chat(&c, &base, "no-such-thread", "hi").await;
    assert_eq!(status, 404, "{body}");
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "counter-1", "messages": [{"role": "user", "content": "x"}], "conversation_id": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(format!("{base}/v1/conversations?limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .delete(format!("{base}/v1/conversations/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(format!("{base}/v1/conversations/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

async fn new_thread(c: &reqwest::Client, base: &str) -> String {
    let r = c
        .post(format!("{base}/v1/conversations"))
        .json(&json!({"title": "Energy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

async fn thread_messages(c: &reqwest::Client, base: &str, id: &str) -> Vec<Value> {
    let v: Value = c
        .get(format!("{base}/v1/conversations/{id}/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"].as_array().unwrap().clone()
}

/// The text of a stored message (its content parts joined).
fn text_of(m: &Value) -> String {
    match &m["message"]["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        other => panic!("no content: {other}"),
    }
}

/// `data:` payloads of an SSE body (event names ignored).
fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn rag_answers_and_streams_continue_a_thread() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let c = reqwest::Client::new();
    let server = start(dir.path(), seen.clone()).await;
    let base = server.base.clone();
    let r = c
        .post(format!("{base}/v1/rag/collections"))
        .json(&json!({"name": "energy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .post(format!("{base}/v1/rag/collections/energy/documents"))
        .json(&json!({"documents": [
            {"id": "pumps.md", "text": "Heat pumps move heat from outside air into the house."},
            {"id": "solar.md", "text": "Solar panels turn sunlight into electricity."}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let id = new_thread(&c, &base).await;
    let answer_url = format!("{base}/v1/rag/collections/energy/answer");
    let ask = |question: &str, stream: bool| {
        json!({"question": question, "conversation_id": id, "model": "counter-1",
               "top_k": 1, "context_tokens": 64, "max_tokens": 20, "stream": stream})
    };

    // First RAG turn: the model gets instructions + sources/question; the thread keeps the plain
    // question and the answer.
    let r = c
        .post(&answer_url)
        .json(&ask("What do heat pumps do?", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get(CONVERSATION_HEADER)
            .unwrap()
            .to_str()
            .unwrap(),
        id
    );
    let first: Value = r.json().await.unwrap();
    assert_eq!(seen.lock().unwrap().last().unwrap().len(), 2);
    let msgs = thread_messages(&c, &base, &id).await;
    assert_eq!(msgs.len(), 2);
    assert_eq!(text_of(&msgs[0]), "What do heat pumps do?");
    assert_eq!(text_of(&msgs[1]), first["answer"]);
    assert_eq!(msgs[1]["model"], "counter-1");

    // Follow-up: the earlier turn goes between the instructions and the new question.
    let r = c
        .post(&answer_url)
        .json(&ask("And in winter?", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent = seen.lock().unwrap().last().unwrap().clone();
    let roles: Vec<&str> = sent.iter().map(Message::role).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(sent[1], Message::user("What do heat pumps do?"));
    assert!(sent[3].text().ends_with("Question: And in winter?"));

    // Streamed RAG answer: stored once `done` was sent, with the same text.
    let r = c
        .post(&answer_url)
        .json(&ask("Does it work at night?", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get(CONVERSATION_HEADER).is_some());
    let body = r.text().await.unwrap();
    let done: Value = serde_json::from_str(sse_data(&body).last().unwrap()).unwrap();
    assert_eq!(done["object"], "rag.answer", "{body}");
    assert_eq!(seen.lock().unwrap().last().unwrap().len(), 6);
    let msgs = thread_messages(&c, &base, &id).await;
    assert_eq!(msgs.len(), 6);
    assert_eq!(text_of(&msgs[5]), done["answer"]);

    // Streamed chat completion on the same thread.
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(
            &json!({"model": "counter-1", "stream": true, "conversation_id": id,
                      "messages": [{"role": "user", "content": "Thanks, summarise please"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get(CONVERSATION_HEADER).is_some());
    let data = sse_data(&r.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let streamed: String = data[..data.len() - 1]
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(streamed, "saw 7 messages; last: Thanks, summarise please");
    let msgs = thread_messages(&c, &base, &id).await;
    assert_eq!(msgs.len(), 8);
    assert_eq!(text_of(&msgs[7]), streamed);

    // A stream that fails mid-way stores nothing (the client sees the error and may retry).
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(
            &json!({"model": "counter-1", "stream": true, "conversation_id": id,
                      "messages": [{"role": "user", "content": "please break now"}]}),
        )
        .send()
        .await
        .unwrap();
    let data = sse_data(&r.text().await.unwrap());
    assert!(data.iter().any(|d| d.contains("\"error\"")), "{data:?}");
    assert_ne!(data.last().unwrap(), "[DONE]");
    let r = c
        .post(&answer_url)
        .json(&ask("break the RAG stream", true))
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(body.contains("event: error"), "{body}");
    assert_eq!(thread_messages(&c, &base, &id).await.len(), 8);

    // Bad or unknown threads are refused before any model call.
    let calls = seen.lock().unwrap().len();
    let r = c
        .post(&answer_url)
        .json(&json!({"question": "q", "conversation_id": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["param"], "conversation_id", "{e}");
    let r = c
        .post(&answer_url)
        .json(&json!({"question": "q", "conversation_id": "no-such-thread", "model": "counter-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(seen.lock().unwrap().len(), calls);
}

#[tokio::test]
async fn retention_deletes_only_expired_threads_of_tenants_that_set_it() {
    use wattos_core::tenancy::{Retention, Tenant, TenantStore};
    use wattos_core::{Principal, TenantId};
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_sources(
        None,
        vec![(
            "WATTOS_DATA_DIR".to_string(),
            dir.path().display().to_string(),
        )],
    )
    .unwrap();
    let services = ConversationServices::open(&config).await.unwrap();
    let tenants = Arc::new(
        wattos_server::tenancy::SqlStore::connect("sqlite::memory:")
            .await
            .unwrap(),
    );
    let user = |t: &str| {
        RequestContext::new(
            TenantId::new(t).unwrap(),
            Principal::user("alice", ["member"]),
        )
    };
    let store = services.conversations().store().clone();
    let mut ids = std::collections::HashMap::new();
    for t in ["keeps-30d", "keeps-forever"] {
        let id = TenantId::new(t).unwrap();
        tenants
            .create_tenant(&Tenant {
                id: id.clone(),
                name: t.into(),
                disabled: false,
                created_at_ms: 0,
            })
            .await
            .unwrap();
        if t == "keeps-30d" {
            let mut cfg = tenants.get_config(&id).await.unwrap();
            cfg.retention = Retention {
                data_days: Some(30),
                ..Retention::default()
            };
            tenants.put_config(&id, &cfg).await.unwrap();
        }
        for age in ["old", "fresh"] {
            let c = store
                .create(
                    &user(t),
                    wattos_agents::conversation::NewConversation::default(),
                )
                .await
                .unwrap();
            ids.insert((t, age), c.id);
        }
    }
    // Age the "old" threads by 31 days, directly in the database.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("conversations.db").display()
    ))
    .await
    .unwrap();
    let month_ago = chrono_ms() - 31 * 86_400_000;
    for t in ["keeps-30d", "keeps-forever"] {
        sqlx::query("UPDATE wattos_conversations SET updated_ms = ? WHERE id = ?")
            .bind(month_ago)
            .bind(&ids[&(t, "old")])
            .execute(&db)
            .await
            .unwrap();
    }
    let sweeper = wattos_server::conversations::RetentionSweeper::new(
        services.conversations().clone(),
        tenants,
        std::time::Duration::from_secs(3600),
    );
    assert_eq!(sweeper.sweep_once().await.unwrap(), 1);
    let exists = |t: &'static str, age: &'static str| {
        let store = store.clone();
        let id = ids[&(t, age)].clone();
        async move { store.get(&user(t), &id).await.is_ok() }
    };
    assert!(!exists("keeps-30d", "old").await);
    assert!(exists("keeps-30d", "fresh").await);
    assert!(exists("keeps-forever", "old").await);
    assert!(exists("keeps-forever", "fresh").await);
    // Idempotent: a second sweep (or another instance's) finds nothing more.
    assert_eq!(sweeper.sweep_once().await.unwrap(), 0);
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn feedback_over_http_and_openapi() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Arc::default()).await;
    let base = server.base.clone();
    let c = reqwest::Client::new();
    let fb = |rating: u8, model: &str| {
        json!({
            "request_id": "req-1", "rating": rating, "comment": "good", "model": model,
            "collection": "energy", "query": "how do solar panels work", "answer": "With cells [1].",
            "chunks": [
                {"chunk_id": "solar#0", "document_id": "solar", "text": "Solar panels use photovoltaic cells."},
                {"chunk_id": "wind#0", "document_id": "wind", "text": "Wind turbines use blades."}
            ],
            "citations": ["solar"]
        })
    };
    for (rating, model) in [(5, "gpt-4o"), (2, "gpt-4o-mini")] {
        let r = c
            .post(format!("{base}/v1/feedback"))
            .json(&fb(rating, model))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = c
        .post(format!("{base}/v1/feedback"))
        .json(&fb(9, "m"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["param"], "rating");
    let report: Value = c
        .get(format!("{base}/v1/feedback/report"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["total"], 2);
    assert_eq!(report["by_model"][0]["key"], "gpt-4o");
    assert_eq!(report["by_collection"][0]["count"], 2);
    let export: Value = c
        .get(format!("{base}/v1/feedback/export"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(export["summary"]["queries"], 1);
    assert_eq!(export["summary"]["documents"], 2);
    let qrels = export["qrels"].as_str().unwrap();
    assert!(qrels.starts_with("query-id\tcorpus-id\tscore\n"));
    assert!(qrels.contains("\tsolar\t2\n") && qrels.contains("\twind\t1\n"));

    let spec: Value = c
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for p in [
        "/v1/conversations",
        "/v1/conversations/{id}",
        "/v1/conversations/{id}/messages",
        "/v1/feedback",
        "/v1/feedback/report",
        "/v1/feedback/export",
    ] {
        assert!(spec["paths"].get(p).is_some(), "{p} missing from the spec");
    }
}
