//! A Postgres checkpointer (sqlx): durable across processes and hosts.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::postgres::{PgPool, PgPoolOptions};
use wattos_core::checkpoint::{
    Checkpoint, CheckpointId, Checkpointer, PendingWrite, StateBlob, StepBatch, ThreadId, WriteKind,
};
use wattos_core::{RequestContext, Result};

use super::sql::{Row, check_ident, db_err, decode_row, encode_body, step_i64};

/// Versioned migrations; `{s}` is the schema. Append only.
const MIGRATIONS: &[&str] = &["CREATE TABLE IF NOT EXISTS {s}.checkpoints (
        seq BIGSERIAL PRIMARY KEY,
        tenant TEXT NOT NULL,
        thread TEXT NOT NULL,
        id UUID NOT NULL,
        parent UUID,
        step BIGINT NOT NULL,
        state_full BOOLEAN NOT NULL,
        state BYTEA NOT NULL,
        body BYTEA NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (tenant, thread, id)
    );
    CREATE INDEX IF NOT EXISTS checkpoints_latest ON {s}.checkpoints (tenant, thread, seq DESC);
    CREATE TABLE IF NOT EXISTS {s}.checkpoint_writes (
        seq BIGSERIAL PRIMARY KEY,
        tenant TEXT NOT NULL,
        thread TEXT NOT NULL,
        checkpoint UUID NOT NULL,
        task_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload BYTEA NOT NULL
    );
    CREATE INDEX IF NOT EXISTS checkpoint_writes_by_checkpoint
        ON {s}.checkpoint_writes (tenant, thread, checkpoint, seq);"];

/// Stores checkpoints in a Postgres schema of their own (default `wattos_agents`), created and migrated
/// by [`PostgresCheckpointer::connect`].
///
/// Every statement filters on the caller's tenant. A checkpoint is one `INSERT` (one round trip); a
/// [`StepBatch`] (a step's pending writes and checkpoint, or many steps' with asynchronous durability)
/// is one statement, so one transaction and one round trip, whatever its size. Statements are prepared
/// once per pooled connection and reused.
#[derive(Debug, Clone)]
pub struct PostgresCheckpointer {
    pool: PgPool,
    sql: Statements,
}

#[derive(Debug, Clone)]
struct Statements {
    put: String,
    put_batch: String,
    put_write: String,
    put_step: String,
    get_latest: String,
    get_one: String,
    get_writes: String,
    list: String,
    delete: [String; 2],
}

impl Statements {
    fn new(s: &str) -> Self {
        let cols = "id, parent, step, state_full, state, body";
        Self {
            put: format!(
                "INSERT INTO {s}.checkpoints (tenant, thread, id, parent, step, state_full, state, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            put_batch: format!(
                "INSERT INTO {s}.checkpoints (tenant, thread, id, parent, step, state_full, state, body) \
                 SELECT $1, t, i, p, st, f, sb, b FROM UNNEST($2::text[], $3::uuid[], $4::uuid[], $5::bigint[], \
                 $6::bool[], $7::bytea[], $8::bytea[]) WITH ORDINALITY AS x(t, i, p, st, f, sb, b, ord) ORDER BY ord"
            ),
            put_write: format!(
                "INSERT INTO {s}.checkpoint_writes (tenant, thread, checkpoint, task_id, kind, payload) \
                 SELECT $1, $2, $3, * FROM UNNEST($4::text[], $5::text[], $6::bytea[])"
            ),
            put_step: format!(
                "WITH w AS (INSERT INTO {s}.checkpoint_writes (tenant, thread, checkpoint, task_id, kind, payload) \
                 SELECT $1, wt, wc, wk, wd, wp FROM UNNEST($2::text[], $3::uuid[], $4::text[], $5::text[], $6::bytea[]) \
                 WITH ORDINALITY AS y(wt, wc, wk, wd, wp, ord) ORDER BY ord) \
                 INSERT INTO {s}.checkpoints (tenant, thread, id, parent, step, state_full, state, body) \
                 SELECT $1, t, i, p, st, f, sb, b FROM UNNEST($7::text[], $8::uuid[], $9::uuid[], $10::bigint[], \
                 $11::bool[], $12::bytea[], $13::bytea[]) WITH ORDINALITY AS x(t, i, p, st, f, sb, b, ord) ORDER BY ord"
            ),
            get_latest: format!(
                "SELECT {cols} FROM {s}.checkpoints WHERE tenant = $1 AND thread = $2 ORDER BY seq DESC LIMIT 1"
            ),
            get_one: format!(
                "SELECT {cols} FROM {s}.checkpoints WHERE tenant = $1 AND thread = $2 AND id = $3"
            ),
            get_writes: format!(
                "SELECT task_id, kind, payload FROM {s}.checkpoint_writes \
                 WHERE tenant = $1 AND thread = $2 AND checkpoint = $3 ORDER BY seq"
            ),
            list: format!(
                "SELECT {cols} FROM {s}.checkpoints WHERE tenant = $1 AND thread = $2 ORDER BY seq DESC LIMIT $3"
            ),
            delete: [
                format!("DELETE FROM {s}.checkpoint_writes WHERE tenant = $1 AND thread = $2"),
                format!("DELETE FROM {s}.checkpoints WHERE tenant = $1 AND thread = $2"),
            ],
        }
    }
}

fn row_of(r: &sqlx::postgres::PgRow) -> std::result::Result<Row, sqlx::Error> {
    Ok(Row {
        id: r.try_get(0)?,
        parent: r.try_get(1)?,
        step: r.try_get(2)?,
        full: r.try_get(3)?,
        state: r.try_get(4)?,
        body: r.try_get(5)?,
    })
}

impl PostgresCheckpointer {
    /// Connects to `url` and migrates schema `wattos_agents`.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::Unavailable`] when the database cannot be reached or migrated.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_schema(url, "wattos_agents").await
    }

    /// Connects to `url` and migrates `schema` (lowercase identifier).
    ///
    /// # Errors
    /// Invalid schema name; the database cannot be reached or migrated.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self> {
        Self::connect_with(url, schema, true).await
    }

    /// Connects with `synchronous_commit` on or off for this checkpointer's sessions. Off, a commit
    /// returns before Postgres flushes its WAL to disk: a crash of *this* process loses nothing, but a
    /// crash of the database server may lose the last fraction of a second of checkpoints (the run then
    /// resumes from a slightly older step; nothing is corrupted). Per-step latency drops to a network
    /// round trip.
    ///
    /// # Errors
    /// Invalid schema name; the database cannot be reached or migrated.
    pub async fn connect_with(url: &str, schema: &str, synchronous_commit: bool) -> Result<Self> {
        check_ident("schema", schema)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if !synchronous_commit {
                        sqlx::query("SET synchronous_commit = off")
                            .execute(conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(db_err("connect"))?;
        Self::from_pool(pool, schema).await
    }

    /// Uses an existing pool; migrates `schema`.
    ///
    /// # Errors
    /// Invalid schema name; migration failures.
    pub async fn from_pool(pool: PgPool, schema: &str) -> Result<Self> {
        check_ident("schema", schema)?;
        let mut tx = pool.begin().await.map_err(db_err("migrate"))?;
        // One migrator at a time per schema, across processes.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("wattos_agents_migrate:{schema}"))
            .execute(&mut *tx)
            .await
            .map_err(db_err("migrate"))?;
        sqlx::raw_sql(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.agents_migrations (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());"
        ))
        .execute(&mut *tx)
        .await
        .map_err(db_err("migrate"))?;
        let done: Option<i32> = sqlx::query_scalar(&format!(
            "SELECT max(version) FROM {schema}.agents_migrations"
        ))
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err("migrate"))?;
        let done = usize::try_from(done.unwrap_or(0)).unwrap_or(0);
        for (i, m) in MIGRATIONS.iter().enumerate().skip(done) {
            sqlx::raw_sql(&m.replace("{s}", schema))
                .execute(&mut *tx)
                .await
                .map_err(db_err("migrate"))?;
            sqlx::query(&format!(
                "INSERT INTO {schema}.agents_migrations (version) VALUES ($1)"
            ))
            .bind(i32::try_from(i + 1).unwrap_or(i32::MAX))
            .execute(&mut *tx)
            .await
            .map_err(db_err("migrate"))?;
        }
        tx.commit().await.map_err(db_err("migrate"))?;
        Ok(Self {
            pool,
            sql: Statements::new(schema),
        })
    }

    /// The connection pool (for health checks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Checkpointer for PostgresCheckpointer {
    async fn put(&self, ctx: &RequestContext, c: Checkpoint) -> Result<()> {
        let body = encode_body(&c)?;
        let full = c.state.is_full();
        let state = match c.state {
            StateBlob::Full(b) | StateBlob::Delta(b) => b,
        };
        sqlx::query(&self.sql.put)
            .bind(ctx.tenant().as_str())
            .bind(c.thread.as_str())
            .bind(c.id.0)
            .bind(c.parent.map(|p| p.0))
            .bind(step_i64(c.step)?)
            .bind(full)
            .bind(state)
            .bind(body)
            .execute(&self.pool)
            .await
            .map_err(db_err("put"))?;
        Ok(())
    }

    async fn put_batch(&self, ctx: &RequestContext, checkpoints: Vec<Checkpoint>) -> Result<()> {
        let mut checkpoints = checkpoints;
        if checkpoints.len() == 1
            && let Some(c) = checkpoints.pop()
        {
            return self.put(ctx, c).await;
        }
        let n = checkpoints.len();
        let (mut threads, mut ids, mut parents, mut steps) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut fulls, mut states, mut bodies) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for c in checkpoints {
            bodies.push(encode_body(&c)?);
            threads.push(c.thread.as_str().to_owned());
            ids.push(c.id.0);
            parents.push(c.parent.map(|p| p.0));
            steps.push(step_i64(c.step)?);
            fulls.push(c.state.is_full());
            states.push(match c.state {
                StateBlob::Full(b) | StateBlob::Delta(b) => b,
            });
        }
        sqlx::query(&self.sql.put_batch)
            .bind(ctx.tenant().as_str())
            .bind(threads)
            .bind(ids)
            .bind(parents)
            .bind(steps)
            .bind(fulls)
            .bind(states)
            .bind(bodies)
            .execute(&self.pool)
            .await
            .map_err(db_err("put_batch"))?;
        Ok(())
    }

    async fn put_writes(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        checkpoint: CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut tasks = Vec::with_capacity(writes.len());
        let mut kinds = Vec::with_capacity(writes.len());
        let mut payloads = Vec::with_capacity(writes.len());
        for w in writes {
            tasks.push(w.task_id);
            kinds.push(w.kind.as_str());
            payloads.push(w.payload);
        }
        sqlx::query(&self.sql.put_write)
            .bind(ctx.tenant().as_str())
            .bind(thread.as_str())
            .bind(checkpoint.0)
            .bind(tasks)
            .bind(kinds)
            .bind(payloads)
            .execute(&self.pool)
            .await
            .map_err(db_err("put_writes"))?;
        Ok(())
    }

    /// One statement (a data-modifying CTE): atomic, one round trip.
    async fn put_step(&self, ctx: &RequestContext, batch: StepBatch) -> Result<()> {
        let n_writes = batch.write_count();
        if n_writes == 0 {
            return match batch.checkpoints.len() {
                0 => Ok(()),
                _ => self.put_batch(ctx, batch.checkpoints).await,
            };
        }
        if batch.checkpoints.is_empty()
            && let [set] = &batch.writes[..]
        {
            let (thread, checkpoint) = (set.thread.clone(), set.checkpoint);
            let writes = batch.writes.into_iter().flat_map(|s| s.writes).collect();
            return self.put_writes(ctx, &thread, checkpoint, writes).await;
        }
        let (mut w_threads, mut w_cps, mut w_tasks, mut w_kinds, mut w_payloads) = (
            Vec::with_capacity(n_writes),
            Vec::with_capacity(n_writes),
            Vec::with_capacity(n_writes),
            Vec::with_capacity(n_writes),
            Vec::with_capacity(n_writes),
        );
        for set in batch.writes {
            for w in set.writes {
                w_threads.push(set.thread.as_str().to_owned());
                w_cps.push(set.checkpoint.0);
                w_tasks.push(w.task_id);
                w_kinds.push(w.kind.as_str());
                w_payloads.push(w.payload);
            }
        }
        let n = batch.checkpoints.len();
        let (mut threads, mut ids, mut parents, mut steps) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut fulls, mut states, mut bodies) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for c in batch.checkpoints {
            bodies.push(encode_body(&c)?);
            threads.push(c.thread.as_str().to_owned());
            ids.push(c.id.0);
            parents.push(c.parent.map(|p| p.0));
            steps.push(step_i64(c.step)?);
            fulls.push(c.state.is_full());
            states.push(match c.state {
                StateBlob::Full(b) | StateBlob::Delta(b) => b,
            });
        }
        sqlx::query(&self.sql.put_step)
            .bind(ctx.tenant().as_str())
            .bind(w_threads)
            .bind(w_cps)
            .bind(w_tasks)
            .bind(w_kinds)
            .bind(w_payloads)
            .bind(threads)
            .bind(ids)
            .bind(parents)
            .bind(steps)
            .bind(fulls)
            .bind(states)
            .bind(bodies)
            .execute(&self.pool)
            .await
            .map_err(db_err("put_step"))?;
        Ok(())
    }

    async fn get(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        id: Option<CheckpointId>,
    ) -> Result<Option<Checkpoint>> {
        let q = match id {
            None => sqlx::query(&self.sql.get_latest)
                .bind(ctx.tenant().as_str())
                .bind(thread.as_str()),
            Some(id) => sqlx::query(&self.sql.get_one)
                .bind(ctx.tenant().as_str())
                .bind(thread.as_str())
                .bind(id.0),
        };
        let row = q.fetch_optional(&self.pool).await.map_err(db_err("get"))?;
        row.map(|r| decode_row(thread, row_of(&r).map_err(db_err("get"))?))
            .transpose()
    }

    async fn get_writes(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        checkpoint: CheckpointId,
    ) -> Result<Vec<PendingWrite>> {
        let rows = sqlx::query(&self.sql.get_writes)
            .bind(ctx.tenant().as_str())
            .bind(thread.as_str())
            .bind(checkpoint.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("get_writes"))?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get(1).map_err(db_err("get_writes"))?;
                Ok(PendingWrite {
                    task_id: r.try_get(0).map_err(db_err("get_writes"))?,
                    kind: WriteKind::parse(&kind)?,
                    payload: r.try_get(2).map_err(db_err("get_writes"))?,
                })
            })
            .collect()
    }

    async fn list(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        limit: usize,
    ) -> Result<Vec<Checkpoint>> {
        let rows = sqlx::query(&self.sql.list)
            .bind(ctx.tenant().as_str())
            .bind(thread.as_str())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("list"))?;
        rows.iter()
            .map(|r| decode_row(thread, row_of(r).map_err(db_err("list"))?))
            .collect()
    }

    async fn delete_thread(&self, ctx: &RequestContext, thread: &ThreadId) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err("delete"))?;
        for q in &self.sql.delete {
            sqlx::query(q)
                .bind(ctx.tenant().as_str())
                .bind(thread.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err("delete"))?;
        }
        tx.commit().await.map_err(db_err("delete"))
    }
}
