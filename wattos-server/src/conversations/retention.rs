//! Per-tenant retention of conversations, applied on a timer.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wattos_agents::conversation::Conversations;
use wattos_core::tenancy::TenantStore;
use wattos_core::{RequestContext, Result, TenantId};

/// Tenants read per page while sweeping.
const PAGE: u32 = 200;

/// Deletes, for every tenant whose configuration sets `retention.data_days`, the threads not
/// updated within that many days. Tenants without it keep their threads.
///
/// Every instance of a deployment may run one: a sweep is a set of idempotent deletes, so two at
/// once do no harm.
#[derive(Clone)]
pub struct RetentionSweeper {
    conversations: Conversations,
    tenants: Arc<dyn TenantStore>,
    every: Duration,
}

impl std::fmt::Debug for RetentionSweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionSweeper")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl RetentionSweeper {
    /// A sweeper over `conversations` for the tenants of `tenants`, sweeping `every` interval.
    pub fn new(
        conversations: Conversations,
        tenants: Arc<dyn TenantStore>,
        every: Duration,
    ) -> Self {
        Self {
            conversations,
            tenants,
            every: every.max(Duration::from_secs(1)),
        }
    }

    /// One pass over every tenant; returns the threads deleted. A tenant whose sweep fails is
    /// logged and skipped (the next pass retries it).
    ///
    /// # Errors
    /// When the tenant list cannot be read.
    pub async fn sweep_once(&self) -> Result<u64> {
        let mut deleted = 0;
        let mut after: Option<TenantId> = None;
        loop {
            let page = self.tenants.list_tenants(after.as_ref(), PAGE).await?;
            for tenant in &page {
                match self.sweep_tenant(&tenant.id).await {
                    Ok(n) => deleted += n,
                    Err(e) => {
                        tracing::warn!(tenant = %tenant.id, error = %e, "conversation retention failed")
                    }
                }
            }
            match page.last() {
                Some(t) if page.len() == PAGE as usize => after = Some(t.id.clone()),
                _ => break,
            }
        }
        metrics::counter!("wattos_conversations_expired_total").increment(deleted);
        Ok(deleted)
    }

    async fn sweep_tenant(&self, tenant: &TenantId) -> Result<u64> {
        let config = self.tenants.get_config(tenant).await?;
        if config.retention.data_days.is_none() {
            return Ok(0);
        }
        let ctx = RequestContext::system(tenant.clone());
        let n = self
            .conversations
            .apply_retention(&ctx, &config.retention)
            .await?;
        if n > 0 {
            tracing::info!(%tenant, deleted = n, "expired conversations deleted");
        }
        Ok(n)
    }

    /// Sweeps now and then every interval until `shutdown` is cancelled.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = self.sweep_once().await {
                    tracing::warn!(error = %e, "conversation retention sweep failed");
                }
            }
        })
    }
}
