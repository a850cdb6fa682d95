use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// Where the application is in its life: the readiness state machine.
///
/// `Starting` → `Ready` → `Draining`. `Draining` is final: once shutdown has
/// begun, [`Readiness::mark_ready`] does nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReadinessState {
    /// Start-up is not finished; `/health/ready` answers 503 `starting`.
    Starting,
    /// Serving; `/health/ready` answers from the critical checks.
    Ready,
    /// Shutting down; `/health/ready` answers 503 `draining`.
    Draining,
}

impl ReadinessState {
    /// The state as it appears in logs and in the `reason` of `/health/ready`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Draining => "draining",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            STARTING => Self::Starting,
            READY => Self::Ready,
            _ => Self::Draining,
        }
    }
}

impl fmt::Display for ReadinessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

/// A shared handle on the readiness state. Cloning is cheap; every clone sees
/// the same state.
///
/// The [`shutdown`](crate::shutdown) coordinator calls
/// [`mark_ready`](Self::mark_ready) when [`Shutdown::run`](crate::shutdown::Shutdown::run)
/// starts serving and [`start_draining`](Self::start_draining) when a signal
/// arrives. An application that serves otherwise, or that turned
/// [`ShutdownBuilder::ready_on_run`](crate::shutdown::ShutdownBuilder::ready_on_run)
/// off, calls `mark_ready` itself when its start-up is done. Each change of
/// state is logged once.
///
/// ```
/// use tower_ops::health::{Readiness, ReadinessState};
///
/// let readiness = Readiness::new();
/// assert_eq!(readiness.state(), ReadinessState::Starting);
/// readiness.mark_ready();
/// assert_eq!(readiness.clone().state(), ReadinessState::Ready);
/// readiness.start_draining();
/// readiness.mark_ready(); // too late: draining is final
/// assert_eq!(readiness.state(), ReadinessState::Draining);
/// ```
#[derive(Clone, Default)]
pub struct Readiness {
    state: Arc<AtomicU8>,
}

impl Readiness {
    /// A new handle in the `Starting` state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current state.
    pub fn state(&self) -> ReadinessState {
        ReadinessState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// `Starting` → `Ready`. Does nothing when already ready or draining.
    pub fn mark_ready(&self) {
        if self
            .state
            .compare_exchange(STARTING, READY, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tracing::info!(readiness = "ready", "application marked ready");
        }
    }

    /// Any state → `Draining`: readiness answers 503 from now on.
    pub fn start_draining(&self) {
        let before = self.state.swap(DRAINING, Ordering::AcqRel);
        if before != DRAINING {
            tracing::info!(
                readiness = "draining",
                previous = ReadinessState::from_u8(before).as_str(),
                "readiness set to draining"
            );
        }
    }
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Readiness").field(&self.state()).finish()
    }
}
