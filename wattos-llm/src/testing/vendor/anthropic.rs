//! Anthropic Messages, as documented (JSON and SSE event sequence).

use serde_json::{Value, json};

use super::{Answer, Scenario, Vendor, fragments, not_found, output_tokens, prompt_tokens};
use crate::testing::server::{MockReply, RecordedRequest};

pub(super) fn error_body(status: u16) -> Value {
    let (kind, message) = match status {
        400 => (
            "invalid_request_error",
            "messages: at least one message is required",
        ),
        401 => ("authentication_error", "invalid x-api-key"),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        404 => ("not_found_error", "model: claude-nope"),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        429 => (
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        ),
        529 => ("overloaded_error", "Overloaded"),
        _ => ("api_error", "Internal server error"),
    };
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock01"})
}

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn scenario(body: &Value) -> Scenario {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let blocks = |m: &Value| -> Vec<Value> {
        match &m["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(a) => a.clone(),
            _ => Vec::new(),
        }
    };
    let last_blocks = messages.last().map(blocks).unwrap_or_default();
    let tool_result = last_blocks
        .iter()
        .rev()
        .find(|b| b["type"] == "tool_result")
        .map(|b| match &b["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    let system = body["system"].as_str().unwrap_or("");
    Scenario {
        model: body["model"]
            .as_str()
            .unwrap_or("claude-sonnet-4-20250514")
            .to_owned(),
        last_user_text: messages
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .map(|m| {
                blocks(m)
                    .iter()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("")
            })
            .unwrap_or_default(),
        tool_result,
        tools: body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["name"].as_str().unwrap_or("").to_owned(),
                    t["input_schema"].clone(),
                )
            })
            .collect(),
        forced_tool: (body["tool_choice"]["type"] == "tool").then(|| {
            body["tool_choice"]["name"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        }),
        wants_json: system.contains("JSON object"),
        json_schema: None,
        prompt_tokens: prompt_tokens(&body["messages"]),
    }
}

pub(super) fn reply(req: &RecordedRequest) -> MockReply {
    if req.path != "/v1/messages" {
        return not_found(Vendor::Anthropic);
    }
    if req.header("anthropic-version").is_none() {
        return MockReply::Json {
            status: 400,
            body: json!({"type": "error", "error": {"type": "invalid_request_error",
                "message": "anthropic-version: header is required"}}),
        };
    }
    let s = scenario(&req.body);
    let answer = s.answer();
    let out = output_tokens(&answer);
    let calls: Vec<(String, String, Value)> = match &answer {
        Answer::Calls(c) => c
            .iter()
            .enumerate()
            .map(|(i, (n, a))| (format!("toolu_mock_{i}"), n.clone(), a.clone()))
            .collect(),
        Answer::Text(_) => Vec::new(),
    };
    // A documented tool-use answer starts with a short text block unless the tool was forced.
    let text = match &answer {
        Answer::Text(t) => Some(t.clone()),
        Answer::Calls(_) if s.forced_tool.is_none() => Some("I'll use the tools.".to_owned()),
        Answer::Calls(_) => None,
    };
    let stop = if calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    if req.body["stream"] != true {
        let mut content = Vec::new();
        if let Some(t) = &text {
            content.push(json!({"type": "text", "text": t}));
        }
        for (id, name, input) in &calls {
            content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        }
        return MockReply::Json {
            status: 200,
            body: json!({
                "id": "msg_mock01", "type": "message", "role": "assistant", "model": s.model,
                "content": content, "stop_reason": stop, "stop_sequence": null,
                "usage": {"input_tokens": s.prompt_tokens, "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0, "output_tokens": out, "service_tier": "standard"}
            }),
        };
    }
    let mut frames = vec![event(
        "message_start",
        &json!({"type": "message_start", "message": {"id": "msg_mock01", "type": "message",
            "role": "assistant", "content": [], "model": s.model, "stop_reason": null,
            "stop_sequence": null, "usage": {"input_tokens": s.prompt_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}}}),
    )];
    let mut index = 0;
    if let Some(t) = &text {
        frames.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "text", "text": ""}}),
        ));
        frames.push(event("ping", &json!({"type": "ping"})));
        for f in fragments(t) {
            frames.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": f}}),
            ));
        }
        frames.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for (id, name, input) in &calls {
        frames.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
        ));
        frames.push(event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": ""}}),
        ));
        for f in fragments(&input.to_string()) {
            frames.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": f}}),
            ));
        }
        frames.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    frames.push(event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": out}}),
    ));
    frames.push(event("message_stop", &json!({"type": "message_stop"})));
    MockReply::Stream {
        content_type: "text/event-stream; charset=utf-8".into(),
        frames,
    }
}
