//! `RequestIdLayer` against tower-http's `SetRequestIdLayer` + `PropagateRequestIdLayer`.

use criterion::Criterion;
use http::HeaderName;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::request_id::RequestIdLayer;

use crate::support::{app, bench_router, request, runtime};

pub fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("request_id");
    let header = HeaderName::from_static("x-request-id");
    bench_router(&mut group, &rt, "bare", &app(), request);
    bench_router(
        &mut group,
        &rt,
        "tower_ops",
        &app().layer(RequestIdLayer::new()),
        request,
    );
    bench_router(
        &mut group,
        &rt,
        "tower_http",
        &app()
            .layer(PropagateRequestIdLayer::new(header.clone()))
            .layer(SetRequestIdLayer::new(header, MakeRequestUuid)),
        request,
    );
    let with_id = || {
        let mut r = request();
        r.headers_mut().insert(
            "x-request-id",
            "0192f5a4-7c1e-7d3a-9f10-4b7e2c9d1a55".parse().unwrap(),
        );
        r
    };
    bench_router(
        &mut group,
        &rt,
        "tower_ops_incoming",
        &app().layer(RequestIdLayer::new()),
        with_id,
    );
    group.finish();

    let mut group = c.benchmark_group("client_ip");
    bench_router(&mut group, &rt, "bare", &app(), request);
    bench_router(
        &mut group,
        &rt,
        "peer_only",
        &app().layer(ClientIpLayer::new()),
        request,
    );
    let proxied = || {
        let mut r = request();
        r.headers_mut().insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9, 10.0.0.7".parse().unwrap(),
        );
        r
    };
    bench_router(
        &mut group,
        &rt,
        "trusted_proxy_xff",
        &app().layer(ClientIpLayer::new().trusted_proxies([
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ])),
        proxied,
    );
    group.finish();
}
