//! The access log: one line per request (and per refused handshake), written off the request path.
//!
//! Requests hand a [`Line`] to a bounded queue; one writer thread formats
//! and writes them. When the writer lags and the queue is full, or the
//! writer cannot write the line (a full disk, a FIFO whose reader left),
//! the line is dropped and counted in `hotproxy_access_log_dropped_total`:
//! a slow disk never slows a request. A line holds what it logs of the
//! client's certificate ([`LoggedIdentity`]), never its chain. SIGUSR1 asks
//! the writer to reopen its file (logrotate's `postrotate`).

pub mod body;
pub mod format;
pub mod tunnel;
mod writer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::identity::Identity;
use crate::identity::gate::{RateLimit, Window};
use crate::metrics::METRICS;

/// `access_log:` at the top level of the config.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// `stdout`, or a file (appended to, created 0640 if missing).
    pub path: String,
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (the fields of SPEC §access log).
    #[default]
    Json,
    /// nginx's `combined`.
    Combined,
}

/// Lines waiting for the writer; beyond this they are dropped and counted.
pub const QUEUE: usize = 16 * 1024;

/// What the large lines waiting for the writer may hold together, in
/// bytes copied from the request (host, path, referer, user agent) and
/// from the client's certificate ([`LoggedIdentity`]); beyond it they are
/// dropped and counted. A line count alone let a client's long paths
/// (64 KiB each within `max_header_bytes`, a few bytes on the wire over
/// HTTP/2 once in the HPACK table) pile up a gigabyte behind a slow log
/// reader. Lines of at most 1 KiB of such bytes (`SMALL_LINE`), nearly all
/// of them, are not counted here (no shared counter touched per request):
/// with the line bound they hold at most `QUEUE` KiB.
pub const QUEUE_BYTES: usize = 16 << 20;

/// A line holding more variable bytes than this counts against [`QUEUE_BYTES`].
const SMALL_LINE: usize = 1024;

/// What a line tells of the client's certificate (`client_subject`,
/// `client_uri_san`, `client_fingerprint`), copied from the connection's
/// [`Identity`] on its first logged line and shared by its lines
/// ([`LoggedIdentity::of`]). A line holds this, never the identity: that
/// keeps the client's whole chain and the encodings sent upstream (up to
/// hundreds of KiB for a large chain), which lines queued from closed
/// connections would pin uncounted. What this holds counts against
/// [`QUEUE_BYTES`] once per line: more than it takes when a connection's
/// lines share it, never less.
#[derive(Debug, PartialEq, Eq)]
pub struct LoggedIdentity {
    pub subject: Box<str>,
    /// The first URI SAN.
    pub uri_san: Option<Box<str>>,
    pub fingerprint_sha256: Box<str>,
}

impl LoggedIdentity {
    /// `id`'s fields for the log: copied on the first call, shared after.
    pub fn of(id: &Identity) -> Arc<LoggedIdentity> {
        id.logged
            .get_or_init(|| {
                Arc::new(LoggedIdentity {
                    subject: id.subject.as_str().into(),
                    uri_san: id.uri_sans.first().map(|u| u.as_str().into()),
                    fingerprint_sha256: id.fingerprint_sha256.as_str().into(),
                })
            })
            .clone()
    }

    /// The bytes it holds beyond its fixed size.
    fn bytes(&self) -> usize {
        self.subject.len()
            + self.uri_san.as_ref().map_or(0, |u| u.len())
            + self.fingerprint_sha256.len()
    }
}

/// One request, as the access log records it. Owned data only: it crosses
/// to the writer thread, which does all the formatting.
#[derive(Debug)]
pub struct RequestLine {
    pub ts: SystemTime,
    pub listener: Arc<str>,
    pub sni: Option<Arc<str>>,
    pub client_addr: SocketAddr,
    pub identity: Option<Arc<LoggedIdentity>>,
    pub method: http::Method,
    /// The `Host` / `:authority` as received: bytes, escaped when written
    /// (a `Host` may hold bytes outside ASCII). Copied, not shared: a
    /// line waiting in the queue must not pin hyper's read buffer (a
    /// shared slice would make it allocate a fresh one per request).
    pub host: Option<Box<[u8]>>,
    /// Without the query (queries carry tokens). Copied, as `host`.
    pub path: Box<str>,
    pub protocol: http::Version,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub upstream: Option<Arc<str>>,
    pub upstream_addr: Option<Arc<str>>,
    pub upstream_time: Option<Duration>,
    pub request_id: http::HeaderValue,
    pub trace_id: Option<String>,
    pub tls_version: Option<&'static str>,
    pub resumed: bool,
    /// `allowed`, or why the request was refused.
    pub authz: &'static str,
    /// For `combined` only (bytes as sent, copied, as `host`).
    pub referer: Option<Box<[u8]>>,
    pub user_agent: Option<Box<[u8]>>,
}

/// A handshake the listener refused (bad certificate, unknown CA, revoked,
/// denied by rule).
#[derive(Debug)]
pub struct RefusalLine {
    pub ts: SystemTime,
    pub listener: Arc<str>,
    pub client_addr: SocketAddr,
    pub reason: &'static str,
}

/// A request head refused before it became a request: hyper's HTTP/1
/// parser answered it (`400`, `414`, `431`), or it was begun and not
/// finished within `header_read_timeout` (`408`, nothing sent).
#[derive(Debug)]
pub struct HeadLine {
    pub ts: SystemTime,
    pub listener: Arc<str>,
    pub sni: Option<Arc<str>>,
    pub client_addr: SocketAddr,
    pub identity: Option<Arc<LoggedIdentity>>,
    pub status: u16,
    /// Since the head's first byte (for a connection's first request,
    /// since it was accepted: the handshake shares the budget).
    pub duration: Duration,
    pub tls_version: Option<&'static str>,
    pub resumed: bool,
    /// `bad_request`, `uri_too_long`, `header_too_large`, `header_read_timeout`.
    pub reason: &'static str,
}

#[derive(Debug)]
pub enum Line {
    Request(Box<RequestLine>),
    Refusal(RefusalLine),
    Head(Box<HeadLine>),
}

impl Line {
    /// The request and certificate bytes a large line holds (counted
    /// against [`QUEUE_BYTES`] while it waits); 0 for a small one.
    fn large_bytes(&self) -> usize {
        let len = |f: &Option<Box<[u8]>>| f.as_ref().map_or(0, |s| s.len());
        let id = |i: &Option<Arc<LoggedIdentity>>| i.as_ref().map_or(0, |i| i.bytes());
        let n = match self {
            Line::Request(r) => {
                len(&r.host) + r.path.len() + len(&r.referer) + len(&r.user_agent) + id(&r.identity)
            }
            Line::Head(h) => id(&h.identity),
            Line::Refusal(_) => 0,
        };
        if n > SMALL_LINE { n } else { 0 }
    }
}

enum Msg {
    Line(Line),
    /// Wake the writer so it notices a reopen request.
    Reopen,
}

/// The running writer: its queue and its configuration.
struct Running {
    config: AccessLogConfig,
    tx: SyncSender<Msg>,
    reopen: Arc<AtomicBool>,
    /// Set when it is replaced or shut down: when it gives up.
    stop: Arc<writer::Stop>,
    /// [`Line::large_bytes`] of the lines queued.
    queued: Arc<AtomicUsize>,
    /// Joined at shutdown, so queued lines reach the file before exit.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Closed when the writer thread ends: shutdown waits on it, bounded.
    done: Mutex<std::sync::mpsc::Receiver<()>>,
}

static RUNNING: LazyLock<ArcSwapOption<Running>> = LazyLock::new(ArcSwapOption::empty);
/// Serialises [`configure`] (the reloader and tests may call it).
static CONFIGURE: Mutex<()> = Mutex::new(());

/// Apply the configured access log: start, replace or stop the writer.
/// The same configuration keeps the running writer (and its open file).
pub fn configure(config: Option<&AccessLogConfig>) -> Result<(), String> {
    let _one = CONFIGURE.lock().unwrap_or_else(|e| e.into_inner());
    let current = RUNNING.load();
    if current.as_ref().map(|r| &r.config) == config {
        return Ok(());
    }
    let next = match config {
        None => None,
        Some(c) => {
            let queued = Arc::new(AtomicUsize::new(0));
            // The same path: the new writer waits for the old one to end.
            let after = current
                .as_ref()
                .filter(|r| r.config.path == c.path)
                .map(|r| &r.done);
            let (tx, reopen, stop, thread, done) = writer::spawn(c.clone(), queued.clone(), after)?;
            Some(Arc::new(Running {
                config: c.clone(),
                tx,
                reopen,
                stop,
                queued,
                thread: Mutex::new(Some(thread)),
                done: Mutex::new(done),
            }))
        }
    };
    // The old writer drains its queue and exits when its sender drops, or
    // gives up after FLUSH_AT_SHUTDOWN (a FIFO without a reader): a stuck
    // writer is not left behind with its thread and queue on each reload.
    if let Some(old) = current.as_ref() {
        old.stop.at(std::time::Instant::now() + FLUSH_AT_SHUTDOWN);
    }
    RUNNING.store(next);
    Ok(())
}

/// How long shutdown, or a reload that replaces the writer, waits for it
/// to write what is queued. A FIFO without a reader (a log shipper down)
/// leaves it waiting for one, a stuck reader blocks it in `write`: neither
/// may keep the process from exiting (kubelet would kill it, exit 137,
/// after the grace period), nor pile up writers reload after reload.
pub const FLUSH_AT_SHUTDOWN: Duration = Duration::from_secs(5);

/// Stop the writer after it has written every queued line (shutdown), or
/// after [`FLUSH_AT_SHUTDOWN`] if it cannot: the lines still queued are
/// dropped and counted, and the log says so.
pub fn shutdown() {
    shutdown_within(FLUSH_AT_SHUTDOWN);
}

fn shutdown_within(limit: Duration) {
    let _one = CONFIGURE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(running) = RUNNING.swap(None) else {
        return;
    };
    let thread = running
        .thread
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let path = running.config.path.clone();
    running.stop.at(std::time::Instant::now() + limit);
    let done = std::mem::replace(
        &mut *running.done.lock().unwrap_or_else(|e| e.into_inner()),
        std::sync::mpsc::channel().1,
    );
    // The queue's sender goes with the last reference; a request holding a
    // momentary one finishes its `submit` first.
    drop(running);
    // A writer that gave up notices within a poll (200 ms); one blocked in
    // a write (a reader that stopped reading) does not.
    let waited = limit + Duration::from_secs(1);
    match done.recv_timeout(waited) {
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            warn!(path = %path, waited_ms = waited.as_millis() as u64, "access log writer still blocked at shutdown (a FIFO without a reader?); exiting without the lines it holds");
        }
        // Ended (or its thread panicked): joined at once.
        _ => {
            if let Some(t) = thread {
                let _ = t.join();
            }
        }
    }
}

/// `hotproxy check`: whether `run` could open the configured access log
/// (creating nothing), with the message `run` would stop with.
pub fn preview(config: &AccessLogConfig) -> Result<(), String> {
    writer::preview(&config.path)
}

/// Whether an access log is configured (requests skip all bookkeeping when not).
pub fn enabled() -> bool {
    RUNNING.load().is_some()
}

/// Whether lines are written in nginx's `combined` (which alone needs the
/// referer and user agent).
pub fn combined() -> bool {
    RUNNING
        .load()
        .as_ref()
        .is_some_and(|r| r.config.format == LogFormat::Combined)
}

/// Queue a line; never blocks.
pub fn submit(line: Line) {
    let running = RUNNING.load();
    let Some(r) = running.as_ref() else { return };
    let large = line.large_bytes();
    if large > 0 && r.queued.fetch_add(large, Ordering::Relaxed) + large > QUEUE_BYTES {
        r.queued.fetch_sub(large, Ordering::Relaxed);
        METRICS.access_log_dropped.inc();
        return;
    }
    match r.tx.try_send(Msg::Line(line)) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            r.queued.fetch_sub(large, Ordering::Relaxed);
            METRICS.access_log_dropped.inc();
        }
    }
}

/// SIGUSR1: reopen the file at the configured path.
pub fn reopen() {
    let running = RUNNING.load();
    if let Some(r) = running.as_ref() {
        r.reopen.store(true, Ordering::SeqCst);
        // A full queue means the writer is busy and will see the flag.
        let _ = r.tx.try_send(Msg::Reopen);
    }
}

static REFUSALS: LazyLock<RateLimit> = LazyLock::new(|| RateLimit::new(Duration::from_secs(60)));

/// A refused handshake: one line per (listener, client IP, reason) per
/// minute, so a client retrying in a loop cannot flood the log.
pub fn handshake_refused(listener: &Arc<str>, client_addr: SocketAddr, reason: &'static str) {
    if !enabled()
        || !refusal_admitted(
            &REFUSALS,
            format!("{listener} {} {reason}", client_addr.ip()),
        )
    {
        return;
    }
    submit(Line::Refusal(RefusalLine {
        ts: SystemTime::now(),
        listener: listener.clone(),
        client_addr,
        reason,
    }));
}

/// Whether `limit` lets a refusal line for `key` through. One held back
/// only because its map is full is a line lost, and counted as one.
fn refusal_admitted(limit: &RateLimit, key: String) -> bool {
    match limit.admit(key) {
        Window::First => true,
        Window::Again => false,
        Window::Full => {
            METRICS.access_log_dropped.inc();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    fn refusal(n: u16) -> Line {
        Line::Refusal(RefusalLine {
            ts: SystemTime::now(),
            listener: "l".into(),
            client_addr: SocketAddr::from(([127, 0, 0, 1], n)),
            reason: "unknown_ca",
        })
    }

    /// The tests here configure the one access log: one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    /// An access log to a FIFO nobody reads yet (a stalled log shipper);
    /// configuring must not wait for a reader.
    fn stalled_fifo(dir: &tempfile::TempDir) -> std::path::PathBuf {
        let fifo = dir.path().join("access.fifo");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo");
        let config = AccessLogConfig {
            path: fifo.display().to_string(),
            format: LogFormat::Json,
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || done_tx.send(configure(Some(&config))).unwrap());
        done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("configure waited for a FIFO reader")
            .unwrap();
        fifo
    }

    /// Every line `fifo` gets from now until the log is shut down.
    fn read_all(fifo: std::path::PathBuf) -> std::thread::JoinHandle<usize> {
        std::thread::spawn(move || {
            let f = std::fs::File::open(&fifo).unwrap();
            std::io::BufReader::new(f).lines().count()
        })
    }

    /// A FIFO nobody reads (a stalled log shipper): configuring does not
    /// wait for a reader, submitting never blocks, what does not fit the
    /// queue is dropped and counted; once a reader comes, every queued line
    /// arrives, and shutdown writes them all before it returns.
    #[test]
    fn stalled_fifo_drops_and_counts_never_blocks() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let fifo = stalled_fifo(&dir);
        let dropped_before = METRICS.access_log_dropped.get();
        let extra = 25;
        for i in 0..QUEUE + extra {
            submit(refusal(i as u16));
        }
        // The writer holds at most one line outside the queue.
        let dropped = METRICS.access_log_dropped.get() - dropped_before;
        assert!(
            (extra as u64 - 1..=extra as u64).contains(&dropped),
            "dropped {dropped}"
        );
        // A reader arrives: everything queued is written.
        let reader = read_all(fifo);
        shutdown();
        let lines = reader.join().unwrap();
        assert_eq!(lines as u64, (QUEUE + extra) as u64 - dropped);
        assert!(!enabled());
    }

    /// A FIFO nobody ever reads (the log shipper is down) leaves the
    /// writer blocked in `open`: shutdown gives up on it after its limit
    /// instead of joining it forever (SIGTERM hung until kubelet killed the
    /// pod).
    #[test]
    fn shutdown_does_not_wait_forever_for_a_fifo_reader() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let _fifo = stalled_fifo(&dir);
        submit(refusal(1));
        crate::fsutil::test_support::within_bounded_time("shutdown", || {
            shutdown_within(Duration::from_millis(200))
        });
        assert!(!enabled());
    }

    /// Long request lines are bounded by bytes, not only by count: behind
    /// a stalled reader, lines with 64 KiB paths fill `QUEUE_BYTES` (256 of
    /// them) and the rest are dropped and counted, where 16,384 of them
    /// (a gigabyte) used to wait. Short lines still fill the line queue.
    #[test]
    fn long_lines_are_bounded_by_bytes() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let fifo = stalled_fifo(&dir);
        let dropped_before = METRICS.access_log_dropped.get();
        let long = |_| {
            let mut line = format::tests::line();
            line.path = format!("/{}", "p".repeat(64 * 1024 - 1)).into();
            Line::Request(Box::new(line))
        };
        let sent = 1000;
        (0..sent).map(long).for_each(submit);
        let dropped = METRICS.access_log_dropped.get() - dropped_before;
        let fit = QUEUE_BYTES / (64 * 1024 + "api.example".len() + "curl \"8\"".len());
        // The writer may hold one line outside the queue.
        assert!(
            (sent - fit - 1..=sent - fit).contains(&(dropped as usize)),
            "dropped {dropped} of {sent}"
        );
        let reader = read_all(fifo);
        shutdown();
        assert_eq!(reader.join().unwrap(), sent - dropped as usize);
    }

    /// Lines of clients with large certificates are bounded by bytes too:
    /// behind a stalled reader, lines each from another connection whose
    /// certificate has a 64 KiB subject fill `QUEUE_BYTES` and the rest are
    /// dropped and counted, where all of them used to wait, uncounted. A
    /// line holds what it logs of the certificate, not the identity with
    /// its chain (here 60 KiB), which it used to pin too.
    #[test]
    fn lines_with_large_client_identities_are_bounded_by_bytes() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let fifo = stalled_fifo(&dir);
        let dropped_before = METRICS.access_log_dropped.get();
        let large = |i: usize| {
            let id = Arc::new(Identity {
                subject: format!("CN={i:04}{}", "x".repeat(64 * 1024)),
                issuer: "CN=ca".into(),
                cn: vec![],
                ou: vec![],
                dns_sans: vec![],
                uri_sans: vec![format!("spiffe://td/sa/{i:04}")],
                email_sans: vec![],
                serial: "01".into(),
                fingerprint_sha256: "ab".repeat(32),
                not_before: 0,
                not_after: 0,
                chain: vec![vec![0u8; 60 * 1024].into()],
                forwarded: Default::default(),
                logged: Default::default(),
            });
            let mut line = format::tests::line();
            line.identity = Some(LoggedIdentity::of(&id));
            // The connection's identity (and its chain) is the
            // connection's alone: the line holds none of it.
            assert_eq!(Arc::strong_count(&id), 1);
            Line::Request(Box::new(line))
        };
        // What each line holds: its certificate's subject, URI SAN and
        // fingerprint, and the request's host, path and user agent.
        let each = "CN=0000".len() + 64 * 1024 + "spiffe://td/sa/0000".len() + 64;
        let each = each + "api.example".len() + "/v1/%22x%22".len() + "curl \"8\"".len();
        let sent = 600;
        (0..sent).map(large).for_each(submit);
        let dropped = METRICS.access_log_dropped.get() - dropped_before;
        let fit = QUEUE_BYTES / each;
        // The writer may hold one line outside the queue.
        assert!(
            (sent - fit - 1..=sent - fit).contains(&(dropped as usize)),
            "dropped {dropped} of {sent}, {fit} fit"
        );
        let reader = read_all(fifo);
        shutdown();
        assert_eq!(reader.join().unwrap(), sent - dropped as usize);
    }

    /// Wait, bounded, until `done` holds (the writer thread says nothing
    /// when it has dropped a line but the counter).
    fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::yield_now();
        }
    }

    /// A line the writer cannot write is dropped and counted: `/dev/full`
    /// fails every write (`ENOSPC`, a full disk). They were kept in a
    /// `BufWriter` whose failed flushes nobody looked at, and lost uncounted.
    #[test]
    fn lines_that_cannot_be_written_are_dropped_and_counted() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let before = METRICS.access_log_dropped.get();
        let config = AccessLogConfig {
            path: "/dev/full".into(),
            format: LogFormat::Json,
        };
        configure(Some(&config)).unwrap();
        let sent = 500;
        (0..sent).map(refusal).for_each(submit);
        // Shutdown returns when the writer has taken (and tried) them all.
        shutdown();
        assert_eq!(METRICS.access_log_dropped.get() - before, sent as u64);
    }

    /// A FIFO whose reader left (`EPIPE`: a log shipper restarting): the
    /// lines are dropped and counted, and once a reader opens it again it
    /// gets lines again, without a SIGUSR1. Every line is either read or
    /// counted.
    #[test]
    fn a_fifo_whose_reader_left_drops_and_counts_then_is_reopened() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let fifo = stalled_fifo(&dir);
        // A first reader takes a line, and leaves.
        let mut first = std::io::BufReader::new(std::fs::File::open(&fifo).unwrap());
        submit(refusal(1));
        let mut line = String::new();
        first.read_line(&mut line).unwrap();
        assert!(line.contains("unknown_ca"), "{line}");
        drop(first);
        // No reader: dropped and counted, every one.
        let before = METRICS.access_log_dropped.get();
        let sent = 50;
        (0..sent).map(refusal).for_each(submit);
        until("the lines without a reader counted as dropped", || {
            METRICS.access_log_dropped.get() - before == sent as u64
        });
        // A reader again (the shipper restarted): lines arrive.
        let (got_tx, got) = std::sync::mpsc::channel();
        let path = fifo.clone();
        let reader = std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            let mut n = 0;
            for l in std::io::BufReader::new(f).lines() {
                assert!(l.unwrap().ends_with('}'), "a whole line");
                n += 1;
                let _ = got_tx.send(());
            }
            n
        });
        let before = METRICS.access_log_dropped.get();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut submitted = 0u64;
        loop {
            submit(refusal(2));
            submitted += 1;
            if got.recv_timeout(Duration::from_millis(20)).is_ok() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no line reached the new reader"
            );
        }
        shutdown();
        let read = reader.join().unwrap();
        assert!(read >= 1);
        let dropped = METRICS.access_log_dropped.get() - before;
        assert_eq!(read + dropped, submitted, "read {read}, dropped {dropped}");
    }

    /// SIGUSR1 under sustained load: the queue never empties, and the
    /// reopen is still done between two lines, where it waited for an
    /// empty queue and every queued line went to the rotated file. The
    /// queue is full before the writer writes a line, and a reader that
    /// reads nothing keeps it in the middle of it until the reopen is asked.
    #[test]
    fn reopen_is_done_while_the_queue_never_empties() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let fifo = stalled_fifo(&dir);
        let dropped_before = METRICS.access_log_dropped.get();
        (0..QUEUE).map(|i| refusal(i as u16)).for_each(submit);
        assert_eq!(METRICS.access_log_dropped.get(), dropped_before);
        // The writer opens, takes lines, and waits in a write once the
        // pipe is full: a line read means it is in the queue's middle.
        let mut old = std::io::BufReader::new(std::fs::File::open(&fifo).unwrap());
        let mut line = String::new();
        old.read_line(&mut line).unwrap();
        // logrotate: move it, then SIGUSR1.
        std::fs::rename(&fifo, dir.path().join("access.fifo.1")).unwrap();
        reopen();
        // The moved FIFO gets what was written before; the writer closes
        // it when it reopens.
        let to_old = 1 + old.lines().count();
        shutdown();
        let to_new = std::fs::read_to_string(&fifo).unwrap().lines().count();
        assert_eq!(to_old + to_new, QUEUE, "{to_old} + {to_new}");
        assert!(to_new > 0, "every queued line went to the rotated file");
    }

    /// Threads of this process named `access-log` (writers, old and new).
    fn writer_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.trim() == "access-log")
            .count()
    }

    /// Wait until `done` holds, polling; fails after 30 s.
    fn until_polled(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A reload that changes the access log while its FIFO has no reader
    /// (the log shipper is down): the replaced writer ends, dropping and
    /// counting its queue, where it waited in `open(2)` forever with its
    /// thread and up to 16,384 lines, reload after reload, and a reader
    /// coming hours later got those old lines first.
    #[test]
    fn a_writer_replaced_while_its_fifo_has_no_reader_ends() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let base = writer_threads();
        let fifo = stalled_fifo(&dir);
        let before = METRICS.access_log_dropped.get();
        (0..100).map(refusal).for_each(submit);
        let combined = AccessLogConfig {
            path: fifo.display().to_string(),
            format: LogFormat::Combined,
        };
        configure(Some(&combined)).unwrap();
        // The new writer waits for the old one to end before it starts
        // (one writer per FIFO at a time), so one thread alone proves
        // nothing: the old one's count of dropped lines does.
        until_polled("the replaced writer dropped its queue", || {
            METRICS.access_log_dropped.get() - before >= 100
        });
        until_polled("the replaced writer ended", || writer_threads() == base + 1);
        assert_eq!(METRICS.access_log_dropped.get() - before, 100);
        // A reader now gets the new writer's lines, none of the old ones.
        let mut reader = std::io::BufReader::new(std::fs::File::open(&fifo).unwrap());
        submit(refusal(7));
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        shutdown();
        assert_eq!(writer_threads(), base);
    }

    /// A reload that changes the format but not the FIFO: the old writer
    /// drains its queue into the pipe before the new one writes a line.
    /// Both wrote at once, and batches over PIPE_BUF (`pipe(7)`) were
    /// spliced mid-line: the shipper got broken JSON. Here both writers
    /// have a full pipe and a queue behind it before the reader reads on.
    #[test]
    fn a_format_change_on_a_fifo_hands_over_in_order() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let fifo = stalled_fifo(&dir);
        let before = METRICS.access_log_dropped.get();
        let mut reader = std::io::BufReader::new(std::fs::File::open(&fifo).unwrap());
        let each = 4000;
        (0..each).map(|i| refusal(i as u16)).for_each(submit);
        // The writer opened and wrote: the pipe fills, and it waits.
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        let combined = AccessLogConfig {
            path: fifo.display().to_string(),
            format: LogFormat::Combined,
        };
        configure(Some(&combined)).unwrap();
        (0..each).map(|i| refusal(i as u16)).for_each(submit);
        let rest = std::thread::spawn(move || {
            let lines: Vec<String> = reader.lines().map(Result::unwrap).collect();
            lines
        });
        shutdown();
        let mut lines = vec![first.trim_end().to_owned()];
        lines.extend(rest.join().unwrap());
        let mut combined_seen = false;
        for line in &lines {
            if line.starts_with('{') {
                assert!(!combined_seen, "a JSON line after a combined one: {line}");
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("{e}: {line}"));
            } else {
                combined_seen = true;
                assert!(
                    line.starts_with("127.0.0.1 - - [") && !line.contains('{'),
                    "{line}"
                );
            }
        }
        // The reader never saw an end of file at the hand-over (the new
        // writer opened the FIFO before the old one closed it): it read
        // every line, none was dropped.
        let dropped = METRICS.access_log_dropped.get() - before;
        assert_eq!((lines.len() as u64, dropped), (2 * each as u64, 0));
    }

    /// A refusal line held back only by a full rate limit counts as dropped.
    #[test]
    fn refusals_past_a_full_rate_limit_are_counted() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let limit = RateLimit::new(Duration::from_secs(60));
        let full = (0..).take_while(|i| limit.first_in_window(format!("k{i}")));
        assert_eq!(full.count(), 10_000);
        let before = METRICS.access_log_dropped.get();
        assert!(!refusal_admitted(&limit, "new".into()));
        assert!(METRICS.access_log_dropped.get() > before, "not counted");
    }
}
