//! [`JetStreamEventSink`]: platform events on a NATS JetStream stream (the shared-mode default).

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use async_trait::async_trait;
use wattos_core::{Error, Result};

use super::{EventSink, PlatformEvent};

/// Stream layout of the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamEventConfig {
    /// Stream name (letters, digits, `_`, `-`). Default `WATTOS_EVENTS`.
    pub stream: String,
    /// Subject prefix: events go to `<prefix>.usage.<tenant_token>` and
    /// `<prefix>.audit.<tenant_token>`; the stream captures `<prefix>.>`. Default `wattos.events`.
    pub subject_prefix: String,
    /// How long events are kept. Default 7 days.
    pub max_age: Duration,
    /// Window in which a re-published event (same id) is stored once. Default 2 min.
    pub duplicate_window: Duration,
    /// Stream replicas (1 for a single NATS server).
    pub replicas: usize,
}

impl Default for JetStreamEventConfig {
    fn default() -> Self {
        Self {
            stream: "WATTOS_EVENTS".into(),
            subject_prefix: "wattos.events".into(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
        }
    }
}

/// Publishes each event to `<prefix>.<type>.<tenant_token>` and waits for the stream's
/// acknowledgement; the event id is the `Nats-Msg-Id`. Cheap to clone.
#[derive(Clone)]
pub struct JetStreamEventSink {
    js: Context,
    prefix: String,
}

impl std::fmt::Debug for JetStreamEventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamEventSink")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn nats_err<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
) -> impl Fn(E) -> Error {
    move |e| Error::unavailable(format!("nats: {what} failed: {e}")).with_source(e)
}

impl JetStreamEventSink {
    /// Connects to `url` and creates the stream if it does not exist (every instance does this
    /// at start). The client reconnects on its own after an outage.
    ///
    /// # Errors
    /// `unavailable` when NATS cannot be reached or refuses the stream.
    pub async fn connect(url: &str, cfg: JetStreamEventConfig) -> Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name("wattos-events")
            .connect(url)
            .await
            .map_err(nats_err("connect"))?;
        Self::new(client, cfg).await
    }

    /// Creates the stream (if missing) on an existing client.
    ///
    /// # Errors
    /// `unavailable` when JetStream refuses the stream.
    pub async fn new(client: async_nats::Client, cfg: JetStreamEventConfig) -> Result<Self> {
        let js = jetstream::new(client);
        js.get_or_create_stream(stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![format!("{}.>", cfg.subject_prefix)],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            max_age: cfg.max_age,
            duplicate_window: cfg.duplicate_window,
            num_replicas: cfg.replicas,
            ..Default::default()
        })
        .await
        .map_err(nats_err("creating the event stream"))?;
        Ok(Self {
            js,
            prefix: cfg.subject_prefix,
        })
    }

    /// The subject of `event`.
    pub fn subject(&self, event: &PlatformEvent) -> String {
        format!(
            "{}.{}.{}",
            self.prefix,
            event.payload.kind(),
            event.tenant_token
        )
    }
}

#[async_trait]
impl EventSink for JetStreamEventSink {
    fn name(&self) -> &'static str {
        "jetstream"
    }

    async fn publish(&self, event: &PlatformEvent) -> Result<()> {
        let bytes = serde_json::to_vec(event)
            .map_err(|e| Error::internal("event encoding").with_source(e))?;
        self.js
            .send_publish(
                self.subject(event),
                PublishMessage::build()
                    .payload(bytes.into())
                    .message_id(event.id.clone()),
            )
            .await
            .map_err(nats_err("publishing an event"))?
            .await
            .map_err(nats_err("event acknowledgement"))?;
        Ok(())
    }
}
