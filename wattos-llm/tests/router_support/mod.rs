//! In-process fault-injecting fake models shared by the router tests.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use wattos_core::embedding::{EmbeddingModel, Embeddings};
use wattos_core::llm::*;
use wattos_core::{Error, RequestContext, Result, TenantId};

/// What a fake upstream does on one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answers normally.
    Ok,
    /// Never answers (the router's attempt timeout must fire).
    Hang,
    /// 429 with Retry-After.
    RateLimited(Duration),
    /// HTTP 500.
    ServerError,
    /// Connection refused.
    Refused,
    /// Streams its metadata delta, then the connection breaks before any content (for `chat`: a 502).
    BreakMidStream,
    /// Streams some text, then the connection breaks (for `chat`: a 502).
    BreakAfterText,
    /// Every delta (and a `chat` answer) arrives after this delay.
    SlowDrip(Duration),
    /// The prompt is too long for this model.
    ContextTooLong,
    /// 400 bad request.
    BadRequest,
    /// A busy local model sheds the call (503 + Retry-After, not a failure).
    Overloaded(Duration),
    /// 401.
    Unauthorized,
}

impl Fault {
    fn error(&self, name: &str) -> Option<Error> {
        Some(match self {
            Self::RateLimited(ra) => Error::rate_limited("slow down")
                .with_upstream(name, Some(429))
                .with_retry_after(*ra),
            Self::ServerError => Error::upstream(name, Some(500), true, "internal server error"),
            Self::Refused => Error::unavailable(format!("{name}: connection refused")),
            Self::ContextTooLong => {
                Error::context_length_exceeded("prompt too long").with_upstream(name, Some(400))
            }
            Self::BadRequest => Error::upstream(name, Some(400), false, "bad request"),
            Self::Overloaded(ra) => Error::overloaded(format!("{name} is busy"), *ra),
            Self::Unauthorized => {
                Error::unauthenticated("invalid api key").with_upstream(name, Some(401))
            }
            _ => return None,
        })
    }
}

pub struct FakeChat {
    pub name: String,
    default: Mutex<Fault>,
    script: Mutex<VecDeque<Fault>>,
    pub calls: AtomicU32,
    pub usage: Usage,
}

impl FakeChat {
    pub fn new(name: &str, fault: Fault) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            default: Mutex::new(fault),
            script: Mutex::new(VecDeque::new()),
            calls: AtomicU32::new(0),
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                cached_input_tokens: 0,
            },
        })
    }

    pub fn healthy(name: &str) -> Arc<Self> {
        Self::new(name, Fault::Ok)
    }

    pub fn set(&self, fault: Fault) {
        *self.default.lock().unwrap() = fault;
    }

    /// The next calls behave like `faults`, then the default again.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.script.lock().unwrap().extend(faults);
    }

    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn next(&self) -> Fault {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.default.lock().unwrap().clone())
    }

    fn response(&self, model: &str) -> ChatResponse {
        ChatResponse {
            id: format!("{}-resp", self.name),
            model: model.to_owned(),
            content: Some(format!("hello from {}", self.name)),
            tool_calls: vec![],
            finish_reason: FinishReason::Stop,
            usage: self.usage,
            cost: None,
            provider_fields: Default::default(),
        }
    }
}

#[async_trait]
impl ChatModel for FakeChat {
    fn name(&self) -> &str {
        &self.name
    }
    async fn chat(&self, _ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
        let fault = self.next();
        if let Some(e) = fault.error(&self.name) {
            return Err(e);
        }
        match fault {
            Fault::Hang => futures::future::pending().await,
            Fault::BreakMidStream | Fault::BreakAfterText => {
                Err(Error::upstream(&self.name, Some(502), true, "bad gateway"))
            }
            Fault::SlowDrip(d) => {
                tokio::time::sleep(d * 4).await;
                Ok(self.response(&req.model))
            }
            _ => Ok(self.response(&req.model)),
        }
    }
    async fn chat_stream(&self, _ctx: &RequestContext, req: ChatRequest) -> Result<ChatStream> {
        let fault = self.next();
        if let Some(e) = fault.error(&self.name) {
            return Err(e);
        }
        let deltas = vec![
            ChatDelta::Start {
                id: format!("{}-resp", self.name),
                model: req.model.clone(),
            },
            ChatDelta::Text {
                text: "hello ".into(),
            },
            ChatDelta::Text {
                text: format!("from {}", self.name),
            },
            ChatDelta::Usage(self.usage),
            ChatDelta::Finish {
                reason: FinishReason::Stop,
            },
        ];
        match fault {
            Fault::Hang => futures::future::pending().await,
            Fault::BreakMidStream => {
                let name = self.name.clone();
                let items: Vec<Result<ChatDelta>> = vec![
                    Ok(deltas[0].clone()),
                    Err(Error::upstream(
                        name,
                        None,
                        true,
                        "connection reset mid-stream",
                    )),
                ];
                Ok(futures::stream::iter(items).boxed())
            }
            Fault::BreakAfterText => {
                let name = self.name.clone();
                let items: Vec<Result<ChatDelta>> = vec![
                    Ok(deltas[0].clone()),
                    Ok(deltas[1].clone()),
                    Err(Error::upstream(
                        name,
                        None,
                        true,
                        "connection reset mid-stream",
                    )),
                ];
                Ok(futures::stream::iter(items).boxed())
            }
            Fault::SlowDrip(d) => Ok(futures::stream::iter(deltas)
                .then(move |x| async move {
                    tokio::time::sleep(d).await;
                    Ok(x)
                })
                .boxed()),
            _ => Ok(futures::stream::iter(deltas.into_iter().map(Ok)).boxed()),
        }
    }
}

/// Collects a stream into (text, error?).
pub async fn collect(mut s: ChatStream) -> (String, Option<Error>) {
    let mut text = String::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(ChatDelta::Text { text: t }) => text.push_str(&t),
            Ok(_) => {}
            Err(e) => return (text, Some(e)),
        }
    }
    (text, None)
}

pub fn dep(id: &str, m: &Arc<FakeChat>) -> wattos_llm::router::ChatDeployment {
    wattos_llm::router::Deployment::from_arc(id, m.clone() as Arc<dyn ChatModel>)
}

pub fn ctx(tenant: &str) -> RequestContext {
    RequestContext::system(TenantId::new(tenant).unwrap())
}

pub fn req(model: &str) -> ChatRequest {
    ChatRequest::new(model, vec![Message::user("hello there")]).with_max_tokens(20)
}

pub struct FakeEmbed {
    pub name: String,
    pub fault: Mutex<Fault>,
    pub calls: AtomicU32,
}

impl FakeEmbed {
    pub fn new(name: &str, fault: Fault) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            fault: Mutex::new(fault),
            calls: AtomicU32::new(0),
        })
    }
}

#[async_trait]
impl EmbeddingModel for FakeEmbed {
    fn name(&self) -> &str {
        &self.name
    }
    fn dimensions(&self) -> usize {
        3
    }
    async fn embed(&self, _ctx: &RequestContext, inputs: &[String]) -> Result<Embeddings> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fault = self.fault.lock().unwrap().clone();
        if let Some(e) = fault.error(&self.name) {
            return Err(e);
        }
        if fault == Fault::Hang {
            futures::future::pending::<()>().await;
        }
        Ok(Embeddings {
            vectors: inputs.iter().map(|_| vec![1.0, 0.0, 0.0]).collect(),
            model: self.name.clone(),
            usage: Usage {
                input_tokens: inputs.len() as u64,
                output_tokens: 0,
                cached_input_tokens: 0,
            },
            cost: None,
        })
    }
}
