//! The access-log writer thread: drains the queue in batches, writes, flushes, reopens on request.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::time::Duration;

use tracing::{error, info};

use super::{AccessLogConfig, Line, Msg, QUEUE, format};

enum Sink {
    Stdout(std::io::Stdout),
    File(BufWriter<File>),
}

impl Sink {
    fn open(path: &str) -> std::io::Result<Sink> {
        if path == "stdout" {
            return Ok(Sink::Stdout(std::io::stdout()));
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        Ok(Sink::File(BufWriter::with_capacity(64 * 1024, f)))
    }

    fn out(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(s) => s,
            Sink::File(f) => f,
        }
    }
}

/// The queue, the reopen flag, the thread of a started writer, and what
/// tells that it ended (its sender drops with the thread).
type Started = (
    SyncSender<Msg>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
    std::sync::mpsc::Receiver<()>,
);

/// Whether `path` is a FIFO (a log shipper reading a named pipe): opening
/// one for writing waits for a reader, so it is opened by the writer
/// thread, never by the reloader.
fn is_fifo(path: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// What `hotproxy check` can tell without creating anything: whether
/// [`spawn`] would open `path`. An existing file must open for appending
/// (opened, not written); a new one needs its directory. stdout and a FIFO
/// (opened by the writer thread) pass.
pub(super) fn preview(path: &str) -> Result<(), String> {
    let problem = |e: &dyn std::fmt::Display| format!("access_log.path {path}: {e}");
    if path == "stdout" || is_fifo(path) {
        return Ok(());
    }
    let p = std::path::Path::new(path);
    if p.exists() {
        return OpenOptions::new()
            .append(true)
            .open(p)
            .map(drop)
            .map_err(|e| problem(&e));
    }
    match p.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() => Err(problem(&format_args!(
            "its directory {} does not exist",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// Open the sink (an error here is a config error; a FIFO is opened by
/// the thread) and start the thread.
pub(super) fn spawn(config: AccessLogConfig, queued: Arc<AtomicUsize>) -> Result<Started, String> {
    let sink = if is_fifo(&config.path) {
        None
    } else {
        Some(
            Sink::open(&config.path)
                .map_err(|e| format!("access_log.path {}: {e}", config.path))?,
        )
    };
    let (tx, rx) = sync_channel(QUEUE);
    let reopen = Arc::new(AtomicBool::new(false));
    let flag = reopen.clone();
    let (ended, done) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || {
            let _ended = ended;
            run(config, sink, rx, flag, queued);
        })
        .map_err(|e| format!("access_log: cannot start the writer thread: {e}"))?;
    Ok((tx, reopen, thread, done))
}

fn run(
    config: AccessLogConfig,
    sink: Option<Sink>,
    rx: Receiver<Msg>,
    reopen: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
) {
    // A line taken off the queue no longer counts against QUEUE_BYTES.
    let taken = |line: &Line| queued.fetch_sub(line.large_bytes(), Ordering::Relaxed);
    let mut sink = match sink {
        Some(s) => s,
        None => {
            info!(path = %config.path, "access log is a FIFO: waiting for a reader");
            match Sink::open(&config.path) {
                Ok(s) => s,
                Err(e) => {
                    error!(path = %config.path, error = %e, "cannot open the access log");
                    // Count what cannot be written, until reconfigured.
                    while let Ok(msg) = rx.recv() {
                        if let Msg::Line(line) = msg {
                            taken(&line);
                            crate::metrics::METRICS.access_log_dropped.inc();
                        }
                    }
                    return;
                }
            }
        }
    };
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut busy = false;
    // Ends when the last sender drops (reconfigured or shutting down),
    // after everything queued has been written.
    loop {
        // Busy: sleep a tick and drain a batch. A request's `try_send`
        // only wakes a thread blocked in `recv`, so under load no line
        // costs a wake-up (a futex call and a context switch). Idle: block,
        // and the first line after a quiet spell is written at once.
        let first = if busy {
            std::thread::sleep(TICK);
            match rx.try_recv() {
                Ok(m) => Some(m),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.recv_timeout(IDLE_CHECK) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        if reopen.swap(false, Ordering::SeqCst) {
            let _ = sink.out().flush();
            match Sink::open(&config.path) {
                Ok(s) => {
                    sink = s;
                    info!(path = %config.path, "access log reopened");
                }
                // Keep writing to the old file rather than lose lines.
                Err(e) => error!(path = %config.path, error = %e, "cannot reopen the access log"),
            }
        }
        busy = first.is_some();
        let mut next = first;
        while let Some(msg) = next {
            if let Msg::Line(line) = msg {
                taken(&line);
                buf.clear();
                format::write(&mut buf, &line, config.format);
                buf.push(b'\n');
                if let Err(e) = sink.out().write_all(&buf) {
                    error!(path = %config.path, error = %e, "cannot write the access log");
                }
            }
            next = rx.try_recv().ok();
        }
        if busy {
            let _ = sink.out().flush();
        }
    }
    let _ = sink.out().flush();
}

/// How long a busy writer lets lines gather before writing a batch.
const TICK: Duration = Duration::from_millis(10);
/// How often an idle writer looks at the reopen flag.
const IDLE_CHECK: Duration = Duration::from_secs(1);
