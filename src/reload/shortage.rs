//! Reads that found hotproxy out of file descriptors or memory: said as its own shortage, read again, nothing of the files judged.
//!
//! EMFILE, ENFILE and ENOMEM at the open or read of an entry's file or
//! of the configuration file say nothing of the file: a connection burst
//! holds every descriptor. Taken as broken material, a renewed
//! certificate that landed then was refused (counted, `failing`, an
//! alert) although nothing was wrong with it. As nginx and Envoy log
//! such an error as the process's own, the served material, the entry's
//! reload state and the metrics stay as they were, and the read is tried
//! again soon, until it gets through or the files change (SPEC §3).

use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::config_file::{ConfigOutcome, Deferral};
use super::{LOG, Reloader};
use crate::material::pem::MaterialError;

/// How [`Reloader::apply_config`]'s answer begins when entry files it
/// loads were not read for want of file descriptors or memory: the
/// configuration is read again, neither applied nor rejected.
pub(super) const ENTRIES_SHORT: &str =
    "entry files not read for want of file descriptors or memory: ";

/// The first wait before a read that found hotproxy short is tried again.
const FIRST: Duration = Duration::from_millis(100);

/// The longest: once descriptors are free again, the new material is
/// served within this.
const LONGEST: Duration = Duration::from_secs(2);

/// How often at most a run's WARN is said again while it lasts: a long
/// shortage (a leak of descriptors, a host out of memory) stays visible at
/// the default log level, not one line at its start then DEBUG only.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Reads in a row that found hotproxy short (of one entry's files, or of
/// the configuration): how many, since when, and when it was last said at
/// WARN.
pub(super) struct Run {
    tries: u32,
    since: Instant,
    warned: Instant,
}

impl Run {
    fn new(now: Instant) -> Run {
        Run {
            tries: 0,
            since: now,
            warned: now,
        }
    }

    /// One more read found hotproxy short at `now`: the wait before the
    /// next, and, when a WARN is due (the run's first read, then at most
    /// once every [`WARN_EVERY`]), how long the run has lasted.
    fn note(&mut self, now: Instant) -> (Duration, Option<Duration>) {
        let retry = backoff(self.tries);
        let first = self.tries == 0;
        let warn = (first || now.saturating_duration_since(self.warned) >= WARN_EVERY).then(|| {
            self.warned = now;
            now.saturating_duration_since(self.since)
        });
        self.tries = self.tries.saturating_add(1);
        (retry, warn)
    }
}

/// The admin token files under re-read by the watcher's loop
/// (`watching`): one loop per token, so changes in a burst or during a
/// shortage start no second loop (each warning on its own back-off). The
/// value: whether the file changed again since the loop's read began, so
/// a change during a read that then gets through is read too, not lost.
#[derive(Default)]
pub(super) struct TokenRetries(std::sync::Mutex<std::collections::BTreeMap<usize, bool>>);

impl TokenRetries {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<usize, bool>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Token `i` changed: whether to start its loop (none runs); else the
    /// running loop is told to read it again.
    pub(super) fn start(&self, i: usize) -> bool {
        match self.map().entry(i) {
            std::collections::btree_map::Entry::Occupied(mut again) => {
                *again.get_mut() = true;
                false
            }
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(false);
                true
            }
        }
    }

    /// The loop's read of token `i` begins: what changed before is read.
    pub(super) fn reading(&self, i: usize) {
        self.map().insert(i, false);
    }

    /// The loop's read of token `i` got through: whether to read it again
    /// (it changed meanwhile); else the loop ends, and the next change
    /// starts a new one.
    pub(super) fn done(&self, i: usize) -> bool {
        let mut map = self.map();
        if map.get(&i).copied().unwrap_or(false) {
            true
        } else {
            map.remove(&i);
            false
        }
    }
}

/// The re-read of admin token `i` found hotproxy out of descriptors or
/// memory (`error`, naming the file) at `now`: said as its own shortage
/// (warn at the first read of the run, again at most once a minute with
/// `lasted_s`, debug between); the wait before the next read.
pub(super) fn token_short(run: &mut Option<Run>, error: &str, now: Instant) -> Duration {
    let run = run.get_or_insert_with(|| Run::new(now));
    let first = run.tries == 0;
    let (retry, warn) = run.note(now);
    match warn {
        Some(_) if first => {
            warn!(target: LOG, error = %error, retry_in_ms = retry.as_millis() as u64, "admin token file not read for want of file descriptors or memory; the running token stays, read again soon");
        }
        Some(lasted) => {
            warn!(target: LOG, error = %error, lasted_s = lasted.as_secs(), "admin token file still not read: hotproxy has been out of file descriptors or memory this long; the running token stays, read again soon");
        }
        None => {
            debug!(target: LOG, error = %error, retry_in_ms = retry.as_millis() as u64, "admin token file still not read for want of file descriptors or memory");
        }
    }
    retry
}

/// The wait after `tries` reads in a row that found hotproxy short:
/// [`FIRST`] doubling to [`LONGEST`].
pub(super) fn backoff(tries: u32) -> Duration {
    FIRST.saturating_mul(1 << tries.min(8)).min(LONGEST)
}

impl Reloader {
    /// The read of `id`'s files found hotproxy out of descriptors or
    /// memory (`e`): said as its own shortage (warn at the first of a run,
    /// again at most once a minute while it lasts, debug between), nothing
    /// of the entry changed, read again after a back-off.
    pub(super) fn short_of_resources(&mut self, id: &str, e: &MaterialError) {
        let now = Instant::now();
        let run = self
            .short
            .entry(id.to_owned())
            .or_insert_with(|| Run::new(now));
        let first = run.tries == 0;
        let (retry, warn) = run.note(now);
        match warn {
            Some(_) if first => {
                warn!(target: LOG, entry = %id, error = %e, retry_in_ms = retry.as_millis() as u64, "cannot read certificate files: hotproxy is out of file descriptors or memory; keeping the served material and reading them again");
            }
            Some(lasted) => {
                warn!(target: LOG, entry = %id, error = %e, lasted_s = lasted.as_secs(), "certificate files still not read: hotproxy has been out of file descriptors or memory this long; keeping the served material and reading them again");
            }
            None => {
                debug!(target: LOG, entry = %id, error = %e, retry_in_ms = retry.as_millis() as u64, "certificate files still not read for want of file descriptors or memory");
            }
        }
        // The sooner of this and a retry already due (a writer's wait).
        let at = Instant::now() + retry;
        let due = self.retries.entry(id.to_owned()).or_insert(at);
        *due = (*due).min(at);
    }

    /// The read of the configuration file (`shown`), or of entry files it
    /// names, found hotproxy out of descriptors or memory (`error`): said
    /// at the first of a run, the running configuration stays, nothing
    /// counted (neither a rejection nor a success), read again after a
    /// back-off; a SIGHUP's read deferred so is answered by that one.
    pub(super) fn config_short(
        &mut self,
        shown: &impl std::fmt::Display,
        error: &str,
        asked: bool,
    ) -> ConfigOutcome {
        let now = Instant::now();
        let run = self.config_short.get_or_insert_with(|| Run::new(now));
        let first = run.tries == 0;
        let (retry, warn) = run.note(now);
        match warn {
            Some(_) if first => {
                warn!(target: LOG, path = %shown, error = %error, retry_in_ms = retry.as_millis() as u64, "cannot read the configuration: hotproxy is out of file descriptors or memory; the running configuration stays, read again soon");
            }
            Some(lasted) => {
                warn!(target: LOG, path = %shown, error = %error, lasted_s = lasted.as_secs(), "configuration still not read: hotproxy has been out of file descriptors or memory this long; the running configuration stays, read again soon");
            }
            None => {
                debug!(target: LOG, path = %shown, error = %error, "configuration still not read for want of file descriptors or memory");
            }
        }
        self.config_retry = Some(Instant::now() + retry);
        self.config_asked = asked;
        ConfigOutcome::Deferred(Deferral::Resources)
    }

    /// The read of `id`'s files got through (whatever it found): a later
    /// shortage is a new one, said again.
    pub(super) fn not_short(&mut self, id: &str) {
        self.short.remove(id);
    }

    /// Whether the last read of `id`'s files found hotproxy out of file
    /// descriptors or memory: the admin API answers a reload or rotation
    /// that failed so `503`, the caller's files not judged (SPEC §4).
    pub fn is_short(&self, id: &str) -> bool {
        self.short.contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_to_its_bound() {
        assert_eq!(backoff(0), FIRST);
        assert_eq!(backoff(1), FIRST * 2);
        assert_eq!(backoff(5), LONGEST);
        assert_eq!(backoff(u32::MAX), LONGEST);
    }

    /// A run is said at its first read, then at most once every
    /// [`WARN_EVERY`], with how long it has lasted (the clock given).
    #[test]
    fn a_long_run_is_said_again_at_most_once_a_minute() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut run = Run::new(t0);
        assert_eq!(run.note(t0), (FIRST, Some(Duration::ZERO)));
        assert_eq!(run.note(at(1)).1, None);
        assert_eq!(run.note(at(59)).1, None);
        assert_eq!(run.note(at(61)).1, Some(at(61) - t0));
        assert_eq!(run.note(at(62)).1, None);
        assert_eq!(run.note(at(120)).1, None);
        assert_eq!(run.note(at(121)).1, Some(at(121) - t0));
    }

    /// Two changes of one token during a shortage start one loop, not
    /// two; another token's change starts its own; a change during the
    /// loop's read is read again, and the loop's end lets the next change
    /// start a new one.
    #[test]
    fn one_token_retry_loop_at_a_time() {
        let retries = TokenRetries::default();
        assert!(retries.start(0), "the first change starts the loop");
        assert!(!retries.start(0), "a second change started a second loop");
        assert!(retries.start(1), "another token's change starts its own");
        retries.reading(0);
        assert!(!retries.start(0));
        assert!(retries.done(0), "a change during the read is read again");
        retries.reading(0);
        assert!(!retries.done(0), "nothing changed: the loop ends");
        assert!(retries.start(0), "after the loop's end a change starts one");
    }

    /// A token's re-reads in a shortage are said at WARN at the run's
    /// first read, then at most once a minute (the clock given); a new
    /// run (the loop ended) is said again at its first read.
    #[test]
    fn a_token_shortage_is_said_at_its_start_then_at_most_once_a_minute() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut run = None;
        assert_eq!(token_short(&mut run, "e", t0), FIRST);
        let warned = |run: &Option<Run>| run.as_ref().map(|r| r.warned);
        for s in [1, 2, 30, 59] {
            token_short(&mut run, "e", at(s));
            assert_eq!(warned(&run), Some(t0), "warned again at {s} s");
        }
        assert_eq!(token_short(&mut run, "e", at(61)), LONGEST);
        assert_eq!(warned(&run), Some(at(61)));
        token_short(&mut run, "e", at(62));
        assert_eq!(warned(&run), Some(at(61)));
        assert_eq!(run.as_ref().map(|r| r.since), Some(t0));
    }
}
