//! A payments agent with human approval, fully offline.
//!
//! The agent (a ReAct loop over a scripted chat model, so it runs without any provider) wants to call
//! `transfer` for 250 EUR. Transfers above 100 EUR need approval, so the run stops, persisted in SQLite.
//! A *new* graph instance, as a second process would, reads the pending request, and a human edits the
//! amount down to 90 EUR; the run resumes from the checkpoint and finishes.
//!
//! `cargo run -p example-agent-approval`
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use futures::StreamExt;
use schemars::JsonSchema;
use serde::Deserialize;
use wattos_agents::agent::{AgentState, ReactAgent};
use wattos_agents::checkpoint::SqliteCheckpointer;
use wattos_agents::{Command, CompileOptions, CompiledGraph, Event, NodeEvent, RunConfig};
use wattos_core::checkpoint::{Checkpointer, ThreadId};
use wattos_core::test_utils::chat::ScriptedChatModel;
use wattos_core::tool::{FnTool, ToolError};
use wattos_core::{RequestContext, TenantId};

/// Arguments of the transfer tool; the JSON Schema the model sees is derived from this type.
#[derive(Deserialize, JsonSchema)]
struct Transfer {
    /// Who receives the money.
    to: String,
    /// Amount in euros.
    amount_eur: u64,
}

fn payments_agent(
    model: ScriptedChatModel,
    checkpointer: Arc<dyn Checkpointer>,
) -> wattos_core::Result<CompiledGraph<AgentState>> {
    let transfer = FnTool::new(
        "transfer",
        "Transfers euros to a person.",
        |ctx: RequestContext, t: Transfer| async move {
            Ok::<_, ToolError>(format!(
                "{} EUR sent to {} (tenant {})",
                t.amount_eur,
                t.to,
                ctx.tenant().as_str()
            ))
        },
    )
    .with_approval_policy(|args| {
        let amount = args["amount_eur"].as_u64().unwrap_or(0);
        (amount > 100).then(|| {
            serde_json::json!(format!(
                "transfer of {amount} EUR exceeds the 100 EUR limit"
            ))
        })
    });
    ReactAgent::new(Arc::new(model), "scripted")
        .with_prompt("You are a careful payments assistant.")
        .with_tool(Arc::new(transfer))
        .compile(CompileOptions::new().with_checkpointer(checkpointer))
}

#[tokio::main]
async fn main() -> wattos_core::Result<()> {
    let dir = std::env::temp_dir().join("wattos-agent-approval");
    std::fs::create_dir_all(&dir).map_err(|e| wattos_core::Error::internal(e.to_string()))?;
    let db = dir.join("checkpoints.db");
    let ctx = RequestContext::system(TenantId::new("acme")?);
    let thread = ThreadId::new(format!("payment-{}", std::process::id()))?;
    let config = RunConfig::thread(thread.clone());

    // The scripted model: first a tool call, then (after the tool result) a final answer.
    let model = ScriptedChatModel::new()
        .then_tool_call("transfer", r#"{"to": "Bob", "amount_eur": 250}"#)
        .then_text("Done: Bob has been paid.");

    // 1. Run until the approval interrupt.
    let agent = payments_agent(
        model.clone(),
        Arc::new(SqliteCheckpointer::open(&db).await?),
    )?;
    let outcome = agent
        .invoke(&ctx, &config, AgentState::user("Please pay Bob 250 EUR."))
        .await?;
    println!("status: {:?}", outcome.status);
    for interrupt in &outcome.interrupts {
        println!("waiting for approval: {}", interrupt.value);
    }
    drop(agent);

    // 2. Later, maybe in another process: open the same database, inspect, and answer with an edit.
    let agent = payments_agent(model, Arc::new(SqliteCheckpointer::open(&db).await?))?;
    let pending = agent
        .get_state(&ctx, &thread)
        .await?
        .map(|s| s.interrupts)
        .unwrap_or_default();
    println!("pending interrupts after reopening: {}", pending.len());
    let edit = Command::Edit(serde_json::json!({"to": "Bob", "amount_eur": 90}));
    let mut events = agent.stream_resume(&ctx, &config, edit);
    while let Some(event) = events.next().await {
        match event? {
            Event::Node {
                event: NodeEvent::ToolEnd { tool, result, .. },
                ..
            } => println!("tool {tool}: {result}"),
            Event::Node {
                event: NodeEvent::Token { text },
                ..
            } => print!("{text}"),
            Event::Done(outcome) => println!("\nstatus: {:?}", outcome.status),
            _ => {}
        }
    }
    let history = agent.history(&ctx, &thread, 100).await?;
    println!("checkpoints written: {}", history.len());
    Ok(())
}
