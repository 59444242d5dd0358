//! What `verify_names` refuses of a backend certificate, and how the refusal is logged.

use crate::support::*;
use crate::upstream_tls::routing_config;

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
