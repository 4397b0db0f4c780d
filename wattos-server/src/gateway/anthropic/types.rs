//! Anthropic Messages wire types and conversions.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use wattos_core::llm::{
    ChatRequest, ChatResponse, ContentPart, FinishReason, ImageSource, Message, ToolCall,
    ToolChoice, ToolDefinition, Usage,
};
use wattos_core::{Error, Result};

/// `POST /v1/messages` request body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct MessagesRequest {
    /// Model name.
    pub model: String,
    /// Output limit (required by Anthropic).
    pub max_tokens: Option<u32>,
    /// Conversation (user/assistant turns).
    #[schema(min_items = 1)]
    pub messages: Vec<InMessage>,
    /// System prompt: a string or text blocks.
    #[serde(default)]
    pub system: Option<Value>,
    /// Stop sequences.
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    /// Temperature (0..=1 for Anthropic).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Top-k sampling (accepted, not forwarded: not every backend supports it).
    #[serde(default)]
    pub top_k: Option<u32>,
    /// Tools.
    #[serde(default)]
    pub tools: Option<Vec<InTool>>,
    /// Tool choice.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// Stream as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Metadata (`user_id`).
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Everything else.
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: Map<String, Value>,
}

/// A request message.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct InMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// A string or content blocks.
    pub content: Value,
}

/// A tool definition.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct InTool {
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema of the input.
    pub input_schema: Value,
}

fn blocks(field: &str, content: &Value) -> Result<Vec<Value>> {
    match content {
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(b) => Ok(b.clone()),
        _ => Err(Error::invalid_field(
            field,
            "must be a string or an array of content blocks",
        )),
    }
}

fn block_text(field: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, b)| {
                match (
                    b.get("type").and_then(Value::as_str),
                    b.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => Ok(t.to_owned()),
                    _ => Err(Error::invalid_field(
                        format!("{field}[{i}]"),
                        "only text blocks are allowed here",
                    )),
                }
            })
            .collect::<Result<Vec<_>>>()
            .map(|v| v.join("")),
        Value::Null => Ok(String::new()),
        _ => Err(Error::invalid_field(
            field,
            "must be a string or text blocks",
        )),
    }
}

impl MessagesRequest {
    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Converts to the neutral request.
    ///
    /// # Errors
    /// `invalid_input` naming the field.
    pub fn into_neutral(self) -> Result<ChatRequest> {
        let max_tokens = self
            .max_tokens
            .ok_or_else(|| Error::invalid_field("max_tokens", "Field required"))?;
        if self.messages.is_empty() {
            return Err(Error::invalid_field("messages", "must not be empty"));
        }
        if let Some(t) = self.temperature
            && !(0.0..=1.0).contains(&t)
        {
            return Err(Error::invalid_field(
                "temperature",
                "must be between 0 and 1",
            ));
        }
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            let text = block_text("system", system)?;
            if !text.is_empty() {
                messages.push(Message::system(text));
            }
        }
        for (i, m) in self.messages.iter().enumerate() {
            let field = format!("messages[{i}].content");
            let blocks = blocks(&field, &m.content)?;
            match m.role.as_str() {
                "user" => {
                    let mut parts = Vec::new();
                    for (j, b) in blocks.iter().enumerate() {
                        let bf = format!("{field}[{j}]");
                        match b.get("type").and_then(Value::as_str) {
                            Some("text") => parts.push(ContentPart::text(
                                b.get("text").and_then(Value::as_str).unwrap_or_default(),
                            )),
                            Some("image") => {
                                let src = b.get("source").ok_or_else(|| {
                                    Error::invalid_field(format!("{bf}.source"), "is required")
                                })?;
                                let source = match src.get("type").and_then(Value::as_str) {
                                    Some("base64") => ImageSource::Base64 {
                                        media_type: src
                                            .get("media_type")
                                            .and_then(Value::as_str)
                                            .unwrap_or("image/png")
                                            .to_owned(),
                                        data: src
                                            .get("data")
                                            .and_then(Value::as_str)
                                            .unwrap_or_default()
                                            .to_owned(),
                                    },
                                    Some("url") => ImageSource::Url {
                                        url: src
                                            .get("url")
                                            .and_then(Value::as_str)
                                            .unwrap_or_default()
                                            .to_owned(),
                                    },
                                    _ => {
                                        return Err(Error::invalid_field(
                                            format!("{bf}.source.type"),
                                            "must be base64 or url",
                                        ));
                                    }
                                };
                                parts.push(ContentPart::Image {
                                    source,
                                    detail: None,
                                });
                            }
                            Some("tool_result") => {
                                let id = b.get("tool_use_id").and_then(Value::as_str).ok_or_else(
                                    || {
                                        Error::invalid_field(
                                            format!("{bf}.tool_use_id"),
                                            "is required",
                                        )
                                    },
                                )?;
                                messages.push(Message::Tool {
                                    tool_call_id: id.to_owned(),
                                    content: block_text(
                                        &format!("{bf}.content"),
                                        b.get("content").unwrap_or(&Value::Null),
                                    )?,
                                    is_error: b
                                        .get("is_error")
                                        .and_then(Value::as_bool)
                                        .unwrap_or(false),
                                });
                            }
                            Some(other) => {
                                return Err(Error::invalid_field(
                                    format!("{bf}.type"),
                                    format!("block type '{other}' is not supported in user turns"),
                                ));
                            }
                            None => {
                                return Err(Error::invalid_field(
                                    format!("{bf}.type"),
                                    "is required",
                                ));
                            }
                        }
                    }
                    if !parts.is_empty() {
                        messages.push(Message::User {
                            content: parts,
                            name: None,
                        });
                    }
                }
                "assistant" => {
                    let mut text = String::new();
                    let mut calls = Vec::new();
                    for (j, b) in blocks.iter().enumerate() {
                        match b.get("type").and_then(Value::as_str) {
                            Some("text") => text.push_str(
                                b.get("text").and_then(Value::as_str).unwrap_or_default(),
                            ),
                            Some("tool_use") => calls.push(ToolCall {
                                id: b
                                    .get("id")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_owned(),
                                name: b
                                    .get("name")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_owned(),
                                arguments: b
                                    .get("input")
                                    .map(Value::to_string)
                                    .unwrap_or_else(|| "{}".into()),
                            }),
                            Some("thinking") | Some("redacted_thinking") => {}
                            _ => {
                                return Err(Error::invalid_field(
                                    format!("{field}[{j}].type"),
                                    "must be text or tool_use in assistant turns",
                                ));
                            }
                        }
                    }
                    messages.push(Message::Assistant {
                        content: (!text.is_empty()).then_some(text),
                        tool_calls: calls,
                    });
                }
                other => {
                    return Err(Error::invalid_field(
                        format!("messages[{i}].role"),
                        format!("'{other}' is not user or assistant"),
                    ));
                }
            }
        }
        let tools = self
            .tools
            .unwrap_or_default()
            .into_iter()
            .map(|t| ToolDefinition {
                name: t.name,
                description: t.description.unwrap_or_default(),
                parameters: t.input_schema,
                strict: None,
            })
            .collect();
        let (tool_choice, parallel) = match &self.tool_choice {
            None => (None, None),
            Some(v) => {
                let parallel = v
                    .get("disable_parallel_tool_use")
                    .and_then(Value::as_bool)
                    .map(|d| !d);
                let choice = match v.get("type").and_then(Value::as_str) {
                    Some("auto") => ToolChoice::Auto,
                    Some("any") => ToolChoice::Required,
                    Some("none") => ToolChoice::None,
                    Some("tool") => ToolChoice::Tool {
                        name: v
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| Error::invalid_field("tool_choice.name", "is required"))?
                            .to_owned(),
                    },
                    _ => {
                        return Err(Error::invalid_field(
                            "tool_choice.type",
                            "must be auto, any, tool or none",
                        ));
                    }
                };
                (Some(choice), parallel)
            }
        };
        let req = ChatRequest {
            model: self.model,
            messages,
            tools,
            tool_choice,
            parallel_tool_calls: parallel,
            response_format: None,
            temperature: self.temperature,
            top_p: self.top_p,
            max_tokens: Some(max_tokens),
            stop: self.stop_sequences.unwrap_or_default(),
            seed: None,
            presence_penalty: None,
            frequency_penalty: None,
            user: self
                .metadata
                .as_ref()
                .and_then(|m| m.get("user_id"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            extra: Map::new(),
        };
        req.validate()?;
        Ok(req)
    }
}

/// Anthropic's `stop_reason` for a neutral finish reason.
pub fn stop_reason(r: &FinishReason) -> &'static str {
    match r {
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
        FinishReason::Stop | FinishReason::Other(_) => "end_turn",
    }
}

/// Anthropic's usage object.
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens.saturating_sub(u.cached_input_tokens),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": u.cached_input_tokens,
        "output_tokens": u.output_tokens,
    })
}

/// Anthropic's message id prefix.
pub fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else {
        format!("msg_{}", id.trim_start_matches("chatcmpl-"))
    }
}

/// Renders a neutral response as an Anthropic `message`.
pub fn to_message(resp: ChatResponse) -> Value {
    let mut content = Vec::new();
    if let Some(t) = resp.content.as_ref().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": t}));
    }
    for c in &resp.tool_calls {
        let input = serde_json::from_str::<Value>(&c.arguments).unwrap_or_else(|_| json!({}));
        content.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}));
    }
    json!({
        "id": message_id(&resp.id),
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": content,
        "stop_reason": stop_reason(&resp.finish_reason),
        "stop_sequence": null,
        "usage": usage_json(&resp.usage),
    })
}
