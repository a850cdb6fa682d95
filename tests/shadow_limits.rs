//! Rate limits in shadow mode over a real loopback socket: requests over a shadow
//! limit are served as usual, carry no rate-limit header, and are counted in
//! `http_server_shadow_rejections_total` (and written on the request log line),
//! while enforced limits beside them refuse as before. `RATE_LIMIT_MODE` is read
//! in a child process; the Redis backend runs against a real `redis-server`.
#![cfg(all(feature = "rate-limit", feature = "metrics", feature = "axum"))]

#[path = "common/capture.rs"]
mod capture;
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::{RawResponse, get as http_get, serve};
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::metrics::{MetricsExporter, MetricsLayer};
use tower_ops::rate_limit::{Mode, Policy, Quota, RateLimitLayer};
use tower_ops::route::CaptureRouteLayer;

const SHADOW_LIMITED: &str =
    r#"http_server_shadow_rejections_total{rejected_by="rate_limit",code="RATE_LIMITED"}"#;
const LIMITED: &str =
    r#"http_server_rejections_total{rejected_by="rate_limit",code="RATE_LIMITED"}"#;

/// `/` and `/health/live` behind `limits` (whose state the caller's handle
/// shares), the metrics layer outside them and `/metrics` beside them, in the
/// canonical order.
fn app(limits: RateLimitLayer) -> Router {
    let (metrics, registry) = MetricsLayer::builder().skip_paths(["/metrics"]).build();
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/health/live", get(|| async { "alive" }))
        .layer(limits.for_axum())
        .layer(CaptureRouteLayer::new())
        .merge(MetricsExporter::new(registry).into_router())
        .layer(metrics)
        .layer(ClientIpLayer::new())
}

async fn scrape(addr: SocketAddr) -> String {
    let res = http_get(addr, "/metrics", "").await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("content-type"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    res.text()
}

/// The value of the sample `series` (name and labels) in an exposition.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

/// The rate-limit fields of a response.
fn limit_headers(res: &RawResponse) -> Vec<String> {
    res.headers
        .iter()
        .filter(|(n, _)| n.contains("ratelimit") || n == "retry-after")
        .map(|(n, v)| format!("{n}: {v}"))
        .collect()
}

async fn statuses(addr: SocketAddr, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(http_get(addr, "/", "").await.status);
    }
    out
}

#[tokio::test]
async fn a_shadow_limit_serves_everyone_and_counts_whom_it_would_refuse() {
    let limits = RateLimitLayer::with_quota(Quota::per_minute(2))
        .mode(Mode::Shadow)
        .skip_paths(["/health/*"]);
    let addr = serve(app(limits.clone())).await;
    for _ in 0..6 {
        let res = http_get(addr, "/", "").await;
        assert_eq!(res.status, 200);
        assert_eq!(res.text(), "hello");
        assert_eq!(limit_headers(&res), Vec::<String>::new());
    }
    // Probes are skipped: never checked, never marked.
    for _ in 0..3 {
        assert_eq!(http_get(addr, "/health/live", "").await.status, 200);
    }
    let text = scrape(addr).await;
    assert_eq!(value(&text, SHADOW_LIMITED), Some(4.0), "{text}");
    assert!(text.contains("# TYPE http_server_shadow_rejections counter\n"));
    assert!(!text.contains("http_server_rejections_total{"), "{text}");
    let served = r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/",http_response_status_code="200"}"#;
    assert_eq!(value(&text, served), Some(6.0), "{text}");
    assert_eq!(limits.len(), 1, "one client, probes never tracked");
}

#[tokio::test]
async fn enforced_limits_still_refuse_beside_shadow_ones() {
    let addr = serve(app(RateLimitLayer::new()
        .policy(Policy::new("trial", Quota::per_minute(1)).mode(Mode::Shadow))
        .policy(Policy::new("default", Quota::per_minute(3)))))
    .await;
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(http_get(addr, "/", "").await);
    }
    let codes: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    for res in &answers[..3] {
        assert_eq!(res.header("ratelimit-policy"), "\"default\";q=3;w=60");
        assert!(res.first("retry-after").is_none());
    }
    for res in &answers[3..] {
        assert_eq!(res.header("content-type"), "application/problem+json");
        assert_eq!(res.json()["code"], "RATE_LIMITED");
        assert_eq!(res.header("ratelimit-policy"), "\"default\";q=3;w=60");
        let retry: u64 = res.header("retry-after").parse().unwrap();
        assert!((1..=20).contains(&retry), "{retry}");
    }
    let text = scrape(addr).await;
    // Served over the trial's limit: the second and third; refused: the rest.
    assert_eq!(value(&text, SHADOW_LIMITED), Some(2.0), "{text}");
    assert_eq!(value(&text, LIMITED), Some(2.0), "{text}");
}

#[tokio::test]
#[ignore = "needs python3 prometheus_client"]
async fn strict_openmetrics_parser_reads_the_shadow_counter() {
    const CHECK: &str = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
text = open(sys.argv[1], encoding="utf-8").read()
families = {f.name: f for f in text_string_to_metric_families(text)}
shadow = families["http_server_shadow_rejections"]
assert shadow.type == "counter", shadow.type
samples = {(s.name, s.labels["rejected_by"], s.labels["code"]): s.value for s in shadow.samples}
assert samples[("http_server_shadow_rejections_total", "rate_limit", "RATE_LIMITED")] == 4, samples
enforced = families["http_server_rejections"]
assert enforced.type == "counter", enforced.type
print("shadow counter ok")
"#;
    let addr = serve(app(RateLimitLayer::new()
        .policy(Policy::new("default", Quota::per_minute(1)).mode(Mode::Shadow))
        .policy(Policy::new("enforced", Quota::per_minute(5)))))
    .await;
    assert_eq!(statuses(addr, 6).await, [200, 200, 200, 200, 200, 429]);
    let text = scrape(addr).await;
    assert!(common::python_check(CHECK, text.as_bytes()).contains("shadow counter ok"));
}

#[test]
fn rate_limit_mode_is_read_from_the_environment() {
    // Edition 2024 makes `set_var` unsafe and the crate forbids unsafe code, so
    // each reading runs in a child process that inherits the variables.
    let cases: [(&[(&str, &str)], &str); 7] = [
        (&[], "enforce"),
        (&[("RATE_LIMIT_MODE", "enforce")], "enforce"),
        (&[("RATE_LIMIT_MODE", "shadow")], "shadow"),
        (&[("RATE_LIMIT_MODE", " Shadow ")], "shadow"),
        (
            &[("RATE_LIMIT_MODE", "dry-run")],
            "error RATE_LIMIT_MODE=\"dry-run\": expected enforce or shadow",
        ),
        (
            &[("RATE_LIMIT_MODE", "on")],
            "error RATE_LIMIT_MODE=\"on\": expected enforce or shadow",
        ),
        (
            &[
                ("RATE_LIMIT_MODE", "observe"),
                ("RATE_LIMIT_FAILURE_MODE", "maybe"),
            ],
            "error RATE_LIMIT_MODE=\"observe\": expected enforce or shadow\n\
             RATE_LIMIT_FAILURE_MODE=\"maybe\"",
        ),
    ];
    for (vars, expect) in cases {
        let mut vars = vars.to_vec();
        vars.push(("RATE_LIMIT_MAX_REQUESTS", "2"));
        vars.push(("EXPECT_RATE_LIMIT_MODE", expect));
        assert!(common::child_with_env("env_child", &vars), "{vars:?}");
    }
}

#[test]
#[ignore = "entry point of rate_limit_mode_is_read_from_the_environment, run in a child process"]
fn env_child() {
    let Ok(expect) = std::env::var("EXPECT_RATE_LIMIT_MODE") else {
        return;
    };
    if let Some(messages) = expect.strip_prefix("error ") {
        let error = RateLimitLayer::from_env()
            .expect_err("an invalid value is an error")
            .to_string();
        for message in messages.split('\n') {
            assert!(error.contains(message.trim()), "{message:?} in {error}");
        }
        let error = Mode::from_env()
            .expect_err("the same from Mode")
            .to_string();
        assert!(error.contains("RATE_LIMIT_MODE"), "{error}");
        return;
    }
    let shadow = expect == "shadow";
    assert_eq!(
        Mode::from_env().unwrap(),
        if shadow { Mode::Shadow } else { Mode::Enforce }
    );
    let layer = RateLimitLayer::from_env().unwrap();
    // The mode reaches the default policy of 2 per minute.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let addr = serve(app(layer)).await;
            let codes = statuses(addr, 4).await;
            let text = scrape(addr).await;
            if shadow {
                assert_eq!(codes, [200, 200, 200, 200]);
                assert_eq!(value(&text, SHADOW_LIMITED), Some(2.0), "{text}");
                assert_eq!(value(&text, LIMITED), None, "{text}");
            } else {
                assert_eq!(codes, [200, 200, 429, 429]);
                assert_eq!(value(&text, SHADOW_LIMITED), None, "{text}");
                assert_eq!(value(&text, LIMITED), Some(2.0), "{text}");
            }
        });
}

#[cfg(feature = "redis")]
#[path = "support/redis.rs"]
mod redis_server;

/// Three instances share a shadow limit through Redis: together they serve every
/// request and mark those past the shared quota; with Redis gone, `local`
/// marks by the in-process limiter, `open` marks nothing, and `closed` marks
/// every request with the 503 it would have answered.
#[cfg(feature = "redis")]
#[tokio::test]
#[ignore = "needs redis-server"]
async fn a_shadow_limit_shared_through_redis_and_its_failure_modes() {
    use tower_ops::rate_limit::{FailureMode, RedisBackend};

    let mut redis = redis_server::Redis::start();
    let instance = |mode: FailureMode| {
        let layer = RateLimitLayer::with_quota(Quota::per_hour(3))
            .mode(Mode::Shadow)
            .backend(RedisBackend::new(&redis.url()).unwrap())
            .failure_mode(mode)
            .backend_timeout(Duration::from_millis(500))
            .circuit_breaker(1, Duration::from_secs(3600));
        (layer.clone(), app(layer))
    };
    let (a, a_app) = instance(FailureMode::Local);
    let (b, b_app) = instance(FailureMode::Open);
    let (c, c_app) = instance(FailureMode::Closed);
    let (a_addr, b_addr, c_addr) = (serve(a_app).await, serve(b_app).await, serve(c_app).await);
    let addrs = [a_addr, b_addr, c_addr];
    for i in 0..9 {
        let res = http_get(addrs[i % 3], "/", "").await;
        assert_eq!(res.status, 200, "request {i}");
        assert_eq!(limit_headers(&res), Vec::<String>::new());
    }
    let mut marked = 0.0;
    for addr in addrs {
        let text = scrape(addr).await;
        marked += value(&text, SHADOW_LIMITED).unwrap_or(0.0);
        assert!(!text.contains("http_server_rejections_total{"), "{text}");
    }
    assert_eq!(marked, 6.0, "3 of 9 fit the shared quota");
    for layer in [&a, &b, &c] {
        assert_eq!(layer.fallbacks(), 0);
        assert!(layer.is_empty(), "nothing was tracked in process");
    }

    redis.kill();
    for addr in addrs {
        assert_eq!(statuses(addr, 5).await, [200; 5]);
    }
    let (a_text, b_text, c_text) = (
        scrape(a_addr).await,
        scrape(b_addr).await,
        scrape(c_addr).await,
    );
    // Each instance had marked 2 (requests 3 to 8, round robin).
    // Local: the in-process limiter stands in with the same quota: 3 fit, 2 marked.
    assert_eq!(value(&a_text, SHADOW_LIMITED), Some(4.0), "{a_text}");
    assert!(!a.is_empty());
    // Open: no check, no mark.
    assert_eq!(value(&b_text, SHADOW_LIMITED), Some(2.0), "{b_text}");
    // Closed: every request marked with the answer it would have had.
    assert_eq!(value(&c_text, SHADOW_LIMITED), Some(2.0), "{c_text}");
    let unavailable = r#"http_server_shadow_rejections_total{rejected_by="rate_limit",code="SERVICE_UNAVAILABLE"}"#;
    assert_eq!(value(&c_text, unavailable), Some(5.0), "{c_text}");
    for (layer, text) in [(&a, &a_text), (&b, &b_text), (&c, &c_text)] {
        assert!(layer.fallbacks() >= 5, "{}", layer.fallbacks());
        assert!(!text.contains("http_server_rejections_total{"), "{text}");
    }
}

/// The request log line of a request over a shadow limit names the layer and
/// the policy; the request is logged as served.
#[tokio::test]
async fn the_log_line_names_the_shadow_limit_and_its_policy() {
    use tower::ServiceBuilder;
    use tower_ops::log::{JsonLayer, RequestLogLayer};
    use tracing_subscriber::layer::SubscriberExt;

    let cap = capture::Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(JsonLayer::new(cap.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);
    let limits = RateLimitLayer::new()
        .policy(Policy::new("trial", Quota::per_minute(1)).mode(Mode::Shadow))
        .policy(Policy::new("default", Quota::per_minute(10)));
    let stack = ServiceBuilder::new()
        .layer(ClientIpLayer::new())
        .layer(RequestLogLayer::new());
    let addr = serve(app(limits).layer(stack)).await;
    assert_eq!(statuses(addr, 2).await, [200, 200]);
    let lines = cap.wait_for(2).await;
    assert_eq!(lines[0]["status"], 200);
    assert!(lines[0].get("shadow_rejected_by").is_none(), "{}", lines[0]);
    assert!(lines[0].get("shadow_policy").is_none(), "{}", lines[0]);
    assert_eq!(lines[1]["status"], 200);
    assert_eq!(lines[1]["shadow_rejected_by"], "rate_limit", "{}", lines[1]);
    assert_eq!(lines[1]["shadow_policy"], "trial", "{}", lines[1]);
    assert!(lines[1].get("rejected_by").is_none(), "{}", lines[1]);
    assert!(lines[1].get("code").is_none(), "{}", lines[1]);
}
