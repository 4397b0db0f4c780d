//! Gemini generateContent / streamGenerateContent (SSE with CRLF line ends) and embeddings.

use serde_json::{Value, json};

use super::{
    Answer, Scenario, Vendor, embedding, fragments, not_found, output_tokens, prompt_tokens,
};
use crate::testing::server::{MockReply, RecordedRequest};

pub(super) fn error_body(status: u16) -> Value {
    let (message, st) = match status {
        400 => ("Invalid JSON payload received.", "INVALID_ARGUMENT"),
        401 => (
            "API key not valid. Please pass a valid API key.",
            "UNAUTHENTICATED",
        ),
        403 => (
            "Permission denied on resource project mock.",
            "PERMISSION_DENIED",
        ),
        404 => (
            "models/gemini-nope is not found for API version v1beta, or is not supported for generateContent.",
            "NOT_FOUND",
        ),
        429 => (
            "Resource has been exhausted (e.g. check quota).",
            "RESOURCE_EXHAUSTED",
        ),
        503 => (
            "The model is overloaded. Please try again later.",
            "UNAVAILABLE",
        ),
        _ => ("An internal error has occurred.", "INTERNAL"),
    };
    let mut body = json!({"error": {"code": status, "message": message, "status": st}});
    if status == 429 {
        body["error"]["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]);
    }
    body
}

fn scenario(body: &Value, model: &str) -> Scenario {
    let contents = body["contents"].as_array().cloned().unwrap_or_default();
    let parts = |c: &Value| c["parts"].as_array().cloned().unwrap_or_default();
    let tool_result = contents.last().and_then(|c| {
        parts(c)
            .iter()
            .rev()
            .find_map(|p| p.get("functionResponse").map(|r| r["response"].to_string()))
    });
    let generation = &body["generationConfig"];
    let calling = &body["toolConfig"]["functionCallingConfig"];
    Scenario {
        model: model.to_owned(),
        last_user_text: contents
            .iter()
            .rev()
            .find(|c| c["role"] == "user")
            .map(|c| {
                parts(c)
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("")
            })
            .unwrap_or_default(),
        tool_result,
        tools: body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| {
                t["functionDeclarations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|d| {
                (
                    d["name"].as_str().unwrap_or("").to_owned(),
                    d["parameters"].clone(),
                )
            })
            .collect(),
        forced_tool: (calling["mode"] == "ANY")
            .then(|| {
                calling["allowedFunctionNames"][0]
                    .as_str()
                    .map(str::to_owned)
            })
            .flatten(),
        wants_json: generation["responseMimeType"] == "application/json",
        json_schema: generation
            .get("responseJsonSchema")
            .or_else(|| generation.get("responseSchema"))
            .cloned(),
        prompt_tokens: prompt_tokens(&body["contents"]),
    }
}

pub(super) fn reply(req: &RecordedRequest, dims: usize) -> MockReply {
    let Some(rest) = req.path.strip_prefix("/v1beta/models/") else {
        return not_found(Vendor::Gemini);
    };
    let Some((model, method)) = rest.split_once(':') else {
        return not_found(Vendor::Gemini);
    };
    match method {
        "embedContent" => {
            let text = req.body["content"]["parts"][0]["text"]
                .as_str()
                .unwrap_or("");
            let d = req.body["outputDimensionality"]
                .as_u64()
                .map_or(dims, |d| d as usize);
            return MockReply::Json {
                status: 200,
                body: json!({"embedding": {"values": embedding(text, d)}}),
            };
        }
        "batchEmbedContents" => {
            let reqs = req.body["requests"].as_array().cloned().unwrap_or_default();
            let values: Vec<Value> = reqs
                .iter()
                .map(|r| {
                    let text = r["content"]["parts"][0]["text"].as_str().unwrap_or("");
                    let d = r["outputDimensionality"]
                        .as_u64()
                        .map_or(dims, |d| d as usize);
                    json!({"values": embedding(text, d)})
                })
                .collect();
            return MockReply::Json {
                status: 200,
                body: json!({"embeddings": values}),
            };
        }
        "generateContent" | "streamGenerateContent" => {}
        _ => return not_found(Vendor::Gemini),
    }
    let s = scenario(&req.body, model);
    let answer = s.answer();
    let out = output_tokens(&answer);
    let usage = json!({"promptTokenCount": s.prompt_tokens, "candidatesTokenCount": out,
        "totalTokenCount": s.prompt_tokens + out,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": s.prompt_tokens}]});
    let call_parts = |calls: &[(String, Value)]| -> Vec<Value> {
        calls
            .iter()
            .map(|(n, a)| json!({"functionCall": {"name": n, "args": a}}))
            .collect()
    };
    if method == "generateContent" {
        let parts = match &answer {
            Answer::Text(t) => vec![json!({"text": t})],
            Answer::Calls(c) => call_parts(c),
        };
        return MockReply::Json {
            status: 200,
            body: json!({
                "candidates": [{"content": {"parts": parts, "role": "model"},
                    "finishReason": "STOP", "avgLogprobs": -0.125}],
                "usageMetadata": usage, "modelVersion": model, "responseId": "mockResp01"
            }),
        };
    }
    if req.query_param("alt") != Some("sse") {
        return MockReply::Json {
            status: 400,
            body: json!({"error": {"code": 400, "message": "mock serves SSE only (alt=sse)", "status": "INVALID_ARGUMENT"}}),
        };
    }
    let frame = |v: Value| format!("data: {v}\r\n\r\n");
    let partial_usage =
        json!({"promptTokenCount": s.prompt_tokens, "totalTokenCount": s.prompt_tokens});
    let mut frames = Vec::new();
    match &answer {
        Answer::Text(t) => {
            let pieces = fragments(t);
            let n = pieces.len();
            for (i, p) in pieces.into_iter().enumerate() {
                let mut cand = json!({"content": {"parts": [{"text": p}], "role": "model"}});
                let last = i + 1 == n;
                if last {
                    cand["finishReason"] = "STOP".into();
                }
                frames.push(frame(json!({"candidates": [cand],
                    "usageMetadata": if last { usage.clone() } else { partial_usage.clone() },
                    "modelVersion": model, "responseId": "mockResp01"})));
            }
        }
        Answer::Calls(c) => {
            frames.push(frame(
                json!({"candidates": [{"content": {"parts": call_parts(c), "role": "model"},
                "finishReason": "STOP"}], "usageMetadata": usage, "modelVersion": model,
                "responseId": "mockResp01"}),
            ));
        }
    }
    MockReply::Stream {
        content_type: "text/event-stream".into(),
        frames,
    }
}
