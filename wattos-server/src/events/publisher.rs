//! [`EventPublisher`]: a bounded buffer in front of an [`EventSink`], drained by a background task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{broadcast, mpsc};
use wattos_core::TenantId;

use super::{
    AuditData, BroadcastSink, EVENT_VERSION, EVENTS_DROPPED_TOTAL, EVENTS_PUBLISHED_TOTAL,
    EventPayload, EventSink, PlatformEvent, TenantTokens, UsageData,
};

/// How the publisher buffers and publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublisherOptions {
    /// Events waiting for the sink before new ones are dropped (`events.buffer`).
    pub buffer: usize,
    /// Publishes in flight at once (acknowledgements are awaited concurrently).
    pub concurrency: usize,
    /// How long one publish may take before the event counts as dropped (`events.publish_timeout`).
    pub publish_timeout: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            buffer: 10_000,
            concurrency: 64,
            publish_timeout: Duration::from_secs(5),
        }
    }
}

/// What a publisher did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublisherStats {
    /// Events the sink accepted.
    pub published: u64,
    /// Events dropped (buffer full, publish failed or timed out).
    pub dropped: u64,
    /// Events emitted and not yet published or dropped.
    pub pending: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicU64,
}

struct Inner {
    tx: mpsc::Sender<PlatformEvent>,
    tokens: TenantTokens,
    source: String,
    sink: &'static str,
    broadcast: Option<BroadcastSink>,
    counters: Arc<Counters>,
}

/// Emits platform events without ever blocking the caller: [`EventPublisher::emit`] pushes into a
/// bounded buffer (dropping and counting the event when it is full); a background task publishes
/// up to `concurrency` events at once to the sink, each bounded by `publish_timeout`. Cheap to
/// clone.
#[derive(Clone)]
pub struct EventPublisher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EventPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventPublisher")
            .field("sink", &self.inner.sink)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn drop_counted(counters: &Counters, kind: &'static str, reason: &'static str) {
    counters.dropped.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(EVENTS_DROPPED_TOTAL, "type" => kind, "reason" => reason).increment(1);
}

impl EventPublisher {
    /// Starts the background task publishing to `sink`; `tokens` make the subject tokens of
    /// tenants. Needs a Tokio runtime.
    pub fn start(sink: Arc<dyn EventSink>, tokens: TenantTokens, opts: PublisherOptions) -> Self {
        let (tx, rx) = mpsc::channel(opts.buffer.max(1));
        let counters = Arc::new(Counters::default());
        tokio::spawn(drain(sink.clone(), rx, opts, counters.clone()));
        Self {
            inner: Arc::new(Inner {
                tx,
                tokens,
                source: crate::jobs::worker_id(),
                sink: sink.name(),
                broadcast: None,
                counters,
            }),
        }
    }

    /// Like [`EventPublisher::start`] over `sink`, whose subscribers
    /// [`EventPublisher::subscribe`] hands out.
    pub fn start_broadcast(
        sink: BroadcastSink,
        tokens: TenantTokens,
        opts: PublisherOptions,
    ) -> Self {
        let mut this = Self::start(Arc::new(sink.clone()), tokens, opts);
        if let Some(inner) = Arc::get_mut(&mut this.inner) {
            inner.broadcast = Some(sink);
        }
        this
    }

    /// A subscription to every event from now on, when the sink is in-process
    /// ([`BroadcastSink`]); `None` for other sinks (consume those from their backend).
    pub fn subscribe(&self) -> Option<broadcast::Receiver<Arc<PlatformEvent>>> {
        self.inner.broadcast.as_ref().map(BroadcastSink::subscribe)
    }

    /// The sink's name (`jetstream`, `broadcast`, `none`).
    pub fn sink_name(&self) -> &'static str {
        self.inner.sink
    }

    /// The subject token of `tenant`.
    pub fn tenant_token(&self, tenant: &TenantId) -> String {
        self.inner.tokens.token(tenant)
    }

    /// Counts so far.
    pub fn stats(&self) -> PublisherStats {
        let c = &self.inner.counters;
        PublisherStats {
            published: c.published.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            pending: c.pending.load(Ordering::Relaxed),
        }
    }

    /// Builds the envelope for `payload` of `tenant` and emits it.
    pub fn emit(&self, tenant: &TenantId, payload: EventPayload) {
        let kind = payload.kind();
        let event = PlatformEvent {
            version: EVENT_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            time_ms: crate::auth::now_ms(),
            source: self.inner.source.clone(),
            tenant_token: self.inner.tokens.token(tenant),
            tenant: tenant.clone(),
            payload,
        };
        let c = &self.inner.counters;
        c.pending.fetch_add(1, Ordering::Relaxed);
        if self.inner.tx.try_send(event).is_err() {
            c.pending.fetch_sub(1, Ordering::Relaxed);
            drop_counted(c, kind, "buffer_full");
        }
    }

    /// Emits a `usage` event.
    pub fn usage(&self, tenant: &TenantId, data: UsageData) {
        self.emit(tenant, EventPayload::Usage(data));
    }

    /// Emits an `audit` event.
    pub fn audit(&self, tenant: &TenantId, data: AuditData) {
        self.emit(tenant, EventPayload::Audit(data));
    }

    /// Waits until every event emitted so far is published or dropped, for at most `timeout`
    /// (at shutdown, and in tests). Returns whether nothing is pending.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if self.inner.counters.pending.load(Ordering::Relaxed) == 0 {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The background task: publishes up to `concurrency` events at once until every publisher handle
/// is gone. Logs once when publishing starts failing and once when it recovers.
async fn drain(
    sink: Arc<dyn EventSink>,
    rx: mpsc::Receiver<PlatformEvent>,
    opts: PublisherOptions,
    counters: Arc<Counters>,
) {
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (event, rx))
    });
    let mut failing: u64 = 0;
    events
        .map(|event| {
            let sink = sink.clone();
            async move {
                let kind = event.payload.kind();
                match tokio::time::timeout(opts.publish_timeout, sink.publish(&event)).await {
                    Ok(Ok(())) => (kind, None),
                    Ok(Err(e)) => (kind, Some(("publish_failed", e.to_string()))),
                    Err(_) => (
                        kind,
                        Some((
                            "timeout",
                            format!("no acknowledgement within {:?}", opts.publish_timeout),
                        )),
                    ),
                }
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .for_each(|(kind, failure)| {
            counters.pending.fetch_sub(1, Ordering::Relaxed);
            match failure {
                None => {
                    counters.published.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(EVENTS_PUBLISHED_TOTAL, "type" => kind).increment(1);
                    if failing > 0 {
                        tracing::info!(
                            sink = sink.name(),
                            dropped = failing,
                            "platform events are published again"
                        );
                        failing = 0;
                    }
                }
                Some((reason, message)) => {
                    drop_counted(&counters, kind, reason);
                    if failing == 0 {
                        tracing::warn!(sink = sink.name(), reason, error = %message,
                            "platform events cannot be published; dropping them until the sink recovers");
                    }
                    failing += 1;
                }
            }
            async {}
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::tests::usage_event;
    use async_trait::async_trait;
    use wattos_core::{Error, Result};

    /// Never answers: an unreachable backend.
    struct Stuck;

    #[async_trait]
    impl EventSink for Stuck {
        fn name(&self) -> &'static str {
            "stuck"
        }
        async fn publish(&self, _event: &PlatformEvent) -> Result<()> {
            std::future::pending().await
        }
    }

    /// Refuses everything.
    struct Down;

    #[async_trait]
    impl EventSink for Down {
        fn name(&self) -> &'static str {
            "down"
        }
        async fn publish(&self, _event: &PlatformEvent) -> Result<()> {
            Err(Error::unavailable("nats: connection refused"))
        }
    }

    fn payload() -> EventPayload {
        usage_event("acme").payload
    }

    #[tokio::test]
    async fn a_stuck_sink_never_blocks_emit_and_drops_are_counted() {
        let opts = PublisherOptions {
            buffer: 4,
            concurrency: 2,
            publish_timeout: Duration::from_millis(200),
        };
        let p = EventPublisher::start(Arc::new(Stuck), TenantTokens::new(b"k"), opts);
        let tenant = TenantId::new("acme").unwrap();
        let started = Instant::now();
        for _ in 0..1000 {
            p.emit(&tenant, payload());
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "emit blocked: {:?}",
            started.elapsed()
        );
        // At most buffer + concurrency events are held; everything else is dropped at once.
        let s = p.stats();
        assert!(s.dropped >= 1000 - 6, "{s:?}");
        // The held ones time out and are dropped too.
        assert!(p.flush(Duration::from_secs(5)).await, "{:?}", p.stats());
        assert_eq!(
            p.stats(),
            PublisherStats {
                published: 0,
                dropped: 1000,
                pending: 0
            }
        );
    }

    #[tokio::test]
    async fn a_failing_sink_drops_and_a_working_one_publishes() {
        let tenant = TenantId::new("acme").unwrap();
        let p = EventPublisher::start(
            Arc::new(Down),
            TenantTokens::new(b"k"),
            PublisherOptions::default(),
        );
        p.emit(&tenant, payload());
        assert!(p.flush(Duration::from_secs(5)).await);
        assert_eq!((p.stats().published, p.stats().dropped), (0, 1));

        let sink = BroadcastSink::new(16);
        let p = EventPublisher::start_broadcast(
            sink,
            TenantTokens::new(b"k"),
            PublisherOptions::default(),
        );
        let mut rx = p.subscribe().unwrap();
        p.emit(&tenant, payload());
        let got = rx.recv().await.unwrap();
        assert_eq!(got.version, EVENT_VERSION);
        assert_eq!(got.tenant_token, p.tenant_token(&tenant));
        assert_eq!(got.source, crate::jobs::worker_id());
        assert!(uuid::Uuid::parse_str(&got.id).is_ok());
        assert!(p.flush(Duration::from_secs(5)).await);
        assert_eq!((p.stats().published, p.stats().dropped), (1, 0));
        assert_eq!(p.sink_name(), "broadcast");
    }
}
