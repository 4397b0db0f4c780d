//! Provider-neutral chat types: messages, tools, sampling, responses, usage and cost.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A piece of message content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// An image, by URL or inline base64 data.
    Image {
        /// Where the image comes from.
        source: ImageSource,
        /// OpenAI's `detail` hint (`low`, `high`, `auto`), when set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageSource {
    /// A URL (http(s) or `data:` URL).
    Url {
        /// The URL.
        url: String,
    },
    /// Base64-encoded bytes.
    Base64 {
        /// MIME type such as `image/png`.
        media_type: String,
        /// Base64 data (no `data:` prefix).
        data: String,
    },
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Provider-assigned id that the tool result must echo.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// Arguments as a JSON text, exactly as the model produced them (may be invalid JSON).
    pub arguments: String,
}

impl ToolCall {
    /// Parses [`ToolCall::arguments`] as JSON (an empty string counts as `{}`).
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] naming the tool when the arguments are not valid JSON.
    pub fn parse_arguments(&self) -> Result<Value> {
        if self.arguments.trim().is_empty() {
            return Ok(Value::Object(Map::new()));
        }
        serde_json::from_str(&self.arguments).map_err(|e| {
            Error::invalid_field(
                format!("tool_calls[{}].arguments", self.name),
                format!("not valid JSON: {e}"),
            )
        })
    }
}

/// One chat message, by role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    /// Instructions for the model.
    System {
        /// The instructions.
        content: String,
    },
    /// A user turn.
    User {
        /// Text and/or images.
        content: Vec<ContentPart>,
        /// Optional participant name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// A model turn: text, tool calls, or both.
    Assistant {
        /// Text content, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        /// Tool calls made in this turn (several are allowed).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call.
    Tool {
        /// The [`ToolCall::id`] this answers.
        tool_call_id: String,
        /// The tool's output (JSON or text).
        content: String,
        /// Whether the tool failed (Anthropic's `is_error`; folded into text for others).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::System {
            content: content.into(),
        }
    }

    /// A plain-text user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::User {
            content: vec![ContentPart::text(content)],
            name: None,
        }
    }

    /// A plain-text assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::Assistant {
            content: Some(content.into()),
            tool_calls: Vec::new(),
        }
    }

    /// A tool result.
    pub fn tool_result(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self::Tool {
            tool_call_id: tool_call_id.into(),
            content: content.into(),
            is_error: false,
        }
    }

    /// The message's role name (`system`, `user`, `assistant`, `tool`).
    pub fn role(&self) -> &'static str {
        match self {
            Self::System { .. } => "system",
            Self::User { .. } => "user",
            Self::Assistant { .. } => "assistant",
            Self::Tool { .. } => "tool",
        }
    }

    /// All text in the message, concatenated (images are skipped).
    pub fn text(&self) -> String {
        match self {
            Self::System { content } | Self::Tool { content, .. } => content.clone(),
            Self::User { content, .. } => content
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    ContentPart::Image { .. } => None,
                })
                .collect::<Vec<_>>()
                .join(""),
            Self::Assistant { content, .. } => content.clone().unwrap_or_default(),
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    /// Name the model uses to call it (`^[a-zA-Z0-9_-]{1,64}$`).
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
    /// Ask the provider for strict schema adherence, where supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// How the model may use tools.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call.
    Required,
    /// This specific tool.
    Tool {
        /// The tool's name.
        name: String,
    },
}

/// Requested output format.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text.
    #[default]
    Text,
    /// Any valid JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// Schema name (OpenAI requires one).
        name: String,
        /// The JSON Schema.
        schema: Value,
        /// Strict adherence, where supported.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

/// A provider-neutral chat request.
///
/// ```
/// use wattos_core::llm::{ChatRequest, Message};
/// let req = ChatRequest::new("gpt-4o-mini", vec![Message::system("Be brief."), Message::user("Hi")])
///     .with_max_tokens(64)
///     .with_temperature(0.2);
/// assert!(req.validate().is_ok());
/// assert!(ChatRequest::new("m", vec![]).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model name or alias; routers resolve it to a deployment.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDefinition>,
    /// Tool usage policy (provider default when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether several tool calls may come in one turn (provider default when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Output format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Sampling temperature, 0..=2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling, 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Maximum output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Stop sequences (at most 4 for most providers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Seed for reproducible sampling, where supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Presence penalty, -2..=2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// Frequency penalty, -2..=2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// End-user id for abuse monitoring, passed to providers that take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Provider-specific fields merged into the vendor request body as-is.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// A request for `model` with `messages` and provider defaults for everything else.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            messages,
            ..Self::default()
        }
    }

    /// Sets the maximum output tokens.
    pub fn with_max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// Sets the temperature.
    pub fn with_temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Adds a tool.
    pub fn with_tool(mut self, tool: ToolDefinition) -> Self {
        self.tools.push(tool);
        self
    }

    /// Checks the request for values no provider accepts, naming the field at fault.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] with the field name.
    pub fn validate(&self) -> Result<()> {
        if self.messages.is_empty() {
            return Err(Error::invalid_field("messages", "must not be empty"));
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(Error::invalid_field(
                "temperature",
                "must be between 0 and 2",
            ));
        }
        if let Some(p) = self.top_p
            && !(0.0..=1.0).contains(&p)
        {
            return Err(Error::invalid_field("top_p", "must be between 0 and 1"));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if let Some(v) = v
                && !(-2.0..=2.0).contains(&v)
            {
                return Err(Error::invalid_field(name, "must be between -2 and 2"));
            }
        }
        if self.max_tokens == Some(0) {
            return Err(Error::invalid_field("max_tokens", "must be at least 1"));
        }
        for (i, tool) in self.tools.iter().enumerate() {
            let valid_name = !tool.name.is_empty()
                && tool.name.len() <= 64
                && tool
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid_name {
                return Err(Error::invalid_field(
                    format!("tools[{i}].name"),
                    "must match ^[a-zA-Z0-9_-]{1,64}$",
                ));
            }
            if !tool.parameters.is_object() {
                return Err(Error::invalid_field(
                    format!("tools[{i}].parameters"),
                    "must be a JSON Schema object",
                ));
            }
        }
        if let Some(ToolChoice::Tool { name }) = &self.tool_choice
            && !self.tools.iter().any(|t| &t.name == name)
        {
            return Err(Error::invalid_field(
                "tool_choice",
                format!("names tool '{name}' which is not in tools"),
            ));
        }
        Ok(())
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// Output was filtered.
    ContentFilter,
    /// A provider-specific reason.
    Other(String),
}

impl FinishReason {
    /// OpenAI's wire name for this reason.
    pub fn as_openai_str(&self) -> &str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
            Self::Other(s) => s,
        }
    }
}

/// Token usage of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens, including cached ones.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's cache (a subset of `input_tokens`).
    #[serde(default)]
    pub cached_input_tokens: u64,
}

impl Usage {
    /// Input plus output tokens.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// Adds `other` to `self` (for multi-step runs).
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
    }
}

/// What a call cost, in US dollars.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Cost {
    /// Cost of uncached input tokens.
    pub input_usd: f64,
    /// Cost of cached input tokens.
    pub cached_input_usd: f64,
    /// Cost of output tokens.
    pub output_usd: f64,
}

impl Cost {
    /// The sum of all parts.
    pub fn total_usd(&self) -> f64 {
        self.input_usd + self.cached_input_usd + self.output_usd
    }
}

/// A complete chat answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Provider response id (generated when the provider gives none).
    pub id: String,
    /// The model that actually answered (may differ from the requested alias).
    pub model: String,
    /// Answer text, if any.
    pub content: Option<String>,
    /// Tool calls, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Token usage.
    pub usage: Usage,
    /// Cost, when the model's price is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// Provider-specific response fields, passed through.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub provider_fields: Map<String, Value>,
}

impl ChatResponse {
    /// The answer as an assistant message, to append to a conversation.
    pub fn to_message(&self) -> Message {
        Message::Assistant {
            content: self.content.clone(),
            tool_calls: self.tool_calls.clone(),
        }
    }

    /// The answer text or an empty string.
    pub fn text(&self) -> &str {
        self.content.as_deref().unwrap_or("")
    }
}

/// What a chat model supports; conservative by default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capabilities {
    /// Native token streaming.
    pub streaming: bool,
    /// Tool calling.
    pub tools: bool,
    /// JSON schema response format.
    pub json_schema: bool,
    /// Image inputs.
    pub vision: bool,
    /// Context window in tokens, when known.
    pub context_window: Option<u32>,
    /// Maximum output tokens, when known.
    pub max_output_tokens: Option<u32>,
}
