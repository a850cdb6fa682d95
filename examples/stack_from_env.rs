//! The README's one-value stack, as a whole program: every layer configured
//! from the environment, served by `tower_ops::serve` with graceful shutdown,
//! ready once it listens.
//!
//! ```text
//! cargo run --example stack_from_env
//! curl -i localhost:3000/users/42
//! curl -i localhost:3000/health/ready    # 200 {"status":"ready"}
//! curl -s localhost:3000/metrics
//! ```

use axum::extract::Path;
use axum::{Router, routing::get};
use tower_ops::route::CaptureRouteLayer;
use tower_ops::serve::{ConnectionMetrics, ServeConfig, serve};
use tower_ops::shutdown::ShutdownBuilder;
use tower_ops::stack::Stack;

async fn user(Path(id): Path<u64>) -> String {
    format!("user {id}\n")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut stack = Stack::from_env()?.for_axum(); // every problem listed at once
    let log = tower_ops::log::init_from_env()?; // LOG_FORMAT, LOG_LEVEL
    // Metrics of your own go into the stack's registry before the routes exist.
    let mut connections = None;
    if let Some(registry) = stack.metrics_registry_mut() {
        log.dropped_lines_counter().register(registry); // log_dropped_lines_total
        connections = Some(ConnectionMetrics::register(registry)); // http_server_open_connections
    }
    // SIGTERM flips the stack's readiness to draining before the listener closes.
    let shutdown = ShutdownBuilder::from_env()?
        .readiness(stack.health_registry().readiness().clone())
        .build();
    let app = Router::new()
        .route("/users/{id}", get(user))
        .merge(stack.routes()) // /health, /health/live, /health/ready, /metrics
        .layer(CaptureRouteLayer::new())
        .layer(stack);

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // Header and idle timeouts, head-size and connection caps from the
    // environment; readiness turns ready as serving starts, so /health/ready
    // answers 200.
    let server = serve(listener, app).config(ServeConfig::from_env()?);
    let server = match connections {
        Some(metrics) => server.metrics(metrics),
        None => server,
    };
    server.with_shutdown(shutdown).await?;
    Ok(())
}
