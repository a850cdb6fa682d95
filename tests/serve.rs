//! `tower_ops::serve` against hostile and ordinary clients on real sockets: slow
//! and oversized heads, malformed request lines, idle connections, the
//! connection cap, h2c, HTTP/2 streams reset in a loop, and shutdown with idle
//! and half-sent connections.
#![cfg(feature = "axum")]

#[path = "common/capture.rs"]
mod capture;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use capture::Capture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_ops::serve::{ServeConfig, serve};
use tower_ops::shutdown::Shutdown;
use tracing_subscriber::layer::SubscriberExt;

const PATIENCE: Duration = Duration::from_secs(10);

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                "slow"
            }),
        )
}

/// Every test's log lines, in one global subscriber: tests run on parallel
/// threads, and a callsite first reached on a thread without a subscriber of
/// its own would stay silent for the others. Tests tell their lines apart by
/// the client port.
fn logs() -> &'static Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let subscriber =
            tracing_subscriber::registry().with(tower_ops::log::JsonLayer::new(capture.clone()));
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        capture
    })
}

/// The connection warnings of `kind` for connections from `ports`.
fn connection_errors(kind: &str, ports: &[u16]) -> Vec<serde_json::Value> {
    logs()
        .lines()
        .into_iter()
        .filter(|l| {
            l["target"] == "tower_ops::serve"
                && l["kind"] == kind
                && l["client_port"]
                    .as_u64()
                    .is_some_and(|p| ports.iter().any(|&q| u64::from(q) == p))
        })
        .collect()
}

fn port(stream: &TcpStream) -> u16 {
    stream.local_addr().unwrap().port()
}

/// Serves `app()` with `config` on a loopback port.
async fn start(config: ServeConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, app()).config(config).into_future());
    addr
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: t\r\n\r\n";

/// Reads one response head and its `content-length` body from `stream`.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0; 1];
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "no response: {buf:?}");
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("a response in time")
            .unwrap();
        if n == 0 {
            break;
        }
        buf.push(byte[0]);
        if buf.ends_with(b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf).to_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            stream.read_exact(&mut body).await.unwrap();
            buf.extend_from_slice(&body);
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0; 256];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("unexpected bytes"),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_first_head_gets_408_and_a_warning() {
    logs();
    let addr = start(ServeConfig::new().header_read_timeout(Duration::from_millis(300))).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();
    // One more byte now and then, never the end of the head.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stream.write_all(b"x").await;
    }
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");
    assert!(closed_within(&mut stream, PATIENCE).await);
    assert!(started.elapsed() < Duration::from_secs(3));
    let warnings = connection_errors("header_timeout", &[port(&stream)]);
    assert_eq!(warnings.len(), 1, "{}", logs().text());
    assert_eq!(warnings[0]["level"], "WARN");
    assert_eq!(warnings[0]["client_ip"], "127.0.0.1");
}

#[tokio::test(flavor = "current_thread")]
async fn a_silent_connection_is_closed_at_the_header_timeout() {
    let addr = start(ServeConfig::new().header_read_timeout(Duration::from_millis(200))).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_head_on_a_kept_alive_connection_gets_408() {
    let addr = start(
        ServeConfig::new()
            .header_read_timeout(Duration::from_millis(300))
            .idle_timeout(Duration::from_secs(30)),
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(GET).await.unwrap();
    let first = read_response(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Idle for longer than the header timeout: an idle connection is not a
    // slow head.
    tokio::time::sleep(Duration::from_millis(600)).await;
    stream.write_all(GET).await.unwrap();
    let second = read_response(&mut stream).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    // Now a head that never ends: its clock starts at its first byte.
    stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let third = read_response(&mut stream).await;
    assert!(third.starts_with("HTTP/1.1 408"), "{third:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn idle_connections_close_at_the_idle_timeout() {
    let addr = start(
        ServeConfig::new()
            .header_read_timeout(Duration::from_secs(5))
            .idle_timeout(Duration::from_millis(300)),
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(GET).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    assert!(closed_within(&mut stream, PATIENCE).await);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_response_is_not_cut_by_the_idle_timeout() {
    let addr = start(
        ServeConfig::new()
            .header_read_timeout(Duration::from_millis(100))
            .idle_timeout(Duration::from_millis(100)),
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.ends_with("slow"), "{response:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn an_oversized_head_gets_431_and_is_counted() {
    logs();
    let mut registry = prometheus_client::registry::Registry::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve(listener, app())
        .metrics(tower_ops::serve::ConnectionMetrics::register(&mut registry));
    tokio::spawn(server.into_future());

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nhost: t\r\nuser-agent: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let _ = stream.write_all(big.as_bytes()).await;
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response:?}");

    // Under the cap: served.
    let mut ok = TcpStream::connect(addr).await.unwrap();
    let fine = format!(
        "GET / HTTP/1.1\r\nhost: t\r\nuser-agent: {}\r\n\r\n",
        "a".repeat(8 * 1024)
    );
    ok.write_all(fine.as_bytes()).await.unwrap();
    assert!(read_response(&mut ok).await.starts_with("HTTP/1.1 200"));

    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        connection_errors("head_too_large", &[port(&stream)]).len(),
        1
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"http_server_connection_errors_total{kind="head_too_large"} 1"#),
        "{text}"
    );
    assert!(text.contains("http_server_open_connections 1"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_malformed_request_line_gets_400_and_a_warning() {
    logs();
    let addr = start(ServeConfig::new()).await;
    let mut ports = Vec::new();
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        ports.push(port(&stream));
        stream.write_all(garbage).await.unwrap();
        let response = read_response(&mut stream).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{garbage:?}: {response:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        connection_errors("parse", &ports).len(),
        3,
        "{}",
        logs().text()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_peer_address_reaches_the_app() {
    let addr = start(ServeConfig::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /peer HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut stream).await.ends_with("127.0.0.1"));
}

#[tokio::test(flavor = "current_thread")]
async fn h2c_with_prior_knowledge_and_http1_share_the_port() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let addr = start(ServeConfig::new()).await;
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<bytes::Bytes>>();
    for _ in 0..3 {
        let response = h2
            .get(format!("http://{addr}/").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    }
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(GET).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "current_thread")]
async fn the_connection_cap_pauses_accepting_until_one_closes() {
    let mut registry = prometheus_client::registry::Registry::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve(listener, app())
        .config(ServeConfig::new().max_connections(2))
        .metrics(tower_ops::serve::ConnectionMetrics::register(&mut registry));
    tokio::spawn(server.into_future());

    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    for stream in [&mut first, &mut second] {
        stream.write_all(GET).await.unwrap();
        assert!(read_response(stream).await.starts_with("HTTP/1.1 200"));
    }
    // The kernel completes the handshake, but the server does not take it.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(GET).await.unwrap();
    let mut buf = [0; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(early.is_err(), "served above the cap");
    drop(first);
    assert!(read_response(&mut third).await.starts_with("HTTP/1.1 200"));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    // One pause for the third connection, one more while it is served.
    assert!(
        text.contains("http_server_connection_cap_waits_total 2"),
        "{text}"
    );
}

/// SIGTERM's sequence (triggered by hand): an idle connection and one still
/// sending its head close at once; the request in flight finishes; the server
/// is done long before the shutdown timeout.
#[tokio::test(flavor = "current_thread")]
async fn shutdown_closes_idle_and_half_sent_connections_and_drains_requests() {
    let shutdown = Shutdown::builder()
        .timeout(Duration::from_secs(8))
        .signals(false)
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        serve(listener, app())
            .with_shutdown(shutdown.clone())
            .into_future(),
    );

    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(GET).await.unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nhost").await.unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    shutdown.trigger();
    assert!(closed_within(&mut idle, Duration::from_secs(1)).await);
    assert!(closed_within(&mut half, Duration::from_secs(1)).await);
    let response = read_response(&mut slow).await;
    assert!(response.ends_with("slow"), "{response:?}");
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("the server ends once drained")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

/// An HTTP/2 client opening streams and resetting them in a loop (the rapid
/// reset attack): the server keeps answering other clients promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_does_not_starve_other_clients() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    let addr = start(ServeConfig::new()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU32::new(0));
    let attacker = tokio::spawn({
        let (stop, sent) = (stop.clone(), sent.clone());
        async move {
            // A new connection whenever the server closes the last one.
            while !stop.load(Ordering::Relaxed) && sent.load(Ordering::Relaxed) < 200_000 {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let Ok((mut client, connection)) = h2::client::handshake(tcp).await else {
                    continue;
                };
                tokio::spawn(connection);
                while !stop.load(Ordering::Relaxed) {
                    let request = http::Request::get(format!("http://{addr}/slow"))
                        .body(())
                        .unwrap();
                    let Ok(mut ready) = client.clone().ready().await else {
                        break;
                    };
                    match ready.send_request(request, true) {
                        Ok((_response, mut stream)) => {
                            stream.send_reset(h2::Reason::CANCEL);
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => break,
                    }
                    client = ready;
                    // Let the client connection's own task send the frames, and
                    // keep the attack bounded if the test fails before `stop`.
                    tokio::task::yield_now().await;
                    if sent.load(Ordering::Relaxed) >= 200_000 {
                        return;
                    }
                }
            }
        }
    });
    let deadline = Instant::now() + PATIENCE;
    while sent.load(Ordering::Relaxed) < 200 {
        assert!(Instant::now() < deadline, "the attack does not run");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = sent.load(Ordering::Relaxed);
    for _ in 0..20 {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(GET).await.unwrap();
        let response = read_response(&mut stream).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    let during = sent.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(PATIENCE, attacker)
        .await
        .expect("the attacker stops")
        .unwrap();
    assert!(during > 0, "the attack paused while the others were served");
}
