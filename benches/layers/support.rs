//! Shared scaffolding: a trivial axum handler driven through `Router::oneshot`.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{BenchmarkGroup, measurement::WallTime};
use http::Request;
use tokio::runtime::Runtime;
use tower::ServiceExt;

/// A single-threaded runtime, as per-request overhead is what is measured.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The bare application every layer wraps.
pub fn app() -> Router {
    Router::new().route("/users/{id}", get(|| async { "hello" }))
}

/// `router` as `axum::serve` runs it: `with_state(())` turns every handler into
/// a route once. A `Router<()>` called without it rebuilds each handler's route
/// (and re-applies every layer added with `Router::layer`) on every request,
/// which no server does and which would blur the layers' own costs.
pub fn served(router: Router) -> Router {
    router.with_state(())
}

/// Benchmarks `router` answering `make_request()`, [`served`] as a server would.
/// The response is dropped as it comes, body unread.
pub fn bench_router(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    router: &Router,
    make_request: impl Fn() -> Request<Body>,
) {
    bench(group, rt, name, router, make_request, false);
}

/// Like [`bench_router`], reading each response body to its end, as a server
/// does: the request log writes a completed request's line only then (a body
/// dropped before its end is an aborted request, logged as one).
pub fn bench_router_to_end(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    router: &Router,
    make_request: impl Fn() -> Request<Body>,
) {
    bench(group, rt, name, router, make_request, true);
}

fn bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    router: &Router,
    make_request: impl Fn() -> Request<Body>,
    to_end: bool,
) {
    use http_body_util::BodyExt;
    let router = served(router.clone());
    group.bench_function(name, |b| {
        b.to_async(rt).iter(|| {
            let request = make_request();
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await.unwrap();
                if to_end {
                    std::hint::black_box(response.into_body().collect().await.unwrap());
                } else {
                    std::hint::black_box(response);
                }
            }
        })
    });
}

/// `GET /users/42` with a peer address, as a server would see it.
pub fn request() -> Request<Body> {
    let mut req = Request::get("/users/42").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40_000,
        ))));
    req
}
