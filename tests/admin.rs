//! The admin routes over real loopback sockets. With `ADMIN_TOKEN` set (in a
//! child process: logging is set up once per process, and the environment is
//! only set for children), `/admin/log-level` reads and changes the filter of
//! the real JSON log file at once, refuses missing and wrong tokens, bad
//! directives and bad bodies, stays consistent under concurrent changes, and
//! logs every change at WARN without the token; without it, the routes do not
//! exist. In this process, where nothing installs a filter, plain hyper
//! through `tower_ops::serve::serve` gets 503 until a filter is given.
#![cfg(feature = "axum")]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::routing::get;
use common::{RawResponse, raw};
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_ops::admin::AdminRoutes;
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::log::{LogBuilder, LogDestination, LogFilterLayer, RequestLogLayer};
use tower_ops::request_id::RequestIdLayer;
use tracing_subscriber::layer::SubscriberExt;

const TOKEN: &str = "admin-test-token-0123456789abcdef";
/// Where the child writes its log.
const LOG_FILE: &str = "TOWER_OPS_ADMIN_TEST_LOG";
/// How many changes the concurrency step makes at once.
const CONCURRENT: usize = 40;

/// Runs the ignored test `name` of this binary in a child process, with `set`
/// added to and `unset` removed from its environment; panics with its output
/// when it fails.
fn run_child(name: &str, set: &[(&str, &std::ffi::OsStr)], unset: &[&str]) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", name, "--include-ignored", "--nocapture"]);
    for var in unset {
        command.env_remove(var);
    }
    for (var, value) in set {
        command.env(var, value);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn temp_log(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tower-ops-admin-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("app.log")
}

/// The application the children serve: `/work/{mark}` logs one event at debug
/// and one at info, and the admin routes are there when `ADMIN_TOKEN` is set.
fn app() -> Router {
    let mut app = Router::new().route(
        "/work/{mark}",
        get(|UrlPath(mark): UrlPath<u32>| async move {
            tracing::debug!(target: "admin_probe", mark, "probe at debug");
            tracing::info!(target: "admin_probe", mark, "probe at info");
            "done"
        }),
    );
    if let Some(admin) = AdminRoutes::from_env().expect("ADMIN_TOKEN is valid") {
        app = app.merge(admin.into_router());
    }
    app.layer(
        ServiceBuilder::new()
            .layer(RequestIdLayer::new())
            .layer(ClientIpLayer::new())
            .layer(RequestLogLayer::new()),
    )
}

fn request(method: &str, path: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n{headers}\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn bearer(token: &str) -> String {
    format!("authorization: Bearer {token}\r\n")
}

async fn get_filter(addr: SocketAddr, auth: &str) -> RawResponse {
    raw(addr, &request("GET", "/admin/log-level", auth, "")).await
}

async fn put_filter(addr: SocketAddr, body: &str) -> RawResponse {
    let headers = format!("{}content-type: application/json\r\n", bearer(TOKEN));
    raw(addr, &request("PUT", "/admin/log-level", &headers, body)).await
}

async fn work(addr: SocketAddr, mark: u32) {
    let res = raw(addr, &request("GET", &format!("/work/{mark}"), "", "")).await;
    assert_eq!(res.status, 200);
}

/// The complete lines of the log file (a line still being written while the
/// server runs is left out).
fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The probe lines of `mark`, as their levels.
fn probes(lines: &[Value], mark: u32) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["target"] == "admin_probe" && l["mark"] == mark)
        .map(|l| l["level"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn with_a_token_the_filter_is_read_and_changed_at_once() {
    let log = temp_log("token");
    // Surrounding white space, as a secret mounted from a file has, is trimmed.
    let token = format!("  {TOKEN}\n");
    run_child(
        "token_child",
        &[
            ("ADMIN_TOKEN", token.as_ref()),
            (LOG_FILE, log.as_os_str()),
            ("LOG_FORMAT", "json".as_ref()),
            ("LOG_LEVEL", "info".as_ref()),
        ],
        &["RUST_LOG", "ERROR_FORMAT"],
    );

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(TOKEN), "the token was logged:\n{text}");
    assert!(!text.to_ascii_lowercase().contains("bearer"), "{text}");
    let lines = lines(&log);

    // At info, the debug probe is filtered out; after the change it is not.
    assert_eq!(probes(&lines, 1), ["INFO"]);
    assert_eq!(probes(&lines, 2), ["DEBUG", "INFO"]);
    // Under `error`, neither probe is written.
    assert!(probes(&lines, 4).is_empty());
    assert_eq!(probes(&lines, 5), ["INFO"]);

    // One WARN line per change, each with old, new and the client.
    let changes: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "log filter changed")
        .collect();
    assert_eq!(changes.len(), 1 + CONCURRENT + 2, "{changes:#?}");
    for change in &changes {
        assert_eq!(change["level"], "WARN");
        assert_eq!(change["target"], "tower_ops::admin");
        assert_eq!(change["client_ip"], "127.0.0.1");
    }
    // Written in the request's span (when the filter lets that INFO span in).
    assert!(changes[0]["request_id"].is_string(), "{}", changes[0]);
    // Changes apply one after the other: each one's old filter is the new one
    // of the change before, concurrent ones included.
    assert_eq!(changes[0]["old_filter"], "info");
    for pair in changes.windows(2) {
        assert_eq!(pair[1]["old_filter"], pair[0]["new_filter"], "{pair:#?}");
    }
    // Quieting to `error` is on record (written under the old filter), and so
    // is the way back (under the new one).
    let last = changes.len() - 1;
    assert_eq!(changes[last - 1]["new_filter"], "error");
    assert_eq!(changes[last]["old_filter"], "error");
    assert_eq!(changes[last]["new_filter"], "info");

    // Refused requests are logged as any other, with their problem.
    let refused: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "request completed" && l["status"] == 401)
        .collect();
    assert_eq!(refused.len(), 4, "{refused:#?}");
    assert!(refused.iter().all(|l| l["rejected_by"] == "admin"));
    let _ = std::fs::remove_dir_all(log.parent().unwrap());
}

#[test]
#[ignore = "entry point of with_a_token_the_filter_is_read_and_changed_at_once, run in a child process"]
fn token_child() {
    let Ok(log) = std::env::var(LOG_FILE) else {
        return;
    };
    let guard = LogBuilder::from_env()
        .unwrap()
        .destination(LogDestination::File(log.clone().into()))
        .init()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let addr = common::serve(app()).await;

        // Missing, wrong, wrongly schemed: 401 asking for a bearer token.
        for auth in [
            String::new(),
            bearer("wrong-token-0123456789abcdef"),
            format!("authorization: Basic {TOKEN}\r\n"),
            format!("authorization: {TOKEN}\r\n"),
        ] {
            let res = get_filter(addr, &auth).await;
            assert_eq!(res.status, 401, "{auth:?}: {}", res.text());
            assert_eq!(res.header("www-authenticate"), "Bearer");
            assert_eq!(res.header("content-type"), "application/problem+json");
            assert_eq!(res.json()["code"], "UNAUTHORIZED");
            assert!(!res.text().contains(TOKEN));
        }

        let res = get_filter(addr, &format!("authorization: bearer {TOKEN}\r\n")).await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(res.header("content-type"), "application/json");
        assert_eq!(res.json(), json!({"filter": "info"}));

        work(addr, 1).await;
        let res = put_filter(addr, r#"{"filter":"info,admin_probe=debug"}"#).await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(
            res.json(),
            json!({"filter": "info,admin_probe=debug", "previous": "info"})
        );
        work(addr, 2).await;
        let res = get_filter(addr, &bearer(TOKEN)).await;
        assert_eq!(res.json(), json!({"filter": "info,admin_probe=debug"}));

        // Invalid directives: 400 VALIDATION_FAILED on /filter, nothing changes.
        let res = put_filter(addr, r#"{"filter":"info,admin_probe=loud"}"#).await;
        assert_eq!(res.status, 400, "{}", res.text());
        let problem = res.json();
        assert_eq!(problem["code"], "VALIDATION_FAILED", "{problem}");
        assert_eq!(problem["errors"][0]["pointer"], "/filter", "{problem}");
        let message = problem["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("admin_probe=loud"), "{message}");

        // Bad bodies and methods.
        let res = put_filter(addr, r#"{"filter":"#).await;
        assert_eq!(res.status, 400);
        assert_eq!(res.json()["code"], "BAD_REQUEST");
        let res = put_filter(addr, r#"{"filter":"debug","for_minutes":5}"#).await;
        assert_eq!(res.status, 400);
        assert_eq!(res.json()["errors"][0]["pointer"], "/for_minutes");
        let big = format!(r#"{{"filter":"{}"}}"#, "debug,".repeat(1000));
        let res = put_filter(addr, &big).await;
        assert_eq!(res.status, 413, "{}", res.text());
        assert_eq!(res.json()["code"], "PAYLOAD_TOO_LARGE");
        let headers = format!("{}content-type: text/plain\r\n", bearer(TOKEN));
        let res = raw(addr, &request("PUT", "/admin/log-level", &headers, "debug")).await;
        assert_eq!(res.status, 415);
        let res = raw(
            addr,
            &request("DELETE", "/admin/log-level", &bearer(TOKEN), ""),
        )
        .await;
        assert_eq!(res.status, 405);
        assert_eq!(res.header("allow"), "GET, HEAD, PUT");
        let res = get_filter(addr, &bearer(TOKEN)).await;
        assert_eq!(res.json(), json!({"filter": "info,admin_probe=debug"}));

        // Many changes at once: every one answers 200, and the filter in force
        // is the one the text names.
        let filters = ["warn,admin_probe=debug", "warn,admin_probe=info"];
        let puts: Vec<_> = (0..CONCURRENT)
            .map(|i| {
                let body = format!(r#"{{"filter":"{}"}}"#, filters[i % 2]);
                tokio::spawn(async move { put_filter(addr, &body).await })
            })
            .collect();
        for put in puts {
            let res = put.await.unwrap();
            assert_eq!(res.status, 200, "{}", res.text());
        }
        let current = get_filter(addr, &bearer(TOKEN)).await.json()["filter"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(filters.contains(&current.as_str()), "{current}");
        work(addr, 3).await;
        guard.flush();
        let written = probes(&lines(Path::new(&log)), 3);
        let expected: &[&str] = if current == filters[0] {
            &["DEBUG", "INFO"]
        } else {
            &["INFO"]
        };
        assert_eq!(written, expected, "filter in force: {current}");

        // Down to `error` and back.
        assert_eq!(put_filter(addr, r#"{"filter":"error"}"#).await.status, 200);
        work(addr, 4).await;
        assert_eq!(put_filter(addr, r#"{"filter":"info"}"#).await.status, 200);
        work(addr, 5).await;
    });
    drop(guard);
}

#[test]
fn without_a_token_the_routes_do_not_exist() {
    run_child("no_token_child", &[], &["ADMIN_TOKEN"]);
    run_child("no_token_child", &[("ADMIN_TOKEN", "".as_ref())], &[]);
}

#[test]
#[ignore = "entry point of without_a_token_the_routes_do_not_exist, run in a child process"]
fn no_token_child() {
    if std::env::var_os("ADMIN_TOKEN").is_some_and(|t| !t.is_empty()) {
        return;
    }
    assert!(AdminRoutes::from_env().unwrap().is_none());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let addr = common::serve(app()).await;
        let res = get_filter(addr, &bearer(TOKEN)).await;
        assert_eq!(res.status, 404);
        let res = put_filter(addr, r#"{"filter":"debug"}"#).await;
        assert_eq!(res.status, 404);
    });
}

#[test]
fn an_invalid_token_is_a_config_error_that_does_not_show_it() {
    use std::os::unix::ffi::OsStringExt;
    let not_utf8 = std::ffi::OsString::from_vec(b"sekrit-sekrit-\xff-0123456789".to_vec());
    for token in [
        "sekrit-short".as_ref(),
        "sekrit sekrit 0123456789".as_ref(),
        not_utf8.as_os_str(),
    ] {
        run_child("bad_token_child", &[("ADMIN_TOKEN", token)], &[]);
    }
}

#[test]
#[ignore = "entry point of an_invalid_token_is_a_config_error_that_does_not_show_it, run in a child process"]
fn bad_token_child() {
    if std::env::var_os("ADMIN_TOKEN").is_none() {
        return;
    }
    let err = AdminRoutes::from_env().unwrap_err();
    let text = format!("{err} {err:?}");
    assert_eq!(err.problems().len(), 1, "{text}");
    assert_eq!(err.problems()[0].variable, "ADMIN_TOKEN");
    assert!(!text.contains("sekrit"), "{text}");
    assert!(text.contains("at least 16"), "{text}");
}

/// Plain hyper: the routes as a tower service behind `tower_ops::serve::serve`.
async fn serve_plain(admin: AdminRoutes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tower_ops::serve::serve(listener, admin).into_future());
    addr
}

#[tokio::test]
async fn plain_hyper_gets_503_until_there_is_a_filter() {
    // Nothing in this process installs a filter (the children do).
    assert!(tower_ops::log::LogFilter::installed().is_none());
    let addr = serve_plain(AdminRoutes::new(TOKEN)).await;
    let res = get_filter(addr, &bearer(TOKEN)).await;
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(res.json()["code"], "SERVICE_UNAVAILABLE");
    assert!(
        res.json()["detail"]
            .as_str()
            .unwrap()
            .contains("LogBuilder")
    );
    // The token still comes first.
    assert_eq!(get_filter(addr, "").await.status, 401);

    let layer = LogFilterLayer::new("warn").unwrap();
    let filter = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let addr = serve_plain(AdminRoutes::new(TOKEN).filter(filter)).await;
    let res = put_filter(addr, r#"{"filter":"debug"}"#).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json(), json!({"filter": "debug", "previous": "warn"}));
    tracing::dispatcher::with_default(&dispatch, || {
        assert!(tracing::enabled!(tracing::Level::DEBUG));
    });
    let res = raw(addr, &request("GET", "/admin/other", &bearer(TOKEN), "")).await;
    assert_eq!(res.status, 404);
}
