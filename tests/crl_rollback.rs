//! A CRL file replaced by an older CRL of the same issuer (a backup
//! restored, a stale copy pushed): applied as written, and warned about,
//! as a certificate rolled back to one that expires earlier is.

mod support;

use std::time::Duration;

use support::*;
use time::OffsetDateTime;

/// The edge's server pair (`edge.crt`, `edge.key`) and its CA
/// (`edge-ca.crt`, which `admitted` trusts) in `s`.
fn edge(s: &Scene) {
    let edge = TestCa::new("edge");
    s.pair("edge", &edge.server_pair(&["localhost"]));
    write(&s.path("edge-ca.crt"), &edge.cert_pem);
}

/// A proxy whose listener `mtls` requires client certificates of
/// `clients`, with `crl` as its CRL file `clients.crl`. No routes: a
/// client let in gets 404, one refused gets no answer.
fn scene(s: &Scene, clients: &TestCa, crl: &str) -> std::path::PathBuf {
    edge(s);
    write(&s.path("clients.crt"), &clients.cert_pem);
    write(&s.path("clients.crl"), crl);
    s.config(
        r#"
admin: { bind: 127.0.0.1:0 }
certs:
  - { id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }
  - { id: clients, type: ca-bundle, ca_file: clients.crt, crl_files: [clients.crl] }
listeners:
  - name: mtls
    bind: 127.0.0.1:0
    tls:
      certs: [{ ref: edge }]
      client_auth: { mode: require_and_verify, ca: { ref: clients } }
"#,
    )
}

/// Whether `client` is let in at `addr` (404: no routes).
async fn admitted(s: &Scene, addr: std::net::SocketAddr, client: &TestPair) -> bool {
    let ca = std::fs::read_to_string(s.path("edge-ca.crt")).unwrap();
    let cfg = client_config(&ca, Some(client), &[b"http/1.1"]);
    match get(addr, "localhost", cfg, false, "/", &[]).await {
        Ok(r) => {
            assert_eq!(r.status, 404, "{}", r.body);
            true
        }
        Err(_) => false,
    }
}

/// Two CRLs of `issuer`, whole seconds, a week to their nextUpdate:
/// `v1` (number 1, a day old) revokes no one, `v2` (number 2, a minute
/// old) revokes `mallory`: `v1` in `v2`'s place is a rollback.
struct Rollback {
    older: OffsetDateTime,
    newer: OffsetDateTime,
    v1: String,
    v2: String,
}

fn rollback(issuer: &TestCa, mallory: &TestPair) -> Rollback {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let until = now + time::Duration::days(7);
    let (older, newer) = (
        now - time::Duration::days(1),
        now - time::Duration::minutes(1),
    );
    Rollback {
        older,
        newer,
        v1: issuer.crl_of(&[], older, until, 1),
        v2: issuer.crl_of(&[mallory.serial], newer, until, 2),
    }
}

/// `p` started with `cfg`, and its listener `mtls`'s address.
async fn start(cfg: &std::path::Path) -> (Proxy, std::net::SocketAddr) {
    let mut p = Proxy::start(cfg);
    let addr = p.listener_addr("mtls").await;
    (p, addr)
}

/// `crl` renamed over `clients.crl`, then `clients` reloaded through the
/// API.
async fn replace_crl(s: &Scene, p: &mut Proxy, crl: &str) {
    let api = p.admin_addr().await;
    support::writers::mv_over(&s.path("clients.crl"), crl);
    let reload = admin(api, "POST", "/api/v1/certs/clients/reload", None, None, &[]).await;
    assert_eq!(reload.status, 200, "{}", reload.body);
}

/// The `CRL rolled back` warning about `clients`, once `p` logs it.
async fn rollback_warning(p: &mut Proxy) -> serde_json::Value {
    p.wait_log("the CRL rollback warning", |v| {
        v["level"] == "WARN"
            && v["entry"] == "clients"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("CRL rolled back"))
    })
    .await
}

/// `warning` gives `older` as the CRL's thisUpdate and `newer` as the
/// previous one's, and (if given) the CRL's and the previous one's
/// numbers.
fn assert_dates_and_numbers(
    warning: &serde_json::Value,
    older: OffsetDateTime,
    newer: OffsetDateTime,
    numbers: Option<(&str, &str)>,
) {
    assert_eq!(
        warning["this_update_unix"],
        older.unix_timestamp(),
        "{warning}"
    );
    assert_eq!(
        warning["previous_this_update_unix"],
        newer.unix_timestamp(),
        "{warning}"
    );
    if let Some((number, previous)) = numbers {
        assert_eq!(warning["crl_number"], number, "{warning}");
        assert_eq!(warning["previous_crl_number"], previous, "{warning}");
    }
}

/// CRL 2 revokes mallory; the file is then renamed over with CRL 1, issued
/// a day earlier, that does not (a restored backup). The file as written
/// is applied (an operator may roll back on purpose): mallory gets in
/// again. And it is warned about, naming the file and the issuer, both
/// CRLs' thisUpdate and number, and no PEM. It was applied silently: a
/// client revoked since was admitted again and nothing said so.
#[tokio::test]
async fn a_crl_rolled_back_to_an_older_one_is_applied_and_warned_about() {
    let s = Scene::new();
    let clients = TestCa::new("clients");
    let mallory = clients.client_pair("mallory");
    let Rollback {
        older,
        newer,
        v1,
        v2,
    } = rollback(&clients, &mallory);
    let cfg = scene(&s, &clients, &v2);
    let (mut p, addr) = start(&cfg).await;
    assert!(!admitted(&s, addr, &mallory).await, "CRL 2 revokes mallory");

    replace_crl(&s, &mut p, &v1).await;
    wait_until(Duration::from_secs(20), "CRL 1 applied", || async {
        admitted(&s, addr, &mallory).await
    })
    .await;
    let warning = rollback_warning(&mut p).await;
    let file = s.path("clients.crl").display().to_string();
    assert_eq!(warning["file"], file.as_str(), "{warning}");
    assert!(
        warning["issuer"]
            .as_str()
            .is_some_and(|i| i.contains("clients")),
        "{warning}"
    );
    assert_dates_and_numbers(&warning, older, newer, Some(("1", "2")));
    let logs = p.logs().join("\n");
    assert!(!logs.contains("-----BEGIN"), "PEM in the log:\n{logs}");
    for line in pem_body_lines(&v1).iter().chain(&pem_body_lines(&v2)) {
        assert!(!logs.contains(line.as_str()), "a CRL's PEM body in the log");
    }
}

/// A newer CRL in place of an older one, and the same CRL written again,
/// are no rollback: nothing is warned about.
#[tokio::test]
async fn a_newer_crl_is_no_rollback() {
    let s = Scene::new();
    let clients = TestCa::new("clients");
    let mallory = clients.client_pair("mallory");
    let Rollback { v1, v2, .. } = rollback(&clients, &mallory);
    let cfg = scene(&s, &clients, &v1);
    let (mut p, addr) = start(&cfg).await;
    assert!(admitted(&s, addr, &mallory).await, "CRL 1 revokes nobody");
    replace_crl(&s, &mut p, &v2).await;
    wait_until(Duration::from_secs(20), "CRL 2 applied", || async {
        !admitted(&s, addr, &mallory).await
    })
    .await;
    assert_no_rollback_warned(&mut p, "a newer CRL").await;
}

/// No `CRL rolled back` warning in `p`'s log once what it did so far is
/// logged (a SIGHUP's end marks it): `what` was warned about otherwise.
async fn assert_no_rollback_warned(p: &mut Proxy, what: &str) {
    p.signal("HUP");
    p.wait_log("the SIGHUP's end", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("SIGHUP: done"))
    })
    .await;
    assert!(
        !p.logs().iter().any(|l| l.contains("CRL rolled back")),
        "{what} was warned about as a rollback"
    );
}

/// The CRL in use was one the bundle ranks below any verified, issued
/// CRL (as `newest` does), in use for want of one: a CRL under the
/// issuer's name no CA of the bundle signed (forged, here dated a year
/// ahead: every client of the issuer is refused), or a genuine one dated
/// an hour ahead. The genuine, current CRL put in its place is a repair,
/// not a rollback, though issued earlier: it was warned about as one
/// (the forged CRL would have made every genuine one look rolled back
/// for a year). Applied (mallory admitted again, or refused now), and
/// nothing warned about.
#[tokio::test]
async fn a_crl_replacing_a_forged_or_future_one_is_no_rollback() {
    let now = OffsetDateTime::now_utc();
    let until = now + time::Duration::days(400);
    for forged in [true, false] {
        let s = Scene::new();
        let clients = TestCa::new("clients");
        let mallory = clients.client_pair("mallory");
        let (before, after) = match forged {
            // Another key under the same name; then mallory not revoked.
            true => (
                TestCa::new("clients").crl_of(&[], now + time::Duration::days(365), until, 9),
                clients.crl_of(&[], now - time::Duration::minutes(1), until, 2),
            ),
            // Revoking nobody from an hour ahead; then mallory, now.
            false => (
                clients.crl_of(&[], now + time::Duration::hours(1), until, 3),
                clients.crl_of(
                    &[mallory.serial],
                    now - time::Duration::minutes(1),
                    until,
                    2,
                ),
            ),
        };
        let cfg = scene(&s, &clients, &before);
        let (mut p, addr) = start(&cfg).await;
        assert_eq!(admitted(&s, addr, &mallory).await, !forged);
        replace_crl(&s, &mut p, &after).await;
        wait_until(
            Duration::from_secs(20),
            "the genuine CRL applied",
            || async { admitted(&s, addr, &mallory).await == forged },
        )
        .await;
        let what = [
            "a CRL replacing one dated ahead",
            "a CRL replacing a forged one",
        ];
        assert_no_rollback_warned(&mut p, what[usize::from(forged)]).await;
    }
}

/// A configuration reload (the file written as kubelet writes a
/// ConfigMap) that points the CA bundle's `crl_files` from
/// `pki/clients.crl` to `mirror/clients.crl`, where a mirror out of date
/// holds an older CRL of the same issuer: applied (mallory, revoked in
/// the newer, admitted again) and warned about as a re-read or an API
/// put of it is. The entry's redefinition took its material as new,
/// compared with nothing, and the rollback went unsaid.
#[tokio::test]
async fn a_config_reload_pointing_at_an_older_crl_warns_of_the_rollback() {
    let s = Scene::new();
    let clients = TestCa::new("clients");
    let mallory = clients.client_pair("mallory");
    let Rollback {
        older,
        newer,
        v1,
        v2,
    } = rollback(&clients, &mallory);
    edge(&s);
    write(&s.path("clients.crt"), &clients.cert_pem);
    std::fs::create_dir_all(s.path("pki")).unwrap();
    std::fs::create_dir_all(s.path("mirror")).unwrap();
    let (pki, mirror) = (s.path("pki/clients.crl"), s.path("mirror/clients.crl"));
    write(&pki, &v2);
    write(&mirror, &v1);
    let config = |crl: &std::path::Path| {
        format!(
            r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
certs:
  - {{ id: edge, type: server-pair, cert_file: {}, key_file: {} }}
  - {{ id: clients, type: ca-bundle, ca_file: {}, crl_files: [{}] }}
listeners:
  - name: mtls
    bind: 127.0.0.1:0
    tls:
      certs: [{{ ref: edge }}]
      client_auth: {{ mode: require_and_verify, ca: {{ ref: clients }} }}
"#,
            s.path("edge.crt").display(),
            s.path("edge.key").display(),
            s.path("clients.crt").display(),
            crl.display()
        )
    };
    let kube = support::writers::Kubelet::new(&s.path("configmap"));
    kube.write(&[("config.yaml", &config(&pki))], false);
    let (mut p, addr) = start(&s.path("configmap/config.yaml")).await;
    assert!(!admitted(&s, addr, &mallory).await, "CRL 2 revokes mallory");

    kube.write(&[("config.yaml", &config(&mirror))], false);
    wait_until(
        Duration::from_secs(20),
        "the mirror's CRL applied",
        || async { admitted(&s, addr, &mallory).await },
    )
    .await;
    let warning = rollback_warning(&mut p).await;
    let file = mirror.display().to_string();
    assert_eq!(warning["file"], file.as_str(), "{warning}");
    assert_dates_and_numbers(&warning, older, newer, Some(("1", "2")));
}

/// The Secret volume `pki`, written as kubelet does: `ca.crt` the CA
/// bundle, `root.crl` the root's CRL (revoking no one), `issuing.crl`
/// what `put` is given.
struct Secret {
    pki: support::writers::Kubelet,
    bundle: String,
    root_crl: String,
}

impl Secret {
    fn new(s: &Scene, bundle: &str, root: &TestCa) -> Secret {
        Secret {
            pki: support::writers::Kubelet::new(&s.path("pki")),
            bundle: bundle.to_owned(),
            root_crl: root.crl(&[]),
        }
    }

    fn put(&self, issuing_crl: &str) {
        self.pki.write(
            &[
                ("ca.crt", &self.bundle),
                ("root.crl", &self.root_crl),
                ("issuing.crl", issuing_crl),
            ],
            false,
        )
    }
}

/// A proxy watching the Secret volume `pki` (written as kubelet does):
/// `ca.crt` its CA bundle, `root.crl` and `issuing.crl` its CRLs; the
/// listener `mtls` requires client certificates of that bundle.
fn kubelet_scene(s: &Scene, pki: &support::writers::Kubelet) -> std::path::PathBuf {
    edge(s);
    let at = |name: &str| pki.dir.join(name).display().to_string();
    s.config(&format!(
        r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
  - {{ id: clients, type: ca-bundle, ca_file: {}, crl_files: [{}, {}] }}
listeners:
  - name: mtls
    bind: 127.0.0.1:0
    tls:
      certs: [{{ ref: edge }}]
      client_auth: {{ mode: require_and_verify, ca: {{ ref: clients }} }}
"#,
        at("ca.crt"),
        at("root.crl"),
        at("issuing.crl"),
    ))
}

/// A proxy on a Secret of `bundle` (CAs of `root`), its `issuing.crl`
/// rolled back from CRL 2 of `issuing` (revoking mallory) to its CRL 1:
/// alice and mallory, clients of `issuing` sending their chain, are
/// admitted and refused, then mallory admitted again. The CRLs, and the
/// rollback warning, which names the file and the issuing CA.
async fn issuing_crl_rolled_back(
    root: &TestCa,
    issuing: &TestCa,
    bundle: &str,
) -> (Rollback, serde_json::Value) {
    let s = Scene::new();
    let mallory = issuing.client_with_chain("mallory");
    let alice = issuing.client_with_chain("alice");
    let r = rollback(issuing, &mallory);
    let secret = Secret::new(&s, bundle, root);
    secret.put(&r.v2);
    let (mut p, addr) = start(&kubelet_scene(&s, &secret.pki)).await;
    assert!(admitted(&s, addr, &alice).await, "alice sends her chain");
    assert!(!admitted(&s, addr, &mallory).await, "CRL 2 revokes mallory");

    secret.put(&r.v1);
    wait_until(Duration::from_secs(20), "CRL 1 applied", || async {
        admitted(&s, addr, &mallory).await
    })
    .await;
    let warning = rollback_warning(&mut p).await;
    let file = secret.pki.dir.join("issuing.crl").display().to_string();
    assert_eq!(warning["file"], file.as_str(), "{warning}");
    assert_eq!(warning["issuer"], "CN=issuing CA", "{warning}");
    (r, warning)
}

/// `ca_file` holds the root alone, as hotproxy's own warning about an
/// unchecked issuing CA advises: clients send the issuing CA, whose CRL
/// (the one revoking them) no CA of the bundle can verify. That CRL
/// rolled back to an older copy in the Secret (a restored backup) lets
/// mallory, revoked since, in again: applied, and warned about, naming
/// the file, the issuing CA, both thisUpdates and numbers. It was
/// silent: only a CRL a CA of the bundle verified was compared.
#[tokio::test]
async fn an_issuing_cas_crl_rolled_back_behind_a_root_only_bundle_is_warned_about() {
    let root = TestCa::new("partners root");
    let issuing = root.intermediate("issuing CA");
    let (r, warning) = issuing_crl_rolled_back(&root, &issuing, &root.cert_pem).await;
    assert_dates_and_numbers(&warning, r.older, r.newer, Some(("1", "2")));
}

/// A proxy on `secret`, its `issuing.crl` going from `old_crl` of
/// `old_key` to `new_crl` of `new_key` (the issuing CA re-keyed under its
/// name): alice, a client of the old key, admitted and bob, of the new
/// one, refused; then bob admitted. The proxy, for what it logged.
async fn re_keyed(
    s: &Scene,
    secret: &Secret,
    (old_key, old_crl): (&TestCa, &str),
    (new_key, new_crl): (&TestCa, &str),
) -> Proxy {
    secret.put(old_crl);
    let (p, addr) = start(&kubelet_scene(s, &secret.pki)).await;
    let (alice, bob) = (
        old_key.client_with_chain("alice"),
        new_key.client_with_chain("bob"),
    );
    assert!(
        admitted(s, addr, &alice).await,
        "the old key's CRL is in use"
    );
    // Checked with the key that issued bob's issuing CA, it fails.
    assert!(!admitted(s, addr, &bob).await, "the old key's CRL in use");
    secret.put(new_crl);
    wait_until(
        Duration::from_secs(20),
        "the new key's CRL applied",
        || async { admitted(s, addr, &bob).await },
    )
    .await;
    p
}

/// The issuing CA re-keyed under the same name: the Secret's bundle holds
/// the root and both issuing CA certificates (old key, new key), and
/// `issuing.crl` goes from the old key's latest CRL to the new key's
/// first, issued an hour earlier. That is a new key's CRL, not an older
/// CRL of the old one: nothing re-admits a client revoked since, and no
/// rollback is warned about (the same with the root alone in the bundle,
/// the issuing CAs sent by clients: the CRLs name different keys). It was
/// warned about as `CRL rolled back`, clients revoked since said to be
/// admitted again: untrue.
#[tokio::test]
async fn a_re_keyed_cas_first_crl_is_no_rollback() {
    for chain_in_bundle in [true, false] {
        let s = Scene::new();
        let root = TestCa::new("partners root");
        let old_key = root.intermediate("issuing CA");
        let new_key = root.intermediate("issuing CA");
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let until = now + time::Duration::days(7);
        let old_crl = old_key.crl_of(&[], now - time::Duration::minutes(1), until, 7);
        let new_crl = new_key.crl_of(&[], now - time::Duration::hours(1), until, 1);
        let bundle = match chain_in_bundle {
            true => format!("{}{}{}", root.cert_pem, old_key.cert_pem, new_key.cert_pem),
            false => root.cert_pem.clone(),
        };
        let secret = Secret::new(&s, &bundle, &root);
        let mut p = re_keyed(&s, &secret, (&old_key, &old_crl), (&new_key, &new_crl)).await;
        let what = ["the root alone", "both keys' CAs"][usize::from(chain_in_bundle)];
        assert_no_rollback_warned(&mut p, &format!("a new key's CRL, {what} in the bundle")).await;
    }
}

/// The issuing CA re-keyed under its name, `ca_file` holding the root and
/// the issuing CA's OLD certificate, clients sending the NEW one in their
/// chain, `issuing.crl` holding the new key's CRLs (no CA of the bundle
/// verifies them; webpki checks them with the client's chain). The new
/// key's CRL 2 (revoking mallory) rolled back to its CRL 1 (a restored
/// backup): mallory is admitted again, and that is warned about. It was
/// silent: a CA of the bundle bearing the issuer's name, the CRL in use
/// was compared only when such a CA verified it.
#[tokio::test]
async fn a_crl_no_named_ca_verifies_rolled_back_is_warned_about() {
    let root = TestCa::new("partners root");
    let old_key = root.intermediate("issuing CA");
    let new_key = root.intermediate("issuing CA");
    let bundle = format!("{}{}", root.cert_pem, old_key.cert_pem);
    let (r, warning) = issuing_crl_rolled_back(&root, &new_key, &bundle).await;
    assert_dates_and_numbers(&warning, r.older, r.newer, None);
}

/// A CRL of `ca` as `openssl ca -gencrl` writes it with a default
/// configuration: a CRL number, no authority key identifier; revoking no
/// one, issued at `this_update`, valid until `next_update`. Made in `dir`.
fn openssl_crl(
    dir: &std::path::Path,
    ca: &TestCa,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    number: u64,
) -> String {
    std::fs::create_dir_all(dir).unwrap();
    write(&dir.join("ca.crt"), &ca.cert_pem);
    write(&dir.join("ca.key"), &ca.key_pem());
    write(&dir.join("index.txt"), "");
    write(&dir.join("crlnumber"), &format!("{number:02X}\n"));
    write(
        &dir.join("openssl.cnf"),
        "[ ca ]\ndefault_ca = CA_default\n[ CA_default ]\ndatabase = index.txt\n\
         crlnumber = crlnumber\ndefault_md = sha256\n",
    );
    let stamp = |t: OffsetDateTime| {
        let (d, h) = (t.date(), t.time());
        let (month, day) = (u8::from(d.month()), d.day());
        let (hour, minute, second) = (h.hour(), h.minute(), h.second());
        format!(
            "{:04}{month:02}{day:02}{hour:02}{minute:02}{second:02}Z",
            d.year()
        )
    };
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(["ca", "-gencrl", "-batch", "-config", "openssl.cnf"])
        .args(["-cert", "ca.crt", "-keyfile", "ca.key", "-out", "ca.crl"])
        .args(["-crl_lastupdate", &stamp(this_update)])
        .args(["-crl_nextupdate", &stamp(next_update)])
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl ca -gencrl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.join("ca.crl")).unwrap()
}

/// `ca_file` holds the root alone; the issuing CA re-keyed under its name
/// and its CRLs come from `openssl ca -gencrl` with a default
/// configuration (no authority key identifier). `issuing.crl` goes from
/// the old key's latest CRL to the new key's first, an hour older:
/// nothing tells a rollback from another key's CRL, so the warning says
/// both may be (with the same prefix and fields). It said, untrue here,
/// that clients revoked since were admitted again.
#[tokio::test]
async fn a_crl_no_key_identifier_tells_apart_is_warned_about_as_either() {
    let s = Scene::new();
    let root = TestCa::new("partners root");
    let old_key = root.intermediate("issuing CA");
    let new_key = root.intermediate("issuing CA");
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let until = now + time::Duration::days(7);
    let (older, newer) = (
        now - time::Duration::hours(1),
        now - time::Duration::minutes(1),
    );
    let old_crl = openssl_crl(&s.path("old-key"), &old_key, newer, until, 7);
    let new_crl = openssl_crl(&s.path("new-key"), &new_key, older, until, 1);
    let secret = Secret::new(&s, &root.cert_pem, &root);
    let mut p = re_keyed(&s, &secret, (&old_key, &old_crl), (&new_key, &new_crl)).await;
    let warning = rollback_warning(&mut p).await;
    let message = warning["message"].as_str().unwrap();
    assert!(message.contains("or another key's"), "{warning}");
    assert_eq!(warning["issuer"], "CN=issuing CA", "{warning}");
    assert_dates_and_numbers(&warning, older, newer, Some(("1", "7")));
}
