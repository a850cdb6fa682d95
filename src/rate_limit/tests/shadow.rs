//! Shadow mode: policies that count and mark, but never refuse.

use super::*;
use crate::error::ShadowRejection;
use crate::rate_limit::Mode;

/// The policy named by the response's shadow mark, if it has one; checks the
/// rest of the mark on the way.
fn marked_by(response: &Response<ResponseBody<Full<Bytes>>>) -> Option<String> {
    let mark = response.extensions().get::<ShadowRejection>()?;
    assert_eq!(mark.rejected_by(), "rate_limit");
    assert_eq!(mark.code(), &Code::RATE_LIMITED);
    Some(mark.policy_name().expect("the policy is named").to_owned())
}

/// Whether any rate-limit field is on the response.
fn has_limit_headers(response: &Response<ResponseBody<Full<Bytes>>>) -> bool {
    response
        .headers()
        .keys()
        .any(|n| n.as_str().contains("ratelimit") || n == http::header::RETRY_AFTER)
}

#[tokio::test]
async fn a_policys_own_mode_wins_over_the_layers() {
    use Mode::{Enforce, Shadow};
    let cases = [
        (None, None, false),
        (Some(Enforce), None, false),
        (Some(Shadow), None, true),
        (None, Some(Shadow), true),
        (Some(Enforce), Some(Shadow), true),
        (Some(Shadow), Some(Enforce), false),
        (None, Some(Enforce), false),
        (Some(Shadow), Some(Shadow), true),
    ];
    for (layer_mode, policy_mode, shadow) in cases {
        let policy = || {
            let p = Policy::new("p", Quota::per_minute(1));
            match policy_mode {
                Some(m) => p.mode(m),
                None => p,
            }
        };
        let base = RateLimitLayer::new().clock(RateLimitClock::manual());
        // The layer's mode applies whether it is set before or after the policy.
        let before = match layer_mode {
            Some(m) => base.clone().mode(m),
            None => base.clone(),
        }
        .policy(policy());
        let after = base.policy(policy());
        let after = match layer_mode {
            Some(m) => after.mode(m),
            None => after,
        };
        for layer in [before, after] {
            let (svc, calls) = app(&layer);
            let first = send(&svc, req("/", "192.0.2.1:1")).await;
            let second = send(&svc, req("/", "192.0.2.1:1")).await;
            let case = format!("layer {layer_mode:?}, policy {policy_mode:?}");
            assert_eq!(first.status(), 200, "{case}");
            assert_eq!(marked_by(&first), None, "{case}");
            if shadow {
                assert_eq!(second.status(), 200, "{case}");
                assert_eq!(marked_by(&second).as_deref(), Some("p"), "{case}");
                assert_eq!(calls.load(Ordering::SeqCst), 2, "{case}");
            } else {
                assert_eq!(second.status(), 429, "{case}");
                assert_eq!(marked_by(&second), None, "{case}");
                assert_eq!(calls.load(Ordering::SeqCst), 1, "{case}");
            }
        }
    }
}

#[tokio::test]
async fn the_layers_mode_reaches_the_default_policy() {
    let (layer, _) = manual(Quota::per_minute(1));
    let (svc, calls) = app(&layer.mode(Mode::Shadow));
    send(&svc, req("/", "192.0.2.1:1")).await;
    let over = send(&svc, req("/", "192.0.2.1:1")).await;
    assert_eq!(over.status(), 200);
    assert_eq!(marked_by(&over).as_deref(), Some("default"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn shadow_denials_are_served_marked_and_carry_no_header() {
    let clock = RateLimitClock::manual();
    let layer = RateLimitLayer::new()
        .clock(clock.clone())
        .legacy_headers(true)
        .skip_paths(["/health/*"])
        .policy(Policy::new("trial", Quota::per_minute(2)).mode(Mode::Shadow));
    let (svc, calls) = app(&layer);
    let mut marks = Vec::new();
    for _ in 0..5 {
        let r = send(&svc, req("/", "192.0.2.1:1")).await;
        assert_eq!(r.status(), 200);
        assert!(!has_limit_headers(&r), "{:?}", r.headers());
        assert!(r.extensions().get::<Problem>().is_none());
        marks.push(marked_by(&r));
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "ok", "the handler's own answer");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    let trial = || Some("trial".to_owned());
    assert_eq!(marks, [None, None, trial(), trial(), trial()]);
    // Another client has its own bucket; skipped paths are never checked.
    assert_eq!(marked_by(&send(&svc, req("/", "192.0.2.2:1")).await), None);
    for _ in 0..3 {
        assert_eq!(
            marked_by(&send(&svc, req("/health/live", "192.0.2.1:1")).await),
            None
        );
    }
    // A refusal is not charged: once a request's worth has come back, one fits.
    clock.advance(Duration::from_secs(30));
    assert_eq!(marked_by(&send(&svc, req("/", "192.0.2.1:1")).await), None);
    assert_eq!(
        marked_by(&send(&svc, req("/", "192.0.2.1:1")).await).as_deref(),
        Some("trial")
    );
    // gRPC calls are served as they are too.
    let call = send(&svc, grpc_call("application/grpc")).await;
    assert_eq!(call.status(), 200);
    assert!(call.headers().get("grpc-status").is_none());
    assert_eq!(marked_by(&call).as_deref(), Some("trial"));
    assert_eq!(layer.len(), 2);
}

/// Statuses, shadow marks and rate-limit headers of `n` requests from one client.
async fn run(layer: &RateLimitLayer, n: usize) -> Vec<(u16, Option<String>, Vec<String>)> {
    let (svc, calls) = app(layer);
    let mut out = Vec::new();
    for _ in 0..n {
        let r = send(&svc, req("/", "192.0.2.1:1")).await;
        let headers = r
            .headers()
            .iter()
            .filter(|(n, _)| n.as_str().contains("ratelimit") || *n == http::header::RETRY_AFTER)
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        out.push((r.status().as_u16(), marked_by(&r), headers));
    }
    let served = out.iter().filter(|(s, _, _)| *s == 200).count();
    assert_eq!(calls.load(Ordering::SeqCst), served);
    out
}

#[tokio::test]
async fn enforced_policies_decide_as_if_the_shadow_ones_were_not_there() {
    let enforced = || Policy::new("default", Quota::per_minute(3));
    let trial = || Policy::new("trial", Quota::per_minute(1)).mode(Mode::Shadow);
    let base = || {
        RateLimitLayer::new()
            .clock(RateLimitClock::manual())
            .legacy_headers(true)
    };
    let alone = run(&base().policy(enforced()), 5).await;
    for layer in [
        base().policy(trial()).policy(enforced()),
        base().policy(enforced()).policy(trial()),
    ] {
        let mixed = run(&layer, 5).await;
        let strip = |v: &[(u16, Option<String>, Vec<String>)]| {
            v.iter()
                .map(|(s, _, h)| (*s, h.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&mixed), strip(&alone), "same answers, same headers");
        let marks: Vec<_> = mixed.iter().map(|(_, m, _)| m.as_deref()).collect();
        // Served over the trial's limit: marked; refused by the enforced one: not.
        assert_eq!(
            marks,
            [None, Some("trial"), Some("trial"), None, None],
            "{mixed:?}"
        );
    }
    assert_eq!(alone[3].0, 429);
    assert!(
        alone[3].2.contains(&"retry-after: 20".to_owned()),
        "{alone:?}"
    );
}

#[tokio::test]
async fn of_several_shadow_policies_the_first_that_refuses_is_named() {
    let layer = RateLimitLayer::new()
        .clock(RateLimitClock::manual())
        .legacy_headers(true)
        .mode(Mode::Shadow)
        .policy(Policy::new("loose", Quota::per_minute(2)))
        .policy(Policy::new("tight", Quota::per_minute(1)))
        .policy(Policy::new("enforced", Quota::per_minute(10)).mode(Mode::Enforce));
    let out = run(&layer, 3).await;
    let marks: Vec<_> = out.iter().map(|(s, m, _)| (*s, m.as_deref())).collect();
    assert_eq!(
        marks,
        [(200, None), (200, Some("tight")), (200, Some("loose"))]
    );
    // The headers are the enforced policy's, though the shadow ones are closer.
    for (i, (_, _, headers)) in out.iter().enumerate() {
        assert!(
            headers.contains(&"ratelimit-policy: \"enforced\";q=10;w=60".to_owned()),
            "{headers:?}"
        );
        assert!(
            headers.contains(&format!("x-ratelimit-remaining: {}", 9 - i)),
            "{headers:?}"
        );
        assert_eq!(headers.iter().filter(|h| h.contains("loose")).count(), 0);
    }
}

#[tokio::test]
async fn only_shadow_policies_send_no_header_and_headers_off_changes_nothing() {
    for ietf in [true, false] {
        let layer = RateLimitLayer::new()
            .clock(RateLimitClock::manual())
            .headers(ietf)
            .mode(Mode::Shadow)
            .policy(Policy::new("a", Quota::per_minute(1)))
            .policy(Policy::new("b", Quota::per_minute(5)));
        let out = run(&layer, 3).await;
        for (status, _, headers) in &out {
            assert_eq!(*status, 200);
            assert!(headers.is_empty(), "{headers:?}");
        }
        let marks: Vec<_> = out.iter().map(|(_, m, _)| m.as_deref()).collect();
        assert_eq!(marks, [None, Some("a"), Some("a")], "headers {ietf}");
    }
}

#[tokio::test]
async fn a_mark_left_further_in_is_replaced_by_this_layers() {
    let outer = RateLimitLayer::new()
        .clock(RateLimitClock::manual())
        .policy(Policy::new("outer", Quota::per_minute(1)).mode(Mode::Shadow));
    let inner = RateLimitLayer::new()
        .clock(RateLimitClock::manual())
        .policy(Policy::new("inner", Quota::per_minute(1)).mode(Mode::Shadow));
    let svc = outer.layer(inner.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })));
    let mut names = Vec::new();
    for _ in 0..2 {
        let r = svc.clone().oneshot(req("/", "192.0.2.1:1")).await.unwrap();
        names.push(
            r.extensions()
                .get::<ShadowRejection>()
                .and_then(|m| m.policy_name().map(str::to_owned)),
        );
    }
    assert_eq!(names, [None, Some("outer".to_owned())]);
}

/// A backend that refuses every check of the policies it is told to refuse, and
/// allows the rest with 7 left.
#[derive(Clone)]
struct Refusing(&'static [&'static str]);

impl Backend for Refusing {
    fn check(&self, request: BackendRequest) -> BackendFuture {
        let allowed = !self.0.contains(&&*request.policy);
        Box::pin(async move {
            Ok(Decision::new(
                allowed,
                if allowed { 7 } else { 0 },
                Duration::from_secs(2),
            ))
        })
    }
}

fn with_key(key: &'static str) -> Request<()> {
    let mut r = req("/", "192.0.2.1:1");
    r.headers_mut()
        .insert("x-api-key", HeaderValue::from_static(key));
    r
}

fn api_key() -> KeyBy {
    KeyBy::header(HeaderName::from_static("x-api-key"))
}

#[tokio::test]
async fn a_backend_refusal_of_a_shadow_policy_is_served_and_marked() {
    // A shadow `trial` policy before an enforced `api` one, on a backend that
    // refuses the policies named.
    let layer = |refused: &'static [&'static str]| {
        RateLimitLayer::new()
            .clock(RateLimitClock::manual())
            .policy(
                Policy::new("trial", Quota::per_minute(1))
                    .key(api_key())
                    .mode(Mode::Shadow),
            )
            .policy(Policy::new("api", Quota::per_minute(100)).key(api_key()))
            .backend(Refusing(refused))
    };
    let (svc, calls) = app(&layer(&["trial"]));
    let r = send(&svc, with_key("k")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(marked_by(&r).as_deref(), Some("trial"));
    assert_eq!(r.headers()["ratelimit"], "\"api\";r=7;t=2");
    assert!(r.headers().get("retry-after").is_none());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The enforced policy refused by the backend still answers 429, unmarked.
    let (svc, calls) = app(&layer(&["trial", "api"]));
    let r = send(&svc, with_key("k")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(marked_by(&r), None);
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn every_failure_mode_applies_to_shadow_policies_without_refusing() {
    for mode in [FailureMode::Local, FailureMode::Open, FailureMode::Closed] {
        let (layer, backend) = remote(mode).await;
        let layer = layer.mode(Mode::Shadow);
        let (svc, calls) = app(&layer);
        backend.fail.store(true, Ordering::SeqCst);
        let mut marks = Vec::new();
        for _ in 0..3 {
            let r = send(&svc, with_key("k")).await;
            assert_eq!(r.status(), 200, "{mode:?}");
            assert!(!has_limit_headers(&r), "{mode:?}: {:?}", r.headers());
            let mark = r.extensions().get::<ShadowRejection>();
            marks.push(mark.map(|m| m.code().as_str().to_owned()));
            if let Some(m) = mark {
                assert_eq!(m.policy_name(), Some("api"));
                assert_eq!(m.rejected_by(), "rate_limit");
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3, "{mode:?}");
        let limited = Some("RATE_LIMITED".to_owned());
        let down = Some("SERVICE_UNAVAILABLE".to_owned());
        match mode {
            // The in-process limiter stands in with the same quota of 1.
            FailureMode::Local => assert_eq!(marks, [None, limited.clone(), limited]),
            FailureMode::Open => assert_eq!(marks, [None, None, None]),
            _ => assert_eq!(marks, [down.clone(), down.clone(), down]),
        }
        assert!(layer.fallbacks() >= 3, "{mode:?}");
    }
}

#[tokio::test]
async fn closed_with_a_failing_backend_still_refuses_for_the_enforced_policy() {
    let (layer, backend) = remote(FailureMode::Closed).await;
    let layer = layer.policy(
        Policy::new("trial", Quota::per_minute(1))
            .key(api_key())
            .mode(Mode::Shadow),
    );
    let (svc, calls) = app(&layer);
    backend.fail.store(true, Ordering::SeqCst);
    let r = send(&svc, with_key("k")).await;
    assert_eq!(r.status(), 503);
    assert!(r.extensions().get::<ShadowRejection>().is_none());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Whatever the arrivals and quotas, a layer with an enforced policy and a
    /// shadow policy before it answers (status and headers) exactly as the
    /// enforced policy alone, and marks exactly the requests that the shadow
    /// policy, enforced alone, would have refused.
    #[test]
    fn shadow_policies_change_no_answer_and_mark_what_they_would_refuse(
        enforced in (1u32..8, 1u64..3_000),
        trial in (1u32..8, 1u64..3_000),
        arrivals in prop::collection::vec((0u64..600, 0u8..3, 1u32..3), 1..80),
    ) {
        let clock = RateLimitClock::manual();
        let cost = |h: &crate::rate_limit::RequestHead<'_>| {
            h.headers().get("cost").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1)
        };
        let policy = |name: &str, (count, ms): (u32, u64)| {
            Policy::new(name, Quota::per(count, Duration::from_millis(ms))).cost(cost)
        };
        let layer = || RateLimitLayer::new().clock(clock.clone()).legacy_headers(true);
        let mixed = layer()
            .policy(policy("trial", trial).mode(Mode::Shadow))
            .policy(policy("enforced", enforced));
        let alone = layer().policy(policy("enforced", enforced));
        let trial_alone = layer().policy(policy("trial", trial));
        let (mut mixed_svc, _) = app(&mixed);
        let (mut alone_svc, _) = app(&alone);
        let (mut trial_svc, _) = app(&trial_alone);
        let call = |svc: &mut _, client: u8, cost: u32| {
            let mut r = req("/", &format!("192.0.2.{client}:1"));
            r.headers_mut().insert("cost", HeaderValue::from(cost));
            answer_now(svc, r)
        };
        for (gap_ms, client, units) in arrivals {
            clock.advance(Duration::from_millis(gap_ms));
            let m = call(&mut mixed_svc, client, units);
            let a = call(&mut alone_svc, client, units);
            let t = call(&mut trial_svc, client, units);
            prop_assert_eq!(m.status(), a.status());
            prop_assert_eq!(m.headers(), a.headers());
            let marked = m.extensions().get::<ShadowRejection>().is_some();
            prop_assert_eq!(marked, m.status() == 200 && t.status() == 429);
        }
    }
}
