//! Client auth per certificate entry, chosen by SNI, with 421 and one snapshot across a reload.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;

/// The world with two more pairs of the edge CA: `public` (public.example,
/// localhost) and `admin` (admin.example).
async fn mixed_world() -> World {
    let w = world().await;
    w.scene.pair(
        "public",
        &w.edge_ca.server_pair(&["public.example", "localhost"]),
    );
    w.scene
        .pair("admin", &w.edge_ca.server_pair(&["admin.example"]));
    w
}

/// A config with one listener `mixed` serving `public`, then `admin` with
/// `admin_auth` under its entry, and `listener_auth` as its client_auth.
fn mixed(w: &World, admin_auth: &str, listener_auth: &str) -> String {
    format!(
        r#"
runtime: {{ worker_threads: 1 }}
admin: {{ bind: 127.0.0.1:0 }}
certs:
  - {{ id: partners-ca, type: ca-bundle, ca_file: partners-ca.crt }}
listeners:
  - name: mixed
    bind: 127.0.0.1:0
    tls:
      certs:
        - {{ cert_file: public.crt, key_file: public.key }}
        - cert_file: admin.crt
          key_file: admin.key
{admin_auth}
      client_auth: {listener_auth}
    routes: [{{ upstream: app }}]
upstreams:
  - name: app
    servers: [https://{backend}]
    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}
"#,
        backend = w.backend.addr
    )
}

/// Client auth per certificate entry (crt-list style): the policy is chosen
/// by SNI; a `Host` belonging to another entry than the SNI selected gets
/// 421; a client without SNI gets the default (first) entry's policy.
#[tokio::test]
async fn per_name_client_auth_and_421() {
    let w = mixed_world().await;
    let ops = w.pki.client("ops", None, &[]);
    let intern = w.pki.client("intern", None, &[]);
    let path = w.scene.config(&mixed(
        &w,
        "          client_auth:
            mode: require_and_verify
            ca: { ref: partners-ca }
            allow: [{ cn: ops }]",
        "{ mode: none }",
    ));
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("mixed").await;
    let anon = cfg_for(&w, None);
    let ops_cfg = cfg_for(&w, Some(&ops));
    let intern_cfg = cfg_for(&w, Some(&intern));
    let cases: [(&str, &str, &str, &Arc<rustls::ClientConfig>, Outcome); 7] = [
        (
            "public, no cert",
            "public.example",
            "public.example",
            &anon,
            Outcome::Status(200),
        ),
        (
            "public SNI, admin Host",
            "public.example",
            "admin.example",
            &anon,
            Outcome::Status(421),
        ),
        (
            "public SNI, admin Host with a port",
            "public.example",
            "ADMIN.example:443",
            &ops_cfg,
            Outcome::Status(421),
        ),
        (
            "admin with an allowed cert",
            "admin.example",
            "admin.example",
            &ops_cfg,
            Outcome::Status(200),
        ),
        (
            "admin SNI, public Host",
            "admin.example",
            "public.example",
            &ops_cfg,
            Outcome::Status(421),
        ),
        (
            "admin with a cert no rule allows",
            "admin.example",
            "admin.example",
            &intern_cfg,
            DENIED,
        ),
        (
            "admin without a cert",
            "admin.example",
            "admin.example",
            &anon,
            Outcome::Refused(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired,
            )),
        ),
    ];
    for (what, sni, host, cfg, want) in cases {
        assert_eq!(
            outcome_for(addr, sni, host, (*cfg).clone(), "/").await,
            want,
            "{what}"
        );
    }
    // What the backend is told follows the entry: the admin entry verifies.
    let r = get(addr, "admin.example", ops_cfg.clone(), false, "/", &[])
        .await
        .unwrap();
    assert_eq!(r.json()["headers"]["x-client-cert-subject"], "CN=ops");
    let r = get(addr, "public.example", ops_cfg.clone(), false, "/", &[])
        .await
        .unwrap();
    assert!(r.json()["headers"].get("x-client-cert-subject").is_none());
    // No SNI: the default entry's policy (no client auth), its names only.
    let mut no_sni = (*client_config(&w.edge_ca.cert_pem, None, &[b"http/1.1"])).clone();
    no_sni.enable_sni = false;
    let no_sni = Arc::new(no_sni);
    assert_eq!(
        outcome_for(
            addr,
            "public.example",
            "public.example",
            no_sni.clone(),
            "/"
        )
        .await,
        Outcome::Status(200)
    );
    assert_eq!(
        outcome_for(addr, "public.example", "admin.example", no_sni, "/").await,
        Outcome::Status(421)
    );
}

/// A connection accepted before a reload and shaking hands after it gets
/// the new configuration as a whole: here the admin entry's own
/// `require_and_verify` became listener-wide, so a client without a
/// certificate is refused. Read in two steps, the old listener-wide config
/// (no client auth) met the new `per_name` (none) and served the admin
/// certificate to anyone.
#[tokio::test]
async fn reload_between_accept_and_client_hello_is_one_snapshot() {
    let w = mixed_world().await;
    let path = w.scene.config(&mixed(
        &w,
        "          client_auth: { mode: require_and_verify, ca: { ref: partners-ca } }",
        "{ mode: none }",
    ));
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("mixed").await;
    // Accepted now; the ClientHello follows the reload.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    w.scene.config(&mixed(
        &w,
        "",
        "{ mode: require_and_verify, ca: { ref: partners-ca } }",
    ));
    p.signal("HUP");
    p.wait_log("the reload", |v| v["message"] == "configuration reloaded")
        .await;
    let name = rustls::pki_types::ServerName::try_from("admin.example").unwrap();
    let got = async {
        let mut tls = tokio_rustls::TlsConnector::from(cfg_for(&w, None))
            .connect(name, tcp)
            .await?;
        tls.write_all(b"GET / HTTP/1.1\r\nhost: admin.example\r\nconnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    match within_deadline("the held connection's request", got).await {
        Ok(text) => panic!("served without a client certificate: {text:?}"),
        Err(e) => assert_eq!(
            tls_error(&e),
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)
        ),
    }
}
