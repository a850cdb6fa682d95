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
            headers.append(RATELIMIT_POLICY.clone(), self.policy.clone());
            if let Some(v) = self.ratelimit(remaining, outcome.reset_secs) {
                headers.append(RATELIMIT.clone(), v);
            }
        }
        if mode.legacy {
            headers.insert(X_LIMIT.clone(), self.limit.clone());
            headers.insert(X_REMAINING.clone(), HeaderValue::from(remaining));
            headers.insert(X_RESET.clone(), HeaderValue::from(outcome.reset_secs));
        }
    }

    /// `"name";r=<remaining>;t=<reset>`, written on the stack and copied once into
    /// the value (one exact allocation; no growing string, no shared-buffer header).
    fn ratelimit(&self, remaining: u32, reset: u64) -> Option<HeaderValue> {
        let mut buf = [0u8; 128];
        let prefix = self.prefix.as_bytes();
        // Prefix, two numbers of at most 20 digits and ";t=".
        if prefix.len() + 43 > buf.len() {
            let mut v = Vec::with_capacity(prefix.len() + 43);
            v.extend_from_slice(prefix);
            v.extend_from_slice(digits(&mut [0; 20], u64::from(remaining)));
            v.extend_from_slice(b";t=");
            v.extend_from_slice(digits(&mut [0; 20], reset));
            return HeaderValue::from_maybe_shared(Bytes::from(v)).ok();
        }
        let mut n = prefix.len();
        buf[..n].copy_from_slice(prefix);
        let mut put = |bytes: &[u8]| {
            buf[n..n + bytes.len()].copy_from_slice(bytes);
            n += bytes.len();
        };
        put(digits(&mut [0; 20], u64::from(remaining)));
        put(b";t=");
        put(digits(&mut [0; 20], reset));
        HeaderValue::from_bytes(&buf[..n]).ok()
    }
}

/// The decimal digits of `n`, written at the end of `buf`.
fn digits(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
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
            assert_eq!(digits(&mut [0; 20], n), n.to_string().as_bytes());
        }
    }

    #[test]
    fn long_policy_names_take_the_heap_path() {
        for len in [1, 80, 84, 85, 86, 200, 4000] {
            let name = "n".repeat(len);
            let p = PolicyHeaders::new(&Policy::new(&name, Quota::per_minute(100)));
            let o = Outcome {
                allowed: true,
                remaining: u32::MAX,
                reset_secs: u64::MAX,
            };
            let mut h = HeaderMap::new();
            let ietf = HeaderMode {
                ietf: true,
                legacy: false,
            };
            p.write(ietf, &o, &mut h);
            let expected = format!("\"{name}\";r=100;t={}", u64::MAX);
            assert_eq!(h["ratelimit"], expected.as_str(), "{len}");
        }
    }
}
