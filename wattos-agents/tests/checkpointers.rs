//! The conformance suite and a persisted graph run on every checkpointer. Postgres tests use the
//! machine's PostgreSQL (`PG_TEST_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;

use wattos_agents::checkpoint::{
    InMemoryCheckpointer, PostgresCheckpointer, SqliteCheckpointer, conformance,
};
use wattos_agents::{
    Append, Command, CompileOptions, END, NodeContext, NodeOutput, RunConfig, RunStatus, START,
    StateGraph, Sum, graph_state,
};
use wattos_core::checkpoint::{Checkpointer, ThreadId};
use wattos_core::{RequestContext, TenantId};

pub fn pg_url() -> String {
    std::env::var("PG_TEST_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::now_v7())
}

graph_state! {
    #[derive(Debug)]
    pub struct Counter / CounterUpdate {
        pub n: u64 => Sum,
        pub log: Vec<String> => Append,
    }
}

/// Runs a 30-step cycle that interrupts at step 20, resumes with a fresh graph, and checks the final
/// state and the history (deltas included: a full snapshot every 4 checkpoints).
async fn persisted_run(cp: Arc<dyn Checkpointer>) {
    let build = |cp: Arc<dyn Checkpointer>| {
        StateGraph::<Counter>::new()
            .add_node("inc", |s: Arc<Counter>, c: NodeContext| async move {
                if s.n == 20 {
                    c.interrupt("halfway")?;
                }
                Ok(NodeOutput::update(
                    CounterUpdate::default().n(1).log(vec![format!("{}", s.n)]),
                ))
            })
            .add_edge(START, "inc")
            .add_conditional_edges(
                "inc",
                |s: &Counter| if s.n < 30 { "inc" } else { END },
                ["inc", END],
            )
            .compile(
                CompileOptions::new()
                    .with_checkpointer(cp)
                    .with_full_snapshot_every(4),
            )
            .unwrap()
    };
    let ctx = RequestContext::system(TenantId::new("tenant-x").unwrap());
    let thread = ThreadId::new(unique("run")).unwrap();
    let cfg = RunConfig::thread(thread.clone());
    let out = build(cp.clone())
        .invoke(&ctx, &cfg, CounterUpdate::default())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Interrupted);
    assert_eq!(out.state.n, 20);
    let out = build(cp.clone())
        .resume(&ctx, &cfg, Command::Approve)
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(out.state.n, 30);
    assert_eq!(out.state.log.len(), 30);
    let g = build(cp.clone());
    let history = g.history(&ctx, &thread, 100).await.unwrap();
    assert_eq!(history.len(), 31);
    let at_10 = history.iter().find(|h| h.step == 10).unwrap();
    assert_eq!(g.state_at(&ctx, &thread, at_10.id).await.unwrap().n, 10);
    let other = RequestContext::system(TenantId::new("tenant-y").unwrap());
    assert!(g.get_state(&other, &thread).await.unwrap().is_none());
    cp.delete_thread(&ctx, &thread).await.unwrap();
}

#[tokio::test]
async fn in_memory_conformance_and_run() {
    let cp = Arc::new(InMemoryCheckpointer::new());
    conformance::check(&*cp, "conf").await.unwrap();
    persisted_run(cp).await;
}

#[tokio::test]
async fn sqlite_conformance_and_run() {
    let dir = std::env::temp_dir().join(unique("wattos-agents-sqlite"));
    std::fs::create_dir_all(&dir).unwrap();
    let cp = Arc::new(SqliteCheckpointer::open(dir.join("cp.db")).await.unwrap());
    conformance::check(&*cp, &unique("conf")).await.unwrap();
    persisted_run(cp.clone()).await;
    // Reopening the file sees the same data.
    let ctx = RequestContext::system(TenantId::new("t").unwrap());
    let t = ThreadId::new("reopen").unwrap();
    let mut c = wattos_core::checkpoint::Checkpoint::new(
        t.clone(),
        None,
        0,
        wattos_core::checkpoint::StateBlob::Full(b"{}".to_vec()),
    );
    c.metadata.insert("x".into(), 1.into());
    cp.put(&ctx, c.clone()).await.unwrap();
    drop(cp);
    let cp = SqliteCheckpointer::open(dir.join("cp.db")).await.unwrap();
    assert_eq!(cp.get(&ctx, &t, None).await.unwrap(), Some(c));
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn postgres_conformance_and_run() {
    let cp = Arc::new(
        PostgresCheckpointer::connect_with_schema(&pg_url(), "wattos_agents_test")
            .await
            .unwrap(),
    );
    conformance::check(&*cp, &unique("conf")).await.unwrap();
    persisted_run(cp).await;
    // Migrating again is a no-op.
    PostgresCheckpointer::connect_with_schema(&pg_url(), "wattos_agents_test")
        .await
        .unwrap();
    assert!(
        PostgresCheckpointer::connect_with_schema(&pg_url(), "Bad;Name")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn async_durability_stores_every_checkpoint_in_order() {
    for cp in [
        Arc::new(
            PostgresCheckpointer::connect_with(&pg_url(), "wattos_agents_test", false)
                .await
                .unwrap(),
        ) as Arc<dyn Checkpointer>,
        Arc::new(InMemoryCheckpointer::new()),
    ] {
        let g = StateGraph::<Counter>::new()
            .add_node("inc", |_s: Arc<Counter>, _c: NodeContext| async move {
                Ok(NodeOutput::update(CounterUpdate::default().n(1)))
            })
            .add_edge(START, "inc")
            .add_conditional_edges(
                "inc",
                |s: &Counter| if s.n < 50 { "inc" } else { END },
                ["inc", END],
            )
            .compile(
                CompileOptions::new()
                    .with_checkpointer(cp.clone())
                    .with_durability(wattos_agents::Durability::Async),
            )
            .unwrap();
        let ctx = RequestContext::system(TenantId::new("tenant-x").unwrap());
        let thread = ThreadId::new(unique("async")).unwrap();
        let out = g
            .invoke(
                &ctx,
                &RunConfig::thread(thread.clone()),
                CounterUpdate::default(),
            )
            .await
            .unwrap();
        assert_eq!(out.state.n, 50);
        // Everything is stored when invoke returns, in step order.
        let history = g.history(&ctx, &thread, 100).await.unwrap();
        assert_eq!(history.len(), 51);
        assert!(
            history
                .windows(2)
                .all(|w| w[0].step == w[1].step + 1 && w[0].parent == Some(w[1].id))
        );
        assert_eq!(
            g.get_state(&ctx, &thread).await.unwrap().unwrap().state.n,
            50
        );
        cp.delete_thread(&ctx, &thread).await.unwrap();
    }
}

/// A batch either lands whole or not at all: a duplicate checkpoint id in it (a unique-key violation)
/// leaves neither its checkpoints nor its pending writes behind.
async fn put_step_is_atomic(cp: &dyn Checkpointer) {
    use wattos_core::checkpoint::{
        Checkpoint, CheckpointWrites, PendingWrite, StateBlob, StepBatch, WriteKind,
    };
    let ctx = RequestContext::system(TenantId::new("tenant-atomic").unwrap());
    let t = ThreadId::new(unique("atomic")).unwrap();
    let first = Checkpoint::new(t.clone(), None, 0, StateBlob::Full(b"{}".to_vec()));
    cp.put(&ctx, first.clone()).await.unwrap();
    let next = Checkpoint::new(
        t.clone(),
        Some(first.id),
        1,
        StateBlob::Full(b"{}".to_vec()),
    );
    let batch = StepBatch {
        writes: vec![CheckpointWrites {
            thread: t.clone(),
            checkpoint: first.id,
            writes: vec![PendingWrite {
                task_id: "0:0".into(),
                kind: WriteKind::Output,
                payload: b"{}".to_vec(),
            }],
        }],
        // `first` again: its id is taken.
        checkpoints: vec![next.clone(), first.clone()],
    };
    assert!(cp.put_step(&ctx, batch).await.is_err());
    assert_eq!(cp.list(&ctx, &t, 10).await.unwrap(), vec![first.clone()]);
    assert!(cp.get_writes(&ctx, &t, first.id).await.unwrap().is_empty());
    // The store is usable after the failed batch.
    cp.put(&ctx, next.clone()).await.unwrap();
    assert_eq!(cp.get(&ctx, &t, None).await.unwrap(), Some(next));
    cp.delete_thread(&ctx, &t).await.unwrap();
}

#[tokio::test]
async fn sqlite_put_step_is_atomic() {
    use wattos_agents::checkpoint::{SqliteOptions, SqliteSynchronous};
    let dir = std::env::temp_dir().join(unique("wattos-agents-sqlite-atomic"));
    std::fs::create_dir_all(&dir).unwrap();
    let cp = SqliteCheckpointer::open_with(
        dir.join("cp.db"),
        SqliteOptions::default().synchronous(SqliteSynchronous::Normal),
    )
    .await
    .unwrap();
    assert_eq!(cp.synchronous(), SqliteSynchronous::Normal);
    put_step_is_atomic(&cp).await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn postgres_put_step_is_atomic() {
    let cp = PostgresCheckpointer::connect_with_schema(&pg_url(), "wattos_agents_test")
        .await
        .unwrap();
    put_step_is_atomic(&cp).await;
}

/// A fan-out with both durabilities on every store: each branch's output is stored as a pending write
/// of the step's checkpoint (8 per fan-out), and the checkpoints arrive complete and in order.
#[tokio::test]
async fn fan_out_writes_are_stored_with_every_durability() {
    let dir = std::env::temp_dir().join(unique("wattos-agents-fanout"));
    std::fs::create_dir_all(&dir).unwrap();
    let stores: Vec<Arc<dyn Checkpointer>> = vec![
        Arc::new(InMemoryCheckpointer::new()),
        Arc::new(SqliteCheckpointer::open(dir.join("cp.db")).await.unwrap()),
        Arc::new(
            PostgresCheckpointer::connect_with_schema(&pg_url(), "wattos_agents_test")
                .await
                .unwrap(),
        ),
    ];
    for cp in stores {
        for durability in [
            wattos_agents::Durability::Sync,
            wattos_agents::Durability::Async,
        ] {
            let mut g = StateGraph::<Counter>::new()
                .add_node("fan", |_s: Arc<Counter>, _c: NodeContext| async move {
                    Ok(NodeOutput::none())
                })
                .add_node("join", |_s: Arc<Counter>, _c: NodeContext| async move {
                    Ok(NodeOutput::update(
                        CounterUpdate::default().log(vec!["j".into()]),
                    ))
                })
                .add_edge(START, "fan")
                .add_conditional_edges(
                    "join",
                    |s: &Counter| if s.n < 8 * 5 { "fan" } else { END },
                    ["fan", END],
                );
            for i in 0..8 {
                let name = format!("w{i}");
                g = g
                    .add_node(
                        name.clone(),
                        |_s: Arc<Counter>, _c: NodeContext| async move {
                            Ok(NodeOutput::update(CounterUpdate::default().n(1)))
                        },
                    )
                    .add_edge("fan", name.clone())
                    .add_edge(name, "join");
            }
            let g = g
                .compile(
                    CompileOptions::new()
                        .with_checkpointer(cp.clone())
                        .with_durability(durability),
                )
                .unwrap();
            let ctx = RequestContext::system(TenantId::new("tenant-x").unwrap());
            let thread = ThreadId::new(unique("fanout")).unwrap();
            let out = g
                .invoke(
                    &ctx,
                    &RunConfig::thread(thread.clone()),
                    CounterUpdate::default(),
                )
                .await
                .unwrap();
            assert_eq!(out.state.n, 40);
            let all = cp.list(&ctx, &thread, 1000).await.unwrap();
            assert_eq!(all.len(), 1 + 3 * 5, "{durability:?}");
            assert!(
                all.windows(2)
                    .all(|w| w[0].step == w[1].step + 1 && w[0].parent == Some(w[1].id))
            );
            let mut writes = 0;
            for c in &all {
                let w = cp.get_writes(&ctx, &thread, c.id).await.unwrap();
                // Only the checkpoints that scheduled the 8 branches have writes, one per branch.
                assert!(w.is_empty() || w.len() == 8, "{durability:?}: {}", w.len());
                writes += w.len();
            }
            assert_eq!(writes, 8 * 5, "{durability:?}");
            cp.delete_thread(&ctx, &thread).await.unwrap();
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
