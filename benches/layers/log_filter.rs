//! The log filter `LogBuilder` installs, `LogFilterLayer` (changeable at run
//! time), against a plain `EnvFilter` and tracing-subscriber's
//! `reload::Layer<EnvFilter>`, each at `info` under `JsonLayer` writing to a sink:
//! one request through `RequestLogLayer`, and a span with one event on one and on
//! two threads at once (where `reload::Layer`'s lock is contended).

use std::time::{Duration, Instant};

use criterion::Criterion;
use tower_ops::log::{JsonLayer, LogFilterLayer, RequestLogLayer};
use tower_ops::request_id::RequestIdLayer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, reload};

use crate::support::{app, bench_router_to_end, request, runtime};

fn dispatch(filter: &str) -> tracing::Dispatch {
    let json = JsonLayer::new(std::io::sink);
    match filter {
        "env_filter" => tracing_subscriber::registry()
            .with(EnvFilter::new("info"))
            .with(json)
            .into(),
        "reload_env_filter" => {
            let (layer, handle) = reload::Layer::new(EnvFilter::new("info"));
            std::mem::forget(handle);
            tracing_subscriber::registry().with(layer).with(json).into()
        }
        _ => tracing_subscriber::registry()
            .with(LogFilterLayer::new("info").unwrap())
            .with(json)
            .into(),
    }
}

/// `threads` threads each opening, entering and closing a span with one event
/// inside, `iters` times; the time per iteration of one thread.
fn spans(dispatch: &tracing::Dispatch, threads: usize, iters: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                tracing::dispatcher::with_default(dispatch, || {
                    for i in 0..iters {
                        let span = tracing::info_span!("request", request_id = "abc");
                        let _entered = span.enter();
                        tracing::info!(user = i, "hello");
                    }
                })
            });
        }
    });
    start.elapsed()
}

pub fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("log_filter");
    for filter in ["env_filter", "reload_env_filter", "log_filter_layer"] {
        let dispatch = dispatch(filter);
        {
            let _guard = tracing::dispatcher::set_default(&dispatch);
            tracing_core::callsite::rebuild_interest_cache();
            bench_router_to_end(
                &mut group,
                &rt,
                &format!("request/{filter}"),
                &app()
                    .layer(RequestLogLayer::new())
                    .layer(RequestIdLayer::new()),
                request,
            );
        }
        for threads in [1, 2] {
            group.bench_function(format!("span_event_{threads}_threads/{filter}"), |b| {
                b.iter_custom(|iters| spans(&dispatch, threads, iters))
            });
        }
    }
    group.finish();
}
