//! The logging set-up in real processes. The panic hook: a panic in a request
//! (the quickstart example), in a spawned task and in the test thread of this
//! binary run again as a child, each becomes one JSON ERROR event on stdout and
//! nothing on stderr. The writer: a stdout reader that goes away costs the lines,
//! not the server.

mod common;
#[path = "common/quickstart.rs"]
mod quickstart;

use std::process::Command;
use std::time::Duration;

use common::get;
use quickstart::{drain, json_lines, start_quickstart, stop};
use serde_json::Value;

const CHILD: &str = "TOWER_OPS_PANIC_CHILD";

fn panic_events(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| l["target"] == "tower_ops::panic")
        .collect()
}

#[tokio::test]
async fn a_request_panic_is_one_event_with_its_request_id() {
    let (mut child, addr, seen, stdout, stderr) = start_quickstart(&[]);
    let rest = drain(stdout);

    let reply = get(addr, "/panic", "").await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(reply.header("content-type"), "application/problem+json");
    assert_eq!(reply.json()["code"], "INTERNAL");
    let id = reply.header("x-request-id").to_owned();
    // The request line is written after the last body byte: give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let status = stop(&mut child);
    let out = format!("{seen}{}", rest.join().unwrap());
    let err = stderr.join().unwrap();
    assert!(status.success(), "{status}: {out}\n{err}");

    assert!(!err.contains("panicked at"), "raw panic on stderr: {err}");
    let lines = json_lines(&out);
    let panics = panic_events(&lines);
    assert_eq!(panics.len(), 1, "{out}");
    let event = panics[0];
    assert_eq!(event["level"], "ERROR");
    assert_eq!(event["message"], "panic");
    assert_eq!(event["request_id"], id.as_str(), "{event}");
    assert!(
        event["panic"]
            .as_str()
            .unwrap()
            .contains("the handler panicked on purpose"),
        "{event}"
    );
    assert!(
        event["location"]
            .as_str()
            .unwrap()
            .starts_with("examples/quickstart.rs:"),
        "{event}"
    );
    assert!(event.get("backtrace").is_none(), "{event}");
    assert!(
        !lines
            .iter()
            .any(|l| l["message"] == "request handler panicked"),
        "logged twice: {out}"
    );
    let request = lines
        .iter()
        .find(|l| l["message"] == "request completed" && l["request_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no request line: {out}"));
    assert_eq!(request["rejected_by"], "panic", "{request}");
    assert_eq!(request["code"], "INTERNAL", "{request}");
}

/// The reader of the server's stdout goes away (a log shipper that died): the
/// writes fail with EPIPE, the server keeps answering and exits cleanly.
#[tokio::test]
async fn a_log_reader_that_goes_away_does_not_stop_the_server() {
    let (mut child, addr, _, stdout, stderr) =
        start_quickstart(&[("RATE_LIMIT_MAX_REQUESTS", "100000")]);
    drop(stdout);
    for n in 0..300 {
        let reply = get(addr, "/users/42", "").await;
        assert_eq!(reply.status, 200, "request {n}: {}", reply.text());
    }
    // Long enough for the writer's timer to try the pipe more than once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = get(addr, "/health/live", "").await;
    assert_eq!(reply.status, 200);
    let status = stop(&mut child);
    let err = stderr.join().unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// This binary again, running only [`child`] in `mode`; its stdout and stderr.
fn run_child(mode: &str, env: &[(&str, &str)]) -> (String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--include-ignored", "--nocapture"])
        .env(CHILD, mode)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn one_panic_event(stdout: &str, stderr: &str, text: &str) -> Value {
    assert!(
        !stderr.contains("panicked at"),
        "raw panic on stderr: {stderr}"
    );
    let lines = json_lines(stdout);
    let panics = panic_events(&lines);
    assert_eq!(panics.len(), 1, "{stdout}\n{stderr}");
    let event = panics[0].clone();
    assert_eq!(event["level"], "ERROR");
    let message = event["panic"].as_str().unwrap();
    assert!(message.contains(text), "{event}");
    assert!(!message.contains("hunter2"), "{event}");
    assert!(
        event["location"]
            .as_str()
            .unwrap()
            .starts_with("tests/log_panic.rs:"),
        "{event}"
    );
    assert!(event.get("request_id").is_none(), "{event}");
    event
}

#[test]
fn a_panic_in_a_spawned_task_is_one_event() {
    let (out, err) = run_child("spawned", &[]);
    let event = one_panic_event(&out, &err, "task password=[REDACTED]");
    // Whichever thread ran the task (a worker, or the one blocking on the
    // runtime) is named.
    assert!(
        event["thread"].as_str().is_some_and(|t| !t.is_empty()),
        "{event}"
    );
    assert!(event.get("backtrace").is_none(), "{event}");
    assert!(out.contains("child ... ok"), "{out}\n{err}");
}

/// The guard is never dropped and the process ends right after the panic: only
/// the hook's flush gets the line out.
#[test]
fn a_panic_in_the_main_thread_is_flushed_with_its_backtrace() {
    let (out, err) = run_child("main", &[("RUST_BACKTRACE", "1")]);
    let event = one_panic_event(&out, &err, "main password=[REDACTED]");
    let backtrace = event["backtrace"].as_str().unwrap_or_default();
    assert!(backtrace.lines().count() > 1, "{event}");
}

#[test]
fn without_the_hook_panics_go_to_stderr_as_before() {
    let (out, err) = run_child("no-hook", &[]);
    assert!(err.contains("panicked at"), "{out}\n{err}");
    assert!(panic_events(&json_lines(&out)).is_empty(), "{out}");
}

/// Runs only in the child process started by the tests above.
#[test]
#[ignore = "started by the other tests, as a child process"]
fn child() {
    use tower_ops::log::{LogBuilder, LogFormat};
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let builder = LogBuilder::new()
        .format(LogFormat::Json)
        .panic_hook(mode != "no-hook");
    let guard = builder.init().expect("init logging");
    match mode.as_str() {
        "spawned" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let joined = runtime.block_on(async {
                tokio::spawn(async {
                    if true {
                        panic!("task password=hunter2 failed");
                    }
                })
                .await
            });
            assert!(joined.unwrap_err().is_panic());
            drop(guard);
        }
        "main" | "no-hook" => {
            std::mem::forget(guard);
            let outcome = std::panic::catch_unwind(|| {
                panic!("main password=hunter2 failed");
            });
            assert!(outcome.is_err());
            // The end of a process that a panic killed: no destructor runs.
            std::process::exit(0);
        }
        other => panic!("unknown mode {other}"),
    }
}
