//! Crash tests: a child process runs a graph and is SIGKILLed in the middle of an 8-way fan-out (seven
//! branches finished and saved, one blocked); a new process resumes the thread. The final state must
//! equal an uninterrupted run's, every finished branch's write must have survived the kill, and no task
//! that had completed may run again (every node records its completion in a Postgres table).
//!
//! Four scenarios: the Postgres and the SQLite checkpointer, each with `Durability::Sync` and
//! `Durability::Async` (group-committed pending writes and checkpoints).
//!
//! `harness = false`: this binary is parent and children (re-executed with `WATTOS_CRASH_ROLE`).
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;
use wattos_agents::checkpoint::{InMemoryCheckpointer, PostgresCheckpointer, SqliteCheckpointer};
use wattos_agents::{
    Append, CompileOptions, CompiledGraph, Durability, END, NodeContext, NodeOutput, RunConfig,
    RunStatus, START, StateGraph, Sum, graph_state,
};
use wattos_core::checkpoint::{Checkpointer, ThreadId, WriteKind};
use wattos_core::{RequestContext, TenantId};

const SCHEMA: &str = "wattos_agents_crash";
const LOOP_STEPS: u64 = 12;
/// Branches that finish before the kill (the eighth blocks).
const FAST: usize = 7;

graph_state! {
    #[derive(Debug, PartialEq)]
    pub struct Job / JobUpdate {
        pub n: u64 => Sum,
        pub done: Vec<String> => Append,
    }
}

fn pg_url() -> String {
    std::env::var("PG_TEST_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn ctx() -> RequestContext {
    RequestContext::system(TenantId::new("crash-tenant").expect("tenant"))
}

/// Where side effects go: Postgres in the real run, nowhere for the reference run.
#[derive(Clone)]
struct Effects {
    pool: Option<PgPool>,
    thread: String,
    /// Block the slow branch (first process only) after writing this marker file.
    block_marker: Option<PathBuf>,
}

impl Effects {
    async fn record(&self, task: &str, node: &str) -> wattos_core::Result<()> {
        if let Some(pool) = &self.pool {
            sqlx::query(&format!(
                "INSERT INTO {SCHEMA}.effects (thread, task, node) VALUES ($1, $2, $3)"
            ))
            .bind(&self.thread)
            .bind(task)
            .bind(node)
            .execute(pool)
            .await
            .map_err(|e| wattos_core::Error::unavailable(e.to_string()))?;
        }
        Ok(())
    }
}

fn step_node(
    effects: Effects,
    name: &'static str,
) -> impl Fn(
    Arc<Job>,
    NodeContext,
) -> futures::future::BoxFuture<'static, wattos_core::Result<NodeOutput<Job>>>
+ Send
+ Sync
+ 'static {
    move |_s, c| {
        let effects = effects.clone();
        Box::pin(async move {
            effects.record(c.task_id(), name).await?;
            Ok(NodeOutput::update(
                JobUpdate::default()
                    .n(1)
                    .done(vec![format!("{name}@{}", c.task_id())]),
            ))
        })
    }
}

/// Output writes saved against the thread's latest checkpoint, read through the checkpointer.
async fn saved_outputs(cp: &dyn Checkpointer, thread: &ThreadId) -> wattos_core::Result<usize> {
    let Some(latest) = cp.get(&ctx(), thread, None).await? else {
        return Ok(0);
    };
    Ok(cp
        .get_writes(&ctx(), thread, latest.id)
        .await?
        .iter()
        .filter(|w| w.kind == WriteKind::Output)
        .count())
}

const BRANCHES: [&str; FAST] = ["b0", "b1", "b2", "b3", "b4", "b5", "b6"];

fn graph(
    effects: Effects,
    cp: Arc<dyn Checkpointer>,
    durability: Durability,
) -> CompiledGraph<Job> {
    let slow_effects = effects.clone();
    let slow_cp = cp.clone();
    let mut g = StateGraph::<Job>::new()
        .add_node("work", step_node(effects.clone(), "work"))
        .add_node("slow", move |_s: Arc<Job>, c: NodeContext| {
            let effects = slow_effects.clone();
            let cp = slow_cp.clone();
            async move {
                if let (Some(marker), Some(thread)) = (&effects.block_marker, c.thread()) {
                    // Wait until every sibling's output is saved, then signal the parent and hang.
                    while saved_outputs(cp.as_ref(), thread).await? < FAST {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    std::fs::write(marker, b"blocked")
                        .map_err(|e| wattos_core::Error::internal(e.to_string()))?;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                effects.record(c.task_id(), "slow").await?;
                Ok(NodeOutput::update(
                    JobUpdate::default()
                        .n(100)
                        .done(vec![format!("slow@{}", c.task_id())]),
                ))
            }
        })
        .add_node("finish", step_node(effects.clone(), "finish"))
        .add_edge(START, "work")
        .add_conditional_edges(
            "work",
            |s: &Job| {
                if s.n < LOOP_STEPS {
                    vec!["work"]
                } else {
                    let mut all = BRANCHES.to_vec();
                    all.push("slow");
                    all
                }
            },
            BRANCHES.iter().copied().chain(["work", "slow"]),
        )
        .add_edge("slow", "finish")
        .add_edge("finish", END);
    for b in BRANCHES {
        g = g
            .add_node(b, step_node(effects.clone(), b))
            .add_edge(b, "finish");
    }
    g.compile(
        CompileOptions::new()
            .with_checkpointer(cp)
            .with_step_limit(100)
            .with_full_snapshot_every(5)
            .with_durability(durability),
    )
    .expect("graph")
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    store: &'static str,
    durability: Durability,
}

impl Scenario {
    fn from_env() -> Self {
        let store = match std::env::var("WATTOS_CRASH_STORE").as_deref() {
            Ok("sqlite") => "sqlite",
            _ => "postgres",
        };
        let durability = match std::env::var("WATTOS_CRASH_DURABILITY").as_deref() {
            Ok("async") => Durability::Async,
            _ => Durability::Sync,
        };
        Self { store, durability }
    }

    fn durability_name(self) -> &'static str {
        match self.durability {
            Durability::Async => "async",
            _ => "sync",
        }
    }

    async fn checkpointer(self, dir: &Path) -> Arc<dyn Checkpointer> {
        match self.store {
            "sqlite" => Arc::new(
                SqliteCheckpointer::open(dir.join("checkpoints.db"))
                    .await
                    .expect("sqlite"),
            ),
            _ => Arc::new(
                PostgresCheckpointer::connect_with_schema(&pg_url(), SCHEMA)
                    .await
                    .expect("pg"),
            ),
        }
    }
}

fn write_state(dir: &Path, name: &str, state: &Job) {
    std::fs::write(dir.join(name), serde_json::to_vec(state).expect("json")).expect("write state");
}

async fn child(role: &str) {
    let dir = PathBuf::from(std::env::var("WATTOS_CRASH_DIR").expect("dir"));
    let thread = std::env::var("WATTOS_CRASH_THREAD").expect("thread");
    let scenario = Scenario::from_env();
    let cp = scenario.checkpointer(&dir).await;
    let effects = Effects {
        pool: Some(PgPool::connect(&pg_url()).await.expect("pg")),
        thread: thread.clone(),
        block_marker: (role == "run").then(|| dir.join("blocked")),
    };
    let g = graph(effects, cp, scenario.durability);
    let cfg = RunConfig::thread(ThreadId::new(&thread).expect("thread id"));
    let out = if role == "run" {
        g.invoke(&ctx(), &cfg, JobUpdate::default()).await
    } else {
        g.recover(&ctx(), &cfg).await
    }
    .expect("run");
    assert_eq!(out.status, RunStatus::Completed);
    write_state(&dir, "final.json", &out.state);
}

async fn scenario(pool: &PgPool, scenario: Scenario) {
    let thread = format!(
        "crash-{}-{}-{}",
        scenario.store,
        scenario.durability_name(),
        uuid::Uuid::now_v7()
    );
    let dir = std::env::temp_dir().join(&thread);
    std::fs::create_dir_all(&dir).expect("dir");
    let exe = std::env::current_exe().expect("exe");
    let spawn = |role: &str| {
        Process::new(&exe)
            .env("WATTOS_CRASH_ROLE", role)
            .env("WATTOS_CRASH_DIR", &dir)
            .env("WATTOS_CRASH_THREAD", &thread)
            .env("WATTOS_CRASH_STORE", scenario.store)
            .env("WATTOS_CRASH_DURABILITY", scenario.durability_name())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn child")
    };

    let mut first = spawn("run");
    let started = Instant::now();
    while !dir.join("blocked").exists() {
        if let Some(status) = first.try_wait().expect("wait") {
            panic!("{scenario:?}: first child exited early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{scenario:?}: child never reached the blocking node"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    first.wait().expect("reap");

    let effects = |pool: PgPool, thread: String| async move {
        let rows: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT task, node FROM {SCHEMA}.effects WHERE thread = $1 ORDER BY task"
        ))
        .bind(thread)
        .fetch_all(&pool)
        .await
        .expect("effects");
        rows
    };
    let before = effects(pool.clone(), thread.clone()).await;
    assert_eq!(
        before.len(),
        LOOP_STEPS as usize + FAST,
        "{scenario:?}: 12 loop steps and 7 branches ran before the kill: {before:?}"
    );
    assert!(!before.iter().any(|(_, n)| n == "slow" || n == "finish"));
    // No finished branch's write was lost with the process.
    {
        let cp = scenario.checkpointer(&dir).await;
        let t = ThreadId::new(&thread).expect("thread id");
        assert_eq!(
            saved_outputs(cp.as_ref(), &t).await.expect("writes"),
            FAST,
            "{scenario:?}: the finished branches' writes survive the kill"
        );
    }

    let status = spawn("resume").wait().expect("second child");
    assert!(
        status.success(),
        "{scenario:?}: resuming child failed: {status}"
    );
    let resumed: Job =
        serde_json::from_slice(&std::fs::read(dir.join("final.json")).expect("final state"))
            .expect("json");

    // Reference: the same graph, uninterrupted, in memory.
    let reference = graph(
        Effects {
            pool: None,
            thread: thread.clone(),
            block_marker: None,
        },
        Arc::new(InMemoryCheckpointer::new()),
        scenario.durability,
    )
    .invoke(
        &ctx(),
        &RunConfig::thread(ThreadId::new("reference").expect("id")),
        JobUpdate::default(),
    )
    .await
    .expect("reference run");
    assert_eq!(resumed, reference.state, "{scenario:?}");

    let after = effects(pool.clone(), thread.clone()).await;
    let mut tasks: Vec<&String> = after.iter().map(|(t, _)| t).collect();
    let total = tasks.len();
    tasks.dedup();
    assert_eq!(
        tasks.len(),
        total,
        "{scenario:?}: a completed task ran twice: {after:?}"
    );
    assert_eq!(
        after.len(),
        LOOP_STEPS as usize + FAST + 2,
        "{scenario:?}: {after:?}"
    );
    sqlx::query(&format!("DELETE FROM {SCHEMA}.effects WHERE thread = $1"))
        .bind(&thread)
        .execute(pool)
        .await
        .ok();
    std::fs::remove_dir_all(&dir).ok();
    eprintln!(
        "crash_resume: {} {}: killed mid-fan-out, resumed in a new process: ok",
        scenario.store,
        scenario.durability_name()
    );
}

async fn parent() {
    let pool = PgPool::connect(&pg_url())
        .await
        .expect("postgres at 127.0.0.1:5432 is required");
    // Migrate the checkpointer schema, then the side-effect table.
    PostgresCheckpointer::connect_with_schema(&pg_url(), SCHEMA)
        .await
        .expect("migrate");
    sqlx::raw_sql(&format!(
        "CREATE TABLE IF NOT EXISTS {SCHEMA}.effects (thread TEXT NOT NULL, task TEXT NOT NULL, node TEXT NOT NULL)"
    ))
    .execute(&pool)
    .await
    .expect("effects table");
    for store in ["postgres", "sqlite"] {
        for durability in [Durability::Sync, Durability::Async] {
            scenario(&pool, Scenario { store, durability }).await;
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match std::env::var("WATTOS_CRASH_ROLE") {
        Ok(role) => rt.block_on(child(&role)),
        Err(_) => {
            rt.block_on(parent());
            eprintln!("crash_resume: 4 passed, 0 failed");
        }
    }
}
