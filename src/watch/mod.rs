//! Directory watches plus a stat poll, debounced into "this subject may have changed".
//!
//! For every configured path we follow its symlink chain by hand and watch
//! (non-recursively) each directory that holds a link of the chain or the
//! final file: `/secret` and `/secret/..2026_11_23…` for a kubelet volume,
//! `live/x` and `archive/x` for certbot. Never the file itself: inotify on a
//! file follows an inode that kubelet deletes. After every change the chain
//! is recomputed and the watches re-armed. A poll of `(dev, ino, len,
//! mtime, ctime, link target)` over the same chain catches what events miss
//! (network filesystems, overflowed queues, writes behind a symlink).
//!
//! Any event or poll difference only means "maybe changed": after
//! `debounce` of quiet the subject is reported; the reloader decides by
//! content hash. An event that says a write is complete (a rename, a new
//! link, a file closed after writing, a removal) only waits [`SETTLED`], so
//! a kubelet swap or a certbot relink is served within milliseconds; a
//! write still in progress keeps the full debounce. One thread owns all
//! state; no locks. It stays cheap with 10,000 entries: a poll runs in
//! slices with events handled in between, looks at the directories chains
//! share once per pass, and a moved chain re-indexes only its own subject.
//! While events work, a pass that is slow (thousands of entries) is spread
//! out so the poll stays under 5% of a core.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::WatchConfig;

/// What a change notification is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// The configuration file.
    Config,
    /// A catalogue entry, by id.
    Entry(String),
}

enum Msg {
    Event(notify::Result<notify::Event>),
    Set(Vec<(Subject, Vec<PathBuf>)>),
    Stop,
}

/// Watches the files behind every subject. Any event or poll difference
/// means "maybe changed": after `debounce` of quiet the subject is sent on
/// the channel; the reloader decides by content hash.
pub struct Watcher {
    tx: std_mpsc::Sender<Msg>,
}

impl Watcher {
    /// Start watching nothing; call [`Watcher::set`] to say what to watch.
    pub fn start(config: WatchConfig) -> (Watcher, mpsc::UnboundedReceiver<Subject>) {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (tx, rx) = std_mpsc::channel();
        let notify = if config.events {
            let events = tx.clone();
            match notify::recommended_watcher(move |res| {
                let _ = events.send(Msg::Event(res));
            }) {
                Ok(w) => Some(w),
                Err(e) => {
                    warn!(error = %e, "filesystem events unavailable; falling back to polling");
                    None
                }
            }
        } else {
            None
        };
        let mut state = State::new(config, notify, out_tx);
        std::thread::Builder::new()
            .name("hotproxy-watch".into())
            .spawn(move || state.run(rx))
            .expect("spawn the watch thread");
        (Watcher { tx }, out_rx)
    }

    /// Replace the watched set: each subject with the paths behind it.
    pub fn set(&self, subjects: Vec<(Subject, Vec<PathBuf>)>) {
        let _ = self.tx.send(Msg::Set(subjects));
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
    }
}

/// One step of a path's resolution: a name inside a directory.
type Link = (PathBuf, OsString);

/// Stat of one link of the chain: what the poll compares.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sig {
    Missing,
    Present {
        dev: u64,
        ino: u64,
        len: u64,
        mtime_ns: i64,
        ctime_ns: i64,
        target: Option<PathBuf>,
    },
}

struct Tracked {
    paths: Vec<PathBuf>,
    links: Vec<Link>,
    sigs: Vec<Sig>,
}

struct State {
    config: WatchConfig,
    poll_interval: Duration,
    notify: Option<notify::RecommendedWatcher>,
    out: mpsc::UnboundedSender<Subject>,
    subjects: HashMap<Subject, Tracked>,
    /// (directory, name) -> subjects whose chain passes there.
    by_link: HashMap<Link, HashSet<Subject>>,
    /// directory -> subjects with a link in it (for events without a name).
    by_dir: HashMap<PathBuf, HashSet<Subject>>,
    watched: HashSet<PathBuf>,
    dirty: HashMap<Subject, Instant>,
    next_poll: Instant,
    /// What the poll under way has yet to look at. A poll over 10,000
    /// entries takes a good part of a second; it runs a slice at a time so
    /// that events (a rotation) are handled in between, not after it.
    polling: Vec<Subject>,
    /// When the poll under way began and the time its slices took so far.
    pass_started: Instant,
    pass_busy: Duration,
    /// Whether a stretched poll period was logged (once, not every pass).
    stretch_logged: bool,
    degraded: bool,
}

impl State {
    fn new(
        config: WatchConfig,
        notify: Option<notify::RecommendedWatcher>,
        out: mpsc::UnboundedSender<Subject>,
    ) -> State {
        let mut poll_interval = config.poll_interval;
        if notify.is_none() && poll_interval.is_zero() {
            warn!(
                "no filesystem events and poll_interval is 0: polling every 2s anyway so changes are never missed"
            );
            poll_interval = Duration::from_secs(2);
        }
        State {
            next_poll: Instant::now() + poll_interval,
            config,
            poll_interval,
            notify,
            out,
            subjects: HashMap::new(),
            by_link: HashMap::new(),
            by_dir: HashMap::new(),
            watched: HashSet::new(),
            dirty: HashMap::new(),
            polling: Vec::new(),
            pass_started: Instant::now(),
            pass_busy: Duration::ZERO,
            stretch_logged: false,
            degraded: false,
        }
    }

    fn run(&mut self, rx: std_mpsc::Receiver<Msg>) {
        loop {
            let now = Instant::now();
            let mut wake = self
                .dirty
                .values()
                .min()
                .copied()
                .unwrap_or(now + Duration::from_secs(3600));
            if !self.poll_interval.is_zero() {
                wake = wake.min(self.next_poll);
            }
            if !self.polling.is_empty() {
                // A poll is under way: take in what arrived, then go on.
                wake = now;
            }
            let mut next = match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(msg) => Some(msg),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            };
            // Take the whole burst (one rotation is a dozen events) before
            // a poll slice or a report, not one event per turn.
            while let Some(msg) = next {
                match msg {
                    Msg::Event(ev) => self.on_event(ev),
                    Msg::Set(subjects) => self.set(subjects),
                    Msg::Stop => return,
                }
                next = match rx.try_recv() {
                    Ok(msg) => Some(msg),
                    Err(std_mpsc::TryRecvError::Empty) => None,
                    Err(std_mpsc::TryRecvError::Disconnected) => return,
                };
            }
            let now = Instant::now();
            if self.polling.is_empty() && !self.poll_interval.is_zero() && now >= self.next_poll {
                self.polling = self.subjects.keys().cloned().collect();
                self.next_poll = now + self.poll_interval;
                self.pass_started = now;
                self.pass_busy = Duration::ZERO;
            }
            if !self.polling.is_empty() {
                self.poll();
            }
            self.fire_due();
        }
    }

    fn set(&mut self, subjects: Vec<(Subject, Vec<PathBuf>)>) {
        let old = std::mem::take(&mut self.subjects);
        self.by_link.clear();
        self.by_dir.clear();
        let keep: HashSet<&Subject> = subjects.iter().map(|(s, _)| s).collect();
        self.dirty.retain(|s, _| keep.contains(s));
        let mut leading = Leading::default();
        for (subject, paths) in subjects {
            let (links, fresh) = chains(&paths, &mut leading);
            // A subject already watched with the same paths keeps its
            // baseline, so a change landing during a reconfigure is not lost.
            let sigs = match old.get(&subject) {
                Some(t) if t.paths == paths && t.links == links => t.sigs.clone(),
                _ => {
                    // The caller read these files before this baseline was
                    // taken: report once so a change in between is not lost
                    // (the reloader's hash check makes it free otherwise).
                    self.mark(subject.clone(), SETTLED.min(self.config.debounce));
                    fresh
                }
            };
            self.index(&subject, &links);
            self.subjects
                .insert(subject, Tracked { paths, links, sigs });
        }
        self.rearm();
    }

    fn index(&mut self, subject: &Subject, links: &[Link]) {
        for link in links {
            self.by_link
                .entry(link.clone())
                .or_default()
                .insert(subject.clone());
            self.by_dir
                .entry(link.0.clone())
                .or_default()
                .insert(subject.clone());
        }
    }

    /// Undo [`State::index`] of `links` for `subject`.
    fn unindex(&mut self, subject: &Subject, links: &[Link]) {
        for link in links {
            if let Some(s) = self.by_link.get_mut(link) {
                s.remove(subject);
                if s.is_empty() {
                    self.by_link.remove(link);
                }
            }
            if let Some(s) = self.by_dir.get_mut(&link.0) {
                s.remove(subject);
                if s.is_empty() {
                    self.by_dir.remove(&link.0);
                }
            }
        }
    }

    /// Watch exactly the directories some chain needs.
    fn rearm(&mut self) {
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|d| !self.by_dir.contains_key(*d))
            .cloned()
            .collect();
        let missing: Vec<PathBuf> = self
            .by_dir
            .keys()
            .filter(|d| !self.watched.contains(*d))
            .cloned()
            .collect();
        self.apply_watches(stale, missing);
    }

    /// [`State::rearm`] when only chains through `touched` directories
    /// moved: the other watches are not looked at (with 10,000 entries,
    /// going over all of them would cost more than the rotation itself).
    /// Once a watch has failed, every re-arm retries it: back to the full pass.
    fn rearm_dirs(&mut self, touched: HashSet<PathBuf>) {
        if self.degraded {
            return self.rearm();
        }
        let (mut stale, mut missing) = (Vec::new(), Vec::new());
        for dir in touched {
            match (self.by_dir.contains_key(&dir), self.watched.contains(&dir)) {
                (false, true) => stale.push(dir),
                (true, false) => missing.push(dir),
                _ => {}
            }
        }
        self.apply_watches(stale, missing);
    }

    fn apply_watches(&mut self, stale: Vec<PathBuf>, missing: Vec<PathBuf>) {
        let Some(notify) = self.notify.as_mut() else {
            return;
        };
        for dir in stale {
            let _ = notify.unwatch(&dir);
            self.watched.remove(&dir);
        }
        for dir in missing {
            match notify.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir);
                }
                Err(e) => {
                    // ENOSPC (inotify limit), permissions, a racing delete:
                    // polling covers the directory, loudly.
                    if !self.degraded || !matches!(e.kind, notify::ErrorKind::PathNotFound) {
                        warn!(path = %dir.display(), error = %e, "cannot watch directory; relying on polling");
                    }
                    self.degraded = true;
                    if self.poll_interval.is_zero() {
                        self.poll_interval = Duration::from_secs(2);
                        self.next_poll = Instant::now() + self.poll_interval;
                    }
                }
            }
        }
    }

    /// Report `subject` after `delay` of quiet; the latest event decides,
    /// so a data write after a rename pushes the report out again.
    fn mark(&mut self, subject: Subject, delay: Duration) {
        self.dirty.insert(subject, Instant::now() + delay);
    }

    fn on_event(&mut self, ev: notify::Result<notify::Event>) {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                warn!(error = %e, "filesystem event error; re-checking everything");
                self.mark_all();
                return;
            }
        };
        if ev.need_rescan() {
            warn!("filesystem event queue overflowed; re-checking every watched file");
            self.mark_all();
            return;
        }
        if !may_change_content(&ev.kind) {
            return;
        }
        let mut hit = Vec::new();
        for path in &ev.paths {
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            if let Some(s) = self.by_link.get(&(dir.to_path_buf(), name.to_os_string())) {
                hit.extend(s.iter().cloned());
            }
            // A watched directory itself deleted or moved: everything in it.
            if let Some(s) = self.by_dir.get(path) {
                hit.extend(s.iter().cloned());
            }
        }
        let delay = if completes_a_write(&ev.kind) {
            SETTLED.min(self.config.debounce)
        } else {
            self.config.debounce
        };
        for s in hit {
            self.mark(s, delay);
        }
    }

    fn mark_all(&mut self) {
        let all: Vec<Subject> = self.subjects.keys().cloned().collect();
        for s in all {
            self.mark(s, self.config.debounce);
        }
    }

    /// Look at the next [`POLL_SLICE`] subjects of the poll under way.
    fn poll(&mut self) {
        let began = Instant::now();
        self.poll_slice();
        self.pass_busy += began.elapsed();
        if self.polling.is_empty() {
            self.pass_done();
        }
    }

    /// A poll pass ended: while filesystem events work, the next one waits
    /// until the poll stays under [`POLL_SHARE`] of a core.
    fn pass_done(&mut self) {
        let events_work = self.notify.is_some() && !self.degraded;
        let next = next_pass(
            self.pass_started,
            self.poll_interval,
            self.pass_busy,
            events_work,
        );
        if next > self.next_poll && !self.stretch_logged {
            self.stretch_logged = true;
            info!(
                entries = self.subjects.len(),
                poll_ms = self.pass_busy.as_millis() as u64,
                every_ms = next.duration_since(self.pass_started).as_millis() as u64,
                "the stat poll of every watched path is slow: polling less often than poll_interval to stay under 5% of a core; filesystem events still apply changes at once"
            );
        }
        self.next_poll = next;
    }

    fn poll_slice(&mut self) {
        let slice = self
            .polling
            .split_off(self.polling.len().saturating_sub(POLL_SLICE));
        let mut changed = Vec::new();
        let mut leading = Leading::default();
        for subject in slice {
            // Removed by a `set` since the poll began.
            let Some(t) = self.subjects.get(&subject) else {
                continue;
            };
            let (links, sigs) = chains(&t.paths, &mut leading);
            if sigs != t.sigs || links != t.links {
                // Nothing touched for a whole debounce: the write is over,
                // so do not make the poll's latency longer still.
                let delay = if last_change_ago(&sigs) >= self.config.debounce {
                    SETTLED.min(self.config.debounce)
                } else {
                    self.config.debounce
                };
                changed.push((subject, delay));
            }
        }
        for (s, delay) in changed {
            debug!(subject = ?s, "poll saw a change");
            self.mark(s, delay);
        }
    }

    /// Report subjects whose quiet period is over, re-arming their chains
    /// first: the reloader reads the files after the report, so any write
    /// after that read lands in a directory that is already watched.
    fn fire_due(&mut self) {
        let now = Instant::now();
        let due: Vec<Subject> = self
            .dirty
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(s, _)| s.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        // Directories whose watch may need to change.
        let mut touched = HashSet::new();
        let mut leading = Leading::default();
        for s in &due {
            self.dirty.remove(s);
            let Some(t) = self.subjects.get_mut(s) else {
                continue;
            };
            // The baseline is taken before the report: the reloader reads
            // after it, so a write in between shows in the next poll.
            let (links, sigs) = chains(&t.paths, &mut leading);
            t.sigs = sigs;
            if links != t.links {
                // Only this subject's links move in the index: a rotation
                // among 10,000 watched entries must not re-index them all.
                let old = std::mem::replace(&mut t.links, links.clone());
                self.unindex(s, &old);
                self.index(s, &links);
                touched.extend(old.into_iter().chain(links).map(|(dir, _)| dir));
            }
        }
        if !touched.is_empty() {
            self.rearm_dirs(touched);
        }
        for s in due {
            if self.subjects.contains_key(&s) {
                let _ = self.out.send(s);
            }
        }
    }
}

/// While filesystem events work, the poll (their safety net) gets at most
/// 1/`POLL_SHARE` of a core: with 10,000 certbot lineages a pass is a few
/// hundred milliseconds of path walks, 17% of a core every 2s otherwise.
const POLL_SHARE: u32 = 20;

/// When the poll pass after one that began at `started` and kept the
/// thread busy for `busy` is due: `poll_interval` after it, later when
/// events work and the poll would take more than its share. With polling
/// alone, the configured interval is what the operator asked for.
fn next_pass(started: Instant, interval: Duration, busy: Duration, events_work: bool) -> Instant {
    let due = started + interval;
    if events_work {
        due.max(started + busy * POLL_SHARE)
    } else {
        due
    }
}

/// Subjects one step of a poll looks at: a few milliseconds of stats at
/// most (a certbot lineage costs ~50µs), the longest an event waits.
const POLL_SLICE: usize = 64;

/// How long to coalesce after an event that ends a write: long enough to
/// gather the burst of one kubelet swap or `mv`, short enough not to show.
const SETTLED: Duration = Duration::from_millis(10);

/// Events after which the file's new content is complete: the atomic step of
/// kubelet, certbot and `mv` (rename, create, remove) and a writer closing
/// the file. A plain data write may be followed by more writes.
fn completes_a_write(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

/// Whether an event can mean new content. Opens, reads and read-only closes
/// cannot, and must be ignored: our own re-read opens the file, so reacting
/// to it would re-read forever (and so would any reader of the certificate,
/// a backup agent, a `cat`).
fn may_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(access) => *access == AccessKind::Close(AccessMode::Write),
        _ => true,
    }
}

/// What a pass over many chains found at their leading components (the
/// directories and symlinks before each last name). Chains share them
/// (every file under one certificate directory, every certbot lineage
/// under `live/`), so one pass (a poll, a `set`) looks at each once
/// instead of once per path: 10,000 entries cost a stat or two each, not
/// one per path component. Last names are always looked at afresh.
#[derive(Default)]
struct Leading(HashMap<PathBuf, Seen>);

/// One `lstat` (and `readlink` for a symlink): what a chain walk needs to
/// go on and what the poll compares, from the same system calls.
#[derive(Clone)]
struct Seen {
    sig: Sig,
    link: bool,
}

impl Leading {
    fn look(&mut self, path: &Path, last: bool) -> Seen {
        if let Some(seen) = self.0.get(path) {
            return seen.clone();
        }
        let seen = stat(path);
        if !last {
            self.0.insert(path.to_path_buf(), seen.clone());
        }
        seen
    }
}

fn stat(path: &Path) -> Seen {
    match std::fs::symlink_metadata(path) {
        Err(_) => Seen {
            sig: Sig::Missing,
            link: false,
        },
        Ok(m) => {
            let link = m.file_type().is_symlink();
            Seen {
                sig: Sig::Present {
                    dev: m.dev(),
                    ino: m.ino(),
                    len: m.len(),
                    mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                    ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
                    target: if link {
                        std::fs::read_link(path).ok()
                    } else {
                        None
                    },
                },
                link,
            }
        }
    }
}

/// The links of every path (see [`chain`]) with each link's [`Sig`],
/// taken by the same walk: the poll costs one stat per link, not two.
fn chains(paths: &[PathBuf], leading: &mut Leading) -> (Vec<Link>, Vec<Sig>) {
    let (mut links, mut sigs) = (Vec::new(), Vec::new());
    for p in paths {
        for (l, sig) in chain(p, leading) {
            if !links.contains(&l) {
                links.push(l);
                sigs.push(sig);
            }
        }
    }
    (links, sigs)
}

/// The links a path resolves through: the directory and name of the path
/// itself, of every symlink met on the way, and of the final file. A
/// missing directory is replaced by its nearest existing ancestor (and the
/// name of the child to wait for), so a deleted-and-recreated directory is
/// seen coming back.
fn chain(path: &Path, leading: &mut Leading) -> Vec<(Link, Sig)> {
    let mut links = Vec::new();
    let mut todo: Vec<OsString> = components(path);
    let mut prefix = PathBuf::from("/");
    let mut hops = 0;
    while let Some(c) = todo.first().cloned() {
        todo.remove(0);
        let candidate = prefix.join(&c);
        let last = todo.is_empty();
        let seen = leading.look(&candidate, last);
        match seen.sig {
            Sig::Present { ref target, .. } if seen.link && hops < 40 => {
                hops += 1;
                let target = target.clone();
                links.push(((prefix.clone(), c), seen.sig));
                let Some(target) = target else {
                    break;
                };
                let resolved = if target.is_absolute() {
                    target
                } else {
                    prefix.join(target)
                };
                let mut rest = components(&resolved);
                rest.extend(todo);
                todo = rest;
                prefix = PathBuf::from("/");
            }
            Sig::Present { .. } => {
                if last {
                    links.push(((prefix.clone(), c), seen.sig));
                }
                prefix = candidate;
            }
            Sig::Missing => {
                // Missing: watch the deepest existing directory for it.
                links.push(((prefix.clone(), c), Sig::Missing));
                break;
            }
        }
    }
    links
}

/// Normal components of an absolute path, with `.` and `..` applied
/// lexically (after symlinks are resolved by `chain`, which restarts from `/`).
fn components(path: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Time since the newest inode change (content, rename, chmod) in a chain.
fn last_change_ago(sigs: &[Sig]) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64;
    let newest = sigs
        .iter()
        .filter_map(|s| match s {
            Sig::Present { ctime_ns, .. } => Some(*ctime_ns),
            Sig::Missing => None,
        })
        .max()
        .unwrap_or(0);
    Duration::from_nanos(now.saturating_sub(newest).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn cfg(events: bool, poll: u64) -> WatchConfig {
        WatchConfig {
            debounce: Duration::from_millis(50),
            poll_interval: Duration::from_millis(poll),
            settle_timeout: Duration::from_secs(1),
            events,
        }
    }

    #[track_caller]
    fn expect(
        rx: &mut mpsc::UnboundedReceiver<Subject>,
        want: &Subject,
    ) -> impl Future<Output = ()> {
        let caller = std::panic::Location::caller();
        async move {
            let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
            assert_eq!(
                got.ok().flatten().as_ref(),
                Some(want),
                "subject not reported in time (at {caller})"
            );
        }
    }

    /// Wait until the watcher has processed `set` (its baseline is taken),
    /// by round-tripping a write to a sentinel subject.
    async fn settle(
        w: &Watcher,
        rx: &mut mpsc::UnboundedReceiver<Subject>,
        dir: &Path,
        subjects: Vec<(Subject, Vec<PathBuf>)>,
    ) {
        let sentinel = dir.join("sentinel");
        std::fs::write(&sentinel, "0").unwrap();
        let mut all = subjects;
        all.push((Subject::Entry("sentinel".into()), vec![sentinel.clone()]));
        let expected: HashSet<Subject> = all.iter().map(|(s, _)| s.clone()).collect();
        w.set(all);
        // Newly watched subjects are reported once after arming.
        let mut initial = HashSet::new();
        while initial.len() < expected.len() {
            let s = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap();
            initial.insert(s);
        }
        assert_eq!(initial, expected);
        // Retry the write until the sentinel is reported: proves the watch is armed.
        for i in 0..10 {
            std::fs::write(&sentinel, i.to_string()).unwrap();
            if let Ok(Some(s)) = tokio::time::timeout(Duration::from_millis(1000), rx.recv()).await
            {
                assert_eq!(
                    s,
                    Subject::Entry("sentinel".into()),
                    "unexpected report before any write"
                );
                return;
            }
        }
        panic!("watcher never armed");
    }

    fn kubelet_write(dir: &Path, generation: u32, content: &str) {
        let ts = dir.join(format!("..2026_11_23_10_00_0{generation}.1234"));
        std::fs::create_dir(&ts).unwrap();
        std::fs::write(ts.join("tls.crt"), content).unwrap();
        let _ = std::fs::remove_file(dir.join("..data_tmp"));
        symlink(ts.file_name().unwrap(), dir.join("..data_tmp")).unwrap();
        let old = std::fs::read_link(dir.join("..data")).ok();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        if !dir.join("tls.crt").exists() {
            symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(dir.join(old)).unwrap();
        }
    }

    /// kubelet's `..data` swap is seen, twice (the watch re-arms into the new directory).
    #[tokio::test]
    async fn kubelet_swap_seen_twice() {
        let d = tempfile::tempdir().unwrap();
        kubelet_write(d.path(), 1, "one");
        let (w, mut rx) = Watcher::start(cfg(true, 0));
        let s = Subject::Entry("edge".into());
        settle(
            &w,
            &mut rx,
            d.path(),
            vec![(s.clone(), vec![d.path().join("tls.crt")])],
        )
        .await;
        kubelet_write(d.path(), 2, "two");
        expect(&mut rx, &s).await;
        kubelet_write(d.path(), 3, "three");
        expect(&mut rx, &s).await;
        // In-place write inside the current timestamped directory.
        let target = d
            .path()
            .join("..data")
            .canonicalize()
            .unwrap()
            .join("tls.crt");
        std::fs::write(target, "four").unwrap();
        expect(&mut rx, &s).await;
    }

    /// certbot relinks live/ to a new archive file; later writes there are seen too.
    #[tokio::test]
    async fn certbot_relink_seen() {
        let d = tempfile::tempdir().unwrap();
        let archive = d.path().join("archive/x");
        let live = d.path().join("live/x");
        std::fs::create_dir_all(&archive).unwrap();
        std::fs::create_dir_all(&live).unwrap();
        std::fs::write(archive.join("cert1.pem"), "1").unwrap();
        symlink("../../archive/x/cert1.pem", live.join("cert.pem")).unwrap();
        let (w, mut rx) = Watcher::start(cfg(true, 0));
        let s = Subject::Entry("le".into());
        settle(
            &w,
            &mut rx,
            d.path(),
            vec![(s.clone(), vec![live.join("cert.pem")])],
        )
        .await;
        std::fs::write(archive.join("cert2.pem"), "2").unwrap();
        std::fs::remove_file(live.join("cert.pem")).unwrap();
        symlink("../../archive/x/cert2.pem", live.join("cert.pem")).unwrap();
        expect(&mut rx, &s).await;
        std::fs::write(archive.join("cert2.pem"), "2b").unwrap();
        expect(&mut rx, &s).await;
    }

    /// mv over the file, an in-place write, and a deleted-and-recreated directory are seen.
    #[tokio::test]
    async fn mv_cp_and_recreated_dir() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("certs");
        std::fs::create_dir(&dir).unwrap();
        let f = dir.join("tls.crt");
        std::fs::write(&f, "1").unwrap();
        let (w, mut rx) = Watcher::start(cfg(true, 0));
        let s = Subject::Entry("e".into());
        settle(&w, &mut rx, d.path(), vec![(s.clone(), vec![f.clone()])]).await;
        std::fs::write(dir.join("new"), "2").unwrap();
        std::fs::rename(dir.join("new"), &f).unwrap();
        expect(&mut rx, &s).await;
        std::fs::write(&f, "3").unwrap();
        expect(&mut rx, &s).await;
        std::fs::remove_dir_all(&dir).unwrap();
        expect(&mut rx, &s).await;
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(&f, "4").unwrap();
        expect(&mut rx, &s).await;
        std::fs::write(&f, "5").unwrap();
        expect(&mut rx, &s).await;
    }

    /// Without events, polling alone reports an in-place write.
    #[tokio::test]
    async fn polling_only() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tls.crt");
        std::fs::write(&f, "1").unwrap();
        let (w, mut rx) = Watcher::start(cfg(false, 100));
        let s = Subject::Entry("e".into());
        settle(&w, &mut rx, d.path(), vec![(s.clone(), vec![f.clone()])]).await;
        std::fs::write(&f, "22").unwrap();
        expect(&mut rx, &s).await;
    }

    /// A poll over more subjects than one slice still looks at every one.
    #[tokio::test]
    async fn polling_many_subjects() {
        let d = tempfile::tempdir().unwrap();
        let n = POLL_SLICE * 2 + 7;
        let files: Vec<PathBuf> = (0..n).map(|i| d.path().join(format!("{i}.crt"))).collect();
        for f in &files {
            std::fs::write(f, "1").unwrap();
        }
        let (w, mut rx) = Watcher::start(cfg(false, 100));
        let subjects = files
            .iter()
            .enumerate()
            .map(|(i, f)| (Subject::Entry(i.to_string()), vec![f.clone()]))
            .collect();
        settle(&w, &mut rx, d.path(), subjects).await;
        for i in [0, POLL_SLICE, n - 1] {
            std::fs::write(&files[i], "22").unwrap();
            expect(&mut rx, &Subject::Entry(i.to_string())).await;
        }
    }

    /// A burst of writes is one report; a file next door is not reported; a removed subject goes quiet.
    #[tokio::test]
    async fn debounce_and_filtering() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.crt");
        let b = d.path().join("b.crt");
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        let (w, mut rx) = Watcher::start(WatchConfig {
            debounce: Duration::from_millis(300),
            ..cfg(true, 0)
        });
        let (sa, sb) = (Subject::Entry("a".into()), Subject::Entry("b".into()));
        settle(
            &w,
            &mut rx,
            d.path(),
            vec![(sa.clone(), vec![a.clone()]), (sb.clone(), vec![b.clone()])],
        )
        .await;
        // One writer still holding the file open: data writes, no close.
        let mut open = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
        for i in 0..5 {
            std::io::Write::write_all(&mut open, format!("a{i}").as_bytes()).unwrap();
        }
        expect(&mut rx, &sa).await;
        drop(open);
        // The close completes the write: reported once more.
        expect(&mut rx, &sa).await;
        // Nothing else within a window longer than the debounce.
        assert!(
            tokio::time::timeout(Duration::from_millis(700), rx.recv())
                .await
                .is_err()
        );
        w.set(vec![(sb.clone(), vec![b.clone()])]);
        // Wait out a full debounce so `set` is processed before the writes.
        tokio::time::sleep(Duration::from_millis(400)).await;
        std::fs::write(&a, "gone").unwrap();
        std::fs::write(&b, "b2").unwrap();
        expect(&mut rx, &sb).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(700), rx.recv())
                .await
                .is_err()
        );
    }

    /// After a chain moves (a kubelet swap), only that subject is
    /// re-indexed, and the index is exactly what indexing everything anew
    /// gives; the new directory is watched, the deleted one is not.
    #[test]
    fn a_slow_poll_is_spread_out_only_while_events_work() {
        let t0 = Instant::now();
        let two = Duration::from_secs(2);
        // A quick pass keeps the configured period either way.
        assert_eq!(next_pass(t0, two, Duration::from_millis(3), true), t0 + two);
        // 330 ms of stats every 2s is 17% of a core: stretched to 5%.
        let busy = Duration::from_millis(330);
        assert_eq!(next_pass(t0, two, busy, true), t0 + busy * 20);
        // Polling alone: the period the operator configured.
        assert_eq!(next_pass(t0, two, busy, false), t0 + two);
    }

    #[test]
    fn incremental_reindex_matches_a_full_one() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        for dir in [&a, &b] {
            std::fs::create_dir(dir).unwrap();
            kubelet_write(dir, 1, "one");
        }
        let flat = d.path().join("flat.crt");
        std::fs::write(&flat, "x").unwrap();
        let notify = notify::recommended_watcher(|_| {}).unwrap();
        let (out, mut rx) = mpsc::unbounded_channel();
        let mut state = State::new(cfg(true, 0), Some(notify), out);
        let subjects = |n: &str, p: PathBuf| (Subject::Entry(n.into()), vec![p]);
        state.set(vec![
            subjects("a", a.join("tls.crt")),
            subjects("b", b.join("tls.crt")),
            subjects("flat", flat.clone()),
        ]);
        let old_dir = std::fs::read_link(a.join("..data")).unwrap();
        kubelet_write(&a, 2, "two");
        state.mark(Subject::Entry("a".into()), Duration::ZERO);
        state.fire_due();
        let mut fired = HashSet::new();
        while let Ok(s) = rx.try_recv() {
            fired.insert(s);
        }
        assert!(fired.contains(&Subject::Entry("a".into())));

        let (by_link, by_dir) = (state.by_link.clone(), state.by_dir.clone());
        state.by_link.clear();
        state.by_dir.clear();
        let all: Vec<(Subject, Vec<Link>)> = state
            .subjects
            .iter()
            .map(|(s, t)| (s.clone(), t.links.clone()))
            .collect();
        for (s, links) in &all {
            state.index(s, links);
        }
        assert_eq!(by_link, state.by_link);
        assert_eq!(by_dir, state.by_dir);
        let wanted: HashSet<PathBuf> = by_dir.keys().cloned().collect();
        assert_eq!(state.watched, wanted);
        assert!(!state.watched.contains(&a.join(old_dir)));
    }

    /// A completed write (rename, close after writing) is reported without
    /// waiting out the debounce: with a 60 s debounce, only the fast path can
    /// report within `expect`'s 5 s.
    #[tokio::test]
    async fn completed_writes_skip_the_debounce() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tls.crt");
        std::fs::write(&f, "1").unwrap();
        let (w, mut rx) = Watcher::start(WatchConfig {
            debounce: Duration::from_secs(60),
            ..cfg(true, 0)
        });
        let s = Subject::Entry("e".into());
        let sentinel = d.path().join("sentinel");
        std::fs::write(&sentinel, "0").unwrap();
        w.set(vec![
            (s.clone(), vec![f.clone()]),
            (Subject::Entry("sentinel".into()), vec![sentinel]),
        ]);
        // Both newly watched subjects are reported once after arming.
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap();
        }
        let tmp = d.path().join(".tls.crt.tmp");
        std::fs::write(&tmp, "2").unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        expect(&mut rx, &s).await;
        std::fs::write(&f, "3").unwrap();
        expect(&mut rx, &s).await;
    }

    /// Reading a watched file is not a change: our own re-read opens the
    /// file, and reacting to that would re-read it forever.
    #[tokio::test]
    async fn reads_are_not_changes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tls.crt");
        std::fs::write(&f, "1").unwrap();
        let sentinel = d.path().join("sentinel");
        std::fs::write(&sentinel, "0").unwrap();
        let (w, mut rx) = Watcher::start(WatchConfig {
            debounce: Duration::from_millis(1),
            ..cfg(true, 0)
        });
        let s = Subject::Entry("e".into());
        let t = Subject::Entry("sentinel".into());
        w.set(vec![
            (s.clone(), vec![f.clone()]),
            (t.clone(), vec![sentinel.clone()]),
        ]);
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap();
        }
        for _ in 0..5 {
            std::fs::read(&f).unwrap();
        }
        std::fs::write(&sentinel, "1").unwrap();
        // Had the reads counted, `e` would be due before the sentinel (same
        // 1 ms delay, marked earlier): reported before it or with it.
        let mut seen = Vec::new();
        while seen.last() != Some(&t) {
            let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
            seen.push(got.expect("sentinel reported").unwrap());
        }
        while let Ok(more) = rx.try_recv() {
            seen.push(more);
        }
        assert!(!seen.contains(&s), "reads reported as changes: {seen:?}");
        assert!(!may_change_content(&EventKind::Access(AccessKind::Open(
            notify::event::AccessMode::Any
        ))));
        assert!(may_change_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
    }
}
