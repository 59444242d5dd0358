//! The store key's creation: a failed first start leaves no key behind, and a key is never replaced.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use hotproxy::config::{EntryKind, EntrySource, EntrySpec, StoreConfig};
use hotproxy::material::store::Store;

use crate::common::*;
use crate::store::{Undo, sh};
use crate::support::*;

/// A store in `dir/data`, its key in `dir/keys`.
fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        path: dir.join("data/store.json"),
        key_file: dir.join("keys/store.key"),
        file_roots: None,
    }
}

/// The key file's length and mode.
fn key_file(c: &StoreConfig) -> (usize, u32) {
    let meta = std::fs::symlink_metadata(&c.key_file).unwrap();
    (meta.len() as usize, meta.permissions().mode() & 0o777)
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The key was written in place (open, write, fsync): a first start that
/// failed on a full filesystem (or was killed half-way) left a short key
/// file, and every later start refused it ("holds 0 bytes; it must hold
/// exactly 32"), with no store it could belong to. The key is now written
/// to a temp file and put in place whole: the failed start leaves nothing
/// (its temp file removed), and the next one, with room, makes the key.
/// (The key's directory is a 4 KiB tmpfs, filled up: root only, as mount
/// needs it.)
#[test]
fn a_first_start_that_cannot_write_the_key_leaves_none() {
    if !is_root() {
        // CI runs as root: there, a skipped case would be a test that
        // cannot fail.
        assert!(
            std::env::var_os("CI").is_none(),
            "the full filesystem case needs root (mount) and CI must run it"
        );
        eprintln!("full filesystem case skipped: mount needs root");
        return;
    }
    let s = Scene::new();
    let c = config(s.path("").as_path());
    let keys = s.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=4k",
        "tmpfs",
        keys.to_str().unwrap(),
    ]);
    let _unmount = Undo(vec!["umount", "-l"], keys.clone());
    let filler = keys.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        // Bounded: 4 KiB fills in at most one page.
        for _ in 0..4 {
            if f.write_all(&[0u8; 4096])
                .and_then(|_| f.sync_all())
                .is_err()
            {
                break;
            }
        }
    }
    let err = Store::open(&c).err().expect("a full filesystem");
    assert!(
        err.contains("store.key_file") && err.contains("No space left on device"),
        "{err}"
    );
    assert_eq!(names(&keys), ["filler"], "left in the key's directory");

    std::fs::remove_file(&filler).unwrap();
    Store::open(&c).unwrap_or_else(|e| panic!("after freeing space: {e}"));
    assert_eq!(key_file(&c), (32, 0o600));
    assert_eq!(names(&keys), ["store.key"], "left in the key's directory");
}

/// First starts racing for the key (two processes on one volume, a
/// restart overlapping its predecessor): each found no key, and all but
/// one were refused ("cannot create: File exists"), or read the winner's
/// file before it was written ("holds 0 bytes"). The key is put in place
/// whole and never over another: a start that finds one there uses it.
/// Every store opened holds the key on disk, which reads back what each
/// saves; a temp file left by a killed start changes nothing.
#[test]
fn first_starts_racing_for_the_key_share_one() {
    const STARTS: usize = 8;
    let ca = TestCa::new("ca");
    for round in 0..20 {
        let s = Scene::new();
        let c = config(s.path("").as_path());
        let keys = s.path("keys");
        std::fs::create_dir_all(&keys).unwrap();
        // What a start killed before it put its key in place leaves.
        let stale = keys.join(".store.key.tmp.00112233aabbccdd");
        std::fs::write(&stale, [7u8; 5]).unwrap();
        let barrier = std::sync::Barrier::new(STARTS);
        let stores: Vec<Store> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..STARTS)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        Store::open(&c).map(|(store, _)| store)
                    })
                })
                .collect();
            starts
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("round {round}: {e}"))
        });
        assert_eq!(key_file(&c), (32, 0o600), "round {round}");
        assert_eq!(std::fs::read(&stale).unwrap(), [7u8; 5]);
        for (i, store) in stores.iter().enumerate() {
            let entry = EntrySpec {
                id: format!("saved-by-{i}"),
                kind: EntryKind::CaBundle,
                source: EntrySource::CaInline {
                    ca_pem: ca.cert_pem.clone(),
                    crl_pem: None,
                },
                anonymous: false,
            };
            store.save(std::slice::from_ref(&entry)).unwrap();
            let (_, back) =
                Store::open(&c).unwrap_or_else(|e| panic!("round {round}, start {i}: {e}"));
            assert_eq!(back, [entry], "round {round}");
        }
    }
}
