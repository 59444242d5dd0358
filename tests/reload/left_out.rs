//! A name SNI cannot carry (`host.123`) listed by entries under two client_auths: refused, or kept with its entry across a renewal.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::common::*;
use crate::support::writers::Kubelet;
use crate::support::*;

/// Listener `public`'s configuration in `s`: entry a (`a/tls.crt`, as
/// kubelet writes a Secret; no client_auth), then b (`b.crt`, whose
/// `server_names` are `b_names`) requiring a client certificate `ca.crt`
/// issued.
fn config(s: &Scene, b_names: &str) -> PathBuf {
    s.config(&format!(
        r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
certs:
  - {{ id: a, type: server-pair, cert_file: a/tls.crt, key_file: a/tls.key }}
  - {{ id: b, type: server-pair, cert_file: b.crt, key_file: b.key }}
  - {{ id: ca, type: ca-bundle, ca_file: ca.crt }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - {{ ref: a }}
        - ref: b
          server_names: {b_names}
          client_auth: {{ mode: require_and_verify, ca: {{ ref: ca }} }}
"#
    ))
}

/// A scene with `ca.crt`, b's pair (b.test) and a's Secret holding `a`.
fn scene(ca: &TestCa, a: &TestPair) -> (Scene, Kubelet) {
    let s = Scene::new();
    write(&s.path("ca.crt"), &ca.cert_pem);
    s.pair("b", &ca.server_pair(&["b.test"]));
    let kube = Kubelet::new(&s.path("a"));
    write_secret(&kube, a);
    (s, kube)
}

/// The status of a request for `Host: host.123` on a connection with SNI
/// `sni`, presenting `who` if any.
async fn host_123(addr: SocketAddr, sni: &str, ca: &TestCa, who: Option<&TestPair>) -> u16 {
    let mut open = open_served(addr, sni, &ca.cert_pem, who).await;
    let asked = open.send.send_request(get_to("host.123"));
    let status = within_deadline("a request for host.123", asked).await;
    status.unwrap().status().as_u16()
}

/// What a refusal of host.123 listed by a and b names: both entries, by
/// their position in `tls.certs`, and the name.
fn names_both(text: &str) -> bool {
    [
        "tls.certs[1] (entry \"b\")",
        "tls.certs[0] (entry \"a\")",
        "\"host.123\"",
    ]
    .iter()
    .all(|want| text.contains(want))
}

/// a's certificate names `DNS:host.123` (no SNI can carry it) and b,
/// requiring a verified client, lists it in its `server_names`: no
/// handshake says whose it is, so `check`, `run` and a reload refuse the
/// configuration, naming both entries and the name, as they refuse a name
/// SNI can carry that two entries answer so. `check` passed it, `run`
/// started, and host.123 answered 421 on every connection (b's verified
/// clients included).
#[tokio::test]
async fn a_name_sni_cannot_carry_listed_under_two_client_auths_is_refused() {
    let ca = TestCa::new("ca");
    let (s, _kube) = scene(&ca, &ca.server_pair_with_dns_sans(&["a.test", "host.123"]));
    let both = config(&s, "[b.test, host.123]");
    let cfg = both.to_str().unwrap();
    let (code, out, err) = run_cli(&["check", "--config", cfg]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(names_both(&err), "{out}{err}");
    let (code, out, err) = run_cli(&["run", "--config", cfg]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(names_both(&err), "{err}");

    // Served with b naming b.test alone, then reloaded with host.123 too.
    let (mut p, addr) = serve(&config(&s, "[b.test]")).await;
    config(&s, "[b.test, host.123]");
    p.signal("HUP");
    let refused = p.wait_log("the reload refused", rejected("host.123")).await;
    assert!(names_both(refused["error"].as_str().unwrap()), "{refused}");
    // The running configuration stays: host.123 is a's.
    assert_eq!(host_123(addr, "a.test", &ca, None).await, 404);
}

/// b (require_and_verify) served naming b.test alone, then reloaded
/// (SIGHUP) listing host.123 too: a request for host.123 on a new
/// connection to a.test without a certificate gets 421, as it does when
/// the proxy starts with that file. The listener's key left out the names
/// SNI cannot carry, so the reload kept the running snapshot: a's client
/// without a certificate was served host.123 (404) until some rotation.
#[tokio::test]
async fn a_reload_listing_a_name_sni_cannot_carry_holds_it_to_its_entry() {
    let ca = TestCa::new("ca");
    let (s, _kube) = scene(&ca, &ca.server_pair(&["a.test"]));
    let (mut p, addr) = serve(&config(&s, "[b.test]")).await;
    assert_eq!(host_123(addr, "a.test", &ca, None).await, 404);

    config(&s, "[b.test, host.123]");
    p.signal("HUP");
    p.wait_log("the reload", |v| v["message"] == "configuration reloaded")
        .await;
    assert_eq!(host_123(addr, "a.test", &ca, None).await, 421);
    let client = ca.client_pair("client");
    assert_eq!(host_123(addr, "b.test", &ca, Some(&client)).await, 404);
}

/// A CA's renewal of a's certificate (kubelet-style) adds `DNS:host.123`,
/// which b (require_and_verify) lists in its `server_names`: the name
/// stays b's, as an SNI name another entry answered stays with it, with a
/// warning naming both entries. b's verified client is still served
/// host.123 (404: no route), and a's client without a certificate still
/// gets 421. The name became no entry's: b's verified client got 421 too.
#[tokio::test]
async fn a_renewal_adding_a_name_sni_cannot_carry_keeps_it_with_its_entry() {
    let ca = TestCa::new("ca");
    let (s, kube) = scene(&ca, &ca.server_pair(&["a.test"]));
    let (mut p, addr) = serve(&config(&s, "[b.test, host.123]")).await;
    let client = ca.client_pair("client");
    assert_eq!(host_123(addr, "b.test", &ca, Some(&client)).await, 404);
    assert_eq!(host_123(addr, "a.test", &ca, None).await, 421);

    let a2 = ca.server_pair_with_dns_sans(&["a.test", "host.123"]);
    write_secret(&kube, &a2);
    until_served(addr, "a.test", &ca.cert_pem, &a2.fingerprint).await;

    assert_eq!(host_123(addr, "b.test", &ca, Some(&client)).await, 404);
    assert_eq!(host_123(addr, "a.test", &ca, None).await, 421);
    p.wait_log("the kept name warned about", |v| {
        v["level"] == "WARN" && v["name"] == "host.123" && v["entry"] == "a" && v["kept_by"] == "b"
    })
    .await;
}

/// Listener `public` in `s`: entry a (Secret `a/`, no client_auth), then
/// b (Secret `b/`, no `server_names`) requiring a client certificate
/// `ca.crt` issued.
fn both_secrets(s: &Scene) -> PathBuf {
    secrets_at(s, "b")
}

/// [`both_secrets`] with b's Secret in directory `b_dir`.
fn secrets_at(s: &Scene, b_dir: &str) -> PathBuf {
    s.config(&format!(
        r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
certs:
  - {{ id: a, type: server-pair, cert_file: a/tls.crt, key_file: a/tls.key }}
  - {{ id: b, type: server-pair, cert_file: {b_dir}/tls.crt, key_file: {b_dir}/tls.key }}
  - {{ id: ca, type: ca-bundle, ca_file: ca.crt }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - {{ ref: a }}
        - ref: b
          client_auth: {{ mode: require_and_verify, ca: {{ ref: ca }} }}
"#
    ))
}

/// b's certificate names `DNS:host.123`; its renewal (kubelet-style) for
/// b.test alone leaves no entry listing it, so the default entry a (no
/// client_auth) would take it. It stays b's, as an SNI name a renewal
/// drops stays with its entry, with the same warning: a's client without
/// a certificate still gets 421 for host.123, b's verified client is
/// still served it. It moved with nothing said: a's client was served
/// (404) and b's verified client got 421.
#[tokio::test]
async fn a_renewal_dropping_a_name_sni_cannot_carry_keeps_it_with_its_entry() {
    let ca = TestCa::new("ca");
    let s = Scene::new();
    write(&s.path("ca.crt"), &ca.cert_pem);
    let (a, b) = (Kubelet::new(&s.path("a")), Kubelet::new(&s.path("b")));
    write_secret(&a, &ca.server_pair(&["a.test"]));
    write_secret(&b, &ca.server_pair_with_dns_sans(&["b.test", "host.123"]));
    let (mut p, addr) = serve(&both_secrets(&s)).await;
    let client = ca.client_pair("client");
    assert_eq!(host_123(addr, "a.test", &ca, None).await, 421);
    assert_eq!(host_123(addr, "b.test", &ca, Some(&client)).await, 404);

    let b2 = ca.server_pair(&["b.test"]);
    write_secret(&b, &b2);
    until_served(addr, "b.test", &ca.cert_pem, &b2.fingerprint).await;

    assert_eq!(host_123(addr, "a.test", &ca, None).await, 421);
    assert_eq!(host_123(addr, "b.test", &ca, Some(&client)).await, 404);
    p.wait_log("the dropped name warned about", |v| {
        v["level"] == "WARN" && v["name"] == "host.123" && v["entry"] == "b" && v["instead"] == "a"
    })
    .await;
}

/// b's certificate (require_and_verify, no `server_names`) renewed
/// kubelet-style to name `DNS:host.123` too, which until then fell to the
/// default entry a (no client_auth): host.123 is b's now, and a keep-alive
/// connection a's client made to a.test without a certificate before the
/// renewal closes (`admission_rules_changed`), as it does when a renewal
/// gives an SNI name to another entry; a new one gets 421. It stayed open and was served
/// host.123 (404) under a's client_auth: its 421 check reads the entries
/// of its handshake, and what admitted it left out the names SNI cannot
/// carry.
#[tokio::test]
async fn a_renewal_giving_a_name_sni_cannot_carry_to_a_stricter_entry_closes_connections() {
    let ca = TestCa::new("ca");
    let s = Scene::new();
    write(&s.path("ca.crt"), &ca.cert_pem);
    let (a, b) = (Kubelet::new(&s.path("a")), Kubelet::new(&s.path("b")));
    write_secret(&a, &ca.server_pair(&["a.test"]));
    write_secret(&b, &ca.server_pair(&["b.test"]));
    let (p, addr) = serve(&both_secrets(&s)).await;
    let mut open = open_served(addr, "a.test", &ca.cert_pem, None).await;
    let asked = open.send.send_request(get_to("host.123"));
    let before = within_deadline("host.123 on a's connection", asked).await;
    assert_eq!(before.unwrap().status(), 404);

    write_secret(&b, &ca.server_pair_with_dns_sans(&["b.test", "host.123"]));
    closed_logged(&p, open, "admission_rules_changed").await;
    assert_eq!(host_123(addr, "a.test", &ca, None).await, 421);
}

/// A CA's renewal (kubelet-style) adds `DNS:host.123` to a's certificate
/// (a: no client_auth), a name no entry listed, which the default entry
/// d (require_and_verify) answered: it stays d's, as an SNI name the
/// default answered stays with it when its new entry would let in a
/// client the default refused, with the same warning. A request for it
/// on a's connection without a certificate still gets 421; d's verified
/// client is still served it. It became a's with nothing said (404).
#[tokio::test]
async fn a_renewal_adding_a_name_sni_cannot_carry_the_default_answered_keeps_it_there() {
    let ca = TestCa::new("ca");
    let s = Scene::new();
    write(&s.path("ca.crt"), &ca.cert_pem);
    s.pair("d", &ca.server_pair(&["d.test"]));
    let a = Kubelet::new(&s.path("a"));
    write_secret(&a, &ca.server_pair(&["a.test"]));
    let cfg = s.config(
        r#"
watch: { debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }
certs:
  - { id: d, type: server-pair, cert_file: d.crt, key_file: d.key }
  - { id: a, type: server-pair, cert_file: a/tls.crt, key_file: a/tls.key }
  - { id: ca, type: ca-bundle, ca_file: ca.crt }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - { ref: d, client_auth: { mode: require_and_verify, ca: { ref: ca } } }
        - { ref: a, client_auth: { mode: none } }
"#,
    );
    let (mut p, addr) = serve(&cfg).await;
    let client = ca.client_pair("client");
    assert_eq!(host_123(addr, "a.test", &ca, None).await, 421);
    assert_eq!(host_123(addr, "d.test", &ca, Some(&client)).await, 404);

    let a2 = ca.server_pair_with_dns_sans(&["a.test", "host.123"]);
    write_secret(&a, &a2);
    until_served(addr, "a.test", &ca.cert_pem, &a2.fingerprint).await;

    assert_eq!(host_123(addr, "a.test", &ca, None).await, 421);
    assert_eq!(host_123(addr, "d.test", &ca, Some(&client)).await, 404);
    p.wait_log("the resolved name warned about", |v| {
        v["level"] == "WARN" && v["name"] == "host.123" && v["entry"] == "a" && v["kept_by"] == "d"
    })
    .await;
}

/// Listener `public` in `s`: d (`d.crt`, `d_auth`), w (`w.crt`, answering
/// `*.example.test` by its `server_names`, `w_auth`), then a (Secret `a/`,
/// `a_auth`); `strict` requires a client certificate `ca.crt` issued.
fn under_wildcard(s: &Scene, [d_auth, w_auth, a_auth]: [&str; 3]) -> PathBuf {
    s.config(&format!(
        r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
certs:
  - {{ id: d, type: server-pair, cert_file: d.crt, key_file: d.key }}
  - {{ id: w, type: server-pair, cert_file: w.crt, key_file: w.key }}
  - {{ id: a, type: server-pair, cert_file: a/tls.crt, key_file: a/tls.key }}
  - {{ id: ca, type: ca-bundle, ca_file: ca.crt }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - {{ ref: d, client_auth: {d_auth} }}
        - {{ ref: w, server_names: [w.test, "*.example.test"], client_auth: {w_auth} }}
        - {{ ref: a, client_auth: {a_auth} }}
"#
    ))
}

const STRICT: &str = "{ mode: require_and_verify, ca: { ref: ca } }";
const NONE: &str = "{ mode: none }";
/// A name SNI cannot carry (a label starting with `-`) that SNI routing
/// gives `*.example.test`'s entry.
const DASHED: &str = "-a.example.test";

/// The status of a request for `Host: -a.example.test` on a connection
/// with SNI `sni`, presenting `who` if any.
async fn dashed(addr: SocketAddr, sni: &str, ca: &TestCa, who: Option<&TestPair>) -> u16 {
    let mut open = open_served(addr, sni, &ca.cert_pem, who).await;
    let asked = open.send.send_request(get_to(DASHED));
    let status = within_deadline("a request for -a.example.test", asked).await;
    status.unwrap().status().as_u16()
}

/// A scene for [`under_wildcard`]: `ca.crt`, d's and w's pairs, and a's
/// Secret holding `a`.
fn wildcard_scene(ca: &TestCa, a: &TestPair) -> (Scene, Kubelet) {
    let s = Scene::new();
    write(&s.path("ca.crt"), &ca.cert_pem);
    s.pair("d", &ca.server_pair(&["d.test"]));
    s.pair("w", &ca.server_pair(&["w.test"]));
    let kube = Kubelet::new(&s.path("a"));
    write_secret(&kube, a);
    (s, kube)
}

/// A CA's renewal of a's certificate (a and the default d: no
/// client_auth) adds `DNS:-a.example.test`, a name SNI cannot carry that
/// w (require_and_verify) answered through `*.example.test`, as SNI
/// routing has it: it stays w's, with the warning naming both. It was
/// judged against the default (exact names only: none listed it), whose
/// client_auth is a's, and became a's with nothing said: a's client
/// without a certificate was served it (404, 421 before).
#[tokio::test]
async fn a_renewal_adding_a_name_sni_cannot_carry_an_sni_wildcard_answered_keeps_it_there() {
    let ca = TestCa::new("ca");
    let (s, a) = wildcard_scene(&ca, &ca.server_pair(&["a.test"]));
    let (mut p, addr) = serve(&under_wildcard(&s, [NONE, STRICT, NONE])).await;
    let client = ca.client_pair("client");
    assert_eq!(dashed(addr, "a.test", &ca, None).await, 421);
    assert_eq!(dashed(addr, "w.test", &ca, Some(&client)).await, 404);

    let a2 = ca.server_pair_with_dns_sans(&["a.test", DASHED]);
    write_secret(&a, &a2);
    until_served(addr, "a.test", &ca.cert_pem, &a2.fingerprint).await;

    assert_eq!(dashed(addr, "a.test", &ca, None).await, 421);
    assert_eq!(dashed(addr, "w.test", &ca, Some(&client)).await, 404);
    p.wait_log("the wildcard's name warned about", |v| {
        v["level"] == "WARN" && v["name"] == DASHED && v["entry"] == "a" && v["kept_by"] == "w"
    })
    .await;
}

/// a (require_and_verify, as the default d) lists `DNS:-a.example.test`;
/// its renewal (kubelet-style) drops it, and SNI routing would give it to
/// w (no client_auth) through `*.example.test`: it stays a's, with the
/// warning naming w as `instead`. The entry taking it next was looked up
/// among the names SNI cannot carry only, so the default (a's
/// client_auth) was found and the name let go: w's client without a
/// certificate was served it (404, 421 before).
#[tokio::test]
async fn a_renewal_dropping_a_name_sni_cannot_carry_under_an_sni_wildcard_keeps_it() {
    let ca = TestCa::new("ca");
    let a1 = ca.server_pair_with_dns_sans(&["a.test", DASHED]);
    let (s, a) = wildcard_scene(&ca, &a1);
    let (mut p, addr) = serve(&under_wildcard(&s, [STRICT, NONE, STRICT])).await;
    let client = ca.client_pair("client");
    assert_eq!(dashed(addr, "w.test", &ca, None).await, 421);
    assert_eq!(dashed(addr, "a.test", &ca, Some(&client)).await, 404);

    let a2 = ca.server_pair(&["a.test"]);
    write_secret(&a, &a2);
    until_served(addr, "a.test", &ca.cert_pem, &a2.fingerprint).await;

    assert_eq!(dashed(addr, "w.test", &ca, None).await, 421);
    assert_eq!(dashed(addr, "a.test", &ca, Some(&client)).await, 404);
    p.wait_log("the dropped name warned about", |v| {
        v["level"] == "WARN" && v["name"] == DASHED && v["entry"] == "a" && v["instead"] == "w"
    })
    .await;
}

/// The default entry a's certificate (no client_auth) renewed
/// kubelet-style to name `DNS:host.123` too, then without it: host.123
/// is a's either way (a name no entry lists falls to the default), so a
/// keep-alive connection a's client made to a.test stays open and is
/// served host.123 (404) throughout. What admits a connection counted
/// every name SNI cannot carry with its entry, the default's included,
/// so the renewal closed every open connection of the listener
/// (`admission_rules_changed`) though nothing was admitted differently.
#[tokio::test]
async fn a_renewal_of_the_default_entry_for_a_name_sni_cannot_carry_keeps_open_connections() {
    let ca = TestCa::new("ca");
    let s = Scene::new();
    write(&s.path("ca.crt"), &ca.cert_pem);
    let (a, b) = (Kubelet::new(&s.path("a")), Kubelet::new(&s.path("b")));
    write_secret(&a, &ca.server_pair(&["a.test"]));
    write_secret(&b, &ca.server_pair(&["b.test"]));
    let (mut p, addr) = serve(&both_secrets(&s)).await;
    let mut open = open_served(addr, "a.test", &ca.cert_pem, None).await;

    for names in [&["a.test", "host.123"][..], &["a.test"]] {
        let renewed = ca.server_pair_with_dns_sans(names);
        write_secret(&a, &renewed);
        // Logged once the listener's new rules are stored and its
        // connections told of any change.
        p.wait_log("the renewal", |v| {
            v["message"] == "certificate reloaded"
                && v["fingerprint"] == renewed.fingerprint.as_str()
        })
        .await;
        let changed = (p.logs().into_iter()).find(|l| l.contains("admission rules changed"));
        assert_eq!(changed, None, "renewed for {names:?}");
        let asked = open.send.send_request(get_to("host.123"));
        let served = within_deadline("host.123 on a's connection", asked).await;
        let status = served.map(|r| r.status().as_u16());
        assert_eq!(status.ok(), Some(404), "after the renewal for {names:?}");
    }
    assert!(!open.conn.is_finished(), "{} closed", open.peer);
    assert!(!closed_for(&p, &open.peer, "admission_rules_changed"));
}

/// b's certificate names `DNS:host.123` and its renewal for b.test alone
/// keeps the name with b (as above); then the operator points b at
/// copies of the same files (`b2/`) and reloads (SIGHUP). A reload that
/// redefines an entry builds the listener from scratch, as a restart
/// does: host.123 is listed by no entry, so it is the default entry a's,
/// and a's client without a certificate is served it (404) on a new
/// connection; the connections made before close, as when a name moves
/// to the default entry. A rotation after it (a's renewal) leaves
/// host.123 with a and the connections made since open. The snapshot
/// built from scratch was dropped (its key, from the files' bytes, was
/// the running one's) while its admission rules were stored: every
/// connection closed yet host.123 stayed b's (421), and a's renewal
/// stored the running rules again, closing every connection once more.
#[tokio::test]
async fn a_reload_moving_an_entry_to_copies_of_its_files_applies_its_snapshot_with_its_rules() {
    let ca = TestCa::new("ca");
    let s = Scene::new();
    write(&s.path("ca.crt"), &ca.cert_pem);
    let (a, b) = (Kubelet::new(&s.path("a")), Kubelet::new(&s.path("b")));
    write_secret(&a, &ca.server_pair(&["a.test"]));
    write_secret(&b, &ca.server_pair_with_dns_sans(&["b.test", "host.123"]));
    let (mut p, addr) = serve(&both_secrets(&s)).await;
    let b2 = ca.server_pair(&["b.test"]);
    write_secret(&b, &b2);
    until_served(addr, "b.test", &ca.cert_pem, &b2.fingerprint).await;
    assert_eq!(host_123(addr, "a.test", &ca, None).await, 421, "kept b's");

    let before = open_served(addr, "a.test", &ca.cert_pem, None).await;
    write_secret(&Kubelet::new(&s.path("b2")), &b2);
    secrets_at(&s, "b2");
    p.signal("HUP");
    p.wait_log("the reload", |v| v["message"] == "configuration reloaded")
        .await;
    assert_eq!(
        host_123(addr, "a.test", &ca, None).await,
        404,
        "a's, as at a restart"
    );
    closed_logged(&p, before, "admission_rules_changed").await;

    let mut since = open_served(addr, "a.test", &ca.cert_pem, None).await;
    let a2 = ca.server_pair(&["a.test"]);
    write_secret(&a, &a2);
    p.wait_log("a's renewal", |v| {
        v["message"] == "certificate reloaded" && v["fingerprint"] == a2.fingerprint.as_str()
    })
    .await;
    let asked = since.send.send_request(get_to("host.123"));
    let served = within_deadline("host.123 after a's renewal", asked).await;
    assert_eq!(served.map(|r| r.status().as_u16()).ok(), Some(404));
    assert!(!closed_for(&p, &since.peer, "admission_rules_changed"));
    assert_eq!(host_123(addr, "a.test", &ca, None).await, 404);
}
