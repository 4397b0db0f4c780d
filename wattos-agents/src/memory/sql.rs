//! Durable memories in SQLite (embedded) or Postgres (shared), with the same statements (`$n`
//! placeholders in order of first use, which both engines accept).

#[cfg(feature = "sqlite")]
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row as _;
use wattos_core::{Error, Result};

use super::index::{Engine, ExpiredKey, MemoryIndex, Rows};
use super::store::{Memory, Namespace, delegate_memory_store};
use crate::checkpoint::sql::check_ident;

#[derive(Debug, Clone)]
enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

macro_rules! on_pool {
    ($self:ident, $p:ident => $body:expr) => {
        match &$self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite($p) => $body,
            #[cfg(feature = "postgres")]
            Pool::Postgres($p) => $body,
        }
    };
}

fn db_err(op: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| Error::unavailable(format!("memory store {op} failed: {e}")).with_source(e)
}

fn schema(p: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {p}memories (
            tenant TEXT NOT NULL,
            owner TEXT NOT NULL,
            ns TEXT NOT NULL,
            id TEXT NOT NULL,
            text TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{{}}',
            created_ms BIGINT NOT NULL,
            updated_ms BIGINT NOT NULL,
            expires_ms BIGINT,
            PRIMARY KEY (tenant, owner, ns, id)
        );
        CREATE INDEX IF NOT EXISTS {p}memories_recent
            ON {p}memories (tenant, owner, updated_ms);
        CREATE INDEX IF NOT EXISTS {p}memories_expiry
            ON {p}memories (expires_ms) WHERE expires_ms IS NOT NULL;"
    )
}

const COLS: &str = "owner, ns, id, text, metadata, created_ms, updated_ms, expires_ms";

macro_rules! memory_of {
    ($r:expr) => {{
        let r = $r;
        let owner: String = r.try_get(0).map_err(db_err("read"))?;
        let ns: String = r.try_get(1).map_err(db_err("read"))?;
        let metadata: String = r.try_get(4).map_err(db_err("read"))?;
        Memory {
            namespace: Namespace::from_key(owner, &ns)
                .map_err(|e| Error::internal(format!("corrupt memory namespace: {e}")))?,
            id: r.try_get(2).map_err(db_err("read"))?,
            text: r.try_get(3).map_err(db_err("read"))?,
            metadata: serde_json::from_str(&metadata)
                .map_err(|e| Error::internal(format!("corrupt memory metadata: {e}")))?,
            created_ms: r.try_get(5).map_err(db_err("read"))?,
            updated_ms: r.try_get(6).map_err(db_err("read"))?,
            expires_ms: r.try_get(7).map_err(db_err("read"))?,
        }
    }};
}

/// The rows of [`SqlMemoryStore`]: table `<prefix>memories`.
#[derive(Debug, Clone)]
pub(crate) struct SqlRows {
    pool: Pool,
    p: String,
}

/// Memories in SQLite or Postgres (table `<prefix>memories`, default prefix `wattos_`), searched
/// through an optional [`MemoryIndex`] (keywords otherwise). Durable: reopening the database (and a
/// durable vector store) finds everything again.
pub struct SqlMemoryStore {
    engine: Engine<SqlRows>,
}

impl std::fmt::Debug for SqlMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlMemoryStore")
            .field("rows", self.engine.rows())
            .finish_non_exhaustive()
    }
}

delegate_memory_store!(SqlMemoryStore);

impl SqlMemoryStore {
    /// Opens (creating if needed) a SQLite file and its table.
    ///
    /// # Errors
    /// Invalid prefix; the file cannot be opened or migrated (`Unavailable`).
    #[cfg(feature = "sqlite")]
    pub async fn open_sqlite(path: impl AsRef<Path>, prefix: &str) -> Result<Self> {
        use std::str::FromStr;
        check_ident("table_prefix", prefix)?;
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite://")
            .map_err(db_err("open"))?
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(db_err("open"))?;
        sqlx::raw_sql(&schema(prefix))
            .execute(&pool)
            .await
            .map_err(db_err("migrate"))?;
        Ok(Self::over(Pool::Sqlite(pool), prefix))
    }

    /// Uses a Postgres pool and creates the table.
    ///
    /// # Errors
    /// Invalid prefix; migration failures (`Unavailable`).
    #[cfg(feature = "postgres")]
    pub async fn postgres(pool: sqlx::PgPool, prefix: &str) -> Result<Self> {
        check_ident("table_prefix", prefix)?;
        // Concurrent first starts race on CREATE TABLE IF NOT EXISTS; serialise them.
        let mut tx = pool.begin().await.map_err(db_err("migrate"))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("{prefix}memories"))
            .execute(&mut *tx)
            .await
            .map_err(db_err("migrate"))?;
        sqlx::raw_sql(&schema(prefix))
            .execute(&mut *tx)
            .await
            .map_err(db_err("migrate"))?;
        tx.commit().await.map_err(db_err("migrate"))?;
        Ok(Self::over(Pool::Postgres(pool), prefix))
    }

    /// Connects to Postgres at `url` (pool of 8) and creates the table.
    ///
    /// # Errors
    /// As [`SqlMemoryStore::postgres`]; connection failures.
    #[cfg(feature = "postgres")]
    pub async fn connect_postgres(url: &str, prefix: &str) -> Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await
            .map_err(db_err("connect"))?;
        Self::postgres(pool, prefix).await
    }

    fn over(pool: Pool, prefix: &str) -> Self {
        Self {
            engine: Engine::new(SqlRows {
                pool,
                p: prefix.to_owned(),
            }),
        }
    }

    /// Ranks searches semantically through `index`.
    #[must_use]
    pub fn with_index(mut self, index: MemoryIndex) -> Self {
        self.engine = self.engine.with_index(index);
        self
    }

    /// Memories stored without a TTL expire `ttl` after they are written.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.engine = self.engine.with_default_ttl(ttl);
        self
    }

    /// Deletes every tenant's expired memories (for a periodic sweeper); how many went.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn purge_all_expired(&self) -> Result<u64> {
        self.engine.purge_all_expired().await
    }
}

fn to_i64(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl Rows for SqlRows {
    async fn upsert(&self, tenant: &str, m: &Memory) -> Result<i64> {
        let p = &self.p;
        let sql = format!(
            "INSERT INTO {p}memories (tenant, owner, ns, id, text, metadata, created_ms, updated_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (tenant, owner, ns, id) DO UPDATE SET text = excluded.text, \
             metadata = excluded.metadata, updated_ms = excluded.updated_ms, \
             expires_ms = excluded.expires_ms \
             RETURNING created_ms"
        );
        let metadata = serde_json::Value::Object(m.metadata.clone()).to_string();
        let created: i64 = on_pool!(self, pool => {
            sqlx::query_scalar(&sql)
                .bind(tenant)
                .bind(m.namespace.user_id())
                .bind(m.namespace.path_key())
                .bind(&m.id)
                .bind(&m.text)
                .bind(&metadata)
                .bind(m.created_ms)
                .bind(m.updated_ms)
                .bind(m.expires_ms)
                .fetch_one(pool)
                .await
                .map_err(db_err("put"))?
        });
        Ok(created)
    }

    async fn get(
        &self,
        tenant: &str,
        ns: &Namespace,
        id: &str,
        now: i64,
    ) -> Result<Option<Memory>> {
        let p = &self.p;
        let sql = format!(
            "SELECT {COLS} FROM {p}memories WHERE tenant = $1 AND owner = $2 AND ns = $3 AND id = $4 \
             AND (expires_ms IS NULL OR expires_ms > $5)"
        );
        Ok(on_pool!(self, pool => {
            let row = sqlx::query(&sql)
                .bind(tenant)
                .bind(ns.user_id())
                .bind(ns.path_key())
                .bind(id)
                .bind(now)
                .fetch_optional(pool)
                .await
                .map_err(db_err("get"))?;
            match row {
                Some(r) => Some(memory_of!(&r)),
                None => None,
            }
        }))
    }

    async fn scan(
        &self,
        tenant: &str,
        prefix: &Namespace,
        now: i64,
        limit: Option<usize>,
    ) -> Result<Vec<Memory>> {
        let p = &self.p;
        let key = prefix.path_key();
        // Path keys are ASCII (segments are), so a character prefix is a byte prefix.
        let sql = format!(
            "SELECT {COLS} FROM {p}memories WHERE tenant = $1 AND owner = $2 \
             AND substr(ns, 1, CAST($3 AS INTEGER)) = $4 \
             AND (expires_ms IS NULL OR expires_ms > $5) \
             ORDER BY updated_ms DESC, id LIMIT $6"
        );
        let limit = limit.map_or(i64::MAX, to_i64);
        let mut out = Vec::new();
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(tenant)
                .bind(prefix.user_id())
                .bind(i32::try_from(key.len()).unwrap_or(i32::MAX))
                .bind(&key)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(db_err("scan"))?;
            for r in &rows {
                out.push(memory_of!(r));
            }
        });
        Ok(out)
    }

    async fn delete(&self, tenant: &str, ns: &Namespace, id: &str) -> Result<bool> {
        let p = &self.p;
        let sql = format!(
            "DELETE FROM {p}memories WHERE tenant = $1 AND owner = $2 AND ns = $3 AND id = $4"
        );
        let n = on_pool!(self, pool => {
            sqlx::query(&sql)
                .bind(tenant)
                .bind(ns.user_id())
                .bind(ns.path_key())
                .bind(id)
                .execute(pool)
                .await
                .map_err(db_err("forget"))?
                .rows_affected()
        });
        Ok(n > 0)
    }

    async fn delete_user(&self, tenant: &str, user: &str) -> Result<u64> {
        let p = &self.p;
        let sql = format!("DELETE FROM {p}memories WHERE tenant = $1 AND owner = $2");
        Ok(on_pool!(self, pool => {
            sqlx::query(&sql)
                .bind(tenant)
                .bind(user)
                .execute(pool)
                .await
                .map_err(db_err("forget_user"))?
                .rows_affected()
        }))
    }

    async fn take_expired(&self, tenant: Option<&str>, now: i64) -> Result<Vec<ExpiredKey>> {
        let p = &self.p;
        let sql = format!(
            "DELETE FROM {p}memories WHERE expires_ms IS NOT NULL AND expires_ms <= $1 \
             AND ($2 IS NULL OR tenant = $3) RETURNING tenant, owner, ns, id"
        );
        let mut out = Vec::new();
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(now)
                .bind(tenant)
                .bind(tenant)
                .fetch_all(pool)
                .await
                .map_err(db_err("purge"))?;
            for r in &rows {
                let owner: String = r.try_get(1).map_err(db_err("purge"))?;
                let ns: String = r.try_get(2).map_err(db_err("purge"))?;
                out.push(ExpiredKey {
                    tenant: r.try_get(0).map_err(db_err("purge"))?,
                    namespace: Namespace::from_key(owner, &ns)?,
                    id: r.try_get(3).map_err(db_err("purge"))?,
                });
            }
        });
        Ok(out)
    }
}
