//! Anthropic streaming events: `message_start`, `content_block_start` / `_delta` / `_stop`,
//! `message_delta` (stop reason, cumulative usage), `message_stop`, `ping` and `error`.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;
use wattos_core::llm::{ChatDelta, FinishReason, ToolCallDelta};
use wattos_core::{Error, Result};

use super::codec::{WireUsage, stop_reason};
use super::error::{WireError, map_stream_error};
use crate::provider::stream::{Decoder, Flow, Frame};

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: Value,
    },
    ContentBlockDelta {
        index: usize,
        delta: Value,
    },
    ContentBlockStop {},
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop {},
    Ping {},
    Error {
        error: WireError,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Default, Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

/// What a content block index carries.
enum Block {
    Text,
    Tool(usize),
    JsonAnswer,
    Ignored,
}

pub(crate) struct AnthropicDecoder {
    provider: &'static str,
    model: String,
    json_tool: Option<String>,
    blocks: HashMap<usize, Block>,
    tools: usize,
    usage: WireUsage,
    stop: Option<String>,
    json_answered: bool,
}

impl AnthropicDecoder {
    pub(crate) fn new(provider: &'static str, model: String, json_tool: Option<String>) -> Self {
        Self {
            provider,
            model,
            json_tool,
            blocks: HashMap::new(),
            tools: 0,
            usage: WireUsage::default(),
            stop: None,
            json_answered: false,
        }
    }

    fn bad(&self, what: &str) -> Error {
        Error::upstream(
            self.provider,
            None,
            true,
            format!("invalid stream event: {what}"),
        )
    }
}

impl Decoder for AnthropicDecoder {
    fn frame(&mut self, frame: Frame<'_>, out: &mut Vec<ChatDelta>) -> Result<Flow> {
        let Frame::Sse(ev) = frame else {
            return Ok(Flow::Continue);
        };
        let event: Event = serde_json::from_str(&ev.data).map_err(|e| self.bad(&e.to_string()))?;
        match event {
            Event::MessageStart { message } => {
                self.usage = message.usage;
                out.push(ChatDelta::Start {
                    id: message.id,
                    model: if message.model.is_empty() {
                        self.model.clone()
                    } else {
                        message.model
                    },
                });
            }
            Event::ContentBlockStart {
                index,
                content_block,
            } => {
                let kind = content_block.get("type").and_then(Value::as_str);
                let block = match kind {
                    Some("text") => {
                        if let Some(t) = content_block
                            .get("text")
                            .and_then(Value::as_str)
                            .filter(|t| !t.is_empty())
                        {
                            out.push(ChatDelta::Text { text: t.to_owned() });
                        }
                        Block::Text
                    }
                    Some("tool_use") => {
                        let name = content_block.get("name").and_then(Value::as_str);
                        if name.is_some() && name == self.json_tool.as_deref() {
                            self.json_answered = true;
                            Block::JsonAnswer
                        } else {
                            let i = self.tools;
                            self.tools += 1;
                            out.push(ChatDelta::ToolCall(ToolCallDelta {
                                index: i,
                                id: content_block
                                    .get("id")
                                    .and_then(Value::as_str)
                                    .map(str::to_owned),
                                name: name.map(str::to_owned),
                                arguments: String::new(),
                            }));
                            Block::Tool(i)
                        }
                    }
                    _ => Block::Ignored,
                };
                self.blocks.insert(index, block);
            }
            Event::ContentBlockDelta { index, delta } => {
                let kind = delta.get("type").and_then(Value::as_str);
                let field = match kind {
                    Some("text_delta") => "text",
                    Some("input_json_delta") => "partial_json",
                    _ => return Ok(Flow::Continue), // thinking, signature, citations
                };
                let piece = delta
                    .get(field)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                match self.blocks.get(&index) {
                    Some(Block::Text | Block::JsonAnswer) if !piece.is_empty() => {
                        out.push(ChatDelta::Text { text: piece });
                    }
                    Some(Block::Tool(i)) => out.push(ChatDelta::ToolCall(ToolCallDelta {
                        index: *i,
                        id: None,
                        name: None,
                        arguments: piece,
                    })),
                    Some(_) => {}
                    None => return Err(self.bad("delta for a block that was never started")),
                }
            }
            Event::ContentBlockStop {} | Event::Ping {} | Event::Unknown => {}
            Event::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.usage.update(&u);
                }
                if delta.stop_reason.is_some() {
                    self.stop = delta.stop_reason;
                }
            }
            Event::MessageStop {} => {
                let reason = match self.stop.as_deref() {
                    Some("tool_use") if self.json_answered && self.tools == 0 => FinishReason::Stop,
                    Some(s) => stop_reason(s),
                    None => return Err(self.bad("message_stop without a stop_reason")),
                };
                out.push(ChatDelta::Usage(self.usage.normalize()));
                out.push(ChatDelta::Finish { reason });
                return Ok(Flow::Done);
            }
            Event::Error { error } => return Err(map_stream_error(self.provider, error)),
        }
        Ok(Flow::Continue)
    }

    fn eof(&mut self, _out: &mut Vec<ChatDelta>) -> Result<()> {
        Err(Error::upstream(
            self.provider,
            None,
            true,
            "stream ended before message_stop",
        ))
    }
}
