//! The run store: one row per agent run (graph, thread, status), per tenant, in SQL.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use wattos_core::{Error, Result, TenantId};

use crate::appdb::{AppDb, db_err};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Executing.
    Running,
    /// Every branch reached the end.
    Completed,
    /// Waiting for a human: resume it.
    Interrupted,
    /// A human rejected a step; the run stopped there.
    Rejected,
    /// A node, the model or the store failed (see `error`).
    Failed,
}

impl RunState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Interrupted => "interrupted",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "running" => Self::Running,
            "completed" => Self::Completed,
            "interrupted" => Self::Interrupted,
            "rejected" => Self::Rejected,
            "failed" => Self::Failed,
            other => return Err(Error::internal(format!("unknown run status {other:?}"))),
        })
    }
}

/// A run's error, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunError {
    /// Stable error code.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// A run row.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// Run id.
    pub id: String,
    /// Graph name.
    pub graph: String,
    /// Thread id (scoped by tenant).
    pub thread_id: String,
    /// Status.
    pub status: RunState,
    /// Supersteps run so far (all calls).
    pub steps: i64,
    /// Rejection reason.
    pub reason: Option<String>,
    /// Failure.
    pub error: Option<RunError>,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms.
    pub updated_at_ms: i64,
}

/// How a run (or a resumed part of it) ended, for [`RunStore::finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    /// The new status.
    pub status: RunState,
    /// Supersteps run by this part.
    pub steps: i64,
    /// Rejection reason.
    pub reason: Option<String>,
    /// Failure.
    pub error: Option<RunError>,
}

/// Filter of [`RunStore::list`].
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs in this status.
    pub status: Option<RunState>,
    /// Only runs of this graph.
    pub graph: Option<String>,
    /// Only runs on this thread.
    pub thread_id: Option<String>,
    /// At most this many (newest first).
    pub limit: i64,
}

/// Runs per tenant.
#[derive(Debug, Clone)]
pub struct RunStore {
    db: AppDb,
    table: String,
}

const COLS: &str = "id, graph, thread_id, status, steps, reason, error, created_at, updated_at";

fn row_to_run(row: &AnyRow) -> Result<RunRow> {
    let status: String = row.try_get("status").map_err(db_err)?;
    let error: Option<String> = row.try_get("error").map_err(db_err)?;
    Ok(RunRow {
        id: row.try_get("id").map_err(db_err)?,
        graph: row.try_get("graph").map_err(db_err)?,
        thread_id: row.try_get("thread_id").map_err(db_err)?,
        status: RunState::parse(&status)?,
        steps: row.try_get("steps").map_err(db_err)?,
        reason: row.try_get("reason").map_err(db_err)?,
        error: error.and_then(|e| serde_json::from_str(&e).ok()),
        created_at_ms: row.try_get("created_at").map_err(db_err)?,
        updated_at_ms: row.try_get("updated_at").map_err(db_err)?,
    })
}

impl RunStore {
    /// Runs in `db`'s `agent_runs` table.
    pub fn new(db: AppDb) -> Self {
        Self {
            table: db.table("agent_runs"),
            db,
        }
    }

    /// Records a new run.
    ///
    /// # Errors
    /// Database failures.
    pub async fn insert(&self, tenant: &TenantId, run: &RunRow) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO {} (tenant_id, {COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            self.table
        ))
        .bind(tenant.as_str())
        .bind(&run.id)
        .bind(&run.graph)
        .bind(&run.thread_id)
        .bind(run.status.as_str())
        .bind(run.steps)
        .bind(run.reason.clone())
        .bind(
            run.error
                .as_ref()
                .and_then(|e| serde_json::to_string(e).ok()),
        )
        .bind(run.created_at_ms)
        .bind(run.updated_at_ms)
        .execute(self.db.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// One run of the tenant.
    ///
    /// # Errors
    /// Database failures.
    pub async fn get(&self, tenant: &TenantId, id: &str) -> Result<Option<RunRow>> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM {} WHERE tenant_id = $1 AND id = $2",
            self.table
        ))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_err)?;
        row.as_ref().map(row_to_run).transpose()
    }

    /// The newest run on a thread of the tenant.
    ///
    /// # Errors
    /// Database failures.
    pub async fn latest_on_thread(
        &self,
        tenant: &TenantId,
        thread: &str,
    ) -> Result<Option<RunRow>> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM {} WHERE tenant_id = $1 AND thread_id = $2
             ORDER BY created_at DESC, id DESC LIMIT 1",
            self.table
        ))
        .bind(tenant.as_str())
        .bind(thread)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_err)?;
        row.as_ref().map(row_to_run).transpose()
    }

    /// The tenant's runs matching `filter`, newest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list(&self, tenant: &TenantId, filter: &RunFilter) -> Result<Vec<RunRow>> {
        // Unused filters compare a column with itself-or-anything via `$n IS NULL`-free SQL: build
        // the WHERE clause from the set filters only.
        let mut sql = format!("SELECT {COLS} FROM {} WHERE tenant_id = $1", self.table);
        let mut binds: Vec<String> = Vec::new();
        for (col, value) in [
            ("status", filter.status.map(|s| s.as_str().to_owned())),
            ("graph", filter.graph.clone()),
            ("thread_id", filter.thread_id.clone()),
        ] {
            if let Some(v) = value {
                binds.push(v);
                sql.push_str(&format!(" AND {col} = ${}", binds.len() + 1));
            }
        }
        sql.push_str(&format!(
            " ORDER BY created_at DESC, id DESC LIMIT ${}",
            binds.len() + 2
        ));
        let mut q = sqlx::query(&sql).bind(tenant.as_str());
        for b in binds {
            q = q.bind(b);
        }
        let rows = q
            .bind(filter.limit)
            .fetch_all(self.db.pool())
            .await
            .map_err(db_err)?;
        rows.iter().map(row_to_run).collect()
    }

    /// Moves an `interrupted` run to `running`; false when it was not interrupted (someone else
    /// resumed it first, or it never stopped for a human).
    ///
    /// # Errors
    /// Database failures.
    pub async fn claim_for_resume(&self, tenant: &TenantId, id: &str, now_ms: i64) -> Result<bool> {
        let done = sqlx::query(&format!(
            "UPDATE {} SET status = 'running', reason = NULL, error = NULL, updated_at = $3
             WHERE tenant_id = $1 AND id = $2 AND status = 'interrupted'",
            self.table
        ))
        .bind(tenant.as_str())
        .bind(id)
        .bind(now_ms)
        .execute(self.db.pool())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    /// Records how a run (or a resumed part of it) ended; `end.steps` are added.
    ///
    /// # Errors
    /// Database failures.
    pub async fn finish(
        &self,
        tenant: &TenantId,
        id: &str,
        end: &RunEnd,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(&format!(
            "UPDATE {} SET status = $3, steps = steps + $4, reason = $5, error = $6, updated_at = $7
             WHERE tenant_id = $1 AND id = $2",
            self.table
        ))
        .bind(tenant.as_str())
        .bind(id)
        .bind(end.status.as_str())
        .bind(end.steps)
        .bind(end.reason.clone())
        .bind(
            end.error
                .as_ref()
                .and_then(|e| serde_json::to_string(e).ok()),
        )
        .bind(now_ms)
        .execute(self.db.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }
}
