//! Where events come from: a decorator of the audit log and a router usage sink.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use wattos_core::tenancy::{
    AuditEvent, AuditFilter, AuditLog, AuditPage, AuditRecord, AuditSink, ChainReport, PageRequest,
};
use wattos_core::{Result, TenantId};
use wattos_llm::usage::{UsageRecord, UsageSink};

use super::{AuditData, EventPublisher, UsageData};
use crate::usage::Operation;

/// An [`AuditLog`] that emits an `audit` event for every entry its inner log stored (after the
/// append succeeded, with the entry's chain position and hashes). Queries and verification go
/// to the inner log.
pub struct PublishingAudit {
    inner: Arc<dyn AuditLog>,
    events: EventPublisher,
}

impl PublishingAudit {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn AuditLog>, events: EventPublisher) -> Self {
        Self { inner, events }
    }
}

impl AuditData {
    /// The event data of a stored entry.
    pub fn from_record(r: &AuditRecord) -> Self {
        Self {
            seq: r.seq,
            actor: r.event.actor.clone(),
            action: r.event.action.clone(),
            target: r.event.target.clone(),
            outcome: r.event.outcome.as_str().to_owned(),
            request_id: r.event.request_id.clone(),
            time_ms: r.event.time_ms,
            detail: r.event.detail.clone(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
        }
    }
}

#[async_trait]
impl AuditSink for PublishingAudit {
    async fn append(&self, event: AuditEvent) -> Result<AuditRecord> {
        let record = self.inner.append(event).await?;
        self.events
            .audit(&record.event.tenant, AuditData::from_record(&record));
        Ok(record)
    }
}

#[async_trait]
impl AuditLog for PublishingAudit {
    async fn query(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<AuditPage> {
        self.inner.query(tenant, filter, page).await
    }

    async fn verify(&self, tenant: &TenantId) -> Result<ChainReport> {
        self.inner.verify(tenant).await
    }
}

/// A router [`UsageSink`] that emits a `usage` event per record.
pub struct EventUsageSink {
    events: EventPublisher,
    operation: Operation,
    providers: Arc<HashMap<String, String>>,
}

impl EventUsageSink {
    /// Events for the router of `operation` calls; `providers` maps deployment names to provider
    /// kinds.
    pub fn new(
        events: EventPublisher,
        operation: Operation,
        providers: HashMap<String, String>,
    ) -> Self {
        Self {
            events,
            operation,
            providers: Arc::new(providers),
        }
    }
}

impl UsageData {
    /// The event data of a router record.
    pub fn from_record(rec: &UsageRecord, operation: Operation, provider: &str) -> Self {
        Self {
            request_id: rec.request_id.clone(),
            principal: rec.principal.clone(),
            operation: operation.as_str().to_owned(),
            model: rec.model_group.clone(),
            deployment: rec.deployment.clone(),
            provider: provider.to_owned(),
            upstream_model: rec.upstream_model.clone(),
            input_tokens: rec.usage.input_tokens,
            output_tokens: rec.usage.output_tokens,
            cached_tokens: rec.usage.cached_input_tokens,
            cost_nanos: rec.cost_nanos,
            cost_usd: wattos_core::state::nanos_to_usd(rec.cost_nanos),
            latency_ms: u64::try_from(rec.latency.as_millis()).unwrap_or(u64::MAX),
            outcome: rec.outcome.label().to_owned(),
            attempt: rec.attempt,
            streamed: rec.streamed,
            started_at_ms: rec
                .at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

#[async_trait]
impl UsageSink for EventUsageSink {
    async fn record(&self, record: UsageRecord) -> Result<()> {
        let provider = self
            .providers
            .get(&record.deployment)
            .map_or("", String::as_str);
        self.events.usage(
            &record.tenant,
            UsageData::from_record(&record, self.operation, provider),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{BroadcastSink, PublisherOptions, TenantTokens};
    use std::time::{Duration, SystemTime};
    use wattos_core::llm::Usage;
    use wattos_core::tenancy::Outcome;
    use wattos_llm::usage::UsageOutcome;

    fn publisher() -> EventPublisher {
        EventPublisher::start_broadcast(
            BroadcastSink::new(16),
            TenantTokens::new(b"k"),
            PublisherOptions::default(),
        )
    }

    #[tokio::test]
    async fn stored_audit_entries_become_events_with_their_hashes() {
        let events = publisher();
        let mut rx = events.subscribe().unwrap();
        let audit = PublishingAudit::new(
            Arc::new(
                crate::tenancy::SqlStore::connect("sqlite::memory:")
                    .await
                    .unwrap(),
            ),
            events,
        );
        let tenant = TenantId::new("acme").unwrap();
        let stored = audit
            .append(AuditEvent {
                tenant: tenant.clone(),
                actor: "ops".into(),
                action: "key.created".into(),
                target: "key_1".into(),
                outcome: Outcome::Success,
                request_id: "req-9".into(),
                time_ms: 42,
                detail: None,
            })
            .await
            .unwrap();
        let e = rx.recv().await.unwrap();
        let crate::events::EventPayload::Audit(data) = &e.payload else {
            panic!("not an audit event: {e:?}");
        };
        assert_eq!(data, &AuditData::from_record(&stored));
        assert_eq!((data.seq, data.action.as_str()), (1, "key.created"));
        assert_eq!(data.hash, stored.hash);
        let page = audit
            .query(&tenant, &AuditFilter::default(), PageRequest::default())
            .await
            .unwrap();
        assert_eq!(page.records.len(), 1);
        assert!(audit.verify(&tenant).await.unwrap().valid);
    }

    #[tokio::test]
    async fn usage_records_become_events_with_their_provider() {
        let events = publisher();
        let mut rx = events.subscribe().unwrap();
        let providers = HashMap::from([("gpt".to_owned(), "openai".to_owned())]);
        let sink = EventUsageSink::new(events, Operation::Chat, providers);
        sink.record(UsageRecord {
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_000),
            tenant: TenantId::new("acme").unwrap(),
            principal: "key_1".into(),
            request_id: "req-1".into(),
            model_group: "gpt".into(),
            deployment: "gpt".into(),
            upstream_model: "gpt-4o-mini".into(),
            usage: Usage {
                input_tokens: 10,
                output_tokens: 4,
                cached_input_tokens: 1,
            },
            cost_nanos: 2_500_000_000,
            latency: Duration::from_millis(7),
            outcome: UsageOutcome::Success,
            attempt: 1,
            streamed: true,
        })
        .await
        .unwrap();
        let e = rx.recv().await.unwrap();
        let v = serde_json::to_value(&*e).unwrap();
        assert_eq!(v["type"], "usage");
        assert_eq!(v["tenant"], "acme");
        let d = &v["data"];
        assert_eq!(d["provider"], "openai");
        assert_eq!(d["operation"], "chat");
        assert_eq!(d["input_tokens"], 10);
        assert_eq!(d["cached_tokens"], 1);
        assert_eq!(d["cost_usd"], 2.5);
        assert_eq!(d["latency_ms"], 7);
        assert_eq!(d["started_at_ms"], 1_000);
        assert_eq!(d["outcome"], "success");
        assert_eq!(d["streamed"], true);
    }
}
