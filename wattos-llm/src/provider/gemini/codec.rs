//! Gemini `generateContent` wire format.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use wattos_core::llm::{
    ChatDelta, ChatRequest, ContentPart, FinishReason, ImageSource, Message, ResponseFormat,
    ToolCallDelta, ToolChoice, Usage,
};
use wattos_core::{Error, Result};

use crate::provider::common::{f32_value, merge_extra};

/// Builds the request body.
pub(crate) fn chat_body(req: &ChatRequest) -> Result<Map<String, Value>> {
    let mut body = Map::new();
    let mut system = Vec::new();
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    // Gemini's functionResponse needs the function's name; tool results only carry the call id.
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, parts) = match m {
            Message::System { content } => {
                system.push(json!({"text": content}));
                continue;
            }
            Message::User { content, .. } => ("user", content.iter().map(user_part).collect()),
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let mut parts = Vec::new();
                if let Some(t) = content.as_deref().filter(|t| !t.is_empty()) {
                    parts.push(json!({"text": t}));
                }
                for call in tool_calls {
                    call_names.insert(&call.id, &call.name);
                    let args = call.parse_arguments().map_err(|e| {
                        e.with_field(format!("messages[{i}].tool_calls[{}].arguments", call.name))
                    })?;
                    parts.push(json!({"functionCall": {"name": call.name, "args": args}}));
                }
                ("model", parts)
            }
            Message::Tool {
                tool_call_id,
                content,
                is_error,
            } => {
                let name = call_names.get(tool_call_id.as_str()).ok_or_else(|| {
                    Error::invalid_field(
                        format!("messages[{i}].tool_call_id"),
                        format!("no earlier assistant tool call has id '{tool_call_id}'"),
                    )
                })?;
                let value = serde_json::from_str::<Value>(content)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({"content": content}));
                let response = if *is_error {
                    json!({"error": value})
                } else {
                    value
                };
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
        };
        match contents.last_mut() {
            Some((r, p)) if *r == role => p.extend(parts),
            _ => contents.push((role, parts)),
        }
    }
    body.insert(
        "contents".into(),
        contents
            .into_iter()
            .map(|(role, parts)| json!({"role": role, "parts": parts}))
            .collect(),
    );
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    if !req.tools.is_empty() {
        let decls: Vec<Value> = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "parameters": t.parameters}))
            .collect();
        body.insert("tools".into(), json!([{"functionDeclarations": decls}]));
    }
    if let Some(choice) = &req.tool_choice {
        let cfg = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Tool { name } => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        body.insert("toolConfig".into(), json!({"functionCallingConfig": cfg}));
    }
    let mut generation = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            generation.insert(k.to_owned(), v);
        }
    };
    put("temperature", req.temperature.map(f32_value));
    put("topP", req.top_p.map(f32_value));
    put("maxOutputTokens", req.max_tokens.map(Value::from));
    put(
        "stopSequences",
        (!req.stop.is_empty()).then(|| Value::from(req.stop.clone())),
    );
    put("seed", req.seed.map(Value::from));
    put("presencePenalty", req.presence_penalty.map(f32_value));
    put("frequencyPenalty", req.frequency_penalty.map(f32_value));
    match &req.response_format {
        Some(ResponseFormat::JsonObject) => {
            put("responseMimeType", Some("application/json".into()));
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            put("responseMimeType", Some("application/json".into()));
            put("responseJsonSchema", Some(schema.clone()));
        }
        _ => {}
    }
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    merge_extra(&mut body, &req.extra);
    Ok(body)
}

fn user_part(p: &ContentPart) -> Value {
    match p {
        ContentPart::Text { text } => json!({"text": text}),
        ContentPart::Image { source, .. } => match source {
            ImageSource::Base64 { media_type, data } => {
                json!({"inlineData": {"mimeType": media_type, "data": data}})
            }
            ImageSource::Url { url } => {
                // `data:` URLs go inline; others as file references.
                if let Some((meta, data)) =
                    url.strip_prefix("data:").and_then(|r| r.split_once(','))
                {
                    let mime = meta.trim_end_matches(";base64");
                    json!({"inlineData": {"mimeType": mime, "data": data}})
                } else {
                    let mime = guess_mime(url);
                    json!({"fileData": {"mimeType": mime, "fileUri": url}})
                }
            }
        },
    }
}

fn guess_mime(url: &str) -> &'static str {
    let lower = url.to_ascii_lowercase();
    if lower.ends_with(".png") {
        "image/png"
    } else if lower.ends_with(".webp") {
        "image/webp"
    } else if lower.ends_with(".gif") {
        "image/gif"
    } else {
        "image/jpeg"
    }
}

/// Maps Gemini's `finishReason`.
pub(crate) fn finish_reason(s: &str, has_calls: bool) -> FinishReason {
    match s {
        "STOP" if has_calls => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        other => FinishReason::Other(other.to_ascii_lowercase()),
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
}

impl UsageMetadata {
    pub(crate) fn normalize(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_token_count,
            output_tokens: self.candidates_token_count + self.thoughts_token_count,
            cached_input_tokens: self.cached_content_token_count,
        }
    }
}

/// One `GenerateContentResponse` (a whole answer, or one streamed chunk).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateResponse {
    #[serde(default)]
    pub(crate) candidates: Vec<Candidate>,
    #[serde(default)]
    pub(crate) usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    pub(crate) model_version: Option<String>,
    #[serde(default)]
    pub(crate) response_id: Option<String>,
    #[serde(default)]
    pub(crate) prompt_feedback: Option<Value>,
    #[serde(default)]
    pub(crate) error: Option<super::error::WireError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Candidate {
    #[serde(default)]
    pub(crate) content: Option<CandidateContent>,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
    #[serde(flatten)]
    pub(crate) rest: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CandidateContent {
    #[serde(default)]
    pub(crate) parts: Vec<Value>,
}

/// What one chunk contributed: deltas, a finish reason, whether the prompt was blocked.
pub(crate) struct ChunkOutput {
    pub(crate) finish: Option<String>,
    pub(crate) blocked: bool,
}

/// Extracts deltas from one response or chunk. `calls` counts function calls so far (Gemini gives
/// them no ids, so ids are synthesised as `call_<n>`).
pub(crate) fn chunk_deltas(
    r: &GenerateResponse,
    calls: &mut usize,
    out: &mut Vec<ChatDelta>,
) -> ChunkOutput {
    let blocked = r.candidates.is_empty()
        && r.prompt_feedback
            .as_ref()
            .is_some_and(|f| f.get("blockReason").is_some());
    let Some(cand) = r.candidates.first() else {
        return ChunkOutput {
            finish: None,
            blocked,
        };
    };
    for part in cand.content.iter().flat_map(|c| c.parts.iter()) {
        if part.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            if !t.is_empty() {
                out.push(ChatDelta::Text { text: t.to_owned() });
            }
        } else if let Some(fc) = part.get("functionCall") {
            let name = fc
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let args = fc.get("args").cloned().unwrap_or_else(|| json!({}));
            let id = fc
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("call_{calls}"));
            out.push(ChatDelta::ToolCall(ToolCallDelta {
                index: *calls,
                id: Some(id),
                name: Some(name),
                arguments: args.to_string(),
            }));
            *calls += 1;
        }
    }
    ChunkOutput {
        finish: cand.finish_reason.clone(),
        blocked,
    }
}
