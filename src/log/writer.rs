//! A batching log writer: lines are appended to a shared buffer, and one thread
//! writes whole batches.
//!
//! Per line the cost is a lock, a copy into the current batch and an unlock: no
//! allocation, no channel operation and no wake-up. The writer thread wakes when a
//! batch passes [`batch_bytes`](LogWriterBuilder::batch_bytes), on a short timer
//! ([`flush_interval`](LogWriterBuilder::flush_interval)), on
//! [`flush`](LogWriter::flush) and when the [`WriterGuard`] drops. It swaps the full
//! batch for an empty one and writes it with one `write` (more only when the
//! destination takes less than a whole batch), so a busy server makes a system call
//! per batch of hundreds of lines rather than one per line.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Builds a [`LogWriter`] and its [`WriterGuard`].
///
/// ```
/// use std::time::Duration;
/// use tower_ops::log::LogWriter;
///
/// let dir = std::env::temp_dir().join(format!("tower-ops-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let (writer, guard) = LogWriter::builder()
///     .flush_interval(Duration::from_millis(50))
///     .max_buffer_bytes(4 << 20)
///     .file(dir.join("app.log"))
///     .unwrap();
/// // A user's own fmt layer can write through it.
/// let subscriber = tracing_subscriber::fmt().json().with_writer(writer.clone()).finish();
/// tracing::subscriber::with_default(subscriber, || tracing::info!(user = 7, "hello"));
/// drop(guard); // writes what is left, then stops the thread
/// let text = std::fs::read_to_string(dir.join("app.log")).unwrap();
/// assert!(text.contains("hello"));
/// assert_eq!(writer.dropped_lines(), 0);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct LogWriterBuilder {
    max_buffer_bytes: usize,
    batch_bytes: usize,
    flush_interval: Duration,
    blocking: bool,
    thread_name: String,
}

impl Default for LogWriterBuilder {
    fn default() -> Self {
        Self {
            max_buffer_bytes: 16 << 20,
            batch_bytes: 64 << 10,
            flush_interval: Duration::from_millis(100),
            blocking: false,
            thread_name: "tower-ops-log".to_owned(),
        }
    }
}

impl LogWriterBuilder {
    /// Defaults: 16 MiB of buffered lines, batches of 64 KiB, written at least every
    /// 100 ms, lines dropped (and counted) when the buffer is full.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most bytes of lines waiting to be written (default 16 MiB). Memory is
    /// bounded by twice this: the batch being filled and the one being written.
    /// Both keep their capacity, so a warm writer allocates nothing.
    pub fn max_buffer_bytes(mut self, bytes: usize) -> Self {
        self.max_buffer_bytes = bytes.max(1);
        self
    }

    /// The size at which a batch wakes the writer thread (default 64 KiB).
    pub fn batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes.max(1);
        self
    }

    /// The longest a line waits on an idle server (default 100 ms).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// `true` makes a full buffer block the logging thread until the writer has
    /// caught up; by default (`false`) such lines are dropped and counted, so that a
    /// slow destination never slows requests down.
    pub fn blocking(mut self, blocking: bool) -> Self {
        self.blocking = blocking;
        self
    }

    /// The name of the writer thread (default `tower-ops-log`).
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// Writes to the process's standard output.
    pub fn stdout(self) -> (LogWriter, WriterGuard) {
        self.writer(io::stdout())
    }

    /// Writes to the process's standard error.
    pub fn stderr(self) -> (LogWriter, WriterGuard) {
        self.writer(io::stderr())
    }

    /// Appends to the file at `path`, creating it if needed.
    pub fn file(self, path: impl AsRef<Path>) -> io::Result<(LogWriter, WriterGuard)> {
        let file: File = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(self.writer(file))
    }

    /// Writes to any destination.
    ///
    /// # Panics
    ///
    /// When the operating system refuses to start the writer thread.
    pub fn writer<W: Write + Send + 'static>(self, destination: W) -> (LogWriter, WriterGuard) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                batch: Vec::new(),
                woken: false,
                closed: false,
                flush_requested: 0,
                flushed: 0,
                destination: None,
            }),
            wake: Condvar::new(),
            written: Condvar::new(),
            max_buffer_bytes: self.max_buffer_bytes,
            batch_bytes: self.batch_bytes.min(self.max_buffer_bytes),
            blocking: self.blocking,
            dropped_lines: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
        });
        let thread_shared = shared.clone();
        let interval = self.flush_interval;
        let destination: Box<dyn Write + Send> = Box::new(destination);
        let thread = std::thread::Builder::new()
            .name(self.thread_name)
            .spawn(move || run(&thread_shared, destination, interval))
            .expect("cannot start the log writer thread");
        let writer = LogWriter { shared };
        let guard = WriterGuard {
            writer: writer.clone(),
            thread: Some(thread),
        };
        (writer, guard)
    }
}

/// A [`MakeWriter`] whose lines are written in batches by a background thread.
///
/// Each `write` call is one line, appended whole to the current batch: lines are
/// never split or interleaved, whatever the number of threads logging.
/// tracing-subscriber's `fmt` layer and [`JsonLayer`](super::JsonLayer) write each
/// event with a single `write_all`, so either can sit on top.
///
/// Made by [`LogWriter::builder`]; the [`WriterGuard`] keeps the thread alive.
/// After the guard is dropped, lines are written synchronously, so that events
/// emitted while the process winds down (requests cut when the runtime stops) still
/// reach the destination.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

impl LogWriter {
    /// A builder with the defaults.
    pub fn builder() -> LogWriterBuilder {
        LogWriterBuilder::new()
    }

    /// Lines dropped so far: the buffer was full, the line was larger than the
    /// whole buffer, or the destination failed to take its batch.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped_lines.load(Ordering::Relaxed)
    }

    /// Failed writes to the destination so far (a closed pipe, a full disk). They
    /// are counted, never raised.
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Ordering::Relaxed)
    }

    /// Writes every line appended so far, waiting at most one second.
    pub fn flush(&self) {
        self.flush_timeout(Duration::from_secs(1));
    }

    /// Writes every line appended so far, waiting at most `timeout`; returns
    /// whether they were written in time.
    pub fn flush_timeout(&self, timeout: Duration) -> bool {
        let shared = &*self.shared;
        let mut state = shared.lock();
        if let Some(destination) = state.destination.as_mut() {
            let _ = destination.flush();
            return true;
        }
        state.flush_requested += 1;
        let wanted = state.flush_requested;
        shared.wake.notify_one();
        let (_state, waited) = shared
            .written
            .wait_timeout_while(state, timeout, |state| {
                state.flushed < wanted && state.destination.is_none()
            })
            .unwrap_or_else(PoisonError::into_inner);
        !waited.timed_out()
    }

    fn append(&self, line: &[u8]) {
        let shared = &*self.shared;
        if line.len() > shared.max_buffer_bytes {
            shared.dropped_lines.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut state = shared.lock();
        while state.batch.len() + line.len() > shared.max_buffer_bytes {
            if state.destination.is_some() {
                break;
            }
            if !state.woken {
                state.woken = true;
                shared.wake.notify_one();
            }
            if !shared.blocking {
                shared.dropped_lines.fetch_add(1, Ordering::Relaxed);
                return;
            }
            state = shared
                .written
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.destination.is_some() {
            // The guard is gone and the thread with it.
            return shared.write_in_place(state, line);
        }
        let needed = state.batch.len() + line.len();
        if needed > state.batch.capacity() {
            // Doubling, but never past the bound: the two batches' memory stays
            // within twice `max_buffer_bytes`, and is kept from batch to batch.
            let grown = (state.batch.capacity() * 2)
                .max(4096)
                .min(shared.max_buffer_bytes)
                .max(needed);
            let len = state.batch.len();
            state.batch.reserve_exact(grown - len);
        }
        state.batch.extend_from_slice(line);
        if state.batch.len() >= shared.batch_bytes && !state.woken {
            state.woken = true;
            drop(state);
            shared.wake.notify_one();
        }
    }
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("dropped_lines", &self.dropped_lines())
            .field("write_errors", &self.write_errors())
            .finish()
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Write::write(&mut &*self, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Write::flush(&mut &*self)
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = &'a LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Write for &LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Per-line flushes (a `LineWriter` habit) would defeat the batching; the
        // batch is written on the writer thread's schedule, or by `LogWriter::flush`.
        Ok(())
    }
}

/// Keeps the writer thread running; dropping it writes the lines still buffered,
/// then stops the thread.
#[must_use = "dropping the guard stops the log writer thread"]
pub struct WriterGuard {
    writer: LogWriter,
    thread: Option<JoinHandle<()>>,
}

impl WriterGuard {
    /// The writer this guard keeps running.
    pub fn writer(&self) -> &LogWriter {
        &self.writer
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        let shared = &*self.writer.shared;
        shared.lock().closed = true;
        shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for WriterGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterGuard")
            .field("writer", &self.writer)
            .finish()
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread.
    wake: Condvar,
    /// Tells waiting appenders and flushers that a batch was taken.
    written: Condvar,
    max_buffer_bytes: usize,
    batch_bytes: usize,
    blocking: bool,
    dropped_lines: AtomicU64,
    write_errors: AtomicU64,
}

struct State {
    /// The lines waiting to be written.
    batch: Vec<u8>,
    /// The writer thread was notified and has not taken the batch yet.
    woken: bool,
    /// The guard was dropped: the thread writes what is left, then stops.
    closed: bool,
    flush_requested: u64,
    flushed: u64,
    /// The destination, handed back by the thread when it stops; from then on
    /// lines are written in place.
    destination: Option<Box<dyn Write + Send>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the batch consistent (appends are
        // single `extend_from_slice` calls), so the data stays usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_in_place(&self, mut state: MutexGuard<'_, State>, line: &[u8]) {
        match state.destination.as_mut() {
            Some(destination) => {
                if write_batch(destination, line).is_err() {
                    self.write_errors.fetch_add(1, Ordering::Relaxed);
                    self.dropped_lines.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.dropped_lines.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Accounts for a batch the destination did not take.
    fn lost(&self, batch: &[u8]) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        let lines = batch.iter().filter(|&&b| b == b'\n').count().max(1);
        self.dropped_lines
            .fetch_add(lines as u64, Ordering::Relaxed);
    }
}

fn write_batch(destination: &mut Box<dyn Write + Send>, batch: &[u8]) -> io::Result<()> {
    // A destination that panics (a user's `Write`) is a failed write, not a dead
    // writer thread.
    match catch_unwind(AssertUnwindSafe(|| {
        destination.write_all(batch)?;
        destination.flush()
    })) {
        Ok(result) => result,
        Err(_) => Err(io::Error::other("the log destination panicked")),
    }
}

/// The writer thread: waits for a reason to write (a full batch, a flush, the
/// close, or the timer with lines waiting), swaps the batch for the spare one and
/// writes it outside the lock.
fn run(shared: &Shared, mut destination: Box<dyn Write + Send>, interval: Duration) {
    let mut spare: Vec<u8> = Vec::new();
    let mut state = shared.lock();
    let mut deadline = Instant::now() + interval;
    loop {
        while !state.closed
            && state.flushed == state.flush_requested
            && state.batch.len() < shared.batch_bytes
        {
            let now = Instant::now();
            if now >= deadline {
                if !state.batch.is_empty() {
                    break;
                }
                deadline = now + interval;
            }
            state = shared
                .wake
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        std::mem::swap(&mut state.batch, &mut spare);
        state.woken = false;
        let flush_target = state.flush_requested;
        drop(state);
        // Appenders blocked on a full buffer can go on.
        shared.written.notify_all();
        if !spare.is_empty() && write_batch(&mut destination, &spare).is_err() {
            shared.lost(&spare);
        }
        spare.clear();
        deadline = Instant::now() + interval;
        state = shared.lock();
        state.flushed = flush_target;
        if state.closed && state.batch.is_empty() {
            // From now on appenders write in place.
            state.destination = Some(destination);
            drop(state);
            shared.written.notify_all();
            return;
        }
        shared.written.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// A destination keeping what it was given, optionally slow or failing.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<AtomicU64>,
        delay: Duration,
        fail: Arc<AtomicBool>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            std::thread::sleep(self.delay);
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
        }
    }

    fn line(thread: usize, i: usize) -> String {
        // Lines of varied lengths, so that batches end at arbitrary places.
        format!(
            "{{\"t\":{thread},\"i\":{i},\"pad\":\"{}\"}}\n",
            "x".repeat(i % 97)
        )
    }

    fn log_from_threads(writer: &LogWriter, threads: usize, per_thread: usize) {
        std::thread::scope(|scope| {
            for t in 0..threads {
                let writer = writer.clone();
                scope.spawn(move || {
                    for i in 0..per_thread {
                        let mut w = writer.make_writer();
                        w.write_all(line(t, i).as_bytes()).unwrap();
                    }
                });
            }
        });
    }

    #[test]
    fn blocking_mode_delivers_every_line_whole() {
        let sink = Sink::default();
        let (writer, guard) = LogWriter::builder()
            .blocking(true)
            .max_buffer_bytes(16 << 10)
            .batch_bytes(4 << 10)
            .writer(sink.clone());
        log_from_threads(&writer, 8, 12_500);
        drop(guard);
        let text = sink.text();
        let mut seen = HashSet::new();
        for l in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let (t, i) = (
                v["t"].as_u64().unwrap() as usize,
                v["i"].as_u64().unwrap() as usize,
            );
            assert_eq!(format!("{l}\n"), line(t, i), "a line was altered");
            assert!(seen.insert((t, i)), "a line arrived twice");
        }
        assert_eq!(seen.len(), 100_000);
        assert_eq!(writer.dropped_lines(), 0);
        // Batched: far fewer writes than lines.
        assert!(sink.writes.load(Ordering::SeqCst) < 10_000);
    }

    #[test]
    fn lossy_mode_counts_every_dropped_line() {
        let sink = Sink {
            delay: Duration::from_millis(2),
            ..Sink::default()
        };
        let (writer, guard) = LogWriter::builder()
            .max_buffer_bytes(8 << 10)
            .batch_bytes(1 << 10)
            .writer(sink.clone());
        log_from_threads(&writer, 8, 12_500);
        drop(guard);
        let arrived = sink.text().lines().count() as u64;
        assert!(writer.dropped_lines() > 0, "the slow sink should overflow");
        assert_eq!(arrived + writer.dropped_lines(), 100_000);
    }

    #[test]
    fn an_idle_line_is_written_by_the_timer() {
        let sink = Sink::default();
        let (writer, _guard) = LogWriter::builder()
            .flush_interval(Duration::from_millis(20))
            .writer(sink.clone());
        (&writer).write_all(b"one\n").unwrap();
        let start = Instant::now();
        while sink.text().is_empty() {
            assert!(start.elapsed() < Duration::from_secs(5), "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.text(), "one\n");
    }

    #[test]
    fn flush_writes_at_once_and_lines_after_the_guard_are_kept() {
        let sink = Sink::default();
        let (writer, guard) = LogWriter::builder()
            .flush_interval(Duration::from_secs(3600))
            .writer(sink.clone());
        (&writer).write_all(b"a\n").unwrap();
        // No deadline at all is a valid wait, not an overflow.
        assert!(writer.flush_timeout(Duration::MAX));
        assert_eq!(sink.text(), "a\n");
        (&writer).write_all(b"b\n").unwrap();
        drop(guard);
        assert_eq!(sink.text(), "a\nb\n");
        (&writer).write_all(b"c\n").unwrap();
        writer.flush();
        assert_eq!(
            sink.text(),
            "a\nb\nc\n",
            "written in place once the thread is gone"
        );
        assert_eq!(writer.dropped_lines(), 0);
    }

    #[test]
    fn failing_destination_is_counted_and_never_blocks() {
        let sink = Sink::default();
        sink.fail.store(true, Ordering::SeqCst);
        let (writer, guard) = LogWriter::builder()
            .blocking(true)
            .max_buffer_bytes(4 << 10)
            .batch_bytes(1 << 10)
            .writer(sink);
        log_from_threads(&writer, 2, 5_000);
        drop(guard);
        assert!(writer.write_errors() > 0);
        assert_eq!(
            writer.dropped_lines(),
            10_000,
            "every line is accounted for"
        );
    }

    #[test]
    fn a_panicking_destination_does_not_kill_the_writer() {
        struct Bomb(Arc<Mutex<Vec<u8>>>, bool);
        impl Write for Bomb {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if std::mem::replace(&mut self.1, false) {
                    panic!("the destination blew up");
                }
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let kept = Arc::new(Mutex::new(Vec::new()));
        let (writer, guard) = LogWriter::builder().writer(Bomb(kept.clone(), true));
        (&writer).write_all(b"lost\n").unwrap();
        writer.flush();
        (&writer).write_all(b"kept\n").unwrap();
        drop(guard);
        assert_eq!(writer.write_errors(), 1);
        assert_eq!(writer.dropped_lines(), 1);
        assert_eq!(&*kept.lock().unwrap(), b"kept\n");
    }

    #[test]
    fn a_closed_pipe_is_counted_not_fatal() {
        let (reader, pipe) = io::pipe().unwrap();
        drop(reader);
        let (writer, guard) = LogWriter::builder().writer(pipe);
        for _ in 0..1000 {
            (&writer).write_all(b"nobody reads this\n").unwrap();
        }
        writer.flush();
        (&writer).write_all(b"nor this\n").unwrap();
        drop(guard);
        assert!(writer.write_errors() >= 1);
        assert_eq!(writer.dropped_lines(), 1001);
    }

    #[test]
    fn a_line_larger_than_the_buffer_is_dropped() {
        let sink = Sink::default();
        let (writer, guard) = LogWriter::builder()
            .max_buffer_bytes(64)
            .blocking(true)
            .writer(sink.clone());
        (&writer).write_all(&[b'x'; 65]).unwrap();
        (&writer).write_all(b"small\n").unwrap();
        drop(guard);
        assert_eq!(writer.dropped_lines(), 1);
        assert_eq!(sink.text(), "small\n");
    }
}
