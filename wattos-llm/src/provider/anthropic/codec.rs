//! Anthropic Messages wire format.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use wattos_core::llm::{
    ChatRequest, ChatResponse, ContentPart, FinishReason, ImageSource, Message, ResponseFormat,
    ToolCall, ToolChoice, Usage,
};
use wattos_core::{Error, Result};

use crate::provider::common::{f32_value, generated_id, merge_extra, unknown_fields};

/// Builds the request body. Returns the body and, for JSON-schema output, the name of the forced
/// tool whose input is the answer (Anthropic has no native JSON-schema mode; a forced tool call is
/// its documented way to get schema-conforming JSON).
pub(crate) fn chat_body(
    req: &ChatRequest,
    model: &str,
    default_max_tokens: u32,
    stream: bool,
) -> Result<(Map<String, Value>, Option<String>)> {
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    body.insert(
        "max_tokens".into(),
        req.max_tokens.unwrap_or(default_max_tokens).into(),
    );
    let mut system: Vec<String> = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, blocks) = match m {
            Message::System { content } => {
                system.push(content.clone());
                continue;
            }
            Message::User { content, .. } => ("user", user_blocks(content)),
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let mut blocks = Vec::new();
                if let Some(text) = content.as_deref().filter(|t| !t.is_empty()) {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in tool_calls {
                    let input = call.parse_arguments().map_err(|e| {
                        e.with_field(format!("messages[{i}].tool_calls[{}].arguments", call.name))
                    })?;
                    blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
                }
                ("assistant", blocks)
            }
            Message::Tool {
                tool_call_id,
                content,
                is_error,
            } => {
                let mut block =
                    json!({"type": "tool_result", "tool_use_id": tool_call_id, "content": content});
                if *is_error {
                    block["is_error"] = true.into();
                }
                ("user", vec![block])
            }
        };
        // Anthropic wants alternating roles: merge consecutive same-role turns.
        match messages.last_mut() {
            Some((last_role, last)) if *last_role == role => last.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    let mut json_tool = None;
    let mut tools: Vec<Value> = req
        .tools
        .iter()
        .map(
            |t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}),
        )
        .collect();
    match &req.response_format {
        Some(ResponseFormat::JsonSchema { name, schema, .. }) => {
            tools.push(json!({
                "name": name,
                "description": "Respond with the final answer as this tool's input.",
                "input_schema": schema,
            }));
            body.insert("tool_choice".into(), json!({"type": "tool", "name": name}));
            json_tool = Some(name.clone());
        }
        Some(ResponseFormat::JsonObject) => {
            system.push("Respond only with a single valid JSON object.".to_owned());
        }
        _ => {}
    }
    if json_tool.is_none()
        && let Some(choice) = &req.tool_choice
    {
        let mut c = match choice {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Tool { name } => json!({"type": "tool", "name": name}),
        };
        if req.parallel_tool_calls == Some(false) && !matches!(choice, ToolChoice::None) {
            c["disable_parallel_tool_use"] = true.into();
        }
        body.insert("tool_choice".into(), c);
    } else if json_tool.is_none() && req.parallel_tool_calls == Some(false) && !tools.is_empty() {
        body.insert(
            "tool_choice".into(),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        );
    }
    if !system.is_empty() {
        body.insert("system".into(), system.join("\n\n").into());
    }
    body.insert(
        "messages".into(),
        messages
            .into_iter()
            .map(|(role, blocks)| {
                let content = match blocks.as_slice() {
                    [b] if b["type"] == "text" => b["text"].clone(),
                    _ => Value::Array(blocks),
                };
                json!({"role": role, "content": content})
            })
            .collect(),
    );
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(t) = req.temperature {
        // Anthropic's range is 0..=1.
        body.insert("temperature".into(), f32_value(t.min(1.0)));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), f32_value(p));
    }
    if !req.stop.is_empty() {
        body.insert("stop_sequences".into(), req.stop.clone().into());
    }
    if let Some(user) = &req.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if stream {
        body.insert("stream".into(), true.into());
    }
    merge_extra(&mut body, &req.extra);
    Ok((body, json_tool))
}

fn user_blocks(parts: &[ContentPart]) -> Vec<Value> {
    parts
        .iter()
        .map(|p| match p {
            ContentPart::Text { text } => json!({"type": "text", "text": text}),
            ContentPart::Image { source, .. } => match source {
                ImageSource::Base64 { media_type, data } => json!({
                    "type": "image",
                    "source": {"type": "base64", "media_type": media_type, "data": data},
                }),
                ImageSource::Url { url } => {
                    json!({"type": "image", "source": {"type": "url", "url": url}})
                }
            },
        })
        .collect()
}

/// Maps Anthropic's `stop_reason`.
pub(crate) fn stop_reason(s: &str) -> FinishReason {
    match s {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub(crate) input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) output_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Updates fields present in `other` (message_delta carries cumulative counts).
    pub(crate) fn update(&mut self, other: &WireUsage) {
        let pick = |a: &mut Option<u64>, b: Option<u64>| {
            if b.is_some() {
                *a = b;
            }
        };
        pick(&mut self.input_tokens, other.input_tokens);
        pick(&mut self.output_tokens, other.output_tokens);
        pick(
            &mut self.cache_creation_input_tokens,
            other.cache_creation_input_tokens,
        );
        pick(
            &mut self.cache_read_input_tokens,
            other.cache_read_input_tokens,
        );
    }

    /// Anthropic's `input_tokens` excludes cache reads and writes; ours includes them.
    pub(crate) fn normalize(&self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        Usage {
            input_tokens: self.input_tokens.unwrap_or(0)
                + read
                + self.cache_creation_input_tokens.unwrap_or(0),
            output_tokens: self.output_tokens.unwrap_or(0),
            cached_input_tokens: read,
        }
    }
}

#[derive(Deserialize)]
struct MessageResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Parses a non-streaming Messages response.
pub(crate) fn parse_response(
    provider: &'static str,
    requested_model: &str,
    json_tool: Option<&str>,
    body: &[u8],
) -> Result<ChatResponse> {
    let r: MessageResponse =
        serde_json::from_slice(body).map_err(|e| crate::http::invalid_response(provider, &e))?;
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    let mut other = Vec::new();
    let mut answered_by_json_tool = false;
    for block in r.content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let t = block.get("text").and_then(Value::as_str).unwrap_or("");
                text.get_or_insert_with(String::new).push_str(t);
            }
            Some("tool_use") => {
                let name = block.get("name").and_then(Value::as_str).unwrap_or("");
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                if Some(name) == json_tool {
                    answered_by_json_tool = true;
                    text = Some(input.to_string());
                    continue;
                }
                tool_calls.push(ToolCall {
                    id: block
                        .get("id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            Error::upstream(provider, None, false, "tool_use block without id")
                        })?,
                    name: name.to_owned(),
                    arguments: input.to_string(),
                });
            }
            _ => other.push(block),
        }
    }
    let mut provider_fields = unknown_fields(r.rest, &["type", "role"]);
    if !other.is_empty() {
        provider_fields.insert("other_content".into(), Value::Array(other));
    }
    let finish_reason = match r.stop_reason.as_deref() {
        Some("tool_use") if answered_by_json_tool && tool_calls.is_empty() => FinishReason::Stop,
        Some(s) => stop_reason(s),
        None => FinishReason::Stop,
    };
    Ok(ChatResponse {
        id: r.id.unwrap_or_else(|| generated_id("msg_")),
        model: r
            .model
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| requested_model.to_owned()),
        content: text,
        tool_calls,
        finish_reason,
        usage: r.usage.normalize(),
        cost: None,
        provider_fields,
    })
}
