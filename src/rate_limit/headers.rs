//! `RateLimit-Policy`, `RateLimit`, `Retry-After` and the legacy `X-RateLimit-*`.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::local::Outcome;
use super::policy::Policy;

pub(crate) static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub(crate) static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Which headers a response carries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeaderMode {
    pub(crate) ietf: bool,
    pub(crate) legacy: bool,
}

/// Precomputed values of one policy.
#[derive(Clone, Debug)]
pub(crate) struct PolicyHeaders {
    /// `"name";q=<count>;w=<secs>`
    policy: HeaderValue,
    /// `"name";r=`
    prefix: Box<str>,
    limit: HeaderValue,
    count: u32,
}

impl PolicyHeaders {
    pub(crate) fn new(policy: &Policy) -> Self {
        let quota = policy.quota;
        let value = format!(
            "\"{}\";q={};w={}",
            policy.name,
            quota.count(),
            quota.window_secs()
        );
        Self {
            // Policy names are restricted to visible ASCII, so this never fails.
            policy: HeaderValue::from_str(&value)
                .unwrap_or(HeaderValue::from_static("\"default\"")),
            prefix: format!("\"{}\";r=", policy.name).into(),
            limit: HeaderValue::from(quota.count()),
            count: quota.count(),
        }
    }

    /// Writes the headers for `outcome` into `headers`.
    pub(crate) fn write(&self, mode: HeaderMode, outcome: &Outcome, headers: &mut HeaderMap) {
        let remaining = outcome.remaining.min(self.count);
        if mode.ietf {
            let mut v = String::with_capacity(self.prefix.len() + 24);
            v.push_str(&self.prefix);
            push_u64(&mut v, u64::from(remaining));
            v.push_str(";t=");
            push_u64(&mut v, outcome.reset_secs);
            headers.append(RATELIMIT_POLICY.clone(), self.policy.clone());
            if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(v)) {
                headers.append(RATELIMIT.clone(), v);
            }
        }
        if mode.legacy {
            headers.insert(X_LIMIT.clone(), self.limit.clone());
            headers.insert(X_REMAINING.clone(), HeaderValue::from(remaining));
            headers.insert(X_RESET.clone(), HeaderValue::from(outcome.reset_secs));
        }
    }
}

fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::Quota;

    #[test]
    fn contract_shapes() {
        let p = PolicyHeaders::new(&Policy::new("default", Quota::per_minute(100)));
        let mut h = HeaderMap::new();
        let o = Outcome {
            allowed: true,
            remaining: 42,
            reset_secs: 17,
        };
        p.write(
            HeaderMode {
                ietf: true,
                legacy: true,
            },
            &o,
            &mut h,
        );
        assert_eq!(h["ratelimit-policy"], "\"default\";q=100;w=60");
        assert_eq!(h["ratelimit"], "\"default\";r=42;t=17");
        assert_eq!(h["x-ratelimit-limit"], "100");
        assert_eq!(h["x-ratelimit-remaining"], "42");
        assert_eq!(h["x-ratelimit-reset"], "17");
        let mut h = HeaderMap::new();
        p.write(
            HeaderMode {
                ietf: false,
                legacy: false,
            },
            &o,
            &mut h,
        );
        assert!(h.is_empty());
    }

    #[test]
    fn numbers() {
        for n in [0, 7, 10, 99, 1_000_000, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }
}
