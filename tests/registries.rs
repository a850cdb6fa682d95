//! The stack's registries are open: health checks and metrics of the user's own
//! go into the registries `Stack` builds, over a real loopback socket.
#![cfg(all(feature = "axum", feature = "metrics"))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::post;
use common::{get, raw, serve};
use tower_ops::health::check_fn;
use tower_ops::metrics::prometheus_client::metrics::counter::Counter;
use tower_ops::metrics::prometheus_client::metrics::family::Family;
use tower_ops::route::CaptureRouteLayer;
use tower_ops::stack::Stack;

fn app(stack: tower_ops::stack::Stack<tower_ops::body::AxumBody>, extra: Router) -> Router {
    extra
        .merge(stack.routes())
        .layer(CaptureRouteLayer::new())
        .layer(stack)
}

#[tokio::test]
async fn a_custom_check_decides_readiness_and_is_reported() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    // From the environment, as the README's stack is built.
    let stack = Stack::from_env()
        .unwrap()
        .health_check(check_fn("db", move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>("connection refused") }
        }))
        .health_check(check_fn("cache", || async { Ok::<_, std::io::Error>(()) }).non_critical())
        .for_axum();
    stack.health_registry().readiness().mark_ready();
    let addr = serve(app(stack, Router::new())).await;

    let ready = get(addr, "/health/ready", "").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(
        ready.json(),
        serde_json::json!({"status": "not_ready", "reason": "checks_failed"})
    );
    assert!(runs.load(Ordering::SeqCst) >= 1, "readiness ran the check");

    let health = get(addr, "/health", "").await;
    assert_eq!(health.status, 503);
    let json = health.json();
    assert_eq!(json["status"], "unhealthy");
    assert_eq!(json["checks"]["db"]["status"], "unhealthy");
    assert_eq!(json["checks"]["db"]["error"], "connection refused");
    assert_eq!(json["checks"]["cache"]["status"], "healthy");
}

#[tokio::test]
async fn a_passing_custom_check_keeps_the_stack_ready() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let stack = Stack::new()
        .health_check(check_fn("db", move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::io::Error>(()) }
        }))
        .for_axum();
    let readiness = stack.health_registry().readiness().clone();
    let addr = serve(app(stack, Router::new())).await;
    assert_eq!(get(addr, "/health/ready", "").await.status, 503);
    readiness.mark_ready();
    let ready = get(addr, "/health/ready", "").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json(), serde_json::json!({"status": "ready"}));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let health = get(addr, "/health", "").await.json();
    assert_eq!(health["checks"]["db"]["status"], "healthy");
}

#[test]
#[should_panic(expected = "after the health registry was handed out")]
fn a_check_added_after_the_routes_were_built_is_refused() {
    let stack = Stack::new();
    let _routes: Router = stack.routes();
    let _ = stack.health_check(check_fn("late", || async { Ok::<_, std::io::Error>(()) }));
}

// `EncodeLabelSet`'s derive names `::prometheus_client` itself, which a crate
// using the re-export does not have; a list of pairs needs no derive.
type OrderLabels = Vec<(String, String)>;

/// Serves a stack whose registry carries a counter and a labelled family of the
/// user's, bumps them through a handler, and returns the `/metrics` text.
async fn scrape_with_own_metrics() -> String {
    let mut stack = Stack::new().for_axum();
    let orders = Counter::<u64>::default();
    let by_kind = Family::<OrderLabels, Counter>::default();
    let registry = stack.metrics_registry_mut().expect("metrics are on");
    registry.register("orders", "Orders placed", orders.clone());
    registry.register("orders_by_kind", "Orders placed, by kind", by_kind.clone());
    let handler = Router::new().route(
        "/orders",
        post(move |kind: String| {
            let (orders, by_kind) = (orders.clone(), by_kind.clone());
            async move {
                orders.inc();
                by_kind
                    .get_or_create(&vec![("kind".to_owned(), kind)])
                    .inc();
                "placed"
            }
        }),
    );
    let addr = serve(app(stack, handler)).await;
    for kind in ["book", "book", "pen \"x\""] {
        let res = raw(
            addr,
            &common::post("/orders", "text/plain", kind.as_bytes()),
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text());
    }
    let res = get(addr, "/metrics", "").await;
    assert_eq!(res.status, 200);
    res.text()
}

#[tokio::test]
async fn own_metrics_are_exported_with_the_stacks() {
    let text = scrape_with_own_metrics().await;
    assert!(text.contains("# TYPE orders counter\n"), "{text}");
    assert!(text.contains("\norders_total 3\n"), "{text}");
    assert!(
        text.contains("orders_by_kind_total{kind=\"book\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "http_server_request_duration_seconds_count{http_request_method=\"POST\",http_route=\"/orders\",http_response_status_code=\"200\"} 3"
        ),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
}

const STRICT: &str = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
text = open(sys.argv[1], encoding="utf-8").read()
families = {f.name: f for f in text_string_to_metric_families(text)}
orders = families["orders"]
assert orders.type == "counter", orders.type
assert [s.value for s in orders.samples if s.name == "orders_total"] == [3.0], orders.samples
kinds = {s.labels["kind"]: s.value for s in families["orders_by_kind"].samples if s.name.endswith("_total")}
assert kinds == {"book": 2.0, 'pen "x"': 1.0}, kinds
assert families["http_server_request_duration_seconds"].type == "histogram"
print("strict ok")
"#;

#[tokio::test]
#[ignore = "needs python3 prometheus_client"]
async fn own_metrics_pass_the_strict_openmetrics_parser() {
    let text = scrape_with_own_metrics().await;
    assert!(common::python_check(STRICT, text.as_bytes()).contains("strict ok"));
}

#[test]
fn the_registry_closes_once_the_exporter_is_served() {
    let mut stack = Stack::new();
    assert!(stack.metrics_registry_mut().is_some());
    let copy = stack.clone();
    assert!(
        stack.metrics_registry_mut().is_none(),
        "a clone shares the exporter"
    );
    drop(copy);
    assert!(stack.metrics_registry_mut().is_some());
    let _routes: Router = stack.routes();
    assert!(stack.metrics_registry_mut().is_none());
    let mut off = Stack::new().metrics(None);
    assert!(off.metrics_registry_mut().is_none());
}
