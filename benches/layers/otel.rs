//! The request span as an OpenTelemetry server span: `RequestLogLayer` with the
//! OpenTelemetry layer, sampling off (`parentbased_always_off`) and on (into an
//! exporter that drops everything), beside the bare service and the request log
//! alone. Every tower-ops variant writes its JSON line to a sink. Needs the `otel`
//! feature (`cargo bench --bench layers --features otel -- otel`).

use criterion::Criterion;

#[cfg(feature = "otel")]
pub fn bench(c: &mut Criterion) {
    use tower_ops::log::{JsonLayer, RequestLogLayer};
    use tower_ops::otel::opentelemetry_sdk::error::OTelSdkResult;
    use tower_ops::otel::opentelemetry_sdk::trace::{SpanData, SpanExporter};
    use tower_ops::otel::{OtelBuilder, Sampler};
    use tracing_subscriber::layer::SubscriberExt;

    use crate::support::{app, bench_router, request, runtime};

    /// Accepts every batch and keeps nothing.
    #[derive(Debug)]
    struct Discard;

    impl SpanExporter for Discard {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            drop(std::hint::black_box(batch));
            Ok(())
        }
    }

    let rt = runtime();
    let mut group = c.benchmark_group("otel");
    bench_router(&mut group, &rt, "bare", &app(), request);
    {
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(std::io::sink));
        let _guard = tracing::subscriber::set_default(subscriber);
        bench_router(
            &mut group,
            &rt,
            "request_log",
            &app().layer(RequestLogLayer::new()),
            request,
        );
    }
    for (name, sampler) in [
        ("sampling_off", Sampler::ParentBasedAlwaysOff),
        ("sampling_on_discard", Sampler::AlwaysOn),
    ] {
        let otel = OtelBuilder::new()
            .sampler(sampler)
            .with_exporter(Discard)
            .build()
            .unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(otel.layer())
            .with(JsonLayer::new(std::io::sink));
        let _guard = tracing::subscriber::set_default(subscriber);
        bench_router(
            &mut group,
            &rt,
            name,
            &app().layer(RequestLogLayer::new()),
            request,
        );
        drop(_guard);
        otel.shutdown().unwrap();
    }
    group.finish();
}

#[cfg(not(feature = "otel"))]
pub fn bench(_: &mut Criterion) {}
