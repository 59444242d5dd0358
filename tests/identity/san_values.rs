//! Values no CA should issue: email and DNS SANs with a NUL, a space, a second `@` or non-ASCII match no rule.

use rcgen::{CustomExtension, SanType};

use crate::common::*;
use crate::support::*;

/// The subjectAltName extension holding `names` as written, each a
/// context tag (`0x81` rfc822Name, `0x82` dNSName) and its bytes: rcgen
/// encodes no IA5String that is not ASCII, a CA signing what it is asked
/// does.
fn raw_san(names: &[(u8, &[u8])]) -> CustomExtension {
    let mut body = Vec::new();
    for (tag, value) in names {
        body.push(*tag);
        body.push(u8::try_from(value.len()).unwrap());
        body.extend_from_slice(value);
    }
    assert!(body.len() < 128, "short form lengths only");
    let mut san = vec![0x30, body.len() as u8];
    san.extend(body);
    CustomExtension::from_oid_content(&[2, 5, 29, 17], san)
}

fn email(e: &str) -> SanType {
    SanType::Rfc822Name(e.try_into().unwrap())
}

/// With `email_san: "*@partners.example"` and `dns_san:
/// "*.partners.example"`, a CA that signs what it is asked for could let
/// `victim@other.example\0@partners.example` in (`*` matched `@`, NUL and
/// control bytes), or `x\0y.partners.example` (`*` matched them within a
/// label): a backend or log reading up to the NUL, or the first `@`, reads
/// another identity than the rule matched. An email SAN is a mailbox
/// (RFC 5280 §4.2.1.6: `local-part@domain`, ASCII; a UTF-8 one is an
/// SmtpUTF8Mailbox, RFC 8398), a DNS SAN a host name (letters, digits,
/// `-`, `_`; an IDN as its `xn--` A-label): any other matches no rule,
/// refused in the handshake with `access_denied` as any client no rule
/// lets in. Plain ones still match, a wildcard DNS SAN as before.
#[tokio::test]
async fn email_and_dns_sans_no_ca_should_issue_match_no_rule() {
    let w = world().await;
    let auth = r#"        mode: require_and_verify
        ca: { ref: partners-ca }
        allow:
          - email_san: "*@partners.example"
          - dns_san: "*.partners.example""#;
    let mut p = Proxy::start(&config(&w, auth, "", "", ""));
    let addr = p.listener_addr("partners").await;
    let pki = &w.pki;
    let with = |san: SanType| pki.client("c", None, &[san]);
    let raw =
        |tag: u8, value: &str| pki.client_with_extension("c", raw_san(&[(tag, value.as_bytes())]));
    let admitted = [
        ("a plain email SAN", with(email("alice@partners.example"))),
        (
            "dots and + in the local part",
            with(email("Alice.Smith+ops@Partners.example")),
        ),
        ("a plain DNS SAN", with(dns("api.partners.example"))),
        ("- and _ in a label", with(dns("api-2_b.partners.example"))),
        ("an IDN's A-label", with(dns("xn--zo-cka.partners.example"))),
        ("a wildcard DNS SAN", with(dns("*.partners.example"))),
    ];
    let refused = [
        (
            "a NUL and a second @",
            with(email("victim@other.example\0@partners.example")),
        ),
        ("a second @", with(email("a@evil.example@partners.example"))),
        ("a space", with(email("a b@partners.example"))),
        ("a tab", with(email("a\t@partners.example"))),
        (
            "a quoted local part",
            with(email("\"a b\"@partners.example")),
        ),
        ("a control byte", with(email("a\u{1}b@partners.example"))),
        ("a UTF-8 mailbox", raw(0x81, "zoë@partners.example")),
        ("a NUL in a label", with(dns("x\0y.partners.example"))),
        ("a space in a label", with(dns("a b.partners.example"))),
        ("a / in a label", with(dns("a/b.partners.example"))),
        ("an @ in a label", with(dns("a@b.partners.example"))),
        ("a DEL in a label", with(dns("a\u{7f}.partners.example"))),
        (
            "a wildcard not a whole label",
            with(dns("a*.partners.example")),
        ),
        ("a UTF-8 label", raw(0x82, "zoë.partners.example")),
    ];
    // Every case's outcome, then one assertion: a failure names them all.
    let mut wrong = Vec::new();
    let cases = admitted.iter().map(|c| (c, Outcome::Status(200)));
    for ((what, client), want) in cases.chain(refused.iter().map(|c| (c, DENIED))) {
        let got = outcome(addr, cfg_for(&w, Some(client)), "/").await;
        if got != want {
            wrong.push((*what, got));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    drop(p);
}
