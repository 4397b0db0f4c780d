//! Connection pool sizes from the configuration (`database.max_connections`,
//! `database.pools.*`, `database.acquire_timeout`), in one place for every pool the server opens.

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::postgres::PgPoolOptions;
use wattos_core::config::{Config, PoolSizes};

/// Which pool a connection is for (each has its own size, see [`PoolSizes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Tenants, keys, configuration, audit.
    Tenancy,
    /// RAG collections and documents, agent runs.
    App,
    /// pgvector chunk tables.
    Vectors,
    /// Usage writer and reports.
    Usage,
    /// Agent checkpoints.
    Checkpoints,
    /// Conversations and feedback.
    Conversations,
}

impl Pool {
    fn size(self, p: &PoolSizes) -> u32 {
        match self {
            Self::Tenancy => p.tenancy,
            Self::App => p.app,
            Self::Vectors => p.vectors,
            Self::Usage => p.usage,
            Self::Checkpoints => p.checkpoints,
            Self::Conversations => p.conversations,
        }
    }
}

/// Size and acquire timeout of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSpec {
    /// Most connections.
    pub max_connections: u32,
    /// How long a caller waits for a free connection before the query fails (`unavailable`).
    pub acquire_timeout: Duration,
}

/// Pool size of the embedded SQLite files (not configurable: SQLite serialises writers anyway).
pub const EMBEDDED_POOL_SIZE: u32 = 8;

impl Default for PoolSpec {
    fn default() -> Self {
        Self {
            max_connections: EMBEDDED_POOL_SIZE,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl PoolSpec {
    /// The spec of `pool` under `config` (the default when no database is configured).
    pub fn of(config: &Config, pool: Pool) -> Self {
        match &config.database {
            Some(db) => Self {
                max_connections: pool.size(&db.pools),
                acquire_timeout: db.acquire_timeout,
            },
            None => Self::default(),
        }
    }

    /// PostgreSQL pool options with this size and timeout.
    pub fn pg(&self) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
    }

    /// `sqlx::Any` pool options with this size and timeout.
    pub fn any(&self) -> AnyPoolOptions {
        AnyPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pool_gets_its_configured_size() {
        let env = [
            ("WATTOS_MODE", "shared"),
            ("WATTOS_DATABASE__URL", "postgres://db/w"),
            ("WATTOS_REDIS__URL", "redis://cache"),
            ("WATTOS_NATS__URL", "nats://bus"),
            ("WATTOS_DATABASE__MAX_CONNECTIONS", "6"),
            ("WATTOS_DATABASE__ACQUIRE_TIMEOUT", "2s"),
            ("WATTOS_DATABASE__POOLS__TENANCY", "3"),
            ("WATTOS_DATABASE__POOLS__CHECKPOINTS", "12"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let c = Config::from_sources(None, env).unwrap();
        let size = |p| PoolSpec::of(&c, p).max_connections;
        assert_eq!(size(Pool::Tenancy), 3);
        assert_eq!(size(Pool::Checkpoints), 12);
        assert_eq!(size(Pool::App), 6);
        assert_eq!(size(Pool::Vectors), 6);
        assert_eq!(size(Pool::Conversations), 6);
        assert_eq!(size(Pool::Usage), 2);
        assert_eq!(
            PoolSpec::of(&c, Pool::App).acquire_timeout,
            Duration::from_secs(2)
        );
        let embedded = Config::from_sources(None, Vec::new()).unwrap();
        assert_eq!(PoolSpec::of(&embedded, Pool::Tenancy), PoolSpec::default());
    }
}
