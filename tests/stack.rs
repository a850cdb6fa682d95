//! The canonical stack as one value, over a real loopback socket.
#![cfg(all(feature = "axum", feature = "metrics", feature = "rate-limit"))]

mod common;

use axum::Router;
use axum::routing::{get, post};
use common::{get as http_get, raw, serve};
use tower_ops::body_limit::BodyLimitLayer;
use tower_ops::route::CaptureRouteLayer;
use tower_ops::stack::Stack;

#[tokio::test]
async fn one_value_applies_every_layer() {
    let stack = Stack::new().body_limit(BodyLimitLayer::new(8)).for_axum();
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/echo", post(|body: String| async move { body }))
        .merge(stack.routes())
        .layer(CaptureRouteLayer::new())
        .layer(stack);
    let addr = serve(app).await;

    let res = http_get(addr, "/users/1", "x-request-id: stack-1\r\n").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-request-id"), "stack-1");
    assert_eq!(res.header("x-content-type-options"), "nosniff");
    assert!(res.header("ratelimit").starts_with("\"default\";r="));

    let body = "0123456789abcdef";
    let post = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let res = raw(addr, post.as_bytes()).await;
    assert_eq!(res.status, 413);
    assert_eq!(res.json()["code"], "PAYLOAD_TOO_LARGE");

    let ready = http_get(addr, "/health/ready", "").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["reason"], "starting");
    let metrics = http_get(addr, "/metrics", "").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .text()
            .contains("http_server_request_duration_seconds_count{http_request_method=\"GET\",http_route=\"/users/{id}\",http_response_status_code=\"200\"} 1"),
        "{}",
        metrics.text()
    );
    // Probes are neither measured nor limited.
    assert!(!metrics.text().contains("/health/ready"));
}

#[test]
fn from_env_lists_every_problem() {
    let bad = [
        ("TRUSTED_PROXIES", "10.0.0.0/8, nonsense"),
        ("SLOW_REQUEST_MS", "soon"),
        ("LOG_FORMAT", "xml"),
        ("METRICS_TOKEN", " "),
        ("SECURITY_HEADERS", "maximum"),
        ("ERROR_FORMAT", "yaml"),
        ("REQUEST_TIMEOUT_MS", "-1"),
        ("RATE_LIMIT_MAX_REQUESTS", "lots"),
        ("RATE_LIMIT_FAILURE_MODE", "maybe"),
        ("BODY_LIMIT_BYTES", "1MB"),
        ("HEALTH_CHECK_TIMEOUT_MS", "fast"),
        ("SHUTDOWN_TIMEOUT_MS", "later"),
        ("OTEL_PROPAGATORS", "b3"),
    ];
    assert!(common::child_with_env("env_child", &bad));
    assert!(common::child_with_env(
        "env_child",
        &[("BODY_LIMIT_BYTES", "2048"), ("ERROR_FORMAT", "wrapped")]
    ));
}

#[test]
#[ignore = "entry point of from_env_lists_every_problem, run in a child process"]
fn env_child() {
    let Ok(body_limit) = std::env::var("BODY_LIMIT_BYTES") else {
        return;
    };
    let result = Stack::from_env();
    if body_limit == "2048" {
        assert!(result.is_ok(), "{:?}", result.err());
        return;
    }
    let err = result.unwrap_err();
    let text = err.to_string();
    let mut vars: Vec<_> = err.problems().iter().map(|p| p.variable.clone()).collect();
    vars.sort();
    let before = vars.len();
    vars.dedup();
    assert_eq!(before, vars.len(), "a variable reported twice: {text}");
    for var in [
        "TRUSTED_PROXIES",
        "SLOW_REQUEST_MS",
        "LOG_FORMAT",
        "SECURITY_HEADERS",
        "ERROR_FORMAT",
        "REQUEST_TIMEOUT_MS",
        "RATE_LIMIT_MAX_REQUESTS",
        "RATE_LIMIT_FAILURE_MODE",
        "BODY_LIMIT_BYTES",
        "HEALTH_CHECK_TIMEOUT_MS",
        "SHUTDOWN_TIMEOUT_MS",
    ] {
        assert!(vars.iter().any(|v| v == var), "{var} missing from: {text}");
    }
    assert_eq!(
        vars.iter().any(|v| v == "OTEL_PROPAGATORS"),
        cfg!(feature = "otel"),
        "{text}"
    );
}
