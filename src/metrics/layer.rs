//! The layer, its builder and the state shared by every clone of the service.

use rustc_hash::FxBuildHasher;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use http::request::Parts;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tower_layer::Layer;

use super::labels::{
    HttpLabels, METHODS, MethodLabel, RejectionLabels, TraceLabel, label_text, valid_trace_id,
};
use super::service::Metrics;
use crate::error::Code;
use crate::paths::PathSet;
use crate::route::MatchedRoute;

/// The OpenTelemetry advisory buckets for `http.server.request.duration`, in seconds.
pub const DEFAULT_DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Default buckets of the body size histograms, in bytes: 64 B to 16 MiB by fours.
pub const DEFAULT_SIZE_BUCKETS: [f64; 10] = [
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

/// Default cap on distinct label sets.
pub const DEFAULT_MAX_SERIES: usize = 10_000;

/// Route label value of requests no route matched.
pub const DEFAULT_UNMATCHED_ROUTE: &str = "unmatched";

/// Route label value of the series that takes observations beyond the cap.
pub const OVERFLOW_ROUTE: &str = "_overflow";

type ExemplarFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

/// Records RED metrics of every request: duration to the end of the response body,
/// active requests, body sizes and rejections. See the [module docs](super).
#[derive(Clone)]
pub struct MetricsLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for MetricsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsLayer")
            .field("max_series", &self.shared.max_series)
            .field("exemplars", &self.shared.exemplar.is_some())
            .field("skip_paths", &self.shared.skip)
            .finish_non_exhaustive()
    }
}

impl MetricsLayer {
    /// A layer with the default settings, registering its metrics in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        Self::builder().register(registry)
    }

    /// The layer of [`Stack::from_env`](crate::stack::Stack::from_env): probes and
    /// `/metrics` (`PathSet::probes()`) are not measured, and latency exemplars
    /// carry the trace id. No variable changes it (`METRICS_TOKEN` is the
    /// exporter's), so this never fails today.
    pub fn from_env(registry: &mut Registry) -> Result<Self, crate::config::ConfigError> {
        Ok(Self::builder()
            .skip_paths(PathSet::probes())
            .trace_exemplars()
            .register(registry))
    }

    /// A builder to change the defaults.
    pub fn builder() -> MetricsLayerBuilder {
        MetricsLayerBuilder::default()
    }

    /// How many distinct label sets exist (the overflow series excluded).
    pub fn series(&self) -> usize {
        self.shared.series_count.load(Ordering::Relaxed)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics::from_shared(inner, Some(self.shared.clone()))
    }
}

impl<S> crate::stack::Switchable<S> for MetricsLayer {
    /// A `Metrics` service that records nothing.
    fn off(inner: S) -> Self::Service {
        Metrics::from_shared(inner, None)
    }
}

/// Builder of [`MetricsLayer`]; finish with [`register`](Self::register).
#[must_use]
pub struct MetricsLayerBuilder {
    duration_buckets: Vec<f64>,
    size_buckets: Vec<f64>,
    max_series: usize,
    skip: PathSet,
    unmatched: Arc<str>,
    exemplar: Option<Arc<ExemplarFn>>,
}

impl Default for MetricsLayerBuilder {
    fn default() -> Self {
        Self {
            duration_buckets: DEFAULT_DURATION_BUCKETS.to_vec(),
            size_buckets: DEFAULT_SIZE_BUCKETS.to_vec(),
            max_series: DEFAULT_MAX_SERIES,
            skip: PathSet::default(),
            unmatched: DEFAULT_UNMATCHED_ROUTE.into(),
            exemplar: None,
        }
    }
}

impl fmt::Debug for MetricsLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsLayerBuilder")
            .field("duration_buckets", &self.duration_buckets)
            .field("size_buckets", &self.size_buckets)
            .field("max_series", &self.max_series)
            .field("skip", &self.skip)
            .field("unmatched", &self.unmatched)
            .field("exemplars", &self.exemplar.is_some())
            .finish()
    }
}

impl MetricsLayerBuilder {
    /// Upper bounds of the duration buckets, in seconds. Non-finite values are
    /// dropped, the rest sorted and deduplicated; `+Inf` is always added.
    pub fn duration_buckets(mut self, buckets: impl IntoIterator<Item = f64>) -> Self {
        self.duration_buckets = clean_buckets(buckets);
        self
    }

    /// Upper bounds of the request and response body size buckets, in bytes.
    pub fn size_buckets(mut self, buckets: impl IntoIterator<Item = f64>) -> Self {
        self.size_buckets = clean_buckets(buckets);
        self
    }

    /// Cap on distinct label sets (default 10,000). Beyond it, new label sets go to
    /// one overflow series (`http_request_method="_OTHER"`, `http_route="_overflow"`,
    /// `http_response_status_code="0"`) and `http_server_series_overflow_total`
    /// counts the observations folded into it.
    pub fn max_series(mut self, max: usize) -> Self {
        self.max_series = max;
        self
    }

    /// Paths that are not measured, such as probes and `/metrics` itself: the
    /// shared [`PathSet`] (`["/health/*", "/metrics"]` converts into one).
    pub fn skip_paths(mut self, paths: impl Into<PathSet>) -> Self {
        self.skip = paths.into();
        self
    }

    /// The `http_route` value of requests that matched no route (default
    /// `unmatched`). Use `""` to leave the label out, as the OpenTelemetry
    /// conventions do when the route is unknown.
    pub fn unmatched_route(mut self, value: impl Into<Arc<str>>) -> Self {
        self.unmatched = value.into();
        self
    }

    /// Attaches exemplars to the duration buckets: `source` returns the trace id of
    /// a request, if known. Ids that are not 1 to 64 characters of
    /// `[A-Za-z0-9_-]` are ignored. When `source` gives nothing, the `trace_id` of a
    /// [`Problem`](crate::error::Problem) on the response is used.
    pub fn exemplar<F>(mut self, source: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.exemplar = Some(Arc::new(source));
        self
    }

    /// Attaches exemplars with the request's trace id: the
    /// [`TraceId`](crate::trace_context::TraceId) request extension that the request
    /// log layer sets from `traceparent` (or OpenTelemetry, with the `otel` feature).
    /// Put the log layer outside the metrics layer, as in the canonical order.
    pub fn trace_exemplars(self) -> Self {
        self.exemplar(|parts| {
            parts
                .extensions
                .get::<crate::trace_context::TraceId>()
                .map(ToString::to_string)
        })
    }

    /// Makes the layer with a new [`Registry`] holding its metrics and the
    /// [`ProcessCollector`](super::ProcessCollector); hand the registry to a
    /// [`MetricsExporter`](super::MetricsExporter).
    pub fn build(self) -> (MetricsLayer, Registry) {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(super::ProcessCollector::new()));
        let layer = self.register(&mut registry);
        (layer, registry)
    }

    /// Registers the metrics in `registry` and makes the layer.
    pub fn register(self, registry: &mut Registry) -> MetricsLayer {
        let duration_buckets: Arc<[f64]> = self.duration_buckets.into();
        let size_buckets = Buckets(self.size_buckets.into());
        let duration = if self.exemplar.is_some() {
            let family = Family::new_with_constructor(Buckets(duration_buckets));
            registry.register_with_unit(
                "http_server_request_duration",
                "Duration of HTTP server requests, to the end of the response body",
                Unit::Seconds,
                family.clone(),
            );
            DurationFamily::Exemplars(family)
        } else {
            let family = Family::new_with_constructor(Buckets(duration_buckets));
            registry.register_with_unit(
                "http_server_request_duration",
                "Duration of HTTP server requests, to the end of the response body",
                Unit::Seconds,
                family.clone(),
            );
            DurationFamily::Plain(family)
        };
        let request_size = Family::new_with_constructor(size_buckets.clone());
        registry.register_with_unit(
            "http_server_request_body_size",
            "Size of HTTP server request bodies (from Content-Length or the body's exact size)",
            Unit::Bytes,
            request_size.clone(),
        );
        let response_size = Family::new_with_constructor(size_buckets);
        registry.register_with_unit(
            "http_server_response_body_size",
            "Size of HTTP server response bodies, as sent",
            Unit::Bytes,
            response_size.clone(),
        );
        let active = Family::<MethodLabel, Gauge>::default();
        registry.register(
            "http_server_active_requests",
            "Number of HTTP server requests in flight",
            active.clone(),
        );
        let active = std::array::from_fn(|i| active.get_or_create_owned(&MethodLabel(METHODS[i])));
        let rejections = Rejections::register(
            registry,
            "http_server_rejections",
            "Requests answered by a tower-ops layer, by layer and code",
        );
        let shadow_rejections = Rejections::register(
            registry,
            "http_server_shadow_rejections",
            "Requests a limit in shadow mode would have refused, served as usual, by layer and code",
        );
        let overflow = Counter::default();
        registry.register(
            "http_server_series_overflow",
            "Observations folded into the overflow series once the series cap was reached",
            overflow.clone(),
        );
        MetricsLayer {
            shared: Arc::new(Shared {
                active,
                duration,
                request_size,
                response_size,
                rejections,
                shadow_rejections,
                overflow,
                fast: RwLock::new(HashMap::default()),
                slow: Mutex::new(HashMap::new()),
                overflow_series: OnceLock::new(),
                series_count: AtomicUsize::new(0),
                max_series: self.max_series,
                skip: self.skip,
                unmatched: self.unmatched,
                exemplar: self.exemplar,
            }),
        }
    }
}

fn clean_buckets(buckets: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut out: Vec<f64> = buckets.into_iter().filter(|b| b.is_finite()).collect();
    out.sort_by(f64::total_cmp);
    out.dedup();
    out
}

/// Histogram constructor with fixed buckets.
#[derive(Clone)]
pub(crate) struct Buckets(Arc<[f64]>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

impl MetricConstructor<HistogramWithExemplars<TraceLabel>> for Buckets {
    fn new_metric(&self) -> HistogramWithExemplars<TraceLabel> {
        HistogramWithExemplars::new(self.0.iter().copied())
    }
}

pub(crate) enum DurationFamily {
    Plain(Family<HttpLabels, Histogram, Buckets>),
    Exemplars(Family<HttpLabels, HistogramWithExemplars<TraceLabel>, Buckets>),
}

pub(crate) enum DurationHandle {
    Plain(Histogram),
    Exemplars(HistogramWithExemplars<TraceLabel>),
}

/// The handles of one label set, resolved once and then shared.
pub(crate) struct Series {
    duration: DurationHandle,
    request_size: Histogram,
    response_size: Histogram,
    /// Set on the overflow series: counts each observation folded into it.
    overflow: Option<Counter>,
}

impl Series {
    pub(crate) fn observe(
        &self,
        seconds: f64,
        trace_id: Option<String>,
        request_bytes: Option<u64>,
        response_bytes: u64,
    ) {
        match &self.duration {
            DurationHandle::Plain(h) => h.observe(seconds),
            DurationHandle::Exemplars(h) => h.observe(seconds, trace_id.map(TraceLabel), None),
        }
        if let Some(n) = request_bytes {
            self.request_size.observe(n as f64);
        }
        self.response_size.observe(response_bytes as f64);
        if let Some(c) = &self.overflow {
            c.inc();
        }
    }
}

/// Key of the lock-free-ish fast path: the address and length of the route
/// template (the `MatchedRoute` kept in the entry pins the allocation, so an
/// address is never reused for another text while the entry lives), the method
/// index and the status. No label text is hashed per request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct FastKey {
    route_ptr: usize,
    route_len: usize,
    method: u8,
    status: u16,
}

struct FastEntry {
    series: Arc<Series>,
    _pin: Option<MatchedRoute>,
}

/// route text -> (method index, status) -> series.
type SeriesMap = HashMap<Arc<str>, HashMap<(u8, u16), Arc<Series>>>;

type RejectionMap = HashMap<&'static str, HashMap<Code, Counter>>;

/// A counter family labelled `rejected_by` and `code`, with its handles by
/// label set. Its label sets count against the layer's series cap.
struct Rejections {
    family: Family<RejectionLabels, Counter>,
    series: RwLock<RejectionMap>,
    /// The series of label sets past the cap.
    overflow: OnceLock<Counter>,
}

impl Rejections {
    fn register(registry: &mut Registry, name: &str, help: &str) -> Self {
        let family = Family::<RejectionLabels, Counter>::default();
        registry.register(name, help, family.clone());
        Self {
            family,
            series: RwLock::new(HashMap::new()),
            overflow: OnceLock::new(),
        }
    }
}

pub(crate) struct Shared {
    active: [Gauge; METHODS.len()],
    duration: DurationFamily,
    request_size: Family<HttpLabels, Histogram, Buckets>,
    response_size: Family<HttpLabels, Histogram, Buckets>,
    /// From the [`Problem`](crate::error::Problem) of a response.
    rejections: Rejections,
    /// From the [`ShadowRejection`](crate::error::ShadowRejection) of a response.
    shadow_rejections: Rejections,
    overflow: Counter,
    // FxHash: the key's fields are integers the client does not choose.
    fast: RwLock<HashMap<FastKey, FastEntry, FxBuildHasher>>,
    /// route text -> (method, status) -> series; the source of truth for the cap.
    slow: Mutex<SeriesMap>,
    overflow_series: OnceLock<Arc<Series>>,
    series_count: AtomicUsize,
    max_series: usize,
    skip: PathSet,
    unmatched: Arc<str>,
    exemplar: Option<Arc<ExemplarFn>>,
}

impl Shared {
    #[inline]
    pub(crate) fn skips(&self, path: &str) -> bool {
        self.skip.contains(path)
    }

    #[inline]
    pub(crate) fn active(&self, method: u8) -> &Gauge {
        &self.active[usize::from(method)]
    }

    #[inline]
    pub(crate) fn wants_exemplars(&self) -> bool {
        self.exemplar.is_some()
    }

    /// The trace id for an exemplar, if the hook gives a usable one.
    pub(crate) fn trace_id(&self, parts: &Parts) -> Option<String> {
        let id = (self.exemplar.as_ref()?)(parts)?;
        valid_trace_id(&id).then_some(id)
    }

    fn reserve_series(&self) -> bool {
        self.series_count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_series).then_some(n + 1)
            })
            .is_ok()
    }

    /// The series of a label set, from the fast cache when possible.
    pub(crate) fn series(
        &self,
        method: u8,
        route: Option<&MatchedRoute>,
        status: u16,
    ) -> Arc<Series> {
        let (route_ptr, route_len) =
            route.map_or((0, 0), |r| (r.as_str().as_ptr() as usize, r.as_str().len()));
        let key = FastKey {
            route_ptr,
            route_len,
            method,
            status,
        };
        if let Some(entry) = self
            .fast
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return entry.series.clone();
        }
        let series = self.slow_series(method, route, status);
        let mut fast = self.fast.write().unwrap_or_else(PoisonError::into_inner);
        // Routes made per request (new text each time) would fill the cache; start
        // over instead of growing without bound.
        if fast.len() >= self.max_series.saturating_mul(2).max(1024) {
            fast.clear();
        }
        fast.insert(
            key,
            FastEntry {
                series: series.clone(),
                _pin: route.cloned(),
            },
        );
        series
    }

    fn slow_series(&self, method: u8, route: Option<&MatchedRoute>, status: u16) -> Arc<Series> {
        let text = route.map_or(&*self.unmatched, MatchedRoute::as_str);
        let mut slow = self.slow.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = slow.get(text).and_then(|m| m.get(&(method, status))) {
            return series.clone();
        }
        if !self.reserve_series() {
            drop(slow);
            return self.overflow_series();
        }
        let labels = HttpLabels {
            method: METHODS[usize::from(method)],
            route: label_text(text),
            status,
        };
        let series = Arc::new(self.make_series(&labels, None));
        slow.entry(text.into())
            .or_default()
            .insert((method, status), series.clone());
        series
    }

    fn make_series(&self, labels: &HttpLabels, overflow: Option<Counter>) -> Series {
        Series {
            duration: match &self.duration {
                DurationFamily::Plain(f) => DurationHandle::Plain(f.get_or_create_owned(labels)),
                DurationFamily::Exemplars(f) => {
                    DurationHandle::Exemplars(f.get_or_create_owned(labels))
                }
            },
            request_size: self.request_size.get_or_create_owned(labels),
            response_size: self.response_size.get_or_create_owned(labels),
            overflow,
        }
    }

    fn overflow_series(&self) -> Arc<Series> {
        self.overflow_series
            .get_or_init(|| {
                let labels = HttpLabels {
                    method: METHODS[METHODS.len() - 1],
                    route: OVERFLOW_ROUTE.into(),
                    status: 0,
                };
                Arc::new(self.make_series(&labels, Some(self.overflow.clone())))
            })
            .clone()
    }

    /// Counts a response some tower-ops layer produced.
    #[inline]
    pub(crate) fn reject(&self, rejected_by: &'static str, code: &Code) {
        self.count(&self.rejections, rejected_by, code);
    }

    /// Counts a response a limit in shadow mode would have refused.
    #[inline]
    pub(crate) fn shadow_reject(&self, rejected_by: &'static str, code: &Code) {
        self.count(&self.shadow_rejections, rejected_by, code);
    }

    fn count(&self, rejections: &Rejections, rejected_by: &'static str, code: &Code) {
        if let Some(counter) = rejections
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(rejected_by)
            .and_then(|m| m.get(code))
        {
            counter.inc();
            return;
        }
        let mut map = rejections
            .series
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(counter) = map.get(rejected_by).and_then(|m| m.get(code)) {
            counter.inc();
            return;
        }
        if !self.reserve_series() {
            drop(map);
            self.overflow.inc();
            rejections
                .overflow
                .get_or_init(|| {
                    rejections.family.get_or_create_owned(&RejectionLabels {
                        rejected_by: OVERFLOW_ROUTE.into(),
                        code: "_OTHER".into(),
                    })
                })
                .inc();
            return;
        }
        let counter = rejections.family.get_or_create_owned(&RejectionLabels {
            rejected_by: label_text(rejected_by),
            code: label_text(code.as_str()),
        });
        counter.inc();
        map.entry(rejected_by)
            .or_default()
            .insert(code.clone(), counter);
    }
}
