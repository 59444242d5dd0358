//! What `verify_names` refuses of a backend certificate, and how the refusal is logged.

use crate::support::*;
use crate::upstream_tls::{refusal_logged, routing_config};

/// Upstream `name` (a YAML list item) at `backend`, trusting mesh-ca.crt
/// and accepting the names `names` (a YAML flow sequence's items).
fn names_upstream(name: &str, backend: &Backend, names: &str) -> String {
    format!(
        r#"
  - name: {name}
    servers: [https://{addr}]
    tls:
      ca: {{ ca_file: mesh-ca.crt }}
      verify_names: [{names}]"#,
        addr = backend.addr
    )
}

/// The scene of these tests: the edge certificate (a.crt) and the mesh
/// CA (mesh-ca.crt) that issues the backends'.
fn scene() -> (Scene, TestCa, TestCa) {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let mesh = TestCa::new("mesh CA");
    scene.pair("a", &ca.server_pair(&["localhost"]));
    write(&scene.path("mesh-ca.crt"), &mesh.cert_pem);
    (scene, ca, mesh)
}

/// A backend whose certificate chains to `tls.ca` but names none of
/// `verify_names` is refused (502), and the log line says what it named
/// as a configuration problem quotes a value: escaped and cut. A URI SAN
/// with a line feed in it (x509-parser reads any IA5String) wrote a forged
/// line of its own into the text log, and every SAN was listed: now the
/// first 8, then how many more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_backends_names_are_escaped_and_capped() {
    let (scene, ca, mesh) = scene();
    let forged = "urn:x\n2026-01-01T00:00:00.000000Z ERROR hotproxy: forged line";
    let mut uris = vec![forged.to_owned()];
    uris.extend((0..20).map(|n| format!("urn:padding:{n}")));
    let uris: Vec<&str> = uris.iter().map(String::as_str).collect();
    let pair = mesh.server_pair_with_uris(&["backend.other"], &uris);
    let backend = Backend::start("b", &pair, None).await;
    let upstreams = names_upstream("named", &backend, "backend.local");
    let mut p = Proxy::start_text(&routing_config(&scene, &["named"], &upstreams));
    let listening = p
        .wait_line("listening", |l| {
            l.contains(" listening ") && l.contains("listener=public")
        })
        .await;
    let addr: std::net::SocketAddr = listening
        .split_once(" addr=")
        .and_then(|(_, a)| a.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {listening}"));
    let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let reply = get(addr, "localhost", client, false, "/named/x", &[])
        .await
        .unwrap();
    assert_eq!(reply.status, 502, "{}", reply.body);
    let line = p
        .wait_line("the refusal logged", |l| {
            l.contains("upstream request failed") && l.contains("name_mismatch")
        })
        .await;
    let forged_lines: Vec<String> = p
        .logs()
        .into_iter()
        .filter(|l| l.contains("forged line") && !l.contains("upstream request failed"))
        .collect();
    assert!(forged_lines.is_empty(), "{forged_lines:?}");
    assert!(line.contains(r"urn:x\n2026-01-01"), "{line}");
    // DNS:backend.other and 21 URI SANs: 8 listed, 14 more.
    assert!(line.contains("and 14 more"), "{line}");
    assert!(!line.contains("urn:padding:6"), "{line}");
    assert!(line.contains("urn:padding:5"), "{line}");
}

/// A SPIFFE pattern (`spiffe://td/**` or an exact SPIFFE ID) accepts an
/// X509-SVID only: one URI SAN, a SPIFFE ID by the syntax the patterns
/// are read with, as the X509-SVID spec and go-spiffe require. A
/// certificate with a second URI SAN (another domain's ID beside td's),
/// and IDs with an empty, `.` or `..` segment or a query, were accepted;
/// each is refused (502, `name_mismatch`, the cause logged). A real SVID
/// of the trust domain is reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spiffe_pattern_accepts_only_an_svid() {
    const ID: &str = "spiffe://cluster.local/ns/prod/sa/app";
    let (scene, ca, mesh) = scene();
    let two_ids = mesh.server_pair_with_uris(&["backend.other"], &[ID, "spiffe://other/x"]);
    let cases = [
        ("svid", mesh.svid(ID), "\"spiffe://cluster.local/**\"", ""),
        (
            "two",
            two_ids.clone(),
            "\"spiffe://cluster.local/**\"",
            "one URI SAN",
        ),
        ("two-exact", two_ids, &format!("\"{ID}\""), "one URI SAN"),
        (
            "empty",
            mesh.svid("spiffe://cluster.local//x"),
            "\"spiffe://cluster.local/**\"",
            "not a SPIFFE ID",
        ),
        (
            "dots",
            mesh.svid("spiffe://cluster.local/a/../b"),
            "\"spiffe://cluster.local/**\"",
            "not a SPIFFE ID",
        ),
        (
            "query",
            mesh.svid("spiffe://cluster.local/x?q"),
            "\"spiffe://cluster.local/**\"",
            "not a SPIFFE ID",
        ),
    ];
    let mut upstreams = String::new();
    let mut backends = Vec::new();
    for (name, pair, names, _) in &cases {
        let backend = Backend::start(name, pair, None).await;
        upstreams.push_str(&names_upstream(name, &backend, names));
        backends.push(backend);
    }
    let names = cases.each_ref().map(|(name, ..)| *name);
    let mut p = Proxy::start(&routing_config(&scene, &names, &upstreams));
    let addr = p.listener_addr("public").await;
    let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    for (name, _, _, cause) in cases {
        let path = format!("/{name}/x");
        let reply = get(addr, "localhost", client.clone(), false, &path, &[])
            .await
            .unwrap();
        if cause.is_empty() {
            assert_eq!(reply.status, 200, "{name}: {}", reply.body);
            continue;
        }
        assert_eq!(reply.status, 502, "{name}: {}", reply.body);
        let log = refusal_logged(&mut p, name).await;
        assert_eq!(log["reason"], "name_mismatch", "{name}: {log}");
        let error = log["error"].as_str().unwrap_or_default();
        assert!(error.contains(cause), "{name}: {error}");
    }
}
