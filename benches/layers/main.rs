//! Per-layer overhead of tower-ops against the peer crates, side by side.
//!
//! Run with `cargo bench --bench layers`; filter with a group name, for example
//! `cargo bench --bench layers -- request_id`.

// Bench modules are private to this binary; `pub` only connects them to main.
#![allow(missing_docs, unreachable_pub)]

mod error;
mod health;
mod limits;
mod load_shed;
mod log;
mod log_filter;
mod metrics;
mod otel;
mod rate_limit;
mod redact;
mod request_id;
mod stack;
mod stacks;
mod support;
mod writer;

criterion::criterion_group!(
    benches,
    error::bench,
    health::bench,
    limits::bench,
    load_shed::bench,
    log::bench,
    log_filter::bench,
    metrics::bench,
    otel::bench,
    rate_limit::bench,
    redact::bench,
    request_id::bench,
    stack::bench,
    writer::bench,
);
criterion::criterion_main!(benches);
