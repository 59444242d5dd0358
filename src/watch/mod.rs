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
//! `debounce` of quiet the subject is reported (at the latest ten
//! debounces after its first change, for a file that never goes quiet);
//! the reloader decides by content hash. An event that says a write is complete (a rename, a new
//! link, a file closed after writing, a removal) only waits `SETTLED`, so
//! a kubelet swap or a certbot relink is served within milliseconds; a
//! write still in progress keeps the full debounce. One thread owns all
//! state; no locks but one: notify's callback reads which paths matter
//! (`events`), so that a file no chain holds (an access log beside the
//! configuration) never wakes the thread. It stays cheap with 10,000 entries: a poll runs in
//! slices with events handled in between, looks at the directories chains
//! share once per pass, and a moved chain re-indexes only its own subject.
//! While events work, a pass that is slow (thousands of entries) is spread
//! out so the poll stays under 5% of a core.

//!
//! - `events`: which events matter, by kind and by path (filtered in
//!   notify's callback).
//! - `state`: the watcher thread's state machine: events, debounce, poll
//!   scheduling, re-arming, reporting due subjects.
//! - `stat`: reading a path's symlink chain, the stat signature of each link, a directory's identity.

mod events;
mod stat;
mod state;

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;

use tokio::sync::mpsc;
use tracing::warn;

use crate::config::WatchConfig;
use state::State;

/// What a change notification is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// The configuration file.
    Config,
    /// A catalogue entry, by id.
    Entry(String),
    /// The file of admin token `i` (its position in `AdminConfig::tokens`,
    /// which a message names by `TokenConfig::index`), watched beside the
    /// catalogue's.
    AdminToken(usize),
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
        let mut notify = None;
        let mut unavailable = false;
        let relevant = events::Filter::default();
        if config.events {
            match events_watcher(&tx, &relevant) {
                Ok(w) => notify = Some(w),
                Err(e) => {
                    // Configured for events but none to be had (inotify
                    // instances exhausted): the watch alert's business.
                    // `events: false` is a choice, not a degradation.
                    warn!(error = %e, "filesystem events unavailable; falling back to polling");
                    unavailable = true;
                }
            }
        }
        let mut state = State::new(config, notify, out_tx);
        state.share(relevant);
        if unavailable {
            state.events_unavailable(tx.clone());
        }
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

/// A filesystem-event watcher (an inotify instance) whose events arrive on
/// `tx`, those `relevant` says the watch thread acts on (see [`events`]).
fn events_watcher(
    tx: &std_mpsc::Sender<Msg>,
    relevant: &events::Filter,
) -> notify::Result<notify::RecommendedWatcher> {
    let events = tx.clone();
    let relevant = relevant.clone();
    notify::recommended_watcher(move |res| {
        if events::forwarded(&relevant, &res) {
            let _ = events.send(Msg::Event(res));
        }
    })
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
    }
}

#[cfg(test)]
mod tests {
    use super::state::{POLL_SLICE, may_change_content};
    use super::*;
    use notify::event::{AccessKind, AccessMode, EventKind};
    use std::collections::HashSet;
    use std::os::unix::fs::symlink;
    use std::path::Path;
    use std::time::Duration;

    pub(super) fn cfg(events: bool, poll: u64) -> WatchConfig {
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

    pub(super) fn kubelet_write(dir: &Path, generation: u32, content: &str) {
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

    /// A watcher on events alone (no poll) with one subject, `e`: the file
    /// `certs/tls.crt` in the temporary directory returned, armed.
    async fn watched_certs_dir() -> (
        tempfile::TempDir,
        Watcher,
        mpsc::UnboundedReceiver<Subject>,
        Subject,
    ) {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("certs");
        std::fs::create_dir(&dir).unwrap();
        let f = dir.join("tls.crt");
        std::fs::write(&f, "1").unwrap();
        let (w, mut rx) = Watcher::start(cfg(true, 0));
        let s = Subject::Entry("e".into());
        settle(&w, &mut rx, d.path(), vec![(s.clone(), vec![f])]).await;
        (d, w, rx, s)
    }

    /// mv over the file, an in-place write, and a deleted-and-recreated directory are seen.
    #[tokio::test]
    async fn mv_cp_and_recreated_dir() {
        let (d, _watcher, mut rx, s) = watched_certs_dir().await;
        let (dir, f) = (d.path().join("certs"), d.path().join("certs/tls.crt"));
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

    /// A watched directory replaced by another (`mv certs certs.old; mv
    /// certs.new certs`), or deleted and recreated within the quiet period,
    /// is watched again where its path now leads: later writes in it are
    /// seen by events alone (no poll here). The watch used to stay on the
    /// old directory (a move) or be gone (a delete) while the watcher still
    /// counted it as placed, so every later change went unseen.
    #[tokio::test]
    async fn a_replaced_directory_is_watched_again() {
        let (d, _watcher, mut rx, s) = watched_certs_dir().await;
        let (dir, f) = (d.path().join("certs"), d.path().join("certs/tls.crt"));
        let next = d.path().join("certs.new");
        std::fs::create_dir(&next).unwrap();
        std::fs::write(next.join("tls.crt"), "2").unwrap();
        std::fs::rename(&dir, d.path().join("certs.old")).unwrap();
        std::fs::rename(&next, &dir).unwrap();
        expect(&mut rx, &s).await;
        std::fs::write(dir.join("new"), "3").unwrap();
        std::fs::rename(dir.join("new"), &f).unwrap();
        expect(&mut rx, &s).await;
        // Deleted and recreated at once.
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(&f, "4").unwrap();
        expect(&mut rx, &s).await;
        std::fs::write(dir.join("new"), "5").unwrap();
        std::fs::rename(dir.join("new"), &f).unwrap();
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

    /// A write through another hard link of the watched file, in a
    /// directory not watched, gives the watched directory no event: the
    /// poll sees it (SPEC §3 says so, and that `poll_interval: 0` does not).
    #[tokio::test]
    async fn a_write_through_another_hard_link_is_seen_by_the_poll() {
        let d = tempfile::tempdir().unwrap();
        let (watched, elsewhere) = (d.path().join("certs"), d.path().join("elsewhere"));
        std::fs::create_dir(&watched).unwrap();
        std::fs::create_dir(&elsewhere).unwrap();
        let f = watched.join("tls.crt");
        std::fs::write(&f, "1").unwrap();
        std::fs::hard_link(&f, elsewhere.join("tls.crt")).unwrap();
        let (w, mut rx) = Watcher::start(cfg(true, 100));
        let s = Subject::Entry("e".into());
        settle(&w, &mut rx, &watched, vec![(s.clone(), vec![f.clone()])]).await;
        std::fs::write(elsewhere.join("tls.crt"), "22").unwrap();
        expect(&mut rx, &s).await;
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "22");
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
        // `a` goes; a new subject is reported once armed, which proves the
        // watcher took the new set in before the writes below.
        let marker = d.path().join("marker");
        std::fs::write(&marker, "0").unwrap();
        let sm = Subject::Entry("marker".into());
        w.set(vec![
            (sb.clone(), vec![b.clone()]),
            (sm.clone(), vec![marker]),
        ]);
        expect(&mut rx, &sm).await;
        std::fs::write(&a, "gone").unwrap();
        std::fs::write(&b, "b2").unwrap();
        expect(&mut rx, &sb).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(700), rx.recv())
                .await
                .is_err()
        );
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

    /// An access log written into the configuration's directory (watched
    /// for the configuration file) does not wake the watch thread: notify's
    /// callback drops events for files no chain holds. Each log batch sent
    /// the thread an event it then ignored. The watched file's events still
    /// come through.
    #[test]
    fn events_for_files_no_chain_holds_stay_in_the_callback() {
        use notify::Watcher as _;
        let d = tempfile::tempdir().unwrap();
        let (config, log) = (d.path().join("hotproxy.yaml"), d.path().join("access.log"));
        std::fs::write(&config, "a").unwrap();
        let relevant = events::Filter::default();
        relevant
            .write()
            .unwrap()
            .links
            .insert((d.path().to_path_buf(), "hotproxy.yaml".into()));
        let (tx, rx) = std_mpsc::channel();
        let mut notify = events_watcher(&tx, &relevant).unwrap();
        notify
            .watch(d.path(), notify::RecursiveMode::NonRecursive)
            .unwrap();
        for line in 0..20 {
            std::fs::write(&log, format!("line {line}\n")).unwrap();
        }
        std::fs::write(&config, "b").unwrap();
        let Ok(Msg::Event(Ok(first))) = rx.recv_timeout(Duration::from_secs(10)) else {
            panic!("no event for the configuration file");
        };
        assert_eq!(first.paths, vec![config], "{first:?}");
    }
}
