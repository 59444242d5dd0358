//! Files a body names: FIFOs, devices, directories, huge files, paths outside `store.file_roots`.

use std::time::Duration;

use serde_json::json;

use crate::common::*;
use crate::support::*;

/// The editor's `POST path` with `body`, on a task of its own.
fn spawn_post(
    api: std::net::SocketAddr,
    path: &'static str,
    body: serde_json::Value,
) -> tokio::task::JoinHandle<AdminReply> {
    tokio::spawn(async move { admin(api, "POST", path, Some(EDITOR), Some(body), &[]).await })
}

fn ca_file(id: &str, path: &std::path::Path) -> serde_json::Value {
    json!({"id": id, "type": "ca-bundle", "source": "file", "ca_file": path})
}

/// A FIFO as `ca_file` (create and validate) once froze the reloader
/// (open(2) waits for a writer) and, on one worker, the data plane. Now
/// both calls are refused at once, naming the file, while a rotation of
/// another entry goes through and is served.
#[tokio::test]
async fn fifo_as_ca_file_is_refused_and_rotations_go_on() {
    let a = Api::start("runtime: { worker_threads: 1 }").await;
    let fifo = a.s.path("pki/fifo.crt");
    mkfifo(&fifo);
    let (api, body) = (a.api, ca_file("fifo", &fifo));
    let create = spawn_post(api, "/api/v1/certs", body);
    let validate = spawn_post(api, "/api/v1/certs/validate", ca_file("fifo", &fifo));
    // Meanwhile: rotate `edge` through the API; the new leaf is served.
    let next = a.renew_edge();
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        a.editor("POST", "/api/v1/certs/edge/reload", None),
    )
    .await
    .expect("a rotation is answered while a FIFO is named");
    assert_eq!(r.status, 200, "{}", r.body);
    let leaf = served_leaf(a.addr, "localhost", &a.ca.cert_pem)
        .await
        .unwrap();
    assert_eq!(leaf, next.fingerprint);
    for (what, call) in [("create", create), ("validate", validate)] {
        let r = tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .unwrap_or_else(|_| panic!("{what} with a FIFO never answered"))
            .unwrap();
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        let m = r.json()["message"].as_str().unwrap().to_owned();
        assert!(
            m.contains(&fifo.display().to_string()) && m.contains("not a regular file"),
            "{what}: {m}"
        );
    }
    assert_eq!(
        a.editor("GET", "/api/v1/certs/fifo", None).await.status,
        404
    );
}

/// `/dev/zero` (behind a link in a root), a directory and an oversize file
/// are refused with a message naming the file; nothing is allocated for
/// them and the proxy goes on serving.
#[tokio::test]
async fn devices_directories_and_huge_files_are_refused() {
    let a = Api::start("").await;
    let zero = a.s.path("pki/zero.crt");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let big = a.s.path("pki/big.crt");
    std::fs::write(&big, vec![b'A'; (1 << 20) + 1]).unwrap();
    for (path, want) in [
        (zero, "not a regular file (a character device)"),
        (a.s.path("pki"), "not a regular file (a directory)"),
        (big, "larger than the 1048576-byte limit"),
    ] {
        for endpoint in ["/api/v1/certs", "/api/v1/certs/validate"] {
            let r = a.editor("POST", endpoint, Some(ca_file("x", &path))).await;
            assert_eq!(r.status, 400, "{endpoint} {}: {}", path.display(), r.body);
            let m = r.json()["message"].as_str().unwrap().to_owned();
            assert!(
                m.contains(&path.display().to_string()) && m.contains(want),
                "{endpoint}: {m}"
            );
        }
    }
    served_leaf(a.addr, "localhost", &a.ca.cert_pem)
        .await
        .unwrap();
}

/// Paths outside `store.file_roots` (default: the directories of the
/// configuration's own entries) are refused before anything is opened,
/// with the same message whether the file exists or not; `..` cannot
/// climb out. An explicit `file_roots` replaces the default.
#[tokio::test]
async fn paths_outside_file_roots_are_refused_alike() {
    let a = Api::start("").await;
    let missing = format!("/etc/hotproxy-no-such-file-{}", std::process::id());
    let climb = format!("{}/../../../../../../etc/passwd", a.s.path("pki").display());
    for endpoint in ["/api/v1/certs", "/api/v1/certs/validate"] {
        let exists = refusal(&a, endpoint, "/etc/passwd").await;
        assert!(exists.contains("store.file_roots"), "{exists}");
        assert_eq!(exists, refusal(&a, endpoint, &missing).await, "{endpoint}");
        assert_eq!(exists, refusal(&a, endpoint, &climb).await, "{endpoint}");
        assert_eq!(exists, refusal(&a, endpoint, "/root").await, "{endpoint}");
    }
    // A key file outside the roots is refused too (the second field).
    let r = a
        .editor(
            "POST",
            "/api/v1/certs",
            Some(json!({"id": "p", "type": "server-pair", "source": "file",
                "cert_file": a.s.path("pki/edge.crt"), "key_file": "/etc/shadow"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("key_file"), "{}", r.body);
    // Inside the default root: accepted.
    a.create(ca_file("inside", &a.s.path("pki/ca.crt"))).await;

    // Explicit roots: only `other/` (the config's own pki/ is no longer one).
    let b = Api::with_store(
        "{ path: data/store.json, key_file: keys/store.key, file_roots: [other] }",
        "",
    )
    .await;
    write(&b.s.path("other/ca.crt"), &b.ca.cert_pem);
    let r = b
        .editor(
            "POST",
            "/api/v1/certs",
            Some(ca_file("in-pki", &b.s.path("pki/ca.crt"))),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    b.create(ca_file("in-other", &b.s.path("other/ca.crt")))
        .await;
}

/// A root whose `..` follows a symlink is the directory the kernel finds
/// there, as for any file opened through it: `app/current/../keys`, with
/// `current` a link to `releases/42`, is `releases/keys`. Resolved by its
/// text it was `app/keys`, a directory the operator never named, whose
/// files the API could read, while those of `releases/keys` were refused.
#[tokio::test]
async fn a_root_with_dot_dot_after_a_symlink_is_where_the_kernel_goes() {
    let a = Api::with_store(
        "{ path: data/store.json, key_file: keys/store.key, file_roots: [app/current/../keys] }",
        "",
    )
    .await;
    let dir = std::fs::canonicalize(a.s.path("")).unwrap();
    std::fs::create_dir_all(dir.join("releases/42")).unwrap();
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::os::unix::fs::symlink(dir.join("releases/42"), dir.join("app/current")).unwrap();
    let meant = dir.join("releases/keys/ca.crt");
    let by_text = dir.join("app/keys/ca.crt");
    write(&meant, &a.ca.cert_pem);
    write(&by_text, &a.ca.cert_pem);
    for endpoint in ["/api/v1/certs/validate", "/api/v1/certs"] {
        let message = refusal(&a, endpoint, by_text.to_str().unwrap()).await;
        assert!(message.contains("not under store.file_roots"), "{message}");
    }
    let r = a
        .editor(
            "POST",
            "/api/v1/certs/validate",
            Some(ca_file("meant", &meant)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    a.create(ca_file("meant", &meant)).await;
}

/// A stored entry's files are the editor's choice, not the operator's: a
/// PUT of one is held to `store.file_roots` as they are now, even with the
/// paths it already has. Once the operator narrows the roots, re-sending an
/// entry's old paths used to pass (only changed paths were checked) and be
/// persisted again.
#[tokio::test]
async fn a_stored_entry_put_with_its_own_paths_is_held_to_the_current_roots() {
    let mut a = Api::with_store(
        "{ path: data/store.json, key_file: keys/store.key, file_roots: [old] }",
        "",
    )
    .await;
    let old = a.s.path("old/ca.crt");
    write(&old, &a.ca.cert_pem);
    a.create(ca_file("stored", &old)).await;
    // The operator narrows the roots; the reload applies them live.
    let cfg = a.s.path("config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    write(
        &cfg,
        &text.replace("file_roots: [old]", "file_roots: [new]"),
    );
    a.p.signal("HUP");
    a.p.wait_log("the reload", |v| v["message"] == "configuration reloaded")
        .await;
    let stored = std::fs::read(a.s.path("data/store.json")).unwrap();
    let r = a
        .editor("PUT", "/api/v1/certs/stored", Some(ca_file("stored", &old)))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let m = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        m.contains("ca_file")
            && m.contains(&old.display().to_string())
            && m.contains("store.file_roots"),
        "{m}"
    );
    // Nothing persisted again.
    assert_eq!(std::fs::read(a.s.path("data/store.json")).unwrap(), stored);
}

/// Narrowing `store.file_roots` revokes nothing but the PUT: a stored
/// entry whose files are now outside them is kept (served, watched,
/// re-read) and a warning names it, with its id and files (never their
/// content), on the reload that narrows the roots and at each startup.
/// Before, nothing said so, and a restart restored it in silence.
#[tokio::test]
async fn a_stored_entry_left_outside_narrowed_roots_is_warned_about() {
    let mut a = Api::with_store(
        "{ path: data/store.json, key_file: keys/store.key, file_roots: [old, both] }",
        "",
    )
    .await;
    let (old, both) = (a.s.path("old/ca.crt"), a.s.path("both/ca.crt"));
    write(&old, &a.ca.cert_pem);
    write(&both, &a.ca.cert_pem);
    a.create(ca_file("stored", &old)).await;
    a.create(ca_file("inside", &both)).await;
    let outside = |id: &'static str| {
        move |v: &serde_json::Value| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("outside store.file_roots"))
                && v["entry"] == id
        }
    };
    let warned = |p: &Proxy, id: &'static str| {
        p.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| outside(id)(&v))
    };
    assert!(!warned(&a.p, "stored"), "warned too early");
    let cfg = a.s.path("config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    write(
        &cfg,
        &text.replace("file_roots: [old, both]", "file_roots: [new, both]"),
    );
    a.p.signal("HUP");
    let told =
        a.p.wait_log("the reload's warning", outside("stored"))
            .await;
    assert_eq!(told["level"], "WARN", "{told}");
    assert_eq!(told["files"], old.display().to_string(), "{told}");
    a.p.wait_log("the reload", |v| v["message"] == "configuration reloaded")
        .await;
    assert!(!warned(&a.p, "inside"), "inside both roots");
    // Kept: still there, still loaded.
    let r = a.editor("GET", "/api/v1/certs/stored", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["last_reload"]["result"], "success", "{}", r.body);
    // A restart restores it, and says so again.
    a.restart().await;
    a.p.wait_log("the startup warning", outside("stored")).await;
    assert!(!warned(&a.p, "inside"), "inside both roots");
    let r = a.editor("GET", "/api/v1/certs/stored", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A ca-bundle's `crl_files` hold at most 64 files, each once. A body
/// naming one file tens of thousands of times (under 1 MiB of JSON) had
/// every read of the entry open it that many times and hold two copies of
/// it all (GiBs), on the blocking pool (validate) or on the reloader's
/// thread (create). Now it is refused before a file is opened, naming
/// the field.
#[tokio::test]
async fn crl_files_are_bounded_and_each_listed_once() {
    let a = Api::start("").await;
    let crl = a.s.path("pki/ca.crl");
    write(&crl, &a.ca.crl(&[]));
    let with = |crls: Vec<std::path::PathBuf>| {
        json!({"id": "crls", "type": "ca-bundle", "source": "file",
               "ca_file": a.s.path("pki/ca.crt"), "crl_files": crls})
    };
    let r = a
        .editor(
            "POST",
            "/api/v1/certs/validate",
            Some(with(vec![crl.clone()])),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let many: Vec<_> = (0..65).map(|i| a.s.path(&format!("pki/{i}.crl"))).collect();
    let cases = [
        (vec![crl.clone(), crl.clone()], "is listed twice"),
        (vec![crl.clone(); 20_000], "20000 files listed; at most 64"),
        (many, "65 files listed; at most 64"),
    ];
    for (crls, want) in cases {
        for endpoint in ["/api/v1/certs", "/api/v1/certs/validate"] {
            let r = a.editor("POST", endpoint, Some(with(crls.clone()))).await;
            assert_eq!(r.status, 400, "{endpoint}: {}", r.body);
            let m = r.json()["message"].as_str().unwrap().to_owned();
            assert!(
                m.starts_with("field crl_files") && m.contains(want),
                "{endpoint}: {m}"
            );
        }
    }
    assert_eq!(
        a.editor("GET", "/api/v1/certs/crls", None).await.status,
        404
    );
}

/// A UTF-8 byte-order mark before `-----BEGIN` (what a Windows editor
/// saves) or an indented BEGIN line is refused at once, saying so: both
/// were counted as a truncated section ("1 BEGIN markers but 0 complete
/// sections") and waited on for `settle_timeout` as a writer mid-way.
#[tokio::test]
async fn a_byte_order_mark_or_an_indented_begin_is_refused_at_once() {
    let a = Api::start("").await;
    let renewed = a.ca.server_pair(&["localhost"]);
    let crt = a.s.path("pki/edge.crt");
    write(&crt, &format!("\u{feff}{}", renewed.cert_pem));
    let r = a.editor("POST", "/api/v1/certs/edge/reload", None).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = a.editor("GET", "/api/v1/certs/edge", None).await;
    let last = &r.json()["last_reload"];
    assert_eq!(last["result"], "failure", "{}", r.body);
    let m = last["error"].as_str().unwrap();
    assert!(
        m.contains(&crt.display().to_string()) && m.contains("starts with a byte-order mark"),
        "{m}"
    );
    let indented = a.s.path("pki/indented.crt");
    write(&indented, &format!("  {}", a.ca.cert_pem));
    let r = a
        .editor(
            "POST",
            "/api/v1/certs/validate",
            Some(ca_file("x", &indented)),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let m = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        m.contains("BEGIN marker not at the start of a line (line 1)"),
        "{m}"
    );
    served_leaf(a.addr, "localhost", &a.ca.cert_pem)
        .await
        .unwrap();
}

/// `POST /certs/validate` reads and parses an entry's files (up to 8 MiB
/// of them) on the blocking pool. Concurrent calls each held their own
/// copy and parse at once: 12 of them, over one ~400 KB CRL, grew the
/// process about twelve times what one does (64 over seven 1 MB CRLs took
/// it past 1 GB, enough for the OOM killer to end every connection in a
/// pod). Validations now take their turn: a burst costs what one does.
#[tokio::test]
async fn concurrent_validations_cost_what_one_does() {
    let a = Api::start("").await;
    let serials: Vec<u64> = (1_000_000..1_010_000).collect();
    let crl = a.s.path("pki/big.crl");
    write(&crl, &a.ca.crl_of_serials(&serials));
    let body = json!({"id": "v", "type": "ca-bundle", "source": "file",
        "ca_file": a.s.path("pki/ca.crt"), "crl_files": [crl]});
    let before = peak_kib(a.p.pid());
    let r = a
        .editor("POST", "/api/v1/certs/validate", Some(body.clone()))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let one = peak_kib(a.p.pid()).saturating_sub(before);
    let calls: Vec<_> = (0..12)
        .map(|_| spawn_post(a.api, "/api/v1/certs/validate", body.clone()))
        .collect();
    for call in calls {
        let r = call.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let burst = peak_kib(a.p.pid()).saturating_sub(before);
    // Room for the allocator's own slack; twelve at once are far above.
    assert!(
        burst < 3 * one + 4096,
        "12 concurrent validations grew hotproxy by {burst} KiB; one grew it by {one} KiB"
    );
}

/// The refusal of a path outside `store.file_roots` repeats the path the
/// caller gave: raw, a path holding a terminal escape (ESC, a line break,
/// a bidi override) reached the admin client's terminal (`jq -r
/// .message`) as is. It is shown as a material path is in its load
/// messages: whole, escaped as Rust writes a string. A path longer than
/// any the system opens (over 4095 bytes, up to the 1 MiB body) is refused
/// for that, by its length, not repeated.
#[tokio::test]
async fn a_refused_path_is_shown_escaped_and_a_huge_one_by_its_length() {
    let a = Api::start("").await;
    let path = "/etc/a\x1b[2J\r\nb\u{202e}.crt";
    let shown = "/etc/a\\u{1b}[2J\\r\\nb\\u{202e}.crt";
    let r = a
        .editor(
            "POST",
            "/api/v1/certs",
            Some(json!({"id": "esc", "type": "ca-bundle", "source": "file", "ca_file": path})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let m = r.json()["message"].as_str().unwrap().to_owned();
    assert!(!m.contains(['\x1b', '\r', '\n', '\u{202e}']), "{m:?}");
    assert!(
        m.starts_with(&format!("field ca_file: {shown} is not under")),
        "{m}"
    );
    // A PUT of an entry that exists, with a key file outside the roots.
    a.create(ca_file("inside", &a.s.path("pki/ca.crt"))).await;
    let r = a
        .editor(
            "PUT",
            "/api/v1/certs/inside",
            Some(json!({"type": "ca-bundle", "source": "file",
            "ca_file": a.s.path("pki/ca.crt"), "crl_files": [path]})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let m = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        m.starts_with(&format!("field crl_files: {shown} is not under")),
        "{m}"
    );
    // Under a root or not, a path of 5000 bytes is refused by its length.
    let long = format!("{}/{}", a.s.path("pki").display(), "x".repeat(5000));
    let r = a
        .editor(
            "POST",
            "/api/v1/certs/validate",
            Some(json!({"type": "ca-bundle", "source": "file", "ca_file": long})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let m = r.json()["message"].as_str().unwrap().to_owned();
    assert!(!m.contains("xxxx"), "{m}");
    assert!(
        m.contains(&format!("field ca_file: a path of {} bytes", long.len())) && m.contains("4095"),
        "{m}"
    );
    // Nor did any log line carry it.
    for line in a.p.logs() {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert!(
            !v.to_string().contains("\\u001b") && !line.contains('\x1b'),
            "{line}"
        );
    }
}

/// A path of exactly 4096 bytes passed the length rule, but `PATH_MAX`
/// counts the terminating NUL: Linux refuses it (`ENAMETOOLONG`), and the
/// 400 then repeated the whole path. The longest path taken is 4095
/// bytes; one of 4096 is refused by its length, not repeated.
#[tokio::test]
async fn a_path_of_4096_bytes_is_refused_by_its_length() {
    let a = Api::start("").await;
    let dir = a.s.path("pki").display().to_string();
    // Components of 200 bytes (under NAME_MAX), the whole 4096 bytes.
    let mut long = dir.clone();
    while 4096 - long.len() > 250 {
        long.push('/');
        long.push_str(&"y".repeat(200));
    }
    long.push('/');
    long.push_str(&"y".repeat(4096 - long.len()));
    assert_eq!(long.len(), 4096);
    let r = a
        .editor(
            "POST",
            "/api/v1/certs/validate",
            Some(json!({"type": "ca-bundle", "source": "file", "ca_file": long})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let m = r.json()["message"].as_str().unwrap().to_owned();
    assert!(!m.contains("yyyy"), "{m}");
    assert!(
        m.contains("field ca_file: a path of 4096 bytes") && m.contains("4095 bytes"),
        "{m}"
    );
}
