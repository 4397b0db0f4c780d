//! Postgres usage sink: records go through a bounded queue to a background writer that inserts them
//! in batches, so a slow database never slows a model call. [`PostgresUsageSink::flush`] waits until
//! everything queued is written.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sqlx::{Postgres, QueryBuilder};
use tokio::sync::{mpsc, oneshot};
use wattos_core::{Error, Result, TenantId};

use super::{UsageRecord, UsageSink};

/// Settings of [`PostgresUsageSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresUsageSinkConfig {
    /// Table name (letters, digits and `_`; created if missing).
    pub table: String,
    /// Most records per `INSERT`.
    pub batch_size: usize,
    /// Longest a record waits in the queue before it is written.
    pub flush_interval: Duration,
    /// Queue length; records beyond it are dropped (and counted) instead of blocking calls.
    pub queue_capacity: usize,
}

impl Default for PostgresUsageSinkConfig {
    fn default() -> Self {
        Self {
            table: "llm_usage".into(),
            batch_size: 256,
            flush_interval: Duration::from_millis(500),
            queue_capacity: 16_384,
        }
    }
}

enum Msg {
    Record(Box<UsageRecord>),
    Flush(oneshot::Sender<Result<()>>),
}

/// Writes usage records to Postgres in batches. Cheap to clone.
#[derive(Clone)]
pub struct PostgresUsageSink {
    tx: mpsc::Sender<Msg>,
    pool: PgPool,
    table: Arc<str>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for PostgresUsageSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresUsageSink")
            .field("table", &self.table)
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

fn db(e: sqlx::Error) -> Error {
    Error::unavailable(format!("postgres: {e}")).with_source(e)
}

impl PostgresUsageSink {
    /// Creates the table (if missing) and starts the writer task.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] for a bad table name;
    /// [`wattos_core::ErrorKind::Unavailable`] when the database cannot be reached.
    pub async fn connect(pool: PgPool, config: PostgresUsageSinkConfig) -> Result<Self> {
        let t = &config.table;
        if t.is_empty()
            || t.len() > 63
            || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || t.as_bytes()[0].is_ascii_digit()
        {
            return Err(Error::invalid_field(
                "table",
                "must be 1..=63 letters, digits or '_', not starting with a digit",
            ));
        }
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                id BIGSERIAL PRIMARY KEY,
                at TIMESTAMPTZ NOT NULL,
                tenant TEXT NOT NULL,
                principal TEXT NOT NULL,
                request_id TEXT NOT NULL,
                model_group TEXT NOT NULL,
                deployment TEXT NOT NULL,
                upstream_model TEXT NOT NULL,
                input_tokens BIGINT NOT NULL,
                output_tokens BIGINT NOT NULL,
                cached_input_tokens BIGINT NOT NULL,
                cost_nanos BIGINT NOT NULL,
                latency_us BIGINT NOT NULL,
                outcome TEXT NOT NULL,
                attempt INT NOT NULL,
                streamed BOOLEAN NOT NULL)"
        ))
        .execute(&pool)
        .await
        .map_err(db)?;
        sqlx::query(&format!(
            "CREATE INDEX IF NOT EXISTS {t}_tenant_at ON {t} (tenant, at)"
        ))
        .execute(&pool)
        .await
        .map_err(db)?;
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let table: Arc<str> = Arc::from(t.as_str());
        tokio::spawn(writer(pool.clone(), table.clone(), config, rx));
        Ok(Self {
            tx,
            pool,
            table,
            dropped: Arc::default(),
        })
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Total recorded cost of `tenant`, nano-dollars (reads the table; flush first).
    ///
    /// # Errors
    /// Database failures.
    pub async fn total_cost_nanos(&self, tenant: &TenantId) -> Result<i64> {
        let (sum,): (Option<i64>,) = sqlx::query_as(&format!(
            "SELECT SUM(cost_nanos)::BIGINT FROM {} WHERE tenant = $1",
            self.table
        ))
        .bind(tenant.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(sum.unwrap_or(0))
    }

    /// Number of rows recorded for `request_id` (reads the table; flush first).
    ///
    /// # Errors
    /// Database failures.
    pub async fn count_for_request(&self, request_id: &str) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(&format!(
            "SELECT COUNT(*) FROM {} WHERE request_id = $1",
            self.table
        ))
        .bind(request_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(n)
    }
}

async fn writer(
    pool: PgPool,
    table: Arc<str>,
    config: PostgresUsageSinkConfig,
    mut rx: mpsc::Receiver<Msg>,
) {
    let mut batch: Vec<UsageRecord> = Vec::with_capacity(config.batch_size);
    loop {
        let msg = if batch.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(config.flush_interval, rx.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    write_batch(&pool, &table, &mut batch).await.ok();
                    continue;
                }
            }
        };
        match msg {
            None => {
                write_batch(&pool, &table, &mut batch).await.ok();
                break;
            }
            Some(Msg::Record(r)) => {
                batch.push(*r);
                if batch.len() >= config.batch_size {
                    write_batch(&pool, &table, &mut batch).await.ok();
                }
            }
            Some(Msg::Flush(done)) => {
                let r = write_batch(&pool, &table, &mut batch).await;
                let _ = done.send(r);
            }
        }
    }
}

async fn write_batch(pool: &PgPool, table: &str, batch: &mut Vec<UsageRecord>) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut qb: QueryBuilder<'_, Postgres> = QueryBuilder::new(format!(
        "INSERT INTO {table} (at, tenant, principal, request_id, model_group, deployment, \
         upstream_model, input_tokens, output_tokens, cached_input_tokens, cost_nanos, latency_us, \
         outcome, attempt, streamed) "
    ));
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    qb.push_values(batch.iter(), |mut b, r| {
        let at: chrono::DateTime<chrono::Utc> = r.at.into();
        b.push_bind(at)
            .push_bind(r.tenant.as_str().to_owned())
            .push_bind(r.principal.clone())
            .push_bind(r.request_id.clone())
            .push_bind(r.model_group.clone())
            .push_bind(r.deployment.clone())
            .push_bind(r.upstream_model.clone())
            .push_bind(clamp(r.usage.input_tokens))
            .push_bind(clamp(r.usage.output_tokens))
            .push_bind(clamp(r.usage.cached_input_tokens))
            .push_bind(r.cost_nanos)
            .push_bind(i64::try_from(r.latency.as_micros()).unwrap_or(i64::MAX))
            .push_bind(r.outcome.label().to_owned())
            .push_bind(i32::try_from(r.attempt).unwrap_or(i32::MAX))
            .push_bind(r.streamed);
    });
    let result = qb.build().execute(pool).await;
    let n = batch.len();
    batch.clear();
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, records = n, "could not write usage records");
            Err(db(e))
        }
    }
}

#[async_trait]
impl UsageSink for PostgresUsageSink {
    async fn record(&self, record: UsageRecord) -> Result<()> {
        match self.tx.try_send(Msg::Record(Box::new(record))) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Err(Error::unavailable("usage queue is full; record dropped"))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(Error::unavailable("usage writer has stopped"))
            }
        }
    }

    async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Flush(tx))
            .await
            .map_err(|_| Error::unavailable("usage writer has stopped"))?;
        rx.await
            .map_err(|_| Error::unavailable("usage writer has stopped"))?
    }
}
