//! Graceful shutdown of a real server process: SIGTERM while a request is in
//! flight, readiness during the drain delay, refused connections after it,
//! cut requests past the timeout, and the exit code.
//!
//! The binary under test is an example built next to this test by
//! `cargo test`. To point these tests at another binary, change [`TARGET`].

mod common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The binary and routes under test.
struct Target {
    /// Example name, found in `target/<profile>/examples/`.
    binary: &'static str,
    /// A route sleeping for `ms` milliseconds, then answering 200.
    slow: &'static str,
    /// Readiness and liveness routes.
    ready: &'static str,
    live: &'static str,
    /// A log line the binary writes once the slow handler runs, when it has one.
    slow_started_log: Option<&'static str>,
    /// Extra environment for the binary.
    env: &'static [(&'static str, &'static str)],
    /// The body of a completed slow request, given the milliseconds it slept.
    slow_body: fn(u64) -> String,
}

const TARGET: Target = Target {
    binary: "shutdown_axum",
    slow: "/slow?ms=",
    ready: "/health/ready",
    live: "/health/live",
    slow_started_log: Some("slow request started"),
    env: &[],
    slow_body: |_| "done".to_owned(),
};

/// The quickstart: the whole stack, logging human-readable lines.
const QUICKSTART: Target = Target {
    binary: "quickstart",
    env: &[("LOG_FORMAT", "pretty")],
    slow_body: |ms| format!("slept {ms} ms\n"),
    ..TARGET
};

/// The same checks against the hand-written hyper accept loop.
const HYPER: Target = Target {
    binary: "shutdown_hyper",
    ..TARGET
};

const PATIENCE: Duration = Duration::from_secs(30);

struct Server {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(target: &Target, env: &[(&str, &str)]) -> Server {
        // A port found free can be taken by a parallel test before the binary
        // binds it: try another one then.
        for _ in 0..4 {
            match Self::try_start(target, env) {
                Ok(server) => return server,
                Err(log) if log.contains("AddrInUse") => continue,
                Err(log) => panic!("example exited early: {log}"),
            }
        }
        panic!("no free port after 4 tries");
    }

    fn try_start(target: &Target, env: &[(&str, &str)]) -> Result<Server, String> {
        let port = free_port();
        let mut child = command(target, port, env)
            .spawn()
            .expect("start the example");
        // Logs may go to stderr or stdout: collect both.
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stderr.take().unwrap()),
            Box::new(child.stdout.take().unwrap()),
        ];
        for mut pipe in pipes {
            let sink = stderr.clone();
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
        let mut server = Server {
            child,
            port,
            stderr,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok((200, _)) = get(port, target.ready)
                && server.child.try_wait().unwrap().is_none()
            {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                // Let the reader threads catch the last output.
                thread::sleep(Duration::from_millis(50));
                return Err(format!("({status}): {}", server.log()));
            }
            assert!(Instant::now() < deadline, "never ready: {}", server.log());
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in: {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {within:?}: {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a slow request and returns once it is being handled; the answer
    /// is read on a thread.
    fn slow_request(&self, target: &Target, ms: u64) -> thread::JoinHandle<io::Result<String>> {
        let mut stream = connect(self.port).expect("connect for the slow request");
        let path = format!("{}{ms}", target.slow);
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        match target.slow_started_log {
            Some(line) => self.wait_for_log(line),
            None => thread::sleep(Duration::from_millis(500)),
        }
        thread::spawn(move || {
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw)?;
            Ok(String::from_utf8_lossy(&raw).into_owned())
        })
    }
}

fn command(target: &Target, port: u16, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(common::example_binary(target.binary));
    command
        .env("PORT", port.to_string())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .envs(target.env.iter().copied())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(PATIENCE))?;
    Ok(stream)
}

/// One GET on a fresh connection: `(status, body)`.
fn get(port: u16, path: &str) -> io::Result<(u16, String)> {
    let mut stream = connect(port)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    parse(&raw).ok_or_else(|| io::Error::other(format!("bad response {raw:?}")))
}

/// `(status, body)` of a whole response, `None` when it is not one.
fn parse(raw: &str) -> Option<(u16, String)> {
    common::try_parse(raw.as_bytes()).map(|reply| (reply.status, reply.text()))
}

fn drains_gracefully(target: &Target) {
    let mut server = Server::start(
        target,
        &[
            ("SHUTDOWN_DRAIN_DELAY_MS", "1500"),
            ("SHUTDOWN_TIMEOUT_MS", "10000"),
        ],
    );
    let slow = server.slow_request(target, 3000);
    server.sigterm();

    // During the drain delay: still serving, but not ready.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = get(server.port, target.ready).expect("served during the delay");
        if status == 503 {
            assert_eq!(body, r#"{"status":"not_ready","reason":"draining"}"#);
            break;
        }
        assert_eq!(status, 200);
        assert!(Instant::now() < deadline, "readiness never turned 503");
        thread::sleep(Duration::from_millis(10));
    }
    let live = get(server.port, target.live);
    assert!(
        matches!(live, Ok((200, _))),
        "liveness stays up: {live:?} {}",
        server.log()
    );

    // After the delay: new connections are refused while the slow one drains.
    let deadline = Instant::now() + PATIENCE;
    loop {
        match connect(server.port) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
            Err(e) => panic!("unexpected connect error {e}"),
            Ok(_) => {
                assert!(
                    !slow.is_finished(),
                    "slow request ended before the listener closed"
                );
                assert!(Instant::now() < deadline, "listener never closed");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    assert!(!slow.is_finished(), "refusal must come while draining");

    let response = slow.join().unwrap().expect("slow response");
    assert_eq!(
        parse(&response),
        Some((200, (target.slow_body)(3000))),
        "{response}"
    );
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    let log = server.log();
    assert!(log.contains("shutdown started"), "{log}");
    assert!(log.contains("drained"), "{log}");
    assert!(log.contains("shutdown complete"), "{log}");
}

fn cuts_requests_past_the_timeout(target: &Target) {
    let mut server = Server::start(
        target,
        &[
            ("SHUTDOWN_DRAIN_DELAY_MS", "0"),
            ("SHUTDOWN_TIMEOUT_MS", "500"),
        ],
    );
    let slow = server.slow_request(target, 60_000);
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    // The client gets no response: the connection is closed or reset.
    match slow.join().unwrap() {
        Ok(raw) => assert!(parse(&raw).is_none(), "unexpected response {raw:?}"),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
    }
    let log = server.log();
    assert!(
        log.contains("cutting requests still in flight") && log.contains("in_flight=1"),
        "{log}"
    );
    assert!(log.contains("shutdown complete"), "{log}");
}

/// Five connections that never finish their request head, and one idle
/// kept-alive connection, do not hold the quickstart at SIGTERM: `serve` closes
/// them as the listener closes, long before `SHUTDOWN_TIMEOUT_MS`.
#[test]
fn quickstart_does_not_wait_for_half_sent_heads_at_shutdown() {
    let mut server = Server::start(
        &QUICKSTART,
        &[
            ("SHUTDOWN_DRAIN_DELAY_MS", "0"),
            ("SHUTDOWN_TIMEOUT_MS", "5000"),
        ],
    );
    let mut half_sent = Vec::new();
    for _ in 0..5 {
        let mut stream = connect(server.port).expect("connect");
        stream
            .write_all(b"GET /users/42 HTTP/1.1\r\nhost: local")
            .unwrap();
        half_sent.push(stream);
    }
    let mut idle = connect(server.port).expect("connect");
    write!(idle, "GET /users/42 HTTP/1.1\r\nhost: localhost\r\n\r\n").unwrap();
    let mut first = [0; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(20));
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        took < Duration::from_secs(2),
        "held for {took:?}: {}",
        server.log()
    );
    drop(half_sent);
}

/// Ten requests cut at the shutdown deadline: each gets its request line, with
/// `aborted: true`, written before the process exits.
#[test]
fn quickstart_logs_every_cut_request_as_aborted() {
    const CUT: usize = 10;
    let target = Target {
        env: &[("LOG_FORMAT", "json")],
        ..QUICKSTART
    };
    let mut server = Server::start(
        &target,
        &[
            ("SHUTDOWN_DRAIN_DELAY_MS", "0"),
            ("SHUTDOWN_TIMEOUT_MS", "300"),
        ],
    );
    let started = "slow request started";
    let mut clients = Vec::new();
    for n in 1..=CUT {
        let mut stream = connect(server.port).expect("connect for a slow request");
        write!(
            stream,
            "GET /slow?ms=60000 HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let deadline = Instant::now() + PATIENCE;
        while server.log().matches(started).count() < n {
            assert!(
                Instant::now() < deadline,
                "{n} not started: {}",
                server.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
        clients.push(stream);
    }
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    // The reader threads may still hold the last bytes.
    thread::sleep(Duration::from_millis(200));
    let log = server.log();
    let aborted: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["target"] == "tower_ops::request" && l["aborted"] == true)
        .collect();
    assert_eq!(aborted.len(), CUT, "{log}");
    let mut ids: Vec<&str> = aborted
        .iter()
        .map(|l| l["request_id"].as_str().expect("a request id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), CUT, "one line per request: {log}");
    for line in &aborted {
        assert_eq!(line["path"], "/slow?ms=60000", "{line}");
    }
    drop(clients);
}

#[test]
fn drains_then_exits_zero() {
    drains_gracefully(&TARGET);
}

#[test]
fn cuts_and_logs_a_request_longer_than_the_timeout() {
    cuts_requests_past_the_timeout(&TARGET);
}

#[test]
fn quickstart_drains_then_exits_zero() {
    drains_gracefully(&QUICKSTART);
}

#[test]
fn quickstart_cuts_and_logs_a_request_longer_than_the_timeout() {
    cuts_requests_past_the_timeout(&QUICKSTART);
}

#[test]
fn hyper_accept_loop_drains_then_exits_zero() {
    drains_gracefully(&HYPER);
}

#[test]
fn hyper_accept_loop_cuts_past_the_timeout() {
    cuts_requests_past_the_timeout(&HYPER);
}

#[test]
fn invalid_configuration_lists_every_problem() {
    let output = command(
        &TARGET,
        free_port(),
        &[
            ("HEALTH_CHECK_TIMEOUT_MS", "0"),
            ("HEALTH_CACHE_TTL_MS", "soon"),
        ],
    )
    .stderr(Stdio::piped())
    .output()
    .expect("run the example");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in ["HEALTH_CHECK_TIMEOUT_MS", "HEALTH_CACHE_TTL_MS", "\"soon\""] {
        assert!(stderr.contains(needle), "{needle} missing from {stderr}");
    }
}
