//! The whole tower-ops stack on a small axum application, configured from the
//! environment, with no external services.
//!
//! ```text
//! cargo run --example quickstart
//! curl -i localhost:3000/users/42
//! curl -i -H 'x-request-id: order-42' localhost:3000/
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tower::ServiceBuilder;
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::request_id::{self, RequestIdLayer};
use tower_ops::route::CaptureRouteLayer;

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
                let ms = q.ms.unwrap_or(1000).min(120_000);
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
                tracing::error!(
                    request_id = %request_id::current().map(|id| id.to_string()).unwrap_or_default(),
                    "connecting to db://admin:s3cret@10.0.0.5 failed"
                );
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }),
        )
        .layer(CaptureRouteLayer::new())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|_| format!("PORT={p:?} is not a port number"))?,
        Err(_) => 3000,
    };

    let stack = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(ClientIpLayer::from_env()?);
    let app = app().layer(stack);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
