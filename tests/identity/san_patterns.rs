//! `dns_san` and `email_san` patterns no plain SAN could match: refused by `check`, a reload and the API.

use serde_json::json;

use crate::common::*;
use crate::support::*;

const AT: &str = "listeners[0].tls.client_auth.allow[0]";

/// `client_auth` verifying against the partners' CA with one rule,
/// `field: pattern`.
fn one_rule(field: &str, pattern: &str) -> String {
    format!(
        "        mode: require_and_verify\n        ca: {{ ref: partners-ca }}\n        \
         allow: [{{ {field}: {} }}]",
        json!(pattern)
    )
}

/// Patterns that can never match, each with what the refusal says to
/// write instead.
const NEVER: &[(&str, &str, &str)] = &[
    (
        "dns_san",
        "bücher.partners.example",
        "write an IDN as its `xn--` A-label",
    ),
    ("dns_san", "api.partners.example.", "no trailing dot"),
    ("dns_san", "api..partners.example", "an empty label"),
    ("dns_san", ".partners.example", "an empty label"),
    ("dns_san", "a b.partners.example", "a label is letters"),
    ("dns_san", "ops@partners.example", "a label is letters"),
    ("email_san", "ops@[10.0.0.1]", "no address literal"),
    (
        "email_san",
        "\"ops team\"@x.example",
        "a local part is a dot-atom",
    ),
    (
        "email_san",
        "ops team@x.example",
        "a local part is a dot-atom",
    ),
    ("email_san", "a@b@x.example", "a mailbox has one `@`"),
    (
        "email_san",
        "zoë@x.example",
        "a UTF-8 local part (an SmtpUTF8Mailbox) is no email SAN",
    ),
    (
        "email_san",
        "ops@bücher.example",
        "write an IDN domain as its `xn--` A-label",
    ),
    ("email_san", "ops@x.example.", "no trailing dot"),
    ("email_san", "ops@x..example", "an empty label"),
    (
        "email_san",
        "ops.x.example",
        "a mailbox is `local-part@domain`",
    ),
    ("email_san", "@x.example", "empty local part"),
    ("email_san", "ops@", "empty domain"),
    ("email_san", "*.example.", "no trailing dot"),
    ("email_san", "*b ü", "a UTF-8 local part"),
];

/// A pattern no plain SAN matches (an IDN not as its A-label, a trailing
/// dot, an address literal, a quoted local part) was accepted, and then
/// let no one in with nothing saying why. `check` refuses it, naming the
/// rule's place and field and saying what to write. Uppercase and glob
/// patterns that can match are accepted as before.
#[tokio::test]
async fn check_refuses_a_san_pattern_no_san_matches() {
    let w = world().await;
    let mut wrong = Vec::new();
    for (field, pattern, said) in NEVER {
        let path = config(&w, &one_rule(field, pattern), "", "", "");
        let (code, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()]);
        let text = format!("{out}{err}");
        let at = format!("{AT}: {field}: ");
        if code != 1 || !text.lines().any(|l| l.contains(&at) && l.contains(said)) {
            wrong.push(format!("{field}: {pattern:?}: exit {code}: {text}"));
        }
    }
    for (field, pattern) in [
        ("dns_san", "API.Partners.Example"),
        ("dns_san", "*.partners.example"),
        ("dns_san", "a*-b_c.*.example"),
        ("dns_san", "xn--bcher-kva.partners.example"),
        ("dns_san", "*"),
        ("email_san", "Ops.Team+x@Partners.EXAMPLE"),
        ("email_san", "*@*.partners.example"),
        ("email_san", "ops@*"),
        ("email_san", "*.example"),
        ("email_san", "ops*"),
        ("email_san", "*"),
    ] {
        let path = config(&w, &one_rule(field, pattern), "", "", "");
        let (code, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()]);
        if code != 0 {
            wrong.push(format!("{field}: {pattern:?} refused: {out}{err}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Such a pattern set through the API is refused with 400 naming the
/// field (not the value), and one a reload brings is rejected: the
/// running rules stay, and the client they let in (by an uppercase
/// pattern) is still let in. Both used to apply it and refuse everyone.
#[tokio::test]
async fn a_san_pattern_no_san_matches_is_refused_at_runtime() {
    let w = world().await;
    let path = config(&w, &one_rule("dns_san", "API.Partners.Example"), "", "", "");
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("partners").await;
    let api = p.admin_addr().await;
    let client = w.pki.client("c", None, &[dns("api.partners.example")]);
    let admitted = || outcome(addr, cfg_for(&w, Some(&client)), "/");
    assert_eq!(admitted().await, Outcome::Status(200));

    let put = "/api/v1/listeners/partners/client-auth";
    each_rule_refused_by_put(api, put, NEVER).await;
    assert_eq!(admitted().await, Outcome::Status(200), "after the PUTs");

    config(
        &w,
        &one_rule("dns_san", "api.partners.example."),
        "",
        "",
        "",
    );
    p.signal("HUP");
    let rejected = p
        .wait_log("the reload's outcome", |v| {
            let m = v["message"].as_str().unwrap_or("");
            m.starts_with("configuration rejected") || m == "configuration reloaded"
        })
        .await;
    let error = rejected["error"].as_str().unwrap_or("");
    assert!(
        error.contains(&format!("{AT}: dns_san: ")) && error.contains("no trailing dot"),
        "{rejected}"
    );
    assert_eq!(admitted().await, Outcome::Status(200), "after the reload");
    drop(p);
}
