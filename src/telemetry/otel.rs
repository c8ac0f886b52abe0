//! OpenTelemetry traces (docs/tracing.md): off unless an OTLP endpoint is configured, by the
//! standard `OTEL_*` variables ([`OtelSettings::from_env`]) or by whoever builds the
//! application ([`crate::config::Config::otel`]).
//!
//! Each application gets its own tracer provider ([`Tracing::start`]); nothing is installed
//! process-wide, so several instances in one process (the tests) each export where they were
//! told. Off, a [`Tracing`] is a `None`: every span call is a branch on it and nothing else.
//!
//! Export never holds up the caller: an ended span goes into a bounded queue with `try_send`
//! (a full queue drops it, counted by the `dropped` callback, which the application points at
//! `herald_otel_spans_dropped_total`), and one task batches the queue and posts OTLP/HTTP
//! protobuf with its own `reqwest` client. That client has no SSRF guard: the collector is the
//! operator's choice, not a tenant's, and is often on loopback or a private network.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
pub use opentelemetry::{KeyValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanProcessor};
use prost::Message as _;
use tokio::sync::{mpsc, watch};

/// Why spans were lost: the queue was full, or the collector did not take a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    QueueFull,
    ExportFailed,
}

impl Dropped {
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::QueueFull => "queue_full",
            Dropped::ExportFailed => "export_failed",
        }
    }
}

/// Counts lost spans (the application's Prometheus counter).
pub type DropCounter = Arc<dyn Fn(Dropped, u64) + Send + Sync>;

/// Where and how traces are exported. The defaults are the specification's.
#[derive(Debug, Clone)]
pub struct OtelSettings {
    /// The full traces URL (`…/v1/traces`).
    pub endpoint: String,
    /// Sent with every export (`OTEL_EXPORTER_OTLP_HEADERS`), e.g. a vendor's API key.
    pub headers: Vec<(String, String)>,
    /// `service.name` of the resource (`OTEL_SERVICE_NAME`).
    pub service_name: String,
    pub sampler: Sampler,
    /// Ended spans waiting for export; more are dropped (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub max_queue_size: usize,
    /// Most spans per export request (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub max_export_batch_size: usize,
    /// How long the first span of a batch waits for others (`OTEL_BSP_SCHEDULE_DELAY`).
    pub schedule_delay: Duration,
    /// One export request's timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub export_timeout: Duration,
}

impl OtelSettings {
    /// Exports to `endpoint` (the full traces URL) with the specification's defaults.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            headers: vec![],
            service_name: "herald".into(),
            sampler: Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            max_queue_size: 2048,
            max_export_batch_size: 512,
            schedule_delay: Duration::from_millis(5000),
            export_timeout: Duration::from_millis(10_000),
        }
    }

    /// From the process environment (see [`OtelSettings::from_vars`]).
    pub fn from_env() -> Result<Option<Self>, String> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// From the standard variables, looked up with `var`: `None` when no endpoint is set or
    /// `OTEL_SDK_DISABLED=true`. `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as it is;
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is a base that gets `/v1/traces` appended.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let var = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none") {
            return Ok(None);
        }
        let endpoint = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(traces), _) => traces.trim().to_string(),
            (None, Some(base)) => format!("{}/v1/traces", base.trim().trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
        url::Url::parse(&endpoint)
            .map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT: {endpoint:?} is no URL ({e})"))?;
        let mut s = Self::new(endpoint);
        for name in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            if let Some(h) = var(name) {
                s.headers
                    .extend(parse_headers(&h).map_err(|e| format!("{name}: {e}"))?);
            }
        }
        if let Some(name) = var("OTEL_SERVICE_NAME") {
            s.service_name = name.trim().to_string();
        }
        s.sampler = sampler(
            var("OTEL_TRACES_SAMPLER").as_deref(),
            var("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        )?;
        let millis = |name: &str, default: Duration| -> Result<Duration, String> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| format!("{name}: {v:?} is not a number of milliseconds")),
            }
        };
        let count = |name: &str, default: usize| -> Result<usize, String> {
            match var(name) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!("{name}: {v:?} is not a positive number")),
                },
            }
        };
        s.schedule_delay = millis("OTEL_BSP_SCHEDULE_DELAY", s.schedule_delay)?;
        s.export_timeout = millis("OTEL_EXPORTER_OTLP_TIMEOUT", s.export_timeout)?;
        s.max_queue_size = count("OTEL_BSP_MAX_QUEUE_SIZE", s.max_queue_size)?;
        s.max_export_batch_size =
            count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", s.max_export_batch_size)?.min(s.max_queue_size);
        Ok(Some(s))
    }
}

/// `key1=value1,key2=value2`, values percent-decoded (the specification's format).
fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            let decode = |s: &str| {
                url::form_urlencoded::parse(
                    format!("x={}", s.trim().replace('+', "%2B")).as_bytes(),
                )
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
            };
            Ok((decode(k).to_ascii_lowercase(), decode(v)))
        })
        .collect()
}

/// `OTEL_TRACES_SAMPLER` and its argument; unset is `parentbased_always_on`.
fn sampler(name: Option<&str>, arg: Option<&str>) -> Result<Sampler, String> {
    let ratio = || -> Result<f64, String> {
        match arg {
            None => Ok(1.0),
            Some(a) => a
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("OTEL_TRACES_SAMPLER_ARG: {a:?} is not a ratio in 0-1")),
        }
    };
    let parent = |root: Sampler| Sampler::ParentBased(Box::new(root));
    Ok(
        match name.map(str::trim).unwrap_or("parentbased_always_on") {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
            "parentbased_always_on" => parent(Sampler::AlwaysOn),
            "parentbased_always_off" => parent(Sampler::AlwaysOff),
            "parentbased_traceidratio" => parent(Sampler::TraceIdRatioBased(ratio()?)),
            other => {
                return Err(format!(
                    "OTEL_TRACES_SAMPLER: {other:?} is not one of always_on, always_off, \
                 traceidratio, parentbased_always_on, parentbased_always_off, \
                 parentbased_traceidratio"
                ));
            }
        },
    )
}

/// The application's tracer, or nothing when tracing is off. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tracing(Option<Arc<Inner>>);

struct Inner {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    stop: watch::Sender<bool>,
    exporter: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Tracing").field(&self.is_on()).finish()
    }
}

impl Tracing {
    /// Tracing off: spans are no-ops.
    pub fn off() -> Self {
        Self(None)
    }

    /// Starts the export task (on the current tokio runtime) and a tracer feeding it.
    pub fn start(settings: &OtelSettings, dropped: DropCounter) -> Self {
        let (tx, rx) = mpsc::channel(settings.max_queue_size);
        let (stop, stop_rx) = watch::channel(false);
        let resource = Resource::builder_empty()
            .with_service_name(settings.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let exporter = Exporter {
            client: reqwest::Client::builder()
                .timeout(settings.export_timeout)
                .build()
                .expect("the OTLP client configuration is valid"),
            endpoint: settings.endpoint.clone(),
            headers: settings.headers.clone(),
            resource: ResourceAttributesWithSchema::from(&resource),
            dropped: dropped.clone(),
        };
        let task = tokio::spawn(exporter.run(
            rx,
            stop_rx,
            settings.max_export_batch_size,
            settings.schedule_delay,
        ));
        let provider = SdkTracerProvider::builder()
            .with_sampler(settings.sampler.clone())
            .with_resource(resource)
            .with_span_processor(Queue { tx, dropped })
            .build();
        let tracer = provider.tracer("herald");
        Self(Some(Arc::new(Inner {
            tracer,
            provider,
            stop,
            exporter: Mutex::new(Some(task)),
        })))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// A `SERVER` span continuing `traceparent` (a W3C header, when the caller sent one).
    pub fn server(
        &self,
        name: impl Into<String>,
        traceparent: Option<&str>,
        attributes: Vec<KeyValue>,
    ) -> Span {
        self.span(SpanKind::Server, name.into(), traceparent, attributes)
    }

    /// A `CLIENT` span, child of `traceparent` (a stored one: a delivery's publish span).
    pub fn client(
        &self,
        name: impl Into<String>,
        traceparent: Option<&str>,
        attributes: Vec<KeyValue>,
    ) -> Span {
        self.span(SpanKind::Client, name.into(), traceparent, attributes)
    }

    fn span(
        &self,
        kind: SpanKind,
        name: String,
        traceparent: Option<&str>,
        attributes: Vec<KeyValue>,
    ) -> Span {
        let Some(inner) = &self.0 else {
            return Span(None);
        };
        let parent = traceparent.map_or_else(Context::new, parent_context);
        let span = inner
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(&inner.tracer, &parent);
        Span(Some(span))
    }

    /// Sends the spans still queued and stops the export task (at shutdown), waiting at most
    /// `grace` for the collector.
    pub async fn shutdown(&self, grace: Duration) {
        let Some(inner) = &self.0 else { return };
        let _ = inner.provider.shutdown();
        let _ = inner.stop.send(true);
        let task = inner.exporter.lock().expect("not poisoned").take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(grace, task).await;
        }
    }
}

/// The context a W3C `traceparent` names (an invalid one names none: a new trace starts).
fn parent_context(traceparent: &str) -> Context {
    use opentelemetry::propagation::TextMapPropagator as _;
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// A span in progress; ended when dropped. A no-op when tracing is off.
pub struct Span(Option<opentelemetry_sdk::trace::Span>);

impl Span {
    /// The no-op span.
    pub fn none() -> Self {
        Span(None)
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(s) = &mut self.0 {
            s.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed: `error.type` (the semantic conventions' low-cardinality kind)
    /// and an error status with `message`.
    pub fn fail(&mut self, error_type: impl Into<Value>, message: impl Into<String>) {
        if let Some(s) = &mut self.0 {
            s.set_attribute(KeyValue::new("error.type", error_type));
            s.set_status(Status::error(message.into()));
        }
    }

    /// This span as a W3C `traceparent` value (`00-{trace}-{span}-{flags}`), for a child in
    /// another process or a later attempt; `None` when tracing is off.
    pub fn traceparent(&self) -> Option<String> {
        let s = self.0.as_ref()?;
        let cx = s.span_context();
        cx.is_valid().then(|| {
            format!(
                "00-{}-{}-{:02x}",
                cx.trace_id(),
                cx.span_id(),
                cx.trace_flags().to_u8()
            )
        })
    }
}

/// Hands ended spans to the export task without waiting: a full queue drops them.
struct Queue {
    tx: mpsc::Sender<SpanData>,
    dropped: DropCounter,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(span) {
            (self.dropped)(Dropped::QueueFull, 1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

struct Exporter {
    client: reqwest::Client,
    endpoint: String,
    headers: Vec<(String, String)>,
    resource: ResourceAttributesWithSchema,
    dropped: DropCounter,
}

impl Exporter {
    /// Batches the queue: a batch goes when it is full, `delay` after its first span, or at
    /// the stop (with whatever is queued then).
    async fn run(
        self,
        mut rx: mpsc::Receiver<SpanData>,
        mut stop: watch::Receiver<bool>,
        batch_size: usize,
        delay: Duration,
    ) {
        loop {
            let mut batch = Vec::with_capacity(batch_size);
            tokio::select! {
                n = rx.recv_many(&mut batch, batch_size) => if n == 0 { return },
                _ = stopped(&mut stop) => {
                    while let Ok(span) = rx.try_recv() {
                        batch.push(span);
                        if batch.len() >= batch_size {
                            self.export(std::mem::take(&mut batch)).await;
                        }
                    }
                    if !batch.is_empty() {
                        self.export(batch).await;
                    }
                    return;
                }
            }
            let deadline = tokio::time::Instant::now() + delay;
            while batch.len() < batch_size {
                let room = batch_size - batch.len();
                tokio::select! {
                    n = rx.recv_many(&mut batch, room) => if n == 0 { break },
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = stopped(&mut stop) => break,
                }
            }
            self.export(batch).await;
        }
    }

    async fn export(&self, batch: Vec<SpanData>) {
        let n = batch.len() as u64;
        let body = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &self.resource),
        }
        .encode_to_vec();
        let mut req = self
            .client
            .post(&self.endpoint)
            .header("content-type", "application/x-protobuf")
            .body(body);
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let outcome = match req.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("the collector answered {}", r.status())),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = outcome {
            (self.dropped)(Dropped::ExportFailed, n);
            tracing::warn!(spans = n, error = %e, endpoint = %self.endpoint,
                "OTLP trace export failed; the spans are dropped");
        }
    }
}

/// Resolves once the stop is given (the watch's guard never crosses an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn tracing_is_off_without_an_endpoint_or_when_the_sdk_is_disabled() {
        assert!(OtelSettings::from_vars(vars(&[])).unwrap().is_none());
        let disabled = vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert!(OtelSettings::from_vars(disabled).unwrap().is_none());
    }

    #[test]
    fn the_base_endpoint_gets_the_traces_path_and_the_traces_endpoint_is_used_as_is() {
        let base = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        let s = OtelSettings::from_vars(base).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces");
        let own = vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://other:4318/traces",
            ),
        ]);
        let s = OtelSettings::from_vars(own).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://other:4318/traces");
    }

    #[test]
    fn headers_service_name_and_sampler_come_from_the_standard_variables() {
        let env = vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=s%3Dcret, X-Team=blue",
            ),
            ("OTEL_SERVICE_NAME", "herald-eu"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]);
        let s = OtelSettings::from_vars(env).unwrap().unwrap();
        assert_eq!(
            s.headers,
            vec![
                ("api-key".to_string(), "s=cret".to_string()),
                ("x-team".to_string(), "blue".to_string())
            ]
        );
        assert_eq!(s.service_name, "herald-eu");
        assert!(matches!(s.sampler, Sampler::TraceIdRatioBased(r) if r == 0.25));
    }

    #[test]
    fn an_unknown_sampler_or_a_bad_ratio_is_refused_with_the_variable_named() {
        let env = vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
        ]);
        let e = OtelSettings::from_vars(env).unwrap_err();
        assert!(e.starts_with("OTEL_TRACES_SAMPLER:"), "{e}");
        let env = vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ]);
        let e = OtelSettings::from_vars(env).unwrap_err();
        assert!(e.starts_with("OTEL_TRACES_SAMPLER_ARG:"), "{e}");
    }

    #[test]
    fn a_span_continues_the_trace_of_its_traceparent() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let t = Tracing::start(
                &OtelSettings::new("http://127.0.0.1:9/v1/traces"),
                Arc::new(|_, _| {}),
            );
            let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let span = t.server("POST /v1/events", Some(parent), vec![]);
            let tp = span.traceparent().unwrap();
            assert!(
                tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{tp}"
            );
            assert!(tp.ends_with("-01"));
            assert!(!tp.contains("00f067aa0ba902b7"));
            assert!(
                Tracing::off()
                    .server("x", Some(parent), vec![])
                    .traceparent()
                    .is_none()
            );
        });
    }
}
