//! An upstream certificate whose keyUsage forbids signing is refused, as nginx and Envoy refuse it.

use rcgen::KeyUsagePurpose as Ku;

use crate::support::*;

/// webpki ignores a server certificate's keyUsage, so a backend whose
/// keyUsage is `keyEncipherment` alone (its key may not sign the TLS 1.3
/// or ECDHE handshake) was reached, where nginx (`proxy_ssl_verify`) and
/// Envoy refuse it. It is refused now, on each of the three verifiers (CA
/// alone, CA with a CRL, `verify_names`): `502`, logged and counted as
/// `invalid_purpose`. A keyUsage with `digitalSignature`, and none at all,
/// are reached on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_key_that_may_not_sign_is_refused() {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    scene.pair("a", &ca.server_pair(&["a.example.com"]));
    write(&scene.path("backend-ca.crt"), &backend_ca.cert_pem);
    write(&scene.path("backend.crl"), &backend_ca.crl(&[]));
    let names = ["backend.local"];
    let backends = [
        ("enc", &[Ku::KeyEncipherment][..], 502),
        (
            "sign",
            &[Ku::DigitalSignature, Ku::KeyEncipherment][..],
            200,
        ),
        ("none", &[][..], 200),
    ];
    let verifiers = [
        ("ca", "{ ca_file: backend-ca.crt }", ""),
        (
            "crl",
            "{ ca_file: backend-ca.crt, crl_files: [backend.crl] }",
            "",
        ),
        (
            "names",
            "{ ca_file: backend-ca.crt }",
            ", verify_names: [backend.local]",
        ),
    ];
    let (mut cases, mut held) = (Vec::new(), Vec::new());
    let (mut routes, mut upstreams) = (Vec::new(), String::new());
    for (kind, usages, status) in backends {
        let pair = backend_ca.server_pair_with_key_usages(&names, usages);
        let backend = Backend::start(kind, &pair, None).await;
        for (verifier, tls_ca, extra) in verifiers {
            let name = format!("{kind}-{verifier}");
            routes.push(format!("{{ path_prefix: /{name}/, upstream: {name} }}"));
            upstreams.push_str(&format!(
                "\n  - name: {name}\n    servers: [https://{}]\n    tls: {{ ca: {tls_ca}, server_name: backend.local{extra} }}",
                backend.addr
            ));
            cases.push((name, status));
        }
        held.push(backend);
    }
    let cfg = scene.public_config(&format!("[{}]", routes.join(", ")), &upstreams);
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    for (upstream, status) in &cases {
        let path = format!("/{upstream}/x");
        let reply = get(addr, "a.example.com", client.clone(), false, &path, &[])
            .await
            .unwrap();
        assert_eq!(reply.status, *status, "{upstream}: {}", reply.body);
        if *status != 502 {
            continue;
        }
        let log = p
            .wait_log(&format!("{upstream}'s refusal logged"), |v| {
                v["message"] == "upstream request failed" && v["upstream"] == upstream.as_str()
            })
            .await;
        assert_eq!(log["reason"], "invalid_purpose", "{upstream}: {log}");
        let error = log["error"].as_str().unwrap_or_default();
        assert!(error.contains("digitalSignature"), "{upstream}: {log}");
        let series = format!(
            r#"hotproxy_upstream_errors_total{{upstream="{upstream}",reason="invalid_purpose"}} "#
        );
        let metrics = metrics_text(api).await;
        assert!(
            metrics.lines().any(|l| l.starts_with(&series)),
            "{upstream}: no {series}in\n{metrics}"
        );
    }
}

/// A backend's extendedKeyUsage is whatever its certificate lists, and
/// webpki checks it before the chain: anyone answering TLS at an upstream
/// address can present thousands of OIDs. rustls's error names every one
/// (one OID as each of its arcs), so each failed request logged a warning
/// of about 100 KB. The `error` names the first 8 (of 16,002), each OID
/// dotted and cut, and how many more, and still says serverAuth is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backends_many_extended_key_usages_are_capped_in_the_log() {
    use rcgen::ExtendedKeyUsagePurpose as Eku;
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    scene.pair("a", &ca.server_pair(&["a.example.com"]));
    write(&scene.path("backend-ca.crt"), &backend_ca.cert_pem);
    let mut usages = vec![Eku::ClientAuth, Eku::Other((1..3000).collect())];
    usages.extend((0..16_000).map(|_| Eku::Other(vec![1, 2])));
    let pair = backend_ca.server_pair_with_extended_key_usages(&["backend.local"], usages);
    let backend = Backend::start("ekus", &pair, None).await;
    let upstreams = format!(
        "\n  - name: ekus\n    servers: [https://{}]\n    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}",
        backend.addr
    );
    let cfg = scene.public_config("[{ path_prefix: /, upstream: ekus }]", &upstreams);
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let reply = get(addr, "a.example.com", client, false, "/x", &[])
        .await
        .unwrap();
    assert_eq!(reply.status, 502, "{}", reply.body);
    let log = p
        .wait_log("the refusal logged", |v| {
            v["message"] == "upstream request failed" && v["upstream"] == "ekus"
        })
        .await;
    assert_eq!(log["reason"], "invalid_purpose", "{log}");
    let error = log["error"].as_str().unwrap_or_default();
    assert!(
        error.len() < 1024,
        "{} bytes: {}…",
        error.len(),
        &error[..error.len().min(600)]
    );
    assert!(error.contains("server authentication"), "{error}");
    assert!(error.contains("client authentication"), "{error}");
    assert!(error.contains("and 15994 more"), "{error}");
}
