//! The canonical stack as one value, over a real loopback socket.
#![cfg(all(feature = "axum", feature = "metrics", feature = "rate-limit"))]

#[path = "common/capture.rs"]
mod capture;
mod common;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use capture::Capture;
use common::{get as http_get, raw, serve};
use tower_ops::admin::AdminRoutes;
use tower_ops::body_limit::BodyLimitLayer;
use tower_ops::client_ip::ClientIp;
use tower_ops::log::{JsonLayer, LogFilterLayer};
use tower_ops::paths::PathSet;
use tower_ops::rate_limit::{KeyBy, Policy, Quota, RateLimitLayer};
use tower_ops::route::CaptureRouteLayer;
use tower_ops::stack::Stack;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test]
async fn one_value_applies_every_layer() {
    // A subscriber of its own: the request lines' callsites are shared with the
    // other tests of this binary, and one first reached on a thread without any
    // subscriber could be cached as disabled for the tests that capture lines.
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(JsonLayer::new(std::io::sink)),
    );
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct UserId(u64);

/// An application's authentication in the stack's slot: `Bearer user-<id>`
/// inserts the user, `Bearer revoked` is refused here, anything else goes on
/// without a user. Every answer says which client address and request id the
/// slot saw.
async fn authenticate(mut request: Request, next: Next) -> Response {
    let seen = format!(
        "{} {}",
        request
            .extensions()
            .get::<ClientIp>()
            .map_or("none".to_owned(), |c| c.ip().to_string()),
        tower_ops::request_id::current().map_or("none".to_owned(), |id| id.to_string()),
    );
    let credentials = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut response = if credentials.as_deref() == Some("Bearer revoked") {
        let challenge = [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")];
        (StatusCode::UNAUTHORIZED, challenge, "revoked").into_response()
    } else {
        let user = credentials
            .as_deref()
            .and_then(|v| v.strip_prefix("Bearer user-"))
            .and_then(|id| id.parse().ok());
        if let Some(id) = user {
            request.extensions_mut().insert(UserId(id));
        }
        next.run(request).await
    };
    response
        .headers_mut()
        .insert("x-auth-saw", seen.parse().unwrap());
    response
}

/// The case: a `user` policy of 5 a minute in a whole stack, with the
/// authentication in its slot.
#[tokio::test]
async fn auth_slot_lets_per_user_limits_count_and_keeps_its_answers_observed() {
    let cap = Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(JsonLayer::new(cap.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);
    let limits = RateLimitLayer::with_quota(Quota::per_minute(100))
        .skip_paths(PathSet::probes())
        .policy(
            Policy::new("user", Quota::per_minute(5))
                .paths(["/me"])
                .key(KeyBy::extension::<UserId>())
                .warn_missing_key_after(3),
        );
    let stack = Stack::new()
        .rate_limit(Some(limits))
        .auth(from_fn(authenticate))
        .for_axum();
    let app = Router::new()
        .route("/me", get(|| async { "me" }))
        .merge(stack.routes())
        .layer(CaptureRouteLayer::new())
        .layer(stack);
    let addr = serve(app).await;
    let as_user = |id: u64| format!("authorization: Bearer user-{id}\r\n");

    // 8 requests: 5 pass, 3 are refused by the user policy.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let r = http_get(addr, "/me", &as_user(42)).await;
        statuses.push(r.status);
        assert_eq!(
            r.header("ratelimit-policy"),
            "\"user\";q=5;w=60",
            "request {i}"
        );
        if r.status == 429 {
            assert_eq!(r.json()["code"], "RATE_LIMITED");
            assert!(r.header("retry-after").parse::<u64>().unwrap() >= 1);
        }
        // The slot runs inside the client IP and request id layers.
        let saw = r.header("x-auth-saw");
        assert!(
            saw.starts_with("127.0.0.1 ") && saw.ends_with(r.header("x-request-id")),
            "{saw}"
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    let other = http_get(addr, "/me", &as_user(43)).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("ratelimit"), "\"user\";r=4;t=12");

    // The slot's own refusal: enveloped, with the id and the challenge kept; the
    // limiter never saw it, so it carries no rate-limit fields.
    let refused = http_get(
        addr,
        "/me",
        "authorization: Bearer revoked\r\nx-request-id: auth-1\r\n",
    )
    .await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("content-type"), "application/problem+json");
    assert_eq!(refused.json()["code"], "UNAUTHORIZED");
    assert_eq!(refused.json()["request_id"], "auth-1");
    assert_eq!(refused.header("x-request-id"), "auth-1");
    assert_eq!(
        refused.header("www-authenticate"),
        "Bearer error=\"invalid_token\""
    );
    assert!(refused.first("ratelimit").is_none());

    // Unmatched paths are still limited per IP: the limiter is outside the router.
    let missing = http_get(addr, "/nowhere", &as_user(42)).await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.header("ratelimit").starts_with("\"default\";r="),
        "{missing:?}"
    );

    // Logged and measured like every other request.
    let lines = cap.wait_for(11).await;
    let refused_line = lines.iter().find(|l| l["request_id"] == "auth-1").unwrap();
    assert_eq!(refused_line["status"], 401);
    assert_eq!(refused_line["code"], "UNAUTHORIZED");
    assert_eq!(refused_line["level"], "WARN");
    let limited = lines
        .iter()
        .filter(|l| l["rejected_by"] == "rate_limit")
        .count();
    assert_eq!(limited, 3);
    let metrics = http_get(addr, "/metrics", "").await.text();
    assert!(
        metrics.contains(
            "http_server_rejections_total{rejected_by=\"rate_limit\",code=\"RATE_LIMITED\"} 3"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("http_route=\"/me\",http_response_status_code=\"401\"} 1"),
        "{metrics}"
    );
    // The policy found its key: no warning.
    assert!(!cap.text().contains("found no key"), "{}", cap.text());
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
        ("CONCURRENCY_LIMIT", "many"),
        ("RATE_LIMIT_MAX_REQUESTS", "lots"),
        ("RATE_LIMIT_FAILURE_MODE", "maybe"),
        ("BODY_LIMIT_BYTES", "1MB"),
        ("HEALTH_CHECK_TIMEOUT_MS", "fast"),
        ("SHUTDOWN_TIMEOUT_MS", "later"),
        ("OTEL_PROPAGATORS", "b3"),
        ("LOG_SAMPLE_RATE", "often"),
        ("RATE_LIMIT_MODE", "dry-run"),
        ("ADMIN_TOKEN", "tiny-secret"),
    ];
    assert!(common::child_with_env("env_child", &bad));
    assert!(common::child_with_env(
        "env_child",
        &[
            ("BODY_LIMIT_BYTES", "2048"),
            ("ERROR_FORMAT", "wrapped"),
            ("CONCURRENCY_LIMIT", "adaptive"),
            ("LOG_SAMPLE_RATE", "0.5"),
            ("RATE_LIMIT_MODE", "shadow"),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
        ]
    ));
}

const ADMIN_TOKEN: &str = "stack-admin-token-0123456789";

#[test]
#[ignore = "entry point of from_env_lists_every_problem, run in a child process"]
fn env_child() {
    let Ok(body_limit) = std::env::var("BODY_LIMIT_BYTES") else {
        return;
    };
    let result = Stack::from_env();
    if body_limit == "2048" {
        let stack = result.unwrap_or_else(|e| panic!("{e}"));
        // ADMIN_TOKEN mounts the admin routes next to the probes.
        let app: Router = stack.routes();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let status = |auth: Option<&str>| {
            let mut request = Request::get("/admin/log-level");
            if let Some(token) = auth {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            let request = request.body(axum::body::Body::empty()).unwrap();
            rt.block_on(tower::ServiceExt::oneshot(app.clone(), request))
                .unwrap()
                .status()
        };
        assert_eq!(status(None), StatusCode::UNAUTHORIZED);
        // No log filter is installed in this process: the route says so.
        assert_eq!(status(Some(ADMIN_TOKEN)), StatusCode::SERVICE_UNAVAILABLE);
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
        "CONCURRENCY_LIMIT",
        "RATE_LIMIT_MAX_REQUESTS",
        "RATE_LIMIT_FAILURE_MODE",
        "BODY_LIMIT_BYTES",
        "HEALTH_CHECK_TIMEOUT_MS",
        "SHUTDOWN_TIMEOUT_MS",
        "LOG_SAMPLE_RATE",
        "RATE_LIMIT_MODE",
        "ADMIN_TOKEN",
    ] {
        assert!(vars.iter().any(|v| v == var), "{var} missing from: {text}");
    }
    assert!(
        !text.contains("tiny-secret"),
        "the admin token was shown: {text}"
    );
    assert_eq!(
        vars.iter().any(|v| v == "OTEL_PROPAGATORS"),
        cfg!(feature = "otel"),
        "{text}"
    );
}

#[tokio::test]
async fn admin_routes_are_served_only_when_set() {
    let filter = LogFilterLayer::new("info").unwrap();
    let admin = AdminRoutes::new(ADMIN_TOKEN).filter(filter.handle());
    let with: Router = Stack::new().admin(Some(admin)).routes();
    let without: Router = Stack::new().routes();
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    let with = serve(with).await;
    let answer = http_get(with, "/admin/log-level", &auth).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["filter"], "info");
    assert_eq!(http_get(with, "/admin/log-level", "").await.status, 401);
    let without = serve(without).await;
    assert_eq!(
        http_get(without, "/admin/log-level", &auth).await.status,
        404
    );
    assert_eq!(http_get(without, "/health/live", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shed_requests_are_enveloped_counted_and_the_limit_is_a_gauge() {
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(JsonLayer::new(std::io::sink)),
    );
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let held = gate.clone();
    let load_shed = tower_ops::load_shed::ConcurrencyLimitLayer::fixed(1);
    let stack = Stack::new().load_shed(load_shed.clone()).for_axum();
    let app = Router::new()
        .route(
            "/slow",
            get(move || {
                let gate = held.clone();
                async move {
                    let _permit = gate.acquire().await.unwrap();
                    "done"
                }
            }),
        )
        .merge(stack.routes())
        .layer(CaptureRouteLayer::new())
        .layer(stack);
    let addr = serve(app).await;

    let slow = tokio::spawn(async move { http_get(addr, "/slow", "").await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while load_shed.in_flight() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow request never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let shed = http_get(addr, "/slow", "x-request-id: shed-1\r\n").await;
    assert_eq!(shed.status, 503, "{}", shed.text());
    assert_eq!(shed.header("retry-after"), "1");
    assert_eq!(shed.header("x-request-id"), "shed-1");
    let problem = shed.json();
    assert_eq!(problem["code"], "OVERLOADED", "{problem}");
    assert_eq!(problem["request_id"], "shed-1", "{problem}");
    // The metrics exporter is a probe path: it answers while the limit is full.
    let metrics = http_get(addr, "/metrics", "").await.text();
    assert!(
        metrics.contains("http_server_concurrency_limit 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "http_server_rejections_total{rejected_by=\"load_shed\",code=\"OVERLOADED\"} 1"
        ),
        "{metrics}"
    );
    gate.add_permits(1);
    assert_eq!(slow.await.unwrap().status, 200);
}
