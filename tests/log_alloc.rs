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
    let (writer, guard) = LogWriter::builder()
        .batch_bytes(16 << 10)
        .writer(std::io::sink());
    let mut line = vec![b'x'; 299];
    line.push(b'\n');
    // Warm-up: both batch buffers reach their working size.
    for _ in 0..LINES {
        (&writer).write_all(&line).unwrap();
    }
    writer.flush();

    let region = Region::new(GLOBAL);
    for _ in 0..LINES {
        (&writer).write_all(&line).unwrap();
    }
    writer.flush();
    let writer_only = region.change();
    assert!(
        writer_only.allocations < 10,
        "{} allocations for {LINES} lines through the writer",
        writer_only.allocations
    );

    // The formatter on top, as `init` sets it up.
    let subscriber = tracing_subscriber::registry().with(JsonLayer::new(writer.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let log = |i: usize| {
            tracing::info!(
                target: "tower_ops::request",
                method = "GET",
                path = "/users/42",
                status = 200u64,
                duration_ms = 0.25 + i as f64,
                "request completed"
            )
        };
        for i in 0..LINES {
            log(i);
        }
        writer.flush();
        let region = Region::new(GLOBAL);
        for i in 0..LINES {
            log(i);
        }
        writer.flush();
        let formatted = region.change();
        assert!(
            formatted.allocations < 10,
            "{} allocations for {LINES} formatted events",
            formatted.allocations
        );
    });
    drop(guard);
    assert_eq!(writer.dropped_lines(), 0);
}
