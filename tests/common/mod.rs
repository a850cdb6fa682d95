//! Helpers for tests over a real loopback socket.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves `app` on an ephemeral loopback port, with peer addresses available as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The values of header `name` (lowercase).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of header `name` (lowercase), if any.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    /// The single value of header `name`; panics when absent or repeated.
    pub fn header(&self, name: &str) -> &str {
        let all = self.all(name);
        assert_eq!(all.len(), 1, "header {name}: {all:?}");
        all[0]
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Sends `request` exactly as given (it should say `Connection: close`) and
/// returns every byte of the answer.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("response within 10 s")
        .unwrap();
    buf
}

/// Sends `request` exactly as given (it should say `Connection: close`) and reads
/// the whole response.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    parse(&exchange(addr, request).await)
}

/// The bytes of a `GET path` that closes its connection, with extra header
/// lines (each ending in `\r\n`).
pub fn get_request(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n").into_bytes()
}

/// A `GET path` with extra header lines (each ending in `\r\n`).
pub async fn get(addr: SocketAddr, path: &str, extra: &str) -> RawResponse {
    raw(addr, &get_request(path, extra)).await
}

/// Parses a whole HTTP/1.1 response; panics when it is not one.
pub fn parse(buf: &[u8]) -> RawResponse {
    try_parse(buf)
        .unwrap_or_else(|| panic!("not an HTTP response: {:?}", String::from_utf8_lossy(buf)))
}

/// Parses a whole HTTP/1.1 response, `None` when it is not one (cut short, say).
pub fn try_parse(buf: &[u8]) -> Option<RawResponse> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect::<Option<_>>()?;
    let rest = &buf[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = std::str::from_utf8(&rest[..nl]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        let start = nl + 2;
        out.extend_from_slice(&rest[start..(start + size).min(rest.len())]);
        rest = &rest[(start + size + 2).min(rest.len())..];
    }
}

/// Runs the ignored test `name` of the current test binary in a child process with
/// extra environment variables; true when it passed.
pub fn child_with_env(name: &str, vars: &[(&str, &str)]) -> bool {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--include-ignored", "--nocapture"])
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.contains("1 passed") {
        eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        return false;
    }
    true
}

/// The built binary of example `name` (`cargo test` builds every example), in
/// `target/<profile>/examples/`.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let mut path = std::env::current_exe().unwrap();
    path.pop(); // the test binary
    if path.ends_with("deps") {
        path.pop();
    }
    path.push("examples");
    path.push(name);
    path
}

/// An HTTP/1.1 POST of `body` with its `Content-Length` and `content_type`.
pub fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         content-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// A chunked HTTP/1.1 POST of `total` bytes of `x`, in chunks of `chunk` bytes.
pub fn chunked_post(path: &str, total: usize, chunk: usize, extra_headers: &str) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         transfer-encoding: chunked\r\n{extra_headers}\r\n"
    )
    .into_bytes();
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk);
        req.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        req.extend(std::iter::repeat_n(b'x', n));
        req.extend_from_slice(b"\r\n");
        left -= n;
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

/// Runs the Python `script` with a file holding `exposition` as its argument
/// (the strict OpenMetrics parser of `prometheus_client`), and returns its
/// stdout; panics with the parser's complaint and the text when it fails.
pub fn python_check(script: &str, exposition: &[u8]) -> String {
    let dir = std::env::temp_dir().join(format!(
        "tower-ops-exposition-{}-{}",
        std::process::id(),
        unique_number()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("metrics.txt");
    std::fs::write(&file, exposition).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "parser rejected the exposition:\n{}\n---\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(exposition)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Tells apart the files of tests running at once in one process.
fn unique_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
