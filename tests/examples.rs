//! Runs every example as its own process, as a user would: `PORT=0`, read the
//! `listening on http://ADDR` line, send the requests its documentation shows over
//! loopback, check the answers, then SIGTERM and expect exit status 0.
//!
//! The binaries are the examples `cargo test` builds next to this test, in
//! `target/<profile>/examples/`.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{RawResponse, chunked_post, example_binary, get, post, raw};

/// How long an example may take to start, and a request or a log line to come.
const PATIENCE: Duration = Duration::from_secs(30);

/// A running example; killed when dropped, so a failing test leaves nothing behind.
struct Example {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies everything `pipe` gives into `sink`, on a thread.
fn collect(mut pipe: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
    thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

impl Example {
    fn start(name: &'static str, env: &[(&str, &str)]) -> Example {
        let mut child = Command::new(example_binary(name))
            .env("PORT", "0")
            .env("NO_COLOR", "1")
            .env("LOG_FORMAT", "json")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), stdout.clone());
        collect(child.stderr.take().unwrap(), stderr.clone());
        let mut example = Example {
            name,
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            stdout,
            stderr,
        };
        let line = example.wait_for("listening on http://");
        let out = example.stdout();
        let listening = out
            .lines()
            .filter(|l| l.starts_with("listening on "))
            .count();
        assert_eq!(listening, 1, "{name}: {out}");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{name}: bad line {line:?}"));
        example.addr = addr;
        example
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr.lock().unwrap()
        )
    }

    /// Waits for a stdout line containing `needle` and returns it.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self.stdout().lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                thread::sleep(Duration::from_millis(100));
                panic!("{} exited ({status}): {}", self.name, self.output());
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {needle:?} in: {}",
                self.name,
                self.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The JSON log lines with `message` = `request completed`.
    fn request_lines(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == "request completed")
            .collect()
    }

    /// Waits until `count` request lines were logged.
    fn wait_for_requests(&self, count: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let lines = self.request_lines();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {}",
                self.name,
                self.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status, which must be success.
    fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let status = self.wait_exit();
        thread::sleep(Duration::from_millis(50));
        assert!(
            status.success(),
            "{} exited with {status}: {}",
            self.name,
            self.output()
        );
        self.output()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after SIGTERM: {}",
                self.name,
                self.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn assert_problem(r: &RawResponse, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/problem+json");
    let json = r.json();
    assert_eq!(json["status"], status);
    assert_eq!(json["code"], code, "{json}");
    json
}

#[tokio::test]
async fn request_id() {
    let ex = Example::start("request_id", &[]);
    let r = get(ex.addr, "/", "").await;
    assert_eq!(r.status, 200);
    let id = r.header("x-request-id").to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(&id[14..15], "7", "version 7: {id}");
    assert_eq!(r.text(), format!("your request id is {id}\n"));

    let r = get(ex.addr, "/", "x-request-id: order-42\r\n").await;
    assert_eq!(r.header("x-request-id"), "order-42");
    assert_eq!(r.text(), "your request id is order-42\n");

    let r = get(ex.addr, "/", "x-request-id: bad id\"!\r\n").await;
    assert_ne!(r.header("x-request-id"), "bad id\"!");
    assert!(!r.text().contains("bad id"));

    let r = get(ex.addr, "/missing", "x-correlation-id: lost-1\r\n").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-request-id"), "lost-1");
    ex.stop();
}

#[tokio::test]
async fn client_ip() {
    let ex = Example::start("client_ip", &[]);
    let r = get(ex.addr, "/", "").await;
    assert_eq!(r.text(), "127.0.0.1 (direct peer)\n");
    let r = get(ex.addr, "/", "x-forwarded-for: 203.0.113.9\r\n").await;
    assert_eq!(r.text(), "127.0.0.1 (direct peer)\n", "untrusted peer");
    ex.stop();

    let ex = Example::start("client_ip", &[("TRUSTED_PROXIES", "127.0.0.1/32")]);
    let r = get(
        ex.addr,
        "/",
        "x-forwarded-for: 198.51.100.1, 203.0.113.9\r\n",
    )
    .await;
    assert_eq!(r.text(), "203.0.113.9 (via a trusted proxy)\n");
    ex.stop();

    // A bad variable stops start-up, naming it.
    let out = Command::new(example_binary("client_ip"))
        .env("PORT", "0")
        .env("TRUSTED_PROXIES", "10.0.0.0/33")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TRUSTED_PROXIES"));
}

#[tokio::test]
async fn request_log() {
    let mut ex = Example::start("request_log", &[]);
    let r = get(
        ex.addr,
        "/users/42?token=s3cret&page=2",
        "x-request-id: log-1\r\nuser-agent: tests\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = get(ex.addr, "/slow?ms=300", "x-request-id: log-2\r\n").await;
    assert_eq!(r.text(), "done\n");
    let r = get(ex.addr, "/missing", "x-request-id: log-3\r\n").await;
    assert_eq!(r.status, 404);

    let lines = ex.wait_for_requests(3);
    let by_id = |id: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == id)
            .unwrap_or_else(|| panic!("no line for {id}: {lines:?}"))
            .clone()
    };
    let user = by_id("log-1");
    assert_eq!(user["route"], "/users/{id}");
    assert_eq!(user["path"], "/users/42?token=[REDACTED]&page=2");
    assert_eq!(user["status"], 200);
    assert_eq!(user["method"], "GET");
    assert_eq!(user["client_ip"], "127.0.0.1");
    assert_eq!(user["user_agent"], "tests");
    assert_eq!(user["user_id"], 42);
    assert_eq!(user["level"], "INFO");
    assert!(user["duration_ms"].is_number());
    let slow = by_id("log-2");
    assert_eq!(slow["slow"], true);
    assert_eq!(slow["level"], "WARN");
    let missing = by_id("log-3");
    assert_eq!(missing["status"], 404);
    assert_eq!(missing["level"], "WARN");
    // The handler's own event carries the request id at its root.
    let event = ex.wait_for("looking the user up");
    let event: serde_json::Value = serde_json::from_str(&event).unwrap();
    assert_eq!(event["request_id"], "log-1");
    let out = ex.stop();
    assert!(!out.contains("s3cret"), "{out}");
}

#[tokio::test]
async fn metrics() {
    let ex = Example::start("metrics", &[]);
    for _ in 0..3 {
        assert_eq!(get(ex.addr, "/users/7", "").await.status, 200);
    }
    let r = get(ex.addr, "/metrics", "").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .starts_with("application/openmetrics-text")
    );
    let text = r.text();
    let count = text
        .lines()
        .find(|l| {
            l.starts_with("http_server_request_duration_seconds_count")
                && l.contains("http_route=\"/users/{id}\"")
                && l.contains("http_response_status_code=\"200\"")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(count.ends_with(" 3"), "{count}");
    assert!(
        !text.contains("http_route=\"/metrics\""),
        "probes are skipped"
    );
    assert!(text.ends_with("# EOF\n"));
    ex.stop();

    let ex = Example::start("metrics", &[("METRICS_TOKEN", "s3cret")]);
    assert_eq!(get(ex.addr, "/metrics", "").await.status, 401);
    let r = get(ex.addr, "/metrics", "authorization: Bearer wrong\r\n").await;
    assert_eq!(r.status, 401);
    let r = get(ex.addr, "/metrics", "authorization: Bearer s3cret\r\n").await;
    assert_eq!(r.status, 200);
    ex.stop();
}

/// The README's one-value stack: ready once it listens, with nobody calling
/// `mark_ready`, and draining (then exit 0) on SIGTERM.
#[tokio::test]
async fn stack_from_env() {
    let ex = Example::start("stack_from_env", &[]);
    let ready = get(ex.addr, "/health/ready", "").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json(), serde_json::json!({"status": "ready"}));
    let r = get(ex.addr, "/users/42", "x-request-id: readme-1\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "user 42\n");
    assert_eq!(r.header("x-request-id"), "readme-1");
    let metrics = get(ex.addr, "/metrics", "").await.text();
    assert!(metrics.contains("http_route=\"/users/{id}\""), "{metrics}");
    assert!(
        metrics.contains("\nlog_dropped_lines_total 0\n"),
        "{metrics}"
    );
    // The scrape's own connection is open while it is answered. The earlier
    // connections are closed by then from the client's side; the server counts
    // each one out when its task ends, a moment after the last byte is sent.
    scrape_until(ex.addr, "\nhttp_server_open_connections 1\n").await;
    // A head the server refuses is counted before any layer runs.
    let refused = raw(ex.addr, b"GARBAGE\r\n\r\n").await;
    assert_eq!(refused.status, 400);
    scrape_until(
        ex.addr,
        "http_server_connection_errors_total{kind=\"parse\"} 1\n",
    )
    .await;
    let line = &ex.wait_for_requests(1)[0];
    assert_eq!(line["request_id"], "readme-1");
    let out = ex.stop();
    assert!(out.contains("readiness set to draining"), "{out}");
}

/// Scrapes `/metrics` until it contains `want`, for up to five seconds.
async fn scrape_until(addr: SocketAddr, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = get(addr, "/metrics", "").await.text();
        if text.contains(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {want:?} within 5 s in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every `rust` block of the README is compiled code: its lines, trimmed, appear
/// one after another in an example (built by `cargo test`) or in a doc comment
/// of the crate (run as a doctest), so no snippet can drift from what compiles.
#[test]
fn every_readme_snippet_is_compiled_code() {
    fn trimmed(text: &str) -> Vec<String> {
        text.lines()
            .map(|l| {
                let l = l.trim();
                let l = l
                    .strip_prefix("//!")
                    .or_else(|| l.strip_prefix("///"))
                    .unwrap_or(l);
                l.trim().to_owned()
            })
            .filter(|l| !l.is_empty())
            .collect()
    }
    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut files = Vec::new();
    rust_files(&root.join("examples"), &mut files);
    rust_files(&root.join("src"), &mut files);
    let sources: Vec<(String, Vec<String>)> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            (f.display().to_string(), trimmed(&text))
        })
        .collect();
    let mut blocks = 0;
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("```rust\n") {
        let body = &rest[start + "```rust\n".len()..];
        let end = body.find("```\n").expect("a closed code block");
        let snippet = trimmed(&body[..end]);
        rest = &body[end..];
        blocks += 1;
        assert!(!snippet.is_empty(), "empty rust block in README.md");
        let found = sources.iter().any(|(_, lines)| {
            lines
                .windows(snippet.len())
                .any(|window| window == snippet.as_slice())
        });
        assert!(
            found,
            "README.md rust block {blocks} is in no example or doc comment:\n{}",
            snippet.join("\n")
        );
    }
    assert!(blocks >= 3, "only {blocks} rust blocks found");
}

/// The README quotes `examples/stack_from_env.rs` whole; the copy must not drift.
#[test]
fn readme_quotes_stack_from_env() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example = std::fs::read_to_string(format!("{root}/examples/stack_from_env.rs")).unwrap();
    let quoted = format!("```rust\n{example}```\n");
    assert!(
        readme.contains(&quoted),
        "README.md no longer quotes examples/stack_from_env.rs verbatim"
    );
}

#[tokio::test]
async fn rate_limit() {
    let ex = Example::start("rate_limit", &[]);
    let first = get(ex.addr, "/", "").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("ratelimit-policy"), "\"default\";q=5;w=60");
    assert!(
        first.header("ratelimit").starts_with("\"default\";r=4;t="),
        "{first:?}"
    );
    for _ in 0..4 {
        assert_eq!(get(ex.addr, "/", "").await.status, 200);
    }
    let limited = get(ex.addr, "/", "").await;
    let json = assert_problem(&limited, 429, "RATE_LIMITED");
    let retry: u64 = limited.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(json["detail"].as_str().unwrap().contains("retry in"));
    // Probes are never limited and carry no rate-limit headers.
    let probe = get(ex.addr, "/health/live", "").await;
    assert_eq!(probe.status, 200);
    assert!(probe.first("ratelimit").is_none());
    ex.stop();

    // The stricter login policy: two a minute.
    let ex = Example::start("rate_limit", &[]);
    let login = || {
        raw(
            ex.addr,
            b"POST /login HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        )
    };
    let r = login().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-policy"), "\"login\";q=2;w=60");
    assert_eq!(login().await.status, 200);
    assert_problem(&login().await, 429, "RATE_LIMITED");
    ex.stop();
}

/// `GET /me` as user `id` (`Bearer user-<id>`).
async fn me(addr: SocketAddr, id: u64) -> RawResponse {
    get(addr, "/me", &format!("authorization: Bearer user-{id}\r\n")).await
}

#[tokio::test]
async fn per_user_limits() {
    let ex = Example::start("per_user_limits", &[]);
    for i in 0..5 {
        let r = me(ex.addr, 42).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.text(), "user 42\n");
        assert_eq!(r.header("ratelimit-policy"), "\"user\";q=5;w=60");
        let left = format!("\"user\";r={};t=", 4 - i);
        assert!(r.header("ratelimit").starts_with(&left), "{r:?}");
    }
    let limited = me(ex.addr, 42).await;
    let json = assert_problem(&limited, 429, "RATE_LIMITED");
    assert_eq!(limited.header("ratelimit-policy"), "\"user\";q=5;w=60");
    assert!(limited.header("ratelimit").starts_with("\"user\";r=0;t="));
    let retry: u64 = limited.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(json["request_id"].is_string());
    // Another user has a bucket of their own.
    let other = me(ex.addr, 43).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.text(), "user 43\n");
    assert!(other.header("ratelimit").starts_with("\"user\";r=4;t="));

    // Without valid credentials: 401 from the handler, counted per IP only.
    let mut refused = vec![get(ex.addr, "/me", "").await];
    let huge = format!("Bearer user-{}", "4".repeat(8000));
    for value in [
        "Basic dXNlcjpwYXNz",
        "Bearer user-",
        "Bearer user-abc",
        "Bearer user--1",
        "Bearer user-99999999999999999999999",
        "Bearer  user-42",
        "Bearer user-42, Bearer user-43",
        &huge,
    ] {
        refused.push(get(ex.addr, "/me", &format!("authorization: {value}\r\n")).await);
    }
    // Not even text.
    let latin1 = b"GET /me HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
                   authorization: Bearer user-4\xff2\r\n\r\n";
    refused.push(raw(ex.addr, latin1).await);
    for r in &refused {
        assert_problem(r, 401, "UNAUTHORIZED");
        assert_eq!(r.header("www-authenticate"), "Bearer");
        assert_eq!(r.header("ratelimit-policy"), "\"default\";q=100;w=60");
    }
    // Probes are neither limited nor behind authentication.
    let ready = get(ex.addr, "/health/ready", "").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert!(ready.first("ratelimit").is_none());

    let lines = ex.wait_for_requests(7 + refused.len());
    let rejected: Vec<_> = lines
        .iter()
        .filter(|l| l["rejected_by"] == "rate_limit")
        .collect();
    assert_eq!(rejected.len(), 1, "{lines:?}");
    assert_eq!(rejected[0]["route"], "/me");
    assert_eq!(rejected[0]["status"], 429);
    ex.stop();

    // RATE_LIMIT_MAX_REQUESTS still sets the per-IP default, across users.
    let ex = Example::start("per_user_limits", &[("RATE_LIMIT_MAX_REQUESTS", "3")]);
    let first = me(ex.addr, 42).await;
    assert_eq!(first.status, 200);
    // 2 of 3 left per IP is closer to the limit than 4 of 5 for the user.
    assert_eq!(first.header("ratelimit-policy"), "\"default\";q=3;w=60");
    assert_eq!(me(ex.addr, 43).await.status, 200);
    assert_eq!(get(ex.addr, "/me", "").await.status, 401);
    let limited = me(ex.addr, 44).await;
    assert_problem(&limited, 429, "RATE_LIMITED");
    assert_eq!(limited.header("ratelimit-policy"), "\"default\";q=3;w=60");
    ex.stop();
}

#[tokio::test]
async fn body_limit() {
    let ex = Example::start("body_limit", &[]);
    let r = raw(
        ex.addr,
        &post("/echo", "application/json", b"{\"hello\":\"world\"}"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "{\"hello\":\"world\"}");
    // Exactly the limit passes; one byte more does not.
    let r = raw(ex.addr, &post("/echo", "text/plain", &[b'x'; 1024])).await;
    assert_eq!(r.status, 200);
    let r = raw(ex.addr, &post("/echo", "text/plain", &[b'x'; 1025])).await;
    let json = assert_problem(&r, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(
        json["detail"],
        "request body of 1025 bytes exceeds the limit of 1024 bytes"
    );
    // Streamed without a length: counted as it arrives.
    let r = raw(ex.addr, &chunked_post("/echo", 2000, 100, "")).await;
    assert_problem(&r, 413, "PAYLOAD_TOO_LARGE");
    // The upload route has 1 MiB.
    let r = raw(ex.addr, &chunked_post("/upload", 200_000, 8192, "")).await;
    assert_eq!(r.text(), "received 200000 bytes\n");
    ex.stop();
}

/// The app's own `fmt().json()` subscriber: the request line's fields under
/// `"fields"`, `user_id` a number, and the request span on the handler's and a
/// spawned task's lines.
#[tokio::test]
async fn own_subscriber() {
    let ex = Example::start("own_subscriber", &[]);
    let r = get(ex.addr, "/users/42", "x-request-id: own-1\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "user 42\n");
    let deadline = Instant::now() + PATIENCE;
    let lines = loop {
        let lines: Vec<serde_json::Value> = ex
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines
            .iter()
            .any(|l| l["fields"]["message"] == "request completed")
        {
            break lines;
        }
        assert!(Instant::now() < deadline, "{}", ex.output());
        thread::sleep(Duration::from_millis(20));
    };
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line: {lines:?}"))
    };
    let request = find("request completed");
    assert_eq!(request["target"], "tower_ops::request");
    assert_eq!(request["fields"]["user_id"], 42, "{request}");
    assert_eq!(request["fields"]["plan"], "pro", "{request}");
    assert_eq!(request["fields"]["status"], 200, "{request}");
    assert_eq!(request["fields"]["route"], "/users/{id}", "{request}");
    assert_eq!(request["span"]["request_id"], "own-1", "{request}");
    for message in ["looking the user up", "audit record written"] {
        let line = find(message);
        assert_eq!(line["span"]["request_id"], "own-1", "{line}");
        assert_eq!(line["fields"]["id"], 42, "{line}");
    }
    ex.stop();
}

#[tokio::test]
async fn timeout() {
    let ex = Example::start("timeout", &[]);
    let r = get(ex.addr, "/slow?ms=50", "").await;
    assert_eq!(r.text(), "slept 50 ms\n");
    let r = get(ex.addr, "/slow?ms=20000", "").await;
    assert_problem(&r, 504, "TIMEOUT");
    let r = get(ex.addr, "/report?ms=1500", "").await;
    assert_eq!(r.status, 200, "the report route has 5 s");
    assert_eq!(r.text(), "slept 1500 ms\n");
    ex.stop();
}

#[tokio::test]
async fn load_shed() {
    let ex = Example::start("load_shed", &[]);
    // Eight slow requests at once against a limit of four.
    let slow: Vec<_> = (0..8)
        .map(|_| {
            let addr = ex.addr;
            tokio::spawn(async move { get(addr, "/slow?ms=1500", "").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // At the limit, the probes still answer.
    assert_eq!(get(ex.addr, "/health/live", "").await.status, 200);
    let metrics = get(ex.addr, "/metrics", "").await.text();
    assert!(
        metrics.contains("http_server_concurrency_limit 4\n"),
        "{metrics}"
    );
    let mut statuses = Vec::new();
    for r in slow {
        let r = r.await.unwrap();
        if r.status == 503 {
            assert_problem(&r, 503, "OVERLOADED");
            assert_eq!(r.header("retry-after"), "1");
        }
        statuses.push(r.status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 503, 503, 503, 503]);
    ex.stop();
}

#[tokio::test]
async fn security_headers() {
    let ex = Example::start("security_headers", &[]);
    let r = get(ex.addr, "/api", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    assert_eq!(r.header("x-frame-options"), "DENY");
    assert_eq!(
        r.header("content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(r.header("cache-control"), "no-store");
    assert!(r.first("strict-transport-security").is_none(), "plain HTTP");
    let r = get(ex.addr, "/page", "").await;
    assert_eq!(r.header("cache-control"), "public, max-age=60");
    assert!(r.first("server").is_none());
    ex.stop();

    let ex = Example::start("security_headers", &[("SECURITY_HEADERS", "web")]);
    let r = get(ex.addr, "/page", "").await;
    assert_eq!(r.header("x-frame-options"), "SAMEORIGIN");
    assert_eq!(r.header("origin-agent-cluster"), "?1");
    ex.stop();
}

#[tokio::test]
async fn errors() {
    let ex = Example::start("errors", &[]);
    assert_eq!(get(ex.addr, "/users/1", "").await.text(), "user 1\n");
    let json = assert_problem(
        &get(ex.addr, "/users/abc", "").await,
        400,
        "VALIDATION_FAILED",
    );
    assert_eq!(json["errors"][0]["field"], "id");
    let json = assert_problem(&get(ex.addr, "/users/9", "").await, 404, "NOT_FOUND");
    assert_eq!(json["detail"], "no user 9");
    assert_problem(&get(ex.addr, "/nowhere", "").await, 404, "NOT_FOUND");

    let r = raw(
        ex.addr,
        &post("/users", "application/json", br#"{"email":"x","age":300}"#),
    )
    .await;
    let json = assert_problem(&r, 422, "VALIDATION_FAILED");
    assert_eq!(json["errors"][0]["pointer"], "/age", "{json}");
    let r = raw(
        ex.addr,
        &post("/users", "application/json", br#"{"email":"x","age":30}"#),
    )
    .await;
    let json = assert_problem(&r, 422, "VALIDATION_FAILED");
    assert_eq!(json["errors"][0]["pointer"], "/email");
    let r = raw(ex.addr, &post("/users", "application/json", b"{\"email\":")).await;
    assert_problem(&r, 400, "BAD_REQUEST");
    let r = raw(
        ex.addr,
        &post(
            "/users",
            "application/json",
            br#"{"email":"a@b.c","age":30}"#,
        ),
    )
    .await;
    assert_eq!(r.status, 201);

    let r = get(ex.addr, "/panic", "").await;
    assert_problem(&r, 500, "INTERNAL");
    assert!(!r.text().contains("abc123") && !r.text().contains("invariant"));
    ex.stop();

    let ex = Example::start("errors", &[("ERROR_FORMAT", "wrapped")]);
    let r = get(ex.addr, "/users/9", "").await;
    assert_eq!(r.status, 404);
    let json = r.json();
    assert_eq!(json["success"], false);
    assert_eq!(json["error"]["code"], "NOT_FOUND");
    ex.stop();
}

/// The stand-in tracker's lines on stderr, parsed.
fn error_reports(ex: &Example) -> Vec<serde_json::Value> {
    ex.stderr
        .lock()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("error report "))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn error_reporting() {
    let ex = Example::start("error_reporting", &[]);
    // Successes and client errors first: the reporter keeps the order of the
    // responses, so once the two 5xx reports are in, a 4xx report would be too.
    assert_eq!(get(ex.addr, "/users/7", "").await.status, 200);
    assert_problem(&get(ex.addr, "/users/0", "").await, 404, "NOT_FOUND");
    assert_problem(
        &get(ex.addr, "/users/abc", "").await,
        400,
        "VALIDATION_FAILED",
    );
    assert_problem(&get(ex.addr, "/nowhere", "").await, 404, "NOT_FOUND");
    assert_eq!(get(ex.addr, "/health/ready", "").await.status, 200);
    let fail = get(
        ex.addr,
        "/fail?token=s3cret",
        "x-request-id: report-fail\r\nauthorization: Bearer s3cret.jwt.value\r\n",
    )
    .await;
    assert_problem(&fail, 500, "INTERNAL");
    let panic = get(ex.addr, "/panic", "x-request-id: report-panic\r\n").await;
    assert_problem(&panic, 500, "INTERNAL");

    let deadline = Instant::now() + PATIENCE;
    while error_reports(&ex).len() < 2 {
        assert!(Instant::now() < deadline, "{}", ex.output());
        thread::sleep(Duration::from_millis(20));
    }
    let reports = error_reports(&ex);
    assert_eq!(reports.len(), 2, "{reports:?}");
    let failed = &reports[0];
    assert_eq!(failed["request_id"], "report-fail");
    assert_eq!(failed["status"], 500);
    assert_eq!(failed["code"], "INTERNAL");
    assert_eq!(failed["route"], "/fail");
    assert_eq!(failed["uri"], "/fail?token=[REDACTED]");
    assert_eq!(failed["headers"]["authorization"], "Bearer [REDACTED]");
    assert_eq!(failed["client_ip"], "127.0.0.1");
    assert!(failed["panic"].is_null());
    let chain = failed["error_chain"].as_array().unwrap();
    assert_eq!(chain.len(), 1, "{failed}");
    assert!(chain[0].as_str().unwrap().contains("refused"), "{failed}");
    let panicked = &reports[1];
    assert_eq!(panicked["request_id"], "report-panic");
    assert_eq!(panicked["rejected_by"], "panic");
    assert!(
        panicked["panic"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invariant broken for token=[REDACTED]"),
        "{panicked}"
    );
    let location = panicked["panic"]["location"].as_str().unwrap();
    assert!(
        location.starts_with("examples/error_reporting.rs:"),
        "{location}"
    );

    let out = ex.stop();
    assert_eq!(error_reports_in(&out), 2, "no late report: {out}");
    for secret in ["s3cret", "hunter2", "abc123"] {
        assert!(!out.contains(secret), "{secret} leaked: {out}");
    }
}

fn error_reports_in(output: &str) -> usize {
    output
        .lines()
        .filter(|l| l.starts_with("error report "))
        .count()
}

#[tokio::test]
async fn redact() {
    let ex = Example::start("redact", &[]);
    let login = post(
        "/login",
        "application/json\r\nauthorization: Bearer abc.def",
        br#"{"user":"ada","password":"hunter2","tenant_pin":1234}"#,
    );
    let r = raw(ex.addr, &login).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(ex.addr, "/callback?code=0x5ecret&state=abc", "").await;
    assert_eq!(r.status, 200);
    let r = raw(
        ex.addr,
        &post(
            "/scrub",
            "text/plain",
            b"connect postgres://app:s3cret@db/x failed",
        ),
    )
    .await;
    assert_eq!(r.text(), "connect postgres://app:[REDACTED]@db/x failed\n");

    let lines = ex.wait_for_requests(3);
    let login = lines.iter().find(|l| l["path"] == "/login").unwrap();
    assert_eq!(
        login["headers"]["authorization"], "Bearer [REDACTED]",
        "{login}"
    );
    let body = login["request_body"].to_string();
    assert!(
        body.contains("ada") && body.contains("[REDACTED]"),
        "{body}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["path"] == "/callback?code=[REDACTED]&state=abc")
    );
    let out = ex.stop();
    for secret in ["hunter2", "1234", "abc.def", "0x5ecret"] {
        assert!(!out.contains(secret), "{secret} in {out}");
    }
}

#[tokio::test]
async fn hyper_stack() {
    let env = [
        ("REQUEST_TIMEOUT_MS", "500"),
        ("RATE_LIMIT_MAX_REQUESTS", "6"),
        ("BODY_LIMIT_BYTES", "64"),
    ];
    let ex = Example::start("hyper_stack", &env);
    let r = get(ex.addr, "/", "x-request-id: hyper-1\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from hyper\n");
    assert_eq!(r.header("x-request-id"), "hyper-1");
    assert!(r.header("ratelimit").starts_with("\"default\";r=5;"));
    let r = raw(ex.addr, &post("/echo", "application/json", b"{\"a\":1}")).await;
    assert_eq!(r.text(), "{\"a\":1}");
    let r = raw(
        ex.addr,
        &chunked_post("/echo", 100, 10, "x-request-id: big-1\r\n"),
    )
    .await;
    let json = assert_problem(&r, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(json["request_id"], "big-1");
    let r = get(ex.addr, "/slow?ms=20000", "").await;
    assert_problem(&r, 504, "TIMEOUT");
    let r = get(ex.addr, "/nowhere", "").await;
    assert_problem(&r, 404, "NOT_FOUND");
    // 5 of 6 spent; /metrics is skipped by the limiter.
    assert_eq!(get(ex.addr, "/", "").await.status, 200);
    let r = get(ex.addr, "/", "x-request-id: over-1\r\n").await;
    let json = assert_problem(&r, 429, "RATE_LIMITED");
    assert_eq!(json["request_id"], "over-1");
    assert_eq!(r.header("x-request-id"), "over-1");
    let r = get(ex.addr, "/metrics", "").await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(
        text.lines()
            .any(|l| l.starts_with("http_server_rejections_total")
                && l.contains("rejected_by=\"rate_limit\"")
                && l.ends_with(" 1")),
        "{text}"
    );
    let lines = ex.wait_for_requests(7);
    let over = lines.iter().find(|l| l["request_id"] == "over-1").unwrap();
    assert_eq!(over["status"], 429);
    assert_eq!(over["rejected_by"], "rate_limit");
    ex.stop();
}

#[cfg(feature = "tonic")]
#[path = "support/greeter.rs"]
mod greeter;

#[cfg(feature = "tonic")]
mod grpc {
    use tonic::{Code, Response, Status};

    use super::greeter::{self, HelloReply, SAY_HELLO};
    use super::*;

    async fn call(
        grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
        name: &str,
    ) -> Result<Response<HelloReply>, Status> {
        greeter::call(grpc, SAY_HELLO, name, PATIENCE).await
    }

    // Several threads: the client's connection task must run while the test
    // waits for the server to exit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quota_spent_gives_resource_exhausted() {
        let ex = Example::start("grpc", &[]);
        let url = format!("http://{}", ex.addr);
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .connect_timeout(PATIENCE)
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        for i in 1..=3 {
            let name = format!("call-{i}");
            let reply = call(&mut grpc, &name).await.expect("within the quota");
            assert_eq!(
                reply.get_ref().message,
                format!("hello {name} (request {name})")
            );
            assert_eq!(reply.metadata().get("x-request-id").unwrap(), &name[..]);
            assert!(reply.metadata().get("ratelimit").is_some());
        }
        let status = call(&mut grpc, "call-4").await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(status.code() as i32, 8);
        assert!(
            status
                .message()
                .starts_with("rate limit exceeded, retry in")
        );
        let retry: u64 = status
            .metadata()
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1);
        assert_eq!(status.metadata().get("x-request-id").unwrap(), "call-4");

        // The example's own client mode sees code 8 too (same IP, quota spent).
        let out = tokio::task::spawn_blocking(move || {
            Command::new(example_binary("grpc"))
                .args(["--client", &url, "2"])
                .output()
                .unwrap()
        });
        let out = tokio::time::timeout(PATIENCE, out).await.unwrap().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(
            stdout.contains("call 1: ResourceExhausted (code 8)"),
            "{stdout}"
        );
        assert!(
            stdout.contains("call 2: ResourceExhausted (code 8)"),
            "{stdout}"
        );

        drop(grpc);
        let lines = ex.wait_for_requests(6);
        let limited = lines.iter().find(|l| l["request_id"] == "call-4").unwrap();
        assert_eq!(limited["rejected_by"], "rate_limit");
        assert_eq!(limited["code"], "RATE_LIMITED");
        // HTTP 200 on the wire, a rejection in the log.
        assert_eq!(limited["level"], "WARN", "{limited}");
        assert_eq!(limited["route"], "/demo.Greeter/SayHello", "{limited}");
        let ok = lines.iter().find(|l| l["request_id"] == "call-1").unwrap();
        assert_eq!(ok["route"], "/demo.Greeter/SayHello", "{ok}");
        assert_eq!(ok["client_ip"], "127.0.0.1", "{ok}");
        let out = ex.stop();
        // The metrics written on the way out counted the rejections.
        assert!(out.contains("http_server_rejections_total"), "{out}");
    }

    /// Over the wire: the rejection is a trailers-only HTTP/2 response, HTTP 200,
    /// `content-type: application/grpc`, `grpc-status: 8`, no body and no trailers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rejection_is_trailers_only_on_the_wire() {
        use bytes::Bytes;
        use http_body_util::{BodyExt, Full};
        use hyper_util::rt::{TokioExecutor, TokioIo};

        let ex = Example::start("grpc", &[]);
        let stream = tokio::net::TcpStream::connect(ex.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        let driver = tokio::spawn(conn);
        let mut answers = Vec::new();
        for _ in 0..4 {
            // An empty HelloRequest: uncompressed flag, length 0.
            let request = http::Request::post(format!("http://{}/demo.Greeter/SayHello", ex.addr))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
                .unwrap();
            let response = tokio::time::timeout(PATIENCE, sender.send_request(request))
                .await
                .unwrap()
                .unwrap();
            let (parts, body) = response.into_parts();
            let collected = tokio::time::timeout(PATIENCE, body.collect())
                .await
                .unwrap()
                .unwrap();
            answers.push((parts, collected));
        }
        for (parts, collected) in &answers[..3] {
            assert_eq!(parts.status, 200);
            assert!(
                parts.headers.get("grpc-status").is_none(),
                "status comes in trailers"
            );
            assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        }
        let (parts, collected) = answers.pop().unwrap();
        assert_eq!(parts.status, 200);
        assert_eq!(parts.headers["content-type"], "application/grpc");
        assert_eq!(parts.headers["grpc-status"], "8");
        assert!(
            parts.headers["grpc-message"]
                .to_str()
                .unwrap()
                .starts_with("rate limit exceeded, retry in")
        );
        assert!(parts.headers.contains_key("retry-after"));
        assert!(parts.headers.contains_key("ratelimit"));
        assert!(parts.headers.contains_key("x-request-id"));
        assert!(collected.trailers().is_none(), "trailers-only");
        assert!(collected.to_bytes().is_empty());
        drop(sender);
        driver.abort();
        ex.stop();
    }
}
