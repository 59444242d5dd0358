//! h2spec (the HTTP/2 conformance suite, v2.6.0) against a real listener: every case must pass.
//!
//! The binary is `shared/tools/h2spec` beside the clone (CI) or beside any
//! ancestor directory (a git worktree); a missing binary fails the test.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::*;

/// `shared/tools/h2spec` next to the clone or one of its ancestors.
fn h2spec() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/tools/h2spec"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "h2spec not found: expected shared/tools/h2spec beside {} or one of its parents",
                manifest.display()
            )
        })
}

/// All 146 cases pass with `alpn: [h2, http/1.1]` in front of an h2 backend.
#[tokio::test]
async fn h2spec_passes_every_case() {
    let h2spec = h2spec();
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    scene.pair("a", &ca.server_pair(&["localhost", "127.0.0.1"]));
    write(&scene.path("backend-ca.crt"), &backend_ca.cert_pem);
    let backend = Backend::start("echo", &backend_ca.server_pair(&["backend.local"]), None).await;
    let cfg = scene.config(&format!(
        r#"
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ cert_file: a.crt, key_file: a.key }}]
      alpn: [h2, http/1.1]
    routes: [{{ upstream: echo }}]
upstreams:
  - name: echo
    servers: [https://{}]
    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}
"#,
        backend.addr
    ));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let run = tokio::process::Command::new(&h2spec)
        .args(["-t", "-k", "-o", "10", "-h", "127.0.0.1", "-p"])
        .arg(addr.port().to_string())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("h2spec finished")
        .expect("h2spec runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" tests, "))
        .unwrap_or_else(|| panic!("no h2spec summary:\n{stdout}"));
    assert_eq!(
        summary.trim(),
        "146 tests, 146 passed, 0 skipped, 0 failed",
        "failing cases:\n{}",
        stdout
            .lines()
            .filter(|l| l.contains('×') || l.contains("Expected") || l.contains("Actual"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(out.status.success(), "{stdout}");
}
