//! OpenAI chat completions wire format: request body and response parsing.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use wattos_core::llm::{
    ChatRequest, ChatResponse, ContentPart, FinishReason, ImageSource, Message, ResponseFormat,
    ToolCall, ToolChoice, Usage,
};
use wattos_core::{Error, Result};

use crate::provider::common::{f32_value, generated_id, merge_extra, unknown_fields};

/// Which field carries the output-token limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    /// `max_completion_tokens` (current OpenAI models, required by reasoning models).
    MaxCompletionTokens,
    /// `max_tokens` (Azure's older API versions and most OpenAI-compatible servers).
    #[default]
    MaxTokens,
}

/// Builds the request body. `model` is `None` for Azure (the deployment picks the model).
pub(crate) fn chat_body(
    req: &ChatRequest,
    model: Option<&str>,
    max_tokens_field: MaxTokensField,
    stream: bool,
) -> Result<Map<String, Value>> {
    let mut body = Map::new();
    if let Some(m) = model {
        body.insert("model".into(), m.into());
    }
    body.insert(
        "messages".into(),
        Value::Array(req.messages.iter().map(message).collect()),
    );
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                let mut f = json!({
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                });
                if let Some(strict) = t.strict {
                    f["strict"] = strict.into();
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &req.tool_choice {
        body.insert(
            "tool_choice".into(),
            match choice {
                ToolChoice::Auto => "auto".into(),
                ToolChoice::None => "none".into(),
                ToolChoice::Required => "required".into(),
                ToolChoice::Tool { name } => {
                    json!({"type": "function", "function": {"name": name}})
                }
            },
        );
    }
    if let Some(p) = req.parallel_tool_calls
        && !req.tools.is_empty()
    {
        body.insert("parallel_tool_calls".into(), p.into());
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some(ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        }) => {
            let mut js = json!({"name": name, "schema": schema});
            if let Some(s) = strict {
                js["strict"] = (*s).into();
            }
            body.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": js}),
            );
        }
    }
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            body.insert(k.to_owned(), v);
        }
    };
    put("temperature", req.temperature.map(f32_value));
    put("top_p", req.top_p.map(f32_value));
    let max_key = match max_tokens_field {
        MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
        MaxTokensField::MaxTokens => "max_tokens",
    };
    put(max_key, req.max_tokens.map(Value::from));
    put(
        "stop",
        (!req.stop.is_empty()).then(|| Value::from(req.stop.clone())),
    );
    put("seed", req.seed.map(Value::from));
    put("presence_penalty", req.presence_penalty.map(f32_value));
    put("frequency_penalty", req.frequency_penalty.map(f32_value));
    put("user", req.user.clone().map(Value::from));
    if stream {
        body.insert("stream".into(), true.into());
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    merge_extra(&mut body, &req.extra);
    Ok(body)
}

fn message(m: &Message) -> Value {
    match m {
        Message::System { content } => json!({"role": "system", "content": content}),
        Message::User { content, name } => {
            let mut v = json!({"role": "user", "content": user_content(content)});
            if let Some(n) = name {
                v["name"] = n.clone().into();
            }
            v
        }
        Message::Assistant {
            content,
            tool_calls,
        } => {
            let mut v = json!({"role": "assistant", "content": content});
            if !tool_calls.is_empty() {
                v["tool_calls"] = tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        })
                    })
                    .collect();
            }
            v
        }
        Message::Tool {
            tool_call_id,
            content,
            is_error,
        } => {
            // OpenAI has no error flag on tool results; say it in the text.
            let content = if *is_error {
                format!("Error: {content}")
            } else {
                content.clone()
            };
            json!({"role": "tool", "tool_call_id": tool_call_id, "content": content})
        }
    }
}

fn user_content(parts: &[ContentPart]) -> Value {
    if let [ContentPart::Text { text }] = parts {
        return text.clone().into();
    }
    parts
        .iter()
        .map(|p| match p {
            ContentPart::Text { text } => json!({"type": "text", "text": text}),
            ContentPart::Image { source, detail } => {
                let url = match source {
                    ImageSource::Url { url } => url.clone(),
                    ImageSource::Base64 { media_type, data } => {
                        format!("data:{media_type};base64,{data}")
                    }
                };
                let mut image = json!({"url": url});
                if let Some(d) = detail {
                    image["detail"] = d.clone().into();
                }
                json!({"type": "image_url", "image_url": image})
            }
        })
        .collect()
}

/// Maps OpenAI's `finish_reason`.
pub(crate) fn finish_reason(s: &str) -> FinishReason {
    match s {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub(crate) prompt_tokens: u64,
    #[serde(default)]
    pub(crate) completion_tokens: u64,
    #[serde(default)]
    pub(crate) prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PromptDetails {
    #[serde(default)]
    pub(crate) cached_tokens: Option<u64>,
}

impl WireUsage {
    pub(crate) fn normalize(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens,
            output_tokens: self.completion_tokens,
            cached_input_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Completion {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: AssistantMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AssistantMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    id: String,
    function: WireFunction,
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

/// Parses a non-streaming completion.
pub(crate) fn parse_response(
    provider: &'static str,
    requested_model: &str,
    body: &[u8],
) -> Result<ChatResponse> {
    let c: Completion =
        serde_json::from_slice(body).map_err(|e| crate::http::invalid_response(provider, &e))?;
    let choice = c.choices.into_iter().next().ok_or_else(|| {
        Error::upstream(provider, None, false, "response has no choices")
            .with_upstream(provider, None)
    })?;
    let mut provider_fields = unknown_fields(c.rest, &["object", "created", "choices"]);
    if let Some(r) = choice.message.refusal {
        provider_fields.insert("refusal".into(), r.into());
    }
    let tool_calls: Vec<ToolCall> = choice
        .message
        .tool_calls
        .into_iter()
        .map(|t| ToolCall {
            id: t.id,
            name: t.function.name,
            arguments: t.function.arguments,
        })
        .collect();
    let finish_reason = match choice.finish_reason.as_deref() {
        Some(s) => finish_reason(s),
        None if !tool_calls.is_empty() => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    };
    Ok(ChatResponse {
        id: c.id.unwrap_or_else(|| generated_id("chatcmpl-")),
        model: c
            .model
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| requested_model.to_owned()),
        content: choice.message.content,
        tool_calls,
        finish_reason,
        usage: c.usage.map(|u| u.normalize()).unwrap_or_default(),
        cost: None,
        provider_fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattos_core::llm::ToolDefinition;

    #[test]
    fn body_shape() {
        let mut req = ChatRequest::new(
            "gpt-4o",
            vec![
                Message::system("sys"),
                Message::user("hi"),
                Message::Assistant {
                    content: None,
                    tool_calls: vec![ToolCall {
                        id: "c1".into(),
                        name: "f".into(),
                        arguments: "{}".into(),
                    }],
                },
                Message::tool_result("c1", "ok"),
            ],
        )
        .with_temperature(0.2)
        .with_max_tokens(10)
        .with_tool(ToolDefinition {
            name: "f".into(),
            description: "d".into(),
            parameters: json!({"type": "object"}),
            strict: None,
        });
        req.extra.insert("logprobs".into(), true.into());
        let b = Value::Object(
            chat_body(
                &req,
                Some("gpt-4o"),
                MaxTokensField::MaxCompletionTokens,
                true,
            )
            .unwrap(),
        );
        assert_eq!(b["temperature"], json!(0.2));
        assert_eq!(b["max_completion_tokens"], 10);
        assert_eq!(b["messages"][1]["content"], "hi");
        assert_eq!(b["messages"][2]["tool_calls"][0]["function"]["name"], "f");
        assert_eq!(b["messages"][3]["tool_call_id"], "c1");
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["logprobs"], true);
    }
}
