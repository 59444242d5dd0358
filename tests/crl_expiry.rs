//! CRLs past their nextUpdate: refused by default (a stale list may miss
//! newer revocations), accepted only with `client_auth.allow_expired_crl`,
//! warned about by `check` a week ahead, and exported as a metric; a CRL
//! that cannot be used at all is warned about by the entry that holds it.

mod support;

use std::time::Duration;

use support::*;
use time::OffsetDateTime;

/// A proxy with two listeners verifying clients against `clients` (a CA
/// with the given CRL): `strict` (the default) and `lenient`
/// (`allow_expired_crl: true`). Routes are absent: a request that passes
/// the handshake gets 404, one that does not gets no answer.
fn scene(crl: &str, clients: &TestCa) -> (Scene, std::path::PathBuf) {
    scene_with(crl, clients, "clients.crl", "clients.crl")
}

/// [`scene`], its CRL at `crl_file` (relative to the scene), written in
/// the configuration as `written` (YAML, double-quoted).
fn scene_with(
    crl: &str,
    clients: &TestCa,
    crl_file: &str,
    written: &str,
) -> (Scene, std::path::PathBuf) {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    write(&s.path("ca.crt"), &ca.cert_pem);
    write(&s.path("clients.crt"), &clients.cert_pem);
    write(&s.path(crl_file), crl);
    let cfg = s.config(&format!(
        r#"
admin: {{ bind: 127.0.0.1:0 }}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
  - {{ id: clients, type: ca-bundle, ca_file: clients.crt, crl_files: ["{written}"] }}
listeners:
  - name: strict
    bind: 127.0.0.1:0
    tls:
      certs: [{{ ref: edge }}]
      client_auth: {{ mode: require_and_verify, ca: {{ ref: clients }} }}
  - name: lenient
    bind: 127.0.0.1:0
    tls:
      certs: [{{ ref: edge }}]
      client_auth: {{ mode: require_and_verify, ca: {{ ref: clients }}, allow_expired_crl: true }}
"#,
    ));
    (s, cfg)
}

/// The status of one GET with `client`'s certificate, or the error when
/// the handshake was refused.
async fn status(addr: std::net::SocketAddr, ca: &str, client: &TestPair) -> std::io::Result<u16> {
    let cfg = client_config(ca, Some(client), &[b"http/1.1"]);
    get(addr, "localhost", cfg, false, "/", &[])
        .await
        .map(|r| r.status)
}

#[tokio::test]
async fn expired_crl_refuses_clients_unless_allowed() {
    let clients = TestCa::new("clients");
    let alice = clients.client_pair("alice");
    let revoked = clients.client_pair("mallory");
    let next_update = OffsetDateTime::now_utc() - time::Duration::hours(1);
    let (s, cfg) = scene(&clients.crl_until(&[&revoked], next_update), &clients);
    let ca = std::fs::read_to_string(s.path("ca.crt")).unwrap();
    let mut p = Proxy::start(&cfg);
    let strict = p.listener_addr("strict").await;
    let lenient = p.listener_addr("lenient").await;
    let api = p.admin_addr().await;
    let warning = p
        .wait_log("stale CRL warning", |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("CRL is past its nextUpdate"))
                && v["entry"] == "clients"
        })
        .await;
    // Which of up to 64 CRL files, and whose: what to renew.
    let file = s.path("clients.crl").display().to_string();
    assert_eq!(warning["file"], file.as_str(), "{warning}");
    assert_eq!(warning["issuer"], "CN=clients", "{warning}");
    assert_eq!(
        warning["next_update_unix"],
        next_update.unix_timestamp(),
        "{warning}"
    );
    // Strict: an unrevoked client is refused, logged and counted.
    assert!(
        status(strict, &ca, &alice).await.is_err(),
        "a stale CRL was trusted"
    );
    p.wait_log("handshake refusal", |v| {
        v["message"] == "TLS handshake failed"
            && v["listener"] == "strict"
            && v["reason"] == "crl_expired"
    })
    .await;
    // Lenient: the operator opted out; revocations listed still count.
    assert_eq!(status(lenient, &ca, &alice).await.unwrap(), 404);
    assert!(status(lenient, &ca, &revoked).await.is_err());
    let metrics = admin(api, "GET", "/metrics", None, None, &[]).await.body;
    assert!(
        metrics
            .contains(r#"hotproxy_tls_handshakes_total{listener="strict",result="crl_expired"}"#),
        "{metrics}"
    );
    let gauge = format!(
        r#"hotproxy_crl_next_update_timestamp_seconds{{entry="clients"}} {}"#,
        next_update.unix_timestamp()
    );
    assert!(metrics.contains(&gauge), "{gauge} not in:\n{metrics}");

    // A fresh CRL in place (kubelet-style swap): strict accepts again, and
    // the gauge follows.
    let fresh_until = OffsetDateTime::now_utc() + time::Duration::days(2);
    support::writers::mv_over(
        &s.path("clients.crl"),
        &clients.crl_until(&[&revoked], fresh_until),
    );
    let admin_reload = admin(api, "POST", "/api/v1/certs/clients/reload", None, None, &[]).await;
    assert_eq!(admin_reload.status, 200, "{}", admin_reload.body);
    wait_until(
        Duration::from_secs(20),
        "strict accepts with a fresh CRL",
        || async { status(strict, &ca, &alice).await.is_ok_and(|s| s == 404) },
    )
    .await;
    assert!(status(strict, &ca, &revoked).await.is_err());
    let metrics = admin(api, "GET", "/metrics", None, None, &[]).await.body;
    let gauge = format!(
        r#"hotproxy_crl_next_update_timestamp_seconds{{entry="clients"}} {}"#,
        fresh_until.unix_timestamp()
    );
    assert!(metrics.contains(&gauge), "{gauge} not in:\n{metrics}");
}

/// `check` warns about a CRL that expired or expires within 7 days, says
/// what it does to verifying listeners, and stays quiet a month ahead. A
/// warning is not a failure: the configuration is valid.
#[test]
fn check_warns_about_stale_and_soon_stale_crls() {
    let clients = TestCa::new("clients");
    let now = OffsetDateTime::now_utc();
    for (next_update, want) in [
        (now - time::Duration::days(1), Some("expired on")),
        (now + time::Duration::days(3), Some("expires on")),
        (now + time::Duration::days(30), None),
    ] {
        let (_s, cfg) = scene(&clients.crl_until(&[], next_update), &clients);
        let (code, stdout, stderr) = run_cli(&["check", "--config", cfg.to_str().unwrap()]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let warning = stdout
            .lines()
            .find(|l| l.starts_with("warning: entry clients: the CRL"));
        match want {
            Some(w) => {
                let line = warning.unwrap_or_else(|| panic!("no CRL warning:\n{stdout}"));
                assert!(line.contains(w), "{line}");
                assert!(line.contains("nextUpdate"), "{line}");
            }
            None => assert!(warning.is_none(), "{stdout}"),
        }
        // The table shows the CRL's nextUpdate like a not-after.
        let row = stdout
            .lines()
            .find(|l| l.starts_with("clients") && l.contains(" crl "))
            .unwrap_or_else(|| panic!("no CRL row:\n{stdout}"));
        let date = format!(
            "{:04}-{:02}-{:02}",
            next_update.year(),
            next_update.month() as u8,
            next_update.day()
        );
        assert!(row.contains(&date), "{row} lacks {date}");
    }
}

/// A CRL webpki cannot use (here: the clients CA's name, another key's
/// signature) refuses every verified client, and the warning names what
/// the operator must fix, the ca-bundle entry and its CRL file, besides
/// the listener: it named the listener alone, whose configuration holds
/// nothing wrong.
#[tokio::test]
async fn an_unusable_crl_is_warned_about_by_its_ca_entry_and_file() {
    let clients = TestCa::new("clients");
    let imposter = TestCa::new("clients");
    let alice = clients.client_pair("alice");
    let (s, cfg) = scene(&imposter.crl(&[]), &clients);
    let ca = std::fs::read_to_string(s.path("ca.crt")).unwrap();
    let crl_path = s.path("clients.crl").display().to_string();
    let mut p = Proxy::start(&cfg);
    let strict = p.listener_addr("strict").await;
    let api = p.admin_addr().await;
    assert!(
        status(strict, &ca, &alice).await.is_err(),
        "a client was let in past an unusable CRL"
    );
    let warning = p
        .wait_log("the unusable CRL's warning", |v| {
            v["reason"] == "crl_invalid" && v["listener"] == "strict" && v["level"] == "WARN"
        })
        .await;
    assert_eq!(warning["ca_entry"], "clients", "{warning}");
    let files = warning["crl_files"].as_str().unwrap_or_default();
    assert!(files.contains(&crl_path), "{warning}");
    let message = warning["message"].as_str().unwrap_or_default();
    assert!(message.contains("\"clients\""), "{warning}");
    // The verifier warns during the handshake; the connection's task
    // counts the failed handshake after it, a moment later under load.
    wait_until(
        CLIENT_DEADLINE,
        "the handshake counted as crl_invalid",
        || async {
            admin(api, "GET", "/metrics", None, None, &[])
                .await
                .body
                .contains(
                    r#"hotproxy_tls_handshakes_total{listener="strict",result="crl_invalid"}"#,
                )
        },
    )
    .await;
}

/// The unusable CRL's warning names its file as every other line names
/// a path (`shown_path`): its `crl_files` field was written with
/// `display()`, an ESC in the file's directory raw (in the text log, on
/// the operator's terminal).
#[tokio::test]
async fn an_unusable_crls_file_is_named_escaped() {
    let clients = TestCa::new("clients");
    let imposter = TestCa::new("clients");
    let alice = clients.client_pair("alice");
    let (s, cfg) = scene_with(
        &imposter.crl(&[]),
        &clients,
        "c\x1b[2J/clients.crl",
        "c\\e[2J/clients.crl",
    );
    let ca = std::fs::read_to_string(s.path("ca.crt")).unwrap();
    let mut p = Proxy::start(&cfg);
    let strict = p.listener_addr("strict").await;
    assert!(status(strict, &ca, &alice).await.is_err());
    let warning = p
        .wait_log("the unusable CRL's warning", |v| {
            v["reason"] == "crl_invalid" && v["listener"] == "strict" && v["level"] == "WARN"
        })
        .await;
    let files = warning["crl_files"].as_str().unwrap_or_default();
    let shown = format!("{}c\\u{{1b}}[2J/clients.crl", s.path("").display());
    assert_eq!(files, shown, "{warning}");
}

/// A CRL's issuer is escaped as subjects are wherever `check` shows it
/// (the table's CRL row, the nextUpdate warning): an issuer whose CN holds
/// a terminal escape, a bell and a newline neither writes them to the
/// operator's terminal nor forges a line of output. It was printed as
/// x509-parser wrote it, control bytes and all.
#[test]
fn check_escapes_a_crl_issuer() {
    let cn = "clients\u{1b}]0;owned\u{7}\nwarning: entry forged";
    let clients = TestCa::new(cn);
    let soon = OffsetDateTime::now_utc() + time::Duration::days(3);
    let (_s, cfg) = scene(&clients.crl_until(&[], soon), &clients);
    let (code, stdout, stderr) = run_cli(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for (name, out) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !out.bytes().any(|b| b.is_ascii_control() && b != b'\n'),
            "a raw control byte on {name}:\n{out:?}"
        );
        assert!(
            !out.lines().any(|l| l.starts_with("warning: entry forged")),
            "a forged line on {name}:\n{out}"
        );
    }
    let escaped = r"CN=clients\1B]0\;owned\07\0Awarning: entry forged";
    let row = stdout
        .lines()
        .find(|l| l.starts_with("clients") && l.contains(" crl "))
        .unwrap_or_else(|| panic!("no CRL row:\n{stdout}"));
    assert!(row.contains(&format!("CRL of {escaped}")), "{row}");
    let warning = stdout
        .lines()
        .find(|l| l.starts_with("warning: entry clients: the CRL"))
        .unwrap_or_else(|| panic!("no CRL warning:\n{stdout}"));
    assert!(warning.contains(escaped), "{warning}");
}
