//! The free-text redactor: it changes text only to censor it, and a secret
//! planted on its own line (a JWT, a card number) never survives, whatever text
//! surrounds it.

#![no_main]

use std::borrow::Cow;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tower_ops::redact::{REDACTED, Redactor};

static R: LazyLock<Redactor> = LazyLock::new(Redactor::default);

const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A JWT-shaped token whose segments are drawn from `seed`.
fn jwt(seed: &[u8]) -> String {
    let mut chars = seed
        .iter()
        .cycle()
        .map(|&b| B64URL[usize::from(b) % 64] as char);
    let mut segment = |n: usize| (&mut chars).take(n).collect::<String>();
    format!("eyJ{}.{}.{}", segment(12), segment(8), segment(10))
}

/// A 16-digit number that passes the Luhn check, drawn from `seed`.
fn card(seed: &[u8]) -> String {
    let mut digits: Vec<u8> = seed.iter().cycle().take(15).map(|b| b % 10).collect();
    digits[0] = 4;
    // Luhn: from the right, every second digit of the payload is doubled.
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    digits.push(((10 - sum % 10) % 10) as u8);
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let out = R.redact_text(&text);
    match &out {
        Cow::Borrowed(kept) => assert_eq!(*kept, &*text),
        // A match may rewrite text that was already censored, to the same text.
        Cow::Owned(changed) => assert!(changed.contains(REDACTED), "{text:?} -> {changed:?}"),
    }
    // Not checked: that a second pass changes nothing. Patterns look at bounded
    // windows (a PEM label, a key before `=`), so text shortened by a first pass
    // can match where it did not before; that only ever censors more.

    let seed = if data.is_empty() { &[0u8][..] } else { data };
    for secret in [jwt(seed), card(seed)] {
        let planted = format!("{text}\n{secret}\n{text}");
        let out = R.redact_text(&planted);
        // The text around it may hold the same characters inside a word, where
        // they are not a secret: only the planted copy must go.
        let around = text.matches(&secret).count() * 2;
        assert!(
            out.matches(&secret).count() <= around,
            "{secret} survived in {out:?}"
        );
    }
});
