//! Tools, ReAct, roles, supervisor and memory, with the scripted chat model.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use schemars::JsonSchema;
use serde::Deserialize;
use wattos_agents::agent::{AgentRole, AgentState, ReactAgent, Supervisor, ToolRegistry};
use wattos_agents::checkpoint::InMemoryCheckpointer;
use wattos_agents::memory::{
    ConversationWindow, InMemoryMemoryStore, MemoryQuery, MemoryStore, Namespace,
};
use wattos_agents::{Command, CompileOptions, Event, NodeEvent, RunConfig, RunStatus};
use wattos_core::checkpoint::ThreadId;
use wattos_core::llm::Message;
use wattos_core::test_utils::chat::ScriptedChatModel;
use wattos_core::tool::{FnTool, Tool, ToolError};
use wattos_core::{RequestContext, TenantId};

fn ctx(t: &str) -> RequestContext {
    RequestContext::system(TenantId::new(t).unwrap())
}

#[derive(Deserialize, JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Deserialize, JsonSchema)]
struct Nap {
    ms: u64,
}

#[derive(Deserialize, JsonSchema)]
struct Transfer {
    to: String,
    amount: u64,
}

fn add_tool() -> Arc<dyn Tool> {
    Arc::new(FnTool::new(
        "add",
        "Adds two integers.",
        |_c: RequestContext, x: Add| async move { Ok::<_, ToolError>(x.a + x.b) },
    ))
}

fn nap_tool() -> Arc<dyn Tool> {
    Arc::new(
        FnTool::new("nap", "Sleeps.", |_c: RequestContext, x: Nap| async move {
            tokio::time::sleep(Duration::from_millis(x.ms)).await;
            Ok::<_, ToolError>("rested")
        })
        .with_timeout(Duration::from_millis(200)),
    )
}

fn whoami_tool() -> Arc<dyn Tool> {
    #[derive(Deserialize, JsonSchema)]
    struct Empty {}
    Arc::new(FnTool::new(
        "whoami",
        "Tenant of the caller.",
        |c: RequestContext, _x: Empty| async move { Ok::<_, ToolError>(c.tenant().as_str().to_owned()) },
    ))
}

fn tool_results(state: &AgentState) -> Vec<(String, bool)> {
    state
        .messages
        .iter()
        .filter_map(|m| match m {
            Message::Tool {
                content, is_error, ..
            } => Some((content.clone(), *is_error)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn react_agent_feeds_tool_errors_back_and_runs_calls_in_parallel() {
    let model = ScriptedChatModel::new()
        // Bad arguments, an unknown tool and a timeout, all in one turn.
        .then_tool_calls(&[
            ("add", r#"{"a": "two", "b": 3}"#),
            ("divide", "{}"),
            ("nap", r#"{"ms": 5000}"#),
            ("add", "not json"),
        ])
        // The model corrects itself; two slow-ish calls run in parallel.
        .then_tool_calls(&[
            ("add", r#"{"a": 2, "b": 3}"#),
            ("nap", r#"{"ms": 150}"#),
            ("nap", r#"{"ms": 150}"#),
            ("whoami", ""),
        ])
        .then_text("The answer is 5.");
    let agent = ReactAgent::new(Arc::new(model.clone()), "scripted")
        .with_prompt("Use tools.")
        .with_tools([add_tool(), nap_tool(), whoami_tool()])
        .compile(CompileOptions::new())
        .unwrap();
    let started = Instant::now();
    let out = agent
        .invoke(
            &ctx("acme"),
            &RunConfig::default(),
            AgentState::user("2+3?"),
        )
        .await
        .unwrap();
    let results = tool_results(&out.state);
    assert_eq!(results.len(), 8);
    assert!(
        results[0].1
            && results[0].0.contains("invalid arguments")
            && results[0].0.contains("invalid type"),
        "{results:?}"
    );
    assert!(results[1].1 && results[1].0.contains("unknown tool `divide`"));
    assert!(results[2].1 && results[2].0.contains("timed out"));
    assert!(results[3].1 && results[3].0.contains("not valid JSON"));
    assert_eq!(results[4], ("5".into(), false));
    assert_eq!(results[5], ("rested".into(), false));
    assert_eq!(
        results[7],
        ("acme".into(), false),
        "tools see the caller's tenant"
    );
    // 200 ms timeout + two parallel 150 ms naps: far less than running them one after the other.
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.state.last_answer().as_deref(), Some("The answer is 5."));
    // The model saw the error results and the tool schemas.
    let reqs = model.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].messages[0], Message::system("Use tools."));
    assert_eq!(
        reqs[0]
            .tools
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["add", "nap", "whoami"]
    );
    assert!(
        reqs[1]
            .messages
            .iter()
            .any(|m| m.text().contains("unknown tool `divide`"))
    );
}

fn bank(
    model: ScriptedChatModel,
    cp: Arc<InMemoryCheckpointer>,
) -> wattos_agents::CompiledGraph<AgentState> {
    let transfer = FnTool::new(
        "transfer",
        "Sends money.",
        |_c: RequestContext, t: Transfer| async move {
            Ok::<_, ToolError>(format!("sent {} to {}", t.amount, t.to))
        },
    )
    .with_approval_policy(|args| {
        (args["amount"].as_u64().unwrap_or(0) > 100).then(|| serde_json::json!("large transfer"))
    });
    ReactAgent::new(Arc::new(model), "scripted")
        .with_tool(Arc::new(transfer))
        .compile(CompileOptions::new().with_checkpointer(cp))
        .unwrap()
}

#[tokio::test]
async fn tool_approval_interrupts_and_resumes_with_approve_edit_or_reject() {
    for (i, (command, expected)) in [
        (Command::Approve, "sent 500 to bob"),
        (
            Command::Edit(serde_json::json!({"to": "bob", "amount": 50})),
            "sent 50 to bob",
        ),
        (
            Command::Reject("not today".into()),
            "Error: rejected: not today",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let cp = Arc::new(InMemoryCheckpointer::new());
        let model = ScriptedChatModel::new()
            .then_tool_calls(&[
                ("transfer", r#"{"to": "bob", "amount": 500}"#),
                ("transfer", r#"{"to": "amy", "amount": 5}"#),
            ])
            .then_text("done");
        let cfg = RunConfig::thread(ThreadId::new(format!("bank-{i}")).unwrap());
        let out = bank(model.clone(), cp.clone())
            .invoke(&ctx("t"), &cfg, AgentState::user("pay bob 500"))
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Interrupted);
        let ask = &out.interrupts[0].value;
        assert_eq!(ask["tool"], "transfer");
        assert_eq!(ask["args"]["amount"], 500);
        assert_eq!(ask["request"], "large transfer");
        // Resume in a "new process": a new graph and model handle sharing only the checkpointer and script.
        let out = bank(model.clone(), cp.clone())
            .resume(&ctx("t"), &cfg, command)
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Completed);
        let results = tool_results(&out.state);
        assert_eq!(results[0].0, expected);
        assert_eq!(
            results[1].0, "sent 5 to amy",
            "the small transfer needed no approval"
        );
        assert_eq!(
            model.requests().len(),
            2,
            "the model was not called again for the interrupted step"
        );
    }
}

/// A run's approval list (a tenant's `agents.approval_required_tools`) makes every call of those
/// tools wait for a human, also calls the tool itself would let through and calls made inside a
/// subgraph; without the list the same run asks only for the large transfer.
#[tokio::test]
async fn a_runs_approval_list_interrupts_every_call_of_its_tools_also_in_subgraphs() {
    let script = || {
        ScriptedChatModel::new()
            .then_tool_calls(&[("transfer", r#"{"to": "amy", "amount": 5}"#)])
            .then_text("done")
    };
    // Without the list: the small transfer needs no approval.
    let cp = Arc::new(InMemoryCheckpointer::new());
    let cfg = RunConfig::thread(ThreadId::new("small-free").unwrap());
    let out = bank(script(), cp)
        .invoke(&ctx("t"), &cfg, AgentState::user("pay amy 5"))
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed);

    // With it: the same call interrupts with the run's reason, and approve runs it.
    let cp = Arc::new(InMemoryCheckpointer::new());
    let model = script();
    let cfg = RunConfig::thread(ThreadId::new("small-asked").unwrap())
        .with_approval_required(["transfer"]);
    let out = bank(model.clone(), cp.clone())
        .invoke(&ctx("t"), &cfg, AgentState::user("pay amy 5"))
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Interrupted);
    let ask = &out.interrupts[0].value;
    assert_eq!(ask["type"], "tool_approval");
    assert_eq!(ask["tool"], "transfer");
    assert!(
        ask["request"]["reason"]
            .as_str()
            .unwrap()
            .contains("requires approval")
    );
    let out = bank(model, cp)
        .resume(&ctx("t"), &cfg, Command::Approve)
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(tool_results(&out.state)[0].0, "sent 5 to amy");

    // Inside a subgraph: the parent run's list holds for the agent it wraps.
    let cp = Arc::new(InMemoryCheckpointer::new());
    let parent = |model: ScriptedChatModel, cp: Arc<InMemoryCheckpointer>| {
        wattos_agents::StateGraph::<AgentState>::new()
            .add_node_impl(
                "payments",
                wattos_agents::Subgraph::new(
                    bank(model, cp.clone()),
                    |s: &AgentState| s.clone(),
                    |_s: &AgentState, inner: AgentState| {
                        wattos_agents::agent::AgentStateUpdate::default().messages(inner.messages)
                    },
                ),
            )
            .add_edge(wattos_agents::START, "payments")
            .add_edge("payments", wattos_agents::END)
            .compile(CompileOptions::new().with_checkpointer(cp))
            .unwrap()
    };
    let model = script();
    let cfg =
        RunConfig::thread(ThreadId::new("nested").unwrap()).with_approval_required(["transfer"]);
    let out = parent(model.clone(), cp.clone())
        .invoke(&ctx("t"), &cfg, AgentState::user("pay amy 5"))
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Interrupted, "{:?}", out.state);
    // The parent reports the subgraph's interrupt, wrapped with the subgraph node's name.
    let inner = &out.interrupts[0].value;
    assert_eq!(inner["subgraph"], "payments", "{:?}", out.interrupts);
    assert_eq!(
        inner["interrupts"][0]["value"]["tool"], "transfer",
        "{inner}"
    );
    assert!(
        inner["interrupts"][0]["value"]["request"]["reason"]
            .as_str()
            .unwrap()
            .contains("requires approval"),
        "{inner}"
    );
    let out = parent(model, cp)
        .resume(&ctx("t"), &cfg, Command::Reject("no".into()))
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    assert!(
        tool_results(&out.state)
            .iter()
            .any(|(c, _)| c == "Error: rejected: no"),
        "{:?}",
        tool_results(&out.state)
    );
}

#[tokio::test]
async fn roles_only_reach_their_tools_and_the_supervisor_hands_off() {
    let registry = ToolRegistry::new().with(add_tool()).with(whoami_tool());
    let math = AgentRole::new("math", "does arithmetic", "You add numbers.").with_tool("add");
    let writer = AgentRole::new("writer", "writes prose", "You write.");
    let math_model = ScriptedChatModel::named("math")
        .then_tool_calls(&[("whoami", ""), ("add", r#"{"a": 40, "b": 2}"#)])
        .then_text("42");
    let writer_model = ScriptedChatModel::named("writer").then_text("Forty-two is the answer.");
    let boss = ScriptedChatModel::named("boss")
        .then_tool_call("transfer_to_math", "{}")
        .then_tool_call("transfer_to_writer", "{}")
        .then_text("Final: Forty-two is the answer.");
    let cp = Arc::new(InMemoryCheckpointer::new());
    let graph = Supervisor::new(Arc::new(boss.clone()), "boss")
        .with_agent(
            math.clone(),
            math.agent(Arc::new(math_model.clone()), "math", &registry)
                .compile(CompileOptions::new())
                .unwrap(),
        )
        .with_agent(
            writer.clone(),
            writer
                .agent(Arc::new(writer_model.clone()), "writer", &registry)
                .compile(CompileOptions::new())
                .unwrap(),
        )
        .compile(CompileOptions::new().with_checkpointer(cp))
        .unwrap();
    let cfg = RunConfig::thread(ThreadId::new("team").unwrap());
    let out = graph
        .invoke(&ctx("t"), &cfg, AgentState::user("what is 40+2, in words?"))
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(
        out.state.last_answer().as_deref(),
        Some("Final: Forty-two is the answer.")
    );
    assert_eq!(out.state.active_agent, "supervisor");
    let results = tool_results(&out.state);
    assert!(
        results
            .iter()
            .any(|(c, e)| *e && c.contains("unknown tool `whoami`")),
        "{results:?}"
    );
    assert!(results.iter().any(|(c, e)| !*e && c == "42"));
    // The math role only saw its own tool; the writer saw none.
    assert_eq!(
        math_model.requests()[0]
            .tools
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["add"]
    );
    assert!(writer_model.requests()[0].tools.is_empty());
    assert!(
        writer_model.requests()[0]
            .messages
            .iter()
            .any(|m| m.text() == "42"),
        "the writer sees the math agent's work"
    );
    assert_eq!(boss.requests()[0].tools.len(), 2);
    assert_eq!(boss.remaining(), 0);
}

#[tokio::test]
async fn streaming_emits_tokens_and_tool_events() {
    let model = ScriptedChatModel::new()
        .then_tool_call("add", r#"{"a":1,"b":1}"#)
        .then_text("one plus one is two");
    let agent = ReactAgent::new(Arc::new(model), "scripted")
        .with_tool(add_tool())
        .compile(CompileOptions::new())
        .unwrap();
    let events: Vec<_> = agent
        .stream(&ctx("t"), &RunConfig::default(), AgentState::user("1+1"))
        .collect()
        .await;
    let mut tokens = String::new();
    let mut tools = Vec::new();
    for e in &events {
        match e.as_ref().unwrap() {
            Event::Node {
                event: NodeEvent::Token { text },
                node,
                ..
            } => {
                assert_eq!(node, "agent");
                tokens.push_str(text);
            }
            Event::Node {
                event: NodeEvent::ToolStart { tool, .. },
                ..
            } => tools.push(format!("start:{tool}")),
            Event::Node {
                event: NodeEvent::ToolEnd { tool, result, .. },
                ..
            } => tools.push(format!("end:{tool}:{result}")),
            _ => {}
        }
    }
    assert_eq!(tokens, "one plus one is two");
    assert_eq!(tools, ["start:add", "end:add:2"]);
    assert!(matches!(events.last(), Some(Ok(Event::Done(_)))));
}

#[tokio::test]
async fn window_trims_to_budget_and_summarises() {
    let window = ConversationWindow::new(40);
    let mut history = vec![Message::system("sys")];
    for i in 0..20 {
        history.push(Message::user(format!(
            "message {i} padded with several words"
        )));
        history.push(Message::Assistant {
            content: None,
            tool_calls: vec![wattos_core::llm::ToolCall {
                id: format!("c{i}"),
                name: "t".into(),
                arguments: "{}".into(),
            }],
        });
        history.push(Message::tool_result(format!("c{i}"), "ok"));
    }
    let kept = window.trim(&history);
    assert!(window.count(&kept) <= 40, "{}", window.count(&kept));
    assert_eq!(kept[0], Message::system("sys"));
    assert!(
        !matches!(kept[1], Message::Tool { .. }),
        "no orphan tool result at the start"
    );
    assert_eq!(kept.last(), history.last());
    // A message larger than the budget is still kept (the latest is never dropped).
    let huge = vec![Message::user("x".repeat(1000))];
    assert_eq!(window.trim(&huge), huge);

    let summarizer = ScriptedChatModel::new().then_text("They talked about 20 messages.");
    let compacted = window
        .summarize(&ctx("t"), &summarizer, "m", &history)
        .await
        .unwrap();
    assert_eq!(
        compacted[1],
        Message::system("Summary of the earlier conversation: They talked about 20 messages.")
    );
    assert!(
        summarizer.requests()[0].messages[1]
            .text()
            .contains("message 0 padded")
    );

    // A ReAct agent with a window sends only the trimmed conversation.
    let model = ScriptedChatModel::new().then_text("ok");
    let agent = ReactAgent::new(Arc::new(model.clone()), "m")
        .with_window(ConversationWindow::new(40))
        .compile(CompileOptions::new())
        .unwrap();
    let input = wattos_agents::agent::AgentStateUpdate::default().messages(history[1..].to_vec());
    let out = agent
        .invoke(&ctx("t"), &RunConfig::default(), input)
        .await
        .unwrap();
    assert!(model.requests()[0].messages.len() < 10);
    assert_eq!(out.state.messages.len(), 61, "the state keeps everything");
}

#[tokio::test]
async fn long_term_memory_is_per_tenant_and_user() {
    // The full behaviour is the conformance suite in tests/memory.rs; this is the short version.
    let store = InMemoryMemoryStore::new();
    let ann = Namespace::user("ann").unwrap();
    let bob = Namespace::user("bob").unwrap();
    store
        .remember(&ctx("acme"), &ann, "Ann prefers tea over coffee")
        .await
        .unwrap();
    store
        .remember(&ctx("acme"), &ann, "Ann lives in Oslo")
        .await
        .unwrap();
    let bobs = store
        .remember(&ctx("acme"), &bob, "Bob prefers coffee")
        .await
        .unwrap();
    store
        .remember(&ctx("globex"), &ann, "Globex Ann prefers juice")
        .await
        .unwrap();
    let q = MemoryQuery::top(5);
    let hits = store
        .search(
            &ctx("acme"),
            &ann,
            "what does she prefer, tea or coffee?",
            &q,
        )
        .await
        .unwrap();
    assert_eq!(hits[0].memory.text, "Ann prefers tea over coffee");
    assert!(hits.iter().all(|h| h.memory.namespace == ann));
    let hits = store
        .search(&ctx("globex"), &ann, "prefers", &q)
        .await
        .unwrap();
    assert_eq!(
        hits.iter()
            .map(|h| h.memory.text.as_str())
            .collect::<Vec<_>>(),
        ["Globex Ann prefers juice"]
    );
    assert!(
        store
            .search(&ctx("globex"), &bob, "coffee", &q)
            .await
            .unwrap()
            .is_empty()
    );
    // Forgetting under another tenant does nothing; under the right one it forgets.
    assert!(!store.forget(&ctx("globex"), &bob, &bobs.id).await.unwrap());
    assert!(store.forget(&ctx("acme"), &bob, &bobs.id).await.unwrap());
    assert!(
        store
            .search(&ctx("acme"), &bob, "coffee", &q)
            .await
            .unwrap()
            .is_empty()
    );
}
