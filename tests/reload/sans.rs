//! Renewals that add or drop a SAN another entry answers, and client_auth on the names.

use std::net::SocketAddr;

use crate::common::*;
use crate::support::writers::{Kubelet, mv_over};
use crate::support::*;

/// A configuration of listener `public` with entries a (a.crt, a.key),
/// b (`b_files`) and ca (ca.crt, a CA bundle), watched: `admin` (YAML
/// lines, or none) before the entries, `tls` (the listener's
/// `tls.certs` lines on, to the end of the file) after `tls:`.
fn public_a_and_b(admin: &str, b_files: &str, tls: &str) -> String {
    format!(
        r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
{admin}certs:
  - {{ id: a, type: server-pair, cert_file: a.crt, key_file: a.key }}
  - {{ id: b, type: server-pair, {b_files} }}
  - {{ id: ca, type: ca-bundle, ca_file: ca.crt }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
{tls}"#
    )
}

/// [`public_a_and_b`]'s `tls.certs`: a, then b requiring a verified
/// client certificate.
const B_VERIFIED: &str = "      certs:
        - { ref: a }
        - ref: b
          client_auth: { mode: require_and_verify, ca: { ref: ca } }
";

/// `upstreams:` with `name`, the backend at `addr`.
fn upstream(name: &str, addr: SocketAddr) -> String {
    format!(
        "upstreams:\n  - name: {name}\n    servers: [https://{addr}]\n    \
         tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}\n"
    )
}

/// Listener `public` with pair a (a.test) and pair b (b.test, whose
/// client_auth requires a client certificate), served.
struct AAndB {
    s: Scene,
    ca: TestCa,
    b: TestPair,
    /// A client certificate b.test's client_auth accepts.
    client: TestPair,
    p: Proxy,
    addr: SocketAddr,
}

/// [`AAndB`], with `admin` (YAML lines, or none) in its configuration and
/// each of `files` (name, text) written before the proxy starts.
async fn a_and_b(admin: &str, files: &[(&str, &str)]) -> AAndB {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, b) = (ca.server_pair(&["a.test"]), ca.server_pair(&["b.test"]));
    s.pair("a", &a);
    s.pair("b", &b);
    write(&s.path("ca.crt"), &ca.cert_pem);
    for (name, text) in files {
        write(&s.path(name), text);
    }
    let b_files = "cert_file: b.crt, key_file: b.key";
    let (p, addr) = serve(&s.config(&public_a_and_b(admin, b_files, B_VERIFIED))).await;
    let client = ca.client_pair("client");
    AAndB {
        s,
        ca,
        b,
        client,
        p,
        addr,
    }
}

impl AAndB {
    /// The leaf b.test is served to a client with a certificate.
    async fn b_leaf(&self) -> String {
        let tls = connect(
            self.addr,
            "b.test",
            client_config(&self.ca.cert_pem, Some(&self.client), &[b"http/1.1"]),
        )
        .await
        .unwrap();
        fingerprint(tls.get_ref().1.peer_certificates().unwrap()[0].as_ref())
    }

    /// a's certificate renewed to name b.test too, and served.
    async fn renew_a_for_b_test_too(&self) -> TestPair {
        let a2 = self.ca.server_pair(&["a.test", "b.test"]);
        mv_over(&self.s.path("a.key"), &a2.key_pem);
        mv_over(&self.s.path("a.crt"), &a2.cert_pem);
        until_served(self.addr, "a.test", &self.ca.cert_pem, &a2.fingerprint).await;
        a2
    }

    /// b.test refuses a client without a certificate.
    async fn assert_b_test_wants_a_client_cert(&self) {
        if let Ok(r) = get_h1(self.addr, "b.test", &self.ca.cert_pem).await {
            panic!("b.test served without a client certificate: {}", r.status);
        }
    }
}

/// A scene with `ca.crt` (the CA returned, which issues the pairs and
/// client certificates) and `backend-ca.crt`, and a backend `name` whose
/// certificate that second CA issued.
async fn scene_with_backend(name: &str) -> (Scene, TestCa, Backend) {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let backend_ca = TestCa::new("backend");
    let backend = Backend::start(name, &backend_ca.server_pair(&["backend.local"]), None).await;
    write(&s.path("backend-ca.crt"), &backend_ca.cert_pem);
    write(&s.path("ca.crt"), &ca.cert_pem);
    (s, ca, backend)
}

/// A renewal that adds a SAN another pair of the listener answers with a
/// different client_auth (a.test's certificate now names b.test too, and
/// b.test requires a client certificate) is served; b.test stays with its
/// own pair, so its client_auth still holds. The rotation used to be
/// refused as a shadowed pair: the old a.test certificate was served
/// until it expired.
#[tokio::test]
async fn a_renewal_adding_a_san_another_pair_answers_is_served() {
    let mut w = a_and_b("", &[]).await;
    assert_eq!(w.b_leaf().await, w.b.fingerprint);

    w.renew_a_for_b_test_too().await;

    // b.test is still b's, under b's client_auth.
    assert_eq!(w.b_leaf().await, w.b.fingerprint);
    w.assert_b_test_wants_a_client_cert().await;
    w.p.wait_log("the kept name warned about", |v| {
        v["level"] == "WARN" && v["name"] == "b.test" && v["kept_by"] == "b"
    })
    .await;
}

/// After such a renewal, a client-auth PUT that leaves the listener's
/// client_auth as it is (an automation re-applying its desired state) is
/// accepted as a reload of the same file is: b.test stays with b under b's
/// client_auth. It used to be refused as a shadowed pair, since the PUT
/// built the listener's TLS without the snapshot it replaced. A PUT that
/// changes the client_auth is refused, as a reload changing it is (SPEC
/// §3), and leaves everything as it was.
#[tokio::test]
async fn a_client_auth_put_after_such_a_renewal_keeps_the_kept_name() {
    const EDITOR: &str = "editor-token-0123456789abcdef";
    let admin_yaml =
        "admin:\n  bind: 127.0.0.1:0\n  tokens: [{ role: editor, token_file: editor.token }]\n";
    let mut w = a_and_b(admin_yaml, &[("editor.token", EDITOR)]).await;
    let api = w.p.admin_addr().await;
    let a2 = w.renew_a_for_b_test_too().await;
    assert_eq!(w.b_leaf().await, w.b.fingerprint);

    let put = |body: serde_json::Value| async move {
        admin(
            api,
            "PUT",
            "/api/v1/listeners/public/client-auth",
            Some(EDITOR),
            Some(body),
            &[],
        )
        .await
    };
    let still_as_renewed = || async {
        assert_serves(w.addr, "a.test", &w.ca.cert_pem, &a2.fingerprint).await;
        assert_eq!(w.b_leaf().await, w.b.fingerprint);
        w.assert_b_test_wants_a_client_cert().await;
    };
    // A change: a would answer b.test under another client_auth than b's.
    let r = put(serde_json::json!({"mode": "request"})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("b.test"), "{}", r.body);
    still_as_renewed().await;
    // The same client_auth again: accepted, b.test still b's.
    let r = put(serde_json::json!({"mode": "none"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["mode"], "none");
    still_as_renewed().await;
}

/// A renewal that drops a name its pair answered (b's certificate renewed,
/// kubelet-style, for b2.test only) keeps that name with the pair, under
/// its client_auth, across a reload that leaves the listener alone: a
/// client sending SNI and Host b.test without a certificate (and ignoring
/// the certificate name) must not reach b.test's route. b.test used to
/// fall to the default entry, whose client_auth is none, and its route
/// answered 200.
#[tokio::test]
async fn a_renewal_dropping_a_name_keeps_its_client_auth() {
    let (s, ca, backend) = scene_with_backend("b").await;
    s.pair("a", &ca.server_pair(&["a.test"]));
    let secret = Kubelet::new(&s.path("b"));
    let b = ca.server_pair(&["b.test"]);
    write_secret(&secret, &b);
    let config = |min_version: &str| {
        let tls = format!(
            "{B_VERIFIED}      min_version: \"{min_version}\"\n    \
             routes: [{{ host: b.test, upstream: b }}]\n{}",
            upstream("b", backend.addr)
        );
        let b_files = "cert_file: b/tls.crt, key_file: b/tls.key";
        s.config(&public_a_and_b("", b_files, &tls))
    };
    let (mut p, addr) = serve(&config("1.2")).await;
    let client = ca.client_pair("client");
    // What a client of b.test gets, whatever certificate it is served.
    let b_test = |client: Option<&TestPair>| {
        let cfg = checks_name_later_with(rustls::crypto::aws_lc_rs::default_provider(), client);
        async move { get(addr, "b.test", cfg, false, "/", &[]).await }
    };
    let refused = || async {
        if let Ok(r) = b_test(None).await {
            panic!(
                "b.test's route answered a client without a certificate: {}",
                r.status
            );
        }
    };
    assert_eq!(b_test(Some(&client)).await.unwrap().status, 200);
    refused().await;

    let b2 = ca.server_pair(&["b2.test"]);
    write_secret(&secret, &b2);
    until_served(addr, "b2.test", &ca.cert_pem, &b2.fingerprint).await;

    // b.test is still b's (its new certificate, which does not name it),
    // under b's client_auth.
    refused().await;
    let with_cert = b_test(Some(&client)).await.unwrap();
    assert_eq!((with_cert.status, with_cert.leaf), (200, b2.fingerprint));
    let warned = p
        .wait_log("the dropped name warned about", |v| {
            v["level"] == "WARN" && v["name"] == "b.test" && v["entry"] == "b"
        })
        .await;
    assert!(
        warned["file"].as_str().unwrap().ends_with("b/tls.crt"),
        "{warned}"
    );

    // A reload that rebuilds the listener's TLS but leaves its certs and
    // client_auth alone keeps it (and says so again).
    config("1.3");
    p.signal("HUP");
    p.wait_log("the reload", |v| v["message"] == "configuration reloaded")
        .await;
    refused().await;
    let warned = (p.logs().iter())
        .filter(|l| l.contains("no longer names a host"))
        .count();
    assert!(warned >= 2, "the reload rebuilt the listener's TLS");
}

/// Listener `public` with pair a (`a_names`, client_auth `a_auth`) and
/// pair b (`b_names`, `b_auth`), in that order, routed to a backend that
/// shows the client certificate it was told about.
struct Routed {
    s: Scene,
    ca: TestCa,
    client: TestPair,
    backend: Backend,
    p: Proxy,
    addr: SocketAddr,
}

async fn routed(a_names: &[&str], b_names: &[&str], a_auth: &str, b_auth: &str) -> Routed {
    let (s, ca, backend) = scene_with_backend("app").await;
    s.pair("a", &ca.server_pair(a_names));
    s.pair("b", &ca.server_pair(b_names));
    let tls = format!(
        "      certs:\n        - {{ ref: a, client_auth: {a_auth} }}\n        \
         - {{ ref: b, client_auth: {b_auth} }}\n    routes: [{{ upstream: app }}]\n{}",
        upstream("app", backend.addr)
    );
    let b_files = "cert_file: b.crt, key_file: b.key";
    let (p, addr) = serve(&s.config(&public_a_and_b("", b_files, &tls))).await;
    let client = ca.client_pair("client");
    Routed {
        s,
        ca,
        client,
        backend,
        p,
        addr,
    }
}

impl Routed {
    /// What the backend is told of a client of `host` (SNI and Host),
    /// whatever certificate it is served.
    async fn get(&self, host: &str, client: Option<&TestPair>) -> std::io::Result<Reply> {
        let cfg = checks_name_later_with(rustls::crypto::aws_lc_rs::default_provider(), client);
        get(self.addr, host, cfg, false, "/", &[]).await
    }

    /// `host` is refused to a client without a certificate: the backend
    /// never sees it.
    async fn refused_without_cert(&self, host: &str) {
        let seen = self
            .backend
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst);
        if let Ok(r) = self.get(host, None).await {
            panic!(
                "{host} reached the backend without a client certificate: {} {}",
                r.status, r.body
            );
        }
        let now = self
            .backend
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(now, seen, "the backend was dialled for {host}");
    }

    /// `host` reaches the backend with the client's certificate, served
    /// the leaf `leaf`.
    async fn verified(&self, host: &str, leaf: &str) {
        let r = self.get(host, Some(&self.client)).await.unwrap();
        assert_eq!((r.status, r.leaf.as_str()), (200, leaf), "{}", r.body);
        assert_eq!(
            r.json()["headers"]["x-client-cert-fingerprint"],
            self.client.fingerprint.as_str(),
            "{}",
            r.body
        );
    }

    /// Entry `id`'s certificate renewed for `names` (written as
    /// tests/reload does, `mv_over`) and served for `names[0]`.
    async fn renew(&self, id: &str, names: &[&str]) -> TestPair {
        let pair = self.ca.server_pair(names);
        mv_over(&self.s.path(&format!("{id}.key")), &pair.key_pem);
        mv_over(&self.s.path(&format!("{id}.crt")), &pair.cert_pem);
        until_served(self.addr, names[0], &self.ca.cert_pem, &pair.fingerprint).await;
        pair
    }

    /// `host`, refused without a client certificate and verified with
    /// one, stays so, with the leaf it was served, across the renewal of
    /// entry `renewed.0` for the names `renewed.1`; the renewal warns that
    /// entry `kept_by` keeps it.
    async fn renewal_keeps_with(&mut self, host: &str, renewed: (&str, &[&str]), kept_by: &str) {
        let leaf = self.get(host, Some(&self.client)).await.unwrap().leaf;
        self.refused_without_cert(host).await;

        self.renew(renewed.0, renewed.1).await;

        self.refused_without_cert(host).await;
        self.verified(host, &leaf).await;
        self.p
            .wait_log("the kept name warned about", |v| {
                v["level"] == "WARN" && v["name"] == host && v["kept_by"] == kept_by
            })
            .await;
    }

    /// A connection to `sni` (certificate names checked later), kept open.
    async fn keep_open(&self, sni: &str) -> (Sender, tokio::task::JoinHandle<hyper::Result<()>>) {
        let tls = connect(self.addr, sni, checks_name_later()).await.unwrap();
        keep_open_h1(tls).await
    }
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// A kept-open connection's driver `conn` ends: the proxy closed it.
async fn closed_by_the_renewal(conn: tokio::task::JoinHandle<hyper::Result<()>>) {
    within_deadline("the connection opened before the renewal closed", conn)
        .await
        .unwrap()
        .unwrap();
}

const VERIFY: &str = "{ mode: require_and_verify, ca: { ref: ca } }";

/// A renewal that adds an exact SAN under another pair's wildcard (a's
/// certificate, client_auth none, now names x.b.test, which b answers as
/// `*.b.test` and requires a verified client certificate for) leaves
/// x.b.test with b, under b's client_auth. It used to go to a, exact names
/// winning over wildcards: a client without a certificate reached the
/// backend as x.b.test.
#[tokio::test]
async fn a_renewal_adding_a_name_under_another_pairs_wildcard_keeps_its_client_auth() {
    let mut w = routed(&["a.test"], &["*.b.test"], "{ mode: none }", VERIFY).await;
    w.renewal_keeps_with("x.b.test", ("a", &["a.test", "x.b.test"]), "b")
        .await;
}

/// A renewal that adds a SAN no pair named to a pair whose client_auth is
/// none, when that name fell to a default pair that requires a verified
/// client certificate, leaves the name with the default pair.
#[tokio::test]
async fn a_renewal_adding_a_name_the_default_pair_answered_keeps_its_client_auth() {
    let mut w = routed(&["a.test"], &["b.test"], VERIFY, "{ mode: none }").await;
    w.renewal_keeps_with("n.test", ("b", &["b.test", "n.test"]), "a")
        .await;
}

/// A renewal that moves a host to a stricter entry closes the connections
/// the listener accepted before. new.test fell to the default entry
/// (public.test, client_auth none); admin.test's certificate (its entry
/// requires a verified client certificate) is renewed to name new.test
/// too, so new.test is admin's now. A client without a certificate that
/// had a keep-alive connection open with SNI public.test went on sending
/// `Host: new.test` on it and was served: the 421 check judged the host
/// by the entries' names as they were at its handshake. A renewal that
/// keeps the names keeps the connection.
#[tokio::test]
async fn a_renewal_moving_a_name_to_a_stricter_entry_closes_open_connections() {
    let w = routed(&["public.test"], &["admin.test"], "{ mode: none }", VERIFY).await;
    let (mut send, conn) = w.keep_open("public.test").await;
    let new_test = || get_to("new.test");
    let served = send.send_request(new_test()).await.unwrap().status();
    assert_eq!(served, 200, "new.test is the default entry's");

    // Renewed for the same names: the connection serves on.
    w.renew("b", &["admin.test"]).await;
    let served = send.send_request(new_test()).await.unwrap().status();
    assert_eq!(served, 200, "new.test is still the default entry's");

    // Renewed to name new.test: a new connection needs a certificate for
    // it, and the open one closes.
    w.renew("b", &["admin.test", "new.test"]).await;
    w.refused_without_cert("new.test").await;
    closed_by_the_renewal(conn).await;
    let after = send.send_request(new_test()).await;
    assert!(after.is_err(), "served after the renewal: {after:?}");
}

/// A renewal of the default entry's certificate that adds a SAN or drops
/// one (certbot --expand) leaves every name with its entry: extra.test
/// fell to the default entry before and is its by name after. Open
/// connections serve on. The admission key counted the names the default
/// entry named, as if they picked it, so such a renewal closed every open
/// connection of the listener.
#[tokio::test]
async fn a_renewal_of_the_default_entry_for_other_names_keeps_open_connections() {
    let mut w = routed(&["public.test"], &["admin.test"], "{ mode: none }", VERIFY).await;
    let (mut send, conn) = w.keep_open("public.test").await;
    let served = send.send_request(get_to("extra.test")).await.unwrap();
    assert_eq!(served.status(), 200, "extra.test is the default entry's");

    for names in [&["public.test", "extra.test"][..], &["public.test"]] {
        let renewed = w.renew("a", names).await;
        // Logged once the listener's new rules are stored and its
        // connections told of any change.
        w.p.wait_log("the renewal", |v| {
            v["message"] == "certificate reloaded"
                && v["fingerprint"] == renewed.fingerprint.as_str()
        })
        .await;
        let changed = (w.p.logs().into_iter()).find(|l| l.contains("admission rules changed"));
        assert_eq!(changed, None, "renewed for {names:?}");
        for host in ["public.test", "extra.test"] {
            let served = send.send_request(get_to(host)).await;
            let status = served.map(|r| r.status());
            assert_eq!(
                status.ok(),
                Some(http::StatusCode::OK),
                "{host} after the renewal for {names:?}"
            );
        }
    }
    assert!(!conn.is_finished());
}

/// A renewal that drops a SAN from an entry whose client_auth is the
/// default entry's moves the name to the default entry: the connections
/// the listener accepted before close, as a move to another entry does.
/// (Under another client_auth the name stays with its entry:
/// `a_renewal_dropping_a_name_keeps_its_client_auth`.) A connection made
/// to public.test kept judging m.test by the entries of its handshake and
/// answered it 421, while a new one serves it. (It is served on that
/// connection before the renewal too now: admin's entry has the default
/// entry's client_auth, so no 421 either way.)
#[tokio::test]
async fn a_renewal_moving_a_name_to_the_default_entry_closes_open_connections() {
    let none = "{ mode: none }";
    let w = routed(&["public.test"], &["admin.test", "m.test"], none, none).await;
    let (mut send, conn) = w.keep_open("public.test").await;
    let same_client_auth = send.send_request(get_to("m.test")).await.unwrap();
    assert_eq!(same_client_auth.status(), 200, "m.test is admin's entry's");

    w.renew("b", &["admin.test"]).await;
    closed_by_the_renewal(conn).await;
    assert_eq!(w.get("m.test", None).await.unwrap().status, 200);
}

/// `hotproxy check --config cfg`: (exit code, stdout and stderr).
fn check(cfg: &std::path::Path) -> (i32, String) {
    let out = output_within_deadline(
        std::process::Command::new(env!("CARGO_BIN_EXE_hotproxy"))
            .args(["check", "--config"])
            .arg(cfg)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text.into_owned())
}

/// An entry after the first whose client_auth differs from the first's
/// and that answers no name (a certificate with only an IP SAN, or
/// `server_names: []`) is never selected: a client connecting by IP
/// address got the first entry and its client_auth (none), so the
/// entry's `require_and_verify` never applied, and `check` passed it.
/// Refused by check and by a reload that changes the listener's certs; a
/// rotation that leaves b's certificate only an IP SAN keeps b.test with
/// b, under its client_auth (and warns).
#[tokio::test]
async fn an_entry_answering_no_name_with_its_own_client_auth_is_refused() {
    let mut w = a_and_b("", &[]).await;
    let ip_only = w.ca.server_pair(&["127.0.0.1"]);
    w.s.pair("bip", &ip_only);
    let ip_cfg = w.s.path("ip-only.yaml");
    write(
        &ip_cfg,
        &public_a_and_b("", "cert_file: bip.crt, key_file: bip.key", B_VERIFIED),
    );
    let (code, out) = check(&ip_cfg);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "tls.certs[1] (entry \"b\") answers no name (its certificate has no DNS name)"
        ),
        "{out}"
    );

    let no_names = B_VERIFIED.replace("- ref: b\n", "- ref: b\n          server_names: []\n");
    let b_files = "cert_file: b.crt, key_file: b.key";
    let cfg = w.s.config(&public_a_and_b("", b_files, &no_names));
    let (code, out) = check(&cfg);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("answers no name (its server_names are empty)"),
        "{out}"
    );
    w.p.signal("HUP");
    w.p.wait_log("the reload refused", rejected("answers no name"))
        .await;
    w.assert_b_test_wants_a_client_cert().await;
    w.s.config(&public_a_and_b("", b_files, B_VERIFIED));

    // A rotation to an IP-only certificate is served; b.test stays b's.
    mv_over(&w.s.path("b.key"), &ip_only.key_pem);
    mv_over(&w.s.path("b.crt"), &ip_only.cert_pem);
    w.p.wait_log("the dropped name warned about", |v| {
        v["level"] == "WARN" && v["name"] == "b.test" && v["entry"] == "b"
    })
    .await;
    let b_test = |client: Option<&TestPair>| {
        let cfg = checks_name_later_with(rustls::crypto::aws_lc_rs::default_provider(), client);
        async move { get(w.addr, "b.test", cfg, false, "/", &[]).await }
    };
    wait_until(WAIT, "b.test serves the IP-only certificate", || async {
        b_test(Some(&w.client)).await.ok().map(|r| r.leaf) == Some(ip_only.fingerprint.clone())
    })
    .await;
    if let Ok(r) = b_test(None).await {
        panic!(
            "b.test answered a client without a certificate: {}",
            r.status
        );
    }
}

/// A SIGHUP of the running file with entry b redefined under its id (its
/// `cert_file` and `key_file` now an IP-only pair): refused with `check`'s
/// words, and b.test stays b's under its client_auth. The reload was built
/// as b's renewal (the same ids, the same client_auth): served with a
/// warning, while `check` and the next restart refused the file.
#[tokio::test]
async fn a_reload_redefining_an_entry_to_answer_no_name_is_refused_as_check_refuses_it() {
    let mut w = a_and_b("", &[]).await;
    w.s.pair("bip", &w.ca.server_pair(&["127.0.0.1"]));
    let bip = "cert_file: bip.crt, key_file: bip.key";
    let cfg = w.s.config(&public_a_and_b("", bip, B_VERIFIED));
    let why = "tls.certs[1] (entry \"b\") answers no name (its certificate has no DNS name)";
    let (code, out) = check(&cfg);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(why), "{out}");

    w.p.signal("HUP");
    let refused = rejected(why);
    let outcome =
        w.p.wait_log("the reload's outcome", |v| {
            v["message"] == "configuration reloaded" || refused(v)
        })
        .await;
    assert!(refused(&outcome), "{outcome}");
    assert_eq!(w.b_leaf().await, w.b.fingerprint);
    w.assert_b_test_wants_a_client_cert().await;
}

/// A name a certificate's DNS SAN spells with a final `.` is the name
/// without it, as `server_names` are: a client's SNI never carries the
/// dot (rustls drops it). b's certificate named only `admin.example.`;
/// the resolver keyed it with the dot, so SNI `admin.example` missed it
/// and took a's `*.example` (client_auth none): the admin host was
/// served without a client certificate, and `check` passed it.
#[tokio::test]
async fn a_san_with_a_final_dot_keeps_its_entrys_client_auth() {
    let (s, ca, backend) = scene_with_backend("app").await;
    s.pair("a", &ca.server_pair(&["*.example"]));
    let b = ca.server_pair_with_dns_sans(&["admin.example."]);
    s.pair("b", &b);
    let tls = format!(
        "      certs:\n        - {{ ref: a, client_auth: {{ mode: none }} }}\n        \
         - {{ ref: b, client_auth: {VERIFY} }}\n    \
         routes: [{{ host: admin.example., upstream: app }}]\n{}",
        upstream("app", backend.addr)
    );
    let b_files = "cert_file: b.crt, key_file: b.key";
    let (p, addr) = serve(&s.config(&public_a_and_b("", b_files, &tls))).await;
    let client = ca.client_pair("client");
    let w = Routed {
        s,
        ca,
        client,
        backend,
        p,
        addr,
    };
    w.refused_without_cert("admin.example").await;
    w.verified("admin.example", &b.fingerprint).await;
}

/// A DNS SAN holding an IP address (`DNS:10.0.0.5`) is no name a client
/// can select: SNI never carries an address. The entry answered it, so
/// `check` passed an entry whose client_auth no client ever gets (and
/// every request for Host 10.0.0.5 was refused with 421); refused as an
/// entry answering no name, as an IP SAN is, naming the SAN left out (it
/// said "its certificate has no DNS name", which it has).
#[test]
fn a_dns_san_holding_an_ip_address_is_no_name_the_entry_answers() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    write(&s.path("ca.crt"), &ca.cert_pem);
    s.pair("a", &ca.server_pair(&["a.test"]));
    s.pair("b", &ca.server_pair_with_dns_sans(&["10.0.0.5"]));
    let b_files = "cert_file: b.crt, key_file: b.key";
    let cfg = s.config(&public_a_and_b("", b_files, B_VERIFIED));
    let (code, out) = check(&cfg);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "tls.certs[1] (entry \"b\") answers no name (its certificate names no host an \
             SNI can carry (DNS SANs left out: 10.0.0.5))"
        ),
        "{out}"
    );
}

/// A DNS SAN rustls refuses as SNI (a last label that is a number,
/// `010.0.0.5` or `host.123`; a label starting or ending with `-`) is no
/// name a client can select: a ClientHello naming it ends with
/// `illegal_parameter`. The entry answered it, so `check` passed an entry
/// whose client_auth no client ever gets (and a request for that host on
/// the first entry's connections got 421); refused as an entry answering
/// no name. So are `server_names` of such names, by name.
#[test]
fn a_dns_san_rustls_refuses_as_sni_is_no_name_the_entry_answers() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    write(&s.path("ca.crt"), &ca.cert_pem);
    s.pair("a", &ca.server_pair(&["a.test"]));
    let b_files = "cert_file: b.crt, key_file: b.key";
    for san in ["010.0.0.5", "host.123", "b.0x1f", "-b.test", "b-.test"] {
        s.pair("b", &ca.server_pair_with_dns_sans(&[san, "10.0.0.7"]));
        let cfg = s.config(&public_a_and_b("", b_files, B_VERIFIED));
        let (code, out) = check(&cfg);
        assert_eq!(code, 1, "SAN {san}: {out}");
        let why = format!(
            "tls.certs[1] (entry \"b\") answers no name (its certificate names no host an SNI \
             can carry (DNS SANs left out: {san}, 10.0.0.7))"
        );
        assert!(out.contains(&why), "SAN {san}: {out}");
    }
    s.pair("b", &ca.server_pair(&["b.test"]));
    let named = B_VERIFIED.replace(
        "- ref: b\n",
        "- ref: b\n          server_names: [host.123]\n",
    );
    let (code, out) = check(&s.config(&public_a_and_b("", b_files, &named)));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("\"host.123\": no client can send it as the server name (SNI)")
            && out.contains(
                "answers no name (its server_names name no host an SNI can carry \
                 (left out: host.123))"
            ),
        "{out}"
    );
}

/// A `server_names` name rustls refuses as SNI beside one it takes
/// (`[b.test, host.123]`) loads, as it did before such names were told
/// apart: `check` warns, naming the field and the name, and leaves it
/// out; the entry answers b.test (its certificate, its client_auth), and
/// a request for host.123 on the first entry's connection is still b's
/// (421). It was refused, by `check`, startup and a reload alike.
#[tokio::test]
async fn a_server_name_sni_cannot_carry_beside_others_is_left_out_with_a_warning() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    write(&s.path("ca.crt"), &ca.cert_pem);
    s.pair("a", &ca.server_pair(&["a.test"]));
    let b = ca.server_pair(&["b.test"]);
    s.pair("b", &b);
    let b_files = "cert_file: b.crt, key_file: b.key";
    let named = B_VERIFIED.replace(
        "- ref: b\n",
        "- ref: b\n          server_names: [b.test, host.123]\n",
    );
    let cfg = s.config(&public_a_and_b("", b_files, &named));
    let (code, out) = check(&cfg);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "warning: listeners[0].tls.certs[1].server_names: \"host.123\": no client can \
             send it as the server name (SNI)"
        ),
        "{out}"
    );
    let (_p, addr) = serve(&cfg).await;
    let client = ca.client_pair("client");
    let verified = client_config(&ca.cert_pem, Some(&client), &[b"http/1.1"]);
    let tls = connect(addr, "b.test", verified).await.unwrap();
    let leaf = fingerprint(tls.get_ref().1.peer_certificates().unwrap()[0].as_ref());
    assert_eq!(leaf, b.fingerprint, "b.test is not b's");
    let mut open = open_served(addr, "a.test", &ca.cert_pem, None).await;
    let asked = open.send.send_request(get_to("host.123"));
    let status = within_deadline("a request for host.123", asked).await;
    assert_eq!(status.unwrap().status(), 421, "SNI a.test, Host host.123");
}

/// A DNS SAN rustls refuses as SNI (`host.123`) selects no entry by SNI,
/// but a request for that host still belongs to the entry whose
/// certificate names it, for the 421: a client of the first entry
/// (no client_auth) without a certificate asking for it gets 421, and
/// b's verified client is served. Left out of the hosts the 421 reads
/// too, it went to the default entry: the first was served (b's
/// client_auth bypassed for that host's routes), the second refused.
#[tokio::test]
async fn a_san_left_out_for_sni_still_belongs_to_its_entry_for_the_421() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    write(&s.path("ca.crt"), &ca.cert_pem);
    s.pair("a", &ca.server_pair(&["a.test"]));
    s.pair("b", &ca.server_pair_with_dns_sans(&["b.test", "host.123"]));
    let b_files = "cert_file: b.crt, key_file: b.key";
    let (_p, addr) = serve(&s.config(&public_a_and_b("", b_files, B_VERIFIED))).await;
    let client = ca.client_pair("client");
    for (sni, who, want) in [("a.test", None, 421), ("b.test", Some(&client), 404)] {
        let mut open = open_served(addr, sni, &ca.cert_pem, who).await;
        let asked = open.send.send_request(get_to("host.123"));
        let status = within_deadline("a request for host.123", asked).await;
        assert_eq!(status.unwrap().status(), want, "SNI {sni}, Host host.123");
    }
}
