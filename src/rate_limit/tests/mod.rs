//! Unit tests of the layer, its service and its decisions.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;
use tower_service::Service;

use super::{
    Backend, BackendError, BackendFuture, BackendRequest, Decision, FailureMode, KeyBy, Policy,
    Quota, RateLimitClock, RateLimitLayer,
};
use crate::body::ResponseBody;
use crate::client_ip::{ClientIp, ClientIpLayer};
use crate::error::{Code, Problem};

type Calls = Arc<AtomicUsize>;

fn app(
    layer: &RateLimitLayer,
) -> (
    impl Service<Request<()>, Response = Response<ResponseBody<Full<Bytes>>>, Error = Infallible>
    + Clone
    + use<>,
    Calls,
) {
    let calls = Calls::default();
    let c = calls.clone();
    let svc = layer.layer(service_fn(move |_req: Request<()>| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
    }));
    (svc, calls)
}

fn req(path: &str, peer: &str) -> Request<()> {
    let mut r = Request::get(path).body(()).unwrap();
    r.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    r
}

/// Calls `svc` without a runtime: the in-process path answers on the first poll.
fn answer_now<S>(svc: &mut S, r: Request<()>) -> Response<ResponseBody<Full<Bytes>>>
where
    S: Service<Request<()>, Response = Response<ResponseBody<Full<Bytes>>>, Error = Infallible>,
{
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut fut = std::pin::pin!(svc.call(r));
    let Poll::Ready(Ok(response)) = fut.as_mut().poll(&mut cx) else {
        panic!("pending")
    };
    response
}

async fn send<S>(svc: &S, r: Request<()>) -> Response<ResponseBody<Full<Bytes>>>
where
    S: Service<Request<()>, Response = Response<ResponseBody<Full<Bytes>>>, Error = Infallible>
        + Clone,
{
    svc.clone().oneshot(r).await.unwrap()
}

fn manual(quota: Quota) -> (RateLimitLayer, RateLimitClock) {
    let clock = RateLimitClock::manual();
    (
        RateLimitLayer::with_quota(quota).clock(clock.clone()),
        clock,
    )
}

#[tokio::test]
async fn rejects_with_problem_and_never_calls_inner() {
    let (layer, clock) = manual(Quota::per(2, Duration::from_millis(500)));
    let (svc, calls) = app(&layer);
    let ok = send(&svc, req("/", "192.0.2.1:1")).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["ratelimit-policy"], "\"default\";q=2;w=1");
    assert_eq!(ok.headers()["ratelimit"], "\"default\";r=1;t=1");
    assert!(ok.headers().get("retry-after").is_none());
    send(&svc, req("/", "192.0.2.1:2")).await;
    let limited = send(&svc, req("/", "192.0.2.1:3")).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(limited.status(), 429);
    assert_eq!(
        limited.headers()["retry-after"],
        "1",
        "250 ms rounds up to 1"
    );
    assert_eq!(limited.headers()["ratelimit"], "\"default\";r=0;t=1");
    let problem = limited.extensions().get::<Problem>().unwrap();
    assert_eq!(problem.get_code(), &Code::RATE_LIMITED);
    assert_eq!(problem.get_rejected_by(), Some("rate_limit"));
    let body = limited.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["detail"], "rate limit exceeded, retry in 1 s");
    assert_eq!(json["status"], 429);
    // Another client is unaffected; time heals.
    assert_eq!(send(&svc, req("/", "192.0.2.2:1")).await.status(), 200);
    clock.advance(Duration::from_millis(250));
    assert_eq!(send(&svc, req("/", "192.0.2.1:4")).await.status(), 200);
    assert_eq!(layer.len(), 2);
}

fn grpc_call(content_type: &'static str) -> Request<()> {
    let mut r = req("/demo.Greeter/SayHello", "192.0.2.1:1");
    *r.method_mut() = Method::POST;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    r
}

#[tokio::test]
async fn grpc_calls_get_resource_exhausted_and_http_is_unchanged() {
    let (layer, _) = manual(Quota::per_minute(1));
    let (svc, calls) = app(&layer);
    assert_eq!(
        send(&svc, grpc_call("application/grpc")).await.status(),
        200
    );
    let limited = send(&svc, grpc_call("application/grpc+proto")).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(limited.status(), 200, "gRPC errors travel in grpc-status");
    let h = limited.headers();
    assert_eq!(h["content-type"], "application/grpc");
    assert_eq!(h["grpc-status"], "8");
    assert_eq!(h["grpc-message"], "rate limit exceeded, retry in 60 s");
    assert_eq!(h["retry-after"], "60");
    assert_eq!(h["ratelimit"], "\"default\";r=0;t=60");
    assert_eq!(h["ratelimit-policy"], "\"default\";q=1;w=60");
    let problem = limited.extensions().get::<Problem>().unwrap();
    assert_eq!(problem.get_code(), &Code::RATE_LIMITED);
    assert_eq!(problem.get_rejected_by(), Some("rate_limit"));
    let body = limited.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty(), "trailers-only: no body");
    // gRPC-Web and plain HTTP keep the 429 Problem.
    for r in [grpc_call("application/grpc-web"), req("/", "192.0.2.1:1")] {
        let r = send(&svc, r).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        assert!(r.headers().get("grpc-status").is_none());
    }
    // Switched off, gRPC calls get the HTTP answer too.
    let (layer, _) = manual(Quota::per_minute(1));
    let (svc, _) = app(&layer.grpc(false));
    send(&svc, grpc_call("application/grpc")).await;
    let r = send(&svc, grpc_call("application/grpc")).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("grpc-status").is_none());
}

#[tokio::test]
async fn grpc_calls_through_a_backend() {
    for (mode, fail, expected) in [
        (FailureMode::Closed, true, "14"),
        (FailureMode::Local, true, "8"),
    ] {
        let (layer, backend) = remote(mode).await;
        let (svc, _) = app(&layer);
        backend.fail.store(fail, Ordering::SeqCst);
        let call = || {
            let mut r = grpc_call("application/grpc");
            r.headers_mut()
                .insert("x-api-key", HeaderValue::from_static("k"));
            r
        };
        let mut last = send(&svc, call()).await;
        for _ in 0..2 {
            last = send(&svc, call()).await;
        }
        assert_eq!(last.status(), 200, "{mode:?}");
        assert_eq!(last.headers()["grpc-status"], expected, "{mode:?}");
        assert!(
            last.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever the content-type, a rejection is either a gRPC status on 200 or
    /// the 429 Problem, never something in between.
    #[test]
    fn rejection_is_grpc_or_http(content_type in prop::collection::vec(any::<u8>(), 0..40)) {
        let (layer, _) = manual(Quota::per_minute(1));
        let (mut svc, _) = app(&layer);
        let mut last = None;
        for _ in 0..2 {
            let mut r = req("/", "192.0.2.1:1");
            if let Ok(v) = HeaderValue::from_bytes(&content_type) {
                r.headers_mut().insert(http::header::CONTENT_TYPE, v);
            }
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let mut fut = std::pin::pin!(svc.call(r));
            let Poll::Ready(Ok(resp)) = fut.as_mut().poll(&mut cx) else { panic!("pending") };
            last = Some(resp);
        }
        let last = last.unwrap();
        let grpc = last.headers().get("grpc-status").is_some();
        if grpc {
            prop_assert_eq!(last.status(), 200);
            prop_assert_eq!(&last.headers()["content-type"], "application/grpc");
        } else {
            prop_assert_eq!(last.status(), 429);
        }
        prop_assert!(last.headers().contains_key("retry-after"));
    }
}

#[tokio::test]
async fn skipped_requests_carry_nothing() {
    let (layer, _) = manual(Quota::per_second(1));
    let layer = layer
        .skip_paths(["/health/*", "/metrics"])
        .skip(|h| h.headers().contains_key("x-internal"));
    let (svc, calls) = app(&layer);
    for _ in 0..5 {
        let r = send(&svc, req("/health/live", "192.0.2.1:1")).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("ratelimit").is_none());
        let mut internal = req("/", "192.0.2.1:1");
        internal
            .headers_mut()
            .insert("x-internal", HeaderValue::from_static("1"));
        assert_eq!(send(&svc, internal).await.status(), 200);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    assert_eq!(layer.len(), 0);
}

#[tokio::test]
async fn single_policy_fast_path_honours_scope_skips_and_cost() {
    let clock = RateLimitClock::manual();
    let layer = RateLimitLayer::new()
        .policy(
            Policy::new("only", Quota::per(10, Duration::from_secs(10)))
                .paths(["/api/**"])
                .methods([Method::GET])
                .cost(|h| {
                    if h.uri().query() == Some("heavy") {
                        4
                    } else {
                        1
                    }
                }),
        )
        .skip_paths(["/api/health"])
        .clock(clock);
    let (svc, calls) = app(&layer);
    // Out of scope (path, method) and skipped requests carry nothing.
    for r in [
        req("/other", "192.0.2.1:1"),
        req("/api/health", "192.0.2.1:1"),
        {
            let mut r = req("/api/x", "192.0.2.1:1");
            *r.method_mut() = Method::POST;
            r
        },
    ] {
        let r = send(&svc, r).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("ratelimit").is_none());
    }
    assert_eq!(layer.len(), 0);
    let r = send(&svc, req("/api/x?heavy", "192.0.2.1:1")).await;
    assert_eq!(r.headers()["ratelimit"], "\"only\";r=6;t=4");
    let r = send(&svc, req("/api/x?heavy", "192.0.2.1:1")).await;
    assert_eq!(r.headers()["ratelimit"], "\"only\";r=2;t=8");
    let r = send(&svc, req("/api/x?heavy", "192.0.2.1:1")).await;
    assert_eq!(r.status(), 429, "4 more do not fit in 2");
    let r = send(&svc, req("/api/x", "192.0.2.1:1")).await;
    assert_eq!(r.headers()["ratelimit"], "\"only\";r=1;t=9");
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn header_modes() {
    let (layer, _) = manual(Quota::per_minute(10));
    let layer = layer.headers(false).legacy_headers(true);
    let (svc, _) = app(&layer);
    let r = send(&svc, req("/", "192.0.2.1:1")).await;
    assert!(r.headers().get("ratelimit").is_none());
    assert_eq!(r.headers()["x-ratelimit-limit"], "10");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "9");
    assert_eq!(r.headers()["x-ratelimit-reset"], "6");
    let (layer, _) = manual(Quota::per_minute(10));
    let (svc, _) = app(&layer.headers(false));
    let r = send(&svc, req("/", "192.0.2.1:1")).await;
    assert!(
        r.headers()
            .iter()
            .all(|(n, _)| !n.as_str().contains("ratelimit"))
    );
}

#[tokio::test]
async fn spoofed_forwarded_for_does_not_change_the_key() {
    let (layer, _) = manual(Quota::per_minute(1));
    let (svc, _) = app(&layer);
    let svc = ClientIpLayer::new().layer(svc);
    let spoof = |xff: &str| {
        let mut r = req("/", "198.51.100.7:9");
        r.headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        r
    };
    assert_eq!(
        svc.clone()
            .oneshot(spoof("1.1.1.1"))
            .await
            .unwrap()
            .status(),
        200
    );
    for xff in ["2.2.2.2", "3.3.3.3, 4.4.4.4", "::1", "garbage"] {
        assert_eq!(
            svc.clone().oneshot(spoof(xff)).await.unwrap().status(),
            429,
            "{xff}"
        );
    }
    // Without the ClientIp layer, the peer is used too.
    let (layer, _) = manual(Quota::per_minute(1));
    let (svc, _) = app(&layer);
    send(&svc, spoof("1.1.1.1")).await;
    assert_eq!(send(&svc, spoof("5.5.5.5")).await.status(), 429);
}

#[tokio::test]
async fn ipv6_forms() {
    let (layer, _) = manual(Quota::per_minute(1));
    let (svc, _) = app(&layer);
    let with_ip = |ip: &str| {
        let mut r = Request::get("/").body(()).unwrap();
        r.extensions_mut()
            .insert(ClientIp::from_peer(ip.parse().unwrap()));
        r
    };
    assert_eq!(
        send(&svc, with_ip("2001:db8:aa:bb01::1")).await.status(),
        200
    );
    // Same /56, other spellings and hosts.
    for same in [
        "2001:db8:aa:bbff:ffff::9",
        "2001:0db8:00aa:bb00::",
        "2001:db8:aa:bb12::1",
    ] {
        assert_eq!(send(&svc, with_ip(same)).await.status(), 429, "{same}");
    }
    // Another /56.
    assert_eq!(
        send(&svc, with_ip("2001:db8:aa:cc00::1")).await.status(),
        200
    );
    // IPv4-mapped counts as the IPv4 address, not as a /56 shared by all IPv4.
    assert_eq!(send(&svc, with_ip("::ffff:192.0.2.10")).await.status(), 200);
    assert_eq!(send(&svc, with_ip("192.0.2.10")).await.status(), 429);
    assert_eq!(send(&svc, with_ip("::ffff:192.0.2.11")).await.status(), 200);
    // No address at all: one shared bucket.
    assert_eq!(send(&svc, Request::new(())).await.status(), 200);
    assert_eq!(send(&svc, Request::new(())).await.status(), 429);
}

#[tokio::test]
async fn headers_off_with_several_policies_still_limits_and_sends_only_retry_after() {
    let layer = RateLimitLayer::new()
        .clock(RateLimitClock::manual())
        .headers(false)
        .policy(Policy::new("wide", Quota::per_minute(100)))
        .policy(Policy::new("narrow", Quota::per_minute(2)));
    let (svc, calls) = app(&layer);
    for _ in 0..2 {
        let r = send(&svc, req("/", "192.0.2.1:1")).await;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()
                .iter()
                .all(|(n, _)| !n.as_str().contains("ratelimit"))
        );
    }
    let r = send(&svc, req("/", "192.0.2.1:1")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "30");
    assert!(r.headers().get("ratelimit").is_none());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_mode_shares_the_state_and_answers_the_same() {
    use http_body_util::BodyExt;
    let (layer, _) = manual(Quota::per_minute(1));
    let axum_layer = layer.clone().for_axum();
    let svc = axum_layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(axum::body::Body::from("ok")))
    }));
    let ok = svc.clone().oneshot(req("/", "192.0.2.1:1")).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["ratelimit"], "\"default\";r=0;t=60");
    assert_eq!(ok.into_body().collect().await.unwrap().to_bytes(), "ok");
    let limited = svc.clone().oneshot(req("/", "192.0.2.1:2")).await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "60");
    let body = limited.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["code"], "RATE_LIMITED");
    // One state: the default-mode handle sees the key the axum mode tracked.
    assert_eq!((layer.len(), axum_layer.len()), (1, 1));
    assert_eq!(axum_layer.same_state().len(), 1);
}

#[derive(Clone, Hash)]
struct User(String);

#[tokio::test]
async fn header_and_extension_keys() {
    let clock = RateLimitClock::manual();
    let layer = RateLimitLayer::new()
        .clock(clock)
        .policy(
            Policy::new("api", Quota::per_minute(1))
                .key(KeyBy::header(HeaderName::from_static("x-api-key"))),
        )
        .policy(Policy::new("user", Quota::per_minute(2)).key(KeyBy::extension::<User>()));
    let (svc, _) = app(&layer);
    let with_key = |k: &[u8]| {
        let mut r = Request::get("/").body(()).unwrap();
        r.headers_mut()
            .insert("x-api-key", HeaderValue::from_bytes(k).unwrap());
        r
    };
    assert_eq!(send(&svc, with_key(b"k1")).await.status(), 200);
    assert_eq!(send(&svc, with_key(b"k1")).await.status(), 429);
    assert_eq!(send(&svc, with_key(b"k2")).await.status(), 200);
    let long = vec![b'a'; 64 * 1024];
    assert_eq!(send(&svc, with_key(&long)).await.status(), 200);
    // No key: policy does not apply, no headers.
    let r = send(&svc, Request::new(())).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("ratelimit").is_none());
    let user = |id: &str| {
        let mut r = Request::get("/").body(()).unwrap();
        r.extensions_mut().insert(User(id.to_owned()));
        r
    };
    assert_eq!(
        send(&svc, user("u1")).await.headers()["ratelimit"],
        "\"user\";r=1;t=30"
    );
    send(&svc, user("u1")).await;
    assert_eq!(send(&svc, user("u1")).await.status(), 429);
    assert_eq!(send(&svc, user("u2")).await.status(), 200);
}

#[test]
fn works_without_a_runtime_and_cleans_up_by_hand() {
    let (layer, clock) = manual(Quota::per_second(10));
    let (mut svc, _) = app(&layer);
    for i in 0..100u16 {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut fut =
            std::pin::pin!(svc.call(req("/", &format!("10.0.{}.{}:1", i / 256, i % 256))));
        let Poll::Ready(Ok(r)) = fut.as_mut().poll(&mut cx) else {
            panic!("pending")
        };
        assert_eq!(r.status(), 200);
    }
    assert_eq!(layer.len(), 100);
    clock.advance(Duration::from_secs(1));
    assert_eq!(layer.cleanup(), 100);
    assert!(layer.is_empty());
}

#[tokio::test(start_paused = true)]
async fn background_cleanup_drops_idle_keys_and_ends_with_the_layer() {
    let (layer, clock) = manual(Quota::per_second(10));
    let layer = layer.cleanup_every(Duration::from_secs(5));
    let (svc, _) = app(&layer);
    for i in 0..50u8 {
        send(&svc, req("/", &format!("10.0.0.{i}:1"))).await;
    }
    assert_eq!(layer.len(), 50);
    // Tokio's paused clock drives the task's ticks; the limiter's own clock
    // says how old the keys are. While they are fresh, ticks keep them.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(layer.len(), 50);
    clock.advance(Duration::from_secs(1));
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(layer.len(), 0);
    let weak = Arc::downgrade(&layer.shared.local);
    drop((svc, layer));
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(weak.upgrade().is_none());
}

/// A backend whose answers the test controls.
#[derive(Clone, Default)]
struct Scripted {
    fail: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<BackendRequest>>>,
}

impl Backend for Scripted {
    fn check(&self, request: BackendRequest) -> BackendFuture {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fail = self.fail.load(Ordering::SeqCst);
        let remaining = 7;
        self.seen.lock().unwrap().push(request);
        Box::pin(async move {
            if fail {
                Err(BackendError::new("connection refused"))
            } else {
                Ok(Decision::new(true, remaining, Duration::from_millis(1500)))
            }
        })
    }
}

async fn remote(mode: FailureMode) -> (RateLimitLayer, Scripted) {
    let backend = Scripted::default();
    let layer = RateLimitLayer::new()
        .clock(RateLimitClock::manual())
        .policy(
            Policy::new("api", Quota::per_minute(1))
                .key(KeyBy::header(HeaderName::from_static("x-api-key"))),
        )
        .backend(backend.clone())
        .failure_mode(mode)
        .circuit_breaker(2, Duration::from_secs(3600))
        .key_secret("s3cret");
    (layer, backend)
}

mod backend;
mod keys;
mod shadow;
