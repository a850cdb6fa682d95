//! Criterion benches: one module per layer, peers side by side.
#![allow(missing_docs, unreachable_pub)]

mod health;

criterion::criterion_group!(benches, health::bench);
criterion::criterion_main!(benches);
