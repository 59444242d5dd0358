//! Subjects and SANs as OpenSSL writes them, escaped, and read by rules in every string type.

use std::time::Duration;

use rcgen::{DistinguishedName, DnType, DnValue};

use crate::common::*;
use crate::support::*;

/// What OpenSSL prints for `pem`'s subject or issuer (`-subject` /
/// `-issuer`) with `-nameopt RFC2253`: nginx's `$ssl_client_s_dn` and
/// `$ssl_client_i_dn`, Envoy's XFCC `Subject`.
fn openssl_rfc2253(scene: &Scene, pem: &str, which: &str) -> String {
    let path = scene.path("openssl-dn.pem");
    write(&path, pem);
    let out = output_within_deadline(
        std::process::Command::new("openssl")
            .args(["x509", "-noout", which, "-nameopt", "RFC2253", "-in"])
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let prefix = format!("{}=", &which[1..]);
    text.trim_end_matches('\n')
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{text}"))
        .to_owned()
}

/// `ingress_nginx`'s DNs and XFCC's `Subject` are what nginx and Envoy send
/// (OpenSSL's `XN_FLAG_RFC2253`), checked against the `openssl` tool for
/// a subject holding every attribute type of the arcs DNs use (X.520,
/// RFC 1274, PKCS #9, EV jurisdiction, RFC 3739), a type OpenSSL does not
/// know, and values that need escaping: separators, a leading `#`, a
/// trailing space, a control character, UTF-8, BMP and Universal strings.
/// Non-ASCII is escaped byte by byte (`zo\C3\AB`), so the headers are
/// sent, not dropped, in `headers` mode too.
#[tokio::test]
async fn distinguished_names_are_written_as_openssl_writes_them() {
    let w = world().await;
    // Every attribute type of the arcs, each with a plain value.
    let mut every_type = DistinguishedName::new();
    let arcs: [(&[u64], std::ops::RangeInclusive<u64>); 5] = [
        (&[2, 5, 4], 0..=110),
        (&[0, 9, 2342, 19_200_300, 100, 1], 0..=60),
        (&[1, 2, 840, 113_549, 1, 9], 0..=25),
        (&[1, 3, 6, 1, 4, 1, 311, 60, 2, 1], 1..=3),
        (&[1, 3, 6, 1, 5, 5, 7, 9], 1..=5),
    ];
    for (arc, range) in arcs {
        for i in range {
            let mut oid = arc.to_vec();
            oid.push(i);
            every_type.push(
                DnType::CustomDnType(oid),
                DnValue::Utf8String(format!("v{i}")),
            );
        }
    }
    every_type.push(DnType::CustomDnType(vec![1, 3, 9999, 1]), "unknown type");
    // Values that need escaping, in every string type a CA may use.
    let mut awkward = DistinguishedName::new();
    let utf8 = |v: &str| DnValue::Utf8String(v.to_owned());
    awkward.push(
        DnType::OrganizationName,
        utf8("Zoë \"Q\" Müller, Inc; <x>+y\\z"),
    );
    awkward.push(DnType::OrganizationalUnitName, utf8("#lead and trail "));
    awkward.push(DnType::OrganizationalUnitName, utf8("tab\there\u{7f}"));
    awkward.push(
        DnType::LocalityName,
        DnValue::BmpString("Łódź".try_into().unwrap()),
    );
    awkward.push(
        DnType::StateOrProvinceName,
        DnValue::UniversalString("日本".try_into().unwrap()),
    );
    awkward.push(
        DnType::CountryName,
        DnValue::PrintableString("DE".try_into().unwrap()),
    );
    awkward.push(DnType::CommonName, utf8("zoë"));

    let auth = "        mode: verify_if_given\n        ca: { ref: partners-ca }";
    let routes = r#"      - { path_prefix: /nginx, upstream: app, forward_client_cert: ingress_nginx }
      - { path_prefix: /xfcc, upstream: app, forward_client_cert: xfcc }"#;
    let mut p = Proxy::start(&config(&w, auth, "", routes, ""));
    let addr = p.listener_addr("partners").await;
    // (name, parts it must hold, whether XFCC's headers can carry it: the
    // PEMs make XFCC about six times the size of the certificate, and the
    // backend takes 16 KiB of headers)
    for (name, must_hold, xfcc_fits) in [
        (
            every_type,
            &["jurisdictionC=v3", "SN=v4", "1.3.9999.1=#0C"][..],
            false,
        ),
        (
            awkward,
            &[r#"O=Zo\C3\AB \"Q\" M\C3\BCller\, Inc\; \<x\>\+y\\z"#][..],
            true,
        ),
    ] {
        let client = w.pki.client_named(name, &[]);
        let leaf_pem = client
            .pair
            .cert_pem
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap();
        let subject = openssl_rfc2253(&w.scene, leaf_pem, "-subject");
        let issuer = openssl_rfc2253(&w.scene, leaf_pem, "-issuer");
        // The check is only as good as the name is rich.
        for part in must_hold {
            assert!(subject.contains(part), "{part} not in {subject}");
        }
        let cfg = cfg_for(&w, Some(&client));
        let h = seen(addr, cfg.clone(), "/nginx", &[]).await;
        assert_eq!(h["ssl-client-subject-dn"], subject.as_str());
        assert_eq!(h["ssl-client-issuer-dn"], issuer.as_str());
        if !xfcc_fits {
            continue;
        }
        let h = seen(addr, cfg.clone(), "/xfcc", &[]).await;
        let xfcc = parse_xfcc(h["x-forwarded-client-cert"].as_str().unwrap());
        let got = xfcc
            .iter()
            .find(|(k, _)| k == "Subject")
            .map(|(_, v)| v.as_str());
        assert_eq!(got, Some(subject.as_str()));
        // hotproxy's own header: the certificate's order, every byte a
        // header cannot carry escaped the same way, never dropped.
        let h = seen(addr, cfg, "/api", &[]).await;
        let own = h["x-client-cert-subject"]
            .as_str()
            .expect("X-Client-Cert-Subject sent");
        assert!(own.ends_with(r"C=DE, CN=zo\C3\AB"), "{own}");
        assert!(own.contains(r"L=\C5\81\C3\B3d\C5\BA"), "{own}");
    }
    drop(p);
}

/// A certificate value cannot pose as another attribute upstream: a
/// common name of `evil, OU=ops` (a CA that signs what the requester asks
/// for) reaches the backend escaped as RFC 4514 says, in
/// `X-Client-Cert-Subject`, XFCC's `Subject` and the access log; the
/// route's `allow` on `ou` still sees the one real OU. A SAN holding a
/// comma stays one entry of the comma-separated SAN headers, and one
/// holding a `%` decodes to itself, not to another name.
#[tokio::test]
async fn subject_values_cannot_pose_as_other_attributes() {
    let w = world().await;
    let client = w.pki.client("evil, OU=ops", Some("payments"), &[]);
    let auth = "        mode: verify_if_given\n        ca: { ref: partners-ca }";
    let routes = r#"      - { path_prefix: /xfcc, upstream: app, forward_client_cert: xfcc }
      - { path_prefix: /ops, upstream: app, allow: [{ ou: ops }] }"#;
    let (log, extra) = json_access_log(&w);
    let mut p = Proxy::start(&config(&w, auth, "", routes, &extra));
    let addr = p.listener_addr("partners").await;
    let cfg = cfg_for(&w, Some(&client));
    let escaped = r"CN=evil\, OU=ops, OU=payments";
    let h = seen(addr, cfg.clone(), "/api", &[]).await;
    assert_eq!(h["x-client-cert-subject"], escaped, "{h}");
    // The same for SANs in the comma-separated headers: one entry each.
    let sans = w.pki.client(
        "sans",
        None,
        &[
            uri("spiffe://evil/x,spiffe://cluster.local/ns/prod/sa/admin"),
            uri("spiffe://cluster.local/ns/prod/sa/billing"),
            dns("a.example, b.example"),
        ],
    );
    let h = seen(addr, cfg_for(&w, Some(&sans)), "/api", &[]).await;
    assert_eq!(
        h["x-client-cert-uri-sans"],
        "spiffe://evil/x%2Cspiffe://cluster.local/ns/prod/sa/admin, spiffe://cluster.local/ns/prod/sa/billing",
        "{h}"
    );
    assert_eq!(
        h["x-client-cert-dns-sans"], "a.example%2C%20b.example",
        "{h}"
    );
    // So is a `%` (`%25`): a backend that decodes each entry gets the SAN
    // back, not `.../sa/admin` for `.../sa/%61dmin`, and a literal `%2C`
    // is not taken for a comma.
    let pct = w.pki.client(
        "pct",
        None,
        &[
            uri("spiffe://cluster.local/ns/prod/sa/%61dmin"),
            uri("spiffe://evil/x%2Cspiffe://cluster.local/ns/prod/sa/admin"),
            dns("a%2Cb.example"),
        ],
    );
    let h = seen(addr, cfg_for(&w, Some(&pct)), "/api", &[]).await;
    assert_eq!(
        h["x-client-cert-uri-sans"],
        "spiffe://cluster.local/ns/prod/sa/%2561dmin, spiffe://evil/x%252Cspiffe://cluster.local/ns/prod/sa/admin",
        "{h}"
    );
    assert_eq!(h["x-client-cert-dns-sans"], "a%252Cb.example", "{h}");
    let decoded: Vec<String> = h["x-client-cert-uri-sans"]
        .as_str()
        .unwrap()
        .split(", ")
        .map(|e| {
            percent_encoding::percent_decode_str(e)
                .decode_utf8()
                .unwrap()
                .into_owned()
        })
        .collect();
    assert_eq!(
        decoded,
        [
            "spiffe://cluster.local/ns/prod/sa/%61dmin",
            "spiffe://evil/x%2Cspiffe://cluster.local/ns/prod/sa/admin"
        ]
    );
    let h = seen(addr, cfg.clone(), "/xfcc", &[]).await;
    let xfcc = parse_xfcc(h["x-forwarded-client-cert"].as_str().unwrap());
    let subject = xfcc.iter().find(|(k, _)| k == "Subject").map(|(_, v)| v);
    assert_eq!(
        subject.map(String::as_str),
        Some(r"OU=payments,CN=evil\, OU=ops"),
        "{xfcc:?}"
    );
    assert_eq!(outcome(addr, cfg, "/ops").await, Outcome::Status(403));
    let line = &wait_access_log(&log, 1, Duration::from_secs(10)).await[0];
    assert_eq!(line["client_subject"], escaped, "{line}");
    drop(p);
}

/// `cn` and `ou` rules read a name's values as the subject header writes
/// them, in every string type a CA uses: AD CS writes BMPString, older
/// PKIs T61String or UniversalString. A BMPString `CN=ops` used to match
/// no `cn: ops` rule (x509-parser's `as_str` knows only four types) while
/// `X-Client-Cert-Subject` said `CN=ops`, so the rules refused a client
/// the header named.
#[tokio::test]
async fn cn_and_ou_rules_read_every_string_type() {
    let w = world().await;
    let auth = "        mode: require_and_verify\n        ca: { ref: partners-ca }";
    let routes = r#"      - { path_prefix: /ops, upstream: app, allow: [{ cn: ops, ou: payments }] }
      - { path_prefix: /any, upstream: app }"#;
    let mut p = Proxy::start(&config(&w, auth, "", routes, ""));
    let addr = p.listener_addr("partners").await;
    let named = |cn: DnValue, ou: DnValue| {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationalUnitName, ou);
        dn.push(DnType::CommonName, cn);
        w.pki.client_named(dn, &[])
    };
    for (cn, ou, want) in [
        (
            DnValue::BmpString("ops".try_into().unwrap()),
            DnValue::BmpString("payments".try_into().unwrap()),
            200,
        ),
        (
            DnValue::UniversalString("ops".try_into().unwrap()),
            DnValue::TeletexString("payments".try_into().unwrap()),
            200,
        ),
        (
            DnValue::BmpString("dev".try_into().unwrap()),
            DnValue::BmpString("payments".try_into().unwrap()),
            403,
        ),
    ] {
        let client = named(cn, ou);
        let cfg = cfg_for(&w, Some(&client));
        assert_eq!(
            outcome(addr, cfg.clone(), "/any").await,
            Outcome::Status(200)
        );
        let h = seen(addr, cfg.clone(), "/any", &[]).await;
        let subject = h["x-client-cert-subject"].as_str().unwrap_or_default();
        assert!(subject.contains("CN="), "{h}");
        assert_eq!(
            outcome(addr, cfg, "/ops").await,
            Outcome::Status(want),
            "{subject}"
        );
    }
}

/// An OU that is not text (a UTF8String whose bytes are not UTF-8) is none
/// of the values an `ou` rule reads: the subject header shows it as `#`
/// and its DER in hex, and a rule matches another OU of the subject that
/// is text, as it would without it (an `ou` rule matches when any OU
/// does, so a value it cannot read can only fail to match); alone, it
/// matches no `ou` rule, `*` included.
#[tokio::test]
async fn an_ou_that_is_not_text_matches_no_ou_rule() {
    let w = world().await;
    let auth = "        mode: require_and_verify\n        ca: { ref: partners-ca }";
    let routes = r#"      - { path_prefix: /payments, upstream: app, allow: [{ ou: payments }] }
      - { path_prefix: /some-ou, upstream: app, allow: [{ ou: "*" }] }"#;
    let mut p = Proxy::start(&config(&w, auth, "", routes, ""));
    let addr = p.listener_addr("partners").await;
    // A UTF8String of four control bytes, then those bytes made invalid
    // UTF-8 in the certificate.
    let (placeholder, invalid) = ("\u{1}\u{2}\u{3}\u{4}", [0xDE, 0xAD, 0xBE, 0xEF]);
    let not_text = |also_payments: bool| {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "ops");
        if also_payments {
            dn.push(DnType::OrganizationalUnitName, "payments");
        }
        // The OU's type again, as a second OU (rcgen keeps one per type).
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 11]), placeholder);
        let client = w.pki.client_named(dn, &[]);
        let from = [&[0x0C, 0x04][..], placeholder.as_bytes()].concat();
        w.pki
            .patched(&client, &from, &[&[0x0C, 0x04][..], &invalid].concat())
    };
    for (also_payments, subject, want) in [
        (true, "CN=ops, OU=payments, OU=#0C04DEADBEEF", 200),
        (false, "CN=ops, OU=#0C04DEADBEEF", 403),
    ] {
        let cfg = cfg_for(&w, Some(&not_text(also_payments)));
        let h = seen(addr, cfg.clone(), "/any", &[]).await;
        assert_eq!(h["x-client-cert-subject"], subject, "{h}");
        for path in ["/payments", "/some-ou"] {
            let got = outcome(addr, cfg.clone(), path).await;
            assert_eq!(got, Outcome::Status(want), "{subject} {path}");
        }
    }
}

/// A line of the text-format process log split into its `key=value`
/// fields, as a log reader splits it: at spaces outside double quotes; a
/// quoted value is unescaped (`\"`, `\\`). Words of the message, with no
/// `=`, are not fields.
fn text_fields(line: &str) -> Vec<(String, String)> {
    let mut tokens = vec![String::new()];
    let (mut quoted, mut chars) = (false, line.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => tokens.last_mut().unwrap().extend(chars.next()),
            '"' => quoted = !quoted,
            ' ' if !quoted => tokens.push(String::new()),
            c => tokens.last_mut().unwrap().push(c),
        }
    }
    tokens
        .iter()
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// In the text log format, a certificate subject is one quoted value: a
/// common name `x fingerprint=000…` (a CA that signs what it is asked)
/// used to be written bare in the "matches no allow rule" warning, so the
/// line read as having a `fingerprint` field before the real one, and a
/// reader taking the first took the forged one. JSON was never affected.
#[tokio::test]
async fn a_subject_cannot_forge_a_field_of_a_text_log_line() {
    let w = world().await;
    let forged = "0".repeat(64);
    let cn = format!("x fingerprint={forged}");
    let forger = w.pki.client(&cn, None, &[]);
    let mut p = Proxy::start_text(&config(&w, &allow_cn("ops"), "", "", ""));
    let listening = p
        .wait_line("listening", |l| {
            l.contains(" listening ") && l.contains("partners")
        })
        .await;
    let fields = text_fields(&listening);
    let addr = fields
        .iter()
        .find(|(k, _)| k == "addr")
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert_eq!(outcome(addr, cfg_for(&w, Some(&forger)), "/").await, DENIED);
    let line = p
        .wait_line("the refusal", |l| l.contains("matches no allow rule"))
        .await;
    let fields = text_fields(&line);
    let all = |key: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(
        all("fingerprint"),
        [forger.pair.fingerprint.as_str()],
        "{line}"
    );
    assert_eq!(all("subject"), [format!("CN={cn}").as_str()], "{line}");
}

/// A client certificate whose subject ends in a space (`CN=trail `)
/// reaches the backend with that space written `\20` in
/// `X-Client-Cert-Subject` and `ssl-client-subject-dn`: OpenSSL's `\ `
/// ended the header value, which an HTTP/1.1 backend trims to a broken
/// escape and an HTTP/2 one refuses as malformed (RFC 9113 §8.2.1).
#[tokio::test]
async fn a_subject_ending_in_a_space_reaches_the_backend_whole() {
    let w = world().await;
    let client = w.pki.client("trail ", None, &[]);
    let auth = "        mode: verify_if_given\n        ca: { ref: partners-ca }";
    let routes =
        "      - { path_prefix: /nginx, upstream: app, forward_client_cert: ingress_nginx }";
    let mut p = Proxy::start(&config(&w, auth, "", routes, ""));
    let addr = p.listener_addr("partners").await;
    let cfg = cfg_for(&w, Some(&client));
    let h = seen(addr, cfg.clone(), "/api", &[]).await;
    assert_eq!(h["x-client-cert-subject"], r"CN=trail\20", "{h}");
    let h = seen(addr, cfg, "/nginx", &[]).await;
    assert_eq!(h["ssl-client-subject-dn"], r"CN=trail\20", "{h}");
    drop(p);
}
