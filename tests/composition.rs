//! Every layer in one stack, in several orders, over a real loopback socket: each
//! order compiles and serves, and each rejection (413, 429, 504, 500 from a panic)
//! is logged once, counted once and carries the request id, whatever the order of
//! the layers that answer by themselves, as long as the request id, log and metrics
//! layers stay outside them (a layer cannot see what happens outside it).
#![cfg(all(feature = "axum", feature = "metrics", feature = "rate-limit"))]

#[path = "common/capture.rs"]
mod capture;
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use capture::Capture;
use common::{RawResponse, get as http_get, raw, serve};
use prometheus_client::registry::Registry;
use tower::ServiceBuilder;
use tower_ops::body_limit::BodyLimitLayer;
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::error::ErrorLayer;
use tower_ops::log::{JsonLayer, RequestLogLayer};
use tower_ops::metrics::{MetricsExporter, MetricsLayer};
use tower_ops::rate_limit::{Quota, RateLimitLayer};
use tower_ops::request_id::RequestIdLayer;
use tower_ops::route::CaptureRouteLayer;
use tower_ops::security_headers::SecurityHeadersLayer;
use tower_ops::timeout::TimeoutLayer;
use tracing_subscriber::layer::SubscriberExt;

/// One fresh instance of every layer.
struct Layers {
    request_id: RequestIdLayer,
    client_ip: ClientIpLayer,
    log: RequestLogLayer,
    metrics: MetricsLayer,
    security: SecurityHeadersLayer,
    error: ErrorLayer,
    timeout: TimeoutLayer,
    rate_limit: RateLimitLayer,
    body_limit: BodyLimitLayer<tower_ops::body_limit::AxumBody>,
}

fn layers(registry: &mut Registry) -> Layers {
    Layers {
        request_id: RequestIdLayer::new(),
        client_ip: ClientIpLayer::new(),
        log: RequestLogLayer::new(),
        metrics: MetricsLayer::builder().register(registry),
        security: SecurityHeadersLayer::api(),
        error: ErrorLayer::new(),
        timeout: TimeoutLayer::new(Duration::from_millis(200)),
        rate_limit: RateLimitLayer::with_quota(Quota::per(8, Duration::from_secs(60))),
        body_limit: BodyLimitLayer::new(16).for_axum(),
    }
}

fn routes() -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("boom");
                }
                "never"
            }),
        )
        .layer(CaptureRouteLayer::new())
}

async fn rejections(addr: SocketAddr, metrics: SocketAddr, cap: &Capture, security_outside: bool) {
    let big = "x".repeat(64);
    let post = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{big}",
        big.len()
    );
    let mut seen = vec![
        (raw(addr, post.as_bytes()).await, 413, "body_limit"),
        (http_get(addr, "/slow", "").await, 504, "timeout"),
        (http_get(addr, "/panic", "").await, 500, "panic"),
    ];
    let mut limited = None;
    for _ in 0..10 {
        let res = http_get(addr, "/ok", "").await;
        if res.status == 429 {
            limited = Some(res);
            break;
        }
        assert_eq!(res.status, 200);
    }
    seen.push((
        limited.expect("a 429 within 10 requests"),
        429,
        "rate_limit",
    ));

    for (res, status, by) in &seen {
        assert_eq!(res.status, *status, "{}", res.text());
        let id = res.header("x-request-id");
        assert_eq!(res.json()["request_id"], *id, "{by}: {}", res.text());
        if security_outside {
            assert_eq!(res.header("x-content-type-options"), "nosniff");
        }
        let lines: Vec<_> = cap
            .completed()
            .into_iter()
            .filter(|l| l["request_id"] == *id)
            .collect();
        assert_eq!(lines.len(), 1, "{by} logged once: {lines:?}");
        assert_eq!(lines[0]["status"], *status);
        assert_eq!(lines[0]["rejected_by"], *by);
    }
    {
        let text = scrape(metrics).await;
        for (_, _, by) in &seen {
            let needle = format!("rejected_by=\"{by}\"");
            let line = text
                .lines()
                .find(|l| l.starts_with("http_server_rejections_total") && l.contains(&needle))
                .unwrap_or_else(|| panic!("no counter for {by}: {text}"));
            assert!(line.ends_with(" 1"), "{by} counted once: {line}");
        }
    }
}

async fn scrape(addr: SocketAddr) -> String {
    http_get(addr, "/metrics", "").await.text()
}

async fn start(app: Router, registry: Registry) -> (SocketAddr, SocketAddr) {
    let exporter = MetricsExporter::new(registry);
    let metrics = serve(exporter.into_router()).await;
    (serve(app).await, metrics)
}

fn subscriber(cap: &Capture) -> tracing::subscriber::DefaultGuard {
    tracing::subscriber::set_default(
        tracing_subscriber::registry().with(JsonLayer::new(cap.clone())),
    )
}

/// Stacks the layers named, outermost first, around the routes, and checks every
/// rejection (`$security_outside`: the security headers layer wraps the rejecting
/// layers, so their answers carry its headers).
macro_rules! in_order {
    ($security_outside:expr; $($layer:ident),+) => {{
        let cap = Capture::default();
        let _g = subscriber(&cap);
        let mut registry = Registry::default();
        let l = layers(&mut registry);
        let app = routes().layer(ServiceBuilder::new()$(.layer(l.$layer))+);
        let (addr, metrics) = start(app, registry).await;
        rejections(addr, metrics, &cap, $security_outside).await;
    }};
}

#[tokio::test]
async fn canonical_order() {
    in_order!(true; request_id, client_ip, log, metrics, security, error, timeout, rate_limit, body_limit);
}

#[tokio::test]
async fn rejecting_layers_reversed() {
    in_order!(false; log, metrics, request_id, client_ip, body_limit, rate_limit, timeout, error, security);
}

#[tokio::test]
async fn rejecting_layers_shuffled() {
    in_order!(false; request_id, metrics, client_ip, log, rate_limit, error, body_limit, security, timeout);
}

#[tokio::test]
async fn reversed_order_compiles_and_serves() {
    // Fully reversed: the request id is innermost and the error layer sits outside
    // the log and metrics layers. Everything still compiles and serves; a panic is
    // answered outside the log layer, so the canonical order is what keeps every
    // rejection visible (DESIGN section 4).
    let cap = Capture::default();
    let _g = subscriber(&cap);
    let mut registry = Registry::default();
    let l = layers(&mut registry);
    let app = routes().layer(
        ServiceBuilder::new()
            .layer(l.body_limit)
            .layer(l.rate_limit)
            .layer(l.timeout)
            .layer(l.error)
            .layer(l.security)
            .layer(l.metrics)
            .layer(l.log)
            .layer(l.client_ip)
            .layer(l.request_id),
    );
    let (addr, _) = start(app, registry).await;
    let res: RawResponse = http_get(addr, "/ok", "").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "ok");
    assert_eq!(res.header("x-content-type-options"), "nosniff");
    let id = res.header("x-request-id").to_owned();
    let lines = cap.completed();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["request_id"], id);
    assert_eq!(http_get(addr, "/slow", "").await.status, 504);
    assert_eq!(http_get(addr, "/panic", "").await.status, 500);
}
