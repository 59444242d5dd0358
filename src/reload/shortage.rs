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

/// The wait after `tries` reads in a row that found hotproxy short:
/// [`FIRST`] doubling to [`LONGEST`].
pub(super) fn backoff(tries: u32) -> Duration {
    FIRST.saturating_mul(1 << tries.min(8)).min(LONGEST)
}

impl Reloader {
    /// The read of `id`'s files found hotproxy out of descriptors or
    /// memory (`e`): said as its own shortage (warn at the first of a run,
    /// debug after), nothing of the entry changed, read again after a
    /// back-off.
    pub(super) fn short_of_resources(&mut self, id: &str, e: &MaterialError) {
        let tries = self.short.entry(id.to_owned()).or_insert(0);
        let retry = backoff(*tries);
        if *tries == 0 {
            warn!(target: LOG, entry = %id, error = %e, retry_in_ms = retry.as_millis() as u64, "cannot read certificate files: hotproxy is out of file descriptors or memory; keeping the served material and reading them again");
        } else {
            debug!(target: LOG, entry = %id, error = %e, retry_in_ms = retry.as_millis() as u64, "certificate files still not read for want of file descriptors or memory");
        }
        *tries = tries.saturating_add(1);
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
        let retry = backoff(self.config_short);
        if self.config_short == 0 {
            warn!(target: LOG, path = %shown, error = %error, retry_in_ms = retry.as_millis() as u64, "cannot read the configuration: hotproxy is out of file descriptors or memory; the running configuration stays, read again soon");
        } else {
            debug!(target: LOG, path = %shown, error = %error, "configuration still not read for want of file descriptors or memory");
        }
        self.config_short = self.config_short.saturating_add(1);
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
}
