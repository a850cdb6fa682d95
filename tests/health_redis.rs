//! The Redis health check against a real `redis-server` on a loopback port.
#![cfg(feature = "redis")]

#[path = "support/redis.rs"]
mod redis_server;

use std::time::Duration;

use redis_server::Redis;
use tower_ops::health::{CheckStatus, HealthRegistry, HealthStatus, RedisCheck};

fn registry(url: &str) -> HealthRegistry {
    HealthRegistry::builder()
        .check(RedisCheck::new("cache", url).unwrap())
        .cache_ttl(Duration::ZERO)
        .check_timeout(Duration::from_secs(2))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn ping_follows_redis_down_and_back() {
    let mut redis = Redis::start();
    let port = redis.port;
    let health = registry(&redis.url());
    assert_eq!(health.check_all().await.status(), HealthStatus::Healthy);

    redis.kill();
    let report = health.check_all().await;
    assert_eq!(report.status(), HealthStatus::Unhealthy);
    let (_, result) = report.checks().find(|(n, _)| *n == "cache").unwrap();
    assert_eq!(result.status(), CheckStatus::Unhealthy);
    assert!(result.error().is_some());

    // The same connection recovers once Redis is back.
    let _redis = Redis::start_on(port);
    let mut status = HealthStatus::Unhealthy;
    for _ in 0..50 {
        status = health.check_all().await.status();
        if status == HealthStatus::Healthy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, HealthStatus::Healthy);
}

#[tokio::test]
async fn unreachable_redis_is_unhealthy_within_budget() {
    // Nothing listens on port 1 of loopback: connection refused at once.
    let health = registry("redis://127.0.0.1:1/");
    let report = health.check_all().await;
    assert_eq!(report.status(), HealthStatus::Unhealthy);
}

#[test]
fn debug_output_hides_the_password() {
    let check = RedisCheck::new("cache", "redis://:hunter2@127.0.0.1:6379/").unwrap();
    assert!(!format!("{check:?}").contains("hunter2"));
}
