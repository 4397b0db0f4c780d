//! End to end: a ReAct agent calls a tool on the local SmolLM2-135M-Instruct model (candle, CPU).
//!
//! Needs the model cache (`scripts/fetch-models.sh`, which `scripts/test.sh` runs); without it the
//! test prints `SKIPPED` and passes.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use wattos_agents::agent::{AgentState, ReactAgent};
use wattos_agents::{CompileOptions, RunConfig, RunStatus};
use wattos_core::llm::{Message, ToolChoice};
use wattos_core::tool::{FnTool, ToolError};
use wattos_core::{RequestContext, TenantId};
use wattos_llm::local::{SmolLm, SmolLmOptions, default_models_dir};

#[derive(Deserialize, JsonSchema)]
struct Multiply {
    /// The first factor.
    a: i64,
    /// The second factor.
    b: i64,
}

fn load_model() -> Option<SmolLm> {
    let dir = default_models_dir();
    if !SmolLm::file_in(&dir).is_file() {
        wattos_core::test_utils::skip::skip(
            "ReAct on SmolLM2",
            &format!(
                "{} is missing; run scripts/fetch-models.sh or set WATTOS_MODELS__DIR",
                SmolLm::file_in(&dir).display()
            ),
        );
        return None;
    }
    // Greedy decoding: the run is deterministic.
    let mut options = SmolLmOptions::default();
    options.default_temperature = 0.0;
    Some(SmolLm::from_models_dir(&dir, options).expect("load SmolLM2"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn react_agent_calls_a_tool_on_the_local_model() {
    let Some(model) = load_model() else {
        return;
    };
    let calls: Arc<Mutex<Vec<(i64, i64)>>> = Arc::default();
    let seen = calls.clone();
    let multiply = FnTool::new(
        "multiply",
        "Multiplies two integers and returns the product.",
        move |_ctx: RequestContext, x: Multiply| {
            seen.lock().unwrap().push((x.a, x.b));
            async move { Ok::<_, ToolError>(x.a * x.b) }
        },
    );
    let agent = ReactAgent::new(Arc::new(model), "smollm2")
        .with_prompt("You are a helpful assistant. Use the tools to compute exact results.")
        .with_tool(Arc::new(multiply))
        .with_first_tool_choice(ToolChoice::Required)
        .with_tool_choice(ToolChoice::None)
        .with_max_tokens(64)
        .compile(CompileOptions::new())
        .unwrap();
    let ctx = RequestContext::system(TenantId::new("agents-local").unwrap());
    let out = agent
        .invoke(
            &ctx,
            &RunConfig::default().with_step_limit(6),
            AgentState::user("What is 17 times 23?"),
        )
        .await
        .expect("the run finishes within the step limit");
    assert_eq!(out.status, RunStatus::Completed);
    let messages = &out.state.messages;
    for m in messages {
        eprintln!("{m:?}");
    }

    // The model called the tool once, with schema-valid arguments taken from the question.
    assert_eq!(*calls.lock().unwrap(), vec![(17, 23)]);
    let Message::Assistant { tool_calls, .. } = &messages[1] else {
        panic!("expected the tool call, got {:?}", messages[1]);
    };
    assert_eq!(tool_calls.len(), 1);
    assert_eq!(tool_calls[0].name, "multiply");
    let args: Value = serde_json::from_str(&tool_calls[0].arguments).unwrap();
    assert_eq!(args, json!({"a": 17, "b": 23}));

    // The result went back to the model, which answered with it.
    let Message::Tool {
        content, is_error, ..
    } = &messages[2]
    else {
        panic!("expected the tool result, got {:?}", messages[2]);
    };
    assert!(!is_error, "tool error: {content}");
    assert_eq!(content, "391");
    assert_eq!(messages.len(), 4, "user, call, result, answer");
    let answer = out.state.last_answer().unwrap();
    assert!(answer.contains("391"), "answer: {answer:?}");
}
