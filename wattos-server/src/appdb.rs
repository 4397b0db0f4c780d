//! [`AppDb`]: the SQL tables of the RAG and agents APIs (collections, documents, agent runs) in the
//! same database as the tenancy store: a SQLite file under `data_dir` (embedded) or Postgres
//! (shared), through one code path over `sqlx::Any`.
//!
//! Tables are created with `CREATE TABLE IF NOT EXISTS` under a name prefix (default `wattos_`), so
//! they live beside the tenancy migrations without touching their migration history, and tests can
//! use a unique prefix per run.

use std::sync::Once;

use sqlx::AnyPool;
use wattos_core::config::Config;
use wattos_core::{Error, Result};

/// Default table name prefix.
pub const DEFAULT_PREFIX: &str = "wattos_";

/// A pool plus the table prefix. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppDb {
    pool: AnyPool,
    prefix: String,
}

pub(crate) fn db_err(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::conflict("the object already exists")
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            Error::unavailable("database unavailable").with_source(e)
        }
        _ => Error::internal("database error").with_source(e),
    }
}

fn check_prefix(prefix: &str) -> Result<()> {
    let ok = prefix.len() <= 32
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !prefix.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_field(
            "table_prefix",
            "must be at most 32 lowercase letters, digits or underscores, not starting with a digit",
        ))
    }
}

impl AppDb {
    /// The database URL for `config`: `database.url` when set, else `data_dir/wattos.db` (created).
    ///
    /// # Errors
    /// `unavailable` when the data folder cannot be created.
    pub fn url_for(config: &Config) -> Result<String> {
        if let Some(db) = &config.database {
            return Ok(db.url.expose().clone());
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::unavailable(format!("cannot create {}: {e}", config.data_dir.display()))
                .with_source(e)
        })?;
        Ok(format!(
            "sqlite://{}?mode=rwc",
            config.data_dir.join("wattos.db").display()
        ))
    }

    /// Connects to `url` (`sqlite:...` or `postgres://...`) and creates the tables under `prefix`.
    ///
    /// # Errors
    /// `invalid_input` for an unknown scheme or a bad prefix, `unavailable` when the database cannot
    /// be reached.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        Self::connect_with(url, prefix, crate::dbpool::PoolSpec::default()).await
    }

    /// Like [`AppDb::connect`] with the pool size and acquire timeout of `spec`.
    ///
    /// # Errors
    /// As [`AppDb::connect`].
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        spec: crate::dbpool::PoolSpec,
    ) -> Result<Self> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        check_prefix(prefix)?;
        let sqlite = url.starts_with("sqlite:");
        if !sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(Error::invalid_field(
                "database.url",
                "expected a sqlite: or postgres:// URL",
            ));
        }
        let in_memory = sqlite && url.contains(":memory:");
        let pool = spec
            .any()
            .max_connections(if in_memory { 1 } else { spec.max_connections })
            .connect(url)
            .await
            .map_err(|e| Error::unavailable("cannot connect to the database").with_source(e))?;
        let db = Self {
            pool,
            prefix: prefix.to_owned(),
        };
        db.create_tables(!sqlite).await?;
        Ok(db)
    }

    /// Creates the tables. On PostgreSQL, instances that start together serialize on an advisory
    /// lock: concurrent `CREATE TABLE IF NOT EXISTS` can otherwise fail on the catalog's unique index.
    async fn create_tables(&self, postgres: bool) -> Result<()> {
        let p = &self.prefix;
        let statements = [
            format!(
                "CREATE TABLE IF NOT EXISTS {p}rag_collections (
                    tenant_id TEXT NOT NULL,
                    name TEXT NOT NULL,
                    description TEXT,
                    created_at BIGINT NOT NULL,
                    PRIMARY KEY (tenant_id, name))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {p}rag_documents (
                    tenant_id TEXT NOT NULL,
                    collection TEXT NOT NULL,
                    id TEXT NOT NULL,
                    title TEXT,
                    location TEXT,
                    format TEXT NOT NULL,
                    content_hash TEXT NOT NULL,
                    chunks BIGINT NOT NULL,
                    bytes BIGINT NOT NULL,
                    metadata TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    updated_at BIGINT NOT NULL,
                    PRIMARY KEY (tenant_id, collection, id))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {p}agent_runs (
                    id TEXT PRIMARY KEY,
                    tenant_id TEXT NOT NULL,
                    graph TEXT NOT NULL,
                    thread_id TEXT NOT NULL,
                    status TEXT NOT NULL,
                    steps BIGINT NOT NULL,
                    reason TEXT,
                    error TEXT,
                    created_at BIGINT NOT NULL,
                    updated_at BIGINT NOT NULL)"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {p}agent_runs_status ON {p}agent_runs (tenant_id, status, created_at)"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {p}agent_runs_thread ON {p}agent_runs (tenant_id, thread_id, created_at)"
            ),
        ];
        let failed =
            |e: sqlx::Error| Error::unavailable("creating the API tables failed").with_source(e);
        let mut tx = self.pool.begin().await.map_err(failed)?;
        if postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('wattos-appdb'))")
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        for sql in statements {
            sqlx::query(&sql).execute(&mut *tx).await.map_err(failed)?;
        }
        tx.commit().await.map_err(failed)?;
        Ok(())
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// `name` with the table prefix.
    pub fn table(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}
