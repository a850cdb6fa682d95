//! Security response headers: the `api` preset (default) or `web` (helmet's
//! defaults for HTML), chosen by `SECURITY_HEADERS` (api|web|off). A header the
//! handler set itself is kept; `Server` and `X-Powered-By` are removed.
//!
//! ```text
//! cargo run --example security_headers
//! curl -i localhost:3000/api         # nosniff, DENY, CSP default-src 'none', no-store
//! curl -i localhost:3000/page        # the handler's own Cache-Control is kept
//! SECURITY_HEADERS=web cargo run --example security_headers
//! ```

use std::io::Write;

use axum::Router;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use http::header;
use tower_ops::security_headers::SecurityHeadersLayer;

async fn page() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "public, max-age=60"),
            (header::SERVER, "my-server/1.2.3"),
        ],
        Html("<h1>hello</h1>\n"),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new()
        .route(
            "/api",
            get(|| async { axum::Json(serde_json::json!({"ok": true})) }),
        )
        .route("/page", get(page))
        .layer(SecurityHeadersLayer::from_env()?);

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
