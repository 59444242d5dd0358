//! Writers caught mid-way: a file installed root-only for a moment, text before the PEM (a CRL's too), a pair file written one half at a time, a renewal of another length written in place (a re-issued CRL too, of its length as well); waited on, never a failure.

use std::fs;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;
use crate::support::writers::mv_over;
use crate::support::*;

/// `nobody`'s user and group ids, which the proxy runs as when the test
/// runs as root.
const NOBODY: u32 = 65534;

/// The scene `s` with the pair `edge` (`old`), the admin API and the
/// listener `public` serving `edge`, a settle_timeout far longer than any
/// test here waits (so only a proxy that counts a writer's moment as a
/// failure at once does), opened to other users.
fn edge_scene(s: &Scene, old: &TestPair) -> std::path::PathBuf {
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    s.pair("edge", old);
    s.admin_config(
        "{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 60s }",
        "[]",
        "edge",
        "",
    )
}

/// The entry `entry` was never counted or shown as failing, in the log,
/// the failure counter (what the README's alert watches) and the gauge.
async fn assert_no_failure(p: &Proxy, api: SocketAddr, entry: &str, what: &str) {
    assert!(
        !p.logs()
            .iter()
            .any(|l| l.contains("certificate reload failed")),
        "{what} counted as a failure"
    );
    let failures = metric(
        api,
        &format!(r#"hotproxy_cert_reloads_total{{entry="{entry}",result="failure"}}"#),
    )
    .await;
    assert!(
        failures.is_none_or(|n| n == 0.0),
        "{what}: {failures:?} failures counted"
    );
    let failing = metric(
        api,
        &format!(r#"hotproxy_cert_reload_failing{{entry="{entry}"}}"#),
    )
    .await;
    assert!(
        failing.is_none_or(|n| n == 0.0),
        "{what}: failing gauge {failing:?}"
    );
}

/// Whether `entry`'s `last_reload` (pending or failed) names `problem`.
async fn last_reload_names(api: SocketAddr, entry: &str, problem: &str) -> bool {
    let path = format!("/api/v1/certs/{entry}");
    let entry = admin(api, "GET", &path, None, None, &[]).await.json();
    let last = &entry["last_reload"];
    [&last["reason"], &last["error"]]
        .iter()
        .any(|v| v.as_str().is_some_and(|t| t.contains(problem)))
}

/// `install -o hotproxy -m 0640 new.key edge.key` (GNU install) unlinks
/// the file, creates it owned by whoever runs install, mode 0600, writes
/// it and closes it, and only then changes its owner and mode. The proxy,
/// running as another user, reads it in between: permission denied. That
/// is a writer at work, waited on as a missing file is (the old pair
/// serves meanwhile), not a failure counted at once and alerted on while
/// the next event loads the file. As root the test installs the file as
/// root and runs the proxy as `nobody` (root reads any file); as another
/// user, it installs the file with no permission at all, which its owner
/// does not read either.
#[tokio::test]
async fn a_file_installed_unreadable_for_a_moment_is_waited_on() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let old = ca.server_pair(&["localhost"]);
    let config = edge_scene(&s, &old);
    let root = fs::metadata("/proc/self").unwrap().uid() == 0;
    let mut p = match root {
        true => Proxy::start_as(&config, s.dir.path(), NOBODY, NOBODY),
        false => Proxy::start(&config),
    };
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    assert_serves(addr, "localhost", &ca.cert_pem, &old.fingerprint).await;

    let new = ca.server_pair(&["localhost"]);
    let key = s.path("edge.key");
    fs::remove_file(&key).unwrap();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if root { 0o600 } else { 0o000 })
        .open(&key)
        .unwrap();
    f.write_all(new.key_pem.as_bytes()).unwrap();
    drop(f);
    let unreadable = format!("{}: cannot read", key.display());
    wait_until(WAIT, "the proxy read the key it may not read", || async {
        last_reload_names(api, "edge", &unreadable).await
    })
    .await;
    // install's last steps: the owner (the proxy's user), then the mode.
    if root {
        std::os::unix::fs::chown(&key, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    mv_over(&s.path("edge.crt"), &new.cert_pem);
    until_served(addr, "localhost", &ca.cert_pem, &new.fingerprint).await;
    assert_no_failure(&p, api, "edge", "a key unreadable while installed").await;
}

/// What `openssl ARGS` prints (stdout), run in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = output_within_deadline(
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Write over `path` in place (truncated, same inode) what of `text`
/// comes before its first BEGIN line, as a writer of text before the PEM
/// does first: the file, still open, and the rest to write to it.
fn write_lead_in<'t>(path: &Path, text: &'t str) -> (fs::File, &'t str) {
    let at = text.find("-----BEGIN ").expect("a BEGIN line");
    assert!(
        !text[..at].trim().is_empty(),
        "text before the PEM:\n{text}"
    );
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all(&text.as_bytes()[..at]).unwrap();
    (f, &text[at..])
}

/// Write `text` over `path` in place as a writer that takes its time
/// does: what comes before the first BEGIN line, then, once `seen` (the
/// proxy has read that much), the rest.
async fn write_lead_in_first<F: Future<Output = bool>>(
    path: &Path,
    text: &str,
    seen: impl FnMut() -> F,
) {
    let (mut f, rest) = write_lead_in(path, text);
    wait_until(
        WAIT,
        &format!("the proxy read {} without its PEM", path.display()),
        seen,
    )
    .await;
    f.write_all(rest.as_bytes()).unwrap();
}

/// `openssl x509 -in new.crt -text > edge.crt` writes the certificate as
/// text before its PEM, `openssl pkcs12 -nocerts -nodes > edge.key`
/// (`-nokeys` too) "Bag Attributes" lines before the key's: read between
/// the two, a file holds text and no BEGIN line. That is a writer at
/// work, waited on as a file cut short in its PEM is, not a failure
/// ("no PEM certificate found") counted and alerted on at once while the
/// rest is on its way. Each file is written in place in two steps, the
/// second once the proxy is seen to have read the first.
#[tokio::test]
async fn a_file_written_text_first_is_waited_on() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let old = ca.server_pair(&["localhost"]);
    let config = edge_scene(&s, &old);
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    assert_serves(addr, "localhost", &ca.cert_pem, &old.fingerprint).await;

    let new = ca.server_pair(&["localhost"]);
    s.pair("new", &new);
    let cert_text = openssl(s.dir.path(), &["x509", "-in", "new.crt", "-text"]);
    openssl(
        s.dir.path(),
        &[
            "pkcs12", "-export", "-in", "new.crt", "-inkey", "new.key", "-passout", "pass:t",
            "-out", "new.p12",
        ],
    );
    let key_text = openssl(
        s.dir.path(),
        &[
            "pkcs12", "-in", "new.p12", "-nocerts", "-nodes", "-passin", "pass:t",
        ],
    );
    let (crt, key) = (s.path("edge.crt"), s.path("edge.key"));
    let no_cert = format!("{}: no PEM certificate found", crt.display());
    write_lead_in_first(&crt, &cert_text, || {
        last_reload_names(api, "edge", &no_cert)
    })
    .await;
    let no_key = format!("{}: no PEM private key found", key.display());
    write_lead_in_first(&key, &key_text, || last_reload_names(api, "edge", &no_key)).await;
    until_served(addr, "localhost", &ca.cert_pem, &new.fingerprint).await;
    assert_no_failure(&p, api, "edge", "a file written text first").await;
}

/// Whether `client` completes a handshake and a request on a new
/// connection to `addr` (TLS 1.3: a refused client certificate surfaces
/// on the first read).
async fn admits(addr: SocketAddr, ca: &TestCa, client: &TestPair) -> bool {
    let cfg = client_config(&ca.cert_pem, Some(client), &[b"http/1.1"]);
    let Ok(tls) = connect(addr, "localhost", cfg).await else {
        return false;
    };
    let (mut send, _conn) = keep_open_h1(tls).await;
    send.send_request(get_localhost()).await.is_ok()
}

/// The CRL scenes' files: `edge` served under `ca`, the clients' CA in
/// `clients.crt`, and its clients alice and bob (no CRL written yet).
fn crl_scene() -> (Scene, TestCa, TestCa, TestPair, TestPair) {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let clients = TestCa::new("clients");
    let (alice, bob) = (clients.client_pair("alice"), clients.client_pair("bob"));
    s.pair("edge", &ca.server_pair(&["localhost"]));
    write(&s.path("clients.crt"), &clients.cert_pem);
    (s, ca, clients, alice, bob)
}

/// A proxy whose listener requires client certificates checked against
/// `clients.crt` and `clients.crl` (both written already); `alice` is
/// checked refused and `bob` admitted before the scene goes on.
async fn crl_gate(
    s: &Scene,
    ca: &TestCa,
    alice: &TestPair,
    bob: &TestPair,
) -> (Proxy, SocketAddr, SocketAddr) {
    crl_gate_settling(s, ca, (alice, bob), "60s").await
}

/// [`crl_gate`] with a writer waited on for `settle_timeout` `settle`.
async fn crl_gate_settling(
    s: &Scene,
    ca: &TestCa,
    (alice, bob): (&TestPair, &TestPair),
    settle: &str,
) -> (Proxy, SocketAddr, SocketAddr) {
    let config = s.config(
        &r#"
admin: { bind: "127.0.0.1:0" }
watch: { debounce: 50ms, poll_interval: 300ms, settle_timeout: SETTLE }
certs:
  - { id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }
  - { id: clients, type: ca-bundle, ca_file: clients.crt, crl_files: [clients.crl] }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [ { ref: edge } ]
      client_auth: { mode: require_and_verify, ca: { ref: clients } }
    routes: []
"#
        .replace("SETTLE", settle),
    );
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    assert!(!admits(addr, ca, alice).await, "alice is revoked");
    assert!(admits(addr, ca, bob).await, "bob is not revoked");
    (p, addr, api)
}

/// `openssl crl -in new.crl -text > clients.crl` writes the CRL as text
/// before its PEM: read between the two, the CRL file holds text and no
/// BEGIN line, as a certificate file `openssl x509 -text` writes does.
/// That was refused at once ("invalid CRL: no X509 CRL section found"),
/// a failure counted and alerted on while the rest was on its way; it is
/// waited on now, as for the certificate file, the old CRL enforced
/// meanwhile (alice, whom it revokes, stays refused; bob is admitted).
/// The whole file, text before the PEM, is then applied: bob, whom the
/// new CRL revokes too, is refused.
#[tokio::test]
async fn a_crl_file_written_text_first_is_waited_on() {
    let (s, ca, clients, alice, bob) = crl_scene();
    let crl = s.path("clients.crl");
    write(&crl, &clients.crl(&[&alice]));
    let (p, addr, api) = crl_gate(&s, &ca, &alice, &bob).await;

    write(&s.path("new.crl"), &clients.crl(&[&alice, &bob]));
    let crl_text = openssl(s.dir.path(), &["crl", "-in", "new.crl", "-text"]);
    let (mut f, rest) = write_lead_in(&crl, &crl_text);
    let no_crl = format!("{}: invalid CRL: no X509 CRL section found", crl.display());
    wait_until(WAIT, "the proxy read the CRL file without its PEM", || {
        last_reload_names(api, "clients", &no_crl)
    })
    .await;
    let entry = admin(api, "GET", "/api/v1/certs/clients", None, None, &[])
        .await
        .json();
    assert_eq!(entry["last_reload"]["result"], "pending", "{entry}");
    assert!(!admits(addr, &ca, &alice).await, "alice admitted meanwhile");
    assert!(admits(addr, &ca, &bob).await, "bob refused meanwhile");

    f.write_all(rest.as_bytes()).unwrap();
    drop(f);
    wait_until(WAIT, "the new CRL applied (bob refused)", || async {
        !admits(addr, &ca, &bob).await
    })
    .await;
    assert!(!admits(addr, &ca, &alice).await, "alice admitted");
    assert_no_failure(&p, api, "clients", "a CRL file written text first").await;
}

/// A pair kept in one file (`cert_file` and `key_file` both `server.pem`)
/// written in two steps, `cat fullchain.pem > server.pem; cat privkey.pem
/// >> server.pem` (or the key first): read between the two, the file
/// holds one half and not the other. That is a writer at work, waited on
/// as a file cut short is, not a failure ("no PEM private key found")
/// counted and alerted on at once while the other half is on its way.
/// Each order, the second step once the proxy is seen to have read the
/// first.
#[tokio::test]
async fn a_pair_file_written_one_half_at_a_time_is_waited_on() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let old = ca.server_pair(&["localhost"]);
    let pem = s.path("server.pem");
    write(&pem, &format!("{}{}", old.cert_pem, old.key_pem));
    let config = s.config(
        r#"
watch: { debounce: 50ms, poll_interval: 300ms, settle_timeout: 60s }
admin: { bind: "127.0.0.1:0" }
certs:
  - { id: edge, type: server-pair, cert_file: server.pem, key_file: server.pem }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{ ref: edge }]
"#,
    );
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    assert_serves(addr, "localhost", &ca.cert_pem, &old.fingerprint).await;

    for key_first in [false, true] {
        let new = ca.server_pair(&["localhost"]);
        let (first, second, missing) = match key_first {
            false => (&new.cert_pem, &new.key_pem, "no PEM private key found"),
            true => (&new.key_pem, &new.cert_pem, "no PEM certificate found"),
        };
        write(&pem, first);
        let problem = format!("{}: {missing}", pem.display());
        wait_until(
            WAIT,
            &format!("the proxy read server.pem with {missing}"),
            || last_reload_names(api, "edge", &problem),
        )
        .await;
        let mut f = fs::OpenOptions::new().append(true).open(&pem).unwrap();
        f.write_all(second.as_bytes()).unwrap();
        drop(f);
        until_served(addr, "localhost", &ca.cert_pem, &new.fingerprint).await;
    }
    assert_no_failure(&p, api, "edge", "a pair file written one half at a time").await;
}

/// Three renewals of `pair`'s key whose PEM lengths go one way, then
/// back: one PEM length, another, the first again. An ECDSA signature is
/// a byte longer or shorter from one renewal to the next, but base64 puts
/// three DER bytes in four characters: DER lengths that differ need not
/// give PEM lengths that differ (three consecutive ones can give one), so
/// the renewals are chosen by their PEM's length, which a splice needs.
fn renewals_there_and_back(ca: &TestCa, pair: &TestPair) -> [TestPair; 3] {
    let mut by_length: std::collections::BTreeMap<usize, Vec<TestPair>> = Default::default();
    for _ in 0..2000 {
        let next = ca.renewed(pair, &["localhost"]);
        by_length.entry(next.cert_pem.len()).or_default().push(next);
        // Short, long, short again when the short length has two;
        // long, short, long again when only the long one has.
        let mut lengths = by_length.values_mut();
        if let (Some(short), Some(long)) = (lengths.next(), lengths.next_back()) {
            if short.len() >= 2 {
                return [short.remove(0), long.remove(0), short.remove(0)];
            }
            if long.len() >= 2 {
                return [long.remove(0), short.remove(0), long.remove(0)];
            }
        }
    }
    panic!("no renewals of two PEM lengths in 2000 tries");
}

/// A renewal, its key reused, whose DER is of another length than the
/// served certificate's, written over it in place by a writer that does
/// not truncate before it writes (`rsync --inplace`, `dd conv=notrunc`):
/// read half-way, the file holds the new PEM's head on the old one's
/// tail, whole base64 up to the old END line, whose DER does not parse (a
/// longer certificate cut short, trailing bytes after a shorter one). That
/// is a writer at work, waited on as a file cut inside its PEM is, not a
/// failure ("invalid certificate") counted and alerted on at once while
/// the writer's last bytes are on their way. Longer, then shorter (or
/// the other way round), each finished (and truncated to its length)
/// once the proxy is seen to have read the splice.
#[tokio::test]
async fn a_renewal_of_another_length_written_in_place_is_waited_on() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let [first, then, back] = renewals_there_and_back(&ca, &ca.server_pair(&["localhost"]));
    let config = edge_scene(&s, &first);
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    assert_serves(addr, "localhost", &ca.cert_pem, &first.fingerprint).await;

    let crt = s.path("edge.crt");
    let unparsed = format!("{}: invalid certificate", crt.display());
    for (old, new) in [(&first, &then), (&then, &back)] {
        let (pem, was) = (new.cert_pem.as_bytes(), old.cert_pem.len());
        assert_ne!(pem.len(), was, "renewals of one PEM length");
        let mut f = fs::OpenOptions::new().write(true).open(&crt).unwrap();
        f.write_all(&pem[..pem.len() / 2]).unwrap();
        wait_until(
            WAIT,
            "the proxy read the new PEM's head on the old one's tail",
            || last_reload_names(api, "edge", &unparsed),
        )
        .await;
        f.write_all(&pem[pem.len() / 2..]).unwrap();
        f.set_len(pem.len() as u64).unwrap();
        drop(f);
        until_served(addr, "localhost", &ca.cert_pem, &new.fingerprint).await;
    }
    assert_no_failure(&p, api, "edge", "a renewal written in place").await;
}

/// A CRL re-issued with one more revoked serial, written over the one
/// in use in place by a writer that does not truncate (`rsync
/// --inplace`, `dd conv=notrunc`): read half-way, the file holds the new
/// PEM's head on the old one's tail, whole base64 up to the old END
/// line, a CRL cut short. That was refused at once ("invalid CRL"), a
/// failure counted and alerted on while the writer's last bytes were on
/// their way; it is waited on now, as a certificate so read is, the old
/// CRL enforced meanwhile. Finished (and truncated to its length) once
/// the proxy is seen to have read the splice, the new CRL is applied:
/// bob, whom it revokes too, is refused.
#[tokio::test]
async fn a_crl_re_issued_written_in_place_is_waited_on() {
    let (s, ca, clients, alice, bob) = crl_scene();
    let now = time::OffsetDateTime::now_utc();
    let (day, minute) = (time::Duration::days(1), time::Duration::minutes(1));
    let old = clients.crl_of(&[alice.serial], now - minute * 2, now + day, 1);
    let new = clients.crl_of(&[alice.serial, bob.serial], now - minute, now + day, 2);
    assert!(
        new.len() > old.len(),
        "one more revoked serial, a longer PEM"
    );
    let crl = s.path("clients.crl");
    write(&crl, &old);
    let (p, addr, api) = crl_gate(&s, &ca, &alice, &bob).await;

    let pem = new.as_bytes();
    let mut f = fs::OpenOptions::new().write(true).open(&crl).unwrap();
    f.write_all(&pem[..pem.len() / 2]).unwrap();
    let unparsed = format!("{}: invalid CRL", crl.display());
    wait_until(
        WAIT,
        "the proxy read the new CRL's head on the old one's tail",
        || last_reload_names(api, "clients", &unparsed),
    )
    .await;
    assert!(!admits(addr, &ca, &alice).await, "alice admitted meanwhile");
    assert!(admits(addr, &ca, &bob).await, "bob refused meanwhile");
    f.write_all(&pem[pem.len() / 2..]).unwrap();
    f.set_len(pem.len() as u64).unwrap();
    drop(f);
    wait_until(WAIT, "the new CRL applied (bob refused)", || async {
        !admits(addr, &ca, &bob).await
    })
    .await;
    assert!(!admits(addr, &ca, &alice).await, "alice admitted");
    assert_no_failure(&p, api, "clients", "a CRL re-issued written in place").await;
}

/// The CRL scene's files (the edge's CA, `clients`' clients alice, bob
/// and carol) with two CRLs of one DER length (the same PEM length, the
/// same padding): `clients.crl` revoking alice and carol, and its
/// re-issue (returned), a minute later, revoking alice and bob. ECDSA
/// signatures differ in length by a byte or two, so the re-issue is
/// signed again until it is of the length. Written in place over the old
/// one and read half-way, the new PEM's head on the old one's tail
/// parses: the old signature over a new head.
fn same_length_crls() -> (Scene, TestCa, [TestPair; 3], String) {
    let (s, ca, clients, alice, bob) = crl_scene();
    let carol = clients.client_pair("carol");
    let now = time::OffsetDateTime::now_utc();
    let (day, minute) = (time::Duration::days(1), time::Duration::minutes(1));
    let old = clients.crl_of(
        &[alice.serial, carol.serial],
        now - minute * 2,
        now + day,
        1,
    );
    let padding = |pem: &str| pem.matches('=').count();
    let new = (0..200)
        .map(|_| clients.crl_of(&[alice.serial, bob.serial], now - minute, now + day, 2))
        .find(|new| new.len() == old.len() && padding(new) == padding(&old))
        .expect("a re-issue of the same length in 200 tries");
    write(&s.path("clients.crl"), &old);
    (s, ca, [alice, bob, carol], new)
}

/// `new`'s first half written over `clients.crl` in place (not
/// truncated): the file, open to write the rest ([`finish`]), and the
/// error a CRL so read at the same length is refused with.
fn half_over_clients_crl(s: &Scene, new: &str) -> (fs::File, String) {
    let crl = s.path("clients.crl");
    let mut f = fs::OpenOptions::new().write(true).open(&crl).unwrap();
    f.write_all(&new.as_bytes()[..new.len() / 2]).unwrap();
    let unsigned = format!(
        "{}: invalid CRL: its signature does not verify",
        crl.display()
    );
    (f, unsigned)
}

/// The rest of `new` written to `f`, the file [`half_over_clients_crl`]
/// began: of the old CRL's length, nothing is left of it.
fn finish(mut f: fs::File, new: &str) {
    f.write_all(&new.as_bytes()[new.len() / 2..]).unwrap();
}

/// A CRL re-issued at the length of the one in use, written over it in
/// place by a writer that does not truncate (`rsync --inplace`, `dd
/// conv=notrunc`) and read half-way: the new head on the old signature
/// parses, and its signature fails under the clients' CA. It was used,
/// its issuer's only CRL: every client of the CA refused (`crl_invalid`)
/// until the write ended. It is waited on now, as a splice of another
/// length is, the old CRL enforced meanwhile (alice refused, bob
/// admitted); finished, the new CRL is applied (bob refused, carol
/// admitted), and nothing was counted as a failure.
#[tokio::test]
async fn a_crl_re_issued_at_its_length_written_in_place_is_waited_on() {
    let (s, ca, [alice, bob, carol], new) = same_length_crls();
    let (p, addr, api) = crl_gate(&s, &ca, &alice, &bob).await;
    assert!(!admits(addr, &ca, &carol).await, "carol is revoked");

    let (f, unsigned) = half_over_clients_crl(&s, &new);
    wait_until(
        WAIT,
        "the proxy read the new CRL's head on the old one's signature",
        || async {
            last_reload_names(api, "clients", &unsigned).await || !admits(addr, &ca, &bob).await
        },
    )
    .await;
    assert!(
        admits(addr, &ca, &bob).await,
        "bob refused meanwhile: the spliced CRL was used"
    );
    assert!(!admits(addr, &ca, &alice).await, "alice admitted meanwhile");
    finish(f, &new);
    wait_until(WAIT, "the new CRL applied (bob refused)", || async {
        !admits(addr, &ca, &bob).await
    })
    .await;
    assert!(admits(addr, &ca, &carol).await, "carol refused");
    assert!(!admits(addr, &ca, &alice).await, "alice admitted");
    assert_no_failure(&p, api, "clients", "a CRL re-issued at its length").await;
}

/// The same splice left as it is past `settle_timeout` (a writer that
/// died half-way): refused, naming the file (a warning, the failure
/// counted), the CRL in use kept: alice still refused, bob and carol's
/// standing unchanged. Once written whole, the new CRL is applied.
#[tokio::test]
async fn a_crl_left_spliced_at_its_length_is_refused_and_the_old_kept() {
    let (s, ca, [alice, bob, carol], new) = same_length_crls();
    let (mut p, addr, api) = crl_gate_settling(&s, &ca, (&alice, &bob), "1s").await;

    let (f, unsigned) = half_over_clients_crl(&s, &new);
    let warning = p
        .wait_log("the splice refused once settled", |v| {
            v["entry"] == "clients"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("certificate reload failed"))
        })
        .await;
    let error = warning["error"].as_str().unwrap_or_default();
    assert!(error.contains(&unsigned), "{warning}");
    let failures = r#"hotproxy_cert_reloads_total{entry="clients",result="failure"}"#;
    assert_eq!(
        metric(api, failures).await,
        Some(1.0),
        "the failure counted"
    );
    assert!(
        admits(addr, &ca, &bob).await,
        "bob refused: the splice used"
    );
    assert!(!admits(addr, &ca, &alice).await, "alice admitted");
    assert!(!admits(addr, &ca, &carol).await, "carol admitted");
    finish(f, &new);
    wait_until(WAIT, "the new CRL applied (bob refused)", || async {
        !admits(addr, &ca, &bob).await
    })
    .await;
    assert!(admits(addr, &ca, &carol).await, "carol refused");
}
