//! The watcher state machine's tests: real directories, real inotify, the state driven by hand.

use super::*;
use crate::watch::tests::{cfg, kubelet_write};
use notify::event::{EventKind, ModifyKind};

/// A slow poll pass is stretched to its share of a core only while events work.
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

/// After a chain moves (a kubelet swap), only that subject is
/// re-indexed, and the index is exactly what indexing everything anew
/// gives; the new directory is watched, the deleted one is not.
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
    let relevant = super::super::events::Filter::default();
    state.share(relevant.clone());
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
    // notify's callback filters by what the index holds after the move.
    let keys = |r: &super::super::events::Relevant| (r.links.clone(), r.dirs.clone());
    let filtered = keys(&relevant.read().unwrap());
    let indexed = (
        state.by_link.keys().cloned().collect(),
        state.by_dir.keys().cloned().collect(),
    );
    assert_eq!(filtered, indexed);

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

/// A watched directory whose ancestor was replaced (`mv tls tls.old;
/// mv tls.new tls`: no event reaches the watch) is watched again where
/// its path now leads once the poll has seen its files change: later
/// writes in it raise events. The watch used to stay on the old
/// directory for good, leaving the poll alone to see rotations.
#[test]
fn a_watch_follows_its_path_when_an_ancestor_is_replaced() {
    let d = tempfile::tempdir().unwrap();
    for (tls, content) in [("tls", "1"), ("tls.new", "2")] {
        std::fs::create_dir_all(d.path().join(tls).join("current")).unwrap();
        std::fs::write(d.path().join(tls).join("current/tls.crt"), content).unwrap();
    }
    let (events, seen) = std::sync::mpsc::channel();
    let notify = notify::recommended_watcher(move |ev| {
        let _ = events.send(ev);
    })
    .unwrap();
    let (out, mut rx) = mpsc::unbounded_channel();
    let mut state = State::new(cfg(true, 0), Some(notify), out);
    let s = Subject::Entry("e".into());
    let current = d.path().join("tls/current");
    state.set(vec![(s.clone(), vec![current.join("tls.crt")])]);
    std::fs::rename(d.path().join("tls"), d.path().join("tls.old")).unwrap();
    std::fs::rename(d.path().join("tls.new"), d.path().join("tls")).unwrap();
    // What a poll does when it sees the file's signature change.
    state.mark(s.clone(), Duration::ZERO);
    state.fire_due();
    assert_eq!(rx.try_recv().ok(), Some(s));
    while seen.try_recv().is_ok() {}
    std::fs::write(current.join("tls.crt.new"), "3").unwrap();
    let event = seen
        .recv_timeout(Duration::from_secs(10))
        .expect("no event from the directory the path names now");
    assert!(event.is_ok(), "{event:?}");
}

/// While degraded, every report tries failed watches again; one that
/// still fails is warned about once, not at every report (with
/// inotify's limit spent that is thousands of lines per rotation).
#[test]
fn a_directory_that_cannot_be_watched_is_warned_about_once() {
    let d = tempfile::tempdir().unwrap();
    // A directory no watch can be placed on (ELOOP).
    let looped = d.path().join("loop");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let ((), text) = crate::logging::test_support::logged(tracing::Level::WARN, || {
        let notify = notify::recommended_watcher(|_| {}).unwrap();
        let (out, _rx) = mpsc::unbounded_channel();
        let mut state = State::new(cfg(true, 0), Some(notify), out);
        let s = Subject::Entry("e".into());
        state.set(vec![(s.clone(), vec![looped.join("tls.crt")])]);
        assert!(state.degraded);
        for _ in 0..3 {
            state.mark(s.clone(), Duration::ZERO);
            state.fire_due();
        }
    });
    assert_eq!(text.matches("cannot watch directory").count(), 1, "{text}");
}

/// The warning names the directory as every other line names a path
/// (`shown_path`): its `path` was written with `display()`, a byte that is
/// not UTF-8 as U+FFFD, the name of a directory that is not there.
#[test]
fn a_directory_that_cannot_be_watched_is_named_byte_by_byte() {
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().unwrap();
    let looped = d.path().join(std::ffi::OsStr::from_bytes(b"loop\x1b\xff"));
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let ((), text) = crate::logging::test_support::logged(tracing::Level::WARN, || {
        let notify = notify::recommended_watcher(|_| {}).unwrap();
        let (out, _rx) = mpsc::unbounded_channel();
        let mut state = State::new(cfg(true, 0), Some(notify), out);
        let s = Subject::Entry("e".into());
        state.set(vec![(s, vec![looped.join("tls.crt")])]);
    });
    let text = without_colours(&text);
    let shown = format!("{}/loop\\u{{1b}}\\xFF", d.path().display());
    assert!(text.contains("cannot watch directory"), "{text}");
    assert!(text.contains(&format!(" path={shown} ")), "{text}");
    assert!(!text.contains(['\u{fffd}', '\u{1b}']), "{text:?}");
}

/// `text` without the SGR sequences (`ESC [ 2 m`) the log's colours are:
/// any ESC left was written by what a line shows.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\u{1b}[") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let params = after
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b';');
        let len = params.count();
        match after[len..].strip_prefix('m') {
            Some(next) => rest = next,
            None => {
                out.push('\u{1b}');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The poll's cost is the CPU it uses: time a stat spends waiting (a
/// network filesystem) is not counted, so it does not stretch the next
/// pass. A thread that sleeps uses none.
#[test]
fn waiting_is_not_counted_as_the_polls_cost() {
    let cpu = || thread_cpu().expect("the kernel's schedstat");
    let before = cpu();
    let began = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    let waited = began.elapsed();
    let used = cpu().saturating_sub(before);
    assert!(used < waited / 2, "{used:?} of CPU over {waited:?} asleep");
    // And it moves when the thread works (bounded: a count, not a clock).
    let before = cpu();
    let mut x = 0u64;
    for _ in 0..1_000 {
        if cpu() > before {
            return;
        }
        for _ in 0..100_000 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
    panic!("no CPU counted for work ({x})");
}

/// A poll pass that sees a change an event already scheduled never
/// postpones it: the earliest deadline wins (issue 18: a stat pass
/// pushed a rename's 10 ms report to the full debounce).
#[test]
fn a_poll_never_postpones_an_event() {
    let (out, _rx) = mpsc::unbounded_channel();
    // A debounce as long as the poll's delay below, so that the hold
    // (HOLD_DEBOUNCES of them) does not cut it short.
    let config = WatchConfig {
        debounce: Duration::from_secs(60),
        ..cfg(false, 1)
    };
    let mut state = State::new(config, None, out);
    let s = Subject::Entry("edge".into());
    state.mark(s.clone(), Duration::from_millis(10));
    let event_due = state.dirty[&s].at;
    state.mark_from_poll(s.clone(), Duration::from_secs(60));
    assert_eq!(
        state.dirty[&s].at, event_due,
        "the poll moved the event's deadline"
    );
    // Without an event, the poll schedules the report itself.
    let other = Subject::Entry("other".into());
    let before = Instant::now();
    state.mark_from_poll(other.clone(), Duration::from_secs(60));
    assert!(state.dirty[&other].at >= before + Duration::from_secs(60));
}

/// One failed watch degrades the watcher only until every needed
/// directory is watched again: then the flag and its gauge clear
/// (before, the flag stayed for good: every change re-armed every
/// watch and the poll's CPU cap was lifted).
#[test]
fn degraded_clears_when_the_watches_re_arm() {
    let (d, dir, mut state, _rx) = unwatchable_dir();
    state.rearm();
    assert!(state.degraded);
    assert!(
        !state.poll_interval.is_zero(),
        "polling covers it meanwhile"
    );
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    state.rearm();
    assert!(!state.degraded, "re-armed, yet still degraded");
    assert!(state.watched.contains(&dir));
    // `poll_interval: 0` is back: no forced 2s poll for good, and the
    // check of the watches (which needs it 0) runs again.
    assert!(
        state.poll_interval.is_zero(),
        "the forced poll outlived the failed watch"
    );
    assert!(state.checks_watches());
    // A second, unrelated failure degrades again: the flag tracks now, not history.
    let stuck = d.path().join("stuck");
    std::os::unix::fs::symlink(&stuck, &stuck).unwrap();
    state.by_dir.insert(stuck.clone(), HashSet::new());
    state.rearm();
    assert!(state.degraded);
    state.by_dir.remove(&stuck);
    state.rearm();
    assert!(!state.degraded);
}

/// A watch that failed is tried again at each poll pass while the
/// watcher is degraded, though nothing changes on disk: a failure that
/// ends without an event (inotify's limit raised with `sysctl
/// fs.inotify.max_user_watches`, as the runbook says, or watches another
/// process gave back) ends the degradation. Only a report used to try
/// again, so `hotproxy_watch_degraded` (and its alert) stayed 1, and the
/// directory was left to the poll, until some certificate next changed.
#[test]
fn a_failed_watch_is_tried_again_with_nothing_changed() {
    let (_d, dir, mut state, _rx) = unwatchable_dir();
    // Warned about already: the warning's first use, from another thread
    // than the test that counts it, can race tracing's callsite cache
    // and leave that test's capture without it.
    state.unwatchable.insert(dir.clone());
    state.rearm();
    assert!(state.degraded);
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    // Nothing is due: the run loop's turn when the next poll pass is.
    assert!(state.dirty.is_empty());
    state.next_poll = Instant::now();
    state.timers();
    assert!(!state.degraded, "the failed watch was not tried again");
    assert!(state.watched.contains(&dir));
}

/// A directory that vanished between being resolved and being watched
/// (kubelet removes its `..<timestamp>` directory right after a swap) is
/// routine: its parent's watch sees the removal; nothing is degraded.
#[test]
fn a_directory_gone_before_its_watch_does_not_degrade() {
    let d = tempfile::tempdir().unwrap();
    let notify = notify::recommended_watcher(|_| {}).unwrap();
    let (out, _rx) = mpsc::unbounded_channel();
    let mut state = State::new(cfg(true, 0), Some(notify), out);
    state
        .by_dir
        .insert(d.path().join("..2026_12_01"), HashSet::new());
    state.rearm();
    assert!(!state.degraded, "a vanished directory degraded the watcher");
    assert!(state.poll_interval.is_zero(), "polling switched on for it");
}

/// A file that never goes quiet (`mv new.crt tls.crt`, then a chmod or
/// touch every 20 ms) is reported at the latest `HOLD_DEBOUNCES`
/// debounces after the rename, whatever keeps arriving: each event used
/// to push the report a whole debounce out again, so the old certificate
/// was served until the touching stopped.
#[test]
fn a_file_that_keeps_changing_is_reported_all_the_same() {
    use notify::event::{MetadataKind, RenameMode};
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("tls.crt");
    std::fs::write(&f, "1").unwrap();
    let (out, mut rx) = mpsc::unbounded_channel();
    let config = cfg(true, 0);
    let hold = config.debounce * HOLD_DEBOUNCES;
    let notify = notify::recommended_watcher(|_| {}).unwrap();
    let mut state = State::new(config, Some(notify), out);
    let s = Subject::Entry("e".into());
    state.set(vec![(s.clone(), vec![f.clone()])]);
    // The report `set` schedules for a new subject is not this test's.
    state.dirty.clear();
    let event = |kind| Ok(notify::Event::new(kind).add_path(f.clone()));
    state.on_event(event(EventKind::Modify(ModifyKind::Name(RenameMode::To))));
    let renamed = Instant::now();
    let touch = || EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any));
    while Instant::now() <= renamed + hold {
        // The writer's pace, not a wait for the watcher.
        std::thread::sleep(Duration::from_millis(20));
        state.on_event(event(touch()));
        state.fire_due();
        if rx.try_recv().is_ok() {
            return;
        }
    }
    // Past the hold, still touched a moment ago: due all the same.
    state.on_event(event(touch()));
    state.fire_due();
    assert_eq!(
        rx.try_recv().ok(),
        Some(s),
        "a file touched every 20 ms is not reported {hold:?} after its rename"
    );
}

/// A plain directory gone between its chain being walked and its watch
/// being placed (`/etc/tls` of `/etc/tls/tls.crt`, removed while the
/// watcher re-arms): no watched parent will tell of it, so the chain is
/// walked again and its nearest existing ancestor watched: the directory
/// coming back is seen by events alone (no poll here). It used to stay
/// listed, unwatched and not degraded, and nothing was ever seen again.
#[test]
fn a_directory_gone_before_its_watch_is_waited_for_from_its_parent() {
    let d = tempfile::tempdir().unwrap();
    let tls = d.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    std::fs::write(tls.join("tls.crt"), "1").unwrap();
    let (events, seen) = std::sync::mpsc::channel();
    let notify = notify::recommended_watcher(move |ev| {
        let _ = events.send(ev);
    })
    .unwrap();
    let (out, mut rx) = mpsc::unbounded_channel();
    let mut state = State::new(cfg(true, 0), Some(notify), out);
    let s = Subject::Entry("e".into());
    state.set(vec![(s.clone(), vec![tls.join("tls.crt")])]);
    assert!(state.watched.contains(&tls));
    // The report `set` schedules for a new subject is not this test's.
    state.dirty.clear();
    // What a re-arm does with a chain walked before the directory went.
    state.notify.as_mut().unwrap().unwatch(&tls).unwrap();
    state.watched.remove(&tls);
    std::fs::remove_dir_all(&tls).unwrap();
    state.rearm();
    assert!(!state.degraded, "a vanished directory degraded the watcher");
    // The report the vanished directory brings re-walks the chain.
    state
        .dirty
        .values_mut()
        .for_each(|due| due.at = Instant::now());
    state.fire_due();
    assert_eq!(rx.try_recv().ok(), Some(s.clone()));
    while seen.try_recv().is_ok() {}
    std::fs::create_dir(&tls).unwrap();
    std::fs::write(tls.join("tls.crt"), "2").unwrap();
    let event = seen
        .recv_timeout(Duration::from_secs(10))
        .expect("no event for the directory coming back");
    state.on_event(event);
    state
        .dirty
        .values_mut()
        .for_each(|due| due.at = Instant::now());
    state.fire_due();
    assert_eq!(rx.try_recv().ok(), Some(s));
}

/// Bind mounts of `real` (a Kubernetes volume at two mountPaths), undone
/// when dropped, before the temporary directory under them goes.
struct BindMounts(Vec<PathBuf>);

impl BindMounts {
    /// `None`, said why, when mounting is not allowed here.
    fn of(real: &std::path::Path, at: &[&std::path::Path]) -> Option<BindMounts> {
        let mut mounts = BindMounts(Vec::new());
        for target in at {
            std::fs::create_dir(target).unwrap();
            let out = std::process::Command::new("mount")
                .arg("--bind")
                .args([real, target])
                .output();
            match out {
                Ok(out) if out.status.success() => mounts.0.push(target.to_path_buf()),
                other => {
                    println!("skipped: cannot bind-mount here: {other:?}");
                    return None;
                }
            }
        }
        Some(mounts)
    }
}

impl Drop for BindMounts {
    fn drop(&mut self) {
        for target in self.0.iter().rev() {
            let _ = std::process::Command::new("umount").arg(target).status();
        }
    }
}

/// One directory reached by two paths (bind mounts): inotify has one
/// watch for it, which notify names by one path only, so events for the
/// other path's files were reported under the wrong name (lost), and
/// unwatching either path removed the watch both relied on. The second
/// path is left to polling, loudly (degraded); the first keeps its events.
#[test]
fn one_directory_under_two_paths_is_polled_not_lost() {
    let d = tempfile::tempdir().unwrap();
    let real = d.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("tls.crt"), "1").unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    let Some(_mounts) = BindMounts::of(&real, &[&a, &b]) else {
        return;
    };
    let (events, seen) = std::sync::mpsc::channel();
    let notify = notify::recommended_watcher(move |ev| {
        let _ = events.send(ev);
    })
    .unwrap();
    let (out, mut rx) = mpsc::unbounded_channel();
    let mut state = State::new(cfg(true, 0), Some(notify), out);
    let (ea, eb) = (Subject::Entry("a".into()), Subject::Entry("b".into()));
    let (fa, fb) = (a.join("tls.crt"), b.join("tls.crt"));
    state.set(vec![(ea.clone(), vec![fa.clone()])]);
    let ((), text) = crate::logging::test_support::logged(tracing::Level::WARN, || {
        // Twice: warned about once.
        for _ in 0..2 {
            state.set(vec![
                (ea.clone(), vec![fa.clone()]),
                (eb.clone(), vec![fb.clone()]),
            ]);
        }
    });
    assert_eq!(text.matches("already watched").count(), 1, "{text}");
    assert!(text.contains(&format!("{}", b.display())), "{text}");
    assert!(text.contains(&format!("{}", a.display())), "{text}");
    assert!(state.degraded, "two paths to one directory, not degraded");
    assert!(!state.poll_interval.is_zero(), "polling covers the other");
    // The reports `set` schedules for new subjects are not this test's.
    state.dirty.clear();
    // A write through `a`, then only `a` watched: each is seen by events.
    for round in ["2", "3"] {
        while seen.try_recv().is_ok() {}
        std::fs::write(a.join("tls.crt.new"), round).unwrap();
        std::fs::rename(a.join("tls.crt.new"), &fa).unwrap();
        let mut reported = Vec::new();
        while !reported.contains(&ea) {
            let event = seen
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("round {round}: no event for a, reported {reported:?}"));
            state.on_event(event);
            state
                .dirty
                .values_mut()
                .for_each(|due| due.at = Instant::now());
            state.fire_due();
            while let Ok(s) = rx.try_recv() {
                reported.push(s);
            }
        }
        // `b` goes: its path was never watched, so a's watch stays.
        state.set(vec![(ea.clone(), vec![fa.clone()])]);
        state.dirty.clear();
        assert!(!state.degraded, "one path left, still degraded");
    }
}

/// A state, with events, that needs a directory no watch can be placed
/// on (ELOOP) until it is mended: a symlink to itself at `later`.
fn unwatchable_dir() -> (
    tempfile::TempDir,
    PathBuf,
    State,
    mpsc::UnboundedReceiver<Subject>,
) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("later");
    std::os::unix::fs::symlink(&dir, &dir).unwrap();
    let notify = notify::recommended_watcher(|_| {}).unwrap();
    let (out, rx) = mpsc::unbounded_channel();
    let mut state = State::new(cfg(true, 0), Some(notify), out);
    state.by_dir.insert(dir.clone(), HashSet::new());
    (d, dir, state, rx)
}

/// With `poll_interval: 0`, the 2s poll forced while no inotify instance
/// could be had ends once one is: the interval configured is back, the
/// check of the watches (which needs it 0) runs again, and a pass at once
/// sees what changed while nothing was watched. A watch that still fails
/// keeps the 2s poll. Before, the forced poll stayed for good.
#[test]
fn the_forced_poll_ends_when_events_come_back() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("tls.crt");
    std::fs::write(&file, "one").unwrap();
    let (out, _rx) = mpsc::unbounded_channel();
    let mut state = State::new(cfg(true, 0), None, out);
    let (tx, _events) = std_mpsc::channel();
    state.events_unavailable(tx);
    assert_eq!(state.poll_interval, Duration::from_secs(2));
    let s = Subject::Entry("edge".into());
    state.set(vec![(s.clone(), vec![file.clone()])]);
    state.dirty.clear();
    std::fs::write(&file, "two, while nothing was watched").unwrap();
    state.next_events_try = Instant::now();
    state.timers();
    assert!(state.notify.is_some(), "no inotify instance to be had");
    assert!(!state.degraded);
    assert!(
        state.poll_interval.is_zero(),
        "still polling every {:?} with events back",
        state.poll_interval
    );
    assert!(state.checks_watches());
    assert!(
        state.dirty.contains_key(&s),
        "the change meanwhile was missed"
    );

    // A directory that cannot be watched once events are back: still 2s.
    let (_d2, dir, mut state, _rx2) = unwatchable_dir();
    let notify = state.notify.take();
    let (tx, _events) = std_mpsc::channel();
    state.events_unavailable(tx);
    drop(notify);
    state.next_events_try = Instant::now();
    state.timers();
    assert!(state.notify.is_some() && state.degraded);
    assert!(state.watched.is_empty() && state.by_dir.contains_key(&dir));
    assert_eq!(state.poll_interval, Duration::from_secs(2));
}

/// `ln -sfn` of `target` at `link`: a new symlink renamed over the old one.
fn relink(target: &str, link: &std::path::Path) {
    let tmp = link.with_extension("tmp");
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

/// The events notify forwarded up to a write to `sentinel` (a watched
/// link), through its close, a write's last event: one inotify instance
/// delivers in order, so every event of an earlier change has been judged
/// by the callback by then.
fn events_through(
    rx: &std_mpsc::Receiver<crate::watch::Msg>,
    sentinel: &std::path::Path,
) -> Vec<notify::Result<notify::Event>> {
    std::fs::write(sentinel, "again").unwrap();
    let mut got = Vec::new();
    loop {
        let Ok(crate::watch::Msg::Event(ev)) = rx.recv_timeout(Duration::from_secs(10)) else {
            panic!("no event for the sentinel; got {got:?}");
        };
        use notify::event::{AccessKind, AccessMode};
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let last =
            matches!(&ev, Ok(e) if e.kind == closed && e.paths.iter().any(|p| p == sentinel));
        got.push(ev);
        if last {
            return got;
        }
    }
}

/// Report whatever is marked, now, as the end of its quiet period would.
fn fire_marked(state: &mut State) {
    let now = Instant::now();
    for due in state.dirty.values_mut() {
        due.at = now;
    }
    state.fire_due();
}

/// A link the walk of a report reaches for the first time, changed
/// before the filter holds it (`ln -sfn /srv/pki/c.crt gen7.crt` right
/// after `ln -sfn gen7.crt live.crt`): its event still reaches the
/// thread, so the chain follows it, and the new directory is watched
/// (with the poll off, nothing else would ever watch it). The change is
/// made in that window by a hook, which waits for notify's callback to
/// have judged its event: the race, forced.
#[test]
fn a_link_changed_while_its_chain_is_walked_is_followed() {
    use std::sync::{Arc, Mutex};
    let d = tempfile::tempdir().unwrap();
    let dir = |n: &str| d.path().join(n);
    for n in ["live", "old6", "old7", "pki"] {
        std::fs::create_dir(dir(n)).unwrap();
        std::fs::write(dir(n).join("c.crt"), n).unwrap();
    }
    let (live, sentinel) = (dir("live").join("live.crt"), dir("live").join("sentinel"));
    std::os::unix::fs::symlink("../old6/c.crt", dir("live").join("gen6.crt")).unwrap();
    std::os::unix::fs::symlink("../old7/c.crt", dir("live").join("gen7.crt")).unwrap();
    std::os::unix::fs::symlink("gen6.crt", &live).unwrap();
    std::fs::write(&sentinel, "0").unwrap();
    let relevant = super::super::events::Filter::default();
    let (tx, rx) = std_mpsc::channel();
    let notify = crate::watch::events_watcher(&tx, &relevant).unwrap();
    let (out, _reports) = mpsc::unbounded_channel();
    let mut state = State::new(cfg(true, 0), Some(notify), out);
    state.share(relevant);
    let s = Subject::Entry("le".into());
    state.set(vec![
        (s.clone(), vec![live.clone()]),
        (Subject::Entry("sentinel".into()), vec![sentinel.clone()]),
    ]);
    fire_marked(&mut state);
    // The operator points live.crt at gen7.crt...
    relink("gen7.crt", &live);
    for ev in events_through(&rx, &sentinel) {
        state.on_event(ev);
    }
    assert!(state.dirty.contains_key(&s), "live.crt's relink was seen");
    // ...and gen7.crt at /srv/pki just as the report walks the chain.
    let (rx, seen) = (Arc::new(Mutex::new(rx)), Arc::new(Mutex::new(Vec::new())));
    let (hook_rx, hook_seen, hook_sentinel) = (rx.clone(), seen.clone(), sentinel.clone());
    let gen7 = dir("live").join("gen7.crt");
    state.after_walk = Some(Box::new(move || {
        relink("../pki/c.crt", &gen7);
        let got = events_through(&hook_rx.lock().unwrap(), &hook_sentinel);
        hook_seen.lock().unwrap().extend(got);
    }));
    fire_marked(&mut state);
    state.after_walk = None;
    for ev in std::mem::take(&mut *seen.lock().unwrap()) {
        state.on_event(ev);
    }
    fire_marked(&mut state);
    assert!(
        state.watched.contains(&dir("pki")),
        "the chain did not follow gen7.crt: {:?}",
        state.watched
    );
    // So a later in-place write there is seen.
    std::fs::write(dir("pki").join("c.crt"), "renewed").unwrap();
    let got = events_through(&rx.lock().unwrap(), &sentinel);
    let pki = dir("pki").join("c.crt");
    assert!(
        got.iter()
            .any(|ev| matches!(ev, Ok(e) if e.paths.contains(&pki))),
        "{got:?}"
    );
}

/// With events off nothing reads the filter, so a reload does not copy
/// every watched key into it; when events come back after being
/// unavailable, it is brought up to the index before any watch is placed.
#[test]
fn the_filter_is_kept_only_while_events_are_on() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("tls.crt");
    std::fs::write(&file, "one").unwrap();
    let (out, _rx) = mpsc::unbounded_channel();
    let mut state = State::new(cfg(true, 0), None, out);
    let relevant = super::super::events::Filter::default();
    state.share(relevant.clone());
    let (tx, _events) = std_mpsc::channel();
    state.events_unavailable(tx);
    state.set(vec![(Subject::Entry("edge".into()), vec![file])]);
    assert_eq!(
        *relevant.read().unwrap(),
        Default::default(),
        "kept with events off"
    );
    state.try_events();
    assert!(state.notify.is_some(), "no inotify instance to be had");
    let r = relevant.read().unwrap();
    assert_eq!(r.links, state.by_link.keys().cloned().collect());
    assert_eq!(r.dirs, state.by_dir.keys().cloned().collect());
    assert!(!r.links.is_empty() && !r.reindexing);
}

/// A watched directory moved away and back (`mv certs certs.bak; mv
/// certs.bak certs`) with a watched directory under it (`certs/ca`, a CA
/// bundle beside the pair): the one under it is watched again too, and a
/// later write there raises an event. notify drops the watch of every
/// directory under a moved one with it (by path prefix); only the moved
/// directory was placed again, `certs/ca` stayed counted as watched on the
/// same inode, and with the poll off its changes went unseen for good.
#[test]
fn a_directory_under_one_moved_away_and_back_is_watched_again() {
    let d = tempfile::tempdir().unwrap();
    let (certs, ca) = (d.path().join("certs"), d.path().join("certs/ca"));
    std::fs::create_dir_all(&ca).unwrap();
    let config = d.path().join("hotproxy.yaml");
    for (file, content) in [
        (&config, "c"),
        (&certs.join("tls.crt"), "1"),
        (&ca.join("ca.pem"), "a"),
    ] {
        std::fs::write(file, content).unwrap();
    }
    let (events, seen) = std::sync::mpsc::channel();
    let notify = notify::recommended_watcher(move |ev| {
        let _ = events.send(ev);
    })
    .unwrap();
    let (out, _rx) = mpsc::unbounded_channel();
    let mut state = State::new(cfg(true, 0), Some(notify), out);
    state.set(vec![
        (Subject::Config, vec![config.clone()]),
        (Subject::Entry("pair".into()), vec![certs.join("tls.crt")]),
        (Subject::Entry("ca".into()), vec![ca.join("ca.pem")]),
    ]);
    let bak = d.path().join("certs.bak");
    std::fs::rename(&certs, &bak).unwrap();
    std::fs::rename(&bak, &certs).unwrap();
    // The watch thread takes in every event up to the move back.
    use notify::event::RenameMode;
    loop {
        let ev = seen
            .recv_timeout(Duration::from_secs(10))
            .expect("no event for the move back");
        let back = matches!(&ev, Ok(e) if e.kind == EventKind::Modify(ModifyKind::Name(RenameMode::To)) && e.paths == [certs.clone()]);
        state.on_event(ev);
        if back {
            break;
        }
    }
    fire_marked(&mut state);
    std::fs::write(ca.join("ca.pem"), "b").unwrap();
    // One inotify instance delivers in order: every event of the write to
    // the bundle comes before the configuration's.
    std::fs::write(&config, "c2").unwrap();
    let mut got = Vec::new();
    loop {
        let ev = seen
            .recv_timeout(Duration::from_secs(10))
            .expect("no event for the configuration file");
        let ev = ev.unwrap();
        let last = ev.paths == [config.clone()];
        got.push(ev);
        if last {
            break;
        }
    }
    assert!(
        got.iter().any(|e| e.paths == [ca.join("ca.pem")]),
        "no event for the bundle written under the directory moved back: {got:?}"
    );
}
