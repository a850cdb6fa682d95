//! The in-process limiter: one governor keyed limiter per policy.

use nohash_hasher::BuildNoHashHasher;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use governor::RateLimiter;
use governor::clock::{Clock as GovernorClock, FakeRelativeClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;

use super::quota::{Quota, ceil_secs};

/// The time source of the limiter.
///
/// The default is a monotonic clock that agrees across CPU cores: on Linux
/// `CLOCK_MONOTONIC_COARSE`, which the kernel updates every tick (1 to 10 ms) and
/// which costs a fifth of a precise read, elsewhere [`std::time::Instant`]. A
/// coarse arrival time is never later than the true one, so the limiter can only
/// be stricter than its quota by at most a tick, never looser; over a window of
/// seconds the difference does not show. governor's default `quanta` clock reads
/// the TSC, which is not synchronised across cores on some machines and made
/// limiters reject requests before their burst was used (governor #299), so it is
/// not used. The clock read is the largest part of a check: the `rate_limit`
/// group of `benches/layers` measures it against tower_governor.
/// [`RateLimitClock::manual`] gives a clock that moves only when told, for tests.
#[derive(Clone, Debug)]
pub struct RateLimitClock {
    kind: ClockKind,
}

#[derive(Clone, Debug)]
enum ClockKind {
    /// The system clock's reading when the clock was made.
    System(Duration),
    Manual(FakeRelativeClock),
}

/// The monotonic system time, since an arbitrary start.
#[cfg(target_os = "linux")]
#[inline]
fn monotonic() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
#[inline]
fn monotonic() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

impl Default for RateLimitClock {
    fn default() -> Self {
        Self::system()
    }
}

impl RateLimitClock {
    /// The monotonic system clock (the default).
    pub fn system() -> Self {
        Self {
            kind: ClockKind::System(monotonic()),
        }
    }

    /// A clock that starts at zero and moves only by [`RateLimitClock::advance`];
    /// clones share the time.
    pub fn manual() -> Self {
        Self {
            kind: ClockKind::Manual(FakeRelativeClock::default()),
        }
    }

    /// Moves a manual clock forward; does nothing to the system clock.
    pub fn advance(&self, by: Duration) {
        if let ClockKind::Manual(c) = &self.kind {
            c.advance(by);
        }
    }

    /// Time since the clock started.
    pub fn elapsed(&self) -> Duration {
        self.now().into()
    }

    pub(crate) fn is_manual(&self) -> bool {
        matches!(self.kind, ClockKind::Manual(_))
    }
}

impl GovernorClock for RateLimitClock {
    type Instant = Nanos;

    #[inline]
    fn now(&self) -> Nanos {
        match &self.kind {
            ClockKind::System(base) => Nanos::from(monotonic().saturating_sub(*base)),
            ClockKind::Manual(c) => c.now(),
        }
    }
}

type Limiter = RateLimiter<
    u64,
    // Keys are already 64-bit keyed hashes ([`super::key::Material::local`]): the
    // map takes them as they are instead of hashing them again.
    DashMapStateStore<u64, BuildNoHashHasher<u64>>,
    RateLimitClock,
    StateInformationMiddleware,
>;

/// What a check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) allowed: bool,
    /// Requests still allowed right now.
    pub(crate) remaining: u32,
    /// Whole seconds until the quota is whole again (allowed) or until the request
    /// would be allowed (rejected; at least 1).
    pub(crate) reset_secs: u64,
}

/// The in-process state of one policy.
pub(crate) struct LocalLimiter {
    limiter: Limiter,
    /// The quota's replenish interval and burst, computed once.
    interval: Duration,
    burst: u32,
    clock: RateLimitClock,
}

impl LocalLimiter {
    pub(crate) fn new(quota: Quota, clock: RateLimitClock) -> Self {
        let limiter = RateLimiter::dashmap_with_clock_and_hasher(
            quota.to_governor(),
            clock.clone(),
            BuildNoHashHasher::default(),
        )
        .with_middleware::<StateInformationMiddleware>();
        Self {
            limiter,
            interval: quota.replenish_interval(),
            burst: quota.burst_size(),
            clock,
        }
    }

    /// Charges `key` `cost` requests. With `snapshot` false, an allowed request's
    /// `remaining` and `reset_secs` are left at 0 (nothing reads them when no
    /// header is sent); a rejection always carries its wait.
    #[inline]
    pub(crate) fn check(&self, key: u64, cost: u32, snapshot: bool) -> Outcome {
        let interval = self.interval;
        let result = match NonZeroU32::new(cost) {
            None | Some(NonZeroU32::MIN) => self.limiter.check_key(&key).map_err(Some),
            Some(n) => match self.limiter.check_key_n(&key, n) {
                Ok(r) => r.map_err(Some),
                Err(_) => Err(None),
            },
        };
        match result {
            Ok(_) if !snapshot => Outcome {
                allowed: true,
                remaining: 0,
                reset_secs: 0,
            },
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let used = self.burst.saturating_sub(remaining);
                Outcome {
                    allowed: true,
                    remaining,
                    reset_secs: ceil_secs(interval.saturating_mul(used)),
                }
            }
            Err(not_until) => {
                let wait = match not_until {
                    Some(n) => n.wait_time_from(self.clock.now()),
                    // More than the burst: it never fits; say when the bucket is full.
                    None => interval.saturating_mul(self.burst),
                };
                Outcome {
                    allowed: false,
                    remaining: 0,
                    reset_secs: ceil_secs(wait).max(1),
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Forgets keys whose state is indistinguishable from a fresh one and gives the
    /// memory back. Returns how many keys were dropped.
    pub(crate) fn cleanup(&self) -> usize {
        let before = self.limiter.len();
        self.limiter.retain_recent();
        let after = self.limiter.len();
        if after < before {
            self.limiter.shrink_to_fit();
        }
        before - after
    }
}

/// Every policy's local state, shared by the layer and its cleanup task.
pub(crate) struct LocalState {
    pub(crate) limiters: Vec<LocalLimiter>,
}

impl LocalState {
    pub(crate) fn len(&self) -> usize {
        self.limiters.iter().map(LocalLimiter::len).sum()
    }

    pub(crate) fn cleanup(&self) -> usize {
        self.limiters.iter().map(LocalLimiter::cleanup).sum()
    }
}

/// Spawns the cleanup task on the current tokio runtime, if there is one. The task
/// holds only a `Weak`, so it ends once every layer and service is dropped.
pub(crate) fn spawn_cleanup(state: &Arc<LocalState>, every: Duration) -> bool {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    let weak: Weak<LocalState> = Arc::downgrade(state);
    handle.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { break };
            let dropped = state.cleanup();
            if dropped > 0 {
                tracing::debug!(
                    dropped,
                    tracked = state.len(),
                    "rate limit: idle keys dropped"
                );
            }
        }
    });
    true
}

#[cfg(test)]
mod tests {
    use governor::clock::Reference;

    use super::*;

    #[test]
    fn gcra_with_manual_clock() {
        let clock = RateLimitClock::manual();
        let l = LocalLimiter::new(Quota::per_second(5), clock.clone());
        for expected_remaining in (0..5).rev() {
            let o = l.check(1, 1, true);
            assert!(o.allowed);
            assert_eq!(o.remaining, expected_remaining);
        }
        let o = l.check(1, 1, true);
        assert!(!o.allowed);
        assert_eq!(o.reset_secs, 1, "200 ms rounds up to 1 s");
        assert!(l.check(2, 1, true).allowed, "other keys are independent");
        clock.advance(Duration::from_millis(200));
        assert!(l.check(1, 1, true).allowed);
        assert!(!l.check(1, 1, true).allowed);
        // Cost larger than the burst never fits.
        let o = l.check(3, 6, true);
        assert!(!o.allowed);
        assert_eq!(o.reset_secs, 1);
        assert!(l.check(3, 5, true).allowed);
    }

    #[test]
    fn without_snapshot_an_allowed_check_carries_nothing_and_a_rejection_its_wait() {
        let clock = RateLimitClock::manual();
        let with = LocalLimiter::new(Quota::per_second(2), clock.clone());
        let without = LocalLimiter::new(Quota::per_second(2), clock);
        for _ in 0..2 {
            let (a, b) = (with.check(1, 1, true), without.check(1, 1, false));
            assert!(a.allowed && b.allowed);
            assert_eq!((b.remaining, b.reset_secs), (0, 0));
        }
        // The decision is the same; the rejection says when, either way.
        assert_eq!(with.check(1, 1, true), without.check(1, 1, false));
        assert_eq!(without.check(2, 3, false).reset_secs, 1);
    }

    #[test]
    fn reset_counts_used_requests() {
        let clock = RateLimitClock::manual();
        let l = LocalLimiter::new(Quota::per(100, Duration::from_secs(60)), clock);
        let o = l.check(1, 10, true);
        assert_eq!((o.remaining, o.reset_secs), (90, 6));
    }

    #[test]
    fn cleanup_forgets_idle_keys() {
        let clock = RateLimitClock::manual();
        let l = LocalLimiter::new(Quota::per_second(10), clock.clone());
        for k in 0..1000 {
            l.check(k, 1, true);
        }
        assert_eq!(l.len(), 1000);
        assert_eq!(l.cleanup(), 0, "keys are still recent");
        clock.advance(Duration::from_secs(2));
        assert_eq!(l.cleanup(), 1000);
        assert_eq!(l.len(), 0);
        assert!(clock.is_manual() && !RateLimitClock::system().is_manual());
        assert_eq!(clock.elapsed(), Duration::from_secs(2));
    }

    #[test]
    fn system_clock_moves_forward() {
        let c = RateLimitClock::system();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        c.advance(Duration::from_secs(100));
        assert!(c.elapsed() < Duration::from_secs(100));
        let _ = Reference::duration_since(&b, a);
    }
}
