//! A shared backend: its decisions, failure modes and the GCRA invariant.

use super::*;

fn keyed() -> Request<()> {
    let mut r = Request::get("/").body(()).unwrap();
    r.headers_mut()
        .insert("x-api-key", HeaderValue::from_static("sk_live_abc"));
    r
}

#[tokio::test]
async fn backend_decides_and_never_sees_raw_keys() {
    let (layer, backend) = remote(FailureMode::Local).await;
    let (svc, _) = app(&layer);
    let r = send(&svc, keyed()).await;
    assert_eq!(
        r.headers()["ratelimit"],
        "\"api\";r=1;t=2",
        "remaining capped by q, reset rounded up"
    );
    let seen = backend.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].key.starts_with("h:") && !seen[0].key.contains("sk_live"));
    assert_eq!(&*seen[0].policy, "api");
    // Requests the policy does not apply to never reach the backend.
    send(&svc, Request::new(())).await;
    assert_eq!(backend.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failure_modes_breaker_and_recovery() {
    for mode in [FailureMode::Local, FailureMode::Open, FailureMode::Closed] {
        let (layer, backend) = remote(mode).await;
        let (svc, calls) = app(&layer);
        backend.fail.store(true, Ordering::SeqCst);
        let statuses: Vec<u16> = {
            let mut v = Vec::new();
            for _ in 0..4 {
                v.push(send(&svc, keyed()).await.status().as_u16());
            }
            v
        };
        match mode {
            FailureMode::Local => assert_eq!(statuses, [200, 429, 429, 429]),
            FailureMode::Open => assert_eq!(statuses, [200, 200, 200, 200]),
            _ => assert_eq!(statuses, [503, 503, 503, 503]),
        }
        if mode == FailureMode::Closed {
            let r = send(&svc, keyed()).await;
            assert!(
                r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
                    >= 1
            );
            assert_eq!(
                r.extensions().get::<Problem>().unwrap().get_code(),
                &Code::SERVICE_UNAVAILABLE
            );
        }
        assert_eq!(
            backend.calls.load(Ordering::SeqCst),
            2,
            "{mode:?}: the breaker opened after 2"
        );
        assert!(layer.backend_unavailable());
        assert!(layer.fallbacks() >= 4);
        let _ = calls;
    }
    // Recovery: a zero cooldown lets the next request probe.
    let (layer, backend) = remote(FailureMode::Open).await;
    let layer = layer.circuit_breaker(1, Duration::ZERO);
    let (svc, _) = app(&layer);
    backend.fail.store(true, Ordering::SeqCst);
    send(&svc, keyed()).await;
    assert!(layer.backend_unavailable());
    backend.fail.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(2));
    let r = send(&svc, keyed()).await;
    assert_eq!(r.headers()["ratelimit"], "\"api\";r=1;t=2");
    assert!(!layer.backend_unavailable());
}

#[tokio::test(start_paused = true)]
async fn slow_backend_times_out() {
    #[derive(Clone)]
    struct Hang;
    impl Backend for Hang {
        fn check(&self, _: BackendRequest) -> BackendFuture {
            Box::pin(std::future::pending())
        }
    }
    let layer = RateLimitLayer::with_quota(Quota::per_minute(1))
        .backend(Hang)
        .failure_mode(FailureMode::Open)
        .backend_timeout(Duration::from_millis(20));
    let (svc, calls) = app(&layer);
    assert_eq!(send(&svc, req("/", "192.0.2.1:1")).await.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(layer.fallbacks(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever the arrivals, accepted cost never exceeds burst + rate x elapsed.
    #[test]
    fn never_more_than_burst_plus_rate(
        count in 1u32..20,
        window_ms in 1u64..5_000,
        burst in 1u32..20,
        arrivals in prop::collection::vec((0u64..400, 1u32..4), 1..200),
    ) {
        let quota = Quota::per(count, Duration::from_millis(window_ms)).burst(burst);
        let clock = RateLimitClock::manual();
        let layer = RateLimitLayer::new()
            .clock(clock.clone())
            .headers(false)
            .policy(Policy::new("p", quota).key(KeyBy::global()).cost(|h| {
                h.headers().get("cost").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1)
            }));
        let (mut svc, _) = app(&layer);
        let mut accepted = 0u64;
        let mut elapsed = Duration::ZERO;
        let interval = quota.replenish_interval().as_nanos();
        for (gap_ms, cost) in arrivals {
            clock.advance(Duration::from_millis(gap_ms));
            elapsed += Duration::from_millis(gap_ms);
            let mut r = Request::new(());
            r.headers_mut().insert("cost", HeaderValue::from(cost));
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let mut fut = std::pin::pin!(svc.call(r));
            let Poll::Ready(Ok(resp)) = fut.as_mut().poll(&mut cx) else { panic!("pending") };
            if resp.status() == 200 {
                accepted += u64::from(cost);
            }
            let bound = u128::from(burst) + elapsed.as_nanos() / interval;
            prop_assert!(u128::from(accepted) <= bound, "{accepted} > {bound}");
        }
    }
}
