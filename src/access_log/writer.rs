//! The access-log writer thread: drains the queue in batches, writes, flushes, reopens on request.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use tracing::{error, info};

use super::{AccessLogConfig, Msg, QUEUE, format};

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

/// The queue, the reopen flag and the thread of a started writer.
type Started = (
    SyncSender<Msg>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
);

/// Whether `path` is a FIFO (a log shipper reading a named pipe): opening
/// one for writing waits for a reader, so it is opened by the writer
/// thread, never by the reloader.
fn is_fifo(path: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// Open the sink (an error here is a config error; a FIFO is opened by
/// the thread) and start the thread.
pub(super) fn spawn(config: AccessLogConfig) -> Result<Started, String> {
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
    let thread = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || run(config, sink, rx, flag))
        .map_err(|e| format!("access_log: cannot start the writer thread: {e}"))?;
    Ok((tx, reopen, thread))
}

fn run(config: AccessLogConfig, sink: Option<Sink>, rx: Receiver<Msg>, reopen: Arc<AtomicBool>) {
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
                        if matches!(msg, Msg::Line(_)) {
                            crate::metrics::METRICS.access_log_dropped.inc();
                        }
                    }
                    return;
                }
            }
        }
    };
    let mut buf = String::with_capacity(1024);
    // Ends when the last sender drops (reconfigured or shutting down),
    // after everything queued has been written.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next {
            if reopen.swap(false, Ordering::SeqCst) {
                let _ = sink.out().flush();
                match Sink::open(&config.path) {
                    Ok(s) => {
                        sink = s;
                        info!(path = %config.path, "access log reopened");
                    }
                    // Keep writing to the old file rather than lose lines.
                    Err(e) => {
                        error!(path = %config.path, error = %e, "cannot reopen the access log")
                    }
                }
            }
            if let Msg::Line(line) = msg {
                buf.clear();
                format::write(&mut buf, &line, config.format);
                buf.push('\n');
                if let Err(e) = sink.out().write_all(buf.as_bytes()) {
                    error!(path = %config.path, error = %e, "cannot write the access log");
                }
            }
            next = rx.try_recv().ok();
        }
        let _ = sink.out().flush();
    }
    let _ = sink.out().flush();
}
