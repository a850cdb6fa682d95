//! `RateLimit-Policy`, `RateLimit`, `Retry-After` and the legacy `X-RateLimit-*`.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::local::Outcome;
use super::policy::Policy;
use super::quota::ceil_secs;
use crate::json::digits;

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

impl HeaderMode {
    /// Whether any rate-limit header is sent on a passing response.
    #[inline]
    pub(crate) fn any(self) -> bool {
        self.ietf || self.legacy
    }
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
    /// The `RateLimit` value of the most common answer, built once: a key's
    /// first request in a while (a whole bucket less one), as `(r, t, value)`.
    fresh: Option<(u32, u64, HeaderValue)>,
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
        // Policy names are restricted to visible ASCII, so this never fails.
        let policy_value =
            HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("\"default\""));
        let mut headers = Self {
            policy: policy_value,
            prefix: format!("\"{}\";r=", policy.name).into(),
            limit: HeaderValue::from(quota.count()),
            count: quota.count(),
            fresh: None,
        };
        // What `LocalLimiter::check` reports for one request on a whole bucket.
        let r = quota.burst_size().saturating_sub(1).min(quota.count());
        let t = ceil_secs(quota.replenish_interval());
        headers.fresh = headers.build_ratelimit(r, t).map(|v| (r, t, v));
        headers
    }

    /// Writes the headers for `outcome` into `headers`.
    ///
    /// `RateLimit-Policy` is a clone of the value built with the layer (a
    /// reference count, no copy); `RateLimit` is written on the stack and copied
    /// once into its value. Both are appended, so a value set further in (another
    /// limiter) is kept beside ours, as the field's list syntax allows.
    #[inline]
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

    /// `"name";r=<remaining>;t=<reset>`: the prebuilt value when it is the common
    /// one, else [`Self::build_ratelimit`].
    #[inline]
    fn ratelimit(&self, remaining: u32, reset: u64) -> Option<HeaderValue> {
        if let Some((r, t, value)) = &self.fresh
            && remaining == *r
            && reset == *t
        {
            return Some(value.clone());
        }
        self.build_ratelimit(remaining, reset)
    }

    /// `"name";r=<remaining>;t=<reset>`, written on the stack and copied once into
    /// the value (one exact allocation; no growing string).
    #[inline]
    fn build_ratelimit(&self, remaining: u32, reset: u64) -> Option<HeaderValue> {
        let prefix = self.prefix.as_bytes();
        let mut buf = [0u8; STACK_VALUE];
        // The prefix, two numbers of at most 20 digits and ";t=".
        if prefix.len() + 43 > STACK_VALUE {
            let mut v = vec![0u8; prefix.len() + 43];
            let n = ratelimit_into(&mut v, prefix, remaining, reset);
            v.truncate(n);
            return HeaderValue::from_maybe_shared(Bytes::from(v)).ok();
        }
        let n = ratelimit_into(&mut buf, prefix, remaining, reset);
        HeaderValue::from_bytes(&buf[..n]).ok()
    }
}

/// Room for a `RateLimit` value written on the stack: policy names of up to 36
/// bytes with the largest numbers (longer names take the heap).
const STACK_VALUE: usize = 84;

/// Writes `<prefix><remaining>;t=<reset>` at the start of `out`, which holds at
/// least `prefix.len() + 43` bytes; returns the length written.
#[inline]
fn ratelimit_into(out: &mut [u8], prefix: &[u8], remaining: u32, reset: u64) -> usize {
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        out[n..n + bytes.len()].copy_from_slice(bytes);
        n += bytes.len();
    };
    put(prefix);
    put(digits(&mut [0; 20], u64::from(remaining)));
    put(b";t=");
    put(digits(&mut [0; 20], reset));
    n
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
    fn the_prebuilt_value_is_the_built_one() {
        for quota in [
            Quota::per_minute(100),
            Quota::per(2, std::time::Duration::from_millis(500)),
            Quota::per_hour(1),
            Quota::per_minute(100).burst(10),
            Quota::per_hour(u32::MAX),
        ] {
            let p = PolicyHeaders::new(&Policy::new("default", quota));
            let (r, t, value) = p.fresh.as_ref().unwrap();
            assert_eq!(Some(value), p.build_ratelimit(*r, *t).as_ref(), "{quota:?}");
            assert_eq!(p.ratelimit(*r, *t).as_ref(), Some(value));
            let expected = format!("\"default\";r={r};t={t}");
            assert_eq!(value.as_bytes(), expected.as_bytes());
        }
        // What a first request on a fresh key is told, through the limiter.
        let quota = Quota::per(100, std::time::Duration::from_secs(60));
        let limiter = super::super::local::LocalLimiter::new(
            quota,
            crate::rate_limit::RateLimitClock::manual(),
        );
        let o = limiter.check(7, 1, true);
        let p = PolicyHeaders::new(&Policy::new("default", quota));
        let (r, t, _) = p.fresh.unwrap();
        assert_eq!((o.remaining, o.reset_secs), (r, t));
    }

    #[test]
    fn numbers() {
        for n in crate::json::number_cases() {
            let reset = n;
            let remaining = u32::try_from(n).unwrap_or(u32::MAX);
            let mut out = [b'x'; 3 + 43 + 1];
            let len = ratelimit_into(&mut out, b"\"p\"", remaining, reset);
            let expected = format!("\"p\"{remaining};t={reset}");
            assert_eq!(&out[..len], expected.as_bytes(), "{n}");
            assert_eq!(out[len], b'x', "{n}: nothing written past the digits");
        }
    }

    proptest::proptest! {
        /// The value is byte for byte what formatting gives, for any numbers and
        /// on both sides of the stack buffer's size.
        #[test]
        fn ratelimit_value_matches_format(
            remaining: u32,
            reset: u64,
            count in 1u32..=u32::MAX,
            name_len in 1usize..120,
        ) {
            let name = "p".repeat(name_len);
            let p = PolicyHeaders::new(&Policy::new(&name, Quota::per_minute(count)));
            let o = Outcome { allowed: true, remaining, reset_secs: reset };
            let mut h = HeaderMap::new();
            p.write(HeaderMode { ietf: true, legacy: false }, &o, &mut h);
            let expected = format!("\"{name}\";r={};t={reset}", remaining.min(count));
            proptest::prop_assert_eq!(h["ratelimit"].as_bytes(), expected.as_bytes());
            let policy = format!("\"{name}\";q={count};w=60");
            proptest::prop_assert_eq!(h["ratelimit-policy"].as_bytes(), policy.as_bytes());
        }
    }

    #[test]
    fn long_policy_names_take_the_heap_path() {
        for len in [1, 36, 37, 38, 39, 80, 84, 85, 86, 200, 4000] {
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
