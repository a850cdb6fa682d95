//! `RequestLogLayer` + our JSON formatter against tower-http's `TraceLayer` at INFO
//! into tracing-subscriber's JSON formatter, both writing to a sink.

use criterion::Criterion;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tower_ops::log::{JsonLayer, RequestLogLayer};
use tower_ops::request_id::RequestIdLayer;
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;

use crate::support::{app, bench_router, request, runtime};

pub fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("log");
    bench_router(&mut group, &rt, "bare", &app(), request);
    {
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::sink),
            );
        let _guard = tracing::subscriber::set_default(subscriber);
        let trace = TraceLayer::new_for_http()
            .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
            .on_response(DefaultOnResponse::new().level(Level::INFO));
        bench_router(
            &mut group,
            &rt,
            "tower_http_trace_json",
            &app().layer(trace),
            request,
        );
    }
    {
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(JsonLayer::new(std::io::sink));
        let _guard = tracing::subscriber::set_default(subscriber);
        bench_router(
            &mut group,
            &rt,
            "tower_ops_json",
            &app().layer(RequestLogLayer::new()),
            request,
        );
        // With the request id layer in front, as in the canonical stack.
        bench_router(
            &mut group,
            &rt,
            "tower_ops_json_with_request_id",
            &app()
                .layer(RequestLogLayer::new())
                .layer(RequestIdLayer::new()),
            request,
        );
    }
    group.finish();
}
