//! `ErrorLayer` on the 200 path against tower-http's `CatchPanicLayer`.
//!
//! Two placements: around the whole `Router` (the layer's own cost), and through
//! `Router::layer`, where axum also boxes each layered route (the `noop_layer`
//! row, a floor no layer goes below) and boxes any response body that is not its
//! own `Body` (which `ErrorLayer::for_axum` avoids and `CatchPanicLayer` pays).
//! Every router is finalized with `with_state(())`, as `axum::serve` does.

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

use crate::support::served;

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
    // Around the whole (served) router: each layer's own cost.
    run(&mut group, &rt, "bare", &served(app()));
    run(
        &mut group,
        &rt,
        "ours",
        &ErrorLayer::new().layer(served(app())),
    );
    run(
        &mut group,
        &rt,
        "ours_for_axum",
        &ErrorLayer::new().for_axum().layer(served(app())),
    );
    run(
        &mut group,
        &rt,
        "peer_catch_panic",
        &CatchPanicLayer::new().layer(served(app())),
    );
    // Through `Router::layer`: the noop row is axum's own floor there.
    run(
        &mut group,
        &rt,
        "noop_layer",
        &served(app().layer(tower::layer::util::Identity::new())),
    );
    run(
        &mut group,
        &rt,
        "ours_router_layer",
        &served(app().layer(ErrorLayer::new().for_axum())),
    );
    run(
        &mut group,
        &rt,
        "ours_router_layer_any_body",
        &served(app().layer(ErrorLayer::new())),
    );
    run(
        &mut group,
        &rt,
        "peer_router_layer",
        &served(app().layer(CatchPanicLayer::new())),
    );
    group.finish();
}
