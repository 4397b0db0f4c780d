//! Per-step overhead of the executor: a 1,000-step cycle of a node that only bumps a counter, without a
//! checkpointer and with the in-memory, SQLite and Postgres checkpointers (one checkpoint per step).
//!
//! `cargo bench -p wattos-agents --bench graph_steps`; time per iteration / 1,000 = per-step overhead.
//! Postgres: `PG_TEST_URL` (default `postgres://postgres@127.0.0.1:5432/test`); skipped with a
//! message when unreachable.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wattos_agents::checkpoint::{
    InMemoryCheckpointer, PostgresCheckpointer, SqliteCheckpointer, SqliteOptions,
    SqliteSynchronous,
};
use wattos_agents::{
    CompileOptions, CompiledGraph, Durability, END, NodeContext, NodeOutput, RunConfig, START,
    StateGraph, Sum, graph_state,
};
use wattos_core::checkpoint::{Checkpointer, ThreadId};
use wattos_core::{RequestContext, TenantId};

const STEPS: u64 = 1_000;

graph_state! {
    pub struct Tick / TickUpdate { pub n: u64 => Sum }
}

fn graph(cp: Option<Arc<dyn Checkpointer>>) -> CompiledGraph<Tick> {
    graph_with(cp, Durability::Sync)
}

fn graph_with(cp: Option<Arc<dyn Checkpointer>>, durability: Durability) -> CompiledGraph<Tick> {
    let mut opts = CompileOptions::new()
        .with_step_limit(STEPS as u32 + 1)
        .with_durability(durability);
    if let Some(cp) = cp {
        opts = opts.with_checkpointer(cp);
    }
    StateGraph::<Tick>::new()
        .add_node("tick", |_s: Arc<Tick>, _c: NodeContext| async move {
            Ok(NodeOutput::update(TickUpdate { n: Some(1) }))
        })
        .add_edge(START, "tick")
        .add_conditional_edges(
            "tick",
            |s: &Tick| if s.n < STEPS { "tick" } else { END },
            ["tick", END],
        )
        .compile(opts)
        .expect("graph")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ctx = RequestContext::system(TenantId::new("bench").expect("tenant"));
    let counter = AtomicU64::new(0);
    let next_thread = || {
        RunConfig::thread(
            ThreadId::new(format!(
                "bench-{}-{}",
                std::process::id(),
                counter.fetch_add(1, Ordering::Relaxed)
            ))
            .expect("id"),
        )
    };

    let mut group = c.benchmark_group("graph_1000_steps");
    group.throughput(Throughput::Elements(STEPS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));

    let plain = graph(None);
    group.bench_function("no_checkpointer", |b| {
        b.to_async(&rt).iter(|| async {
            let out = plain
                .invoke(&ctx, &RunConfig::default(), TickUpdate::default())
                .await
                .expect("run");
            assert_eq!(out.state.n, STEPS);
        })
    });

    let memory = graph(Some(Arc::new(InMemoryCheckpointer::new())));
    group.bench_function("in_memory", |b| {
        b.to_async(&rt).iter(|| async {
            memory
                .invoke(&ctx, &next_thread(), TickUpdate::default())
                .await
                .expect("run");
        })
    });

    let dir = std::env::temp_dir().join(format!("wattos-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let sqlite = rt
        .block_on(SqliteCheckpointer::open_with(
            dir.join("bench.db"),
            // NORMAL, as before issue #25 made FULL the default (see `benches/durability.rs` for both).
            SqliteOptions::default().synchronous(SqliteSynchronous::Normal),
        ))
        .expect("sqlite");
    let sqlite: Arc<dyn Checkpointer> = Arc::new(sqlite);
    for (name, durability) in [
        ("sqlite", Durability::Sync),
        ("sqlite_async", Durability::Async),
    ] {
        let g = graph_with(Some(sqlite.clone()), durability);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                g.invoke(&ctx, &next_thread(), TickUpdate::default())
                    .await
                    .expect("run");
            })
        });
    }

    let url = std::env::var("PG_TEST_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let only = std::env::var("WATTOS_BENCH_PG").unwrap_or_default();
    for (name, synchronous_commit, durability) in [
        ("postgres", true, Durability::Sync),
        ("postgres_async", true, Durability::Async),
        ("postgres_nosync_commit", false, Durability::Sync),
        ("postgres_nosync_commit_async", false, Durability::Async),
    ] {
        if !only.is_empty() && !only.split(',').any(|o| o == name) {
            continue;
        }
        match rt.block_on(PostgresCheckpointer::connect_with(
            &url,
            "wattos_agents_bench",
            synchronous_commit,
        )) {
            Ok(pg) => {
                let g = graph_with(Some(Arc::new(pg)), durability);
                group.bench_function(name, |b| {
                    b.to_async(&rt).iter(|| async {
                        g.invoke(&ctx, &next_thread(), TickUpdate::default())
                            .await
                            .expect("run");
                    })
                });
            }
            Err(e) => eprintln!("graph_steps: Postgres benchmark skipped: {e}"),
        }
    }
    group.finish();
    std::fs::remove_dir_all(&dir).ok();
}

criterion_group!(benches, bench);
criterion_main!(benches);
