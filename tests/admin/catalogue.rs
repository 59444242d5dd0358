//! The catalogue through the API: CRUD, the encrypted store, no store, a symlinked store, rereads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::common::*;
use crate::support::writers::{Kubelet, mv_over};
use crate::support::*;

/// Create inline and file entries, read them with ETags, replace with
/// If-Match, delete; 400/404/409/412 where due; the store is encrypted
/// and brings inline entries back after a restart.
#[tokio::test]
async fn catalogue_crud_and_store() {
    let mut a = Admin::start("").await;
    // Loaded at startup: the entry says so, and the config reload counters
    // exist at zero before any reload (alerts on failure need the series).
    let r = a.editor("GET", "/api/v1/certs/edge", None).await;
    assert_eq!(r.json()["last_reload"]["result"], "success", "{}", r.body);
    assert_eq!(r.json()["live_source"], "file");
    let metrics = a.editor("GET", "/metrics", None).await.body;
    for result in ["success", "failure"] {
        let line = format!("hotproxy_config_reloads_total{{result=\"{result}\"}} 0");
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in:\n{metrics}"
        );
    }
    let backend_ca = TestCa::new("backend");
    let inline = backend_ca.client_pair("inline-client");
    let mut backend_client = inline_pair("client-pair", &inline);
    backend_client["id"] = json!("backend-client");
    let created = a
        .editor("POST", "/api/v1/certs", Some(backend_client.clone()))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let v = created.json();
    assert_eq!(v["fingerprint_sha256"], inline.fingerprint.as_str());
    assert_eq!(v["source"], "inline");
    assert_eq!(v["subject"], "CN=inline-client");
    // The id is taken now (also by configuration entries).
    assert_eq!(
        a.editor("POST", "/api/v1/certs", Some(backend_client))
            .await
            .status,
        409
    );
    let edge_again = inline_ca("edge", &a.ca);
    assert_eq!(
        a.editor("POST", "/api/v1/certs", Some(edge_again))
            .await
            .status,
        409
    );
    // A mismatched key, garbage PEM, a bad id, an unknown field: 400, nothing stored.
    let other = backend_ca.client_pair("other");
    for (body, says) in [
        (
            json!({"id": "mismatch", "type": "client-pair", "source": "inline",
                   "cert_pem": inline.cert_pem, "key_pem": other.key_pem}),
            "does not match",
        ),
        (
            json!({"id": "garbage", "type": "ca-bundle", "source": "inline", "ca_pem": "not a pem"}),
            "no PEM certificate",
        ),
        (
            json!({"id": "Bad Id", "type": "ca-bundle", "source": "inline", "ca_pem": a.ca.cert_pem}),
            "id",
        ),
        (
            json!({"id": "x", "type": "ca-bundle", "source": "inline", "ca_pem": a.ca.cert_pem, "colour": 1}),
            // The key given is not repeated (it may be a pasted secret).
            "unknown field `…`, expected one of `id`",
        ),
    ] {
        let r = a.editor("POST", "/api/v1/certs", Some(body)).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(
            r.json()["message"].as_str().unwrap().contains(says),
            "{}",
            r.body
        );
    }
    // validate: metadata back, nothing persisted; 400 on a mismatch.
    let r = a
        .editor(
            "POST",
            "/api/v1/certs/validate",
            Some(inline_pair("client-pair", &other)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["fingerprint_sha256"], other.fingerprint.as_str());
    let r = a
        .editor(
            "POST",
            "/api/v1/certs/validate",
            Some(json!({"type": "client-pair", "source": "inline",
                        "cert_pem": other.cert_pem, "key_pem": inline.key_pem})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        a.editor("GET", "/api/v1/certs/validate", None).await.status,
        404
    );
    // A file-backed entry (absolute paths).
    let spare = a.ca.server_pair(&["spare.local"]);
    a.s.pair("spare", &spare);
    let file_entry = json!({"id": "spare", "type": "server-pair", "source": "file",
        "cert_file": a.s.path("spare.crt"), "key_file": a.s.path("spare.key")});
    assert_eq!(
        a.editor("POST", "/api/v1/certs", Some(file_entry))
            .await
            .status,
        201
    );

    // GET with ETag; PUT with a stale If-Match is 412, with the fresh one 200.
    let got = a.editor("GET", "/api/v1/certs/backend-client", None).await;
    assert_eq!(got.status, 200);
    let etag = got.headers["etag"].to_str().unwrap().to_owned();
    let rotated = backend_ca.client_pair("inline-client-2");
    let put = inline_pair("client-pair", &rotated);
    let if_match = [("if-match", etag.as_str())];
    let r = a
        .call_with(
            "PUT",
            "/api/v1/certs/backend-client",
            Some(EDITOR),
            Some(put.clone()),
            &if_match,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["fingerprint_sha256"], rotated.fingerprint.as_str());
    for (method, body) in [("PUT", Some(put)), ("DELETE", None)] {
        let r = a
            .call_with(
                method,
                "/api/v1/certs/backend-client",
                Some(EDITOR),
                body,
                &if_match,
            )
            .await;
        assert_eq!(r.status, 412, "{method}: {}", r.body);
    }
    // An If-Match that is not text is a tag that matches nothing: 412, not
    // a delete without condition.
    let r = a
        .call_with(
            "DELETE",
            "/api/v1/certs/backend-client",
            Some(EDITOR),
            None,
            &[("if-match", "\"\u{e9}\"")],
        )
        .await;
    assert_eq!(r.status, 412, "{}", r.body);
    assert_eq!(
        a.editor(
            "PUT",
            "/api/v1/certs/nope",
            Some(json!({"type": "ca-bundle", "source": "inline", "ca_pem": a.ca.cert_pem}))
        )
        .await
        .status,
        404
    );
    // Changing the type of an entry, or its id through the body: 400.
    let r = a
        .editor(
            "PUT",
            "/api/v1/certs/backend-client",
            Some(json!({"type": "ca-bundle", "source": "inline", "ca_pem": a.ca.cert_pem})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // An entry of the configuration file takes new material inline; the API
    // says the live material came from the API until the files are read again.
    let interim = a.ca.server_pair(&["localhost"]);
    let r = a
        .editor(
            "PUT",
            "/api/v1/certs/edge",
            Some(inline_pair("server-pair", &interim)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["fingerprint_sha256"], interim.fingerprint.as_str());
    assert_eq!(
        (
            r.json()["source"].as_str(),
            r.json()["live_source"].as_str()
        ),
        (Some("file"), Some("api"))
    );
    let r = a.editor("POST", "/api/v1/certs/edge/reload", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = a.editor("GET", "/api/v1/certs/edge", None).await;
    assert_eq!(r.json()["fingerprint_sha256"], a.edge.fingerprint.as_str());
    assert_eq!(r.json()["live_source"], "file", "{}", r.body);

    // DELETE while referenced: 409 naming every reference; files untouched.
    let r = a.editor("DELETE", "/api/v1/certs/edge", None).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        r.json()["references"],
        json!([{"listener": "public", "field": "tls.certs[0]"}])
    );
    assert_eq!(
        a.editor("DELETE", "/api/v1/certs/nope", None).await.status,
        404
    );
    let r = a.editor("DELETE", "/api/v1/certs/spare", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(a.s.path("spare.crt").exists() && a.s.path("spare.key").exists());
    assert_eq!(
        a.editor("GET", "/api/v1/certs/spare", None).await.status,
        404
    );

    // At rest: sealed, 0600, no PEM.
    let store = std::fs::read_to_string(a.s.path("data/store.json")).unwrap();
    assert!(!store.contains("BEGIN") && !store.contains("inline-client"));
    for line in pem_body_lines(&rotated.key_pem)
        .iter()
        .chain(pem_body_lines(&rotated.cert_pem).iter())
    {
        assert!(!store.contains(line.as_str()));
    }
    use std::os::unix::fs::PermissionsExt;
    for f in ["data/store.json", "data/store.key"] {
        let mode = std::fs::metadata(a.s.path(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    a.assert_nothing_leaked(&[
        &inline.key_pem,
        &other.key_pem,
        &rotated.key_pem,
        &spare.key_pem,
        &a.edge.key_pem,
    ]);

    // After a restart the inline entry is back, as last replaced.
    a.p.signal("TERM");
    a.p.wait_exit(Duration::from_secs(10)).await;
    let mut p = Proxy::start(&a.s.path("config.yaml"));
    let api = p.admin_addr().await;
    let r = admin(
        api,
        "GET",
        "/api/v1/certs/backend-client",
        Some(VIEWER),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["fingerprint_sha256"], rotated.fingerprint.as_str());
    assert_eq!(r.json()["origin"], "store");
    assert_eq!(
        admin(api, "GET", "/api/v1/certs/spare", Some(VIEWER), None, &[])
            .await
            .status,
        404
    );
    // A store key readable by others is refused at startup, naming the file.
    drop(p);
    std::fs::set_permissions(
        a.s.path("data/store.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (code, _, err) = run_cli(&["run", "--config", a.s.path("config.yaml").to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("store.key") && err.contains("0644"), "{err}");
}

/// Without a store, creating an entry is refused (nothing lives only in memory).
#[tokio::test]
async fn no_store_no_create() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let cfg = s.config(
        "admin: { bind: 127.0.0.1:0 }\nlisteners:\n  - name: public\n    bind: 127.0.0.1:0\n    tls: { certs: [{ cert_file: edge.crt, key_file: edge.key }] }\n",
    );
    let mut p = Proxy::start(&cfg);
    let api = p.admin_addr().await;
    let r = admin(
        api,
        "POST",
        "/api/v1/certs",
        None,
        Some(inline_ca("x", &ca)),
        &[],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("store"));
    // Open without tokens on loopback: reads work; the warning was logged.
    assert_eq!(
        admin(api, "GET", "/api/v1/certs", None, None, &[])
            .await
            .status,
        200
    );
    p.wait_log("no-token warning", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("admin API has no tokens"))
    })
    .await;
}

/// A `store.path` that is a symlink (to a file on a persistent volume)
/// stays one: saving writes the file it leads to, beside it, and the link
/// is left alone. The save used to rename the new store over the link
/// itself, so the volume's file went stale and a restart with the link
/// re-pointed (a new pod) lost every entry created since.
#[tokio::test]
async fn a_symlinked_store_path_is_written_through() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    std::fs::create_dir_all(s.path("volume")).unwrap();
    std::fs::create_dir_all(s.path("data")).unwrap();
    // Relative, as `ln -s ../volume/store.json data/store.json` makes it;
    // the volume is fresh: the file is not there yet.
    std::os::unix::fs::symlink("../volume/store.json", s.path("data/store.json")).unwrap();
    let yaml = |store: &str| {
        format!(
            "admin: {{ bind: 127.0.0.1:0 }}\nstore: {{ path: {store}, key_file: data/store.key }}\nlisteners:\n  - name: public\n    bind: 127.0.0.1:0\n    tls: {{ certs: [{{ cert_file: edge.crt, key_file: edge.key }}] }}\n"
        )
    };
    let cfg = s.config(&yaml("data/store.json"));
    let mut p = Proxy::start(&cfg);
    let api = p.admin_addr().await;
    for id in ["first", "second"] {
        let r = admin(
            api,
            "POST",
            "/api/v1/certs",
            None,
            Some(inline_ca(id, &ca)),
            &[],
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let link = std::fs::symlink_metadata(s.path("data/store.json")).unwrap();
        assert!(
            link.file_type().is_symlink(),
            "store.path is no longer a symlink after creating {id}"
        );
        assert!(
            s.path("volume/store.json").is_file(),
            "nothing on the volume"
        );
    }
    // The volume's file holds both: a proxy reading it directly has them.
    p.signal("TERM");
    p.wait_exit(Duration::from_secs(10)).await;
    write(&cfg, &yaml("volume/store.json"));
    let mut p = Proxy::start(&cfg);
    let api = p.admin_addr().await;
    for id in ["first", "second"] {
        let r = admin(api, "GET", &format!("/api/v1/certs/{id}"), None, None, &[]).await;
        assert_eq!(r.status, 200, "{id}: {}", r.body);
        assert_eq!(r.json()["origin"], "store");
    }
}

/// Material the API put over a configuration entry stays while its files
/// hold what they held then: a re-read the watcher makes for the same
/// bytes (a chmod, a kubelet swap for another key, a rewrite) must not
/// bring the files back; only files that changed, or a rotation, do.
#[tokio::test]
async fn api_material_survives_a_reread_of_unchanged_files() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let edge = ca.server_pair(&["localhost"]);
    s.pair("edge", &edge);
    let (mut p, addr, api) = watched_edge(
        &s,
        "{ events: true, debounce: 20ms, poll_interval: 1h }",
        "edge.crt",
        "edge.key",
    )
    .await;
    let interim = ca.server_pair(&["localhost"]);
    let r = put_inline(api, &interim).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The same bytes again, through a new inode: the watcher re-reads.
    mv_over(&s.path("edge.crt"), &edge.cert_pem);
    p.wait_log("the re-read that keeps the API's material", |v| {
        v["message"]
            == "certificate files re-read: unchanged since the API replaced their material; it stays"
            && v["entry"] == "edge"
    })
    .await;
    assert_eq!(
        served_leaf(addr, "localhost", &ca.cert_pem).await.unwrap(),
        interim.fingerprint
    );
    let r = admin(api, "GET", "/api/v1/certs/edge", None, None, &[]).await;
    assert_eq!(r.json()["live_source"], "api", "{}", r.body);
    assert_eq!(r.json()["fingerprint_sha256"], interim.fingerprint.as_str());

    // Files that change take over again.
    let next = ca.server_pair(&["localhost"]);
    renew(&s, "edge", &next);
    let (ca_pem, want) = (&ca.cert_pem, &next.fingerprint);
    wait_until(
        Duration::from_secs(10),
        "the new files served",
        || async move { served_leaf(addr, "localhost", ca_pem).await.ok().as_ref() == Some(want) },
    )
    .await;
    let r = admin(api, "GET", "/api/v1/certs/edge", None, None, &[]).await;
    assert_eq!(r.json()["live_source"], "file", "{}", r.body);
}

/// A proxy on `s` whose one listener serves the server-pair entry `edge`
/// read from `cert_file` and `key_file`, the files watched as `watch`
/// says, once its start-up re-read of them is logged: the proxy, the
/// listener's and the admin API's addresses.
async fn watched_edge(
    s: &Scene,
    watch: &str,
    cert_file: &str,
    key_file: &str,
) -> (Proxy, std::net::SocketAddr, std::net::SocketAddr) {
    let cfg = s.config(&format!(
        r#"
watch: {watch}
admin: {{ bind: 127.0.0.1:0 }}
certs:
  - {{ id: edge, type: server-pair, cert_file: {cert_file}, key_file: {key_file} }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ ref: edge }}]
"#,
    ));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    p.wait_log("the start-up re-read", |v| {
        v["message"] == "certificate files re-read: unchanged" && v["entry"] == "edge"
    })
    .await;
    (p, addr, api)
}

/// `PUT /api/v1/certs/edge` with `pair` inline, through the admin API at `api`.
async fn put_inline(api: std::net::SocketAddr, pair: &TestPair) -> AdminReply {
    admin(
        api,
        "PUT",
        "/api/v1/certs/edge",
        None,
        Some(inline_pair("server-pair", pair)),
        &[],
    )
    .await
}

/// A CA certificate webpki refuses as a trust anchor (basicConstraints
/// twice) makes the bundle invalid: `/certs/validate` says so and `POST
/// /certs` refuses it, naming the certificate. It used to be valid and
/// taken, and to fail only once a listener or upstream built a verifier
/// from it, naming neither the entry nor the certificate.
#[tokio::test]
async fn a_ca_webpki_refuses_as_an_anchor_is_invalid() {
    let mut a = Admin::start("").await;
    let pem = a.clients.cert_pem.clone() + &unusable_anchor_pem();
    let body = json!({"id": "twice", "type": "ca-bundle", "source": "inline", "ca_pem": pem});
    for path in ["/api/v1/certs/validate", "/api/v1/certs"] {
        let r = a.editor("POST", path, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains("inline ca_pem")
                && message.contains("certificate 2 (CN=twice-constrained)")
                && message.contains("trust anchor"),
            "{path}: {message}"
        );
    }
    assert_eq!(
        a.editor("GET", "/api/v1/certs/twice", None).await.status,
        404
    );
}

/// API material stays until the files change *from what they held at the
/// PUT*, whatever that was. A deploy that left broken files (the entry
/// failing, the old material kept), then an inline PUT, then the files
/// rolled back to what was served before: the rollback is a change, so the
/// files' material is served again. It used to compare with the material
/// served at the PUT, find the rolled-back files "unchanged" and keep the
/// API's material. A PUT naming the entry's own files takes them as a
/// reload does: that material came from the files, not the API.
#[tokio::test]
async fn a_rollback_of_files_broken_at_the_put_takes_over() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let old = ca.server_pair(&["localhost"]);
    let kubelet = Kubelet::new(&s.path("secret"));
    kubelet.write(
        &[("tls.crt", &old.cert_pem), ("tls.key", &old.key_pem)],
        false,
    );
    let (mut p, addr, api) = watched_edge(
        &s,
        "{ events: true, debounce: 20ms, poll_interval: 1h, settle_timeout: 100ms }",
        "secret/tls.crt",
        "secret/tls.key",
    )
    .await;

    // A deploy writes a certificate for another key: refused, the old kept.
    let stray = ca.server_pair(&["localhost"]);
    kubelet.write(
        &[("tls.crt", &stray.cert_pem), ("tls.key", &old.key_pem)],
        false,
    );
    p.wait_log("the broken files refused", |v| {
        v["message"] == "certificate reload failed; keeping the previous material"
            && v["entry"] == "edge"
    })
    .await;
    assert_eq!(
        served_leaf(addr, "localhost", &ca.cert_pem).await.unwrap(),
        old.fingerprint
    );

    // The operator puts material inline meanwhile.
    let interim = ca.server_pair(&["localhost"]);
    let r = put_inline(api, &interim).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["live_source"], "api", "{}", r.body);

    // The deploy is rolled back: the files changed since the PUT.
    kubelet.write(
        &[("tls.crt", &old.cert_pem), ("tls.key", &old.key_pem)],
        false,
    );
    let (ca_pem, want) = (&ca.cert_pem, &old.fingerprint);
    wait_until(
        Duration::from_secs(10),
        "the rolled-back files served",
        || async move { served_leaf(addr, "localhost", ca_pem).await.ok().as_ref() == Some(want) },
    )
    .await;
    let r = admin(api, "GET", "/api/v1/certs/edge", None, None, &[]).await;
    assert_eq!(r.json()["live_source"], "file", "{}", r.body);
    assert_eq!(r.json()["fingerprint_sha256"], old.fingerprint.as_str());

    // Inline material again, then a PUT naming the entry's own files: it
    // serves what they hold, shown as coming from the files.
    let r = put_inline(api, &interim).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let own = json!({"type": "server-pair", "source": "file",
        "cert_file": s.path("secret/tls.crt"), "key_file": s.path("secret/tls.key")});
    let r = admin(api, "PUT", "/api/v1/certs/edge", None, Some(own), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["live_source"], "file", "{}", r.body);
    assert_eq!(r.json()["fingerprint_sha256"], old.fingerprint.as_str());
    assert_eq!(
        served_leaf(addr, "localhost", &ca.cert_pem).await.unwrap(),
        old.fingerprint
    );
}

/// An entry's view names where the material it shows came from, and is
/// never behind what is served. Rounds of a PUT inline then files
/// rewritten: every view a poller reads pairs a fingerprint with its
/// source, and a GET once a handshake finds the files' certificate shows
/// it. The source was set after the material was served and its view
/// published: a GET in between showed the files' new certificate still
/// labelled `api` (and the API's labelled `file`).
#[tokio::test]
async fn a_view_labels_the_material_it_shows_with_its_source() {
    const ROUNDS: usize = 10;
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let first = ca.server_pair(&["localhost"]);
    let rounds: Vec<(TestPair, TestPair)> = (0..ROUNDS)
        .map(|_| {
            (
                ca.server_pair(&["localhost"]),
                ca.server_pair(&["localhost"]),
            )
        })
        .collect();
    let mut source = BTreeMap::from([(first.fingerprint.clone(), "file")]);
    for (inline, files) in &rounds {
        source.insert(inline.fingerprint.clone(), "api");
        source.insert(files.fingerprint.clone(), "file");
    }
    let kubelet = Kubelet::new(&s.path("secret"));
    let files_of =
        |p: &TestPair| kubelet.write(&[("tls.crt", &p.cert_pem), ("tls.key", &p.key_pem)], false);
    files_of(&first);
    let (_p, addr, api) = watched_edge(
        &s,
        "{ events: true, debounce: 20ms, poll_interval: 1h }",
        "secret/tls.crt",
        "secret/tls.key",
    )
    .await;

    let done = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn({
        let done = done.clone();
        async move {
            let mut seen = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let v = admin(api, "GET", "/api/v1/certs/edge", None, None, &[])
                    .await
                    .json();
                let fingerprint = v["fingerprint_sha256"].as_str().unwrap().to_owned();
                seen.push((fingerprint, v["live_source"].as_str().unwrap().to_owned()));
            }
            seen
        }
    });
    for (inline, files) in &rounds {
        let r = put_inline(api, inline).await;
        assert_eq!(r.status, 200, "{}", r.body);
        files_of(files);
        let (ca_pem, want) = (&ca.cert_pem, &files.fingerprint);
        wait_until(Duration::from_secs(10), "the files served", || async move {
            served_leaf(addr, "localhost", ca_pem).await.ok().as_ref() == Some(want)
        })
        .await;
        let r = admin(api, "GET", "/api/v1/certs/edge", None, None, &[]).await;
        assert_eq!(r.json()["fingerprint_sha256"], want.as_str(), "{}", r.body);
        assert_eq!(r.json()["live_source"], "file", "{}", r.body);
    }
    done.store(true, Ordering::SeqCst);
    let seen = poller.await.unwrap();
    for (fingerprint, live_source) in &seen {
        assert_eq!(source[fingerprint], live_source, "{fingerprint}");
    }
    eprintln!("{} views polled", seen.len());
}

/// Re-reading an entry that holds no material (a stored entry whose files
/// were gone at startup, an unused one of the file whose files never
/// loaded) and still does not load says the entry has no material yet: it
/// answered "...; the previous material stays", naming material nothing
/// serves.
#[tokio::test]
async fn reloading_an_entry_without_material_says_it_has_none() {
    let extra =
        "  - { id: unused, type: server-pair, cert_file: unused.crt, key_file: unused.key }";
    let mut a = Admin::start(extra).await;
    let kept = a.ca.server_pair(&["kept.local"]);
    a.s.pair("kept", &kept);
    let body = json!({"id": "kept", "type": "server-pair", "source": "file",
        "cert_file": a.s.path("kept.crt"), "key_file": a.s.path("kept.key")});
    let r = a.editor("POST", "/api/v1/certs", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Restarted with the stored entry's files gone: kept without material.
    a.p.signal("TERM");
    a.p.wait_exit(Duration::from_secs(10)).await;
    for f in ["kept.crt", "kept.key"] {
        std::fs::remove_file(a.s.path(f)).unwrap();
    }
    let mut p = Proxy::start(&a.s.path("config.yaml"));
    let api = p.admin_addr().await;
    for id in ["kept", "unused"] {
        let path = format!("/api/v1/certs/{id}/reload");
        let r = admin(api, "POST", &path, Some(EDITOR), None, &[]).await;
        assert_eq!(r.status, 422, "{}", r.body);
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(
            message.ends_with(&format!("; entry {id} has no material yet: none is served")),
            "{message}"
        );
        assert!(!message.contains("previous material"), "{message}");
        // Its warning says so too: it said "keeping the previous material".
        p.wait_log("the refusal's warning", |v| {
            v["message"] == "certificate reload failed; the entry has no material: none is served"
                && v["entry"] == id
        })
        .await;
    }
    assert!(
        !p.logs()
            .iter()
            .any(|l| l.contains("keeping the previous material")),
        "an entry without material said to keep it"
    );
}
