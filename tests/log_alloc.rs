//! The log path allocates nothing per line once warm: the batching writer alone,
//! and `JsonLayer` formatting events on top of it. A counting global allocator
//! sees every allocation of the process, so everything runs in one test.

use std::alloc::System;
use std::io::Write;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower_ops::log::{JsonLayer, LogWriter};
use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const LINES: usize = 100_000;

#[test]
fn no_heap_allocation_per_line() {
    // Blocking when full: on a loaded machine the writer thread can fall behind
    // 100,000 lines, and a dropped line is not what this test is about.
    let (writer, guard) = LogWriter::builder()
        .batch_bytes(16 << 10)
        .blocking(true)
        .writer(std::io::sink());
    let mut line = vec![b'x'; 299];
    line.push(b'\n');
    assert_warm_path_allocates_nothing("lines through the writer", &writer, |_| {
        (&writer).write_all(&line).unwrap();
    });

    // The formatter on top, as `init` sets it up.
    let subscriber = tracing_subscriber::registry().with(JsonLayer::new(writer.clone()));
    tracing::subscriber::with_default(subscriber, || {
        assert_warm_path_allocates_nothing("formatted events", &writer, |i| {
            tracing::info!(
                target: "tower_ops::request",
                method = "GET",
                path = "/users/42",
                status = 200u64,
                duration_ms = 0.25 + i as f64,
                "request completed"
            )
        });
    });
    drop(guard);
    assert_eq!(writer.dropped_lines(), 0);
}

/// Runs `log` for `LINES` lines to warm every buffer up (both batches reach their
/// working size), then `LINES` more, and asserts that the second round allocated
/// nothing per line.
fn assert_warm_path_allocates_nothing(what: &str, writer: &LogWriter, log: impl Fn(usize)) {
    (0..LINES).for_each(&log);
    writer.flush();
    let region = Region::new(GLOBAL);
    (0..LINES).for_each(&log);
    writer.flush();
    let allocations = region.change().allocations;
    assert!(
        allocations < 10,
        "{allocations} allocations for {LINES} {what}"
    );
}
