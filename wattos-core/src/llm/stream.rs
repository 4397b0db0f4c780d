//! Streaming chat: the [`ChatDelta`] items of a [`ChatStream`] and an [`StreamAccumulator`] that folds
//! them back into a [`ChatResponse`].

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use super::types::{ChatResponse, FinishReason, ToolCall, Usage};
use crate::error::{Error, Result};

/// A fragment of a tool call. The first fragment of a call carries `id` and `name`; later ones
/// append to `arguments`. `index` identifies the call within the turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Position of the call in this turn.
    pub index: usize,
    /// Call id (first fragment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Tool name (first fragment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Argument JSON text to append.
    #[serde(default)]
    pub arguments: String,
}

/// One item of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatDelta {
    /// Response metadata, sent first when the provider has it.
    Start {
        /// Provider response id.
        id: String,
        /// The model answering.
        model: String,
    },
    /// Answer text to append.
    Text {
        /// The fragment.
        text: String,
    },
    /// A tool call fragment.
    ToolCall(ToolCallDelta),
    /// Token usage (usually near the end).
    Usage(Usage),
    /// Generation finished.
    Finish {
        /// Why.
        reason: FinishReason,
    },
}

/// A stream of deltas. An error item means the answer is incomplete: a stream never ends silently
/// on a failure.
pub type ChatStream = BoxStream<'static, Result<ChatDelta>>;

/// Folds [`ChatDelta`]s into a [`ChatResponse`].
///
/// ```
/// use wattos_core::llm::{ChatDelta, FinishReason, StreamAccumulator};
/// let mut acc = StreamAccumulator::new("my-model");
/// acc.push(ChatDelta::Text { text: "Hel".into() });
/// acc.push(ChatDelta::Text { text: "lo".into() });
/// acc.push(ChatDelta::Finish { reason: FinishReason::Stop });
/// let resp = acc.finish().unwrap();
/// assert_eq!(resp.text(), "Hello");
/// ```
#[derive(Debug, Default)]
pub struct StreamAccumulator {
    id: Option<String>,
    model: String,
    text: String,
    saw_text: bool,
    calls: Vec<ToolCall>,
    usage: Usage,
    finish: Option<FinishReason>,
}

impl StreamAccumulator {
    /// A new accumulator; `model` is used unless a `Start` delta names another.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            ..Self::default()
        }
    }

    /// Applies one delta.
    pub fn push(&mut self, delta: ChatDelta) {
        match delta {
            ChatDelta::Start { id, model } => {
                self.id = Some(id);
                if !model.is_empty() {
                    self.model = model;
                }
            }
            ChatDelta::Text { text } => {
                self.saw_text = true;
                self.text.push_str(&text);
            }
            ChatDelta::ToolCall(d) => {
                while self.calls.len() <= d.index {
                    self.calls.push(ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                }
                let call = &mut self.calls[d.index];
                if let Some(id) = d.id {
                    call.id = id;
                }
                if let Some(name) = d.name {
                    call.name.push_str(&name);
                }
                call.arguments.push_str(&d.arguments);
            }
            ChatDelta::Usage(u) => self.usage = u,
            ChatDelta::Finish { reason } => self.finish = Some(reason),
        }
    }

    /// The text received so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Builds the response.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Upstream`] when the stream ended without a finish reason (truncated).
    pub fn finish(self) -> Result<ChatResponse> {
        let finish_reason = self.finish.ok_or_else(|| {
            Error::upstream(
                "stream",
                None,
                true,
                "stream ended before the model finished",
            )
        })?;
        Ok(ChatResponse {
            id: self
                .id
                .unwrap_or_else(|| format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())),
            model: self.model,
            content: self.saw_text.then_some(self.text),
            tool_calls: self
                .calls
                .into_iter()
                .filter(|c| !c.name.is_empty())
                .collect(),
            finish_reason,
            usage: self.usage,
            cost: None,
            provider_fields: Default::default(),
        })
    }
}

/// Turns a complete response into the deltas a stream would have carried (for models without native
/// streaming).
pub fn response_to_deltas(resp: &ChatResponse) -> Vec<ChatDelta> {
    let mut out = vec![ChatDelta::Start {
        id: resp.id.clone(),
        model: resp.model.clone(),
    }];
    if let Some(text) = &resp.content {
        out.push(ChatDelta::Text { text: text.clone() });
    }
    for (index, call) in resp.tool_calls.iter().enumerate() {
        out.push(ChatDelta::ToolCall(ToolCallDelta {
            index,
            id: Some(call.id.clone()),
            name: Some(call.name.clone()),
            arguments: call.arguments.clone(),
        }));
    }
    out.push(ChatDelta::Usage(resp.usage));
    out.push(ChatDelta::Finish {
        reason: resp.finish_reason.clone(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulates_parallel_tool_calls() {
        let mut acc = StreamAccumulator::new("m");
        for d in [
            ChatDelta::ToolCall(ToolCallDelta {
                index: 0,
                id: Some("a".into()),
                name: Some("x".into()),
                arguments: "{\"q\":".into(),
            }),
            ChatDelta::ToolCall(ToolCallDelta {
                index: 1,
                id: Some("b".into()),
                name: Some("y".into()),
                arguments: String::new(),
            }),
            ChatDelta::ToolCall(ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: "1}".into(),
            }),
            ChatDelta::ToolCall(ToolCallDelta {
                index: 1,
                id: None,
                name: None,
                arguments: "{}".into(),
            }),
            ChatDelta::Finish {
                reason: FinishReason::ToolCalls,
            },
        ] {
            acc.push(d);
        }
        let r = acc.finish().unwrap();
        assert_eq!(r.content, None);
        assert_eq!(r.tool_calls.len(), 2);
        assert_eq!(r.tool_calls[0].arguments, "{\"q\":1}");
        assert_eq!(r.tool_calls[1].name, "y");
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let mut acc = StreamAccumulator::new("m");
        acc.push(ChatDelta::Text {
            text: "partial".into(),
        });
        assert!(acc.finish().is_err());
    }

    #[test]
    fn deltas_roundtrip() {
        let resp = ChatResponse {
            id: "r1".into(),
            model: "m".into(),
            content: Some("hi".into()),
            tool_calls: vec![ToolCall {
                id: "c".into(),
                name: "t".into(),
                arguments: "{}".into(),
            }],
            finish_reason: FinishReason::ToolCalls,
            usage: Usage {
                input_tokens: 3,
                output_tokens: 2,
                cached_input_tokens: 0,
            },
            cost: None,
            provider_fields: Default::default(),
        };
        let mut acc = StreamAccumulator::new("other");
        for d in response_to_deltas(&resp) {
            acc.push(d);
        }
        assert_eq!(acc.finish().unwrap(), resp);
    }
}
