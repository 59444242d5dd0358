//! `hotproxy check` on inputs that are not what they seem: an environment
//! value that is not UTF-8, an empty PEM block, a whole number YAML reads as a float,
//! a token pasted as a variable or file name, a key of a mebibyte, a long value of the wrong type
//! or one the resolver refuses, the entry a token problem names.

mod support;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::process::{Command, Stdio};

use support::*;

/// `hotproxy check --config cfg` with the variables `env` set:
/// (exit code, stdout and stderr together).
fn check_with(cfg: &Path, env: &[(&str, OsString)]) -> (i32, String) {
    cli_with("check", cfg, env)
}

/// `hotproxy COMMAND --config cfg` (`check`, or `run` when it is refused
/// at startup) with the variables `env` set: as [`check_with`].
fn cli_with(subcommand: &str, cfg: &Path, env: &[(&str, OsString)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hotproxy"));
    command
        .args([subcommand, "--config"])
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let out = output_within_deadline(&mut command);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A scene with the server pair `edge` (`edge.crt`, `edge.key`) for
/// localhost, signed by a CA of its own.
fn edge_scene() -> Scene {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    s
}

/// A scene with the server pair `edge` for localhost and a listener whose
/// name is `name`; `more` is appended (top-level sections).
fn scene(name: &str, more: &str) -> (Scene, std::path::PathBuf) {
    let s = edge_scene();
    let cfg = s.config(&format!(
        r#"
{more}
listeners:
  - name: {name}
    bind: 127.0.0.1:0
    tls:
      certs: [{{ cert_file: edge.crt, key_file: edge.key }}]
"#
    ));
    (s, cfg)
}

/// A variable that is set, to bytes that are not UTF-8, was reported as
/// "is not set", sending the operator to look for a missing variable. It
/// is said to be set but not UTF-8, naming the variable and the field,
/// never the value; in a config string (`${NAME}`) and as `token_env`.
#[test]
fn a_variable_that_is_not_utf8_is_named_as_such() {
    const NAME: &str = "HOTPROXY_CHECK_INPUTS_NAME";
    const TOKEN: &str = "HOTPROXY_CHECK_INPUTS_TOKEN";
    let admin =
        format!("admin:\n  bind: 127.0.0.1:0\n  tokens: [{{ role: viewer, token_env: {TOKEN} }}]");
    let (_s, cfg) = scene(&format!("${{{NAME}}}"), &admin);
    let good = [
        (NAME, OsString::from("public")),
        (TOKEN, OsString::from("viewer-token-8d1f3b5a7c9e2046")),
    ];
    let (code, out) = check_with(&cfg, &good);
    assert_eq!(code, 0, "{out}");

    let not_utf8 = || OsString::from_vec(vec![b'p', 0xff, b'x']);
    let (code, out) = check_with(&cfg, &[(NAME, not_utf8()), good[1].clone()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "listeners[0].name: environment variable {NAME} is set but not valid UTF-8"
        )),
        "{out}"
    );
    assert!(!out.contains("is not set"), "{out}");

    let (code, out) = check_with(&cfg, &[good[0].clone(), (TOKEN, not_utf8())]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "admin.tokens[0].token_env: environment variable {TOKEN} is set but not valid UTF-8"
        )),
        "{out}"
    );
    assert!(!out.contains("is not set"), "{out}");
    // Neither the value nor a lossy rendering of it.
    assert!(
        !out.contains("p\u{fffd}x") && !out.contains("\\xff"),
        "{out}"
    );
}

/// A BEGIN line followed at once by its END line (a template, a paste
/// that lost its body) was "invalid certificate: Parsing requires 1
/// bytes/chars", the DER parser's words for no bytes. It is an empty
/// block of that label, with the file's name; alone in a file or after a
/// good certificate, for a certificate or a key.
#[test]
fn an_empty_pem_block_is_named() {
    let (s, cfg) = scene("public", "");
    let cert = s.path("edge.crt");
    let key = s.path("edge.key");
    let good_cert = std::fs::read_to_string(&cert).unwrap();
    let good_key = std::fs::read_to_string(&key).unwrap();
    let empty = |label: &str| format!("-----BEGIN {label}-----\n-----END {label}-----\n");
    for (file, text, label) in [
        (&cert, empty("CERTIFICATE"), "CERTIFICATE"),
        (
            &cert,
            format!("{good_cert}{}", empty("CERTIFICATE")),
            "CERTIFICATE",
        ),
        (&key, empty("PRIVATE KEY"), "PRIVATE KEY"),
    ] {
        write(&cert, &good_cert);
        write(&key, &good_key);
        write(file, &text);
        let (code, out) = check_with(&cfg, &[]);
        assert_eq!(code, 1, "{label}: {out}");
        assert!(
            out.contains(&format!(
                "{}: malformed PEM: empty {label} block",
                file.display()
            )),
            "{label}: {out}"
        );
        assert!(!out.contains("Parsing requires"), "{out}");
    }
}

/// A whole number out of range or written as a float is quoted as the
/// file has it, with the reason: it was quoted as parsed, so
/// `99999999999999999999999` read `100000000000000000000000` and `1e3`
/// read `1000`, a value the operator never wrote.
#[test]
fn a_number_of_the_wrong_kind_is_quoted_as_written() {
    for (written, why) in [
        ("99999999999999999999999", "out of range"),
        ("1e3", "written as a float"),
        ("2.5", "written as a float"),
    ] {
        let (_s, cfg) = scene("public", &format!("runtime:\n  worker_threads: {written}"));
        let (code, out) = check_with(&cfg, &[]);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!(
                "runtime.worker_threads: expected a whole number, found `{written}` ({why})"
            )),
            "{out}"
        );
    }
}

/// A token pasted in place of `token_env`'s variable name or `token_file`'s
/// path was repeated as "environment variable <token> is not set" and in
/// the missing file's path. A name or file name that looks like a token
/// (not a variable's name, or a long run mixing letters and digits) is
/// withheld, and the message asks whether the token itself was pasted.
#[test]
fn a_token_pasted_as_a_variable_or_file_name_is_not_shown() {
    let token = "hp_9f8e7d6c5b4a39210fedcba987654321";
    for (field, more) in [
        ("token_env", format!("token_env: {token}")),
        ("token_file", format!("token_file: {token}")),
        (
            "token_env",
            "token_env: 0f1e2d3c4b5a69788796a5b4c3d2e1f0".to_owned(),
        ),
        // A UUID, and a short mixed word, are no variable's name either:
        // with a run of 16 taken for a token, they were shown again.
        (
            "token_env",
            "token_env: d3f2a9c1-8b7d-4e6f-9a0b-1c2d3e4f5a6b".to_owned(),
        ),
        ("token_env", "token_env: Xq7Lm2Pz9Rk4".to_owned()),
        (
            "token_file",
            "token_file: deadbeef-1234-5678-9abc-123456789012.token".to_owned(),
        ),
        ("token_file", "token_file: Xq7Lm2Pz9Rk4".to_owned()),
    ] {
        let admin = format!("admin:\n  bind: 127.0.0.1:0\n  tokens: [{{ role: viewer, {more} }}]");
        let (_s, cfg) = scene("public", &admin);
        let (code, out) = check_with(&cfg, &[]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(&format!("admin.tokens[0].{field}")), "{out}");
        assert!(out.contains("did you paste the token itself?"), "{out}");
        for shown in [
            &token[3..],
            "0f1e2d3c4b5a",
            "d3f2a9c1",
            "Xq7Lm2Pz9Rk4",
            "deadbeef",
        ] {
            assert!(!out.contains(shown), "{shown}: {out}");
        }
    }
    // A token pasted as a directory of the path: the file's name alone
    // was looked at, and the path was shown.
    let admin = format!(
        "admin:\n  bind: 127.0.0.1:0\n  tokens: [{{ role: viewer, token_file: {token}/viewer.token }}]"
    );
    let (_s, cfg) = scene("public", &admin);
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("admin.tokens[0].token_file: "), "{out}");
    assert!(out.contains("did you paste the token itself?"), "{out}");
    assert!(!out.contains(&token[3..]), "{out}");
    // A variable's or file's name is named, and a directory with a word
    // of letters and digits shorter than a token (`K8S2PROD`).
    for (more, named) in [
        (
            "token_env: HOTPROXY_UNSET_ADMIN_TOKEN",
            "environment variable HOTPROXY_UNSET_ADMIN_TOKEN is not set",
        ),
        (
            "token_file: k8s2prod/viewer-x509v3.token",
            "k8s2prod/viewer-x509v3.token: ",
        ),
    ] {
        let admin = format!("admin:\n  bind: 127.0.0.1:0\n  tokens: [{{ role: viewer, {more} }}]");
        let (_s, cfg) = scene("public", &admin);
        let (code, out) = check_with(&cfg, &[]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(named), "{out}");
        assert!(!out.contains("did you paste"), "{out}");
    }
}

/// A token file's path was checked whole after it was joined to the
/// configuration's directory: a config under `/srv/2024-prod`,
/// `/opt/1password`, `/home/josé` (or a Nix store hash, a macOS temporary
/// directory) hid a missing file's path and asked whether a token was
/// pasted. The path is checked as written, a directory's name for a run
/// of 16 mixing letters and digits only; the path is shown.
#[test]
fn a_token_file_in_a_directory_named_oddly_is_shown() {
    for dir in ["2024-prod", "1password", "josé", "7k"] {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        let base = s.path(dir);
        let pair = ca.server_pair(&["localhost"]);
        write(&base.join("edge.crt"), &pair.cert_pem);
        write(&base.join("edge.key"), &pair.key_pem);
        for (token_file, named) in [
            ("missing.token".to_owned(), base.join("missing.token")),
            (
                format!("../{dir}/missing.token"),
                base.join(format!("../{dir}/missing.token")),
            ),
        ] {
            let cfg = base.join("config.yaml");
            write(
                &cfg,
                &format!(
                    "admin:\n  bind: 127.0.0.1:0\n  tokens: [{{ role: viewer, token_file: \"{token_file}\" }}]\n\
                     listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    tls:\n      \
                     certs: [{{ cert_file: edge.crt, key_file: edge.key }}]\n"
                ),
            );
            let (code, out) = check_with(&cfg, &[]);
            assert_eq!(code, 1, "{out}");
            assert!(
                out.contains(&format!("admin.tokens[0].token_file {}: ", named.display())),
                "{dir}: {out}"
            );
            assert!(!out.contains("did you paste"), "{dir}: {out}");
        }
    }
}

/// A withheld value was looked for in every problem's message of the
/// file: a short value set by `${NAME}` turned an unrelated field's
/// `found "fast"` into `<withheld: ...>`, and a piece of a pasted PEM
/// body quoted elsewhere (`"slow"`) sent that field's message away whole.
/// A value is withheld in the problems of its own field (or of a field
/// naming it); there it still is.
#[test]
fn a_withheld_value_is_withheld_at_its_own_field_only() {
    const SPEED: &str = "HOTPROXY_CHECK_INPUTS_SPEED";
    const KEY: &str = "PRIVATE KEY"; // spelt apart: no key-shaped text in the source
    let more = format!(
        "watch:\n  debounce: ${{{SPEED}}}\n  poll_interval: slow\n\
         runtime:\n  worker_threads: fast\n  shutdown_grace: |\n    \
         -----BEGIN {KEY}-----\n    MIGHAgEAslowMBMGByqGSM49fast\n    -----END {KEY}-----\n"
    );
    let (_s, cfg) = scene("public", &more);
    let (code, out) = check_with(&cfg, &[(SPEED, OsString::from("fast"))]);
    assert_eq!(code, 1, "{out}");
    // The unrelated fields' messages as they are.
    assert!(
        out.contains("runtime.worker_threads: expected a whole number, found \"fast\""),
        "{out}"
    );
    assert!(
        out.contains("watch.poll_interval: invalid duration \"slow\""),
        "{out}"
    );
    // The values at their own fields still withheld.
    assert!(
        out.contains(&format!(
            "watch.debounce: invalid duration <withheld: the value of ${{{SPEED}}}>"
        )),
        "{out}"
    );
    assert!(
        out.contains("runtime.shutdown_grace: ") && out.contains("<withheld: a PEM block>"),
        "{out}"
    );
    assert!(!out.contains("BEGIN") && !out.contains("MIGH"), "{out}");
}

/// A core tag on text not of its type stops the YAML parser, which the
/// reader gets past a hundred times (blanking each, parsing again); a
/// file of more, a generated list of upstreams each with
/// `max_idle_connections: !!int many`, came out as one problem for the
/// whole file: "line 104 column 43: invalid u64". Each is a problem at
/// its line and field; the first hundred are listed, then how many more.
#[test]
fn more_than_a_hundred_bad_tags_are_each_a_problem_at_their_field() {
    let upstreams: String = (0..150)
        .map(|i| {
            format!(
                "  - {{ name: u{i}, servers: [\"http://127.0.0.1:9\"], \
                 max_idle_connections: !!int many{i} }}\n"
            )
        })
        .collect();
    let (_s, cfg) = scene("public", &format!("upstreams:\n{upstreams}"));
    let text = std::fs::read_to_string(&cfg).unwrap();
    let line = |i: usize| {
        let at = format!("many{i} ");
        text.lines().position(|l| l.contains(&at)).unwrap() + 1
    };
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    let file = cfg.display().to_string();
    for i in [0, 99] {
        assert!(
            out.contains(&format!(
                "{file}: line {}: upstreams[{i}].max_idle_connections: expected a whole \
                 number, found \"many{i}\"\n",
                line(i)
            )),
            "{i}: {out}"
        );
    }
    assert!(
        out.contains(&format!("{file}: … and 50 more problem(s), not listed\n")),
        "{out}"
    );
    assert!(
        out.contains("configuration check failed: 150 problem(s)"),
        "{out}"
    );
}

/// A table cell wider than 65,535 characters made `check` panic, exit
/// 101: Rust's `{:<w$}` takes no wider width. An entry id that long is
/// refused before the table now, but a certificate's SANs, joined in one
/// cell, are not bounded: 300 names of 249 characters (74,999 with the
/// commas) are printed, padded, and the check passes. The certificate is
/// issued here, as it is run. An entry id of 70,000 is a problem, not a
/// crash.
#[test]
fn a_table_cell_wider_than_65535_is_printed_not_a_crash() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let label = "l".repeat(60);
    let names: Vec<String> = (0..300)
        .map(|i| format!("{label}.{label}.{label}.{label}.n{i:03}.test"))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    s.pair("wide", &ca.server_pair(&names));
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let cfg = s.config(
        r#"
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - { cert_file: edge.crt, key_file: edge.key }
        - { cert_file: wide.crt, key_file: wide.key }
"#,
    );
    let joined = names.join(",");
    assert!(joined.chars().count() > 65_535);
    let (code, out) = check_with(&cfg, &[]);
    let head = &out[..out.len().min(2_000)];
    assert_eq!(code, 0, "{head}");
    assert!(!out.contains("panicked"), "{head}");
    assert!(out.contains(&joined), "{head}");
    let narrow = out.lines().find(|l| l.contains(" localhost ")).expect(head);
    assert!(narrow.contains(&" ".repeat(65_536)), "{head}");

    let id = "e".repeat(70_000);
    let (_s, cfg) = scene(
        "public",
        &format!("certs:\n  - {{ id: {id}, type: ca-bundle, ca_file: ca.crt }}"),
    );
    let (code, out) = check_with(&cfg, &[]);
    let head = &out[..out.len().min(2_000)];
    assert_eq!(code, 1, "{head}");
    assert!(out.contains("certs[0].id: invalid id"), "{head}");
    assert!(!out.contains("panicked"), "{head}");
}

/// A value the problems withhold (text of several lines: a key pasted in
/// the wrong place) was printed whole by the rest of `check`, which goes
/// on with what resolved: an entry id in the table and in "entry ...:
/// file not found", a listener name in the anonymous entry's id and in
/// "used by listener ...". An invalid id is not loaded; an invalid
/// listener or upstream name is shown by its place (`listeners[0]`).
#[test]
fn a_withheld_name_or_id_is_not_printed_by_the_rest_of_the_check() {
    let secret = "s3cr3t-line";
    let (_s, cfg) = scene(
        &format!("\"pub\\n{secret}\""),
        &format!(
            "certs:\n  - {{ id: \"ca\\n{secret}\", type: ca-bundle, ca_file: ca.crt }}\n\
             upstreams:\n  - {{ name: \"api\\n{secret}\", servers: [\"https://127.0.0.1:9\"], \
             tls: {{ ca: {{ ca_file: none.crt }} }} }}"
        ),
    );
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    for field in ["listeners[0].name", "certs[0].id", "upstreams[0].name"] {
        assert!(out.contains(&format!("{field}: invalid")), "{field}: {out}");
    }
    assert!(out.contains("listeners.listeners[0].tls.certs[0]"), "{out}");
    assert!(!out.contains(secret), "{out}");
}

/// `hotproxy check --config cfg` with its data segment (the heap) limited
/// to `mib` MiB (`ulimit -d`; `sh` execs hotproxy): (exit code, or -1 when
/// killed by a signal, as an abort for want of memory is; everything printed).
fn check_within_memory(cfg: &Path, mib: u64) -> (i32, String) {
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            &format!("ulimit -d {} && exec \"$0\" \"$@\"", mib * 1024),
        ])
        .arg(env!("CARGO_BIN_EXE_hotproxy"))
        .args(["check", "--config"])
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = output_within_deadline(&mut command);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A value of two lines under an explicit key (`? "..."`, which YAML does
/// not cap at 1024 characters) of 1 MiB, repeated 49,000 times through an
/// alias (a 1.2 MB file, within every parser limit): each item's field
/// path, 1 MiB, was kept to withhold its value, 49 GiB in all, and `check`
/// (and a reload, the proxy with it) aborted for want of memory. So did
/// keys under the limit nested fifty deep (a path of 12 KiB per item). A
/// key over 256 bytes is refused at its mapping's line, its value unread;
/// nothing under an unknown key is kept: `check` lists the problems in a
/// quarter of a GiB.
#[test]
fn a_huge_key_over_many_items_is_refused_in_bounded_memory() {
    let items = vec!["*x"; 49_000].join(", ");
    let huge = format!(
        "x: &x \"a\\nb\"\n? \"{}\"\n: [{items}]\n",
        "a".repeat(1 << 20)
    );
    let nested: String = (0..50)
        .map(|i| format!("{{\"{i:03}{}\": ", "b".repeat(247)))
        .collect();
    let deep = format!(
        "x: &x \"a\\nb\"\ndeep: {nested}[{}]{}\n",
        vec!["*x"; 40_000].join(", "),
        "}".repeat(50)
    );
    for (text, problem) in [
        (
            huge,
            "line 3: a key of 1048576 bytes, more than the 256 a key may have: refused, its value not read",
        ),
        (deep, "line 3: deep: unknown key `deep`"),
    ] {
        let (_s, cfg) = scene("public", &text);
        let (code, out) = check_within_memory(&cfg, 256);
        let head = &out[..out.len().min(2_000)];
        assert_eq!(code, 1, "{head}");
        assert!(out.contains(problem), "{head}");
        assert!(out.contains("line 2: x: unknown key `x`"), "{head}");
        assert!(out.len() < 10_000, "{head}");
    }
}

/// A refused allow rule stopped the file's read: serde's reader passed
/// its error up, and nothing after it was read nor resolved. A bad rule
/// under a listener's `client_auth` hid a bad route rule after it (and an
/// unknown key after that): "1 problem(s)". Each refused rule is now a
/// problem at its line and place, and the rest is still checked.
#[test]
fn a_refused_allow_rule_does_not_hide_the_problems_after_it() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    write(&s.path("ca.crt"), &ca.cert_pem);
    let cfg = s.config(
        "listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    \
         tls:\n      certs: [{ cert_file: edge.crt, key_file: edge.key }]\n      \
         client_auth:\n        mode: require_and_verify\n        ca: { ca_file: ca.crt }\n        \
         allow: [{ cn: ops }, { cn: \"a**\" }]\n    \
         routes: [{ upstream: app, allow: [{ fingerprint_sha256: zz }] }]\n    \
         colour: red\n\
         upstreams:\n  - name: app\n    servers: [\"http://127.0.0.1:1\"]\n",
    );
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    for said in [
        "line 9: listeners[0].tls.client_auth.allow[1]: cn: \"a**\": `**` is only allowed",
        "line 10: listeners[0].routes[0].allow[0]: fingerprint_sha256: \"zz\": not a SHA-256",
        "line 11: listeners[0].colour: unknown key `colour`",
    ] {
        assert!(out.contains(said), "{said}: {out}");
    }
    assert!(
        out.contains("configuration check failed: 3 problem(s)"),
        "{out}"
    );
}

/// One mistake in an allow rule was two problems: what the reader found
/// at a field (a list where a pattern goes, an unset variable, an unknown
/// key) and then, the field read as empty, what the rule's check said of
/// that emptiness (`cn: "": empty pattern`, `an allow rule needs at least
/// one of ...`). The reader's problem, naming the entry and the field, is
/// the one said; a second mistake in the same rule is still its own.
#[test]
fn a_mistake_in_an_allow_rule_is_one_problem() {
    const UNSET: &str = "HOTPROXY_CHECK_INPUTS_UNSET_CN";
    let at = "listeners[0].tls.client_auth.allow[0]";
    for (rule, said, also) in [
        (
            "{ cn: [ops] }",
            format!("{at}.cn: expected text, found a list"),
            None,
        ),
        (
            "{ cn: \"${HOTPROXY_CHECK_INPUTS_UNSET_CN}\" }",
            format!("{at}.cn: environment variable {UNSET} is not set"),
            None,
        ),
        (
            "{ fingerprint_sha256: \"${HOTPROXY_CHECK_INPUTS_UNSET_CN}\" }",
            format!("{at}.fingerprint_sha256: environment variable {UNSET} is not set"),
            None,
        ),
        (
            "{ subject: ops }",
            format!("{at}.subject: unknown key `subject`"),
            None,
        ),
        (
            "{ subject: ops, cn: \"a**\" }",
            format!("{at}.subject: unknown key `subject`"),
            Some(format!("{at}: cn: \"a**\": `**` is only allowed")),
        ),
    ] {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        s.pair("edge", &ca.server_pair(&["localhost"]));
        write(&s.path("ca.crt"), &ca.cert_pem);
        let cfg = s.config(&format!(
            "listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    \
             tls:\n      certs: [{{ cert_file: edge.crt, key_file: edge.key }}]\n      \
             client_auth:\n        mode: require_and_verify\n        ca: {{ ca_file: ca.crt }}\n        \
             allow: [{rule}]\n"
        ));
        let (code, out) = check_with(&cfg, &[]);
        assert_eq!(code, 1, "{out}");
        let problems: Vec<&str> = out.lines().filter(|l| l.contains(at)).collect();
        assert!(
            problems[0].contains(&format!("line 9: {said}")),
            "{rule}: {out}"
        );
        match &also {
            None => assert_eq!(problems.len(), 1, "{rule}: {out}"),
            Some(also) => {
                assert_eq!(problems.len(), 2, "{rule}: {out}");
                assert!(problems[1].contains(also.as_str()), "{rule}: {out}");
            }
        }
        let n = 1 + usize::from(also.is_some());
        assert!(
            out.contains(&format!("configuration check failed: {n} problem(s)")),
            "{rule}: {out}"
        );
    }
}

/// An IPv4-mapped wildcard (`[::ffff:0.0.0.0]:8443`) overlaps an IPv4
/// address on its port, and was found to, but the problem said the other
/// address took every one (`127.0.0.1 takes every IPv4 address`), or the
/// mapped one every IPv6 address too: the wildcard was told by its written
/// form. It is told as the address it maps, and named as written.
#[test]
fn an_ipv4_mapped_wildcard_is_the_one_that_takes_every_address() {
    let mapped = "[::ffff:0.0.0.0]:8443";
    for (first, second) in [(mapped, "127.0.0.1:8443"), ("127.0.0.1:8443", mapped)] {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        s.pair("edge", &ca.server_pair(&["localhost"]));
        let listener = |name: &str, bind: &str| {
            format!(
                "  - name: {name}\n    bind: \"{bind}\"\n    \
                 tls: {{ certs: [{{ cert_file: edge.crt, key_file: edge.key }}] }}\n"
            )
        };
        let cfg = s.config(&format!(
            "listeners:\n{}{}",
            listener("a", first),
            listener("b", second)
        ));
        let (code, out) = check_with(&cfg, &[]);
        assert_eq!(code, 1, "{out}");
        let want = format!(
            "listeners[1].bind: {second} overlaps listeners[0].bind ({first}): \
             ::ffff:0.0.0.0 takes every IPv4 address of port 8443; two listening sockets \
             cannot share it\n"
        );
        assert!(out.contains(&want), "{want}: {out}");
    }
}

/// A rule was checked up to its first refused field: beside an unset
/// variable (whose problem is the reader's, the field read as empty) a bad
/// `cn` went unsaid, and the next run of `check` found it. Every field of
/// the rule is checked, each refused one said once.
#[test]
fn every_refused_field_of_an_allow_rule_is_a_problem() {
    const UNSET: &str = "HOTPROXY_CHECK_INPUTS_UNSET_FP";
    let at = "listeners[0].tls.client_auth.allow[0]";
    let star = "`**` is only allowed as a final `/**` of a uri_san";
    for (rule, said) in [
        (
            format!("{{ fingerprint_sha256: \"${{{UNSET}}}\", cn: \"**x\" }}"),
            vec![
                format!("{at}.fingerprint_sha256: environment variable {UNSET} is not set"),
                format!("{at}: cn: \"**x\": {star}"),
            ],
        ),
        (
            "{ fingerprint_sha256: abc, cn: \"a**\", ou: \"\", dns_san: \"**.example\" }".into(),
            vec![
                format!("{at}: fingerprint_sha256: \"abc\": not a SHA-256 fingerprint"),
                format!("{at}: cn: \"a**\": {star}"),
                format!("{at}: ou: \"\": empty pattern"),
                format!("{at}: dns_san: \"**.example\": {star}"),
            ],
        ),
    ] {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        s.pair("edge", &ca.server_pair(&["localhost"]));
        write(&s.path("ca.crt"), &ca.cert_pem);
        let cfg = s.config(&format!(
            "listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    \
             tls:\n      certs: [{{ cert_file: edge.crt, key_file: edge.key }}]\n      \
             client_auth:\n        mode: require_and_verify\n        ca: {{ ca_file: ca.crt }}\n        \
             allow: [{rule}]\n"
        ));
        let (code, out) = check_with(&cfg, &[]);
        assert_eq!(code, 1, "{out}");
        let problems: Vec<&str> = out.lines().filter(|l| l.contains(at)).collect();
        assert_eq!(problems.len(), said.len(), "{rule}: {out}");
        for said in &said {
            let line = format!("line 9: {said}");
            assert!(problems.iter().any(|p| p.contains(&line)), "{said}: {out}");
        }
        assert!(
            out.contains(&format!(
                "configuration check failed: {} problem(s)",
                said.len()
            )),
            "{rule}: {out}"
        );
    }
}

#[path = "check_inputs/shown.rs"]
mod shown;

#[path = "check_inputs/paths.rs"]
mod paths;

#[path = "check_inputs/withheld.rs"]
mod withheld;

#[path = "check_inputs/servers.rs"]
mod servers;

#[path = "check_inputs/admin_bind.rs"]
mod admin_bind;

#[path = "check_inputs/warnings.rs"]
mod warnings;

#[path = "check_inputs/token_index.rs"]
mod token_index;

#[path = "check_inputs/broken_items.rs"]
mod broken_items;

#[path = "check_inputs/stand_ins.rs"]
mod stand_ins;

#[path = "check_inputs/header_values.rs"]
mod header_values;
