//! The adaptive limit against a saturating database, over loopback.
//!
//! The handler runs one query on a database with `K` connections whose queries
//! take ten times as long once more than `K` requests run at once, the way a
//! saturated database slows every query down. `4K` clients call it as fast as
//! it answers (a shed client waits 100 ms before it tries again). Three runs,
//! each on a fresh database:
//!
//! - unloaded: one client, for the latency of an idle service;
//! - adaptive: the limit must settle within 2x of `K` in under 10 s, and the p99
//!   of the admitted requests after that must stay within 3x of the unloaded p99;
//! - no limit: the p99 grows past 10x the unloaded p99.
//!
//! `cargo test --test load_shed_simulation -- --nocapture` prints the figures the
//! README quotes. Its own test binary, so no other test shares its cores.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};
use tower_ops::error::ErrorLayer;
use tower_ops::load_shed::ConcurrencyLimitLayer;

/// The database's connections, and the concurrency past which it slows down.
const K: usize = 32;
/// A query's time while the database is not saturated.
const BASE: Duration = Duration::from_millis(10);
const CLIENTS: usize = 4 * K;

struct Database {
    running: AtomicUsize,
    pool: Semaphore,
}

/// Counts a request as running until it is done or dropped.
struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Database {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            running: AtomicUsize::new(0),
            pool: Semaphore::new(K),
        })
    }

    async fn query(&self) {
        let running = self.running.fetch_add(1, Ordering::AcqRel) + 1;
        let _running = Running(&self.running);
        let took = if running > K { BASE * 10 } else { BASE };
        let _connection = self.pool.acquire().await.unwrap();
        tokio::time::sleep(took).await;
    }
}

async fn start(layer: ConcurrencyLimitLayer) -> SocketAddr {
    let db = Database::new();
    let app = Router::new()
        .route(
            "/work",
            get(move || {
                let db = db.clone();
                async move {
                    db.query().await;
                    "ok"
                }
            }),
        )
        .layer(layer)
        .layer(ErrorLayer::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One answer: when its request started (since the run began), how long it
/// took, and its status.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Duration,
    took: Duration,
    status: u16,
}

/// `clients` clients calling `/work` for `length`.
async fn load(addr: SocketAddr, clients: usize, length: Duration) -> Vec<Sample> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let begin = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let client = client.clone();
            let samples = samples.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while begin.elapsed() < length {
                    let started = Instant::now();
                    let request = Request::get(format!("http://{addr}/work"))
                        .body(Body::empty())
                        .unwrap();
                    let response = client.request(request).await.unwrap();
                    let status = response.status().as_u16();
                    response.into_body().collect().await.unwrap();
                    mine.push(Sample {
                        at: started - begin,
                        took: started.elapsed(),
                        status,
                    });
                    if status == 503 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                samples.lock().await.extend(mine);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(samples).unwrap().into_inner()
}

fn p99(samples: impl Iterator<Item = Duration>) -> Duration {
    let mut all: Vec<_> = samples.collect();
    assert!(!all.is_empty());
    all.sort();
    all[(all.len() * 99).div_ceil(100) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adaptive_limit_keeps_admitted_requests_fast_under_a_saturating_database() {
    // Unloaded: one client.
    let idle = load(
        start(ConcurrencyLimitLayer::off()).await,
        1,
        Duration::from_secs(1),
    )
    .await;
    let idle_p99 = p99(idle.iter().map(|s| s.took));

    // Adaptive, with the limit sampled every 100 ms.
    let layer = ConcurrencyLimitLayer::adaptive();
    let addr = start(layer.clone()).await;
    let trace = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (layer, trace) = (layer.clone(), trace.clone());
        tokio::spawn(async move {
            let begin = Instant::now();
            loop {
                trace
                    .lock()
                    .await
                    .push((begin.elapsed(), layer.limit().unwrap()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let run = load(addr, CLIENTS, Duration::from_secs(14)).await;
    sampler.abort();
    let trace = trace.lock().await.clone();
    let within = |limit: usize| (K / 2..=2 * K).contains(&limit);
    // Settled: from this sample on, the limit stays within 2x of K.
    let settled = trace
        .iter()
        .rposition(|&(_, limit)| !within(limit))
        .map_or(Duration::ZERO, |i| {
            trace.get(i + 1).map_or(Duration::MAX, |s| s.0)
        });
    let after: Vec<_> = run
        .iter()
        .filter(|s| s.at >= settled && s.status == 200)
        .collect();
    let shed = run.iter().filter(|s| s.status == 503).count();
    let limits: Vec<_> = trace.iter().map(|&(_, l)| l).collect();

    // No limit.
    let unlimited = load(
        start(ConcurrencyLimitLayer::off()).await,
        CLIENTS,
        Duration::from_secs(4),
    )
    .await;
    let unlimited_p99 = p99(unlimited.iter().map(|s| s.took));

    let admitted_p99 = if after.is_empty() {
        Duration::MAX
    } else {
        p99(after.iter().map(|s| s.took))
    };
    eprintln!(
        "K = {K}, {CLIENTS} clients, query {} ms (x10 past K)\n\
         unloaded p99: {:.1} ms ({} requests)\n\
         adaptive: settled within [{}, {}] after {:.1} s; admitted p99 after that {:.1} ms \
         ({:.1}x unloaded, {} requests); {} shed of {}; limit min {} max {} last {}\n\
         no limit: p99 {:.1} ms ({:.1}x unloaded, {} requests)",
        BASE.as_millis(),
        ms(idle_p99),
        idle.len(),
        K / 2,
        2 * K,
        settled.as_secs_f64(),
        ms(admitted_p99),
        ms(admitted_p99) / ms(idle_p99),
        after.len(),
        shed,
        run.len(),
        limits.iter().min().unwrap(),
        limits.iter().max().unwrap(),
        limits.last().unwrap(),
        ms(unlimited_p99),
        ms(unlimited_p99) / ms(idle_p99),
        unlimited.len(),
    );
    assert!(
        settled < Duration::from_secs(10),
        "never settled: {limits:?}"
    );
    assert!(
        admitted_p99 <= idle_p99 * 3,
        "admitted p99 {admitted_p99:?} against {idle_p99:?} unloaded"
    );
    assert!(
        unlimited_p99 > idle_p99 * 10,
        "unlimited p99 {unlimited_p99:?} against {idle_p99:?} unloaded"
    );
}
