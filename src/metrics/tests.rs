use std::convert::Infallible;
use std::future::pending;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use proptest::prelude::*;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

use super::*;
use crate::error::{Code, Problem, Renderer, ShadowRejection};
use crate::route::MatchedRoute;

fn text(registry: &Registry) -> String {
    let mut out = String::new();
    encode(&mut out, registry).unwrap();
    out
}

/// The value of the sample line starting with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l[prefix.len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Every line is a comment or `name{labels} value...` with no raw control
/// character, and the text ends with `# EOF`.
fn assert_well_formed(text: &str) {
    assert!(text.ends_with("# EOF\n"), "no EOF");
    for line in text.lines() {
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{line:?}"));
        assert!(
            line[..name_end]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{line:?}"
        );
    }
}

const DURATION_COUNT: &str = "http_server_request_duration_seconds_count";

fn count_of(text: &str, method: &str, route: &str, status: u16) -> Option<f64> {
    sample(
        text,
        &format!(
            "{DURATION_COUNT}{{http_request_method=\"{method}\",http_route=\"{route}\",http_response_status_code=\"{status}\"}}"
        ),
    )
}

/// A service answering 200 with `route` as its matched route (none when `None`).
fn routed(
    route: Option<MatchedRoute>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(move |_req: Request<Full<Bytes>>| {
        let route = route.clone();
        async move {
            let mut res = Response::new(Full::from("hello"));
            if let Some(r) = route {
                res.extensions_mut().insert(r);
            }
            Ok::<_, Infallible>(res)
        }
    })
}

async fn drive<S, B>(svc: S, req: Request<Full<Bytes>>) -> Response<Bytes>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let res = svc.oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::default()).unwrap()
}

#[tokio::test]
async fn records_route_status_sizes_and_gauge() {
    let mut registry = Registry::default();
    let layer = MetricsLayer::new(&mut registry);
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(routed(Some(MatchedRoute::from_static("/users/{id}"))));
    let req = Request::post("/users/1")
        .header("content-length", "4")
        .body(Full::from("abcd"))
        .unwrap();
    let res = drive(svc.clone(), req).await;
    assert_eq!(res.body(), "hello");
    drive(svc, get("/users/2")).await;
    let t = text(&registry);
    assert_well_formed(&t);
    assert_eq!(count_of(&t, "POST", "/users/{id}", 200), Some(1.0));
    assert_eq!(count_of(&t, "GET", "/users/{id}", 200), Some(1.0));
    let labels =
        r#"{http_request_method="POST",http_route="/users/{id}",http_response_status_code="200"}"#;
    assert_eq!(
        sample(
            &t,
            &format!("http_server_request_body_size_bytes_sum{labels}")
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &t,
            &format!("http_server_response_body_size_bytes_sum{labels}")
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &t,
            r#"http_server_active_requests{http_request_method="GET"}"#
        ),
        Some(0.0)
    );
    assert!(t.contains("# TYPE http_server_request_duration_seconds histogram"));
    assert!(t.contains("# UNIT http_server_request_duration_seconds seconds"));
    for le in ["0.005", "0.075", "7.5", "10.0", "+Inf"] {
        assert!(t.contains(&format!(
            "http_server_request_duration_seconds_bucket{{le=\"{le}\",http_request_method=\"GET\""
        )), "{le}");
    }
    assert_eq!(layer.series(), 2);
}

#[tokio::test]
async fn unmatched_paths_share_one_series() {
    use axum::{Router, routing::get as axum_get};
    let mut registry = Registry::default();
    let layer = MetricsLayer::builder()
        .max_series(100)
        .register(&mut registry);
    let app = Router::new()
        .route("/users/{id}", axum_get(|| async { "u" }))
        .layer(crate::route::CaptureRouteLayer::new())
        .layer(layer.clone());
    for i in 0..100_000u32 {
        let req = Request::get(format!("/scan/{i}/{}", i.wrapping_mul(2_654_435_761)))
            .body(axum::body::Body::empty())
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    let t = text(&registry);
    assert_eq!(count_of(&t, "GET", "unmatched", 404), Some(100_000.0));
    assert_eq!(layer.series(), 1);
    assert!(!t.contains("/scan/"));
}

#[tokio::test]
async fn cap_folds_new_label_sets_into_overflow() {
    let mut registry = Registry::default();
    let layer = MetricsLayer::builder()
        .max_series(10)
        .register(&mut registry);
    for i in 0..50 {
        // A new text per request, as a framework building templates at run time might.
        let svc = layer.layer(routed(Some(MatchedRoute::new(format!("/r{}", i % 25)))));
        drive(svc, get("/x")).await;
    }
    assert_eq!(layer.series(), 10);
    let t = text(&registry);
    assert_well_formed(&t);
    // 10 routes kept (2 requests each), 15 folded (2 requests each).
    assert_eq!(count_of(&t, "GET", "/r0", 200), Some(2.0));
    assert_eq!(count_of(&t, "_OTHER", OVERFLOW_ROUTE, 0), Some(30.0));
    assert_eq!(sample(&t, "http_server_series_overflow_total"), Some(30.0));
    let series = t.lines().filter(|l| l.starts_with(DURATION_COUNT)).count();
    assert_eq!(series, 11);
}

#[tokio::test]
async fn hostile_methods_and_routes_stay_valid() {
    let mut registry = Registry::default();
    let layer = MetricsLayer::new(&mut registry);
    let hostile = "/a\"b\\c\nd}{e=\"f\" # EOF\r\u{0}";
    let svc = layer.layer(routed(Some(MatchedRoute::new(hostile))));
    for m in ["get", "FOO|BAR~", "PROPFIND", "GET"] {
        let req = Request::builder()
            .method(Method::from_bytes(m.as_bytes()).unwrap())
            .uri("/x")
            .body(Full::default())
            .unwrap();
        drive(svc.clone(), req).await;
    }
    let t = text(&registry);
    assert_well_formed(&t);
    assert!(
        t.contains("http_route=\"/a\\\"b\\\\c\\nd}{e=\\\"f\\\" # EOF\u{FFFD}\u{FFFD}\""),
        "{t}"
    );
    assert_eq!(t.matches("# EOF\n").count(), 1);
    let other = t
        .lines()
        .find(|l| l.starts_with(DURATION_COUNT) && l.contains("_OTHER"))
        .unwrap();
    assert!(other.ends_with(" 3"), "{other}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tasks_share_a_series() {
    let mut registry = Registry::default();
    let layer = MetricsLayer::new(&mut registry);
    let svc = layer.layer(routed(Some(MatchedRoute::from_static("/hot"))));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..250 {
                drive(svc.clone(), get("/hot")).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let t = text(&registry);
    assert_eq!(count_of(&t, "GET", "/hot", 200), Some(8000.0));
    assert_eq!(
        sample(
            &t,
            r#"http_server_active_requests{http_request_method="GET"}"#
        ),
        Some(0.0)
    );
    assert_eq!(layer.series(), 1);
}

fn active(registry: &Registry, method: &str) -> f64 {
    sample(
        &text(registry),
        &format!("http_server_active_requests{{http_request_method=\"{method}\"}}"),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn aborted_requests_release_the_gauge() {
    let mut registry = Registry::default();
    let layer = MetricsLayer::new(&mut registry);

    // Dropped before any response (client gone, outer timeout).
    let never = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
        pending::<Result<Response<Full<Bytes>>, Infallible>>().await
    }));
    let fut = never.oneshot(get("/slow"));
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), fut).await;
    assert!(outcome.is_err());
    assert_eq!(active(&registry, "GET"), 0.0);

    // A response whose body is dropped before its end: recorded, gauge released.
    let streaming = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Stalled(Some(Bytes::from_static(b"abc")))))
    }));
    let res = streaming.oneshot(get("/stream")).await.unwrap();
    assert_eq!(active(&registry, "GET"), 1.0);
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "abc");
    drop(body);
    assert_eq!(active(&registry, "GET"), 0.0);
    let t = text(&registry);
    assert_eq!(count_of(&t, "GET", "unmatched", 200), Some(1.0));
    assert_eq!(
        sample(
            &t,
            r#"http_server_response_body_size_bytes_sum{http_request_method="GET",http_route="unmatched",http_response_status_code="200"}"#
        ),
        Some(3.0)
    );

    // A panic inside the inner service's future.
    let panicking = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
        if true {
            panic!("handler bug");
        }
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    }));
    let joined =
        tokio::spawn(panicking.oneshot(Request::delete("/x").body(Full::default()).unwrap())).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(active(&registry, "DELETE"), 0.0);

    // An inner error: gauge released, nothing recorded without a status.
    let failing = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
        Err::<Response<Full<Bytes>>, _>("boom")
    }));
    assert!(
        failing
            .oneshot(Request::put("/x").body(Full::default()).unwrap())
            .await
            .is_err()
    );
    assert_eq!(active(&registry, "PUT"), 0.0);
    assert!(!text(&registry).contains(r#"http_request_method="PUT",http_route"#));
}

/// A body that sends one frame, then waits forever.
struct Stalled(Option<Bytes>);

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        match self.0.take() {
            Some(d) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(d)))),
            None => std::task::Poll::Pending,
        }
    }
}

#[tokio::test]
async fn skipped_paths_are_not_measured() {
    let mut registry = Registry::default();
    let layer = MetricsLayer::builder()
        .skip_paths(["/health/*", "/metrics"])
        .register(&mut registry);
    let svc = layer.layer(routed(None));
    for p in ["/health/live", "/health/ready", "/metrics", "/metrics?x=1"] {
        drive(svc.clone(), get(p)).await;
    }
    assert_eq!(layer.series(), 0);
    drive(svc.clone(), get("/healthz")).await;
    assert_eq!(layer.series(), 1);
    drive(svc, get("/metrics/extra")).await;
    assert_eq!(layer.series(), 1, "same unmatched label set");
}

#[tokio::test]
async fn trace_exemplars_read_the_trace_context() {
    let mut registry = Registry::default();
    let layer = MetricsLayer::builder()
        .trace_exemplars()
        .register(&mut registry);
    let svc = layer.layer(routed(Some(MatchedRoute::from_static("/t"))));
    let mut req = get("/t");
    let id = crate::trace_context::TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    req.extensions_mut().insert(id);
    drive(svc.clone(), req).await;
    drive(svc, get("/t")).await;
    let t = text(&registry);
    assert_well_formed(&t);
    assert!(
        t.contains(r#" # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} "#),
        "{t}"
    );
    assert_eq!(count_of(&t, "GET", "/t", 200), Some(2.0));
}

#[tokio::test]
async fn exemplars_carry_trace_ids() {
    let mut registry = Registry::default();
    let layer = MetricsLayer::builder()
        .exemplar(|parts| {
            parts
                .headers
                .get("x-trace")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .register(&mut registry);
    let svc = layer.layer(routed(Some(MatchedRoute::from_static("/t"))));
    let req = |trace: &str| {
        Request::get("/t")
            .header("x-trace", trace)
            .body(Full::default())
            .unwrap()
    };
    drive(svc.clone(), req("4bf92f3577b34da6a3ce929d0e0e4736")).await;
    let t = text(&registry);
    assert!(
        t.contains(r#" # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} "#),
        "{t}"
    );
    // A hostile id is dropped, the observation kept.
    drive(svc.clone(), req("x\"} 1 # EOF")).await;
    let t = text(&registry);
    assert_well_formed(&t);
    assert!(!t.contains("EOF\""));
    assert_eq!(count_of(&t, "GET", "/t", 200), Some(2.0));

    // Fallback: the trace id of a Problem on the response.
    let problem = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(
            Renderer::default().response::<Full<Bytes>>(
                Problem::new(StatusCode::TOO_MANY_REQUESTS)
                    .trace_id("0af7651916cd43dd8448eb211c80319c")
                    .rejected_by("rate_limit"),
            ),
        )
    }));
    drive(problem, get("/p")).await;
    assert!(text(&registry).contains(r#"trace_id="0af7651916cd43dd8448eb211c80319c""#));
}

#[tokio::test]
async fn rejections_are_counted_by_layer_and_code() {
    let mut registry = Registry::default();
    let layer = MetricsLayer::new(&mut registry);
    let limited = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Renderer::default().response::<Full<Bytes>>(
            Problem::new(StatusCode::TOO_MANY_REQUESTS).rejected_by("rate_limit"),
        ))
    }));
    for _ in 0..3 {
        drive(limited.clone(), get("/a")).await;
    }
    let custom = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(
            Renderer::default().response::<Full<Bytes>>(
                Problem::new(StatusCode::BAD_REQUEST)
                    .code(Code::new(String::from("TENANT_\"X\"")))
                    .rejected_by("error"),
            ),
        )
    }));
    drive(custom, get("/b")).await;
    // A problem without `rejected_by` (made by the app) is not a rejection.
    let app_problem = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Renderer::default().response::<Full<Bytes>>(Problem::not_found()))
    }));
    drive(app_problem, get("/c")).await;
    let t = text(&registry);
    assert_well_formed(&t);
    assert_eq!(
        sample(
            &t,
            r#"http_server_rejections_total{rejected_by="rate_limit",code="RATE_LIMITED"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &t,
            r#"http_server_rejections_total{rejected_by="error",code="TENANT_\"X\""}"#
        ),
        Some(1.0)
    );
    assert_eq!(t.matches("http_server_rejections_total{").count(), 2);
    assert_eq!(count_of(&t, "GET", "unmatched", 429), Some(3.0));
}

/// A service answering `status`, with `mark` in its response extensions.
fn marked(
    status: StatusCode,
    mark: ShadowRejection,
) -> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
{
    service_fn(move |_req: Request<Full<Bytes>>| {
        let mark = mark.clone();
        async move {
            let mut res = Response::new(Full::from("served"));
            *res.status_mut() = status;
            res.extensions_mut().insert(mark);
            Ok::<_, Infallible>(res)
        }
    })
}

fn shadow_count(text: &str, rejected_by: &str, code: &str) -> Option<f64> {
    sample(
        text,
        &format!(
            "http_server_shadow_rejections_total{{rejected_by=\"{rejected_by}\",code=\"{code}\"}}"
        ),
    )
}

#[tokio::test]
async fn shadow_rejections_are_counted_by_layer_and_code_apart_from_rejections() {
    let mut registry = Registry::default();
    let layer = MetricsLayer::new(&mut registry);
    let shadowed = layer.layer(marked(
        StatusCode::OK,
        ShadowRejection::new("rate_limit", Code::RATE_LIMITED).policy("strict"),
    ));
    for _ in 0..4 {
        drive(shadowed.clone(), get("/a")).await;
    }
    let down = layer.layer(marked(
        StatusCode::OK,
        ShadowRejection::new("rate_limit", Code::SERVICE_UNAVAILABLE),
    ));
    drive(down, get("/b")).await;
    let hostile = layer.layer(marked(
        StatusCode::OK,
        ShadowRejection::new("load\n\"shed\"", Code::new(String::from("A\u{0}B"))),
    ));
    drive(hostile, get("/c")).await;
    let t = text(&registry);
    assert_well_formed(&t);
    assert!(t.contains("# TYPE http_server_shadow_rejections counter\n"));
    assert_eq!(shadow_count(&t, "rate_limit", "RATE_LIMITED"), Some(4.0));
    assert_eq!(
        shadow_count(&t, "rate_limit", "SERVICE_UNAVAILABLE"),
        Some(1.0)
    );
    assert_eq!(
        shadow_count(&t, "load\\n\\\"shed\\\"", "A\u{FFFD}B"),
        Some(1.0),
        "{t}"
    );
    assert_eq!(t.matches("http_server_shadow_rejections_total{").count(), 3);
    // Served requests: no rejection is counted, and they keep their status.
    assert!(!t.contains("http_server_rejections_total{"), "{t}");
    assert_eq!(count_of(&t, "GET", "unmatched", 200), Some(6.0));
    assert_eq!(layer.series(), 4, "one duration series, three shadow ones");
}

#[tokio::test]
async fn a_response_with_a_problem_and_a_shadow_mark_counts_once_in_each() {
    let mut registry = Registry::default();
    let layer = MetricsLayer::new(&mut registry);
    // An inner layer refused a request that an outer limit in shadow mode let in.
    let svc = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
        let mut res = Renderer::default().response::<Full<Bytes>>(
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
                .code(Code::PAYLOAD_TOO_LARGE)
                .rejected_by("body_limit"),
        );
        res.extensions_mut()
            .insert(ShadowRejection::new("rate_limit", Code::RATE_LIMITED));
        Ok::<_, Infallible>(res)
    }));
    drive(svc, get("/upload")).await;
    let t = text(&registry);
    assert_eq!(
        sample(
            &t,
            r#"http_server_rejections_total{rejected_by="body_limit",code="PAYLOAD_TOO_LARGE"}"#
        ),
        Some(1.0)
    );
    assert_eq!(shadow_count(&t, "rate_limit", "RATE_LIMITED"), Some(1.0));
    assert_eq!(t.matches("_rejections_total{").count(), 2);
}

#[tokio::test]
async fn shadow_label_sets_share_the_series_cap() {
    let mut registry = Registry::default();
    let layer = MetricsLayer::builder()
        .max_series(3)
        .register(&mut registry);
    for i in 0..20 {
        let code = Code::new(format!("CODE_{i}"));
        let svc = layer.layer(marked(
            StatusCode::OK,
            ShadowRejection::new("rate_limit", code),
        ));
        drive(svc, get("/")).await;
    }
    assert_eq!(layer.series(), 3);
    let t = text(&registry);
    assert_well_formed(&t);
    // One duration series and two shadow label sets kept; 18 folded.
    assert_eq!(t.matches("http_server_shadow_rejections_total{").count(), 3);
    assert_eq!(shadow_count(&t, "rate_limit", "CODE_1"), Some(1.0));
    assert_eq!(shadow_count(&t, "_overflow", "_OTHER"), Some(18.0));
    assert_eq!(shadow_count(&t, "rate_limit", "CODE_2"), None);
    assert_eq!(sample(&t, "http_server_series_overflow_total"), Some(18.0));
}

#[tokio::test]
async fn independent_instances() {
    let mut a = Registry::default();
    let mut b = Registry::default();
    let la = MetricsLayer::new(&mut a);
    let lb = MetricsLayer::builder()
        .duration_buckets([1.0, f64::NAN, 0.5, 1.0])
        .unmatched_route("")
        .register(&mut b);
    drive(la.layer(routed(None)), get("/")).await;
    drive(lb.layer(routed(None)), get("/")).await;
    drive(lb.layer(routed(None)), get("/")).await;
    assert_eq!(count_of(&text(&a), "GET", "unmatched", 200), Some(1.0));
    let tb = text(&b);
    assert_eq!(count_of(&tb, "GET", "", 200), Some(2.0));
    let buckets = tb
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds_bucket"))
        .count();
    assert_eq!(buckets, 3, "0.5, 1.0 and +Inf");
}

fn exporter_request(method: Method, auth: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = Request::builder().method(method).uri("/metrics");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.body(Full::default()).unwrap()
}

#[tokio::test]
async fn exporter_tokens_and_methods() {
    let (_layer, registry) = MetricsLayer::builder().build();
    let exporter = MetricsExporter::new(registry).bearer_token("t0ken");
    for (auth, ok) in [
        (Some("Bearer t0ken"), true),
        (Some("bEaReR t0ken"), true),
        (Some("Bearer T0KEN"), false),
        (Some("Bearer t0ke"), false),
        (Some("Basic dDBrZW4="), false),
        (Some("t0ken"), false),
        (None, false),
    ] {
        let res = drive(exporter.clone(), exporter_request(Method::GET, auth)).await;
        if ok {
            assert_eq!(res.status(), StatusCode::OK, "{auth:?}");
            assert_eq!(res.headers()["content-type"], OPENMETRICS_CONTENT_TYPE);
            let body = std::str::from_utf8(res.body()).unwrap();
            assert_well_formed(body);
            #[cfg(target_os = "linux")]
            assert!(body.contains("process_cpu_seconds_total "), "{body}");
        } else {
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(res.headers()["www-authenticate"], "Bearer");
            assert_eq!(res.headers()["content-type"], "application/problem+json");
            let json: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
            assert_eq!(json["code"], "UNAUTHORIZED");
            let p = res.extensions().get::<Problem>().unwrap();
            assert_eq!(p.get_rejected_by(), Some("metrics"));
        }
    }
    let res = drive(
        exporter.clone(),
        exporter_request(Method::POST, Some("Bearer t0ken")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
    let res = drive(
        exporter,
        exporter_request(Method::HEAD, Some("Bearer t0ken")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.body().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_route_and_method_keep_exposition_valid_and_bounded(
        routes in proptest::collection::vec(any::<String>(), 1..40),
        methods in proptest::collection::vec("[A-Za-z!#$%&'*+.^_`|~-]{1,12}", 1..6),
        cap in 1usize..20,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut registry = Registry::default();
        let layer = MetricsLayer::builder().max_series(cap).register(&mut registry);
        rt.block_on(async {
            for (i, route) in routes.iter().enumerate() {
                let svc = layer.layer(routed(Some(MatchedRoute::new(route.as_str()))));
                let m = Method::from_bytes(methods[i % methods.len()].as_bytes()).unwrap();
                let req = Request::builder().method(m).uri("/").body(Full::default()).unwrap();
                drive(svc, req).await;
            }
        });
        let t = text(&registry);
        assert_well_formed(&t);
        prop_assert!(layer.series() <= cap);
        let series = t.lines().filter(|l| l.starts_with(DURATION_COUNT)).count();
        prop_assert!(series <= cap + 1);
        let total: f64 = t
            .lines()
            .filter(|l| l.starts_with(DURATION_COUNT))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        prop_assert_eq!(total, routes.len() as f64);
    }
}
