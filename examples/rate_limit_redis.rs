//! Two instances of one app, on two loopback ports, enforce one limit through Redis.
//!
//! ```sh
//! redis-server --port 6379 --save '' --appendonly no &
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example rate_limit_redis --features redis
//! ```
//!
//! Each instance alone would allow 5 requests per minute; together they allow 5.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_ops::rate_limit::{FailureMode, Quota, RateLimitLayer, RedisBackend};

async fn instance(redis_url: &str) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let limits = RateLimitLayer::with_quota(Quota::per_minute(5))
        .backend(RedisBackend::new(redis_url)?)
        .failure_mode(FailureMode::Local)
        .key_secret("the same on every instance");
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .layer(limits);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = tower_ops::serve::serve(listener, app).await {
            eprintln!("server error: {e}");
        }
    });
    Ok(addr)
}

async fn get_status(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.lines().next().unwrap_or_default().to_owned();
    let limit = response
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("ratelimit:"))
        .unwrap_or_default()
        .to_owned();
    Ok(format!("{status:<28} {limit}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let a = instance(&url).await?;
    let b = instance(&url).await?;
    println!("instance A on {a}, instance B on {b}, sharing {url}");
    for i in 0..8 {
        let (name, addr) = if i % 2 == 0 { ("A", a) } else { ("B", b) };
        println!("request {} via {name}: {}", i + 1, get_status(addr).await?);
    }
    Ok(())
}
