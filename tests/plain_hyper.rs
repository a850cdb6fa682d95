//! The health probes, the metrics exporter and the application's own routes from
//! one plain-hyper service (no axum, no boxing): their bodies are one type,
//! `EndpointBody`, so one `match` returns all of them.
#![cfg(feature = "metrics")]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_ops::body::EndpointBody;
use tower_ops::health::{HealthRegistry, check_fn};
use tower_ops::metrics::{MetricsExporter, MetricsLayer, OPENMETRICS_CONTENT_TYPE};
use tower_ops::paths::PathSet;

const TOKEN: &str = "scrape-me";

async fn start(registry: HealthRegistry) -> SocketAddr {
    let (metrics, prometheus) = MetricsLayer::builder()
        .skip_paths(PathSet::probes())
        .build();
    let exporter = MetricsExporter::new(prometheus).bearer_token(TOKEN);
    let health = registry.service();
    let app = service_fn(move |req: Request<Incoming>| {
        let health = health.clone();
        let exporter = exporter.clone();
        async move {
            // Three sources, one body type: this `match` is the point of the test.
            let response: Response<EndpointBody> = match req.uri().path() {
                "/metrics" => exporter.oneshot(req).await?,
                "/hello" => Response::new(EndpointBody::full("hello")),
                _ => health.oneshot(req).await?,
            };
            Ok::<_, Infallible>(response)
        }
    });
    let service = ServiceBuilder::new().layer(metrics).service(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test]
async fn probes_exporter_and_routes_share_one_body() {
    let registry = HealthRegistry::builder()
        .check(check_fn("db", || async { Ok::<_, std::io::Error>(()) }))
        .build();
    let addr = start(registry.clone()).await;

    let live = common::get(addr, "/health/live", "").await;
    assert_eq!(live.status, 200);
    assert_eq!(live.header("content-type"), "application/json");
    assert_eq!(live.json()["status"], "alive");
    assert_eq!(live.header("content-length"), "18", "an exact size hint");

    let starting = common::get(addr, "/health/ready", "").await;
    assert_eq!(starting.status, 503);
    assert_eq!(starting.json()["reason"], "starting");
    registry.readiness().mark_ready();
    let ready = common::get(addr, "/health/ready", "").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let report = common::get(addr, "/health", "").await;
    assert_eq!(report.json()["checks"]["db"]["status"], "healthy");

    let head = common::raw(
        addr,
        b"HEAD /health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = common::raw(
        addr,
        b"POST /health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), "GET, HEAD");
    assert_eq!(
        common::get(addr, "/health/live/../ready", "").await.status,
        404
    );

    assert_eq!(common::get(addr, "/hello", "").await.text(), "hello");

    let denied = common::get(addr, "/metrics", "").await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.header("www-authenticate"), "Bearer");
    let wrong = common::get(addr, "/metrics", "Authorization: Bearer scrape-m\r\n").await;
    assert_eq!(wrong.status, 401);
    let scrape = common::get(
        addr,
        "/metrics",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    )
    .await;
    assert_eq!(scrape.status, StatusCode::OK.as_u16());
    assert_eq!(scrape.header("content-type"), OPENMETRICS_CONTENT_TYPE);
    let text = scrape.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    // `/hello` was measured; the probes were not.
    assert!(
        text.lines().any(|l| l
            .starts_with("http_server_request_duration_seconds_count{http_request_method=\"GET\"")
            && l.ends_with(" 1")),
        "{text}"
    );
    assert!(!text.contains("/health"), "{text}");
}
