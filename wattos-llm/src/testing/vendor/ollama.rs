//! Ollama /api/chat (JSON and NDJSON streaming) and /api/embed, as documented.

use serde_json::{Value, json};

use super::{
    Answer, Scenario, Vendor, embedding, fragments, not_found, output_tokens, prompt_tokens,
};
use crate::testing::server::{MockReply, RecordedRequest};

pub(super) fn error_body(status: u16) -> Value {
    let message = match status {
        400 => "invalid request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "model \"llama-nope\" not found, try pulling it first",
        429 => "too many requests",
        _ => "an error was encountered while running the model",
    };
    json!({"error": message})
}

const CREATED_AT: &str = "2025-01-01T00:00:00.000000Z";

fn scenario(body: &Value) -> Scenario {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last();
    Scenario {
        model: body["model"].as_str().unwrap_or("llama3.2").to_owned(),
        last_user_text: messages
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
            .to_owned(),
        tool_result: last
            .filter(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap_or("").to_owned()),
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
        forced_tool: None,
        wants_json: !body["format"].is_null(),
        json_schema: body["format"].is_object().then(|| body["format"].clone()),
        prompt_tokens: prompt_tokens(&body["messages"]),
    }
}

pub(super) fn reply(req: &RecordedRequest, dims: usize) -> MockReply {
    match req.path.as_str() {
        "/api/embed" => {
            let inputs: Vec<String> = match &req.body["input"] {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            let tokens: u64 = inputs.iter().map(|i| i.len() as u64 / 4 + 1).sum();
            return MockReply::Json {
                status: 200,
                body: json!({"model": req.body["model"], "embeddings":
                    inputs.iter().map(|t| embedding(t, dims)).collect::<Vec<_>>(),
                    "total_duration": 14_143_917, "load_duration": 1_019_500, "prompt_eval_count": tokens}),
            };
        }
        "/api/chat" => {}
        _ => return not_found(Vendor::Ollama),
    }
    let s = scenario(&req.body);
    let answer = s.answer();
    let out = output_tokens(&answer);
    let done = json!({"model": s.model, "created_at": CREATED_AT, "done": true, "done_reason": "stop",
        "total_duration": 5_191_566_416_u64, "load_duration": 2_154_458, "prompt_eval_count": s.prompt_tokens,
        "prompt_eval_duration": 383_809_000, "eval_count": out, "eval_duration": 4_799_921_000_u64});
    let calls = |c: &[(String, Value)]| -> Vec<Value> {
        c.iter()
            .map(|(n, a)| json!({"function": {"name": n, "arguments": a}}))
            .collect()
    };
    // Ollama streams unless told `"stream": false`.
    if req.body["stream"] == false {
        let mut body = done;
        body["message"] = match &answer {
            Answer::Text(t) => json!({"role": "assistant", "content": t}),
            Answer::Calls(c) => json!({"role": "assistant", "content": "", "tool_calls": calls(c)}),
        };
        return MockReply::Json { status: 200, body };
    }
    let line = |v: Value| format!("{v}\n");
    let mut frames = Vec::new();
    match &answer {
        Answer::Text(t) => {
            for f in fragments(t) {
                frames.push(line(json!({"model": s.model, "created_at": CREATED_AT,
                    "message": {"role": "assistant", "content": f}, "done": false})));
            }
        }
        Answer::Calls(c) => frames.push(line(json!({"model": s.model, "created_at": CREATED_AT,
            "message": {"role": "assistant", "content": "", "tool_calls": calls(c)}, "done": false}))),
    }
    let mut last = done;
    last["message"] = json!({"role": "assistant", "content": ""});
    frames.push(line(last));
    MockReply::Stream {
        content_type: "application/x-ndjson".into(),
        frames,
    }
}
