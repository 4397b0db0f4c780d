//! Usage and cost accounting in the server's SQL database (the one the tenancy store uses: SQLite
//! embedded, Postgres shared).
//!
//! Every upstream attempt the routers make (chat and embeddings, successes and failures) becomes
//! one row of `usage_records`: tenant, principal (API key id or user), model group, deployment,
//! provider, tokens, cost, latency and outcome. Rows go through a bounded queue to a background
//! writer that inserts them in batches, so a model call never waits on the database.
//! [`SqlUsage`] also implements [`UsageReporter`], which serves `GET /v1/admin/usage`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};
use wattos_core::telemetry::names;
use wattos_core::{Error, Result, TenantId};
use wattos_llm::usage::{UsageOutcome, UsageRecord, UsageSink};

use crate::tenancy::admin::{DayUsage, KeyUsage, ModelUsage, UsageReport, UsageReporter};
use crate::tenancy::{Backend, SqlStore};

/// Which kind of call a record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Chat completions and messages.
    Chat,
    /// Embeddings.
    Embedding,
}

impl Operation {
    /// `chat` or `embedding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Embedding => "embedding",
        }
    }
}

struct Pending {
    record: UsageRecord,
    operation: Operation,
    provider: String,
}

enum Msg {
    Record(Box<Pending>),
    Flush(oneshot::Sender<std::result::Result<(), String>>),
}

/// Usage rows in SQL, written in batches by a background task. Cheap to clone.
#[derive(Clone)]
pub struct SqlUsage {
    tx: mpsc::Sender<Msg>,
    pool: AnyPool,
    backend: Backend,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for SqlUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlUsage")
            .field("backend", &self.backend)
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

fn db_err(e: sqlx::Error) -> Error {
    Error::unavailable("usage database error").with_source(e)
}

fn counted(op: &'static str, backend: Backend) {
    let b = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    metrics::counter!(names::DB_QUERIES_TOTAL, "backend" => b, "operation" => op).increment(1);
}

const BATCH: usize = 128;
const QUEUE: usize = 16_384;

impl SqlUsage {
    /// Starts the writer over `store`'s database (its migrations created `usage_records`). Needs a
    /// Tokio runtime.
    pub fn new(store: &SqlStore) -> Self {
        Self::with_pool(store.pool().clone(), store.backend())
    }

    /// Starts the writer on its own `pool` of a `backend` database whose tenancy migrations ran
    /// (so `usage_records` exists). Needs a Tokio runtime.
    pub fn with_pool(pool: AnyPool, backend: Backend) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let this = Self {
            tx,
            pool,
            backend,
            dropped: Arc::default(),
        };
        tokio::spawn(writer(this.pool.clone(), this.backend, rx));
        this
    }

    /// A sink for the router of `operation` calls; `providers` maps deployment names to provider
    /// kinds.
    pub fn sink(
        &self,
        operation: Operation,
        providers: HashMap<String, String>,
    ) -> Arc<dyn UsageSink> {
        Arc::new(TaggedSink {
            usage: self.clone(),
            operation,
            providers: Arc::new(providers),
        })
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every queued record is written.
    ///
    /// # Errors
    /// The writer's database error, or `unavailable` when the writer stopped.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Flush(tx))
            .await
            .map_err(|_| Error::unavailable("usage writer stopped"))?;
        rx.await
            .map_err(|_| Error::unavailable("usage writer stopped"))?
            .map_err(Error::unavailable)
    }

    fn push(&self, row: Pending) {
        match self.tx.try_send(Msg::Record(Box::new(row))) {
            Ok(()) => {}
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("usage queue full; a usage record was dropped");
            }
        }
    }
}

struct TaggedSink {
    usage: SqlUsage,
    operation: Operation,
    providers: Arc<HashMap<String, String>>,
}

#[async_trait]
impl UsageSink for TaggedSink {
    async fn record(&self, record: UsageRecord) -> Result<()> {
        let provider = self
            .providers
            .get(&record.deployment)
            .cloned()
            .unwrap_or_default();
        self.usage.push(Pending {
            record,
            operation: self.operation,
            provider,
        });
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        self.usage.flush().await
    }
}

/// Hands every record to several sinks (the SQL store and the event publisher); a failing sink
/// does not keep the record from the others.
pub struct FanoutUsageSink {
    sinks: Vec<Arc<dyn UsageSink>>,
}

impl FanoutUsageSink {
    /// Records go to each of `sinks`, in order.
    pub fn new(sinks: Vec<Arc<dyn UsageSink>>) -> Self {
        Self { sinks }
    }
}

#[async_trait]
impl UsageSink for FanoutUsageSink {
    async fn record(&self, record: UsageRecord) -> Result<()> {
        let mut first_err = None;
        for s in &self.sinks {
            if let Err(e) = s.record(record.clone()).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn flush(&self) -> Result<()> {
        let mut first_err = None;
        for s in &self.sinks {
            if let Err(e) = s.flush().await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

async fn writer(pool: AnyPool, backend: Backend, mut rx: mpsc::Receiver<Msg>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(BATCH);
    while let Some(msg) = rx.recv().await {
        let mut waiters = Vec::new();
        let mut push = |m: Msg, batch: &mut Vec<Pending>| match m {
            Msg::Record(r) => batch.push(*r),
            Msg::Flush(w) => waiters.push(w),
        };
        push(msg, &mut batch);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => push(m, &mut batch),
                Err(_) => break,
            }
        }
        let result = insert(&pool, backend, &batch)
            .await
            .map_err(|e| format!("could not write usage records: {e}"));
        if let Err(e) = &result {
            tracing::warn!(error = %e, rows = batch.len(), "usage records lost");
        }
        batch.clear();
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

async fn insert(pool: &AnyPool, backend: Backend, rows: &[Pending]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await.map_err(db_err)?;
    for r in rows {
        let rec = &r.record;
        sqlx::query(
            "INSERT INTO usage_records (at_ms, tenant_id, principal, request_id, operation, model, \
             deployment, provider, upstream_model, input_tokens, output_tokens, cached_tokens, \
             cost_nanos, latency_ms, status, attempt, streamed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(unix_ms(rec.at))
        .bind(rec.tenant.as_str())
        .bind(&rec.principal)
        .bind(&rec.request_id)
        .bind(r.operation.as_str())
        .bind(&rec.model_group)
        .bind(&rec.deployment)
        .bind(&r.provider)
        .bind(&rec.upstream_model)
        .bind(int(rec.usage.input_tokens))
        .bind(int(rec.usage.output_tokens))
        .bind(int(rec.usage.cached_input_tokens))
        .bind(rec.cost_nanos)
        .bind(i64::try_from(rec.latency.as_millis()).unwrap_or(i64::MAX))
        .bind(rec.outcome.label())
        .bind(i64::from(rec.attempt))
        .bind(i64::from(rec.streamed))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        counted("usage_insert", backend);
    }
    tx.commit().await.map_err(db_err)?;
    Ok(())
}

fn is_ok(status: &str) -> bool {
    status == UsageOutcome::Success.label() || status == UsageOutcome::CacheHit.label()
}

/// Civil date (`YYYY-MM-DD`, UTC) of a day number since the Unix epoch.
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[derive(Default)]
struct Totals {
    calls: u64,
    failed: u64,
    input: u64,
    output: u64,
    cached: u64,
    cost_nanos: i64,
    latency_ms_sum: i64,
}

impl Totals {
    fn add(&mut self, row: &sqlx::any::AnyRow) -> Result<()> {
        let get = |c: &str| row.try_get::<i64, _>(c).map_err(db_err);
        let status: String = row.try_get("status").map_err(db_err)?;
        let n = u64::try_from(get("n")?).unwrap_or(0);
        self.calls += n;
        if !is_ok(&status) {
            self.failed += n;
        }
        self.input += u64::try_from(get("input")?).unwrap_or(0);
        self.output += u64::try_from(get("output")?).unwrap_or(0);
        self.cached += u64::try_from(get("cached")?).unwrap_or(0);
        self.cost_nanos += get("cost")?;
        self.latency_ms_sum += get("latency")?;
        Ok(())
    }

    fn cost_usd(&self) -> f64 {
        wattos_core::state::nanos_to_usd(self.cost_nanos)
    }
}

#[async_trait]
impl UsageReporter for SqlUsage {
    async fn report(&self, tenant: &TenantId, since_ms: i64, until_ms: i64) -> Result<UsageReport> {
        if until_ms < since_ms {
            return Err(Error::invalid_field(
                "until_ms",
                "must not be before since_ms",
            ));
        }
        // One grouped query; the three views are folded from it.
        let rows = sqlx::query(
            "SELECT model, principal, status, (at_ms / 86400000) AS day, COUNT(*) AS n, \
             CAST(SUM(input_tokens) AS BIGINT) AS input, CAST(SUM(output_tokens) AS BIGINT) AS output, \
             CAST(SUM(cached_tokens) AS BIGINT) AS cached, CAST(SUM(cost_nanos) AS BIGINT) AS cost, \
             CAST(SUM(latency_ms) AS BIGINT) AS latency \
             FROM usage_records WHERE tenant_id = $1 AND at_ms >= $2 AND at_ms < $3 \
             GROUP BY model, principal, status, (at_ms / 86400000)",
        )
        .bind(tenant.as_str())
        .bind(since_ms)
        .bind(until_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        counted("usage_report", self.backend);
        let mut by_model: BTreeMap<String, Totals> = BTreeMap::new();
        let mut by_key: BTreeMap<String, Totals> = BTreeMap::new();
        let mut by_day: BTreeMap<i64, Totals> = BTreeMap::new();
        for row in &rows {
            let model: String = row.try_get("model").map_err(db_err)?;
            let principal: String = row.try_get("principal").map_err(db_err)?;
            let day: i64 = row.try_get("day").map_err(db_err)?;
            by_model.entry(model).or_default().add(row)?;
            by_key.entry(principal).or_default().add(row)?;
            by_day.entry(day).or_default().add(row)?;
        }
        let total_cost: i64 = by_model.values().map(|t| t.cost_nanos).sum();
        Ok(UsageReport {
            since_ms,
            until_ms,
            models: by_model
                .into_iter()
                .map(|(model, t)| ModelUsage {
                    requests: t.calls,
                    input_tokens: t.input,
                    output_tokens: t.output,
                    cost_usd: t.cost_usd(),
                    cached_tokens: t.cached,
                    failed: t.failed,
                    avg_latency_ms: if t.calls == 0 {
                        0.0
                    } else {
                        t.latency_ms_sum as f64 / t.calls as f64
                    },
                    model,
                })
                .collect(),
            keys: by_key
                .into_iter()
                .map(|(principal, t)| KeyUsage {
                    requests: t.calls,
                    input_tokens: t.input,
                    output_tokens: t.output,
                    cost_usd: t.cost_usd(),
                    principal,
                })
                .collect(),
            days: by_day
                .into_iter()
                .map(|(day, t)| DayUsage {
                    date: civil_date(day),
                    requests: t.calls,
                    input_tokens: t.input,
                    output_tokens: t.output,
                    cost_usd: t.cost_usd(),
                })
                .collect(),
            total_cost_usd: wattos_core::state::nanos_to_usd(total_cost),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattos_llm::usage::MemoryUsageSink;

    struct Failing;

    #[async_trait]
    impl UsageSink for Failing {
        async fn record(&self, _record: UsageRecord) -> Result<()> {
            Err(Error::unavailable("down"))
        }
    }

    #[tokio::test]
    async fn the_fanout_feeds_every_sink_even_when_one_fails() {
        let a = Arc::new(MemoryUsageSink::default());
        let b = Arc::new(MemoryUsageSink::default());
        let fan = FanoutUsageSink::new(vec![a.clone(), Arc::new(Failing), b.clone()]);
        let rec = UsageRecord {
            at: std::time::SystemTime::now(),
            tenant: TenantId::new("acme").unwrap(),
            principal: "p".into(),
            request_id: "r".into(),
            model_group: "m".into(),
            deployment: "m".into(),
            upstream_model: "m".into(),
            usage: wattos_core::llm::Usage::default(),
            cost_nanos: 1,
            latency: std::time::Duration::from_millis(1),
            outcome: UsageOutcome::Success,
            attempt: 1,
            streamed: false,
        };
        assert!(fan.record(rec).await.is_err());
        assert_eq!((a.records().len(), b.records().len()), (1, 1));
        fan.flush().await.unwrap();
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(19_782), "2024-02-29");
        assert_eq!(civil_date(20_415), "2025-11-23");
    }
}
