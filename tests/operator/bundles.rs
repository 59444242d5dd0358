//! Client CA bundles and CRL files written in steps: never applied cut, waited on while they grow, shortened on purpose.

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http_body_util::Empty;

use crate::common::*;
use crate::support::*;

/// A config with the admin API, `watch` settings, the server pair `edge`
/// and the client CA entry `clients` (clients.crt, then `crls`: its CRLs
/// in clients.crl, say), and the listener `public` that requires and
/// verifies client certificates against it.
fn verifying_yaml(settle: &str, crls: &str) -> String {
    format!(
        r#"
admin: {{ bind: "127.0.0.1:0" }}
watch: {{ debounce: 20ms, poll_interval: 200ms, settle_timeout: {settle} }}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
  - {{ id: clients, type: ca-bundle, ca_file: clients.crt{crls} }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    limits: {{ idle_timeout: 1h }}
    tls:
      certs: [ {{ ref: edge }} ]
      client_auth: {{ mode: require_and_verify, ca: {{ ref: clients }} }}
    routes: []
"#
    )
}

/// The proxy trusting the client CAs `one` and `two` (both in
/// clients.crt, a CRL of each in clients.crl), and `carol`, a client of
/// `two`, holding a kept-alive HTTP/1.1 connection.
struct Verifying {
    s: Scene,
    ca: TestCa,
    one: TestCa,
    two: TestCa,
    carol: TestPair,
    p: Proxy,
    addr: SocketAddr,
    api: SocketAddr,
    send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    conn: tokio::task::JoinHandle<hyper::Result<()>>,
}

async fn verifying(settle: &str) -> Verifying {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (one, two) = (TestCa::new("clients-one"), TestCa::new("clients-two"));
    s.pair("edge", &ca.server_pair(&["localhost"]));
    write(
        &s.path("clients.crt"),
        &(one.cert_pem.clone() + &two.cert_pem),
    );
    write(&s.path("clients.crl"), &(one.crl(&[]) + &two.crl(&[])));
    let config = s.config(&verifying_yaml(settle, ", crl_files: [clients.crl]"));
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    let carol = two.client_pair("carol");
    let tls = connect(
        addr,
        "localhost",
        client_config(&ca.cert_pem, Some(&carol), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let (mut send, conn) = keep_open_h1(tls).await;
    let status = send.send_request(get_localhost()).await.unwrap().status();
    assert_eq!(status, 404, "carol served (no route for /)");
    Verifying {
        s,
        ca,
        one,
        two,
        carol,
        p,
        addr,
        api,
        send,
        conn,
    }
}

/// The `last_reload` of the entry `clients`.
async fn clients_reload(api: SocketAddr) -> serde_json::Value {
    admin(api, "GET", "/api/v1/certs/clients", None, None, &[])
        .await
        .json()["last_reload"]
        .clone()
}

const PENDING: &str = "hotproxy_cert_reload_pending{entry=\"clients\"}";

/// `text` appended to the file at `path`: the second step of a write.
fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Whether `client` completes a handshake and a request with a new
/// connection (TLS 1.3: a refusal comes with the first read).
async fn admits(addr: SocketAddr, ca: &TestCa, client: &TestPair) -> bool {
    let cfg = client_config(&ca.cert_pem, Some(client), &[b"http/1.1"]);
    let Ok(tls) = connect(addr, "localhost", cfg).await else {
        return false;
    };
    let (mut send, _conn) = keep_open_h1(tls).await;
    send.send_request(get_localhost()).await.is_ok()
}

impl Verifying {
    /// The first step of a write looked at: the entry waits for the rest
    /// (pending, saying `reason`), and carol's connection serves on. The
    /// wait also ends when her connection closes (the cut file applied).
    async fn waits_for(&mut self, reason: &str) {
        let (api, conn) = (self.api, &self.conn);
        wait_until(
            WAIT,
            "the first step of the write looked at",
            || async move {
                let last = clients_reload(api).await;
                conn.is_finished() || last["reason"].as_str().is_some_and(|r| r.contains(reason))
            },
        )
        .await;
        assert!(
            !self.conn.is_finished(),
            "the file cut short was applied: carol's connection closed"
        );
        let last = clients_reload(self.api).await;
        assert_eq!(last["result"], "pending", "{last}");
        assert_eq!(metric(self.api, PENDING).await, Some(1.0));
        self.still_admitted().await;
    }

    /// Carol's open connection serves, and a new one of hers is admitted.
    async fn still_admitted(&mut self) {
        let status = self
            .send
            .send_request(get_localhost())
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "carol's open connection serves");
        assert!(
            admits(self.addr, &self.ca, &self.carol).await,
            "carol's new connection was refused"
        );
    }

    /// The write completed: the entry is no longer pending, and nothing
    /// counted as a failure.
    async fn settled(&mut self) {
        let api = self.api;
        wait_until(WAIT, "the entry settled", || async move {
            clients_reload(api).await["result"] == "success"
                && metric(api, PENDING).await == Some(0.0)
        })
        .await;
        self.still_admitted().await;
        assert!(
            !self
                .p
                .logs()
                .iter()
                .any(|l| l.contains("certificate reload failed")),
            "the two-step write counted as a failure"
        );
    }
}

/// A client CA bundle rewritten in place in two steps (`cat one.pem >
/// clients.crt; cat two.pem >> clients.crt`) holds only the first CA for
/// a moment, closed after writing. That parses cleanly; it used to be
/// applied at once: the re-check of open connections closed those of
/// `two`'s clients, and their new handshakes failed until the second
/// step. Now it is waited for (pending, saying why), as a pair's chain is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_bundle_written_in_two_steps_is_not_applied_cut() {
    let mut v = verifying("1h").await;
    let bundle = v.s.path("clients.crt");
    write(&bundle, &v.one.cert_pem);
    v.waits_for(&format!(
        "{}: 1 certificate(s) where 2 are served",
        bundle.display()
    ))
    .await;
    append(&bundle, &v.two.cert_pem);
    v.settled().await;
}

/// A CRL file holding a CRL of each CA, rewritten in place in two steps,
/// holds only the first CRL for a moment: `two`'s clients had no CRL, an
/// unknown revocation status, and were closed and refused. Now it is
/// waited for like a bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_file_written_in_two_steps_is_not_applied_cut() {
    let mut v = verifying("1h").await;
    let crls = v.s.path("clients.crl");
    write(&crls, &v.one.crl(&[]));
    v.waits_for(&format!("{}: 1 CRL(s) where 2 are served", crls.display()))
        .await;
    append(&crls, &v.two.crl(&[]));
    v.settled().await;
}

/// A CA taken out of the bundle on purpose is applied once the shorter
/// bundle has stayed for settle_timeout: its clients' open connections
/// close and new ones are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_removed_on_purpose_is_applied_after_settle_timeout() {
    let mut v = verifying("300ms").await;
    write(&v.s.path("clients.crt"), &v.one.cert_pem);
    within_deadline("carol's connection closed", &mut v.conn)
        .await
        .unwrap()
        .unwrap();
    // The connections are checked again while the new bundle is applied,
    // before the entry's status says so: a status read right after the
    // close may still say `pending`.
    let api = v.api;
    wait_until(WAIT, "the shorter bundle reported applied", || async move {
        clients_reload(api).await["result"] == "success"
    })
    .await;
    assert!(!admits(v.addr, &v.ca, &v.carol).await, "carol let in");
    let applied_late = "CA bundle holds fewer certificates or CRLs than the one it replaces; applying it after settle_timeout";
    assert!(
        v.p.logs().iter().any(|l| l.contains(applied_late)),
        "no warning that the shorter bundle was applied"
    );
}

/// A CA file rewritten with a certificate webpki refuses as a trust anchor
/// (basicConstraints twice) is refused as it is read, naming the file and
/// the certificate, and the old bundle keeps verifying. It used to load
/// and fail when the listener's verifier was built, naming neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_with_an_unusable_anchor_is_refused_naming_it() {
    let mut v = verifying("1h").await;
    let bundle = v.s.path("clients.crt");
    let next = v.one.cert_pem.clone() + &unusable_anchor_pem();
    crate::support::writers::mv_over(&bundle, &next);
    let api = v.api;
    wait_until(WAIT, "the new bundle refused", || async move {
        clients_reload(api).await["result"] == "failure"
    })
    .await;
    let last = clients_reload(v.api).await;
    let error = last["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("{}: ", bundle.display()))
            && error.contains("certificate 2 (CN=twice-constrained)")
            && error.contains("trust anchor"),
        "{error}"
    );
    v.still_admitted().await;
}

/// Whether the entry `clients` is waited on (pending) for a problem
/// naming `reason`; a failure fails the test.
async fn waited_on_for(api: SocketAddr, reason: &str) -> bool {
    let last = clients_reload(api).await;
    assert_ne!(last["result"], "failure", "the writer was refused: {last}");
    last["result"] == "pending" && last["reason"].as_str().is_some_and(|r| r.contains(reason))
}

/// A client CA bundle of many CAs rewritten in place by a slow writer
/// (`curl URL > clients.crt` over a slow link) is read, between its
/// writes, cut inside a section (being written) and at a section's end
/// (fewer CAs than served), in turn: each change another step of a
/// writer, waited on for a settle_timeout of its own. A writer taking
/// longer in all than 5 × settle_timeout, each step well within its own,
/// used to be refused as one going back and forth between states that do
/// not load (a failure, the failing gauge, a warning), though each read
/// held more of the file than the one before. Now it is waited on to the
/// end, and the whole new bundle is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_bundle_written_slowly_in_place_is_waited_on_to_the_end() {
    use std::io::Write;
    use std::time::Duration;
    const SECTIONS: usize = 14;
    let settle = Duration::from_millis(500);
    // The writer's pace: each step well within its settle_timeout, all of
    // them past 5 × settle_timeout.
    let pace = Duration::from_millis(100);
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let cas: Vec<TestCa> = (0..SECTIONS)
        .map(|n| TestCa::new(&format!("clients-{n}")))
        .collect();
    let bundle = s.path("clients.crt");
    write(
        &bundle,
        &cas.iter().map(|c| c.cert_pem.as_str()).collect::<String>(),
    );
    let mut p = Proxy::start(&s.config(&verifying_yaml(&format!("{}ms", settle.as_millis()), "")));
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    let carol = cas[0].client_pair("carol");
    let (newcomer, dave) = {
        let c = TestCa::new("clients-new");
        let dave = c.client_pair("dave");
        (c, dave)
    };
    assert!(admits(addr, &ca, &carol).await, "carol refused");
    assert!(!admits(addr, &ca, &dave).await, "dave let in before");

    // The same CAs but the last, which the newcomer replaces: as many
    // sections as served, so none of the writer's steps loads.
    let mut next: Vec<&str> = cas[..SECTIONS - 1]
        .iter()
        .map(|c| c.cert_pem.as_str())
        .collect();
    next.push(&newcomer.cert_pem);
    let mut file = std::fs::File::create(&bundle).unwrap();
    let started = std::time::Instant::now();
    for (n, section) in next.iter().enumerate() {
        let half = section.len() / 2;
        let cut = half + section[half..].find('\n').unwrap() + 1;
        let steps = [
            (&section[..cut], "malformed PEM".to_owned()),
            (
                &section[cut..],
                format!("{} certificate(s) where {SECTIONS} are served", n + 1),
            ),
        ];
        for (bytes, reason) in steps {
            file.write_all(bytes.as_bytes()).unwrap();
            if n + 1 == SECTIONS && !reason.contains("malformed") {
                break;
            }
            let reason = &reason;
            wait_until(WAIT, reason, || waited_on_for(api, reason)).await;
            tokio::time::sleep(pace).await;
        }
    }
    drop(file);
    let writing = started.elapsed();
    assert!(
        writing > settle * 5,
        "the writer was done within 5 × settle_timeout ({writing:?}): nothing tested"
    );

    wait_until(WAIT, "the new bundle applied", || async {
        clients_reload(api).await["result"] == "success" && admits(addr, &ca, &dave).await
    })
    .await;
    assert!(admits(addr, &ca, &carol).await, "carol refused after");
    let failures = "hotproxy_cert_reloads_total{entry=\"clients\",result=\"failure\"}";
    assert_eq!(metric(api, failures).await.unwrap_or(0.0), 0.0);
    assert_eq!(
        metric(api, "hotproxy_cert_reload_failing{entry=\"clients\"}").await,
        Some(0.0)
    );
    assert!(
        !p.logs()
            .iter()
            .any(|l| l.contains("certificate reload failed")),
        "the slow writer counted as a failure"
    );
}
