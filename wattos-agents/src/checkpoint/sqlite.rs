//! A SQLite checkpointer (sqlx): durable in a single file, for one host.

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use wattos_core::checkpoint::{
    Checkpoint, CheckpointId, Checkpointer, PendingWrite, StateBlob, ThreadId, WriteKind,
};
use wattos_core::{RequestContext, Result};

use super::sql::{Row, check_ident, db_err, decode_row, encode_body, step_i64};

/// Stores checkpoints in a SQLite file (WAL journal, `synchronous=NORMAL`: safe against process crashes;
/// a power loss may drop the last few commits). Tables are named `<prefix>checkpoints` and
/// `<prefix>checkpoint_writes` (default prefix `wattos_`).
#[derive(Debug, Clone)]
pub struct SqliteCheckpointer {
    pool: SqlitePool,
    p: String,
}

fn row_of(r: &sqlx::sqlite::SqliteRow) -> std::result::Result<Row, sqlx::Error> {
    Ok(Row {
        id: r.try_get(0)?,
        parent: r.try_get(1)?,
        step: r.try_get(2)?,
        full: r.try_get(3)?,
        state: r.try_get(4)?,
        body: r.try_get(5)?,
    })
}

const COLS: &str = "id, parent, step, state_full, state, body";

impl SqliteCheckpointer {
    /// Opens (creating if needed) the database file at `path` and creates the tables.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::Unavailable`] when the file cannot be opened or migrated.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_prefix(path, "wattos_").await
    }

    /// As [`SqliteCheckpointer::open`] with a table name prefix.
    ///
    /// # Errors
    /// Invalid prefix; the file cannot be opened or migrated.
    pub async fn open_with_prefix(path: impl AsRef<Path>, prefix: &str) -> Result<Self> {
        check_ident("table_prefix", prefix)?;
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(db_err("open"))?
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(db_err("open"))?;
        let p = prefix.to_owned();
        sqlx::raw_sql(&format!(
            "CREATE TABLE IF NOT EXISTS {p}checkpoints (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                tenant TEXT NOT NULL,
                thread TEXT NOT NULL,
                id BLOB NOT NULL,
                parent BLOB,
                step INTEGER NOT NULL,
                state_full BOOLEAN NOT NULL,
                state BLOB NOT NULL,
                body BLOB NOT NULL,
                UNIQUE (tenant, thread, id)
            );
            CREATE INDEX IF NOT EXISTS {p}checkpoints_latest ON {p}checkpoints (tenant, thread, seq);
            CREATE TABLE IF NOT EXISTS {p}checkpoint_writes (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                tenant TEXT NOT NULL,
                thread TEXT NOT NULL,
                checkpoint BLOB NOT NULL,
                task_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                payload BLOB NOT NULL
            );
            CREATE INDEX IF NOT EXISTS {p}checkpoint_writes_by_checkpoint
                ON {p}checkpoint_writes (tenant, thread, checkpoint, seq);"
        ))
        .execute(&pool)
        .await
        .map_err(db_err("migrate"))?;
        Ok(Self { pool, p })
    }
}

impl SqliteCheckpointer {
    async fn insert(
        &self,
        conn: &mut sqlx::SqliteConnection,
        ctx: &RequestContext,
        c: Checkpoint,
    ) -> Result<()> {
        let body = encode_body(&c)?;
        let full = c.state.is_full();
        let state = match c.state {
            StateBlob::Full(b) | StateBlob::Delta(b) => b,
        };
        let p = &self.p;
        sqlx::query(&format!(
            "INSERT INTO {p}checkpoints (tenant, thread, id, parent, step, state_full, state, body) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(ctx.tenant().as_str())
        .bind(c.thread.as_str())
        .bind(c.id.0)
        .bind(c.parent.map(|p| p.0))
        .bind(step_i64(c.step)?)
        .bind(full)
        .bind(state)
        .bind(body)
        .execute(conn)
        .await
        .map_err(db_err("put"))?;
        Ok(())
    }
}

#[async_trait]
impl Checkpointer for SqliteCheckpointer {
    async fn put(&self, ctx: &RequestContext, c: Checkpoint) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(db_err("put"))?;
        self.insert(&mut conn, ctx, c).await
    }

    async fn put_batch(&self, ctx: &RequestContext, checkpoints: Vec<Checkpoint>) -> Result<()> {
        // Multi-row inserts (one statement per 100 checkpoints) in one transaction: each statement is
        // a hop to sqlx's SQLite thread, so fewer statements matter more than the SQL itself.
        let p = &self.p;
        let mut tx = self.pool.begin().await.map_err(db_err("put_batch"))?;
        let mut rest = checkpoints;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(100));
            let chunk = std::mem::replace(&mut rest, tail);
            let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO {p}checkpoints (tenant, thread, id, parent, step, state_full, state, body) VALUES {values}"
            );
            let mut q = sqlx::query(&sql);
            for c in chunk {
                let body = encode_body(&c)?;
                let full = c.state.is_full();
                let state = match c.state {
                    StateBlob::Full(b) | StateBlob::Delta(b) => b,
                };
                q = q
                    .bind(ctx.tenant().as_str().to_owned())
                    .bind(c.thread.as_str().to_owned())
                    .bind(c.id.0)
                    .bind(c.parent.map(|p| p.0))
                    .bind(step_i64(c.step)?)
                    .bind(full)
                    .bind(state)
                    .bind(body);
            }
            q.execute(&mut *tx).await.map_err(db_err("put_batch"))?;
        }
        tx.commit().await.map_err(db_err("put_batch"))
    }

    async fn put_writes(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        checkpoint: CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<()> {
        let p = &self.p;
        let sql = format!(
            "INSERT INTO {p}checkpoint_writes (tenant, thread, checkpoint, task_id, kind, payload) \
             VALUES (?, ?, ?, ?, ?, ?)"
        );
        let mut tx = self.pool.begin().await.map_err(db_err("put_writes"))?;
        for w in writes {
            sqlx::query(&sql)
                .bind(ctx.tenant().as_str())
                .bind(thread.as_str())
                .bind(checkpoint.0)
                .bind(w.task_id)
                .bind(w.kind.as_str())
                .bind(w.payload)
                .execute(&mut *tx)
                .await
                .map_err(db_err("put_writes"))?;
        }
        tx.commit().await.map_err(db_err("put_writes"))
    }

    async fn get(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        id: Option<CheckpointId>,
    ) -> Result<Option<Checkpoint>> {
        let p = &self.p;
        let row = match id {
            None => {
                sqlx::query(&format!(
                    "SELECT {COLS} FROM {p}checkpoints WHERE tenant = ? AND thread = ? ORDER BY seq DESC LIMIT 1"
                ))
                .bind(ctx.tenant().as_str())
                .bind(thread.as_str())
                .fetch_optional(&self.pool)
                .await
            }
            Some(id) => {
                sqlx::query(&format!(
                    "SELECT {COLS} FROM {p}checkpoints WHERE tenant = ? AND thread = ? AND id = ?"
                ))
                .bind(ctx.tenant().as_str())
                .bind(thread.as_str())
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await
            }
        }
        .map_err(db_err("get"))?;
        row.map(|r| decode_row(thread, row_of(&r).map_err(db_err("get"))?))
            .transpose()
    }

    async fn get_writes(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        checkpoint: CheckpointId,
    ) -> Result<Vec<PendingWrite>> {
        let p = &self.p;
        let rows = sqlx::query(&format!(
            "SELECT task_id, kind, payload FROM {p}checkpoint_writes \
             WHERE tenant = ? AND thread = ? AND checkpoint = ? ORDER BY seq"
        ))
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
        let p = &self.p;
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM {p}checkpoints WHERE tenant = ? AND thread = ? ORDER BY seq DESC LIMIT ?"
        ))
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
        let p = &self.p;
        let mut tx = self.pool.begin().await.map_err(db_err("delete"))?;
        for table in ["checkpoint_writes", "checkpoints"] {
            sqlx::query(&format!(
                "DELETE FROM {p}{table} WHERE tenant = ? AND thread = ?"
            ))
            .bind(ctx.tenant().as_str())
            .bind(thread.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err("delete"))?;
        }
        tx.commit().await.map_err(db_err("delete"))
    }
}
