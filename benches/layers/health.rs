//! Probe latency: the bare minimum (a fixed JSON answer), liveness, and the
//! detailed and readiness probes served from the cache, alone and as 100
//! concurrent probes.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response};
use http_body_util::Full;
use tower::{ServiceExt, service_fn};
use tower_ops::health::{HealthRegistry, check_fn};

fn request(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::default()).unwrap()
}

pub fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let registry = HealthRegistry::builder()
        .cache_ttl(Duration::from_secs(3600))
        .check(check_fn("db", || async { Ok::<_, Infallible>(()) }))
        .check(check_fn("cache", || async { Err::<(), _>("connection refused") }).non_critical())
        .check(check_fn("queue", || async { Ok::<_, Infallible>(()) }))
        .build();
    registry.readiness().mark_ready();
    rt.block_on(registry.check_all()); // warm the cache
    let bare = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(r#"{"status":"alive"}"#)))
    });

    let mut group = c.benchmark_group("health");
    group.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bare.oneshot(request("/health/live")).await) })
    });
    for path in ["/health/live", "/health/ready", "/health"] {
        let service = registry.service();
        group.bench_function(format!("cached {path}"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(service.clone().oneshot(request(path)).await) })
        });
    }
    let service = registry.service();
    group.bench_function("100 concurrent /health (per batch)", |b| {
        b.to_async(&rt).iter(|| async {
            let probes: Vec<_> = (0..100)
                .map(|_| tokio::spawn(service.clone().oneshot(request("/health"))))
                .collect();
            for probe in probes {
                black_box(probe.await.unwrap().unwrap());
            }
        })
    });
    group.bench_function("100 concurrent bare (per batch)", |b| {
        b.to_async(&rt).iter(|| async {
            let probes: Vec<_> = (0..100)
                .map(|_| tokio::spawn(bare.oneshot(request("/health"))))
                .collect();
            for probe in probes {
                black_box(probe.await.unwrap().unwrap());
            }
        })
    });
    group.finish();
}
