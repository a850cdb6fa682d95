//! `metrics`: a trivial axum handler bare, under axum-prometheus's layer, and under
//! our `MetricsLayer` without and with exemplars. Each iteration drives one request
//! through `Router::oneshot` and drains the response body (our duration ends there).

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::Criterion;
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_ops::metrics::MetricsLayer;
use tower_ops::route::CaptureRouteLayer;

fn routes() -> Router {
    Router::new().route("/users/{id}", get(|| async { "hello" }))
}

async fn run(app: Router) {
    let req = Request::get("/users/42")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    black_box(res.into_body().collect().await.unwrap());
}

pub fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let bare = routes();
    // axum-prometheus installs a process-global recorder: build it once.
    let (peer_layer, _handle) =
        rt.block_on(async { axum_prometheus::PrometheusMetricLayer::pair() });
    let peer = routes().layer(peer_layer);

    let mut registry = prometheus_client::registry::Registry::default();
    let ours = routes()
        .layer(CaptureRouteLayer::new())
        .layer(MetricsLayer::new(&mut registry));
    let mut registry_ex = prometheus_client::registry::Registry::default();
    let ours_ex = routes().layer(CaptureRouteLayer::new()).layer(
        MetricsLayer::builder()
            .exemplar(|parts| {
                let tp = parts.headers.get("traceparent")?.to_str().ok()?;
                Some(tp.split('-').nth(1)?.to_owned())
            })
            .register(&mut registry_ex),
    );

    let mut group = c.benchmark_group("metrics");
    let [bare, peer, ours, ours_ex] = [bare, peer, ours, ours_ex].map(crate::support::served);
    group.bench_function("bare", |b| b.to_async(&rt).iter(|| run(bare.clone())));
    group.bench_function("axum_prometheus", |b| {
        b.to_async(&rt).iter(|| run(peer.clone()))
    });
    group.bench_function("tower_ops", |b| b.to_async(&rt).iter(|| run(ours.clone())));
    group.bench_function("tower_ops_exemplars", |b| {
        b.to_async(&rt).iter(|| run(ours_ex.clone()))
    });
    group.finish();
}
