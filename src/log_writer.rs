//! The diagnostic log's stderr writer: a bounded queue drained by one thread, lossy when stderr stalls.
//!
//! tracing's own stderr writer makes every log line a write(2) on the
//! thread that logs. With a stderr pipe whose reader stalled (a stuck
//! docker or journald pipe) the 64 KiB pipe filled after a few hundred
//! failing requests' WARNs, and then every runtime worker blocked in its
//! next log line: healthy routes and admin `/healthz` stopped answering,
//! and SIGTERM's drain blocked on its own info line. Lines are queued
//! instead; a full queue drops the line and counts it in
//! `hotproxy_log_lines_dropped_total`, as the access log does.

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Lines queued before further ones are dropped: plenty for a burst of a
/// normal run, small next to memory.
const CAPACITY: usize = 4096;

/// How long [`flush`] waits at exit for a stalled stderr: a stuck reader
/// must not keep the process from exiting.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

struct Queue {
    tx: SyncSender<Vec<u8>>,
    /// No writer thread could be started: lines are written in place.
    direct: bool,
    /// Lines queued, and lines the writer thread has written (or failed
    /// to): [`flush`] waits for the second to reach the first.
    counts: Mutex<(u64, u64)>,
    written: Condvar,
}

static QUEUE: OnceLock<Queue> = OnceLock::new();

fn queue() -> &'static Queue {
    QUEUE.get_or_init(|| {
        let (tx, rx) = sync_channel(CAPACITY);
        // Without the thread nothing would be written: then write directly.
        let direct = std::thread::Builder::new()
            .name("hotproxy-log".into())
            .spawn(move || drain(rx))
            .is_err();
        Queue {
            tx,
            direct,
            counts: Mutex::new((0, 0)),
            written: Condvar::new(),
        }
    })
}

fn drain(rx: Receiver<Vec<u8>>) {
    while let Ok(line) = rx.recv() {
        // Write errors (a closed stderr) are ignored, as tracing's writer
        // did with `log_internal_errors(false)`.
        let _ = std::io::stderr().write_all(&line);
        let Some(q) = QUEUE.get() else { continue };
        let mut counts = q.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.1 += 1;
        q.written.notify_all();
    }
}

fn push(line: &[u8]) {
    let q = queue();
    if q.direct {
        let _ = std::io::stderr().write_all(line);
        return;
    }
    // Counted before the send so the writer's count never passes it.
    let mut counts = q.counts.lock().unwrap_or_else(|e| e.into_inner());
    match q.tx.try_send(line.to_vec()) {
        Ok(()) => counts.0 += 1,
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            drop(counts);
            crate::metrics::METRICS.log_lines_dropped.inc();
        }
    }
}

/// Wait (up to a bound) until every queued line is written to stderr: at
/// the end of `main`, before `process::exit`, and before a command writes
/// to stderr itself, so its lines come after the log's.
pub fn flush() {
    let Some(q) = QUEUE.get() else { return };
    let deadline = Instant::now() + FLUSH_WAIT;
    let mut counts = q.counts.lock().unwrap_or_else(|e| e.into_inner());
    let target = counts.0;
    while counts.1 < target {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        counts = match q.written.wait_timeout(counts, left) {
            Ok((c, _)) => c,
            Err(e) => e.into_inner().0,
        };
    }
}

/// tracing's writer for the diagnostic log: each event's formatted line
/// arrives in one `write_all`, queued whole.
pub struct QueuedStderr;

impl Write for QueuedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        push(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for QueuedStderr {
    type Writer = QueuedStderr;
    fn make_writer(&'a self) -> Self::Writer {
        QueuedStderr
    }
}
