//! How `check`, `certs inspect` and `certs dev-pki` show the paths of files they read: whole, escaped as Rust writes a string.

use super::shown::check_crl_from_env;
use super::*;

/// A material file's path was written raw in its load messages (`entry a
/// (ca-bundle, unused): <path>: file not found`): a path set from
/// `${NAME}` holding a terminal escape reached the terminal as is. The
/// path is shown whole, its control characters escaped as Rust writes a
/// string; an ordinary path as it is.
#[test]
fn a_material_path_is_shown_escaped_in_its_load_messages() {
    const CRL: &str = "HOTPROXY_CHECK_INPUTS_ESC_CRL";
    let more = "  - { id: b, type: ca-bundle, ca_file: plain.crt }\n";
    let (s, _, out) = check_crl_from_env(CRL, 1, more, "/run/a\x1b[2J\tb.pem");
    assert!(!out.contains(['\u{1b}', '\t']), "{out:?}");
    assert!(
        out.contains("/run/a\\u{1b}[2J\\tb.pem: file not found"),
        "{out}"
    );
    let plain = s.path("plain.crt");
    assert!(
        out.contains(&format!("{}: file not found", plain.display())),
        "{out}"
    );
}

/// `certs inspect` headed each certificate with its file's path written
/// raw (`<path> [0]`): a file named with an ESC or a line break wrote a
/// terminal escape, or a line of its own, to the operator's terminal. The
/// header shows the path as its load messages do: whole, escaped as Rust
/// writes a string; an ordinary path as it is.
#[test]
fn certs_inspect_shows_the_file_escaped_in_its_header() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let odd = s.path("a\x1b[2J\nb.crt");
    write(&odd, &ca.cert_pem);
    let plain = s.path("plain.crt");
    write(&plain, &ca.cert_pem);
    let out = Command::new(env!("CARGO_BIN_EXE_hotproxy"))
        .args(["certs", "inspect"])
        .arg(&odd)
        .arg(&plain)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
    let dir = s.path("").display().to_string();
    let shown = format!("{}a\\u{{1b}}[2J\\nb.crt [0]", dir);
    assert_eq!(text.lines().next(), Some(shown.as_str()), "{text}");
    assert!(
        text.lines()
            .any(|l| l == format!("{} [0]", plain.display())),
        "{text}"
    );
}

/// The store's own paths (`store.path`, `store.key_file`) were written raw
/// in the messages naming them: one set with an ESC (`"\e"` in YAML, or
/// from `${NAME}`) reached the operator's terminal as is. They are shown
/// as a material path is: whole, escaped as Rust writes a string.
#[test]
fn the_store_paths_are_shown_escaped_in_their_messages() {
    let store = "store: { path: \"data/s\\e[2J.json\", key_file: \"keys/k\\e[2J.key\" }\n";
    let (s, cfg) = scene("public", store);
    // No key yet: `run` would create it, and check notes so.
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    let key = format!("{}k\\u{{1b}}[2J.key", s.path("keys/").display());
    assert!(
        out.contains(&format!("store.key_file {key} does not exist")),
        "{out}"
    );
    // A key others may read: refused, naming it.
    write(&s.path("keys/k\x1b[2J.key"), &"k".repeat(32));
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(
        out.contains(&format!("store.key_file {key} has mode 0644")),
        "{out}"
    );
}

/// `admin.tokens[i].token_file`'s path was written raw in its messages:
/// one set from `${NAME}` (or `"\e"` in YAML) with an ESC in a directory's
/// name reached the operator's terminal as is. It is shown as a material
/// path is: whole, escaped as Rust writes a string. Set by `${NAME}` and
/// naming no file, it is not shown at all: it may be the token itself.
#[test]
fn a_token_file_path_is_shown_escaped() {
    const TF: &str = "HOTPROXY_CHECK_INPUTS_TOKEN_FILE";
    let admin = format!(
        "admin:\n  bind: 127.0.0.1:0\n  tokens: [{{ role: viewer, token_file: \"${{{TF}}}\" }}]"
    );
    let (s, cfg) = scene("public", &admin);
    let dir = s.path("a\x1b[2J");
    std::fs::create_dir_all(&dir).unwrap();
    let shown = format!("{}a\\u{{1b}}[2J/token", s.path("").display());
    let token = dir.join("token");
    // Missing: the read's error, the variable named in place of the path.
    let (code, out) = check_with(&cfg, &[(TF, token.clone().into_os_string())]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(
        out.contains(&format!(
            "admin.tokens[0].token_file: the value of ${{{TF}}} names no file that can be read"
        )),
        "{out}"
    );
    assert!(!out.contains("[2J"), "{out}");
    // Empty: the token's own problem, naming the file.
    write(&token, "\n");
    let (code, out) = check_with(&cfg, &[(TF, token.into_os_string())]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(
        out.contains(&format!(
            "admin.tokens[0].token_file {shown}: the token is empty"
        )),
        "{out}"
    );
}

/// The configuration file's own path was written raw before each of its
/// problems (`FILE: line 3: ...`) and in `check`'s verdict: a file in a
/// directory named with an ESC or a line break wrote a terminal escape,
/// or a line of its own. It is shown as a material path is.
#[test]
fn the_configuration_files_path_is_shown_escaped() {
    let (s, cfg) = scene("public", "");
    let dir = s.path("c\x1b[2J\nd");
    std::fs::create_dir_all(&dir).unwrap();
    let moved = dir.join("config.yaml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("edge.crt", "../edge.crt")
        .replace("edge.key", "../edge.key");
    write(&moved, &text);
    let shown = format!("{}c\\u{{1b}}[2J\\nd/config.yaml", s.path("").display());
    let (code, out) = check_with(&moved, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(
        out.contains(&format!("configuration {shown} is valid")),
        "{out}"
    );
    write(&moved, &format!("{text}colour: red\n"));
    let (code, out) = check_with(&moved, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(
        out.contains(&format!("\n{shown}: line ")) || out.starts_with(&format!("{shown}: line ")),
        "{out}"
    );
}

/// `certs dev-pki` wrote its directory's path raw, and the file helpers'
/// errors it passed on (`DIR/ca.crt: not a regular file`) too: a
/// directory named with an ESC reached the terminal as is. Each path is
/// shown as a material path is.
#[test]
fn dev_pki_shows_its_paths_escaped() {
    let s = Scene::new();
    let out_dir = s.path("p\x1b[2J");
    let dev_pki = |dir: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_hotproxy"))
            .args(["certs", "dev-pki", "--out"])
            .arg(dir)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let shown = format!("{}p\\u{{1b}}[2J", s.path("").display());
    let (ok, out) = dev_pki(&out_dir);
    assert!(ok, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(out.contains(&format!("{shown}/server.crt")), "{out}");
    // A CA certificate that is a directory: the helper's refusal.
    std::fs::remove_file(out_dir.join("ca.crt")).unwrap();
    std::fs::create_dir(out_dir.join("ca.crt")).unwrap();
    let (ok, out) = dev_pki(&out_dir);
    assert!(!ok, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(
        out.contains(&format!("{shown}/ca.crt: not a regular file (a directory)")),
        "{out}"
    );
}

/// The file helpers' errors `certs dev-pki` passes on (`cannot replace
/// DIR/server.crt: Is a directory`) named the path with `display()`: a
/// byte that is not UTF-8 was U+FFFD before the message was escaped, and
/// the operator was told of a directory that does not exist. It is shown
/// as `\xFF`, as every other message shows it.
#[test]
fn dev_pki_shows_a_path_that_is_not_utf8_byte_by_byte() {
    use std::os::unix::ffi::OsStrExt;
    let s = Scene::new();
    let out_dir = s.dir.path().join(std::ffi::OsStr::from_bytes(b"p\x1b\xff"));
    std::fs::create_dir_all(out_dir.join("server.crt")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hotproxy"))
        .args(["certs", "dev-pki", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!out.stderr.contains(&0x1b), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    let shown = format!("{}p\\u{{1b}}\\xFF", s.path("").display());
    assert!(
        err.contains(&format!("cannot replace {shown}/server.crt: ")),
        "{err}"
    );
}

/// A key others may read was refused with a command to paste (`chmod 600
/// PATH`) holding the path as shown, escaped: `chmod 600 /keys/a\tb.key`
/// in a shell names another file. The command is given only as the shell
/// reads it back: bare for a path of plain characters, in single quotes
/// for one with a space or a quote, and left out (`chmod 600 the file`)
/// for one the message shows escaped.
#[test]
fn the_chmod_for_a_key_names_the_file_as_a_shell_reads_it() {
    for (name, chmod) in [
        ("k\tb.key", "(chmod 600 the file)".to_owned()),
        ("k b'c.key", "(chmod 600 '{dir}k b'\\''c.key')".to_owned()),
        ("k-b.key", "(chmod 600 {dir}k-b.key)".to_owned()),
    ] {
        let yaml = name.replace('\t', "\\t");
        let store = format!("store: {{ path: data/s.json, key_file: \"keys/{yaml}\" }}\n");
        let (s, cfg) = scene("public", &store);
        write(&s.path(&format!("keys/{name}")), &"k".repeat(32));
        let (code, out) = check_with(&cfg, &[]);
        assert_eq!(code, 1, "{out}");
        let dir = s.path("keys/").display().to_string();
        let chmod = chmod.replace("{dir}", &dir);
        assert!(out.contains("has mode 0644"), "{out}");
        assert!(out.contains(&chmod), "{name:?}: {out}");
    }
}

/// A path's bytes that are not UTF-8 were shown as U+FFFD (`caf�.crt`):
/// `certs inspect` of `caf\xe9.crt` and `caf\xe8.crt` headed both alike,
/// and the operator could not tell which file was which, nor name either.
/// Each such byte is shown as `\xE9`, as Rust writes an `OsStr`.
#[test]
fn a_path_that_is_not_utf8_is_shown_byte_by_byte() {
    use std::os::unix::ffi::OsStrExt;
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let dir = s.path("");
    let named = |b: u8| {
        dir.join(std::ffi::OsStr::from_bytes(&[
            b'c', b'a', b'f', b, b'.', b'c', b'r', b't',
        ]))
    };
    write(&named(0xe9), &ca.cert_pem);
    write(&named(0xe8), &ca.cert_pem);
    let out = Command::new(env!("CARGO_BIN_EXE_hotproxy"))
        .args(["certs", "inspect"])
        .arg(named(0xe9))
        .arg(named(0xe8))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains('\u{fffd}'), "{text}");
    let headers: Vec<&str> = text.lines().filter(|l| l.ends_with(" [0]")).collect();
    let dir = dir.display();
    assert_eq!(
        headers,
        [
            format!("{dir}caf\\xE9.crt [0]"),
            format!("{dir}caf\\xE8.crt [0]")
        ],
        "{text}"
    );
}

/// The configuration file's own path and `access_log.path` were written
/// raw: `check --config $'a\e[2J.yaml'` headed each problem with the
/// path's ESC (`/tmp/a<ESC>[2J.yaml: entry x ...`), and an access log in
/// a directory named with one wrote it in `check`'s and `run`'s errors.
/// Both are shown as a material path is: whole, escaped.
#[test]
fn the_config_file_and_access_log_paths_are_shown_escaped() {
    let (s, cfg) = scene("public", "");
    let odd = s.path("a\x1b[2J.yaml");
    std::fs::rename(&cfg, &odd).unwrap();
    let shown = format!("{}a\\u{{1b}}[2J.yaml", s.path("").display());
    // Valid: named in the line saying so.
    let (code, out) = check_with(&odd, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(
        out.contains(&format!("configuration {shown} is valid")),
        "{out}"
    );
    // A problem of the file: each line headed with the path escaped.
    let text = std::fs::read_to_string(&odd).unwrap();
    write(&odd, &format!("bogus: 1\n{text}"));
    let (code, out) = check_with(&odd, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(out.contains(&format!("{shown}: ")), "{out}");
    // An access log in a directory that does not exist, named with an ESC.
    let log = "access_log: { path: \"no\\e[2J/access.log\" }\n";
    write(&odd, &format!("{log}{text}"));
    let (code, out) = check_with(&odd, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    let dir = format!("{}no\\u{{1b}}[2J", s.path("").display());
    assert!(
        out.contains(&format!(
            "access_log.path {dir}/access.log: its directory {dir} does not exist"
        )),
        "{out}"
    );
    let (code, stdout, stderr) = run_cli(&["run", "--config", odd.to_str().unwrap()]);
    let out = format!("{stdout}{stderr}");
    assert_ne!(code, 0, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(
        out.contains(&format!("access_log.path {dir}/access.log: ")),
        "{out}"
    );
}

/// A configuration with every path field, each `value` unless `field` is
/// that field (then `pasted`, a YAML block scalar's header and the
/// content below it, indented from `pad` spaces).
fn every_path_field(field: &str, pasted: &dyn Fn(usize) -> String) -> String {
    let v = |f: &str, value: &str, pad: usize| {
        if f == field {
            pasted(pad)
        } else {
            value.to_owned()
        }
    };
    format!(
        "admin:\n  bind: 127.0.0.1:0\n  tokens:\n    - role: viewer\n      token_file: {}\n\
         store:\n  path: {}\n  key_file: {}\n  file_roots:\n    - {}\n\
         access_log:\n  path: {}\n\
         certs:\n  - id: spare\n    type: server-pair\n    cert_file: {}\n    key_file: {}\n\
         \x20 - id: bundle\n    type: ca-bundle\n    ca_file: {}\n    crl_files:\n      - {}\n\
         listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    tls:\n      certs:\n\
         \x20       - cert_file: {}\n          key_file: {}\n\
         upstreams:\n  - name: app\n    servers: [\"https://127.0.0.1:1\"]\n    tls:\n      \
         ca:\n        ca_file: {}\n",
        v("admin.tokens[0].token_file", "viewer.token", 8),
        v("store.path", "data/store.json", 4),
        v("store.key_file", "keys/store.key", 4),
        v("store.file_roots[0]", "pki", 6),
        v("access_log.path", "access.log", 4),
        v("certs[0].cert_file", "edge.crt", 6),
        v("certs[0].key_file", "edge.key", 6),
        v("certs[1].ca_file", "ca.crt", 6),
        v("certs[1].crl_files[0]", "ca.crl", 8),
        v("listeners[0].tls.certs[0].cert_file", "edge.crt", 12),
        v("listeners[0].tls.certs[0].key_file", "edge.key", 12),
        v("upstreams[0].tls.ca.ca_file", "ca.crt", 10),
    )
}

/// A key or token pasted into a path field as a block scalar of one line
/// (`|-` and a line, or `>-` and two, which YAML folds into one) holds
/// no line break, and was taken for a path: `check` said "<path>: file
/// not found", the whole key in the path. Every path field written as a
/// block scalar is refused as pasted content, naming the field (and
/// entry), never the value; nothing is opened.
#[test]
fn a_path_field_written_as_a_block_scalar_is_refused_unshown() {
    let (s, _) = scene("public", "");
    let ca = TestCa::new("ca");
    write(&s.path("ca.crt"), &ca.cert_pem);
    write(&s.path("ca.crl"), &ca.crl(&[]));
    write(&s.path("viewer.token"), "viewer-token-8d1f3b5a7c9e2046\n");
    std::fs::create_dir_all(s.path("pki")).unwrap();
    let cfg = s.path("config.yaml");
    write(&cfg, &every_path_field("", &|_| String::new()));
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 0, "{out}");

    let lines = [
        "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgs3cr3t",
        "Zm9sZGVkIGludG8gb25lIGxpbmUgYnkgWUFNTA",
    ];
    let folded = |pad: usize| {
        let pad = " ".repeat(pad);
        format!(">-\n{pad}{}\n{pad}{}", lines[0], lines[1])
    };
    let one = |pad: usize| format!("|-\n{}{}", " ".repeat(pad), lines[0]);
    for field in [
        "admin.tokens[0].token_file",
        "store.path",
        "store.key_file",
        "store.file_roots[0]",
        "access_log.path",
        "certs[0].cert_file",
        "certs[0].key_file",
        "certs[1].ca_file",
        "certs[1].crl_files[0]",
        "listeners[0].tls.certs[0].cert_file",
        "listeners[0].tls.certs[0].key_file",
        "upstreams[0].tls.ca.ca_file",
    ] {
        let entry = match field {
            "certs[0].cert_file" | "certs[0].key_file" => "entry \"spare\": ",
            "certs[1].ca_file" | "certs[1].crl_files[0]" => "entry \"bundle\": ",
            _ => "",
        };
        for pasted in [&folded as &dyn Fn(usize) -> String, &one] {
            write(&cfg, &every_path_field(field, pasted));
            let (code, out) = check_with(&cfg, &[]);
            assert_eq!(code, 1, "{field}: {out}");
            assert!(
                out.contains(&format!(
                    "{field}: {entry}written as a block scalar (| or >): pasted content \
                     (a key or token?), not a path; give the path of the file that holds \
                     it (the value is not shown)\n"
                )),
                "{field}: {out}"
            );
            for piece in [&lines[0][8..30], &lines[1][..20]] {
                assert!(!out.contains(piece), "{field}: {out}");
            }
        }
    }
}

/// A comment at column 0 between a path key and its value, ending in `|`
/// or `>` (`# old: |`, an old value kept as a note), was read as the
/// value's block header: the path below it was refused as pasted content
/// and a valid configuration failed `check`. A comment line is no header,
/// at any indentation.
#[test]
fn a_comment_line_after_a_path_key_is_no_block_header() {
    let (s, _) = scene("public", "");
    let cfg = s.path("config.yaml");
    for comment in ["# old: |", "#>-", "# was: /etc/hp/old.key >", "  # old: |"] {
        write(
            &cfg,
            &format!(
                "listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    tls:\n      certs:\n\
                 \x20       - cert_file: edge.crt\n          key_file:\n{comment}\n            \
                 edge.key\n"
            ),
        );
        let (code, out) = check_with(&cfg, &[]);
        assert_eq!(code, 0, "{comment}: {out}");
        assert!(!out.contains("block scalar"), "{comment}: {out}");
    }
}

/// `hotproxy run --config cfg` until it exits: (exit code, stdout and
/// stderr together).
fn run_until_exit(cfg: &Path) -> (i32, String) {
    let out = output_within_deadline(
        Command::new(env!("CARGO_BIN_EXE_hotproxy"))
            .args(["run", "--log-level", "info", "--config"])
            .arg(cfg)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text.into_owned())
}

/// `store: { path: X, key_file: X }`: `check` passed (a missing key is
/// only noted), and `run` wrote the key to X, then refused the store read
/// from it, after binding, the key file left behind. Both refuse it as
/// the file is read, naming both fields, and nothing is created; so is
/// either file being the configuration file or the access log.
#[test]
fn the_store_and_its_key_are_files_of_their_own() {
    let cases = [
        (
            "store: { path: data/one, key_file: data/one }",
            "key_file: data/one",
            "store.key_file: the same file as store.path",
        ),
        (
            "store: { path: data/store.json, key_file: config.yaml }",
            "key_file: config.yaml",
            "store.key_file: the same file as the configuration file",
        ),
        (
            "access_log: { path: data/log }\nstore: { path: data/log, key_file: data/key }",
            "path: data/log, key_file",
            "store.path: the same file as access_log.path",
        ),
    ];
    for (more, on, message) in cases {
        let (s, cfg) = scene("public", more);
        std::fs::create_dir(s.path("data")).unwrap();
        let text = std::fs::read_to_string(&cfg).unwrap();
        let at = text.lines().position(|l| l.contains(on)).unwrap() + 1;
        let said = format!("line {at}: {message}");
        let (code, out) = check_with(&cfg, &[]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(&said), "{out}");
        let (code, out) = run_until_exit(&cfg);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(&said), "{out}");
        assert_eq!(
            std::fs::read_dir(s.path("data")).unwrap().count(),
            0,
            "{more}"
        );
        assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text);
    }
}

/// `access_log.path` in a directory, and `store.key_file` (to be created)
/// under one, that the user cannot write to: `check` passed and `run`
/// refused to start with "Permission denied". `check` says so too, as
/// `run` would. Run as `nobody` when the tests run as root (who writes
/// anywhere), the directories being root's; else as the user, the
/// directories mode 0555.
#[test]
fn a_directory_run_cannot_write_to_fails_the_check() {
    use std::os::unix::fs::PermissionsExt;
    let more = "access_log: { path: logs/access.log }\n\
                store: { path: data/store.json, key_file: keys/new/store.key }";
    let (s, cfg) = scene("public", more);
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, PermissionsExt::from_mode(m));
    mode(s.dir.path(), 0o755).unwrap();
    for dir in ["logs", "keys"] {
        std::fs::create_dir(s.path(dir)).unwrap();
        mode(&s.path(dir), 0o555).unwrap();
    }
    let out = check_as_nobody(&s, &cfg);
    assert!(out.ends_with("exit: Some(1)"), "{out}");
    let log = s.path("logs/access.log");
    let key = s.path("keys/new/store.key");
    for said in [
        format!("access_log.path {}: Permission denied", log.display()),
        format!(
            "store.key_file {}: cannot create: Permission denied",
            key.display()
        ),
    ] {
        assert!(out.contains(&said), "{out}");
    }
    assert!(!log.exists() && !s.path("keys/new").exists(), "{out}");
}

/// An `access_log.path` that is a symlink to a file not made yet, in a
/// directory `run` may write, failed the check with "Permission denied"
/// when the link's own directory was closed: `check` asked about the
/// link's directory, while `run`'s open follows the link and creates the
/// file where it leads. The check asks about the target's directory. Run
/// as `nobody` when the tests run as root, as the test above.
#[test]
fn a_dangling_access_log_link_into_a_writable_directory_passes_the_check() {
    use std::os::unix::fs::PermissionsExt;
    let (s, cfg) = scene("public", "access_log: { path: links/access.log }");
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, PermissionsExt::from_mode(m));
    mode(s.dir.path(), 0o755).unwrap();
    std::fs::create_dir(s.path("logs")).unwrap();
    mode(&s.path("logs"), 0o777).unwrap();
    std::fs::create_dir(s.path("links")).unwrap();
    std::os::unix::fs::symlink("../logs/access.log", s.path("links/access.log")).unwrap();
    mode(&s.path("links"), 0o555).unwrap();
    let out = check_as_nobody(&s, &cfg);
    assert!(out.ends_with("exit: Some(0)"), "{out}");
    assert!(!out.contains("access_log.path"), "{out}");
    assert!(!s.path("logs/access.log").exists(), "{out}");
}

/// A FIFO as `access_log.path` that the user cannot open for writing (a
/// log shipper's pipe made mode 0600 by root, the proxy running as
/// another user) passed `check`, and `run` started, then dropped every
/// line, its one error logged at the start and every retry after failing
/// in silence. Both refuse it, as a file that cannot be opened: "A path
/// that cannot be opened rejects the configuration" (SPEC §2). Run as
/// `nobody` when the tests run as root (who opens anything), the FIFO
/// being root's; else as the user, the FIFO mode 0400. No reader is
/// needed to tell: a FIFO without one is still accepted.
#[test]
fn a_fifo_access_log_the_user_cannot_open_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (s, cfg) = scene("public", "access_log: { path: access.fifo }");
    std::fs::set_permissions(s.dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let fifo = s.path("access.fifo");
    mkfifo(&fifo);
    std::fs::set_permissions(&fifo, PermissionsExt::from_mode(0o400)).unwrap();
    let said = format!("access_log.path {}: Permission denied", fifo.display());
    for subcommand in ["check", "run"] {
        let out = cli_as_nobody(subcommand, &s, &cfg);
        assert!(out.ends_with("exit: Some(1)"), "{subcommand}: {out}");
        assert!(out.contains(&said), "{subcommand}: {out}");
    }
    // One it may write, with no reader yet, passes as before.
    std::fs::set_permissions(&fifo, PermissionsExt::from_mode(0o622)).unwrap();
    let out = check_as_nobody(&s, &cfg);
    assert!(out.ends_with("exit: Some(0)"), "{out}");
}

/// A service user given CAP_DAC_OVERRIDE (systemd's AmbientCapabilities)
/// opens a root's 0600 FIFO, but `check` and `run` refused it: access(2)
/// asks with the real ids and, for a real uid not root, drops every
/// capability. Run as `nobody` holding only that capability (`setpriv`),
/// when the tests run as root; otherwise there is no one to run it as.
#[test]
fn a_fifo_access_log_a_capable_user_may_open_passes() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        eprintln!("skipped: needs root to run hotproxy as nobody with a capability");
        return;
    }
    let (s, cfg) = scene("public", "access_log: { path: access.fifo }");
    std::fs::set_permissions(s.dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let fifo = s.path("access.fifo");
    mkfifo(&fifo);
    std::fs::set_permissions(&fifo, PermissionsExt::from_mode(0o600)).unwrap();
    let bin = s.path("hotproxy");
    std::fs::copy(env!("CARGO_BIN_EXE_hotproxy"), &bin).unwrap();
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["--inh-caps=+dac_override", "--ambient-caps=+dac_override"])
        .arg(&bin)
        .args(["check", "--config"])
        .arg(&cfg)
        .current_dir(s.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = output_within_deadline(&mut command);
    let out = String::from_utf8_lossy(&out.stdout).into_owned()
        + &String::from_utf8_lossy(&out.stderr)
        + &format!("\nexit: {:?}", out.status.code());
    assert!(out.ends_with("exit: Some(0)"), "{out}");
}

/// `hotproxy check` on `cfg`, run from a copy of the binary in the scene's
/// directory (the build's own directories may be closed to `nobody`) as
/// `nobody` when the tests run as root (who writes anywhere), else as the
/// user: its stdout, stderr and `exit: <code>` last.
fn check_as_nobody(s: &Scene, cfg: &Path) -> String {
    cli_as_nobody("check", s, cfg)
}

/// As [`check_as_nobody`], `hotproxy SUBCOMMAND` (`run` when it is
/// refused at startup).
fn cli_as_nobody(subcommand: &str, s: &Scene, cfg: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    let bin = s.path("hotproxy");
    if !bin.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_hotproxy"), &bin).unwrap();
    }
    let mut command = Command::new(&bin);
    command
        .args([subcommand, "--config"])
        .arg(cfg)
        .current_dir(s.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
        command.uid(NOBODY).gid(NOBODY);
    }
    let out = output_within_deadline(&mut command);
    String::from_utf8_lossy(&out.stdout).into_owned()
        + &String::from_utf8_lossy(&out.stderr)
        + &format!("\nexit: {:?}", out.status.code())
}
