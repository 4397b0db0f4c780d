//! OpenAI / Azure OpenAI chat completions and embeddings, as documented.

use serde_json::{Value, json};

use super::{
    Answer, Scenario, Vendor, embedding, fragments, not_found, output_tokens, prompt_tokens, sse,
};
use crate::testing::server::{MockReply, RecordedRequest};

pub(super) fn error_body(status: u16) -> Value {
    let (message, kind, code) = match status {
        400 => ("Invalid request.", "invalid_request_error", Value::Null),
        401 => (
            "Incorrect API key provided: sk-wrong. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            json!("invalid_api_key"),
        ),
        403 => (
            "You are not allowed to sample from this model",
            "invalid_request_error",
            Value::Null,
        ),
        404 => (
            "The model `gpt-nope` does not exist or you do not have access to it.",
            "invalid_request_error",
            json!("model_not_found"),
        ),
        429 => (
            "Rate limit reached for gpt-4o in organization org-mock on requests per min (RPM): Limit 500, Used 500, Requested 1.",
            "requests",
            json!("rate_limit_exceeded"),
        ),
        503 => (
            "The engine is currently overloaded, please try again later.",
            "server_error",
            Value::Null,
        ),
        _ => (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            Value::Null,
        ),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

fn scenario(body: &Value) -> Scenario {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let text_of = |m: &Value| match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    };
    let last = messages.last();
    let format = &body["response_format"];
    Scenario {
        model: body["model"].as_str().unwrap_or("gpt-4o-mini").to_owned(),
        last_user_text: messages
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .map(text_of)
            .unwrap_or_default(),
        tool_result: last.filter(|m| m["role"] == "tool").map(text_of),
        tools: body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["function"]["name"].as_str().unwrap_or("").to_owned(),
                    t["function"]["parameters"].clone(),
                )
            })
            .collect(),
        forced_tool: body["tool_choice"]["function"]["name"]
            .as_str()
            .map(str::to_owned),
        wants_json: matches!(format["type"].as_str(), Some("json_object" | "json_schema")),
        json_schema: format["json_schema"].get("schema").cloned(),
        prompt_tokens: prompt_tokens(&body["messages"]),
    }
}

pub(super) fn reply(vendor: Vendor, req: &RecordedRequest, dims: usize) -> MockReply {
    if vendor == Vendor::Azure {
        if !req.path.starts_with("/openai/deployments/") {
            return not_found(vendor);
        }
        if req.query_param("api-version").is_none() {
            return MockReply::Json {
                status: 404,
                body: json!({"error": {"code": "404", "message": "Resource not found"}}),
            };
        }
    }
    if req.path.ends_with("/embeddings") {
        return embeddings(req, dims);
    }
    if !req.path.ends_with("/chat/completions") {
        return not_found(vendor);
    }
    let s = scenario(&req.body);
    let answer = s.answer();
    let usage = json!({
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": output_tokens(&answer),
        "total_tokens": s.prompt_tokens + output_tokens(&answer),
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    });
    if req.body["stream"] == true {
        stream(
            &s,
            &answer,
            usage,
            req.body["stream_options"]["include_usage"] == true,
        )
    } else {
        let (message, finish) = match &answer {
            Answer::Text(t) => (
                json!({"role": "assistant", "content": t, "refusal": null, "annotations": []}),
                "stop",
            ),
            Answer::Calls(calls) => (
                json!({"role": "assistant", "content": null, "refusal": null, "annotations": [],
                    "tool_calls": calls.iter().enumerate().map(|(i, (n, a))| json!({
                        "id": format!("call_mock_{i}"), "type": "function",
                        "function": {"name": n, "arguments": a.to_string()}})).collect::<Vec<_>>()}),
                "tool_calls",
            ),
        };
        MockReply::Json {
            status: 200,
            body: json!({
                "id": "chatcmpl-mock123", "object": "chat.completion", "created": 1_741_569_952,
                "model": s.model,
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
                "usage": usage, "service_tier": "default", "system_fingerprint": "fp_mock"
            }),
        }
    }
}

fn stream(s: &Scenario, answer: &Answer, usage: Value, include_usage: bool) -> MockReply {
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({"id": "chatcmpl-mock123", "object": "chat.completion.chunk",
            "created": 1_741_569_952, "model": s.model, "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        sse(&c)
    };
    let mut frames = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    )];
    let finish = match answer {
        Answer::Text(t) => {
            for f in fragments(t) {
                frames.push(chunk(json!({"content": f}), Value::Null));
            }
            "stop"
        }
        Answer::Calls(calls) => {
            for (i, (name, args)) in calls.iter().enumerate() {
                frames.push(chunk(
                    json!({"tool_calls": [{"index": i, "id": format!("call_mock_{i}"), "type": "function",
                        "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ));
                for f in fragments(&args.to_string()) {
                    frames.push(chunk(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": f}}]}),
                        Value::Null,
                    ));
                }
            }
            "tool_calls"
        }
    };
    frames.push(chunk(json!({}), finish.into()));
    if include_usage {
        frames.push(sse(
            &json!({"id": "chatcmpl-mock123", "object": "chat.completion.chunk",
            "created": 1_741_569_952, "model": s.model, "system_fingerprint": "fp_mock",
            "choices": [], "usage": usage}),
        ));
    }
    frames.push("data: [DONE]\n\n".to_owned());
    MockReply::Stream {
        content_type: "text/event-stream; charset=utf-8".into(),
        frames,
    }
}

fn embeddings(req: &RecordedRequest, dims: usize) -> MockReply {
    let inputs: Vec<String> = match &req.body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let dims = req.body["dimensions"].as_u64().map_or(dims, |d| d as usize);
    let tokens: u64 = inputs.iter().map(|i| i.len() as u64 / 4 + 1).sum();
    MockReply::Json {
        status: 200,
        body: json!({
            "object": "list",
            "data": inputs.iter().enumerate().map(|(i, t)| json!({
                "object": "embedding", "index": i, "embedding": embedding(t, dims)})).collect::<Vec<_>>(),
            "model": req.body["model"].as_str().unwrap_or("text-embedding-3-small"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
        }),
    }
}
