//! The configuration file read, parsed and resolved as a whole: syntax, FIFOs, aliases, defaults.

use super::*;

pub(super) fn parse_str(text: &str) -> Result<Config, ConfigError> {
    parse(text, Path::new("/etc/hotproxy/config.yaml"))
}

pub(super) fn messages(e: &ConfigError) -> String {
    e.render()
}

/// A FIFO, a directory, a huge file or binary where the configuration
/// should be: refused at once, naming the file and why, never blocking.
#[test]
fn only_a_regular_text_file_is_read() {
    use crate::fsutil::test_support::{mkfifo, within_bounded_time};
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo.yaml");
    mkfifo(&fifo);
    let big = d.path().join("big.yaml");
    std::fs::write(&big, vec![b'#'; (MAX_CONFIG_BYTES + 1) as usize]).unwrap();
    let binary = d.path().join("binary.yaml");
    std::fs::write(&binary, [b'a', 0xff, 0xfe]).unwrap();
    for (path, why) in [
        (fifo, "not a regular file (a FIFO)"),
        (d.path().to_path_buf(), "not a regular file (a directory)"),
        (big, "larger than the 4194304-byte limit"),
        (binary, "not UTF-8 text (byte 1)"),
    ] {
        let p = path.clone();
        let e = within_bounded_time("config::read", move || read(&p)).unwrap_err();
        let m = messages(&e);
        assert!(m.contains(&path.display().to_string()), "{m}");
        assert!(m.contains(why), "{m}");
    }
}

/// A YAML error quoting a huge scalar is cut short: a log line, not
/// the file.
#[test]
fn a_syntax_error_does_not_quote_the_whole_file() {
    let text = "a".repeat(100_000);
    let m = messages(&parse_str(&text).unwrap_err());
    assert!(m.len() < 1_000, "{} bytes: {}", m.len(), &m[..200]);
    assert!(m.contains("expected a mapping"), "{m}");
}

pub(super) const MINIMAL: &str = "
certs:
  - id: edge
    type: server-pair
    cert_file: pki/server.crt
    key_file: pki/server.key
  - id: ca
    type: ca-bundle
    ca_file: pki/ca.crt
  - id: client
    type: client-pair
    cert_file: pki/client.crt
    key_file: pki/client.key
listeners:
  - name: public
    bind: 127.0.0.1:8443
    tls:
      certs: [{ ref: edge }]
    routes: [{ upstream: api }]
upstreams:
  - name: api
    servers: [https://127.0.0.1:9443]
    tls:
      ca: { ref: ca }
      client_cert: { ref: client }
";

/// A missing required field is reported at its own path, so the other
/// problems of its section come in the same run: a listener without
/// `bind` whose limits are also wrong gets both, where the missing
/// field used to hide every problem under `listeners[0]`.
#[test]
fn a_missing_field_hides_nothing_else_in_its_section() {
    let text = MINIMAL.replace("    bind: 127.0.0.1:8443\n", "").replace(
        "routes: [{ upstream: api }]",
        "routes: [{ upstream: nowhere }]\n    limits: { send_timeout: 0s }",
    );
    let m = messages(&parse_str(&text).unwrap_err());
    for want in [
        "listeners[0].bind",
        "listeners[0].limits.send_timeout",
        "listeners[0].routes[0].upstream",
    ] {
        assert!(m.contains(want), "{want}: {m}");
    }
}

/// The shipped config.yaml (the demo's) parses and names its entries.
#[test]
fn shipped_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml");
    let c = load(&path).unwrap_or_else(|e| panic!("{}", e.render()));
    let ids: Vec<_> = c.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["edge", "demo-ca", "backend-client"]);
    assert_eq!(
        c.listeners[0].client_auth.mode,
        ClientAuthMode::VerifyIfGiven
    );
    assert_eq!(c.upstreams[0].tls.server_name.as_deref(), Some("localhost"));
    assert_eq!(c.upstreams[0].max_connections_per_server, 1024);
}

/// read_timeout defaults to nginx's proxy_read_timeout, is read, and a
/// zero (which would cut every body that waits) is refused by name.
#[test]
fn upstream_read_timeout() {
    let c = parse_str(MINIMAL).unwrap();
    assert_eq!(c.upstreams[0].read_timeout, Duration::from_secs(60));
    let set = MINIMAL.replace(
        "servers: [https://127.0.0.1:9443]",
        "servers: [https://127.0.0.1:9443]\n    read_timeout: 5m",
    );
    assert_eq!(
        parse_str(&set).unwrap().upstreams[0].read_timeout,
        Duration::from_secs(300)
    );
    let zero = MINIMAL.replace(
        "servers: [https://127.0.0.1:9443]",
        "servers: [https://127.0.0.1:9443]\n    read_timeout: 0s",
    );
    let m = messages(&parse_str(&zero).unwrap_err());
    assert!(
        m.contains("upstreams[0].read_timeout") && m.contains("more than 0s"),
        "{m}"
    );
}

/// Relative paths resolve against the config file's directory; defaults apply.
#[test]
fn relative_paths_and_defaults() {
    let c = parse_str(MINIMAL).unwrap();
    assert_eq!(
        c.entries[0].source.paths()[0],
        Path::new("/etc/hotproxy/pki/server.crt")
    );
    assert_eq!(c.watch, WatchConfig::default());
    assert_eq!(c.listeners[0].limits, Limits::default());
    assert_eq!(c.listeners[0].alpn, ["h2", "http/1.1"]);
    assert_eq!(c.upstreams[0].connect_timeout, Duration::from_secs(5));
    assert_eq!(c.upstreams[0].max_connections_per_server, 1024);
}

/// An alias reads as the value its anchor names, also where a text
/// field is given an unquoted number (`min_version: &v 1.3`, then
/// `*v`): it once read as the text "*v".
#[test]
fn an_alias_reads_as_its_anchors_value() {
    let text = MINIMAL.replace(
            "    tls:\n      certs: [{ ref: edge }]\n    routes: [{ upstream: api }]\n",
            "    tls:\n      min_version: &v 1.3\n      certs: [{ ref: edge }]\n    routes: [{ upstream: api }]\n  - name: other\n    bind: 127.0.0.1:8444\n    tls:\n      min_version: *v\n      certs: [{ ref: edge }]\n    routes: [{ upstream: api }]\n",
        );
    assert_ne!(text, MINIMAL);
    let c = parse_str(&text).unwrap_or_else(|e| panic!("{}", messages(&e)));
    assert_eq!(c.listeners[1].min_version, c.listeners[0].min_version);
    assert_eq!(c.listeners[1].min_version, TlsVersion::V13);
}

/// A catalogue where every entry misses the same field (`kind:` written
/// for `type:`) names them all, however many there are; with more than
/// one pass' worth it once came out as "0 problem(s)".
#[test]
fn many_entries_missing_a_field_are_each_named() {
    let broken = |n: usize| {
        let entries: String = (0..n)
            .map(|i| format!("  - {{ id: e{i}, kind: ca-bundle, ca_file: ca.crt }}\n"))
            .collect();
        let text = MINIMAL.replacen("certs:\n", &format!("certs:\n{entries}"), 1);
        parse_str(&text).unwrap_err().problems
    };
    let named = |problems: &[Problem], i: usize| {
        let at = format!("certs[{i}]");
        problems.iter().any(|p| p.location.contains(&at))
    };
    // Found and counted, all of them; `render` lists the first 100.
    let p = broken(100);
    for i in [0, 63, 64, 99] {
        assert!(named(&p, i), "certs[{i}]: {p:?}");
    }
    // More than the reader's attempts: those it found are still named.
    let p = broken(300);
    for i in [0, 200] {
        assert!(named(&p, i), "certs[{i}]: {p:?}");
    }
}

/// An unknown value of a plain enum field long enough to fill the 300
/// bytes: the message still fits them and names what is allowed, the
/// value cut instead of the list (it once went past them, the list cut
/// off with `… (cut)`). A pasted block there is still named, not shown,
/// with the list.
#[test]
fn a_long_unknown_variant_is_cut_not_the_allowed_values() {
    let fcc = |value: &str| {
        MINIMAL.replace(
            "    routes: [{ upstream: api }]\n",
            &format!("    routes: [{{ upstream: api }}]\n    forward_client_cert: {value}\n"),
        )
    };
    let k = "PRIVATE KEY"; // spelt apart: no key-shaped text in the source
    let body = "MIGHAgEAMBMGByqGSM49".repeat(16);
    let pasted = format!("|\n      -----BEGIN {k}-----\n      {body}\n      -----END {k}-----");
    for (value, shown) in [
        ("x".repeat(400), "`xxx"),
        (format!("\"\\e{}\"", "z".repeat(400)), "\"\\u{1b}zzz"),
        (pasted, "<withheld: a PEM block>"),
    ] {
        let e = parse_str(&fcc(&value)).unwrap_err();
        let [p] = &e.problems[..] else {
            panic!("{:?}", e.problems)
        };
        let m = &p.message;
        assert!(m.len() <= 300, "{} bytes: {m}", m.len());
        assert!(
            p.location.ends_with("listeners[0].forward_client_cert"),
            "{p:?}"
        );
        assert!(m.starts_with(&format!("unknown variant {shown}")), "{m}");
        assert!(
            m.ends_with(", expected one of `none`, `headers`, `rfc9440`, `xfcc`, `ingress_nginx`"),
            "{m}"
        );
        assert!(
            !m.contains("(cut)") && !m.contains("MIGH") && !m.contains("BEGIN"),
            "{m}"
        );
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Unit {
    A,
    B,
}

#[derive(serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Tagged {
    A,
    B,
}

#[derive(serde::Deserialize)]
struct Enums {
    u: Option<Unit>,
    #[serde(default)]
    n: Vec<Unit>,
    t: Option<Tagged>,
}

/// A list, a mapping or nothing for an enum, unit or tagged, was
/// "unknown variant ``": it is said what was found, once, at the field
/// (the tag's, for a tagged enum). Configuration fields are unit enums
/// (`access_log.format`); a tagged one reads its tag as text.
#[test]
fn an_enum_given_a_list_or_mapping_says_what_was_found() {
    let (mut got, mut last) = (Vec::new(), None);
    for text in [
        "u: [a]\n",
        "u: { a: 1 }\n",
        "n: [~, a]\n",
        "t: { kind: [a] }\n",
        "t: { kind: { a: 1 } }\n",
        "t: { kind: c }\n",
        "u: b\nt: { kind: a }\n",
    ] {
        let (mut root, _) = super::tree::parse(text).unwrap();
        let (top, report) = super::tree::read::<Enums>(&mut root, Default::default());
        last = top;
        let said = report.problems.iter();
        got.push(
            said.map(|p| format!("{}: {}", p.path, p.message))
                .collect::<Vec<_>>(),
        );
    }
    let one_of = "expected one of `a`, `b`";
    assert_eq!(
        got,
        [
            vec![format!("u: {one_of}, found a list")],
            vec![format!("u: {one_of}, found a mapping (keys and values)")],
            vec![format!("n[0]: {one_of}, found nothing")],
            vec!["t.kind: expected text, found a list".to_owned()],
            vec!["t.kind: expected text, found a mapping (keys and values)".to_owned()],
            vec![format!("t.kind: unknown variant `c`, {one_of}")],
            vec![],
        ]
    );
    let last = last.unwrap();
    assert!(matches!(last.u, Some(Unit::B)) && last.n.is_empty());
    assert!(matches!(last.t, Some(Tagged::A)));
}
