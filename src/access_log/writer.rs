//! The access-log writer thread: drains the queue in batches, writes, flushes, reopens on request.
//!
//! A line the writer cannot write (a full disk, a FIFO whose reader left)
//! is dropped and counted, as one the queue had no room for; the error is
//! logged at once, then at most every [`REPORT_EVERY`] with the lines lost
//! since; so is a FIFO's open that fails for another reason than having
//! no reader (no permission), tried again as one without a reader. A FIFO
//! whose reader left is closed and opened again, at most every [`RETRY`],
//! once a reader is there (a log shipper that restarts, and
//! perhaps makes its pipe again, gets lines without a SIGUSR1). A reopen
//! request ([`ROTATIONS`]) is seen between any two lines, not only when the
//! queue is empty, by every writer, also one a reload has opened and not yet
//! started.
//! No open waits for a FIFO reader: a writer replaced by a reload, or shut
//! down, is told when to give up ([`Stop`]) and drops what it could not
//! write by then; a writer of a path writes only once every earlier writer
//! of that path still draining has ended ([`Ended`]), so their batches never
//! interleave in a pipe, but opens a FIFO before, so its reader sees no end
//! of file in between.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::{AccessLogConfig, Line, LogFormat, Msg, QUEUE, STDOUT, format};
use crate::metrics::METRICS;

/// Open `path` for appending (created 0640 if missing), or stdout. Lines
/// are written with one `write(2)` per batch, never through a `BufWriter`
/// (nor std's buffered stdout: fd 1 is duplicated): after a failed write
/// one keeps the bytes to write them later, and which lines were lost could
/// not be told.
fn open(path: &Path) -> std::io::Result<File> {
    if path == Path::new(STDOUT) {
        return std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map(File::from);
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Open the FIFO at `path` only if a reader has it open (else `ENXIO` at
/// once, where a plain open waits for one). The descriptor of that
/// non-blocking open is kept and made blocking (`fcntl`), so its writes
/// wait for a slow reader rather than fail with `EAGAIN`. A second,
/// blocking open would wait in `open(2)` for the next reader if this one
/// left in between: the writer stuck, SIGUSR1 unseen, lines queued late.
fn open_fifo_if_read(path: &Path) -> std::io::Result<File> {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let file = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let flags = fcntl_getfl(&file)?;
    fcntl_setfl(&file, flags - OFlags::NONBLOCK)?;
    Ok(file)
}

/// SIGUSR1s received. A writer notes the count before it opens its file and
/// reopens it when the count has moved on: a signal that came after a
/// reload opened the file, before the writer became the running one, is
/// not lost on it.
pub(super) static ROTATIONS: AtomicU64 = AtomicU64::new(0);

/// The queue, the stop deadline, the thread of a started writer, and what
/// tells that it ended.
type Started = (
    SyncSender<Msg>,
    Arc<Stop>,
    std::thread::JoinHandle<()>,
    Arc<Ended>,
);

/// Set when a writer thread has ended (its file closed: every line written,
/// or it gave up), even by a panic. A later writer of its path waits for
/// it before writing, and shutdown waits for it; any number may wait.
#[derive(Default)]
pub(super) struct Ended {
    ended: Mutex<bool>,
    changed: Condvar,
}

impl Ended {
    pub(super) fn is_set(&self) -> bool {
        *self.ended.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the writer has ended, waiting at most `limit` for it.
    pub(super) fn wait(&self, limit: Duration) -> bool {
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        let (ended, _) = self
            .changed
            .wait_timeout_while(ended, limit, |e| !*e)
            .unwrap_or_else(|e| e.into_inner());
        *ended
    }
}

/// Sets its [`Ended`] when dropped: last of the writer thread's locals.
struct SetOnDrop(Arc<Ended>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        *self.0.ended.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.0.changed.notify_all();
    }
}

/// When a writer that is no longer the running one (replaced by a reload,
/// or shut down) gives up: what it has not written by then is dropped and
/// counted. Unset while it is the running one.
#[derive(Default)]
pub(super) struct Stop(OnceLock<Instant>);

impl Stop {
    /// Give up at `deadline` (the first deadline set holds).
    pub(super) fn at(&self, deadline: Instant) {
        let _ = self.0.set(deadline);
    }

    fn due(&self) -> bool {
        self.0.get().is_some_and(|d| Instant::now() >= *d)
    }
}

/// Whether `path` is a FIFO (a log shipper reading a named pipe): opening
/// one for writing waits for a reader, so it is opened by the writer
/// thread, never by the reloader.
fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// `path` as messages and log lines show it: escaped, whole (SPEC §2).
pub(super) fn shown(path: &Path) -> String {
    crate::material::shown_path(path)
}

/// What `hotproxy check` can tell without creating anything: whether
/// [`spawn`] would open `path`. An existing file must open for appending
/// (opened, not written); a new one needs its directory; a FIFO must be
/// one this process may write ([`fifo_writable`]). stdout passes.
pub(super) fn preview(path: &Path) -> Result<(), String> {
    let problem = |e: &dyn std::fmt::Display| format!("access_log.path {}: {e}", shown(path));
    if path == Path::new(STDOUT) {
        return Ok(());
    }
    if is_fifo(path) {
        return fifo_writable(path).map_err(|e| problem(&e));
    }
    // `run`'s open(O_CREAT) follows a symlink to a file not made yet and
    // creates it where the link leads: its directory is the one asked
    // about, not the link's.
    let target = crate::fsutil::follow_links(path).map_err(|e| problem(&e))?;
    let p = target.as_path();
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
            crate::material::shown_path(dir)
        ))),
        // As `run`'s open says it: `Permission denied (os error 13)`.
        _ => crate::fsutil::creatable(p).map_err(|e| problem(&e)),
    }
}

/// Whether this process may open the FIFO at `path` for writing, once a
/// reader is there. A FIFO nobody may write (a shipper's pipe made 0600
/// by another user) was accepted, and every line dropped, the writer
/// retrying in vain: it is a path that cannot be opened, refused as a
/// file's would be. Asked, not opened: a probe's open and close would end
/// a waiting reader's read (`cat` would exit), and one kept open would
/// do so when a reload it was prepared for is refused.
fn fifo_writable(path: &Path) -> std::io::Result<()> {
    crate::fsutil::writable(path)
}

/// Open the sink (an error here is a config error; a FIFO is opened by
/// the thread, once [`fifo_writable`] allows it) and start the thread.
/// `after`: the earlier writers of the same path that may still be
/// writing (the one this one replaces, ones replaced or removed by earlier
/// reloads still draining); this one writes nothing before every one of them has ended. `go`: the thread starts
/// once it is sent, and ends at once, its file closed, if it is dropped
/// unsent (the reload that prepared it was refused).
pub(super) fn spawn(
    config: AccessLogConfig,
    queued: Arc<AtomicUsize>,
    after: Vec<Arc<Ended>>,
    go: std::sync::mpsc::Receiver<()>,
) -> Result<Started, String> {
    // Before the open: a signal during it reopens once more, never not.
    let rotation = ROTATIONS.load(Ordering::SeqCst);
    let sink = if is_fifo(&config.path) {
        fifo_writable(&config.path)
            .map_err(|e| format!("access_log.path {}: {e}", shown(&config.path)))?;
        None
    } else {
        Some(
            open(&config.path)
                .map_err(|e| format!("access_log.path {}: {e}", shown(&config.path)))?,
        )
    };
    let (tx, rx) = sync_channel(QUEUE);
    let stop = Arc::new(Stop::default());
    let stopped = stop.clone();
    let ended = Arc::new(Ended::default());
    let on_exit = SetOnDrop(ended.clone());
    let thread = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || {
            let _on_exit = on_exit;
            if go.recv().is_err() {
                return;
            }
            let w = Writer::new(config.path, config.format, sink, rotation);
            run(w, rx, queued, &stopped, &after);
        })
        .map_err(|e| format!("access_log: cannot start the writer thread: {e}"))?;
    Ok((tx, stop, thread, ended))
}

fn run(
    mut w: Writer,
    rx: Receiver<Msg>,
    queued: Arc<AtomicUsize>,
    stop: &Stop,
    after: &[Arc<Ended>],
) {
    // A line taken off the queue no longer counts against QUEUE_BYTES.
    let taken = |line: &Line| queued.fetch_sub(line.large_bytes(), Ordering::Relaxed);
    // Hand over in order: the writers this one comes after drain their
    // queues into the same path first. Two writers on one pipe would
    // interleave batches over PIPE_BUF mid-line (pipe(7)). Lines queue
    // meanwhile.
    if !after.is_empty() {
        // A FIFO is opened before the replaced writer closes it: had no
        // writer held it open for a moment, the shipper's read would end
        // (EOF), and it closed the pipe, or its next read raced the lines
        // this writer then wrote into a pipe about to lose its reader.
        // nginx's new workers open their logs before the old ones exit.
        if w.file.is_none()
            && let Ok(f) = open_fifo_if_read(&w.path)
        {
            w.file = Some(f);
        }
        for earlier in after {
            while !earlier.wait(RETRY) {
                if stop.due() {
                    return give_up(&mut w, &rx, taken);
                }
            }
        }
    }
    if w.file.is_none() {
        info!(path = %shown(&w.path), "access log is a FIFO: waiting for a reader");
        // Lines queue (then drop and count) until a reader comes. Polled,
        // never a blocking open: a writer waiting in open(2) could not
        // see that it was replaced or shut down, and kept its queue (hours
        // old by the time a reader came) and its thread forever.
        loop {
            match open_fifo_if_read(&w.path) {
                Ok(f) => {
                    info!(path = %shown(&w.path), "access log FIFO has a reader: opened");
                    w.file = Some(f);
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
                Err(e) => {
                    // Lines are dropped and counted until it opens,
                    // reported as a failing write's are.
                    w.report(&e, Failure::Open);
                    break;
                }
            }
            if stop.due() {
                return give_up(&mut w, &rx, taken);
            }
            std::thread::sleep(RETRY);
        }
    }
    let mut busy = false;
    // Ends when the last sender drops (reconfigured or shutting down),
    // after everything queued has been written.
    loop {
        // Busy: sleep a tick and drain a batch. A request's `try_send`
        // only wakes a thread blocked in `recv`, so under load no line
        // costs a wake-up (a futex call and a context switch). Idle: block,
        // and the first line after a quiet spell is written at once.
        if stop.due() {
            return give_up(&mut w, &rx, taken);
        }
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
        busy = first.is_some();
        let mut next = first;
        loop {
            // Between any two lines: under sustained load the queue is
            // never empty, and the file logrotate moved away must not be
            // written on until it fills the disk.
            let rotation = ROTATIONS.load(Ordering::Relaxed);
            if rotation != w.rotation {
                w.rotation = rotation;
                w.reopen();
            }
            let Some(msg) = next else { break };
            if stop.due() {
                if let Msg::Line(line) = msg {
                    taken(&line);
                    w.dropped(1);
                }
                return give_up(&mut w, &rx, taken);
            }
            if let Msg::Line(line) = msg {
                taken(&line);
                w.line(&line);
            }
            next = rx.try_recv().ok();
        }
        if busy {
            w.flush();
        }
    }
    w.flush();
}

/// A writer that is no longer the running one and could not write its
/// lines in time: what it holds and what is queued is dropped and counted.
fn give_up(w: &mut Writer, rx: &Receiver<Msg>, taken: impl Fn(&Line) -> usize) {
    let mut lost = w.buf.iter().filter(|&&c| c == b'\n').count() as u64;
    w.buf.clear();
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Line(line) = msg {
            taken(&line);
            lost += 1;
        }
    }
    w.dropped(lost);
    warn!(path = %shown(&w.path), lines_dropped = w.unreported, "access log writer replaced or stopped before it could write its lines (a FIFO without a reader?): dropped");
}

/// The open access log and the lines not yet written to it.
struct Writer {
    path: PathBuf,
    format: LogFormat,
    /// `None`: a FIFO with no reader (it left, or the first open failed):
    /// lines are dropped and counted until one is there.
    file: Option<File>,
    /// Whether `file` is a FIFO: one whose write failed is closed, to be
    /// opened again when a reader is there.
    fifo: bool,
    /// Whole lines, written when [`BATCH`] is reached or the queue is drained.
    buf: Vec<u8>,
    /// The last failed write ended within a line: the next one starts
    /// with a newline, so that torn line does not run into the next.
    torn: bool,
    /// When a FIFO with no reader is tried again.
    retry_at: Instant,
    /// Lines dropped since the last error logged.
    unreported: u64,
    /// When the last write error was logged.
    reported_at: Option<Instant>,
    /// [`ROTATIONS`] when `file` was opened, or last reopened.
    rotation: u64,
}

impl Writer {
    fn new(path: PathBuf, format: LogFormat, file: Option<File>, rotation: u64) -> Writer {
        let fifo = is_fifo(&path);
        Writer {
            path,
            format,
            file,
            fifo,
            buf: Vec::with_capacity(BATCH + 1024),
            torn: false,
            retry_at: Instant::now(),
            unreported: 0,
            reported_at: None,
            rotation,
        }
    }

    /// Format `line` into the batch, or drop and count it when there is
    /// nothing to write it to.
    fn line(&mut self, line: &Line) {
        if self.file.is_none() && !self.retry() {
            self.dropped(1);
            return;
        }
        format::write(&mut self.buf, line, self.format);
        self.buf.push(b'\n');
        if self.buf.len() >= BATCH {
            self.flush();
        }
    }

    /// Write the batch. What a failed write leaves unwritten is gone: its
    /// lines are counted as dropped (a line written in part, too), and a
    /// FIFO is closed (its reader left) to be opened again.
    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let lines = |b: &[u8]| b.iter().filter(|&&c| c == b'\n').count() as u64;
        let Some(file) = self.file.as_mut() else {
            let n = lines(&self.buf);
            self.buf.clear();
            self.dropped(n);
            return;
        };
        let mut result = Ok(());
        if self.torn {
            result = file.write_all(b"\n");
            self.torn = result.is_err();
        }
        let mut done = 0;
        while result.is_ok() && done < self.buf.len() {
            match file.write(&self.buf[done..]) {
                Ok(0) => result = Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => result = Err(e),
            }
        }
        if let Err(e) = result {
            if done > 0 && self.buf[done - 1] != b'\n' {
                self.torn = true;
            }
            let lost = lines(&self.buf[done..]);
            if self.fifo {
                self.file = None;
                self.torn = false;
                self.retry_at = Instant::now() + RETRY;
            }
            self.failed(&e, lost);
        }
        self.buf.clear();
    }

    /// Count lines that were not written.
    fn dropped(&mut self, n: u64) {
        METRICS.access_log_dropped.inc_by(n);
        self.unreported += n;
    }

    /// A write failed and lost `lost` lines: [`Writer::report`]ed.
    fn failed(&mut self, e: &std::io::Error, lost: u64) {
        self.dropped(lost);
        self.report(e, Failure::Write);
    }

    /// Log a failure, but at most every [`REPORT_EVERY`] (a full disk
    /// fails every batch, a FIFO that will not open every retry), with
    /// the lines lost since the last time.
    fn report(&mut self, e: &std::io::Error, what: Failure) {
        let now = Instant::now();
        if self
            .reported_at
            .is_some_and(|t| now.duration_since(t) < REPORT_EVERY)
        {
            return;
        }
        let (path, lost) = (shown(&self.path), self.unreported);
        match what {
            Failure::Write => {
                error!(path = %path, error = %e, lines_dropped = lost, "cannot write the access log: lines dropped (logged at most every 10 s)");
            }
            Failure::Open => {
                error!(path = %path, error = %e, lines_dropped = lost, "cannot open the access log: lines dropped (logged at most every 10 s)");
            }
        }
        self.unreported = 0;
        self.reported_at = Some(now);
    }

    /// A FIFO whose reader left: opened again if a reader is there now,
    /// tried at most every [`RETRY`]. Only a FIFO: where the shipper's
    /// pipe was, a file must not be created.
    fn retry(&mut self) -> bool {
        let now = Instant::now();
        if now < self.retry_at {
            return false;
        }
        self.retry_at = now + RETRY;
        if !is_fifo(&self.path) {
            return false;
        }
        match open_fifo_if_read(&self.path) {
            Ok(f) => {
                info!(path = %shown(&self.path), lines_dropped = self.unreported, "access log FIFO has a reader again: reopened");
                self.unreported = 0;
                self.file = Some(f);
                self.fifo = true;
                true
            }
            // No reader yet: the shipper is away, as when it left.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => false,
            // Failed in silence, every line dropped with no word after
            // the first (a pipe made anew by another user, mode 0600).
            Err(e) => {
                self.report(&e, Failure::Open);
                false
            }
        }
    }

    /// SIGUSR1: what is batched goes to the old file, then the path is
    /// opened again (a FIFO only if a reader has it open). If that fails,
    /// the old file keeps being written rather than lose lines.
    fn reopen(&mut self) {
        self.flush();
        let fifo = is_fifo(&self.path);
        let opened = if fifo {
            open_fifo_if_read(&self.path)
        } else {
            open(&self.path)
        };
        match opened {
            Ok(f) => {
                // A torn line is mended only in the file it was torn in: the
                // same file opened again (no rotation happened) still ends
                // within it, and the next batch must start on a new line.
                if !same_file(self.file.as_ref(), &f) {
                    self.torn = false;
                }
                self.file = Some(f);
                self.fifo = fifo;
                info!(path = %shown(&self.path), "access log reopened");
            }
            Err(e) => error!(path = %shown(&self.path), error = %e, "cannot reopen the access log"),
        }
    }
}

/// What failed, for [`Writer::report`].
#[derive(Clone, Copy)]
enum Failure {
    Write,
    Open,
}

/// Whether `new` is the file `old` is (one device and inode).
fn same_file(old: Option<&File>, new: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (old.map(File::metadata), new.metadata()) {
        (Some(Ok(a)), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// How long a busy writer lets lines gather before writing a batch.
const TICK: Duration = Duration::from_millis(10);
/// How often an idle writer looks whether [`ROTATIONS`] moved on (a SIGUSR1).
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Bytes of lines gathered before they are written, even mid-batch.
const BATCH: usize = 64 * 1024;
/// How often a FIFO whose reader left is tried again.
const RETRY: Duration = Duration::from_millis(200);
/// How often a failing write is logged at most.
const REPORT_EVERY: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    /// A write cut within a line (ENOSPC) leaves the file ending mid-line;
    /// a SIGUSR1 that opens the same file again (nothing rotated it) must
    /// not forget that, or the next batch is glued onto the half line. A
    /// short write cannot be provoked here without a full filesystem, so
    /// the torn state is set as a failed write leaves it.
    #[test]
    fn a_torn_line_survives_a_reopen_of_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut w = Writer::new(path.clone(), LogFormat::Json, Some(open(&path).unwrap()), 0);
        w.file.as_mut().unwrap().write_all(b"{\"half\":").unwrap();
        w.torn = true;
        w.reopen();
        w.buf.extend_from_slice(b"{\"next\":1}\n");
        w.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"half\":\n{\"next\":1}\n");
        // Rotated away: the new file starts clean, no stray newline.
        w.buf.extend_from_slice(b"{\"cut\":");
        w.flush();
        w.torn = true;
        std::fs::rename(&path, path.with_extension("log.1")).unwrap();
        w.reopen();
        w.buf.extend_from_slice(b"{\"new\":1}\n");
        w.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"new\":1}\n");
    }
}
