//! `writer`: log lines of 300 bytes into a real file from 1, 2 and 8 threads, in
//! lines per second: tower-ops' batching `LogWriter`, tracing-appender's
//! `non_blocking` (the writer behind most tracing set-ups) and a
//! `Mutex<BufWriter<File>>` locked for each line.
//!
//! Each iteration writes the lines and then waits until every line is in the file,
//! so the rate is what the writer sustains, not what its buffer absorbs. Both
//! background writers block rather than drop when full, so no line is lost.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use tower_ops::log::LogWriter;
use tracing_subscriber::fmt::MakeWriter;

/// A line of the usual request log size: 300 bytes, newline included.
fn line() -> Vec<u8> {
    let mut line = br#"{"timestamp":"2026-12-02T10:00:00.123456Z","level":"INFO","message":"request completed","target":"tower_ops::request","method":"GET","route":"/users/{id}","path":"/users/42","status":200,"request_id":"0192f5a4-7b1c-7c3e-9a1b-2f4e5d6c7b8a","user_agent":""#.to_vec();
    line.resize(297, b'x');
    line.extend_from_slice(b"\"}\n");
    assert_eq!(line.len(), 300);
    line
}

/// Writes `total` lines split over `threads` threads through `make`, and
/// returns the elapsed time once `finish` has run.
fn run<M>(threads: usize, total: u64, make: &M, finish: impl FnOnce()) -> Duration
where
    M: for<'a> MakeWriter<'a> + Sync,
{
    let line = line();
    let per_thread = total.div_ceil(threads as u64);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..per_thread {
                    let _ = make.make_writer().write_all(&line);
                }
            });
        }
    });
    finish();
    start.elapsed()
}

fn file(dir: &Path, name: &str) -> File {
    File::create(dir.join(name)).unwrap()
}

pub fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("tower-ops-writer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut group = c.benchmark_group("writer");
    group.throughput(Throughput::Elements(1));
    for threads in [1usize, 2, 8] {
        group.bench_function(BenchmarkId::new("tower_ops", threads), |b| {
            b.iter_custom(|iters| {
                let (writer, guard) = LogWriter::builder()
                    .blocking(true)
                    .writer(file(&dir, "ours.log"));
                run(threads, iters, &writer, || drop(guard))
            })
        });
        group.bench_function(BenchmarkId::new("tracing_appender", threads), |b| {
            b.iter_custom(|iters| {
                let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                    .lossy(false)
                    .finish(file(&dir, "appender.log"));
                run(threads, iters, &writer, || drop(guard))
            })
        });
        group.bench_function(BenchmarkId::new("locked_bufwriter", threads), |b| {
            b.iter_custom(|iters| {
                // tracing-subscriber's `MakeWriter` for a `Mutex`: locked per line.
                let locked = Mutex::new(BufWriter::new(file(&dir, "locked.log")));
                run(threads, iters, &locked, || {
                    locked.lock().unwrap().flush().unwrap()
                })
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}
