//! Subject values no CA should issue: a CN or OU with a NUL or a control character matches no `cn` or `ou` rule.

use rcgen::{DistinguishedName, DnType, DnValue};

use crate::common::*;
use crate::support::*;

/// A subject of the common name `cn` and, when given, the OU `ou`.
fn subject(cn: DnValue, ou: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(ou) = ou {
        dn.push(DnType::OrganizationalUnitName, ou);
    }
    dn
}

fn utf8(v: &str) -> DnValue {
    DnValue::Utf8String(v.to_owned())
}

/// Subjects, each named for a failure message.
type Cases = Vec<(&'static str, DistinguishedName)>;

/// Spaces and letters that are not ASCII are a name's own (`José
/// Smith`); NUL, C0 controls, DEL and C1 controls are not, in any string
/// type. A CA that signs what it is asked could let `evil\0x.svc` in
/// under `cn: "*.svc"` (`*` matched them): a C backend reading the
/// subject, or the CN hotproxy vouches for, up to the NUL reads `evil`.
fn cases() -> (Cases, Cases) {
    let cn = |v: &str| subject(utf8(v), None);
    let ou = |v: &str| subject(utf8("ops"), Some(v));
    // A second OU beside a plain one (rcgen keeps one value per type).
    let mut two_ous = ou("Platform Team");
    two_ous.push(DnType::CustomDnType(vec![2, 5, 4, 11]), "Platform \0admin");
    let admitted = vec![
        ("a plain CN", cn("api.svc")),
        ("a CN with a space and an accent", cn("José Smith")),
        ("a CN with letters not ASCII", cn("zoë.svc")),
        ("an OU with a space", ou("Platform Team")),
        ("a plain OU beside one with a NUL", two_ous),
        (
            "a BMPString CN",
            subject(DnValue::BmpString("api.svc".try_into().unwrap()), None),
        ),
    ];
    let refused = vec![
        ("a NUL in the CN", cn("evil\0x.svc")),
        ("a LF in the CN", cn("a\nb.svc")),
        ("a tab in the CN", cn("a\tb.svc")),
        ("a DEL in the CN", cn("a\u{7f}b.svc")),
        ("a C1 NEL in the CN", cn("a\u{85}b.svc")),
        ("a C1 CSI in the CN", cn("a\u{9b}b.svc")),
        ("a NUL after the space", cn("José \0Smith")),
        (
            "a NUL in a BMPString CN",
            subject(DnValue::BmpString("evil\0x.svc".try_into().unwrap()), None),
        ),
        (
            "a DEL in a T61String CN",
            subject(
                DnValue::TeletexString("a\u{7f}b.svc".try_into().unwrap()),
                None,
            ),
        ),
        ("a NUL in the OU", ou("Platform \0admin")),
        ("a CR LF in the OU", ou("Platform \r\nadmin")),
        ("a C1 control in the OU", ou("Platform \u{90}admin")),
    ];
    (admitted, refused)
}

/// The rules both tests read, indented for a listener's or a route's `allow`.
const RULES: &str = r#"          - cn: "*.svc"
          - cn: "José *"
          - ou: "Platform *""#;

/// A listener letting in `cn: "*.svc"`, `cn: "José *"` and `ou:
/// "Platform *"` refuses in the handshake (`access_denied`, as any client
/// no rule lets in) a subject whose CN or OU holds a NUL or a control
/// character (C0, DEL, C1), in a UTF8String, BMPString or T61String;
/// `api.svc`, `José Smith`, `zoë.svc` and `Platform Team` are let in,
/// the last also beside an OU with a NUL (an `ou` rule matches when any
/// OU does; the one with the NUL is none it reads).
#[tokio::test]
async fn cn_and_ou_with_control_characters_match_no_rule() {
    let w = world().await;
    let auth = format!(
        "        mode: require_and_verify\n        ca: {{ ref: partners-ca }}\n        allow:\n{RULES}"
    );
    let mut p = Proxy::start(&config(&w, &auth, "", "", ""));
    let addr = p.listener_addr("partners").await;
    let (admitted, refused) = cases();
    // Every case's outcome, then one assertion: a failure names them all.
    let mut wrong = Vec::new();
    let cases = admitted.into_iter().map(|c| (c, Outcome::Status(200)));
    for ((what, dn), want) in cases.chain(refused.into_iter().map(|c| (c, DENIED))) {
        let client = w.pki.client_named(dn, &[]);
        let got = outcome(addr, cfg_for(&w, Some(&client)), "/").await;
        if got != want {
            wrong.push((what, got));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    drop(p);
}

/// The same rules on a route (`403`), on a listener that lets every
/// verified client in: the subject header shows each such value escaped
/// as RFC 4514 says (`\00`, `\0A`, `\7F`, a C1 control's UTF-8 bytes), so
/// a backend never reads a NUL or a line break there.
#[tokio::test]
async fn cn_and_ou_with_control_characters_are_escaped_and_refused_by_a_route() {
    let w = world().await;
    let auth = "        mode: require_and_verify\n        ca: { ref: partners-ca }";
    let routes =
        format!("      - path_prefix: /only\n        upstream: app\n        allow:\n{RULES}");
    let mut p = Proxy::start(&config(&w, auth, "", &routes, ""));
    let addr = p.listener_addr("partners").await;
    let (admitted, refused) = cases();
    let headers: [&str; 18] = [
        r"CN=api.svc",
        r"CN=Jos\C3\A9 Smith",
        r"CN=zo\C3\AB.svc",
        r"CN=ops, OU=Platform Team",
        r"CN=ops, OU=Platform Team, OU=Platform \00admin",
        r"CN=api.svc",
        r"CN=evil\00x.svc",
        r"CN=a\0Ab.svc",
        r"CN=a\09b.svc",
        r"CN=a\7Fb.svc",
        r"CN=a\C2\85b.svc",
        r"CN=a\C2\9Bb.svc",
        r"CN=Jos\C3\A9 \00Smith",
        r"CN=evil\00x.svc",
        r"CN=a\7Fb.svc",
        r"CN=ops, OU=Platform \00admin",
        r"CN=ops, OU=Platform \0D\0Aadmin",
        r"CN=ops, OU=Platform \C2\90admin",
    ];
    let mut wrong = Vec::new();
    let cases = admitted.into_iter().map(|c| (c, 200));
    let cases = cases.chain(refused.into_iter().map(|c| (c, 403)));
    for (((what, dn), want), header) in cases.zip(headers) {
        let client = w.pki.client_named(dn, &[]);
        let cfg = cfg_for(&w, Some(&client));
        let h = seen(addr, cfg.clone(), "/any", &[]).await;
        if h["x-client-cert-subject"] != header {
            wrong.push((what, h["x-client-cert-subject"].to_string()));
        }
        let got = outcome(addr, cfg, "/only").await;
        if got != Outcome::Status(want) {
            wrong.push((what, format!("{got:?}")));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    drop(p);
}
