//! h2spec (the HTTP/2 conformance suite, v2.6.0) against a real listener: every case must pass.
//!
//! The binary is the one the `H2SPEC` environment variable names, else
//! `shared/tools/h2spec` beside the clone (CI) or beside any ancestor
//! directory (a git worktree); a missing binary fails the test.

mod support;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

/// Where to get it, for the failure message.
const WHERE: &str = "set H2SPEC=/path/to/h2spec, or put the binary at shared/tools/h2spec beside the clone or one of its parents (h2spec v2.6.0, a static binary from https://github.com/summerwind/h2spec/releases)";

/// The h2spec binary: `h2spec_env` (the value of `H2SPEC`) when set, else
/// `shared/tools/h2spec` next to `manifest` or one of its ancestors.
fn find_h2spec(h2spec_env: Option<OsString>, manifest: &Path) -> Result<PathBuf, String> {
    if let Some(path) = h2spec_env.filter(|p| !p.is_empty()).map(PathBuf::from) {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "h2spec not found: H2SPEC names {}, which is not a file; {WHERE}",
                path.display()
            ))
        };
    }
    manifest
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/tools/h2spec"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "h2spec not found (needed by this test, which fails without it): H2SPEC is not set and there is no shared/tools/h2spec beside {} or one of its parents; {WHERE}",
                manifest.display()
            )
        })
}

/// The binary this run uses; panics saying where to put it.
fn h2spec() -> PathBuf {
    find_h2spec(
        std::env::var_os("H2SPEC"),
        Path::new(env!("CARGO_MANIFEST_DIR")),
    )
    .unwrap_or_else(|e| panic!("{e}"))
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

/// Where the binary is looked for: `H2SPEC` when set (and then only
/// there), else `shared/tools/h2spec` beside an ancestor; missing, the
/// message says both ways, and the failure stays a failure (a skip would
/// be a test that cannot fail).
#[test]
fn h2spec_is_found_by_h2spec_or_beside_the_clone() {
    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("work/hotproxy");
    std::fs::create_dir_all(&clone).unwrap();
    // Neither: both ways named.
    let e = find_h2spec(None, &clone).unwrap_err();
    assert!(
        e.contains("H2SPEC") && e.contains("shared/tools/h2spec"),
        "{e}"
    );
    // Beside an ancestor (a worktree under the clone's parent).
    let tools = dir.path().join("work/shared/tools");
    std::fs::create_dir_all(&tools).unwrap();
    write(&tools.join("h2spec"), "");
    assert_eq!(find_h2spec(None, &clone).unwrap(), tools.join("h2spec"));
    // H2SPEC wins, and names a file or fails naming it.
    let own = dir.path().join("bin/h2spec");
    write(&own, "");
    assert_eq!(
        find_h2spec(Some(own.clone().into_os_string()), &clone).unwrap(),
        own
    );
    let gone = dir.path().join("nowhere/h2spec");
    let e = find_h2spec(Some(gone.clone().into_os_string()), &clone).unwrap_err();
    assert!(
        e.contains("H2SPEC") && e.contains(&gone.display().to_string()),
        "{e}"
    );
}
