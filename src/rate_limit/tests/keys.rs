//! Keys of the application's own: headers, extensions and closures.

use super::*;

/// The WARN events emitted while `f` runs, each as `name=value` pairs.
fn warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    use std::fmt::Write as _;
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Warnings(Arc<Mutex<Vec<String>>>);
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if *event.metadata().level() == tracing::Level::WARN {
                let mut text = String::new();
                event.record(
                    &mut |field: &tracing::field::Field, value: &dyn fmt::Debug| {
                        let _ = write!(text, "{}={value:?} ", field.name());
                    },
                );
                self.0.lock().unwrap().push(text);
            }
        }
    }
    let seen = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(seen.clone());
    let out = tracing::subscriber::with_default(subscriber, f);
    let events = seen.0.lock().unwrap().clone();
    (out, events)
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct UserId(u64);

fn as_user(id: u64) -> Request<()> {
    let mut r = Request::get("/me").body(()).unwrap();
    r.extensions_mut().insert(UserId(id));
    r
}

#[test]
fn closure_keys_count_per_value_and_skip_none() {
    let layer = RateLimitLayer::new()
        .clock(RateLimitClock::manual())
        .policy(
            Policy::new("tenant", Quota::per_minute(1)).key(KeyBy::from_fn(|h| {
                let user = h.extensions().get::<UserId>()?;
                Some((user.0 / 10, h.method().clone()))
            })),
        );
    let (mut svc, calls) = app(&layer);
    // Users 41 and 42 make one tenant (4); 53 another.
    assert_eq!(answer_now(&mut svc, as_user(41)).status(), 200);
    assert_eq!(answer_now(&mut svc, as_user(42)).status(), 429);
    assert_eq!(answer_now(&mut svc, as_user(53)).status(), 200);
    let mut post = as_user(42);
    *post.method_mut() = Method::POST;
    assert_eq!(answer_now(&mut svc, post).status(), 200);
    // No user: the closure says None, the policy does not count it.
    for _ in 0..3 {
        assert_eq!(answer_now(&mut svc, Request::new(())).status(), 200);
    }
    assert_eq!(layer.len(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[test]
fn a_policy_that_never_finds_its_key_warns_once() {
    let layer = RateLimitLayer::new()
        .clock(RateLimitClock::manual())
        .policy(
            Policy::new("user", Quota::per_minute(5))
                .key(KeyBy::extension::<UserId>())
                .warn_missing_key_after(3),
        )
        .policy(
            Policy::new("tenant", Quota::per_minute(5))
                .key(KeyBy::from_fn(|h| h.headers().get("x-tenant").map(|_| 1u8)))
                .warn_missing_key_after(3),
        )
        .policy(
            Policy::new("api", Quota::per_minute(5))
                .key(KeyBy::header(HeaderName::from_static("x-api-key"))),
        )
        .policy(
            Policy::new("quiet", Quota::per_minute(5))
                .key(KeyBy::extension::<String>())
                .warn_missing_key_after(0),
        );
    let (mut svc, _) = app(&layer);
    let (_, first) = warnings(|| {
        for _ in 0..2 {
            answer_now(&mut svc, Request::new(()));
        }
    });
    assert!(first.is_empty(), "{first:?}");
    let (_, warned) = warnings(|| {
        for _ in 0..50 {
            assert_eq!(answer_now(&mut svc, Request::new(())).status(), 200);
        }
    });
    assert_eq!(warned.len(), 2, "one for each watched policy: {warned:?}");
    let user = warned.iter().find(|w| w.contains("policy=user")).unwrap();
    assert!(user.contains("UserId"), "{user}");
    assert!(user.contains("requests=3"), "{user}");
    assert!(user.contains("Stack::auth"), "{user}");
    assert!(warned.iter().any(|w| w.contains("policy=tenant")));
}

#[test]
fn a_policy_that_found_its_key_once_never_warns() {
    let layer = RateLimitLayer::new()
        .clock(RateLimitClock::manual())
        .policy(
            Policy::new("user", Quota::per_minute(500))
                .key(KeyBy::extension::<UserId>())
                .warn_missing_key_after(3),
        );
    let (mut svc, _) = app(&layer);
    let (_, warned) = warnings(|| {
        assert_eq!(answer_now(&mut svc, as_user(1)).status(), 200);
        for _ in 0..20 {
            assert_eq!(answer_now(&mut svc, Request::new(())).status(), 200);
        }
    });
    assert!(warned.is_empty(), "{warned:?}");
    // Requests outside the policy's scope are not counted as missing keys.
    let scoped = RateLimitLayer::new()
        .clock(RateLimitClock::manual())
        .policy(
            Policy::new("user", Quota::per_minute(500))
                .paths(["/me"])
                .key(KeyBy::extension::<UserId>())
                .warn_missing_key_after(3),
        );
    let (mut svc, _) = app(&scoped);
    let (_, warned) = warnings(|| {
        for _ in 0..20 {
            answer_now(&mut svc, Request::get("/other").body(()).unwrap());
        }
    });
    assert!(warned.is_empty(), "{warned:?}");
}

#[test]
fn custom_keys_compare_by_type_or_closure() {
    assert_eq!(KeyBy::extension::<UserId>(), KeyBy::extension::<UserId>());
    assert_ne!(KeyBy::extension::<UserId>(), KeyBy::extension::<String>());
    let f = KeyBy::from_fn(|_| Some(1u8));
    assert_eq!(f, f.clone());
    assert_ne!(f, KeyBy::from_fn(|_| Some(1u8)));
    assert!(format!("{:?}", KeyBy::extension::<UserId>()).contains("UserId"));
}

#[tokio::test]
async fn backend_keys_of_extensions_are_stable_across_instances_and_hide_values() {
    #[derive(Clone, Hash)]
    struct Token(String);
    let layer = || {
        let backend = Scripted::default();
        let layer = RateLimitLayer::new()
            .policy(Policy::new("user", Quota::per_minute(5)).key(KeyBy::extension::<Token>()))
            .backend(backend.clone())
            .key_secret("s3cret");
        (layer, backend)
    };
    let request = |t: &str| {
        let mut r = Request::new(());
        r.extensions_mut().insert(Token(t.to_owned()));
        r
    };
    let ((a, seen_a), (b, seen_b)) = (layer(), layer());
    send(&app(&a).0, request("tok_secret_1")).await;
    send(&app(&b).0, request("tok_secret_1")).await;
    send(&app(&b).0, request("tok_secret_2")).await;
    send(&app(&b).0, Request::new(())).await;
    let ka = seen_a.seen.lock().unwrap()[0].key.clone();
    let kb: Vec<String> = seen_b
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.key.clone())
        .collect();
    assert_eq!(kb.len(), 2, "no token, no check");
    assert_eq!(ka, kb[0], "two instances, one key");
    assert_ne!(kb[0], kb[1]);
    assert!(ka.starts_with("h:") && !ka.contains("tok_secret"), "{ka}");
}

#[tokio::test]
async fn scoped_policies_and_cost() {
    let clock = RateLimitClock::manual();
    let layer = RateLimitLayer::new()
        .clock(clock)
        .policy(
            Policy::new("auth", Quota::per(5, Duration::from_secs(900)))
                .paths(["/auth/**"])
                .methods([Method::POST]),
        )
        .policy(
            Policy::new("default", Quota::per_minute(100))
                .cost(|h| if h.uri().path() == "/export" { 40 } else { 1 }),
        );
    let (svc, _) = app(&layer);
    let r = send(&svc, req("/", "192.0.2.1:1")).await;
    assert_eq!(r.headers()["ratelimit"], "\"default\";r=99;t=1");
    let r = send(&svc, req("/export", "192.0.2.1:1")).await;
    assert_eq!(r.headers()["ratelimit"], "\"default\";r=59;t=25");
    let mut post = req("/auth/login", "192.0.2.1:1");
    *post.method_mut() = Method::POST;
    let r = send(&svc, post).await;
    // auth has 4 of 5 left, default 58 of 100: default is closer to its limit.
    assert_eq!(r.headers()["ratelimit"], "\"default\";r=58;t=26");
    let r = send(&svc, req("/auth/login", "192.0.2.1:1")).await;
    assert_eq!(
        r.headers()["ratelimit-policy"],
        "\"default\";q=100;w=60",
        "GET is not scoped"
    );
    // 40 more fit once (r=18 left), not twice.
    assert_eq!(
        send(&svc, req("/export", "192.0.2.1:1")).await.status(),
        200
    );
    assert_eq!(
        send(&svc, req("/export", "192.0.2.1:1")).await.status(),
        429
    );
}
