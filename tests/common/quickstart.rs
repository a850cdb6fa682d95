//! The quickstart example as a child process: started with extra variables and
//! read up to its `listening` line, stopped with SIGTERM.
#![allow(dead_code, unreachable_pub)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::example_binary;

/// How long a child gets to stop.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Every JSON line of `stdout`, parsed.
pub fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// Reads a pipe to its end on a thread.
pub fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// The quickstart example logging JSON to a piped stdout, started and read up to
/// its `listening` line: the child, its address, what it printed so far, its
/// stdout from there on and a thread collecting its stderr.
pub fn start_quickstart(
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    std::net::SocketAddr,
    String,
    std::io::BufReader<std::process::ChildStdout>,
    std::thread::JoinHandle<String>,
) {
    let mut child = Command::new(example_binary("quickstart"))
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the quickstart example (built by `cargo test`)");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let mut seen = String::new();
    let addr = loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(n > 0, "exited before listening: {seen}");
        seen.push_str(&line);
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["message"] == "listening"
        {
            break v["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    (child, addr, seen, stdout, stderr)
}

/// SIGTERM, then the exit status within [`PATIENCE`].
pub fn stop(child: &mut std::process::Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}
