//! What the backend is told: each forward_client_cert mode, spoofed headers and look-alikes, ids.

use std::time::Duration;

use base64::Engine;

use crate::common::*;
use crate::support;
use crate::support::*;

/// Every header name a client might spoof: hotproxy's own, and the
/// identity headers of the proxies its users come from (ingress-nginx,
/// Traefik, HAProxy recipes), which their backends may still trust.
const SPOOFED: [(&str, &str); 17] = [
    ("x-client-cert-subject", "CN=mallory"),
    ("x-client-cert-fingerprint", "00"),
    ("x-client-cert-uri-sans", "spiffe://evil"),
    ("x-client-cert-dns-sans", "evil.example"),
    ("x-client-cert-issuer", "CN=evil"),
    ("x-client-cert-cn", "admin"),
    ("client-cert", ":AAAA:"),
    ("client-cert-chain", ":AAAA:"),
    ("x-forwarded-client-cert", "Hash=00;Subject=\"CN=admin\""),
    ("ssl-client-verify", "SUCCESS"),
    ("ssl-client-subject-dn", "CN=admin"),
    ("ssl-client-issuer-dn", "CN=partners issuing CA"),
    ("ssl-client-cert", "-----BEGIN%20CERTIFICATE-----"),
    ("x-forwarded-tls-client-cert", "MIIB"),
    (
        "x-forwarded-tls-client-cert-info",
        "Subject%3D%22CN%3Dadmin%22",
    ),
    ("x-ssl-client-verify", "0"),
    ("x-ssl-client-dn", "CN=admin"),
];

/// Each `forward_client_cert` mode, read back by parsers written here (not
/// hotproxy's encoders): RFC 9440 byte sequences decode to the exact DER of
/// the leaf and the intermediate; XFCC's URL-encoded PEMs too. Spoofed
/// copies never reach the backend, in any mode, with or without a cert.
#[tokio::test]
async fn forward_client_cert_modes() {
    let w = world().await;
    let client = w.pki.client(
        "billing",
        Some("payments"),
        &[
            uri("spiffe://cluster.local/ns/prod/sa/billing"),
            dns("billing.partners.example"),
        ],
    );
    let auth = "        mode: verify_if_given\n        ca: { ref: partners-ca }";
    let routes = r#"      - { path_prefix: /rfc9440, upstream: app, forward_client_cert: rfc9440 }
      - { path_prefix: /xfcc, upstream: app, forward_client_cert: xfcc }
      - { path_prefix: /none, upstream: app, forward_client_cert: none }
      - { path_prefix: /nginx, upstream: app, forward_client_cert: ingress_nginx }
      - { path_prefix: /billing-only, upstream: app, allow: [{ cn: billing }] }"#;
    let mut p = Proxy::start(&config(
        &w,
        auth,
        "    forward_client_cert: headers",
        routes,
        "",
    ));
    let addr = p.listener_addr("partners").await;
    let with = cfg_for(&w, Some(&client));
    let without = cfg_for(&w, None);
    let id_headers = |h: &serde_json::Value| -> Vec<String> {
        h.as_object()
            .unwrap()
            .keys()
            .filter(|k| k.contains("client-cert") || k.contains("ssl-client-"))
            .cloned()
            .collect()
    };

    // headers (the listener's mode).
    let h = seen(addr, with.clone(), "/api", &SPOOFED).await;
    assert_eq!(h["x-client-cert-subject"], "CN=billing, OU=payments");
    assert_eq!(
        h["x-client-cert-fingerprint"],
        client.pair.fingerprint.as_str()
    );
    assert_eq!(
        h["x-client-cert-uri-sans"],
        "spiffe://cluster.local/ns/prod/sa/billing"
    );
    assert_eq!(h["x-client-cert-dns-sans"], "billing.partners.example");
    assert_eq!(h["x-client-cert-issuer"], "CN=partners issuing CA");
    let not_after = h["x-client-cert-not-after"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(not_after, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "{not_after}"
    );
    assert!(
        h["x-client-cert-serial"]
            .as_str()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
    );
    assert!(
        h.get("x-client-cert-cn").is_none(),
        "spoofed header kept: {h}"
    );
    for k in [
        "client-cert",
        "client-cert-chain",
        "x-forwarded-client-cert",
    ] {
        assert!(h.get(k).is_none(), "{k} in headers mode: {h}");
    }

    // rfc9440: sf-binary items, `:` base64 `:`.
    let h = seen(addr, with.clone(), "/rfc9440", &SPOOFED).await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bytes = |item: &str| {
        let inner = item
            .trim()
            .strip_prefix(':')
            .and_then(|s| s.strip_suffix(':'))
            .unwrap();
        b64.decode(inner).unwrap()
    };
    assert_eq!(bytes(h["client-cert"].as_str().unwrap()), client.pair.der);
    let chain: Vec<Vec<u8>> = h["client-cert-chain"]
        .as_str()
        .unwrap()
        .split(',')
        .map(bytes)
        .collect();
    assert_eq!(chain, vec![w.pki.intermediate_der.clone()]);
    assert_eq!(id_headers(&h).len(), 2, "{h}");

    // xfcc: Envoy's key=value;… with quoted, URL-encoded PEMs.
    let h = seen(addr, with.clone(), "/xfcc", &SPOOFED).await;
    let xfcc = h["x-forwarded-client-cert"].as_str().unwrap();
    let pairs = parse_xfcc(xfcc);
    let get = |k: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("Hash"), [client.pair.fingerprint.as_str()]);
    // The edge certificate has no URI SAN: no `By`.
    assert!(get("By").is_empty(), "{xfcc}");
    // Envoy's Subject: OpenSSL's RFC 2253 form (the last RDN first).
    assert_eq!(get("Subject"), ["OU=payments,CN=billing"]);
    assert_eq!(get("URI"), ["spiffe://cluster.local/ns/prod/sa/billing"]);
    assert_eq!(get("DNS"), ["billing.partners.example"]);
    let pem_ders = |v: &str| -> Vec<Vec<u8>> {
        let pem = percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .unwrap();
        pem_certs(&pem)
    };
    assert_eq!(pem_ders(get("Cert")[0]), vec![client.pair.der.clone()]);
    assert_eq!(
        pem_ders(get("Chain")[0]),
        vec![client.pair.der.clone(), w.pki.intermediate_der.clone()]
    );
    assert_eq!(id_headers(&h), ["x-forwarded-client-cert"], "{h}");

    // ingress_nginx: its four headers as nginx writes them (RFC 2253 DNs:
    // the last RDN first, no spaces; the leaf's PEM URL-encoded).
    let h = seen(addr, with.clone(), "/nginx", &SPOOFED).await;
    assert_eq!(h["ssl-client-verify"], "SUCCESS", "{h}");
    assert_eq!(h["ssl-client-subject-dn"], "OU=payments,CN=billing", "{h}");
    assert_eq!(h["ssl-client-issuer-dn"], "CN=partners issuing CA", "{h}");
    assert_eq!(
        pem_ders(h["ssl-client-cert"].as_str().unwrap()),
        vec![client.pair.der.clone()]
    );
    assert_eq!(
        id_headers(&h),
        [
            "ssl-client-cert",
            "ssl-client-issuer-dn",
            "ssl-client-subject-dn",
            "ssl-client-verify"
        ],
        "{h}"
    );

    // none: nothing, and nothing spoofed.
    let h = seen(addr, with.clone(), "/none", &SPOOFED).await;
    assert!(id_headers(&h).is_empty(), "{h}");
    // No certificate (verify_if_given): nothing in any mode, but
    // ingress-nginx's `ssl-client-verify: NONE`.
    for path in ["/api", "/rfc9440", "/xfcc", "/none"] {
        let h = seen(addr, without.clone(), path, &SPOOFED).await;
        assert!(id_headers(&h).is_empty(), "{path}: {h}");
    }
    let h = seen(addr, without.clone(), "/nginx", &SPOOFED).await;
    assert_eq!(id_headers(&h), ["ssl-client-verify"], "{h}");
    assert_eq!(h["ssl-client-verify"], "NONE", "{h}");
    // A route rule: a client without a certificate never matches one, even
    // with spoofed identity headers.
    assert_eq!(
        outcome(addr, with.clone(), "/billing-only").await,
        Outcome::Status(200)
    );
    let r = support::get(
        addr,
        "localhost",
        without.clone(),
        false,
        "/billing-only",
        &SPOOFED,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);

    // XFCC's `By` names the certificate hotproxy served, one per URI SAN,
    // as Envoy names itself: the edge certificate renewed with a SPIFFE ID
    // (rotated in place, so the name index is kept and the URIs re-read).
    let renewed = w.edge_ca.server_pair_with_uris(
        &["localhost", "public.example", "admin.example"],
        &["spiffe://cluster.local/ns/edge/sa/hotproxy"],
    );
    w.scene.pair("edge", &renewed);
    wait_until(
        Duration::from_secs(20),
        "the renewed edge certificate served",
        || async {
            served_leaf(addr, "localhost", &w.edge_ca.cert_pem)
                .await
                .is_ok_and(|f| f == renewed.fingerprint)
        },
    )
    .await;
    let h = seen(addr, with.clone(), "/xfcc", &SPOOFED).await;
    let xfcc = h["x-forwarded-client-cert"].as_str().unwrap();
    assert!(
        xfcc.starts_with("By=spiffe://cluster.local/ns/edge/sa/hotproxy;Hash="),
        "{xfcc}"
    );
    drop(p);
}

/// A client may pad its Certificate message with certificates that have
/// nothing to do with its chain (rustls takes up to 64 KiB of them): the
/// backend is told only the chain its leaf was issued through. Here the
/// leaf, 40 unrelated CA certificates, one named as the real intermediate
/// but with another key, the real intermediate, and more padding: the
/// backend gets the intermediate alone in `Client-Cert-Chain` and the leaf
/// and intermediate in XFCC's `Chain`, and the requests are served.
#[tokio::test]
async fn only_the_issuing_chain_is_forwarded() {
    let w = world().await;
    let mut client = w.pki.client("billing", None, &[]);
    let self_signed_ca = |cn: &str| {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap()
            .pem()
    };
    let leaf_pem = client
        .pair
        .cert_pem
        .strip_suffix(w.pki.intermediate_pem.as_str())
        .unwrap()
        .to_owned();
    let padding = |from: usize, to: usize| -> String {
        (from..to)
            .map(|i| self_signed_ca(&format!("junk {i}")))
            .collect()
    };
    client.pair.cert_pem = format!(
        "{leaf_pem}{}{}{}{}",
        padding(0, 20),
        self_signed_ca("partners issuing CA"),
        w.pki.intermediate_pem,
        padding(20, 40),
    );
    assert_eq!(certs(&client.pair.cert_pem).len(), 43);
    let auth = "        mode: require_and_verify\n        ca: { ref: partners-ca }";
    let routes = r#"      - { path_prefix: /rfc9440, upstream: app, forward_client_cert: rfc9440 }
      - { path_prefix: /xfcc, upstream: app, forward_client_cert: xfcc }"#;
    let mut p = Proxy::start(&config(&w, auth, "", routes, ""));
    let addr = p.listener_addr("partners").await;
    let with = cfg_for(&w, Some(&client));

    let h = seen(addr, with.clone(), "/rfc9440", &[]).await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let chain: Vec<Vec<u8>> = h["client-cert-chain"]
        .as_str()
        .unwrap()
        .split(',')
        .map(|item| {
            let inner = item.trim().strip_prefix(':').unwrap().strip_suffix(':');
            b64.decode(inner.unwrap()).unwrap()
        })
        .collect();
    assert_eq!(chain, vec![w.pki.intermediate_der.clone()]);

    let h = seen(addr, with.clone(), "/xfcc", &[]).await;
    let xfcc = h["x-forwarded-client-cert"].as_str().unwrap();
    let pairs = parse_xfcc(xfcc);
    let chain = pairs.iter().find(|(k, _)| k == "Chain").unwrap();
    let pem = percent_encoding::percent_decode_str(&chain.1)
        .decode_utf8()
        .unwrap();
    assert_eq!(
        pem_certs(&pem),
        vec![client.pair.der.clone(), w.pki.intermediate_der.clone()]
    );
    drop(p);
}

/// What the backend is told of the client's chain on `/rfc9440` (the
/// DERs of `Client-Cert-Chain`, leaf excluded) and on `/xfcc` (the DERs of
/// XFCC's `Chain`, leaf first), each decoded here.
async fn forwarded_chains(
    addr: std::net::SocketAddr,
    cfg: std::sync::Arc<rustls::ClientConfig>,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let h = seen(addr, cfg.clone(), "/rfc9440", &[]).await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let rfc9440 = h["client-cert-chain"]
        .as_str()
        .unwrap_or("")
        .split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let inner = item.trim().strip_prefix(':').unwrap().strip_suffix(':');
            b64.decode(inner.unwrap()).unwrap()
        })
        .collect();
    let h = seen(addr, cfg, "/xfcc", &[]).await;
    let pairs = parse_xfcc(h["x-forwarded-client-cert"].as_str().unwrap());
    let chain = pairs.iter().find(|(k, _)| k == "Chain").unwrap();
    let pem = percent_encoding::percent_decode_str(&chain.1)
        .decode_utf8()
        .unwrap();
    (rfc9440, pem_certs(&pem))
}

/// What the backend is told of `client`'s chain (as [`forwarded_chains`])
/// by the `partners` listener, its client CA `root_pem` alone.
async fn chains_trusting(
    w: &World,
    root_pem: &str,
    client: &Client,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    write(&w.scene.path("partners-ca.crt"), root_pem);
    let auth = "        mode: require_and_verify\n        ca: { ref: partners-ca }";
    let mut p = Proxy::start(&config(w, auth, "", CHAIN_ROUTES, ""));
    let addr = p.listener_addr("partners").await;
    let chains = forwarded_chains(addr, cfg_for(w, Some(client))).await;
    drop(p);
    chains
}

/// The routes [`forwarded_chains`] asks.
const CHAIN_ROUTES: &str = r#"      - { path_prefix: /rfc9440, upstream: app, forward_client_cert: rfc9440 }
      - { path_prefix: /xfcc, upstream: app, forward_client_cert: xfcc }"#;

/// A CA certificate's parameters, named `cn`.
fn ca_params(cn: &str) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    p
}

/// A client certificate named `cn` issued by `issuer`, its PEM followed by
/// `intermediates` (PEM) as the client sends them.
fn client_of(issuer: &rcgen::Issuer<'_, rcgen::KeyPair>, cn: &str, intermediates: &str) -> Client {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, issuer).unwrap();
    Client {
        pair: TestPair {
            cert_pem: format!("{}{intermediates}", cert.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            fingerprint: fingerprint(cert.der()),
            serial: 0,
        },
    }
}

/// The handshake accepts every algorithm rustls's aws-lc-rs provider
/// verifies, P-521 and ECDSA with SHA-512 among them: an intermediate with
/// a P-521 key, which signs the leaf with ecdsa-with-SHA512, passes the
/// handshake, and the backend is told of it in `Client-Cert-Chain` and
/// XFCC's `Chain` as of any other intermediate.
#[tokio::test]
async fn an_intermediate_with_a_p521_key_is_forwarded() {
    let w = world().await;
    let root_key = rcgen::KeyPair::generate().unwrap();
    let root_pem = ca_params("p521 root").self_signed(&root_key).unwrap().pem();
    let root = rcgen::Issuer::new(ca_params("p521 root"), root_key);
    let int_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
    let int = ca_params("p521 issuing CA")
        .signed_by(&int_key, &root)
        .unwrap();
    let int_issuer = rcgen::Issuer::new(ca_params("p521 issuing CA"), int_key);
    let client = client_of(&int_issuer, "billing", &int.pem());
    let (rfc9440, xfcc) = chains_trusting(&w, &root_pem, &client).await;
    assert_eq!(rfc9440, vec![int.der().to_vec()]);
    assert_eq!(xfcc, vec![client.pair.der.clone(), int.der().to_vec()]);
}

/// A cross-signed intermediate: the same subject and key issued by a root
/// the listener does not trust (`R_old`) and by the one it trusts
/// (`R_new`), sent in that order. The handshake goes through the copy
/// `R_new` issued; so does the chain the backend is told of, not the one
/// sent first, which leads to a root hotproxy does not trust.
#[tokio::test]
async fn a_cross_signed_intermediate_is_forwarded_as_issued_by_the_trusted_root() {
    let w = world().await;
    let root = |cn: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = ca_params(cn).self_signed(&key).unwrap().pem();
        (pem, rcgen::Issuer::new(ca_params(cn), key))
    };
    let (_, old_root) = root("R_old");
    let (new_root_pem, new_root) = root("R_new");
    let int_key = rcgen::KeyPair::generate().unwrap();
    let by_old = ca_params("cross CA")
        .signed_by(&int_key, &old_root)
        .unwrap();
    let by_new = ca_params("cross CA")
        .signed_by(&int_key, &new_root)
        .unwrap();
    let int = rcgen::Issuer::new(ca_params("cross CA"), int_key);
    let client = client_of(
        &int,
        "billing",
        &format!("{}{}", by_old.pem(), by_new.pem()),
    );
    let (rfc9440, xfcc) = chains_trusting(&w, &new_root_pem, &client).await;
    assert_eq!(rfc9440, vec![by_new.der().to_vec()]);
    assert_eq!(xfcc, vec![client.pair.der.clone(), by_new.der().to_vec()]);
}

/// A certificate with the issuer's name and public key proves nothing by
/// itself: anyone can sign one. A client whose leaf the trusted root issued
/// sends a copy of that root made and signed by a key of its own (naming
/// some other CA as its issuer), then that CA, self-signed: the handshake
/// goes to the root the listener trusts, and the backend is told of
/// neither (no `Client-Cert-Chain`, XFCC's `Chain` the leaf alone), as a
/// client could otherwise claim any CA hierarchy above its leaf and pad
/// the headers with certificates only its own keys signed.
#[tokio::test]
async fn an_issuer_copy_signed_by_another_key_is_not_forwarded() {
    let w = world().await;
    let root_key = rcgen::KeyPair::generate().unwrap();
    let root_pem = ca_params("copied root")
        .self_signed(&root_key)
        .unwrap()
        .pem();
    let own_key = rcgen::KeyPair::generate().unwrap();
    let own_root = ca_params("Prod Root").self_signed(&own_key).unwrap();
    let own = rcgen::Issuer::new(ca_params("Prod Root"), own_key);
    // The root's subject and key, issued and signed by the client's own CA.
    let copy = ca_params("copied root").signed_by(&root_key, &own).unwrap();
    let root = rcgen::Issuer::new(ca_params("copied root"), root_key);
    let client = client_of(
        &root,
        "billing",
        &format!("{}{}", copy.pem(), own_root.pem()),
    );
    let (rfc9440, xfcc) = chains_trusting(&w, &root_pem, &client).await;
    assert_eq!(rfc9440, Vec::<Vec<u8>>::new());
    assert_eq!(xfcc, vec![client.pair.der.clone()]);
}

/// Only a CA issues: the client's own leaf L (no CA, its key the client's)
/// cannot vouch for a certificate it signed. The client sends L, then C
/// (the trusted root's name and key, L's subject as issuer, signed with
/// L's key), then L again: the handshake goes to the root, and the backend
/// is told of nothing above the leaf, not a hierarchy C → L.
#[tokio::test]
async fn a_leaf_sent_as_an_issuer_is_not_forwarded() {
    let w = world().await;
    let root_key = rcgen::KeyPair::generate().unwrap();
    let root_pem = ca_params("leaf root").self_signed(&root_key).unwrap();
    let root = rcgen::Issuer::new(ca_params("leaf root"), root_key);
    let mut client = client_of(&root, "billing", "");
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "billing");
    let own = rcgen::KeyPair::from_pem(&client.pair.key_pem).unwrap();
    let by_leaf = rcgen::Issuer::new(leaf, own);
    let c = ca_params("leaf root")
        .signed_by(root.key(), &by_leaf)
        .unwrap();
    let leaf_pem = client.pair.cert_pem.clone();
    client.pair.cert_pem = format!("{leaf_pem}{}{leaf_pem}", c.pem());
    let (rfc9440, xfcc) = chains_trusting(&w, &root_pem.pem(), &client).await;
    assert_eq!(rfc9440, Vec::<Vec<u8>>::new());
    assert_eq!(xfcc, vec![client.pair.der.clone()]);
}

/// A serial whose top bit is set (half of random serials) is DER-encoded
/// with a leading 0x00 that is not part of the number: the backend is told
/// the serial as nginx's `$ssl_client_serial` and `openssl x509 -serial`
/// print it (uppercase hex, no sign byte), so a deny list exported with
/// OpenSSL matches; `certs inspect` prints the same text.
#[tokio::test]
async fn a_serial_with_its_top_bit_set_is_sent_as_openssl_prints_it() {
    let w = world().await;
    let serial = [0x8a, 0x31, 0x0f, 0xc2, 0x5e, 0x77, 0x01, 0xd4];
    let client = w.pki.client_with_serial("billing", &serial);
    let expected: String = serial.iter().map(|b| format!("{b:02X}")).collect();
    let auth = "        mode: require_and_verify\n        ca: { ref: partners-ca }";
    let mut p = Proxy::start(&config(
        &w,
        auth,
        "    forward_client_cert: headers",
        "",
        "",
    ));
    let addr = p.listener_addr("partners").await;
    let h = seen(addr, cfg_for(&w, Some(&client)), "/api", &[]).await;
    assert_eq!(h["x-client-cert-serial"], expected.as_str(), "{h}");

    let pem = w.scene.path("billing.crt");
    write(&pem, &client.pair.cert_pem);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotproxy"))
        .args(["certs", "inspect"])
        .arg(&pem)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let first = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("serial:"))
        .map(str::trim);
    assert_eq!(first, Some(expected.as_str()), "{text}");
    drop(p);
}

fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect()
}

/// Request ids: a well-formed client id is kept, a malformed one replaced,
/// `trust_client: false` always replaces; the backend and the client see
/// the same id; traceparent/tracestate pass unchanged.
#[tokio::test]
async fn request_ids_and_traces() {
    let w = world().await;
    let auth = "        mode: none";
    let mut p = Proxy::start(&config(&w, auth, "", "", ""));
    let addr = p.listener_addr("partners").await;
    let cfg = cfg_for(&w, None);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let ask = |hdrs: Vec<(&'static str, String)>| {
        let cfg = cfg.clone();
        async move {
            let tls = connect(addr, "localhost", cfg).await.unwrap();
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut req = http::Request::builder()
                .uri("/")
                .header("host", "localhost");
            for (k, v) in &hdrs {
                req = req.header(*k, v.as_str());
            }
            let resp = send
                .send_request(
                    req.body(http_body_util::Empty::<bytes::Bytes>::new())
                        .unwrap(),
                )
                .await
                .unwrap();
            let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
            use http_body_util::BodyExt;
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            (id, v["headers"].clone())
        }
    };
    let (id, h) = ask(vec![
        ("x-request-id", "client-id-1".into()),
        ("traceparent", tp.into()),
        ("tracestate", "vendor=opaque,x=1".into()),
    ])
    .await;
    assert_eq!(id, "client-id-1");
    assert_eq!(h["x-request-id"], "client-id-1");
    assert_eq!(h["traceparent"], tp);
    assert_eq!(h["tracestate"], "vendor=opaque,x=1");
    let (id, h) = ask(vec![("x-request-id", "not well formed!".into())]).await;
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(h["x-request-id"], id.as_str());
    let (id2, _) = ask(vec![]).await;
    assert_eq!(id2.len(), 32);
    assert_ne!(id, id2);
    drop(p);

    // trust_client: false replaces even a well-formed id.
    let mut p = Proxy::start(&config(
        &w,
        auth,
        "    request_id: { trust_client: false }",
        "",
        "",
    ));
    let addr2 = p.listener_addr("partners").await;
    let r = get(
        addr2,
        "localhost",
        cfg.clone(),
        false,
        "/",
        &[("x-request-id", "client-id-1")],
    )
    .await
    .unwrap();
    let sent = r.json()["headers"]["x-request-id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(sent, "client-id-1");
    assert_eq!(sent.len(), 32);
}

/// A header whose name reads, `_` as `-`, as one hotproxy sets, removes
/// or replaces is removed too: CGI, WSGI and PHP servers fold both
/// spellings into one variable (`HTTP_SSL_CLIENT_VERIFY`), so
/// `ssl_client_verify: SUCCESS` would reach such a backend as the header
/// hotproxy stripped, and Puma < 6.4.3 (CVE-2024-45614) let `X_Request_Id`
/// override the id a `trust_client: false` listener generated. An
/// application's own names with `_` pass.
#[tokio::test]
async fn underscore_lookalikes_of_stripped_headers_are_removed() {
    let w = world().await;
    let auth = "        mode: verify_if_given\n        ca: { ref: partners-ca }";
    let routes =
        r#"      - { path_prefix: /nginx, upstream: app, forward_client_cert: ingress_nginx }"#;
    let listener = "    request_id: { trust_client: false }";
    let mut p = Proxy::start(&config(&w, auth, listener, routes, ""));
    let addr = p.listener_addr("partners").await;
    let lookalikes = [
        ("ssl_client_verify", "SUCCESS"),
        ("ssl_client_subject_dn", "CN=admin"),
        ("X_Client_Cert_Subject", "CN=admin"),
        ("x_forwarded_client_cert", "Hash=00"),
        ("client_cert", ":AAAA:"),
        ("X_Forwarded_For", "6.6.6.6"),
        ("x_real_ip", "6.6.6.6"),
        ("x-forwarded_proto", "http"),
        ("X_Request_Id", "forged"),
        ("x-request_id", "forged"),
        ("x_forwarded_host", "evil.example"),
    ];
    let mut sent = lookalikes.to_vec();
    sent.push(("api_key", "k1"));
    sent.push(("x_custom_thing", "kept"));
    for path in ["/api", "/nginx"] {
        let h = seen(addr, cfg_for(&w, None), path, &sent).await;
        for (name, _) in lookalikes {
            let lower = name.to_ascii_lowercase();
            assert!(
                h.get(&lower).is_none(),
                "{path}: {name} reached the backend: {h}"
            );
        }
        assert_eq!(h["api_key"], "k1", "{path}: {h}");
        assert_eq!(h["x_custom_thing"], "kept", "{path}: {h}");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{path}: {h}");
        assert_eq!(h["x-forwarded-host"], "localhost", "{path}: {h}");
        // The id hotproxy generated is the only one the backend gets.
        let id = h["x-request-id"].as_str().unwrap_or_default();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{path}: {h}"
        );
    }
    drop(p);
}

/// Client-certificate headers hotproxy never writes but backends trust:
/// the bare `X-Client-Cert` (ASP.NET Core's `CertificateForwarding`
/// default, base64 DER), `X-SSL-Cert` (the nginx recipe in ASP.NET's docs)
/// and `X-ARR-ClientCert` (IIS ARR, Azure App Service); and those of the
/// cloud load balancers hotproxy replaces: AWS ALB mTLS
/// (`X-Amzn-Mtls-Clientcert*`), Cloudflare's TLS client auth Managed
/// Transform (`Cf-Cert-*`) and Access forwarding (`Cf-Client-Cert-*`). A
/// client sending someone else's public certificate, or `verified`, in
/// one would be that someone to such a backend, so neither it nor its `_`
/// look-alike reaches the backend, in any mode, with or without a
/// certificate, in the head or in trailers.
#[tokio::test]
async fn other_frameworks_client_cert_headers_are_removed() {
    let w = world().await;
    let client = w.pki.client("billing", None, &[]);
    // The victim's certificate is public; its key stays with the victim.
    let victim = w.pki.client("admin", None, &[]);
    let der = base64::engine::general_purpose::STANDARD.encode(&victim.pair.der);
    let leaf = victim
        .pair
        .cert_pem
        .split_inclusive("-----END CERTIFICATE-----\n");
    let pem = leaf.take(1).collect::<String>().replace('\n', "%0A");
    let forged: [(&str, &str); 14] = [
        ("x-client-cert", &der),
        ("X_Client_Cert", &der),
        ("x-ssl-cert", &pem),
        ("x_ssl_cert", &pem),
        ("x-arr-clientcert", &der),
        ("X_ARR_ClientCert", &der),
        ("X-Amzn-Mtls-Clientcert-Leaf", &pem),
        ("X-Amzn-Mtls-Clientcert-Subject", "CN=admin"),
        ("X_Amzn_Mtls_Clientcert", &pem),
        ("Cf-Cert-Verified", "true"),
        ("Cf-Cert-Presented", "true"),
        ("Cf-Cert-Subject-DN", "CN=admin"),
        ("cf_cert_fingerprint_sha256", &victim.pair.fingerprint),
        ("Cf-Client-Cert-Der-Base64", &der),
    ];
    let auth = "        mode: verify_if_given\n        ca: { ref: partners-ca }";
    let routes = r#"      - { path_prefix: /rfc9440, upstream: app, forward_client_cert: rfc9440 }
      - { path_prefix: /xfcc, upstream: app, forward_client_cert: xfcc }
      - { path_prefix: /none, upstream: app, forward_client_cert: none }
      - { path_prefix: /nginx, upstream: app, forward_client_cert: ingress_nginx }"#;
    let mut p = Proxy::start(&config(&w, auth, "", routes, ""));
    let addr = p.listener_addr("partners").await;
    let mut trailer = String::from("x-checksum: crc32c=1\r\n");
    for (name, value) in forged {
        trailer.push_str(&format!("{name}: {value}\r\n"));
    }
    for (who, cfg) in [
        ("with a certificate", cfg_for(&w, Some(&client))),
        ("without", cfg_for(&w, None)),
    ] {
        for path in ["/api", "/rfc9440", "/xfcc", "/none", "/nginx"] {
            let h = seen(addr, cfg.clone(), path, &forged).await;
            for (name, _) in forged {
                let lower = name.to_ascii_lowercase();
                assert!(
                    h.get(&lower).is_none(),
                    "{path} {who}: {name} reached the backend: {h}"
                );
            }
            let upload = format!(
                "POST {path}/upload HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                 Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n{trailer}\r\n"
            );
            let got = raw(addr, cfg.clone(), &upload).await;
            assert_eq!(got["body_bytes"], 4, "{path} {who}: {got}");
            assert_eq!(
                got["trailers"],
                serde_json::json!({ "x-checksum": "crc32c=1" }),
                "{path} {who}"
            );
        }
    }
    drop(p);
}

/// One raw HTTP/1.1 request on a fresh connection; what the backend saw.
async fn raw(
    addr: std::net::SocketAddr,
    cfg: std::sync::Arc<rustls::ClientConfig>,
    request: &str,
) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = connect(addr, "localhost", cfg).await.unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out))
        .await
        .expect("the proxy answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(head.starts_with("HTTP/1.1 200 "), "{text}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}
