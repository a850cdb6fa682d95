//! The rate-limit layer over a real loopback socket.

#[path = "common/capture.rs"]
mod capture;
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::{exchange, get_request, raw, serve};
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::rate_limit::{KeyBy, Policy, Quota, RateLimitClock, RateLimitLayer};
use tracing_subscriber::layer::SubscriberExt;

fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/health/live", get(|| async { "alive" }))
        .route(
            "/auth/login",
            get(|| async { "login" }).post(|| async { "login" }),
        )
}

async fn serve_layer(layer: RateLimitLayer) -> SocketAddr {
    serve(routes().layer(layer).layer(ClientIpLayer::new())).await
}

/// The whole response as sent, without its `date` line and with the problem's
/// `timestamp` blanked (both tell the time, not the layer's behaviour).
async fn raw_bytes(addr: SocketAddr, request: &[u8]) -> String {
    let text = String::from_utf8_lossy(&exchange(addr, request).await)
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .collect::<Vec<_>>()
        .join("\r\n");
    const STAMP: &str = "\"timestamp\":\"";
    match text.find(STAMP) {
        Some(start) => {
            let from = start + STAMP.len();
            let end = text[from..].find('"').map_or(text.len(), |e| from + e);
            format!("{}{}", &text[..from], &text[end..])
        }
        None => text,
    }
}

/// The axum mode changes the body type only: every response, passing, limited,
/// gRPC, skipped, with headers on, off and legacy, is the same on the wire.
#[tokio::test]
async fn axum_mode_answers_byte_for_byte_like_the_default() {
    for (ietf, legacy) in [(true, false), (false, false), (true, true), (false, true)] {
        let build = || {
            RateLimitLayer::new()
                .clock(RateLimitClock::manual())
                .headers(ietf)
                .legacy_headers(legacy)
                .skip_paths(["/health/*"])
                .policy(
                    Policy::new("auth", Quota::per(2, Duration::from_secs(900)))
                        .paths(["/auth/login"]),
                )
                .policy(Policy::new("default", Quota::per_minute(3)))
        };
        let any = serve_layer(build()).await;
        let axum = serve(
            routes()
                .layer(build().for_axum())
                .layer(ClientIpLayer::new()),
        )
        .await;
        let grpc = b"POST /auth/login HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
            content-type: application/grpc\r\ncontent-length: 0\r\n\r\n";
        let sequence: Vec<Vec<u8>> = vec![
            get_request("/", ""),
            get_request("/auth/login", ""),
            get_request("/health/live", ""),
            grpc.to_vec(),
            get_request("/", ""),
            get_request("/auth/login", ""),
            get_request("/", ""),
            get_request("/nowhere", ""),
            grpc.to_vec(),
        ];
        let mut statuses = Vec::new();
        for request in &sequence {
            let (a, b) = (
                raw_bytes(any, request).await,
                raw_bytes(axum, request).await,
            );
            assert_eq!(a, b, "ietf={ietf} legacy={legacy}");
            statuses.push(a.split(' ').nth(1).unwrap_or_default().to_owned());
            let lower = a.to_ascii_lowercase();
            assert_eq!(
                lower.contains("\r\nratelimit:"),
                ietf && !a.contains("alive")
            );
            assert_eq!(
                lower.contains("x-ratelimit-limit:"),
                legacy && !a.contains("alive")
            );
        }
        assert_eq!(
            statuses,
            [
                "200", "200", "200", "200", "429", "429", "429", "429", "200"
            ],
            "ietf={ietf} legacy={legacy}"
        );
        let limited = raw_bytes(axum, &get_request("/", "")).await;
        assert!(limited.contains("retry-after: 20\r\n"), "{limited}");
        assert!(limited.contains("\"code\":\"RATE_LIMITED\""), "{limited}");
        let grpc_limited = raw_bytes(axum, grpc).await;
        assert!(
            grpc_limited.contains("grpc-status: 8\r\n"),
            "{grpc_limited}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_requests_against_five_per_second() {
    // A manual clock that never moves: exactly the burst of 5 may pass, however
    // long the 1,000 requests take to arrive.
    let layer = RateLimitLayer::with_quota(Quota::per_second(5)).clock(RateLimitClock::manual());
    let addr = serve_layer(layer.clone()).await;
    let tasks: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(async move { raw(addr, &get_request("/", "")).await.status }))
        .collect();
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, limited), (5, 995));
    assert_eq!(layer.len(), 1);
}

#[tokio::test]
async fn spoofed_forwarded_for_without_trusted_proxy_shares_the_peer_bucket() {
    let addr = serve_layer(
        RateLimitLayer::with_quota(Quota::per_minute(2)).clock(RateLimitClock::manual()),
    )
    .await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let spoof = format!(
            "x-forwarded-for: 10.0.0.{i}\r\nforwarded: for=10.1.0.{i}\r\nx-real-ip: 10.2.0.{i}\r\n"
        );
        statuses.push(raw(addr, &get_request("/", &spoof)).await.status);
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429]);
}

#[tokio::test]
async fn rejection_over_the_wire() {
    let addr = serve_layer(
        RateLimitLayer::with_quota(Quota::per(1, Duration::from_millis(2500)))
            .clock(RateLimitClock::manual()),
    )
    .await;
    let headers = raw(addr, &get_request("/", "")).await;
    let status = headers.status;
    assert_eq!(status, 200);
    assert_eq!(headers.all("ratelimit-policy"), ["\"default\";q=1;w=3"]);
    let headers = raw(addr, &get_request("/", "")).await;
    let status = headers.status;
    assert_eq!(status, 429);
    assert_eq!(headers.all("retry-after"), ["3"], "2.5 s rounds up");
    assert_eq!(headers.all("content-type"), ["application/problem+json"]);
    assert_eq!(headers.all("ratelimit"), ["\"default\";r=0;t=3"]);
    // Probe routes are never limited.
    let headers = raw(addr, &get_request("/health/live", "")).await;
    let status = headers.status;
    assert_eq!(status, 429, "no skip set on this layer");
    assert!(!headers.headers.is_empty());
}

#[tokio::test]
async fn hostile_keys() {
    let layer = RateLimitLayer::new()
        .clock(RateLimitClock::manual())
        .skip_paths(["/health/*"])
        .policy(
            Policy::new("api", Quota::per_minute(1))
                .key(KeyBy::header(http::HeaderName::from_static("x-api-key"))),
        );
    let addr = serve_layer(layer.clone()).await;
    // Duplicated header: the first value is the key.
    let dup = "x-api-key: a\r\nx-api-key: b\r\n";
    assert_eq!(raw(addr, &get_request("/", dup)).await.status, 200);
    assert_eq!(
        raw(addr, &get_request("/", "x-api-key: a\r\n"))
            .await
            .status,
        429
    );
    // Large and odd values are hashed like any other.
    let big = format!("x-api-key: {}\r\n", "k".repeat(16 * 1024));
    assert_eq!(raw(addr, &get_request("/", &big)).await.status, 200);
    assert_eq!(raw(addr, &get_request("/", &big)).await.status, 429);
    assert_eq!(
        raw(addr, &get_request("/", "x-api-key: ~é\r\n"))
            .await
            .status,
        200
    );
    assert_eq!(
        raw(addr, &get_request("/", "x-api-key:\r\n")).await.status,
        200
    );
    for _ in 0..3 {
        assert_eq!(
            raw(addr, &get_request("/health/live", "x-api-key: a\r\n"))
                .await
                .status,
            200
        );
    }
    assert_eq!(layer.len(), 4);
}

// ---- Per-user keys: the application's authentication inserts them ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct UserId(u64);

/// An opaque credential, kept whole (any length) as the key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Token(String);

/// A stand-in authentication: `Bearer user-<id>` is a user, any other `Bearer`
/// value an opaque token; requests without either go on anonymous.
async fn identify(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let value = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    if let Some(value) = value {
        match value.strip_prefix("user-").and_then(|id| id.parse().ok()) {
            Some(id) => {
                request.extensions_mut().insert(UserId(id));
            }
            None => {
                request.extensions_mut().insert(Token(value));
            }
        }
    }
    next.run(request).await
}

/// Client IP, then the authentication, then `layer`: the order `Stack::auth`
/// gives, stacked by hand.
async fn serve_with_auth(layer: RateLimitLayer) -> SocketAddr {
    serve(
        routes()
            .route("/me", get(|| async { "me" }))
            .layer(layer)
            .layer(axum::middleware::from_fn(identify))
            .layer(ClientIpLayer::new()),
    )
    .await
}

fn bearer(value: &str) -> String {
    format!("authorization: Bearer {value}\r\n")
}

/// Inside the router, the authentication runs after the limiter: the policy
/// sees no key, limits nothing, and says so once.
#[tokio::test]
async fn auth_after_the_limiter_limits_nothing_and_warns_once() {
    let cap = capture::Capture::default();
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(cap.clone()),
    );
    let _guard = tracing::subscriber::set_default(subscriber);
    // The warning's callsite is shared with tests that run without a
    // subscriber; ask every callsite again now that this one is in place.
    tracing::callsite::rebuild_interest_cache();
    let layer = RateLimitLayer::new()
        .clock(RateLimitClock::manual())
        .policy(
            Policy::new("user", Quota::per_minute(5))
                .key(KeyBy::extension::<UserId>())
                .warn_missing_key_after(6),
        );
    let misplaced = routes()
        .route("/me", get(|| async { "me" }))
        .layer(axum::middleware::from_fn(identify))
        .layer(layer.clone())
        .layer(ClientIpLayer::new());
    let addr = serve(misplaced).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            raw(addr, &get_request("/me", &bearer("user-42")))
                .await
                .status,
        );
    }
    assert_eq!(statuses, [200; 8], "nothing is limited");
    assert!(layer.is_empty());
    let warnings: Vec<_> = cap
        .lines()
        .into_iter()
        .filter(|l| l["level"] == "WARN")
        .collect();
    assert_eq!(warnings.len(), 1, "{}", cap.text());
    let fields = &warnings[0]["fields"];
    assert_eq!(fields["policy"], "user");
    assert_eq!(fields["requests"], 6);
    assert!(
        fields["key"].as_str().unwrap().ends_with("UserId"),
        "{fields}"
    );
}

#[tokio::test]
async fn missing_and_malformed_credentials_are_not_counted_per_user() {
    let layer = RateLimitLayer::new()
        .clock(RateLimitClock::manual())
        .policy(Policy::new("user", Quota::per_minute(1)).key(KeyBy::extension::<UserId>()))
        .policy(Policy::new("default", Quota::per_minute(100)));
    let addr = serve_with_auth(layer.clone()).await;
    assert_eq!(
        raw(addr, &get_request("/me", &bearer("user-42")))
            .await
            .status,
        200
    );
    assert_eq!(
        raw(addr, &get_request("/me", &bearer("user-42")))
            .await
            .status,
        429
    );
    for extra in [
        String::new(),
        "authorization: Basic dXNlcjpwYXNz\r\n".to_owned(),
        "authorization: Bearer\r\n".to_owned(),
        "authorization:\r\n".to_owned(),
        bearer("user-18446744073709551616"),
    ] {
        let headers = raw(addr, &get_request("/me", &extra)).await;
        let status = headers.status;
        assert_eq!(status, 200, "{extra:?}");
        assert_eq!(
            headers.all("ratelimit-policy"),
            ["\"default\";q=100;w=60"],
            "{extra:?}: only the per-IP policy counts it"
        );
    }
    // Bytes that are not text: no user either.
    let latin1 = b"GET /me HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
                   authorization: Bearer user-4\xff2\r\n\r\n";
    let headers = raw(addr, latin1).await;
    let status = headers.status;
    assert_eq!(status, 200);
    assert_eq!(headers.all("ratelimit-policy"), ["\"default\";q=100;w=60"]);
    // One user key, one IP key.
    assert_eq!(layer.len(), 2);
}

#[tokio::test]
async fn huge_keys_are_one_bucket_each() {
    let layer = RateLimitLayer::new()
        .clock(RateLimitClock::manual())
        .policy(Policy::new("token", Quota::per_minute(2)).key(KeyBy::extension::<Token>()));
    let addr = serve_with_auth(layer.clone()).await;
    // hyper's default head limit is about 400 KB; 64 KB tokens fit.
    let a = "t".repeat(64 * 1024);
    let b = format!("{}u", &a[..a.len() - 1]);
    let statuses_a: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(raw(addr, &get_request("/me", &bearer(&a))).await.status);
        }
        v
    };
    assert_eq!(statuses_a, [200, 200, 429]);
    // One different byte at the end: another bucket.
    assert_eq!(
        raw(addr, &get_request("/me", &bearer(&b))).await.status,
        200
    );
    assert_eq!(
        layer.len(),
        2,
        "one 64-bit key per token, whatever its size"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_distinct_users_are_tracked_then_returned_when_idle() {
    let clock = RateLimitClock::manual();
    let layer = RateLimitLayer::new()
        .clock(clock.clone())
        .policy(Policy::new("user", Quota::per_minute(5)).key(KeyBy::extension::<UserId>()));
    let addr = serve_with_auth(layer.clone()).await;
    let users = 2_000u64;
    let tasks: Vec<_> = (0..users)
        .map(|id| {
            tokio::spawn(async move {
                raw(addr, &get_request("/me", &bearer(&format!("user-{id}"))))
                    .await
                    .status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(layer.len(), 2_000);
    // A minute later every bucket is full again: indistinguishable from a new
    // one, so cleaning up drops them all.
    clock.advance(Duration::from_secs(60));
    assert_eq!(layer.cleanup(), 2_000);
    assert!(layer.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_get_exactly_each_users_quota() {
    let layer = RateLimitLayer::new()
        .clock(RateLimitClock::manual())
        .policy(Policy::new("user", Quota::per_minute(5)).key(KeyBy::extension::<UserId>()));
    let addr = serve_with_auth(layer.clone()).await;
    // 20 users, 20 requests each, all at once.
    let tasks: Vec<_> = (0..400u64)
        .map(|i| {
            let user = i % 20;
            tokio::spawn(async move {
                let status = raw(addr, &get_request("/me", &bearer(&format!("user-{user}"))))
                    .await
                    .status;
                (user, status)
            })
        })
        .collect();
    let mut passed = [0u32; 20];
    for t in tasks {
        let (user, status) = t.await.unwrap();
        match status {
            200 => passed[user as usize] += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(passed, [5; 20]);
    assert_eq!(layer.len(), 20);
}

// ---- IETF structured-field checks (RFC 9651 lists, draft-ietf-httpapi-ratelimit-headers) ----

#[derive(Debug, PartialEq)]
enum Bare {
    Str(String),
    Int(i64),
    Token(String),
}

type Item = (Bare, Vec<(String, Bare)>);

/// A small RFC 9651 List parser: strings, integers, tokens, parameters.
fn parse_list(input: &str) -> Result<Vec<Item>, String> {
    let b = input.as_bytes();
    let mut i = 0;
    let mut items = Vec::new();
    loop {
        let (item, next) = parse_item(b, i)?;
        items.push(item);
        i = next;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i == b.len() {
            return Ok(items);
        }
        if b[i] != b',' {
            return Err(format!("expected ',' at {i}"));
        }
        i += 1;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i == b.len() {
            return Err("trailing comma".into());
        }
    }
}

fn parse_item(b: &[u8], mut i: usize) -> Result<(Item, usize), String> {
    let (bare, next) = parse_bare(b, i)?;
    i = next;
    let mut params = Vec::new();
    while i < b.len() && b[i] == b';' {
        i += 1;
        let start = i;
        if i >= b.len() || !(b[i].is_ascii_lowercase() || b[i] == b'*') {
            return Err(format!("bad key at {i}"));
        }
        while i < b.len()
            && (b[i].is_ascii_lowercase() || b[i].is_ascii_digit() || b"_-.*".contains(&b[i]))
        {
            i += 1;
        }
        let key = String::from_utf8(b[start..i].to_vec()).unwrap();
        let value = if i < b.len() && b[i] == b'=' {
            let (v, next) = parse_bare(b, i + 1)?;
            i = next;
            v
        } else {
            Bare::Token("?1".into())
        };
        params.push((key, value));
    }
    Ok(((bare, params), i))
}

fn parse_bare(b: &[u8], mut i: usize) -> Result<(Bare, usize), String> {
    match b.get(i) {
        Some(b'"') => {
            i += 1;
            let mut s = String::new();
            loop {
                match b.get(i) {
                    None => return Err("unterminated string".into()),
                    Some(b'"') => return Ok((Bare::Str(s), i + 1)),
                    Some(b'\\') => match b.get(i + 1) {
                        Some(&c @ (b'"' | b'\\')) => {
                            s.push(char::from(c));
                            i += 2;
                        }
                        _ => return Err("bad escape".into()),
                    },
                    Some(&c) if (0x20..=0x7e).contains(&c) => {
                        s.push(char::from(c));
                        i += 1;
                    }
                    Some(_) => return Err("bad string char".into()),
                }
            }
        }
        Some(c) if c.is_ascii_digit() || *c == b'-' => {
            let start = i;
            if b[i] == b'-' {
                i += 1;
            }
            let digits = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == digits || i - digits > 15 || b.get(i) == Some(&b'.') {
                return Err("bad integer".into());
            }
            let n = std::str::from_utf8(&b[start..i])
                .unwrap()
                .parse()
                .map_err(|_| "bad integer")?;
            Ok((Bare::Int(n), i))
        }
        Some(c) if c.is_ascii_alphabetic() || *c == b'*' => {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b[i]))
            {
                i += 1;
            }
            Ok((
                Bare::Token(String::from_utf8(b[start..i].to_vec()).unwrap()),
                i,
            ))
        }
        _ => Err(format!("bad bare item at {i}")),
    }
}

/// Checks a value against the draft's shape; returns (name, params).
fn check_field(field: &str, value: &str) -> Vec<(String, Vec<(String, i64)>)> {
    let items = parse_list(value).unwrap_or_else(|e| panic!("{field}: {value:?}: {e}"));
    items
        .into_iter()
        .map(|(bare, params)| {
            let Bare::Str(name) = bare else {
                panic!("{field}: item must be a string: {value}")
            };
            let params: Vec<(String, i64)> = params
                .into_iter()
                .map(|(k, v)| match v {
                    Bare::Int(n) if n >= 0 => (k, n),
                    other => panic!("{field}: {k} must be a non-negative integer, got {other:?}"),
                })
                .collect();
            let keys: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
            match field {
                "ratelimit-policy" => {
                    assert!(keys.contains(&"q"), "q is required: {value}");
                    assert!(keys.iter().all(|k| ["q", "w"].contains(k)), "{value}");
                    assert!(
                        params.iter().all(|(k, n)| k != "w" || *n > 0),
                        "w > 0: {value}"
                    );
                }
                _ => {
                    assert!(keys.contains(&"r"), "r is required: {value}");
                    assert!(
                        keys.iter().all(|k| ["r", "t"].contains(k)),
                        "no q in RateLimit: {value}"
                    );
                }
            }
            (name, params)
        })
        .collect()
}

#[test]
fn checker_catches_bad_values() {
    assert!(parse_list("\"a\";q=1;w=2").is_ok());
    assert!(parse_list("\"a\";q=1, \"b\";q=2").is_ok());
    for bad in [
        "a\";q=1",
        "\"a\";Q=1",
        "\"a\";q=1.5",
        "\"a\",",
        "\"a\" ;q=1",
        "\"a\\x\"",
    ] {
        assert!(parse_list(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn every_policy_emits_valid_fields() {
    let policies = [
        Policy::new(
            "auth \"login\"",
            Quota::per(5, Duration::from_secs(15 * 60)),
        ),
        Policy::new("burst", Quota::per_second(10).burst(3)),
        Policy::new("default", Quota::per(100, Duration::from_millis(60_500))),
        Policy::new("tiny", Quota::per(1, Duration::from_nanos(1))),
        Policy::new(
            "day",
            Quota::per(u32::MAX, Duration::from_secs(86_400 * 365)),
        ),
    ];
    // Each policy alone, then all together (the closest one is reported).
    let mut layers: Vec<RateLimitLayer> = policies
        .iter()
        .map(|p| RateLimitLayer::new().policy(p.clone()))
        .collect();
    layers.push(
        policies
            .iter()
            .fold(RateLimitLayer::new(), |l, p| l.policy(p.clone())),
    );
    let mut names = std::collections::HashSet::new();
    for layer in layers {
        let clock = RateLimitClock::manual();
        let addr = serve_layer(layer.clock(clock.clone()).legacy_headers(true)).await;
        for i in 0..8 {
            if i == 4 {
                clock.advance(Duration::from_millis(700));
            }
            let headers = raw(addr, &get_request("/auth/login", "")).await;
            let status = headers.status;
            assert!(status == 200 || status == 429);
            let policy = headers.all("ratelimit-policy");
            let limit = headers.all("ratelimit");
            assert_eq!((policy.len(), limit.len()), (1, 1), "{headers:?}");
            let p = check_field("ratelimit-policy", policy[0]);
            let l = check_field("ratelimit", limit[0]);
            assert_eq!(p[0].0, l[0].0, "both fields name the same policy");
            names.insert(p[0].0.clone());
            if status == 429 {
                let retry: u64 = headers.all("retry-after")[0].parse().unwrap();
                assert!(retry >= 1);
                assert!(l[0].1.iter().any(|(k, v)| k == "t" && *v as u64 <= retry));
            }
            for legacy in [
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
            ] {
                headers.all(legacy)[0].parse::<u64>().unwrap();
            }
        }
    }
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(names.contains("auth _login_"));
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Run with `cargo test --release --all-features --test rate_limit -- --ignored memory --nocapture`.
#[test]
#[ignore = "memory measurement"]
fn one_million_keys_fit_in_128_mb_and_memory_returns_when_idle() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    use tower::{Layer, Service, service_fn};

    let clock = RateLimitClock::manual();
    let layer = RateLimitLayer::with_quota(Quota::per_minute(100)).clock(clock.clone());
    let mut svc = layer.layer(service_fn(|_r: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(()))
    }));
    let before = rss_bytes();
    for i in 0..1_000_000u32 {
        let mut r = http::Request::new(());
        r.extensions_mut()
            .insert(tower_ops::client_ip::ClientIp::from_peer(
                std::net::IpAddr::from((0x0B00_0000 + i).to_be_bytes()),
            ));
        let mut fut = std::pin::pin!(svc.call(r));
        let Poll::Ready(Ok(resp)) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        else {
            panic!("pending")
        };
        assert_eq!(resp.status(), 200);
    }
    let full = rss_bytes();
    assert_eq!(layer.len(), 1_000_000);
    let grown = full.saturating_sub(before);
    println!(
        "1,000,000 keys: +{} MB RSS ({} bytes/key)",
        grown >> 20,
        grown / 1_000_000
    );
    assert!(grown < 128 << 20, "{} MB", grown >> 20);
    clock.advance(Duration::from_secs(61));
    assert_eq!(layer.cleanup(), 1_000_000);
    let idle = rss_bytes();
    println!(
        "after cleanup: {} MB above the start",
        idle.saturating_sub(before) >> 20
    );
    assert!(
        idle < full - grown / 2,
        "memory was not returned: {} -> {} MB",
        full >> 20,
        idle >> 20
    );
}
