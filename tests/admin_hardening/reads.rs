//! How often a change reads an entry's files: once when it applies them, never when it is refused first.

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::common::*;
use crate::support::*;

/// The opens (inotify) of files in one directory, counted per request
/// between marks: a request's own opens all come before the test's open of
/// `mark` there, which the events then deliver in order.
struct Opens {
    dir: PathBuf,
    events: UnboundedReceiver<Vec<PathBuf>>,
    _watcher: RecommendedWatcher,
}

impl Opens {
    fn watch(dir: &Path) -> Opens {
        write(&dir.join("mark"), "");
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
            if let Ok(e) = e
                && matches!(e.kind, EventKind::Access(AccessKind::Open(_)))
            {
                let _ = tx.send(e.paths);
            }
        })
        .unwrap();
        watcher.watch(dir, RecursiveMode::NonRecursive).unwrap();
        Opens {
            dir: dir.to_owned(),
            events,
            _watcher: watcher,
        }
    }

    /// How often `file` in the directory was opened since the last call.
    async fn of(&mut self, file: &str) -> usize {
        std::fs::File::open(self.dir.join("mark")).unwrap();
        let mut n = 0;
        loop {
            let paths = within_deadline("the mark's open event", self.events.recv())
                .await
                .expect("the watcher runs");
            if paths.iter().any(|p| p.ends_with("mark")) {
                return n;
            }
            n += paths.iter().filter(|p| p.ends_with(file)).count();
        }
    }
}

/// A stored pair's files in `pki/stored` (under the default
/// `store.file_roots`), their body, and the opens of that directory.
fn stored_pair(a: &Api) -> (serde_json::Value, Opens) {
    let dir = a.s.path("pki/stored");
    let pair = a.ca.server_pair(&["stored.local"]);
    write(&dir.join("a.crt"), &pair.cert_pem);
    write(&dir.join("a.key"), &pair.key_pem);
    let body = json!({"type": "server-pair", "source": "file",
        "cert_file": dir.join("a.crt"), "key_file": dir.join("a.key")});
    (body, Opens::watch(&dir))
}

/// Creates the entry `stored` of `body`, and waits for the watcher's first
/// look at its files (a newly watched entry is re-read once, a moment
/// after it is created), which reads them as a validation does.
async fn create_stored(a: &mut Api, body: &serde_json::Value) {
    let mut created = body.clone();
    created["id"] = json!("stored");
    a.create(created).await;
    a.p.wait_log("the watcher's first look at stored", |v| {
        v["entry"] == "stored" && v["message"] == "certificate files re-read: unchanged"
    })
    .await;
}

/// A POST or PUT of a stored file entry read and parsed its files, wrote
/// the store, then read them again and applied that second read: the bytes
/// checked were not the bytes applied (a renewal in between failed the
/// call after the store was written). Each now reads them as often as a
/// validation does, once, and applies that read.
#[tokio::test]
async fn a_stored_entry_is_read_once_per_change() {
    let mut a = Api::start("").await;
    let (body, mut opens) = stored_pair(&a);
    let r = a
        .editor("POST", "/api/v1/certs/validate", Some(body.clone()))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let once = opens.of("a.crt").await;
    assert!(once > 0, "the validation read nothing");
    create_stored(&mut a, &body).await;
    assert_eq!(
        opens.of("a.crt").await,
        2 * once,
        "POST /certs, then the watcher's first look"
    );
    // The same paths: watched as they were, not looked at again.
    let r = a
        .editor("PUT", "/api/v1/certs/stored", Some(body.clone()))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(opens.of("a.crt").await, once, "PUT /certs/stored");
}

/// A PUT refused for what it asks, whatever the files hold, opens none:
/// naming other paths for an entry of the configuration file (400), and
/// replacing a stored entry while a reload has moved the store (409).
/// Both were answered after the files were read and parsed.
#[tokio::test]
async fn a_put_refused_before_reading_opens_no_file() {
    let mut a = Api::start("").await;
    let (body, mut opens) = stored_pair(&a);
    create_stored(&mut a, &body).await;
    opens.of("a.crt").await;

    let r = a
        .editor("PUT", "/api/v1/certs/edge", Some(body.clone()))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("change its paths there"), "{}", r.body);
    assert_eq!(opens.of("a.crt").await, 0, "PUT of edge with other paths");

    let cfg = a.s.path("config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    write(
        &cfg,
        &text.replace("path: data/store.json", "path: data/next.json"),
    );
    // Written a minute ago, so SIGHUP reads it at once: one written 20 ms
    // ago or less is deferred until it is still, its reload after the line
    // below, with reads of its own.
    let written = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .append(true)
        .open(&cfg)
        .unwrap()
        .set_modified(written)
        .unwrap();
    a.p.signal("HUP");
    // SIGHUP re-reads every entry's files: those reads are over then.
    let done =
        a.p.wait_log("the reload", |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("SIGHUP: done"))
        })
        .await;
    assert_eq!(done["config"], "applied", "{done}");
    opens.of("a.crt").await;
    let r = a
        .editor("PUT", "/api/v1/certs/stored", Some(body.clone()))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("store.path"), "{}", r.body);
    assert_eq!(opens.of("a.crt").await, 0, "PUT while the store moved");
}
