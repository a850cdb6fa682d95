//! Secrets out of logs: the request log line censors the query string, chosen
//! headers and captured JSON bodies with a `Redactor` (default rules plus one of
//! our own); `POST /scrub` shows what the redactor does to free text.
//!
//! ```text
//! LOG_FORMAT=json cargo run --example redact
//! curl -H 'authorization: Bearer abc.def' -H 'content-type: application/json' \
//!   -d '{"user":"ada","password":"hunter2","tenant_pin":1234}' localhost:3000/login
//! curl 'localhost:3000/callback?code=0x5ecret&state=abc'            # code=[REDACTED] in the log
//! curl -d 'connect postgres://app:s3cret@db/x failed' localhost:3000/scrub
//! ```

use std::io::Write;

use axum::Router;
use axum::routing::{get, post};
use http::header::{AUTHORIZATION, USER_AGENT};
use serde::Deserialize;
use tower::ServiceBuilder;
use tower_ops::error::Json;
use tower_ops::log::RequestLogLayer;
use tower_ops::redact::Redactor;
use tower_ops::request_id::RequestIdLayer;

#[derive(Deserialize)]
struct Login {
    user: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _log = tower_ops::log::init_from_env()?;
    // The default rules, plus a key of our own.
    let redactor = Redactor::builder().key("tenant_pin").build();
    let log = RequestLogLayer::from_env()?
        .redactor(redactor.clone())
        .headers([AUTHORIZATION, USER_AGENT])
        // Request bodies read by the crate's `Json` extractor, and JSON responses.
        .capture_bodies(4096);

    let app = Router::new()
        .route(
            "/login",
            post(|Json(login): Json<Login>| async move {
                axum::Json(serde_json::json!({ "user": login.user, "session": "s-123" }))
            }),
        )
        .route("/callback", get(|| async { "signed in\n" }))
        .route(
            "/scrub",
            post(
                move |text: String| async move { redactor.redact_text(&text).into_owned() + "\n" },
            ),
        )
        .layer(
            ServiceBuilder::new()
                .layer(RequestIdLayer::new())
                .layer(log),
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
