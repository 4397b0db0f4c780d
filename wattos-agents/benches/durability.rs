//! What durable supersteps cost, per store and durability mode (issue #25).
//!
//! Cases, each 1 warm-up + 5 timed runs on a fresh thread, median reported:
//! * `loop`: a 1,000-superstep `{count, log}` loop (a conditional edge back), µs per step;
//! * `fanout`: an 8-way fan-out + join repeated 100 times (3 supersteps per iteration: fan, the 8
//!   branches in parallel, join), µs per iteration;
//!
//! for no checkpointer, in memory, SQLite (`synchronous=NORMAL` and `FULL`) and Postgres, each with
//! `Durability::Async` and `Durability::Sync`. After the first timed run of each case the stored
//! checkpoints (1 input + 1 per step) and pending writes (8 per fan-out) are counted and checked.
//!
//! The same run measures the stores' own commit latency with the same driver (sqlx): a pgbench-style
//! single-row `INSERT` in autocommit, one at a time, on Postgres and on each SQLite file. With
//! `LANGGRAPH_PYTHON` set to a Python that has langgraph (+ langgraph-checkpoint-sqlite/-postgres), the
//! same cases run in LangGraph from `benches/langgraph_durability.py`, in the same run, side by side.
//!
//! `cargo bench -p wattos-agents --bench durability`
//!
//! Environment: `PG_TEST_URL` (default `postgres://postgres@127.0.0.1:5432/test`; Postgres rows are
//! skipped with a message when unreachable), `WATTOS_BENCH_RUNS` (timed runs, default 5),
//! `WATTOS_BENCH_ONLY` (comma-separated store names: none, memory, sqlite-normal, sqlite-full,
//! postgres), `LANGGRAPH_PYTHON`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use wattos_agents::checkpoint::{
    InMemoryCheckpointer, PostgresCheckpointer, SqliteCheckpointer, SqliteOptions,
    SqliteSynchronous,
};
use wattos_agents::{
    Append, CompileOptions, CompiledGraph, Durability, END, NodeContext, NodeOutput, RunConfig,
    START, StateGraph, Sum, graph_state,
};
use wattos_core::checkpoint::{Checkpointer, ThreadId};
use wattos_core::{RequestContext, TenantId};

const STEPS: u64 = 1_000;
const WIDTH: u64 = 8;
const ITERATIONS: u64 = 100;

graph_state! {
    pub struct Cl / ClUpdate {
        pub count: u64 => Sum,
        pub log: Vec<String> => Append,
    }
}

fn options(
    cp: Option<Arc<dyn Checkpointer>>,
    durability: Durability,
    limit: u64,
) -> CompileOptions {
    let mut opts = CompileOptions::new()
        .with_step_limit(limit as u32 + 1)
        .with_durability(durability);
    if let Some(cp) = cp {
        opts = opts.with_checkpointer(cp);
    }
    opts
}

fn loop_graph(cp: Option<Arc<dyn Checkpointer>>, durability: Durability) -> CompiledGraph<Cl> {
    StateGraph::<Cl>::new()
        .add_node("step", |s: Arc<Cl>, _c: NodeContext| async move {
            Ok(NodeOutput::update(
                ClUpdate::default()
                    .count(1)
                    .log(vec![format!("s{}", s.count)]),
            ))
        })
        .add_edge(START, "step")
        .add_conditional_edges(
            "step",
            |s: &Cl| if s.count < STEPS { "step" } else { END },
            ["step", END],
        )
        .compile(options(cp, durability, STEPS))
        .expect("loop graph")
}

fn fanout_graph(cp: Option<Arc<dyn Checkpointer>>, durability: Durability) -> CompiledGraph<Cl> {
    let mut g = StateGraph::<Cl>::new()
        .add_node("fan", |_s: Arc<Cl>, _c: NodeContext| async move {
            Ok(NodeOutput::none())
        })
        .add_node("join", |_s: Arc<Cl>, _c: NodeContext| async move {
            Ok(NodeOutput::update(
                ClUpdate::default().log(vec!["j".to_owned()]),
            ))
        })
        .add_edge(START, "fan")
        .add_conditional_edges(
            "join",
            |s: &Cl| {
                if s.count < WIDTH * ITERATIONS {
                    "fan"
                } else {
                    END
                }
            },
            ["fan", END],
        );
    for i in 0..WIDTH {
        let name = format!("w{i}");
        g = g
            .add_node(name.clone(), |_s: Arc<Cl>, _c: NodeContext| async move {
                Ok(NodeOutput::update(ClUpdate::default().count(1)))
            })
            .add_edge("fan", name.clone())
            .add_edge(name, "join");
    }
    g.compile(options(cp, durability, 3 * ITERATIONS))
        .expect("fan-out graph")
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Loop,
    Fanout,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Self::Loop => "loop",
            Self::Fanout => "fanout",
        }
    }
    fn units(self) -> u64 {
        match self {
            Self::Loop => STEPS,
            Self::Fanout => ITERATIONS,
        }
    }
    fn steps(self) -> u64 {
        match self {
            Self::Loop => STEPS,
            Self::Fanout => 3 * ITERATIONS,
        }
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

static THREADS: AtomicU64 = AtomicU64::new(0);

fn fresh_thread() -> ThreadId {
    ThreadId::new(format!(
        "bench-{}-{}",
        std::process::id(),
        THREADS.fetch_add(1, Ordering::Relaxed)
    ))
    .expect("thread id")
}

/// Runs `case` 1 + `runs` times; returns the median µs per unit and checks what was stored.
async fn measure(
    ctx: &RequestContext,
    case: Case,
    cp: Option<Arc<dyn Checkpointer>>,
    durability: Durability,
    runs: usize,
) -> f64 {
    let graph = match case {
        Case::Loop => loop_graph(cp.clone(), durability),
        Case::Fanout => fanout_graph(cp.clone(), durability),
    };
    let mut times = Vec::with_capacity(runs);
    for run in 0..=runs {
        let thread = fresh_thread();
        let cfg = if cp.is_some() {
            RunConfig::thread(thread.clone())
        } else {
            RunConfig::default()
        };
        let t0 = Instant::now();
        let out = graph
            .invoke(ctx, &cfg, ClUpdate::default())
            .await
            .expect("run");
        let dt = t0.elapsed();
        let expected = match case {
            Case::Loop => STEPS,
            Case::Fanout => WIDTH * ITERATIONS,
        };
        assert_eq!(out.state.count, expected);
        assert_eq!(out.steps, case.steps());
        if run > 0 {
            times.push(dt.as_secs_f64() * 1e6 / case.units() as f64);
        }
        if run == 1
            && let Some(cp) = &cp
        {
            verify(ctx, cp.as_ref(), &thread, case).await;
        }
        if let Some(cp) = &cp {
            cp.delete_thread(ctx, &thread).await.expect("delete");
        }
    }
    median(times)
}

/// Checkpoints: the input one plus one per step. Pending writes: one per branch of each fan-out.
async fn verify(ctx: &RequestContext, cp: &dyn Checkpointer, thread: &ThreadId, case: Case) {
    let all = cp.list(ctx, thread, usize::MAX).await.expect("list");
    assert_eq!(
        all.len() as u64,
        case.steps() + 1,
        "{}: checkpoints stored",
        case.name()
    );
    let mut writes = 0;
    for c in &all {
        writes += cp
            .get_writes(ctx, thread, c.id)
            .await
            .expect("writes")
            .len() as u64;
    }
    let expected = match case {
        Case::Loop => 0,
        Case::Fanout => WIDTH * ITERATIONS,
    };
    assert_eq!(writes, expected, "{}: pending writes stored", case.name());
}

/// The server's own commit latency, pgbench-style: one single-row INSERT per transaction
/// (autocommit), one at a time, same driver. Median µs.
async fn pg_commit_latency(pg: &PostgresCheckpointer, n: usize) -> f64 {
    let pool = pg.pool();
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS wattos_agents_bench.commit_latency (id BIGSERIAL PRIMARY KEY, v INT NOT NULL)",
    )
    .execute(pool)
    .await
    .expect("commit table");
    let mut times = Vec::with_capacity(n);
    for i in 0..=n {
        let t0 = Instant::now();
        sqlx::query("INSERT INTO wattos_agents_bench.commit_latency (v) VALUES ($1)")
            .bind(i as i32)
            .execute(pool)
            .await
            .expect("insert");
        if i > 0 {
            times.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    sqlx::raw_sql("TRUNCATE wattos_agents_bench.commit_latency")
        .execute(pool)
        .await
        .ok();
    median(times)
}

/// The same on a SQLite file (WAL, the given synchronous level), one connection.
async fn sqlite_commit_latency(path: &Path, synchronous: &str, n: usize) -> f64 {
    use sqlx::ConnectOptions as _;
    use std::str::FromStr as _;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite://")
        .expect("options")
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .pragma("synchronous", synchronous.to_owned())
        .connect()
        .await
        .expect("sqlite");
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS commit_latency (id INTEGER PRIMARY KEY, v INT NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .expect("table");
    let mut times = Vec::with_capacity(n);
    for i in 0..=n {
        let t0 = Instant::now();
        sqlx::query("INSERT INTO commit_latency (v) VALUES (?)")
            .bind(i as i32)
            .execute(&mut conn)
            .await
            .expect("insert");
        if i > 0 {
            times.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    median(times)
}

type Key = (String, String, String); // (case, store, durability)

/// LangGraph's figures from `langgraph_durability.py`, keyed like ours.
fn langgraph(
    python: &str,
    dir: &Path,
    pg_url: Option<&str>,
    runs: usize,
    only: &str,
) -> BTreeMap<Key, f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/langgraph_durability.py");
    let mut out = BTreeMap::new();
    // One process per SQLite level (the saver takes one connection).
    for (i, level) in ["NORMAL", "FULL"].iter().enumerate() {
        let mut cmd = std::process::Command::new(python);
        cmd.arg(&script)
            .arg("--runs")
            .arg(runs.to_string())
            .arg("--sqlite")
            .arg(dir.join(format!("langgraph-{}.db", level.to_lowercase())))
            .arg("--sqlite-synchronous")
            .arg(level);
        let mut stores = vec![format!("sqlite-{}", level.to_lowercase())];
        if i == 0 {
            stores.extend([
                "none".to_owned(),
                "memory".to_owned(),
                "postgres".to_owned(),
            ]);
            if let Some(url) = pg_url {
                cmd.arg("--pg").arg(url);
            }
        }
        let wanted: Vec<&String> = stores
            .iter()
            .filter(|s| only.is_empty() || only.split(',').any(|o| o == s.as_str()))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        cmd.arg("--only").arg(
            wanted
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        match cmd.stderr(std::process::Stdio::inherit()).output() {
            Ok(o) => {
                for line in String::from_utf8_lossy(&o.stdout).lines() {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                        continue;
                    };
                    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                    if let Some(us) = v["median_us"].as_f64() {
                        out.insert((s("case"), s("store"), s("durability")), us);
                    }
                }
                if !o.status.success() {
                    eprintln!("durability: LangGraph script failed: {}", o.status);
                }
            }
            Err(e) => eprintln!("durability: cannot run {python}: {e}"),
        }
    }
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs: usize = std::env::var("WATTOS_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let only = std::env::var("WATTOS_BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ctx = RequestContext::system(TenantId::new("bench").expect("tenant"));
    let dir = std::env::temp_dir().join(format!("wattos-durability-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let url = std::env::var("PG_TEST_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());

    let mut stores: Vec<(&str, Option<Arc<dyn Checkpointer>>)> = Vec::new();
    let mut commit: Vec<(String, f64)> = Vec::new();
    if wanted("none") {
        stores.push(("none", None));
    }
    if wanted("memory") {
        stores.push(("memory", Some(Arc::new(InMemoryCheckpointer::new()))));
    }
    for (name, level, pragma) in [
        ("sqlite-normal", SqliteSynchronous::Normal, "NORMAL"),
        ("sqlite-full", SqliteSynchronous::Full, "FULL"),
    ] {
        if !wanted(name) {
            continue;
        }
        let cp = rt
            .block_on(SqliteCheckpointer::open_with(
                dir.join(format!("{name}.db")),
                SqliteOptions::default().synchronous(level),
            ))
            .expect("sqlite");
        let us = rt.block_on(sqlite_commit_latency(
            &dir.join(format!("{name}-commit.db")),
            pragma,
            500,
        ));
        commit.push((format!("SQLite {pragma}, single-row INSERT (sqlx)"), us));
        stores.push((name, Some(Arc::new(cp))));
    }
    let mut pg: Option<PostgresCheckpointer> = None;
    if wanted("postgres") {
        match rt.block_on(PostgresCheckpointer::connect_with_schema(
            &url,
            "wattos_agents_bench",
        )) {
            Ok(cp) => {
                let us = rt.block_on(pg_commit_latency(&cp, 500));
                commit.push(("Postgres, single-row INSERT (sqlx)".into(), us));
                stores.push(("postgres", Some(Arc::new(cp.clone()))));
                pg = Some(cp);
            }
            Err(e) => eprintln!("durability: Postgres skipped: {e}"),
        }
    }

    let mut ours: BTreeMap<Key, f64> = BTreeMap::new();
    for (store, cp) in &stores {
        let modes: &[(Durability, &str)] = if cp.is_some() {
            &[(Durability::Async, "async"), (Durability::Sync, "sync")]
        } else {
            &[(Durability::Sync, "-")]
        };
        for &(durability, dname) in modes {
            for case in [Case::Loop, Case::Fanout] {
                let us = rt.block_on(measure(&ctx, case, cp.clone(), durability, runs));
                eprintln!(
                    "durability: {} {store} {dname}: {us:.1} µs per {}",
                    case.name(),
                    if case == Case::Loop {
                        "step"
                    } else {
                        "iteration"
                    }
                );
                ours.insert((case.name().into(), (*store).into(), dname.into()), us);
            }
        }
    }
    // The Postgres commit latency again after the cases: the disk's latency drifts during a run.
    if let Some(pg) = &pg {
        let us = rt.block_on(pg_commit_latency(pg, 500));
        commit.push((
            "Postgres, single-row INSERT (sqlx), after the cases".into(),
            us,
        ));
    }

    let lg = match std::env::var("LANGGRAPH_PYTHON") {
        Ok(python) if !python.is_empty() => langgraph(
            &python,
            &dir,
            pg.is_some().then_some(url.as_str()),
            runs,
            &only,
        ),
        _ => BTreeMap::new(),
    };

    println!();
    println!("| case | store | durability | WattOS µs | LangGraph µs | ratio |");
    println!("|---|---|---|---:|---:|---:|");
    for case in ["loop", "fanout"] {
        for (store, _) in &stores {
            for d in ["-", "async", "sync"] {
                let key: Key = (case.into(), (*store).into(), d.into());
                let Some(us) = ours.get(&key) else { continue };
                let unit = if case == "loop" {
                    "/step"
                } else {
                    "/iteration"
                };
                let (peer, ratio) = match lg.get(&key) {
                    Some(p) => (format!("{p:.0}"), format!("{:.0}x", p / us)),
                    None => ("-".into(), "".into()),
                };
                println!("| {case} {unit} | {store} | {d} | {us:.1} | {peer} | {ratio} |");
            }
        }
    }
    println!();
    println!("| commit latency (same run) | median µs |");
    println!("|---|---:|");
    for (what, us) in &commit {
        println!("| {what} | {us:.0} |");
    }
    std::fs::remove_dir_all(&dir).ok();
}
