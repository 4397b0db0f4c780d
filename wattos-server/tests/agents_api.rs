//! The agents API over real HTTP, on the server built by `bootstrap` with the real local chat model
//! (SmolLM2): built-in graphs, blocking and streamed runs, interrupt -> approve / edit / reject,
//! pending-approval listing, checkpoints, validation errors, resuming after a restart, tenant
//! isolation, and a graph registered by an embedding application.

#![allow(clippy::unwrap_used)]

mod apis_support;

use std::sync::Arc;

use apis_support::*;
use serde_json::{Value, json};
use wattos_agents::CompileOptions;
use wattos_agents::agent::{AgentState, ReactAgent};
use wattos_core::RequestContext;
use wattos_core::test_utils::chat::ScriptedChatModel;
use wattos_core::tool::{Tool, ToolError};

async fn post(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let resp = http.post(url).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(http: &reqwest::Client, url: String) -> (u16, Value) {
    let resp = http.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A tool that needs approval for amounts over 100.
struct Refund;

#[async_trait::async_trait]
impl Tool for Refund {
    fn name(&self) -> &str {
        "refund"
    }
    fn description(&self) -> &str {
        "Refunds an amount."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"amount": {"type": "number"}}, "required": ["amount"]})
    }
    fn approval_request(&self, args: &Value) -> Option<Value> {
        (args["amount"].as_f64().unwrap_or(0.0) > 100.0).then(|| json!({"amount": args["amount"]}))
    }
    async fn invoke(&self, _ctx: &RequestContext, args: Value) -> Result<Value, ToolError> {
        Ok(json!({"refunded": args["amount"]}))
    }
}

#[tokio::test]
async fn runs_interrupt_resume_stream_and_survive_a_restart() {
    let Some(models) = models_dir() else { return };
    let data = data_dir("agents-api");
    let server = start(state(&models, &data, false, &[]).await).await;
    let http = reqwest::Client::new();
    let a = format!("{}/v1/agents", server.base);

    // Built-in graphs.
    let (s, b) = get(&http, format!("{a}/graphs")).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["approval", "assistant"]);
    assert_eq!(
        b["data"][0]["input_example"]["request"],
        "Please refund order 1234."
    );

    // approval: stops before `publish` with a pending interrupt.
    let (s, run) = post(
        &http,
        format!("{a}/graphs/approval/runs"),
        json!({"input": {"request": "Please refund order 1234."}, "thread_id": "ticket-1"}),
    )
    .await;
    assert_eq!(s, 200, "{run}");
    assert_eq!(run["status"], "interrupted");
    assert_eq!(run["thread_id"], "ticket-1");
    assert_eq!(run["interrupts"][0]["node"], "publish");
    assert_eq!(run["interrupts"][0]["kind"], "before");
    let draft = run["state"]["draft"].as_str().unwrap().to_owned();
    assert!(!draft.is_empty(), "the model drafted a reply");
    assert_eq!(run["state"]["published"], false);
    let id = run["id"].as_str().unwrap().to_owned();

    // The console's view: pending approvals, the run itself.
    let (_, b) = get(&http, format!("{a}/runs?status=interrupted")).await;
    assert_eq!(b["data"][0]["id"], id.as_str());
    let (_, b) = get(&http, format!("{a}/runs/{id}")).await;
    assert_eq!(b["status"], "interrupted");
    assert_eq!(b["interrupts"][0]["node"], "publish");
    // A thread with a pending interrupt takes no new run.
    let (s, b) = post(
        &http,
        format!("{a}/graphs/approval/runs"),
        json!({"input": {"request": "again"}, "thread_id": "ticket-1"}),
    )
    .await;
    assert_eq!((s, b["error"]["param"].as_str()), (409, Some("thread_id")));

    // Restart: the interrupted run resumes on a fresh server over the same data folder.
    drop(http);
    server.stop().await;
    let base = serve(state(&models, &data, false, &[]).await).await;
    let http = reqwest::Client::new();
    let a = format!("{base}/v1/agents");
    let (s, b) = post(
        &http,
        format!("{a}/runs/{id}/resume"),
        json!({"action": "approve"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "completed");
    assert_eq!(b["state"]["published"], true);
    assert_eq!(b["state"]["reply"], draft.as_str());
    assert_eq!(b["interrupts"], json!([]));
    // Resuming twice is a conflict.
    let (s, b) = post(
        &http,
        format!("{a}/runs/{id}/resume"),
        json!({"action": "approve"}),
    )
    .await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("conflict")));
    // The thread's timeline.
    let (s, b) = get(&http, format!("{a}/threads/ticket-1/checkpoints")).await;
    assert_eq!(s, 200);
    assert_eq!(b["graph"], "approval");
    let cps = b["data"].as_array().unwrap();
    assert!(cps.len() >= 3, "{b}");
    assert!(
        cps[0]["step"].as_u64().unwrap() > cps[cps.len() - 1]["step"].as_u64().unwrap(),
        "newest first"
    );
    let (_, b) = get(&http, format!("{a}/threads/ticket-1/checkpoints?limit=1")).await;
    assert_eq!(b["data"].as_array().unwrap().len(), 1);

    // Edit: the human's draft is published.
    let (_, run) = post(
        &http,
        format!("{a}/graphs/approval/runs"),
        json!({"input": {"request": "Cancel my subscription."}}),
    )
    .await;
    let id2 = run["id"].as_str().unwrap();
    assert_eq!(run["thread_id"], id2, "default thread = run id");
    let (s, b) = post(
        &http,
        format!("{a}/runs/{id2}/resume"),
        json!({"action": "edit"}),
    )
    .await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("value")));
    let (s, b) = post(
        &http,
        format!("{a}/runs/{id2}/resume"),
        json!({"action": "edit", "value": {"draft": "Done: cancelled."}}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["state"]["reply"], "Done: cancelled.");

    // Reject: the run stops with the reason.
    let (_, run) = post(
        &http,
        format!("{a}/graphs/approval/runs"),
        json!({"input": {"request": "Delete all data."}}),
    )
    .await;
    let id3 = run["id"].as_str().unwrap();
    let (s, b) = post(
        &http,
        format!("{a}/runs/{id3}/resume"),
        json!({"action": "reject", "reason": "not allowed"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "rejected");
    assert_eq!(b["reason"], "not allowed");
    assert_eq!(b["state"]["published"], false);
    let (_, b) = get(&http, format!("{a}/runs?status=rejected")).await;
    assert_eq!(b["data"][0]["id"], id3);

    // Streaming: run events, then done with the interrupted run; resume streamed too.
    let resp = http
        .post(format!("{a}/graphs/approval/runs"))
        .json(&json!({"input": {"request": "Hello"}, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = parse_sse(&resp.text().await.unwrap());
    assert_eq!(events[0].0, "run");
    assert_eq!(events[0].1["status"], "running");
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"update") && names.contains(&"checkpoint"),
        "{names:?}"
    );
    assert!(
        names.contains(&"node"),
        "model tokens are streamed: {names:?}"
    );
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done");
    assert_eq!(done["status"], "interrupted");
    let sid = done["id"].as_str().unwrap();
    let resp = http
        .post(format!("{a}/runs/{sid}/resume"))
        .json(&json!({"action": "approve", "stream": true}))
        .send()
        .await
        .unwrap();
    let events = parse_sse(&resp.text().await.unwrap());
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["state"]["published"], true);

    // assistant: a ReAct run on the real model completes with an assistant message.
    let (s, b) = post(
        &http,
        format!("{a}/graphs/assistant/runs"),
        json!({"input": serde_json::to_value(AgentState::user("Say hello.")).unwrap()}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "completed");
    let msgs = b["state"]["messages"].as_array().unwrap();
    assert_eq!(msgs.last().unwrap()["role"], "assistant");

    // Validation.
    let (s, _) = post(&http, format!("{a}/graphs/nope/runs"), json!({"input": {}})).await;
    assert_eq!(s, 404);
    for (bad, param) in [
        (json!({"input": 5}), Some("input")),
        (json!({"input": {"request": 5}}), Some("input")),
        (
            json!({"input": {}, "thread_id": "bad id!"}),
            Some("thread_id"),
        ),
        (json!({"inputs": {}}), None),
    ] {
        let (s, b) = post(&http, format!("{a}/graphs/approval/runs"), bad.clone()).await;
        assert_eq!(s, 400, "{bad} -> {b}");
        if let Some(p) = param {
            assert_eq!(b["error"]["param"], p, "{b}");
        }
    }
    // A thread belongs to its graph.
    let (s, _) = post(
        &http,
        format!("{a}/graphs/assistant/runs"),
        json!({"input": {}, "thread_id": "ticket-1"}),
    )
    .await;
    assert_eq!(s, 409);
    let (s, _) = get(&http, format!("{a}/runs?status=sleeping")).await;
    assert_eq!(s, 400);
    let (s, _) = get(&http, format!("{a}/runs?limit=0")).await;
    assert_eq!(s, 400);
    let (s, _) = get(&http, format!("{a}/runs/run_nope")).await;
    assert_eq!(s, 404);
    let (s, _) = get(&http, format!("{a}/threads/nope/checkpoints")).await;
    assert_eq!(s, 404);
    let (s, _) = post(
        &http,
        format!("{a}/runs/{id}/resume"),
        json!({"action": "maybe"}),
    )
    .await;
    assert_eq!(s, 400);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn tenants_are_isolated_and_embedding_apps_register_graphs() {
    let Some(models) = models_dir() else { return };
    let data = data_dir("agents-tenancy");
    let state = state(
        &models,
        &data,
        true,
        &[("WATTOS_MODELS__LOCAL_EMBEDDINGS", "false")],
    )
    .await;
    // An embedding application registers its own graph, compiled with the server's checkpointer.
    let agents = state.agents().unwrap();
    let model = ScriptedChatModel::new()
        .then_tool_call("refund", r#"{"amount": 250}"#)
        .then_text("Refunded 250.");
    let refunds = ReactAgent::new(Arc::new(model), "scripted")
        .with_tool(Arc::new(Refund))
        .compile(CompileOptions::new().with_checkpointer(agents.checkpointer()))
        .unwrap();
    agents
        .register(
            "refunds",
            "Refunds with approval",
            json!({"messages": []}),
            refunds,
        )
        .unwrap();
    let unpersisted = ReactAgent::new(Arc::new(ScriptedChatModel::new()), "scripted")
        .compile(CompileOptions::new())
        .unwrap();
    assert!(agents.register("bad", "", json!({}), unpersisted).is_err());
    let base = serve(state).await;
    let http = reqwest::Client::new();
    let admin = jwt("platform", &["platform_admin"]);
    for t in ["acme", "globex"] {
        let resp = http
            .post(format!("{base}/v1/admin/tenants"))
            .bearer_auth(&admin)
            .json(&json!({"id": t, "name": t}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    let acme = jwt("acme", &["member"]);
    let globex = jwt("globex", &["member"]);
    let a = format!("{base}/v1/agents");
    assert_eq!(
        http.get(format!("{a}/graphs"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // A tool call over the limit waits for approval (a dynamic interrupt).
    let input = serde_json::to_value(AgentState::user("refund 250")).unwrap();
    let resp = http
        .post(format!("{a}/graphs/refunds/runs"))
        .bearer_auth(&acme)
        .json(&json!({"input": input, "thread_id": "t1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let run: Value = resp.json().await.unwrap();
    assert_eq!(run["status"], "interrupted", "{run}");
    assert_eq!(run["interrupts"][0]["kind"], "dynamic");
    assert_eq!(run["interrupts"][0]["value"]["type"], "tool_approval");
    let id = run["id"].as_str().unwrap();

    // globex cannot see, resume or inspect acme's run and thread, and has no pending approvals.
    for url in [
        format!("{a}/runs/{id}"),
        format!("{a}/threads/t1/checkpoints"),
    ] {
        assert_eq!(
            http.get(&url)
                .bearer_auth(&globex)
                .send()
                .await
                .unwrap()
                .status(),
            404,
            "{url}"
        );
    }
    let resp = http
        .post(format!("{a}/runs/{id}/resume"))
        .bearer_auth(&globex)
        .json(&json!({"action": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let b: Value = http
        .get(format!("{a}/runs?status=interrupted"))
        .bearer_auth(&globex)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["data"], json!([]));
    // The same thread id is globex's own: its run starts fresh.
    let resp = http
        .post(format!("{a}/graphs/approval/runs"))
        .bearer_auth(&globex)
        .json(&json!({"input": {"request": "hi"}, "thread_id": "t1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "t1 of acme does not exist for globex");

    // A viewer cannot run or resume.
    let viewer = jwt("acme", &["viewer"]);
    let resp = http
        .post(format!("{a}/runs/{id}/resume"))
        .bearer_auth(&viewer)
        .json(&json!({"action": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        http.get(format!("{a}/graphs"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    // acme approves; the tool runs and the agent answers.
    let resp = http
        .post(format!("{a}/runs/{id}/resume"))
        .bearer_auth(&acme)
        .json(&json!({"action": "approve"}))
        .send()
        .await
        .unwrap();
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["status"], "completed", "{b}");
    let msgs = b["state"]["messages"].as_array().unwrap();
    assert!(
        msgs.iter()
            .any(|m| m["role"] == "tool" && m["content"].as_str().unwrap_or("").contains("250")),
        "{msgs:?}"
    );
    assert_eq!(msgs.last().unwrap()["content"], "Refunded 250.");
    let _ = std::fs::remove_dir_all(&data);
}

/// Shared mode: runs and checkpoints in Postgres. A run interrupted on one instance is listed by and
/// resumed on another instance over the same database.
#[tokio::test]
async fn shared_postgres_run_moves_between_instances() {
    let Ok(pg) = std::env::var("PG_TEST_URL") else {
        wattos_core::test_utils::skip::skip(
            "shared Postgres agent runs",
            "PG_TEST_URL is not set (scripts/test.sh sets it)",
        );
        return;
    };
    let prefix = format!("t{}_", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let instance = |draft: &'static str| {
        let pg = pg.clone();
        let prefix = prefix.clone();
        async move {
            let data = data_dir("agents-pg");
            let config = wattos_core::config::Config::from_sources(
                None,
                vec![
                    ("WATTOS_DATA_DIR".to_string(), data.display().to_string()),
                    ("WATTOS_DATABASE__URL".to_string(), pg),
                ],
            )
            .unwrap();
            let mut catalog = wattos_server::gateway::ModelCatalog::default();
            catalog.add_chat(
                "scripted",
                "tests",
                Arc::new(ScriptedChatModel::new().then_text(draft)),
            );
            let (rag, agents) =
                wattos_server::apis::build_services(&config, &catalog, Some(&prefix))
                    .await
                    .unwrap();
            assert!(rag.is_none(), "no embedding model, no RAG");
            let state = wattos_server::AppState::with_parts(
                config.clone(),
                wattos_server::AppState::default_health(&config),
                catalog,
            )
            .with_agents(Some(agents));
            serve(state).await
        }
    };
    let one = instance("Refund approved.").await;
    let two = instance("unused").await;
    let http = reqwest::Client::new();
    let thread = format!("pg-{}", uuid::Uuid::new_v4().simple());
    let (s, run) = post(
        &http,
        format!("{one}/v1/agents/graphs/approval/runs"),
        json!({"input": {"request": "refund"}, "thread_id": thread}),
    )
    .await;
    assert_eq!(s, 200, "{run}");
    assert_eq!(run["status"], "interrupted");
    let id = run["id"].as_str().unwrap();
    let (_, b) = get(
        &http,
        format!("{two}/v1/agents/runs?status=interrupted&thread_id={thread}"),
    )
    .await;
    assert_eq!(b["data"][0]["id"], id, "{b}");
    let (s, b) = post(
        &http,
        format!("{two}/v1/agents/runs/{id}/resume"),
        json!({"action": "approve"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "completed");
    assert_eq!(b["state"]["reply"], "Refund approved.");
    let (_, b) = get(&http, format!("{one}/v1/agents/runs/{id}")).await;
    assert_eq!(b["status"], "completed");
    let (_, b) = get(
        &http,
        format!("{one}/v1/agents/threads/{thread}/checkpoints"),
    )
    .await;
    assert!(b["data"].as_array().unwrap().len() >= 3, "{b}");
}
