//! The client's address, safely: forwarding headers are believed only when the
//! peer is a trusted proxy (`TRUSTED_PROXIES`, a CIDR list; none by default), so
//! a client cannot pick its own address by sending `X-Forwarded-For`.
//!
//! ```text
//! cargo run --example client_ip
//! curl localhost:3000/                                      # 127.0.0.1 (the peer)
//! curl -H 'x-forwarded-for: 203.0.113.9' localhost:3000/    # still 127.0.0.1: not trusted
//! TRUSTED_PROXIES=127.0.0.1/32 cargo run --example client_ip
//! curl -H 'x-forwarded-for: 203.0.113.9' localhost:3000/    # 203.0.113.9, via the proxy
//! ```

use std::io::Write;

use axum::routing::get;
use axum::{Extension, Router};
use tower_ops::client_ip::{ClientIp, ClientIpLayer};

async fn whoami(Extension(ip): Extension<ClientIp>) -> String {
    let via = if ip.via_trusted_proxy() {
        "via a trusted proxy"
    } else {
        "direct peer"
    };
    format!("{ip} ({via})\n")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new()
        .route("/", get(whoami))
        // Reads TRUSTED_PROXIES; a bad CIDR stops start-up with a clear message.
        .layer(ClientIpLayer::from_env()?);

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    // The peer address comes from axum's `ConnectInfo`.
    // SIGINT or SIGTERM: stop accepting, finish what is in flight, return.
    let shutdown = tower_ops::shutdown::ShutdownBuilder::from_env()?.build();
    tower_ops::serve::serve(listener, app)
        .with_shutdown(shutdown)
        .await?;
    Ok(())
}
