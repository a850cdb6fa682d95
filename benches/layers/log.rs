//! Every row reads the response body to its end, as a server does, so each
//! request is logged as completed.
//!
//! `RequestLogLayer` + our JSON formatter against tower-http's `TraceLayer` at INFO
//! into tracing-subscriber's JSON formatter, both writing to a sink; then ours
//! writing to a real file through the batching `LogWriter`, every request logged
//! (`sample_1`) and every request sampled out (`sample_0`, `LOG_SAMPLE_RATE=0`:
//! what a sampled-out ordinary success costs).

use criterion::Criterion;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tower_ops::log::{JsonLayer, LogWriter, RequestLogLayer};
use tower_ops::request_id::RequestIdLayer;
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;

use crate::support::{app, bench_router_to_end, request, runtime};

pub fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("log");
    bench_router_to_end(&mut group, &rt, "bare", &app(), request);
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
        bench_router_to_end(
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
        bench_router_to_end(
            &mut group,
            &rt,
            "tower_ops_json",
            &app().layer(RequestLogLayer::new()),
            request,
        );
        // With the request id layer in front, as in the canonical stack.
        bench_router_to_end(
            &mut group,
            &rt,
            "tower_ops_json_with_request_id",
            &app()
                .layer(RequestLogLayer::new())
                .layer(RequestIdLayer::new()),
            request,
        );
    }
    {
        let dir = std::env::temp_dir().join(format!("tower-ops-log-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (writer, _writer_guard) = LogWriter::builder().file(dir.join("requests.log")).unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(JsonLayer::new(writer));
        let _guard = tracing::subscriber::set_default(subscriber);
        for (name, rate) in [
            ("tower_ops_file_sample_1", 1.0),
            ("tower_ops_file_sample_0", 0.0),
        ] {
            bench_router_to_end(
                &mut group,
                &rt,
                name,
                &app()
                    .layer(RequestLogLayer::new().sample_successes(rate))
                    .layer(RequestIdLayer::new()),
                request,
            );
        }
        drop(_guard);
        drop(_writer_guard);
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}
