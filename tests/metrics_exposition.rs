//! A real exposition, exemplars and hostile label values included, checked by a
//! strict OpenMetrics parser (Python `prometheus_client`).
#![cfg(feature = "metrics")]

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};
use tower_ops::error::{Code, Problem, Renderer};
use tower_ops::metrics::{MetricsExporter, MetricsLayer};
use tower_ops::route::MatchedRoute;

const CHECK: &str = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
text = open(sys.argv[1], encoding="utf-8").read()
families = {f.name: f for f in text_string_to_metric_families(text)}
d = families["http_server_request_duration_seconds"]
assert d.type == "histogram", d.type
assert d.unit == "seconds", d.unit
exemplars = [s.exemplar for s in d.samples if s.exemplar is not None]
assert any(e.labels["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736" for e in exemplars), exemplars
routes = {s.labels.get("http_route") for s in d.samples}
assert '/a"b\\c\nd' in routes, routes
assert "unmatched" in routes and "_overflow" in routes, routes
assert families["http_server_rejections"].type == "counter"
assert families["http_server_active_requests"].type == "gauge"
assert families["http_server_request_body_size_bytes"].unit == "bytes"
assert families["http_server_response_body_size_bytes"].type == "histogram"
assert families["http_server_series_overflow"].type == "counter"
if sys.platform.startswith("linux"):
    assert families["process_cpu_seconds"].type == "counter"
    assert families["process_start_time_seconds"].unit == "seconds"
print(len(families), "families ok")
"#;

async fn call(layer: &MetricsLayer, route: Option<&str>, method: &[u8], trace: Option<&str>) {
    let path = if route.is_none() { "/limited" } else { "/x" };
    let route = route.map(MatchedRoute::new);
    let svc = layer.layer(service_fn(move |req: Request<Full<Bytes>>| {
        let route = route.clone();
        async move {
            let mut res = if req.uri().path() == "/limited" {
                Renderer::default().response::<Full<Bytes>>(
                    Problem::new(StatusCode::TOO_MANY_REQUESTS)
                        .code(Code::new("WEIRD \"CODE\"\n\\".to_owned()))
                        .rejected_by("rate_limit"),
                )
            } else {
                Response::new(tower_ops::body::ResponseBody::inner(Full::from("body")))
            };
            if let Some(r) = route {
                res.extensions_mut().insert(r);
            }
            Ok::<_, Infallible>(res)
        }
    }));
    let mut req = Request::builder()
        .method(Method::from_bytes(method).unwrap())
        .uri(path);
    if let Some(t) = trace {
        req = req.header("x-trace", t);
    }
    let res = svc
        .oneshot(req.body(Full::from("payload")).unwrap())
        .await
        .unwrap();
    res.into_body().collect().await.unwrap();
}

#[tokio::test]
#[ignore = "needs python3 prometheus_client"]
async fn strict_openmetrics_parser_accepts_the_exposition() {
    let (layer, registry) = MetricsLayer::builder()
        .max_series(6)
        .exemplar(|parts| {
            parts
                .headers
                .get("x-trace")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .build();
    call(
        &layer,
        Some("/users/{id}"),
        b"GET",
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
    )
    .await;
    call(&layer, Some("/a\"b\\c\nd"), b"POST", Some("bad\"id")).await;
    call(&layer, Some("/z\r\u{0}\u{7f}"), b"M~|", None).await;
    call(
        &layer,
        None,
        b"GET",
        Some("0af7651916cd43dd8448eb211c80319c"),
    )
    .await;
    for i in 0..10 {
        let route = format!("/many/{i}");
        call(&layer, Some(&route), b"PUT", None).await;
    }

    let exporter = MetricsExporter::new(registry);
    let res = exporter
        .oneshot(
            Request::get("/metrics")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert!(common::python_check(CHECK, &text).contains("families ok"));
}
