//! Reading a watched path: its symlink chain, link by link, and each link's stat signature (and the thread's CPU time, a watch's inode).

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// One step of a path's resolution: a name inside a directory.
pub(super) type Link = (PathBuf, OsString);

/// Stat of one link of the chain: what the poll compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Sig {
    Missing,
    Present {
        dev: u64,
        ino: u64,
        len: u64,
        /// Seconds and nanoseconds, as the kernel gives them: in
        /// nanoseconds alone an i64 ends in 2262 (`touch -d 2300-01-01`).
        mtime: (i64, i64),
        ctime: (i64, i64),
        target: Option<PathBuf>,
    },
}

/// What a pass over many chains found at their leading components (the
/// directories and symlinks before each last name). Chains share them
/// (every file under one certificate directory, every certbot lineage
/// under `live/`), so one pass (a poll, a `set`) looks at each once
/// instead of once per path: 10,000 entries cost a stat or two each, not
/// one per path component. Last names are always looked at afresh.
#[derive(Default)]
pub(super) struct Leading(HashMap<PathBuf, Seen>);

/// One `lstat` (and `readlink` for a symlink): what a chain walk needs to
/// go on and what the poll compares, from the same system calls.
#[derive(Clone)]
struct Seen {
    sig: Sig,
    link: bool,
}

impl Leading {
    fn look(&mut self, path: &Path, last: bool) -> Seen {
        if let Some(seen) = self.0.get(path) {
            return seen.clone();
        }
        let seen = stat(path);
        if !last {
            self.0.insert(path.to_path_buf(), seen.clone());
        }
        seen
    }
}

fn stat(path: &Path) -> Seen {
    match std::fs::symlink_metadata(path) {
        Err(_) => Seen {
            sig: Sig::Missing,
            link: false,
        },
        Ok(m) => {
            let link = m.file_type().is_symlink();
            Seen {
                sig: Sig::Present {
                    dev: m.dev(),
                    ino: m.ino(),
                    len: m.len(),
                    mtime: (m.mtime(), m.mtime_nsec()),
                    ctime: (m.ctime(), m.ctime_nsec()),
                    target: if link {
                        std::fs::read_link(path).ok()
                    } else {
                        None
                    },
                },
                link,
            }
        }
    }
}

/// The links of every path (see [`chain`]) with each link's [`Sig`],
/// taken by the same walk: the poll costs one stat per link, not two.
pub(super) fn chains(paths: &[PathBuf], leading: &mut Leading) -> (Vec<Link>, Vec<Sig>) {
    let (mut links, mut sigs) = (Vec::new(), Vec::new());
    for p in paths {
        for (l, sig) in chain(p, leading) {
            if !links.contains(&l) {
                links.push(l);
                sigs.push(sig);
            }
        }
    }
    (links, sigs)
}

/// The links a path resolves through: the directory and name of the path
/// itself, of every symlink met on the way, and of the final file. A
/// missing directory is replaced by its nearest existing ancestor (and the
/// name of the child to wait for), so a deleted-and-recreated directory is
/// seen coming back.
fn chain(path: &Path, leading: &mut Leading) -> Vec<(Link, Sig)> {
    let mut links = Vec::new();
    let mut todo: Vec<OsString> = components(path);
    let mut prefix = PathBuf::from("/");
    let mut hops = 0;
    while let Some(c) = todo.first().cloned() {
        todo.remove(0);
        if c == ".." {
            // As the kernel does: the parent of the directory reached so
            // far, which is a real one (every symlink on the way was
            // followed), not the path's text with its last name removed.
            prefix.pop();
            continue;
        }
        let candidate = prefix.join(&c);
        let last = todo.is_empty();
        let seen = leading.look(&candidate, last);
        match seen.sig {
            Sig::Present { ref target, .. } if seen.link && hops < 40 => {
                hops += 1;
                let target = target.clone();
                links.push(((prefix.clone(), c), seen.sig));
                let Some(target) = target else {
                    break;
                };
                let resolved = if target.is_absolute() {
                    target
                } else {
                    prefix.join(target)
                };
                let mut rest = components(&resolved);
                rest.extend(todo);
                todo = rest;
                prefix = PathBuf::from("/");
            }
            Sig::Present { .. } => {
                if last {
                    links.push(((prefix.clone(), c), seen.sig));
                }
                prefix = candidate;
            }
            Sig::Missing => {
                // Missing: watch the deepest existing directory for it.
                links.push(((prefix.clone(), c), Sig::Missing));
                break;
            }
        }
    }
    links
}

/// The names of an absolute path, `..` included: `chain` applies it where
/// the kernel does, after the symlinks before it (`/etc/hotproxy/../ssl`
/// with `/etc/hotproxy` a symlink to `/opt/hotproxy/etc` is `/opt/hotproxy/ssl`,
/// the file the reloader reads, not `/etc/ssl`).
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// The directory `dir` names now: its device and inode.
pub(super) fn dir_id(dir: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// Time since the newest inode change (content, rename, chmod) in a chain.
pub(super) fn last_change_ago(sigs: &[Sig]) -> Duration {
    // In i128 nanoseconds: no ctime (seconds in an i64) overflows it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i128;
    let newest = sigs
        .iter()
        .filter_map(|s| match s {
            Sig::Present {
                ctime: (sec, nsec), ..
            } => Some(i128::from(*sec) * 1_000_000_000 + i128::from(*nsec)),
            Sig::Missing => None,
        })
        .max()
        .unwrap_or(0);
    let ago = (now - newest).clamp(0, i128::from(u64::MAX));
    Duration::from_nanos(ago as u64)
}

/// CPU time the calling thread (the watcher's) has used, as the kernel's
/// scheduler counts it (`/proc/thread-self/schedstat`, in nanoseconds).
pub(super) fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// `dir` is no longer watched: its (device, inode) is free for another path.
pub(super) fn forget_id(
    ids: &mut HashMap<PathBuf, (u64, u64)>,
    by_id: &mut HashMap<(u64, u64), PathBuf>,
    dir: &Path,
) {
    if let Some(id) = ids.remove(dir)
        && by_id.get(&id).is_some_and(|p| p == dir)
    {
        by_id.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `..` after a symlinked directory leads where the kernel goes (the
    /// file the reloader reads), not where the path's text would.
    #[test]
    fn dot_dot_after_a_symlink_is_the_kernels() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("opt/hotproxy");
        std::fs::create_dir_all(real.join("etc")).unwrap();
        std::fs::create_dir_all(real.join("ssl")).unwrap();
        std::fs::write(real.join("ssl/server.crt"), "x").unwrap();
        std::os::unix::fs::symlink(real.join("etc"), d.path().join("etc")).unwrap();
        let path = d.path().join("etc/../ssl/server.crt");
        assert!(std::fs::read(&path).is_ok(), "the kernel finds it");
        let links = chain(&path, &mut Leading::default());
        let ((dir, name), sig) = links.last().unwrap();
        assert_eq!(
            (dir.as_path(), name.as_os_str()),
            (
                real.join("ssl").as_path(),
                std::ffi::OsStr::new("server.crt")
            )
        );
        assert!(matches!(sig, Sig::Present { .. }), "{sig:?}");
    }

    /// A file dated past 2262 (`touch -d 2300-01-01 tls.crt`) is looked at
    /// like any other, and a change to it is seen: its mtime in
    /// nanoseconds overflowed an i64 and panicked the watch thread.
    #[test]
    fn a_file_dated_year_2300_is_looked_at() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tls.crt");
        std::fs::write(&f, "x").unwrap();
        // 2300-01-01T00:00:00Z.
        let year_2300 = std::time::UNIX_EPOCH + Duration::from_secs(10_413_792_000);
        let set = |when| {
            std::fs::File::options()
                .write(true)
                .open(&f)
                .unwrap()
                .set_modified(when)
                .unwrap()
        };
        set(year_2300);
        let before = stat(&f).sig;
        assert!(matches!(before, Sig::Present { .. }), "{before:?}");
        set(year_2300 + Duration::from_nanos(1));
        assert_ne!(stat(&f).sig, before, "a nanosecond's change not seen");
        // And before 1677 (a clock at 0 read as signed, a bad archive).
        set(std::time::UNIX_EPOCH - Duration::from_secs(10_000_000_000));
        assert!(matches!(stat(&f).sig, Sig::Present { .. }));
    }
}
