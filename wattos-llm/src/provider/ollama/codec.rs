//! Ollama `/api/chat` wire format (non-streaming answers and NDJSON stream lines share a shape).

use serde::Deserialize;
use serde_json::{Map, Value, json};
use wattos_core::llm::{
    ChatDelta, ChatRequest, ContentPart, FinishReason, ImageSource, Message, ResponseFormat,
    ToolCallDelta, Usage,
};
use wattos_core::{Error, Result};

use crate::provider::common::{f32_value, merge_extra};

/// Builds the request body.
pub(crate) fn chat_body(
    req: &ChatRequest,
    model: &str,
    stream: bool,
    keep_alive: Option<&str>,
) -> Result<Map<String, Value>> {
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    let mut names = std::collections::HashMap::new();
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        messages.push(match m {
            Message::System { content } => json!({"role": "system", "content": content}),
            Message::User { content, .. } => {
                let mut text = String::new();
                let mut images = Vec::new();
                for (j, p) in content.iter().enumerate() {
                    match p {
                        ContentPart::Text { text: t } => text.push_str(t),
                        ContentPart::Image { source, .. } => {
                            images.push(image(source).ok_or_else(|| {
                                Error::invalid_field(
                                    format!("messages[{i}].content[{j}]"),
                                    "Ollama takes inline base64 images only, not URLs",
                                )
                            })?)
                        }
                    }
                }
                let mut v = json!({"role": "user", "content": text});
                if !images.is_empty() {
                    v["images"] = images.into();
                }
                v
            }
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let mut v =
                    json!({"role": "assistant", "content": content.clone().unwrap_or_default()});
                if !tool_calls.is_empty() {
                    let mut calls = Vec::new();
                    for c in tool_calls {
                        names.insert(c.id.as_str(), c.name.as_str());
                        let args = c.parse_arguments().map_err(|e| {
                            e.with_field(format!("messages[{i}].tool_calls[{}].arguments", c.name))
                        })?;
                        calls.push(json!({"function": {"name": c.name, "arguments": args}}));
                    }
                    v["tool_calls"] = calls.into();
                }
                v
            }
            Message::Tool {
                tool_call_id,
                content,
                is_error,
            } => {
                let content = if *is_error {
                    format!("Error: {content}")
                } else {
                    content.clone()
                };
                let mut v = json!({"role": "tool", "content": content});
                if let Some(name) = names.get(tool_call_id.as_str()) {
                    v["tool_name"] = (*name).into();
                }
                v
            }
        });
    }
    body.insert("messages".into(), messages.into());
    if !req.tools.is_empty() {
        body.insert(
            "tools".into(),
            req.tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters}})
                })
                .collect(),
        );
    }
    match &req.response_format {
        Some(ResponseFormat::JsonObject) => {
            body.insert("format".into(), "json".into());
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            body.insert("format".into(), schema.clone());
        }
        _ => {}
    }
    let mut options = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            options.insert(k.to_owned(), v);
        }
    };
    put("temperature", req.temperature.map(f32_value));
    put("top_p", req.top_p.map(f32_value));
    put("num_predict", req.max_tokens.map(Value::from));
    put(
        "stop",
        (!req.stop.is_empty()).then(|| Value::from(req.stop.clone())),
    );
    put("seed", req.seed.map(Value::from));
    put("presence_penalty", req.presence_penalty.map(f32_value));
    put("frequency_penalty", req.frequency_penalty.map(f32_value));
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    body.insert("stream".into(), stream.into());
    if let Some(k) = keep_alive {
        body.insert("keep_alive".into(), k.into());
    }
    merge_extra(&mut body, &req.extra);
    Ok(body)
}

fn image(source: &ImageSource) -> Option<String> {
    match source {
        ImageSource::Base64 { data, .. } => Some(data.clone()),
        ImageSource::Url { url } => url
            .strip_prefix("data:")
            .and_then(|r| r.split_once(";base64,"))
            .map(|(_, d)| d.to_owned()),
    }
}

/// One `/api/chat` answer or stream line.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatLine {
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<LineMessage>,
    #[serde(default)]
    pub(crate) done: bool,
    #[serde(default)]
    pub(crate) done_reason: Option<String>,
    #[serde(default)]
    pub(crate) prompt_eval_count: Option<u64>,
    #[serde(default)]
    pub(crate) eval_count: Option<u64>,
    #[serde(default)]
    pub(crate) error: Option<String>,
    #[serde(flatten)]
    pub(crate) rest: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LineMessage {
    #[serde(default)]
    pub(crate) content: Option<String>,
    #[serde(default)]
    pub(crate) tool_calls: Vec<WireToolCall>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireToolCall {
    #[serde(default)]
    pub(crate) id: Option<String>,
    pub(crate) function: WireFunction,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireFunction {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) arguments: Value,
}

impl ChatLine {
    pub(crate) fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_eval_count.unwrap_or(0),
            output_tokens: self.eval_count.unwrap_or(0),
            cached_input_tokens: 0,
        }
    }

    /// Pushes this line's text and tool calls; `calls` numbers tool calls across lines.
    pub(crate) fn deltas(&mut self, calls: &mut usize, out: &mut Vec<ChatDelta>) {
        let Some(msg) = self.message.as_mut() else {
            return;
        };
        if let Some(t) = msg.content.take().filter(|t| !t.is_empty()) {
            out.push(ChatDelta::Text { text: t });
        }
        for c in msg.tool_calls.drain(..) {
            let arguments = match c.function.arguments {
                Value::Null => "{}".to_owned(),
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.push(ChatDelta::ToolCall(ToolCallDelta {
                index: *calls,
                id: Some(c.id.unwrap_or_else(|| format!("call_{calls}"))),
                name: Some(c.function.name),
                arguments,
            }));
            *calls += 1;
        }
    }

    pub(crate) fn finish_reason(&self, had_calls: bool) -> FinishReason {
        match self.done_reason.as_deref() {
            None | Some("stop") if had_calls => FinishReason::ToolCalls,
            None | Some("stop") => FinishReason::Stop,
            Some("length") => FinishReason::Length,
            Some(other) => FinishReason::Other(other.to_owned()),
        }
    }
}
