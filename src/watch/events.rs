//! Which filesystem events the watch thread acts on: by kind, and by path, filtered in notify's callback before they wake it.
//!
//! A watched directory also holds files no subject names (an access log
//! written beside the configuration file): their events, one per log
//! batch, woke the watch thread only to be ignored. The callback now
//! drops an event none of whose paths is a link of a watched chain or a
//! watched directory itself, exactly what [`super::state`] would ignore,
//! and forwards errors and overflows always. It never misses a change:
//! a link is added to the filter before its subject is reported (the
//! reloader reads the file after that report), so an event dropped for
//! want of it came from a change the reloader's read sees; a link leaves
//! the filter only once no chain holds it, when the thread would ignore
//! its events too. While the thread re-indexes (from its walk of the
//! chains to the filter's update) the callback forwards everything: a
//! link that walk reaches for the first time is in no filter yet, and a
//! change to it then (`ln -sfn /srv/pki/c.crt gen7.crt` right after `ln
//! -sfn gen7.crt live.crt`) must reach the thread for the chain to follow.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};

use super::stat::Link;

/// The links and directories of every watched chain, shared by the watch
/// thread (the writer) and notify's callback (the reader).
pub(super) type Filter = Arc<RwLock<Relevant>>;

/// What an event must name to matter: `(directory, name)` of a link, or a
/// watched directory itself (deleted or moved).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Relevant {
    pub(super) links: HashSet<Link>,
    pub(super) dirs: HashSet<PathBuf>,
    /// Set by [`reindexing`] before the thread walks chains, cleared by
    /// [`refilter`] once `links` and `dirs` hold what that walk found.
    pub(super) reindexing: bool,
}

/// The thread is about to walk chains into its index: until [`refilter`],
/// every event goes through, as a link that walk is first to reach may
/// change before the filter holds it.
pub(super) fn reindexing(filter: &Filter) {
    if let Ok(mut r) = filter.write() {
        r.reindexing = true;
    }
}

/// Whether notify's callback hands `ev` to the watch thread: an error or
/// an overflow always, an event that cannot change content never, any
/// other only when one of its paths is in `filter` (or it has none, or
/// the thread is re-indexing).
pub(super) fn forwarded(filter: &Filter, ev: &notify::Result<notify::Event>) -> bool {
    let Ok(ev) = ev else {
        return true;
    };
    if ev.need_rescan() {
        return true;
    }
    if !may_change_content(&ev.kind) {
        return false;
    }
    if ev.paths.is_empty() {
        return true;
    }
    // A poisoned lock: forward everything, as before the filter.
    let Ok(relevant) = filter.read() else {
        return true;
    };
    relevant.reindexing
        || ev.paths.iter().any(|path| {
            relevant.dirs.contains(path)
                || matches!(
                    (path.parent(), path.file_name()),
                    (Some(dir), Some(name))
                        if relevant.links.contains(&(dir.to_path_buf(), name.to_os_string()))
                )
        })
}

/// Bring `filter` up to the index (`by_link`, `by_dir`), and end the
/// re-indexing: for the links `moved` alone (a chain that moved), else for
/// all (a `set`). All is built outside the lock and swapped in, so notify's
/// thread never waits in the callback on a copy of 10,000 keys.
pub(super) fn refilter<S>(
    filter: &Filter,
    by_link: &HashMap<Link, S>,
    by_dir: &HashMap<PathBuf, S>,
    moved: Option<&[Link]>,
) {
    let Some(moved) = moved else {
        let mut new = Relevant {
            links: by_link.keys().cloned().collect(),
            dirs: by_dir.keys().cloned().collect(),
            reindexing: false,
        };
        // A poisoned lock: the callback forwards everything anyway.
        if let Ok(mut r) = filter.write() {
            std::mem::swap(&mut *r, &mut new);
        }
        // The old sets are freed here, after the lock.
        return;
    };
    let Ok(mut r) = filter.write() else {
        return;
    };
    r.reindexing = false;
    for link in moved {
        if by_link.contains_key(link) {
            r.links.insert(link.clone());
        } else {
            r.links.remove(link);
        }
        if by_dir.contains_key(&link.0) {
            r.dirs.insert(link.0.clone());
        } else {
            r.dirs.remove(&link.0);
        }
    }
}

/// Events after which the file's new content is complete: the atomic step of
/// kubelet, certbot and `mv` (rename, create, remove) and a writer closing
/// the file. A plain data write may be followed by more writes.
pub(super) fn completes_a_write(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

/// Events after which the path no longer names what it did: a rename, a
/// removal (of a watched directory: its watch went with it).
pub(super) fn moves_away(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    )
}

/// Whether an event can mean new content. Opens, reads and read-only closes
/// cannot, and must be ignored: our own re-read opens the file, so reacting
/// to it would re-read forever (and so would any reader of the certificate,
/// a backup agent, a `cat`).
pub(crate) fn may_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(access) => *access == AccessKind::Close(AccessMode::Write),
        _ => true,
    }
}

/// Whether a failure to watch a directory means it is gone: notify says
/// so (`PathNotFound`) when inotify_add_watch finds nothing, but when the
/// directory goes between that call and notify's stat of it (kubelet
/// removes a `..<timestamp>` directory right after a swap), it passes the
/// stat's error on as it is (`Io`, NotFound).
pub(super) fn is_gone(e: &notify::Error) -> bool {
    match &e.kind {
        notify::ErrorKind::PathNotFound => true,
        notify::ErrorKind::Io(io) => io.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_gone;

    #[test]
    fn a_directory_gone_before_notify_stats_it_vanished() {
        let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(is_gone(&notify::Error::io(gone)));
        assert!(is_gone(&notify::Error::path_not_found()));
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(!is_gone(&notify::Error::io(denied)));
        assert!(!is_gone(&notify::Error::new(
            notify::ErrorKind::MaxFilesWatch
        )));
    }
}
