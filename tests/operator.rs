//! The operator controls on the whole stack, as a user runs it: the quickstart
//! example as a child process with `LOG_SAMPLE_RATE`, `RATE_LIMIT_MODE=shadow`
//! and `ADMIN_TOKEN`, talked to over loopback.

mod common;
#[path = "common/quickstart.rs"]
mod quickstart;

use std::time::Duration;

use common::{exchange, get, parse};
use quickstart::{drain, json_lines, start_quickstart, stop};
use serde_json::Value;

const TOKEN: &str = "operator-token-0123456789abcdef";

fn put_filter(token: &str, body: &str) -> Vec<u8> {
    format!(
        "PUT /admin/log-level HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn request_lines(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| l["message"] == "request completed")
        .collect()
}

#[tokio::test]
async fn sampling_shadow_limits_and_the_log_level_at_run_time() {
    let (mut child, addr, seen, stdout, stderr) = start_quickstart(&[
        ("ADMIN_TOKEN", TOKEN),
        ("LOG_SAMPLE_RATE", "0"),
        ("RATE_LIMIT_MODE", "shadow"),
        ("RATE_LIMIT_MAX_REQUESTS", "3"),
    ]);
    let rest = drain(stdout);

    // Shadow mode: every request is served, those over the limit are marked.
    for n in 0..6 {
        let reply = get(addr, "/users/7", "").await;
        assert_eq!(reply.status, 200, "request {n}: {}", reply.text());
        assert!(reply.first("retry-after").is_none());
    }
    // The admin routes: 401 without the token, the filter with it.
    let denied = get(addr, "/admin/log-level", "").await;
    assert_eq!(denied.status, 401, "{}", denied.text());
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let current = get(addr, "/admin/log-level", &auth).await;
    assert_eq!(current.status, 200, "{}", current.text());
    assert_eq!(current.json()["filter"], "info");
    // The handler of /slow logs "slow request started" at info: it shows, then
    // not under `warn`, then again under `debug`.
    assert_eq!(get(addr, "/slow?ms=1", "").await.status, 200);
    for (filter, ms) in [("warn", 2), ("debug", 3)] {
        let body = format!(r#"{{"filter":"{filter}"}}"#);
        let changed = parse(&exchange(addr, &put_filter(TOKEN, &body)).await);
        assert_eq!(changed.status, 200, "{}", changed.text());
        let now = get(addr, "/admin/log-level", &auth).await;
        assert_eq!(now.json()["filter"], filter);
        let slow = get(addr, &format!("/slow?ms={ms}"), "").await;
        assert_eq!(slow.status, 200);
    }

    let metrics = get(addr, "/metrics", "").await.text();
    let shadowed = metrics
        .lines()
        .find(|l| {
            l.starts_with("http_server_shadow_rejections_total{")
                && l.contains("rejected_by=\"rate_limit\"")
                && l.contains("code=\"RATE_LIMITED\"")
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    // All from one address against 3 a minute: past the first three, each of
    // the six /users requests, the two GETs and two PUTs of /admin, the 401 and
    // the three /slow (probes and /metrics are not limited).
    assert!(shadowed.ends_with(" 12"), "{shadowed}");
    // Metrics count every request, logged or not.
    assert!(
        metrics.lines().any(
            |l| l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains("http_route=\"/users/{id}\"")
                && l.ends_with(" 6")
        ),
        "{metrics}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let status = stop(&mut child);
    let out = format!("{seen}{}", rest.join().unwrap());
    let err = stderr.join().unwrap();
    assert!(status.success(), "{status}: {out}\n{err}");
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN), "token logged");
    let lines = json_lines(&out);
    let requests = request_lines(&lines);
    // At rate 0 the ordinary successes (the three requests under the limit,
    // the admin GETs and PUT) have no line; the shadow rejections and the 401
    // have theirs.
    let users: Vec<&&Value> = requests
        .iter()
        .filter(|l| l["route"] == "/users/{id}")
        .collect();
    assert_eq!(users.len(), 3, "{out}");
    for line in &users {
        assert_eq!(line["status"], 200);
        assert_eq!(line["shadow_rejected_by"], "rate_limit", "{line}");
        assert_eq!(line["shadow_policy"], "default", "{line}");
        assert!(line.get("sample_rate").is_none(), "{line}");
    }
    assert!(
        requests.iter().any(|l| l["status"] == 401),
        "the 401 is always logged: {out}"
    );
    let changes: Vec<(&Value, &Value)> = lines
        .iter()
        .filter(|l| l["message"] == "log filter changed")
        .map(|l| {
            assert_eq!(l["level"], "WARN", "{l}");
            assert_eq!(l["client_ip"], "127.0.0.1", "{l}");
            (&l["old_filter"], &l["new_filter"])
        })
        .collect();
    assert_eq!(
        changes,
        [
            (&Value::from("info"), &Value::from("warn")),
            (&Value::from("warn"), &Value::from("debug"))
        ],
        "{out}"
    );
    let slow: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "slow request started")
        .map(|l| &l["ms"])
        .collect();
    assert_eq!(slow, [1, 3], "{out}");
}

#[tokio::test]
async fn without_a_token_there_are_no_admin_routes() {
    let (mut child, addr, _, stdout, stderr) = start_quickstart(&[]);
    let rest = drain(stdout);
    let reply = get(
        addr,
        "/admin/log-level",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    )
    .await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    let reply = parse(&exchange(addr, &put_filter(TOKEN, r#"{"filter":"trace"}"#)).await);
    assert_eq!(reply.status, 404, "{}", reply.text());
    let status = stop(&mut child);
    let out = rest.join().unwrap();
    assert!(
        status.success(),
        "{status}: {out}\n{}",
        stderr.join().unwrap()
    );
    assert!(!out.contains("log filter changed"), "{out}");
}

#[test]
fn an_invalid_operator_variable_stops_start_up_and_names_it() {
    for (name, value) in [
        ("LOG_SAMPLE_RATE", "often"),
        ("RATE_LIMIT_MODE", "dry-run"),
        ("ADMIN_TOKEN", "tiny-secret"),
    ] {
        let out = std::process::Command::new(common::example_binary("quickstart"))
            .env("PORT", "0")
            .env("LOG_FORMAT", "json")
            .env(name, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}={value} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name), "{name}: {err}");
        if name == "ADMIN_TOKEN" {
            assert!(!err.contains(value), "the token was shown: {err}");
        }
    }
}
