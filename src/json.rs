//! Minimal JSON writing shared by the error renderers and the log formatter.
//!
//! Strings are escaped by serde_json, integers written by `itoa` and floats by
//! `ryu`; this module only adds the few rules the crate's output keeps (a float
//! always reads as a float, a non-finite one is `null`).

use std::io;

/// Appends `s` as a JSON string literal (quotes included), escaped by serde_json.
#[inline]
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a `Vec` cannot fail.
    let _ = serde_json::to_writer(out, s);
}

/// [`write_str`] for a `String` buffer (the error renderers').
pub(crate) fn push_str(out: &mut String, s: &str) {
    // serde_json writes the unescaped runs of `s`, which start and end next to
    // ASCII bytes, and ASCII escapes: every piece is UTF-8 on its own.
    struct Text<'a>(&'a mut String);
    impl io::Write for Text<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let piece = std::str::from_utf8(buf).map_err(io::Error::other)?;
            self.0.push_str(piece);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    out.reserve(s.len() + 2);
    let _ = serde_json::to_writer(Text(out), s);
}

/// Appends `value` as a JSON number that reads back as exactly `value`, with a
/// fractional part or an exponent (`2.0`, not `2`); `null` when not finite.
#[inline]
pub(crate) fn write_f64(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        // ryu writes `2.0` for whole numbers and `1e300` past 1e16.
        out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Appends an integer's decimal digits.
#[inline]
pub(crate) fn write_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The decimal digits of `n`, at the end of `buf`.
#[cfg(feature = "rate-limit")]
#[inline]
pub(crate) fn digits(buf: &mut [u8; 20], n: u64) -> &[u8] {
    let mut text = itoa::Buffer::new();
    let text = text.format(n).as_bytes();
    let at = buf.len() - text.len();
    buf[at..].copy_from_slice(text);
    &buf[at..]
}

/// Appends `n` zero-padded to exactly `width` digits (`n` must fit).
pub(crate) fn push_padded(out: &mut String, mut n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let width = width.min(buf.len());
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend(buf[..width].iter().map(|&d| char::from(d)));
}

/// Numbers around every digit-count boundary, for the integer writers' tests.
#[cfg(test)]
pub(crate) fn number_cases() -> Vec<u64> {
    let mut cases = vec![
        0,
        7,
        9,
        10,
        11,
        99,
        100,
        101,
        999,
        1000,
        1_000_000,
        u64::MAX,
    ];
    cases.extend((0..20).map(|p| 10u64.pow(p)));
    cases.extend((1..20).map(|p| 10u64.pow(p) - 1));
    cases
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn integers() {
        for n in number_cases() {
            #[cfg(feature = "rate-limit")]
            assert_eq!(digits(&mut [0; 20], n), n.to_string().as_bytes(), "{n}");
            assert_eq!(text(|o| write_int(o, n)), n.to_string());
        }
        for n in [0, -1, 42, i64::MIN, i64::MAX] {
            assert_eq!(text(|o| write_int(o, n)), n.to_string());
        }
        let mut s = String::new();
        push_padded(&mut s, 7, 3);
        push_padded(&mut s, 123_456, 6);
        assert_eq!(s, "007123456");
    }

    #[test]
    fn floats() {
        let f = |v: f64| text(|o| write_f64(o, v));
        assert_eq!(f(2.0), "2.0");
        assert_eq!(f(0.5), "0.5");
        assert_eq!(f(1.234), "1.234");
        assert_eq!(f(-0.0), "-0.0");
        assert_eq!(f(f64::NAN), "null");
        assert_eq!(f(f64::INFINITY), "null");
        assert_eq!(f(1e300), "1e300");
    }

    proptest! {
        #[test]
        fn any_string_round_trips(s in any::<String>()) {
            let bytes = text(|o| write_str(o, &s));
            let mut pushed = String::new();
            push_str(&mut pushed, &s);
            prop_assert_eq!(&pushed, &bytes);
            prop_assert!(!bytes.contains('\n'));
            let back: String = serde_json::from_str(&bytes).unwrap();
            prop_assert_eq!(back, s);
        }

        #[test]
        fn any_float_reads_back_exactly(v in any::<f64>()) {
            let s = text(|o| write_f64(o, v));
            if v.is_finite() {
                let back: f64 = s.parse().unwrap();
                prop_assert_eq!(back.to_bits(), v.to_bits(), "{}", s);
                prop_assert!(s.contains(['.', 'e', 'E']), "{}", s);
            } else {
                prop_assert_eq!(s, "null");
            }
        }
    }
}
