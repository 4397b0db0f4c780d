//! Vendor scripts: routing, auth, error bodies and default answers in each vendor's format.

mod anthropic;
mod gemini;
mod ollama;
mod openai;

use serde_json::{Map, Value, json};

use super::server::{MockReply, RecordedRequest};

/// Which vendor API a [`super::MockServer`] imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Vendor {
    /// OpenAI chat completions + embeddings (also what OpenAI-compatible servers speak).
    OpenAi,
    /// Azure OpenAI deployment routes with `api-key` auth.
    Azure,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini.
    Gemini,
    /// Ollama.
    Ollama,
}

/// What the mock model decided to answer.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    Text(String),
    /// Tool calls: (name, arguments).
    Calls(Vec<(String, Value)>),
}

/// A vendor-neutral view of a chat request.
#[derive(Debug, Default)]
pub(crate) struct Scenario {
    pub(crate) model: String,
    pub(crate) last_user_text: String,
    pub(crate) tool_result: Option<String>,
    pub(crate) tools: Vec<(String, Value)>,
    pub(crate) forced_tool: Option<String>,
    pub(crate) wants_json: bool,
    pub(crate) json_schema: Option<Value>,
    pub(crate) prompt_tokens: u64,
}

impl Scenario {
    pub(crate) fn answer(&self) -> Answer {
        if let Some(r) = &self.tool_result {
            return Answer::Text(format!("The tool returned: {r}"));
        }
        if let Some(f) = &self.forced_tool
            && let Some((name, schema)) = self.tools.iter().find(|(n, _)| n == f)
        {
            return Answer::Calls(vec![(name.clone(), instance(schema))]);
        }
        if !self.tools.is_empty() {
            return Answer::Calls(
                self.tools
                    .iter()
                    .map(|(n, s)| (n.clone(), instance(s)))
                    .collect(),
            );
        }
        if self.wants_json {
            let v = match &self.json_schema {
                Some(s) => instance(s),
                None => json!({"answer": "42"}),
            };
            return Answer::Text(v.to_string());
        }
        Answer::Text(format!("Echo: {}", self.last_user_text))
    }
}

/// Output tokens the mock reports for an answer.
pub(crate) fn output_tokens(a: &Answer) -> u64 {
    let len = match a {
        Answer::Text(t) => t.len(),
        Answer::Calls(c) => c.iter().map(|(n, a)| n.len() + a.to_string().len()).sum(),
    };
    len as u64 / 4 + 1
}

/// Prompt tokens the mock reports: a quarter of the JSON size of the conversation, plus one.
pub(crate) fn prompt_tokens(conversation: &Value) -> u64 {
    conversation.to_string().len() as u64 / 4 + 1
}

/// A JSON value matching `schema`'s properties (strings are "Paris", numbers 1, booleans true).
pub(crate) fn instance(schema: &Value) -> Value {
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => "Paris".into(),
        Some("integer") => 1.into(),
        Some("number") => json!(1.5),
        Some("boolean") => true.into(),
        Some("array") => json!([]),
        _ => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    out.insert(k.clone(), instance(v));
                }
            }
            if out.is_empty() && schema.get("properties").is_none() {
                out.insert("answer".into(), "42".into());
            }
            Value::Object(out)
        }
    }
}

/// Splits text into stream fragments of at most 6 characters.
pub(crate) fn fragments(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(6).map(|c| c.iter().collect()).collect()
}

/// A deterministic unit vector for `text`.
pub(crate) fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            ((h >> 11) as f64 / (1u64 << 53) as f64) as f32 - 0.5
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

pub(crate) fn sse(data: &Value) -> String {
    format!("data: {data}\n\n")
}

pub(crate) fn not_found(vendor: Vendor) -> MockReply {
    MockReply::Json {
        status: 404,
        body: error_body(vendor, 404),
    }
}

pub(crate) fn auth_ok(vendor: Vendor, req: &RecordedRequest, key: &str) -> bool {
    match vendor {
        Vendor::OpenAi | Vendor::Ollama => {
            req.header("authorization") == Some(&format!("Bearer {key}"))
        }
        Vendor::Azure => req.header("api-key") == Some(key),
        Vendor::Anthropic => req.header("x-api-key") == Some(key),
        Vendor::Gemini => {
            req.header("x-goog-api-key") == Some(key) || req.query_param("key") == Some(key)
        }
    }
}

/// The vendor's documented error body for `status`.
pub fn error_body(vendor: Vendor, status: u16) -> Value {
    match vendor {
        Vendor::OpenAi | Vendor::Azure => openai::error_body(status),
        Vendor::Anthropic => anthropic::error_body(status),
        Vendor::Gemini => gemini::error_body(status),
        Vendor::Ollama => ollama::error_body(status),
    }
}

/// The vendor's documented context-window error (status and body).
pub fn context_length_error(vendor: Vendor) -> (u16, Value) {
    match vendor {
        Vendor::OpenAi | Vendor::Azure => (
            400,
            json!({"error": {
                "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130452 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
        ),
        Vendor::Anthropic => (
            400,
            json!({"type": "error", "error": {"type": "invalid_request_error",
                "message": "prompt is too long: 208310 tokens > 200000 maximum"}}),
        ),
        Vendor::Gemini => (
            400,
            json!({"error": {"code": 400,
                "message": "The input token count (1250000) exceeds the maximum number of tokens allowed (1048576).",
                "status": "INVALID_ARGUMENT"}}),
        ),
        Vendor::Ollama => (
            400,
            json!({"error": "the input length exceeds the context length"}),
        ),
    }
}

pub(crate) fn stream_error_frame(vendor: Vendor) -> String {
    match vendor {
        Vendor::OpenAi | Vendor::Azure => sse(&json!({"error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error", "param": null, "code": null}})),
        Vendor::Anthropic => format!(
            "event: error\ndata: {}\n\n",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        ),
        Vendor::Gemini => format!(
            "data: {}\r\n\r\n",
            json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}})
        ),
        Vendor::Ollama => format!(
            "{}\n",
            json!({"error": "an error was encountered while running the model: unexpected EOF"})
        ),
    }
}

pub(crate) fn default_reply(vendor: Vendor, req: &RecordedRequest, dims: usize) -> MockReply {
    match vendor {
        Vendor::OpenAi | Vendor::Azure => openai::reply(vendor, req, dims),
        Vendor::Anthropic => anthropic::reply(req),
        Vendor::Gemini => gemini::reply(req, dims),
        Vendor::Ollama => ollama::reply(req, dims),
    }
}
