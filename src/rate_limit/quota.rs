use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

/// How many requests a key may make per window, and how many at once.
///
/// `Quota::per(100, Duration::from_secs(15 * 60))` reads as it is meant: 100
/// requests per 15 minutes. Requests replenish one at a time, every `window / count`
/// (GCRA: no fixed-window boundary lets twice the quota through), and by default the
/// whole quota may be spent at once. [`Quota::burst`] bounds how many requests may
/// arrive back to back without changing the rate.
///
/// ```
/// use std::time::Duration;
/// use tower_ops::rate_limit::Quota;
///
/// let quota = Quota::per(100, Duration::from_secs(15 * 60)).burst(10);
/// assert_eq!(quota.count(), 100);
/// assert_eq!(quota.replenish_interval(), Duration::from_secs(9));
/// assert_eq!(quota.burst_size(), 10);
/// assert_eq!(Quota::per_second(5).replenish_interval(), Duration::from_millis(200));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    count: NonZeroU32,
    window: Duration,
    burst: Option<NonZeroU32>,
}

/// Why a [`Quota`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaError {
    /// The request count was zero.
    ZeroCount,
    /// The window was zero.
    ZeroWindow,
    /// `window / count` is below one nanosecond.
    TooFast,
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuotaError::ZeroCount => "the request count must be at least 1",
            QuotaError::ZeroWindow => "the window must be longer than zero",
            QuotaError::TooFast => "the quota replenishes faster than once per nanosecond",
        })
    }
}

impl std::error::Error for QuotaError {}

impl Quota {
    /// `count` requests per `window`, all of which may be spent at once.
    ///
    /// # Panics
    /// When `count` or `window` is zero, or `window / count` is under a nanosecond.
    /// Use [`Quota::try_per`] for values that come from outside the program.
    #[track_caller]
    pub fn per(count: u32, window: Duration) -> Self {
        match Self::try_per(count, window) {
            Ok(quota) => quota,
            Err(e) => panic!("invalid rate-limit quota: {e}"),
        }
    }

    /// `count` requests per `window`, or why that is not a quota.
    pub fn try_per(count: u32, window: Duration) -> Result<Self, QuotaError> {
        let count = NonZeroU32::new(count).ok_or(QuotaError::ZeroCount)?;
        if window.is_zero() {
            return Err(QuotaError::ZeroWindow);
        }
        if (window / count.get()).is_zero() {
            return Err(QuotaError::TooFast);
        }
        Ok(Self {
            count,
            window,
            burst: None,
        })
    }

    /// `count` requests per second.
    ///
    /// # Panics
    /// When `count` is zero.
    #[track_caller]
    pub fn per_second(count: u32) -> Self {
        Self::per(count, Duration::from_secs(1))
    }

    /// `count` requests per minute.
    ///
    /// # Panics
    /// When `count` is zero.
    #[track_caller]
    pub fn per_minute(count: u32) -> Self {
        Self::per(count, Duration::from_secs(60))
    }

    /// `count` requests per hour.
    ///
    /// # Panics
    /// When `count` is zero.
    #[track_caller]
    pub fn per_hour(count: u32) -> Self {
        Self::per(count, Duration::from_secs(3600))
    }

    /// At most `burst` requests back to back; the rate is unchanged. Zero is read
    /// as one.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        self
    }

    /// The number of requests per window.
    pub fn count(&self) -> u32 {
        self.count.get()
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// How many requests may arrive at once (the count unless [`Quota::burst`] set it).
    pub fn burst_size(&self) -> u32 {
        self.burst.unwrap_or(self.count).get()
    }

    /// The time one request takes to replenish: `window / count`.
    pub fn replenish_interval(&self) -> Duration {
        self.window / self.count.get()
    }

    /// The window in whole seconds, rounded up (the `w` of `RateLimit-Policy`).
    pub(crate) fn window_secs(&self) -> u64 {
        ceil_secs(self.window).max(1)
    }

    pub(crate) fn to_governor(self) -> governor::Quota {
        let burst = self.burst.unwrap_or(self.count);
        // `try_per` guarantees a non-zero interval.
        governor::Quota::with_period(self.replenish_interval())
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_written() {
        let q = Quota::per(100, Duration::from_secs(900));
        assert_eq!(q.count(), 100);
        assert_eq!(q.burst_size(), 100);
        assert_eq!(q.replenish_interval(), Duration::from_secs(9));
        assert_eq!(q.window_secs(), 900);
        let g = q.to_governor();
        assert_eq!(g.burst_size().get(), 100);
        assert_eq!(g.replenish_interval(), Duration::from_secs(9));
        assert_eq!(
            Quota::per_minute(60).replenish_interval(),
            Duration::from_secs(1)
        );
        assert_eq!(
            Quota::per_hour(2).replenish_interval(),
            Duration::from_secs(1800)
        );
        assert_eq!(
            Quota::per_second(4000).replenish_interval(),
            Duration::from_micros(250)
        );
        assert_eq!(Quota::per_second(5).burst(0).burst_size(), 1);
        assert_eq!(Quota::per(3, Duration::from_millis(1500)).window_secs(), 2);
        assert_eq!(Quota::per(3, Duration::from_millis(10)).window_secs(), 1);
    }

    #[test]
    fn rejects_nonsense() {
        assert_eq!(
            Quota::try_per(0, Duration::from_secs(1)),
            Err(QuotaError::ZeroCount)
        );
        assert_eq!(
            Quota::try_per(1, Duration::ZERO),
            Err(QuotaError::ZeroWindow)
        );
        assert_eq!(
            Quota::try_per(10, Duration::from_nanos(5)),
            Err(QuotaError::TooFast)
        );
        assert!(QuotaError::TooFast.to_string().contains("nanosecond"));
    }

    #[test]
    #[should_panic(expected = "invalid rate-limit quota")]
    fn per_panics_on_zero() {
        let _ = Quota::per(0, Duration::from_secs(1));
    }

    #[test]
    fn ceil() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }
}
