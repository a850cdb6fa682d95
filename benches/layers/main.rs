//! Every layer against its bare service and its peer, side by side.

use criterion::{criterion_group, criterion_main};

mod error;

criterion_group!(benches, error::bench);
criterion_main!(benches);
