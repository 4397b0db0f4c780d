//! Prometheus metrics recorder for the server process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use wattos_core::telemetry::names;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global Prometheus recorder once per process and returns its handle.
/// Later calls (several apps in one test process) share the same recorder.
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let ms_buckets = [
                1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
                10000.0, 30000.0,
            ];
            let us_buckets = [
                10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_ms".into()), &ms_buckets)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_us".into()), &us_buckets))
                .map(PrometheusBuilder::build_recorder);
            match recorder {
                Ok(recorder) => {
                    let handle = recorder.handle();
                    if metrics::set_global_recorder(recorder).is_ok() {
                        names::describe_all();
                    } else {
                        tracing::warn!("a metrics recorder was already installed; /metrics shows only this recorder's data");
                    }
                    handle
                }
                // Bucket lists are constants and non-empty, so this cannot happen; fall back to defaults.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}
