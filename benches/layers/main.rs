//! Per-layer overhead of tower-ops against the peer crates, side by side.
//!
//! Run with `cargo bench --bench layers`; filter with a group name, for example
//! `cargo bench --bench layers -- request_id`.

// Bench modules are private to this binary; `pub` only connects them to main.
#![allow(missing_docs, unreachable_pub)]

mod health;
mod log;
mod otel;
mod redact;
mod request_id;
mod support;

criterion::criterion_group!(
    benches,
    health::bench,
    log::bench,
    otel::bench,
    redact::bench,
    request_id::bench,
);
criterion::criterion_main!(benches);
