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

    /// Token file `i` may have changed: re-read it on a blocking-pool
    /// thread, not this one. A stuck volume (NFS, a remounting kubelet
    /// volume) must not hold up certificate rotations and API calls; a
    /// FIFO in the file's place is refused without opening it for a
    /// writer (`fsutil::read_regular`).
    /// A read that found hotproxy out of file descriptors or memory is
    /// tried again on the shortage back-off until it gets through: else a
    /// token rotated then is never taken, the revoked one staying valid.
    pub(super) fn reread_admin_token(&self, i: usize) {
        if let Some(tokens) = self.admin_tokens.clone() {
            let rt = self.rt.clone();
            self.rt.spawn(async move {
                for tries in 0u32.. {
                    let tokens = tokens.clone();
                    match rt.spawn_blocking(move || tokens.reread(i)).await {
                        Ok(true) => tokio::time::sleep(super::shortage::backoff(tries)).await,
                        _ => break,
                    }
                }
            });
        }
    }
}
