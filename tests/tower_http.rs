//! tower-http layers on both sides of the stack, written as a user writes them:
//! `CorsLayer` and `CompressionLayer` outermost, the stack, the user's auth
//! (`axum::middleware::from_fn`), then `TraceLayer` innermost, all in one
//! `ServiceBuilder`. Each composition is served over loopback and checked where
//! a browser would notice: the 401, 413 and 429 answers of the inner layers carry
//! CORS headers, preflights are answered by `Cors` (with the bodies' `Default`),
//! and compressed answers arrive compressed.
//!
//! `scripts/check_time.sh` times `cargo check` of this file, and of this file
//! with the mistake at its end, which must be reported within seconds.
#![cfg(all(feature = "axum", feature = "metrics", feature = "rate-limit"))]

#[path = "common/capture.rs"]
mod capture;
mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use capture::Capture;
use common::{RawResponse, get as http_get, raw};
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::PropagateRequestIdLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tower_ops::body_limit::{BodyLimitLayer, Limited};
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::error::ErrorLayer;
use tower_ops::log::{JsonLayer, RequestLogLayer};
use tower_ops::metrics::MetricsLayer;
use tower_ops::rate_limit::{Quota, RateLimitLayer};
use tower_ops::request_id::RequestIdLayer;
use tower_ops::route::CaptureRouteLayer;
use tower_ops::security_headers::SecurityHeadersLayer;
use tower_ops::stack::Stack;
use tower_ops::timeout::TimeoutLayer;
use tracing_subscriber::layer::SubscriberExt;

const ORIGIN: &str = "https://app.example";
const TOKEN: &str = "Bearer let-me-in";
/// Long enough for `CompressionLayer` (it leaves bodies under 32 bytes alone).
const GREETING: &str = "hello from behind the whole stack, compressed on the way out\n";
/// Requests per minute and client.
const QUOTA: u32 = 5;
/// Request body bytes.
const BODY_LIMIT: u64 = 16;

fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(HeaderValue::from_static(ORIGIN))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([AUTHORIZATION, CONTENT_TYPE])
        .expose_headers([
            RETRY_AFTER,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-policy"),
        ])
}

fn rate_limit() -> RateLimitLayer {
    RateLimitLayer::with_quota(Quota::per(QUOTA, Duration::from_secs(60)))
}

/// The user's auth: a bearer token, or 401.
async fn auth(request: Request, next: Next) -> Response {
    if request
        .headers()
        .get(AUTHORIZATION)
        .is_some_and(|v| v == TOKEN)
    {
        return next.run(request).await;
    }
    (StatusCode::UNAUTHORIZED, [(WWW_AUTHENTICATE, "Bearer")]).into_response()
}

fn routes() -> Router {
    Router::new()
        .route("/hello", get(|| async { GREETING }))
        .route("/echo", post(|body: String| async move { body }))
}

/// `TraceLayer` counting the requests that reach it.
macro_rules! counting_trace {
    ($reached:expr) => {{
        let reached = $reached.clone();
        TraceLayer::new_for_http().on_request(move |_: &http::Request<_>, _: &tracing::Span| {
            reached.fetch_add(1, Ordering::SeqCst);
        })
    }};
}

async fn serve(app: Router) -> SocketAddr {
    common::serve(app).await
}

fn request(method: &str, path: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req.into_bytes()
}

fn origin() -> String {
    format!("Origin: {ORIGIN}")
}

fn authorization() -> String {
    format!("Authorization: {TOKEN}")
}

/// The CORS headers a browser needs to let the page read this answer.
fn assert_cors(res: &RawResponse, what: &str) {
    assert_eq!(
        res.first("access-control-allow-origin"),
        Some(ORIGIN),
        "{what}: {res:?}"
    );
    let exposed = res
        .first("access-control-expose-headers")
        .unwrap_or_default();
    assert!(exposed.contains("retry-after"), "{what}: {res:?}");
}

/// A problem envelope with `code`, carrying the request id of its header.
fn assert_problem(res: &RawResponse, status: u16, code: &str) {
    assert_eq!(res.status, status, "{}", res.text());
    let body = res.json();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["request_id"], res.header("x-request-id"), "{body}");
}

/// Every check of a composition; `auth`: the user's auth layer is in it.
async fn check(addr: SocketAddr, reached: &AtomicUsize, auth: bool) {
    // A preflight is answered by `Cors` itself, with a `Default` body of the
    // whole stack's body type; nothing inside sees it.
    let preflight = raw(
        addr,
        &request(
            "OPTIONS",
            "/echo",
            &[
                &origin(),
                "Access-Control-Request-Method: POST",
                "Access-Control-Request-Headers: authorization, content-type",
            ],
            "",
        ),
    )
    .await;
    assert_eq!(preflight.status, 200, "{preflight:?}");
    assert_eq!(preflight.first("access-control-allow-origin"), Some(ORIGIN));
    assert!(
        preflight
            .header("access-control-allow-methods")
            .contains("POST")
    );
    assert!(preflight.body.is_empty(), "{preflight:?}");
    assert_eq!(reached.load(Ordering::SeqCst), 0);

    let mut passed = 0;
    let hello = raw(
        addr,
        &request(
            "GET",
            "/hello",
            &[&origin(), &authorization(), "Accept-Encoding: gzip"],
            "",
        ),
    )
    .await;
    assert_eq!(hello.status, 200, "{hello:?}");
    passed += 1;
    assert_cors(&hello, "200");
    assert_eq!(hello.header("content-encoding"), "gzip");
    assert_eq!(&hello.body[..2], &[0x1f, 0x8b], "a gzip stream");
    assert!(!hello.header("x-request-id").is_empty());

    if auth {
        let denied = raw(addr, &request("GET", "/hello", &[&origin()], "")).await;
        assert_problem(&denied, 401, "UNAUTHORIZED");
        assert_cors(&denied, "401");
        assert_eq!(denied.header("www-authenticate"), "Bearer");
    }

    let big = "x".repeat(BODY_LIMIT as usize * 4);
    let too_large = raw(
        addr,
        &request("POST", "/echo", &[&origin(), &authorization()], &big),
    )
    .await;
    assert_problem(&too_large, 413, "PAYLOAD_TOO_LARGE");
    assert_cors(&too_large, "413");

    let mut limited = None;
    for _ in 0..QUOTA + 1 {
        let res = raw(
            addr,
            &request("GET", "/hello", &[&origin(), &authorization()], ""),
        )
        .await;
        if res.status == 429 {
            limited = Some(res);
            break;
        }
        assert_eq!(res.status, 200, "{res:?}");
        assert_eq!(res.text(), GREETING);
        passed += 1;
    }
    let limited = limited.expect("a 429 within the quota and one");
    assert_problem(&limited, 429, "RATE_LIMITED");
    assert_cors(&limited, "429");
    assert!(limited.header("retry-after").parse::<u64>().unwrap() >= 1);
    assert!(
        limited
            .header("ratelimit-policy")
            .starts_with("\"default\";q=5")
    );

    // The innermost layer saw exactly the requests that passed every other one.
    assert_eq!(reached.load(Ordering::SeqCst), passed);
}

#[tokio::test]
async fn stack_for_axum_between_tower_http_layers() {
    let reached = Arc::new(AtomicUsize::new(0));
    let stack = Stack::new()
        .rate_limit(Some(rate_limit()))
        .body_limit(BodyLimitLayer::new(BODY_LIMIT))
        .for_axum();
    let app = routes().merge(stack.routes()).layer(
        ServiceBuilder::new()
            .layer(cors())
            .layer(CompressionLayer::new())
            .layer(stack)
            .layer(from_fn(auth))
            .layer(CaptureRouteLayer::new())
            .layer(counting_trace!(reached)),
    );
    check(serve(app).await, &reached, true).await;
}

#[tokio::test]
async fn stack_and_cors_in_separate_router_layers() {
    // The same, added the other way users write it: one `Router::layer` each.
    let reached = Arc::new(AtomicUsize::new(0));
    let stack = Stack::new()
        .rate_limit(Some(rate_limit()))
        .body_limit(BodyLimitLayer::new(BODY_LIMIT))
        .for_axum();
    let app = routes()
        .layer(counting_trace!(reached))
        .layer(CaptureRouteLayer::new())
        .layer(from_fn(auth))
        .layer(stack)
        .layer(CompressionLayer::new())
        .layer(CorsLayer::permissive());
    let addr = serve(app).await;
    let denied = raw(addr, &request("GET", "/hello", &[&origin()], "")).await;
    assert_problem(&denied, 401, "UNAUTHORIZED");
    assert_eq!(denied.first("access-control-allow-origin"), Some("*"));
    let big = "x".repeat(BODY_LIMIT as usize + 1);
    let too_large = raw(
        addr,
        &request("POST", "/echo", &[&origin(), &authorization()], &big),
    )
    .await;
    assert_problem(&too_large, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(too_large.first("access-control-allow-origin"), Some("*"));
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn hand_listed_layers_between_tower_http_layers() {
    let reached = Arc::new(AtomicUsize::new(0));
    let app = routes().layer(
        ServiceBuilder::new()
            .layer(cors())
            .layer(CompressionLayer::new())
            .layer(RequestIdLayer::new())
            .layer(ClientIpLayer::new())
            .layer(RequestLogLayer::new())
            .layer(MetricsLayer::builder().build().0)
            .layer(SecurityHeadersLayer::api())
            .layer(ErrorLayer::new())
            .layer(TimeoutLayer::new(Duration::from_secs(5)))
            .layer(rate_limit())
            .layer(BodyLimitLayer::new(BODY_LIMIT).for_axum())
            .layer(from_fn(auth))
            .layer(CaptureRouteLayer::new())
            .layer(counting_trace!(reached)),
    );
    check(serve(app).await, &reached, true).await;
}

#[tokio::test]
async fn more_tower_http_layers_on_both_sides() {
    // What tower-http's other common layers ask of the bodies inside them:
    // `Default` (its timeout answers with an empty body), `Body<Data = Bytes>`
    // with `Send + 'static` (catch-panic), displayable errors (trace).
    let stack = Stack::new()
        .body_limit(BodyLimitLayer::new(BODY_LIMIT))
        .for_axum();
    let served_by = HeaderName::from_static("x-served-by");
    let app = routes()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(SetResponseHeaderLayer::overriding(
                    served_by,
                    HeaderValue::from_static("edge"),
                ))
                .layer(TraceLayer::new_for_http())
                .layer(CatchPanicLayer::new())
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    Duration::from_millis(200),
                ))
                .layer(RequestBodyLimitLayer::new(1024))
                .layer(cors())
                .layer(CompressionLayer::new())
                .layer(stack)
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CaptureRouteLayer::new())
                .layer(TraceLayer::new_for_http()),
        );
    let addr = serve(app).await;

    let hello = raw(
        addr,
        &request("GET", "/hello", &[&origin(), "Accept-Encoding: gzip"], ""),
    )
    .await;
    assert_eq!(hello.status, 200, "{hello:?}");
    assert_eq!(hello.header("x-served-by"), "edge");
    assert_eq!(hello.header("content-encoding"), "gzip");
    assert_cors(&hello, "200");

    // tower-http's timeout answers with the stack's body type, by `Default`.
    let late = raw(addr, &request("GET", "/slow", &[&origin()], "")).await;
    assert_eq!(late.status, 408, "{late:?}");
    assert!(late.body.is_empty(), "{late:?}");
    assert_eq!(late.header("x-served-by"), "edge");

    let big = "x".repeat(BODY_LIMIT as usize * 2);
    let too_large = raw(addr, &request("POST", "/echo", &[&origin()], &big)).await;
    assert_problem(&too_large, 413, "PAYLOAD_TOO_LARGE");
    assert_cors(&too_large, "413");
    assert_eq!(too_large.header("x-served-by"), "edge");
}

/// The plain service under `Stack::new()`: it gets the limited hyper body.
async fn plain(
    req: http::Request<Limited<Incoming>>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let body = match req.uri().path() {
        "/hello" => Bytes::from_static(GREETING.as_bytes()),
        _ => match req.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => Bytes::from_static(b"unread"),
        },
    };
    Ok(http::Response::new(Full::new(body)))
}

#[tokio::test]
async fn stack_on_a_plain_hyper_service_between_tower_http_layers() {
    let reached = Arc::new(AtomicUsize::new(0));
    let service = ServiceBuilder::new()
        .layer(cors())
        .layer(CompressionLayer::new())
        .layer(
            Stack::new()
                .rate_limit(Some(rate_limit()))
                .body_limit(BodyLimitLayer::new(BODY_LIMIT)),
        )
        .layer(counting_trace!(reached))
        .service(service_fn(plain));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            // The client IP layer reads the peer from a `SocketAddr` extension.
            let service = service
                .clone()
                .map_request(move |mut req: http::Request<Incoming>| {
                    req.extensions_mut().insert(peer);
                    req
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)),
            );
        }
    });
    check(addr, &reached, false).await;
}

#[tokio::test]
async fn switched_off_layers_pass_through() {
    // Global: the other tests of this file log on other threads at the same
    // time, so lines are told apart by request id.
    let cap = Capture::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(JsonLayer::new(cap.clone())),
    )
    .unwrap();
    let logged = |id: &str| {
        cap.completed()
            .iter()
            .filter(|l| l["request_id"] == id)
            .count()
    };
    let slow = || {
        Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        )
    };
    let on = Stack::new()
        .rate_limit(Some(RateLimitLayer::with_quota(Quota::per(
            1,
            Duration::from_secs(60),
        ))))
        .timeout(Some(TimeoutLayer::new(Duration::from_millis(100))))
        .for_axum();
    let on = serve(slow().layer(on)).await;
    let late = http_get(on, "/slow", "").await;
    assert_problem(&late, 504, "TIMEOUT");
    let limited = http_get(on, "/slow", "").await;
    assert_problem(&limited, 429, "RATE_LIMITED");
    assert!(limited.header("ratelimit").starts_with("\"default\";r=0"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    for res in [&late, &limited] {
        assert_eq!(logged(res.header("x-request-id")), 1, "{}", cap.text());
    }

    let off = Stack::new()
        .log(None)
        .metrics(None)
        .timeout(None)
        .rate_limit(None)
        .for_axum();
    assert!(off.metrics_exporter().is_none());
    let off = serve(slow().layer(off)).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let res = http_get(off, "/slow", "").await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(res.text(), "done");
        assert!(res.first("ratelimit").is_none(), "{res:?}");
        ids.push(res.header("x-request-id").to_owned());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    for id in ids {
        assert_eq!(logged(&id), 0, "nothing logged when off: {}", cap.text());
    }
}

/// Built only by `scripts/check_time.sh` (`--cfg tower_ops_check_mistake`): a
/// user's response body without `Default` under `CorsLayer`, around the stack.
/// rustc must reject it with E0277 in seconds; before the stack's types were
/// flattened it ran for many minutes on this without printing anything.
#[cfg(tower_ops_check_mistake)]
mod mistake {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// A body of the user's own, without `Default`.
    struct Stream;

    impl http_body::Body for Stream {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            Poll::Ready(None)
        }
    }

    fn streamed<B>(response: http::Response<B>) -> http::Response<Stream> {
        response.map(|_| Stream)
    }

    #[allow(dead_code)]
    fn app() -> Router {
        routes().layer(
            ServiceBuilder::new()
                .layer(CorsLayer::permissive())
                .map_response(streamed)
                .layer(Stack::new().for_axum()),
        )
    }
}
