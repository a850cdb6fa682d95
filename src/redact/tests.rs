use super::*;
use http::header;

fn json(r: &Redactor, body: &str) -> String {
    r.redact_json_str(body).to_string()
}

fn valid(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn json_keys_at_any_depth_and_in_arrays() {
    let r = Redactor::default();
    let body = r#"{"a":{"b":[{"c":{"API_KEY":"k1"}},{"apiKey":"k2"}]},"list":[{"Pass-Word":"p"}],"ok":"v"}"#;
    assert_eq!(
        json(&r, body),
        r#"{"a":{"b":[{"c":{"API_KEY":"[REDACTED]"}},{"apiKey":"[REDACTED]"}]},"list":[{"Pass-Word":"[REDACTED]"}],"ok":"v"}"#
    );
}

#[test]
fn json_sensitive_containers_are_censored_whole() {
    let r = Redactor::default();
    assert_eq!(
        json(
            &r,
            r#"{"credentials": {"user": "a", "list": [1, {"x": "y"}]}, "n": 1}"#
        ),
        r#"{"credentials":"[REDACTED]","n":1}"#
    );
    assert_eq!(json(&r, r#"{"secret":[]}"#), r#"{"secret":"[REDACTED]"}"#);
}

#[test]
fn json_harmless_values_stay() {
    let r = Redactor::default();
    let body = r#"{"password":null,"token":"","secret":false,"pin":0}"#;
    assert_eq!(
        json(&r, body),
        r#"{"password":null,"token":"","secret":false,"pin":"[REDACTED]"}"#
    );
}

#[test]
fn json_whitespace_is_dropped_outside_strings() {
    let r = Redactor::default();
    let out = json(&r, " {\n  \"a\" : [ 1 , 2 ] ,\t\"b\" : \"x y\"\r\n} \n");
    assert_eq!(out, r#"{"a":[1,2],"b":"x y"}"#);
}

#[test]
fn json_escaped_keys_and_values() {
    let r = Redactor::default();
    // `\u0070` is `p`: the key is `password`.
    assert_eq!(
        json(&r, r#"{"\u0070assword":"x\"y"}"#),
        r#"{"\u0070assword":"[REDACTED]"}"#
    );
    // Escapes in values are kept when nothing changed.
    let body = r#"{"msg":"line\nnext \"quoted\" \u00e9"}"#;
    assert!(matches!(
        r.redact_json_str(body),
        RedactedBody::Json(Cow::Borrowed(_))
    ));
}

#[test]
fn json_in_a_string_is_redacted() {
    let r = Redactor::default();
    let inner = r#"{"password":"hunter2","keep":1}"#;
    let body =
        serde_json::json!({ "payload": inner, "note": "Authorization: Bearer abcdef123456" })
            .to_string();
    let out = json(&r, &body);
    let v = valid(&out);
    assert_eq!(v["payload"], r#"{"password":"[REDACTED]","keep":1}"#);
    assert_eq!(v["note"], "Authorization: [REDACTED]");
    assert!(!out.contains("hunter2") && !out.contains("abcdef123456"));
    // Broken JSON in a string still goes through the value patterns.
    let out = json(&r, r#"{"x":"{\"password\": \"hunter2\""}"#);
    assert!(!out.contains("hunter2"), "{out}");
}

#[test]
fn json_value_patterns() {
    let r = Redactor::default();
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
    let body = format!(
        r#"{{"id":"{jwt}","n":[4111111111111111,4111111111111112,1.5],"k":"AKIAABCDEFGHIJKLMNOP"}}"#
    );
    assert_eq!(
        json(&r, &body),
        r#"{"id":"[REDACTED]","n":["[REDACTED]",4111111111111112,1.5],"k":"[REDACTED]"}"#
    );
}

#[test]
fn json_top_level_scalars() {
    let r = Redactor::default();
    assert_eq!(json(&r, " 12 "), "12");
    assert_eq!(
        json(&r, r#""Bearer abcdef123456""#),
        r#""Bearer [REDACTED]""#
    );
    assert_eq!(json(&r, "null"), "null");
}

#[test]
fn json_remove_keeps_commas_right() {
    let r = Redactor::builder().censor(Censor::Remove).build();
    let cases = [
        (r#"{"password":"x"}"#, "{}"),
        (r#"{"password":"x","a":1}"#, r#"{"a":1}"#),
        (r#"{"a":1,"password":"x"}"#, r#"{"a":1}"#),
        (r#"{"a":1,"password":"x","b":2}"#, r#"{"a":1,"b":2}"#),
        (
            r#"{ "token" : "x" , "secret" : {"a":[1]} , "b" : 2 , "pwd" : 3 }"#,
            r#"{"b":2}"#,
        ),
        (r#"{"token":"x","secret":"y"}"#, "{}"),
        (
            r#"[{"token":"x"},{"a":{"pwd":"y","z":null}}]"#,
            r#"[{},{"a":{"z":null}}]"#,
        ),
        (r#"{"password":null,"token":"t"}"#, r#"{"password":null}"#),
    ];
    for (body, expected) in cases {
        assert_eq!(json(&r, body), expected, "{body}");
    }
}

#[test]
fn json_censor_strategies() {
    let hashed = Redactor::builder().censor(Censor::keyed_hash("k")).build();
    let out = json(&hashed, r#"{"session":"abc","other":{"session":"abc"}}"#);
    let v = valid(&out);
    assert!(v["session"].as_str().unwrap().starts_with("hmac:"));
    assert_eq!(v["session"], v["other"]["session"]);
    let last_four = Redactor::builder().censor(Censor::LastFour).build();
    assert_eq!(
        json(
            &last_four,
            r#"{"card_number":"4111 1111 1111 1111","cvv":"123"}"#
        ),
        r#"{"card_number":"****1111","cvv":"[REDACTED]"}"#
    );
    let custom = Redactor::builder().censor(Censor::fixed("\"*\"\n")).build();
    let out = json(&custom, r#"{"token":"t"}"#);
    assert_eq!(valid(&out)["token"], "\"*\"\n");
}

#[test]
fn invalid_json_gives_a_placeholder() {
    let r = Redactor::default();
    for body in [
        "",
        " ",
        "{",
        "}",
        "[1,]",
        "{\"a\"}",
        "{\"a\":1,}",
        "01",
        "1.",
        "-",
        "tru",
        "nul",
        "\"abc",
        "\"a\u{1}b\"",
        "\"\\x\"",
        "\"\\u12g4\"",
        "[1] [2]",
        "{\"a\":1}}",
        "{'a':1}",
        "[\"password=hunter2\"",
        "NaN",
        "{\"a\":1 \"b\":2}",
        "[1 2]",
        "{1:2}",
    ] {
        let out = r.redact_json_str(body);
        assert_eq!(
            out,
            RedactedBody::Unparsed {
                len: body.len(),
                reason: UnparsedReason::InvalidJson
            },
            "{body:?}"
        );
        assert_eq!(
            out.to_string(),
            format!("<unparsed body: {} bytes>", body.len())
        );
        assert!(
            serde_json::from_str::<serde_json::Value>(body).is_err(),
            "{body:?}"
        );
    }
}

#[test]
fn invalid_utf8_gives_a_placeholder() {
    let r = Redactor::default();
    let body = b"{\"password\":\"hunter2\xff\"}";
    let out = r.redact_json_bytes(body);
    assert_eq!(
        out.to_string(),
        format!("<unparsed body: {} bytes>", body.len())
    );
    assert!(matches!(
        out,
        RedactedBody::Unparsed {
            reason: UnparsedReason::InvalidUtf8,
            ..
        }
    ));
}

#[test]
fn deep_nesting_gives_a_placeholder_without_overflow() {
    let r = Redactor::default();
    for open in ["[", "{\"a\":"] {
        let body = format!(
            "{}1{}",
            open.repeat(100_000),
            if open == "[" { "]" } else { "}" }.repeat(100_000)
        );
        let out = r.redact_json_str(&body);
        assert!(matches!(
            out,
            RedactedBody::Unparsed {
                reason: UnparsedReason::TooDeep,
                ..
            }
        ));
    }
    // Unclosed deep nesting, and the limit itself.
    assert!(r.redact_json_str(&"[".repeat(100_000)).as_json().is_none());
    let ok = format!("{}{}", "[".repeat(128), "]".repeat(128));
    assert_eq!(r.redact_json_str(&ok).as_json(), Some(ok.as_str()));
    let too_deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
    assert!(r.redact_json_str(&too_deep).as_json().is_none());
    // A higher cap is honoured without recursion.
    let deep = Redactor::builder().max_depth(200_000).build();
    let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        deep.redact_json_str(&body).as_json().map(str::len),
        Some(200_000)
    );
}

#[test]
fn large_bodies_give_a_placeholder() {
    let r = Redactor::default();
    let secret = "s3cr3t-canary";
    let mut body = String::from("{\"password\":\"s3cr3t-canary\",\"pad\":\"");
    body.push_str(&"x".repeat(10 * 1024 * 1024));
    body.push_str("\"}");
    let out = r.redact_json_str(&body);
    assert!(matches!(
        out,
        RedactedBody::Unparsed {
            reason: UnparsedReason::TooLarge,
            ..
        }
    ));
    assert!(!out.to_string().contains(secret));
    // Under a raised cap the same body is parsed and redacted.
    let big = Redactor::builder().max_body_bytes(16 * 1024 * 1024).build();
    let out = big.redact_json_str(&body);
    assert!(!out.as_json().unwrap().contains(secret));
}

#[test]
fn node_cap() {
    let r = Redactor::builder().max_nodes(10).build();
    assert!(r.redact_json_str("[1,2,3,4,5,6,7,8,9]").as_json().is_some());
    let out = r.redact_json_str("[1,2,3,4,5,6,7,8,9,10]");
    assert!(matches!(
        out,
        RedactedBody::Unparsed {
            reason: UnparsedReason::TooManyNodes,
            ..
        }
    ));
}

#[test]
fn compact_json_without_secrets_is_borrowed() {
    let r = Redactor::default();
    let body = r#"{"user":{"id":42,"name":"Ada","roles":["admin"],"created":"2026-11-21T10:00:00Z"},"page":1.5e3}"#;
    match r.redact_json_str(body) {
        RedactedBody::Json(Cow::Borrowed(out)) => assert_eq!(out, body),
        other => panic!("{other:?}"),
    }
}

#[test]
fn headers_value_by_value() {
    let r = Redactor::default();
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("authorization", "Bearer canary-1"),
        ("proxy-authorization", "Basic Y2FuYXJ5OjI="),
        ("cookie", "a=canary-3; b=canary-4"),
        ("set-cookie", "sid=canary-5; Path=/; Secure"),
        ("set-cookie", "other=canary-6"),
        ("x-api-key", "canary-7"),
        ("x-auth-token", "canary-8"),
        ("x-csrf-token", "canary-9"),
        ("x-xsrf-token", "canary-10"),
        ("x-client-secret", "canary-11"),
        ("x-forwarded-for", "10.0.0.1"),
    ] {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    let allow: Vec<HeaderName> = headers.keys().cloned().collect();
    let rendered: Vec<(String, String)> = r
        .redact_headers(&headers, &allow)
        .map(|(n, v)| (n.to_string(), v.into_owned()))
        .collect();
    assert_eq!(rendered.len(), 11);
    for (name, value) in &rendered {
        assert!(!value.contains("canary"), "{name}: {value}");
    }
    assert!(rendered.contains(&("set-cookie".into(), "sid=[REDACTED]; Path=/; Secure".into())));
    assert!(rendered.contains(&("set-cookie".into(), "other=[REDACTED]".into())));
    assert!(rendered.contains(&("proxy-authorization".into(), "Basic [REDACTED]".into())));
    assert!(rendered.contains(&("x-forwarded-for".into(), "10.0.0.1".into())));

    // Only allowed headers, and with `Remove`, no sensitive ones.
    let allow = [header::AUTHORIZATION, header::ACCEPT];
    assert_eq!(r.redact_headers(&headers, &allow).count(), 1);
    let remove = Redactor::builder().censor(Censor::Remove).build();
    assert_eq!(remove.redact_headers(&headers, &allow).count(), 0);
}

#[test]
fn header_rules_can_change() {
    let r = Redactor::builder()
        .without_header(header::COOKIE)
        .header(HeaderName::from_static("x-tenant"))
        .build();
    assert!(!r.is_sensitive_header(&header::COOKIE));
    assert!(r.is_sensitive_header(&HeaderName::from_static("x-tenant")));
    assert!(r.is_sensitive_header(&HeaderName::from_static("x-custom-password")));
    let value = HeaderValue::from_bytes(b"a=\xffb").unwrap();
    assert_eq!(r.redact_header(&header::COOKIE, &value), "a=\u{fffd}b");
    let value = HeaderValue::from_bytes(b"bearer \xff\xfe").unwrap();
    assert_eq!(
        Redactor::default().redact_header(&header::AUTHORIZATION, &value),
        "bearer [REDACTED]"
    );
}

#[test]
fn path_and_query() {
    let r = Redactor::default();
    let uri: Uri = "/a/b?x=1&y=2".parse().unwrap();
    assert!(matches!(
        r.redact_path_and_query(&uri),
        Cow::Borrowed("/a/b?x=1&y=2")
    ));
    let uri: Uri = "https://h.example/s;jsessionid=canary?Refresh_Token=canary2"
        .parse()
        .unwrap();
    assert_eq!(
        r.redact_path_and_query(&uri),
        "/s;jsessionid=[REDACTED]?Refresh_Token=[REDACTED]"
    );
    let uri: Uri = "/plain".parse().unwrap();
    assert!(matches!(
        r.redact_path_and_query(&uri),
        Cow::Borrowed("/plain")
    ));
    let uri: Uri = "*".parse().unwrap();
    assert_eq!(r.redact_path_and_query(&uri), "*");
}

#[test]
fn empty_builder_and_patterns() {
    let r = RedactorBuilder::empty().build();
    assert_eq!(r.redact_query("password=x"), "password=x");
    assert_eq!(json(&r, r#"{"password":"x"}"#), r#"{"password":"x"}"#);
    let r = RedactorBuilder::empty()
        .pattern(ValuePattern::Jwt)
        .key("x")
        .build();
    assert_eq!(
        r.redact_text("password=abcdefgh eyJhbGciOiJIUzI1NiJ9.eyJ9.s"),
        "password=abcdefgh [REDACTED]"
    );
    assert_eq!(r.redact_query("X=1"), "X=[REDACTED]");
    let r = Redactor::builder()
        .without_pattern(ValuePattern::Jwt)
        .build();
    assert_eq!(
        r.redact_text("eyJhbGciOiJIUzI1NiJ9.eyJ9.s"),
        "eyJhbGciOiJIUzI1NiJ9.eyJ9.s"
    );
}

#[test]
fn clones_share_rules() {
    let r = Redactor::default();
    let c = r.clone();
    assert!(Arc::ptr_eq(&r.inner, &c.inner));
    assert!(Arc::ptr_eq(&r.inner, &Redactor::default().inner));
}

#[test]
fn into_json_keeps_the_borrow() {
    let r = Redactor::default();
    assert!(matches!(
        r.redact_json_str("[1]").into_json(),
        Some(Cow::Borrowed("[1]"))
    ));
    assert_eq!(r.redact_json_str("[1").into_json(), None);
}
