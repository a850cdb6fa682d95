//! The limiter's per-request work allocates nothing once a key is known, for
//! every kind of key: client IP, a typed extension, a closure. A counting global
//! allocator sees every allocation of the process, so everything runs in one
//! test, on one thread, polling the services by hand (no runtime, whose own
//! bookkeeping would be counted too).

use std::alloc::System;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::service_fn;
use tower_layer::Layer;
use tower_ops::rate_limit::{KeyBy, Mode, Policy, Quota, RateLimitClock, RateLimitLayer};
use tower_service::Service;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const USERS: u64 = 1_000;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct UserId(u64);

/// A request from user `i`, at client address `i`: what an authentication layer
/// and the connection would have left in its extensions.
fn request(i: u64) -> Request<()> {
    let mut r = Request::new(());
    let ip = [10, 0, (i >> 8) as u8, i as u8];
    r.extensions_mut().insert(SocketAddr::from((ip, 4000)));
    r.extensions_mut().insert(UserId(i));
    r
}

/// Allocations of `USERS` calls of `service`, after one warm-up round that
/// creates every key. Building the requests is counted too, alike for every
/// service.
fn allocations<S>(mut service: S) -> u64
where
    S: Service<Request<()>, Error = Infallible>,
{
    let mut call = |i| {
        let mut cx = Context::from_waker(Waker::noop());
        let mut future = pin!(service.call(request(i)));
        let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
            panic!("the in-process limiter answers on the first poll")
        };
        drop(response);
    };
    (0..USERS).for_each(&mut call);
    let region = Region::new(GLOBAL);
    (0..USERS).for_each(&mut call);
    region.change().allocations as u64
}

fn handler() -> impl Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

#[test]
fn no_allocation_per_request_for_any_key() {
    let bare = allocations(handler());
    let keys = [
        ("client ip", KeyBy::client_ip()),
        ("extension", KeyBy::extension::<UserId>()),
        (
            "closure",
            KeyBy::from_fn(|head| head.extensions().get::<UserId>().map(|u| u.0)),
        ),
    ];
    for (name, key) in keys {
        let layer = RateLimitLayer::new()
            .clock(RateLimitClock::manual())
            .headers(false)
            .policy(Policy::new("p", Quota::per_minute(1_000)).key(key));
        let limited = allocations(layer.layer(handler()));
        assert_eq!(layer.len() as u64, USERS, "{name}");
        // The requests themselves are built in both rounds; the layer adds nothing.
        assert!(
            limited <= bare + 5,
            "{name}: {limited} allocations for {USERS} requests, {bare} without the layer"
        );
    }
    // Modes: an explicit enforce mode, and a policy in shadow mode that refuses
    // nothing, leave the per-request work as it is.
    let layers = [
        (
            "enforce mode",
            1,
            RateLimitLayer::new()
                .mode(Mode::Enforce)
                .policy(Policy::new("p", Quota::per_minute(1_000))),
        ),
        (
            "shadow policy within its limit",
            2,
            RateLimitLayer::new()
                .policy(Policy::new("p", Quota::per_minute(1_000)))
                .policy(Policy::new("trial", Quota::per_minute(1_000)).mode(Mode::Shadow)),
        ),
    ];
    for (name, policies, layer) in layers {
        let layer = layer.clock(RateLimitClock::manual()).headers(false);
        let limited = allocations(layer.layer(handler()));
        assert_eq!(layer.len() as u64, USERS * policies, "{name}");
        assert!(
            limited <= bare + 5,
            "{name}: {limited} allocations for {USERS} requests, {bare} without the layer"
        );
    }
}
