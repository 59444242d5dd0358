//! Settings read at startup alone (admin, store): a reload refuses a file `run` would not start with.

use std::os::unix::fs::PermissionsExt;

use crate::common::*;
use crate::support::*;

/// The proxy's configuration: the admin listener on loopback with an
/// editor token from `editor.token` (or `admin`, the section's body),
/// the store beside it (or `store`), listener `public` serving `a.crt`.
/// Read again on SIGHUP only.
fn config(admin: &str, store: &str) -> String {
    format!(
        r#"
watch: {{ events: false, poll_interval: 1h }}
admin: {admin}
store: {store}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ cert_file: a.crt, key_file: a.key }}]
"#
    )
}

const ADMIN: &str =
    "{ bind: \"127.0.0.1:0\", tokens: [{ role: editor, token_file: editor.token }] }";
const STORE: &str = "{ path: store.json, key_file: store.key }";

/// A reload to a file whose admin listener would be exposed without
/// tokens, whose token file is missing, or whose store key is readable by
/// others, was applied: "configuration reloaded", the gauge at 1, and a
/// warning that these settings apply at the next restart, which then
/// refused the file (exit 1, a crash loop), as `check` did. Each is
/// refused now as `check` refuses it: the error names the field, the
/// gauge is 0, the running configuration stays; the running file put
/// back is restored.
#[tokio::test]
async fn a_reload_refuses_what_check_refuses_in_admin_and_store() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, _) = pairs_a_and_b(&s, &ca);
    write(&s.path("editor.token"), "editor-token-5e1c9a7b3d2f4680\n");
    // 32 bytes, but readable by everyone.
    let loose = s.path("loose.key");
    std::fs::write(&loose, [7u8; 32]).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let running = config(ADMIN, STORE);
    let cfg = s.config(&running);
    let (mut p, addr) = serve(&cfg).await;
    let api = p.admin_addr().await;
    let gauge = |v: u8| format!("hotproxy_config_last_reload_successful {v}");
    wait_metric(api, &gauge(1), WAIT).await;

    let refused = [
        (
            config("{ bind: \"0.0.0.0:9901\" }", STORE),
            "admin.bind 0.0.0.0:9901 is not a loopback address and admin.tokens is empty",
        ),
        (
            config(
                "{ bind: \"127.0.0.1:0\", tokens: [{ role: editor, token_file: missing.token }] }",
                STORE,
            ),
            "admin.tokens[0].token_file ",
        ),
        (
            config(ADMIN, "{ path: store.json, key_file: loose.key }"),
            "store.key_file ",
        ),
    ];
    for (n, (text, why)) in refused.iter().enumerate() {
        // `check` refuses the file, as the next restart would.
        let file = s.path(&format!("refused{n}.yaml"));
        write(&file, text);
        let (code, out, err) = run_cli(&["check", "--config", file.to_str().unwrap()]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains(why), "{out}{err}");

        write(&cfg, text);
        p.signal("HUP");
        let event = outcome(&mut p, 2 * n).await;
        assert!(rejected(why)(&event), "{event}");
        assert!(!event.to_string().contains("editor-token"), "{event}");
        let metrics = metrics_text(api).await;
        assert!(metrics.lines().any(|l| l == gauge(0)), "{n}: {metrics}");

        // The running file back: restored, 1, the old one serving.
        write(&cfg, &running);
        p.signal("HUP");
        let event = outcome(&mut p, 2 * n + 1).await;
        assert_eq!(
            event["message"],
            "configuration restored: the file matches the running configuration again"
        );
        wait_metric(api, &gauge(1), WAIT).await;
    }
    let logs = p.logs().join("\n");
    assert!(!logs.contains("configuration reloaded"), "{logs}");
    assert!(!logs.contains("apply at the next restart"), "{logs}");
    assert_serves(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
}

/// The `nth` (from 0) outcome of reading the configuration file: reloaded,
/// rejected or restored.
async fn outcome(p: &mut Proxy, nth: usize) -> serde_json::Value {
    let is = |v: &serde_json::Value| {
        v["message"].as_str().is_some_and(|m| {
            [
                "configuration reloaded",
                "configuration rejected",
                "configuration restored",
            ]
            .iter()
            .any(|o| m.starts_with(o))
        })
    };
    p.wait_logs("a reload's outcome", nth + 1, is).await;
    let logs = p.logs();
    let mut outcomes = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(is);
    outcomes.nth(nth).unwrap()
}
