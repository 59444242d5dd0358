//! The store on disk: planted temp files, write faults, its size limit, a CA released by `null`.

use serde_json::json;

use crate::common::*;
use crate::support::*;

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// The store's temp file was `.store.json.tmp.<pid>`, opened with
/// create+truncate: a planted 0644 file there made the store 0644, and a
/// planted symlink was written through (and then renamed over the store).
/// Now the temp file is new (O_EXCL), random, never a followed link, and
/// 0600 from its creation.
#[tokio::test]
async fn planted_temp_files_change_nothing() {
    let a = Api::start("").await;
    let data = a.s.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let store = data.join("store.json");
    let old_tmp = data.join(format!(".store.json.tmp.{}", a.p.pid()));
    // A world-readable file at the predictable name.
    std::fs::write(&old_tmp, "planted").unwrap();
    std::fs::set_permissions(
        &old_tmp,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    a.create(inline_ca("one", &a.ca)).await;
    assert!(std::fs::symlink_metadata(&store).unwrap().is_file());
    assert_eq!(
        mode(&store),
        0o600,
        "the store took the planted file's mode"
    );
    // A symlink at the predictable name, to a file the attacker wants written.
    let _ = std::fs::remove_file(&old_tmp);
    let victim = a.s.path("victim.txt");
    std::fs::write(&victim, "victim").unwrap();
    std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
    a.create(inline_ca("two", &a.ca)).await;
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim");
    assert!(
        std::fs::symlink_metadata(&store).unwrap().is_file(),
        "the store became a symlink"
    );
    assert_eq!(mode(&store), 0o600);
    // No temp file is left behind; the planted link is still the attacker's.
    let left: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "store.json" && *n != old_tmp.file_name().unwrap().to_string_lossy())
        .collect();
    assert!(left.is_empty(), "left in the store directory: {left:?}");
    let r = a.editor("GET", "/api/v1/certs", None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 3, "{}", r.body);
}

/// Runs a command that must succeed (root-only fault setups), killed
/// with a panic at `CLI_DEADLINE` (a `mount` that blocks must not hang CI).
pub(crate) fn sh(args: &[&str]) {
    let out = output_within_deadline(
        std::process::Command::new(args[0])
            .args(&args[1..])
            .stderr(std::process::Stdio::piped()),
    );
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Undoes a fault on drop, even when the test fails half-way.
pub(crate) struct Undo(pub Vec<&'static str>, pub std::path::PathBuf);

impl Drop for Undo {
    fn drop(&mut self) {
        let _ = std::process::Command::new(self.0[0])
            .args(&self.0[1..])
            .arg(&self.1)
            .status();
    }
}

/// A store change that cannot be written is an error answer, and nothing
/// changes: not the store file, not the catalogue, not what is served.
async fn refused_write_changes_nothing(a: &Api, store: &std::path::Path, what: &str) {
    let before = std::fs::read(store).unwrap();
    let catalogue = a.editor("GET", "/api/v1/certs", None).await.body;
    let served = served_leaf(a.addr, "localhost", &a.ca.cert_pem)
        .await
        .unwrap();
    for (method, path, body) in [
        ("POST", "/api/v1/certs", Some(inline_ca("more", &a.ca))),
        (
            "PUT",
            "/api/v1/certs/kept",
            Some(
                json!({"type": "ca-bundle", "source": "inline", "ca_pem": TestCa::new("x").cert_pem}),
            ),
        ),
        ("DELETE", "/api/v1/certs/kept", None),
    ] {
        let r = a.editor(method, path, body).await;
        assert_eq!(r.status, 500, "{what}: {method} {path}: {}", r.body);
        let m = r.json()["message"].as_str().unwrap().to_owned();
        assert!(
            m.contains("store") && m.contains("store.json"),
            "{what}: {m}"
        );
    }
    assert_eq!(
        std::fs::read(store).unwrap(),
        before,
        "{what}: store changed"
    );
    // A failed write leaves no temp file behind (it would fill the disk).
    let left: Vec<_> = std::fs::read_dir(store.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(left.is_empty(), "{what}: left behind: {left:?}");
    assert_eq!(
        a.editor("GET", "/api/v1/certs", None).await.body,
        catalogue,
        "{what}"
    );
    let now = served_leaf(a.addr, "localhost", &a.ca.cert_pem)
        .await
        .unwrap();
    assert_eq!(now, served, "{what}");
}

/// Faults: the store directory made unwritable (`chattr +i` as root, which
/// stops root too; `chmod a-w` otherwise) and the store's filesystem full
/// (a 64 KiB tmpfs; root only, as mount needs it). The API answers an
/// error, the old store is intact, nothing served changes, and once the
/// fault is gone the same change goes through.
#[tokio::test]
async fn store_write_faults_change_nothing() {
    let root = is_root();
    // Read-only directory.
    let a = Api::start("").await;
    a.create(inline_ca("kept", &a.ca)).await;
    let data = a.s.path("data");
    let undo = if root {
        sh(&["chattr", "+i", data.to_str().unwrap()]);
        Undo(vec!["chattr", "-i"], data.clone())
    } else {
        sh(&["chmod", "a-w", data.to_str().unwrap()]);
        Undo(vec!["chmod", "u+w"], data.clone())
    };
    refused_write_changes_nothing(&a, &data.join("store.json"), "read-only directory").await;
    drop(undo);
    let r = a
        .editor("POST", "/api/v1/certs", Some(inline_ca("more", &a.ca)))
        .await;
    assert_eq!(r.status, 201, "after the directory is writable: {}", r.body);

    if !root {
        // CI runs as root: there, a skipped case would be a test that
        // cannot fail.
        assert!(
            std::env::var_os("CI").is_none(),
            "the full filesystem case needs root (mount) and CI must run it"
        );
        eprintln!("full filesystem case skipped: mount needs root");
        return;
    }
    // Full filesystem: the store lives on a 64 KiB tmpfs that is filled up.
    let b = Api::with_store("{ path: tiny/store.json, key_file: keys/store.key }", "").await;
    let tiny = b.s.path("tiny");
    std::fs::create_dir_all(&tiny).unwrap();
    sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=64k",
        "tmpfs",
        tiny.to_str().unwrap(),
    ]);
    let _unmount = Undo(vec!["umount", "-l"], tiny.clone());
    b.create(inline_ca("kept", &b.ca)).await;
    let filler = tiny.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = [0u8; 4096];
        // Bounded: 64 KiB fills in at most 16 chunks.
        for _ in 0..64 {
            if f.write_all(&chunk).and_then(|_| f.sync_all()).is_err() {
                break;
            }
        }
    }
    refused_write_changes_nothing(&b, &tiny.join("store.json"), "full filesystem").await;
    std::fs::remove_file(&filler).unwrap();
    let r = b
        .editor("POST", "/api/v1/certs", Some(inline_ca("more", &b.ca)))
        .await;
    assert_eq!(r.status, 201, "after freeing space: {}", r.body);
}

/// The store file's identity and size, to tell whether a change rewrote it.
fn stat(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.ino(), m.len()))
}

/// Start-up reads a store of at most 64 MiB, and the API used to write one
/// of any size: about 48 inline CA bundles of 1 MiB left a store the next
/// start refused. Now the change that would pass the limit is refused
/// (507, naming it) without touching the store or the catalogue, and a
/// restart reads back every entry that was accepted.
#[tokio::test]
async fn a_change_that_would_outgrow_the_store_is_refused() {
    use hotproxy::config::{EntryKind, EntrySource, EntrySpec, StoreConfig};
    let mut a = Api::start("").await;
    // One certificate after comment lines (text outside PEM sections is
    // skipped, as in system bundles): cheap to parse, and just under the
    // 1 MiB body limit once in JSON.
    let comment = format!("# {}\n", "x".repeat(76));
    let pad = comment.repeat((1_000_000 - a.ca.cert_pem.len()) / comment.len());
    let bundle = format!("{pad}{}", a.ca.cert_pem);
    // 47 such entries (about 63.5 MB sealed) written as the API would, in
    // one save: 47 POSTs would rewrite the growing store 47 times.
    let store = a.s.path("data/store.json");
    let (seeder, _) = hotproxy::material::store::Store::open(&StoreConfig {
        path: store.clone(),
        key_file: a.s.path("keys/store.key"),
        file_roots: None,
    })
    .unwrap();
    let seeded: Vec<EntrySpec> = (0..47)
        .map(|n| EntrySpec {
            id: format!("seed-{n}"),
            kind: EntryKind::CaBundle,
            source: EntrySource::CaInline {
                ca_pem: bundle.clone(),
                crl_pem: None,
            },
            anonymous: false,
        })
        .collect();
    seeder.save(&seeded).unwrap();
    a.restart().await;
    let mut accepted = seeded.len();
    let mut refused = None;
    // Bounded: each entry adds about 1.35 MB, so the third passes 64 MiB.
    for n in 0..6 {
        let id = format!("big-{n}");
        let body = json!({"id": id, "type": "ca-bundle", "source": "inline", "ca_pem": bundle});
        let before = stat(&store);
        let r = a.editor("POST", "/api/v1/certs", Some(body)).await;
        if r.status == 201 {
            accepted += 1;
            continue;
        }
        assert_eq!(stat(&store), before, "a refused change rewrote the store");
        let gone = a.editor("GET", &format!("/api/v1/certs/{id}"), None).await;
        assert_eq!(gone.status, 404, "{}", gone.body);
        refused = Some(r);
        break;
    }
    assert!(accepted > seeded.len(), "nothing was accepted");
    served_leaf(a.addr, "localhost", &a.ca.cert_pem)
        .await
        .unwrap();
    // Whatever was accepted survives a restart.
    a.restart().await;
    let listed = a.editor("GET", "/api/v1/certs", None).await;
    assert_eq!(listed.json().as_array().unwrap().len(), accepted + 1);
    let r = refused.expect("53 entries of 1 MiB and no refusal");
    assert_eq!(r.status, 507, "{}", r.body);
    let m = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        m.contains("67108864-byte limit") && m.contains("nothing was changed"),
        "{m}"
    );
}

/// `"ca": null` in a client-auth PUT meant the same as no `ca` (keep the
/// current one), so a CA set at runtime could never be let go and its
/// entry could never be deleted (409, still referenced). Now `null`
/// removes it, as `allow: null` removes the rules; absent still keeps it,
/// and a mode that verifies is refused without one.
#[tokio::test]
async fn client_auth_ca_null_releases_the_ca() {
    let a = Api::start("").await;
    let clients = TestCa::new("clients");
    let path = "/api/v1/listeners/public/client-auth";
    a.create(inline_ca("clients", &clients)).await;
    let verify = json!({"mode": "require_and_verify", "ca": "clients"});
    let r = a.editor("PUT", path, Some(verify.clone())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Absent keeps the CA.
    let r = a
        .editor("PUT", path, Some(json!({"mode": "verify_if_given"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["ca"], "clients", "{}", r.body);
    // null releases it, and the entry can go.
    let r = a
        .editor("PUT", path, Some(json!({"mode": "none", "ca": null})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["ca"], json!(null), "{}", r.body);
    let r = a.editor("GET", path, None).await;
    assert_eq!(r.json()["ca"], json!(null), "{}", r.body);
    let r = a.editor("DELETE", "/api/v1/certs/clients", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A mode that verifies needs a CA: null there is refused, nothing changes.
    a.create(inline_ca("clients", &clients)).await;
    let r = a.editor("PUT", path, Some(verify)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = a
        .editor(
            "PUT",
            path,
            Some(json!({"mode": "require_and_verify", "ca": null})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("needs a ca"));
    let r = a.editor("GET", path, None).await;
    assert_eq!(r.json()["mode"], "require_and_verify", "{}", r.body);
    assert_eq!(r.json()["ca"], "clients", "{}", r.body);
}

/// A stored entry's files are the caller's text: the warning naming one
/// left outside narrowed roots wrote its path raw (`files`), so one
/// holding an ESC reached the log (and the terminal showing it) as is.
/// It is escaped there, whole, as a material path is in its load
/// messages; the API's JSON keeps the real path (JSON escapes it).
#[tokio::test]
async fn a_stored_path_is_shown_escaped_in_the_narrowed_roots_warning() {
    let mut a = Api::with_store(
        "{ path: data/store.json, key_file: keys/store.key, file_roots: [old] }",
        "",
    )
    .await;
    let odd = a.s.path("old/a\x1b[2J\tb.crt");
    write(&odd, &a.ca.cert_pem);
    let body = json!({"id": "odd", "type": "ca-bundle", "source": "file", "ca_file": odd});
    a.create(body).await;
    let r = a.editor("GET", "/api/v1/certs/odd", None).await;
    assert_eq!(
        r.json()["paths"][0],
        odd.display().to_string(),
        "{}",
        r.body
    );
    let cfg = a.s.path("config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    write(
        &cfg,
        &text.replace("file_roots: [old]", "file_roots: [new]"),
    );
    a.p.signal("HUP");
    let told =
        a.p.wait_log("the reload's warning", |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("outside store.file_roots"))
        })
        .await;
    let files = told["files"].as_str().unwrap();
    assert!(!files.contains(['\x1b', '\t']), "{told}");
    let dir = a.s.path("old").display().to_string();
    assert_eq!(files, format!("{dir}/a\\u{{1b}}[2J\\tb.crt"), "{told}");
}

/// A reload moving `store.key_file` (no store file yet, so the next start
/// creates the key) or `store.path` is accepted and applies at the next
/// restart, but API writes went on to the running store: a create sealed
/// the store with the running key (the next start refused it, a crash
/// loop) or wrote the running file (gone at restart). Every persisting
/// change is refused with 409 naming the field until a restart; reads
/// stay; after the restart the new store takes them.
#[tokio::test]
async fn a_store_moved_by_a_reload_takes_no_change_until_a_restart() {
    const RUNNING: &str = "{ path: data/store.json, key_file: keys/store.key }";
    for (field, moved) in [
        (
            "store.key_file",
            "{ path: data/store.json, key_file: keys/next.key }",
        ),
        (
            "store.path",
            "{ path: data/next.json, key_file: keys/store.key }",
        ),
    ] {
        let mut a = Api::start("").await;
        // A stored entry only where the reload still opens the store.
        let kept = field == "store.path";
        if kept {
            a.create(inline_ca("kept", &a.ca)).await;
        }
        let cfg = a.s.path("config.yaml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        assert!(text.contains(RUNNING), "{text}");
        write(&cfg, &text.replace(RUNNING, moved));
        a.p.signal("HUP");
        a.p.wait_log("the reload", |v| v["message"] == "configuration reloaded")
            .await;
        let refused = |r: &AdminReply| {
            assert_eq!(r.status, 409, "{field}: {}", r.body);
            let message = r.json()["message"].as_str().unwrap().to_owned();
            assert!(
                message.contains(field) && message.contains("restart"),
                "{message}"
            );
        };
        let r = a
            .editor("POST", "/api/v1/certs", Some(inline_ca("new", &a.ca)))
            .await;
        refused(&r);
        if kept {
            let r = a
                .editor("PUT", "/api/v1/certs/kept", Some(inline_ca("kept", &a.ca)))
                .await;
            refused(&r);
            let r = a.editor("DELETE", "/api/v1/certs/kept", None).await;
            refused(&r);
            let r = a.editor("GET", "/api/v1/certs/kept", None).await;
            assert_eq!(r.status, 200, "{}", r.body);
        } else {
            // Nothing was sealed with the running key.
            assert!(!a.s.path("data/store.json").exists());
        }
        let r = a.editor("GET", "/api/v1/certs", None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        // The restart opens the moved store, which takes changes.
        a.restart().await;
        a.create(inline_ca("new", &a.ca)).await;
        a.restart().await;
        let r = a.editor("GET", "/api/v1/certs/new", None).await;
        assert_eq!(r.status, 200, "{field}: {}", r.body);
    }
}
