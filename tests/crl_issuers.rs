//! A CA bundle's CRLs per issuer: the newest of an issuer's CRLs decides,
//! however they are listed, and a CA certificate of the bundle revoked by
//! its issuer's CRL is no trust anchor; one whose issuer gives no CRL it verifies is
//! warned about.

mod support;

use support::*;
use time::{Duration, OffsetDateTime};

/// A proxy with one listener per ca-bundle entry of `bundles` (`id`,
/// `ca_file`, `crl_files`), each named as its entry and requiring a
/// client certificate verified against it. Routes are absent: a client
/// let in gets 404, one refused gets no answer.
fn scene(s: &Scene, bundles: &[(&str, &str, &str)]) -> std::path::PathBuf {
    let edge = TestCa::new("edge");
    s.pair("edge", &edge.server_pair(&["localhost"]));
    write(&s.path("edge-ca.crt"), &edge.cert_pem);
    let certs: String = bundles
        .iter()
        .map(|(id, ca, crls)| {
            format!("\n  - {{ id: {id}, type: ca-bundle, ca_file: {ca}, crl_files: [{crls}] }}")
        })
        .collect();
    let listeners: String = bundles
        .iter()
        .map(|(id, ..)| {
            format!(
                r#"
  - name: {id}
    bind: 127.0.0.1:0
    tls:
      certs: [{{ ref: edge }}]
      client_auth: {{ mode: require_and_verify, ca: {{ ref: {id} }} }}"#
            )
        })
        .collect();
    s.config(&format!(
        "admin: {{ bind: 127.0.0.1:0 }}\ncerts:\n  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}{certs}\nlisteners:{listeners}\n"
    ))
}

/// Whether `client` is let in by the listener at `addr` (404: no routes).
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

/// At the listener `what` of `p`, `revoked` is refused and `kept`
/// admitted: the CRL that should decide did.
async fn decides(s: &Scene, p: &mut Proxy, what: &str, revoked: &TestPair, kept: &TestPair) {
    let addr = p.listener_addr(what).await;
    assert!(
        !admitted(s, addr, revoked).await,
        "{what}: a client the deciding CRL revokes got in"
    );
    assert!(
        admitted(s, addr, kept).await,
        "{what}: a client the deciding CRL does not revoke was refused"
    );
}

/// The first warning (`what`, in a timeout) about the entry `entry` whose
/// message `says`.
async fn warning(
    p: &mut Proxy,
    what: &str,
    entry: &str,
    says: impl Fn(&str) -> bool,
) -> serde_json::Value {
    p.wait_log(what, |v| v["level"] == "WARN" && about(v, entry, &says))
        .await
}

/// Two CRLs of clients.crt listed two ways: `older` then `newer` (each a
/// file name and its CRL) at the listener `two-files`, and `appended`
/// written as `appended.crl` at `one-file`. The config's path.
fn listed_two_ways(
    s: &Scene,
    older: (&str, &str),
    newer: (&str, &str),
    appended: &str,
) -> std::path::PathBuf {
    write(&s.path(older.0), older.1);
    write(&s.path(newer.0), newer.1);
    write(&s.path("appended.crl"), appended);
    let two_files = format!("{}, {}", older.0, newer.0);
    scene(
        s,
        &[
            ("two-files", "clients.crt", &two_files),
            ("one-file", "clients.crt", "appended.crl"),
        ],
    )
}

/// Whether the log line `v` is about the entry `entry` and its message `says`.
fn about(v: &serde_json::Value, entry: &str, says: impl Fn(&str) -> bool) -> bool {
    v["entry"] == entry && v["message"].as_str().is_some_and(says)
}

/// The CA `clients`, its certificate written as `clients.crt`; two of its
/// clients, alice and mallory; and the dates its CRLs are given from: now,
/// and a week on.
fn clients(s: &Scene) -> (TestCa, TestPair, TestPair, OffsetDateTime, OffsetDateTime) {
    let clients = TestCa::new("clients");
    write(&s.path("clients.crt"), &clients.cert_pem);
    let (alice, mallory) = (clients.client_pair("alice"), clients.client_pair("mallory"));
    let now = OffsetDateTime::now_utc();
    (clients, alice, mallory, now, now + Duration::days(7))
}

/// Two CRLs of one CA, the older listed first: in two files
/// (`crl_files: [old, new]`), or in one (`cat new.crl >> clients.crl`).
/// The newer decides: a client it alone revokes is refused, and one it
/// does not revoke is let in even where the older is past its nextUpdate.
/// The first listed decided (webpki takes the first CRL of the issuer):
/// the newly revoked client got in, or, behind a stale older CRL, every
/// client was refused as `crl_expired`.
#[tokio::test]
async fn the_newest_crl_of_an_issuer_decides() {
    let s = Scene::new();
    let (clients, alice, mallory, now, until) = clients(&s);
    let fresh_old = clients.crl_of(&[], now - Duration::days(2), now + Duration::days(1), 1);
    let stale_old = clients.crl_of(&[], now - Duration::days(9), now - Duration::days(2), 1);
    let new = clients.crl_of(&[mallory.serial], now - Duration::minutes(1), until, 2);
    let appended = format!("{stale_old}{new}");
    let cfg = listed_two_ways(&s, ("old.crl", &fresh_old), ("new.crl", &new), &appended);
    let mut p = Proxy::start(&cfg);
    let api = p.admin_addr().await;
    for listener in ["two-files", "one-file"] {
        decides(&s, &mut p, listener, &mallory, &alice).await;
    }
    // The older CRL is named as replaced, with its file.
    let old = s.path("old.crl").display().to_string();
    let note = p
        .wait_log("the superseded CRL", |v| {
            about(v, "two-files", |m| m.starts_with("CRL superseded"))
        })
        .await;
    assert_eq!(note["file"], old.as_str(), "{note}");
    assert_eq!(
        note["by_file"],
        s.path("new.crl").display().to_string().as_str()
    );
    // What is exported and warned about is the CRL in use.
    let metrics = admin(api, "GET", "/metrics", None, None, &[]).await.body;
    let gauge = format!(
        r#"hotproxy_crl_next_update_timestamp_seconds{{entry="one-file"}} {}"#,
        until.unix_timestamp()
    );
    assert!(metrics.contains(&gauge), "{gauge} not in:\n{metrics}");
    assert!(
        !p.logs()
            .iter()
            .any(|l| l.contains("CRL is past its nextUpdate")),
        "the superseded stale CRL was warned about as in use"
    );
}

/// Two CRLs of one CA whose authority key identifiers differ (one tool
/// writes none, as `openssl ca -gencrl` by default, another one: easy-rsa,
/// step-ca, Vault; rcgen always writes one, so a different one stands in),
/// the older listed first. webpki finds an issuer's CRL by name (and
/// issuing distribution point) alone, so the newer decides: a client it
/// alone revokes is refused. Grouped by key identifier too, both were
/// kept and the older, first, decided: the client got in.
#[tokio::test]
async fn the_newest_crl_decides_whatever_its_key_identifier() {
    let s = Scene::new();
    let (clients, alice, mallory, now, until) = clients(&s);
    let old = clients.crl_of(&[], now - Duration::days(2), until, 1);
    let new = clients.crl_keyed(
        &[mallory.serial],
        now - Duration::minutes(1),
        until,
        2,
        rcgen::KeyIdMethod::PreSpecified(vec![0x5a; 20]),
    );
    write(&s.path("clients.crl"), &format!("{old}{new}"));
    let cfg = scene(&s, &[("keyed", "clients.crt", "clients.crl")]);
    let mut p = Proxy::start(&cfg);
    decides(&s, &mut p, "keyed", &mallory, &alice).await;
}

/// A full CRL of a CA (no issuing distribution point) and a newer one of
/// one scope (end-entity certificates, an issuing distribution point), the
/// full one listed first, in two files or appended in one. They are of two
/// scopes, so both are used; for a client certificate both cover, the
/// newer decides: a client it alone revokes is refused, one it does not
/// is let in. Both were kept in file order and webpki reads the first CRL
/// that covers the certificate: the older full one let the client in.
#[tokio::test]
async fn a_newer_crl_of_one_scope_decides_over_an_older_full_one() {
    let s = Scene::new();
    let (clients, alice, mallory, now, until) = clients(&s);
    let full = clients.crl_of(&[], now - Duration::days(2), until, 1);
    let uri = "http://crl.example/clients-users.crl";
    let scoped = clients.crl_scoped(&[mallory.serial], now - Duration::minutes(1), until, 2, uri);
    let appended = format!("{full}{scoped}");
    let cfg = listed_two_ways(&s, ("full.crl", &full), ("scoped.crl", &scoped), &appended);
    let mut p = Proxy::start(&cfg);
    let api = p.admin_addr().await;
    for listener in ["two-files", "one-file"] {
        decides(&s, &mut p, listener, &mallory, &alice).await;
        // Both are in use: neither is superseded.
        let entry = admin(
            api,
            "GET",
            &format!("/api/v1/certs/{listener}"),
            None,
            None,
            &[],
        )
        .await
        .json();
        assert_eq!(entry["crl_count"], 2, "{entry}");
    }
}

/// A key rollover under one CA name: both CA certificates in the bundle,
/// each key's CRL in its own file. The verifier finds a certificate's CRL
/// by issuer name, so one CRL serves the clients of both keys: the newer
/// (the new key's), and the old key's clients are refused (its signature
/// is not their issuer's). The old key's CRL is warned about, naming its
/// file, its issuer and the CRL used. It was an info line, as for a CRL
/// the same key replaced, while the old key's clients were refused.
#[tokio::test]
async fn a_crl_of_another_key_of_the_issuer_set_aside_is_warned_about() {
    let s = Scene::new();
    let old_key = TestCa::new("clients");
    let new_key = TestCa::new("clients");
    let now = OffsetDateTime::now_utc();
    let until = now + Duration::days(7);
    write(
        &s.path("clients.crt"),
        &format!("{}{}", old_key.cert_pem, new_key.cert_pem),
    );
    write(
        &s.path("old-key.crl"),
        &old_key.crl_of(&[], now - Duration::days(2), until, 7),
    );
    write(
        &s.path("new-key.crl"),
        &new_key.crl_of(&[], now - Duration::minutes(1), until, 1),
    );
    let cfg = scene(
        &s,
        &[("rollover", "clients.crt", "old-key.crl, new-key.crl")],
    );
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("rollover").await;
    assert!(admitted(&s, addr, &new_key.client_pair("new")).await);
    assert!(
        !admitted(&s, addr, &old_key.client_pair("old")).await,
        "a client of the old key got in: its CRL is used after all"
    );
    p.wait_log("the old key's client refused", |v| {
        v["message"] == "TLS handshake failed" && v["reason"] == "crl_invalid"
    })
    .await;
    let warning = p
        .wait_log("the other key's CRL warned about", |v| {
            v["entry"] == "rollover"
                && v["level"] == "WARN"
                && v["file"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("old-key.crl"))
        })
        .await;
    assert_eq!(warning["issuer"], "CN=clients", "{warning}");
    assert_eq!(
        warning["by_file"],
        s.path("new-key.crl").display().to_string().as_str(),
        "{warning}"
    );
    let message = warning["message"].as_str().unwrap();
    assert!(message.contains("another key"), "{message}");
    assert!(!warning.to_string().contains("-----BEGIN"), "{warning}");
}

/// A CRL of a CA, then a newer one under its name that no CA of the bundle
/// signed (forged, corrupt, fetched over plain HTTP), or one of the CA
/// whose thisUpdate is in the future: the first decides, as OpenSSL ranks
/// CRLs. A client it revokes is refused and one it does not is let in;
/// the other is warned about. The newer decided: behind the forged one
/// every client of the CA was refused (its signature fails), behind the
/// future-dated one the revoked client got in.
#[tokio::test]
async fn a_crl_no_ca_of_the_bundle_signed_or_not_yet_issued_does_not_decide() {
    let s = Scene::new();
    let (clients, alice, mallory, now, until) = clients(&s);
    let imposter = TestCa::new("clients");
    let good = clients.crl_of(&[mallory.serial], now - Duration::hours(1), until, 1);
    let forged = imposter.crl_of(&[], now - Duration::minutes(1), until, 2);
    let future = clients.crl_of(&[], now + Duration::days(1), until, 3);
    write(&s.path("good.crl"), &good);
    write(&s.path("forged.crl"), &forged);
    write(&s.path("future.crl"), &future);
    let cfg = scene(
        &s,
        &[
            ("forged", "clients.crt", "good.crl, forged.crl"),
            ("future", "clients.crt", "good.crl, future.crl"),
        ],
    );
    let mut p = Proxy::start(&cfg);
    for listener in ["forged", "future"] {
        decides(&s, &mut p, listener, &mallory, &alice).await;
        let file = s.path(&format!("{listener}.crl")).display().to_string();
        let warning = warning(&mut p, "the CRL not used", listener, |m| {
            m.starts_with("CRL not used")
        })
        .await;
        assert_eq!(warning["file"], file.as_str(), "{warning}");
    }
}

/// A CRL of a CA dated a few seconds ahead, newer than the one in use:
/// set aside at load, and taken once its thisUpdate comes, with no change
/// to the files: a client it revokes is refused from then on, one it does
/// not is still let in, and an info line says the CRLs were chosen again.
/// It was set aside until the files changed: the revoked client kept
/// getting in. A change of the files after that choice applies too: a CRL
/// revoking the other client refuses it (and a third gets in). The listener's
/// snapshot key was adjusted by the files' hash alone, not with the choice
/// counted in: the reloader's thread panicked (debug builds) and nothing
/// reloaded again.
///
/// Whether the CRL was still ahead when the proxy read it is read back
/// (the nextUpdate gauge names the CRL in use, each of its own): when the
/// read came after its thisUpdate (a slow start), it is written again,
/// dated further ahead, so that a slow machine takes longer, never fails.
#[tokio::test]
async fn a_crl_set_aside_as_not_issued_yet_is_used_once_it_is() {
    let s = Scene::new();
    let (clients, alice, mallory, now, until) = clients(&s);
    write(
        &s.path("current.crl"),
        &clients.crl_of(&[], now - Duration::hours(1), until, 1),
    );
    let cfg = scene(&s, &[("ahead", "clients.crt", "current.crl, next.crl")]);
    let mut proxy = None;
    let mut set_aside = None;
    for attempt in 0..4 {
        // Whole seconds, as a CRL holds its dates; each its own nextUpdate.
        let lead = Duration::seconds(5 << attempt);
        let issued = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + lead;
        let its_until = until + Duration::days(attempt + 1);
        let next = clients.crl_of(&[mallory.serial], issued, its_until, 2);
        let p = match proxy.as_mut() {
            None => {
                write(&s.path("next.crl"), &next);
                proxy.insert(Proxy::start(&cfg))
            }
            Some(p) => {
                support::writers::mv_over(&s.path("next.crl"), &next);
                p
            }
        };
        let api = p.admin_addr().await;
        let gauge = |t: OffsetDateTime| {
            format!(
                r#"hotproxy_crl_next_update_timestamp_seconds{{entry="ahead"}} {}"#,
                t.unix_timestamp()
            )
        };
        let (aside, taken) = (gauge(until), gauge(its_until));
        // Read when the gauge names one of the two.
        let deadline = tokio::time::Instant::now() + CLIENT_DEADLINE;
        let was_ahead = loop {
            let metrics = metrics_text(api).await;
            if metrics.lines().any(|l| l == aside) {
                break true;
            }
            if metrics.lines().any(|l| l == taken) {
                break false;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "next.crl of attempt {attempt} never read:\n{metrics}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        if was_ahead {
            set_aside = Some(issued);
            break;
        }
    }
    let (Some(mut p), Some(issued)) = (proxy, set_aside) else {
        panic!("next.crl was never read before its thisUpdate, 40 s ahead at last");
    };
    let addr = p.listener_addr("ahead").await;
    // Set aside as not issued yet.
    let warning = p
        .wait_log("the CRL set aside", |v| {
            about(v, "ahead", |m| m.starts_with("CRL not used"))
        })
        .await;
    assert!(
        warning["why"]
            .as_str()
            .is_some_and(|w| w.contains("in the future")),
        "{warning}"
    );
    // Nothing to await but the clock: its thisUpdate.
    let ahead = issued - OffsetDateTime::now_utc();
    tokio::time::sleep(ahead.try_into().unwrap_or_default()).await;
    wait_until(
        CLIENT_DEADLINE,
        "the client the CRL now issued revokes refused",
        || async { !admitted(&s, addr, &mallory).await },
    )
    .await;
    assert!(admitted(&s, addr, &alice).await);
    p.wait_log("the CRLs chosen again", |v| {
        v["level"] == "INFO" && about(v, "ahead", |m| m.contains("chosen again"))
    })
    .await;
    // The files change after that choice: a newer CRL revokes alice too.
    let later = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    support::writers::mv_over(
        &s.path("next.crl"),
        &clients.crl_of(&[mallory.serial, alice.serial], later, until, 3),
    );
    wait_until(
        CLIENT_DEADLINE,
        "alice refused once a CRL written after the choice revokes her",
        || async { !admitted(&s, addr, &alice).await },
    )
    .await;
    assert!(!admitted(&s, addr, &mallory).await);
    // Refused by that CRL, not by a proxy gone: one it does not revoke gets in.
    let bob = clients.client_pair("bob");
    assert!(admitted(&s, addr, &bob).await);
}

/// `ca_file` holding the root and its issuing CAs ("ca-chain.pem", as
/// Vault and step-ca hand it out), with the root's CRL revoking one of
/// them: that CA's clients are refused, with or without their chain, and
/// the other's are let in. Every certificate of the bundle was a trust
/// anchor, whose own revocation webpki never checks: the revoked CA's
/// clients got in. The CA taken out is named in a warning.
#[tokio::test]
async fn an_issuing_ca_revoked_by_its_root_is_no_trust_anchor() {
    let s = Scene::new();
    let root = TestCa::new("partners root");
    let revoked = root.intermediate("issuing CA 1");
    let kept = root.intermediate("issuing CA 2");
    write(
        &s.path("ca-chain.pem"),
        &format!("{}{}{}", root.cert_pem, revoked.cert_pem, kept.cert_pem),
    );
    write(&s.path("root.crl"), &root.crl_of_serials(&[revoked.serial]));
    write(&s.path("issuing-1.crl"), &revoked.crl(&[]));
    write(&s.path("issuing-2.crl"), &kept.crl(&[]));
    let cfg = scene(
        &s,
        &[(
            "partners",
            "ca-chain.pem",
            "root.crl, issuing-1.crl, issuing-2.crl",
        )],
    );
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    let with_chain = revoked.client_with_chain("chained");
    let leaf_only = revoked.client_pair("leaf only");
    assert!(
        !admitted(&s, addr, &with_chain).await,
        "a client of the revoked issuing CA got in with its chain"
    );
    assert!(
        !admitted(&s, addr, &leaf_only).await,
        "a client of the revoked issuing CA got in without its chain"
    );
    // Refused as revoked (its chain checked against the root's CRL), and
    // as of an unknown CA without its chain.
    for reason in ["revoked", "unknown_ca"] {
        p.wait_log(reason, |v| {
            v["message"] == "TLS handshake failed" && v["reason"] == reason
        })
        .await;
    }
    assert!(admitted(&s, addr, &kept.client_with_chain("good")).await);
    assert!(admitted(&s, addr, &kept.client_pair("good, leaf only")).await);
    let warning = warning(&mut p, "the revoked CA's warning", "partners", |m| {
        m.starts_with("CA certificate is revoked")
    })
    .await;
    assert_eq!(warning["subject"], "CN=issuing CA 1", "{warning}");
    assert_eq!(
        warning["crl_file"],
        s.path("root.crl").display().to_string().as_str()
    );
}

/// An issuing CA in the bundle with its root, where no CRL of the root is
/// given: its own revocation cannot be checked (it is a trust anchor), and
/// a warning says so, naming the entry and the CA, when it loads and in
/// `check`; a bundle holding the root's CRL, or the root alone, gets none.
#[tokio::test]
async fn an_issuing_ca_whose_revocation_is_unchecked_is_warned_about() {
    let s = Scene::new();
    let root = TestCa::new("partners root");
    let issuing = root.intermediate("issuing CA");
    write(
        &s.path("ca-chain.pem"),
        &format!("{}{}", root.cert_pem, issuing.cert_pem),
    );
    write(&s.path("root.crt"), &root.cert_pem);
    write(&s.path("root.crl"), &root.crl(&[]));
    write(&s.path("issuing.crl"), &issuing.crl(&[]));
    let cfg = scene(
        &s,
        &[
            ("unchecked", "ca-chain.pem", "issuing.crl"),
            ("checked", "ca-chain.pem", "root.crl, issuing.crl"),
            ("roots-only", "root.crt", "root.crl, issuing.crl"),
        ],
    );
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("unchecked").await;
    // Still admitted: the warning is about what is not checked.
    assert!(admitted(&s, addr, &issuing.client_with_chain("alice")).await);
    let warning = warning(&mut p, "the unchecked CA's warning", "unchecked", |m| {
        m.contains("its revocation is not checked")
    })
    .await;
    assert_eq!(warning["subject"], "CN=issuing CA", "{warning}");
    assert_eq!(
        warning["file"],
        s.path("ca-chain.pem").display().to_string().as_str()
    );
    p.listener_addr("checked").await;
    p.listener_addr("roots-only").await;
    let others = p
        .logs()
        .into_iter()
        .filter(|l| l.contains("its revocation is not checked"))
        .filter(|l| !l.contains("\"entry\":\"unchecked\""))
        .collect::<Vec<_>>();
    assert!(others.is_empty(), "{others:?}");
    // `check` lists it among its warnings, for that entry alone.
    let (code, stdout, stderr) = run_cli(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let listed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("its revocation is not checked"))
        .collect();
    assert_eq!(listed.len(), 1, "{stdout}");
    assert!(
        listed[0].starts_with("warning: entry unchecked: ")
            && listed[0].contains("(CN=issuing CA)"),
        "{stdout}"
    );
}

/// The same with a CRL under the root's name that the root did not sign:
/// the warning, logged and in `check`, says no CRL of the root is given
/// that its key verifies, not that none is (one of that name is there). It said "whose
/// CRL is not given", false for the one who gave it.
#[tokio::test]
async fn an_unchecked_ca_whose_issuers_crl_is_unusable_is_warned_about_truly() {
    let s = Scene::new();
    let root = TestCa::new("partners root");
    let imposter = TestCa::new("partners root");
    let issuing = root.intermediate("issuing CA");
    write(
        &s.path("ca-chain.pem"),
        &format!("{}{}", root.cert_pem, issuing.cert_pem),
    );
    write(&s.path("root.crl"), &imposter.crl(&[]));
    write(&s.path("issuing.crl"), &issuing.crl(&[]));
    let cfg = scene(&s, &[("unusable", "ca-chain.pem", "root.crl, issuing.crl")]);
    let mut p = Proxy::start(&cfg);
    let warning = p
        .wait_log("the unchecked CA's warning", |v| {
            about(v, "unusable", |m| {
                m.contains("its revocation is not checked")
            })
        })
        .await;
    let wording = "no CRL of that issuer is given that its key verifies";
    let message = warning["message"].as_str().unwrap();
    assert!(message.contains(wording), "{message}");
    let (code, stdout, stderr) = run_cli(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.contains("its revocation is not checked"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains(wording), "{line}");
}

/// A client that sends its issuing CA again and again (the same
/// certificate 60 times, some 30 KiB of the 64 a handshake allows) is
/// verified as with one copy: a client the issuing CA's CRL revokes is
/// refused as `revoked`, another let in. webpki tried a path through each
/// copy, each checking the leaf's signature and the CRL's (hashing the
/// whole list), until its budget of 100 signature checks ran out: the
/// revoked client was refused as `bad_client_cert`, after some 50 hashes
/// of the CRL in one handshake.
#[tokio::test]
async fn an_issuing_ca_sent_again_and_again_is_verified_once() {
    let s = Scene::new();
    let root = TestCa::new("partners root");
    let issuing = root.intermediate("issuing CA");
    write(&s.path("root.crt"), &root.cert_pem);
    write(&s.path("root.crl"), &root.crl(&[]));
    let (good, mallory) = (issuing.client_pair("good"), issuing.client_pair("mallory"));
    write(&s.path("issuing.crl"), &issuing.crl(&[&mallory]));
    let cfg = scene(&s, &[("partners", "root.crt", "root.crl, issuing.crl")]);
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    let repeated = |mut pair: TestPair| {
        for _ in 0..60 {
            pair.cert_pem.push_str(&issuing.cert_pem);
        }
        pair
    };
    assert!(
        admitted(&s, addr, &repeated(good)).await,
        "a client not revoked was refused"
    );
    assert!(!admitted(&s, addr, &repeated(mallory)).await);
    // The one handshake refused: mallory's.
    let refusal = p
        .wait_log("the revoked client's refusal", |v| {
            v["message"] == "TLS handshake failed" && v["reason"] != "client_closed"
        })
        .await;
    assert_eq!(refusal["reason"], "revoked", "{refusal}");
}
