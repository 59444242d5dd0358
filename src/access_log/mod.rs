//! The access log: one line per request (and per refused handshake), written off the request path.
//!
//! Requests hand a [`Line`] to a bounded queue; one writer thread formats
//! and writes them. When the writer lags and the queue is full, or the
//! writer cannot write the line (a full disk, a FIFO whose reader left),
//! the line is dropped and counted in `hotproxy_access_log_dropped_total`:
//! a slow disk never slows a request. A line holds what it logs of the
//! client's certificate ([`LoggedIdentity`]), never its chain. SIGUSR1 asks
//! every writer to reopen its file (logrotate's `postrotate`), one a reload
//! is starting too.

pub mod body;
pub mod format;
pub mod tunnel;
mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::identity::gate::{RateLimit, Window};
use crate::identity::{AllowList, Identity};
use crate::metrics::METRICS;

/// `access_log:` at the top level of the config, checked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccessLogConfig {
    /// `stdout` (written so, [`STDOUT`]), or a file (appended to, created
    /// 0640 if missing). A path, not text: a name that is not UTF-8 (a
    /// legal Linux file name, or a directory the configuration lives in)
    /// made text lost its bytes and sent the lines to another file.
    pub path: PathBuf,
    pub format: LogFormat,
}

/// The `access_log.path` that means the process's stdout, not a file.
pub const STDOUT: &str = "stdout";

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
/// bytes copied from the request (method, host, path, referer, user agent) and
/// from the client's certificate ([`LoggedIdentity`]); beyond it they are
/// dropped and counted. A line count alone let a client's long paths
/// (64 KiB each within `max_header_bytes`, a few bytes on the wire over
/// HTTP/2 once in the HPACK table) pile up a gigabyte behind a slow log
/// reader. Lines of at most 1 KiB of such bytes (`SMALL_LINE`), nearly all
/// of them, are not counted here (no shared counter touched per request):
/// with the line bound they hold at most `QUEUE` KiB.
pub const QUEUE_BYTES: usize = 16 << 20;

/// The most attempts a line names in `upstream_attempts`: of a request
/// that made more (`retries.attempts` has no ceiling), the first ones and
/// the last. Each is a shared URL, so a line's list holds at most this
/// many pointers whatever the configuration.
pub const MAX_ATTEMPTS_LOGGED: usize = 32;

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
    /// The URI SAN the `allow` rule that admitted the request matched
    /// (the route's, else the listener's), or else the first.
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

    /// Settle what the connection's lines say of `id`, admitted by the
    /// listener's `allow` rules `listener` (if any): the URI SAN those
    /// rules let it in by, rather than the first, when the certificate
    /// has several ([`AllowList::admitting_uri_san`]). Called before the
    /// connection's first line.
    pub fn settle(id: &Identity, listener: Option<&AllowList>) {
        if id.uri_sans.len() < 2 {
            return;
        }
        if let Some(san) = listener.and_then(|allow| allow.admitting_uri_san(id)) {
            let _ = id.logged.set(Arc::new(LoggedIdentity {
                subject: id.subject.as_str().into(),
                uri_san: Some(san.into()),
                fingerprint_sha256: id.fingerprint_sha256.as_str().into(),
            }));
        }
    }

    /// This, naming the URI SAN a route's `allow` rules let `id` in by
    /// when it has several and that is another than this names; shared
    /// as it is otherwise.
    pub fn admitted_by(self: &Arc<Self>, id: &Identity, route: &AllowList) -> Arc<LoggedIdentity> {
        let san = (id.uri_sans.len() > 1)
            .then(|| route.admitting_uri_san(id))
            .flatten();
        match san {
            Some(san) if self.uri_san.as_deref() != Some(san) => Arc::new(LoggedIdentity {
                subject: self.subject.clone(),
                uri_san: Some(san.into()),
                fingerprint_sha256: self.fingerprint_sha256.clone(),
            }),
            _ => self.clone(),
        }
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
    /// Every attempt's endpoint, in order, the last `upstream_addr`'s:
    /// only for a request sent to more than one endpoint (a retry), at
    /// most [`MAX_ATTEMPTS_LOGGED`]. The endpoints' own URLs, shared.
    pub upstream_attempts: Option<Box<[Arc<str>]>>,
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
    /// The name the ClientHello asked for, when the handshake got that far.
    pub sni: Option<Arc<str>>,
    pub client_addr: SocketAddr,
    pub reason: &'static str,
    /// From accept to the refusal (a timed-out handshake: at least
    /// `header_read_timeout`).
    pub duration: Duration,
    /// What hotproxy answered in the clear before closing, if anything:
    /// the status and its body's bytes (plain HTTP on a TLS listener).
    pub answered: Option<(u16, u64)>,
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
                // A method is any token hyper takes, up to
                // `max_header_bytes`; `http::Method` copies one over 15
                // bytes.
                r.method.as_str().len()
                    + len(&r.host)
                    + r.path.len()
                    + len(&r.referer)
                    + len(&r.user_agent)
                    + id(&r.identity)
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
    /// Set when it is replaced or shut down: when it gives up.
    stop: Arc<writer::Stop>,
    /// [`Line::large_bytes`] of the lines queued.
    queued: Arc<AtomicUsize>,
    /// Joined at shutdown, so queued lines reach the file before exit.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set when the writer thread ends: shutdown waits on it, bounded.
    ended: Arc<writer::Ended>,
}

/// A writer that is no longer the running one (replaced or removed by a
/// reload) and may still be writing its queue, until its deadline.
struct Draining {
    path: PathBuf,
    ended: Arc<writer::Ended>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Draining {
    /// `old`, told to give up `within` from now.
    fn of(old: &Running, within: Duration) -> Draining {
        old.stop.at(std::time::Instant::now() + within);
        Draining {
            path: old.config.path.clone(),
            ended: old.ended.clone(),
            thread: old.thread.lock().unwrap_or_else(|e| e.into_inner()).take(),
        }
    }
}

static RUNNING: LazyLock<ArcSwapOption<Running>> = LazyLock::new(ArcSwapOption::empty);
/// Whether [`RUNNING`] holds a writer, for [`enabled`]: every request asks
/// (three times), and an `arc-swap` load is about 100 instructions where
/// this is one. Stored after [`RUNNING`], under [`CONFIGURE`].
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Serialises [`configure`] and [`shutdown`] (the reloader and tests may
/// call them), and holds the writers still draining: a new writer of their
/// path waits for them, and shutdown waits for them all. Those that ended
/// are forgotten at the next call.
static CONFIGURE: Mutex<Vec<Draining>> = Mutex::new(Vec::new());

/// Apply the configured access log: start, replace or stop the writer.
/// The same configuration keeps the running writer (and its open file).
pub fn configure(config: Option<&AccessLogConfig>) -> Result<(), String> {
    prepare(config).map(Prepared::apply)
}

/// The configured access log opened (its file; a FIFO is opened by the
/// writer) and its writer ready, not yet running: what can refuse a
/// configuration is done, so a reload can do it before it binds what a
/// refusal would have to undo. Applied by [`Prepared::apply`]; dropped,
/// it changes nothing (its writer ends unstarted). Holds [`CONFIGURE`]
/// until then.
#[must_use = "applied, or dropped as the reload is refused"]
pub struct Prepared {
    draining: std::sync::MutexGuard<'static, Vec<Draining>>,
    /// `None`: the configuration is the running one. Else the writer to
    /// run (none: the log is turned off), and what starts its thread.
    next: Option<Option<(Arc<Running>, std::sync::mpsc::Sender<()>)>>,
}

/// Open the configured access log for [`Prepared::apply`]: the file that
/// cannot be opened, or the thread that cannot start, is the error.
pub fn prepare(config: Option<&AccessLogConfig>) -> Result<Prepared, String> {
    let mut draining = CONFIGURE.lock().unwrap_or_else(|e| e.into_inner());
    let current = RUNNING.load();
    if current.as_ref().map(|r| &r.config) == config {
        return Ok(Prepared {
            draining,
            next: None,
        });
    }
    draining.retain(|d| !d.ended.is_set());
    let next = match config {
        None => None,
        Some(c) => {
            let queued = Arc::new(AtomicUsize::new(0));
            // Every writer of this path that may still write (the one
            // replaced now, ones replaced or removed by earlier reloads
            // within their time to drain): the new one waits for them all.
            // It looked only at the running one: a path put back after a
            // reload removed or moved the log had two writers on one pipe.
            let after = draining
                .iter()
                .filter(|d| d.path == c.path)
                .map(|d| d.ended.clone())
                .chain(
                    current
                        .as_ref()
                        .filter(|r| r.config.path == c.path)
                        .map(|r| r.ended.clone()),
                )
                .collect();
            let (go, gate) = std::sync::mpsc::channel();
            let (tx, stop, thread, ended) = writer::spawn(c.clone(), queued.clone(), after, gate)?;
            let running = Arc::new(Running {
                config: c.clone(),
                tx,
                stop,
                queued,
                thread: Mutex::new(Some(thread)),
                ended,
            });
            Some((running, go))
        }
    };
    Ok(Prepared {
        draining,
        next: Some(next),
    })
}

impl Prepared {
    /// Make the prepared access log the running one: start its writer,
    /// and let the one it replaces drain.
    pub fn apply(self) {
        let Prepared { mut draining, next } = self;
        let Some(next) = next else {
            return;
        };
        // The old writer drains its queue and exits when its sender drops, or
        // gives up after FLUSH_AT_SHUTDOWN (a FIFO without a reader): a stuck
        // writer is not left behind with its thread and queue on each reload.
        if let Some(old) = RUNNING.load().as_ref() {
            draining.push(Draining::of(old, FLUSH_AT_SHUTDOWN));
        }
        let (next, go) = next.unzip();
        let on = next.is_some();
        RUNNING.store(next);
        ENABLED.store(on, Ordering::Release);
        if let Some(go) = go {
            // Its thread holds the receiver until this is sent.
            let _ = go.send(());
        }
    }
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
    let _stopped = shutdown_within(FLUSH_AT_SHUTDOWN);
}

/// What [`shutdown_within`] waited for: the writers it joined (each ended:
/// its lines written, or dropped and counted) and those still blocked in a
/// write when it gave up. Both, so that a test can tell a shutdown that
/// waited for every writer from one that skipped some.
#[derive(Debug, Default, PartialEq, Eq)]
struct Stopped {
    joined: usize,
    blocked: usize,
}

/// Stop the running writer (within `limit`) and wait for it and for every
/// writer a reload replaced that is still draining (each within the time
/// it was given): a SIGTERM just after a reload that moved the log waited
/// only for the running one, and the old one's lines were lost with the
/// process, uncounted.
fn shutdown_within(limit: Duration) -> Stopped {
    let mut draining = CONFIGURE.lock().unwrap_or_else(|e| e.into_inner());
    ENABLED.store(false, Ordering::Release);
    if let Some(running) = RUNNING.swap(None) {
        draining.push(Draining::of(&running, limit));
        // The queue's sender goes with the last reference; a request
        // holding a momentary one finishes its `submit` first.
        drop(running);
    }
    // A writer that gave up notices within a poll (200 ms); one blocked in
    // a write (a reader that stopped reading) does not. Every deadline set
    // is at most `limit` from now.
    let waited = limit + Duration::from_secs(1);
    let until = std::time::Instant::now() + waited;
    let mut stopped = Stopped::default();
    for d in draining.drain(..) {
        if d.ended
            .wait(until.saturating_duration_since(std::time::Instant::now()))
        {
            // Ended (or its thread panicked): joined at once.
            if let Some(t) = d.thread {
                let _ = t.join();
            }
            stopped.joined += 1;
        } else {
            stopped.blocked += 1;
            warn!(path = %writer::shown(&d.path), waited_ms = waited.as_millis() as u64, "access log writer still blocked at shutdown (a FIFO without a reader?); exiting without the lines it holds");
        }
    }
    stopped
}

/// `hotproxy check`: whether `run` could open the configured access log
/// (creating nothing), with the message `run` would stop with.
pub fn preview(config: &AccessLogConfig) -> Result<(), String> {
    writer::preview(&config.path)
}

/// Whether an access log is configured (requests skip all bookkeeping when not).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
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

/// SIGUSR1: every writer reopens the file at its path before its next
/// line. Counted for all of them, not asked of the running one: a reload
/// that changes the log opens the new writer's file before it makes it the
/// running one ([`prepare`]), and a signal in between, told only the old
/// writer, left the new one writing in the moved file until the next.
pub fn reopen() {
    writer::ROTATIONS.fetch_add(1, Ordering::SeqCst);
    let running = RUNNING.load();
    if let Some(r) = running.as_ref() {
        // Wake it if idle; a full queue means it is busy and will see the
        // count between two lines.
        let _ = r.tx.try_send(Msg::Reopen);
    }
}

static REFUSALS: LazyLock<RateLimit> = LazyLock::new(|| RateLimit::new(Duration::from_secs(60)));

/// A refused handshake: one line per (listener, client IP, reason) per
/// minute, so a client retrying in a loop cannot flood the log. `sni` is
/// its ClientHello's, when it got that far; `answered`, the status and
/// body bytes sent in the clear (plain HTTP's `400`); `accepted`, when
/// the connection was accepted (its `duration_ms` runs from there).
pub fn handshake_refused(
    listener: &Arc<str>,
    client_addr: SocketAddr,
    reason: &'static str,
    sni: Option<Arc<str>>,
    answered: Option<(u16, u64)>,
    accepted: std::time::Instant,
) {
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
        sni,
        client_addr,
        reason,
        duration: accepted.elapsed(),
        answered,
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
mod tests;
