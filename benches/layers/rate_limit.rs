//! `rate_limit`: bare router vs tower_governor keyed by peer IP vs ours keyed by
//! client IP, headers off and on. Same 1,000 client addresses, quotas that never
//! reject, through `Router::oneshot`. Every request carries the `ClientIp` a
//! `ClientIpLayer` outside would have set (the stack always has one), next to
//! the `ConnectInfo` tower_governor reads.
//!
//! Ours runs in its axum mode (`for_axum`), as an axum application would use it.
//!
//! Two placements: through `Router::layer`, where axum boxes every layered route
//! (the `noop_layer` row is that floor, which no layer goes below), and around the
//! whole router (`around_*` rows, against `around_bare`), where only the layer's
//! own work is measured.
//!
//! Three `*_key` rows, headers off and around the router, compare what ours is
//! keyed by on the same requests, which carry a `UserId` extension (1,000 users
//! in turn) next to the client address, as an authentication layer would have
//! inserted it: `around_ours_ip_key` (the client IP, as
//! `around_ours_headers_off`), `around_ours_extension_key`
//! (`KeyBy::extension::<UserId>()`) and `around_ours_fn_key` (`KeyBy::from_fn`
//! reading the same extension). Building those requests costs one more
//! allocation than the other rows', so compare the three among themselves.
//!
//! With the `redis` feature, a second group (`rate_limit_redis`) compares the
//! throughput of the in-process backend with the Redis backend over loopback.

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
use tower_ops::client_ip::ClientIp;
use tower_ops::rate_limit::{KeyBy, Policy, Quota, RateLimitLayer};

fn router() -> Router {
    Router::new().route("/users/{id}", get(|| async { "ok" }))
}

fn addrs() -> Vec<SocketAddr> {
    (0..1000u32)
        .map(|i| SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 40000)))
        .collect()
}

/// What an application's authentication inserts.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct UserId(u64);

fn request(addr: SocketAddr, user: Option<u64>) -> Request<Body> {
    let mut r = Request::get("/users/7").body(Body::empty()).unwrap();
    r.extensions_mut().insert(ConnectInfo(addr));
    r.extensions_mut().insert(ClientIp::from_peer(addr.ip()));
    if let Some(id) = user {
        r.extensions_mut().insert(UserId(id));
    }
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
    let keyed_by = |key: KeyBy| {
        RateLimitLayer::new()
            .policy(Policy::new("user", Quota::per(1_000_000, Duration::from_millis(1))).key(key))
            .headers(false)
            .for_axum()
    };
    let _guard = rt.enter();
    let around = |svc| Router::new().fallback_service(svc);
    let apps: [(&str, Router); 12] = [
        ("bare", router()),
        (
            "noop_layer",
            router().layer(tower::layer::util::Identity::new()),
        ),
        (
            "tower_governor",
            router().layer(GovernorLayer::new(governor.clone())),
        ),
        (
            "ours_headers_off",
            router().layer(ours().headers(false).for_axum()),
        ),
        ("ours_headers_on", router().layer(ours().for_axum())),
        ("around_bare", around(router())),
        (
            "around_tower_governor",
            Router::new().fallback_service(GovernorLayer::new(governor).layer(router())),
        ),
        (
            "around_ours_headers_off",
            Router::new().fallback_service(ours().headers(false).for_axum().layer(router())),
        ),
        (
            "around_ours_headers_on",
            Router::new().fallback_service(ours().for_axum().layer(router())),
        ),
        (
            "around_ours_ip_key",
            Router::new().fallback_service(keyed_by(KeyBy::client_ip()).layer(router())),
        ),
        (
            "around_ours_extension_key",
            Router::new().fallback_service(keyed_by(KeyBy::extension::<UserId>()).layer(router())),
        ),
        (
            "around_ours_fn_key",
            Router::new().fallback_service(
                keyed_by(KeyBy::from_fn(|head| {
                    head.extensions().get::<UserId>().map(|u| u.0)
                }))
                .layer(router()),
            ),
        ),
    ];
    drop(_guard);
    let mut group = c.benchmark_group("rate_limit");
    for (name, app) in apps {
        let app = crate::support::served(app);
        let with_user = name.ends_with("_key");
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 1) % addrs.len();
                let req = request(addrs[i], with_user.then_some(i as u64));
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
    #[cfg(feature = "redis")]
    bench_redis(c);
}

/// Checks per second through the layer: the in-process backend against the Redis
/// backend over loopback (a real `redis-server` on an ephemeral port), with 1 and
/// 64 requests in flight on one thread. Skipped, with a message, when
/// `redis-server` is not on `PATH`.
#[cfg(feature = "redis")]
fn bench_redis(c: &mut Criterion) {
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;

    use criterion::Throughput;
    use http::{Response, StatusCode};
    use tower::service_fn;
    use tower_ops::rate_limit::RedisBackend;

    #[path = "../../tests/support/redis.rs"]
    mod redis_server;

    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("rate_limit_redis: skipped, `redis-server` is not on PATH");
        return;
    }
    let redis = redis_server::Redis::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addrs = addrs();
    let never = || RateLimitLayer::with_quota(Quota::per(1_000_000, Duration::from_millis(1)));
    let in_process = never();
    let redis_layer = rt.block_on(async {
        never()
            .backend(RedisBackend::new(&redis.url()).unwrap())
            // Long enough that a slow answer is measured, not replaced by a fallback.
            .backend_timeout(Duration::from_secs(5))
    });
    let handler =
        service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let mut group = c.benchmark_group("rate_limit_redis");
    for (name, layer) in [("in_process", &in_process), ("redis", &redis_layer)] {
        let service = layer.layer(handler);
        for in_flight in [1usize, 64] {
            group.throughput(Throughput::Elements(in_flight as u64));
            let mut i = 0usize;
            group.bench_function(format!("{name}/{in_flight}"), |b| {
                b.to_async(&rt).iter(|| {
                    let calls: Vec<_> = (0..in_flight)
                        .map(|_| {
                            i = (i + 1) % addrs.len();
                            let mut req = Request::new(());
                            req.extensions_mut().insert(addrs[i]);
                            service.clone().oneshot(req)
                        })
                        .collect();
                    all_ok(calls)
                })
            });
        }
    }
    group.finish();
    assert_eq!(
        redis_layer.fallbacks(),
        0,
        "every Redis check must have been answered by Redis"
    );
    drop(redis);

    /// Polls every call until all are done; each must be answered 200.
    async fn all_ok<F, B>(calls: Vec<F>)
    where
        F: Future<Output = Result<Response<B>, Infallible>>,
    {
        let mut calls: Vec<Option<Pin<Box<F>>>> =
            calls.into_iter().map(|f| Some(Box::pin(f))).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for slot in &mut calls {
                if let Some(call) = slot {
                    match call.as_mut().poll(cx) {
                        Poll::Ready(Ok(response)) => {
                            assert_eq!(response.status(), StatusCode::OK);
                            *slot = None;
                        }
                        Poll::Ready(Err(never)) => match never {},
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }
}
