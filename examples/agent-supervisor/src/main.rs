//! A supervisor and two role agents, fully offline with scripted models.
//!
//! The supervisor hands the request to `researcher` (who may use `lookup`, and only that), then to
//! `writer` (no tools), then answers. Every hand-off and tool call is checkpointed in memory; the
//! history is printed at the end.
//!
//! `cargo run -p example-agent-supervisor`
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use wattos_agents::agent::{AgentRole, AgentState, Supervisor, ToolRegistry};
use wattos_agents::checkpoint::InMemoryCheckpointer;
use wattos_agents::{CompileOptions, RunConfig};
use wattos_core::checkpoint::ThreadId;
use wattos_core::llm::Message;
use wattos_core::test_utils::chat::ScriptedChatModel;
use wattos_core::tool::{FnTool, ToolError};
use wattos_core::{RequestContext, TenantId};

/// Arguments of the lookup tool.
#[derive(Deserialize, JsonSchema)]
struct Lookup {
    /// What to look up.
    topic: String,
}

#[tokio::main]
async fn main() -> wattos_core::Result<()> {
    let lookup = FnTool::new(
        "lookup",
        "Looks a topic up in the knowledge base.",
        |_ctx: RequestContext, l: Lookup| async move {
            Ok::<_, ToolError>(format!("{}: boils at 100 °C at sea level", l.topic))
        },
    );
    let registry = ToolRegistry::new().with(Arc::new(lookup));

    let researcher = AgentRole::new(
        "researcher",
        "finds facts",
        "You research facts with tools.",
    )
    .with_tool("lookup");
    let writer = AgentRole::new(
        "writer",
        "writes the final text",
        "You write one clear sentence.",
    );

    let researcher_model = ScriptedChatModel::named("researcher")
        .then_tool_call("lookup", r#"{"topic": "water"}"#)
        .then_text("Water boils at 100 °C at sea level.");
    let writer_model = ScriptedChatModel::named("writer")
        .then_text("At sea level, water boils at 100 degrees Celsius.");
    let boss = ScriptedChatModel::named("supervisor")
        .then_tool_call("transfer_to_researcher", "{}")
        .then_tool_call("transfer_to_writer", "{}")
        .then_text("At sea level, water boils at 100 degrees Celsius.");

    let team = Supervisor::new(Arc::new(boss), "supervisor")
        .with_agent(
            researcher.clone(),
            researcher
                .agent(Arc::new(researcher_model), "researcher", &registry)
                .compile(CompileOptions::new())?,
        )
        .with_agent(
            writer.clone(),
            writer
                .agent(Arc::new(writer_model), "writer", &registry)
                .compile(CompileOptions::new())?,
        )
        .compile(CompileOptions::new().with_checkpointer(Arc::new(InMemoryCheckpointer::new())))?;

    let ctx = RequestContext::system(TenantId::new("acme")?);
    let thread = ThreadId::new("water-question")?;
    let out = team
        .invoke(
            &ctx,
            &RunConfig::thread(thread.clone()),
            AgentState::user("At what temperature does water boil?"),
        )
        .await?;
    for m in &out.state.messages {
        match m {
            Message::Assistant {
                content,
                tool_calls,
            } if !tool_calls.is_empty() => {
                let calls: Vec<_> = tool_calls.iter().map(|c| c.name.as_str()).collect();
                println!(
                    "assistant calls {calls:?} {}",
                    content.as_deref().unwrap_or("")
                );
            }
            other => println!("{}: {}", other.role(), other.text()),
        }
    }
    println!(
        "status: {:?}, last agent: {}",
        out.status, out.state.active_agent
    );
    for cp in team.history(&ctx, &thread, 100).await?.iter().rev() {
        println!("checkpoint step {:>2} next {:?}", cp.step, cp.next);
    }
    Ok(())
}
