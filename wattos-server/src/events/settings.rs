//! `events.*` settings and building the publisher they describe.

use std::sync::Arc;
use std::time::Duration;

use wattos_core::Result;
use wattos_core::config::{Config, ConfigReader, DeploymentMode, Secret};

use super::{BroadcastSink, EventPublisher, EventSink, NoopSink, PublisherOptions, TenantTokens};

/// Where events go (`events.sink`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// JetStream in shared mode, in-process broadcast otherwise (the default).
    Auto,
    /// NATS JetStream (needs `nats.url` and the `nats` feature).
    JetStream,
    /// In-process subscribers only.
    Broadcast,
    /// Nowhere.
    None,
}

/// Platform event settings (`events.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct EventSettings {
    /// `events.sink`: `auto` (default), `jetstream`, `broadcast` or `none`.
    pub sink: SinkKind,
    /// `events.stream`: JetStream stream name (default `WATTOS_EVENTS`).
    pub stream: String,
    /// `events.subject_prefix`: subject prefix (default `wattos.events`).
    pub subject_prefix: String,
    /// `events.buffer`: events held for the sink before new ones are dropped (default 10000).
    pub buffer: usize,
    /// `events.publish_timeout`: longest wait for one acknowledgement (default 5 s).
    pub publish_timeout: Duration,
    /// `events.max_age`: how long the stream keeps events (default 168 h).
    pub max_age: Duration,
    /// `events.tenant_key`: key of the subject tokens (default: derived from `auth.key_pepper`).
    pub tenant_key: Option<Secret<String>>,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            sink: SinkKind::Auto,
            stream: "WATTOS_EVENTS".into(),
            subject_prefix: "wattos.events".into(),
            buffer: 10_000,
            publish_timeout: Duration::from_secs(5),
            max_age: Duration::from_secs(7 * 24 * 3600),
            tenant_key: None,
        }
    }
}

/// Whether `s` is one NATS subject token we accept: letters, digits, `_` and `-`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `prefix` is a dot-separated list of [`is_token`] tokens.
pub(crate) fn is_subject_prefix(prefix: &str) -> bool {
    prefix.split('.').all(is_token)
}

/// Whether one subject prefix is a token-wise prefix of the other (their streams would overlap).
pub(crate) fn prefixes_overlap(a: &str, b: &str) -> bool {
    let (a, b) = (format!("{a}."), format!("{b}."));
    a.starts_with(&b) || b.starts_with(&a)
}

impl EventSettings {
    /// Reads the settings, recording problems in `r`.
    pub fn read(r: &mut ConfigReader, core: &Config) -> Self {
        let d = Self::default();
        let sink = match r.or::<String>("events.sink", "auto".into()).as_str() {
            "auto" => SinkKind::Auto,
            "jetstream" => SinkKind::JetStream,
            "broadcast" => SinkKind::Broadcast,
            "none" => SinkKind::None,
            other => {
                r.problem(
                    "events.sink",
                    format!("expected 'auto', 'jetstream', 'broadcast' or 'none', got '{other}'"),
                );
                SinkKind::Auto
            }
        };
        let s = Self {
            sink,
            stream: r.or("events.stream", d.stream),
            subject_prefix: r.or("events.subject_prefix", d.subject_prefix),
            buffer: r.or("events.buffer", d.buffer),
            publish_timeout: r.or("events.publish_timeout", d.publish_timeout),
            max_age: r.or("events.max_age", d.max_age),
            tenant_key: r.optional("events.tenant_key"),
        };
        if sink == SinkKind::JetStream && core.nats.is_none() {
            r.problem("events.sink", "'jetstream' needs nats.url");
        }
        if !is_token(&s.stream) {
            r.problem("events.stream", "use letters, digits, '_' and '-' only");
        }
        if !is_subject_prefix(&s.subject_prefix) {
            r.problem(
                "events.subject_prefix",
                "use dot-separated tokens of letters, digits, '_' and '-' (no wildcards)",
            );
        }
        if s.buffer == 0 || s.buffer > 1_000_000 {
            r.problem("events.buffer", "must be 1..=1000000");
        }
        if s.publish_timeout < Duration::from_millis(10)
            || s.publish_timeout > Duration::from_secs(60)
        {
            r.problem("events.publish_timeout", "must be between 10ms and 60s");
        }
        if s.max_age < Duration::from_secs(60) {
            r.problem("events.max_age", "must be at least 1m");
        }
        if let Some(k) = &s.tenant_key
            && k.expose().len() < 16
        {
            r.problem("events.tenant_key", "must be at least 16 characters");
        }
        s
    }

    /// The sink this instance uses in `mode` (resolving `auto`).
    pub fn effective_sink(&self, mode: DeploymentMode, has_nats: bool) -> SinkKind {
        match self.sink {
            SinkKind::Auto if mode == DeploymentMode::Shared && has_nats => SinkKind::JetStream,
            SinkKind::Auto => SinkKind::Broadcast,
            other => other,
        }
    }
}

/// The publisher for `settings`: JetStream in shared mode, in-process broadcast in embedded mode
/// (see [`EventSettings::effective_sink`]). Subject tokens are keyed by `events.tenant_key`, else
/// by a key derived from `auth.key_pepper`.
///
/// # Errors
/// `unavailable` when the JetStream stream cannot be set up.
pub async fn build_publisher(settings: &crate::settings::Settings) -> Result<EventPublisher> {
    let ev = &settings.events;
    let tokens = match (&ev.tenant_key, &settings.auth.key_pepper) {
        (Some(k), _) => TenantTokens::derived_from(k.expose().as_bytes()),
        (None, Some(p)) => TenantTokens::derived_from(p.expose().as_bytes()),
        // No secret at all: authentication is off, so every request is tenant `default`.
        (None, None) => TenantTokens::new(b""),
    };
    let opts = PublisherOptions {
        buffer: ev.buffer,
        publish_timeout: ev.publish_timeout,
        ..PublisherOptions::default()
    };
    let core = &settings.core;
    let sink: Arc<dyn EventSink> = match ev.effective_sink(core.mode, core.nats.is_some()) {
        SinkKind::Broadcast | SinkKind::Auto => {
            return Ok(EventPublisher::start_broadcast(
                BroadcastSink::new(1024),
                tokens,
                opts,
            ));
        }
        SinkKind::None => Arc::new(NoopSink),
        SinkKind::JetStream => jetstream_sink(core, ev).await?,
    };
    tracing::info!(sink = sink.name(), "platform events");
    Ok(EventPublisher::start(sink, tokens, opts))
}

#[cfg(feature = "nats")]
async fn jetstream_sink(core: &Config, ev: &EventSettings) -> Result<Arc<dyn EventSink>> {
    let url = core
        .nats
        .as_ref()
        .map(|n| n.url.expose().clone())
        .ok_or_else(|| {
            wattos_core::Error::invalid_field("events.sink", "'jetstream' needs nats.url")
        })?;
    let cfg = super::JetStreamEventConfig {
        stream: ev.stream.clone(),
        subject_prefix: ev.subject_prefix.clone(),
        max_age: ev.max_age,
        ..super::JetStreamEventConfig::default()
    };
    Ok(Arc::new(
        super::JetStreamEventSink::connect(&url, cfg).await?,
    ))
}

#[cfg(not(feature = "nats"))]
async fn jetstream_sink(_core: &Config, _ev: &EventSettings) -> Result<Arc<dyn EventSink>> {
    Err(wattos_core::Error::unavailable(
        "events.sink is 'jetstream' (or shared mode), but this binary was built without the `nats` feature",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(env: &[(&str, &str)]) -> (EventSettings, Vec<String>) {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let core = Config::from_sources(None, Vec::new()).unwrap();
        let mut r = ConfigReader::new(None, env);
        let s = EventSettings::read(&mut r, &core);
        (s, r.problems().iter().map(|p| p.key.clone()).collect())
    }

    #[test]
    fn defaults_and_overrides_are_read() {
        let (s, problems) = read(&[]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s, EventSettings::default());
        assert_eq!(
            s.effective_sink(DeploymentMode::Embedded, false),
            SinkKind::Broadcast
        );
        assert_eq!(
            s.effective_sink(DeploymentMode::Shared, true),
            SinkKind::JetStream
        );
        let (s, problems) = read(&[
            ("WATTOS_EVENTS__SINK", "none"),
            ("WATTOS_EVENTS__STREAM", "EV_1"),
            ("WATTOS_EVENTS__SUBJECT_PREFIX", "ev.run-1"),
            ("WATTOS_EVENTS__BUFFER", "64"),
            ("WATTOS_EVENTS__PUBLISH_TIMEOUT", "250ms"),
            ("WATTOS_EVENTS__MAX_AGE", "24h"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.sink, SinkKind::None);
        assert_eq!(s.subject_prefix, "ev.run-1");
        assert_eq!(s.buffer, 64);
        assert_eq!(s.publish_timeout, Duration::from_millis(250));
        assert_eq!(
            s.effective_sink(DeploymentMode::Shared, true),
            SinkKind::None
        );
    }

    #[test]
    fn bad_values_are_reported_by_key() {
        let (_, problems) = read(&[
            ("WATTOS_EVENTS__SINK", "jetstream"),
            ("WATTOS_EVENTS__STREAM", "a.b"),
            ("WATTOS_EVENTS__SUBJECT_PREFIX", "wattos.*"),
            ("WATTOS_EVENTS__BUFFER", "0"),
            ("WATTOS_EVENTS__PUBLISH_TIMEOUT", "0s"),
            ("WATTOS_EVENTS__MAX_AGE", "5s"),
            ("WATTOS_EVENTS__TENANT_KEY", "short"),
        ]);
        for key in [
            "events.sink",
            "events.stream",
            "events.subject_prefix",
            "events.buffer",
            "events.publish_timeout",
            "events.max_age",
            "events.tenant_key",
        ] {
            assert!(problems.iter().any(|p| p == key), "{key}: {problems:?}");
        }
        let (_, problems) = read(&[("WATTOS_EVENTS__SINK", "kafka")]);
        assert_eq!(problems, ["events.sink"]);
    }

    #[test]
    fn subject_prefixes_are_checked_and_overlaps_found() {
        assert!(is_subject_prefix("wattos.events"));
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a"] {
            assert!(!is_subject_prefix(bad), "{bad}");
        }
        assert!(prefixes_overlap("wattos", "wattos.jobs"));
        assert!(prefixes_overlap("wattos.jobs", "wattos.jobs"));
        assert!(prefixes_overlap("wattos.jobs", "wattos"));
        assert!(!prefixes_overlap("wattos.events", "wattos.jobs"));
        assert!(!prefixes_overlap("wattos.job", "wattos.jobs"));
    }
}
