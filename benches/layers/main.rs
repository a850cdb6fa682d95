//! Criterion benchmarks: each tower-ops layer beside a bare service and its peer.

mod limits;

use criterion::{criterion_group, criterion_main};

criterion_group!(benches, limits::bench);
criterion_main!(benches);
