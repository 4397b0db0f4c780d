//! Scripted chat models for deterministic tests.
//!
//! A [`ScriptedChatModel`] answers each request with the next scripted reply, records every request it
//! receives, and streams natively (text arrives word by word), so agent tests can check routing, tool
//! handling and token streaming without a real model.
//!
//! ```
//! use wattos_core::llm::{ChatModel, ChatRequest, Message};
//! use wattos_core::test_utils::chat::ScriptedChatModel;
//! use wattos_core::{RequestContext, TenantId};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let model = ScriptedChatModel::new()
//!     .then_tool_call("search", r#"{"q":"rust"}"#)
//!     .then_text("Rust is a language.");
//! let ctx = RequestContext::system(TenantId::new("acme")?);
//! let first = model.chat(&ctx, ChatRequest::new("m", vec![Message::user("what is rust?")])).await?;
//! assert_eq!(first.tool_calls[0].name, "search");
//! let second = model.chat(&ctx, ChatRequest::new("m", vec![Message::user("and?")])).await?;
//! assert_eq!(second.text(), "Rust is a language.");
//! assert_eq!(model.requests().len(), 2);
//! assert!(model.chat(&ctx, ChatRequest::new("m", vec![Message::user("?")])).await.is_err());
//! # Ok::<_, wattos_core::Error>(())
//! # }).unwrap();
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures::StreamExt;

use crate::context::RequestContext;
use crate::error::{Error, Result};
use crate::llm::{
    Capabilities, ChatDelta, ChatModel, ChatRequest, ChatResponse, ChatStream, FinishReason,
    ToolCall, ToolCallDelta, Usage,
};

/// One scripted answer.
#[derive(Debug)]
pub enum ScriptedReply {
    /// Answer with this response.
    Response(ChatResponse),
    /// Fail with this error.
    Error(Error),
}

/// Decides a reply from the request (for models whose answer depends on the conversation).
pub type Responder = Arc<dyn Fn(&ChatRequest) -> Result<ChatResponse> + Send + Sync>;

#[derive(Default)]
struct Script {
    replies: VecDeque<ScriptedReply>,
    requests: Vec<ChatRequest>,
}

/// A chat model that replays a queue of replies and records requests. Clones share the script.
#[derive(Clone, Default)]
pub struct ScriptedChatModel {
    name: Arc<str>,
    script: Arc<Mutex<Script>>,
    responder: Option<Responder>,
    ids: Arc<AtomicUsize>,
}

impl std::fmt::Debug for ScriptedChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedChatModel")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A finished response with `content` and `tool_calls`.
pub fn response(content: Option<String>, tool_calls: Vec<ToolCall>) -> ChatResponse {
    let finish_reason = if tool_calls.is_empty() {
        FinishReason::Stop
    } else {
        FinishReason::ToolCalls
    };
    let output_tokens = content
        .as_deref()
        .map_or(0, |c| c.split_whitespace().count() as u64);
    ChatResponse {
        id: "scripted".into(),
        model: "scripted".into(),
        content,
        tool_calls,
        finish_reason,
        usage: Usage {
            output_tokens,
            ..Usage::default()
        },
        cost: None,
        provider_fields: Default::default(),
    }
}

impl ScriptedChatModel {
    /// An empty script named `scripted`.
    pub fn new() -> Self {
        Self::named("scripted")
    }

    /// An empty script with a model name.
    pub fn named(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            ..Self::default()
        }
    }

    /// A model that computes every answer from the request instead of a queue.
    pub fn responding(
        f: impl Fn(&ChatRequest) -> Result<ChatResponse> + Send + Sync + 'static,
    ) -> Self {
        Self {
            responder: Some(Arc::new(f)),
            ..Self::new()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a reply.
    pub fn push(&self, reply: ScriptedReply) {
        self.lock().replies.push_back(reply);
    }

    /// Queues a text answer.
    pub fn then_text(self, text: impl Into<String>) -> Self {
        self.push(ScriptedReply::Response(response(Some(text.into()), vec![])));
        self
    }

    /// Queues an answer with one tool call (`arguments` is the raw JSON text the model "wrote").
    pub fn then_tool_call(self, name: &str, arguments: &str) -> Self {
        self.then_tool_calls(&[(name, arguments)])
    }

    /// Queues an answer with several parallel tool calls.
    pub fn then_tool_calls(self, calls: &[(&str, &str)]) -> Self {
        let n = self.ids.fetch_add(calls.len(), Ordering::Relaxed);
        let calls = calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| ToolCall {
                id: format!("call_{}", n + i),
                name: (*name).to_owned(),
                arguments: (*args).to_owned(),
            })
            .collect();
        self.push(ScriptedReply::Response(response(None, calls)));
        self
    }

    /// Queues a full response.
    pub fn then_response(self, resp: ChatResponse) -> Self {
        self.push(ScriptedReply::Response(resp));
        self
    }

    /// Queues an error.
    pub fn then_error(self, err: Error) -> Self {
        self.push(ScriptedReply::Error(err));
        self
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.lock().requests.clone()
    }

    /// How many replies are still queued.
    pub fn remaining(&self) -> usize {
        self.lock().replies.len()
    }

    fn next(&self, req: &ChatRequest) -> Result<ChatResponse> {
        let mut script = self.lock();
        script.requests.push(req.clone());
        if let Some(f) = &self.responder {
            drop(script);
            return f(req);
        }
        match script.replies.pop_front() {
            Some(ScriptedReply::Response(r)) => Ok(r),
            Some(ScriptedReply::Error(e)) => Err(e),
            None => Err(Error::internal(format!(
                "scripted model `{}` has no reply left for request #{}",
                self.name,
                script.requests.len()
            ))),
        }
    }
}

#[async_trait]
impl ChatModel for ScriptedChatModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            tools: true,
            json_schema: true,
            ..Capabilities::default()
        }
    }

    async fn chat(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
        ctx.check_deadline()?;
        self.next(&req)
    }

    async fn chat_stream(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatStream> {
        let resp = self.chat(ctx, req).await?;
        let mut deltas = vec![ChatDelta::Start {
            id: resp.id.clone(),
            model: resp.model.clone(),
        }];
        if let Some(text) = &resp.content {
            // Word by word, keeping the separators, so concatenation restores the text.
            let mut start = 0;
            for (i, c) in text.char_indices() {
                if c == ' ' && i > start {
                    deltas.push(ChatDelta::Text {
                        text: text[start..i].to_owned(),
                    });
                    start = i;
                }
            }
            if start < text.len() {
                deltas.push(ChatDelta::Text {
                    text: text[start..].to_owned(),
                });
            }
        }
        for (index, call) in resp.tool_calls.iter().enumerate() {
            deltas.push(ChatDelta::ToolCall(ToolCallDelta {
                index,
                id: Some(call.id.clone()),
                name: Some(call.name.clone()),
                arguments: call.arguments.clone(),
            }));
        }
        deltas.push(ChatDelta::Usage(resp.usage));
        deltas.push(ChatDelta::Finish {
            reason: resp.finish_reason.clone(),
        });
        Ok(futures::stream::iter(deltas.into_iter().map(Ok)).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::TenantId;
    use crate::llm::{Message, StreamAccumulator};

    #[tokio::test]
    async fn streams_text_word_by_word_and_tool_calls() {
        let ctx = RequestContext::system(TenantId::new("t").unwrap());
        let m = ScriptedChatModel::new()
            .then_text("hello big world")
            .then_tool_calls(&[("a", "{}"), ("b", r#"{"x":1}"#)]);
        let req = ChatRequest::new("m", vec![Message::user("hi")]);
        let mut s = m.chat_stream(&ctx, req.clone()).await.unwrap();
        let mut acc = StreamAccumulator::new("m");
        let mut pieces = 0;
        while let Some(d) = s.next().await {
            let d = d.unwrap();
            if matches!(d, ChatDelta::Text { .. }) {
                pieces += 1;
            }
            acc.push(d);
        }
        assert_eq!(pieces, 3);
        assert_eq!(acc.finish().unwrap().text(), "hello big world");
        let mut s = m.chat_stream(&ctx, req).await.unwrap();
        let mut acc = StreamAccumulator::new("m");
        while let Some(d) = s.next().await {
            acc.push(d.unwrap());
        }
        let r = acc.finish().unwrap();
        assert_eq!(r.tool_calls.len(), 2);
        assert_eq!(r.tool_calls[1].arguments, r#"{"x":1}"#);
        assert_ne!(r.tool_calls[0].id, r.tool_calls[1].id);
    }
}
