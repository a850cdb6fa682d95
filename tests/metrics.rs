//! The metrics layer and the `/metrics` exporter over a real loopback socket.
#![cfg(all(feature = "metrics", feature = "axum"))]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_ops::metrics::{MetricsExporter, MetricsLayer};
use tower_ops::route::CaptureRouteLayer;

const TOKEN: &str = "Zm9v-YmFy_0123.456~789+/=";

async fn serve() -> SocketAddr {
    let (metrics, registry) = MetricsLayer::builder()
        .skip_paths(["/health/*", "/metrics"])
        .build();
    let exporter = MetricsExporter::new(registry).bearer_token(TOKEN);
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route(
            "/hang",
            get(|| async {
                std::future::pending::<()>().await;
                "never"
            }),
        )
        .route("/health/live", get(|| async { "alive" }))
        .layer(CaptureRouteLayer::new())
        .merge(exporter.into_router())
        .layer(metrics);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Sends `raw` on a new connection and reads the whole answer (the request asks
/// the server to close).
async fn exchange(addr: SocketAddr, raw: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

async fn scrape(addr: SocketAddr) -> String {
    let res = exchange(
        addr,
        &format!(
            "GET /metrics HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    res
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

#[tokio::test]
async fn exposition_over_loopback() {
    let addr = serve().await;
    for path in ["/users/1", "/users/2", "/nope/1", "/nope/2", "/health/live"] {
        let res = exchange(
            addr,
            &format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
        )
        .await;
        assert!(res.starts_with("HTTP/1.1 "), "{res}");
    }
    // A method outside RFC 9110, spelled oddly.
    exchange(
        addr,
        "BREW /users/3 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;

    let res = scrape(addr).await;
    assert!(
        res.to_ascii_lowercase().contains(
            "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"
        ),
        "{res}"
    );
    let l = |m: &str, r: &str, s: u16| {
        format!(
            "http_server_request_duration_seconds_count{{http_request_method=\"{m}\",http_route=\"{r}\",http_response_status_code=\"{s}\"}}"
        )
    };
    assert_eq!(
        value(&res, &l("GET", "/users/{id}", 200)),
        Some(2.0),
        "{res}"
    );
    assert_eq!(value(&res, &l("GET", "unmatched", 404)), Some(2.0));
    assert_eq!(value(&res, &l("_OTHER", "/users/{id}", 405)), Some(1.0));
    assert!(!res.contains("/nope"));
    assert!(!res.contains("/health/live"));
    assert!(!res.contains("/metrics\""));
    assert!(res.ends_with("# EOF\n"));
}

#[tokio::test]
async fn tokens_over_loopback() {
    let addr = serve().await;
    let ask = |auth: Option<String>| async move {
        let header = auth.map(|a| format!("{a}\r\n")).unwrap_or_default();
        exchange(
            addr,
            &format!("GET /metrics HTTP/1.1\r\nhost: x\r\n{header}connection: close\r\n\r\n"),
        )
        .await
    };
    for good in [
        format!("Authorization: Bearer {TOKEN}"),
        format!("authorization: bearer {TOKEN}"),
        format!("AUTHORIZATION: BeArEr   {TOKEN}"),
    ] {
        let res = ask(Some(good.clone())).await;
        assert!(res.starts_with("HTTP/1.1 200"), "{good}: {res}");
    }
    let upper = TOKEN.to_ascii_uppercase();
    for bad in [
        None,
        Some(format!("authorization: Bearer {upper}")),
        Some(format!("authorization: Bearer {TOKEN}x")),
        Some(format!(
            "authorization: Bearer {}",
            &TOKEN[..TOKEN.len() - 1]
        )),
        Some(format!("authorization: Basic {TOKEN}")),
        Some(format!("authorization: Bearer{TOKEN}")),
        Some(format!("authorization: {TOKEN}")),
        Some("authorization: Bearer ".to_owned()),
        Some(format!(
            "authorization: Bearer {TOKEN}\r\nauthorization: Bearer {TOKEN}"
        )),
        Some(format!("authorization: Bearer {}", "A".repeat(8000))),
    ] {
        let res = ask(bad.clone()).await;
        assert!(res.starts_with("HTTP/1.1 401"), "{bad:?}: {res}");
        let lower = res.to_ascii_lowercase();
        assert!(lower.contains("www-authenticate: bearer\r\n"), "{res}");
        assert!(
            lower.contains("content-type: application/problem+json"),
            "{res}"
        );
        assert!(res.contains("\"code\":\"UNAUTHORIZED\""), "{res}");
        assert!(!res.contains("http_server_"), "{res}");
    }
}

#[tokio::test]
async fn client_disconnect_releases_the_gauge() {
    let addr = serve().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /hang HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let gauge = r#"http_server_active_requests{http_request_method="GET"}"#;
    // Wait (bounded) until the server has the request in flight.
    let mut seen = false;
    for _ in 0..200 {
        if value(&scrape(addr).await, gauge) == Some(1.0) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "the request never became active");
    drop(stream);
    let mut released = false;
    for _ in 0..500 {
        if value(&scrape(addr).await, gauge) == Some(0.0) {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(released, "the gauge leaked after the client left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus"]
async fn real_prometheus_scrapes_the_exporter() {
    let addr = serve().await;
    exchange(
        addr,
        "GET /users/9 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/observability/prometheus-check.sh"
    );
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .arg(format!("http://{addr}/metrics"))
        .env("METRICS_TOKEN", TOKEN)
        .output()
        .await
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""http_route":"/users/{id}""#), "{stdout}");
}
