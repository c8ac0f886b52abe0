//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! Counters and histograms are updated where things happen (publish, attempt outcome); the
//! queue gauges are read from the store when scraped, so they are right even with several
//! nodes (each node reports the shared queue).

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::time::Millis;
use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The delivery's state after the attempt: succeeded, retrying, failed, skipped, cancelled.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InboundLabels {
    /// `received` (stored for waiters), `rejected` (failed verification; stored for
    /// debugging), `duplicate` (a repeated sender delivery id) or `rate_limited`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// `ok`, or the attempt's error kind (`timeout`, `connect`, `status`, …).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DroppedSpanLabels {
    /// `queue_full` (export fell behind) or `export_failed` (the collector did not take them).
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub events_published: Counter,
    pub deliveries: Family<OutcomeLabels, Counter>,
    pub attempt_seconds: Family<AttemptLabels, Histogram>,
    pub inbound: Family<InboundLabels, Counter>,
    pub otel_spans_dropped: Family<DroppedSpanLabels, Counter>,
    queue_depth: Gauge,
    queue_lag_seconds: Gauge<f64, AtomicU64>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let events_published = Counter::default();
        registry.register(
            "events_published",
            "Events accepted (idempotent repeats not counted)",
            events_published.clone(),
        );
        let deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "delivery_outcomes",
            "Delivery state changes after an attempt or a skip, by outcome",
            deliveries.clone(),
        );
        let attempt_seconds = Family::<AttemptLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
        });
        registry.register(
            "attempt_duration_seconds",
            "Duration of delivery attempts, by result",
            attempt_seconds.clone(),
        );
        let inbound = Family::<InboundLabels, Counter>::default();
        registry.register(
            "inbound_callbacks",
            "Requests captured at /in/{slug}, by result",
            inbound.clone(),
        );
        let otel_spans_dropped = Family::<DroppedSpanLabels, Counter>::default();
        registry.register(
            "otel_spans_dropped",
            "Trace spans lost instead of exported (OpenTelemetry), by reason",
            otel_spans_dropped.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Deliveries due now and waiting for a worker",
            queue_depth.clone(),
        );
        let queue_lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "queue_lag_seconds",
            "How long the oldest due delivery has been waiting",
            queue_lag_seconds.clone(),
        );
        Self {
            registry,
            events_published,
            deliveries,
            attempt_seconds,
            inbound,
            otel_spans_dropped,
            queue_depth,
            queue_lag_seconds,
        }
    }

    pub fn outcome(&self, outcome: &str) {
        self.deliveries
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn inbound(&self, result: &str) {
        self.inbound
            .get_or_create(&InboundLabels {
                result: result.to_string(),
            })
            .inc();
    }

    pub fn attempt(&self, result: &str, seconds: f64) {
        self.attempt_seconds
            .get_or_create(&AttemptLabels {
                result: result.to_string(),
            })
            .observe(seconds);
    }

    /// Counts `n` trace spans lost for `reason` (see `telemetry::otel::Dropped`).
    pub fn spans_dropped(&self, reason: &str, n: u64) {
        self.otel_spans_dropped
            .get_or_create(&DroppedSpanLabels {
                reason: reason.to_string(),
            })
            .inc_by(n);
    }

    /// Reads the queue gauges from the store and renders everything.
    pub async fn render(&self, store: &dyn Store, now: Millis) -> String {
        match store.queue_stats(now).await {
            Ok((depth, oldest)) => {
                self.queue_depth.set(depth as i64);
                let lag = oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
                self.queue_lag_seconds.set(lag);
            }
            Err(e) => tracing::warn!(error = %e, "queue stats unavailable for /metrics"),
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
