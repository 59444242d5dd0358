//! When the configuration file may be read: still for a moment, not changed by a writer while it was read, naming settled files.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use tracing::debug;

use super::{LOG, Reloader};

/// How long the configuration file must have been still before it is read.
pub(super) const CONFIG_QUIET: Duration = Duration::from_millis(20);

/// How soon a configuration file found missing is looked for again (as a
/// missing entry file is), until `settle_timeout`.
pub(super) const CONFIG_MISSING_RETRY: Duration = Duration::from_millis(100);

/// How [`Reloader::apply_config`]'s answer begins when what it refused is
/// entry files not settled (a writer at work) and the read may still wait:
/// the problems follow.
pub(super) const ENTRIES_UNSETTLED: &str = "entry files not settled: ";

/// What a look at the configuration file found before it is read.
pub(super) struct Look {
    /// Its metadata (what opened for reading), or the error looking met.
    pub(super) checked: std::io::Result<std::fs::Metadata>,
    /// The writer's state the file is in (`missing`, `not readable`,
    /// `empty`), if any.
    pub(super) state: Option<&'static str>,
}

impl Reloader {
    /// Look at the configuration file at `path` (`now`) before it is read:
    /// `Err(Deferred)` while a writer may be at work there (just written,
    /// or in a state a writer leaves), within the wait bounded by
    /// settle_timeout. A backoff's `retry` of a configuration rejected in
    /// the state it finds again does not wait again (SPEC §3): each began
    /// another settle_timeout wait, said again, at every backoff step.
    /// Another state is another writer at work, waited on.
    pub(super) fn look(
        &mut self,
        path: &Path,
        shown: &impl std::fmt::Display,
        now: Instant,
        asked: bool,
        retry: bool,
    ) -> Result<Look, ConfigOutcome> {
        let checked = std::fs::metadata(path).and_then(|m| readable(path, m));
        let (wait, state) = match &checked {
            Err(e) => match unsettled_state(e) {
                Some(state) => (Some(CONFIG_MISSING_RETRY), Some(state)),
                None => (None, None),
            },
            // No writer leaves a FIFO or a directory: refused at once (SPEC
            // §2), where its length of 0 had it waited on as an empty file.
            Ok(meta) if !meta.is_file() => (None, None),
            Ok(meta) if meta.len() == 0 => (Some(CONFIG_MISSING_RETRY), Some("empty")),
            Ok(meta) => (self.config_wait(meta, now), None),
        };
        let rejected_so = retry
            && self.config_backoff.is_some()
            && self.config_unsettled_since.is_none()
            && state.is_some()
            && state == self.config_rejected_in;
        if let Some(wait) = wait.filter(|_| !rejected_so) {
            if let Some(state) = state
                && self.config_wait_said != Some(state)
            {
                self.config_wait_said = Some(state);
                debug!(target: LOG, path = %shown, settle_timeout_ms = self.config.watch.settle_timeout.as_millis() as u64, "configuration file {state}; waiting for the writer until settle_timeout");
            }
            let since = *self.config_unsettled_since.get_or_insert(now);
            if now.duration_since(since) < self.config.watch.settle_timeout {
                self.config_retry = Some(now + wait);
                self.config_asked = asked;
                return Err(ConfigOutcome::Deferred(match state {
                    Some(state) => Deferral::File(state),
                    None => Deferral::Writing,
                }));
            }
        }
        Ok(Look { checked, state })
    }

    /// When the wait for the configuration edit read `now` (`edit`, its
    /// [`edit_digest`]) began, in a wait begun `since`: as
    /// [`new_edit_wait`] says, when it is not the edit the wait deferred
    /// for entry files (a new write, with a settle_timeout of its own,
    /// SPEC §3, as an entry file's writer's step has: it inherited the
    /// rest of the first edit's, and was rejected after a fraction of it);
    /// else `since`.
    pub(super) fn new_edit_since(
        &mut self,
        since: Instant,
        edit: Option<u64>,
        now: Instant,
    ) -> Instant {
        let settle_timeout = self.config.watch.settle_timeout;
        let Some(start) = new_edit_wait(self.config_waited_edit, edit, now, settle_timeout) else {
            return since;
        };
        if let (Some(edit), Some((_, first))) = (edit, self.config_waited_edit) {
            self.config_waited_edit = Some((edit, first));
        }
        // Said again: the operator's new edit is what is waited on.
        self.config_entries_waited = false;
        start
    }

    /// The configuration read from `now` names entry files that do not
    /// load yet as a writer at work leaves them (`problems`, SPEC §3): the
    /// read is deferred, as for a file missing or empty, within the wait
    /// begun `since` (or now), bounded by settle_timeout; said once a wait.
    pub(super) fn entries_unsettled(
        &mut self,
        since: Option<Instant>,
        now: Instant,
        asked: bool,
        shown: &impl std::fmt::Display,
        problems: &str,
        edit: Option<u64>,
    ) -> ConfigOutcome {
        if !std::mem::replace(&mut self.config_entries_waited, true) {
            debug!(target: LOG, path = %shown, error = %problems, settle_timeout_ms = self.config.watch.settle_timeout.as_millis() as u64, "configuration names certificate files not settled yet; waiting for the writer until settle_timeout");
        }
        self.config_unsettled_since = Some(since.unwrap_or(now));
        if self.config_waited_edit.is_none() {
            self.config_waited_edit = edit.map(|e| (e, since.unwrap_or(now)));
        }
        self.config_retry = Some(now + CONFIG_MISSING_RETRY);
        self.config_asked = asked;
        let ids = std::mem::take(&mut self.config_unsettled_entries);
        ConfigOutcome::Deferred(Deferral::Entries(ids.join(", ")))
    }

    /// How long until the configuration file (`meta`, looked at `now`) has
    /// been still for `CONFIG_QUIET`; `None` when it has, or when that
    /// cannot be told. Its mtime says when it last changed, unless it lies
    /// in the future (a host ahead in time: `rsync -t`, `cp -p`, `tar x`,
    /// clock skew on a network filesystem): that says nothing about the
    /// writer, and taken as "just now" it deferred every read until the
    /// mtime passed or settle_timeout ran out. Then the file is still once
    /// looks `CONFIG_QUIET` apart have seen the same mtime and size.
    pub(super) fn config_wait(
        &mut self,
        meta: &std::fs::Metadata,
        now: Instant,
    ) -> Option<Duration> {
        let modified = meta.modified().ok()?;
        let seen = (modified, meta.len());
        let since = match self.config_seen {
            Some((before, since)) if before == seen => since,
            _ => now,
        };
        self.config_seen = Some((seen, since));
        let still_for = match SystemTime::now().duration_since(modified) {
            Ok(age) => age,
            Err(_) => now.duration_since(since),
        };
        CONFIG_QUIET.checked_sub(still_for).filter(|w| !w.is_zero())
    }
}

/// When the wait for the configuration edit read `now` (`edit`) begins,
/// if it is another edit than the running wait deferred for entry files
/// (`waited`: that edit's digest, and when the wait's first deferred edit
/// began); `None` keeps the running wait. Bounded together: after 5 ×
/// `settle_timeout` since the first edit was deferred, a new edit keeps
/// the running wait (a writer that never stops rewriting the file still
/// ends in an answer), and a new edit's wait ends by then.
pub(super) fn new_edit_wait(
    waited: Option<(u64, Instant)>,
    edit: Option<u64>,
    now: Instant,
    settle_timeout: Duration,
) -> Option<Instant> {
    let ((waited, first), edit) = (waited?, edit?);
    let bound = settle_timeout.saturating_mul(5);
    if edit == waited || now.duration_since(first) >= bound {
        return None;
    }
    // Its settle_timeout ends by the bound (5 × in all, SPEC §3): begun
    // `now`, an edit read just before it waited a full settle_timeout
    // past it, 6 × in all.
    let latest = first.checked_add(bound - settle_timeout).unwrap_or(now);
    Some(now.min(latest))
}

/// What tells one configuration edit from another: its text's hash.
pub(super) fn edit_digest(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// What opens for reading at `path` when `meta`, the configuration file's
/// there, says a regular file: its own metadata; else the error opening
/// it met. Only a regular file is opened, and without blocking: a FIFO
/// renamed over the path after `meta` was taken held the reloader in
/// open(2) until a writer came (no reload, admin changes and shutdown
/// queued behind it). What opened is what counts, as `fsutil` reads.
pub(super) fn readable(path: &Path, meta: std::fs::Metadata) -> std::io::Result<std::fs::Metadata> {
    if !meta.is_file() {
        return Ok(meta);
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?
        .metadata()
}

/// The state a writer at work leaves the configuration file in that a
/// look meeting `e` finds, waited on until settle_timeout: missing (`rm`
/// then `cp`, a symlink swapped in two steps) or not readable yet
/// (`install -m 0600` before its `chown`, as for an entry file, SPEC §3).
pub(super) fn unsettled_state(e: &std::io::Error) -> Option<&'static str> {
    match e.kind() {
        std::io::ErrorKind::NotFound => Some("missing"),
        std::io::ErrorKind::PermissionDenied => Some("not readable"),
        _ => None,
    }
}

/// Whether the file at `path` is no longer the one `before` described
/// (its mtime or size moved, or it is gone): a writer began while it was
/// read, so what was read may be empty or cut.
pub(super) fn changed(path: &Path, before: &std::fs::Metadata) -> bool {
    let key = |m: &std::fs::Metadata| (m.modified().ok(), m.len());
    std::fs::metadata(path).ok().map(|m| key(&m)) != Some(key(before))
}

/// What a configuration reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ConfigOutcome {
    /// A changed configuration is running now.
    Applied,
    /// The file is the running configuration again after a rejected one.
    Restored,
    /// The file is the running configuration.
    Unchanged,
    /// A writer is at work (why); the file is read again in a moment.
    Deferred(Deferral),
    /// Shutdown has begun: the file is not read.
    Ignored,
}

/// Why a configuration read was deferred: the writer at work it waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Deferral {
    /// The file changed a moment ago, or while it was read.
    Writing,
    /// The file is in a state a writer leaves: `missing`, `not readable`, `empty`.
    File(&'static str),
    /// Entry files it names do not load yet: those entries' ids.
    Entries(String),
    /// Hotproxy was out of file descriptors or memory to read it, or the
    /// entry files it names (`shortage`).
    Resources,
}

impl ConfigOutcome {
    /// As SIGHUP's summary says it (`config`): a deferral says what it
    /// waits for, where every one said "the file is written whole" (a
    /// chown or a key to come sent the operator to the file's writer).
    pub(super) fn describe(&self) -> std::borrow::Cow<'static, str> {
        match self {
            ConfigOutcome::Applied => "applied".into(),
            ConfigOutcome::Restored => "restored".into(),
            ConfigOutcome::Unchanged => "unchanged".into(),
            ConfigOutcome::Deferred(Deferral::Writing) => {
                "deferred until the file is written whole".into()
            }
            ConfigOutcome::Deferred(Deferral::File(state)) => {
                format!("deferred while the file is {state}").into()
            }
            ConfigOutcome::Deferred(Deferral::Entries(ids)) => {
                format!("deferred until the entry files it names settle: {ids}").into()
            }
            ConfigOutcome::Deferred(Deferral::Resources) => {
                "deferred while hotproxy is out of file descriptors or memory".into()
            }
            ConfigOutcome::Ignored => "ignored: shutting down".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::new_edit_wait;

    const SETTLE: Duration = Duration::from_secs(10);

    /// The start of the wait for edit 2, read `after` the first edit (1)
    /// was deferred at `first`.
    fn start(first: Instant, after: Duration) -> Option<Instant> {
        new_edit_wait(Some((1, first)), Some(2), first + after, SETTLE)
    }

    #[test]
    fn a_new_edit_early_in_a_wait_waits_a_settle_timeout_of_its_own() {
        let first = Instant::now();
        let now = first + SETTLE / 2;
        assert_eq!(start(first, SETTLE / 2), Some(now));
    }

    #[test]
    fn the_edit_the_wait_is_for_keeps_the_running_wait() {
        let first = Instant::now();
        assert_eq!(
            new_edit_wait(Some((1, first)), Some(1), first + SETTLE, SETTLE),
            None
        );
        // Nothing read (the file missing in between), or no wait for entry
        // files running: no edit of its own.
        assert_eq!(
            new_edit_wait(Some((1, first)), None, first + SETTLE, SETTLE),
            None
        );
        assert_eq!(new_edit_wait(None, Some(2), first + SETTLE, SETTLE), None);
    }

    /// 5 × settle_timeout after the first edit was deferred, a new edit
    /// keeps the running wait: a writer rewriting the file without end
    /// still gets an answer.
    #[test]
    fn a_new_edit_after_five_settle_timeouts_keeps_the_running_wait() {
        let first = Instant::now();
        assert_eq!(start(first, SETTLE * 51 / 10), None);
        assert_eq!(start(first, SETTLE * 5), None);
    }

    /// A new edit read late within the bound waits until the bound, not a
    /// full settle_timeout past it (6 × in all): its wait begins no later
    /// than 4 × settle_timeout after the first edit's.
    #[test]
    fn a_new_edit_late_in_the_bound_waits_until_five_settle_timeouts_in_all() {
        let first = Instant::now();
        assert_eq!(start(first, SETTLE * 49 / 10), Some(first + 4 * SETTLE));
        assert_eq!(start(first, SETTLE * 4), Some(first + 4 * SETTLE));
        let early = first + SETTLE * 39 / 10;
        assert_eq!(start(first, SETTLE * 39 / 10), Some(early));
    }
}
