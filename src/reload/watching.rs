//! Telling the watcher which files stand behind what: the configuration, each entry's files and the admin token files.

use std::sync::Arc;

use super::Reloader;
use crate::watch::Subject;

impl Reloader {
    /// Tell the watcher which files stand behind what.
    pub(super) fn rewatch(&self) {
        let mut subjects = vec![(Subject::Config, vec![self.config.file.clone()])];
        for (id, e) in &self.entries {
            let paths: Vec<_> = e
                .spec
                .source
                .paths()
                .iter()
                .map(|p| p.to_path_buf())
                .collect();
            if !paths.is_empty() {
                subjects.push((Subject::Entry(id.clone()), paths));
            }
        }
        if let Some(tokens) = &self.admin_tokens {
            subjects.extend(
                tokens
                    .files()
                    .into_iter()
                    .map(|(i, path)| (Subject::AdminToken(i), vec![path])),
            );
        }
        self.watcher.set(subjects);
    }

    /// Watch the admin token files beside the catalogue's, with the same
    /// watcher (one per process: one `hotproxy_watch_degraded`, one
    /// inotify instance). Newly watched, each is reported once, so a
    /// change since the admin listener read it is taken too.
    pub fn watch_admin_tokens(&mut self, tokens: Arc<crate::admin::auth::Tokens>) {
        self.admin_tokens = Some(tokens);
        self.rewatch();
    }

    /// SIGHUP: read every admin token file again, each as a watched change
    /// is read ([`Reloader::reread_admin_token`]). A read of its own that
    /// met a shortage was warned about and never tried again: a token
    /// rotated where no watch sees it (written in place through another
    /// name under `poll_interval: 0`, SPEC §3) stayed refused, the
    /// rotated-out one valid, until the next change or SIGHUP.
    pub fn reread_admin_tokens(&self) {
        let Some(tokens) = &self.admin_tokens else {
            return;
        };
        for (i, _) in tokens.files() {
            self.reread_admin_token(i);
        }
    }

    /// Token file `i` may have changed: re-read it on a blocking-pool
    /// thread, not this one. A stuck volume (NFS, a remounting kubelet
    /// volume) must not hold up certificate rotations and API calls; a
    /// FIFO in the file's place is refused without opening it for a
    /// writer (`fsutil::read_regular`).
    /// A read that found hotproxy out of file descriptors or memory is
    /// tried again on the shortage back-off until it gets through: else a
    /// token rotated then is never taken, the revoked one staying valid.
    /// One loop per token (`shortage::TokenRetries`): a change while it
    /// runs is read by it, and its shortage said once a run, then at most
    /// once a minute (`shortage::token_short`).
    pub(super) fn reread_admin_token(&self, i: usize) {
        let Some(tokens) = self.admin_tokens.clone() else {
            return;
        };
        let retries = self.token_retries.clone();
        if !retries.start(i) {
            return;
        }
        let rt = self.rt.clone();
        self.rt.spawn(async move {
            let mut run = None;
            loop {
                retries.reading(i);
                let tokens = tokens.clone();
                match rt.spawn_blocking(move || tokens.reread(i)).await {
                    Ok(Some(error)) => {
                        let retry = super::shortage::token_short(
                            &mut run,
                            &error,
                            std::time::Instant::now(),
                        );
                        tokio::time::sleep(retry).await;
                    }
                    // A read that got through ends the run: a later
                    // shortage is a new one, said again.
                    Ok(None) if retries.done(i) => run = None,
                    Ok(None) => break,
                    // The read panicked: the next change starts anew.
                    Err(_) => {
                        retries.done(i);
                        break;
                    }
                }
            }
        });
    }
}
