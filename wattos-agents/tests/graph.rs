//! Graph routing, cycles, fan-out, interrupts, subgraphs and tenant isolation (in-memory checkpointer).
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use wattos_agents::checkpoint::InMemoryCheckpointer;
use wattos_agents::{
    Append, Command, CompileOptions, END, Event, GraphError, InterruptKind, NodeContext,
    NodeOutput, Replace, Route, RunConfig, RunStatus, START, StateGraph, Subgraph, Sum,
    graph_state,
};
use wattos_core::checkpoint::{Checkpointer, ThreadId};
use wattos_core::{ErrorKind, RequestContext, TenantId};

graph_state! {
    /// Test state.
    #[derive(Debug, PartialEq)]
    pub struct Flow / FlowUpdate {
        pub route: String => Replace,
        pub visited: Vec<String> => Append,
        pub count: u32 => Sum,
    }
}

fn ctx(tenant: &str) -> RequestContext {
    RequestContext::system(TenantId::new(tenant).unwrap())
}

fn visit(
    name: &'static str,
) -> impl Fn(Arc<Flow>, NodeContext) -> futures::future::Ready<wattos_core::Result<NodeOutput<Flow>>>
+ Send
+ Sync
+ 'static {
    move |_s, _c| {
        futures::future::ready(Ok(NodeOutput::update(
            FlowUpdate::default()
                .visited(vec![name.to_owned()])
                .count(1),
        )))
    }
}

#[tokio::test]
async fn conditional_edges_route_by_state() {
    let g = StateGraph::<Flow>::new()
        .add_node("classify", visit("classify"))
        .add_node("billing", visit("billing"))
        .add_node("tech", visit("tech"))
        .add_edge(START, "classify")
        .add_conditional_edges(
            "classify",
            |s: &Flow| {
                if s.route == "money" {
                    "billing"
                } else {
                    "tech"
                }
            },
            ["billing", "tech"],
        )
        .add_edge("billing", END)
        .add_edge("tech", END)
        .compile(CompileOptions::new())
        .unwrap();
    let out = g
        .invoke(
            &ctx("t"),
            &RunConfig::default(),
            FlowUpdate::default().route("money".into()),
        )
        .await
        .unwrap();
    assert_eq!(out.state.visited, ["classify", "billing"]);
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(out.steps, 2);
    let out = g
        .invoke(
            &ctx("t"),
            &RunConfig::default(),
            FlowUpdate::default().route("bug".into()),
        )
        .await
        .unwrap();
    assert_eq!(out.state.visited, ["classify", "tech"]);
}

#[tokio::test]
async fn cycles_end_by_condition_and_the_step_limit_is_typed() {
    let build = |stop: u32| {
        StateGraph::<Flow>::new()
            .add_node("loop", visit("loop"))
            .add_edge(START, "loop")
            .add_conditional_edges(
                "loop",
                move |s: &Flow| if s.count < stop { "loop" } else { END },
                ["loop", END],
            )
            .compile(CompileOptions::new().with_step_limit(10))
            .unwrap()
    };
    let out = build(5)
        .invoke(&ctx("t"), &RunConfig::default(), FlowUpdate::default())
        .await
        .unwrap();
    assert_eq!(out.state.count, 5);
    let err = build(1000)
        .invoke(&ctx("t"), &RunConfig::default(), FlowUpdate::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BudgetExceeded);
    assert!(matches!(
        GraphError::find(&err),
        Some(GraphError::StepLimit { limit: 10 })
    ));
    // A run may raise its own limit.
    let out = build(50)
        .invoke(
            &ctx("t"),
            &RunConfig::default().with_step_limit(60),
            FlowUpdate::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.state.count, 50);
    // A ceiling (a tenant's `agents.max_steps`) wins over the graph's limit and the run's own.
    for cfg in [
        RunConfig::default().with_max_steps(4),
        RunConfig::default().with_step_limit(60).with_max_steps(4),
    ] {
        let err = build(5)
            .invoke(&ctx("t"), &cfg, FlowUpdate::default())
            .await
            .unwrap_err();
        assert!(matches!(
            GraphError::find(&err),
            Some(GraphError::StepLimit { limit: 4 })
        ));
    }
    // ... and never raises it.
    let err = build(1000)
        .invoke(
            &ctx("t"),
            &RunConfig::default().with_max_steps(500),
            FlowUpdate::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        GraphError::find(&err),
        Some(GraphError::StepLimit { limit: 10 })
    ));
}

#[tokio::test]
async fn fan_out_branches_merge_with_reducers() {
    let g = StateGraph::<Flow>::new()
        .add_node("plan", visit("plan"))
        .add_node("research", |s: Arc<Flow>, _c: NodeContext| async move {
            // Each branch sees its own `route` overlay.
            Ok(NodeOutput::update(
                FlowUpdate::default()
                    .visited(vec![format!("research:{}", s.route)])
                    .count(1),
            ))
        })
        .add_node("a", visit("a"))
        .add_node("b", visit("b"))
        .add_node("join", visit("join"))
        .add_edge(START, "plan")
        .add_conditional_edges(
            "plan",
            |_s: &Flow| {
                vec![
                    Route::send("research", FlowUpdate::default().route("x".into())),
                    Route::send("research", FlowUpdate::default().route("y".into())),
                    Route::to("a"),
                    Route::to("b"),
                ]
            },
            ["research", "a", "b"],
        )
        .add_edge("research", "join")
        .add_edge("a", "join")
        .add_edge("b", "join")
        .add_edge("join", END)
        .compile(CompileOptions::new())
        .unwrap();
    let out = g
        .invoke(&ctx("t"), &RunConfig::default(), FlowUpdate::default())
        .await
        .unwrap();
    // Updates merge in task order; `join` runs once although four branches lead to it.
    assert_eq!(
        out.state.visited,
        ["plan", "research:x", "research:y", "a", "b", "join"]
    );
    assert_eq!(out.state.count, 6);
    assert_eq!(
        out.state.route, "",
        "branch overlays do not leak into the shared state"
    );
    assert_eq!(out.steps, 3);
}

#[test]
fn validation_lists_every_problem() {
    let err = StateGraph::<Flow>::new()
        .add_node("a", visit("a"))
        .add_node("a", visit("a"))
        .add_node("orphan", visit("orphan"))
        .add_node("sink", visit("sink"))
        .add_node("spin", visit("spin"))
        .add_edge(START, "a")
        .add_edge("a", "missing")
        .add_conditional_edges("a", |_s: &Flow| "sink", ["sink", "spin"])
        .add_edge("orphan", END)
        .add_edge("spin", "spin")
        .compile(CompileOptions::new().interrupt_before(["nope"]))
        .unwrap_err();
    let Some(GraphError::Invalid(problems)) = GraphError::find(&err) else {
        panic!("{err}")
    };
    let text = problems.join("\n");
    for expected in [
        "node `a` is added twice",
        "edge `a` -> `missing`: no node `missing`",
        "node `orphan` is unreachable from START",
        "node `sink` has no outgoing edge",
        "node `spin` has no path to END",
        "breakpoint on unknown node `nope`",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    let err = StateGraph::<Flow>::new()
        .add_node("a", visit("a"))
        .add_edge("a", END)
        .compile(CompileOptions::new())
        .unwrap_err();
    assert!(
        err.to_string().contains("START has no outgoing edge"),
        "{err}"
    );
}

#[tokio::test]
async fn undeclared_route_is_an_error() {
    let g = StateGraph::<Flow>::new()
        .add_node("a", |_s: Arc<Flow>, _c: NodeContext| async move {
            Ok(NodeOutput::none().goto("b"))
        })
        .add_node("b", visit("b"))
        .add_edge(START, "a")
        .add_edge("a", END)
        .add_edge("b", END)
        .add_destinations("a", [END])
        .compile(CompileOptions::new());
    // `b` is unreachable through declared routes.
    assert!(g.is_err());
    let g = StateGraph::<Flow>::new()
        .add_node("a", |_s: Arc<Flow>, _c: NodeContext| async move {
            Ok(NodeOutput::none().goto("c"))
        })
        .add_node("b", visit("b"))
        .add_node("c", visit("c"))
        .add_edge(START, "a")
        .add_edge("b", END)
        .add_edge("c", END)
        .add_destinations("a", ["b"])
        .add_destinations("b", ["c"])
        .compile(CompileOptions::new())
        .unwrap();
    let err = g
        .invoke(&ctx("t"), &RunConfig::default(), FlowUpdate::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            GraphError::find(&err),
            Some(GraphError::UndeclaredRoute { .. })
        ),
        "{err}"
    );
}

fn approval_graph(
    cp: Arc<dyn Checkpointer>,
    runs: Arc<AtomicUsize>,
) -> wattos_agents::CompiledGraph<Flow> {
    StateGraph::<Flow>::new()
        .add_node("draft", visit("draft"))
        .add_node("send", move |s: Arc<Flow>, c: NodeContext| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let answer = c.interrupt(serde_json::json!({"send": s.route}))?;
                let text = match answer {
                    Command::Approve => format!("sent:{}", s.route),
                    Command::Edit(v) => format!("sent:{}", v.as_str().unwrap_or("?")),
                    Command::Reject(r) => format!("rejected:{r}"),
                };
                Ok(NodeOutput::update(
                    FlowUpdate::default().visited(vec![text]),
                ))
            }
        })
        .add_edge(START, "draft")
        .add_edge("draft", "send")
        .add_edge("send", END)
        .compile(CompileOptions::new().with_checkpointer(cp))
        .unwrap()
}

#[tokio::test]
async fn dynamic_interrupt_then_approve_edit_or_reject() {
    let cp: Arc<dyn Checkpointer> = Arc::new(InMemoryCheckpointer::new());
    for (i, (cmd, expected)) in [
        (Command::Approve, "sent:hello"),
        (Command::Edit(serde_json::json!("bye")), "sent:bye"),
        (Command::Reject("too rude".into()), "rejected:too rude"),
    ]
    .into_iter()
    .enumerate()
    {
        let runs = Arc::new(AtomicUsize::new(0));
        // A different graph instance resumes: nothing but the checkpointer is shared.
        let g = approval_graph(cp.clone(), runs.clone());
        let cfg = RunConfig::thread(ThreadId::new(format!("thread-{i}")).unwrap());
        let out = g
            .invoke(&ctx("t"), &cfg, FlowUpdate::default().route("hello".into()))
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Interrupted);
        assert_eq!(out.interrupts[0].kind, InterruptKind::Dynamic);
        assert_eq!(out.interrupts[0].value["send"], "hello");
        let snap = g
            .get_state(&ctx("t"), cfg.thread.as_ref().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(snap.next, ["send"]);
        assert_eq!(snap.interrupts.len(), 1);

        let g2 = approval_graph(cp.clone(), runs.clone());
        let out = g2.resume(&ctx("t"), &cfg, cmd).await.unwrap();
        assert_eq!(out.status, RunStatus::Completed);
        assert_eq!(out.state.visited, ["draft", expected]);
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "the interrupted node runs again once"
        );
    }
}

#[tokio::test]
async fn breakpoints_before_and_after_nodes() {
    let cp: Arc<dyn Checkpointer> = Arc::new(InMemoryCheckpointer::new());
    let g = StateGraph::<Flow>::new()
        .add_node("a", visit("a"))
        .add_node("b", visit("b"))
        .add_node("c", visit("c"))
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", "c")
        .add_edge("c", END)
        .compile(
            CompileOptions::new()
                .with_checkpointer(cp.clone())
                .interrupt_before(["b"])
                .interrupt_after(["b"]),
        )
        .unwrap();
    let cfg = RunConfig::thread(ThreadId::new("bp").unwrap());
    let out = g
        .invoke(&ctx("t"), &cfg, FlowUpdate::default())
        .await
        .unwrap();
    assert_eq!(out.interrupts[0].kind, InterruptKind::Before);
    assert_eq!(out.state.visited, ["a"]);
    // Edit the state at the breakpoint, then approve the after-breakpoint.
    let out = g
        .resume(
            &ctx("t"),
            &cfg,
            Command::Edit(serde_json::json!({"visited": ["human"]})),
        )
        .await
        .unwrap();
    assert_eq!(out.interrupts[0].kind, InterruptKind::After);
    assert_eq!(out.state.visited, ["a", "human", "b"]);
    let out = g.resume(&ctx("t"), &cfg, Command::Approve).await.unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(out.state.visited, ["a", "human", "b", "c"]);

    // Reject stops the run at the breakpoint.
    let cfg = RunConfig::thread(ThreadId::new("bp2").unwrap());
    g.invoke(&ctx("t"), &cfg, FlowUpdate::default())
        .await
        .unwrap();
    let out = g
        .resume(&ctx("t"), &cfg, Command::Reject("no".into()))
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Rejected("no".into()));
    assert_eq!(out.state.visited, ["a"]);
    let again = g.resume(&ctx("t"), &cfg, Command::Approve).await.unwrap();
    assert_eq!(
        again.status,
        RunStatus::Completed,
        "a rejected thread has nothing left to run"
    );
}

graph_state! {
    /// Inner state of the subgraph test.
    #[derive(Debug)]
    pub struct Inner / InnerUpdate {
        pub log: Vec<String> => Append,
    }
}

#[tokio::test]
async fn resume_inside_a_subgraph_continues_where_it_stopped() {
    let cp: Arc<dyn Checkpointer> = Arc::new(InMemoryCheckpointer::new());
    let first_runs = Arc::new(AtomicUsize::new(0));
    let fr = first_runs.clone();
    let inner = StateGraph::<Inner>::new()
        .add_node("prepare", move |_s: Arc<Inner>, _c: NodeContext| {
            let fr = fr.clone();
            async move {
                fr.fetch_add(1, Ordering::SeqCst);
                Ok(NodeOutput::update(
                    InnerUpdate::default().log(vec!["prepare".into()]),
                ))
            }
        })
        .add_node("approve", |_s: Arc<Inner>, c: NodeContext| async move {
            let answer = c.interrupt("ok to pay?")?;
            Ok(NodeOutput::update(
                InnerUpdate::default().log(vec![format!("{answer:?}")]),
            ))
        })
        .add_edge(START, "prepare")
        .add_edge("prepare", "approve")
        .add_edge("approve", END)
        .compile(CompileOptions::new())
        .unwrap();
    let g = StateGraph::<Flow>::new()
        .add_node("before", visit("before"))
        .add_node_impl(
            "payment",
            Subgraph::new(
                inner,
                |s: &Flow| Inner {
                    log: s.visited.clone(),
                },
                |_s: &Flow, inner: Inner| FlowUpdate::default().visited(vec![inner.log.join(">")]),
            ),
        )
        .add_edge(START, "before")
        .add_edge("before", "payment")
        .add_edge("payment", END)
        .compile(CompileOptions::new().with_checkpointer(cp.clone()))
        .unwrap();
    let cfg = RunConfig::thread(ThreadId::new("sub").unwrap());
    let out = g
        .invoke(&ctx("t"), &cfg, FlowUpdate::default())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Interrupted);
    assert_eq!(out.interrupts[0].node, "payment");
    assert_eq!(
        out.interrupts[0].value["interrupts"][0]["value"],
        "ok to pay?"
    );
    let out = g
        .resume(&ctx("t"), &cfg, Command::Reject("over budget".into()))
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(
        out.state.visited,
        ["before", "before>prepare>Reject(\"over budget\")"]
    );
    assert_eq!(
        first_runs.load(Ordering::SeqCst),
        1,
        "the subgraph resumed, it did not restart"
    );
}

#[tokio::test]
async fn checkpoints_are_tenant_scoped_and_history_forks() {
    let cp: Arc<dyn Checkpointer> = Arc::new(InMemoryCheckpointer::new());
    let g = StateGraph::<Flow>::new()
        .add_node("a", visit("a"))
        .add_node("b", visit("b"))
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", END)
        .compile(
            CompileOptions::new()
                .with_checkpointer(cp.clone())
                .with_full_snapshot_every(2),
        )
        .unwrap();
    let thread = ThreadId::new("shared-name").unwrap();
    let cfg = RunConfig::thread(thread.clone());
    g.invoke(
        &ctx("acme"),
        &cfg,
        FlowUpdate::default().route("acme-secret".into()),
    )
    .await
    .unwrap();
    assert!(
        g.get_state(&ctx("globex"), &thread)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        g.history(&ctx("globex"), &thread, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let err = g
        .resume(&ctx("globex"), &cfg, Command::Approve)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // The same thread name in another tenant is a different thread.
    g.invoke(&ctx("globex"), &cfg, FlowUpdate::default())
        .await
        .unwrap();
    assert_eq!(
        g.get_state(&ctx("acme"), &thread)
            .await
            .unwrap()
            .unwrap()
            .state
            .route,
        "acme-secret"
    );

    // History: input, after a, after b (newest first).
    let history = g.history(&ctx("acme"), &thread, 10).await.unwrap();
    assert_eq!(
        history.iter().map(|h| h.step).collect::<Vec<_>>(),
        [2, 1, 0]
    );
    assert_eq!(history[1].next, ["b"]);
    // Fork from after `a` with an edit and run on: the original branch stays in history.
    let fork = g
        .update_state(
            &ctx("acme"),
            &thread,
            Some(history[1].id),
            Some(FlowUpdate::default().route("forked".into())),
        )
        .await
        .unwrap();
    let out = g
        .resume(&ctx("acme"), &cfg, Command::Approve)
        .await
        .unwrap();
    assert_eq!(out.state.route, "forked");
    assert_eq!(out.state.visited, ["a", "b"]);
    let history = g.history(&ctx("acme"), &thread, 10).await.unwrap();
    assert_eq!(history.len(), 5);
    assert_eq!(history[0].parent, Some(fork));
    assert_eq!(
        g.state_at(&ctx("acme"), &thread, history[2].id)
            .await
            .unwrap()
            .visited,
        ["a", "b"]
    );
}

#[tokio::test]
async fn crash_recovery_does_not_rerun_finished_branches() {
    // One branch fails after its sibling finished; recovering re-runs only the failed branch.
    let cp: Arc<dyn Checkpointer> = Arc::new(InMemoryCheckpointer::new());
    let ok_runs = Arc::new(AtomicUsize::new(0));
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (o, f) = (ok_runs.clone(), fail.clone());
    let g = StateGraph::<Flow>::new()
        .add_node("ok", move |_s: Arc<Flow>, _c: NodeContext| {
            let o = o.clone();
            async move {
                o.fetch_add(1, Ordering::SeqCst);
                Ok(NodeOutput::update(
                    FlowUpdate::default().visited(vec!["ok".into()]),
                ))
            }
        })
        .add_node("flaky", move |_s: Arc<Flow>, _c: NodeContext| {
            let f = f.clone();
            async move {
                tokio::task::yield_now().await;
                if f.load(Ordering::SeqCst) {
                    return Err(wattos_core::Error::unavailable("flaky dependency"));
                }
                Ok(NodeOutput::update(
                    FlowUpdate::default().visited(vec!["flaky".into()]),
                ))
            }
        })
        .add_edge(START, "ok")
        .add_edge(START, "flaky")
        .add_edge("ok", END)
        .add_edge("flaky", END)
        .compile(CompileOptions::new().with_checkpointer(cp))
        .unwrap();
    let cfg = RunConfig::thread(ThreadId::new("flaky").unwrap());
    assert!(
        g.invoke(&ctx("t"), &cfg, FlowUpdate::default())
            .await
            .is_err()
    );
    fail.store(false, Ordering::SeqCst);
    let out = g.recover(&ctx("t"), &cfg).await.unwrap();
    assert_eq!(out.state.visited, ["ok", "flaky"]);
    assert_eq!(ok_runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn streams_values_updates_custom_events_and_done() {
    let g = StateGraph::<Flow>::new()
        .add_node("a", |_s: Arc<Flow>, c: NodeContext| async move {
            c.emit_custom(serde_json::json!({"progress": 50}));
            Ok(NodeOutput::update(FlowUpdate::default().count(2)))
        })
        .add_edge(START, "a")
        .add_edge("a", END)
        .compile(CompileOptions::new())
        .unwrap();
    let events: Vec<_> = g
        .stream(&ctx("t"), &RunConfig::default(), FlowUpdate::default())
        .collect()
        .await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e.as_ref().unwrap() {
            Event::Node { .. } => "node",
            Event::Update { .. } => "update",
            Event::Values { .. } => "values",
            Event::Checkpoint { .. } => "checkpoint",
            Event::Done(_) => "done",
        })
        .collect();
    assert_eq!(kinds, ["node", "update", "values", "done"]);
    let Ok(Event::Done(out)) = events.last().unwrap() else {
        panic!()
    };
    assert_eq!(out.state.count, 2);
}

#[tokio::test]
async fn deadline_stops_a_slow_step() {
    let g = StateGraph::<Flow>::new()
        .add_node("slow", |_s: Arc<Flow>, _c: NodeContext| async move {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            Ok(NodeOutput::none())
        })
        .add_edge(START, "slow")
        .add_edge("slow", END)
        .compile(CompileOptions::new())
        .unwrap();
    let c = ctx("t").with_timeout(std::time::Duration::from_millis(20));
    let err = g
        .invoke(&c, &RunConfig::default(), FlowUpdate::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
}
