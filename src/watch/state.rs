//! The watcher thread's state machine: events and polls mark subjects, debounce, report, re-arm.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

pub(super) use super::events::may_change_content;
use super::events::{Filter, completes_a_write, is_gone, moves_away, refilter, reindexing};
use super::stat::{Leading, Link, Sig, chains, dir_id, forget_id, last_change_ago, thread_cpu};
use super::{Msg, Subject};
use crate::config::WatchConfig;

/// When a marked subject is reported.
#[derive(Clone, Copy, Debug)]
struct Due {
    /// After the quiet period of the latest mark, never past `latest`.
    at: Instant,
    /// [`HOLD_DEBOUNCES`] after the first mark since the last report.
    latest: Instant,
}

struct Tracked {
    paths: Vec<PathBuf>,
    links: Vec<Link>,
    sigs: Vec<Sig>,
}

pub(super) struct State {
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
    /// The directory each watch was placed on (device, inode), to tell
    /// when its path names another one.
    watched_ids: HashMap<PathBuf, (u64, u64)>,
    /// The path each watched directory is watched by, by (device, inode).
    /// inotify has one watch per directory however many paths lead to it
    /// (bind mounts, one volume at two mountPaths) and notify names its
    /// events by one of them: a second path is left to polling.
    watched_by_id: HashMap<(u64, u64), PathBuf>,
    /// Directories whose watch failed, already said: while degraded every
    /// report tries them again, and with thousands (an exhausted inotify
    /// limit) a warning each time would flood the log at every rotation.
    unwatchable: HashSet<PathBuf>,
    /// Watched directories themselves moved or deleted (inotify watches an
    /// inode: the watch went with the old one, `mv certs certs.old`, or away
    /// with it): placed again at the next report, on what the path names now.
    moved: HashSet<PathBuf>,
    dirty: HashMap<Subject, Due>,
    next_poll: Instant,
    /// With events on and the poll off, when the watched directories are
    /// next checked to be the ones their paths name ([`WATCH_CHECK`]).
    next_watch_check: Instant,
    /// What the poll under way has yet to look at: a pass over 10,000 entries
    /// takes a good part of a second, so it runs a slice at a time and events
    /// (a rotation) are handled in between, not after it.
    polling: Vec<Subject>,
    /// When the poll under way began and the time its slices took so far.
    pass_started: Instant,
    pass_busy: Duration,
    /// Whether a stretched poll period was logged (once, not every pass).
    stretch_logged: bool,
    degraded: bool,
    /// While the events configured cannot be had (no inotify instance left):
    /// what a new one sends on, tried each poll pass and every [`WATCH_CHECK`].
    events_tx: Option<std_mpsc::Sender<Msg>>,
    next_events_try: Instant,
    /// `by_link`'s and `by_dir`'s keys, for notify's callback
    /// ([`super::events`]), kept while events are on, before any report.
    relevant: Filter,
    /// Run by [`State::fire_due`] between its walk of the chains and the
    /// filter's update: a test's change landing in that window.
    #[cfg(test)]
    after_walk: Option<Box<dyn FnMut() + Send>>,
}

impl State {
    pub(super) fn new(
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
            next_watch_check: Instant::now() + WATCH_CHECK,
            config,
            poll_interval,
            notify,
            out,
            subjects: HashMap::new(),
            by_link: HashMap::new(),
            by_dir: HashMap::new(),
            watched: HashSet::new(),
            watched_ids: HashMap::new(),
            watched_by_id: HashMap::new(),
            unwatchable: HashSet::new(),
            moved: HashSet::new(),
            dirty: HashMap::new(),
            polling: Vec::new(),
            pass_started: Instant::now(),
            pass_busy: Duration::ZERO,
            stretch_logged: false,
            degraded: false,
            events_tx: None,
            next_events_try: Instant::now(),
            relevant: Filter::default(),
            #[cfg(test)]
            after_walk: None,
        }
    }

    /// The filter notify's callback reads (the one given to
    /// [`super::events_watcher`]), kept up to date from now on.
    pub(super) fn share(&mut self, relevant: Filter) {
        self.relevant = relevant;
        refilter(&self.relevant, &self.by_link, &self.by_dir, None);
    }

    /// Events were configured but no watcher could be had (inotify's
    /// instance limit spent): degraded, and a new one tried at each poll
    /// pass, at least every [`WATCH_CHECK`], with `tx` for its events.
    pub(super) fn events_unavailable(&mut self, tx: std_mpsc::Sender<Msg>) {
        self.events_tx = Some(tx);
        self.next_events_try = Instant::now() + self.poll_interval.min(WATCH_CHECK);
        self.set_degraded(true);
    }

    /// Try again for the events [`State::events_unavailable`] lacked. One
    /// `inotify_init1`: the end of what failed it (instances another
    /// process gave back, `fs.inotify.max_user_instances` raised) has no
    /// event to say so. Once it works, the poll interval configured is
    /// back (a watch that fails forces 2s again), every directory is
    /// watched, and a pass at once sees what changed meanwhile.
    fn try_events(&mut self) {
        let Some(tx) = &self.events_tx else {
            return;
        };
        match super::events_watcher(tx, &self.relevant) {
            Ok(w) => {
                info!("filesystem events available again; watching");
                (self.notify, self.events_tx) = (Some(w), None);
                // Kept only while events are on: brought up to the index.
                refilter(&self.relevant, &self.by_link, &self.by_dir, None);
                self.rearm();
                self.polling = self.subjects.keys().cloned().collect();
                (self.pass_started, self.pass_busy) = (Instant::now(), Duration::ZERO);
                self.next_poll = Instant::now() + self.poll_interval;
            }
            Err(e) => debug!(error = %e, "filesystem events still unavailable; still polling"),
        }
    }

    pub(super) fn run(&mut self, rx: std_mpsc::Receiver<Msg>) {
        loop {
            let now = Instant::now();
            let mut wake = self
                .dirty
                .values()
                .map(|due| due.at)
                .min()
                .unwrap_or(now + Duration::from_secs(3600));
            if !self.poll_interval.is_zero() {
                wake = wake.min(self.next_poll);
            }
            if self.checks_watches() {
                wake = wake.min(self.next_watch_check);
            }
            if self.events_tx.is_some() {
                wake = wake.min(self.next_events_try);
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
            self.timers();
        }
    }

    /// What is due once the messages that arrived are taken in: a poll
    /// pass or its next slice, the check of the watches, the reports.
    fn timers(&mut self) {
        let now = Instant::now();
        let pass =
            self.polling.is_empty() && !self.poll_interval.is_zero() && now >= self.next_poll;
        if self.events_tx.is_some() && (pass || now >= self.next_events_try) {
            self.next_events_try = now + self.poll_interval.min(WATCH_CHECK);
            self.try_events();
        }
        if pass {
            if self.degraded {
                // A failure may end with no event to say so (inotify's limit
                // raised, watches given back elsewhere): each pass tries the
                // failed watches again, so the gauge lasts no longer than it.
                self.rearm();
            }
            self.polling = self.subjects.keys().cloned().collect();
            self.next_poll = now + self.poll_interval;
            self.pass_started = now;
            self.pass_busy = Duration::ZERO;
        }
        if !self.polling.is_empty() {
            self.poll();
        }
        if self.checks_watches() && now >= self.next_watch_check {
            self.check_watches();
            self.next_watch_check = now + WATCH_CHECK;
        }
        self.fire_due();
    }

    fn set(&mut self, subjects: Vec<(Subject, Vec<PathBuf>)>) {
        let old = std::mem::take(&mut self.subjects);
        self.by_link.clear();
        self.by_dir.clear();
        let keep: HashSet<&Subject> = subjects.iter().map(|(s, _)| s).collect();
        self.dirty.retain(|s, _| keep.contains(s));
        // From here to `refilter`, events go through: see `super::events`.
        if self.notify.is_some() {
            reindexing(&self.relevant);
        }
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
        // Before any report: see `super::events`. With events off, no filter.
        if self.notify.is_some() {
            refilter(&self.relevant, &self.by_link, &self.by_dir, None);
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
            forget_id(&mut self.watched_ids, &mut self.watched_by_id, &dir);
        }
        // No longer needed by any chain: a later failure there is news.
        let by_dir = &self.by_dir;
        self.unwatchable.retain(|d| by_dir.contains_key(d));
        // Watches this pass placed: a parent among them was not watching
        // when its child went or came, and has no event about it to give.
        let mut placed = HashSet::new();
        let mut vanished = Vec::new();
        let mut failed = false;
        // Failures already warned about, tried again: one debug line for
        // them all (thousands, with inotify's limit spent, at every pass).
        let mut still_failing = 0usize;
        for dir in missing {
            let id = dir_id(&dir);
            if let Some(other) = id.and_then(|id| self.watched_by_id.get(&id)) {
                // Watching it here too would move the one watch's name
                // (every event for `other`'s files lost) and unwatching
                // either path would end it for both.
                if self.unwatchable.insert(dir.clone()) {
                    warn!(path = %crate::material::shown_path(&dir), same_as = %crate::material::shown_path(other), "directory is already watched under another path (a bind mount, or one volume mounted twice), and filesystem events name one path only; relying on polling for this one");
                }
                failed = true;
                continue;
            }
            match notify.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.unwatchable.remove(&dir);
                    if let Some(id) = id {
                        self.watched_ids.insert(dir.clone(), id);
                        self.watched_by_id.insert(id, dir.clone());
                    }
                    placed.insert(dir.clone());
                    self.watched.insert(dir);
                }
                Err(e) => {
                    // ENOSPC (inotify limit), permissions: polling covers
                    // the directory, loudly. A directory deleted between
                    // being seen and being watched (kubelet removes a
                    // `..<timestamp>` directory right after a swap) is
                    // routine: polling covers it until the next re-arm
                    // drops it from the chains, and nothing is wrong.
                    if is_gone(&e) {
                        // Chains hold only directories that existed: not
                        // degraded, no gauge. Under a parent watched all
                        // along (kubelet's `..<timestamp>`), the parent's
                        // event about the removal re-arms. Otherwise
                        // (`/etc/tls` of `/etc/tls/tls.crt`, where only
                        // `/etc/tls` was watched) nothing would ever tell.
                        let told = dir
                            .parent()
                            .is_some_and(|p| self.watched.contains(p) && !placed.contains(p));
                        if !told {
                            vanished.push(dir.clone());
                        }
                        debug!(path = %crate::material::shown_path(&dir), parent_watched = told, "directory vanished before it could be watched; re-arming from its parent");
                        continue;
                    }
                    if self.unwatchable.insert(dir.clone()) {
                        warn!(path = %crate::material::shown_path(&dir), error = %e, "cannot watch directory; relying on polling");
                    } else {
                        still_failing += 1;
                    }
                    failed = true;
                }
            }
        }
        if still_failing > 0 {
            debug!(
                directories = still_failing,
                "directories still cannot be watched; still polling"
            );
        }
        if failed {
            self.set_degraded(true);
            if self.poll_interval.is_zero() {
                self.poll_interval = Duration::from_secs(2);
                self.next_poll = Instant::now() + self.poll_interval;
            }
        }
        // The chains the watches came too late for: walked again.
        self.walk_again(&vanished, &placed);
        // Every directory a chain needs is watched again: events work, so the
        // poll goes back under its CPU cap, re-arms to the directories a change
        // touched, and the interval to the one configured (2s forced on 0).
        if self.degraded && self.by_dir.keys().all(|d| self.watched.contains(d)) {
            self.set_degraded(false);
            self.poll_interval = self.config.poll_interval;
            self.next_poll = Instant::now() + self.poll_interval;
            info!(
                watched = self.watched.len(),
                "every watched directory has its filesystem watch again; no longer relying on polling"
            );
        }
    }

    /// The degraded flag and its gauge, `hotproxy_watch_degraded`.
    fn set_degraded(&mut self, degraded: bool) {
        self.degraded = degraded;
        crate::metrics::METRICS
            .watch_degraded
            .set(i64::from(degraded));
    }

    /// Report `subject` after `delay` of quiet; the latest event decides,
    /// so a data write after a rename pushes the report out again, but
    /// never past [`HOLD_DEBOUNCES`] after the first unreported mark: a
    /// file touched every 20 ms would otherwise never be read.
    fn mark(&mut self, subject: Subject, delay: Duration) {
        let now = Instant::now();
        let at = now + delay;
        let latest = self.latest_from(now);
        self.dirty
            .entry(subject)
            .and_modify(|due| due.at = at.min(due.latest))
            .or_insert(Due {
                at: at.min(latest),
                latest,
            });
    }

    /// The latest report for a subject first marked at `now`.
    fn latest_from(&self, now: Instant) -> Instant {
        let hold = self.config.debounce.saturating_mul(HOLD_DEBOUNCES);
        now.checked_add(hold).unwrap_or(now + self.config.debounce)
    }

    /// What the poll saw: report `subject` after `delay`, unless an event
    /// already set an earlier report. The poll is the safety net for
    /// events that never come; it must never postpone one that did (a
    /// rename's 10 ms deadline pushed to the full debounce by a stat pass
    /// that happened to see the same change: ~0.5 % of rotations took
    /// ~100 ms instead of ~12).
    fn mark_from_poll(&mut self, subject: Subject, delay: Duration) {
        let now = Instant::now();
        let at = now + delay;
        let latest = self.latest_from(now);
        self.dirty
            .entry(subject)
            .and_modify(|due| due.at = due.at.min(at))
            .or_insert(Due {
                at: at.min(latest),
                latest,
            });
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
        let gone = moves_away(&ev.kind);
        let mut hit = Vec::new();
        for path in &ev.paths {
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            if let Some(s) = self.by_link.get(&(dir.to_path_buf(), name.to_os_string())) {
                hit.extend(s.iter().cloned());
            }
            // A watched directory itself deleted or moved: everything in
            // it, and its watch placed again on what the path names now; so
            // every one under it, whose watch notify drops with it (by path).
            if gone && self.watched.contains(path) {
                for dir in self.watched.iter().filter(|d| d.starts_with(path)) {
                    self.moved.insert(dir.clone());
                    hit.extend(self.by_dir.get(dir).into_iter().flatten().cloned());
                }
            }
            if let Some(s) = self.by_dir.get(path) {
                hit.extend(s.iter().cloned());
                if gone {
                    self.moved.insert(path.clone());
                }
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

    /// Whether [`State::check_watches`] runs: events on and no poll, which
    /// would otherwise see what it sees, through the files.
    fn checks_watches(&self) -> bool {
        self.notify.is_some() && self.poll_interval.is_zero()
    }

    /// Report the subjects of every watched directory its path no longer
    /// names: an ancestor was moved (`mv /etc/tls /etc/tls.old`), and
    /// inotify told only the ancestor's parent, which is not watched; the
    /// watch went with the old directory. [`State::fire_due`] then places
    /// it on what the path names now. One stat per watched directory.
    fn check_watches(&mut self) {
        let moved: Vec<PathBuf> = self
            .watched_ids
            .iter()
            .filter(|(dir, id)| dir_id(dir) != Some(**id))
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in moved {
            debug!(path = %crate::material::shown_path(&dir), "a watched directory is not the one its path names now; watching that one");
            let subjects: Vec<Subject> = self
                .by_dir
                .get(&dir)
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            for s in subjects {
                self.mark(s, SETTLED.min(self.config.debounce));
            }
        }
    }

    /// Look at the next [`POLL_SLICE`] subjects of the poll under way.
    fn poll(&mut self) {
        // CPU time, not time on the clock: on NFS or EFS a stat waits on
        // the network without using the CPU the stretch protects, and a
        // 30 s stall would otherwise push the next pass 10 minutes out.
        let (cpu, clock) = (thread_cpu(), Instant::now());
        self.poll_slice();
        self.pass_busy += match (cpu, thread_cpu()) {
            (Some(before), Some(after)) => after.saturating_sub(before),
            _ => clock.elapsed(),
        };
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
            self.mark_from_poll(s, delay);
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
            .filter(|(_, due)| due.at <= now)
            .map(|(s, _)| s.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        // A watched directory its path no longer names, though no event
        // said so: an ancestor was replaced (`mv /etc/tls /etc/tls.old; mv
        // /etc/tls.new /etc/tls` tells only the unwatched parent), or a
        // delete and recreate was lost in an overflow. The poll saw the
        // files change; the watch must follow too, or events stay on the
        // old directory for good.
        let dirs: HashSet<&PathBuf> = due
            .iter()
            .filter_map(|s| self.subjects.get(s))
            .flat_map(|t| t.links.iter().map(|(dir, _)| dir))
            .collect();
        // Each directory once: thousands of due subjects may share one.
        let ids = &self.watched_ids;
        let elsewhere = |d: &&PathBuf| ids.get(*d).is_some_and(|id| dir_id(d) != Some(*id));
        self.moved
            .extend(dirs.into_iter().filter(elsewhere).cloned());
        // Directories whose watch may need to change: first those whose
        // watch no longer follows their path.
        let mut touched = std::mem::take(&mut self.moved);
        if let Some(notify) = self.notify.as_mut() {
            for dir in &touched {
                // Gone already when the directory was deleted.
                let _ = notify.unwatch(dir);
                self.watched.remove(dir);
                forget_id(&mut self.watched_ids, &mut self.watched_by_id, dir);
            }
        }
        // From here to `refilter`, events go through: see `super::events`.
        let events = self.notify.is_some();
        if events {
            reindexing(&self.relevant);
        }
        let mut leading = Leading::default();
        let mut moved_links = Vec::new();
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
                touched.extend(old.iter().chain(&links).map(|(dir, _)| dir.clone()));
                moved_links.extend(old.into_iter().chain(links));
            }
        }
        #[cfg(test)]
        if let Some(hook) = self.after_walk.as_mut() {
            hook();
        }
        // Before the reports: see `super::events`.
        if events {
            let moved = Some(&moved_links[..]);
            refilter(&self.relevant, &self.by_link, &self.by_dir, moved);
        }
        if !touched.is_empty() || self.degraded {
            // Degraded: a watch that failed (a directory not there yet)
            // is tried again at every report, which the poll brings.
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

/// How often, with the poll off, the watched directories are checked to be
/// the ones their paths name: no event says when an ancestor moves.
const WATCH_CHECK: Duration = Duration::from_secs(2);

/// Subjects one step of a poll looks at: a few milliseconds of stats at
/// most (a certbot lineage costs ~50µs), the longest an event waits.
pub(super) const POLL_SLICE: usize = 64;

/// How long to coalesce after an event that ends a write: long enough to
/// gather the burst of one kubelet swap or `mv`, short enough not to show.
const SETTLED: Duration = Duration::from_millis(10);

/// The longest a subject's report waits, in debounces, counted from its
/// first change since it was last reported: each event pushes the report
/// a debounce out again, and a file touched without pause (a chmod or
/// `touch` loop, a writer appending forever) must still be read.
pub(super) const HOLD_DEBOUNCES: u32 = 10;

mod placed;
#[cfg(test)]
mod tests;
