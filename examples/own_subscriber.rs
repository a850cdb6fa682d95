//! The crate's layers under the application's own tracing set-up:
//! `tracing_subscriber::fmt().json()` with an `EnvFilter`, as many services
//! already have, and no call to `tower_ops::log::init*`.
//!
//! The request line is an ordinary event (target `tower_ops::request`); fmt's
//! JSON formatter puts its fields under `"fields"` and the request's span (with
//! `request_id`) under `"span"`. A handler's `LogFields` are real fields of that
//! event, so `user_id` comes out as a number. Lines logged in the handler, and in
//! a task started with `request_id::spawn`, carry the request's span too.
//!
//! For every field at the root of each line instead, add
//! `tower_ops::log::JsonLayer` to the registry in place of `fmt` (see the
//! `tower_ops::log` docs, "Your own subscriber").
//!
//! ```text
//! cargo run --example own_subscriber
//! curl -H 'x-request-id: own-1' localhost:3000/users/42
//! # {"timestamp":"…","level":"INFO","fields":{"message":"request completed",
//! #  "method":"GET","route":"/users/{id}",…,"status":200,…,"user_id":42},
//! #  "target":"tower_ops::request","span":{"request_id":"own-1","name":"request"},…}
//! ```

use std::io::Write;

use axum::extract::Path;
use axum::routing::get;
use axum::{Extension, Router};
use tower::ServiceBuilder;
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::log::{LogFields, RequestLogLayer};
use tower_ops::request_id::{self, RequestIdLayer};
use tower_ops::route::CaptureRouteLayer;
use tracing_subscriber::EnvFilter;

async fn user(Path(id): Path<u64>, Extension(fields): Extension<LogFields>) -> String {
    fields.insert("user_id", id);
    fields.insert("plan", "pro");
    tracing::info!(id, "looking the user up");
    // Work on another task: its line keeps the request's span.
    let audit = request_id::spawn(async move {
        tracing::info!(id, "audit record written");
    });
    let _ = audit.await;
    format!("user {id}\n")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The application's own set-up, untouched.
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let app = Router::new()
        .route("/users/{id}", get(user))
        .layer(CaptureRouteLayer::new())
        .layer(
            ServiceBuilder::new()
                .layer(RequestIdLayer::new())
                .layer(ClientIpLayer::new())
                .layer(RequestLogLayer::new()),
        );

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
