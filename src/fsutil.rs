//! File-system primitives shared by the store, the dev PKI and the PEM reader: atomic writes, bounded regular-file reads.
//!
//! A crate-level module, not `material::fs`: `devpki` (a command, not TLS
//! material) needs the same primitives, and neither caller should depend on
//! the other for them.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

// Every path in an error here is shown as a material path is: whole,
// escaped, a byte that is not UTF-8 as `\xFF`. `display()` made such a
// byte U+FFFD, and callers escaping the message afterwards could not
// get it back: `certs dev-pki` and the store named another file.
use crate::material::shown_path;

/// Write `bytes` to a temp file next to `path`, fsync, rename over `path`,
/// fsync the directory: a crash leaves the old or the new file, never a torn
/// one. The file has exactly `mode` before a byte is written.
///
/// The temp file is created, never reused: a random name, `O_CREAT|O_EXCL`
/// (an existing file or symlink there is an error, not opened) and
/// `O_NOFOLLOW`, so nothing planted in the directory (a world-readable
/// file, a symlink to somewhere else) can lend the result its mode or
/// redirect the write. On failure the temp file is removed and `path` is
/// untouched.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (tmp, mut f) = create_temp(dir, path)?;
    let written = (|| -> anyhow::Result<()> {
        // The umask may have narrowed `mode` at creation; never widened it.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", shown_path(&tmp)))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("cannot write {}", shown_path(&tmp)))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", shown_path(path)))
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Write `bytes` to a new file `path` of exactly `mode`, whole or not at
/// all, never over anything already there: a temp file next to it, as
/// [`write_atomic`] makes one, fsynced, then put at `path` only if nothing
/// is there, then the directory fsynced. `Ok(false)`: something is at
/// `path` already (left as it is). On failure, or `Ok(false)`, the temp
/// file is removed and nothing is at `path` that was not before. On a
/// filesystem that can put no file in place without replacing (gcsfuse),
/// `path` is created exclusively and written there instead
/// ([`create_in_place`]): never over another, but a crash mid-write can
/// tear it there.
///
/// For a file whose loss or tearing cannot be undone (the store's key):
/// written in place, a write cut short (a full disk, a killed process)
/// left a short file that every later start refused, and a power loss
/// after the store was written could keep the store and lose the key.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<bool> {
    write_new_by(path, bytes, mode, &PUT_BY_SYSTEM)
}

/// The two ways [`rename_new`] puts a file in place, apart so that a test
/// can refuse them as a FUSE volume (gcsfuse) does; only tests choose
/// others than [`PUT_BY_SYSTEM`].
struct PutCalls {
    rename_noreplace: fn(&Path, &Path) -> std::io::Result<()>,
    hard_link: fn(&Path, &Path) -> std::io::Result<()>,
}

const PUT_BY_SYSTEM: PutCalls = PutCalls {
    rename_noreplace: |from, to| {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        Ok(renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE)?)
    },
    hard_link: |from, to| fs::hard_link(from, to),
};

fn write_new_by(path: &Path, bytes: &[u8], mode: u32, calls: &PutCalls) -> anyhow::Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (tmp, mut f) = create_temp(dir, path)?;
    let placed =
        (|| -> anyhow::Result<bool> {
            // The umask may have narrowed `mode` at creation; never widened it.
            f.set_permissions(fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set the mode of {}", shown_path(&tmp)))?;
            f.write_all(bytes)
                .and_then(|_| f.sync_all())
                .with_context(|| format!("cannot write {}", shown_path(&tmp)))?;
            match rename_new(&tmp, path, calls) {
                Ok(Renamed::Done) => Ok(true),
                Ok(Renamed::NotHere) => {
                    let _ = fs::remove_file(&tmp);
                    create_in_place(path, bytes, mode)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(anyhow::Error::new(e)
                    .context(format!("cannot put {} in place", shown_path(path)))),
            }
        })();
    if !matches!(placed, Ok(true)) {
        let _ = fs::remove_file(&tmp);
    }
    if let (Ok(true), Ok(d)) = (&placed, fs::File::open(dir)) {
        let _ = d.sync_all();
    }
    placed
}

/// What [`rename_new`] did.
enum Renamed {
    Done,
    /// The filesystem neither renames without replacing nor links (FUSE
    /// volumes such as gcsfuse): `to` is as it was, and `from` still there.
    NotHere,
}

/// Rename `from` to `to` unless something is at `to` (`AlreadyExists`):
/// `renameat2(RENAME_NOREPLACE)`, or, on a filesystem that does not take
/// the flag (`EINVAL`), a hard link and the unlink of `from`. Either is
/// atomic: no other process sees `to` missing, torn or replaced. A link
/// refused for any reason but `EEXIST` is [`Renamed::NotHere`]: the FUSE
/// kernel turns a missing RENAME2 into `EINVAL`, and gcsfuse then refuses
/// links (`ENOSYS`, `EPERM`, `EOPNOTSUPP`), where an exclusive create
/// still works (and `check`, asking only that, passed).
fn rename_new(from: &Path, to: &Path, calls: &PutCalls) -> std::io::Result<Renamed> {
    match (calls.rename_noreplace)(from, to) {
        Ok(()) => Ok(Renamed::Done),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
            match (calls.hard_link)(from, to) {
                Ok(()) => {
                    let _ = fs::remove_file(from);
                    Ok(Renamed::Done)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
                Err(_) => Ok(Renamed::NotHere),
            }
        }
        Err(e) => Err(e),
    }
}

/// [`write_new`] where nothing puts a temp file in place: `path` created
/// exclusively (`O_EXCL`, `O_NOFOLLOW`, 0600) and written there, as the
/// store key was before temp files; `Ok(false)` when something is there.
/// Never over another file, but not whole across a crash or power loss;
/// a failed write removes the file (it is this call's: created here).
fn create_in_place(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<bool> {
    let mut f = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("cannot create {}", shown_path(path)))
            );
        }
    };
    // The umask may have narrowed `mode` at creation; never widened it.
    let written = f
        .set_permissions(fs::Permissions::from_mode(mode))
        .and_then(|_| f.write_all(bytes))
        .and_then(|_| f.sync_all());
    if let Err(e) = written {
        drop(f);
        let _ = fs::remove_file(path);
        return Err(anyhow::Error::new(e).context(format!("cannot write {}", shown_path(path))));
    }
    Ok(true)
}

/// What `path` names once every symlink of its last component is followed
/// (relative links resolved against the link's directory): the file an
/// atomic write must replace so that a symlink to it (a file on a
/// persistent volume) stays one, as `sed -i --follow-symlinks` does. A
/// path that is not a link, or a link to nothing yet, is returned as it
/// is, or as the link's target. Directories on the way are left as they
/// are: a rename works through them.
pub fn follow_links(path: &Path) -> std::io::Result<PathBuf> {
    // Linux's limit on links followed in one lookup (MAXSYMLINKS).
    const MAX_LINKS: usize = 40;
    let mut at = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&at)?;
                at = match at.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            Ok(_) => return Ok(at),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(at),
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "more than {MAX_LINKS} symlinks from {}",
        shown_path(path)
    )))
}

/// A new temp file `.<name>.tmp.<random>` in `dir`, created exclusively,
/// without following links, with mode 0600 from the start (never more than
/// the caller's final mode allows before `set_permissions`).
fn create_temp(dir: &Path, path: &Path) -> anyhow::Result<(PathBuf, fs::File)> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // A clash with a random 64-bit name means someone is guessing; a few
    // fresh names, then give up.
    let mut last = None;
    for _ in 0..4 {
        let mut r = [0u8; 8];
        aws_lc_rs::rand::fill(&mut r).map_err(|_| anyhow::anyhow!("no system randomness"))?;
        let suffix: String = r.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = dir.join(format!(".{name}.tmp.{suffix}"));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot create a temporary file in {}",
                    shown_path(dir)
                )));
            }
        }
    }
    Err(
        anyhow::Error::new(last.expect("the loop ran")).context(format!(
            "cannot create a temporary file in {}",
            shown_path(dir)
        )),
    )
}

/// A file that [`read_regular`] would not read, with the path it named.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", shown_path(path))]
pub struct ReadError {
    pub path: PathBuf,
    pub problem: ReadProblem,
}

/// Why a file was not read; callers that name the path themselves show this.
#[derive(Debug, thiserror::Error)]
pub enum ReadProblem {
    /// The system said no (missing, permission, …).
    #[error("{0}")]
    Io(std::io::Error),
    /// The process or the system was out of what the read takes (EMFILE,
    /// ENFILE: file descriptors; ENOMEM): hotproxy's own shortage, which
    /// says nothing of the file. Callers try again later; the errno is
    /// in the message.
    #[error("hotproxy is out of file descriptors or memory: {0}")]
    OutOfResources(std::io::Error),
    /// A FIFO, device, socket or directory: reading it could block forever
    /// (a FIFO with no writer) or never end (`/dev/zero`).
    #[error("not a regular file ({0})")]
    NotRegular(&'static str),
    /// Bigger than the caller's limit, so never loaded into memory whole.
    #[error("larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
}

/// Whether `e` is the process's or the system's shortage, not the
/// file's: out of file descriptors (EMFILE, ENFILE) or memory (ENOMEM).
pub fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
    )
}

impl From<std::io::Error> for ReadProblem {
    fn from(e: std::io::Error) -> ReadProblem {
        match out_of_resources(&e) {
            true => ReadProblem::OutOfResources(e),
            false => ReadProblem::Io(e),
        }
    }
}

impl ReadProblem {
    /// Whether the read failed for want of the process's or the system's
    /// resources ([`ReadProblem::OutOfResources`]), not for the file.
    pub fn is_out_of_resources(&self) -> bool {
        matches!(self, ReadProblem::OutOfResources(_))
    }

    /// Whether the file is simply not there (callers treat that apart).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadProblem::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }

    /// Whether the system refused the read (EACCES, EPERM): the file, or a
    /// directory on its path, is not open to this process's user.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, ReadProblem::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied)
    }
}

/// Read all of the regular file at `path` (symlinks followed), refusing
/// anything else and anything larger than `limit` bytes. Never blocks on a
/// FIFO: the type is checked before opening, and the open is non-blocking
/// in case the path is swapped for a FIFO in between.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    read(path, limit).map_err(|problem| ReadError {
        path: path.to_path_buf(),
        problem,
    })
}

fn read(path: &Path, limit: u64) -> Result<Vec<u8>, ReadProblem> {
    check(&fs::metadata(path)?, limit)?;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    // What was opened is what counts (the path may have changed since).
    let len = check(&file.metadata()?, limit)?;
    let mut bytes = Vec::with_capacity(len as usize);
    // One byte past the limit tells a file that grew since the check.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadProblem::TooLarge { limit });
    }
    Ok(bytes)
}

/// The file's length if it is a regular file within `limit`.
fn check(meta: &fs::Metadata, limit: u64) -> Result<u64, ReadProblem> {
    if let Some(what) = not_regular(meta) {
        return Err(ReadProblem::NotRegular(what));
    }
    if meta.len() > limit {
        return Err(ReadProblem::TooLarge { limit });
    }
    Ok(meta.len())
}

/// What the file of `meta` is when it is not a regular file (`a FIFO`,
/// `a directory`, ...), as [`ReadProblem::NotRegular`] names it. A caller
/// that checks anything else of a file (its mode) asks this first: a mode
/// to fix on something that is no file at all sends the operator astray.
pub fn not_regular(meta: &fs::Metadata) -> Option<&'static str> {
    let kind = meta.file_type();
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    }
}

/// Whether this process may create a file at `path` (its directories
/// too, as `run` does): the nearest directory on its way that exists
/// lets it write and search, asked as the kernel would answer (`check`
/// creates nothing, and `run` met "Permission denied" only when it came
/// to create the file). The error is the system's (`Permission denied`,
/// `Read-only file system`).
pub fn creatable(path: &Path) -> std::io::Result<()> {
    let Some(dir) = path
        .ancestors()
        .skip(1)
        .find(|d| d.as_os_str().is_empty() || d.is_dir())
    else {
        return Ok(());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    allows(
        dir,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
}

/// Whether this process may open the existing `path` for writing, asked
/// as the kernel would answer without opening it: for a FIFO, whose open
/// (or close) a reader would see. The error is the system's.
pub fn writable(path: &Path) -> std::io::Result<()> {
    allows(path, rustix::fs::Access::WRITE_OK)
}

/// Whether the kernel grants `access` on `path` to this process.
fn allows(path: &Path, access: rustix::fs::Access) -> std::io::Result<()> {
    // Plain `faccessat` (no flags), asking with the real ids: hotproxy
    // never runs setuid, so they are the effective ones. `AT_EACCESS`
    // makes rustix try `faccessat2` first, falling back only on ENOSYS:
    // old container seccomp profiles answer EPERM (a false "Operation not
    // permitted"), and systemd < 247's `@system-service` kills with
    // SIGSYS. EPERM or ENOSYS from a sandbox says nothing of the
    // file: this cannot tell, and leaves it to the open.
    use rustix::fs::{AtFlags, CWD, accessat};
    use rustix::io::Errno;
    match accessat(CWD, path, access, AtFlags::empty()) {
        Err(Errno::PERM | Errno::NOSYS) => Ok(()),
        // Asking with the real ids, the kernel also drops every capability
        // of a process whose real uid is not root: a service user given
        // CAP_DAC_OVERRIDE (systemd's AmbientCapabilities) opens a root's
        // 0600 FIFO, yet was told EACCES and refused at check, run and
        // reload. Holding it, this cannot tell; the open will.
        Err(Errno::ACCESS) if overrides_modes(&self_status()) => Ok(()),
        done => done.map_err(Into::into),
    }
}

/// `/proc/self/status`, or nothing when it cannot be read (no /proc):
/// then no capability is known to be held, and EACCES stands.
fn self_status() -> String {
    fs::read_to_string("/proc/self/status").unwrap_or_default()
}

/// Whether the effective capabilities in a `/proc/PID/status` text hold
/// CAP_DAC_OVERRIDE (bit 1), with which the kernel's own open skips the
/// file's mode bits for reading, writing and searching.
fn overrides_modes(status: &str) -> bool {
    const CAP_DAC_OVERRIDE: u64 = 1 << 1;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & CAP_DAC_OVERRIDE != 0)
}

/// Helpers for tests of readers: make a FIFO, run a read that must not block.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;
    use std::time::Duration;

    /// A FIFO at `path` (`mkfifo(1)`: the crate has no unsafe to call mkfifo(3)).
    pub(crate) fn mkfifo(path: &Path) {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo {}", path.display());
    }

    /// Run `f` on its own thread and wait a bounded time, so a read that
    /// blocks fails the test instead of hanging it.
    pub(crate) fn within_bounded_time<T: Send + 'static>(
        what: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{what} blocked"))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::test_support::{mkfifo, within_bounded_time};
    use super::*;

    /// `read_regular`, failing the test if it blocks.
    fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
        let p = path.to_path_buf();
        within_bounded_time("read_regular", move || read_regular(&p, limit))
    }

    /// Names in `dir` other than `keep`.
    fn others(dir: &Path, keep: &[&str]) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !keep.contains(&n.as_str()))
            .collect()
    }

    /// The result has exactly the asked mode whatever the umask or an
    /// existing file had, and no temp file stays behind.
    #[test]
    fn atomic_write_sets_the_mode_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("store.json");
        fs::write(&f, "old").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o666)).unwrap();
        write_atomic(&f, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_atomic(&f, b"public", 0o644).unwrap();
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert!(others(d.path(), &["store.json"]).is_empty());
    }

    /// A failed replace (here: the target is a non-empty directory) removes
    /// its temp file and leaves the target as it was.
    #[test]
    fn a_failed_atomic_write_cleans_up() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("store.json");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), "x").unwrap();
        let e = write_atomic(&target, b"new", 0o600).unwrap_err();
        assert!(format!("{e:#}").contains("cannot replace"), "{e:#}");
        assert!(others(d.path(), &["store.json"]).is_empty());
        assert!(target.join("inside").exists());
    }

    /// A new file is written with exactly its mode and bytes; one already
    /// there (a file, an empty one too, or a link to none) is left as it
    /// is, and either way no temp file stays behind.
    #[test]
    fn write_new_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("store.key");
        assert!(write_new(&f, b"first", 0o600).unwrap());
        assert_eq!(fs::read(&f).unwrap(), b"first");
        let mode = fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!write_new(&f, b"second", 0o600).unwrap());
        assert_eq!(fs::read(&f).unwrap(), b"first");
        fs::write(&f, "").unwrap();
        assert!(!write_new(&f, b"third", 0o600).unwrap());
        assert_eq!(fs::read(&f).unwrap(), b"");
        let link = d.path().join("link.key");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &link).unwrap();
        assert!(!write_new(&link, b"fourth", 0o600).unwrap());
        assert!(!d.path().join("nowhere").exists());
        assert!(others(d.path(), &["store.key", "link.key"]).is_empty());
    }

    /// Where the filesystem takes neither `RENAME_NOREPLACE` nor hard
    /// links (gcsfuse: EINVAL, then EPERM, ENOSYS or EOPNOTSUPP), the file
    /// is still written, exclusively: with its mode and bytes, never over
    /// one there (a dangling link too), and no temp file stays behind.
    #[test]
    fn write_new_without_rename_or_link_creates_in_place() {
        fn einval(_: &Path, _: &Path) -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(libc::EINVAL))
        }
        let links: [fn(&Path, &Path) -> std::io::Result<()>; 3] = [
            |_, _| Err(std::io::Error::from_raw_os_error(libc::EPERM)),
            |_, _| Err(std::io::Error::from_raw_os_error(libc::ENOSYS)),
            |_, _| Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
        ];
        for hard_link in links {
            let fuse = PutCalls {
                rename_noreplace: einval,
                hard_link,
            };
            let d = tempfile::tempdir().unwrap();
            let f = d.path().join("store.key");
            assert!(write_new_by(&f, b"first", 0o600, &fuse).unwrap());
            assert_eq!(fs::read(&f).unwrap(), b"first");
            let mode = fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            assert!(!write_new_by(&f, b"second", 0o600, &fuse).unwrap());
            assert_eq!(fs::read(&f).unwrap(), b"first");
            let link = d.path().join("link.key");
            std::os::unix::fs::symlink(d.path().join("nowhere"), &link).unwrap();
            assert!(!write_new_by(&link, b"third", 0o600, &fuse).unwrap());
            assert!(!d.path().join("nowhere").exists());
            assert!(others(d.path(), &["store.key", "link.key"]).is_empty());
        }
    }

    /// Where the filesystem refuses `RENAME_NOREPLACE` (EINVAL) but links,
    /// the file is linked in place: never over one there, no temp left.
    #[test]
    fn write_new_links_where_rename_noreplace_is_refused() {
        let no_flag = PutCalls {
            rename_noreplace: |_, _| Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
            hard_link: PUT_BY_SYSTEM.hard_link,
        };
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("store.key");
        assert!(write_new_by(&f, b"first", 0o600, &no_flag).unwrap());
        assert!(!write_new_by(&f, b"second", 0o600, &no_flag).unwrap());
        assert_eq!(fs::read(&f).unwrap(), b"first");
        assert_eq!(fs::metadata(&f).unwrap().nlink(), 1, "the temp name stays");
        assert!(others(d.path(), &["store.key"]).is_empty());
    }

    /// Links are followed to the file they lead to, relative ones from
    /// their own directory, through a chain and to a file not there yet; a
    /// loop is an error, not a hang.
    #[test]
    fn follow_links_finds_the_final_target() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        for sub in ["volume", "data"] {
            fs::create_dir(d.path().join(sub)).unwrap();
        }
        let file = d.path().join("volume/store.json");
        let plain = d.path().join("plain.json");
        fs::write(&plain, "x").unwrap();
        assert_eq!(follow_links(&plain).unwrap(), plain);
        let hop = d.path().join("hop.json");
        symlink(&file, &hop).unwrap();
        let link = d.path().join("data/store.json");
        symlink("../hop.json", &link).unwrap();
        let found = follow_links(&link).unwrap();
        assert_eq!(found, file);
        fs::write(&found, "x").unwrap();
        assert_eq!(follow_links(&link).unwrap(), file);
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        symlink(&b, &a).unwrap();
        symlink(&a, &b).unwrap();
        assert!(follow_links(&a).is_err());
    }

    /// A regular file reads whole, up to exactly the limit.
    #[test]
    fn a_regular_file_reads() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tls.crt");
        fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read_bounded(&f, 10).unwrap(), b"0123456789");
        // Through a symlink, as kubelet and certbot lay files out.
        let link = d.path().join("link.crt");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert_eq!(read_bounded(&link, 1 << 20).unwrap(), b"0123456789");
    }

    /// A FIFO with no writer is refused at once, naming the path.
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("ca.crt");
        mkfifo(&fifo);
        let e = read_bounded(&fifo, 1 << 20).unwrap_err();
        assert!(
            matches!(e.problem, ReadProblem::NotRegular("a FIFO")),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            format!("{}: not a regular file (a FIFO)", fifo.display())
        );
    }

    /// `/dev/zero` (endless) and a directory are refused.
    #[test]
    fn devices_and_directories_are_refused() {
        let e = read_bounded(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(
            matches!(e.problem, ReadProblem::NotRegular("a character device")),
            "{e}"
        );
        assert!(e.to_string().starts_with("/dev/zero: "), "{e}");
        let d = tempfile::tempdir().unwrap();
        let e = read_bounded(d.path(), 1 << 20).unwrap_err();
        assert!(
            matches!(e.problem, ReadProblem::NotRegular("a directory")),
            "{e}"
        );
    }

    /// A file one byte over the limit is refused, naming path and limit.
    #[test]
    fn an_oversize_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("big.pem");
        fs::write(&f, vec![b'x'; 11]).unwrap();
        let e = read_bounded(&f, 10).unwrap_err();
        assert!(
            matches!(e.problem, ReadProblem::TooLarge { limit: 10 }),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            format!("{}: larger than the 10-byte limit", f.display())
        );
    }

    /// The process's or the system's shortage (EMFILE, ENFILE, ENOMEM) is
    /// told apart from the file's problems, and says its errno.
    #[test]
    fn a_shortage_is_the_process_s_own() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM] {
            let p = ReadProblem::from(std::io::Error::from_raw_os_error(errno));
            assert!(p.is_out_of_resources(), "{p}");
            assert!(p.to_string().contains(&format!("os error {errno}")), "{p}");
        }
        for errno in [libc::ENOENT, libc::EACCES, libc::EIO] {
            let p = ReadProblem::from(std::io::Error::from_raw_os_error(errno));
            assert!(!p.is_out_of_resources(), "{p}");
        }
    }

    /// A missing file is a plain I/O error that says so.
    #[test]
    fn a_missing_file_is_not_found() {
        let d = tempfile::tempdir().unwrap();
        let e = read_bounded(&d.path().join("nope"), 10).unwrap_err();
        assert!(e.problem.is_not_found(), "{e}");
    }

    /// CAP_DAC_OVERRIDE in CapEff is read as the kernel's open would
    /// honour it; other capabilities, or a status without the line, not.
    #[test]
    fn only_an_effective_dac_override_leaves_eacces_to_the_open() {
        assert!(overrides_modes("Name:\thp\nCapEff:\t0000000000000002\n"));
        assert!(overrides_modes("CapEff:\t000001ffffffffff\n"));
        assert!(!overrides_modes(
            "CapPrm:\t0000000000000002\nCapEff:\t0000000000000000\n"
        ));
        assert!(!overrides_modes("CapEff:\t0000000000000400\n"));
        assert!(!overrides_modes(""));
    }
}
