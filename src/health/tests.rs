use crate::BoxError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;

use super::*;

async fn call(
    registry: &HealthRegistry,
    method: Method,
    path: &str,
    auth: Option<&str>,
) -> (StatusCode, http::HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let response = registry
        .service()
        .oneshot(req.body(Full::<Bytes>::default()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

async fn get(registry: &HealthRegistry, path: &str) -> (StatusCode, serde_json::Value) {
    let (status, headers, body) = call(registry, Method::GET, path, None).await;
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    (status, serde_json::from_str(&body).expect("valid JSON"))
}

type Fixed = FnCheck<Box<dyn Fn() -> std::future::Ready<Result<(), BoxError>> + Send + Sync>>;

fn fixed(name: &str, ok: bool) -> Fixed {
    check_fn(
        name,
        Box::new(move || std::future::ready(if ok { Ok(()) } else { Err("down".into()) }))
            as Box<_>,
    )
}

fn passing(name: &str) -> Fixed {
    fixed(name, true)
}

fn failing(name: &str) -> Fixed {
    fixed(name, false)
}

type BoxCheckFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

fn counting(
    name: &str,
    counter: &Arc<AtomicUsize>,
    delay: Duration,
    ok: bool,
) -> FnCheck<impl Fn() -> BoxCheckFuture + use<>> {
    let counter = counter.clone();
    check_fn(name, move || {
        let counter = counter.clone();
        Box::pin(async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            if ok { Ok(()) } else { Err("failed".into()) }
        }) as BoxCheckFuture
    })
}

use std::future::Future;

#[tokio::test]
async fn aggregation_table() {
    // (critical ok, non-critical ok) -> (status, http, ready http)
    let table = [
        (true, true, "healthy", 200, 200),
        (true, false, "degraded", 200, 200),
        (false, true, "unhealthy", 503, 503),
        (false, false, "unhealthy", 503, 503),
    ];
    for (critical_ok, optional_ok, expected, code, ready_code) in table {
        let critical = fixed("critical", critical_ok);
        let optional = fixed("optional", optional_ok).non_critical();
        let registry = HealthRegistry::builder()
            .check(critical)
            .check(optional)
            .build();
        registry.readiness().mark_ready();
        let (status, body) = get(&registry, "/health").await;
        assert_eq!(body["status"], expected, "{critical_ok} {optional_ok}");
        assert_eq!(status.as_u16(), code);
        assert_eq!(
            body["checks"]["critical"]["status"],
            if critical_ok { "healthy" } else { "unhealthy" }
        );
        assert!(body["checks"]["critical"]["duration_ms"].is_number());
        assert!(body["uptime_s"].is_u64());
        let (status, body) = get(&registry, "/health/ready").await;
        assert_eq!(status.as_u16(), ready_code);
        if ready_code == 503 {
            assert_eq!(
                body,
                serde_json::json!({"status":"not_ready","reason":"checks_failed"})
            );
        } else {
            assert_eq!(body, serde_json::json!({"status":"ready"}));
        }
    }
    // Only non-critical checks, all failing: degraded.
    let registry = HealthRegistry::builder()
        .check(failing("a").non_critical())
        .check(failing("b").non_critical())
        .build();
    assert_eq!(registry.check_all().await.status(), HealthStatus::Degraded);
    // No checks at all: healthy.
    let registry = HealthRegistry::builder().build();
    let (status, body) = get(&registry, "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["checks"], serde_json::json!({}));
}

#[tokio::test(start_paused = true)]
async fn hanging_check_times_out_within_its_budget() {
    let registry = HealthRegistry::builder()
        .check(check_fn("hang", || {
            std::future::pending::<Result<(), BoxError>>()
        }))
        .check(
            check_fn("slow", std::future::pending::<Result<(), BoxError>>)
                .timeout(Duration::from_millis(300))
                .non_critical(),
        )
        .check(passing("ok"))
        .build();
    let started = tokio::time::Instant::now();
    let report = registry.check_all().await;
    assert_eq!(started.elapsed(), DEFAULT_CHECK_TIMEOUT);
    assert_eq!(report.status(), HealthStatus::Unhealthy);
    let hang = report.check("hang").unwrap();
    assert_eq!(hang.status(), CheckStatus::Unhealthy);
    assert_eq!(hang.error(), Some("timed out after 2000 ms"));
    assert_eq!(
        report.check("slow").unwrap().error(),
        Some("timed out after 300 ms")
    );
    assert_eq!(report.check("ok").unwrap().status(), CheckStatus::Healthy);
}

#[tokio::test(start_paused = true)]
async fn round_deadline_caps_a_longer_check_budget() {
    let registry = HealthRegistry::builder()
        .deadline(Duration::from_millis(1000))
        .check(
            check_fn("hang", std::future::pending::<Result<(), BoxError>>)
                .timeout(Duration::from_secs(60)),
        )
        .build();
    let started = tokio::time::Instant::now();
    let report = registry.check_all().await;
    assert_eq!(started.elapsed(), Duration::from_millis(1000));
    assert_eq!(
        report.check("hang").unwrap().error(),
        Some("timed out after 1000 ms")
    );
}

#[tokio::test]
async fn panicking_check_is_contained() {
    let registry = HealthRegistry::builder()
        .check(check_fn("boom", || async {
            panic!("driver exploded\nsecret=hunter2");
            #[allow(unreachable_code)]
            Ok::<(), BoxError>(())
        }))
        .check(check_fn(
            "sync-boom",
            || -> std::future::Ready<Result<(), BoxError>> { panic!("before any await") },
        ))
        .check(passing("ok"))
        .build();
    let (status, body) = get(&registry, "/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let error = body["checks"]["boom"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("check panicked: driver exploded"),
        "{error}"
    );
    assert!(!error.contains('\n'));
    assert_eq!(body["checks"]["sync-boom"]["status"], "unhealthy");
    assert_eq!(body["checks"]["ok"]["status"], "healthy");
    // The registry keeps working after the panics.
    let (status, _) = get(&registry, "/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_under_100_concurrent_probes() {
    for ttl in [Duration::from_secs(1), Duration::ZERO] {
        let runs = Arc::new(AtomicUsize::new(0));
        let registry = HealthRegistry::builder()
            .cache_ttl(ttl)
            .check(counting("db", &runs, Duration::from_millis(200), true))
            .build();
        let probes: Vec<_> = (0..100)
            .map(|_| {
                let registry = registry.clone();
                tokio::spawn(async move { get(&registry, "/health").await })
            })
            .collect();
        for probe in probes {
            let (status, body) = probe.await.unwrap();
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body["checks"]["db"]["status"], "healthy");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "ttl {ttl:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn cache_ttl_follows_the_clock() {
    let runs = Arc::new(AtomicUsize::new(0));
    let registry = HealthRegistry::builder()
        .cache_ttl(Duration::from_millis(1000))
        .check(counting("db", &runs, Duration::ZERO, true))
        .build();
    registry.check_all().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_millis(999)).await;
    registry.check_all().await;
    registry.check_critical().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_millis(2)).await;
    registry.check_all().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn liveness_never_runs_checks() {
    let runs = Arc::new(AtomicUsize::new(0));
    let registry = HealthRegistry::builder()
        .check(counting("db", &runs, Duration::ZERO, false))
        .build();
    for _ in 0..3 {
        let (status, body) = get(&registry, "/health/live").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!({"status":"alive"}));
    }
    registry.readiness().start_draining();
    assert_eq!(get(&registry, "/health/live").await.0, StatusCode::OK);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn readiness_state_machine() {
    let runs = Arc::new(AtomicUsize::new(0));
    let registry = HealthRegistry::builder()
        .cache_ttl(Duration::ZERO)
        .check(counting("db", &runs, Duration::ZERO, true))
        .check(failing("optional").non_critical())
        .build();
    let (status, body) = get(&registry, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["reason"], "starting");
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no checks while starting");
    registry.readiness().mark_ready();
    let (status, body) = get(&registry, "/health/ready").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a non-critical failure keeps it ready"
    );
    assert_eq!(body["status"], "ready");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    registry.readiness().start_draining();
    registry.readiness().mark_ready();
    let (status, body) = get(&registry, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["reason"], "draining");

    // Readiness can ignore the checks entirely.
    let registry = HealthRegistry::builder()
        .ready_runs_checks(false)
        .check(failing("db"))
        .build();
    registry.readiness().mark_ready();
    assert_eq!(get(&registry, "/health/ready").await.0, StatusCode::OK);
}

#[tokio::test]
async fn failure_threshold_needs_consecutive_failures() {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = fail.clone();
    let registry = HealthRegistry::builder()
        .cache_ttl(Duration::ZERO)
        .check(
            check_fn("flaky", move || {
                let fail = flag.load(Ordering::SeqCst);
                async move { if fail { Err::<(), _>("blip") } else { Ok(()) } }
            })
            .failure_threshold(3),
        )
        .build();
    for _ in 0..2 {
        let report = registry.check_all().await;
        let flaky = report.check("flaky").unwrap();
        assert_eq!(flaky.status(), CheckStatus::Healthy);
        assert_eq!(flaky.error(), Some("blip"), "the error is still shown");
    }
    assert_eq!(registry.check_all().await.status(), HealthStatus::Unhealthy);
    fail.store(false, Ordering::SeqCst);
    let report = registry.check_all().await;
    assert_eq!(report.status(), HealthStatus::Healthy);
    assert_eq!(report.check("flaky").unwrap().error(), None);
}

#[tokio::test(start_paused = true)]
async fn background_mode_serves_the_last_result() {
    let runs = Arc::new(AtomicUsize::new(0));
    let registry = HealthRegistry::builder()
        .cache_ttl(Duration::ZERO)
        .background_interval(Duration::from_secs(10))
        .check(counting("db", &runs, Duration::ZERO, true))
        .build();
    let tasks = registry.spawn_background();
    assert_eq!(tasks.len(), 1);
    assert!(registry.spawn_background().is_empty(), "started once only");
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    for _ in 0..5 {
        assert_eq!(registry.check_all().await.status(), HealthStatus::Healthy);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "probes only read");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    tasks.abort();
    registry.check_all().await;
    assert_eq!(runs.load(Ordering::SeqCst), 3, "on demand again");
}

/// Records the messages of tracing events.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Visit(String);
        impl tracing::field::Visit for Visit {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut visit = Visit(String::new());
        event.record(&mut visit);
        self.0.lock().unwrap().push(visit.0);
    }
}

impl Events {
    fn count(&self, message: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|m| *m == message)
            .count()
    }
}

#[tokio::test]
async fn transitions_are_logged_once() {
    use tracing_subscriber::layer::SubscriberExt;
    let events = Events::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = fail.clone();
    let registry = HealthRegistry::builder()
        .cache_ttl(Duration::ZERO)
        .check(check_fn("db", move || {
            let fail = flag.load(Ordering::SeqCst);
            async move { if fail { Err::<(), _>("down") } else { Ok(()) } }
        }))
        .build();
    for round in 0..3 {
        for _ in 0..5 {
            registry.check_all().await;
        }
        fail.store(round % 2 == 0, Ordering::SeqCst);
        for _ in 0..5 {
            registry.check_all().await;
        }
        fail.store(false, Ordering::SeqCst);
    }
    registry.check_all().await;
    // Rounds 0 and 2 went down then up; round 1 stayed up.
    assert_eq!(events.count("health check became unhealthy"), 2);
    assert_eq!(events.count("health check recovered"), 2);
    assert_eq!(events.count("service health changed"), 2);
    assert_eq!(events.count("service health recovered"), 2);
}

#[tokio::test]
async fn details_hidden_without_the_token() {
    let registry = HealthRegistry::builder()
        .detail_token("s3cret-token")
        .check(failing("db"))
        .build();
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret-toke"),
        Some("Bearer s3cret-token-and-more"),
        Some("Basic s3cret-token"),
        Some("Bearer"),
        Some("s3cret-token"),
    ] {
        let (status, _, body) = call(&registry, Method::GET, "/health", auth).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{auth:?}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "unhealthy");
        assert!(body.get("checks").is_none(), "{auth:?} saw details");
        assert!(body["uptime_s"].is_u64());
    }
    for auth in [
        "Bearer s3cret-token",
        "bearer s3cret-token",
        "BEARER  s3cret-token ",
    ] {
        let (_, _, body) = call(&registry, Method::GET, "/health", Some(auth)).await;
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["checks"]["db"]["error"], "down", "{auth}");
    }
}

#[tokio::test]
async fn hostile_error_text_is_capped_and_cleaned() {
    let registry = HealthRegistry::builder()
        .check(check_fn("db\"\n\\name", || async {
            let mut text = "line one\nline two\r\n\u{1b}[2J\u{202e}".to_owned();
            text.push_str(&"x".repeat(100_000));
            Err::<(), _>(text)
        }))
        .build();
    let (status, _, raw) = call(&registry, Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!raw.contains('\n') && !raw.contains('\u{1b}'));
    let body: serde_json::Value = serde_json::from_str(&raw).expect("valid JSON");
    let error = body["checks"]["db\"\n\\name"]["error"].as_str().unwrap();
    assert!(error.starts_with("line one line two"), "{error}");
    assert_eq!(error.chars().count(), MAX_ERROR_CHARS);
    assert!(error.ends_with("..."));
    assert!(raw.len() < 1024);
}

#[tokio::test]
async fn methods_and_paths() {
    let registry = HealthRegistry::builder().check(passing("db")).build();
    registry.readiness().mark_ready();
    for path in ["/health", "/health/live", "/health/ready"] {
        let (status, headers, body) = call(&registry, Method::HEAD, path, None).await;
        assert_eq!(status, StatusCode::OK, "HEAD {path}");
        assert_eq!(headers["content-type"], "application/json");
        assert!(body.is_empty());
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            let (status, headers, _) = call(&registry, method.clone(), path, None).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(headers["allow"], "GET, HEAD");
            assert_eq!(headers["cache-control"], "no-store");
        }
        let custom = Method::from_bytes(b"X-WEIRD").unwrap();
        let (status, ..) = call(&registry, custom, path, None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }
    for path in [
        "/",
        "/health/",
        "/health/live/",
        "/HEALTH",
        "/health/readyz",
        "/health/../health",
        "/health%2Flive",
    ] {
        let (status, ..) = call(&registry, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, ..) = call(&registry, Method::GET, "/health/live?verbose=1", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
#[should_panic(expected = "registered twice")]
fn duplicate_names_are_refused() {
    let _ = HealthRegistry::builder()
        .check(passing("db"))
        .check(failing("db"));
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_router_serves_the_probes() {
    let registry = HealthRegistry::builder().check(passing("db")).build();
    let app: axum::Router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hi" }))
        .merge(registry.router());
    let response = app
        .clone()
        .oneshot(
            Request::get("/health")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .oneshot(
            Request::post("/health/live")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}
