//! The Redis backend against a real `redis-server` on an ephemeral loopback port.
//!
//! Ignored by default (they need the binary); CI installs `redis-server` and runs
//! them with `--include-ignored`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt, service_fn};
use tower_ops::rate_limit::{FailureMode, Quota, RateLimitLayer, RedisBackend, TimeSource};

#[path = "support/redis.rs"]
mod redis_server;

use redis_server::Redis;

fn instance(
    layer: &RateLimitLayer,
) -> impl tower::Service<
    Request<()>,
    Response = Response<tower_ops::body::ResponseBody<Full<Bytes>>>,
    Error = Infallible,
    Future: Send,
> + Clone
+ use<> {
    layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }))
}

fn from(ip: &str) -> Request<()> {
    let mut r = Request::new(());
    r.extensions_mut()
        .insert(format!("{ip}:1000").parse::<SocketAddr>().unwrap());
    r
}

fn layer(url: &str, quota: Quota, mode: FailureMode) -> RateLimitLayer {
    RateLimitLayer::with_quota(quota)
        .backend(RedisBackend::new(url).unwrap())
        .failure_mode(mode)
        .backend_timeout(Duration::from_millis(500))
        .circuit_breaker(1, Duration::from_millis(50))
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn two_instances_share_one_limit() {
    let redis = Redis::start();
    for time in [TimeSource::Server, TimeSource::Client] {
        let backend = |prefix: &str| {
            RedisBackend::new(&redis.url())
                .unwrap()
                .time_source(time)
                .prefix(prefix)
        };
        let prefix = format!("{time:?}:");
        let a = RateLimitLayer::with_quota(Quota::per_hour(5))
            .backend(backend(&prefix))
            .backend_timeout(Duration::from_secs(2));
        let b = RateLimitLayer::with_quota(Quota::per_hour(5))
            .backend(backend(&prefix))
            .backend_timeout(Duration::from_secs(2));
        let (a_svc, b_svc) = (instance(&a), instance(&b));
        let mut ok = 0;
        for i in 0..12 {
            let svc = if i % 2 == 0 {
                a_svc.clone()
            } else {
                b_svc.clone()
            };
            let r = svc.oneshot(from("192.0.2.7")).await.unwrap();
            if r.status() == StatusCode::OK {
                ok += 1;
                let remaining = 5 - ok;
                assert_eq!(
                    r.headers()["ratelimit"],
                    format!("\"default\";r={remaining};t={}", 720 * ok)
                );
            } else {
                assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
                let retry: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=720).contains(&retry), "{retry}");
            }
        }
        assert_eq!(ok, 5, "{time:?}");
        assert_eq!((a.fallbacks(), b.fallbacks()), (0, 0));
        assert_eq!(a.len() + b.len(), 0, "nothing was tracked in process");
        // Another client has its own bucket.
        assert_eq!(
            a_svc.oneshot(from("192.0.2.8")).await.unwrap().status(),
            StatusCode::OK
        );
    }
}

/// Inserted by the application's authentication.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct UserId(String);

/// Two instances (two processes' worth of state: each layer hashes with its own
/// random keys in process) agree on a user's bucket in Redis, and Redis never
/// sees the user id itself.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn per_user_keys_are_shared_by_two_instances() {
    use tower_ops::rate_limit::{KeyBy, Policy};

    let redis = Redis::start();
    let instance_layer = || {
        RateLimitLayer::new()
            .policy(Policy::new("user", Quota::per_hour(3)).key(KeyBy::extension::<UserId>()))
            .backend(RedisBackend::new(&redis.url()).unwrap())
            .backend_timeout(Duration::from_secs(2))
            .key_secret("shared secret")
    };
    let (a, b) = (instance_layer(), instance_layer());
    let (a_svc, b_svc) = (instance(&a), instance(&b));
    let as_user = |id: &str| {
        let mut r = Request::new(());
        r.extensions_mut().insert(UserId(id.to_owned()));
        r
    };
    let mut statuses = Vec::new();
    for i in 0..5 {
        let svc = if i % 2 == 0 { &a_svc } else { &b_svc };
        let r = svc
            .clone()
            .oneshot(as_user("alice@example.com"))
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let other = b_svc
        .clone()
        .oneshot(as_user("bob@example.com"))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    // No user: the policy does not apply, Redis is not asked.
    let anonymous = a_svc.clone().oneshot(Request::new(())).await.unwrap();
    assert!(anonymous.headers().get("ratelimit").is_none());
    assert_eq!((a.fallbacks(), b.fallbacks()), (0, 0));
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| !k.contains("alice") && !k.contains("bob")),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn concurrent_requests_on_two_instances() {
    let redis = Redis::start();
    let a = layer(&redis.url(), Quota::per_hour(5), FailureMode::Closed)
        .backend_timeout(Duration::from_secs(5));
    let b = layer(&redis.url(), Quota::per_hour(5), FailureMode::Closed)
        .backend_timeout(Duration::from_secs(5));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let svc = if i % 2 == 0 {
                instance(&a)
            } else {
                instance(&b)
            };
            tokio::spawn(async move { svc.oneshot(from("198.51.100.1")).await.unwrap().status() })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 5);
}

/// Sends until a response is decided by Redis again (the fallback count stops
/// growing), bounded.
async fn until_recovered(layer: &RateLimitLayer, ip: &str) -> StatusCode {
    for _ in 0..200 {
        let before = layer.fallbacks();
        let status = instance(layer).oneshot(from(ip)).await.unwrap().status();
        if layer.fallbacks() == before {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the backend did not recover");
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn killed_redis_applies_the_failure_mode_and_recovers() {
    let mut redis = Redis::start();
    let port = redis.port;
    let url = redis.url();
    let local = layer(&url, Quota::per_hour(2), FailureMode::Local);
    let open = layer(&url, Quota::per_hour(2), FailureMode::Open);
    let closed = layer(&url, Quota::per_hour(2), FailureMode::Closed);
    // The three layers share Redis, the policy name and the key: one bucket of 2.
    let mut before = Vec::new();
    for l in [&local, &open, &closed] {
        before.push(
            instance(l)
                .oneshot(from("203.0.113.1"))
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(before, [200, 200, 429]);
    assert_eq!(local.fallbacks() + open.fallbacks() + closed.fallbacks(), 0);

    redis.kill();
    let statuses = |l: RateLimitLayer| async move {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(
                instance(&l)
                    .oneshot(from("203.0.113.2"))
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        v
    };
    // Local: the in-process limiter takes over with the same quota.
    assert_eq!(statuses(local.clone()).await, [200, 200, 429, 429]);
    assert_eq!(statuses(open.clone()).await, [200, 200, 200, 200]);
    assert_eq!(statuses(closed.clone()).await, [503, 503, 503, 503]);
    for l in [&local, &open, &closed] {
        assert!(l.fallbacks() >= 4, "{}", l.fallbacks());
    }
    assert!(!local.is_empty());

    // Restart on the same port: every instance goes back to Redis by itself.
    let _redis = Redis::start_on(port);
    for (l, ip) in [
        (&local, "203.0.113.3"),
        (&open, "203.0.113.4"),
        (&closed, "203.0.113.5"),
    ] {
        assert_eq!(until_recovered(l, ip).await, StatusCode::OK);
        assert!(!l.backend_unavailable());
    }
    // One shared limit again. This Redis has no persistence, so it restarted empty:
    // the three layers share one fresh bucket of 2.
    let mut ok = 0;
    for l in [&local, &open, &closed] {
        if instance(l)
            .oneshot(from("203.0.113.1"))
            .await
            .unwrap()
            .status()
            == StatusCode::OK
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 2);
}

/// Prints checks per second through the layer, in process and on Redis over
/// loopback. Run with `--release -- --ignored throughput --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn throughput_in_process_vs_redis() {
    let redis = Redis::start();
    let quota = Quota::per(1_000_000, Duration::from_millis(1));
    let layers = [
        ("in-process", RateLimitLayer::with_quota(quota)),
        (
            "redis",
            layer(&redis.url(), quota, FailureMode::Closed).backend_timeout(Duration::from_secs(5)),
        ),
    ];
    for (name, l) in layers {
        const N: usize = 20_000;
        const TASKS: usize = 64;
        let start = std::time::Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let svc = instance(&l);
                tokio::spawn(async move {
                    for i in 0..N / TASKS {
                        let ip = format!("10.{}.{}.{}", t, i >> 8, i & 255);
                        let status = svc.clone().oneshot(from(&ip)).await.unwrap().status();
                        assert_eq!(status, StatusCode::OK);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let per_sec = (N / TASKS * TASKS) as f64 / start.elapsed().as_secs_f64();
        println!("{name}: {per_sec:.0} checks/s");
        assert_eq!(l.fallbacks(), 0);
    }
}
