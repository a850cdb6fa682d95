//! The query-string redactor: parameters keep their names and order, and a
//! parameter whose name is sensitive never keeps its value: it reads
//! `[REDACTED]`, or is gone under `Censor::Remove`.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tower_ops::redact::{Censor, REDACTED, Redactor};

static MASK: LazyLock<Redactor> = LazyLock::new(Redactor::default);
static REMOVE: LazyLock<Redactor> =
    LazyLock::new(|| Redactor::builder().censor(Censor::Remove).build());

/// Percent-decoding as the docs describe it: `+` is a space, a malformed escape
/// stays as it is, invalid UTF-8 becomes U+FFFD.
fn decode(raw: &str) -> String {
    let b = raw.as_bytes();
    let hex = |i: usize| b.get(i).and_then(|&c| (c as char).to_digit(16));
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'+', ..) => out.push(b' '),
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            (c, ..) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `name=value` pairs split the way the redactor splits them.
fn params(query: &str) -> Vec<(&str, &str)> {
    query
        .split('&')
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

fn sensitive(r: &Redactor, name: &str, value: &str) -> bool {
    !value.is_empty() && r.is_sensitive_key(&decode(name))
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let input = params(query);

    // The default censor: same parameters, same names, sensitive values masked.
    let masked = MASK.redact_query(query);
    let output = params(&masked);
    assert_eq!(output.len(), input.len(), "{query:?} -> {masked:?}");
    for ((name, value), (out_name, out_value)) in input.iter().zip(&output) {
        assert_eq!(name, out_name, "{query:?} -> {masked:?}");
        if sensitive(&MASK, name, value) {
            assert_eq!(*out_value, REDACTED, "{query:?} -> {masked:?}");
        }
    }

    // Removal: what is left is the other parameters, in order.
    let removed = REMOVE.redact_query(query);
    let left = params(&removed);
    assert!(
        left.iter()
            .all(|(name, value)| !sensitive(&REMOVE, name, value)),
        "{query:?} -> {removed:?}"
    );
    if !removed.is_empty() {
        let mut names = input.iter().map(|(name, _)| name);
        for (name, _) in &left {
            assert!(names.any(|n| n == name), "{query:?} -> {removed:?}");
        }
    }
});
