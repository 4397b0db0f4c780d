//! Usage and cost accounting: one [`UsageRecord`] per upstream attempt (and per cache hit), written
//! to a [`UsageSink`].
//!
//! * [`MemoryUsageSink`]: keeps records in memory (tests, embedded use, small deployments).
//! * `PostgresUsageSink` (feature `postgres`): batches records into a `llm_usage` table from a
//!   background task so the request path never waits on the database.

#[cfg(feature = "postgres")]
mod postgres;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use wattos_core::llm::Usage;
use wattos_core::{Result, TenantId};

#[cfg(feature = "postgres")]
pub use postgres::{PostgresUsageSink, PostgresUsageSinkConfig};

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "code")]
pub enum UsageOutcome {
    /// The upstream answered.
    Success,
    /// Served from the router's response cache (no upstream call, no cost).
    CacheHit,
    /// The attempt failed with this [`wattos_core::ErrorKind`] code.
    Error(String),
    /// A stream was dropped by the consumer before it finished.
    Cancelled,
}

impl UsageOutcome {
    /// A stable label (`success`, `cache_hit`, `cancelled` or the error code).
    pub fn label(&self) -> &str {
        match self {
            Self::Success => "success",
            Self::CacheHit => "cache_hit",
            Self::Error(code) => code,
            Self::Cancelled => "cancelled",
        }
    }
}

/// One accounted call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// When the attempt started.
    pub at: SystemTime,
    /// The tenant billed.
    pub tenant: TenantId,
    /// The principal (user or key id) that made the request.
    pub principal: String,
    /// The request id, to join attempts of one request.
    pub request_id: String,
    /// The model group (name the caller asked for, after alias resolution).
    pub model_group: String,
    /// The deployment that served the attempt (empty for cache hits).
    pub deployment: String,
    /// The upstream model name sent to the provider.
    pub upstream_model: String,
    /// Tokens (zero when the attempt failed before an answer).
    pub usage: Usage,
    /// Cost in nano-dollars (integer; see [`wattos_core::state::NANOS_PER_USD`]).
    pub cost_nanos: i64,
    /// Wall time of the attempt.
    pub latency: Duration,
    /// How it ended.
    pub outcome: UsageOutcome,
    /// 1-based attempt number within the request.
    pub attempt: u32,
    /// Whether the answer was streamed.
    pub streamed: bool,
}

/// Where usage records go. `record` should be cheap: slow sinks buffer internally.
#[async_trait]
pub trait UsageSink: Send + Sync {
    /// Accepts one record.
    ///
    /// # Errors
    /// Backend failures; the router logs them and never fails a call because of its sink.
    async fn record(&self, record: UsageRecord) -> Result<()>;

    /// Waits until every accepted record is durably written. No-op by default.
    ///
    /// # Errors
    /// Backend failures.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl<T: UsageSink + ?Sized> UsageSink for Arc<T> {
    async fn record(&self, record: UsageRecord) -> Result<()> {
        (**self).record(record).await
    }
    async fn flush(&self) -> Result<()> {
        (**self).flush().await
    }
}

/// Compile-time check that the trait stays object safe.
#[allow(dead_code)]
fn _object_safe(_: &dyn UsageSink) {}

/// A sink that keeps records in memory, up to a cap (oldest dropped first). Clones share records.
#[derive(Debug, Clone)]
pub struct MemoryUsageSink {
    records: Arc<Mutex<std::collections::VecDeque<UsageRecord>>>,
    cap: usize,
}

impl Default for MemoryUsageSink {
    fn default() -> Self {
        Self::with_capacity(100_000)
    }
}

impl MemoryUsageSink {
    /// A sink keeping at most `cap` records.
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            records: Arc::default(),
            cap: cap.max(1),
        }
    }

    /// A copy of the records kept.
    pub fn records(&self) -> Vec<UsageRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Total cost of the records kept for `tenant`, in nano-dollars.
    pub fn total_cost_nanos(&self, tenant: &TenantId) -> i64 {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| &r.tenant == tenant)
            .map(|r| r.cost_nanos)
            .sum()
    }
}

#[async_trait]
impl UsageSink for MemoryUsageSink {
    async fn record(&self, record: UsageRecord) -> Result<()> {
        let mut r = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() >= self.cap {
            r.pop_front();
        }
        r.push_back(record);
        Ok(())
    }
}

/// A sink that discards everything (the router's default).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopUsageSink;

#[async_trait]
impl UsageSink for NoopUsageSink {
    async fn record(&self, _record: UsageRecord) -> Result<()> {
        Ok(())
    }
}
