//! The stacks compared end to end, defined once for the criterion group `stack`
//! (`benches/layers/stack.rs`) and the load benchmark's server
//! (`examples/load_server.rs`), which both include this file with `#[path]`.
//!
//! - `bare`: the router alone.
//! - `peer`: what the peer crates give together, each added with `Router::layer`
//!   (they do not compose in one `ServiceBuilder`): tower-http `SetRequestId` and
//!   `PropagateRequestId` (`x-request-id`, UUIDv4), `TraceLayer` at INFO with one
//!   tracing-subscriber JSON line per request, axum-prometheus, tower_governor
//!   keyed by peer IP, tower-http `RequestBodyLimitLayer`.
//! - `tower_ops`: `Stack::new().for_axum()` with `Router::layer` and the route
//!   capture, every feature on: request id, client IP, one JSON line per request,
//!   metrics, security headers, error envelopes, timeout, rate limit, body limit.
//! - `tower_ops_load_shed`: the same with an adaptive load shedder, never reached;
//!   `tower_ops_sampled_out`: the same with `LOG_SAMPLE_RATE=0`, every request an
//!   ordinary success sampled out of the log.
//! - `around_bare` / `around_tower_ops`: the router, bare or wrapped in the same
//!   stack as one service, behind an outer `Router::fallback_service`: the stack's
//!   own work without axum boxing a layered route.
//!
//! Both limiters get the same quota, which never rejects here: a million requests
//! a second, all of them at once if need be. (With the window cut to a
//! millisecond, one a nanosecond, tower_governor answered an odd 429 under wrk on
//! a busy 2-core machine, where a thread can read the clock and be descheduled
//! for longer than the window.) Both body limits are 1 MiB. Both loggers write
//! one JSON line per request to a real file (see [`LogTo`]): the peer through
//! tracing-subscriber's JSON formatter writing the file itself, as it does with
//! `with_writer`, tower-ops through `JsonLayer` on its batching `LogWriter`.
//! Every stack, the bare router included, runs the same handler: `GET
//! /users/{id}` with `Path` and a `Json` answer.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use axum_prometheus::metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use axum_prometheus::{AXUM_HTTP_REQUESTS_DURATION_SECONDS, PrometheusMetricLayer};
use http::HeaderName;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tower_layer::Layer;
use tower_ops::body_limit::AxumBody;
use tower_ops::load_shed::ConcurrencyLimitLayer;
use tower_ops::log::{JsonLayer, LogWriter, RequestLogLayer, WriterGuard};
use tower_ops::paths::PathSet;
use tower_ops::rate_limit::{Quota, RateLimitLayer};
use tower_ops::route::CaptureRouteLayer;
use tower_ops::stack::Stack;
use tracing::{Dispatch, Level};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

/// Both body limits.
const BODY_LIMIT: usize = 1024 * 1024;
/// Both limiters' quota per second, and burst: never reached.
const BURST: u32 = 1_000_000;

/// One of the compared stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Bare,
    Peer,
    TowerOps,
    /// The stack with an adaptive load shedder whose limit is never reached:
    /// minus `tower_ops`, the shedder's cost per request.
    TowerOpsLoadShed,
    /// The stack with `LOG_SAMPLE_RATE=0`: every request an ordinary success the
    /// log samples out. Minus `tower_ops`, what sampling saves per request.
    TowerOpsSampledOut,
    AroundBare,
    AroundTowerOps,
}

impl Kind {
    /// Every stack, in the order the bench reports them.
    pub(crate) const ALL: [Kind; 7] = [
        Kind::Bare,
        Kind::Peer,
        Kind::TowerOps,
        Kind::TowerOpsLoadShed,
        Kind::TowerOpsSampledOut,
        Kind::AroundBare,
        Kind::AroundTowerOps,
    ];

    /// The row name, also the load server's argument.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Bare => "bare",
            Kind::Peer => "peer",
            Kind::TowerOps => "tower_ops",
            Kind::TowerOpsLoadShed => "tower_ops_load_shed",
            Kind::TowerOpsSampledOut => "tower_ops_sampled_out",
            Kind::AroundBare => "around_bare",
            Kind::AroundTowerOps => "around_tower_ops",
        }
    }

    /// The application under this stack. Call it inside a tokio runtime: the
    /// peer's metrics recorder spawns its upkeep task there.
    pub(crate) fn router(self) -> Router {
        match self {
            Kind::Bare => routes(),
            Kind::Peer => peer(),
            Kind::TowerOps => routes()
                .layer(CaptureRouteLayer::new())
                .layer(tower_ops_stack()),
            Kind::TowerOpsLoadShed => routes()
                .layer(CaptureRouteLayer::new())
                .layer(tower_ops_stack().load_shed(ConcurrencyLimitLayer::adaptive())),
            Kind::TowerOpsSampledOut => routes()
                .layer(CaptureRouteLayer::new())
                .layer(tower_ops_stack().log(Some(RequestLogLayer::new().sample_successes(0.0)))),
            Kind::AroundBare => Router::new().fallback_service(routes()),
            Kind::AroundTowerOps => Router::new().fallback_service(
                tower_ops_stack().layer(routes().layer(CaptureRouteLayer::new())),
            ),
        }
    }

    /// The tracing subscriber the stack logs through at INFO, and what keeps its
    /// writer alive: tracing-subscriber's JSON formatter writing each line to
    /// `log` for the peer, `JsonLayer` on a [`LogWriter`] for tower-ops, none for
    /// the bare router.
    pub(crate) fn dispatch(self, log: &LogTo) -> std::io::Result<(Dispatch, Option<WriterGuard>)> {
        Ok(match self {
            Kind::Bare | Kind::AroundBare => (Dispatch::none(), None),
            Kind::Peer => {
                let destination = Arc::new(log.open()?);
                let layer = tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(destination);
                let subscriber = tracing_subscriber::registry()
                    .with(LevelFilter::INFO)
                    .with(layer);
                (Dispatch::new(subscriber), None)
            }
            Kind::TowerOps
            | Kind::TowerOpsLoadShed
            | Kind::TowerOpsSampledOut
            | Kind::AroundTowerOps => {
                let (writer, guard) = LogWriter::builder().writer(log.open()?);
                let subscriber = tracing_subscriber::registry()
                    .with(LevelFilter::INFO)
                    .with(JsonLayer::new(writer));
                (Dispatch::new(subscriber), Some(guard))
            }
        })
    }
}

/// Where a stack's log lines go.
#[derive(Clone, Debug)]
pub(crate) enum LogTo {
    /// A file, truncated first.
    File(std::path::PathBuf),
    /// The process's standard output (a pipe, when the load script asks for one).
    /// Only the load server uses it.
    #[allow(dead_code)]
    Stdout,
}

impl LogTo {
    fn open(&self) -> std::io::Result<std::fs::File> {
        match self {
            LogTo::File(path) => std::fs::File::create(path),
            // A second handle on fd 1, written without std's line buffering.
            LogTo::Stdout => std::fs::OpenOptions::new().append(true).open("/dev/stdout"),
        }
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown stack {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// The application, the same under every stack: a static route, and one with a
/// path parameter answering JSON.
fn routes() -> Router {
    Router::new().route("/", get(|| async { "hello" })).route(
        "/users/{id}",
        get(|Path(id): Path<u64>| async move {
            axum::Json(serde_json::json!({ "id": id, "name": format!("user {id}") }))
        }),
    )
}

/// The peer crates, outermost last as `Router::layer` wants it: request id set
/// and propagated, trace, metrics, rate limit, body limit.
fn peer() -> Router {
    let header = HeaderName::from_static("x-request-id");
    let governor = GovernorConfigBuilder::default()
        .period(Duration::from_micros(1))
        .burst_size(BURST)
        .finish()
        .expect("a valid governor quota");
    let trace = TraceLayer::new_for_http()
        .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
        .on_response(DefaultOnResponse::new().level(Level::INFO));
    routes()
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(GovernorLayer::new(Arc::new(governor)))
        .layer(peer_metrics())
        .layer(trace)
        .layer(PropagateRequestIdLayer::new(header.clone()))
        .layer(SetRequestIdLayer::new(header, MakeRequestUuid))
}

/// axum-prometheus's layer recording into a process-global Prometheus recorder
/// set up as `PrometheusMetricLayer::pair()` does (duration histogram buckets, an
/// upkeep task every 5 s). `pair()` itself panics when a recorder is already
/// installed, which the `metrics` bench group of the same binary does first.
fn peer_metrics() -> PrometheusMetricLayer<'static> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(AXUM_HTTP_REQUESTS_DURATION_SECONDS.to_owned()),
            axum_prometheus::utils::SECONDS_DURATION_BUCKETS,
        )
        .expect("non-empty buckets")
        .build_recorder();
    let handle = recorder.handle();
    if axum_prometheus::metrics::set_global_recorder(recorder).is_ok() {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                handle.run_upkeep();
            }
        });
    }
    PrometheusMetricLayer::new()
}

/// The canonical stack with its defaults, except a limiter quota that never
/// rejects (the peer's).
fn tower_ops_stack() -> Stack<AxumBody> {
    let quota = Quota::per(BURST, Duration::from_secs(1));
    Stack::new()
        .rate_limit(Some(
            RateLimitLayer::with_quota(quota).skip_paths(PathSet::probes()),
        ))
        .for_axum()
}
