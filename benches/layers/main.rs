//! Per-layer overhead of tower-ops against the peer crates, side by side.
//!
//! Run with `cargo bench --bench layers`; filter with a group name, for example
//! `cargo bench --bench layers -- request_id`.

// Bench modules are private to this binary; `pub` only connects them to main.
#![allow(missing_docs, unreachable_pub)]

mod health;
mod log;
#[cfg(all(feature = "metrics", feature = "axum"))]
mod metrics;
mod request_id;
mod support;

fn metrics_bench(_c: &mut criterion::Criterion) {
    #[cfg(all(feature = "metrics", feature = "axum"))]
    metrics::bench(_c);
}

criterion::criterion_group!(
    benches,
    request_id::bench,
    log::bench,
    health::bench,
    metrics_bench
);
criterion::criterion_main!(benches);
