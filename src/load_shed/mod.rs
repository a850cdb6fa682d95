//! Load shedding: a limit on the requests in flight, fixed or adaptive.
//!
//! Rate limits protect the service from one client; [`ConcurrencyLimitLayer`]
//! protects it from all of them at once. When a dependency slows down, requests
//! pile up behind it until memory or latency gives out; with a limit, the
//! requests above it are answered at once with 503 problem+json (code
//! `OVERLOADED`, `rejected_by: "load_shed"`, `Retry-After: 1`) and the admitted
//! ones keep their latency. Shed requests carry their [`Problem`](crate::error::Problem),
//! so the log and metrics layers outside log and count them like every other
//! rejection, and gRPC calls get `UNAVAILABLE`. Probe, metrics and admin paths
//! ([`PathSet::probes_and_admin`](crate::paths::PathSet::probes_and_admin)) are
//! never shed.
//!
//! In the canonical order the layer sits right inside `ErrorLayer`.
//! `CONCURRENCY_LIMIT` sets it from the environment: a number, `adaptive`, or
//! unset (off, the default); `CONCURRENCY_LIMIT_MAX` (default 1000) caps the adaptive
//! limit. With the `metrics` feature, [`ConcurrencyLimitLayer::register`] adds the
//! gauge `http_server_concurrency_limit`.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{Service, ServiceExt, service_fn};
//! use tower_layer::Layer;
//! use tower_ops::load_shed::ConcurrencyLimitLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (tx, rx) = tokio::sync::oneshot::channel::<()>();
//! let rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(rx)));
//! let slow = service_fn(move |_req: Request<()>| {
//!     let rx = rx.clone();
//!     async move {
//!         if let Some(rx) = rx.lock().await.take() {
//!             let _ = rx.await;
//!         }
//!         Ok::<_, Infallible>(Response::new(String::from("done")))
//!     }
//! });
//! let mut service = ConcurrencyLimitLayer::fixed(1).layer(slow);
//!
//! // The first request takes the only place and waits.
//! let first = service.ready().await.unwrap().call(Request::new(()));
//! let first = tokio::spawn(first);
//! tokio::task::yield_now().await;
//! // The second is shed at once.
//! let second = service.ready().await.unwrap().call(Request::new(())).await.unwrap();
//! assert_eq!(second.status(), 503);
//! assert_eq!(second.headers()["retry-after"], "1");
//! let _ = tx.send(());
//! assert_eq!(first.await.unwrap().unwrap().status(), 200);
//! # }
//! ```
//!
//! # The adaptive limit
//!
//! `adaptive` moves the limit with the latency the layer sees, in the style of
//! AIMD (additive increase, multiplicative decrease), as TCP congestion control
//! and Netflix's `AIMDLimit` do. Each window (100 ms, and at least 20 answers)
//! the layer compares the window's mean answer time with a baseline, the mean of
//! the fastest recent window:
//!
//! - over twice the baseline, the limit is multiplied by 0.9 (at least one
//!   less), and may not grow for the next 50 windows (5 s);
//! - otherwise, when the window filled the limit, the limit grows by one.
//!
//! It starts at 20 and stays between 1 and `CONCURRENCY_LIMIT_MAX`. Answers to
//! requests admitted under a higher limit than the current one are not counted:
//! they tell of a limit already left behind, and counting them would drive the
//! limit far below the point of saturation while they drain. The baseline
//! follows faster answers at once and slower ones slowly, so a service that
//! became slower for good is not shed forever. The baseline is learned from the
//! first windows: a service already saturated when the layer starts learns a
//! saturated baseline and sheds too little, so give a service that may start
//! under overload a fixed limit or a lower [`Adaptive::initial`].
//!
//! Why AIMD and not the gradient algorithm (Gradient2): the gradient algorithm
//! scales the limit by the ratio of long-term to short-term latency and adds a
//! queue allowance, so it keeps the limit a little above the point where
//! latency rises and its averages take many windows to see a cliff. A service in
//! front of a saturating database has such a cliff: past a number of
//! concurrent queries every query slows down. AIMD needs one window over the
//! cliff to back off, and the hold after each drop
//! bounds how often it probes above it: the admitted requests keep the latency
//! of an unloaded service. A mean over at least 20 answers, not a single slow
//! one, decides, so the scheduling noise of a busy machine does not shed load. `tests/load_shed_simulation.rs` shows it against such
//! a database; the README quotes its figures.

mod layer;
mod limit;

pub use self::layer::{ConcurrencyLimit, ConcurrencyLimitLayer, ResponseFuture};
pub use self::limit::Adaptive;
