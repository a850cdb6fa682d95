//! `ErrorLayer` on the 200 path against tower-http's `CatchPanicLayer`.
//!
//! Two placements: around the whole `Router` (the layer's own cost), and through
//! `Router::layer` (where axum also boxes each layered route and its body, a cost
//! both layers pay alike).

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::Criterion;
use http::Request;
use tower::{Service, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_layer::Layer;
use tower_ops::error::ErrorLayer;

fn app() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

fn run<S>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    svc: &S,
) where
    S: Service<Request<Body>> + Clone,
    S::Error: std::fmt::Debug,
{
    c.bench_function(name, |b| {
        b.to_async(rt).iter(|| {
            let svc = svc.clone();
            async move {
                let req = Request::get("/").body(Body::empty()).unwrap();
                black_box(svc.oneshot(req).await.unwrap())
            }
        })
    });
}

pub(crate) fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("error");
    run(&mut group, &rt, "bare", &app());
    run(&mut group, &rt, "ours", &ErrorLayer::new().layer(app()));
    run(
        &mut group,
        &rt,
        "peer_catch_panic",
        &CatchPanicLayer::new().layer(app()),
    );
    run(
        &mut group,
        &rt,
        "ours_router_layer",
        &app().layer(ErrorLayer::new()),
    );
    run(
        &mut group,
        &rt,
        "peer_router_layer",
        &app().layer(CatchPanicLayer::new()),
    );
    group.finish();
}
