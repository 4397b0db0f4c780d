//! SmolLM2-135M-Instruct through candle: coherence, determinism, limits, streaming, tools.
#![cfg(feature = "local")]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use futures::StreamExt;
use serde_json::json;
use wattos_core::llm::{
    ChatDelta, ChatModel, ChatRequest, FinishReason, Message, ResponseFormat, ToolChoice,
    ToolDefinition,
};
use wattos_core::{ErrorKind, RequestContext, TenantId};
use wattos_llm::local::{LoadError, SmolLm, SmolLmOptions};

/// The model cache, filled (offline if already complete) by `scripts/fetch-models.sh`.
fn models_dir() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/fetch-models.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run fetch-models.sh");
    assert!(
        out.status.success(),
        "fetch-models.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
}

fn model() -> &'static SmolLm {
    static MODEL: OnceLock<SmolLm> = OnceLock::new();
    MODEL.get_or_init(|| {
        SmolLm::from_models_dir(models_dir(), SmolLmOptions::default()).expect("load SmolLM2")
    })
}

fn ctx() -> RequestContext {
    RequestContext::system(TenantId::new("test").expect("tenant"))
}

fn greedy(question: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest::new(
        "smollm2",
        vec![
            Message::system("You are a helpful assistant."),
            Message::user(question),
        ],
    )
    .with_max_tokens(max_tokens)
    .with_temperature(0.0)
}

#[tokio::test]
async fn greedy_answer_is_coherent_and_deterministic() {
    let req = greedy("What is the capital of France?", 24);
    let a = model().chat(&ctx(), req.clone()).await.expect("chat");
    let b = model().chat(&ctx(), req).await.expect("chat");
    assert!(a.text().contains("Paris"), "answer: {:?}", a.text());
    let germany = model()
        .chat(&ctx(), greedy("What is the capital of Germany?", 24))
        .await
        .expect("chat");
    assert!(
        germany.text().contains("Berlin"),
        "answer: {:?}",
        germany.text()
    );
    assert_eq!(a.text(), b.text());
    assert!(
        a.usage.input_tokens > 10 && a.usage.output_tokens > 0,
        "{:?}",
        a.usage
    );
    assert_eq!(a.model, "smollm2-135m-instruct");
}

#[tokio::test]
async fn seeded_sampling_is_reproducible() {
    let mut req = ChatRequest::new(
        "smollm2",
        vec![Message::user("Write a sentence about the sea.")],
    )
    .with_max_tokens(24)
    .with_temperature(0.9);
    req.seed = Some(7);
    req.top_p = Some(0.95);
    let a = model().chat(&ctx(), req.clone()).await.expect("chat");
    let b = model().chat(&ctx(), req).await.expect("chat");
    assert!(!a.text().is_empty());
    assert_eq!(a.text(), b.text());
}

#[tokio::test]
async fn max_tokens_is_honored() {
    let resp = model()
        .chat(&ctx(), greedy("Tell me a long story about a dragon.", 5))
        .await
        .expect("chat");
    assert_eq!(resp.usage.output_tokens, 5);
    assert_eq!(resp.finish_reason, FinishReason::Length);
}

#[tokio::test]
async fn stop_sequence_cuts_the_answer() {
    let question = "Name three colors of the rainbow.";
    let full = model()
        .chat(&ctx(), greedy(question, 32))
        .await
        .expect("chat");
    let text = full.text().to_owned();
    // Stop at the third word of the unconstrained answer: the result must be the text before it.
    let word = text
        .split_whitespace()
        .nth(2)
        .expect("at least three words")
        .to_owned();
    let at = text.find(&word).expect("word in text");
    let mut req = greedy(question, 32);
    req.stop = vec![word.clone()];
    let cut = model().chat(&ctx(), req).await.expect("chat");
    assert_eq!(cut.text(), &text[..at], "stop {word:?}");
    assert_eq!(cut.finish_reason, FinishReason::Stop);
    assert!(cut.usage.output_tokens < full.usage.output_tokens);
}

#[tokio::test]
async fn streamed_deltas_concatenate_to_the_answer() {
    let req = greedy("Explain in one sentence what a computer is.", 40);
    let whole = model().chat(&ctx(), req.clone()).await.expect("chat");
    let mut stream = model().chat_stream(&ctx(), req).await.expect("stream");
    let mut deltas = Vec::new();
    while let Some(d) = stream.next().await {
        deltas.push(d.expect("delta"));
    }
    assert!(matches!(deltas.first(), Some(ChatDelta::Start { .. })));
    assert!(matches!(deltas.last(), Some(ChatDelta::Finish { .. })));
    assert!(matches!(deltas[deltas.len() - 2], ChatDelta::Usage(u) if u == whole.usage));
    let pieces: Vec<&str> = deltas
        .iter()
        .filter_map(|d| match d {
            ChatDelta::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        pieces.len() > 3,
        "expected token-level streaming, got {pieces:?}"
    );
    assert_eq!(pieces.concat(), whole.text());
}

#[tokio::test]
async fn dropping_a_stream_frees_the_model() {
    let mut stream = model()
        .chat_stream(&ctx(), greedy("Count from one to one hundred.", 400))
        .await
        .expect("stream");
    let _start = stream.next().await;
    let _first = stream.next().await;
    drop(stream);
    // The cancelled generation releases the model quickly; this one must then run to completion.
    let resp = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        model().chat(&ctx(), greedy("Say hi.", 4)),
    )
    .await
    .expect("model released")
    .expect("chat");
    assert!(resp.usage.output_tokens > 0);
}

#[tokio::test]
async fn oversized_prompt_is_context_length_exceeded() {
    let long = "word ".repeat(model().context_window() + 10);
    let err = model()
        .chat(&ctx(), greedy(&long, 8))
        .await
        .expect_err("too long");
    assert_eq!(err.kind(), ErrorKind::ContextLengthExceeded);
}

#[tokio::test]
async fn invalid_requests_are_rejected_before_generation() {
    let err = model()
        .chat(&ctx(), ChatRequest::new("smollm2", vec![]))
        .await
        .expect_err("no messages");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let image = Message::User {
        content: vec![wattos_core::llm::ContentPart::Image {
            source: wattos_core::llm::ImageSource::Url {
                url: "https://example.invalid/x.png".into(),
            },
            detail: None,
        }],
        name: None,
    };
    let err = model()
        .chat(&ctx(), ChatRequest::new("smollm2", vec![image]))
        .await
        .expect_err("image");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn template_and_tokenizer_come_from_the_gguf() {
    let m = model();
    assert!(m.uses_model_chat_template());
    let prompt = m
        .render_prompt(&ChatRequest::new("smollm2", vec![Message::user("Hi")]))
        .expect("prompt");
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(m.count_tokens("<|im_start|>").expect("count"), 1);
    assert_eq!(
        m.count_tokens("12345").expect("count"),
        5,
        "digits are split one by one"
    );
    assert!(m.context_window() >= 2048);
}

fn weather_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_weather".into(),
        description: "Get the current weather for a city".into(),
        parameters: json!({
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"]
        }),
        strict: None,
    }
}

#[tokio::test]
async fn forced_tool_call_is_parsed() {
    let mut req =
        greedy("What is the weather like in Paris right now?", 48).with_tool(weather_tool());
    req.tool_choice = Some(ToolChoice::Tool {
        name: "get_weather".into(),
    });
    let resp = model().chat(&ctx(), req.clone()).await.expect("chat");
    assert_eq!(resp.finish_reason, FinishReason::ToolCalls, "{resp:?}");
    assert_eq!(resp.tool_calls.len(), 1);
    assert_eq!(resp.tool_calls[0].name, "get_weather");
    let args: serde_json::Value =
        serde_json::from_str(&resp.tool_calls[0].arguments).expect("json args");
    // Constrained decoding: exactly the schema's properties, the required one present and typed.
    let args = args.as_object().expect("arguments are an object");
    assert_eq!(
        args.keys().collect::<Vec<_>>(),
        ["city"],
        "only the declared, required key: {args:?}"
    );
    let city = args["city"].as_str().expect("city is a string");
    assert!(city.contains("Paris"), "the city of the question: {city:?}");
    // The prompt carried the tool list in the documented convention.
    let prompt = model().render_prompt(&req).expect("prompt");
    assert!(
        prompt.contains("<tools>[{\"description\":\"Get the current weather"),
        "{prompt}"
    );
}

/// JSON mode is grammar-constrained: the answer is always a parseable JSON document of the asked
/// shape (no prose, no code fence), ending on its own before `max_tokens`.
#[tokio::test]
async fn json_response_formats_yield_json_of_the_schema() {
    let mut req = greedy("Give the name and age of a fictional person.", 96);
    req.response_format = Some(ResponseFormat::JsonSchema {
        name: "person".into(),
        schema: json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 40},
                "age": {"type": "integer", "minimum": 0}
            },
            "required": ["name", "age"]
        }),
        strict: Some(true),
    });
    let resp = model().chat(&ctx(), req).await.expect("chat");
    assert_eq!(resp.finish_reason, FinishReason::Stop, "{resp:?}");
    let value: serde_json::Value =
        serde_json::from_str(resp.text()).expect("the whole text is JSON");
    let person = value.as_object().expect("an object");
    let mut keys: Vec<&str> = person.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["age", "name"], "{value}");
    let name = person["name"].as_str().expect("name is a string");
    assert!((1..=40).contains(&name.chars().count()), "{name:?}");
    assert!(
        person["age"].as_u64().is_some(),
        "age is a non-negative integer: {value}"
    );

    // `json_object`: any JSON object, the prompt says so, nothing around it.
    let mut req = greedy("Give the name and age of a fictional person.", 96);
    req.response_format = Some(ResponseFormat::JsonObject);
    assert!(
        model()
            .render_prompt(&req)
            .expect("prompt")
            .contains("valid JSON object")
    );
    let resp = model().chat(&ctx(), req).await.expect("chat");
    assert_eq!(resp.finish_reason, FinishReason::Stop, "{resp:?}");
    let value: serde_json::Value =
        serde_json::from_str(resp.text()).expect("the whole text is JSON");
    assert!(value.is_object(), "{value}");
}

#[test]
fn missing_gguf_is_named() {
    let dir = std::env::temp_dir().join(format!("wattos-smollm-missing-{}", std::process::id()));
    let err = SmolLm::from_models_dir(&dir, SmolLmOptions::default()).expect_err("missing");
    assert!(matches!(err, LoadError::MissingFile { .. }));
    assert_eq!(err.path(), SmolLm::file_in(&dir));
    let path =
        std::env::temp_dir().join(format!("wattos-smollm-corrupt-{}.gguf", std::process::id()));
    std::fs::write(&path, b"GGUF but not really").expect("write");
    let err = SmolLm::load(&path, SmolLmOptions::default()).expect_err("corrupt");
    assert!(matches!(err, LoadError::CorruptFile { .. }), "{err}");
    std::fs::remove_file(&path).ok();
}
