//! `cn`, `ou` and `uri_san` patterns no value could match: refused by `check`, a reload and the API.

use std::process::{Command, Stdio};

use serde_json::json;

use crate::common::*;
use crate::support::*;

const AT: &str = "listeners[0].tls.client_auth.allow[0]";

/// `client_auth` verifying against the partners' CA with one rule,
/// `field: pattern`, every control character escaped (YAML refuses a raw
/// DEL or C1 one, JSON escapes only C0).
fn one_rule(field: &str, pattern: &str) -> String {
    let written: String = json!(pattern)
        .to_string()
        .chars()
        .map(|c| match c.is_control() {
            true => format!("\\u{:04x}", c as u32),
            false => c.to_string(),
        })
        .collect();
    format!(
        "        mode: require_and_verify\n        ca: {{ ref: partners-ca }}\n        \
         allow: [{{ {field}: {written} }}]"
    )
}

/// Patterns no CN, OU or plain URI SAN can match, each with what the
/// refusal says.
const NEVER: &[(&str, &str, &str)] = &[
    ("cn", "ops\r", "a CN or OU holds no control character"),
    ("cn", "ops\u{0}", "a CN or OU holds no control character"),
    ("cn", "*\n.svc", "a CN or OU holds no control character"),
    ("ou", "emea\t", "a CN or OU holds no control character"),
    ("ou", "a\u{85}b", "a CN or OU holds no control character"),
    ("uri_san", "spiffe://td/ns/prod/sa/my%20svc", "no `%`"),
    ("uri_san", "spiffe://td/ns/prod/sa/web?x", "no `%`"),
    ("uri_san", "spiffe://td/ns/prod/sa/web#x", "no `%`"),
    ("uri_san", "spiffe://td/ns/prod/..;/admin", "no `%`"),
    ("uri_san", "spiffe://td/ns/prod\\sa", "no `%`"),
    ("uri_san", "spiffe://td/ns/../x", "no `.` or `..` segment"),
    ("uri_san", "spiffe://td/ns/./x/**", "no `.` or `..` segment"),
    ("uri_san", "spiffe://td/ns/*/..", "no `.` or `..` segment"),
    ("uri_san", "spiffe://td/ns/a b", "printable ASCII"),
    ("uri_san", "spiffe://td/ns/w\u{e9}b", "printable ASCII"),
    ("uri_san", "spiffe://td/ns/web\u{7f}", "printable ASCII"),
];

/// Patterns a value can match: accepted as before.
const GOOD: &[(&str, &str)] = &[
    ("cn", "José *"),
    ("cn", "*.svc"),
    ("cn", "ops"),
    ("ou", "Platform Team"),
    ("uri_san", "spiffe://td/ns/*/sa/*"),
    ("uri_san", "spiffe://td/**"),
    ("uri_san", "spiffe://td/ns/*/sa/web.v2"),
    ("uri_san", "spiffe://td/ns/.well-known/x"),
];

/// `hotproxy check` of `path` with `env` set: (exit code, output).
fn check(path: &std::path::Path, env: &[(&str, &str)]) -> (i32, String) {
    let out = output_within_deadline(
        Command::new(env!("CARGO_BIN_EXE_hotproxy"))
            .args(["check", "--config", path.to_str().unwrap()])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A `cn`/`ou` pattern with a control character, or a `uri_san` one
/// holding what no plain URI SAN holds, was accepted and then let no one
/// in with nothing saying why. `check` refuses it, naming the rule's place
/// and field and saying what to write; `cn: ${ALLOWED_CN}` from a CRLF env
/// file (Docker's `--env-file` keeps the `\r`) alike.
#[tokio::test]
async fn check_refuses_a_cn_ou_or_uri_pattern_no_value_matches() {
    let w = world().await;
    let mut wrong = Vec::new();
    let never = NEVER.iter().map(|&(f, p, s)| (f, p, s, None));
    let from_env = ("cn", "${ALLOWED_CN}", NEVER[0].2, Some("ops\r"));
    for (field, pattern, said, env) in never.chain([from_env]) {
        let path = config(&w, &one_rule(field, pattern), "", "", "");
        let env: Vec<_> = env.map(|v| ("ALLOWED_CN", v)).into_iter().collect();
        let (code, text) = check(&path, &env);
        let at = format!("{AT}: {field}: ");
        if code != 1 || !text.lines().any(|l| l.contains(&at) && l.contains(said)) {
            wrong.push(format!("{field}: {pattern:?}: exit {code}: {text}"));
        }
    }
    for (field, pattern) in GOOD {
        let path = config(&w, &one_rule(field, pattern), "", "", "");
        let (code, text) = check(&path, &[]);
        if code != 0 {
            wrong.push(format!("{field}: {pattern:?} refused: {text}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Such a pattern set through the API is refused with 400 naming the
/// field (not the value), and `cn: ${ALLOWED_CN}` a reload brings with the
/// variable ending in `\r` is rejected: the running rules stay, and the
/// client they let in is still let in. Both used to apply the pattern and
/// refuse everyone.
#[tokio::test]
async fn a_cn_ou_or_uri_pattern_no_value_matches_is_refused_at_runtime() {
    let w = world().await;
    let path = config(&w, &one_rule("cn", "ops"), "", "", "");
    let mut p = Proxy::start_logging(&path, "info", &[("ALLOWED_CN", "ops\r")]);
    let addr = p.listener_addr("partners").await;
    let api = p.admin_addr().await;
    let client = w
        .pki
        .client("ops", None, &[uri("spiffe://td/ns/prod/sa/web")]);
    let admitted = || outcome(addr, cfg_for(&w, Some(&client)), "/");
    assert_eq!(admitted().await, Outcome::Status(200));

    let put = "/api/v1/listeners/partners/client-auth";
    each_rule_refused_by_put(api, put, NEVER).await;
    assert_eq!(admitted().await, Outcome::Status(200), "after the PUTs");
    for (field, pattern) in GOOD.iter().chain(&[("uri_san", "spiffe://td/ns/prod/**")]) {
        let body = json!({"mode": "require_and_verify", "allow": [{*field: pattern}]});
        let r = admin(api, "PUT", put, Some(EDITOR), Some(body), &[]).await;
        assert_eq!(r.status, 200, "{field}: {pattern:?}: {}", r.body);
    }
    // The last rule taken, `spiffe://td/ns/prod/**`, lets the client in.
    assert_eq!(admitted().await, Outcome::Status(200), "by its URI SAN");

    config(&w, &one_rule("cn", "${ALLOWED_CN}"), "", "", "");
    p.signal("HUP");
    let rejected = p
        .wait_log("the reload's outcome", |v| {
            let m = v["message"].as_str().unwrap_or("");
            m.starts_with("configuration rejected") || m == "configuration reloaded"
        })
        .await;
    let error = rejected["error"].as_str().unwrap_or("");
    assert!(
        error.contains(&format!("{AT}: cn: ")) && error.contains(NEVER[0].2),
        "{rejected}"
    );
    assert_eq!(admitted().await, Outcome::Status(200), "after the reload");
    drop(p);
}
