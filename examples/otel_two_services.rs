//! Two services on loopback, one trace across both.
//!
//! `front` answers `GET /checkout` by calling `back`'s `GET /stock/{sku}` through a
//! hyper client wrapped in `PropagateContextLayer`; both run the request log layer,
//! so both request spans (and log lines) carry the same trace id.
//!
//! ```text
//! cargo run --example otel_two_services --features otel
//! # export to a collector as well:
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 cargo run --example otel_two_services --features otel
//! ```

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_ops::log::RequestLogLayer;
use tower_ops::otel::{OtelBuilder, PropagateContext, PropagateContextLayer};
use tower_ops::request_id::RequestIdLayer;
use tower_ops::route::CaptureRouteLayer;
use tower_ops::trace_context::TraceId;

type HttpClient = PropagateContext<Client<HttpConnector, Empty<bytes::Bytes>>>;

#[derive(Clone)]
struct Front {
    client: HttpClient,
    back: SocketAddr,
}

/// Calls `back` and reports both trace ids.
async fn checkout(
    State(front): State<Front>,
    Extension(trace): Extension<TraceId>,
) -> Result<String, String> {
    let uri = format!("http://{}/stock/sku-42", front.back);
    let request = http::Request::get(uri)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let mut client = front.client.clone();
    let response = client
        .ready()
        .await
        .map_err(|e| e.to_string())?
        .call(request)
        .await
        .map_err(|e| e.to_string())?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(format!(
        "front trace {trace}\nback  trace {}\n",
        String::from_utf8_lossy(&body)
    ))
}

/// Answers with the trace id it runs in.
async fn stock(Path(_sku): Path<String>, Extension(trace): Extension<TraceId>) -> String {
    tracing::info!("checking stock");
    trace.to_string()
}

/// The same stack on both services.
fn serve(router: Router) -> Router {
    router.layer(CaptureRouteLayer::new()).layer(
        ServiceBuilder::new()
            .layer(RequestIdLayer::new())
            .layer(RequestLogLayer::new()),
    )
}

async fn spawn(router: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(tower_ops::serve::serve(listener, router).into_future());
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // JSON logs plus export when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    let otel = OtelBuilder::from_env()?
        .service_name("otel-two-services")
        .init()?;

    let back = spawn(serve(Router::new().route("/stock/{sku}", get(stock)))).await?;
    let client = ServiceBuilder::new()
        .layer(PropagateContextLayer::new())
        .service(Client::builder(TokioExecutor::new()).build_http());
    let front = spawn(serve(
        Router::new()
            .route("/checkout", get(checkout))
            .with_state(Front { client, back }),
    ))
    .await?;

    // An outside caller that starts the trace.
    let caller: Client<HttpConnector, Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::get(format!("http://{front}/checkout"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Empty::new())?;
    let response = caller.oneshot(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    print!("{}", String::from_utf8_lossy(&body));

    otel.shutdown()?;
    Ok(())
}
