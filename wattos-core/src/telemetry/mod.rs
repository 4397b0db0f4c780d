//! Telemetry bootstrap: structured `tracing` logs (JSON in production) and the shared metric names.
//!
//! Spans opened by the server carry `request_id` and `tenant_id`; the JSON formatter writes the fields
//! of the current span and its parents into every log line, so each line can be traced to a request.

pub mod names;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::error::{Error, Result};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line, with span fields (production default).
    #[default]
    Json,
    /// Human-readable, for local development.
    Pretty,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            other => Err(format!("expected 'json' or 'pretty', got '{other}'")),
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelemetryConfig {
    /// Output format.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive such as `info,wattos_server=debug`.
    pub log_filter: String,
    /// Service name reported in logs and traces.
    pub service_name: String,
    /// OTLP endpoint for traces, when exporting is wanted.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_filter: "info".into(),
            service_name: "wattos".into(),
            otlp_endpoint: None,
        }
    }
}

/// Validates an `EnvFilter` directive.
///
/// # Errors
/// A message describing the bad directive.
pub fn parse_filter(directive: &str) -> std::result::Result<EnvFilter, String> {
    EnvFilter::try_new(directive).map_err(|e| e.to_string())
}

/// Installs the global `tracing` subscriber (logs go to stderr). Call once at process start.
///
/// # Errors
/// [`crate::ErrorKind::InvalidInput`] for a bad filter, [`crate::ErrorKind::Conflict`] when a
/// subscriber is already installed.
pub fn init(config: &TelemetryConfig) -> Result<()> {
    let filter = parse_filter(&config.log_filter)
        .map_err(|e| Error::invalid_field("telemetry.log_filter", e))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);
    let result = match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    result.map_err(|e| Error::conflict(format!("tracing subscriber already installed: {e}")))
}
