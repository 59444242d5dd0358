//! The upstream identity: SPIFFE verify_names and upstream CRLs, revoked and unusable.

use crate::common::*;
use crate::support::*;

/// A URI-only SVID backend is reachable with `verify_names` (exact ID or
/// trust domain), refused with a wrong ID (502, logged with both sides),
/// and refused without `verify_names`. No SNI is sent to an IP without
/// `server_name`; `server_name` is the SNI when given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spiffe_verify_names() {
    let mut w = world().await;
    let tcp = || tcp_from("127.0.0.1", w.public);

    let (status, _, body) = get_over(tcp().await, &w, "/api/x", &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen(&body)["backend"], "svid");
    assert_eq!(
        seen(&body)["sni"],
        serde_json::Value::Null,
        "SNI sent to an IP"
    );

    let (status, _, body) = get_over(tcp().await, &w, "/sni", &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen(&body)["sni"], "app.prod.svc");

    let (status, _, body) = get_over(tcp().await, &w, "/td", &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");

    let (status, _, body) = get_over(tcp().await, &w, "/wrong", &[]).await.unwrap();
    assert_eq!(status, 502, "{body}");
    let log = w
        .proxy
        .wait_log("wrong SPIFFE ID logged", |v| {
            v["message"] == "upstream request failed" && v["upstream"] == "wrong-id"
        })
        .await;
    let error = log["error"].as_str().unwrap();
    assert_eq!(log["reason"], "name_mismatch", "{log}");
    assert!(
        error.contains(&format!("URI:\"{SPIFFE_ID}\"")),
        "presented: {error}"
    );
    assert!(
        error.contains("spiffe://cluster.local/ns/prod/sa/other")
            && error.contains("spiffe://elsewhere/**"),
        "expected: {error}"
    );

    let (status, _, _) = get_over(tcp().await, &w, "/by-ip", &[]).await.unwrap();
    assert_eq!(status, 502);
}

/// A CRL in an upstream's `tls.ca` is enforced, as Envoy's `crl` and
/// nginx's `proxy_ssl_crl` are: a backend whose certificate it revokes is
/// refused (with `verify_names` too), and so is one whose issuer has no
/// CRL among them (an unknown status, as on the listener side); a backend
/// it does not revoke is reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_crl_refuses_a_revoked_backend() {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let mesh = TestCa::new("mesh CA");
    let stranger = TestCa::new("another CA");
    scene.pair("a", &ca.server_pair(&["localhost"]));
    let revoked_pair = mesh.server_pair(&["backend.local"]);
    write(&scene.path("mesh-ca.crt"), &mesh.cert_pem);
    write(&scene.path("revokes.crl"), &mesh.crl(&[&revoked_pair]));
    write(&scene.path("stranger.crl"), &stranger.crl(&[]));
    let revoked = Backend::start("revoked", &revoked_pair, None).await;
    let good = Backend::start("good", &mesh.server_pair(&["backend.local"]), None).await;
    let upstreams = [
        crl_upstream("revoked", &revoked, "revokes.crl", ""),
        crl_upstream(
            "revoked-names",
            &revoked,
            "revokes.crl",
            "\n      verify_names: [backend.local]",
        ),
        crl_upstream("good", &good, "revokes.crl", ""),
        crl_upstream(
            "good-names",
            &good,
            "revokes.crl",
            "\n      verify_names: [backend.local]",
        ),
        crl_upstream("unknown", &good, "stranger.crl", ""),
        crl_upstream(
            "unknown-names",
            &good,
            "stranger.crl",
            "\n      verify_names: [backend.local]",
        ),
    ]
    .concat();
    let names = [
        "revoked",
        "revoked-names",
        "good",
        "good-names",
        "unknown",
        "unknown-names",
    ];
    let mut p = start_routing_to(&scene, &names, &upstreams);
    let addr = p.listener_addr("public").await;
    let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    for (upstream, status, error) in [
        ("revoked", 502, "revoked"),
        ("revoked-names", 502, "revoked"),
        ("good", 200, ""),
        ("good-names", 200, ""),
        ("unknown", 502, "revocation status is unknown"),
        ("unknown-names", 502, "revocation status is unknown"),
    ] {
        let path = format!("/{upstream}/x");
        let reply = get(addr, "localhost", client.clone(), false, &path, &[])
            .await
            .unwrap();
        assert_eq!(reply.status, status, "{upstream}: {}", reply.body);
        if status == 502 {
            let log = refusal_logged(&mut p, upstream).await;
            let said = log["error"].as_str().unwrap_or_default();
            assert!(said.contains(error), "{upstream}: {log}");
        }
    }
}

/// Two CRLs of the upstream's CA, the older listed first: the newer
/// decides, with and without `verify_names`. A backend revoked only by
/// the newer was reached: webpki takes the first CRL of the issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_upstream_crl_decides() {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let mesh = TestCa::new("mesh CA");
    scene.pair("a", &ca.server_pair(&["localhost"]));
    let revoked_pair = mesh.server_pair(&["backend.local"]);
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    write(&scene.path("mesh-ca.crt"), &mesh.cert_pem);
    write(
        &scene.path("old.crl"),
        &mesh.crl_of(&[], now - 2 * day, now + day, 1),
    );
    let new = mesh.crl_of(
        &[revoked_pair.serial],
        now - time::Duration::minutes(1),
        now + day,
        2,
    );
    write(&scene.path("new.crl"), &new);
    let revoked = Backend::start("revoked", &revoked_pair, None).await;
    let good = Backend::start("good", &mesh.server_pair(&["backend.local"]), None).await;
    revoked_502_good_200(&scene, &ca, &revoked, &good, "old.crl, new.crl", None).await;
}

/// The upstream CA's older full CRL revokes a backend; its newer CRL of
/// one scope (a partition of its end-entity certificates) does not list
/// it. The backend's certificate names no CRL distribution point, so it is
/// in no partition (RFC 5280 §6.3.3; OpenSSL reads the full CRL for it,
/// nginx's `proxy_ssl_crl` refuses it): 502, the refusal saying revoked,
/// with and without `verify_names`; a backend neither lists is reached.
/// webpki read the newer scoped CRL alone: the revoked backend was reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_full_upstream_crl_revokes_beside_a_newer_scoped_one() {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let mesh = TestCa::new("mesh CA");
    scene.pair("a", &ca.server_pair(&["localhost"]));
    let revoked_pair = mesh.server_pair(&["backend.local"]);
    let now = time::OffsetDateTime::now_utc();
    let (older, until) = (now - time::Duration::days(2), now + time::Duration::days(7));
    write(&scene.path("mesh-ca.crt"), &mesh.cert_pem);
    let full = mesh.crl_of(&[revoked_pair.serial], older, until, 1);
    let uri = "http://crl.example/mesh-p1.crl";
    let fresh = now - time::Duration::minutes(1);
    let scoped = mesh.crl_scoped(&[], fresh, until, 2, uri);
    write(&scene.path("mesh.crl"), &format!("{full}{scoped}"));
    let revoked = Backend::start("revoked", &revoked_pair, None).await;
    let good = Backend::start("good", &mesh.server_pair(&["backend.local"]), None).await;
    revoked_502_good_200(&scene, &ca, &revoked, &good, "mesh.crl", Some("unknown_ca")).await;
}

/// A CRL in an upstream's `tls.ca` that cannot be used (one under the CA's
/// name signed by another key) refuses the backend as `crl_invalid`, the
/// listener side's word for the same fault, with and without
/// `verify_names`: it was the catch-all `tls`, which names no file to fix.
/// A CRL past its nextUpdate stays `unknown_ca`, as SPEC §5 lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_upstream_crl_is_reported_as_crl_invalid() {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let mesh = TestCa::new("mesh CA");
    let imposter = TestCa::new("mesh CA");
    scene.pair("a", &ca.server_pair(&["localhost"]));
    write(&scene.path("mesh-ca.crt"), &mesh.cert_pem);
    write(&scene.path("forged.crl"), &imposter.crl(&[]));
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    write(&scene.path("stale.crl"), &mesh.crl_until(&[], yesterday));
    let backend = Backend::start("b", &mesh.server_pair(&["backend.local"]), None).await;
    let names = "\n      verify_names: [backend.local]";
    let cases = [
        ("forged", "forged.crl", "", "crl_invalid"),
        ("forged-names", "forged.crl", names, "crl_invalid"),
        ("stale", "stale.crl", "", "unknown_ca"),
        ("stale-names", "stale.crl", names, "unknown_ca"),
    ];
    let upstreams: String = cases
        .iter()
        .map(|(name, crl, extra, _)| crl_upstream(name, &backend, crl, extra))
        .collect();
    let names = cases.map(|(name, ..)| name);
    let mut p = start_routing_to(&scene, &names, &upstreams);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    for (upstream, _, _, reason) in cases {
        let path = format!("/{upstream}/x");
        let reply = get(addr, "localhost", client.clone(), false, &path, &[])
            .await
            .unwrap();
        assert_eq!(reply.status, 502, "{upstream}: {}", reply.body);
        let log = refusal_logged(&mut p, upstream).await;
        assert_eq!(log["reason"], reason, "{upstream}: {log}");
        let series = format!(
            r#"hotproxy_upstream_errors_total{{upstream="{upstream}",reason="{reason}"}} "#
        );
        let metrics = metrics_text(api).await;
        assert!(
            metrics.lines().any(|l| l.starts_with(&series)),
            "{upstream}: no {series}in\n{metrics}"
        );
    }
}

/// Upstream `name` (a YAML list item) at `backend` for backend.local,
/// trusting mesh-ca.crt with the CRL `crl`; `extra` ends its `tls`.
fn crl_upstream(name: &str, backend: &Backend, crl: &str, extra: &str) -> String {
    format!(
        r#"
  - name: {name}
    servers: [https://{addr}]
    tls:
      ca: {{ ca_file: mesh-ca.crt, crl_files: [{crl}] }}
      server_name: backend.local{extra}"#,
        addr = backend.addr
    )
}

/// The proxy with the admin API and listener `public` (a.crt) routing
/// `/{name}/` to upstream `name`, for each of `names`, defined in
/// `upstreams` (YAML list items).
fn start_routing_to(scene: &Scene, names: &[&str], upstreams: &str) -> Proxy {
    Proxy::start(&routing_config(scene, names, upstreams))
}

/// The configuration [`start_routing_to`] starts the proxy with.
pub fn routing_config(scene: &Scene, names: &[&str], upstreams: &str) -> std::path::PathBuf {
    let routes: String = names
        .iter()
        .map(|u| format!("\n      - {{ path_prefix: /{u}/, upstream: {u} }}"))
        .collect();
    scene.config(&format!(
        r#"
admin: {{ bind: "127.0.0.1:0" }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ cert_file: a.crt, key_file: a.key }}]
    routes:{routes}
upstreams:{upstreams}
"#
    ))
}

/// The log line of the request `upstream` failed.
pub async fn refusal_logged(p: &mut Proxy, upstream: &str) -> serde_json::Value {
    p.wait_log(&format!("{upstream}'s refusal logged"), |v| {
        v["message"] == "upstream request failed" && v["upstream"] == upstream
    })
    .await
}

/// Four upstreams verified with `crl_files` — a revoked backend and a good
/// one, each with and without `verify_names`: the revoked one is a 502
/// whose refusal says revoked (with `reason`, when given), the good one
/// answers 200.
async fn revoked_502_good_200(
    scene: &Scene,
    ca: &TestCa,
    revoked: &Backend,
    good: &Backend,
    crl_files: &str,
    reason: Option<&str>,
) {
    let names = "\n      verify_names: [backend.local]";
    let upstreams = [
        crl_upstream("revoked", revoked, crl_files, ""),
        crl_upstream("revoked-names", revoked, crl_files, names),
        crl_upstream("good", good, crl_files, ""),
        crl_upstream("good-names", good, crl_files, names),
    ]
    .concat();
    let names = ["revoked", "revoked-names", "good", "good-names"];
    let mut p = start_routing_to(scene, &names, &upstreams);
    let addr = p.listener_addr("public").await;
    let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    for (upstream, status) in [
        ("revoked", 502),
        ("revoked-names", 502),
        ("good", 200),
        ("good-names", 200),
    ] {
        let path = format!("/{upstream}/x");
        let reply = get(addr, "localhost", client.clone(), false, &path, &[])
            .await
            .unwrap();
        assert_eq!(reply.status, status, "{upstream}: {}", reply.body);
        if status == 502 {
            let log = refusal_logged(&mut p, upstream).await;
            if let Some(reason) = reason {
                assert_eq!(log["reason"], reason, "{upstream}: {log}");
            }
            let said = log["error"].as_str().unwrap_or_default();
            assert!(said.contains("revoked"), "{upstream}: {log}");
        }
    }
}
