//! One criterion target: each module compares a bare service, our layer and the
//! peer's layer in one group.

use criterion::{Criterion, criterion_group, criterion_main};

#[cfg(feature = "rate-limit")]
mod rate_limit;

fn layers(c: &mut Criterion) {
    #[cfg(feature = "rate-limit")]
    rate_limit::bench(c);
    let _ = c;
}

criterion_group!(benches, layers);
criterion_main!(benches);
