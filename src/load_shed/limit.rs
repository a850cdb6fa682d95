//! The limit itself: requests in flight against a fixed or adaptive ceiling.

#[cfg(feature = "metrics")]
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the adaptive limit moves; see the [module docs](super#the-adaptive-limit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adaptive {
    /// Where the limit starts.
    pub initial: usize,
    /// The lowest it goes.
    pub min: usize,
    /// The highest it goes.
    pub max: usize,
    /// How long a measurement window lasts.
    pub window: Duration,
    /// A window is slow when its mean answer time is more than this many times
    /// the baseline (the fastest recent window's mean).
    pub tolerance: f64,
    /// What the limit is multiplied by when a window had too many slow requests.
    pub backoff: f64,
    /// Windows after a drop during which the limit does not grow.
    pub hold: u32,
}

impl Default for Adaptive {
    fn default() -> Self {
        Self {
            initial: 20,
            min: 1,
            max: 1000,
            window: Duration::from_millis(100),
            tolerance: 2.0,
            backoff: 0.9,
            hold: 50,
        }
    }
}

/// Windows with fewer samples than this carry on into the next one: a mean of a
/// few answers is scheduling noise as much as latency.
const MIN_SAMPLES: u64 = 20;

/// The shared state of a layer and all its services.
pub(crate) struct Limiter {
    in_flight: AtomicUsize,
    limit: AtomicUsize,
    adaptive: Option<AdaptiveState>,
    #[cfg(feature = "metrics")]
    gauge: OnceLock<prometheus_client::metrics::gauge::Gauge>,
}

struct AdaptiveState {
    config: Adaptive,
    start: Instant,
    /// Nanoseconds since `start` at which the window closes.
    window_end: AtomicU64,
    samples: AtomicU64,
    /// The window's answer times added up, in nanoseconds.
    total: AtomicU64,
    /// The most requests in flight the window saw.
    peak: AtomicUsize,
    /// The mean answer time of a window when the service is not saturated, in
    /// nanoseconds; `u64::MAX` until the first window has closed.
    baseline: AtomicU64,
    /// Who closes a window, and what only the closer touches.
    closer: Mutex<Closer>,
}

struct Closer {
    /// Windows still to wait before the limit may grow.
    hold: u32,
}

impl Limiter {
    pub(crate) fn fixed(limit: usize) -> Self {
        Self::new(limit.max(1), None)
    }

    pub(crate) fn adaptive(config: Adaptive) -> Self {
        let min = config.min.max(1);
        let max = config.max.max(min);
        let config = Adaptive {
            min,
            max,
            initial: config.initial.clamp(min, max),
            ..config
        };
        let state = AdaptiveState {
            config,
            start: Instant::now(),
            window_end: AtomicU64::new(nanos(config.window)),
            samples: AtomicU64::new(0),
            total: AtomicU64::new(0),
            peak: AtomicUsize::new(0),
            baseline: AtomicU64::new(u64::MAX),
            closer: Mutex::new(Closer { hold: 0 }),
        };
        Self::new(config.initial, Some(state))
    }

    fn new(limit: usize, adaptive: Option<AdaptiveState>) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            adaptive,
            #[cfg(feature = "metrics")]
            gauge: OnceLock::new(),
        }
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Requests in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn is_adaptive(&self) -> bool {
        self.adaptive.is_some()
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn set_gauge(&self, gauge: prometheus_client::metrics::gauge::Gauge) {
        gauge.set(self.limit() as i64);
        // A second registration keeps the first gauge; both registries show
        // the value the first one is given.
        let _ = self.gauge.set(gauge);
    }

    /// A place among the requests in flight, or `None` when they are at the limit.
    #[inline]
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let limit = self.limit.load(Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        if now > limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let started = self.adaptive.as_ref().map(|a| {
            a.peak.fetch_max(now, Ordering::Relaxed);
            (Instant::now(), limit)
        });
        Some(Permit {
            limiter: self.clone(),
            started,
        })
    }

    /// A request admitted at `started`, under a limit of `admitted_at`, has its
    /// answer.
    fn finished(&self, started: Instant, admitted_at: usize) {
        let Some(a) = &self.adaptive else { return };
        if admitted_at > self.limit() {
            // Admitted under a higher limit that has since been found too high:
            // its latency says nothing about the current one.
            return;
        }
        let now = Instant::now();
        let took = nanos(now.saturating_duration_since(started));
        a.total.fetch_add(took, Ordering::Relaxed);
        a.samples.fetch_add(1, Ordering::Relaxed);
        let at = nanos(now.saturating_duration_since(a.start));
        if at >= a.window_end.load(Ordering::Relaxed)
            && let Ok(mut closer) = a.closer.try_lock()
        {
            self.close_window(a, &mut closer, at);
        }
    }

    /// Moves the limit by what the window saw: down by `backoff` when its mean
    /// answer time was over `tolerance` times the baseline, up by one when it was
    /// not, the window used the whole limit and no recent drop holds it back.
    fn close_window(&self, a: &AdaptiveState, closer: &mut Closer, at: u64) {
        // Another closer may have just done it.
        if at < a.window_end.load(Ordering::Relaxed) {
            return;
        }
        let samples = a.samples.load(Ordering::Relaxed);
        if samples < MIN_SAMPLES {
            // Too few answers to judge: the window goes on.
            return;
        }
        a.samples.fetch_sub(samples, Ordering::Relaxed);
        let mean = a.total.swap(0, Ordering::Relaxed) / samples;
        let peak = a.peak.swap(0, Ordering::Relaxed);
        a.window_end
            .store(at + nanos(a.config.window), Ordering::Relaxed);

        // The baseline follows faster windows at once and slower ones slowly, so
        // a service that became slower for good is not shed forever.
        let baseline = a.baseline.load(Ordering::Relaxed);
        let next = if baseline == u64::MAX || mean <= baseline {
            mean
        } else {
            baseline + (mean - baseline) / 64
        };
        a.baseline.store(next, Ordering::Relaxed);
        if baseline == u64::MAX {
            // The first window only measures.
            return;
        }

        let limit = self.limit();
        let new = if mean as f64 > baseline as f64 * a.config.tolerance {
            closer.hold = a.config.hold;
            let lower = (limit as f64 * a.config.backoff) as usize;
            lower.min(limit.saturating_sub(1)).max(a.config.min)
        } else if closer.hold > 0 {
            closer.hold -= 1;
            limit
        } else if peak >= limit {
            (limit + 1).min(a.config.max)
        } else {
            limit
        };
        if new != limit {
            self.limit.store(new, Ordering::Relaxed);
            #[cfg(feature = "metrics")]
            if let Some(gauge) = self.gauge.get() {
                gauge.set(new as i64);
            }
            tracing::debug!(
                target: "tower_ops::load_shed",
                from = limit,
                to = new,
                mean_ms = mean as f64 / 1e6,
                baseline_ms = baseline as f64 / 1e6,
                samples,
                "concurrency limit changed"
            );
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A request's place among those in flight; given back when dropped.
pub(crate) struct Permit {
    limiter: Arc<Limiter>,
    /// With an adaptive limit: when the request was admitted, and the limit then.
    started: Option<(Instant, usize)>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some((started, limit)) = self.started {
            self.limiter.finished(started, limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_limit_admits_exactly_its_number() {
        let limiter = Arc::new(Limiter::fixed(3));
        let permits: Vec<_> = (0..3).map(|_| limiter.try_acquire().unwrap()).collect();
        assert!(limiter.try_acquire().is_none());
        assert_eq!(limiter.in_flight(), 3);
        drop(permits);
        assert_eq!(limiter.in_flight(), 0);
        assert!(limiter.try_acquire().is_some());
        // Zero would shed everything: the limit is at least one.
        assert_eq!(Limiter::fixed(0).limit(), 1);
    }

    #[test]
    fn concurrent_acquires_never_pass_the_limit() {
        let limiter = Arc::new(Limiter::fixed(5));
        let peak = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        if let Some(permit) = limiter.try_acquire() {
                            peak.fetch_max(limiter.in_flight(), Ordering::Relaxed);
                            drop(permit);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 5);
        assert_eq!(limiter.in_flight(), 0);
    }

    /// A window of `samples` answers with a mean of `mean_ms` (the baseline is
    /// 1 ms), at `peak` in flight.
    fn window(limiter: &Limiter, samples: u64, mean_ms: u64, peak: usize) {
        let a = limiter.adaptive.as_ref().unwrap();
        a.baseline.store(1_000_000, Ordering::Relaxed);
        a.samples.store(samples, Ordering::Relaxed);
        a.total
            .store(samples * mean_ms * 1_000_000, Ordering::Relaxed);
        a.peak.store(peak, Ordering::Relaxed);
        let at = a.window_end.load(Ordering::Relaxed);
        limiter.close_window(a, &mut a.closer.lock().unwrap(), at);
    }

    #[test]
    fn the_adaptive_limit_drops_on_slow_windows_holds_then_grows() {
        let limiter = Limiter::adaptive(Adaptive {
            hold: 2,
            ..Adaptive::default()
        });
        assert_eq!(limiter.limit(), 20);
        window(&limiter, 100, 5, 20);
        assert_eq!(limiter.limit(), 18);
        // Held: fast windows at the limit do not grow it yet.
        window(&limiter, 100, 1, 18);
        window(&limiter, 100, 1, 18);
        assert_eq!(limiter.limit(), 18);
        window(&limiter, 100, 1, 18);
        assert_eq!(limiter.limit(), 19);
        // A window that did not use the limit does not grow it.
        window(&limiter, 100, 1, 3);
        assert_eq!(limiter.limit(), 19);
        // Up to twice the baseline is not a reason to drop.
        window(&limiter, 100, 2, 19);
        assert_eq!(limiter.limit(), 20);
    }

    #[test]
    fn the_adaptive_limit_stays_within_its_bounds() {
        let limiter = Limiter::adaptive(Adaptive {
            initial: 3,
            min: 2,
            max: 4,
            hold: 0,
            ..Adaptive::default()
        });
        for _ in 0..10 {
            window(&limiter, 100, 10, 4);
        }
        assert_eq!(limiter.limit(), 2);
        for _ in 0..10 {
            window(&limiter, 100, 1, 4);
        }
        assert_eq!(limiter.limit(), 4);
        // Bounds given the wrong way round still make a usable limiter.
        let odd = Limiter::adaptive(Adaptive {
            initial: 50,
            min: 10,
            max: 5,
            ..Adaptive::default()
        });
        assert_eq!(odd.limit(), 10);
    }

    #[test]
    fn too_few_samples_carry_the_window_on() {
        let limiter = Limiter::adaptive(Adaptive::default());
        window(&limiter, 100, 1, 20);
        window(&limiter, MIN_SAMPLES - 1, 50, 20);
        assert_eq!(limiter.limit(), 21, "{}", limiter.limit());
        window(&limiter, MIN_SAMPLES, 50, 0);
        assert_eq!(limiter.limit(), 18);
    }
}
