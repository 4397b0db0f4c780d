//! [`RedisPool`]: a fixed set of multiplexed Redis connections shared round-robin.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use redis::aio::ConnectionManager;
use wattos_core::{Error, Result};

/// A fixed number of multiplexed, self-reconnecting connections ([`ConnectionManager`]s) handed
/// out round-robin. One multiplexed connection pipelines any number of concurrent commands; more
/// of them spread the load of many concurrent Lua scripts over several sockets (and, with Redis
/// I/O threads, several server threads). Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct RedisPool {
    conns: Arc<[ConnectionManager]>,
    next: Arc<AtomicUsize>,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool")
            .field("size", &self.conns.len())
            .finish()
    }
}

impl RedisPool {
    /// Opens `size` (at least 1) connections to `url`.
    ///
    /// # Errors
    /// `invalid_input` for a malformed URL; `unavailable` when Redis cannot be reached.
    pub async fn connect(url: &str, size: usize) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::invalid_field("redis.url", e.to_string()))?;
        let mut conns = Vec::with_capacity(size.max(1));
        for _ in 0..size.max(1) {
            conns.push(
                client
                    .get_connection_manager()
                    .await
                    .map_err(|e| Error::unavailable(format!("redis: {e}")).with_source(e))?,
            );
        }
        Ok(Self {
            conns: conns.into(),
            next: Arc::default(),
        })
    }

    /// A pool over existing connections; `None` when `conns` is empty.
    pub fn from_connections(conns: Vec<ConnectionManager>) -> Option<Self> {
        (!conns.is_empty()).then(|| Self {
            conns: conns.into(),
            next: Arc::default(),
        })
    }

    /// Connections in the pool.
    pub fn size(&self) -> usize {
        self.conns.len()
    }

    /// The next connection, round-robin.
    pub fn get(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }
}
