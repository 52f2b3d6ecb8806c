//! Prometheus metrics: one process-wide recorder (the `metrics` facade with
//! the Prometheus exporter, no listener of its own), rendered by `GET /metrics`.
//! Counters and histograms are recorded where things happen (ingest, the
//! store writer, the outbox); gauges that describe state (outbox depth, oldest
//! pending delivery, stream clients) are set just before each scrape.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets, in seconds.
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];
const BATCH: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Install the recorder (once per process); None if another recorder was
/// installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(SECONDS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(
                            "appliance_store_batch_size".into(),
                        ),
                        BATCH,
                    )
                })
                .ok()?;
            builder.install_recorder().ok()
        })
        .as_ref()
}
