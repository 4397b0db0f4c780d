//! Conversations and feedback over HTTP: a thread survives a server restart (SQLite under
//! `data_dir`) and continues through `/v1/chat/completions` with history trimmed to the model's
//! context window; feedback is recorded, reported and exported as a BEIR set; the routes are in the
//! OpenAPI document.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};
use wattos_core::config::Config;
use wattos_core::llm::*;
use wattos_core::{RequestContext, Result};
use wattos_server::conversations::{CONVERSATION_HEADER, ConversationServices};
use wattos_server::gateway::ModelCatalog;
use wattos_server::{AppState, app};

/// Answers with how many messages it was sent and the last user text; records each request.
/// A 400-token context window, so long threads must be trimmed.
struct Counter {
    seen: Arc<Mutex<Vec<Vec<Message>>>>,
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
    async fn chat(&self, _ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
        let last = req
            .messages
            .iter()
            .rev()
            .find(|m| matches!(m, Message::User { .. }))
            .map(Message::text)
            .unwrap_or_default();
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
    let services = ConversationServices::open(&config).await.unwrap();
    let state = AppState::with_parts(config.clone(), AppState::default_health(&config), catalog)
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
