//! Header values.

use std::borrow::Cow;

use http::header::{self, HeaderName, HeaderValue};

use super::{Inner, text};

/// The value of a sensitive header, censored but keeping what is not secret:
/// the authentication scheme, cookie names and `Set-Cookie` attributes.
pub(crate) fn censor_sensitive(inner: &Inner, name: &HeaderName, value: &HeaderValue) -> String {
    let value = String::from_utf8_lossy(value.as_bytes());
    let censor = &inner.censor;
    let mut out = String::with_capacity(value.len().min(64) + 16);
    if name == header::AUTHORIZATION || name == header::PROXY_AUTHORIZATION {
        match value.split_once(' ') {
            Some((scheme, credentials))
                if !scheme.is_empty()
                    && scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
            {
                out.push_str(scheme);
                out.push(' ');
                censor.write(credentials.trim_start(), &mut out);
            }
            _ => censor.write(&value, &mut out),
        }
    } else if name == header::COOKIE {
        for (n, pair) in value.split(';').enumerate() {
            if n > 0 {
                out.push_str("; ");
            }
            cookie_pair(inner, pair.trim(), &mut out);
        }
    } else if name == header::SET_COOKIE {
        let (pair, attributes) = value.split_once(';').unwrap_or((&value, ""));
        cookie_pair(inner, pair.trim(), &mut out);
        if !attributes.is_empty() {
            out.push(';');
            out.push_str(attributes);
        }
    } else {
        censor.write(&value, &mut out);
    }
    out
}

fn cookie_pair(inner: &Inner, pair: &str, out: &mut String) {
    match pair.split_once('=') {
        Some((name, value)) => {
            out.push_str(name);
            out.push('=');
            if !value.is_empty() {
                inner.censor.write(value, out);
            }
        }
        None if pair.is_empty() => {}
        None => inner.censor.write(pair, out),
    }
}

/// A value of a header that is not sensitive: value patterns only.
pub(crate) fn scan<'v>(inner: &Inner, value: &'v HeaderValue) -> Cow<'v, str> {
    match String::from_utf8_lossy(value.as_bytes()) {
        Cow::Borrowed(s) => text::redact(inner, s),
        Cow::Owned(s) => Cow::Owned(text::redact(inner, &s).into_owned()),
    }
}
