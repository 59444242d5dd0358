//! When the configuration file may be read: still for a moment, and not changed by a writer while it was read.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::Reloader;

/// How long the configuration file must have been still before it is read.
pub(super) const CONFIG_QUIET: Duration = Duration::from_millis(20);

/// How soon a configuration file found missing is looked for again (as a
/// missing entry file is), until `settle_timeout`.
pub(super) const CONFIG_MISSING_RETRY: Duration = Duration::from_millis(100);

impl Reloader {
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

/// Whether the file at `path` is no longer the one `before` described
/// (its mtime or size moved, or it is gone): a writer began while it was
/// read, so what was read may be empty or cut.
pub(super) fn changed(path: &Path, before: &std::fs::Metadata) -> bool {
    let key = |m: &std::fs::Metadata| (m.modified().ok(), m.len());
    std::fs::metadata(path).ok().map(|m| key(&m)) != Some(key(before))
}
