//! A SQLite checkpointer (sqlx): durable in a single file, for one host.
//!
//! One dedicated writer connection stores everything (SQLite has one writer at a time anyway); reads
//! go through a small pool. A [`StepBatch`] is one SQL string of `BEGIN IMMEDIATE; INSERT …; INSERT …;
//! COMMIT`, sent to sqlx's SQLite worker thread as one command: one hop and one commit per batch,
//! whatever its size. Statements are prepared once per batch shape and cached by the connection.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex as StdMutex};

use async_trait::async_trait;
use sqlx::Connection as _;
use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use wattos_core::checkpoint::{
    Checkpoint, CheckpointId, CheckpointWrites, Checkpointer, PendingWrite, StateBlob, StepBatch,
    ThreadId, WriteKind,
};
use wattos_core::{RequestContext, Result};

use super::sql::{Row, check_ident, db_err, decode_row, encode_body, step_i64};

/// SQLite's `synchronous` setting for the checkpoint file (always in WAL journal mode): what a
/// committed checkpoint survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSynchronous {
    /// Every commit waits for the WAL to reach the disk (`fsync`): a committed checkpoint survives a
    /// process crash and a power loss or OS crash. The default; each `Durability::Sync` step then
    /// costs one `fsync` of the disk.
    #[default]
    Full,
    /// Commits are written to the WAL without `fsync` (synced at WAL checkpoints): a committed
    /// checkpoint survives a crash of the process, but a power loss or OS crash may roll back the last
    /// commits (the database stays consistent; a run resumes from a slightly older step).
    Normal,
}

impl SqliteSynchronous {
    fn to_sqlx(self) -> sqlx::sqlite::SqliteSynchronous {
        match self {
            Self::Full => sqlx::sqlite::SqliteSynchronous::Full,
            Self::Normal => sqlx::sqlite::SqliteSynchronous::Normal,
        }
    }
}

/// Options of [`SqliteCheckpointer::open_with`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Prefix of the table names (default `wattos_`): `<prefix>checkpoints`, `<prefix>checkpoint_writes`.
    pub table_prefix: String,
    /// What a commit survives (default [`SqliteSynchronous::Full`]).
    pub synchronous: SqliteSynchronous,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            table_prefix: "wattos_".into(),
            synchronous: SqliteSynchronous::Full,
        }
    }
}

impl SqliteOptions {
    /// Sets [`SqliteOptions::synchronous`].
    #[must_use]
    pub fn synchronous(mut self, synchronous: SqliteSynchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Sets [`SqliteOptions::table_prefix`].
    #[must_use]
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }
}

/// Stores checkpoints in a SQLite file (WAL journal; `synchronous=FULL` by default, see
/// [`SqliteSynchronous`]). Tables are named `<prefix>checkpoints` and `<prefix>checkpoint_writes`
/// (default prefix `wattos_`).
///
/// Writes use one connection of their own, serialized; each [`Checkpointer::put_step`] is one
/// transaction and one commit. Reads use a pool.
#[derive(Clone)]
pub struct SqliteCheckpointer {
    pool: SqlitePool,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    shapes: Arc<Shapes>,
    p: String,
    synchronous: SqliteSynchronous,
}

impl std::fmt::Debug for SqliteCheckpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteCheckpointer")
            .field("table_prefix", &self.p)
            .field("synchronous", &self.synchronous)
            .finish_non_exhaustive()
    }
}

/// SQL text per batch shape (pending writes, checkpoints).
type Shapes = StdMutex<HashMap<(usize, usize), Arc<str>>>;

struct Writer {
    conn: SqliteConnection,
    /// A batch was sent and its caller did not see it finish (cancelled): its transaction may be open.
    dirty: bool,
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
/// Rows per `INSERT` statement (8 parameters each, far below SQLite's limit).
const ROWS_PER_INSERT: usize = 64;
/// Batch shapes whose SQL text is kept (each is prepared once per shape by the writer connection).
const SHAPES_KEPT: usize = 256;

impl SqliteCheckpointer {
    /// Opens (creating if needed) the database file at `path` with the default [`SqliteOptions`]
    /// (`synchronous=FULL`) and creates the tables.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::Unavailable`] when the file cannot be opened or migrated.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// As [`SqliteCheckpointer::open`] with a table name prefix.
    ///
    /// # Errors
    /// Invalid prefix; the file cannot be opened or migrated.
    pub async fn open_with_prefix(path: impl AsRef<Path>, prefix: &str) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default().table_prefix(prefix)).await
    }

    /// Opens the database file at `path` with `options`.
    ///
    /// # Errors
    /// Invalid prefix; the file cannot be opened or migrated.
    pub async fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let p = options.table_prefix;
        check_ident("table_prefix", &p)?;
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(db_err("open"))?
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(options.synchronous.to_sqlx())
            // Checkpoint the WAL into the database every 8,192 pages (32 MiB) instead of SQLite's
            // 1,000: a step's commit touches the same few index pages as the last one, so rarer WAL
            // checkpoints copy (and, below FULL, fsync) far fewer pages per commit.
            .pragma("wal_autocheckpoint", "8192")
            .busy_timeout(std::time::Duration::from_secs(5));
        let mut conn = SqliteConnection::connect_with(&opts)
            .await
            .map_err(db_err("open"))?;
        // `seq` is a plain rowid (no AUTOINCREMENT: that updates `sqlite_sequence`, one more page per
        // commit): a new row still gets the largest rowid + 1, so `seq` order stays insertion order.
        // Files created with AUTOINCREMENT keep it and work the same.
        sqlx::raw_sql(&format!(
            "CREATE TABLE IF NOT EXISTS {p}checkpoints (
                seq INTEGER PRIMARY KEY,
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
                seq INTEGER PRIMARY KEY,
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
        .execute(&mut conn)
        .await
        .map_err(db_err("migrate"))?;
        // Readers: the connection is a local file, so no liveness ping before each use.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(opts)
            .await
            .map_err(db_err("open"))?;
        Ok(Self {
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(Writer { conn, dirty: false })),
            shapes: Arc::default(),
            p,
            synchronous: options.synchronous,
        })
    }

    /// The `synchronous` level this checkpointer was opened with.
    pub fn synchronous(&self) -> SqliteSynchronous {
        self.synchronous
    }

    /// The SQL of a batch of `writes` pending writes and `checkpoints` checkpoints: one transaction
    /// (or a lone autocommit `INSERT` for a single row).
    fn batch_sql(&self, writes: usize, checkpoints: usize) -> Arc<str> {
        let key = (writes, checkpoints);
        let mut shapes = self.shapes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sql) = shapes.get(&key) {
            return sql.clone();
        }
        let p = &self.p;
        let single = writes + checkpoints == 1;
        let mut sql = String::new();
        if !single {
            sql.push_str("BEGIN IMMEDIATE;\n");
        }
        let mut push = |n: usize, head: &str, row: &str| {
            let mut left = n;
            while left > 0 {
                let k = left.min(ROWS_PER_INSERT);
                sql.push_str(head);
                sql.push_str(&vec![row; k].join(", "));
                sql.push_str(";\n");
                left -= k;
            }
        };
        push(
            writes,
            &format!(
                "INSERT INTO {p}checkpoint_writes (tenant, thread, checkpoint, task_id, kind, payload) VALUES "
            ),
            "(?, ?, ?, ?, ?, ?)",
        );
        push(
            checkpoints,
            &format!(
                "INSERT INTO {p}checkpoints (tenant, thread, id, parent, step, state_full, state, body) VALUES "
            ),
            "(?, ?, ?, ?, ?, ?, ?, ?)",
        );
        if !single {
            sql.push_str("COMMIT;");
        }
        let sql: Arc<str> = Arc::from(sql);
        if shapes.len() >= SHAPES_KEPT {
            shapes.clear();
        }
        shapes.insert(key, sql.clone());
        sql
    }

    /// Runs `sql` with `args` on the writer connection; rolls back whatever it left open on failure
    /// (or after a cancelled call).
    async fn write(
        &self,
        op: &'static str,
        sql: &str,
        args: sqlx::sqlite::SqliteArguments<'_>,
    ) -> Result<()> {
        let mut w = self.writer.lock().await;
        if w.dirty {
            // A previous call was dropped mid-batch: its transaction may still be open.
            sqlx::query("ROLLBACK").execute(&mut w.conn).await.ok();
        }
        w.dirty = true;
        let result = sqlx::query_with(sql, args).execute(&mut w.conn).await;
        if result.is_err() {
            sqlx::query("ROLLBACK").execute(&mut w.conn).await.ok();
        }
        w.dirty = false;
        result.map(|_| ()).map_err(db_err(op))
    }

    async fn store(&self, op: &'static str, ctx: &RequestContext, batch: StepBatch) -> Result<()> {
        use sqlx::Arguments as _;
        let writes = batch.write_count();
        let checkpoints = batch.checkpoints.len();
        if writes + checkpoints == 0 {
            return Ok(());
        }
        let sql = self.batch_sql(writes, checkpoints);
        let tenant = ctx.tenant().as_str();
        let mut args = sqlx::sqlite::SqliteArguments::default();
        let bind_err = |e: sqlx::error::BoxDynError| db_err(op)(sqlx::Error::Encode(e));
        for set in &batch.writes {
            for w in &set.writes {
                args.add(tenant).map_err(bind_err)?;
                args.add(set.thread.as_str()).map_err(bind_err)?;
                args.add(set.checkpoint.0).map_err(bind_err)?;
                args.add(w.task_id.as_str()).map_err(bind_err)?;
                args.add(w.kind.as_str()).map_err(bind_err)?;
                args.add(w.payload.as_slice()).map_err(bind_err)?;
            }
        }
        let mut bodies = Vec::with_capacity(checkpoints);
        for c in &batch.checkpoints {
            bodies.push(encode_body(c)?);
        }
        for (c, body) in batch.checkpoints.iter().zip(bodies) {
            args.add(tenant).map_err(bind_err)?;
            args.add(c.thread.as_str()).map_err(bind_err)?;
            args.add(c.id.0).map_err(bind_err)?;
            args.add(c.parent.map(|p| p.0)).map_err(bind_err)?;
            args.add(step_i64(c.step)?).map_err(bind_err)?;
            args.add(c.state.is_full()).map_err(bind_err)?;
            args.add(match &c.state {
                StateBlob::Full(b) | StateBlob::Delta(b) => b.as_slice(),
            })
            .map_err(bind_err)?;
            args.add(body).map_err(bind_err)?;
        }
        self.write(op, &sql, args).await
    }
}

#[async_trait]
impl Checkpointer for SqliteCheckpointer {
    async fn put(&self, ctx: &RequestContext, c: Checkpoint) -> Result<()> {
        self.store(
            "put",
            ctx,
            StepBatch {
                writes: Vec::new(),
                checkpoints: vec![c],
            },
        )
        .await
    }

    async fn put_batch(&self, ctx: &RequestContext, checkpoints: Vec<Checkpoint>) -> Result<()> {
        self.store(
            "put_batch",
            ctx,
            StepBatch {
                writes: Vec::new(),
                checkpoints,
            },
        )
        .await
    }

    async fn put_writes(
        &self,
        ctx: &RequestContext,
        thread: &ThreadId,
        checkpoint: CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<()> {
        self.store(
            "put_writes",
            ctx,
            StepBatch {
                writes: vec![CheckpointWrites {
                    thread: thread.clone(),
                    checkpoint,
                    writes,
                }],
                checkpoints: Vec::new(),
            },
        )
        .await
    }

    /// One transaction, one commit, one hop to the SQLite thread.
    async fn put_step(&self, ctx: &RequestContext, batch: StepBatch) -> Result<()> {
        self.store("put_step", ctx, batch).await
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
        use sqlx::Arguments as _;
        let p = &self.p;
        let sql = format!(
            "BEGIN IMMEDIATE; DELETE FROM {p}checkpoint_writes WHERE tenant = ? AND thread = ?; \
             DELETE FROM {p}checkpoints WHERE tenant = ? AND thread = ?; COMMIT;"
        );
        let mut args = sqlx::sqlite::SqliteArguments::default();
        for _ in 0..2 {
            args.add(ctx.tenant().as_str())
                .map_err(|e| db_err("delete")(sqlx::Error::Encode(e)))?;
            args.add(thread.as_str())
                .map_err(|e| db_err("delete")(sqlx::Error::Encode(e)))?;
        }
        self.write("delete", &sql, args).await
    }
}
