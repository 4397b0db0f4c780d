//! Tracing setup: logs to stderr, plus OpenTelemetry traces over OTLP/HTTP (protobuf) when
//! `telemetry.otlp_endpoint` is set and the `otlp` feature is on.
//!
//! Exported spans: `http_request` (one per request, child of the caller's W3C `traceparent` when it
//! sent one) and `llm.upstream` (one per upstream model call). Upstream HTTP calls carry a
//! `traceparent` in the same trace.

use wattos_core::TraceContext;
use wattos_core::telemetry::TelemetryConfig;

/// Keeps the trace exporter running; flushes and stops it when dropped.
#[derive(Default)]
pub struct TracingGuard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl std::fmt::Debug for TracingGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingGuard").finish_non_exhaustive()
    }
}

impl TracingGuard {
    /// Exports every finished span now (blocks until the exporter answered).
    pub fn flush(&self) {
        #[cfg(feature = "otlp")]
        if let Some(p) = &self.provider
            && let Err(e) = p.force_flush()
        {
            tracing::warn!(error = %e, "could not flush traces");
        }
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("wattos-server: trace exporter shutdown failed: {e}");
        }
    }
}

/// Installs the global `tracing` subscriber: logs to stderr, and OTLP trace export when
/// `config.otlp_endpoint` is set (needs the `otlp` feature; without it the setting is reported
/// and ignored). Call once, outside any async runtime (the exporter has its own thread).
///
/// # Errors
/// A bad log filter, a bad endpoint, or a subscriber that is already installed.
pub fn init_tracing(config: &TelemetryConfig) -> wattos_core::Result<TracingGuard> {
    #[cfg(feature = "otlp")]
    if let Some(endpoint) = &config.otlp_endpoint {
        return otlp::init(config, endpoint);
    }
    wattos_core::telemetry::init(config)?;
    #[cfg(not(feature = "otlp"))]
    if config.otlp_endpoint.is_some() {
        tracing::warn!(
            "telemetry.otlp_endpoint is set but this build has no `otlp` feature; traces are not exported"
        );
    }
    Ok(TracingGuard::default())
}

/// Ties the request span to the trace context: the caller's `traceparent` becomes the span's remote
/// parent; without one, the request adopts the exported span's trace id, so upstream calls carry
/// the trace the collector sees. A no-op without the `otlp` feature or when no exporter runs.
pub fn link_request_span(span: &tracing::Span, trace: &mut TraceContext, incoming: bool) {
    #[cfg(feature = "otlp")]
    otlp::link(span, trace, incoming);
    #[cfg(not(feature = "otlp"))]
    let _ = (span, trace, incoming);
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
    };
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use wattos_core::telemetry::{LogFormat, TelemetryConfig};
    use wattos_core::{Error, TraceContext};

    use super::TracingGuard;

    /// `<endpoint>/v1/traces` unless the endpoint already names the traces path.
    pub(super) fn traces_url(endpoint: &str) -> String {
        let e = endpoint.trim_end_matches('/');
        if e.ends_with("/v1/traces") {
            e.to_owned()
        } else {
            format!("{e}/v1/traces")
        }
    }

    pub(super) fn init(
        config: &TelemetryConfig,
        endpoint: &str,
    ) -> wattos_core::Result<TracingGuard> {
        let filter = wattos_core::telemetry::parse_filter(&config.log_filter)
            .map_err(|e| Error::invalid_field("telemetry.log_filter", e))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces_url(endpoint))
            .build()
            .map_err(|e| {
                Error::invalid_field("telemetry.otlp_endpoint", format!("OTLP exporter: {e}"))
            })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("wattos-server");
        opentelemetry::global::set_tracer_provider(provider.clone());
        let otel = tracing_opentelemetry::layer().with_tracer(tracer);
        let registry = tracing_subscriber::registry().with(filter).with(otel);
        let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        let result = match config.log_format {
            LogFormat::Json => registry
                .with(fmt.json().flatten_event(true).with_current_span(false))
                .try_init(),
            LogFormat::Pretty => registry.with(fmt.compact()).try_init(),
        };
        result
            .map_err(|e| Error::conflict(format!("tracing subscriber already installed: {e}")))?;
        Ok(TracingGuard {
            provider: Some(provider),
        })
    }

    pub(super) fn link(span: &tracing::Span, trace: &mut TraceContext, incoming: bool) {
        if incoming {
            let (Ok(trace_id), Ok(span_id)) = (
                TraceId::from_hex(&trace.trace_id),
                SpanId::from_hex(&trace.parent_id),
            ) else {
                return;
            };
            let remote = SpanContext::new(
                trace_id,
                span_id,
                TraceFlags::new(trace.flags),
                true,
                TraceState::default(),
            );
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
        } else {
            let cx = span.context();
            let sc = cx.span().span_context().clone();
            if sc.is_valid() {
                trace.trace_id = sc.trace_id().to_string();
                trace.parent_id = sc.span_id().to_string();
                trace.flags = sc.trace_flags().to_u8();
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn traces_path_is_added_once() {
            assert_eq!(
                super::traces_url("http://c:4318"),
                "http://c:4318/v1/traces"
            );
            assert_eq!(
                super::traces_url("http://c:4318/v1/traces/"),
                "http://c:4318/v1/traces"
            );
        }
    }
}
