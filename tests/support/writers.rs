//! File writers that behave exactly like the tools that put certificates on disk.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// kubelet's AtomicWriter for Secret / ConfigMap volumes.
pub struct Kubelet {
    pub dir: PathBuf,
    /// The volume's `defaultMode` (0644 unless the pod spec says otherwise).
    pub mode: u32,
}

impl Kubelet {
    pub fn new(dir: &Path) -> Kubelet {
        fs::create_dir_all(dir).unwrap();
        Kubelet {
            dir: dir.to_path_buf(),
            mode: 0o644,
        }
    }

    /// A volume with `defaultMode: mode` (e.g. 0440 for Secrets).
    pub fn with_mode(dir: &Path, mode: u32) -> Kubelet {
        Kubelet {
            mode,
            ..Kubelet::new(dir)
        }
    }

    /// One update: files into `..<timestamp>.<random>`, `..data_tmp` ->
    /// that dir renamed over `..data` (the atomic step), visible links
    /// created if missing, the old timestamped dir removed last.
    /// `legacy_order` creates the visible links before the swap.
    pub fn write(&self, files: &[(&str, &str)], legacy_order: bool) {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let now = time::OffsetDateTime::now_utc();
        let ts = format!(
            "..{}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}{n}",
            now.year(),
            now.month() as u8,
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.nanosecond()
        );
        let ts_dir = self.dir.join(&ts);
        fs::create_dir(&ts_dir).unwrap();
        fs::set_permissions(&ts_dir, fs::Permissions::from_mode(0o755)).unwrap();
        for (name, content) in files {
            let p = ts_dir.join(name);
            fs::write(&p, content).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(self.mode)).unwrap();
        }
        let link_visible = || {
            for (name, _) in files {
                let visible = self.dir.join(name);
                if fs::symlink_metadata(&visible).is_err() {
                    symlink(format!("..data/{name}"), &visible).unwrap();
                }
            }
        };
        if legacy_order {
            link_visible();
        }
        let old = fs::read_link(self.dir.join("..data")).ok();
        let tmp = self.dir.join("..data_tmp");
        let _ = fs::remove_file(&tmp);
        symlink(&ts, &tmp).unwrap();
        fs::rename(&tmp, self.dir.join("..data")).unwrap();
        if !legacy_order {
            link_visible();
        }
        if let Some(old) = old {
            fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

/// certbot renewal: archive files, then live links replaced one by one.
pub struct Certbot {
    pub root: PathBuf,
    pub name: String,
    generation: u32,
}

impl Certbot {
    pub fn new(root: &Path, name: &str) -> Certbot {
        fs::create_dir_all(root.join("archive").join(name)).unwrap();
        fs::create_dir_all(root.join("live").join(name)).unwrap();
        Certbot {
            root: root.to_path_buf(),
            name: name.into(),
            generation: 0,
        }
    }

    pub fn live(&self, kind: &str) -> PathBuf {
        self.root
            .join("live")
            .join(&self.name)
            .join(format!("{kind}.pem"))
    }

    /// The live links in the order certbot relinks them.
    pub const LINKS: [&'static str; 4] = ["cert", "privkey", "chain", "fullchain"];

    /// Issue generation N+1; `pause` between link steps leaves the
    /// intermediate states (missing link, old fullchain + new privkey) visible.
    pub fn renew(&mut self, cert: &str, key: &str, chain: &str, pause: Duration) {
        let n = self.archive(cert, key, chain);
        for kind in Self::LINKS {
            let live = self.live(kind);
            let _ = fs::remove_file(&live);
            std::thread::sleep(pause);
            symlink(format!("../../archive/{}/{kind}{n}.pem", self.name), &live).unwrap();
            std::thread::sleep(pause);
        }
    }

    /// Write generation N+1 to the archive, linking nothing yet: its number.
    pub fn archive(&mut self, cert: &str, key: &str, chain: &str) -> u32 {
        self.generation += 1;
        let n = self.generation;
        let archive = self.root.join("archive").join(&self.name);
        let fullchain = format!("{cert}{chain}");
        for (kind, content) in [
            ("cert", cert),
            ("privkey", key),
            ("chain", chain),
            ("fullchain", fullchain.as_str()),
        ] {
            let p = archive.join(format!("{kind}{n}.pem"));
            fs::write(&p, content).unwrap();
            if kind == "privkey" {
                fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
        n
    }

    /// One step of a renewal: the live `kind` link now points at
    /// generation `n` (certbot's way: the old link removed, a new one made).
    pub fn relink(&self, kind: &str, n: u32) {
        let live = self.live(kind);
        let _ = fs::remove_file(&live);
        symlink(format!("../../archive/{}/{kind}{n}.pem", self.name), &live).unwrap();
    }
}

/// `mv new old`: write a temp file beside `path`, rename it over.
pub fn mv_over(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// `cp` in place: truncate and write the same inode.
pub fn cp_in_place(path: &Path, content: &str) {
    fs::write(path, content).unwrap();
}

/// A slow writer: truncate, write half, pause, write the rest.
pub fn slow_write(path: &Path, content: &str, pause: Duration) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let half = content.len() / 2;
    f.write_all(&content.as_bytes()[..half]).unwrap();
    f.flush().unwrap();
    std::thread::sleep(pause);
    f.write_all(&content.as_bytes()[half..]).unwrap();
}
