//! OpenAI- and Anthropic-compatible endpoints over real HTTP, with in-process models.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use serde_json::{Value, json};
use support::start;

async fn post(url: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Parses an SSE body into (event name, data) pairs.
fn sse(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut event = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push(d);
                }
            }
            (event, data.join("\n"))
        })
        .collect()
}

#[tokio::test]
async fn chat_completion_has_openais_exact_shape() {
    let base = start().await;
    let resp = post(&format!("{base}/v1/chat/completions"), json!({
        "model": "parrot-1",
        "messages": [{"role": "system", "content": "be a parrot"}, {"role": "user", "content": "hello there"}],
        "temperature": 0.1, "store": false, "metadata": {"k": "v"}
    }))
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "parrot-1");
    // OpenAI's schema types system_fingerprint as a string: absent, never null.
    assert!(v.get("system_fingerprint").is_none(), "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert!(choice["logprobs"].is_null());
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "hello there");
    assert!(choice["message"]["refusal"].is_null());
    assert!(choice["message"].get("tool_calls").is_none());
    assert_eq!(v["usage"]["prompt_tokens"], 7);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 10);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
}

#[tokio::test]
async fn streaming_follows_openai_framing_with_usage_and_done() {
    let base = start().await;
    let resp = post(
        &format!("{base}/v1/chat/completions"),
        json!({
            "model": "parrot-1", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "one two three"}]}]
        }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse(&resp.text().await.unwrap());
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut text = String::new();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"]);
        assert!(c.get("system_fingerprint").is_none(), "never null: {c}");
        if let Some(t) = c["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
    }
    assert_eq!(text, "one two three");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(finish["usage"].is_null());
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 10);
}

#[tokio::test]
async fn streamed_tool_calls_arrive_as_indexed_fragments() {
    let base = start().await;
    let resp = post(&format!("{base}/v1/chat/completions"), json!({
        "model": "parrot-1", "stream": true,
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    }))
    .await;
    let events = sse(&resp.text().await.unwrap());
    let chunks: Vec<Value> = events
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "no usage field without include_usage"
    );
    let mut args = vec![String::new(), String::new()];
    let mut ids = vec![];
    for c in &chunks {
        for tc in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = tc["index"].as_u64().unwrap() as usize;
            if let Some(id) = tc["id"].as_str() {
                assert_eq!(tc["type"], "function");
                assert_eq!(tc["function"]["name"], "lookup");
                ids.push(id.to_owned());
            }
            args[i].push_str(tc["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(ids, vec!["call_0", "call_1"]);
    assert_eq!(args, vec!["{\"city\":\"Berlin\"}", "{\"city\":\"Paris\"}"]);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn non_streamed_tool_calls_and_tool_results_round_trip() {
    let base = start().await;
    let tools = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let v: Value = post(&format!("{base}/v1/chat/completions"), json!({
        "model": "parrot-1", "messages": [{"role": "user", "content": "weather?"}], "tools": tools
    })).await.json().await.unwrap();
    let msg = &v["choices"][0]["message"];
    assert!(msg["content"].is_null());
    assert_eq!(
        msg["tool_calls"][1]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    // Send the tool results back, as an SDK would.
    let v: Value = post(
        &format!("{base}/v1/chat/completions"),
        json!({
            "model": "parrot-1", "tools": tools,
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": msg["tool_calls"]},
                {"role": "tool", "tool_call_id": "call_0", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_1", "content": "rainy"},
            ]
        }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn bad_requests_get_openai_style_400s_naming_the_field() {
    let base = start().await;
    let url = format!("{base}/v1/chat/completions");
    let cases = [
        (json!({"model": "parrot-1", "messages": []}), "messages"),
        (
            json!({"model": "parrot-1", "messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "parrot-1", "messages": [{"role": "user", "content": "x"}], "temperature": 7}),
            "temperature",
        ),
        (
            json!({"model": "parrot-1", "messages": [{"role": "user", "content": "x"}], "n": 2}),
            "n",
        ),
        (
            json!({"model": "parrot-1", "messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].tool_call_id",
        ),
    ];
    for (body, param) in cases {
        let resp = post(&url, body.clone()).await;
        assert_eq!(resp.status(), 400, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(v["error"]["param"], param, "{body}");
        assert_eq!(v["error"]["code"], "invalid_input");
    }
    let resp = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = post(
        &url,
        json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    assert_eq!(v["error"]["param"], "model");
    let resp = post(
        &url,
        json!({"model": "parrot-1", "messages": [{"role": "user", "content": "busy"}]}),
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
}

#[tokio::test]
async fn failure_mid_stream_is_an_error_event_not_a_silent_end() {
    let base = start().await;
    let resp = post(
        &format!("{base}/v1/chat/completions"),
        json!({
            "model": "parrot-1", "stream": true, "messages": [{"role": "user", "content": "break"}]
        }),
    )
    .await;
    let events = sse(&resp.text().await.unwrap());
    assert!(events.iter().all(|(_, d)| d != "[DONE]"));
    let last: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error");
}

#[tokio::test]
async fn embeddings_in_float_and_base64() {
    let base = start().await;
    let v: Value = post(
        &format!("{base}/v1/embeddings"),
        json!({"model": "toy-embed", "input": ["ab", "abcd"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["object"], "embedding");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][1]["embedding"], json!([4.0, 0.5]));
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    let v: Value = post(
        &format!("{base}/v1/embeddings"),
        json!({"model": "toy-embed", "input": "abc", "encoding_format": "base64"}),
    )
    .await
    .json()
    .await
    .unwrap();
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(floats, vec![3.0, 0.5]);
    let resp = post(
        &format!("{base}/v1/embeddings"),
        json!({"model": "toy-embed", "input": [1, 2]}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let resp = post(
        &format!("{base}/v1/embeddings"),
        json!({"model": "toy-embed", "input": "x", "dimensions": 512}),
    )
    .await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn models_are_listed_and_retrievable() {
    let base = start().await;
    let v: Value = reqwest::get(format!("{base}/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["parrot-1", "toy-embed"]);
    assert_eq!(v["data"][0]["object"], "model");
    let m: Value = reqwest::get(format!("{base}/v1/models/parrot-1"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["owned_by"], "wattos");
    assert_eq!(
        reqwest::get(format!("{base}/v1/models/nope"))
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn anthropic_messages_non_streaming() {
    let base = start().await;
    let v: Value = post(
        &format!("{base}/v1/messages"),
        json!({
            "model": "parrot-1", "max_tokens": 100, "system": "be brief",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi claude"}]}]
        }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["content"], json!([{"type": "text", "text": "hi claude"}]));
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["stop_sequence"].is_null());
    assert_eq!(v["usage"]["input_tokens"], 5);
    assert_eq!(v["usage"]["cache_read_input_tokens"], 2);
    assert_eq!(v["usage"]["output_tokens"], 3);
    // tool use round trip
    let v: Value = post(
        &format!("{base}/v1/messages"),
        json!({
            "model": "parrot-1", "max_tokens": 100,
            "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "weather?"}]
        }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(
        v["content"][0],
        json!({"type": "tool_use", "id": "call_0", "name": "lookup", "input": {"city": "Berlin"}})
    );
}

#[tokio::test]
async fn anthropic_errors_use_anthropics_shape() {
    let base = start().await;
    let resp = post(
        &format!("{base}/v1/messages"),
        json!({"model": "parrot-1", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );
    let resp = post(
        &format!("{base}/v1/messages"),
        json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["type"],
        "not_found_error"
    );
}

#[tokio::test]
async fn anthropic_streaming_event_sequence() {
    let base = start().await;
    let resp = post(
        &format!("{base}/v1/messages"),
        json!({
            "model": "parrot-1", "max_tokens": 50, "stream": true,
            "messages": [{"role": "user", "content": "a b"}]
        }),
    )
    .await;
    let events = sse(&resp.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    for (name, data) in &events {
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(
            v["type"],
            name.as_deref().unwrap(),
            "data.type mirrors the event name"
        );
    }
    let delta: Value = serde_json::from_str(&events[6].1).unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 3);
    // tool_use blocks stream as input_json_delta
    let resp = post(
        &format!("{base}/v1/messages"),
        json!({
            "model": "parrot-1", "max_tokens": 50, "stream": true,
            "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "weather?"}]
        }),
    )
    .await;
    let events = sse(&resp.text().await.unwrap());
    let starts: Vec<Value> = events
        .iter()
        .filter(|(e, _)| e.as_deref() == Some("content_block_start"))
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[1]["content_block"]["type"], "tool_use");
    assert_eq!(starts[1]["index"], 1);
    let json_parts: String = events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["delta"]["type"] == "input_json_delta" && v["index"] == 0)
        .map(|v| v["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(json_parts, "{\"city\":\"Berlin\"}");
}
