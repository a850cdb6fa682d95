//! RED metrics: request duration histogram per method, route template and
//! status, in-flight gauge, body sizes, and a `/metrics` endpoint in OpenMetrics
//! text. Probe routes are not counted. Set `METRICS_TOKEN` to require
//! `Authorization: Bearer <token>` on `/metrics`.
//!
//! ```text
//! cargo run --example metrics
//! curl localhost:3000/users/7
//! curl -s localhost:3000/metrics | grep http_server_request_duration_seconds_count
//! METRICS_TOKEN=s3cret cargo run --example metrics
//! curl -i localhost:3000/metrics                                   # 401
//! curl -H 'authorization: Bearer s3cret' localhost:3000/metrics    # 200
//! ```

use std::io::Write;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use tower_ops::metrics::{MetricsExporter, MetricsLayer};
use tower_ops::paths::PathSet;
use tower_ops::route::CaptureRouteLayer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The layer and the registry it fills; register your own metrics there too.
    let (metrics, registry) = MetricsLayer::builder()
        .skip_paths(PathSet::probes())
        .build();
    // `/metrics`, honouring METRICS_TOKEN.
    let exporter = MetricsExporter::from_env(registry)?;

    let app = Router::new()
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move { format!("user {id}\n") }),
        )
        .merge(exporter.into_router())
        // Inside the router: labels requests with `/users/{id}`, not `/users/7`.
        .layer(CaptureRouteLayer::new())
        .layer(metrics);

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    // SIGINT or SIGTERM: stop accepting, finish what is in flight, return.
    let shutdown = tower_ops::shutdown::ShutdownBuilder::from_env()?.build();
    tower_ops::serve::serve(listener, app)
        .with_shutdown(shutdown)
        .await?;
    Ok(())
}
