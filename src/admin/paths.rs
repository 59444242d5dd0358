//! Which files the admin API may name: only paths under `store.file_roots`, decided without opening them.
//!
//! An editor token must not become a way to probe the host ("no such
//! file" versus "not a PEM" tells whether `/root/.ssh/id_rsa` exists), so
//! a path outside the roots is refused before anything is opened, with a
//! message that is the same whether or not it exists. The check of a path
//! is lexical: `..` is refused outright (a symlink before it would make a
//! lexical `..` lie), and symlinks inside a root are followed, as the
//! configuration's own files are (kubelet's `..data`, certbot's `live/`).
//! A root's `..`, the operator's, is resolved as the kernel would.

use std::path::{Component, Path, PathBuf};

use crate::config::{Config, EntrySource};
use crate::material::shown_path;

/// The directories API-supplied paths must be under: `store.file_roots`
/// when set, else every directory the configuration file's own entries
/// read from.
///
/// Their `..` are resolved (a configuration read as `--config
/// ../etc/hotproxy.yaml` has every path made from `/srv/app/../etc`): a
/// root with a `..` would contain no path the API may name, which has none.
/// See [`resolved`] for how.
pub fn roots(config: &Config) -> Vec<PathBuf> {
    if let Some(roots) = config.store.as_ref().and_then(|s| s.file_roots.clone()) {
        return roots.iter().filter_map(|r| resolved(r)).collect();
    }
    let mut dirs: Vec<PathBuf> = config
        .entries
        .iter()
        .flat_map(|e| e.source.paths())
        .filter_map(|p| p.parent().and_then(resolved))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// The longest path the API takes, in bytes: Linux's `PATH_MAX` (4096)
/// counts the terminating NUL, so 4095 is the longest any call opens (one
/// of 4096 is `ENAMETOOLONG`). A longer one (a body may hold 1 MiB of it)
/// names no file, and a refusal repeating it whole would be that long.
pub const MAX_PATH_BYTES: usize = 4095;

/// `Ok` when every file `source` names is under one of `roots`; else the
/// refusal, naming the field (and the path the caller gave, which tells
/// them nothing new) but never whether it exists. The path is shown as a
/// material path is in its load messages ([`shown_path`]): whole and
/// escaped, so one holding a terminal escape does not reach the admin
/// client's terminal as is; one over [`MAX_PATH_BYTES`] is refused by its
/// length, not repeated, wherever it points.
pub fn check(source: &EntrySource, roots: &[PathBuf]) -> Result<(), String> {
    for (field, path) in fields(source) {
        let bytes = path.as_os_str().len();
        if bytes > MAX_PATH_BYTES {
            return Err(format!(
                "field {field}: a path of {bytes} bytes is longer than any the system opens (at most {MAX_PATH_BYTES} bytes)"
            ));
        }
        if !within(path, roots) {
            return Err(format!(
                "field {field}: {} is not under store.file_roots; the admin API may only name files in those directories",
                shown_path(path)
            ));
        }
    }
    Ok(())
}

/// What is done with a stored entry naming files outside
/// `store.file_roots` (`run` logs it, `check` prints it).
pub const OUTSIDE_ROOTS: &str =
    "it is kept and served, a PUT to it is refused, DELETE it to drop it";

/// The files of [`outside`], shown and joined by `, `; `None` when none is.
pub fn outside_shown(source: &EntrySource, roots: &[PathBuf]) -> Option<String> {
    let files: Vec<String> = outside(source, roots)
        .iter()
        .map(|f| shown_path(f))
        .collect();
    (!files.is_empty()).then(|| files.join(", "))
}

/// The files `source` names that are not under one of `roots` (none for
/// inline material): what a PUT of it would be refused for.
pub fn outside<'a>(source: &'a EntrySource, roots: &[PathBuf]) -> Vec<&'a Path> {
    fields(source)
        .into_iter()
        .map(|(_, path)| path)
        .filter(|path| !within(path, roots))
        .collect()
}

/// The files `source` names, each with the field that names it.
fn fields(source: &EntrySource) -> Vec<(&'static str, &Path)> {
    match source {
        EntrySource::PairFiles {
            cert_file,
            key_file,
        } => vec![("cert_file", cert_file), ("key_file", key_file)],
        EntrySource::CaFiles { ca_file, crl_files } => std::iter::once(("ca_file", &**ca_file))
            .chain(crl_files.iter().map(|p| ("crl_files", &**p)))
            .collect(),
        EntrySource::PairInline { .. } | EntrySource::CaInline { .. } => Vec::new(),
    }
}

/// The directory a root names, as the kernel finds it: `.` dropped, and
/// the part up to its last `..` (the operator's path, never the API's)
/// resolved on disk, since a `..` after a symlink goes up from where the
/// link points. Taking each `..` as dropping the component before it
/// made `app/current/../keys`, `current` a link to `releases/42`, allow
/// `app/keys`, a directory the operator never named, and refuse
/// `releases/keys`, the one the kernel opens. `None` (the root allows
/// nothing) when that part cannot be resolved: no file is there to open.
/// A root without `..` is taken as written, without touching the disk.
fn resolved(root: &Path) -> Option<PathBuf> {
    let components: Vec<Component> = root.components().collect();
    let (base, rest) = match components.iter().rposition(|c| *c == Component::ParentDir) {
        Some(last) => {
            let up: PathBuf = components[..=last].iter().collect();
            (std::fs::canonicalize(up).ok()?, &components[last + 1..])
        }
        None => (PathBuf::new(), &components[..]),
    };
    let rest: PathBuf = rest.iter().filter(|c| **c != Component::CurDir).collect();
    Some(if rest.as_os_str().is_empty() {
        base
    } else {
        base.join(rest)
    })
}

/// Absolute, no `..`, and inside (or equal to) one of `roots`, compared
/// component by component (`/etc/tls` does not contain `/etc/tls-other`).
fn within(path: &Path, roots: &[PathBuf]) -> bool {
    path.is_absolute()
        && !path.components().any(|c| c == Component::ParentDir)
        && roots.iter().any(|root| {
            !root.components().any(|c| c == Component::ParentDir) && path.starts_with(root)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(path: &str) -> EntrySource {
        EntrySource::CaFiles {
            ca_file: path.into(),
            crl_files: Vec::new(),
        }
    }

    #[test]
    fn paths_under_roots_only() {
        let roots = vec![PathBuf::from("/etc/tls"), PathBuf::from("/run/secrets/app")];
        let ok = |p: &str| check(&ca(p), &roots).is_ok();
        assert!(ok("/etc/tls/ca.crt"));
        assert!(ok("/etc/tls/sub/dir/ca.crt"));
        assert!(ok("/etc/tls/./ca.crt"));
        assert!(ok("/run/secrets/app/..data/ca.crt"));
        assert!(!ok("/etc/tls-other/ca.crt"));
        assert!(!ok("/etc/tls/../shadow"));
        assert!(!ok("/etc/tls/sub/../../passwd"));
        assert!(!ok("/etc/passwd"));
        assert!(!ok("etc/tls/ca.crt"));
        assert!(!ok("/"));
        // Inline material names no file.
        let inline = EntrySource::CaInline {
            ca_pem: "x".into(),
            crl_pem: None,
        };
        assert!(check(&inline, &[]).is_ok());
        // No roots: no file at all.
        assert!(check(&ca("/etc/tls/ca.crt"), &[]).is_err());
        // The refusal names the field and says the same for any path.
        let e = check(
            &EntrySource::CaFiles {
                ca_file: "/etc/tls/ca.crt".into(),
                crl_files: vec!["/nope/x.crl".into()],
            },
            &roots,
        )
        .unwrap_err();
        assert!(
            e.starts_with("field crl_files: /nope/x.crl is not under"),
            "{e}"
        );
    }

    /// A root written with `..`, or made from a configuration read as
    /// `--config ../etc/hotproxy.yaml`, contains what it names: every file
    /// the API named was refused. One whose `..` cannot be resolved (the
    /// directory before it is gone) allows nothing.
    #[test]
    fn roots_with_dot_dot_are_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let d = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(d.join("srv/app")).unwrap();
        std::fs::create_dir_all(d.join("srv/etc")).unwrap();
        let text = "
certs:
  - { id: edge, type: server-pair, cert_file: ../tls/a.crt, key_file: ../tls/a.key }
listeners:
  - name: public
    bind: 127.0.0.1:8443
    tls: { certs: [{ ref: edge }] }
    routes: [{ upstream: api }]
upstreams:
  - { name: api, servers: [\"http://127.0.0.1:9000\"] }
";
        let file = d.join("srv/app/../etc/hotproxy.yaml");
        let parsed = |text: &str| match crate::config::parse(text, &file) {
            Ok(c) => c,
            Err(e) => panic!("{}", e.render()),
        };
        let by_entries = roots(&parsed(text));
        assert_eq!(by_entries, vec![d.join("srv/tls")]);
        assert!(check(&ca(d.join("srv/tls/ca.crt").to_str().unwrap()), &by_entries).is_ok());
        let srv = d.join("srv");
        let srv = srv.display();
        let written = format!(
            "store: {{ path: /var/lib/h/store.json, key_file: /var/lib/h/key, file_roots: [{srv}/app/../x, {srv}/./y, {srv}/gone/../z] }}\n{text}"
        );
        let by_field = roots(&parsed(&written));
        assert_eq!(by_field, vec![d.join("srv/x"), d.join("srv/y")]);
        assert!(check(&ca(d.join("srv/app/ca.crt").to_str().unwrap()), &by_field).is_err());
    }
}
