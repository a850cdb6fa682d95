//! Value patterns: secrets recognised by their shape, wherever they appear.
//!
//! One pass over the bytes. Each pattern starts at a byte that a 256-entry table
//! marks as interesting (`e` of `eyJ`, `b`/`B` of `Bearer`/`Basic`, `A` of `AKIA`,
//! `-` of `-----BEGIN`, a digit, `=` or `:`, the first bytes of token prefixes);
//! every other byte costs one table look-up.

use std::borrow::Cow;

use super::Inner;
use super::rewrite::Rewriter;

/// A family of secrets recognised by the shape of the value, whatever its key.
///
/// All are on by default; remove one with
/// [`RedactorBuilder::without_pattern`](super::RedactorBuilder::without_pattern).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValuePattern {
    /// JSON Web Tokens: base64url segments joined by dots, the header starting `eyJ`.
    Jwt,
    /// `Bearer <token>`: the token is replaced, the scheme kept.
    Bearer,
    /// `Basic <base64 of user:password>`: the credentials are replaced.
    Basic,
    /// AWS access key ids: `AKIA`, `ASIA`, `ABIA` or `ACCA` and 16 more characters.
    AwsAccessKeyId,
    /// PEM private key blocks, from `-----BEGIN ... PRIVATE KEY-----` to the end line.
    PemPrivateKey,
    /// Payment card numbers: 13 to 19 digits (spaces or dashes allowed between
    /// them), starting 2 to 6, confirmed by the Luhn checksum.
    PaymentCard,
    /// `key=value`, `key: value` and `"key": "value"` where the key is sensitive
    /// (the key rules decide); also covers query strings inside URLs.
    SensitiveAssignment,
    /// The password of `scheme://user:password@host`.
    UrlCredentials,
    /// Well-known token prefixes (`ghp_`, `github_pat_`, `glpat-`, `xoxb-`,
    /// `sk_live_`, `AIza`, ...) followed by at least 16 token characters. Prefixes
    /// added with [`RedactorBuilder::token_prefix`](super::RedactorBuilder::token_prefix)
    /// stay on even without this pattern.
    TokenPrefix,
}

impl ValuePattern {
    /// Every pattern, in the order of the declaration.
    pub const ALL: [ValuePattern; 9] = [
        ValuePattern::Jwt,
        ValuePattern::Bearer,
        ValuePattern::Basic,
        ValuePattern::AwsAccessKeyId,
        ValuePattern::PemPrivateKey,
        ValuePattern::PaymentCard,
        ValuePattern::SensitiveAssignment,
        ValuePattern::UrlCredentials,
        ValuePattern::TokenPrefix,
    ];

    pub(crate) fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Token prefixes of [`ValuePattern::TokenPrefix`].
pub(crate) const DEFAULT_TOKEN_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxa-",
    "xoxb-",
    "xoxp-",
    "xoxr-",
    "xoxs-",
    "xapp-",
    "sk_live_",
    "rk_live_",
    "pk_live_",
    "whsec_",
    "AIza",
    "npm_",
    "pypi-",
    "sk-ant-",
    "sk-proj-",
    "hf_",
    "SG.",
    "dop_v1_",
];

/// Characters required after a token prefix.
const MIN_AFTER_PREFIX: usize = 16;

/// Patterns compiled for one redactor.
#[derive(Clone, Debug)]
pub(crate) struct Patterns {
    bits: u16,
    prefixes: Vec<Box<[u8]>>,
    /// First bytes of `prefixes`.
    prefix_first: [bool; 256],
    /// Bytes at which some pattern may start (or, for `=`/`:`, pivot).
    interesting: [bool; 256],
}

impl Patterns {
    pub(crate) fn new(enabled: &[ValuePattern], prefixes: Vec<Box<[u8]>>) -> Self {
        let bits = enabled.iter().fold(0, |acc, p| acc | p.bit());
        let mut interesting = [false; 256];
        let mut mark = |pattern: ValuePattern, bytes: &[u8]| {
            if bits & pattern.bit() != 0 {
                for &b in bytes {
                    interesting[usize::from(b)] = true;
                }
            }
        };
        mark(ValuePattern::Jwt, b"e");
        mark(ValuePattern::Bearer, b"bB");
        mark(ValuePattern::Basic, b"bB");
        mark(ValuePattern::AwsAccessKeyId, b"A");
        mark(ValuePattern::PemPrivateKey, b"-");
        mark(ValuePattern::PaymentCard, b"0123456789");
        mark(ValuePattern::SensitiveAssignment, b"=:");
        mark(ValuePattern::UrlCredentials, b":");
        let mut prefix_first = [false; 256];
        for prefix in &prefixes {
            interesting[usize::from(prefix[0])] = true;
            prefix_first[usize::from(prefix[0])] = true;
        }
        Self {
            bits,
            prefixes,
            prefix_first,
            interesting,
        }
    }

    fn on(&self, pattern: ValuePattern) -> bool {
        self.bits & pattern.bit() != 0
    }
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// RFC 6750 `b64token` characters.
fn is_b64token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

fn starts_with_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay[..needle.len()].eq_ignore_ascii_case(needle)
}

fn run(b: &[u8], from: usize, pred: impl Fn(u8) -> bool) -> usize {
    let mut i = from;
    while i < b.len() && pred(b[i]) {
        i += 1;
    }
    i
}

/// Applies the value patterns of `inner` to `text`; borrows when nothing matched.
pub(crate) fn redact<'a>(inner: &Inner, text: &'a str) -> Cow<'a, str> {
    let mut w = Rewriter::new(text);
    scan(inner, text, &mut w);
    w.finish()
}

fn scan(inner: &Inner, text: &str, w: &mut Rewriter<'_>) {
    let p = &inner.patterns;
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let alnum = is_alnum(c);
        // Letters and digits only start patterns at a word start, so the rest of
        // a word is skipped in one tight loop.
        if p.interesting[usize::from(c)] {
            let word_start = i == 0 || !is_alnum(b[i - 1]);
            if word_start || !alnum {
                match match_at(inner, b, i, c, word_start) {
                    Some(Hit::Secret(from, to)) => {
                        let secret = &text[from..to];
                        w.replace(from, to, |out| inner.censor.write(secret, out));
                        i = to.max(i + 1);
                        continue;
                    }
                    Some(Hit::Skip(next)) => {
                        i = next.max(i + 1);
                        continue;
                    }
                    None => {}
                }
            }
        }
        i = if alnum {
            run(b, i + 1, is_alnum)
        } else {
            i + 1
        };
    }
}

/// A secret starting (or, for assignments, pivoting) at `i`.
fn match_at(inner: &Inner, b: &[u8], i: usize, c: u8, word_start: bool) -> Option<Hit> {
    let p = &inner.patterns;
    let span = |(from, to): (usize, usize)| Some(Hit::Secret(from, to));
    match c {
        b'e' if word_start && p.on(ValuePattern::Jwt) && (i == 0 || !is_b64url(b[i - 1])) => {
            if let Some(end) = jwt(b, i) {
                return span((i, end));
            }
        }
        b'b' | b'B' if word_start => {
            if p.on(ValuePattern::Bearer)
                && starts_with_ignore_case(&b[i..], b"bearer")
                && let Some(s) = bearer(b, i + 6)
            {
                return span(s);
            }
            if p.on(ValuePattern::Basic)
                && starts_with_ignore_case(&b[i..], b"basic")
                && let Some(s) = basic(b, i + 5)
            {
                return span(s);
            }
        }
        b'A' if word_start && p.on(ValuePattern::AwsAccessKeyId) => {
            if let Some(end) = aws_key_id(b, i) {
                return span((i, end));
            }
        }
        b'-' if p.on(ValuePattern::PemPrivateKey) => {
            if let Some(end) = pem(b, i) {
                return span((i, end));
            }
        }
        b'0'..=b'9' if word_start && p.on(ValuePattern::PaymentCard) => {
            let (end, card) = card(b, i);
            if card {
                return span((i, end));
            }
            // Skip the rest of the number: no card starts inside it.
            if end > i + 1 {
                return Some(Hit::Skip(end));
            }
        }
        b'=' | b':' => {
            if c == b':'
                && p.on(ValuePattern::UrlCredentials)
                && let Some(s) = url_password(b, i)
            {
                return span(s);
            }
            if p.on(ValuePattern::SensitiveAssignment)
                && let Some(s) = assignment(inner, b, i)
            {
                return span(s);
            }
        }
        _ => {}
    }
    if word_start && p.prefix_first[usize::from(c)] {
        for prefix in &p.prefixes {
            if prefix[0] == c && b[i..].starts_with(prefix) {
                let end = run(b, i + prefix.len(), is_b64url);
                if end - (i + prefix.len()) >= MIN_AFTER_PREFIX
                    && (end == b.len() || !is_alnum(b[end]))
                {
                    return span((i, end));
                }
            }
        }
    }
    None
}

/// What [`match_at`] found.
enum Hit {
    /// A secret at `from..to`.
    Secret(usize, usize),
    /// Nothing to censor before this position.
    Skip(usize),
}

fn jwt(b: &[u8], i: usize) -> Option<usize> {
    if !b[i..].starts_with(b"eyJ") {
        return None;
    }
    let header_end = run(b, i, is_b64url);
    if header_end - i < 10 || b.get(header_end) != Some(&b'.') {
        return None;
    }
    let payload_end = run(b, header_end + 1, is_b64url);
    if payload_end - (header_end + 1) < 2 || b.get(payload_end) != Some(&b'.') {
        return None;
    }
    // Signature (may be empty for `alg: none`), then any further JWE segments.
    let mut end = run(b, payload_end + 1, is_b64url);
    while b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(|&c| is_b64url(c)) {
        end = run(b, end + 1, is_b64url);
    }
    Some(end)
}

/// After the scheme: spaces, then the credentials to censor.
fn credentials_after(
    b: &[u8],
    after_scheme: usize,
    token: fn(u8) -> bool,
) -> Option<(usize, usize)> {
    let start = run(b, after_scheme, |c| c == b' ' || c == b'\t');
    if start == after_scheme {
        return None;
    }
    let mut end = run(b, start, token);
    end = run(b, end, |c| c == b'=');
    (end > start).then_some((start, end))
}

fn bearer(b: &[u8], after: usize) -> Option<(usize, usize)> {
    let (start, end) = credentials_after(b, after, is_b64token)?;
    let token = &b[start..end];
    // Prose ("bearer authentication") is not a credential: ask for a digit or a
    // symbol, or a length no English word has.
    let looks_random = token.iter().any(|c| !c.is_ascii_alphabetic()) || token.len() >= 20;
    (token.len() >= 8 && looks_random).then_some((start, end))
}

fn basic(b: &[u8], after: usize) -> Option<(usize, usize)> {
    let (start, end) = credentials_after(b, after, |c| {
        c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
    })?;
    base64_has_colon(&b[start..end]).then_some((start, end))
}

/// Whether `token` is base64 whose decoded bytes contain `:` (as `user:password`).
fn base64_has_colon(token: &[u8]) -> bool {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let data = token.split(|&c| c == b'=').next().unwrap_or_default();
    if data.len() < 4 {
        return false;
    }
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in data {
        let Some(v) = value(c) else { return false };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if (acc >> bits) & 0xff == u32::from(b':') {
                return true;
            }
            acc &= (1 << bits) - 1;
        }
    }
    false
}

fn aws_key_id(b: &[u8], i: usize) -> Option<usize> {
    let rest = &b[i..];
    if rest.len() < 20 || !matches!(&rest[..4], b"AKIA" | b"ASIA" | b"ABIA" | b"ACCA") {
        return None;
    }
    let ok = rest[4..20]
        .iter()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    (ok && rest.get(20).is_none_or(|&c| !is_alnum(c))).then_some(i + 20)
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn pem(b: &[u8], i: usize) -> Option<usize> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    if !b[i..].starts_with(BEGIN) {
        return None;
    }
    let label_end = find(b, i + BEGIN.len(), b"-----")?;
    let label = &b[i + BEGIN.len()..label_end];
    if label.len() > 64 || find(label, 0, b"PRIVATE KEY").is_none() {
        return None;
    }
    // To the end line, or to the end of the text when it was cut short.
    let end = find(b, label_end + 5, b"-----END ")
        .and_then(|e| find(b, e + 9, b"-----"))
        .map_or(b.len(), |e| e + 5);
    Some(end)
}

/// A digit run at `i` (single spaces or dashes between digits): its end, and
/// whether it is a payment card number.
fn card(b: &[u8], i: usize) -> (usize, bool) {
    let mut digits = [0u8; 19];
    let mut count = 0;
    let mut j = i;
    let mut end = i;
    while j < b.len() {
        let c = b[j];
        if c.is_ascii_digit() {
            if count == digits.len() {
                // Too long for a card: find the end of the number and give up.
                return (run(b, j, |c| c.is_ascii_digit()), false);
            }
            digits[count] = c - b'0';
            count += 1;
            j += 1;
            end = j;
        } else if (c == b' ' || c == b'-') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
            j += 1;
        } else {
            break;
        }
    }
    let bounded = b.get(end).is_none_or(|&c| !is_alnum(c));
    let is_card = bounded
        && (13..=19).contains(&count)
        && (2..=6).contains(&digits[0])
        && luhn(&digits[..count]);
    (end, is_card)
}

pub(crate) fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(n, &d)| {
            let d = u32::from(d);
            if n % 2 == 1 {
                let dd = d * 2;
                if dd > 9 { dd - 9 } else { dd }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// `scheme://user:password@host` with `i` at the scheme's colon.
fn url_password(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if !b[i + 1..].starts_with(b"//") || i == 0 || !b[i - 1].is_ascii_alphanumeric() {
        return None;
    }
    let start = i + 3;
    let end = run(b, start, |c| {
        !matches!(c, b'/' | b'?' | b'#' | b'@' | b'"' | b'\'' | b'<' | b'>')
            && !c.is_ascii_whitespace()
    });
    if b.get(end) != Some(&b'@') {
        return None;
    }
    let colon = b[start..end].iter().position(|&c| c == b':')? + start;
    (colon + 1 < end).then_some((colon + 1, end))
}

/// Values of these keys run to the end of the line (`Cookie: a=1; b=2`).
fn whole_line_key(normalized: &[u8]) -> bool {
    matches!(
        normalized,
        b"authorization" | b"proxyauthorization" | b"cookie" | b"setcookie"
    )
}

const AUTH_SCHEMES: &[&[u8]] = &[
    b"bearer",
    b"basic",
    b"digest",
    b"token",
    b"negotiate",
    b"apikey",
];

/// `key=value`, `key: value`, `"key": "value"` with `i` at `=` or `:`.
fn assignment(inner: &Inner, b: &[u8], i: usize) -> Option<(usize, usize)> {
    // The key, backwards: optional spaces, an optional closing quote, key characters.
    let mut k = i;
    while k > 0 && b[k - 1] == b' ' {
        k -= 1;
    }
    // JSON held in strings quotes with `\"`, `\\\"`, ...: skip the backslashes too.
    if k > 0 && (b[k - 1] == b'"' || b[k - 1] == b'\'') {
        k -= 1;
        while k > 0 && b[k - 1] == b'\\' {
            k -= 1;
        }
    }
    let key_end = k;
    while k > 0 && key_end - k < 64 && is_key_char(b[k - 1]) {
        k -= 1;
    }
    let key = &b[k..key_end];
    // Query-only names (`code`, `sig`) count only inside a query string.
    let in_query = b[i] == b'=' && k > 0 && (b[k - 1] == b'?' || b[k - 1] == b'&');
    if key.is_empty() || !inner.key_matches(key, in_query) {
        return None;
    }
    // The value, forwards.
    let mut v = i + 1;
    while v < b.len() && (b[v] == b' ' || b[v] == b'\t') {
        v += 1;
    }
    let slashes = run(b, v, |c| c == b'\\') - v;
    match b.get(v + slashes) {
        Some(&q @ (b'"' | b'\'')) => {
            // The value ends at the same quote: preceded by exactly as many
            // backslashes as the opening one (more means an escaped quote inside).
            let start = v + slashes + 1;
            let mut j = start;
            let mut run_len = 0;
            while j < b.len() && b[j] != b'\n' && !(b[j] == q && run_len == slashes) {
                run_len = if b[j] == b'\\' { run_len + 1 } else { 0 };
                j += 1;
            }
            let end = j - if j < b.len() && b[j] == q { slashes } else { 0 };
            (end > start).then_some((start, end))
        }
        _ if slashes > 0 => None,
        Some(b'{' | b'[') => Some((v, bracketed_end(b, v))),
        Some(_) => {
            let mut normalized = Vec::with_capacity(key.len());
            super::rules::normalize_into(key, &mut normalized);
            let end = if b[i] == b':' && whole_line_key(&normalized) {
                run(b, v, |c| c != b'\n' && c != b'\r')
            } else {
                let delimiter = |c: u8| {
                    c.is_ascii_whitespace()
                        || matches!(
                            c,
                            b'&' | b',' | b';' | b'"' | b'\'' | b')' | b']' | b'}' | b'<' | b'>'
                        )
                };
                let word_end = run(b, v, |c| !delimiter(c));
                let scheme = &b[v..word_end];
                let next = word_end + 1;
                if AUTH_SCHEMES.iter().any(|s| scheme.eq_ignore_ascii_case(s))
                    && b.get(word_end) == Some(&b' ')
                    && b.get(next).is_some_and(|&c| !delimiter(c))
                {
                    run(b, next, |c| !delimiter(c))
                } else {
                    word_end
                }
            };
            let end = trim_end(b, v, end);
            (end > v).then_some((v, end))
        }
        None => None,
    }
}

/// End of the bracketed value (JSON-like text) opening at `v`: where its brackets
/// balance, quoted strings skipped, or the end of the text. A counter, not a
/// stack: mismatched brackets only make the censored span longer.
fn bracketed_end(b: &[u8], v: usize) -> usize {
    let mut depth = 0usize;
    let mut j = v;
    while j < b.len() {
        match b[j] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return j + 1;
                }
            }
            q @ (b'"' | b'\'') => {
                j += 1;
                while j < b.len() && b[j] != q {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
            }
            _ => {}
        }
        j += 1;
    }
    b.len()
}

fn trim_end(b: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && b[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::super::Redactor;
    use super::*;

    fn r(text: &str) -> String {
        Redactor::default().redact_text(text).into_owned()
    }

    #[test]
    fn luhn_checks() {
        assert!(luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
        assert!(!luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
    }

    #[test]
    fn base64_colon() {
        assert!(base64_has_colon(b"dXNlcjpwYXNz")); // user:pass
        assert!(!base64_has_colon(b"aGVsbG8gd29ybGQ")); // hello world
        assert!(!base64_has_colon(b"configuration"));
    }

    #[test]
    fn patterns() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ24";
        assert_eq!(r(&format!("token {jwt} used")), "token [REDACTED] used");
        assert_eq!(
            r("Authorization: Bearer abc123def456"),
            "Authorization: [REDACTED]"
        );
        assert_eq!(
            r("sent Bearer abc123def456 ok"),
            "sent Bearer [REDACTED] ok"
        );
        assert_eq!(r("use bearer authentication"), "use bearer authentication");
        assert_eq!(r("hdr Basic dXNlcjpwYXNz end"), "hdr Basic [REDACTED] end");
        assert_eq!(r("basic configuration"), "basic configuration");
        assert_eq!(r("key AKIAABCDEFGHIJKLMNOP."), "key [REDACTED].");
        assert_eq!(r("xAKIAABCDEFGHIJKLMNOP"), "xAKIAABCDEFGHIJKLMNOP");
        assert_eq!(r("card 4111 1111 1111 1111 used"), "card [REDACTED] used");
        assert_eq!(r("card 4111-1111-1111-1111"), "card [REDACTED]");
        assert_eq!(
            r("ts 1732150000000 and 4111111111111112"),
            "ts 1732150000000 and 4111111111111112"
        );
        assert_eq!(
            r("id 41111111111111111111111"),
            "id 41111111111111111111111"
        );
        assert_eq!(
            r("a -----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- b"),
            "a [REDACTED] b"
        );
        assert_eq!(
            r("-----BEGIN PUBLIC KEY-----"),
            "-----BEGIN PUBLIC KEY-----"
        );
        assert_eq!(r("-----BEGIN PRIVATE KEY-----\nMIIE cut"), "[REDACTED]");
        assert_eq!(r("password=hunter2&next=1"), "password=[REDACTED]&next=1");
        assert_eq!(
            r(r#"{"Pass-Word": "hunter 2", "a": 1}"#),
            r#"{"Pass-Word": "[REDACTED]", "a": 1}"#
        );
        assert_eq!(r("apiKey: k-123, ok"), "apiKey: [REDACTED], ok");
        assert_eq!(
            r(r#"{"auth": {"u": "a}", "p": [1]}, "n": 2}"#),
            r#"{"auth": [REDACTED], "n": 2}"#
        );
        assert_eq!(r("Cookie: a=1; b=2\nnext"), "Cookie: [REDACTED]\nnext");
        assert_eq!(
            r("GET /cb?code=xyz&state=1"),
            "GET /cb?code=[REDACTED]&state=1"
        );
        assert_eq!(
            r("postgres://app:s3cret@db:5432/x"),
            "postgres://app:[REDACTED]@db:5432/x"
        );
        assert_eq!(
            r("tok ghp_abcdefghijklmnopqrstuvwxyz0123"),
            "tok [REDACTED]"
        );
        assert_eq!(r("ghp_short"), "ghp_short");
        assert_eq!(
            r("at 10:00:00 https://x.org/a"),
            "at 10:00:00 https://x.org/a"
        );
    }

    #[test]
    fn nothing_matched_borrows() {
        let text = "an ordinary message: user 42 logged in at 2026-11-21T10:00:00Z, e=mc2";
        assert!(matches!(
            Redactor::default().redact_text(text),
            Cow::Borrowed(_)
        ));
    }
}
