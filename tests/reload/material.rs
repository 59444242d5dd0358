//! Each writer and each material kind: kubelet, certbot, bad material, upstream pairs and CAs, client CAs and CRLs.

use std::time::Duration;

use crate::common::*;
use crate::support::writers::{Certbot, Kubelet, cp_in_place, mv_over, slow_write};
use crate::support::*;

/// A proxy serving `good`, a pair for localhost, from a kubelet Secret
/// (`secret/`) of the scene.
struct SecretServed {
    _s: Scene,
    ca: TestCa,
    kube: Kubelet,
    good: TestPair,
    p: Proxy,
    addr: std::net::SocketAddr,
}

impl SecretServed {
    async fn start() -> Self {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        let (kube, good) = localhost_secret(&s, &ca);
        let (p, addr) =
            serve(&s.config(&base_config("secret/tls.crt", "secret/tls.key", ""))).await;
        assert_serves(addr, "localhost", &ca.cert_pem, &good.fingerprint).await;
        SecretServed {
            _s: s,
            ca,
            kube,
            good,
            p,
            addr,
        }
    }

    /// `pair` (`kind`: what its extendedKeyUsage holds alone) written to
    /// the Secret is refused at once, naming the file and serverAuth, and
    /// the good pair is still served (else `described` replaced it).
    async fn refuses_as_not_for_a_server(&mut self, pair: &TestPair, kind: &str, described: &str) {
        write_secret(&self.kube, pair);
        let line = self
            .p
            .wait_log(&format!("the {kind}-only certificate refused"), |v| {
                v["message"] == "certificate reload failed; keeping the previous material"
            })
            .await;
        let error = line["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("tls.crt") && error.contains("serverAuth"),
            "the refusal names neither the file nor serverAuth: {line}"
        );
        assert_eq!(
            served_leaf(self.addr, "localhost", &self.ca.cert_pem)
                .await
                .unwrap(),
            self.good.fingerprint,
            "{described} replaced good material"
        );
    }
}

/// A kubelet Secret update (both orderings) is served on the next handshake.
#[tokio::test]
async fn kubelet_secret_swap() {
    let SecretServed { ca, kube, addr, .. } = &SecretServed::start().await;
    for legacy in [false, true, false] {
        let next = ca.server_pair(&["localhost"]);
        kube.write(
            &[("tls.crt", &next.cert_pem), ("tls.key", &next.key_pem)],
            legacy,
        );
        until_served(*addr, "localhost", &ca.cert_pem, &next.fingerprint).await;
    }
}

/// certbot renewal relinks one file at a time (old fullchain + new privkey for
/// a while): the mismatched window is waited out and the new pair is served;
/// no failure is counted. The proxy is shown to have seen that window (it
/// says it waits for the writer) before the renewal goes on: otherwise "no
/// failure" could hold only because the torn state was never looked at.
#[tokio::test]
async fn certbot_renewal() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let mut bot = Certbot::new(s.dir.path(), "example.com");
    let first = ca.server_pair(&["example.com"]);
    bot.renew(
        &first.cert_pem,
        &first.key_pem,
        &ca.cert_pem,
        Duration::ZERO,
    );
    let cfg = base_config(
        "live/example.com/fullchain.pem",
        "live/example.com/privkey.pem",
        "",
    );
    // The torn pair is held while the test reads the proxy's log: a
    // settle_timeout far longer than that, so only a proxy that counts it
    // as a failure at once (the fault this test is for) does.
    let cfg = cfg.replace("settle_timeout: 2s", "settle_timeout: 60s");
    let (mut p, addr) = serve(&s.config(&cfg)).await;
    assert_eq!(
        served_leaf(addr, "example.com", &ca.cert_pem)
            .await
            .unwrap(),
        first.fingerprint
    );
    let second = ca.server_pair(&["example.com"]);
    let n = bot.archive(&second.cert_pem, &second.key_pem, &ca.cert_pem);
    let [cert, privkey, chain, fullchain] = Certbot::LINKS;
    bot.relink(cert, n);
    bot.relink(privkey, n);
    p.wait_log("the new key with the old fullchain, waited on", |v| {
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("private key does not match the certificate"))
    })
    .await;
    bot.relink(chain, n);
    bot.relink(fullchain, n);
    until_served(addr, "example.com", &ca.cert_pem, &second.fingerprint).await;
    assert!(
        !p.logs()
            .iter()
            .any(|l| l.contains("certificate reload failed")),
        "a certbot renewal counted as a failure"
    );
}

/// Garbage, empty, truncated, mismatched and missing files never replace
/// good material; good material written afterwards is picked up; each
/// failure is logged and names the file, never key bytes.
#[tokio::test]
async fn bad_material_never_wins() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let good = ca.server_pair(&["localhost"]);
    s.pair("tls", &good);
    let (p, addr) = serve(&s.config(&base_config("tls.crt", "tls.key", ""))).await;
    let crt = s.path("tls.crt");
    let key = s.path("tls.key");
    let other = ca.server_pair(&["localhost"]);
    let half = &other.cert_pem[..other.cert_pem.len() / 2];
    type Breaker<'a> = Box<dyn Fn() + 'a>;
    let bad: [(&str, Breaker); 5] = [
        (
            "garbage",
            Box::new(|| cp_in_place(&crt, "this is not a certificate")),
        ),
        ("empty", Box::new(|| cp_in_place(&crt, ""))),
        ("truncated", Box::new(|| cp_in_place(&crt, half))),
        (
            "mismatched key",
            Box::new(|| mv_over(&crt, &other.cert_pem)),
        ),
        ("missing", Box::new(|| std::fs::remove_file(&crt).unwrap())),
    ];
    let count = |p: &Proxy, needle: &str| p.logs().iter().filter(|l| l.contains(needle)).count();
    for (what, break_it) in bad {
        let failures = count(&p, "certificate reload failed");
        let recoveries = count(&p, "certificate material is valid again");
        break_it();
        wait_until(WAIT, &format!("{what} refused"), || async {
            count(&p, "certificate reload failed") > failures
        })
        .await;
        let last = p
            .logs()
            .into_iter()
            .rfind(|l| l.contains("certificate reload failed"))
            .unwrap();
        assert!(
            last.contains("tls.crt"),
            "{what}: error does not name the file: {last}"
        );
        assert_eq!(
            served_leaf(addr, "localhost", &ca.cert_pem).await.unwrap(),
            good.fingerprint,
            "{what} replaced good material"
        );
        mv_over(&crt, &good.cert_pem);
        mv_over(&key, &good.key_pem);
        wait_until(WAIT, &format!("recovered after {what}"), || async {
            count(&p, "certificate material is valid again") > recoveries
        })
        .await;
    }
    // A good new pair written the slow way is served once complete.
    let fresh = ca.server_pair(&["localhost"]);
    mv_over(&key, &fresh.key_pem);
    slow_write(&crt, &fresh.cert_pem, Duration::from_millis(200));
    until_served(addr, "localhost", &ca.cert_pem, &fresh.fingerprint).await;
    for line in p.logs() {
        assert!(
            !line.contains("PRIVATE KEY") && !line.contains(&good.key_pem[40..80]),
            "key material in a log line: {line}"
        );
    }
}

/// A new pair whose certificate is not for a TLS server (its
/// extendedKeyUsage is clientAuth alone: a client certificate issued for
/// the server's names by mistake) never replaces the good one: every
/// client refuses it (webpki, OpenSSL, Go and browsers require serverAuth
/// when the extension is there), so serving it would fail every new
/// handshake. It is refused at once, naming the file and what is missing,
/// and a good pair written after it is served.
#[tokio::test]
async fn a_certificate_not_for_a_server_never_wins() {
    let mut e = SecretServed::start().await;
    let client_auth = e.ca.client_auth_pair_for(&["localhost"]);
    e.refuses_as_not_for_a_server(&client_auth, "clientAuth", "a certificate not for a server")
        .await;
    let fresh = e.ca.server_pair(&["localhost"]);
    write_secret(&e.kube, &fresh);
    until_served(e.addr, "localhost", &e.ca.cert_pem, &fresh.fingerprint).await;
}

/// A new pair whose certificate's extendedKeyUsage holds
/// anyExtendedKeyUsage alone never replaces the good one either: rustls
/// refuses it in every handshake (`InvalidPurpose`: webpki requires
/// serverAuth itself), as OpenSSL does. It is refused at once, naming the
/// file and serverAuth.
#[tokio::test]
async fn a_certificate_for_any_purpose_alone_never_wins() {
    let mut e = SecretServed::start().await;
    let any_purpose = e.ca.any_purpose_pair_for(&["localhost"]);
    let described = "a certificate for any purpose alone";
    e.refuses_as_not_for_a_server(&any_purpose, "anyExtendedKeyUsage", described)
        .await;
}

/// A pair moved over while something touches the certificate without
/// pause (a chmod loop every 2 ms: one inotify IN_ATTRIB each) is served
/// all the same, within ten debounces: each touch used to push the report
/// a whole debounce out again, and the old pair was served until the
/// touching stopped.
#[tokio::test]
async fn a_pair_touched_without_pause_is_served() {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let old = ca.server_pair(&["localhost"]);
    s.pair("tls", &old);
    let (_p, addr) = serve(&s.config(
        r#"
watch: { debounce: 200ms, poll_interval: 300ms, settle_timeout: 2s }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{ cert_file: tls.crt, key_file: tls.key }]
"#,
    ))
    .await;
    let crt = s.path("tls.crt");
    let stop = Arc::new(AtomicBool::new(false));
    let (started, touching) = std::sync::mpsc::channel();
    let toucher = {
        let (crt, stop) = (crt.clone(), stop.clone());
        std::thread::spawn(move || {
            for mode in [0o644, 0o640].into_iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let _ = std::fs::set_permissions(&crt, std::fs::Permissions::from_mode(mode));
                let _ = started.send(());
                // The toucher's pace, well inside a debounce.
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let new = ca.server_pair(&["localhost"]);
    // Touching already: the move lands in the middle of it.
    touching.recv().unwrap();
    mv_over(&s.path("tls.key"), &new.key_pem);
    mv_over(&crt, &new.cert_pem);
    until_served(addr, "localhost", &ca.cert_pem, &new.fingerprint).await;
    stop.store(true, Ordering::Relaxed);
    toucher.join().unwrap();
}

/// The upstream client pair rotates (backend sees the new certificate on the
/// next request), and an upstream CA change lets a re-keyed backend in.
#[tokio::test]
async fn upstream_client_pair_and_ca_rotation() {
    let s = Scene::new();
    let ca = TestCa::new("edge");
    let backend_ca = TestCa::new("backend");
    s.pair("tls", &ca.server_pair(&["localhost"]));
    let c1 = backend_ca.client_pair("proxy-1");
    let kube = Kubelet::new(&s.path("upstream"));
    kube.write(
        &[
            ("tls.crt", &c1.cert_pem),
            ("tls.key", &c1.key_pem),
            ("ca.crt", &backend_ca.cert_pem),
        ],
        false,
    );
    let backend = mtls_backend(&backend_ca).await;
    let extra = route_to_b(backend.addr, "upstream/ca.crt", "upstream", "");
    let (mut p, addr) = serve(&s.config(&base_config("tls.crt", "tls.key", &extra))).await;
    let fetch = || async { get_h1(addr, "localhost", &ca.cert_pem).await.unwrap() };
    assert_eq!(
        fetch().await.json()["client_cert_fingerprint"],
        c1.fingerprint.as_str()
    );
    let c2 = backend_ca.client_pair("proxy-2");
    kube.write(
        &[
            ("tls.crt", &c2.cert_pem),
            ("tls.key", &c2.key_pem),
            ("ca.crt", &backend_ca.cert_pem),
        ],
        false,
    );
    wait_until(WAIT, "backend sees the new client certificate", || async {
        fetch().await.json()["client_cert_fingerprint"] == c2.fingerprint.as_str()
    })
    .await;
    // New backend under a new CA: 502 (unknown CA) until the CA bundle rotates.
    let new_ca = TestCa::new("backend-2");
    let c3 = new_ca.client_pair("proxy-3");
    let backend2 = Backend::start(
        "b2",
        &new_ca.server_pair(&["backend.local"]),
        Some(&new_ca.cert_pem),
    )
    .await;
    let cfg = s.path("config.yaml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&backend.addr.to_string(), &backend2.addr.to_string());
    write(&cfg, &text);
    wait_until(WAIT, "502 against the untrusted backend", || async {
        fetch().await.status == 502
    })
    .await;
    p.wait_log("unknown CA logged", |v| v["reason"] == "unknown_ca")
        .await;
    kube.write(
        &[
            ("tls.crt", &c3.cert_pem),
            ("tls.key", &c3.key_pem),
            ("ca.crt", &new_ca.cert_pem),
        ],
        false,
    );
    wait_until(WAIT, "new CA trusted", || async {
        let r = fetch().await;
        r.status == 200 && r.json()["client_cert_fingerprint"] == c3.fingerprint.as_str()
    })
    .await;
}

/// A client-CA change and a CRL change apply to new connections.
#[tokio::test]
async fn client_ca_and_crl_rotation() {
    let s = Scene::new();
    let ca = TestCa::new("edge");
    let clients_a = TestCa::new("clients-a");
    let clients_b = TestCa::new("clients-b");
    s.pair("tls", &ca.server_pair(&["localhost"]));
    let alice = clients_a.client_pair("alice");
    let bob = clients_b.client_pair("bob");
    write(&s.path("clients.crt"), &clients_a.cert_pem);
    write(&s.path("clients.crl"), &clients_a.crl(&[]));
    let extra = "      client_auth: { mode: require_and_verify, ca: { ca_file: clients.crt, crl_files: [clients.crl] } }";
    let cfg = base_config("tls.crt", "tls.key", "")
        .replace("      certs:", &format!("{extra}\n      certs:"));
    let (_p, addr) = serve(&s.config(&cfg)).await;
    let ok = |who: TestPair| admitted(addr, ca.cert_pem.clone(), who);
    assert!(ok(alice.clone()).await && !ok(bob.clone()).await);
    // Revoke alice.
    mv_over(&s.path("clients.crl"), &clients_a.crl(&[&alice]));
    wait_until(WAIT, "alice refused after revocation", || async {
        !ok(alice.clone()).await
    })
    .await;
    // Switch the client CA to clients-b (with its own CRL).
    mv_over(&s.path("clients.crl"), &clients_b.crl(&[]));
    mv_over(&s.path("clients.crt"), &clients_b.cert_pem);
    wait_until(WAIT, "bob accepted after CA change", || async {
        ok(bob.clone()).await
    })
    .await;
}

/// Whether listener `public` at `addr` (its CA `ca`) admits the client
/// certificate `who` and answers its request.
async fn admitted(addr: std::net::SocketAddr, ca: String, who: TestPair) -> bool {
    let tls = connect(
        addr,
        "localhost",
        client_config(&ca, Some(&who), &[b"http/1.1"]),
    )
    .await;
    // TLS 1.3: a refused client certificate surfaces on the first read.
    match tls {
        Err(_) => false,
        Ok(mut t) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = t
                .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
                .await;
            let mut buf = [0u8; 16];
            matches!(t.read(&mut buf).await, Ok(n) if n > 0)
        }
    }
}

/// With filesystem events alone (`poll_interval: 0s`), the client CA
/// bundle in `certs/ca/` beside the pair in `certs/` is applied when
/// rewritten after `mv certs certs.bak; mv certs.bak certs`. notify drops
/// the watch of `certs/ca` with that of `certs`; only `certs` was watched
/// again, so the bundle's changes were never seen, with no warning.
#[tokio::test]
async fn a_bundle_under_a_directory_moved_away_and_back_is_applied() {
    let s = Scene::new();
    let ca = TestCa::new("edge");
    let (clients_a, clients_b) = (TestCa::new("clients-a"), TestCa::new("clients-b"));
    s.pair("certs/tls", &ca.server_pair(&["localhost"]));
    let bundle = s.path("certs/ca/clients.crt");
    write(&bundle, &clients_a.cert_pem);
    let extra =
        "      client_auth: { mode: require_and_verify, ca: { ca_file: certs/ca/clients.crt } }";
    let cfg = base_config("certs/tls.crt", "certs/tls.key", "")
        .replace("poll_interval: 300ms", "poll_interval: 0s")
        .replace("      certs:", &format!("{extra}\n      certs:"));
    let (_p, addr) = serve(&s.config(&cfg)).await;
    let (alice, bob) = (clients_a.client_pair("alice"), clients_b.client_pair("bob"));
    let ok = |who: &TestPair| admitted(addr, ca.cert_pem.clone(), who.clone());
    assert!(ok(&alice).await && !ok(&bob).await);
    std::fs::rename(s.path("certs"), s.path("certs.bak")).unwrap();
    std::fs::rename(s.path("certs.bak"), s.path("certs")).unwrap();
    // A new pair served: the watch thread has taken the moves in.
    let second = ca.server_pair(&["localhost"]);
    mv_over(&s.path("certs/tls.key"), &second.key_pem);
    mv_over(&s.path("certs/tls.crt"), &second.cert_pem);
    until_served(addr, "localhost", &ca.cert_pem, &second.fingerprint).await;
    // The bundle rewritten in place.
    write(&bundle, &clients_b.cert_pem);
    wait_until(WAIT, "bob admitted once the bundle names his CA", || {
        ok(&bob)
    })
    .await;
    assert!(!ok(&alice).await);
}

/// With filesystem events alone (`poll_interval: 0s`), a pair whose
/// directory's parent is replaced (`mv tls tls.old`, then a new `tls/`
/// written) is served, and so is a later write in the new directory.
/// inotify tells the watch of `tls/current` nothing when its parent moves
/// (the watch follows the old inode): the new pair used to stay unserved,
/// with no warning, for as long as `tls.old` was kept.
#[tokio::test]
async fn an_ancestor_replaced_is_served_with_events_alone() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let first = ca.server_pair(&["localhost"]);
    let put = |tls: &str, pair: &TestPair| {
        write(&s.path(&format!("{tls}/current/tls.crt")), &pair.cert_pem);
        write(&s.path(&format!("{tls}/current/tls.key")), &pair.key_pem);
    };
    put("tls", &first);
    let cfg = base_config("tls/current/tls.crt", "tls/current/tls.key", "")
        .replace("poll_interval: 300ms", "poll_interval: 0s");
    let (_p, addr) = serve(&s.config(&cfg)).await;
    assert_serves(addr, "localhost", &ca.cert_pem, &first.fingerprint).await;
    let second = ca.server_pair(&["localhost"]);
    put("tls.new", &second);
    std::fs::rename(s.path("tls"), s.path("tls.old")).unwrap();
    std::fs::rename(s.path("tls.new"), s.path("tls")).unwrap();
    until_served(addr, "localhost", &ca.cert_pem, &second.fingerprint).await;
    let third = ca.server_pair(&["localhost"]);
    mv_over(&s.path("tls/current/tls.key"), &third.key_pem);
    mv_over(&s.path("tls/current/tls.crt"), &third.cert_pem);
    until_served(addr, "localhost", &ca.cert_pem, &third.fingerprint).await;
}

/// The `last_reload` of the admin API's entry `edge`.
async fn edge_reload(api: std::net::SocketAddr) -> serde_json::Value {
    admin(api, "GET", "/api/v1/certs/edge", None, None, &[])
        .await
        .json()["last_reload"]
        .clone()
}

/// Bytes that are no PEM and no text (`head -c 900 /dev/urandom`), moved
/// over `path` (written beside it, then renamed, as `mv` does); another
/// `seed`, other bytes.
fn mv_garbage_over(path: &std::path::Path, seed: u8) {
    let garbage: Vec<u8> = (0u32..900)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed) | 0x80)
        .collect();
    let tmp = path.with_extension("garbage");
    std::fs::write(&tmp, garbage).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The count of `edge`'s failed reloads.
const FAILURES: &str = r#"hotproxy_cert_reloads_total{entry="edge",result="failure"}"#;

/// A proxy serving `good`, a pair for localhost, as entry `edge` (watched
/// with `settle_timeout`), with its admin API: the scene, the CA, `good`,
/// and the proxy with its listener's and its admin API's addresses.
async fn edge_with_admin(
    settle_timeout: &str,
) -> (
    Scene,
    TestCa,
    TestPair,
    (Proxy, std::net::SocketAddr, std::net::SocketAddr),
) {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let good = ca.server_pair(&["localhost"]);
    s.pair("edge", &good);
    let watch =
        format!("{{ debounce: 50ms, poll_interval: 300ms, settle_timeout: {settle_timeout} }}");
    let cfg = s.admin_config(&watch, "[]", "edge", "");
    let proxy = start_with_admin(&cfg).await;
    (s, ca, good, proxy)
}

/// One garbage certificate moved over the served one is one failure in
/// `hotproxy_cert_reloads_total{result="failure"}`, however often its
/// back-off retries fail the same way with nothing written: each retry
/// used to count one more, so an alert on the counter's increase fired
/// for as long as the file stayed, and the count said nothing of how many
/// bad writes there were. The retries still run and show in `last_reload`;
/// the next write, even of the same bytes, counts again.
#[tokio::test]
async fn a_bad_write_counts_one_failure_over_its_retries() {
    let (s, ca, good, (_p, addr, api)) = edge_with_admin("2s").await;
    assert_eq!(metric(api, FAILURES).await.unwrap_or(0.0), 0.0);

    mv_garbage_over(&s.path("edge.crt"), 0);
    wait_until(WAIT, "the garbage refused", || async {
        edge_reload(api).await["result"] == "failure"
    })
    .await;
    // Two retries ran after the refusal: `last_reload.time` (seconds) moves
    // on at each, the back-off being a second and more.
    let mut seen = edge_reload(api).await["time_unix"].as_i64().unwrap();
    for retry in 1..=2 {
        wait_until(
            WAIT * 2,
            &format!("retry {retry} of the garbage"),
            || async {
                let last = edge_reload(api).await;
                last["result"] == "failure" && last["time_unix"].as_i64().unwrap() > seen
            },
        )
        .await;
        seen = edge_reload(api).await["time_unix"].as_i64().unwrap();
    }
    assert_eq!(
        metric(api, FAILURES).await,
        Some(1.0),
        "one bad write, counted once"
    );
    assert_eq!(
        served_leaf(addr, "localhost", &ca.cert_pem).await.unwrap(),
        good.fingerprint
    );
    // A new bad write, failing with the same error: counted.
    mv_garbage_over(&s.path("edge.crt"), 1);
    wait_until(WAIT, "the second bad write counted", || async {
        metric(api, FAILURES).await == Some(2.0)
    })
    .await;
}

/// A bad write counted is not counted again when the watcher reports its
/// files with nothing new in them: a `touch`, a chmod, the same bytes moved
/// over them again (as a kubelet swap of `..data` for another key of the
/// volume re-links every file). Each such report counted one more failure
/// (SPEC §5: once per failed material). Another bad write counts.
#[tokio::test]
async fn a_bad_write_touched_or_moved_again_counts_once() {
    let (s, _ca, _good, (p, _addr, api)) = edge_with_admin("2s").await;
    let crt = s.path("edge.crt");
    mv_garbage_over(&crt, 0);
    wait_until(WAIT, "the garbage counted", || async {
        metric(api, FAILURES).await == Some(1.0)
    })
    .await;
    let again = "hold what was refused already; not counted again";
    let seen = || p.logs().iter().filter(|l| l.contains(again)).count();
    let touch = || {
        let f = std::fs::File::options().append(true).open(&crt).unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
    };
    let chmod = || {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&crt).unwrap().permissions().mode() ^ 0o040;
        std::fs::set_permissions(&crt, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let moved_again = || mv_garbage_over(&crt, 0);
    let rewrites: [(&str, &dyn Fn()); 3] =
        [("touch", &touch), ("chmod", &chmod), ("mv", &moved_again)];
    for (what, rewrite) in rewrites {
        let before = seen();
        rewrite();
        wait_until(WAIT, &format!("the re-read after the {what}"), || async {
            seen() > before || metric(api, FAILURES).await != Some(1.0)
        })
        .await;
        assert_eq!(
            metric(api, FAILURES).await,
            Some(1.0),
            "the {what} counted as a failure"
        );
    }
    mv_garbage_over(&crt, 1);
    wait_until(WAIT, "another bad write counted", || async {
        metric(api, FAILURES).await == Some(2.0)
    })
    .await;
}

/// Whether `edge`'s `last_reload` is `result` for a problem naming `what`
/// (`error` when failed, `reason` when pending).
async fn edge_reload_is(api: std::net::SocketAddr, result: &str, what: &str) -> bool {
    let last = edge_reload(api).await;
    let problem = if result == "pending" {
        "reason"
    } else {
        "error"
    };
    last["result"] == result && last[problem].as_str().is_some_and(|p| p.contains(what))
}

/// A new bad write waited on (a writer's step, pending) counts, and is
/// logged, when its wait ends in a failure, though the failure is the one
/// counted and logged last: a key that does not match, the key removed
/// (waited on as a writer at work), then another key that does not match
/// written within that wait. Its wait ended on a back-off retry failing
/// as the last failure counted, so it was neither counted nor logged: the
/// counter and the log said nothing of the second bad write.
#[tokio::test]
async fn a_bad_write_waited_on_counts_though_it_fails_as_the_last() {
    let (s, ca, good, (p, addr, api)) = edge_with_admin("3s").await;
    let key = s.path("edge.key");
    const MISMATCH: &str = "does not match";

    // The key of another pair: waited on (a relink half-way), then failed.
    mv_over(&key, &ca.server_pair(&["localhost"]).key_pem);
    wait_until(WAIT, "the first mismatched key refused", || {
        edge_reload_is(api, "failure", MISMATCH)
    })
    .await;
    assert_eq!(
        metric(api, FAILURES).await,
        Some(1.0),
        "the first bad write"
    );
    // The key removed: a writer at work, waited on...
    std::fs::remove_file(&key).unwrap();
    wait_until(WAIT, "the missing key waited on", || {
        edge_reload_is(api, "pending", "file not found")
    })
    .await;
    // ...which writes another key that does not match within that wait: a
    // step of its own, waited on, then a failure as the first.
    mv_over(&key, &ca.server_pair(&["localhost"]).key_pem);
    wait_until(WAIT, "the second mismatched key waited on", || {
        edge_reload_is(api, "pending", MISMATCH)
    })
    .await;
    wait_until(WAIT, "the second mismatched key refused", || {
        edge_reload_is(api, "failure", MISMATCH)
    })
    .await;
    let warned: Vec<String> = p
        .logs()
        .into_iter()
        .filter(|l| l.contains("certificate reload failed"))
        .collect();
    // The missing key's wait did not run out (a failure of its own, counted
    // and logged, that would make this test say nothing).
    assert!(
        warned.iter().all(|l| l.contains(MISMATCH)),
        "the missing key failed: {warned:?}"
    );
    assert_eq!(
        metric(api, FAILURES).await,
        Some(2.0),
        "the second bad write counted"
    );
    assert_eq!(warned.len(), 2, "the second bad write logged: {warned:?}");
    assert_eq!(
        served_leaf(addr, "localhost", &ca.cert_pem).await.unwrap(),
        good.fingerprint
    );
}

/// A Secret whose new key is an RSA key with its DER cut short, under
/// `BEGIN RSA PRIVATE KEY` (PKCS#1), written as kubelet writes (a
/// `..data` swap): refused (once it stays so for `settle_timeout`, as a
/// key written over in place half-way would not) naming `tls.key` and
/// saying the key could not be parsed, no key bytes in the line, and the
/// good pair is still served. It was called "not the RSA key its label (RSA PRIVATE KEY)
/// says", sending the operator after a mislabelled file.
#[tokio::test]
async fn a_damaged_rsa_key_is_refused_as_unparseable() {
    use rustls::pki_types::{PrivateKeyDer, pem::PemObject};
    let mut served = SecretServed::start().await;
    let next = served.ca.rsa_server_pair(&["localhost"], &[]);
    let pkcs1 = openssl_pkcs1(&next.key_pem);
    let PrivateKeyDer::Pkcs1(der) = PrivateKeyDer::from_pem_slice(pkcs1.as_bytes()).unwrap() else {
        panic!("openssl pkey -traditional wrote no RSA PRIVATE KEY: {pkcs1}");
    };
    let der = der.secret_pkcs1_der();
    let cut = certificate_pem(&der[..der.len() / 2]).replace("CERTIFICATE", "RSA PRIVATE KEY");
    served
        .kube
        .write(&[("tls.crt", &next.cert_pem), ("tls.key", &cut)], false);
    let line = served
        .p
        .wait_log("the damaged key refused", |v| {
            v["message"] == "certificate reload failed; keeping the previous material"
        })
        .await;
    let error = line["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("tls.key: unusable private key: the key could not be parsed")
            && !error.contains("label"),
        "{line}"
    );
    for body in pem_body_lines(&cut) {
        assert!(
            !line.to_string().contains(&body),
            "key bytes logged: {line}"
        );
    }
    assert_eq!(
        served_leaf(served.addr, "localhost", &served.ca.cert_pem)
            .await
            .unwrap(),
        served.good.fingerprint,
        "the damaged key's pair replaced the good one"
    );
}

/// `key_pem` (a PKCS#8 RSA key) as `BEGIN RSA PRIVATE KEY` (PKCS#1), as
/// `openssl pkey -traditional` writes it.
fn openssl_pkcs1(key_pem: &str) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("openssl")
        .args(["pkey", "-traditional"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl on PATH");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key_pem.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}
