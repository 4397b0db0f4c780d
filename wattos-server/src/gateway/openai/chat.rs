//! OpenAI Chat Completions wire types and their conversion to and from WattOS's neutral types.
//!
//! Field names, nullability and enums follow OpenAI's published API reference, so the official SDKs
//! parse every response unmodified.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use wattos_core::llm::{
    ChatDelta, ChatRequest, ChatResponse, ContentPart, FinishReason, ImageSource, Message,
    ResponseFormat, ToolCall, ToolChoice, ToolDefinition, Usage,
};
use wattos_core::{Error, Result};

/// `POST /v1/chat/completions` request body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// Model name.
    #[schema(min_length = 1)]
    pub model: String,
    /// Conversation.
    #[schema(min_items = 1)]
    pub messages: Vec<InMessage>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Sampling temperature.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    pub top_p: Option<f32>,
    /// Legacy output limit.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Output limit (newer name).
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// Stop sequences: a string or up to 4 strings.
    #[serde(default)]
    pub stop: Option<StopField>,
    /// Sampling seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Presence penalty.
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    /// Frequency penalty.
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    /// Number of choices; only 1 is supported.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1)]
    pub n: Option<u32>,
    /// Tools.
    #[serde(default)]
    pub tools: Option<Vec<InTool>>,
    /// Tool choice: "none" | "auto" | "required" | {"type":"function","function":{"name"}}.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    /// Parallel tool calls.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// Response format.
    #[serde(default)]
    pub response_format: Option<Value>,
    /// End-user id.
    #[serde(default)]
    pub user: Option<String>,
    /// Log probabilities (not supported: rejected when true).
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// Everything else (accepted and ignored when harmless, e.g. `store`, `metadata`).
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: Map<String, Value>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a final chunk with usage.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// `stop`: one string or several.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StopField {
    /// One stop sequence.
    One(String),
    /// Several stop sequences.
    Many(Vec<String>),
}

/// A request message.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct InMessage {
    /// system | developer | user | assistant | tool.
    pub role: String,
    /// String, array of parts, or null.
    #[serde(default)]
    pub content: Option<Value>,
    /// Participant name.
    #[serde(default)]
    pub name: Option<String>,
    /// Assistant tool calls.
    #[serde(default)]
    pub tool_calls: Option<Vec<InToolCall>>,
    /// For role=tool: the call answered.
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

/// A tool call inside an assistant message.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct InToolCall {
    /// Call id.
    pub id: String,
    /// Always "function".
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The function call.
    pub function: FunctionCall,
}

/// Function name and JSON arguments text.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FunctionCall {
    /// Function name.
    pub name: String,
    /// Arguments as JSON text.
    pub arguments: String,
}

/// A tool definition.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct InTool {
    /// Always "function".
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: InFunction,
}

/// A function definition.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct InFunction {
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default)]
    pub parameters: Option<Value>,
    /// Strict schema adherence.
    #[serde(default)]
    pub strict: Option<bool>,
}

fn text_of_parts(field: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for (i, p) in parts.iter().enumerate() {
                match (
                    p.get("type").and_then(Value::as_str),
                    p.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => out.push_str(t),
                    _ => {
                        return Err(Error::invalid_field(
                            format!("{field}[{i}]"),
                            "only text parts are allowed here",
                        ));
                    }
                }
            }
            Ok(out)
        }
        Value::Null => Ok(String::new()),
        _ => Err(Error::invalid_field(
            field,
            "must be a string or an array of content parts",
        )),
    }
}

fn user_parts(field: &str, v: &Value) -> Result<Vec<ContentPart>> {
    match v {
        Value::String(s) => Ok(vec![ContentPart::text(s.clone())]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let f = format!("{field}[{i}]");
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => p
                        .get("text")
                        .and_then(Value::as_str)
                        .map(ContentPart::text)
                        .ok_or_else(|| Error::invalid_field(format!("{f}.text"), "is required")),
                    Some("image_url") => {
                        let img = p.get("image_url");
                        let url = img
                            .and_then(|i| i.get("url"))
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                Error::invalid_field(format!("{f}.image_url.url"), "is required")
                            })?;
                        let detail = img
                            .and_then(|i| i.get("detail"))
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                        Ok(ContentPart::Image {
                            source: ImageSource::Url {
                                url: url.to_owned(),
                            },
                            detail,
                        })
                    }
                    Some(other) => Err(Error::invalid_field(
                        format!("{f}.type"),
                        format!("content part type '{other}' is not supported"),
                    )),
                    None => Err(Error::invalid_field(format!("{f}.type"), "is required")),
                }
            })
            .collect(),
        _ => Err(Error::invalid_field(
            field,
            "must be a string or an array of content parts",
        )),
    }
}

impl ChatCompletionRequest {
    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the client asked for a final usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// Converts to the neutral request, naming the field of every problem.
    ///
    /// # Errors
    /// `invalid_input` with the field name.
    pub fn into_neutral(self) -> Result<ChatRequest> {
        if self.model.trim().is_empty() {
            return Err(Error::invalid_field("model", "must not be empty"));
        }
        if let Some(n) = self.n
            && n != 1
        {
            return Err(Error::invalid_field("n", "only n=1 is supported"));
        }
        if self.logprobs == Some(true) {
            return Err(Error::invalid_field(
                "logprobs",
                "log probabilities are not supported",
            ));
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.iter().enumerate() {
            let field = format!("messages[{i}].content");
            let content = m.content.clone().unwrap_or(Value::Null);
            let msg = match m.role.as_str() {
                "system" | "developer" => Message::System {
                    content: text_of_parts(&field, &content)?,
                },
                "user" => {
                    if content.is_null() {
                        return Err(Error::invalid_field(field, "is required for user messages"));
                    }
                    Message::User {
                        content: user_parts(&field, &content)?,
                        name: m.name.clone(),
                    }
                }
                "assistant" => {
                    let text = text_of_parts(&field, &content)?;
                    let tool_calls = m
                        .tool_calls
                        .iter()
                        .flatten()
                        .map(|c| ToolCall {
                            id: c.id.clone(),
                            name: c.function.name.clone(),
                            arguments: c.function.arguments.clone(),
                        })
                        .collect::<Vec<_>>();
                    Message::Assistant {
                        content: (!content.is_null()).then_some(text),
                        tool_calls,
                    }
                }
                "tool" => Message::Tool {
                    tool_call_id: m.tool_call_id.clone().ok_or_else(|| {
                        Error::invalid_field(
                            format!("messages[{i}].tool_call_id"),
                            "is required for tool messages",
                        )
                    })?,
                    content: text_of_parts(&field, &content)?,
                    is_error: false,
                },
                other => {
                    return Err(Error::invalid_field(
                        format!("messages[{i}].role"),
                        format!("'{other}' is not one of system, developer, user, assistant, tool"),
                    ));
                }
            };
            messages.push(msg);
        }
        let tools =
            self.tools
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, t)| {
                    if t.kind != "function" {
                        return Err(Error::invalid_field(
                            format!("tools[{i}].type"),
                            "must be 'function'",
                        ));
                    }
                    Ok(ToolDefinition {
                        name: t.function.name,
                        description: t.function.description.unwrap_or_default(),
                        parameters: t.function.parameters.unwrap_or_else(
                            || serde_json::json!({"type": "object", "properties": {}}),
                        ),
                        strict: t.function.strict,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
        let tool_choice = match self.tool_choice {
            None => None,
            Some(Value::String(s)) => Some(match s.as_str() {
                "auto" => ToolChoice::Auto,
                "none" => ToolChoice::None,
                "required" => ToolChoice::Required,
                other => {
                    return Err(Error::invalid_field(
                        "tool_choice",
                        format!("'{other}' is not auto, none or required"),
                    ));
                }
            }),
            Some(v) => {
                let name = v
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        Error::invalid_field("tool_choice.function.name", "is required")
                    })?;
                Some(ToolChoice::Tool {
                    name: name.to_owned(),
                })
            }
        };
        let response_format = match self.response_format {
            None => None,
            Some(v) => Some(match v.get("type").and_then(Value::as_str) {
                Some("text") => ResponseFormat::Text,
                Some("json_object") => ResponseFormat::JsonObject,
                Some("json_schema") => {
                    let js = v.get("json_schema").ok_or_else(|| {
                        Error::invalid_field("response_format.json_schema", "is required")
                    })?;
                    ResponseFormat::JsonSchema {
                        name: js
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                Error::invalid_field(
                                    "response_format.json_schema.name",
                                    "is required",
                                )
                            })?
                            .to_owned(),
                        schema: js
                            .get("schema")
                            .cloned()
                            .unwrap_or_else(|| serde_json::json!({})),
                        strict: js.get("strict").and_then(Value::as_bool),
                    }
                }
                _ => {
                    return Err(Error::invalid_field(
                        "response_format.type",
                        "must be text, json_object or json_schema",
                    ));
                }
            }),
        };
        let stop = match self.stop {
            None => Vec::new(),
            Some(StopField::One(s)) => vec![s],
            Some(StopField::Many(v)) => v,
        };
        if stop.len() > 4 {
            return Err(Error::invalid_field(
                "stop",
                "at most 4 stop sequences are allowed",
            ));
        }
        let req = ChatRequest {
            model: self.model,
            messages,
            tools,
            tool_choice,
            parallel_tool_calls: self.parallel_tool_calls,
            response_format,
            temperature: self.temperature,
            top_p: self.top_p,
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            stop,
            seed: self.seed,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            user: self.user,
            extra: Map::new(),
        };
        req.validate()?;
        Ok(req)
    }
}

/// `chat.completion` response body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatCompletion {
    /// Response id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// Model that answered.
    pub model: String,
    /// Exactly one choice.
    pub choices: Vec<Choice>,
    /// Token usage.
    pub usage: OutUsage,
    /// Omitted: no fingerprint (OpenAI's schema types it as a string, so it is never `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Always "default".
    pub service_tier: Option<String>,
}

/// A completion choice.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Choice {
    /// Always 0.
    pub index: u32,
    /// The answer.
    pub message: OutMessage,
    /// Always null.
    pub logprobs: Option<Value>,
    /// stop | length | tool_calls | content_filter.
    pub finish_reason: String,
}

/// The assistant message in a response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// Text, or null when the model only called tools.
    pub content: Option<String>,
    /// Always null.
    pub refusal: Option<String>,
    /// Tool calls, omitted when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<OutToolCall>>,
    /// Always empty.
    pub annotations: Vec<Value>,
}

/// A tool call in a response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutToolCall {
    /// Call id.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The call.
    pub function: FunctionCall,
}

/// Usage in OpenAI's shape.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutUsage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Output tokens.
    pub completion_tokens: u64,
    /// Sum.
    pub total_tokens: u64,
    /// Cached input tokens.
    pub prompt_tokens_details: PromptTokensDetails,
    /// Reasoning tokens (always 0 here).
    pub completion_tokens_details: CompletionTokensDetails,
}

/// `prompt_tokens_details`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PromptTokensDetails {
    /// Cached input tokens.
    pub cached_tokens: u64,
    /// Audio input tokens.
    pub audio_tokens: u64,
}

/// `completion_tokens_details`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CompletionTokensDetails {
    /// Reasoning tokens.
    pub reasoning_tokens: u64,
    /// Audio output tokens.
    pub audio_tokens: u64,
    /// Accepted prediction tokens.
    pub accepted_prediction_tokens: u64,
    /// Rejected prediction tokens.
    pub rejected_prediction_tokens: u64,
}

impl From<Usage> for OutUsage {
    fn from(u: Usage) -> Self {
        Self {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u.total_tokens(),
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: u.cached_input_tokens,
                audio_tokens: 0,
            },
            completion_tokens_details: CompletionTokensDetails {
                reasoning_tokens: 0,
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        }
    }
}

/// OpenAI's id prefix for completions.
pub fn completion_id(resp_id: &str) -> String {
    if resp_id.starts_with("chatcmpl-") {
        resp_id.to_owned()
    } else {
        format!("chatcmpl-{resp_id}")
    }
}

/// Renders a neutral response as `chat.completion`.
pub fn to_completion(resp: ChatResponse, created: u64) -> ChatCompletion {
    let tool_calls = (!resp.tool_calls.is_empty()).then(|| {
        resp.tool_calls
            .into_iter()
            .map(|c| OutToolCall {
                id: c.id,
                kind: "function",
                function: FunctionCall {
                    name: c.name,
                    arguments: c.arguments,
                },
            })
            .collect()
    });
    ChatCompletion {
        id: completion_id(&resp.id),
        object: "chat.completion",
        created,
        model: resp.model,
        choices: vec![Choice {
            index: 0,
            message: OutMessage {
                role: "assistant",
                content: resp.content,
                refusal: None,
                tool_calls,
                annotations: Vec::new(),
            },
            logprobs: None,
            finish_reason: resp.finish_reason.as_openai_str().to_owned(),
        }],
        usage: resp.usage.into(),
        system_fingerprint: None,
        service_tier: Some("default".into()),
    }
}

/// Builds `chat.completion.chunk` objects from deltas.
#[derive(Debug)]
pub struct ChunkWriter {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    sent_role: bool,
    usage: Option<Usage>,
    /// Tool call indexes whose first fragment (with id, type and name) was sent.
    started_calls: std::collections::HashSet<usize>,
}

impl ChunkWriter {
    /// A writer for one streamed completion.
    pub fn new(model: String, created: u64, include_usage: bool) -> Self {
        Self {
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            model,
            created,
            include_usage,
            sent_role: false,
            usage: None,
            started_calls: Default::default(),
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>, usage: Option<Value>) -> Value {
        let mut c = serde_json::json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        });
        if self.include_usage {
            c["usage"] = usage.unwrap_or(Value::Null);
        }
        c
    }

    fn role_delta(&mut self, mut delta: Value) -> Value {
        if !self.sent_role {
            self.sent_role = true;
            delta["role"] = "assistant".into();
            if delta.get("content").is_none() {
                delta["content"] = "".into();
            }
            delta["refusal"] = Value::Null;
        }
        delta
    }

    /// Chunks (possibly none) for one delta.
    pub fn on_delta(&mut self, delta: ChatDelta) -> Vec<Value> {
        match delta {
            ChatDelta::Start { model, .. } => {
                if !model.is_empty() {
                    self.model = model;
                }
                let d = self.role_delta(serde_json::json!({}));
                vec![self.chunk(d, None, None)]
            }
            ChatDelta::Text { text } => {
                let d = self.role_delta(serde_json::json!({ "content": text }));
                vec![self.chunk(d, None, None)]
            }
            ChatDelta::ToolCall(tc) => {
                let mut call = serde_json::json!({ "index": tc.index, "function": { "arguments": tc.arguments } });
                if self.started_calls.insert(tc.index) {
                    call["id"] = tc
                        .id
                        .unwrap_or_else(|| format!("call_{}", uuid::Uuid::new_v4().simple()))
                        .into();
                    call["type"] = "function".into();
                    call["function"]["name"] = tc.name.unwrap_or_default().into();
                }
                let d = self.role_delta(serde_json::json!({ "tool_calls": [call] }));
                vec![self.chunk(d, None, None)]
            }
            ChatDelta::Usage(u) => {
                // OpenAI sends usage in one extra chunk after the finish chunk, right before [DONE].
                self.usage = Some(u);
                Vec::new()
            }
            ChatDelta::Finish { reason } => {
                let d = self.role_delta(serde_json::json!({}));
                vec![self.chunk(d, Some(reason.as_openai_str()), None)]
            }
        }
    }
}

impl ChunkWriter {
    /// The final usage chunk (`choices: []`), when the client asked for one.
    pub fn usage_chunk(&self) -> Option<Value> {
        if !self.include_usage {
            return None;
        }
        let usage = serde_json::to_value(OutUsage::from(self.usage.unwrap_or_default()))
            .unwrap_or(Value::Null);
        let mut c = self.chunk(Value::Null, None, Some(usage));
        c["choices"] = Value::Array(Vec::new());
        Some(c)
    }
}

/// Maps a neutral finish reason to OpenAI's string (re-exported for tests).
pub fn finish_str(r: &FinishReason) -> &str {
    r.as_openai_str()
}
