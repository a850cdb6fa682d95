//! Graceful shutdown with plain hyper and a hand-written accept loop, using
//! hyper-util's `GracefulShutdown` to close connections politely.
//!
//! ```text
//! SHUTDOWN_DRAIN_DELAY_MS=5000 cargo run --example shutdown_hyper
//! ```
use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_ops::body::EndpointBody;
use tower_ops::health::{HealthRegistry, HealthRegistryBuilder};
use tower_ops::shutdown::ShutdownBuilder;

/// The probes' body type serves the other routes too.
async fn route(
    req: Request<Incoming>,
    health: HealthRegistry,
) -> Result<Response<EndpointBody>, Infallible> {
    if req.uri().path().starts_with("/health") {
        return health.service().oneshot(req).await;
    }
    if req.uri().path() == "/slow" {
        let ms = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|ms| ms.parse::<u64>().ok())
            .unwrap_or(1000);
        tracing::info!(ms, "slow request started");
        tokio::time::sleep(Duration::from_millis(ms.min(600_000))).await;
        return Ok(Response::new(EndpointBody::full("done")));
    }
    let mut response = Response::new(EndpointBody::empty());
    *response.status_mut() = StatusCode::NOT_FOUND;
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let health = HealthRegistryBuilder::from_env()?.build();
    let shutdown = ShutdownBuilder::from_env()?
        .readiness(health.readiness().clone())
        .build();

    let service = ServiceBuilder::new()
        .layer(shutdown.in_flight_layer())
        .service(service_fn({
            let health = health.clone();
            move |req| route(req, health.clone())
        }));
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");

    let stop = shutdown.stop_accepting();
    let server = async move {
        let graceful = GracefulShutdown::new();
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else {
                        // Out of file descriptors, for example: back off briefly.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let service = TowerToHyperService::new(service.clone());
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(error) = conn.await {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                    });
                }
                () = &mut stop => break,
            }
        }
        drop(listener); // refuse new connections from now on
        graceful.shutdown().await;
    };
    health.readiness().mark_ready();
    shutdown.run(server).await;
    Ok(())
}
