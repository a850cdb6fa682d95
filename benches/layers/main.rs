//! Criterion benchmarks: one module per layer, peers side by side.

// Every module exposes `pub fn bench` by convention; the harness is its only user.
#![allow(unreachable_pub)]

mod redact;

criterion::criterion_group!(benches, redact::bench);
criterion::criterion_main!(benches);
