//! tonic behind the layers, over loopback with a real tonic server and client:
//! each client gets its own quota (the peer comes from tonic's `TcpConnectInfo`),
//! calls are logged and measured under their method path, and a call over its
//! quota is logged at WARN although it travels as HTTP 200 with `grpc-status: 8`.
#![cfg(all(feature = "tonic", feature = "metrics", feature = "rate-limit"))]

#[path = "common/capture.rs"]
mod capture;
#[path = "support/greeter.rs"]
mod greeter;

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use capture::Capture;
use greeter::{Greeter, HelloReply, SAY_HELLO};
use http_body_util::BodyExt;
use serde_json::Value;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};
use tower::ServiceBuilder;
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::log::{JsonLayer, RequestLogLayer};
use tower_ops::metrics::{MetricsExporter, MetricsLayer};
use tower_ops::rate_limit::{Quota, RateLimitLayer};
use tower_ops::request_id::RequestIdLayer;
use tracing_subscriber::layer::SubscriberExt;

/// Every line of this test binary: the servers log on tokio's worker threads.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let cap = Capture::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(JsonLayer::new(cap.clone())),
        )
        .unwrap();
        cap
    })
}

/// The `request completed` line of the call with this request id.
async fn line(id: &str) -> Value {
    for _ in 0..200 {
        if let Some(line) = capture()
            .completed()
            .into_iter()
            .find(|l| l["request_id"] == id)
        {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no line for {id}: {}", capture().text());
}

/// Serves `Greeter` behind the layer `$layer` on an ephemeral loopback port.
macro_rules! serve {
    ($layer:expr) => {{
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .layer($layer)
            .add_service(Greeter)
            .serve_with_incoming(TcpIncoming::from(listener));
        tokio::spawn(async move { server.await.unwrap() });
        addr
    }};
}

/// A client connecting from `local` (any address of 127.0.0.0/8 is this machine).
async fn client(addr: SocketAddr, local: &str) -> tonic::client::Grpc<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .local_address(Some(local.parse::<IpAddr>().unwrap()))
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

/// Calls `path` with request id `id`.
async fn call(
    grpc: &mut tonic::client::Grpc<Channel>,
    path: &str,
    id: &str,
) -> Result<Response<HelloReply>, Status> {
    greeter::call(grpc, path, id, Duration::from_secs(10)).await
}

// Several threads: client connection tasks run while the test awaits answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_clients_have_their_own_quota_and_their_method_as_route() {
    capture();
    let (metrics, registry) = MetricsLayer::builder().build();
    let exporter = MetricsExporter::new(registry);
    let addr = serve!(
        ServiceBuilder::new()
            .layer(RequestIdLayer::new())
            .layer(ClientIpLayer::new())
            .layer(RequestLogLayer::new())
            .layer(metrics)
            .layer(RateLimitLayer::with_quota(Quota::per(
                2,
                Duration::from_secs(60)
            )))
            .into_inner()
    );
    let mut first = client(addr, "127.0.0.1").await;
    let mut second = client(addr, "127.0.0.2").await;

    for id in ["a-1", "a-2"] {
        let reply = call(&mut first, SAY_HELLO, id).await.unwrap();
        assert_eq!(reply.get_ref().message, format!("hello {id}"));
    }
    let limited = call(&mut first, SAY_HELLO, "a-3").await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");
    // The other client's calls are counted on their own.
    call(&mut second, SAY_HELLO, "b-1").await.unwrap();
    let unknown = call(&mut second, "/demo.Greeter/Unknown", "b-2")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unimplemented, "{unknown:?}");

    for (id, ip) in [
        ("a-1", "127.0.0.1"),
        ("a-2", "127.0.0.1"),
        ("b-1", "127.0.0.2"),
    ] {
        let ok = line(id).await;
        assert_eq!(ok["level"], "INFO", "{ok}");
        assert_eq!(ok["route"], SAY_HELLO, "{ok}");
        assert_eq!(ok["status"], 200, "{ok}");
        assert_eq!(ok["client_ip"], ip, "{ok}");
    }
    let limited = line("a-3").await;
    assert_eq!(limited["level"], "WARN", "{limited}");
    assert_eq!(limited["route"], SAY_HELLO, "{limited}");
    assert_eq!(limited["status"], 200, "HTTP 200, grpc-status 8: {limited}");
    assert_eq!(limited["rejected_by"], "rate_limit", "{limited}");
    assert_eq!(limited["code"], "RATE_LIMITED", "{limited}");
    // No such method: the path is the client's word, not a route.
    assert_eq!(line("b-2").await["route"], "unmatched");

    // Over its quota, the first client's calls go no further than the limiter,
    // so only the path's form decides: names that are not gRPC method paths
    // stay unmatched.
    let long = format!("/demo.{}/SayHello", "G".repeat(300));
    for (id, path, route) in [
        ("a-4", "/demo.Greeter/Other", "/demo.Greeter/Other"),
        ("a-5", "/Greeter/SayHello", "unmatched"),
        ("a-6", "/demo.Greeter/SayHello/x", "unmatched"),
        ("a-7", "/demo.Greeter/Say%20Hello", "unmatched"),
        ("a-8", &long, "unmatched"),
    ] {
        let status = call(&mut first, path, id).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{path}: {status:?}");
        let limited = line(id).await;
        assert_eq!(limited["route"], route, "{path}: {limited}");
        assert_eq!(limited["level"], "WARN", "{limited}");
    }

    let scrape = exporter.respond(&http::Method::GET, &http::HeaderMap::new());
    let text = scrape.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(text.to_vec()).unwrap();
    let count = |route: &str, status: u16| {
        let needle = format!(
            "http_server_request_duration_seconds_count{{http_request_method=\"POST\",http_route=\"{route}\",http_response_status_code=\"{status}\"}}"
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .map(|n| n.trim().parse::<u64>().unwrap())
    };
    // Three answered calls and one rejected, all HTTP 200.
    assert_eq!(count(SAY_HELLO, 200), Some(4), "{text}");
    assert_eq!(count("unmatched", 200), Some(5), "{text}");
    assert!(!text.contains("/demo.Greeter/Unknown"), "{text}");
    assert!(!text.contains("/Greeter/SayHello\""), "{text}");
    assert!(
        text.contains(
            "http_server_rejections_total{rejected_by=\"rate_limit\",code=\"RATE_LIMITED\"} 6"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_alone_keys_on_tonic_peers() {
    capture();
    // No client IP layer: the limiter falls back to the connection's peer.
    let addr = serve!(RateLimitLayer::with_quota(Quota::per(
        1,
        Duration::from_secs(60)
    )));
    let mut first = client(addr, "127.0.0.3").await;
    let mut second = client(addr, "127.0.0.4").await;
    call(&mut first, SAY_HELLO, "c-1").await.unwrap();
    let limited = call(&mut first, SAY_HELLO, "c-2").await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");
    call(&mut second, SAY_HELLO, "d-1").await.unwrap();
    let limited = call(&mut second, SAY_HELLO, "d-2").await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");
}
