//! Query strings and `application/x-www-form-urlencoded` bodies.

use std::borrow::Cow;

use super::rewrite::Rewriter;
use super::{Inner, text};

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `raw` (`+` is a space); malformed escapes are kept as they are.
fn decode(raw: &str) -> Cow<'_, str> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(raw);
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Writes `s` with the characters that would change the query's structure escaped.
fn encode_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '%' | '&' | '+' | '#' | ' ' | '\u{0}'..='\u{1f}' | '\u{7f}' => {
                out.push_str(&format!("%{:02X}", c as u32));
            }
            c => out.push(c),
        }
    }
}

pub(crate) fn redact<'a>(inner: &Inner, query: &'a str) -> Cow<'a, str> {
    let mut w = Rewriter::new(query);
    let b = query.as_bytes();
    // Same bookkeeping as JSON members: removal must keep the `&`s right.
    let mut kept_any = false;
    let mut skip_amp = false;
    let mut amp_mark = 0;
    let mut start = 0;
    while start <= b.len() {
        let end = b[start..]
            .iter()
            .position(|&c| c == b'&')
            .map_or(b.len(), |p| start + p);
        if start > 0 {
            // `start - 1` is the `&` before this parameter.
            if skip_amp {
                skip_amp = false;
                let mark = w.mark(start - 1);
                w.cut(mark, start);
            } else {
                amp_mark = w.mark(start - 1);
            }
        }
        let param = &query[start..end];
        let (name, value_at) = match param.find('=') {
            Some(eq) => (&param[..eq], start + eq + 1),
            None => (param, end),
        };
        let value = &query[value_at.min(end)..end];
        let sensitive = !value.is_empty() && inner.key_matches(decode(name).as_bytes(), true);
        if sensitive && inner.censor.removes() {
            if kept_any {
                w.cut(amp_mark, end);
            } else {
                let mark = w.mark(start);
                w.cut(mark, end);
                skip_amp = true;
            }
        } else if sensitive {
            kept_any = true;
            let secret = decode(value);
            w.replace(value_at, end, |out| inner.censor.write(&secret, out));
        } else {
            kept_any = true;
            let decoded = decode(value);
            if let Cow::Owned(changed) = text::redact(inner, &decoded) {
                w.replace(value_at, end, |out| match decoded {
                    Cow::Borrowed(_) => out.push_str(&changed),
                    Cow::Owned(_) => encode_into(out, &changed),
                });
            }
        }
        start = end + 1;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::super::{Censor, Redactor};
    use super::*;

    fn q(r: &Redactor, s: &str) -> String {
        r.redact_query(s).into_owned()
    }

    #[test]
    fn names_and_values() {
        let r = Redactor::default();
        assert_eq!(
            q(&r, "a=1&Access-Token=x&b=2"),
            "a=1&Access-Token=[REDACTED]&b=2"
        );
        assert_eq!(q(&r, "API%5FKEY=x"), "API%5FKEY=[REDACTED]");
        assert_eq!(
            q(&r, "pass+word=x"),
            "pass+word=x",
            "a space is not ignored"
        );
        assert_eq!(q(&r, "code=abc&state=s"), "code=[REDACTED]&state=s");
        assert_eq!(q(&r, "token=&flag&x"), "token=&flag&x");
        assert_eq!(
            q(&r, "next=%2Fcb%3Ftoken%3Dabc%26a%3D1"),
            "next=/cb?token=[REDACTED]%26a=1"
        );
        assert_eq!(q(&r, "id=4111111111111111"), "id=[REDACTED]");
        assert_eq!(q(&r, "bad=%zz%"), "bad=%zz%");
        assert_eq!(q(&r, ""), "");
    }

    #[test]
    fn removal_keeps_ampersands_right() {
        let r = Redactor::builder().censor(Censor::Remove).build();
        assert_eq!(q(&r, "token=1"), "");
        assert_eq!(q(&r, "token=1&a=2"), "a=2");
        assert_eq!(q(&r, "a=2&token=1"), "a=2");
        assert_eq!(q(&r, "a=2&token=1&b=3"), "a=2&b=3");
        assert_eq!(q(&r, "token=1&secret=2&b=3&pwd=4"), "b=3");
        assert_eq!(q(&r, "a&&token=1&"), "a&&");
    }

    #[test]
    fn untouched_query_is_borrowed() {
        let r = Redactor::default();
        assert!(matches!(
            r.redact_query("page=2&sort=name&q=rust%20tower"),
            Cow::Borrowed(_)
        ));
    }
}
