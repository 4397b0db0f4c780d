//! Shared test support: deterministic in-process models and a server starter.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use wattos_core::config::Config;
use wattos_core::embedding::{EmbeddingModel, Embeddings};
use wattos_core::llm::*;
use wattos_core::{Error, RequestContext, Result};
use wattos_server::gateway::ModelCatalog;
use wattos_server::{AppState, app};

/// Streams the last user message back word by word; calls `lookup` when tools are offered;
/// "break" fails mid-stream; "busy" is rate limited.
pub(crate) struct Parrot;

fn last_user(req: &ChatRequest) -> String {
    req.messages
        .iter()
        .rev()
        .find(|m| matches!(m, Message::User { .. }))
        .map(Message::text)
        .unwrap_or_default()
}

#[async_trait]
impl ChatModel for Parrot {
    fn name(&self) -> &str {
        "parrot"
    }
    async fn chat(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
        let mut acc = StreamAccumulator::new(req.model.clone());
        let mut s = self.chat_stream(ctx, req).await?;
        while let Some(d) = s.next().await {
            acc.push(d?);
        }
        acc.finish()
    }
    async fn chat_stream(&self, _ctx: &RequestContext, req: ChatRequest) -> Result<ChatStream> {
        let text = last_user(&req);
        if text == "busy" {
            return Err(Error::rate_limited("slow down").with_retry_after(Duration::from_secs(3)));
        }
        let usage = Usage {
            input_tokens: 7,
            output_tokens: 3,
            cached_input_tokens: 2,
        };
        let mut items: Vec<Result<ChatDelta>> = vec![Ok(ChatDelta::Start {
            id: "r1".into(),
            model: req.model.clone(),
        })];
        if !req.tools.is_empty()
            && !req
                .messages
                .iter()
                .any(|m| matches!(m, Message::Tool { .. }))
        {
            for (index, city) in ["Berlin", "Paris"].into_iter().enumerate() {
                items.push(Ok(ChatDelta::ToolCall(ToolCallDelta {
                    index,
                    id: Some(format!("call_{index}")),
                    name: Some("lookup".into()),
                    arguments: "{\"city\":".into(),
                })));
                items.push(Ok(ChatDelta::ToolCall(ToolCallDelta {
                    index,
                    id: None,
                    name: None,
                    arguments: format!("\"{city}\"}}"),
                })));
            }
            items.push(Ok(ChatDelta::Usage(usage)));
            items.push(Ok(ChatDelta::Finish {
                reason: FinishReason::ToolCalls,
            }));
        } else {
            for w in text.split_inclusive(' ') {
                items.push(Ok(ChatDelta::Text { text: w.to_owned() }));
            }
            if text == "break" {
                items.push(Err(Error::upstream(
                    "parrot",
                    Some(500),
                    true,
                    "connection reset mid-stream",
                )));
            } else {
                items.push(Ok(ChatDelta::Usage(usage)));
                items.push(Ok(ChatDelta::Finish {
                    reason: FinishReason::Stop,
                }));
            }
        }
        Ok(futures::stream::iter(items).boxed())
    }
}

pub(crate) struct Toy;

#[async_trait]
impl EmbeddingModel for Toy {
    fn name(&self) -> &str {
        "toy"
    }
    fn dimensions(&self) -> usize {
        2
    }
    async fn embed(&self, _ctx: &RequestContext, inputs: &[String]) -> Result<Embeddings> {
        Ok(Embeddings {
            vectors: inputs.iter().map(|s| vec![s.len() as f32, 0.5]).collect(),
            model: "toy".into(),
            usage: Usage {
                input_tokens: inputs.len() as u64,
                ..Usage::default()
            },
            cost: None,
        })
    }
}

pub(crate) async fn start() -> String {
    start_with_auth(None).await
}

/// Like [`start`], with authentication required by `auth` when given.
pub(crate) async fn start_with_auth(auth: Option<wattos_server::auth::Auth>) -> String {
    let dir = std::env::temp_dir().join(format!("wattos-gw-{}", uuid::Uuid::new_v4().simple()));
    let config = Config::from_sources(
        None,
        vec![("WATTOS_DATA_DIR".to_string(), dir.display().to_string())],
    )
    .unwrap();
    let mut catalog = ModelCatalog::default();
    catalog.add_chat("parrot-1", "wattos", Arc::new(Parrot));
    catalog.add_embedding("toy-embed", "wattos", Arc::new(Toy));
    let (rag, agents) = wattos_server::apis::build_services(&config, &catalog, None)
        .await
        .unwrap();
    let memories = wattos_server::memories::MemoryService::open(&config, &catalog)
        .await
        .unwrap();
    let conversations = wattos_server::conversations::ConversationServices::open(&config)
        .await
        .unwrap();
    // Background jobs on an in-process queue, run by a worker here, through the RAG API's service.
    let jobs = wattos_server::jobs::Jobs::new(
        Arc::new(wattos_rag::jobs::MemoryJobQueue::new()),
        rag.clone()
            .map(|r| Arc::new(r) as Arc<dyn wattos_server::jobs::IngestionService>),
        wattos_server::jobs::JobSettings::default(),
    );
    // The worker runs as long as the test process (no shutdown).
    let _worker = jobs.spawn_worker(tokio_util::sync::CancellationToken::new());
    let state = AppState::with_parts(config.clone(), AppState::default_health(&config), catalog)
        .with_rag(rag)
        .with_agents(Some(agents))
        .with_jobs(Some(jobs))
        .with_conversations(Some(conversations))
        .with_memories(Some(memories))
        .with_auth(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(state)).await });
    format!("http://{addr}")
}
