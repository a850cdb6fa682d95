//! The whole tower-ops stack on a small axum application, configured from the
//! environment, with no external services.
//!
//! ```text
//! cargo run --example quickstart
//! curl -i localhost:3000/users/42
//! curl -i -H 'x-request-id: order-42' localhost:3000/
//! curl -i localhost:3000/health
//!
//! # operator routes, only with a token
//! export ADMIN_TOKEN=$(openssl rand -hex 32)
//! cargo run --example quickstart
//! curl -H "Authorization: Bearer $ADMIN_TOKEN" localhost:3000/admin/log-level
//! curl -X PUT -H "Authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
//!      -d '{"filter":"debug"}' localhost:3000/admin/log-level
//! ```
//!
//! Every variable of the README's environment table applies; a bad value stops
//! start-up with every problem listed.

use std::time::Duration;

use axum::extract::{Path, Query};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tower::ServiceBuilder;
use tower_ops::admin::AdminRoutes;
use tower_ops::body_limit::BodyLimitLayer;
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::error::{ErrorLayer, Problem};
use tower_ops::health::{HealthRegistryBuilder, check_fn};
use tower_ops::load_shed::ConcurrencyLimitLayer;
use tower_ops::log::RequestLogLayer;
use tower_ops::metrics::{MetricsExporter, MetricsLayer};
use tower_ops::paths::PathSet;
use tower_ops::rate_limit::RateLimitLayer;
use tower_ops::request_id::RequestIdLayer;
use tower_ops::route::CaptureRouteLayer;
use tower_ops::security_headers::SecurityHeadersLayer;
use tower_ops::shutdown::ShutdownBuilder;
use tower_ops::timeout::TimeoutLayer;

#[derive(Deserialize)]
struct Slow {
    ms: Option<u64>,
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello from tower-ops\n" }))
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move {
                Json(serde_json::json!({ "id": id, "name": format!("user {id}") }))
            }),
        )
        .route(
            "/echo",
            post(|Json(body): Json<serde_json::Value>| async move { Json(body) }),
        )
        .route(
            "/slow",
            get(|Query(q): Query<Slow>| async move {
                let ms = q.ms.unwrap_or(1000).min(600_000);
                tracing::info!(ms, "slow request started");
                tokio::time::sleep(Duration::from_millis(ms)).await;
                format!("slept {ms} ms\n")
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("the handler panicked on purpose");
                }
                ""
            }),
        )
        .route(
            "/fail",
            get(|| async {
                // The client sees a generic 500; the source (redacted) goes to the log.
                let error = std::io::Error::other(
                    "connecting to postgres://admin:s3cret@10.0.0.5/app failed",
                );
                Err::<&str, _>(Problem::internal(error))
            }),
        )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Check every variable of the environment table first, so a bad deployment
    // learns of all its mistakes at once (`Stack::from_env` lists them all). The
    // layers are then built one by one below, to show each of them.
    tower_ops::stack::Stack::from_env()?;
    // JSON lines unless stdout is a terminal; LOG_FORMAT, LOG_LEVEL, RUST_LOG.
    // With `--features otel`, the same logs plus OTLP export when
    // OTEL_EXPORTER_OTLP_ENDPOINT is set.
    #[cfg(feature = "otel")]
    let telemetry = tower_ops::otel::init_from_env()?;
    #[cfg(feature = "otel")]
    let dropped_lines = telemetry.log_guard().map(|g| g.dropped_lines_counter());
    #[cfg(not(feature = "otel"))]
    let log = tower_ops::log::init_from_env()?;
    #[cfg(not(feature = "otel"))]
    let dropped_lines = Some(log.dropped_lines_counter());

    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|_| format!("PORT={p:?} is not a port number"))?,
        Err(_) => 3000,
    };

    // Health: a sample non-critical check; readiness is marked once we listen.
    let health = HealthRegistryBuilder::from_env()?
        .check(
            check_fn("disk_space_sample", || async {
                Ok::<_, std::io::Error>(())
            })
            .non_critical(),
        )
        .build();
    let shutdown = ShutdownBuilder::from_env()?
        .readiness(health.readiness().clone())
        .build();

    // Metrics into our own registry; /metrics honours METRICS_TOKEN.
    let (metrics, mut registry) = MetricsLayer::builder()
        .skip_paths(PathSet::probes())
        .trace_exemplars()
        .build();
    if let Some(counter) = dropped_lines {
        counter.register(&mut registry);
    }
    // Open connections and what the server refused before any layer ran.
    let connections = tower_ops::serve::ConnectionMetrics::register(&mut registry);
    // Load shedding: CONCURRENCY_LIMIT is a number, adaptive, or unset (off).
    // Probes, /metrics and the operator routes are never shed.
    let load_shed = ConcurrencyLimitLayer::from_env()?;
    load_shed.register(&mut registry);
    let exporter = MetricsExporter::from_env(registry)?;
    // Operator routes, only when ADMIN_TOKEN is set (otherwise /admin/* is a 404):
    // `PUT /admin/log-level {"filter":"debug"}` turns logging up without a redeploy.
    let admin: Router = AdminRoutes::from_env()?.map_or_else(Router::new, AdminRoutes::into_router);

    // The canonical order, outermost first.
    let stack = ServiceBuilder::new()
        .layer(RequestIdLayer::new()) // id on every response
        .layer(ClientIpLayer::from_env()?) // TRUSTED_PROXIES
        .layer(RequestLogLayer::from_env()?) // one line per request
        .layer(metrics) // RED metrics
        .layer(SecurityHeadersLayer::from_env()?) // SECURITY_HEADERS
        .layer(ErrorLayer::from_env()?) // panics and errors as problems
        .layer(load_shed) // 503 OVERLOADED above CONCURRENCY_LIMIT
        .layer(TimeoutLayer::from_env()?) // 504 after REQUEST_TIMEOUT_MS
        .layer(RateLimitLayer::from_env()?.skip_paths(PathSet::probes())) // 429
        .layer(BodyLimitLayer::from_env()?.for_axum()); // 413
    let app = app()
        .merge(health.router()) // /health, /health/live, /health/ready
        .merge(exporter.into_router()) // /metrics (METRICS_TOKEN)
        .merge(admin) // /admin/log-level (ADMIN_TOKEN)
        .layer(CaptureRouteLayer::new())
        .layer(stack)
        .layer(shutdown.in_flight_layer());

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    // HEADER_READ_TIMEOUT_MS, MAX_HEADER_BYTES, IDLE_TIMEOUT_MS, MAX_CONNECTIONS.
    tower_ops::serve::serve(listener, app)
        .config(tower_ops::serve::ServeConfig::from_env()?)
        .metrics(connections)
        .with_shutdown(shutdown)
        .await?;
    tracing::info!("stopped");
    #[cfg(feature = "otel")]
    telemetry.shutdown()?;
    Ok(())
}
