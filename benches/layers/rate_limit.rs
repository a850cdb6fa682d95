//! `rate_limit`: bare router vs tower_governor keyed by peer IP vs ours keyed by
//! client IP, headers off and on. Same 1,000 client addresses, quotas that never
//! reject, through `Router::oneshot`.
//!
//! Two placements: through `Router::layer`, where axum boxes every layered route
//! (the `noop_layer` row is that floor, which no layer goes below), and around the
//! whole router (`around_*` rows, against `around_bare`), where only the layer's
//! own work is measured.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use criterion::Criterion;
use http::Request;
use tower::ServiceExt;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_layer::Layer;
use tower_ops::rate_limit::{Quota, RateLimitLayer};

fn router() -> Router {
    Router::new().route("/users/{id}", get(|| async { "ok" }))
}

fn addrs() -> Vec<SocketAddr> {
    (0..1000u32)
        .map(|i| SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 40000)))
        .collect()
}

fn request(addr: SocketAddr) -> Request<Body> {
    let mut r = Request::get("/users/7").body(Body::empty()).unwrap();
    r.extensions_mut().insert(ConnectInfo(addr));
    r
}

pub(crate) fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addrs = addrs();
    // Never limiting: a million requests per millisecond, all at once.
    let ours = || RateLimitLayer::with_quota(Quota::per(1_000_000, Duration::from_millis(1)));
    let governor = Arc::new(
        GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(1_000_000)
            .finish()
            .unwrap(),
    );
    let _guard = rt.enter();
    let around = |svc| Router::new().fallback_service(svc);
    let apps: [(&str, Router); 9] = [
        ("bare", router()),
        (
            "noop_layer",
            router().layer(tower::layer::util::Identity::new()),
        ),
        (
            "tower_governor",
            router().layer(GovernorLayer::new(governor.clone())),
        ),
        ("ours_headers_off", router().layer(ours().headers(false))),
        ("ours_headers_on", router().layer(ours())),
        ("around_bare", around(router())),
        (
            "around_tower_governor",
            Router::new().fallback_service(GovernorLayer::new(governor).layer(router())),
        ),
        (
            "around_ours_headers_off",
            Router::new().fallback_service(ours().headers(false).layer(router())),
        ),
        (
            "around_ours_headers_on",
            Router::new().fallback_service(ours().layer(router())),
        ),
    ];
    drop(_guard);
    let mut group = c.benchmark_group("rate_limit");
    for (name, app) in apps {
        let app = crate::support::served(app);
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 1) % addrs.len();
                let req = request(addrs[i]);
                let app = app.clone();
                async move {
                    let response = app.oneshot(req).await.unwrap();
                    assert!(response.status().is_success());
                    black_box(response)
                }
            })
        });
    }
    group.finish();
}
