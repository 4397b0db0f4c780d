//! Platform events: every usage record and audit entry, published as a versioned JSON event off
//! the request path.
//!
//! * [`PlatformEvent`] is the wire format (`version` 1): an envelope (`id`, `type`, `time_ms`,
//!   `source`, `tenant`, `tenant_token`) around the record (`data`). The format is documented in
//!   `docs/deployment.md`; fields are only ever added within a version.
//! * [`EventSink`] is the seam: where events go. [`NoopSink`] drops them, [`BroadcastSink`] hands
//!   them to in-process subscribers (the embedded default), `JetStreamEventSink` (feature `nats`)
//!   publishes them to a NATS JetStream stream (the shared-mode default).
//! * [`EventPublisher`] sits in front of the sink: emitting is a non-blocking push into a bounded
//!   buffer that a background task drains, so a slow or unreachable sink never fails or slows a
//!   request. Events that do not fit, fail or time out are dropped and counted
//!   (`wattos_events_dropped_total{type, reason}`).
//! * [`PublishingAudit`] (an [`wattos_core::tenancy::AuditLog`] decorator) and [`EventUsageSink`]
//!   (a router [`wattos_llm::usage::UsageSink`]) feed the publisher.
//!
//! Subjects are `<prefix>.usage.<tenant_token>` and `<prefix>.audit.<tenant_token>`. The tenant
//! id itself never appears in a subject: subjects show up where payloads do not (stream subject
//! listings, NATS monitoring, account exports), and tenant ids are often customer names. The
//! [`TenantTokens`] token is an opaque keyed hash of the id that still lets a consumer filter one
//! tenant's events (the token is in every payload).

mod hooks;
#[cfg(feature = "nats")]
mod jetstream;
mod publisher;
mod settings;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use wattos_core::{Result, TenantId};

use crate::auth::hmac_sha256;

pub use hooks::{EventUsageSink, PublishingAudit};
#[cfg(feature = "nats")]
pub use jetstream::{JetStreamEventConfig, JetStreamEventSink};
pub use publisher::{EventPublisher, PublisherOptions, PublisherStats};
pub(crate) use settings::prefixes_overlap;
pub use settings::{EventSettings, SinkKind, build_publisher};

/// The version of the event format this server writes.
pub const EVENT_VERSION: u32 = 1;

/// Counter: events handed to the sink, by `type`.
pub const EVENTS_PUBLISHED_TOTAL: &str = "wattos_events_published_total";
/// Counter: events dropped, by `type` and `reason` (`buffer_full`, `publish_failed`, `timeout`).
pub const EVENTS_DROPPED_TOTAL: &str = "wattos_events_dropped_total";

/// One platform event: the envelope plus its typed record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlatformEvent {
    /// Format version ([`EVENT_VERSION`]).
    pub version: u32,
    /// Unique id (UUIDv7, time-ordered); also the JetStream `Nats-Msg-Id`, so a re-published event
    /// is stored once.
    pub id: String,
    /// When the event was emitted (unix ms).
    pub time_ms: i64,
    /// The instance that emitted it (`<hostname>/<pid>`).
    pub source: String,
    /// The tenant the record belongs to.
    pub tenant: TenantId,
    /// The opaque token of `tenant` used in subjects (see [`TenantTokens`]).
    pub tenant_token: String,
    /// `type` and `data`.
    #[serde(flatten)]
    pub payload: EventPayload,
}

/// What an event carries: `"type": "usage" | "audit"` and the record under `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum EventPayload {
    /// One upstream model call attempt.
    Usage(UsageData),
    /// One audit log entry (as stored, with its place in the tenant's hash chain).
    Audit(AuditData),
}

impl EventPayload {
    /// `usage` or `audit`: the event's `type` and the subject token after the prefix.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Usage(_) => "usage",
            Self::Audit(_) => "audit",
        }
    }
}

/// `data` of a `usage` event: one upstream attempt of a chat or embedding call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageData {
    /// The request the attempt belongs to (`x-request-id`).
    pub request_id: String,
    /// API key id or user that made the request.
    pub principal: String,
    /// `chat` or `embedding`.
    pub operation: String,
    /// The model (group) the caller asked for.
    pub model: String,
    /// The deployment that served the attempt (empty for cache hits).
    pub deployment: String,
    /// Provider kind of the deployment (`openai`, `wattos`, ...).
    pub provider: String,
    /// Model name sent upstream.
    pub upstream_model: String,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    pub cached_tokens: u64,
    /// Cost in nano-dollars (exact integer).
    pub cost_nanos: i64,
    /// Cost in US dollars (`cost_nanos / 1e9`).
    pub cost_usd: f64,
    /// Wall time of the attempt.
    pub latency_ms: u64,
    /// `success`, `cache_hit`, `cancelled` or an error code.
    pub outcome: String,
    /// 1-based attempt number within the request.
    pub attempt: u32,
    /// Whether the answer was streamed.
    pub streamed: bool,
    /// When the attempt started (unix ms).
    pub started_at_ms: i64,
}

/// `data` of an `audit` event: the stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditData {
    /// Position in the tenant's chain, from 1.
    pub seq: i64,
    /// Who acted.
    pub actor: String,
    /// What happened (`key.created`, `auth.failed`, ...).
    pub action: String,
    /// What it happened to.
    pub target: String,
    /// `success`, `denied` or `failure`.
    pub outcome: String,
    /// The request that caused it.
    pub request_id: String,
    /// When it happened (unix ms).
    pub time_ms: i64,
    /// Extra detail.
    pub detail: Option<String>,
    /// Hash of the previous entry of the chain.
    pub prev_hash: String,
    /// Hash of this entry (verifiable against `GET /v1/admin/audit/verify`).
    pub hash: String,
}

/// Opaque, stable per-tenant tokens for subjects: `t` + 24 hex digits of
/// HMAC-SHA256(key, tenant id). With a secret key (`events.tenant_key`, else derived from
/// `auth.key_pepper`) nobody without the key can tell which tenant a token stands for, or guess
/// it from a list of customer names; every instance with the same key computes the same token.
#[derive(Clone)]
pub struct TenantTokens {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for TenantTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantTokens")
            .field("keyed", &!self.key.is_empty())
            .finish()
    }
}

impl TenantTokens {
    /// Tokens under `key`. An empty key gives plain (unkeyed) hashes: only acceptable when the ids
    /// are not secret (e.g. authentication off, where every request is tenant `default`).
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: Arc::from(key),
        }
    }

    /// Tokens keyed by a key derived from `secret` (domain-separated, so the token key is not the
    /// secret itself).
    pub fn derived_from(secret: &[u8]) -> Self {
        Self::new(&hmac_sha256(secret, b"wattos-event-tenant-token-v1"))
    }

    /// The token of `tenant`: a valid NATS subject token (`t` and lowercase hex).
    pub fn token(&self, tenant: &TenantId) -> String {
        let mac = hmac_sha256(&self.key, tenant.as_str().as_bytes());
        format!("t{}", &hex::encode(mac)[..24])
    }
}

/// Where events go. Called only from the [`EventPublisher`]'s background task, never on a
/// request's path; a call may take as long as the backend needs (the publisher bounds it).
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Short name for logs (`jetstream`, `broadcast`, `none`).
    fn name(&self) -> &'static str;

    /// Publishes one event; returns once the backend has accepted it.
    ///
    /// # Errors
    /// `unavailable` (or any kind) when the backend refused or could not be reached; the publisher
    /// counts the event as dropped.
    async fn publish(&self, event: &PlatformEvent) -> Result<()>;
}

/// Drops every event (`events.sink = "none"`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopSink;

#[async_trait]
impl EventSink for NoopSink {
    fn name(&self) -> &'static str {
        "none"
    }

    async fn publish(&self, _event: &PlatformEvent) -> Result<()> {
        Ok(())
    }
}

/// Hands events to in-process subscribers ([`BroadcastSink::subscribe`]); the default of the
/// embedded mode. Without subscribers events go nowhere; a subscriber that falls more than
/// `capacity` events behind skips the oldest (tokio `broadcast` semantics).
#[derive(Debug, Clone)]
pub struct BroadcastSink {
    tx: broadcast::Sender<Arc<PlatformEvent>>,
}

impl BroadcastSink {
    /// A sink that keeps up to `capacity` events for slow subscribers.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// A new subscription: every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<PlatformEvent>> {
        self.tx.subscribe()
    }
}

#[async_trait]
impl EventSink for BroadcastSink {
    fn name(&self) -> &'static str {
        "broadcast"
    }

    async fn publish(&self, event: &PlatformEvent) -> Result<()> {
        // No subscriber is not an error: in-process events are optional.
        let _ = self.tx.send(Arc::new(event.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn usage_event(tenant: &str) -> PlatformEvent {
        let tenant = TenantId::new(tenant).unwrap();
        PlatformEvent {
            version: EVENT_VERSION,
            id: "0190-test".into(),
            time_ms: 1_700_000_000_000,
            source: "host/1".into(),
            tenant_token: TenantTokens::new(b"k").token(&tenant),
            tenant,
            payload: EventPayload::Usage(UsageData {
                request_id: "req-1".into(),
                principal: "key_1".into(),
                operation: "chat".into(),
                model: "gpt".into(),
                deployment: "gpt".into(),
                provider: "openai".into(),
                upstream_model: "gpt-4o-mini".into(),
                input_tokens: 10,
                output_tokens: 5,
                cached_tokens: 0,
                cost_nanos: 15_000,
                cost_usd: 0.000_015,
                latency_ms: 12,
                outcome: "success".into(),
                attempt: 1,
                streamed: false,
                started_at_ms: 1_699_999_999_990,
            }),
        }
    }

    #[test]
    fn the_wire_format_is_an_envelope_with_type_and_data() {
        let e = usage_event("acme");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["type"], "usage");
        assert_eq!(v["tenant"], "acme");
        assert_eq!(v["data"]["input_tokens"], 10);
        assert_eq!(v["data"]["cost_nanos"], 15_000);
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "data",
                "id",
                "source",
                "tenant",
                "tenant_token",
                "time_ms",
                "type",
                "version"
            ]
        );
        let back: PlatformEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        let audit = json!({"version": 1, "id": "x", "time_ms": 1, "source": "s", "tenant": "acme",
            "tenant_token": "t0", "type": "audit", "data": {"seq": 3, "actor": "a",
            "action": "key.created", "target": "key_1", "outcome": "success", "request_id": "r",
            "time_ms": 1, "detail": null, "prev_hash": "00", "hash": "11"}});
        let parsed: PlatformEvent = serde_json::from_value(audit).unwrap();
        assert_eq!(parsed.payload.kind(), "audit");
    }

    #[test]
    fn tenant_tokens_are_opaque_stable_and_keyed() {
        let acme = TenantId::new("acme").unwrap();
        let other = TenantId::new("other").unwrap();
        let a = TenantTokens::derived_from(b"pepper-one");
        let b = TenantTokens::derived_from(b"pepper-two");
        let t = a.token(&acme);
        assert_eq!(t, a.token(&acme), "stable");
        assert_eq!(t, a.clone().token(&acme));
        assert_ne!(t, a.token(&other), "per tenant");
        assert_ne!(t, b.token(&acme), "per key");
        assert_eq!(t.len(), 25);
        assert!(t.starts_with('t'));
        assert!(!t.contains("acme"));
        assert!(
            t[1..]
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert!(!format!("{a:?}").contains("pepper"));
    }

    #[tokio::test]
    async fn the_broadcast_sink_hands_events_to_subscribers() {
        let sink = BroadcastSink::new(8);
        // No subscriber: still fine.
        sink.publish(&usage_event("acme")).await.unwrap();
        let mut rx = sink.subscribe();
        sink.publish(&usage_event("acme")).await.unwrap();
        let got = rx.recv().await.unwrap();
        assert_eq!(got.tenant.as_str(), "acme");
        assert_eq!(NoopSink.name(), "none");
    }
}
