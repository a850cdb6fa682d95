//! `Redactor` against hostile and arbitrary input, and over a real loopback server.

use std::borrow::Cow;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, Uri};
use axum::routing::post;
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_ops::redact::{Censor, RedactedBody, Redactor};

const CANARY: &str = "CANARY7x9q";

fn redactors() -> Vec<Redactor> {
    vec![
        Redactor::default(),
        Redactor::builder().censor(Censor::Remove).build(),
        Redactor::builder().censor(Censor::keyed_hash("k")).build(),
        Redactor::builder().censor(Censor::LastFour).build(),
    ]
}

/// Every canary a client might send, in every place a log may show.
#[tokio::test]
async fn no_canary_survives_a_real_request() {
    async fn render(uri: Uri, headers: HeaderMap, body: Bytes) -> String {
        let redactor = Redactor::default();
        let allow: Vec<HeaderName> = headers.keys().cloned().collect();
        let mut out = format!("{}\n", redactor.redact_path_and_query(&uri));
        for (name, value) in redactor.redact_headers(&headers, &allow) {
            out.push_str(&format!("{name}: {value}\n"));
        }
        out.push_str(&redactor.redact_json_bytes(&body).to_string());
        out
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/{*path}", post(render));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJDQU5BUlkifQ.CANARY7x9qsig";
    let body = json!({
        "user": {"name": "ada", "Pass-Word": format!("{CANARY}-1")},
        "items": [{"API_KEY": format!("{CANARY}-2")}, {"apiKey": format!("{CANARY}-3")}],
        "nested": {"deeper": [[{"client_secret": {"v": format!("{CANARY}-4")}}]]},
        "payload": json!({"refresh_token": format!("{CANARY}-5")}).to_string(),
        "note": format!("Authorization: Bearer {CANARY}-6 and {jwt}"),
        "card": "4111 1111 1111 1111",
    })
    .to_string();
    let request = format!(
        "POST /v1/login;jsessionid={CANARY}-7?access_token={CANARY}-8&Id-Token={CANARY}-9&page=2&%61pi%5Fkey={CANARY}-10 HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Authorization: Bearer {CANARY}-11\r\n\
         Proxy-Authorization: Basic Q0FOQVJZOnBhc3M=\r\n\
         Cookie: sid={CANARY}-12; theme=dark\r\n\
         Cookie: other={CANARY}-13\r\n\
         X-Api-Key: {CANARY}-14\r\n\
         X-Auth-Token: {CANARY}-15\r\n\
         X-CSRF-Token: {CANARY}-16\r\n\
         X-XSRF-Token: {CANARY}-17\r\n\
         X-Upstream-Secret: {CANARY}-18\r\n\
         Referer: https://app.example/reset?token={CANARY}-19\r\n\
         X-Debug: {jwt}\r\n\
         Content-Type: application/json\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    server.abort();

    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(!response.contains(CANARY), "{response}");
    assert!(!response.contains("4111 1111"), "{response}");
    assert!(response.contains("page=2"), "{response}");
    assert!(response.contains("theme=[REDACTED]"), "{response}");
    assert!(response.contains("\"name\":\"ada\""), "{response}");
}

#[test]
fn canaries_in_free_text() {
    let texts = [
        format!("db error: postgres://app:{CANARY}@db:5432/app refused"),
        format!("panicked at 'password={CANARY}'"),
        format!("request failed: {{\"token\": \"{CANARY}\"}}"),
        format!("auth header was Bearer {CANARY}xyz0123"),
        format!("-----BEGIN EC PRIVATE KEY-----\n{CANARY}\n-----END EC PRIVATE KEY-----"),
        format!(
            "key AKIA{} leaked",
            &format!("{}ABCDEFGHIJ", CANARY.to_uppercase())[..16]
        ),
        format!("Set-Cookie: sid={CANARY}; HttpOnly"),
        format!("retry with api_key: '{CANARY}'"),
    ];
    for redactor in redactors() {
        for text in &texts {
            let out = redactor.redact_text(text);
            let hidden = CANARY.to_uppercase();
            assert!(
                !out.contains(CANARY) && !out.contains(&hidden[..8]),
                "{text:?} -> {out:?}"
            );
        }
    }
}

#[test]
fn clean_input_is_borrowed_everywhere() {
    let redactor = Redactor::default();
    assert!(matches!(
        redactor.redact_text("GET /users/42 took 12 ms"),
        Cow::Borrowed(_)
    ));
    assert!(matches!(
        redactor.redact_query("page=2&q=rust"),
        Cow::Borrowed(_)
    ));
    let uri: Uri = "/users/42?page=2".parse().unwrap();
    assert!(matches!(
        redactor.redact_path_and_query(&uri),
        Cow::Borrowed(_)
    ));
    assert!(matches!(
        redactor.redact_json_bytes(br#"{"id":42,"tags":["a","b"]}"#),
        RedactedBody::Json(Cow::Borrowed(_))
    ));
}

/// Names under which a canary must always be censored.
fn sensitive_key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "password",
        "Pass-Word",
        "PASSWORD",
        "new_password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "API_KEY",
        "apiKey",
        "api-key",
        "x-api-key",
        "token",
        "access_token",
        "AccessToken",
        "refresh_token",
        "id_token",
        "private_key",
        "authorization",
        "session",
        "cookie",
        "card_number",
        "cvv",
        "ssn",
        "credentials",
        "sessionId",
    ])
    .prop_map(str::to_owned)
}

/// Keys that are never sensitive.
fn plain_key() -> impl Strategy<Value = String> {
    "[a-h]{1,6}"
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        // Below 13 digits: long integers may be payment card numbers.
        any::<i32>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|n| json!(n)),
        "[a-z 0-9é\"\\\\\n]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((plain_key(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// Where and how the canary is held.
#[derive(Clone, Debug)]
enum Wrap {
    Object(String, Value),
    Array(usize, Vec<Value>),
    InString(String),
}

fn arb_wraps() -> impl Strategy<Value = Vec<Wrap>> {
    prop::collection::vec(
        prop_oneof![
            4 => (plain_key(), arb_json()).prop_map(|(k, v)| Wrap::Object(k, v)),
            4 => (0usize..4, prop::collection::vec(arb_json(), 0..4)).prop_map(|(i, v)| Wrap::Array(i, v)),
            1 => plain_key().prop_map(Wrap::InString),
        ],
        0..8,
    )
}

fn canary_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(CANARY)),
        Just(json!(format!("{CANARY} with spaces \"quoted\""))),
        Just(json!({"inner": CANARY})),
        Just(json!([CANARY, 1])),
        Just(json!(7_290_011_337u64)),
    ]
}

fn place(key: &str, canary: &Value, wraps: &[Wrap]) -> Value {
    let mut node = json!({ key: canary });
    for wrap in wraps {
        node = match wrap.clone() {
            Wrap::Object(k, sibling) => json!({ "sibling": sibling, k: node }),
            Wrap::Array(i, mut items) => {
                let at = i.min(items.len());
                items.insert(at, node);
                Value::Array(items)
            }
            Wrap::InString(k) => json!({ k: node.to_string() }),
        };
    }
    node
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn canary_under_a_sensitive_key_never_survives(
        key in sensitive_key(),
        canary in canary_value(),
        wraps in arb_wraps(),
        pretty in any::<bool>(),
    ) {
        let doc = place(&key, &canary, &wraps);
        let body = if pretty { serde_json::to_string_pretty(&doc).unwrap() } else { doc.to_string() };
        for redactor in redactors() {
            let out = redactor.redact_json_bytes(body.as_bytes());
            let text = out.to_string();
            prop_assert!(!text.contains(CANARY), "{} -> {}", body, text);
            prop_assert!(!text.contains("7290011337"), "{} -> {}", body, text);
            let json = out.as_json().expect("valid JSON stays parsed");
            prop_assert!(serde_json::from_str::<Value>(json).is_ok(), "{}", json);
        }
    }

    #[test]
    fn json_without_secrets_keeps_its_meaning(doc in arb_json(), pretty in any::<bool>()) {
        let body = if pretty { serde_json::to_string_pretty(&doc).unwrap() } else { doc.to_string() };
        let out = Redactor::default().redact_json_bytes(body.as_bytes());
        let json = out.as_json().expect("valid JSON stays parsed");
        prop_assert!(!json.contains('\n'));
        // Compare parses of both texts: floats do not round-trip through serde_json exactly.
        let original = serde_json::from_str::<Value>(&body).unwrap();
        prop_assert_eq!(serde_json::from_str::<Value>(json).unwrap(), original);
    }

    #[test]
    fn json_validity_agrees_with_serde(body in "[\\[\\]{}\",:0-9a-z \\\\.eE+-]{0,24}") {
        let ours = Redactor::default().redact_json_bytes(body.as_bytes());
        let theirs = serde_json::from_str::<Value>(&body);
        prop_assert_eq!(ours.as_json().is_some(), theirs.is_ok(), "{:?}", body);
        if let (Some(json), Ok(value)) = (ours.as_json(), theirs) {
            prop_assert_eq!(serde_json::from_str::<Value>(json).unwrap(), value);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        for redactor in redactors() {
            let out = redactor.redact_json_bytes(&body);
            if let Some(json) = out.as_json() {
                prop_assert!(serde_json::from_str::<serde::de::IgnoredAny>(json).is_ok() || json.contains("\\u"));
            } else {
                prop_assert_eq!(out.to_string(), format!("<unparsed body: {} bytes>", body.len()));
            }
            let text = String::from_utf8_lossy(&body);
            let _ = redactor.redact_text(&text);
            let _ = redactor.redact_query(&text);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "(\\PC|[=:\"'&%+\\-]|Bearer |Basic |eyJ|AKIA|-----BEGIN |[0-9 ]{13,20}){0,40}") {
        for redactor in redactors() {
            let out = redactor.redact_text(&text);
            if out == text {
                prop_assert!(matches!(out, Cow::Borrowed(_)));
            }
            let _ = redactor.redact_query(&text);
            let _ = redactor.redact_json_str(&text);
        }
    }
}

/// Inputs built to make a careless scanner quadratic; each must finish (1 MiB).
#[test]
fn adversarial_text_is_scanned_once() {
    let redactor = Redactor::default();
    let big = |unit: &str| unit.repeat((1 << 20) / unit.len());
    for unit in [
        "eyJ-",
        "eyJ.",
        "ghp_-",
        "a://",
        "-----BEGIN ",
        "Bearer ",
        "password=\"",
        "token=[",
        "1 ",
        "4-",
        "\\\"",
        " =",
        "AKIA",
        "x:",
        "{\"a\":\"",
        "%",
        "&",
    ] {
        let text = big(unit);
        let _ = redactor.redact_text(&text);
        let _ = redactor.redact_query(&text);
        let json = serde_json::to_string(&json!({ "k": text, "password": text })).unwrap();
        let _ = Redactor::builder()
            .max_body_bytes(4 << 20)
            .build()
            .redact_json_str(&json);
    }
}

#[test]
fn one_redactor_many_threads() {
    let redactor = Redactor::builder().censor(Censor::keyed_hash("k")).build();
    let body = br#"{"session":"abc","items":[{"token":"t"}]}"#;
    let expected = redactor.redact_json_bytes(body).to_string();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let redactor = redactor.clone();
            let expected = &expected;
            scope.spawn(move || {
                for _ in 0..500 {
                    assert_eq!(&redactor.redact_json_bytes(body).to_string(), expected);
                }
            });
        }
    });
}
