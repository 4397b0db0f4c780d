//! [`AgentsService`]: the registered graphs, the checkpointer they share, the run store, and run
//! execution in server tasks (a client that disconnects does not stop a run).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use tokio::sync::mpsc;
use wattos_agents::{
    Command, CompiledGraph, GraphRegistry, JsonEvent, JsonGraph, JsonOutcome, RunConfig, RunStatus,
    State,
};
use wattos_core::checkpoint::{Checkpointer, ThreadId};
use wattos_core::config::Config;
use wattos_core::resilience::{Admission, AdmissionLimits, AdmissionPermit};
use wattos_core::tenancy::AgentSettings;
use wattos_core::{Error, RequestContext, Result};

use super::runs::{RunEnd, RunError, RunRow, RunState, RunStore};
use super::types::GraphInfo;
use crate::appdb::AppDb;

#[derive(Clone)]
struct Entry {
    graph: Arc<dyn JsonGraph>,
    info: GraphInfo,
}

struct Inner {
    graphs: RwLock<BTreeMap<String, Entry>>,
    runs: RunStore,
    checkpointer: Arc<dyn Checkpointer>,
    admission: Admission,
}

/// Graphs by name, their checkpointer and their runs. Cheap to clone; graphs can be registered at
/// any time.
///
/// ```no_run
/// # async fn f(state: wattos_server::AppState) -> wattos_core::Result<()> {
/// use wattos_agents::CompileOptions;
/// let agents = state.agents().expect("agents are on");
/// # let model: std::sync::Arc<dyn wattos_core::llm::ChatModel> = todo!();
/// let graph = wattos_agents::agent::ReactAgent::new(model, "my-model")
///     .compile(CompileOptions::new().with_checkpointer(agents.checkpointer()))?;
/// agents.register("helper", "A helpful agent", serde_json::json!({"messages": []}), graph)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AgentsService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AgentsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentsService")
            .field("graphs", &self.names())
            .finish_non_exhaustive()
    }
}

/// How a run starts, and the limits of the caller's tenant.
pub(crate) struct Start {
    /// New input or an answer to interrupts.
    pub(crate) kind: StartKind,
    /// The tenant's agent settings (`None` without a tenant configuration).
    pub(crate) settings: Option<AgentSettings>,
}

/// What starts a run.
pub(crate) enum StartKind {
    /// A new run with this input.
    Input(Value),
    /// Answers the pending interrupts.
    Resume(Command),
}

/// The run's thread, with the tenant's step ceiling (over the graph's own limit) and the tools
/// whose every call waits for approval.
fn run_config(run: &RunRow, settings: Option<&AgentSettings>) -> Result<RunConfig> {
    let cfg = RunConfig::thread(ThreadId::new(&run.thread_id)?);
    Ok(match settings {
        Some(s) => cfg
            .with_max_steps(s.max_steps)
            .with_approval_required(s.approval_required_tools.iter().cloned()),
        None => cfg,
    })
}

/// An item sent to a streaming client.
pub(crate) enum Streamed {
    /// A graph event (not `Done`).
    Event(JsonEvent),
    /// The run ended: its row and outcome.
    Finished(Box<RunRow>, Box<JsonOutcome>),
    /// The run failed: its row and the error.
    Failed(Box<RunRow>, Error),
}

pub(crate) fn now_ms() -> i64 {
    crate::auth::now_ms()
}

/// The PostgreSQL schema of agent checkpoints.
const CHECKPOINT_SCHEMA: &str = "wattos_agents";

impl AgentsService {
    /// A service storing runs in `runs` and checkpoints in `checkpointer` (compile graphs with it).
    /// Runs are admitted with the default [`AdmissionLimits`] (see [`AgentsService::with_limits`]).
    pub fn new(runs: RunStore, checkpointer: Arc<dyn Checkpointer>) -> Self {
        Self::with_limits(runs, checkpointer, AdmissionLimits::default())
    }

    /// As [`AgentsService::new`], admitting at most `limits` runs at once (globally and per
    /// tenant); a run holds its slot until it ends, whether or not its client is still there.
    pub fn with_limits(
        runs: RunStore,
        checkpointer: Arc<dyn Checkpointer>,
        limits: AdmissionLimits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                graphs: RwLock::new(BTreeMap::new()),
                runs,
                checkpointer,
                admission: Admission::new("agent runs", limits),
            }),
        }
    }

    /// Takes a slot for one run of `ctx`'s tenant; pass it to the execution, which holds it until
    /// the run ends.
    ///
    /// # Errors
    /// 429 `rate_limited` when the tenant is at its limit, 503 `unavailable` when the server is,
    /// both with a `Retry-After`.
    pub fn admit(&self, ctx: &RequestContext) -> Result<AdmissionPermit> {
        self.inner.admission.try_admit(ctx.tenant())
    }

    /// The service for `config`: runs in `db`; checkpoints in Postgres (schema `wattos_agents`)
    /// when `database.url` is a Postgres URL, else in SQLite at `data_dir/agents.db`.
    ///
    /// # Errors
    /// The checkpointer cannot be opened.
    pub async fn open(config: &Config, db: AppDb) -> Result<Self> {
        let checkpointer: Arc<dyn Checkpointer> = match &config.database {
            Some(d) if d.url.expose().starts_with("postgres") => {
                let pool = crate::dbpool::PoolSpec::of(config, crate::dbpool::Pool::Checkpoints)
                    .pg()
                    .connect(d.url.expose())
                    .await
                    .map_err(|e| {
                        Error::unavailable("cannot connect to the checkpoint database")
                            .with_source(e)
                    })?;
                Arc::new(
                    wattos_agents::checkpoint::PostgresCheckpointer::from_pool(
                        pool,
                        CHECKPOINT_SCHEMA,
                    )
                    .await?,
                )
            }
            _ => {
                std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                    Error::unavailable(format!("cannot create {}: {e}", config.data_dir.display()))
                })?;
                Arc::new(
                    wattos_agents::checkpoint::SqliteCheckpointer::open(
                        config.data_dir.join("agents.db"),
                    )
                    .await?,
                )
            }
        };
        let limits = AdmissionLimits {
            global: config.server.max_background_tasks,
            per_tenant: config.server.max_background_tasks_per_tenant,
            ..AdmissionLimits::default()
        };
        Ok(Self::with_limits(RunStore::new(db), checkpointer, limits))
    }

    /// The checkpointer registered graphs must be compiled with.
    pub fn checkpointer(&self) -> Arc<dyn Checkpointer> {
        self.inner.checkpointer.clone()
    }

    /// The run store.
    pub fn runs(&self) -> &RunStore {
        &self.inner.runs
    }

    /// Registers `graph` as `name` (replacing one of the same name).
    ///
    /// # Errors
    /// `invalid_input` when the graph has no checkpointer (runs could not be resumed or inspected).
    pub fn register<S: State>(
        &self,
        name: impl Into<String>,
        description: impl Into<String>,
        input_example: Value,
        graph: CompiledGraph<S>,
    ) -> Result<()> {
        if graph.checkpointer().is_none() {
            return Err(Error::invalid_field(
                "graph",
                "compile the graph with the service's checkpointer (AgentsService::checkpointer)",
            ));
        }
        self.register_json(name, description, input_example, Arc::new(graph));
        Ok(())
    }

    /// Registers an already type-erased graph (it must persist to a checkpointer).
    pub fn register_json(
        &self,
        name: impl Into<String>,
        description: impl Into<String>,
        input_example: Value,
        graph: Arc<dyn JsonGraph>,
    ) {
        let name = name.into();
        let info = GraphInfo {
            name: name.clone(),
            description: description.into(),
            input_example,
        };
        if let Ok(mut g) = self.inner.graphs.write() {
            g.insert(name, Entry { graph, info });
        }
    }

    /// Registers every graph of `registry` (without descriptions).
    pub fn register_registry(&self, registry: &GraphRegistry) {
        for name in registry.names() {
            if let Ok(g) = registry.get(name) {
                self.register_json(name, "", Value::Object(Default::default()), g.clone());
            }
        }
    }

    /// Registered names.
    pub fn names(&self) -> Vec<String> {
        self.inner
            .graphs
            .read()
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Registered graphs, by name.
    pub fn infos(&self) -> Vec<GraphInfo> {
        self.inner
            .graphs
            .read()
            .map(|g| g.values().map(|e| e.info.clone()).collect())
            .unwrap_or_default()
    }

    /// The graph named `name`.
    ///
    /// # Errors
    /// `not_found`.
    pub fn graph(&self, name: &str) -> Result<Arc<dyn JsonGraph>> {
        self.inner
            .graphs
            .read()
            .ok()
            .and_then(|g| g.get(name).map(|e| e.graph.clone()))
            .ok_or_else(|| Error::not_found(format!("graph `{name}`")).with_field("graph"))
    }

    async fn record(
        &self,
        ctx: &RequestContext,
        run: &RunRow,
        result: &Result<JsonOutcome>,
    ) -> Result<RunRow> {
        let now = now_ms();
        let (status, steps, reason, error) = match result {
            Ok(o) => {
                let (status, reason) = match &o.status {
                    RunStatus::Completed => (RunState::Completed, None),
                    RunStatus::Interrupted => (RunState::Interrupted, None),
                    RunStatus::Rejected(r) => (RunState::Rejected, Some(r.clone())),
                };
                (status, i64::try_from(o.steps).unwrap_or(0), reason, None)
            }
            Err(e) => (
                RunState::Failed,
                0,
                None,
                Some(RunError {
                    code: e.code().to_owned(),
                    message: if e.kind() == wattos_core::ErrorKind::Internal {
                        "internal error".to_owned()
                    } else {
                        e.message().to_owned()
                    },
                }),
            ),
        };
        let end = RunEnd {
            status,
            steps,
            reason,
            error,
        };
        self.inner
            .runs
            .finish(ctx.tenant(), &run.id, &end, now)
            .await?;
        Ok(RunRow {
            status: end.status,
            steps: run.steps + end.steps,
            reason: end.reason,
            error: end.error,
            updated_at_ms: now,
            ..run.clone()
        })
    }

    /// Runs `start` on `run`'s thread in a server task and waits for the outcome.
    pub(crate) async fn execute(
        &self,
        ctx: RequestContext,
        graph: Arc<dyn JsonGraph>,
        run: RunRow,
        start: Start,
        permit: AdmissionPermit,
    ) -> Result<(RunRow, Result<JsonOutcome>)> {
        let svc = self.clone();
        let task = tokio::spawn(async move {
            let _permit = permit;
            let cfg = run_config(&run, start.settings.as_ref())?;
            let result = match start.kind {
                StartKind::Input(input) => graph.invoke(&ctx, &cfg, input).await,
                StartKind::Resume(cmd) => graph.resume(&ctx, &cfg, cmd).await,
            };
            if let Err(e) = &result {
                tracing::warn!(run = %run.id, error = %e, "agent run failed");
            }
            let row = svc.record(&ctx, &run, &result).await?;
            Ok::<_, Error>((row, result))
        });
        task.await
            .map_err(|e| Error::internal("agent run task panicked").with_source(e))?
    }

    /// Runs `start` in a server task, sending events to the returned receiver. The run goes on
    /// when the receiver is dropped.
    pub(crate) fn execute_streaming(
        &self,
        ctx: RequestContext,
        graph: Arc<dyn JsonGraph>,
        run: RunRow,
        start: Start,
        permit: AdmissionPermit,
    ) -> mpsc::UnboundedReceiver<Streamed> {
        let (tx, rx) = mpsc::unbounded_channel();
        let svc = self.clone();
        tokio::spawn(async move {
            // The slot is held until the run ends, also when the client has gone.
            let _permit = permit;
            let cfg = match run_config(&run, start.settings.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Streamed::Failed(Box::new(run), e));
                    return;
                }
            };
            let mut events = match start.kind {
                StartKind::Input(input) => graph.stream(&ctx, &cfg, input),
                StartKind::Resume(cmd) => graph.stream_resume(&ctx, &cfg, cmd),
            };
            let mut result: Option<Result<JsonOutcome>> = None;
            while let Some(item) = futures::StreamExt::next(&mut events).await {
                match item {
                    Ok(JsonEvent::Done { outcome }) => {
                        result = Some(Ok(outcome));
                        break;
                    }
                    Ok(ev) => {
                        let _ = tx.send(Streamed::Event(ev));
                    }
                    Err(e) => {
                        result = Some(Err(e));
                        break;
                    }
                }
            }
            let result =
                result.unwrap_or_else(|| Err(Error::internal("the run ended without an outcome")));
            match svc.record(&ctx, &run, &result).await {
                Ok(row) => {
                    let msg = match result {
                        Ok(o) => Streamed::Finished(Box::new(row), Box::new(o)),
                        Err(e) => Streamed::Failed(Box::new(row), e),
                    };
                    let _ = tx.send(msg);
                }
                Err(e) => {
                    let _ = tx.send(Streamed::Failed(Box::new(run), e));
                }
            }
        });
        rx
    }
}
