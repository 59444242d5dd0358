//! What changed between a chain's walk and the placing of its directory's watch: no event will ever tell, so the chain is walked again.

use super::*;

impl State {
    /// Subjects of the watches this pass placed whose chains no longer
    /// hold, marked to be walked again and reported: those of `vanished`
    /// directories (their nearest existing ancestor is then watched), and
    /// those waiting in a `placed` directory for a name that came before
    /// its watch did (`mkdir /etc/certs` just after the walk saw it
    /// missing, or a symlink created there): no CREATE will arrive, and
    /// the chain would stay at `/etc` for good. One `lstat` per missing
    /// link in those directories: bounded by the links, no loop.
    pub(super) fn walk_again(&mut self, vanished: &[PathBuf], placed: &HashSet<PathBuf>) {
        let mut again: HashSet<Subject> = vanished
            .iter()
            .filter_map(|dir| self.by_dir.get(dir))
            .flatten()
            .cloned()
            .collect();
        // Each missing link looked at once, however many chains wait on it.
        let mut came: HashMap<&Link, bool> = HashMap::new();
        for s in placed
            .iter()
            .filter_map(|dir| self.by_dir.get(dir))
            .flatten()
        {
            let Some(t) = self.subjects.get(s) else {
                continue;
            };
            let waiting = t
                .links
                .iter()
                .zip(&t.sigs)
                .filter(|((dir, _), sig)| matches!(sig, Sig::Missing) && placed.contains(dir));
            for (link, _) in waiting {
                let here = *came.entry(link).or_insert_with(|| {
                    let path = link.0.join(&link.1);
                    let here = std::fs::symlink_metadata(&path).is_ok();
                    if here {
                        debug!(path = %crate::material::shown_path(&path), "a name appeared before its directory's watch was placed; walking its chains again");
                    }
                    here
                });
                if here {
                    again.insert(s.clone());
                }
            }
        }
        for s in again {
            self.mark(s, SETTLED.min(self.config.debounce));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::tests::cfg;

    /// Report whatever is marked, now, as the end of its quiet period would.
    fn fire_marked(state: &mut State) {
        let now = Instant::now();
        for due in state.dirty.values_mut() {
            due.at = now;
        }
        state.fire_due();
    }

    /// What was reported so far, in any order (the sentinel's too).
    fn reported(rx: &mut mpsc::UnboundedReceiver<Subject>) -> Vec<Subject> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    /// The events notify forwarded up to a write to `sentinel` (in a
    /// watched directory), through its close, a write's last event: one
    /// inotify instance delivers in order, so every event of an earlier
    /// change has arrived by then.
    fn events_through(
        seen: &std_mpsc::Receiver<notify::Result<notify::Event>>,
        sentinel: &std::path::Path,
        content: &str,
    ) -> Vec<notify::Event> {
        use notify::event::{AccessKind, AccessMode, EventKind};
        std::fs::write(sentinel, content).unwrap();
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let mut got = Vec::new();
        loop {
            let ev = seen
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no event for {sentinel:?}; got {got:?}"))
                .unwrap();
            let done = ev.kind == closed && ev.paths.iter().any(|p| p == sentinel);
            got.push(ev);
            if done {
                return got;
            }
        }
    }

    /// `rm -rf /etc/certs`, then `mkdir /etc/certs` just as the report of
    /// the removal has walked the chain (which saw `certs` missing) and
    /// before the watch on `/etc` is placed: no CREATE ever comes, so the
    /// chain is walked again at once, `/etc/certs` is watched, and a later
    /// `mv new.crt a.crt` there raises an event and a report. The chain
    /// used to stay at `(/etc, certs)` missing with the poll off: every
    /// later rotation went unseen, and no check said so.
    #[test]
    fn a_directory_recreated_before_its_parents_watch_is_watched_again() {
        let d = tempfile::tempdir().unwrap();
        let (etc, other) = (d.path().join("etc"), d.path().join("other"));
        let certs = etc.join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::create_dir(&other).unwrap();
        let (crt, sentinel) = (certs.join("a.crt"), other.join("sentinel"));
        std::fs::write(&crt, "1").unwrap();
        std::fs::write(&sentinel, "0").unwrap();
        let (events, seen) = std_mpsc::channel();
        let notify = notify::recommended_watcher(move |ev| {
            let _ = events.send(ev);
        })
        .unwrap();
        let (out, mut rx) = mpsc::unbounded_channel();
        let mut state = State::new(cfg(true, 0), Some(notify), out);
        let s = Subject::Entry("certs".into());
        state.set(vec![
            (s.clone(), vec![crt.clone()]),
            (Subject::Entry("sentinel".into()), vec![sentinel.clone()]),
        ]);
        assert!(state.watched.contains(&certs) && !state.watched.contains(&etc));
        // The report `set` schedules for a new subject is not this test's.
        state.dirty.clear();
        std::fs::remove_dir_all(&certs).unwrap();
        for ev in events_through(&seen, &sentinel, "1") {
            state.on_event(Ok(ev));
        }
        assert!(state.dirty.contains_key(&s), "the removal was not seen");
        let hook_certs = certs.clone();
        state.after_walk = Some(Box::new(move || {
            std::fs::create_dir(&hook_certs).unwrap();
            std::fs::write(hook_certs.join("a.crt"), "2").unwrap();
        }));
        fire_marked(&mut state);
        state.after_walk = None;
        assert!(reported(&mut rx).contains(&s), "the removal not reported");
        assert!(state.watched.contains(&etc), "the parent was not watched");
        // Whatever the placing of the watches found is reported in turn.
        fire_marked(&mut state);
        reported(&mut rx);
        // certbot's way: a new file renamed over the old one.
        std::fs::write(certs.join("new.crt"), "3").unwrap();
        std::fs::rename(certs.join("new.crt"), &crt).unwrap();
        let got = events_through(&seen, &sentinel, "2");
        assert!(
            got.iter().any(|e| e.paths.contains(&crt)),
            "no event for a.crt renamed in the recreated directory: {got:?}"
        );
        for ev in got {
            state.on_event(Ok(ev));
        }
        fire_marked(&mut state);
        assert!(reported(&mut rx).contains(&s), "the rename not reported");
    }
}
