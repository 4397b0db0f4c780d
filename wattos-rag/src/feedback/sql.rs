//! SQL feedback storage: SQLite (embedded) and Postgres (shared), same statements.

use async_trait::async_trait;
use sqlx::Row as _;
use wattos_core::{Error, RequestContext, Result};

use super::{Feedback, FeedbackFilter, FeedbackReport, FeedbackStore, NewFeedback, RatingStats};

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

/// Feedback in SQLite or Postgres, table `<prefix>feedback` (default prefix `wattos_`).
#[derive(Debug, Clone)]
pub struct SqlFeedbackStore {
    pool: Pool,
    p: String,
}

fn db_err(op: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| Error::unavailable(format!("feedback store {op} failed: {e}")).with_source(e)
}

fn check_prefix(prefix: &str) -> Result<()> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 40
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !prefix.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_field(
            "table_prefix",
            "must be 1-40 lowercase letters, digits or underscores, not starting with a digit",
        ))
    }
}

fn schema(p: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {p}feedback (
            tenant TEXT NOT NULL,
            id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            request_id TEXT NOT NULL,
            rating BIGINT NOT NULL,
            model TEXT,
            collection TEXT,
            body TEXT NOT NULL,
            PRIMARY KEY (tenant, id)
        );
        CREATE INDEX IF NOT EXISTS {p}feedback_by_time ON {p}feedback (tenant, created_ms);
        CREATE INDEX IF NOT EXISTS {p}feedback_by_request ON {p}feedback (tenant, request_id);"
    )
}

const COLS: &str = "id, tenant, user_id, created_ms, body";

macro_rules! feedback_of {
    ($r:expr) => {{
        let r = $r;
        let body: String = r.try_get(4).map_err(db_err("read"))?;
        Feedback {
            id: r.try_get(0).map_err(db_err("read"))?,
            tenant: r.try_get(1).map_err(db_err("read"))?,
            user: r.try_get(2).map_err(db_err("read"))?,
            created_ms: r.try_get(3).map_err(db_err("read"))?,
            body: serde_json::from_str(&body)
                .map_err(|e| Error::internal(format!("corrupt feedback record: {e}")))?,
        }
    }};
}

impl SqlFeedbackStore {
    /// Opens (creating if needed) a SQLite file and the table.
    ///
    /// # Errors
    /// Invalid prefix; the file cannot be opened or migrated (`Unavailable`).
    #[cfg(feature = "sqlite")]
    pub async fn open_sqlite(path: impl AsRef<std::path::Path>, prefix: &str) -> Result<Self> {
        use std::str::FromStr;
        check_prefix(prefix)?;
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite://")
            .map_err(db_err("open"))?
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(db_err("open"))?;
        sqlx::raw_sql(&schema(prefix))
            .execute(&pool)
            .await
            .map_err(db_err("migrate"))?;
        Ok(Self {
            pool: Pool::Sqlite(pool),
            p: prefix.to_owned(),
        })
    }

    /// Uses a Postgres pool and creates the table.
    ///
    /// # Errors
    /// Invalid prefix; migration failures (`Unavailable`).
    #[cfg(feature = "postgres")]
    pub async fn postgres(pool: sqlx::PgPool, prefix: &str) -> Result<Self> {
        check_prefix(prefix)?;
        let mut tx = pool.begin().await.map_err(db_err("migrate"))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("{prefix}feedback"))
            .execute(&mut *tx)
            .await
            .map_err(db_err("migrate"))?;
        sqlx::raw_sql(&schema(prefix))
            .execute(&mut *tx)
            .await
            .map_err(db_err("migrate"))?;
        tx.commit().await.map_err(db_err("migrate"))?;
        Ok(Self {
            pool: Pool::Postgres(pool),
            p: prefix.to_owned(),
        })
    }

    /// Connects to Postgres at `url` and creates the table.
    ///
    /// # Errors
    /// As [`SqlFeedbackStore::postgres`]; connection failures.
    #[cfg(feature = "postgres")]
    pub async fn connect_postgres(url: &str, prefix: &str) -> Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await
            .map_err(db_err("connect"))?;
        Self::postgres(pool, prefix).await
    }

    async fn stats(&self, ctx: &RequestContext, column: &str) -> Result<Vec<RatingStats>> {
        let p = &self.p;
        let sql = format!(
            "SELECT COALESCE({column}, '(none)') AS k, COUNT(*), CAST(SUM(rating) AS BIGINT), \
             CAST(SUM(CASE WHEN rating >= $1 THEN 1 ELSE 0 END) AS BIGINT) \
             FROM {p}feedback WHERE tenant = $2 GROUP BY k ORDER BY k"
        );
        let out = on_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(i64::from(super::POSITIVE_RATING))
                .bind(ctx.tenant().as_str())
                .fetch_all(pool)
                .await
                .map_err(db_err("report"))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let count: i64 = r.try_get(1).map_err(db_err("report"))?;
                let sum: i64 = r.try_get(2).map_err(db_err("report"))?;
                let positive: i64 = r.try_get(3).map_err(db_err("report"))?;
                out.push(RatingStats {
                    key: r.try_get(0).map_err(db_err("report"))?,
                    count: u64::try_from(count).unwrap_or(0),
                    mean: if count > 0 { sum as f64 / count as f64 } else { 0.0 },
                    positive: u64::try_from(positive).unwrap_or(0),
                });
            }
            out
        });
        Ok(out)
    }
}

#[async_trait]
impl FeedbackStore for SqlFeedbackStore {
    async fn record(&self, ctx: &RequestContext, feedback: NewFeedback) -> Result<Feedback> {
        feedback.validate()?;
        let fb = Feedback {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: ctx.tenant().as_str().to_owned(),
            user: ctx.principal().subject.clone(),
            created_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            body: feedback,
        };
        let body = serde_json::to_string(&fb.body)
            .map_err(|e| Error::invalid_input(format!("cannot encode feedback: {e}")))?;
        let p = &self.p;
        let sql = format!(
            "INSERT INTO {p}feedback (tenant, id, user_id, created_ms, request_id, rating, model, collection, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        on_pool!(self, pool => {
            sqlx::query(&sql)
                .bind(&fb.tenant)
                .bind(&fb.id)
                .bind(&fb.user)
                .bind(fb.created_ms)
                .bind(&fb.body.request_id)
                .bind(i64::from(fb.body.rating))
                .bind(&fb.body.model)
                .bind(&fb.body.collection)
                .bind(&body)
                .execute(pool)
                .await
                .map_err(db_err("record"))?;
        });
        metrics::counter!("wattos_rag_feedback_total").increment(1);
        Ok(fb)
    }

    async fn list(&self, ctx: &RequestContext, filter: &FeedbackFilter) -> Result<Vec<Feedback>> {
        let p = &self.p;
        let limit = i64::from(filter.limit.unwrap_or(10_000).clamp(1, 10_000));
        let sql = format!(
            "SELECT {COLS} FROM {p}feedback WHERE tenant = $1 \
             AND ($2 IS NULL OR model = $2) AND ($3 IS NULL OR collection = $3) \
             AND rating >= $4 ORDER BY created_ms DESC, id DESC LIMIT $5"
        );
        let out = on_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(ctx.tenant().as_str())
                .bind(&filter.model)
                .bind(&filter.collection)
                .bind(i64::from(filter.min_rating.unwrap_or(0)))
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(db_err("list"))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(feedback_of!(r));
            }
            out
        });
        Ok(out)
    }

    async fn report(&self, ctx: &RequestContext) -> Result<FeedbackReport> {
        let by_model = self.stats(ctx, "model").await?;
        let by_collection = self.stats(ctx, "collection").await?;
        Ok(FeedbackReport {
            total: by_model.iter().map(|s| s.count).sum(),
            by_model,
            by_collection,
        })
    }
}
