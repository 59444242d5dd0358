//! How `check` shows what the operator wrote: keys, tags, enum values and refused values escaped, cut or withheld.

use super::*;

/// An unknown key was printed as written, in its problem's location and
/// message: a terminal escape in it cleared the operator's screen (or
/// set a window title), a line break started a line of its own, a pasted
/// key was shown, a key of 200 bytes was 200 bytes twice. A key is shown
/// escaped as Rust writes a string, its first 64 bytes and `…`; one
/// holding a line break or `-----BEGIN` is withheld.
#[test]
fn an_unknown_key_is_shown_escaped_cut_or_withheld() {
    const KEY: &str = "PRIVATE KEY"; // spelt apart: no key-shaped text in the source
    let long = format!("k{}", "é".repeat(100));
    let more = format!(
        "\"evil\\e[2J\\e]0;owned\\a\": 1\n\"two\\nlines\": 1\n\
         \"-----BEGIN {KEY}-----\\nMIGHAgEAslow\\n-----END {KEY}-----\": 1\n\"{long}\": 1\n"
    );
    let (_s, cfg) = scene("public", &more);
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains(['\u{1b}', '\u{7}']), "{out:?}");
    let evil = "evil\\u{1b}[2J\\u{1b}]0;owned\\u{7}";
    assert!(
        out.contains(&format!("line 2: {evil}: unknown key `{evil}`")),
        "{out}"
    );
    let lines = "<withheld key: text of several lines>";
    assert!(
        out.contains(&format!("line 3: {lines}: unknown key `{lines}`")),
        "{out}"
    );
    let pem = "<withheld key: a PEM block>";
    assert!(
        out.contains(&format!("line 4: {pem}: unknown key `{pem}`")),
        "{out}"
    );
    assert!(!out.contains("BEGIN") && !out.contains("MIGH"), "{out}");
    assert!(!out.contains("two\nlines"), "{out}");
    let cut = format!("{}…", &long[..63]);
    assert!(
        out.contains(&format!("line 5: {cut}: unknown key `{cut}`")),
        "{out}"
    );
    assert!(!out.contains(&long[..65]), "{out}");
}

/// A response header's name that is a pasted key (an Ed25519 key's PEM is
/// 119 bytes, well under the 256 a key may have) was printed whole by its
/// "not a valid header name": the location withheld it, the message
/// quoted it. The name is shown as every key is: here withheld.
#[test]
fn a_key_pasted_as_a_header_name_is_not_shown() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .unwrap()
        .serialize_pem();
    let s = edge_scene();
    // YAML double-quoted text: Rust's escapes of a PEM's characters are YAML's.
    let cfg = s.config(&format!(
        r#"
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ cert_file: edge.crt, key_file: edge.key }}]
    response_headers:
      set:
        {key:?}: x
"#
    ));
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    let pem = "<withheld key: a PEM block>";
    assert!(
        out.contains(&format!(
            "listeners[0].response_headers.set.{pem}: `{pem}` is not a valid header name"
        )),
        "{out}"
    );
    assert!(!out.contains("BEGIN") && !out.contains("END"), "{out}");
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!out.contains(line), "{out}");
    }
}

/// A key set twice was quoted from the YAML parser's words, whole: a
/// pasted key's BEGIN line and body, a bidi override as it is. It is
/// shown as every key is. A value no variant of its field (an enum) has
/// was quoted as written, a terminal escape in it included; it is
/// escaped.
#[test]
fn a_key_set_twice_and_an_unknown_variant_are_shown_escaped_or_withheld() {
    const KEY: &str = "PRIVATE KEY"; // spelt apart: no key-shaped text in the source
    let pem = format!("\"-----BEGIN {KEY}-----\\nMIGHAgEAslow\\n-----END {KEY}-----\": 1\n");
    for (twice, shown) in [
        (pem, "<withheld key: a PEM block>"),
        ("\"bidi\\u202Eevil\": 1\n".to_owned(), "bidi\\u{202e}evil"),
    ] {
        let (_s, cfg) = scene("public", &format!("{twice}{twice}"));
        let (code, out) = check_with(&cfg, &[]);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!("(YAML parser: duplicate mapping key: {shown})")),
            "{out}"
        );
        assert!(!out.contains(['\u{202e}', '\u{1b}']), "{out:?}");
        assert!(!out.contains("BEGIN") && !out.contains("MIGH"), "{out}");
        assert!(!out.contains("DuplicateKeyPolicy"), "{out}");
    }

    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let cfg = s.config(
        "listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    \
         tls: { certs: [{ cert_file: edge.crt, key_file: edge.key }] }\n    \
         forward_client_cert: \"\\e]0;owned\\a\"\n",
    );
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains(['\u{1b}', '\u{7}']), "{out:?}");
    assert!(
        out.contains(
            "listeners[0].forward_client_cert: unknown variant \"\\u{1b}]0;owned\\u{7}\", \
             expected one of `none`"
        ),
        "{out}"
    );
}

/// A value `!!null` does not fit was quoted as written: a key pasted under
/// `!!null |` was printed whole, and a tag spelt with `%1B` (which the
/// parser decodes) put ESC and a bidi override on the operator's screen.
/// Both are shown as a key is: withheld, or escaped and cut. On an enum
/// field (`access_log.format`) the pasted key was printed whole a second
/// time, by "unknown variant": it is not read as the field's value. A
/// token pasted on one line below `!!null |` (short, or past the 64 bytes
/// a shown value keeps) was printed as written: it is withheld whole.
#[test]
fn text_under_a_tag_it_does_not_take_is_withheld_or_escaped() {
    const KEY: &str = "PRIVATE KEY"; // spelt apart: no key-shaped text in the source
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .unwrap()
        .serialize_pem();
    let indented: String = key.lines().map(|l| format!("    {l}\n")).collect();
    let pem_refused = "YAML tag `!!null` on `<withheld value: a PEM block>` refused";
    let line_refused = "YAML tag `!!null` on `<withheld value: text of 1 line>` refused";
    // Tokens pasted on one line below `!!null |`: the parser's span starts
    // at the token, so its text was the token itself, shown up to 64 bytes.
    let token = "hp_9f8e7d6c5b4a39281706f5e4d3c2b1a0";
    let long_token = format!("hp_{}", "5b4a3928".repeat(12));
    for (section, says, body) in [
        (
            format!(
                "watch:\n  debounce: !!null |\n    -----BEGIN {KEY}-----\n    MIGHAgEAslow\n    \
                 -----END {KEY}-----\n"
            ),
            pem_refused.to_owned(),
            "MIGHAgEAslow".to_owned(),
        ),
        (
            "watch:\n  debounce: !a%1B%5D0;owned%07%E2%80%AE 5s\n".to_owned(),
            "YAML tag `!a\\u{1b}]0;owned\\u{7}\\u{202e}` refused".to_owned(),
            "\u{1b}".to_owned(),
        ),
        (
            format!("access_log:\n  path: stdout\n  format: !!null |\n{indented}"),
            format!("access_log.format: {pem_refused}"),
            key.lines().nth(1).unwrap().to_owned(),
        ),
        (
            format!("watch:\n  debounce: !!null |\n    {token}\n"),
            format!("watch.debounce: {line_refused}"),
            token[..8].to_owned(),
        ),
        (
            format!("access_log:\n  path: stdout\n  format: !!null >-\n    {long_token}\n"),
            format!("access_log.format: {line_refused}"),
            long_token[..8].to_owned(),
        ),
    ] {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        s.pair("edge", &ca.server_pair(&["localhost"]));
        let cfg = s.config(&format!(
            "{section}listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    \
             tls: {{ certs: [{{ cert_file: edge.crt, key_file: edge.key }}] }}\n"
        ));
        let (code, out) = check_with(&cfg, &[]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(&says), "{out}");
        assert!(!out.contains(['\u{202e}', '\u{1b}', '\u{7}']), "{out:?}");
        assert!(!out.contains("BEGIN") && !out.contains("END"), "{out}");
        assert!(!out.contains(&body), "{out}");
        // The tag's refusal is the one problem: no empty "unknown variant".
        assert!(!out.contains("unknown variant"), "{out}");
    }
}

/// A value no variant of its enum field has, of 300 bytes on one line,
/// was printed whole, past the 300 bytes a message may have. It is cut so
/// that the message keeps the field and the values it takes.
#[test]
fn a_long_unknown_variant_is_shown_cut() {
    let long = "v".repeat(300);
    let (_s, cfg) = scene(
        "public",
        &format!("access_log:\n  path: stdout\n  format: {long}\n"),
    );
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    let message = out
        .lines()
        .find_map(|l| l.split_once("access_log.format: ").map(|(_, m)| m))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(message.len() <= 300, "{} bytes: {message}", message.len());
    assert!(message.starts_with("unknown variant `vvv"), "{out}");
    assert!(
        message.ends_with("…`, expected one of `json`, `combined`"),
        "{out}"
    );
    assert!(!out.contains(&long), "{out}");
}

/// A long value no variant has, set from the environment (it may be a
/// secret the file only names), is withheld whole, not shown cut: a cut
/// piece is not the value, and was once shown (its first 64 bytes).
#[test]
fn a_long_unknown_variant_from_the_environment_is_withheld() {
    let secret = format!("hp_{}", "7c1d9e0b".repeat(12));
    let (_s, cfg) = scene(
        "public",
        "access_log:\n  path: stdout\n  format: ${HP_FORMAT}\n",
    );
    let (code, out) = check_with(&cfg, &[("HP_FORMAT", OsString::from(&secret))]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("access_log.format: unknown variant <withheld: the value of ${HP_FORMAT}>"),
        "{out}"
    );
    assert!(!out.contains(&secret[..12]), "{out}");
}

/// Text where a number, `true` or `false`, or a mapping goes was quoted
/// whole in "expected ..., found ...": a 500-byte value filled the
/// message to its 300-byte cut, and so did a number of 300 digits. Each
/// is shown as a key is: escaped, its first 64 bytes and `…`. A key
/// pasted there on one line, and a long value set by `${NAME}`, are
/// still withheld whole, never a piece of them shown.
#[test]
fn a_long_value_of_the_wrong_type_is_shown_cut() {
    const LONG: &str = "HOTPROXY_CHECK_INPUTS_LONG";
    let digits = "0123456789".repeat(50);
    // `\e` in YAML: ESC, shown `\u{1b}`.
    let long = format!("x\\e[2J{digits}");
    let key = TestCa::new("other").server_pair(&["spare"]).key_pem;
    let secret = format!("hp_{}", "5e1f9a0c".repeat(50));
    let more = format!(
        "watch:\n  events: \"{long}\"\nstore: \"{long}\"\n\
         runtime:\n  worker_threads: \"{}\"\n\
         upstreams:\n  - name: app\n    servers: [\"http://127.0.0.1:1\"]\n    \
         max_idle_connections: \"${{{LONG}}}\"\n    max_connections_per_server: {}\n",
        key.replace('\n', "\\n"),
        "1".repeat(300),
    );
    let (_s, cfg) = scene("public", &more);
    let (code, out) = check_with(&cfg, &[(LONG, OsString::from(&secret))]);
    assert_eq!(code, 1, "{out}");
    // 10 bytes shown before the digits: `x`, ESC (`\u{1b}`), `[2J`.
    let shown = format!("\"x\\u{{1b}}[2J{}…\"", &digits[..54]);
    for want in [
        format!("watch.events: expected true or false, found {shown}\n"),
        format!("store: expected a mapping (keys and values), found {shown}\n"),
        format!(
            "upstreams[0].max_connections_per_server: expected a whole number, \
             found `{}…` (out of range)\n",
            "1".repeat(64)
        ),
        "runtime.worker_threads: expected a whole number, found <withheld: a PEM block>\n"
            .to_owned(),
        format!(
            "upstreams[0].max_idle_connections: expected a whole number, \
             found <withheld: the value of ${{{LONG}}}>\n"
        ),
    ] {
        assert!(out.contains(&want), "{want}: {out}");
    }
    assert!(
        !out.contains(&digits[..60]) && !out.contains(&"1".repeat(65)),
        "{out}"
    );
    assert!(!out.contains("BEGIN") && !out.contains("(cut)"), "{out}");
    for line in pem_body_lines(&key) {
        assert!(!out.contains(&line), "check shows the key: {out}");
    }
    assert!(!out.contains(&secret[..12]), "{out}");
}

/// A value of the wrong type, and a key, were cut after 64 bytes as
/// written, then escaped: 70 ESC bytes were shown as 64 `\u{1b}`, 384
/// bytes, and the message ran into its 300-byte cut (`… (cut)`) again.
/// Each is cut on what it shows: at most 64 bytes of whole escapes, `…`.
#[test]
fn a_value_or_key_of_control_bytes_is_cut_on_what_it_shows() {
    // `\e` in YAML: ESC, shown `\u{1b}` (6 bytes: 10 fit in 64).
    let esc = "\\e".repeat(70);
    let more = format!(
        "watch:\n  events: \"{esc}\"\nruntime:\n  worker_threads: \"{esc}\"\n\"{esc}\": 1\n"
    );
    let (_s, cfg) = scene("public", &more);
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    let shown = format!("{}…", "\\u{1b}".repeat(10));
    // `more` starts on line 2.
    for want in [
        format!("line 3: watch.events: expected true or false, found \"{shown}\"\n"),
        format!("line 5: runtime.worker_threads: expected a whole number, found \"{shown}\"\n"),
        format!("line 6: {shown}: unknown key `{shown}` (allowed here: "),
    ] {
        assert!(out.contains(&want), "{want}: {out}");
    }
    assert!(!out.contains("(cut)") && !out.contains('\u{1b}'), "{out:?}");
    assert!(!out.contains(&"\\u{1b}".repeat(11)), "{out}");
}

/// A value the resolver refuses (an address, a server URL, a route's
/// host, a duration, a CRL path listed twice) was quoted whole in its
/// message, limited only by the message's 300-byte cut, and some pieces
/// of one (a host's port, the host of a server URL with credentials, a
/// path) raw: a terminal escape reached the screen. Each is shown as a
/// key is: escaped, its first 64 bytes and `…`; the problem still names
/// its line and field, and a long value set by `${NAME}` is withheld
/// whole, never a piece of it shown, cut or not (a port, a URL's host).
#[test]
fn a_long_value_the_resolver_refuses_is_shown_cut_and_escaped() {
    const LONG: &str = "HOTPROXY_CHECK_INPUTS_BIND";
    const HOST: &str = "HOTPROXY_CHECK_INPUTS_HOST";
    const CRL: &str = "HOTPROXY_CHECK_INPUTS_CRL";
    const URL: &str = "HOTPROXY_CHECK_INPUTS_URL";
    let digits = "0123456789".repeat(50);
    // `\e` in YAML: ESC, shown `\u{1b}`.
    let long = format!("x\\e[2J{digits}");
    let secret = format!("hp_{}", "5e1f9a0c".repeat(50));
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let text = format!(
        "watch:\n  debounce: \"{long}\"\n\
         certs:\n  - {{ id: a, type: ca-bundle, ca_file: ca.crt, crl_files: [\"${{{CRL}}}\", \"${{{CRL}}}\"] }}\n  \
         - {{ id: b, type: ca-bundle, ca_file: ca.crt, crl_files: [\"/{long}\", \"/{long}\"] }}\n\
         admin:\n  bind: \"${{{LONG}}}\"\n\
         upstreams:\n  - name: app\n    servers:\n      - \"http://user@{long}\"\n      \
         - \"{long}\"\n      - \"${{{URL}}}\"\n\
         listeners:\n  - name: public\n    bind: \"{long}\"\n    \
         tls:\n      certs: [{{ cert_file: edge.crt, key_file: edge.key }}]\n    \
         routes: [{{ upstream: app, host: \"a:{long}\" }}, {{ upstream: app, host: \"${{{HOST}}}\" }}]\n"
    );
    let line = |key: &str| 1 + text.lines().position(|l| l.contains(key)).unwrap();
    let cfg = s.config(&text);
    let env = [
        (LONG, OsString::from(&secret)),
        (HOST, OsString::from(format!("a:{secret}"))),
        (CRL, OsString::from(format!("/run/{secret}.crl"))),
        (URL, OsString::from(format!("http://user@{secret}"))),
    ];
    let (code, out) = check_with(&cfg, &env);
    assert_eq!(code, 1, "{out}");
    let host = format!("<withheld: the value of ${{{HOST}}}>");
    // 10 bytes shown before the digits: `x`, ESC (`\u{1b}`), `[2J`.
    let shown = |before: &str| {
        let room = 64 - before.len() - 10;
        format!("\"{before}x\\u{{1b}}[2J{}…\"", &digits[..room])
    };
    for want in [
        format!(
            "line {}: watch.debounce: invalid duration {} (use e.g. 250ms, 5s, 2m, 1h)\n",
            line("debounce"),
            shown("")
        ),
        format!(
            "line {}: admin.bind: <withheld: the value of ${{{LONG}}}> is not an address \
             like 0.0.0.0:8443 or [::]:8443\n",
            line("bind: \"${")
        ),
        format!(
            "line {}: upstreams[0].servers[0]: {}: credentials in a server URL are not sent \
             upstream and would be logged; remove the part before @\n",
            line("user@"),
            shown("http://…@")
        ),
        format!(
            "line {}: upstreams[0].servers[1]: {} must start with http:// or https://\n",
            line("      - \"x"),
            shown("")
        ),
        format!(
            "line {}: listeners[0].bind: {} is not an address like 0.0.0.0:8443 or [::]:8443\n",
            line("bind: \"x"),
            shown("")
        ),
        format!(
            "line {}: listeners[0].routes[0].host: {}: a route's host is matched without the \
             port: remove {}\n",
            line("host:"),
            shown("a:"),
            shown(":")
        ),
        // A path is shown bare, as a key is.
        format!(
            "certs[1].crl_files: {} is listed twice\n",
            shown("/").trim_matches('"')
        ),
        // A piece of a value set by `${{NAME}}`, even cut: none shown;
        // a quoted piece of only its pieces is named, the reason kept.
        format!(
            "listeners[0].routes[1].host: {host}: a route's host is matched without the \
             port: remove {host}\n"
        ),
        withheld_listed_twice(CRL),
        format!(
            "upstreams[0].servers[2]: <withheld: the value of ${{{URL}}}>: credentials in a \
             server URL are not sent upstream and would be logged; remove the part before @\n"
        ),
    ] {
        assert!(out.contains(&want), "{want}: {out}");
    }
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(
        !out.contains(&digits[..60]) && !out.contains("(cut)"),
        "{out}"
    );
    assert!(!out.contains(&secret[..12]), "{out}");
}

/// A value no variant of an enum field has (`format: bogus`), or text
/// under `!!null` there, stopped the read: serde's derived reader passed
/// the error up, nothing after it was read and the resolver never ran, so
/// a bad listener address and an unknown key later in the file went
/// unreported ("every problem of the file in one pass"). The field is
/// refused and the read goes on.
#[test]
fn a_bad_enum_value_does_not_hide_the_problems_after_it() {
    for (format, says) in [
        (
            "bogus",
            "line 3: access_log.format: unknown variant `bogus`, expected one of `json`, \
             `combined`",
        ),
        (
            "!!null json",
            "line 3: access_log.format: YAML tag `!!null` on `json` refused",
        ),
    ] {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        s.pair("edge", &ca.server_pair(&["localhost"]));
        let cfg = s.config(&format!(
            "access_log:\n  path: stdout\n  format: {format}\nlisteners:\n  - name: public\n    \
             forward_client_cert: sideways\n    bind: nonsense\n    \
             tls: {{ certs: [{{ cert_file: edge.crt, key_file: edge.key }}] }}\n    \
             colour: red\n"
        ));
        let (code, out) = check_with(&cfg, &[]);
        assert_eq!(code, 1, "{out}");
        for said in [
            says,
            "line 6: listeners[0].forward_client_cert: unknown variant `sideways`",
            "line 7: listeners[0].bind: ",
            "line 9: listeners[0].colour: unknown key `colour`",
        ] {
            assert!(out.contains(said), "{said}: {out}");
        }
        assert!(
            out.contains("configuration check failed: 4 problem(s)"),
            "{out}"
        );
    }
}

/// `check` on a scene whose first `certs` entry, CA bundle `a`
/// (`edge.crt`), lists `${var}` `times` times as its `crl_files`, `more`
/// (further entries) after it, with `var` set to `value`: the scene, the
/// exit code and the output.
pub(super) fn check_crl_from_env(
    var: &str,
    times: usize,
    more: &str,
    value: &str,
) -> (Scene, i32, String) {
    let crls = vec![format!("\"${{{var}}}\""); times].join(", ");
    let (s, cfg) = scene(
        "public",
        &format!(
            "certs:\n  - {{ id: a, type: ca-bundle, ca_file: edge.crt, \
             crl_files: [{crls}] }}\n{more}"
        ),
    );
    let (code, out) = check_with(&cfg, &[(var, OsString::from(value))]);
    (s, code, out)
}

/// The problem of [`check_crl_from_env`]'s `a` listing `${var}` twice,
/// its value withheld.
fn withheld_listed_twice(var: &str) -> String {
    format!("certs[0].crl_files: <withheld: the value of ${{{var}}}> is listed twice\n")
}

/// A `${NAME}` value shown escaped but not cut (a CRL path of 17 bytes
/// holding a tab, listed twice: `/run/s\tecret.pem is listed twice`) was
/// printed: the withholding looked for the value as it is (a raw tab) and
/// for the escaped form only when cut (`…`). The escaped form is withheld
/// too.
#[test]
fn a_value_from_the_environment_shown_escaped_is_withheld() {
    const CRL: &str = "HOTPROXY_CHECK_INPUTS_TAB_CRL";
    let (_s, code, out) = check_crl_from_env(CRL, 2, "", "/run/s\tecret.pem");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&withheld_listed_twice(CRL)), "{out}");
    // The entry's load warning shows the path as resolved (SPEC §2): the
    // problems do not.
    let mut problems = out.lines().filter(|l| l.contains("crl_files"));
    assert!(problems.all(|l| !l.contains("ecret")), "{out}");
}

/// A `${NAME}` value shorter than 8 bytes was withheld only where a
/// message quoted it (`"..."`, `` `...` ``): shown bare, as a CRL path
/// listed twice is, `/c.pem is listed twice` printed it, plain or
/// escaped (`/s\tx`). It is named by its variable at any length.
#[test]
fn a_short_value_from_the_environment_shown_bare_is_withheld() {
    const CRL: &str = "HOTPROXY_CHECK_INPUTS_SHORT_CRL";
    for (value, shown) in [("/c.pem", "/c.pem"), ("/s\tx", "/s\\tx")] {
        let (_s, code, out) = check_crl_from_env(CRL, 2, "", value);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(&withheld_listed_twice(CRL)), "{out}");
        let mut problems = out.lines().filter(|l| l.contains("crl_files"));
        assert!(
            problems.all(|l| !l.contains(shown) && !l.contains(value)),
            "{out}"
        );
    }
}

/// A server URL whose password holds a `/` (`https://user:pa/ss@host`)
/// was cut at the `/` before `@` was looked for: no credentials were
/// found, and "must be scheme://host[:port] without a path" printed the
/// URL, password and all. The credentials are found in the whole text
/// after the scheme and not repeated.
#[test]
fn credentials_holding_a_slash_in_a_server_url_are_not_shown() {
    let (_s, cfg) = scene(
        "public",
        "upstreams:\n  - name: app\n    servers: [\"https://user:pa/ss@10.0.0.1\"]\n",
    );
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "upstreams[0].servers[0]: \"https://…@10.0.0.1\": credentials in a server URL \
             are not sent upstream and would be logged; remove the part before @\n"
        ),
        "{out}"
    );
    assert!(!out.contains("pa/ss") && !out.contains("user:pa"), "{out}");
}

/// A server URL whose scheme is neither http:// nor https://
/// (`ftp://user:pass@host`) was refused by "must start with http:// or
/// https://", which printed it whole, password and all: the credentials
/// rule came after the scheme's. Credentials are looked for first, in any
/// scheme, and not repeated.
#[test]
fn credentials_in_a_server_url_of_another_scheme_are_not_shown() {
    let (_s, cfg) = scene(
        "public",
        "upstreams:\n  - name: app\n    servers: [\"ftp://user:pass@host\", \"user:pass@host\"]\n",
    );
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    let said = "credentials in a server URL are not sent upstream and would be logged; \
                remove the part before @\n";
    assert!(
        out.contains(&format!(
            "upstreams[0].servers[0]: \"ftp://…@host\": {said}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("upstreams[0].servers[1]: \"…@host\": {said}")),
        "{out}"
    );
    assert!(
        !out.contains("user:pass") && !out.contains("pass@"),
        "{out}"
    );
}

/// A list, a mapping or nothing where an enum field's value goes
/// (`format: [json]`, `forward_client_cert: {none: 1}`) was "unknown
/// variant ``": an empty name, as if the value were empty text. It is
/// said as every value of the wrong type is: what the field takes and
/// what was found, at the field's line; a text field (`client_auth.mode`)
/// given a list says the same.
#[test]
fn a_list_or_mapping_for_an_enum_field_says_what_was_found() {
    let fcc = "expected one of `none`, `headers`, `rfc9440`, `xfcc`, `ingress_nginx`";
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let cfg = s.config(
        "access_log:\n  path: stdout\n  format: [json, combined]\n\
         listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    \
         tls:\n      certs: [{ cert_file: edge.crt, key_file: edge.key }]\n      \
         client_auth: { mode: [a, b], ca: { ca_file: edge.crt } }\n    \
         forward_client_cert: { none: 1 }\n    \
         routes:\n      - { upstream: app, forward_client_cert: [xfcc] }\n\
         upstreams:\n  - name: app\n    servers: [\"http://127.0.0.1:1\"]\n",
    );
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    for want in [
        "line 3: access_log.format: expected one of `json`, `combined`, found a list\n".to_owned(),
        "line 9: listeners[0].tls.client_auth.mode: expected text, found a list\n".to_owned(),
        format!(
            "line 10: listeners[0].forward_client_cert: {fcc}, \
             found a mapping (keys and values)\n"
        ),
        format!("line 12: listeners[0].routes[0].forward_client_cert: {fcc}, found a list\n"),
    ] {
        assert!(out.contains(&want), "{want}: {out}");
    }
    assert!(!out.contains("unknown variant"), "{out}");

    // Nothing where a field with a default takes an enum: "found nothing".
    let (_s, cfg) = scene("public", "access_log:\n  path: stdout\n  format:\n");
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "line 4: access_log.format: expected one of `json`, `combined`, found nothing\n"
        ),
        "{out}"
    );
    assert!(!out.contains("unknown variant"), "{out}");
}

/// The label naming a value set from the environment (`<withheld: the
/// value of ${NAME}>`) showed the text the value was written as whole and
/// raw: 300 `${NAME}`s ran the message into its 300-byte cut (`… (cut)`),
/// a variable's name of 10 KB too, and an ESC written before `${NAME}`
/// reached the screen. That text is shown as every value is: escaped,
/// its first 64 bytes as escaped and `…`; a short label is as it was.
#[test]
fn a_withheld_label_shows_what_was_written_escaped_and_cut() {
    const PART: &str = "HOTPROXY_CHECK_INPUTS_PART";
    let part = format!("${{{PART}}}");
    let many = part.repeat(300);
    let name = format!("HOTPROXY_{}", "N".repeat(10_000));
    // Written text of 64 bytes and more before `${NAME}`: the label, cut,
    // shows a piece of it, as written, which is not the value.
    let prefix = format!("/{}/", "d".repeat(70));
    // `\e` in YAML: ESC, shown `\u{1b}`.
    let more = format!(
        "watch:\n  events: \"{many}\"\n  debounce: \"\\e[2J{part}\"\n  \
         poll_interval: \"{part}\"\n  settle_timeout: \"{prefix}{part}\"\n\
         runtime:\n  worker_threads: \"${{{name}}}\"\n"
    );
    let (_s, cfg) = scene("public", &more);
    let env = [
        (PART, OsString::from("xy")),
        (name.as_str(), OsString::from("many")),
    ];
    let (code, out) = check_with(&cfg, &env);
    assert_eq!(code, 1, "{out}");
    let label = |shown: &str| format!("<withheld: the value of {shown}>");
    // `more` starts on line 2.
    for want in [
        format!(
            "line 3: watch.events: expected true or false, found {}\n",
            label(&format!("{}…", &many[..64]))
        ),
        format!(
            "line 4: watch.debounce: invalid duration {} (use e.g. 250ms, 5s, 2m, 1h)\n",
            label(&format!("\\u{{1b}}[2J{part}"))
        ),
        format!(
            "line 5: watch.poll_interval: invalid duration {} (use e.g. 250ms, 5s, 2m, 1h)\n",
            label(&part)
        ),
        format!(
            "line 6: watch.settle_timeout: invalid duration {} (use e.g. 250ms, 5s, 2m, 1h)\n",
            label(&format!("{}…", &prefix[..64]))
        ),
        format!(
            "line 8: runtime.worker_threads: expected a whole number, found {}\n",
            label(&format!("{}…", &format!("${{{name}}}")[..64]))
        ),
    ] {
        assert!(out.contains(&want), "{want}: {out}");
    }
    assert!(!out.contains('\u{1b}') && !out.contains("(cut)"), "{out:?}");
    assert!(
        !out.contains(&many[..65]) && !out.contains(&name[..64]),
        "{out}"
    );
}

/// An allow rule's pattern or fingerprint that is refused was quoted
/// whole in its message (escaped, not cut): 200 bytes of it ran the
/// message into its 300-byte cut (`… (cut)`) and the reason went. It is
/// shown as every refused value is: its first 64 bytes as escaped and
/// `…`, the reason whole; one set by `${NAME}` is withheld whole.
#[test]
fn a_refused_allow_rule_value_is_shown_cut() {
    const CN: &str = "HOTPROXY_CHECK_INPUTS_CN";
    let long = "a".repeat(200);
    let secret = format!("x**{}", "5e1f9a0c".repeat(25));
    let not_hex = "not a SHA-256 fingerprint (64 hex digits; colons and case are ignored)";
    let star = "`**` is only allowed as a final `/**` of a uri_san";
    // `\e` in YAML: ESC, shown `\u{1b}` (6 bytes: 58 of `a` fit after it).
    let cut = format!("\"\\u{{1b}}{}…\"", &long[..58]);
    for (rule, says) in [
        (
            format!("fingerprint_sha256: \"\\e{long}\""),
            format!("fingerprint_sha256: {cut}: {not_hex}"),
        ),
        (format!("cn: \"\\e{long}**\""), format!("cn: {cut}: {star}")),
        (
            format!("cn: \"${{{CN}}}\""),
            format!("cn: <withheld: the value of ${{{CN}}}>: {star}"),
        ),
    ] {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        s.pair("edge", &ca.server_pair(&["localhost"]));
        let cfg = s.config(&format!(
            "listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    \
             tls: {{ certs: [{{ cert_file: edge.crt, key_file: edge.key }}] }}\n    \
             routes: [{{ upstream: app, allow: [{{ {rule} }}] }}]\n\
             upstreams:\n  - name: app\n    servers: [\"http://127.0.0.1:1\"]\n"
        ));
        let (code, out) = check_with(&cfg, &[(CN, OsString::from(&secret))]);
        assert_eq!(code, 1, "{out}");
        let want = format!("line 5: listeners[0].routes[0].allow[0]: {says}\n");
        assert!(out.contains(&want), "{want}: {out}");
        assert!(!out.contains('\u{1b}') && !out.contains("(cut)"), "{out:?}");
        assert!(
            !out.contains(&long[..59]) && !out.contains(&secret[..12]),
            "{out}"
        );
    }
}
