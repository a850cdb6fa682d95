//! Graceful shutdown: on SIGINT or SIGTERM, take the service out of the load
//! balancer, finish what is in flight within a deadline, clean up, return.
//!
//! [`Shutdown::run`] drives the server future. As it starts, it installs the
//! signal handlers and marks [`Readiness`] ready: the listener is bound and
//! about to be served, so `/health/ready` answers 200 (from the critical
//! checks) without the application calling [`Readiness::mark_ready`] itself.
//! An application with more start-up work after that point turns this off with
//! [`ShutdownBuilder::ready_on_run`] and marks readiness when it is done.
//!
//! When a signal arrives (or [`Shutdown::trigger`] is called), it:
//!
//! 1. sets [`Readiness`] to `Draining`, so `/health/ready` answers 503
//!    `draining` while the server keeps serving (liveness stays 200);
//! 2. waits the drain delay (`SHUTDOWN_DRAIN_DELAY_MS`, default 0), giving the
//!    load balancer time to notice; set it to about the readiness probe period
//!    times its failure threshold, or leave it 0 when a Kubernetes
//!    `preStop` sleep does that job;
//! 3. resolves [`Shutdown::stop_accepting`]: the server closes its listener
//!    and asks connections to finish (`with_graceful_shutdown` in axum,
//!    hyper-util's `GracefulShutdown` in a hand-written loop);
//! 4. waits up to `SHUTDOWN_TIMEOUT_MS` (default 30 s) for the server future to
//!    finish, logging every second how many requests remain (with
//!    [`Shutdown::in_flight_layer`] installed);
//! 5. on the deadline, stops waiting and logs what is cut: the server future
//!    is dropped, and connection tasks it spawned end when `main` returns and
//!    the runtime shuts down;
//! 6. runs the clean-up hooks ([`Shutdown::hook`]) one after another, each under
//!    its own timeout, panics contained;
//! 7. returns, so `main` can exit with status 0.
//!
//! A second signal during steps 2 to 4 skips straight to step 5. The whole
//! sequence takes at most drain delay + timeout + the hooks' timeouts: keep
//! that under Kubernetes' `terminationGracePeriodSeconds` (30 s by default).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_ops::health::{Readiness, ReadinessState};
//! use tower_ops::shutdown::Shutdown;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let readiness = Readiness::new();
//! let shutdown = Shutdown::builder()
//!     .readiness(readiness.clone())
//!     .timeout(Duration::from_secs(5))
//!     .signals(false) // this example triggers by hand
//!     .build();
//! shutdown.hook("flush telemetry", Duration::from_secs(1), || async {
//!     // flush exporters, close pools...
//! });
//!
//! // With axum: `axum::serve(listener, app).with_graceful_shutdown(shutdown.stop_accepting())`.
//! let stop = shutdown.stop_accepting();
//! let (probe, trigger) = (readiness.clone(), shutdown.clone());
//! let server = async move {
//!     // `run` marked readiness ready before polling the server.
//!     assert_eq!(probe.state(), ReadinessState::Ready);
//!     trigger.trigger(); // what a SIGTERM does
//!     stop.await;
//!     "drained"
//! };
//! assert_eq!(readiness.state(), ReadinessState::Starting);
//! assert_eq!(shutdown.run(server).await, Some("drained"));
//! assert_eq!(readiness.state(), ReadinessState::Draining);
//! # }
//! ```

mod in_flight;

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub use self::in_flight::{InFlight, InFlightLayer, ResponseFuture};
use crate::config::ConfigError;
use crate::config::parse_ms;
use crate::health::{CatchUnwind, Readiness};

/// Default for `SHUTDOWN_DRAIN_DELAY_MS`.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::ZERO;
/// Default for `SHUTDOWN_TIMEOUT_MS`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The signal that started a shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// SIGINT (Ctrl+C).
    Interrupt,
    /// SIGTERM (what orchestrators send).
    Terminate,
}

impl Signal {
    /// `SIGINT` or `SIGTERM`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM (on non-Unix systems, Ctrl+C).
///
/// The handlers are installed when the future is first polled; from then on
/// these signals no longer kill the process by default. Poll it (or start
/// [`Shutdown::run`]) before serving, or an early SIGTERM ends the process
/// abruptly.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub async fn signal() -> std::io::Result<Signal> {
    let mut signals = Signals::new()?;
    Ok(signals.recv().await)
}

#[cfg(unix)]
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) -> Signal {
        tokio::select! {
            Some(()) = self.interrupt.recv() => Signal::Interrupt,
            Some(()) = self.terminate.recv() => Signal::Terminate,
            else => std::future::pending().await,
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn recv(&mut self) -> Signal {
        match tokio::signal::ctrl_c().await {
            Ok(()) => Signal::Interrupt,
            Err(_) => std::future::pending().await,
        }
    }
}

/// Builds a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownBuilder {
    drain_delay: Duration,
    timeout: Duration,
    readiness: Readiness,
    signals: bool,
    ready_on_run: bool,
}

impl Default for ShutdownBuilder {
    fn default() -> Self {
        Self {
            drain_delay: DEFAULT_DRAIN_DELAY,
            timeout: DEFAULT_TIMEOUT,
            readiness: Readiness::new(),
            signals: true,
            ready_on_run: true,
        }
    }
}

impl ShutdownBuilder {
    /// Defaults overridden by `SHUTDOWN_DRAIN_DELAY_MS` and `SHUTDOWN_TIMEOUT_MS`.
    ///
    /// # Errors
    /// Every invalid variable, listed together.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let delay = parse_ms(
            "SHUTDOWN_DRAIN_DELAY_MS",
            DEFAULT_DRAIN_DELAY,
            0,
            &mut errors,
        );
        let timeout = parse_ms("SHUTDOWN_TIMEOUT_MS", DEFAULT_TIMEOUT, 1, &mut errors);
        errors.into_result(Self::default().drain_delay(delay).timeout(timeout))
    }

    /// How long to keep serving, with readiness at 503, before the listener
    /// closes. Default 0.
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// How long in-flight work may take once the listener is closed. Default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The readiness to flip to `Draining`; share it with the
    /// [`HealthRegistry`](crate::health::HealthRegistry).
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Whether [`Shutdown::run`] listens for SIGINT and SIGTERM. Default true;
    /// turn it off when shutdown is only triggered by hand.
    pub fn signals(mut self, listen: bool) -> Self {
        self.signals = listen;
        self
    }

    /// Whether [`Shutdown::run`] marks the readiness ready when it starts
    /// serving. Default true. Turn it off when the application has start-up work
    /// that must finish after the server runs (warming a cache through its own
    /// routes, say); it then calls [`Readiness::mark_ready`] itself.
    pub fn ready_on_run(mut self, mark: bool) -> Self {
        self.ready_on_run = mark;
        self
    }

    /// Builds the coordinator.
    pub fn build(self) -> Shutdown {
        let (stop, _) = watch::channel(false);
        let (triggered, _) = watch::channel(false);
        Shutdown {
            inner: Arc::new(Inner {
                drain_delay: self.drain_delay,
                timeout: self.timeout,
                readiness: self.readiness,
                signals: self.signals,
                ready_on_run: self.ready_on_run,
                stop,
                triggered,
                hooks: Mutex::new(Vec::new()),
                in_flight: Arc::new(AtomicUsize::new(0)),
                tracking: AtomicBool::new(false),
            }),
        }
    }
}

type HookFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Hook {
    name: String,
    timeout: Duration,
    run: Box<dyn FnOnce() -> HookFuture + Send>,
}

/// The shutdown coordinator. Cloning is cheap; clones share one state. See
/// the [module docs](self).
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    drain_delay: Duration,
    timeout: Duration,
    readiness: Readiness,
    signals: bool,
    ready_on_run: bool,
    stop: watch::Sender<bool>,
    triggered: watch::Sender<bool>,
    hooks: Mutex<Vec<Hook>>,
    in_flight: Arc<AtomicUsize>,
    tracking: AtomicBool,
}

impl Shutdown {
    /// A builder with the defaults (no drain delay, 30 s timeout, signals on).
    pub fn builder() -> ShutdownBuilder {
        ShutdownBuilder::default()
    }

    /// The readiness handle it flips.
    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    /// Registers a clean-up hook, run after draining under its own `timeout`.
    /// Hooks run one after another, in the order they were registered.
    pub fn hook<F, Fut>(&self, name: impl Into<String>, timeout: Duration, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook = Hook {
            name: name.into(),
            timeout,
            run: Box::new(move || Box::pin(hook())),
        };
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(hook);
    }

    /// Starts the shutdown sequence without a signal.
    pub fn trigger(&self) {
        self.inner.triggered.send_replace(true);
    }

    /// Resolves when the server must stop accepting connections: after the
    /// signal and the drain delay. Pass it to
    /// `axum::serve(..).with_graceful_shutdown(..)`, or select on it in an
    /// accept loop.
    pub fn stop_accepting(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.stop.subscribe();
        async move {
            // An error means the coordinator is gone: stop as well.
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// A layer counting requests in flight, for the drain logs. Optional.
    pub fn in_flight_layer(&self) -> InFlightLayer {
        self.inner.tracking.store(true, Ordering::Release);
        InFlightLayer::new(self.inner.in_flight.clone())
    }

    /// Requests in flight, as counted by [`in_flight_layer`](Self::in_flight_layer).
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Drives `server` (a future, or an `IntoFuture` such as what
    /// `axum::serve(..).with_graceful_shutdown(..)` returns) through the whole
    /// sequence (see the module docs).
    ///
    /// Returns the server's output when it finished (drained, or ended by
    /// itself before any signal), `None` when it was cut at the deadline.
    /// Hooks run in every case. Signal handlers are installed as soon as this
    /// future is first polled; right after, readiness is marked ready (unless
    /// [`ShutdownBuilder::ready_on_run`] turned that off), and set to draining
    /// again if the server ends by itself.
    pub async fn run<F: IntoFuture>(&self, server: F) -> Option<F::Output> {
        let inner = &self.inner;
        let mut signals = if inner.signals {
            match Signals::new() {
                Ok(s) => Some(s),
                Err(error) => {
                    tracing::error!(%error, "cannot listen for shutdown signals");
                    None
                }
            }
        } else {
            None
        };
        // Boxed so that it can be dropped (the cut) before the hooks run.
        let mut server = Box::pin(server.into_future());
        // The listener is bound (the server future owns it) and the signal
        // handlers are in place: from here on, a probe can be answered and a
        // SIGTERM drains. This is the one place every user of the crate's serve
        // path goes through, so readiness cannot be forgotten.
        if inner.ready_on_run {
            inner.readiness.mark_ready();
        }

        // Serving until asked to stop.
        let cause = tokio::select! {
            out = &mut server => {
                tracing::info!("server ended before any shutdown signal");
                // Nothing serves any more: probes that still reach a handle of
                // the registry must not see a ready instance.
                inner.readiness.start_draining();
                self.run_hooks().await;
                return Some(out);
            }
            cause = next_cause(&mut signals, inner.triggered.subscribe()) => cause,
        };
        inner.readiness.start_draining();
        tracing::info!(
            cause,
            drain_delay_ms = millis(inner.drain_delay),
            timeout_ms = millis(inner.timeout),
            "shutdown started; readiness set to draining"
        );

        // Still serving while the load balancer notices.
        let mut forced = false;
        if !inner.drain_delay.is_zero() {
            tokio::select! {
                out = &mut server => {
                    self.run_hooks().await;
                    return Some(out);
                }
                () = tokio::time::sleep(inner.drain_delay) => {}
                cause = next_signal(&mut signals) => {
                    tracing::warn!(cause, "second signal: skipping the drain");
                    forced = true;
                }
            }
        }

        inner.stop.send_replace(true);
        let outcome = if forced {
            None
        } else {
            self.log_in_flight("stopped accepting connections; draining");
            self.drain(server.as_mut(), &mut signals).await
        };
        match &outcome {
            Some(_) => tracing::info!("drained: every connection finished"),
            None if inner.tracking.load(Ordering::Acquire) => tracing::warn!(
                in_flight = self.in_flight(),
                "shutdown timeout reached; cutting requests still in flight"
            ),
            None => tracing::warn!("shutdown timeout reached; cutting connections still open"),
        }
        // Dropping the server future here is the cut.
        drop(server);
        self.run_hooks().await;
        tracing::info!("shutdown complete");
        outcome
    }

    async fn drain<F: Future>(
        &self,
        mut server: Pin<&mut F>,
        signals: &mut Option<Signals>,
    ) -> Option<F::Output> {
        let deadline = Instant::now() + self.inner.timeout;
        let mut progress =
            tokio::time::interval_at(Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        loop {
            tokio::select! {
                out = &mut server => return Some(out),
                () = tokio::time::sleep_until(deadline) => return None,
                _ = progress.tick() => self.log_in_flight("draining"),
                cause = next_signal(signals) => {
                    tracing::warn!(cause, "second signal: cutting the drain short");
                    return None;
                }
            }
        }
    }

    fn log_in_flight(&self, message: &'static str) {
        if self.inner.tracking.load(Ordering::Acquire) {
            tracing::info!(in_flight = self.in_flight(), "{message}");
        } else {
            tracing::info!("{message}");
        }
    }

    async fn run_hooks(&self) {
        let hooks = std::mem::take(
            &mut *self
                .inner
                .hooks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for hook in hooks {
            let name = hook.name;
            let run = CatchUnwind::new(async move { (hook.run)().await });
            match tokio::time::timeout(hook.timeout, run).await {
                Ok(Ok(())) => tracing::info!(hook = %name, "shutdown hook done"),
                Ok(Err(panic)) => tracing::error!(hook = %name, %panic, "shutdown hook panicked"),
                Err(_) => tracing::warn!(
                    hook = %name,
                    timeout_ms = millis(hook.timeout),
                    "shutdown hook timed out"
                ),
            }
        }
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("drain_delay", &self.inner.drain_delay)
            .field("timeout", &self.inner.timeout)
            .field("readiness", &self.inner.readiness)
            .field("signals", &self.inner.signals)
            .field("ready_on_run", &self.inner.ready_on_run)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn next_signal(signals: &mut Option<Signals>) -> &'static str {
    match signals {
        Some(s) => s.recv().await.as_str(),
        None => std::future::pending().await,
    }
}

async fn next_cause(
    signals: &mut Option<Signals>,
    mut triggered: watch::Receiver<bool>,
) -> &'static str {
    tokio::select! {
        cause = next_signal(signals) => cause,
        Ok(_) = triggered.wait_for(|t| *t) => "trigger",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use tower::{Layer, Service, ServiceExt, service_fn};

    use super::*;
    use crate::health::ReadinessState;

    /// `shutdown.run(server)`, failing the test instead of hanging it: on the
    /// paused clock the hour passes as soon as every task waits.
    async fn run<F: Future>(shutdown: &Shutdown, server: F) -> Option<F::Output> {
        tokio::time::timeout(Duration::from_secs(3600), shutdown.run(server))
            .await
            .expect("run returns")
    }

    fn coordinator(delay_ms: u64, timeout_ms: u64) -> Shutdown {
        Shutdown::builder()
            .drain_delay(Duration::from_millis(delay_ms))
            .timeout(Duration::from_millis(timeout_ms))
            .signals(false)
            .build()
    }

    #[tokio::test(start_paused = true)]
    async fn drains_in_order_then_runs_hooks() {
        let shutdown = coordinator(5_000, 30_000);
        let order = Arc::new(Mutex::new(Vec::new()));
        for name in ["first", "second"] {
            let order = order.clone();
            shutdown.hook(name, Duration::from_secs(1), move || async move {
                order.lock().unwrap().push(name);
            });
        }
        let readiness = shutdown.readiness().clone();
        readiness.mark_ready();
        let stop = shutdown.stop_accepting();
        let observed = Arc::new(Mutex::new(None));
        let seen = observed.clone();
        let server = async move {
            let signalled = Instant::now();
            stop.await;
            // Readiness was already draining while we still served.
            *seen.lock().unwrap() = Some((readiness.state(), signalled.elapsed()));
            // In-flight work finishing during the drain.
            tokio::time::sleep(Duration::from_secs(2)).await;
            7
        };
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            trigger.trigger();
        });
        let started = Instant::now();
        assert_eq!(run(&shutdown, server).await, Some(7));
        assert_eq!(started.elapsed(), Duration::from_secs(1 + 5 + 2));
        let (state, waited) = observed.lock().unwrap().take().unwrap();
        assert_eq!(state, ReadinessState::Draining);
        assert_eq!(waited, Duration::from_secs(6), "signal at 1 s + delay 5 s");
        assert_eq!(*order.lock().unwrap(), ["first", "second"]);
        assert_eq!(shutdown.readiness().state(), ReadinessState::Draining);
    }

    #[tokio::test(start_paused = true)]
    async fn cuts_at_the_deadline_and_counts_in_flight() {
        let shutdown = coordinator(0, 3_000);
        let hooked = Arc::new(AtomicBool::new(false));
        let flag = hooked.clone();
        shutdown.hook("close pool", Duration::from_secs(1), move || async move {
            flag.store(true, Ordering::SeqCst);
        });
        let mut service = shutdown.in_flight_layer().layer(service_fn(|_: ()| async {
            std::future::pending::<()>().await;
            Ok::<_, std::convert::Infallible>(())
        }));
        let stuck = service.ready().await.unwrap().call(());
        assert_eq!(shutdown.in_flight(), 1);
        let cut = Arc::new(AtomicBool::new(false));
        let dropped = cut.clone();
        struct OnDrop(Arc<AtomicBool>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let server = async move {
            let _mark = OnDrop(dropped);
            stuck.await
        };
        shutdown.trigger();
        let started = Instant::now();
        assert_eq!(run(&shutdown, server).await, None);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert!(cut.load(Ordering::SeqCst), "the server future was dropped");
        assert!(hooked.load(Ordering::SeqCst), "hooks run after a cut");
        assert_eq!(shutdown.in_flight(), 0, "dropping the request releases it");
    }

    #[tokio::test(start_paused = true)]
    async fn hooks_are_bounded_and_contained() {
        let shutdown = coordinator(0, 1_000);
        let ran = Arc::new(AtomicUsize::new(0));
        shutdown.hook("hangs", Duration::from_millis(500), || {
            std::future::pending()
        });
        shutdown.hook("panics", Duration::from_secs(1), || async {
            panic!("hook failed")
        });
        let counter = ran.clone();
        shutdown.hook("last", Duration::from_secs(1), move || async move {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        shutdown.trigger();
        let started = Instant::now();
        assert_eq!(run(&shutdown, async {}).await, Some(()));
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        // Hooks run once only.
        assert_eq!(run(&shutdown, async {}).await, Some(()));
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_ends_by_itself_still_cleans_up() {
        let shutdown = coordinator(0, 1_000);
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        shutdown.hook("flush", Duration::from_secs(1), move || async move {
            flag.store(true, Ordering::SeqCst);
        });
        let out = run(&shutdown, async { Err::<(), _>("bind failed") }).await;
        assert_eq!(out, Some(Err("bind failed")));
        assert!(ran.load(Ordering::SeqCst));
        assert_eq!(shutdown.readiness().state(), ReadinessState::Draining);
    }

    #[tokio::test(start_paused = true)]
    async fn run_marks_ready_before_serving_unless_told_not_to() {
        for mark in [true, false] {
            let shutdown = Shutdown::builder()
                .signals(false)
                .ready_on_run(mark)
                .build();
            let readiness = shutdown.readiness().clone();
            let seen = readiness.clone();
            let stop = shutdown.stop_accepting();
            let server = async move {
                let state = seen.state();
                stop.await;
                state
            };
            assert_eq!(readiness.state(), ReadinessState::Starting);
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                trigger.trigger();
            });
            let expected = if mark {
                ReadinessState::Ready
            } else {
                ReadinessState::Starting
            };
            assert_eq!(run(&shutdown, server).await, Some(expected), "mark {mark}");
            assert_eq!(readiness.state(), ReadinessState::Draining);
        }
    }

    #[tokio::test]
    async fn in_flight_layer_counts_concurrent_requests() {
        let shutdown = coordinator(0, 1_000);
        let layer = shutdown.in_flight_layer();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let service = layer.layer(service_fn(move |_: ()| {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|go| *go).await;
                Ok::<_, std::convert::Infallible>(())
            }
        }));
        let tasks: Vec<_> = (0..50)
            .map(|_| tokio::spawn(service.clone().oneshot(())))
            .collect();
        let all_in = async {
            while layer.in_flight() < 50 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), all_in)
            .await
            .expect("all 50 requests counted in flight");
        assert_eq!(shutdown.in_flight(), 50);
        tx.send_replace(true);
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(shutdown.in_flight(), 0);
    }

    #[tokio::test]
    async fn stop_accepting_resolves_when_the_coordinator_is_gone() {
        let shutdown = coordinator(0, 1_000);
        let stop = shutdown.stop_accepting();
        drop(shutdown);
        tokio::time::timeout(Duration::from_secs(5), stop)
            .await
            .expect("stop_accepting resolves once the coordinator is dropped");
    }
}
