//! `BodyLimitLayer`, `SecurityHeadersLayer` and `TimeoutLayer` beside a bare router
//! and their tower-http peers, through `Router::oneshot` on a trivial handler.

use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use criterion::{BenchmarkId, Criterion};
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_ops::body_limit::BodyLimitLayer;
use tower_ops::security_headers::SecurityHeadersLayer;
use tower_ops::timeout::TimeoutLayer;

fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/echo", post(|body: Bytes| async move { body }))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn run(c: &mut Criterion, group: &str, apps: &[(&str, Router)], request: fn() -> Request<Body>) {
    let rt = runtime();
    let mut g = c.benchmark_group(group);
    for (name, app) in apps {
        let app = crate::support::served(app.clone());
        g.bench_with_input(BenchmarkId::from_parameter(name), &app, |b, app| {
            b.to_async(&rt).iter(|| {
                let app = app.clone();
                async move { black_box(app.oneshot(request()).await) }
            });
        });
    }
    g.finish();
}

fn get_root() -> Request<Body> {
    Request::get("/").body(Body::empty()).expect("request")
}

fn post_small() -> Request<Body> {
    Request::post("/echo")
        .header(header::CONTENT_LENGTH, "5")
        .body(Body::from("hello"))
        .expect("request")
}

fn peer_security_headers(app: Router) -> Router {
    let pairs = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ];
    pairs.into_iter().fold(app, |app, (name, value)| {
        app.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ))
    })
}

/// The same layer around the whole router (`ServiceBuilder` style), as a `Router`
/// again so every row has one type.
fn around<L>(layer: L) -> Router
where
    L: tower::Layer<Router>,
    L::Service: tower::Service<Request<Body>, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as tower::Service<Request<Body>>>::Response: axum::response::IntoResponse,
    <L::Service as tower::Service<Request<Body>>>::Future: Send,
{
    Router::new().fallback_service(layer.layer(router()))
}

/// Runs every group of this module.
///
/// `Router::layer` boxes every layered route's future (and, for layers that
/// change body types, request and response bodies), so each group has a
/// `noop_layer` row: the floor that no layer can go below there. The `around`
/// groups put the layer around the router instead, where only the layer's own
/// work is measured; `bare_around` is the router nested the same way.
pub fn bench(c: &mut Criterion) {
    const LIMIT: usize = 1 << 20;
    let noop = || router().layer(tower::layer::util::Identity::new());
    let body_limit = [
        ("bare", router()),
        ("noop_layer", noop()),
        (
            "tower_ops",
            router().layer(BodyLimitLayer::new(LIMIT as u64).for_axum()),
        ),
        (
            "tower_ops_any_body",
            router().layer(BodyLimitLayer::new(LIMIT as u64)),
        ),
        (
            "tower_http",
            router().layer(tower_http::limit::RequestBodyLimitLayer::new(LIMIT)),
        ),
    ];
    run(c, "body_limit/get", &body_limit, get_root);
    run(c, "body_limit/post_5_bytes", &body_limit, post_small);
    let body_limit_around = [
        ("bare_around", around(tower::layer::util::Identity::new())),
        (
            "tower_ops",
            around(BodyLimitLayer::new(LIMIT as u64).for_axum()),
        ),
        (
            "tower_http",
            around(tower_http::limit::RequestBodyLimitLayer::new(LIMIT)),
        ),
    ];
    run(c, "body_limit_around/get", &body_limit_around, get_root);
    run(
        c,
        "body_limit_around/post_5_bytes",
        &body_limit_around,
        post_small,
    );

    let security = [
        ("bare", router()),
        ("noop_layer", noop()),
        ("tower_ops", router().layer(SecurityHeadersLayer::api())),
        ("tower_http", peer_security_headers(router())),
    ];
    run(c, "security_headers", &security, get_root);

    let timeout = Duration::from_secs(30);
    let peer_timeout = || {
        tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, timeout)
    };
    let timeouts = [
        ("bare", router()),
        ("noop_layer", noop()),
        ("tower_ops", router().layer(TimeoutLayer::new(timeout))),
        ("tower_http", router().layer(peer_timeout())),
    ];
    run(c, "timeout", &timeouts, get_root);
    let timeouts_around = [
        ("bare_around", around(tower::layer::util::Identity::new())),
        ("tower_ops", around(TimeoutLayer::new(timeout))),
        ("tower_http", around(peer_timeout())),
    ];
    run(c, "timeout_around", &timeouts_around, get_root);
}
