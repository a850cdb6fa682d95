//! The JSON-body redactor: valid JSON in gives valid JSON out, with no value
//! left under a sensitive key (at any depth, and inside JSON held in a string);
//! anything that is not JSON is never echoed.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_ops::redact::{Censor, REDACTED, RedactedBody, Redactor, UnparsedReason};

static MASK: LazyLock<Redactor> = LazyLock::new(Redactor::default);
static REMOVE: LazyLock<Redactor> =
    LazyLock::new(|| Redactor::builder().censor(Censor::Remove).build());

/// Values that carry no secret and are kept under sensitive keys.
fn harmless(value: &Value) -> bool {
    matches!(value, Value::Null | Value::Bool(_)) || value.as_str() == Some("")
}

/// No sensitive member keeps a value: masked (or removed), unless harmless.
fn check(r: &Redactor, removes: bool, value: &Value, body: &str) {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                if r.is_sensitive_key(key) && !harmless(member) {
                    assert!(!removes, "{key:?} kept in {body}");
                    assert_eq!(member.as_str(), Some(REDACTED), "{key:?} in {body}");
                } else {
                    check(r, removes, member, body);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| check(r, removes, item, body)),
        // JSON held in a string is redacted too. Its secrets may come out
        // masked even with `Remove`: a string that was not valid JSON before
        // (a raw control character, say) is redacted as free text, and may
        // parse once its secret is replaced.
        Value::String(s) if s.starts_with(['{', '[']) => {
            if let Ok(inner) = serde_json::from_str::<Value>(s) {
                check(r, false, &inner, body);
            }
        }
        _ => {}
    }
}

fn beyond_grammar(e: &serde_json::Error) -> bool {
    let e = e.to_string();
    [
        "recursion limit",
        "surrogate",
        "hex escape",
        "number out of range",
    ]
    .iter()
    .any(|known| e.contains(known))
}

fn run(r: &Redactor, removes: bool, data: &[u8], parsed: &Result<Value, serde_json::Error>) {
    let out = r.redact_json_bytes(data);
    match (parsed, &out) {
        (Ok(_), RedactedBody::Json(json)) => {
            let value: Value = serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("valid JSON in, invalid out ({e}): {json}"));
            check(r, removes, &value, json);
        }
        (Ok(_), RedactedBody::Unparsed { reason, .. }) => assert!(
            matches!(
                reason,
                UnparsedReason::TooDeep | UnparsedReason::TooManyNodes
            ),
            "valid JSON refused: {reason}"
        ),
        (Ok(_), _) => panic!("valid JSON gave {out:?}"),
        // serde_json's nesting cap is not a verdict on the text, and RFC 8259's
        // grammar allows a lone `\uD800` and `1e400`, which serde_json refuses.
        (Err(e), RedactedBody::Json(_)) if beyond_grammar(e) => {}
        (Err(e), RedactedBody::Json(json)) => {
            panic!("not JSON ({e}) but echoed as {json}")
        }
        (Err(_), _) => assert!(out.as_json().is_none()),
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = serde_json::from_slice::<Value>(data);
    run(&MASK, false, data, &parsed);
    run(&REMOVE, true, data, &parsed);
});
