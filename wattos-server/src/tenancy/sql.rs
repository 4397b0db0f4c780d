//! [`SqlStore`]: tenants, per-tenant configuration, API keys and the audit chain in SQLite
//! (embedded) or Postgres (shared), through one code path over `sqlx::Any`.

use std::sync::Once;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use wattos_core::tenancy::{
    ApiKeyRecord, ApiKeyStore, AuditEvent, AuditFilter, AuditLog, AuditPage, AuditRecord,
    AuditSink, ChainReport, Outcome, PageRequest, Tenant, TenantConfig, TenantStore,
};
use wattos_core::{Error, Result, TenantId};

use super::chain::{ChainVerifier, GENESIS_HASH, link_hash};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("src/tenancy/migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("src/tenancy/migrations/postgres");

/// Which database a [`SqlStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (embedded mode).
    Sqlite,
    /// Postgres (shared mode).
    Postgres,
}

/// Tenants, configuration, API keys and audit records in one SQL database.
///
/// ```no_run
/// # async fn f() -> wattos_core::Result<()> {
/// use wattos_server::tenancy::SqlStore;
/// let store = SqlStore::connect("sqlite://data/wattos.db?mode=rwc").await?; // migrations run here
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

fn db_err(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::conflict("the object already exists")
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            Error::unavailable("tenancy database unavailable").with_source(e)
        }
        _ => Error::internal("tenancy database error").with_source(e),
    }
}

fn json_err(e: serde_json::Error) -> Error {
    Error::internal("corrupt stored JSON").with_source(e)
}

impl SqlStore {
    /// Connects to `url` (`sqlite:...` or `postgres://...`) and runs the backend's migrations.
    /// An in-memory SQLite database (`sqlite::memory:`) gets a single connection so every query sees
    /// the same data.
    ///
    /// # Errors
    /// `invalid_input` for an unknown scheme, `unavailable` when the database cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, crate::dbpool::PoolSpec::default()).await
    }

    /// Like [`SqlStore::connect`] with the pool size and acquire timeout of `spec`.
    ///
    /// # Errors
    /// As [`SqlStore::connect`].
    pub async fn connect_with(url: &str, spec: crate::dbpool::PoolSpec) -> Result<Self> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(Error::invalid_field(
                "database.url",
                "expected a sqlite: or postgres:// URL",
            ));
        };
        let in_memory = backend == Backend::Sqlite && url.contains(":memory:");
        let spec = crate::dbpool::PoolSpec {
            max_connections: if in_memory { 1 } else { spec.max_connections },
            ..spec
        };
        let pool = spec.any().connect(url).await.map_err(|e| {
            Error::unavailable("cannot connect to the tenancy database").with_source(e)
        })?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| Error::internal("tenancy migrations failed").with_source(e))?;
        Ok(Self { pool, backend })
    }

    /// Counts one query (`db_queries_total{backend, operation}`).
    fn count(&self, operation: &'static str) {
        let backend = match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        metrics::counter!(wattos_core::telemetry::names::DB_QUERIES_TOTAL,
            "backend" => backend, "operation" => operation)
        .increment(1);
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The underlying pool (for operators' own queries).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

fn tenant_from_row(row: &AnyRow) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId::new(row.try_get::<String, _>("id").map_err(db_err)?)?,
        name: row.try_get("name").map_err(db_err)?,
        disabled: row.try_get::<i64, _>("disabled").map_err(db_err)? != 0,
        created_at_ms: row.try_get("created_at").map_err(db_err)?,
    })
}

#[async_trait]
impl TenantStore for SqlStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<()> {
        self.count("create_tenant");
        let config = serde_json::to_string(&TenantConfig::default()).map_err(json_err)?;
        sqlx::query(
            "INSERT INTO tenants (id, name, disabled, created_at, config) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tenant.id.as_str())
        .bind(&tenant.name)
        .bind(i64::from(tenant.disabled))
        .bind(tenant.created_at_ms)
        .bind(config)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        self.count("get_tenant");
        let row = sqlx::query("SELECT id, name, disabled, created_at FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn list_tenants(&self, after: Option<&TenantId>, limit: u32) -> Result<Vec<Tenant>> {
        self.count("list_tenants");
        let rows = sqlx::query(
            "SELECT id, name, disabled, created_at FROM tenants WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after.map_or("", TenantId::as_str))
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn set_disabled(&self, id: &TenantId, disabled: bool) -> Result<()> {
        self.count("set_disabled");
        let done = sqlx::query("UPDATE tenants SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("tenant"));
        }
        Ok(())
    }

    async fn get_config(&self, id: &TenantId) -> Result<TenantConfig> {
        self.count("get_config");
        let row = sqlx::query("SELECT config FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("tenant"))?;
        let text: String = row.try_get("config").map_err(db_err)?;
        serde_json::from_str(&text).map_err(json_err)
    }

    async fn put_config(&self, id: &TenantId, config: &TenantConfig) -> Result<()> {
        self.count("put_config");
        config.validate()?;
        let text = serde_json::to_string(config).map_err(json_err)?;
        let done = sqlx::query("UPDATE tenants SET config = $1 WHERE id = $2")
            .bind(text)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("tenant"));
        }
        Ok(())
    }
}

const KEY_COLUMNS: &str = "id, tenant_id, name, roles, secret_hash, created_by, created_at, \
                           expires_at, revoked_at, last_used_at";

fn key_from_row(row: &AnyRow) -> Result<ApiKeyRecord> {
    let roles: String = row.try_get("roles").map_err(db_err)?;
    Ok(ApiKeyRecord {
        id: row.try_get("id").map_err(db_err)?,
        tenant: TenantId::new(row.try_get::<String, _>("tenant_id").map_err(db_err)?)?,
        name: row.try_get("name").map_err(db_err)?,
        roles: serde_json::from_str(&roles).map_err(json_err)?,
        secret_hash: row.try_get("secret_hash").map_err(db_err)?,
        created_by: row.try_get("created_by").map_err(db_err)?,
        created_at_ms: row.try_get("created_at").map_err(db_err)?,
        expires_at_ms: row.try_get("expires_at").map_err(db_err)?,
        revoked_at_ms: row.try_get("revoked_at").map_err(db_err)?,
        last_used_at_ms: row.try_get("last_used_at").map_err(db_err)?,
    })
}

#[async_trait]
impl ApiKeyStore for SqlStore {
    async fn insert(&self, key: &ApiKeyRecord) -> Result<()> {
        self.count("insert");
        let roles = serde_json::to_string(&key.roles).map_err(json_err)?;
        sqlx::query(&format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&key.id)
        .bind(key.tenant.as_str())
        .bind(&key.name)
        .bind(roles)
        .bind(&key.secret_hash)
        .bind(&key.created_by)
        .bind(key.created_at_ms)
        .bind(key.expires_at_ms)
        .bind(key.revoked_at_ms)
        .bind(key.last_used_at_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn find_by_id(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        self.count("find_by_id");
        let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn get(&self, tenant: &TenantId, id: &str) -> Result<ApiKeyRecord> {
        self.count("get");
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("api key"))?;
        key_from_row(&row)
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>> {
        self.count("list");
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke(&self, tenant: &TenantId, id: &str, at_ms: i64) -> Result<()> {
        self.count("revoke");
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND tenant_id = $3",
        )
        .bind(at_ms)
        .bind(id)
        .bind(tenant.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("api key"));
        }
        Ok(())
    }

    async fn touch(&self, used: &[(String, i64)]) -> Result<()> {
        self.count("touch");
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        for (id, at) in used {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 \
                 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(*at)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }
}

const AUDIT_COLUMNS: &str =
    "tenant_id, seq, actor, action, target, outcome, request_id, time_ms, detail, prev_hash, hash";

fn audit_from_row(row: &AnyRow) -> Result<AuditRecord> {
    let outcome: String = row.try_get("outcome").map_err(db_err)?;
    Ok(AuditRecord {
        seq: row.try_get("seq").map_err(db_err)?,
        event: AuditEvent {
            tenant: TenantId::new(row.try_get::<String, _>("tenant_id").map_err(db_err)?)?,
            actor: row.try_get("actor").map_err(db_err)?,
            action: row.try_get("action").map_err(db_err)?,
            target: row.try_get("target").map_err(db_err)?,
            // An edited, unparseable outcome must still be reported by verify, not crash it.
            outcome: Outcome::parse(&outcome).unwrap_or(Outcome::Failure),
            request_id: row.try_get("request_id").map_err(db_err)?,
            time_ms: row.try_get("time_ms").map_err(db_err)?,
            detail: row.try_get("detail").map_err(db_err)?,
        },
        prev_hash: row.try_get("prev_hash").map_err(db_err)?,
        hash: row.try_get("hash").map_err(db_err)?,
    })
}

#[async_trait]
impl AuditSink for SqlStore {
    async fn append(&self, event: AuditEvent) -> Result<AuditRecord> {
        self.count("append");
        let tenant = event.tenant.as_str().to_owned();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, $2) \
             ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(&tenant)
        .bind(GENESIS_HASH)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        // Bumping the head first takes its row lock: appends to one tenant's chain serialise here.
        let head = sqlx::query(
            "UPDATE audit_heads SET seq = seq + 1 WHERE tenant_id = $1 RETURNING seq, hash",
        )
        .bind(&tenant)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let seq: i64 = head.try_get("seq").map_err(db_err)?;
        let prev_hash: String = head.try_get("hash").map_err(db_err)?;
        let hash = link_hash(&prev_hash, seq, &event);
        sqlx::query(&format!(
            "INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&tenant)
        .bind(seq)
        .bind(&event.actor)
        .bind(&event.action)
        .bind(&event.target)
        .bind(event.outcome.as_str())
        .bind(&event.request_id)
        .bind(event.time_ms)
        .bind(event.detail.clone())
        .bind(&prev_hash)
        .bind(&hash)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("UPDATE audit_heads SET hash = $1 WHERE tenant_id = $2")
            .bind(&hash)
            .bind(&tenant)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(AuditRecord {
            seq,
            event,
            prev_hash,
            hash,
        })
    }
}

enum Param {
    Text(String),
    Int(i64),
}

#[async_trait]
impl AuditLog for SqlStore {
    async fn query(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<AuditPage> {
        self.count("query");
        let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE tenant_id = $1");
        let mut params = vec![Param::Text(tenant.as_str().to_owned())];
        let mut add = |cond: &str, p: Param| {
            params.push(p);
            sql.push_str(&format!(" AND {cond} ${}", params.len()));
        };
        if let Some(v) = &filter.action {
            add("action =", Param::Text(v.clone()));
        }
        if let Some(v) = &filter.actor {
            add("actor =", Param::Text(v.clone()));
        }
        if let Some(v) = &filter.target {
            add("target =", Param::Text(v.clone()));
        }
        if let Some(v) = filter.outcome {
            add("outcome =", Param::Text(v.as_str().to_owned()));
        }
        if let Some(v) = filter.since_ms {
            add("time_ms >=", Param::Int(v));
        }
        if let Some(v) = filter.until_ms {
            add("time_ms <", Param::Int(v));
        }
        if let Some(v) = page.before {
            add("seq <", Param::Int(v));
        }
        let limit = page.limit.clamp(1, 1000);
        // Fetch one extra row to know whether another page exists.
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", limit + 1));
        let mut q = sqlx::query(&sql);
        for p in params {
            q = match p {
                Param::Text(s) => q.bind(s),
                Param::Int(i) => q.bind(i),
            };
        }
        let rows = q.fetch_all(&self.pool).await.map_err(db_err)?;
        let mut records = rows
            .iter()
            .map(audit_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next_before = if records.len() > limit as usize {
            records.truncate(limit as usize);
            records.last().map(|r| r.seq)
        } else {
            None
        };
        Ok(AuditPage {
            records,
            next_before,
        })
    }

    async fn verify(&self, tenant: &TenantId) -> Result<ChainReport> {
        self.count("verify");
        const CHUNK: i64 = 1000;
        let mut verifier = ChainVerifier::default();
        let mut after = 0_i64;
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE tenant_id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT {CHUNK}"
            ))
            .bind(tenant.as_str())
            .bind(after)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
            for row in &rows {
                match audit_from_row(row) {
                    Ok(rec) => {
                        after = rec.seq;
                        verifier.push(&rec);
                    }
                    // A malformed row is a broken chain to report, not a failed verification.
                    Err(e) => verifier.push_unreadable(row.try_get("seq").ok(), e.message()),
                }
                if verifier.is_broken() {
                    break;
                }
            }
            if verifier.is_broken() || (rows.len() as i64) < CHUNK {
                break;
            }
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .map(|r| -> Result<(i64, String)> {
                Ok((
                    r.try_get("seq").map_err(db_err)?,
                    r.try_get("hash").map_err(db_err)?,
                ))
            })
            .transpose()?;
        Ok(verifier.finish(head))
    }
}
