//! `load_shed`: the concurrency limit when it is not reached, fixed and adaptive,
//! against the bare router. Each row minus `bare` is the layer's cost per
//! request: the count of requests in flight, the probe check and, for the
//! adaptive limit, two clock reads and the window's counters. The stack group's
//! `tower_ops_load_shed` row is the same layer inside the whole stack.

use criterion::Criterion;
use tower_ops::load_shed::ConcurrencyLimitLayer;

use crate::support::{app, bench_router, request, runtime};

pub fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("load_shed");
    bench_router(&mut group, &rt, "bare", &app(), request);
    bench_router(
        &mut group,
        &rt,
        "fixed",
        &app().layer(ConcurrencyLimitLayer::fixed(1_000_000)),
        request,
    );
    bench_router(
        &mut group,
        &rt,
        "adaptive",
        &app().layer(ConcurrencyLimitLayer::adaptive()),
        request,
    );
    group.finish();
}
